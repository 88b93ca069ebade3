#include "sched/triggers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/lambda.h"
#include "common/list.h"
#include "common/log.h"
#include "common/reqid.h"
#include "common/strmap.h"
#include "sched/batch.h"

/* Scaling state of one function, shared by its triggers. */
typedef struct fscale {
    char name[SPATE_NAME_MAX + 1];
    list_node triggers; /* its triggers */
    uint32_t inflight;  /* invocations its triggers have in the pool */
    rate_meter arrivals;
    double oldest_age_s; /* as of the last tick */
    scale_input in;
    scale_output out;
    uint64_t computed_ns;
    int warned;
    uint32_t local_desired; /* this node's share of out.desired (cluster mode) */
} fscale;

typedef struct trigger {
    list_node link; /* in fscale->triggers */
    triggers *owner;
    queue_sub *sub;
    fscale *fs;
    uint32_t inflight;
    int pumping;
    int stalled; /* the pool refused: wait for a completion or a tick */
    int missing_warned;
    int removed; /* its subscription is gone: freed when nothing runs */
    /* Once removed, what its running invocations still read of it: its
     * subscription may be freed before they end (a trigger on a queue holds
     * no lease of its own subscription, which then lives no longer). */
    queue_sub_config gone;
    char gone_topic[SPATE_TOPIC_NAME_MAX + 1];
    int64_t loop_warned_ms; /* the last "recursive loop stopped" (one a minute) */
    histogram end_to_end;   /* publish to success, for /metrics */
    /* The batch being gathered (batched triggers): leased, not yet sent. */
    queue_lease **pending;
    uint32_t npending, pending_cap;
    size_t pending_bytes;      /* batch_record_max of each */
    uint64_t window_end;       /* loop ms when it goes, full or not */
    queue_lease *carry;        /* leased, but over the byte cap: the next batch's first */
    uint64_t pending_touch_at; /* loop ms: when to touch a gathering batch (touch_held) */
} trigger;

typedef struct tinv {
    invocation inv;
    trigger *t;
    queue_lease **leases; /* n; &one for a single message */
    uint32_t n;
    queue_lease *one;
    buf event; /* a batch's event: the payload */
    char request_id[REQID_LEN + 1];
    uint32_t version; /* the version an async invocation names; 0: the active one */
    /* Leased from a queue's receiver (its receipt handles settle it), or
     * in cluster mode: in triggers->running until it ends, touched at
     * touch_at (loop ms) and every touch period after (cluster mode). */
    list_node running;
    uint64_t touch_at;
    /* What the function did to each lease by its event's receipt handle
     * (triggers_receiver_settle), applied when the invocation ends: NULL
     * until it does anything; else n of 0 (nothing), SETTLED_DELETED, or a
     * visibility timeout in ms plus 1. */
    int64_t *settled;
} tinv;
#define SETTLED_DELETED (-1)

struct triggers {
    uv_loop_t *loop;
    functions *table;
    queue *q;
    queue_events ev;
    uv_timer_t tick;
    uv_timer_t window; /* the earliest batch window's end */
    int handles_open;  /* tick and window, until closed */
    strmap scales;     /* function name -> fscale */
    uint32_t inflight;
    /* Trigger adds and removals the queue has not answered yet: closing
     * waits for them (their answers come back to tr). */
    uint32_t changing;
    int closing, drain;
    void (*close_cb)(void *);
    void *close_data;
    uint64_t rng;
    uint32_t (*live_nodes)(void *data); /* cluster mode: how many share the work */
    void *live_nodes_data;
    triggers_outcome_cb outcome_hook;
    void *outcome_data;
    triggers_receiver receiver; /* a queue's receiver (api/sqs.c); zeroed: none */
    list_node running;          /* tinvs of a receiver's leases, or of any in cluster mode */
};

static void pump(trigger *t);

/* t's configuration and topic, also while its last invocations end after
 * its removal (trigger.gone). */
static const queue_sub_config *cfg_of(const trigger *t)
{
    return t->removed ? &t->gone : queue_sub_get_config(t->sub);
}

static const char *topic_of(const trigger *t)
{
    return t->removed ? t->gone_topic : queue_sub_topic(t->sub);
}

/* A trigger that sends batches rather than one message as it is: more than
 * one message per invocation, or an event shaped around them. */
static int batched(const queue_sub_config *cfg)
{
    return cfg->batch_size > 1 || cfg->event_format != QUEUE_EVENT_RAW || cfg->report_failures;
}

static uint32_t batch_size(const queue_sub_config *cfg)
{
    return cfg->batch_size > 1 ? cfg->batch_size : 1;
}

/* --- Scaling ------------------------------------------------------------------------ */

static fscale *scale_for(triggers *tr, const char *function)
{
    fscale *fs = strmap_get(&tr->scales, function, strlen(function));
    if (fs) return fs;
    fs = calloc(1, sizeof *fs);
    if (!fs) return NULL;
    snprintf(fs->name, sizeof fs->name, "%s", function);
    list_init(&fs->triggers);
    if (strmap_put(&tr->scales, fs->name, fs)) {
        free(fs);
        return NULL;
    }
    return fs;
}

queue_lease *triggers_receiver_next(queue_sub *receiver)
{
    const queue_sub_config *cfg = queue_sub_get_config(receiver);
    int64_t keep_ms =
        (int64_t)(cfg->batch_size ? cfg->batch_size : TRIGGERS_RETENTION_DEFAULT_S) * 1000;
    int64_t now = clock_now_ms();
    queue_lease *l;
    uint64_t expired = 0;
    while ((l = queue_lease_next(receiver)) && now - l->msg->published_ms > keep_ms) {
        queue_ack(l);
        expired++;
    }
    if (expired)
        log_info("%llu messages older than the retention period deleted queue=%s",
                 (unsigned long long)expired, queue_sub_topic(receiver));
    return l;
}

/* The next lease of src: a receiver's past its expired messages. */
static queue_lease *lease_from(queue_sub *src)
{
    return triggers_is_receiver(src) ? triggers_receiver_next(src) : queue_lease_next(src);
}

/* Where t leases from: on a queue (a topic with an SQS receiver) the
 * queue's receiver, which it shares with the ReceiveMessage callers (each
 * message goes to one of them or to the function, as with Lambda's event
 * source mappings); on any other topic its own subscription. Looked up at
 * each use: CreateQueue and DeleteQueue turn a topic into a queue and back. */
static queue_sub *source_of(const trigger *t)
{
    queue_sub *r = queue_find_sub(t->owner->q, queue_sub_topic(t->sub), TRIGGERS_RECEIVER);
    return r ? r : t->sub;
}

/* Recomputes what the function should have. Cheap: the oldest age and the
 * arrival rate come from the last tick, the backlog is read now. */
static void rescale(triggers *tr, fscale *fs, fn *f)
{
    pool_stats ps;
    pool_stats_get(f->pool, &ps);
    /* Each message or invocation once: the subscriptions count their
     * messages, those in the pool too (leased); the pool adds what is not
     * theirs, direct invokes running or waiting. */
    uint64_t in_pool = (uint64_t)ps.busy + ps.waiting;
    uint64_t backlog = in_pool > fs->inflight ? in_pool - fs->inflight : 0;
    double deadline = 0;
    for (list_node *n = list_first(&fs->triggers); n != &fs->triggers; n = n->next) {
        trigger *t = list_entry(n, trigger, link);
        queue_sub_stats ss;
        queue_sub_get_stats(source_of(t), &ss);
        const queue_sub_config *cfg = queue_sub_get_config(t->sub);
        if (cfg->paused) continue; /* its messages wait: no work for the function */
        /* The autoscaler sizes invocations: a batch of N messages is one. */
        uint32_t bs = batch_size(cfg);
        backlog += (ss.depth + bs - 1) / bs;
        if (cfg->deadline_ms && (!deadline || cfg->deadline_ms / 1000.0 < deadline))
            deadline = cfg->deadline_ms / 1000.0;
    }
    /* In a cluster the backlog is the whole cluster's: size for all of it
     * with every node's instances, and take this node's share. */
    uint32_t nodes = tr->live_nodes ? tr->live_nodes(tr->live_nodes_data) : 1;
    if (nodes < 1) nodes = 1;
    fs->in = (scale_input){
        .arrival_per_s = fs->arrivals.rate,
        .service_s = ps.service_us / 1e6,
        .service_floor_s = ps.service_floor_us / 1e6,
        .backlog = (double)backlog,
        .oldest_age_s = fs->oldest_age_s,
        .deadline_s = deadline,
        .cold_start_s = ps.cold_us / 1e6,
        .drain_target_s = AUTOSCALE_DRAIN_TARGET_S,
        .min = ps.min_instances,
        .max = ps.max_instances * nodes,
        .blocked = ps.starting + ps.idle + ps.busy == 0 && (ps.load_error || ps.start_refused),
    };
    autoscale(&fs->in, &fs->out);
    uint32_t share = (fs->out.desired + nodes - 1) / nodes;
    if (share < ps.min_instances) share = ps.min_instances;
    if (share > ps.max_instances) share = ps.max_instances;
    fs->local_desired = nodes > 1 ? share : fs->out.desired;
    fs->computed_ns = clock_mono_ns();
    pool_scale_hint(f->pool, fs->local_desired);
}

