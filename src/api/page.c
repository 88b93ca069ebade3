/*
 * page.c - a listing's page (GET /v1/functions, /v1/triggers) written over
 * several loop turns: each turn adds items for at most SPATE_PAGE_SLICE_US
 * and the next resumes after the last one's cursor (its name), so that a
 * page of 1,000 never holds the loop for its whole time. The items are
 * printed one at a time into the answer's buffer: no document of the whole
 * page is built and printed at the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/json_alloc.h"
#include "common/limits.h"

struct api_page {
    api *a;
    http_request *req;
    uv_idle_t turn;
    const api_page_source *src;
    buf out;
    uint32_t limit, n;
    uint32_t in_turn; /* items this turn: at least one each, whatever the clock */
    int more;         /* an item follows the page */
    int yielded;      /* the turn's time is up */
    int aborted;      /* the client left */
    int failed;       /* the error that cut the page short */
    uint64_t slice_end_ns;
    int64_t total;                  /* as the last walk counted them; -1: ask src->total */
    char last[API_PAGE_CURSOR_MAX]; /* the cursor of the last item ("" none yet) */
    char after[API_PAGE_CURSOR_MAX];
};

int api_page_put(api_page *pg, cJSON *item, const char *cursor)
{
    if (pg->in_turn && clock_mono_ns() >= pg->slice_end_ns) {
        cJSON_Delete(item);
        pg->yielded = 1;
        return 1;
    }
    char *text = item ? cJSON_PrintUnformatted(item) : NULL;
    cJSON_Delete(item);
    /* A member cJSON could not add would be missing (api_respond_json). */
    int rc = text && !json_alloc_failed_since() ? 0 : ERR_NOMEM;
    if (!rc && pg->n) rc = buf_append(&pg->out, ",", 1);
    if (!rc) rc = buf_append(&pg->out, text, strlen(text));
    free(text);
    if (rc) {
        pg->failed = rc;
        return 1;
    }
    snprintf(pg->last, sizeof pg->last, "%s", cursor);
    pg->n++;
    pg->in_turn++;
    return 0;
}

void api_page_set_total(api_page *pg, uint32_t total)
{
    pg->total = total;
}

static void page_free(uv_handle_t *h)
{
    api_page *pg = h->data;
    buf_free(&pg->out);
    free(pg);
}

static void page_end(api_page *pg)
{
    uv_idle_stop(&pg->turn);
    pg->req->on_abort = NULL;
    if (pg->aborted) {
        http_respond(pg->req, 499, "text/plain", NULL, "", 0); /* frees the gone connection */
    } else if (pg->a->stopping) {
        http_respond_error(pg->req, 503, "shutting_down", "spated is shutting down");
    } else if (pg->failed) {
        http_respond_error(pg->req, 503, "out_of_memory", "cannot build the list: %s",
                           err_str(pg->failed));
    } else {
        /* The cursors' alphabets (names, TOPIC/FUNCTION) need no escaping. */
        int rc = buf_append(&pg->out, "],\"next\":", 9);
        if (!rc && pg->more && pg->n)
            rc = buf_printf(&pg->out, "\"%s\"", pg->last);
        else if (!rc)
            rc = buf_append(&pg->out, "null", 4);
        if (!rc)
            rc = buf_printf(&pg->out, ",\"limit\":%u,\"total\":%u}\n", pg->limit,
                            pg->total >= 0 ? (uint32_t)pg->total : pg->src->total(pg->a));
        if (rc)
            http_respond_error(pg->req, 503, "out_of_memory", "cannot build the list: %s",
                               err_str(rc));
        else
            http_respond(pg->req, 200, "application/json", NULL, pg->out.data, pg->out.len);
    }
    uv_close((uv_handle_t *)&pg->turn, page_free);
}

static void on_turn(uv_idle_t *t)
{
    api_page *pg = t->data;
    if (pg->aborted || pg->a->stopping) return page_end(pg);
    pg->slice_end_ns = clock_mono_ns() + SPATE_PAGE_SLICE_US * 1000ull;
    pg->yielded = 0;
    pg->in_turn = 0;
    const char *from = pg->last[0] ? pg->last : pg->after[0] ? pg->after : NULL;
    int more = 0;
    if (pg->src->walk(pg->a, pg, from, pg->limit - pg->n, &more) != 0 && !pg->failed)
        pg->failed = ERR_NOMEM;
    pg->more = more;
    if (pg->failed || !pg->yielded || pg->n == pg->limit) page_end(pg);
}

static void on_abort(http_request *req)
{
    api_page *pg = req->data;
    pg->aborted = 1;
}

void api_page_start(api *a, http_request *req, const api_page_source *src, uint32_t limit,
                    const char *after)
{
    api_page *pg = calloc(1, sizeof *pg);
    if (!pg) return http_respond_error(req, 503, "out_of_memory", "out of memory");
    pg->a = a;
    pg->req = req;
    pg->src = src;
    pg->limit = limit;
    pg->total = -1;
    snprintf(pg->after, sizeof pg->after, "%s", after ? after : "");
    buf_init(&pg->out, (size_t)limit * SPATE_PAGE_ITEM_MAX + 64);
    if (buf_printf(&pg->out, "{\"%s\":[", src->key)) {
        buf_free(&pg->out);
        free(pg);
        return http_respond_error(req, 503, "out_of_memory", "out of memory");
    }
    req->data = pg;
    req->on_abort = on_abort;
    uv_idle_init(http_request_loop(req), &pg->turn);
    pg->turn.data = pg;
    uv_idle_start(&pg->turn, on_turn);
}
