/*
 * pool.h - the instances of one function and the invocations waiting for them.
 *
 * The pool is the dispatcher of one function: an invocation goes to an idle
 * instance (the most recently used, so that the others age out), or waits in a
 * bounded FIFO while a new instance starts, up to the function's maximum. It
 * enforces timeouts, replaces instances that die, stops instances idle longer
 * than the keep-alive (down to the minimum) and runs one zygote per version
 * while it is needed: started by the first invocation (or a deploy's check,
 * or a minimum of instances), stopped after --zygote-idle without instances,
 * all the node's zygotes within --max-zygotes (zygotes.c).
 *
 * Versions: a deploy loads a new version beside the active one
 * (pool_load_version); once it is registered it becomes active
 * (pool_activate). The old version retires: its idle instances stop at once,
 * busy ones after their invocation, and its zygote when none is left.
 */
#ifndef SPATE_POOL_H
#define SPATE_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "common/fnconfig.h"
#include "common/limits.h"
#include "common/list.h"
#include "metrics/histogram.h"
#include "runtime/fnlog.h"
#include "store/queue.h"

typedef struct pool pool;
typedef struct pinst pinst;

enum pool_outcome {
    POOL_OK,          /* output in body */
    POOL_FAILED,      /* the function reported an error: body is its message */
    POOL_CRASHED,     /* the instance died or could not start: body says how */
    POOL_TIMEOUT,     /* ran or waited past the timeout */
    POOL_OVERLOADED,  /* the wait queue is full */
    POOL_UNAVAILABLE, /* the function cannot run now (loading failed, shutting down, deleted) */
};
#define POOL_OUTCOMES 6

/* "ok", "error", "crashed", "timeout", "rejected", "unavailable". */
const char *pool_outcome_name(enum pool_outcome o);

typedef struct invocation invocation;
/* Called exactly once per invocation; body is borrowed for the call. */
typedef void (*invocation_done_cb)(invocation *inv, enum pool_outcome outcome, const char *body,
                                   size_t len, void *data);

struct invocation {
    /* Set by the caller; borrowed until done is called. */
    const char *request_id;
    const void *payload;
    uint32_t payload_len;
    uint32_t attempt;  /* 1 on first delivery */
    const char *topic; /* NULL for a direct invoke */
    const char *key;
    const queue_attrs *attrs;  /* the message's attributes, NULL: none */
    uint32_t timeout_limit_ms; /* 0: the version's timeout; else the shorter of the two */
    uint32_t lineage;          /* a triggered invocation's place in its chain (common/lambda.h) */
    invocation_done_cb done;
    void *data;
    /* Set by the pool before done: with POOL_UNAVAILABLE, the node limit
     * (an ERR_* of ERR_LIMIT_MAP, common/err.h) that kept it from running,
     * whose API code the answer names; else 0. */
    int limit_err;

    /* Private to the pool. */
    list_node link;
    uint64_t wait_deadline; /* loop ms */
    uint64_t wait_seen;     /* loop ms: seen past wait_deadline after a stall, or 0 */
    uint64_t queued_ns;
    int wait_observed; /* its queue wait is in the histogram (one start counted) */
    pinst *runner;
    uint32_t version;    /* the version that ran it, once dispatched */
    uint32_t timeout_ms; /* of that version; before, of the active one */
};

typedef struct pool_config {
    uint32_t min_instances;
    uint32_t max_instances;
    uint32_t timeout_ms;
    uint32_t keep_alive_ms;
    uint32_t queue_max;
    int prewarm; /* the zygote starts at once and does not stop when idle */
} pool_config;

/* What a version is made of; strings are copied. */
typedef struct pool_version_spec {
    uint32_t version;
    enum fn_runtime runtime;
    uint32_t memory_mb;
    uint32_t cpu_millis;
    uint32_t tmp_mb;
    int no_network;
    const char *object_path; /* native: the shared object; exec: the unpacked root */
    char **env;              /* NULL-terminated "K=V"; the zygote's whole environment */
    pool_config config;
} pool_version_spec;

