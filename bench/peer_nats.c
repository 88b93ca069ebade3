/* peer_nats - the peer of bench/sources-nats: a bare libnats consumer of a
 * JetStream stream through a durable pull consumer (explicit acks, as
 * spate's source creates it) that fetches batches of 256
 * (natsSubscription_Fetch) and acks each message (natsMsg_Ack), as spate's
 * source does, but does nothing else: no store, no function. Prints the
 * seconds it took to take n messages.
 *
 *     peer_nats URL STREAM SUBJECT DURABLE N */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what, natsStatus s)
{
    natsStatus last;
    const char *text = nats_GetLastError(&last);
    fprintf(stderr, "peer_nats: %s: %s\n", what, text && *text ? text : natsStatus_GetText(s));
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: peer_nats URL STREAM SUBJECT DURABLE N\n");
        return 2;
    }
    long n = atol(argv[5]), got = 0;
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetURL(o, argv[1]);
    if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true); /* as spate's source: pulls at once */
    if (s == NATS_OK) s = natsConnection_Connect(&nc, o);
    if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, NULL);
    if (s != NATS_OK) die("connect", s);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = argv[2];
    so.Config.Durable = argv[4];
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.MaxAckPending = 2048;
    jsErrCode jerr = 0;
    if ((s = js_PullSubscribe(&sub, js, argv[3], argv[4], NULL, &so, &jerr)) != NATS_OK)
        die("subscribe", s);
    double t0 = now();
    while (got < n) {
        natsMsgList list = {0};
        s = natsSubscription_Fetch(&list, sub, 256, 500, &jerr);
        if (s == NATS_TIMEOUT) continue;
        if (s != NATS_OK) die("fetch", s);
        for (int i = 0; i < list.Count; i++)
            if ((s = natsMsg_Ack(list.Msgs[i], NULL)) != NATS_OK) die("ack", s);
        got += list.Count;
        natsMsgList_Destroy(&list);
    }
    printf("%.6f\n", now() - t0);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    return 0;
}
