#include "runtime/isolate.h"

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
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common/err.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/strmap.h"

enum { CG_MEMORY, CG_PIDS, CG_CPU, CG_COUNT };
static const char *const controllers[CG_COUNT] = {"memory", "pids", "cpu"};

static isolate_config cfg;
static char tmp_root[128];
static char cg_root[CG_COUNT][128]; /* "" when that controller is not available */
static uint64_t next_slot = 1;

/* Function name -> uid, assigned on first use. */
typedef struct fn_uid {
    uid_t uid;
    char name[];
} fn_uid;
static strmap uids;
/* uids given, to keep them distinct: uid -> 1 */
static strmap uids_taken;

/* Slots of instances that ended cleanly, for the next ones. */
static isolate_slot *spare[SPATE_SPARE_SLOTS_MAX];
static int nspare;

/* Cgroups that were still busy when their instance ended, retried later. */
static char *stale[SPATE_STALE_CGROUPS_MAX];
static uv_loop_t *loop;
static uv_timer_t stale_timer; /* retries them while there are any */
static int stale_timer_on;

/* --- Files ---------------------------------------------------------------------- */

static int write_file(const char *dir, const char *name, const char *value)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, value, strlen(value));
    close(fd);
    return n == (ssize_t)strlen(value) ? 0 : -1;
}

static int read_file(const char *dir, const char *name, char *out, size_t cap)
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

/* --- cgroups -------------------------------------------------------------------- */

/* Kills every process in a cgroup; 1 when it was empty already. */
static int kill_all(const char *dir)
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
static int remove_cgroup(const char *dir, int wait)
{
    for (int round = 0; round < (wait ? 20 : 1); round++) {
        if (rmdir(dir) == 0 || errno == ENOENT) return 1;
        if (errno != EBUSY) return 1; /* nothing more to do about it */
        kill_all(dir);
        if (rmdir(dir) == 0) return 1;
        if (wait) usleep(1000);
    }
    return 0;
}

static void retry_stale(int wait)
{
    int left = 0;
    for (int i = 0; i < SPATE_STALE_CGROUPS_MAX; i++) {
        if (stale[i] && remove_cgroup(stale[i], wait)) {
            free(stale[i]);
            stale[i] = NULL;
        }
        left += stale[i] != NULL;
    }
    if (!left && stale_timer_on) {
        uv_timer_stop(&stale_timer);
        stale_timer_on = 0;
    }
}

static void on_stale_timer(uv_timer_t *t)
{
    retry_stale(0);
}

static void remember_stale(const char *dir)
{
    for (int i = 0; i < SPATE_STALE_CGROUPS_MAX; i++)
        if (!stale[i]) {
            stale[i] = strdup(dir);
            if (loop && !stale_timer_on) {
                uv_timer_start(&stale_timer, on_stale_timer, 20, 20);
                stale_timer_on = 1;
            }
            return;
        }
    log_warn("cannot remove cgroup %s: still busy", dir);
}

static uint64_t oom_kills(const isolate_slot *s)
{
    char text[512];
    if (s->memory < 0 || read_file(s->dirs[s->memory], "memory.oom_control", text, sizeof text))
        return 0;
    const char *p = strstr(text, "oom_kill ");
    return p ? strtoull(p + 9, NULL, 10) : 0;
}

/* Forks the pids cgroup refused (its limit reached), ever. */
static uint64_t forks_refused(const isolate_slot *s)
{
    char text[64];
    if (s->pids < 0 || read_file(s->dirs[s->pids], "pids.events", text, sizeof text)) return 0;
    const char *p = strstr(text, "max ");
    return p ? strtoull(p + 4, NULL, 10) : 0;
}

void isolate_stop_forks(isolate_slot *s)
{
    if (s->pids >= 0) write_file(s->dirs[s->pids], "pids.max", "0");
}

int isolate_at_pids_limit(const isolate_slot *s)
{
    return forks_refused(s) > s->forks_refused;
}

