/*
 * jsqueue/skipped.c - an ordered part's message that JetStream delivered and
 * then forgot, found and published again so that it runs.
 *
 * nats-server before 2.11 (Debian 12 has 2.9.10) can skip a message of a
 * replicated consumer for good: it was delivered, the replicas did not agree
 * on that delivery (a server cut off or stopped), the consumer's leader
 * stepped down and was elected again, and its next sequence stays past the
 * message, which is neither pending nor ever delivered again (upstream pull
 * requests 6469 and 6566). The cluster's nemesis lost one acknowledged
 * ordered message that way.
 *
 * JetStream's own figures cannot tell: its ack floor lags after the same
 * leader changes (a repair that trusted it published 12,967 settled messages
 * again in a 12-minute nemesis, session 45). So each ordered part keeps its
 * own mark in the attempts bucket, "<stream>.<consumer>.settled" =
 * "<seq> <stream created ns>": the highest stream sequence of the part
 * that a node has settled, written before its ack or term is sent (and only
 * ever raised: two nodes may settle the same part's messages a moment
 * apart). An ordered part holds one message at a time, so when it delivers
 * a message, every earlier one of its subject has been settled, or was
 * skipped: a message of the subject between the mark and the delivery was
 * skipped. It is published again (same subject, data and headers; its
 * Nats-Msg-Id names the original, so two nodes finding it store it once
 * within JetStream's duplicate window) and runs after the message that
 * revealed it: late for its key, not lost. A delivery at or below the mark
 * was settled before (its ack lost with a leader) and is settled again, not
 * run. The stream's creation time in the mark keeps a topic deleted and made
 * again (numbered from 1) from reading an older stream's mark; not the
 * consumer's, which nats-server 2.9.10 does not keep: a server restarted
 * since reports the time it made its own copy, a few ms off, and while it
 * led the consumer no mark was the part's (the skip it is there for comes
 * with just such a leader change). A trigger removed and added again on
 * the same stream reads its predecessor's mark: what that settled, still
 * stored, is settled again unrun. The trimmer (trim.c) keeps a part's messages past
 * its mark, so that a skipped one is still there when the key's next
 * message reveals it.
 */
#include "cluster/jsqueue/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

void jsqueue__mark_key(char *out, size_t cap, const char *stream, const char *consumer)
{
    snprintf(out, cap, "%s.%s.settled", stream, consumer);
    for (char *p = out; *p; p++)
        if (*p == '@') *p = '=';
}

int jsqueue__mark_is_of(const jmark *mk, int64_t stream_ns)
{
    /* Its very creation, which every server reports alike. Not "at or
     * after it": a topic deleted and made again through a meta leader
     * whose clock is behind the one that made the deleted stream has the
     * earlier creation, and the deleted stream's mark counted as its own
     * settled its first messages unrun (test_a_topic_made_again_is_not_
     * settled_by_its_predecessors_mark). */
    return mk->rev && mk->created_ns == stream_ns;
}

/* Whether the stream a mark key names ("<stream>.<consumer>.settled") is
 * still the one created at created_ns: 1 yes, 0 no (deleted, or made
 * again), -1 unknown (no answer). */
static int stream_still(queue *q, const char *key, int64_t created_ns)
{
    char stream[SPATE_TOPIC_NAME_MAX * 3 + 16];
    const char *dot = strchr(key, '.');
    if (!dot || (size_t)(dot - key) >= sizeof stream) return -1;
    memcpy(stream, key, (size_t)(dot - key));
    stream[dot - key] = '\0';
    jsStreamInfo *si = NULL;
    natsStatus st = js_GetStreamInfo(&si, q->js, stream, NULL, NULL);
    if (st == NATS_NOT_FOUND) return 0;
    if (st != NATS_OK) return -1;
    int same = si->Created == created_ns;
    jsStreamInfo_Destroy(si);
    return same;
}

