/*
 * cluster.h - spated as one node of many (--cluster nats://...): the nodes
 * share their registry through NATS JetStream and hand direct invocations
 * to each other when they have no room.
 *
 *   registry   the registry interface (store/registry.h) on JetStream
 *              (registry_js.c): a key-value bucket, key fn.NAME -> the
 *              version's SHA-256, size and configuration, tr.FUNCTION.TOPIC
 *              -> a trigger's, sc.NAME and so.NAME -> a schedule and a source;
 *              every node watches it and tells its user of changes made
 *              elsewhere; each node keeps its own SQLite registry beneath it
 *   leases     lease.KIND.NAME in the bucket: the one node that runs a
 *              schedule or a source without a consumer group (lease.c)
 *   artifacts  a JetStream stream, one message per 256 KiB chunk
 *              (spate.artifact.SHA.I) and a count (spate.artifact.SHA.n);
 *              fetched chunk by chunk and checked against the SHA-256
 *   nodes      heartbeats on spate.node.hb every second; a node unheard of
 *              for 5 s is down (node.c)
 *   invokes    requests on spate.invoke.NODE.NAME to each other live node
 *              in turn; a node without room answers "busy" and the asker
 *              asks the next, then runs it itself (route.c)
 *
 * nats.c blocks (JetStream calls, the key-value watcher) or calls back on its
 * own threads; all of that stays in this module's threads, which talk to the
 * loop through a bridge (cluster/bridge.h). Everything else here runs on the
 * loop. The cluster knows nothing of the scheduler: spated's main wires what
 * it needs of it (the figures of heartbeats, the handler of invocations
 * other nodes send).
 */
#ifndef SPATE_CLUSTER_H
#define SPATE_CLUSTER_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store/registry.h"

typedef struct cluster cluster;

typedef struct cluster_config {
    const char *urls;     /* nats://HOST:PORT[,nats://...] */
    const char *data_dir; /* the node id is kept there */
    const char *api_url;  /* how other nodes and users reach this one */
    uint32_t replicas;    /* of streams and the bucket; 0: 3 with 3 servers or more, else 1 */
    /* Each NULL or "" when unused (cluster/secure.h says what they hold). */
    const char *creds;    /* a NATS creds file, or an NKey seed file */
    const char *tls_ca;   /* PEM: the CA of the servers' certificates */
    const char *tls_cert; /* PEM: this node's client certificate, with tls_key */
    const char *tls_key;
    const char *key_file; /* --cluster-key: seals what nodes write (seal.h); NULL or "": none */
} cluster_config;

/* urls ("nats://[USER:PASSWORD@|TOKEN@]HOST:PORT,...") as they may be shown
 * in logs, errors and the configuration printed: each one's credentials
 * replaced by "***". 1 when every URL carries credentials. */
int cluster_shown_urls(const char *urls, char *out, size_t cap);

/* Checks cfg's credential and TLS files as cluster_start would, without
 * connecting (spated --check-config, and before it opens its store): 0, or
 * -1 with err saying which file and why. */
int cluster_check_files(const cluster_config *cfg, char *err, size_t errcap);

/* What a node refused because its seal did not hold (the cluster key):
 * registry entries, artifact chunks, messages (heartbeats, routed
 * invocations and their answers). Counted since start. */
enum cluster_refused {
    CLUSTER_REFUSED_ENTRY,
    CLUSTER_REFUSED_CHUNK,
    CLUSTER_REFUSED_MESSAGE,
    CLUSTER_REFUSED_KINDS
};
uint64_t cluster_refused(const cluster *c, enum cluster_refused kind);

/* Connects and creates (or binds) the buckets and the artifact stream. On
 * failure err says why. */
int cluster_start(uv_loop_t *loop, const cluster_config *cfg, cluster **out, char *err,
                  size_t errcap);
/* The registry of the cluster over this node's own one (local, taken):
 * every change made through it reaches every node. One per cluster; it
 * outlives cluster_stop (free it with registry_close after). */
int cluster_registry(cluster *c, registry *local, registry **out);
/* Once the API listens: the URL other nodes see in heartbeats. */
void cluster_set_api_url(cluster *c, const char *url);
/* Starts following the registry: the changes other nodes made, and those
 * they make from now on, reach the registry's events. */
void cluster_follow(cluster *c);
/* spated is stopping: no more registry changes applied, no invocations
 * taken from other nodes, no heartbeats (its topics still work). */
void cluster_quiesce(cluster *c);
/* Stops following and disconnects; its handles close on the loop. */
void cluster_stop(cluster *c);