static int set_memory(isolate_slot *s, uint32_t mb)
{
    char value[32];
    snprintf(value, sizeof value, "%llu", (unsigned long long)mb << 20);
    const char *dir = s->dirs[s->memory];
    /* memory+swap may never be below memory: raise it first, lower it last. */
    int up = mb > s->memory_mb;
    if (up) write_file(dir, "memory.memsw.limit_in_bytes", value);
    int rc = write_file(dir, "memory.limit_in_bytes", value);
    if (!up) write_file(dir, "memory.memsw.limit_in_bytes", value);
    if (rc == 0) s->memory_mb = mb;
    return rc;
}

static int set_cpu(isolate_slot *s, uint32_t millis)
{
    char value[32];
    if (millis)
        snprintf(value, sizeof value, "%u", millis * 100); /* per 100 ms period */
    else
        snprintf(value, sizeof value, "-1");
    /* The default period (100 ms): a 10 ms one made a spinning neighbour's
     * p99 worse, not better (measured with tests/integration/test_isolation). */
    int rc = write_file(s->dirs[s->cpu], "cpu.cfs_quota_us", value);
    if (rc == 0) s->cpu_millis = millis;
    return rc;
}

/* Adds the cgroup of controller c to the slot; -1 when it cannot. */
static int add_cgroup(isolate_slot *s, int c, const char *name)
{
    char *dir = s->dirs[s->ndirs];
    snprintf(dir, sizeof s->dirs[0], "%s/%s", cg_root[c], name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        log_warn("cannot create cgroup %s: %s", dir, strerror(errno));
        return -1;
    }
    /* The instance joins by itself, after it has dropped privileges. */
    char procs[600];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    if (cfg.drop && chown(procs, s->owner, cfg.gid) != 0) {
        log_warn("cannot hand cgroup %s to the functions' user: %s", dir, strerror(errno));
        rmdir(dir);
        return -1;
    }
    return s->ndirs++;
}

static void join_list(isolate_slot *s)
{
    size_t used = 0;
    s->cgroups[0] = '\0';
    for (int i = 0; i < s->ndirs; i++) {
        size_t len = strlen(s->dirs[i]);
        if (used + len + 2 > sizeof s->cgroups) break; /* cannot happen: sized for three */
        if (used) s->cgroups[used++] = '|';
        memcpy(s->cgroups + used, s->dirs[i], len + 1);
        used += len;
    }
}

/* --- Slots ---------------------------------------------------------------------- */

static isolate_slot *new_slot(uint32_t memory_mb, uint32_t cpu_millis, uid_t uid)
{
    isolate_slot *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->memory = s->pids = s->cpu = -1;
    s->owner = uid;
    char name[32];
    snprintf(name, sizeof name, "i%llu", (unsigned long long)next_slot++);
    if (tmp_root[0] && !cfg.mount_ns) {
        snprintf(s->tmpdir, sizeof s->tmpdir, "%s/%s", tmp_root, name);
        if (mkdir(s->tmpdir, 0700) != 0 || (cfg.drop && chown(s->tmpdir, uid, cfg.gid) != 0)) {
            log_warn("cannot create %s: %s", s->tmpdir, strerror(errno));
            rmdir(s->tmpdir);
            s->tmpdir[0] = '\0';
        }
    }
    if (cg_root[CG_MEMORY][0] && (s->memory = add_cgroup(s, CG_MEMORY, name)) >= 0 &&
        set_memory(s, memory_mb) != 0) {
        log_warn("cannot limit memory in %s: %s", s->dirs[s->memory], strerror(errno));
        rmdir(s->dirs[--s->ndirs]);
        s->memory = -1;
    }
    if (cg_root[CG_PIDS][0] && (s->pids = add_cgroup(s, CG_PIDS, name)) >= 0) {
        char value[16];
        snprintf(value, sizeof value, "%u", cfg.pids_max);
        if (write_file(s->dirs[s->pids], "pids.max", value) != 0) {
            log_warn("cannot limit processes in %s: %s", s->dirs[s->pids], strerror(errno));
            rmdir(s->dirs[--s->ndirs]);
            s->pids = -1;
        }
    }
    (void)cpu_millis; /* the cpu cgroup is chosen per acquire (choose_cpu) */
    join_list(s);
    return s;
}

