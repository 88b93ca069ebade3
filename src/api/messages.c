/*
 * messages.c - reading a topic's stored messages (GET
 * /v1/topics/TOPIC/messages: dead letters, with where they came from) and
 * redriving dead letters to the topics they came from (POST .../redrive).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/parse.h"
#include "common/utf8.h"

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

/* A message's attributes (store/queue.h queue_attrs) as "attributes". */
static void add_attrs(cJSON *o, const queue_attrs *a)
{
    cJSON *at = cJSON_AddObjectToObject(o, "attributes");
    if (!at) return;
    if (a->source) cJSON_AddStringToObject(at, "source", a->source);
    if (a->upstream_id) cJSON_AddStringToObject(at, "upstream_id", a->upstream_id);
    if (a->upstream_ts_ms) cJSON_AddNumberToObject(at, "upstream_ts", (double)a->upstream_ts_ms);
    if (a->headers) {
        /* Kept as the JSON object it was built as (sources/batch.c). */
        cJSON *h = cJSON_ParseWithLength(a->headers, a->headers_len);
        if (h && cJSON_IsObject(h))
            cJSON_AddItemToObject(at, "headers", h);
        else
            cJSON_Delete(h);
    }
    cJSON_AddBoolToObject(at, "redelivered", a->redelivered);
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
        if (m->attrs) add_attrs(o, m->attrs);
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

void api_redrive(api *a, http_request *req, const char *topic)
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

void api_messages_read(api *a, http_request *req, const char *topic)
{
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
        http_respond_error(req, 503, "store_unavailable", "cannot read messages: %s", err_str(rc));
}
