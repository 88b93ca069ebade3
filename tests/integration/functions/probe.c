/*
 * probe - a test function whose payload says what to do:
 *   crash | abort | exit | hang | fail | ret     misbehave in that way
 *   sleep:MS                                     sleep, then answer "slept"
 *   pid                                          the instance's process id
 *   env:NAME                                     the value of an environment variable
 *   req                                          request id, function, attempt, deadline
 *   big:N                                        N bytes of output
 *   print:N                                      N lines on stdout, then one on stderr,
 *                                                each naming the request
 *   anything else                                echoed back
 *
 * Environment: PRELOAD_SLEEP_MS makes spate_preload (so the deploy) take that
 * long, after it has created the file PRELOAD_MARK if that is set.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spate.h"

static int is(const spate_request *r, const char *cmd)
{
    size_t n = strlen(cmd);
    return r->payload_len >= n && memcmp(r->payload, cmd, n) == 0;
}

int spate_preload(void)
{
    const char *ms = getenv("PRELOAD_SLEEP_MS"), *mark = getenv("PRELOAD_MARK");
    if (!ms) return 0;
    if (mark) close(open(mark, O_WRONLY | O_CREAT, 0644));
    long n = strtol(ms, NULL, 10);
    struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    char out[512];
    int n;
    const char *p = req->payload;
    if (is(req, "crash")) {
        volatile int *x = NULL;
        *x = 1;
    }
    if (is(req, "abort")) abort();
    if (is(req, "exit")) exit(3);
    if (is(req, "hang"))
        for (;;) pause();
    if (is(req, "fail")) return spate_fail(res, "probe was asked to fail"), 1;
    if (is(req, "ret")) return 7;
    if (is(req, "sleep:")) {
        long ms = strtol(p + 6, NULL, 10);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return spate_write(res, "slept", 5);
    }
    if (is(req, "pid")) {
        n = snprintf(out, sizeof out, "%d", (int)getpid());
        return spate_write(res, out, (size_t)n);
    }
    if (is(req, "env:")) {
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)req->payload_len - 4, p + 4);
        const char *v = getenv(name);
        return spate_write(res, v ? v : "(unset)", strlen(v ? v : "(unset)"));
    }
    if (is(req, "req")) {
        n = snprintf(out, sizeof out, "%s %s %u %lld %s %s", req->request_id, req->function,
                     req->attempt, (long long)req->deadline_ms, req->topic ? req->topic : "-",
                     req->key ? req->key : "-");
        return spate_write(res, out, (size_t)n);
    }
    if (is(req, "print:")) {
        long lines = strtol(p + 6, NULL, 10);
        for (long i = 0; i < lines; i++)
            printf("line %ld of %s, padded to about a hundred bytes ..........................\n",
                   i, req->request_id);
        fprintf(stderr, "stderr of %s\n", req->request_id);
        return spate_write(res, req->request_id, strlen(req->request_id));
    }
    if (is(req, "big:")) {
        long len = strtol(p + 4, NULL, 10);
        char *b = malloc((size_t)len);
        if (!b) return spate_fail(res, "no memory"), 1;
        for (long i = 0; i < len; i++) b[i] = (char)('a' + i % 26);
        int rc = spate_write(res, b, (size_t)len);
        free(b);
        if (rc != 0) return spate_fail(res, "output too large"), 1;
        return 0;
    }
    return spate_write(res, req->payload, req->payload_len);
}
