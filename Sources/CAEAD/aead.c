#include "CAEAD.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

// BoringSSL's AEAD interface, as swift-crypto builds it (every symbol
// carries swift-crypto's prefix, so it never meets OpenSSL's). Declared
// here rather than included: swift-crypto does not export the target's
// headers. The context stays opaque; only functions touch it.
typedef struct bssl_aead bssl_aead;
typedef struct bssl_aead_ctx bssl_aead_ctx;
extern const bssl_aead *CCryptoBoringSSL_EVP_aead_aes_256_gcm(void);
extern bssl_aead_ctx *CCryptoBoringSSL_EVP_AEAD_CTX_new(const bssl_aead *aead, const uint8_t *key, size_t key_len,
                                                        size_t tag_len);
extern void CCryptoBoringSSL_EVP_AEAD_CTX_free(bssl_aead_ctx *ctx);
extern int CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter(const bssl_aead_ctx *ctx, uint8_t *out, uint8_t *out_tag,
                                                      size_t *out_tag_len, size_t max_out_tag_len,
                                                      const uint8_t *nonce, size_t nonce_len, const uint8_t *in,
                                                      size_t in_len, const uint8_t *extra_in, size_t extra_in_len,
                                                      const uint8_t *ad, size_t ad_len);
extern int CCryptoBoringSSL_EVP_AEAD_CTX_open_gather(const bssl_aead_ctx *ctx, uint8_t *out, const uint8_t *nonce,
                                                     size_t nonce_len, const uint8_t *in, size_t in_len,
                                                     const uint8_t *in_tag, size_t in_tag_len, const uint8_t *ad,
                                                     size_t ad_len);

struct ft_aead {
    EVP_CIPHER_CTX *ctx;  // OpenSSL: ChaCha20-Poly1305
    bssl_aead_ctx *gcm;   // BoringSSL: AES-256-GCM
};

ft_aead *ft_aead_new(int cipher, const uint8_t key[32], int seal) {
    if (cipher != FT_AEAD_AES_256_GCM && cipher != FT_AEAD_CHACHA20_POLY1305) return NULL;
    // No openssl.cnf: a host's configuration must not change what ft
    // negotiated (or load providers into a static binary). No atexit
    // cleanup either: a side warms libcrypto up on a helper thread while it
    // connects, and a push that fails at once exits while that thread is
    // still in here; the cleanup then freed what it was using (SIGSEGV, or
    // a context that could not be made) in ~1 of 80 refused connects on a
    // loaded machine. The kernel takes it all back at exit anyway.
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ATEXIT, NULL);
    ft_aead *a = OPENSSL_zalloc(sizeof *a);
    if (a == NULL) return NULL;
    if (cipher == FT_AEAD_AES_256_GCM) {
        a->gcm = CCryptoBoringSSL_EVP_AEAD_CTX_new(CCryptoBoringSSL_EVP_aead_aes_256_gcm(), key, 32, 16);
        if (a->gcm == NULL) {
            ft_aead_free(a);
            return NULL;
        }
        return a;
    }
    a->ctx = EVP_CIPHER_CTX_new();
    if (a->ctx == NULL
        || EVP_CipherInit_ex(a->ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL, seal) != 1
        || EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) != 1
        || EVP_CipherInit_ex(a->ctx, NULL, NULL, key, NULL, seal) != 1) {
        ft_aead_free(a);
        return NULL;
    }
    return a;
}

void ft_aead_free(ft_aead *a) {
    if (a == NULL) return;
    EVP_CIPHER_CTX_free(a->ctx);
    if (a->gcm != NULL) CCryptoBoringSSL_EVP_AEAD_CTX_free(a->gcm);
    OPENSSL_free(a);
}

int ft_aead_begin(ft_aead *a, const uint8_t nonce[12]) {
    if (a->ctx == NULL) return 0;
    // The key schedule stays; only the nonce (and the MAC state) resets.
    return EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, -1) == 1;
}

// EVP_CipherUpdate takes an int length.
static int update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t length) {
    while (length > 0) {
        int n = length > INT_MAX / 2 ? INT_MAX / 2 : (int)length;
        int done = 0;
        if (EVP_CipherUpdate(ctx, out, &done, in, n) != 1 || (out != NULL && done != n)) return 0;
        in += n;
        if (out != NULL) out += n;
        length -= (size_t)n;
    }
    return 1;
}

int ft_aead_associate(ft_aead *a, const uint8_t *bytes, size_t length) {
    return a->ctx != NULL && update(a->ctx, NULL, bytes, length);
}

int ft_aead_seal_end(ft_aead *a, uint8_t tag[16]) {
    uint8_t none[16];
    int out = 0;
    return a->ctx != NULL && EVP_CipherFinal_ex(a->ctx, none, &out) == 1 && out == 0
           && EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1;
}

int ft_aead_open_end(ft_aead *a, const uint8_t tag[16]) {
    uint8_t none[16];
    int out = 0;
    if (a->ctx == NULL || EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, 16, (void *)tag) != 1) return 0;
    return EVP_CipherFinal_ex(a->ctx, none, &out) == 1 && out == 0;
}

int ft_aead_seal(ft_aead *a, const uint8_t nonce[12], uint8_t *bytes, size_t length, uint8_t tag[16]) {
    if (a->gcm != NULL) {
        size_t written = 0;
        return CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter(a->gcm, bytes, tag, &written, 16, nonce, 12, bytes, length,
                                                          NULL, 0, NULL, 0) == 1
               && written == 16;
    }
    return ft_aead_begin(a, nonce) && update(a->ctx, bytes, bytes, length) && ft_aead_seal_end(a, tag);
}

int ft_aead_open(ft_aead *a, const uint8_t nonce[12], uint8_t *bytes, size_t length, const uint8_t tag[16]) {
    if (a->gcm != NULL) {
        return CCryptoBoringSSL_EVP_AEAD_CTX_open_gather(a->gcm, bytes, nonce, 12, bytes, length, tag, 16, NULL, 0) == 1;
    }
    return ft_aead_begin(a, nonce) && update(a->ctx, bytes, bytes, length) && ft_aead_open_end(a, tag);
}

int ft_cpu_has_aes_gcm(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
}
