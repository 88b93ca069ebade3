/*
 * nats.c - the NATS connector (nats.c, the library cluster mode uses): a
 * JetStream stream through a durable pull consumer, acknowledged message by
 * message once spate committed the batch (at least once), or a core NATS
 * subject (at most once: core NATS keeps nothing for a subscriber).
 *
 *   nats://[USER:PASS@|TOKEN@]HOST[:PORT]/SUBJECT[?stream=S[&consumer=C][&ack_wait=SECONDS]]
 *   nats://[USER:PASS@|TOKEN@]HOST[:PORT]/SUBJECT[?queue=Q]
 *   ... [&tls=1[&ca=FILE][&cert=FILE&key=FILE]] [&creds=FILE | &nkey=PUBLIC&seed=FILE]
 *
 * Credentials: a user and password, a token, a creds file (a user JWT and
 * its NKey seed, as nsc writes it) or an NKey and its seed file; one kind.
 *
 * JetStream: the durable consumer C (default "spate-" and the source's
 * name) of stream S is created when missing, with explicit acks, the
 * subject as its filter, every message the stream holds from its start,
 * and at most SPATE_SOURCE_NATS_ACK_PENDING unacknowledged messages. A
 * puller thread pulls one batch (natsSubscription_Fetch) while the source
 * publishes the one before: the client holds two batches at most, and the
 * pull's round trip overlaps spate's commit. The acks of a committed batch
 * go out together on a second, buffering connection. What was fetched and
 * not acked is given back (a NAK, redelivered at once) when the source
 * stops, and delivered again after the ack wait when spated died or the
 * connection broke. Nodes that run the same source pull from the same
 * durable consumer: the server shares its messages among them.
 *
 * Core: a subscription (a queue group with queue=Q, so nodes share the
 * messages) whose messages wait in the library's buffer, bounded by
 * SPATE_SOURCE_NATS_PENDING_MSGS/_BYTES; what does not fit the library
 * drops (a slow consumer) and counts: the source's "dropped". Messages
 * published while no connection stands, those in the buffer when spated
 * dies, and dropped ones are lost: status says "at-most-once".
 *
 * The library's own reconnection is off: an error drops the connection and
 * the manager connects again with back-off, so that every (re)connect
 * starts from the same place (connect_).
 */
#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "sources/connector.h"
#include "sources/tls.h"

typedef struct nats_cfg {
    char host[256];
    int port;
    char user[256];
    char pass[256];
    char token[256];
    char subject[512];
    char queue[256];  /* core: "" for a plain subscription */
    char stream[256]; /* "": core NATS */
    char durable[256];
    int ack_wait_s;
    int ack_wait_given; /* in the URL: an existing consumer must have it */
    src_tls tls;
    char creds[512]; /* "": none */
    char nkey[128];  /* a user's public NKey ("U..."), with its seed file */
    char seed[512];
} nats_cfg;

struct src_conn {
    const nats_cfg *cfg;
    natsConnection *nc;
    natsConnection *acks; /* JetStream: where the acks go, buffered */
    jsCtx *js;
    natsSubscription *sub;
    /* JetStream: the messages of the batch the manager publishes, acked
     * (and freed) by ack; and those of the one it fetched meanwhile, to be
     * published after it (sources.c fetches one batch ahead), held until
     * their own ack. */
    natsMsgList held, held_next;
    /* JetStream: the puller thread fetches the next batch while the
     * manager publishes this one (one batch ahead, no more), so that the
     * round trip of a pull overlaps spate's commit. Under mu. */
    pthread_t puller;
    int puller_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int want;  /* the puller is to fetch (or fetching) */
    int ready; /* it fetched: next, pull_status, pull_err */
    int stop;  /* it is to end */
    size_t pull_max;
    uint32_t pull_wait_ms;
    uint64_t pull_asked_ns; /* when: a pull late by the I/O timeout is stuck */
    src_limits pull_lim;
    natsMsgList next;
    src_batch pre; /* next's messages converted */
    natsStatus pull_status;
    char pull_err[256];
};

/* A subject to subscribe to: dot-separated tokens, none empty, '*' and '>'
 * whole tokens only, '>' the last. */
