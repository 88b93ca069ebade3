/*
 * dispatch - the client (and the peer server) of bench/scale/dispatch.
 *
 *   dispatch load PORT PATH INFLIGHT SECONDS SLEEP_MS
 *       keeps INFLIGHT requests in flight (one keep-alive connection each,
 *       a new POST PATH as soon as the previous one is answered) for
 *       SECONDS, and prints the overhead of each answer, its time minus
 *       SLEEP_MS: "n p50 p99 max errors" in microseconds
 *   dispatch burst PORT PATH N
 *       sends N requests at once (N connections, all written before any is
 *       read) and prints "n p50 p99 max errors" of their answer times (us)
 *   dispatch wake N SECONDS SLEEP_MS
 *       the other peer: N processes, each sleeping SLEEP_MS in a loop for
 *       SECONDS; prints "n p50 p99 max 0" of how late each woke (us): what
 *       the kernel charges N processes' sleeps on this machine, the floor
 *       under spated's N instances (without their frames and sockets)
 *   dispatch serve PORT SLEEP_MS
 *       the peer: a bare epoll HTTP server answering each request SLEEP_MS
 *       after it came (what an event loop and the kernel cost, nothing more)
 *   dispatch relay PORT N SLEEP_MS
 *       the third peer: the same server handing each request to one of N
 *       worker processes over a socketpair; the worker sleeps SLEEP_MS and
 *       answers over it, and the server answers the client: the wake-ups of
 *       a dispatcher in front of N processes (spated's shape), none of its
 *       work
 *
 * One thread, epoll: the client's own cost stays out of the figures as far
 * as a C client can keep it. Answers are read whole (headers and their
 * Content-Length, at most 64 KiB); a status other than 200 counts as an
 * error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ANSWER_MAX (64 * 1024)
#define CONN_MAX 20000

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

typedef struct conn {
    int fd;
    double sent;
    size_t got;
    char buf[ANSWER_MAX];
} conn;

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static char request[512];
static size_t request_len;

static void send_request(conn *c)
{
    c->got = 0;
    c->sent = now_us();
    if (write(c->fd, request, request_len) != (ssize_t)request_len) die("write");
}

/* 1: c holds a whole answer (status in *status); 0: not yet; -1: closed. */
static int read_answer(conn *c, int *status)
{
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->got, sizeof c->buf - 1 - c->got);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) return -1;
        c->got += (size_t)n;
        if (c->got >= sizeof c->buf - 1) {
            fprintf(stderr, "answer larger than %d bytes\n", ANSWER_MAX);
            exit(1);
        }
    }
    c->buf[c->got] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return 0;
    char *cl = strcasestr(c->buf, "Content-Length: ");
    size_t body = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
    if (c->got < (size_t)(end + 4 - c->buf) + body) return 0;
    *status = atoi(c->buf + 9);
    return 1;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(double *v, size_t n, size_t errors)
{
    if (n == 0) {
        printf("0 0 0 0 %zu\n", errors);
        return;
    }
    qsort(v, n, sizeof *v, cmp);
    size_t i50 = (n - 1) * 50 / 100, i99 = (n - 1) * 99 / 100;
    printf("%zu %.0f %.0f %.0f %zu\n", n, v[i50], v[i99], v[n - 1], errors);
}

static void raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

/* Opens n connections, registered with ep, non-blocking; with send, each
 * sends its first request at once (spated closes the oldest of the
 * connections that have not sent a whole request, past
 * --max-new-connections). */
static conn *open_conns(int ep, int port, size_t n, int send)
{
    conn *cs = calloc(n, sizeof *cs);
    if (!cs) die("calloc");
    for (size_t i = 0; i < n; i++) {
        cs[i].fd = dial(port);
        fcntl(cs[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) != 0) die("epoll_ctl");
        if (send) send_request(&cs[i]);
    }
    return cs;
}

