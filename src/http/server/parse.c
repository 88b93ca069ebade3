/*
 * parse.c - http_parser's callbacks: the request target and headers into
 * the connection's arena (within its header limit), the body into the
 * request (within the route's limit and the server's bodies budget), and
 * what a handler asks of the request before answering.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/limits.h"
#include "http/server/internal.h"

/* --- Parser callbacks ------------------------------------------------------------ */

static int vfail(http_conn *c, int status, const char *code, const char *fmt, va_list ap)
{
    c->error_status = status;
    c->error_code = code;
    vsnprintf(c->error_msg, sizeof c->error_msg, fmt, ap);
    return -1;
}

int http__fail(http_conn *c, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, status, code, fmt, ap);
    va_end(ap);
    return -1;
}

static int header_overflow(http_conn *c)
{
    return http__fail(c, 431, "headers_too_large", "request headers exceed %zu bytes or %d lines",
                      c->arena.max, SPATE_HTTP_HEADER_COUNT_MAX);
}

int http_refuse(http_request *req, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(CONN(req), status, code, fmt, ap);
    va_end(ap);
    return -1;
}

void http_trust(http_request *req)
{
    CONN(req)->trusted = 1;
}

const http_peer *http_request_peer(const http_request *req)
{
    return &CONN(req)->peer;
}

static int arena_add(http_conn *c, const char *p, size_t n)
{
    int rc = buf_append(&c->arena, p, n);
    if (rc == ERR_NOMEM)
        return http__fail(c, 503, "out_of_memory", "cannot allocate the request headers");
    return rc ? header_overflow(c) : 0;
}

static int on_message_begin(http_parser *p)
{
    http_conn *c = p->data;
    c->state = C_READING;
    buf_reset(&c->arena);
    /* Until a request is admitted, a connection gets the stricter limit. */
    const http_config *cfg = &c->srv->cfg;
    c->arena.max = c->trusted || !cfg->header_bytes_preauth ? cfg->header_bytes_max
                                                            : cfg->header_bytes_preauth;
    c->nhdrs = 0;
    c->header_state = 0;
    c->req.path = c->req.query = "";
    c->req.data = NULL;
    c->req.on_abort = NULL;
    c->req.id = ++c->srv->next_id;
    /* The headers of a new or untrusted connection's request have a short
     * deadline: from accept for the first request, so that sending a byte
     * now and then does not extend it. */
    uint32_t ms = cfg->request_timeout_ms;
    c->header_timer = 0;
    if (cfg->header_timeout_ms && cfg->header_timeout_ms < cfg->request_timeout_ms &&
        (c->is_new || !c->trusted)) {
        uint64_t now = uv_now(c->srv->loop);
        if (!c->is_new) c->header_due = now + cfg->header_timeout_ms;
        ms = c->header_due > now ? (uint32_t)(c->header_due - now) : 1;
        c->header_timer = 1;
    }
    http__start_timer(c, ms);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    return arena_add(p->data, at, len);
}

/* Ends the current name or value with a NUL. */
static int end_item(http_conn *c)
{
    if (arena_add(c, "", 1)) return -1;
    if (c->header_state == 2) {
        hdr_index *h = &c->hdrs[c->nhdrs - 1];
        h->value_len = (uint32_t)(c->arena.len - 1 - h->value_off);
    } else if (c->header_state == 1) {
        hdr_index *h = &c->hdrs[c->nhdrs - 1];
        h->name_len = (uint32_t)(c->arena.len - 1 - h->name_off);
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    if (c->header_state != 1) {
        if (end_item(c)) return -1;
        if (c->nhdrs == SPATE_HTTP_HEADER_COUNT_MAX) return header_overflow(c);
        c->hdrs[c->nhdrs++] = (hdr_index){.name_off = (uint32_t)c->arena.len};
        c->header_state = 1;
    }
    return arena_add(c, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    if (c->header_state != 2) {
        if (end_item(c)) return -1;
        c->hdrs[c->nhdrs - 1].value_off = (uint32_t)c->arena.len;
        c->header_state = 2;
    }
    return arena_add(c, at, len);
}

static int on_headers_complete(http_parser *p)
{
    http_conn *c = p->data;
    if (end_item(c)) return -1;
    c->header_state = 3;
    /* The target is at the start of the arena: split it at '?'. */
    char *target = c->arena.data;
    if (!target || target[0] != '/')
        return http__fail(c, 400, "bad_request", "request target must start with '/'");
    char *q = strchr(target, '?');
    if (q) *q = '\0';
    c->req.path = target;
    c->req.query = q ? q + 1 : "";
    c->req.method = (enum http_method)p->method;
    if (p->http_major != 1)
        return http__fail(c, 505, "http_version", "HTTP/%d.%d is not supported; use HTTP/1.1",
                          p->http_major, p->http_minor);
    if (p->upgrade || p->method == HTTP_CONNECT)
        return http__fail(c, 400, "bad_request", "protocol upgrades are not supported");

    if (c->srv->h->admit && c->srv->h->admit(&c->req, c->srv->data) != 0) return -1;
    size_t limit = c->srv->h->body_limit(&c->req, c->srv->data);
    http__release_body(c);
    buf_free(&c->req.body);
    buf_init(&c->req.body, limit);
    int has_length = (p->flags & F_CONTENTLENGTH) != 0;
    if (has_length && p->content_length > limit)
        return http__fail(c, 413, "payload_too_large",
                          "request body of %llu bytes exceeds the limit of %zu bytes",
                          (unsigned long long)p->content_length, limit);
    if (has_length && http__charge_body(c, p->content_length))
        return http__fail(c, 503, "busy", "too many request bodies in progress: try again");
    if (has_length && p->content_length > 0 && buf_reserve(&c->req.body, p->content_length))
        return http__fail(c, 503, "out_of_memory", "cannot allocate the request body");
    const char *expect = http_header(&c->req, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
    if (c->header_timer) {
        /* The body gets the request timeout. */
        c->header_timer = 0;
        http__start_timer(c, c->srv->cfg.request_timeout_ms);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    if (http__charge_body(c, c->req.body.len + len))
        return http__fail(c, 503, "busy", "too many request bodies in progress: try again");
    int rc = buf_append(&c->req.body, at, len);
    if (rc == ERR_TOOBIG)
        return http__fail(c, 413, "payload_too_large",
                          "request body exceeds the limit of %zu bytes", c->req.body.max);
    if (rc) return http__fail(c, 503, "out_of_memory", "cannot allocate the request body");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn *c = p->data;
    uv_timer_stop(&c->timer);
    c->header_timer = 0;
    http__leave_new(c);
    c->keep_alive = http_should_keep_alive(p) != 0;
    c->ready = 1;
    c->state = C_HANDLING;
    /* One request at a time: the rest of the buffer waits for the answer. */
    http_parser_pause(p, 1);
    return 0;
}

const char *http_header(const http_request *req, const char *name)
{
    const http_conn *c = (const http_conn *)req;
    if (c->header_state < 3) return NULL;
    for (uint32_t i = 0; i < c->nhdrs; i++) {
        const hdr_index *h = &c->hdrs[i];
        if (strcasecmp(c->arena.data + h->name_off, name) == 0) return c->arena.data + h->value_off;
    }
    return NULL;
}

const char *http_header_name_at(const http_request *req, size_t i)
{
    const http_conn *c = (const http_conn *)req;
    if (c->header_state < 3 || i >= c->nhdrs) return NULL;
    return c->arena.data + c->hdrs[i].name_off;
}

const http_parser_settings http__settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
