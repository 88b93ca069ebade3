/*
 * fuzz_http_tls - the TLS-wrapped request path (http/server/tls.c): after a
 * real handshake, arbitrary bytes as the plaintext of one client connection
 * to an HTTP server with TLS, cut into TLS records where the input says. What
 * differs from fuzz_http's plain path is what is fuzzed here: records that
 * end anywhere in a request, decrypted bytes waiting in OpenSSL while the
 * read buffer is full, a close_notify in the middle of a request, answers
 * encrypted on their way out. The handler echoes what it got (the parser and
 * the API behind it are fuzz_http's).
 *
 * Input: byte 0 picks the record size (1 to 256 bytes, or one record of up to
 * 16 KiB when 0); the rest is the plaintext. The certificate is a P-256 key
 * and a self-signed certificate made at start.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "http/server.h"

static uv_loop_t *loop;
static int port;
static SSL_CTX *client_ctx;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_http_tls: %s\n", what);
    exit(1);
}

static size_t body_limit(const http_request *req, void *data)
{
    (void)req;
    (void)data;
    return 1 << 20;
}

static void handle(http_request *req, void *data)
{
    (void)data;
    char out[256];
    int n = snprintf(out, sizeof out, "%s %s body=%zu", http_method_str(req->method), req->path,
                     req->body.len);
    http_respond(req, 200, "text/plain", NULL, out, (size_t)n);
}

static const http_handlers handlers = {.body_limit = body_limit, .handle = handle};

/* A self-signed P-256 certificate and its key, as PEM files. */
static void make_cert(const char *cert_path, const char *key_path)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    if (!pkey || !x) die("cannot make a key");
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, name);
    if (!X509_sign(x, pkey, EVP_sha256())) die("cannot sign the certificate");
    FILE *f = fopen(cert_path, "w");
    FILE *k = fopen(key_path, "w");
    if (!f || !k) die("cannot write the certificate");
    PEM_write_X509(f, x);
    PEM_write_PrivateKey(k, pkey, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    fclose(k);
    X509_free(x);
    EVP_PKEY_free(pkey);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    loop = uv_default_loop();
    signal(SIGPIPE, SIG_IGN); /* as spated does */
    char cert[64], key[64], err[512];
    snprintf(cert, sizeof cert, "/tmp/fuzz-http-tls-%d.pem", (int)getpid());
    snprintf(key, sizeof key, "/tmp/fuzz-http-tls-%d.key", (int)getpid());
    make_cert(cert, key);
    http_tls *tls;
    if (http_tls_load(cert, key, NULL, &tls, err, sizeof err)) die(err);
    unlink(cert);
    unlink(key);
    http_config hc;
    http_config_defaults(&hc);
    hc.request_timeout_ms = 1000;
    http_server *s;
    if (http_server_start(loop, "127.0.0.1", 0, &hc, &handlers, NULL, &s, err, sizeof err))
        die(err);
    http_server_set_tls(s, tls);
    port = http_server_port(s);
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (!client_ctx) die("cannot set up the client");
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL); /* our own server */
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    size_t record = data[0] ? data[0] : 16384;
    data++;
    size--;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(fd, (struct sockaddr *)&sa, sizeof sa); /* EINPROGRESS: loopback completes fast */
    SSL *ssl = SSL_new(client_ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_connect_state(ssl);
    size_t sent = 0;
    int shut = 0, done = 0;
    char in[16384];
    uint64_t deadline = now_ms() + 300;
    while (now_ms() < deadline && !done) {
        uv_run(loop, UV_RUN_NOWAIT);
        ERR_clear_error();
        if (!SSL_is_init_finished(ssl)) {
            int r = SSL_do_handshake(ssl);
            int e = SSL_get_error(ssl, r);
            if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) break;
            continue;
        }
        if (sent < size) {
            size_t n = size - sent < record ? size - sent : record;
            int w = SSL_write(ssl, data + sent, (int)n); /* one record each */
            if (w > 0) sent += (size_t)w;
        } else if (!shut) {
            SSL_shutdown(ssl); /* close_notify: the client sends no more */
            shut = 1;
        }
        int r = SSL_read(ssl, in, sizeof in);
        if (r <= 0) {
            int e = SSL_get_error(ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                done = 1;
            else
                usleep(10);
        }
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    /* Let the server see the close. */
    for (int i = 0; i < 4; i++) uv_run(loop, UV_RUN_NOWAIT);
    return 0;
}
