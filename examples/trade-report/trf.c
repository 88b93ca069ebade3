/*
 * trf - the trade reporting facility of the example: the regulator's end.
 * It accepts reports over HTTP, answers each after a set latency (standing
 * for the remote regulator), is idempotent by trade id (a duplicate delivery
 * is counted, never recorded twice), and keeps the receipt time of every
 * report.
 *
 *   trf [--listen HOST:PORT] [--latency-ms N]
 *
 *   POST /reports    a report (JSON with trade_id and executed_at); 200 after
 *                    the latency: {"status":"accepted"} or {"status":"duplicate"}
 *   GET  /stats      {"received":N,"unique":N,"duplicates":N}
 *   GET  /receipts   CSV: trade_id,executed_at_ms,received_ms (one line per trade)
 *
 * It is built on spate's own HTTP server module; it is a fixture of the
 * example, not part of spate.
 */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/parse.h"
#include "common/strmap.h"
#include "http/server.h"

typedef struct receipt {
    char *trade_id;
    int64_t executed_at;
    int64_t received;
} receipt;

typedef struct trf {
    uv_loop_t *loop;
    uint32_t latency_ms;
    strmap seen;
    receipt *receipts;
    size_t n, cap;
    uint64_t received, duplicates;
} trf;

typedef struct pending {
    uv_timer_t timer;
    http_request *req;
    int duplicate;
} pending;

static size_t body_limit(const http_request *req, void *data)
{
    return 64 * 1024;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_latency(uv_timer_t *t)
{
    pending *p = t->data;
    const char *body = p->duplicate ? "{\"status\":\"duplicate\"}" : "{\"status\":\"accepted\"}";
    http_respond(p->req, 200, "application/json", NULL, body, strlen(body));
    t->data = p;
    uv_close((uv_handle_t *)t, on_closed);
}

static void report(trf *f, http_request *req)
{
    int64_t now = clock_now_ms();
    cJSON *doc = cJSON_ParseWithLength(req->body.data ? req->body.data : "", req->body.len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "trade_id");
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(doc, "executed_at");
    if (!cJSON_IsString(id) || !cJSON_IsNumber(at)) {
        cJSON_Delete(doc);
        http_respond_error(req, 400, "bad_report", "a report needs trade_id and executed_at");
        return;
    }
    f->received++;
    pending *p = calloc(1, sizeof *p);
    p->req = req;
    if (strmap_get(&f->seen, id->valuestring, strlen(id->valuestring))) {
        p->duplicate = 1;
        f->duplicates++;
    } else {
        if (f->n == f->cap) {
            f->cap = f->cap ? f->cap * 2 : 4096;
            f->receipts = realloc(f->receipts, f->cap * sizeof *f->receipts);
        }
        receipt *r = &f->receipts[f->n++];
        r->trade_id = strdup(id->valuestring);
        r->executed_at = (int64_t)at->valuedouble;
        r->received = now;
        strmap_put(&f->seen, r->trade_id, r);
    }
    cJSON_Delete(doc);
    uv_timer_init(f->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_latency, f->latency_ms, 0);
}

static void handle(http_request *req, void *data)
{
    trf *f = data;
    if (req->method == HTTP_POST && strcmp(req->path, "/reports") == 0) {
        report(f, req);
    } else if (strcmp(req->path, "/stats") == 0) {
        char body[160];
        int n =
            snprintf(body, sizeof body, "{\"received\":%llu,\"unique\":%zu,\"duplicates\":%llu}",
                     (unsigned long long)f->received, f->n, (unsigned long long)f->duplicates);
        http_respond(req, 200, "application/json", NULL, body, (size_t)n);
    } else if (strcmp(req->path, "/receipts") == 0) {
        buf out;
        buf_init(&out, (size_t)1 << 30);
        buf_append_str(&out, "trade_id,executed_at_ms,received_ms\n");
        for (size_t i = 0; i < f->n; i++)
            buf_printf(&out, "%s,%lld,%lld\n", f->receipts[i].trade_id,
                       (long long)f->receipts[i].executed_at, (long long)f->receipts[i].received);
        http_respond(req, 200, "text/csv", NULL, out.data, out.len);
        buf_free(&out);
    } else {
        http_respond_error(req, 404, "not_found", "no route");
    }
}

static const http_handlers handlers = {.body_limit = body_limit, .handle = handle};

static void on_signal(uv_signal_t *s, int signum)
{
    uv_stop(s->loop);
}

int main(int argc, char **argv)
{
    char host[64] = "127.0.0.1";
    int port = 7780;
    trf f = {.latency_ms = 5};
    for (int i = 1; i + 1 < argc; i += 2) {
        uint64_t v;
        if (strcmp(argv[i], "--listen") == 0) {
            if (parse_host_port(argv[i + 1], host, sizeof host, &port)) return 2;
        } else if (strcmp(argv[i], "--latency-ms") == 0 &&
                   parse_u64(argv[i + 1], strlen(argv[i + 1]), 0, 60000, &v) == 0) {
            f.latency_ms = (uint32_t)v;
        } else {
            fprintf(stderr, "usage: trf [--listen HOST:PORT] [--latency-ms N]\n");
            return 2;
        }
    }
    log_set_tag("trf");
    signal(SIGPIPE, SIG_IGN);
    f.loop = uv_default_loop();
    strmap_init(&f.seen);
    http_config cfg;
    http_config_defaults(&cfg);
    cfg.max_connections = 4096;
    http_server *srv;
    char err[256];
    if (http_server_start(f.loop, host, port, &cfg, &handlers, &f, &srv, err, sizeof err)) {
        fprintf(stderr, "trf: %s\n", err);
        return 1;
    }
    uv_signal_t sigterm, sigint;
    uv_signal_init(f.loop, &sigterm);
    uv_signal_init(f.loop, &sigint);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    log_info("listening on %s:%d, answering after %u ms", host, http_server_port(srv),
             f.latency_ms);
    uv_run(f.loop, UV_RUN_DEFAULT);
    return 0;
}
