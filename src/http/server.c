#include "http/server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/err.h"
#include "common/fmt.h"
#include "common/limits.h"
#include "common/list.h"
#include "common/log.h"

/* After a final answer that closes the connection, unread input is drained
 * for at most this long, so the client reads the answer instead of a reset. */
#define LINGER_MS 2000

enum conn_state {
    C_IDLE,     /* between requests */
    C_READING,  /* a request is arriving */
    C_HANDLING, /* the handler has it */
    C_WRITING,  /* an answer is being sent */
    C_LINGER,   /* final answer sent; draining input before closing */
};

typedef struct hdr_index {
    uint32_t name_off, name_len, value_off, value_len;
} hdr_index;

typedef struct http_conn {
    http_request req;
    http_server *srv;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    list_node link;
    list_node new_link; /* in srv->new_conns while no request has completed */
    http_peer peer;
    uint64_t header_due; /* loop time by which the headers must be in */
    http_parser parser;
    enum conn_state state;
    char *in; /* read buffer: [in_off, in_len) not yet parsed */
    size_t in_off, in_len;
    buf arena; /* request target and headers, each NUL-terminated */
    hdr_index hdrs[SPATE_HTTP_HEADER_COUNT_MAX];
    uint32_t nhdrs;
    int header_state; /* 0: in the target, 1: in a field name, 2: in a value */
    int error_status;
    const char *error_code;
    char error_msg[160];
    unsigned ready : 1, pending : 1, keep_alive : 1, in_process : 1, closed : 1, reading : 1,
        peer_eof : 1, trusted : 1, is_new : 1, header_timer : 1;
    int handles;
    buf out;        /* answer bytes the socket did not take at once */
    buf cork;       /* answers to pipelined requests, sent together when parsing stops */
    size_t charged; /* bytes of its body counted in srv->bodies */
    char client[64];
    char head[1024];
} http_conn;

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    http_config cfg;
    const http_handlers *h;
    void *data;
    list_node conns; /* open connections */
    uint32_t nconns;
    list_node new_conns; /* connections without a complete request, oldest first */
    uint32_t nnew;
    uint64_t evicted, evicted_logged; /* closed to make room; how many the log has said */
    uint64_t evict_log_at;
    uint32_t nalloc; /* connections not yet freed (closed ones may await a handler) */
    int port;
    int draining;
    uint64_t next_id;
    size_t bodies; /* counted against cfg.bodies_max */
    void (*close_cb)(void *);
    void *close_data;
    int closing;
    time_t date_at;
    char date[40];
};

static http_parser_settings settings;
static char discard[16 * KIB];

static void process(http_conn *c);
static void close_conn(http_conn *c);

#define CONN(r) ((http_conn *)(r))

void http_config_defaults(http_config *c)
{
    memset(c, 0, sizeof *c);
    c->max_connections = SPATE_HTTP_CONNECTIONS_MAX;
    c->header_bytes_max = SPATE_HTTP_HEADER_BYTES_MAX;
    c->idle_timeout_ms = SPATE_HTTP_IDLE_TIMEOUT_MS;
    c->request_timeout_ms = SPATE_HTTP_REQUEST_TIMEOUT_MS;
    c->header_timeout_ms = SPATE_HTTP_HEADER_TIMEOUT_MS;
    c->new_max = SPATE_HTTP_NEW_CONNECTIONS_MAX;
}

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

/* --- Connection lifetime ------------------------------------------------------ */

/* Counts c's body, total bytes of it, against the server's bodies_max. 0,
 * or -1 when that does not fit. */
static int charge_body(http_conn *c, size_t total)
{
    http_server *s = c->srv;
    if (total <= c->charged) return 0;
    size_t extra = total - c->charged;
    if (s->cfg.bodies_max && s->bodies + extra > s->cfg.bodies_max) return -1;
    s->bodies += extra;
    c->charged = total;
    return 0;
}

/* c's body is gone (answered, or the connection is): it counts no more. */
static void release_body(http_conn *c)
{
    c->srv->bodies -= c->charged;
    c->charged = 0;
}

