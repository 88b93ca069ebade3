/*
 * jsqueue/pull.c - the puller threads of a subscription, which fetch only as
 * much as the trigger has room for, and leasing on the loop what they
 * fetched.
 */
#include "cluster/jsqueue/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

typedef struct fetched {
    queue_sub *sub;
    struct part *pt;
    uint64_t asked_ms; /* monotonic: when the fetch was asked for */
    /* The first `queued` of list waited in nats.c's queue before the fetch
     * (natsSubscription_Fetch hands those out first): delivered at
     * queued_ms at the earliest, not at asked_ms. */
    int queued;
    uint64_t queued_ms;
    natsMsgList list;
    struct {
        uint64_t seq;        /* in the stream */
        int64_t stored_ns;   /* when JetStream stored it */
        uint32_t failed;     /* attempts that failed before (the attempts bucket) */
        int unknown;         /* the bucket did not answer: handed back (NAKed) */
        const char *settled; /* "+ACK", "+TERM": settled before, its answer lost */
        int given_again;     /* an ordered part's, delivered again since: not ours */
        int64_t created_ns;  /* an ordered part's: its stream's creation */
        uint64_t mark_rev;   /* and its mark's revision (skipped.c) */
    } meta[SPATE_JS_FETCH_MAX];
    int has_info;
    queue_sub_stats info; /* depth, leased, retrying, delivered, oldest: over its consumers */
    int has_stream;
    queue_topic_stats stream; /* published, stored, oldest */
} fetched;

static void on_fetched(void *arg);

/* Where a stored message's age counts from (queue_msg_since_ms: its
 * headers), 0 if unknown. */
static int64_t published_at(queue *q, const char *stream, uint64_t seq)
{
    natsMsg *m = NULL;
    if (js_GetMsg(&m, q->js, stream, seq, NULL, NULL) != NATS_OK) return 0;
    const char *v = NULL;
    queue_attrs a;
    queue_msg qm = {.attrs = jsqueue__msg_attrs(m, &a)};
    qm.published_ms =
        natsMsgHeader_Get(m, "Spate-Published", &v) == NATS_OK && v ? strtoll(v, NULL, 10) : 0;
    int64_t ms = qm.published_ms ? queue_msg_since_ms(&qm) : 0;
    natsMsg_Destroy(m);
    return ms;
}

/* Puller thread: the figures of the subscription's consumers, added up. */
static int consumer_stats(queue_sub *s, queue_sub_stats *out)
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

static void post_fetched(queue_sub *s, fetched *f)
{
    if (f->list.Count || f->has_info || f->has_stream) {
        s->posts++;
        cluster_post(s->q->c, on_fetched, f);
    } else {
        natsMsgList_Destroy(&f->list);
        free(f);
    }
}

/* Puller thread: whether a delivery of a part that gives one message at a
 * time is no longer the consumer's latest (consumer sequence cseq): then
 * its AckWait ran out while it waited (its node stopped, or a reply that
 * TCP brought late after a short cut) and the message went to another
 * node, which may have run it and the key's next ones since. Run here, it
 * would run beside them, and out of order. Unknown (no leader to ask):
 * taken as given again; it comes back after its AckWait. *created_ns: the
 * stream's creation (skipped.c), asked for again when the consumer's
 * creation changes (a topic made again; or only another server's account
 * of it). */
static int given_again(const fetched *f, uint64_t cseq, uint64_t *latest, int64_t *created_ns)
{
    struct part *pt = f->pt;
    jsConsumerInfo *ci = NULL;
    natsStatus st =
        js_GetConsumerInfo(&ci, f->sub->q->js, f->sub->topic->stream, pt->durable, NULL, NULL);
    if (st == NATS_OK && (!pt->stream_ns || ci->Created != pt->consumer_ns)) {
        jsStreamInfo *si = NULL;
        st = js_GetStreamInfo(&si, f->sub->q->js, f->sub->topic->stream, NULL, NULL);
        if (st == NATS_OK) {
            pt->stream_ns = si->Created;
            pt->consumer_ns = ci->Created;
            jsStreamInfo_Destroy(si);
        }
    }
    if (st != NATS_OK) {
        log_debug("cluster: consumer info of %s: %s", pt->durable, natsStatus_GetText(st));
        if (ci) jsConsumerInfo_Destroy(ci);
        *latest = 0;
        return 1;
    }
    *latest = ci->Delivered.Consumer;
    *created_ns = pt->stream_ns;
    jsConsumerInfo_Destroy(ci);
    return *latest > cseq;
}

