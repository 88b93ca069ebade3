/*
 * jsqueue.c - the queue interface (store/queue.h) on NATS JetStream, shared
 * by the nodes of a cluster.
 *
 *   topic          a stream SPATE_T_<name> (file storage, the cluster's
 *                  replicas) on subjects spate.t.<name>.k00 to .k63 (a keyed
 *                  message goes to the part its key hashes to) and .u (no
 *                  key); a message carries its key and publish time as headers
 *   subscription   a durable pull consumer named after the function, shared
 *                  by every node; AckWait is the function's timeout plus a
 *                  margin, so the messages of a node that dies go to others
 *   lease          a fetched message. A node fetches only what its trigger
 *                  says it has room for (queue_events.room), so work flows to
 *                  free capacity
 *   ack / nack     Ack / NakWithDelay; release is a Nak at once; dead letter:
 *                  the message is published to the dead-letter topic, then
 *                  terminated
 *   attempt        failures recorded in the cluster's attempts bucket (the
 *                  delivery count also counts hand-backs that never ran it)
 *   ordered        a consumer per key part with MaxAckPending 1: a key's
 *                  messages run one at a time, in order, on whichever node;
 *                  the 64 parts run in parallel (and unkeyed messages freely)
 *
 * Fetching blocks, so each subscription has a puller thread; publishing and
 * consumer changes go to the cluster's worker thread. Results come back to
 * the loop through the cluster's event list.
 */
#include "cluster/jsqueue.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/limits.h"
#include "common/list.h"
#include "common/log.h"

#define FETCH_MAX 64
#define FETCH_WAIT_MS 1000
#define FETCH_RETRY_MS 250
#define STATS_EVERY_MS 1000
#define TRIM_EVERY 5 /* refreshes: settled messages leave the streams every 5 s */
#define ACK_MARGIN_MS 5000
#define KEY_PARTS 64
#define PARTS_MAX (KEY_PARTS + 1) /* the key parts and the unkeyed one */
#define KV_KEY_CAP (SPATE_TOPIC_NAME_MAX * 3 + SPATE_NAME_MAX + 48)

static const queue_ops js_ops;

typedef struct jtopic {
    list_node link;
    char name[SPATE_TOPIC_NAME_MAX + 1];
    char stream[SPATE_TOPIC_NAME_MAX * 3 + 16];
    char subject[SPATE_TOPIC_NAME_MAX * 3 + 16]; /* the base of its subjects */
    int created;                                 /* the stream exists */
    q_topic_stats stats;
    /* Deleted (here, or its stream went from another node): hidden until a
     * publish or a trigger brings the name back. */
    int gone;
    uint32_t touched; /* q->refresh_serial when this node last made its stream */
    q_retention ret;  /* as its stream's description says */
    uint64_t retired_acked, retired_dead; /* of its removed triggers, on this node */
} jtopic;

struct q_sub {
    const queue_ops *ops; /* first, as queue.h wants */
    list_node link;
    queue *q;
    jtopic *topic;
    q_sub_config cfg;
    void *user;
    /* One consumer (a plain trigger) or one per key part and one for
     * unkeyed messages (ordered). */
    struct part {
        q_sub *sub;
        pthread_t thread;
        int running;
        natsSubscription *pull;
        char durable[SPATE_NAME_MAX + 8];
        char filter[SPATE_TOPIC_NAME_MAX * 3 + 32];
        int one_at_a_time;
    } parts[PARTS_MAX];
    int nparts;
    int started;      /* its pullers run */
    _Atomic int want; /* messages the trigger has room for */
    pthread_mutex_t wake_lock;
    pthread_cond_t wake; /* want went up: pullers fetch at once */
    _Atomic int stop;
    list_node ready;   /* fetched, not yet leased (jlease) */
    q_sub_stats stats; /* from consumer info, refreshed by the puller */
    uint64_t acked, dead;
    int removed;
    uint32_t leases;   /* out: the struct lives until they are settled */
    _Atomic int posts; /* fetches posted to the loop and not yet seen there */
    int jobs;          /* subscribe or unsubscribe jobs on the worker thread */
};

typedef struct jlease {
    q_lease l;
    q_msg m;
    list_node link;
    natsMsg *nm;
    uint32_t failed; /* attempts that failed before this delivery */
    struct part *pt; /* the consumer it came from */
    char key[SPATE_KEY_MAX + 1];
} jlease;

struct queue {
    const queue_ops *ops; /* first */
    uv_loop_t *loop;
    cluster *c;
    jsCtx *js;
    int replicas;
    queue_events ev;
    list_node topics;
    list_node subs;
    int closing;
    uv_timer_t refresh;      /* every topic of the cluster, and its figures */
    int refreshing;          /* a refresh is on the worker thread */
    uint32_t refreshes;      /* every TRIM_EVERY-th also trims the streams */
    uint32_t refresh_serial; /* refreshes started: what a refresh saw is as of then */
    uint32_t deletions;      /* topics deleted here: a refresh started before does not
                                bring them back */
    int zombies;             /* subscriptions removed but not yet freed */
    int closed;
    void (*close_cb)(void *data);
    void *close_data;
};

/* --- Names ------------------------------------------------------------------------------ */

/* Stream names cannot hold '.': escaped, so that names stay distinct. */
static void stream_name(const char *topic, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "SPATE_T_");
    for (const char *p = topic; *p && n + 4 < cap; p++) {
        if (*p == '.' || *p == '_')
            n += (size_t)snprintf(out + n, cap - n, "_%02x", (unsigned char)*p);
        else
            out[n++] = *p;
    }
    out[n] = '\0';
}

static jtopic *topic_of(queue *q, const char *name, int create)
{
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        jtopic *t = list_entry(n, jtopic, link);
        if (strcmp(t->name, name) != 0) continue;
        if (t->gone && !create) return NULL;
        if (t->gone) {
            t->gone = 0;
            memset(&t->stats, 0, sizeof t->stats);
            memset(&t->ret, 0, sizeof t->ret);
            t->retired_acked = t->retired_dead = 0;
        }
        return t;
    }
    if (!create) return NULL;
    jtopic *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    snprintf(t->name, sizeof t->name, "%s", name);
    stream_name(name, t->stream, sizeof t->stream);
    snprintf(t->subject, sizeof t->subject, "spate.t.%s", t->stream + 8); /* no '.' in it */
    list_push_back(&q->topics, &t->link);
    return t;
}

/* Worker thread: the stream, created if new. */
static natsStatus ensure_stream(queue *q, const char *stream, const char *subject)
{
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, q->js, stream, NULL, NULL);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return NATS_OK;
    }
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = stream;
    char all[SPATE_TOPIC_NAME_MAX * 3 + 32];
    snprintf(all, sizeof all, "%s.>", subject);
    const char *subjects[] = {all};
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = q->replicas;
    sc.AllowDirect = true; /* reading stored messages: any replica answers */
    s = js_AddStream(&si, q->js, &sc, NULL, NULL);
    if (s == NATS_OK) jsStreamInfo_Destroy(si);
    return s;
}

/* A topic's retention lives in its stream's description (replicated with the
 * stream, seen by every node's refresh) and is put in force as the stream's
 * JetStream limits only while no consumer reads the stream: JetStream's
 * limits drop the oldest messages whoever has yet to read them, and a trigger
 * must never lose a message it has not settled. */
#define RETENTION_FMT "spate retention: max_age_ms=%llu max_bytes=%llu max_messages=%llu"

static void parse_retention(const char *description, q_retention *out)
{
    unsigned long long age = 0, bytes = 0, msgs = 0;
    memset(out, 0, sizeof *out);
    if (description && sscanf(description, RETENTION_FMT, &age, &bytes, &msgs) == 3) {
        out->max_age_ms = age;
        out->max_bytes = bytes;
        out->max_messages = msgs;
    }
}

/* Worker thread: the stream's limits as its retention wants them now (none
 * while a consumer reads it). Changes si's configuration. */
