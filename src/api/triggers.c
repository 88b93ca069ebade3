/*
 * triggers.c - the /v1/triggers routes: adding a trigger (PUT, or changing
 * one with update=true), removing it (DELETE), showing it and listing them
 * all (GET).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/names.h"

typedef struct trigger_params {
    queue_sub_config cfg;
    int update; /* change an existing trigger; without it, an existing one is refused */
    int format_given;
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
    if (strcmp(k, "batch_size") == 0 || strcmp(k, "batch-size") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_BATCH_SIZE_MAX, &c->batch_size, p->why,
                                sizeof p->why);
    if (strcmp(k, "batch_window") == 0 || strcmp(k, "batch_window_ms") == 0 ||
        strcmp(k, "batch-window") == 0)
        return api_number_param(k, v, vlen, 0, SPATE_BATCH_WINDOW_MAX_MS, &c->batch_window_ms,
                                p->why, sizeof p->why);
    if (strcmp(k, "report_batch_item_failures") == 0 ||
        strcmp(k, "report-batch-item-failures") == 0)
        return api_bool_param(k, v, vlen, &c->report_failures, p->why, sizeof p->why);
    if (strcmp(k, "event_format") == 0 || strcmp(k, "event-format") == 0) {
        p->format_given = 1;
        if (vlen == 3 && memcmp(v, "raw", 3) == 0) {
            c->event_format = QUEUE_EVENT_RAW;
        } else if (vlen == 3 && memcmp(v, "sqs", 3) == 0) {
            c->event_format = QUEUE_EVENT_SQS;
        } else {
            snprintf(p->why, sizeof p->why, "parameter '%s' must be raw or sqs", k);
            return ERR_INVAL;
        }
        return 0;
    }
    /* Paused: leases nothing, its messages wait (Lambda's disabled mapping). */
    if (strcmp(k, "paused") == 0)
        return api_bool_param(k, v, vlen, &c->paused, p->why, sizeof p->why);
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
    if (status == ERR_EXISTS) { /* cluster mode: its consumer is another trigger's */
        http_respond_error(t->req, 409, "trigger_conflict",
                           "cannot add the trigger %s -> %s: another trigger on the topic has a "
                           "consumer of the same name (an ordered trigger of function X and a "
                           "trigger of function X_u or X_kNN cannot read one topic); name one of "
                           "the functions otherwise",
                           t->topic, t->function);
    } else if (status) {
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
            doc = api_trigger_json(&v);
        }
        api_respond_json(t->req, t->updating ? 200 : 201, doc);
    }
    free(t);
}

/* The event format of a new trigger that names none: the function's
 * runtime's. Native and exec functions take their messages as they are;
 * the managed runtimes (python3, nodejs: docs/functions.md "Batches") take
 * Lambda's SQS event, as their handlers expect. */
static int default_event_format(const fn_config *c)
{
    switch (c->runtime) {
    case RUNTIME_PYTHON3:
    case RUNTIME_NODEJS:
        return QUEUE_EVENT_SQS; /* Lambda handlers expect SQS's event */
    case RUNTIME_NATIVE:
    case RUNTIME_EXEC:
    default:
        return QUEUE_EVENT_RAW;
    }
}

/* PUT of TOPIC/NAME or TOPIC/NAME:Q: qualifier is Q (NULL: none given,
 * a change keeps the trigger's; "$LATEST" or "": the active version). */
