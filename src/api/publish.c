/*
 * publish.c - POST /v1/topics/TOPIC/messages: one message, or an NDJSON
 * batch (one message a line), published all or nothing; each message's key
 * from a header or from a field of its JSON.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/utf8.h"

/* A message being parsed: offsets, because the buffers still move. */
typedef struct pending_msg {
    size_t data_off, len;
    size_t key_off; /* into the key arena */
    uint32_t key_len;
    int has_key;
} pending_msg;

typedef struct parse_state {
    pending_msg *msgs;
    size_t n, cap;
    buf keys; /* keys, NUL-terminated, appended to the body at the end */
    int status;
    const char *code;
    char why[300];
} parse_state;

static int parse_fail(parse_state *ps, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int parse_fail(parse_state *ps, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->why, sizeof ps->why, fmt, ap);
    va_end(ap);
    ps->status = status;
    ps->code = code;
    return -1;
}

static int add_key(parse_state *ps, const char *key, size_t len, size_t line, pending_msg *m)
{
    if (len > SPATE_KEY_MAX)
        return parse_fail(ps, 400, "bad_key", "key of message %zu is %zu bytes; at most %d", line,
                          len, SPATE_KEY_MAX);
    if (!utf8_valid(key, len))
        return parse_fail(ps, 400, "bad_key", "key of message %zu is not valid UTF-8", line);
    m->key_off = ps->keys.len;
    m->key_len = (uint32_t)len;
    m->has_key = 1;
    if (buf_append(&ps->keys, key, len) || buf_append(&ps->keys, "", 1))
        return parse_fail(ps, 503, "out_of_memory", "cannot hold the keys");
    return 0;
}

/* The key of one NDJSON line from its top-level field. */
static int key_from_field(parse_state *ps, const char *line, size_t len, const char *field,
                          size_t lineno, pending_msg *m)
{
    /* The whole line is the object: '{"a":1} junk' or '{"a":1}{"a":2}' is
     * not one (cJSON stops after the first value and would take it). */
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    while (doc && end && end < line + len && memchr(" \t\r\n", *end, 4)) end++;
    if (!cJSON_IsObject(doc) || end != line + len) {
        cJSON_Delete(doc);
        return parse_fail(ps, 400, "bad_message",
                          "message %zu is not a JSON object (Spate-Key-Field)", lineno);
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);
    int rc;
    if (cJSON_IsString(v)) {
        rc = add_key(ps, v->valuestring, strlen(v->valuestring), lineno, m);
    } else if (cJSON_IsNumber(v) || cJSON_IsBool(v)) {
        char *text = cJSON_PrintUnformatted(v);
        rc = text ? add_key(ps, text, strlen(text), lineno, m)
                  : parse_fail(ps, 503, "out_of_memory", "out of memory");
        free(text);
    } else {
        rc = parse_fail(ps, 400, "bad_key", "message %zu has no string or number field '%s'",
                        lineno, field);
    }
    cJSON_Delete(doc);
    return rc;
}

static int add_message(parse_state *ps, const buf *body, size_t off, size_t len, size_t lineno,
                       size_t max, const char *field, const char *key)
{
    if (len > max)
        return parse_fail(ps, 413, "message_too_large",
                          "message %zu is %zu bytes; the limit is %zu (nothing was published)",
                          lineno, len, max);
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64;
        pending_msg *p = realloc(ps->msgs, cap * sizeof *p);
        if (!p) return parse_fail(ps, 503, "out_of_memory", "out of memory");
        ps->msgs = p;
        ps->cap = cap;
    }
    pending_msg *m = &ps->msgs[ps->n++];
    memset(m, 0, sizeof *m);
    m->data_off = off;
    m->len = len;
    if (field) return key_from_field(ps, body->data + off, len, field, lineno, m);
    if (key) return add_key(ps, key, strlen(key), lineno, m);
    return 0;
}

typedef struct publish_ctx {
    http_request *req;
    size_t n;
    int shared; /* a queue shared by nodes: a batch is not one transaction */
} publish_ctx;

