/*
 * query.c - walking and decoding a request's query string.
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "http/server.h"

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Decodes src[0..len) into dst (room for len + 1 bytes); the length, or -1. */
static long decode(const char *src, size_t len, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '%') {
            if (i + 2 >= len) return -1;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            dst[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dst[o++] = src[i] == '+' ? ' ' : src[i];
        }
    }
    dst[o] = '\0';
    return (long)o;
}

int http_query_parse(const char *query, http_query_cb cb, void *data)
{
    /* Each pair is decoded on the stack when it fits (every query string the
     * API takes does): no allocation to fail, and a failure in one would be
     * answered as a malformed query by most callers. */
    char stack[4096];
    char *heap = NULL;
    const char *p = query;
    int rc = 0;
    while (*p && rc == 0) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > 0) {
            char *k = stack;
            if (len + 2 > sizeof stack) {
                free(heap);
                if (!(heap = malloc(len + 2))) return ERR_NOMEM;
                k = heap;
            }
            const char *eq = memchr(p, '=', len);
            size_t klen = eq ? (size_t)(eq - p) : len;
            long kd = decode(p, klen, k);
            char *v = k + (kd < 0 ? 0 : kd) + 1;
            long vd = eq ? decode(eq + 1, len - klen - 1, v) : 0;
            if (!eq) v[0] = '\0';
            if (kd < 0 || vd < 0)
                rc = ERR_INVAL;
            else
                rc = cb(k, (size_t)kd, v, (size_t)vd, data);
        }
        p += len + (amp ? 1 : 0);
    }
    free(heap);
    return rc;
}