static natsStatus apply_limits(queue *q, jsStreamInfo *si, int consumers)
{
    jsStreamConfig *c = si->Config;
    q_retention r;
    parse_retention(c->Description, &r);
    int64_t age = consumers ? 0 : (int64_t)r.max_age_ms * 1000000;
    int64_t bytes = consumers || !r.max_bytes ? -1 : (int64_t)r.max_bytes;
    int64_t msgs = consumers || !r.max_messages ? -1 : (int64_t)r.max_messages;
    if (c->MaxAge == age && c->MaxBytes == bytes && c->MaxMsgs == msgs) return NATS_OK;
    c->MaxAge = age;
    c->MaxBytes = bytes;
    c->MaxMsgs = msgs;
    /* JetStream refuses a duplicate window longer than the age limit. */
    if (age && (c->Duplicates == 0 || c->Duplicates > age)) c->Duplicates = age;
    jsStreamInfo *up = NULL;
    natsStatus s = js_UpdateStream(&up, q->js, c, NULL, NULL);
    /* A trigger added meanwhile (through another node, whose lift_limits ran
     * before this update): lifted again at once, not at the next refresh. */
    if (s == NATS_OK && up && !consumers && up->State.Consumers > 0) s = apply_limits(q, up, 1);
    if (up) jsStreamInfo_Destroy(up);
    return s;
}

/* Worker thread: the limits of a stream a trigger is about to read are
 * lifted before its consumer exists. */
static natsStatus lift_limits(queue *q, const char *stream)
{
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, q->js, stream, NULL, NULL);
    if (s == NATS_OK) s = apply_limits(q, si, 1);
    if (si) jsStreamInfo_Destroy(si);
    return s;
}

/* Worker or puller thread: the stream's figures. */
static int stream_stats(queue *q, const char *stream, q_topic_stats *out)
{
    jsStreamInfo *si = NULL;
    if (js_GetStreamInfo(&si, q->js, stream, NULL, NULL) != NATS_OK) return -1;
    out->published = si->State.LastSeq;
    out->stored = si->State.Msgs;
    out->bytes = si->State.Bytes;
    parse_retention(si->Config->Description, &out->retention);
    out->oldest_ms = si->State.Msgs ? si->State.FirstTime / 1000000 : 0;
    jsStreamInfo_Destroy(si);
    return 0;
}

/* The publish time of a stored message (its header), 0 if unknown. */
static int64_t published_at(queue *q, const char *stream, uint64_t seq)
{
    natsMsg *m = NULL;
    if (js_GetMsg(&m, q->js, stream, seq, NULL, NULL) != NATS_OK) return 0;
    const char *v = NULL;
    int64_t ms =
        natsMsgHeader_Get(m, "Spate-Published", &v) == NATS_OK && v ? strtoll(v, NULL, 10) : 0;
    natsMsg_Destroy(m);
    return ms;
}

/* --- Publishing ------------------------------------------------------------------------- */

typedef struct pub_job {
    queue *q;
    jtopic *topic; /* lives as long as the queue */
    char stream[SPATE_TOPIC_NAME_MAX * 3 + 16];
    char subject[SPATE_TOPIC_NAME_MAX * 3 + 16];
    buf body;
    q_input *in;
    size_t n;
    /* Dead letters: the source, its error and attempts, as headers. */
    char source[SPATE_TOPIC_NAME_MAX + 1];
    char *error;
    uint32_t attempts;
    natsMsg *term;                 /* terminated once the dead letter is stored */
    char attempts_key[KV_KEY_CAP]; /* then its record dropped, if it has one */
    int has_stats;
    q_topic_stats stats;
    queue_publish_cb done;
    void *data;
    int status;
    char err[200];
} pub_job;

/* A message of a topic whose subjects begin with base: to its key's part
 * (ordered triggers keep one part in order), with its key and publish time
 * as headers. */
static natsStatus topic_msg(natsMsg **m, const char *base, const q_input *in, const char *when)
{
    char subject[SPATE_TOPIC_NAME_MAX * 3 + 32];
    if (in->key) {
        snprintf(subject, sizeof subject, "%s.k%02u", base,
                 (unsigned)(hash_fnv1a(in->key, in->key_len) % KEY_PARTS));
    } else {
        snprintf(subject, sizeof subject, "%s.u", base);
    }
    natsStatus s = natsMsg_Create(m, subject, NULL, in->data, (int)in->len);
    if (s != NATS_OK) return s;
    natsMsgHeader_Set(*m, "Spate-Published", when);
    if (in->key) {
        char key[SPATE_KEY_MAX + 1];
        snprintf(key, sizeof key, "%.*s", (int)in->key_len, in->key);
        natsMsgHeader_Set(*m, "Spate-Key", key);
    }
    return NATS_OK;
}

/* Worker thread: until JetStream has answered every async publish since
 * cluster_acks_begin; an error unless it stored them all. */
static natsStatus await_acks(queue *q, cluster_acks *a, char *err, size_t cap)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 10000;
    natsStatus s = js_PublishAsyncComplete(q->js, &po);
    natsMsgList failed = {0};
    if (js_PublishAsyncGetPendingList(&failed, q->js) == NATS_OK) {
        if (failed.Count) {
            snprintf(err, cap, "%d not acknowledged in time", failed.Count);
            s = NATS_ERR;
        }
        natsMsgList_Destroy(&failed);
    }
    cluster_acks_end(q->c);
    if (a->failed) {
        snprintf(err, cap, "JetStream refused %u: %s", a->failed, a->err);
        s = NATS_ERR;
    }
    return s;
}

static void publish_work(void *arg)
{
    pub_job *j = arg;
    if (!cluster_connected(j->q->c)) {
        /* nats.c would buffer it and send it on reconnection, after the
         * caller had been told it failed: say so at once instead. */
        j->status = ERR_DISCONNECTED;
        return;
    }
    natsStatus s = ensure_stream(j->q, j->stream, j->subject);
    char when[24];
    snprintf(when, sizeof when, "%lld", (long long)clock_now_ms());
    cluster_acks acks;
    cluster_acks_begin(j->q->c, &acks);
    for (size_t i = 0; s == NATS_OK && i < j->n; i++) {
        natsMsg *m = NULL;
        s = topic_msg(&m, j->subject, &j->in[i], when);
        if (s != NATS_OK) break;
        if (j->source[0]) {
            char att[16];
            snprintf(att, sizeof att, "%u", j->attempts);
            natsMsgHeader_Set(m, "Spate-Source", j->source);
            natsMsgHeader_Set(m, "Spate-Attempts", att);
            if (j->error) natsMsgHeader_Set(m, "Spate-Error", j->error);
        }
        /* Async: the whole batch is in flight at once; complete waits for
         * JetStream's acknowledgement of every message. */
        s = js_PublishMsgAsync(j->q->js, &m, NULL);
        if (m) natsMsg_Destroy(m);
    }
    natsStatus acked = await_acks(j->q, &acks, j->err, sizeof j->err);
    if (s == NATS_OK) s = acked;
    j->status = s == NATS_OK ? 0 : ERR_IO;
    if (s != NATS_OK && !j->err[0]) snprintf(j->err, sizeof j->err, "%s", natsStatus_GetText(s));
    if (s == NATS_OK && j->term) natsMsg_Term(j->term, NULL);
    if (s == NATS_OK && j->attempts_key[0])
        kvStore_Delete(cluster_attempts(j->q->c), j->attempts_key);
    j->has_stats = s == NATS_OK && stream_stats(j->q, j->stream, &j->stats) == 0;
}

static void publish_done(void *arg)
{
    pub_job *j = arg;
    if (j->status == 0) {
        j->topic->created = 1;
        j->topic->touched = j->q->refresh_serial;
    }
    if (j->has_stats) j->topic->stats = j->stats;
    if (j->err[0]) log_warn("cluster: cannot publish to %s: %s", j->topic->name, j->err);
    if (j->done) j->done(j->data, j->status, 0);
    buf_free(&j->body);
    free(j->in);
    free(j->error);
    if (j->term) natsMsg_Destroy(j->term);
    free(j);
}