static void set_request(const char *path)
{
    int n = snprintf(request, sizeof request,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", path);
    if (n <= 0 || (size_t)n >= sizeof request) {
        fprintf(stderr, "path too long\n");
        exit(2);
    }
    request_len = (size_t)n;
}

static int run_load(int port, const char *path, size_t inflight, double seconds, double sleep_ms)
{
    set_request(path);
    int ep = epoll_create1(0);
    open_conns(ep, port, inflight, 1); /* freed at exit */
    size_t cap = 1 << 20, n = 0, errors = 0;
    double *v = malloc(cap * sizeof *v);
    if (!v) die("malloc");
    double end = now_us() + seconds * 1e6;
    struct epoll_event evs[256];
    size_t open = inflight;
    while (open > 0) {
        int k = epoll_wait(ep, evs, 256, 1000);
        if (k < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < k; i++) {
            conn *c = evs[i].data.ptr;
            int status;
            int r = read_answer(c, &status);
            if (r == 0) continue;
            if (r < 0) {
                fprintf(stderr, "connection closed by the server\n");
                exit(1);
            }
            double t = now_us();
            if (status != 200) errors++;
            if (n < cap) v[n++] = t - c->sent - sleep_ms * 1000;
            if (t < end) {
                send_request(c);
            } else {
                close(c->fd);
                open--;
            }
        }
    }
    report(v, n, errors);
    return 0;
}

static int run_burst(int port, const char *path, size_t count)
{
    set_request(path);
    int ep = epoll_create1(0);
    conn *cs = open_conns(ep, port, count, 0);
    double *v = calloc(count, sizeof *v);
    if (!v) die("calloc");
    size_t n = 0, errors = 0;
    for (size_t i = 0; i < count; i++) send_request(&cs[i]);
    struct epoll_event evs[256];
    while (n + errors < count) {
        int k = epoll_wait(ep, evs, 256, 60000);
        if (k == 0) {
            fprintf(stderr, "no answer for 60 s\n");
            exit(1);
        }
        if (k < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < k; i++) {
            conn *c = evs[i].data.ptr;
            int status;
            int r = read_answer(c, &status);
            if (r == 0) continue;
            if (r < 0 || status != 200) {
                errors++;
            } else {
                v[n++] = now_us() - c->sent;
            }
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
        }
    }
    report(v, n, errors);
    return 0;
}

/* --- The peer: answers each request sleep_ms after it came ---------------- */

typedef struct pending {
    int fd;
    double due;
} pending;

static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* The servers' epoll ids (data.u64): a connection's fd, or one of these. */
#define ID_LISTENER (~0ull)
#define ID_TIMER (~1ull)

/* A listener on 127.0.0.1:port in a new epoll set (*ep), as ID_LISTENER. */
static int listen_epoll(int port, int *ep)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 4096) != 0) die("listen");
    fcntl(ls, F_SETFL, O_NONBLOCK);
    *ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.u64 = ID_LISTENER};
    epoll_ctl(*ep, EPOLL_CTL_ADD, ls, &lev);
    return ls;
}

/* Every connection waiting on ls, non-blocking, into ep by its fd. */
static void accept_all(int ls, int ep)
{
    int fd, one = 1;
    while ((fd = accept(ls, NULL, NULL)) >= 0) {
        if (fd >= CONN_MAX) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

static int run_serve(int port, double sleep_ms)
{
    int ep, ls = listen_epoll(port, &ep);
    /* Every request waits the same time, so they fall due in arrival order:
     * a FIFO ring is the whole timer wheel. */
    pending *ring = calloc(CONN_MAX, sizeof *ring);
    size_t head = 0, count = 0;
    static char buf[ANSWER_MAX];
    if (!ring) die("calloc");
    /* The head's due time on a timerfd: the kernel's timer, as the
     * function's nanosleep uses (epoll_wait's timeout counts whole ms). */
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = ID_TIMER};
    if (tfd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) != 0) die("timerfd");
    double armed = 0;
    struct epoll_event evs[256];
    for (;;) {
        if (count && ring[head].due != armed) {
            armed = ring[head].due;
            struct itimerspec its = {
                .it_value = {(time_t)(armed / 1e6),
                             (long)((armed - (time_t)(armed / 1e6) * 1e6) * 1e3)}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int k = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < k; i++) {
            if (evs[i].data.u64 == ID_TIMER) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof ticks) < 0) ticks = 0;
                armed = 0;
                continue;
            }
            if (evs[i].data.u64 == ID_LISTENER) {
                accept_all(ls, ep);
                continue;
            }
            int fd = (int)evs[i].data.u64;
            ssize_t n = read(fd, buf, sizeof buf - 1);
            if (n <= 0) {
                close(fd);
                continue;
            }
            /* Bodies are empty: each "\r\n\r\n" ends a request. */
            buf[n] = '\0';
            for (char *p = buf; (p = strstr(p, "\r\n\r\n")); p += 4) {
                if (count == CONN_MAX) die("too many pending");
                ring[(head + count++) % CONN_MAX] = (pending){fd, now_us() + sleep_ms * 1000};
            }
        }
        double t = now_us();
        if (count && ring[head].due <= t) armed = 0;
        while (count && ring[head].due <= t) {
            if (write(ring[head].fd, answer, sizeof answer - 1) < 0) close(ring[head].fd);
            head = (head + 1) % CONN_MAX;
            count--;
        }
    }
    return 0;
}

static int run_wake(size_t n, double seconds, double sleep_ms)
{
    size_t per = (size_t)(seconds * 1000 / sleep_ms) + 2;
    double *late = mmap(NULL, n * per * sizeof *late, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (late == MAP_FAILED) die("mmap");
    for (size_t i = 0; i < n * per; i++) late[i] = -1;
    double end = now_us() + seconds * 1e6;
    for (size_t c = 0; c < n; c++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid > 0) continue;
        long us = (long)(sleep_ms * 1000);
        for (size_t k = 0; k < per && now_us() < end; k++) {
            double t = now_us();
            struct timespec d = {us / 1000000, (us % 1000000) * 1000};
            nanosleep(&d, NULL);
            late[c * per + k] = now_us() - t - sleep_ms * 1000;
        }
        _exit(0);
    }
    while (wait(NULL) > 0) {
    }
    size_t m = 0;
    for (size_t i = 0; i < n * per; i++)
        if (late[i] >= 0) late[m++] = late[i];
    report(late, m, 0);
    return 0;
}

