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
    const char *cgroups; /* "path|path|..." to join before dropping privileges, or NULL */
} sandbox_version;

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

#endif
