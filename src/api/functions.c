/*
 * functions.c - the /v1/functions routes but invoke and logs: deploy (PUT,
 * an artifact and its configuration), configuration changes (PATCH), the
 * list, a function's description, and delete (DELETE, with force=true its
 * triggers first).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/artifact.h"
#include "api/internal.h"
#include "api/json.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/names.h"

typedef struct deploy_params {
    fn_config cfg;
    int clear_env;
    int handler_given;
    char file[API_SOURCE_NAME_MAX + 1]; /* a managed runtime's lone source file */
    char why[256];
} deploy_params;

/* The first pass over a deploy's parameters: clear_env applies before any
 * env, wherever it stands in the query. */
static int on_clear_env_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    deploy_params *p = data;
    (void)klen;
    if (strcmp(k, "clear_env") != 0) return 0;
    return api_bool_param(k, v, vlen, &p->clear_env, p->why, sizeof p->why);
}

static int on_deploy_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    deploy_params *p = data;
    fn_config *c = &p->cfg;
    char *why = p->why;
    size_t cap = sizeof p->why;
    if (strcmp(k, "runtime") == 0) {
        int rt = fnconfig_runtime_parse(v, vlen);
        if (rt < 0) {
            snprintf(why, cap,
                     "unknown runtime '%.*s': parameter 'runtime' must be 'native', 'exec', "
                     "'python3' or 'nodejs'",
                     (int)(vlen > 32 ? 32 : vlen), v);
            return ERR_INVAL;
        }
        /* Another runtime takes the old one's handler along, unless this
         * request names one (fnconfig_check refuses it where it is wrong). */
        if ((enum fn_runtime)rt != c->runtime && !p->handler_given) c->handler[0] = '\0';
        c->runtime = (enum fn_runtime)rt;
        return 0;
    }
    if (strcmp(k, "handler") == 0) {
        p->handler_given = 1;
        return fnconfig_set_handler(c, v, vlen, why, cap);
    }
    if (strcmp(k, "file") == 0) {
        if (vlen > API_SOURCE_NAME_MAX || memchr(v, '\0', vlen)) {
            snprintf(why, cap, "parameter 'file' must be a file name of at most %d bytes",
                     API_SOURCE_NAME_MAX);
            return ERR_INVAL;
        }
        memcpy(p->file, v, vlen);
        p->file[vlen] = '\0';
        return 0;
    }
    if (strcmp(k, "min") == 0)
        return api_number_param(k, v, vlen, 0, SPATE_MAX_CEILING, &c->min_instances, why, cap);
    if (strcmp(k, "max") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_MAX_CEILING, &c->max_instances, why, cap);
    if (strcmp(k, "timeout") == 0 || strcmp(k, "timeout_ms") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_TIMEOUT_CEILING_MS, &c->timeout_ms, why, cap);
    if (strcmp(k, "memory") == 0 || strcmp(k, "memory_mb") == 0)
        return api_number_param(k, v, vlen, SPATE_MEMORY_FLOOR_MB, SPATE_MEMORY_CEILING_MB,
                                &c->memory_mb, why, cap);
    if (strcmp(k, "keep_alive") == 0 || strcmp(k, "keep-alive") == 0 ||
        strcmp(k, "keep_alive_ms") == 0)
        return api_number_param(k, v, vlen, 0, SPATE_KEEP_ALIVE_CEILING_MS, &c->keep_alive_ms, why,
                                cap);
    if (strcmp(k, "queue") == 0 || strcmp(k, "queue_max") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_WAIT_QUEUE_CEILING, &c->queue_max, why, cap);
    if (strcmp(k, "cpu") == 0 || strcmp(k, "cpu_millis") == 0) {
        /* 0 takes the limit away: a redeploy keeps the one set before, so
         * without it a CPU quota, once set, could never be lifted. */
        uint32_t millis;
        if (api_number_param(k, v, vlen, 0, SPATE_CPU_CEILING_MILLIS, &millis, why, cap) != 0 ||
            (millis != 0 && millis < SPATE_CPU_FLOOR_MILLIS)) {
            snprintf(why, cap, "parameter '%s' must be 0 (no limit) or an integer from %u to %u", k,
                     (unsigned)SPATE_CPU_FLOOR_MILLIS, (unsigned)SPATE_CPU_CEILING_MILLIS);
            return ERR_INVAL;
        }
        c->cpu_millis = millis;
        return 0;
    }
    if (strcmp(k, "tmp") == 0 || strcmp(k, "tmp_mb") == 0)
        return api_number_param(k, v, vlen, SPATE_TMP_FLOOR_MB, SPATE_TMP_CEILING_MB, &c->tmp_mb,
                                why, cap);
    if (strcmp(k, "network") == 0) return api_bool_param(k, v, vlen, &c->network, why, cap);
    if (strcmp(k, "prewarm") == 0) return api_bool_param(k, v, vlen, &c->prewarm, why, cap);
    if (strcmp(k, "on_success") == 0 || strcmp(k, "on_failure") == 0) {
        /* A destination of async invocations: a topic, or "" to remove it. */
        char *dest = k[3] == 's' ? c->on_success : c->on_failure;
        if (vlen && !name_is_topic(v, vlen)) {
            snprintf(why, cap, "parameter '%s' must be a topic name (or empty: none)", k);
            return ERR_INVAL;
        }
        memcpy(dest, v, vlen);
        dest[vlen] = '\0';
        return 0;
    }
    if (strcmp(k, "env") == 0) return fnconfig_add_env(c, v, vlen, why, cap);
    if (strcmp(k, "secret") == 0) return fnconfig_add_secret(c, v, vlen, why, cap);
    if (strcmp(k, "unset_env") == 0) {
        if (fnconfig_unset_env(c, v, vlen) == 0) return 0;
        snprintf(why, cap, "environment variable '%.*s' is not set (parameter 'unset_env')",
                 (int)(vlen > 64 ? 64 : vlen), v);
        return ERR_INVAL;
    }
    if (strcmp(k, "description") == 0) return fnconfig_set_description(c, v, vlen, why, cap);
    if (strcmp(k, "clear_env") == 0) return 0; /* the first pass took it */
    snprintf(why, cap, "unknown parameter '%.*s'", (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

static void on_deployed(const deploy_result *r, void *data)
{
    http_request *req = data;
    if (r->status >= 400) {
        http_respond_error(req, r->status, r->code, "%s", r->message);
        return;
    }
    cJSON *doc = api_json_function(r->f, NULL, 0, NULL, 1); /* an admin's */
    if (req->method == HTTP_PATCH) cJSON_AddBoolToObject(doc, "changed", 1);
    api_respond_json(req, r->status, doc);
}

/* The configuration a deploy or a configuration change asks for: the
 * parameters applied over f's active configuration (over the defaults for a
 * new function), so that what a request does not name stays as it was. On
 * error it has answered 400 and returns -1. */
/* A destination that is the function's own async topic would make every
 * settled invocation a new one, without end. */
static int check_destinations(const char *name, const fn_config *c, char *why, size_t cap)
{
    char own[SPATE_TOPIC_NAME_MAX + 1];
    api_async_topic(name, own, sizeof own);
    const char *dest = strcmp(c->on_success, own) == 0   ? "on_success"
                       : strcmp(c->on_failure, own) == 0 ? "on_failure"
                                                         : NULL;
    if (!dest) return 0;
    snprintf(why, cap,
             "parameter '%s' cannot be '%s', the function's own async invocations: each one "
             "would invoke it again",
             dest, own);
    return ERR_INVAL;
}

typedef struct batch_find {
    const char *name;
    const char *topic; /* the first trigger of name with batches over 1 */
    uint32_t size;
} batch_find;

static void find_batches(queue_sub *sub, void *data)
{
    batch_find *b = data;
    const queue_sub_config *cfg = queue_sub_get_config(sub);
    if (b->topic || cfg->batch_size <= 1 || strcmp(cfg->function, b->name) != 0) return;
    b->topic = queue_sub_topic(sub);
    b->size = cfg->batch_size;
}

/* A native function takes one message per invocation (spate_request): as a
 * trigger add or an event source mapping refuses a batch size over 1 for
 * one, a deploy that makes a function with such a trigger native is
 * refused (its batches' events went to spate_request as one message). */
static int check_batches(api *a, const char *name, const fn_config *c, char *why, size_t cap)
{
    if (c->runtime != RUNTIME_NATIVE || !a->q) return 0;
    batch_find b = {name, NULL, 0};
    queue_each_sub(a->q, find_batches, &b);
    if (!b.topic) return 0;
    snprintf(why, cap,
             "function '%s' has a trigger on '%s' with batch_size %u, and a native function "
             "takes one message per invocation: set its batch_size to 1 first",
             name, b.topic, b.size);
    return ERR_INVAL;
}

static int config_params(api *a, http_request *req, const char *name, const fn *f, deploy_params *p)
{
    p->why[0] = '\0';
    p->clear_env = 0;
    p->handler_given = 0;
    p->file[0] = '\0';
    int rc = 0;
    if (f)
        rc = fnconfig_copy(&p->cfg, &f->active.config);
    else
        fnconfig_defaults(&p->cfg);
    if (rc == 0) rc = http_query_parse(req->query, on_clear_env_param, p);
    if (rc == 0 && p->clear_env) fnconfig_free(&p->cfg);
    if (rc == 0) rc = http_query_parse(req->query, on_deploy_param, p);
    if (rc == 0) rc = fnconfig_check(&p->cfg, p->why, sizeof p->why);
    if (rc == 0) rc = check_destinations(name, &p->cfg, p->why, sizeof p->why);
    if (rc == 0) rc = check_batches(a, name, &p->cfg, p->why, sizeof p->why);
    if (rc == 0) return 0;
    fnconfig_free(&p->cfg);
    if (rc == ERR_NOMEM)
        http_respond_error(req, 503, "out_of_memory", "out of memory");
    else
        http_respond_error(req, 400, "bad_parameter", "%s",
                           p->why[0] ? p->why : "malformed query string");
    return -1;
}

static void deploy_fn(api *a, http_request *req, const route_match *m)
{
    char name[SPATE_NAME_MAX + 1];
    memcpy(name, m->name, m->name_len);
    name[m->name_len] = '\0';
    deploy_params p;
    if (config_params(a, req, name, functions_find(a->table, name, m->name_len), &p)) return;
    /* The runtime is the one asked for, or the active version's. */
    char why[400];
    int rc = api_artifact_prepare(&req->body, &p.cfg, p.file, why, sizeof why);
    if (rc != 0) {
        fnconfig_free(&p.cfg);
        if (rc == ERR_NOMEM)
            http_respond_error(req, 503, "out_of_memory", "out of memory");
        else
            http_respond_error(req, 400, "bad_artifact", "%s", why);
        return;
    }
    functions_deploy(a->table, name, &p.cfg, &req->body, on_deployed, req);
}

/* PATCH: a new version with the same artifact and the changed configuration;
 * a request that changes nothing makes no version and says so. */
static void configure_fn(api *a, http_request *req, const route_match *m)
{
    fn *f = functions_find(a->table, m->name, m->name_len);
    if (!f) {
        http_respond_error(req, 404, "not_found", "function '%.*s' does not exist",
                           (int)m->name_len, m->name);
        return;
    }
    if (req->body.len) {
        http_respond_error(req, 400, "bad_request",
                           "a configuration change takes no body (PUT deploys an artifact)");
        return;
    }
    deploy_params p;
    if (config_params(a, req, f->name, f, &p)) return;
    if (fnconfig_equal(&p.cfg, &f->active.config)) {
        fnconfig_free(&p.cfg);
        cJSON *doc = api_json_function(f, NULL, 0, NULL, 1); /* PATCH needs an admin */
        cJSON_AddBoolToObject(doc, "changed", 0);
        api_respond_json(req, 200, doc);
        return;
    }
    functions_reconfigure(a->table, f->name, &p.cfg, on_deployed, req);
}

static int put_function(fn *f, void *data)
{
    return api_page_put(data, api_json_function_summary(f), f->name);
}

static int walk_functions(api *a, api_page *pg, const char *after, uint32_t max, int *more)
{
    functions_page(a->table, after, max, put_function, pg, more);
    return 0;
}

static uint32_t count_functions(api *a)
{
    return functions_count(a->table);
}

static const api_page_source functions_pages = {"functions", walk_functions, count_functions};

typedef struct list_params {
    uint32_t limit;
    char after[SPATE_NAME_MAX + 1]; /* "" from the first */
    char why[200];
} list_params;

static int on_list_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    list_params *p = data;
    if (strcmp(k, "limit") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_FUNCTIONS_PAGE_MAX, &p->limit, p->why,
                                sizeof p->why);
    if (strcmp(k, "after") == 0) {
        if (vlen == 0) return 0; /* "after=": from the first */
        if (vlen > SPATE_NAME_MAX || !name_is_function(v, vlen)) {
            snprintf(p->why, sizeof p->why,
                     "parameter 'after' must be a function name (the 'next' of the page before)");
            return ERR_INVAL;
        }
        memcpy(p->after, v, vlen);
        p->after[vlen] = '\0';
        return 0;
    }
    snprintf(p->why, sizeof p->why, "unknown parameter '%.*s' (limit or after)",
             (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

/* GET /v1/functions?limit=N&after=NAME: a page of functions by name, with
 * "next" (the name to give as after for the next page, or null after the
 * last), "limit" and "total". A page costs its own functions, whatever the
 * number of others; a function deleted since the page before is no cursor
 * problem (the next page starts after its name all the same). */
void api_functions_list(api *a, http_request *req)
{
    list_params p = {.limit = SPATE_FUNCTIONS_PAGE_DEFAULT};
    if (http_query_parse(req->query, on_list_param, &p)) {
        http_respond_error(req, 400, "bad_parameter", "%s",
                           p.why[0] ? p.why : "malformed query string");
        return;
    }
    api_page_start(a, req, &functions_pages, p.limit, p.after[0] ? p.after : NULL);
}

static void describe_fn(api *a, http_request *req, fn *f)
{
    scale_view sv;
    triggers_scale_view(a->tr, f->name, &sv);
    api_respond_json(req, 200, api_json_function(f, a->table, 1, &sv, api_caller_is_admin(a, req)));
}

/* A delete that removes the function's triggers first (force=true). */
typedef struct delete_req {
    api *a;
    http_request *req;
    char name[SPATE_NAME_MAX + 1];
    int force;
    cJSON *triggers;   /* [{"topic", "function"}] that feed it */
    cJSON *removed;    /* of those, removed (force=true) */
    int user_triggers; /* of those, not its own async invocations' (which go unasked) */
    api_error_fn fail; /* NULL: the native API's error shape */
    char why[200];
} delete_req;

/* An error of a delete, in the shape of the API it came through. */
__attribute__((format(printf, 4, 5))) static void
delete_error(delete_req *d, int status, const char *code, const char *fmt, ...)
{
    char msg[1500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (d->fail)
        d->fail(d->req, status, code, msg);
    else
        http_respond_error(d->req, status, code, "%s", msg);
}

static int on_delete_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    delete_req *d = data;
    if (strcmp(k, "force") == 0)
        return api_bool_param(k, v, vlen, &d->force, d->why, sizeof d->why);
    snprintf(d->why, sizeof d->why, "unknown parameter '%.*s'", (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

static void find_triggers(queue_sub *sub, void *data)
{
    delete_req *d = data;
    if (strcmp(queue_sub_get_config(sub)->function, d->name) != 0) return;
    cJSON_AddItemToArray(d->triggers, api_trigger_ref(queue_sub_topic(sub), d->name));
    /* The trigger of its own async invocations goes with it, unasked. */
    char async[SPATE_TOPIC_NAME_MAX + 1];
    api_async_topic(d->name, async, sizeof async);
    if (strcmp(queue_sub_topic(sub), async) != 0) d->user_triggers++;
}

/* "'a', 'b'" of the triggers' topics, cut short to fit. */
static void topic_list(const cJSON *refs, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    const cJSON *t;
    cJSON_ArrayForEach(t, refs)
    {
        const cJSON *topic = cJSON_GetObjectItemCaseSensitive(t, "topic");
        int w = snprintf(out + n, cap - n, "%s'%s'", n ? ", " : "", topic->valuestring);
        if (w < 0 || (size_t)w >= cap - n) {
            snprintf(out + (n > cap - 8 ? cap - 8 : n), 8, ", ...");
            return;
        }
        n += (size_t)w;
    }
}

static void delete_free(delete_req *d)
{
    cJSON_Delete(d->triggers);
    cJSON_Delete(d->removed);
    free(d);
}

/* The answer to a delete, once its async invocations are gone too. */
static void delete_answer(delete_req *d)
{
    http_request *req = d->req;
    if (!d->force) {
        http_respond(req, 204, NULL, NULL, NULL, 0);
        return delete_free(d);
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "deleted", d->name);
    cJSON_AddItemToObject(doc, "triggers_removed", d->removed);
    d->removed = NULL;
    api_respond_json(req, 200, doc);
    delete_free(d);
}

static void on_async_deleted(void *data, int status, uint64_t count)
{
    delete_req *d = data;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    api_async_topic(d->name, topic, sizeof topic);
    if (status && status != ERR_NOTFOUND)
        log_warn("cannot delete the async invocations of deleted function %s: %s topic=%s", d->name,
                 err_str(status), topic);
    else if (count)
        log_info("deleted %" PRIu64 " async invocations not run of deleted function %s", count,
                 d->name);
    delete_answer(d);
}

/* The function goes (its triggers, if any, are gone already), and so do its
 * async invocations not run yet, as in Lambda: else a function deployed
 * later under the name would run them at its first async invocation. */
static void delete_now(delete_req *d)
{
    api *a = d->a;
    const char *name = d->name;
    int rc = functions_delete(a->table, name);
    if (rc == ERR_NOTFOUND)
        delete_error(d, 404, "not_found", "function '%s' does not exist", name);
    else if (rc == ERR_BUSY)
        delete_error(d, 409, "deploy_in_progress",
                     "a deploy of '%s' is in progress; delete it after", name);
    else if (rc != 0)
        delete_error(d, 500, "store_error", "cannot delete '%s': %s", name, err_str(rc));
    if (rc != 0) return delete_free(d);
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    api_async_topic(name, topic, sizeof topic);
    rc = queue_topic_delete(a->q, topic, on_async_deleted, d);
    if (rc) on_async_deleted(d, rc, 0);
}

static void on_untriggered(void *data, cJSON *removed, const char *err)
{
    delete_req *d = data;
    d->removed = removed;
    if (!err) return delete_now(d);
    char done[400];
    topic_list(removed, done, sizeof done);
    delete_error(d, 503, "store_unavailable",
                 "%s; function '%s' was not deleted (triggers removed: %s)", err, d->name,
                 done[0] ? done : "none");
    delete_free(d);
}

/* Allocates a delete of name (a valid function name) for req; NULL after
 * answering 503. */
static delete_req *delete_new(api *a, http_request *req, const char *name, api_error_fn fail)
{
    delete_req *d = calloc(1, sizeof *d);
    if (d) d->triggers = cJSON_CreateArray();
    if (!d || !d->triggers) {
        if (d) delete_free(d);
        if (fail)
            fail(req, 503, "out_of_memory", "out of memory");
        else
            http_respond_error(req, 503, "out_of_memory", "out of memory");
        return NULL;
    }
    d->a = a;
    d->req = req;
    d->fail = fail;
    snprintf(d->name, sizeof d->name, "%s", name);
    return d;
}

/* A function with triggers is deleted only with force=true, which removes
 * them first: else its topics would keep feeding a function that is gone. */
static void delete_start(delete_req *d)
{
    api *a = d->a;
    http_request *req = d->req;
    fn *f = functions_find(a->table, d->name, strlen(d->name));
    queue_each_sub(a->q, find_triggers, d);
    if (!f || f->deploying || cJSON_GetArraySize(d->triggers) == 0) return delete_now(d);
    if (!d->force && d->user_triggers) {
        char list[1200];
        topic_list(d->triggers, list, sizeof list);
        char msg[1500];
        snprintf(msg, sizeof msg,
                 "function '%s' has triggers from %s: remove them first (spate trigger rm), or "
                 "delete with force=true (spate rm --force), which removes them too",
                 d->name, list);
        if (d->fail) {
            d->fail(req, 409, "has_triggers", msg);
            return delete_free(d);
        }
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "error", msg);
        cJSON_AddStringToObject(doc, "code", "has_triggers");
        cJSON_AddItemToObject(doc, "triggers", d->triggers);
        d->triggers = NULL;
        api_respond_json(req, 409, doc);
        return delete_free(d);
    }
    cJSON *refs = d->triggers;
    d->triggers = NULL;
    api_remove_triggers(a, refs, on_untriggered, d);
}

static void delete_fn(api *a, http_request *req, const route_match *m)
{
    char name[SPATE_NAME_MAX + 1];
    snprintf(name, sizeof name, "%.*s", (int)m->name_len, m->name);
    delete_req *d = delete_new(a, req, name, NULL);
    if (!d) return;
    if (http_query_parse(req->query, on_delete_param, d)) {
        http_respond_error(req, 400, "bad_parameter", "%s",
                           d->why[0] ? d->why : "malformed query string");
        return delete_free(d);
    }
    delete_start(d);
}

void api_function_delete(api *a, http_request *req, const char *name, int force, api_error_fn fail)
{
    delete_req *d = delete_new(a, req, name, fail);
    if (!d) return;
    d->force = force;
    delete_start(d);
}

/* PUT deploys, PATCH changes the configuration, DELETE deletes, GET shows. */
void api_function(api *a, http_request *req, const route_match *m)
{
    int get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    if (req->method == HTTP_PUT) {
        deploy_fn(a, req, m);
    } else if (req->method == HTTP_PATCH) {
        configure_fn(a, req, m);
    } else if (req->method == HTTP_DELETE) {
        delete_fn(a, req, m);
    } else if (get) {
        fn *f = functions_find(a->table, m->name, m->name_len);
        if (!f)
            http_respond_error(req, 404, "not_found", "function '%.*s' does not exist",
                               (int)m->name_len, m->name);
        else
            describe_fn(a, req, f);
    } else {
        api_method_not_allowed(req, "GET, HEAD, PUT, PATCH, DELETE");
    }
}
