/*
 * jsqueue/publish.c - publishing to a topic's stream, on the worker thread:
 * a batch as async publishes, answered once JetStream acknowledged every
 * message. Dead letters take the same path (settle.c).
 */
#include "cluster/jsqueue/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/log.h"

/* A message of a topic whose subjects begin with base: to its key's part
 * (ordered triggers keep one part in order), with its key and publish time
 * as headers. */
natsStatus jsqueue__topic_msg(natsMsg **m, const char *base, const queue_input *in,
                              const char *when)
{
    char subject[SPATE_TOPIC_NAME_MAX * 3 + 32];
    if (in->key) {
        snprintf(subject, sizeof subject, "%s.k%02u", base,
                 (unsigned)(hash_fnv1a(in->key, in->key_len) % SPATE_JS_KEY_PARTS));
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
    /* JetStream's own deduplication (the stream's Duplicates window): a
     * repeat is not stored, its acknowledgement names the first's seq. */
    if (in->dedup) natsMsgHeader_Set(*m, "Nats-Msg-Id", in->dedup);
    const queue_attrs *a = in->attrs;
    if (a) {
        /* Spate-Source is a dead letter's topic: the event source's name has
         * its own header. The headers' JSON has no line break (its control
         * characters are escaped), as a NATS header value must not. */
        char v[24];
        if (a->source) natsMsgHeader_Set(*m, "Spate-Event-Source", a->source);
        if (a->upstream_id) natsMsgHeader_Set(*m, "Spate-Upstream-Id", a->upstream_id);
        if (a->upstream_ts_ms) {
            snprintf(v, sizeof v, "%lld", (long long)a->upstream_ts_ms);
            natsMsgHeader_Set(*m, "Spate-Upstream-Ts", v);
        }
        if (a->headers) natsMsgHeader_Set(*m, "Spate-Upstream-Headers", a->headers);
        natsMsgHeader_Set(*m, "Spate-Redelivered", a->redelivered ? "1" : "0");
    }
    return NATS_OK;
}

static const char *header(natsMsg *m, const char *name)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, name, &v) == NATS_OK ? v : NULL;
}

const queue_attrs *jsqueue__msg_attrs(natsMsg *m, queue_attrs *out)
{
    const char *red = header(m, "Spate-Redelivered"); /* written whenever there are some */
    if (!red) return NULL;
    memset(out, 0, sizeof *out);
    out->redelivered = red[0] == '1';
    out->source = header(m, "Spate-Event-Source");
    out->upstream_id = header(m, "Spate-Upstream-Id");
    const char *ts = header(m, "Spate-Upstream-Ts");
    out->upstream_ts_ms = ts ? strtoll(ts, NULL, 10) : 0;
    out->headers = header(m, "Spate-Upstream-Headers");
    out->headers_len = out->headers ? (uint32_t)strlen(out->headers) : 0;
    return out;
}

/* Worker thread: js_PublishMsgAsync, and q knows that the JetStream context
 * has made its table of async publishes (until it has, nats.c 3.4's
 * js_PublishAsyncGetPendingList reads through a NULL pointer: a node's
 * first publish failing before it sent one, e.g. a dead letter while
 * JetStream elects a leader, crashed spated). */
natsStatus jsqueue__publish_async(queue *q, natsMsg **m)
{
    natsStatus s = js_PublishMsgAsync(q->js, m, NULL);
    if (s == NATS_OK) q->async_published = 1;
    return s;
}

/* Worker thread: until JetStream has answered every async publish since
 * cluster_acks_begin; an error unless it stored them all. */
