/*
 * registry.h - the registry interface: what is deployed (functions, their
 * immutable versions and the artifacts those run) and which topics trigger
 * which functions. The scheduler reaches it only through these calls; it
 * never learns where the registry keeps things.
 *
 * Two implementations: the one of a single node (store/registry.c: SQLite
 * rows and the content-addressed files of store/artifacts.c), and the one of
 * a cluster (cluster/registry_js.c), which keeps a node's own SQLite registry
 * and also replicates every change made through it to the other nodes, so a
 * change reaches every node whoever made it. Changes made on another node
 * come back through registry_events.
 *
 * Functions and versions. Every put adds a version (numbered 1, 2, ... per
 * function: registry_next_version) and makes it the function's active one, in
 * one transaction. Deleting a function removes it and its versions; its
 * artifacts become unreferenced (registry_artifact_used says so) and the
 * caller removes those it wants gone.
 *
 * Artifacts are content-addressed by their SHA-256. They are stored on a
 * worker thread (hashing and syncing 64 MiB must not stall the loop); a
 * stored one has a path a runtime loads or runs (for exec, its unpacked
 * tree). In a cluster the bytes travel to the other nodes with the version
 * that uses them.
 *
 * Triggers: a topic's subscription by a function, configured by a
 * queue_sub_config. In one node the queue's subscriptions are saved with the
 * topics (store/queue/), so the SQLite registry keeps nothing of its own
 * for them: put and remove succeed at once and each lists none. A cluster
 * registry keeps them so that every node's queue subscribes alike.
 *
 * Schedules and event sources (upstream brokers drained into topics): put,
 * remove, each. A cluster registry keeps them in its bucket, shared by every
 * node; the user hears of changes made elsewhere (registry_watch) and reads
 * them again. What must run on one node only (a schedule, a source without
 * a consumer group) runs where its lease is held (registry_lease).
 *
 * Aliases: a name for a version of a function, which may also send a
 * percentage of its invocations to a second version (Lambda's routing
 * config). Deleting a function deletes its aliases. The cluster registry
 * keeps them in its bucket, shared by every node (as schedules), and
 * replicates an activation (a rollback) and each version's number: a
 * version number means the same code on every node.
 *
 * All calls are made on the loop. What may take long (storing an artifact,
 * anything that waits for the network) completes through a callback; the
 * rest answer at once (a few rows in SQLite): in a cluster the local change
 * is made at once and its replication queued on the worker thread (one that
 * fails is logged; the change stands here).
 */
#ifndef SPATE_REGISTRY_H
#define SPATE_REGISTRY_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/fnconfig.h"
#include "common/hash.h"
#include "common/limits.h"
#include "store/queue.h"

typedef struct registry registry;

typedef struct reg_version {
    char function[SPATE_NAME_MAX + 1];
    uint32_t version;
    char sha256[HASH_HEX_LEN + 1];
    uint64_t size;
    int64_t created_ms;
    fn_config config; /* owned; fnconfig_free when done */
} reg_version;

/* --- Functions and versions ------------------------------------------------------- */

/* The number the next put of name gets (1 for a new function). In a
 * cluster, while a version made elsewhere is being applied here: its
 * number there. */
int registry_next_version(registry *r, const char *name, uint32_t *out);
/* Adds v and makes it active; creates the function if new. 0 or ERR_STORE.
 * v is borrowed for the call. */
int registry_put_version(registry *r, const reg_version *v);
/* ERR_NOTFOUND when there is no such function. */
int registry_delete_function(registry *r, const char *name);

/* Calls cb for each function's active version, by name; v is borrowed for the
 * call. Stops early if cb returns non-zero. */
typedef int (*registry_version_cb)(const reg_version *v, int64_t function_created_ms, void *data);
int registry_each_active(registry *r, registry_version_cb cb, void *data);
/* Calls cb for each version of name, newest (the active one) first. */
int registry_each_version(registry *r, const char *name, registry_version_cb cb, void *data);

/* Makes an existing version of name its active one again (a rollback; no
 * new version). ERR_NOTFOUND when name has no such version. */
int registry_activate(registry *r, const char *name, uint32_t version);

/* --- Aliases ------------------------------------------------------------------------- */

