#include "cluster/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/json.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/limits.h"
#include "common/list.h"
#include "common/log.h"
#include "common/strmap.h"
#include "sched/pool.h"

#define BUCKET "spate-registry"
/* The failed attempts of messages being retried (jsqueue.c); a record
 * outlives any retry schedule, and goes by itself if left behind. */
#define ATTEMPTS_BUCKET "spate-attempts"
#define ATTEMPTS_TTL_NS (7LL * 24 * 3600 * 1000000000)
#define ARTIFACT_STREAM "SPATE_ARTIFACTS"
#define CHUNK (256u * KIB)
#define NODES_MAX 64
#define NODE_DOWN_MS 5000
#define HEARTBEAT_MS 1000
#define PING_MS 2000
#define ROUTED_PAYLOAD_MAX (512u * KIB) /* larger invocations stay where they arrive */
#define ID_LEN 16
#define JOB_TRIES 60 /* a registry write is tried for half a minute */
#define JOB_RETRY_MS 500

/* --- Events: from nats.c's threads and ours to the loop ------------------------------- */

enum ev_kind {
    EV_KV_PUT,
    EV_KV_DEL,
    EV_KV_READY,
    EV_HEARTBEAT,
    EV_INVOKE_IN,
    EV_REPLY,
    EV_JOB,
    EV_CALL,
    EV_TR_PUT,
    EV_TR_DEL
};

typedef struct job job;

typedef struct event {
    list_node link;
    enum ev_kind kind;
    char key[SPATE_NAME_MAX + SPATE_TOPIC_NAME_MAX + 8];
    char *text; /* KV value or heartbeat JSON, NUL-terminated */
    natsMsg *msg;
    job *j;
    cluster_fn fn; /* EV_CALL */
    void *arg;
} event;

/* Blocking work for the worker thread. */
enum job_kind { JOB_PUBLISH, JOB_DELETE, JOB_FETCH, JOB_CALL, JOB_PUT };
struct job {
    list_node link;
    enum job_kind kind;
    char name[SPATE_NAME_MAX + 1];
    char key[SPATE_NAME_MAX + SPATE_TOPIC_NAME_MAX + 8]; /* PUT, DELETE */
    char sha[HASH_HEX_LEN + 1];
    char path[4096];              /* PUBLISH: the artifact file */
    char *value;                  /* PUBLISH: the registry entry */
    char purge[HASH_HEX_LEN + 1]; /* PUBLISH, DELETE: an artifact no entry uses now, or "" */
    buf data;                     /* FETCH: the artifact */
    cluster_fn work, done;        /* CALL */
    void *arg;
    char err[256]; /* "" on success */
};

typedef struct node_info {
    char id[ID_LEN + 1];
    char url[128];
    uint32_t instances, max_instances, functions;
    uint64_t seen_ms; /* loop time */
} node_info;

/* What the registry wants of one function, and how far this node is. */
typedef struct fn_sync {
    char name[SPATE_NAME_MAX + 1]; /* the map's key */
    char *entry;                   /* the latest registry value (JSON), or NULL: deleted */
    int applying;                  /* a fetch or deploy is under way */
    int changed;                   /* a newer entry came while applying */
} fn_sync;

typedef struct routed {
    list_node link;
    cluster *c;
    uint64_t seq;
    char function[SPATE_NAME_MAX + 1];
    char request_id[64];
    buf payload;
    uint32_t timeout_ms;
    int attempts;
    uv_timer_t timer;
    cluster_invoke_cb cb;
    void *data;
} routed;

typedef struct inbound {
    invocation inv;
    cluster *c;
    natsMsg *msg;
    char request_id[64];
} inbound;

struct cluster {
    uv_loop_t *loop;
    functions *table;
    char id[ID_LEN + 1];
    char url[128];
    char data_dir[4096];
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;       /* the registry */
    kvStore *attempts; /* failed attempts of messages being retried */
    natsSubscription *hb_sub, *invoke_sub, *reply_sub;
    uv_async_t async;
    uv_timer_t heartbeat;
    pthread_mutex_t lock;
    pthread_cond_t work;
    list_node events; /* to the loop */
    list_node jobs;   /* to the worker */
    pthread_t worker, watcher;
    _Atomic int stopping;
    _Atomic int rewatch;   /* reconnected: the watcher starts again (its consumer may be lost) */
    _Atomic int connected; /* to a NATS server, as nats.c last told */
    int closed;            /* nats.c's last callback came (under lock) */
    pthread_mutex_t ack_lock;
    cluster_acks *acks; /* the batch the worker is publishing, or NULL */
    node_info nodes[NODES_MAX];
    uint32_t nnodes;
    strmap syncs; /* name -> fn_sync */
    int registry_ready;
    list_node routed; /* invocations sent to other nodes */
    uint64_t next_seq;
    int open_handles;
    int replicas;
    triggers *tr;
    int watching;
    int quiet; /* spated is stopping: the function table is going away */
};

static void post(cluster *c, event *e)
{
    pthread_mutex_lock(&c->lock);
    list_push_back(&c->events, &e->link);
    pthread_mutex_unlock(&c->lock);
    uv_async_send(&c->async);
}

static event *new_event(enum ev_kind kind)
{
    event *e = calloc(1, sizeof *e);
    if (e) e->kind = kind;
    return e;
}

/* --- The registry entry: a function version as JSON ------------------------------------ */

/* {"sha256", "size", "origin", "config": as GET /v1/functions/NAME shows it} */
static char *entry_json(const cluster *c, const fn *f)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "sha256", f->active.sha256);
    cJSON_AddNumberToObject(o, "size", (double)f->active.size);
    cJSON_AddStringToObject(o, "origin", c->id);
    cJSON_AddItemToObject(o, "config", json_config(&f->active.config));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static uint32_t num(const cJSON *o, const char *k, uint32_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 4e9
               ? (uint32_t)v->valuedouble
               : dflt;
}

/* The SHA-256 a parsed entry names into sha; -1 if it names none. */
static int sha_of(const cJSON *o, char sha[HASH_HEX_LEN + 1])
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "sha256");
    if (!cJSON_IsString(s) || strlen(s->valuestring) != HASH_HEX_LEN) return -1;
    memcpy(sha, s->valuestring, HASH_HEX_LEN + 1);
    return 0;
}

