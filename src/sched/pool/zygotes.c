/*
 * zygotes.c - the node's zygotes, over every pool: a version's zygote starts
 * when it is needed (the first invocation, a deploy's check, a minimum of
 * instances), stops once it has had no instance for --zygote-idle, and all
 * of them share one budget, --max-zygotes. A full budget stops the least
 * recently used zygote none of whose instances is at work: its idle
 * instances (kept for the keep-alive) and its spare stop first, and the
 * zygote once they have gone, while what needed the room waits a moment.
 * When every zygote has instances at work (or is loading), the invocation
 * that needed a new zygote is refused with 503 zygote_budget rather than
 * waiting for a room that may never come.
 *
 * A zygote is never stopped under an instance: an instance dies with its
 * zygote (PR_SET_PDEATHSIG in spate-runner) and the zygote is what reports
 * how its instances end (runtime/zygote.c), so stopping it would kill
 * running work or leave instances nobody watches. Its idle time starts
 * when its last instance ends (an instance outlives its invocation by the
 * keep-alive, so a function invoked now and then keeps its zygote that long
 * and more). "Recently used" is the latest of its load, an instance's start
 * or end, and an invocation's end on one of its idle instances.
 *
 * Only zygote processes count (native functions, and python3 ones run from
 * the Python zygote); exec and nodejs versions' launchers are a few
 * allocations and a Runtime API listener, which also stop when idle but
 * take no room in the budget. Everything runs on the loop thread.
 */
#include <stdio.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "sched/pool/internal.h"

static list_node counted = {&counted, &counted}; /* pversion.zlink */
/* Prewarmed versions whose zygote was stopped or refused for room
 * (pversion.wlink), oldest first: a prewarm keeps its zygote running, so
 * it starts again as soon as a zygote stops. */
static list_node wanting = {&wanting, &wanting};
static uint32_t ncounted, budget = SPATE_ZYGOTES_DEFAULT;
static uint32_t idle_ms = SPATE_ZYGOTE_IDLE_DEFAULT_MS;
static uint64_t nstarted, nidle_stopped, nevicted, nrefused;
static int evicting; /* a zygote stops for another's room: it is not free for a prewarm */
/* A reload lowered the budget below the zygotes running: met as their work
 * ends. (Not the room a deploy's check takes over the budget for a moment:
 * the check's end picks which goes, pool__zygote_trim.) */
static int lowered;

/* The version's launcher will be a process: conservative for python3 (one
 * that opts out of the Python zygote is not counted once started). */
static int is_process(const pversion *v)
{
    return v->runtime == RUNTIME_NATIVE || v->runtime == RUNTIME_PYTHON3;
}

/* Without instances but its spare (which never keeps a zygote alive). */
static int unused(const pversion *v)
{
    return v->ninstances == (v->spare ? 1u : 0u);
}

/* Whether v's zygote may be stopped now: loaded, no instance, no deploy
 * waiting on it, and its pool not closing (that stops it itself). */
static int stoppable(const pversion *v)
{
    return v->z && v->zstate == ZS_READY && unused(v) && !v->load_cb && !v->pool->closing;
}

static int has_instance_of(const list_node *list, const pversion *v)
{
    for (const list_node *n = list->next; n != list; n = n->next)
        if (list_entry(n, pinst, link)->ver == v) return 1;
    return 0;
}

/* Whether v's zygote may stop for another's once its idle instances and
 * spare have: loaded, none of its instances starting or at work, not held
 * by a minimum of instances, no deploy waiting on it, its pool not closing.
 * Only the active version has idle instances (a retired one's stop when
 * they finish), so one walk of the pool's starting and busy lists tells. */
static int reclaimable(const pversion *v)
{
    const pool *p = v->pool;
    if (!v->z || v->zstate != ZS_READY || v->load_cb || p->closing) return 0;
    if (unused(v)) return 1;
    if (v->cfg.min_instances > 0 && v == p->active) return 0;
    return !has_instance_of(&p->starting, v) && !has_instance_of(&p->busy, v);
}

/* When v was last of use: its zygote loaded or an instance started or
 * ended (zused), or an invocation ended on an idle instance (the pool's
 * idle list is newest first). */
static uint64_t last_used(const pversion *v)
{
    uint64_t t = v->zused;
    const list_node *idle = &v->pool->idle;
    for (const list_node *n = idle->next; n != idle; n = n->next) {
        const pinst *pi = list_entry(n, pinst, link);
        if (pi->ver != v) continue;
        if (pi->since > t) t = pi->since;
        break;
    }
    return t;
}

