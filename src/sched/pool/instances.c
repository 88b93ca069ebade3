/*
 * instances.c - the life of the pool's instances: starting them (within the
 * function's and the node's maximum), the runtime's callbacks (ready, result,
 * withdrawn, exited), stopping them, and the crash-loop back-off.
 */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "sched/pool/internal.h"

/* How runtimes begin the reason an instance did not start (runtime/native.c, runtime/exec/). */
#define START_FAILED "instance failed to start: "

/* Weight of a new sample in the moving averages. */
#define EWMA_ALPHA 0.2

/* Live instances of the whole node, against --max-instances. */
static uint32_t node_live, node_max = UINT32_MAX;
/* Every open pool (pool.node_link): where an idle instance may give way to
 * another function's start at --max-instances. */
static list_node node_pools = {&node_pools, &node_pools};
/* Instances starting on the node (each pool's nstarting, summed), against
 * --max-starting; the pools that want to start more and are held by it, in
 * the order they were held (pool.start_wait); and the room kept for held
 * pools woken and not yet run (pool.start_woken), so that the pool whose
 * start just ended does not take it back before them. */
static uint32_t node_starting, node_starting_max = UINT32_MAX, node_starting_kept;
static list_node start_waiters = {&start_waiters, &start_waiters};
/* Starts of functions the machine starves (pool.starved_since: a start of
 * theirs was killed starved since one was ready) that the node runs at once
 * (UINT32_MAX: no fewer than --max-starting). Eight functions' starts in
 * 0.015 of a core had too little CPU each in the 60 s a starved start is
 * given, were killed together and begun again together, never ready, and
 * their messages went to the dead letters unrun (brk7). A start killed
 * starved while other functions' starts were in progress halves it (of the
 * starts then in progress, at least one); each start of a starved function
 * that becomes ready adds one back, and it is off once no function's starts
 * are starved (pool__starved_forget). It holds starved functions only: a function none of whose
 * starts was starved starts as it would (a hostile tester's four functions
 * whose starts looked starved kept a good function's cold start waiting
 * 60-180 s while the window held every function, brk8). */
static uint32_t node_starved_window = UINT32_MAX;
/* Of it, the room kept for held starved functions woken and not yet run:
 * the function whose start was just killed starved took the room back in
 * the same pass, before them, again at each of its kills, and those held
 * never started (brk9). */
static uint32_t node_starved_kept;

/* Starts in progress of functions the machine starves (only looked at while
 * the window is narrowed: then few pools are starting). */
static uint32_t node_starting_starved(void)
{
    uint32_t n = 0;
    for (list_node *l = list_first(&node_pools); l != &node_pools; l = l->next) {
        const pool *q = list_entry(l, pool, node_link);
        if (q->starved_since) n += q->nstarting;
    }
    return n;
}

/* Room under node_starved_window for a starved function's start. */
static uint32_t starved_room(void)
{
    if (node_starved_window == UINT32_MAX) return UINT32_MAX;
    uint32_t used = node_starting_starved() + node_starved_kept;
    return used < node_starved_window ? node_starved_window - used : 0;
}

uint32_t pool__starved_window_holding(const pool *p)
{
    if (!p->starved_since || starved_room() > 0) return 0;
    return node_starved_window;
}

/* Room under --max-starting for a pool not woken. */
static uint32_t node_starting_room(void)
{
    uint32_t used = node_starting + node_starting_kept;
    return used < node_starting_max ? node_starting_max - used : 0;
}

/* The last quarter of --max-starting (at least one) is kept for functions
 * with no start in progress: one whose starts hang (min=16 of a bootstrap
 * that sleeps) takes at most the rest, at each round of its failures, and
 * so do several such functions together (each beyond the first gets one
 * of the quarter), so that another's cold start waits for none of them —
 * as many as the quarter has starts, no more. */
static uint32_t node_starting_keep(void)
{
    return node_starting_max / 4 ? node_starting_max / 4 : 1;
}

/* What one pool may have starting at once: its window (pool.start_window),
 * within what the kept quarter leaves (at least one). */
uint32_t pool__starting_max(const pool *p)
{
    uint32_t keep = node_starting_keep();
    uint32_t share = node_starting_max > keep ? node_starting_max - keep : 1;
    if (p->starved_since && node_starved_window < share) share = node_starved_window;
    return p->start_window < share ? p->start_window : share;
}

/* The pool p's starts count with for the kept quarter: its function's. */
static pool *group_of(pool *p)
{
    return p->group ? p->group : p;
}

