/*
 * internal.h - what the files of src/api/ share; nothing outside api/
 * includes it (the public face is api/api.h).
 *
 * The api borrows everything it holds (struct api) for its life. A request
 * is the HTTP server's: a route answers it once, now or from a callback,
 * and a request context a route allocates for a callback (a deploy, a
 * delete, a publish) is freed by that route when it answers.
 *
 *   api.c        the api's life and settings; the server's handlers: a
 *                connection's trust, admission by token before the body,
 *                the body's limit, dispatch by route; JSON and 405 answers
 *   route.c      which route a path is, the scope a request on it needs
 *   params.c     integer and boolean query parameters
 *   functions.c  /v1/functions: list, deploy, configure, describe, delete
 *   invoke.c     /v1/functions/NAME/invoke, here or routed to another node
 *   lambda.c     Lambda's Invoke API (/2015-03-31/functions/NAME/invocations);
 *                lambda_parse.c its request parsing (api/lambda.h)
 *   lambda_async.c  async invocations (Event, ?async=1) and their destinations
 *   lambda_mgmt.c   Lambda's management API (functions, code, configuration,
 *                versions); lambda_aliases.c its aliases (api/lambda_mgmt.h);
 *                lambda_body.c what their bodies ask for (api/lambda.h)
 *   logs.c       /v1/functions/NAME/logs
 *   topics.c     /v1/topics: a topic's figures, list, delete, purge,
 *                retention; the dispatch of the topic and trigger routes
 *   publish.c    /v1/topics/TOPIC/messages (POST)
 *   messages.c   /v1/topics/TOPIC/messages (GET) and .../redrive
 *   triggers.c   /v1/triggers
 *   untrigger.c  removing the triggers of a forced delete
 *   schedules.c  /v1/schedules (and the trigger a --function schedule needs)
 *   sources.c    /v1/sources: add or replace, list, status, remove
 *   nodes.c      /v1/nodes;  metrics.c /metrics;  ui.c /ui
 *   history.c    the per-second samples of the last 15 minutes, /v1/history
 *   json.c, artifact.c, auth.c  JSON of functions, artifact checks, tokens
 *   sigv4.c      AWS Signature Version 4, verified (pure: sigv4.h)
 *   awsauth.c    admission on the AWS routes by SigV4; AWS-shaped refusals
 *   sqs.c        Amazon SQS's actions and its JSON 1.0 protocol; sqs_recv.c
 *                its receiver (visibility timeouts, long polls): api/sqs.h
 *
 * Names: api_* in api/api.h is the public face; api_* here is shared
 * between these files only; plain static names stay in their file. All
 * runs on the loop thread.
 */
#ifndef SPATE_API_INTERNAL_H
#define SPATE_API_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "api/auth.h"

struct api {
    const auth *auth; /* NULL: no token file, everything is allowed */
    /* spated is stopping (api_stop): what it reads (triggers, functions)
     * closes, so an answer built over several loop turns ends at its next. */
    int stopping;
    functions *table;
    queue *q;
    triggers *tr;
    api_limits limits;
    api_nodes nodes;                            /* nodes.json NULL: a single node */
    sources *src;                               /* NULL: no sources (api_set_sources) */
    int (*function_uid)(uid_t uid, void *data); /* NULL: none known */
    void *function_uid_data;
    schedules *sched; /* NULL: none (api_set_schedules) */
    /* Destination records not sent to an async topic because their chain of
     * async invocations was SPATE_ASYNC_HOPS_MAX long (a loop, most likely). */
    uint64_t async_loops_stopped;
    struct sqs *sqs;             /* SQS's receiver state (api/sqs_recv.c); NULL until first used */
    struct api_history *history; /* api/history.c; NULL until api_history_start */
};

/* http_peer.flags: the connection is from function code (api_set_function_uids). */
#define API_PEER_FUNCTION 1u

/* May the caller see secrets (functions' environment values): an admin
 * token, or without a token file a caller that is not function code. */
int api_caller_is_admin(const api *a, const http_request *req);

