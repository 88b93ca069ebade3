/*
 * limits.c - the node's limits as pools meet them: a start refused for lack
 * of descriptors, processes or memory, or by --max-instances (common/err.h,
 * ERR_LIMIT_MAP). The callers it keeps from running are answered
 * POOL_UNAVAILABLE with the limit (inv->limit_err), each refusal is counted
 * by limit, and spated's log says it once per episode: when a limit first
 * refuses, and when starts go through again, not at every refusal.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/isolate.h"
#include "runtime/zygote.h"
#include "sched/pool/internal.h"

/* Node-wide, as node_live (instances.c): every pool runs on the one loop. */
static struct {
    uint64_t refusals; /* callers answered with it (invocations, deploys) */
    uint64_t hits;     /* starts it refused in the current episode */
    int active;        /* it refused a start and none went through since */
    int told;          /* this episode's warning was logged: its end is too */
    uint64_t warned;   /* loop ms of the last warning, 0: never */
} limits[ERR_LIMITS];

uint64_t pool_limit_refusals(int limit)
{
    return limit >= 0 && limit < ERR_LIMITS ? limits[limit].refusals : 0;
}

void pool__limit_hit(pool *p, int err, const char *what)
{
    int l = err_limit(err);
    if (l < 0) return;
    if (!limits[l].active) {
        limits[l].active = 1;
        limits[l].hits = 0;
    }
    limits[l].hits++;
    if (limits[l].told) return;
    uint64_t now = pool__now_ms(p);
    /* A limit that flaps (one start in, the next refused) warns at most
     * once per SPATE_LIMIT_LOG_INTERVAL_MS (the counter has every refusal);
     * an episode that began within it is told at its first refusal after. */
    if (limits[l].warned && now - limits[l].warned < SPATE_LIMIT_LOG_INTERVAL_MS) return;
    limits[l].warned = now ? now : 1;
    limits[l].told = 1;
    log_warn("node limit reached: %s: %s; until it eases, calls wait for the function's "
             "running instances, or get 503 %s when it has none (counted in "
             "spate_node_limit_refusals_total{limit=\"%s\"}, not logged each time) fn=%s",
             what, err_str(err), err_limit_code(l), err_limit_label(l), p->name);
}

void pool__limits_eased(pool *p)
{
    for (int l = 0; l < ERR_LIMITS; l++) {
        if (!limits[l].active) continue;
        limits[l].active = 0;
        /* Only the end of an episode whose start was logged: a limit that
         * flaps says both at most once per SPATE_LIMIT_LOG_INTERVAL_MS. */
        if (!limits[l].told) continue;
        log_info("node limit eased: %s (a start went through, fn=%s); %llu start attempt%s "
                 "refused since it was reached (callers answered 503 are counted in "
                 "spate_node_limit_refusals_total)",
                 err_limit_label(l), p->name, (unsigned long long)limits[l].hits,
                 limits[l].hits == 1 ? " was" : "s were");
        limits[l].told = 0;
        limits[l].hits = 0;
    }
}

void pool__limit_count(int err)
{
    int l = err_limit(err);
    if (l >= 0) limits[l].refusals++;
}

void pool__refuse(pool *p, invocation *inv, int err, const char *what)
{
    char msg[SPATE_LOAD_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s: %s", what, err_str(err));
    pool__limit_count(err);
    inv->limit_err = err;
    pool__finish_msg(p, inv, POOL_UNAVAILABLE, msg);
}

void pool__refuse_waiting(pool *p, int err, const char *what)
{
    /* Emptied before any answer: an answer may queue new work. */
    list_node refused;
    list_init(&refused);
    while (p->nwaiting > 0) list_push_back(&refused, &pool__dequeue(p)->link);
    while (!list_empty(&refused)) {
        invocation *inv = list_entry(list_first(&refused), invocation, link);
        list_remove(&inv->link);
        pool__refuse(p, inv, err, what);
    }
}

/* A start failed with err: a node limit is told once and answers the
 * waiting callers when nothing of the pool could serve them; with live
 * instances they wait, and one whose wait ends is told the limit. */
void pool__start_refused(pool *p, int err, const char *what)
{
    pool__limit_hit(p, err, what);
    p->refused = err;
    if (pool__live(p) == 0) pool__refuse_waiting(p, err, what);
}

static uint64_t open_descriptors(void)
{
    uint64_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n ? n - 1 : 0; /* not the one opendir holds */
}

static uint64_t memory_available(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f) return 0;
    char line[128];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
    fclose(f);
    return (uint64_t)kib * 1024;
}

void pool_headroom_get(pool_headroom *out)
{
    memset(out, 0, sizeof *out);
    out->descriptors = open_descriptors();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->descriptors_max = rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
    out->has_processes = isolate_node_pids(&out->processes, &out->processes_max) == 0;
    out->instances = pool_node_live();
    out->instances_max = pool_node_max();
    pool_zygote_stats zs;
    pool_zygote_stats_get(&zs);
    out->zygotes = zs.running; /* counted against the budget (zygotes.c) */
    out->zygotes_max = zs.max;
    out->memory_available = memory_available();
    for (int l = 0; l < ERR_LIMITS; l++) out->refusals[l] = limits[l].refusals;
}