static void maybe_free(http_conn *c)
{
    if (c->handles > 0 || c->pending) return;
    http_server *s = c->srv;
    release_body(c);
    buf_free(&c->arena);
    buf_free(&c->req.body);
    buf_free(&c->out);
    buf_free(&c->cork);
    free(c->in);
    free(c);
    s->nalloc--;
    if (s->closing && s->nalloc == 0 && !s->listening) {
        void (*cb)(void *) = s->close_cb;
        void *data = s->close_data;
        free(s);
        if (cb) cb(data);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    http_conn *c = h->data;
    c->handles--;
    maybe_free(c);
}

/* The connection completed a request (or closes): it leaves the new ones. */
static void leave_new(http_conn *c)
{
    if (!c->is_new) return;
    c->is_new = 0;
    list_remove(&c->new_link);
    c->srv->nnew--;
}

static void close_conn(http_conn *c)
{
    if (c->closed) return;
    c->closed = 1;
    leave_new(c);
    list_remove(&c->link);
    c->srv->nconns--;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->pending && c->req.on_abort) c->req.on_abort(&c->req);
}

static void on_timer(uv_timer_t *t)
{
    http_conn *c = t->data;
    if (c->state == C_READING) {
        /* A request that trickles in too slowly. */
        c->error_status = 408;
        c->error_code = "request_timeout";
        if (c->header_timer)
            snprintf(c->error_msg, sizeof c->error_msg, "request headers not complete within %u ms",
                     c->srv->cfg.header_timeout_ms);
        else
            snprintf(c->error_msg, sizeof c->error_msg, "request not complete within %u ms",
                     c->srv->cfg.request_timeout_ms);
        http_respond_error(&c->req, 408, c->error_code, "%s", c->error_msg);
        return;
    }
    /* Idle keep-alive, a client that stopped reading, or the linger is over. */
    close_conn(c);
}

static void start_timer(http_conn *c, uint32_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_shutdown(uv_shutdown_t *r, int status)
{
    (void)r;
    (void)status;
}

/* Sends FIN after the answer and drains input for a while, so that a client
 * still sending a body reads our answer rather than a connection reset. */
static void linger(http_conn *c)
{
    c->state = C_LINGER;
    if (c->peer_eof) {
        close_conn(c);
        return;
    }
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        close_conn(c);
        return;
    }
    start_timer(c, LINGER_MS);
}

/* --- Parser callbacks ------------------------------------------------------------ */

static int fail(http_conn *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int vfail(http_conn *c, int status, const char *code, const char *fmt, va_list ap)
{
    c->error_status = status;
    c->error_code = code;
    vsnprintf(c->error_msg, sizeof c->error_msg, fmt, ap);
    return -1;
}

static int fail(http_conn *c, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, status, code, fmt, ap);
    va_end(ap);
    return -1;
}

