/*
 * versions.c - invoking a function's versions other than the active one
 * (each in a side pool of its own, started on demand and stopped when
 * idle), and its aliases (functions.h says what they are).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/names.h"
#include "sched/functions_internal.h"

/* How often idle side pools are looked for (ms): a version stops at most
 * this long after its keep-alive ended. */
#define SWEEP_MS 1000

typedef struct side_pool {
    list_node link; /* in fn.sides, then in functions.stopping_sides */
    functions *t;
    char name[SPATE_NAME_MAX + 1];
    uint32_t version;
    pool *pool;
    uint64_t last_ms;       /* loop ms: the latest invocation given to it */
    uint32_t keep_alive_ms; /* of its version */
} side_pool;

/* --- Side pools ------------------------------------------------------------------------- */

static void on_side_closed(void *data)
{
    side_pool *sp = data;
    functions *t = sp->t;
    list_remove(&sp->link);
    free(sp);
    t->pools_open--;
    functions__maybe_closed(t);
}

/* Nothing routes to sp any more: it drains (or not) and stops. What it
 * counted stays with f (its invocations have ended when the sweep closes
 * it; when f goes, so do its counts). */
static void close_side(fn *f, side_pool *sp, int drain)
{
    const pool_version_outcomes *m = pool_metrics_get(sp->pool)->by_version;
    for (size_t i = 0; i < POOL_METRIC_VERSIONS; i++) {
        if (!m[i].version) continue;
        uint64_t *to = pool_version_slot(f->ended, m[i].version);
        for (int o = 0; o < POOL_OUTCOMES; o++) to[o] += m[i].outcomes[o];
    }
    list_remove(&sp->link);
    list_push_back(&sp->t->stopping_sides, &sp->link);
    pool_close(sp->pool, drain, on_side_closed, sp);
}

void functions__close_sides(functions *t, fn *f, int drain)
{
    (void)t;
    while (!list_empty(&f->sides))
        close_side(f, list_entry(list_first(&f->sides), side_pool, link), drain);
}

static side_pool *find_side(const fn *f, uint32_t version)
{
    for (list_node *n = list_first(&f->sides); n != &f->sides; n = n->next) {
        side_pool *sp = list_entry(n, side_pool, link);
        if (sp->version == version) return sp;
    }
    return NULL;
}

typedef struct sweep_ctx {
    uint64_t now;
} sweep_ctx;

static void sweep_fn(fn *f, void *data)
{
    sweep_ctx *c = data;
    list_node *n = list_first(&f->sides);
    while (n != &f->sides) {
        side_pool *sp = list_entry(n, side_pool, link);
        n = n->next;
        pool_stats st;
        pool_stats_get(sp->pool, &st);
        /* An invocation may outlast the keep-alive: never cut one short. */
        if (st.busy || st.waiting || st.starting) continue;
        if (c->now - sp->last_ms < sp->keep_alive_ms) continue;
        log_info("stopping fn=%s version=%u (not active, not invoked for its keep-alive)", sp->name,
                 sp->version);
        close_side(f, sp, 1);
    }
}

static void on_sweep(uv_timer_t *h)
{
    functions *t = h->data;
    sweep_ctx c = {.now = uv_now(t->loop)};
    functions_each(t, sweep_fn, &c);
}

static void on_sweep_closed(uv_handle_t *h)
{
    functions *t = h->data;
    t->pools_open--;
    functions__maybe_closed(t);
}

static int add_alias(fn *f, const reg_alias *a);

/* Fills the cache of aliases of f (NULL: of every function). */
typedef struct alias_load {
    functions *t;
    fn *f;
    int rc;
} alias_load;

static void load_alias(const reg_alias *a, void *data)
{
    alias_load *l = data;
    fn *f = l->f ? l->f : functions_find(l->t, a->function, strlen(a->function));
    if (f && add_alias(f, a) != 0) l->rc = ERR_NOMEM;
}

void functions__versions_open(functions *t)
{
    if (getrandom(&t->rng, sizeof t->rng, 0) != sizeof t->rng || !t->rng)
        t->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)clock_mono_ns();
    uv_timer_init(t->loop, &t->sweep);
    t->sweep.data = t;
    uv_timer_start(&t->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&t->sweep);
    t->pools_open++;
    alias_load l = {.t = t};
    int rc = registry_each_alias(t->reg, NULL, load_alias, &l);
    if (rc == 0) rc = l.rc;
    if (rc != 0 && rc != ERR_NOTSUP)
        log_error("cannot read the aliases from the store: %s", err_str(rc));
}

void functions__versions_close(functions *t, int drain)
{
    if (!uv_is_closing((uv_handle_t *)&t->sweep))
        uv_close((uv_handle_t *)&t->sweep, on_sweep_closed);
    if (drain) return;
    /* Hurry those already stopping; one may finish inside pool_close. */
    list_node *n = list_first(&t->stopping_sides);
    while (n != &t->stopping_sides) {
        side_pool *sp = list_entry(n, side_pool, link);
        n = n->next;
        pool_close(sp->pool, 0, NULL, NULL);
    }
}

