#include "sched/functions_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/list.h"
#include "common/log.h"
#include "common/strmap.h"

/* --- Environment of a version's processes -------------------------------------- */

/* Variables passed through from spated's own environment, for debugging. */
static const char *const passthrough[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};

static int env_has(char **env, size_t n, const char *kv)
{
    size_t klen = strcspn(kv, "=");
    for (size_t i = 0; i < n; i++) /* NULL: a copy that failed (build_env checks at its end) */
        if (env[i] && strncmp(env[i], kv, klen) == 0 && env[i][klen] == '=') return 1;
    return 0;
}

/* Builds the whole environment of a zygote: the function's variables, then
 * spate's defaults for what the function did not set. Nothing else of
 * spated's environment leaks in. Caller frees with free_env_array. */
static char **build_env(const char *name, uint32_t version, const fn_config *c)
{
    size_t cap = c->env_count + c->secret_count + 16, n = 0;
    char **env = calloc(cap, sizeof *env);
    if (!env) return NULL;
    /* Plain and secret variables alike: both are the function's environment. */
    const char *lists[2] = {c->env, c->secrets};
    for (int l = 0; l < 2; l++)
        for (const char *p = lists[l]; p && *p && n < c->env_count + c->secret_count;) {
            size_t len = strcspn(p, "\n");
            env[n++] = strndup(p, len);
            p += len + (p[len] == '\n');
        }
    char defaults[7][256];
    snprintf(defaults[0], sizeof defaults[0], "PATH=/usr/local/bin:/usr/bin:/bin");
    snprintf(defaults[1], sizeof defaults[1], "LANG=C.UTF-8");
    snprintf(defaults[2], sizeof defaults[2], "TZ=UTC");
    snprintf(defaults[3], sizeof defaults[3], "SPATE_FUNCTION_NAME=%s", name);
    snprintf(defaults[4], sizeof defaults[4], "SPATE_FUNCTION_VERSION=%u", version);
    snprintf(defaults[5], sizeof defaults[5], "SPATE_FUNCTION_MEMORY_MB=%u", c->memory_mb);
    /* A managed runtime's client finds its handler where Lambda puts it; a
     * _HANDLER of the function's own gives way (the deploy checked this one). */
    snprintf(defaults[6], sizeof defaults[6], "_HANDLER=%s", c->handler);
    for (size_t i = 0; c->handler[0] && i < n; i++)
        if (env[i] && strncmp(env[i], "_HANDLER=", 9) == 0) {
            free(env[i]);
            env[i] = strdup(defaults[6]);
        }
    if (c->handler[0] && !env_has(env, n, defaults[6])) env[n++] = strdup(defaults[6]);
    /* Exec functions get the Lambda defaults instead (runtime/exec/). */
    for (int i = fnconfig_runtime_is_exec(c->runtime) ? 3 : 0; i < 6; i++)
        if (!env_has(env, n, defaults[i])) env[n++] = strdup(defaults[i]);
    for (size_t i = 0; i < sizeof passthrough / sizeof *passthrough; i++) {
        const char *v = getenv(passthrough[i]);
        char kv[512];
        if (!v) continue;
        snprintf(kv, sizeof kv, "%s=%s", passthrough[i], v);
        if (!env_has(env, n, kv)) env[n++] = strdup(kv);
    }
    env[n] = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!env[i]) {
            for (size_t j = 0; j < n; j++) free(env[j]);
            free(env);
            return NULL;
        }
    }
    return env;
}

static void free_env_array(char **env)
{
    if (!env) return;
    for (char **e = env; *e; e++) free(*e);
    free(env);
}

static int version_spec(functions *t, const char *name, uint32_t version, const char *sha,
                        const fn_config *c, pool_version_spec *spec, char *path, size_t pathcap)
{
    registry_artifact_path(t->reg, sha, fnconfig_runtime_is_exec(c->runtime), path, pathcap);
    spec->version = version;
    spec->runtime = c->runtime;
    spec->memory_mb = c->memory_mb;
    spec->cpu_millis = c->cpu_millis;
    spec->tmp_mb = c->tmp_mb;
    spec->no_network = !c->network;
    spec->object_path = path;
    spec->env = build_env(name, version, c);
    spec->config = (pool_config){
        .min_instances = c->min_instances,
        .max_instances = c->max_instances,
        .timeout_ms = c->timeout_ms,
        .keep_alive_ms = c->keep_alive_ms,
        .queue_max = c->queue_max,
        .prewarm = c->prewarm,
    };
    return spec->env ? 0 : ERR_NOMEM;
}

