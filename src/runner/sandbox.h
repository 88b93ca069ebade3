/*
 * sandbox.h - what spate-runner does to a process before function code runs.
 *
 * Per version (the zygote, or the exec wrapper before it runs bootstrap):
 * the zygote's own cgroups, joined while still root so that nothing it runs
 * can leave them (runtime/isolate.h), optionally a network namespace of its own (no network), no
 * new privileges, the unprivileged user, and a seccomp filter that answers EPERM to what a function
 * has no business doing (ptrace, mount, module loading, bpf, ...) and, without network, to sockets
 * other than unix ones.
 *
 * Per instance (after fork): its own process group, every inherited descriptor
 * closed but the ones it needs, its cgroups joined (memory, pids, cpu) or,
 * without cgroups, RLIMIT_AS, and its own TMPDIR.
 *
 * With mount namespaces (spated passes --tmp-mb only where they work), each
 * instance sees the host's filesystem read-only, the function's code
 * read-only at /var/task and a private tmpfs at /tmp and /dev/shm and an IPC
 * namespace of its own, which vanish with it; what stays writable is /proc,
 * /sys/fs/cgroup (as file permissions allow) and the operator's --writable
 * paths, so nothing else it can write is shared with another instance. An
 * exec instance's runner is still root when it builds them
 * (sandbox_mount_task, sandbox_mount_tmp); a native instance is forked
 * unprivileged from a zygote that made /var/task while it was root, so it
 * builds its /tmp in a user namespace of its own (sandbox_enter_instance_ns)
 * and then gives up every capability there.
 */
#ifndef SPATE_RUNNER_SANDBOX_H
#define SPATE_RUNNER_SANDBOX_H

#include <stdint.h>
#include <sys/types.h>

typedef struct sandbox_version {
    int drop; /* switch to uid/gid */
    uid_t uid;
    gid_t gid;
    int no_network;      /* own network namespace, no inet sockets */
    int seccomp;         /* install the filter (on unless testing) */
    int zygote_ns;       /* native with namespaces: the filter lets instances build theirs */
    const char *cgroups; /* "path|path|..." to join before dropping privileges, or NULL */
} sandbox_version;

/* Where a function sees its code. */
#define SANDBOX_TASK_ROOT "/var/task"

/* As root: a mount namespace of this process's own (made private) in which
 * every mount is read-only but /proc, /sys/fs/cgroup and the paths of
 * writable (NULL-terminated, at most SPATE_WRITABLE_MAX; NULL: none), with
 * code_dir bound read-only at /var/task, and an IPC namespace of its own.
 * 0, or -1 with why filled. */
int sandbox_mount_task(const char *code_dir, const char *const *writable, char *why, size_t cap);
/* As root: the same, but /var/task is a small read-only tmpfs holding a copy
 * of the object open on fd, as "function.so". */
int sandbox_mount_task_object(int fd, const char *const *writable, char *why, size_t cap);
/* Private tmpfs at /tmp and /dev/shm of tmp_mb each, in this process's own
 * mount namespace; sets TMPDIR=/tmp. 0, or -1 with why filled. */
int sandbox_mount_tmp(uint32_t tmp_mb, char *why, size_t cap);

/* The full filter, compiled once in the zygote (after sandbox_enter_version)
 * so that each instance loads it in microseconds. 0, or -1 with why filled. */
int sandbox_prepare_instance_filter(int no_network, char *why, size_t cap);

/* Applies the per-version part to this process. 0, or -1 with why filled. */
int sandbox_enter_version(const sandbox_version *v, char *why, size_t cap);

typedef struct sandbox_instance {
    const char *cgroups; /* "path|path|..." of cgroup directories to join, or "" */
    const char *tmpdir;  /* its own TMPDIR, or "" */
    uint32_t memory_mb;  /* RLIMIT_AS when no memory cgroup is joined */
} sandbox_instance;

/* Applies the per-instance part; keep is a descriptor not to close (-1: none).
 * 0, or -1 with why filled. */
int sandbox_enter_instance(const sandbox_instance *s, int keep, char *why, size_t cap);

/* A native instance with namespaces, after sandbox_enter_instance: a user,
 * mount and IPC namespace of its own (its uid and gid mapped to themselves),
 * its private /tmp and /dev/shm, no capability left, then the prepared
 * filter. 0, or -1 with why filled. */
int sandbox_enter_instance_ns(uint32_t tmp_mb, char *why, size_t cap);

#endif