/* A message's Spate-Published header (ms), 0 without one. */
static long long published_ms(natsMsg *m)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, "Spate-Published", &v) == NATS_OK && v ? strtoll(v, NULL, 10) : 0;
}

/* Puller thread: an ordered part's delivery i against the part's mark
 * (skipped.c): at or below it, settled before (its ack lost); above it,
 * the part's messages JetStream skipped between them are published again
 * first. 0: unknown (no answer): the delivery waits. */
static int check_mark(fetched *f, int i)
{
    queue *q = f->sub->q;
    char key[KV_KEY_CAP];
    jmark mk;
    jsqueue__mark_key(key, sizeof key, f->sub->topic->stream, f->pt->durable);
    natsStatus st = jsqueue__mark_read(q, key, &mk);
    if (st != NATS_OK) {
        log_debug("cluster: mark of %s: %s", key, natsStatus_GetText(st));
        return 0;
    }
    f->meta[i].mark_rev = mk.rev;
    if (!jsqueue__mark_is_of(&mk, f->meta[i].created_ns)) { /* none of this stream's: 0 */
        int64_t since = jsqueue__unmarked_since_ns(q);
        return since >= 0 &&
               jsqueue__replay_skipped(q, f->sub->topic->stream, f->pt, 0, f->meta[i].seq, since,
                                       f->meta[i].created_ns, mk.rev);
    }
    if (f->meta[i].seq <= mk.seq) {
        f->meta[i].settled = "+ACK";
        return 1;
    }
    return jsqueue__replay_skipped(q, f->sub->topic->stream, f->pt, mk.seq, f->meta[i].seq, 0,
                                   f->meta[i].created_ns, mk.rev);
}

/* Puller thread: where each fetched message sits, and how many of its
 * attempts failed. JetStream's delivery count also counts the times a node
 * handed it back without running it (no room after all, a trigger going,
 * a node stopping or cut off), and waiting for capacity must never cost an
 * attempt: failures are recorded in a bucket of their own, read only for a
 * message delivered before. */
