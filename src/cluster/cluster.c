/*
 * cluster.c - joining the cluster (cluster.h): the connection to NATS and its
 * callbacks, the buckets and the artifact stream, starting and stopping the
 * parts (internal.h says which file does what), and what the cluster's queue
 * (jsqueue/) uses of the connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cluster/internal.h"
#include "cluster/secure.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"

/* --- nats.c callbacks (its threads) --------------------------------------------------------- */

static void on_disconnected(natsConnection *nc, void *closure)
{
    cluster *c = closure;
    c->connected = 0;
    if (!c->stopping) log_warn("cluster: lost the connection to NATS; pulling and publishing wait");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    cluster *c = closure;
    c->connected = 1;
    c->rewatch = 1;
    log_info("cluster: reconnected to NATS");
}

/* What NATS refuses asynchronously: a publish or subscription outside the
 * user's permissions reaches no caller, only this. Logged, at most once in
 * SPATE_CLUSTER_REFUSED_LOG_MS: the operator's permissions lack something
 * (docs/nats-permissions.conf lists what spate needs). */
static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    cluster *c = closure;
    if (err != NATS_NOT_PERMITTED) return; /* the rest reaches its caller, or is retried */
    uint64_t now = clock_mono_ns(), last = c->refused_ns;
    if (last && now - last < (uint64_t)SPATE_CLUSTER_REFUSED_LOG_MS * 1000000) return;
    c->refused_ns = now;
    const char *text = NULL;
    natsConnection_GetLastError(nc, &text);
    log_warn("cluster: NATS refused: %s (the user's permissions lack what spate needs: "
             "docs/nats-permissions.conf)",
             text && text[0] ? text : natsStatus_GetText(err));
}

/* JetStream's answer to each async publish. Without a handler nats.c drops
 * refusals silently (a stream at its limits, storage exhausted), and a
 * publish would be acknowledged with messages missing. */
static void on_pub_ack(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    cluster *c = closure;
    pthread_mutex_lock(&c->ack_lock);
    cluster_acks *a = c->acks;
    if (a && pae && !a->failed++)
        snprintf(a->err, sizeof a->err, "%s",
                 pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
    if (a && pae && pae->Err == NATS_NO_RESPONDERS) a->no_stream++;
    if (a && pa && !pa->Duplicate) a->stored++;
    if (a && pa && pa->Sequence > a->last_seq) a->last_seq = pa->Sequence;
    /* The first of the batch's messages at m's address not yet answered: a
     * message answered and freed may leave its address to a later one. */
    for (size_t i = 0; a && pa && i < a->n; i++)
        if (a->msgs[i] == m && !a->seqs[i]) {
            a->seqs[i] = pa->Sequence;
            break;
        }
    pthread_mutex_unlock(&c->ack_lock);
    natsMsg_Destroy(m);
}

void cluster_acks_begin(cluster *c, cluster_acks *a)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_lock(&c->ack_lock);
    c->acks = a;
    pthread_mutex_unlock(&c->ack_lock);
}

void cluster_acks_sent(cluster *c, cluster_acks *a, size_t i, const void *m)
{
    pthread_mutex_lock(&c->ack_lock);
    a->msgs[i] = m;
    pthread_mutex_unlock(&c->ack_lock);
}

void cluster_acks_end(cluster *c)
{
    pthread_mutex_lock(&c->ack_lock);
    c->acks = NULL;
    pthread_mutex_unlock(&c->ack_lock);
}

/* nats.c's last callback for the connection: after it, c may go. */
static void on_closed(natsConnection *nc, void *closure)
{
    cluster *c = closure;
    pthread_mutex_lock(&c->lock);
    c->closed = 1;
    pthread_cond_broadcast(&c->closed_cond);
    pthread_mutex_unlock(&c->lock);
}

int cluster_connected(const cluster *c)
{
    return c->connected;
}

/* --- For the cluster's queue ----------------------------------------------------------------- */