/* --- Finding a version ----------------------------------------------------------------- */

typedef struct version_find {
    uint32_t version;
    int found;
    reg_version v; /* its config copied when found */
} version_find;

static int match_version(const reg_version *v, int64_t created_ms, void *data)
{
    (void)created_ms;
    version_find *vf = data;
    if (v->version != vf->version) return 0;
    vf->v = *v;
    memset(&vf->v.config, 0, sizeof vf->v.config);
    vf->found = fnconfig_copy(&vf->v.config, &v->config) == 0 ? 1 : -1;
    return 1;
}

int functions__read_version(functions *t, const char *name, uint32_t version, reg_version *v)
{
    version_find vf = {.version = version};
    int rc = registry_each_version(t->reg, name, match_version, &vf);
    if (rc) return rc;
    if (vf.found < 0) return ERR_NOMEM;
    if (!vf.found) return ERR_NOTFOUND;
    *v = vf.v;
    return 0;
}

static int version_exists(functions *t, fn *f, uint32_t version)
{
    if (version == f->active.version || find_side(f, version)) return 0;
    reg_version v;
    int rc = functions__read_version(t, f->name, version, &v);
    if (rc == 0) fnconfig_free(&v.config);
    return rc;
}

static int start_side(functions *t, fn *f, uint32_t version, side_pool **out)
{
    size_t n = 0;
    for (list_node *l = list_first(&f->sides); l != &f->sides; l = l->next) n++;
    if (n >= SPATE_SIDE_POOLS_MAX) return ERR_BUSY;
    reg_version v;
    int rc = functions__read_version(t, f->name, version, &v);
    if (rc) return rc;
    side_pool *sp = calloc(1, sizeof *sp);
    pool_version_spec spec;
    char path[4096];
    rc = sp ? functions__version_spec(t, f->name, version, v.sha256, &v.config, &spec, path,
                                      sizeof path)
            : ERR_NOMEM;
    if (rc == 0) {
        /* No warm instances for a version only invoked now and then. */
        spec.config.min_instances = 0;
        sp->pool = pool_create(t->loop, f->name, t->runner_path);
        if (sp->pool) pool_set_group(sp->pool, f->pool);
        rc = sp->pool ? pool_restore_version(sp->pool, &spec) : ERR_NOMEM;
        functions__free_env(spec.env);
        if (rc && sp->pool) pool_close(sp->pool, 0, NULL, NULL);
    }
    if (rc) {
        free(sp);
        fnconfig_free(&v.config);
        return rc;
    }
    sp->t = t;
    sp->version = version;
    sp->keep_alive_ms = v.config.keep_alive_ms;
    snprintf(sp->name, sizeof sp->name, "%s", f->name);
    fnconfig_free(&v.config);
    list_push_back(&f->sides, &sp->link);
    t->pools_open++;
    log_info("starting fn=%s version=%u (not the active one: in a pool of its own)", f->name,
             version);
    *out = sp;
    return 0;
}

void functions_invoke(functions *t, fn *f, uint32_t version, invocation *inv, pool **used)
{
    inv->version = version ? version : f->active.version;
    pool *p = f->pool;
    int rc = 0;
    if (inv->version != f->active.version) {
        side_pool *sp = find_side(f, inv->version);
        if (!sp && !t->closing) rc = start_side(t, f, inv->version, &sp);
        if (!sp && !rc) rc = ERR_CLOSED;
        if (!rc) {
            sp->last_ms = uv_now(t->loop);
            p = sp->pool;
        }
    }
    if (rc) {
        char msg[160];
        *used = NULL;
        if (rc == ERR_BUSY) {
            snprintf(msg, sizeof msg,
                     "%d versions of this function other than the active one run already; "
                     "version %u waits until one has been idle for its keep-alive",
                     SPATE_SIDE_POOLS_MAX, inv->version);
            inv->done(inv, POOL_OVERLOADED, msg, strlen(msg), inv->data);
        } else {
            snprintf(msg, sizeof msg, "cannot run version %u: %s", inv->version, err_str(rc));
            inv->done(inv, POOL_UNAVAILABLE, msg, strlen(msg), inv->data);
        }
        return;
    }
    *used = p;
    pool_invoke(p, inv);
}

void functions_each_side(const fn *f, void (*cb)(uint32_t version, pool *p, void *data), void *data)
{
    for (list_node *n = list_first(&f->sides); n != &f->sides; n = n->next) {
        side_pool *sp = list_entry(n, side_pool, link);
        cb(sp->version, sp->pool, data);
    }
}

void functions_each_outcomes(const fn *f,
                             void (*cb)(const pool_version_outcomes *table, void *data), void *data)
{
    cb(pool_metrics_get(f->pool)->by_version, data);
    for (list_node *n = list_first(&f->sides); n != &f->sides; n = n->next)
        cb(pool_metrics_get(list_entry(n, side_pool, link)->pool)->by_version, data);
    cb(f->ended, data);
}