static int subject_valid(const char *s)
{
    if (!*s) return 0;
    for (const char *tok = s;;) {
        size_t len = strcspn(tok, ".");
        if (!len) return 0;
        if (memchr(tok, '*', len) && len != 1) return 0;
        if (memchr(tok, '>', len) && (len != 1 || tok[len])) return 0;
        if (!tok[len]) return 1;
        tok += len + 1;
    }
}

/* A stream or consumer name as the server takes it: no '.', '*', '>'
 * (they would make it a subject), nor '/' or '\' (it names files). */
static int js_name_valid(const char *s)
{
    return *s && !strpbrk(s, ".*>/\\");
}

/* The query parameter key into out; a bad value writes why into err. */
static int param(const src_url *u, const char *key, char *out, size_t cap, char *err, size_t errcap)
{
    int rc = src_url_param(u, key, out, cap);
    if (rc < 0) {
        snprintf(err, errcap,
                 "malformed URL: bad value of '%s' (percent-encode it, at most %zu bytes)", key,
                 cap - 1);
        return ERR_INVAL;
    }
    if (rc == 0 && !out[0]) {
        snprintf(err, errcap, "malformed URL: '%s' is empty", key);
        return ERR_INVAL;
    }
    return 0;
}

/* The credentials other than USER:PASS@ and TOKEN@: one kind at most. */
static int credentials(const src_url *u, nats_cfg *c, char *err, size_t errcap)
{
    int rc;
    if ((rc = param(u, "creds", c->creds, sizeof c->creds, err, errcap)) ||
        (rc = param(u, "nkey", c->nkey, sizeof c->nkey, err, errcap)) ||
        (rc = param(u, "seed", c->seed, sizeof c->seed, err, errcap)))
        return rc;
    if (!c->nkey[0] != !c->seed[0]) {
        snprintf(err, errcap, "an NKey needs both 'nkey' (the public key) and 'seed' (its file)");
        return ERR_INVAL;
    }
    int kinds = (c->user[0] || c->pass[0]) + !!c->token[0] + !!c->creds[0] + !!c->nkey[0];
    if (kinds > 1) {
        snprintf(err, errcap,
                 "one kind of credentials at most: USER:PASS@, TOKEN@, 'creds' or 'nkey' and "
                 "'seed'");
        return ERR_INVAL;
    }
    return 0;
}

static int check(const src_url *u, nats_cfg *c, char *err, size_t errcap)
{
    static const char *const known[] = {"stream", "consumer", "queue",      "ack_wait", "creds",
                                        "nkey",   "seed",     SRC_TLS_KEYS, NULL};
    int rc = src_url_check_keys(u, known, err, errcap);
    if (!rc) rc = src_tls_parse(u, 0, &c->tls, err, errcap);
    if (!rc) rc = credentials(u, c, err, errcap);
    if (rc) return rc;
    if (!c->subject[0]) {
        snprintf(err, errcap,
                 "missing subject: the URL's path names it (nats://HOST:PORT/SUBJECT, "
                 "?stream=S for JetStream)");
        return ERR_INVAL;
    }
    if (strlen(c->subject) > SPATE_SOURCE_NATS_SUBJECT_MAX || !subject_valid(c->subject)) {
        snprintf(err, errcap,
                 "malformed URL: the path is not a NATS subject (dot-separated tokens, '*' and "
                 "'>' whole tokens, '>' last, at most %d bytes)",
                 SPATE_SOURCE_NATS_SUBJECT_MAX);
        return ERR_INVAL;
    }
    char consumer[256] = "", wait[32] = "";
    if ((rc = param(u, "stream", c->stream, sizeof c->stream, err, errcap)) ||
        (rc = param(u, "consumer", consumer, sizeof consumer, err, errcap)) ||
        (rc = param(u, "queue", c->queue, sizeof c->queue, err, errcap)) ||
        (rc = param(u, "ack_wait", wait, sizeof wait, err, errcap)))
        return rc;
    if (!c->stream[0]) {
        if (consumer[0] || wait[0]) {
            snprintf(err, errcap, "malformed URL: '%s' is for JetStream: give ?stream=S too",
                     consumer[0] ? "consumer" : "ack_wait");
            return ERR_INVAL;
        }
        if (c->queue[0] && !subject_valid(c->queue)) {
            snprintf(err, errcap, "malformed URL: bad queue group name '%.64s'", c->queue);
            return ERR_INVAL;
        }
        return 0;
    }
    if (c->queue[0]) {
        snprintf(err, errcap,
                 "malformed URL: 'queue' is for core NATS; with a stream the nodes share its "
                 "durable consumer ('consumer')");
        return ERR_INVAL;
    }
    if (!js_name_valid(c->stream)) {
        snprintf(err, errcap, "malformed URL: bad stream name (no '.', '*', '>', '/', '\\')");
        return ERR_INVAL;
    }
    if (consumer[0] && !js_name_valid(consumer)) {
        snprintf(err, errcap, "malformed URL: bad consumer name (no '.', '*', '>', '/', '\\')");
        return ERR_INVAL;
    }
    snprintf(c->durable, sizeof c->durable, "%s", consumer);
    c->ack_wait_s = SPATE_SOURCE_NATS_ACK_WAIT_S;
    if (wait[0]) {
        char *end = NULL;
        long v = strtol(wait, &end, 10);
        if (*end || v < 1 || v > SPATE_SOURCE_NATS_ACK_WAIT_MAX_S) {
            snprintf(err, errcap, "malformed URL: 'ack_wait' must be seconds from 1 to %d",
                     SPATE_SOURCE_NATS_ACK_WAIT_MAX_S);
            return ERR_INVAL;
        }
        c->ack_wait_s = (int)v;
        c->ack_wait_given = 1;
    }
    return 0;
}