/* How many invocations the function's triggers may have in the pool: what
 * the desired instances can run (each with its mailbox), within the pool. */
static uint32_t allowance(fscale *fs, fn *f)
{
    pool_stats ps;
    pool_stats_get(f->pool, &ps);
    uint32_t instances = fs->local_desired;
    /* Warm instances stay until their keep-alive ends, working or not:
     * while messages wait, none of them stands idle. */
    uint32_t warm = ps.idle + ps.busy;
    if (fs->in.backlog > 0 && warm > instances) instances = warm;
    /* One for a function with nothing running: the first message starts at
     * once. A shared queue learns the cluster's backlog only from periodic
     * figures; sized from them alone, a function at zero would wait for the
     * next round before pulling anything. */
    if (!instances && !fs->inflight) instances = 1;
    uint64_t a = (uint64_t)instances * (ps.mailbox ? ps.mailbox : 1);
    uint32_t cap = pool_capacity(f->pool);
    return a > cap ? cap : (uint32_t)a;
}

static void on_tick(uv_timer_t *h);

static void tick_scale(triggers *tr, fscale *fs)
{
    fn *f = functions_find(tr->table, fs->name, strlen(fs->name));
    if (!f || list_empty(&fs->triggers)) return;
    /* Arrivals: messages published on the topics of its triggers. */
    uint64_t published = 0;
    int64_t oldest = 0;
    for (list_node *n = list_first(&fs->triggers); n != &fs->triggers; n = n->next) {
        trigger *t = list_entry(n, trigger, link);
        queue_topic_stats ts;
        /* In invocations, as the backlog: a batch of N messages is one. */
        if (queue_topic_get_stats(tr->q, queue_sub_topic(t->sub), &ts) == 0)
            published += ts.published / batch_size(queue_sub_get_config(t->sub));
        queue_sub_stats ss;
        queue_sub_get_stats(source_of(t), &ss);
        if (ss.oldest_ms && (!oldest || ss.oldest_ms < oldest)) oldest = ss.oldest_ms;
    }
    rate_update(&fs->arrivals, published, clock_mono_ns());
    fs->oldest_age_s = oldest ? (double)(clock_now_ms() - oldest) / 1000.0 : 0;
    rescale(tr, fs, f);
    if (fs->out.at_risk && !fs->warned) {
        if (fs->in.blocked)
            log_warn("deadline at risk: backlog %.0f, and no instance of the function can start "
                     "(spate status NAME says why: a node limit or its load error), deadline "
                     "%.1f s, %.1f s left for the oldest fn=%s",
                     fs->in.backlog, fs->in.deadline_s, fs->out.time_left_s, fs->name);
        else
            log_warn("deadline at risk: backlog %.0f, drain ETA %.1f s with the function's "
                     "maximum of %u instances, deadline %.1f s, %.1f s left for the oldest fn=%s",
                     fs->in.backlog, fs->out.eta_max_s, fs->in.max, fs->in.deadline_s,
                     fs->out.time_left_s, fs->name);
        fs->warned = 1;
    } else if (!fs->out.at_risk && fs->warned) {
        log_info("deadline no longer at risk: backlog %.0f fn=%s", fs->in.backlog, fs->name);
        fs->warned = 0;
    }
}

static void tick_one(const char *key, void *value, void *data)
{
    triggers *tr = data;
    fscale *fs = value;
    tick_scale(tr, fs);
    for (list_node *n = list_first(&fs->triggers); n != &fs->triggers; n = n->next) {
        trigger *t = list_entry(n, trigger, link);
        t->stalled = 0;
        pump(t);
    }
}

/* Cluster mode: a trigger's leases are held from the other nodes while its
 * batch gathers, waits for an instance and runs: touched (queue_touch,
 * JetStream's in progress) every touch period, as sqs_recv.c touches what a
 * receive holds; the SQLite queue's leases live in the process and need
 * none (its queue_touch does nothing, and nothing is listed). A receiver's
 * AckWait is the queue's VisibilityTimeout (and a margin), sized for
 * ReceiveMessage, not for the function: a batch gathering for its window,
 * or an invocation running longer than that, was given to another node by
 * JetStream and ran there too. A trigger's own AckWait is its function's
 * timeout and batch window and a margin from the delivery, but a run may
 * wait for an instance up to a timeout before it starts: the cluster
 * nemesis saw batches run on two nodes at once after a partition healed,
 * with nodes' instances slow to start. Runs that end within half their
 * timeout, most, are never touched. A run ends by its function's timeout,
 * so a touched lease is not held forever. */
static uint64_t touch_period_ms(const queue_sub *sub)
{
    const queue_sub_config *cfg = queue_sub_get_config(sub);
    if (!triggers_is_receiver(sub)) {
        /* The AckWait is ack_wait_ms (or, for 0, the default) and a margin. */
        uint32_t ms = cfg->ack_wait_ms ? cfg->ack_wait_ms : SPATE_TIMEOUT_DEFAULT_MS;
        return ms / 2 > SPATE_AUTOSCALE_TICK_MS ? ms / 2 : SPATE_AUTOSCALE_TICK_MS;
    }
    uint32_t ms = cfg->deadline_ms;
    /* The AckWait is deadline_ms (or, for 0, the default) and a margin:
     * touching every deadline_ms renews it before it ends. */
    return ms && ms < SPATE_TIMEOUT_DEFAULT_MS ? ms : SPATE_TIMEOUT_DEFAULT_MS;
}

static void touch_pending(const char *key, void *value, void *data)
{
    fscale *fs = value;
    uint64_t now = *(const uint64_t *)data;
    for (list_node *n = list_first(&fs->triggers); n != &fs->triggers; n = n->next) {
        trigger *t = list_entry(n, trigger, link);
        if (!t->npending || now < t->pending_touch_at) continue;
        for (uint32_t i = 0; i < t->npending; i++) queue_touch(t->pending[i]);
        if (t->carry) queue_touch(t->carry);
        t->pending_touch_at = now + touch_period_ms(t->pending[0]->sub);
    }
}

static void touch_held(triggers *tr)
{
    if (!(queue_flags(tr->q) & QUEUE_SHARED)) return;
    uint64_t now = uv_now(tr->loop);
    for (list_node *n = list_first(&tr->running); n != &tr->running; n = n->next) {
        tinv *ti = list_entry(n, tinv, running);
        if (now < ti->touch_at) continue;
        for (uint32_t i = 0; i < ti->n; i++) queue_touch(ti->leases[i]);
        ti->touch_at = now + touch_period_ms(ti->leases[0]->sub);
    }
    strmap_each(&tr->scales, touch_pending, &now);
}

static void on_tick(uv_timer_t *h)
{
    triggers *tr = h->data;
    if (tr->closing) return;
    strmap_each(&tr->scales, tick_one, tr);
    touch_held(tr);
}

/* --- Invoking ------------------------------------------------------------------------- */

static uint64_t next_random(triggers *tr)
{
    /* xorshift64*: jitter needs spread, not secrecy. */
    tr->rng ^= tr->rng >> 12;
    tr->rng ^= tr->rng << 25;
    tr->rng ^= tr->rng >> 27;
    return tr->rng * 2685821657736338717ull;
}

