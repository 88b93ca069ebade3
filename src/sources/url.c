/*
 * url.c - the parts of a source's URL every connector shares
 * (scheme://[USER[:PASS]@]HOST[:PORT]/PATH[?QUERY]) and redacting credentials for everything shown
 * (sources.h).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/limits.h"
#include "sources/connector.h"
#include "sources/sources.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..len) into out; -1 on a bad escape, a NUL or no room. */
static int decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len) return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = h * 16 + l;
            i += 2;
        }
        if (c == 0 || o + 1 >= cap) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

int src_url_parse(const char *url, src_url *u, char *err, size_t errcap)
{
    memset(u, 0, sizeof *u);
    size_t ulen = strlen(url);
    if (ulen > SPATE_SOURCE_URL_MAX) {
        snprintf(err, errcap, "malformed URL: longer than %d bytes", SPATE_SOURCE_URL_MAX);
        return ERR_INVAL;
    }
    for (size_t i = 0; i < ulen; i++)
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f) {
            snprintf(err, errcap, "malformed URL: a space or control character at byte %zu", i);
            return ERR_INVAL;
        }
    const char *sep = strstr(url, "://");
    if (!sep || sep == url || (size_t)(sep - url) >= sizeof u->scheme) {
        snprintf(err, errcap, "malformed URL: no scheme (SCHEME://HOST:PORT/...)");
        return ERR_INVAL;
    }
    for (size_t i = 0; i < (size_t)(sep - url); i++) u->scheme[i] = (char)tolower(url[i]);
    const char *auth = sep + 3;
    const char *end = auth + strcspn(auth, "/?#");
    if (strchr(url, '#')) {
        snprintf(err, errcap, "malformed URL: a fragment ('#') means nothing here");
        return ERR_INVAL;
    }
    /* An '@' past the host is a password's unencoded '/' or '?' cutting
     * the credentials short (u:2024/pw@host): the URL would name another
     * host and show the password as its path. The message quotes none of it. */
    if (strchr(end, '@')) {
        snprintf(err, errcap,
                 "malformed URL: an '@' after the host (percent-encode '/', '?' and '@' in a "
                 "user or password as %%2F, %%3F and %%40)");
        return ERR_INVAL;
    }
    /* The last '@' before the path ends the credentials. */
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@') at = p;
    const char *host = auth;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        size_t user_len = colon ? (size_t)(colon - auth) : (size_t)(at - auth);
        if (decode(auth, user_len, u->user, sizeof u->user) ||
            (colon && decode(colon + 1, (size_t)(at - colon - 1), u->pass, sizeof u->pass))) {
            snprintf(err, errcap, "malformed URL: bad user or password (percent-encode them)");
            return ERR_INVAL;
        }
        u->has_pass = colon != NULL;
        host = at + 1;
    }
    const char *hend = end, *port = NULL;
    if (*host == '[') {
        const char *rb = memchr(host, ']', (size_t)(end - host));
        if (!rb) {
            snprintf(err, errcap, "malformed URL: '[' without ']' in the host");
            return ERR_INVAL;
        }
        if (rb + 1 < end && rb[1] != ':') {
            snprintf(err, errcap, "malformed URL: junk after the host's ']'");
            return ERR_INVAL;
        }
        if (rb + 1 < end) port = rb + 2;
        host++;
        hend = rb;
    } else {
        const char *colon = memchr(host, ':', (size_t)(end - host));
        if (colon) {
            port = colon + 1;
            hend = colon;
        }
    }
    if (hend == host || decode(host, (size_t)(hend - host), u->host, sizeof u->host)) {
        snprintf(err, errcap, "malformed URL: no host");
        return ERR_INVAL;
    }
    if (port) {
        long v = 0;
        const char *p = port;
        for (; p < end && isdigit((unsigned char)*p) && v <= 65535; p++) v = v * 10 + (*p - '0');
        if (p == port || p != end || v < 1 || v > 65535) {
            snprintf(err, errcap, "malformed URL: the port must be a number from 1 to 65535");
            return ERR_INVAL;
        }
        u->port = (int)v;
    }
    const char *q = strchr(end, '?');
    const char *path = *end == '/' ? end + 1 : end;
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    if (plen && decode(path, plen, u->path, sizeof u->path)) {
        snprintf(err, errcap, "malformed URL: bad path (percent-encode it, at most %zu bytes)",
                 sizeof u->path - 1);
        return ERR_INVAL;
    }
    u->query = strdup(q ? q + 1 : "");
    if (!u->query) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    return 0;
}

