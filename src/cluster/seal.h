/*
 * seal.h - the cluster key (--cluster-key FILE): HMAC-SHA256 seals on what
 * one node writes for the others (registry entries, artifact chunks,
 * messages), so that a NATS client without the key cannot make a node
 * deploy, apply or run anything (docs/security.md says what is covered).
 *
 * A seal is over parts, each length-prefixed (no two lists of parts hash
 * alike); the first part names what it seals ("kv", "chunk", ...) and the
 * second the key or subject it was written under, so a sealed value cannot
 * be moved to another key or read as another kind.
 *
 * A registry value is kept as SEAL_PREFIX HEX "\n" VALUE. Without a key
 * (seal NULL) values are written bare, as before, and a sealed one is
 * refused: that node cannot check it.
 */
#ifndef SPATE_CLUSTER_SEAL_H
#define SPATE_CLUSTER_SEAL_H

#include <stddef.h>

#include "common/hmac.h"

#define SEAL_KEY_MIN 32   /* bytes of secret at least */
#define SEAL_KEY_MAX 4096 /* a key file larger is not one */
#define SEAL_HEX_LEN 64   /* HMAC-SHA256 in hex */
#define SEAL_PREFIX "spate-seal1 "
#define SEAL_PREFIX_LEN (sizeof SEAL_PREFIX - 1)
#define SEAL_VALUE_EXTRA (SEAL_PREFIX_LEN + SEAL_HEX_LEN + 1)

typedef struct seal seal;

/* Reads the key file: a regular file no group or other may read, of
 * SEAL_KEY_MIN..SEAL_KEY_MAX bytes (its last newline not counted). NULL and
 * err says why. */
seal *seal_load(const char *path, char *err, size_t errcap);
/* From bytes (tests); NULL when too short or out of memory. */
seal *seal_from(const void *key, size_t len);
void seal_free(seal *s);
/* The first 16 hex digits of the key's own SHA-256: which key a node has,
 * for logs, without showing it. */
const char *seal_id(const seal *s);

typedef hmac_part seal_part; /* {data, len} */

/* HMAC-SHA256 over the parts into hex (SEAL_HEX_LEN + NUL); -1 on an
 * OpenSSL failure. Any thread. */
int seal_mac(const seal *s, const seal_part *parts, size_t n, char hex[SEAL_HEX_LEN + 1]);
/* 0 when hex (any string, NULL too) is the seal of the parts. */
int seal_check(const seal *s, const seal_part *parts, size_t n, const char *hex);

/* The registry value for key: sealed (s) or bare (NULL); *outlen its
 * length. NULL when out of memory. Caller frees. */
char *seal_value(const seal *s, const char *key, const char *value, size_t len, size_t *outlen);
/* Checks a registry value read under key: 0 and the value without its seal
 * in *body and *bodylen (pointing into value), or -1 and why (one line). */
int seal_open(const seal *s, const char *key, const char *value, size_t len, const char **body,
              size_t *bodylen, char *why, size_t whycap);

#endif
