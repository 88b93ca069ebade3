/*
 * logs.c - GET /v1/functions/NAME/logs: the newest lines the function's
 * processes wrote, or those after a line already seen (?after=SEQ).
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
    char why[160];
} logs_params;

static int on_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    logs_params *p = data;
    if (strcmp(k, "limit") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_LOG_LINES_KEPT, &p->limit, p->why,
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
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "function", f->name);
    cJSON *lines = cJSON_AddArrayToObject(doc, "lines");
    fnlog_each(log, p.after, p.limit, add_line, lines);
    cJSON_AddNumberToObject(doc, "evicted", (double)fnlog_evicted(log));
    api_respond_json(req, 200, doc);
}
