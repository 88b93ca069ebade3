/*
 * topics.c - the /v1/topics and /v1/triggers routes: publishing (a message or
 * an NDJSON batch, all or nothing), topic stats, reading stored messages
 * (dead letters), redriving them, and adding, listing and removing triggers.
 */
#include <openssl/evp.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "api/json.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/names.h"
#include "common/parse.h"
#include "common/utf8.h"

#define NAME_FMT(len) (int)((len) > 128 ? 128 : (len))

/* --- Publish -------------------------------------------------------------------------- */

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
                           "the store failed (%s: disk full or I/O error); nothing was published",
                           err_str(status));
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

static void publish(api *a, http_request *req, const char *topic)
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

/* --- Topic stats ---------------------------------------------------------------------- */

static double age_s(int64_t oldest_ms)
{
    return oldest_ms ? (double)(clock_now_ms() - oldest_ms) / 1000.0 : 0;
}

static cJSON *trigger_json(const trigger_view *v)
{
    cJSON *o = registry_trigger_json(v->topic, v->cfg);
    cJSON_AddNumberToObject(o, "depth", (double)v->stats.depth);
    cJSON_AddNumberToObject(o, "in_flight", (double)v->stats.leased);
    cJSON_AddNumberToObject(o, "retrying", (double)v->stats.retrying);
    cJSON_AddNumberToObject(o, "oldest_age_s", age_s(v->stats.oldest_ms));
    cJSON_AddNumberToObject(o, "delivered", (double)v->stats.delivered);
    cJSON_AddNumberToObject(o, "acknowledged", (double)v->stats.acked);
    cJSON_AddNumberToObject(o, "dead_lettered", (double)v->stats.dead_lettered);
    return o;
}

static void sum_trigger(const trigger_view *v, void *data)
{
    topic_summary *sum = data;
    if (v->stats.depth > sum->depth) sum->depth = v->stats.depth;
    sum->in_flight += v->stats.leased;
    if (v->stats.oldest_ms && (!sum->oldest_ms || v->stats.oldest_ms < sum->oldest_ms))
        sum->oldest_ms = v->stats.oldest_ms;
}

int api_topic_summary(api *a, const char *topic, topic_summary *out)
{
    memset(out, 0, sizeof *out);
    queue_topic_stats ts;
    int rc = queue_topic_get_stats(a->q, topic, &ts);
    if (rc != 0) return rc;
    triggers_each_of_topic(a->tr, topic, sum_trigger, out);
    /* Depth: what the slowest trigger has left; with no trigger, what is stored. */
    if (!ts.subscriptions) {
        out->depth = ts.stored;
        out->oldest_ms = ts.oldest_ms;
    }
    out->oldest_age_s = age_s(out->oldest_ms);
    out->published = ts.published;
    out->stored = ts.stored;
    out->bytes = ts.bytes;
    /* The queue's own counts: those of removed triggers stay in them. */
    out->acked = ts.acked;
    out->dead_lettered = ts.dead_lettered;
    out->retention = ts.retention;
    return 0;
}

typedef struct topic_ctx {
    const char *topic;
    cJSON *triggers, *dlqs, *dlq_of;
} topic_ctx;

static int has_string(const cJSON *arr, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0) return 1;
    return 0;
}

/* The topic's own triggers and where their dead letters go; the triggers
 * whose dead letters come here. */
static void add_trigger(const trigger_view *v, void *data)
{
    topic_ctx *c = data;
    if (strcmp(v->topic, c->topic) == 0) {
        cJSON_AddItemToArray(c->triggers, trigger_json(v));
        if (!has_string(c->dlqs, v->cfg->dlq))
            cJSON_AddItemToArray(c->dlqs, cJSON_CreateString(v->cfg->dlq));
    }
    if (strcmp(v->cfg->dlq, c->topic) == 0)
        cJSON_AddItemToArray(c->dlq_of, api_trigger_ref(v->topic, v->cfg->function));
}

