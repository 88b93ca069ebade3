/* hash.h - SHA-256 (OpenSSL) for content-addressed artifacts, MD5 and
 * base64 for the events Lambda's shapes ask for (sched/batch.c), and FNV-1a
 * for hash tables and for spreading names over a range. */
#ifndef SPATE_HASH_H
#define SPATE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* 64-bit FNV-1a: fast and stable across runs and nodes; not for secrets. */
static inline uint64_t hash_fnv1a(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

#define HASH_HEX_LEN 64

/* Writes the lowercase hex digest and a NUL into hex (HASH_HEX_LEN + 1 bytes). */
int hash_sha256_hex(const void *data, size_t len, char hex[HASH_HEX_LEN + 1]);

#define HASH_MD5_HEX_LEN 32
/* MD5, as SQS's md5OfBody (not for anything that must resist forgery). */
int hash_md5_hex(const void *data, size_t len, char hex[HASH_MD5_HEX_LEN + 1]);

/* Bytes of the base64 (RFC 4648, padded) of n bytes, NUL not counted. */
#define HASH_BASE64_LEN(n) (4 * (((size_t)(n) + 2) / 3))
/* Writes the base64 of data and a NUL into out (HASH_BASE64_LEN(len) + 1
 * bytes); returns its length. len at most INT_MAX. */
size_t hash_base64(const void *data, size_t len, char *out);
/* Decodes padded base64 (RFC 4648; len a multiple of 4, at most INT_MAX)
 * into out (at least len / 4 * 3 bytes): its length, or -1 when it is not
 * base64. */
long hash_unbase64(const char *s, size_t len, unsigned char *out);

#endif
