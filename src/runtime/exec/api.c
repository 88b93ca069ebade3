/*
 * api.c - the Runtime API an exec instance's bootstrap speaks: /next hands
 * out the oldest invocation (or waits for one), /response and /error finish
 * the running one, /init/error fails the instance (internal.h has who owns
 * what).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "common/fmt.h"
#include "common/hash.h"
#include "common/limits.h"
#include "runtime/exec/internal.h"

static void respond_lambda_error(http_request *req, int status, const char *type,
                                 const char *message)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "errorMessage", message);
    cJSON_AddStringToObject(doc, "errorType", type);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    http_respond(req, status, "application/json", NULL, text ? text : "{}",
                 text ? strlen(text) : 2);
    free(text);
}

/* Trace ids need spread, not secrecy: a generator seeded once, so that no
 * invocation pays a getrandom call. */
static uint64_t next_random(void)
{
    static uint64_t state;
    if (!state && (getrandom(&state, sizeof state, 0) != sizeof state || !state))
        state = 0x9e3779b97f4a7c15ull ^ (uint64_t)clock_mono_ns();
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ull;
}

/* Hands the oldest given invocation to a waiting /next. */
void exec__hand_out(exec_instance *e, http_request *req)
{
    pending_inv *p = list_entry(list_first(&e->queue), pending_inv, link);
    list_remove(&p->link);
    e->running = p;
    e->running_since = clock_mono_ns();
    char trace[128], *t = trace;
    t = fmt_lit(t, "Root=1-");
    t = fmt_hex(t, (uint64_t)(clock_now_ms() / 1000), 8);
    *t++ = '-';
    t = fmt_hex(t, next_random(), 16);
    t = fmt_hex(t, next_random(), 8);
    t = fmt_lit(t, ";Parent=");
    t = fmt_hex(t, next_random(), 16);
    t = fmt_lit(t, ";Sampled=0");
    if (p->lineage) { /* a triggered invocation's place in its chain (common/lambda.h) */
        t = fmt_lit(t, ";Lineage=");
        t = fmt_hex(t, hash_fnv1a(e->ver->function, strlen(e->ver->function)), 8);
        *t++ = ':';
        t += snprintf(t, 12, "%u", (unsigned)p->lineage);
    }
    *t = '\0';
    char fixed[512];
    int n = snprintf(fixed, sizeof fixed,
                     "Lambda-Runtime-Aws-Request-Id: %s\r\nLambda-Runtime-Deadline-Ms: %lld\r\n"
                     "Lambda-Runtime-Invoked-Function-Arn: %s\r\nLambda-Runtime-Trace-Id: %s\r\n",
                     p->request_id, (long long)p->deadline_ms, e->ver->arn, trace);
    char *headers = fixed;
    if (p->attr_len) {
        /* A message from an event source: its attributes follow. */
        size_t fl = n > 0 && (size_t)n < sizeof fixed ? (size_t)n : strlen(fixed);
        headers = malloc(fl + p->attr_len + 1);
        if (headers) {
            memcpy(headers, fixed, fl);
            memcpy(headers + fl, p->payload + p->len, p->attr_len);
            headers[fl + p->attr_len] = '\0';
        } else {
            headers = fixed; /* the invocation still runs, without them */
        }
    }
    http_respond(req, 200, "application/json", headers, p->payload, p->len);
    if (headers != fixed) free(headers);
}

/* The header lines of an invocation's attributes. A value's control
 * characters (none in the JSON of headers, which escapes them; an
 * upstream id could have some) become '?': a line break would end the
 * header. */
static const char *const attr_names[] = {"Spate-Source", "Spate-Upstream-Id",
                                         "Spate-Upstream-Headers"};

static char *put_line(char *o, const char *name, const char *v, size_t len)
{
    size_t nl = strlen(name);
    memcpy(o, name, nl);
    o += nl;
    *o++ = ':';
    *o++ = ' ';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        *o++ = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    *o++ = '\r';
    *o++ = '\n';
    return o;
}

/* Which attribute lines fit (bit i: attr_names[i] is written), and the
 * bytes of all the lines. */