static int parse(const char *url, void **out, char *err, size_t errcap)
{
    src_url u;
    int rc = src_url_parse(url, &u, err, errcap);
    if (rc) return rc;
    nats_cfg *c = calloc(1, sizeof *c);
    if (!c) {
        src_url_free(&u);
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    snprintf(c->host, sizeof c->host, "%s", u.host);
    c->port = u.port ? u.port : 4222;
    /* USER:PASS@, or a token alone before the '@'. */
    if (u.has_pass) {
        snprintf(c->user, sizeof c->user, "%s", u.user);
        snprintf(c->pass, sizeof c->pass, "%s", u.pass);
    } else {
        snprintf(c->token, sizeof c->token, "%s", u.user);
    }
    snprintf(c->subject, sizeof c->subject, "%s", u.path);
    rc = check(&u, c, err, errcap);
    src_url_free(&u);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void free_cfg(void *cfg)
{
    free(cfg);
}

/* The durable consumer's name when the URL gives none: the source's. */
static void name_cfg(void *cfgp, const char *source)
{
    nats_cfg *c = cfgp;
    if (c->stream[0] && !c->durable[0]) snprintf(c->durable, sizeof c->durable, "spate-%s", source);
}

static const char *delivery(const void *cfgp)
{
    const nats_cfg *c = cfgp;
    return c->stream[0] ? "at-least-once" : "at-most-once";
}

/* In a cluster: a JetStream durable and a core queue group share their
 * messages among the nodes' consumers, so every node runs them; a plain
 * core subscription gives every node every message: one node, the lease
 * holder, runs it. */
static int in_group(const void *cfgp)
{
    const nats_cfg *c = cfgp;
    return c->stream[0] || c->queue[0];
}

/* What the library says went wrong: its last error's text on this thread
 * (the server's JetStream message: "stream not found"), else the status. */
static void nats_err(char *err, size_t errcap, const char *what, natsStatus s)
{
    natsStatus last = NATS_OK;
    const char *text = nats_GetLastError(&last);
    if (!text || !*text) text = natsStatus_GetText(s);
    /* Without the library's "(js.c:2133): " source position. */
    if (text[0] == '(') {
        const char *end = strstr(text, "): ");
        if (end && end - text < 40) text = end + 3;
    }
    snprintf(err, errcap, "%s: %s", what, text);
}

/* Gives msgs back to the server for a redelivery at once (a stop, a
 * failed publish), rather than after the ack wait; on a broken connection
 * that fails, and the ack wait it is. */
static void give_back(natsMsgList *msgs)
{
    for (int i = 0; i < msgs->Count; i++) natsMsg_Nak(msgs->Msgs[i], NULL);
    natsMsgList_Destroy(msgs);
    memset(msgs, 0, sizeof *msgs);
}

static void disconnect(src_conn *c)
{
    if (!c) return;
    if (c->puller_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        /* After the fetch under way (SPATE_SOURCE_WAIT_MS at most). Not
         * natsSubscription_Unsubscribe, which would delete the consumer. */
        pthread_join(c->puller, NULL);
        give_back(&c->next);
        src_batch_free(&c->pre);
    }
    give_back(&c->held);
    give_back(&c->held_next);
    if (c->puller_started) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
    }
    if (c->acks) {
        natsConnection_FlushTimeout(c->acks, SPATE_SOURCE_IO_TIMEOUT_MS); /* the last acks */
        natsConnection_Close(c->acks);
        natsConnection_Destroy(c->acks);
    }
    /* Closed first, so that destroying the subscription unsubscribes
     * nothing upstream: the durable consumer stays, with its position. */
    if (c->nc) natsConnection_Close(c->nc);
    if (c->sub) natsSubscription_Destroy(c->sub);
    if (c->js) jsCtx_Destroy(c->js);
    if (c->nc) natsConnection_Destroy(c->nc);
    free(c);
}

static natsStatus subscribe_js(src_conn *c, char *err, size_t errcap)
{
    const nats_cfg *cfg = c->cfg;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = SPATE_SOURCE_IO_TIMEOUT_MS;
    err[0] = '\0';
    natsStatus s = natsConnection_JetStream(&c->js, c->nc, &jo);
    if (s != NATS_OK) {
        nats_err(err, errcap, "cannot use JetStream", s);
        return s;
    }
    char what[600];
    snprintf(what, sizeof what, "cannot pull from stream '%s' as consumer '%s'", cfg->stream,
             cfg->durable);
    /* A consumer that exists (an earlier run's, another node's, the
     * user's) is bound as it is, once it acks explicitly: an ack policy of
     * none or all would lose messages of a batch not yet committed. */
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    s = js_GetConsumerInfo(&ci, c->js, cfg->stream, cfg->durable, NULL, &jerr);
    if (s == NATS_OK) {
        const jsConsumerConfig *cc = ci->Config;
        if (cc->AckPolicy != js_AckExplicit)
            snprintf(err, errcap, "%s: it does not ack explicitly (AckPolicy explicit needed)",
                     what);
        else if (cc->DeliverSubject && cc->DeliverSubject[0])
            snprintf(err, errcap, "%s: it is a push consumer (a pull consumer is needed)", what);
        else if (cfg->ack_wait_given && cc->AckWait != (int64_t)cfg->ack_wait_s * 1000000000LL)
            snprintf(err, errcap,
                     "%s: its ack wait is %llds, the URL asks %ds (delete the "
                     "consumer to change it)",
                     what, (long long)(cc->AckWait / 1000000000LL), cfg->ack_wait_s);
        jsConsumerInfo_Destroy(ci);
        if (err[0]) return NATS_ERR;
    } else if (jerr != JSConsumerNotFoundErr) {
        nats_err(err, errcap, what, s);
        return s;
    } else {
        /* Created here, not by the subscription: the library deletes a
         * consumer it created when its subscription ends (a removed
         * source, a reconnect, spated stopping), and the next would start
         * the stream over. Every message the stream holds, acked one by one. */
        jsConsumerConfig cc;
        jsConsumerConfig_Init(&cc);
        cc.Durable = cfg->durable;
        cc.AckPolicy = js_AckExplicit;
        cc.DeliverPolicy = js_DeliverAll;
        cc.AckWait = (int64_t)cfg->ack_wait_s * 1000000000LL;
        cc.MaxAckPending = SPATE_SOURCE_NATS_ACK_PENDING;
        cc.FilterSubject = cfg->subject;
        s = js_AddConsumer(&ci, c->js, cfg->stream, &cc, NULL, &jerr);
        jsConsumerInfo_Destroy(ci);
        if (s != NATS_OK) {
            nats_err(err, errcap, what, s);
            return s;
        }
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = cfg->stream;
    so.Consumer = cfg->durable;
    s = js_PullSubscribe(&c->sub, c->js, cfg->subject, cfg->durable, NULL, &so, &jerr);
    if (s != NATS_OK) nats_err(err, errcap, what, s);
    return s;
}

static natsStatus subscribe_core(src_conn *c, char *err, size_t errcap)
{
    const nats_cfg *cfg = c->cfg;
    natsStatus s = cfg->queue[0]
                       ? natsConnection_QueueSubscribeSync(&c->sub, c->nc, cfg->subject, cfg->queue)
                       : natsConnection_SubscribeSync(&c->sub, c->nc, cfg->subject);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(c->sub, SPATE_SOURCE_NATS_PENDING_MSGS,
                                              SPATE_SOURCE_NATS_PENDING_BYTES);
    /* The subscription is the server's once the flush returns: from here
     * on nothing published to the subject passes unseen. */
    if (s == NATS_OK) s = natsConnection_FlushTimeout(c->nc, SPATE_SOURCE_IO_TIMEOUT_MS);
    if (s != NATS_OK) nats_err(err, errcap, "cannot subscribe", s);
    return s;
}

static void *pull(void *arg);

/* TLS with the server's certificate verified against the CA file, or else
 * Debian's bundle of the system's trust store, and its name against the
 * URL's host (nats.c checks the name only when told which). */
/* nats.c 3.4.1 (Debian 12's) sends no signature when the signed nonce
 * begins with a zero byte (fixed upstream by nats.c #705, in 3.8): one
 * connect in 256 with an NKey or a creds file is refused "Authorization
 * Violation". Each connect signs a new nonce, so a refused one is tried
 * again: three refusals in a row are a real one. */
static natsStatus connect_signed(natsConnection **nc, natsOptions *o, int signs)
{
    natsStatus s = NATS_CONNECTION_AUTH_FAILED;
    for (int i = 0; i < (signs ? 3 : 1) && s == NATS_CONNECTION_AUTH_FAILED; i++)
        s = natsConnection_Connect(nc, o);
    return s;
}

static natsStatus tls_options(natsOptions *o, const nats_cfg *cfg)
{
    natsStatus s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK)
        s = natsOptions_LoadCATrustedCertificates(o, cfg->tls.ca[0] ? cfg->tls.ca
                                                                    : SRC_TLS_SYSTEM_CA_FILE);
    if (s == NATS_OK && cfg->tls.cert[0])
        s = natsOptions_LoadCertificatesChain(o, cfg->tls.cert, cfg->tls.key);
    if (s == NATS_OK) s = natsOptions_SetExpectedHostname(o, cfg->host);
    return s;
}

static int connect_(const void *cfgp, const char *consumer, src_conn **out, char *err,
                    size_t errcap)
{
    const nats_cfg *cfg = cfgp;
    src_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    c->cfg = cfg;
    /* The server in the library's form; the credentials apart (not in a
     * URL it might quote). */
    char url[300];
    snprintf(url, sizeof url, strchr(cfg->host, ':') ? "nats://[%s]:%d" : "nats://%s:%d", cfg->host,
             cfg->port);
    char name[300];
    snprintf(name, sizeof name, "spated source %s", consumer);
    /* The files first: the library's message for one it cannot read is
     * vague. */
    int frc = src_tls_check_files(&cfg->tls, err, errcap);
    if (!frc && cfg->creds[0]) frc = src_tls_readable("creds", cfg->creds, err, errcap);
    if (!frc && cfg->seed[0]) frc = src_tls_readable("NKey seed", cfg->seed, err, errcap);
    if (frc) {
        free(c);
        return frc;
    }
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetURL(o, url);
    if (s == NATS_OK) s = natsOptions_SetName(o, name);
    /* Pull requests go out at once, not after the library's flusher (1 ms). */
    if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(o, false);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, SPATE_SOURCE_IO_TIMEOUT_MS);
    if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(o, SPATE_SOURCE_NATS_PENDING_MSGS);
    if (s == NATS_OK && cfg->user[0]) s = natsOptions_SetUserInfo(o, cfg->user, cfg->pass);
    if (s == NATS_OK && cfg->token[0]) s = natsOptions_SetToken(o, cfg->token);
    if (s == NATS_OK && cfg->creds[0])
        s = natsOptions_SetUserCredentialsFromFiles(o, cfg->creds, NULL);
    if (s == NATS_OK && cfg->nkey[0]) s = natsOptions_SetNKeyFromSeed(o, cfg->nkey, cfg->seed);
    if (s == NATS_OK && cfg->tls.on) s = tls_options(o, cfg);
    int signs = cfg->creds[0] || cfg->nkey[0];
    if (s == NATS_OK) s = connect_signed(&c->nc, o, signs);
    /* The acks through a second connection that buffers: a batch's acks
     * leave in one write (natsMsg_Ack on the first would write each: a
     * third of the time a batch took). */
    if (s == NATS_OK && cfg->stream[0]) s = natsOptions_SetSendAsap(o, false);
    if (s == NATS_OK && cfg->stream[0]) s = connect_signed(&c->acks, o, signs);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        char what[400];
        snprintf(what, sizeof what, "cannot connect to %s:%d", cfg->host, cfg->port);
        nats_err(err, errcap, what, s);
        disconnect(c);
        return ERR_IO;
    }
    s = cfg->stream[0] ? subscribe_js(c, err, errcap) : subscribe_core(c, err, errcap);
    if (s != NATS_OK) {
        disconnect(c);
        return ERR_IO;
    }
    if (cfg->stream[0]) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->cv, &ca);
        pthread_condattr_destroy(&ca);
        src_batch_init(&c->pre);
        if (pthread_create(&c->puller, NULL, pull, c) != 0) {
            pthread_mutex_destroy(&c->mu);
            pthread_cond_destroy(&c->cv);
            src_batch_free(&c->pre);
            snprintf(err, errcap, "cannot start a thread");
            disconnect(c);
            return ERR_NOMEM;
        }
        c->puller_started = 1;
    }
    err[0] = '\0';
    *out = c;
    return 0;
}