typedef struct reg_alias {
    char function[SPATE_NAME_MAX + 1];
    char name[SPATE_ALIAS_MAX + 1];
    uint32_t version;        /* where it points */
    uint32_t weight_version; /* 0: none; else gets weight_percent of the invocations */
    uint32_t weight_percent; /* 1..99 with a weight_version */
    int64_t created_ms;
    int64_t updated_ms;
} reg_alias;

/* Adds or replaces a (borrowed; created_ms kept from the one it replaces).
 * 0, ERR_STORE, or ERR_NOTSUP where aliases are not kept. */
int registry_alias_put(registry *r, const reg_alias *a);
/* ERR_NOTFOUND when function has no such alias. */
int registry_alias_remove(registry *r, const char *function, const char *name);
/* Calls cb for each alias of function (NULL: of every function), by
 * function then name; a is borrowed for the call. */
typedef void (*registry_alias_cb)(const reg_alias *a, void *data);
int registry_each_alias(registry *r, const char *function, registry_alias_cb cb, void *data);

/* --- Artifacts ------------------------------------------------------------------------ */

/* 1 if any version uses the artifact, 0 if none, or a negative error. */
int registry_artifact_used(registry *r, const char *sha256);
/* Stores data (borrowed until cb) unless an artifact with its hash is
 * stored, and with unpack also its unpacked tree (an executable, or a zip or
 * tar archive). cb follows once, on the loop (before this returns only when
 * the write cannot start): status 0, ERR_INVAL when the artifact is refused (err says why), or
 * another error; sha is its hex SHA-256 ("" when it could not be hashed). */
typedef void (*registry_stored_cb)(void *data, int status, const char *sha, const char *err);
void registry_artifact_put(registry *r, const void *bytes, size_t len, int unpack,
                           registry_stored_cb cb, void *data);
/* unpack: 0 (a native shared object, kept as it is), an exec artifact (its
 * tree must have an executable bootstrap), or the code of a managed runtime
 * (an archive; spate ships the bootstrap). */
enum { REGISTRY_UNPACK_NONE, REGISTRY_UNPACK_EXEC, REGISTRY_UNPACK_TREE };
/* The unpack of an artifact that versions of configuration c run. */
static inline int registry_unpack_of(const fn_config *c)
{
    return fnconfig_runtime_is_managed(c->runtime) ? REGISTRY_UNPACK_TREE
           : c->runtime == RUNTIME_EXEC            ? REGISTRY_UNPACK_EXEC
                                                   : REGISTRY_UNPACK_NONE;
}
/* Where a stored artifact is on this node: the file as uploaded, or (with
 * unpacked) the directory of its unpacked tree. */
void registry_artifact_path(registry *r, const char *sha256, int unpacked, char *out, size_t cap);
/* Removes a stored artifact and its unpacked tree; missing is no error. */
int registry_artifact_remove(registry *r, const char *sha256);

/* --- Triggers ------------------------------------------------------------------------ */

/* Records the trigger of cfg->function on topic (added or changed), or its
 * removal. Called after the queue has taken the change. */
int registry_trigger_put(registry *r, const char *topic, const queue_sub_config *cfg);
int registry_trigger_remove(registry *r, const char *topic, const char *function);
/* Calls cb for each trigger the registry keeps (none in one node's). */
typedef void (*registry_trigger_cb)(const char *topic, const queue_sub_config *cfg, void *data);
void registry_each_trigger(registry *r, registry_trigger_cb cb, void *data);

/* A trigger's configuration as JSON: topic, function, qualifier (when it
 * has one), max_attempts, dlq,
 * ordered, deadline_ms, max_concurrency, batch_size, batch_window_ms,
 * event_format ("raw" or "sqs"), report_batch_item_failures, paused,
 * modified_ms (epoch ms; absent when unknown) (the API shows it so, a cluster
 * registry keeps it so). Caller owns. */
cJSON *registry_trigger_json(const char *topic, const queue_sub_config *cfg);
/* Reads it back into cfg for function on topic: what o does not name takes
 * its default (3 attempts, dead letters to TOPIC.dlq). */
void registry_trigger_from_json(const cJSON *o, const char *topic, const char *function,
                                queue_sub_config *cfg);

/* --- Schedules ----------------------------------------------------------------------- */

