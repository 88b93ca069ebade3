/*
 * internal.h - what the files of the pool share; nothing outside src/sched/pool/
 * includes it (the public face is sched/pool.h).
 *
 * A pool is one function's dispatcher. Its state is struct pool, owned by the
 * pool and freed by pool_close; each version (pversion) and instance (pinst)
 * belongs to its pool and is freed by the file that owns its life:
 *
 *   pool.c       create, stats, metrics, close (the pool's own life)
 *   dispatch.c   invocations: the wait queue, the mailboxes of busy instances,
 *                finishing an invocation exactly once; pool_invoke, pool_cancel
 *   instances.c  instance life: start, the runtime's callbacks, stop; growing
 *                the pool (pool__grow) within the function's and node's maximum
 *   versions.c   versions and their zygotes: load, activate, retire, discard
 *   zygotes.c    the node's zygotes: started on demand, stopped when idle, all
 *                within one budget (--max-zygotes, --zygote-idle)
 *   spares.c     the spare instance of a recently invoked version: started
 *                ahead, handed over to the next invocation that finds no
 *                instance, stopped with its zygote or after --spare-idle;
 *                and what instances cost (instance-seconds)
 *   timer.c      the pool's one timer: wait and run timeouts, init deadlines,
 *                process limits, keep-alive, restart back-off
 *
 * Names: pool_* is the public API (sched/pool.h), pool__* is shared between
 * these files only, plain static names stay in their file. Everything runs on
 * the pool's loop thread.
 */
#ifndef SPATE_SCHED_POOL_INTERNAL_H
#define SPATE_SCHED_POOL_INTERNAL_H

#include <stdint.h>
#include <uv.h>

#include "common/limits.h"
#include "runtime/instance.h"
#include "runtime/launcher.h"
#include "sched/autoscaler.h"
#include "sched/pool.h"

/* PI_SPARE: the version's spare (spares.c), starting or ready, in no list
 * and not counted in pool__live: it serves nothing until handed over. */
enum pi_state { PI_STARTING, PI_IDLE, PI_BUSY, PI_STOPPING, PI_SPARE };
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
    list_node zlink;        /* in the node's list of zygotes while counted (zygotes.c) */
    int zcounted;           /* z is a process counted against --max-zygotes */
    int zreclaim;           /* z stops for another's room once its idle instances have */
    list_node wlink;        /* in the node's prewarm versions waiting for room (zygotes.c) */
    uint64_t zused;         /* loop ms: z loaded, or an instance of it started or ended */
    uint64_t retry_at;      /* loop ms: no zygote restart before this */
    uint32_t load_failures; /* loads that failed in a row (the next waits longer) */
    char *load_error;
    int load_limit;      /* the node limit (ERR_*) that kept its zygote from starting, or 0 */
    uint32_t ninstances; /* instances of this version in any state, its spare too */
    pinst *spare;        /* its spare instance (spares.c), or NULL */
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
    uint64_t began;        /* loop ms: spawned */
    uint64_t check_at;     /* loop ms: next look at its process limit (busy, or a spare) */
    uint32_t check_every;  /* ms: the interval after the next look (doubles) */
    uint64_t started;      /* loop ms: the running invocation started (busy) */
    uint64_t overdue_seen; /* loop ms: first seen past outlasted_after_ms(), 0 if not */
    uint64_t deadline_seen; /* loop ms: seen past deadline (pool__deadline_passed), or 0 */
    int outlasted;          /* it has run past what mailboxes bet on (counted in noutlasted) */
    uint64_t spawn_ns;
    int never_ready;    /* stopped while starting (init took too long) */
    int starved_late;   /* past its init deadline, starved: given more time (timer.c) */
    int starved_beside; /* killed starved while other functions' starts were in progress */
    int ready;          /* a spare that said READY (spares.c) */
    int was_spare;      /* stopped while a spare: its end does not restart the zygote's idle time */
    int deploy_token;   /* a spare for a deploy, started with a token (spares.c) */
    int uncounted;      /* no longer in node_live (a spare given up for another's start) */
    list_node slink;    /* in the node's list of spares while a spare */
};