/* Appends m's headers, payload and key to b as entry e. */
static int convert(src_batch *b, src_entry *e, natsMsg *m, const src_limits *lim)
{
    const char **keys = NULL;
    int nkeys = 0;
    if (natsMsgHeader_Keys(m, &keys, &nkeys) == NATS_OK) {
        for (int i = 0; i < nkeys && !e->refused[0]; i++) {
            const char **vals = NULL;
            int nvals = 0;
            if (natsMsgHeader_Values(m, keys[i], &vals, &nvals) != NATS_OK) continue;
            /* A repeated header: its values joined by ", " as HTTP does. */
            size_t vlen = 0;
            for (int j = 0; j < nvals; j++) vlen += strlen(vals[j]) + 2;
            char *joined = malloc(vlen + 1);
            int rc = joined ? 0 : -1;
            if (joined) {
                size_t o = 0;
                for (int j = 0; j < nvals; j++) {
                    size_t l = strlen(vals[j]);
                    if (j) memcpy(joined + o, ", ", 2), o += 2;
                    memcpy(joined + o, vals[j], l);
                    o += l;
                }
                rc = src_entry_header(b, e, keys[i], strlen(keys[i]), joined, o);
            }
            free(joined);
            free((void *)vals);
            if (rc) {
                free((void *)keys);
                return ERR_NOMEM;
            }
        }
        free((void *)keys);
        if (src_entry_headers_end(b, e)) return ERR_NOMEM;
    }
    if (e->refused[0]) return 0;
    const char *data = natsMsg_GetData(m);
    size_t len = (size_t)natsMsg_GetDataLength(m);
    if (len > lim->message_max) {
        src_entry_refuse(e, "the message is over the topic's maximum of %zu bytes",
                         lim->message_max);
        return 0;
    }
    e->data_at = b->bytes.len;
    e->len = len;
    if (len && buf_append(&b->bytes, data, len) != 0) return ERR_NOMEM;
    return src_entry_json_key(b, e, lim->key_field) ? ERR_NOMEM : 0;
}

