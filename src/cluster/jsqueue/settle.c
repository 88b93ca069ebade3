/*
 * jsqueue/settle.c - settling a lease: ack, nack with delay, release, dead
 * letter, and the attempts bucket that counts failures apart from
 * JetStream's deliveries.
 */
#include "cluster/jsqueue/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

/* The record of a message's failed attempts: "<stream>.<consumer>.<seq>".
 * A bucket's keys take no '@', which an SQS queue's receiver's consumer
 * has (F_@receiver): '=' there, which no other consumer's name has. */
void jsqueue__attempts_key(char *out, size_t cap, const queue_sub *s, const struct part *pt,
                           uint64_t seq)
{
    snprintf(out, cap, "%s.%s.%llu", s->topic->stream, pt->durable, (unsigned long long)seq);
    for (char *p = out; *p; p++)
        if (*p == '@') *p = '=';
}

static void lease_free(jlease *jl)
{
    queue_sub *s = jl->l.sub;
    natsMsg_Destroy(jl->nm);
    free(jl);
    s->leases--;
    jsqueue__sub_maybe_free(s);
}

/* --- Trying a settling again ---------------------------------------------------------------- */

static void retry_fire(uv_timer_t *t)
{
    jretry *r = t->data;
    r->run(r->q->c, r->work, r->done, r->job);
}

int jsqueue__retry_allowed(jretry *r)
{
    int64_t now = clock_now_ms();
    if (!r->until_ms) r->until_ms = now + SPATE_JS_SETTLE_RETRY_FOR_MS;
    return now < r->until_ms;
}

int jsqueue__retry_later(jretry *r, queue *q,
                         void (*run)(cluster *c, cluster_fn work, cluster_fn done, void *arg),
                         cluster_fn work, cluster_fn done, void *job)
{
    if (!r->again || q->closing) return 0;
    r->again = 0;
    if (!r->timer_in_use) {
        uv_timer_init(q->loop, &r->timer);
        r->timer.data = r;
        r->timer_in_use = 1;
    }
    r->q = q;
    r->run = run;
    r->work = work;
    r->done = done;
    r->job = job;
    uv_timer_start(&r->timer, retry_fire, SPATE_JS_SETTLE_RETRY_MS, 0);
    return 1;
}

static void retry_closed(uv_handle_t *h)
{
    free(((jretry *)h->data)->job);
}

void jsqueue__retry_free(jretry *r, void *job)
{
    if (!r->timer_in_use) {
        free(job);
        return;
    }
    r->job = job;
    uv_close((uv_handle_t *)&r->timer, retry_closed);
}

/* --- Failed attempts ----------------------------------------------------------------------- */

/* A failure is recorded before the NAK, so that the next delivery reads
 * it ("<failures> <published ms>"); a message that had a record and is done
 * with has it say so, with when it was stored ("+ACK <ns>"; "+TERM <ns>"
 * from publish.c), so that a delivery after an ack lost with a consumer
 * leader is settled, not run (pull.c); records go with the bucket's TTL. A
 * record the bucket refuses (its leader being elected after a nats-server
 * went: "no responders", or a time-out) is tried again, the delivery kept
 * ours meanwhile: NAKed without it, the message would run its attempt
 * again. */
typedef struct settle_job {
    queue *q;
    kvStore *kv;
    /* Kept (its jobs) while the NAK is to come: the message's pull
     * subscription, which the NAK goes through, lives as long as it. */
    queue_sub *sub;
    natsMsg *nm; /* to NAK once recorded (to ack: an ordered part's); NULL for an ack's record */
    uint32_t failed;        /* attempts failed so far; 0: acked ("+ACK") */
    uint32_t failed_before; /* an ordered ack's: its message's failures ("+ACK" record then) */
    /* An ordered part's ack: its mark raised to seq first (skipped.c). */
    char mark_key[KV_KEY_CAP];
    uint64_t seq, mark_rev;
    int64_t created_ns;
    int64_t delay_ms;     /* before the next delivery */
    int64_t stored_ns;    /* the message's, in an ack's record */
    int64_t published_ms; /* the message's, in a failure's record */
    jretry retry;
    char key[KV_KEY_CAP];
} settle_job;