/* Reads an entry: its SHA-256 into sha and its configuration into cfg. */
static int entry_parse(const char *text, char sha[HASH_HEX_LEN + 1], fn_config *cfg, char *why,
                       size_t cap)
{
    cJSON *o = cJSON_Parse(text);
    if (sha_of(o, sha) != 0) {
        snprintf(why, cap, "malformed registry entry");
        cJSON_Delete(o);
        return -1;
    }
    fnconfig_defaults(cfg);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "config");
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(k, "runtime");
    if (cJSON_IsString(rt)) {
        int r = fnconfig_runtime_parse(rt->valuestring, strlen(rt->valuestring));
        if (r >= 0) cfg->runtime = (enum fn_runtime)r;
    }
    cfg->min_instances = num(k, "min", cfg->min_instances);
    cfg->max_instances = num(k, "max", cfg->max_instances);
    cfg->timeout_ms = num(k, "timeout_ms", cfg->timeout_ms);
    cfg->memory_mb = num(k, "memory_mb", cfg->memory_mb);
    cfg->keep_alive_ms = num(k, "keep_alive_ms", cfg->keep_alive_ms);
    cfg->queue_max = num(k, "queue", cfg->queue_max);
    cfg->cpu_millis = num(k, "cpu_millis", cfg->cpu_millis);
    cfg->tmp_mb = num(k, "tmp_mb", cfg->tmp_mb);
    cfg->network = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(k, "network"));
    int rc = 0;
    const cJSON *var;
    cJSON_ArrayForEach(var, cJSON_GetObjectItemCaseSensitive(k, "env"))
    {
        char kv[SPATE_ENV_BYTES_MAX + 2];
        int n = snprintf(kv, sizeof kv, "%s=%s", var->string,
                         cJSON_IsString(var) ? var->valuestring : "");
        if (rc == 0)
            rc = fnconfig_add_env(cfg, kv, n < (int)sizeof kv ? (size_t)n : sizeof kv, why, cap);
    }
    cJSON_ArrayForEach(var, cJSON_GetObjectItemCaseSensitive(k, "secrets"))
    {
        char kv[SPATE_ENV_BYTES_MAX + 2];
        int n = snprintf(kv, sizeof kv, "%s=%s", var->string ? var->string : "",
                         cJSON_IsString(var) ? var->valuestring : "");
        if (rc == 0)
            rc = fnconfig_add_secret(cfg, kv, n < (int)sizeof kv ? (size_t)n : sizeof kv, why, cap);
    }
    cJSON_Delete(o);
    if (rc == 0) rc = fnconfig_check(cfg, why, cap);
    if (rc != 0) fnconfig_free(cfg);
    return rc ? -1 : 0;
}

/* The SHA-256 an entry's text names into sha; -1 if it names none. */
static int entry_sha(const char *text, char sha[HASH_HEX_LEN + 1])
{
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    int rc = sha_of(o, sha);
    cJSON_Delete(o);
    return rc;
}

struct sha_use {
    const char *sha;
    int used;
};

static void count_use(const char *key, void *value, void *data)
{
    const fn_sync *s = value;
    struct sha_use *u = data;
    char sha[HASH_HEX_LEN + 1];
    if (!u->used && s->entry && entry_sha(s->entry, sha) == 0 && strcmp(sha, u->sha) == 0)
        u->used = 1;
}

/* A function's entry is replaced or deleted: if no entry names the artifact
 * it named any more, the job purges it from the artifact stream after the
 * registry write. (A deploy uploads its artifact again each time, so one
 * purged while another node deploys the same bytes comes back with that
 * deploy's next write.) */
static void purge_if_unused(cluster *c, job *j, const char *old_entry)
{
    char sha[HASH_HEX_LEN + 1];
    if (entry_sha(old_entry, sha) != 0) return;
    struct sha_use u = {.sha = sha};
    strmap_each(&c->syncs, count_use, &u);
    if (!u.used) memcpy(j->purge, sha, sizeof j->purge);
}

/* --- The worker thread: JetStream calls that block ------------------------------------- */

static void purge_artifact(cluster *c, const char *sha)
{
    char subj[128];
    snprintf(subj, sizeof subj, "spate.artifact.%s.>", sha);
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Subject = subj;
    natsStatus s = js_PurgeStream(c->js, ARTIFACT_STREAM, &o, NULL);
    if (s != NATS_OK)
        log_warn("cluster: cannot purge artifact %.12s: %s", sha, natsStatus_GetText(s));
    else
        log_debug("cluster: purged artifact %.12s", sha);
}

static void job_publish(cluster *c, job *j)
{
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(j->err, sizeof j->err, "cannot read artifact %.12s: %s", j->sha, strerror(errno));
        if (fd >= 0) close(fd);
        return;
    }
    char *chunk = malloc(CHUNK);
    uint64_t n = 0, size = (uint64_t)st.st_size;
    natsStatus s = chunk ? NATS_OK : NATS_NO_MEMORY;
    char subj[128];
    for (uint64_t off = 0; s == NATS_OK && (off < size || n == 0); off += CHUNK, n++) {
        ssize_t r = pread(fd, chunk, CHUNK, (off_t)off);
        if (r < 0) {
            snprintf(j->err, sizeof j->err, "cannot read artifact %.12s: %s", j->sha,
                     strerror(errno));
            break;
        }
        snprintf(subj, sizeof subj, "spate.artifact.%s.%llu", j->sha, (unsigned long long)n);
        s = js_Publish(NULL, c->js, subj, chunk, (int)r, NULL, NULL);
        if (size == 0) {
            n++;
            break;
        }
    }
    close(fd);
    free(chunk);
    if (!j->err[0] && s == NATS_OK) {
        char count[64];
        int len = snprintf(count, sizeof count, "%llu %llu", (unsigned long long)n,
                           (unsigned long long)size);
        snprintf(subj, sizeof subj, "spate.artifact.%s.n", j->sha);
        s = js_Publish(NULL, c->js, subj, count, len, NULL, NULL);
    }
    if (!j->err[0] && s == NATS_OK) {
        char key[SPATE_NAME_MAX + 8];
        snprintf(key, sizeof key, "fn.%s", j->name);
        s = kvStore_PutString(NULL, c->kv, key, j->value);
    }
    if (!j->err[0] && s != NATS_OK) snprintf(j->err, sizeof j->err, "%s", natsStatus_GetText(s));
}

