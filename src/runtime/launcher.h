/*
 * launcher.h - what starts the instances of one function version, whatever
 * its runtime: for native functions a zygote (zygote.h) that has loaded the
 * shared object; for exec functions the unpacked root whose `bootstrap` each
 * instance runs (exec.h). The pool talks only to this.
 */
#ifndef SPATE_LAUNCHER_H
#define SPATE_LAUNCHER_H

#include <stdint.h>
#include <uv.h>

#include "common/fnconfig.h"
#include "runtime/instance.h"

typedef struct launcher launcher;

typedef struct launcher_config {
    enum fn_runtime runtime;
    const char *runner_path; /* native: spate-runner */
    const char *path;        /* native: the shared object; exec: the unpacked root */
    const char *function;
    uint32_t version;
    uint32_t memory_mb;
    uint32_t max_instances; /* native: instances the zygote may have at once */
    uint32_t cpu_millis;    /* cgroup quota, thousandths of a core; 0: none */
    uint32_t tmp_mb;        /* size of the private /tmp and /dev/shm (mount namespaces) */
    int no_network;         /* native: a network namespace of its own */
    struct fnlog *log;      /* the function's log: output of its processes */
    char **env;             /* NULL-terminated "K=V": the function's environment; copied */
    /* A deploy's load: a managed runtime without a zygote (nodejs) starts
     * one instance that imports the handler before "loaded" is reported.
     * 0 (a zygote started again on demand): the deploy checked it. */
    int check;
} launcher_config;

/* status 0: ready to spawn. Otherwise message says why it could not start
 * (borrowed for the call) and the launcher is gone; do not use it. */
typedef void (*launcher_loaded_cb)(launcher *l, int status, const char *message, void *data);
/* A native zygote died after it had loaded; its instances were reported
 * lost first. The launcher is gone after this returns. */
typedef void (*launcher_exit_cb)(launcher *l, void *data);

/* loaded is called exactly once, never before this returns, unless this
 * returns an error. */
int launcher_start(uv_loop_t *loop, const launcher_config *cfg, launcher_loaded_cb loaded,
                   launcher_exit_cb exited, void *data, launcher **out);
/* Starts one instance; on error no callback is ever called. */
int launcher_spawn(launcher *l, const instance_callbacks *cb, void *data, instance **out);
/* Stops it (and, for native, its instances, which die with the zygote).
 * No callback follows. NULL is a no-op. */
void launcher_stop(launcher *l);
/* The zygote's pid (native), or 0. */
int launcher_pid(const launcher *l);
/* 1 when its zygote's process has ended and exited is still to come (its end
 * not read yet): its instances are dying with it, and it forks no more. */
int launcher_exited(const launcher *l);

#endif
