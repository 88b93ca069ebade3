/*
 * fuzz_sigv4 - SigV4's canonicalisation and verification (api/sigv4.c)
 * against arbitrary requests. The input is lines: method, path, query,
 * SignedHeaders, then "name:value" headers up to an empty line, then the
 * body. The request is verified as it is (with and without its body, and as
 * a presigned query), then signed here from its own canonical request:
 * whatever canonicalises must then verify (or, when an x-amz-* header is
 * not among the signed ones, be refused for that), and must stop verifying
 * when a byte of the signature changes.
 */
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/sigv4.h"

#define SECRET "fuzz-secret-0123456789"
#define NOW 1440938160 /* 20150830T123600Z */
#define HEADERS_MAX 32

typedef struct hdrs {
    const char *name[HEADERS_MAX + 2], *value[HEADERS_MAX + 2];
    int n;
} hdrs;

static const char *get_header(const void *ctx, const char *name)
{
    const hdrs *h = ctx;
    for (int i = 0; i < h->n; i++)
        if (strcasecmp(h->name[i], name) == 0) return h->value[i];
    return NULL;
}

static const char *get_header_at(const void *ctx, size_t i)
{
    const hdrs *h = ctx;
    return i < (size_t)h->n ? h->name[i] : NULL;
}

static int lookup(void *ctx, const char *key_id, const char **secret, size_t *len)
{
    (void)ctx;
    if (strcmp(key_id, "AKIDFUZZ") != 0) return -1;
    *secret = SECRET;
    *len = sizeof SECRET - 1;
    return 0;
}

/* Whether every x-amz-* header of h is in the ';'-separated list, as AWS
 * requires (x-amz-content-sha256 is never in h). */
static int amz_headers_signed(const hdrs *h, const char *list)
{
    for (int i = 0; i < h->n; i++) {
        size_t n = strlen(h->name[i]);
        if (strncasecmp(h->name[i], "x-amz-", 6) != 0) continue;
        int found = 0;
        for (const char *p = list; !found;) {
            const char *semi = strchr(p, ';');
            size_t m = semi ? (size_t)(semi - p) : strlen(p);
            found = m == n && strncasecmp(p, h->name[i], n) == 0;
            /* the list's own names must be lowercase to match */
            for (size_t k = 0; found && k < m; k++)
                if (p[k] >= 'A' && p[k] <= 'Z') found = 0;
            if (!semi) break;
            p = semi + 1;
        }
        if (!found) return 0;
    }
    return 1;
}

/* The next line of [*p, end), NUL-terminated in place, or NULL at the end. */
static char *line(char **p, char *end)
{
    if (*p >= end) return NULL;
    char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
    if (!nl) nl = end;
    *nl = '\0';
    *p = nl + 1;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) return 0;
    char *copy = malloc(size + 1), *p = copy, *end = copy + size;
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *method = line(&p, end), *path = line(&p, end), *query = line(&p, end),
         *signed_headers = line(&p, end);
    if (!signed_headers) { /* the lines before it are there too */
        free(copy);
        return 0;
    }
    /* The first two header slots are the signer's: x-amz-date and
     * authorization; the input's own of those names are left out. */
    hdrs h = {{"x-amz-date", "authorization"}, {"20150830T123600Z", NULL}, 2};
    char *l;
    while ((l = line(&p, end)) && *l && h.n < HEADERS_MAX + 2) {
        char *colon = strchr(l, ':');
        if (!colon) continue;
        *colon = '\0';
        if (strcasecmp(l, "authorization") == 0 || strcasecmp(l, "x-amz-date") == 0 ||
            strcasecmp(l, "x-amz-content-sha256") == 0)
            continue;
        h.name[h.n] = l, h.value[h.n] = colon + 1, h.n++;
    }
    const char *body = p < end ? p : "";
    size_t body_len = p < end ? (size_t)(end - p) : 0;
    sigv4_request r = {method, path, query, get_header, &h, body, body_len, 1, get_header_at};
    char why[512];

    /* As it is: the input's own Authorization (its first header named so)
     * or a presigned query. */
    sigv4_verify(&r, NULL, lookup, NULL, NOW, why, sizeof why);
    r.have_body = 0;
    sigv4_verify(&r, "lambda", lookup, NULL, NOW, why, sizeof why);
    r.have_body = 1;

    /* Signed here from its canonical request: it must verify. */
    unsigned char md[SHA256_DIGEST_LENGTH];
    char body_hash[65], creq_hash[65], sig[65], sts[256], authz[4096];
    SHA256((const unsigned char *)body, body_len, md);
    for (int i = 0; i < 32; i++) sprintf(body_hash + 2 * i, "%02x", md[i]);
    buf creq;
    buf_init(&creq, SIGV4_CANONICAL_MAX);
    if (strstr(signed_headers, "authorization") == NULL &&
        sigv4_canonical_request(&r, signed_headers, body_hash, 0, &creq, why, sizeof why) == 0) {
        SHA256((const unsigned char *)creq.data, creq.len, md);
        for (int i = 0; i < 32; i++) sprintf(creq_hash + 2 * i, "%02x", md[i]);
        int n = snprintf(sts, sizeof sts,
                         "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/r/lambda/aws4_request\n%s",
                         creq_hash);
        sigv4_signature(SECRET, sizeof SECRET - 1, "20150830", "r", "lambda", sts, (size_t)n, sig);
        int a = snprintf(authz, sizeof authz,
                         "AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20150830/r/lambda/aws4_request, "
                         "SignedHeaders=%s, Signature=%s",
                         signed_headers, sig);
        /* A list with a ',' reads as the next part of the header: not a
         * round trip. */
        if (a > 0 && (size_t)a < sizeof authz && !strchr(signed_headers, ',') &&
            !strchr(signed_headers, ' ') && strlen(signed_headers) < 2048) {
            h.value[1] = authz;
            enum sigv4_status st = sigv4_verify(&r, "lambda", lookup, NULL, NOW, why, sizeof why);
            if (!amz_headers_signed(&h, signed_headers)) {
                /* Well signed, but an x-amz-* header is left out of it. */
                if (st != SIGV4_UNSIGNED) {
                    fprintf(stderr, "an unsigned x-amz-* header accepted (%d): %s\n", st, why);
                    abort();
                }
                goto done;
            }
            if (st != SIGV4_OK) {
                fprintf(stderr, "signed here but refused (%d): %s\n", st, why);
                abort();
            }
            char *s = strstr(authz, "Signature=") + 10;
            s[0] = s[0] == '0' ? '1' : '0';
            if (sigv4_verify(&r, "lambda", lookup, NULL, NOW, why, sizeof why) != SIGV4_MISMATCH)
                abort();
        }
    }
done:
    buf_free(&creq);
    free(copy);
    return 0;
}
