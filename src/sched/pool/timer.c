/*
 * timer.c - the pool's one timer, armed for its earliest deadline: invocations
 * that waited or ran past their timeout, instances whose init hangs or that
 * reached their process limit, running invocations that outlasted the handler
 * time estimate, idle instances past the keep-alive, zygotes without
 * instances past --zygote-idle.
 */
#include <stdio.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/isolate.h"
#include "sched/pool/internal.h"

/* --- Timer: one per pool, armed for the earliest deadline ----------------- */

static void on_timer(uv_timer_t *t);

void pool__arm(pool *p, uint64_t at)
{
    if (p->closed || (p->timer_armed && p->timer_at <= at)) return;
    uint64_t now = pool__now_ms(p);
    uv_timer_start(&p->timer, on_timer, at > now ? at - now : 0, 0);
    p->timer_armed = 1;
    p->timer_at = at;
}

int pool__deadline_passed(uint64_t *seen, uint64_t at, uint64_t now, uint64_t late_ms,
                          uint64_t *next)
{
    if (at <= now) {
        if (!*seen && now - at < late_ms) return 1; /* on time: the loop ran up to it */
        /* A first look, or one that came late (spated stalled again): the
         * loop reads what is pending before the next. */
        if (!*seen || now - *seen > 2 * SPATE_DEADLINE_CONFIRM_MS) *seen = now;
        at = *seen + SPATE_DEADLINE_CONFIRM_MS;
        if (at <= now) return 1;
    }
    if (at < *next) *next = at;
    return 0;
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
    invocation *inv = pool__pop_head(pi);
    pool__requeue_inflight(pi);
    instance_stop_forks(pi->inst);
    pool__stop_instance(pi);
    pool__instance_failed(pi->pool);
    list_push_back(failed, &inv->link);
    return inv;
}