static pub_job *new_pub(queue *q, const char *topic)
{
    pub_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->q = q;
    j->topic = topic_of(q, topic, 1);
    if (!j->topic) {
        free(j);
        return NULL;
    }
    memcpy(j->stream, j->topic->stream, sizeof j->stream);
    memcpy(j->subject, j->topic->subject, sizeof j->subject);
    return j;
}

static void js_publish(queue *q, const char *topic, buf *body, const q_input *in, size_t n,
                       queue_publish_cb done, void *data)
{
    pub_job *j = new_pub(q, topic);
    q_input *copy = j ? malloc(n * sizeof *copy) : NULL;
    if (!copy) {
        free(j);
        buf_free(body);
        done(data, ERR_NOMEM, 0);
        return;
    }
    memcpy(copy, in, n * sizeof *copy);
    buf_init(&j->body, 0);
    buf_move(&j->body, body); /* the inputs point into it */
    j->in = copy;
    j->n = n;
    j->done = done;
    j->data = data;
    cluster_run(q->c, publish_work, publish_done, j);
}

/* --- Leasing ------------------------------------------------------------------------------ */

typedef struct fetched {
    q_sub *sub;
    struct part *pt;
    natsMsgList list;
    struct {
        uint64_t seq;    /* in the stream */
        uint32_t failed; /* attempts that failed before (the attempts bucket) */
    } meta[FETCH_MAX];
    int has_info;
    q_sub_stats info; /* depth, leased, retrying, delivered, oldest: over its consumers */
    int has_stream;
    q_topic_stats stream; /* published, stored, oldest */
} fetched;

static void on_fetched(void *arg);
static void sub_maybe_free(q_sub *s);

/* Puller thread: the figures of the subscription's consumers, added up. */
static int consumer_stats(q_sub *s, q_sub_stats *out)
{
    memset(out, 0, sizeof *out);
    int got = 0;
    uint64_t first_unsettled = 0; /* the lowest stream sequence not yet done, over the parts */
    for (int i = 0; i < s->nparts; i++) {
        jsConsumerInfo *ci = NULL;
        natsStatus cs =
            js_GetConsumerInfo(&ci, s->q->js, s->topic->stream, s->parts[i].durable, NULL, NULL);
        if (cs != NATS_OK) {
            log_debug("cluster: consumer info of %s: %s", s->parts[i].durable,
                      natsStatus_GetText(cs));
            continue;
        }
        got = 1;
        uint64_t pending = ci->NumPending + (uint64_t)ci->NumAckPending;
        out->depth += pending;
        out->leased += (uint64_t)ci->NumAckPending;
        out->retrying += (uint64_t)ci->NumRedelivered;
        out->delivered += ci->Delivered.Consumer;
        /* A part's oldest message not yet done is the one after its ack floor. */
        uint64_t next = ci->AckFloor.Stream + 1;
        if (pending && (!first_unsettled || next < first_unsettled)) first_unsettled = next;
        jsConsumerInfo_Destroy(ci);
    }
    /* Its publish time: one read, not one a part. */
    if (first_unsettled) out->oldest_ms = published_at(s->q, s->topic->stream, first_unsettled);
    return got;
}

static void post_fetched(q_sub *s, fetched *f)
{
    if (f->list.Count || f->has_info || f->has_stream) {
        s->posts++;
        cluster_post(s->q->c, on_fetched, f);
    } else {
        natsMsgList_Destroy(&f->list);
        free(f);
    }
}

/* The record of a message's failed attempts: "<stream>.<consumer>.<seq>". */
static void attempts_key(char *out, size_t cap, const q_sub *s, const struct part *pt, uint64_t seq)
{
    snprintf(out, cap, "%s.%s.%llu", s->topic->stream, pt->durable, (unsigned long long)seq);
}

/* Puller thread: where each fetched message sits, and how many of its
 * attempts failed. JetStream's delivery count also counts the times a node
 * handed it back without running it (no room after all, a trigger going,
 * a node stopping or cut off), and waiting for capacity must never cost an
 * attempt: failures are recorded in a bucket of their own, read only for a
 * message delivered before. */
static void read_meta(fetched *f)
{
    for (int i = 0; i < f->list.Count && i < FETCH_MAX; i++) {
        jsMsgMetaData *meta = NULL;
        f->meta[i].seq = 0;
        f->meta[i].failed = 0;
        if (natsMsg_GetMetaData(&meta, f->list.Msgs[i]) != NATS_OK) continue;
        f->meta[i].seq = meta->Sequence.Stream;
        uint64_t delivered = meta->NumDelivered;
        jsMsgMetaData_Destroy(meta);
        if (delivered <= 1) continue;
        char key[KV_KEY_CAP];
        attempts_key(key, sizeof key, f->sub, f->pt, f->meta[i].seq);
        kvEntry *e = NULL;
        natsStatus st = kvStore_Get(&e, cluster_attempts(f->sub->q->c), key);
        if (st == NATS_OK) {
            char v[16];
            int n = kvEntry_ValueLen(e);
            if (n > 0 && n < (int)sizeof v) {
                memcpy(v, kvEntry_Value(e), (size_t)n);
                v[n] = '\0';
                f->meta[i].failed = (uint32_t)strtoul(v, NULL, 10);
            }
            kvEntry_Destroy(e);
        } else if (st != NATS_NOT_FOUND) {
            /* Unknown: count none, so a message gets more attempts, never fewer. */
            log_debug("cluster: attempts of %s: %s", key, natsStatus_GetText(st));
        }
    }
}

/* A puller per consumer: fetches as much as the trigger has room for,
 * waiting up to a second for messages (an ordered part gives one at a time,
 * so it asks for one); the first also refreshes the figures every second. */
static void *puller_main(void *arg)
{
    struct part *pt = arg;
    q_sub *s = pt->sub;
    int first = pt == &s->parts[0];
    uint64_t last_stats = 0;
    int busy = 0; /* the last fetch found messages */
    while (!s->stop) {
        int want = s->want;
        /* Cut off from NATS: nothing to pull until it is back. */
        if (!cluster_connected(s->q->c)) want = 0;
        if (want > 0) {
            fetched *f = calloc(1, sizeof *f);
            if (!f) break;
            f->sub = s;
            int batch = pt->one_at_a_time ? 1 : (want > FETCH_MAX ? FETCH_MAX : want);
            natsStatus st = natsSubscription_Fetch(&f->list, pt->pull, batch, FETCH_WAIT_MS, NULL);
            int was_busy = busy;
            busy = st == NATS_OK && f->list.Count > 0;
            if (st == NATS_OK) {
                s->want -= f->list.Count;
                f->pt = pt;
                read_meta(f);
            }
            post_fetched(s, f);
            /* Work after a quiet spell: the autoscaler wants the backlog
             * now, not at the next round of figures. */
            if (busy && !was_busy) last_stats = 0;
            if (st != NATS_OK && st != NATS_TIMEOUT) {
                log_debug("cluster: fetch from %s: %s", pt->durable, natsStatus_GetText(st));
                usleep(FETCH_RETRY_MS * 1000); /* not a hot loop on a failing server */
            }
        } else {
            /* Until the trigger has room again (js_lease signals). */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_mutex_lock(&s->wake_lock);
            if ((s->want <= 0 || !cluster_connected(s->q->c)) && !s->stop)
                pthread_cond_timedwait(&s->wake, &s->wake_lock, &until);
            pthread_mutex_unlock(&s->wake_lock);
        }
        uint64_t now = clock_mono_ns() / 1000000;
        if (first && now - last_stats >= STATS_EVERY_MS && cluster_connected(s->q->c)) {
            last_stats = now;
            fetched *f = calloc(1, sizeof *f);
            if (f) {
                f->sub = s;
                f->has_info = consumer_stats(s, &f->info);
                f->has_stream = stream_stats(s->q, s->topic->stream, &f->stream) == 0;
                post_fetched(s, f);
            }
        }
    }
    return NULL;
}

