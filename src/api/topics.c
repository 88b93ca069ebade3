/*
 * topics.c - the /v1/topics routes and their dispatch: a topic's figures
 * over its triggers (also for /metrics), the list, deleting (with
 * force=true the triggers that read it first), purging and retention.
 * Publishing is publish.c's, reading and redriving messages messages.c's,
 * the /v1/triggers routes triggers.c's.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/clock.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/fmt.h"
#include "common/limits.h"
#include "common/names.h"
#include "common/parse.h"

/* --- The number of topics ------------------------------------------------------------- */

uint32_t api_max_topics(const api *a)
{
    return a->limits.max_topics ? a->limits.max_topics : SPATE_TOPICS_DEFAULT;
}

int api_topic_over_limit(api *a, const char *topic)
{
    queue_topic_stats ts;
    /* An existing topic first: a lookup, where the cluster's count walks
     * its topics. */
    if (queue_topic_get_stats(a->q, topic, &ts) != ERR_NOTFOUND) return 0;
    return queue_topic_count(a->q) >= api_max_topics(a);
}

void api_respond_topic_limit(api *a, http_request *req, const char *topic)
{
    http_respond_error(req, 409, "topic_limit",
                       "topic '%s' would be one more than this node's maximum of %u topics "
                       "(spated --max-topics): publish to an existing topic, or delete one first",
                       topic, api_max_topics(a));
}

int api_topic_too_long(api *a, http_request *req, const char *topic)
{
    size_t n = name_topic_stream(topic, strlen(topic), NULL, 0);
    if (!(queue_flags(a->q) & QUEUE_SHARED) || n <= SPATE_JS_STREAM_NAME_MAX) return 0;
    http_respond_error(req, 400, "bad_topic",
                       "topic name '%s' is too long for a cluster: its JetStream stream name "
                       "would be %zu bytes, at most %d ('.' and '_' count 3 each)",
                       topic, n, SPATE_JS_STREAM_NAME_MAX);
    return 1;
}

/* --- Topic stats ---------------------------------------------------------------------- */

static double age_s(int64_t oldest_ms)
{
    return oldest_ms ? (double)(clock_now_ms() - oldest_ms) / 1000.0 : 0;
}

cJSON *api_trigger_json(const trigger_view *v)
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
        cJSON_AddItemToArray(c->triggers, api_trigger_json(v));
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

/* GET /v1/topics?limit=N&after=NAME: a page of topics in the queue's own
 * order (the order this node learned them), with "next", the name to give
 * as after for the next page, or null after the last. A page costs its own
 * topics, whatever the number of others. */
typedef struct list_page {
    api *a;
    http_request *req;
    uv_idle_t turn; /* a slice of the page each loop turn (as /metrics) */
    int aborted;    /* the client left */
    buf out;
    uint32_t limit, n;
    char last[SPATE_TOPIC_NAME_MAX + 1]; /* the last topic gone past ("" none yet) */
    int more;                            /* a topic follows the page */
    int yielded;                         /* the turn's time is up */
    uint32_t in_slice;
    uint64_t slice_end_ns;
    char after[SPATE_TOPIC_NAME_MAX + 1];
    int has_after;
    int failed; /* the error that cut the page short */
    char why[200];
} list_page;

/* ,"key":v */
static char *put_field(char *p, const char *key, size_t klen, uint64_t v)
{
    *p++ = ',';
    *p++ = '"';
    p = fmt_str(p, key, klen);
    p = fmt_lit(p, "\":");
    return fmt_u64(p, v);
}
#define PUT(p, key, v) put_field((p), key, sizeof(key) - 1, (v))

static int put_array(buf *out, const char *key, cJSON *arr)
{
    char *text = cJSON_PrintUnformatted(arr);
    if (!text) return ERR_NOMEM;
    int rc = buf_printf(out, ",\"%s\":%s", key, text);
    free(text);
    return rc;
}

/* One topic as topic_json has it, written directly: cJSON's number printing
 * (a printf and a scanf each) was most of a page's time. Its triggers and
 * dead-letter links go through cJSON (a page's few). */
