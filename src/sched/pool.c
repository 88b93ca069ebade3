#include "sched/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/instance.h"
#include "runtime/isolate.h"
#include "runtime/launcher.h"

/* Room for "cannot start function: " and a loader message. */
#define MESSAGE_MAX 4200
/* How runtimes begin the reason an instance did not start (native.c, exec.c). */
#define START_FAILED "instance failed to start: "

enum pi_state { PI_STARTING, PI_IDLE, PI_BUSY, PI_STOPPING };
enum zstate { ZS_NONE, ZS_LOADING, ZS_READY };

typedef struct pversion {
    list_node link; /* in pool->versions */
    pool *pool;
    uint32_t number;
    char *object_path;
    char **env;
    enum fn_runtime runtime;
    uint32_t memory_mb;
    uint32_t cpu_millis;
    uint32_t tmp_mb;
    int no_network;
    pool_config cfg;
    launcher *z; /* the zygote (native) or the bootstrap root (exec) */
    enum zstate zstate;
    uint64_t retry_at; /* loop ms: no zygote restart before this */
    char *load_error;
    uint32_t ninstances; /* instances of this version in any state */
    int retired;
    pool_load_cb load_cb; /* pending pool_load_version */
    void *load_data;
} pversion;

struct pinst {
    list_node link;     /* in starting, idle or busy; self-linked when stopping */
    list_node inflight; /* invocations sent to it, the running one first */
    uint32_t depth;     /* how many */
    pool *pool;
    pversion *ver;
    instance *inst;
    enum pi_state state;
    uint64_t since;        /* loop ms: idle since */
    uint64_t deadline;     /* loop ms: end of init (starting) or of the running invocation (busy) */
    uint64_t check_at;     /* loop ms: next look at its process limit (busy) */
    uint64_t started;      /* loop ms: the running invocation started (busy) */
    uint64_t overdue_seen; /* loop ms: first seen past outlasted_after_ms(), 0 if not */
    int outlasted;         /* it has run past what mailboxes bet on (counted in noutlasted) */
    uint64_t spawn_ns;
    int never_ready; /* stopped while starting (init took too long) */
};

struct pool {
    uv_loop_t *loop;
    char *name;
    fnlog *log; /* what its processes write */
    const char *runner_path;
    pversion *active;
    list_node versions;
    list_node starting, idle, busy; /* idle: most recently used first */
    list_node waiting;              /* FIFO of invocations */
    uint32_t nstarting, nidle, nbusy, nstopping, nwaiting;
    uint32_t nqueued;    /* invocations in mailboxes behind a running one */
    uint32_t noutlasted; /* running invocations past SPATE_OUTLASTED_MIN_MS & co: no mailboxes */
    uint64_t last_start; /* loop ms: the latest invocation to start */
    uv_timer_t timer;
    uint64_t timer_at;
    int timer_armed;
    int closing, drain, closed;
    void (*close_cb)(void *);
    void *close_data;
    uint64_t invocations, errors, timeouts, crashes, rejected, cold_starts, last_cold_us;
    uint32_t fail_streak; /* instances that failed in a row (crash, timeout, limit) */
    uint64_t restart_at;  /* loop ms: no instance starts before this (crash loop) */
    double service_us;    /* moving average of handler time; 0 until known */
    double cold_us;       /* moving average of instance start time */
    pool_metrics m;
};

/* Weight of a new sample in the moving averages. */
#define EWMA_ALPHA 0.2

static void grow(pool *p);
static void maybe_finish_close(pool *p);

/* Live instances of the whole node, against --max-instances. */
static uint32_t node_live, node_max = UINT32_MAX;

void pool_set_node_max(uint32_t max)
{
    node_max = max;
}

uint32_t pool_node_live(void)
{
    return node_live;
}

static uint64_t now_ms(const pool *p)
{
    return uv_now(p->loop);
}

static uint32_t live(const pool *p)
{
    return p->nstarting + p->nidle + p->nbusy;
}

/* --- Timer: one per pool, armed for the earliest deadline ----------------- */

static void on_timer(uv_timer_t *t);

static void arm(pool *p, uint64_t at)
{
    if (p->closed || (p->timer_armed && p->timer_at <= at)) return;
    uint64_t now = now_ms(p);
    uv_timer_start(&p->timer, on_timer, at > now ? at - now : 0, 0);
    p->timer_armed = 1;
    p->timer_at = at;
}

/* --- Invocations ------------------------------------------------------------ */

static void finish(pool *p, invocation *inv, enum inv_outcome outcome, const char *body, size_t len)
{
    p->m.outcomes[outcome]++;
    log_debug("invocation %s fn=%s req=%s", inv_outcome_name(outcome), p->name, inv->request_id);
    inv->runner = NULL;
    inv->done(inv, outcome, body, len, inv->data);
}

static void finish_msg(pool *p, invocation *inv, enum inv_outcome outcome, const char *msg)
{
    finish(p, inv, outcome, msg, strlen(msg));
}

/* Fails every waiting invocation. The queue is emptied before any callback
 * runs, since a callback may queue new work. */
static void fail_waiting(pool *p, enum inv_outcome outcome, const char *msg)
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
        finish_msg(p, list_entry(n, invocation, link), outcome, msg);
    }
}

