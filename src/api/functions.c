#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/artifact.h"
#include "api/json.h"
#include "common/err.h"
#include "common/fmt.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/names.h"
#include "common/parse.h"
#include "common/reqid.h"

#define PREFIX "/v1/functions"
#define PREFIX_LEN (sizeof PREFIX - 1)

/* --- Routing ----------------------------------------------------------------------- */

/* /v1/topics/TOPIC[/messages|/redrive] and /v1/triggers/TOPIC/FUNCTION. */
static int match_topics(const char *path, route_match *m)
{
    if (strcmp(path, "/v1/topics") == 0 || strcmp(path, "/v1/topics/") == 0) {
        m->route = R_TOPICS;
    } else if (strncmp(path, "/v1/topics/", 11) == 0) {
        m->name = path + 11;
        const char *slash = strchr(m->name, '/');
        m->name_len = slash ? (size_t)(slash - m->name) : strlen(m->name);
        if (!slash)
            m->route = R_TOPIC;
        else if (strcmp(slash, "/messages") == 0)
            m->route = R_TOPIC_MESSAGES;
        else if (strcmp(slash, "/redrive") == 0)
            m->route = R_TOPIC_REDRIVE;
        else if (strcmp(slash, "/purge") == 0)
            m->route = R_TOPIC_PURGE;
    } else if (strcmp(path, "/v1/triggers") == 0 || strcmp(path, "/v1/triggers/") == 0) {
        m->route = R_TRIGGERS;
    } else if (strncmp(path, "/v1/triggers/", 13) == 0) {
        m->name = path + 13;
        const char *slash = strchr(m->name, '/');
        if (slash && !strchr(slash + 1, '/')) {
            m->name_len = (size_t)(slash - m->name);
            m->name2 = slash + 1;
            m->name2_len = strlen(m->name2);
            m->route = R_TRIGGER;
        }
    } else {
        return 0;
    }
    return 1;
}

static route_match match(const char *path)
{
    route_match m = {R_NONE, NULL, 0, NULL, 0};
    if (match_topics(path, &m)) return m;
    if (strcmp(path, "/v1/health") == 0) {
        m.route = R_HEALTH;
    } else if (strcmp(path, "/metrics") == 0) {
        m.route = R_METRICS;
    } else if (strcmp(path, "/v1/nodes") == 0) {
        m.route = R_NODES;
    } else if (strncmp(path, "/ui", 3) == 0 && (path[3] == '\0' || path[3] == '/')) {
        m.route = R_UI;
    } else if (strncmp(path, PREFIX, PREFIX_LEN) == 0) {
        const char *rest = path + PREFIX_LEN;
        if (*rest == '\0' || strcmp(rest, "/") == 0) {
            m.route = R_FUNCTIONS;
        } else if (*rest == '/') {
            m.name = rest + 1;
            const char *slash = strchr(m.name, '/');
            m.name_len = slash ? (size_t)(slash - m.name) : strlen(m.name);
            if (!slash)
                m.route = R_FUNCTION;
            else if (strcmp(slash, "/invoke") == 0)
                m.route = R_FUNCTION_INVOKE;
            else if (strcmp(slash, "/logs") == 0)
                m.route = R_FUNCTION_LOGS;
        }
    }
    return m;
}

/* The scope a request needs: none for health; admin to change functions and
 * triggers, redrive, or read message payloads; invoke to invoke; publish to
 * publish; any token to read. */
static unsigned needed_scope(const route_match *m, enum http_method method)
{
    int read = method == HTTP_GET || method == HTTP_HEAD;
    switch (m->route) {
    case R_HEALTH:
    case R_UI: /* the page's files hold no data; it asks for a token to read any */
        return 0;
    case R_FUNCTION_INVOKE:
        return method == HTTP_POST ? SCOPE_INVOKE : SCOPE_ANY;
    case R_TOPIC_MESSAGES:
        return method == HTTP_POST ? SCOPE_PUBLISH : SCOPE_ADMIN;
    case R_FUNCTION:
    case R_TRIGGER:
    case R_TOPIC: /* DELETE and PUT (retention) change it */
        return read ? SCOPE_ANY : SCOPE_ADMIN;
    case R_TOPIC_REDRIVE:
    case R_TOPIC_PURGE:
    case R_FUNCTION_LOGS: /* what functions print may be as private as payloads */
        return SCOPE_ADMIN;
    default:
        return SCOPE_ANY;
    }
}