const char *cluster_node_id(const cluster *c);

/* What this node's heartbeats say of it: instances running, functions
 * deployed. fn and data are borrowed until cluster_stop. */
typedef void (*cluster_figures_fn)(void *data, uint32_t *instances, uint32_t *deployed);
void cluster_set_figures(cluster *c, cluster_figures_fn fn, void *data);

/* Runs an invocation on another node that has room. Returns -1 when there is
 * no other live node (run it here); else cb follows exactly once: status is
 * the HTTP status of the answer (body the output or the error's JSON), or 0
 * when no node had room (run it here). payload is copied. */
typedef void (*cluster_invoke_cb)(int status, const char *body, size_t len, const char *node,
                                  void *data);
int cluster_route_invoke(cluster *c, const char *function, const char *request_id,
                         const void *payload, size_t len, uint32_t timeout_ms, cluster_invoke_cb cb,
                         void *data);
/* An invocation another node sent here: the handler runs it, or declines,
 * and calls answer(ctx, ...) exactly once, perhaps before returning: status
 * 200 with the output; 0 when not taken (busy: the asker asks another
 * node); else the HTTP status of the failure with its code and message.
 * payload is borrowed until answer. Without a handler every one is busy. */
typedef void (*cluster_answer_fn)(void *ctx, int status, const char *code, const char *body,
                                  size_t len);
typedef void (*cluster_invoke_handler)(void *data, const char *function, const char *request_id,
                                       const void *payload, size_t len, uint32_t timeout_ms,
                                       cluster_answer_fn answer, void *ctx);
void cluster_set_invoke_handler(cluster *c, cluster_invoke_handler h, void *data);

/* The failed attempts of messages being retried (jsqueue/): its stream is
 * "KV_" CLUSTER_ATTEMPTS_BUCKET. */
#define CLUSTER_ATTEMPTS_BUCKET "spate-attempts"
/* For the cluster's queue (cluster/jsqueue/): work runs on the worker
 * thread, then done on the loop; post runs fn on the loop (from any thread)
 * (cluster/bridge.h, without drop). */
typedef void (*cluster_fn)(void *arg);
void cluster_run(cluster *c, cluster_fn work, cluster_fn done, void *arg);
/* The same on a thread of its own for the attempts bucket's records
 * (jsqueue/settle.c): a bucket without a leader for seconds holds up only
 * its own work, not every publish and consumer of the node. */
void cluster_run_settle(cluster *c, cluster_fn work, cluster_fn done, void *arg);
void cluster_post(cluster *c, cluster_fn call, void *arg);
struct __jsCtx *cluster_js(const cluster *c);
/* The connection under it: requests the JetStream context has no call for
 * (pipelined deletions, cluster/jsqueue/trim.c). */
struct __natsConnection *cluster_nc(const cluster *c);
/* Why a nats.c call on this thread failed: its last error (TLS,
 * authorization, JetStream's description), or, when that is empty as after
 * some failures, the status's text. */
const char *cluster_nats_why(int status);
/* The async publishes JetStream refused, of one batch on the worker thread
 * (one batch at a time), counted between begin and end. */
typedef struct cluster_acks {
    uint32_t failed;
    uint32_t no_stream; /* of them, "no responders": no stream took the subject */
    uint32_t stored;    /* acknowledged, not as a duplicate */
    uint64_t last_seq;  /* the highest stream seq acknowledged */
    char err[160];      /* the first refusal */
    /* Optional: the batch's messages (n of them; set by cluster_acks_sent)
     * and the stream seq JetStream gave each (0 until acknowledged; a
     * duplicate's, Nats-Msg-Id within the stream's window: the original's). */
    const void **msgs;
    uint64_t *seqs;
    size_t n;
} cluster_acks;
void cluster_acks_begin(cluster *c, cluster_acks *a);
/* Before its async publish: the batch's i-th message is m (i < a->n). */
void cluster_acks_sent(cluster *c, cluster_acks *a, size_t i, const void *m);
void cluster_acks_end(cluster *c);
/* The bucket of failed attempts: a message's JetStream deliveries also
 * count hand-backs that never ran it (jsqueue/). */
struct __kvStore *cluster_attempts(const cluster *c);
int cluster_replicas(const cluster *c);

/* The nodes heard from, this one first: [{"id", "url", "instances", ...}]. */
cJSON *cluster_nodes_json(const cluster *c);
uint32_t cluster_live_nodes(const cluster *c);
/* Whether the node is connected to a NATS server now (else it is
 * reconnecting: it pulls nothing and publishing answers 503). */
int cluster_connected(const cluster *c);

#endif
