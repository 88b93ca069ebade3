/*
 * api.c - the api itself: its life and settings, the HTTP server's handlers
 * (a connection's trust, admission by token before the body is read, the
 * body's limit per route) and the dispatch of a request to the file of its
 * route; and the answers every route gives the same way.
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/failpoint.h"
#include "common/json_alloc.h"
#include "common/limits.h"
#include "common/names.h"

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

/* What the request's token and its connection's client certificate grant. */
static unsigned granted(const api *a, const http_request *req)
{
    return auth_scopes(a->auth, http_header(req, "authorization")) |
           auth_cert_scopes(a->auth, http_request_tls_subject(req));
}

int api_caller_is_admin(const api *a, const http_request *req)
{
    if (!a->auth) return !from_function(req);
    return (granted(a, req) & SCOPE_ADMIN) != 0;
}

/* Whether an Origin header names another site than the Host the request
 * was sent to: a browser showing some other page sends it on every POST, PUT
 * or DELETE it makes there, and on every cross-origin fetch. spated serves
 * no other site (it answers no CORS), so such a request is a page elsewhere
 * using the operator's browser: its loopback trust or its client
 * certificate. 1 and why, or 0. */
static int cross_site(const http_request *req, char *why, size_t cap)
{
    const char *origin = http_header(req, "origin");
    if (!origin) return 0;
    const char *host = http_header(req, "host");
    const char *o = origin;
    if (strncasecmp(o, "http://", 7) == 0)
        o += 7;
    else if (strncasecmp(o, "https://", 8) == 0)
        o += 8;
    else
        o = NULL; /* "null" (a sandboxed frame, a file) or another scheme */
    if (o && host && strcasecmp(o, host) == 0) return 0;
    snprintf(why, cap,
             "a page of another site may not use spated's API (Origin '%.40s', Host '%.40s')",
             origin, host ? host : "");
    return 1;
}

/* Whether Host names this machine by a DNS name with a dot (not localhost):
 * without a token file only an address, localhost or a one-label name is
 * answered, so that a page whose name an attacker re-points at 127.0.0.1
 * (DNS rebinding) cannot read or act with the loopback's trust. */
static int host_is_dns_name(const char *host)
{
    if (!host || host[0] == '[') return 0;
    size_t len = strcspn(host, ":");
    int dot = 0, letter = 0;
    for (size_t i = 0; i < len; i++) {
        if (host[i] == '.') dot = 1;
        if ((host[i] | 0x20) >= 'a' && (host[i] | 0x20) <= 'z') letter = 1;
    }
    if (!dot || !letter) return 0;
    static const char lh[] = ".localhost";
    size_t n = sizeof lh - 1;
    if (len >= n && strncasecmp(host + len - n, lh, n) == 0) return 0;
    return 1;
}

/* Before the body is read: a request without a valid token, or with one of
 * the wrong scope, is refused here, so its body never costs memory. Without
 * a token file every request is let in, but those of function code. */