/* The cpu cgroup of an instance. Without a quota it is its function's
 * (u<uid>), shared by the function's instances: the scheduler then shares
 * the CPU between functions, not between processes, and a fork bomb's
 * hundred spinning processes weigh as much as one well-behaved function. A
 * group per instance would do the same, but costs about a sixth of the
 * throughput of short invocations (measured with bench/invoke). With a
 * quota (deploy cpu=) the instance has a cgroup of its own. */
static void choose_cpu(isolate_slot *s, uint32_t cpu_millis, uid_t uid)
{
    if (!cg_root[CG_CPU][0]) return;
    if (s->cpu >= 0 && s->cpu_own == (cpu_millis != 0) && (s->cpu_own || s->cpu_uid == uid)) {
        if (s->cpu_own && s->cpu_millis != cpu_millis && set_cpu(s, cpu_millis) != 0)
            log_warn("cannot set the cpu quota in %s: %s", s->dirs[s->cpu], strerror(errno));
        return;
    }
    if (s->cpu >= 0) { /* the other kind: let it go */
        if (s->cpu_own && !remove_cgroup(s->dirs[s->cpu], 0)) remember_stale(s->dirs[s->cpu]);
        s->ndirs--; /* the cpu cgroup is always the last */
        s->cpu = -1;
    }
    char name[32];
    if (cpu_millis)
        snprintf(name, sizeof name, "i%llu", (unsigned long long)next_slot++);
    else
        snprintf(name, sizeof name, "u%u", (unsigned)uid);
    uid_t keep = s->owner;
    s->owner = uid;
    s->cpu = add_cgroup(s, CG_CPU, name);
    s->owner = keep;
    if (s->cpu < 0) return;
    s->cpu_own = cpu_millis != 0;
    s->cpu_uid = uid;
    s->cpu_millis = 0;
    if (cpu_millis && set_cpu(s, cpu_millis) != 0) {
        log_warn("cannot set the cpu quota in %s: %s", s->dirs[s->cpu], strerror(errno));
        rmdir(s->dirs[--s->ndirs]);
        s->cpu = -1;
    }
    join_list(s);
}

/* The cgroups that are the instance's own (not its function's cpu group). */
static int own_dirs(const isolate_slot *s)
{
    return s->cpu >= 0 && !s->cpu_own ? s->ndirs - 1 : s->ndirs;
}

static void free_slot(isolate_slot *s, int wait)
{
    for (int i = 0; i < own_dirs(s); i++)
        if (!remove_cgroup(s->dirs[i], wait)) remember_stale(s->dirs[i]);
    if (s->tmpdir[0]) fs_remove_tree(AT_FDCWD, s->tmpdir, 0);
    free(s);
}

/* Gives the cgroup.procs files of the slot's own cgroups (not its function's
 * cpu group) to uid; 0 when every one changed hands. */
static int chown_procs(isolate_slot *s, uid_t uid, gid_t gid)
{
    int rc = 0;
    for (int i = 0; i < own_dirs(s); i++) {
        char procs[600];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", s->dirs[i]);
        if (chown(procs, uid, gid) != 0) {
            log_warn("cannot hand %s over: %s", procs, strerror(errno));
            rc = -1;
        }
    }
    return rc;
}

/* A kept slot changes hands: what the instance joins and writes is its own.
 * Kept slots are root's (isolate_release), whoever had them before. */
static void hand_over(isolate_slot *s, uid_t uid)
{
    s->owner = uid;
    if (!cfg.drop) return;
    if (s->tmpdir[0] && chown(s->tmpdir, uid, cfg.gid) != 0)
        log_warn("cannot hand %s over: %s", s->tmpdir, strerror(errno));
    chown_procs(s, uid, cfg.gid);
}

/* Whether none of the slot's own cgroups holds a process. */
static int slot_empty(const isolate_slot *s)
{
    for (int i = 0; i < own_dirs(s); i++) {
        char text[16];
        if (read_file(s->dirs[i], "cgroup.procs", text, sizeof text) != 0 || text[0]) return 0;
    }
    return 1;
}

