/*
 * internal.h - what the files of exec functions share; nothing outside
 * src/runtime/exec/ includes it (the public face is runtime/exec.h).
 *
 * An exec_version is the unpacked root of one version: its bootstrap, the
 * environment every instance gets, and the allowance for checking Runtime
 * API clients. It is counted: 1 while not stopped, plus one per instance
 * still open; the last exec__version_unref frees it. An exec_instance is one
 * bootstrap process and its own Runtime API endpoint (an HTTP server on
 * 127.0.0.1:0); it owns the invocations it was given (pending_inv) and is
 * freed once both its process handle and its server have closed.
 *
 *   version.c  the version: the bootstrap's checks, the Lambda environment,
 *              its reference count (exec_version_start, exec_version_stop)
 *   api.c      the Runtime API's routes: /next, the response and the error
 *              of an invocation, /init/error; handing invocations out and
 *              finishing them (exec__api_handlers)
 *   peers.c    who may use an instance's endpoint: the connection's uid,
 *              and a process of this very instance holding its socket,
 *              within the version's budget of /proc reads (exec__api_connect)
 *   process.c  the instance's life: spate-runner --exec and its arguments,
 *              the instance interface (invoke, withdraw, kill), exit, free
 *
 * Names: exec_* is the public API (runtime/exec.h), exec__* is shared between
 * these files only, plain static names stay in their file. Everything runs
 * on the loop thread.
 */
#ifndef SPATE_RUNTIME_EXEC_INTERNAL_H
#define SPATE_RUNTIME_EXEC_INTERNAL_H

#include <stdint.h>
#include <uv.h>

#include "common/list.h"
#include "http/server.h"
#include "runtime/exec.h"

/* Where every Runtime API route starts. */
#define EXEC__API "/2018-06-01/runtime"

struct exec_version {
    uv_loop_t *loop;
    char *root;
    char *bootstrap; /* ROOT/bootstrap, or a managed runtime's, shipped with spate */
    int managed;     /* python3, nodejs: the bootstrap is not under the root */
    uint32_t tmp_mb; /* with mount namespaces: the root is bound at /var/task */
    char *runner;    /* spate-runner, the sandbox the bootstrap runs in */
    char *function;
    char **env; /* the function's environment and the Lambda variables, but the API address */
    size_t nenv;
    char arn[160];
    uint32_t refs; /* 1 while not stopped, + live instances */
    /* /proc entries its instances' Runtime API checks may still read
     * (SPATE_RUNTIME_API_CHECK_RATE), as of check_at_ms. */
    uint32_t check_left;
    uint64_t check_at_ms;
};

/* An invocation the instance has been given and not yet finished. */
typedef struct pending_inv {
    list_node link;
    char request_id[72];
    int64_t deadline_ms;
    uint32_t attempt;
    uint32_t lineage; /* frame_invoke.lineage */
    uint32_t len;
    uint32_t attr_len; /* the header lines of its attributes, after the payload; 0: none */
    char payload[];    /* len bytes, then attr_len bytes of "Spate-...: ...\r\n" lines */
} pending_inv;

/* Bytes exec__attr_headers writes for inv's attributes (0 when none). */
size_t exec__attr_headers_size(const frame_invoke *inv);
/* Writes them as the header lines /next answers with (docs/functions.md). */
size_t exec__attr_headers(char *out, const frame_invoke *inv);

typedef struct exec_instance {
    instance base;
    exec_version *ver;
    uv_process_t proc;
    http_server *api;
    int port;
    list_node queue;      /* given, not yet handed to the runtime */
    pending_inv *running; /* handed out by /next, not yet answered */
    uint64_t running_since;
    uint64_t spawned_ns; /* clock_mono_ns when its bootstrap began */
    /* Its own cpu cgroup's periods and throttled periods then (a reused
     * slot's count from earlier instances), when it has one. */
    uint64_t periods0, throttled0;
    int throttle_known;
    http_request *next_req; /* a /next waiting for work */
    char *init_error;
    char *unready; /* what its bootstrap was doing when killed before asking for work */
    int status_fd; /* read end: why the runner could not start the bootstrap */
    int ready, alive, killed, exited;
    int open;         /* the process handle and the API server, until both are closed */
    uint32_t refused; /* Runtime API connections from other processes */
} exec_instance;

/* --- version.c ------------------------------------------------------------------- */

/* Drops one reference; the last frees x. */
void exec__version_unref(exec_version *x);

/* --- api.c ----------------------------------------------------------------------- */

/* The Runtime API endpoint's handlers; data is the exec_instance. */
extern const http_handlers exec__api_handlers;
/* Hands the oldest given invocation (e->queue is not empty) to a waiting
 * /next, which it answers. */
void exec__hand_out(exec_instance *e, http_request *req);

/* --- peers.c --------------------------------------------------------------------- */

/* The endpoint's connect callback: 0 lets the connection in, -1 closes it. */
int exec__api_connect(http_peer *peer, const char *client, void *data);

#endif