static int admit(http_request *req, void *data)
{
    api *a = data;
    int function = from_function(req);
    char why[300];
    if (cross_site(req, why, sizeof why)) return http_refuse(req, 403, "cross_site", "%s", why);
    if (!a->auth && !function) {
        const char *host = http_header(req, "host");
        if (host_is_dns_name(host))
            return http_refuse(req, 403, "forbidden",
                               "without a token file only an address or localhost is answered, "
                               "not '%.40s' (another site's name for it?): use the address",
                               host);
        http_trust(req);
        return 0;
    }
    route_match m = api_route_match(req->path);
    unsigned need = api_route_scope(&m, req->method);
    /* The AWS routes take AWS Signature Version 4 instead of a bearer
     * token; their refusals are the handler's, in AWS's shape. */
    const api_aws_protocol *aws = a->auth ? api_aws_protocol_of(req) : NULL;
    if (aws) {
        api_aws_admit(a, req, aws);
        return 0;
    }
    if (!need) return 0;
    if (!a->auth)
        return http_refuse(req, 403, "forbidden",
                           "function code may not use the API without a token, and spated has "
                           "no token file (--token-file)");
    unsigned have = granted(a, req);
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
    route_match m = api_route_match(req->path);
    if (api_aws_refused(req)) return SPATE_HTTP_SMALL_BODY_MAX; /* enough for the refusal */
    if (m.route == R_FUNCTION && req->method == HTTP_PUT) return a->limits.artifact_max;
    if (m.route == R_FUNCTION_INVOKE) return a->limits.invoke_payload_max;
    /* Lambda's route reads up to twice its limit, so that a payload over it
     * gets Lambda's RequestTooLargeException (api/lambda.c), not the
     * server's own 413 that cuts the connection. */
    if (m.route == R_LAMBDA_INVOKE) return 2 * a->limits.invoke_payload_max;
    if (m.route == R_TOPIC_MESSAGES && req->method == HTTP_POST) return a->limits.publish_max;
    /* CreateFunction and UpdateFunctionCode carry the zip in base64. */
    if ((m.route == R_LAMBDA_FUNCTIONS && req->method == HTTP_POST) ||
        (m.route == R_LAMBDA_CODE && req->method == HTTP_PUT))
        return api_lambda_code_body_max(a);
    if (m.route == R_SQS) return SPATE_SQS_BODY_MAX;
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
    /* A member cJSON could not add would be missing from the answer. */
    if (json_alloc_failed_since() || !text) {
        free(text);
        http_respond_error(req, 503, "out_of_memory", "cannot build the answer");
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: the length is known */
    http_respond(req, status, "application/json", NULL, text, len + 1);
    free(text);
}

typedef struct durable {
    http_request *req;
    int status;
    cJSON *doc;
    api_error_fn fail; /* NULL: the native API's shape */
} durable;

static void on_durable(void *data, int rc)
{
    durable *d = data;
    if (rc) {
        cJSON_Delete(d->doc);
        char msg[200];
        snprintf(msg, sizeof msg,
                 "the change is made on this node but the cluster's registry did not take it: %s "
                 "(try again)",
                 err_str(rc));
        if (d->fail)
            d->fail(d->req, 503, "store_unavailable", msg);
        else
            http_respond_error(d->req, 503, "store_unavailable", "%s", msg);
    } else if (d->doc) {
        api_respond_json(d->req, d->status, d->doc);
    } else {
        http_respond(d->req, d->status, NULL, NULL, NULL, 0);
    }
    free(d);
}

void api_respond_durable_as(api *a, http_request *req, int status, cJSON *doc, api_error_fn fail)
{
    durable *d = malloc(sizeof *d);
    if (!d) {
        cJSON_Delete(doc);
        if (fail)
            fail(req, 503, "out_of_memory", "out of memory");
        else
            http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    *d = (durable){req, status, doc, fail};
    registry_sync(functions_registry(a->table), on_durable, d);
}

void api_respond_durable(api *a, http_request *req, int status, cJSON *doc)
{
    api_respond_durable_as(a, req, status, doc, NULL);
}

/* --- Dispatch ---------------------------------------------------------------------------- */

static void handle(http_request *req, void *data)
{
    api *a = data;
    /* SPATE_FAIL_ALLOC_AFTER="POST /v1/topics/" counts from here (tests only). */
    if (failpoint_marking()) failpoint_mark2(http_method_str(req->method), req->path);
    const api_aws_protocol *aws = a->auth ? api_aws_protocol_of(req) : NULL;
    if (aws && !api_aws_verify(a, req, aws)) return;
    route_match m = api_route_match(req->path);
    int get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    if (m.name && !name_is_function(m.name, m.name_len) &&
        (m.route == R_FUNCTION || m.route == R_FUNCTION_INVOKE || m.route == R_FUNCTION_LOGS ||
         m.route == R_ALIASES || m.route == R_ALIAS || m.route == R_ROLLBACK)) {
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
        api_functions_list(a, req);
        return;
    case R_METRICS:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        api_metrics(a, req);
        return;
    case R_NODES:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        api_nodes_list(a, req);
        return;
    case R_STATUS:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        api_status(a, req);
        return;
    case R_HISTORY:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        api_history(a, req);
        return;
    case R_UI:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        api_ui(req);
        return;
    case R_FUNCTION_INVOKE:
        if (req->method != HTTP_POST) return api_method_not_allowed(req, "POST");
        api_invoke(a, req, &m);
        return;
    case R_FUNCTION_LOGS:
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        api_logs(a, req, &m);
        return;
    case R_FUNCTION:
        api_function(a, req, &m);
        return;
    case R_ALIASES:
    case R_ALIAS:
    case R_ROLLBACK:
        api_aliases(a, req, &m);
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
    case R_SCHEDULES:
    case R_SCHEDULE:
        api_schedules(a, req, &m);
        return;
    case R_SOURCES:
    case R_SOURCE:
        api_sources(a, req, &m);
        return;
    case R_LAMBDA_INVOKE:
        api_lambda_invoke(a, req, &m);
        return;
    case R_LAMBDA_FUNCTIONS:
    case R_LAMBDA_FUNCTION:
    case R_LAMBDA_CONFIG:
    case R_LAMBDA_CODE:
    case R_LAMBDA_VERSIONS:
    case R_LAMBDA_ALIASES:
    case R_LAMBDA_ALIAS:
        api_lambda_mgmt(a, req, &m);
        return;
    case R_LAMBDA_ESMS:
    case R_LAMBDA_ESM:
        api_lambda_esm(a, req, &m);
        return;
    case R_SQS:
        api_sqs(a, req);
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
    api_async_start(a);
    api_sqs_start(a);
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

void api_set_schedules(api *a, schedules *s)
{
    a->sched = s;
}

void api_set_sources(api *a, sources *src)
{
    a->src = src;
}

void api_stop(api *a)
{
    a->stopping = 1;
    api_history_stop(a);
}

void api_free(api *a)
{
    if (a) api_sqs_free(a);
    if (a) api_history_free(a);
    free(a);
}