struct pool {
    list_node node_link;     /* in the node's list of pools (instances.c) */
    list_node start_wait;    /* in the node's pools held by --max-starting (instances.c) */
    int start_woken;         /* woken from there, room kept for it until it grows */
    int start_woken_starved; /* and a start of the starved window kept for it */
    uv_loop_t *loop;
    char *name;
    fnlog *log; /* what its processes write */
    const char *runner_path;
    pversion *active;
    list_node versions;
    list_node starting, idle, busy; /* idle: most recently used first */
    list_node waiting;              /* FIFO of invocations */
    uint32_t nstarting, nidle, nbusy, nstopping, nwaiting;
    /* A side pool's (an old version called by number, versions.c): its
     * function's own pool, with which its starts count against the kept
     * quarter of --max-starting (instances.c); NULL for a function's own
     * pool, and once that one has left. group_starting, on a function's own
     * pool: starts in progress in it and its side pools; grouped: its side
     * pools (by group_link), which its leaving lets go (walking every pool
     * instead, a node of 10,000 functions stopping took N² steps). */
    pool *group;
    uint32_t group_starting;
    list_node grouped, group_link;
    uint32_t nqueued;    /* invocations in mailboxes behind a running one */
    uint32_t noutlasted; /* running invocations past SPATE_OUTLASTED_MIN_MS & co: no mailboxes */
    uint64_t last_start; /* loop ms: the latest invocation to start */
    uv_timer_t timer;
    uint64_t timer_at;
    int timer_armed;
    int closing, drain, closed;
    int prewarm_due; /* its active version is prewarmed and may have room for its zygote now */
    void (*close_cb)(void *);
    void *close_data;
    uint64_t invocations, errors, timeouts, crashes, rejected, cold_starts, last_cold_us;
    /* Spares (spares.c): how many stand (0 or 1: only the active version has
     * one), started, handed over; when the pool was last used (an invocation
     * came, or a deploy); the instance-seconds of all its instances and of
     * its spares, folded at each change of their counts (nprocs: instances
     * started and not yet exited, spares included). */
    uint32_t nspare;
    uint64_t spares_started, spare_handovers;
    uint64_t used_at;
    int used_by_deploy;      /* used_at is a deploy's, not an invocation's */
    uint64_t spare_retry_at; /* loop ms: no spare before this (a node limit refused one, or
                              * the last one died waiting) */
    uint32_t spare_lost;     /* spares that died waiting since one was last handed over */
    uint64_t spare_due;      /* loop ms: a spare put off while an invocation runs starts then */
    uint32_t nprocs;
    uint64_t inst_ms, spare_ms, acct_at;
    uint32_t fail_streak;   /* instances that failed in a row (crash, timeout, limit) */
    uint64_t starved_since; /* ms of the first start the machine starved since one was ready */
    uint32_t starved_kills; /* starts killed starved since one was ready */
    uint32_t start_window;  /* instances it starts at once (SPATE_STARTING_MAX): halved by a
                             * start killed at its init deadline, one more per ready start —
                             * starts that share too little CPU are none of them ready */
    int refused;            /* the node limit (ERR_*) that refused its last start, 0 once one
                             * went through: a caller whose wait ends is told it */
    uint64_t restart_at;    /* loop ms: no instance starts before this (crash loop) */
    double service_us;      /* moving average of handler time; 0 until known */
    double cold_us;         /* moving average of instance start time */
    /* Sizing by the autoscaler's rule: invocations that came (all of them,
     * direct or from triggers) and their smoothed rate; the triggers'
     * desired count and when they said it (loop ms, 0: never). */
    uint64_t arrived;
    rate_meter arrivals;
    uint32_t hint;
    uint64_t hint_at;
    pool_metrics m;
    void (*active_cb)(void *); /* pool_on_active */
    void *active_data;
    int active_told; /* active_cb was called and pool_settle has not found it quiet since */
    /* The newest finished invocations, a ring of SPATE_RECENT_INVOCATIONS
     * made at the first one (a pool never invoked keeps none): recent_next
     * is where the next one goes, recent_count how many are kept. */
    pool_recent_entry *recent;
    uint32_t recent_next, recent_count;
};

static inline uint64_t pool__now_ms(const pool *p)
{
    return uv_now(p->loop);
}

/* When a busy instance's process limit is next looked at, from t: on a
 * SPATE_PIDS_CHECK_QUANTUM_MS boundary, so that the looks of many instances
 * come in one timer turn (each turn walks every busy instance). */
static inline uint64_t pool__check_time(uint64_t t)
{
    return (t + SPATE_PIDS_CHECK_QUANTUM_MS - 1) / SPATE_PIDS_CHECK_QUANTUM_MS *
           SPATE_PIDS_CHECK_QUANTUM_MS;
}

/* The pool is invoked or starts an instance: tells pool_on_active's
 * callback, once until pool_settle finds it quiet. */
static inline void pool__activity(pool *p)
{
    if (p->active_told || !p->active_cb) return;
    p->active_told = 1;
    p->active_cb(p->active_data);
}

/* Instances that count against the maximum: all but the stopping ones. */
static inline uint32_t pool__live(const pool *p)
{
    return p->nstarting + p->nidle + p->nbusy;
}

