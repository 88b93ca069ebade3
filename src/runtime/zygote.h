/*
 * zygote.h - spated's side of a native function version's zygote: starts
 * spate-runner, learns whether the object loaded, asks it to fork instances
 * and hears how they end (protocol in zproto.h).
 */
#ifndef SPATE_ZYGOTE_H
#define SPATE_ZYGOTE_H

#include <stdint.h>
#include <uv.h>

typedef struct zygote zygote;
typedef struct instance instance;

typedef struct zygote_config {
    const char *runner_path; /* spate-runner */
    const char *object_path; /* the function's shared object */
    /* A managed runtime's code, bound at /var/task with mount namespaces
     * (else reached where it is); NULL: none. */
    const char *code_dir;
    const char *function;
    uint32_t version;
    uint32_t memory_mb;     /* RLIMIT_AS of instances where no memory cgroup holds them */
    uint32_t max_instances; /* it may fork: its cgroup has room for their kernel memory */
    uint32_t tmp_mb;        /* each instance's private /tmp and /dev/shm, when namespaces work */
    int no_network;         /* the zygote and its instances get a network namespace of their own */
    struct fnlog *log;      /* the zygote's own output (spate_preload) goes here; NULL: stdout */
    char **env;             /* NULL-terminated "K=V" of the function; copied (never the
                               runner's environment: it reaches it in --env-fd) */
} zygote_config;

/* status 0: loaded and ready to spawn. Otherwise message says why it failed
 * (borrowed for the call) and the zygote is already stopping; do not use it. */
typedef void (*zygote_loaded_cb)(zygote *z, int status, const char *message, void *data);
/* The zygote process ended after it had loaded. Its instances have been
 * reported lost before this is called; the zygote is freed after it returns. */
typedef void (*zygote_exit_cb)(zygote *z, void *data);

/* Starts the runner. loaded is called exactly once unless this returns an error. */
int zygote_start(uv_loop_t *loop, const zygote_config *cfg, zygote_loaded_cb loaded,
                 zygote_exit_cb exited, void *data, zygote **out);
/* Stops the zygote (its live instances die with it). exited is not called;
 * the memory is released once the process is gone. NULL is a no-op. */
void zygote_stop(zygote *z);
/* The loop the zygote runs on. */
uv_loop_t *zygote_loop(const zygote *z);
/* Process id of the runner, for logs. */
int zygote_pid(const zygote *z);
/* 1 when its process has ended, though spated may not have read its end yet
 * (then exited is still to come): no instance should be asked of it. */
int zygote_exited(const zygote *z);
/* Zygote processes alive in this spated (started and not yet reaped). */
uint32_t zygote_running(void);

/* For native.c: asks the zygote to fork an instance serving fd (the zygote's
 * end of the instance socket) with out[0] and out[1] as its stdout and
 * stderr (or both -1), in the sandbox text describes (zproto.h). All are
 * closed here in every case. */
int zygote_request_spawn(zygote *z, instance *inst, int fd, int out[2], const char *text);
/* For native.c: the instance was killed before the zygote reported it
 * forked: a zygote that does not within SPATE_ZYGOTE_REPORT_MS is broken. */
void zygote_await_spawned(zygote *z, instance *inst);
/* For native.c: the instance's process is gone (its pidfd said so); if the
 * zygote does not report how within SPATE_ZYGOTE_REPORT_MS, the instance
 * ends anyway (native_on_unreported_exit). */
void zygote_await_exited(zygote *z, instance *inst);
/* For native.c: the counter to bump after sending inst a CANCEL (frame.h),
 * or NULL when the zygote has none. */
uint32_t *zygote_cancel_counter(zygote *z, const instance *inst);
/* For native.c: the instance is finished; stop reporting on it. */
void zygote_forget(zygote *z, instance *inst);

#endif
