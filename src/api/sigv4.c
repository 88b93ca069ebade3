/*
 * sigv4.c - AWS Signature Version 4, verified (see sigv4.h): the parsing of
 * the Authorization header or of a presigned query, the canonical request,
 * the string to sign and the signing key's HMAC chain (OpenSSL).
 */
#include "api/sigv4.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "common/err.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"
#define SIGNED_HEADERS_MAX 2048 /* bytes of the SignedHeaders list */

/* What a signed request says of itself, from its Authorization header or
 * its presigned query. */
typedef struct claim {
    char key_id[SIGV4_KEY_ID_MAX + 1];
    char date[9]; /* YYYYMMDD of the credential scope */
    char region[65];
    char service[65];
    char signed_headers[SIGNED_HEADERS_MAX];
    char signature[65];
    char amz_date[17]; /* YYYYMMDDTHHMMSSZ */
    long expires;      /* presigned: X-Amz-Expires */
    int presigned;
} claim;

/* A query parameter, decoded (into the query copy). */
typedef struct param {
    const char *key, *val;
    size_t klen, vlen;
} param;

typedef struct query {
    char *copy;
    param p[SIGV4_QUERY_MAX];
    size_t n;
} query;

static void say(char *why, size_t whycap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t whycap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whycap, fmt, ap);
    va_end(ap);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    hex(md, sizeof md, out);
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

/* Appends s[0..n) encoded the AWS way: unreserved bytes as they are (and
 * '/' when keep_slash), every other byte %XX in upper case. */
static int encode(buf *out, const char *s, size_t n, int keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[3] = {(char)c, 0, 0};
        size_t elen = 1;
        if (!unreserved(c) && !(keep_slash && c == '/')) {
            e[0] = '%', e[1] = digits[c >> 4], e[2] = digits[c & 15];
            elen = 3;
        }
        int rc = buf_append(out, e, elen);
        if (rc) return rc;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes %XX in place (a '+' stays: AWS's signers encode a space %20);
 * the new length, or -1 on a bad escape. */
static long decode(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            s[o++] = s[i];
            continue;
        }
        if (i + 2 >= n) return -1;
        int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
        if (hi < 0 || lo < 0) return -1;
        s[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    return (long)o;
}

static void query_free(query *q)
{
    free(q->copy);
    q->copy = NULL;
}

/* Splits and decodes the query; 0, or ERR_INVAL with why. */
static int query_parse(const char *text, query *q, char *why, size_t whycap)
{
    q->n = 0;
    q->copy = strdup(text);
    if (!q->copy) {
        say(why, whycap, "out of memory");
        return ERR_NOMEM;
    }
    char *p = q->copy;
    while (*p) {
        char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len) {
            if (q->n == SIGV4_QUERY_MAX) {
                say(why, whycap, "the query has more than %d parameters", SIGV4_QUERY_MAX);
                return ERR_INVAL;
            }
            char *eq = memchr(p, '=', len);
            param *pa = &q->p[q->n++];
            pa->key = p;
            pa->klen = eq ? (size_t)(eq - p) : len;
            pa->val = eq ? eq + 1 : p + len;
            pa->vlen = eq ? len - pa->klen - 1 : 0;
            long k = decode((char *)pa->key, pa->klen);
            long v = decode((char *)pa->val, pa->vlen);
            if (k < 0 || v < 0) {
                say(why, whycap, "the query has a bad %%-escape");
                return ERR_INVAL;
            }
            pa->klen = (size_t)k, pa->vlen = (size_t)v;
        }
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

static const param *query_get(const query *q, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < q->n; i++)
        if (q->p[i].klen == n && memcmp(q->p[i].key, key, n) == 0) return &q->p[i];
    return NULL;
}

/* A parameter encoded for the canonical query: "KEY=VALUE". */
typedef struct enc {
    char *text;
    size_t len;
    size_t klen; /* of the encoded key */
} enc;

static int enc_cmp(const void *a, const void *b)
{
    const enc *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->text, y->text, n);
    if (c || x->klen != y->klen) return c ? c : (x->klen < y->klen ? -1 : 1);
    /* Equal keys: by value. */
    size_t xv = x->len - x->klen, yv = y->len - y->klen;
    n = xv < yv ? xv : yv;
    c = memcmp(x->text + x->klen, y->text + y->klen, n);
    return c ? c : (xv < yv ? -1 : xv > yv);
}

static int canonical_query(const query *q, int presigned, buf *out)
{
    enc *e = calloc(q->n ? q->n : 1, sizeof *e);
    if (!e) return ERR_NOMEM;
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < q->n && !rc; i++) {
        const param *p = &q->p[i];
        if (presigned && p->klen == 15 && memcmp(p->key, "X-Amz-Signature", 15) == 0) continue;
        buf b;
        buf_init(&b, SIGV4_CANONICAL_MAX);
        rc = encode(&b, p->key, p->klen, 0);
        size_t klen = b.len;
        if (!rc) rc = buf_append(&b, "=", 1);
        if (!rc) rc = encode(&b, p->val, p->vlen, 0);
        if (rc) {
            buf_free(&b);
            break;
        }
        e[n].klen = klen;
        e[n].text = buf_detach(&b, &e[n].len);
        n++;
    }
    if (!rc) qsort(e, n, sizeof *e, enc_cmp);
    for (size_t i = 0; i < n; i++) {
        if (!rc && i) rc = buf_append(out, "&", 1);
        if (!rc) rc = buf_append(out, e[i].text, e[i].len);
        free(e[i].text);
    }
    free(e);
    return rc;
}