/* --- dispatch.c --------------------------------------------------------------- */

/* Answers inv exactly once (body borrowed for the call). */
/* Keeps inv in the pool's ring of recent invocations (recent.c). */
void pool__remember(pool *p, const invocation *inv, enum pool_outcome outcome, uint32_t version,
                    const char *body, size_t len);
void pool__finish(pool *p, invocation *inv, enum pool_outcome outcome, const char *body,
                  size_t len);
void pool__finish_msg(pool *p, invocation *inv, enum pool_outcome outcome, const char *msg);
void pool__fail_waiting(pool *p, enum pool_outcome outcome, const char *msg);
invocation *pool__dequeue(pool *p);
void pool__head_started(pinst *pi);
void pool__requeue_inflight(pinst *pi);
invocation *pool__pop_head(pinst *pi);
uint32_t pool__mailbox_fit(const pool *p);
uint32_t pool__mailbox_limit(const pool *p);
uint64_t pool__outlasted_after_ms(const pool *p);
double pool__service_estimate(const pool *p);
void pool__release_tail(pinst *pi);
void pool__outlasted(pinst *pi, uint64_t ran_ms);
void pool__top_up(pinst *pi);
void pool__became_idle(pinst *pi);
void pool__serve_waiting(pool *p);

/* --- instances.c -------------------------------------------------------------- */

/* p joins or leaves the node's pools, among which an idle instance gives
 * way to another pool's start at --max-instances. */
void pool__node_join(pool *p);
void pool__node_leave(pool *p);
/* --max-starting (instances.c): one more of p's instances starting; the
 * node at its ceiling; held pools woken for the room there is. */
void pool__count_starting(pool *p);
int pool__node_starting_full(void);
/* A start, still counted starting, is past its init deadline (starved of
 * CPU, or hung): the pool starts half as many at once (pool.start_window). */
void pool__start_late(pool *p);
/* pi, a start past its time while starved, is being stopped (timer.c): the
 * starts of functions the machine starves narrow (node_starved_window). */
void pool__starved_kill(pinst *pi);
/* p's starts are not starved now (one became ready, one hung instead, or p
 * leaves): none of p's is held by the starved window, and once no
 * function's starts are starved the window is off. */
void pool__starved_forget(pool *p);
/* The node's window of starved functions' starts when it, not
 * --max-starting, leaves starved p no room now; else 0. */
uint32_t pool__starved_window_holding(const pool *p);
/* How many p may have starting at once now (its window, within --max-starting). */
uint32_t pool__starting_max(const pool *p);
void pool__wake_held(void);
/* More instances live than --max-instances (lowered by a reload). */
int pool__node_over(void);
void pool__unlink_instance(pinst *pi);
/* pi's room under --max-instances goes to another now (its process is on
 * its way out). */
void pool__uncount(pinst *pi);
void pool__stop_instance(pinst *pi);
void pool__instance_failed(pool *p);
/* pi said READY: its start time goes into the cold-start histogram and the
 * moving average the autoscaler weighs a cold start at. */
void pool__observe_start(pinst *pi);
void pool__grow(pool *p);
/* The instances the autoscaler's rule asks for now: the pool's own view
 * (its invocations' arrival rate, handler time, backlog) or the triggers'
 * count if larger and fresh; not below the minimum. */
uint32_t pool__desired(pool *p);
/* Before any result: what the oldest running invocation has lasted (us), a
 * lower bound of the handler time, once past SPATE_OUTLASTED_MIN_MS; 0 once
 * the time is known, or none runs, or none has run that long. */
double pool__service_floor_us(const pool *p);
/* The same with the arrival rate as last measured (for stats). */
uint32_t pool__desired_now(const pool *p);

/* --- versions.c --------------------------------------------------------------- */

void pool__ensure_zygote(pool *p, pversion *v);
/* Frees v and stops its zygote; v must have no instances left. */
void pool__free_version(pversion *v);

/* --- limits.c ----------------------------------------------------------------- */

/* A node limit (err, common/err.h; other errors are ignored) refused what
 * (e.g. "cannot start an instance"): counted, and logged once per episode. */
void pool__limit_hit(pool *p, int err, const char *what);
/* A start went through: the limits that refused before have eased. */
void pool__limits_eased(pool *p);
/* Counts one caller refused for the node limit err. */
void pool__limit_count(int err);
/* Answers inv POOL_UNAVAILABLE with the limit err ("what: message"). */
void pool__refuse(pool *p, invocation *inv, int err, const char *what);
void pool__refuse_waiting(pool *p, int err, const char *what);
/* A start failed for the node limit err: logged once, and the waiting
 * callers are answered when no instance of the pool is left to serve them. */