static int header_overflow(http_conn *c)
{
    return fail(c, 431, "headers_too_large", "request headers exceed %zu bytes or %d lines",
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
    return buf_append(&c->arena, p, n) ? header_overflow(c) : 0;
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
    start_timer(c, ms);
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
        return fail(c, 400, "bad_request", "request target must start with '/'");
    char *q = strchr(target, '?');
    if (q) *q = '\0';
    c->req.path = target;
    c->req.query = q ? q + 1 : "";
    c->req.method = (enum http_method)p->method;
    if (p->http_major != 1)
        return fail(c, 505, "http_version", "HTTP/%d.%d is not supported; use HTTP/1.1",
                    p->http_major, p->http_minor);
    if (p->upgrade || p->method == HTTP_CONNECT)
        return fail(c, 400, "bad_request", "protocol upgrades are not supported");

    if (c->srv->h->admit && c->srv->h->admit(&c->req, c->srv->data) != 0) return -1;
    size_t limit = c->srv->h->body_limit(&c->req, c->srv->data);
    release_body(c);
    buf_free(&c->req.body);
    buf_init(&c->req.body, limit);
    int has_length = (p->flags & F_CONTENTLENGTH) != 0;
    if (has_length && p->content_length > limit)
        return fail(c, 413, "payload_too_large",
                    "request body of %llu bytes exceeds the limit of %zu bytes",
                    (unsigned long long)p->content_length, limit);
    if (has_length && charge_body(c, p->content_length))
        return fail(c, 503, "busy", "too many request bodies in progress: try again");
    if (has_length && p->content_length > 0 && buf_reserve(&c->req.body, p->content_length))
        return fail(c, 503, "out_of_memory", "cannot allocate the request body");
    const char *expect = http_header(&c->req, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
    if (c->header_timer) {
        /* The body gets the request timeout. */
        c->header_timer = 0;
        start_timer(c, c->srv->cfg.request_timeout_ms);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    if (charge_body(c, c->req.body.len + len))
        return fail(c, 503, "busy", "too many request bodies in progress: try again");
    int rc = buf_append(&c->req.body, at, len);
    if (rc == ERR_TOOBIG)
        return fail(c, 413, "payload_too_large", "request body exceeds the limit of %zu bytes",
                    c->req.body.max);
    if (rc) return fail(c, 503, "out_of_memory", "cannot allocate the request body");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn *c = p->data;
    uv_timer_stop(&c->timer);
    c->header_timer = 0;
    leave_new(c);
    c->keep_alive = http_should_keep_alive(p) != 0;
    c->ready = 1;
    c->state = C_HANDLING;
    /* One request at a time: the rest of the buffer waits for the answer. */
    http_parser_pause(p, 1);
    return 0;
}

/* --- Answers ---------------------------------------------------------------------- */

static void written(http_conn *c)
{
    if (c->srv->closing) {
        close_conn(c);
        return;
    }
    if (!c->keep_alive) {
        linger(c);
        return;
    }
    c->state = C_IDLE;
    start_timer(c, c->srv->cfg.idle_timeout_ms);
    if (!c->in_process) process(c);
}

static void on_write(uv_write_t *w, int status)
{
    http_conn *c = w->data;
    buf_reset(&c->out);
    if (c->closed) return;
    if (status < 0) {
        close_conn(c);
        return;
    }
    written(c);
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

/* Writes head and body, directly when the socket takes them (the usual case,
 * no copy), else from a copy of the rest. */
/* Answers that go out while more pipelined requests already wait in the read
 * buffer are held and leave in one write when parsing stops (a runtime that
 * sends its response and its next /next together gets both answers in one
 * segment). Up to this much. */
#define CORK_MAX (64u * KIB)

/* Writes head and body: directly when the socket takes them (the usual case,
 * no copy), else from a copy of the rest. 0, or -1 if the connection closed. */
static int write_answer(http_conn *c, const char *head, size_t hlen, const void *body, size_t blen)
{
    uv_buf_t bufs[2] = {uv_buf_init((char *)head, (unsigned)hlen),
                        uv_buf_init((char *)body, (unsigned)blen)};
    int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, blen ? 2 : 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        close_conn(c);
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
        close_conn(c);
        return -1;
    }
    c->state = C_WRITING;
    c->wreq.data = c;
    uv_buf_t rest = uv_buf_init(c->out.data, (unsigned)c->out.len);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &rest, 1, on_write) != 0) {
        close_conn(c);
        return -1;
    }
    /* A client that stops reading is dropped after the idle timeout. */
    start_timer(c, c->srv->cfg.idle_timeout_ms);
    return 1;
}

/* Sends what was held, alone. */
static int flush_cork(http_conn *c)
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
    if (more && c->cork.len + hlen + blen <= CORK_MAX) {
        if (buf_append(&c->cork, head, hlen) || buf_append(&c->cork, body, blen)) {
            close_conn(c);
            return;
        }
        written(c);
        return;
    }
    if (c->cork.len) {
        /* The last of a run (or a large one): everything held goes with it, in order. */
        if (buf_append(&c->cork, head, hlen) || buf_append(&c->cork, body, blen)) {
            close_conn(c);
            return;
        }
        rc = flush_cork(c);
    } else {
        rc = write_answer(c, head, hlen, body, blen);
    }
    if (rc == 0) written(c);
}

void http_respond(http_request *req, int status, const char *content_type,
                  const char *extra_headers, const void *body, size_t len)
{
    http_conn *c = CONN(req);
    c->pending = 0;
    c->ready = 0;
    release_body(c);
    buf_free(&req->body);
    if (c->closed) {
        maybe_free(c);
        return;
    }
    if (c->srv->draining || c->error_status) c->keep_alive = 0;
    if (req->method == HTTP_HEAD) len = 0;
    const char *text = http_status_text(status);
    const char *date = date_header(c->srv);
    size_t tlen = strlen(text), dlen = strlen(date);
    size_t clen = content_type ? strlen(content_type) : 0;
    size_t xlen = extra_headers ? strlen(extra_headers) : 0;
    /* Fixed parts and a 20-digit length fit in 160 bytes. */
    if (tlen + dlen + clen + xlen + 160 > sizeof c->head) {
        log_error("answer headers too long req=%llu", (unsigned long long)req->id);
        close_conn(c);
        return;
    }
    char *p = fmt_lit(c->head, "HTTP/1.1 ");
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
    int n = (int)(p - c->head);
    send_answer(c, c->head, (size_t)n, body, len);
}

