/* Unit tests of sources/kafka.c: the URL's forms and refusals, redaction,
 * and the connector against librdkafka's mock cluster in this process
 * (the real protocol on a loopback port): an entry's id, key, timestamp and
 * headers, refusals, offsets committed only by ack, and the lag. */
#include <stdlib.h>
#include <unistd.h>

#include "sources/kafka.c"
/* After rdkafka.h (kafka.c's). */
#include <librdkafka/rdkafka_mock.h>
#include "sources/sources.h"
#include "test.h"

static kafka_cfg *cfg_of(const char *url, char *err, size_t errcap)
{
    void *cfg = NULL;
    return parse(url, &cfg, err, errcap) == 0 ? cfg : NULL;
}

static void urls(void)
{
    char err[256];
    kafka_cfg *c =
        cfg_of("kafka://127.0.0.1:9093,[::1]:9094,kafka3/orders.v1?group=g", err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->brokers, "127.0.0.1:9093,[::1]:9094,kafka3:9092");
        CHECK_STR(c->topic, "orders.v1");
        CHECK_STR(c->group, "g");
        CHECK_INT(c->session_ms, 0);
        CHECK_STR(c->user, "");
        free_cfg(c);
    }
    c = cfg_of("kafka://al%40ice:p%3Ass@h1:1,h2:2/t?group=g%20x&session_timeout_ms=6000", err,
               sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->brokers, "h1:1,h2:2");
        CHECK_STR(c->user, "al@ice");
        CHECK_STR(c->pass, "p:ss");
        CHECK_STR(c->mechanism, "PLAIN");
        CHECK_STR(c->group, "g x");
        CHECK_INT(c->session_ms, 6000);
        free_cfg(c);
    }
    c = cfg_of("kafka://u:p@h/t?group=g&mechanism=SCRAM-SHA-512", err, sizeof err);
    CHECK(c != NULL && strcmp(c->mechanism, "SCRAM-SHA-512") == 0);
    free_cfg(c);

    static const struct {
        const char *url, *why;
    } bad[] = {
        {"kafka://h:9092/t", "missing group"},
        {"kafka://h:9092/t?group=", "missing group"},
        {"kafka://h:9092?group=g", "missing topic"},
        {"kafka://h:9092/?group=g", "missing topic"},
        {"kafka://h:9092/a/b?group=g", "topic name"},
        {"kafka://h:9092/t%20x?group=g", "topic name"},
        {"kafka://h:99999/t?group=g", "port"},
        {"kafka://h:1,,h:2/t?group=g", "empty"},
        {"kafka://h:1,h:x/t?group=g", "port"},
        {"kafka:///t?group=g", "empty"},
        {"kafka://h/t?group=g&colour=red", "unknown URL parameter 'colour'"},
        {"kafka://h/t?group=g&session_timeout_ms=5", "session_timeout_ms"},
        {"kafka://h/t?group=g&session_timeout_ms=6s", "session_timeout_ms"},
        {"kafka://u:p@h/t?group=g&mechanism=GSSAPI", "mechanism"},
        {"kafka://h/t?group=g&mechanism=PLAIN", "needs a user"},
        {"kafka://h/t?group=g#x", "fragment"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        c = cfg_of(bad[i].url, err, sizeof err);
        CHECK(c == NULL);
        free_cfg(c);
        if (!strstr(err, bad[i].why)) {
            fprintf(stderr, "%s: \"%s\" does not say %s\n", bad[i].url, err, bad[i].why);
            test_failures++;
        }
    }
    /* Through the scheme table, as a PUT checks it. */
    CHECK_INT(sources_check_url("KAFKA://h:1,h:2/t?group=g", err, sizeof err), 0);
    CHECK_INT(sources_check_url("kafka://h:1/t", err, sizeof err), ERR_INVAL);
    CHECK(strstr(err, "missing group") != NULL);
}

static void redaction(void)
{
    char out[512];
    sources_url_redact("kafka://bob:s3cr3t@h1:9092,h2:9092/t?group=g", out, sizeof out);
    CHECK_STR(out, "kafka://bob:***@h1:9092,h2:9092/t?group=g");
    sources_url_redact("kafka://h1:9092,h2:9092/t?group=g", out, sizeof out);
    CHECK_STR(out, "kafka://h1:9092,h2:9092/t?group=g");
}

/* --- Against the mock cluster ---------------------------------------------------------- */

static rd_kafka_t *producer;

static void produce(const char *topic, int32_t partition, const char *key, int64_t ts,
                    const char *payload, size_t len, int with_headers)
{
    rd_kafka_headers_t *h = NULL;
    if (with_headers) {
        h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, "trace", -1, "abc", -1);
        rd_kafka_header_add(h, "bin", -1, "\xff\"", 2);
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void *)payload, len),
        RD_KAFKA_V_KEY((void *)key, key ? strlen(key) : 0), RD_KAFKA_V_TIMESTAMP(ts),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    CHECK_INT(e, 0);
    CHECK_INT(rd_kafka_flush(producer, 10000), 0);
}

static int64_t committed_sum(const char *brokers, const char *topic, const char *group, int parts)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++) rd_kafka_topic_partition_list_add(l, topic, p);
    int64_t sum = rd_kafka_committed(rk, l, 10000) ? -1 : 0;
    for (int i = 0; sum >= 0 && i < l->cnt; i++)
        if (l->elems[i].offset > 0) sum += l->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return sum;
}

