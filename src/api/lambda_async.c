/*
 * lambda_async.c - asynchronous invocations (Lambda's Event invocation
 * type, and POST /v1/functions/NAME/invoke?async=1) and their destinations.
 *
 * An async invocation is a message of the function's own topic,
 * spate.async.NAME, which a trigger of the function consumes: the 202 is
 * sent once the message is durable, and the trigger brings the rest —
 * attempts (three: Lambda's first try and two retries), back-off, dead
 * letters (spate.async.NAME.dlq), redelivery after a crash, scaling. The
 * trigger is made by the first async invocation (and goes with the
 * function). The request id the 202 gives travels in the message's
 * attributes (TRIGGERS_INVOKE_SOURCE), so that every attempt runs under it.
 *
 * Destinations: once an invocation is settled (it succeeded, or failed its
 * last attempt), the function's on_success or on_failure topic (its
 * configuration) gets Lambda's destination record. The record is published
 * as the message is settled, not in one transaction with it: a crash in
 * between may lose a record (or, redelivered, send one twice).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "api/lambda.h"
#include "common/err.h"
#include "common/lambda.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/reqid.h"

#define ASYNC_PREFIX TRIGGERS_ASYNC_PREFIX
#define ASYNC_ATTEMPTS 3

void api_async_topic(const char *function, char *out, size_t cap)
{
    snprintf(out, cap, ASYNC_PREFIX "%s", function);
}

int api_async_version(const fn *f, const char *qualifier, size_t len, uint32_t version,
                      uint32_t *run, char *why, size_t whycap)
{
    *run = 0;
    if (!len || (len == 7 && memcmp(qualifier, "$LATEST", 7) == 0)) return 0;
    const reg_alias *al = functions_alias_find(f, qualifier, len);
    if (al && al->weight_version) {
        snprintf(why, whycap,
                 "an async invocation through alias '%.*s', which routes a share to version %u, "
                 "is not supported yet: invoke a version, or an alias of one version",
                 (int)len, qualifier, al->weight_version);
        return -1;
    }
    *run = al ? al->version : version;
    return 0;
}

typedef struct async_ctx {
    api *a;
    http_request *req;
    int lambda; /* answer as Lambda's API does */
    buf payload;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    char request_id[REQID_LEN + 1];
    char headers[64]; /* its attributes' (lambda_async_attrs_write) */
} async_ctx;

static void async_fail(async_ctx *c, int status, const char *code, const char *lambda_type,
                       const char *msg)
{
    if (c->lambda)
        api_lambda_error(c->req, status, lambda_type, "%s", msg);
    else
        http_respond_error(c->req, status, code, "%s", msg);
    buf_free(&c->payload);
    free(c);
}

static void on_stored(void *data, int status, uint64_t first)
{
    async_ctx *c = data;
    (void)first;
    if (status) {
        char msg[200];
        snprintf(msg, sizeof msg, "the invocation could not be stored (%s); it will not run",
                 err_str(status));
        async_fail(c, 503, "store_unavailable", "ServiceException", msg);
        return;
    }
    char hdr[160];
    snprintf(hdr, sizeof hdr, "x-amzn-RequestId: %s\r\nSpate-Request-Id: %s\r\n", c->request_id,
             c->request_id);
    if (c->lambda) {
        http_respond(c->req, 202, "application/json", hdr, NULL, 0);
    } else {
        char body[96];
        int n = snprintf(body, sizeof body, "{\"request_id\":\"%s\"}\n", c->request_id);
        http_respond(c->req, 202, "application/json", hdr, body, (size_t)n);
    }
    buf_free(&c->payload);
    free(c);
}

static void store(async_ctx *c)
{
    size_t hlen = strlen(c->headers);
    queue_attrs attrs = {.source = TRIGGERS_INVOKE_SOURCE,
                         .upstream_id = c->request_id,
                         .headers = hlen ? c->headers : NULL,
                         .headers_len = (uint32_t)hlen};
    queue_input in = {
        .data = c->payload.data ? c->payload.data : "",
        .len = (uint32_t)c->payload.len,
        .attrs = &attrs,
    };
    queue_publish(c->a->q, c->topic, &c->payload, &in, 1, on_stored, c);
}

static void on_trigger_ready(void *data, int status)
{
    async_ctx *c = data;
    if (status) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot make the trigger of topic '%s' (%s)", c->topic,
                 err_str(status));
        async_fail(c, 503, "store_unavailable", "ServiceException", msg);
        return;
    }
    store(c);
}

/* Adds the trigger of function's async invocations on topic, its
 * spate.async.NAME (three attempts, then spate.async.NAME.dlq). */