/* A schedule (schedules/): when it fires (expression, zone), what it
 * publishes where, and when it last fired (written by the node that fired
 * it: in a cluster the next lease holder catches up from there). */
typedef struct reg_schedule {
    char name[SPATE_NAME_MAX + 1];
    char expression[SPATE_SCHEDULE_EXPR_MAX + 1];
    char zone[SPATE_SCHEDULE_ZONE_MAX + 1]; /* "" is UTC */
    char topic[SPATE_TOPIC_NAME_MAX + 1];   /* where it publishes */
    char function[SPATE_NAME_MAX + 1];      /* --function: run by a trigger on topic; "" */
    const char *payload;                    /* NULL: the default; borrowed */
    size_t payload_len;
    int64_t created_ms;   /* the anchor of @every */
    int64_t last_fire_ms; /* the fire time last published, 0 if none */
} reg_schedule;

/* Adds or replaces s (borrowed). 0 or ERR_STORE. */
int registry_schedule_put(registry *r, const reg_schedule *s);
/* ERR_NOTFOUND when there is none. */
int registry_schedule_remove(registry *r, const char *name);
/* Records that name fired for fire_ms. */
int registry_schedule_fired(registry *r, const char *name, int64_t fire_ms);
/* Calls cb for each schedule, by name (s borrowed for the call). */
typedef void (*registry_schedule_cb)(const reg_schedule *s, void *data);
int registry_each_schedule(registry *r, registry_schedule_cb cb, void *data);

/* --- Changes made elsewhere ------------------------------------------------------------ */

/* How the registry tells its user of changes made on another node (never of
 * those made through itself). The user makes this node match, then calls
 * applied once (perhaps before returning), whose data is the registry's. */
typedef void (*registry_applied_cb)(void *applied_data, int status, const char *message,
                                    uint32_t version);
typedef void (*registry_done_cb)(void *applied_data, int status);
typedef struct registry_events {
    /* name's active version is now one with cfg and the artifact's bytes
     * (both taken). The user deploys them here, through this registry (a
     * put of exactly that version is recorded on this node only), and calls
     * applied with the deploy's HTTP-like status (>= 400: failed, message
     * says why) and the version it got. */
    void (*function_put)(const char *name, fn_config *cfg, buf *artifact,
                         registry_applied_cb applied, void *applied_data, void *data);
    /* name is deleted: the user deletes it here (through this registry,
     * which then records it on this node only). 0 when it did. */
    int (*function_deleted)(const char *name, void *data);
    /* A trigger was added or changed (cfg borrowed for the call), or removed:
     * the user applies it to its queue (not to the registry), and calls
     * applied with the queue's status. */
    void (*trigger_put)(const char *topic, const queue_sub_config *cfg, registry_done_cb applied,
                        void *applied_data, void *data);
    void (*trigger_removed)(const char *topic, const char *function, registry_done_cb applied,
                            void *applied_data, void *data);
    /* name's active version is now version, which this node has already
     * (a rollback made elsewhere): the user makes it active here, through
     * this registry (recorded on this node only), and calls applied as for
     * function_put. */
    void (*function_activate)(const char *name, uint32_t version, registry_applied_cb applied,
                              void *applied_data, void *data);
    /* The aliases of function changed (one put or removed elsewhere): the
     * user reads them again (registry_each_alias). */
    void (*aliases_changed)(const char *function, void *data);
    void *data;
} registry_events;
/* Replaces the events (copied; NULL callbacks: none wanted). */
void registry_set_events(registry *r, const registry_events *ev);

/* --- Event sources ------------------------------------------------------------------- */

/* An upstream broker drained into a topic (src/sources/). url is kept whole,
 * credentials included: whoever shows it redacts it (sources_url_redact). */
typedef struct reg_source {
    char name[SPATE_NAME_MAX + 1];
    char url[SPATE_SOURCE_URL_MAX + 1];
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    char key_field[SPATE_SOURCE_FIELD_MAX + 1]; /* "": no key */
    int64_t created_ms;
} reg_source;

/* Adds s, or replaces the source of that name. 0 or ERR_STORE. */
int registry_source_put(registry *r, const reg_source *s);
/* ERR_NOTFOUND when there is no such source. */
int registry_source_remove(registry *r, const char *name);
/* Calls cb for each source, by name; s is borrowed for the call. */
typedef void (*registry_source_cb)(const reg_source *s, void *data);
int registry_each_source(registry *r, registry_source_cb cb, void *data);

