/*
 * lambda_esm.c - Lambda's event source mappings for SQS queues
 * (CreateEventSourceMapping, GetEventSourceMapping, ListEventSourceMappings,
 * UpdateEventSourceMapping, DeleteEventSourceMapping) over spate's triggers.
 *
 * A mapping is a trigger on a queue (a topic with an SQS receiver,
 * api/sqs.h) in the SQS event format: it leases from the queue's receiver,
 * so each message goes to it or to a ReceiveMessage caller, never both
 * (sched/triggers.h). Nothing is stored beside the trigger: its UUID is
 * derived from the queue and the function (esm_uuid), so every node names
 * it alike; Get, Update and Delete find it by walking the triggers (a node
 * has few). Enabled=false pauses the trigger (queue_sub_config.paused,
 * durable): its messages stay in the queue for ReceiveMessage. How the
 * members map: api/lambda_mgmt.h; what is refused and what ignored:
 * docs/api.md "Event source mappings".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/lambda_mgmt.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/limits.h"
#include "common/names.h"

#define ESM_UUID_LEN 36
/* Lambda's limits for SQS: a batch of up to 10,000 (10 from a FIFO queue),
 * a window of up to 300 s (none on a FIFO queue), over 10 only with a
 * window; ScalingConfig.MaximumConcurrency 2 to 1000. */
#define ESM_BATCH_MAX 10000
#define ESM_BATCH_FIFO_MAX 10
#define ESM_BATCH_DEFAULT 10
#define ESM_WINDOW_MAX_S 300
#define ESM_CONCURRENCY_MIN 2
#define ESM_CONCURRENCY_MAX 1000
#define ESM_ARN_PREFIX "arn:aws:sqs:"

/* SHA-256("esm\0" TOPIC "\0" FUNCTION), its first 16 bytes as a UUID of
 * version 4's shape. */
static void esm_uuid(const char *topic, const char *function, char out[ESM_UUID_LEN + 1])
{
    char text[4 + SPATE_TOPIC_NAME_MAX + 1 + SPATE_NAME_MAX + 1], hex[HASH_HEX_LEN + 1];
    size_t tl = strlen(topic), fl = strlen(function);
    memcpy(text, "esm", 4);
    memcpy(text + 4, topic, tl + 1);
    memcpy(text + 5 + tl, function, fl);
    if (hash_sha256_hex(text, 5 + tl + fl, hex)) memset(hex, '0', HASH_HEX_LEN);
    hex[12] = '4';
    static const char variant[] = "89ab";
    hex[16] = variant[(hex[16] >= 'a' ? hex[16] - 'a' + 10 : hex[16] - '0') & 3];
    snprintf(out, ESM_UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
}

static int is_queue(api *a, const char *topic)
{
    return queue_find_sub(a->q, topic, TRIGGERS_RECEIVER) != NULL;
}

/* Whether a trigger is a mapping: in the SQS shape. Its queue may be gone:
 * DeleteQueue leaves the triggers of the queue's topic (they read the topic
 * again), and a mapping that Get, List and Delete no longer found once its
 * queue was deleted could not be removed through Lambda's API (nor its
 * function deleted: its trigger stayed), and came back, with its old
 * settings, on a queue made again under the name. As Lambda keeps a
 * mapping whose queue is deleted, it stays found, and says so
 * (LastProcessingResult, esm_json). */
static int is_mapping(const queue_sub_config *cfg)
{
    return cfg->event_format == QUEUE_EVENT_SQS;
}

static int is_fifo(const char *topic)
{
    size_t n = strlen(topic);
    return n > 5 && strcmp(topic + n - 5, ".fifo") == 0;
}

static void queue_arn(char *out, size_t cap, const char *topic)
{
    snprintf(out, cap, ESM_ARN_PREFIX "%s:%s:%s", LAMBDA_REGION, LAMBDA_ACCOUNT, topic);
}

/* EventSourceMappingConfiguration. Caller owns. */
static cJSON *esm_json(api *a, const char *topic, const queue_sub_config *cfg, const char *state)
{
    char uuid[ESM_UUID_LEN + 1], arn[300];
    esm_uuid(topic, cfg->function, uuid);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "UUID", uuid);
    snprintf(arn, sizeof arn, "arn:aws:lambda:%s:%s:event-source-mapping:%s", LAMBDA_REGION,
             LAMBDA_ACCOUNT, uuid);
    cJSON_AddStringToObject(o, "EventSourceMappingArn", arn);
    cJSON_AddNumberToObject(o, "BatchSize", cfg->batch_size ? cfg->batch_size : 1);
    cJSON_AddNumberToObject(o, "MaximumBatchingWindowInSeconds", cfg->batch_window_ms / 1000);
    queue_arn(arn, sizeof arn, topic);
    cJSON_AddStringToObject(o, "EventSourceArn", arn);
    api_lambda_arn(arn, sizeof arn, cfg->function, cfg->qualifier);
    cJSON_AddStringToObject(o, "FunctionArn", arn);
    /* Epoch seconds, a number, as rest-json writes a timestamp. */
    cJSON_AddNumberToObject(o, "LastModified", (double)cfg->modified_ms / 1000.0);
    cJSON_AddStringToObject(o, "State", state ? state : cfg->paused ? "Disabled" : "Enabled");
    cJSON_AddStringToObject(o, "StateTransitionReason", "USER_INITIATED");
    if (!is_queue(a, topic))
        cJSON_AddStringToObject(o, "LastProcessingResult",
                                "PROBLEM: the SQS queue does not exist (deleted): delete the "
                                "mapping, or create the queue again");
    cJSON *types = cJSON_AddArrayToObject(o, "FunctionResponseTypes");
    if (cfg->report_failures)
        cJSON_AddItemToArray(types, cJSON_CreateString("ReportBatchItemFailures"));
    if (cfg->max_concurrency)
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(o, "ScalingConfig"), "MaximumConcurrency",
                                cfg->max_concurrency);
    return o;
}

