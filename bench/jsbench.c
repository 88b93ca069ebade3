/*
 * jsbench - the peer of bench/events: the same workload through NATS
 * JetStream (file storage), with Debian's libnats. A stream BENCH on subject
 * bench.x, one durable pull consumer that acks every message, publishing and
 * consuming at the same time.
 *
 *   jsbench URL throughput N SIZE      N messages of SIZE bytes, published
 *                                      asynchronously; prints end-to-end rate
 *   jsbench URL latency RATE SECONDS   RATE messages/s, each stamped; prints
 *                                      publish -> consumer receipt latency
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static jsCtx *js;
static natsConnection *nc;
static long total;
static volatile long consumed;
static double done_at;
static double *lat;
static long nlat, caplat;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void check(natsStatus s, const char *what)
{
    if (s != NATS_OK) {
        fprintf(stderr, "jsbench: %s: %s\n", what, natsStatus_GetText(s));
        exit(1);
    }
}

static void *consumer(void *arg)
{
    int latency = arg != NULL;
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = 65536;
    jsErrCode jerr = 0;
    check(js_PullSubscribe(&sub, js, "bench.x", "worker", NULL, &so, &jerr), "pull subscribe");
    while (consumed < total) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, 1000, 1000, &jerr);
        if (s == NATS_TIMEOUT) continue;
        check(s, "fetch");
        for (int i = 0; i < list.Count; i++) {
            if (latency && nlat < caplat) {
                long long ts = atoll(natsMsg_GetData(list.Msgs[i]));
                lat[nlat++] = (double)(wall_us() - ts);
            }
            natsMsg_Ack(list.Msgs[i], NULL);
        }
        consumed += list.Count;
        natsMsgList_Destroy(&list);
    }
    done_at = now_s();
    natsSubscription_Destroy(sub);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr,
                "usage: jsbench URL throughput N SIZE | jsbench URL latency RATE SECONDS\n");
        return 2;
    }
    natsOptions *opts;
    check(natsOptions_Create(&opts), "options");
    check(natsOptions_SetURL(opts, argv[1]), "url");
    /* Without this every round trip waits ~1 ms for the flusher. */
    check(natsOptions_SetSendAsap(opts, true), "send asap");
    check(natsConnection_Connect(&nc, opts), "connect");
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 8192;
    check(natsConnection_JetStream(&js, nc, &jo), "jetstream");

    jsErrCode jerr = 0;
    js_DeleteStream(js, "BENCH", NULL, &jerr);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = "BENCH";
    const char *subjects[] = {"bench.x"};
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    check(js_AddStream(NULL, js, &sc, NULL, &jerr), "add stream");

    pthread_t th;
    if (strcmp(argv[2], "throughput") == 0) {
        total = atol(argv[3]);
        int size = atoi(argv[4]);
        char *payload = malloc((size_t)size);
        memset(payload, 'x', (size_t)size);
        pthread_create(&th, NULL, consumer, NULL);
        usleep(100000); /* the consumer is in place */
        double t0 = now_s();
        for (long i = 0; i < total; i++)
            check(js_PublishAsync(js, "bench.x", payload, size, NULL), "publish");
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 60000;
        check(js_PublishAsyncComplete(js, &po), "publish complete");
        double published = now_s() - t0;
        pthread_join(th, NULL);
        double e2e = done_at - t0;
        printf("RESULT published_s=%.3f e2e_s=%.3f rate=%.0f\n", published, e2e, total / e2e);
    } else {
        int rate = atoi(argv[3]), secs = atoi(argv[4]);
        total = (long)rate * secs;
        caplat = total;
        lat = malloc((size_t)caplat * sizeof *lat);
        pthread_create(&th, NULL, consumer, (void *)1);
        usleep(100000);
        double t0 = now_s();
        long sent = 0;
        char buf[64];
        while (sent < total) {
            long due = (long)((now_s() - t0) * rate);
            if (due > total) due = total;
            while (sent < due) {
                int n = snprintf(buf, sizeof buf, "%lld", wall_us());
                check(js_PublishAsync(js, "bench.x", buf, n + 1, NULL), "publish");
                sent++;
            }
            usleep(200);
        }
        pthread_join(th, NULL);
        qsort(lat, (size_t)nlat, sizeof *lat, cmp);
        printf("RESULT p50_us=%.0f p99_us=%.0f n=%ld\n", lat[nlat / 2], lat[nlat * 99 / 100], nlat);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
    return 0;
}
