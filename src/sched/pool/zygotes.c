/*
 * zygotes.c - the node's zygotes, over every pool: a version's zygote starts
 * when it is needed (the first invocation, a deploy's check, a minimum of
 * instances), stops once it has had no instance for --zygote-idle, and all
 * of them share one budget, --max-zygotes. A full budget stops the least
 * recently used zygote that has no instance; when every one has instances
 * (or is loading), the invocation that needed a new zygote is refused with
 * 503 zygote_budget rather than waiting for a room that may never come.
 *
 * A zygote is kept while it has instances: an instance dies with its zygote
 * (PR_SET_PDEATHSIG in spate-runner) and the zygote is what reports how its
 * instances end (runtime/zygote.c), so stopping it would kill running work
 * or leave instances nobody watches. Its idle time starts when its last
 * instance ends (an instance outlives its invocation by the keep-alive, so
 * a function invoked now and then keeps its zygote that long and more).
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
static uint32_t ncounted, budget = SPATE_ZYGOTES_DEFAULT;
static uint32_t idle_ms = SPATE_ZYGOTE_IDLE_DEFAULT_MS;
static uint64_t nstarted, nidle_stopped, nevicted, nrefused;

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

/* The least recently used zygote that may be stopped, or NULL; prewarmed
 * ones only when no other can go. */
static pversion *least_recent(void)
{
    pversion *pick = NULL;
    for (list_node *n = list_first(&counted); n != &counted; n = n->next) {
        pversion *v = list_entry(n, pversion, zlink);
        if (!stoppable(v)) continue;
        if (!pick || v->cfg.prewarm < pick->cfg.prewarm ||
            (v->cfg.prewarm == pick->cfg.prewarm && v->zused < pick->zused))
            pick = v;
    }
    return pick;
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
}

static void evict(pversion *v)
{
    nevicted++;
    log_info("zygote stopped to make room (--max-zygotes %u): the least recently used fn=%s "
             "version=%u",
             budget, v->pool->name, v->number);
    pool__zygote_stop(v);
}

int pool__zygote_reserve(pversion *v, int force)
{
    /* A deploy's check goes over the budget, then pool__zygote_trim picks
     * which goes (perhaps its own): it may keep what a prewarm keeps. */
    if (!is_process(v) || force) return 0;
    while (ncounted >= budget) {
        pversion *old = least_recent();
        if (!old) break;
        evict(old);
    }
    if (ncounted < budget) return 0;
    nrefused++;
    return ERR_BUSY;
}

uint32_t pool__zygote_budget(void)
{
    return budget;
}

int pool__zygote_room(const pversion *v)
{
    return !is_process(v) || ncounted < budget || least_recent() != NULL;
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
}

void pool__zygote_touch(pversion *v)
{
    v->zused = pool__now_ms(v->pool);
    if (unused(v) && v->z) pool__arm(v->pool, v->zused + idle_ms);
}

void pool__zygote_settle(pversion *v)
{
    if (unused(v) && v->z) pool__arm(v->pool, v->zused + idle_ms);
}

void pool__zygote_trim(void)
{
    while (ncounted > budget) {
        pversion *old = least_recent();
        if (!old) return;
        evict(old);
    }
}

void pool__zygote_check_idle(pversion *v, uint64_t now, uint64_t *next)
{
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
             "has instances or is loading, none can stop for it; try again later)",
             budget);
    return out;
}

void pool_set_zygote_budget(uint32_t max, uint32_t idle)
{
    budget = max;
    idle_ms = idle;
    pool__zygote_trim();
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
