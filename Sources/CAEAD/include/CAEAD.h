// The AEAD ciphers of `--encrypt` and the Poly1305 frame tags. swift-crypto's
// AEAD API returns a fresh buffer per call and copies twice; a record here
// is sealed and opened in place, with a key schedule set up once per
// direction, so the per-record cost is the cipher's own.
//
// Two libraries, each where it is faster on x86-64:
// - AES-256-GCM: BoringSSL, the copy swift-crypto already builds into every
//   ft binary. It has an AES-GCM for VAES with 256-bit vectors, which
//   OpenSSL 3.0 lacks (its VAES code needs AVX-512). On this machine kind
//   (VAES, no AVX-512) the sender's sealing cost 0.29-0.35 CPU-s per GiB
//   with it against 0.50 with OpenSSL (`ftbench compare --only memory`),
//   perf putting 0.19 s of it in BoringSSL's routine.
// - ChaCha20-Poly1305 and the frame tags: OpenSSL's libcrypto (linked
//   statically from libssl-dev's archive): 2.0 GB/s for records, 6 GB/s
//   for Poly1305 over associated data alone.
#ifndef FT_CAEAD_H
#define FT_CAEAD_H
#include <stddef.h>
#include <stdint.h>

typedef struct ft_aead ft_aead;

enum {
    FT_AEAD_AES_256_GCM = 1,
    FT_AEAD_CHACHA20_POLY1305 = 2,
};

/// A context for one direction: `seal` 1 to seal, 0 to open. NULL if the
/// library refused (out of memory, or the cipher is missing).
ft_aead *ft_aead_new(int cipher, const uint8_t key[32], int seal);
void ft_aead_free(ft_aead *a);

/// Encrypts `length` bytes in place under a 12-byte nonce and writes the
/// 16-byte tag. Returns 1, or 0 on failure.
int ft_aead_seal(ft_aead *a, const uint8_t nonce[12], uint8_t *bytes, size_t length, uint8_t tag[16]);
/// Decrypts in place: 1 if `tag` authenticates the bytes under the nonce,
/// 0 if they were altered or sealed with another key (the bytes are then
/// garbage).
int ft_aead_open(ft_aead *a, const uint8_t nonce[12], uint8_t *bytes, size_t length, const uint8_t tag[16]);

/// Tags without encrypting (ChaCha20-Poly1305 contexts only): starts under
/// a nonce, takes associated data in pieces, then writes the tag
/// (`seal` contexts) or checks it in constant time (`open` contexts).
int ft_aead_begin(ft_aead *a, const uint8_t nonce[12]);
int ft_aead_associate(ft_aead *a, const uint8_t *bytes, size_t length);
int ft_aead_seal_end(ft_aead *a, uint8_t tag[16]);
int ft_aead_open_end(ft_aead *a, const uint8_t tag[16]);

/// 1 if this CPU has AES-NI and carry-less multiply (what makes AES-GCM
/// faster than ChaCha20-Poly1305 in software), else 0.
int ft_cpu_has_aes_gcm(void);
#endif
