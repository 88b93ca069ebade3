/*
 * dispatch.c - the pool's invocations: the FIFO wait queue, the mailboxes of
 * busy instances (invocations queued behind a running one when that starts
 * them sooner than a cold start would), and answering each exactly once.
 */
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "sched/pool/internal.h"

/* --- Invocations ------------------------------------------------------------ */

uint64_t *pool_version_slot(pool_version_outcomes *table, uint32_t version)
{
    size_t pick = 0;
    for (size_t i = 0; i < POOL_METRIC_VERSIONS; i++) {
        if (table[i].version == version) return table[i].outcomes;
        if (table[i].version < table[pick].version) pick = i;
    }
    memset(&table[pick], 0, sizeof table[pick]);
    table[pick].version = version;
    return table[pick].outcomes;
}

void pool__finish(pool *p, invocation *inv, enum pool_outcome outcome, const char *body, size_t len)
{
    p->m.outcomes[outcome]++;
    /* Not dispatched (refused, withdrawn): the version it was meant for. */
    uint32_t version = inv->version ? inv->version : p->active ? p->active->number : 0;
    if (version) pool_version_slot(p->m.by_version, version)[outcome]++;
    pool__remember(p, inv, outcome, version, body, len);
    log_debug("invocation %s fn=%s req=%s", pool_outcome_name(outcome), p->name, inv->request_id);
    inv->runner = NULL;
    inv->done(inv, outcome, body, len, inv->data);
}

void pool__finish_msg(pool *p, invocation *inv, enum pool_outcome outcome, const char *msg)
{
    pool__finish(p, inv, outcome, msg, strlen(msg));
}

/* Fails every waiting invocation. The queue is emptied before any callback
 * runs, since a callback may queue new work. */
void pool__fail_waiting(pool *p, enum pool_outcome outcome, const char *msg)
{
    list_node failed;
    list_init(&failed);
    while (!list_empty(&p->waiting)) {
        list_node *n = list_first(&p->waiting);
        list_remove(n);
        list_push_back(&failed, n);
    }
    p->nwaiting = 0;
    while (!list_empty(&failed)) {
        list_node *n = list_first(&failed);
        list_remove(n);
        invocation *inv = list_entry(n, invocation, link);
        pool__finish_msg(p, inv, outcome, msg);
    }
}

invocation *pool__dequeue(pool *p)
{
    list_node *n = list_first(&p->waiting);
    list_remove(n);
    p->nwaiting--;
    return list_entry(n, invocation, link);
}

static void insert_busy(pool *p, pinst *pi)
{
    list_node *at = list_last(&p->busy);
    while (at != &p->busy && list_entry(at, pinst, link)->deadline > pi->deadline) at = at->prev;
    list_insert_after(at, &pi->link);
    p->nbusy++;
}

static invocation *head_of(pinst *pi)
{
    return list_entry(list_first(&pi->inflight), invocation, link);
}

/* The head of the mailbox starts running now: its timeout starts too. */
void pool__head_started(pinst *pi)
{
    pool *p = pi->pool;
    invocation *head = head_of(pi);
    pi->state = PI_BUSY;
    pi->started = p->last_start = pool__now_ms(p);
    pi->overdue_seen = pi->deadline_seen = 0;
    pi->deadline = pool__now_ms(p) + head->timeout_ms;
    pi->check_at = pool__check_time(pool__now_ms(p) + SPATE_PIDS_FIRST_CHECK_MS);
    pi->check_every = SPATE_PIDS_CHECK_MS;
    /* Once an invocation: one given back (release_tail, a withdrawn
     * mailbox) and started again counted twice, more waits than
     * invocations (make sanitize's load). */
    if (!head->wait_observed) {
        head->wait_observed = 1;
        histogram_observe(&p->m.queue_wait, (double)(clock_mono_ns() - head->queued_ns) / 1e9);
    }
    instance_set_request(pi->inst, head->request_id);
    insert_busy(p, pi);
    pool__arm(p, pi->deadline < pi->check_at ? pi->deadline : pi->check_at);
}

/* The running invocation leaves pi (done, failed, or moved). */
static void head_left(pinst *pi)
{
    if (!pi->outlasted) return;
    pi->outlasted = 0;
    pi->pool->noutlasted--;
}

