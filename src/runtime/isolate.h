/*
 * isolate.h - spated's part of isolating instances: the unprivileged users they
 * run as — each function its own uid, so that no function can signal, trace
 * or read another's processes and files — and for each instance its own cgroups (memory, pids, cpu;
 * cgroup v1 where its controllers are writable) and its own temporary directory, ready before it
 * starts and emptied after it ends. What the host does not allow degrades with one log line at
 * start-up. The runner (runner/sandbox.h) does the rest inside the process.
 * While spated runs it holds a cgroup hierarchy mounted with favordynmods, so
 * that joining a cgroup after a pause never waits an RCU grace period
 * (isolate/favor.c).
 *
 * Creating and removing cgroups costs about 0.2 ms per instance, as much as
 * the fork itself; so the slots of instances that ended cleanly are kept
 * (emptied, their limits rewritten) for the next instance of any function.
 */
#ifndef SPATE_ISOLATE_H
#define SPATE_ISOLATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common/limits.h"

typedef struct isolate_config {
    int drop;       /* spated is root: instances run as unprivileged users */
    uid_t uid;      /* of --run-as: every function's when uid_base is 0 */
    gid_t gid;      /* of --run-as: every function's group */
    uid_t uid_base; /* functions get uid_base + 0, 1, 2, ... */
    char user[64];
    int cgroups; /* per-instance memory cgroups are available */
    /* spated holds a cgroup hierarchy mounted with favordynmods: joining a
     * cgroup never waits an RCU grace period (isolate/favor.c). */
    int favor_dynmods;
    uint32_t pids_max;
    /* Mount namespaces work (spated is root and the kernel lets an
     * unprivileged process make a user namespace): each instance sees the
     * host read-only, its code at /var/task and has a private tmpfs /tmp and
     * /dev/shm, an IPC namespace of its own (System V and POSIX IPC die with
     * it), and no temporary directory on the host. Else those directories,
     * as before, and the host as writable as file permissions make it. */
    int mount_ns;
    /* The operator's --writable paths, left writable in every instance's
     * namespace (spate-runner --writable); NULL-terminated. */
    const char *writable[SPATE_WRITABLE_MAX + 1];
} isolate_config;

/* Once at start-up: resolves run_as (used only when spated is root); with
 * uid_base 0 every function runs as that user, else each function gets its
 * own uid from uid_base on (and run_as's group). Checks
 * cgroups, creates spate's cgroup and temporary roots for this process and
 * removes those of spated processes that are gone. On error err says why. */
int isolate_init(uv_loop_t *loop, const char *run_as, uint32_t uid_base, uint32_t pids_max,
                 char *err, size_t errcap);
const isolate_config *isolate_get(void);
/* The host paths instances may write ("PATH,PATH,...", resolved: spated's
 * --writable), where they have mount namespaces; copied. Call once, after
 * isolate_init. ERR_INVAL past SPATE_WRITABLE_MAX paths or PATH_MAX bytes. */
int isolate_set_writable(const char *list);
/* The node's limit on the processes and threads of all its functions
 * together (spated --max-processes; 0: none of spated's own): pids.max of
 * the pids cgroup that holds every zygote and instance. ERR_NOTSUP without
 * a writable pids cgroup, ERR_IO when the kernel refuses the value. */
int isolate_set_node_pids_max(uint32_t max);
/* What the functions' processes use of it: 0 with *current (processes and
 * threads now) and *max (0: no limit of spated's own); -1 without a pids
 * cgroup. */
int isolate_node_pids(uint64_t *current, uint64_t *max);
/* The uid a function's processes run as: the same for the life of spated. */
uid_t isolate_uid(const char *function);
/* Removes this process's cgroup and temporary roots (at exit). */
void isolate_cleanup(void);

/* 0 when the user instances run as can reach path (search permission on
 * every directory on the way), or need not (with mount namespaces their code
 * is bound at /var/task by the runner while it is root); else why says where
 * it stops. */
int isolate_reachable(const char *path, char *why, size_t cap);

/* One instance's resources. */
typedef struct isolate_slot {
    char cgroups[1600]; /* "dir|dir|dir" to join, "" if none */
    char tmpdir[256];   /* "" if none */
    int ndirs;
    char dirs[3][512];
    int memory;    /* index in dirs of the memory cgroup, or -1 */
    int pids;      /* of the pids cgroup, or -1 */
    int cpu;       /* of the cpu cgroup (always the last), or -1 */
    int cpu_own;   /* it is the instance's (a quota), not its function's */
    uid_t cpu_uid; /* whose function's group it is, when shared */
    uint32_t memory_mb, cpu_millis;
    uid_t owner;            /* of the temporary directory and cgroup.procs files */
    uint64_t oom_kills;     /* the memory cgroup's count when the instance started */
    uint64_t forks_refused; /* the pids cgroup's count (pids.events) when it started */
    /* Its pids.events, open (-1 if not): a busy instance's look is one pread
     * of it; opening it by path each time cost the most (kernfs lookups). */
    int pids_events_fd;
    int forks_stopped; /* isolate_stop_forks set its pids.max to 0: never kept */
} isolate_slot;

