/*
 * peers.c - who may use an exec instance's Runtime API endpoint: a process of
 * that very instance, as its uid, found holding the connection's socket
 * (internal.h has who owns what).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/exec/internal.h"
#include "runtime/isolate.h"

/* The parent and session of process pid (/proc/PID/stat), or -1. */
static int stat_ids(pid_t pid, pid_t *ppid, pid_t *sid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* The name in parentheses may hold anything: read after its last ')'. */
    char *p = strrchr(line, ')');
    int pp, pgrp, sd;
    char state;
    if (!p || sscanf(p + 1, " %c %d %d %d", &state, &pp, &pgrp, &sd) != 4) return -1;
    *ppid = (pid_t)pp;
    *sid = (pid_t)sd;
    return 0;
}

/* Whether pid belongs to the instance whose bootstrap is leader: in its
 * session (uv_spawn made the bootstrap a session leader) or descended from
 * it. A process of another instance can do neither, even one that joined
 * this instance's cgroup. */
static int of_instance(pid_t pid, pid_t leader)
{
    pid_t ppid, sid;
    if (stat_ids(pid, &ppid, &sid) != 0) return 0;
    if (sid == leader || pid == leader) return 1;
    for (int depth = 0; depth < 64 && ppid > 1; depth++) {
        if (ppid == leader) return 1;
        if (stat_ids(ppid, &ppid, &sid) != 0) return 0;
    }
    return 0;
}

/* Whether process pid holds the socket "socket:[INODE]" among its
 * descriptors; each descriptor looked at costs one of *left, and the search
 * stops when none is left. */
static int holds_socket(pid_t pid, const char *want, uint32_t *left)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *de;
    while (!found && *left > 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        --*left;
        char link[64];
        ssize_t n = readlinkat(dirfd(d), de->d_name, link, sizeof link - 1);
        if (n <= 0) continue;
        link[n] = '\0';
        found = strcmp(link, want) == 0;
    }
    closedir(d);
    return found;
}

/* The next candidate process of instance e: from its pids cgroup, or
 * without one every process of uid; 0 at the end. Each costs one of *left. */
static pid_t next_candidate(FILE *procs, DIR *all, uid_t uid, uint32_t *left)
{
    long pid;
    if (*left == 0) return 0;
    --*left;
    if (procs) return fscanf(procs, "%ld", &pid) == 1 ? (pid_t)pid : 0;
    struct dirent *de;
    while (all && *left > 0 && (de = readdir(all))) {
        char *end;
        pid = strtol(de->d_name, &end, 10);
        struct stat st;
        if (*end || pid <= 0) continue;
        --*left;
        if (fstatat(dirfd(all), de->d_name, &st, 0) != 0) continue;
        if (st.st_uid == uid) return (pid_t)pid;
    }
    return 0;
}

/* The process of instance e that holds the socket, or 0; the bootstrap is
 * looked at first (most runtimes connect from it). At most *left /proc
 * entries are read; what was read is taken off it. */
static pid_t instance_holder(const exec_instance *e, uid_t uid, uint64_t inode, uint32_t *left)
{
    char want[48];
    snprintf(want, sizeof want, "socket:[%llu]", (unsigned long long)inode);
    pid_t leader = e->proc.pid;
    if (holds_socket(leader, want, left)) return leader;
    const isolate_slot *iso = e->base.iso;
    FILE *procs = NULL;
    if (iso && iso->pids >= 0) {
        char path[600];
        snprintf(path, sizeof path, "%s/cgroup.procs", iso->dirs[iso->pids]);
        procs = fopen(path, "re");
    }
    DIR *all = procs ? NULL : opendir("/proc");
    pid_t pid, found = 0;
    while (!found && (pid = next_candidate(procs, all, uid, left)) > 0)
        if (pid != leader && holds_socket(pid, want, left) && of_instance(pid, leader)) found = pid;
    if (procs) fclose(procs);
    if (all) closedir(all);
    return found;
}

/* How many /proc entries the next check of x's instances may read: the
 * version's allowance refilled at SPATE_RUNTIME_API_CHECK_RATE a second,
 * at most SPATE_RUNTIME_API_CHECK_MAX. */
static uint32_t check_allowance(exec_version *x)
{
    uint64_t now = clock_mono_ns() / 1000000;
    uint64_t gained = (now - x->check_at_ms) * SPATE_RUNTIME_API_CHECK_RATE / 1000;
    if (gained > 0) {
        uint64_t left = x->check_left + gained;
        x->check_left =
            left > SPATE_RUNTIME_API_CHECK_RATE ? SPATE_RUNTIME_API_CHECK_RATE : (uint32_t)left;
        x->check_at_ms = now;
    }
    return x->check_left < SPATE_RUNTIME_API_CHECK_MAX ? x->check_left
                                                       : SPATE_RUNTIME_API_CHECK_MAX;
}

static int check_peers = 1;

void exec_api_check_peers(int on)
{
    check_peers = on;
}

/* Once per accepted connection: only a process of this very instance, as
 * its uid, may use its endpoint (another uid could take its invocations,
 * another instance of the same function too). Costs a scan of the
 * instance's processes' descriptors (docs/functions.md has the figure). */
int exec__api_connect(http_peer *peer, const char *client, void *data)
{
    exec_instance *e = data;
    if (!check_peers) return 0;
    const isolate_config *iso = isolate_get();
    uid_t want = iso->drop ? e->base.iso->owner : geteuid();
    uint64_t t0 = clock_mono_ns();
    char why[200];
    pid_t pid = 0;
    uint32_t allowed = 0, left = 0;
    if (!peer->known) {
        snprintf(why, sizeof why, "its uid is unknown");
    } else if (peer->uid != want) {
        snprintf(why, sizeof why, "uid %u is not the instance's (%u)", (unsigned)peer->uid,
                 (unsigned)want);
    } else if (!peer->inode || (allowed = left = check_allowance(e->ver)) == 0) {
        snprintf(why, sizeof why,
                 "uid %u, but the function's budget for checking Runtime API clients is spent",
                 (unsigned)peer->uid);
    } else if (!(pid = instance_holder(e, want, peer->inode, &left))) {
        snprintf(why, sizeof why,
                 "uid %u, but no process of this instance (bootstrap pid %d) holds its socket "
                 "%llu%s",
                 (unsigned)peer->uid, (int)e->proc.pid, (unsigned long long)peer->inode,
                 left ? "" : " among the descriptors it may look at");
    }
    e->ver->check_left -= allowed - left;
    if (pid) {
        log_debug("runtime api connection from pid %d checked in %llu us fn=%s", (int)pid,
                  (unsigned long long)((clock_mono_ns() - t0) / 1000), e->ver->function);
        return 0;
    }
    /* Said for the 1st, 2nd, 4th, 8th, ... so that a flood cannot fill the log. */
    e->refused++;
    if ((e->refused & (e->refused - 1)) == 0)
        log_warn("refused a Runtime API connection from %s: %s (%u refused so far) fn=%s", client,
                 why, e->refused, e->ver->function);
    return -1;
}