/* Once per connection: a local peer that runs as one of the functions'
 * uids, or whose uid the kernel would not tell, is function code as far as
 * the API knows, and gets no tokenless trust. A remote peer is left as it
 * was: it needs a token whenever spated has a token file. */
static int on_connect(http_peer *peer, const char *client, void *data)
{
    api *a = data;
    (void)client;
    if (peer->local &&
        (!peer->known || (a->function_uid && a->function_uid(peer->uid, a->function_uid_data))))
        peer->flags |= API_PEER_FUNCTION;
    return 0;
}

static int from_function(const http_request *req)
{
    return (http_request_peer(req)->flags & API_PEER_FUNCTION) != 0;
}

int api_caller_is_admin(const api *a, const http_request *req)
{
    if (!a->auth) return !from_function(req);
    return (auth_scopes(a->auth, http_header(req, "authorization")) & SCOPE_ADMIN) != 0;
}

/* Before the body is read: a request without a valid token, or with one of
 * the wrong scope, is refused here, so its body never costs memory. Without
 * a token file every request is let in, but those of function code. */
static int admit(http_request *req, void *data)
{
    api *a = data;
    int function = from_function(req);
    if (!a->auth && !function) {
        http_trust(req);
        return 0;
    }
    route_match m = match(req->path);
    unsigned need = needed_scope(&m, req->method);
    if (!need) return 0;
    if (!a->auth)
        return http_refuse(req, 403, "forbidden",
                           "function code may not use the API without a token, and spated has "
                           "no token file (--token-file)");
    unsigned have = auth_scopes(a->auth, http_header(req, "authorization"));
    if (!have)
        return http_refuse(req, 401, "unauthorized",
                           "a valid token is required: Authorization: Bearer TOKEN");
    if (!(have & need))
        return http_refuse(req, 403, "forbidden",
                           "this request needs the %s scope; the token has %s",
                           auth_scope_name(need), auth_scope_name(have));
    http_trust(req);
    return 0;
}

static size_t body_limit(const http_request *req, void *data)
{
    api *a = data;
    route_match m = match(req->path);
    if (m.route == R_FUNCTION && req->method == HTTP_PUT) return a->limits.artifact_max;
    if (m.route == R_FUNCTION_INVOKE) return a->limits.invoke_payload_max;
    if (m.route == R_TOPIC_MESSAGES && req->method == HTTP_POST) return a->limits.publish_max;
    return SPATE_HTTP_SMALL_BODY_MAX;
}

void api_method_not_allowed(http_request *req, const char *allow)
{
    char hdr[96];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    char body[160];
    int n =
        snprintf(body, sizeof body,
                 "{\"error\":\"method %s is not allowed here\",\"code\":\"method_not_allowed\"}\n",
                 http_method_str(req->method));
    http_respond(req, 405, "application/json", hdr, body, (size_t)n);
}

void api_respond_json(http_request *req, int status, cJSON *doc)
{
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text) {
        http_respond_error(req, 500, "out_of_memory", "cannot build the answer");
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: the length is known */
    http_respond(req, status, "application/json", NULL, text, len + 1);
    free(text);
}

/* --- Invoke -------------------------------------------------------------------------- */

typedef struct api_invocation {
    invocation inv;
    http_request *req;
    pool *pool;
    buf payload;
    char request_id[REQID_LEN + 1];
    api *a; /* routed ones: to find the function again */
    char function[SPATE_NAME_MAX + 1];
} api_invocation;

static void on_invoke_done(invocation *inv, enum pool_outcome outcome, const char *body, size_t len,
                           void *data);
static void on_invoke_abort(http_request *req);