/* The path without empty, "." and ".." segments, each byte encoded once
 * more; "/" when nothing is left. */
static int canonical_uri(const char *path, buf *out)
{
    size_t n = 0, plen = strlen(path);
    if (plen >= SIGV4_CANONICAL_MAX) return ERR_TOOBIG;
    /* A segment takes at least one byte and its '/'. */
    const char **seg = malloc((plen / 2 + 1) * sizeof *seg);
    size_t *len = malloc((plen / 2 + 1) * sizeof *len);
    if (!seg || !len) {
        free(seg);
        free(len);
        return ERR_NOMEM;
    }
    for (const char *p = path; *p;) {
        const char *s = strchr(p, '/');
        size_t l = s ? (size_t)(s - p) : strlen(p);
        if (l == 2 && p[0] == '.' && p[1] == '.') {
            if (n) n--;
        } else if (l && !(l == 1 && p[0] == '.')) {
            seg[n] = p, len[n] = l, n++;
        }
        if (!s) break;
        p = s + 1;
    }
    int rc = buf_append(out, "/", 1);
    for (size_t i = 0; i < n && !rc; i++) {
        if (i) rc = buf_append(out, "/", 1);
        if (!rc) rc = encode(out, seg[i], len[i], 0);
    }
    if (!rc && n && plen && path[plen - 1] == '/') rc = buf_append(out, "/", 1);
    free(seg);
    free(len);
    return rc;
}

/* A header's value with its ends trimmed and each run of spaces one. */
static int canonical_value(buf *out, const char *v)
{
    while (*v == ' ' || *v == '\t') v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int space = v[i] == ' ' || v[i] == '\t';
        if (space && i && (v[i - 1] == ' ' || v[i - 1] == '\t')) continue;
        rc = buf_append(out, space ? " " : &v[i], 1);
    }
    return rc;
}

static int lower_token(const char *s, size_t n)
{
    if (!n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 127 || (c >= 'A' && c <= 'Z') || c == ':' || c == ';') return 0;
    }
    return 1;
}

/* The canonical headers, "name:value\n" each, of the names in list (sorted,
 * distinct, lowercase, host among them). */