/* The least recently used zygote that may stop (reclaimable), other than
 * except, or NULL; one already stopping for room first (its instances'
 * ends made it "used" just now) unless fresh (only another), prewarmed
 * ones only when no other can go. */
static pversion *pick_lru(const pversion *except, int fresh)
{
    pversion *pick = NULL;
    uint64_t pick_used = 0;
    for (list_node *n = list_first(&counted); n != &counted; n = n->next) {
        pversion *v = list_entry(n, pversion, zlink);
        if (v == except || !reclaimable(v) || (fresh && v->zreclaim)) continue;
        uint64_t used = last_used(v);
        int better = !pick;
        if (pick && v->zreclaim != pick->zreclaim)
            better = v->zreclaim;
        else if (pick && v->cfg.prewarm != pick->cfg.prewarm)
            better = v->cfg.prewarm < pick->cfg.prewarm;
        else if (pick)
            better = used < pick_used;
        if (better) {
            pick = v;
            pick_used = used;
        }
    }
    return pick;
}

static pversion *least_recent(const pversion *except)
{
    return pick_lru(except, 0);
}

void pool__zygote_want(pversion *v)
{
    if (!v->cfg.prewarm || v->retired || v->pool->closing) return;
    /* Asked again every second (a zygote without work may have appeared to
     * give way), and at once when one stops. */
    v->pool->prewarm_due = 1;
    pool__arm(v->pool, pool__now_ms(v->pool) + SPATE_ZYGOTE_RESTART_BACKOFF_MS);
    if (v->wlink.next == &v->wlink) list_push_back(&wanting, &v->wlink);
}

void pool__zygote_forget(pversion *v)
{
    list_remove(&v->wlink);
    list_init(&v->wlink);
}

void pool__zygote_stop(pversion *v)
{
    if (!v->z) return;
    /* Its spare goes with it; gone before the instances it loses call back
     * into the pool, which must not see this zygote as ready. */
    pool__spare_stop(v);
    launcher *z = v->z;
    v->z = NULL;
    v->zstate = ZS_NONE;
    pool__zygote_gone(v);
    launcher_stop(z);
    if (v == v->pool->active) pool__zygote_want(v); /* stopped for room: back when there is */
}

/* Makes room of v: its zygote stops now when nothing of it is left but
 * its spare; else its idle instances stop, and the zygote follows when
 * they have (pool__zygote_check_idle, as each one's end arms its pool's
 * timer). 1 when the room is free now. */
static int evict(pversion *v)
{
    if (!unused(v)) {
        if (!v->zreclaim)
            log_debug("zygote to stop for room (--max-zygotes %u): the least recently used fn=%s "
                      "version=%u; its idle instances stop first",
                      budget, v->pool->name, v->number);
        v->zreclaim = 1;
        pool *p = v->pool;
        list_node *n = list_first(&p->idle);
        while (n != &p->idle) {
            pinst *pi = list_entry(n, pinst, link);
            n = n->next;
            if (pi->ver == v) pool__stop_instance(pi);
        }
        return 0;
    }
    nevicted++;
    /* At most one line per SPATE_LIMIT_LOG_INTERVAL_MS at info: functions
     * that take turns in a small budget stop one another's zygotes at each
     * call (spate_zygote_stops_total{reason="budget"} counts them all). */
    static uint64_t logged_at, logged_count;
    uint64_t now = pool__now_ms(v->pool);
    if (!logged_at || now - logged_at >= SPATE_LIMIT_LOG_INTERVAL_MS) {
        log_info("zygote stopped to make room (--max-zygotes %u): the least recently used fn=%s "
                 "version=%u (%llu stopped so since the last such line)",
                 budget, v->pool->name, v->number, (unsigned long long)(nevicted - logged_count));
        logged_at = now ? now : 1;
        logged_count = nevicted;
    } else {
        log_debug("zygote stopped to make room (--max-zygotes %u): the least recently used fn=%s "
                  "version=%u",
                  budget, v->pool->name, v->number);
    }
    evicting = 1;
    pool__zygote_stop(v);
    evicting = 0;
    return 1;
}

int pool__zygote_reserve(pversion *v, int force)
{
    /* A deploy's check goes over the budget, then pool__zygote_trim picks
     * which goes (perhaps its own): it may keep what a prewarm keeps. */
    if (!is_process(v) || force) return 0;
    while (ncounted >= budget) {
        pversion *old = least_recent(v);
        if (!old) break;
        /* A prewarm with nothing waiting takes only the room of a zygote
         * without instances, never a prewarm's (two would take turns for
         * ever) nor one kept warm by an idle instance (its keep-alive would
         * mean nothing). */
        if (v->cfg.prewarm && v->pool->nwaiting == 0 && (old->cfg.prewarm || !stoppable(old)))
            break;
        if (!evict(old)) return 1; /* its instances are on their way out */
    }
    if (ncounted < budget) return 0;
    if (v->pool->nwaiting > 0) nrefused++; /* a prewarm's or minimum's own try is no refusal */
    return ERR_BUSY;
}

