/* Unit tests for src/runtime/isolate/slots.c: which instance slots are kept
 * for the next instance. A slot stopped at its timeout (isolate_stop_forks:
 * pids.max 0) whose processes were all gone by its release was kept, and
 * every next instance that got it could not fork (Node.js: "bootstrap:
 * Cannot fork"). Needs root and cgroup v1's pids controller, as spated's
 * isolation does; says so and passes without them. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "runtime/isolate.h"
#include "test.h"

#define PIDS_MAX 64

static void read_control(const isolate_slot *s, const char *name, char *out, size_t cap)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", s->dirs[s->pids], name);
    out[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f) return;
    if (!fgets(out, (int)cap, f)) out[0] = '\0';
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

/* A child that joins the slot's pids cgroup, then forks when fork is set
 * (exit status 0 when that fork worked, 3 when it did not) or waits to be
 * killed. Returns its pid. */
static pid_t child_in(const isolate_slot *s, int fork_once)
{
    char procs[600];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", s->dirs[s->pids]);
    pid_t pid = fork();
    if (pid != 0) return pid;
    FILE *f = fopen(procs, "we");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) _exit(2);
    if (!fork_once) {
        pause();
        _exit(0);
    }
    pid_t grandchild = fork();
    if (grandchild < 0) _exit(3);
    if (grandchild == 0) _exit(0);
    waitpid(grandchild, NULL, 0);
    _exit(0);
}

/* Waits (at most 5 s) until the cgroup charges no task any more: a killed
 * process's threads leave pids.current only once they have exited. */
static int wait_uncharged(const isolate_slot *s)
{
    for (int i = 0; i < 500; i++) {
        char count[32];
        read_control(s, "pids.current", count, sizeof count);
        if (strcmp(count, "0") == 0) return 1;
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    return 0;
}

static void test_a_clean_slot_is_kept(void)
{
    isolate_slot *a = isolate_acquire(128, 0, 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", a->dirs[a->pids]);
    isolate_release(a);
    isolate_slot *b = isolate_acquire(128, 0, 0);
    CHECK_STR(b->dirs[b->pids], dir);
    isolate_release(b);
}

/* The instance is stopped as the pool stops one at its timeout: no more
 * forks, then the kill; its processes are gone (reaped, uncharged) before
 * the release, as they were with a Node.js instance behind an SQS trigger. */
static void test_a_slot_stopped_at_its_timeout_is_not_kept(void)
{
    isolate_slot *a = isolate_acquire(128, 0, 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", a->dirs[a->pids]);
    pid_t hung = child_in(a, 0);
    for (int i = 0; i < 500; i++) { /* until it has joined */
        char count[32];
        read_control(a, "pids.current", count, sizeof count);
        if (strcmp(count, "0") != 0) break;
        usleep(10000);
    }
    isolate_stop_forks(a);
    kill(hung, SIGKILL);
    waitpid(hung, NULL, 0);
    CHECK(wait_uncharged(a));
    isolate_release(a);

    isolate_slot *b = isolate_acquire(128, 0, 0);
    char max[32];
    read_control(b, "pids.max", max, sizeof max);
    CHECK_INT(atoi(max), PIDS_MAX);
    CHECK(strcmp(b->dirs[b->pids], dir) != 0);
    int status = -1;
    waitpid(child_in(b, 1), &status, 0);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), 0); /* 3: its fork was refused */
    CHECK(wait_uncharged(b));
    isolate_release(b);
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "  not root: no cgroups to test (passes)\n");
        return 0;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    if (isolate_init(&loop, "nobody", 0, PIDS_MAX, err, sizeof err) != 0) {
        fprintf(stderr, "isolate_init: %s\n", err);
        return 1;
    }
    isolate_slot *probe = isolate_acquire(128, 0, 0);
    int have_pids = probe && probe->pids >= 0;
    if (probe) isolate_release(probe);
    if (!have_pids) {
        fprintf(stderr, "  no writable pids cgroup: nothing to test (passes)\n");
    } else {
        RUN(test_a_clean_slot_is_kept);
        RUN(test_a_slot_stopped_at_its_timeout_is_not_kept);
    }
    isolate_cleanup();
    uv_run(&loop, UV_RUN_NOWAIT); /* the stale cgroups' timer closes */
    uv_loop_close(&loop);
    return TEST_RESULT();
}