static int canonical_headers(const sigv4_request *r, const char *list, buf *out, char *why,
                             size_t whycap)
{
    char name[SIGNED_HEADERS_MAX];
    const char *prev = NULL;
    size_t prev_len = 0, count = 0;
    int host = 0;
    for (const char *p = list;;) {
        const char *semi = strchr(p, ';');
        size_t n = semi ? (size_t)(semi - p) : strlen(p);
        if (!lower_token(p, n) || n >= sizeof name) {
            say(why, whycap, "SignedHeaders must be lowercase header names separated by ';'");
            return ERR_INVAL;
        }
        if (prev) {
            size_t m = n < prev_len ? n : prev_len;
            int c = memcmp(prev, p, m);
            if (c > 0 || (c == 0 && prev_len >= n)) {
                say(why, whycap, "SignedHeaders must be sorted and name each header once");
                return ERR_INVAL;
            }
        }
        if (++count > SIGV4_HEADERS_MAX) {
            say(why, whycap, "SignedHeaders names more than %d headers", SIGV4_HEADERS_MAX);
            return ERR_INVAL;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        if (strcmp(name, "host") == 0) host = 1;
        const char *v = r->header(r->header_ctx, name);
        if (!v) {
            say(why, whycap, "the signed header '%s' is not in the request", name);
            return ERR_INVAL;
        }
        int rc = buf_append(out, name, n);
        if (!rc) rc = buf_append(out, ":", 1);
        if (!rc) rc = canonical_value(out, v);
        if (!rc) rc = buf_append(out, "\n", 1);
        if (rc) {
            say(why, whycap, "the canonical request exceeds %u bytes", SIGV4_CANONICAL_MAX);
            return rc;
        }
        prev = p, prev_len = n;
        if (!semi) break;
        p = semi + 1;
    }
    if (!host) {
        say(why, whycap, "SignedHeaders must include host");
        return ERR_INVAL;
    }
    return 0;
}

static int canonical(const sigv4_request *r, const query *q, const char *signed_headers,
                     const char *payload_hash, int presigned, buf *out, char *why, size_t whycap)
{
    int rc = buf_append_str(out, r->method);
    if (!rc) rc = buf_append(out, "\n", 1);
    if (!rc) rc = canonical_uri(r->path, out);
    if (!rc) rc = buf_append(out, "\n", 1);
    if (!rc) rc = canonical_query(q, presigned, out);
    if (!rc) rc = buf_append(out, "\n", 1);
    if (rc) {
        say(why, whycap, "the canonical request exceeds %u bytes", SIGV4_CANONICAL_MAX);
        return rc;
    }
    rc = canonical_headers(r, signed_headers, out, why, whycap);
    if (rc) return rc;
    rc = buf_printf(out, "\n%s\n%s", signed_headers, payload_hash);
    if (rc) say(why, whycap, "the canonical request exceeds %u bytes", SIGV4_CANONICAL_MAX);
    return rc;
}

int sigv4_canonical_request(const sigv4_request *r, const char *signed_headers,
                            const char *payload_hash, int presigned, buf *out, char *why,
                            size_t whycap)
{
    query q;
    int rc = query_parse(r->query, &q, why, whycap);
    if (!rc) rc = canonical(r, &q, signed_headers, payload_hash, presigned, out, why, whycap);
    query_free(&q);
    return rc;
}

static void hmac(const void *key, size_t klen, const char *data, size_t dlen,
                 unsigned char out[SHA256_DIGEST_LENGTH])
{
    unsigned int olen = SHA256_DIGEST_LENGTH;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)data, dlen, out, &olen);
}

