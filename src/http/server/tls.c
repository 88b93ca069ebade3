/*
 * tls.c - TLS around a connection's bytes. OpenSSL works on two memory BIOs
 * per connection: what the socket reads goes into one, what OpenSSL writes
 * comes out of the other and goes to the socket through libuv. Decrypted
 * bytes land in the connection's read buffer, where the parser finds them as
 * it finds plain ones; answers are encrypted in write order. Nothing above
 * this file knows whether a connection is encrypted.
 *
 * Limits: the handshake must complete within SPATE_TLS_HANDSHAKE_BYTES_MAX
 * bytes and the header deadline (the connection's timer, as for a plain
 * first request); undecrypted input stops reading at SPATE_TLS_BUFFERED_MAX.
 * A first byte that is not a TLS handshake record is plain HTTP: it is
 * answered 400 tls_required in clear and the connection closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "http/server/internal.h"

struct http_tls {
    SSL_CTX *ctx;
};

struct http_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    size_t handshake_bytes;
    unsigned sniffed : 1, done : 1;
    char *subject; /* the verified client certificate's, or NULL */
};

/* A write of encrypted bytes the socket did not take at once. */
typedef struct tls_write {
    uv_write_t req;
    http_conn *c;
    int answer; /* its completion completes an answer (http__written) */
    char data[];
} tls_write;

/* The socket's bytes, consumed by http__tls_input before the next read. */
static char raw[16 * KIB + 512];

/* OpenSSL's reason for the last failure, for a message. */
static const char *ssl_reason(char *out, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(out, cap, "unknown error");
    } else {
        const char *r = ERR_reason_error_string(e);
        snprintf(out, cap, "%s", r ? r : "unknown error");
    }
    ERR_clear_error();
    return out;
}

/* A file the operator named must be a readable regular file: said plainly
 * before OpenSSL's terser reasons. */
/* O_NONBLOCK: a FIFO named here would otherwise hold the loop (at a
 * SIGHUP) until something writes into it; it is refused instead. */
static int readable(const char *what, const char *path, char *err, size_t errcap)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size > (off_t)SPATE_PEM_FILE_MAX) {
        snprintf(err, errcap, "cannot read %s '%s': %s", what, path,
                 fd < 0                 ? strerror(errno)
                 : !S_ISREG(st.st_mode) ? "not a regular file"
                                        : "larger than 1 MiB");
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* An encrypted key would make OpenSSL ask for its passphrase on spated's
 * terminal (at start, or on the loop at a SIGHUP): there is none to give,
 * so the key does not load and the error says why. */
static int no_passphrase(char *out, int size, int rwflag, void *data)
{
    (void)out, (void)size, (void)rwflag, (void)data;
    return 0;
}

int http_tls_load(const char *cert, const char *key, const char *client_ca, http_tls **out,
                  char *err, size_t errcap)
{
    char why[256];
    if (readable("TLS certificate", cert, err, errcap) || readable("TLS key", key, err, errcap) ||
        (client_ca && client_ca[0] && readable("TLS client CA", client_ca, err, errcap)))
        return ERR_IO;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errcap, "cannot set up TLS: %s", ssl_reason(why, sizeof why));
        return ERR_NOMEM;
    }
    /* TLS 1.2 and later, OpenSSL's default ciphers and groups; no
     * renegotiation (a client could make the server redo the costly part). */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_max_cert_list(ctx, SPATE_TLS_HANDSHAKE_BYTES_MAX);
    /* Resumed sessions keep their client's verified certificate. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"spated", 6);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errcap, "cannot use TLS certificate '%s': %s", cert,
                 ssl_reason(why, sizeof why));
        goto fail;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(err, errcap, "TLS key '%s' does not match certificate '%s'", key, cert);
        else
            snprintf(err, errcap, "cannot use TLS key '%s': %s", key, ssl_reason(why, sizeof why));
        ERR_clear_error();
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errcap, "TLS key '%s' does not match certificate '%s': %s", key, cert,
                 ssl_reason(why, sizeof why));
        goto fail;
    }
    if (client_ca && client_ca[0]) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (!names || SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
            if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
            snprintf(err, errcap, "cannot use TLS client CA '%s': %s", client_ca,
                     ssl_reason(why, sizeof why));
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    http_tls *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errcap, "out of memory");
        SSL_CTX_free(ctx);
        return ERR_NOMEM;
    }
    t->ctx = ctx;
    *out = t;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return ERR_INVAL;
}

void http_tls_free(http_tls *t)
{
    if (!t) return;
    SSL_CTX_free(t->ctx); /* connections hold their own reference */
    free(t);
}

