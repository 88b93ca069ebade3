/*
 * tls_relay.c - a verified TLS connection relayed to a socketpair for a
 * client library without TLS (tls_relay.h).
 *
 * The relay's thread polls both sockets and copies what comes, blocking on
 * the write: the library writes a command and then reads its reply, and
 * the broker reads commands while it writes replies, so neither side's
 * buffer fills while the other waits for it (commands here are a few KiB:
 * an XACK of one batch at most). Reads are bounded by RELAY_CHUNK; the
 * sockets' own timeouts (io_ms) end a relay stuck in a TLS record that
 * never completes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "sources/tls_relay.h"

/* One TLS record's worth of plaintext at most per read. */
#define RELAY_CHUNK (16 * 1024)

struct src_tls_relay {
    SSL_CTX *ctx;
    SSL *ssl;
    int tcp;   /* to the broker */
    int inner; /* our end of the socketpair */
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    char why[256]; /* under mu */
};

static void set_why(src_tls_relay *r, const char *fmt, const char *detail)
{
    pthread_mutex_lock(&r->mu);
    if (!r->why[0]) snprintf(r->why, sizeof r->why, fmt, detail);
    pthread_mutex_unlock(&r->mu);
}

const char *src_tls_relay_why(src_tls_relay *r)
{
    pthread_mutex_lock(&r->mu);
    const char *w = r->why;
    pthread_mutex_unlock(&r->mu);
    return w;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *relay(void *arg)
{
    src_tls_relay *r = arg;
    char *chunk = malloc(RELAY_CHUNK);
    if (!chunk) set_why(r, "%s", "out of memory");
    while (chunk) {
        struct pollfd p[2] = {{.fd = r->tcp, .events = POLLIN}, {.fd = r->inner, .events = POLLIN}};
        /* Bytes OpenSSL decrypted already are not on the socket. */
        if (!SSL_pending(r->ssl) && poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            set_why(r, "poll: %s", strerror(errno));
            break;
        }
        if (SSL_pending(r->ssl) || (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            ERR_clear_error();
            int n = SSL_read(r->ssl, chunk, RELAY_CHUNK);
            if (n <= 0) {
                int e = SSL_get_error(r->ssl, n);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) continue;
                if (e == SSL_ERROR_ZERO_RETURN)
                    set_why(r, "%s", "the broker closed the TLS connection");
                else if (e == SSL_ERROR_SYSCALL)
                    set_why(r, "TLS read: %s",
                            errno ? strerror(errno) : "the broker closed the connection");
                else
                    set_why(r, "TLS read: %s", ERR_reason_error_string(ERR_peek_last_error()));
                break;
            }
            if (write_all(r->inner, chunk, (size_t)n)) {
                set_why(r, "%s", "the client's end closed");
                break;
            }
        }
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(r->inner, chunk, RELAY_CHUNK);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                set_why(r, "%s", "the client's end closed");
                break;
            }
            ERR_clear_error();
            if (SSL_write(r->ssl, chunk, (int)n) <= 0) {
                set_why(r, "TLS write: %s",
                        ERR_peek_last_error() ? ERR_reason_error_string(ERR_peek_last_error())
                                              : strerror(errno));
                break;
            }
        }
    }
    free(chunk);
    /* The library's blocked read returns (end of file). */
    shutdown(r->inner, SHUT_RDWR);
    return NULL;
}

static void set_timeouts(int fd, uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* A TCP connection to host:port, each address in turn, io_ms each. */
static int dial(const char *host, int port, uint32_t io_ms, char *err, size_t errcap)
{
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g) {
        snprintf(err, errcap, "cannot connect to %s:%d: %s", host, port, gai_strerror(g));
        return -1;
    }
    int e = ECONNREFUSED, fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        /* A blocking connect bounded by the send timeout (Linux). */
        set_timeouts(fd, io_ms);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            e = errno == EINPROGRESS ? ETIMEDOUT : errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) snprintf(err, errcap, "cannot connect to %s:%d: %s", host, port, strerror(e));
    return fd;
}

static int no_passphrase(char *out, int size, int rwflag, void *data)
{
    (void)out, (void)size, (void)rwflag, (void)data;
    return 0;
}

/* The context: TLS 1.2 at least, the peer verified against t's CA file or
 * the system's trust store, t's client certificate. */
