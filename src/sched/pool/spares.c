/*
 * spares.c - the spare instance of a recently used version, and what
 * instances cost.
 *
 * A cold start spends most of its time before the function runs: the slot's
 * cgroups handed over, the zygote's fork, the child joining three cgroup v1
 * hierarchies, its namespaces and /tmp, spate_init, the READY frame (about
 * 3 to 6 times a bare fork on an idle machine, more on a busy one). A spare
 * has done all of that before it is needed: one instance per version,
 * started once the version has no idle instance, parked in no list and
 * serving nothing until an invocation finds no instance. Then it is handed
 * over (pool__spare_take), and a new spare starts behind it, off the
 * invocation's path.
 *
 * Spares are cost, so they are bounded and counted:
 *   - at most --max-zygotes stand on the node (exec launchers take no room
 *     in that budget); spares for deploys not invoked since start at most
 *     SPATE_SPARE_DEPLOY_BURST at once and SPATE_SPARE_DEPLOY_PER_S a
 *     second, node-wide (a deploy storm gets a few, not one each; one
 *     handed over gives its token back);
 *   - only the active version of a pool used within --spare-idle (an
 *     invocation came, or a deploy) has one (a reload that lowers it is
 *     seen at once); none at a restart, none for an
 *     idle function; it stops after --spare-idle without use, with its
 *     zygote (idle stop, eviction: it never keeps a zygote alive), when its
 *     version retires, and when the pool closes;
 *   - it counts against the function's --max (one of its rooms), and the
 *     node's --max-instances, leaving at least one room for work; a start
 *     refused there takes the room of another pool's spare, starting or
 *     ready (pool__spare_reclaim);
 *   - one at its process limit (--pids-max) is stopped, as a busy instance
 *     is, and counts as a failed start;
 *   - none while the function's instances fail to start (fail_streak) or a
 *     node limit refused the last one (spare_retry_at); one that died while
 *     it waited is replaced after SPATE_SPARE_RETRY_MS, doubled for each
 *     lost in a row since the last hand-over (spare_lost);
 *   - the instance-seconds of every instance, and of spares apart, are
 *     counted per pool (stats, /metrics) and for the node.
 *
 * A spare runs only its own version's code: it is forked by that version's
 * zygote, held by that version (pversion.spare) and handed over only to the
 * pool's active version when it is that version; a retired version's spare
 * stops. Everything runs on the loop thread.
 */
#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/isolate.h"
#include "sched/pool/internal.h"

static uint32_t idle_ms = SPATE_SPARE_IDLE_DEFAULT_MS;

/* The node's spares (pinst.slink), and its counts since spated started. */
static list_node spares = {&spares, &spares};
static uint32_t nspares;
static uint64_t spare_ms, acct_at;
static uint64_t nstarted, nhandovers, nidle_stopped, nreclaimed, nlost;
/* The token bucket of spares for deploys (SPATE_SPARE_DEPLOY_*). */
static double deploy_tokens = SPATE_SPARE_DEPLOY_BURST;
static uint64_t deploy_tokens_at;

static uint64_t mono_ms(void)
{
    return clock_mono_ns() / 1000000u;
}

/* Whether a spare for a deploy may start now; takes its token. */
static int deploy_token(void)
{
    uint64_t now = mono_ms();
    if (deploy_tokens_at)
        deploy_tokens += (double)(now - deploy_tokens_at) * SPATE_SPARE_DEPLOY_PER_S / 1000.0;
    deploy_tokens_at = now;
    if (deploy_tokens > SPATE_SPARE_DEPLOY_BURST) deploy_tokens = SPATE_SPARE_DEPLOY_BURST;
    if (deploy_tokens < 1) return 0;
    deploy_tokens -= 1;
    return 1;
}

/* A deploy's spare that served (handed over: a deploy then its invocation,
 * as a developer at work or bench/invoke do) costs no token. */
static void give_back_token(void)
{
    deploy_tokens += 1;
    if (deploy_tokens > SPATE_SPARE_DEPLOY_BURST) deploy_tokens = SPATE_SPARE_DEPLOY_BURST;
}

