/*
 * amqp.c - the RabbitMQ / AMQP 0-9-1 connector (librabbitmq): one queue
 * consumed with a prefetch and manual acknowledgements, acked once spate
 * committed the batch.
 *
 *   amqp://[USER:PASS@]HOST[:PORT]/[VHOST]?queue=Q[&prefetch=N]
 *   amqps://... [&ca=FILE][&cert=FILE&key=FILE]   (TLS, port 5671 by default)
 *
 * The vhost is the path, percent-decoded (%2F or no path: the default "/").
 * The queue must exist: it is declared passively, never created, so a
 * mistyped name is an error in the source's status (retried with back-off)
 * rather than a new empty queue nobody publishes to.
 *
 * Deliveries are read frame by frame (method, header, body frames) rather
 * than with amqp_consume_message, which allocates a whole body at once:
 * here a body over the topic's maximum is counted and dropped frame by frame
 * (the entry is refused), so one huge message never sits in memory. Every
 * entry of a batch (refused ones too) is acked with one basic.ack
 * multiple=true on the batch's highest delivery tag: tags are per channel
 * and in order, so it names exactly this batch and those before it. What
 * was delivered and not acked when the connection ends (spated killed, the
 * broker restarted, an error) the broker requeues and delivers again,
 * flagged redelivered: that is the "give again after a reconnect" of
 * connector.h.
 */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "sources/connector.h"
#include "sources/tls.h"

/* The consuming channel, and one for the queue's depth (lag): a failed
 * passive declare closes its channel, not the one that consumes. */
#define CH_CONSUME 1
#define CH_LAG 2
/* Names in AMQP are short strings. */
#define SHORTSTR_MAX 255

typedef struct amqp_cfg {
    char host[256];
    int port;
    char user[256];
    char pass[256];
    char vhost[SHORTSTR_MAX + 1];
    char queue[SHORTSTR_MAX + 1];
    uint16_t prefetch;
    src_tls tls;
} amqp_cfg;

struct src_conn {
    amqp_connection_state_t conn;
    const amqp_cfg *cfg;
    /* The connection cannot be used any more (it failed, or the broker
     * closed a channel): fetch reports why, disconnect skips the polite
     * close that would only time out. */
    int broken;
    char why[256];
};

/* --- The URL ------------------------------------------------------------------------------ */

/* Whether the URL has a user part (USER[:PASS]@) before its host. */
static int has_userinfo(const char *url)
{
    const char *auth = strstr(url, "://");
    if (!auth) return 0;
    auth += 3;
    const char *at = memchr(auth, '@', strcspn(auth, "/?#"));
    return at != NULL;
}

