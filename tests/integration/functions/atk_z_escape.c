/*
 * atk_z_escape - a hostile spate_preload whose children try to escape the
 * function's limits (tests/integration/test_attacks_sandbox.py): one leaves
 * the session and allocates 400 MB (the function has --memory 16), one
 * forks 10,000 processes, one just sleeps. Each writes what it did into
 * ATK_DIR: hog.pid and hog.done, bomb.pid and bomb.count, sleeper.pid.
 * ATK_PARTS names the children to start ("hog,bomb,sleeper" when unset).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spate.h"

static void note(const char *name, long value)
{
    const char *dir = getenv("ATK_DIR");
    char path[512], tmp[520], text[32];
    if (!dir) return;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    int n = snprintf(text, sizeof text, "%ld\n", value);
    if (write(fd, text, (size_t)n) != n) {
    }
    close(fd);
    rename(tmp, path); /* whole or not at all */
}

static void hog(void)
{
    setsid();
    note("hog.pid", getpid());
    size_t size = 400u << 20;
    char *p = malloc(size);
    if (!p) {
        note("hog.done", 0); /* refused: as good as killed */
        _exit(0);
    }
    for (size_t i = 0; i < size; i += 4096) p[i] = 1;
    note("hog.done", 400); /* all of it: the limit did not hold */
    for (;;) pause();
}

static void bomb(void)
{
    setsid();
    note("bomb.pid", getpid());
    long forked = 0;
    for (; forked < 10000; forked++) {
        pid_t pid = fork();
        if (pid < 0) break;
        if (pid == 0) {
            /* Gone by itself after a minute, so a run against a spated
             * without limits does not leave ten thousand behind for good. */
            sleep(60);
            _exit(0);
        }
    }
    note("bomb.count", forked);
    for (;;) pause();
}

static void sleeper(void)
{
    setsid();
    note("sleeper.pid", getpid());
    for (;;) pause();
}

int spate_preload(void)
{
    if (!getenv("ATK_DIR")) return 0;
    void (*children[])(void) = {hog, bomb, sleeper};
    const char *names[] = {"hog", "bomb", "sleeper"};
    const char *parts = getenv("ATK_PARTS");
    for (int i = 0; i < 3; i++) {
        if (parts && !strstr(parts, names[i])) continue;
        pid_t pid = fork();
        if (pid == 0) {
            signal(SIGCHLD, SIG_IGN); /* the bomb's children reap themselves */
            children[i]();
            _exit(0);
        }
    }
    return 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    return spate_write(res, "ok", 2);
}