static void respond_verror(http_request *req, int status, const char *extra_headers,
                           const char *code, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* JSON-escape the message by hand: it is short and has no structure. */
    char body[2300];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"error\":\"");
    for (const unsigned char *p = (const unsigned char *)msg; *p && n < sizeof body - 64; p++) {
        if (*p == '"' || *p == '\\')
            n += (size_t)snprintf(body + n, sizeof body - n, "\\%c", *p);
        else if (*p < 0x20)
            n += (size_t)snprintf(body + n, sizeof body - n, "\\u%04x", *p);
        else
            body[n++] = (char)*p;
    }
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

/* --- Reading and parsing ------------------------------------------------------------ */

static void dispatch(http_conn *c)
{
    c->pending = 1;
    if (c->srv->draining) {
        http_respond_error(&c->req, 503, "shutting_down", "spated is shutting down");
        return;
    }
    c->srv->h->handle(&c->req, c->srv->data);
}

static void keep_reading(http_conn *c);

static void process(http_conn *c)
{
    c->in_process = 1;
    while (!c->closed && c->state != C_LINGER && !c->pending && c->state != C_WRITING) {
        if (c->ready) {
            c->ready = 0;
            dispatch(c);
            continue;
        }
        if (c->in_off == c->in_len) {
            /* The client stopped sending in the middle of a request: it
             * will never be whole; say so instead of waiting for the
             * request timeout. */
            if (c->peer_eof && c->state == C_READING && !c->error_status) {
                fail(c, 400, "bad_request", "the request ended before it was complete");
                c->pending = 1;
                c->state = C_HANDLING;
                http_respond_error(&c->req, c->error_status, c->error_code, "%s", c->error_msg);
            }
            break;
        }
        if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) http_parser_pause(&c->parser, 0);
        size_t n =
            http_parser_execute(&c->parser, &settings, c->in + c->in_off, c->in_len - c->in_off);
        c->in_off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_OK || e == HPE_PAUSED) continue;
        if (!c->error_status)
            fail(c, 400, "bad_request", "malformed request: %s", http_errno_description(e));
        c->pending = 1; /* answered below, through the same path as a handler */
        c->state = C_HANDLING;
        http_respond_error(&c->req, c->error_status, c->error_code, "%s", c->error_msg);
    }
    c->in_process = 0;
    /* Parsing stopped: what was held goes now, ahead of later answers. */
    if (flush_cork(c) != 0) return;
    if (c->closed || c->state == C_LINGER) return;
    if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
    if (c->peer_eof && !c->pending && c->state == C_IDLE && c->in_len == 0) {
        close_conn(c);
        return;
    }
    keep_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    http_conn *c = h->data;
    if (c->state == C_LINGER) {
        *out = uv_buf_init(discard, sizeof discard);
        return;
    }
    if (!c->in && !(c->in = malloc(SPATE_HTTP_READ_BUFFER))) {
        *out = uv_buf_init(NULL, 0);
        return;
    }
    if (c->in_off > 0 && c->in_len == SPATE_HTTP_READ_BUFFER) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    *out = uv_buf_init(c->in + c->in_len, (unsigned)(SPATE_HTTP_READ_BUFFER - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    http_conn *c = s->data;
    if (nread == 0) return;
    if (c->state == C_LINGER) {
        if (nread < 0) close_conn(c);
        return;
    }
    if (nread == UV_EOF) {
        /* The client will send no more; what it sent is still answered. */
        c->peer_eof = 1;
        uv_read_stop(s);
        c->reading = 0;
        if (!c->in_process) process(c);
        return;
    }
    if (nread < 0) {
        close_conn(c);
        return;
    }
    c->in_len += (size_t)nread;
    if (!c->in_process) process(c);
}

/* Reads while there is room; a full buffer (pipelined requests waiting
 * behind a slow one) stops reading until the parser catches up. */
static void keep_reading(http_conn *c)
{
    int room = c->in_len - c->in_off < SPATE_HTTP_READ_BUFFER;
    if (room && !c->reading && !c->peer_eof) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    } else if (!room && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

/* A new connection that may be closed to make room: one still waiting for
 * (the rest of) its first request's headers, or lingering after an error. */
static int evictable_new(const http_conn *c)
{
    if (c->pending) return 0;
    return c->state == C_IDLE || c->state == C_LINGER ||
           (c->state == C_READING && c->header_state < 3);
}

static http_conn *oldest_new(http_server *s, const http_conn *except)
{
    for (list_node *n = list_first(&s->new_conns); n != &s->new_conns; n = n->next) {
        http_conn *c = list_entry(n, http_conn, new_link);
        if (c != except && evictable_new(c)) return c;
    }
    return NULL;
}

/* A keep-alive connection between requests with nothing buffered: closing
 * it loses nothing (a client may always find an idle connection closed). */
static http_conn *oldest_idle(http_server *s, const http_conn *except)
{
    for (list_node *n = list_first(&s->conns); n != &s->conns; n = n->next) {
        http_conn *c = list_entry(n, http_conn, link);
        if (c != except && !c->pending && c->state == C_IDLE && c->in_off == c->in_len) return c;
    }
    return NULL;
}

static void evict(http_server *s, http_conn *victim)
{
    s->evicted++;
    uint64_t now = uv_now(s->loop);
    /* Under a flood this happens per connection: say it every 10 s at most. */
    if (now >= s->evict_log_at) {
        log_warn("closed %llu waiting or idle connection(s) to make room for new ones "
                 "(limits: %u connections, %u not yet with a complete request) client=%s",
                 (unsigned long long)(s->evicted - s->evicted_logged), s->cfg.max_connections,
                 s->cfg.new_max, victim->client);
        s->evicted_logged = s->evicted;
        s->evict_log_at = now + 10000;
    }
    close_conn(victim);
}

/* Makes room for c within the budgets; 0, or -1 when every other
 * connection is busy. */
static int make_room(http_server *s, http_conn *c)
{
    if (s->cfg.new_max && s->nnew > s->cfg.new_max) {
        http_conn *v = oldest_new(s, c);
        if (!v) return -1;
        evict(s, v);
    }
    if (s->nconns > s->cfg.max_connections) {
        http_conn *v = oldest_new(s, c);
        if (!v) v = oldest_idle(s, c);
        if (!v) return -1;
        evict(s, v);
    }
    return 0;
}

static void on_connection(uv_stream_t *listener, int status)
{
    http_server *s = listener->data;
    if (status < 0) {
        log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    http_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = s;
    s->nalloc++;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    c->handles = 1;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_init(s->loop, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    list_push_back(&s->conns, &c->link);
    s->nconns++;
    list_push_back(&s->new_conns, &c->new_link);
    s->nnew++;
    c->is_new = 1;
    /* Until its first request, the shorter of the idle timeout and the
     * header deadline. */
    uint32_t first = s->cfg.idle_timeout_ms;
    if (s->cfg.header_timeout_ms && s->cfg.header_timeout_ms < first)
        first = s->cfg.header_timeout_ms;
    c->header_due = uv_now(s->loop) + first;
    buf_init(&c->arena, s->cfg.header_bytes_max);
    buf_init(&c->req.body, 0);
    buf_init(&c->out, 0);
    buf_init(&c->cork, CORK_MAX + SPATE_RESPONSE_MAX + 4u * KIB);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->req.path = c->req.query = "";
    c->req.client = c->client;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ip[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(c->client, sizeof c->client, "%s:%d", ip, port);
    }
    if (s->h->connect) {
        uv_os_fd_t fd = -1;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            peer_identify(fd, &c->peer);
        else
            c->peer.local = 1; /* unknown, hence untrusted */
        if (s->h->connect(&c->peer, c->client, s->data) != 0) {
            close_conn(c);
            return;
        }
    }
    int full = !s->draining && make_room(s, c) != 0;
    if (full || s->draining) {
        c->keep_alive = 0;
        c->pending = 1;
        c->state = C_HANDLING;
        if (s->draining)
            http_respond_error(&c->req, 503, "shutting_down", "spated is shutting down");
        else if (s->nconns > s->cfg.max_connections)
            http_respond_error(&c->req, 503, "too_many_connections",
                               "server has reached its limit of %u connections, all busy",
                               s->cfg.max_connections);
        else
            http_respond_error(&c->req, 503, "too_many_connections",
                               "server has reached its limit of %u connections without a "
                               "complete request, all busy",
                               s->cfg.new_max);
        if (!c->closed) keep_reading(c);
        return;
    }
    c->state = C_IDLE;
    start_timer(c, (uint32_t)(c->header_due - uv_now(s->loop)));
    keep_reading(c);
}

/* --- Server ------------------------------------------------------------------------- */

uv_loop_t *http_request_loop(const http_request *req)
{
    return CONN(req)->srv->loop;
}

void http_server_set_config(http_server *s, const http_config *cfg)
{
    s->cfg = *cfg;
}

int http_server_start(uv_loop_t *loop, const char *host, int port, const http_config *cfg,
                      const http_handlers *handlers, void *data, http_server **out, char *err,
                      size_t errcap)
{
    if (!settings.on_message_begin) {
        http_parser_settings_init(&settings);
        settings.on_message_begin = on_message_begin;
        settings.on_url = on_url;
        settings.on_header_field = on_header_field;
        settings.on_header_value = on_header_value;
        settings.on_headers_complete = on_headers_complete;
        settings.on_body = on_body;
        settings.on_message_complete = on_message_complete;
    }
    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        snprintf(err, errcap, "invalid listen address '%s'", host);
        return ERR_INVAL;
    }
    http_server *s = calloc(1, sizeof *s);
    if (!s) return ERR_NOMEM;
    s->loop = loop;
    s->cfg = *cfg;
    s->h = handlers;
    s->data = data;
    list_init(&s->conns);
    list_init(&s->new_conns);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (rc != 0) {
        snprintf(err, errcap, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, (uv_close_cb)free);
        return ERR_IO;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    s->listening = 1;
    *out = s;
    return 0;
}

int http_server_port(const http_server *s)
{
    return s->port;
}

uint32_t http_server_connections(const http_server *s)
{
    return s->nconns;
}

static void on_listener_closed(uv_handle_t *h)
{
    http_server *s = h->data;
    s->listening = 0;
    if (s->closing && s->nalloc == 0) {
        void (*cb)(void *) = s->close_cb;
        void *data = s->close_data;
        free(s);
        if (cb) cb(data);
    }
}

void http_server_drain(http_server *s)
{
    s->draining = 1;
    for (list_node *n = list_first(&s->conns); n != &s->conns;) {
        http_conn *c = list_entry(n, http_conn, link);
        n = n->next;
        if (c->state == C_IDLE && c->in_len == c->in_off) close_conn(c);
    }
}

void http_server_close(http_server *s, void (*cb)(void *data), void *data)
{
    s->closing = 1;
    s->close_cb = cb;
    s->close_data = data;
    s->draining = 1;
    /* Answers still being written are let through; written() closes those. */
    for (list_node *n = list_first(&s->conns); n != &s->conns;) {
        http_conn *c = list_entry(n, http_conn, link);
        n = n->next;
        if (c->state != C_WRITING) close_conn(c);
    }
    /* The listener's close callback frees the server once no connection is left. */
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
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

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Decodes src[0..len) into dst (room for len + 1 bytes); the length, or -1. */
static long decode(const char *src, size_t len, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '%') {
            if (i + 2 >= len) return -1;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            dst[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dst[o++] = src[i] == '+' ? ' ' : src[i];
        }
    }
    dst[o] = '\0';
    return (long)o;
}

int http_query_parse(const char *query, http_query_cb cb, void *data)
{
    size_t qlen = strlen(query);
    char *scratch = malloc(qlen + 2);
    if (!scratch) return ERR_NOMEM;
    const char *p = query;
    int rc = 0;
    while (*p && rc == 0) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            size_t klen = eq ? (size_t)(eq - p) : len;
            char *k = scratch;
            long kd = decode(p, klen, k);
            char *v = k + (kd < 0 ? 0 : kd) + 1;
            long vd = eq ? decode(eq + 1, len - klen - 1, v) : 0;
            if (!eq) v[0] = '\0';
            if (kd < 0 || vd < 0)
                rc = ERR_INVAL;
            else
                rc = cb(k, (size_t)kd, v, (size_t)vd, data);
        }
        p += len + (amp ? 1 : 0);
    }
    free(scratch);
    return rc;
}