static void node_account(void)
{
    uint64_t now = mono_ms();
    if (acct_at) spare_ms += (now - acct_at) * nspares;
    acct_at = now;
}

void pool__account(pool *p)
{
    uint64_t now = mono_ms();
    if (p->acct_at) {
        p->inst_ms += (now - p->acct_at) * p->nprocs;
        p->spare_ms += (now - p->acct_at) * p->nspare;
    }
    p->acct_at = now;
}

void pool_cost_get(const pool *p, double *instance_s, double *spare_s)
{
    uint64_t d = p->acct_at ? mono_ms() - p->acct_at : 0;
    *instance_s = (double)(p->inst_ms + d * p->nprocs) / 1000.0;
    *spare_s = (double)(p->spare_ms + d * p->nspare) / 1000.0;
}

void pool__spare_counted(pinst *pi)
{
    node_account();
    nspares++;
    nstarted++;
    list_push_back(&spares, &pi->slink);
}

/* pi is no longer its version's spare (handed over, stopped or gone). */
static void forget(pinst *pi)
{
    pool *p = pi->pool;
    pool__account(p);
    node_account();
    if (pi->ver->spare == pi) pi->ver->spare = NULL;
    p->nspare--;
    nspares--;
    list_remove(&pi->slink);
    list_init(&pi->slink);
}

int pool__spare_take(pool *p, pversion *v)
{
    pinst *pi = v->spare;
    /* Only to its own version, the active one. */
    if (!pi || v != p->active || v->retired) return 0;
    if (!instance_alive(pi->inst)) {
        /* Killed while it waited (ready or still starting), its end not
         * read yet: no invocation goes to it; a new instance starts
         * instead, and a new spare later. */
        log_info("spare instance found dead at its hand-over: not used fn=%s instance=%llu",
                 p->name, (unsigned long long)pi->inst->id);
        pool__spare_stop(v);
        nlost++;
        return 0;
    }
    forget(pi);
    if (pi->deploy_token) give_back_token();
    p->spare_lost = 0;
    p->spare_handovers++;
    nhandovers++;
    pool__zygote_touch(v);
    pi->state = PI_STARTING;
    if (!pi->ready) {
        /* Still starting: a start begun ahead, a normal cold start when ready. */
        list_push_back(&p->starting, &pi->link);
        pool__count_starting(p);
        return 1;
    }
    /* A cold start the invocation did not wait for: counted, with the
     * time it waited so far (its queueing and this hand-over). */
    p->cold_starts++;
    p->last_cold_us = 0;
    if (p->nwaiting > 0) {
        invocation *first = list_entry(list_first(&p->waiting), invocation, link);
        p->last_cold_us = (clock_mono_ns() - first->queued_ns) / 1000;
    }
    pool__became_idle(pi);
    return 1;
}

