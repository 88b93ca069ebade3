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
    list_node sides;    /* versions other than the active one that run (versions.c) */
    reg_alias *aliases; /* the registry's, by name (versions.c) */
    size_t naliases;
    pool_version_outcomes ended[POOL_METRIC_VERSIONS]; /* of side pools that stopped */
    struct functions *table;
    list_node busy_link; /* in the table's busy list while busy_listed */
    int busy_listed;
    /* While its pool stops (out of the table): in its table's retiring list.
     * Kept here, not allocated: a retirement cannot fail, or the pool would
     * run on and spated never finish stopping. */
    list_node retire_link;
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
/* A page: cb for each registered function named after after (NULL: from the
 * first), by name, at most limit of them; *more is set when another follows
 * (also when cb returned nonzero: it took no more, and the walk stopped).
 * Costs the page, whatever the number of functions. Returns how many cb took. */
uint32_t functions_page(functions *t, const char *after, uint32_t limit,
                        int (*cb)(fn *f, void *data), void *data, int *more);
/* The functions whose pool was invoked or started an instance since they
 * were last found quiet (pool_settle), in the order they became busy:
 * cb(f) for each; one whose pool is quiet after cb leaves the list unless cb
 * returned nonzero (it has more to show, e.g. a trigger's backlog). A walk
 * costs the busy functions, whatever the number of idle ones (the history's
 * sampler). */
void functions_each_busy(functions *t, int (*cb)(fn *f, void *data), void *data);
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

/* --- Versions and aliases (versions.c) ---------------------------------------------------
 *
 * Any version of a function can be invoked: by number (NAME:3) or through
 * an alias (NAME:live), which names a version and may send a percentage of
 * its invocations to a second one (picked per invocation). The active
 * version runs in the function's pool; another runs in a pool of its own
 * (a "side pool", its zygote started on the first invocation, without
 * minimum instances), which stops once nothing invoked it for the
 * version's keep-alive and nothing of it runs or waits. So a version
 * nobody routes to (not active, and neither invoked by number nor chosen
 * through an alias within its keep-alive) holds no process. At most
 * SPATE_SIDE_POOLS_MAX side pools per function. */

/* The version qualifier names (resolve(name, qualifier) -> version): NULL,
 * "" or "$LATEST" is the active one; digits a version (which must exist);
 * else an alias, which picks by its weight each time it is resolved. *f is
 * the function (NULL when name is not one: ERR_NOTFOUND). ERR_NOTFOUND
 * when the version or alias does not exist, ERR_INVAL when the qualifier
 * is neither a number nor an alias name. */
int functions_resolve(functions *t, const char *name, const char *qualifier, fn **f,
                      uint32_t *version);

/* Runs inv on version of f (0: the active one): in f's pool, or in the
 * version's side pool, started on demand. *used is the pool it went to
 * (for pool_cancel), NULL when it was answered at once: POOL_OVERLOADED
 * when the function has SPATE_SIDE_POOLS_MAX side pools already,
 * POOL_UNAVAILABLE when the version is gone. inv->version is set to
 * version before it is queued. */
void functions_invoke(functions *t, fn *f, uint32_t version, invocation *inv, pool **used);

/* Calls cb for each version of f that runs in a side pool now. */
void functions_each_side(const fn *f, void (*cb)(uint32_t version, pool *p, void *data),
                         void *data);

/* Calls cb with each table of outcomes by version of f (metrics): its
 * pool's, its side pools', and what side pools that stopped counted. */
void functions_each_outcomes(const fn *f,
                             void (*cb)(const pool_version_outcomes *table, void *data),
                             void *data);

/* Sets alias a->name of a->function (created or moved; a borrowed). Checks
 * that its versions exist and its weight is 1..99 with a second version.
 * 0; ERR_INVAL (why says what, with ERR_NOTFOUND: which version is
 * missing); ERR_TOOBIG past SPATE_ALIASES_PER_FUNCTION; ERR_NOTSUP where
 * the registry keeps no aliases; ERR_STORE. */
int functions_alias_set(functions *t, fn *f, const reg_alias *a, char *why, size_t cap);
/* ERR_NOTFOUND when f has no such alias. */
int functions_alias_remove(functions *t, fn *f, const char *name);
/* The alias of f of that name, or NULL. */
const reg_alias *functions_alias_find(const fn *f, const char *name, size_t len);
/* Reads the aliases of name from the registry again (they changed on
 * another node); nothing when name is not deployed here (its deploy reads
 * them). */
void functions_aliases_reload(functions *t, const char *name);

/* Makes an earlier version of name its active one again, with the
 * configuration it had (Lambda has no such call; it is spate rollback):
 * version 0 is the one before the active version. Its zygote loads first,
 * as in a deploy; then the registry records it (no new version) and the
 * old active version retires. cb as for a deploy: 200; 404 (no such
 * function or version), 409 (a deploy in flight, or that version still
 * stopping here), 501 (a registry that cannot activate a version). Called
 * once, perhaps before this returns. */
void functions_rollback(functions *t, const char *name, uint32_t version, deploy_cb cb, void *data);

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