/* Room under --max-starting for p, not woken: of the kept quarter, one
 * start for a function with none in progress (in its own pool or those of
 * its old versions: four old versions called by number and a hanging
 * active one took every start, brk9), none for the others, nor for a pool
 * that is closing: a deleted function's old versions count alone once its
 * own pool has left, and one name deleted and deployed again took the
 * quarter a start each (brk11); what they drain waits for the rest. */
static uint32_t quarter_room(pool *p)
{
    uint32_t room = node_starting_room();
    uint32_t used = node_starting + node_starting_kept, keep = node_starting_keep();
    uint32_t open = used + keep < node_starting_max ? node_starting_max - keep - used : 0;
    if (group_of(p)->group_starting == 0 && open == 0 && !p->closing) open = 1;
    return room < open ? room : open;
}

/* And for a starved function's, within the starved window. */
static uint32_t pool_node_room(pool *p)
{
    uint32_t room = quarter_room(p);
    if (room > 0 && p->starved_since) {
        uint32_t starved = starved_room();
        if (room > starved) room = starved;
    }
    return room;
}

void pool__starved_kill(pinst *pi)
{
    pool *p = pi->pool;
    /* Counted now, in the pass that kills it: by the time its end is read
     * its own replacement, or the next function woken, is starting too,
     * and "beside others" excused every kill for ever (brk8). */
    uint32_t flight = node_starting; /* it among them */
    /* Starved from now, not from when its end is read: its replacement,
     * begun in this pass, is one of a starved function's starts. */
    if (!p->starved_since) p->starved_since = pool__now_ms(p);
    /* None of another pool's: fewer at once would not help (its own window,
     * pool__start_late, makes them fewer). Not its function's other versions'
     * pools: each has a window of its own, and five versions starved
     * together were begun again together for ever (brk11). */
    if (flight <= p->nstarting) return;
    pi->starved_beside = 1;
    uint32_t w = node_starved_window < flight ? node_starved_window : flight;
    w = w / 2 ? w / 2 : 1;
    if (w >= node_starved_window) return;
    log_warn("starts starved of CPU (%u in progress): at most %u at once on the node for the "
             "functions they starve, until they are ready fn=%s",
             flight, w, p->name);
    node_starved_window = w;
}

void pool__start_late(pool *p)
{
    uint32_t flight = p->nstarting; /* the late one among them */
    uint32_t limit = p->start_window < flight ? p->start_window : flight;
    uint32_t w = limit / 2 ? limit / 2 : 1;
    if (w >= p->start_window) return;
    if (p->start_window >= SPATE_STARTING_MAX)
        log_warn("instances not ready in time (%u starting): at most %u at once until they are "
                 "fn=%s",
                 flight, w, p->name);
    p->start_window = w;
}

/* A woken pool runs (or leaves): the room kept for it is anyone's again. */
static void unkeep(pool *p)
{
    if (p->start_woken_starved) {
        p->start_woken_starved = 0;
        node_starved_kept--;
    }
    if (!p->start_woken) return;
    p->start_woken = 0;
    node_starting_kept--;
}

void pool__node_join(pool *p)
{
    list_push_back(&node_pools, &p->node_link);
    list_init(&p->start_wait);
    list_init(&p->grouped);
    list_init(&p->group_link);
}

void pool_set_group(pool *side, pool *group)
{
    group = group_of(group);
    if (side == group) return;
    if (side->group || !list_empty(&side->grouped)) return; /* once, at its creation */
    side->group = group;
    list_push_back(&group->grouped, &side->group_link);
    group->group_starting += side->nstarting;
    side->group_starting -= side->nstarting;
}

void pool__node_leave(pool *p)
{
    if (p->group) { /* a side pool (closed: none starting) */
        list_remove(&p->group_link);
        p->group->group_starting -= p->nstarting;
        p->group_starting += p->nstarting;
        p->group = NULL;
    }
    /* Its side pools (closing with it, or serving still) count alone. */
    while (!list_empty(&p->grouped)) {
        pool *q = list_entry(list_first(&p->grouped), pool, group_link);
        list_remove(&q->group_link);
        p->group_starting -= q->nstarting;
        q->group = NULL;
        q->group_starting += q->nstarting;
    }
    pool__starved_forget(p);
    list_remove(&p->node_link);
    list_init(&p->node_link);
    list_remove(&p->start_wait);
    list_init(&p->start_wait);
    unkeep(p);
    pool__wake_held(); /* the room kept for it is another's */
}

void pool_set_node_starting_max(uint32_t max)
{
    node_starting_max = max ? max : 1;
    pool__wake_held();
}