static void on_fetched(void *arg)
{
    fetched *f = arg;
    q_sub *s = f->sub;
    s->posts--;
    if (s->removed) {
        /* Gone meanwhile: what it fetched goes back to the others at once. */
        for (int i = 0; i < f->list.Count; i++) natsMsg_Nak(f->list.Msgs[i], NULL);
        natsMsgList_Destroy(&f->list);
        free(f);
        sub_maybe_free(s);
        return;
    }
    if (f->has_info) {
        /* Cluster-wide: what the consumers have not yet had acknowledged. */
        uint64_t acked = s->stats.acked, dead = s->stats.dead_lettered;
        s->stats = f->info;
        s->stats.acked = acked;
        s->stats.dead_lettered = dead;
    }
    if (f->has_stream) s->topic->stats = f->stream;
    for (int i = 0; i < f->list.Count; i++) {
        natsMsg *nm = f->list.Msgs[i];
        f->list.Msgs[i] = NULL;
        jlease *jl = calloc(1, sizeof *jl);
        if (!jl || s->removed || s->q->closing) {
            free(jl);
            natsMsg_Nak(nm, NULL); /* back for another node */
            natsMsg_Destroy(nm);
            continue;
        }
        jl->nm = nm;
        jl->pt = f->pt;
        jl->l.msg = &jl->m;
        jl->l.sub = s;
        jl->failed = f->meta[i].failed;
        jl->l.attempt = jl->failed + 1;
        jl->m.seq = f->meta[i].seq;
        const char *v = NULL;
        if (natsMsgHeader_Get(nm, "Spate-Key", &v) == NATS_OK && v) {
            snprintf(jl->key, sizeof jl->key, "%s", v);
            jl->m.key = jl->key;
            jl->m.key_len = (uint32_t)strlen(jl->key);
        }
        if (natsMsgHeader_Get(nm, "Spate-Published", &v) == NATS_OK && v)
            jl->m.published_ms = strtoll(v, NULL, 10);
        jl->m.data = natsMsg_GetData(nm);
        jl->m.len = (uint32_t)natsMsg_GetDataLength(nm);
        list_push_back(&s->ready, &jl->link);
    }
    natsMsgList_Destroy(&f->list);
    free(f);
    /* Also what waited while the node was cut off from NATS: the figures
     * come every second, and only while it is connected. */
    if (!list_empty(&s->ready) && s->q->ev.available) s->q->ev.available(s, s->q->ev.data);
}

static q_lease *js_lease(q_sub *s)
{
    /* Cut off from NATS, a result could not be acknowledged: what was
     * fetched waits, and JetStream gives it to others after AckWait. */
    if (s->removed || s->q->closing || !cluster_connected(s->q->c)) return NULL;
    if (list_empty(&s->ready)) {
        /* Pull as much as there is room for; a trigger without a room
         * callback takes one at a time. */
        int room = s->q->ev.room ? (int)s->q->ev.room(s, s->q->ev.data) : 1;
        if (room > s->want) {
            pthread_mutex_lock(&s->wake_lock);
            s->want = room;
            pthread_cond_broadcast(&s->wake);
            pthread_mutex_unlock(&s->wake_lock);
        }
        return NULL;
    }
    jlease *jl = list_entry(list_first(&s->ready), jlease, link);
    list_remove(&jl->link);
    s->leases++;
    return &jl->l;
}

static void finish_close(queue *q);

/* A removed subscription goes once nothing refers to it: no lease out, no
 * fetch on its way to the loop, no job on the worker thread. */
static void sub_maybe_free(q_sub *s)
{
    if (!s->removed || s->started || s->leases || s->posts || s->jobs) return;
    queue *q = s->q;
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->wake_lock);
    free(s);
    q->zombies--;
    if (q->closing) finish_close(q);
}

static void lease_free(jlease *jl)
{
    q_sub *s = jl->l.sub;
    natsMsg_Destroy(jl->nm);
    free(jl);
    s->leases--;
    sub_maybe_free(s);
}

/* Worker thread: a failure is recorded before the NAK, so that the next
 * delivery reads it; the record of a message done with is dropped (what a
 * lost drop leaves behind goes with the bucket's TTL). */
typedef struct settle_job {
    kvStore *kv;
    natsMsg *nm;      /* to NAK once recorded; NULL when dropping */
    uint32_t failed;  /* attempts failed so far; 0: drop the record */
    int64_t delay_ms; /* before the next delivery */
    char key[KV_KEY_CAP];
} settle_job;

static void settle_work(void *arg)
{
    settle_job *j = arg;
    if (!j->failed) {
        kvStore_Delete(j->kv, j->key);
        return;
    }
    char v[16];
    snprintf(v, sizeof v, "%u", j->failed);
    natsStatus st = kvStore_PutString(NULL, j->kv, j->key, v);
    if (st != NATS_OK) /* then it has one more attempt than it should */
        log_warn("cluster: cannot record failed attempt %u of %s: %s", j->failed, j->key,
                 natsStatus_GetText(st));
    natsMsg_NakWithDelay(j->nm, j->delay_ms, NULL);
}

static void settle_done(void *arg)
{
    settle_job *j = arg;
    natsMsg_Destroy(j->nm);
    free(j);
}

static settle_job *new_settle(const jlease *jl, uint32_t failed)
{
    settle_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->kv = cluster_attempts(jl->l.sub->q->c);
    j->failed = failed;
    attempts_key(j->key, sizeof j->key, jl->l.sub, jl->pt, jl->m.seq);
    return j;
}

static void js_ack(q_lease *l)
{
    jlease *jl = (jlease *)l;
    natsMsg_Ack(jl->nm, NULL);
    if (jl->l.sub->removed)
        jl->l.sub->topic->retired_acked++;
    else
        jl->l.sub->acked++;
    settle_job *j = jl->failed ? new_settle(jl, 0) : NULL;
    if (j) cluster_run(jl->l.sub->q->c, settle_work, settle_done, j);
    lease_free(jl);
}

static void js_nack(q_lease *l, uint32_t delay_ms, const char *error)
{
    jlease *jl = (jlease *)l;
    settle_job *j = new_settle(jl, jl->failed + 1);
    if (!j) {
        natsMsg_NakWithDelay(jl->nm, (int64_t)delay_ms, NULL);
    } else {
        j->nm = jl->nm;
        j->delay_ms = delay_ms;
        jl->nm = NULL;
        cluster_run(jl->l.sub->q->c, settle_work, settle_done, j);
    }
    lease_free(jl);
}

static void js_release(q_lease *l)
{
    jlease *jl = (jlease *)l;
    natsMsg_Nak(jl->nm, NULL);
    lease_free(jl);
}

static void js_dead_letter(q_lease *l, const char *error)
{
    jlease *jl = (jlease *)l;
    q_sub *s = l->sub;
    pub_job *j = new_pub(s->q, s->cfg.dlq);
    q_input *in = j ? calloc(1, sizeof *in) : NULL;
    if (!in) {
        free(j);
        natsMsg_NakWithDelay(jl->nm, 1000, NULL); /* try again later */
        lease_free(jl);
        return;
    }
    buf_init(&j->body, 0);
    in->data = jl->m.data;
    in->len = jl->m.len;
    in->key = jl->m.key;
    in->key_len = jl->m.key_len;
    j->in = in;
    j->n = 1;
    snprintf(j->source, sizeof j->source, "%s", s->topic->name);
    j->error = strdup(error ? error : "");
    j->attempts = l->attempt;
    j->term = jl->nm; /* the job owns it now, and terminates it once stored */
    if (jl->failed) attempts_key(j->attempts_key, sizeof j->attempts_key, s, jl->pt, jl->m.seq);
    jl->nm = NULL;
    /* The input points into the message, which the job keeps alive. */
    if (s->removed)
        s->topic->retired_dead++;
    else
        s->dead++;
    free(jl);
    s->leases--;
    cluster_run(s->q->c, publish_work, publish_done, j);
    sub_maybe_free(s);
}

/* --- Subscriptions -------------------------------------------------------------------------- */

typedef struct sub_job {
    q_sub *s;
    int remove;
    uint32_t ack_wait_ms;
    queue_done_cb done;
    void *data;
    int status;
    char err[200];
} sub_job;