isolate_slot *isolate_acquire(uint32_t memory_mb, uint32_t cpu_millis, uid_t uid)
{
    isolate_slot *s = NULL;
    while (!s && nspare > 0) {
        s = spare[--nspare];
        /* Root's since its release, and emptied then: a process found there
         * now came through a descriptor opened before; the slot is not reused. */
        if (!slot_empty(s)) {
            log_warn("a kept instance slot (%s) is not empty: not reused", s->dirs[0]);
            for (int i = 0; i < own_dirs(s); i++) kill_all(s->dirs[i]);
            free_slot(s, 0);
            s = NULL;
        } else {
            hand_over(s, uid);
        }
    }
    if (!s) s = new_slot(memory_mb, cpu_millis, uid);
    if (!s) return NULL;
    if (s->memory >= 0 && s->memory_mb != memory_mb && set_memory(s, memory_mb) != 0)
        log_warn("cannot limit memory in %s: %s", s->dirs[s->memory], strerror(errno));
    choose_cpu(s, cpu_millis, uid);
    s->oom_kills = oom_kills(s);
    return s;
}

int isolate_release(isolate_slot *s)
{
    int oom = s->memory >= 0 && oom_kills(s) > s->oom_kills;
    /* No process of its user may join these cgroups from now on (a helper
     * that outlived the instance, moving itself into the slot the next
     * function gets): they are root's until the next hand_over. */
    int empty = !cfg.drop || chown_procs(s, 0, 0) == 0;
    /* What the instance started may outlive it (a fork bomb): no more forks
     * (pids.max 0) before the first kill, or each kill makes room for a new
     * fork; then kill every process left in its cgroups. Only a slot found
     * empty is kept; the others go when their processes have. */
    char count[32];
    if (s->pids >= 0 && read_file(s->dirs[s->pids], "pids.current", count, sizeof count) == 0 &&
        strtoul(count, NULL, 10) > 0) {
        empty = 0;
        isolate_stop_forks(s);
        kill_all(s->dirs[s->pids]);
    }
    /* Not the function's cpu group: its other instances are there. */
    for (int i = 0; i < own_dirs(s); i++) empty &= kill_all(s->dirs[i]);
    if (empty && s->tmpdir[0] && fs_remove_tree(AT_FDCWD, s->tmpdir, 1) != 0) empty = 0;
    if (empty && nspare < SPATE_SPARE_SLOTS_MAX) {
        /* pids.events only grows: the next owner starts from here. */
        s->forks_refused = forks_refused(s);
        spare[nspare++] = s;
    } else
        free_slot(s, 0);
    return oom;
}

/* --- Start and end ---------------------------------------------------------------- */

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
            remove_cgroup(child, 1);
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

uid_t isolate_uid(const char *function)
{
    if (!cfg.drop || !cfg.uid_base) return cfg.uid;
    fn_uid *f = strmap_get(&uids, function, strlen(function));
    if (f) return f->uid;
    size_t len = strlen(function);
    if (!(f = malloc(sizeof *f + len + 1))) return cfg.uid;
    memcpy(f->name, function, len + 1);
    /* From the name, so that a function has the same uid after a restart
     * and on every node of a cluster (files it shares stay its own); the
     * next free one when two names meet. Below 2^31 when the base allows:
     * programs that keep a uid in an int would see a negative one. */
    uint64_t top = cfg.uid_base < INT32_MAX ? INT32_MAX : 4294967294ull;
    uint64_t range = top - cfg.uid_base;
    if (range > 1000000000ull) range = 1000000000ull;
    uint64_t off = hash_fnv1a(function, len) % range;
    char key[16];
    for (;;) {
        snprintf(key, sizeof key, "%llu", (unsigned long long)off);
        if (!strmap_get(&uids_taken, key, strlen(key))) break;
        off = (off + 1) % range;
    }
    f->uid = (uid_t)(cfg.uid_base + off);
    char *k = strdup(key);
    if (!k || strmap_put(&uids_taken, k, k) != 0) {
        free(k);
        free(f);
        return cfg.uid;
    }
    if (strmap_put(&uids, f->name, f) != 0) {
        free(f); /* its number stays taken: harmless */
        return cfg.uid;
    }
    return f->uid;
}

