/*
 * Unit tests of the HTTP server (http/server/): the server runs on a libuv
 * loop in a thread; the test talks to it over loopback with plain sockets.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/fmt.h"
#include "http/server.h"
#include "test.h"

static uv_loop_t loop;
static http_server *srv;
static uv_async_t stop_async;
static int port;

/* --- The handler under test: echoes what it got ----------------------------------- */

static size_t body_limit(const http_request *req, void *data)
{
    return strcmp(req->path, "/big") == 0 ? 1000000 : 100;
}

typedef struct later {
    uv_timer_t t;
    http_request *req;
} later;

static void on_later(uv_timer_t *t)
{
    later *l = t->data;
    http_respond(l->req, 200, "text/plain", NULL, "slow", 4);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void handle(http_request *req, void *data)
{
    if (strcmp(req->path, "/slow") == 0) {
        /* Answer later, to check that pipelined answers stay in order. */
        later *l = malloc(sizeof *l);
        l->req = req;
        uv_timer_init(&loop, &l->t);
        l->t.data = l;
        uv_timer_start(&l->t, on_later, 100, 0);
        return;
    }
    char out[300];
    const char *hdr = http_header(req, "x-test");
    int n = snprintf(out, sizeof out, "%s %s q=%s h=%s body=%zu", http_method_str(req->method),
                     req->path, req->query, hdr ? hdr : "-", req->body.len);
    http_respond(req, 200, "text/plain", "X-Extra: 1\r\n", out, (size_t)n);
}

static const http_handlers handlers = {.body_limit = body_limit, .handle = handle};

static void on_stop(uv_async_t *a)
{
    http_server_close(srv, NULL, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_thread(void *arg)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

/* --- Client helpers ------------------------------------------------------------------ */

static int connect_client(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n <= 0) return;
        s += n;
        len -= (size_t)n;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* Reads until the peer closes, timeout_ms passes, or want bytes came. */
static size_t recv_for(int fd, char *out, size_t cap, int timeout_ms, size_t want)
{
    size_t len = 0;
    while (len < cap - 1 && len < want) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0) break;
        ssize_t n = recv(fd, out + len, cap - 1 - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    out[len] = '\0';
    return len;
}

/* Reads until the peer closes (or 3 s). */
static size_t recv_all(int fd, char *out, size_t cap)
{
    return recv_for(fd, out, cap, 3000, (size_t)-1);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

static int peer_closed(int fd, int timeout_ms)
{
    char tmp[64];
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return 0;
    return recv(fd, tmp, sizeof tmp, 0) == 0;
}

/* --- Tests ------------------------------------------------------------------------------ */

static void keep_alive(void)
{
    int fd = connect_client();
    char got[4096];
    send_str(fd, "GET /a?x=1 HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\n\r\n");
    recv_for(fd, got, sizeof got, 2000, 1);
    CHECK(strncmp(got, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(got, "GET /a q=x=1 h=yes body=0") != NULL);
    CHECK(strstr(got, "X-Extra: 1\r\n") != NULL);
    CHECK(strstr(got, "Connection: close") == NULL);
    send_str(fd, "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    recv_for(fd, got, sizeof got, 2000, 1);
    CHECK(strstr(got, "POST /b q= h=- body=5") != NULL);
    close(fd);
}

static void pipelined_in_order(void)
{
    int fd = connect_client();
    char got[8192];
    /* The slow one is answered 100 ms later; the others must wait for it. */
    send_str(fd, "GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /three HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /four HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    recv_all(fd, got, sizeof got);
    CHECK_INT(count(got, "HTTP/1.1 200"), 4);
    char *one = strstr(got, "GET /one"), *slow = strstr(got, "\r\n\r\nslow");
    char *three = strstr(got, "GET /three"), *four = strstr(got, "GET /four");
    CHECK(one && slow && three && four);
    CHECK(one < slow && slow < three && three < four);
    CHECK(strstr(got, "Connection: close") > three);
    close(fd);
}

static void chunked_body(void)
{
    int fd = connect_client();
    char got[4096];
    send_str(fd, "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n");
    recv_for(fd, got, sizeof got, 2000, 1);
    CHECK(strstr(got, "POST /c q= h=- body=7") != NULL);
    close(fd);
}

static void headers_too_large(void)
{
    int fd = connect_client();
    char got[4096];
    size_t big = 20000;
    char *req = malloc(big + 100);
    int n = snprintf(req, big + 100, "GET / HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'a', big);
    strcpy(req + n + big, "\r\n\r\n");
    send_str(fd, req);
    recv_all(fd, got, sizeof got);
    CHECK(strncmp(got, "HTTP/1.1 431 ", 13) == 0);
    CHECK(strstr(got, "\"code\":\"headers_too_large\"") != NULL);
    CHECK(strstr(got, "Connection: close") != NULL);
    close(fd);
    free(req);

    fd = connect_client();
    char many[8192];
    size_t len = (size_t)snprintf(many, sizeof many, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 70; i++)
        len += (size_t)snprintf(many + len, sizeof many - len, "H%d: v\r\n", i);
    snprintf(many + len, sizeof many - len, "\r\n");
    send_str(fd, many);
    recv_all(fd, got, sizeof got);
    CHECK(strncmp(got, "HTTP/1.1 431 ", 13) == 0);
    close(fd);
}

static void body_too_large(void)
{
    char got[4096];
    /* Declared too large: refused before the body is read... */
    int fd = connect_client();
    send_str(fd, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n");
    recv_all(fd, got, sizeof got);
    CHECK(strncmp(got, "HTTP/1.1 413 ", 13) == 0);
    CHECK(strstr(got, "\"code\":\"payload_too_large\"") != NULL);
    close(fd);

    /* ...and the client that sends it anyway still reads the answer. */
    fd = connect_client();
    char body[200000];
    memset(body, 'b', sizeof body);
    send_str(fd, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n");
    send_all(fd, body, sizeof body);
    recv_all(fd, got, sizeof got);
    CHECK(strncmp(got, "HTTP/1.1 413 ", 13) == 0);
    close(fd);

    /* A chunked body is cut when it passes the limit. */
    fd = connect_client();
    send_str(fd, "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "64\r\n");
    memset(body, 'c', 100);
    send_all(fd, body, 100);
    send_str(fd, "\r\n1\r\nx\r\n0\r\n\r\n");
    recv_all(fd, got, sizeof got);
    CHECK(strncmp(got, "HTTP/1.1 413 ", 13) == 0);
    close(fd);

    /* The large route takes it. */
    fd = connect_client();
    send_str(fd, "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n");
    memset(body, 'b', sizeof body);
    send_all(fd, body, sizeof body);
    recv_for(fd, got, sizeof got, 2000, 1);
    CHECK(strstr(got, "body=200000") != NULL);
    close(fd);
}

static void expect_continue(void)
{
    int fd = connect_client();
    char got[4096];
    send_str(fd,
             "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    recv_for(fd, got, sizeof got, 2000, 25);
    CHECK(strncmp(got, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
    send_str(fd, "abc");
    recv_for(fd, got, sizeof got, 2000, 1);
    CHECK(strstr(got, "body=3") != NULL);
    close(fd);
}

static void malformed(void)
{
    int fd = connect_client();
    char got[4096];
    send_str(fd, "GARBAGE\x01\x02 / HTTP/1.1\r\n\r\n");
    recv_all(fd, got, sizeof got);
    CHECK(strncmp(got, "HTTP/1.1 400 ", 13) == 0);
    CHECK(strstr(got, "\"code\":\"bad_request\"") != NULL);
    close(fd);

    fd = connect_client();
    send_str(fd, "GET http://example.com/ HTTP/1.1\r\n\r\n");
    recv_all(fd, got, sizeof got);
    CHECK(strncmp(got, "HTTP/1.1 400 ", 13) == 0);
    close(fd);

    /* The server keeps serving. */
    fd = connect_client();
    send_str(fd, "GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n");
    recv_all(fd, got, sizeof got);
    CHECK(strstr(got, "GET /ok") != NULL);
    close(fd);
}

static void head_has_no_body(void)
{
    int fd = connect_client();
    char got[4096];
    send_str(fd, "HEAD /h HTTP/1.1\r\nConnection: close\r\n\r\n");
    recv_all(fd, got, sizeof got);
    CHECK(strncmp(got, "HTTP/1.1 200 ", 13) == 0);
    CHECK(strstr(got, "Content-Length: 0\r\n") != NULL);
    CHECK(strstr(got, "\r\n\r\n")[4] == '\0');
    close(fd);
}

static void query_parse_cb_count(void);
static void json_string_escaping(void);

/* The kernel names the client of a loopback connection: this process's uid
 * and the client socket's inode. */
static void peer_of_loopback(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0);
    getsockname(l, (struct sockaddr *)&a, &alen);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
    int s = accept(l, NULL, NULL);
    http_peer p;
    peer_identify(s, &p);
    struct stat st;
    fstat(c, &st);
    CHECK(p.local && p.known);
    CHECK_INT(p.uid, geteuid());
    CHECK_INT(p.inode, st.st_ino);
    close(s);
    close(c);
    close(l);
}

static void peer_of_unix_socket(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    http_peer p;
    peer_identify(sv[0], &p);
    CHECK(p.local && p.known);
    CHECK_INT(p.uid, geteuid());
    CHECK_INT(p.pid, getpid());
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    uv_loop_init(&loop);
    http_config cfg;
    http_config_defaults(&cfg);
    cfg.max_connections = 8;
    cfg.request_timeout_ms = 300;
    cfg.idle_timeout_ms = 400;
    char err[256];
    if (http_server_start(&loop, "127.0.0.1", 0, &cfg, &handlers, NULL, &srv, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    port = http_server_port(srv);
    uv_async_init(&loop, &stop_async, on_stop);
    pthread_t th;
    pthread_create(&th, NULL, loop_thread, NULL);

    RUN(keep_alive);
    RUN(pipelined_in_order);
    RUN(chunked_body);
    RUN(headers_too_large);
    RUN(body_too_large);
    RUN(expect_continue);
    RUN(malformed);
    RUN(head_has_no_body);

    /* Timeouts: a trickling request gets 408; an idle connection is closed. */
    {
        fprintf(stderr, "  timeouts\n");
        int fd = connect_client();
        char got[4096];
        send_str(fd, "GET /slowloris HTTP/1.1\r\nHost: t\r\n");
        recv_all(fd, got, sizeof got);
        CHECK(strncmp(got, "HTTP/1.1 408 ", 13) == 0);
        close(fd);
        fd = connect_client();
        CHECK(peer_closed(fd, 3000));
        close(fd);
    }

    /* Connections over the limit, all busy (a body on its way): the new one
     * gets 503; the others are unaffected. */
    {
        fprintf(stderr, "  too_many_connections\n");
        int fds[8];
        for (int i = 0; i < 8; i++) {
            fds[i] = connect_client();
            send_str(fds[i], "POST /still HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
        }
        usleep(100000);
        int extra = connect_client();
        char got[4096];
        recv_all(extra, got, sizeof got);
        CHECK(strncmp(got, "HTTP/1.1 503 ", 13) == 0);
        CHECK(strstr(got, "too_many_connections") != NULL);
        close(extra);
        send_str(fds[0], "defghij");
        recv_for(fds[0], got, sizeof got, 2000, 1);
        CHECK(strstr(got, "POST /still") != NULL);
        for (int i = 0; i < 8; i++) close(fds[i]);
        usleep(100000);
    }

    /* Over the limit with connections that only wait: the oldest of them is
     * closed and the new one served. */
    {
        fprintf(stderr, "  waiting_connections_make_room\n");
        int fds[8];
        for (int i = 0; i < 8; i++) fds[i] = connect_client();
        usleep(100000);
        int extra = connect_client();
        char got[4096];
        send_str(extra, "GET /fresh HTTP/1.1\r\nConnection: close\r\n\r\n");
        recv_all(extra, got, sizeof got);
        CHECK(strstr(got, "GET /fresh") != NULL);
        close(extra);
        CHECK(peer_closed(fds[0], 2000));
        for (int i = 0; i < 8; i++) close(fds[i]);
    }

    RUN(peer_of_loopback);
    RUN(peer_of_unix_socket);

    RUN(query_parse_cb_count);
    RUN(json_string_escaping);

    uv_async_send(&stop_async);
    pthread_join(th, NULL);
    uv_loop_close(&loop);
    return TEST_RESULT();
}

/* --- Query strings ------------------------------------------------------------------- */

typedef struct qseen {
    int n;
    char k[4][32];
    char v[4][32];
    size_t vlen[4];
} qseen;

static int on_q(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    qseen *q = data;
    if (q->n < 4) {
        snprintf(q->k[q->n], sizeof q->k[0], "%s", k);
        memcpy(q->v[q->n], v, vlen < 31 ? vlen : 31);
        q->v[q->n][vlen < 31 ? vlen : 31] = '\0';
        q->vlen[q->n] = vlen;
    }
    q->n++;
    return 0;
}

static void query_parse_cb_count(void)
{
    qseen q = {0};
    CHECK_INT(http_query_parse("a=1&env=K%3DV&&flag&sp=a+b%20c", on_q, &q), 0);
    CHECK_INT(q.n, 4);
    CHECK_STR(q.k[0], "a");
    CHECK_STR(q.v[0], "1");
    CHECK_STR(q.k[1], "env");
    CHECK_STR(q.v[1], "K=V");
    CHECK_STR(q.k[2], "flag");
    CHECK_STR(q.v[2], "");
    CHECK_STR(q.v[3], "a b c");
    qseen bad = {0};
    CHECK_INT(http_query_parse("a=%zz", on_q, &bad), ERR_INVAL);
    CHECK_INT(http_query_parse("a=%4", on_q, &bad), ERR_INVAL);
    qseen nul = {0};
    CHECK_INT(http_query_parse("a=x%00y", on_q, &nul), 0);
    CHECK_INT(nul.vlen[0], 3);
}

/* The one JSON string escaping (common/fmt.h) that error bodies and JSON log
 * lines share: quotes, backslashes and control characters escaped, the rest
 * as it is, and the output cut short of end with whole escapes only. */
static void json_string_escaping(void)
{
    char out[64];
    const char in[] = "a\"b\\c\n\x1b\x7f\xc3\xa9";
    char *end = fmt_json_str(out, out + sizeof out, in, sizeof in - 1);
    *end = '\0';
    CHECK(strcmp(out, "a\\\"b\\\\c\\u000a\\u001b\x7f\xc3\xa9") == 0);
    /* Room for 10 bytes: writing stops before end - 6, never inside an escape. */
    end = fmt_json_str(out, out + 10, "ab\x01\x01", 4);
    CHECK_INT(end - out, 8);
    CHECK(memcmp(out, "ab\\u0001", 8) == 0);
}
