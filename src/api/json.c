#include "api/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/fnconfig_json.h"
#include "common/limits.h"

cJSON *api_json_config_shown(const fn_config *c, int env_values)
{
    return fnconfig_json(c, env_values, 0);
}

static void add_instances(cJSON *o, const pool_stats *s)
{
    cJSON *i = cJSON_AddObjectToObject(o, "instances");
    cJSON_AddNumberToObject(i, "starting", s->starting);
    cJSON_AddNumberToObject(i, "idle", s->idle);
    cJSON_AddNumberToObject(i, "busy", s->busy);
    cJSON_AddNumberToObject(i, "stopping", s->stopping);
    cJSON_AddNumberToObject(i, "spare", s->spare);
    cJSON_AddNumberToObject(o, "waiting", s->waiting);
}

cJSON *api_json_function_summary(const fn *f)
{
    pool_stats s;
    pool_stats_get(f->pool, &s);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", f->name);
    cJSON_AddNumberToObject(o, "version", f->active.version);
    cJSON_AddStringToObject(o, "runtime", fnconfig_runtime_name(f->active.config.runtime));
    add_instances(o, &s);
    return o;
}

typedef struct versions_out {
    cJSON *arr;
    int env_values;
} versions_out;

static int add_version(const reg_version *v, int64_t created, void *data)
{
    versions_out *out = data;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "version", v->version);
    cJSON_AddStringToObject(o, "sha256", v->sha256);
    cJSON_AddNumberToObject(o, "size", (double)v->size);
    cJSON_AddNumberToObject(o, "created_ms", (double)v->created_ms);
    cJSON_AddItemToObject(o, "config", api_json_config_shown(&v->config, out->env_values));
    cJSON_AddItemToArray(out->arr, o);
    return 0;
}

static void add_scaling(cJSON *o, const pool_stats *ps, const scale_view *sv)
{
    cJSON *sc = cJSON_AddObjectToObject(o, "scaling");
    cJSON_AddNumberToObject(sc, "service_ms", ps->service_us / 1000.0);
    cJSON_AddNumberToObject(sc, "cold_start_ms", ps->cold_us / 1000.0);
    cJSON_AddNumberToObject(sc, "mailbox", ps->mailbox);
    cJSON_AddNumberToObject(sc, "starting_max", ps->starting_max);
    if (!sv || !sv->has_triggers) {
        /* The pool's own sizing of its direct invocations. */
        cJSON_AddNumberToObject(sc, "desired_instances", ps->desired);
        return;
    }
    cJSON_AddNumberToObject(sc, "arrival_per_s", sv->arrival_per_s);
    cJSON_AddNumberToObject(sc, "backlog", (double)sv->backlog);
    cJSON_AddNumberToObject(sc, "oldest_age_s", sv->oldest_age_s);
    cJSON_AddNumberToObject(sc, "desired_instances", sv->desired);
    if (isfinite(sv->eta_s))
        cJSON_AddNumberToObject(sc, "drain_eta_s", sv->eta_s);
    else
        cJSON_AddNullToObject(sc, "drain_eta_s");
    /* null for two reasons: arrivals outpace the instances (never), or no
     * invocation has finished yet, so the handler time is not known. */
    cJSON_AddBoolToObject(sc, "drain_eta_known", isfinite(sv->eta_s) || sv->service_ms > 0);
    if (sv->deadline_s > 0) {
        cJSON_AddNumberToObject(sc, "deadline_s", sv->deadline_s);
        cJSON_AddNumberToObject(sc, "time_left_s", sv->time_left_s);
    }
    cJSON_AddBoolToObject(sc, "deadline_at_risk", sv->at_risk);
}

/* A version other than the active one that runs now (invoked by number or
 * alias): its instances and zygote. */
static void add_side(uint32_t version, pool *p, void *data)
{
    pool_stats s;
    pool_stats_get(p, &s);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "version", version);
    add_instances(o, &s);
    if (s.zygote_pid) cJSON_AddNumberToObject(o, "zygote_pid", s.zygote_pid);
    cJSON_AddItemToArray(data, o);
}

/* The newest invocations of f over its active pool and its side pools,
 * newest first: the console's "recent". */
typedef struct recent_set {
    pool_recent_entry e[SPATE_RECENT_INVOCATIONS * 2];
    size_t n;
} recent_set;

/* Keeps the SPATE_RECENT_INVOCATIONS newest of set and p's. */
static void gather_recent(recent_set *set, pool *p)
{
    set->n += pool_recent_get(p, set->e + set->n, SPATE_RECENT_INVOCATIONS);
    /* Insertion sort by time, newest first: at most 40 entries. */
    for (size_t i = 1; i < set->n; i++) {
        pool_recent_entry t = set->e[i];
        size_t j = i;
        while (j > 0 && set->e[j - 1].time_ms < t.time_ms) {
            set->e[j] = set->e[j - 1];
            j--;
        }
        set->e[j] = t;
    }
    if (set->n > SPATE_RECENT_INVOCATIONS) set->n = SPATE_RECENT_INVOCATIONS;
}