static int parse(const char *url, void **out, char *err, size_t errcap)
{
    src_url u;
    int rc = src_url_parse(url, &u, err, errcap);
    if (rc) return rc;
    static const char *const known[] = {"queue", "prefetch", SRC_TLS_KEYS, NULL};
    amqp_cfg *c = calloc(1, sizeof *c);
    if (!c) {
        src_url_free(&u);
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    snprintf(c->host, sizeof c->host, "%s", u.host);
    int tls = strcmp(u.scheme, "amqps") == 0;
    c->port = u.port ? u.port : tls ? 5671 : 5672;
    /* The AMQP URI's defaults: no credentials are guest's. */
    int has_user = has_userinfo(url);
    snprintf(c->user, sizeof c->user, "%s", has_user ? u.user : "guest");
    snprintf(c->pass, sizeof c->pass, "%s", has_user ? u.pass : "guest");
    c->prefetch = SPATE_SOURCE_AMQP_PREFETCH_DEFAULT;
    rc = src_url_check_keys(&u, known, err, errcap);
    if (!rc) rc = src_tls_parse(&u, tls, &c->tls, err, errcap);
    /* The vhost is the path, one segment: its '/' (as in the default vhost
     * "/") is percent-encoded, so a raw one is a mistake. */
    const char *auth = strstr(url, "://") + 3;
    const char *raw = auth + strcspn(auth, "/?");
    size_t raw_len = *raw == '/' ? strcspn(raw + 1, "?") : 0;
    if (!rc && raw_len && memchr(raw + 1, '/', raw_len)) {
        snprintf(err, errcap,
                 "malformed URL: the path is the vhost, one segment (percent-encode a '/' in "
                 "it: %%2F for the default vhost)");
        rc = ERR_INVAL;
    }
    if (!rc && strlen(u.path) > SHORTSTR_MAX) {
        snprintf(err, errcap, "malformed URL: the vhost is over %d bytes", SHORTSTR_MAX);
        rc = ERR_INVAL;
    }
    if (!rc) snprintf(c->vhost, sizeof c->vhost, "%.*s", SHORTSTR_MAX, raw_len ? u.path : "/");
    if (!rc) {
        char q[512];
        int g = src_url_param(&u, "queue", q, sizeof q);
        if (g != 0 || !q[0]) {
            snprintf(err, errcap,
                     g < 0 ? "malformed URL: bad value of 'queue' (percent-encode it, at most "
                             "255 bytes)"
                           : "missing queue: give the queue to consume "
                             "(amqp://USER:PASS@HOST:PORT/VHOST?queue=Q)");
            rc = ERR_INVAL;
        } else if (strlen(q) > SHORTSTR_MAX) {
            snprintf(err, errcap, "malformed URL: the queue's name is over %d bytes", SHORTSTR_MAX);
            rc = ERR_INVAL;
        } else {
            snprintf(c->queue, sizeof c->queue, "%.*s", SHORTSTR_MAX, q);
        }
    }
    if (!rc) {
        char v[32];
        int g = src_url_param(&u, "prefetch", v, sizeof v);
        if (g == 0) {
            char *end = NULL;
            long n = strtol(v, &end, 10);
            if (!v[0] || *end || n < 1 || n > SPATE_SOURCE_AMQP_PREFETCH_MAX) {
                snprintf(err, errcap,
                         "malformed URL: 'prefetch' must be a number from 1 to %d (default %d)",
                         SPATE_SOURCE_AMQP_PREFETCH_MAX, SPATE_SOURCE_AMQP_PREFETCH_DEFAULT);
                rc = ERR_INVAL;
            } else {
                c->prefetch = (uint16_t)n;
            }
        } else if (g < 0) {
            snprintf(err, errcap, "malformed URL: bad value of 'prefetch'");
            rc = ERR_INVAL;
        }
    }
    src_url_free(&u);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void free_cfg(void *cfg)
{
    free(cfg);
}

/* --- Errors ------------------------------------------------------------------------------- */

/* Why an RPC failed, in words: the library's error, or the broker's reply
 * code and text (which name the queue or vhost, never a credential). */
static void reply_error(amqp_rpc_reply_t r, const char *what, char *err, size_t errcap)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        snprintf(err, errcap, "%s: no error", what);
        break;
    case AMQP_RESPONSE_NONE:
        snprintf(err, errcap, "%s: no answer from the broker", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(err, errcap, "%s: %s", what, amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            const amqp_connection_close_t *m = r.reply.decoded;
            snprintf(err, errcap, "%s: the broker closed the connection: %u %.*s", what,
                     m->reply_code, (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            const amqp_channel_close_t *m = r.reply.decoded;
            snprintf(err, errcap, "%s: %u %.*s", what, m->reply_code, (int)m->reply_text.len,
                     (const char *)m->reply_text.bytes);
        } else {
            snprintf(err, errcap, "%s: unexpected method 0x%08x from the broker", what, r.reply.id);
        }
        break;
    }
}

/* Marks the connection broken with why, answering a close from the broker
 * (of the connection, or of channel) as the protocol asks: close-ok. Returns
 * ERR_IO for the caller. */
static int broken(src_conn *c, amqp_rpc_reply_t r, amqp_channel_t channel, const char *what)
{
    reply_error(r, what, c->why, sizeof c->why);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_ok_t ok = {0};
            amqp_send_method(c->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_ok_t ok = {0};
            amqp_send_method(c->conn, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        }
    }
    c->broken = 1;
    return ERR_IO;
}

static int failed(src_conn *c, char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int failed(src_conn *c, char *err, size_t errcap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    c->broken = 1;
    snprintf(err, errcap, "%s", c->why);
    return ERR_IO;
}

/* --- Connecting --------------------------------------------------------------------------- */

static void disconnect(src_conn *c)
{
    if (!c) return;
    if (c->conn) {
        /* A polite close lets the broker requeue at once what was not acked
         * (it would anyway when the socket goes). */
        if (!c->broken) amqp_connection_close(c->conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(c->conn);
    }
    free(c);
}

static struct timeval tv_ms(uint32_t ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

/* An SSL socket that verifies the broker's certificate chain and host name
 * (librabbitmq's defaults, set again here so that they cannot drift),
 * against cfg's CA file or else the system's trust store. */
static int tls_socket(amqp_connection_state_t conn, const src_tls *t, amqp_socket_t **out,
                      char *err, size_t errcap)
{
    int rc = src_tls_check_files(t, err, errcap);
    if (rc) return rc;
    amqp_socket_t *sock = amqp_ssl_socket_new(conn);
    if (!sock) return ERR_NOMEM;
    amqp_ssl_socket_set_verify_peer(sock, 1);
    amqp_ssl_socket_set_verify_hostname(sock, 1);
    if (t->ca[0]) {
        rc = amqp_ssl_socket_set_cacert(sock, t->ca);
        if (rc != AMQP_STATUS_OK) {
            snprintf(err, errcap, "cannot use the CA file '%.300s': %s (PEM certificates?)", t->ca,
                     amqp_error_string2(rc));
            return ERR_INVAL;
        }
    } else {
        SSL_CTX_set_default_verify_paths(amqp_ssl_socket_get_context(sock));
    }
    if (t->cert[0]) {
        rc = amqp_ssl_socket_set_key(sock, t->cert, t->key);
        if (rc != AMQP_STATUS_OK) {
            snprintf(err, errcap,
                     "cannot use the client certificate '%.200s' with the key '%.200s': %s",
                     t->cert, t->key, amqp_error_string2(rc));
            return ERR_INVAL;
        }
    }
    *out = sock;
    return 0;
}

static int connect_(const void *cfgp, const char *consumer, src_conn **out, char *err,
                    size_t errcap)
{
    const amqp_cfg *cfg = cfgp;
    src_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->conn = amqp_new_connection())) {
        free(c);
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    c->cfg = cfg;
    c->broken = 1; /* until logged in: nothing to close politely */
    struct timeval io = tv_ms(SPATE_SOURCE_IO_TIMEOUT_MS);
    amqp_set_handshake_timeout(c->conn, &io);
    amqp_set_rpc_timeout(c->conn, &io);
    amqp_socket_t *sock = NULL;
    int rc = cfg->tls.on ? tls_socket(c->conn, &cfg->tls, &sock, err, errcap)
             : (sock = amqp_tcp_socket_new(c->conn)) ? 0
                                                     : ERR_NOMEM;
    if (rc) {
        disconnect(c);
        if (rc == ERR_NOMEM) snprintf(err, errcap, "out of memory");
        return rc;
    }
    errno = 0;
    src_tls_clear_error();
    rc = amqp_socket_open_noblock(sock, cfg->host, cfg->port, &io);
    if (rc != AMQP_STATUS_OK) {
        /* The library says "a socket error occurred"; errno says which, or
         * for TLS OpenSSL's queue (this thread's): "certificate verify
         * failed" rather than librabbitmq's "a SSL error occurred". */
        int e = errno;
        char why[300] = "", tls_why[256];
        if (cfg->tls.on && src_tls_last_error(tls_why, sizeof tls_why)) {
            snprintf(why, sizeof why, " (TLS: %s)", tls_why);
        } else if (e) {
            snprintf(why, sizeof why, " (%s)", strerror(e));
        }
        snprintf(err, errcap, "cannot connect to %s:%d: %s%s", cfg->host, cfg->port,
                 amqp_error_string2(rc), why);
        disconnect(c);
        return ERR_IO;
    }
    /* consumer_cancel_notify: a deleted queue cancels the consumer with a
     * basic.cancel this connector sees, rather than leaving it idle. */
    amqp_table_entry_t caps[] = {
        {.key = amqp_cstring_bytes("consumer_cancel_notify"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value = {.boolean = 1}}}};
    char name[300];
    snprintf(name, sizeof name, "spate source (%s)", consumer);
    amqp_table_entry_t props[] = {
        {.key = amqp_cstring_bytes("capabilities"),
         .value = {.kind = AMQP_FIELD_KIND_TABLE, .value = {.table = {1, caps}}}},
        {.key = amqp_cstring_bytes("connection_name"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value = {.bytes = amqp_cstring_bytes(name)}}}};
    amqp_table_t table = {2, props};
    amqp_rpc_reply_t r = amqp_login_with_properties(
        c->conn, cfg->vhost, 0, (int)SPATE_SOURCE_AMQP_FRAME_MAX, SPATE_SOURCE_AMQP_HEARTBEAT_S,
        &table, AMQP_SASL_METHOD_PLAIN, cfg->user, cfg->pass);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        char what[1024];
        snprintf(what, sizeof what, "cannot log in to %s:%d (vhost '%s') as '%s'", cfg->host,
                 cfg->port, cfg->vhost, cfg->user);
        reply_error(r, what, err, errcap);
        /* A TLS 1.3 broker refuses a missing client certificate after the
         * handshake: librabbitmq says only "a SSL error occurred". */
        char tls_why[256];
        size_t len = strlen(err);
        if (cfg->tls.on && r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            src_tls_last_error(tls_why, sizeof tls_why) && len < errcap)
            snprintf(err + len, errcap - len, " (TLS: %s)", tls_why);
        disconnect(c);
        return ERR_IO;
    }
    c->broken = 0;
    amqp_bytes_t queue = amqp_cstring_bytes(cfg->queue);
    char tag[300];
    snprintf(tag, sizeof tag, "spate:%s", consumer);
    /* Each step an RPC; the first that fails says what failed. */
    const char *step = "cannot open a channel";
    amqp_channel_t ch = CH_CONSUME;
    int ok = amqp_channel_open(c->conn, CH_CONSUME) != NULL;
    if (ok) {
        step = "cannot find the queue";
        ok = amqp_queue_declare(c->conn, CH_CONSUME, queue, 1, 0, 0, 0, amqp_empty_table) != NULL;
    }
    if (ok) {
        step = "cannot set the prefetch (basic.qos)";
        ok = amqp_basic_qos(c->conn, CH_CONSUME, 0, cfg->prefetch, 0) != NULL;
    }
    if (ok) {
        step = "cannot consume the queue";
        ok = amqp_basic_consume(c->conn, CH_CONSUME, queue, amqp_cstring_bytes(tag), 0, 0, 0,
                                amqp_empty_table) != NULL;
    }
    if (ok) {
        step = "cannot open a channel";
        ch = CH_LAG;
        ok = amqp_channel_open(c->conn, CH_LAG) != NULL;
    }
    if (ok) {
        *out = c;
        err[0] = '\0';
        return 0;
    }
    r = amqp_get_rpc_reply(c->conn);
    broken(c, r, ch, step); /* answers the broker's close */
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
        ((amqp_channel_close_t *)r.reply.decoded)->reply_code == AMQP_NOT_FOUND)
        snprintf(err, errcap,
                 "queue '%s' not found in vhost '%s' (spate does not create queues: declare it "
                 "upstream)",
                 cfg->queue, cfg->vhost);
    else
        snprintf(err, errcap, "%s", c->why);
    /* A channel error leaves the connection usable: close it politely. */
    c->broken =
        r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD;
    disconnect(c);
    return ERR_IO;
}

/* --- Reading deliveries ------------------------------------------------------------------- */

/* A header's value being written as text: the first error (ERR_TOOBIG
 * past the headers' limit, ERR_NOMEM) sticks, later writes do nothing. */
typedef struct text {
    buf *b;
    int err;
} text;

static void put(text *t, const void *d, size_t n)
{
    if (!t->err) t->err = buf_append(t->b, d, n);
}

static void puts_(text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void putf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (!t->err) t->err = buf_vprintf(t->b, fmt, ap);
    va_end(ap);
}

/* Writes s as a JSON string: quotes, backslashes and control characters
 * escaped; other bytes as they are (the whole header value is escaped once
 * more as a string by src_entry_header, which also takes care of bytes that
 * are not UTF-8). */
static void json_string(text *t, const void *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = s;
    put(t, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned ch = p[i];
        char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
        if (ch == '"' || ch == '\\') put(t, "\\", 1);
        if (ch < 0x20)
            put(t, esc, 6);
        else
            put(t, p + i, 1);
    }
    put(t, "\"", 1);
}

static void json_value(text *t, const amqp_field_value_t *v, int depth);

/* Writes v as text: strings as they are, numbers and booleans as their JSON
 * text, tables and arrays as JSON (quoted: a string is written in quotes,
 * as inside those). */
static void text_value(text *t, const amqp_field_value_t *v, int quoted, int depth)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        if (quoted)
            json_string(t, v->value.bytes.bytes, v->value.bytes.len);
        else
            put(t, v->value.bytes.bytes, v->value.bytes.len);
        break;
    case AMQP_FIELD_KIND_BOOLEAN:
        puts_(t, v->value.boolean ? "true" : "false");
        break;
    case AMQP_FIELD_KIND_I8:
        putf(t, "%d", v->value.i8);
        break;
    case AMQP_FIELD_KIND_U8:
        putf(t, "%u", v->value.u8);
        break;
    case AMQP_FIELD_KIND_I16:
        putf(t, "%d", v->value.i16);
        break;
    case AMQP_FIELD_KIND_U16:
        putf(t, "%u", v->value.u16);
        break;
    case AMQP_FIELD_KIND_I32:
        putf(t, "%" PRId32, v->value.i32);
        break;
    case AMQP_FIELD_KIND_U32:
        putf(t, "%" PRIu32, v->value.u32);
        break;
    case AMQP_FIELD_KIND_I64:
        putf(t, "%" PRId64, v->value.i64);
        break;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        putf(t, "%" PRIu64, v->value.u64);
        break;
    case AMQP_FIELD_KIND_F32:
        putf(t, "%.9g", (double)v->value.f32);
        break;
    case AMQP_FIELD_KIND_F64:
        putf(t, "%.17g", v->value.f64);
        break;
    case AMQP_FIELD_KIND_DECIMAL: {
        /* value * 10^-decimals, written exactly. */
        char digits[24];
        int n = snprintf(digits, sizeof digits, "%" PRIu32, v->value.decimal.value);
        int d = v->value.decimal.decimals > 20 ? 20 : v->value.decimal.decimals;
        if (d == 0) {
            put(t, digits, (size_t)n);
        } else if (n > d) {
            putf(t, "%.*s.%s", n - d, digits, digits + n - d);
        } else {
            put(t, "0.", 2);
            for (int i = n; i < d; i++) put(t, "0", 1);
            put(t, digits, (size_t)n);
        }
        break;
    }
    case AMQP_FIELD_KIND_VOID:
        if (quoted) puts_(t, "null");
        break;
    case AMQP_FIELD_KIND_ARRAY:
    case AMQP_FIELD_KIND_TABLE:
        json_value(t, v, depth);
        break;
    default:
        putf(t, quoted ? "\"(field of kind '%c')\"" : "(field of kind '%c')", v->kind);
        break;
    }
}

/* Writes v as JSON (a nested table or array in a header's value). */
static void json_value(text *t, const amqp_field_value_t *v, int depth)
{
    if (depth > 8) {
        puts_(t, "\"(nested too deep)\"");
    } else if (v->kind == AMQP_FIELD_KIND_ARRAY) {
        put(t, "[", 1);
        for (int i = 0; i < v->value.array.num_entries && !t->err; i++) {
            if (i) put(t, ",", 1);
            text_value(t, &v->value.array.entries[i], 1, depth + 1);
        }
        put(t, "]", 1);
    } else if (v->kind == AMQP_FIELD_KIND_TABLE) {
        put(t, "{", 1);
        for (int i = 0; i < v->value.table.num_entries && !t->err; i++) {
            const amqp_table_entry_t *e = &v->value.table.entries[i];
            if (i) put(t, ",", 1);
            json_string(t, e->key.bytes, e->key.len);
            put(t, ":", 1);
            text_value(t, &e->value, 1, depth + 1);
        }
        put(t, "}", 1);
    } else {
        text_value(t, v, 1, depth);
    }
}

/* Adds one header to e; ERR_NOMEM only. */
static int header(src_batch *b, src_entry *e, const char *name, size_t nlen, const void *val,
                  size_t vlen)
{
    return src_entry_header(b, e, name, nlen, val, vlen) ? ERR_NOMEM : 0;
}

static int header_bytes(src_batch *b, src_entry *e, const char *name, amqp_bytes_t v)
{
    return v.len ? header(b, e, name, strlen(name), v.bytes, v.len) : 0;
}

/* The entry's attributes from the delivery and its properties: the
 * timestamp, the message's own ids and type as amqp-* headers, then its
 * headers table (values that are not strings as text; a user header named
 * like one of the amqp-* ones is left out: the property is the truth). */
static int attributes(src_batch *b, src_entry *e, const amqp_basic_deliver_t *d,
                      const amqp_basic_properties_t *p, buf *tmp)
{
    amqp_flags_t f = p->_flags;
    if ((f & AMQP_BASIC_TIMESTAMP_FLAG) && p->timestamp <= (uint64_t)INT64_MAX / 1000)
        e->ts_ms = (int64_t)p->timestamp * 1000;
    static const char *const mine[] = {
        "amqp-message-id", "amqp-correlation-id", "amqp-content-type", "amqp-type",
        "amqp-app-id",     "amqp-exchange",       "amqp-routing-key"};
    int rc = 0;
    if (f & AMQP_BASIC_MESSAGE_ID_FLAG) rc = rc ?: header_bytes(b, e, mine[0], p->message_id);
    if (f & AMQP_BASIC_CORRELATION_ID_FLAG)
        rc = rc ?: header_bytes(b, e, mine[1], p->correlation_id);
    if (f & AMQP_BASIC_CONTENT_TYPE_FLAG) rc = rc ?: header_bytes(b, e, mine[2], p->content_type);
    if (f & AMQP_BASIC_TYPE_FLAG) rc = rc ?: header_bytes(b, e, mine[3], p->type);
    if (f & AMQP_BASIC_APP_ID_FLAG) rc = rc ?: header_bytes(b, e, mine[4], p->app_id);
    /* The routing key says which binding brought it, when an exchange did
     * (the default exchange's key is the queue's own name). */
    if (d->exchange.len) {
        rc = rc ?: header_bytes(b, e, mine[5], d->exchange);
        rc = rc ?: header_bytes(b, e, mine[6], d->routing_key);
    }
    for (int i = 0; !rc && (f & AMQP_BASIC_HEADERS_FLAG) && i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *t = &p->headers.entries[i];
        int dup = 0;
        for (size_t k = 0; k < sizeof mine / sizeof mine[0]; k++)
            dup |= t->key.len == strlen(mine[k]) && memcmp(t->key.bytes, mine[k], t->key.len) == 0;
        if (dup) continue;
        buf_reset(tmp);
        text txt = {tmp, 0};
        text_value(&txt, &t->value, 0, 0);
        if (txt.err == ERR_TOOBIG) {
            src_entry_refuse(e, "its upstream headers are over %u bytes as JSON",
                             (unsigned)SPATE_SOURCE_HEADERS_MAX);
            break;
        }
        if (txt.err) return ERR_NOMEM;
        rc = header(b, e, t->key.bytes, t->key.len, tmp->data ? tmp->data : "", tmp->len);
    }
    if (!rc && src_entry_headers_end(b, e)) rc = ERR_NOMEM;
    return rc;
}

/* Waits up to ms for the next frame; not OK: the connection is broken. */
static int next_frame(src_conn *c, amqp_frame_t *f, uint32_t ms, char *err, size_t errcap)
{
    struct timeval tv = tv_ms(ms);
    int rc = amqp_simple_wait_frame_noblock(c->conn, f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) return rc;
    if (rc != AMQP_STATUS_OK)
        return failed(c, err, errcap, "connection lost: %s", amqp_error_string2(rc));
    return 0;
}

/* Reads the rest of a delivery (its header and body frames) into an entry.
 * The frames of a message follow each other on its channel; a broker that
 * sends anything else breaks the protocol. */
static int read_delivery(src_conn *c, const amqp_frame_t *method, const src_limits *lim,
                         src_batch *b, buf *tmp, char *err, size_t errcap)
{
    const amqp_basic_deliver_t *d = method->payload.method.decoded;
    char id[24];
    int idlen = snprintf(id, sizeof id, "%" PRIu64, d->delivery_tag);
    src_entry *e = src_batch_add(b, id, (size_t)idlen);
    if (!e) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    e->redelivered = d->redelivered ? 1 : 0;
    amqp_frame_t f;
    int rc = next_frame(c, &f, SPATE_SOURCE_IO_TIMEOUT_MS, err, errcap);
    if (rc == AMQP_STATUS_TIMEOUT)
        return failed(c, err, errcap, "connection lost: no header after a delivery");
    if (rc) return rc;
    if (f.frame_type != AMQP_FRAME_HEADER || f.channel != CH_CONSUME)
        return failed(c, err, errcap, "protocol error: a delivery without its header");
    uint64_t size = f.payload.properties.body_size;
    int too_big = size > lim->message_max;
    /* Headers first, while the properties are in the library's pool: the
     * pool is recycled after each body frame. */
    if (attributes(b, e, d, f.payload.properties.decoded, tmp) != 0) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    size_t start = b->bytes.len;
    if (!too_big && !e->refused[0] && size && buf_reserve(&b->bytes, (size_t)size)) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    uint64_t got = 0;
    while (got < size) {
        amqp_maybe_release_buffers_on_channel(c->conn, CH_CONSUME);
        rc = next_frame(c, &f, SPATE_SOURCE_IO_TIMEOUT_MS, err, errcap);
        if (rc == AMQP_STATUS_TIMEOUT)
            return failed(c, err, errcap, "connection lost in the middle of a message");
        if (rc) return rc;
        if (f.frame_type != AMQP_FRAME_BODY || f.channel != CH_CONSUME ||
            f.payload.body_fragment.len > size - got)
            return failed(c, err, errcap, "protocol error: a message's body frames are wrong");
        /* Over the maximum, the frames are counted, not kept. */
        if (!too_big && !e->refused[0])
            buf_append(&b->bytes, f.payload.body_fragment.bytes, f.payload.body_fragment.len);
        got += f.payload.body_fragment.len;
    }
    amqp_maybe_release_buffers_on_channel(c->conn, CH_CONSUME);
    if (too_big) {
        src_entry_refuse(e, "the message is %" PRIu64 " bytes, over the topic's maximum of %zu",
                         size, lim->message_max);
    }
    if (e->refused[0]) {
        /* Nothing of it is published: give the bytes back. */
        b->bytes.len = e->hdr_len ? e->hdr_at : start;
        e->hdr_len = 0;
        return 0;
    }
    e->data_at = start;
    e->len = (size_t)size;
    if (src_entry_json_key(b, e, lim->key_field) != 0) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    return 0;
}

static int fetch(src_conn *c, const src_limits *lim, size_t max, uint32_t wait_ms, src_batch *out,
                 char *err, size_t errcap)
{
    if (c->broken) {
        snprintf(err, errcap, "%s", c->why);
        return ERR_IO;
    }
    /* The broker sends no more than the prefetch before an ack. */
    if (max > c->cfg->prefetch) max = c->cfg->prefetch;
    buf tmp;
    buf_init(&tmp, SPATE_SOURCE_HEADERS_MAX);
    uint64_t now = clock_mono_ns(), end = now + (uint64_t)wait_ms * 1000000;
    int rc = 0;
    while (!rc && out->n < max) {
        now = clock_mono_ns();
        uint64_t until = end;
        if (out->n && now + (uint64_t)SPATE_SOURCE_AMQP_LINGER_MS * 1000000 < until)
            until = now + (uint64_t)SPATE_SOURCE_AMQP_LINGER_MS * 1000000;
        uint32_t ms = until > now ? (uint32_t)((until - now + 999999) / 1000000) : 0;
        amqp_frame_t f;
        rc = next_frame(c, &f, ms, err, errcap);
        if (rc == AMQP_STATUS_TIMEOUT) {
            rc = 0;
            break;
        }
        if (rc) break;
        if (f.frame_type != AMQP_FRAME_METHOD) {
            rc = failed(c, err, errcap, "protocol error: a frame outside a message");
            break;
        }
        switch (f.payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD:
            rc = read_delivery(c, &f, lim, out, &tmp, err, errcap);
            break;
        case AMQP_BASIC_CANCEL_METHOD:
            rc = failed(c, err, errcap,
                        "the broker cancelled the consumer (was queue '%s' deleted?)",
                        c->cfg->queue);
            break;
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD: {
            amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION,
                                  .reply = f.payload.method};
            rc = broken(c, r, f.channel, "the broker closed the channel");
            snprintf(err, errcap, "%s", c->why);
            break;
        }
        default:
            break; /* nothing this consumer asked for: ignored */
        }
    }
    buf_free(&tmp);
    return rc;
}