static int add_async_trigger(api *a, const char *function, const char *topic, queue_done_cb done,
                             void *data)
{
    queue_sub_config cfg = {.max_attempts = ASYNC_ATTEMPTS};
    snprintf(cfg.function, sizeof cfg.function, "%s", function);
    snprintf(cfg.dlq, sizeof cfg.dlq, "%.*s.dlq", (int)sizeof cfg.dlq - 5, topic);
    return triggers_add(a->tr, topic, &cfg, done, data);
}

void api_async_invoke(api *a, http_request *req, fn *f, uint32_t version, int lambda)
{
    async_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        if (lambda)
            api_lambda_error(req, 503, "ServiceException", "out of memory");
        else
            http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    c->a = a;
    c->req = req;
    c->lambda = lambda;
    buf_init(&c->payload, 0);
    buf_move(&c->payload, &req->body);
    api_async_topic(f->name, c->topic, sizeof c->topic);
    reqid_next(c->request_id);
    lambda_async_attrs aa = {.version = version};
    lambda_async_attrs_write(&aa, c->headers, sizeof c->headers);
    if (c->payload.len > a->limits.message_max) {
        char msg[160];
        snprintf(msg, sizeof msg, "the payload is %zu bytes; an async invocation takes at most %zu",
                 c->payload.len, a->limits.message_max);
        async_fail(c, 413, "payload_too_large", "RequestTooLargeException", msg);
        return;
    }
    if (queue_find_sub(a->q, c->topic, f->name)) {
        store(c);
        return;
    }
    if (add_async_trigger(a, f->name, c->topic, on_trigger_ready, c) != 0)
        async_fail(c, 503, "store_unavailable", "ServiceException",
                   "cannot make the trigger of the async invocations");
}

/* --- Destinations -------------------------------------------------------------------- */

/* A payload as a record holds it: its JSON, else the text. */
static cJSON *payload_json(const char *data, size_t len)
{
    if (!len) return cJSON_CreateNull();
    cJSON *doc = cJSON_ParseWithLength(data, len);
    if (doc) return doc;
    char *text = malloc(len + 1);
    if (!text) return cJSON_CreateNull();
    memcpy(text, data, len);
    text[len] = '\0';
    doc = cJSON_CreateString(text);
    free(text);
    return doc;
}

static void on_record_published(void *data, int status, uint64_t first)
{
    char *topic = data;
    (void)first;
    if (status)
        log_warn("cannot publish a destination record: %s topic=%s", err_str(status), topic);
    free(topic);
}

static void on_record_trigger(void *data, int status)
{
    (void)data;
    if (status)
        log_warn("cannot make the trigger of an async topic a destination record went to: %s",
                 err_str(status));
}

/* The attributes of the async invocation o ran (zero for a message of
 * another source). */
static void attrs_of(const trigger_outcome *o, lambda_async_attrs *aa)
{
    const queue_attrs *at = o->msg->attrs;
    aa->version = aa->hops = 0;
    if (at && at->source && strcmp(at->source, TRIGGERS_INVOKE_SOURCE) == 0)
        lambda_async_attrs_read(at->headers, at->headers_len, aa);
}

/* Lambda's destination record of a settled invocation. */
static char *destination_record(const trigger_outcome *o, const fn *f)
{
    char ts[40];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    lambda_async_attrs aa;
    attrs_of(o, &aa);
    char version[16] = "$LATEST", arn[SPATE_NAME_MAX + 100];
    if (aa.version) snprintf(version, sizeof version, "%u", aa.version);
    snprintf(arn, sizeof arn, "arn:aws:lambda:%s:%s:function:%s:%s", LAMBDA_REGION, LAMBDA_ACCOUNT,
             o->function, version);
    int ok = o->outcome == POOL_OK;
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "version", "1.0");
    cJSON_AddStringToObject(doc, "timestamp", ts);
    cJSON *rc = cJSON_AddObjectToObject(doc, "requestContext");
    cJSON_AddStringToObject(rc, "requestId", o->request_id);
    cJSON_AddStringToObject(rc, "functionArn", arn);
    cJSON_AddStringToObject(rc, "condition", ok ? "Success" : "RetriesExhausted");
    cJSON_AddNumberToObject(rc, "approximateInvokeCount", o->attempt);
    cJSON_AddItemToObject(doc, "requestPayload", payload_json(o->msg->data, o->msg->len));
    cJSON *resp = cJSON_AddObjectToObject(doc, "responseContext");
    cJSON_AddNumberToObject(resp, "statusCode", 200);
    cJSON_AddStringToObject(resp, "executedVersion", version);
    if (ok) {
        cJSON_AddItemToObject(doc, "responsePayload", payload_json(o->body, o->len));
    } else {
        cJSON_AddStringToObject(resp, "functionError", "Unhandled");
        char *err = api_lambda_error_json(o->outcome, o->body, o->len, o->request_id,
                                          f ? f->active.config.timeout_ms : 0);
        cJSON_AddItemToObject(doc, "responsePayload", err ? cJSON_Parse(err) : cJSON_CreateNull());
        free(err);
    }
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return text;
}