/* --- Finding a mapping ----------------------------------------------------------------- */

typedef struct found {
    api *a;
    const char *uuid;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    queue_sub_config cfg;
    int hit;
} found;

static void on_find(const trigger_view *v, void *data)
{
    found *f = data;
    char uuid[ESM_UUID_LEN + 1];
    if (f->hit || !is_mapping(v->cfg)) return;
    esm_uuid(v->topic, v->cfg->function, uuid);
    if (strcmp(uuid, f->uuid) != 0) return;
    f->hit = 1;
    snprintf(f->topic, sizeof f->topic, "%s", v->topic);
    f->cfg = *v->cfg;
}

/* The mapping of uuid into *f, or 0 after answering 404. */
static int find(api *a, http_request *req, const char *uuid, found *f)
{
    *f = (found){.a = a, .uuid = uuid};
    if (strlen(uuid) == ESM_UUID_LEN) triggers_each(a->tr, on_find, f);
    if (!f->hit)
        api_lambda_error(req, 404, "ResourceNotFoundException",
                         "The resource you requested does not exist. (event source mapping "
                         "'%.40s')",
                         uuid);
    return f->hit;
}

/* --- Reading a body ----------------------------------------------------------------------- */

/* Members Lambda takes for other event sources, or that spate cannot honour:
 * refused rather than dropped (a filter dropped would run what it meant to
 * keep out). */
static const char *const refused[] = {
    "FilterCriteria",
    "StartingPosition",
    "StartingPositionTimestamp",
    "ParallelizationFactor",
    "DestinationConfig",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "TumblingWindowInSeconds",
    "Topics",
    "Queues",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "SelfManagedKafkaEventSourceConfig",
    "AmazonManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
    "ProvisionedPollerConfig",
};

/* A whole number member of body in [min, max] into *out (absent or null:
 * left). 0, or -1 with why. */
static int read_u32(const cJSON *body, const char *name, uint32_t min, uint32_t max, uint32_t *out,
                    char *why, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (!v || cJSON_IsNull(v)) return 0;
    /* The range first: a cast of a negative or huge double is undefined. */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max) ||
        v->valuedouble != (double)(uint32_t)v->valuedouble) {
        snprintf(why, cap, "%s must be a whole number from %" PRIu32 " to %" PRIu32, name, min,
                 max);
        return -1;
    }
    *out = (uint32_t)v->valuedouble;
    return 0;
}

/* Applies what body sets (Enabled, BatchSize, MaximumBatchingWindowInSeconds,
 * FunctionResponseTypes, ScalingConfig) over cfg, a mapping of topic, and
 * checks the result as Lambda does. 0, or -1 with why. */