/* --- Shared by the nodes of a cluster: changes, durability, leases ---------------------------
 *
 * One node's registry implements none of these (its table leaves them
 * NULL): it never calls watchers, its writes are durable when they return,
 * and this node holds every lease. */

enum registry_kind { REGISTRY_SCHEDULES, REGISTRY_SOURCES };
/* cb(data) on the loop whenever the schedules (or the sources) changed
 * through another node, or a lease of this node on one of them was taken
 * or lost: the user reads them again (each) and asks for its leases. One
 * watcher per kind (a new one replaces it; NULL: none). */
typedef void (*registry_changed_cb)(void *data);
void registry_watch(registry *r, enum registry_kind kind, registry_changed_cb cb, void *data);
/* cb(data, status) once the writes made through r before this call are
 * durable where r keeps them (in a cluster: in the bucket), perhaps before
 * returning. status ERR_STORE when the last of them could not be made so. */
void registry_sync(registry *r, registry_done_cb cb, void *data);
/* Leases: key is "schedule.NAME" or "source.NAME". 1 when this node holds
 * key's lease now, 0 when not (holder gets the holder's node id, "" when
 * none is known yet). Asking makes the registry try to take it, and keep
 * it, until registry_lease_drop; a change comes through registry_watch. */
int registry_lease(registry *r, const char *key, char *holder, size_t cap);
void registry_lease_drop(registry *r, const char *key);

/* Frees the registry (and one it wraps). NULL is a no-op. */
void registry_close(registry *r);

/* --- Implementations ------------------------------------------------------------------
 *
 * Every call above but the JSON codec goes through a table
 * (store/registry_dispatch.c); an implementation's registry struct begins
 * with a pointer to its table. */
typedef struct registry_ops {
    int (*next_version)(registry *r, const char *name, uint32_t *out);
    int (*put_version)(registry *r, const reg_version *v);
    int (*delete_function)(registry *r, const char *name);
    int (*each_active)(registry *r, registry_version_cb cb, void *data);
    int (*each_version)(registry *r, const char *name, registry_version_cb cb, void *data);
    int (*artifact_used)(registry *r, const char *sha256);
    void (*artifact_put)(registry *r, const void *bytes, size_t len, int unpack,
                         registry_stored_cb cb, void *data);
    void (*artifact_path)(registry *r, const char *sha256, int unpacked, char *out, size_t cap);
    int (*artifact_remove)(registry *r, const char *sha256);
    int (*trigger_put)(registry *r, const char *topic, const queue_sub_config *cfg);
    int (*trigger_remove)(registry *r, const char *topic, const char *function);
    void (*each_trigger)(registry *r, registry_trigger_cb cb, void *data);
    void (*set_events)(registry *r, const registry_events *ev);
    void (*close)(registry *r);
    /* schedules (keep together) */
    int (*schedule_put)(registry *r, const reg_schedule *s);
    int (*schedule_remove)(registry *r, const char *name);
    int (*schedule_fired)(registry *r, const char *name, int64_t fire_ms);
    int (*each_schedule)(registry *r, registry_schedule_cb cb, void *data);
    /* Event sources (kept together, at the end). */
    int (*source_put)(registry *r, const reg_source *s);
    int (*source_remove)(registry *r, const char *name);
    int (*each_source)(registry *r, registry_source_cb cb, void *data);
    /* Shared by the nodes (kept together, at the end; NULL: one node's). */
    void (*watch)(registry *r, enum registry_kind kind, registry_changed_cb cb, void *data);
    void (*sync)(registry *r, registry_done_cb cb, void *data);
    int (*lease)(registry *r, const char *key, char *holder, size_t cap);
    void (*lease_drop)(registry *r, const char *key);
    /* Versions and aliases (kept together, at the end; NULL: ERR_NOTSUP). */
    int (*activate)(registry *r, const char *name, uint32_t version);
    int (*alias_put)(registry *r, const reg_alias *a);
    int (*alias_remove)(registry *r, const char *function, const char *name);
    int (*each_alias)(registry *r, const char *function, registry_alias_cb cb, void *data);
} registry_ops;

#endif