/* The messages of got as entries of b (its stream sequence the id). */
static int convert_js(const natsMsgList *got, const src_limits *lim, src_batch *b, char *err,
                      size_t errcap)
{
    for (int i = 0; i < got->Count; i++) {
        natsMsg *m = got->Msgs[i];
        jsMsgMetaData *meta = NULL;
        char id[32] = "?";
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK)
            snprintf(id, sizeof id, "%llu", (unsigned long long)meta->Sequence.Stream);
        src_entry *e = src_batch_add(b, id, strlen(id));
        if (e && meta) {
            e->ts_ms = meta->Timestamp / 1000000;
            e->redelivered = meta->NumDelivered > 1;
        }
        jsMsgMetaData_Destroy(meta);
        if (!e || convert(b, e, m, lim)) {
            snprintf(err, errcap, "out of memory");
            return ERR_NOMEM;
        }
    }
    return 0;
}

/* The puller thread: one fetch each time the manager's fetch asks, its
 * messages converted to the entries of pre meanwhile. */
static void *pull(void *arg)
{
    src_conn *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && (!c->want || c->ready)) pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop) break;
        int max = (int)c->pull_max;
        int64_t wait_ms = c->pull_wait_ms;
        src_limits lim = c->pull_lim;
        pthread_mutex_unlock(&c->mu);
        natsMsgList got = {0};
        jsErrCode jerr = 0;
        char err[sizeof c->pull_err] = "";
        natsStatus s = natsSubscription_Fetch(&got, c->sub, max, wait_ms, &jerr);
        if (s != NATS_OK && s != NATS_TIMEOUT) nats_err(err, sizeof err, "fetch", s);
        src_batch_reset(&c->pre); /* the puller's until ready */
        if (s == NATS_OK && convert_js(&got, &lim, &c->pre, err, sizeof err)) s = NATS_NO_MEMORY;
        pthread_mutex_lock(&c->mu);
        c->next = got;
        c->pull_status = s;
        memcpy(c->pull_err, err, sizeof err);
        c->ready = 1;
        c->want = 0;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Asks the puller for a batch (under mu). */