/* --max-topics: whether a request that makes topic (when it does not exist
 * yet) would go over the node's maximum; and that maximum. */
int api_topic_over_limit(api *a, const char *topic);
uint32_t api_max_topics(const api *a);
/* Answers 409 topic_limit for topic, naming the limit. */
void api_respond_topic_limit(api *a, http_request *req, const char *topic);
/* In a cluster, whether topic's stream name is over JetStream's maximum:
 * then answered 400 (a publish was answered 503 "publish again" for ever,
 * and a trigger's dead letters were never stored). */
int api_topic_too_long(api *a, http_request *req, const char *topic);

enum route {
    R_NONE,
    R_HEALTH,
    R_FUNCTIONS,       /* /v1/functions */
    R_FUNCTION,        /* /v1/functions/NAME */
    R_FUNCTION_INVOKE, /* /v1/functions/NAME/invoke */
    R_FUNCTION_LOGS,   /* /v1/functions/NAME/logs */
    R_TOPICS,          /* /v1/topics */
    R_TOPIC,           /* /v1/topics/TOPIC */
    R_TOPIC_MESSAGES,  /* /v1/topics/TOPIC/messages */
    R_TOPIC_REDRIVE,   /* /v1/topics/TOPIC/redrive */
    R_TOPIC_PURGE,     /* /v1/topics/TOPIC/purge */
    R_TRIGGERS,        /* /v1/triggers */
    R_TRIGGER,         /* /v1/triggers/TOPIC/FUNCTION */
    R_METRICS,         /* /metrics */
    R_NODES,           /* /v1/nodes */
    R_STATUS,          /* /v1/status */
    R_HISTORY,         /* /v1/history */
    R_UI,              /* /ui and what is under it */
    R_SCHEDULES,       /* /v1/schedules */
    R_SCHEDULE,        /* /v1/schedules/NAME */
    R_SOURCES,         /* /v1/sources */
    R_SOURCE,          /* /v1/sources/NAME */
    R_ALIASES,         /* /v1/functions/NAME/aliases */
    R_ALIAS,           /* /v1/functions/NAME/aliases/ALIAS */
    R_ROLLBACK,        /* /v1/functions/NAME/rollback */
    R_LAMBDA_INVOKE,   /* /2015-03-31/functions/NAME/invocations (NAME still %-encoded) */
    R_SQS,             /* / and /000000000000/QUEUE: SQS (api/sqs.c) */
    /* Lambda's management API (api/lambda_mgmt.c); NAME still %-encoded. */
    R_LAMBDA_FUNCTIONS, /* /2015-03-31/functions */
    R_LAMBDA_FUNCTION,  /* /2015-03-31/functions/NAME */
    R_LAMBDA_CONFIG,    /* /2015-03-31/functions/NAME/configuration */
    R_LAMBDA_CODE,      /* /2015-03-31/functions/NAME/code */
    R_LAMBDA_VERSIONS,  /* /2015-03-31/functions/NAME/versions */
    R_LAMBDA_ALIASES,   /* /2015-03-31/functions/NAME/aliases */
    R_LAMBDA_ALIAS,     /* /2015-03-31/functions/NAME/aliases/ALIAS */
    R_LAMBDA_ESMS,      /* /2015-03-31/event-source-mappings (api/lambda_esm.c) */
    R_LAMBDA_ESM,       /* /2015-03-31/event-source-mappings/UUID */
};

typedef struct route_match {
    enum route route;
    const char *name; /* function or topic, into the path */
    size_t name_len;
    const char *name2; /* a trigger's function, an alias */
    size_t name2_len;
    const char *qualifier; /* NAME:QUALIFIER/invoke: after the ':'; NULL: none */
    size_t qualifier_len;
} route_match;

/* api/route.c: the route of a path (its names point into path), and the
 * scope of token a request on it needs (0: none). */
route_match api_route_match(const char *path);
unsigned api_route_scope(const route_match *m, enum http_method method);

/* api/route.c: the scope a request on an AWS route needs: Lambda's Invoke
 * invoke, reading any, the rest admin. */
unsigned api_aws_scope(enum http_method method, const char *path);