static void against_mock(void)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(owner, 1);
    CHECK_INT(rd_kafka_mock_topic_create(mc, "orders", 2, 1), 0);
    const char *brokers = rd_kafka_mock_cluster_bootstraps(mc);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err);
    producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);

    /* Partition 0: keyed, old, with headers; a bad key; one over the size. */
    produce("orders", 0, "acct-7", 1000000000123, "first", 5, 1);
    produce("orders", 0, "\xff\xfe", 0, "badkey", 6, 0);
    static char big[2048];
    memset(big, 'x', sizeof big);
    produce("orders", 0, NULL, 0, big, sizeof big, 0);
    for (int i = 0; i < 7; i++) produce("orders", 1, NULL, 0, "p1", 2, 0);

    char url[512];
    snprintf(url, sizeof url, "kafka://%s/orders?group=g1", brokers);
    kafka_cfg *cfg = cfg_of(url, err, sizeof err);
    CHECK(cfg != NULL);
    src_conn *c = NULL;
    CHECK_INT(connect_(cfg, "spate-test", &c, err, sizeof err), 0);
    if (!c) return;
    src_limits lim = {.message_max = 1024, .key_field = NULL};
    src_batch b;
    src_batch_init(&b);
    /* The group's join takes a few seconds; then all ten, in fetches that
     * take what is there. */
    for (int i = 0; i < 60 && b.n < 10; i++)
        CHECK_INT(fetch(c, &lim, 10 - b.n, 500, &b, err, sizeof err), 0);
    CHECK_INT(b.n, 10);
    int seen_first = 0, seen_bad = 0, seen_big = 0;
    for (size_t i = 0; i < b.n; i++) {
        src_entry *e = &b.e[i];
        if (strcmp(e->id, "0:0") == 0) {
            seen_first = 1;
            CHECK_STR(e->refused, "");
            CHECK_INT(e->len, 5);
            CHECK(memcmp(b.bytes.data + e->data_at, "first", 5) == 0);
            CHECK(e->has_key && e->key_len == 6 &&
                  memcmp(b.bytes.data + e->key_at, "acct-7", 6) == 0);
            CHECK_INT(e->ts_ms, 1000000000123);
            const char want[] = "{\"trace\":\"abc\",\"bin\":\"\\u00ff\\\"\"}";
            CHECK_INT(e->hdr_len, strlen(want));
            CHECK(e->hdr_len == strlen(want) &&
                  memcmp(b.bytes.data + e->hdr_at, want, e->hdr_len) == 0);
        } else if (strcmp(e->id, "0:1") == 0) {
            seen_bad = 1;
            CHECK(strstr(e->refused, "UTF-8") != NULL);
        } else if (strcmp(e->id, "0:2") == 0) {
            seen_big = 1;
            CHECK(strstr(e->refused, "over the topic's maximum") != NULL);
        } else {
            CHECK(strncmp(e->id, "1:", 2) == 0);
            CHECK(e->ts_ms > 1700000000000); /* the producer's clock */
            CHECK(!e->has_key && e->hdr_len == 0);
        }
    }
    CHECK(seen_first && seen_bad && seen_big);
    /* Nothing is committed before ack. */
    CHECK_INT(committed_sum(brokers, "orders", "g1", 2), 0);
    CHECK_INT(ack(c, &b, err, sizeof err), 0);
    CHECK_INT(committed_sum(brokers, "orders", "g1", 2), 10);
    CHECK_INT(lag(c), 0);

    /* A key field: the payload's JSON field, not the message key. */
    produce("orders", 1, "native", 0, "{\"acct\":42,\"v\":1}", 17, 0);
    produce("orders", 1, "native", 0, "not json", 8, 0);
    /* Produced, not yet committed: seen once a fetch answers. */
    int64_t l2 = -1;
    for (int i = 0; i < 100 && (l2 = lag(c)) != 2; i++) usleep(50000);
    CHECK_INT(l2, 2);
    src_limits lim2 = {.message_max = 1024, .key_field = "acct"};
    src_batch_reset(&b);
    for (int i = 0; i < 20 && b.n < 2; i++)
        CHECK_INT(fetch(c, &lim2, 2 - b.n, 500, &b, err, sizeof err), 0);
    CHECK_INT(b.n, 2);
    if (b.n == 2) {
        src_entry *k = &b.e[0], *nj = &b.e[1];
        CHECK(k->has_key && k->key_len == 2 && memcmp(b.bytes.data + k->key_at, "42", 2) == 0);
        CHECK(strstr(nj->refused, "not a JSON object") != NULL);
    }
    CHECK_INT(ack(c, &b, err, sizeof err), 0);
    CHECK_INT(committed_sum(brokers, "orders", "g1", 2), 12);
    CHECK_INT(lag(c), 0);
    src_batch_free(&b);
    disconnect(c);

    /* No broker there: connect says so (and the source backs off). */
    kafka_cfg *cfg2 = cfg_of("kafka://127.0.0.1:1/orders?group=g1", err, sizeof err);
    c = NULL;
    CHECK(connect_(cfg2, "spate-test", &c, err, sizeof err) != 0 && c == NULL);
    CHECK(strstr(err, "cannot reach the Kafka brokers 127.0.0.1:1") != NULL);
    free_cfg(cfg2);
    free_cfg(cfg);
    rd_kafka_destroy(producer);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(owner);
}

int main(void)
{
    RUN(urls);
    RUN(redaction);
    RUN(against_mock);
    return TEST_RESULT();
}
