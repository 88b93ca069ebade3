/*
 * publisher - the load generator of bench/events: publishes NDJSON batches
 * to spated over several keep-alive connections, one request in flight on
 * each, and checks every answer is 202.
 *
 *   publisher PORT TOPIC count MESSAGES BATCH CONNECTIONS SIZE
 *   publisher PORT TOPIC paced RATE SECONDS      (each message: send time, us)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port;
static const char *topic;
static long batches_left;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *batch_body;
static size_t batch_len;

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            perror("write");
            exit(1);
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Posts one batch and waits for the answer; exits unless it is 202. */
static void post(int fd, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /v1/topics/%s/messages HTTP/1.1\r\nHost: b\r\n"
                     "Content-Type: application/x-ndjson\r\nContent-Length: %zu\r\n\r\n",
                     topic, len);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
    char in[4096];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, in + got, sizeof in - 1 - got);
        if (r <= 0) {
            fprintf(stderr, "publisher: connection closed\n");
            exit(1);
        }
        got += (size_t)r;
        in[got] = '\0';
        char *end = strstr(in, "\r\n\r\n"), *cl = strstr(in, "Content-Length: ");
        if (end && cl && got >= (size_t)(end + 4 - in) + strtoul(cl + 16, NULL, 10)) break;
    }
    if (strncmp(in, "HTTP/1.1 202", 12) != 0) {
        fprintf(stderr, "publisher: %.200s\n", in);
        exit(1);
    }
}

static void *count_worker(void *arg)
{
    int fd = dial();
    for (;;) {
        pthread_mutex_lock(&mu);
        int go = batches_left-- > 0;
        pthread_mutex_unlock(&mu);
        if (!go) break;
        post(fd, batch_body, batch_len);
    }
    close(fd);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: publisher PORT TOPIC count MESSAGES BATCH CONNECTIONS SIZE\n"
                        "       publisher PORT TOPIC paced RATE SECONDS\n");
        return 2;
    }
    port = atoi(argv[1]);
    topic = argv[2];
    if (strcmp(argv[3], "count") == 0 && argc == 8) {
        long messages = atol(argv[4]);
        int batch = atoi(argv[5]), conns = atoi(argv[6]), size = atoi(argv[7]);
        batch_len = (size_t)batch * (size_t)(size + 1);
        batch_body = malloc(batch_len);
        for (int i = 0; i < batch; i++) {
            memset(batch_body + (size_t)i * (size + 1), 'x', (size_t)size);
            batch_body[(size_t)i * (size + 1) + size] = '\n';
        }
        batches_left = messages / batch;
        pthread_t th[64];
        double t0 = now_s();
        for (int i = 0; i < conns && i < 64; i++) pthread_create(&th[i], NULL, count_worker, NULL);
        for (int i = 0; i < conns && i < 64; i++) pthread_join(th[i], NULL);
        printf("RESULT published_s=%.3f\n", now_s() - t0);
        return 0;
    }
    if (strcmp(argv[3], "paced") == 0 && argc == 6) {
        int rate = atoi(argv[4]), secs = atoi(argv[5]);
        long total = (long)rate * secs, sent = 0;
        int fd = dial();
        char *body = malloc((size_t)rate * 32 + 64);
        double t0 = now_s();
        while (sent < total) {
            long due = (long)((now_s() - t0) * rate);
            if (due > total) due = total;
            /* body holds one second's messages: after a publish that took longer,
             * what is due goes in several batches (each stamped when it is sent). */
            if (due - sent > rate) due = sent + rate;
            if (due <= sent) {
                usleep(200);
                continue;
            }
            /* Everything due goes in one batch, stamped now. */
            size_t len = 0;
            long long stamp = wall_us();
            for (; sent < due; sent++) len += (size_t)sprintf(body + len, "%lld\n", stamp);
            post(fd, body, len);
        }
        printf("RESULT sent=%ld\n", sent);
        return 0;
    }
    fprintf(stderr, "publisher: bad arguments\n");
    return 2;
}