static void ask_pull(src_conn *c, size_t max, uint32_t wait_ms, const src_limits *lim)
{
    c->pull_max = max;
    /* The pull may wait long for messages even when this fetch may not (the
     * manager fetches ahead with a short wait): what comes later is taken
     * by the next fetch. */
    c->pull_wait_ms = wait_ms > SPATE_SOURCE_WAIT_MS ? wait_ms : SPATE_SOURCE_WAIT_MS;
    c->pull_asked_ns = clock_mono_ns();
    c->pull_lim = *lim;
    c->want = 1;
    pthread_cond_broadcast(&c->cv);
}

static int fetch_js(src_conn *c, const src_limits *lim, size_t max, uint32_t wait_ms,
                    src_batch *out, char *err, size_t errcap)
{
    /* A batch not yet acked publishes: this one's messages wait behind it
     * (giving it back here acked this batch for that one: lost if spated
     * died before it committed). More than one ahead the manager never
     * fetches. */
    natsMsgList *slot = c->held.Count ? &c->held_next : &c->held;
    give_back(slot);
    pthread_mutex_lock(&c->mu);
    if (!c->want && !c->ready) ask_pull(c, max, wait_ms, lim);
    /* The fetch waits wait_ms at most, then returns nothing (the pull goes
     * on); a pull not answered the I/O timeout after its own wait is stuck:
     * the connection is dropped. */
    uint64_t stuck_ns =
        c->pull_asked_ns + ((uint64_t)c->pull_wait_ms + SPATE_SOURCE_IO_TIMEOUT_MS) * 1000000;
    uint64_t now = clock_mono_ns();
    uint64_t until = now + (uint64_t)wait_ms * 1000000;
    if (until > stuck_ns) until = stuck_ns;
    struct timespec ts = {.tv_sec = (time_t)(until / 1000000000),
                          .tv_nsec = (long)(until % 1000000000)};
    int timed_out = 0;
    while (!c->ready && !timed_out)
        timed_out = pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT;
    if (!c->ready) {
        int stuck = clock_mono_ns() >= stuck_ns;
        pthread_mutex_unlock(&c->mu);
        if (!stuck) return 0;
        snprintf(err, errcap, "fetch: no answer in %llu ms",
                 (unsigned long long)c->pull_wait_ms + SPATE_SOURCE_IO_TIMEOUT_MS);
        return ERR_IO;
    }
    *slot = c->next;
    memset(&c->next, 0, sizeof c->next);
    natsStatus s = c->pull_status;
    c->ready = 0;
    if (s != NATS_OK && s != NATS_TIMEOUT) snprintf(err, errcap, "%s", c->pull_err);
    /* The converted batch is the caller's; the caller's (emptied) the
     * puller's for the next. */
    src_batch swap = *out;
    *out = c->pre;
    c->pre = swap;
    /* A batch came: more are likely waiting, the next is fetched now. */
    if (s == NATS_OK && slot->Count > 0) ask_pull(c, max, wait_ms, lim);
    pthread_mutex_unlock(&c->mu);
    if (s == NATS_TIMEOUT) return 0;
    return s == NATS_OK ? 0 : ERR_IO;
}