int pool__node_starting_full(void)
{
    return node_starting_room() == 0;
}

void pool__count_starting(pool *p)
{
    p->nstarting++;
    group_of(p)->group_starting++;
    node_starting++;
}

/* Pools held by --max-starting look again (on their timers: this runs
 * inside other pools' changes), as many as there is room for now, first
 * held first, the room kept for each until it runs: each starts what it
 * still wants (held again at the back if that is more than the room) and
 * passes the room on (pool__grow) when it wants less, so that none is left
 * waiting with room free. */
void pool__wake_held(void)
{
    uint32_t room = node_starting_room(), starved = starved_room();
    for (list_node *n = list_first(&start_waiters); room > 0 && n != &start_waiters;) {
        pool *q = list_entry(n, pool, start_wait);
        n = n->next;
        /* Held by what the kept quarter or the starved window leave it, not
         * by the room there is: it stays held, first, for room it can use;
         * woken, it would be held again at once, and woken again. */
        if ((q->starved_since && starved == 0) || quarter_room(q) == 0) continue;
        room--;
        list_remove(&q->start_wait);
        list_init(&q->start_wait);
        if (!q->start_woken) {
            q->start_woken = 1;
            node_starting_kept++;
        }
        if (q->starved_since && starved != UINT32_MAX) {
            starved--;
            if (!q->start_woken_starved) {
                q->start_woken_starved = 1;
                node_starved_kept++;
            }
        }
        /* A millisecond on: libuv before 1.48 runs a 0 ms timer started
         * inside a timer's callback in the same pass, before any I/O. */
        pool__arm(q, pool__now_ms(q) + 1);
    }
}

/* The instance idle longest among other pools' than p (each pool's idle
 * list is newest first), none of a pool held at its minimum of instances,
 * or NULL. */
static pinst *idle_elsewhere(const pool *p)
{
    pinst *pick = NULL;
    for (list_node *n = list_first(&node_pools); n != &node_pools; n = n->next) {
        pool *q = list_entry(n, pool, node_link);
        if (q == p || q->closing || list_empty(&q->idle)) continue;
        if (q->active && pool__live(q) <= q->active->cfg.min_instances) continue;
        pinst *pi = list_entry(list_last(&q->idle), pinst, link);
        if (!pick || pi->since < pick->since) pick = pi;
    }
    return pick;
}

/* At --max-instances with no spare left to give way: another function's
 * instance that has been idle longest stops (it only waited out its
 * keep-alive) and its room goes to this start at once (1), or none is
 * idle (0). */
static int reclaim_idle(pool *p)
{
    pinst *pi = idle_elsewhere(p);
    if (!pi) return 0;
    log_debug("idle instance stopped for a start at --max-instances fn=%s, for fn=%s",
              pi->pool->name, p->name);
    pool__stop_instance(pi);
    pool__uncount(pi);
    return 1;
}

static pinst *idle_elsewhere(const pool *p);

void pool_set_node_max(uint32_t max)
{
    node_max = max;
    /* Lowered (SIGHUP): spares and idle instances above it stop now, the
     * longest idle first; busy ones as they finish (pool__became_idle). */
    while (node_live > node_max && pool__spare_reclaim(NULL)) {
    }
    pinst *pi;
    while (node_live > node_max && (pi = idle_elsewhere(NULL)) != NULL) {
        pool__stop_instance(pi);
        pool__uncount(pi);
    }
}

int pool__node_over(void)
{
    return node_live > node_max;
}

uint32_t pool_node_max(void)
{
    return node_max;
}

uint32_t pool_node_live(void)
{
    return node_live;
}

/* pi's room under --max-instances goes to another instance now, though its
 * process may take a moment to exit (a spare reclaimed, spares.c). */
void pool__uncount(pinst *pi)
{
    if (pi->uncounted) return;
    pi->uncounted = 1;
    node_live--;
}

/* --- Instances ------------------------------------------------------------------ */

/* Takes pi out of its list (starting, idle or busy), if it is in one.
 * Stopping instances are in no list; only nstopping counts them. */
void pool__unlink_instance(pinst *pi)
{
    pool *p = pi->pool;
    if (pi->link.next == &pi->link) return;
    list_remove(&pi->link);
    switch (pi->state) {
    case PI_STARTING:
        p->nstarting--;
        group_of(p)->group_starting--;
        node_starting--;
        pool__wake_held();
        break;
    case PI_IDLE:
        p->nidle--;
        break;
    case PI_BUSY:
        p->nbusy--;
        break;
    case PI_STOPPING:
    case PI_SPARE:
        break;
    }
}

