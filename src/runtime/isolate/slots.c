/*
 * slots.c - an instance's slot: its cgroups (memory, pids, its own or its
 * function's cpu group) with their limits and its temporary directory;
 * handed to the instance's user on acquire, taken back and emptied on
 * release, and kept for the next instance when nothing was left behind
 * (internal.h has who owns what).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/isolate/internal.h"

/* Slots of instances that ended cleanly, for the next ones. */
static struct {
    isolate_slot *slot[SPATE_SPARE_SLOTS_MAX];
    int n;
} spare;
/* Names the cgroups and directories of new slots: i1, i2, ... */
static uint64_t next_slot = 1;

static uint64_t oom_kills(const isolate_slot *s)
{
    char text[512];
    if (s->memory < 0 ||
        isolate__read_file(s->dirs[s->memory], "memory.oom_control", text, sizeof text))
        return 0;
    const char *p = strstr(text, "oom_kill ");
    return p ? strtoull(p + 9, NULL, 10) : 0;
}

/* Forks the pids cgroup refused (its limit reached), ever. */
static uint64_t forks_refused(const isolate_slot *s)
{
    char text[64];
    if (s->pids_events_fd >= 0) {
        ssize_t n = pread(s->pids_events_fd, text, sizeof text - 1, 0);
        if (n < 0) return 0;
        text[n] = '\0';
    } else if (s->pids < 0 ||
               isolate__read_file(s->dirs[s->pids], "pids.events", text, sizeof text)) {
        return 0;
    }
    const char *p = strstr(text, "max ");
    return p ? strtoull(p + 4, NULL, 10) : 0;
}

int isolate_cpu_throttled(const isolate_slot *s, uint64_t *periods, uint64_t *throttled)
{
    char text[256];
    if (s->cpu < 0 || !s->cpu_own ||
        isolate__read_file(s->dirs[s->cpu], "cpu.stat", text, sizeof text))
        return -1;
    const char *p = strstr(text, "nr_periods ");
    const char *t = strstr(text, "nr_throttled ");
    if (!p || !t) return -1;
    *periods = strtoull(p + 11, NULL, 10);
    *throttled = strtoull(t + 13, NULL, 10);
    return 0;
}

void isolate_stop_forks(isolate_slot *s)
{
    if (s->pids < 0) return;
    isolate__write_file(s->dirs[s->pids], "pids.max", "0");
    s->forks_stopped = 1;
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
    if (up) isolate__write_file(dir, "memory.memsw.limit_in_bytes", value);
    int rc = isolate__write_file(dir, "memory.limit_in_bytes", value);
    if (!up) isolate__write_file(dir, "memory.memsw.limit_in_bytes", value);
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
    int rc = isolate__write_file(s->dirs[s->cpu], "cpu.cfs_quota_us", value);
    if (rc == 0) s->cpu_millis = millis;
    return rc;
}

