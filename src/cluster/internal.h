/*
 * internal.h - what the files of cluster/ share (cluster.h is the face):
 *
 *   cluster.c       connecting, the buckets and stream, starting, stopping,
 *                   nats.c's connection callbacks, what jsqueue/ uses
 *   bridge.c        the worker thread and the calls back to the loop
 *   node.c          heartbeats and the nodes view
 *   route.c         direct invocations between nodes, both ways
 *   registry_js.c   the registry interface on the key-value bucket
 *   watch.c         the thread that follows the bucket
 *   chunks.c        artifacts as chunks of the artifact stream
 *   lease.c         leases in the bucket: what runs on one node only
 *   sealed.c        the cluster key at work: sealed registry values, chunks
 *                   and messages, and what was refused (seal.c: the HMAC)
 *
 * The struct cluster is owned by cluster.c; each file touches the fields its
 * part names. Names shared across the files carry the cluster__ prefix.
 */
#ifndef SPATE_CLUSTER_INTERNAL_H
#define SPATE_CLUSTER_INTERNAL_H

#include <nats/nats.h>
#include <pthread.h>

#include "cluster/bridge.h"
#include "cluster/cluster.h"
#include "cluster/seal.h"
#include "common/buf.h"
#include "common/hash.h"
#include "common/limits.h"
#include "common/list.h"
#include "common/strmap.h"

#define CLUSTER_BUCKET "spate-registry"
#define CLUSTER_ARTIFACT_STREAM "SPATE_ARTIFACTS"
#define CLUSTER_ID_LEN 16 /* a node's id: hex of 8 random bytes */

typedef struct node_info {
    char id[CLUSTER_ID_LEN + 1];
    char url[128];
    uint32_t instances, max_instances, functions;
    uint64_t seen_ms; /* loop time */
    /* The newest heartbeat's own time (Spate-Sent-Ms, under its seal):
     * with a key, one not newer is a replay and changes nothing. */
    uint64_t sent_ms;
} node_info;

typedef struct rjs rjs;

/* The header a message's seal is in (sealed.c). */
#define CLUSTER_SEAL_HEADER "Spate-Seal"

struct cluster {
    uv_loop_t *loop;
    bridge *bridge;
    bridge *settler; /* the attempts bucket's records (cluster_run_settle) */
    char id[CLUSTER_ID_LEN + 1];
    char url[128];
    char data_dir[4096];
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;       /* the registry */
    kvStore *attempts; /* failed attempts of messages being retried */
    int replicas;
    seal *seal; /* --cluster-key, or NULL: nothing sealed nor checked */
    /* sealed.c: refusals counted, and those logged (key hash and revision) */
    _Atomic uint64_t refused[CLUSTER_REFUSED_KINDS];
    pthread_mutex_t refused_lock;
    struct {
        uint64_t key, rev;
    } refused_seen[SPATE_CLUSTER_REFUSED_SLOTS];
    uint64_t refused_logged_ms[CLUSTER_REFUSED_KINDS];
    /* Entries and chunks: lines logged in the current window, and those not. */
    uint64_t refused_window_ms[CLUSTER_REFUSED_KINDS];
    uint32_t refused_lines[CLUSTER_REFUSED_KINDS];
    uint64_t refused_unsaid[CLUSTER_REFUSED_KINDS];
    _Atomic int stopping;
    _Atomic int rewatch;   /* reconnected: the watcher starts again (its consumer may be lost) */
    _Atomic int connected; /* to a NATS server, as nats.c last told */
    _Atomic uint64_t refused_ns; /* when a refusal by NATS was last logged (monotonic) */
    int quiet;                   /* spated is stopping: the scheduler is going away */
    pthread_mutex_t lock;
    pthread_cond_t closed_cond;
    int closed; /* nats.c's last callback came (under lock) */
    pthread_mutex_t ack_lock;
    cluster_acks *acks; /* the batch the worker is publishing, or NULL */
    /* node.c */
    natsSubscription *hb_sub;
    uv_timer_t heartbeat;
    node_info nodes[SPATE_CLUSTER_NODES_MAX];
    uint32_t nnodes;
    cluster_figures_fn figures;
    void *figures_data;
    /* route.c */
    natsSubscription *invoke_sub, *reply_sub;
    list_node routed; /* invocations sent to other nodes */
    uint64_t next_seq;
    /* With a key: the seals of the invocations taken lately (while they are
     * fresh), so that one recorded and published again as it was is not run
     * twice. SPATE_CLUSTER_INVOKED_SLOTS, made at the first; loop thread. */
    struct invoked_seen {
        uint64_t seal, sent_ms;
    } * invoked;
    cluster_invoke_handler on_invoke;
    void *invoke_data;
    /* registry_js.c */
    rjs *reg;
    /* lease.c */
    pthread_mutex_t lease_mu;
    pthread_cond_t lease_cv;
    strmap leases; /* KIND.NAME -> lease (under lease_mu) */
    int lease_wake;
    pthread_t lease_thread;
    int leasing;
};

/* node.c */
int cluster__nodes_start(cluster *c, char *err, size_t errcap);
void cluster__nodes_stop(cluster *c);
/* Heard from within SPATE_CLUSTER_NODE_DOWN_MS. */
int cluster__node_live(const cluster *c, const node_info *n);

/* route.c */
int cluster__route_start(cluster *c, char *err, size_t errcap);
/* Unsubscribes; invocations sent away and not answered get status 0. */
void cluster__route_stop(cluster *c);

/* watch.c: a thread that follows the bucket until c stops, and calls heard
 * (on itself) with each change: the key without its "fn."/"tr."/"sc."/"so."/"al."/"ve." and the
 * value (taken; NULL: deleted); CLUSTER_CH_READY once the current values
 * are in, again after each new start (a reconnect). */