int isolate_init(uv_loop_t *l, const char *run_as, uint32_t uid_base, uint32_t pids_max, char *err,
                 size_t errcap)
{
    loop = l;
    uv_timer_init(loop, &stale_timer);
    uv_unref((uv_handle_t *)&stale_timer); /* never keeps spated running */
    cfg.pids_max = pids_max;
    cfg.uid_base = uid_base;
    strmap_init(&uids);
    strmap_init(&uids_taken);
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
        snprintf(tmp_root, sizeof tmp_root, "/tmp/spate/%d", (int)getpid());
        fs_remove_tree(AT_FDCWD, tmp_root, 0);
        if (!cfg.mount_ns && mkdir(tmp_root, 0711) != 0) {
            log_warn("cannot create %s: %s", tmp_root, strerror(errno));
            tmp_root[0] = '\0';
        }
    }

    /* cgroup v1 controllers where writable; none otherwise. */
    for (int i = 0; i < CG_COUNT && geteuid() == 0; i++) {
        char base[96];
        snprintf(base, sizeof base, "/sys/fs/cgroup/%s/spate", controllers[i]);
        if (mkdir(base, 0755) != 0 && errno != EEXIST) continue;
        sweep(base, 1);
        snprintf(cg_root[i], sizeof cg_root[i], "%s/%d", base, (int)getpid());
        if (mkdir(cg_root[i], 0755) != 0 && errno != EEXIST) cg_root[i][0] = '\0';
    }
    cfg.cgroups = cg_root[CG_MEMORY][0] != '\0';
    if (!cfg.cgroups) log_warn("no writable memory cgroup: --memory is enforced with RLIMIT_AS");
    if (!cg_root[CG_PIDS][0]) log_warn("no writable pids cgroup: no per-instance process limit");
    if (!cg_root[CG_CPU][0]) log_warn("no writable cpu cgroup: cpu quotas are not enforced");
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

static void free_uid(const char *key, void *value, void *data)
{
    fn_uid *f = value;
    if (cg_root[CG_CPU][0]) { /* its cpu group, empty by now */
        char dir[200];
        snprintf(dir, sizeof dir, "%s/u%u", cg_root[CG_CPU], (unsigned)f->uid);
        remove_cgroup(dir, 1);
    }
    free(f);
}

static void free_key(const char *key, void *value, void *data)
{
    free(value);
}