void http_tls_describe(const http_tls *t, char *out, size_t cap)
{
    X509 *x = SSL_CTX_get0_certificate(t->ctx);
    snprintf(out, cap, "?");
    if (!x) return;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b) return;
    X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
    BIO_puts(b, ", valid until ");
    ASN1_TIME_print(b, X509_get0_notAfter(x));
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n > 0) snprintf(out, cap, "%.*s", (int)n, p);
    BIO_free(b);
}

void http_server_set_tls(http_server *s, http_tls *t)
{
    http_tls_free(s->tls);
    s->tls = t;
}

const char *http_request_tls_subject(const http_request *req)
{
    const http_conn *c = CONN(req);
    return c->tls ? c->tls->subject : NULL;
}

/* --- A connection ------------------------------------------------------------------ */

int http__tls_accept(http_conn *c)
{
    http_tls_conn *t = calloc(1, sizeof *t);
    if (!t) goto fail;
    t->ssl = SSL_new(c->srv->tls->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        goto fail;
    }
    /* An empty read BIO says "retry", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    c->tls = t;
    return 0;
fail:
    log_error("cannot set up TLS for a connection: out of memory client=%s", c->client);
    ERR_clear_error();
    http__close_conn(c);
    return -1;
}

void http__tls_free(http_conn *c)
{
    if (!c->tls) return;
    SSL_free(c->tls->ssl);
    free(c->tls->subject);
    free(c->tls);
    c->tls = NULL;
}

void http__tls_alloc(uv_buf_t *out)
{
    *out = uv_buf_init(raw, sizeof raw);
}

int http__tls_may_read(const http_conn *c)
{
    return BIO_ctrl_pending(c->tls->rbio) < SPATE_TLS_BUFFERED_MAX;
}

static void on_tls_write(uv_write_t *req, int status)
{
    tls_write *w = req->data;
    http_conn *c = w->c;
    int answer = w->answer;
    free(w);
    if (c->closed) return;
    if (status < 0) {
        http__close_conn(c);
        return;
    }
    if (answer) http__written(c);
}

/* The output buffer, once sent: emptied, or replaced by a new one when it
 * grew past SPATE_TLS_WRITE_KEEP (limits.h says why). */
static void drained(http_tls_conn *t)
{
    BUF_MEM *bm = NULL;
    BIO *fresh = NULL;
    BIO_get_mem_ptr(t->wbio, &bm);
    if (bm && bm->max > SPATE_TLS_WRITE_KEEP && (fresh = BIO_new(BIO_s_mem()))) {
        SSL_set0_wbio(t->ssl, fresh); /* frees the old one */
        t->wbio = fresh;
        return;
    }
    (void)BIO_reset(t->wbio);
}

/* Sends what OpenSSL wrote: at once when the socket takes it, else the rest
 * from a copy, after the writes before it. 0 all sent, 1 under way (with
 * answer, http__written follows), -1 the connection closed. */
static int send_out(http_conn *c, int answer)
{
    char *p;
    long len = BIO_get_mem_data(c->tls->wbio, &p);
    if (len <= 0) return 0;
    uv_buf_t b = uv_buf_init(p, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        drained(c->tls);
        http__close_conn(c);
        return -1;
    }
    if (n == len) {
        drained(c->tls);
        return 0;
    }
    size_t rest = (size_t)(len - n);
    tls_write *w = malloc(sizeof *w + rest);
    if (!w) {
        drained(c->tls);
        http__close_conn(c);
        return -1;
    }
    memcpy(w->data, p + n, rest);
    drained(c->tls);
    w->c = c;
    w->answer = answer;
    w->req.data = w;
    uv_buf_t r = uv_buf_init(w->data, (unsigned)rest);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &r, 1, on_tls_write) != 0) {
        free(w);
        http__close_conn(c);
        return -1;
    }
    return 1;
}

/* Failures before a request are the client's or the network's: counted and
 * said at most every 10 s, so a scanner does not flood the log. */
static void log_refused(http_conn *c, const char *why)
{
    http_server *s = c->srv;
    uint64_t now = uv_now(s->loop);
    if (now < s->tls_log_at) return;
    s->tls_log_at = now + 10000;
    log_warn("TLS: %s; %llu plain HTTP and %llu failed handshake(s) refused so far client=%s", why,
             (unsigned long long)s->tls_plain, (unsigned long long)s->tls_failed, c->client);
}

/* Plain HTTP on a TLS listener: one answer in clear, then the connection
 * ends as after any final error (FIN, input drained for the linger). */
static void refuse_plain(http_conn *c)
{
    c->srv->tls_plain++;
    log_refused(c, "plain HTTP sent to the TLS listener");
    http__tls_free(c);
    c->keep_alive = 0;
    c->pending = 1;
    c->state = C_HANDLING;
    http_respond_error(&c->req, 400, "tls_required",
                       "this port speaks HTTPS only: use https:// (spated has --tls-cert)");
}