void sigv4_signature(const char *secret, size_t secret_len, const char *date, const char *region,
                     const char *service, const char *string_to_sign, size_t sts_len, char out[65])
{
    unsigned char key[4 + 1024], k[SHA256_DIGEST_LENGTH];
    if (secret_len > sizeof key - 4) secret_len = sizeof key - 4;
    memcpy(key, "AWS4", 4);
    memcpy(key + 4, secret, secret_len);
    hmac(key, 4 + secret_len, date, strlen(date), k);
    hmac(k, sizeof k, region, strlen(region), k);
    hmac(k, sizeof k, service, strlen(service), k);
    hmac(k, sizeof k, TERMINATOR, sizeof TERMINATOR - 1, k);
    hmac(k, sizeof k, string_to_sign, sts_len, k);
    hex(k, sizeof k, out);
    OPENSSL_cleanse(key, sizeof key);
}

/* --- What the request claims ------------------------------------------------------- */

static int copy_field(char *dst, size_t cap, const char *s, size_t n)
{
    if (n == 0 || n >= cap) return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

enum charset { DIGITS, NAME };

/* Whether every byte of s is a digit, or (NAME) of a region's or service's
 * name: lowercase letters, digits and '-'. */
static int all_of(const char *s, enum charset set)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int digit = c >= '0' && c <= '9';
        if (!(digit || (set == NAME && ((c >= 'a' && c <= 'z') || c == '-')))) return 0;
    }
    return 1;
}

/* "KEY/YYYYMMDD/REGION/SERVICE/aws4_request". */
static int parse_credential(claim *c, const char *s, size_t n, char *why, size_t whycap)
{
    const char *part[5];
    size_t len[5], k = 0;
    const char *p = s, *end = s + n;
    while (k < 5) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        part[k] = p;
        len[k] = slash ? (size_t)(slash - p) : (size_t)(end - p);
        k++;
        if (!slash) break;
        p = slash + 1;
    }
    if (k != 5 || part[4] + len[4] != end || len[4] != sizeof TERMINATOR - 1 ||
        memcmp(part[4], TERMINATOR, len[4]) != 0) {
        say(why, whycap, "Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request");
        return ERR_INVAL;
    }
    if (copy_field(c->key_id, sizeof c->key_id, part[0], len[0]) ||
        copy_field(c->date, sizeof c->date, part[1], len[1]) || len[1] != 8 ||
        !all_of(c->date, DIGITS) || copy_field(c->region, sizeof c->region, part[2], len[2]) ||
        !all_of(c->region, NAME) || copy_field(c->service, sizeof c->service, part[3], len[3]) ||
        !all_of(c->service, NAME)) {
        say(why, whycap, "Credential has a bad access key id, date (YYYYMMDD), region or service");
        return ERR_INVAL;
    }
    return 0;
}

static int parse_signature(claim *c, const char *s, size_t n, char *why, size_t whycap)
{
    if (n != 64) goto bad;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) goto bad;
    memcpy(c->signature, s, 64);
    c->signature[64] = '\0';
    return 0;
bad:
    say(why, whycap, "Signature must be 64 lowercase hex digits");
    return ERR_INVAL;
}

static int parse_signed_headers(claim *c, const char *s, size_t n, char *why, size_t whycap)
{
    if (copy_field(c->signed_headers, sizeof c->signed_headers, s, n)) {
        say(why, whycap, "SignedHeaders is empty or longer than %d bytes", SIGNED_HEADERS_MAX - 1);
        return ERR_INVAL;
    }
    return 0;
}