/* Puts what pi holds beyond its first keep invocations back at the front of
 * the wait queue, in order: none of it has started (with keep 0, pi's head
 * had not really started either: the instance could not take it or died). */
static void requeue_beyond(pinst *pi, uint32_t keep)
{
    pool *p = pi->pool;
    if (keep == 0) head_left(pi);
    while (pi->depth > keep) {
        invocation *inv = list_entry(list_last(&pi->inflight), invocation, link);
        list_remove(&inv->link);
        inv->runner = NULL;
        list_push_front(&p->waiting, &inv->link);
        p->nwaiting++;
        if (--pi->depth > 0) p->nqueued--;
        pool__arm(p, inv->wait_deadline);
    }
}

void pool__requeue_inflight(pinst *pi)
{
    requeue_beyond(pi, 0);
}

invocation *pool__pop_head(pinst *pi)
{
    invocation *inv = head_of(pi);
    head_left(pi);
    list_remove(&inv->link);
    if (pi->depth-- > 1) pi->pool->nqueued--;
    inv->runner = NULL;
    return inv;
}

/* An invocation's timeout: the version's, or the caller's if shorter. */
static uint32_t timeout_of(const invocation *inv, uint32_t configured)
{
    return inv->timeout_limit_ms && inv->timeout_limit_ms < configured ? inv->timeout_limit_ms
                                                                       : configured;
}

/* Sends inv to pi's mailbox; pi is idle (and unlinked) or busy. If the
 * instance cannot take it, inv goes back to the wait queue and pi stops. */
static void dispatch_to(pinst *pi, invocation *inv)
{
    pool *p = pi->pool;
    uint32_t timeout = timeout_of(inv, pi->ver->cfg.timeout_ms);
    frame_invoke fi = {
        .deadline_ms = clock_now_ms() + timeout,
        .attempt = inv->attempt ? inv->attempt : 1,
        .request_id = inv->request_id,
        .function = p->name,
        .topic = inv->topic,
        .key = inv->key,
        .payload = inv->payload,
        .payload_len = inv->payload_len,
        .lineage = inv->lineage,
    };
    if (inv->attrs) {
        fi.has_attrs = 1;
        fi.redelivered = inv->attrs->redelivered;
        fi.upstream_ts_ms = inv->attrs->upstream_ts_ms;
        fi.source = inv->attrs->source;
        fi.upstream_id = inv->attrs->upstream_id;
        fi.headers = inv->attrs->headers;
        fi.headers_len = inv->attrs->headers_len;
    }
    if (instance_invoke(pi->inst, &fi) != 0) {
        list_push_front(&p->waiting, &inv->link);
        p->nwaiting++;
        if (pi->state == PI_BUSY) pool__unlink_instance(pi);
        pool__requeue_inflight(pi);
        pi->state = PI_STOPPING;
        p->nstopping++;
        instance_kill(pi->inst);
        pool__grow(p);
        return;
    }
    inv->runner = pi;
    inv->version = pi->ver->number;
    inv->timeout_ms = timeout;
    list_push_back(&pi->inflight, &inv->link);
    if (++pi->depth == 1)
        pool__head_started(pi);
    else
        p->nqueued++;
}

/* How many invocations one instance may hold: queueing behind a busy
 * instance beats starting another only while the wait (depth times the
 * handler time) is shorter than a cold start. 1 means no queueing. */
uint32_t pool__mailbox_fit(const pool *p)
{
    if (p->service_us <= 0) return 1;
    double n = p->cold_us / p->service_us;
    if (n < 1) return 1;
    return n > SPATE_PREFETCH_MAX ? SPATE_PREFETCH_MAX : (uint32_t)n;
}

/* The same, and no queueing while an invocation runs that has proved the
 * handler time estimate wrong (see pool__outlasted()). */
uint32_t pool__mailbox_limit(const pool *p)
{
    return p->noutlasted ? 1 : pool__mailbox_fit(p);
}

/* How long (loop ms) an invocation may run before it proves the handler
 * time estimate stale (SPATE_OUTLASTED_MIN_MS). */
