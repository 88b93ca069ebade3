#include "runner/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Denied with EPERM: debugging other processes, the mount table, kernel
 * modules and images, bpf and perf, keyrings, reboot and swap, entering or
 * making namespaces, raw I/O ports, file handles, the clock and accounting. */
static const char *const denied[] = {
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "reboot",
    "swapon",
    "swapoff",
    "setns",
    "unshare",
    "iopl",
    "ioperm",
    "open_by_handle_at",
    "name_to_handle_at",
    "acct",
    "quotactl",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "lookup_dcookie",
    "userfaultfd",
    "fanotify_init",
    "vhangup",
    "move_mount",
    "fsopen",
    "fsmount",
    "open_tree",
};

static int install_seccomp(int no_network, char *why, size_t cap)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        snprintf(why, cap, "seccomp_init failed");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof denied / sizeof denied[0]; i++) {
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR) continue; /* not on this architecture */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    }
    /* New namespaces through clone too; clone3 hides its flags in memory a
     * filter cannot read, so it reports ENOSYS and libc falls back to clone. */
    static const unsigned long ns_flags[] = {CLONE_NEWNS,    CLONE_NEWUTS, CLONE_NEWIPC,
                                             CLONE_NEWUSER,  CLONE_NEWPID, CLONE_NEWNET,
                                             CLONE_NEWCGROUP};
    for (size_t i = 0; !rc && i < sizeof ns_flags / sizeof ns_flags[0]; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (!rc && no_network) {
        /* Only unix sockets: socket(domain != AF_UNIX) fails. */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    }
    if (!rc) rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc) snprintf(why, cap, "cannot install the seccomp filter: %s", strerror(-rc));
    return rc ? -1 : 0;
}

static int join_cgroup(const char *dir, size_t len, char *why, size_t cap)
{
    char path[512];
    if (len + sizeof "/cgroup.procs" > sizeof path) {
        snprintf(why, cap, "cgroup path too long");
        return -1;
    }
    memcpy(path, dir, len);
    memcpy(path + len, "/cgroup.procs", sizeof "/cgroup.procs");
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) {
        snprintf(why, cap, "cannot join cgroup '%s': %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* Joins every cgroup of list ("path|path|..."); sets *memory when one of
 * them is a memory cgroup. */
static int join_cgroups(const char *list, int *memory, char *why, size_t cap)
{
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, "|");
        if (len && join_cgroup(p, len, why, cap) != 0) return -1;
        if (len && memory && memmem(p, len, "/memory/", 8)) *memory = 1;
        p += len + (p[len] == '|');
    }
    return 0;
}

int sandbox_enter_version(const sandbox_version *v, char *why, size_t cap)
{
    /* While root: cgroup.procs of these are root's, so only root moves a
     * process out of them. */
    if (join_cgroups(v->cgroups, NULL, why, cap) != 0) return -1;
    if (v->no_network && unshare(CLONE_NEWNET) != 0) {
        snprintf(why, cap, "cannot make a network namespace: %s", strerror(errno));
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(why, cap, "cannot set no_new_privs: %s", strerror(errno));
        return -1;
    }
    if (v->drop) {
        if (setgroups(0, NULL) != 0 || setresgid(v->gid, v->gid, v->gid) != 0 ||
            setresuid(v->uid, v->uid, v->uid) != 0) {
            snprintf(why, cap, "cannot switch to uid %d: %s", (int)v->uid, strerror(errno));
            return -1;
        }
    }
    if (v->seccomp && install_seccomp(v->no_network, why, cap) != 0) return -1;
    return 0;
}

int sandbox_enter_instance(const sandbox_instance *s, int keep, char *why, size_t cap)
{
    /* Its own process group: a kill of the group reaches what it starts. */
    setpgid(0, 0);
    /* Nothing of the zygote's or spated's descriptors but stdio and keep. */
    if (keep > 3) syscall(SYS_close_range, 3, (unsigned)keep - 1, 0);
    syscall(SYS_close_range, keep >= 3 ? (unsigned)keep + 1 : 3u, ~0u, 0);
    int joined_memory = 0;
    if (join_cgroups(s->cgroups, &joined_memory, why, cap) != 0) return -1;
    if (!joined_memory && s->memory_mb) {
        /* No memory cgroup here: the address space is the next best bound. */
        struct rlimit r = {(rlim_t)s->memory_mb << 20, (rlim_t)s->memory_mb << 20};
        setrlimit(RLIMIT_AS, &r);
    }
    if (s->tmpdir && *s->tmpdir) setenv("TMPDIR", s->tmpdir, 1);
    return 0;
}
