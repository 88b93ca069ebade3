/* Unit tests of sources/nats.c's URL: the JetStream and core forms, the
 * refusals a PUT answers with 400, what each mode promises (delivery), and
 * the token form's redaction. */
#include <stdlib.h>

#include "common/err.h"
#include "sources/connector.h"
#include "sources/sources.h"
#include "test.h"

extern const connector connector_nats;

/* Parses url; its refusal (or "") into err. */
static int parse(const char *url, char *err, size_t cap)
{
    err[0] = '\0';
    return sources_check_url(url, err, cap);
}

static void accepted(void)
{
    char err[512];
    CHECK_INT(parse("nats://127.0.0.1:4222/orders", err, sizeof err), 0);
    CHECK_INT(parse("nats://h/orders.*.new", err, sizeof err), 0);
    CHECK_INT(parse("nats://h/orders.>?queue=workers", err, sizeof err), 0);
    CHECK_INT(parse("nats://u:p@h:4222/o?stream=ORDERS", err, sizeof err), 0);
    CHECK_INT(
        parse("nats://tok3n@h:4222/o?stream=ORDERS&consumer=mine&ack_wait=60", err, sizeof err), 0);
    CHECK_INT(parse("NATS://[::1]:4222/o", err, sizeof err), 0);
}

static void refused(void)
{
    static const struct {
        const char *url, *why;
    } cases[] = {
        {"nats://h:4222", "missing subject"},
        {"nats://h:4222/?stream=S", "missing subject"},
        {"nats://h/a..b", "not a NATS subject"},
        {"nats://h/a.>.b", "not a NATS subject"},
        {"nats://h/a.b*", "not a NATS subject"},
        {"nats://h/a.", "not a NATS subject"},
        {"nats://h/o?stream=", "'stream' is empty"},
        {"nats://h/o?stream=a.b", "bad stream name"},
        {"nats://h/o?stream=S&consumer=c.d", "bad consumer name"},
        {"nats://h/o?consumer=c", "'consumer' is for JetStream"},
        {"nats://h/o?ack_wait=5", "'ack_wait' is for JetStream"},
        {"nats://h/o?stream=S&queue=q", "'queue' is for core NATS"},
        {"nats://h/o?stream=S&ack_wait=0", "'ack_wait' must be seconds"},
        {"nats://h/o?stream=S&ack_wait=5s", "'ack_wait' must be seconds"},
        {"nats://h/o?stream=S&ack_wait=99999", "'ack_wait' must be seconds"},
        {"nats://h/o?group=g", "unknown URL parameter 'group'"},
        {"nats://h:0/o", "port"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_INT(parse(cases[i].url, err, sizeof err), ERR_INVAL);
        if (!strstr(err, cases[i].why)) {
            fprintf(stderr, "%s: got '%s', want '%s'\n", cases[i].url, err, cases[i].why);
            CHECK(0);
        }
    }
}

static void delivery(void)
{
    char err[512];
    void *cfg = NULL;
    CHECK(connector_nats.delivery != NULL);
    CHECK_INT(connector_nats.parse("nats://h/o?stream=S", &cfg, err, sizeof err), 0);
    connector_nats.name_cfg(cfg, "orders-in");
    CHECK_STR(connector_nats.delivery(cfg), "at-least-once");
    connector_nats.free_cfg(cfg);
    CHECK_INT(connector_nats.parse("nats://h/o?queue=q", &cfg, err, sizeof err), 0);
    CHECK_STR(connector_nats.delivery(cfg), "at-most-once");
    connector_nats.free_cfg(cfg);
}

static void redaction(void)
{
    char out[256];
    sources_url_redact("nats://s3cret@h:4222/o?stream=S", out, sizeof out);
    CHECK_STR(out, "nats://***@h:4222/o?stream=S");
    sources_url_redact("NATS://s3cret@h:4222/o", out, sizeof out);
    CHECK_STR(out, "NATS://***@h:4222/o");
    sources_url_redact("nats://user:s3cret@h:4222/o", out, sizeof out);
    CHECK_STR(out, "nats://user:***@h:4222/o");
    sources_url_redact("nats://h:4222/o", out, sizeof out);
    CHECK_STR(out, "nats://h:4222/o");
    /* Elsewhere a user alone is a name, not a secret. */
    sources_url_redact("redis://user@h:1/s?group=g", out, sizeof out);
    CHECK_STR(out, "redis://user@h:1/s?group=g");
}

int main(void)
{
    RUN(accepted);
    RUN(refused);
    RUN(delivery);
    RUN(redaction);
    return TEST_RESULT();
}
