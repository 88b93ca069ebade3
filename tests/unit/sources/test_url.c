/* Unit tests of sources/url.c and the connector table: URL parts,
 * percent-decoding, query parameters, the refusals a PUT answers with 400,
 * and redaction of credentials. */
#include <stdlib.h>

#include "common/err.h"
#include "sources/connector.h"
#include "sources/sources.h"
#include "sources/tls.h"
#include "test.h"

static void parts(void)
{
    char err[256];
    src_url u;
    CHECK_INT(src_url_parse("redis://us%40er:p%3Ass@[::1]:6380/my%2Fst?group=g&consumer=c", &u, err,
                            sizeof err),
              0);
    CHECK_STR(u.scheme, "redis");
    CHECK_STR(u.user, "us@er");
    CHECK_STR(u.pass, "p:ss");
    CHECK_STR(u.host, "::1");
    CHECK_INT(u.port, 6380);
    CHECK_STR(u.path, "my/st");
    char v[64];
    CHECK_INT(src_url_param(&u, "group", v, sizeof v), 0);
    CHECK_STR(v, "g");
    CHECK_INT(src_url_param(&u, "nothing", v, sizeof v), 1);
    static const char *const known[] = {"group", NULL};
    CHECK_INT(src_url_check_keys(&u, known, err, sizeof err), ERR_INVAL);
    CHECK(strstr(err, "'consumer'") != NULL);
    src_url_free(&u);

    CHECK_INT(src_url_parse("redis://h/s", &u, err, sizeof err), 0);
    CHECK_INT(u.port, 0);
    CHECK_STR(u.user, "");
    src_url_free(&u);
    CHECK_INT(src_url_parse("redis://h:0/s", &u, err, sizeof err), ERR_INVAL);
    CHECK_INT(src_url_parse("redis://h:65536/s", &u, err, sizeof err), ERR_INVAL);
    CHECK_INT(src_url_parse("redis://h:6x/s", &u, err, sizeof err), ERR_INVAL);
    CHECK_INT(src_url_parse("redis://:1/s", &u, err, sizeof err), ERR_INVAL);
    CHECK_INT(src_url_parse("redis://h/s%4", &u, err, sizeof err), ERR_INVAL);
    CHECK_INT(src_url_parse("redis://h/s%00", &u, err, sizeof err), ERR_INVAL);
    CHECK_INT(src_url_parse("redis://h/s#frag", &u, err, sizeof err), ERR_INVAL);
    CHECK_INT(src_url_parse("redis://h /s", &u, err, sizeof err), ERR_INVAL);
    CHECK_INT(src_url_parse("h:1/s", &u, err, sizeof err), ERR_INVAL);
    /* A password's unencoded '/' or '?' ends the host early: refused, and
     * the message quotes none of the password. */
    CHECK_INT(src_url_parse("nats://u:2024/secret@h:1/subj", &u, err, sizeof err), ERR_INVAL);
    CHECK(strstr(err, "'@' after the host") != NULL && strstr(err, "secret") == NULL);
    CHECK_INT(src_url_parse("nats://2024/secret@h:1/subj", &u, err, sizeof err), ERR_INVAL);
    CHECK_INT(src_url_parse("kafka://u:1?secret@h:1/t?group=g", &u, err, sizeof err), ERR_INVAL);
    CHECK(strstr(err, "secret") == NULL);
    CHECK_INT(src_url_parse("nats://u:p%2F1@h:1/a%40b", &u, err, sizeof err), 0);
    CHECK_STR(u.pass, "p/1");
    CHECK_STR(u.path, "a@b");
    src_url_free(&u);
    char *huge = malloc(5000);
    memset(huge, 'a', 4999);
    memcpy(huge, "redis://", 8);
    huge[4999] = '\0';
    CHECK_INT(src_url_parse(huge, &u, err, sizeof err), ERR_INVAL);
    free(huge);
}

static void refusals(void)
{
    char err[256];
    CHECK_INT(sources_check_url("redis://127.0.0.1:6379/s?group=g", err, sizeof err), 0);
    CHECK_INT(sources_check_url("REDIS://127.0.0.1/s?group=g", err, sizeof err), 0);
    CHECK_INT(sources_check_url("ftp://h/s?group=g", err, sizeof err), ERR_INVAL);
    CHECK(strstr(err, "unknown scheme 'ftp'") != NULL);
    CHECK_INT(sources_check_url("sqs://h/q", err, sizeof err), ERR_INVAL);
    CHECK(strstr(err, "(known: redis") != NULL);
    CHECK_INT(sources_check_url("redis://h:1?group=g", err, sizeof err), ERR_INVAL);
    CHECK(strstr(err, "missing stream") != NULL);
    CHECK_INT(sources_check_url("redis://h:1/s", err, sizeof err), ERR_INVAL);
    CHECK(strstr(err, "missing group") != NULL);
    CHECK_INT(sources_check_url("redis://h:1/s?group=", err, sizeof err), ERR_INVAL);
    CHECK_INT(sources_check_url("redis://h:1/a/b?group=g", err, sizeof err), ERR_INVAL);
}