static int fetch_core(src_conn *c, const src_limits *lim, size_t max, uint32_t wait_ms,
                      src_batch *out, char *err, size_t errcap)
{
    for (size_t i = 0; i < max; i++) {
        natsMsg *m = NULL;
        /* Waits for the first; then takes what the buffer holds. */
        natsStatus s = natsSubscription_NextMsg(&m, c->sub, i ? 0 : wait_ms);
        if (s == NATS_TIMEOUT) return 0;
        if (s != NATS_OK) {
            nats_err(err, errcap, "receive", s);
            return ERR_IO;
        }
        /* Core NATS has no message id: the subject it came on (the URL's
         * may be a wildcard) stands for it. */
        const char *subj = natsMsg_GetSubject(m);
        src_entry *e = src_batch_add(out, subj, strlen(subj));
        int rc = e ? convert(out, e, m, lim) : ERR_NOMEM;
        natsMsg_Destroy(m);
        if (rc) {
            snprintf(err, errcap, "out of memory");
            return rc;
        }
    }
    return 0;
}

static int fetch(src_conn *c, const src_limits *lim, size_t max, uint32_t wait_ms, src_batch *out,
                 char *err, size_t errcap)
{
    return c->js ? fetch_js(c, lim, max, wait_ms, out, err, errcap)
                 : fetch_core(c, lim, max, wait_ms, out, err, errcap);
}

