/* hash.h - SHA-256 (OpenSSL) for content-addressed artifacts, and FNV-1a
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

#endif