void pool__stop_instance(pinst *pi)
{
    pool__unlink_instance(pi);
    pi->state = PI_STOPPING;
    pi->pool->nstopping++;
    instance_kill(pi->inst);
}

/* An instance failed (crashed, timed out, went past a limit): after a few in
 * a row, the next start waits, longer each time (SPATE_CRASH_BACKOFF_*). */
void pool__instance_failed(pool *p)
{
    if (++p->fail_streak <= SPATE_CRASH_FREE) return;
    uint32_t shift = p->fail_streak - SPATE_CRASH_FREE - 1;
    uint64_t delay =
        shift >= 16 ? SPATE_CRASH_BACKOFF_CAP_MS : (uint64_t)SPATE_CRASH_BACKOFF_BASE_MS << shift;
    if (delay > SPATE_CRASH_BACKOFF_CAP_MS) delay = SPATE_CRASH_BACKOFF_CAP_MS;
    p->restart_at = pool__now_ms(p) + delay;
    if (p->fail_streak == SPATE_CRASH_FREE + 1)
        log_warn("instances keep failing (%u in a row): restarts slowed down fn=%s", p->fail_streak,
                 p->name);
}

void pool__starved_forget(pool *p)
{
    p->starved_kills = 0;
    if (!p->starved_since) return;
    p->starved_since = 0;
    if (node_starved_window == UINT32_MAX) return;
    for (list_node *l = list_first(&node_pools); l != &node_pools; l = l->next)
        if (list_entry(l, pool, node_link)->starved_since) return;
    /* None left to hold (deleted, ready, or hanging instead): the window
     * would wait for starved starts to become ready that no longer come. */
    node_starved_window = UINT32_MAX;
    log_info("no function's starts are starved of CPU now: their starts are no longer "
             "narrowed fn=%s",
             p->name);
}

void pool__observe_start(pinst *pi)
{
    pool *p = pi->pool;
    /* One of a starved function's became ready: one more of theirs at once.
     * Not any function's: cheap cold starts (a function called every half
     * second with keep_alive=0) reopened it, five starved functions were
     * begun again together and their messages dead-lettered (brk9). */
    if (p->starved_since && node_starved_window != UINT32_MAX &&
        ++node_starved_window >= node_starting_max)
        node_starved_window = UINT32_MAX;
    pool__starved_forget(p); /* starts work on this machine */
    if (p->start_window < SPATE_STARTING_MAX) p->start_window++;
    uint64_t us = (clock_mono_ns() - pi->spawn_ns) / 1000;
    histogram_observe_us(&p->m.cold_start, us);
    p->cold_us += EWMA_ALPHA * ((double)us - p->cold_us);
    if (pi->deadline_seen)
        log_info("instance ready %llu ms after its start, read after its init deadline had "
                 "passed (spated's loop caught up after a stall): counted ready fn=%s "
                 "instance=%llu",
                 (unsigned long long)(us / 1000), p->name, (unsigned long long)pi->inst->id);
}

static void on_instance_ready(instance *inst, void *data)
{
    pinst *pi = data;
    if (pi->state == PI_SPARE) {
        pool__spare_ready(pi);
        return;
    }
    if (pi->state != PI_STARTING) return;
    pool *p = pi->pool;
    pool__unlink_instance(pi);
    p->refused = 0;
    pool__limits_eased(p);
    p->cold_starts++;
    p->last_cold_us = (clock_mono_ns() - pi->spawn_ns) / 1000;
    pool__observe_start(pi);
    pool__became_idle(pi);
    pool__grow(p);
}

static void on_instance_result(instance *inst, int failed, uint32_t duration_us, const char *body,
                               size_t len, void *data)
{
    pinst *pi = data;
    if (pi->state != PI_BUSY || pi->depth == 0) return; /* e.g. it had timed out */
    pool *p = pi->pool;
    pool__unlink_instance(pi);
    int stale = pi->outlasted; /* this result proved the estimate wrong while it ran */
    invocation *inv = pool__pop_head(pi);
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
        pool__requeue_inflight(pi);
        pi->state = PI_STOPPING;
        p->nstopping++;
        pool__serve_waiting(p);
        pool__grow(p);
    } else if (pi->depth > 0) {
        pool__head_started(pi);
        uint32_t fit = pool__mailbox_fit(p);
        if (duration_us > p->cold_us && pi->depth > fit) {
            /* Queued here when calls looked shorter, and this one took longer
             * than a cold start: the mailbox is taken back, what still fits
             * comes back to it, the rest goes to idle or new instances. (A
             * short call that a loaded machine slowed down moves nothing.) */
            pool__release_tail(pi);
            pool__top_up(pi);
            pool__serve_waiting(p);
            pool__grow(p);
        } else {
            pool__top_up(pi);
        }
    } else {
        pool__became_idle(pi);
    }
    pool__finish(p, inv, failed ? POOL_FAILED : POOL_OK, body, len);
}

