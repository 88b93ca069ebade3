/*
 * server.c - the listener and the server's life: accepting a connection
 * within the budgets (closing the oldest new or idle one to make room),
 * draining and closing.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "http/server/internal.h"

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
    http__close_conn(victim);
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
    if (!c) {
        /* Refused: the connection is closed at once. Left unaccepted, it
         * would stop libuv listening (it waits for that uv_accept) and no
         * connection would be taken again. */
        log_warn("cannot take a connection: out of memory (closed)");
        if (listener->accepted_fd >= 0) {
            close(listener->accepted_fd);
            listener->accepted_fd = -1;
        }
        return;
    }
    c->srv = s;
    s->nalloc++;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    c->handles = 1;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, http__on_handle_closed);
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
    buf_init(&c->cork, SPATE_HTTP_CORK_MAX + SPATE_RESPONSE_MAX + 4u * KIB);
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
            http__close_conn(c);
            return;
        }
    }
    if (s->tls && http__tls_accept(c) != 0) return;
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
        if (!c->closed) http__keep_reading(c);
        return;
    }
    c->state = C_IDLE;
    http__start_timer(c, (uint32_t)(c->header_due - uv_now(s->loop)));
    http__keep_reading(c);
}

/* --- Server ------------------------------------------------------------------------- */

uv_loop_t *http_request_loop(const http_request *req)
{
    return CONN(req)->srv->loop;
}

int http_request_peer_closed(const http_request *req)
{
    const http_conn *c = CONN(req);
    if (c->peer_eof || c->closed) return 1;
    /* The loop may not have read the FIN yet (a client that just died):
     * the kernel knows. */
    uv_os_fd_t fd;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0) return 0;
    struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

void http_server_set_config(http_server *s, const http_config *cfg)
{
    s->cfg = *cfg;
}

int http_server_start(uv_loop_t *loop, const char *host, int port, const http_config *cfg,
                      const http_handlers *handlers, void *data, http_server **out, char *err,
                      size_t errcap)
{
    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        snprintf(err, errcap, "invalid listen address '%s'", host);
        return ERR_INVAL;
    }
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errcap, "cannot listen on %s:%d: out of memory", host, port);
        return ERR_NOMEM;
    }
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
        return rc == UV_EMFILE || rc == UV_ENFILE || rc == UV_ENOMEM ? err_from_errno(-rc, ERR_IO)
                                                                     : ERR_IO;
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
    http__maybe_free_server(s);
}

void http__maybe_free_server(http_server *s)
{
    if (!s->closing || s->nalloc > 0 || s->listening) return;
    void (*cb)(void *) = s->close_cb;
    void *data = s->close_data;
    http_tls_free(s->tls);
    free(s);
    if (cb) cb(data);
}

void http_server_drain(http_server *s)
{
    s->draining = 1;
    for (list_node *n = list_first(&s->conns); n != &s->conns;) {
        http_conn *c = list_entry(n, http_conn, link);
        n = n->next;
        if (c->state == C_IDLE && c->in_len == c->in_off) http__close_conn(c);
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
        if (c->state != C_WRITING) http__close_conn(c);
    }
    /* The listener's close callback frees the server once no connection is left. */
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}