static void on_published(void *data, int status, uint64_t first)
{
    publish_ctx *c = data;
    http_request *req = c->req;
    if (status == ERR_CLOSED) {
        http_respond_error(req, 503, "shutting_down",
                           "spated is shutting down; nothing was published");
    } else if (status == ERR_DISCONNECTED) {
        http_respond_error(req, 503, "cluster_unavailable",
                           "this node is cut off from NATS and reconnecting; nothing was "
                           "published (another node can take it)");
    } else if (status != 0 && c->shared) {
        http_respond_error(req, 503, "store_unavailable",
                           "JetStream did not store every message (see the node's log); some may "
                           "have been stored: publish again");
    } else if (status != 0) {
        http_respond_error(req, 503, "store_unavailable",
                           "the store failed (%s); nothing was published", err_str(status));
    } else {
        char body[160];
        /* first 0: a cluster's stream, whose numbers the publish does not learn. */
        int len = first
                      ? snprintf(body, sizeof body,
                                 "{\"published\":%zu,\"first_seq\":%llu,\"last_seq\":%llu}\n", c->n,
                                 (unsigned long long)first, (unsigned long long)(first + c->n - 1))
                      : snprintf(body, sizeof body, "{\"published\":%zu}\n", c->n);
        http_respond(req, 202, "application/json", NULL, body, (size_t)len);
    }
    free(c);
}

void api_publish(api *a, http_request *req, const char *topic)
{
    const char *ctype = http_header(req, "content-type");
    const char *key = http_header(req, "spate-key");
    const char *field = http_header(req, "spate-key-field");
    int ndjson = ctype && strncasecmp(ctype, "application/x-ndjson", 20) == 0;
    parse_state ps = {0};
    buf_init(&ps.keys, (size_t)SPATE_KEY_MAX * 1024 + 64 * KIB);
    buf *body = &req->body;
    int rc = 0;
    if (key && field)
        rc = parse_fail(&ps, 400, "bad_key", "give Spate-Key or Spate-Key-Field, not both");
    else if (field && (!*field || strlen(field) > 256))
        rc = parse_fail(&ps, 400, "bad_key", "Spate-Key-Field must name a field (1 to 256 bytes)");
    if (!rc && !ndjson) {
        rc = add_message(&ps, body, 0, body->len, 1, a->limits.message_max, field, key);
    } else if (!rc) {
        size_t off = 0, lineno = 0;
        while (!rc && off < body->len) {
            const char *start = body->data + off;
            const char *nl = memchr(start, '\n', body->len - off);
            size_t len = nl ? (size_t)(nl - start) : body->len - off;
            size_t next = off + len + (nl ? 1 : 0);
            if (len && start[len - 1] == '\r') len--;
            lineno++;
            if (len > 0)
                rc = add_message(&ps, body, off, len, lineno, a->limits.message_max, field, key);
            off = next;
        }
        if (!rc && ps.n == 0)
            rc = parse_fail(&ps, 400, "bad_message", "the batch holds no message");
    }
    if (!rc && api_topic_over_limit(a, topic)) {
        api_respond_topic_limit(a, req, topic);
        free(ps.msgs);
        buf_free(&ps.keys);
        return;
    }
    if (rc) {
        http_respond_error(req, ps.status, ps.code, "%s", ps.why);
        free(ps.msgs);
        buf_free(&ps.keys);
        return;
    }
    /* The keys go after the body, so that one allocation holds the batch. */
    size_t keys_at = body->len;
    body->max = body->len + ps.keys.len + 1;
    queue_input *in = malloc(ps.n * sizeof *in);
    publish_ctx *c = malloc(sizeof *c);
    if (!in || !c || (ps.keys.len && buf_append(body, ps.keys.data, ps.keys.len))) {
        free(in);
        free(c);
        free(ps.msgs);
        buf_free(&ps.keys);
        http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    /* An empty body is one empty message, and has no buffer at all. */
    const char *base = body->data ? body->data : "";
    for (size_t i = 0; i < ps.n; i++) {
        pending_msg *m = &ps.msgs[i];
        in[i] = (queue_input){
            .key = m->has_key ? base + keys_at + m->key_off : NULL,
            .key_len = m->key_len,
            .data = base + m->data_off,
            .len = (uint32_t)m->len,
        };
    }
    c->req = req;
    c->n = ps.n;
    c->shared = (queue_flags(a->q) & QUEUE_SHARED) != 0;
    free(ps.msgs);
    buf_free(&ps.keys);
    queue_publish(a->q, topic, body, in, c->n, on_published, c);
    free(in);
}