void cluster_run(cluster *c, cluster_fn work, cluster_fn done, void *arg)
{
    bridge_run(c->bridge, work, done, NULL, arg);
}

void cluster_run_settle(cluster *c, cluster_fn work, cluster_fn done, void *arg)
{
    bridge_run(c->settler, work, done, NULL, arg);
}

void cluster_post(cluster *c, cluster_fn call, void *arg)
{
    bridge_post(c->bridge, call, NULL, arg);
}

jsCtx *cluster_js(const cluster *c)
{
    return c->js;
}

natsConnection *cluster_nc(const cluster *c)
{
    return c->nc;
}

kvStore *cluster_attempts(const cluster *c)
{
    return c->attempts;
}

int cluster_replicas(const cluster *c)
{
    return c->replicas;
}

/* --- Starting and stopping -------------------------------------------------------------------- */

/* A random id, kept in DATA/node-id so a restarted node is the same node. */
static void load_node_id(cluster *c)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/node-id", c->data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        char id[64] = "";
        if (fgets(id, sizeof id, f) && strlen(id) >= CLUSTER_ID_LEN) {
            memcpy(c->id, id, CLUSTER_ID_LEN);
            c->id[CLUSTER_ID_LEN] = '\0';
            fclose(f);
            return;
        }
        fclose(f);
    }
    unsigned char raw[CLUSTER_ID_LEN / 2];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) memset(raw, 0x5a, sizeof raw);
    for (size_t i = 0; i < sizeof raw; i++) sprintf(c->id + 2 * i, "%02x", raw[i]);
    f = fopen(path, "w");
    if (f) {
        fprintf(f, "%s\n", c->id);
        fclose(f);
    }
}

/* JetStream may still be electing its leader when a cluster has just
 * started: keep asking for a while. */
static natsStatus open_bucket(cluster *c, const char *name, int replicas, int64_t ttl_ns,
                              kvStore **kv, char *err, size_t cap)
{
    natsStatus s = NATS_ERR;
    /* A server without JetStream says so at once: no point asking again
     * (it said nothing else, and spated stopped after 10 s with "cannot
     * create the bucket spate-registry: "). */
    char stream[64];
    snprintf(stream, sizeof stream, "KV_%s", name);
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    natsStatus is = js_GetStreamInfo(&si, c->js, stream, NULL, &code);
    jsStreamInfo_Destroy(si);
    if (is != NATS_OK && (code == JSNotEnabledErr || code == JSNotEnabledForAccountErr)) {
        snprintf(err, cap,
                 "cluster: JetStream is not enabled on the NATS server%s (start nats-server with "
                 "-js, or give its configuration a jetstream block%s)",
                 code == JSNotEnabledForAccountErr ? " for this account" : "",
                 code == JSNotEnabledForAccountErr ? " and the account jetstream: enabled" : "");
        return NATS_ERR;
    }
    for (int tries = 0; tries < 100 && !*kv; tries++) {
        s = js_KeyValue(kv, c->js, name);
        if (s != NATS_OK) {
            kvConfig kc;
            kvConfig_Init(&kc);
            kc.Bucket = name;
            kc.History = 1;
            kc.Replicas = replicas;
            kc.StorageType = js_FileStorage;
            kc.TTL = ttl_ns;
            s = js_CreateKeyValue(kv, c->js, &kc);
        }
        if (s != NATS_OK) usleep(100 * 1000);
    }
    if (s != NATS_OK)
        snprintf(err, cap, "cluster: cannot create the bucket %s: %s", name, cluster_nats_why(s));
    return s;
}

/* A stream made before chunks were sealed kept one copy of each: a forged
 * chunk published after the real one would replace it. Keep more, and let
 * chunks.c read them. */