void pool__start_refused(pool *p, int err, const char *what);

/* --- spares.c ---------------------------------------------------------------- */

/* Folds the time since the last change into the pool's instance-seconds:
 * call before nprocs or nspare changes. */
void pool__account(pool *p);
/* Starts an instance of v (instances.c); spare: as v's spare. */
int pool__start_instance(pool *p, pversion *v, int spare);
/* Gives v's spare to the pool as a new instance (ready: idle and serving
 * what waits; still starting: a starting one). 1 when v had one. */
int pool__spare_take(pool *p, pversion *v);
/* Starts a spare for the active version when it should have one. */
void pool__spare_check(pool *p);
/* A deploy's version v has loaded (not active yet): its spare may start. */
void pool__spare_deploy(pool *p, pversion *v);
/* Stops v's spare, if any. */
void pool__spare_stop(pversion *v);
/* The spare pi was just started: the node counts it. */
void pool__spare_counted(pinst *pi);
/* The spare pi said READY. */
void pool__spare_ready(pinst *pi);
/* A node limit kept a spare from starting: none for a while. */
void pool__spare_limited(pool *p);
/* pi ended while a spare: forgotten. */
void pool__spare_gone(pinst *pi);
/* From the timer: a spare whose init hangs, or whose pool has not been used
 * for --spare-idle, stops; else lowers *next to when it will. */
void pool__spare_check_timer(pool *p, uint64_t now, uint64_t *next);
/* At the node's --max-instances: stops a spare of another pool than p (any
 * pool's when p is NULL; one still starting first, else a ready one) and
 * gives its room at once (1), or finds none (0). */
int pool__spare_reclaim(pool *p);
/* The node's spares that are not p's (what pool__spare_reclaim may stop). */
uint32_t pool__spares_elsewhere(const pool *p);

/* --- zygotes.c --------------------------------------------------------------- */

/* Room for v's zygote within the budget, stopping the least recently used
 * one none of whose instances is at work if needed: 0; 1 when that one's
 * idle instances are stopping first (ask again shortly); ERR_BUSY when the
 * budget is full and every zygote has instances at work or is loading.
 * With force (a deploy's check, which cannot be refused) it goes over the
 * budget, given back once loaded (pool__zygote_trim). */
int pool__zygote_reserve(pversion *v, int force);
/* --max-zygotes, which bounds the node's spares too (spares.c). */
uint32_t pool__zygote_budget(void);
/* Whether v's zygote could start now (room, or one that may stop for it). */
int pool__zygote_room(const pversion *v);
/* v's launcher started (counted when it is a process) or stopped. */
void pool__zygote_started(pversion *v);
void pool__zygote_gone(pversion *v);
/* An instance of v started or ended, or v loaded: its idle time starts over. */
void pool__zygote_touch(pversion *v);
/* Its idle time goes on from when it was last used (a spare ended). */
void pool__zygote_settle(pversion *v);
/* Stops v's launcher now (it has no instances but perhaps its spare, which stops first). */
void pool__zygote_stop(pversion *v);
/* v, prewarmed, has no zygote for want of room: its pool's timer starts
 * one (pool__ensure_zygote) once a zygote stops. Forget: v goes. */
void pool__zygote_want(pversion *v);
void pool__zygote_forget(pversion *v);
/* More zygotes run than a budget lowered by a reload while they had work. */
int pool__zygote_over(void);
/* Stops idle zygotes, least recently used first, while over the budget. */
void pool__zygote_trim(void);
/* From the pool's timer: stops v's launcher if idle past --zygote-idle; else
 * lowers *next to when it will be. */
void pool__zygote_check_idle(pversion *v, uint64_t now, uint64_t *next);
/* The answer of an invocation the budget refused. */
const char *pool__zygote_refusal(char *out, size_t cap);

/* --- timer.c ------------------------------------------------------------------ */

/* Makes the pool's timer fire at loop time at (ms) or sooner. */
void pool__arm(pool *p, uint64_t at);
/* Whether deadline at (loop ms) has passed for good at loop time now. One
 * seen passed later than late_ms after it (0: always) is seen twice,
 * SPATE_DEADLINE_CONFIRM_MS apart with the loop running in between, so that
 * what the instance sent in time has been read; *seen keeps the first look
 * (0: none yet), and *next is lowered to when to look again. */
int pool__deadline_passed(uint64_t *seen, uint64_t at, uint64_t now, uint64_t late_ms,
                          uint64_t *next);

/* --- pool.c ------------------------------------------------------------------- */

/* Once closing and nothing is left to serve: stops what stands and frees the pool. */
void pool__maybe_finish_close(pool *p);

#endif
