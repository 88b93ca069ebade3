/*
 * atk_c_confine - a hostile native function for the confinement attacks
 * (test_attacks_confinement.py). The payload says what to do:
 *
 *   read:PATH     answers the file's first bytes, or "error: WHY"
 *   write:PATH    writes "x" into the file: "ok", or "error: WHY"
 *   fill:PATH     writes 1 MB blocks until that fails: "filled N MB: WHY"
 *   keep:PATH:MB  writes MB megabytes into the file and leaves it there
 *   mem:MB        allocates and touches MB megabytes, frees them: "ok"
 *   sleep:MS      sleeps, then answers "slept"
 *   pid | uid     the instance's process id, its uid
 *   helper        forks a helper that leaves the instance's process group
 *                 and, forever, moves itself into any spate cgroup it can
 *                 write to that is empty (a kept slot) or else not its
 *                 instance's (another instance's of the function), to
 *                 outlive its instance; answers the helper's pid
 *   mount         tries to mount a tmpfs on /tmp again: "ok" or "error: WHY"
 *   unshare       tries to make a user and mount namespace: the same
 *   caps          answers the CapEff line of /proc/self/status
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "spate.h"

static int is(const spate_request *r, const char *cmd, const char **arg)
{
    size_t n = strlen(cmd);
    if (r->payload_len < n || memcmp(r->payload, cmd, n) != 0) return 0;
    static char rest[512];
    snprintf(rest, sizeof rest, "%.*s", (int)(r->payload_len - n), (const char *)r->payload + n);
    if (arg) *arg = rest;
    return 1;
}

static int say(spate_response *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int say(spate_response *res, const char *fmt, ...)
{
    char out[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, sizeof out, fmt, ap);
    va_end(ap);
    return spate_write(res, out, (size_t)n);
}

/* Whether the cgroup.procs text holds pid. */
static int holds(const char *text, pid_t pid)
{
    for (const char *p = text; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (v == pid) return 1;
        p = end;
    }
    return 0;
}

static void __attribute__((noreturn)) helper_loop(pid_t instance)
{
    for (;;) {
        glob_t g;
        if (glob("/sys/fs/cgroup/*/spate/*/*/cgroup.procs", 0, NULL, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++) {
                char text[4096];
                int rd = open(g.gl_pathv[i], O_RDONLY);
                ssize_t n = rd < 0 ? -1 : read(rd, text, sizeof text - 1);
                if (rd >= 0) close(rd);
                if (n < 0) continue;
                text[n] = '\0';
                if (holds(text, getpid()) || holds(text, instance)) continue;
                int fd = open(g.gl_pathv[i], O_WRONLY);
                if (fd >= 0) {
                    if (write(fd, "0", 1) < 0) {
                    }
                    close(fd);
                }
            }
            globfree(&g);
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

int spate_handler(const spate_request *req, spate_response *res)
{
    const char *a;
    static char block[1 << 20];
    if (is(req, "read:", &a)) {
        char buf[2048];
        int fd = open(a, O_RDONLY);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf);
        int e = errno;
        if (fd >= 0) close(fd);
        if (n < 0) return say(res, "error: %s", strerror(e));
        return spate_write(res, buf, (size_t)n);
    }
    if (is(req, "write:", &a)) {
        int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int rc = fd < 0 ? -1 : (int)write(fd, "x", 1);
        int e = errno;
        if (fd >= 0) close(fd);
        return rc == 1 ? say(res, "ok") : say(res, "error: %s", strerror(e));
    }
    if (is(req, "fill:", &a)) {
        int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        long n = 0;
        memset(block, 'f', sizeof block);
        while (fd >= 0 && write(fd, block, sizeof block) == (ssize_t)sizeof block) n++;
        int e = errno;
        if (fd >= 0) close(fd);
        return say(res, "filled %ld MB: %s", n, strerror(e));
    }
    if (is(req, "keep:", &a)) {
        char path[256];
        long mb = 0;
        const char *colon = strrchr(a, ':');
        if (!colon) return spate_fail(res, "keep:PATH:MB"), 1;
        snprintf(path, sizeof path, "%.*s", (int)(colon - a), a);
        mb = atol(colon + 1);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        memset(block, 'k', sizeof block);
        long n = 0;
        while (fd >= 0 && n < mb && write(fd, block, sizeof block) == (ssize_t)sizeof block) n++;
        int e = errno;
        if (fd >= 0) close(fd);
        return n == mb ? say(res, "ok") : say(res, "error after %ld MB: %s", n, strerror(e));
    }
    if (is(req, "mem:", &a)) {
        size_t len = (size_t)atol(a) << 20;
        char *p = malloc(len);
        if (!p) return say(res, "error: malloc");
        for (size_t i = 0; i < len; i += 4096) p[i] = 1;
        free(p);
        return say(res, "ok");
    }
    if (is(req, "sleep:", &a)) {
        long ms = atol(a);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return say(res, "slept");
    }
    if (is(req, "pid", NULL)) return say(res, "%d", (int)getpid());
    if (is(req, "uid", NULL)) return say(res, "%d", (int)getuid());
    if (is(req, "helper", NULL)) {
        int p[2];
        if (pipe(p) != 0) return say(res, "error: pipe");
        pid_t instance = getpid();
        pid_t pid = fork();
        if (pid == 0) {
            setsid(); /* out of the instance's process group */
            pid_t me = getpid();
            if (write(p[1], &me, sizeof me) < 0) _exit(1);
            close(p[0]);
            close(p[1]);
            helper_loop(instance);
        }
        close(p[1]);
        pid_t helper = -1;
        if (read(p[0], &helper, sizeof helper) != sizeof helper) helper = -1;
        close(p[0]);
        return say(res, "%d", (int)helper);
    }
    if (is(req, "mount", NULL)) {
        if (mount("tmpfs", "/tmp", "tmpfs", 0, NULL) != 0)
            return say(res, "error: %s", strerror(errno));
        return say(res, "ok");
    }
    if (is(req, "unshare", NULL)) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
            return say(res, "error: %s", strerror(errno));
        return say(res, "ok");
    }
    if (is(req, "caps", NULL)) {
        char buf[4096];
        int fd = open("/proc/self/status", O_RDONLY);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
        if (fd >= 0) close(fd);
        if (n < 0) return say(res, "error");
        buf[n] = '\0';
        char *line = strstr(buf, "CapEff:");
        if (!line) return say(res, "error");
        line[strcspn(line, "\n")] = '\0';
        return say(res, "%s", line);
    }
    return spate_fail(res, "unknown command"), 1;
}