static unsigned attr_lines(const frame_invoke *inv, size_t *bytes)
{
    const char *v[] = {inv->source, inv->upstream_id, inv->headers};
    size_t lens[] = {v[0] ? strlen(v[0]) : 0, v[1] ? strlen(v[1]) : 0, inv->headers_len};
    unsigned mask = 0;
    size_t n = 96; /* the timestamp's and redelivered's lines */
    for (int i = 0; i < 3; i++)
        if (v[i]) {
            mask |= 1u << i;
            n += strlen(attr_names[i]) + 4 + lens[i];
        }
    /* Too long for the answer's head: the headers' line first, then the id's. */
    for (int i = 2; i >= 1 && n > SPATE_EXEC_ATTR_HEADERS_MAX; i--)
        if (mask & (1u << i)) {
            mask &= ~(1u << i);
            n -= strlen(attr_names[i]) + 4 + lens[i];
            n += strlen(attr_names[i]) + 40; /* its "-Omitted: N bytes" line */
        }
    *bytes = n;
    return mask;
}

size_t exec__attr_headers_size(const frame_invoke *inv)
{
    size_t n = 0;
    if (inv->has_attrs) attr_lines(inv, &n);
    return n;
}

size_t exec__attr_headers(char *out, const frame_invoke *inv)
{
    char *o = out;
    size_t bytes;
    unsigned mask = attr_lines(inv, &bytes);
    const char *v[] = {inv->source, inv->upstream_id, inv->headers};
    size_t lens[] = {v[0] ? strlen(v[0]) : 0, v[1] ? strlen(v[1]) : 0, inv->headers_len};
    for (int i = 0; i < 3; i++) {
        if (mask & (1u << i))
            o = put_line(o, attr_names[i], v[i], lens[i]);
        else if (v[i])
            o += sprintf(o, "%s-Omitted: %zu bytes\r\n", attr_names[i], lens[i]);
    }
    if (inv->upstream_ts_ms)
        o += sprintf(o, "Spate-Upstream-Timestamp: %lld\r\n", (long long)inv->upstream_ts_ms);
    o += sprintf(o, "Spate-Redelivered: %s\r\n", inv->redelivered ? "true" : "false");
    return (size_t)(o - out);
}

static void next_aborted(http_request *req)
{
    exec_instance *e = req->data;
    if (e->next_req == req) e->next_req = NULL;
    http_respond(req, 410, NULL, NULL, NULL, 0); /* dropped: the client is gone */
}

/* The running invocation is over: tell the pool. */
static void finish(exec_instance *e, int failed, const char *body, size_t len)
{
    pending_inv *p = e->running;
    e->running = NULL;
    uint64_t took = (clock_mono_ns() - e->running_since) / 1000;
    free(p);
    e->base.output_unread = 1; /* its stdout is the pipe itself: nothing tells */
    e->base.cb->result(&e->base, failed, took > UINT32_MAX ? UINT32_MAX : (uint32_t)took, body, len,
                       e->base.data);
}

static void on_next(exec_instance *e, http_request *req)
{
    if (e->running) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the runtime asked for the next invocation without answering request %s",
                 e->running->request_id);
        finish(e, 1, msg, strlen(msg));
    }
    if (e->next_req) {
        respond_lambda_error(req, 400, "InvalidRequest", "a /next request is already waiting");
        return;
    }
    if (!e->ready) {
        e->ready = 1;
        e->base.cb->ready(&e->base, e->base.data); /* may give it work at once */
    }
    if (!list_empty(&e->queue)) {
        exec__hand_out(e, req);
        return;
    }
    e->next_req = req;
    req->data = e;
    req->on_abort = next_aborted;
}

/* "/{id}/response" or "/{id}/error" after /invocation: the id and which. */
static int parse_answer(const char *rest, char *id, size_t cap, int *is_error)
{
    const char *slash = strchr(rest, '/');
    if (!slash || slash == rest || (size_t)(slash - rest) >= cap) return -1;
    memcpy(id, rest, (size_t)(slash - rest));
    id[slash - rest] = '\0';
    if (strcmp(slash, "/response") == 0)
        *is_error = 0;
    else if (strcmp(slash, "/error") == 0)
        *is_error = 1;
    else
        return -1;
    return 0;
}