/* Settle thread: a failure's record, unless the bucket refused one moments
 * ago. A refusal can take the JetStream wait (2 s) while the bucket has no
 * leader; every record queued behind it would wait as long, and their
 * messages, not yet kept in progress, go to another node after AckWait. */
static natsStatus put_failure(settle_job *j, const char *v)
{
    if (clock_now_ms() < j->q->attempts_refused_until_ms) return NATS_NO_RESPONDERS;
    natsStatus st = kvStore_PutString(NULL, j->kv, j->key, v);
    if (st != NATS_OK) j->q->attempts_refused_until_ms = clock_now_ms() + SPATE_JS_SETTLE_RETRY_MS;
    return st;
}

/* Settle thread: an ordered part's ack, once its mark says so (a mark
 * behind would take the message for one JetStream skipped, and run it
 * again): the mark the bucket refuses is tried again, the message kept in
 * progress; at the end it is acked without (logged). */
static void ordered_ack_work(settle_job *j)
{
    natsStatus st = NATS_NO_RESPONDERS;
    if (clock_now_ms() >= j->q->attempts_refused_until_ms) {
        st = jsqueue__mark_raise(j->q, j->mark_key, j->seq, j->created_ns, j->mark_rev);
        if (st != NATS_OK)
            j->q->attempts_refused_until_ms = clock_now_ms() + SPATE_JS_SETTLE_RETRY_MS;
    }
    if (st != NATS_OK) {
        j->retry.again = jsqueue__retry_allowed(&j->retry);
        if (j->retry.again) {
            natsMsg_InProgress(j->nm, NULL);
            return;
        }
    }
    natsStatus rs = NATS_OK;
    if (j->failed_before || st != NATS_OK) { /* without a mark, the record tells (skipped.c) */
        char v[40];
        snprintf(v, sizeof v, "+ACK %lld", (long long)j->stored_ns);
        rs = kvStore_PutString(NULL, j->kv, j->key, v);
    }
    if (st != NATS_OK)
        log_warn("cluster: cannot raise the mark %s to seq=%llu (tried for %d s): %s; %s",
                 j->mark_key, (unsigned long long)j->seq, SPATE_JS_SETTLE_RETRY_FOR_MS / 1000,
                 cluster_nats_why(st),
                 rs == NATS_OK ? "acknowledged without it" : "handed back, to run again");
    if (st != NATS_OK && rs != NATS_OK) {
        /* Neither mark nor record: acked, it would lie settled past its
         * part's mark, and the key's next delivery would run it again
         * after itself (taken for one JetStream skipped). It runs again
         * in its place instead. */
        natsMsg_Nak(j->nm, NULL);
        return;
    }
    jsqueue__confirm(j->q, j->nm, "+ACK");
}

/* Settle thread. */
static void settle_work(void *arg)
{
    settle_job *j = arg;
    if (j->mark_key[0]) {
        ordered_ack_work(j);
        return;
    }
    if (!j->failed) { /* acked: a redelivery (an ack lost) is settled, not run */
        char v[40];
        snprintf(v, sizeof v, "+ACK %lld", (long long)j->stored_ns);
        kvStore_PutString(NULL, j->kv, j->key, v);
        return;
    }
    /* With the message's publish time too (its Spate-Published header,
     * stored with it: the same in every delivery; the ack subject's stored
     * time is too, test_cluster.py pins it, but a record of an older node
     * without it stays readable this way): a topic made again numbers its
     * messages from 1 again, and an old count must not be a new message's. */
    char v[48];
    snprintf(v, sizeof v, "%u %lld", j->failed, (long long)j->published_ms);
    natsStatus st = put_failure(j, v);
    j->retry.again = st != NATS_OK && jsqueue__retry_allowed(&j->retry);
    if (j->retry.again) {
        natsMsg_InProgress(j->nm, NULL); /* AckWait starts again: still ours */
        return;
    }
    if (st != NATS_OK) /* then it has one more attempt than it should */
        log_warn("cluster: cannot record failed attempt %u of %s (tried for %d s): %s", j->failed,
                 j->key, SPATE_JS_SETTLE_RETRY_FOR_MS / 1000, natsStatus_GetText(st));
    natsMsg_NakWithDelay(j->nm, j->delay_ms, NULL);
}