static void job_fetch(cluster *c, job *j)
{
    char subj[128];
    natsMsg *m = NULL;
    snprintf(subj, sizeof subj, "spate.artifact.%s.n", j->sha);
    natsStatus s = js_GetLastMsg(&m, c->js, ARTIFACT_STREAM, subj, NULL, NULL);
    unsigned long long n = 0, size = 0;
    if (s == NATS_OK) {
        char count[64];
        snprintf(count, sizeof count, "%.*s", natsMsg_GetDataLength(m), natsMsg_GetData(m));
        natsMsg_Destroy(m);
        if (sscanf(count, "%llu %llu", &n, &size) != 2 || size > 1024ull * MIB) {
            snprintf(j->err, sizeof j->err, "artifact %.12s: bad chunk count", j->sha);
            return;
        }
    }
    buf_init(&j->data, (size_t)size);
    for (unsigned long long i = 0; s == NATS_OK && i < n; i++) {
        snprintf(subj, sizeof subj, "spate.artifact.%s.%llu", j->sha, i);
        s = js_GetLastMsg(&m, c->js, ARTIFACT_STREAM, subj, NULL, NULL);
        if (s != NATS_OK) break;
        if (buf_append(&j->data, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m)) != 0) {
            snprintf(j->err, sizeof j->err, "artifact %.12s: larger than announced", j->sha);
            natsMsg_Destroy(m);
            return;
        }
        natsMsg_Destroy(m);
    }
    if (s != NATS_OK) {
        snprintf(j->err, sizeof j->err, "cannot fetch artifact %.12s: %s", j->sha,
                 natsStatus_GetText(s));
        return;
    }
    char got[HASH_HEX_LEN + 1];
    hash_sha256_hex(j->data.data, j->data.len, got);
    if (strcmp(got, j->sha) != 0)
        snprintf(j->err, sizeof j->err, "artifact %.12s arrived as %.12s: refused", j->sha, got);
}

static void *worker_main(void *arg)
{
    cluster *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (list_empty(&c->jobs) && !c->stopping) pthread_cond_wait(&c->work, &c->lock);
        if (c->stopping) break;
        job *j = list_entry(list_first(&c->jobs), job, link);
        list_remove(&j->link);
        pthread_mutex_unlock(&c->lock);
        if (j->kind == JOB_CALL) {
            j->work(j->arg);
            event *e = new_event(EV_CALL);
            if (e) {
                e->fn = j->done;
                e->arg = j->arg;
                post(c, e);
            }
            free(j);
            pthread_mutex_lock(&c->lock);
            continue;
        }
        /* While a NATS server is lost, its clients reconnect and JetStream
         * elects new leaders: seconds in which calls fail. Try again for a
         * while before giving up. */
        for (int tries = 0; tries < JOB_TRIES && !c->stopping; tries++) {
            j->err[0] = '\0';
            buf_free(&j->data);
            if (j->kind == JOB_PUBLISH) {
                job_publish(c, j);
            } else if (j->kind == JOB_DELETE) {
                natsStatus s = kvStore_Delete(c->kv, j->key);
                if (s != NATS_OK) snprintf(j->err, sizeof j->err, "%s", natsStatus_GetText(s));
            } else if (j->kind == JOB_PUT) {
                natsStatus s = kvStore_PutString(NULL, c->kv, j->key, j->value);
                if (s != NATS_OK) snprintf(j->err, sizeof j->err, "%s", natsStatus_GetText(s));
            } else {
                job_fetch(c, j);
            }
            if (!j->err[0] || strstr(j->err, "refused")) break;
            usleep(JOB_RETRY_MS * 1000);
        }
        if (!j->err[0] && j->purge[0]) purge_artifact(c, j->purge);
        event *e = new_event(EV_JOB);
        if (e) {
            e->j = j;
            post(c, e);
        }
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void submit(cluster *c, job *j)
{
    pthread_mutex_lock(&c->lock);
    list_push_back(&c->jobs, &j->link);
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->lock);
}

static job *new_job(enum job_kind kind, const char *name)
{
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->kind = kind;
    snprintf(j->name, sizeof j->name, "%s", name);
    return j;
}

/* --- The watcher thread: the registry ------------------------------------------------------ */

/* A watcher whose consumer lived on a lost server stops hearing, silently,
 * until nats.c notices missed heartbeats. The bucket's stream, replicated,
 * knows its last revision: behind it for over a second, watch again. */
static int watcher_behind(cluster *c, uint64_t seen, uint64_t *since)
{
    static __thread uint64_t checked;
    uint64_t now = clock_mono_ns() / 1000000;
    if (now - checked < 1000) return 0;
    checked = now;
    jsStreamInfo *si = NULL;
    if (js_GetStreamInfo(&si, c->js, "KV_" BUCKET, NULL, NULL) != NATS_OK) return 0;
    uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    if (last <= seen) {
        *since = 0;
        return 0;
    }
    if (!*since) *since = now;
    if (now - *since < 1000) return 0;
    *since = 0;
    log_info("cluster: the registry watcher fell behind (revision %llu of %llu); watching again",
             (unsigned long long)seen, (unsigned long long)last);
    return 1;
}

static void *watcher_main(void *arg)
{
    cluster *c = arg;
    kvWatcher *w = NULL;
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    natsStatus s;
    uint64_t seen = 0, behind_since = 0;
    while (!c->stopping) {
        /* (Again) from the current values: after a reconnect or an error the
         * watcher's consumer may be gone; applying a value twice is harmless. */
        if (!w || c->rewatch) {
            c->rewatch = 0;
            kvWatcher_Destroy(w);
            w = NULL;
            s = kvStore_Watch(&w, c->kv, ">", &o);
            if (s != NATS_OK) {
                log_warn("cluster: cannot watch the registry (trying again): %s",
                         natsStatus_GetText(s));
                w = NULL;
                usleep(500 * 1000);
                continue;
            }
        }
        kvEntry *ent = NULL;
        s = kvWatcher_Next(&ent, w, 500);
        if (s == NATS_TIMEOUT) {
            if (watcher_behind(c, seen, &behind_since)) c->rewatch = 1;
            continue;
        }
        if (s != NATS_OK) {
            c->rewatch = 1;
            usleep(200 * 1000);
            continue;
        }
        if (!ent) { /* the current values are all in */
            event *e = new_event(EV_KV_READY);
            if (e) post(c, e);
            continue;
        }
        if (kvEntry_Revision(ent) > seen) seen = kvEntry_Revision(ent);
        const char *key = kvEntry_Key(ent);
        int put = kvEntry_Operation(ent) == kvOp_Put;
        int is_fn = strncmp(key, "fn.", 3) == 0, is_tr = strncmp(key, "tr.", 3) == 0;
        event *e = is_fn   ? new_event(put ? EV_KV_PUT : EV_KV_DEL)
                   : is_tr ? new_event(put ? EV_TR_PUT : EV_TR_DEL)
                           : NULL;
        if (e && strlen(key + 3) < sizeof e->key) {
            snprintf(e->key, sizeof e->key, "%s", key + 3);
            if (put) e->text = strndup(kvEntry_Value(ent), (size_t)kvEntry_ValueLen(ent));
            post(c, e);
        } else {
            free(e);
        }
        kvEntry_Destroy(ent);
    }
    kvWatcher_Destroy(w);
    return NULL;
}

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
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->lock);
}