static invocation *dequeue(pool *p)
{
    list_node *n = list_first(&p->waiting);
    list_remove(n);
    p->nwaiting--;
    return list_entry(n, invocation, link);
}

/* --- Instances ------------------------------------------------------------------ */

/* Takes pi out of its list (starting, idle or busy), if it is in one.
 * Stopping instances are in no list; only nstopping counts them. */
static void unlink_instance(pinst *pi)
{
    pool *p = pi->pool;
    if (pi->link.next == &pi->link) return;
    list_remove(&pi->link);
    switch (pi->state) {
    case PI_STARTING:
        p->nstarting--;
        break;
    case PI_IDLE:
        p->nidle--;
        break;
    case PI_BUSY:
        p->nbusy--;
        break;
    case PI_STOPPING:
        break;
    }
}

static void stop_instance(pinst *pi)
{
    unlink_instance(pi);
    pi->state = PI_STOPPING;
    pi->pool->nstopping++;
    instance_kill(pi->inst);
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
static void head_started(pinst *pi)
{
    pool *p = pi->pool;
    invocation *head = head_of(pi);
    pi->state = PI_BUSY;
    pi->started = p->last_start = now_ms(p);
    pi->overdue_seen = 0;
    pi->deadline = now_ms(p) + head->timeout_ms;
    pi->check_at = now_ms(p) + SPATE_PIDS_FIRST_CHECK_MS;
    histogram_observe(&p->m.queue_wait, (double)(clock_mono_ns() - head->queued_ns) / 1e9);
    instance_set_request(pi->inst, head->request_id);
    insert_busy(p, pi);
    arm(p, pi->deadline < pi->check_at ? pi->deadline : pi->check_at);
}

/* An instance failed (crashed, timed out, went past a limit): after a few in
 * a row, the next start waits, longer each time (SPATE_CRASH_BACKOFF_*). */
static void instance_failed(pool *p)
{
    if (++p->fail_streak <= SPATE_CRASH_FREE) return;
    uint32_t shift = p->fail_streak - SPATE_CRASH_FREE - 1;
    uint64_t delay =
        shift >= 16 ? SPATE_CRASH_BACKOFF_CAP_MS : (uint64_t)SPATE_CRASH_BACKOFF_BASE_MS << shift;
    if (delay > SPATE_CRASH_BACKOFF_CAP_MS) delay = SPATE_CRASH_BACKOFF_CAP_MS;
    p->restart_at = now_ms(p) + delay;
    if (p->fail_streak == SPATE_CRASH_FREE + 1)
        log_warn("instances keep failing (%u in a row): restarts slowed down fn=%s", p->fail_streak,
                 p->name);
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
        arm(p, inv->wait_deadline);
    }
}

static void requeue_inflight(pinst *pi)
{
    requeue_beyond(pi, 0);
}

static invocation *pop_head(pinst *pi)
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
    };
    if (instance_invoke(pi->inst, &fi) != 0) {
        list_push_front(&p->waiting, &inv->link);
        p->nwaiting++;
        if (pi->state == PI_BUSY) unlink_instance(pi);
        requeue_inflight(pi);
        pi->state = PI_STOPPING;
        p->nstopping++;
        instance_kill(pi->inst);
        grow(p);
        return;
    }
    inv->runner = pi;
    inv->version = pi->ver->number;
    inv->timeout_ms = timeout;
    list_push_back(&pi->inflight, &inv->link);
    if (++pi->depth == 1)
        head_started(pi);
    else
        p->nqueued++;
}

/* How many invocations one instance may hold: queueing behind a busy
 * instance beats starting another only while the wait (depth times the
 * handler time) is shorter than a cold start. 1 means no queueing. */
static uint32_t mailbox_fit(const pool *p)
{
    if (p->service_us <= 0) return 1;
    double n = p->cold_us / p->service_us;
    if (n < 1) return 1;
    return n > SPATE_PREFETCH_MAX ? SPATE_PREFETCH_MAX : (uint32_t)n;
}

/* The same, and no queueing while an invocation runs that has proved the
 * handler time estimate wrong (see outlasted()). */
static uint32_t mailbox_limit(const pool *p)
{
    return p->noutlasted ? 1 : mailbox_fit(p);
}

/* How long (loop ms) an invocation may run before it proves the handler
 * time estimate stale (SPATE_OUTLASTED_MIN_MS). */
static uint64_t outlasted_after_ms(const pool *p)
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
static double service_estimate(const pool *p)
{
    if (p->nbusy == 0) return p->service_us;
    double ran_us = (double)(now_ms(p) - p->last_start) * 1000;
    if (ran_us <= p->service_us) return p->service_us;
    return p->noutlasted || ran_us >= SPATE_OUTLASTED_MIN_MS * 1000.0 ? ran_us : p->service_us;
}

/* Takes back what waits in pi's mailbox behind the invocation it runs and
 * puts it in the wait queue (the caller serves it). What the instance cannot
 * be sure of giving back stays, and comes back through
 * on_instance_withdrawn if it did not run. */
static void release_tail(pinst *pi)
{
    if (pi->depth < 2) return;
    uint32_t n = instance_withdraw(pi->inst, pi->depth - 1);
    requeue_beyond(pi, pi->depth - n);
}

