/* seal.c - the cluster key and its HMAC-SHA256 seals (seal.h). */
#include "cluster/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hash.h"
#include "common/hmac.h"

struct seal {
    hmac_key *key;
    char id[17];
};

seal *seal_from(const void *key, size_t len)
{
    if (len < SEAL_KEY_MIN || len > SEAL_KEY_MAX) return NULL;
    seal *s = calloc(1, sizeof *s);
    if (!s || !(s->key = hmac_key_new(key, len))) {
        seal_free(s);
        return NULL;
    }
    char hex[HASH_HEX_LEN + 1];
    hash_sha256_hex(key, len, hex);
    memcpy(s->id, hex, 16);
    s->id[16] = '\0';
    return s;
}

seal *seal_load(const char *path, char *err, size_t errcap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errcap, "cluster key %s: cannot read it: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    const char *bad = !S_ISREG(st.st_mode)        ? "not a regular file"
                      : (st.st_mode & 077)        ? "group or others may access it (chmod 600)"
                      : st.st_size > SEAL_KEY_MAX ? "larger than 4096 bytes: not a key"
                                                  : NULL;
    unsigned char key[SEAL_KEY_MAX + 1];
    ssize_t n = bad ? 0 : read(fd, key, sizeof key);
    close(fd);
    if (!bad && n < 0) {
        snprintf(err, errcap, "cluster key %s: cannot read it: %s", path, strerror(errno));
        return NULL;
    }
    /* A key made with `openssl rand -base64 48 > FILE` ends in a newline. */
    while (!bad && n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r')) n--;
    if (!bad && n < SEAL_KEY_MIN) bad = "shorter than 32 bytes (make one: openssl rand -base64 48)";
    if (!bad && n > SEAL_KEY_MAX) bad = "larger than 4096 bytes: not a key";
    if (bad) {
        snprintf(err, errcap, "cluster key %s: %s", path, bad);
        hmac_wipe(key, sizeof key);
        return NULL;
    }
    seal *s = seal_from(key, (size_t)n);
    hmac_wipe(key, sizeof key);
    if (!s) snprintf(err, errcap, "cluster key %s: cannot set up HMAC-SHA256 (OpenSSL)", path);
    return s;
}

void seal_free(seal *s)
{
    if (!s) return;
    hmac_key_free(s->key);
    free(s);
}

const char *seal_id(const seal *s)
{
    return s->id;
}

int seal_mac(const seal *s, const seal_part *parts, size_t n, char hex[SEAL_HEX_LEN + 1])
{
    unsigned char out[HMAC_SHA256_LEN];
    if (hmac_sha256_parts(s->key, parts, n, out) != 0) return -1;
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof out; i++) {
        hex[2 * i] = digits[out[i] >> 4];
        hex[2 * i + 1] = digits[out[i] & 15];
    }
    hex[SEAL_HEX_LEN] = '\0';
    return 0;
}

int seal_check(const seal *s, const seal_part *parts, size_t n, const char *hex)
{
    char want[SEAL_HEX_LEN + 1];
    if (!hex || strlen(hex) != SEAL_HEX_LEN || seal_mac(s, parts, n, want) != 0) return -1;
    return hmac_equal(want, hex, SEAL_HEX_LEN) ? 0 : -1;
}

static void kv_parts(seal_part p[3], const char *key, const char *value, size_t len)
{
    p[0] = (seal_part){"kv", 2};
    p[1] = (seal_part){key, strlen(key)};
    p[2] = (seal_part){value, len};
}

char *seal_value(const seal *s, const char *key, const char *value, size_t len, size_t *outlen)
{
    size_t extra = s ? SEAL_VALUE_EXTRA : 0;
    char *out = malloc(extra + len + 1);
    if (!out) return NULL;
    if (s) {
        seal_part p[3];
        kv_parts(p, key, value, len);
        char hex[SEAL_HEX_LEN + 1];
        if (seal_mac(s, p, 3, hex) != 0) {
            free(out);
            return NULL;
        }
        memcpy(out, SEAL_PREFIX, SEAL_PREFIX_LEN);
        memcpy(out + SEAL_PREFIX_LEN, hex, SEAL_HEX_LEN);
        out[extra - 1] = '\n';
    }
    memcpy(out + extra, value, len);
    out[extra + len] = '\0';
    *outlen = extra + len;
    return out;
}

int seal_open(const seal *s, const char *key, const char *value, size_t len, const char **body,
              size_t *bodylen, char *why, size_t whycap)
{
    int sealed = len >= SEAL_VALUE_EXTRA && memcmp(value, SEAL_PREFIX, SEAL_PREFIX_LEN) == 0 &&
                 value[SEAL_VALUE_EXTRA - 1] == '\n';
    if (!s) {
        if (sealed) {
            snprintf(why, whycap,
                     "sealed with a cluster key, and this node has none "
                     "(--cluster-key)");
            return -1;
        }
        *body = value;
        *bodylen = len;
        return 0;
    }
    if (!sealed) {
        snprintf(why, whycap, "not sealed: written by a client or node without the cluster key");
        return -1;
    }
    char hex[SEAL_HEX_LEN + 1];
    memcpy(hex, value + SEAL_PREFIX_LEN, SEAL_HEX_LEN);
    hex[SEAL_HEX_LEN] = '\0';
    seal_part p[3];
    kv_parts(p, key, value + SEAL_VALUE_EXTRA, len - SEAL_VALUE_EXTRA);
    if (seal_check(s, p, 3, hex) != 0) {
        snprintf(why, whycap,
                 "its seal does not match: written with another cluster key, for "
                 "another key, or altered");
        return -1;
    }
    *body = value + SEAL_VALUE_EXTRA;
    *bodylen = len - SEAL_VALUE_EXTRA;
    return 0;
}
