#include "common/parse.h"

#include <string.h>

#include "common/err.h"

int parse_u64(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 20) return len ? ERR_TOOBIG : ERR_INVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return ERR_INVAL;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return ERR_TOOBIG;
        v = v * 10 + d;
    }
    if (v < min || v > max) return ERR_TOOBIG;
    *out = v;
    return 0;
}

int parse_host_port(const char *s, char *host, size_t hostcap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) return ERR_INVAL;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= hostcap) return ERR_TOOBIG;
    uint64_t p;
    int rc = parse_u64(colon + 1, strlen(colon + 1), 0, 65535, &p);
    if (rc) return rc;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}