static void artifact_stream_upgrade(cluster *c, jsStreamInfo *si)
{
    jsStreamConfig *sc = si->Config;
    if (!sc || (sc->MaxMsgsPerSubject >= SPATE_CLUSTER_CHUNK_KEEP && sc->AllowDirect)) return;
    sc->MaxMsgsPerSubject = SPATE_CLUSTER_CHUNK_KEEP;
    sc->AllowDirect = true;
    jsStreamInfo *out = NULL;
    natsStatus s = js_UpdateStream(&out, c->js, sc, NULL, NULL);
    if (s != NATS_OK)
        log_warn("cluster: cannot keep %d copies of each artifact chunk (the artifact stream "
                 "keeps what it kept): %s",
                 SPATE_CLUSTER_CHUNK_KEEP, natsStatus_GetText(s));
    jsStreamInfo_Destroy(out);
}

/* nats.c makes every bucket with AllowDirect, and then reads a key from
 * whichever server answers first: a replica just restarted, still behind,
 * gives a message's attempts as they were, and the attempt runs again (a
 * deliberate failure twice as attempt 2, SQS receive counts that do not
 * grow). The attempts are read from the stream's leader instead. */
static void attempts_from_leader(cluster *c)
{
    char stream[sizeof CLUSTER_ATTEMPTS_BUCKET + 4];
    snprintf(stream, sizeof stream, "KV_%s", CLUSTER_ATTEMPTS_BUCKET);
    jsStreamInfo *si = NULL, *out = NULL;
    natsStatus s = js_GetStreamInfo(&si, c->js, stream, NULL, NULL);
    if (s == NATS_OK && si->Config && si->Config->AllowDirect) {
        si->Config->AllowDirect = false;
        s = js_UpdateStream(&out, c->js, si->Config, NULL, NULL);
    }
    if (s == NATS_OK) {
        /* The bucket learns how to read when opened: again, also when
         * another node changed it after this one opened it. */
        kvStore *kv = NULL;
        s = js_KeyValue(&kv, c->js, CLUSTER_ATTEMPTS_BUCKET);
        if (s == NATS_OK) {
            kvStore_Destroy(c->attempts);
            c->attempts = kv;
        }
    }
    if (s != NATS_OK)
        log_warn("cluster: the attempts bucket is read from any replica (a replica behind may "
                 "run an attempt twice): %s",
                 natsStatus_GetText(s));
    jsStreamInfo_Destroy(si);
    jsStreamInfo_Destroy(out);
}

static natsStatus ensure_stores(cluster *c, int replicas, char *err, size_t cap)
{
    natsStatus s = open_bucket(c, CLUSTER_BUCKET, replicas, 0, &c->kv, err, cap);
    if (s == NATS_OK)
        s = open_bucket(c, CLUSTER_ATTEMPTS_BUCKET, replicas, SPATE_CLUSTER_ATTEMPTS_TTL_NS,
                        &c->attempts, err, cap);
    if (s != NATS_OK) return s;
    attempts_from_leader(c);
    for (int tries = 0; tries < 100; tries++) {
        jsStreamInfo *si = NULL;
        s = js_GetStreamInfo(&si, c->js, CLUSTER_ARTIFACT_STREAM, NULL, NULL);
        if (s == NATS_OK) {
            artifact_stream_upgrade(c, si);
            jsStreamInfo_Destroy(si);
            return NATS_OK;
        }
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        sc.Name = CLUSTER_ARTIFACT_STREAM;
        const char *subjects[] = {"spate.artifact.>"};
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        sc.Replicas = replicas;
        sc.MaxMsgsPerSubject = SPATE_CLUSTER_CHUNK_KEEP;
        sc.AllowDirect = true; /* chunks.c reads older copies of a chunk directly */
        s = js_AddStream(&si, c->js, &sc, NULL, NULL);
        if (s == NATS_OK) {
            jsStreamInfo_Destroy(si);
            return NATS_OK;
        }
        usleep(100 * 1000);
    }
    snprintf(err, cap, "cluster: cannot create the artifact stream: %s", natsStatus_GetText(s));
    return s;
}

