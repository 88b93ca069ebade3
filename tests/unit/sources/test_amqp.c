/* Unit tests of sources/amqp.c: the URL (vhost, queue, prefetch, the
 * refusals a PUT answers with 400), and an AMQP delivery's attributes (the
 * timestamp, the amqp-* headers, the headers table's values as text). The
 * .c is included to reach its statics. */
#include <cjson/cJSON.h>

#include "../../../src/sources/amqp.c"
#include "sources/sources.h"
#include "test.h"

static amqp_cfg *parsed(const char *url)
{
    void *cfg = NULL;
    char err[256];
    int rc = parse(url, &cfg, err, sizeof err);
    if (rc) fprintf(stderr, "    %s: %s\n", url, err);
    return rc ? NULL : cfg;
}

static void url_parts(void)
{
    amqp_cfg *c = parsed("amqp://us%40er:p%3Ass@rabbit:5673/prod?queue=trades&prefetch=64");
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->host, "rabbit");
        CHECK_INT(c->port, 5673);
        CHECK_STR(c->user, "us@er");
        CHECK_STR(c->pass, "p:ss");
        CHECK_STR(c->vhost, "prod");
        CHECK_STR(c->queue, "trades");
        CHECK_INT(c->prefetch, 64);
        free_cfg(c);
    }
    /* The default vhost: %2F, or no path at all; guest without credentials. */
    c = parsed("amqp://h/%2F?queue=q");
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->vhost, "/");
        CHECK_INT(c->port, 5672);
        CHECK_STR(c->user, "guest");
        CHECK_STR(c->pass, "guest");
        CHECK_INT(c->prefetch, SPATE_SOURCE_AMQP_PREFETCH_DEFAULT);
        free_cfg(c);
    }
    c = parsed("amqp://h?queue=q%2Fx");
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->vhost, "/");
        CHECK_STR(c->queue, "q/x");
        free_cfg(c);
    }
    c = parsed("AMQP://u@h/?queue=q");
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->vhost, "/");
        CHECK_STR(c->user, "u");
        CHECK_STR(c->pass, "");
        free_cfg(c);
    }
}

static void check_refused(const char *url, const char *why)
{
    char err[256] = "";
    int rc = sources_check_url(url, err, sizeof err);
    CHECK_INT(rc, ERR_INVAL);
    if (!strstr(err, why)) {
        fprintf(stderr, "    %s: '%s' does not say '%s'\n", url, err, why);
        test_failures++;
    }
}

static void url_refusals(void)
{
    char err[256];
    CHECK_INT(sources_check_url("amqp://guest:guest@127.0.0.1:5672/%2F?queue=q", err, sizeof err),
              0);
    check_refused("amqp://h:5672/", "missing queue");
    check_refused("amqp://h:5672/?queue=", "missing queue");
    check_refused("amqp://h:5672/?queue=q&group=g", "unknown URL parameter 'group'");
    check_refused("amqp://h:5672/?queue=q&prefetch=0", "'prefetch' must be a number from 1");
    check_refused("amqp://h:5672/?queue=q&prefetch=4097", "'prefetch' must be a number from 1");
    check_refused("amqp://h:5672/?queue=q&prefetch=1x", "'prefetch' must be a number from 1");
    check_refused("amqp://h:5672/a/b?queue=q", "the path is the vhost");
    check_refused("amqp://h:99999/?queue=q", "port");
    check_refused("amqps://h/?queue=q&tls=2", "'tls' is 1 (TLS) or 0");
    check_refused("amqps://h/?queue=q&cert=/c.pem", "needs both 'cert' and 'key'");
    CHECK_INT(sources_check_url("amqps://u:p@h/%2F?queue=q&ca=/ca.pem&cert=/c.pem&key=/k.pem", err,
                                sizeof err),
              0);
    char q[400] = "amqp://h/?queue=";
    memset(q + strlen(q), 'a', 256);
    check_refused(q, "over 255 bytes");
}

static void redaction(void)
{
    char out[256];
    sources_url_redact("amqp://spate:s3cr3t@h:5672/%2F?queue=q", out, sizeof out);
    CHECK_STR(out, "amqp://spate:***@h:5672/%2F?queue=q");
}