/* 100 ms doubling to 30 s, then a random point in its upper half. */
static uint32_t backoff_ms(triggers *tr, uint32_t attempt)
{
    uint64_t d = SPATE_RETRY_BASE_MS;
    for (uint32_t i = 1; i < attempt && d < SPATE_RETRY_CAP_MS; i++) d *= 2;
    if (d > SPATE_RETRY_CAP_MS) d = SPATE_RETRY_CAP_MS;
    return (uint32_t)(d / 2 + next_random(tr) % (d / 2 + 1));
}

static void maybe_closed(triggers *tr);

/* One message failed: retried after a back-off, or to the dead letters
 * after its last attempt. */
static void fail_one(trigger *t, queue_lease *l, const char *error, int64_t visibility_ms)
{
    const queue_sub_config *cfg = cfg_of(t);
    if (triggers_is_receiver(l->sub)) {
        /* A queue's message (the trigger shares its receiver): as SQS treats
         * a failed receive, visible again when the queue's visibility
         * timeout ends; after its RedrivePolicy's maxReceiveCount-th
         * receive, to the queue's dead-letter queue (none: it stays until
         * deleted, as in SQS; nor while that queue is deleted: the message
         * would go to a bare topic no receive reads). The trigger's own
         * retries do not apply. */
        const queue_sub_config *q = queue_sub_get_config(l->sub);
        if (q->max_attempts && q->dlq[0] && l->attempt >= q->max_attempts &&
            queue_find_sub(t->owner->q, q->dlq, TRIGGERS_RECEIVER)) {
            log_warn("received %u times and failed, to %s: %s fn=%s queue=%s seq=%llu", l->attempt,
                     q->dlq, error, cfg->function, queue_sub_topic(l->sub),
                     (unsigned long long)l->msg->seq);
            queue_dead_letter(l, error);
        } else {
            /* The function's own ChangeMessageVisibility, else the queue's. */
            queue_nack(l, visibility_ms >= 0 ? (uint32_t)visibility_ms : q->deadline_ms, error);
        }
        return;
    }
    if (l->attempt >= cfg->max_attempts) {
        log_warn("giving up after %u attempts, to %s: %s fn=%s topic=%s seq=%llu", l->attempt,
                 cfg->dlq, error, cfg->function, topic_of(t), (unsigned long long)l->msg->seq);
        queue_dead_letter(l, error);
    } else {
        queue_nack(l, backoff_ms(t->owner, l->attempt), error);
    }
}

static void ack_one(trigger *t, queue_lease *l)
{
    histogram_observe(&t->end_to_end, (double)(clock_now_ms() - l->msg->published_ms) / 1e3);
    queue_ack(l);
}

/* Whether the function deleted lease i of ti by its receipt handle. */
static int deleted(const tinv *ti, uint32_t i)
{
    return ti->settled && ti->settled[i] == SETTLED_DELETED;
}

/* The visibility timeout the function gave lease i of ti; -1: none. */
static int64_t visibility_of(const tinv *ti, uint32_t i)
{
    return ti->settled && ti->settled[i] > 0 ? ti->settled[i] - 1 : -1;
}

static void ack_one(trigger *t, queue_lease *l);

/* Every message of ti failed with error, but those its function deleted. */
static void fail_all(trigger *t, tinv *ti, const char *error)
{
    for (uint32_t i = 0; i < ti->n; i++) {
        if (deleted(ti, i))
            ack_one(t, ti->leases[i]);
        else
            fail_one(t, ti->leases[i], error, visibility_of(ti, i));
    }
}

/* A batch ran: every message acknowledged, or, when the trigger asks its
 * function which failed, those it names retried (Lambda's rules: an answer
 * it cannot read fails the whole batch). */
static void settle_ok(trigger *t, tinv *ti, const char *body, size_t len)
{
    const queue_sub_config *cfg = cfg_of(t);
    uint8_t *failed = NULL;
    if (cfg->report_failures && ti->n) {
        char why[160] = "";
        failed = calloc(ti->n, 1);
        /* The ids the event showed: a queue's MessageIds when its
         * receiver's (dispatch_batch). */
        const queue_sub *src = ti->leases[0]->sub;
        const char *qname = triggers_is_receiver(src) ? topic_of(t) : NULL;
        int rc = failed ? batch_failures(body, len, ti->leases, ti->n, failed, qname,
                                         triggers_receiver_created(src), why, sizeof why)
                        : ERR_NOMEM;
        if (rc) {
            char error[sizeof why + 64];
            snprintf(error, sizeof error, "bad batchItemFailures answer: %s",
                     rc == ERR_NOMEM ? "out of memory" : why);
            fail_all(t, ti, error);
            free(failed);
            return;
        }
    }
    for (uint32_t i = 0; i < ti->n; i++) {
        if (failed && failed[i] && !deleted(ti, i))
            fail_one(t, ti->leases[i], "named in the function's batchItemFailures",
                     visibility_of(ti, i));
        else
            ack_one(t, ti->leases[i]);
    }
    free(failed);
}

static void free_tinv(tinv *ti)
{
    if (ti->leases != &ti->one) free(ti->leases);
    free(ti->settled);
    buf_free(&ti->event);
    free(ti);
}

static void on_done(invocation *inv, enum pool_outcome outcome, const char *body, size_t len,
                    void *data)
{
    tinv *ti = data;
    trigger *t = ti->t;
    triggers *tr = t->owner;
    char error[SPATE_ERROR_MESSAGE_MAX + 64];
    const queue_sub_config *cfg = cfg_of(t);
    /* Each message's outcome (async invocations' destinations: their topic
     * has one message per invocation). */
    for (uint32_t i = 0;
         tr->outcome_hook && outcome != POOL_OVERLOADED && outcome != POOL_UNAVAILABLE && i < ti->n;
         i++) {
        const queue_lease *l = ti->leases[i];
        trigger_outcome o = {
            .topic = topic_of(t),
            .function = cfg->function,
            .request_id = ti->request_id,
            .msg = l->msg,
            .attempt = l->attempt,
            .max_attempts = cfg->max_attempts,
            .version = inv->version,
            .outcome = outcome,
            .body = body,
            .len = len,
            .final = outcome == POOL_OK || l->attempt >= cfg->max_attempts,
        };
        tr->outcome_hook(&o, tr->outcome_data);
    }
    switch (outcome) {
    case POOL_OK:
        settle_ok(t, ti, body, len);
        break;
    case POOL_FAILED:
    case POOL_CRASHED:
    case POOL_TIMEOUT:
        /* Every message of the batch failed with it (each its own attempt). */
        snprintf(error, sizeof error, "%s%.*s", outcome == POOL_CRASHED ? "function crashed: " : "",
                 (int)len, body);
        fail_all(t, ti, error);
        break;
    case POOL_OVERLOADED:
    case POOL_UNAVAILABLE:
        /* It never ran: no attempt is lost. */
        for (uint32_t i = 0; i < ti->n; i++) queue_release(ti->leases[i]);
        t->stalled = 1;
        break;
    }
    t->inflight--;
    t->fs->inflight--;
    tr->inflight--;
    list_remove(&ti->running);
    free_tinv(ti);
    if (t->removed) {
        if (t->inflight == 0) free(t);
        /* A stop waits for this one too (it was running when its trigger went). */
        if (tr->closing) maybe_closed(tr);
        return;
    }
    if (tr->closing) {
        maybe_closed(tr);
        return;
    }
    if (outcome != POOL_OVERLOADED && outcome != POOL_UNAVAILABLE) {
        /* Room for more: this trigger first, then the function's others. */
        pump(t);
        for (list_node *n = list_first(&t->fs->triggers); n != &t->fs->triggers; n = n->next)
            if (list_entry(n, trigger, link) != t) pump(list_entry(n, trigger, link));
    }
}

/* Runs ti on what the trigger names of f: its active version, or the
 * version its qualifier resolves to now (an alias's weight picks per
 * invocation). One that no longer resolves ends as POOL_UNAVAILABLE (the
 * trigger stalls until a tick, pump checks again). */
