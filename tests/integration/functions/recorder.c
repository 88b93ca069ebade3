/*
 * recorder - a test function that writes every delivery to a file outside
 * spated, so tests can see exactly what ran, when, and how often.
 *
 * Environment: RECORD (the file, required), SLEEP_US (time spent per call),
 * INIT_SLEEP_MS (time spent in spate_init, after it wrote "I <realtime us>").
 * A payload "sleep:MS:..." spends MS milliseconds instead.
 * Each call appends two lines, at its start and at its end:
 *     S <payload> <attempt> <key or -> <monotonic us>
 *     E <payload> <attempt> <key or -> <monotonic us>
 * A payload starting with "fail" fails the call (after recording it).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spate.h"

static int fd = -1;
static long sleep_us;

int spate_init(void)
{
    const char *path = getenv("RECORD");
    if (!path) return 1;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    const char *s = getenv("SLEEP_US");
    sleep_us = s ? strtol(s, NULL, 10) : 0;
    const char *init_ms = getenv("INIT_SLEEP_MS");
    if (fd >= 0 && init_ms) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        char line[64];
        int n = snprintf(line, sizeof line, "I %lld\n",
                         (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000);
        if (write(fd, line, (size_t)n) != n) return 1;
        long ms = strtol(init_ms, NULL, 10);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    return fd < 0;
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void record(char what, const spate_request *req)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%c %.*s %u %s %lld\n", what,
                     (int)(req->payload_len > 200 ? 200 : req->payload_len),
                     (const char *)req->payload, req->attempt, req->key ? req->key : "-", now_us());
    if (write(fd, line, (size_t)n) != n) _exit(9);
}

int spate_handler(const spate_request *req, spate_response *res)
{
    record('S', req);
    long us = sleep_us;
    if (req->payload_len > 6 && memcmp(req->payload, "sleep:", 6) == 0)
        us = strtol((const char *)req->payload + 6, NULL, 10) * 1000;
    if (us > 0) {
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    record('E', req);
    if (req->payload_len >= 4 && memcmp(req->payload, "fail", 4) == 0)
        return spate_fail(res, "recorder was told to fail"), 1;
    return spate_write(res, "ok", 2);
}