#define CLUSTER_KEY_MAX (SPATE_NAME_MAX + SPATE_TOPIC_NAME_MAX + 8)
enum cluster_change {
    CLUSTER_CH_FUNCTION,
    CLUSTER_CH_TRIGGER,
    CLUSTER_CH_SCHEDULE,
    CLUSTER_CH_SOURCE,
    CLUSTER_CH_ALIAS,
    CLUSTER_CH_VERSION,
    CLUSTER_CH_READY,
    /* fn.KEY's value was refused (the cluster key): what the bucket holds
     * for it is unknown, not absent (text NULL). */
    CLUSTER_CH_FUNCTION_REFUSED
};
typedef void (*cluster_heard_fn)(void *data, enum cluster_change kind, const char *key, char *text);
int cluster__watch_start(cluster *c, cluster_heard_fn heard, void *data, pthread_t *out);

/* lease.c: the leases this node asked for (registry_lease). init at
 * start, the thread at follow; stop joins it (releasing what it holds). */
#define CLUSTER_LEASE_KEY_MAX (SPATE_NAME_MAX + 16) /* KIND.NAME */
void cluster__leases_init(cluster *c);
void cluster__leases_start(cluster *c);
void cluster__leases_stop(cluster *c);
/* 1 when this node holds key now (holder: its id, or the holder's); asking
 * makes the thread take and keep it until dropped. Any thread. */
int cluster__lease_query(cluster *c, const char *key, char *holder, size_t cap);
void cluster__lease_drop(cluster *c, const char *key);

/* entries.c: a schedule or a source as the bucket keeps it (JSON, caller
 * frees), and back: 0, or -1 when text is not one. A parsed schedule's
 * payload is in *payload (caller frees). */
char *cluster__schedule_json(const reg_schedule *s);
int cluster__schedule_parse(const char *text, reg_schedule *s, char **payload);
char *cluster__source_json(const reg_source *s);
int cluster__source_parse(const char *text, reg_source *s);
/* An alias (al.FUNCTION.ALIAS), as for a source, with the id of the node
 * that wrote it (origin; parsed into origin[cap] unless NULL, "" if none):
 * -1 also when its numbers make no alias (no version, a weight without its
 * version or on the same one). */
char *cluster__alias_json(const reg_alias *a, const char *origin);
int cluster__alias_parse(const char *text, reg_alias *a, char *origin, size_t cap);

/* registry_js.c: following the bucket (its watcher). */
void cluster__registry_follow(rjs *r);
/* On the loop: a lease of this node was taken or lost. */
void cluster__registry_leases_changed(rjs *r);
/* Joins the watcher; the registry stays usable (locally) until closed. */
void cluster__registry_stop(rjs *r);

/* sealed.c: registry values sealed with the cluster key (or bare without
 * one). The writes are kvStore's, sealed; rev may be NULL. */
natsStatus cluster__kv_put(cluster *c, const char *key, const char *value);
natsStatus cluster__kv_create(cluster *c, uint64_t *rev, const char *key, const char *value);
natsStatus cluster__kv_update(cluster *c, uint64_t *rev, const char *key, const char *value,
                              uint64_t last);
/* A delete: without a key kvStore's; with one a sealed empty value (a
 * tombstone), since a bare delete marker could come from anyone. */
natsStatus cluster__kv_delete(cluster *c, const char *key);
/* An entry's value read from the bucket, checked: 0 and *text (NUL-ended,
 * caller frees; NULL: deleted, by a tombstone or, without a key, a delete
 * marker), or -1: refused (logged once and counted, see cluster__refuse) or
 * out of memory. */
int cluster__kv_open(cluster *c, kvEntry *e, char **text);
/* A message sealed over what, its subject, the headers named (NULL-ended)
 * and its data: the seal in header Spate-Seal. Nothing without a key. */
void cluster__msg_seal(cluster *c, natsMsg *m, const char *what, const char *const *headers);
/* 0 when m's seal holds (without a key: when it has none); -1 and why. */
int cluster__msg_check(cluster *c, natsMsg *m, const char *what, const char *const *headers,
                       char *why, size_t whycap);
/* Stamps m with this node's clock (header Spate-Sent-Ms; seal it after,
 * naming the header), strictly increasing within the process (so that a
 * receiver may refuse one not newer than the last: a replay), and checks
 * such a stamp: 0 when within SPATE_CLUSTER_MSG_SKEW_MS of this node's
 * clock, or without a key. cluster__msg_sent reads it (0: none). */
void cluster__msg_stamp(natsMsg *m);
int cluster__msg_fresh(cluster *c, natsMsg *m, char *why, size_t whycap);
uint64_t cluster__msg_sent(natsMsg *m);
/* Counts a refusal and logs it, once per key and revision (rev 0: a
 * message, logged at most every SPATE_CLUSTER_REFUSED_LOG_MS). Any thread. */
void cluster__refuse(cluster *c, enum cluster_refused kind, const char *key, uint64_t rev,
                     const char *why);

/* chunks.c: blocking, for the worker thread. Publishes the file at path as
 * the chunks of sha and their count; a failure to read it goes to err. */
natsStatus cluster__chunks_put(cluster *c, const char *sha, const char *path, char *err,
                               size_t errcap);
/* Fetches the chunks of sha into data (checked against sha); err says why
 * not ("refused" in it: trying again will not help). */
void cluster__chunks_get(cluster *c, const char *sha, buf *data, char *err, size_t errcap);
void cluster__chunks_purge(cluster *c, const char *sha);

#endif
