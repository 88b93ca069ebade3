/*
 * server.h - an HTTP/1.1 server on libuv and http_parser.
 *
 * Keep-alive and pipelining: requests on a connection are handled one at a
 * time and answered in order; bytes of the next request wait in the
 * connection's buffer (reading stops when it is full). Every limit answers
 * with its status and a JSON error body, then closes the connection:
 *   headers over the limit or too many   431
 *   body over the route's limit          413
 *   too many connections                 503 (only when none can be closed, below)
 *   bodies over the server's bodies_max  503
 *   request not complete in time         408 (headers of a new connection: header_timeout_ms)
 *   malformed request                    400
 * An idle keep-alive connection is closed quietly after the idle timeout.
 *
 * New connections (no complete request yet) have a budget of their own,
 * new_max, and a short deadline for their headers, so that idle or trickling
 * clients cannot crowd out real work: a connection over the budget closes
 * the oldest new connection (one still waiting for its headers); one over
 * max_connections closes the oldest new one, else the oldest idle keep-alive
 * one, and only when every connection is busy is it answered 503. An
 * operator's fresh connection, which sends its request at once, is thus
 * always served.
 *
 * The handler gets each complete request and must answer it exactly once with
 * http_respond, now or later. If the client goes away first, req->on_abort
 * (if set) is called; the handler must still answer (the answer is dropped).
 */
#ifndef SPATE_HTTP_SERVER_H
#define SPATE_HTTP_SERVER_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "http/peer.h"

typedef struct http_server http_server;
typedef struct http_request http_request;

struct http_request {
    /* Read-only for handlers; valid until the request is answered. */
    enum http_method method;
    const char *path;   /* request target up to '?', NUL-terminated, not decoded */
    const char *query;  /* after '?' (not decoded), "" if none */
    buf body;           /* the handler may take it (buf_move) */
    const char *client; /* peer address, for logs */
    uint64_t id;        /* per server, for logs */

    /* For the handler. */
    void *data;
    void (*on_abort)(http_request *req);
};

typedef struct http_config {
    uint32_t max_connections;
    uint32_t header_bytes_max;
    /* Stricter, for connections that have not yet made an admitted request
     * (0: the same as header_bytes_max). */
    uint32_t header_bytes_preauth;
    uint32_t idle_timeout_ms;
    uint32_t request_timeout_ms;
    /* A connection's first request (and each of a connection not trusted)
     * must have its headers in within this of accept (of its first byte);
     * 0: request_timeout_ms. */
    uint32_t header_timeout_ms;
    /* Connections that have not sent a complete request yet (0: no budget
     * but max_connections). */
    uint32_t new_max;
    /* Bytes the bodies of requests being read or not yet answered may hold,
     * all connections together (0: no bound but each route's limit); a
     * request whose body would go over it is answered 503. */
    size_t bodies_max;
} http_config;

typedef struct http_handlers {
    /* Optional, once per accepted connection, with who is at the other end
     * (peer.h; identifying it costs one kernel query, done only when this is
     * set): 0 serves the connection, anything else closes it at once. It may
     * set peer->flags; the connection's requests carry the peer
     * (http_request_peer). */
    int (*connect)(http_peer *peer, const char *client, void *data);
    /* Optional, once the headers are in, before the body is read: 0 admits
     * the request; otherwise it called http_refuse and the connection answers
     * that and closes. */
    int (*admit)(http_request *req, void *data);
    /* Once the headers are in: the largest body this request may have. */
    size_t (*body_limit)(const http_request *req, void *data);
    /* A complete request. */
    void (*handle)(http_request *req, void *data);
} http_handlers;

void http_config_defaults(http_config *c);

/* Listens on host:port (port 0 picks a free one; see http_server_port).
 * handlers and data are borrowed for the life of the server. */
int http_server_start(uv_loop_t *loop, const char *host, int port, const http_config *cfg,
                      const http_handlers *handlers, void *data, http_server **out, char *err,
                      size_t errcap);
