/*
 * peer_kafka - the bare consumer bench/sources-kafka measures spate's Kafka
 * source against: the same librdkafka consumer settings as
 * src/sources/kafka.c (a group, no auto commit, earliest, the same prefetch
 * bound), the same batches (what is there, up to BATCH) and the same
 * commit cadence (a synchronous commit of each batch's offsets), and
 * nothing else: it receives and commits.
 *
 *   peer_kafka BOOTSTRAP TOPIC GROUP N BATCH
 *
 * Prints "RESULT seconds=S rate=R" where S runs from the first message
 * received to the commit of the N-th (the group's join is left out, as it
 * is on spate's side).
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "peer_kafka: %s: %s\n", k, err);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: peer_kafka BOOTSTRAP TOPIC GROUP N BATCH\n");
        return 2;
    }
    const char *topic = argv[2];
    long n = atol(argv[4]), batch = atol(argv[5]);
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[1]);
    set(conf, "group.id", argv[3]);
    set(conf, "enable.auto.commit", "false");
    set(conf, "enable.auto.offset.store", "false");
    set(conf, "auto.offset.reset", "earliest");
    set(conf, "queued.max.messages.kbytes", "16384"); /* SPATE_SOURCE_KAFKA_QUEUE_KB */
    set(conf, "queued.min.messages", "50000");        /* SPATE_SOURCE_KAFKA_QUEUE_MSGS */
    set(conf, "log_level", "3");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "peer_kafka: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    long got = 0;
    double t0 = 0, give_up = now() + 300;
    while (got < n && now() < give_up) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
        long in_batch = 0;
        while (in_batch < batch) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, in_batch ? 0 : 500);
            if (!m) break;
            if (!m->err) {
                if (!t0) t0 = now();
                rd_kafka_topic_partition_t *tp =
                    rd_kafka_topic_partition_list_find(l, topic, m->partition);
                if (!tp) tp = rd_kafka_topic_partition_list_add(l, topic, m->partition);
                if (tp->offset < m->offset + 1) tp->offset = m->offset + 1;
                in_batch++;
            }
            rd_kafka_message_destroy(m);
        }
        if (in_batch) {
            rd_kafka_resp_err_t e = rd_kafka_commit(rk, l, 0);
            if (e) fprintf(stderr, "peer_kafka: commit: %s\n", rd_kafka_err2str(e));
            got += in_batch;
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    double secs = now() - t0;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (got < n) {
        fprintf(stderr, "peer_kafka: only %ld of %ld messages\n", got, n);
        return 1;
    }
    printf("RESULT seconds=%.4f rate=%.0f\n", secs, n / secs);
    return 0;
}