static int apply_body(const cJSON *body, const char *topic, queue_sub_config *cfg, char *why,
                      size_t cap)
{
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, refused[i]);
        if (v && !cJSON_IsNull(v)) {
            snprintf(why, cap, "%s is not supported for an SQS event source in spate", refused[i]);
            return -1;
        }
    }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(body, "Enabled");
    if (en && !cJSON_IsNull(en)) {
        if (!cJSON_IsBool(en)) {
            snprintf(why, cap, "Enabled must be true or false");
            return -1;
        }
        cfg->paused = cJSON_IsFalse(en);
    }
    int fifo = is_fifo(topic);
    uint32_t window_s = cfg->batch_window_ms / 1000;
    if (read_u32(body, "BatchSize", 1, fifo ? ESM_BATCH_FIFO_MAX : ESM_BATCH_MAX, &cfg->batch_size,
                 why, cap) ||
        read_u32(body, "MaximumBatchingWindowInSeconds", 0, ESM_WINDOW_MAX_S, &window_s, why, cap))
        return -1;
    if (fifo && window_s) {
        snprintf(why, cap, "MaximumBatchingWindowInSeconds is not supported for FIFO queues");
        return -1;
    }
    if (cfg->batch_size > 10 && !window_s) {
        snprintf(why, cap,
                 "Maximum batch window in seconds must be greater than 0 if maximum batch size "
                 "is greater than 10");
        return -1;
    }
    cfg->batch_window_ms = window_s * 1000;
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(body, "FunctionResponseTypes");
    if (types && !cJSON_IsNull(types)) {
        if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) > 1) {
            snprintf(why, cap, "FunctionResponseTypes must be [] or [\"ReportBatchItemFailures\"]");
            return -1;
        }
        const cJSON *t = cJSON_GetArrayItem(types, 0);
        if (t && (!cJSON_IsString(t) || strcmp(t->valuestring, "ReportBatchItemFailures") != 0)) {
            snprintf(why, cap, "FunctionResponseTypes must be [] or [\"ReportBatchItemFailures\"]");
            return -1;
        }
        cfg->report_failures = t != NULL;
    }
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(body, "ScalingConfig");
    if (sc && !cJSON_IsNull(sc)) {
        if (!cJSON_IsObject(sc)) {
            snprintf(why, cap, "ScalingConfig must be an object");
            return -1;
        }
        /* {} takes the limit away, as Lambda. */
        cfg->max_concurrency = 0;
        if (read_u32(sc, "MaximumConcurrency", ESM_CONCURRENCY_MIN, ESM_CONCURRENCY_MAX,
                     &cfg->max_concurrency, why, cap))
            return -1;
    }
    return 0;
}

/* FunctionName of body (a name, NAME:QUALIFIER or an ARN) into t; 0, or
 * -1 after answering. */
static int body_function(http_request *req, const cJSON *body, int required, lambda_target *t)
{
    const cJSON *fname = cJSON_GetObjectItemCaseSensitive(body, "FunctionName");
    char why[300];
    if (!fname || cJSON_IsNull(fname)) {
        if (!required) return 1;
        api_lambda_error(req, 400, "InvalidParameterValueException", "FunctionName is required");
        return -1;
    }
    if (!cJSON_IsString(fname) ||
        lambda_parse_target(fname->valuestring, strlen(fname->valuestring), NULL, t, why,
                            sizeof why) != 0) {
        api_lambda_error(req, 400, "InvalidParameterValueException", "FunctionName: %s",
                         cJSON_IsString(fname) ? why : "must be a string");
        return -1;
    }
    return 0;
}

/* The function t names, with its qualifier resolving now; NULL after
 * answering 404. $LATEST is the active version (qualifier ""). */
static fn *target_function(api *a, http_request *req, lambda_target *t)
{
    if (strcmp(t->qualifier, "$LATEST") == 0) t->qualifier[0] = '\0';
    fn *f = functions_find(a->table, t->function, strlen(t->function));
    fn *g;
    uint32_t version;
    if (!f || !f->registered ||
        (t->qualifier[0] &&
         (strlen(t->qualifier) > SPATE_ALIAS_MAX ||
          functions_resolve(a->table, t->function, t->qualifier, &g, &version) != 0))) {
        char arn[300];
        api_lambda_arn(arn, sizeof arn, t->function, t->qualifier);
        api_lambda_error(req, 404, "ResourceNotFoundException", "Function not found: %s", arn);
        return NULL;
    }
    return f;
}