/* One consumer of a subscription, created (or changed) and bound. */
static natsStatus make_consumer(q_sub *s, struct part *pt, uint32_t ack_wait_ms)
{
    queue *q = s->q;
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = pt->durable;
    cc.FilterSubject = pt->filter;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll; /* from the oldest stored message */
    cc.AckWait = (int64_t)ack_wait_ms * 1000000;
    cc.MaxAckPending = pt->one_at_a_time ? 1 : 100000;
    jsConsumerInfo *ci = NULL;
    natsStatus st = js_AddConsumer(&ci, q->js, s->topic->stream, &cc, NULL, NULL);
    if (st != NATS_OK) /* it exists: a new trigger configuration */
        st = js_UpdateConsumer(&ci, q->js, s->topic->stream, &cc, NULL, NULL);
    if (ci) jsConsumerInfo_Destroy(ci);
    if (st == NATS_OK && !pt->pull) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = s->topic->stream;
        so.Consumer = pt->durable;
        st = js_PullSubscribe(&pt->pull, q->js, pt->filter, pt->durable, NULL, &so, NULL);
    }
    return st;
}

#define MAKERS 8 /* a replicated consumer takes JetStream ~0.5 s: make them side by side */

typedef struct maker {
    sub_job *j;
    int first;
    natsStatus st;
} maker;

static void *maker_main(void *arg)
{
    maker *m = arg;
    q_sub *s = m->j->s;
    m->st = NATS_OK;
    for (int i = m->first; i < s->nparts && m->st == NATS_OK; i += MAKERS)
        m->st = make_consumer(s, &s->parts[i], m->j->ack_wait_ms);
    return NULL;
}

static void subscribe_work(void *arg)
{
    sub_job *j = arg;
    q_sub *s = j->s;
    queue *q = s->q;
    natsStatus st;
    if (j->remove) {
        st = NATS_OK;
        for (int i = 0; i < s->nparts; i++) {
            natsStatus d =
                js_DeleteConsumer(q->js, s->topic->stream, s->parts[i].durable, NULL, NULL);
            if (d != NATS_OK && d != NATS_NOT_FOUND) st = d;
        }
    } else {
        st = ensure_stream(q, s->topic->stream, s->topic->subject);
        if (st == NATS_OK) st = lift_limits(q, s->topic->stream);
        maker m[MAKERS];
        pthread_t th[MAKERS];
        int n = 0;
        for (; st == NATS_OK && n < MAKERS && n < s->nparts; n++) {
            m[n] = (maker){.j = j, .first = n};
            if (pthread_create(&th[n], NULL, maker_main, &m[n]) != 0) {
                maker_main(&m[n]); /* no thread: here, then */
                th[n] = 0;
            }
        }
        for (int i = 0; i < n; i++) {
            if (th[i]) pthread_join(th[i], NULL);
            if (m[i].st != NATS_OK) st = m[i].st;
        }
    }
    j->status = st == NATS_OK ? 0 : ERR_IO;
    if (st != NATS_OK)
        snprintf(j->err, sizeof j->err, "%s",
                 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(st));
}

/* Fetched and not leased: back to the other nodes now, not after AckWait. */
static void give_back_ready(q_sub *s)
{
    while (!list_empty(&s->ready)) {
        jlease *jl = list_entry(list_first(&s->ready), jlease, link);
        list_remove(&jl->link);
        natsMsg_Nak(jl->nm, NULL);
        natsMsg_Destroy(jl->nm);
        free(jl);
    }
}

static void stop_puller(q_sub *s)
{
    if (!s->started) return;
    pthread_mutex_lock(&s->wake_lock);
    s->stop = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->wake_lock);
    for (int i = 0; i < s->nparts; i++)
        if (s->parts[i].running) {
            pthread_join(s->parts[i].thread, NULL);
            s->parts[i].running = 0;
        }
    s->started = 0;
    for (int i = 0; i < s->nparts; i++) {
        natsSubscription_Destroy(s->parts[i].pull);
        s->parts[i].pull = NULL;
    }
}

static void subscribe_done(void *arg)
{
    sub_job *j = arg;
    q_sub *s = j->s;
    if (j->status)
        log_warn("cluster: cannot %s trigger %s -> %s: %s", j->remove ? "remove" : "set up",
                 s->topic->name, s->cfg.function, j->err);
    if (!j->remove && j->status == 0 && !s->started && !s->removed) {
        s->stop = 0;
        for (int i = 0; i < s->nparts; i++) {
            s->parts[i].sub = s;
            if (pthread_create(&s->parts[i].thread, NULL, puller_main, &s->parts[i]) == 0) {
                s->parts[i].running = 1;
                s->started = 1;
            }
        }
        s->topic->created = 1;
        s->topic->touched = s->q->refresh_serial;
    }
    if (j->done) j->done(j->data, j->status);
    s->jobs--;
    free(j);
    sub_maybe_free(s);
}

static q_sub *find(queue *q, const char *topic, const char *function)
{
    for (list_node *n = list_first(&q->subs); n != &q->subs; n = n->next) {
        q_sub *s = list_entry(n, q_sub, link);
        if (strcmp(s->topic->name, topic) == 0 && strcmp(s->cfg.function, function) == 0) return s;
    }
    return NULL;
}

/* A plain trigger reads the whole topic through one consumer; an ordered one
 * has a consumer per key part, one at a time each, and one for unkeyed
 * messages. */
static void set_parts(q_sub *s, const q_sub_config *cfg)
{
    const char *base = s->topic->subject;
    if (!cfg->ordered) {
        s->nparts = 1;
        snprintf(s->parts[0].durable, sizeof s->parts[0].durable, "F_%s", cfg->function);
        snprintf(s->parts[0].filter, sizeof s->parts[0].filter, "%s.>", base);
        return;
    }
    s->nparts = PARTS_MAX;
    for (int i = 0; i < KEY_PARTS; i++) {
        snprintf(s->parts[i].durable, sizeof s->parts[i].durable, "F_%s_k%02d", cfg->function, i);
        snprintf(s->parts[i].filter, sizeof s->parts[i].filter, "%s.k%02d", base, i);
        s->parts[i].one_at_a_time = 1;
    }
    struct part *u = &s->parts[KEY_PARTS];
    snprintf(u->durable, sizeof u->durable, "F_%s_u", cfg->function);
    snprintf(u->filter, sizeof u->filter, "%s.u", base);
}

static int js_subscribe(queue *q, const char *topic, const q_sub_config *cfg, queue_done_cb done,
                        void *data)
{
    q_sub *s = find(q, topic, cfg->function);
    sub_job *j = calloc(1, sizeof *j);
    if (!j) return ERR_NOMEM;
    if (!s) {
        s = calloc(1, sizeof *s);
        jtopic *t = s ? topic_of(q, topic, 1) : NULL;
        if (!t) {
            free(s);
            free(j);
            return ERR_NOMEM;
        }
        s->ops = &js_ops;
        s->q = q;
        s->topic = t;
        pthread_mutex_init(&s->wake_lock, NULL);
        pthread_cond_init(&s->wake, NULL);
        list_init(&s->ready);
        set_parts(s, cfg);
        list_push_back(&q->subs, &s->link);
    } else if (s->cfg.ordered != cfg->ordered) {
        free(j); /* its consumers differ: a new trigger, not a change */
        return ERR_BUSY;
    }
    s->cfg = *cfg;
    j->s = s;
    j->ack_wait_ms = cluster_function_timeout_ms(q->c, cfg->function) + ACK_MARGIN_MS;
    j->done = done;
    j->data = data;
    s->jobs++;
    cluster_run(q->c, subscribe_work, subscribe_done, j);
    return 0;
}

static int js_unsubscribe(queue *q, const char *topic, const char *function, queue_done_cb done,
                          void *data)
{
    q_sub *s = find(q, topic, function);
    if (!s) return ERR_NOTFOUND;
    sub_job *j = calloc(1, sizeof *j);
    if (!j) return ERR_NOMEM;
    list_remove(&s->link);
    s->removed = 1;
    q->zombies++;
    stop_puller(s);
    give_back_ready(s);
    /* Its counters stay the topic's. */
    s->topic->retired_acked += s->acked;
    s->topic->retired_dead += s->dead;
    j->s = s;
    j->remove = 1;
    j->done = done;
    j->data = data;
    s->jobs++;
    cluster_run(q->c, subscribe_work, subscribe_done, j);
    return 0;
}

