/*
 * versions.c - a pool's versions and their zygotes: a deploy loads a version
 * beside the active one, activating it retires the old one, whose zygote
 * stops once its last instance has.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "sched/pool/internal.h"

/* --- Zygotes ----------------------------------------------------------------------- */

static void on_zygote_loaded(launcher *z, int status, const char *message, void *data)
{
    pversion *v = data;
    pool *p = v->pool;
    pool_load_cb cb = v->load_cb;
    v->load_cb = NULL;
    if (status == 0) {
        v->zstate = ZS_READY;
        v->load_failures = 0;
        free(v->load_error);
        v->load_error = NULL;
        v->load_limit = 0;
        pool__limits_eased(p);
        log_info("loaded fn=%s version=%u zygote=%d", p->name, v->number, launcher_pid(z));
        pool__zygote_touch(v); /* its idle time starts */
        if (cb) pool__spare_deploy(p, v);
        if (cb) cb(p, v->number, 0, NULL, v->load_data); /* may discard v */
        pool__grow(p);
        pool__zygote_trim(); /* a deploy's check may have gone over the budget */
        return;
    }
    v->z = NULL;
    pool__zygote_gone(v);
    v->zstate = ZS_NONE;
    /* Each failed load in a row doubles the wait before the next: a
     * spate_preload that hangs (up to SPATE_ZYGOTE_LOAD_TIMEOUT_MS each
     * time) would otherwise hold a room of the budget most of the time. */
    uint32_t shift = v->load_failures < 16 ? v->load_failures : 16;
    uint64_t backoff = (uint64_t)SPATE_ZYGOTE_RESTART_BACKOFF_MS << shift;
    if (backoff > SPATE_ZYGOTE_LOAD_BACKOFF_CAP_MS) backoff = SPATE_ZYGOTE_LOAD_BACKOFF_CAP_MS;
    v->load_failures++;
    v->retry_at = pool__now_ms(p) + backoff;
    free(v->load_error);
    v->load_error = strdup(message);
    v->load_limit = 0;
    fnlog_platform(p->log, 0, v->number, NULL, "cannot load function: %s", message);
    if (cb) {
        cb(p, v->number, ERR_INVAL, message, v->load_data);
        return;
    }
    log_error("cannot load function: %s fn=%s version=%u", message, p->name, v->number);
    if (v == p->active) {
        char msg[SPATE_LOAD_ERROR_MAX];
        snprintf(msg, sizeof msg, "cannot start function: %s", message);
        pool__fail_waiting(p, POOL_UNAVAILABLE, msg);
    }
    pool__maybe_finish_close(p);
}

static void on_zygote_exit(launcher *z, void *data)
{
    pversion *v = data;
    pool *p = v->pool;
    v->z = NULL;
    v->zstate = ZS_NONE;
    pool__zygote_gone(v);
    v->retry_at = pool__now_ms(p) + SPATE_ZYGOTE_RESTART_BACKOFF_MS;
    if (v->retired && v->ninstances == 0) {
        pool__free_version(v);
        pool__maybe_finish_close(p);
        return;
    }
    pool__grow(p);
    pool__maybe_finish_close(p);
}

/* check: a deploy's load, which the budget does not refuse (the object must
 * be checked) and in which a managed runtime imports the handler once. */
static int start_zygote(pool *p, pversion *v, int check)
{
    int rc = pool__zygote_reserve(v, check);
    if (rc != 0) return rc;
    launcher_config lc = {
        .runtime = v->runtime,
        .runner_path = p->runner_path,
        .path = v->object_path,
        .function = p->name,
        .version = v->number,
        .memory_mb = v->memory_mb,
        /* The node's maximum may be lower than the function's. */
        .max_instances =
            v->cfg.max_instances < pool_node_max() ? v->cfg.max_instances : pool_node_max(),
        .cpu_millis = v->cpu_millis,
        .tmp_mb = v->tmp_mb,
        .no_network = v->no_network,
        .log = p->log,
        .env = v->env,
        .check = check,
    };
    rc = launcher_start(p->loop, &lc, on_zygote_loaded, on_zygote_exit, v, &v->z);
    if (rc != 0) {
        v->z = NULL;
        v->retry_at = pool__now_ms(p) + SPATE_ZYGOTE_RESTART_BACKOFF_MS;
        free(v->load_error);
        v->load_limit = err_limit(rc) >= 0 ? rc : 0;
        if (v->load_limit) {
            char msg[256];
            snprintf(msg, sizeof msg, "cannot start a zygote: %s", err_str(rc));
            v->load_error = strdup(msg);
            pool__limit_hit(p, rc, "cannot start a zygote");
        } else {
            v->load_error = strdup(v->runtime == RUNTIME_NATIVE
                                       ? "cannot start spate-runner (see the spated log)"
                                       : "cannot start the function (see the spated log)");
        }
        return rc;
    }
    v->zstate = ZS_LOADING;
    pool__zygote_started(v);
    return 0;
}