/* A delivery's attributes, as fetch makes them from what the broker sent. */
static void attrs(void)
{
    src_batch b;
    src_batch_init(&b);
    buf tmp;
    buf_init(&tmp, SPATE_SOURCE_HEADERS_MAX);
    amqp_table_entry_t inner[] = {
        {.key = amqp_cstring_bytes("k"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value = {.bytes = amqp_cstring_bytes("v\"")}}}};
    amqp_field_value_t items[] = {{.kind = AMQP_FIELD_KIND_I32, .value = {.i32 = -3}},
                                  {.kind = AMQP_FIELD_KIND_BOOLEAN, .value = {.boolean = 1}}};
    amqp_table_entry_t h[] = {
        {.key = amqp_cstring_bytes("trace"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value = {.bytes = amqp_cstring_bytes("t-1")}}},
        {.key = amqp_cstring_bytes("n"),
         .value = {.kind = AMQP_FIELD_KIND_I64, .value = {.i64 = 42}}},
        {.key = amqp_cstring_bytes("ok"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value = {.boolean = 0}}},
        {.key = amqp_cstring_bytes("price"),
         .value = {.kind = AMQP_FIELD_KIND_DECIMAL, .value = {.decimal = {2, 12345}}}},
        {.key = amqp_cstring_bytes("tiny"),
         .value = {.kind = AMQP_FIELD_KIND_DECIMAL, .value = {.decimal = {4, 5}}}},
        {.key = amqp_cstring_bytes("nested"),
         .value = {.kind = AMQP_FIELD_KIND_TABLE, .value = {.table = {1, inner}}}},
        {.key = amqp_cstring_bytes("list"),
         .value = {.kind = AMQP_FIELD_KIND_ARRAY, .value = {.array = {2, items}}}},
        {.key = amqp_cstring_bytes("nothing"), .value = {.kind = AMQP_FIELD_KIND_VOID}},
        /* Named like a property's header: the property wins. */
        {.key = amqp_cstring_bytes("amqp-message-id"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value = {.bytes = amqp_cstring_bytes("fake")}}},
    };
    amqp_basic_properties_t p = {._flags = AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                                           AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG,
                                 .timestamp = 1700000000,
                                 .message_id = amqp_cstring_bytes("mid-1"),
                                 .content_type = amqp_cstring_bytes("application/json"),
                                 .headers = {(int)(sizeof h / sizeof h[0]), h}};
    amqp_basic_deliver_t d = {.delivery_tag = 7,
                              .redelivered = 1,
                              .exchange = amqp_cstring_bytes("trades"),
                              .routing_key = amqp_cstring_bytes("eu.fx")};
    src_entry *e = src_batch_add(&b, "7", 1);
    CHECK_INT(attributes(&b, e, &d, &p, &tmp), 0);
    CHECK_STR(e->refused, "");
    CHECK_INT(e->ts_ms, 1700000000000LL);
    cJSON *j = cJSON_ParseWithLength(b.bytes.data + e->hdr_at, e->hdr_len);
    CHECK(j != NULL);
    if (j) {
        CHECK_STR(cJSON_GetObjectItem(j, "amqp-message-id")->valuestring, "mid-1");
        CHECK_STR(cJSON_GetObjectItem(j, "amqp-content-type")->valuestring, "application/json");
        CHECK_STR(cJSON_GetObjectItem(j, "amqp-exchange")->valuestring, "trades");
        CHECK_STR(cJSON_GetObjectItem(j, "amqp-routing-key")->valuestring, "eu.fx");
        CHECK_STR(cJSON_GetObjectItem(j, "trace")->valuestring, "t-1");
        CHECK_STR(cJSON_GetObjectItem(j, "n")->valuestring, "42");
        CHECK_STR(cJSON_GetObjectItem(j, "ok")->valuestring, "false");
        CHECK_STR(cJSON_GetObjectItem(j, "price")->valuestring, "123.45");
        CHECK_STR(cJSON_GetObjectItem(j, "tiny")->valuestring, "0.0005");
        CHECK_STR(cJSON_GetObjectItem(j, "nested")->valuestring, "{\"k\":\"v\\\"\"}");
        CHECK_STR(cJSON_GetObjectItem(j, "list")->valuestring, "[-3,true]");
        CHECK_STR(cJSON_GetObjectItem(j, "nothing")->valuestring, "");
        CHECK(cJSON_GetObjectItem(j, "amqp-correlation-id") == NULL);
        int n = 0;
        for (cJSON *i = j->child; i; i = i->next) n += strcmp(i->string, "amqp-message-id") == 0;
        CHECK_INT(n, 1);
        cJSON_Delete(j);
    }

    /* No properties, the default exchange: no headers, no timestamp. */
    amqp_basic_properties_t none = {0};
    amqp_basic_deliver_t plain = {.delivery_tag = 8, .routing_key = amqp_cstring_bytes("q")};
    e = src_batch_add(&b, "8", 1);
    CHECK_INT(attributes(&b, e, &plain, &none, &tmp), 0);
    CHECK_INT(e->ts_ms, 0);
    CHECK_INT(e->hdr_len, 0);

    /* Headers over the limit refuse the entry; they are never cut. */
    static char big[SPATE_SOURCE_HEADERS_MAX];
    memset(big, 'h', sizeof big);
    amqp_table_entry_t hb[] = {
        {.key = amqp_cstring_bytes("big"),
         .value = {.kind = AMQP_FIELD_KIND_BYTES, .value = {.bytes = {sizeof big, big}}}}};
    amqp_basic_properties_t pb = {._flags = AMQP_BASIC_HEADERS_FLAG, .headers = {1, hb}};
    e = src_batch_add(&b, "9", 1);
    CHECK_INT(attributes(&b, e, &plain, &pb, &tmp), 0);
    CHECK(strstr(e->refused, "headers are over") != NULL);

    /* So is a nested value whose text is over it (not taken for a lack of
     * memory, which would fetch the same delivery again and again). */
    static amqp_field_value_t many[3000];
    for (size_t i = 0; i < sizeof many / sizeof many[0]; i++)
        many[i] = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I32, .value = {.i32 = 12345}};
    amqp_table_entry_t hn[] = {
        {.key = amqp_cstring_bytes("many"),
         .value = {.kind = AMQP_FIELD_KIND_ARRAY,
                   .value = {.array = {(int)(sizeof many / sizeof many[0]), many}}}}};
    amqp_basic_properties_t pn = {._flags = AMQP_BASIC_HEADERS_FLAG, .headers = {1, hn}};
    e = src_batch_add(&b, "10", 2);
    CHECK_INT(attributes(&b, e, &plain, &pn, &tmp), 0);
    CHECK(strstr(e->refused, "headers are over") != NULL);
    buf_free(&tmp);
    src_batch_free(&b);
}