int cluster_connected(const cluster *c)
{
    return c->connected;
}

static void on_heartbeat_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    event *e = new_event(EV_HEARTBEAT);
    if (e && (e->text = strndup(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m))))
        post(closure, e);
    else
        free(e);
    natsMsg_Destroy(m);
}

/* A message for the loop to handle (it destroys it). */
static void post_msg(cluster *c, enum ev_kind kind, natsMsg *m)
{
    event *e = new_event(kind);
    if (!e) {
        natsMsg_Destroy(m);
        return;
    }
    e->msg = m;
    post(c, e);
}

static void on_invoke_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    post_msg(closure, EV_INVOKE_IN, m);
}

static void on_reply_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    post_msg(closure, EV_REPLY, m);
}

/* --- For the cluster's queue ----------------------------------------------------------------- */

void cluster_run(cluster *c, cluster_fn work, cluster_fn done, void *arg)
{
    job *j = new_job(JOB_CALL, "");
    if (!j) { /* out of memory: run it here rather than lose it */
        work(arg);
        done(arg);
        return;
    }
    j->work = work;
    j->done = done;
    j->arg = arg;
    submit(c, j);
}

void cluster_post(cluster *c, cluster_fn call, void *arg)
{
    event *e = new_event(EV_CALL);
    if (!e) return;
    e->fn = call;
    e->arg = arg;
    post(c, e);
}

jsCtx *cluster_js(const cluster *c)
{
    return c->js;
}

kvStore *cluster_attempts(const cluster *c)
{
    return c->attempts;
}

int cluster_replicas(const cluster *c)
{
    return c->replicas;
}

/* --- Nodes -------------------------------------------------------------------------------------
 */

static node_info *node_slot(cluster *c, const char *id)
{
    for (uint32_t i = 0; i < c->nnodes; i++)
        if (strcmp(c->nodes[i].id, id) == 0) return &c->nodes[i];
    if (c->nnodes == NODES_MAX) return NULL;
    node_info *n = &c->nodes[c->nnodes++];
    memset(n, 0, sizeof *n);
    snprintf(n->id, sizeof n->id, "%s", id);
    return n;
}

static void send_heartbeat(uv_timer_t *t)
{
    cluster *c = t->data;
    uint32_t nfns = functions_count(c->table);
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "{\"id\":\"%s\",\"url\":\"%s\",\"instances\":%u,\"functions\":%u}", c->id,
                     c->url, pool_node_live(), nfns);
    natsConnection_Publish(c->nc, "spate.node.hb", msg, n);
}

static void on_heartbeat(cluster *c, const char *text)
{
    cJSON *o = cJSON_Parse(text);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(o, "url");
    node_info *n = cJSON_IsString(id) && strlen(id->valuestring) == ID_LEN
                       ? node_slot(c, id->valuestring)
                       : NULL;
    if (n) {
        if (!n->seen_ms || uv_now(c->loop) - n->seen_ms > NODE_DOWN_MS)
            log_info("cluster: node %s is up url=%s", n->id,
                     cJSON_IsString(url) ? url->valuestring : "?");
        n->seen_ms = uv_now(c->loop);
        if (cJSON_IsString(url)) snprintf(n->url, sizeof n->url, "%s", url->valuestring);
        n->instances = num(o, "instances", 0);
        n->functions = num(o, "functions", 0);
    }
    cJSON_Delete(o);
}

static int node_live(const cluster *c, const node_info *n)
{
    return n->seen_ms && uv_now(c->loop) - n->seen_ms <= NODE_DOWN_MS;
}

uint32_t cluster_live_nodes(const cluster *c)
{
    uint32_t live = 0;
    for (uint32_t i = 0; i < c->nnodes; i++) live += node_live(c, &c->nodes[i]) ? 1 : 0;
    return live;
}

cJSON *cluster_nodes_json(const cluster *c)
{
    cJSON *arr = cJSON_CreateArray();
    for (int self = 1; self >= 0; self--)
        for (uint32_t i = 0; i < c->nnodes; i++) {
            const node_info *n = &c->nodes[i];
            if ((strcmp(n->id, c->id) == 0) != self) continue;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", n->id);
            cJSON_AddStringToObject(o, "url", n->url);
            cJSON_AddBoolToObject(o, "self", self);
            cJSON_AddStringToObject(o, "state",
                                    self && !c->connected ? "disconnected"
                                    : node_live(c, n)     ? "up"
                                                          : "down");
            cJSON_AddNumberToObject(o, "instances", n->instances);
            cJSON_AddNumberToObject(o, "functions", n->functions);
            cJSON_AddNumberToObject(o, "last_heartbeat_ms_ago",
                                    (double)(uv_now(c->loop) - n->seen_ms));
            cJSON_AddItemToArray(arr, o);
        }
    return arr;
}

const char *cluster_node_id(const cluster *c)
{
    return c->id;
}

/* --- Following the registry ------------------------------------------------------------------- */

static void apply(cluster *c, const char *name);

