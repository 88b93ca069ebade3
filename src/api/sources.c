/*
 * sources.c - the /v1/sources routes (docs/api.md "Sources"): add or
 * replace a source (PUT, a JSON body), list them and show one with its
 * status (GET), remove one (DELETE); and their /metrics families. A
 * source's URL is shown with its password redacted, everywhere.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/json.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/names.h"

static cJSON *source_json(const source_view *v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", v->name);
    cJSON_AddStringToObject(o, "url", v->url);
    cJSON_AddStringToObject(o, "topic", v->topic);
    if (v->key_field[0])
        cJSON_AddStringToObject(o, "key_field", v->key_field);
    else
        cJSON_AddNullToObject(o, "key_field");
    cJSON_AddNumberToObject(o, "created_ms", (double)v->created_ms);
    cJSON_AddStringToObject(o, "state", v->state);
    cJSON_AddBoolToObject(o, "connected", v->connected);
    if (v->last_error[0]) {
        cJSON_AddStringToObject(o, "last_error", v->last_error);
        cJSON_AddNumberToObject(o, "last_error_ms", (double)v->last_error_ms);
    } else {
        cJSON_AddNullToObject(o, "last_error");
    }
    cJSON_AddNumberToObject(o, "received", (double)v->received);
    cJSON_AddNumberToObject(o, "committed", (double)v->committed);
    cJSON_AddNumberToObject(o, "refused", (double)v->refused);
    cJSON_AddNumberToObject(o, "dead_lettered", (double)v->dead_lettered);
    cJSON_AddNumberToObject(o, "publish_failures", (double)v->publish_failures);
    if (v->lag >= 0)
        cJSON_AddNumberToObject(o, "lag", (double)v->lag);
    else
        cJSON_AddNullToObject(o, "lag");
    if (v->delivery) cJSON_AddStringToObject(o, "delivery", v->delivery);
    /* In a cluster: every node runs it (the broker balances a consumer
     * group), or one, the lease holder. */
    cJSON_AddStringToObject(o, "runs_on", v->leased ? "lease_holder" : "every_node");
    if (v->lease_holder[0])
        cJSON_AddStringToObject(o, "lease_holder", v->lease_holder);
    else
        cJSON_AddNullToObject(o, "lease_holder");
    if (v->dropped >= 0)
        cJSON_AddNumberToObject(o, "dropped", (double)v->dropped);
    else
        cJSON_AddNullToObject(o, "dropped");
    return o;
}

static void add_to_array(const source_view *v, void *data)
{
    cJSON_AddItemToArray(data, source_json(v));
}

static void answer_one(const source_view *v, void *data)
{
    *(cJSON **)data = source_json(v);
}

/* A string member of the body: NULL when absent; *bad when not a string or
 * longer than max. */
static const char *member(const cJSON *body, const char *key, size_t max, int *bad)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(body, key);
    if (!it || cJSON_IsNull(it)) return NULL;
    if (!cJSON_IsString(it) || strlen(it->valuestring) > max) {
        *bad = 1;
        return NULL;
    }
    return it->valuestring;
}

static void put_source(api *a, http_request *req, const char *name)
{
    /* bad_request, not bad_json: what this route has always answered. */
    static const api_body_rules rules = {
        "bad_request",
        "the body must be a JSON object: {\"url\": URL, \"topic\": TOPIC, \"key_field\": "
        "FIELD}",
        "bad_source",
        "a string of the body holds a NUL (\\u0000), which no URL, topic or field name may",
    };
    cJSON *body = api_json_object_body(req, &rules);
    if (!body) return;
    int bad_url = 0, bad_topic = 0, bad_field = 0;
    const char *url = member(body, "url", SPATE_SOURCE_URL_MAX, &bad_url);
    const char *topic = member(body, "topic", SPATE_TOPIC_NAME_MAX, &bad_topic);
    const char *field = member(body, "key_field", SPATE_SOURCE_FIELD_MAX, &bad_field);
    const char *why = NULL;
    if (bad_url || !url || !url[0])
        why = "\"url\" must be the upstream broker's URL (at most 2048 bytes)";
    else if (bad_topic || !topic || !name_is_topic(topic, strlen(topic)))
        why = "\"topic\" must be a valid topic name (the topic the source publishes into)";
    else if (bad_field || (field && !field[0]))
        why = "\"key_field\" must name an entry field (1 to 256 bytes) or be left out";
    if (why) {
        cJSON_Delete(body);
        http_respond_error(req, 400, "bad_source", "%s", why);
        return;
    }
    reg_source src = {.created_ms = clock_now_ms()};
    snprintf(src.name, sizeof src.name, "%s", name);
    snprintf(src.url, sizeof src.url, "%s", url);
    snprintf(src.topic, sizeof src.topic, "%s", topic);
    snprintf(src.key_field, sizeof src.key_field, "%s", field ? field : "");
    cJSON_Delete(body);
    char err[512];
    int replaced = 0;
    int rc = sources_put(a->src, &src, &replaced, err, sizeof err);
    explicit_bzero(src.url, sizeof src.url);
    if (rc == ERR_INVAL) {
        http_respond_error(req, 400, "bad_url", "%s", err);
        return;
    }
    if (rc == ERR_TOOBIG) {
        http_respond_error(req, 409, "too_many_sources", "%s", err);
        return;
    }
    if (rc) {
        http_respond_error(req, 503, "store_unavailable", "%s", err);
        return;
    }
    cJSON *doc = NULL;
    sources_get(a->src, name, answer_one, &doc);
    api_respond_durable(a, req, replaced ? 200 : 201, doc);
}