/* api/awsauth.c: an AWS protocol: the paths it owns, the service its
 * signatures are scoped to, and how it writes an error (status, the AWS
 * error type, a message). */
typedef struct api_aws_protocol {
    const char *prefix;
    const char *service;
    void (*error)(http_request *req, int status, const char *type, const char *message);
    /* Optional: whether req is this protocol's (instead of the prefix), and
     * the scope it needs (instead of api_aws_scope). */
    int (*match)(const http_request *req);
    unsigned (*scope)(const http_request *req);
} api_aws_protocol;
/* The protocol whose route req is on, or NULL: not an AWS route. */
const api_aws_protocol *api_aws_protocol_of(const http_request *req);
/* Admission (tokens on): checks what the headers can show and marks req
 * when they are refused and name no known access key (its body then gets
 * the small limit); never refuses itself (the handler answers). */
void api_aws_admit(const api *a, http_request *req, const api_aws_protocol *p);
/* Whether api_aws_admit marked req. */
int api_aws_refused(const http_request *req);
/* With the body: 1 when req is signed by a known key with the scope it
 * needs (the connection is then trusted); else answers the refusal in p's
 * shape and returns 0. Clears admission's mark. */
int api_aws_verify(const api *a, http_request *req, const api_aws_protocol *p);

/* Whether the caller of an AWS route that api_aws_verify let through (or
 * any request without a token file: api_caller_is_admin) holds the admin
 * scope: whether it may see functions' environment values. */
int api_aws_caller_is_admin(const api *a, const http_request *req);

/* How a route writes an error: the status, spate's code ("not_found",
 * "deploy_in_progress", ...) and the message. NULL where one is asked for:
 * the native API's shape (http_respond_error); Lambda's API maps the code
 * onto its error types (api/lambda_mgmt.c). */
typedef void (*api_error_fn)(http_request *req, int status, const char *code, const char *message);

/* api/page.c: a listing's page written over several loop turns. walk adds
 * (api_page_put) at most max items after the cursor after (NULL: from the
 * first) and sets *more when another follows; nonzero: out of memory. */
typedef struct api_page api_page;
#define API_PAGE_CURSOR_MAX 256 /* TOPIC/FUNCTION */
typedef struct api_page_source {
    const char *key; /* the array's name: "functions" */
    int (*walk)(api *a, api_page *pg, const char *after, uint32_t max, int *more);
    uint32_t (*total)(api *a); /* NULL: the walk counts them (api_page_set_total) */
} api_page_source;
/* Answers req with {"KEY":[...],"next":CURSOR|null,"limit":N,"total":T}. */
void api_page_start(api *a, http_request *req, const api_page_source *src, uint32_t limit,
                    const char *after);
/* Adds item (taken) with its cursor; 1: take no more this turn (the walk
 * stops; the next turn resumes after the last one taken). */
int api_page_put(api_page *pg, cJSON *item, const char *cursor);
/* The total, when the walk counts it anyway (it goes over them all). */
void api_page_set_total(api_page *pg, uint32_t total);

/* api/api.c: answers every route gives the same way. Answers with doc
 * (taken; NULL answers 500). */
void api_respond_json(http_request *req, int status, cJSON *doc);
/* The same once the registry's writes made so far are durable (in a
 * cluster: in the bucket, so every node will hear of them); 503 when they
 * could not be made so. doc is taken; NULL: no body. */
void api_respond_durable(api *a, http_request *req, int status, cJSON *doc);
/* The same with its refusal written by fail (NULL: the native shape). */
void api_respond_durable_as(api *a, http_request *req, int status, cJSON *doc, api_error_fn fail);
void api_method_not_allowed(http_request *req, const char *allow);
/* api/params.c: parses an integer query parameter into out, or writes why
 * it is wrong. */
int api_number_param(const char *key, const char *val, size_t vlen, uint64_t min, uint64_t max,
                     uint32_t *out, char *why, size_t whycap);

/* Whether a JSON text's strings hold a NUL (an escaped \u0000): cJSON ends
 * a string there, so a member would be cut short without a word. Exact for
 * a text cJSON parsed (escapes occur only inside strings). */