static void settle_done(void *arg)
{
    settle_job *j = arg;
    queue_sub *s = j->sub;
    if (s && jsqueue__retry_later(&j->retry, s->q, cluster_run_settle, settle_work, settle_done, j))
        return;
    if (j->retry.again && j->mark_key[0]) /* closing without its mark: runs again in its place */
        natsMsg_Nak(j->nm, NULL);
    else if (j->retry.again) /* closing: no more tries, the NAK is the last word */
        natsMsg_NakWithDelay(j->nm, j->delay_ms, NULL);
    natsMsg_Destroy(j->nm);
    jsqueue__retry_free(&j->retry, j);
    if (s) {
        s->jobs--;
        jsqueue__sub_maybe_free(s);
    }
}

static settle_job *new_settle(const jlease *jl, uint32_t failed)
{
    settle_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->q = jl->l.sub->q;
    j->kv = cluster_attempts(jl->l.sub->q->c);
    j->failed = failed;
    jsqueue__attempts_key(j->key, sizeof j->key, jl->l.sub, jl->pt, jl->m.seq);
    j->stored_ns = jl->stored_ns;
    j->published_ms = jl->m.published_ms;
    return j;
}

/* An ordered part's ack goes after its mark (settle thread), with the
 * message; 0 without memory. */
static int ordered_ack(jlease *jl)
{
    queue_sub *s = jl->l.sub;
    settle_job *j = new_settle(jl, 0);
    if (!j) return 0;
    jsqueue__mark_key(j->mark_key, sizeof j->mark_key, s->topic->stream, jl->pt->durable);
    j->seq = jl->m.seq;
    j->mark_rev = jl->mark_rev;
    j->created_ns = jl->created_ns;
    j->failed_before = jl->failed;
    j->nm = jl->nm;
    jl->nm = NULL;
    j->sub = s;
    s->jobs++;
    cluster_run_settle(s->q->c, settle_work, settle_done, j);
    return 1;
}

void jsqueue__ack(queue_lease *l)
{
    jlease *jl = (jlease *)l;
    if (jl->l.sub->removed)
        jl->l.sub->topic->retired_acked++;
    else
        jl->l.sub->acked++;
    if (jl->pt->one_at_a_time && !jl->failed) {
        /* Its mark first, on the way with the others' (confirm.c). */
        char key[KV_KEY_CAP];
        jsqueue__mark_key(key, sizeof key, jl->l.sub->topic->stream, jl->pt->durable);
        if (jsqueue__confirm_after_mark(jl->l.sub->q, jl->nm, key, jl->m.seq, jl->created_ns,
                                        jl->mark_rev) == 0) {
            lease_free(jl);
            return;
        }
    }
    if (jl->pt->one_at_a_time && ordered_ack(jl)) {
        lease_free(jl);
        return;
    }
    jsqueue__confirm(jl->l.sub->q, jl->nm, "+ACK");
    settle_job *j = jl->failed ? new_settle(jl, 0) : NULL;
    if (j) cluster_run_settle(jl->l.sub->q->c, settle_work, settle_done, j);
    lease_free(jl);
}

