/*
 * init.c - isolation's start-up and exit: the functions' user, whether
 * mount namespaces work, spate's temporary and cgroup roots (sweeping those
 * of spated processes that are gone), --writable, and whether the functions'
 * user can reach a path (internal.h has who owns what).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "common/fs.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/isolate/internal.h"

static const char *const controllers[CG_COUNT] = {"memory", "pids", "cpu"};

isolate_host isolate__host;
/* Written here only; the other files read it through isolate_get. */
static isolate_config cfg;

/* Removes the roots (cgroups, temporary directories) of spated processes that
 * are gone: killed ones do not clean up. */
static void sweep(const char *root, int cgroup)
{
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[400];
        snprintf(path, sizeof path, "%s/%s", root, e->d_name);
        if (!cgroup) {
            fs_remove_tree(AT_FDCWD, path, 0);
            continue;
        }
        DIR *sub = opendir(path);
        struct dirent *c;
        while (sub && (c = readdir(sub)) != NULL) {
            if (c->d_type != DT_DIR || c->d_name[0] == '.') continue;
            char child[700];
            snprintf(child, sizeof child, "%s/%s", path, c->d_name);
            isolate__remove_cgroup(child, 1);
        }
        if (sub) closedir(sub);
        rmdir(path);
    }
    closedir(d);
}

/* The base of the temporary directories must be spated's own and writable
 * by nobody else, or another user could swap a part of it for a link while
 * root cleans up. Creates it when missing; 0 when it may be used. */
static int own_tmp_base(const char *base)
{
    if (mkdir(base, 0711) != 0 && errno != EEXIST) {
        log_warn("cannot create %s: %s: instances get no temporary directory of their own", base,
                 strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(base, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 022)) {
        log_warn(
            "refusing %s: it must be a directory owned by uid %d and not writable by group or "
            "others (remove it and restart): instances get no temporary directory of their own",
            base, (int)geteuid());
        return -1;
    }
    return 0;
}

/* Tries, in a child, what the runner does for an instance: a private mount
 * namespace as root with everything read-only but /proc (mount_setattr,
 * Linux 5.12) and a bind at /var/task, then (as the functions' user) a user
 * and mount namespace with a tmpfs of its own. 1 when all of it works. */
static int probe_namespaces(void)
{
    /* The mount point each instance's code is bound on; nothing is ever
     * mounted on it outside an instance's namespace. */
    if (mkdir("/var/task", 0755) != 0 && errno != EEXIST) {
        log_warn("cannot create /var/task: %s: no mount namespaces, instances share /tmp",
                 strerror(errno));
        return 0;
    }
    pid_t pid = fork();
    if (pid == 0) {
        uid_t uid = cfg.drop ? cfg.uid : 0;
        gid_t gid = cfg.drop ? cfg.gid : 0;
        char map[48];
        int step = 1;
        struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
        int proc = -1;
        if (unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
            (proc = open_tree(AT_FDCWD, "/proc", OPEN_TREE_CLONE | AT_RECURSIVE)) < 0 ||
            mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) != 0 ||
            move_mount(proc, "", AT_FDCWD, "/proc", MOVE_MOUNT_F_EMPTY_PATH) != 0 ||
            mount("/", "/var/task", NULL, MS_BIND, NULL) != 0 ||
            mount(NULL, "/var/task", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0)
            _exit(step);
        step++;
        if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
            setresuid(uid, uid, uid) != 0)
            _exit(step);
        step++;
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC) != 0) _exit(step);
        step++;
        int fd = open("/proc/self/setgroups", O_WRONLY);
        if (fd < 0 || write(fd, "deny", 4) != 4) _exit(step);
        close(fd);
        snprintf(map, sizeof map, "%u %u 1", (unsigned)uid, (unsigned)uid);
        if ((fd = open("/proc/self/uid_map", O_WRONLY)) < 0 ||
            write(fd, map, strlen(map)) != (ssize_t)strlen(map))
            _exit(step);
        close(fd);
        snprintf(map, sizeof map, "%u %u 1", (unsigned)gid, (unsigned)gid);
        if ((fd = open("/proc/self/gid_map", O_WRONLY)) < 0 ||
            write(fd, map, strlen(map)) != (ssize_t)strlen(map))
            _exit(step);
        close(fd);
        step++;
        if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m") != 0) _exit(step);
        _exit(0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        static const char *const what[] = {"?",
                                           ("a read-only mount and IPC namespace with a bind "
                                            "at /var/task"),
                                           "the functions' user",
                                           "a user namespace",
                                           "the user namespace's maps",
                                           "a tmpfs in it"};
        int step = pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : 0;
        log_warn("no mount namespaces (cannot make %s): instances share /tmp and /dev/shm, may "
                 "write the host's files wherever their uid may, and exec code must be reachable "
                 "through --data",
                 what[step < 6 ? step : 0]);
        return 0;
    }
    return 1;
}

