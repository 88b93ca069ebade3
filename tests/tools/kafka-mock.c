/*
 * kafka-mock - a Kafka cluster for tests and benchmarks: librdkafka's own
 * mock cluster (rdkafka_mock.h, the real Kafka protocol on loopback ports),
 * with a producer to fill it, driven by commands on stdin.
 *
 *   kafka-mock [--brokers N] [--partitions P] TOPIC...
 *
 * It creates each TOPIC with P partitions, prints one line
 * "bootstrap HOST:PORT,HOST:PORT..." and then reads commands, one a line,
 * answering each with a line starting "ok" (or "error ..."):
 *
 *   produce TOPIC START COUNT PREFIX KEYS   COUNT messages PREFIX<i>, i from
 *                                           START; keyed k<i % KEYS> (KEYS 0:
 *                                           no key); header seq=<i>
 *   msg TOPIC KEY TS_MS HEADERS PAYLOAD     one message; "-" for no key, no
 *                                           headers; TS_MS 0: now; HEADERS
 *                                           "a=1;b=2"
 *   big TOPIC SIZE PAYLOAD_PREFIX           one message of SIZE bytes
 *   committed TOPIC GROUP                   "ok P:OFFSET ..." (-1001: none)
 *
 * The cluster lives in this process: it ends at end of input or SIGTERM.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rd_kafka_t *producer;
static char bootstrap[1024];
static int partitions = 4;

static void die(const char *what)
{
    fprintf(stderr, "kafka-mock: %s\n", what);
    exit(1);
}

static int produce(const char *topic, const char *key, int64_t ts, const char *headers,
                   const void *payload, size_t len)
{
    rd_kafka_headers_t *h = NULL;
    if (headers && strcmp(headers, "-") != 0) {
        h = rd_kafka_headers_new(4);
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", headers);
        for (char *save = NULL, *kv = strtok_r(copy, ";", &save); kv;
             kv = strtok_r(NULL, ";", &save)) {
            char *eq = strchr(kv, '=');
            if (eq) *eq = '\0';
            rd_kafka_header_add(h, kv, -1, eq ? eq + 1 : NULL, eq ? -1 : 0);
        }
    }
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_VALUE((void *)payload, len),
            RD_KAFKA_V_KEY((void *)key, key ? strlen(key) : 0), RD_KAFKA_V_TIMESTAMP(ts),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(producer, 10);
            continue;
        }
        if (err) {
            if (h) rd_kafka_headers_destroy(h);
            printf("error %s\n", rd_kafka_err2str(err));
            return -1;
        }
        return 0; /* the headers belong to the message now */
    }
}

static void flushed(void)
{
    if (rd_kafka_flush(producer, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        printf("error flush timed out\n");
    else
        printf("ok\n");
}

static void committed(const char *topic, const char *group)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) ||
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof err))
        die(err);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!c) die(err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++) rd_kafka_topic_partition_list_add(l, topic, p);
    rd_kafka_resp_err_t e = rd_kafka_committed(c, l, 10000);
    if (e) {
        printf("error %s\n", rd_kafka_err2str(e));
    } else {
        printf("ok");
        for (int i = 0; i < l->cnt; i++)
            printf(" %d:%lld", l->elems[i].partition, (long long)l->elems[i].offset);
        printf("\n");
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(c);
}

int main(int argc, char **argv)
{
    int brokers = 1, ntopics = 0;
    const char *topics[16];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc)
            brokers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc)
            partitions = atoi(argv[++i]);
        else if (ntopics < 16)
            topics[ntopics++] = argv[i];
    }
    if (brokers < 1 || partitions < 1 || !ntopics)
        die("usage: kafka-mock [--brokers N] [--partitions P] TOPIC...");
    char err[256];
    /* The mock cluster runs on its own threads, owned by this handle. */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!owner) die(err);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(owner, brokers);
    if (!mc) die("cannot create the mock cluster");
    for (int t = 0; t < ntopics; t++)
        if (rd_kafka_mock_topic_create(mc, topics[t], partitions, brokers < 3 ? brokers : 3))
            die("cannot create the topic");
    snprintf(bootstrap, sizeof bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(mc));

    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof err) ||
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err))
        die(err);
    producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!producer) die(err);

    printf("bootstrap %s\n", bootstrap);
    fflush(stdout);
    char line[8192];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[32] = "", topic[256] = "", a[1024] = "", b[1024] = "", c[1024] = "", d[4096] = "";
        int n = sscanf(line, "%31s %255s %1023s %1023s %1023s %4095s", cmd, topic, a, b, c, d);
        if (n < 1) continue;
        if (strcmp(cmd, "produce") == 0 && n == 6) {
            long start = atol(a), count = atol(b), keys = atol(d);
            int failed = 0;
            for (long i = start; i < start + count && !failed; i++) {
                char payload[1100], key[32], hdr[48];
                snprintf(payload, sizeof payload, "%s%ld", c, i);
                snprintf(key, sizeof key, "k%ld", keys ? i % keys : 0);
                snprintf(hdr, sizeof hdr, "seq=%ld", i);
                failed = produce(topic, keys ? key : NULL, 0, hdr, payload, strlen(payload));
            }
            if (!failed) flushed();
        } else if (strcmp(cmd, "msg") == 0 && n == 6) {
            if (produce(topic, strcmp(a, "-") ? a : NULL, atoll(b), c, d, strlen(d)) == 0)
                flushed();
        } else if (strcmp(cmd, "big") == 0 && n >= 4) {
            size_t size = (size_t)atol(a);
            char *p = malloc(size + 1);
            if (!p) die("out of memory");
            memset(p, 'x', size);
            memcpy(p, b, strlen(b) < size ? strlen(b) : size);
            if (produce(topic, NULL, 0, NULL, p, size) == 0) flushed();
            free(p);
        } else if (strcmp(cmd, "committed") == 0 && n == 3) {
            committed(topic, a);
        } else {
            printf("error unknown command\n");
        }
        fflush(stdout);
    }
    rd_kafka_destroy(producer);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(owner);
    return 0;
}