static cJSON *retention_json(const queue_retention *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "max_age_ms", (double)r->max_age_ms);
    cJSON_AddNumberToObject(o, "max_bytes", (double)r->max_bytes);
    cJSON_AddNumberToObject(o, "max_messages", (double)r->max_messages);
    return o;
}

static cJSON *topic_json(api *a, const char *topic)
{
    topic_summary sum;
    if (api_topic_summary(a, topic, &sum) != 0) return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", topic);
    topic_ctx c = {topic, cJSON_CreateArray(), cJSON_CreateArray(), cJSON_CreateArray()};
    cJSON *arr = c.triggers;
    triggers_each(a->tr, add_trigger, &c);
    cJSON_AddNumberToObject(o, "depth", (double)sum.depth);
    cJSON_AddNumberToObject(o, "in_flight", (double)sum.in_flight);
    cJSON_AddNumberToObject(o, "oldest_age_s", sum.oldest_age_s);
    cJSON_AddNumberToObject(o, "published", (double)sum.published);
    cJSON_AddNumberToObject(o, "acknowledged", (double)sum.acked);
    cJSON_AddNumberToObject(o, "dead_lettered", (double)sum.dead_lettered);
    cJSON_AddNumberToObject(o, "stored", (double)sum.stored);
    cJSON_AddNumberToObject(o, "bytes", (double)sum.bytes);
    cJSON_AddItemToObject(o, "retention", retention_json(&sum.retention));
    cJSON_AddItemToObject(o, "triggers", arr);
    cJSON_AddItemToObject(o, "dead_letter_topics", c.dlqs);
    cJSON_AddItemToObject(o, "dead_letter_topic_of", c.dlq_of);
    return o;
}

static void list_topic(const char *topic, void *data)
{
    void **ctx = data;
    cJSON_AddItemToArray(ctx[1], topic_json(ctx[0], topic));
}

/* --- Reading messages and redriving ----------------------------------------------------- */

static void add_bytes(cJSON *o, const char *name, const char *data, size_t len)
{
    if (utf8_valid(data, len)) {
        char *s = malloc(len + 1);
        if (!s) return;
        memcpy(s, data, len);
        s[len] = '\0';
        cJSON_AddStringToObject(o, name, s);
        free(s);
        return;
    }
    /* Not text: base64, under a name that says so. */
    char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    if (!b64) return;
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)data, (int)len);
    char key[64];
    snprintf(key, sizeof key, "%s_base64", name);
    cJSON_AddStringToObject(o, key, b64);
    free(b64);
}

