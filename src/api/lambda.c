/*
 * lambda.c - AWS Lambda's Invoke API on spated's own port:
 * POST /2015-03-31/functions/NAME/invocations, answered as Lambda answers
 * (docs/api.md "AWS Lambda API"): RequestResponse runs the function and
 * gives its output (a function's error is a 200 with X-Amz-Function-Error),
 * Event stores the invocation and answers 202 (api/lambda_async.c), DryRun
 * only checks; platform errors in Lambda's rest-json shape, which the SDKs
 * turn into their exceptions.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/lambda.h"
#include "common/err.h"
#include "common/fmt.h"
#include "common/limits.h"
#include "common/reqid.h"

/* The log lines X-Amz-Log-Result carries: Lambda's last 4 KiB. */
#define TAIL_BYTES 4096
/* How long a Tail answer waits for the function's last lines, which come
 * through a pipe and may land just after its answer through the Runtime
 * API: a bound, not a measure (the lines that made it are sent anyway). */
#define TAIL_SETTLE_MS 50

void api_lambda_error(http_request *req, int status, const char *type, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "Type", status >= 500 ? "Service" : "User");
    cJSON_AddStringToObject(doc, "message", msg);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "x-amzn-ErrorType: %s\r\n", type);
    if (!text) {
        http_respond(req, status, "application/json", hdr, "{}", 2);
        return;
    }
    http_respond(req, status, "application/json", hdr, text, strlen(text));
    free(text);
}

/* --- Which function and version ----------------------------------------------------- */

int api_lambda_resolve(api *a, const char *function, const char *qualifier, fn **out,
                       uint32_t *version, int *status, const char **type, char *why, size_t cap)
{
    fn *f = NULL;
    /* The one resolution of qualifiers: versions and aliases (an alias picks
     * by its weight each time), as /v1's NAME:QUALIFIER. */
    int rc = functions_resolve(a->table, function, qualifier, &f, version);
    if (rc == 0 && f && f->registered) {
        *out = f;
        return 0;
    }
    if (rc == 0 || rc == ERR_NOTFOUND || !f) {
        *status = 404;
        *type = "ResourceNotFoundException";
        snprintf(why, cap, "Function not found: arn:aws:lambda:%s:%s:function:%s%s%s",
                 LAMBDA_REGION, LAMBDA_ACCOUNT, function, qualifier[0] ? ":" : "", qualifier);
    } else if (rc == ERR_INVAL) {
        *status = 400;
        *type = "InvalidParameterValueException";
        snprintf(why, cap, "invalid qualifier '%s': a version number, an alias or $LATEST",
                 qualifier);
    } else {
        *status = 500;
        *type = "ServiceException";
        snprintf(why, cap, "cannot read the versions of '%s': %s", function, err_str(rc));
    }
    return -1;
}

/* --- RequestResponse ----------------------------------------------------------------- */

typedef struct lambda_call {
    invocation inv;
    http_request *req;
    pool *pool;
    buf payload;
    char request_id[REQID_LEN + 1];
    char function[SPATE_NAME_MAX + 1];
    api *a;
    uint32_t version;    /* resolved: the active one when it was called */
    uint32_t timeout_ms; /* the function's then (a routed timeout's message) */
    int qualified;       /* X-Amz-Executed-Version: the number, else $LATEST */
    char node[40];       /* the node that ran it, when another did (cluster mode) */
    int tail;
    /* The answer, kept while a Tail waits for the last log lines. */
    int status;
    char *body;
    size_t len;
    int function_error;
    uv_timer_t timer;
} lambda_call;

static void add_tail(const fnlog_line *line, void *data)
{
    buf *b = data;
    buf_append(b, line->text, line->len);
    buf_append(b, "\n", 1);
}