static fn_sync *sync_of(cluster *c, const char *name)
{
    fn_sync *s = strmap_get(&c->syncs, name, strlen(name));
    if (s) return s;
    s = calloc(1, sizeof *s);
    if (s) snprintf(s->name, sizeof s->name, "%s", name);
    if (s && strmap_put(&c->syncs, s->name, s) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

typedef struct kv_deploy {
    cluster *c;
    char name[SPATE_NAME_MAX + 1];
} kv_deploy;

static void applied(cluster *c, const char *name)
{
    fn_sync *s = sync_of(c, name);
    if (!s) return;
    s->applying = 0;
    if (s->changed) {
        s->changed = 0;
        apply(c, name);
    }
}

static void on_kv_deployed(const deploy_result *r, void *data)
{
    kv_deploy *d = data;
    if (r->status >= 400)
        log_warn("cluster: cannot deploy from the registry: %s fn=%s", r->message, d->name);
    else
        log_info("cluster: deployed from the registry fn=%s version=%u", d->name,
                 r->f->active.version);
    applied(d->c, d->name);
    free(d);
}

/* The registry holds a version of name this node does not run: fetch its
 * artifact (unless this node has it) and deploy it. */
static void apply(cluster *c, const char *name)
{
    fn_sync *s = sync_of(c, name);
    if (!s) return;
    if (s->applying) {
        s->changed = 1;
        return;
    }
    fn *f = functions_find(c->table, name, strlen(name));
    if (!s->entry) {
        if (f && functions_delete(c->table, name) == 0)
            log_info("cluster: deleted as the registry says fn=%s", name);
        return;
    }
    char sha[HASH_HEX_LEN + 1], why[256];
    fn_config cfg;
    if (entry_parse(s->entry, sha, &cfg, why, sizeof why) != 0) {
        log_warn("cluster: %s fn=%s", why, name);
        return;
    }
    char *mine = f ? entry_json(c, f) : NULL;
    int same = 0;
    if (mine) {
        /* The same version and configuration, whoever deployed it. */
        cJSON *a = cJSON_Parse(mine), *b = cJSON_Parse(s->entry);
        cJSON_DeleteItemFromObject(a, "origin");
        cJSON_DeleteItemFromObject(b, "origin");
        same = cJSON_Compare(a, b, 1);
        cJSON_Delete(a);
        cJSON_Delete(b);
        free(mine);
    }
    fnconfig_free(&cfg);
    if (same) return;
    job *j = new_job(JOB_FETCH, name);
    if (!j) return;
    memcpy(j->sha, sha, sizeof j->sha);
    s->applying = 1;
    submit(c, j);
}

static void fetched(cluster *c, job *j)
{
    fn_sync *s = sync_of(c, j->name);
    if (j->err[0] || !s || !s->entry) {
        if (j->err[0]) log_warn("cluster: %s fn=%s", j->err, j->name);
        applied(c, j->name);
        return;
    }
    char sha[HASH_HEX_LEN + 1], why[256];
    fn_config cfg;
    kv_deploy *d = calloc(1, sizeof *d);
    if (!d || entry_parse(s->entry, sha, &cfg, why, sizeof why) != 0 || strcmp(sha, j->sha) != 0) {
        free(d);
        applied(c, j->name); /* a newer entry came; apply() runs again */
        return;
    }
    d->c = c;
    snprintf(d->name, sizeof d->name, "%s", j->name);
    functions_deploy(c->table, j->name, &cfg, &j->data, on_kv_deployed, d);
}

static void on_kv(cluster *c, event *e)
{
    fn_sync *s = sync_of(c, e->key);
    if (!s) return;
    free(s->entry);
    s->entry = e->text; /* NULL for a delete */
    e->text = NULL;
    if (c->registry_ready) apply(c, e->key);
}

/* A function here that the registry does not hold (deleted while this node
 * was away) goes: in cluster mode the registry decides. */
static void reconcile_one(fn *f, void *data)
{
    sync_of(data, f->name);
}

static void apply_each(const char *key, void *value, void *data)
{
    apply(data, key);
}

/* The registry's current values are in: make this node match them. */
static void on_registry_ready(cluster *c)
{
    if (c->registry_ready) return;
    c->registry_ready = 1;
    functions_each(c->table, reconcile_one, c);
    strmap_each(&c->syncs, apply_each, c);
    log_info("cluster: registry followed node=%s", c->id);
}

/* --- Announcing local changes ---------------------------------------------------------------- */

void cluster_announce_deploy(cluster *c, const fn *f)
{
    job *j = new_job(JOB_PUBLISH, f->name);
    if (!j) return;
    memcpy(j->sha, f->active.sha256, sizeof j->sha);
    functions_artifact_path(c->table, f, j->path, sizeof j->path);
    j->value = entry_json(c, f);
    /* What this node runs is what the registry will say: no need to apply it. */
    fn_sync *s = sync_of(c, f->name);
    if (s) {
        char *old = s->entry;
        s->entry = j->value ? strdup(j->value) : NULL;
        purge_if_unused(c, j, old);
        free(old);
    }
    submit(c, j);
}

void cluster_announce_delete(cluster *c, const char *name)
{
    job *j = new_job(JOB_DELETE, name);
    if (j) snprintf(j->key, sizeof j->key, "fn.%s", name);
    fn_sync *s = sync_of(c, name);
    if (s) {
        char *old = s->entry;
        s->entry = NULL;
        if (j) purge_if_unused(c, j, old);
        free(old);
    }
    if (j) submit(c, j);
}

static void job_done(cluster *c, job *j)
{
    if (j->kind == JOB_FETCH) {
        fetched(c, j);
    } else if (j->err[0]) {
        log_error("cluster: cannot %s the registry: %s fn=%s",
                  j->kind == JOB_PUBLISH ? "update" : "delete from", j->err, j->name);
    }
    buf_free(&j->data);
    free(j->value);
    free(j);
}

/* --- Triggers in the registry: tr.FUNCTION.TOPIC -> their configuration -------------------- */

void cluster_attach_triggers(cluster *c, triggers *tr)
{
    c->tr = tr;
}

static void trigger_key(char *out, size_t cap, const char *topic, const char *function)
{
    snprintf(out, cap, "tr.%s.%s", function, topic);
}

void cluster_announce_trigger(cluster *c, const char *topic, const q_sub_config *cfg)
{
    job *j = new_job(JOB_PUT, cfg->function);
    if (!j) return;
    trigger_key(j->key, sizeof j->key, topic, cfg->function);
    cJSON *o = json_trigger_config(topic, cfg);
    j->value = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    submit(c, j);
}

void cluster_announce_untrigger(cluster *c, const char *topic, const char *function)
{
    job *j = new_job(JOB_DELETE, function);
    if (!j) return;
    trigger_key(j->key, sizeof j->key, topic, function);
    submit(c, j);
}

static void on_trigger_applied(void *data, int status)
{
    char *what = data;
    if (status)
        log_warn("cluster: cannot apply trigger %s from the registry: %s", what, err_str(status));
    free(what);
}

/* key is FUNCTION.TOPIC; text the configuration, NULL when removed. */
static void on_trigger_entry(cluster *c, const char *key, const char *text)
{
    if (!c->tr) return;
    const char *dot = strchr(key, '.');
    if (!dot || (size_t)(dot - key) > SPATE_NAME_MAX) return;
    char function[SPATE_NAME_MAX + 1];
    snprintf(function, sizeof function, "%.*s", (int)(dot - key), key);
    const char *topic = dot + 1;
    q_sub *sub = queue_find_sub(triggers_queue(c->tr), topic, function);
    if (!text) {
        if (sub) triggers_remove(c->tr, topic, function, on_trigger_applied, strdup(key));
        return;
    }
    cJSON *o = cJSON_Parse(text);
    q_sub_config cfg = {0};
    snprintf(cfg.function, sizeof cfg.function, "%s", function);
    const cJSON *dlq = cJSON_GetObjectItemCaseSensitive(o, "dlq");
    snprintf(cfg.dlq, sizeof cfg.dlq, "%s", cJSON_IsString(dlq) ? dlq->valuestring : "");
    cfg.max_attempts = num(o, "max_attempts", 3);
    cfg.deadline_ms = num(o, "deadline_ms", 0);
    cfg.max_concurrency = num(o, "max_concurrency", 0);
    cfg.ordered = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ordered"));
    cJSON_Delete(o);
    if (!cfg.dlq[0]) snprintf(cfg.dlq, sizeof cfg.dlq, "%.*s.dlq", SPATE_TOPIC_NAME_MAX - 4, topic);
    const q_sub_config *cur = sub ? queue_sub_config(sub) : NULL;
    if (cur && strcmp(cur->dlq, cfg.dlq) == 0 && cur->max_attempts == cfg.max_attempts &&
        cur->deadline_ms == cfg.deadline_ms && cur->max_concurrency == cfg.max_concurrency &&
        cur->ordered == cfg.ordered)
        return; /* as it is here already */
    triggers_add(c->tr, topic, &cfg, on_trigger_applied, strdup(key));
}

/* --- Invocations from other nodes ------------------------------------------------------------- */

static void reply(cluster *c, natsMsg *req, int status, const char *code, const char *body,
                  size_t len)
{
    const char *to = natsMsg_GetReply(req);
    natsMsg *m = NULL;
    if (!to || natsMsg_Create(&m, to, NULL, body, (int)len) != NATS_OK) return;
    char st[16];
    snprintf(st, sizeof st, "%d", status);
    natsMsgHeader_Set(m, "Spate-Status", st);
    natsMsgHeader_Set(m, "Spate-Node", c->id);
    if (code) natsMsgHeader_Set(m, "Spate-Code", code);
    natsStatus s = natsConnection_PublishMsg(c->nc, m);
    natsMsg_Destroy(m);
    /* An output larger than a NATS message: the asker must not wait for an
     * answer that never comes. */
    if (s == NATS_MAX_PAYLOAD && len > 0) {
        static const char big[] = "{\"error\":\"the output is larger than a NATS message and "
                                  "cannot travel between nodes\",\"code\":\"output_too_large\"}";
        reply(c, req, 502, "output_too_large", big, sizeof big - 1);
    }
}

static void reply_error(cluster *c, natsMsg *req, int status, const char *code, const char *msg,
                        size_t len)
{
    cJSON *o = cJSON_CreateObject();
    char *text = strndup(msg, len);
    cJSON_AddStringToObject(o, "error", text ? text : "");
    cJSON_AddStringToObject(o, "code", code);
    char *s = cJSON_PrintUnformatted(o);
    reply(c, req, status, code, s ? s : "{}", s ? strlen(s) : 2);
    free(s);
    free(text);
    cJSON_Delete(o);
}

static void on_inbound_done(invocation *inv, enum inv_outcome outcome, const char *body, size_t len,
                            void *data)
{
    inbound *in = data;
    cluster *c = in->c;
    char msg[SPATE_ERROR_MESSAGE_MAX + 64];
    switch (outcome) {
    case INV_OK:
        reply(c, in->msg, 200, NULL, body, len);
        break;
    case INV_FAILED:
        reply_error(c, in->msg, 502, "function_error", body, len);
        break;
    case INV_CRASHED: {
        int n = snprintf(msg, sizeof msg, "function crashed: %.*s", (int)(len > 2048 ? 2048 : len),
                         body);
        reply_error(c, in->msg, 502, "function_crashed", msg, (size_t)n);
        break;
    }
    case INV_TIMEOUT:
        reply_error(c, in->msg, 504, "function_timeout", body, len);
        break;
    case INV_OVERLOADED:
        reply(c, in->msg, 0, "busy", "", 0);
        break;
    case INV_UNAVAILABLE:
        reply_error(c, in->msg, 503, "unavailable", body, len);
        break;
    }
    natsMsg_Destroy(in->msg);
    free(in);
}

static void on_invoke_in(cluster *c, natsMsg *m)
{
    const char *subj = natsMsg_GetSubject(m);
    const char *name = subj + strlen("spate.invoke.");
    const char *origin = NULL, *rid = NULL, *timeout = NULL;
    natsMsgHeader_Get(m, "Spate-Origin", &origin);
    natsMsgHeader_Get(m, "Spate-Request-Id", &rid);
    natsMsgHeader_Get(m, "Spate-Timeout-Ms", &timeout);
    fn *f = functions_find(c->table, name, strlen(name));
    /* The asker itself, or no room here: say so at once, it asks another. */
    if (!f || (origin && strcmp(origin, c->id) == 0) || !pool_has_room(f->pool)) {
        reply(c, m, 0, "busy", "", 0);
        natsMsg_Destroy(m);
        return;
    }
    inbound *in = calloc(1, sizeof *in);
    if (!in) {
        reply(c, m, 0, "busy", "", 0);
        natsMsg_Destroy(m);
        return;
    }
    in->c = c;
    in->msg = m;
    snprintf(in->request_id, sizeof in->request_id, "%s", rid ? rid : "routed");
    in->inv = (invocation){
        .request_id = in->request_id,
        .payload = natsMsg_GetData(m),
        .payload_len = (uint32_t)natsMsg_GetDataLength(m),
        .attempt = 1,
        /* At most the asker's; the pool takes the shorter of it and the function's. */
        .timeout_limit_ms = timeout ? (uint32_t)strtoul(timeout, NULL, 10) : 0,
        .done = on_inbound_done,
        .data = in,
    };
    pool_invoke(f->pool, &in->inv);
}

/* --- Invocations sent to other nodes ------------------------------------------------------------
 */

static void routed_closed(uv_handle_t *h)
{
    routed *r = h->data;
    buf_free(&r->payload);
    free(r);
}

static void routed_finish(routed *r, int status, const char *body, size_t len, const char *node)
{
    list_remove(&r->link);
    uv_timer_stop(&r->timer);
    r->cb(status, body, len, node, r->data);
    uv_close((uv_handle_t *)&r->timer, routed_closed);
}

static int send_routed(routed *r)
{
    cluster *c = r->c;
    char subj[SPATE_NAME_MAX + 32], inbox[96];
    snprintf(subj, sizeof subj, "spate.invoke.%s", r->function);
    snprintf(inbox, sizeof inbox, "_INBOX.spate.%s.%llu", c->id, (unsigned long long)r->seq);
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subj, inbox, r->payload.data, (int)r->payload.len) != NATS_OK) return -1;
    natsMsgHeader_Set(m, "Spate-Origin", c->id);
    natsMsgHeader_Set(m, "Spate-Request-Id", r->request_id);
    char timeout[16]; /* the caller's (?timeout=), else the function's here */
    snprintf(timeout, sizeof timeout, "%u", r->timeout_ms);
    natsMsgHeader_Set(m, "Spate-Timeout-Ms", timeout);
    natsStatus s = natsConnection_PublishMsg(c->nc, m);
    natsMsg_Destroy(m);
    r->attempts++;
    return s == NATS_OK ? 0 : -1;
}