uint64_t pool__outlasted_after_ms(const pool *p)
{
    double us = p->cold_us > 4 * p->service_us ? p->cold_us : 4 * p->service_us;
    uint64_t ms = (uint64_t)(us / 1000) + 1;
    return ms > SPATE_OUTLASTED_MIN_MS ? ms : SPATE_OUTLASTED_MIN_MS;
}

/* The handler time: the moving average of results, or what every running
 * invocation has already lasted when that is longer (past the floor that
 * keeps scheduling noise out, or at once when one has proved the average
 * wrong). A function fast at first and slow now must not look fast to the
 * autoscaler until its first slow result is in. */
double pool__service_estimate(const pool *p)
{
    if (p->nbusy == 0) return p->service_us;
    double ran_us = (double)(pool__now_ms(p) - p->last_start) * 1000;
    if (ran_us <= p->service_us) return p->service_us;
    return p->noutlasted || ran_us >= SPATE_OUTLASTED_MIN_MS * 1000.0 ? ran_us : p->service_us;
}

/* Takes back what waits in pi's mailbox behind the invocation it runs and
 * puts it in the wait queue (the caller serves it). What the instance cannot
 * be sure of giving back stays, and comes back through
 * on_instance_withdrawn if it did not run. */
void pool__release_tail(pinst *pi)
{
    if (pi->depth < 2) return;
    uint32_t n = instance_withdraw(pi->inst, pi->depth - 1);
    requeue_beyond(pi, pi->depth - n);
}

/* pi's running invocation has lasted past what its mailbox bet on: what
 * waits behind it goes to idle or new instances, and no mailbox takes more
 * while it runs. */
void pool__outlasted(pinst *pi, uint64_t ran_ms)
{
    pool *p = pi->pool;
    pi->outlasted = 1;
    p->noutlasted++;
    if (pi->depth > 1)
        log_info("invocation running for %llu ms, handler time estimate %.3f ms: %u waiting "
                 "behind it go to other instances fn=%s req=%s",
                 (unsigned long long)ran_ms, p->service_us / 1000, pi->depth - 1, p->name,
                 head_of(pi)->request_id);
    pool__release_tail(pi);
}

/* The instance that will start inv soonest, or NULL: an idle one (waking it
 * costs SPATE_WAKE_COST_US), or the least loaded busy one whose mailbox has
 * room, if the handlers ahead finish sooner than that. */
static pinst *pick(pool *p, const invocation *inv)
{
    pinst *idle = p->nidle ? list_entry(list_first(&p->idle), pinst, link) : NULL;
    uint32_t limit = pool__mailbox_limit(p);
    if (limit <= 1 || inv->payload_len > SPATE_PREFETCH_PAYLOAD_MAX) return idle;
    /* Queued in a mailbox is waiting too: it counts against the queue limit. */
    if (p->nwaiting + p->nqueued >= p->active->cfg.queue_max) return idle;
    pinst *best = NULL;
    for (list_node *n = list_first(&p->busy); n != &p->busy; n = n->next) {
        pinst *pi = list_entry(n, pinst, link);
        if (pi->depth >= limit || pi->ver != p->active || !instance_usable(pi->inst)) continue;
        if (!best || pi->depth < best->depth) best = pi;
        if (best->depth == 1) break;
    }
    if (!best) return idle;
    if (!idle || best->depth * p->service_us < SPATE_WAKE_COST_US) return best;
    return idle;
}

/* Fills pi's mailbox from the wait queue while that is worth it. */
void pool__top_up(pinst *pi)
{
    pool *p = pi->pool;
    uint32_t limit = pool__mailbox_limit(p);
    while (p->nwaiting > 0 && pi->depth < limit && pi->state == PI_BUSY && pi->ver == p->active) {
        invocation *next = list_entry(list_first(&p->waiting), invocation, link);
        if (next->payload_len > SPATE_PREFETCH_PAYLOAD_MAX) break;
        dispatch_to(pi, pool__dequeue(p));
    }
}

/* An instance has nothing to do: give it the oldest waiting invocations, keep
 * it idle, or stop it if its version retired or the pool is closing. */