static q_sub *js_find_sub(queue *q, const char *topic, const char *function)
{
    return find(q, topic, function);
}

static void js_each_sub(queue *q, void (*cb)(q_sub *sub, void *data), void *data)
{
    for (list_node *n = list_first(&q->subs); n != &q->subs;) {
        q_sub *s = list_entry(n, q_sub, link);
        n = n->next;
        cb(s, data);
    }
}

static const q_sub_config *js_sub_config(const q_sub *s)
{
    return &s->cfg;
}

static const char *js_sub_topic(const q_sub *s)
{
    return s->topic->name;
}

static void js_sub_set_data(q_sub *s, void *data)
{
    s->user = data;
}

static void *js_sub_data(const q_sub *s)
{
    return s->user;
}

static void js_sub_stats(const q_sub *s, q_sub_stats *out)
{
    *out = s->stats;
    out->acked = s->acked;
    out->dead_lettered = s->dead;
}

/* --- Topics --------------------------------------------------------------------------------- */

static int js_topic_stats(queue *q, const char *topic, q_topic_stats *out)
{
    jtopic *t = topic_of(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    *out = t->stats;
    out->subscriptions = 0;
    out->acked = t->retired_acked;
    out->dead_lettered = t->retired_dead;
    out->retention = t->ret;
    for (list_node *n = list_first(&q->subs); n != &q->subs; n = n->next) {
        q_sub *s = list_entry(n, q_sub, link);
        if (s->topic != t) continue;
        out->subscriptions++;
        out->acked += s->acked;
        out->dead_lettered += s->dead;
    }
    return 0;
}

static void js_each_topic(queue *q, void (*cb)(const char *topic, void *data), void *data)
{
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        jtopic *t = list_entry(n, jtopic, link);
        if (!t->gone) cb(t->name, data);
    }
}

/* --- Reading and redriving stored messages ----------------------------------------------- */

#define READ_MAX 1024

typedef struct read_job {
    queue *q;
    char stream[SPATE_TOPIC_NAME_MAX * 3 + 16];
    char all[SPATE_TOPIC_NAME_MAX * 3 + 32]; /* every subject of the topic */
    uint64_t after;
    uint32_t limit;
    int redrive;
    int known; /* listed here: a trigger's topic exists before its stream */
    natsMsg *nm[READ_MAX];
    q_msg m[READ_MAX];
    size_t n;
    uint64_t moved;
    int status;
    queue_read_cb cb;
    queue_redrive_cb rcb;
    void *data;
} read_job;

static const char *header(natsMsg *m, const char *name)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, name, &v) == NATS_OK ? v : NULL;
}

/* Worker thread: the stored messages after j->after, in order, read with
 * direct gets (next message by subject from a sequence: deleted ones, such
 * as redriven dead letters, are skipped by JetStream). */
static natsStatus read_stored(read_job *j)
{
    uint64_t seq = j->after + 1;
    while (j->n < j->limit) {
        jsDirectGetMsgOptions o;
        jsDirectGetMsgOptions_Init(&o);
        o.Sequence = seq;
        o.NextBySubject = j->all;
        natsMsg *nm = NULL;
        natsStatus s = js_DirectGetMsg(&nm, j->q->js, j->stream, NULL, &o);
        if (s == NATS_NOT_FOUND) break; /* the end */
        if (s != NATS_OK) return s;
        q_msg *m = &j->m[j->n];
        j->nm[j->n++] = nm;
        m->seq = natsMsg_GetSequence(nm);
        m->data = natsMsg_GetData(nm);
        m->len = (uint32_t)natsMsg_GetDataLength(nm);
        m->key = header(nm, "Spate-Key");
        m->key_len = m->key ? (uint32_t)strlen(m->key) : 0;
        const char *v = header(nm, "Spate-Published");
        m->published_ms = v ? strtoll(v, NULL, 10) : natsMsg_GetTime(nm) / 1000000;
        m->source = header(nm, "Spate-Source");
        m->error = header(nm, "Spate-Error");
        v = header(nm, "Spate-Attempts");
        m->attempts = v ? (uint32_t)strtoul(v, NULL, 10) : 0;
        if (m->seq < seq) return NATS_ERR; /* never: it would loop */
        seq = m->seq + 1;
    }
    return NATS_OK;
}

/* Worker thread: dead letters back to their source topics as new messages
 * (attempts start again), then deleted from the dead-letter stream. A node
 * lost in between leaves them in both: redriven twice, never lost. */
static natsStatus redrive_stored(read_job *j)
{
    char when[24];
    snprintf(when, sizeof when, "%lld", (long long)clock_now_ms());
    char last[SPATE_TOPIC_NAME_MAX * 3 + 16] = "";
    natsStatus s = NATS_OK;
    cluster_acks acks;
    cluster_acks_begin(j->q->c, &acks);
    for (size_t i = 0; s == NATS_OK && i < j->n; i++) {
        const q_msg *m = &j->m[i];
        if (!m->source || !*m->source) continue; /* not a dead letter */
        char stream[sizeof last], base[SPATE_TOPIC_NAME_MAX * 3 + 16];
        stream_name(m->source, stream, sizeof stream);
        snprintf(base, sizeof base, "spate.t.%s", stream + 8);
        if (strcmp(stream, last) != 0) {
            s = ensure_stream(j->q, stream, base);
            snprintf(last, sizeof last, "%s", stream);
        }
        q_input in = {.key = m->key, .key_len = m->key_len, .data = m->data, .len = m->len};
        natsMsg *out = NULL;
        if (s == NATS_OK) s = topic_msg(&out, base, &in, when);
        if (s == NATS_OK) s = js_PublishMsgAsync(j->q->js, &out, NULL);
        if (out) natsMsg_Destroy(out);
    }
    char err[200] = "";
    natsStatus acked = await_acks(j->q, &acks, err, sizeof err);
    if (s == NATS_OK) s = acked;
    if (err[0]) log_warn("cluster: redrive of %s: %s", j->stream, err);
    for (size_t i = 0; s == NATS_OK && i < j->n; i++) {
        if (!j->m[i].source || !*j->m[i].source) continue;
        s = js_DeleteMsg(j->q->js, j->stream, j->m[i].seq, NULL, NULL);
        if (s == NATS_OK) j->moved++;
    }
    return s;
}