/* The base64 of the last TAIL_BYTES of the invocation's log lines. */
static void tail_header(lambda_call *c, buf *hdr)
{
    fnlog *log = fnlog_find(c->function);
    buf lines;
    buf_init(&lines, 1000u * (SPATE_LOG_LINE_MAX + 1)); /* fnlog_each's limit below */
    if (log) {
        fnlog_filter f = {.req = c->request_id};
        fnlog_each(log, 0, 1000, &f, add_tail, &lines);
        fnlog_unref(log);
    }
    const unsigned char *p = (const unsigned char *)(lines.data ? lines.data : "");
    size_t n = lines.len;
    if (n > TAIL_BYTES) {
        p += n - TAIL_BYTES;
        n = TAIL_BYTES;
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    buf_printf(hdr, "X-Amz-Log-Result: ");
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        char q[4] = {b64[(v >> 18) & 63], b64[(v >> 12) & 63], i + 1 < n ? b64[(v >> 6) & 63] : '=',
                     i + 2 < n ? b64[v & 63] : '='};
        buf_append(hdr, q, 4);
    }
    buf_printf(hdr, "\r\n");
    buf_free(&lines);
}

static void call_free(lambda_call *c)
{
    buf_free(&c->payload);
    free(c->body);
    free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    call_free(h->data);
}

static void send_answer(lambda_call *c)
{
    buf hdr;
    buf_init(&hdr, 4 * TAIL_BYTES); /* the base64 of TAIL_BYTES and a few lines */
    buf_printf(&hdr, "x-amzn-RequestId: %s\r\nSpate-Request-Id: %s\r\n", c->request_id,
               c->request_id);
    if (c->node[0]) buf_printf(&hdr, "Spate-Node: %s\r\n", c->node);
    if (c->qualified)
        buf_printf(&hdr, "X-Amz-Executed-Version: %u\r\n", c->version);
    else
        buf_printf(&hdr, "X-Amz-Executed-Version: $LATEST\r\n");
    if (c->function_error) buf_printf(&hdr, "X-Amz-Function-Error: Unhandled\r\n");
    if (c->tail) tail_header(c, &hdr);
    http_respond(c->req, c->status, "application/json", hdr.data, c->body ? c->body : "", c->len);
    buf_free(&hdr);
}

static void on_tail_timer(uv_timer_t *t)
{
    lambda_call *c = t->data;
    send_answer(c);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

char *api_lambda_error_json(enum pool_outcome outcome, const char *body, size_t len,
                            const char *request_id, uint32_t timeout_ms)
{
    if (!body) body = "";
    char type[96];
    const char *msg = body;
    size_t mlen = len > SPATE_ERROR_MESSAGE_MAX ? SPATE_ERROR_MESSAGE_MAX : len;
    char text[SPATE_ERROR_MESSAGE_MAX + 200];
    switch (outcome) {
    case POOL_FAILED:
        msg = lambda_split_error(body, mlen, type, sizeof type);
        if (!type[0]) snprintf(type, sizeof type, "Error");
        snprintf(text, sizeof text, "%.*s", (int)(mlen - (size_t)(msg - body)), msg);
        break;
    case POOL_CRASHED:
        snprintf(type, sizeof type, "Runtime.ExitError");
        snprintf(text, sizeof text, "RequestId: %s Error: function crashed: %.*s", request_id,
                 (int)mlen, body);
        break;
    default: /* POOL_TIMEOUT */
        snprintf(type, sizeof type, "Sandbox.Timedout");
        snprintf(text, sizeof text, "RequestId: %s Error: Task timed out after %.2f seconds",
                 request_id, timeout_ms / 1000.0);
        break;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "errorMessage", text);
    cJSON_AddStringToObject(doc, "errorType", type);
    char *out = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return out;
}

/* A node limit kept the invocation from running (common/err.h): Lambda's
 * shape of a service error, 503 as /v1 answers it, with the limit's code as
 * Reason (as Lambda's TooManyRequestsException names its limit there). */
static void limit_error(http_request *req, int limit, const char *body, size_t len)
{
    char msg[400];
    snprintf(msg, sizeof msg, "the function cannot run now: %.*s", (int)(len > 300 ? 300 : len),
             body);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "Type", "Service");
    cJSON_AddStringToObject(doc, "message", msg);
    cJSON_AddStringToObject(doc, "Reason", err_limit_code(limit));
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    http_respond(req, 503, "application/json", "x-amzn-ErrorType: ServiceException\r\n",
                 text ? text : "{}", text ? strlen(text) : 2);
    free(text);
}

/* Answers with an outcome, here or of another node. timeout_ms: the one the
 * invocation ran with (a timeout's message says it). */
