/*
 * coldstart - the client side of bench/invoke's cold-start measurement.
 *
 *   coldstart fork N            fork, exit and reap a child N times: the floor
 *   coldstart invoke PORT FN N [GAP_MS]
 *                               invoke FN N times over one keep-alive
 *                               connection, first waiting each time until FN
 *                               has no instance left, so every call starts one;
 *                               with GAP_MS, after that many ms of nothing more
 *                               (a cold start from idle)
 *   coldstart deployed PORT FN OBJECT N GAP_MS
 *                               deploy OBJECT as FN (a new version each
 *                               time, keep-alive 0), wait GAP_MS, invoke it:
 *                               N times, the first invocation after a deploy
 *                               (only the invocation is timed)
 *   coldstart warm PORT FN N GAP_MS
 *                               invoke FN N times, each after GAP_MS of nothing:
 *                               what waking the machine up costs a warm call
 *   coldstart cgroup N GAP_MS   move a sleeping child between two memory
 *                               cgroups N times, each after GAP_MS of nothing:
 *                               the cgroup.procs write an instance makes to
 *                               join its cgroup (root; cgroup v1)
 *
 * Prints one latency per line, in microseconds. A small C client keeps the
 * client's own cost out of the figures.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* Sends head then len bytes of body; reads one whole answer. */
static int roundtrip_body(int fd, const char *head, const char *body, size_t len, char *out,
                          size_t cap)
{
    size_t hlen = strlen(head);
    if (write(fd, head, hlen) != (ssize_t)hlen) return -1;
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, body + off, len - off);
        if (n <= 0) return -1;
        off += (size_t)n;
    }
    return roundtrip(fd, "", out, cap);
}

/* The first invocation after each of n deploys of object as fn. */
static int deployed(int port, const char *fn, const char *object, int n, int gap_ms)
{
    FILE *f = fopen(object, "rb");
    static char so[16 << 20], out[65536];
    size_t len = f ? fread(so, 1, sizeof so, f) : 0;
    if (!f || len == 0 || len == sizeof so) {
        fprintf(stderr, "cannot read %s (at most 16 MiB)\n", object);
        return 1;
    }
    fclose(f);
    char put[256], invoke[256];
    snprintf(put, sizeof put,
             "PUT /v1/functions/%s?keep_alive=0 HTTP/1.1\r\nHost: b\r\nContent-Length: %zu\r\n\r\n",
             fn, len);
    snprintf(invoke, sizeof invoke,
             "POST /v1/functions/%s/invoke HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n", fn);
    int fd = dial(port);
    for (int i = 0; i < n; i++) {
        int status = roundtrip_body(fd, put, so, len, out, sizeof out);
        if (status != 201 && status != 200) {
            fprintf(stderr, "deploy answered %d\n", status);
            return 1;
        }
        if (gap_ms) usleep((useconds_t)gap_ms * 1000);
        double t = now_us();
        status = roundtrip(fd, invoke, out, sizeof out);
        double dt = now_us() - t;
        if (status != 200) {
            fprintf(stderr, "invoke answered %d\n", status);
            return 1;
        }
        printf("%.1f\n", dt);
    }
    return 0;
}

/* The number in "\"name\":N" of a JSON text, or -1. */
static long field(const char *json, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(json, key);
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* Writes pid into dir/cgroup.procs; the microseconds it took. */
static double move_to(const char *dir, pid_t pid)
{
    char path[256], text[32];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    snprintf(text, sizeof text, "%d", (int)pid);
    double t = now_us();
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) {
        perror(path);
        exit(1);
    }
    close(fd);
    return now_us() - t;
}

/* What an instance's join of its memory cgroup costs after a pause: a
 * sleeping child moved between two cgroups of our own, n times. */
static int cgroup_moves(int n, int gap_ms)
{
    char dir[2][128];
    for (int i = 0; i < 2; i++) {
        snprintf(dir[i], sizeof dir[i], "/sys/fs/cgroup/memory/spate-bench-%d-%d", (int)getpid(),
                 i);
        if (mkdir(dir[i], 0755) != 0) {
            perror(dir[i]);
            return 1;
        }
    }
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    for (int i = 0; i < n; i++) {
        usleep((useconds_t)gap_ms * 1000);
        printf("%.1f\n", move_to(dir[i & 1], child));
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    for (int i = 0; i < 2; i++) rmdir(dir[i]);
    return 0;
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
    if (argc == 4 && strcmp(argv[1], "cgroup") == 0)
        return cgroup_moves(atoi(argv[2]), atoi(argv[3]));
    if (argc == 7 && strcmp(argv[1], "deployed") == 0)
        return deployed(atoi(argv[2]), argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
    int warm = argc == 6 && strcmp(argv[1], "warm") == 0;
    if (!warm && ((argc != 5 && argc != 6) || strcmp(argv[1], "invoke") != 0)) {
        fprintf(stderr, "usage: coldstart fork N | coldstart invoke PORT FUNCTION N [GAP_MS] | "
                        "coldstart warm PORT FUNCTION N GAP_MS | coldstart cgroup N GAP_MS | "
                        "coldstart deployed PORT FUNCTION OBJECT N GAP_MS\n");
        return 2;
    }
    int port = atoi(argv[2]), n = atoi(argv[4]), gap_ms = argc == 6 ? atoi(argv[5]) : 0;
    const char *fn = argv[3];
    char invoke[256], describe[256];
    snprintf(invoke, sizeof invoke,
             "POST /v1/functions/%s/invoke HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n", fn);
    snprintf(describe, sizeof describe, "GET /v1/functions/%s HTTP/1.1\r\nHost: b\r\n\r\n", fn);
    int fd = dial(port);
    static char out[65536];
    for (int i = 0; i < n; i++) {
        /* Wait until no instance is left: the next call must start one. */
        for (int tries = 0; !warm; tries++) {
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
        if (gap_ms) usleep((useconds_t)gap_ms * 1000);
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
