/*
 * cgroups.c - the cgroup file system as isolation uses it: control files,
 * killing what a cgroup holds, removing it, and retrying from the loop the
 * ones still busy (internal.h has who owns what).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "common/limits.h"
#include "common/log.h"
#include "runtime/isolate/internal.h"

/* Cgroups that were still busy when their instance ended, retried later. */
static struct {
    char *dir[SPATE_STALE_CGROUPS_MAX];
    uv_timer_t timer; /* retries them while there are any */
    int timer_on;
} stale;

int isolate__write_file(const char *dir, const char *name, const char *value)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, value, strlen(value));
    close(fd);
    return n == (ssize_t)strlen(value) ? 0 : -1;
}

int isolate__read_file(const char *dir, const char *name, char *out, size_t cap)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    if (n < 0) return -1;
    out[n] = '\0';
    return 0;
}

int isolate__kill_all(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    FILE *f = fopen(path, "re");
    if (!f) return 1;
    int pid, empty = 1;
    while (fscanf(f, "%d", &pid) == 1) {
        kill(pid, SIGKILL);
        empty = 0;
    }
    fclose(f);
    return empty;
}

/* Kills what is left in a cgroup and removes it; 0 when it is still busy
 * (a killed process leaves its cgroup only once it has exited). Waits a
 * little for that only when wait is set: never on the event loop. */
int isolate__remove_cgroup(const char *dir, int wait)
{
    for (int round = 0; round < (wait ? 20 : 1); round++) {
        if (rmdir(dir) == 0 || errno == ENOENT) return 1;
        if (errno != EBUSY) return 1; /* nothing more to do about it */
        isolate__kill_all(dir);
        if (rmdir(dir) == 0) return 1;
        if (wait) usleep(1000);
    }
    return 0;
}

void isolate__retry_stale(int wait)
{
    int left = 0;
    for (int i = 0; i < SPATE_STALE_CGROUPS_MAX; i++) {
        if (stale.dir[i] && isolate__remove_cgroup(stale.dir[i], wait)) {
            free(stale.dir[i]);
            stale.dir[i] = NULL;
        }
        left += stale.dir[i] != NULL;
    }
    if (!left && stale.timer_on) {
        uv_timer_stop(&stale.timer);
        stale.timer_on = 0;
    }
}

static void on_stale_timer(uv_timer_t *t)
{
    isolate__retry_stale(0);
}

void isolate__remember_stale(const char *dir)
{
    for (int i = 0; i < SPATE_STALE_CGROUPS_MAX; i++)
        if (!stale.dir[i]) {
            stale.dir[i] = strdup(dir);
            if (isolate__host.loop && !stale.timer_on) {
                uv_timer_start(&stale.timer, on_stale_timer, 20, 20);
                stale.timer_on = 1;
            }
            return;
        }
    log_warn("cannot remove cgroup %s: still busy", dir);
}

void isolate__stale_init(void)
{
    uv_timer_init(isolate__host.loop, &stale.timer);
    uv_unref((uv_handle_t *)&stale.timer); /* never keeps spated running */
}

void isolate__stale_close(void)
{
    if (isolate__host.loop) uv_close((uv_handle_t *)&stale.timer, NULL);
}