/* --- Function records ---------------------------------------------------------------- */

/* The first index of t->sorted whose name is after name (strictly, or
 * from name on when !strict). */
static size_t sorted_from(const functions *t, const char *name, int strict)
{
    size_t lo = 0, hi = t->nsorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->sorted[mid]->name, name);
        if (c < 0 || (strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int sorted_add(functions *t, fn *f)
{
    if (t->nsorted == t->capsorted) {
        size_t cap = t->capsorted ? t->capsorted * 2 : 64;
        fn **p = realloc(t->sorted, cap * sizeof *p);
        if (!p) return ERR_NOMEM;
        t->sorted = p;
        t->capsorted = cap;
    }
    size_t at = sorted_from(t, f->name, 0);
    memmove(t->sorted + at + 1, t->sorted + at, (t->nsorted - at) * sizeof *t->sorted);
    t->sorted[at] = f;
    t->nsorted++;
    return 0;
}

static void sorted_remove(functions *t, const fn *f)
{
    size_t at = sorted_from(t, f->name, 0);
    if (at == t->nsorted || t->sorted[at] != f) return;
    memmove(t->sorted + at, t->sorted + at + 1, (t->nsorted - at - 1) * sizeof *t->sorted);
    t->nsorted--;
}

static void on_fn_active(void *data)
{
    fn *f = data;
    if (f->busy_listed) return;
    f->busy_listed = 1;
    list_push_back(&f->table->busy, &f->busy_link);
}

void functions_each_busy(functions *t, int (*cb)(fn *f, void *data), void *data)
{
    /* cb may not take functions out of the table (retire_fn unlinks them). */
    list_node *n = list_first(&t->busy);
    while (n != &t->busy) {
        fn *f = list_entry(n, fn, busy_link);
        n = n->next;
        int keep = f->registered && cb(f, data);
        if (!keep && pool_settle(f->pool)) {
            list_remove(&f->busy_link);
            f->busy_listed = 0;
        }
    }
}

static fn *new_fn(functions *t, const char *name)
{
    fn *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    snprintf(f->name, sizeof f->name, "%s", name);
    list_init(&f->sides);
    f->table = t;
    list_init(&f->busy_link);
    f->pool = pool_create(t->loop, name, t->runner_path);
    if (!f->pool || strmap_put(&t->byname, f->name, f)) {
        if (f->pool) pool_close(f->pool, 0, NULL, NULL);
        free(f);
        return NULL;
    }
    if (sorted_add(t, f) != 0) {
        strmap_remove(&t->byname, f->name);
        pool_close(f->pool, 0, NULL, NULL);
        free(f);
        return NULL;
    }
    t->pools_open++;
    pool_on_active(f->pool, on_fn_active, f);
    return f;
}

static void maybe_closed(functions *t)
{
    if (!t->closing || t->pools_open > 0) return;
    void (*cb)(void *) = t->close_cb;
    void *data = t->close_data;
    strmap_free(&t->byname);
    free(t->sorted);
    free(t);
    if (cb) cb(data);
}

static void on_pool_closed(void *data)
{
    fn *f = data;
    functions *t = f->table;
    list_remove(&f->retire_link);
    fnconfig_free(&f->active.config);
    free(f->aliases);
    free(f);
    t->pools_open--;
    maybe_closed(t);
}

/* Takes f out of the table and stops its pool; f is freed when it has. */
static void retire_fn(functions *t, fn *f, int drain)
{
    strmap_remove(&t->byname, f->name);
    sorted_remove(t, f);
    if (f->busy_listed) {
        list_remove(&f->busy_link);
        f->busy_listed = 0;
    }
    pool_on_active(f->pool, NULL, NULL);
    if (f->registered) t->nregistered--;
    list_push_back(&t->retiring, &f->retire_link);
    functions__close_sides(t, f, drain);
    pool_close(f->pool, drain, on_pool_closed, f);
}

static int restore_one(const reg_version *v, int64_t created_ms, void *data)
{
    functions *t = data;
    fn *f = new_fn(t, v->function);
    if (!f) return ERR_NOMEM;
    f->active = *v;
    f->active.config.env = NULL;
    if (fnconfig_copy(&f->active.config, &v->config)) return ERR_NOMEM;
    f->created_ms = created_ms;
    f->registered = 1;
    t->nregistered++;
    pool_version_spec spec;
    char path[4096];
    if (version_spec(t, v->function, v->version, v->sha256, &v->config, &spec, path, sizeof path))
        return ERR_NOMEM;
    int rc = pool_restore_version(f->pool, &spec);
    free_env_array(spec.env);
    /* One line each at debug: 100,000 of them at info made every start write
     * 10 MB of log; functions_open says how many. */
    if (rc == 0) log_debug("restored fn=%s version=%u", v->function, v->version);
    return rc;
}

int functions_open(uv_loop_t *loop, registry *reg, const char *runner_path, functions **out)
{
    functions *t = calloc(1, sizeof *t);
    if (!t) return ERR_NOMEM;
    t->loop = loop;
    t->reg = reg;
    t->runner_path = runner_path;
    strmap_init(&t->byname);
    list_init(&t->busy);
    list_init(&t->retiring);
    list_init(&t->stopping_sides);
    uint64_t t0 = clock_mono_ns();
    int rc = registry_each_active(reg, restore_one, t);
    if (rc) log_error("cannot restore functions from the store: %s", err_str(rc));
    if (t->byname.count)
        log_info("restored %zu function%s in %llu ms (no zygote starts until needed)",
                 (size_t)t->byname.count, t->byname.count == 1 ? "" : "s",
                 (unsigned long long)((clock_mono_ns() - t0) / 1000000));
    functions__versions_open(t);
    *out = t;
    return rc;
}

typedef struct close_list {
    fn **at;     /* where the next one goes: from the start each time, closing
                  * 100,000 functions took 20 s */
    size_t left; /* room at at */
} close_list;

static void close_each(const char *key, void *value, void *data)
{
    close_list *c = data;
    if (!c->left) return;
    *c->at++ = value;
    c->left--;
}

void functions_close(functions *t, int drain, void (*cb)(void *data), void *data)
{
    if (!t->closing) {
        t->close_cb = cb;
        t->close_data = data;
    }
    t->closing = 1;
    functions__versions_close(t, drain);
    /* Collect first: retiring changes the map. */
    fn **list = calloc(t->byname.count + 1, sizeof *list);
    if (list) {
        close_list c = {list, t->byname.count};
        strmap_each(&t->byname, close_each, &c);
        for (fn **f = list; *f; f++) retire_fn(t, *f, drain);
        free(list);
    }
    /* Out of memory for the list: a few at a time (each pass costs the
     * table), but every one, or spated would never finish stopping. */
    while (t->byname.count) {
        fn *few[64] = {0};
        close_list c = {few, 63};
        strmap_each(&t->byname, close_each, &c);
        for (fn **f = few; *f; f++) retire_fn(t, *f, drain);
    }
    if (!drain) {
        /* Hurry pools already stopping (from a delete or an earlier close).
         * A pool may finish inside pool_close, so step before calling. */
        list_node *n = list_first(&t->retiring);
        while (n != &t->retiring) {
            fn *f = list_entry(n, fn, retire_link);
            n = n->next;
            pool_close(f->pool, 0, NULL, NULL);
        }
    }
    maybe_closed(t);
}

fn *functions_find(functions *t, const char *name, size_t len)
{
    fn *f = strmap_get(&t->byname, name, len);
    return f && f->registered ? f : NULL;
}

void functions_each(functions *t, void (*cb)(fn *f, void *data), void *data)
{
    /* A copy: cb may take functions out of the table. */
    fn **list = malloc((t->nsorted + 1) * sizeof *list);
    if (!list) return;
    size_t n = 0;
    for (size_t i = 0; i < t->nsorted; i++)
        if (t->sorted[i]->registered) list[n++] = t->sorted[i];
    for (size_t i = 0; i < n; i++) cb(list[i], data);
    free(list);
}

uint32_t functions_page(functions *t, const char *after, uint32_t limit,
                        int (*cb)(fn *f, void *data), void *data, int *more)
{
    uint32_t n = 0;
    *more = 0;
    for (size_t i = after ? sorted_from(t, after, 1) : 0; i < t->nsorted; i++) {
        fn *f = t->sorted[i];
        if (!f->registered) continue;
        if (n == limit || cb(f, data)) {
            *more = 1;
            break;
        }
        n++;
    }
    return n;
}

uint32_t functions_count(functions *t)
{
    return t->nregistered;
}

int functions_versions(functions *t, const fn *f, registry_version_cb cb, void *data)
{
    return registry_each_version(t->reg, f->name, cb, data);
}

/* --- Deploy ---------------------------------------------------------------------------- */

typedef struct deploy {
    functions *t;
    fn *f;
    fn_config cfg;
    buf artifact;
    char sha[HASH_HEX_LEN + 1];
    uint32_t version;
    uint32_t rollback;           /* a rollback to this version; 0: a new version */
    int64_t rollback_created_ms; /* when that version was made */
    int64_t stopping_since_ms;   /* a rollback waits while that version's instances stop */
    int rc;
    int refused; /* the artifact itself is bad (400), not the store */
    char err[512];
    deploy_cb cb;
    void *data;
} deploy;

static void finish_deploy(deploy *d, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void finish_deploy(deploy *d, int status, const char *code, const char *fmt, ...)
{
    char msg[4400] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    fn *f = d->f;
    f->deploying = 0;
    deploy_result r = {.status = status, .code = code, .message = fmt ? msg : NULL, .f = f};
    int failed = status >= 400;
    if (failed) {
        log_warn("deploy failed: %s fn=%s", msg, f->name);
        /* Leave nothing behind: the artifact if no version uses it, the
         * function if this was its first deploy. */
        if (d->sha[0] && registry_artifact_used(d->t->reg, d->sha) == 0)
            registry_artifact_remove(d->t->reg, d->sha);
        if (!f->registered) {
            r.f = NULL;
            retire_fn(d->t, f, 0);
        }
    }
    d->cb(&r, d->data);
    fnconfig_free(&d->cfg);
    buf_free(&d->artifact);
    free(d);
}

static void on_loaded(pool *p, uint32_t version, int status, const char *message, void *data)
{
    deploy *d = data;
    fn *f = d->f;
    if (status != 0) {
        pool_discard(p, version);
        if (status == ERR_CLOSED)
            finish_deploy(d, 503, "shutting_down", "%s", message);
        else
            finish_deploy(d, 400, "bad_artifact", "%s", message);
        return;
    }
    reg_version v = {.version = version, .size = d->artifact.max, .created_ms = clock_now_ms()};
    snprintf(v.function, sizeof v.function, "%s", f->name);
    memcpy(v.sha256, d->sha, sizeof v.sha256);
    v.config = d->cfg;
    if (d->rollback) v.created_ms = d->rollback_created_ms;
    if (d->rollback ? registry_activate(d->t->reg, f->name, version)
                    : registry_put_version(d->t->reg, &v)) {
        pool_discard(p, version);
        finish_deploy(d, 503, "store_unavailable",
                      "cannot record the new version in the store (see the node's log)");
        return;
    }
    pool_activate(p, version);
    int created = !f->registered;
    fnconfig_free(&f->active.config);
    f->active = v;
    f->active.config = d->cfg; /* ownership moves to the record */
    memset(&d->cfg, 0, sizeof d->cfg);
    if (created) {
        f->created_ms = v.created_ms;
        d->t->nregistered++;
    }
    f->registered = 1;
    /* A cluster's aliases may have come before the function did. */
    if (created && functions__load_aliases(d->t, f) != 0)
        log_error("cannot read the aliases of fn=%s", f->name);
    log_info("%s fn=%s version=%u sha256=%.12s", d->rollback ? "rolled back" : "deployed", f->name,
             version, d->sha);
    finish_deploy(d, created ? 201 : 200, NULL, NULL);
}

static void load_version(deploy *d);

/* The artifact is stored (on the registry's worker thread). */
static void on_stored(void *data, int status, const char *sha, const char *err)
{
    deploy *d = data;
    d->rc = status;
    d->refused = status == ERR_INVAL;
    snprintf(d->sha, sizeof d->sha, "%s", sha);
    snprintf(d->err, sizeof d->err, "%s", err);
    /* Only the size is needed from here on: the file holds the bytes. */
    size_t size = d->artifact.len;
    buf_free(&d->artifact);
    d->artifact.max = size;
    if (d->refused) {
        finish_deploy(d, 400, "bad_artifact", "%s", d->err);
        return;
    }
    if (d->rc != 0) {
        d->sha[0] = '\0';
        /* The disk failed or is full: the store is unavailable, for now. */
        if (d->rc == ERR_IO || d->rc == ERR_NOSPACE)
            finish_deploy(d, 503, "store_unavailable", "cannot store the artifact (%s): %s",
                          err_str(d->rc), d->err);
        else
            finish_deploy(d, 500, "store_error", "cannot store artifact: %s", d->err);
        return;
    }
    load_version(d);
}

/* A rollback right after a deploy finds the version it goes back to still
 * stopping (its spare or idle instances were told to stop moments ago): it
 * waits for them, up to STOPPING_WAIT_MS, instead of refusing a request the
 * caller could not have timed better. */
#define STOPPING_WAIT_MS 10000
#define STOPPING_POLL_MS 10

typedef struct stopping_wait {
    uv_timer_t timer;
    deploy *d;
} stopping_wait;

static void stopping_wait_closed(uv_handle_t *h)
{
    free(h->data);
}

static void stopping_wait_fired(uv_timer_t *timer)
{
    stopping_wait *w = timer->data;
    deploy *d = w->d;
    uv_close((uv_handle_t *)timer, stopping_wait_closed);
    load_version(d);
}

/* 1: load_version(d) runs again shortly; 0: it waited long enough. */
static int wait_for_stopping(deploy *d)
{
    int64_t now = clock_now_ms();
    if (!d->stopping_since_ms) d->stopping_since_ms = now;
    if (now - d->stopping_since_ms >= STOPPING_WAIT_MS) return 0;
    stopping_wait *w = malloc(sizeof *w);
    if (!w) return 0;
    w->d = d;
    uv_timer_init(d->t->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, stopping_wait_fired, STOPPING_POLL_MS, 0);
    return 1;
}

/* The artifact is in the store: a zygote loads it as the next version. */
static void load_version(deploy *d)
{
    if (d->t->closing) {
        finish_deploy(d, 503, "shutting_down", "spated is shutting down");
        return;
    }
    if (d->rollback)
        d->version = d->rollback;
    else if (registry_next_version(d->t->reg, d->f->name, &d->version)) {
        finish_deploy(d, 500, "store_error", "cannot read versions from the store");
        return;
    }
    pool_version_spec spec;
    char path[4096];
    if (version_spec(d->t, d->f->name, d->version, d->sha, &d->cfg, &spec, path, sizeof path)) {
        finish_deploy(d, 500, "out_of_memory", "out of memory");
        return;
    }
    int rc = pool_load_version(d->f->pool, &spec, on_loaded, d);
    free_env_array(spec.env);
    if (rc == ERR_EXISTS && wait_for_stopping(d)) return;
    if (rc == ERR_EXISTS) /* a rollback to a version whose instances still stop here */
        finish_deploy(d, 409, "version_stopping",
                      "version %u still has instances stopping here; try again shortly",
                      d->version);
    else if (err_limit(rc) >= 0) /* a node limit: 503 with its code (common/err.h) */
        finish_deploy(d, 503, err_limit_code(err_limit(rc)), "cannot start a zygote: %s",
                      err_str(rc));
    else if (rc != 0)
        finish_deploy(d, 500, "internal", "cannot start a zygote: %s", err_str(rc));
}

/* A deploy of name may start: the record for it, which takes cfg and the
 * artifact (NULL: a configuration change, of an existing function only), or
 * NULL after both were released and cb had the reason. The artifact goes
 * before cb: it may be the request's body, which the answer recycles. */
static deploy *begin_deploy(functions *t, const char *name, fn_config *cfg, buf *artifact,
                            deploy_cb cb, void *data)
{
    int create = artifact != NULL;
    deploy_result r = {0};
    fn *f = strmap_get(&t->byname, name, strlen(name));
    if (t->closing) {
        r = (deploy_result){503, "shutting_down", "spated is shutting down", NULL};
    } else if (f && f->deploying) {
        r = (deploy_result){409, "deploy_in_progress", "a deploy of this function is in progress",
                            NULL};
    } else if (!create && (!f || !f->registered)) {
        r = (deploy_result){404, "not_found", "the function does not exist", NULL};
    } else if (!f && !(f = new_fn(t, name))) {
        r = (deploy_result){500, "out_of_memory", "out of memory", NULL};
    }
    deploy *d = r.status ? NULL : calloc(1, sizeof *d);
    if (!r.status && !d) r = (deploy_result){500, "out_of_memory", "out of memory", NULL};
    if (r.status) {
        fnconfig_free(cfg);
        if (artifact) buf_free(artifact);
        cb(&r, data);
        return NULL;
    }
    f->deploying = 1;
    d->t = t;
    d->f = f;
    d->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    if (artifact) {
        d->artifact = *artifact;
        buf_init(artifact, 0);
    }
    d->cb = cb;
    d->data = data;
    return d;
}

void functions_deploy(functions *t, const char *name, fn_config *cfg, buf *artifact, deploy_cb cb,
                      void *data)
{
    deploy *d = begin_deploy(t, name, cfg, artifact, cb, data);
    if (!d) return;
    /* Hashing and syncing 64 MiB must not stall the loop. */
    int unpack = registry_unpack_of(&d->cfg);
    registry_artifact_put(t->reg, d->artifact.data, d->artifact.len, unpack, on_stored, d);
}

void functions_reconfigure(functions *t, const char *name, fn_config *cfg, deploy_cb cb, void *data)
{
    deploy *d = begin_deploy(t, name, cfg, NULL, cb, data);
    if (!d) return;
    if (d->cfg.runtime != d->f->active.config.runtime) {
        finish_deploy(d, 400, "bad_parameter",
                      "the runtime belongs to the artifact: deploy it again to change it");
        return;
    }
    /* The stored artifact of the active version (and for exec its unpacked
     * tree) serves the new version as it is; it is used, so a failure here
     * leaves it in place. */
    memcpy(d->sha, d->f->active.sha256, sizeof d->sha);
    d->artifact.max = d->f->active.size;
    load_version(d);
}

/* The version before the active one, newest first. */
typedef struct previous {
    uint32_t active, found;
} previous;

static int find_previous(const reg_version *v, int64_t created_ms, void *data)
{
    (void)created_ms;
    previous *p = data;
    if (v->version >= p->active) return 0;
    p->found = v->version;
    return 1;
}

void functions_rollback(functions *t, const char *name, uint32_t version, deploy_cb cb, void *data)
{
    fn_config none = {0};
    deploy *d = begin_deploy(t, name, &none, NULL, cb, data);
    if (!d) return;
    fn *f = d->f;
    /* Only a registry that can make an old version active again will do:
     * probe with the active one (no change). */
    int rc = registry_activate(t->reg, f->name, f->active.version);
    if (rc == ERR_NOTSUP) {
        finish_deploy(d, 501, "not_supported", "this registry cannot activate an older version");
        return;
    }
    if (!version) {
        previous p = {.active = f->active.version};
        if (registry_each_version(t->reg, f->name, find_previous, &p) == 0 && !p.found) {
            finish_deploy(d, 404, "not_found", "function '%s' has no version before %u", f->name,
                          f->active.version);
            return;
        }
        version = p.found;
    }
    if (version == f->active.version) {
        finish_deploy(d, 409, "already_active", "version %u of '%s' is the active one already",
                      version, f->name);
        return;
    }
    reg_version v;
    rc = version ? functions__read_version(t, f->name, version, &v) : ERR_STORE;
    if (rc) {
        if (rc == ERR_NOTFOUND)
            finish_deploy(d, 404, "not_found", "function '%s' has no version %u", f->name, version);
        else
            finish_deploy(d, 500, "store_error", "cannot read version %u: %s", version,
                          err_str(rc));
        return;
    }
    /* The version as it was: its artifact (still stored: it is used) and
     * its configuration. */
    d->cfg = v.config;
    memcpy(d->sha, v.sha256, sizeof d->sha);
    d->artifact.max = v.size;
    d->rollback = version;
    d->rollback_created_ms = v.created_ms;
    load_version(d);
}

typedef struct sha_list {
    char (*sha)[HASH_HEX_LEN + 1];
    size_t n, cap;
} sha_list;

static int collect_sha(const reg_version *v, int64_t created, void *data)
{
    sha_list *l = data;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *p = realloc(l->sha, cap * sizeof *l->sha);
        if (!p) return ERR_NOMEM;
        l->sha = p;
        l->cap = cap;
    }
    memcpy(l->sha[l->n++], v->sha256, HASH_HEX_LEN + 1);
    return 0;
}

int functions_delete(functions *t, const char *name)
{
    fn *f = strmap_get(&t->byname, name, strlen(name));
    if (!f || !f->registered) return ERR_NOTFOUND;
    if (f->deploying) return ERR_BUSY;
    sha_list shas = {0};
    registry_each_version(t->reg, name, collect_sha, &shas);
    int rc = registry_delete_function(t->reg, name);
    if (rc != 0) {
        free(shas.sha);
        return rc;
    }
    for (size_t i = 0; i < shas.n; i++)
        if (registry_artifact_used(t->reg, shas.sha[i]) == 0)
            registry_artifact_remove(t->reg, shas.sha[i]);
    free(shas.sha);
    log_info("deleted fn=%s", name);
    retire_fn(t, f, 1);
    return 0;
}

registry *functions_registry(functions *t)
{
    return t->reg;
}

/* --- Invocations between nodes (cluster mode) ------------------------------------------ */

void functions_set_router(functions *t, fn_route_fn route, void *router)
{
    t->route = route;
    t->router = router;
}

int functions_route(functions *t, const fn *f, const char *request_id, const void *payload,
                    size_t len, uint32_t timeout_ms, fn_routed_cb cb, void *data)
{
    if (!t->route) return -1;
    return t->route(t->router, f->name, request_id, payload, len, timeout_ms, cb, data);
}

typedef struct routed_in {
    invocation inv;
    char request_id[64];
    fn_answer_cb answer;
    void *ctx;
} routed_in;

static void on_routed_done(invocation *inv, enum pool_outcome outcome, const char *body, size_t len,
                           void *data)
{
    routed_in *in = data;
    char msg[SPATE_ERROR_MESSAGE_MAX + 64];
    switch (outcome) {
    case POOL_OK:
        in->answer(in->ctx, 200, NULL, body, len);
        break;
    case POOL_FAILED:
        in->answer(in->ctx, 502, "function_error", body, len);
        break;
    case POOL_CRASHED: {
        int n = snprintf(msg, sizeof msg, "function crashed: %.*s", (int)(len > 2048 ? 2048 : len),
                         body);
        in->answer(in->ctx, 502, "function_crashed", msg, (size_t)n);
        break;
    }
    case POOL_TIMEOUT:
        in->answer(in->ctx, 504, "function_timeout", body, len);
        break;
    case POOL_OVERLOADED:
        in->answer(in->ctx, 0, "busy", "", 0);
        break;
    case POOL_UNAVAILABLE: {
        /* A node limit names itself (common/err.h); anything else is "unavailable". */
        const char *code = err_limit_code(err_limit(inv->limit_err));
        in->answer(in->ctx, 503, code ? code : "unavailable", body, len);
    } break;
    }
    free(in);
}

void functions_run_routed(functions *t, const char *name, const char *request_id,
                          const void *payload, size_t len, uint32_t timeout_ms, fn_answer_cb answer,
                          void *ctx)
{
    fn *f = functions_find(t, name, strlen(name));
    /* No room here: say so at once, the asker asks another. */
    routed_in *in = f && pool_has_room(f->pool) ? calloc(1, sizeof *in) : NULL;
    if (!in) {
        answer(ctx, 0, "busy", "", 0);
        return;
    }
    in->answer = answer;
    in->ctx = ctx;
    snprintf(in->request_id, sizeof in->request_id, "%s", request_id);
    in->inv = (invocation){
        .request_id = in->request_id,
        .payload = payload,
        .payload_len = (uint32_t)len,
        .attempt = 1,
        /* At most the asker's; the pool takes the shorter of it and the function's. */
        .timeout_limit_ms = timeout_ms,
        .done = on_routed_done,
        .data = in,
    };
    pool_invoke(f->pool, &in->inv);
}

/* --- For versions.c ---------------------------------------------------------------------- */

int functions__version_spec(functions *t, const char *name, uint32_t version, const char *sha,
                            const fn_config *c, pool_version_spec *spec, char *path, size_t pathcap)
{
    return version_spec(t, name, version, sha, c, spec, path, pathcap);
}

void functions__free_env(char **env)
{
    free_env_array(env);
}

void functions__maybe_closed(functions *t)
{
    maybe_closed(t);
}