static int write_topic(api *a, buf *out, const char *topic)
{
    topic_summary sum;
    if (api_topic_summary(a, topic, &sum) != 0) return ERR_NOTFOUND;
    char line[640], *p = line;
    p = fmt_lit(p, "{\"name\":\"");
    p = fmt_str(p, topic, strlen(topic)); /* its alphabet needs no escaping */
    *p++ = '"';
    p = PUT(p, "depth", sum.depth);
    p = PUT(p, "in_flight", sum.in_flight);
    p += snprintf(p, 48, ",\"oldest_age_s\":%.15g", sum.oldest_age_s);
    p = PUT(p, "published", sum.published);
    p = PUT(p, "acknowledged", sum.acked);
    p = PUT(p, "dead_lettered", sum.dead_lettered);
    p = PUT(p, "stored", sum.stored);
    p = PUT(p, "bytes", sum.bytes);
    p = fmt_lit(p, ",\"retention\":{\"max_age_ms\":");
    p = fmt_u64(p, sum.retention.max_age_ms);
    p = PUT(p, "max_bytes", sum.retention.max_bytes);
    p = PUT(p, "max_messages", sum.retention.max_messages);
    *p++ = '}';
    int rc = buf_append(out, line, (size_t)(p - line));
    topic_ctx c = {topic, cJSON_CreateArray(), cJSON_CreateArray(), cJSON_CreateArray()};
    triggers_each(a->tr, add_trigger, &c);
    if (!rc) rc = put_array(out, "triggers", c.triggers);
    if (!rc) rc = put_array(out, "dead_letter_topics", c.dlqs);
    if (!rc) rc = put_array(out, "dead_letter_topic_of", c.dlq_of);
    cJSON_Delete(c.triggers);
    cJSON_Delete(c.dlqs);
    cJSON_Delete(c.dlq_of);
    if (!rc) rc = buf_append(out, "}", 1);
    return rc;
}

static int list_topic(const char *topic, void *data)
{
    list_page *p = data;
    if (p->n == p->limit) {
        p->more = 1;
        return 1;
    }
    if (++p->in_slice % 16 == 0 && clock_mono_ns() >= p->slice_end_ns) {
        p->yielded = 1;
        return 1;
    }
    size_t at = p->out.len;
    if (p->n && buf_append(&p->out, ",", 1)) return 1;
    snprintf(p->last, sizeof p->last, "%s", topic);
    int rc = write_topic(p->a, &p->out, topic);
    if (rc == ERR_NOTFOUND) {
        p->out.len = at;
        return 0;
    }
    if (rc) {
        p->failed = rc;
        return 1;
    }
    p->n++;
    return 0;
}