static void on_routed_timeout(uv_timer_t *t)
{
    routed *r = t->data;
    char body[160];
    int n = snprintf(body, sizeof body,
                     "{\"error\":\"no answer from the node the invocation was routed to\","
                     "\"code\":\"function_timeout\"}");
    routed_finish(r, 504, body, (size_t)n, "");
}

static void on_reply(cluster *c, natsMsg *m)
{
    const char *subj = natsMsg_GetSubject(m);
    const char *dot = strrchr(subj, '.');
    uint64_t seq = dot ? strtoull(dot + 1, NULL, 10) : 0;
    routed *r = NULL;
    for (list_node *n = list_first(&c->routed); n != &c->routed; n = n->next)
        if (list_entry(n, routed, link)->seq == seq) r = list_entry(n, routed, link);
    if (!r) return; /* it timed out */
    const char *st = NULL, *node = NULL;
    natsMsgHeader_Get(m, "Spate-Status", &st);
    natsMsgHeader_Get(m, "Spate-Node", &node);
    int status = st ? atoi(st) : 0;
    if (status == 0) {
        /* Busy, the asker itself, or no responder (NATS status 503): the
         * next member of the group, while tries are left. */
        if (r->attempts < 2 * (int)cluster_live_nodes(c) && send_routed(r) == 0) return;
        routed_finish(r, 0, "", 0, "");
        return;
    }
    routed_finish(r, status, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m),
                  node ? node : "");
}