/* Starts v's spare if it should have one now. */
static void start_spare(pool *p, pversion *v)
{
    if (!idle_ms || !v || v->spare || v->retired || p->closing || p->closed) return;
    if (v->zstate != ZS_READY || !v->z) return;
    uint64_t now = pool__now_ms(p);
    if (!p->used_at || now >= p->used_at + idle_ms) return; /* not used lately */
    /* An idle instance takes the next invocation; what waits has its own
     * starts (pool__grow). (A deploy's version: the old one's idle
     * instances retire once it is active.) */
    if ((v == p->active && p->nidle > 0) || p->nwaiting > 0) return;
    if (p->fail_streak > 0 || p->restart_at > now) return;
    if (p->spare_retry_at > now) {
        if (p->spare_retry_at < p->used_at + idle_ms) pool__arm(p, p->spare_retry_at);
        return;
    }
    if (pool__live(p) >= v->cfg.max_instances || p->nstarting >= SPATE_STARTING_MAX ||
        pool__node_starting_full())
        return;
    /* One room of --max-instances stays for work. */
    if ((uint64_t)pool_node_live() + 1 >= pool_node_max()) return;
    /* Not while an invocation runs, for a little while: starting one takes
     * the loop (its slot's cgroups; an exec instance's spawn waits for its
     * exec), and the running invocation's answer would wait behind it. */
    if (p->nbusy > 0) {
        /* (A due time left from an earlier wait that came to nothing is
         * renewed.) */
        if (!p->spare_due || p->spare_due + SPATE_SPARE_DEFER_MS < now)
            p->spare_due = now + SPATE_SPARE_DEFER_MS;
        if (now < p->spare_due) {
            pool__arm(p, p->spare_due);
            return;
        }
    }
    /* At most --max-zygotes of them: an exec launcher takes no room in
     * that budget (a native spare's zygote does), and 300 exec functions
     * deployed held 300 spares. */
    if (nspares >= pool__zygote_budget()) return;
    /* Deployed and not invoked since: a storm of deploys gets a few. */
    int token = p->used_by_deploy;
    if (token && !deploy_token()) return;
    p->spare_due = 0;
    int rc = pool__start_instance(p, v, 1);
    if (rc == 0) v->spare->deploy_token = token;
    if (rc != 0) {
        if (token) give_back_token();
        log_debug("cannot start a spare instance: %s fn=%s version=%u", err_str(rc), p->name,
                  v->number);
        p->spare_retry_at = now + SPATE_SPARE_RETRY_MS;
        return;
    }
    pool__arm(p, p->used_at + idle_ms);
}

void pool__spare_check(pool *p)
{
    start_spare(p, p->active);
}

void pool__spare_deploy(pool *p, pversion *v)
{
    /* Not active yet: a spare started now may be ready by the time the
     * deploy is stored and answered, and its first invocation comes. A
     * version kept warm (--min) has its own idle instances for that. */
    if (v->cfg.min_instances > 0) return;
    start_spare(p, v);
}

void pool__spare_stop(pversion *v)
{
    pinst *pi = v->spare;
    if (!pi) return;
    forget(pi);
    pi->was_spare = 1;
    pi->state = PI_STOPPING;
    pi->pool->nstopping++;
    instance_kill(pi->inst);
}

void pool__spare_ready(pinst *pi)
{
    pool *p = pi->pool;
    pi->ready = 1;
    p->refused = 0;
    pool__limits_eased(p);
    /* A real start: what the autoscaler and mailboxes weigh a cold start at. */
    pool__observe_start(pi);
    if (p->nwaiting > 0) pool__grow(p); /* e.g. they waited for the crash back-off */
}

void pool__spare_gone(pinst *pi)
{
    pool *p = pi->pool;
    forget(pi);
    nlost++;
    /* Its successor waits, longer at each one lost in a row: a function
     * whose instances die a moment after READY had a new spare forked and
     * initialised about thirty times a second, for --spare-idle. */
    uint32_t shift =
        p->spare_lost < SPATE_SPARE_LOST_SHIFT_MAX ? p->spare_lost : SPATE_SPARE_LOST_SHIFT_MAX;
    p->spare_lost++;
    p->spare_retry_at = pool__now_ms(p) + ((uint64_t)SPATE_SPARE_RETRY_MS << shift);
}

void pool__spare_limited(pool *p)
{
    p->spare_retry_at = pool__now_ms(p) + SPATE_SPARE_RETRY_MS;
}