void src_url_free(src_url *u)
{
    free(u->query);
    u->query = NULL;
}

/* Calls cb for each key=value of the query; stops at a non-zero return. */
static int each_param(const src_url *u,
                      int (*cb)(const char *k, size_t kl, const char *v, size_t vl, void *d),
                      void *d)
{
    const char *p = u->query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t kl = eq ? (size_t)(eq - p) : len;
        int rc = cb(p, kl, eq ? eq + 1 : p + len, eq ? len - kl - 1 : 0, d);
        if (rc) return rc;
        p += len + (amp ? 1 : 0);
    }
    return 0;
}

typedef struct param_find {
    const char *key;
    char *out;
    size_t cap;
    int found;
} param_find;

static int find_one(const char *k, size_t kl, const char *v, size_t vl, void *d)
{
    param_find *f = d;
    if (kl != strlen(f->key) || memcmp(k, f->key, kl) != 0) return 0;
    f->found = decode(v, vl, f->out, f->cap) == 0 ? 1 : -1;
    return 1;
}

int src_url_param(const src_url *u, const char *key, char *out, size_t cap)
{
    param_find f = {key, out, cap, 0};
    each_param(u, find_one, &f);
    if (f.found < 0) return ERR_INVAL;
    return f.found ? 0 : 1;
}

typedef struct param_check {
    const char *const *known;
    char *err;
    size_t errcap;
} param_check;

static int check_one(const char *k, size_t kl, const char *v, size_t vl, void *d)
{
    param_check *c = d;
    for (const char *const *n = c->known; *n; n++)
        if (kl == strlen(*n) && memcmp(k, *n, kl) == 0) return 0;
    snprintf(c->err, c->errcap, "unknown URL parameter '%.*s'", (int)(kl > 64 ? 64 : kl), k);
    return ERR_INVAL;
}

int src_url_check_keys(const src_url *u, const char *const *known, char *err, size_t errcap)
{
    param_check c = {known, err, errcap};
    return each_param(u, check_one, &c);
}

/* scheme://user:secret@host... -> scheme://user:***@host...; a URL with no
 * password is shown as it is, but in a NATS URL a user alone is a token:
 * TOKEN@HOST is shown as ***@HOST. What cannot be parsed is not shown at all. */
void sources_url_redact(const char *url, char *out, size_t cap)
{
    const char *sep = strstr(url, "://");
    if (!sep) {
        snprintf(out, cap, "(unparsable URL)");
        return;
    }
    const char *auth = sep + 3;
    const char *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@') at = p;
    const char *late = strrchr(end, '@');
    if (late) {
        /* Not a URL src_url_parse takes (a password's unencoded '/' or '?'
         * ends the host early): whatever stands before the last '@' may be
         * the password. */
        snprintf(out, cap, "%.*s***%s", (int)(auth - url), url, late);
        return;
    }
    if (!at) {
        snprintf(out, cap, "%s", url);
        return;
    }
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon && sep - url == 4 && strncasecmp(url, "nats", 4) == 0) {
        snprintf(out, cap, "%.*s***%s", (int)(auth - url), url, at);
        return;
    }
    if (!colon) {
        snprintf(out, cap, "%s", url);
        return;
    }
    snprintf(out, cap, "%.*s:***%s", (int)(colon - url), url, at);
}