static void start(trigger *t, fn *f, tinv *ti)
{
    t->inflight++;
    t->fs->inflight++;
    t->owner->inflight++;
    list_init(&ti->running);
    if (triggers_is_receiver(ti->leases[0]->sub) || (queue_flags(t->owner->q) & QUEUE_SHARED)) {
        list_push_back(&t->owner->running, &ti->running);
        ti->touch_at = uv_now(t->owner->loop) + touch_period_ms(ti->leases[0]->sub);
    }
    const queue_sub_config *cfg = queue_sub_get_config(t->sub);
    uint32_t version = ti->version; /* an async invocation's own version wins */
    fn *g = f;
    if (!version && cfg->qualifier[0] &&
        functions_resolve(t->owner->table, f->name, cfg->qualifier, &g, &version) != 0) {
        static const char msg[] = "the trigger's qualifier names no version now";
        ti->inv.done(&ti->inv, POOL_UNAVAILABLE, msg, sizeof msg - 1, ti->inv.data);
        return;
    }
    pool *used;
    functions_invoke(t->owner->table, g, version, &ti->inv, &used);
}

/* A queue's message's place in its chain of triggered invocations
 * (common/lambda.h): 0 for one a client sent. */
static uint32_t lineage_of(const queue_lease *l)
{
    const queue_attrs *a = l->msg->attrs;
    if (!triggers_is_receiver(l->sub) || !a || !a->source || strcmp(a->source, BATCH_SQS_SOURCE))
        return 0;
    return lambda_sqs_lineage(a->headers, a->headers_len);
}

/* Whether l was sent by the SPATE_SQS_LOOP_MAX-th invocation of a chain (a
 * function sending to the queue that runs it): then it fails without
 * running, as Lambda's recursive loop detection stops it, and follows the
 * queue's rules for a failure (its dead-letter queue after maxReceiveCount). */
static int loop_stopped(trigger *t, queue_lease *l)
{
    if (lineage_of(l) < SPATE_SQS_LOOP_MAX) return 0;
    const queue_sub_config *cfg = queue_sub_get_config(t->sub);
    int64_t now = clock_now_ms();
    if (now - t->loop_warned_ms >= 60000) {
        log_warn("recursive loop stopped: message %llu of queue %s was sent by the %u-th "
                 "invocation of a chain of triggered invocations; not run (said once a minute) "
                 "fn=%s",
                 (unsigned long long)l->msg->seq, queue_sub_topic(l->sub), SPATE_SQS_LOOP_MAX,
                 cfg->function);
        t->loop_warned_ms = now;
    }
    fail_one(t, l, "recursive loop detected: not run", -1);
    /* Until the next tick: on a queue whose visibility timeout is 0 the
     * message is back at once, and pump would lease it again without end. */
    t->stalled = 1;
    return 1;
}

/* Whether topic is function's own async topic, spate.async.FUNCTION. */
static int own_async_topic(const char *topic, const char *function)
{
    size_t plen = sizeof TRIGGERS_ASYNC_PREFIX - 1;
    return strncmp(topic, TRIGGERS_ASYNC_PREFIX, plen) == 0 && strcmp(topic + plen, function) == 0;
}

static void dispatch(trigger *t, fn *f, queue_lease *l)
{
    if (loop_stopped(t, l)) return;
    tinv *ti = calloc(1, sizeof *ti);
    if (!ti) {
        queue_release(l);
        t->stalled = 1;
        return;
    }
    ti->t = t;
    ti->one = l;
    ti->leases = &ti->one;
    ti->n = 1;
    const queue_attrs *at = l->msg->attrs;
    if (at && at->source && at->upstream_id && strcmp(at->source, TRIGGERS_INVOKE_SOURCE) == 0 &&
        strlen(at->upstream_id) == REQID_LEN) {
        memcpy(ti->request_id, at->upstream_id, REQID_LEN + 1);
        /* An async invocation of a version (NAME:3, or an alias of one)
         * runs that version, whichever is active now; the number is NAME's,
         * so another function's trigger on spate.async.NAME runs what its
         * own qualifier names (it ran its own version 3). */
        if (own_async_topic(queue_sub_topic(t->sub), f->name)) {
            lambda_async_attrs aa;
            lambda_async_attrs_read(at->headers, at->headers_len, &aa);
            ti->version = aa.version;
        }
    } else {
        reqid_next(ti->request_id);
    }
    ti->inv = (invocation){
        .request_id = ti->request_id,
        .payload = l->msg->data,
        .payload_len = l->msg->len,
        .attempt = l->attempt,
        .lineage = lineage_of(l) + 1,
        .topic = queue_sub_topic(t->sub),
        .key = l->msg->key,
        .attrs = l->msg->attrs,
        .done = on_done,
        .data = ti,
    };
    start(t, f, ti);
}

/* Gives the gathered leases back (not run: their attempts not counted). */
static void release_pending(trigger *t)
{
    for (uint32_t i = 0; i < t->npending; i++) queue_release(t->pending[i]);
    t->npending = 0;
    t->pending_bytes = 0;
    if (t->carry) queue_release(t->carry);
    t->carry = NULL;
}

/* Sends the gathered batch as one invocation, its event the payload. */
static void dispatch_batch(trigger *t, fn *f)
{
    const queue_sub_config *cfg = queue_sub_get_config(t->sub);
    uint32_t kept = 0, lineage = 0;
    for (uint32_t i = 0; i < t->npending; i++) {
        queue_lease *l = t->pending[i];
        if (loop_stopped(t, l)) continue;
        uint32_t n = lineage_of(l);
        if (n > lineage) lineage = n;
        t->pending[kept++] = l;
    }
    t->npending = kept;
    if (!kept) {
        t->pending_bytes = 0;
        return;
    }
    tinv *ti = calloc(1, sizeof *ti);
    queue_lease **leases = malloc(t->npending * sizeof *leases);
    if (ti) buf_init(&ti->event, SPATE_BATCH_BYTES_MAX + SPATE_MESSAGE_MAX * 8u);
    if (!ti || !leases ||
        batch_event(&ti->event, t->pending, t->npending, cfg->event_format, queue_sub_topic(t->sub),
                    triggers_is_receiver(t->pending[0]->sub),
                    triggers_receiver_created(t->pending[0]->sub), t->owner->receiver.handle,
                    t->owner->receiver.data)) {
        log_warn("cannot build a batch of %u messages: out of memory fn=%s topic=%s", t->npending,
                 cfg->function, queue_sub_topic(t->sub));
        if (ti) buf_free(&ti->event);
        free(ti);
        free(leases);
        release_pending(t);
        t->stalled = 1;
        return;
    }
    memcpy(leases, t->pending, t->npending * sizeof *leases);
    ti->t = t;
    ti->leases = leases;
    ti->n = t->npending;
    uint32_t attempt = 1;
    for (uint32_t i = 0; i < ti->n; i++)
        if (leases[i]->attempt > attempt) attempt = leases[i]->attempt;
    t->npending = 0;
    t->pending_bytes = 0;
    reqid_next(ti->request_id);
    /* No key nor attributes: those are each message's, in the event. */
    ti->inv = (invocation){
        .request_id = ti->request_id,
        .payload = ti->event.data,
        .payload_len = (uint32_t)ti->event.len,
        .attempt = attempt,
        .lineage = lineage + 1,
        .topic = queue_sub_topic(t->sub),
        .done = on_done,
        .data = ti,
    };
    start(t, f, ti);
}

static void on_window(uv_timer_t *h);

static void arm_window(triggers *tr, uint64_t end)
{
    uint64_t now = uv_now(tr->loop);
    uint64_t in = end > now ? end - now : 0;
    if (uv_is_active((uv_handle_t *)&tr->window) && uv_timer_get_due_in(&tr->window) <= in) return;
    uv_timer_start(&tr->window, on_window, in, 0);
}

/* Leases into t's batch until it is full (count or bytes) or nothing is
 * ready. 1: send it now; 0: wait (for the window, or for messages). */
