/*
 * cluster.h - spated as one node of many (--cluster nats://...): the nodes
 * share their registry of functions through NATS JetStream and hand direct
 * invocations to each other when they have no room.
 *
 *   registry   a JetStream key-value bucket, key fn.NAME -> the version's
 *              SHA-256, size and configuration; every node watches it and
 *              makes its own functions match (deploying, or deleting)
 *   artifacts  a JetStream stream, one message per 256 KiB chunk
 *              (spate.artifact.SHA.I) and a count (spate.artifact.SHA.n);
 *              fetched chunk by chunk and checked against the SHA-256
 *   nodes      heartbeats on spate.node.hb every second; a node unheard of
 *              for 5 s is down
 *   invokes    requests on spate.invoke.NAME to the queue group of all nodes;
 *              a node without room (or the asker itself) answers "busy" and
 *              the asker tries again, then runs it itself
 *
 * nats.c blocks (JetStream calls, the key-value watcher) or calls back on its
 * own threads; all of that stays in two threads of this module, which talk to
 * the loop through a locked list and a uv_async. Everything else here runs on
 * the loop.
 */
#ifndef SPATE_CLUSTER_H
#define SPATE_CLUSTER_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sched/functions.h"
#include "sched/triggers.h"

typedef struct cluster cluster;

typedef struct cluster_config {
    const char *urls;     /* nats://HOST:PORT[,nats://...] */
    const char *data_dir; /* the node id is kept there */
    const char *api_url;  /* how other nodes and users reach this one */
    uint32_t replicas;    /* of streams and the bucket; 0: 3 with 3 servers or more, else 1 */
} cluster_config;

/* Connects, creates (or binds) the bucket and the stream, and starts
 * following the registry. On failure err says why. */
int cluster_start(uv_loop_t *loop, const cluster_config *cfg, functions *table, cluster **out,
                  char *err, size_t errcap);
/* Once the API listens: the URL other nodes see in heartbeats. */
void cluster_set_api_url(cluster *c, const char *url);
/* Starts following the registry (after cluster_attach_triggers). */
void cluster_follow(cluster *c);
/* spated is stopping: no more registry changes applied, no invocations
 * taken from other nodes, no heartbeats (its topics still work). */
void cluster_quiesce(cluster *c);
/* Stops following and disconnects; its handles close on the loop. */
void cluster_stop(cluster *c);

const char *cluster_node_id(const cluster *c);

/* A deploy or delete made through this node: tell the other nodes. */
void cluster_announce_deploy(cluster *c, const fn *f);
void cluster_announce_delete(cluster *c, const char *name);

/* Runs an invocation on another node that has room. Returns -1 when there is
 * no other live node (run it here); else cb follows exactly once: status is
 * the HTTP status of the answer (body the output or the error's JSON), or 0
 * when no node had room (run it here). payload is copied. */
typedef void (*cluster_invoke_cb)(int status, const char *body, size_t len, const char *node,
                                  void *data);
int cluster_route_invoke(cluster *c, const char *function, const char *request_id,
                         const void *payload, size_t len, uint32_t timeout_ms, cluster_invoke_cb cb,
                         void *data);

/* For the cluster's queue (cluster/jsqueue.c): work runs on the worker
 * thread, then done on the loop; post runs fn on the loop (from any thread). */
typedef void (*cluster_fn)(void *arg);
void cluster_run(cluster *c, cluster_fn work, cluster_fn done, void *arg);
void cluster_post(cluster *c, cluster_fn call, void *arg);
struct __jsCtx *cluster_js(const cluster *c);
/* The async publishes JetStream refused, of one batch on the worker thread
 * (one batch at a time), counted between begin and end. */
typedef struct cluster_acks {
    uint32_t failed;
    char err[160]; /* the first refusal */
} cluster_acks;
void cluster_acks_begin(cluster *c, cluster_acks *a);
void cluster_acks_end(cluster *c);
/* The bucket of failed attempts: a message's JetStream deliveries also
 * count hand-backs that never ran it (jsqueue.c). */
struct __kvStore *cluster_attempts(const cluster *c);
int cluster_replicas(const cluster *c);

/* Triggers: added or removed through this node's API, told to the others;
 * those the registry holds are applied to tr. */
void cluster_attach_triggers(cluster *c, triggers *tr);
void cluster_announce_trigger(cluster *c, const char *topic, const q_sub_config *cfg);
void cluster_announce_untrigger(cluster *c, const char *topic, const char *function);

/* The nodes heard from, this one first: [{"id", "url", "instances", ...}]. */
cJSON *cluster_nodes_json(const cluster *c);
uint32_t cluster_live_nodes(const cluster *c);
/* Whether the node is connected to a NATS server now (else it is
 * reconnecting: it pulls nothing and publishing answers 503). */
int cluster_connected(const cluster *c);

#endif