natsStatus jsqueue__mark_read(queue *q, const char *key, jmark *out)
{
    memset(out, 0, sizeof *out);
    kvEntry *e = NULL;
    natsStatus st = kvStore_Get(&e, cluster_attempts(q->c), key);
    if (st == NATS_NOT_FOUND) return NATS_OK;
    if (st != NATS_OK) return st;
    out->rev = kvEntry_Revision(e);
    char v[64];
    int n = kvEntry_ValueLen(e);
    if (n > 0 && n < (int)sizeof v) {
        memcpy(v, kvEntry_Value(e), (size_t)n);
        v[n] = '\0';
        char *end = NULL;
        out->seq = strtoull(v, &end, 10);
        out->created_ns = end && *end == ' ' ? strtoll(end + 1, NULL, 10) : 0;
    }
    kvEntry_Destroy(e);
    return NATS_OK;
}

natsStatus jsqueue__mark_raise(queue *q, const char *key, uint64_t seq, int64_t created_ns,
                               uint64_t rev)
{
    kvStore *kv = cluster_attempts(q->c);
    char v[64];
    snprintf(v, sizeof v, "%" PRIu64 " %lld", seq, (long long)created_ns);
    natsStatus st = NATS_ERR;
    for (int tries = 0; tries < 4; tries++) {
        st = rev ? kvStore_UpdateString(NULL, kv, key, v, rev)
                 : kvStore_CreateString(NULL, kv, key, v);
        if (st == NATS_OK) return st;
        /* Written meanwhile by another node (or a failure: then the record
         * is as it was read). */
        jmark now;
        if (jsqueue__mark_read(q, key, &now) != NATS_OK || now.rev == rev) return st;
        if (jsqueue__mark_is_of(&now, created_ns)) {
            if (now.seq >= seq) return NATS_OK; /* ahead */
        } else if (now.rev) {
            /* Another creation's: an earlier stream's, or that of the
             * stream made again since ours was deleted (a message that
             * ran while its topic was deleted and made again, acked
             * after). Overwritten by ours, the new stream's parts had no
             * mark, and took what they had settled for skipped messages:
             * run again (test_a_deleted_topics_late_ack_leaves_the_new_
             * topics_mark). Ours gone, there is nothing to mark. */
            int still = stream_still(q, key, created_ns);
            if (still < 0) return st;
            if (!still) return NATS_OK;
        }
        rev = now.rev;
    }
    return st;
}

/* Message seq of stream, as it was published: subject, data and headers;
 * *stored_ns when JetStream stored it. */
static natsMsg *copy_of(queue *q, const char *stream, uint64_t seq, int64_t *stored_ns)
{
    natsMsg *m = NULL, *out = NULL;
    if (js_GetMsg(&m, q->js, stream, seq, NULL, NULL) != NATS_OK) return NULL;
    *stored_ns = natsMsg_GetTime(m);
    if (natsMsg_Create(&out, natsMsg_GetSubject(m), NULL, natsMsg_GetData(m),
                       natsMsg_GetDataLength(m)) == NATS_OK) {
        const char **keys = NULL;
        int nkeys = 0;
        if (natsMsgHeader_Keys(m, &keys, &nkeys) == NATS_OK) {
            for (int i = 0; i < nkeys; i++) {
                const char **values = NULL;
                int nvalues = 0;
                if (strcmp(keys[i], "Nats-Msg-Id") == 0 ||
                    natsMsgHeader_Values(m, keys[i], &values, &nvalues) != NATS_OK)
                    continue;
                for (int j = 0; j < nvalues; j++) natsMsgHeader_Add(out, keys[i], values[j]);
                free((void *)values);
            }
            free((void *)keys);
        }
    }
    natsMsg_Destroy(m);
    return out;
}

/* Whether the attempts bucket says message seq (stored at stored_ns) was
 * settled: the mark is only ever behind a settlement when its write failed
 * (logged), and such a message must not run again. */
static int settled_record(queue *q, const struct part *pt, uint64_t seq, int64_t stored_ns)
{
    char key[KV_KEY_CAP];
    jsqueue__attempts_key(key, sizeof key, pt->sub, pt, seq);
    kvEntry *e = NULL;
    if (kvStore_Get(&e, cluster_attempts(q->c), key) != NATS_OK) return 0;
    const char *v = kvEntry_ValueString(e);
    const char *sp = v ? strchr(v, ' ') : NULL;
    int settled = v && v[0] == '+' && sp && strtoll(sp + 1, NULL, 10) == stored_ns;
    kvEntry_Destroy(e);
    return settled;
}