static int gather(trigger *t, queue_sub *src)
{
    const queue_sub_config *cfg = queue_sub_get_config(t->sub);
    uint32_t size = batch_size(cfg);
    if (t->pending_cap < size) {
        queue_lease **p = realloc(t->pending, size * sizeof *p);
        if (!p) return t->npending > 0;
        t->pending = p;
        t->pending_cap = size;
    }
    size_t topic_len = strlen(queue_sub_topic(t->sub));
    while (t->npending < size) {
        queue_lease *l = t->carry;
        t->carry = NULL;
        if (!l) l = lease_from(src);
        if (!l) break;
        size_t bytes =
            batch_record_max(l->msg, cfg->event_format, topic_len, triggers_is_receiver(l->sub));
        /* The cap holds for every batch but a single message's own. */
        if (t->npending && t->pending_bytes + bytes > SPATE_BATCH_BYTES_MAX - 64) {
            t->carry = l;
            return 1;
        }
        if (!t->npending) {
            t->window_end = uv_now(t->owner->loop) + cfg->batch_window_ms;
            t->pending_touch_at = uv_now(t->owner->loop) + touch_period_ms(l->sub);
        }
        t->pending[t->npending++] = l;
        t->pending_bytes += bytes;
    }
    if (!t->npending) return 0;
    if (t->npending >= size || uv_now(t->owner->loop) >= t->window_end) return 1;
    arm_window(t->owner, t->window_end);
    return 0;
}

/* A trigger on a queue runs what it leases from the queue's receiver; its
 * own subscription (which keeps the trigger: its configuration, in the
 * store and the registry) sees every message too and settles each at once,
 * so that it holds none back from the topic's trimming. Messages it had
 * leased before the topic became a queue settle as they run. */
static void drain_own(trigger *t)
{
    queue_lease *l;
    t->pumping = 1; /* an event an ack may bring does not pump again inside */
    while ((l = queue_lease_next(t->sub))) queue_ack(l);
    t->pumping = 0;
}

static void pump(trigger *t)
{
    triggers *tr = t->owner;
    if (tr->closing || t->pumping || t->stalled || !t->fs) return;
    queue_sub *src = source_of(t);
    /* Even while its function is missing: what the receiver has is the
     * queue's, and the own subscription must not hold it in the store. */
    if (src != t->sub) drain_own(t);
    const queue_sub_config *cfg = queue_sub_get_config(t->sub);
    /* Paused (a disabled event source mapping): nothing leased; a batch
     * gathering when it paused goes back, its attempts not counted. */
    if (cfg->paused) {
        if (t->npending || t->carry) release_pending(t);
        return;
    }
    fn *f = functions_find(tr->table, cfg->function, strlen(cfg->function));
    if (!f) {
        if (!t->missing_warned)
            log_warn("trigger waits: function '%s' does not exist topic=%s", cfg->function,
                     queue_sub_topic(t->sub));
        t->missing_warned = 1;
        return;
    }
    /* NAME:ALIAS whose alias was removed (or NAME:3 whose function was
     * deleted and deployed anew): its messages wait, as for a function
     * that does not exist, until the alias is set again. */
    fn *g;
    uint32_t version;
    if (cfg->qualifier[0] &&
        functions_resolve(tr->table, cfg->function, cfg->qualifier, &g, &version) != 0) {
        if (!t->missing_warned)
            log_warn("trigger waits: function '%s' has no version or alias '%s' topic=%s",
                     cfg->function, cfg->qualifier, queue_sub_topic(t->sub));
        t->missing_warned = 1;
        return;
    }
    t->missing_warned = 0;
    fscale *fs = t->fs;
    /* React at once to new work: rescale if the answer is stale. */
    if (fs->out.desired == 0 || clock_mono_ns() - fs->computed_ns > 1000000) rescale(tr, fs, f);
    uint32_t allowed = allowance(fs, f);
    int batches = batched(cfg);
    /* Changed to one message per call while a batch gathered: back they go. */
    if (!batches && (t->npending || t->carry)) release_pending(t);
    t->pumping = 1;
    while (!t->stalled && fs->inflight < allowed &&
           (!cfg->max_concurrency || t->inflight < cfg->max_concurrency)) {
        if (batches) {
            if (!gather(t, src)) break;
            dispatch_batch(t, f);
            continue;
        }
        queue_lease *l = lease_from(src);
        if (!l) break;
        dispatch(t, f, l);
    }
    t->pumping = 0;
}

/* Some batch's window ended: send those due, wait for the next. */
static void window_one(const char *key, void *value, void *data)
{
    fscale *fs = value;
    uint64_t *next = data;
    for (list_node *n = list_first(&fs->triggers); n != &fs->triggers; n = n->next) {
        trigger *t = list_entry(n, trigger, link);
        if (!t->npending) continue;
        if (t->window_end <= uv_now(t->owner->loop)) pump(t);
        if (t->npending && (!*next || t->window_end < *next)) *next = t->window_end;
    }
}

static void on_window(uv_timer_t *h)
{
    triggers *tr = h->data;
    if (tr->closing) return;
    uint64_t next = 0;
    strmap_each(&tr->scales, window_one, &next);
    /* One still waiting past its end waits for capacity: a completion
     * pumps it, or the tick. */
    if (next > uv_now(tr->loop)) arm_window(tr, next);
}

/* --- Triggers ---------------------------------------------------------------------- */

int triggers_is_receiver(const queue_sub *sub)
{
    return strcmp(queue_sub_get_config(sub)->function, TRIGGERS_RECEIVER) == 0;
}

void triggers_receiver_times(const queue_sub_config *cfg, int64_t *created, int64_t *modified)
{
    long long c, m;
    if (sscanf(cfg->qualifier, "%lld %lld", &c, &m) != 2 || c < 0 || m < 0) c = m = 0;
    *created = c;
    *modified = m;
}

int64_t triggers_receiver_created(const queue_sub *receiver)
{
    int64_t created = 0, modified;
    if (receiver) triggers_receiver_times(queue_sub_get_config(receiver), &created, &modified);
    return created;
}

void triggers_set_receiver(triggers *tr, const triggers_receiver *r)
{
    tr->receiver = r ? *r : (triggers_receiver){0};
}

static void purge_pending(const char *key, void *value, void *data)
{
    (void)key;
    fscale *fs = value;
    const char *topic = data;
    for (list_node *n = list_first(&fs->triggers); n != &fs->triggers; n = n->next) {
        trigger *t = list_entry(n, trigger, link);
        /* The carried lease waits without a batch after one went. */
        const queue_lease *first = t->npending ? t->pending[0] : t->carry;
        if (!first || !triggers_is_receiver(first->sub) ||
            strcmp(queue_sub_topic(first->sub), topic) != 0)
            continue;
        for (uint32_t i = 0; i < t->npending; i++) queue_ack(t->pending[i]);
        if (t->carry) queue_ack(t->carry);
        t->npending = 0;
        t->pending_bytes = 0;
        t->carry = NULL;
    }
}

void triggers_receiver_purge(triggers *tr, const char *topic)
{
    for (list_node *n = list_first(&tr->running); n != &tr->running; n = n->next) {
        tinv *ti = list_entry(n, tinv, running);
        if (!ti->n || strcmp(queue_sub_topic(ti->leases[0]->sub), topic) != 0) continue;
        if (!ti->settled && !(ti->settled = calloc(ti->n, sizeof *ti->settled))) {
            log_warn("cannot purge the messages an invocation holds: out of memory queue=%s",
                     topic);
            continue;
        }
        for (uint32_t i = 0; i < ti->n; i++) ti->settled[i] = SETTLED_DELETED;
    }
    strmap_each(&tr->scales, purge_pending, (void *)topic);
}

int triggers_receiver_settle(triggers *tr, const char *topic, uint64_t seq, uint32_t attempt,
                             int op, uint32_t visibility_ms)
{
    /* Every invocation of a receiver's leases is in running: a few per
     * function, bounded by the pools (in cluster mode every trigger's too). */
    for (list_node *n = list_first(&tr->running); n != &tr->running; n = n->next) {
        tinv *ti = list_entry(n, tinv, running);
        if (!ti->n || !triggers_is_receiver(ti->leases[0]->sub)) continue;
        for (uint32_t i = 0; i < ti->n; i++) {
            const queue_lease *l = ti->leases[i];
            if (l->msg->seq != seq || l->attempt != attempt ||
                strcmp(queue_sub_topic(l->sub), topic) != 0)
                continue;
            if (!ti->settled && !(ti->settled = calloc(ti->n, sizeof *ti->settled))) return -1;
            if (ti->settled[i] == SETTLED_DELETED) return 0; /* deleted stays deleted */
            ti->settled[i] =
                op == TRIGGERS_SETTLE_DELETE ? SETTLED_DELETED : (int64_t)visibility_ms + 1;
            return 0;
        }
    }
    return -1;
}