static void check_timer(pool *p, pversion *v, uint64_t now, uint64_t *next)
{
    pinst *pi = v->spare;
    if (!pi) return;
    /* At its process limit (a fork bomb in spate_init, or started from
     * it): stopped as a busy instance is (timer.c), or it held --pids-max
     * processes of the node's --max-processes until --spare-idle ran out. */
    if (pi->check_at <= now) {
        if (instance_at_pids_limit(pi->inst)) {
            uint32_t max = isolate_get()->pids_max;
            log_warn("spare instance went past its limit of %u processes and threads (spated "
                     "--pids-max): stopped fn=%s instance=%llu",
                     max, p->name, (unsigned long long)pi->inst->id);
            fnlog_platform(p->log, pi->inst->id, v->number, NULL,
                           "spare instance went past its limit of %u processes and threads "
                           "(spated --pids-max): stopped",
                           max);
            instance_stop_forks(pi->inst);
            pool__instance_failed(p);
            pool__spare_stop(v);
            return;
        }
        pi->check_at = pool__check_time(now + pi->check_every);
        pi->check_every = pi->check_every * 2 > SPATE_PIDS_CHECK_MAX_MS ? SPATE_PIDS_CHECK_MAX_MS
                                                                        : pi->check_every * 2;
    }
    if (pi->check_at < *next) *next = pi->check_at;
    uint64_t init_next = UINT64_MAX;
    if (!pi->ready && pool__deadline_passed(&pi->deadline_seen, pi->deadline, now, 0, &init_next)) {
        log_warn("spare instance did not become ready within %d ms: stopped fn=%s instance=%llu",
                 SPATE_INSTANCE_INIT_TIMEOUT_MS, p->name, (unsigned long long)pi->inst->id);
        fnlog_platform(p->log, pi->inst->id, v->number, NULL,
                       "spare instance did not become ready within %d ms: stopped",
                       SPATE_INSTANCE_INIT_TIMEOUT_MS);
        pool__instance_failed(p);
        pool__spare_stop(v);
        return;
    }
    uint64_t until = p->used_at + idle_ms;
    if (!idle_ms || now >= until) {
        nidle_stopped++;
        log_debug("spare instance stopped: function not used for %u ms fn=%s version=%u", idle_ms,
                  p->name, v->number);
        pool__spare_stop(v);
        return;
    }
    if (init_next < until) until = init_next;
    if (until < *next) *next = until;
}

void pool__spare_check_timer(pool *p, uint64_t now, uint64_t *next)
{
    list_node *n = list_first(&p->versions);
    while (n != &p->versions) {
        pversion *v = list_entry(n, pversion, link);
        n = n->next; /* a stop does not free v: its spare is still counted */
        check_timer(p, v, now, next);
    }
    if (p->spare_due > now && p->spare_due < *next) *next = p->spare_due;
}

int pool__spare_reclaim(pool *p)
{
    /* One still starting first (its start is not done, and may never be:
     * a spate_init that takes its time), else a ready one. A starting one
     * gives way too: spares of slow-starting functions held every room but
     * the one kept for work, and a second call of another function was
     * refused 503 instances_exhausted. */
    pinst *pick = NULL;
    for (list_node *n = list_first(&spares); n != &spares; n = n->next) {
        pinst *pi = list_entry(n, pinst, slink);
        if (pi->pool == p) continue;
        if (!pick || (pick->ready && !pi->ready)) pick = pi;
        if (!pick->ready) break;
    }
    if (!pick) return 0;
    log_debug("spare instance stopped for a start at --max-instances fn=%s, for fn=%s",
              pick->pool->name, p ? p->name : "(a lowered --max-instances)");
    nreclaimed++;
    pool__spare_stop(pick->ver);
    pool__uncount(pick);
    return 1;
}

uint32_t pool__spares_elsewhere(const pool *p)
{
    return nspares - p->nspare;
}

void pool_set_spare_idle(uint32_t ms)
{
    if (ms == idle_ms) return;
    idle_ms = ms;
    /* The spares that stand look again now (their pools' timers were set
     * for the old idle time: --spare-idle 0 by a reload left them a minute). */
    for (list_node *n = list_first(&spares); n != &spares; n = n->next) {
        pool *p = list_entry(n, pinst, slink)->pool;
        pool__arm(p, pool__now_ms(p));
    }
}

void pool_spare_stats_get(pool_spare_stats *out)
{
    uint64_t d = acct_at ? mono_ms() - acct_at : 0;
    *out = (pool_spare_stats){
        .running = nspares,
        .idle_ms = idle_ms,
        .started = nstarted,
        .handovers = nhandovers,
        .idle_stopped = nidle_stopped,
        .reclaimed = nreclaimed,
        .lost = nlost,
        .seconds = (double)(spare_ms + d * nspares) / 1000.0,
    };
}
