/*
 * version.c - the cgroups of a version's zygote, which runs function code
 * (spate_preload) and all it forks: root keeps their cgroup.procs, and
 * whatever they hold dies with the version (internal.h has who owns what).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/limits.h"
#include "common/log.h"
#include "runtime/isolate/internal.h"

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
    snprintf(dir, sizeof v->dirs[0], "%s/%s", isolate__host.cg_root[c], name);
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

uint64_t isolate_zygote_memory(uint32_t memory_mb, uint32_t instances)
{
    uint64_t per_fork = ((uint64_t)SPATE_ZYGOTE_FORK_KIB + SPATE_ZYGOTE_FORK_KIB_PER_MB * memory_mb)
                        << 10;
    return ((uint64_t)memory_mb << 20) + ((uint64_t)instances + SPATE_ZYGOTE_FORK_SLACK) * per_fork;
}

isolate_version *isolate_version_acquire(uint32_t memory_mb, uint32_t instances, uid_t uid)
{
    const isolate_config *cfg = isolate_get();
    isolate_version *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->pids = -1;
    char name[32], value[32];
    snprintf(name, sizeof name, "v%llu", (unsigned long long)next_version++);
    if (isolate__host.cg_root[CG_MEMORY][0] && version_cgroup(v, CG_MEMORY, name) >= 0) {
        /* memory+swap too, or swap would hold what memory may not. The
         * function's memory, and what each instance's fork is charged to
         * the zygote while the instance lives (limits.h). That room is 160
         * KiB and 0.3% of the function's memory per instance: spate_preload
         * gains a few percent of what the instances may hold together,
         * never room that matters beyond the function's own. */
        snprintf(value, sizeof value, "%llu",
                 (unsigned long long)isolate_zygote_memory(memory_mb, instances));
        if (isolate__write_file(v->dirs[v->ndirs - 1], "memory.limit_in_bytes", value) != 0)
            version_drop_last(v, "limit memory");
        else
            isolate__write_file(v->dirs[v->ndirs - 1], "memory.memsw.limit_in_bytes", value);
    }
    if (isolate__host.cg_root[CG_PIDS][0] && (v->pids = version_cgroup(v, CG_PIDS, name)) >= 0) {
        snprintf(value, sizeof value, "%u", cfg->pids_max + SPATE_ZYGOTE_PIDS_HEADROOM);
        if (isolate__write_file(v->dirs[v->pids], "pids.max", value) != 0) {
            version_drop_last(v, "limit processes");
            v->pids = -1;
        }
    }
    v->own = v->ndirs;
    /* The function's cpu group (choose_cpu), shared with its instances:
     * spate_preload's work weighs as the function's. Not the version's to
     * kill or remove. */
    if (isolate__host.cg_root[CG_CPU][0]) {
        snprintf(name, sizeof name, "u%u", (unsigned)uid);
        char *dir = v->dirs[v->ndirs];
        snprintf(dir, sizeof v->dirs[0], "%s/%s", isolate__host.cg_root[CG_CPU], name);
        if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
            char procs[600];
            snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
            /* Its instances join it themselves, as add_cgroup does. */
            if (!cfg->drop || chown(procs, uid, cfg->gid) == 0) v->ndirs++;
        }
    }
    /* Joined with '|': each directory is under 512 bytes, so all three
     * and their separators fit (an snprintf into the same object as its
     * arguments is -Wrestrict to an optimising compiler). */
    _Static_assert(sizeof v->cgroups >= sizeof v->dirs + 2, "room for every cgroup directory");
    char *out = v->cgroups;
    for (int i = 0; i < v->ndirs; i++) {
        size_t n = strnlen(v->dirs[i], sizeof v->dirs[i] - 1);
        if (i) *out++ = '|';
        memcpy(out, v->dirs[i], n);
        out += n;
    }
    *out = '\0';
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
    if (v->pids >= 0) isolate__write_file(v->dirs[v->pids], "pids.max", "0");
    int empty = 1;
    for (int i = 0; i < v->own; i++) empty &= isolate__kill_all(v->dirs[i]);
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
     * is still busy is retried from the loop (isolate__remember_stale). */
    for (int i = 0; i < v->own; i++)
        if (!isolate__remove_cgroup(v->dirs[i], 0)) isolate__remember_stale(v->dirs[i]);
    free(v);
}

void isolate_version_kill_all(void)
{
    for (isolate_version *v = versions; v; v = v->next) isolate_version_kill(v);
}