void api_sources(api *a, http_request *req, const route_match *m)
{
    int get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    if (!a->src) {
        http_respond_error(req, 503, "unavailable", "this spated runs no sources");
        return;
    }
    if (m->route == R_SOURCES) {
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        cJSON *doc = cJSON_CreateObject();
        sources_each(a->src, add_to_array, cJSON_AddArrayToObject(doc, "sources"));
        api_respond_json(req, 200, doc);
        return;
    }
    if (!name_is_function(m->name, m->name_len)) {
        http_respond_error(req, 400, "bad_name", "invalid source name '%.*s': " NAME_FUNCTION_RULE,
                           API_NAME_FMT(m->name_len), m->name, SPATE_NAME_MAX);
        return;
    }
    char name[SPATE_NAME_MAX + 1];
    memcpy(name, m->name, m->name_len);
    name[m->name_len] = '\0';
    if (req->method == HTTP_PUT) {
        put_source(a, req, name);
    } else if (req->method == HTTP_DELETE) {
        int rc = sources_remove(a->src, name);
        if (rc == ERR_NOTFOUND)
            http_respond_error(req, 404, "not_found", "no source named '%s'", name);
        else if (rc)
            http_respond_error(req, 503, "store_unavailable", "cannot remove the source: %s",
                               err_str(rc));
        else
            api_respond_durable(a, req, 204, NULL);
    } else if (get) {
        cJSON *doc = NULL;
        if (sources_get(a->src, name, answer_one, &doc) != 0)
            http_respond_error(req, 404, "not_found", "no source named '%s'", name);
        else
            api_respond_json(req, 200, doc);
    } else {
        api_method_not_allowed(req, "GET, HEAD, PUT, DELETE");
    }
}

/* --- /metrics ------------------------------------------------------------------------------ */

/* The source metrics, in the order they are written. */
enum { M_RECEIVED, M_COMMITTED, M_REFUSED, M_DEAD, M_CONNECTED, M_LAG, M_INFO, M_DROPPED };

typedef struct metric_pass {
    buf *out;
    const char *name;
    int which;
} metric_pass;

static void metric_row(const source_view *v, void *data)
{
    metric_pass *p = data;
    switch (p->which) {
    case M_INFO: {
        /* Names follow names.h and the scheme is letters: nothing to escape. */
        const char *sep = strstr(v->url, "://");
        int n = sep ? (int)(sep - v->url) : 0;
        buf_printf(p->out, "%s{source=\"%s\",topic=\"%s\",scheme=\"%.*s\"} 1\n", p->name, v->name,
                   v->topic, n > 16 ? 16 : n, v->url);
        return;
    }
    case M_LAG:
        /* Only where the upstream tells it; the topic says where it drains to. */
        if (v->lag >= 0)
            buf_printf(p->out, "%s{source=\"%s\",topic=\"%s\"} %lld\n", p->name, v->name, v->topic,
                       (long long)v->lag);
        return;
    case M_DROPPED:
        if (v->dropped < 0) return; /* only where the library can drop */
        break;
    default:
        break;
    }
    double x = p->which == M_RECEIVED    ? (double)v->received
               : p->which == M_COMMITTED ? (double)v->committed
               : p->which == M_REFUSED   ? (double)v->refused
               : p->which == M_DEAD      ? (double)v->dead_lettered
               : p->which == M_DROPPED   ? (double)v->dropped
                                         : (double)v->connected;
    /* The label is the source's name (names.h: nothing to escape), never its URL. */
    buf_printf(p->out, "%s{source=\"%s\"} %.17g\n", p->name, v->name, x);
}

void api_sources_metrics(api *a, buf *out)
{
    if (!a->src) return;
    static const struct {
        const char *name, *type, *help;
    } g[] = {
        /* Indexed by M_...: */
        {"spate_source_received_total", "counter", "Entries fetched upstream (redeliveries too)."},
        {"spate_source_committed_total", "counter",
         "Entries published into the topic and then acknowledged upstream."},
        {"spate_source_refused_total", "counter",
         "Entries acknowledged upstream but not published (too large, no key)."},
        {"spate_source_dead_lettered_total", "counter",
         "Refused entries stored in the topic's dead letters before the upstream ack."},
        {"spate_source_connected", "gauge", "1 while the source is connected upstream."},
        {"spate_source_lag", "gauge",
         "Entries upstream not yet delivered to the source (where the broker tells it)."},
        {"spate_source_info", "gauge", "1 per source: the topic it drains into, its scheme."},
        {"spate_source_dropped_total", "counter",
         "Messages an at-most-once source's client library dropped (core NATS: slow consumer)."},
    };
    for (int k = 0; k < (int)(sizeof g / sizeof g[0]); k++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", g[k].name, g[k].help, g[k].name, g[k].type);
        metric_pass p = {out, g[k].name, k};
        sources_each(a->src, metric_row, &p);
    }
}
