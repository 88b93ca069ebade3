/*
 * instance.h - one instance as the pool sees it, whatever its runtime: a
 * process that runs invocations one at a time, in the order it was given
 * them, and reports each result and, exactly once, its end.
 *
 * Runtimes (native.c: a zygote's child speaking frames; exec/: a bootstrap
 * speaking the Lambda Runtime API) embed `instance` first in their own
 * struct and fill in its ops.
 */
#ifndef SPATE_INSTANCE_H
#define SPATE_INSTANCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "runtime/frame.h"

typedef struct instance instance;

typedef struct instance_callbacks {
    /* Initialised (spate_init, or the first /next); takes invocations. */
    void (*ready)(instance *inst, void *data);
    /* The oldest invocation sent finished after duration_us in the handler.
     * body is the output, or the error message when failed; borrowed for the
     * call. */
    void (*result)(instance *inst, int failed, uint32_t duration_us, const char *body, size_t len,
                   void *data);
    /* The instance is gone; why is e.g. "killed by signal 11 (Segmentation
     * fault)". Called once; the instance is freed after it returns. */
    void (*exited)(instance *inst, const char *why, void *data);
    /* The oldest invocation sent did not run: instance_withdraw asked for it
     * back without being sure of it. It comes instead of its result. */
    void (*withdrawn)(instance *inst, void *data);
} instance_callbacks;

typedef struct instance_ops {
    int (*invoke)(instance *inst, const frame_invoke *inv);
    void (*kill)(instance *inst);
    int (*usable)(const instance *inst);
    uint32_t (*withdraw)(instance *inst, uint32_t n);
    pid_t (*pid)(const instance *inst);
    /* Optional (NULL: always 1): whether the oldest invocation sent and not
     * answered has reached the function's code. */
    int (*delivered)(const instance *inst);
    /* Optional (NULL: always 1): whether its process still runs, asked of
     * the system now (not what spated has heard): 0 once it has exited. */
    int (*alive)(const instance *inst);
    /* Optional (NULL: never): whether, not yet ready, it is starved now —
     * its processes together runnable, having had less than half the CPU
     * they could have had since it began (its quota, or a core): a machine
     * too loaded to run it, not a hang (asleep) nor a spin (its CPU near
     * what it could have). */
    int (*starved)(const instance *inst);
} instance_ops;

/* What every instance of a version is held to (runtime/isolate.h). */
typedef struct instance_limits {
    uv_loop_t *loop;
    struct fnlog *log; /* where its output goes (runtime/fnlog.h); NULL: spated's stdout */
    uint32_t version;  /* of the function, to tag its output with */
    uint32_t memory_mb;
    uint32_t cpu_millis; /* 0: no quota */
    uid_t uid;           /* the function's (runtime/isolate.h) */
} instance_limits;

struct isolate_slot;
struct output;

struct instance {
    const instance_ops *ops;
    const instance_callbacks *cb; /* borrowed for the life of the instance */
    void *data;
    uint64_t id;              /* spated-wide, for logs */
    struct isolate_slot *iso; /* its cgroups and temporary directory */
    struct output *out;       /* reads its stdout and stderr */
    uint32_t version;         /* of its function, as its output is tagged */
    int output_unread;        /* set with each result: output may still be in the pipe */
    uint32_t memory_mb;
    int limit_err; /* set before exited when a node limit (ERR_*, common/err.h) kept it
                    * from starting, e.g. the zygote's fork failed with EAGAIN; else 0 */
    int starved;   /* set before exited: killed before it was ready while runnable, having
                    * had less than half the CPU it could have had since it began (its
                    * quota, or a core): a machine too loaded to run it, not the function */
};

/* Sends one invocation; the instance must be ready. Several may be queued:
 * it runs them one at a time, in order, and results come back in that order.
 * Everything in inv is copied. */
static inline int instance_invoke(instance *i, const frame_invoke *inv)
{
    return i->ops->invoke(i, inv);
}

/* Takes back the n newest invocations sent, none of which may have started:
 * n is every one sent but the oldest, still unanswered. Returns n when the
 * instance is sure none of them will run (they get no result), else 0: then
 * each that had not started when the request reached it comes back through
 * the withdrawn callback instead of its result. */
static inline uint32_t instance_withdraw(instance *i, uint32_t n)
{
    return i->ops->withdraw(i, n);
}

/* Kills the process (SIGKILL); exited follows. Safe to call more than once. */
static inline void instance_kill(instance *i)
{
    i->ops->kill(i);
}

/* False once the instance is known to be ending: give it no more work. */
static inline int instance_usable(const instance *i)
{
    return i->ops->usable(i);
}

static inline pid_t instance_pid(const instance *i)
{
    return i->ops->pid(i);
}

/* Whether the oldest invocation sent and not yet answered has reached the
 * function's code (an exec bootstrap asked for it with /next), so that an
 * instance ending now ended during it; 0 when the instance can tell it has
 * not (then it may run anywhere else). Runtimes that cannot tell say 1. */
static inline int instance_delivered(const instance *i)
{
    return i->ops->delivered ? i->ops->delivered(i) : 1;
}

/* Whether the process runs, as the system says now: before handing a spare
 * started long ago an invocation (killed meanwhile, its end not yet read). */
static inline int instance_alive(const instance *i)
{
    return i->ops->alive ? i->ops->alive(i) : 1;
}

/* Whether a start not yet ready is starved of CPU now (instance_ops). */
static inline int instance_starved(const instance *i)
{
    return i->ops->starved ? i->ops->starved(i) : 0;
}

/* Fills the common part. */
void instance_init(instance *i, const instance_ops *ops, const instance_callbacks *cb, void *data);

/* The request it runs now (NULL: none), to tag its output with. */
void instance_set_request(instance *i, const char *request_id);

/* For runtimes, before the process starts: its cgroups, temporary directory
 * and output pipes, whose write ends out_fds[0] and [1] are for the
 * process's stdout and stderr (-1 when there is no log; close them once the
 * process has them). ERR_NOMEM or ERR_IO; what the host does not allow is
 * left out. */
int instance_isolate(instance *i, const instance_limits *l, int out_fds[2]);
/* "CGROUPS\tTMPDIR" for the runner (runner/sandbox.h), or "\t". */
void instance_sandbox_text(const instance *i, char *out, size_t cap);
/* 1 when the instance has tried to run more processes and threads than its
 * limit allows (isolate_at_pids_limit). */
int instance_at_pids_limit(const instance *i);
/* Its processes may fork no more (isolate_stop_forks): before killing one
 * that may be a fork bomb. */
void instance_stop_forks(instance *i);
/* After the process has ended: releases them (the output left in the pipe is
 * read first). Returns 1 and says so in why when the memory limit killed it. */
int instance_release(instance *i, char *why, size_t cap);

#endif