/* The oldest invocation pi was given did not run (release_tail asked for
 * it back): it waits again, first in line. */
static void on_instance_withdrawn(instance *inst, void *data)
{
    pinst *pi = data;
    if (pi->state != PI_BUSY || pi->depth == 0) return;
    pool *p = pi->pool;
    pool__unlink_instance(pi);
    invocation *inv = pool__pop_head(pi);
    list_push_front(&p->waiting, &inv->link);
    p->nwaiting++;
    pool__arm(p, inv->wait_deadline);
    if (!instance_usable(inst)) {
        pool__requeue_inflight(pi);
        pi->state = PI_STOPPING;
        p->nstopping++;
    } else if (pi->depth > 0) {
        pool__head_started(pi);
    } else {
        pool__became_idle(pi);
    }
    pool__serve_waiting(p);
    pool__grow(p);
}

static void on_instance_exited(instance *inst, const char *why, void *data)
{
    pinst *pi = data;
    pool *p = pi->pool;
    pversion *v = pi->ver;
    enum pi_state was = pi->state;
    int never_ready = pi->never_ready;
    uint64_t id = inst->id;
    /* Not started for a node limit (the zygote's fork failed): not the
     * function's failure, and no crash of it. */
    int limit = (was == PI_STARTING || was == PI_SPARE) && !pi->depth ? inst->limit_err : 0;
    /* Starved (instance.h): excused for SPATE_STARVED_EXCUSED_MS from the
     * first such start of the function while none becomes ready, and for
     * SPATE_STARVED_EXCUSED_KILLS starts killed while other functions'
     * starts shared the CPU with them (fewer start at once from then:
     * node_starved_window); then it fails a call as any failed start does:
     * a bootstrap that starves itself (nice 19 on a loaded machine) is not
     * retried for ever without an attempt. */
    int starved = 0;
    /* Killed at its deadline with the CPU it could have: a hang, not a
     * machine starving it (brk9: a spinner that had been starved kept its
     * function held by the window after the load was gone). */
    if (never_ready && !inst->starved) pool__starved_forget(p);
    if (never_ready && inst->starved) {
        uint64_t now = pool__now_ms(p);
        if (!p->starved_since) p->starved_since = now;
        p->starved_kills++;
        starved = now - p->starved_since < SPATE_STARVED_EXCUSED_MS ||
                  (pi->starved_beside && p->starved_kills <= SPATE_STARVED_EXCUSED_KILLS);
    }
    int spare_ready = was == PI_SPARE && pi->ready;
    if (was == PI_STOPPING)
        p->nstopping--;
    else if (was == PI_SPARE)
        pool__spare_gone(pi);
    else
        pool__unlink_instance(pi);
    if (!pi->uncounted) node_live--;
    pool__account(p);
    p->nprocs--;
    /* The head was running; the rest never started and go to another, the
     * head too when the instance says it never reached the function (an
     * exec bootstrap that answered one and exited before asking for the
     * next): it is not the call that crashed. */
    int undelivered = pi->depth && !instance_delivered(inst);
    invocation *head = pi->depth && !undelivered ? pool__pop_head(pi) : NULL;
    pool__requeue_inflight(pi);
    v->ninstances--;
    /* The last one gone: the zygote's idle time starts; a spare's end does
     * not make it start over (it was no use of the zygote). */
    if (was == PI_SPARE || pi->was_spare)
        pool__zygote_settle(v);
    else
        pool__zygote_touch(v);
    free(pi);

    invocation *failed = NULL;
    if (limit && was == PI_SPARE) {
        /* Told once, like any start a limit refused; no caller was on it. */
        pool__limit_hit(p, limit, "cannot start a spare instance");
        pool__spare_limited(p);
        if (v->retired && v->ninstances == 0) pool__free_version(v);
        pool__maybe_finish_close(p);
        return;
    }
    if (limit) {
        fnlog_platform(p->log, id, v->number, NULL, "instance could not start: %s: %s", why,
                       err_str(limit));
        if (v->retired && v->ninstances == 0) pool__free_version(v);
        /* The next start waits a little: the limit may well hold. */
        p->restart_at = pool__now_ms(p) + SPATE_LIMIT_RETRY_MS;
        pool__start_refused(p, limit, "cannot start an instance");
        pool__serve_waiting(p);
        pool__grow(p);
        pool__maybe_finish_close(p);
        return;
    }
    if (head || was == PI_STARTING || never_ready || (was == PI_SPARE && !spare_ready))
        pool__instance_failed(p);
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
         * invocation with the reason, rather than retrying for ever. Not
         * an init that only took too long while other instances of the
         * function serve: its init works, the machine was too loaded to run
         * this one in time, and what waits is not the cause (a trigger's
         * message would lose an attempt to it). Those serve it, or its
         * wait's timeout ends it. Nor one the machine starved (runnable,
         * with less than half the CPU it could have had: instance.h), when
         * none serves: a node restarted under a backlog of many functions
         * at once sent messages to the dead letters unrun that way. */
        log_warn("instance could not start: %.*s%s fn=%s version=%u instance=%llu", cut, why,
                 starved ? " (starved of CPU: not the function's failure, no call fails for it)"
                         : "",
                 p->name, v->number, (unsigned long long)id);
        if (p->nwaiting > 0 && !(never_ready && (p->nidle + p->nbusy > 0 || starved)))
            failed = pool__dequeue(p);
        if (failed) p->crashes++; /* answered function_crashed: counted as one */
        const char *cause = why;
        if (strncmp(cause, START_FAILED, sizeof START_FAILED - 1) == 0)
            cause += sizeof START_FAILED - 1;
        fnlog_platform(p->log, id, v->number, failed ? failed->request_id : NULL,
                       "instance could not start: %s", cause);
    } else if (undelivered) {
        log_info("instance %.*s before taking the invocations it was given: they go to another "
                 "fn=%s instance=%llu",
                 cut, why, p->name, (unsigned long long)id);
        fnlog_platform(p->log, id, v->number, NULL, "instance ended between invocations: %s", why);
    } else if (was == PI_SPARE) {
        /* No invocation was on it: the next start (or spare) replaces it. */
        log_warn("spare instance %.*s fn=%s version=%u instance=%llu", cut, why, p->name, v->number,
                 (unsigned long long)id);
        fnlog_platform(p->log, id, v->number, NULL, "spare instance ended: %s", why);
    } else if (was == PI_IDLE) {
        log_warn("idle instance %.*s fn=%s instance=%llu", cut, why, p->name,
                 (unsigned long long)id);
        fnlog_platform(p->log, id, v->number, NULL, "idle instance ended: %s", why);
    }
    if (v->retired && v->ninstances == 0) pool__free_version(v);
    if (failed) pool__finish_msg(p, failed, POOL_CRASHED, why);
    pool__serve_waiting(p);
    pool__grow(p);
    pool__maybe_finish_close(p);
}