static void gather_side(uint32_t version, pool *p, void *data)
{
    (void)version;
    gather_recent(data, p);
}

/* Errors are the function's words and may quote what it was given: like
 * env values, only an admin reads them (the logs need admin too). */
static void add_recent(cJSON *o, const fn *f, int errors)
{
    recent_set *set = malloc(sizeof *set);
    cJSON *arr = cJSON_AddArrayToObject(o, "recent");
    if (!set) return;
    set->n = 0;
    gather_recent(set, f->pool);
    functions_each_side(f, gather_side, set);
    for (size_t i = 0; i < set->n; i++) {
        const pool_recent_entry *e = &set->e[i];
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "time_ms", (double)e->time_ms);
        cJSON_AddStringToObject(r, "request_id", e->request_id);
        cJSON_AddNumberToObject(r, "version", e->version);
        cJSON_AddStringToObject(r, "outcome", pool_outcome_name(e->outcome));
        cJSON_AddNumberToObject(r, "duration_ms", e->duration_us / 1000.0);
        if (e->error[0] && errors) cJSON_AddStringToObject(r, "error", e->error);
        cJSON_AddItemToArray(arr, r);
    }
    free(set);
}

cJSON *api_json_function(const fn *f, functions *table, int with_versions, const scale_view *sv,
                         int env_values)
{
    pool_stats s;
    pool_stats_get(f->pool, &s);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", f->name);
    cJSON_AddNumberToObject(o, "version", f->active.version);
    cJSON_AddStringToObject(o, "sha256", f->active.sha256);
    cJSON_AddNumberToObject(o, "size", (double)f->active.size);
    cJSON_AddNumberToObject(o, "created_ms", (double)f->created_ms);
    cJSON_AddNumberToObject(o, "updated_ms", (double)f->active.created_ms);
    cJSON_AddItemToObject(o, "config", api_json_config_shown(&f->active.config, env_values));
    add_instances(o, &s);
    cJSON *st = cJSON_AddObjectToObject(o, "stats");
    cJSON_AddNumberToObject(st, "invocations", (double)s.invocations);
    cJSON_AddNumberToObject(st, "errors", (double)s.errors);
    cJSON_AddNumberToObject(st, "timeouts", (double)s.timeouts);
    cJSON_AddNumberToObject(st, "crashes", (double)s.crashes);
    cJSON_AddNumberToObject(st, "rejected", (double)s.rejected);
    cJSON_AddNumberToObject(st, "cold_starts", (double)s.cold_starts);
    cJSON_AddNumberToObject(st, "last_cold_start_us", (double)s.last_cold_start_us);
    cJSON_AddNumberToObject(st, "spares_started", (double)s.spares_started);
    cJSON_AddNumberToObject(st, "spare_handovers", (double)s.spare_handovers);
    cJSON_AddNumberToObject(st, "instance_seconds", s.instance_seconds);
    cJSON_AddNumberToObject(st, "spare_instance_seconds", s.spare_seconds);
    add_scaling(o, &s, sv);
    if (s.zygote_pid) cJSON_AddNumberToObject(o, "zygote_pid", s.zygote_pid);
    if (s.load_error) cJSON_AddStringToObject(o, "load_error", s.load_error);
    cJSON *sides = cJSON_AddArrayToObject(o, "running_versions");
    functions_each_side(f, add_side, sides);
    if (with_versions && table) {
        versions_out out = {cJSON_AddArrayToObject(o, "versions"), env_values};
        functions_versions(table, f, add_version, &out);
        cJSON *al = cJSON_AddArrayToObject(o, "aliases");
        for (size_t i = 0; i < f->naliases; i++)
            cJSON_AddItemToArray(al, api_json_alias(&f->aliases[i]));
        add_recent(o, f, env_values);
    }
    return o;
}

cJSON *api_json_alias(const reg_alias *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", a->name);
    cJSON_AddStringToObject(o, "function", a->function);
    cJSON_AddNumberToObject(o, "version", a->version);
    if (a->weight_version) {
        cJSON_AddNumberToObject(o, "weight_version", a->weight_version);
        cJSON_AddNumberToObject(o, "weight_percent", a->weight_percent);
    }
    cJSON_AddNumberToObject(o, "created_ms", (double)a->created_ms);
    cJSON_AddNumberToObject(o, "updated_ms", (double)a->updated_ms);
    return o;
}

cJSON *api_json_object_body(http_request *req, const api_body_rules *rules)
{
    cJSON *doc = req->body.len ? cJSON_ParseWithLength(req->body.data, req->body.len) : NULL;
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        http_respond_error(req, 400, rules->code, "%s", rules->usage);
        return NULL;
    }
    if (api_json_has_nul(req->body.data, req->body.len)) {
        cJSON_Delete(doc);
        http_respond_error(req, 400, rules->nul_code, "%s", rules->nul_message);
        return NULL;
    }
    return doc;
}
