/*
 * internal.h - what the files of the HTTP server share; nothing outside
 * src/http/server/ includes it (the public face is http/server.h).
 *
 * The server owns its connections: each http_conn is allocated on accept and
 * freed (http__maybe_free) once both its libuv handles have closed and no
 * handler holds its request. The request is the connection's first member, so
 * a handler's http_request * is its connection (CONN).
 *
 *   server.c   the listener, accepting within the budgets, drain and close
 *   conn.c     a connection's life: reading, the parse loop, its timer,
 *              linger, close and free; the bodies budget
 *   parse.c    http_parser's callbacks, the header arena, http_header
 *   respond.c  answers: status line and headers, writes, the cork, errors
 *   query.c    query strings (http_query_parse)
 *   tls.c      TLS around a connection's bytes: OpenSSL on memory BIOs, the
 *              handshake and its limits, plain HTTP on a TLS port refused
 *
 * Names: http_* is the public API, http__* is shared between these files
 * only, plain static names stay in their file. All runs on the loop thread.
 */
#ifndef SPATE_HTTP_SERVER_INTERNAL_H
#define SPATE_HTTP_SERVER_INTERNAL_H

#include <time.h>

#include "common/list.h"
#include "http/server.h"

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

typedef struct http_tls_conn http_tls_conn;

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
    buf out;            /* answer bytes the socket did not take at once */
    buf cork;           /* answers to pipelined requests, sent together when parsing stops */
    size_t charged;     /* bytes of its body counted in srv->bodies */
    http_tls_conn *tls; /* NULL: in clear */
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
    http_tls *tls;                  /* NULL: in clear; else what new connections get */
    uint64_t tls_plain, tls_failed; /* connections refused, for the log */
    uint64_t tls_log_at;
};

#define CONN(r) ((http_conn *)(r))

/* --- conn.c ------------------------------------------------------------------- */

/* Counts c's body, total bytes of it, against the server's bodies_max. 0,
 * or -1 when that does not fit. */
int http__charge_body(http_conn *c, size_t total);
/* c's body is gone (answered, or the connection is): it counts no more. */
void http__release_body(http_conn *c);
/* Frees c once its handles have closed and no handler holds its request. */
void http__maybe_free(http_conn *c);
void http__on_handle_closed(uv_handle_t *h);
/* The connection completed a request (or closes): it leaves the new ones. */
void http__leave_new(http_conn *c);
/* Closes c's handles; a handler holding its request gets on_abort. */
void http__close_conn(http_conn *c);
void http__start_timer(http_conn *c, uint32_t ms);
/* After a final answer: FIN, then input drained for SPATE_HTTP_LINGER_MS. */
void http__linger(http_conn *c);
/* Parses and dispatches what the buffer holds, one request at a time. */
void http__process(http_conn *c);
void http__keep_reading(http_conn *c);

/* --- server.c ----------------------------------------------------------------- */

/* Frees a closing server (and calls its close callback) once its listener
 * and every connection are gone. */
void http__maybe_free_server(http_server *s);

/* --- respond.c ---------------------------------------------------------------- */

/* Sends the answers held for pipelined requests; 0, 1 while a write is under
 * way, or -1 if the connection closed. */
int http__flush_cork(http_conn *c);

/* After an answer is out: the next request, the linger, or close. */
void http__written(http_conn *c);

/* --- tls.c ------------------------------------------------------------------- */

/* A new connection on a TLS listener gets its session; 0, or -1 (closed). */
int http__tls_accept(http_conn *c);
void http__tls_free(http_conn *c);
/* Where the socket's bytes go on a TLS connection (a buffer of the loop's,
 * consumed by http__tls_input before the next read). */
void http__tls_alloc(uv_buf_t *out);
/* Bytes from the socket: the handshake, or records decrypted into c->in.
 * 0: parse what came, or -1: the connection is closed or refused. */
int http__tls_input(http_conn *c, const char *data, size_t n);
/* Decrypts what is already buffered into c->in while it has room; the
 * bytes added. */
size_t http__tls_fill(http_conn *c);
/* Whether reading the socket may go on: the encrypted backlog is small. */
int http__tls_may_read(const http_conn *c);
/* Encrypts an answer and sends it: 0 sent, 1 under way (http__written
 * follows), -1 the connection closed. */
int http__tls_write(http_conn *c, const char *head, size_t hlen, const void *body, size_t blen);
/* Before FIN: close_notify. */
void http__tls_shutdown(http_conn *c);

/* --- parse.c ------------------------------------------------------------------ */

extern const http_parser_settings http__settings;
/* Records an error answer for c (status, code, message); returns -1. */
int http__fail(http_conn *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
