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

typedef struct functions functions;

typedef struct fn {
    char name[SPATE_NAME_MAX + 1];
    pool *pool;
    reg_version active; /* registered active version (owned config) */
    int64_t created_ms;
    int registered; /* 0 while its first deploy is in flight */
    int deploying;
} fn;

/* Loads every function of the registry and starts their zygotes.
 * runner_path is borrowed for the life of the table. */
int functions_open(uv_loop_t *loop, store *st, const char *runner_path, functions **out);
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

/* Where the artifact of f's active version is stored, as uploaded. */
void functions_artifact_path(const functions *t, const fn *f, char *out, size_t cap);

/* Removes a function: the registry first, then its pool drains and stops.
 * ERR_NOTFOUND, ERR_BUSY (a deploy is in flight) or ERR_STORE. */
int functions_delete(functions *t, const char *name);

#endif