int cluster_start(uv_loop_t *loop, const cluster_config *cfg, cluster **out, char *err,
                  size_t errcap)
{
    cluster *c = calloc(1, sizeof *c);
    if (!c) return ERR_NOMEM;
    c->loop = loop;
    snprintf(c->url, sizeof c->url, "%s", cfg->api_url);
    snprintf(c->data_dir, sizeof c->data_dir, "%s", cfg->data_dir);
    list_init(&c->routed);
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->ack_lock, NULL);
    pthread_mutex_init(&c->refused_lock, NULL);
    pthread_cond_init(&c->closed_cond, NULL);
    load_node_id(c);
    if (cfg->key_file && cfg->key_file[0]) {
        if (!(c->seal = seal_load(cfg->key_file, err, errcap))) return ERR_INVAL;
        log_info("cluster: registry entries, artifact chunks and messages are sealed and checked "
                 "with the cluster key %s... (its SHA-256)",
                 seal_id(c->seal));
    } else {
        log_warn("cluster: no --cluster-key: registry entries, artifacts and messages between "
                 "nodes are not authenticated; whoever may publish on this NATS can make every "
                 "node deploy and run code of its choosing");
    }
    cluster__leases_init(c);
    if (bridge_open(loop, &c->bridge) != 0 || bridge_open(loop, &c->settler) != 0) {
        snprintf(err, errcap, "cluster: cannot start its thread");
        return ERR_IO;
    }

    char shown[1024];
    int anonymous = !cluster_shown_urls(cfg->urls, shown, sizeof shown);
    if (anonymous && !(cfg->creds && cfg->creds[0]))
        log_warn("cluster: NATS without credentials (%s): whoever reaches it, functions too "
                 "(they have the host's network unless deployed with network=false), can read "
                 "every function's environment and replace its code; give nats-server users "
                 "(docs/nats-permissions.conf) and name one with --cluster-creds FILE, or in "
                 "cluster = nats://USER:PASSWORD@HOST:PORT in a config file only root may read "
                 "(the command line is visible to every process)",
                 shown);
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    char *urls = strdup(cfg->urls);
    const char *servers[16];
    int nservers = 0;
    for (char *save = NULL, *u = strtok_r(urls, ",", &save); u && nservers < 16;
         u = strtok_r(NULL, ",", &save))
        servers[nservers++] = u;
    char name[64];
    snprintf(name, sizeof name, "spated %s", c->id);
    if (s == NATS_OK) s = natsOptions_SetServers(o, servers, nservers);
    if (s == NATS_OK) s = natsOptions_SetName(o, name);
    if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true); /* else ~1 ms a round trip */
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, 2000);
    /* A silent partition shows as missing PONGs: noticed within ~6 s, not
     * the library's default of minutes. */
    if (s == NATS_OK) s = natsOptions_SetPingInterval(o, SPATE_CLUSTER_PING_MS);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(o, 2);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, on_reconnected, c);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, on_disconnected, c);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(o, on_closed, c);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, on_async_error, c);
    if (s == NATS_OK && cluster__secure_options(o, cfg, err, errcap) != 0) {
        natsOptions_Destroy(o);
        free(urls);
        return ERR_INVAL;
    }
    /* nats.c 3.4.1 (Debian 12's) sends no signature when the signed nonce
     * begins with a zero byte (fixed upstream by nats.c #705, in 3.8): one
     * start in 256 with --cluster-creds would die "Authorization Violation".
     * Each connect signs a new nonce: three refusals in a row are real. */
    int tries = cfg->creds && cfg->creds[0] ? 3 : 1;
    if (s == NATS_OK) s = NATS_CONNECTION_AUTH_FAILED;
    for (int i = 0; i < tries && s == NATS_CONNECTION_AUTH_FAILED; i++)
        s = natsConnection_Connect(&c->nc, o);
    if (s == NATS_OK) c->connected = 1;
    natsOptions_Destroy(o);
    free(urls);
    if (s != NATS_OK) {
        /* nats.c's last error says more (TLS, authorization) than the status;
         * it never holds the URL's credentials. */
        const char *why = nats_GetLastError(NULL);
        snprintf(err, errcap, "cluster: cannot connect to %s: %s%s%s", shown, natsStatus_GetText(s),
                 why && strcmp(why, natsStatus_GetText(s)) ? ": " : "",
                 why && strcmp(why, natsStatus_GetText(s)) ? why : "");
        return ERR_IO;
    }
    int replicas = (int)cfg->replicas;
    if (!replicas) {
        char **known = NULL;
        int count = 0;
        if (natsConnection_GetServers(c->nc, &known, &count) == NATS_OK) {
            for (int i = 0; i < count; i++) free(known[i]);
            free(known);
        }
        replicas = count >= 3 ? 3 : 1;
        /* The servers it knows are those of --cluster and those they
         * advertise: three nats-servers on one machine listening on every
         * address advertise none (loopback), and a --cluster naming two of
         * them made every bucket and stream with one replica, silently
         * (README's example did): the loss of one server lost them. */
        if (count < 3)
            log_warn("cluster: %d nats-server%s known (those --cluster names and those they "
                     "advertise): buckets and streams get 1 replica, and are lost with the "
                     "server holding them; in a cluster of three or more, name every server "
                     "(--cluster nats://A,nats://B,nats://C) or give --cluster-replicas",
                     count, count == 1 ? "" : "s");
    }
    c->replicas = replicas;
    /* Short waits: while leaders are elected a call may go unanswered;
     * asking again soon beats waiting long (the callers retry). */
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = c;
    if (natsConnection_JetStream(&c->js, c->nc, &jo) != NATS_OK ||
        ensure_stores(c, replicas, err, errcap) != NATS_OK)
        return ERR_IO;

    if (cluster__nodes_start(c, err, errcap) != 0 || cluster__route_start(c, err, errcap) != 0)
        return ERR_IO;
    log_info("cluster: joined %s node=%s replicas=%d", shown, c->id, replicas);
    *out = c;
    return 0;
}