typedef struct pool_stats {
    uint32_t active_version;
    uint32_t starting, idle, busy, stopping;
    uint32_t spare;   /* a spare instance started ahead (0 or 1), not among the others */
    uint32_t waiting; /* in the wait queue or a mailbox; busy ones run one each */
    uint64_t spares_started, spare_handovers;
    double instance_seconds; /* every instance's life, spares' too, since spated started */
    double spare_seconds;    /* the part of it spent as spares */
    uint64_t invocations, errors, timeouts, crashes, rejected;
    uint64_t cold_starts;        /* invocations that found no instance and got a new one
                                  * (started for them, or a spare handed over) */
    uint64_t last_cold_start_us; /* spawn request to ready; for a spare handed over, what
                                  * the invocation waited until then */
    double service_us;           /* handler time: moving average of results, or what every
                                  * running invocation has already lasted if longer (past
                                  * SPATE_OUTLASTED_MIN_MS, or once one outlasted the
                                  * average); 0 if unknown */
    double service_floor_us;     /* while service_us is 0: what the oldest running invocation
                                  * has lasted, a lower bound of the handler time, once past
                                  * SPATE_OUTLASTED_MIN_MS; else 0 */
    double cold_us;              /* moving average of instance start time */
    uint32_t mailbox;            /* invocations one instance may hold now */
    uint32_t starting_max;       /* instances it starts at once now (its start window) */
    uint32_t desired;            /* instances the autoscaler's rule asks for now (pool__desired:
                                  * the pool's own view, or its triggers' if larger) */
    uint32_t max_instances;      /* of the active version */
    uint32_t min_instances;
    int zygote_pid;         /* 0 when no zygote runs */
    const char *load_error; /* why the active version's zygote last failed, or NULL */
    int start_refused;      /* ERR_*: the node limit that refused its last instance start,
                             * 0 once one went through */
} pool_stats;

#define POOL_METRIC_VERSIONS 4
typedef struct pool_version_outcomes {
    uint32_t version; /* 0: a free slot */
    uint64_t outcomes[POOL_OUTCOMES];
} pool_version_outcomes;

/* What /metrics shows of a pool; counts since spated started. */
typedef struct pool_metrics {
    uint64_t outcomes[POOL_OUTCOMES]; /* by enum pool_outcome */
    histogram duration;               /* handler time, as the instance measured it */
    histogram queue_wait;             /* from pool_invoke until an instance starts it */
    histogram cold_start;             /* from asking for an instance until it is ready */
    /* outcomes again by the version that ran them (label version), for the
     * POOL_METRIC_VERSIONS newest versions the pool ran: an older one's
     * counts are dropped when a newer one needs its slot. version 0: free. */
    pool_version_outcomes by_version[POOL_METRIC_VERSIONS];
} pool_metrics;

/* One finished invocation, as the console lists it. */
typedef struct pool_recent_entry {
    int64_t time_ms;      /* wall clock when it was answered */
    uint32_t duration_us; /* from arrival at the pool until the answer */
    uint32_t version;     /* the version that ran it, or was meant to */
    enum pool_outcome outcome;
    char request_id[64];                    /* cut to 63 bytes */
    char error[SPATE_RECENT_ERROR_MAX + 1]; /* "" for ok; else the answer's text, cut */
} pool_recent_entry;

/* Copies the pool's newest finished invocations (at most
 * SPATE_RECENT_INVOCATIONS, and max), newest first; returns how many. */
size_t pool_recent_get(const pool *p, pool_recent_entry *out, size_t max);

/* The counts of version in a table of POOL_METRIC_VERSIONS: its own slot, a
 * free one, or the oldest version's, which it takes over (zeroed). */
uint64_t *pool_version_slot(pool_version_outcomes *table, uint32_t version);

/* Creates an empty pool. runner_path is borrowed for the life of the pool. */
pool *pool_create(uv_loop_t *loop, const char *function, const char *runner_path);
/* What the function's processes wrote to stdout and stderr. */
fnlog *pool_log(pool *p);
/* side serves an old version of group's function: their starts count
 * together against the last quarter of --max-starting, kept for functions
 * with none in progress. group may leave first. */
void pool_set_group(pool *side, pool *group);

/* Starts a zygote for a new version. cb reports whether the object loaded
 * (message borrowed for the call). Then call pool_activate or pool_discard. */
typedef void (*pool_load_cb)(pool *p, uint32_t version, int status, const char *message,
                             void *data);
int pool_load_version(pool *p, const pool_version_spec *spec, pool_load_cb cb, void *data);
/* Makes a loaded (or, at start-up, not yet loaded) version the active one. */
int pool_activate(pool *p, uint32_t version);
/* Drops a version loaded with pool_load_version that will not be activated. */
void pool_discard(pool *p, uint32_t version);
/* Registers and activates a version without waiting for its zygote, as on
 * start-up: the zygote starts in the background. */
int pool_restore_version(pool *p, const pool_version_spec *spec);

/* Queues an invocation; inv->done is called exactly once (possibly before
 * this returns, e.g. with POOL_OVERLOADED). */
void pool_invoke(pool *p, invocation *inv);
/* Withdraws an invocation that still waits for an instance: done is called
 * with POOL_UNAVAILABLE and 1 is returned. Returns 0 if it already runs (done
 * will follow when it ends). */
int pool_cancel(pool *p, invocation *inv);

