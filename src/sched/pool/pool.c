/*
 * pool.c - a pool's own life: creation, what it tells (stats, metrics,
 * capacity), and closing it.
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "sched/pool/internal.h"

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
    p->start_window = SPATE_STARTING_MAX;
    list_init(&p->versions);
    list_init(&p->starting);
    list_init(&p->idle);
    list_init(&p->busy);
    list_init(&p->waiting);
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    pool__node_join(p);
    return p;
}

void pool_on_active(pool *p, void (*cb)(void *data), void *data)
{
    p->active_cb = cb;
    p->active_data = data;
    p->active_told = 0;
}

int pool_settle(pool *p)
{
    if (pool__live(p) || p->nstopping || p->nwaiting) return 0;
    p->active_told = 0;
    return 1;
}

void pool_stats_get(const pool *p, pool_stats *out)
{
    memset(out, 0, sizeof *out);
    out->active_version = p->active ? p->active->number : 0;
    out->starting = p->nstarting;
    out->idle = p->nidle;
    out->busy = p->nbusy;
    out->stopping = p->nstopping;
    out->spare = p->nspare;
    out->spares_started = p->spares_started;
    out->spare_handovers = p->spare_handovers;
    pool_cost_get(p, &out->instance_seconds, &out->spare_seconds);
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
    out->service_us = pool__service_estimate(p);
    out->service_floor_us = pool__service_floor_us(p);
    out->cold_us = p->cold_us;
    out->mailbox = pool__mailbox_limit(p);
    out->starting_max = pool__starting_max(p);
    out->desired = pool__desired_now(p);
    out->max_instances = p->active ? p->active->cfg.max_instances : 0;
    out->min_instances = p->active ? p->active->cfg.min_instances : 0;
    out->load_error = p->active ? p->active->load_error : NULL;
    out->start_refused = p->refused;
}

const pool_metrics *pool_metrics_get(const pool *p)
{
    return &p->m;
}

const char *pool_outcome_name(enum pool_outcome o)
{
    static const char *const names[POOL_OUTCOMES] = {"ok",      "error",    "crashed",
                                                     "timeout", "rejected", "unavailable"};
    return (unsigned)o < POOL_OUTCOMES ? names[o] : "unknown";
}

uint32_t pool_capacity(const pool *p)
{
    if (!p->active || p->closing) return 0;
    uint64_t c = (uint64_t)p->active->cfg.max_instances * pool__mailbox_limit(p);
    return c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
}

static void on_timer_closed(uv_handle_t *h)
{
    pool *p = h->data;
    void (*cb)(void *) = p->close_cb;
    void *data = p->close_data;
    free(p->name);
    free(p->recent);
    fnlog_unref(p->log);
    free(p);
    if (cb) cb(data);
}

void pool__maybe_finish_close(pool *p)
{
    if (!p->closing || p->closed) return;
    if (p->nwaiting > 0 || p->nbusy > 0) return;
    /* Nothing left to serve: stop whatever still stands. */
    for (list_node *n = list_first(&p->versions); n != &p->versions; n = n->next)
        pool__spare_stop(list_entry(n, pversion, link));
    while (!list_empty(&p->idle))
        pool__stop_instance(list_entry(list_first(&p->idle), pinst, link));
    while (!list_empty(&p->starting))
        pool__stop_instance(list_entry(list_first(&p->starting), pinst, link));
    if (p->nstopping > 0) return;
    /* Every instance has exited: the zygotes can go. */
    while (!list_empty(&p->versions)) {
        pversion *v = list_entry(list_first(&p->versions), pversion, link);
        pool_load_cb cb = v->load_cb;
        v->load_cb = NULL;
        uint32_t number = v->number;
        void *data = v->load_data;
        pool__free_version(v);
        if (cb) cb(p, number, ERR_CLOSED, "spated is shutting down", data);
    }
    p->closed = 1;
    pool__node_leave(p);
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
        pool__fail_waiting(p, POOL_UNAVAILABLE, "spated is shutting down");
        /* Running invocations are cut: report them, then kill. */
        list_node cut;
        list_init(&cut);
        while (!list_empty(&p->busy)) {
            pinst *pi = list_entry(list_first(&p->busy), pinst, link);
            while (pi->depth) list_push_back(&cut, &pool__pop_head(pi)->link);
            pool__stop_instance(pi);
        }
        while (!list_empty(&cut)) {
            invocation *inv = list_entry(list_first(&cut), invocation, link);
            list_remove(&inv->link);
            pool__finish_msg(p, inv, POOL_UNAVAILABLE,
                             "spated stopped before the function finished");
        }
    }
    pool__maybe_finish_close(p);
}
