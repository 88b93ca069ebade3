/*
 * nats-pub - what the NATS source's tests do upstream, on libnats (the
 * nats CLI is not in Debian). Compiled by the tests with cc.
 *
 *   nats-pub URL stream NAME SUBJECT        create a file-backed stream (if missing)
 *   nats-pub URL js SUBJECT START N [SIZE]  JetStream-publish payloads eSTART..e(START+N-1),
 *                                           each with header X-Seq: i, padded with 'x'
 *                                           to SIZE bytes; every one acked by the stream
 *   nats-pub URL core SUBJECT START N       the same, core NATS, flushed
 *   nats-pub URL one SUBJECT PAYLOAD...     JetStream-publish each PAYLOAD as it is
 *   nats-pub URL info STREAM CONSUMER       "ACK_PENDING NUM_PENDING" of a consumer
 *
 * With NATS_CA set (a PEM CA file) it connects over TLS, verified by it;
 * NATS_CERT and NATS_KEY: a client certificate and its key; NATS_CREDS: a
 * creds file (user JWT and seed).
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, natsStatus s)
{
    natsStatus last;
    const char *text = nats_GetLastError(&last);
    fprintf(stderr, "nats-pub: %s: %s\n", what, text && *text ? text : natsStatus_GetText(s));
    exit(1);
}

static natsMsg *message(const char *subject, long i, long size)
{
    char head[32];
    int n = snprintf(head, sizeof head, "e%ld", i);
    long len = size > n ? size : n;
    char *data = malloc((size_t)len);
    memset(data, 'x', (size_t)len);
    memcpy(data, head, (size_t)n);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, data, (int)len);
    free(data);
    char seq[32];
    snprintf(seq, sizeof seq, "%ld", i);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "X-Seq", seq);
    if (s != NATS_OK) die("message", s);
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: nats-pub URL stream|js|core|info ...\n");
        return 2;
    }
    natsConnection *nc = NULL;
    /* NATS_CA (a PEM file): TLS to a server whose certificate it signed
     * (test_sources_tls.py). */
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetURL(o, argv[1]);
    if (s == NATS_OK && getenv("NATS_CA")) s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK && getenv("NATS_CA"))
        s = natsOptions_LoadCATrustedCertificates(o, getenv("NATS_CA"));
    if (s == NATS_OK && getenv("NATS_CREDS"))
        s = natsOptions_SetUserCredentialsFromFiles(o, getenv("NATS_CREDS"), NULL);
    if (s == NATS_OK && getenv("NATS_CERT"))
        s = natsOptions_LoadCertificatesChain(o, getenv("NATS_CERT"), getenv("NATS_KEY"));
    /* nats.c 3.4.1 omits the signature when the signed nonce begins with
     * a zero byte (fixed by nats.c #705): one connect in 256 with a creds
     * file is refused. Another connect signs another nonce. */
    if (s == NATS_OK) s = NATS_CONNECTION_AUTH_FAILED;
    for (int i = 0; i < 3 && s == NATS_CONNECTION_AUTH_FAILED; i++)
        s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) die("connect", s);
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 10000;
    jo.PublishAsync.MaxPending = 4096;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) die("jetstream", s);
    const char *cmd = argv[2];
    if (!strcmp(cmd, "stream") && argc == 5) {
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        sc.Name = argv[3];
        const char *subjects[] = {argv[4]};
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        s = js_AddStream(&si, js, &sc, NULL, &jerr);
        if (s != NATS_OK && jerr != JSStreamNameExistErr) die("add stream", s);
        jsStreamInfo_Destroy(si);
    } else if ((!strcmp(cmd, "js") || !strcmp(cmd, "core")) && (argc == 6 || argc == 7)) {
        long start = atol(argv[4]), n = atol(argv[5]), size = argc == 7 ? atol(argv[6]) : 0;
        for (long i = start; i < start + n; i++) {
            natsMsg *m = message(argv[3], i, size);
            if (cmd[0] == 'j') {
                s = js_PublishMsgAsync(js, &m, NULL);
                if (s == NATS_OK && (i - start) % 1000 == 999)
                    s = js_PublishAsyncComplete(js, NULL);
            } else {
                s = natsConnection_PublishMsg(nc, m);
            }
            natsMsg_Destroy(m);
            if (s != NATS_OK) die("publish", s);
        }
        if (cmd[0] == 'j') {
            s = js_PublishAsyncComplete(js, NULL);
            natsMsgList failed = {0};
            if (s == NATS_OK && js_PublishAsyncGetPendingList(&failed, js) == NATS_OK) {
                natsMsgList_Destroy(&failed);
                die("publish: some were not acked", NATS_ERR);
            }
        }
        if (s == NATS_OK) s = natsConnection_FlushTimeout(nc, 10000);
        if (s != NATS_OK) die("publish", s);
    } else if (!strcmp(cmd, "one") && argc >= 5) {
        for (int i = 4; i < argc && s == NATS_OK; i++) {
            jsPubAck *pa = NULL;
            s = js_Publish(&pa, js, argv[3], argv[i], (int)strlen(argv[i]), NULL, NULL);
            jsPubAck_Destroy(pa);
        }
        if (s != NATS_OK) die("publish", s);
    } else if (!strcmp(cmd, "info") && argc == 5) {
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        s = js_GetConsumerInfo(&ci, js, argv[3], argv[4], NULL, &jerr);
        if (s != NATS_OK) die("consumer info", s);
        printf("%lld %llu\n", (long long)ci->NumAckPending, (unsigned long long)ci->NumPending);
        jsConsumerInfo_Destroy(ci);
    } else {
        fprintf(stderr, "nats-pub: bad arguments\n");
        return 2;
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return 0;
}