/* A slot for an instance held to memory_mb and (if not 0) cpu_millis,
 * running as uid: a kept one or a new one. Best effort: what fails is logged
 * and left out, the instance still starts — but for a limit that cannot be
 * written for want of descriptors: NULL, errno EMFILE or ENFILE. Else NULL
 * only when out of memory. */
isolate_slot *isolate_acquire(uint32_t memory_mb, uint32_t cpu_millis, uid_t uid);
/* After the instance ended: takes its cgroups back from its user (so that no
 * process of that user can join them any more), kills whatever is left in
 * them, empties its temporary directory, and keeps the slot only when all of
 * that left nothing behind; else frees it. Returns 1 when the memory limit
 * killed a process of it. */
int isolate_release(isolate_slot *s);
/* 1 when the instance's pids cgroup has refused a fork (its process limit,
 * --pids-max, reached): a fork bomb, or a process tree that cannot work. One
 * read of pids.events. */
int isolate_at_pids_limit(const isolate_slot *s);
/* The periods its own cpu cgroup (one with a deploy cpu= quota) has run
 * in, and those its quota throttled, ever: one read of cpu.stat. -1 without
 * such a cgroup. */
int isolate_cpu_throttled(const isolate_slot *s, uint64_t *periods, uint64_t *throttled);
/* No process of the instance may fork any more (pids.max 0): before it is
 * killed, so that a fork bomb cannot replace what is killed. The slot is
 * never reused after that, even when its processes are all gone by
 * isolate_release: the next instance could not fork at all. */
void isolate_stop_forks(isolate_slot *s);

#endif

/* --- A version's zygote ------------------------------------------------------
 *
 * The zygote of a native version runs function code (spate_preload) and
 * everything that code forks: it gets cgroups of its own (memory: the
 * function's limit; pids: --pids-max plus room for instances on their way to
 * their own cgroups; cpu: the function's group), which spate-runner joins
 * while still root. Their cgroup.procs stay root's, so nothing the function
 * runs can leave them; when the version stops, everything still in them is
 * killed. */
typedef struct isolate_version isolate_version;

/* Cgroups for a version's zygote held to memory_mb, and room for the kernel
 * memory of up to instances forks (SPATE_ZYGOTE_FORK_KIB, limits.h: charged
 * to the zygote while each instance lives), its function running as uid.
 * Best effort as isolate_acquire; NULL only when out of memory. */
isolate_version *isolate_version_acquire(uint32_t memory_mb, uint32_t instances, uid_t uid);
/* The memory limit (bytes) of such a zygote's cgroup: the function's memory
 * and what its instances' forks are charged to it. */
uint64_t isolate_zygote_memory(uint32_t memory_mb, uint32_t instances);
/* "dir|dir|..." for spate-runner --cgroups, or "" without cgroups. Borrowed. */
const char *isolate_version_cgroups(const isolate_version *v);
/* No more forks in them, and SIGKILL to every process they hold. Does not
 * wait. 1 when they were empty. NULL is a no-op. */
int isolate_version_kill(isolate_version *v);
/* Kills what is left and removes the cgroups (later, from the loop, while
 * killed processes are still exiting); frees v. NULL is a no-op. */
void isolate_version_release(isolate_version *v);
/* Kills what every live version's cgroups hold: for a spated that must stop now. */
void isolate_version_kill_all(void);

/* --- spate-runner's environment --------------------------------------------------
 *
 * spate-runner starts as root; nothing of the function's environment (nor of
 * spated's) may be in it then, or the loader would read LD_PRELOAD and its
 * like as root. It starts with isolate_runner_env() and gets the function's
 * variables in a descriptor (isolate_env_fd), which it applies only once it
 * runs as the function's user. */

/* The runner's whole initial environment: PATH, and the sanitizers' options
 * of spated's own environment (the operator's, needed by a sanitizer build).
 * NULL-terminated; static. */
char **isolate_runner_env(void);
/* A memfd holding env ("K=V\0K=V\0..."), for --env-fd; close it once the
 * runner has it. -1 with errno on failure. */
int isolate_env_fd(char *const *env, const char *extra);