static void finish(lambda_call *c, enum pool_outcome outcome, const char *body, size_t len,
                   uint32_t timeout_ms)
{
    switch (outcome) {
    case POOL_OK:
        c->status = 200;
        c->body = malloc(len ? len : 1);
        if (c->body) memcpy(c->body, body, len);
        c->len = c->body ? len : 0;
        break;
    case POOL_FAILED:
    case POOL_CRASHED:
    case POOL_TIMEOUT:
        c->status = 200;
        c->function_error = 1;
        c->body = api_lambda_error_json(outcome, body, len, c->request_id, timeout_ms);
        c->len = c->body ? strlen(c->body) : 0;
        break;
    case POOL_OVERLOADED:
        api_lambda_error(c->req, 429, "TooManyRequestsException", "Rate Exceeded. (%.*s)",
                         (int)(len > 300 ? 300 : len), body);
        call_free(c);
        return;
    case POOL_UNAVAILABLE:
        if (err_limit(c->inv.limit_err) >= 0)
            limit_error(c->req, err_limit(c->inv.limit_err), body, len);
        else
            api_lambda_error(c->req, 503, "ServiceException", "the function cannot run now: %.*s",
                             (int)(len > 300 ? 300 : len), body);
        call_free(c);
        return;
    }
    if (c->tail && uv_timer_init(http_request_loop(c->req), &c->timer) == 0) {
        c->timer.data = c;
        c->req->on_abort = NULL;
        uv_timer_start(&c->timer, on_tail_timer, TAIL_SETTLE_MS, 0);
        return;
    }
    send_answer(c);
    call_free(c);
}

static void on_call_done(invocation *inv, enum pool_outcome outcome, const char *body, size_t len,
                         void *data)
{
    finish(data, outcome, body, len, inv->timeout_ms);
}

static void on_call_abort(http_request *req);

static void not_found(lambda_call *c)
{
    api_lambda_error(c->req, 404, "ResourceNotFoundException",
                     "Function not found: arn:aws:lambda:%s:%s:function:%s", LAMBDA_REGION,
                     LAMBDA_ACCOUNT, c->function);
    call_free(c);
}

/* The answer of another node (cluster mode) in /v1's shape, given as this
 * route gives its own; status 0: no node had room, so it waits here. */
static void on_call_routed(int status, const char *body, size_t len, const char *node, void *data)
{
    lambda_call *c = data;
    if (status == 0) {
        fn *f = functions_find(c->a->table, c->function, strlen(c->function));
        if (!f) return not_found(c); /* deleted meanwhile */
        c->pool = f->pool;
        c->req->on_abort = on_call_abort;
        pool_invoke(f->pool, &c->inv);
        return;
    }
    snprintf(c->node, sizeof c->node, "%.32s", node ? node : "");
    if (status == 200) return finish(c, POOL_OK, body, len, 0);
    if (status == 404) return not_found(c);
    cJSON *doc = cJSON_ParseWithLength(body, len);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(doc, "code");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const char *cs = cJSON_IsString(code) ? code->valuestring : "";
    const char *msg = cJSON_IsString(err) ? err->valuestring : "";
    /* /v1's prefix of a crash (api/invoke.c), taken off: the error object
     * says it its own way. */
    static const char crashed[] = "function crashed: ";
    enum pool_outcome o = POOL_UNAVAILABLE;
    if (strcmp(cs, "function_error") == 0) {
        o = POOL_FAILED;
    } else if (strcmp(cs, "function_crashed") == 0) {
        o = POOL_CRASHED;
        if (strncmp(msg, crashed, sizeof crashed - 1) == 0) msg += sizeof crashed - 1;
    } else if (strcmp(cs, "function_timeout") == 0) {
        o = POOL_TIMEOUT;
    } else if (status == 429) {
        o = POOL_OVERLOADED;
    }
    int limit = err_limit_by_code(cs); /* another node's limit */
    c->inv.limit_err = limit >= 0 ? err_of_limit(limit) : 0;
    finish(c, o, msg, strlen(msg), c->timeout_ms);
    cJSON_Delete(doc);
}

static void on_call_abort(http_request *req)
{
    lambda_call *c = req->data;
    pool_cancel(c->pool, &c->inv);
}

