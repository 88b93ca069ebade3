#include "runtime/isolate.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

static isolate_config cfg;
static void retry_stale(void);
static char tmp_root[128];
static char cg_root[3][128]; /* memory, pids, cpu: "" when not available */
static const char *const controllers[3] = {"memory", "pids", "cpu"};

static int write_file(const char *dir, const char *name, const char *value)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, value, strlen(value));
    close(fd);
    return n == (ssize_t)strlen(value) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int isolate_init(const char *run_as, uint32_t pids_max, char *err, size_t errcap)
{
    cfg.pids_max = pids_max;
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam(run_as);
        if (!pw) {
            snprintf(err, errcap, "--run-as: no user '%s'", run_as);
            return ERR_INVAL;
        }
        cfg.drop = pw->pw_uid != 0;
        cfg.uid = pw->pw_uid;
        cfg.gid = pw->pw_gid;
        snprintf(cfg.user, sizeof cfg.user, "%s", run_as);
        if (!cfg.drop) log_warn("instances run as root (--run-as %s)", run_as);
    } else {
        cfg.uid = geteuid();
        cfg.gid = getegid();
        log_warn("spated is not root: instances run as its own user, without cgroups");
    }
    /* Temporary directories: /tmp/spate/<pid>/<instance>. */
    mkdir("/tmp/spate", 0711);
    snprintf(tmp_root, sizeof tmp_root, "/tmp/spate/%d", (int)getpid());
    remove_tree(tmp_root);
    if (mkdir(tmp_root, 0711) != 0) log_warn("cannot create %s: %s", tmp_root, strerror(errno));
    chmod(tmp_root, 0711);

    /* cgroups: v1 controllers where writable (these hosts), else none. */
    int have = 0;
    for (int i = 0; i < 3 && geteuid() == 0; i++) {
        char base[96];
        snprintf(base, sizeof base, "/sys/fs/cgroup/%s/spate", controllers[i]);
        if (mkdir(base, 0755) != 0 && errno != EEXIST) continue;
        snprintf(cg_root[i], sizeof cg_root[i], "%s/%d", base, (int)getpid());
        if (mkdir(cg_root[i], 0755) != 0 && errno != EEXIST) {
            cg_root[i][0] = '\0';
            continue;
        }
        have++;
    }
    cfg.cgroups = cg_root[0][0] != '\0';
    if (!cfg.cgroups)
        log_warn("no writable memory cgroup: --memory is enforced with RLIMIT_AS and there is "
                 "no per-instance process limit");
    else if (!cg_root[1][0])
        log_warn("no writable pids cgroup: no per-instance process limit");
    else if (have < 3)
        log_warn("no writable cpu cgroup: cpu quotas are not enforced");
    return 0;
}

const isolate_config *isolate_get(void)
{
    return &cfg;
}

void isolate_cleanup(void)
{
    retry_stale();
    for (int i = 0; i < 3; i++)
        if (cg_root[i][0]) rmdir(cg_root[i]);
    if (tmp_root[0]) remove_tree(tmp_root);
}

/* Kills what is left in a cgroup and removes it; 0 when it is still busy. */
static int remove_cgroup(const char *dir)
{
    for (int round = 0; round < 5; round++) {
        if (rmdir(dir) == 0 || errno == ENOENT) return 1;
        if (errno != EBUSY) return 1; /* nothing more to do about it */
        char path[560];
        snprintf(path, sizeof path, "%s/cgroup.procs", dir);
        FILE *f = fopen(path, "r");
        int pid;
        while (f && fscanf(f, "%d", &pid) == 1) kill(pid, SIGKILL);
        if (f) fclose(f);
        usleep(100); /* a killed process leaves the cgroup as it exits */
    }
    return 0;
}

#define STALE_MAX 256
static char *stale[STALE_MAX];

static void remember_stale(const char *dir)
{
    for (int i = 0; i < STALE_MAX; i++)
        if (!stale[i]) {
            stale[i] = strdup(dir);
            return;
        }
    log_warn("cannot remove cgroup %s: still busy", dir);
}

static void retry_stale(void)
{
    for (int i = 0; i < STALE_MAX; i++)
        if (stale[i] && remove_cgroup(stale[i])) {
            free(stale[i]);
            stale[i] = NULL;
        }
}

