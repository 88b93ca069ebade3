/*
 * hmac.h - HMAC-SHA256 over a list of parts, under a key kept for many
 * uses (OpenSSL's EVP_MAC): the cluster key's seals (cluster/seal.c).
 */
#ifndef SPATE_COMMON_HMAC_H
#define SPATE_COMMON_HMAC_H

#include <stddef.h>

#define HMAC_SHA256_LEN 32

typedef struct hmac_key hmac_key;

typedef struct hmac_part {
    const void *data;
    size_t len;
} hmac_part;

/* A copy of key (len > 0); NULL when out of memory or OpenSSL lacks HMAC. */
hmac_key *hmac_key_new(const void *key, size_t len);
void hmac_key_free(hmac_key *k); /* wiped first */
/* HMAC-SHA256 over the parts, each preceded by its length (8 bytes,
 * big-endian): "ab","c" and "a","bc" differ. 0, or -1 on an OpenSSL
 * failure. Any thread. */
int hmac_sha256_parts(const hmac_key *k, const hmac_part *parts, size_t n,
                      unsigned char out[HMAC_SHA256_LEN]);
/* 1 when a and b (n bytes) are equal, in a time that does not depend on
 * where they differ. */
int hmac_equal(const void *a, const void *b, size_t n);
/* Overwrites n bytes (a secret read into a buffer) in a way the compiler
 * keeps. */
void hmac_wipe(void *p, size_t n);

#endif