/* The message of an error the runtime posted: "Type: message". */
static void error_message(http_request *req, char *out, size_t cap)
{
    const char *type_hdr = http_header(req, "lambda-runtime-function-error-type");
    cJSON *doc = cJSON_ParseWithLength(req->body.data ? req->body.data : "", req->body.len);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "errorMessage");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(doc, "errorType");
    const char *t = cJSON_IsString(type) ? type->valuestring : type_hdr;
    if (cJSON_IsString(msg))
        snprintf(out, cap, "%s%s%s", t ? t : "", t ? ": " : "", msg->valuestring);
    else
        snprintf(out, cap, "%s%s%.*s", t ? t : "Error", req->body.len ? ": " : "",
                 (int)(req->body.len > 2000 ? 2000 : req->body.len),
                 req->body.data ? req->body.data : "");
    cJSON_Delete(doc);
}

static void on_answer(exec_instance *e, http_request *req, const char *rest)
{
    char id[80];
    int is_error;
    if (parse_answer(rest, id, sizeof id, &is_error) != 0) {
        respond_lambda_error(req, 404, "NotFound", "no such Runtime API route");
        return;
    }
    if (!e->running || strcmp(id, e->running->request_id) != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "request id '%.80s' is not the invocation in progress", id);
        respond_lambda_error(req, 400, "InvalidRequestID", msg);
        return;
    }
    if (is_error) {
        char msg[SPATE_ERROR_MESSAGE_MAX];
        error_message(req, msg, sizeof msg);
        finish(e, 1, msg, strlen(msg));
        http_respond(req, 202, "application/json", NULL, "{\"status\":\"OK\"}", 15);
        return;
    }
    if (req->body.len > SPATE_RESPONSE_MAX) {
        char msg[160];
        snprintf(msg, sizeof msg, "the response of %zu bytes is over the limit of %u bytes",
                 req->body.len, SPATE_RESPONSE_MAX);
        finish(e, 1, msg, strlen(msg));
        respond_lambda_error(req, 413, "RequestEntityTooLarge", msg);
        return;
    }
    /* The body stays with the request until it is answered, after this. */
    finish(e, 0, req->body.data ? req->body.data : "", req->body.len);
    http_respond(req, 202, "application/json", NULL, "{\"status\":\"OK\"}", 15);
}

static void on_init_error(exec_instance *e, http_request *req)
{
    char msg[SPATE_ERROR_MESSAGE_MAX];
    error_message(req, msg, sizeof msg);
    free(e->init_error);
    e->init_error = strdup(msg);
    http_respond(req, 202, "application/json", NULL, "{\"status\":\"OK\"}", 15);
    e->base.ops->kill(&e->base);
}

static size_t api_body_limit(const http_request *req, void *data)
{
    /* Room to see a response is too large and say so. */
    return req->method == HTTP_POST ? SPATE_RESPONSE_MAX + 64u * KIB : 0;
}

static void api_handle(http_request *req, void *data)
{
    exec_instance *e = data;
    const char *p = req->path;
    if (strncmp(p, EXEC__API, sizeof EXEC__API - 1) != 0) {
        respond_lambda_error(req, 404, "NotFound", "no such Runtime API route");
        return;
    }
    p += sizeof EXEC__API - 1;
    if (req->method == HTTP_GET && strcmp(p, "/invocation/next") == 0)
        on_next(e, req);
    else if (req->method == HTTP_POST && strncmp(p, "/invocation/", 12) == 0)
        on_answer(e, req, p + 12);
    else if (req->method == HTTP_POST && strcmp(p, "/init/error") == 0)
        on_init_error(e, req);
    else
        respond_lambda_error(req, 404, "NotFound", "no such Runtime API route");
}

const http_handlers exec__api_handlers = {
    .connect = exec__api_connect, .body_limit = api_body_limit, .handle = api_handle};
