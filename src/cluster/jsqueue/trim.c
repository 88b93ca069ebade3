/*
 * jsqueue/trim.c - a thread of its own that every few seconds drops from each
 * topic's stream what every trigger of the topic has settled, as a node's
 * store deletes what it has settled (JetStream's limits retention alone
 * would keep every message for ever).
 *
 * Message by message (JetStream's MSG.DELETE, pipelined), never by a purge up
 * to a sequence: nats-server before 2.9.18 (Debian 12 has 2.9.10; fixed by
 * its commit dee5324) replays a purge from its raft log at a restart as a
 * purge of everything up to the stream's last message at the time of the
 * purge, so a restarted server lost its copy of the messages no trigger had
 * settled yet, and once it led the stream or a consumer they were never
 * delivered (test_cluster.py's test_a_restarted_nats_server_keeps_what_
 * triggers_have_not_settled). The cluster's nemesis lost 2,552 of 44,319
 * acknowledged messages of its ordered trigger in 300 s through it; with
 * trimming off, or by deletions, none. A deletion is replayed as itself.
 */
#include "cluster/jsqueue/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

uint64_t jsqueue__trim_keep(jsConsumerInfo *const *list, int n)
{
    uint64_t keep = UINT64_MAX;
    for (int i = 0; i < n; i++) {
        const jsConsumerInfo *ci = list[i];
        uint64_t from = ci->NumAckPending == 0 && ci->Delivered.Stream > ci->AckFloor.Stream
                            ? ci->Delivered.Stream + 1
                            : ci->AckFloor.Stream + 1;
        if (from < keep) keep = from;
    }
    return n > 0 ? keep : 0;
}

static int contains(const char *s, int len, const char *what)
{
    size_t n = strlen(what);
    for (int i = 0; s && len >= 0 && (size_t)len >= n && i <= len - (int)n; i++)
        if (memcmp(s + i, what, n) == 0) return 1;
    return 0;
}

/* Deletes [from, to) from stream, SPATE_JS_TRIM_WINDOW requests in flight at
 * a time; stops early on a stop, an answer that does not come, or a failed
 * send. Each answer counts as done: "no message found" is another node's
 * trim of the same. Returns the messages this call deleted; *failed the
 * other answers, err the first of them. */
static uint64_t delete_range(queue *q, const char *stream, uint64_t from, uint64_t to,
                             uint64_t *failed, char *err, size_t cap)
{
    natsConnection *nc = cluster_nc(q->c);
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    char subject[SPATE_TOPIC_NAME_MAX * 3 + 64], wild[128];
    uint64_t deleted = 0, next = from;
    int out = 0;
    *failed = 0;
    snprintf(subject, sizeof subject, "$JS.API.STREAM.MSG.DELETE.%s", stream);
    if (natsInbox_Create(&inbox) != NATS_OK) return 0;
    snprintf(wild, sizeof wild, "%s.*", (const char *)inbox);
    if (natsConnection_SubscribeSync(&sub, nc, wild) != NATS_OK) {
        natsInbox_Destroy(inbox);
        return 0;
    }
    while ((next < to || out > 0) && !q->trim_stop) {
        while (next < to && out < SPATE_JS_TRIM_WINDOW) {
            char reply[160], body[64];
            snprintf(reply, sizeof reply, "%s.%" PRIu64, (const char *)inbox, next);
            int n = snprintf(body, sizeof body, "{\"seq\":%" PRIu64 ",\"no_erase\":true}", next);
            if (natsConnection_PublishRequest(nc, subject, reply, body, n) != NATS_OK) {
                to = next; /* the rest at the next round */
                break;
            }
            next++;
            out++;
        }
        if (out == 0) break;
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, SPATE_JS_TRIM_WAIT_MS) != NATS_OK) break;
        out--;
        const char *d = natsMsg_GetData(m);
        int len = natsMsg_GetDataLength(m);
        if (contains(d, len, "\"success\":true")) {
            deleted++;
        } else {
            if (!*failed) snprintf(err, cap, "%.*s", len > 200 ? 200 : len, d ? d : "");
            (*failed)++;
        }
        natsMsg_Destroy(m);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    return deleted;
}

/* An ordered part's consumer (MaxAckPending 1) that has nothing pending has
 * settled all it delivered, by JetStream's figures, and also when JetStream
 * forgot a delivery (skipped.c): that message must stay until the key's next
 * one reveals it. So keep goes down to the first message of the part past
 * its mark, if there is one below keep. 0: unknown (no answer): no trim. */
static int keep_for_marks(queue *q, const jsStreamInfo *si, jsConsumerInfo *const *list, int n,
                          uint64_t *keep)
{
    const char *stream = si->Config->Name;
    for (int i = 0; i < n; i++) {
        const jsConsumerInfo *ci = list[i];
        if (!ci->Name || !ci->Config || ci->Config->MaxAckPending != 1 ||
            !ci->Config->FilterSubject)
            continue;
        char key[KV_KEY_CAP];
        jmark mk;
        jsqueue__mark_key(key, sizeof key, stream, ci->Name);
        if (jsqueue__mark_read(q, key, &mk) != NATS_OK) return 0;
        uint64_t from = mk.seq + 1;
        int64_t since_ns = 0;
        if (!jsqueue__mark_is_of(&mk, si->Created)) {
            /* None of this stream's (skipped.c): 0, for what was stored
             * within the bucket's TTL; nothing delivered, nothing skipped. */
            if (ci->Delivered.Consumer == 0) continue;
            from = 1;
            if ((since_ns = jsqueue__unmarked_since_ns(q)) < 0) return 0;
        }
        if (from >= *keep) continue;
        uint64_t next = 0;
        if (jsqueue__next_unsettled(q, stream, ci->Config->FilterSubject, from, since_ns, &next) !=
            NATS_OK)
            return 0;
        if (next && next < *keep) *keep = next;
    }
    return 1;
}