/* The attempts bucket's record of when the cluster's nodes began to keep
 * marks: "<ns>", made by the first node that wanted it, and written again
 * (the same) once a day so that the bucket's TTL does not take it. */
#define MARKS_SINCE_KEY "marks-since"
#define DAY_NS (24LL * 3600 * 1000000000)

/* The record's time (made now if there is none), 0 without an answer. */
static int64_t marks_since(queue *q)
{
    kvStore *kv = cluster_attempts(q->c);
    for (int tries = 0; tries < 2; tries++) {
        kvEntry *e = NULL;
        natsStatus st = kvStore_Get(&e, kv, MARKS_SINCE_KEY);
        if (st == NATS_OK) {
            const char *v = kvEntry_ValueString(e);
            int64_t ns = v ? strtoll(v, NULL, 10) : 0;
            kvEntry_Destroy(e);
            return ns > 0 ? ns : clock_now_ms() * 1000000; /* unreadable: from now */
        }
        if (st != NATS_NOT_FOUND) return 0;
        char v[24];
        int64_t now = clock_now_ms() * 1000000;
        snprintf(v, sizeof v, "%lld", (long long)now);
        if (kvStore_CreateString(NULL, kv, MARKS_SINCE_KEY, v) == NATS_OK) return now;
        /* Made meanwhile by another node: read. */
    }
    return 0;
}

int64_t jsqueue__unmarked_since_ns(queue *q)
{
    int64_t since = q->marks_since_ns;
    if (!since) {
        since = marks_since(q);
        if (!since) return -1;
        q->marks_since_ns = since;
    }
    /* An hour's margin for the clocks of the servers that store messages
     * and expire the bucket's records. */
    int64_t ttl = clock_now_ms() * 1000000 - SPATE_CLUSTER_ATTEMPTS_TTL_NS + 3600LL * 1000000000;
    return since > ttl ? since : ttl;
}

void jsqueue__keep_marks_since(queue *q)
{
    int64_t since = q->marks_since_ns, now = clock_now_ms() * 1000000;
    if (!since || now - q->marks_since_kept_ns < DAY_NS) return;
    char v[24];
    snprintf(v, sizeof v, "%lld", (long long)since);
    if (kvStore_PutString(NULL, cluster_attempts(q->c), MARKS_SINCE_KEY, v) == NATS_OK)
        q->marks_since_kept_ns = now;
}

/* Publishes again message skipped of pt's subject, unless it was stored
 * before since_ns; 0 if that failed. */
static int publish_again(queue *q, const char *stream, const struct part *pt, uint64_t skipped,
                         uint64_t seq, int64_t since_ns)
{
    int64_t stored_ns = 0;
    natsMsg *m = copy_of(q, stream, skipped, &stored_ns);
    if (!m) return 0;
    if (stored_ns < since_ns) { /* perhaps settled under a mark the bucket's TTL took */
        natsMsg_Destroy(m);
        return 1;
    }
    if (settled_record(q, pt, skipped, stored_ns)) {
        log_warn("cluster: %s seq=%" PRIu64 " (consumer %s) lies past its part's mark but was "
                 "settled (the mark's write had failed): not run again",
                 pt->sub->topic->name, skipped, pt->durable);
        natsMsg_Destroy(m);
        return 1;
    }
    char id[SPATE_TOPIC_NAME_MAX * 3 + 64], was[24];
    snprintf(id, sizeof id, "spate-skipped.%s.%" PRIu64 ".%lld", stream, skipped,
             (long long)stored_ns);
    snprintf(was, sizeof was, "%" PRIu64, skipped);
    natsMsgHeader_Set(m, "Nats-Msg-Id", id);
    natsMsgHeader_Set(m, "Spate-Skipped", was);
    const char *key = NULL;
    natsMsgHeader_Get(m, "Spate-Key", &key);
    char key_copy[SPATE_KEY_MAX + 1];
    snprintf(key_copy, sizeof key_copy, "%s", key ? key : "");
    jsPubAck *pa = NULL;
    natsStatus st = js_PublishMsg(&pa, q->js, m, NULL, NULL);
    if (st == NATS_OK) {
        log_warn("cluster: %s seq=%" PRIu64 " (consumer %s, key %s) was skipped by JetStream "
                 "(delivered, then forgotten by its consumer: nats-server before 2.11): "
                 "published again as seq=%" PRIu64 "%s, after seq=%" PRIu64 " of its key",
                 pt->sub->topic->name, skipped, pt->durable, key_copy, pa->Sequence,
                 pa->Duplicate ? " (by another node)" : "", seq);
        jsPubAck_Destroy(pa);
    } else {
        log_error("cluster: %s seq=%" PRIu64 " (consumer %s, key %s) was skipped by JetStream "
                  "and cannot be published again: %s (seq=%" PRIu64 " waits, and it is tried "
                  "again)",
                  pt->sub->topic->name, skipped, pt->durable, key_copy, cluster_nats_why(st), seq);
    }
    natsMsg_Destroy(m);
    return st == NATS_OK;
}