int isolate_reachable(const char *path, char *why, size_t cap)
{
    if (!cfg.drop) return 0;
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    /* Every directory on the way needs search permission for the user. */
    for (char *slash = p; slash;) {
        slash = strchr(slash + 1, '/');
        if (slash) *slash = '\0';
        struct stat st;
        if (p[0] && stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            mode_t need = st.st_uid == cfg.uid ? 0100 : st.st_gid == cfg.gid ? 0010 : 0001;
            if (!(st.st_mode & need)) {
                snprintf(why, cap,
                         "functions run as user '%s', who cannot reach '%s' (mode %04o): give it "
                         "search permission (chmod o+x), choose another --data or --run-as",
                         cfg.user, p, (unsigned)(st.st_mode & 07777));
                return ERR_INVAL;
            }
        }
        if (slash) *slash = '/';
    }
    return 0;
}

/* A name safe in a path: the function name already is ([A-Za-z0-9_-]). */
void isolate_prepare(isolate_slot *s, const char *function, uint64_t instance, uint32_t memory_mb,
                     uint32_t cpu_millis)
{
    memset(s, 0, sizeof *s);
    char name[96];
    snprintf(name, sizeof name, "%.64s-%llu", function, (unsigned long long)instance);
    if (tmp_root[0]) {
        snprintf(s->tmpdir, sizeof s->tmpdir, "%s/%s", tmp_root, name);
        if (mkdir(s->tmpdir, 0700) != 0 || (cfg.drop && chown(s->tmpdir, cfg.uid, cfg.gid) != 0)) {
            log_warn("cannot create %s: %s", s->tmpdir, strerror(errno));
            s->tmpdir[0] = '\0';
        }
    }
    size_t used = 0;
    for (int i = 0; i < 3; i++) {
        if (!cg_root[i][0] || (i == 2 && !cpu_millis)) continue;
        char *dir = s->dirs[s->ndirs];
        snprintf(dir, sizeof s->dirs[0], "%s/%s", cg_root[i], name);
        if (mkdir(dir, 0755) != 0) {
            log_warn("cannot create cgroup %s: %s", dir, strerror(errno));
            continue;
        }
        char value[32];
        int ok = 1;
        if (i == 0) {
            snprintf(value, sizeof value, "%llu", (unsigned long long)memory_mb << 20);
            ok = write_file(dir, "memory.limit_in_bytes", value) == 0;
            /* No swap either, where the kernel accounts it. */
            write_file(dir, "memory.memsw.limit_in_bytes", value);
            snprintf(s->memory_dir, sizeof s->memory_dir, "%s", dir);
        } else if (i == 1) {
            snprintf(value, sizeof value, "%u", cfg.pids_max);
            ok = write_file(dir, "pids.max", value) == 0;
        } else {
            snprintf(value, sizeof value, "%u", cpu_millis * 100); /* per 100 ms period */
            ok = write_file(dir, "cpu.cfs_period_us", "100000") == 0 &&
                 write_file(dir, "cpu.cfs_quota_us", value) == 0;
        }
        /* The instance joins by itself, after it has dropped privileges. */
        char procs[560];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
        if (!ok || (cfg.drop && chown(procs, cfg.uid, cfg.gid) != 0)) {
            log_warn("cannot set up cgroup %s: %s", dir, strerror(errno));
            rmdir(dir);
            if (i == 0) s->memory_dir[0] = '\0';
            continue;
        }
        size_t len = strlen(dir);
        if (used + len + 2 > sizeof s->cgroups) continue; /* cannot happen: sized for three */
        if (used) s->cgroups[used++] = '|';
        memcpy(s->cgroups + used, dir, len + 1);
        used += len;
        s->ndirs++;
    }
}

int isolate_release(isolate_slot *s)
{
    int oom = 0;
    if (s->memory_dir[0]) {
        char path[560], line[128];
        snprintf(path, sizeof path, "%s/memory.oom_control", s->memory_dir);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) {
            unsigned long long n;
            if (sscanf(line, "oom_kill %llu", &n) == 1 && n > 0) oom = 1;
        }
        if (f) fclose(f);
    }
    /* What the instance started may outlive it (a fork bomb): kill every
     * process left in its cgroups; a cgroup still busy is retried later. */
    for (int i = 0; i < s->ndirs; i++)
        if (!remove_cgroup(s->dirs[i])) remember_stale(s->dirs[i]);
    retry_stale();
    if (s->tmpdir[0]) remove_tree(s->tmpdir);
    s->ndirs = 0;
    s->tmpdir[0] = '\0';
    return oom;
}