/* A topic's stream keeps what some trigger has not yet settled, and the
 * rest goes. A stream no trigger reads (a dead-letter topic, a topic without
 * triggers) keeps everything. Each trim is logged (debug) with every
 * consumer's figures. */
static void trim_stream(queue *q, const jsStreamInfo *si)
{
    const char *name = si->Config->Name;
    jsConsumerInfoList *cl = NULL;
    if (js_Consumers(&cl, q->js, name, NULL, NULL) != NATS_OK || !cl) return;
    /* While a consumer's leader does not answer (a nats-server stopped,
     * restarting, electing), JetStream lists the others only ("Did not
     * receive all consumer info results"): a trim over them would remove
     * what the missing one has not delivered. Only over every consumer the
     * stream has. */
    if ((uint64_t)cl->Count < (uint64_t)si->State.Consumers) {
        log_debug("cluster: %s: %d of %d consumers answered; not trimmed", name, cl->Count,
                  (int)si->State.Consumers);
        jsConsumerInfoList_Destroy(cl);
        return;
    }
    uint64_t first = si->State.FirstSeq, keep = jsqueue__trim_keep(cl->List, cl->Count);
    if (keep > first + SPATE_JS_TRIM_MAX) keep = first + SPATE_JS_TRIM_MAX; /* the rest next time */
    if (keep <= first || !keep_for_marks(q, si, cl->List, cl->Count, &keep) || keep <= first) {
        jsConsumerInfoList_Destroy(cl);
        return;
    }
    if (log_level_min <= LOGL_DEBUG)
        for (int i = 0; i < cl->Count; i++) {
            const jsConsumerInfo *ci = cl->List[i];
            log_debug("cluster: trim %s: consumer %s delivered %" PRIu64 " ack_floor %" PRIu64
                      " ack_pending %" PRId64 " pending %" PRIu64,
                      name, ci->Name ? ci->Name : "?", ci->Delivered.Stream, ci->AckFloor.Stream,
                      ci->NumAckPending, ci->NumPending);
        }
    jsConsumerInfoList_Destroy(cl);
    uint64_t failed = 0;
    char err[208] = "";
    uint64_t deleted = delete_range(q, name, first, keep, &failed, err, sizeof err);
    log_debug("cluster: trim %s below %" PRIu64 " (first %" PRIu64 ", last %" PRIu64 "): %" PRIu64
              " deleted, %" PRIu64 " not%s%s",
              name, keep, first, si->State.LastSeq, deleted, failed, failed ? ": " : "", err);
}

static void trim_all(queue *q)
{
    jsStreamInfoList *list = NULL;
    if (js_Streams(&list, q->js, NULL, NULL) != NATS_OK || !list) return;
    for (int i = 0; i < list->Count && !q->trim_stop; i++) {
        const jsStreamInfo *si = list->List[i];
        if (si->Config && si->Config->Name && strncmp(si->Config->Name, "SPATE_T_", 8) == 0 &&
            si->State.Msgs && si->State.Consumers)
            trim_stream(q, si);
    }
    jsStreamInfoList_Destroy(list);
}

static void *trim_main(void *arg)
{
    queue *q = arg;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)q;
    pthread_mutex_lock(&q->trim_lock);
    while (!q->trim_stop) {
        /* Every SPATE_JS_TRIM_MS and a random part of a second: the nodes'
         * rounds spread, so one node's trim mostly finds nothing left. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long ms = SPATE_JS_TRIM_MS + rand_r(&seed) % 1000;
        until.tv_sec += ms / 1000;
        until.tv_nsec += (ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        while (!q->trim_stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&q->trim_wake, &q->trim_lock, &until);
        if (q->trim_stop) break;
        pthread_mutex_unlock(&q->trim_lock);
        if (cluster_connected(q->c)) {
            trim_all(q);
            jsqueue__keep_marks_since(q);
        }
        pthread_mutex_lock(&q->trim_lock);
    }
    pthread_mutex_unlock(&q->trim_lock);
    return NULL;
}

int jsqueue__trim_start(queue *q)
{
    pthread_mutex_init(&q->trim_lock, NULL);
    pthread_cond_init(&q->trim_wake, NULL);
    q->trim_stop = 0;
    q->trimming = pthread_create(&q->trimmer, NULL, trim_main, q) == 0;
    return q->trimming ? 0 : -1;
}

void jsqueue__trim_stop(queue *q)
{
    if (!q->trimming) return;
    pthread_mutex_lock(&q->trim_lock);
    q->trim_stop = 1;
    pthread_cond_broadcast(&q->trim_wake);
    pthread_mutex_unlock(&q->trim_lock);
    pthread_join(q->trimmer, NULL);
    q->trimming = 0;
    pthread_cond_destroy(&q->trim_wake);
    pthread_mutex_destroy(&q->trim_lock);
}