/* "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...". */
static int parse_authorization(claim *c, const char *v, char *why, size_t whycap)
{
    size_t alen = sizeof ALGORITHM - 1;
    if (strncmp(v, ALGORITHM, alen) != 0 || (v[alen] != ' ' && v[alen] != '\t')) {
        say(why, whycap,
            "the Authorization header is not AWS4-HMAC-SHA256: these routes take AWS Signature "
            "Version 4");
        return ERR_INVAL;
    }
    int have = 0;
    for (const char *p = v + alen; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        const char *val = eq ? eq + 1 : p + n;
        size_t vlen = eq ? n - klen - 1 : 0;
        int rc;
        if (klen == 10 && memcmp(p, "Credential", 10) == 0)
            rc = parse_credential(c, val, vlen, why, whycap), have |= 1;
        else if (klen == 13 && memcmp(p, "SignedHeaders", 13) == 0)
            rc = parse_signed_headers(c, val, vlen, why, whycap), have |= 2;
        else if (klen == 9 && memcmp(p, "Signature", 9) == 0)
            rc = parse_signature(c, val, vlen, why, whycap), have |= 4;
        else {
            say(why, whycap, "the Authorization header has an unknown part '%.*s'",
                (int)(klen > 40 ? 40 : klen), p);
            return ERR_INVAL;
        }
        if (rc) return rc;
        if (!comma) break;
        p = comma + 1;
    }
    if (have != 7) {
        say(why, whycap, "the Authorization header needs Credential, SignedHeaders and Signature");
        return ERR_INVAL;
    }
    return 0;
}

static int parse_presigned(claim *c, const query *q, char *why, size_t whycap)
{
    const param *alg = query_get(q, "X-Amz-Algorithm"), *cred = query_get(q, "X-Amz-Credential"),
                *date = query_get(q, "X-Amz-Date"), *exp = query_get(q, "X-Amz-Expires"),
                *sh = query_get(q, "X-Amz-SignedHeaders"), *sig = query_get(q, "X-Amz-Signature");
    if (!alg || !cred || !date || !exp || !sh || !sig) {
        say(why, whycap,
            "a presigned request needs X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, "
            "X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature");
        return ERR_INVAL;
    }
    if (alg->vlen != sizeof ALGORITHM - 1 || memcmp(alg->val, ALGORITHM, alg->vlen) != 0) {
        say(why, whycap, "X-Amz-Algorithm must be AWS4-HMAC-SHA256");
        return ERR_INVAL;
    }
    char num[16];
    if (copy_field(num, sizeof num, exp->val, exp->vlen) || !all_of(num, DIGITS) ||
        (c->expires = strtol(num, NULL, 10)) < 1 || c->expires > SIGV4_EXPIRES_MAX) {
        say(why, whycap, "X-Amz-Expires must be 1 to %d seconds", SIGV4_EXPIRES_MAX);
        return ERR_INVAL;
    }
    if (copy_field(c->amz_date, sizeof c->amz_date, date->val, date->vlen)) {
        say(why, whycap, "X-Amz-Date must be YYYYMMDDTHHMMSSZ");
        return ERR_INVAL;
    }
    int rc = parse_credential(c, cred->val, cred->vlen, why, whycap);
    if (!rc) rc = parse_signed_headers(c, sh->val, sh->vlen, why, whycap);
    if (!rc) rc = parse_signature(c, sig->val, sig->vlen, why, whycap);
    c->presigned = 1;
    return rc;
}

/* YYYYMMDDTHHMMSSZ as seconds since the epoch, or -1. */
static time_t parse_amz_date(const char *s)
{
    if (strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z') return -1;
    for (int i = 0; i < 15; i++)
        if (i != 8 && (s[i] < '0' || s[i] > '9')) return -1;
    struct tm tm = {0};
    char part[5];
    memcpy(part, s, 4), part[4] = '\0', tm.tm_year = atoi(part) - 1900;
    memcpy(part, s + 4, 2), part[2] = '\0', tm.tm_mon = atoi(part) - 1;
    memcpy(part, s + 6, 2), tm.tm_mday = atoi(part);
    memcpy(part, s + 9, 2), tm.tm_hour = atoi(part);
    memcpy(part, s + 11, 2), tm.tm_min = atoi(part);
    memcpy(part, s + 13, 2), tm.tm_sec = atoi(part);
    if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60)
        return -1;
    return timegm(&tm);
}

static void format_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* The clock rule: within SIGV4_SKEW_SECONDS of now, or, presigned, from then
 * until it expires. */
