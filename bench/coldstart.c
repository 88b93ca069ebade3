/*
 * coldstart - the client side of bench/invoke's cold-start measurement.
 *
 *   coldstart fork N            fork, exit and reap a child N times: the floor
 *   coldstart invoke PORT FN N  invoke FN N times over one keep-alive
 *                               connection, first waiting each time until FN
 *                               has no instance left, so every call starts one
 *
 * Prints one latency per line, in microseconds. A small C client keeps the
 * client's own cost out of the figures.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Sends req and reads one whole answer (headers + Content-Length body) into out. */
static int roundtrip(int fd, const char *req, char *out, size_t cap)
{
    size_t len = strlen(req);
    if (write(fd, req, len) != (ssize_t)len) return -1;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, out + got, cap - 1 - got);
        if (n <= 0) return -1;
        got += (size_t)n;
        out[got] = '\0';
        char *end = strstr(out, "\r\n\r\n");
        char *cl = strstr(out, "Content-Length: ");
        if (end && cl && got >= (size_t)(end + 4 - out) + strtoul(cl + 16, NULL, 10)) break;
    }
    return atoi(out + 9);
}

/* The number in "\"name\":N" of a JSON text, or -1. */
static long field(const char *json, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(json, key);
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "fork") == 0) {
        int n = atoi(argv[2]);
        for (int i = 0; i < n; i++) {
            double t = now_us();
            pid_t pid = fork();
            if (pid == 0) _exit(0);
            waitpid(pid, NULL, 0);
            printf("%.1f\n", now_us() - t);
        }
        return 0;
    }
    if (argc != 5 || strcmp(argv[1], "invoke") != 0) {
        fprintf(stderr, "usage: coldstart fork N | coldstart invoke PORT FUNCTION N\n");
        return 2;
    }
    int port = atoi(argv[2]), n = atoi(argv[4]);
    const char *fn = argv[3];
    char invoke[256], describe[256];
    snprintf(invoke, sizeof invoke,
             "POST /v1/functions/%s/invoke HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n", fn);
    snprintf(describe, sizeof describe, "GET /v1/functions/%s HTTP/1.1\r\nHost: b\r\n\r\n", fn);
    int fd = dial(port);
    static char out[65536];
    for (int i = 0; i < n; i++) {
        /* Wait until no instance is left: the next call must start one. */
        for (int tries = 0;; tries++) {
            if (roundtrip(fd, describe, out, sizeof out) != 200) return 1;
            if (field(out, "starting") + field(out, "idle") + field(out, "busy") +
                    field(out, "stopping") ==
                0)
                break;
            if (tries > 5000) {
                fprintf(stderr, "instances never went away\n");
                return 1;
            }
            usleep(200);
        }
        double t = now_us();
        int status = roundtrip(fd, invoke, out, sizeof out);
        double dt = now_us() - t;
        if (status != 200) {
            fprintf(stderr, "invoke answered %d\n", status);
            return 1;
        }
        printf("%.1f\n", dt);
    }
    return 0;
}