static int on_list_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    list_page *p = data;
    (void)klen;
    if (strcmp(k, "limit") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_TOPICS_PAGE_MAX, &p->limit, p->why,
                                sizeof p->why);
    if (strcmp(k, "after") == 0) {
        if (vlen == 0) return 0; /* "after=": from the first */
        if (!name_is_topic(v, vlen)) {
            snprintf(p->why, sizeof p->why,
                     "parameter 'after' must be a topic name (the 'next' of the page before)");
            return ERR_INVAL;
        }
        memcpy(p->after, v, vlen);
        p->after[vlen] = '\0';
        p->has_after = 1;
        return 0;
    }
    snprintf(p->why, sizeof p->why, "unknown parameter '%.*s' (limit or after)",
             (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

static void list_page_free(uv_handle_t *h)
{
    list_page *p = h->data;
    buf_free(&p->out);
    free(p);
}

static void list_page_end(list_page *p)
{
    uv_idle_stop(&p->turn);
    p->req->on_abort = NULL;
    if (p->aborted) {
        http_respond(p->req, 499, "text/plain", NULL, "", 0); /* frees the gone connection */
    } else if (p->a->stopping) {
        http_respond_error(p->req, 503, "shutting_down", "spated is shutting down");
    } else if (p->failed) {
        http_respond_error(p->req, 503, "out_of_memory", "cannot build the list: %s",
                           err_str(p->failed));
    } else {
        buf_append(&p->out, "],\"next\":", 9);
        if (p->more && p->n)
            buf_printf(&p->out, "\"%s\"", p->last);
        else
            buf_append(&p->out, "null", 4);
        buf_printf(&p->out, ",\"limit\":%u,\"total\":%u}\n", p->limit, queue_topic_count(p->a->q));
        http_respond(p->req, 200, "application/json", NULL, p->out.data, p->out.len);
    }
    uv_close((uv_handle_t *)&p->turn, list_page_free);
}

/* A turn's share of the page: at most SPATE_METRICS_SLICE_US, so that a
 * page of 1,000 topics never holds the loop for its whole time. */
static void on_list_turn(uv_idle_t *t)
{
    list_page *p = t->data;
    if (p->aborted || p->a->stopping) return list_page_end(p);
    p->slice_end_ns = clock_mono_ns() + SPATE_METRICS_SLICE_US * 1000ull;
    p->in_slice = 0;
    p->yielded = 0;
    const char *from = p->last[0] ? p->last : p->has_after ? p->after : NULL;
    queue_topics_after(p->a->q, from, list_topic, p);
    if (!p->yielded) list_page_end(p);
}

static void on_list_abort(http_request *req)
{
    list_page *p = req->data;
    p->aborted = 1;
}

static void list_topics_route(api *a, http_request *req)
{
    list_page *p = calloc(1, sizeof *p);
    if (!p) return http_respond_error(req, 503, "out_of_memory", "out of memory");
    p->a = a;
    p->req = req;
    p->limit = SPATE_TOPICS_PAGE_DEFAULT;
    if (http_query_parse(req->query, on_list_param, p)) {
        http_respond_error(req, 400, "bad_parameter", "%s",
                           p->why[0] ? p->why : "malformed query string");
        free(p);
        return;
    }
    if (p->has_after && queue_topics_after(a->q, p->after, NULL, NULL) == ERR_NOTFOUND) {
        http_respond_error(req, 400, "bad_cursor",
                           "parameter 'after': this node knows no topic '%s' (list again from "
                           "the first page)",
                           p->after);
        free(p);
        return;
    }
    /* A page's topics at most a few KiB each (their triggers included). */
    buf_init(&p->out, (size_t)SPATE_TOPICS_PAGE_MAX * 64 * KIB);
    buf_append(&p->out, "{\"topics\":[", 11);
    req->data = p;
    req->on_abort = on_list_abort;
    uv_idle_init(http_request_loop(req), &p->turn);
    p->turn.data = p;
    uv_idle_start(&p->turn, on_list_turn);
}

/* --- Deleting, purging and retention --------------------------------------------------- */

/* DELETE /v1/topics/TOPIC[?force=true]. A topic some trigger reads or
 * dead-letters into is refused (409, naming them); with force the triggers
 * that read it are removed first (named in the answer), and those that
 * dead-letter into it stay (their next dead letter makes it anew). A topic a
 * source writes into is refused too; with force the source stays (its next
 * batch makes the topic anew). */
typedef struct delete_req {
    api *a;
    http_request *req;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    cJSON *readers;   /* the triggers that read it */
    cJSON *dead_from; /* the triggers that dead-letter into it */
    cJSON *removed;   /* of the readers, removed (force=true) */
    cJSON *sources;   /* the sources that write into it */
} delete_req;

static void delete_req_free(delete_req *d)
{
    cJSON_Delete(d->readers);
    cJSON_Delete(d->dead_from);
    cJSON_Delete(d->removed);
    cJSON_Delete(d->sources);
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

static void find_sources(const source_view *v, void *data)
{
    delete_req *d = data;
    if (strcmp(v->topic, d->topic) == 0)
        cJSON_AddItemToArray(d->sources, cJSON_CreateString(v->name));
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
        cJSON_AddItemToObject(doc, "written_by_sources", d->sources);
        d->sources = NULL;
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
    if (!d || !(d->readers = cJSON_CreateArray()) || !(d->dead_from = cJSON_CreateArray()) ||
        !(d->sources = cJSON_CreateArray())) {
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
    if (d->a->src) sources_each(d->a->src, find_sources, d);
    int nsources = cJSON_GetArraySize(d->sources);
    if (!force && nsources) {
        char names[1024];
        size_t n = 0;
        const cJSON *e;
        names[0] = '\0';
        cJSON_ArrayForEach(e, d->sources)
        {
            if (n < sizeof names)
                n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "",
                                      e->valuestring);
        }
        http_respond_error(req, 409, "topic_in_use",
                           "topic '%s' is written by source%s %s: remove %s first (spate source "
                           "rm), or delete with force=true (spate topic rm --force); the "
                           "source's next batch makes it anew",
                           topic, nsources > 1 ? "s" : "", names, nsources > 1 ? "them" : "it");
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
    if (queue_topic_get_stats(a->q, topic, &ts) == 0) {
        r->ret = ts.retention;
    } else if (api_topic_over_limit(a, topic)) {
        api_respond_topic_limit(a, req, topic);
        free(r);
        return;
    }
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
                               API_NAME_FMT(m->name_len), m->name, SPATE_TOPIC_NAME_MAX);
            return;
        }
        memcpy(topic, m->name, m->name_len);
        topic[m->name_len] = '\0';
        if (api_topic_too_long(a, req, topic)) return;
    }
    switch (m->route) {
    case R_TOPIC_MESSAGES:
        if (req->method == HTTP_POST) {
            api_publish(a, req, topic);
        } else if (get) {
            api_messages_read(a, req, topic);
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
        list_topics_route(a, req);
        return;
    }
    case R_TOPIC_REDRIVE: {
        if (req->method != HTTP_POST) return api_method_not_allowed(req, "POST");
        api_redrive(a, req, topic);
        return;
    }
    case R_TOPIC_PURGE:
        if (req->method != HTTP_POST) return api_method_not_allowed(req, "POST");
        purge_route(a, req, topic);
        return;
    case R_TRIGGERS: {
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        api_triggers_list(a, req);
        return;
    }
    case R_TRIGGER:
        api_trigger(a, req, m, topic);
        return;
    default:
        http_respond_error(req, 404, "not_found", "no route for %s %.200s",
                           http_method_str(req->method), req->path);
    }
}