natsStatus jsqueue__await_acks(queue *q, cluster_acks *a, char *err, size_t cap)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = SPATE_JS_PUBLISH_ACK_WAIT_MS;
    natsStatus s = js_PublishAsyncComplete(q->js, &po);
    natsMsgList failed = {0};
    if (q->async_published && js_PublishAsyncGetPendingList(&failed, q->js) == NATS_OK) {
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

/* Worker thread: the batch as async publishes, then JetStream's answers. */
static natsStatus publish_batch(pub_job *j, cluster_acks *acks)
{
    char when[24];
    snprintf(when, sizeof when, "%lld", (long long)clock_now_ms());
    cluster_acks_begin(j->q->c, acks);
    if (j->seqs) { /* what the publisher wants to know of each message */
        acks->msgs = j->msgs + j->first;
        acks->seqs = j->seqs + j->first;
        acks->n = j->count;
    }
    natsStatus s = NATS_OK;
    for (size_t i = j->first; s == NATS_OK && i < j->first + j->count; i++) {
        natsMsg *m = NULL;
        s = jsqueue__topic_msg(&m, j->subject, &j->in[i], when);
        if (s != NATS_OK) break;
        const queue_input *in = &j->in[i];
        if (j->source[0] || in->error) {
            char att[16];
            snprintf(att, sizeof att, "%u", in->error ? 0 : j->attempts);
            natsMsgHeader_Set(m, "Spate-Source", in->error ? in->source_topic : j->source);
            natsMsgHeader_Set(m, "Spate-Attempts", att);
            const char *e = in->error ? in->error : j->error;
            if (e) natsMsgHeader_Set(m, "Spate-Error", e);
        }
        /* Async: the whole batch is in flight at once; complete waits for
         * JetStream's acknowledgement of every message. */
        if (j->seqs) cluster_acks_sent(j->q->c, acks, i - j->first, m);
        s = jsqueue__publish_async(j->q, &m);
        if (m) natsMsg_Destroy(m);
    }
    natsStatus acked = jsqueue__await_acks(j->q, acks, j->err, sizeof j->err);
    return s == NATS_OK ? acked : s;
}

static natsStatus ensure_stream(pub_job *j)
{
    natsStatus s = jsqueue__ensure_stream(j->q, j->stream, j->subject);
    if (s != NATS_OK) {
        snprintf(j->err, sizeof j->err, "cannot make its stream %s: %s", j->stream,
                 cluster_nats_why(s));
    }
    return s;
}

void jsqueue__publish_work(void *arg)
{
    pub_job *j = arg;
    if (!cluster_connected(j->q->c)) {
        /* nats.c would buffer it and send it on reconnection, after the
         * caller had been told it failed: say so at once instead. A dead
         * letter waits for the connection (its message is not run again). */
        j->retry.again = j->term && jsqueue__retry_allowed(&j->retry);
        j->status = j->retry.again ? 0 : ERR_DISCONNECTED;
        return;
    }
    /* A stream this node has seen is published to at once: asking for it
     * first cost every batch a round trip to JetStream's API. One deleted
     * since (from another node) takes no message ("no responders" for
     * each): it is made then, and the batch sent again. */
    j->count = j->n - j->first < SPATE_JS_PUBLISH_PART ? j->n - j->first : SPATE_JS_PUBLISH_PART;
    cluster_acks acks = {0};
    natsStatus s = j->stream_seen ? NATS_OK : ensure_stream(j);
    if (s == NATS_OK) s = publish_batch(j, &acks);
    if (s != NATS_OK && j->stream_seen && acks.no_stream == j->count) {
        j->err[0] = '\0';
        if (j->seqs) memset(j->seqs + j->first, 0, j->count * sizeof *j->seqs);
        s = ensure_stream(j);
        if (s == NATS_OK) s = publish_batch(j, &acks);
    }
    j->status = s == NATS_OK ? 0 : ERR_IO;
    if (s != NATS_OK && !j->err[0]) snprintf(j->err, sizeof j->err, "%s", natsStatus_GetText(s));
    /* A dead letter is the end of its message's last attempt: one refused
     * is sent again, its message kept in progress, not run again. */
    j->retry.again = s != NATS_OK && j->term && jsqueue__retry_allowed(&j->retry);
    if (j->retry.again) {
        natsMsg_InProgress(j->term, NULL);
        j->status = 0;
        j->err[0] = '\0';
        return;
    }
    /* The topic's figures as the acks tell them, not by asking the stream
     * (another round trip per publish); the refresh has them exact within
     * a second. */
    j->stored = acks.stored;
    j->last_seq = acks.last_seq;
}

/* Settle thread: a stored dead letter's record in the attempts bucket says
 * its message is done with, before the term: a term JetStream answered can
 * still be lost with a consumer leader that goes before passing it on, and
 * a node given the message again then settles it instead of running it
 * (pull.c). On the settle thread: the bucket without a leader holds up no
 * publish. */
static void term_work(void *arg)
{
    pub_job *j = arg;
    char v[40];
    snprintf(v, sizeof v, "+TERM %lld", (long long)j->stored_ns);
    /* The "+TERM" record, and an ordered part's mark (skipped.c): either
     * keeps the message from running again, the mark also from being taken
     * for one JetStream skipped. Both refused (no leader for a moment), the
     * term went without, and the key's next delivery published the dead
     * letter's message again as skipped: it ran again and went to the dead
     * letters twice (the cluster nemesis, session 47). So an ordered part's
     * are tried again as an ordered ack's mark is (settle.c): after
     * SPATE_JS_SETTLE_RETRY_MS, for SPATE_JS_SETTLE_RETRY_FOR_MS, the
     * message kept in progress, the bucket not asked while it refuses (a
     * plain trigger's record matters only if the term is lost, which
     * confirm.c sends until answered: one try). */
    natsStatus rs = NATS_NO_RESPONDERS, ms = NATS_NO_RESPONDERS;
    if (clock_now_ms() >= j->q->attempts_refused_until_ms) {
        rs = kvStore_PutString(NULL, cluster_attempts(j->q->c), j->dead_key, v);
        if (j->mark_key[0])
            ms = jsqueue__mark_raise(j->q, j->mark_key, j->dead_seq, j->created_ns, j->mark_rev);
        if (rs != NATS_OK && (ms != NATS_OK || !j->mark_key[0]))
            j->q->attempts_refused_until_ms = clock_now_ms() + SPATE_JS_SETTLE_RETRY_MS;
    }
    if (j->mark_key[0] && rs != NATS_OK && ms != NATS_OK) {
        j->retry.again = jsqueue__retry_allowed(&j->retry);
        if (j->retry.again) {
            natsMsg_InProgress(j->term, NULL);
            return;
        }
    }
    if (j->mark_key[0] && ms != NATS_OK)
        log_warn("cluster: cannot raise the mark %s to seq=%llu: %s%s", j->mark_key,
                 (unsigned long long)j->dead_seq, cluster_nats_why(ms),
                 rs == NATS_OK ? "" : "; nor write its +TERM record: it may run again");
    else if (rs != NATS_OK && !j->mark_key[0])
        log_warn("cluster: cannot write the +TERM record %s: %s", j->dead_key,
                 cluster_nats_why(rs));
    jsqueue__confirm(j->q, j->term, "+TERM");
    j->termed = 1;
}

void jsqueue__publish_done(void *arg)
{
    pub_job *j = arg;
    /* The dead letter's publish, or then its term (terming), tried again. */
    if (jsqueue__retry_later(&j->retry, j->q, j->terming ? cluster_run_settle : cluster_run,
                             j->terming ? term_work : jsqueue__publish_work, jsqueue__publish_done,
                             j))
        return;
    if (j->terming && j->retry.again && !j->termed) { /* closing: the term goes without */
        jsqueue__confirm(j->q, j->term, "+TERM");
        j->termed = 1;
        j->retry.again = 0;
    }
    if (j->term && j->status == 0 && !j->retry.again && !j->termed) {
        j->terming = 1;
        j->retry.until_ms = 0; /* the term's own tries */
        cluster_run_settle(j->q->c, term_work, jsqueue__publish_done, j);
        return;
    }
    if (j->retry.again) log_warn("cluster: dead letter to %s not stored: closing", j->topic->name);
    if (j->status == 0 && !j->retry.again) {
        j->topic->created = 1;
        j->topic->touched = j->q->refresh_serial;
    }
    if (j->status == 0 && !j->retry.again) {
        queue_topic_stats *st = &j->topic->stats;
        if (j->last_seq > st->published) st->published = j->last_seq;
        if (j->stored && !st->stored) st->oldest_ms = (int64_t)clock_now_ms();
        st->stored += j->stored;
        for (size_t i = j->first; j->stored == j->count && i < j->first + j->count; i++)
            st->bytes += j->in[i].len + j->in[i].key_len;
    }
    /* The batch's next part, behind what was queued meanwhile; none once
     * spated stops (the parts before stay stored: 503). */
    size_t next = j->first + j->count;
    if (j->status == 0 && !j->retry.again && next < j->n && j->q->closing) {
        j->status = ERR_IO;
        snprintf(j->err, sizeof j->err, "spated is stopping: %zu of %zu messages stored", next,
                 j->n);
    } else if (j->status == 0 && !j->retry.again && next < j->n) {
        j->first = next;
        j->stream_seen = 1;
        j->stored = 0;
        j->last_seq = 0;
        cluster_run(j->q->c, jsqueue__publish_work, jsqueue__publish_done, j);
        return;
    }
    if (j->err[0]) log_warn("cluster: cannot publish to %s: %s", j->topic->name, j->err);
    /* Each message's seq where the publisher asked (queue_input.seq). */
    for (size_t i = 0; j->seqs && j->status == 0 && i < j->n; i++)
        if (j->in[i].seq) *j->in[i].seq = j->seqs[i];
    if (j->done) j->done(j->data, j->status, 0);
    buf_free(&j->body);
    free(j->in);
    free(j->seqs);
    free(j->msgs);
    free(j->extra);
    free(j->error);
    if (j->term) natsMsg_Destroy(j->term);
    queue_sub *hold = j->hold;
    queue *q = j->q;
    jsqueue__retry_free(&j->retry, j);
    if (hold) {
        hold->jobs--;
        jsqueue__sub_maybe_free(hold);
    }
    jsqueue__job_done(q);
}

pub_job *jsqueue__new_pub(queue *q, const char *topic)
{
    pub_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->q = q;
    j->topic = jsqueue__topic_of(q, topic, 1);
    if (!j->topic) {
        free(j);
        return NULL;
    }
    memcpy(j->stream, j->topic->stream, sizeof j->stream);
    memcpy(j->subject, j->topic->subject, sizeof j->subject);
    j->stream_seen = j->topic->created;
    return j;
}

void jsqueue__publish(queue *q, const char *topic, buf *body, const queue_input *in, size_t n,
                      queue_publish_cb done, void *data)
{
    if (q->closing) { /* the queue goes once its jobs are back: none new */
        buf_free(body);
        done(data, ERR_CLOSED, 0);
        return;
    }
    pub_job *j = jsqueue__new_pub(q, topic);
    queue_input *copy = j ? malloc(n * sizeof *copy) : NULL;
    if (!copy) {
        free(j);
        buf_free(body);
        done(data, ERR_NOMEM, 0);
        return;
    }
    memcpy(copy, in, n * sizeof *copy);
    if (queue_inputs_own_extras(copy, n, &j->extra) != 0) {
        free(copy);
        free(j);
        buf_free(body);
        done(data, ERR_NOMEM, 0);
        return;
    }
    int seqs = 0;
    for (size_t i = 0; i < n; i++) seqs |= in[i].seq != NULL;
    if (seqs &&
        (!(j->seqs = calloc(n, sizeof *j->seqs)) || !(j->msgs = calloc(n, sizeof *j->msgs)))) {
        free(j->seqs);
        free(copy);
        free(j->extra);
        free(j);
        buf_free(body);
        done(data, ERR_NOMEM, 0);
        return;
    }
    buf_init(&j->body, 0);
    buf_move(&j->body, body); /* the inputs point into it */
    j->in = copy;
    j->n = n;
    j->done = done;
    j->data = data;
    jsqueue__run_job(q, jsqueue__publish_work, jsqueue__publish_done, j);
}
