/*
 * logs.c - GET /v1/functions/NAME/logs: the newest lines the function's
 * processes wrote, or those after a line already seen (?after=SEQ). With
 * ?wait=MS and nothing after SEQ yet, the answer waits for new lines (a long
 * poll, at most SPATE_LOG_WAIT_MAX_MS): spate logs --follow.
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
    char why[160];
} logs_params;

static int on_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    logs_params *p = data;
    if (strcmp(k, "limit") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_LOG_LINES_KEPT, &p->limit, p->why,
                                sizeof p->why);
    if (strcmp(k, "wait") == 0)
        return api_number_param(k, v, vlen, 0, SPATE_LOG_WAIT_MAX_MS, &p->wait_ms, p->why,
                                sizeof p->why);
    if (strcmp(k, "after") == 0) {
        if (parse_u64(v, vlen, 0, UINT64_MAX >> 1, &p->after) != 0) {
            snprintf(p->why, sizeof p->why, "parameter 'after' must be a line number");
            return ERR_INVAL;
        }
        return 0;
    }
    snprintf(p->why, sizeof p->why, "unknown parameter '%.*s'", (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

static void add_line(const fnlog_line *line, void *data)
{
    cJSON *arr = data;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seq", (double)line->seq);
    cJSON_AddNumberToObject(o, "time_ms", (double)line->time_ms);
    cJSON_AddNumberToObject(o, "instance", (double)line->instance);
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

static void answer(http_request *req, fnlog *log, const char *function, const logs_params *p)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "function", function);
    cJSON *lines = cJSON_AddArrayToObject(doc, "lines");
    fnlog_each(log, p->after, p->limit, add_line, lines);
    cJSON_AddNumberToObject(doc, "evicted", (double)fnlog_evicted(log));
    api_respond_json(req, 200, doc);
}

/* A long poll: answered at the next new lines, at the end of the wait, or
 * dropped when the client leaves. It holds the log, which outlives a deleted
 * function until then. */
typedef struct logs_wait {
    fnlog_waiter w; /* first: the callback gets it */
    uv_timer_t timer;
    http_request *req;
    fnlog *log;
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
    if (answer_it) answer(lw->req, lw->log, lw->function, &lw->p);
    lw->req->on_abort = NULL;
    uv_close((uv_handle_t *)&lw->timer, on_wait_closed);
}

static void on_new_lines(fnlog_waiter *w)
{
    wait_over((logs_wait *)w, 1);
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

static void wait_for_lines(http_request *req, fnlog *log, const char *function,
                           const logs_params *p)
{
    logs_wait *lw = calloc(1, sizeof *lw);
    if (!lw) {
        answer(req, log, function, p);
        return;
    }
    lw->w.cb = on_new_lines;
    lw->req = req;
    lw->log = log;
    fnlog_ref(log);
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
    fn *f = functions_find(a->table, m->name, m->name_len);
    if (!f) {
        http_respond_error(req, 404, "not_found", "function '%.*s' does not exist",
                           (int)m->name_len, m->name);
        return;
    }
    fnlog *log = pool_log(f->pool);
    if (p.wait_ms && fnlog_next_seq(log) <= p.after + 1) { /* nothing to give yet */
        wait_for_lines(req, log, f->name, &p);
        return;
    }
    answer(req, log, f->name, &p);
}