int api_json_has_nul(const char *text, size_t len);

/* Parses a boolean query parameter: true, 1 or nothing (a bare "?force") is
 * 1; false or 0 is 0; anything else writes why it is wrong. */
int api_bool_param(const char *key, const char *val, size_t vlen, int *out, char *why,
                   size_t whycap);

/* api/functions.c: GET /v1/functions; and PUT, PATCH, DELETE, GET of
 * /v1/functions/NAME (m->name is a valid function name). */
void api_functions_list(api *a, http_request *req);
void api_function(api *a, http_request *req, const route_match *m);
/* Deletes function name (valid), as DELETE /v1/functions/NAME does (force:
 * its triggers first; without, a function with triggers is refused 409
 * has_triggers), answering 204 (200 with what went, when forced) or the
 * error through fail. */
void api_function_delete(api *a, http_request *req, const char *name, int force, api_error_fn fail);
/* api/invoke.c: POST /v1/functions/NAME/invoke. */
void api_invoke(api *a, http_request *req, const route_match *m);
/* api/aliases.c: /v1/functions/NAME/aliases[/ALIAS] and /rollback. */
void api_aliases(api *a, http_request *req, const route_match *m);
/* api/lambda.c: POST /2015-03-31/functions/NAME/invocations (Lambda's
 * Invoke). */
void api_lambda_invoke(api *a, http_request *req, const route_match *m);
/* api/lambda_mgmt.c: Lambda's management API (the R_LAMBDA_* routes but
 * Invoke): functions, their code and configuration, versions, aliases. */
void api_lambda_mgmt(api *a, http_request *req, const route_match *m);
/* api/lambda_esm.c: Lambda's event source mappings of SQS queues
 * (R_LAMBDA_ESMS: Create, List; R_LAMBDA_ESM: Get, Update, Delete). */
void api_lambda_esm(api *a, http_request *req, const route_match *m);
/* The body limit of CreateFunction and UpdateFunctionCode: the artifact
 * limit in base64, and the rest of the request. */
size_t api_lambda_code_body_max(const api *a);
/* An error in Lambda's rest-json shape: x-amzn-ErrorType: type and
 * {"Type": "User"|"Service", "message": ...}, as the AWS SDKs parse it. */