static int ack(src_conn *c, const src_batch *b, char *err, size_t errcap)
{
    /* b's highest tag, not the last fetch's: sources.c fetches the next
     * batch before it acks this one, and acking up to that batch's tags
     * acked what spate had not committed (lost if spated died), or nothing
     * when it was empty. Tags grow on the channel: the next batch's are all
     * higher. */
    uint64_t tag = 0;
    for (size_t i = 0; i < b->n; i++) {
        uint64_t t = strtoull(b->e[i].id, NULL, 10);
        if (t > tag) tag = t;
    }
    if (!tag) return 0;
    int rc = amqp_basic_ack(c->conn, CH_CONSUME, tag, 1);
    if (rc != AMQP_STATUS_OK)
        return failed(c, err, errcap, "basic.ack: %s", amqp_error_string2(rc));
    return 0;
}

/* The queue's ready messages (a passive declare's message count) on the
 * second channel; -1 when not told. */
static int64_t lag(src_conn *c)
{
    if (c->broken) return -1;
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(
        c->conn, CH_LAG, amqp_cstring_bytes(c->cfg->queue), 1, 0, 0, 0, amqp_empty_table);
    if (!ok) {
        /* The queue is gone (the channel is closed) or the connection
         * failed: the next fetch reports it and the source reconnects. */
        broken(c, amqp_get_rpc_reply(c->conn), CH_LAG, "cannot read the queue's depth");
        return -1;
    }
    int64_t n = ok->message_count;
    /* The reply lives in the channel's pool: give it back now. */
    amqp_maybe_release_buffers_on_channel(c->conn, CH_LAG);
    return n;
}

/* A queue's consumers compete: the broker spreads the deliveries, so every
 * node of a cluster runs the source and takes its share. */
static int competing(const void *cfg)
{
    (void)cfg;
    return 1;
}

const connector connector_amqp = {
    .scheme = "amqp",
    .form = "amqp://USER:PASS@HOST:PORT/VHOST?queue=Q",
    .parse = parse,
    .free_cfg = free_cfg,
    .connect = connect_,
    .fetch = fetch,
    .ack = ack,
    .lag = lag,
    .disconnect = disconnect,
    .group = competing,
};