static const instance_callbacks callbacks = {
    .ready = on_instance_ready,
    .result = on_instance_result,
    .withdrawn = on_instance_withdrawn,
    .exited = on_instance_exited,
};

int pool__start_instance(pool *p, pversion *v, int spare)
{
    pinst *pi = calloc(1, sizeof *pi);
    if (!pi) return ERR_NOMEM;
    pi->pool = p;
    pi->ver = v;
    pi->state = spare ? PI_SPARE : PI_STARTING;
    list_init(&pi->link);
    list_init(&pi->inflight);
    list_init(&pi->slink);
    pi->spawn_ns = clock_mono_ns();
    int rc = launcher_spawn(v->z, &callbacks, pi, &pi->inst);
    if (rc != 0) {
        free(pi);
        return rc;
    }
    pi->began = pool__now_ms(p);
    pi->deadline = pi->began + SPATE_INSTANCE_INIT_TIMEOUT_MS;
    node_live++;
    pool__account(p);
    p->nprocs++;
    pool__activity(p);
    v->ninstances++;
    if (spare) {
        /* Its process limit is looked at as a busy one's (spares.c). */
        pi->check_at = pool__check_time(pool__now_ms(p) + SPATE_PIDS_FIRST_CHECK_MS);
        pi->check_every = SPATE_PIDS_CHECK_MS;
        pool__arm(p, pi->check_at);
        v->spare = pi;
        p->nspare++;
        p->spares_started++;
        pool__spare_counted(pi);
    } else {
        list_push_back(&p->starting, &pi->link);
        pool__count_starting(p);
        pool__zygote_touch(v);
    }
    pool__arm(p, pi->deadline);
    return 0;
}

