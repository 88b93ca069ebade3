/*
 * isolate.h - spated's part of isolating instances: the unprivileged user they
 * run as, and for each instance its own cgroups (memory, pids, cpu; cgroup v1
 * where its controllers are writable, v2 where that is what the host has) and
 * its own temporary directory, created before it starts and removed after it
 * ends. What the host does not allow degrades with one log line at start-up.
 * The runner (runner/sandbox.h) does the rest inside the process.
 */
#ifndef SPATE_ISOLATE_H
#define SPATE_ISOLATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct isolate_config {
    int drop; /* spated is root: instances run as uid/gid */
    uid_t uid;
    gid_t gid;
    char user[64];
    int cgroups; /* per-instance cgroups are available */
    uint32_t pids_max;
} isolate_config;

/* Once at start-up: resolves run_as (used only when spated is root), checks
 * cgroups, creates spate's cgroup and temporary roots for this process.
 * On error err says why (an unknown user). */
int isolate_init(const char *run_as, uint32_t pids_max, char *err, size_t errcap);
const isolate_config *isolate_get(void);
/* Removes this process's cgroup and temporary roots (at exit). */
void isolate_cleanup(void);

/* 0 when the user instances run as can reach path (search permission on
 * every directory on the way); else why says where it stops. */
int isolate_reachable(const char *path, char *why, size_t cap);

/* One instance's resources. */
typedef struct isolate_slot {
    char cgroups[1600]; /* "dir|dir|dir" to join, "" if none */
    char tmpdir[256];
    char memory_dir[512]; /* "" if none: for the OOM check */
    int ndirs;
    char dirs[3][512];
} isolate_slot;

/* Creates the cgroups (memory limit, pids limit, cpu quota if cpu_millis) and
 * the temporary directory, owned by the instance's user. Best effort: what
 * fails is logged and left out, the instance still starts. */
void isolate_prepare(isolate_slot *s, const char *function, uint64_t instance, uint32_t memory_mb,
                     uint32_t cpu_millis);
/* Removes them. Returns 1 when the memory cgroup killed a process for memory. */
int isolate_release(isolate_slot *s);

#endif