/* --- Qualifiers ------------------------------------------------------------------------ */

/* xorshift64*: weights need spread, not secrecy. */
static uint32_t next_percent(functions *t)
{
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    return (uint32_t)((t->rng * 2685821657736338717ull >> 32) % 100);
}

int functions_resolve(functions *t, const char *name, const char *qualifier, fn **f,
                      uint32_t *version)
{
    *f = functions_find(t, name, strlen(name));
    if (!*f) return ERR_NOTFOUND;
    size_t len = qualifier ? strlen(qualifier) : 0;
    if (len == 0 || strcmp(qualifier, "$LATEST") == 0) {
        *version = (*f)->active.version;
        return 0;
    }
    if (strspn(qualifier, "0123456789") == len) {
        if (len > 9 || qualifier[0] == '0') return ERR_INVAL; /* no 0, no leading zeros */
        *version = (uint32_t)strtoul(qualifier, NULL, 10);
        return version_exists(t, *f, *version);
    }
    if (!name_is_alias(qualifier, len)) return ERR_INVAL;
    const reg_alias *a = functions_alias_find(*f, qualifier, len);
    if (!a) return ERR_NOTFOUND;
    *version = a->version;
    if (a->weight_version && next_percent(t) < a->weight_percent) *version = a->weight_version;
    return 0;
}

/* --- Aliases ----------------------------------------------------------------------------- */

/* Adds a to f's cache (the registry's order: by name). */
static int add_alias(fn *f, const reg_alias *a)
{
    reg_alias *v = realloc(f->aliases, (f->naliases + 1) * sizeof *v);
    if (!v) return ERR_NOMEM;
    f->aliases = v;
    f->aliases[f->naliases++] = *a;
    return 0;
}

int functions__load_aliases(functions *t, fn *f)
{
    free(f->aliases);
    f->aliases = NULL;
    f->naliases = 0;
    alias_load l = {.t = t, .f = f};
    int rc = registry_each_alias(t->reg, f->name, load_alias, &l);
    return rc ? rc : l.rc;
}

const reg_alias *functions_alias_find(const fn *f, const char *name, size_t len)
{
    for (size_t i = 0; i < f->naliases; i++)
        if (strlen(f->aliases[i].name) == len && memcmp(f->aliases[i].name, name, len) == 0)
            return &f->aliases[i];
    return NULL;
}

int functions_alias_set(functions *t, fn *f, const reg_alias *a, char *why, size_t cap)
{
    const reg_alias *old = functions_alias_find(f, a->name, strlen(a->name));
    if (!old && f->naliases >= SPATE_ALIASES_PER_FUNCTION) {
        snprintf(why, cap, "function '%s' has %d aliases already (the most it may have)", f->name,
                 SPATE_ALIASES_PER_FUNCTION);
        return ERR_TOOBIG;
    }
    if (a->weight_version) {
        if (a->weight_version == a->version) {
            snprintf(why, cap, "the weighted version must differ from the alias's version (%u)",
                     a->version);
            return ERR_INVAL;
        }
        if (a->weight_percent < 1 || a->weight_percent > 99) {
            snprintf(why, cap, "weight %u%% is out of range: use 1 to 99", a->weight_percent);
            return ERR_INVAL;
        }
    }
    uint32_t check[2] = {a->version, a->weight_version};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && !check[i]) break;
        int rc = check[i] ? version_exists(t, f, check[i]) : ERR_NOTFOUND;
        if (rc == ERR_NOTFOUND) {
            snprintf(why, cap, "function '%s' has no version %u", f->name, check[i]);
            return ERR_INVAL;
        }
        if (rc) return rc;
    }
    reg_alias v = *a;
    snprintf(v.function, sizeof v.function, "%s", f->name);
    v.updated_ms = clock_now_ms();
    v.created_ms = old ? old->created_ms : v.updated_ms;
    if (!v.weight_version) v.weight_percent = 0;
    int rc = registry_alias_put(t->reg, &v);
    if (rc) return rc;
    log_info("alias fn=%s alias=%s version=%u weight_version=%u weight=%u%%", f->name, v.name,
             v.version, v.weight_version, v.weight_percent);
    return functions__load_aliases(t, f);
}

void functions_aliases_reload(functions *t, const char *name)
{
    fn *f = functions_find(t, name, strlen(name));
    int rc = f ? functions__load_aliases(t, f) : 0;
    if (rc) log_error("cannot read the aliases of fn=%s: %s", name, err_str(rc));
}

int functions_alias_remove(functions *t, fn *f, const char *name)
{
    int rc = registry_alias_remove(t->reg, f->name, name);
    if (rc) return rc;
    log_info("alias removed fn=%s alias=%s", f->name, name);
    return functions__load_aliases(t, f);
}