double pool__service_floor_us(const pool *p)
{
    if (p->service_us > 0) return 0;
    uint64_t now = pool__now_ms(p);
    double floor_us = 0;
    for (list_node *n = list_first(&p->busy); n != &p->busy; n = n->next) {
        double ran = (double)(now - list_entry(n, pinst, link)->started) * 1000;
        if (ran > floor_us) floor_us = ran;
    }
    /* Past SPATE_OUTLASTED_MIN_MS only: before that, what a call has lasted
     * as spated sees it is as much the machine's load as the handler (a
     * 20 ms call's first run took 45 ms beside other work, and the burst
     * was sized for twice what it needed); the first result comes first. */
    return floor_us >= SPATE_OUTLASTED_MIN_MS * 1000.0 ? floor_us : 0;
}

uint32_t pool__desired_now(const pool *p)
{
    pversion *v = p->active;
    if (!v) return 0;
    uint64_t now = pool__now_ms(p);
    /* The handler time, and what each call costs around it; before any
     * result, what the oldest running invocation has lasted so far. */
    double service_us = p->service_us > 0 ? pool__service_estimate(p) + SPATE_WAKE_COST_US : 0;
    double floor_us = pool__service_floor_us(p);
    scale_input in = {
        .arrival_per_s = p->arrivals.rate,
        .service_s = service_us / 1e6,
        .service_floor_s = floor_us / 1e6,
        .backlog = (double)p->nwaiting + p->nqueued + p->nbusy,
        .cold_start_s = p->cold_us / 1e6,
        .drain_target_s = AUTOSCALE_DRAIN_TARGET_S,
        .min = v->cfg.min_instances,
        .max = v->cfg.max_instances,
    };
    scale_output out;
    autoscale(&in, &out);
    uint32_t d = out.desired;
    if (p->hint_at && now - p->hint_at <= SPATE_SCALE_HINT_MS && p->hint > d) d = p->hint;
    return d;
}

uint32_t pool__desired(pool *p)
{
    rate_update(&p->arrivals, p->arrived, clock_mono_ns());
    return pool__desired_now(p);
}

void pool_scale_hint(pool *p, uint32_t desired)
{
    uint32_t was = p->hint_at ? p->hint : 0;
    p->hint = desired;
    p->hint_at = pool__now_ms(p) ? pool__now_ms(p) : 1;
    if (desired > was && p->nwaiting > 0) pool__grow(p);
}

/* The instances the rule lets stand: what it asks for (desired), at least
 * SPATE_SCALE_FLOOR (a few start while the handler time is unknown). */
static uint32_t rule_cap(uint32_t desired)
{
    return desired < SPATE_SCALE_FLOOR ? SPATE_SCALE_FLOOR : desired;
}

/* Starts as many instances as waiting invocations need (and the minimum
 * asks), within the maximum and the instances the autoscaler's rule asks
 * for (pool__desired, at least SPATE_SCALE_FLOOR). Each new instance will
 * take a mailbox full. */