static void on_timer(uv_timer_t *t)
{
    pool *p = t->data;
    p->timer_armed = 0;
    uint64_t now = pool__now_ms(p);
    uint64_t next = UINT64_MAX;
    list_node expired;
    list_init(&expired);

    /* Invocations that waited their whole timeout for an instance (after a
     * stall, once what came meanwhile has been read: an instance that
     * became ready or free in time serves them). */
    for (list_node *n = list_first(&p->waiting); n != &p->waiting;) {
        invocation *inv = list_entry(n, invocation, link);
        n = n->next;
        if (pool__deadline_passed(&inv->wait_seen, inv->wait_deadline, now, SPATE_STALL_MS,
                                  &next)) {
            list_remove(&inv->link);
            p->nwaiting--;
            list_push_back(&expired, &inv->link);
        }
    }
    /* Invocations that ran past their timeout: the instance is killed
     * (after a stall, once what came meanwhile has been read: an answer
     * sent in time is not a timeout). */
    list_node timed_out;
    list_init(&timed_out);
    for (list_node *n = list_first(&p->busy); n != &p->busy;) {
        pinst *pi = list_entry(n, pinst, link);
        n = n->next;
        if (pi->deadline > now) {
            next = pi->deadline < next ? pi->deadline : next;
            break; /* the list is in deadline order */
        }
        if (!pool__deadline_passed(&pi->deadline_seen, pi->deadline, now, SPATE_STALL_MS, &next))
            continue;
        invocation *inv = stop_running(pi, &timed_out);
        p->timeouts++;
        fnlog_platform(p->log, pi->inst->id, pi->ver->number, inv->request_id,
                       "invocation timed out after %u ms: instance stopped", inv->timeout_ms);
    }
    /* Instances that reached their process limit (a fork bomb): stopped now,
     * as the memory limit stops a memory hog. Each busy one is looked at
     * SPATE_PIDS_CHECK_MS later, then at doubling intervals up to
     * SPATE_PIDS_CHECK_MAX_MS: one read of its pids.events. At the same
     * looks, invocations that outlasted the handler time estimate. */
    list_node over_limit;
    list_init(&over_limit);
    uint64_t outlast_ms = pool__outlasted_after_ms(p);
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
            /* Next look: later each time, but at the moment the running
             * invocation would outlast the estimate if that comes first. */
            pi->check_at = pool__check_time(now + pi->check_every);
            pi->check_every = pi->check_every * 2 > SPATE_PIDS_CHECK_MAX_MS
                                  ? SPATE_PIDS_CHECK_MAX_MS
                                  : pi->check_every * 2;
            uint64_t outlast_at = pi->started + outlast_ms;
            if (!pi->outlasted && outlast_at > now && outlast_at < pi->check_at)
                pi->check_at = outlast_at;
            if (!pi->outlasted && now - pi->started >= outlast_ms) {
                /* Seen twice, with the results that came in between read:
                 * after spated itself stalled, every invocation looks long. */
                if (!pi->overdue_seen) {
                    pi->overdue_seen = now;
                    pi->check_at = now + SPATE_OUTLASTED_CONFIRM_MS;
                } else {
                    pool__outlasted(pi, now - pi->started);
                }
            }
        }
        if (pi->check_at < next) next = pi->check_at;
    }
    /* Instances whose spate_init hangs (or whose bootstrap never asks for
     * work). */
    for (list_node *n = list_first(&p->starting); n != &p->starting;) {
        pinst *pi = list_entry(n, pinst, link);
        n = n->next;
        if (pool__deadline_passed(&pi->deadline_seen, pi->deadline, now, 0, &next)) {
            /* Late: fewer of the function's starts at once (pool.start_window). */
            pool__start_late(p);
            if (now - pi->began < SPATE_STARVED_START_MAX_MS && instance_starved(pi->inst)) {
                /* Runnable and given little CPU: killed, it would start again
                 * from nothing on the same loaded machine. */
                if (!pi->starved_late)
                    log_info("instance starved of CPU at its init deadline: given up to %d ms "
                             "fn=%s instance=%llu",
                             SPATE_STARVED_START_MAX_MS, p->name, (unsigned long long)pi->inst->id);
                pi->starved_late = 1;
                pi->deadline_seen = 0;
                pi->deadline = now + SPATE_STARVED_GRACE_MS;
                if (pi->deadline > pi->began + SPATE_STARVED_START_MAX_MS)
                    pi->deadline = pi->began + SPATE_STARVED_START_MAX_MS;
                if (pi->deadline < next) next = pi->deadline;
                continue;
            }
            log_warn("instance did not become ready within %llu ms fn=%s instance=%llu",
                     (unsigned long long)(now - pi->began), p->name,
                     (unsigned long long)pi->inst->id);
            fnlog_platform(p->log, pi->inst->id, pi->ver->number, NULL,
                           "instance did not become ready within %llu ms: stopped",
                           (unsigned long long)(now - pi->began));
            pi->never_ready = 1;
            if (pi->starved_late && instance_starved(pi->inst)) pool__starved_kill(pi);
            pool__stop_instance(pi);
        }
    }
    /* Instances idle past the keep-alive, oldest first, down to the minimum;
     * surplus ones (more than SPATE_SURPLUS_FACTOR times the desired count
     * live: a burst is over) after SPATE_SURPLUS_IDLE_MS. The desired count
     * falls as the arrival rate decays, with no event to say so: while some
     * idle one is old enough to be surplus, the pool looks again. */
    uint32_t keep = 0;
    if (!list_empty(&p->idle)) {
        keep = SPATE_SURPLUS_FACTOR * pool__desired(p);
        if (keep < 1) keep = 1;
    }
    while (!list_empty(&p->idle)) {
        pinst *pi = list_entry(list_last(&p->idle), pinst, link);
        uint64_t expiry = pi->since + pi->ver->cfg.keep_alive_ms;
        uint32_t min = p->active ? p->active->cfg.min_instances : 0;
        if (pool__live(p) <= min) break;
        if (expiry <= now) {
            pool__stop_instance(pi);
            continue;
        }
        uint64_t early = pi->since + SPATE_SURPLUS_IDLE_MS;
        if (pool__live(p) > (keep > min ? keep : min) && early < expiry) {
            if (early <= now) {
                pool__stop_instance(pi);
                continue;
            }
            expiry = early;
        } else if (pool__live(p) > 1 && early < expiry) {
            expiry = early > now ? early : now + SPATE_SURPLUS_LOOK_MS;
        }
        next = expiry < next ? expiry : next;
        break;
    }
    /* The spare of a pool no longer used, or whose init hangs (spares.c). */
    pool__spare_check_timer(p, now, &next);
    /* Zygotes without instances past --zygote-idle (zygotes.c). */
    for (list_node *n = list_first(&p->versions); n != &p->versions; n = n->next)
        pool__zygote_check_idle(list_entry(n, pversion, link), now, &next);
    if (p->active && p->active->zstate == ZS_NONE && p->active->retry_at > now)
        next = p->active->retry_at < next ? p->active->retry_at : next;
    if (p->restart_at > now && p->restart_at < next) next = p->restart_at;
    if (next != UINT64_MAX) pool__arm(p, next);

    while (!list_empty(&expired)) {
        invocation *inv = list_entry(list_first(&expired), invocation, link);
        list_remove(&inv->link);
        if (p->refused) {
            /* It waited because a node limit kept new instances from starting. */
            pool__refuse(p, inv, p->refused,
                         "no instance became free within the timeout, and no new one could start");
            continue;
        }
        char msg[200];
        uint32_t window;
        pversion *v = p->active;
        if (v && v->zstate == ZS_LOADING && pool__live(p) == 0)
            /* Not a busy function: its zygote has not loaded (a slow or
             * hanging spate_preload, after the deploy's check went well). */
            snprintf(msg, sizeof msg,
                     "no instance within the timeout: the function's zygote is still loading "
                     "(spate_preload has run %llu ms; stopped at %u ms)",
                     (unsigned long long)(now - v->zused), SPATE_ZYGOTE_LOAD_TIMEOUT_MS);
        else if (p->nstarting > 0 && p->nidle + p->nbusy == 0) {
            /* Nothing serves yet: its instances' init has not returned. */
            const pinst *first = list_entry(list_first(&p->starting), pinst, link);
            uint64_t began = first->began;
            snprintf(msg, sizeof msg,
                     "no instance within the timeout: %u still starting (the oldest's init has "
                     "run %llu ms; stopped at %d ms, or at %d ms while the machine starves it "
                     "of CPU)",
                     p->nstarting, (unsigned long long)(now > began ? now - began : 0),
                     SPATE_INSTANCE_INIT_TIMEOUT_MS, SPATE_STARVED_START_MAX_MS);
        } else if ((!list_empty(&p->start_wait) || p->start_woken) &&
                   (window = pool__starved_window_holding(p)))
            /* Held by the starved window, with room under --max-starting
             * (told "--max-starting" with 15 of 16 free, brk11). */
            snprintf(msg, sizeof msg,
                     "no instance within the timeout: its start waited for room among the "
                     "starts of functions starved of CPU (at most %u of theirs at once on the "
                     "node until one is ready)",
                     window);
        else if (!list_empty(&p->start_wait) || p->start_woken)
            /* Held by --max-starting: other functions' starts had the room,
             * or its function's own in the pools of its other versions. */
            snprintf(msg, sizeof msg,
                     "no instance within the timeout: its start waited for room under the node's "
                     "--max-starting (%s were starting)",
                     (p->group ? p->group->group_starting : p->group_starting) - p->nstarting
                         ? "instances of this function's other versions, or of other functions,"
                         : "other functions' instances");
        else
            snprintf(msg, sizeof msg, "no instance became free within the timeout");
        if (inv->topic) {
            /* A trigger's message that never ran: the node could not run it
             * in time (instances slow to start on a loaded machine, a zygote
             * still loading), as when a limit refused it above. It goes
             * back without losing an attempt; a function that cannot start
             * at all still spends its messages' attempts, one per failed
             * start (instances.c). */
            pool__finish_msg(p, inv, POOL_UNAVAILABLE, msg);
            continue;
        }
        p->timeouts++;
        pool__finish_msg(p, inv, POOL_TIMEOUT, msg);
    }
    while (!list_empty(&over_limit)) {
        invocation *inv = list_entry(list_first(&over_limit), invocation, link);
        list_remove(&inv->link);
        char msg[160];
        log_warn("instance stopped at its process limit fn=%s req=%s", p->name, inv->request_id);
        pool__finish_msg(p, inv, POOL_CRASHED, pids_limit_message(msg, sizeof msg));
    }
    while (!list_empty(&timed_out)) {
        invocation *inv = list_entry(list_first(&timed_out), invocation, link);
        list_remove(&inv->link);
        char msg[96];
        snprintf(msg, sizeof msg, "function timed out after %u ms", inv->timeout_ms);
        log_warn("invocation timed out after %u ms fn=%s req=%s", inv->timeout_ms, p->name,
                 inv->request_id);
        pool__finish_msg(p, inv, POOL_TIMEOUT, msg);
    }
    if (p->prewarm_due) {
        p->prewarm_due = 0;
        if (p->active && p->active->cfg.prewarm && !p->closing) pool__ensure_zygote(p, p->active);
    }
    pool__serve_waiting(p);
    pool__grow(p);
    pool__maybe_finish_close(p);
}
