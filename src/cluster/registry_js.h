/*
 * registry_js.h - what the cluster's registry (registry_js.c: functions,
 * triggers, schedules, sources, the worker's jobs) shares with
 * registry_versions.c (versions a node lacks, aliases): the registry's
 * state and the calls both use. Internal to cluster/; every call is made
 * on the loop.
 */
#ifndef SPATE_CLUSTER_REGISTRY_JS_H
#define SPATE_CLUSTER_REGISTRY_JS_H

#include "cluster/internal.h"

/* What the registry wants of one function, and how far this node is. */
typedef struct fn_sync {
    char name[SPATE_NAME_MAX + 1]; /* the map's key */
    char *entry;                   /* the latest registry value (JSON), or NULL: deleted */
    /* The bucket's latest value was refused (its cluster-key seal did not
     * hold): entry is the last good one, and none is no delete. */
    int refused;
    int applying; /* a fetch or deploy is under way */
    int changed;  /* a newer entry came while applying */
    /* The entry being deployed here from the registry: its put is recorded
     * on this node only. Not entry, which a newer value may replace while
     * the deploy runs: that put would write the older version back. */
    char *deploying;
    /* The registry's delete is being applied here: recorded on this node
     * only. Not applying, which a fetch sets too: a delete made through
     * this node meanwhile is the user's, and goes to the bucket. */
    int deleting;
    /* The version this node runs (0: none): each_version lists the newest
     * first, which after a rollback is not the active one. */
    uint32_t active;
    /* The entry this node wrote last, until another node writes one: an
     * older write of this node heard late is not the registry's say. */
    char *wrote;
    int backfilling; /* a version of ve.NAME.N is being fetched and stored */
} fn_sync;

/* A ve.NAME.N entry the bucket holds. */
typedef struct ve_entry {
    char key[SPATE_NAME_MAX + 12]; /* NAME.N, the map's key */
    char *text;
} ve_entry;

/* A trigger the bucket holds (registry_each_trigger). */
typedef struct tr_entry {
    char key[SPATE_NAME_MAX + SPATE_TOPIC_NAME_MAX + 2]; /* FUNCTION.TOPIC, the map's key */
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    queue_sub_config cfg;
} tr_entry;

/* A schedule or a source as the bucket holds it. */
typedef struct sc_entry {
    reg_schedule s; /* s.name is the map's key */
    char *payload;  /* s.payload's storage */
} sc_entry;
typedef struct so_entry {
    reg_source s;
} so_entry;

struct rjs {
    const registry_ops *ops; /* first, as registry.h wants */
    cluster *c;              /* NULL after cluster_stop */
    registry *local;
    registry_events ev;
    strmap syncs;   /* name -> fn_sync */
    strmap trigs;   /* FUNCTION.TOPIC -> tr_entry */
    strmap scheds;  /* NAME -> sc_entry */
    strmap srcs;    /* NAME -> so_entry */
    strmap aliases; /* FUNCTION.ALIAS -> reg_alias */
    strmap vers;    /* NAME.N -> ve_entry */
    struct {
        registry_changed_cb cb;
        void *data;
    } watchers[2];   /* by enum registry_kind */
    uint64_t queued; /* the number of the last job submitted */
    uint64_t failed; /* the number of the last job that failed */
    int ready;       /* the bucket's current values are in */
    pthread_t watcher;
    int watching;
};

#define RJS(x) ((rjs *)(x))

/* Blocking work for the worker thread. */
enum job_kind { JOB_PUBLISH, JOB_DELETE, JOB_FETCH, JOB_PUT, JOB_FIRED, JOB_SYNC, JOB_BACKFILL };
typedef struct job {
    rjs *r;
    cluster *c;
    enum job_kind kind;
    uint64_t seq;                /* its number; SYNC: that of the last job before it */
    int64_t created_ms, fire_ms; /* FIRED: the schedule and its run */
    registry_done_cb done;       /* SYNC */
    void *done_data;
    char name[SPATE_NAME_MAX + 1];
    char key[SPATE_NAME_MAX + SPATE_TOPIC_NAME_MAX + 8]; /* PUT, DELETE */
    char sha[HASH_HEX_LEN + 1];
    char path[4096];              /* PUBLISH: the artifact file */
    char *value;                  /* PUBLISH, PUT: the registry entry */
    char purge[HASH_HEX_LEN + 1]; /* PUBLISH, DELETE: an artifact no entry uses now, or "" */
    buf data;                     /* FETCH: the artifact */
    char err[256];                /* "" on success */
} job;

/* --- registry_js.c --------------------------------------------------------------------- */

/* An fn or ve entry's text: its SHA-256 into sha and its configuration into
 * cfg (caller frees with fnconfig_free); -1 (why says why) if it is none. */
int rjs_entry_parse(const char *text, char sha[HASH_HEX_LEN + 1], fn_config *cfg, char *why,
                    size_t cap);
/* The SHA-256 an entry's text names into sha; -1 if it names none. */
int rjs_entry_sha(const char *text, char sha[HASH_HEX_LEN + 1]);
/* The version number an entry names; 0 if none. */
uint32_t rjs_entry_version(const char *text);
/* The entry of version of name as this node has it (0: the newest), or
 * NULL; caller frees. */
char *rjs_version_entry(rjs *r, const char *name, uint32_t version);
/* Sets j to purge the artifact old_entry named once j's write is done, if
 * no fn or ve entry names it now. */
void rjs_purge_if_unused(rjs *r, job *j, const char *old_entry);
/* A job for the worker (NULL: out of memory), and its submission: jobs run
 * in the order submitted. */
job *rjs_new_job(rjs *r, enum job_kind kind, const char *name);
void rjs_submit(job *j);
/* Queues the write of key (value taken; NULL: its delete). 0, ERR_NOMEM,
 * ERR_CLOSED. */
int rjs_write_key(rjs *r, const char *key, char *value);

/* --- registry_versions.c ------------------------------------------------------------------ */

/* ve entries (ve.NAME.N): the view's key of a version, and keeping its
 * entry (text taken; NULL removes it). */
void rjs_ve_key(char *out, size_t cap, const char *name, uint32_t version);
void rjs_ve_keep(rjs *r, const char *key, char *text);
/* Heard: key is NAME.N, text its entry (taken) or NULL. */
void rjs_on_version_entry(rjs *r, const char *key, char *text);
/* Starts storing the next version of name the bucket has and this node
 * lacks, if it runs name and nothing else is under way for it. */
void rjs_backfill(rjs *r, const char *name);
/* On the loop: a JOB_BACKFILL fetched its artifact (or failed). */
void rjs_backfill_fetched(rjs *r, job *j);
/* name is deleted: its ve entries leave the view, and with write (the
 * delete was made here) the bucket, purging artifacts nothing names. */
void rjs_drop_versions(rjs *r, const char *name, int write);

/* Aliases: heard (key FUNCTION.ALIAS, text NULL when removed), the
 * registry's calls, and a function's deletion (as for versions). */
void rjs_on_alias_entry(rjs *r, const char *key, const char *text);
int rjs_alias_put(registry *reg, const reg_alias *a);
int rjs_alias_remove(registry *reg, const char *function, const char *name);
int rjs_each_alias(registry *reg, const char *function, registry_alias_cb cb, void *data);
void rjs_drop_aliases(rjs *r, const char *function, int write);

#endif