int cluster_route_invoke(cluster *c, const char *function, const char *request_id,
                         const void *payload, size_t len, uint32_t timeout_ms, cluster_invoke_cb cb,
                         void *data)
{
    if (cluster_live_nodes(c) < 2 || len > ROUTED_PAYLOAD_MAX || c->stopping) return -1;
    routed *r = calloc(1, sizeof *r);
    if (!r) return -1;
    r->c = c;
    r->seq = ++c->next_seq;
    r->timeout_ms = timeout_ms;
    snprintf(r->function, sizeof r->function, "%s", function);
    snprintf(r->request_id, sizeof r->request_id, "%s", request_id);
    buf_init(&r->payload, len);
    if (buf_append(&r->payload, payload, len) != 0 || send_routed(r) != 0) {
        buf_free(&r->payload);
        free(r);
        return -1;
    }
    r->cb = cb;
    r->data = data;
    uv_timer_init(c->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_routed_timeout, (uint64_t)timeout_ms + 5000, 0);
    list_push_back(&c->routed, &r->link);
    return 0;
}

/* --- The loop side of events -------------------------------------------------------------------
 */

static void on_async(uv_async_t *a)
{
    cluster *c = a->data;
    list_node batch;
    list_init(&batch);
    pthread_mutex_lock(&c->lock);
    while (!list_empty(&c->events)) {
        list_node *n = list_first(&c->events);
        list_remove(n);
        list_push_back(&batch, n);
    }
    pthread_mutex_unlock(&c->lock);
    while (!list_empty(&batch)) {
        event *e = list_entry(list_first(&batch), event, link);
        list_remove(&e->link);
        if (c->quiet && e->kind == EV_INVOKE_IN) {
            reply(c, e->msg, 0, "busy", "", 0); /* another node takes it */
        } else if (c->quiet && e->kind == EV_JOB && e->j->kind == JOB_FETCH) {
            /* a deploy from the registry: not while stopping */
        } else if (c->quiet && e->kind != EV_CALL && e->kind != EV_REPLY && e->kind != EV_JOB &&
                   e->kind != EV_HEARTBEAT) {
            /* registry changes: the next start reads them */
        } else if (!c->stopping) {
            switch (e->kind) {
            case EV_KV_PUT:
            case EV_KV_DEL:
                on_kv(c, e);
                break;
            case EV_KV_READY:
                on_registry_ready(c);
                break;
            case EV_HEARTBEAT:
                on_heartbeat(c, e->text);
                break;
            case EV_INVOKE_IN:
                on_invoke_in(c, e->msg);
                e->msg = NULL;
                break;
            case EV_REPLY:
                on_reply(c, e->msg);
                break;
            case EV_JOB:
                job_done(c, e->j);
                e->j = NULL;
                break;
            case EV_CALL:
                e->fn(e->arg);
                break;
            case EV_TR_PUT:
            case EV_TR_DEL:
                on_trigger_entry(c, e->key, e->text);
                break;
            }
        }
        if (e->msg) natsMsg_Destroy(e->msg);
        if (e->j) {
            buf_free(&e->j->data);
            free(e->j->value);
            free(e->j);
        }
        free(e->text);
        free(e);
    }
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
        if (fgets(id, sizeof id, f) && strlen(id) >= ID_LEN) {
            memcpy(c->id, id, ID_LEN);
            c->id[ID_LEN] = '\0';
            fclose(f);
            return;
        }
        fclose(f);
    }
    unsigned char raw[ID_LEN / 2];
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
        snprintf(err, cap, "cluster: cannot create the bucket %s: %s", name,
                 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
    return s;
}