uint32_t pool__zygote_budget(void)
{
    return budget;
}

int pool__zygote_room(const pversion *v)
{
    return !is_process(v) || ncounted < budget || least_recent(v) != NULL;
}

void pool__zygote_started(pversion *v)
{
    v->zused = pool__now_ms(v->pool);
    if (v->zcounted || !v->z || !launcher_pid(v->z)) return;
    v->zcounted = 1;
    list_push_back(&counted, &v->zlink);
    ncounted++;
    nstarted++;
}

void pool__zygote_gone(pversion *v)
{
    if (!v->zcounted) return;
    v->zcounted = 0;
    list_remove(&v->zlink);
    ncounted--;
    /* Room: the prewarmed version that waited longest gets it, from its
     * pool's timer (not from here, inside a zygote's callbacks). */
    if (!evicting && ncounted < budget && !list_empty(&wanting)) {
        pversion *w = list_entry(list_first(&wanting), pversion, wlink);
        pool__zygote_forget(w);
        w->pool->prewarm_due = 1;
        pool__arm(w->pool, pool__now_ms(w->pool));
    }
}

/* The pool's timer looks at v when its idle time will have passed, or at
 * once when it is to stop for room. */
static void arm_idle(pversion *v)
{
    if (pool__zygote_over()) pool__arm(v->pool, pool__now_ms(v->pool)); /* a lowered budget */
    if (unused(v) && v->z) pool__arm(v->pool, v->zreclaim ? v->zused : v->zused + idle_ms);
}

int pool__zygote_over(void)
{
    if (lowered && ncounted <= budget) lowered = 0;
    return lowered;
}

void pool__zygote_touch(pversion *v)
{
    v->zused = pool__now_ms(v->pool);
    arm_idle(v);
}

void pool__zygote_settle(pversion *v)
{
    arm_idle(v);
}

void pool__zygote_trim(void)
{
    /* Those already stopping for room count as gone (a lowered budget may
     * take several, each after its idle instances). */
    uint32_t going = 0;
    for (list_node *n = list_first(&counted); n != &counted; n = n->next)
        going += list_entry(n, pversion, zlink)->zreclaim ? 1u : 0u;
    while (ncounted > budget + going) {
        pversion *old = pick_lru(NULL, 1);
        if (!old) return;
        if (!evict(old)) going++;
    }
}

void pool__zygote_check_idle(pversion *v, uint64_t now, uint64_t *next)
{
    /* Over a budget lowered while zygotes had work: as their work ends. */
    if (pool__zygote_over()) pool__zygote_trim();
    if (v->zreclaim) {
        /* Its idle instances were stopped to make room: it goes once they
         * have, if the room is still wanted; a new instance of it (it was
         * invoked meanwhile) keeps it. */
        if (!reclaimable(v) || ncounted < budget) {
            v->zreclaim = 0;
        } else if (stoppable(v)) {
            v->zreclaim = 0;
            evict(v);
            return;
        }
    }
    if (!stoppable(v) || v->cfg.prewarm) return;
    uint64_t at = v->zused + idle_ms;
    if (at > now) {
        if (at < *next) *next = at;
        return;
    }
    nidle_stopped += v->zcounted;
    log_debug("zygote idle for %u ms: stopped fn=%s version=%u", idle_ms, v->pool->name, v->number);
    pool__zygote_stop(v);
}

const char *pool__zygote_refusal(char *out, size_t cap)
{
    snprintf(out, cap,
             "cannot start this function's zygote (spated --max-zygotes %u: each running one "
             "has instances at work, is loading or is kept by its function's minimum of "
             "instances; none can stop for it; try again later)",
             budget);
    return out;
}

void pool_set_zygote_budget(uint32_t max, uint32_t idle)
{
    budget = max;
    idle_ms = idle;
    pool__zygote_trim();
    lowered = ncounted > budget;
}

void pool_zygote_stats_get(pool_zygote_stats *out)
{
    *out = (pool_zygote_stats){
        .running = ncounted,
        .max = budget,
        .idle_ms = idle_ms,
        .started = nstarted,
        .idle_stopped = nidle_stopped,
        .evicted = nevicted,
        .refused = nrefused,
    };
}