static SSL_CTX *context(const src_tls *t, char *err, size_t errcap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errcap, "cannot create a TLS context: out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* A read that processed only a TLS 1.3 session ticket returns (WANT_READ)
     * instead of waiting for data on the blocking socket, which would hold
     * the command the library is writing meanwhile. */
    SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
    /* An encrypted key: no prompt on spated's terminal, a refusal. */
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    /* What could not be used: its kind and file. */
    const char *what = NULL, *file = NULL;
    if (t->ca[0] ? SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1
                 : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        what = "CA file";
        file = t->ca[0] ? t->ca : "(the system's)";
    } else if (t->cert[0] && SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
        what = "client certificate";
        file = t->cert;
    } else if (t->key[0] && (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1 ||
                             SSL_CTX_check_private_key(ctx) != 1)) {
        what = "client key";
        file = t->key;
    }
    if (what) {
        unsigned long e = ERR_peek_last_error();
        const char *why = e ? ERR_reason_error_string(e) : NULL;
        snprintf(err, errcap, "cannot use the %s '%.200s': %s", what, file,
                 why ? why : "not PEM, or not this certificate's key");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void relay_free(src_tls_relay *r)
{
    if (r->ssl) SSL_free(r->ssl);
    if (r->ctx) SSL_CTX_free(r->ctx);
    if (r->tcp >= 0) close(r->tcp);
    if (r->inner >= 0) close(r->inner);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* SSL_connect within io_ms in all: the sockets' timeouts bound each read
 * alone, and a broker sending its handshake a byte at a time held the
 * source's thread (and spated's stop, which waits for it) for ever. 1 done,
 * 0 not within io_ms, -1 failed (OpenSSL's error queue, errno say why). */
static int handshake(SSL *ssl, int fd, uint32_t io_ms)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    uint64_t end = clock_mono_ns() + (uint64_t)io_ms * 1000000;
    int rc = -1;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_connect(ssl);
        if (n == 1) {
            rc = 1;
            break;
        }
        int e = SSL_get_error(ssl, n);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) break;
        uint64_t now = clock_mono_ns();
        if (now >= end) {
            rc = 0;
            break;
        }
        struct pollfd p = {.fd = fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
        int left = (int)((end - now + 999999) / 1000000);
        if (poll(&p, 1, left) < 0 && errno != EINTR) break;
    }
    int saved = errno;
    if (fcntl(fd, F_SETFL, fl) < 0 && rc == 1) rc = -1;
    errno = saved;
    return rc;
}

int src_tls_relay_open(const char *host, int port, const src_tls *t, uint32_t io_ms,
                       src_tls_relay **out, int *plain_fd, char *err, size_t errcap)
{
    int rc = src_tls_check_files(t, err, errcap);
    if (rc) return rc;
    src_tls_relay *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    r->tcp = r->inner = -1;
    pthread_mutex_init(&r->mu, NULL);
    ERR_clear_error();
    if (!(r->ctx = context(t, err, errcap)) ||
        (r->tcp = dial(host, port, io_ms, err, errcap)) < 0) {
        relay_free(r);
        return ERR_IO;
    }
    r->ssl = SSL_new(r->ctx);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    /* The broker's name (or address) must be in its certificate. */
    int ok =
        r->ssl && SSL_set_fd(r->ssl, r->tcp) == 1 &&
        (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(r->ssl), host) == 1
               : SSL_set_tlsext_host_name(r->ssl, host) == 1 && SSL_set1_host(r->ssl, host) == 1);
    if (!ok) {
        snprintf(err, errcap, "cannot set up TLS to %s:%d", host, port);
        relay_free(r);
        return ERR_IO;
    }
    int hs = handshake(r->ssl, r->tcp, io_ms);
    if (hs == 0) {
        snprintf(err, errcap, "TLS handshake with %s:%d failed: not done within %u ms", host, port,
                 (unsigned)io_ms);
        relay_free(r);
        return ERR_IO;
    }
    if (hs < 0) {
        long v = SSL_get_verify_result(r->ssl);
        unsigned long e = ERR_peek_last_error();
        if (v != X509_V_OK)
            snprintf(err, errcap, "TLS handshake with %s:%d failed: certificate verify failed: %s",
                     host, port, X509_verify_cert_error_string(v));
        else
            snprintf(err, errcap, "TLS handshake with %s:%d failed: %s", host, port,
                     e       ? ERR_reason_error_string(e)
                     : errno ? strerror(errno)
                             : "the broker closed the connection (not a TLS port?)");
        relay_free(r);
        return ERR_IO;
    }
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        snprintf(err, errcap, "socketpair: %s", strerror(errno));
        relay_free(r);
        return ERR_IO;
    }
    r->inner = pair[1];
    if (pthread_create(&r->thread, NULL, relay, r) != 0) {
        close(pair[0]);
        snprintf(err, errcap, "cannot start the TLS relay's thread");
        relay_free(r);
        return ERR_IO;
    }
    r->started = 1;
    *plain_fd = pair[0];
    *out = r;
    return 0;
}

void src_tls_relay_close(src_tls_relay *r)
{
    if (!r) return;
    /* Both ends shut down: the thread's poll or blocked call returns. */
    shutdown(r->tcp, SHUT_RDWR);
    shutdown(r->inner, SHUT_RDWR);
    if (r->started) pthread_join(r->thread, NULL);
    relay_free(r);
}