/* The trigger of sub, made on first sight; NULL for a queue's receiver
 * (never a trigger) or when out of memory. */
static trigger *trigger_of(triggers *tr, queue_sub *sub)
{
    trigger *t = queue_sub_data(sub);
    if (t) return t;
    if (triggers_is_receiver(sub)) return NULL;
    t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->owner = tr;
    t->sub = sub;
    t->fs = scale_for(tr, queue_sub_get_config(sub)->function);
    if (t->fs)
        list_push_back(&t->fs->triggers, &t->link);
    else
        list_init(&t->link);
    queue_sub_set_data(sub, t);
    return t;
}

typedef struct sharing_ctx {
    triggers *tr;
    const char *topic;
} sharing_ctx;

static void pump_sharing(queue_sub *sub, void *data)
{
    sharing_ctx *c = data;
    if (triggers_is_receiver(sub) || strcmp(queue_sub_topic(sub), c->topic) != 0) return;
    trigger *t = trigger_of(c->tr, sub);
    if (t) pump(t);
}

void triggers_receiver_available(triggers *tr, queue_sub *receiver)
{
    if (tr->closing || !tr->q) return;
    /* Few subscriptions a node: a scan, rather than a second index of them
     * by topic to keep in step with the queue's. */
    sharing_ctx c = {tr, queue_sub_topic(receiver)};
    queue_each_sub(tr->q, pump_sharing, &c);
}

static void on_available(queue_sub *sub, void *data)
{
    triggers *tr = data;
    if (triggers_is_receiver(sub)) {
        /* ReceiveMessage's long polls first (they wait on a connection),
         * then the triggers that share the receiver. */
        if (tr->receiver.available && !tr->closing) tr->receiver.available(sub, tr->receiver.data);
        triggers_receiver_available(tr, sub);
        /* Cluster mode: what this node fetched and nobody here took now
         * goes back to JetStream at once (released: no attempt counted),
         * for a receive on another node, rather than held until AckWait. */
        if (queue_flags(tr->q) & QUEUE_SHARED && !tr->closing) {
            queue_lease *l;
            while ((l = queue_lease_next(sub))) queue_release(l);
        }
        return;
    }
    trigger *t = trigger_of(tr, sub);
    if (t) pump(t);
}

static uint32_t on_room(queue_sub *sub, void *data);

typedef struct room_ctx {
    triggers *tr;
    const char *topic;
    uint64_t room;
} room_ctx;

static void add_sharing_room(queue_sub *sub, void *data)
{
    room_ctx *c = data;
    if (triggers_is_receiver(sub) || strcmp(queue_sub_topic(sub), c->topic) != 0) return;
    c->room += on_room(sub, c->tr);
}

/* A receiver's room: its receives' and that of the triggers sharing it
 * (which lease from it, not from their own subscriptions). */
static uint32_t receiver_room(triggers *tr, queue_sub *receiver)
{
    room_ctx c = {tr, queue_sub_topic(receiver), 0};
    if (tr->receiver.room) c.room = tr->receiver.room(receiver, tr->receiver.data);
    if (tr->q) queue_each_sub(tr->q, add_sharing_room, &c);
    return c.room > UINT32_MAX ? UINT32_MAX : (uint32_t)c.room;
}

/* How many more of sub's messages may start now: what pump would take. */
static uint32_t on_room(queue_sub *sub, void *data)
{
    triggers *tr = data;
    if (tr->closing) return 0;
    if (triggers_is_receiver(sub)) return receiver_room(tr, sub);
    trigger *t = trigger_of(tr, sub);
    if (!t || !t->fs || t->stalled || tr->closing) return 0;
    const queue_sub_config *cfg = queue_sub_get_config(sub);
    if (cfg->paused) return 0;
    fn *f = functions_find(tr->table, cfg->function, strlen(cfg->function));
    if (!f) return 0;
    uint32_t allowed = allowance(t->fs, f);
    uint32_t room = allowed > t->fs->inflight ? allowed - t->fs->inflight : 0;
    if (cfg->max_concurrency) {
        uint32_t left = cfg->max_concurrency > t->inflight ? cfg->max_concurrency - t->inflight : 0;
        if (left < room) room = left;
    }
    /* Room is in invocations; a batch takes up to batch_size messages. */
    uint64_t msgs = (uint64_t)room * batch_size(cfg);
    msgs = msgs > t->npending ? msgs - t->npending : 0;
    return msgs > UINT32_MAX ? UINT32_MAX : (uint32_t)msgs;
}

triggers *triggers_create(uv_loop_t *loop, functions *table)
{
    triggers *tr = calloc(1, sizeof *tr);
    if (!tr) return NULL;
    tr->loop = loop;
    tr->table = table;
    tr->ev.available = on_available;
    tr->ev.room = on_room;
    tr->ev.data = tr;
    strmap_init(&tr->scales);
    list_init(&tr->running);
    if (getrandom(&tr->rng, sizeof tr->rng, 0) != sizeof tr->rng || !tr->rng)
        tr->rng = 0x9e3779b97f4a7c15ull;
    uv_timer_init(loop, &tr->tick);
    tr->tick.data = tr;
    uv_timer_init(loop, &tr->window);
    tr->window.data = tr;
    tr->handles_open = 2;
    return tr;
}

const queue_events *triggers_events(triggers *tr)
{
    return &tr->ev;
}

static void attach_one(queue_sub *sub, void *data)
{
    trigger *t = trigger_of(data, sub);
    if (t) pump(t);
}

void triggers_set_nodes(triggers *tr, uint32_t (*live)(void *data), void *data)
{
    tr->live_nodes = live;
    tr->live_nodes_data = data;
}

void triggers_set_outcome_hook(triggers *tr, triggers_outcome_cb cb, void *data)
{
    tr->outcome_hook = cb;
    tr->outcome_data = data;
}

queue *triggers_queue(triggers *tr)
{
    return tr->q;
}

static void on_function_put(const char *name, fn_config *cfg, buf *artifact,
                            registry_applied_cb applied, void *applied_data, void *data);
static int on_function_deleted(const char *name, void *data);
static void on_function_activate(const char *name, uint32_t version, registry_applied_cb applied,
                                 void *applied_data, void *data);
static void on_aliases_changed(const char *function, void *data);
static void on_trigger_put(const char *topic, const queue_sub_config *cfg, registry_done_cb applied,
                           void *applied_data, void *data);
static void on_trigger_removed(const char *topic, const char *function, registry_done_cb applied,
                               void *applied_data, void *data);

void triggers_attach(triggers *tr, queue *q)
{
    tr->q = q;
    /* From now on the changes other nodes make reach this one. */
    registry_events ev = {
        .function_put = on_function_put,
        .function_deleted = on_function_deleted,
        .function_activate = on_function_activate,
        .aliases_changed = on_aliases_changed,
        .trigger_put = on_trigger_put,
        .trigger_removed = on_trigger_removed,
        .data = tr,
    };
    registry_set_events(functions_registry(tr->table), &ev);
    queue_each_sub(q, attach_one, tr);
    uv_timer_start(&tr->tick, on_tick, SPATE_AUTOSCALE_TICK_MS, SPATE_AUTOSCALE_TICK_MS);
}

/* A trigger added or removed: through this node (recorded in the registry,
 * which tells the other nodes), or as the registry says (made elsewhere:
 * applied to the queue only). */
typedef struct add_ctx {
    triggers *tr;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    char function[SPATE_NAME_MAX + 1];
    int record;
    int existed; /* the subscription was there before (a change) */
    queue_done_cb done;
    void *data;
} add_ctx;

static void change_done(add_ctx *c)
{
    triggers *tr = c->tr;
    free(c);
    tr->changing--;
    if (tr->closing) maybe_closed(tr);
}

static int remove_trigger(triggers *tr, const char *topic, const char *function, int record,
                          queue_done_cb done, void *data);

static void forgotten(void *data, int status)
{
    (void)data;
    (void)status;
}

typedef struct find_trigger {
    const char *topic, *function;
    int found;
} find_trigger;