static void redaction(void)
{
    char out[256];
    sources_url_redact("redis://user:secret@h:1/s?group=g", out, sizeof out);
    CHECK_STR(out, "redis://user:***@h:1/s?group=g");
    sources_url_redact("redis://:secret@h:1/s?group=g", out, sizeof out);
    CHECK_STR(out, "redis://:***@h:1/s?group=g");
    /* An '@' in the password: the last one before the path ends it. */
    sources_url_redact("redis://u:se@cret@h:1/s", out, sizeof out);
    CHECK_STR(out, "redis://u:***@h:1/s");
    sources_url_redact("redis://h:1/s?group=g", out, sizeof out);
    CHECK_STR(out, "redis://h:1/s?group=g");
    /* A password with an unencoded '/', '?' or '#' (such a URL is refused,
     * but redaction must not depend on it): nothing before the last '@'. */
    sources_url_redact("nats://u:2024/secret@h:1/subj", out, sizeof out);
    CHECK_STR(out, "nats://***@h:1/subj");
    sources_url_redact("kafka://u:1?secret@h:1/t?group=g", out, sizeof out);
    CHECK_STR(out, "kafka://***@h:1/t?group=g");
    sources_url_redact("redis://u:a#secret@h:1/s", out, sizeof out);
    CHECK_STR(out, "redis://***@h:1/s");
    sources_url_redact("no scheme:secret@h", out, sizeof out);
    CHECK(strstr(out, "secret") == NULL);
}

/* sources/tls.c: the TLS parameters every connector reads alike. */
static int tls_of(const char *url, src_tls *t, char *err, size_t errcap)
{
    src_url u;
    int rc = src_url_parse(url, &u, err, errcap);
    if (!rc) rc = src_tls_parse(&u, strcmp(u.scheme, "rediss") == 0, t, err, errcap);
    src_url_free(&u);
    return rc;
}

static void tls_params(void)
{
    char err[256], out[256];
    src_tls t;
    CHECK_INT(tls_of("redis://h/s", &t, err, sizeof err), 0);
    CHECK_INT(t.on, 0);
    CHECK_INT(tls_of("rediss://h/s", &t, err, sizeof err), 0);
    CHECK_INT(t.on, 1);
    CHECK_STR(t.ca, "");
    CHECK_INT(
        tls_of("redis://h/s?tls=1&ca=%2Fetc%2Fca.pem&cert=/c.pem&key=/k.pem", &t, err, sizeof err),
        0);
    CHECK_INT(t.on, 1);
    CHECK_STR(t.ca, "/etc/ca.pem");
    CHECK_STR(t.cert, "/c.pem");
    CHECK_STR(t.key, "/k.pem");
    CHECK_INT(tls_of("rediss://h/s?tls=0", &t, err, sizeof err), ERR_INVAL);
    CHECK(strstr(err, "contradicts") != NULL);
    CHECK_INT(tls_of("redis://h/s?ca=/ca.pem", &t, err, sizeof err), ERR_INVAL);
    CHECK_INT(tls_of("rediss://h/s?key=/k.pem", &t, err, sizeof err), ERR_INVAL);
    CHECK_INT(tls_of("rediss://h/s?ca=", &t, err, sizeof err), ERR_INVAL);
    CHECK_INT(tls_of("redis://h/s?tls=true", &t, err, sizeof err), ERR_INVAL);
    /* A file that is not there is the connect's error, named. */
    CHECK_INT(tls_of("rediss://h/s?ca=/nonexistent/ca.pem", &t, err, sizeof err), 0);
    CHECK_INT(src_tls_check_files(&t, err, sizeof err), ERR_IO);
    CHECK(strstr(err, "cannot read the CA file '/nonexistent/ca.pem'") != NULL);
    /* Every TLS scheme is known, and its password redacted. */
    CHECK(connector_for("rediss://h/s", err, sizeof err) != NULL);
    sources_url_redact("rediss://user:secret@h:1/s?group=g&ca=/ca.pem", out, sizeof out);
    CHECK_STR(out, "rediss://user:***@h:1/s?group=g&ca=/ca.pem");
    sources_url_redact("amqps://user:secret@h/%2F?queue=q", out, sizeof out);
    CHECK_STR(out, "amqps://user:***@h/%2F?queue=q");
}

int main(void)
{
    RUN(parts);
    RUN(refusals);
    RUN(redaction);
    RUN(tls_params);
    return TEST_RESULT();
}
