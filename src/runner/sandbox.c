#include "runner/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/limits.h"

/* Denied with EPERM: debugging other processes, the mount table, kernel
 * modules and images, bpf and perf, keyrings, reboot and swap, entering or
 * making namespaces, raw I/O ports, file handles, the clock and accounting;
 * io_uring, whose operations (socket, openat, connect, ...) are system calls
 * this filter never sees: through it a function without network made an
 * AF_INET socket. pidfd_getfd takes another process's descriptors (another
 * instance's of the same function: its Runtime API connection). */
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
    "fspick",
    "mount_setattr",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "pidfd_getfd",
};

/* The flags a native instance unshares with to build its /tmp, and to have
 * System V IPC and POSIX message queues of its own (isolate.h). */
#define INSTANCE_NS_FLAGS ((unsigned long)(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC))

/* The filter; zygote_ns leaves mount and unshare(INSTANCE_NS_FLAGS) open for
 * the instances to build their namespaces, which then load the full filter
 * on top (filters stack: the stricter answer wins). NULL with why filled. */
static scmp_filter_ctx build_filter(int no_network, int zygote_ns, char *why, size_t cap)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        snprintf(why, cap, "seccomp_init failed");
        return NULL;
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof denied / sizeof denied[0]; i++) {
        if (zygote_ns && (strcmp(denied[i], "mount") == 0 || strcmp(denied[i], "unshare") == 0))
            continue;
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR) continue; /* not on this architecture */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    }
    if (!rc && zygote_ns)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 1,
                              SCMP_A0(SCMP_CMP_NE, INSTANCE_NS_FLAGS));
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
    if (rc) {
        snprintf(why, cap, "cannot build the seccomp filter: %s", strerror(-rc));
        seccomp_release(ctx);
        return NULL;
    }
    return ctx;
}

static int install_seccomp(int no_network, int zygote_ns, char *why, size_t cap)
{
    scmp_filter_ctx ctx = build_filter(no_network, zygote_ns, why, cap);
    if (!ctx) return -1;
    int rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc) snprintf(why, cap, "cannot install the seccomp filter: %s", strerror(-rc));
    return rc ? -1 : 0;
}

/* The full filter as BPF, for instances to load (sandbox_enter_instance_ns). */
static struct sock_fprog instance_filter;

int sandbox_prepare_instance_filter(int no_network, char *why, size_t cap)
{
    scmp_filter_ctx ctx = build_filter(no_network, 0, why, cap);
    if (!ctx) return -1;
    /* libseccomp 2.5 exports only to a descriptor: a memfd, read back. */
    int fd = memfd_create("seccomp", MFD_CLOEXEC);
    int rc = fd < 0 ? -errno : seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    struct stat st;
    if (!rc && fstat(fd, &st) != 0) rc = -errno;
    void *prog = NULL;
    if (!rc && (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) ||
                !(prog = malloc((size_t)st.st_size))))
        rc = -ENOMEM;
    if (!rc && pread(fd, prog, (size_t)st.st_size, 0) != st.st_size) rc = -EIO;
    if (fd >= 0) close(fd);
    if (rc) {
        free(prog);
        snprintf(why, cap, "cannot compile the instances' seccomp filter: %s", strerror(-rc));
        return -1;
    }
    instance_filter.len = (unsigned short)(st.st_size / (off_t)sizeof(struct sock_filter));
    instance_filter.filter = prog;
    return 0;
}

/* --- Mount namespaces ------------------------------------------------------------- */

/* What stays writable in every instance's namespace besides the operator's
 * --writable paths: /proc, where a native instance writes its user
 * namespace's maps and a function its own /proc/self files, and
 * /sys/fs/cgroup, whose cgroup.procs files instances write to join their
 * cgroups after the privilege drop. Skipped where missing. */
static const char *const sandbox_writable[] = {"/proc", "/sys/fs/cgroup"};

/* Every mount of this (private) namespace read-only, but the paths above and
 * those of writable (NULL-terminated), which keep the flags they had on the
 * host: each is cloned (with what is mounted below it) before the change and
 * mounted back on top after it. Without this a function could fill the
 * host's disk through any directory its uid may write (/var/tmp, /run/lock,
 * a 1777 directory anywhere), and two functions could pass files to each
 * other there. Device nodes stay usable: the kernel checks a mount's
 * read-only flag for regular files, directories and links, not for them. */