static void on_invoke_done(invocation *inv, enum pool_outcome outcome, const char *body, size_t len,
                           void *data)
{
    api_invocation *ai = data;
    http_request *req = ai->req;
    char hdr[128];
    char *p = fmt_lit(hdr, "Spate-Request-Id: ");
    p = fmt_str(p, ai->request_id, strlen(ai->request_id));
    p = fmt_lit(p, "\r\nSpate-Version: ");
    p = fmt_u64(p, inv->version);
    p = fmt_lit(p, "\r\n");
    *p = '\0';
    int n = (int)(len > 2048 ? 2048 : len);
    /* Errors carry the request id too: the function's log has what happened
     * to it under that id (spate logs NAME --request ID). */
    switch (outcome) {
    case POOL_OK:
        http_respond(req, 200, "application/octet-stream", hdr, body, len);
        break;
    case POOL_FAILED:
        http_respond_error_with(req, 502, hdr, "function_error", "%.*s", n, body);
        break;
    case POOL_CRASHED:
        http_respond_error_with(req, 502, hdr, "function_crashed", "function crashed: %.*s", n,
                                body);
        break;
    case POOL_TIMEOUT:
        http_respond_error_with(req, 504, hdr, "function_timeout", "%.*s", n, body);
        break;
    case POOL_OVERLOADED:
        http_respond_error_with(req, 429, hdr, "over_capacity", "%.*s", n, body);
        break;
    case POOL_UNAVAILABLE:
        http_respond_error_with(req, 503, hdr, "unavailable", "%.*s", n, body);
        break;
    }
    buf_free(&ai->payload);
    free(ai);
}

/* The answer of another node (cluster mode), passed on as it is; status 0:
 * no node had room, so it waits here. */
static void on_routed_done(int status, const char *body, size_t len, const char *node, void *data)
{
    api_invocation *ai = data;
    http_request *req = ai->req;
    if (status == 0) {
        /* It may have been deleted meanwhile. */
        fn *f = functions_find(ai->a->table, ai->function, strlen(ai->function));
        if (f) {
            ai->pool = f->pool;
            req->on_abort = on_invoke_abort;
            pool_invoke(f->pool, &ai->inv);
            return;
        }
        status = 404;
        static const char gone[] =
            "{\"error\":\"the function was deleted\",\"code\":\"not_found\"}";
        body = gone;
        len = sizeof gone - 1;
    }
    char hdr[256];
    snprintf(hdr, sizeof hdr, "Spate-Request-Id: %s\r\nSpate-Node: %.32s\r\n", ai->request_id,
             node);
    http_respond(req, status, status == 200 ? "application/octet-stream" : "application/json", hdr,
                 body, len);
    buf_free(&ai->payload);
    free(ai);
}

/* The client went away: a waiting invocation is withdrawn; a running one
 * finishes and its answer is dropped. */
static void on_invoke_abort(http_request *req)
{
    api_invocation *ai = req->data;
    pool_cancel(ai->pool, &ai->inv);
}

/* ?timeout=MS: this invocation's timeout, which may only shorten the
 * function's (a caller's deadline, not a way past the operator's limit). */
typedef struct invoke_params {
    uint32_t timeout_ms; /* 0: the function's */
    char why[200];
} invoke_params;