static void read_meta(fetched *f)
{
    for (int i = 0; i < f->list.Count && i < SPATE_JS_FETCH_MAX; i++) {
        jsMsgMetaData *meta = NULL;
        f->meta[i].seq = 0;
        f->meta[i].failed = 0;
        f->meta[i].unknown = 0;
        f->meta[i].settled = NULL;
        f->meta[i].given_again = 0;
        f->meta[i].created_ns = 0;
        f->meta[i].mark_rev = 0;
        if (natsMsg_GetMetaData(&meta, f->list.Msgs[i]) != NATS_OK) continue;
        f->meta[i].seq = meta->Sequence.Stream;
        f->meta[i].stored_ns = meta->Timestamp;
        uint64_t delivered = meta->NumDelivered, cseq = meta->Sequence.Consumer, latest = 0;
        jsMsgMetaData_Destroy(meta);
        if (f->pt->one_at_a_time && given_again(f, cseq, &latest, &f->meta[i].created_ns)) {
            f->meta[i].given_again = 1;
            log_info("cluster: %s seq=%" PRIu64 " delivery %" PRIu64 " (consumer %s seq %" PRIu64
                     ") came after the consumer's next (%" PRIu64 "%s): not run",
                     f->sub->topic->name, f->meta[i].seq, delivered, f->pt->durable, cseq, latest,
                     latest ? "" : ", unknown");
            continue;
        }
        if (f->pt->one_at_a_time && !check_mark(f, i)) {
            /* Unknown: waits, handed back, as for an unknown count below. */
            f->meta[i].unknown = 1;
            natsMsg_NakWithDelay(f->list.Msgs[i], SPATE_JS_SETTLE_RETRY_MS * 4, NULL);
            continue;
        }
        if (delivered <= 1 || f->meta[i].settled) continue;
        char key[KV_KEY_CAP];
        jsqueue__attempts_key(key, sizeof key, f->sub, f->pt, f->meta[i].seq);
        kvEntry *e = NULL;
        natsStatus st = kvStore_Get(&e, cluster_attempts(f->sub->q->c), key);
        if (st == NATS_OK) {
            char v[48];
            int n = kvEntry_ValueLen(e);
            if (n > 0 && n < (int)sizeof v) {
                memcpy(v, kvEntry_Value(e), (size_t)n);
                v[n] = '\0';
                /* Of this very message only ("<failures> <published ms>",
                 * "+ACK <stored ns>", "+TERM <stored ns>"): a topic made
                 * again reuses its seqs, and an old message's record is
                 * none of the new one's. A count without a time is from a
                 * node before times were written: counted. */
                const char *sp = strchr(v, ' ');
                long long when = sp ? strtoll(sp + 1, NULL, 10) : 0;
                if (v[0] != '+' && (!sp || when == published_ms(f->list.Msgs[i])))
                    f->meta[i].failed = (uint32_t)strtoul(v, NULL, 10);
                if (v[0] == '+' && sp && when == f->meta[i].stored_ns)
                    f->meta[i].settled = strncmp(v, "+TERM", 5) == 0 ? "+TERM" : "+ACK";
            }
            kvEntry_Destroy(e);
        } else if (st != NATS_NOT_FOUND) {
            /* Unknown (the bucket's leader is being elected): counted as
             * none, an attempt would run again. It waits instead. */
            log_debug("cluster: attempts of %s: %s", key, natsStatus_GetText(st));
            f->meta[i].unknown = 1;
            natsMsg_NakWithDelay(f->list.Msgs[i], SPATE_JS_SETTLE_RETRY_MS * 4, NULL);
        }
    }
}

/* A puller per consumer: fetches as much as the trigger has room for,
 * waiting up to a second for messages (an ordered part gives one at a time,
 * so it asks for one); the first also refreshes the figures every second. */
void *jsqueue__puller_main(void *arg)
{
    struct part *pt = arg;
    queue_sub *s = pt->sub;
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
            int batch =
                pt->one_at_a_time ? 1 : (want > SPATE_JS_FETCH_MAX ? SPATE_JS_FETCH_MAX : want);
            f->asked_ms = clock_mono_ns() / 1000000;
            /* What a fetch ended before (its request expires at the server
             * as nats.c gives up; late under load), or a request that
             * waited in the socket while the node was cut off, delivered,
             * waits in nats.c's queue, and the next fetch takes it first:
             * maybe after seconds without room, its AckWait running.
             * Stamped with asked_ms, it could run after JetStream gave it
             * to another node. The count holds status messages too (a 408
             * that came late): then a fresh message may be stamped old,
             * dropped, and come back after its AckWait. An ordered part's
             * delivery is checked against its consumer's latest instead
             * (given_again), exactly: none is stamped so. */
            int queued = 0;
            if (!pt->one_at_a_time) natsSubscription_GetPending(pt->pull, &queued, NULL);
            f->queued = queued;
            f->queued_ms = queued ? pt->queue_floor_ms : f->asked_ms;
            natsStatus st =
                natsSubscription_Fetch(&f->list, pt->pull, batch, SPATE_JS_FETCH_WAIT_MS, NULL);
            /* Emptied: what comes later came after now. Otherwise what is
             * left may be as old as before. */
            int left = 0;
            natsSubscription_GetPending(pt->pull, &left, NULL);
            if (!left)
                pt->queue_floor_ms = clock_mono_ns() / 1000000;
            else if (!queued)
                pt->queue_floor_ms = f->asked_ms;
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
                usleep(SPATE_JS_FETCH_RETRY_MS * 1000); /* not a hot loop on a failing server */
            }
        } else {
            /* Until the trigger has room again (jsqueue__lease signals). */
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
        if (first && now - last_stats >= SPATE_JS_STATS_MS && cluster_connected(s->q->c)) {
            last_stats = now;
            fetched *f = calloc(1, sizeof *f);
            if (f) {
                f->sub = s;
                f->has_info = consumer_stats(s, &f->info);
                f->has_stream = jsqueue__stream_stats(s->q, s->topic->stream, &f->stream) == 0;
                post_fetched(s, f);
            }
        }
    }
    return NULL;
}