void cluster_quiesce(cluster *c)
{
    if (!c) return;
    c->quiet = 1;
    uv_timer_stop(&c->heartbeat);
}

void cluster_set_api_url(cluster *c, const char *url)
{
    snprintf(c->url, sizeof c->url, "%s", url);
}

void cluster_follow(cluster *c)
{
    if (c->reg) cluster__registry_follow(c->reg);
    cluster__leases_start(c);
}

const char *cluster_node_id(const cluster *c)
{
    return c->id;
}

static void on_heartbeat_closed(uv_handle_t *h)
{
    cluster *c = h->data;
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->ack_lock);
    pthread_mutex_destroy(&c->refused_lock);
    pthread_cond_destroy(&c->closed_cond);
    seal_free(c->seal);
    free(c->invoked);
    free(c);
}

void cluster_stop(cluster *c)
{
    if (!c) return;
    c->stopping = 1;
    bridge_stop(c->bridge); /* the job running ends its tries; those not started go */
    bridge_stop(c->settler);
    cluster__leases_stop(c); /* before the registry: it tells the registry of changes */
    if (c->reg) cluster__registry_stop(c->reg);
    cluster__nodes_stop(c);
    cluster__route_stop(c);
    kvStore_Destroy(c->kv);
    kvStore_Destroy(c->attempts);
    jsCtx_Destroy(c->js);
    /* Closing calls back (disconnected, then closed) from nats.c's thread:
     * wait for the last one before c can be freed. */
    natsConnection_Close(c->nc);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&c->lock);
    while (!c->closed)
        if (pthread_cond_timedwait(&c->closed_cond, &c->lock, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&c->lock);
    natsConnection_Destroy(c->nc);
    bridge_close(c->bridge); /* frees what is left */
    bridge_close(c->settler);
    uv_close((uv_handle_t *)&c->heartbeat, on_heartbeat_closed);
}

const char *cluster_nats_why(int status)
{
    const char *why = nats_GetLastError(NULL);
    return why && why[0] ? why : natsStatus_GetText((natsStatus)status);
}