/* Makes sure the active version has a zygote, or one is on its way: the
 * first invocation since it last stopped (or a minimum of instances) starts
 * it, within the node's budget. */
void pool__ensure_zygote(pool *p, pversion *v)
{
    if (v->zstate != ZS_NONE) return;
    if (pool__now_ms(p) < v->retry_at) {
        pool__arm(p, v->retry_at);
        return;
    }
    int rc = pool__zygote_reserve(v, 0);
    if (rc == 1) {
        /* Another function's idle instances are stopping to give their
         * zygote's room: what waits waits for it. */
        pool__arm(p, pool__now_ms(p) + SPATE_ZYGOTE_RECLAIM_LOOK_MS);
        return;
    }
    if (rc != 0) {
        /* Every zygote has work: what waits is told so now (and the log
         * once). A minimum of instances asks again after the back-off. */
        char msg[256];
        pool__zygote_want(v); /* a prewarm one starts once there is room */
        if (p->nwaiting == 0) {
            /* A prewarm's or minimum's own try: nobody refused, nothing to log. */
            pool__arm(p, pool__now_ms(p) + SPATE_ZYGOTE_RESTART_BACKOFF_MS);
            return;
        }
        pool__limit_hit(p, ERR_ZYGOTES,
                        "cannot start a zygote: none running can stop for it (instances at work, "
                        "loading, or a minimum of instances)");
        pool__zygote_refusal(msg, sizeof msg);
        /* Shown with the function (load_error) until its zygote starts. */
        free(v->load_error);
        v->load_error = strdup(msg);
        pool__refuse_waiting(p, ERR_ZYGOTES, msg);
        pool__arm(p, pool__now_ms(p) + SPATE_ZYGOTE_RESTART_BACKOFF_MS);
        return;
    }
    if (start_zygote(p, v, 0) != 0 && v == p->active) {
        if (v->load_limit)
            pool__refuse_waiting(p, v->load_limit, "cannot start a zygote");
        else
            pool__fail_waiting(p, POOL_UNAVAILABLE, v->load_error);
        pool__arm(p, v->retry_at);
    }
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
    list_init(&v->zlink);
    list_init(&v->wlink);
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

void pool__free_version(pversion *v)
{
    pool *p = v->pool;
    if (p->active == v) p->active = NULL;
    list_remove(&v->link);
    pool__zygote_stop(v);
    pool__zygote_forget(v);
    free(v->object_path);
    free_env(v->env);
    free(v->load_error);
    free(v);
}

/* The version stops taking work: idle instances stop now, busy ones when done. */
static void retire(pool *p, pversion *v)
{
    v->retired = 1;
    pool__spare_stop(v); /* it never serves another version */
    list_node *lists[2] = {&p->idle, &p->starting};
    for (int i = 0; i < 2; i++) {
        list_node *n = list_first(lists[i]);
        while (n != lists[i]) {
            pinst *pi = list_entry(n, pinst, link);
            n = n->next;
            if (pi->ver == v) pool__stop_instance(pi);
        }
    }
    if (v->ninstances == 0) pool__free_version(v);
}

int pool_load_version(pool *p, const pool_version_spec *spec, pool_load_cb cb, void *data)
{
    if (p->closing) return ERR_CLOSED;
    if (find_version(p, spec->version)) return ERR_EXISTS;
    pversion *v = new_version(p, spec);
    if (!v) return ERR_NOMEM;
    v->load_cb = cb;
    v->load_data = data;
    p->used_at = pool__now_ms(p); /* a first invocation is likely soon: a spare waits for it */
    p->used_by_deploy = 1;
    int rc = start_zygote(p, v, 1);
    if (rc != 0) {
        pool__limit_count(rc); /* the deploy is refused with it */
        v->load_cb = NULL;
        pool__free_version(v);
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
        p->start_window = SPATE_STARTING_MAX; /* nor starts known to be late */
    }
    if (v->cfg.prewarm && v->zstate == ZS_NONE) pool__ensure_zygote(p, v); /* also at start-up */
    pool__grow(p);
    return 0;
}

void pool_discard(pool *p, uint32_t version)
{
    pversion *v = find_version(p, version);
    if (!v || v == p->active) return;
    v->load_cb = NULL;
    v->retired = 1;
    pool__spare_stop(v);
    if (v->ninstances == 0) pool__free_version(v);
    pool__maybe_finish_close(p);
}

int pool_restore_version(pool *p, const pool_version_spec *spec)
{
    if (find_version(p, spec->version)) return ERR_EXISTS;
    pversion *v = new_version(p, spec);
    if (!v) return ERR_NOMEM;
    /* No zygote yet: the first invocation starts it (or, with a minimum of
     * instances or prewarm, pool_activate), so that a node with thousands of
     * functions is up at once, not after a storm of zygotes loading. */
    pool_activate(p, v->number);
    return 0;
}