void pool_stats_get(const pool *p, pool_stats *out);
const pool_metrics *pool_metrics_get(const pool *p);
/* Whether an invocation would start without waiting for another to end: an
 * idle instance is free, or a new one may start (below the function's and
 * the node's maximum, and its zygote runs or the zygote budget has room). */
int pool_has_room(const pool *p);
/* Activity, for samplers that look only at the pools with something to
 * show: cb(data) is called once when the pool is invoked or starts an
 * instance, and again only after pool_settle found it quiet. */
void pool_on_active(pool *p, void (*cb)(void *data), void *data);
/* 1 when the pool has nothing to show (no instance in any state, nothing
 * waiting): the next activity calls the callback again. 0 otherwise. */
int pool_settle(pool *p);
/* Invocations the pool can put to work at once: its maximum of instances,
 * each with a full mailbox. Callers that feed it (triggers) stay below. */
uint32_t pool_capacity(const pool *p);

/* The node's zygotes: at most max run at once (a full budget stops the
 * least recently used one without instances; when none can go, an
 * invocation that needs a new zygote is refused, POOL_UNAVAILABLE with
 * limit "zygote_budget"); one without instances stops after idle_ms.
 * Lowering max stops idle zygotes at once. */
void pool_set_zygote_budget(uint32_t max, uint32_t idle_ms);
typedef struct pool_zygote_stats {
    uint32_t running;                                 /* zygote processes, loading or ready */
    uint32_t max;                                     /* --max-zygotes */
    uint32_t idle_ms;                                 /* --zygote-idle */
    uint64_t started, idle_stopped, evicted, refused; /* since spated started */
} pool_zygote_stats;
void pool_zygote_stats_get(pool_zygote_stats *out);

/* Spare instances (sched/pool/spares.c): the active version of a function
 * used within idle_ms (an invocation, a deploy) keeps one instance started
 * ahead, handed over to the next invocation that finds none; 0: no spares. */
void pool_set_spare_idle(uint32_t idle_ms);
typedef struct pool_spare_stats {
    uint32_t running; /* spares now, over every function */
    uint32_t idle_ms; /* --spare-idle */
    /* Since spated started: spares started, handed over to an invocation,
     * stopped for lack of use, stopped to give their room to another
     * function's start (--max-instances), ended by themselves. */
    uint64_t started, handovers, idle_stopped, reclaimed, lost;
    double seconds; /* instance-seconds spent as spares */
} pool_spare_stats;
void pool_spare_stats_get(pool_spare_stats *out);
/* A pool's instance-seconds since spated started: all its instances, and
 * its spares' part of them. */
void pool_cost_get(const pool *p, double *instance_s, double *spare_s);

/* The instances the function's triggers want for it (the autoscaler's
 * answer from their topics' backlog, which the pool does not see): the pool
 * may grow to this many while invocations wait, beside what its own view
 * asks for. Holds SPATE_SCALE_HINT_MS; the triggers say it every tick. */
void pool_scale_hint(pool *p, uint32_t desired);

/* The node-wide ceiling on live instances, over every pool. */
void pool_set_node_max(uint32_t max);
uint32_t pool_node_max(void);
/* The node-wide ceiling on instances starting at once (--max-starting): a
 * pool at it starts more as others become ready or fail. */
void pool_set_node_starting_max(uint32_t max);
uint32_t pool_node_live(void);
/* Callers (invocations, deploys) refused since start-up because the node
 * limit numbered limit (common/err.h: ERR_LIMIT_*) was reached. */
uint64_t pool_limit_refusals(int limit);

/* The node's limits and what is left of them (GET /v1/status, /metrics). */
typedef struct pool_headroom {
    uint64_t descriptors, descriptors_max; /* spated's open files, its RLIMIT_NOFILE */
    int has_processes;                     /* 0: no pids cgroup, the two below unknown */
    uint64_t processes, processes_max;     /* of all functions (--max-processes); max 0: none */
    uint32_t instances, instances_max;     /* live instances, --max-instances */
    uint32_t zygotes;                      /* zygote processes running */
    uint32_t zygotes_max;                  /* the zygote budget; 0: none */
    uint64_t memory_available;             /* bytes the host can still give (MemAvailable) */
    uint64_t refusals[ERR_LIMITS];         /* by limit, as pool_limit_refusals */
} pool_headroom;
/* Reads them now: a walk of /proc/self/fd and a few small files. */
void pool_headroom_get(pool_headroom *out);

/* Stops the pool. With drain, waiting and running invocations finish first;
 * without, waiting ones fail and running instances are killed. Then every
 * instance and zygote stops, cb runs, and the pool frees itself. New
 * invocations fail with POOL_UNAVAILABLE from the moment this is called.
 * Calling it again (e.g. without drain, when a grace period ends) hurries it. */
void pool_close(pool *p, int drain, void (*cb)(void *data), void *data);

#endif