int isolate_init(uv_loop_t *l, const char *run_as, uint32_t uid_base, uint32_t pids_max, char *err,
                 size_t errcap)
{
    isolate__host.loop = l;
    isolate__stale_init();
    cfg.pids_max = pids_max;
    cfg.uid_base = uid_base;
    isolate__users_init();
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam(run_as);
        if (!pw) {
            snprintf(err, errcap, "--run-as: no user '%s'", run_as);
            return ERR_INVAL;
        }
        cfg.drop = pw->pw_uid != 0 || uid_base != 0;
        cfg.uid = pw->pw_uid;
        cfg.gid = pw->pw_gid;
        snprintf(cfg.user, sizeof cfg.user, "%s", run_as);
        if (!cfg.drop) log_warn("functions run as root (--run-as %s)", run_as);
    } else {
        cfg.uid = geteuid();
        cfg.gid = getegid();
        log_warn("spated is not root: functions run as its own user, without cgroups");
    }
    cfg.mount_ns = geteuid() == 0 && probe_namespaces();
    /* Temporary directories, only where instances have no private /tmp:
     * /tmp/spate/<spated pid>/<slot>. Older ones are swept either way. */
    if (own_tmp_base("/tmp/spate") == 0) {
        sweep("/tmp/spate", 0);
        snprintf(isolate__host.tmp_root, sizeof isolate__host.tmp_root, "/tmp/spate/%d",
                 (int)getpid());
        fs_remove_tree(AT_FDCWD, isolate__host.tmp_root, 0);
        if (!cfg.mount_ns && mkdir(isolate__host.tmp_root, 0711) != 0) {
            log_warn("cannot create %s: %s", isolate__host.tmp_root, strerror(errno));
            isolate__host.tmp_root[0] = '\0';
        }
    }

    /* cgroup v1 controllers where writable; none otherwise. */
    for (int i = 0; i < CG_COUNT && geteuid() == 0; i++) {
        char base[96];
        snprintf(base, sizeof base, "/sys/fs/cgroup/%s/spate", controllers[i]);
        if (mkdir(base, 0755) != 0 && errno != EEXIST) continue;
        sweep(base, 1);
        snprintf(isolate__host.cg_root[i], sizeof isolate__host.cg_root[i], "%s/%d", base,
                 (int)getpid());
        if (mkdir(isolate__host.cg_root[i], 0755) != 0 && errno != EEXIST)
            isolate__host.cg_root[i][0] = '\0';
    }
    cfg.cgroups = isolate__host.cg_root[CG_MEMORY][0] != '\0';
    /* Only where instances join cgroups (root with a controller). */
    if (isolate__host.cg_root[CG_MEMORY][0] || isolate__host.cg_root[CG_PIDS][0] ||
        isolate__host.cg_root[CG_CPU][0])
        cfg.favor_dynmods = isolate__favor_init() == 0;
    if (!cfg.cgroups) log_warn("no writable memory cgroup: --memory is enforced with RLIMIT_AS");
    if (!isolate__host.cg_root[CG_PIDS][0])
        log_warn("no writable pids cgroup: no per-instance process limit");
    if (!isolate__host.cg_root[CG_CPU][0])
        log_warn("no writable cpu cgroup: cpu quotas are not enforced");
    return 0;
}

const isolate_config *isolate_get(void)
{
    return &cfg;
}

int isolate_set_writable(const char *list)
{
    static char text[PATH_MAX];
    if (strlen(list) >= sizeof text) return ERR_INVAL;
    memcpy(text, list, strlen(list) + 1);
    int n = 0;
    for (char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        char *next = p + len + (p[len] == ',');
        p[len] = '\0';
        if (len && n == SPATE_WRITABLE_MAX) return ERR_INVAL;
        if (len) cfg.writable[n++] = p;
        p = next;
    }
    cfg.writable[n] = NULL;
    return 0;
}

void isolate_cleanup(void)
{
    isolate__free_spare_slots();
    isolate__retry_stale(1);
    isolate__users_free();
    isolate__stale_close();
    for (int i = 0; i < CG_COUNT; i++)
        if (isolate__host.cg_root[i][0]) rmdir(isolate__host.cg_root[i]);
    isolate__favor_cleanup();
    cfg.favor_dynmods = 0;
    if (isolate__host.tmp_root[0]) fs_remove_tree(AT_FDCWD, isolate__host.tmp_root, 0);
}

int isolate_reachable(const char *path, char *why, size_t cap)
{
    if (!cfg.drop || cfg.mount_ns) return 0;
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    /* Every directory on the way needs search permission for the user. */
    for (char *slash = p; slash;) {
        slash = strchr(slash + 1, '/');
        if (slash) *slash = '\0';
        struct stat st;
        if (p[0] && stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            mode_t need = !cfg.uid_base && st.st_uid == cfg.uid ? 0100
                          : st.st_gid == cfg.gid                ? 0010
                                                                : 0001;
            if (!(st.st_mode & need)) {
                snprintf(why, cap,
                         "functions run as unprivileged users (group of '%s'), who cannot reach "
                         "'%s' (mode %04o): give them search permission (chmod o+x), or choose "
                         "another --data",
                         cfg.user, p, (unsigned)(st.st_mode & 07777));
                return ERR_INVAL;
            }
        }
        if (slash) *slash = '/';
    }
    return 0;
}

int isolate_set_node_pids_max(uint32_t max)
{
    const char *root = isolate__host.cg_root[CG_PIDS];
    if (!root[0]) return ERR_NOTSUP;
    char value[16];
    if (max)
        snprintf(value, sizeof value, "%u", max);
    else
        snprintf(value, sizeof value, "max");
    return isolate__write_file(root, "pids.max", value) == 0 ? 0 : ERR_IO;
}

int isolate_node_pids(uint64_t *current, uint64_t *max)
{
    const char *root = isolate__host.cg_root[CG_PIDS];
    char text[32];
    if (!root[0] || isolate__read_file(root, "pids.current", text, sizeof text) != 0) return -1;
    *current = strtoull(text, NULL, 10);
    *max = 0;
    if (isolate__read_file(root, "pids.max", text, sizeof text) == 0 && strncmp(text, "max", 3))
        *max = strtoull(text, NULL, 10);
    return 0;
}