int jsqueue__replay_skipped(queue *q, const char *stream, const struct part *pt, uint64_t mark,
                            uint64_t seq, int64_t since_ns, int64_t created_ns, uint64_t rev)
{
    char key[KV_KEY_CAP];
    jsqueue__mark_key(key, sizeof key, stream, pt->durable);
    /* Counted before any is published: the look gave up at the ninth
     * after it had published the first eight again, each of which ran a
     * second time (test_a_mark_far_behind_publishes_nothing_again). */
    uint64_t found[SPATE_JS_SKIPPED_MAX];
    int n = 0;
    for (uint64_t after = mark; after + 1 < seq;) {
        uint64_t skipped = 0;
        if (jsqueue__next_of_subject(q, stream, pt->filter, after + 1, &skipped) != NATS_OK)
            return 0;
        if (!skipped || skipped >= seq) break;
        if (n == SPATE_JS_SKIPPED_MAX) {
            /* JetStream forgets one delivery at a leader change: this many
             * means the mark is wrong (nodes without marks settled them,
             * say, in a rolling upgrade), and publishing them would run
             * settled messages again. */
            log_error("cluster: %s: more than %d messages of consumer %s between its mark "
                      "(seq=%" PRIu64 ") and its delivery seq=%" PRIu64 ": not published again",
                      pt->sub->topic->name, SPATE_JS_SKIPPED_MAX, pt->durable, mark, seq);
            return 1;
        }
        found[n++] = skipped;
        after = skipped;
    }
    for (int i = 0; i < n; i++) {
        if (!publish_again(q, stream, pt, found[i], seq, since_ns)) return 0;
        /* Its copy runs: the part's mark goes past it, or each delivery
         * of seq (retried after failures) would publish it again, stored
         * once only within JetStream's duplicate window. Not raised, that
         * window is all there is. */
        natsStatus st = jsqueue__mark_raise(q, key, found[i], created_ns, rev);
        if (st != NATS_OK)
            log_debug("cluster: mark %s not raised to seq=%" PRIu64 ": %s", key, found[i],
                      natsStatus_GetText(st));
    }
    return 1;
}

natsStatus jsqueue__next_unsettled(queue *q, const char *stream, const char *subject, uint64_t seq,
                                   int64_t since_ns, uint64_t *found)
{
    for (int n = 0;; n++) {
        natsStatus st = jsqueue__next_of_subject(q, stream, subject, seq, found);
        if (st != NATS_OK || !*found || !since_ns) return st;
        natsMsg *m = NULL;
        st = js_GetMsg(&m, q->js, stream, *found, NULL, NULL);
        if (st == NATS_NOT_FOUND) { /* deleted meanwhile */
            seq = *found + 1;
            continue;
        }
        if (st != NATS_OK) return st;
        int64_t stored_ns = natsMsg_GetTime(m);
        natsMsg_Destroy(m);
        if (stored_ns >= since_ns) return NATS_OK;
        if (n == SPATE_JS_SKIPPED_MAX) { /* as replay_skipped gives up */
            *found = 0;
            return NATS_OK;
        }
        seq = *found + 1;
    }
}