static void grow(pool *p)
{
    pversion *v = p->active;
    if (!v || p->closed) return;
    if (p->restart_at > pool__now_ms(p)) {
        pool__arm(p, p->restart_at);
        return;
    }
    uint32_t limit = pool__mailbox_limit(p);
    uint32_t need = (p->nwaiting + limit - 1) / limit;
    uint32_t want = need > p->nstarting ? need - p->nstarting : 0;
    if (want > 0) {
        /* The rule: drain what waits within the drain target, keep up with
         * arrivals; while the handler time is unknown, a few start and the
         * pool learns (it looks again as the first calls run on). */
        uint32_t cap = rule_cap(pool__desired(p));
        uint32_t room = cap > pool__live(p) ? cap - pool__live(p) : 0;
        if (want > room) {
            want = room;
            pool__arm(p, pool__now_ms(p) + SPATE_SCALE_RECHECK_MS);
        }
    }
    if (!p->closing && v->cfg.min_instances > pool__live(p)) {
        uint32_t short_by = v->cfg.min_instances - pool__live(p);
        if (short_by > want) want = short_by;
    }
    /* A few at a time: the next start as each is ready (on_instance_ready),
     * fewer while its starts are late, and never the node's every start. */
    uint32_t most = pool__starting_max(p);
    uint32_t slots = p->nstarting < most ? most - p->nstarting : 0;
    if (want > slots) want = slots;
    /* And a few on the node (--max-starting): held, this pool starts more
     * when another start ends (pool__wake_held). */
    uint32_t node_room = pool_node_room(p);
    if (want > node_room) {
        want = node_room;
        if (list_empty(&p->start_wait)) list_push_back(&start_waiters, &p->start_wait);
    }
    if (want == 0) return;
    if (v->zstate != ZS_READY) {
        pool__ensure_zygote(p, v);
        return;
    }
    if (launcher_exited(v->z)) {
        /* Killed, its end not read yet: its spare and instances die with
         * it, and a start asked of it would fail a waiting invocation.
         * What waits waits for its restart (on_zygote_exit, soon). */
        pool__arm(p, pool__now_ms(p) + SPATE_SPAWN_RETRY_MS);
        return;
    }
    while (want-- > 0) {
        if (pool__live(p) >= v->cfg.max_instances) {
            p->refused = 0; /* what waits now waits for the function's own maximum */
            break;
        }
        /* The version's spare first: forked, in its cgroups and
         * initialised already (spares.c). */
        if (pool__spare_take(p, v)) {
            p->refused = 0;
            continue;
        }
        /* At the node's maximum: other functions' spares give way, as many
         * as it takes (a reload may have lowered --max-instances below the
         * spares standing), none when that would not make room. */
        if (node_live >= node_max && node_live - pool__spares_elsewhere(p) < node_max)
            while (node_live >= node_max && pool__spare_reclaim(p)) {
            }
        /* Then other functions' idle instances, longest idle first. */
        if (node_live >= node_max) reclaim_idle(p);
        int rc = node_live < node_max ? pool__start_instance(p, v, 0) : ERR_INSTANCES;
        if (rc == 0) {
            p->refused = 0; /* a zygote's fork may still fail: then it is set again */
            continue;
        }
        if (err_limit(rc) >= 0) {
            char what[96];
            if (rc == ERR_INSTANCES)
                snprintf(what, sizeof what, "cannot start an instance (%u of %u live)", node_live,
                         node_max);
            else
                snprintf(what, sizeof what, "cannot start an instance");
            pool__start_refused(p, rc, what);
        } else if (p->closing && pool__live(p) == 0) {
            /* Deleted (its artifact gone with it) or spated stopping: no
             * later start would do better, and tried every 100 ms it
             * warned ten times a second until the callers' timeouts
             * (brk11). */
            char msg[256];
            snprintf(msg, sizeof msg,
                     "no instance could start while the function was closing (deleted, or "
                     "spated stopping): %s",
                     err_str(rc));
            pool__fail_waiting(p, POOL_UNAVAILABLE, msg);
            pool__arm(p, pool__now_ms(p) + 1); /* its timer ends the close */
        } else {
            /* The zygote could not take it now: try again soon rather than
             * at the next event, which may never come while all are busy. */
            pool__arm(p, pool__now_ms(p) + SPATE_SPAWN_RETRY_MS);
        }
        break;
    }
}

void pool__grow(pool *p)
{
    unkeep(p); /* woken (pool__wake_held): the room kept is for this */
    grow(p);
    /* Held only while --max-starting (or what of it the kept quarter or
     * the starved window leave it) is what keeps it from starting: with
     * room left it stopped for another reason (its zygote loading, its
     * own maximum, a back-off), whose end grows it again; held, it would
     * be woken at once, again and again, with nothing changed. */
    if (!list_empty(&p->start_wait) && pool_node_room(p) > 0) {
        list_remove(&p->start_wait);
        list_init(&p->start_wait);
    }
    pool__spare_check(p); /* after a handover: its replacement */
    pool__wake_held();    /* room this pool did not take */
}

int pool_has_room(const pool *p)
{
    if (!p->active || p->closing) return 0;
    if (p->nidle > p->nwaiting) return 1;
    /* No zygote, and the budget has no room for one: another node may. */
    if (p->active->zstate == ZS_NONE && !pool__zygote_room(p->active)) return 0;
    /* As pool__grow would see it with one more waiting: the instances the
     * waiting ones (and this one) need beyond the idle ones, less those
     * already starting for them, must fit under the function's maximum, the
     * rule's cap and the node's maximum; and no crash back-off holds the
     * starts. */
    if (p->restart_at > pool__now_ms(p)) return 0;
    uint32_t limit = pool__mailbox_limit(p);
    uint32_t waiting = p->nwaiting + 1 - p->nidle;
    uint32_t need = (waiting + limit - 1) / limit;
    if (need <= p->nstarting) return 1;
    uint32_t more = need - p->nstarting;
    uint32_t cap = rule_cap(pool__desired_now(p));
    if (cap > p->active->cfg.max_instances) cap = p->active->cfg.max_instances;
    if (pool__live(p) + more > cap) return 0;
    /* Other functions' spares and idle instances give way (pool__grow). */
    return node_live + more <= node_max || pool__spares_elsewhere(p) > 0 ||
           idle_elsewhere(p) != NULL;
}