static void request_response(api *a, http_request *req, fn *f, uint32_t version,
                             const lambda_target *t, int tail)
{
    lambda_call *c = calloc(1, sizeof *c);
    if (!c) {
        api_lambda_error(req, 503, "ServiceException", "out of memory");
        return;
    }
    c->req = req;
    c->pool = f->pool;
    c->tail = tail;
    c->a = a;
    c->version = version;
    c->timeout_ms = f->active.config.timeout_ms;
    c->qualified = t->qualifier[0] && strcmp(t->qualifier, "$LATEST") != 0;
    snprintf(c->function, sizeof c->function, "%s", f->name);
    buf_init(&c->payload, 0);
    buf_move(&c->payload, &req->body);
    reqid_next(c->request_id);
    c->inv = (invocation){
        .request_id = c->request_id,
        .payload = c->payload.data,
        .payload_len = (uint32_t)c->payload.len,
        .attempt = 1,
        .done = on_call_done,
        .data = c,
    };
    req->data = c;
    req->on_abort = on_call_abort;
    /* No room here: another node may have some (cluster mode), as for /v1;
     * another node runs the active version only. */
    if (version == f->active.version && !pool_has_room(f->pool) &&
        functions_route(a->table, f, c->request_id, c->payload.data, c->payload.len, c->timeout_ms,
                        on_call_routed, c) == 0) {
        req->on_abort = NULL; /* it runs elsewhere; the answer is dropped if the client left */
        return;
    }
    functions_invoke(a->table, f, version, &c->inv, &c->pool);
}

/* --- The route ----------------------------------------------------------------------- */

void api_lambda_invoke(api *a, http_request *req, const route_match *m)
{
    if (req->method != HTTP_POST) {
        api_lambda_error(req, 405, "MethodNotAllowedException", "method %s is not allowed here",
                         http_method_str(req->method));
        return;
    }
    lambda_target t;
    char why[300];
    if (lambda_parse_target(m->name, m->name_len, req->query, &t, why, sizeof why) != 0) {
        api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
        return;
    }
    int type = lambda_parse_invocation_type(http_header(req, "x-amz-invocation-type"));
    int tail = lambda_parse_log_type(http_header(req, "x-amz-log-type"));
    if (type < 0 || tail < 0) {
        api_lambda_error(req, 400, "InvalidParameterValueException",
                         type < 0 ? "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun"
                                  : "X-Amz-Log-Type must be None or Tail");
        return;
    }
    fn *f;
    uint32_t version;
    int status;
    const char *etype;
    if (api_lambda_resolve(a, t.function, t.qualifier, &f, &version, &status, &etype, why,
                           sizeof why) != 0) {
        api_lambda_error(req, status, etype, "%s", why);
        return;
    }
    size_t max = type == LAMBDA_EVENT ? a->limits.message_max : a->limits.invoke_payload_max;
    if (req->body.len > max) {
        api_lambda_error(req, 413, "RequestTooLargeException",
                         "Request must be smaller than %zu bytes for the %s operation", max,
                         type == LAMBDA_EVENT ? "InvokeAsync" : "Invoke");
        return;
    }
    if (req->body.len) {
        cJSON *doc = cJSON_ParseWithLength(req->body.data, req->body.len);
        cJSON_Delete(doc);
        if (!doc) {
            api_lambda_error(req, 400, "InvalidRequestContentException",
                             "Could not parse request body into json: the payload is not JSON");
            return;
        }
    }
    switch (type) {
    case LAMBDA_DRY_RUN: {
        char hdr[LAMBDA_QUALIFIER_MAX + 64];
        snprintf(hdr, sizeof hdr, "X-Amz-Executed-Version: %s%s\r\n",
                 t.qualifier[0] ? "" : "$LATEST", t.qualifier);
        http_respond(req, 204, NULL, hdr, NULL, 0);
        return;
    }
    case LAMBDA_EVENT: {
        uint32_t run;
        if (api_async_version(f, t.qualifier, strlen(t.qualifier), version, &run, why,
                              sizeof why) != 0) {
            api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
            return;
        }
        api_async_invoke(a, req, f, run, 1);
        return;
    }
    default:
        request_response(a, req, f, version, &t, tail);
    }
}
