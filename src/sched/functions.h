/*
 * functions.h - the table of deployed functions: each has its registry record
 * (active version and configuration) and its pool of instances.
 *
 * Deploy: the artifact is stored (content-addressed, on a worker thread), a
 * zygote loads it as the next version, and only once it has loaded is the
 * version registered and made active. A shared object that does not load
 * fails the deploy with the loader's message and leaves nothing behind.
 */
#ifndef SPATE_FUNCTIONS_H
#define SPATE_FUNCTIONS_H

#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/fnconfig.h"
#include "sched/pool.h"
#include "store/registry.h"

/*
 * The registry (store/registry.h) is the only way to what is deployed: the
 * table reads and records versions and artifacts through it, and never
 * learns whether it is one node's or a cluster's.
 */

typedef struct functions functions;

typedef struct fn {
    char name[SPATE_NAME_MAX + 1];
    pool *pool;
    reg_version active; /* registered active version (owned config) */
    int64_t created_ms;
    int registered; /* 0 while its first deploy is in flight */
    int deploying;
} fn;

/* Loads every function of the registry and starts their zygotes. reg and
 * runner_path are borrowed for the life of the table. */
int functions_open(uv_loop_t *loop, registry *reg, const char *runner_path, functions **out);
/* Stops every pool (drain: let invocations finish) then frees the table; cb
 * runs when done. */
void functions_close(functions *t, int drain, void (*cb)(void *data), void *data);

/* A registered function, or NULL. */
fn *functions_find(functions *t, const char *name, size_t len);
/* Calls cb for each registered function, by name. */
void functions_each(functions *t, void (*cb)(fn *f, void *data), void *data);
/* How many functions are registered (GET /v1/nodes, the cluster's heartbeat). */
uint32_t functions_count(functions *t);
/* Calls cb for each version of f, newest first (from the registry). */
int functions_versions(functions *t, const fn *f, registry_version_cb cb, void *data);

typedef struct deploy_result {
    int status;          /* HTTP status: 200 new version, 201 new function, else an error */
    const char *code;    /* error code, NULL on success */
    const char *message; /* error message, NULL on success */
    fn *f;               /* on success */
} deploy_result;
typedef void (*deploy_cb)(const deploy_result *r, void *data);

/* Deploys a new version. Takes cfg's env and artifact's storage. cb is called
 * exactly once, possibly before this returns. */
void functions_deploy(functions *t, const char *name, fn_config *cfg, buf *artifact, deploy_cb cb,
                      void *data);

/* A configuration change without an upload (as Lambda's
 * UpdateFunctionConfiguration): a new version of an existing function with
 * cfg and the artifact of its active version, loaded and activated as a
 * deploy is (its old version's instances retire). cfg must keep the runtime
 * (400 otherwise); 404 for an unknown function. Takes cfg's env. cb is
 * called exactly once, possibly before this returns. */
void functions_reconfigure(functions *t, const char *name, fn_config *cfg, deploy_cb cb,
                           void *data);

/* Removes a function: the registry first, then its pool drains and stops.
 * ERR_NOTFOUND, ERR_BUSY (a deploy is in flight) or ERR_STORE. */
int functions_delete(functions *t, const char *name);

/* The registry the table was opened with. */
registry *functions_registry(functions *t);

/* --- Invocations between nodes (cluster mode; spated's main wires them) --- */

/* route runs a direct invoke on another node that has room: -1 when there
 * is none to ask (run it here); else cb follows exactly once: status is the
 * HTTP status of the answer (body the output or the error's JSON, node the
 * node that ran it), or 0 when no node had room (run it here). payload is
 * copied. */
typedef void (*fn_routed_cb)(int status, const char *body, size_t len, const char *node,
                             void *data);
typedef int (*fn_route_fn)(void *router, const char *function, const char *request_id,
                           const void *payload, size_t len, uint32_t timeout_ms, fn_routed_cb cb,
                           void *data);
/* Sets the router (borrowed; NULL: a single node, nothing is routed). */
void functions_set_router(functions *t, fn_route_fn route, void *router);
/* A direct invoke of f that found no room here: through the router, as
 * fn_route_fn says; -1 without one. */
int functions_route(functions *t, const fn *f, const char *request_id, const void *payload,
                    size_t len, uint32_t timeout_ms, fn_routed_cb cb, void *data);

/* An invocation another node routed here. answer follows exactly once,
 * perhaps before this returns: status 200 with the output; 0 when it is not
 * taken here (no such function, or no room: the asker asks another node);
 * else the HTTP status of the failure with its code and message. payload is
 * borrowed until answer; timeout_ms (0: none) may only shorten the
 * function's. */
typedef void (*fn_answer_cb)(void *ctx, int status, const char *code, const char *body, size_t len);
void functions_run_routed(functions *t, const char *name, const char *request_id,
                          const void *payload, size_t len, uint32_t timeout_ms, fn_answer_cb answer,
                          void *ctx);

#endif
