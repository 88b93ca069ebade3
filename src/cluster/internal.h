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
#include "common/buf.h"
#include "common/hash.h"
#include "common/limits.h"
#include "common/list.h"

#define CLUSTER_BUCKET "spate-registry"
/* The failed attempts of messages being retried (jsqueue/). */
#define CLUSTER_ATTEMPTS_BUCKET "spate-attempts"
#define CLUSTER_ARTIFACT_STREAM "SPATE_ARTIFACTS"
#define CLUSTER_ID_LEN 16 /* a node's id: hex of 8 random bytes */

typedef struct node_info {
    char id[CLUSTER_ID_LEN + 1];
    char url[128];
    uint32_t instances, max_instances, functions;
    uint64_t seen_ms; /* loop time */
} node_info;

typedef struct rjs rjs;

struct cluster {
    uv_loop_t *loop;
    bridge *bridge;
    char id[CLUSTER_ID_LEN + 1];
    char url[128];
    char data_dir[4096];
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;       /* the registry */
    kvStore *attempts; /* failed attempts of messages being retried */
    int replicas;
    _Atomic int stopping;
    _Atomic int rewatch;   /* reconnected: the watcher starts again (its consumer may be lost) */
    _Atomic int connected; /* to a NATS server, as nats.c last told */
    int quiet;             /* spated is stopping: the scheduler is going away */
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
    cluster_invoke_handler on_invoke;
    void *invoke_data;
    /* registry_js.c */
    rjs *reg;
};

/* node.c */
int cluster__nodes_start(cluster *c, char *err, size_t errcap);
void cluster__nodes_stop(cluster *c);

/* route.c */
int cluster__route_start(cluster *c, char *err, size_t errcap);
/* Unsubscribes; invocations sent away and not answered get status 0. */
void cluster__route_stop(cluster *c);

/* watch.c: a thread that follows the bucket until c stops, and calls heard
 * (on itself) with each change: the key without its "fn."/"tr." and the
 * value (taken; NULL: deleted); CLUSTER_CH_READY once the current values
 * are in, again after each new start (a reconnect). */
#define CLUSTER_KEY_MAX (SPATE_NAME_MAX + SPATE_TOPIC_NAME_MAX + 8)
enum cluster_change { CLUSTER_CH_FUNCTION, CLUSTER_CH_TRIGGER, CLUSTER_CH_READY };
typedef void (*cluster_heard_fn)(void *data, enum cluster_change kind, const char *key, char *text);
int cluster__watch_start(cluster *c, cluster_heard_fn heard, void *data, pthread_t *out);

/* registry_js.c: following the bucket (its watcher). */
void cluster__registry_follow(rjs *r);
/* Joins the watcher; the registry stays usable (locally) until closed. */
void cluster__registry_stop(rjs *r);

/* chunks.c: blocking, for the worker thread. Publishes the file at path as
 * the chunks of sha and their count; a failure to read it goes to err. */
natsStatus cluster__chunks_put(cluster *c, const char *sha, const char *path, char *err,
                               size_t errcap);
/* Fetches the chunks of sha into data (checked against sha); err says why
 * not ("refused" in it: trying again will not help). */
void cluster__chunks_get(cluster *c, const char *sha, buf *data, char *err, size_t errcap);
void cluster__chunks_purge(cluster *c, const char *sha);

#endif