static void read_work(void *arg)
{
    read_job *j = arg;
    natsStatus s = NATS_OK;
    if (!cluster_connected(j->q->c)) {
        j->status = ERR_DISCONNECTED;
        return;
    }
    /* Streams made before direct gets were asked for get them now. */
    jsStreamInfo *si = NULL;
    s = js_GetStreamInfo(&si, j->q->js, j->stream, NULL, NULL);
    if (s == NATS_OK && !si->Config->AllowDirect) {
        jsStreamInfo *up = NULL;
        si->Config->AllowDirect = true;
        s = js_UpdateStream(&up, j->q->js, si->Config, NULL, NULL);
        if (up) jsStreamInfo_Destroy(up);
    }
    if (si) jsStreamInfo_Destroy(si);
    if (s == NATS_NOT_FOUND) { /* a topic only triggered yet holds nothing */
        if (!j->known) j->status = ERR_NOTFOUND;
        return;
    }
    if (s == NATS_OK) s = read_stored(j);
    if (s == NATS_OK && j->redrive) s = redrive_stored(j);
    if (s != NATS_OK) {
        j->status = ERR_IO;
        log_warn("cluster: cannot %s %s: %s", j->redrive ? "redrive" : "read", j->stream,
                 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
    }
}

static void read_done(void *arg)
{
    read_job *j = arg;
    if (j->redrive) {
        j->rcb(j->data, j->status, j->moved);
    } else {
        q_msg *ptrs[READ_MAX];
        for (size_t i = 0; i < j->n; i++) ptrs[i] = &j->m[i];
        j->cb(j->data, j->status, ptrs, j->status ? 0 : j->n);
    }
    for (size_t i = 0; i < j->n; i++) natsMsg_Destroy(j->nm[i]);
    free(j);
}

/* By name, not from the list of topics: one published to through another
 * node a moment ago may not be listed here yet (the list refreshes every
 * second); the stream says whether it exists. */
static read_job *new_read(queue *q, const char *topic, uint64_t after, uint32_t limit)
{
    read_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->q = q;
    j->known = topic_of(q, topic, 0) != NULL;
    stream_name(topic, j->stream, sizeof j->stream);
    snprintf(j->all, sizeof j->all, "spate.t.%s.>", j->stream + 8);
    j->after = after;
    j->limit = limit > READ_MAX ? READ_MAX : limit;
    return j;
}

static int js_read(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_read_cb cb,
                   void *data)
{
    read_job *j = new_read(q, topic, after, limit);
    if (!j) return ERR_NOMEM;
    j->cb = cb;
    j->data = data;
    cluster_run(q->c, read_work, read_done, j);
    return 0;
}

static int js_redrive(queue *q, const char *topic, uint64_t after, uint32_t limit,
                      queue_redrive_cb cb, void *data)
{
    read_job *j = new_read(q, topic, after, limit);
    if (!j) return ERR_NOMEM;
    j->redrive = 1;
    j->rcb = cb;
    j->data = data;
    cluster_run(q->c, read_work, read_done, j);
    return 0;
}

static void js_set_events(queue *q, const queue_events *ev)
{
    q->ev = ev ? *ev : (queue_events){0};
}

/* --- Administering topics ------------------------------------------------------------------ */

enum admin_what { A_DELETE, A_PURGE, A_RETENTION };

typedef struct admin_job {
    queue *q;
    jtopic *topic;
    enum admin_what what;
    char stream[SPATE_TOPIC_NAME_MAX * 3 + 16];
    char subject[SPATE_TOPIC_NAME_MAX * 3 + 16];
    q_retention ret;
    int created; /* its stream was there, as far as this node knew */
    uint64_t count;
    int status;
    char err[200];
    queue_count_cb count_cb;
    queue_done_cb done_cb;
    void *data;
} admin_job;

static void admin_work(void *arg)
{
    admin_job *j = arg;
    queue *q = j->q;
    if (!cluster_connected(q->c)) {
        j->status = ERR_DISCONNECTED;
        return;
    }
    natsStatus s = NATS_OK;
    if (j->what == A_RETENTION) s = ensure_stream(q, j->stream, j->subject);
    jsStreamInfo *si = NULL;
    if (s == NATS_OK) s = js_GetStreamInfo(&si, q->js, j->stream, NULL, NULL);
    if (s == NATS_NOT_FOUND) {
        /* A topic only triggered yet, or one another node deleted: nothing stored. */
        j->status = j->created ? ERR_NOTFOUND : 0;
        return;
    }
    if (s == NATS_OK && j->what == A_DELETE) {
        j->count = si->State.Msgs;
        s = js_DeleteStream(q->js, j->stream, NULL, NULL);
    } else if (s == NATS_OK && j->what == A_PURGE) {
        /* Up to the last message as of now: a publish meanwhile stays. */
        jsOptions o;
        jsOptions_Init(&o);
        o.Stream.Purge.Sequence = si->State.LastSeq + 1;
        j->count = si->State.Msgs;
        s = js_PurgeStream(q->js, j->stream, &o, NULL);
    } else if (s == NATS_OK) {
        char description[160];
        snprintf(description, sizeof description, RETENTION_FMT,
                 (unsigned long long)j->ret.max_age_ms, (unsigned long long)j->ret.max_bytes,
                 (unsigned long long)j->ret.max_messages);
        /* The description first (whatever the limits), then the limits it says. */
        const char *before = si->Config->Description;
        si->Config->Description = description;
        jsStreamInfo *up = NULL;
        s = js_UpdateStream(&up, q->js, si->Config, NULL, NULL);
        si->Config->Description = before; /* si's own, freed with it */
        if (s == NATS_OK && up) s = apply_limits(q, up, up->State.Consumers > 0);
        if (up) jsStreamInfo_Destroy(up);
    }
    if (si) jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        j->status = ERR_IO;
        snprintf(j->err, sizeof j->err, "%s",
                 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
    }
}

static void admin_done(void *arg)
{
    admin_job *j = arg;
    jtopic *t = j->topic;
    if (j->err[0]) log_warn("cluster: cannot change topic %s: %s", t->name, j->err);
    if (j->what == A_DELETE && j->status == 0) {
        t->created = 0;
    } else if (j->what == A_DELETE && j->status != ERR_NOTFOUND && t->gone) {
        t->gone = 0; /* still there */
    }
    if (j->what != A_DELETE && j->status == 0) {
        t->created = 1; /* its stream is there (an unlisted one shows now) */
        t->gone = 0;
    }
    if (j->count_cb) j->count_cb(j->data, j->status, j->count);
    if (j->done_cb) j->done_cb(j->data, j->status);
    free(j);
}

static admin_job *admin_new(queue *q, jtopic *t, enum admin_what what)
{
    admin_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->q = q;
    j->topic = t;
    j->what = what;
    memcpy(j->stream, t->stream, sizeof j->stream);
    memcpy(j->subject, t->subject, sizeof j->subject);
    j->created = t->created;
    return j;
}

/* The topic to change. One published to through another node a moment ago
 * may not be listed here yet (the list refreshes every second): then its
 * stream decides, and it stays hidden unless the change finds it. */
static jtopic *admin_topic(queue *q, const char *topic, int *unlisted)
{
    jtopic *t = topic_of(q, topic, 0);
    *unlisted = !t;
    if (t) return t;
    if ((t = topic_of(q, topic, 1))) t->gone = 1;
    return t;
}

static int js_topic_delete(queue *q, const char *topic, queue_count_cb done, void *data)
{
    int unlisted;
    jtopic *t = admin_topic(q, topic, &unlisted);
    if (!t) return ERR_NOMEM;
    for (list_node *n = list_first(&q->subs); n != &q->subs; n = n->next)
        if (list_entry(n, q_sub, link)->topic == t) return ERR_BUSY;
    admin_job *j = admin_new(q, t, A_DELETE);
    if (!j) return ERR_NOMEM;
    j->created |= unlisted; /* no stream: it does not exist */
    j->count_cb = done;
    j->data = data;
    t->gone = 1;
    q->deletions++;
    cluster_run(q->c, admin_work, admin_done, j);
    return 0;
}

static int js_topic_purge(queue *q, const char *topic, queue_count_cb done, void *data)
{
    int unlisted;
    jtopic *t = admin_topic(q, topic, &unlisted);
    if (!t) return ERR_NOMEM;
    admin_job *j = admin_new(q, t, A_PURGE);
    if (!j) return ERR_NOMEM;
    j->created |= unlisted;
    j->count_cb = done;
    j->data = data;
    cluster_run(q->c, admin_work, admin_done, j);
    return 0;
}

static int js_topic_retention(queue *q, const char *topic, const q_retention *r, queue_done_cb done,
                              void *data)
{
    jtopic *t = topic_of(q, topic, 1);
    if (!t) return ERR_NOMEM;
    admin_job *j = admin_new(q, t, A_RETENTION);
    if (!j) return ERR_NOMEM;
    j->ret = *r;
    t->ret = *r;
    t->touched = q->refresh_serial;
    j->done_cb = done;
    j->data = data;
    cluster_run(q->c, admin_work, admin_done, j);
    return 0;
}

/* --- Every topic: what the cluster's streams say, every second -------------------------- */

typedef struct refresh_job {
    queue *q;
    int trim;                   /* and drop what every trigger has settled */
    uint32_t serial, deletions; /* as of its start */
    int n;
    struct {
        char name[SPATE_TOPIC_NAME_MAX + 1];
        q_topic_stats stats;
    } * items;
} refresh_job;

/* SPATE_T_a_2eb -> a.b */
static int topic_from_stream(const char *stream, char *out, size_t cap)
{
    if (strncmp(stream, "SPATE_T_", 8) != 0) return -1;
    size_t n = 0;
    for (const char *p = stream + 8; *p && n + 1 < cap; p++) {
        unsigned v;
        if (*p == '_' && sscanf(p + 1, "%2x", &v) == 1 && p[1] && p[2]) {
            out[n++] = (char)v;
            p += 2;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return n ? 0 : -1;
}

/* Worker thread: a topic's stream keeps what some trigger has not yet
 * settled, and the rest goes, as on one node (JetStream's limits retention
 * alone would keep every message for ever). A consumer with nothing pending
 * or unacknowledged has settled all up to the stream's last message as read
 * before its figures; otherwise all up to its ack floor. A stream no
 * trigger reads (a dead-letter topic, a topic without triggers) keeps
 * everything. */
static void trim_stream(queue *q, const jsStreamInfo *si)
{
    uint64_t last = si->State.LastSeq;
    if (!si->State.Msgs) return;
    jsConsumerInfoList *cl = NULL;
    if (js_Consumers(&cl, q->js, si->Config->Name, NULL, NULL) != NATS_OK || !cl) return;
    uint64_t keep = cl->Count ? last + 1 : 0; /* the first message still wanted */
    for (int i = 0; i < cl->Count; i++) {
        const jsConsumerInfo *ci = cl->List[i];
        uint64_t from =
            ci->NumPending == 0 && ci->NumAckPending == 0 ? last + 1 : ci->AckFloor.Stream + 1;
        if (from < keep) keep = from;
    }
    jsConsumerInfoList_Destroy(cl);
    if (keep <= si->State.FirstSeq) return;
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Sequence = keep; /* up to, not including */
    natsStatus s = js_PurgeStream(q->js, si->Config->Name, &o, NULL);
    if (s != NATS_OK)
        log_debug("cluster: cannot trim %s: %s", si->Config->Name, natsStatus_GetText(s));
}

static void refresh_work(void *arg)
{
    refresh_job *j = arg;
    jsStreamInfoList *list = NULL;
    if (js_Streams(&list, j->q->js, NULL, NULL) != NATS_OK || !list) return;
    j->items = calloc((size_t)list->Count + 1, sizeof *j->items);
    for (int i = 0; j->items && i < list->Count; i++) {
        jsStreamInfo *si = list->List[i];
        if (!si->Config || topic_from_stream(si->Config->Name, j->items[j->n].name,
                                             sizeof j->items[j->n].name) != 0)
            continue;
        if (j->trim) trim_stream(j->q, si);
        q_topic_stats *st = &j->items[j->n].stats;
        st->published = si->State.LastSeq;
        st->stored = si->State.Msgs;
        st->bytes = si->State.Bytes;
        st->oldest_ms = si->State.Msgs ? si->State.FirstTime / 1000000 : 0;
        parse_retention(si->Config->Description, &st->retention);
        /* Retention in force only while no trigger reads the stream. */
        natsStatus ls = apply_limits(j->q, si, si->State.Consumers > 0);
        if (ls != NATS_OK)
            log_debug("cluster: cannot set the limits of %s: %s", si->Config->Name,
                      natsStatus_GetText(ls));
        j->n++;
    }
    jsStreamInfoList_Destroy(list);
}

static void refresh_done(void *arg)
{
    refresh_job *j = arg;
    queue *q = j->q;
    q->refreshing = 0;
    if (q->closing) {
        free(j->items);
        free(j);
        finish_close(q);
        return;
    }
    int deleted_since = j->deletions != q->deletions;
    for (int i = 0; i < j->n; i++) {
        jtopic *t = topic_of(q, j->items[i].name, 0);
        /* A topic deleted here after the refresh began stays deleted. */
        if (!t && deleted_since) continue;
        if (!t) t = topic_of(q, j->items[i].name, 1);
        if (t) {
            t->created = 1;
            t->ret = j->items[i].stats.retention;
            t->stats = j->items[i].stats;
        }
    }
    /* Streams gone (deleted through another node): their topics too, unless
     * a trigger here reads them or this node made the stream since. */
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        jtopic *t = list_entry(n, jtopic, link);
        if (t->gone || !t->created || t->touched >= j->serial) continue;
        int listed = 0;
        for (int i = 0; i < j->n && !listed; i++) listed = strcmp(j->items[i].name, t->name) == 0;
        for (list_node *m = list_first(&q->subs); m != &q->subs && !listed; m = m->next)
            listed = list_entry(m, q_sub, link)->topic == t;
        if (!listed) {
            t->created = 0;
            t->gone = 1;
        }
    }
    free(j->items);
    free(j);
}

static void on_refresh(uv_timer_t *h)
{
    queue *q = h->data;
    if (q->refreshing || q->closing) return;
    refresh_job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->q = q;
    j->trim = q->refreshes++ % TRIM_EVERY == TRIM_EVERY - 1;
    j->serial = ++q->refresh_serial;
    j->deletions = q->deletions;
    q->refreshing = 1;
    cluster_run(q->c, refresh_work, refresh_done, j);
}

static void on_refresh_closed(uv_handle_t *h)
{
    queue *q = h->data;
    void (*cb)(void *) = q->close_cb;
    void *data = q->close_data;
    while (!list_empty(&q->topics)) {
        jtopic *t = list_entry(list_first(&q->topics), jtopic, link);
        list_remove(&t->link);
        free(t);
    }
    free(q);
    if (cb) cb(data);
}

static void finish_close(queue *q)
{
    /* refresh_done and the last sub_maybe_free come back here. */
    if (q->refreshing || q->zombies || q->closed) return;
    q->closed = 1;
    uv_close((uv_handle_t *)&q->refresh, on_refresh_closed);
}

static void js_close(queue *q, void (*cb)(void *data), void *data)
{
    q->closing = 1;
    q->close_cb = cb;
    q->close_data = data;
    uv_timer_stop(&q->refresh);
    for (list_node *n = list_first(&q->subs); n != &q->subs; n = n->next) {
        q_sub *s = list_entry(n, q_sub, link);
        stop_puller(s);
        give_back_ready(s);
    }
    while (!list_empty(&q->subs)) {
        q_sub *s = list_entry(list_first(&q->subs), q_sub, link);
        list_remove(&s->link);
        s->removed = 1;
        q->zombies++;
        sub_maybe_free(s);
    }
    finish_close(q);
}

static const queue_ops js_ops = {
    .publish = js_publish,
    .lease = js_lease,
    .ack = js_ack,
    .nack = js_nack,
    .release = js_release,
    .dead_letter = js_dead_letter,
    .subscribe = js_subscribe,
    .unsubscribe = js_unsubscribe,
    .find_sub = js_find_sub,
    .each_sub = js_each_sub,
    .sub_config = js_sub_config,
    .sub_topic = js_sub_topic,
    .sub_set_data = js_sub_set_data,
    .sub_data = js_sub_data,
    .sub_stats = js_sub_stats,
    .topic_stats = js_topic_stats,
    .each_topic = js_each_topic,
    .read = js_read,
    .redrive = js_redrive,
    .topic_delete = js_topic_delete,
    .topic_purge = js_topic_purge,
    .topic_retention = js_topic_retention,
    .set_events = js_set_events,
    .close = js_close,
    .flags = QUEUE_SHARED,
};

int jsqueue_open(uv_loop_t *loop, cluster *c, const queue_events *ev, queue **out)
{
    queue *q = calloc(1, sizeof *q);
    if (!q) return ERR_NOMEM;
    q->ops = &js_ops;
    q->loop = loop;
    q->c = c;
    q->js = cluster_js(c);
    q->replicas = cluster_replicas(c);
    q->ev = *ev;
    list_init(&q->topics);
    list_init(&q->subs);
    uv_timer_init(loop, &q->refresh);
    q->refresh.data = q;
    uv_timer_start(&q->refresh, on_refresh, 0, STATS_EVERY_MS);
    *out = q;
    return 0;
}