/* JetStream: each message of the last fetch acked (the batch is what the
 * manager committed): "+ACK" to its reply subject, what natsMsg_Ack sends,
 * on the buffering connection. Core: nothing to ack. */
static int ack(src_conn *c, const src_batch *b, char *err, size_t errcap)
{
    (void)b;
    natsStatus s = NATS_OK;
    for (int i = 0; i < c->held.Count && s == NATS_OK; i++) {
        const char *reply = natsMsg_GetReply(c->held.Msgs[i]);
        if (reply) s = natsConnection_Publish(c->acks, reply, "+ACK", 4);
    }
    natsMsgList_Destroy(&c->held);
    c->held = c->held_next; /* the batch fetched ahead is published next */
    memset(&c->held_next, 0, sizeof c->held_next);
    if (s != NATS_OK) {
        nats_err(err, errcap, "ack", s);
        return ERR_IO;
    }
    return 0;
}

/* JetStream: the consumer's messages not yet delivered (NumPending). Core:
 * the messages in the library's buffer, not yet fetched. */
static int64_t lag(src_conn *c)
{
    if (!c->js) {
        int msgs = 0, bytes = 0;
        return natsSubscription_GetPending(c->sub, &msgs, &bytes) == NATS_OK ? msgs : -1;
    }
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    if (js_GetConsumerInfo(&ci, c->js, c->cfg->stream, c->cfg->durable, NULL, &jerr) != NATS_OK)
        return -1;
    int64_t out = (int64_t)ci->NumPending;
    jsConsumerInfo_Destroy(ci);
    return out;
}

/* Core: what the library dropped on this connection (its buffer full). */
static int64_t dropped(src_conn *c)
{
    int64_t n = 0;
    if (c->js || natsSubscription_GetDropped(c->sub, &n) != NATS_OK) return 0;
    return n;
}

const connector connector_nats = {
    .scheme = "nats",
    .form = "nats://[USER:PASS@|TOKEN@]HOST:PORT/SUBJECT[?stream=S&consumer=C | ?queue=Q]",
    .parse = parse,
    .free_cfg = free_cfg,
    .connect = connect_,
    .fetch = fetch,
    .ack = ack,
    .lag = lag,
    .disconnect = disconnect,
    .name_cfg = name_cfg,
    .delivery = delivery,
    .dropped = dropped,
    .group = in_group,
};
