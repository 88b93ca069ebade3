/* hmac.c - HMAC-SHA256 over length-prefixed parts (hmac.h). */
#include "common/hmac.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct hmac_key {
    EVP_MAC *mac; /* fetched once; a context per use, so any thread may use it */
    unsigned char *key;
    size_t len;
};

hmac_key *hmac_key_new(const void *key, size_t len)
{
    hmac_key *k = len ? calloc(1, sizeof *k) : NULL;
    if (!k || !(k->key = malloc(len)) || !(k->mac = EVP_MAC_fetch(NULL, "HMAC", NULL))) {
        hmac_key_free(k);
        return NULL;
    }
    memcpy(k->key, key, len);
    k->len = len;
    return k;
}

void hmac_key_free(hmac_key *k)
{
    if (!k) return;
    if (k->key) OPENSSL_cleanse(k->key, k->len);
    free(k->key);
    EVP_MAC_free(k->mac);
    free(k);
}

int hmac_sha256_parts(const hmac_key *k, const hmac_part *parts, size_t n,
                      unsigned char out[HMAC_SHA256_LEN])
{
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(k->mac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    int ok = ctx && EVP_MAC_init(ctx, k->key, k->len, params);
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char len[8];
        uint64_t l = parts[i].len;
        for (int b = 7; b >= 0; b--, l >>= 8) len[b] = (unsigned char)(l & 0xff);
        ok = EVP_MAC_update(ctx, len, sizeof len) &&
             (!parts[i].len || EVP_MAC_update(ctx, parts[i].data, parts[i].len));
    }
    size_t outlen = 0;
    ok = ok && EVP_MAC_final(ctx, out, &outlen, HMAC_SHA256_LEN) && outlen == HMAC_SHA256_LEN;
    EVP_MAC_CTX_free(ctx);
    return ok ? 0 : -1;
}

int hmac_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

void hmac_wipe(void *p, size_t n)
{
    OPENSSL_cleanse(p, n);
}