void jsqueue__nack(queue_lease *l, uint32_t delay_ms, const char *error)
{
    jlease *jl = (jlease *)l;
    settle_job *j = new_settle(jl, jl->failed + 1);
    if (!j) {
        natsMsg_NakWithDelay(jl->nm, (int64_t)delay_ms, NULL);
    } else {
        j->nm = jl->nm;
        j->delay_ms = delay_ms;
        j->sub = l->sub;
        l->sub->jobs++;
        jl->nm = NULL;
        cluster_run_settle(jl->l.sub->q->c, settle_work, settle_done, j);
    }
    lease_free(jl);
}

void jsqueue__release(queue_lease *l)
{
    jlease *jl = (jlease *)l;
    natsMsg_Nak(jl->nm, NULL);
    lease_free(jl);
}

/* JetStream's in progress: AckWait starts again for this delivery. */
void jsqueue__touch(queue_lease *l)
{
    natsMsg_InProgress(((jlease *)l)->nm, NULL);
}

void jsqueue__dead_letter(queue_lease *l, const char *error)
{
    jlease *jl = (jlease *)l;
    queue_sub *s = l->sub;
    pub_job *j = jsqueue__new_pub(s->q, s->cfg.dlq);
    queue_input *in = j ? calloc(1, sizeof *in) : NULL;
    if (!in) {
        free(j);
        natsMsg_NakWithDelay(jl->nm, 1000, NULL); /* try again later */
        lease_free(jl);
        return;
    }
    buf_init(&j->body, 0);
    in->data = jl->m.data;
    in->len = jl->m.len;
    /* The key as the message's header has it: jl's copy goes below, and the
     * job reads it later on the worker thread (a use after free ASan found
     * in the cluster nemesis). The same length: the part it hashes to. */
    const char *key = NULL;
    if (jl->m.key && natsMsgHeader_Get(jl->nm, "Spate-Key", &key) == NATS_OK && key &&
        strlen(key) >= jl->m.key_len) {
        in->key = key;
        in->key_len = jl->m.key_len;
    }
    in->attrs = jl->m.attrs; /* copied: jl goes below, the message's headers stay */
    /* Sent again after an answer lost (publish.c), stored once: JetStream's
     * deduplication on the message's place in its trigger. */
    jsqueue__attempts_key(j->dead_key, sizeof j->dead_key, s, jl->pt, jl->m.seq);
    snprintf(j->dead_id, sizeof j->dead_id, "%s.%lld", j->dead_key, (long long)jl->stored_ns);
    j->stored_ns = jl->stored_ns;
    if (jl->pt->one_at_a_time) {
        jsqueue__mark_key(j->mark_key, sizeof j->mark_key, s->topic->stream, jl->pt->durable);
        j->dead_seq = jl->m.seq;
        j->mark_rev = jl->mark_rev;
        j->created_ns = jl->created_ns;
    }
    in->dedup = j->dead_id;
    in->dedup_len = (uint32_t)strlen(j->dead_id);
    if (queue_inputs_own_extras(in, 1, &j->extra) != 0) {
        free(in);
        free(j);
        natsMsg_NakWithDelay(jl->nm, 1000, NULL);
        lease_free(jl);
        return;
    }
    j->in = in;
    j->n = 1;
    snprintf(j->source, sizeof j->source, "%s", s->topic->name);
    j->error = strdup(error ? error : "");
    j->attempts = l->attempt;
    j->term = jl->nm; /* the job owns it now, and terminates it once stored */
    j->hold = s;      /* and keeps s (its pull subscription) until then */
    s->jobs++;
    jl->nm = NULL;
    /* The input points into the message, which the job keeps alive. */
    if (s->removed)
        s->topic->retired_dead++;
    else
        s->dead++;
    free(jl);
    s->leases--;
    jsqueue__run_job(s->q, jsqueue__publish_work, jsqueue__publish_done, j);
    jsqueue__sub_maybe_free(s);
}
