// The AEAD ciphers of `--encrypt`, over OpenSSL's libcrypto (linked
// statically from libssl-dev's archive). swift-crypto's AEAD API returns a
// fresh buffer per call and copies twice; a record here is sealed and
// opened in place, with a key schedule set up once per direction, so the
// per-record cost is the cipher's own.
#ifndef FT_CAEAD_H
#define FT_CAEAD_H
#include <stddef.h>
#include <stdint.h>

typedef struct ft_aead ft_aead;

enum {
    FT_AEAD_AES_256_GCM = 1,
    FT_AEAD_CHACHA20_POLY1305 = 2,
};

/// A context for one direction: `seal` 1 to seal, 0 to open. NULL if
/// libcrypto refused (out of memory, or the cipher is missing).
ft_aead *ft_aead_new(int cipher, const uint8_t key[32], int seal);
void ft_aead_free(ft_aead *a);

/// Starts a record under a 12-byte nonce.
int ft_aead_begin(ft_aead *a, const uint8_t nonce[12]);
/// Encrypts (or decrypts) the next `length` bytes of the record in place.
/// Pieces may be fed one by one, so a caller can hash each while it is in
/// cache. Returns 1, or 0 on failure.
int ft_aead_update(ft_aead *a, uint8_t *bytes, size_t length);
/// Feeds `length` bytes the tag covers but that are not encrypted (the
/// associated data). All of it must come before the first `update`.
int ft_aead_associate(ft_aead *a, const uint8_t *bytes, size_t length);
/// Ends a sealed record and writes its 16-byte tag.
int ft_aead_seal_end(ft_aead *a, uint8_t tag[16]);
/// Ends an opened record: 1 if `tag` authenticates everything fed since
/// `ft_aead_begin`, 0 if the record was altered or sealed with another key.
int ft_aead_open_end(ft_aead *a, const uint8_t tag[16]);

/// 1 if this CPU has AES-NI and carry-less multiply (what makes AES-GCM
/// faster than ChaCha20-Poly1305 in software), else 0.
int ft_cpu_has_aes_gcm(void);
#endif
