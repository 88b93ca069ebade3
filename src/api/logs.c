/*
 * logs.c - GET /v1/functions/NAME/logs: the newest lines the function's
 * processes wrote (and what the platform said about them), or those after a
 * line already seen (?after=SEQ), optionally only those since a time, of one
 * request or of one instance. With ?wait=MS and no such line after SEQ yet,
 * the answer waits for one (a long poll, at most SPATE_LOG_WAIT_MAX_MS):
 * spate logs --follow. A deleted function's log is read while its files
 * remain.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/parse.h"
#include "common/utf8.h"
#include "sched/pool.h"

typedef struct logs_params {
    uint64_t after;
    uint32_t limit;
    uint32_t wait_ms;
    uint64_t since_ms; /* 0: any */
    int has_instance;
    uint64_t instance;
    char request[FNLOG_REQ_MAX + 1]; /* "": any */
    char why[160];
} logs_params;

static int u64_param(const char *k, const char *v, size_t vlen, const char *what, uint64_t *out,
                     logs_params *p)
{
    if (parse_u64(v, vlen, 0, UINT64_MAX >> 1, out) == 0) return 0;
    snprintf(p->why, sizeof p->why, "parameter '%s' must be %s", k, what);
    return ERR_INVAL;
}

static int on_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    logs_params *p = data;
    if (strcmp(k, "limit") == 0)
        return api_number_param(k, v, vlen, 0, SPATE_LOG_LINES_KEPT, &p->limit, p->why,
                                sizeof p->why);
    if (strcmp(k, "wait") == 0)
        return api_number_param(k, v, vlen, 0, SPATE_LOG_WAIT_MAX_MS, &p->wait_ms, p->why,
                                sizeof p->why);
    if (strcmp(k, "after") == 0) return u64_param(k, v, vlen, "a line number", &p->after, p);
    if (strcmp(k, "since") == 0)
        return u64_param(k, v, vlen, "a time in ms since 1970", &p->since_ms, p);
    if (strcmp(k, "instance") == 0) {
        p->has_instance = 1;
        return u64_param(k, v, vlen, "an instance number", &p->instance, p);
    }
    if (strcmp(k, "request") == 0) {
        if (vlen == 0 || vlen > FNLOG_REQ_MAX) {
            snprintf(p->why, sizeof p->why,
                     "parameter 'request' must be a request id of 1 to %d "
                     "characters",
                     FNLOG_REQ_MAX);
            return ERR_INVAL;
        }
        memcpy(p->request, v, vlen);
        p->request[vlen] = '\0';
        return 0;
    }
    snprintf(p->why, sizeof p->why, "unknown parameter '%.*s'", (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

static fnlog_filter filter_of(const logs_params *p)
{
    return (fnlog_filter){.since_ms = (int64_t)p->since_ms,
                          .has_instance = p->has_instance,
                          .instance = p->instance,
                          .req = p->request[0] ? p->request : NULL};
}

static void add_line(const fnlog_line *line, void *data)
{
    cJSON *arr = data;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seq", (double)line->seq);
    cJSON_AddNumberToObject(o, "time_ms", (double)line->time_ms);
    cJSON_AddNumberToObject(o, "version", (double)line->version);
    cJSON_AddNumberToObject(o, "instance", (double)line->instance);
    cJSON_AddStringToObject(o, "stream", fnlog_stream_name(line->stream));
    if (line->req[0]) cJSON_AddStringToObject(o, "request_id", line->req);
    /* JSON strings are text: bytes that are not UTF-8 become '?'. */
    char text[SPATE_LOG_LINE_MAX + 1];
    memcpy(text, line->text, line->len);
    text[line->len] = '\0';
    if (!utf8_valid(text, line->len))
        for (uint32_t i = 0; i < line->len; i++)
            if ((unsigned char)text[i] >= 0x80 || text[i] == '\0') text[i] = '?';
    cJSON_AddStringToObject(o, "text", text);
    cJSON_AddItemToArray(arr, o);
}

static void answer(http_request *req, fnlog *log, const char *function, int removed,
                   const logs_params *p)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "function", function);
    if (removed) cJSON_AddBoolToObject(doc, "removed", 1);
    cJSON *lines = cJSON_AddArrayToObject(doc, "lines");
    fnlog_filter f = filter_of(p);
    uint64_t next = fnlog_each(log, p->after, p->limit, &f, add_line, lines);
    cJSON_AddNumberToObject(doc, "next", (double)next);
    cJSON_AddNumberToObject(doc, "evicted", (double)fnlog_evicted(log));
    api_respond_json(req, 200, doc);
}