static enum sigv4_status check_time(const claim *c, time_t at, time_t now, char *why, size_t whycap)
{
    char a[17], b[17], n[17];
    format_amz_date(now, n);
    if (at > now + SIGV4_SKEW_SECONDS) {
        format_amz_date(now + SIGV4_SKEW_SECONDS, b);
        say(why, whycap, "Signature not yet current: %s is still later than %s (%s + 5 min.)",
            c->amz_date, b, n);
        return SIGV4_EXPIRED;
    }
    if (c->presigned ? now > at + c->expires : at < now - SIGV4_SKEW_SECONDS) {
        format_amz_date(c->presigned ? at + c->expires : now - SIGV4_SKEW_SECONDS, b);
        format_amz_date(at, a);
        if (c->presigned)
            say(why, whycap, "Signature expired: %s is now earlier than %s (its X-Amz-Expires)", b,
                n);
        else
            say(why, whycap, "Signature expired: %s is now earlier than %s (%s - 5 min.)", a, b, n);
        return SIGV4_EXPIRED;
    }
    return SIGV4_OK;
}

/* Whether the lowercase name is one of list's ';'-separated names. */
static int listed(const char *list, const char *name, size_t n)
{
    for (const char *p = list;;) {
        const char *semi = strchr(p, ';');
        size_t m = semi ? (size_t)(semi - p) : strlen(p);
        if (m == n && memcmp(p, name, n) == 0) return 1;
        if (!semi) return 0;
        p = semi + 1;
    }
}

/* AWS's rule that each x-amz-* header sent is signed (the SDKs sign them
 * all): one left out could be changed by whoever captured the request. The
 * exception is X-Amz-Content-Sha256, whose value is the canonical request's
 * payload line and so is covered whether listed or not. */
static enum sigv4_status unsigned_headers(const sigv4_request *r, const char *list, char *why,
                                          size_t whycap)
{
    if (!r->header_at) return SIGV4_OK;
    char name[SIGNED_HEADERS_MAX];
    const char *h;
    for (size_t i = 0; (h = r->header_at(r->header_ctx, i)) != NULL; i++) {
        size_t n = strlen(h);
        if (n < 6 || strncasecmp(h, "x-amz-", 6) != 0) continue;
        /* A name longer than the list can hold cannot be listed: refused. */
        size_t m = n < sizeof name ? n : sizeof name - 1;
        for (size_t j = 0; j < m; j++) name[j] = (char)tolower((unsigned char)h[j]);
        name[m] = '\0';
        if (m == n && (strcmp(name, "x-amz-content-sha256") == 0 || listed(list, name, n)))
            continue;
        say(why, whycap,
            "There were headers present in the request which were not signed: '%.64s' is not in "
            "SignedHeaders",
            name);
        return SIGV4_UNSIGNED;
    }
    return SIGV4_OK;
}

/* The payload's hash as the signer put it in the canonical request: the
 * X-Amz-Content-Sha256 header when there is one, else the body's (NULL
 * while the body is not read). */
static enum sigv4_status payload_hash(const sigv4_request *r, const char **declared,
                                      char body_hash[65], char *why, size_t whycap)
{
    const char *h = r->header(r->header_ctx, "x-amz-content-sha256");
    *declared = NULL;
    if (h) {
        size_t n = strlen(h);
        int ok = n == 64;
        for (size_t i = 0; ok && i < n; i++) ok = hexval(h[i]) >= 0;
        if (!ok) {
            say(why, whycap,
                "X-Amz-Content-Sha256 must be the body's SHA-256 in hex (unsigned and streamed "
                "payloads are not accepted)");
            return SIGV4_MALFORMED;
        }
        *declared = h;
    }
    if (r->have_body) sha256_hex(r->body, r->body_len, body_hash);
    return SIGV4_OK;
}

