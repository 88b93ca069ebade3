/*
 * bootstrap - the exec function of bench/invoke: a lean Lambda custom
 * runtime in C that answers every event with "ok". It keeps one connection to
 * the Runtime API and sends each response together with the request for the
 * next event (HTTP/1.1 pipelining), as a careful runtime client would.
 *
 *   cc -O2 -o bootstrap bench/bootstrap.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static char in[1 << 20];
static size_t have;

static void die(const char *why)
{
    fprintf(stderr, "bootstrap: %s\n", why);
    exit(1);
}

/* Reads one whole HTTP answer from the front of `in`; returns its length
 * and points *body, *id at its parts (id from Lambda-Runtime-Aws-Request-Id). */
static size_t answer(int fd, const char **body, size_t *blen, char *id, size_t idcap)
{
    for (;;) {
        char *end = have ? memmem(in, have, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t hl = (size_t)(end - in) + 4;
            char *cl = memmem(in, hl, "Content-Length: ", 16);
            size_t len = cl ? strtoul(cl + 16, NULL, 10) : 0;
            if (have >= hl + len) {
                *body = in + hl;
                *blen = len;
                if (id) {
                    char *h = memmem(in, hl, "Lambda-Runtime-Aws-Request-Id: ", 31);
                    size_t n = h ? strcspn(h + 31, "\r") : 0;
                    if (!h || n >= idcap) die("no request id");
                    memcpy(id, h + 31, n);
                    id[n] = '\0';
                }
                return hl + len;
            }
        }
        ssize_t r = read(fd, in + have, sizeof in - have);
        if (r <= 0) exit(0);
        have += (size_t)r;
    }
}

static void consume(size_t n)
{
    memmove(in, in + n, have - n);
    have -= n;
}

int main(void)
{
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    if (!api) die("no AWS_LAMBDA_RUNTIME_API");
    const char *colon = strrchr(api, ':');
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(colon - api), api);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("cannot connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    static const char next[] =
        "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: r\r\n\r\n";
    if (write(fd, next, sizeof next - 1) < 0) die("write");
    char id[128], post[512];
    for (;;) {
        const char *body;
        size_t blen;
        consume(answer(fd, &body, &blen, id, sizeof id)); /* the event */
        int n = snprintf(post, sizeof post,
                         "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\n"
                         "Host: r\r\nContent-Length: 2\r\n\r\nok",
                         id);
        struct iovec iov[2] = {{post, (size_t)n}, {(void *)next, sizeof next - 1}};
        if (writev(fd, iov, 2) < 0) die("write");
        consume(answer(fd, &body, &blen, NULL, 0)); /* the 202 */
    }
}