static natsStatus ensure_stores(cluster *c, int replicas, char *err, size_t cap)
{
    natsStatus s = open_bucket(c, BUCKET, replicas, 0, &c->kv, err, cap);
    if (s == NATS_OK)
        s = open_bucket(c, ATTEMPTS_BUCKET, replicas, ATTEMPTS_TTL_NS, &c->attempts, err, cap);
    if (s != NATS_OK) return s;
    for (int tries = 0; tries < 100; tries++) {
        jsStreamInfo *si = NULL;
        s = js_GetStreamInfo(&si, c->js, ARTIFACT_STREAM, NULL, NULL);
        if (s == NATS_OK) {
            jsStreamInfo_Destroy(si);
            return NATS_OK;
        }
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        sc.Name = ARTIFACT_STREAM;
        const char *subjects[] = {"spate.artifact.>"};
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        sc.Replicas = replicas;
        sc.MaxMsgsPerSubject = 1;
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

/* urls ("nats://[USER:PASSWORD@]HOST:PORT,...") as they may be shown in
 * logs and errors: each one's credentials replaced by "***". 1 when every
 * URL carries credentials. */
static int shown_urls(const char *urls, char *out, size_t cap)
{
    int all = 1;
    size_t used = 0;
    out[0] = '\0';
    for (const char *u = urls; *u;) {
        size_t len = strcspn(u, ",");
        const char *scheme = strstr(u, "://");
        size_t start = scheme && (size_t)(scheme - u) < len ? (size_t)(scheme - u) + 3 : 0;
        const char *at = memchr(u + start, '@', len - start);
        int n = at ? snprintf(out + used, cap - used, "%s%.*s***%.*s", used ? "," : "", (int)start,
                              u, (int)(len - (size_t)(at - u)), at)
                   : snprintf(out + used, cap - used, "%s%.*s", used ? "," : "", (int)len, u);
        if (!at) all = 0;
        if (n < 0 || (size_t)n >= cap - used) break;
        used += (size_t)n;
        u += len + (u[len] == ',');
    }
    return all;
}

int cluster_start(uv_loop_t *loop, const cluster_config *cfg, functions *table, cluster **out,
                  char *err, size_t errcap)
{
    cluster *c = calloc(1, sizeof *c);
    if (!c) return ERR_NOMEM;
    c->loop = loop;
    c->table = table;
    snprintf(c->url, sizeof c->url, "%s", cfg->api_url);
    snprintf(c->data_dir, sizeof c->data_dir, "%s", cfg->data_dir);
    list_init(&c->events);
    list_init(&c->jobs);
    list_init(&c->routed);
    strmap_init(&c->syncs);
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->ack_lock, NULL);
    pthread_cond_init(&c->work, NULL);
    load_node_id(c);

    char shown[1024];
    if (!shown_urls(cfg->urls, shown, sizeof shown))
        log_warn("cluster: NATS without credentials (%s): whoever reaches it, functions too "
                 "(they have the host's network unless deployed with network=false), can read "
                 "every function's environment and replace its code; give nats-server users "
                 "and name them in cluster = nats://USER:PASSWORD@HOST:PORT in a config file "
                 "only root may read (the command line is visible to every process)",
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
    if (s == NATS_OK) s = natsOptions_SetPingInterval(o, PING_MS);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(o, 2);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, on_reconnected, c);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, on_disconnected, c);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(o, on_closed, c);
    if (s == NATS_OK) s = natsConnection_Connect(&c->nc, o);
    if (s == NATS_OK) c->connected = 1;
    natsOptions_Destroy(o);
    free(urls);
    if (s != NATS_OK) {
        snprintf(err, errcap, "cluster: cannot connect to %s: %s", shown, natsStatus_GetText(s));
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

    char inbox[96];
    snprintf(inbox, sizeof inbox, "_INBOX.spate.%s.*", c->id);
    s = natsConnection_Subscribe(&c->hb_sub, c->nc, "spate.node.hb", on_heartbeat_msg, c);
    if (s == NATS_OK)
        s = natsConnection_QueueSubscribe(&c->invoke_sub, c->nc, "spate.invoke.*", "spate",
                                          on_invoke_msg, c);
    if (s == NATS_OK) s = natsConnection_Subscribe(&c->reply_sub, c->nc, inbox, on_reply_msg, c);
    if (s != NATS_OK) {
        snprintf(err, errcap, "cluster: cannot subscribe: %s", natsStatus_GetText(s));
        return ERR_IO;
    }
    uv_async_init(loop, &c->async, on_async);
    c->async.data = c;
    uv_timer_init(loop, &c->heartbeat);
    c->heartbeat.data = c;
    uv_timer_start(&c->heartbeat, send_heartbeat, 0, HEARTBEAT_MS);
    pthread_create(&c->worker, NULL, worker_main, c);
    c->watching = 0; /* cluster_follow starts the watcher */
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
    if (c->watching) return;
    if (pthread_create(&c->watcher, NULL, watcher_main, c) == 0) c->watching = 1;
}

static void free_sync(const char *key, void *value, void *data)
{
    fn_sync *s = value;
    free(s->entry);
    free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    cluster *c = h->data;
    if (--c->open_handles > 0) return;
    strmap_each(&c->syncs, free_sync, NULL);
    strmap_free(&c->syncs);
    free(c);
}

void cluster_stop(cluster *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->worker, NULL);
    if (c->watching) pthread_join(c->watcher, NULL);
    while (!list_empty(&c->jobs)) { /* not started: dropped */
        job *j = list_entry(list_first(&c->jobs), job, link);
        list_remove(&j->link);
        free(j->value);
        free(j);
    }
    natsSubscription_Destroy(c->hb_sub);
    natsSubscription_Destroy(c->invoke_sub);
    natsSubscription_Destroy(c->reply_sub);
    while (!list_empty(&c->routed)) {
        routed *r = list_entry(list_first(&c->routed), routed, link);
        routed_finish(r, 0, "", 0, "");
    }
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
        if (pthread_cond_timedwait(&c->work, &c->lock, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&c->lock);
    natsConnection_Destroy(c->nc);
    on_async(&c->async); /* frees what is left */
    c->open_handles = 2;
    uv_close((uv_handle_t *)&c->async, on_handle_closed);
    uv_close((uv_handle_t *)&c->heartbeat, on_handle_closed);
}
