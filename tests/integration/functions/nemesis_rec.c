/*
 * nemesis_rec - the recording function of the nemesis (tests/integration/nemesis.py):
 * appends one line per call to the file $RECORD, after the call's work, so
 * a checker outside spated sees what ran, when, in which process and how often.
 *
 *     <topic or -> <key or -> <payload> <attempt> <start ns> <end ns> <pid>
 *
 * (CLOCK_MONOTONIC ns.) One write(2) of under PIPE_BUF bytes with O_APPEND:
 * lines of concurrent instances never interleave. SLEEP_US (environment)
 * is spent between start and end, so that calls overlap if they can. A
 * payload containing ":fail" fails the call (after recording it).
 */
#define _GNU_SOURCE
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
    return fd < 0;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    long long start = now_ns();
    if (sleep_us > 0) {
        struct timespec ts = {sleep_us / 1000000, (sleep_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    int len = (int)(req->payload_len > 160 ? 160 : req->payload_len);
    const char *p = (const char *)req->payload;
    char line[480];
    int n = snprintf(line, sizeof line, "%.100s %.100s %.*s %u %lld %lld %d\n",
                     req->topic ? req->topic : "-", req->key ? req->key : "-", len, len ? p : "-",
                     req->attempt, start, now_ns(), (int)getpid());
    if (n <= 0 || n >= (int)sizeof line || write(fd, line, (size_t)n) != n) _exit(9);
    if (memmem(p, req->payload_len, ":fail", 5))
        return spate_fail(res, "nemesis_rec was told to fail"), 1;
    return spate_write(res, "ok", 2);
}