/* --- Changing --------------------------------------------------------------------------- */

typedef struct esm_change {
    http_request *req;
    api *a;
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    queue_sub_config cfg;
    int removing;
} esm_change;

static void on_changed(void *data, int status)
{
    esm_change *c = data;
    if (status) {
        api_lambda_error(c->req, 500, "ServiceException",
                         "cannot save the event source mapping: %s", err_str(status));
    } else {
        /* As the trigger is now (a deletion: as it was). */
        queue_sub *sub = c->removing ? NULL : queue_find_sub(c->a->q, c->topic, c->cfg.function);
        api_respond_json(c->req, 202,
                         esm_json(c->a, c->topic, sub ? queue_sub_get_config(sub) : &c->cfg,
                                  c->removing ? "Deleting" : NULL));
    }
    free(c);
}

/* Saves cfg as topic's trigger (or removes it); answers when durable. */
static void change(api *a, http_request *req, const char *topic, const queue_sub_config *cfg,
                   int removing)
{
    esm_change *c = calloc(1, sizeof *c);
    if (!c) return api_lambda_error(req, 500, "ServiceException", "out of memory");
    c->req = req;
    c->a = a;
    c->removing = removing;
    snprintf(c->topic, sizeof c->topic, "%s", topic);
    c->cfg = *cfg;
    int rc = removing ? triggers_remove(a->tr, topic, cfg->function, on_changed, c)
                      : triggers_add(a->tr, topic, cfg, on_changed, c);
    if (rc) {
        free(c);
        api_lambda_error(req, 500, "ServiceException", "cannot change the trigger now: %s",
                         err_str(rc));
    }
}

/* A native function takes one message per invocation (spate_request). */
static int batch_ok(http_request *req, const fn *f, const queue_sub_config *cfg)
{
    if (cfg->batch_size <= 1 || f->active.config.runtime != RUNTIME_NATIVE) return 1;
    api_lambda_error(req, 400, "InvalidParameterValueException",
                     "function '%s' is native: it takes one message per invocation (BatchSize 1)",
                     f->name);
    return 0;
}

static void create(api *a, http_request *req, const cJSON *body)
{
    const char *src =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "EventSourceArn"));
    if (!src)
        return api_lambda_error(req, 400, "InvalidParameterValueException",
                                "EventSourceArn is required");
    /* arn:aws:sqs:REGION:ACCOUNT:QUEUE: any region (spate has none), the
     * one account, a queue that exists. */
    const char *region = strncmp(src, ESM_ARN_PREFIX, sizeof ESM_ARN_PREFIX - 1) == 0
                             ? src + sizeof ESM_ARN_PREFIX - 1
                             : NULL;
    const char *account = region ? strchr(region, ':') : NULL;
    const char *qname = account ? strchr(account + 1, ':') : NULL;
    if (!qname || strncmp(account + 1, LAMBDA_ACCOUNT ":", sizeof LAMBDA_ACCOUNT) != 0 ||
        !name_is_topic(qname + 1, strlen(qname + 1)) || !is_queue(a, qname + 1))
        return api_lambda_error(req, 400, "InvalidParameterValueException",
                                "EventSourceArn must be the ARN of an existing SQS queue "
                                "(arn:aws:sqs:REGION:" LAMBDA_ACCOUNT ":QUEUE): '%.300s'",
                                src);
    const char *topic = qname + 1;
    lambda_target t;
    if (body_function(req, body, 1, &t)) return;
    fn *f = target_function(a, req, &t);
    if (!f) return;
    /* One trigger per queue and function, a mapping or spate's own. */
    queue_sub *had = queue_find_sub(a->q, topic, f->name);
    if (had && !is_mapping(queue_sub_get_config(had)))
        return api_lambda_error(req, 409, "ResourceConflictException",
                                "a trigger of spate's own (raw events) from queue '%s' to function "
                                "'%s' exists: remove it first (spate trigger rm)",
                                topic, f->name);
    if (had) {
        char uuid[ESM_UUID_LEN + 1];
        esm_uuid(topic, f->name, uuid);
        return api_lambda_error(req, 409, "ResourceConflictException",
                                "An event source mapping with SQS arn (\" %s \") and function "
                                "(\" %s \") already exists. Please update or delete the existing "
                                "mapping with UUID %s",
                                src, f->name, uuid);
    }
    queue_sub_config cfg = {0};
    snprintf(cfg.function, sizeof cfg.function, "%s", f->name);
    snprintf(cfg.qualifier, sizeof cfg.qualifier, "%.*s", (int)sizeof cfg.qualifier - 1,
             t.qualifier);
    /* The queue's RedrivePolicy decides where failures go (sched/triggers.h);
     * the trigger's own dead letters are never used on a queue. */
    snprintf(cfg.dlq, sizeof cfg.dlq, "%s.dlq", topic);
    cfg.max_attempts = SPATE_MAX_ATTEMPTS_DEFAULT;
    cfg.batch_size = ESM_BATCH_DEFAULT;
    cfg.event_format = QUEUE_EVENT_SQS;
    char why[300];
    if (apply_body(body, topic, &cfg, why, sizeof why))
        return api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
    if (!batch_ok(req, f, &cfg)) return;
    cfg.modified_ms = clock_now_ms();
    change(a, req, topic, &cfg, 0);
}