static void on_fetched(void *arg)
{
    fetched *f = arg;
    queue_sub *s = f->sub;
    s->posts--;
    if (s->removed) {
        /* Gone meanwhile: what it fetched goes back to the others at once. */
        for (int i = 0; i < f->list.Count; i++) natsMsg_Nak(f->list.Msgs[i], NULL);
        natsMsgList_Destroy(&f->list);
        free(f);
        jsqueue__sub_maybe_free(s);
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
        if (f->meta[i].unknown) { /* NAKed by read_meta */
            natsMsg_Destroy(nm);
            continue;
        }
        if (f->meta[i].given_again) { /* another node's now: neither run nor settled */
            natsMsg_Destroy(nm);
            continue;
        }
        if (f->meta[i].settled) { /* ran (or went to the dead letters) already */
            log_info("cluster: %s seq=%" PRIu64 " (consumer %s) settled before (%s lost): not run "
                     "again",
                     s->topic->name, f->meta[i].seq, f->pt->durable, f->meta[i].settled);
            jsqueue__confirm(s->q, nm, f->meta[i].settled);
            natsMsg_Destroy(nm);
            continue;
        }
        jlease *jl = calloc(1, sizeof *jl);
        if (!jl || s->removed || s->q->closing) {
            free(jl);
            natsMsg_Nak(nm, NULL); /* back for another node */
            natsMsg_Destroy(nm);
            continue;
        }
        jl->nm = nm;
        jl->pt = f->pt;
        jl->asked_ms = i < f->queued ? f->queued_ms : f->asked_ms;
        jl->l.msg = &jl->m;
        jl->l.sub = s;
        jl->failed = f->meta[i].failed;
        jl->l.attempt = jl->failed + 1;
        jl->m.seq = f->meta[i].seq;
        jl->stored_ns = f->meta[i].stored_ns;
        jl->created_ns = f->meta[i].created_ns;
        jl->mark_rev = f->meta[i].mark_rev;
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
        jl->m.attrs = jsqueue__msg_attrs(nm, &jl->attrs);
        list_push_back(&s->ready, &jl->link);
    }
    natsMsgList_Destroy(&f->list);
    free(f);
    /* Also what waited while the node was cut off from NATS: the figures
     * come every second, and only while it is connected. */
    if (!list_empty(&s->ready) && s->q->ev.available) s->q->ev.available(s, s->q->ev.data);
}

queue_lease *jsqueue__lease(queue_sub *s)
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
    /* Fetched too long ago (the node was stopped, or cut off, meanwhile):
     * its AckWait may be over, the message another node's. Dropped, not
     * NAKed: a NAK would take it from that node too. JetStream delivers it
     * again after its AckWait. */
    uint64_t age = clock_mono_ns() / 1000000 - jl->asked_ms;
    if (age > SPATE_JS_DELIVERY_FRESH_MS) {
        log_info("cluster: %s seq=%" PRIu64 " (consumer %s) fetched %" PRIu64 " ms ago: not run "
                 "(another node's after its AckWait)",
                 s->topic->name, jl->m.seq, jl->pt->durable, age);
        natsMsg_Destroy(jl->nm);
        free(jl);
        return jsqueue__lease(s);
    }
    s->leases++;
    return &jl->l;
}
