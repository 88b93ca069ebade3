/*
 * api.h - the /v1 HTTP API of spated (docs/api.md): routes requests to the
 * function table and turns outcomes into statuses and JSON.
 */
#ifndef SPATE_API_H
#define SPATE_API_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/server.h"
#include "schedules/schedules.h"
#include "sched/functions.h"
#include "sched/triggers.h"
#include "sources/sources.h"
#include "store/queue.h"

typedef struct api_limits {
    size_t invoke_payload_max;
    size_t artifact_max;
    size_t message_max; /* one published message */
    size_t publish_max; /* one publish request (an NDJSON batch) */
    /* Topics a request may make (--max-topics): one more by publish, PUT or
     * SQS CreateQueue is refused 409 topic_limit (0: the default). */
    uint32_t max_topics;
    /* Topics /metrics and the history give series of their own
     * (--metrics-topics), the deepest first; 0: none. */
    uint32_t metrics_topics;
} api_limits;

typedef struct api api;
typedef struct auth auth;

/* Everything is borrowed for the life of the api; auth NULL lets every
 * request in. Free with api_free. */
api *api_create(functions *table, queue *q, triggers *tr, const auth *tokens,
                const api_limits *limits);
void api_free(api *a);
/* For a reload: new tokens (borrowed as at create) and limits (copied). */
void api_set_auth(api *a, const auth *tokens);
void api_set_limits(api *a, const api_limits *limits);
/* Which uids are function code's (spated hands them to functions): a
 * connection from a local process running as one of them gets no tokenless
 * trust; it needs a token valid for the route, also without a token file.
 * The predicate and data are borrowed for the life of the api. Without it
 * only peers whose uid is unknown are treated so. */
void api_set_function_uids(api *a, int (*is_function_uid)(uid_t uid, void *data), void *data);
/* Cluster mode: what the API shows of the nodes (GET /v1/nodes, /metrics),
 * read-only, filled by spated's main. Without it the API shows one node. */
typedef struct api_nodes {
    const char *(*self)(void *data); /* this node's id */
    int (*connected)(void *data);    /* to the cluster now */
    uint32_t (*live)(void *data);    /* nodes heard from lately */
    cJSON *(*json)(void *data);      /* the nodes, this one first; caller owns */
    /* What the node refused for want of the cluster key's seal, by kind:
     * 0 registry entries, 1 artifact chunks, 2 messages; NULL: none. */
    uint64_t (*rejected)(void *data, int kind);
    void *data;
} api_nodes;
/* Copied; its data borrowed for the life of the api. */
void api_set_nodes(api *a, const api_nodes *nodes);
/* The schedules the API shows and changes (borrowed for the life of the
 * api); without them /v1/schedules answers 503. */
void api_set_schedules(api *a, schedules *s);
/* The event sources /v1/sources manages (borrowed for the life of the api);
 * without them those routes answer 503. */
void api_set_sources(api *a, sources *src);
/* Samples this node's history once a second on loop (GET /v1/history;
 * metrics/history.h) into a ring of bytes bytes. 0 or ERR_NOMEM. The
 * sampler stops at api_history_stop (spated stopping) or api_free. */
int api_history_start(api *a, uv_loop_t *loop, size_t bytes);
void api_history_stop(api *a);
/* spated is stopping: the triggers and functions the api reads close from
 * here on. The history sampler stops, and answers built over several loop
 * turns (/metrics, the pages of /v1/topics, /v1/functions, /v1/triggers)
 * end with 503 shutting_down at their next turn instead of reading them. */
void api_stop(api *a);
/* The handlers to give http_server_start, with the api as their data. */
const http_handlers *api_http_handlers(void);

#endif