/* --key-field on a JSON payload (batch.c's helper, as amqp.c uses it). */
static void json_key(void)
{
    src_batch b;
    src_batch_init(&b);
    const char *payloads[] = {
        "{\"acct\":\"a1\",\"v\":1}", "{\"acct\":17}",         "{\"v\":1}", "not json",
        "{\"acct\":\"a\"} junk",     "{\"acct\":\"\\u00e9\"}"};
    const char *keys[] = {"a1", "17", NULL, NULL, NULL, "\xc3\xa9"};
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        src_entry *e = src_batch_add(&b, "x", 1);
        e->data_at = b.bytes.len;
        e->len = strlen(payloads[i]);
        buf_append(&b.bytes, payloads[i], e->len);
        CHECK_INT(src_entry_json_key(&b, e, "acct"), 0);
        if (keys[i]) {
            CHECK_STR(e->refused, "");
            CHECK_INT(e->has_key, 1);
            CHECK_INT(e->key_len, strlen(keys[i]));
            CHECK(memcmp(b.bytes.data + e->key_at, keys[i], e->key_len) == 0);
            CHECK_INT(b.bytes.data[e->key_at + e->key_len], '\0');
        } else {
            CHECK(e->refused[0] != '\0');
            CHECK_INT(e->has_key, 0);
        }
    }
    src_entry *e = src_batch_add(&b, "y", 1);
    CHECK_INT(src_entry_json_key(&b, e, ""), 0);
    CHECK_INT(e->has_key, 0);
    CHECK_STR(e->refused, "");
    src_batch_free(&b);
}

int main(void)
{
    RUN(url_parts);
    RUN(url_refusals);
    RUN(redaction);
    RUN(attrs);
    RUN(json_key);
    return TEST_RESULT();
}