enum sigv4_status sigv4_verify(const sigv4_request *r, const char *service, sigv4_lookup_fn lookup,
                               void *lookup_ctx, time_t now, char *why, size_t whycap)
{
    claim c;
    memset(&c, 0, sizeof c);
    query q;
    enum sigv4_status st = SIGV4_MALFORMED;
    if (query_parse(r->query, &q, why, whycap)) goto out;
    const char *authz = r->header(r->header_ctx, "authorization");
    if (authz) {
        if (parse_authorization(&c, authz, why, whycap)) goto out;
        const char *d = r->header(r->header_ctx, "x-amz-date");
        if (!d || copy_field(c.amz_date, sizeof c.amz_date, d, strlen(d))) {
            say(why, whycap, "X-Amz-Date is missing or not YYYYMMDDTHHMMSSZ");
            goto out;
        }
    } else if (query_get(&q, "X-Amz-Algorithm") || query_get(&q, "X-Amz-Signature")) {
        if (parse_presigned(&c, &q, why, whycap)) goto out;
    } else {
        say(why, whycap, "Missing Authentication Token");
        st = SIGV4_MISSING;
        goto out;
    }
    time_t at = parse_amz_date(c.amz_date);
    if (at < 0) {
        say(why, whycap, "X-Amz-Date must be YYYYMMDDTHHMMSSZ");
        goto out;
    }
    if (memcmp(c.amz_date, c.date, 8) != 0) {
        say(why, whycap, "Credential should be scoped to a valid date: %s is not the day of %s",
            c.date, c.amz_date);
        goto out;
    }
    if (service && strcmp(c.service, service) != 0) {
        say(why, whycap, "Credential should be scoped to correct service: '%s'", service);
        goto out;
    }
    const char *secret;
    size_t secret_len;
    if (lookup(lookup_ctx, c.key_id, &secret, &secret_len) != 0) {
        say(why, whycap, "The security token included in the request is invalid.");
        st = SIGV4_UNKNOWN_KEY;
        goto out;
    }
    st = check_time(&c, at, now, why, whycap);
    if (st != SIGV4_OK) goto out;
    st = unsigned_headers(r, c.signed_headers, why, whycap);
    if (st != SIGV4_OK) goto out;
    const char *declared;
    char body_hash[65];
    st = payload_hash(r, &declared, body_hash, why, whycap);
    if (st != SIGV4_OK) goto out;
    if (!declared && !r->have_body) {
        /* The signature covers a body not read yet: all else is right. */
        st = SIGV4_PENDING;
        goto out;
    }
    buf creq;
    buf_init(&creq, SIGV4_CANONICAL_MAX);
    st = SIGV4_MALFORMED;
    if (canonical(r, &q, c.signed_headers, declared ? declared : body_hash, c.presigned, &creq, why,
                  whycap) == 0) {
        char creq_hash[65], want[65];
        sha256_hex(creq.data, creq.len, creq_hash);
        char sts[256];
        int n = snprintf(sts, sizeof sts, ALGORITHM "\n%s\n%s/%s/%s/" TERMINATOR "\n%s", c.amz_date,
                         c.date, c.region, c.service, creq_hash);
        sigv4_signature(secret, secret_len, c.date, c.region, c.service, sts, (size_t)n, want);
        if (CRYPTO_memcmp(want, c.signature, 64) != 0) {
            say(why, whycap,
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.");
            st = SIGV4_MISMATCH;
        } else if (declared && r->have_body && strcasecmp(declared, body_hash) != 0) {
            say(why, whycap,
                "The provided 'x-amz-content-sha256' header does not match what was "
                "computed.");
            st = SIGV4_MISMATCH;
        } else {
            st = r->have_body ? SIGV4_OK : SIGV4_PENDING;
        }
    }
    buf_free(&creq);
out:
    query_free(&q);
    OPENSSL_cleanse(&c, sizeof c);
    return st;
}