static void find_one(const char *topic, const queue_sub_config *cfg, void *data)
{
    find_trigger *f = data;
    if (strcmp(topic, f->topic) == 0 && strcmp(cfg->function, f->function) == 0) f->found = 1;
}

static void on_added(void *data, int status)
{
    add_ctx *c = data;
    /* A new trigger the cluster refused (its consumer is another
     * trigger's: ERR_EXISTS) is no trigger here either: it would show on
     * this node alone, never pulling. Gone again, its name recorded
     * nowhere (the other trigger's consumer stays, jsqueue/subscribe.c).
     * So is one added through this node that could not be set up (its
     * consumers not made: JetStream unavailable, answered 503): it stayed,
     * here alone, never pulling, and an add again was refused (409); the
     * consumers made before the failure go with it (they would keep the
     * topic's messages for ever). Unless the registry has it meanwhile
     * (added through another node): that one is the cluster's. */
    find_trigger same = {c->topic, c->function, 0};
    if (status != 0 && status != ERR_EXISTS && !c->existed && c->record)
        registry_each_trigger(functions_registry(c->tr->table), find_one, &same);
    if (status != 0 && !c->existed && !same.found && (status == ERR_EXISTS || c->record))
        remove_trigger(c->tr, c->topic, c->function, 0, forgotten, NULL);
    if (status == 0) {
        queue_sub *sub = queue_find_sub(c->tr->q, c->topic, c->function);
        if (sub && c->record)
            registry_trigger_put(functions_registry(c->tr->table), c->topic,
                                 queue_sub_get_config(sub));
        if (sub) {
            trigger *t = trigger_of(c->tr, sub);
            if (t) pump(t);
        }
    }
    c->done(c->data, status);
    change_done(c);
}

static add_ctx *new_ctx(triggers *tr, const char *topic, const char *function, int record,
                        queue_done_cb done, void *data)
{
    add_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->tr = tr;
    snprintf(c->topic, sizeof c->topic, "%s", topic);
    snprintf(c->function, sizeof c->function, "%s", function);
    c->record = record;
    c->done = done;
    c->data = data;
    return c;
}

static int add(triggers *tr, const char *topic, const queue_sub_config *cfg, int record,
               queue_done_cb done, void *data)
{
    add_ctx *c = new_ctx(tr, topic, cfg->function, record, done, data);
    if (!c) return -1;
    c->existed = queue_find_sub(tr->q, topic, cfg->function) != NULL;
    /* The lease lasts as long as the function may run, as the function is
     * now: set at every add or change of the trigger (a redeploy with another
     * timeout reaches it at its next change, or when a node applies it again
     * at start), whatever the caller's copy of the configuration says. */
    queue_sub_config with = *cfg;
    fn *f = functions_find(tr->table, cfg->function, strlen(cfg->function));
    /* A batch's first message waits up to the window before it runs. */
    with.ack_wait_ms = f ? f->active.config.timeout_ms + cfg->batch_window_ms : 0;
    /* A queue's receiver: a receive holds its message for the queue's
     * visibility timeout (deadline_ms; api/sqs.h), a cluster's AckWait. */
    if (strcmp(cfg->function, TRIGGERS_RECEIVER) == 0) with.ack_wait_ms = cfg->deadline_ms;
    tr->changing++;
    int rc = queue_subscribe(tr->q, topic, &with, on_added, c);
    if (rc) {
        tr->changing--;
        free(c);
    }
    return rc;
}

int triggers_add(triggers *tr, const char *topic, const queue_sub_config *cfg, queue_done_cb done,
                 void *data)
{
    return add(tr, topic, cfg, 1, done, data);
}

static void on_removed(void *data, int status)
{
    add_ctx *c = data;
    if (status == 0 && c->record)
        registry_trigger_remove(functions_registry(c->tr->table), c->topic, c->function);
    c->done(c->data, status);
    change_done(c);
}

static int remove_trigger(triggers *tr, const char *topic, const char *function, int record,
                          queue_done_cb done, void *data)
{
    add_ctx *c = new_ctx(tr, topic, function, record, done, data);
    if (!c) return ERR_NOMEM;
    queue_sub *sub = queue_find_sub(tr->q, topic, function);
    trigger *t = sub ? queue_sub_data(sub) : NULL;
    if (t) {
        /* Invocations still running keep t until they end (on_done). */
        list_remove(&t->link);
        list_init(&t->link);
        queue_sub_set_data(sub, NULL);
        t->stalled = 1; /* never pumps again */
        t->gone = *queue_sub_get_config(sub);
        snprintf(t->gone_topic, sizeof t->gone_topic, "%s", queue_sub_topic(sub));
        t->removed = 1;
    }
    tr->changing++;
    int rc = queue_unsubscribe(tr->q, topic, function, on_removed, c);
    if (rc) {
        tr->changing--;
        free(c);
    }
    /* The gathering batch goes back only now that the subscription is
     * gone from the topic: a lease given back to a queue's receiver wakes
     * the triggers sharing it (pump_sharing walks the topic's
     * subscriptions), which made this one a new trigger (its data cleared
     * above) that outlived its freed subscription (heap use after free
     * when a mapping gathering a batch was deleted). */
    if (t) {
        release_pending(t);
        free(t->pending);
        t->pending = NULL;
        if (t->inflight == 0) free(t);
    }
    return rc;
}

int triggers_remove(triggers *tr, const char *topic, const char *function, queue_done_cb done,
                    void *data)
{
    return remove_trigger(tr, topic, function, 1, done, data);
}

/* --- Changes made on other nodes (the registry's events) ---------------------------- */

typedef struct applying {
    registry_applied_cb applied;
    void *applied_data;
} applying;

static void on_fn_applied(const deploy_result *r, void *data)
{
    applying *a = data;
    a->applied(a->applied_data, r->status, r->message, r->f ? r->f->active.version : 0);
    free(a);
}

static void on_function_put(const char *name, fn_config *cfg, buf *artifact,
                            registry_applied_cb applied, void *applied_data, void *data)
{
    triggers *tr = data;
    applying *a = malloc(sizeof *a);
    if (!a) {
        fnconfig_free(cfg);
        buf_free(artifact);
        applied(applied_data, 500, "out of memory", 0);
        return;
    }
    *a = (applying){applied, applied_data};
    functions_deploy(tr->table, name, cfg, artifact, on_fn_applied, a);
}

static int on_function_deleted(const char *name, void *data)
{
    triggers *tr = data;
    return functions_delete(tr->table, name);
}

/* A rollback made elsewhere, to a version this node has. */
static void on_function_activate(const char *name, uint32_t version, registry_applied_cb applied,
                                 void *applied_data, void *data)
{
    triggers *tr = data;
    applying *a = malloc(sizeof *a);
    if (!a) {
        applied(applied_data, 500, "out of memory", 0);
        return;
    }
    *a = (applying){applied, applied_data};
    functions_rollback(tr->table, name, version, on_fn_applied, a);
}

static void on_aliases_changed(const char *function, void *data)
{
    triggers *tr = data;
    functions_aliases_reload(tr->table, function);
}

/* Applied to the queue only: the registry holds it already. */
static void on_trigger_put(const char *topic, const queue_sub_config *cfg, registry_done_cb applied,
                           void *applied_data, void *data)
{
    triggers *tr = data;
    queue_sub *sub = queue_find_sub(tr->q, topic, cfg->function);
    const queue_sub_config *cur = sub ? queue_sub_get_config(sub) : NULL;
    if (cur && strcmp(cur->dlq, cfg->dlq) == 0 && cur->max_attempts == cfg->max_attempts &&
        cur->deadline_ms == cfg->deadline_ms && cur->max_concurrency == cfg->max_concurrency &&
        cur->ordered == cfg->ordered && batch_size(cur) == batch_size(cfg) &&
        cur->batch_window_ms == cfg->batch_window_ms && cur->event_format == cfg->event_format &&
        cur->report_failures == cfg->report_failures && cur->paused == cfg->paused &&
        cur->modified_ms == cfg->modified_ms && strcmp(cur->qualifier, cfg->qualifier) == 0) {
        applied(applied_data, 0); /* as it is here already */
        return;
    }
    int rc = add(tr, topic, cfg, 0, applied, applied_data);
    if (rc) applied(applied_data, rc);
}