static void on_read(void *data, int status, queue_msg *const *msgs, size_t n)
{
    http_request *req = data;
    if (status == ERR_NOTFOUND) {
        http_respond_error(req, 404, "not_found", "the topic does not exist");
        return;
    }
    if (status) {
        http_respond_error(req, 503, "store_unavailable", "cannot read messages: %s",
                           err_str(status));
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "messages");
    for (size_t i = 0; i < n; i++) {
        const queue_msg *m = msgs[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seq", (double)m->seq);
        cJSON_AddNumberToObject(o, "published_ms", (double)m->published_ms);
        if (m->key) add_bytes(o, "key", m->key, m->key_len);
        add_bytes(o, "payload", m->data, m->len);
        if (m->source) {
            cJSON_AddStringToObject(o, "source", m->source);
            cJSON_AddNumberToObject(o, "attempts", m->attempts);
            cJSON_AddStringToObject(o, "error", m->error ? m->error : "");
        }
        cJSON_AddItemToArray(arr, o);
    }
    api_respond_json(req, 200, doc);
}

typedef struct read_params {
    uint64_t after;
    uint32_t limit;
    char why[200];
} read_params;

static int on_read_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    read_params *p = data;
    if (strcmp(k, "limit") == 0)
        return api_number_param(k, v, vlen, 1, 1000, &p->limit, p->why, sizeof p->why);
    if (strcmp(k, "after") == 0) {
        /* Strictly digits, like every other number here (no sign, spaces, hex or
         * exponent: strtoull took "-1" as 2^64-1); a seq is stored as SQLite's
         * signed 64-bit integer, hence the ceiling. */
        if (parse_u64(v, vlen, 0, INT64_MAX, &p->after)) {
            snprintf(p->why, sizeof p->why,
                     "parameter 'after' must be a message seq (an integer from 0 to %lld)",
                     (long long)INT64_MAX);
            return ERR_INVAL;
        }
        return 0;
    }
    snprintf(p->why, sizeof p->why, "unknown parameter '%.*s'", (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

/* A redrive moves dead letters (messages that carry their source topic) and
 * nothing else. On a topic that is no trigger's dead-letter topic and holds
 * no dead letter, it is a mistake (an ordinary topic named for its dead-letter
 * topic): refused with 409 rather than answered with a quiet 0. */
typedef struct redrive_req {
    http_request *req;
    int is_dlq; /* some trigger dead-letters into the topic */
    uint64_t after;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
} redrive_req;

static void find_dlq(queue_sub *sub, void *data)
{
    redrive_req *r = data;
    if (strcmp(queue_sub_get_config(sub)->dlq, r->topic) == 0) r->is_dlq = 1;
}

static void on_redriven(void *data, int status, uint64_t moved)
{
    redrive_req *r = data;
    http_request *req = r->req;
    if (status == ERR_NOTFOUND) {
        http_respond_error(req, 404, "not_found", "topic '%s' does not exist", r->topic);
    } else if (status) {
        http_respond_error(req, 503, "store_unavailable", "cannot redrive: %s", err_str(status));
    } else if (moved == 0 && !r->is_dlq) {
        char after[48] = "";
        if (r->after)
            snprintf(after, sizeof after, " after seq %llu", (unsigned long long)r->after);
        http_respond_error(req, 409, "not_dead_letters",
                           "topic '%s' is not the dead-letter topic of any trigger and holds no "
                           "dead letters%s: nothing to redrive, nothing changed",
                           r->topic, after);
    } else {
        char body[64];
        int n = snprintf(body, sizeof body, "{\"redriven\":%llu}\n", (unsigned long long)moved);
        http_respond(req, 200, "application/json", NULL, body, (size_t)n);
    }
    free(r);
}

static void redrive_route(api *a, http_request *req, const char *topic)
{
    read_params p = {.limit = 1000};
    if (http_query_parse(req->query, on_read_param, &p)) {
        http_respond_error(req, 400, "bad_parameter", "%s",
                           p.why[0] ? p.why : "malformed query string");
        return;
    }
    redrive_req *r = calloc(1, sizeof *r);
    if (!r) {
        http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    r->req = req;
    r->after = p.after;
    snprintf(r->topic, sizeof r->topic, "%s", topic);
    queue_each_sub(a->q, find_dlq, r);
    int rc = queue_redrive(a->q, topic, p.after, p.limit, on_redriven, r);
    if (rc) {
        free(r);
        if (rc == ERR_NOTFOUND)
            http_respond_error(req, 404, "not_found", "topic '%s' does not exist", topic);
        else
            http_respond_error(req, 503, "store_unavailable", "cannot redrive: %s", err_str(rc));
    }
}

/* --- Triggers ---------------------------------------------------------------------------- */

typedef struct trigger_params {
    queue_sub_config cfg;
    int update; /* change an existing trigger; without it, an existing one is refused */
    char why[256];
} trigger_params;

static int on_trigger_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    trigger_params *p = data;
    queue_sub_config *c = &p->cfg;
    if (strcmp(k, "max_attempts") == 0 || strcmp(k, "max-attempts") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_MAX_ATTEMPTS_CEILING, &c->max_attempts, p->why,
                                sizeof p->why);
    /* 0: none (a change takes a deadline or a concurrency limit away). */
    if (strcmp(k, "deadline") == 0 || strcmp(k, "deadline_ms") == 0)
        return api_number_param(k, v, vlen, 0, 86400000, &c->deadline_ms, p->why, sizeof p->why);
    if (strcmp(k, "max_concurrency") == 0 || strcmp(k, "max-concurrency") == 0)
        return api_number_param(k, v, vlen, 0, 1000000, &c->max_concurrency, p->why, sizeof p->why);
    if (strcmp(k, "ordered") == 0)
        return api_bool_param(k, v, vlen, &c->ordered, p->why, sizeof p->why);
    if (strcmp(k, "update") == 0)
        return api_bool_param(k, v, vlen, &p->update, p->why, sizeof p->why);
    if (strcmp(k, "dlq") == 0) {
        if (!name_is_topic(v, vlen)) {
            snprintf(p->why, sizeof p->why, "parameter 'dlq' is not a valid topic name");
            return ERR_INVAL;
        }
        memcpy(c->dlq, v, vlen);
        c->dlq[vlen] = '\0';
        return 0;
    }
    snprintf(p->why, sizeof p->why, "unknown parameter '%.*s'", (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

typedef struct trigger_req {
    api *a;
    http_request *req;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    char function[SPATE_NAME_MAX + 1];
    int removing;
    int updating; /* 200, not 201 */
} trigger_req;

static void on_trigger_done(void *data, int status)
{
    trigger_req *t = data;
    if (status) {
        http_respond_error(t->req, 503, "store_unavailable", "cannot save the trigger: %s",
                           err_str(status));
    } else if (t->removing) {
        http_respond(t->req, 204, NULL, NULL, NULL, 0);
    } else {
        cJSON *doc = NULL;
        queue_sub *sub = queue_find_sub(t->a->q, t->topic, t->function);
        if (sub) {
            trigger_view v = {.topic = t->topic, .cfg = queue_sub_get_config(sub)};
            queue_sub_get_stats(sub, &v.stats);
            doc = trigger_json(&v);
        }
        api_respond_json(t->req, t->updating ? 200 : 201, doc);
    }
    free(t);
}

static void add_trigger_route(api *a, http_request *req, const char *topic, const char *function)
{
    if (!functions_find(a->table, function, strlen(function))) {
        http_respond_error(req, 404, "not_found", "function '%s' does not exist", function);
        return;
    }
    /* A change starts from the trigger as it is: what the request does not
     * name stays (its dead-letter topic, order, attempts). */
    queue_sub *sub = queue_find_sub(a->q, topic, function);
    trigger_params p = {0};
    if (sub) {
        p.cfg = *queue_sub_get_config(sub);
    } else {
        snprintf(p.cfg.function, sizeof p.cfg.function, "%s", function);
        p.cfg.max_attempts = SPATE_MAX_ATTEMPTS_DEFAULT;
    }
    int rc = http_query_parse(req->query, on_trigger_param, &p);
    if (rc) {
        if (!p.why[0]) snprintf(p.why, sizeof p.why, "malformed query string");
        http_respond_error(req, 400, "bad_parameter", "%s", p.why);
        return;
    }
    if (sub && !p.update) {
        http_respond_error(req, 409, "trigger_exists",
                           "a trigger from '%s' to '%s' exists: change it with 'spate trigger "
                           "set' (update=true), which keeps what it does not name",
                           topic, function);
        return;
    }
    if (!sub && p.update) {
        http_respond_error(req, 404, "not_found",
                           "no trigger from '%s' to '%s' to change (spate trigger add makes one)",
                           topic, function);
        return;
    }
    if (!p.cfg.dlq[0]) {
        if (strlen(topic) + 4 > SPATE_TOPIC_NAME_MAX) {
            http_respond_error(req, 400, "bad_parameter",
                               "topic name too long for the default dead-letter topic; give dlq");
            return;
        }
        snprintf(p.cfg.dlq, sizeof p.cfg.dlq, "%s.dlq", topic);
    }
    if (strcmp(p.cfg.dlq, topic) == 0) {
        http_respond_error(req, 400, "bad_parameter", "the dead-letter topic cannot be the topic");
        return;
    }
    trigger_req *t = calloc(1, sizeof *t);
    if (!t) {
        http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    t->a = a;
    t->req = req;
    t->updating = p.update;
    snprintf(t->topic, sizeof t->topic, "%s", topic);
    snprintf(t->function, sizeof t->function, "%s", function);
    if (triggers_add(a->tr, topic, &p.cfg, on_trigger_done, t) != 0) {
        free(t);
        http_respond_error(req, 503, "unavailable", "cannot add the trigger now");
    }
}

static void list_trigger(const trigger_view *v, void *data)
{
    cJSON_AddItemToArray(data, trigger_json(v));
}

/* --- Deleting, purging and retention --------------------------------------------------- */

/* DELETE /v1/topics/TOPIC[?force=true]. A topic some trigger reads or
 * dead-letters into is refused (409, naming them); with force the triggers
 * that read it are removed first (named in the answer), and those that
 * dead-letter into it stay (their next dead letter makes it anew). */
typedef struct delete_req {
    api *a;
    http_request *req;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    cJSON *readers;   /* the triggers that read it */
    cJSON *dead_from; /* the triggers that dead-letter into it */
    cJSON *removed;   /* of the readers, removed (force=true) */
} delete_req;

static void delete_req_free(delete_req *d)
{
    cJSON_Delete(d->readers);
    cJSON_Delete(d->dead_from);
    cJSON_Delete(d->removed);
    free(d);
}

static void find_users(const trigger_view *v, void *data)
{
    delete_req *d = data;
    if (strcmp(v->topic, d->topic) == 0)
        cJSON_AddItemToArray(d->readers, api_trigger_ref(v->topic, v->cfg->function));
    else if (strcmp(v->cfg->dlq, d->topic) == 0)
        cJSON_AddItemToArray(d->dead_from, api_trigger_ref(v->topic, v->cfg->function));
}

/* "T -> f, U -> g" of two lists of trigger refs (either may be NULL) into out. */
static void name_triggers(char *out, size_t cap, const cJSON *refs, const cJSON *more)
{
    size_t n = 0;
    out[0] = '\0';
    const cJSON *lists[2] = {refs, more}, *e;
    for (int l = 0; l < 2; l++) cJSON_ArrayForEach(e, lists[l])
        {
            if (n < cap)
                n += (size_t)snprintf(out + n, cap - n, "%s%s -> %s", n ? ", " : "",
                                      cJSON_GetObjectItemCaseSensitive(e, "topic")->valuestring,
                                      cJSON_GetObjectItemCaseSensitive(e, "function")->valuestring);
        }
}

static void on_topic_deleted(void *data, int status, uint64_t messages)
{
    delete_req *d = data;
    http_request *req = d->req;
    if (status == ERR_NOTFOUND) {
        http_respond_error(req, 404, "not_found", "topic '%s' does not exist", d->topic);
    } else if (status == ERR_BUSY) {
        http_respond_error(req, 409, "topic_in_use",
                           "a trigger began to read topic '%s' meanwhile: nothing deleted",
                           d->topic);
    } else if (status) {
        char removed[1024];
        name_triggers(removed, sizeof removed, d->removed, NULL);
        http_respond_error(req, 503, "store_unavailable", "cannot delete topic '%s': %s%s%s",
                           d->topic, err_str(status),
                           removed[0] ? "; the triggers removed before: " : "", removed);
    } else {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "deleted", d->topic);
        cJSON_AddNumberToObject(doc, "messages", (double)messages);
        cJSON_AddItemToObject(doc, "removed_triggers",
                              d->removed ? d->removed : cJSON_CreateArray());
        d->removed = NULL;
        cJSON_AddItemToObject(doc, "dead_letter_topic_of", d->dead_from);
        d->dead_from = NULL;
        api_respond_json(req, 200, doc);
    }
    delete_req_free(d);
}

static void delete_topic_now(delete_req *d)
{
    int rc = queue_topic_delete(d->a->q, d->topic, on_topic_deleted, d);
    if (rc) on_topic_deleted(d, rc, 0);
}

static void on_untriggered(void *data, cJSON *removed, const char *err)
{
    delete_req *d = data;
    d->removed = removed;
    if (!err) {
        delete_topic_now(d);
        return;
    }
    char done[1024];
    name_triggers(done, sizeof done, removed, NULL);
    http_respond_error(d->req, 503, "store_unavailable", "%s: topic '%s' was not deleted%s%s", err,
                       d->topic, done[0] ? "; removed: " : "", done);
    delete_req_free(d);
}

static int on_delete_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    int *force = data;
    char why[160];
    (void)klen;
    return strcmp(k, "force") == 0 ? api_bool_param(k, v, vlen, force, why, sizeof why) : ERR_INVAL;
}

static void delete_topic_route(api *a, http_request *req, const char *topic)
{
    int force = 0;
    if (http_query_parse(req->query, on_delete_param, &force)) {
        http_respond_error(req, 400, "bad_parameter",
                           "the only parameter is 'force' (true or false)");
        return;
    }
    delete_req *d = calloc(1, sizeof *d);
    if (!d || !(d->readers = cJSON_CreateArray()) || !(d->dead_from = cJSON_CreateArray())) {
        if (d) delete_req_free(d);
        http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    d->a = a;
    d->req = req;
    snprintf(d->topic, sizeof d->topic, "%s", topic);
    /* In a cluster, a topic published to through another node a moment ago
     * may not be listed here yet: the queue finds its stream, or says 404. */
    queue_topic_stats ts;
    if (!(queue_flags(a->q) & QUEUE_SHARED) &&
        queue_topic_get_stats(a->q, topic, &ts) == ERR_NOTFOUND) {
        http_respond_error(req, 404, "not_found", "topic '%s' does not exist", topic);
        delete_req_free(d);
        return;
    }
    triggers_each(a->tr, find_users, d);
    int nreaders = cJSON_GetArraySize(d->readers), nfrom = cJSON_GetArraySize(d->dead_from);
    if (!force && (nreaders || nfrom)) {
        char users[1024];
        name_triggers(users, sizeof users, d->readers, d->dead_from);
        if (nreaders)
            http_respond_error(req, 409, "topic_in_use",
                               "topic '%s' is in use by trigger%s %s: remove %s first, or delete "
                               "with force=true (spate topic rm --force), which removes the "
                               "triggers that read it",
                               topic, nreaders + nfrom > 1 ? "s" : "", users,
                               nreaders + nfrom > 1 ? "them" : "it");
        else
            http_respond_error(req, 409, "topic_in_use",
                               "topic '%s' is the dead-letter topic of trigger%s %s: its dead "
                               "letters would be lost; delete with force=true (spate topic rm "
                               "--force) if they may go (the next dead letter makes it anew)",
                               topic, nfrom > 1 ? "s" : "", users);
        delete_req_free(d);
        return;
    }
    if (!nreaders) {
        delete_topic_now(d);
        return;
    }
    cJSON *refs = d->readers;
    d->readers = NULL;
    api_remove_triggers(a, refs, on_untriggered, d);
}

typedef struct purge_req {
    http_request *req;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
} purge_req;

static void on_purged(void *data, int status, uint64_t count)
{
    purge_req *p = data;
    if (status == ERR_NOTFOUND)
        http_respond_error(p->req, 404, "not_found", "topic '%s' does not exist", p->topic);
    else if (status)
        http_respond_error(p->req, 503, "store_unavailable", "cannot purge topic '%s': %s",
                           p->topic, err_str(status));
    else {
        char body[64];
        int n = snprintf(body, sizeof body, "{\"purged\":%llu}\n", (unsigned long long)count);
        http_respond(p->req, 200, "application/json", NULL, body, (size_t)n);
    }
    free(p);
}

static void purge_route(api *a, http_request *req, const char *topic)
{
    purge_req *p = calloc(1, sizeof *p);
    if (!p) {
        http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    p->req = req;
    snprintf(p->topic, sizeof p->topic, "%s", topic);
    int rc = queue_topic_purge(a->q, topic, on_purged, p);
    if (rc) on_purged(p, rc, 0);
}

/* PUT /v1/topics/TOPIC?max_age_ms=N&max_bytes=N&max_messages=N: a limit not
 * given stays as it was; 0 lifts one. */
typedef struct retention_req {
    api *a;
    http_request *req;
    queue_retention ret;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    char why[200];
} retention_req;

static int on_retention_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    retention_req *r = data;
    /* Ten years, and what SQLite's signed integers hold. */
    static const struct {
        const char *name;
        size_t off;
        uint64_t max;
    } limits[] = {
        {"max_age_ms", offsetof(queue_retention, max_age_ms), 315360000000ull},
        {"retention_ms", offsetof(queue_retention, max_age_ms), 315360000000ull},
        {"max_bytes", offsetof(queue_retention, max_bytes), INT64_MAX},
        {"max_messages", offsetof(queue_retention, max_messages), INT64_MAX},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        if (strcmp(k, limits[i].name) != 0) continue;
        if (parse_u64(v, vlen, 0, limits[i].max,
                      (uint64_t *)(void *)((char *)&r->ret + limits[i].off))) {
            snprintf(r->why, sizeof r->why,
                     "parameter '%s' must be an integer from 0 (no limit) to %llu", k,
                     (unsigned long long)limits[i].max);
            return ERR_INVAL;
        }
        return 0;
    }
    snprintf(r->why, sizeof r->why,
             "unknown parameter '%.*s' (max_age_ms, max_bytes or max_messages)",
             (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

static void on_retention_set(void *data, int status)
{
    retention_req *r = data;
    if (status) {
        http_respond_error(r->req, 503, "store_unavailable",
                           "cannot save the retention of topic '%s': %s", r->topic,
                           err_str(status));
    } else {
        cJSON *doc = topic_json(r->a, r->topic);
        if (!doc) {
            doc = cJSON_CreateObject();
            cJSON_AddStringToObject(doc, "name", r->topic);
            cJSON_AddItemToObject(doc, "retention", retention_json(&r->ret));
        }
        api_respond_json(r->req, 200, doc);
    }
    free(r);
}

static void retention_route(api *a, http_request *req, const char *topic)
{
    retention_req *r = calloc(1, sizeof *r);
    if (!r) {
        http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    r->a = a;
    r->req = req;
    snprintf(r->topic, sizeof r->topic, "%s", topic);
    queue_topic_stats ts;
    if (queue_topic_get_stats(a->q, topic, &ts) == 0) r->ret = ts.retention;
    if (!req->query || !*req->query) {
        snprintf(r->why, sizeof r->why, "give max_age_ms, max_bytes or max_messages");
    } else if (http_query_parse(req->query, on_retention_param, r) && !r->why[0]) {
        snprintf(r->why, sizeof r->why, "malformed query string");
    }
    if (r->why[0]) {
        http_respond_error(req, 400, "bad_parameter", "%s", r->why);
        free(r);
        return;
    }
    int rc = queue_topic_retention(a->q, topic, &r->ret, on_retention_set, r);
    if (rc) on_retention_set(r, rc);
}

/* --- Entry --------------------------------------------------------------------------------- */

void api_topics(api *a, http_request *req, const route_match *m)
{
    int get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    char topic[SPATE_TOPIC_NAME_MAX + 1] = "";
    if (m->name) {
        if (!name_is_topic(m->name, m->name_len)) {
            http_respond_error(req, 400, "bad_topic",
                               "invalid topic name '%.*s': use 1 to %d letters, digits, '-', '_' "
                               "or '.', starting with a letter or digit",
                               NAME_FMT(m->name_len), m->name, SPATE_TOPIC_NAME_MAX);
            return;
        }
        memcpy(topic, m->name, m->name_len);
        topic[m->name_len] = '\0';
    }
    switch (m->route) {
    case R_TOPIC_MESSAGES:
        if (req->method == HTTP_POST) {
            publish(a, req, topic);
        } else if (get) {
            read_params p = {.limit = 100};
            if (http_query_parse(req->query, on_read_param, &p)) {
                http_respond_error(req, 400, "bad_parameter", "%s",
                                   p.why[0] ? p.why : "malformed query string");
                return;
            }
            int rc = queue_read(a->q, topic, p.after, p.limit, on_read, req);
            if (rc == ERR_NOTFOUND)
                http_respond_error(req, 404, "not_found", "topic '%s' does not exist", topic);
            else if (rc)
                http_respond_error(req, 503, "store_unavailable", "cannot read messages: %s",
                                   err_str(rc));
        } else {
            api_method_not_allowed(req, "GET, HEAD, POST");
        }
        return;
    case R_TOPIC: {
        if (req->method == HTTP_DELETE) return delete_topic_route(a, req, topic);
        if (req->method == HTTP_PUT) return retention_route(a, req, topic);
        if (!get) return api_method_not_allowed(req, "GET, HEAD, PUT, DELETE");
        cJSON *doc = topic_json(a, topic);
        if (!doc)
            http_respond_error(req, 404, "not_found", "topic '%s' does not exist", topic);
        else
            api_respond_json(req, 200, doc);
        return;
    }
    case R_TOPICS: {
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        cJSON *doc = cJSON_CreateObject();
        void *ctx[2] = {a, cJSON_AddArrayToObject(doc, "topics")};
        queue_each_topic(a->q, list_topic, ctx);
        api_respond_json(req, 200, doc);
        return;
    }
    case R_TOPIC_REDRIVE: {
        if (req->method != HTTP_POST) return api_method_not_allowed(req, "POST");
        redrive_route(a, req, topic);
        return;
    }
    case R_TOPIC_PURGE:
        if (req->method != HTTP_POST) return api_method_not_allowed(req, "POST");
        purge_route(a, req, topic);
        return;
    case R_TRIGGERS: {
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        cJSON *doc = cJSON_CreateObject();
        triggers_each(a->tr, list_trigger, cJSON_AddArrayToObject(doc, "triggers"));
        api_respond_json(req, 200, doc);
        return;
    }
    case R_TRIGGER: {
        if (!name_is_function(m->name2, m->name2_len)) {
            /* The rule, as a deploy's refusal gives it. */
            http_respond_error(req, 400, "bad_name",
                               "invalid function name '%.*s': " NAME_FUNCTION_RULE,
                               NAME_FMT(m->name2_len), m->name2, SPATE_NAME_MAX);
            return;
        }
        char function[SPATE_NAME_MAX + 1];
        memcpy(function, m->name2, m->name2_len);
        function[m->name2_len] = '\0';
        if (req->method == HTTP_PUT) {
            add_trigger_route(a, req, topic, function);
        } else if (req->method == HTTP_DELETE) {
            trigger_req *t = calloc(1, sizeof *t);
            if (!t) {
                http_respond_error(req, 503, "out_of_memory", "out of memory");
                return;
            }
            t->a = a;
            t->req = req;
            t->removing = 1;
            snprintf(t->topic, sizeof t->topic, "%s", topic);
            snprintf(t->function, sizeof t->function, "%s", function);
            if (triggers_remove(a->tr, topic, function, on_trigger_done, t) != 0) {
                free(t);
                http_respond_error(req, 404, "not_found", "no trigger from '%s' to '%s'", topic,
                                   function);
            }
        } else if (get) {
            queue_sub *sub = queue_find_sub(a->q, topic, function);
            if (!sub) {
                http_respond_error(req, 404, "not_found", "no trigger from '%s' to '%s'", topic,
                                   function);
                return;
            }
            trigger_view v = {.topic = topic, .cfg = queue_sub_get_config(sub)};
            queue_sub_get_stats(sub, &v.stats);
            api_respond_json(req, 200, trigger_json(&v));
        } else {
            api_method_not_allowed(req, "GET, HEAD, PUT, DELETE");
        }
        return;
    }
    default:
        http_respond_error(req, 404, "not_found", "no route for %s %.200s",
                           http_method_str(req->method), req->path);
    }
}