int http_server_port(const http_server *s);
uint32_t http_server_connections(const http_server *s);
/* Stops accepting; idle connections close now, busy ones after their answer. */
void http_server_drain(http_server *s);
/* Closes every connection (pending requests are aborted) and frees the server;
 * cb runs when all is released. */
void http_server_close(http_server *s, void (*cb)(void *data), void *data);

/* For admit: refuses the request with status and a JSON error; returns -1. */
int http_refuse(http_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* For admit: the connection proved itself; it gets the full header limit. */
void http_trust(http_request *req);

/* Who sent the request, as connect saw it (all zero without connect). */
const http_peer *http_request_peer(const http_request *req);

/* Value of a request header (case-insensitive name), NUL-terminated, or NULL. */
const char *http_header(const http_request *req, const char *name);
/* The name of the request's i-th header as sent (0-based), NUL-terminated, or
 * NULL past the last: for a check that must see every header (SigV4's rule
 * that each x-amz-* header is signed). */
const char *http_header_name_at(const http_request *req, size_t i);

/* The loop the request is served on (for the handler's timers). */
uv_loop_t *http_request_loop(const http_request *req);

/* Whether the client has sent its end (FIN) while the request waits: it
 * may still read the answer, but most such clients are gone. A handler
 * that would hand it something it cannot take back (a long poll's
 * messages) answers it empty instead. */
int http_request_peer_closed(const http_request *req);

/* Replaces the limits (a reload): new connections and requests get them. */
void http_server_set_config(http_server *s, const http_config *cfg);

/* TLS on the listener (server/tls.c): OpenSSL on memory BIOs around each
 * connection's reads and writes, so that parsing and everything above are
 * the same as in clear. TLS 1.2 and later with OpenSSL's default ciphers;
 * the handshake has SPATE_TLS_HANDSHAKE_BYTES_MAX bytes and the header
 * deadline. A client that speaks plain HTTP to a TLS listener is answered
 * 400 tls_required in clear and the connection closes. */
typedef struct http_tls http_tls;
/* Reads a PEM certificate (chain) and its key, and with client_ca (NULL or
 * "": none) requires every client to present a certificate that CA signed
 * (mutual TLS). Caller owns the result; free with http_tls_free, or hand it
 * to http_server_set_tls. On error err says which file and why. */
int http_tls_load(const char *cert, const char *key, const char *client_ca, http_tls **out,
                  char *err, size_t errcap);
/* NULL is a no-op. */
void http_tls_free(http_tls *t);
/* The certificate's subject and end of validity, for the log. */
void http_tls_describe(const http_tls *t, char *out, size_t cap);
/* Takes ownership of t: connections accepted from now on use it (a reload);
 * established ones keep the one they started with. NULL: clear again. */
void http_server_set_tls(http_server *s, http_tls *t);
/* The subject of the certificate the client presented and the CA verified,
 * in RFC 2253 form ("CN=ci,O=Example"), or NULL (no TLS, or no certificate).
 * Valid while the request is. */
const char *http_request_tls_subject(const http_request *req);

/* Answers req. body is borrowed for the call. extra_headers is either NULL or
 * complete "Name: value\r\n" lines. */
void http_respond(http_request *req, int status, const char *content_type,
                  const char *extra_headers, const void *body, size_t len);
/* Answers with {"error": message, "code": code}. */
void http_respond_error(http_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same, with extra_headers ("Name: value\r\n"..., or NULL). */
void http_respond_error_with(http_request *req, int status, const char *extra_headers,
                             const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Walks a query string, calling cb with each decoded key and value (%XX and
 * '+' decoded; values may hold NUL bytes, so lengths are given). Stops and
 * returns cb's value if non-zero; ERR_INVAL on a bad escape. */
typedef int (*http_query_cb)(const char *key, size_t klen, const char *val, size_t vlen,
                             void *data);
int http_query_parse(const char *query, http_query_cb cb, void *data);

const char *http_status_text(int status);

#endif
