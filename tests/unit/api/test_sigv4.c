/*
 * test_sigv4 - AWS Signature Version 4 verified (api/sigv4.c) against cases
 * of AWS's published test suite (aws-sig-v4-test-suite: the example key
 * AKIDEXAMPLE, service "service", 2015-08-30T12:36:00Z), and every way a
 * request is refused.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/sha.h>

#include "api/sigv4.h"
#include "common/err.h"
#include "test.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define NOW 1440938160 /* 20150830T123600Z */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct hdrs {
    const char *kv[16]; /* name, value, ..., NULL */
} hdrs;

static const char *get_header(const void *ctx, const char *name)
{
    const hdrs *h = ctx;
    for (int i = 0; h->kv[i]; i += 2)
        if (strcasecmp(h->kv[i], name) == 0) return h->kv[i + 1];
    return NULL;
}

static const char *get_header_at(const void *ctx, size_t i)
{
    const hdrs *h = ctx;
    for (size_t j = 0; h->kv[2 * j]; j++)
        if (j == i) return h->kv[2 * j];
    return NULL;
}

static int lookup(void *ctx, const char *key_id, const char **secret, size_t *len)
{
    (void)ctx;
    if (strcmp(key_id, "AKIDEXAMPLE") != 0) return -1;
    *secret = SECRET;
    *len = strlen(SECRET);
    return 0;
}

static const char *auth_of(const char *signed_headers, const char *signature, char *out, size_t cap)
{
    snprintf(out, cap,
             "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
             "SignedHeaders=%s, Signature=%s",
             signed_headers, signature);
    return out;
}

typedef struct vector {
    const char *name, *method, *path, *query;
    const char *extra[4]; /* more headers: name, value */
    const char *body;
    const char *signed_headers, *signature;
} vector;

/* From the suite's .req and .authz files; a path or query the suite shows
 * raw is here as a client sends it (percent-encoded once). */