void pool__became_idle(pinst *pi)
{
    pool *p = pi->pool;
    /* Retired, closing, or above a --max-instances lowered while it ran. */
    if (pi->ver->retired || (p->closing && p->nwaiting == 0) ||
        (p->nwaiting == 0 && pool__node_over())) {
        pi->state = PI_STOPPING;
        p->nstopping++;
        instance_kill(pi->inst);
        return;
    }
    if (p->nwaiting > 0) {
        dispatch_to(pi, pool__dequeue(p));
        if (pi->state == PI_BUSY) pool__top_up(pi);
        return;
    }
    pi->state = PI_IDLE;
    pi->since = pool__now_ms(p);
    if (pool__zygote_over()) pool__arm(p, pi->since); /* it may go for a lowered budget */
    instance_set_request(pi->inst, NULL);
    list_push_front(&p->idle, &pi->link);
    p->nidle++;
    if (pool__live(p) > pi->ver->cfg.min_instances) {
        uint64_t at = pi->since + pi->ver->cfg.keep_alive_ms;
        /* It may be surplus sooner (timer.c). */
        if (pool__live(p) > 1 && pi->since + SPATE_SURPLUS_IDLE_MS < at)
            at = pi->since + SPATE_SURPLUS_IDLE_MS;
        pool__arm(p, at);
    }
}

/* Gives waiting invocations to idle instances: invocations put back in the
 * wait queue from a mailbox may find some. */
void pool__serve_waiting(pool *p)
{
    while (p->nwaiting > 0 && p->nidle > 0) {
        pinst *pi = list_entry(list_first(&p->idle), pinst, link);
        pool__unlink_instance(pi);
        pool__became_idle(pi);
    }
}

void pool_invoke(pool *p, invocation *inv)
{
    list_init(&inv->link);
    inv->runner = NULL;
    inv->version = 0;
    inv->limit_err = 0;
    inv->queued_ns = clock_mono_ns();
    inv->wait_observed = 0;
    pool__activity(p);
    pversion *v = p->active;
    if (p->closing || !v) {
        pool__finish_msg(p, inv, POOL_UNAVAILABLE,
                         p->closing ? "spated is shutting down" : "function has no active version");
        return;
    }
    /* Also for one sent straight to a mailbox: a crash ahead of it puts it
     * back in the wait queue, where this deadline holds. */
    inv->timeout_ms = timeout_of(inv, v->cfg.timeout_ms); /* what a wait's timeout says */
    inv->wait_deadline = pool__now_ms(p) + inv->timeout_ms;
    inv->wait_seen = 0;
    p->arrived++;
    p->used_at = pool__now_ms(p); /* its version keeps a spare (spares.c) */
    p->used_by_deploy = 0;
    pinst *pi = pick(p, inv);
    if (pi) {
        if (pi->state == PI_IDLE) pool__unlink_instance(pi);
        dispatch_to(pi, inv);
        return;
    }
    if (v->zstate == ZS_NONE && v->load_limit && pool__now_ms(p) < v->retry_at) {
        pool__refuse(p, inv, v->load_limit, "cannot start a zygote");
        return;
    }
    if (v->zstate == ZS_NONE && v->load_error && pool__now_ms(p) < v->retry_at) {
        char msg[SPATE_LOAD_ERROR_MAX];
        snprintf(msg, sizeof msg, "cannot start function: %s (tried again in %.1f s)",
                 v->load_error, (double)(v->retry_at - pool__now_ms(p)) / 1000.0);
        pool__finish_msg(p, inv, POOL_UNAVAILABLE, msg);
        return;
    }
    if (p->nwaiting + p->nqueued >= v->cfg.queue_max) {
        p->rejected++;
        char msg[128];
        snprintf(msg, sizeof msg, "function is at its maximum of %u instance%s and %u invocation%s",
                 v->cfg.max_instances, v->cfg.max_instances == 1 ? "" : "s",
                 p->nwaiting + p->nqueued, p->nwaiting + p->nqueued == 1 ? " waits" : "s wait");
        pool__finish_msg(p, inv, POOL_OVERLOADED, msg);
        return;
    }
    list_push_back(&p->waiting, &inv->link);
    p->nwaiting++;
    pool__arm(p, inv->wait_deadline);
    pool__grow(p);
}

int pool_cancel(pool *p, invocation *inv)
{
    if (inv->runner || inv->link.next == &inv->link) return 0;
    list_remove(&inv->link);
    p->nwaiting--;
    pool__finish_msg(p, inv, POOL_UNAVAILABLE, "cancelled");
    return 1;
}
