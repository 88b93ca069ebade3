/*
 * respond.c - answers: the status line and headers, writing them without a
 * copy when the socket takes them, holding answers to pipelined requests to
 * send them together (the cork), JSON error bodies.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/fmt.h"
#include "common/limits.h"
#include "common/log.h"
#include "http/server/internal.h"

const char *http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* --- Answers ---------------------------------------------------------------------- */

void http__written(http_conn *c)
{
    if (c->srv->closing) {
        http__close_conn(c);
        return;
    }
    if (!c->keep_alive) {
        http__linger(c);
        return;
    }
    c->state = C_IDLE;
    http__start_timer(c, c->srv->cfg.idle_timeout_ms);
    if (!c->in_process) http__process(c);
}

static void on_write(uv_write_t *w, int status)
{
    http_conn *c = w->data;
    buf_reset(&c->out);
    if (c->closed) return;
    if (status < 0) {
        http__close_conn(c);
        return;
    }
    http__written(c);
}

static const char *date_header(http_server *s)
{
    time_t now = time(NULL);
    if (now != s->date_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(s->date, sizeof s->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_at = now;
    }
    return s->date;
}

/* Writes head and body: directly when the socket takes them (the usual case,
 * no copy), else from a copy of the rest. 0, or -1 if the connection closed. */
static int write_answer(http_conn *c, const char *head, size_t hlen, const void *body, size_t blen)
{
    if (c->tls) return http__tls_write(c, head, hlen, body, blen);
    uv_buf_t bufs[2] = {uv_buf_init((char *)head, (unsigned)hlen),
                        uv_buf_init((char *)body, (unsigned)blen)};
    int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, blen ? 2 : 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        http__close_conn(c);
        return -1;
    }
    size_t sent = (size_t)n;
    if (sent == hlen + blen) return 0;
    buf_init(&c->out, hlen + blen);
    if (sent < hlen) {
        buf_append(&c->out, head + sent, hlen - sent);
        sent = 0;
    } else {
        sent -= hlen;
    }
    if (buf_append(&c->out, (const char *)body + sent, blen - sent)) {
        http__close_conn(c);
        return -1;
    }
    c->state = C_WRITING;
    c->wreq.data = c;
    uv_buf_t rest = uv_buf_init(c->out.data, (unsigned)c->out.len);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &rest, 1, on_write) != 0) {
        http__close_conn(c);
        return -1;
    }
    /* A client that stops reading is dropped after the idle timeout. */
    http__start_timer(c, c->srv->cfg.idle_timeout_ms);
    return 1;
}

/* Sends what was held, alone. */
int http__flush_cork(http_conn *c)
{
    if (c->cork.len == 0 || c->closed) return 0;
    buf held = c->cork;
    buf_init(&c->cork, held.max);
    int rc = write_answer(c, held.data, held.len, NULL, 0);
    buf_free(&held);
    return rc;
}

static void send_answer(http_conn *c, const char *head, size_t hlen, const void *body, size_t blen)
{
    int more = c->in_process && c->keep_alive && c->in_off < c->in_len;
    int rc;
    if (more && c->cork.len + hlen + blen <= SPATE_HTTP_CORK_MAX) {
        if (buf_append(&c->cork, head, hlen) || buf_append(&c->cork, body, blen)) {
            http__close_conn(c);
            return;
        }
        http__written(c);
        return;
    }
    if (c->cork.len) {
        /* The last of a run (or a large one): everything held goes with it, in order. */
        if (buf_append(&c->cork, head, hlen) || buf_append(&c->cork, body, blen)) {
            http__close_conn(c);
            return;
        }
        rc = http__flush_cork(c);
    } else {
        rc = write_answer(c, head, hlen, body, blen);
    }
    if (rc == 0) http__written(c);
}

void http_respond(http_request *req, int status, const char *content_type,
                  const char *extra_headers, const void *body, size_t len)
{
    http_conn *c = CONN(req);
    c->pending = 0;
    c->ready = 0;
    http__release_body(c);
    buf_free(&req->body);
    if (c->closed) {
        http__maybe_free(c);
        return;
    }
    if (c->srv->draining || c->error_status) c->keep_alive = 0;
    if (req->method == HTTP_HEAD) len = 0;
    const char *text = http_status_text(status);
    const char *date = date_header(c->srv);
    size_t tlen = strlen(text), dlen = strlen(date);
    size_t clen = content_type ? strlen(content_type) : 0;
    size_t xlen = extra_headers ? strlen(extra_headers) : 0;
    /* Fixed parts and a 20-digit length fit in 160 bytes. A head larger
     * than the connection's own buffer (Lambda's X-Amz-Log-Result: 4 KiB in
     * base64) is built on the heap: send_answer copies what it cannot send
     * at once, so the head need not outlive the call. */
    size_t need = tlen + dlen + clen + xlen + 160;
    char *head = c->head;
    if (need > sizeof c->head && (need > SPATE_HTTP_ANSWER_HEAD_MAX || !(head = malloc(need)))) {
        log_error("answer headers too long req=%llu", (unsigned long long)req->id);
        http__close_conn(c);
        return;
    }
    char *p = fmt_lit(head, "HTTP/1.1 ");
    p = fmt_u64(p, (uint64_t)status);
    *p++ = ' ';
    p = fmt_str(p, text, tlen);
    p = fmt_lit(p, "\r\nDate: ");
    p = fmt_str(p, date, dlen);
    p = fmt_lit(p, "\r\nContent-Length: ");
    p = fmt_u64(p, len);
    p = fmt_lit(p, "\r\n");
    if (content_type) {
        p = fmt_lit(p, "Content-Type: ");
        p = fmt_str(p, content_type, clen);
        p = fmt_lit(p, "\r\n");
    }
    if (xlen) p = fmt_str(p, extra_headers, xlen);
    if (!c->keep_alive) p = fmt_lit(p, "Connection: close\r\n");
    p = fmt_lit(p, "\r\n");
    int n = (int)(p - head);
    send_answer(c, head, (size_t)n, body, len);
    if (head != c->head) free(head);
}

static void respond_verror(http_request *req, int status, const char *extra_headers,
                           const char *code, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* The message is short and has no structure: escaped into the body
     * directly, with room kept for the code after it. */
    char body[2300];
    char *p = fmt_lit(body, "{\"error\":\"");
    p = fmt_json_str(p, body + sizeof body - 58, msg, strlen(msg));
    size_t n = (size_t)(p - body);
    n += (size_t)snprintf(body + n, sizeof body - n, "\",\"code\":\"%s\"}\n", code);
    http_respond(req, status, "application/json", extra_headers, body, n);
}

void http_respond_error(http_request *req, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    respond_verror(req, status, NULL, code, fmt, ap);
    va_end(ap);
}

void http_respond_error_with(http_request *req, int status, const char *extra_headers,
                             const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    respond_verror(req, status, extra_headers, code, fmt, ap);
    va_end(ap);
}