void api_lambda_error(http_request *req, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The function and version a name and qualifier ("" or $LATEST: the active
 * version; a number) stand for: 0, or -1 with the HTTP status, Lambda's
 * error type and why. The one place qualifiers are resolved: aliases plug
 * in here. */
int api_lambda_resolve(api *a, const char *function, const char *qualifier, fn **out,
                       uint32_t *version, int *status, const char **type, char *why, size_t cap);
/* Lambda's error object ({"errorMessage","errorType"}) of an invocation
 * that failed, crashed or timed out, from the pool's text. Caller owns;
 * free with free(). NULL when out of memory. */
char *api_lambda_error_json(enum pool_outcome outcome, const char *body, size_t len,
                            const char *request_id, uint32_t timeout_ms);
/* api/lambda_async.c: stores an async invocation of f with the request's
 * body (taken) and answers 202 with its request id (lambda: in Lambda's
 * shape), or the error. */
void api_async_invoke(api *a, http_request *req, fn *f, uint32_t version, int lambda);
/* The internal topic of f's async invocations, spate.async.NAME. */
void api_async_topic(const char *function, char *out, size_t cap);
/* The version an async invocation of f through qualifier (len bytes;
 * version: the resolved one) runs: 0 (the one active when it runs) without
 * a qualifier or with $LATEST, else the version it names (a number, or the
 * one an alias points at). 0 with *run set, or -1 with why: an alias that
 * routes a share to a second version (each attempt would have to pick, and
 * the destinations say one version). */
int api_async_version(const fn *f, const char *qualifier, size_t len, uint32_t version,
                      uint32_t *run, char *why, size_t whycap);
/* Hooks the destinations of async invocations into the triggers. */
void api_async_start(api *a);
/* api/nodes.c: GET /v1/nodes. */
void api_nodes_list(api *a, http_request *req);
/* GET /v1/status: this node's limits and their headroom. */
void api_status(api *a, http_request *req);

/* api/untrigger.c: {"topic": T, "function": F}, as answers name a trigger. */
cJSON *api_trigger_ref(const char *topic, const char *function);
/* Removes the triggers refs names ([api_trigger_ref...], taken), announcing
 * then calls cb once — perhaps before returning — with
 * those removed (the callback's to free) and the first failure, or NULL when
 * there was none (a trigger already gone is no failure). */
typedef void (*api_untriggered_cb)(void *data, cJSON *removed, const char *err);
void api_remove_triggers(api *a, cJSON *refs, api_untriggered_cb cb, void *data);

/* A name from the path, cut short for a message (as %.*s takes it). */
#define API_NAME_FMT(len) (int)((len) > 128 ? 128 : (len))

/* api/topics.c: the /v1/topics and /v1/triggers routes, which it hands on
 * to the files below once the topic's name is checked. */
void api_topics(api *a, http_request *req, const route_match *m);
/* A trigger with its figures, as GET of a topic or a trigger shows it.
 * Caller owns. */
cJSON *api_trigger_json(const trigger_view *v);
/* A topic over its triggers, as GET /v1/topics/TOPIC and /metrics show it. */
typedef struct topic_summary {
    uint64_t depth; /* what the slowest trigger has left; with none, what is stored */
    uint64_t in_flight, published, stored, bytes;
    uint64_t dead_lettered, acked; /* over every trigger it had: they never go down */
    queue_retention retention;
    int64_t oldest_ms; /* publish time of the oldest unsettled message, 0 if none */
    double oldest_age_s;
} topic_summary;
int api_topic_summary(api *a, const char *topic, topic_summary *out);

/* api/publish.c: POST /v1/topics/TOPIC/messages. */
void api_publish(api *a, http_request *req, const char *topic);
/* api/messages.c: GET /v1/topics/TOPIC/messages; POST .../redrive. */
void api_messages_read(api *a, http_request *req, const char *topic);
void api_redrive(api *a, http_request *req, const char *topic);
/* api/triggers.c: GET /v1/triggers; PUT, DELETE, GET of
 * /v1/triggers/TOPIC/FUNCTION (m->name2 is the function, not yet checked). */
void api_triggers_list(api *a, http_request *req);
void api_trigger(api *a, http_request *req, const route_match *m, const char *topic);

/* api/logs.c: a function's output. */
void api_logs(api *a, http_request *req, const route_match *m);
/* api/sources.c: GET /v1/sources; PUT, GET, DELETE /v1/sources/NAME. */
void api_sources(api *a, http_request *req, const route_match *m);
/* The spate_source_* families of /metrics. */
void api_sources_metrics(api *a, buf *out);

/* api/metrics.c: GET /metrics. */
void api_metrics(api *a, http_request *req);
/* api/history.c: GET /v1/history; closing the sampler (api_free). */
void api_history(api *a, http_request *req);
void api_history_free(api *a);
/* api/schedules.c: GET /v1/schedules; PUT, DELETE, GET of /v1/schedules/NAME. */
void api_schedules(api *a, http_request *req, const route_match *m);
/* api/sqs.c: an SQS request (R_SQS); whether req is one (a POST to / or
 * a queue URL, or one with the JSON protocol's target header); the scope
 * its action needs; an error in its protocol's shape (JSON 1.0 or the
 * query protocol's XML: awsauth.c's refusals). */
void api_sqs(api *a, http_request *req);
int api_sqs_match(const http_request *req);
unsigned api_sqs_scope(const http_request *req);
void api_sqs_error(http_request *req, int status, const char *type, const char *message);
/* api/sqs_recv.c: hooks the queues' receivers into the triggers; frees
 * what they hold (the loop then closes the timer). */
void api_sqs_start(api *a);
void api_sqs_free(api *a);

/* api/ui.c: the dashboard's files. */
void api_ui(http_request *req);

#endif
