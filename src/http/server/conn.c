/*
 * conn.c - a connection's life: reading into its buffer, running the parser
 * over what came (one request at a time), its timer, the linger after a
 * final answer, closing and freeing it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/limits.h"
#include "http/server/internal.h"

/* Where input goes while a connection lingers: read and dropped. */
static char discard[16 * KIB];

/* --- Connection lifetime ------------------------------------------------------ */

/* Counts c's body, total bytes of it, against the server's bodies_max. 0,
 * or -1 when that does not fit. */
int http__charge_body(http_conn *c, size_t total)
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
void http__release_body(http_conn *c)
{
    c->srv->bodies -= c->charged;
    c->charged = 0;
}

void http__maybe_free(http_conn *c)
{
    if (c->handles > 0 || c->pending) return;
    http_server *s = c->srv;
    http__release_body(c);
    buf_free(&c->arena);
    buf_free(&c->req.body);
    buf_free(&c->out);
    buf_free(&c->cork);
    http__tls_free(c);
    free(c->in);
    free(c);
    s->nalloc--;
    http__maybe_free_server(s);
}

void http__on_handle_closed(uv_handle_t *h)
{
    http_conn *c = h->data;
    c->handles--;
    http__maybe_free(c);
}

/* The connection completed a request (or closes): it leaves the new ones. */
void http__leave_new(http_conn *c)
{
    if (!c->is_new) return;
    c->is_new = 0;
    list_remove(&c->new_link);
    c->srv->nnew--;
}

void http__close_conn(http_conn *c)
{
    if (c->closed) return;
    c->closed = 1;
    http__leave_new(c);
    list_remove(&c->link);
    c->srv->nconns--;
    uv_close((uv_handle_t *)&c->tcp, http__on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, http__on_handle_closed);
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
    http__close_conn(c);
}

void http__start_timer(http_conn *c, uint32_t ms)
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
void http__linger(http_conn *c)
{
    c->state = C_LINGER;
    if (c->peer_eof) {
        http__close_conn(c);
        return;
    }
    http__tls_shutdown(c);
    if (c->closed) return;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        http__close_conn(c);
        return;
    }
    http__start_timer(c, SPATE_HTTP_LINGER_MS);
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

void http__process(http_conn *c)
{
    c->in_process = 1;
    while (!c->closed && c->state != C_LINGER && !c->pending && c->state != C_WRITING) {
        if (c->ready) {
            c->ready = 0;
            dispatch(c);
            continue;
        }
        /* A TLS connection may hold decrypted bytes still to come. */
        if (c->in_off == c->in_len && c->tls && http__tls_fill(c) > 0) continue;
        if (c->closed) break;
        if (c->in_off == c->in_len) {
            /* The client stopped sending in the middle of a request: it
             * will never be whole; say so instead of waiting for the
             * request timeout. */
            if (c->peer_eof && c->state == C_READING && !c->error_status) {
                http__fail(c, 400, "bad_request", "the request ended before it was complete");
                c->pending = 1;
                c->state = C_HANDLING;
                http_respond_error(&c->req, c->error_status, c->error_code, "%s", c->error_msg);
            }
            break;
        }
        if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) http_parser_pause(&c->parser, 0);
        size_t n = http_parser_execute(&c->parser, &http__settings, c->in + c->in_off,
                                       c->in_len - c->in_off);
        c->in_off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_OK || e == HPE_PAUSED) continue;
        if (!c->error_status)
            http__fail(c, 400, "bad_request", "malformed request: %s", http_errno_description(e));
        c->pending = 1; /* answered below, through the same path as a handler */
        c->state = C_HANDLING;
        http_respond_error(&c->req, c->error_status, c->error_code, "%s", c->error_msg);
    }
    c->in_process = 0;
    /* Parsing stopped: what was held goes now, ahead of later answers. */
    if (http__flush_cork(c) != 0) return;
    if (c->closed || c->state == C_LINGER) return;
    if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
    if (c->peer_eof && !c->pending && c->state == C_IDLE && c->in_len == 0) {
        http__close_conn(c);
        return;
    }
    http__keep_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    http_conn *c = h->data;
    if (c->state == C_LINGER) {
        *out = uv_buf_init(discard, sizeof discard);
        return;
    }
    if (c->tls) {
        http__tls_alloc(out);
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
        if (nread < 0) http__close_conn(c);
        return;
    }
    if (nread == UV_EOF) {
        /* The client will send no more; what it sent is still answered. */
        c->peer_eof = 1;
        uv_read_stop(s);
        c->reading = 0;
        if (!c->in_process) http__process(c);
        return;
    }
    if (nread < 0) {
        http__close_conn(c);
        return;
    }
    if (c->tls) {
        if (http__tls_input(c, b->base, (size_t)nread) != 0) return;
        http__tls_fill(c);
        if (c->closed) return;
    } else {
        c->in_len += (size_t)nread;
    }
    if (!c->in_process) http__process(c);
}

/* Reads while there is room; a full buffer (pipelined requests waiting
 * behind a slow one) stops reading until the parser catches up. */
void http__keep_reading(http_conn *c)
{
    int room = c->in_len - c->in_off < SPATE_HTTP_READ_BUFFER;
    if (c->tls) room = http__tls_may_read(c);
    if (room && !c->reading && !c->peer_eof) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    } else if (!room && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}