static void handshake_failed(http_conn *c, const char *why)
{
    char reason[256], line[400];
    c->srv->tls_failed++;
    snprintf(line, sizeof line, "handshake failed: %s",
             why ? why : ssl_reason(reason, sizeof reason));
    log_refused(c, line);
    ERR_clear_error();
    /* The alert OpenSSL wrote, if any, goes out before the close. */
    if (send_out(c, 0) >= 0) http__close_conn(c);
}

/* The client certificate the CA verified (mutual TLS), by its subject. */
static void keep_subject(http_tls_conn *t)
{
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    if (!x || SSL_get_verify_result(t->ssl) != X509_V_OK) return;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b) return;
    X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n > 0 && (t->subject = malloc((size_t)n + 1))) {
        memcpy(t->subject, p, (size_t)n);
        t->subject[n] = '\0';
    }
    BIO_free(b);
}

int http__tls_input(http_conn *c, const char *data, size_t n)
{
    http_tls_conn *t = c->tls;
    if (!t->sniffed) {
        t->sniffed = 1;
        /* Every TLS connection starts with a handshake record (22). */
        if ((unsigned char)data[0] != 0x16) {
            refuse_plain(c);
            return -1;
        }
    }
    if (!t->done) {
        t->handshake_bytes += n;
        if (t->handshake_bytes > SPATE_TLS_HANDSHAKE_BYTES_MAX) {
            char why[80];
            snprintf(why, sizeof why, "over %u bytes of handshake",
                     (unsigned)SPATE_TLS_HANDSHAKE_BYTES_MAX);
            handshake_failed(c, why);
            return -1;
        }
    }
    if (BIO_write(t->rbio, data, (int)n) != (int)n) {
        http__close_conn(c);
        return -1;
    }
    if (t->done) return 0;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return send_out(c, 0) < 0 ? -1 : 0;
        handshake_failed(c, NULL);
        return -1;
    }
    t->done = 1;
    keep_subject(t);
    return send_out(c, 0) < 0 ? -1 : 0;
}

size_t http__tls_fill(http_conn *c)
{
    http_tls_conn *t = c->tls;
    if (!t || !t->done || c->closed) return 0;
    if (!c->in && !(c->in = malloc(SPATE_HTTP_READ_BUFFER))) return 0;
    if (c->in_off == c->in_len) {
        c->in_off = c->in_len = 0;
    } else if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    size_t added = 0;
    while (c->in_len < SPATE_HTTP_READ_BUFFER) {
        /* Nothing buffered, decrypted or not: no call (a request is usually
         * one record, and this runs again each time the parser wants more). */
        if (!SSL_has_pending(t->ssl) && BIO_ctrl_pending(t->rbio) == 0) break;
        ERR_clear_error();
        int r = SSL_read(t->ssl, c->in + c->in_len, (int)(SPATE_HTTP_READ_BUFFER - c->in_len));
        if (r > 0) {
            c->in_len += (size_t)r;
            added += (size_t)r;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            c->peer_eof = 1; /* close_notify: the client will send no more */
            break;
        }
        char why[256];
        log_warn("TLS: cannot read from the connection: %s client=%s", ssl_reason(why, sizeof why),
                 c->client);
        http__close_conn(c);
        return added;
    }
    /* Reading may have written (session tickets, a key update's answer). */
    send_out(c, 0);
    return added;
}

int http__tls_write(http_conn *c, const char *head, size_t hlen, const void *body, size_t blen)
{
    http_tls_conn *t = c->tls;
    if (!t->done) {
        /* A refusal at accept (503) to a client not yet through its
         * handshake: nothing can be said to it. */
        http__close_conn(c);
        return -1;
    }
    /* One record for a small answer: one encryption, one MAC. */
    char one[16 * KIB];
    int ok;
    ERR_clear_error();
    if (hlen + blen <= sizeof one && blen) {
        memcpy(one, head, hlen);
        memcpy(one + hlen, body, blen);
        ok = SSL_write(t->ssl, one, (int)(hlen + blen)) > 0;
    } else {
        ok = SSL_write(t->ssl, head, (int)hlen) > 0 &&
             (!blen || SSL_write(t->ssl, body, (int)blen) > 0);
    }
    if (!ok) {
        char why[256];
        log_warn("TLS: cannot write an answer: %s client=%s", ssl_reason(why, sizeof why),
                 c->client);
        (void)BIO_reset(t->wbio);
        http__close_conn(c);
        return -1;
    }
    int rc = send_out(c, 1);
    if (rc == 1) {
        c->state = C_WRITING;
        /* A client that stops reading is dropped after the idle timeout. */
        http__start_timer(c, c->srv->cfg.idle_timeout_ms);
    }
    return rc;
}

void http__tls_shutdown(http_conn *c)
{
    http_tls_conn *t = c->tls;
    if (!t || !t->done) return;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    send_out(c, 0);
}
