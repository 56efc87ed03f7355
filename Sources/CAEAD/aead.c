#include "CAEAD.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

struct ft_aead {
    EVP_CIPHER_CTX *ctx;
};

ft_aead *ft_aead_new(int cipher, const uint8_t key[32], int seal) {
    // No openssl.cnf: a host's configuration must not change what ft
    // negotiated (or load providers into a static binary).
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
    const EVP_CIPHER *c = cipher == FT_AEAD_AES_256_GCM ? EVP_aes_256_gcm()
                          : cipher == FT_AEAD_CHACHA20_POLY1305 ? EVP_chacha20_poly1305()
                          : NULL;
    if (c == NULL) return NULL;
    ft_aead *a = OPENSSL_zalloc(sizeof *a);
    if (a == NULL) return NULL;
    a->ctx = EVP_CIPHER_CTX_new();
    if (a->ctx == NULL
        || EVP_CipherInit_ex(a->ctx, c, NULL, NULL, NULL, seal) != 1
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
    OPENSSL_free(a);
}

int ft_aead_begin(ft_aead *a, const uint8_t nonce[12]) {
    // The key schedule stays; only the nonce (and the GHASH state) resets.
    return EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, -1) == 1;
}

int ft_aead_update(ft_aead *a, uint8_t *bytes, size_t length) {
    while (length > 0) {
        int n = length > INT_MAX / 2 ? INT_MAX / 2 : (int)length;
        int out = 0;
        if (EVP_CipherUpdate(a->ctx, bytes, &out, bytes, n) != 1 || out != n) return 0;
        bytes += n;
        length -= (size_t)n;
    }
    return 1;
}

int ft_aead_associate(ft_aead *a, const uint8_t *bytes, size_t length) {
    while (length > 0) {
        int n = length > INT_MAX / 2 ? INT_MAX / 2 : (int)length;
        int out = 0;
        if (EVP_CipherUpdate(a->ctx, NULL, &out, bytes, n) != 1) return 0;
        bytes += n;
        length -= (size_t)n;
    }
    return 1;
}

int ft_aead_seal_end(ft_aead *a, uint8_t tag[16]) {
    uint8_t none[16];
    int out = 0;
    return EVP_CipherFinal_ex(a->ctx, none, &out) == 1 && out == 0
           && EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1;
}

int ft_aead_open_end(ft_aead *a, const uint8_t tag[16]) {
    uint8_t none[16];
    int out = 0;
    if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, 16, (void *)tag) != 1) return 0;
    return EVP_CipherFinal_ex(a->ctx, none, &out) == 1 && out == 0;
}

int ft_cpu_has_aes_gcm(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
}