static int on_invoke_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    invoke_params *p = data;
    if (strcmp(k, "timeout") == 0 || strcmp(k, "timeout_ms") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_TIMEOUT_CEILING_MS, &p->timeout_ms, p->why,
                                sizeof p->why);
    snprintf(p->why, sizeof p->why, "unknown parameter '%.*s' (timeout)",
             (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

static void invoke(api *a, http_request *req, const route_match *m)
{
    fn *f = functions_find(a->table, m->name, m->name_len);
    if (!f) {
        http_respond_error(req, 404, "not_found", "function '%.*s' does not exist",
                           (int)(m->name_len > SPATE_NAME_MAX ? SPATE_NAME_MAX : m->name_len),
                           m->name);
        return;
    }
    invoke_params ip = {0};
    if (req->query[0]) { /* the common invoke has none: no parsing, no allocation */
        int rc = http_query_parse(req->query, on_invoke_param, &ip);
        if (rc == ERR_NOMEM) {
            http_respond_error(req, 503, "out_of_memory", "out of memory");
            return;
        }
        if (rc) {
            http_respond_error(req, 400, "bad_parameter", "%s",
                               ip.why[0] ? ip.why : "malformed query string");
            return;
        }
        if (ip.timeout_ms > f->active.config.timeout_ms) {
            http_respond_error(req, 400, "bad_parameter",
                               "parameter 'timeout' (%u ms) is longer than the function's timeout "
                               "(%u ms): it may only shorten it",
                               ip.timeout_ms, f->active.config.timeout_ms);
            return;
        }
    }
    api_invocation *ai = malloc(sizeof *ai);
    if (!ai) {
        http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    ai->req = req;
    ai->pool = f->pool;
    buf_init(&ai->payload, 0);
    buf_move(&ai->payload, &req->body);
    reqid_next(ai->request_id);
    ai->inv = (invocation){
        .request_id = ai->request_id,
        .payload = ai->payload.data,
        .payload_len = (uint32_t)ai->payload.len,
        .attempt = 1,
        .timeout_limit_ms = ip.timeout_ms,
        .done = on_invoke_done,
        .data = ai,
    };
    req->data = ai;
    req->on_abort = on_invoke_abort;
    /* No room here: another node may have some (cluster mode). */
    if (!pool_has_room(f->pool)) {
        ai->a = a;
        snprintf(ai->function, sizeof ai->function, "%s", f->name);
        if (functions_route(a->table, f, ai->request_id, ai->payload.data, ai->payload.len,
                            ip.timeout_ms ? ip.timeout_ms : f->active.config.timeout_ms,
                            on_routed_done, ai) == 0) {
            req->on_abort = NULL; /* it runs elsewhere; the answer is dropped if the client left */
            return;
        }
    }
    pool_invoke(f->pool, &ai->inv);
}

/* --- Functions: deploy, configure, list, describe, delete ------------------------------ */

typedef struct deploy_params {
    fn_config cfg;
    int clear_env;
    char why[256];
} deploy_params;

int api_number_param(const char *key, const char *val, size_t vlen, uint64_t min, uint64_t max,
                     uint32_t *out, char *why, size_t whycap)
{
    uint64_t v;
    if (parse_u64(val, vlen, min, max, &v)) {
        snprintf(why, whycap, "parameter '%s' must be an integer from %llu to %llu", key,
                 (unsigned long long)min, (unsigned long long)max);
        return ERR_INVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

int api_bool_param(const char *key, const char *val, size_t vlen, int *out, char *why,
                   size_t whycap)
{
    /* A bare "?force" means true. */
    if (vlen == 0 || (vlen == 4 && memcmp(val, "true", 4) == 0) || (vlen == 1 && val[0] == '1'))
        *out = 1;
    else if ((vlen == 5 && memcmp(val, "false", 5) == 0) || (vlen == 1 && val[0] == '0'))
        *out = 0;
    else {
        snprintf(why, whycap, "parameter '%s' must be true or false", key);
        return ERR_INVAL;
    }
    return 0;
}

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
            snprintf(why, cap, "parameter 'runtime' must be 'native' or 'exec'");
            return ERR_INVAL;
        }
        c->runtime = (enum fn_runtime)rt;
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
    if (strcmp(k, "env") == 0) return fnconfig_add_env(c, v, vlen, why, cap);
    if (strcmp(k, "secret") == 0) return fnconfig_add_secret(c, v, vlen, why, cap);
    if (strcmp(k, "unset_env") == 0) {
        if (fnconfig_unset_env(c, v, vlen) == 0) return 0;
        snprintf(why, cap, "environment variable '%.*s' is not set (parameter 'unset_env')",
                 (int)(vlen > 64 ? 64 : vlen), v);
        return ERR_INVAL;
    }
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
static int config_params(http_request *req, const fn *f, deploy_params *p)
{
    p->why[0] = '\0';
    p->clear_env = 0;
    int rc = 0;
    if (f)
        rc = fnconfig_copy(&p->cfg, &f->active.config);
    else
        fnconfig_defaults(&p->cfg);
    if (rc == 0) rc = http_query_parse(req->query, on_clear_env_param, p);
    if (rc == 0 && p->clear_env) fnconfig_free(&p->cfg);
    if (rc == 0) rc = http_query_parse(req->query, on_deploy_param, p);
    if (rc == 0) rc = fnconfig_check(&p->cfg, p->why, sizeof p->why);
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
    if (config_params(req, functions_find(a->table, name, m->name_len), &p)) return;
    if (req->body.len == 0) {
        fnconfig_free(&p.cfg);
        http_respond_error(req, 400, "bad_artifact", "the artifact is empty");
        return;
    }
    /* The runtime is the one asked for, or the active version's. */
    char why[400];
    if (api_artifact_check(req->body.data, req->body.len, p.cfg.runtime, why, sizeof why)) {
        fnconfig_free(&p.cfg);
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
    if (config_params(req, f, &p)) return;
    if (fnconfig_equal(&p.cfg, &f->active.config)) {
        fnconfig_free(&p.cfg);
        cJSON *doc = api_json_function(f, NULL, 0, NULL, 1); /* PATCH needs an admin */
        cJSON_AddBoolToObject(doc, "changed", 0);
        api_respond_json(req, 200, doc);
        return;
    }
    functions_reconfigure(a->table, f->name, &p.cfg, on_deployed, req);
}

static void list_nodes(api *a, http_request *req)
{
    cJSON *doc = cJSON_CreateObject();
    const api_nodes *n = &a->nodes;
    cJSON_AddBoolToObject(doc, "cluster", n->json != NULL);
    if (n->json) {
        cJSON_AddStringToObject(doc, "self", n->self(n->data));
        cJSON_AddBoolToObject(doc, "connected", n->connected(n->data));
        cJSON_AddItemToObject(doc, "nodes", n->json(n->data));
    } else {
        cJSON *arr = cJSON_AddArrayToObject(doc, "nodes");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", "local");
        cJSON_AddBoolToObject(o, "self", 1);
        cJSON_AddStringToObject(o, "state", "up");
        cJSON_AddNumberToObject(o, "instances", pool_node_live());
        cJSON_AddNumberToObject(o, "functions", functions_count(a->table));
        cJSON_AddItemToArray(arr, o);
    }
    api_respond_json(req, 200, doc);
}

static void list_one(fn *f, void *data)
{
    cJSON_AddItemToArray(data, api_json_function_summary(f));
}

static void list_fns(api *a, http_request *req)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "functions");
    if (arr) functions_each(a->table, list_one, arr);
    api_respond_json(req, 200, doc);
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
    cJSON *triggers; /* [{"topic", "function"}] that feed it */
    cJSON *removed;  /* of those, removed (force=true) */
    char why[200];
} delete_req;

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
    if (strcmp(queue_sub_get_config(sub)->function, d->name) == 0)
        cJSON_AddItemToArray(d->triggers, api_trigger_ref(queue_sub_topic(sub), d->name));
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

/* The function goes (its triggers, if any, are gone already). */
static void delete_now(delete_req *d)
{
    http_request *req = d->req;
    api *a = d->a;
    const char *name = d->name;
    int rc = functions_delete(a->table, name);
    if (rc == ERR_NOTFOUND)
        http_respond_error(req, 404, "not_found", "function '%s' does not exist", name);
    else if (rc == ERR_BUSY)
        http_respond_error(req, 409, "deploy_in_progress",
                           "a deploy of '%s' is in progress; delete it after", name);
    else if (rc != 0)
        http_respond_error(req, 500, "store_error", "cannot delete '%s': %s", name, err_str(rc));
    if (rc != 0) return delete_free(d);
    if (!d->force) {
        http_respond(req, 204, NULL, NULL, NULL, 0);
        return delete_free(d);
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "deleted", name);
    cJSON_AddItemToObject(doc, "triggers_removed", d->removed);
    d->removed = NULL;
    api_respond_json(req, 200, doc);
    delete_free(d);
}

static void on_untriggered(void *data, cJSON *removed, const char *err)
{
    delete_req *d = data;
    d->removed = removed;
    if (!err) return delete_now(d);
    char done[400];
    topic_list(removed, done, sizeof done);
    http_respond_error(d->req, 503, "store_unavailable",
                       "%s; function '%s' was not deleted (triggers removed: %s)", err, d->name,
                       done[0] ? done : "none");
    delete_free(d);
}

/* A function with triggers is deleted only with force=true, which removes
 * them first: else its topics would keep feeding a function that is gone. */
static void delete_fn(api *a, http_request *req, const route_match *m)
{
    delete_req *d = calloc(1, sizeof *d);
    if (d) d->triggers = cJSON_CreateArray();
    if (!d || !d->triggers) {
        if (d) delete_free(d);
        http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    d->a = a;
    d->req = req;
    memcpy(d->name, m->name, m->name_len);
    d->name[m->name_len] = '\0';
    if (http_query_parse(req->query, on_delete_param, d)) {
        http_respond_error(req, 400, "bad_parameter", "%s",
                           d->why[0] ? d->why : "malformed query string");
        return delete_free(d);
    }
    fn *f = functions_find(a->table, d->name, m->name_len);
    queue_each_sub(a->q, find_triggers, d);
    if (!f || f->deploying || cJSON_GetArraySize(d->triggers) == 0) return delete_now(d);
    if (!d->force) {
        char list[1200];
        topic_list(d->triggers, list, sizeof list);
        cJSON *doc = cJSON_CreateObject();
        char msg[1500];
        snprintf(msg, sizeof msg,
                 "function '%s' has triggers from %s: remove them first (spate trigger rm), or "
                 "delete with force=true (spate rm --force), which removes them too",
                 d->name, list);
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

/* --- Entry ------------------------------------------------------------------------------- */

static void handle(http_request *req, void *data)
{
    api *a = data;
    route_match m = match(req->path);
    int get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    if (m.name && !name_is_function(m.name, m.name_len) &&
        (m.route == R_FUNCTION || m.route == R_FUNCTION_INVOKE || m.route == R_FUNCTION_LOGS)) {
        http_respond_error(req, 400, "bad_name",
                           "invalid function name '%.*s': " NAME_FUNCTION_RULE,
                           (int)(m.name_len > 80 ? 80 : m.name_len), m.name, SPATE_NAME_MAX);
        return;
    }
    switch (m.route) {
    case R_HEALTH:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        http_respond(req, 200, "application/json", NULL, "{\"status\":\"ok\"}\n", 16);
        return;
    case R_FUNCTIONS:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        list_fns(a, req);
        return;
    case R_METRICS:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        api_metrics(a, req);
        return;
    case R_NODES:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        list_nodes(a, req);
        return;
    case R_UI:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        api_ui(req);
        return;
    case R_FUNCTION_INVOKE:
        if (req->method != HTTP_POST) return api_method_not_allowed(req, "POST");
        invoke(a, req, &m);
        return;
    case R_FUNCTION_LOGS:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        api_logs(a, req, &m);
        return;
    case R_FUNCTION:
        if (req->method == HTTP_PUT) {
            deploy_fn(a, req, &m);
        } else if (req->method == HTTP_PATCH) {
            configure_fn(a, req, &m);
        } else if (req->method == HTTP_DELETE) {
            delete_fn(a, req, &m);
        } else if (get) {
            fn *f = functions_find(a->table, m.name, m.name_len);
            if (!f)
                http_respond_error(req, 404, "not_found", "function '%.*s' does not exist",
                                   (int)m.name_len, m.name);
            else
                describe_fn(a, req, f);
        } else {
            api_method_not_allowed(req, "GET, HEAD, PUT, PATCH, DELETE");
        }
        return;
    case R_TOPICS:
    case R_TOPIC:
    case R_TOPIC_MESSAGES:
    case R_TOPIC_REDRIVE:
    case R_TOPIC_PURGE:
    case R_TRIGGERS:
    case R_TRIGGER:
        api_topics(a, req, &m);
        return;
    case R_NONE:
        break;
    }
    http_respond_error(req, 404, "not_found", "no route for %s %.200s",
                       http_method_str(req->method), req->path);
}

static const http_handlers handlers = {
    .connect = on_connect, .admit = admit, .body_limit = body_limit, .handle = handle};

const http_handlers *api_http_handlers(void)
{
    return &handlers;
}

api *api_create(functions *table, queue *q, triggers *tr, const auth *tokens,
                const api_limits *limits)
{
    api *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->auth = tokens;
    a->table = table;
    a->q = q;
    a->tr = tr;
    a->limits = *limits;
    return a;
}

void api_set_auth(api *a, const auth *tokens)
{
    a->auth = tokens;
}

void api_set_limits(api *a, const api_limits *limits)
{
    a->limits = *limits;
}

void api_set_function_uids(api *a, int (*is_function_uid)(uid_t uid, void *data), void *data)
{
    a->function_uid = is_function_uid;
    a->function_uid_data = data;
}

void api_set_nodes(api *a, const api_nodes *nodes)
{
    a->nodes = *nodes;
}

void api_free(api *a)
{
    free(a);
}