static int read_only_host(const char *const *writable, char *why, size_t cap)
{
    enum { KEPT = sizeof sandbox_writable / sizeof sandbox_writable[0] };
    const char *path[KEPT + SPATE_WRITABLE_MAX];
    int fd[KEPT + SPATE_WRITABLE_MAX];
    int n = 0, rc = -1;
    for (size_t i = 0; i < KEPT + SPATE_WRITABLE_MAX; i++) {
        const char *p = i < KEPT ? sandbox_writable[i] : writable ? writable[i - KEPT] : NULL;
        if (i >= KEPT && !p) break;
        int t = open_tree(AT_FDCWD, p, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (t < 0 && i < KEPT && errno == ENOENT) continue;
        if (t < 0) {
            snprintf(why, cap, "cannot keep '%s' writable: %s", p, strerror(errno));
            goto out;
        }
        path[n] = p;
        fd[n++] = t;
    }
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
    if (mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) != 0) {
        snprintf(why, cap, "cannot make the host's filesystem read-only: %s", strerror(errno));
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (move_mount(fd[i], "", AT_FDCWD, path[i], MOVE_MOUNT_F_EMPTY_PATH) != 0) {
            snprintf(why, cap, "cannot mount '%s' writable: %s", path[i], strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    for (int i = 0; i < n; i++) close(fd[i]);
    return rc;
}

/* A mount namespace of this process's own whose mounts propagate nowhere,
 * with the host read-only in it (read_only_host), and an IPC namespace:
 * System V shared memory, semaphores and message queues (and POSIX ones)
 * outlive the process that made them, so in the host's namespace a function
 * could leave memory there that no cgroup of its own holds, and share them
 * with other functions. In a namespace of its own they go when its last
 * process does. */
static int private_mounts(const char *const *writable, char *why, size_t cap)
{
    if (unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0) {
        snprintf(why, cap, "cannot make a mount and IPC namespace: %s", strerror(errno));
        return -1;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        snprintf(why, cap, "cannot make the mounts private: %s", strerror(errno));
        return -1;
    }
    return read_only_host(writable, why, cap);
}

/* /var/task as it stays: read-only, no set-uid programs, no devices. */
static int task_read_only(char *why, size_t cap)
{
    if (mount(NULL, SANDBOX_TASK_ROOT, NULL,
              MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0) {
        snprintf(why, cap, "cannot make %s read-only: %s", SANDBOX_TASK_ROOT, strerror(errno));
        return -1;
    }
    return 0;
}

int sandbox_mount_task(const char *code_dir, const char *const *writable, char *why, size_t cap)
{
    if (private_mounts(writable, why, cap) != 0) return -1;
    if (mount(code_dir, SANDBOX_TASK_ROOT, NULL, MS_BIND, NULL) != 0) {
        snprintf(why, cap, "cannot bind '%s' at %s: %s", code_dir, SANDBOX_TASK_ROOT,
                 strerror(errno));
        return -1;
    }
    return task_read_only(why, cap);
}

int sandbox_mount_task_object(int fd, const char *const *writable, char *why, size_t cap)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(why, cap, "cannot read the shared object: %s", strerror(errno));
        return -1;
    }
    if (private_mounts(writable, why, cap) != 0) return -1;
    char opts[64];
    snprintf(opts, sizeof opts, "size=%lluk,nr_inodes=16,mode=0755",
             (unsigned long long)st.st_size / 1024 + 64);
    if (mount("tmpfs", SANDBOX_TASK_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
        snprintf(why, cap, "cannot mount a tmpfs at %s: %s", SANDBOX_TASK_ROOT, strerror(errno));
        return -1;
    }
    int out = open(SANDBOX_TASK_ROOT "/function.so", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    off_t off = 0;
    while (out >= 0 && off < st.st_size)
        if (sendfile(out, fd, &off, (size_t)(st.st_size - off)) <= 0) break;
    if (out < 0 || off < st.st_size || close(out) != 0) {
        snprintf(why, cap, "cannot copy the shared object to %s: %s", SANDBOX_TASK_ROOT,
                 strerror(errno));
        return -1;
    }
    return task_read_only(why, cap);
}

int sandbox_mount_tmp(uint32_t tmp_mb, char *why, size_t cap)
{
    char opts[64];
    snprintf(opts, sizeof opts, "size=%um,mode=1777", (unsigned)tmp_mb);
    static const char *const where[] = {"/tmp", "/dev/shm"};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        if (mount("tmpfs", where[i], "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
            snprintf(why, cap, "cannot mount a private tmpfs at %s: %s", where[i], strerror(errno));
            return -1;
        }
    }
    setenv("TMPDIR", "/tmp", 1);
    return 0;
}

static int write_proc(const char *name, const char *text, char *why, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/%s", name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t len = (ssize_t)strlen(text);
    if (fd < 0 || write(fd, text, (size_t)len) != len) {
        snprintf(why, cap, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int sandbox_enter_instance_ns(uint32_t tmp_mb, char *why, size_t cap)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    /* After the zygote's uid change its /proc/self files are root's: the
     * maps below could not be written. Undone before function code runs. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    if (unshare(INSTANCE_NS_FLAGS) != 0) {
        snprintf(why, cap, "cannot make the instance's namespaces: %s", strerror(errno));
        return -1;
    }
    char map[48];
    if (write_proc("setgroups", "deny", why, cap) != 0) return -1;
    snprintf(map, sizeof map, "%u %u 1", (unsigned)uid, (unsigned)uid);
    if (write_proc("uid_map", map, why, cap) != 0) return -1;
    snprintf(map, sizeof map, "%u %u 1", (unsigned)gid, (unsigned)gid);
    if (write_proc("gid_map", map, why, cap) != 0) return -1;
    if (sandbox_mount_tmp(tmp_mb, why, cap) != 0) return -1;
    /* The user namespace gave it every capability over its own mounts: none
     * is left to the function (and the mounts it inherited stay locked). */
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) != 0) {
        snprintf(why, cap, "cannot drop the capabilities: %s", strerror(errno));
        return -1;
    }
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (instance_filter.filter &&
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &instance_filter, 0, 0) != 0) {
        snprintf(why, cap, "cannot install the seccomp filter: %s", strerror(errno));
        return -1;
    }
    return 0;
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
    if (v->seccomp && install_seccomp(v->no_network, v->zygote_ns, why, cap) != 0) return -1;
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