static void on_trigger_removed(const char *topic, const char *function, registry_done_cb applied,
                               void *applied_data, void *data)
{
    triggers *tr = data;
    if (!queue_find_sub(tr->q, topic, function)) {
        applied(applied_data, 0); /* gone here already */
        return;
    }
    /* A queue deleted on another node: what this node's receives hold of
     * it goes back first, and its long polls answer. */
    if (strcmp(function, TRIGGERS_RECEIVER) == 0 && tr->receiver.removed)
        tr->receiver.removed(topic, tr->receiver.data);
    int rc = remove_trigger(tr, topic, function, 0, applied, applied_data);
    if (rc) applied(applied_data, rc);
}

void triggers_scale_view(triggers *tr, const char *function, scale_view *out)
{
    memset(out, 0, sizeof *out);
    fscale *fs = strmap_get(&tr->scales, function, strlen(function));
    if (!fs || list_empty(&fs->triggers)) return;
    /* Figures of this moment, as the pool's beside them: the ETA agrees
     * with the backlog and handler time shown. */
    fn *f = functions_find(tr->table, fs->name, strlen(fs->name));
    if (f) rescale(tr, fs, f);
    out->has_triggers = 1;
    out->arrival_per_s = fs->in.arrival_per_s;
    out->service_ms = fs->in.service_s * 1000;
    out->backlog = (uint64_t)fs->in.backlog;
    out->oldest_age_s = fs->in.oldest_age_s;
    out->desired = fs->out.desired;
    out->eta_s = fs->out.eta_s;
    out->deadline_s = fs->in.deadline_s;
    out->time_left_s = fs->out.time_left_s;
    out->at_risk = fs->out.at_risk;
}

typedef struct each_ctx {
    const char *topic;
    void (*cb)(const trigger_view *v, void *data);
    void *data;
} each_ctx;

static void fill_view(queue_sub *sub, trigger_view *v)
{
    *v = (trigger_view){.topic = queue_sub_topic(sub), .cfg = queue_sub_get_config(sub)};
    trigger *t = queue_sub_data(sub);
    /* On a queue: the queue's figures, which its receiver keeps (its own
     * subscription settles everything at once). */
    queue_sub_get_stats(t ? source_of(t) : sub, &v->stats);
    v->in_flight = t ? t->inflight : 0;
    v->end_to_end = t ? &t->end_to_end : NULL;
}

static void view_one(queue_sub *sub, void *data)
{
    each_ctx *c = data;
    if (c->topic && strcmp(queue_sub_topic(sub), c->topic) != 0) return;
    if (triggers_is_receiver(sub)) return;
    trigger_view v;
    fill_view(sub, &v);
    c->cb(&v, c->data);
}

void triggers_each(triggers *tr, void (*cb)(const trigger_view *v, void *data), void *data)
{
    each_ctx c = {NULL, cb, data};
    queue_each_sub(tr->q, view_one, &c);
}

typedef struct page_ctx {
    const char *after_topic, *after_function;
    queue_sub **heap; /* the page's so far, the last in order at the top */
    uint32_t n, cap;  /* cap: limit + 1 (the one past the page says "more") */
    uint32_t total;
} page_ctx;

static int sub_cmp(queue_sub *a, queue_sub *b)
{
    int c = strcmp(queue_sub_topic(a), queue_sub_topic(b));
    return c ? c : strcmp(queue_sub_get_config(a)->function, queue_sub_get_config(b)->function);
}

static void heap_down(queue_sub **h, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t big = i, l = 2 * i + 1, r = l + 1;
        if (l < n && sub_cmp(h[l], h[big]) > 0) big = l;
        if (r < n && sub_cmp(h[r], h[big]) > 0) big = r;
        if (big == i) return;
        queue_sub *x = h[i];
        h[i] = h[big];
        h[big] = x;
        i = big;
    }
}

static void page_one(queue_sub *sub, void *data)
{
    page_ctx *c = data;
    if (triggers_is_receiver(sub)) return;
    c->total++;
    if (c->after_topic) {
        int k = strcmp(queue_sub_topic(sub), c->after_topic);
        if (k < 0 ||
            (k == 0 && strcmp(queue_sub_get_config(sub)->function, c->after_function) <= 0))
            return;
    }
    if (c->n < c->cap) {
        /* Up: the heap's top is its last in order. */
        uint32_t i = c->n++;
        c->heap[i] = sub;
        while (i > 0 && sub_cmp(c->heap[(i - 1) / 2], c->heap[i]) < 0) {
            queue_sub *x = c->heap[i];
            c->heap[i] = c->heap[(i - 1) / 2];
            c->heap[(i - 1) / 2] = x;
            i = (i - 1) / 2;
        }
    } else if (sub_cmp(sub, c->heap[0]) < 0) {
        c->heap[0] = sub;
        heap_down(c->heap, c->n, 0);
    }
}

int triggers_page(triggers *tr, const char *after_topic, const char *after_function, uint32_t limit,
                  int (*cb)(const trigger_view *v, void *data), void *data, int *more,
                  uint32_t *total)
{
    page_ctx c = {.after_topic = after_topic,
                  .after_function = after_function ? after_function : "",
                  .cap = limit + 1};
    if (!(c.heap = malloc((size_t)c.cap * sizeof *c.heap))) return ERR_NOMEM;
    queue_each_sub(tr->q, page_one, &c);
    /* Heapsort: ascending in place. */
    for (uint32_t n = c.n; n > 1; n--) {
        queue_sub *x = c.heap[0];
        c.heap[0] = c.heap[n - 1];
        c.heap[n - 1] = x;
        heap_down(c.heap, n - 1, 0);
    }
    *more = c.n > limit;
    *total = c.total;
    for (uint32_t i = 0; i < c.n && i < limit; i++) {
        trigger_view v;
        fill_view(c.heap[i], &v);
        if (cb(&v, data)) {
            *more = 1;
            break;
        }
    }
    free(c.heap);
    return 0;
}

void triggers_each_of_topic(triggers *tr, const char *topic,
                            void (*cb)(const trigger_view *v, void *data), void *data)
{
    each_ctx c = {topic, cb, data};
    queue_each_sub_of(tr->q, topic, view_one, &c);
}

/* --- Closing ---------------------------------------------------------------------------- */

static void free_scale(const char *key, void *value, void *data)
{
    free(value);
}

static void free_trigger(queue_sub *sub, void *data)
{
    trigger *t = queue_sub_data(sub);
    if (t) free(t->pending);
    free(t);
    queue_sub_set_data(sub, NULL);
}

static void release_one(queue_sub *sub, void *data)
{
    trigger *t = queue_sub_data(sub);
    if (t) release_pending(t);
}

static void on_tick_closed(uv_handle_t *h)
{
    triggers *tr = h->data;
    if (--tr->handles_open > 0) return;
    void (*cb)(void *) = tr->close_cb;
    void *data = tr->close_data;
    if (tr->q) {
        queue_each_sub(tr->q, free_trigger, NULL);
        queue_events none = {0};
        queue_set_events(tr->q, &none);
        registry_events no_changes = {0};
        registry_set_events(functions_registry(tr->table), &no_changes);
    }
    strmap_each(&tr->scales, free_scale, NULL);
    strmap_free(&tr->scales);
    free(tr);
    if (cb) cb(data);
}

static void maybe_closed(triggers *tr)
{
    if (!tr->closing || tr->inflight > 0 || tr->changing > 0 ||
        uv_is_closing((uv_handle_t *)&tr->tick))
        return;
    uv_close((uv_handle_t *)&tr->tick, on_tick_closed);
    uv_close((uv_handle_t *)&tr->window, on_tick_closed);
}

void triggers_close(triggers *tr, int drain, void (*cb)(void *data), void *data)
{
    if (!tr->closing) {
        tr->close_cb = cb;
        tr->close_data = data;
    }
    tr->closing = 1;
    tr->drain = drain;
    uv_timer_stop(&tr->tick);
    uv_timer_stop(&tr->window);
    /* Batches still gathering never ran: their messages go back. */
    if (tr->q) queue_each_sub(tr->q, release_one, NULL);
    if (tr->receiver.closing) tr->receiver.closing(tr->receiver.data);
    tr->receiver = (triggers_receiver){0};
    maybe_closed(tr);
}