/* A record for dest: to another function's async topic it is an async
 * invocation of it, one hop further down the chain, with a request id of
 * its own; at SPATE_ASYNC_HOPS_MAX the chain is taken for a loop (A's
 * success invokes B, B's A, ...) and the record goes to the dead letters of
 * dest, as Lambda sends the event it stops to the function's dead-letter
 * queue, where `spate dlq` shows and redrives it. */
static void publish_record(api *a, const trigger_outcome *o, const char *dest, char *text)
{
    char *topic = strdup(dest);
    if (!topic) {
        log_warn("cannot send a destination record: out of memory fn=%s req=%s", o->function,
                 o->request_id);
        free(text);
        return;
    }
    buf body;
    buf_init(&body, 0);
    body.data = text; /* taken by the queue */
    body.len = strlen(text);
    body.cap = body.max = body.len;
    queue_input in = {.data = text, .len = (uint32_t)body.len};
    size_t plen = sizeof ASYNC_PREFIX - 1;
    char request_id[REQID_LEN + 1], headers[64], dlq[SPATE_TOPIC_NAME_MAX + 1], error[300];
    queue_attrs attrs = {.source = TRIGGERS_INVOKE_SOURCE, .upstream_id = request_id};
    if (strncmp(dest, ASYNC_PREFIX, plen) == 0) {
        lambda_async_attrs aa;
        attrs_of(o, &aa);
        aa.version = 0;
        aa.hops++;
        reqid_next(request_id);
        attrs.headers = headers;
        attrs.headers_len = (uint32_t)lambda_async_attrs_write(&aa, headers, sizeof headers);
        in.attrs = &attrs;
        if (aa.hops >= SPATE_ASYNC_HOPS_MAX &&
            (size_t)snprintf(dlq, sizeof dlq, "%s.dlq", dest) < sizeof dlq) {
            a->async_loops_stopped++;
            log_warn("recursive loop stopped: %u async invocations, each by the one before's "
                     "destination; the record goes to the dead letters of '%s' fn=%s next=%s "
                     "req=%s",
                     aa.hops, dest, o->function, dest + plen, o->request_id);
            snprintf(error, sizeof error,
                     "recursive loop stopped: function '%s' would have been invoked by the "
                     "destination record of '%s' after a chain of %u async invocations",
                     dest + plen, o->function, aa.hops);
            in.error = error;
            in.source_topic = dest;
            free(topic);
            topic = strdup(dlq);
            if (!topic) {
                log_warn("cannot send a destination record: out of memory fn=%s req=%s",
                         o->function, o->request_id);
                buf_free(&body);
                return;
            }
        }
    }
    /* A function never invoked async has no trigger on its topic yet (the
     * first async invocation adds it): the record would wait there. A new
     * trigger starts at the oldest message, so it may come after. */
    const char *next = in.attrs ? dest + plen : "";
    int make_trigger = next[0] && !in.error && functions_find(a->table, next, strlen(next)) &&
                       !queue_find_sub(a->q, dest, next);
    queue_publish(a->q, topic, &body, &in, 1, on_record_published, topic);
    if (make_trigger && add_async_trigger(a, next, dest, on_record_trigger, NULL) != 0)
        log_warn("cannot make the trigger of the async invocations of '%s': a destination "
                 "record waits in '%s' fn=%s req=%s",
                 next, dest, o->function, o->request_id);
}

static void on_outcome(const trigger_outcome *o, void *data)
{
    api *a = data;
    size_t plen = sizeof ASYNC_PREFIX - 1;
    if (!o->final || strncmp(o->topic, ASYNC_PREFIX, plen) != 0 ||
        strcmp(o->topic + plen, o->function) != 0)
        return;
    fn *f = functions_find(a->table, o->function, strlen(o->function));
    const char *dest = !f                      ? ""
                       : o->outcome == POOL_OK ? f->active.config.on_success
                                               : f->active.config.on_failure;
    if (!dest[0]) return;
    if (strcmp(dest, o->topic) == 0) {
        /* A version stored before the deploy refused this (a rollback to
         * it): the record would invoke the function again, without end. */
        log_warn("not sending a destination record to the function's own async topic fn=%s "
                 "req=%s topic=%s",
                 o->function, o->request_id, dest);
        return;
    }
    char *text = destination_record(o, f);
    if (!text) {
        log_warn("cannot build a destination record: out of memory fn=%s req=%s", o->function,
                 o->request_id);
        return;
    }
    publish_record(a, o, dest, text);
}

void api_async_start(api *a)
{
    if (a->tr) triggers_set_outcome_hook(a->tr, on_outcome, a);
}