void isolate_cleanup(void)
{
    while (nspare > 0) free_slot(spare[--nspare], 1);
    retry_stale(1);
    strmap_each(&uids, free_uid, NULL);
    strmap_free(&uids);
    strmap_each(&uids_taken, free_key, NULL);
    strmap_free(&uids_taken);
    if (loop) uv_close((uv_handle_t *)&stale_timer, NULL);
    for (int i = 0; i < CG_COUNT; i++)
        if (cg_root[i][0]) rmdir(cg_root[i]);
    if (tmp_root[0]) fs_remove_tree(AT_FDCWD, tmp_root, 0);
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

/* --- A version's zygote ------------------------------------------------------------ */

struct isolate_version {
    char cgroups[1600];
    int ndirs;
    char dirs[3][512];
    int pids, own; /* index of the pids cgroup (or -1); dirs[0..own) are the version's */
    isolate_version *next;
};

/* Live versions, for isolate_version_kill_all. */
static isolate_version *versions;
static uint64_t next_version = 1;

/* Creates cgroup name of controller c for a version; root keeps
 * cgroup.procs. -1 when it cannot. */
static int version_cgroup(isolate_version *v, int c, const char *name)
{
    char *dir = v->dirs[v->ndirs];
    snprintf(dir, sizeof v->dirs[0], "%s/%s", cg_root[c], name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        log_warn("cannot create cgroup %s: %s", dir, strerror(errno));
        return -1;
    }
    return v->ndirs++;
}

static void version_drop_last(isolate_version *v, const char *what)
{
    log_warn("cannot %s in %s: %s", what, v->dirs[v->ndirs - 1], strerror(errno));
    rmdir(v->dirs[--v->ndirs]);
}

isolate_version *isolate_version_acquire(uint32_t memory_mb, uid_t uid)
{
    isolate_version *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->pids = -1;
    char name[32], value[32];
    snprintf(name, sizeof name, "v%llu", (unsigned long long)next_version++);
    if (cg_root[CG_MEMORY][0] && version_cgroup(v, CG_MEMORY, name) >= 0) {
        /* memory+swap too, or swap would hold what memory may not. */
        snprintf(value, sizeof value, "%llu", (unsigned long long)memory_mb << 20);
        if (write_file(v->dirs[v->ndirs - 1], "memory.limit_in_bytes", value) != 0)
            version_drop_last(v, "limit memory");
        else
            write_file(v->dirs[v->ndirs - 1], "memory.memsw.limit_in_bytes", value);
    }
    if (cg_root[CG_PIDS][0] && (v->pids = version_cgroup(v, CG_PIDS, name)) >= 0) {
        snprintf(value, sizeof value, "%u", cfg.pids_max + SPATE_ZYGOTE_PIDS_HEADROOM);
        if (write_file(v->dirs[v->pids], "pids.max", value) != 0) {
            version_drop_last(v, "limit processes");
            v->pids = -1;
        }
    }
    v->own = v->ndirs;
    /* The function's cpu group (choose_cpu), shared with its instances:
     * spate_preload's work weighs as the function's. Not the version's to
     * kill or remove. */
    if (cg_root[CG_CPU][0]) {
        snprintf(name, sizeof name, "u%u", (unsigned)uid);
        char *dir = v->dirs[v->ndirs];
        snprintf(dir, sizeof v->dirs[0], "%s/%s", cg_root[CG_CPU], name);
        if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
            char procs[600];
            snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
            /* Its instances join it themselves, as add_cgroup does. */
            if (!cfg.drop || chown(procs, uid, cfg.gid) == 0) v->ndirs++;
        }
    }
    size_t used = 0;
    for (int i = 0; i < v->ndirs; i++) {
        used += (size_t)snprintf(v->cgroups + used, sizeof v->cgroups - used, "%s%s", i ? "|" : "",
                                 v->dirs[i]);
    }
    v->next = versions;
    versions = v;
    return v;
}

const char *isolate_version_cgroups(const isolate_version *v)
{
    return v ? v->cgroups : "";
}

int isolate_version_kill(isolate_version *v)
{
    if (!v) return 1;
    /* pids.max 0 first: a fork bomb cannot replace what is killed. */
    if (v->pids >= 0) write_file(v->dirs[v->pids], "pids.max", "0");
    int empty = 1;
    for (int i = 0; i < v->own; i++) empty &= kill_all(v->dirs[i]);
    return empty;
}

void isolate_version_release(isolate_version *v)
{
    if (!v) return;
    for (isolate_version **p = &versions; *p; p = &(*p)->next) {
        if (*p == v) {
            *p = v->next;
            break;
        }
    }
    isolate_version_kill(v);
    /* Killed processes leave their cgroup only once they have exited: what
     * is still busy is retried from the loop (remember_stale). */
    for (int i = 0; i < v->own; i++)
        if (!remove_cgroup(v->dirs[i], 0)) remember_stale(v->dirs[i]);
    free(v);
}

void isolate_version_kill_all(void)
{
    for (isolate_version *v = versions; v; v = v->next) isolate_version_kill(v);
}

/* --- spate-runner's environment ---------------------------------------------------- */

char **isolate_runner_env(void)
{
    static char *env[8];
    static char store[3][1024];
    if (env[0]) return env;
    static const char *const passthrough[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
    int n = 0;
    env[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(passthrough[i]);
        if (!v) continue;
        snprintf(store[i], sizeof store[i], "%s=%s", passthrough[i], v);
        env[n++] = store[i];
    }
    env[n] = NULL;
    return env;
}

static int write_whole(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int isolate_env_fd(char *const *env, const char *extra)
{
    int fd = memfd_create("spate-env", MFD_CLOEXEC);
    if (fd < 0) return -1;
    for (char *const *e = env; e && *e; e++)
        if (write_whole(fd, *e, strlen(*e) + 1) != 0) goto fail;
    if (extra && write_whole(fd, extra, strlen(extra) + 1) != 0) goto fail;
    return fd;
fail:;
    int err = errno;
    close(fd);
    errno = err;
    return -1;
}