static const vector vectors[] = {
    {"get-vanilla-query-order-key-case",
     "GET",
     "/",
     "Param2=value2&Param1=value1",
     {NULL},
     "",
     "host;x-amz-date",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-header-value-trim",
     "GET",
     "/",
     "",
     {"My-Header1", " value1", "My-Header2", " \"a   b   c\""},
     "",
     "host;my-header1;my-header2;x-amz-date",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
    {"get-vanilla-utf8-query",
     "GET",
     "/",
     "%E1%88%B4=bar",
     {NULL},
     "",
     "host;x-amz-date",
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"post-x-www-form-urlencoded",
     "POST",
     "/",
     "",
     {"Content-Type", "application/x-www-form-urlencoded"},
     "Param1=value1",
     "content-type;host;x-amz-date",
     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
    {"get-unreserved",
     "GET",
     "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     "",
     {NULL},
     "",
     "host;x-amz-date",
     "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"post-vanilla-empty-query-value",
     "POST",
     "/",
     "Param1=value1",
     {NULL},
     "",
     "host;x-amz-date",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    /* The suite signs the raw path "/\u1234": a signer encodes it once, so
     * the bytes are what it encoded. */
    {"get-utf8",
     "GET",
     "/\xe1\x88\xb4",
     "",
     {NULL},
     "",
     "host;x-amz-date",
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
};

typedef struct built {
    char authz[512];
    hdrs h;
    sigv4_request r;
} built;

static void build(const vector *v, built *b, const char *signature)
{
    memset(b, 0, sizeof *b);
    int i = 0;
    b->h.kv[i++] = "Host";
    b->h.kv[i++] = "example.amazonaws.com";
    b->h.kv[i++] = "X-Amz-Date";
    b->h.kv[i++] = "20150830T123600Z";
    for (int j = 0; j < 4 && v->extra[j]; j += 2) {
        b->h.kv[i++] = v->extra[j];
        b->h.kv[i++] = v->extra[j + 1];
    }
    b->h.kv[i++] = "Authorization";
    b->h.kv[i++] =
        auth_of(v->signed_headers, signature ? signature : v->signature, b->authz, sizeof b->authz);
    b->r = (sigv4_request){v->method, v->path,         v->query, get_header,   &b->h,
                           v->body,   strlen(v->body), 1,        get_header_at};
}

static enum sigv4_status verify(const sigv4_request *r, time_t now)
{
    char why[512] = "";
    enum sigv4_status st = sigv4_verify(r, "service", lookup, NULL, now, why, sizeof why);
    if (st != SIGV4_OK && st != SIGV4_PENDING) CHECK(why[0] != '\0');
    return st;
}

static void test_suite_vectors(void)
{
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        built b;
        build(&vectors[i], &b, NULL);
        enum sigv4_status st = verify(&b.r, NOW);
        if (st != SIGV4_OK) fprintf(stderr, "    %s: status %d\n", vectors[i].name, st);
        CHECK_INT(st, SIGV4_OK);
        /* Any other service in the scope is refused. */
        char why[256];
        CHECK_INT(sigv4_verify(&b.r, "lambda", lookup, NULL, NOW, why, sizeof why),
                  SIGV4_MALFORMED);
    }
}

static void test_canonical_request(void)
{
    built b;
    build(&vectors[0], &b, NULL);
    buf out;
    buf_init(&out, SIGV4_CANONICAL_MAX);
    char why[128];
    CHECK_INT(
        sigv4_canonical_request(&b.r, "host;x-amz-date", EMPTY_SHA256, 0, &out, why, sizeof why),
        0);
    CHECK(buf_append(&out, "", 1) == 0);
    CHECK_STR(out.data, "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
                        "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA256);
    /* Lambda's and SQS's signers encode a path encoded once more; the
     * segments "", "." and ".." go first; a '+' in the query is no space. */
    sigv4_request r = b.r;
    r.path = "/2015-03-31//functions/./x/../my%3Afn%20a/invocations";
    r.query = "Qualifier=a+b&e=%7e&z";
    buf_reset(&out);
    CHECK_INT(sigv4_canonical_request(&r, "host", EMPTY_SHA256, 0, &out, why, sizeof why), 0);
    CHECK(buf_append(&out, "", 1) == 0);
    CHECK_STR(out.data,
              "GET\n/2015-03-31/functions/my%253Afn%2520a/invocations\n"
              "Qualifier=a%2Bb&e=~&z=\nhost:example.amazonaws.com\n\nhost\n" EMPTY_SHA256);
    /* A presigned request's own signature stays out of its query. */
    r.path = "/";
    r.query = "X-Amz-Signature=abc&A=1";
    buf_reset(&out);
    CHECK_INT(sigv4_canonical_request(&r, "host", EMPTY_SHA256, 1, &out, why, sizeof why), 0);
    CHECK(buf_append(&out, "", 1) == 0);
    CHECK_STR(out.data, "GET\n/\nA=1\nhost:example.amazonaws.com\n\nhost\n" EMPTY_SHA256);
    /* Bad escapes, unsorted or uppercase SignedHeaders, no host. */
    r.query = "a=%zz";
    CHECK_INT(sigv4_canonical_request(&r, "host", EMPTY_SHA256, 0, &out, why, sizeof why),
              ERR_INVAL);
    r.query = "a=%4";
    CHECK_INT(sigv4_canonical_request(&r, "host", EMPTY_SHA256, 0, &out, why, sizeof why),
              ERR_INVAL);
    r.query = "";
    CHECK_INT(
        sigv4_canonical_request(&r, "x-amz-date;host", EMPTY_SHA256, 0, &out, why, sizeof why),
        ERR_INVAL);
    CHECK_INT(sigv4_canonical_request(&r, "Host", EMPTY_SHA256, 0, &out, why, sizeof why),
              ERR_INVAL);
    CHECK_INT(sigv4_canonical_request(&r, "x-amz-date", EMPTY_SHA256, 0, &out, why, sizeof why),
              ERR_INVAL);
    CHECK_INT(sigv4_canonical_request(&r, "host;host", EMPTY_SHA256, 0, &out, why, sizeof why),
              ERR_INVAL);
    CHECK_INT(sigv4_canonical_request(&r, "host;x-absent", EMPTY_SHA256, 0, &out, why, sizeof why),
              ERR_INVAL);
    CHECK(strstr(why, "x-absent") != NULL);
    buf_free(&out);
}

static void test_refusals(void)
{
    const vector *post = &vectors[3];
    built b;
    build(post, &b, "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473b");
    CHECK_INT(verify(&b.r, NOW), SIGV4_MISMATCH);
    /* A tampered body or signed header. */
    build(post, &b, NULL);
    b.r.body = "Param1=value2";
    CHECK_INT(verify(&b.r, NOW), SIGV4_MISMATCH);
    build(post, &b, NULL);
    b.h.kv[5] = "text/plain";
    CHECK_INT(verify(&b.r, NOW), SIGV4_MISMATCH);
    /* The clock: 5 minutes either way, not a second more. */
    build(post, &b, NULL);
    CHECK_INT(verify(&b.r, NOW + 300), SIGV4_OK);
    CHECK_INT(verify(&b.r, NOW - 300), SIGV4_OK);
    CHECK_INT(verify(&b.r, NOW + 301), SIGV4_EXPIRED);
    CHECK_INT(verify(&b.r, NOW - 301), SIGV4_EXPIRED);
    CHECK_INT(verify(&b.r, NOW + 600), SIGV4_EXPIRED);
    /* Without the body: all but the signature is checked. */
    b.r.have_body = 0;
    CHECK_INT(verify(&b.r, NOW), SIGV4_PENDING);
    CHECK_INT(verify(&b.r, NOW + 600), SIGV4_EXPIRED);
    /* An unknown key, no authorization, a bearer token. */
    build(post, &b, NULL);
    char authz[512];
    strcpy(authz, b.authz);
    memcpy(strstr(authz, "AKIDEXAMPLE"), "AKIDEXAMPLF", 11);
    b.h.kv[7] = authz;
    CHECK_INT(verify(&b.r, NOW), SIGV4_UNKNOWN_KEY);
    b.h.kv[6] = "X-Other";
    CHECK_INT(verify(&b.r, NOW), SIGV4_MISSING);
    b.h.kv[6] = "Authorization";
    b.h.kv[7] = "Bearer 0123456789abcdef0123";
    CHECK_INT(verify(&b.r, NOW), SIGV4_MALFORMED);
    static const char *malformed[] = {
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service, SignedHeaders=host, "
        "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150831/us-east-1/service/aws4_request, "
        "SignedHeaders=host, "
        "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host, Signature=FF11",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host, Nonce=1, "
        "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        "AWS4-HMAC-SHA512 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host, "
        "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        b.h.kv[7] = malformed[i];
        CHECK_INT(verify(&b.r, NOW), SIGV4_MALFORMED);
    }
    /* A bad X-Amz-Date. */
    build(post, &b, NULL);
    b.h.kv[3] = "2015-08-30T12:36:00Z";
    CHECK_INT(verify(&b.r, NOW), SIGV4_MALFORMED);
}

/* Each x-amz-* header sent must be signed, whatever its case: unsigned, it
 * could be changed in a captured request (X-Amz-Invocation-Type: Event). */
static void test_unsigned_amz_header(void)
{
    const vector *post = &vectors[3];
    built b;
    build(post, &b, NULL);
    CHECK_INT(verify(&b.r, NOW), SIGV4_OK);
    int end = 0;
    while (b.h.kv[end]) end += 2;
    b.h.kv[end] = "X-Amz-Invocation-Type";
    b.h.kv[end + 1] = "Event";
    char why[512] = "";
    CHECK_INT(sigv4_verify(&b.r, "service", lookup, NULL, NOW, why, sizeof why), SIGV4_UNSIGNED);
    CHECK(strstr(why, "'x-amz-invocation-type'") != NULL);
    /* Before the body is read too. */
    b.r.have_body = 0;
    CHECK_INT(verify(&b.r, NOW), SIGV4_UNSIGNED);
    /* Other headers (x-amzn-*, user-agent) may go unsigned, as the SDKs
     * leave them. */
    b.r.have_body = 1;
    b.h.kv[end] = "X-Amzn-Trace-Id";
    CHECK_INT(verify(&b.r, NOW), SIGV4_OK);
    b.h.kv[end] = "User-Agent";
    CHECK_INT(verify(&b.r, NOW), SIGV4_OK);
    /* A name too long to be in any SignedHeaders is refused, not skipped. */
    static char longname[3000];
    memcpy(longname, "x-amz-", 6);
    memset(longname + 6, 'a', sizeof longname - 7);
    b.h.kv[end] = longname;
    CHECK_INT(verify(&b.r, NOW), SIGV4_UNSIGNED);
}

/* X-Amz-Content-Sha256, when sent, is what the canonical request holds; the
 * body must then hash to it. */
static void test_declared_payload(void)
{
    const char *body = "{\"a\":1}";
    const char *hash = "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862";
    hdrs h = {{"Host", "h", "X-Amz-Date", "20150830T123600Z", "X-Amz-Content-Sha256", hash,
               "Authorization", NULL, NULL}};
    sigv4_request r = {"POST", "/", "", get_header, &h, body, strlen(body), 1, get_header_at};
    /* Sign it here: the canonical request, the string to sign, the key. */
    buf creq;
    buf_init(&creq, SIGV4_CANONICAL_MAX);
    char why[256], creq_hash[65], sig[65], sts[256], authz[512];
    CHECK_INT(sigv4_canonical_request(&r, "host;x-amz-content-sha256;x-amz-date", hash, 0, &creq,
                                      why, sizeof why),
              0);
    unsigned char md[32];
    SHA256((const unsigned char *)creq.data, creq.len, md);
    for (int i = 0; i < 32; i++) sprintf(creq_hash + 2 * i, "%02x", md[i]);
    buf_free(&creq);
    int n = snprintf(sts, sizeof sts,
                     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/r/service/aws4_request\n%s",
                     creq_hash);
    sigv4_signature(SECRET, strlen(SECRET), "20150830", "r", "service", sts, (size_t)n, sig);
    snprintf(authz, sizeof authz,
             "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/r/service/aws4_request,"
             "SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=%s",
             sig);
    h.kv[7] = authz;
    CHECK_INT(verify(&r, NOW), SIGV4_OK);
    r.have_body = 0; /* the signature is checked before the body */
    CHECK_INT(verify(&r, NOW), SIGV4_PENDING);
    r.have_body = 1;
    r.body = "{\"a\":2}";
    CHECK_INT(verify(&r, NOW), SIGV4_MISMATCH);
    h.kv[5] = "UNSIGNED-PAYLOAD";
    CHECK_INT(verify(&r, NOW), SIGV4_MALFORMED);
    /* Wrong before the body is read too. */
    h.kv[5] = "115abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862";
    r.have_body = 0;
    CHECK_INT(verify(&r, NOW), SIGV4_MISMATCH);
}

int main(void)
{
    RUN(test_suite_vectors);
    RUN(test_unsigned_amz_header);
    RUN(test_canonical_request);
    RUN(test_refusals);
    RUN(test_declared_payload);
    return TEST_RESULT();
}