static void add_trigger_route(api *a, http_request *req, const char *topic, const char *function,
                              const char *qualifier)
{
    fn *f = functions_find(a->table, function, strlen(function));
    if (!f) {
        http_respond_error(req, 404, "not_found", "function '%s' does not exist", function);
        return;
    }
    /* The path is not unescaped: $LATEST may come as the CLI escapes it. */
    if (qualifier && (strcmp(qualifier, "$LATEST") == 0 || strcmp(qualifier, "%24LATEST") == 0))
        qualifier = "";
    if (qualifier && qualifier[0]) {
        fn *g;
        uint32_t version;
        int rc = functions_resolve(a->table, function, qualifier, &g, &version);
        if (rc == ERR_INVAL) {
            http_respond_error(req, 400, "bad_name",
                               "invalid qualifier '%s': a version's number or an alias name",
                               qualifier);
            return;
        }
        if (rc) {
            http_respond_error(req, 404, "not_found", "function '%s' has no version or alias '%s'",
                               function, qualifier);
            return;
        }
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
        p.cfg.batch_size = 1;
    }
    int rc = http_query_parse(req->query, on_trigger_param, &p);
    if (rc) {
        if (!p.why[0]) snprintf(p.why, sizeof p.why, "malformed query string");
        http_respond_error(req, 400, "bad_parameter", "%s", p.why);
        return;
    }
    if (qualifier) snprintf(p.cfg.qualifier, sizeof p.cfg.qualifier, "%s", qualifier);
    if (!sub && !p.format_given) p.cfg.event_format = default_event_format(&f->active.config);
    /* A native function's ABI takes one message (spate_request): batches
     * are for functions that read an event (exec, the managed runtimes). */
    if (p.cfg.batch_size > 1 && f->active.config.runtime == RUNTIME_NATIVE) {
        http_respond_error(req, 400, "bad_parameter",
                           "function '%s' is native: it takes one message per invocation "
                           "(batch_size 1); batches go to exec functions",
                           function);
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
    if (api_topic_too_long(a, req, topic) || api_topic_too_long(a, req, p.cfg.dlq)) return;
    p.cfg.modified_ms = clock_now_ms();
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

static int put_trigger(const trigger_view *v, void *data)
{
    char cursor[API_PAGE_CURSOR_MAX];
    snprintf(cursor, sizeof cursor, "%s/%s", v->topic, v->cfg->function);
    return api_page_put(data, api_trigger_json(v), cursor);
}

/* after: TOPIC/FUNCTION, as the parameter was checked (on_list_param). */
static int walk_triggers(api *a, api_page *pg, const char *after, uint32_t max, int *more)
{
    char topic[SPATE_TOPIC_NAME_MAX + 1] = "";
    const char *function = "";
    if (after) {
        const char *slash = strchr(after, '/');
        size_t tlen = slash ? (size_t)(slash - after) : 0;
        if (tlen >= sizeof topic) return ERR_INVAL;
        memcpy(topic, after, tlen);
        topic[tlen] = '\0';
        function = slash ? slash + 1 : "";
    }
    uint32_t total;
    int rc =
        triggers_page(a->tr, after ? topic : NULL, function, max, put_trigger, pg, more, &total);
    if (rc == 0) api_page_set_total(pg, total);
    return rc;
}

/* The total: each walk counts every trigger (triggers_page). */
static const api_page_source triggers_pages = {"triggers", walk_triggers, NULL};

typedef struct list_params {
    uint32_t limit;
    char topic[SPATE_TOPIC_NAME_MAX + 1]; /* after: "" from the first */
    char function[SPATE_NAME_MAX + 1];
    char why[200];
} list_params;

static int on_list_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    list_params *p = data;
    if (strcmp(k, "limit") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_TRIGGERS_PAGE_MAX, &p->limit, p->why,
                                sizeof p->why);
    if (strcmp(k, "after") == 0) {
        if (vlen == 0) return 0; /* "after=": from the first */
        const char *slash = memchr(v, '/', vlen);
        size_t tlen = slash ? (size_t)(slash - v) : 0, flen = slash ? vlen - tlen - 1 : 0;
        if (!slash || !name_is_topic(v, tlen) || !name_is_function(slash + 1, flen)) {
            snprintf(p->why, sizeof p->why,
                     "parameter 'after' must be TOPIC/FUNCTION (the 'next' of the page before)");
            return ERR_INVAL;
        }
        memcpy(p->topic, v, tlen);
        p->topic[tlen] = '\0';
        memcpy(p->function, slash + 1, flen);
        p->function[flen] = '\0';
        return 0;
    }
    snprintf(p->why, sizeof p->why, "unknown parameter '%.*s' (limit or after)",
             (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

/* GET /v1/triggers?limit=N&after=TOPIC/FUNCTION: a page of triggers by
 * topic then function, with "next" (TOPIC/FUNCTION of the last, to give as
 * after; null after the last page), "limit" and "total". */
void api_triggers_list(api *a, http_request *req)
{
    list_params p = {.limit = SPATE_TRIGGERS_PAGE_DEFAULT};
    if (http_query_parse(req->query, on_list_param, &p)) {
        http_respond_error(req, 400, "bad_parameter", "%s",
                           p.why[0] ? p.why : "malformed query string");
        return;
    }
    char after[API_PAGE_CURSOR_MAX] = "";
    if (p.topic[0]) snprintf(after, sizeof after, "%s/%s", p.topic, p.function);
    api_page_start(a, req, &triggers_pages, p.limit, after[0] ? after : NULL);
}

/* PUT adds (or with update=true changes), DELETE removes, GET shows. */
void api_trigger(api *a, http_request *req, const route_match *m, const char *topic)
{
    int get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    /* NAME:Q names what a PUT invokes; the trigger itself is TOPIC's of
     * NAME (one per function), so the other methods take NAME:Q as NAME. */
    const char *colon = memchr(m->name2, ':', m->name2_len);
    size_t name_len = colon ? (size_t)(colon - m->name2) : m->name2_len;
    size_t q_len = colon ? m->name2_len - name_len - 1 : 0;
    if (!name_is_function(m->name2, name_len)) {
        /* The rule, as a deploy's refusal gives it. */
        http_respond_error(req, 400, "bad_name",
                           "invalid function name '%.*s': " NAME_FUNCTION_RULE,
                           API_NAME_FMT(name_len), m->name2, SPATE_NAME_MAX);
        return;
    }
    if (q_len > SPATE_ALIAS_MAX || (colon && !q_len)) {
        http_respond_error(req, 400, "bad_name",
                           "invalid qualifier: a version's number or an alias name of 1 to %d "
                           "characters",
                           SPATE_ALIAS_MAX);
        return;
    }
    char function[SPATE_NAME_MAX + 1], qualifier[SPATE_ALIAS_MAX + 1];
    memcpy(function, m->name2, name_len);
    function[name_len] = '\0';
    if (colon) memcpy(qualifier, colon + 1, q_len);
    qualifier[q_len] = '\0';
    if (req->method == HTTP_PUT) {
        add_trigger_route(a, req, topic, function, colon ? qualifier : NULL);
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
        api_respond_json(req, 200, api_trigger_json(&v));
    } else {
        api_method_not_allowed(req, "GET, HEAD, PUT, DELETE");
    }
}