/* A worker of run_relay: a byte in, the sleep, the byte back, until EOF. */
static void relay_worker(int fd, double sleep_ms)
{
    long us = (long)(sleep_ms * 1000);
    char b;
    while (read(fd, &b, 1) == 1) {
        struct timespec d = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&d, NULL);
        if (write(fd, &b, 1) != 1) break;
    }
    _exit(0);
}

static int run_relay(int port, size_t n, double sleep_ms)
{
    int *wfd = calloc(n, sizeof *wfd), *owner = calloc(n, sizeof *owner);
    size_t *free_w = calloc(n, sizeof *free_w), nfree = 0;
    int *waiting = calloc(CONN_MAX, sizeof *waiting);
    size_t whead = 0, wcount = 0;
    if (!wfd || !owner || !free_w || !waiting) die("calloc");
    for (size_t w = 0; w < n; w++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            close(sv[0]);
            relay_worker(sv[1], sleep_ms);
        }
        close(sv[1]);
        wfd[w] = sv[0];
        free_w[nfree++] = w;
    }
    /* Worker w is CONN_MAX + w. */
    int ep, ls = listen_epoll(port, &ep);
    for (size_t w = 0; w < n; w++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = CONN_MAX + w};
        epoll_ctl(ep, EPOLL_CTL_ADD, wfd[w], &ev);
    }
    static char buf[ANSWER_MAX];
    struct epoll_event evs[256];
    for (;;) {
        int k = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < k; i++) {
            uint64_t id = evs[i].data.u64;
            if (id == ID_LISTENER) {
                accept_all(ls, ep);
                continue;
            }
            if (id >= CONN_MAX) { /* a worker's answer */
                size_t w = id - CONN_MAX;
                char b;
                if (read(wfd[w], &b, 1) != 1) die("worker");
                if (write(owner[w], answer, sizeof answer - 1) < 0) close(owner[w]);
                if (wcount) {
                    owner[w] = waiting[whead];
                    whead = (whead + 1) % CONN_MAX;
                    wcount--;
                    if (write(wfd[w], "r", 1) != 1) die("worker");
                } else {
                    free_w[nfree++] = w;
                }
                continue;
            }
            int fd = (int)id;
            ssize_t got = read(fd, buf, sizeof buf - 1);
            if (got <= 0) {
                close(fd);
                continue;
            }
            buf[got] = '\0';
            for (char *p = buf; (p = strstr(p, "\r\n\r\n")); p += 4) {
                if (nfree) {
                    size_t w = free_w[--nfree];
                    owner[w] = fd;
                    if (write(wfd[w], "r", 1) != 1) die("worker");
                } else {
                    if (wcount == CONN_MAX) die("too many waiting");
                    waiting[(whead + wcount++) % CONN_MAX] = fd;
                }
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    raise_nofile();
    if (argc == 7 && strcmp(argv[1], "load") == 0) {
        size_t inflight = strtoul(argv[4], NULL, 10);
        if (inflight == 0 || inflight > CONN_MAX) return 2;
        return run_load(atoi(argv[2]), argv[3], inflight, atof(argv[5]), atof(argv[6]));
    }
    if (argc == 5 && strcmp(argv[1], "burst") == 0) {
        size_t n = strtoul(argv[4], NULL, 10);
        if (n == 0 || n > CONN_MAX) return 2;
        return run_burst(atoi(argv[2]), argv[3], n);
    }
    if (argc == 5 && strcmp(argv[1], "wake") == 0) {
        size_t n = strtoul(argv[2], NULL, 10);
        if (n == 0 || n > CONN_MAX) return 2;
        return run_wake(n, atof(argv[3]), atof(argv[4]));
    }
    if (argc == 4 && strcmp(argv[1], "serve") == 0) return run_serve(atoi(argv[2]), atof(argv[3]));
    if (argc == 5 && strcmp(argv[1], "relay") == 0) {
        size_t n = strtoul(argv[3], NULL, 10);
        if (n == 0 || n > CONN_MAX) return 2;
        return run_relay(atoi(argv[2]), n, atof(argv[4]));
    }
    fprintf(stderr, "usage: dispatch load PORT PATH INFLIGHT SECONDS SLEEP_MS\n"
                    "       dispatch burst PORT PATH N\n"
                    "       dispatch wake N SECONDS SLEEP_MS\n"
                    "       dispatch serve PORT SLEEP_MS\n"
                    "       dispatch relay PORT N SLEEP_MS\n");
    return 2;
}