/* Adds the cgroup of controller c to the slot; -1 when it cannot. */
static int add_cgroup(isolate_slot *s, int c, const char *name)
{
    const isolate_config *cfg = isolate_get();
    char *dir = s->dirs[s->ndirs];
    snprintf(dir, sizeof s->dirs[0], "%s/%s", isolate__host.cg_root[c], name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        log_warn("cannot create cgroup %s: %s", dir, strerror(errno));
        return -1;
    }
    /* The instance joins by itself, after it has dropped privileges. */
    char procs[600];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    if (cfg->drop && chown(procs, s->owner, cfg->gid) != 0) {
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

static void free_slot(isolate_slot *s, int wait);

static isolate_slot *new_slot(uint32_t memory_mb, uint32_t cpu_millis, uid_t uid)
{
    const isolate_config *cfg = isolate_get();
    isolate_slot *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->memory = s->pids = s->cpu = -1;
    s->pids_events_fd = -1;
    s->owner = uid;
    char name[32];
    snprintf(name, sizeof name, "i%llu", (unsigned long long)next_slot++);
    if (isolate__host.tmp_root[0] && !cfg->mount_ns) {
        snprintf(s->tmpdir, sizeof s->tmpdir, "%s/%s", isolate__host.tmp_root, name);
        if (mkdir(s->tmpdir, 0700) != 0 || (cfg->drop && chown(s->tmpdir, uid, cfg->gid) != 0)) {
            log_warn("cannot create %s: %s", s->tmpdir, strerror(errno));
            rmdir(s->tmpdir);
            s->tmpdir[0] = '\0';
        }
    }
    /* Out of descriptors, a limit cannot be written: the slot is not made
     * (an instance without its limits ran a fork bomb unchecked). */
    int no_fds = 0;
    if (isolate__host.cg_root[CG_MEMORY][0] && (s->memory = add_cgroup(s, CG_MEMORY, name)) >= 0 &&
        set_memory(s, memory_mb) != 0) {
        if (errno == EMFILE || errno == ENFILE) no_fds = errno;
        log_warn("cannot limit memory in %s: %s", s->dirs[s->memory], strerror(errno));
        rmdir(s->dirs[--s->ndirs]);
        s->memory = -1;
    }
    if (isolate__host.cg_root[CG_PIDS][0] && (s->pids = add_cgroup(s, CG_PIDS, name)) >= 0) {
        char value[16];
        snprintf(value, sizeof value, "%u", cfg->pids_max);
        if (isolate__write_file(s->dirs[s->pids], "pids.max", value) != 0) {
            if (errno == EMFILE || errno == ENFILE) no_fds = errno;
            log_warn("cannot limit processes in %s: %s", s->dirs[s->pids], strerror(errno));
            rmdir(s->dirs[--s->ndirs]);
            s->pids = -1;
        } else {
            char path[600];
            snprintf(path, sizeof path, "%s/pids.events", s->dirs[s->pids]);
            s->pids_events_fd = open(path, O_RDONLY | O_CLOEXEC);
            if (s->pids_events_fd < 0 && (errno == EMFILE || errno == ENFILE)) no_fds = errno;
        }
    }
    if (no_fds) {
        free_slot(s, 0);
        errno = no_fds;
        return NULL;
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
    if (!isolate__host.cg_root[CG_CPU][0]) return;
    if (s->cpu >= 0 && s->cpu_own == (cpu_millis != 0) && (s->cpu_own || s->cpu_uid == uid)) {
        if (s->cpu_own && s->cpu_millis != cpu_millis && set_cpu(s, cpu_millis) != 0)
            log_warn("cannot set the cpu quota in %s: %s", s->dirs[s->cpu], strerror(errno));
        return;
    }
    if (s->cpu >= 0) { /* the other kind: let it go */
        if (s->cpu_own && !isolate__remove_cgroup(s->dirs[s->cpu], 0))
            isolate__remember_stale(s->dirs[s->cpu]);
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
        /* (A quota above the node's cpu cgroup's is refused, EINVAL.) In
         * no cpu cgroup the instance ran in the host's root one, limited
         * by nothing (brk10): it goes into its function's, under the
         * node's, without a quota of its own. */
        log_warn("cannot set the cpu quota in %s: %s; the instance has its function's cpu group",
                 s->dirs[s->cpu], strerror(errno));
        rmdir(s->dirs[--s->ndirs]);
        s->cpu = -1;
        choose_cpu(s, 0, uid);
        return;
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
    if (s->pids_events_fd >= 0) close(s->pids_events_fd);
    for (int i = 0; i < own_dirs(s); i++)
        if (!isolate__remove_cgroup(s->dirs[i], wait)) isolate__remember_stale(s->dirs[i]);
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
    const isolate_config *cfg = isolate_get();
    s->owner = uid;
    if (!cfg->drop) return;
    if (s->tmpdir[0] && chown(s->tmpdir, uid, cfg->gid) != 0)
        log_warn("cannot hand %s over: %s", s->tmpdir, strerror(errno));
    chown_procs(s, uid, cfg->gid);
}

/* Whether none of the slot's own cgroups holds a process. */
static int slot_empty(const isolate_slot *s)
{
    for (int i = 0; i < own_dirs(s); i++) {
        char text[16];
        if (isolate__read_file(s->dirs[i], "cgroup.procs", text, sizeof text) != 0 || text[0])
            return 0;
    }
    return 1;
}

isolate_slot *isolate_acquire(uint32_t memory_mb, uint32_t cpu_millis, uid_t uid)
{
    isolate_slot *s = NULL;
    while (!s && spare.n > 0) {
        s = spare.slot[--spare.n];
        /* Root's since its release, and emptied then: a process found there
         * now came through a descriptor opened before; the slot is not reused. */
        if (!slot_empty(s)) {
            log_warn("a kept instance slot (%s) is not empty: not reused", s->dirs[0]);
            for (int i = 0; i < own_dirs(s); i++) isolate__kill_all(s->dirs[i]);
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
    const isolate_config *cfg = isolate_get();
    int oom = s->memory >= 0 && oom_kills(s) > s->oom_kills;
    /* No process of its user may join these cgroups from now on (a helper
     * that outlived the instance, moving itself into the slot the next
     * function gets): they are root's until the next hand_over. */
    int empty = !cfg->drop || chown_procs(s, 0, 0) == 0;
    /* Stopped at its timeout or limit (isolate_stop_forks): its pids.max is
     * 0. Its processes are often gone by now (pids.current 0), and a slot
     * kept so left every next instance unable to fork ("Cannot fork"). */
    if (s->forks_stopped) empty = 0;
    /* What the instance started may outlive it (a fork bomb): no more forks
     * (pids.max 0) before the first kill, or each kill makes room for a new
     * fork; then kill every process left in its cgroups. Only a slot found
     * empty is kept; the others go when their processes have. */
    char count[32];
    if (s->pids >= 0 &&
        isolate__read_file(s->dirs[s->pids], "pids.current", count, sizeof count) == 0 &&
        strtoul(count, NULL, 10) > 0) {
        empty = 0;
        isolate_stop_forks(s);
        isolate__kill_all(s->dirs[s->pids]);
    }
    /* Not the function's cpu group: its other instances are there. */
    for (int i = 0; i < own_dirs(s); i++) empty &= isolate__kill_all(s->dirs[i]);
    if (empty && s->tmpdir[0] && fs_remove_tree(AT_FDCWD, s->tmpdir, 1) != 0) empty = 0;
    if (empty && spare.n < SPATE_SPARE_SLOTS_MAX) {
        /* pids.events only grows: the next owner starts from here. */
        s->forks_refused = forks_refused(s);
        spare.slot[spare.n++] = s;
    } else
        free_slot(s, 0);
    return oom;
}

void isolate__free_spare_slots(void)
{
    while (spare.n > 0) free_slot(spare.slot[--spare.n], 1);
}