/* A long poll: answered at the next new lines it wants, at the end of the
 * wait, or dropped when the client leaves. It holds the log, which outlives
 * a deleted function until then. */
typedef struct logs_wait {
    fnlog_waiter w; /* first: the callback gets it */
    uv_timer_t timer;
    http_request *req;
    fnlog *log;
    int removed;
    logs_params p;
    char function[SPATE_NAME_MAX + 1];
} logs_wait;

static void on_wait_closed(uv_handle_t *h)
{
    logs_wait *lw = h->data;
    fnlog_unref(lw->log);
    free(lw);
}

static void wait_over(logs_wait *lw, int answer_it)
{
    fnlog_unwait(&lw->w);
    uv_timer_stop(&lw->timer);
    if (answer_it) answer(lw->req, lw->log, lw->function, lw->removed, &lw->p);
    lw->req->on_abort = NULL;
    uv_close((uv_handle_t *)&lw->timer, on_wait_closed);
}

static void on_new_lines(fnlog_waiter *w)
{
    logs_wait *lw = (logs_wait *)w;
    fnlog_filter f = filter_of(&lw->p);
    if (!fnlog_has_after(lw->log, lw->p.after, &f)) { /* none it wants: wait on */
        fnlog_wait(lw->log, &lw->w);
        return;
    }
    wait_over(lw, 1);
}

static void on_wait_timeout(uv_timer_t *t)
{
    wait_over(t->data, 1); /* no new line: an empty answer, ask again */
}

static void on_wait_abort(http_request *req)
{
    logs_wait *lw = req->data;
    /* The handler must still answer; the answer is dropped. */
    http_respond(req, 200, "application/json", NULL, "{}", 2);
    wait_over(lw, 0);
}

/* Takes over the caller's reference to log. */
static void wait_for_lines(http_request *req, fnlog *log, const char *function, int removed,
                           const logs_params *p)
{
    logs_wait *lw = calloc(1, sizeof *lw);
    if (!lw) {
        answer(req, log, function, removed, p);
        fnlog_unref(log);
        return;
    }
    lw->w.cb = on_new_lines;
    lw->req = req;
    lw->log = log;
    lw->removed = removed;
    lw->p = *p;
    snprintf(lw->function, sizeof lw->function, "%s", function);
    uv_timer_init(http_request_loop(req), &lw->timer);
    lw->timer.data = lw;
    uv_timer_start(&lw->timer, on_wait_timeout, p->wait_ms, 0);
    fnlog_wait(log, &lw->w);
    req->data = lw;
    req->on_abort = on_wait_abort;
}

void api_logs(api *a, http_request *req, const route_match *m)
{
    logs_params p = {.limit = 100};
    if (http_query_parse(req->query, on_param, &p) != 0) {
        http_respond_error(req, 400, "bad_parameter", "%s",
                           p.why[0] ? p.why : "malformed query string");
        return;
    }
    char name[SPATE_NAME_MAX + 1];
    snprintf(name, sizeof name, "%.*s", (int)m->name_len, m->name);
    fn *f = functions_find(a->table, m->name, m->name_len);
    fnlog *log = NULL;
    if (f) {
        log = pool_log(f->pool);
        fnlog_ref(log);
    } else if (!(log = fnlog_find(name))) { /* deleted, and its files too: gone */
        http_respond_error(req, 404, "not_found", "function '%s' does not exist", name);
        return;
    }
    fnlog_filter filter = filter_of(&p);
    if (p.wait_ms && !fnlog_has_after(log, p.after, &filter)) { /* nothing to give yet */
        wait_for_lines(req, log, name, !f, &p);
        return;
    }
    answer(req, log, name, !f, &p);
    fnlog_unref(log);
}