/* pi's running invocation has lasted past what its mailbox bet on: what
 * waits behind it goes to idle or new instances, and no mailbox takes more
 * while it runs. */
static void outlasted(pinst *pi, uint64_t ran_ms)
{
    pool *p = pi->pool;
    pi->outlasted = 1;
    p->noutlasted++;
    if (pi->depth > 1)
        log_info("invocation running for %llu ms, handler time estimate %.3f ms: %u waiting "
                 "behind it go to other instances fn=%s req=%s",
                 (unsigned long long)ran_ms, p->service_us / 1000, pi->depth - 1, p->name,
                 head_of(pi)->request_id);
    release_tail(pi);
}

/* The instance that will start inv soonest, or NULL: an idle one (waking it
 * costs SPATE_WAKE_COST_US), or the least loaded busy one whose mailbox has
 * room, if the handlers ahead finish sooner than that. */
static pinst *pick(pool *p, const invocation *inv)
{
    pinst *idle = p->nidle ? list_entry(list_first(&p->idle), pinst, link) : NULL;
    uint32_t limit = mailbox_limit(p);
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
static void top_up(pinst *pi)
{
    pool *p = pi->pool;
    uint32_t limit = mailbox_limit(p);
    while (p->nwaiting > 0 && pi->depth < limit && pi->state == PI_BUSY && pi->ver == p->active) {
        invocation *next = list_entry(list_first(&p->waiting), invocation, link);
        if (next->payload_len > SPATE_PREFETCH_PAYLOAD_MAX) break;
        dispatch_to(pi, dequeue(p));
    }
}

/* An instance has nothing to do: give it the oldest waiting invocations, keep
 * it idle, or stop it if its version retired or the pool is closing. */
static void became_idle(pinst *pi)
{
    pool *p = pi->pool;
    if (pi->ver->retired || (p->closing && p->nwaiting == 0)) {
        pi->state = PI_STOPPING;
        p->nstopping++;
        instance_kill(pi->inst);
        return;
    }
    if (p->nwaiting > 0) {
        dispatch_to(pi, dequeue(p));
        if (pi->state == PI_BUSY) top_up(pi);
        return;
    }
    pi->state = PI_IDLE;
    pi->since = now_ms(p);
    instance_set_request(pi->inst, NULL);
    list_push_front(&p->idle, &pi->link);
    p->nidle++;
    if (live(p) > pi->ver->cfg.min_instances) arm(p, pi->since + pi->ver->cfg.keep_alive_ms);
}

/* Gives waiting invocations to idle instances: invocations put back in the
 * wait queue from a mailbox may find some. */
static void serve_waiting(pool *p)
{
    while (p->nwaiting > 0 && p->nidle > 0) {
        pinst *pi = list_entry(list_first(&p->idle), pinst, link);
        unlink_instance(pi);
        became_idle(pi);
    }
}

static void on_instance_ready(instance *inst, void *data)
{
    pinst *pi = data;
    if (pi->state != PI_STARTING) return;
    pool *p = pi->pool;
    unlink_instance(pi);
    p->cold_starts++;
    p->last_cold_us = (clock_mono_ns() - pi->spawn_ns) / 1000;
    histogram_observe_us(&p->m.cold_start, p->last_cold_us);
    p->cold_us += EWMA_ALPHA * ((double)p->last_cold_us - p->cold_us);
    became_idle(pi);
    grow(p); /* slow start goes on as instances come up */
}

static void on_instance_result(instance *inst, int failed, uint32_t duration_us, const char *body,
                               size_t len, void *data)
{
    pinst *pi = data;
    if (pi->state != PI_BUSY || pi->depth == 0) return; /* e.g. it had timed out */
    pool *p = pi->pool;
    unlink_instance(pi);
    int stale = pi->outlasted; /* this result proved the estimate wrong while it ran */
    invocation *inv = pop_head(pi);
    p->invocations++;
    p->fail_streak = 0;
    p->restart_at = 0;
    if (failed) p->errors++;
    histogram_observe_us(&p->m.duration, duration_us);
    /* A result that outlasted the estimate replaces it: averaged with the
     * times of a function that has since changed speed, it would take a
     * dozen results to tell the truth. */
    if (stale && duration_us > p->service_us)
        p->service_us = duration_us;
    else if (p->service_us > 0)
        p->service_us += EWMA_ALPHA * ((double)duration_us - p->service_us);
    else
        p->service_us = duration_us ? duration_us : 1;
    /* Settle the instance first: the callback may bring the next request. */
    if (!instance_usable(inst)) {
        requeue_inflight(pi);
        pi->state = PI_STOPPING;
        p->nstopping++;
        serve_waiting(p);
        grow(p);
    } else if (pi->depth > 0) {
        head_started(pi);
        uint32_t fit = mailbox_fit(p);
        if (duration_us > p->cold_us && pi->depth > fit) {
            /* Queued here when calls looked shorter, and this one took longer
             * than a cold start: the mailbox is taken back, what still fits
             * comes back to it, the rest goes to idle or new instances. (A
             * short call that a loaded machine slowed down moves nothing.) */
            release_tail(pi);
            top_up(pi);
            serve_waiting(p);
            grow(p);
        } else {
            top_up(pi);
        }
    } else {
        became_idle(pi);
    }
    finish(p, inv, failed ? INV_FAILED : INV_OK, body, len);
}

/* The oldest invocation pi was given did not run (release_tail asked for
 * it back): it waits again, first in line. */
static void on_instance_withdrawn(instance *inst, void *data)
{
    pinst *pi = data;
    if (pi->state != PI_BUSY || pi->depth == 0) return;
    pool *p = pi->pool;
    unlink_instance(pi);
    invocation *inv = pop_head(pi);
    list_push_front(&p->waiting, &inv->link);
    p->nwaiting++;
    arm(p, inv->wait_deadline);
    if (!instance_usable(inst)) {
        requeue_inflight(pi);
        pi->state = PI_STOPPING;
        p->nstopping++;
    } else if (pi->depth > 0) {
        head_started(pi);
    } else {
        became_idle(pi);
    }
    serve_waiting(p);
    grow(p);
}

static void free_version(pversion *v);

static void on_instance_exited(instance *inst, const char *why, void *data)
{
    pinst *pi = data;
    pool *p = pi->pool;
    pversion *v = pi->ver;
    enum pi_state was = pi->state;
    int never_ready = pi->never_ready;
    uint64_t id = inst->id;
    if (was == PI_STOPPING)
        p->nstopping--;
    else
        unlink_instance(pi);
    node_live--;
    /* The head was running; the rest never started and go to another. */
    invocation *head = pi->depth ? pop_head(pi) : NULL;
    requeue_inflight(pi);
    v->ninstances--;
    free(pi);

    invocation *failed = NULL;
    if (head || was == PI_STARTING || never_ready) instance_failed(p);
    /* The function's log says it too, after the last lines the instance
     * wrote (read when it was released): its developer may not see ours.
     * why may quote the function at length (its init error): spated's log
     * keeps a part of it, so that the line still ends with whose it is. */
    int cut = SPATE_LOG_QUOTE_MAX;
    if (head) {
        p->crashes++;
        failed = head;
        log_warn("instance %.*s during an invocation fn=%s req=%s instance=%llu", cut, why, p->name,
                 head->request_id, (unsigned long long)id);
        fnlog_platform(p->log, id, v->number, head->request_id,
                       "instance ended during the invocation: %s", why);
    } else if (was == PI_STARTING || never_ready) {
        /* A start that fails (spate_init error, crash) fails one waiting
         * invocation with the reason, rather than retrying for ever. */
        log_warn("instance could not start: %.*s fn=%s version=%u instance=%llu", cut, why, p->name,
                 v->number, (unsigned long long)id);
        if (p->nwaiting > 0) failed = dequeue(p);
        const char *cause = why;
        if (strncmp(cause, START_FAILED, sizeof START_FAILED - 1) == 0)
            cause += sizeof START_FAILED - 1;
        fnlog_platform(p->log, id, v->number, failed ? failed->request_id : NULL,
                       "instance could not start: %s", cause);
    } else if (was == PI_IDLE) {
        log_warn("idle instance %.*s fn=%s instance=%llu", cut, why, p->name,
                 (unsigned long long)id);
        fnlog_platform(p->log, id, v->number, NULL, "idle instance ended: %s", why);
    }
    if (v->retired && v->ninstances == 0) free_version(v);
    if (failed) finish_msg(p, failed, INV_CRASHED, why);
    serve_waiting(p);
    grow(p);
    maybe_finish_close(p);
}

static const instance_callbacks callbacks = {
    .ready = on_instance_ready,
    .result = on_instance_result,
    .withdrawn = on_instance_withdrawn,
    .exited = on_instance_exited,
};

static int start_instance(pool *p, pversion *v)
{
    pinst *pi = calloc(1, sizeof *pi);
    if (!pi) return ERR_NOMEM;
    pi->pool = p;
    pi->ver = v;
    pi->state = PI_STARTING;
    list_init(&pi->link);
    list_init(&pi->inflight);
    pi->spawn_ns = clock_mono_ns();
    int rc = launcher_spawn(v->z, &callbacks, pi, &pi->inst);
    if (rc != 0) {
        free(pi);
        return rc;
    }
    pi->deadline = now_ms(p) + SPATE_INSTANCE_INIT_TIMEOUT_MS;
    node_live++;
    list_push_back(&p->starting, &pi->link);
    p->nstarting++;
    v->ninstances++;
    arm(p, pi->deadline);
    return 0;
}

/* --- Zygotes ----------------------------------------------------------------------- */

static void on_zygote_loaded(launcher *z, int status, const char *message, void *data)
{
    pversion *v = data;
    pool *p = v->pool;
    pool_load_cb cb = v->load_cb;
    v->load_cb = NULL;
    if (status == 0) {
        v->zstate = ZS_READY;
        free(v->load_error);
        v->load_error = NULL;
        log_info("loaded fn=%s version=%u zygote=%d", p->name, v->number, launcher_pid(z));
        if (cb) cb(p, v->number, 0, NULL, v->load_data); /* may discard v */
        grow(p);
        return;
    }
    v->z = NULL;
    v->zstate = ZS_NONE;
    v->retry_at = now_ms(p) + SPATE_ZYGOTE_RESTART_BACKOFF_MS;
    free(v->load_error);
    v->load_error = strdup(message);
    fnlog_platform(p->log, 0, v->number, NULL, "cannot load function: %s", message);
    if (cb) {
        cb(p, v->number, ERR_INVAL, message, v->load_data);
        return;
    }
    log_error("cannot load function: %s fn=%s version=%u", message, p->name, v->number);
    if (v == p->active) {
        char msg[MESSAGE_MAX];
        snprintf(msg, sizeof msg, "cannot start function: %s", message);
        fail_waiting(p, INV_UNAVAILABLE, msg);
    }
    maybe_finish_close(p);
}

static void on_zygote_exit(launcher *z, void *data)
{
    pversion *v = data;
    pool *p = v->pool;
    v->z = NULL;
    v->zstate = ZS_NONE;
    v->retry_at = now_ms(p) + SPATE_ZYGOTE_RESTART_BACKOFF_MS;
    if (v->retired && v->ninstances == 0) {
        free_version(v);
        maybe_finish_close(p);
        return;
    }
    grow(p);
    maybe_finish_close(p);
}

static int start_zygote(pool *p, pversion *v)
{
    launcher_config lc = {
        .runtime = v->runtime,
        .runner_path = p->runner_path,
        .path = v->object_path,
        .function = p->name,
        .version = v->number,
        .memory_mb = v->memory_mb,
        .cpu_millis = v->cpu_millis,
        .tmp_mb = v->tmp_mb,
        .no_network = v->no_network,
        .log = p->log,
        .env = v->env,
    };
    int rc = launcher_start(p->loop, &lc, on_zygote_loaded, on_zygote_exit, v, &v->z);
    if (rc != 0) {
        v->z = NULL;
        v->retry_at = now_ms(p) + SPATE_ZYGOTE_RESTART_BACKOFF_MS;
        free(v->load_error);
        v->load_error =
            strdup(v->runtime == RUNTIME_NATIVE ? "cannot start spate-runner (see the spated log)"
                                                : "cannot start the function (see the spated log)");
        return rc;
    }
    v->zstate = ZS_LOADING;
    return 0;
}

/* Makes sure the active version has a zygote, or one is on its way. */
static void ensure_zygote(pool *p, pversion *v)
{
    if (v->zstate != ZS_NONE) return;
    if (now_ms(p) < v->retry_at) {
        arm(p, v->retry_at);
        return;
    }
    if (start_zygote(p, v) != 0 && v == p->active) {
        fail_waiting(p, INV_UNAVAILABLE, v->load_error);
        arm(p, v->retry_at);
    }
}

/* Starts as many instances as waiting invocations need (and the minimum
 * asks), within the maximum. Each new instance will take a mailbox full. */
static void grow(pool *p)
{
    pversion *v = p->active;
    if (!v || p->closed) return;
    if (p->restart_at > now_ms(p)) {
        arm(p, p->restart_at);
        return;
    }
    uint32_t limit = mailbox_limit(p);
    uint32_t need = (p->nwaiting + limit - 1) / limit;
    uint32_t want = need > p->nstarting ? need - p->nstarting : 0;
    if (p->service_us <= 0) {
        /* Handler time not known yet: how many instances a burst needs is not
         * known either. Slow start: at most as many starting as are up (one
         * when none is), so the count doubles per cold start until the first
         * result says how long calls take. */
        uint32_t up = p->nidle + p->nbusy, room = up ? up : 1;
        room = room > p->nstarting ? room - p->nstarting : 0;
        if (want > room) want = room;
    }
    if (!p->closing && v->cfg.min_instances > live(p)) {
        uint32_t short_by = v->cfg.min_instances - live(p);
        if (short_by > want) want = short_by;
    }
    if (want == 0) return;
    if (v->zstate != ZS_READY) {
        ensure_zygote(p, v);
        return;
    }
    while (want-- > 0 && live(p) < v->cfg.max_instances && node_live < node_max)
        if (start_instance(p, v) != 0) break;
}

/* --- Versions ------------------------------------------------------------------------ */

static void free_env(char **env)
{
    if (!env) return;
    for (char **e = env; *e; e++) free(*e);
    free(env);
}

static pversion *find_version(pool *p, uint32_t number)
{
    for (list_node *n = list_first(&p->versions); n != &p->versions; n = n->next) {
        pversion *v = list_entry(n, pversion, link);
        if (v->number == number) return v;
    }
    return NULL;
}

static pversion *new_version(pool *p, const pool_version_spec *spec)
{
    pversion *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->pool = p;
    v->number = spec->version;
    v->cfg = spec->config;
    v->runtime = spec->runtime;
    v->memory_mb = spec->memory_mb;
    v->cpu_millis = spec->cpu_millis;
    v->tmp_mb = spec->tmp_mb;
    v->no_network = spec->no_network;
    v->object_path = strdup(spec->object_path);
    size_t n = 0;
    while (spec->env && spec->env[n]) n++;
    v->env = calloc(n + 1, sizeof *v->env);
    int ok = v->object_path && v->env;
    for (size_t i = 0; ok && i < n; i++) ok = (v->env[i] = strdup(spec->env[i])) != NULL;
    if (!ok) {
        free(v->object_path);
        free_env(v->env);
        free(v);
        return NULL;
    }
    list_push_back(&p->versions, &v->link);
    return v;
}

static void free_version(pversion *v)
{
    pool *p = v->pool;
    if (p->active == v) p->active = NULL;
    list_remove(&v->link);
    if (v->z) launcher_stop(v->z);
    free(v->object_path);
    free_env(v->env);
    free(v->load_error);
    free(v);
}

/* The version stops taking work: idle instances stop now, busy ones when done. */
static void retire(pool *p, pversion *v)
{
    v->retired = 1;
    list_node *lists[2] = {&p->idle, &p->starting};
    for (int i = 0; i < 2; i++) {
        list_node *n = list_first(lists[i]);
        while (n != lists[i]) {
            pinst *pi = list_entry(n, pinst, link);
            n = n->next;
            if (pi->ver == v) stop_instance(pi);
        }
    }
    if (v->ninstances == 0) free_version(v);
}

int pool_load_version(pool *p, const pool_version_spec *spec, pool_load_cb cb, void *data)
{
    if (p->closing) return ERR_CLOSED;
    if (find_version(p, spec->version)) return ERR_EXISTS;
    pversion *v = new_version(p, spec);
    if (!v) return ERR_NOMEM;
    v->load_cb = cb;
    v->load_data = data;
    int rc = start_zygote(p, v);
    if (rc != 0) {
        v->load_cb = NULL;
        free_version(v);
    }
    return rc;
}

int pool_activate(pool *p, uint32_t version)
{
    pversion *v = find_version(p, version);
    if (!v || v->retired) return ERR_NOTFOUND;
    pversion *old = p->active;
    p->active = v;
    if (old && old != v) {
        retire(p, old);
        p->fail_streak = 0; /* new code: no crash loop yet */
        p->restart_at = 0;
    }
    grow(p);
    return 0;
}

void pool_discard(pool *p, uint32_t version)
{
    pversion *v = find_version(p, version);
    if (!v || v == p->active) return;
    v->load_cb = NULL;
    v->retired = 1;
    if (v->ninstances == 0) free_version(v);
    maybe_finish_close(p);
}

int pool_restore_version(pool *p, const pool_version_spec *spec)
{
    if (find_version(p, spec->version)) return ERR_EXISTS;
    pversion *v = new_version(p, spec);
    if (!v) return ERR_NOMEM;
    pool_activate(p, v->number);
    ensure_zygote(p, v);
    return 0;
}

/* --- Pool ---------------------------------------------------------------------------- */

fnlog *pool_log(pool *p)
{
    return p->log;
}

pool *pool_create(uv_loop_t *loop, const char *function, const char *runner_path)
{
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->name = strdup(function);
    p->log = fnlog_open(function);
    if (!p->name || !p->log) {
        free(p->name);
        fnlog_unref(p->log);
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->runner_path = runner_path;
    p->cold_us = 1000; /* until measured: the target for a native cold start */
    list_init(&p->versions);
    list_init(&p->starting);
    list_init(&p->idle);
    list_init(&p->busy);
    list_init(&p->waiting);
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    return p;
}

void pool_invoke(pool *p, invocation *inv)
{
    list_init(&inv->link);
    inv->runner = NULL;
    inv->version = 0;
    inv->queued_ns = clock_mono_ns();
    pversion *v = p->active;
    if (p->closing || !v) {
        finish_msg(p, inv, INV_UNAVAILABLE,
                   p->closing ? "spated is shutting down" : "function has no active version");
        return;
    }
    /* Also for one sent straight to a mailbox: a crash ahead of it puts it
     * back in the wait queue, where this deadline holds. */
    inv->wait_deadline = now_ms(p) + timeout_of(inv, v->cfg.timeout_ms);
    pinst *pi = pick(p, inv);
    if (pi) {
        if (pi->state == PI_IDLE) unlink_instance(pi);
        dispatch_to(pi, inv);
        return;
    }
    if (v->zstate == ZS_NONE && v->load_error && now_ms(p) < v->retry_at) {
        char msg[MESSAGE_MAX];
        snprintf(msg, sizeof msg, "cannot start function: %s", v->load_error);
        finish_msg(p, inv, INV_UNAVAILABLE, msg);
        return;
    }
    if (p->nwaiting + p->nqueued >= v->cfg.queue_max) {
        p->rejected++;
        char msg[128];
        snprintf(msg, sizeof msg, "function is at its maximum of %u instance%s and %u invocation%s",
                 v->cfg.max_instances, v->cfg.max_instances == 1 ? "" : "s",
                 p->nwaiting + p->nqueued, p->nwaiting + p->nqueued == 1 ? " waits" : "s wait");
        finish_msg(p, inv, INV_OVERLOADED, msg);
        return;
    }
    list_push_back(&p->waiting, &inv->link);
    p->nwaiting++;
    arm(p, inv->wait_deadline);
    grow(p);
}

int pool_cancel(pool *p, invocation *inv)
{
    if (inv->runner || inv->link.next == &inv->link) return 0;
    list_remove(&inv->link);
    p->nwaiting--;
    finish_msg(p, inv, INV_UNAVAILABLE, "cancelled");
    return 1;
}

static const char *pids_limit_message(char *out, size_t cap)
{
    snprintf(out, cap,
             "the instance went past its limit of %u processes and threads "
             "(spated --pids-max): stopped",
             isolate_get()->pids_max);
    return out;
}

/* Stops busy pi, whose running invocation failed (its time is up, or it went
 * past a limit): what waits behind it goes back to the wait queue, nothing it
 * started may fork on, and the running invocation joins failed, to be
 * answered once the timer's walk of the lists is over. Returns it. */
static invocation *stop_running(pinst *pi, list_node *failed)
{
    invocation *inv = pop_head(pi);
    requeue_inflight(pi);
    instance_stop_forks(pi->inst);
    stop_instance(pi);
    instance_failed(pi->pool);
    list_push_back(failed, &inv->link);
    return inv;
}

static void on_timer(uv_timer_t *t)
{
    pool *p = t->data;
    p->timer_armed = 0;
    uint64_t now = now_ms(p);
    uint64_t next = UINT64_MAX;
    list_node expired;
    list_init(&expired);

    /* Invocations that waited their whole timeout for an instance. */
    for (list_node *n = list_first(&p->waiting); n != &p->waiting;) {
        invocation *inv = list_entry(n, invocation, link);
        n = n->next;
        if (inv->wait_deadline <= now) {
            list_remove(&inv->link);
            p->nwaiting--;
            list_push_back(&expired, &inv->link);
        } else if (inv->wait_deadline < next) {
            next = inv->wait_deadline;
        }
    }
    /* Invocations that ran past their timeout: the instance is killed. */
    list_node timed_out;
    list_init(&timed_out);
    while (!list_empty(&p->busy)) {
        pinst *pi = list_entry(list_first(&p->busy), pinst, link);
        if (pi->deadline > now) {
            next = pi->deadline < next ? pi->deadline : next;
            break;
        }
        invocation *inv = stop_running(pi, &timed_out);
        p->timeouts++;
        fnlog_platform(p->log, pi->inst->id, pi->ver->number, inv->request_id,
                       "invocation timed out after %u ms: instance stopped", inv->timeout_ms);
    }
    /* Instances that reached their process limit (a fork bomb): stopped now,
     * as the memory limit stops a memory hog. Each busy one is looked at
     * every SPATE_PIDS_CHECK_MS: one read of its pids.events. At the same
     * looks, invocations that outlasted the handler time estimate. */
    list_node over_limit;
    list_init(&over_limit);
    uint64_t outlast_ms = outlasted_after_ms(p);
    for (list_node *n = list_first(&p->busy); n != &p->busy;) {
        pinst *pi = list_entry(n, pinst, link);
        n = n->next;
        if (pi->check_at <= now) {
            if (instance_at_pids_limit(pi->inst)) {
                invocation *inv = stop_running(pi, &over_limit);
                p->crashes++;
                char msg[160];
                fnlog_platform(p->log, pi->inst->id, pi->ver->number, inv->request_id, "%s",
                               pids_limit_message(msg, sizeof msg));
                continue;
            }
            pi->check_at = now + SPATE_PIDS_CHECK_MS;
            if (!pi->outlasted && now - pi->started >= outlast_ms) {
                /* Seen twice, with the results that came in between read:
                 * after spated itself stalled, every invocation looks long. */
                if (!pi->overdue_seen) {
                    pi->overdue_seen = now;
                    pi->check_at = now + SPATE_OUTLASTED_CONFIRM_MS;
                } else {
                    outlasted(pi, now - pi->started);
                }
            }
        }
        if (pi->check_at < next) next = pi->check_at;
    }
    /* Instances whose spate_init hangs. */
    for (list_node *n = list_first(&p->starting); n != &p->starting;) {
        pinst *pi = list_entry(n, pinst, link);
        n = n->next;
        if (pi->deadline <= now) {
            log_warn("instance did not become ready within %d ms fn=%s instance=%llu",
                     SPATE_INSTANCE_INIT_TIMEOUT_MS, p->name, (unsigned long long)pi->inst->id);
            fnlog_platform(p->log, pi->inst->id, pi->ver->number, NULL,
                           "instance did not become ready within %d ms: stopped",
                           SPATE_INSTANCE_INIT_TIMEOUT_MS);
            pi->never_ready = 1;
            stop_instance(pi);
        } else if (pi->deadline < next) {
            next = pi->deadline;
        }
    }
    /* Instances idle past the keep-alive, oldest first, down to the minimum. */
    while (!list_empty(&p->idle)) {
        pinst *pi = list_entry(list_last(&p->idle), pinst, link);
        uint64_t expiry = pi->since + pi->ver->cfg.keep_alive_ms;
        uint32_t min = p->active ? p->active->cfg.min_instances : 0;
        if (live(p) <= min) break;
        if (expiry > now) {
            next = expiry < next ? expiry : next;
            break;
        }
        stop_instance(pi);
    }
    if (p->active && p->active->zstate == ZS_NONE && p->active->retry_at > now)
        next = p->active->retry_at < next ? p->active->retry_at : next;
    if (p->restart_at > now && p->restart_at < next) next = p->restart_at;
    if (next != UINT64_MAX) arm(p, next);

    while (!list_empty(&expired)) {
        invocation *inv = list_entry(list_first(&expired), invocation, link);
        list_remove(&inv->link);
        char msg[96];
        snprintf(msg, sizeof msg, "no instance became free within the timeout");
        p->timeouts++;
        finish_msg(p, inv, INV_TIMEOUT, msg);
    }
    while (!list_empty(&over_limit)) {
        invocation *inv = list_entry(list_first(&over_limit), invocation, link);
        list_remove(&inv->link);
        char msg[160];
        log_warn("instance stopped at its process limit fn=%s req=%s", p->name, inv->request_id);
        finish_msg(p, inv, INV_CRASHED, pids_limit_message(msg, sizeof msg));
    }
    while (!list_empty(&timed_out)) {
        invocation *inv = list_entry(list_first(&timed_out), invocation, link);
        list_remove(&inv->link);
        char msg[96];
        snprintf(msg, sizeof msg, "function timed out after %u ms", inv->timeout_ms);
        log_warn("invocation timed out after %u ms fn=%s req=%s", inv->timeout_ms, p->name,
                 inv->request_id);
        finish_msg(p, inv, INV_TIMEOUT, msg);
    }
    serve_waiting(p);
    grow(p);
    maybe_finish_close(p);
}

void pool_stats_get(const pool *p, pool_stats *out)
{
    memset(out, 0, sizeof *out);
    out->active_version = p->active ? p->active->number : 0;
    out->starting = p->nstarting;
    out->idle = p->nidle;
    out->busy = p->nbusy;
    out->stopping = p->nstopping;
    out->waiting = p->nwaiting + p->nqueued;
    out->invocations = p->invocations;
    out->errors = p->errors;
    out->timeouts = p->timeouts;
    out->crashes = p->crashes;
    out->rejected = p->rejected;
    out->cold_starts = p->cold_starts;
    out->last_cold_start_us = p->last_cold_us;
    if (p->active && p->active->z && p->active->zstate == ZS_READY)
        out->zygote_pid = launcher_pid(p->active->z);
    out->service_us = service_estimate(p);
    out->cold_us = p->cold_us;
    out->mailbox = mailbox_limit(p);
    out->max_instances = p->active ? p->active->cfg.max_instances : 0;
    out->min_instances = p->active ? p->active->cfg.min_instances : 0;
    out->load_error = p->active ? p->active->load_error : NULL;
}

int pool_has_room(const pool *p)
{
    if (!p->active || p->closing) return 0;
    if (p->nidle > p->nwaiting) return 1;
    return live(p) < p->active->cfg.max_instances && node_live < node_max;
}

const pool_metrics *pool_metrics_get(const pool *p)
{
    return &p->m;
}

const char *inv_outcome_name(enum inv_outcome o)
{
    static const char *const names[INV_OUTCOMES] = {"ok",      "error",    "crashed",
                                                    "timeout", "rejected", "unavailable"};
    return (unsigned)o < INV_OUTCOMES ? names[o] : "unknown";
}

uint32_t pool_capacity(const pool *p)
{
    if (!p->active || p->closing) return 0;
    uint64_t c = (uint64_t)p->active->cfg.max_instances * mailbox_limit(p);
    return c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
}

static void on_timer_closed(uv_handle_t *h)
{
    pool *p = h->data;
    void (*cb)(void *) = p->close_cb;
    void *data = p->close_data;
    free(p->name);
    fnlog_unref(p->log);
    free(p);
    if (cb) cb(data);
}

static void maybe_finish_close(pool *p)
{
    if (!p->closing || p->closed) return;
    if (p->nwaiting > 0 || p->nbusy > 0) return;
    /* Nothing left to serve: stop whatever still stands. */
    while (!list_empty(&p->idle)) stop_instance(list_entry(list_first(&p->idle), pinst, link));
    while (!list_empty(&p->starting))
        stop_instance(list_entry(list_first(&p->starting), pinst, link));
    if (p->nstopping > 0) return;
    /* Every instance has exited: the zygotes can go. */
    while (!list_empty(&p->versions)) {
        pversion *v = list_entry(list_first(&p->versions), pversion, link);
        pool_load_cb cb = v->load_cb;
        v->load_cb = NULL;
        uint32_t number = v->number;
        void *data = v->load_data;
        free_version(v);
        if (cb) cb(p, number, ERR_CLOSED, "spated is shutting down", data);
    }
    p->closed = 1;
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

void pool_close(pool *p, int drain, void (*cb)(void *data), void *data)
{
    if (p->closed) return;
    if (!p->closing) {
        p->close_cb = cb;
        p->close_data = data;
    }
    p->closing = 1;
    if (!drain) {
        fail_waiting(p, INV_UNAVAILABLE, "spated is shutting down");
        /* Running invocations are cut: report them, then kill. */
        list_node cut;
        list_init(&cut);
        while (!list_empty(&p->busy)) {
            pinst *pi = list_entry(list_first(&p->busy), pinst, link);
            while (pi->depth) list_push_back(&cut, &pop_head(pi)->link);
            stop_instance(pi);
        }
        while (!list_empty(&cut)) {
            invocation *inv = list_entry(list_first(&cut), invocation, link);
            list_remove(&inv->link);
            finish_msg(p, inv, INV_UNAVAILABLE, "spated stopped before the function finished");
        }
    }
    maybe_finish_close(p);
}