static void update(api *a, http_request *req, const char *uuid, const cJSON *body)
{
    found m;
    if (!find(a, req, uuid, &m)) return;
    queue_sub_config cfg = m.cfg;
    lambda_target t;
    int rc = body_function(req, body, 0, &t);
    if (rc < 0) return;
    if (rc == 0) {
        /* The same function, maybe another of its versions or aliases: the
         * mapping is the queue's trigger of that function. */
        if (strcmp(t.function, cfg.function) != 0)
            return api_lambda_error(req, 400, "InvalidParameterValueException",
                                    "a mapping's function cannot change (it is part of its UUID): "
                                    "delete it and create another");
        if (!target_function(a, req, &t)) return;
        snprintf(cfg.qualifier, sizeof cfg.qualifier, "%.*s", (int)sizeof cfg.qualifier - 1,
                 t.qualifier);
    }
    char why[300];
    if (apply_body(body, m.topic, &cfg, why, sizeof why))
        return api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
    fn *f = functions_find(a->table, cfg.function, strlen(cfg.function));
    if (f && !batch_ok(req, f, &cfg)) return;
    cfg.modified_ms = clock_now_ms();
    change(a, req, m.topic, &cfg, 0);
}

/* --- Listing ------------------------------------------------------------------------------ */

typedef struct esm_item {
    char uuid[ESM_UUID_LEN + 1];
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    queue_sub_config cfg;
} esm_item;

typedef struct listing {
    api *a;
    const char *topic;    /* EventSourceArn's queue; NULL: any */
    const char *function; /* FunctionName's; NULL: any */
    esm_item *items;
    size_t n, cap;
    int nomem;
} listing;

static void on_list(const trigger_view *v, void *data)
{
    listing *l = data;
    if (l->nomem || !is_mapping(v->cfg)) return;
    if (l->topic && strcmp(l->topic, v->topic) != 0) return;
    if (l->function && strcmp(l->function, v->cfg->function) != 0) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        esm_item *p = realloc(l->items, cap * sizeof *p);
        if (!p) {
            l->nomem = 1;
            return;
        }
        l->items = p;
        l->cap = cap;
    }
    esm_item *it = &l->items[l->n++];
    esm_uuid(v->topic, v->cfg->function, it->uuid);
    snprintf(it->topic, sizeof it->topic, "%s", v->topic);
    it->cfg = *v->cfg;
}

static int cmp_item(const void *x, const void *y)
{
    return strcmp(((const esm_item *)x)->uuid, ((const esm_item *)y)->uuid);
}

typedef struct list_query {
    char arn[400], function[400], marker[ESM_UUID_LEN + 1];
    uint32_t max;
    char why[200];
} list_query;

