/* hash.h - SHA-256 (OpenSSL) for content-addressed artifacts. */
#ifndef SPATE_HASH_H
#define SPATE_HASH_H

#include <stddef.h>

#define HASH_HEX_LEN 64

/* Writes the lowercase hex digest and a NUL into hex (HASH_HEX_LEN + 1 bytes). */
int hash_sha256_hex(const void *data, size_t len, char hex[HASH_HEX_LEN + 1]);

#endif
