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

/* The nodes heard from, this one first: [{"id", "url", "instances", ...}]. */
cJSON *cluster_nodes_json(const cluster *c);
uint32_t cluster_live_nodes(const cluster *c);

#endif