static int on_list_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    list_query *q = data;
    (void)klen;
    if (strcmp(k, "MaxItems") == 0)
        return api_number_param(k, v, vlen, 1, LAMBDA_LIST_MAX, &q->max, q->why, sizeof q->why);
    char *dst = strcmp(k, "EventSourceArn") == 0 ? q->arn
                : strcmp(k, "FunctionName") == 0 ? q->function
                : strcmp(k, "Marker") == 0       ? q->marker
                                                 : NULL;
    if (!dst) return 0; /* Lambda ignores what it does not know */
    size_t cap = dst == q->marker ? sizeof q->marker : sizeof q->arn;
    if (vlen >= cap || memchr(v, '\0', vlen)) {
        snprintf(q->why, sizeof q->why, "parameter '%s' is too long", k);
        return ERR_INVAL;
    }
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
    return 0;
}

static void list(api *a, http_request *req)
{
    list_query q = {.max = LAMBDA_LIST_DEFAULT};
    if (req->query && http_query_parse(req->query, on_list_param, &q) != 0)
        return api_lambda_error(req, 400, "InvalidParameterValueException", "%s",
                                q.why[0] ? q.why : "malformed query string");
    listing l = {.a = a};
    if (q.arn[0]) {
        /* The queue's name: what follows the ARN's last ':'. */
        const char *colon = strrchr(q.arn, ':');
        if (strncmp(q.arn, ESM_ARN_PREFIX, sizeof ESM_ARN_PREFIX - 1) != 0 || !colon)
            return api_lambda_error(req, 400, "InvalidParameterValueException",
                                    "EventSourceArn must be an SQS queue's ARN");
        l.topic = colon + 1;
    }
    lambda_target t;
    char why[300];
    if (q.function[0]) {
        if (lambda_parse_target(q.function, strlen(q.function), NULL, &t, why, sizeof why) != 0)
            return api_lambda_error(req, 400, "InvalidParameterValueException", "FunctionName: %s",
                                    why);
        l.function = t.function;
    }
    triggers_each(a->tr, on_list, &l);
    if (l.nomem) {
        free(l.items);
        return api_lambda_error(req, 500, "ServiceException", "out of memory");
    }
    if (l.n) qsort(l.items, l.n, sizeof *l.items, cmp_item);
    /* In UUID order, after the Marker: the page before's last. */
    lambda_page p = {.items = cJSON_CreateArray(), .max = q.max};
    for (size_t i = 0; i < l.n; i++) {
        if (q.marker[0] && strcmp(l.items[i].uuid, q.marker) <= 0) continue;
        if (!api_lambda_page_take(&p, l.items[i].uuid)) break;
        cJSON_AddItemToArray(p.items, esm_json(a, l.items[i].topic, &l.items[i].cfg, NULL));
    }
    free(l.items);
    api_lambda_page_answer(req, &p, "EventSourceMappings");
}

/* --- Dispatch ------------------------------------------------------------------------------ */

void api_lambda_esm(api *a, http_request *req, const route_match *m)
{
    enum http_method meth = req->method;
    int get = meth == HTTP_GET || meth == HTTP_HEAD;
    if (m->route == R_LAMBDA_ESMS && get) return list(a, req);
    if (m->route == R_LAMBDA_ESMS && meth != HTTP_POST) {
        return api_lambda_error(req, 405, "MethodNotAllowedException",
                                "method %s is not allowed here", http_method_str(meth));
    }
    if (m->route == R_LAMBDA_ESM && !get && meth != HTTP_PUT && meth != HTTP_DELETE) {
        return api_lambda_error(req, 405, "MethodNotAllowedException",
                                "method %s is not allowed here", http_method_str(meth));
    }
    char uuid[ESM_UUID_LEN + 2] = "";
    if (m->route == R_LAMBDA_ESM)
        snprintf(uuid, sizeof uuid, "%.*s",
                 (int)(m->name_len > ESM_UUID_LEN + 1 ? ESM_UUID_LEN + 1 : m->name_len), m->name);
    found f;
    if (m->route == R_LAMBDA_ESM && get) {
        if (find(a, req, uuid, &f)) api_respond_json(req, 200, esm_json(a, f.topic, &f.cfg, NULL));
        return;
    }
    if (m->route == R_LAMBDA_ESM && meth == HTTP_DELETE) {
        if (find(a, req, uuid, &f)) change(a, req, f.topic, &f.cfg, 1);
        return;
    }
    cJSON *body = api_lambda_body(req);
    if (!body) return;
    if (m->route == R_LAMBDA_ESMS)
        create(a, req, body);
    else
        update(a, req, uuid, body);
    cJSON_Delete(body);
}
