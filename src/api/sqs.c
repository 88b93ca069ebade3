/*
 * sqs.c - Amazon SQS's actions and the AWS JSON 1.0 protocol they are read
 * and answered in (api/sqs.h "Design"). Every input is checked before
 * anything is stored; a refusal is SQS's own error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/sqs.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/json_alloc.h"
#include "common/lambda.h"
#include "common/hash.h"
#include "common/limits.h"
#include "common/reqid.h"
#include "common/utf8.h"
#include "sched/triggers.h"

static const struct {
    const char *type, *code;
    int status;
} errors[] = {
#define X(id, type, code, status) {type, code, status},
    SQS_ERR_MAP(X)
#undef X
};

/* --- The JSON 1.0 protocol --------------------------------------------------------------- */

#define JSON10 "application/x-amz-json-1.0"
#define TARGET_PREFIX "AmazonSQS."

/* An error as the JSON protocol of an awsQueryCompatible service writes it:
 * the shape's name in __type, the query code in x-amzn-query-error (which
 * the SDKs report as the code). */
static void json_error(http_request *req, int status, const char *type, const char *code,
                       const char *message)
{
    char hdr[192];
    snprintf(hdr, sizeof hdr, "x-amzn-query-error: %s;%s\r\n", code,
             status >= 500 ? "Receiver" : "Sender");
    cJSON *doc = cJSON_CreateObject();
    char full[128];
    snprintf(full, sizeof full, "com.amazonaws.sqs#%s", type);
    cJSON_AddStringToObject(doc, "__type", full);
    cJSON_AddStringToObject(doc, "message", message);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!text) {
        http_respond_error(req, 500, "out_of_memory", "cannot build the answer");
        return;
    }
    http_respond(req, status, JSON10, hdr, text, strlen(text));
    free(text);
}

/* An error in the query protocol's XML. */
static void query_error(http_request *req, int status, const char *code, const char *message)
{
    char id[REQID_LEN + 1];
    reqid_next(id);
    size_t len;
    char *xml = sqs_query_error(code, status < 500, message, id, &len);
    if (!xml) return http_respond_error(req, 500, "out_of_memory", "cannot build the answer");
    http_respond(req, status, "text/xml", NULL, xml, len);
    free(xml);
}

/* A request of the JSON protocol names its action in X-Amz-Target; one
 * of the query protocol, in its form. */
static int is_json(const http_request *req)
{
    return http_header(req, "x-amz-target") != NULL;
}

void api_sqs_error(http_request *req, int status, const char *type, const char *message)
{
    if (is_json(req))
        json_error(req, status, type, type, message);
    else
        query_error(req, status, type, message);
}

static void free_call(sqs_call *c)
{
    cJSON_Delete(c->in);
    free(c);
}

void sqs_ok(sqs_call *c, cJSON *out)
{
    if (!out) out = cJSON_CreateObject();
    if (c->query) {
        char id[REQID_LEN + 1];
        reqid_next(id);
        size_t len = 0;
        char *xml = out ? sqs_query_render(c->action, out, id, &len) : NULL;
        cJSON_Delete(out);
        if (json_alloc_failed_since() || !xml)
            http_respond_error(c->req, 503, "out_of_memory", "cannot build the answer");
        else
            http_respond(c->req, 200, "text/xml", NULL, xml, len);
        free(xml);
        return free_call(c);
    }
    char *text = out ? cJSON_PrintUnformatted(out) : NULL;
    cJSON_Delete(out);
    /* A member cJSON could not add would be missing from the answer. */
    if (json_alloc_failed_since() || !text)
        http_respond_error(c->req, 503, "out_of_memory", "cannot build the answer");
    else
        http_respond(c->req, 200, JSON10, NULL, text, strlen(text));
    free(text);
    free_call(c);
}

void sqs_fail(sqs_call *c, enum sqs_err e, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->query)
        query_error(c->req, errors[e].status, errors[e].code, msg);
    else
        json_error(c->req, errors[e].status, errors[e].type, errors[e].code, msg);
    free_call(c);
}

/* --- Input ------------------------------------------------------------------------------ */

/* A string member: NULL when absent; *bad when present but not a string. */
static const char *str_of(const cJSON *in, const char *name, int *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, name);
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsString(v)) {
        *bad = 1;
        return NULL;
    }
    return v->valuestring;
}

/* An integer member within [min, max] into *out (absent: untouched). -1
 * after answering c's refusal. */
static int int_of(sqs_call *c, const cJSON *in, const char *name, long min, long max, long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, name);
    if (!v || cJSON_IsNull(v)) return 0;
    /* The range first: casting a number past long's (1e999 is inf) is undefined. */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)min && v->valuedouble <= (double)max) ||
        v->valuedouble != (double)(long)v->valuedouble) {
        sqs_fail(c, SQS_INVALID_PARAMETER,
                 "value for parameter %s is invalid: must be an "
                 "integer from %ld to %ld",
                 name, min, max);
        return -1;
    }
    *out = (long)v->valuedouble;
    return 0;
}

/* [A-Za-z0-9_-], 1..80: batch entry ids, and queue names but a FIFO
 * queue's suffix. */
static int queue_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SPATE_SQS_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
            return 0;
    return 1;
}

/* Whether name is a FIFO queue's (it ends in .fifo). */
static int fifo_name(const char *s)
{
    size_t n = strlen(s);
    return n > 5 && strcmp(s + n - 5, ".fifo") == 0;
}

/* A queue name SQS accepts: 1..80 of [A-Za-z0-9_-], or such a name (up to
 * 75) and .fifo. */
static int name_ok(const char *s)
{
    char base[SPATE_SQS_NAME_MAX + 1];
    size_t n = strlen(s);
    if (n == 0 || n > SPATE_SQS_NAME_MAX) return 0;
    if (!fifo_name(s)) return queue_name_ok(s);
    memcpy(base, s, n - 5);
    base[n - 5] = '\0';
    return queue_name_ok(base);
}

static queue_sub *receiver(sqs_call *c)
{
    return queue_find_sub(c->a->q, c->queue, TRIGGERS_RECEIVER);
}

/* QueueUrl into c->queue: http://HOST[:PORT]/000000000000/NAME, or a path
 * alone; the queue must exist. -1 after answering the refusal. */
static int queue_of(sqs_call *c)
{
    int bad = 0;
    const char *url = str_of(c->in, "QueueUrl", &bad);
    if (!url) {
        sqs_fail(c, bad ? SQS_INVALID_PARAMETER : SQS_MISSING_PARAMETER,
                 "the request must contain the parameter QueueUrl");
        return -1;
    }
    const char *p = strstr(url, "/" SQS_ACCOUNT "/");
    const char *name = p ? p + sizeof SQS_ACCOUNT + 1 : NULL;
    if (!name || !name_ok(name)) {
        sqs_fail(c, SQS_INVALID_ADDRESS, "the address %.200s is not valid for this endpoint", url);
        return -1;
    }
    snprintf(c->queue, sizeof c->queue, "%s", name);
    if (!receiver(c)) {
        sqs_fail(c, SQS_NO_QUEUE, "the specified queue does not exist");
        return -1;
    }
    return 0;
}

static cJSON *queue_url(const sqs_call *c, const char *name)
{
    char url[400];
    snprintf(url, sizeof url, "http://%s/" SQS_ACCOUNT "/%s", c->host, name);
    return cJSON_CreateString(url);
}

/* --- Queues ------------------------------------------------------------------------------ */

/* The attributes a queue keeps (api/sqs.h: in its receiver's configuration). */
typedef struct queue_settings {
    long visibility_s, wait_s;
    long delay_s;                                 /* DelaySeconds */
    long retention_s;                             /* MessageRetentionPeriod */
    long long created_s, modified_s;              /* 0: not known (made before they were kept) */
    int fifo;                                     /* FifoQueue: its name ends in .fifo */
    int content_dedup;                            /* ContentBasedDeduplication */
    long max_receives;                            /* RedrivePolicy's maxReceiveCount; 0: none */
    char dlq[sizeof((queue_sub_config *)0)->dlq]; /* its dead-letter queue (a queue name) */
} queue_settings;

static void settings_of(const queue_sub_config *cfg, queue_settings *out)
{
    out->visibility_s = cfg->deadline_ms / 1000;
    out->wait_s = cfg->batch_window_ms / 1000;
    out->delay_s = cfg->max_concurrency;
    out->retention_s = cfg->batch_size ? cfg->batch_size : TRIGGERS_RETENTION_DEFAULT_S;
    out->fifo = cfg->ordered;
    out->content_dedup = cfg->report_failures;
    int64_t created, modified;
    triggers_receiver_times(cfg, &created, &modified);
    out->created_s = created;
    out->modified_s = modified;
    out->max_receives = cfg->dlq[0] ? cfg->max_attempts : 0;
    snprintf(out->dlq, sizeof out->dlq, "%s", cfg->max_attempts ? cfg->dlq : "");
}

static void config_of(const queue_settings *st, queue_sub_config *cfg)
{
    *cfg = (queue_sub_config){0};
    snprintf(cfg->function, sizeof cfg->function, "%s", TRIGGERS_RECEIVER);
    cfg->deadline_ms = (uint32_t)st->visibility_s * 1000;
    cfg->batch_window_ms = (uint32_t)st->wait_s * 1000;
    cfg->max_concurrency = (uint32_t)st->delay_s;
    cfg->batch_size = (uint32_t)st->retention_s;
    cfg->ordered = st->fifo; /* one message in flight per group, in order */
    cfg->report_failures = st->content_dedup;
    if (st->created_s)
        snprintf(cfg->qualifier, sizeof cfg->qualifier, "%lld %lld", st->created_s, st->modified_s);
    cfg->max_attempts = (uint32_t)st->max_receives;
    snprintf(cfg->dlq, sizeof cfg->dlq, "%s", st->dlq);
}

static int same_settings(const queue_settings *a, const queue_settings *b)
{
    return a->visibility_s == b->visibility_s && a->wait_s == b->wait_s &&
           a->delay_s == b->delay_s && a->retention_s == b->retention_s && a->fifo == b->fifo &&
           a->content_dedup == b->content_dedup && a->max_receives == b->max_receives &&
           strcmp(a->dlq, b->dlq) == 0;
}

/* RedrivePolicy: {"deadLetterTargetArn": "arn:aws:sqs:R:000000000000:DLQ",
 * "maxReceiveCount": N (a number or its string)}, the DLQ an existing queue
 * other than this one; "" removes it. -1 after answering the refusal. */
static int read_redrive(sqs_call *c, const char *text, queue_settings *st)
{
    if (!*text) {
        st->max_receives = 0;
        st->dlq[0] = '\0';
        return 0;
    }
    cJSON *doc = cJSON_Parse(text);
    const cJSON *arn = cJSON_GetObjectItemCaseSensitive(doc, "deadLetterTargetArn");
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(doc, "maxReceiveCount");
    long n = cJSON_IsNumber(max) && max->valuedouble >= 1 && max->valuedouble <= 1000
                 ? (long)max->valuedouble
             : cJSON_IsString(max) ? strtol(max->valuestring, NULL, 10)
                                   : 0;
    const char *name = cJSON_IsString(arn) ? strrchr(arn->valuestring, ':') : NULL;
    int ok = name && strncmp(arn->valuestring, "arn:aws:sqs:", 12) == 0 &&
             strstr(arn->valuestring, ":" SQS_ACCOUNT ":") && name_ok(name + 1) && n >= 1 &&
             n <= 1000;
    if (ok) {
        snprintf(st->dlq, sizeof st->dlq, "%s", name + 1);
        st->max_receives = n;
    }
    cJSON_Delete(doc);
    if (!ok) {
        sqs_fail(c, SQS_ATTR_VALUE,
                 "invalid value for the parameter RedrivePolicy: it must be a JSON object with "
                 "deadLetterTargetArn (a queue's ARN) and maxReceiveCount (1 to 1000)");
        return -1;
    }
    if (strcmp(st->dlq, c->queue) == 0 || !queue_find_sub(c->a->q, st->dlq, TRIGGERS_RECEIVER)) {
        sqs_fail(c, SQS_ATTR_VALUE,
                 "invalid value for the parameter RedrivePolicy: dead-letter target %s does not "
                 "exist (or is the queue itself)",
                 st->dlq);
        return -1;
    }
    /* SQS's rule: a FIFO queue's messages (a group each) go to a FIFO
     * queue, a standard queue's to a standard one. */
    if (fifo_name(st->dlq) != st->fifo) {
        sqs_fail(c, SQS_ATTR_VALUE,
                 "invalid value for the parameter RedrivePolicy: dead-letter queue must be same "
                 "type of queue as the source");
        return -1;
    }
    return 0;
}

/* Attributes of CreateQueue or SetQueueAttributes into *st (c->queue is
 * the queue's name): those kept, those SQS has at a fixed value here
 * (accepted at that value), the rest refused. */
static int read_settings(sqs_call *c, const cJSON *attrs, queue_settings *st)
{
    if (!attrs) return 0;
    if (!cJSON_IsObject(attrs)) {
        sqs_fail(c, SQS_INVALID_PARAMETER, "Attributes must be a map of strings");
        return -1;
    }
    const cJSON *a;
    cJSON_ArrayForEach(a, attrs)
    {
        if (!cJSON_IsString(a)) {
            sqs_fail(c, SQS_ATTR_VALUE, "the value of attribute %.80s must be a string", a->string);
            return -1;
        }
        if (strcmp(a->string, "RedrivePolicy") == 0) {
            if (read_redrive(c, a->valuestring, st)) return -1;
            continue;
        }
        /* FIFO's: fixed by the name (FifoQueue), or FIFO only. */
        int yes = strcmp(a->valuestring, "true") == 0;
        int boolean = yes || strcmp(a->valuestring, "false") == 0;
        if (strcmp(a->string, "FifoQueue") == 0 ||
            strcmp(a->string, "ContentBasedDeduplication") == 0) {
            int fifo_attr = a->string[0] == 'F';
            if (!boolean || (fifo_attr && yes != st->fifo) || (!fifo_attr && yes && !st->fifo)) {
                sqs_fail(c, SQS_ATTR_VALUE,
                         "invalid value for the parameter %s: a FIFO queue's name ends in .fifo "
                         "and its FifoQueue is true; ContentBasedDeduplication is FIFO's",
                         a->string);
                return -1;
            }
            if (!fifo_attr) st->content_dedup = yes;
            continue;
        }
        char *end = NULL;
        long v = strtol(a->valuestring, &end, 10);
        int num = end != a->valuestring && *end == '\0';
        long lo = 0, hi = -1, fixed = -1;
        long *into = NULL;
        if (strcmp(a->string, "VisibilityTimeout") == 0)
            into = &st->visibility_s, hi = SPATE_SQS_VISIBILITY_MAX;
        else if (strcmp(a->string, "ReceiveMessageWaitTimeSeconds") == 0)
            into = &st->wait_s, hi = SPATE_SQS_WAIT_MAX;
        /* 0 only where the queue cannot delay, and on a FIFO queue (a delayed
         * message waits as a retry, which its group's order would not see). */
        else if (strcmp(a->string, "DelaySeconds") == 0)
            into = &st->delay_s,
            hi = queue_flags(c->a->q) & QUEUE_DELAYS && !st->fifo ? SPATE_SQS_DELAY_MAX : 0;
        else if (strcmp(a->string, "MessageRetentionPeriod") == 0)
            into = &st->retention_s, lo = SPATE_SQS_RETENTION_MIN, hi = SPATE_SQS_RETENTION_MAX;
        else if (strcmp(a->string, "MaximumMessageSize") == 0)
            fixed = SPATE_SQS_MESSAGE_MAX;
        else {
            sqs_fail(c, SQS_ATTR_NAME, "unknown or not yet supported attribute %.80s", a->string);
            return -1;
        }
        /* Cluster mode: the JetStream queue keeps no delay (QUEUE_DELAYS) and
         * no age limit under its consumers (what nobody receives would stay,
         * and be counted): the default retention only, applied as messages
         * are received (triggers_receiver_next). */
        int shared = queue_flags(c->a->q) & QUEUE_SHARED;
        if (num && shared &&
            ((into == &st->delay_s && v > 0 && !st->fifo) ||
             (into == &st->retention_s && v != TRIGGERS_RETENTION_DEFAULT_S))) {
            sqs_fail(c, SQS_ATTR_VALUE,
                     "invalid value for the parameter %s: %s is not supported in cluster mode",
                     a->string,
                     into == &st->delay_s ? "a delay"
                                          : "a retention other than the default 345600 seconds");
            return -1;
        }
        if (!num || (into && (v < lo || v > hi)) || (!into && v != fixed)) {
            if (into)
                sqs_fail(c, SQS_ATTR_VALUE, "invalid value for the parameter %s: from %ld to %ld",
                         a->string, lo, hi);
            else
                sqs_fail(c, SQS_ATTR_VALUE,
                         "invalid value for the parameter %s: only %ld is supported yet", a->string,
                         fixed);
            return -1;
        }
        if (into) *into = v;
    }
    return 0;
}

static void on_settings_done(void *data, int status)
{
    sqs_call *c = data;
    if (status) return sqs_fail(c, SQS_UNAVAILABLE, "cannot store the queue: %s", err_str(status));
    sqs_ok(c, NULL);
}

static void on_queue_done(void *data, int status)
{
    sqs_call *c = data;
    if (status) return sqs_fail(c, SQS_UNAVAILABLE, "cannot store the queue: %s", err_str(status));
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "QueueUrl", queue_url(c, c->queue));
    sqs_ok(c, out);
}

/* The receiver's settings are stored: its topic's retention follows the
 * queue's (max_age_ms under its subscriptions, so that messages nobody
 * receives expire too), then done answers. Not in cluster mode, whose
 * queue keeps no retention under subscriptions: there receiving alone
 * deletes what is older (triggers_receiver_next). */
typedef struct stored_ctx {
    sqs_call *c;
    queue_done_cb done;
} stored_ctx;

static void on_retention_set(void *data, int status)
{
    stored_ctx *s = data;
    sqs_call *c = s->c;
    queue_done_cb done = s->done;
    free(s);
    done(c, status);
}

static void on_receiver_stored(void *data, int status)
{
    stored_ctx *s = data;
    queue_sub *sub = status ? NULL : receiver(s->c);
    if (!sub || queue_flags(s->c->a->q) & QUEUE_SHARED) return on_retention_set(s, status);
    queue_settings st;
    settings_of(queue_sub_get_config(sub), &st);
    queue_retention r = {.max_age_ms = (uint64_t)st.retention_s * 1000, .under_subscriptions = 1};
    int rc = queue_topic_retention(s->c->a->q, s->c->queue, &r, on_retention_set, s);
    if (rc) on_retention_set(s, rc);
}

/* Stores the receiver's configuration cfg, then its retention; done gets c. */
static int store_receiver(sqs_call *c, const queue_sub_config *cfg, queue_done_cb done)
{
    stored_ctx *s = malloc(sizeof *s);
    if (!s) return ERR_NOMEM;
    *s = (stored_ctx){c, done};
    /* Through the triggers, which record it in the registry: in cluster mode
     * every node has the queue's receiver (and its settings) so. */
    int rc = c->a->tr ? triggers_add(c->a->tr, c->queue, cfg, on_receiver_stored, s)
                      : queue_subscribe(c->a->q, c->queue, cfg, on_receiver_stored, s);
    if (rc) free(s);
    return rc;
}

static void create_queue(sqs_call *c)
{
    int bad = 0;
    const char *name = str_of(c->in, "QueueName", &bad);
    if (!name)
        return sqs_fail(c, bad ? SQS_INVALID_PARAMETER : SQS_MISSING_PARAMETER,
                        "the request must contain the parameter QueueName");
    if (!name_ok(name))
        return sqs_fail(c, SQS_INVALID_PARAMETER,
                        "can only include alphanumeric characters, hyphens, or underscores. 1 "
                        "to 80 in length; a FIFO queue's name ends in .fifo");
    if (cJSON_GetObjectItemCaseSensitive(c->in, "tags"))
        return sqs_fail(c, SQS_UNSUPPORTED, "queue tags are not supported yet");
    snprintf(c->queue, sizeof c->queue, "%s", name);
    queue_settings st = {.visibility_s = SPATE_SQS_VISIBILITY_DEFAULT,
                         .retention_s = TRIGGERS_RETENTION_DEFAULT_S};
    st.fifo = fifo_name(name);
    const cJSON *given = cJSON_GetObjectItemCaseSensitive(c->in, "Attributes");
    const cJSON *fq = cJSON_GetObjectItemCaseSensitive(given, "FifoQueue");
    if (st.fifo && !(cJSON_IsString(fq) && strcmp(fq->valuestring, "true") == 0))
        return sqs_fail(c, SQS_INVALID_PARAMETER,
                        "a FIFO queue (its name ends in .fifo) needs the attribute FifoQueue true");
    if (read_settings(c, given, &st)) return;
    queue_sub *sub = receiver(c);
    if (sub) { /* SQS: the same attributes answer its URL, others refuse */
        queue_settings have;
        settings_of(queue_sub_get_config(sub), &have);
        if (!same_settings(&have, &st))
            return sqs_fail(c, SQS_QUEUE_EXISTS,
                            "a queue already exists with the same name and different attributes");
        return on_queue_done(c, 0);
    }
    if (api_topic_over_limit(c->a, name))
        return sqs_fail(c, SQS_OVER_LIMIT,
                        "this node holds its maximum of %u queues and topics (spated "
                        "--max-topics): delete one first",
                        api_max_topics(c->a));
    st.created_s = st.modified_s = (long long)(clock_now_ms() / 1000);
    queue_sub_config cfg;
    config_of(&st, &cfg);
    int rc = store_receiver(c, &cfg, on_queue_done);
    if (rc) sqs_fail(c, SQS_UNAVAILABLE, "cannot create the queue: %s", err_str(rc));
}

static void get_queue_url(sqs_call *c)
{
    int bad = 0;
    const char *name = str_of(c->in, "QueueName", &bad);
    if (!name)
        return sqs_fail(c, bad ? SQS_INVALID_PARAMETER : SQS_MISSING_PARAMETER,
                        "the request must contain the parameter QueueName");
    if (!name_ok(name) || (snprintf(c->queue, sizeof c->queue, "%s", name), !receiver(c)))
        return sqs_fail(c, SQS_NO_QUEUE, "the specified queue does not exist");
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "QueueUrl", queue_url(c, name));
    sqs_ok(c, out);
}

typedef struct list_ctx {
    sqs_call *c;
    const char *prefix;
    const char *after; /* NextToken: the last queue of the page before; "" from the start */
    long max;          /* MaxResults; 0: up to 1000, no token */
    cJSON *urls;
    const char *last;
    int more;
} list_ctx;

/* Queues come by name (queue_each_sub's order), so a page goes on after
 * the name the token holds. */
static void list_one(queue_sub *sub, void *data)
{
    list_ctx *l = data;
    const char *topic = queue_sub_topic(sub);
    if (!triggers_is_receiver(sub) || strncmp(topic, l->prefix, strlen(l->prefix)) != 0 ||
        strcmp(topic, l->after) <= 0)
        return;
    int n = cJSON_GetArraySize(l->urls);
    if (n >= (l->max ? l->max : 1000)) {
        l->more = 1;
        return;
    }
    cJSON_AddItemToArray(l->urls, queue_url(l->c, topic));
    l->last = topic;
}

static void list_queues(sqs_call *c)
{
    int bad = 0;
    const char *prefix = str_of(c->in, "QueueNamePrefix", &bad);
    const char *token = str_of(c->in, "NextToken", &bad);
    if (bad) return sqs_fail(c, SQS_INVALID_PARAMETER, "QueueNamePrefix and NextToken are strings");
    long max = 0;
    if (int_of(c, c->in, "MaxResults", 1, 1000, &max)) return;
    if (token && !name_ok(token)) return sqs_fail(c, SQS_INVALID_PARAMETER, "invalid NextToken");
    list_ctx l = {c, prefix ? prefix : "", token ? token : "", max, cJSON_CreateArray(), NULL, 0};
    queue_each_sub(c->a->q, list_one, &l);
    cJSON *out = cJSON_CreateObject();
    /* SQS gives a token only to a caller that asked for pages (MaxResults). */
    if (max && l.more && l.last) cJSON_AddStringToObject(out, "NextToken", l.last);
    if (cJSON_GetArraySize(l.urls) > 0)
        cJSON_AddItemToObject(out, "QueueUrls", l.urls);
    else
        cJSON_Delete(l.urls);
    sqs_ok(c, out);
}

static void on_retention_cleared(void *data, int status)
{
    (void)status; /* the queue is gone either way; a topic's retention is the operator's */
    sqs_ok(data, NULL);
}

static void on_topic_deleted(void *data, int status, uint64_t count)
{
    (void)count;
    sqs_call *c = data;
    /* Busy: triggers read the topic; it stays theirs, the queue is gone,
     * and so is the queue's retention under them. */
    if (status && status != ERR_BUSY && status != ERR_NOTFOUND)
        return sqs_fail(c, SQS_UNAVAILABLE, "cannot delete the queue's messages: %s",
                        err_str(status));
    if (status == ERR_BUSY && !(queue_flags(c->a->q) & QUEUE_SHARED)) {
        queue_retention none = {0};
        if (queue_topic_retention(c->a->q, c->queue, &none, on_retention_cleared, c) == 0) return;
    }
    sqs_ok(c, NULL);
}

static void on_receiver_removed(void *data, int status)
{
    sqs_call *c = data;
    if (status) return sqs_fail(c, SQS_UNAVAILABLE, "cannot delete the queue: %s", err_str(status));
    int rc = queue_topic_delete(c->a->q, c->queue, on_topic_deleted, c);
    if (rc) on_topic_deleted(c, rc, 0);
}

static void delete_queue(sqs_call *c)
{
    if (queue_of(c)) return;
    sqs_forget_queue(c->a, c->queue);
    int rc = c->a->tr
                 ? triggers_remove(c->a->tr, c->queue, TRIGGERS_RECEIVER, on_receiver_removed, c)
                 : queue_unsubscribe(c->a->q, c->queue, TRIGGERS_RECEIVER, on_receiver_removed, c);
    if (rc) sqs_fail(c, SQS_UNAVAILABLE, "cannot delete the queue: %s", err_str(rc));
}

static void add_number(cJSON *to, const char *name, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    cJSON_AddStringToObject(to, name, num);
}

static void get_queue_attributes(sqs_call *c)
{
    if (queue_of(c)) return;
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(c->in, "AttributeNames");
    if (names && !cJSON_IsArray(names))
        return sqs_fail(c, SQS_INVALID_PARAMETER, "AttributeNames must be a list");
    static const char *const known[] = {
        "All",
        "QueueArn",
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "VisibilityTimeout",
        "ReceiveMessageWaitTimeSeconds",
        "DelaySeconds",
        "MaximumMessageSize",
        "RedrivePolicy",
        "MessageRetentionPeriod",
        "CreatedTimestamp",
        "LastModifiedTimestamp",
        "FifoQueue",
        "ContentBasedDeduplication",
    };
    unsigned want = 0;
    const cJSON *n;
    cJSON_ArrayForEach(n, names)
    {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] &&
               !(cJSON_IsString(n) && strcmp(n->valuestring, known[i]) == 0))
            i++;
        if (i == sizeof known / sizeof known[0])
            return sqs_fail(c, SQS_ATTR_NAME, "unknown or not yet supported attribute %.80s",
                            cJSON_IsString(n) ? n->valuestring : "(not a string)");
        want |= i == 0 ? ~0u : 1u << i;
    }
    queue_sub *sub = receiver(c);
    queue_sub_stats ss;
    queue_sub_get_stats(sub, &ss);
    queue_settings st;
    settings_of(queue_sub_get_config(sub), &st);
    uint64_t held = sqs_held_count(c->a, c->queue);
    cJSON *out = cJSON_CreateObject(), *at = cJSON_CreateObject();
    if (want & 1u << 1) {
        char arn[200];
        snprintf(arn, sizeof arn, "arn:aws:sqs:%s:" SQS_ACCOUNT ":%s", c->region, c->queue);
        cJSON_AddStringToObject(at, "QueueArn", arn);
    }
    /* depth counts what is leased (held here) and what waits for a retry. */
    /* and the delayed ones, which wait as retries at attempt 0. */
    uint64_t visible = ss.depth - ss.leased;
    visible = visible > ss.delayed ? visible - ss.delayed : 0;
    if (want & 1u << 2) add_number(at, "ApproximateNumberOfMessages", visible);
    /* Every lease of the receiver is out of sight: a receive's, and what a
     * trigger sharing it (an event source mapping) gathers or runs, which
     * SQS counts in flight too (these were counted nowhere: a queue whose
     * mapping ran a batch showed 0 and 0). In cluster mode, what every node
     * holds (JetStream's pending acks, as of its last figures). */
    if (ss.leased > held) held = ss.leased;
    if (want & 1u << 3) add_number(at, "ApproximateNumberOfMessagesNotVisible", held);
    if (want & 1u << 4) add_number(at, "ApproximateNumberOfMessagesDelayed", ss.delayed);
    if (want & 1u << 5) add_number(at, "VisibilityTimeout", (uint64_t)st.visibility_s);
    if (want & 1u << 6) add_number(at, "ReceiveMessageWaitTimeSeconds", (uint64_t)st.wait_s);
    if (want & 1u << 7) add_number(at, "DelaySeconds", (uint64_t)st.delay_s);
    if (want & 1u << 8) add_number(at, "MaximumMessageSize", SPATE_SQS_MESSAGE_MAX);
    if (want & 1u << 9 && st.max_receives) {
        char policy[300];
        snprintf(policy, sizeof policy,
                 "{\"deadLetterTargetArn\":\"arn:aws:sqs:%s:" SQS_ACCOUNT
                 ":%s\",\"maxReceiveCount\":%ld}",
                 c->region, st.dlq, st.max_receives);
        cJSON_AddStringToObject(at, "RedrivePolicy", policy);
    }
    if (want & 1u << 10) add_number(at, "MessageRetentionPeriod", (uint64_t)st.retention_s);
    if (want & 1u << 11 && st.created_s) add_number(at, "CreatedTimestamp", (uint64_t)st.created_s);
    if (want & 1u << 12 && st.modified_s)
        add_number(at, "LastModifiedTimestamp", (uint64_t)st.modified_s);
    if (want & 1u << 13 && st.fifo) cJSON_AddStringToObject(at, "FifoQueue", "true");
    if (want & 1u << 14 && st.fifo)
        cJSON_AddStringToObject(at, "ContentBasedDeduplication",
                                st.content_dedup ? "true" : "false");
    if (cJSON_GetArraySize(at) > 0)
        cJSON_AddItemToObject(out, "Attributes", at);
    else
        cJSON_Delete(at);
    sqs_ok(c, out);
}

/* --- Messages ---------------------------------------------------------------------------- */

int sqs_contents_ok(const char *s, size_t len)
{
    if (!utf8_valid(s, len)) return 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = p[i];
        if (b < 0x20 && b != 0x9 && b != 0xA && b != 0xD) return 0;
        /* U+FFFE and U+FFFF: EF BF BE, EF BF BF (surrogates are not valid UTF-8) */
        if (b == 0xEF && i + 2 < len && p[i + 1] == 0xBF && (p[i + 2] == 0xBE || p[i + 2] == 0xBF))
            return 0;
    }
    return 1;
}

/* What a send may carry on its queue. */
typedef struct send_rules {
    int delays; /* the queue can keep a delay (queue_flags QUEUE_DELAYS) */
    int fifo, content_dedup;
} send_rules;

/* A FIFO message's MessageGroupId or MessageDeduplicationId: 1..128 of
 * ASCII letters, digits and punctuation (SQS's rule). */
static int fifo_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SPATE_SQS_FIFO_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e) return 0;
    return 1;
}

/* A message's FIFO members: *group and *dedup (NULL: not given; into m)
 * as r allows them. -1, or an sqs_err with why. */
static int check_fifo(const cJSON *m, const send_rules *r, long delay, const char **group,
                      const char **dedup, char *why, size_t cap)
{
    int bad = 0;
    *group = str_of(m, "MessageGroupId", &bad);
    *dedup = str_of(m, "MessageDeduplicationId", &bad);
    const char *wrong = bad                             ? "MessageGroupId or MessageDeduplicationId"
                        : !r->fifo && *group            ? "MessageGroupId"
                        : !r->fifo && *dedup            ? "MessageDeduplicationId"
                        : r->fifo && delay > 0          ? "DelaySeconds"
                        : *group && !fifo_id_ok(*group) ? "MessageGroupId"
                        : *dedup && !fifo_id_ok(*dedup) ? "MessageDeduplicationId"
                                                        : NULL;
    if (wrong) {
        snprintf(why, cap,
                 "value for parameter %s is invalid: not valid for this queue type, or not 1 to "
                 "%d ASCII letters, digits and punctuation",
                 wrong, SPATE_SQS_FIFO_ID_MAX);
        return SQS_INVALID_PARAMETER;
    }
    if (r->fifo && !*group) {
        snprintf(why, cap, "the request must contain the parameter MessageGroupId");
        return SQS_MISSING_PARAMETER;
    }
    if (r->fifo && !*dedup && !r->content_dedup) {
        snprintf(why, cap,
                 "the queue should either have ContentBasedDeduplication enabled or "
                 "MessageDeduplicationId provided explicitly");
        return SQS_INVALID_PARAMETER;
    }
    return -1;
}

/* One message of a send on a queue with rules r: what SQS would refuse it
 * for, else -1 with *delay its DelaySeconds (-1: none given, the queue's
 * applies), *size its body's and attributes' bytes (what SQS counts) and,
 * on a FIFO queue, *group and *dedup (check_fifo). */
static int check_message(const cJSON *m, const send_rules *r, const char **body, cJSON **attrs,
                         long *delay, const char **group, const char **dedup, size_t *size,
                         char *why, size_t cap)
{
    int bad = 0;
    *attrs = NULL;
    *delay = -1;
    *group = *dedup = NULL;
    *body = str_of(m, "MessageBody", &bad);
    if (!*body) {
        snprintf(why, cap, "the request must contain the parameter MessageBody");
        return bad ? SQS_INVALID_PARAMETER : SQS_MISSING_PARAMETER;
    }
    size_t len = strlen(*body);
    if (len == 0) {
        snprintf(why, cap, "the request must contain the parameter MessageBody");
        return SQS_MISSING_PARAMETER;
    }
    if (len > SPATE_SQS_MESSAGE_MAX) {
        snprintf(why, cap,
                 "one or more parameters are invalid: the message is %zu bytes, at "
                 "most %u",
                 len, SPATE_SQS_MESSAGE_MAX);
        return SQS_INVALID_PARAMETER;
    }
    if (!sqs_contents_ok(*body, len)) {
        snprintf(why, cap,
                 "invalid binary character in the message body: SQS accepts #x9, #xA, "
                 "#xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF");
        return SQS_CONTENTS;
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(m, "DelaySeconds");
    if (d && !(cJSON_IsNumber(d) && d->valuedouble >= 0 && d->valuedouble <= SPATE_SQS_DELAY_MAX &&
               d->valuedouble == (double)(long)d->valuedouble)) {
        snprintf(why, cap,
                 "value for parameter DelaySeconds is invalid: must be between 0 and %d, if "
                 "provided",
                 SPATE_SQS_DELAY_MAX);
        return SQS_INVALID_PARAMETER;
    }
    if (d) *delay = (long)d->valuedouble;
    if (*delay > 0 && !r->delays) {
        snprintf(why, cap, "DelaySeconds is not supported in cluster mode yet");
        return SQS_UNSUPPORTED;
    }
    if (cJSON_GetObjectItemCaseSensitive(m, "MessageSystemAttributes")) {
        snprintf(why, cap, "MessageSystemAttributes is not supported yet");
        return SQS_UNSUPPORTED;
    }
    int fe = check_fifo(m, r, *delay, group, dedup, why, cap);
    if (fe >= 0) return fe;
    size_t bytes;
    int e = sqs_attrs_read(cJSON_GetObjectItemCaseSensitive(m, "MessageAttributes"), attrs, &bytes,
                           why, cap);
    if (e >= 0) return e;
    if (len + bytes > SPATE_SQS_MESSAGE_MAX) {
        cJSON_Delete(*attrs);
        *attrs = NULL;
        snprintf(why, cap,
                 "one or more parameters are invalid: the message and its attributes "
                 "are %zu bytes, at most %u",
                 len + bytes, SPATE_SQS_MESSAGE_MAX);
        return SQS_INVALID_PARAMETER;
    }
    *size = len + bytes;
    return -1;
}

/* A send in flight: the entries published, their ids in the answer. */
typedef struct send_ctx {
    sqs_call *c;
    int batch;
    size_t n;
    const cJSON *ids[SPATE_SQS_BATCH_MAX]; /* batch entries' Id members, into c->in */
    char md5[SPATE_SQS_BATCH_MAX][HASH_MD5_HEX_LEN + 1];
    cJSON *attrs[SPATE_SQS_BATCH_MAX]; /* normalized MessageAttributes (owned), or NULL */
    long delay[SPATE_SQS_BATCH_MAX];   /* DelaySeconds; -1: the queue's */
    /* FIFO: each entry's group (into c->in) and deduplication id (given, or
     * the body's SHA-256); an entry deduplicated is not stored: dup_of the
     * entry of this send it repeats, or -1 and seq the message it repeats. */
    int fifo;
    const char *group[SPATE_SQS_BATCH_MAX];
    char dedup[SPATE_SQS_BATCH_MAX][SPATE_SQS_FIFO_ID_MAX + 1];
    int dup[SPATE_SQS_BATCH_MAX];
    int dup_of[SPATE_SQS_BATCH_MAX];
    uint64_t seq[SPATE_SQS_BATCH_MAX]; /* known: a duplicate's; else set after the commit */
    char amd5[SPATE_SQS_BATCH_MAX][HASH_MD5_HEX_LEN + 1]; /* their digest; "" when none */
    cJSON *failed; /* batch: entries refused before the publish */
} send_ctx;

static void free_send(send_ctx *s)
{
    for (size_t i = 0; i < SPATE_SQS_BATCH_MAX; i++) cJSON_Delete(s->attrs[i]);
    cJSON_Delete(s->failed);
    free(s);
}

static cJSON *sent_entry(send_ctx *s, size_t i, uint64_t seq)
{
    cJSON *e = cJSON_CreateObject();
    char id[37];
    lambda_sqs_message_id(s->c->queue, triggers_receiver_created(receiver(s->c)), seq, id);
    if (s->batch) cJSON_AddStringToObject(e, "Id", s->ids[i]->valuestring);
    cJSON_AddStringToObject(e, "MessageId", id);
    cJSON_AddStringToObject(e, "MD5OfMessageBody", s->md5[i]);
    /* No digest without attributes: SDKs that verify it fail on an empty one. */
    if (s->amd5[i][0]) cJSON_AddStringToObject(e, "MD5OfMessageAttributes", s->amd5[i]);
    if (s->fifo) {
        char num[24];
        snprintf(num, sizeof num, "%020llu", (unsigned long long)seq);
        cJSON_AddStringToObject(e, "SequenceNumber", num);
    }
    return e;
}

/* The seqs of a send committed: the stored entries' as the queue wrote them
 * (queue_input.seq; in cluster mode JetStream's, which may be a duplicate's
 * first), a duplicate here the seq of what it repeats; the new
 * deduplication ids kept for SQS's window. */
static void settle_seqs(send_ctx *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->dup[i] && s->dup_of[i] >= 0) s->seq[i] = s->seq[s->dup_of[i]];
    for (size_t i = 0; s->fifo && i < s->n; i++)
        if (!s->dup[i]) sqs_dedup_add(s->c->a, s->c->queue, s->dedup[i], s->seq[i]);
}

static void on_sent(void *data, int status, uint64_t first_seq)
{
    send_ctx *s = data;
    sqs_call *c = s->c;
    if (status) {
        free_send(s);
        return sqs_fail(c, SQS_UNAVAILABLE, "cannot store the message: %s (nothing was stored)",
                        err_str(status));
    }
    (void)first_seq; /* each entry's own is in s->seq (queue_input.seq) */
    settle_seqs(s);
    cJSON *out;
    if (!s->batch) {
        out = sent_entry(s, 0, s->seq[0]);
    } else {
        out = cJSON_CreateObject();
        cJSON *ok = cJSON_AddArrayToObject(out, "Successful");
        for (size_t i = 0; i < s->n; i++) cJSON_AddItemToArray(ok, sent_entry(s, i, s->seq[i]));
        cJSON_AddItemToObject(out, "Failed", s->failed);
        s->failed = NULL;
    }
    free_send(s);
    sqs_ok(c, out);
}

/* FIFO: each entry's deduplication id (given, or the SHA-256 of its body),
 * and whether it repeats one sent within SQS's window or earlier in this
 * send (then it is answered as that one and not stored). */
static void deduplicate(send_ctx *s, const char *const *bodies, const char *const *given)
{
    for (size_t i = 0; i < s->n; i++) {
        s->dup_of[i] = -1;
        if (given[i])
            snprintf(s->dedup[i], sizeof s->dedup[i], "%s", given[i]);
        else
            hash_sha256_hex(bodies[i], strlen(bodies[i]), s->dedup[i]);
        for (size_t j = 0; j < i && !s->dup[i]; j++)
            if (!s->dup[j] && strcmp(s->dedup[j], s->dedup[i]) == 0) {
                s->dup[i] = 1;
                s->dup_of[i] = (int)j;
            }
        if (!s->dup[i] && sqs_dedup_find(s->c->a, s->c->queue, s->dedup[i], &s->seq[i]))
            s->dup[i] = 1;
    }
}

/* Publishes bodies[0..n) and s->attrs (checked) in one commit, but the
 * duplicates a FIFO queue drops (s->dup); answers c. A message's attributes
 * go with it as queue_attrs (sqs_attrs.c), which the queue copies; a FIFO
 * message's group is its key. */
static void publish(send_ctx *s, const char *const *bodies)
{
    sqs_call *c = s->c;
    size_t total = 0, stored = 0;
    for (size_t i = 0; i < s->n; i++) {
        total += strlen(bodies[i]) + (s->group[i] ? strlen(s->group[i]) + 1 : 0) +
                 (s->fifo ? strlen(s->dedup[i]) + 1 : 0);
        hash_md5_hex(bodies[i], strlen(bodies[i]), s->md5[i]);
        stored += !s->dup[i];
    }
    if (stored == 0) return on_sent(s, 0, 0); /* every entry refused or a duplicate */
    queue_sub *r = receiver(c);               /* there: the send checked it, nothing ran since */
    queue_settings st = {0};
    if (r) settings_of(queue_sub_get_config(r), &st);
    long queue_delay = st.delay_s;
    buf body;
    buf_init(&body, total);
    queue_input in[SPATE_SQS_BATCH_MAX];
    queue_attrs qa[SPATE_SQS_BATCH_MAX];
    char *json[SPATE_SQS_BATCH_MAX] = {0};
    size_t off[SPATE_SQS_BATCH_MAX], koff[SPATE_SQS_BATCH_MAX], doff[SPATE_SQS_BATCH_MAX];
    uint32_t window_ms = sqs_dedup_window_ms(c->a);
    /* Sent by a triggered invocation (its SDK sends the trace header it was
     * given): the message keeps its place in the chain (common/lambda.h). */
    uint32_t lineage = lambda_trace_lineage(http_header(c->req, "X-Amzn-Trace-Id"));
    char lineage_s[12];
    snprintf(lineage_s, sizeof lineage_s, "%u", (unsigned)lineage);
    size_t entry[SPATE_SQS_BATCH_MAX]; /* the entry of each input */
    int failed = 0;
    size_t k = 0; /* inputs made */
    for (size_t i = 0; i < s->n && !failed; i++) {
        if (s->dup[i]) continue;
        size_t len = strlen(bodies[i]);
        off[k] = body.len;
        in[k] = (queue_input){.len = (uint32_t)len,
                              .delay_ms =
                                  (uint32_t)(s->delay[i] >= 0 ? s->delay[i] : queue_delay) * 1000};
        failed = buf_append(&body, bodies[i], len) != 0;
        if (!failed && s->group[i]) { /* the key, NUL-terminated, as queue_msg keeps it */
            koff[k] = body.len;
            in[k].key_len = (uint32_t)strlen(s->group[i]);
            failed = buf_append(&body, s->group[i], in[k].key_len + 1) != 0;
        }
        if (!failed && s->fifo) { /* kept with the message (queue_input.dedup) */
            doff[k] = body.len;
            in[k].dedup_len = (uint32_t)strlen(s->dedup[i]);
            in[k].dedup_ms = window_ms;
            failed = buf_append(&body, s->dedup[i], in[k].dedup_len + 1) != 0;
        }
        if (!failed && s->attrs[i]) {
            failed = sqs_attrs_md5(s->attrs[i], s->amd5[i]) != 0;
            if (!failed && lineage)
                failed = !cJSON_AddStringToObject(s->attrs[i], LAMBDA_SQS_LINEAGE_ATTR, lineage_s);
            json[k] = failed ? NULL : cJSON_PrintUnformatted(s->attrs[i]);
            failed = failed || !json[k];
            if (!failed) {
                qa[k] = (queue_attrs){.source = SQS_ATTRS_SOURCE,
                                      .headers = json[k],
                                      .headers_len = (uint32_t)strlen(json[k])};
                in[k].attrs = &qa[k];
            }
        } else if (!failed && lineage) {
            int n = snprintf(NULL, 0, "{\"" LAMBDA_SQS_LINEAGE_ATTR "\":\"%s\"}", lineage_s);
            json[k] = malloc((size_t)n + 1);
            failed = !json[k];
            if (!failed) {
                snprintf(json[k], (size_t)n + 1, "{\"" LAMBDA_SQS_LINEAGE_ATTR "\":\"%s\"}",
                         lineage_s);
                qa[k] = (queue_attrs){
                    .source = SQS_ATTRS_SOURCE, .headers = json[k], .headers_len = (uint32_t)n};
                in[k].attrs = &qa[k];
            }
        }
        entry[k++] = i;
    }
    /* A duplicate answers its own attributes' digest, as SQS does. */
    for (size_t i = 0; i < s->n && !failed; i++)
        if (s->dup[i] && s->attrs[i]) failed = sqs_attrs_md5(s->attrs[i], s->amd5[i]) != 0;
    if (failed) {
        for (size_t i = 0; i < k; i++) free(json[i]);
        buf_free(&body);
        free_send(s);
        return sqs_fail(c, SQS_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < k; i++) {
        in[i].data = body.data + off[i];
        if (in[i].key_len) in[i].key = body.data + koff[i];
        in[i].seq = &s->seq[entry[i]];
        if (s->fifo) in[i].dedup = body.data + doff[i];
    }
    queue_publish(c->a->q, c->queue, &body, in, k, on_sent, s);
    for (size_t i = 0; i < k; i++) free(json[i]);
}

/* The rules of c->queue's sends. */
static send_rules rules_of(sqs_call *c)
{
    queue_settings st = {0};
    queue_sub *r = receiver(c);
    if (r) settings_of(queue_sub_get_config(r), &st);
    return (send_rules){queue_flags(c->a->q) & QUEUE_DELAYS ? 1 : 0, st.fifo, st.content_dedup};
}

static void send_message(sqs_call *c)
{
    if (queue_of(c)) return;
    const char *body, *dedup;
    cJSON *attrs;
    long delay;
    char why[300];
    size_t size;
    send_rules rules = rules_of(c);
    send_ctx *s = calloc(1, sizeof *s);
    if (!s) return sqs_fail(c, SQS_INTERNAL, "out of memory");
    int e = check_message(c->in, &rules, &body, &attrs, &delay, &s->group[0], &dedup, &size, why,
                          sizeof why);
    if (e >= 0) {
        free(s);
        return sqs_fail(c, (enum sqs_err)e, "%s", why);
    }
    s->c = c;
    s->n = 1;
    s->fifo = rules.fifo;
    s->attrs[0] = attrs;
    s->delay[0] = delay;
    if (s->fifo) deduplicate(s, &body, &dedup);
    publish(s, &body);
}

/* Batch entry ids: [A-Za-z0-9_-], 1..80. */
static int entry_id_ok(const cJSON *id)
{
    return cJSON_IsString(id) && queue_name_ok(id->valuestring);
}

/* The Entries of a batch: 1..10 of them, each an object whose Id is valid
 * and distinct. -1 after answering the refusal. */
static int batch_entries(sqs_call *c, const cJSON **entries, size_t *n)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(c->in, "Entries");
    if (!list || !cJSON_IsArray(list)) {
        sqs_fail(c, list ? SQS_INVALID_PARAMETER : SQS_MISSING_PARAMETER,
                 "the request must contain the parameter Entries, a list");
        return -1;
    }
    int count = cJSON_GetArraySize(list);
    if (count == 0) {
        sqs_fail(c, SQS_EMPTY_BATCH, "there should be at least one entry in the request");
        return -1;
    }
    if (count > SPATE_SQS_BATCH_MAX) {
        sqs_fail(c, SQS_TOO_MANY, "maximum number of entries per request are %d; you have sent %d",
                 SPATE_SQS_BATCH_MAX, count);
        return -1;
    }
    *n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        const cJSON *id = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "Id") : NULL;
        if (!entry_id_ok(id)) {
            sqs_fail(c, SQS_BAD_ENTRY_ID,
                     "a batch entry id can only contain alphanumeric characters, hyphens and "
                     "underscores; it can be at most 80 letters long");
            return -1;
        }
        for (size_t j = 0; j < *n; j++)
            if (strcmp(cJSON_GetObjectItemCaseSensitive(entries[j], "Id")->valuestring,
                       id->valuestring) == 0) {
                sqs_fail(c, SQS_IDS_NOT_DISTINCT, "id %s repeated", id->valuestring);
                return -1;
            }
        entries[(*n)++] = e;
    }
    return 0;
}

static cJSON *failed_entry(const char *id, enum sqs_err e, const char *why)
{
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "Id", id);
    cJSON_AddBoolToObject(f, "SenderFault", errors[e].status < 500);
    cJSON_AddStringToObject(f, "Code", errors[e].code);
    cJSON_AddStringToObject(f, "Message", why);
    return f;
}

static void send_message_batch(sqs_call *c)
{
    if (queue_of(c)) return;
    const cJSON *entries[SPATE_SQS_BATCH_MAX];
    size_t n;
    if (batch_entries(c, entries, &n)) return;
    send_ctx *s = calloc(1, sizeof *s);
    if (!s || !(s->failed = cJSON_CreateArray())) {
        free(s);
        return sqs_fail(c, SQS_INTERNAL, "out of memory");
    }
    s->c = c;
    s->batch = 1;
    const char *bodies[SPATE_SQS_BATCH_MAX], *dedups[SPATE_SQS_BATCH_MAX];
    size_t total = 0;
    send_rules rules = rules_of(c);
    s->fifo = rules.fifo;
    for (size_t i = 0; i < n; i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(entries[i], "Id");
        char why[300];
        cJSON *attrs;
        long delay;
        size_t size;
        int e = check_message(entries[i], &rules, &bodies[s->n], &attrs, &delay, &s->group[s->n],
                              &dedups[s->n], &size, why, sizeof why);
        if (e >= 0) { /* SQS: a bad entry fails alone */
            cJSON_AddItemToArray(s->failed, failed_entry(id->valuestring, (enum sqs_err)e, why));
            continue;
        }
        total += size; /* SQS counts the attributes too */
        s->attrs[s->n] = attrs;
        s->delay[s->n] = delay;
        s->ids[s->n++] = id;
    }
    if (total > SPATE_SQS_MESSAGE_MAX) {
        free_send(s);
        return sqs_fail(c, SQS_BATCH_TOO_LONG,
                        "batch requests cannot be longer than %u bytes; you have sent %zu",
                        SPATE_SQS_MESSAGE_MAX, total);
    }
    if (s->fifo) deduplicate(s, bodies, dedups);
    publish(s, bodies);
}

static void receive_message(sqs_call *c)
{
    if (queue_of(c)) return;
    queue_settings st;
    settings_of(queue_sub_get_config(receiver(c)), &st);
    long max = 1, vis = st.visibility_s, wait = st.wait_s;
    if (int_of(c, c->in, "MaxNumberOfMessages", 1, SPATE_SQS_BATCH_MAX, &max) ||
        int_of(c, c->in, "VisibilityTimeout", 0, SPATE_SQS_VISIBILITY_MAX, &vis) ||
        int_of(c, c->in, "WaitTimeSeconds", 0, SPATE_SQS_WAIT_MAX, &wait))
        return;
    unsigned attrs = 0;
    const char *lists[] = {"AttributeNames", "MessageSystemAttributeNames"};
    for (size_t k = 0; k < 2; k++) {
        const cJSON *names = cJSON_GetObjectItemCaseSensitive(c->in, lists[k]), *n;
        if (names && !cJSON_IsArray(names))
            return sqs_fail(c, SQS_INVALID_PARAMETER, "%s must be a list", lists[k]);
        cJSON_ArrayForEach(n, names)
        {
            const char *v = cJSON_IsString(n) ? n->valuestring : "";
            if (strcmp(v, "All") == 0)
                attrs |= SQS_ATTR_RECEIVE_COUNT | SQS_ATTR_SENT_TIMESTAMP | SQS_ATTR_FIRST_RECEIVE |
                         SQS_ATTR_SENDER | SQS_ATTR_FIFO;
            else if (strcmp(v, "ApproximateReceiveCount") == 0)
                attrs |= SQS_ATTR_RECEIVE_COUNT;
            else if (strcmp(v, "SentTimestamp") == 0)
                attrs |= SQS_ATTR_SENT_TIMESTAMP;
            else if (strcmp(v, "ApproximateFirstReceiveTimestamp") == 0)
                attrs |= SQS_ATTR_FIRST_RECEIVE;
            else if (strcmp(v, "SenderId") == 0)
                attrs |= SQS_ATTR_SENDER;
            else if (strcmp(v, "MessageGroupId") == 0 || strcmp(v, "SequenceNumber") == 0)
                attrs |= SQS_ATTR_FIFO;
            /* Others SQS has are not kept here yet: left out, as SQS leaves out
             * those a message does not have. */
        }
    }
    sqs_receive(c, receiver(c), (uint32_t)max, (uint32_t)vis, (uint32_t)wait, attrs);
}

/* The ReceiptHandle of in: NULL after answering the refusal. */
static const char *handle_of(sqs_call *c, const cJSON *in)
{
    int bad = 0;
    const char *h = str_of(in, "ReceiptHandle", &bad);
    if (!h)
        sqs_fail(c, bad ? SQS_INVALID_PARAMETER : SQS_MISSING_PARAMETER,
                 "the request must contain the parameter ReceiptHandle");
    return h;
}

static const char *settle_why(int e)
{
    return e == SQS_BAD_HANDLE ? "the receipt handle is not valid for this queue"
           : e == SQS_HANDLE_ELSEWHERE
               ? "the receipt handle was made by another node of the cluster, which holds the "
                 "message: delete it or change its visibility through the node that received it "
                 "(nothing was deleted here)"
               : "the message referred to is not in flight";
}

static void delete_message(sqs_call *c)
{
    if (queue_of(c)) return;
    const char *h = handle_of(c, c->in);
    if (!h) return;
    int e = sqs_settle(c->a, c->queue, h, SQS_DELETE, 0);
    if (e) return sqs_fail(c, (enum sqs_err)e, "%s", settle_why(e));
    sqs_ok(c, NULL);
}

static void change_message_visibility(sqs_call *c)
{
    if (queue_of(c)) return;
    const char *h = handle_of(c, c->in);
    long vis = -1;
    if (!h || int_of(c, c->in, "VisibilityTimeout", 0, SPATE_SQS_VISIBILITY_MAX, &vis)) return;
    if (vis < 0)
        return sqs_fail(c, SQS_MISSING_PARAMETER,
                        "the request must contain the parameter VisibilityTimeout");
    int e = sqs_settle(c->a, c->queue, h, SQS_VISIBILITY, (uint32_t)vis);
    if (e) return sqs_fail(c, (enum sqs_err)e, "%s", settle_why(e));
    sqs_ok(c, NULL);
}

/* DeleteMessageBatch (op SQS_DELETE) and ChangeMessageVisibilityBatch
 * (SQS_VISIBILITY, each entry with its VisibilityTimeout): each entry
 * settled alone, answered in Successful or Failed. */
static void settle_batch(sqs_call *c, enum sqs_settle op)
{
    if (queue_of(c)) return;
    const cJSON *entries[SPATE_SQS_BATCH_MAX];
    size_t n;
    if (batch_entries(c, entries, &n)) return;
    cJSON *out = cJSON_CreateObject();
    cJSON *ok = cJSON_AddArrayToObject(out, "Successful");
    cJSON *failed = cJSON_AddArrayToObject(out, "Failed");
    for (size_t i = 0; i < n; i++) {
        const char *id = cJSON_GetObjectItemCaseSensitive(entries[i], "Id")->valuestring;
        int bad = 0;
        const char *h = str_of(entries[i], "ReceiptHandle", &bad);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(entries[i], "VisibilityTimeout");
        int e;
        if (!h)
            e = SQS_MISSING_PARAMETER;
        else if (op == SQS_VISIBILITY &&
                 (!cJSON_IsNumber(v) ||
                  !(v->valuedouble >= 0 && v->valuedouble <= SPATE_SQS_VISIBILITY_MAX) ||
                  v->valuedouble != (double)(long)v->valuedouble))
            e = SQS_INVALID_PARAMETER;
        else
            e = sqs_settle(c->a, c->queue, h, op,
                           op == SQS_VISIBILITY ? (uint32_t)v->valuedouble : 0);
        if (e) {
            cJSON_AddItemToArray(
                failed, failed_entry(id, (enum sqs_err)e,
                                     e == SQS_MISSING_PARAMETER   ? "the entry has no ReceiptHandle"
                                     : e == SQS_INVALID_PARAMETER ? "VisibilityTimeout must be "
                                                                    "from 0 to 43200"
                                                                  : settle_why(e)));
            continue;
        }
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "Id", id);
        cJSON_AddItemToArray(ok, s);
    }
    sqs_ok(c, out);
}

static void delete_message_batch(sqs_call *c)
{
    settle_batch(c, SQS_DELETE);
}

static void set_queue_attributes(sqs_call *c)
{
    if (queue_of(c)) return;
    queue_settings st;
    settings_of(queue_sub_get_config(receiver(c)), &st);
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(c->in, "Attributes");
    if (!attrs)
        return sqs_fail(c, SQS_MISSING_PARAMETER,
                        "the request must contain the parameter Attributes");
    if (read_settings(c, attrs, &st)) return;
    st.modified_s = (long long)(clock_now_ms() / 1000);
    if (!st.created_s) st.created_s = st.modified_s; /* made before it was kept: from now */
    queue_sub_config cfg;
    config_of(&st, &cfg);
    int rc = store_receiver(c, &cfg, on_settings_done);
    if (rc) sqs_fail(c, SQS_UNAVAILABLE, "cannot change the queue: %s", err_str(rc));
}

static void on_purged(void *data, int status, uint64_t count)
{
    (void)count;
    sqs_call *c = data;
    if (status && status != ERR_NOTFOUND)
        return sqs_fail(c, SQS_UNAVAILABLE, "cannot purge the queue: %s", err_str(status));
    sqs_ok(c, NULL);
}

/* SQS deletes what is in flight too: the held messages are deleted first
 * (the topic's purge spares leased ones), the receives' and the triggers'
 * (a function purging its own queue mid-batch had its batch back). */
static void purge_queue(sqs_call *c)
{
    if (queue_of(c)) return;
    sqs_delete_held(c->a, c->queue);
    if (c->a->tr) triggers_receiver_purge(c->a->tr, c->queue);
    int rc = queue_topic_purge(c->a->q, c->queue, on_purged, c);
    if (rc) on_purged(c, rc, 0);
}

typedef struct sources_ctx {
    sqs_call *c;
    cJSON *urls;
} sources_ctx;

static void source_one(queue_sub *sub, void *data)
{
    sources_ctx *s = data;
    if (triggers_is_receiver(sub) && strcmp(queue_sub_get_config(sub)->dlq, s->c->queue) == 0 &&
        queue_sub_get_config(sub)->max_attempts)
        cJSON_AddItemToArray(s->urls, queue_url(s->c, queue_sub_topic(sub)));
}

static void list_dead_letter_source_queues(sqs_call *c)
{
    if (queue_of(c)) return;
    sources_ctx s = {c, cJSON_CreateArray()};
    queue_each_sub(c->a->q, source_one, &s);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "queueUrls", s.urls);
    sqs_ok(c, out);
}

static void change_message_visibility_batch(sqs_call *c)
{
    settle_batch(c, SQS_VISIBILITY);
}

/* --- Dispatch ---------------------------------------------------------------------------- */

typedef struct action {
    const char *name;
    void (*run)(sqs_call *c);
    unsigned scope; /* what a token needs for it */
} action;

static const action actions[] = {
    {"CreateQueue", create_queue, SCOPE_ADMIN},
    {"DeleteQueue", delete_queue, SCOPE_ADMIN},
    {"GetQueueUrl", get_queue_url, SCOPE_ANY},
    {"ListQueues", list_queues, SCOPE_ANY},
    {"GetQueueAttributes", get_queue_attributes, SCOPE_ANY},
    {"SetQueueAttributes", set_queue_attributes, SCOPE_ADMIN},
    {"PurgeQueue", purge_queue, SCOPE_ADMIN},
    {"ListDeadLetterSourceQueues", list_dead_letter_source_queues, SCOPE_ANY},
    {"SendMessage", send_message, SCOPE_PUBLISH},
    {"SendMessageBatch", send_message_batch, SCOPE_PUBLISH},
    /* Receiving reads payloads and settles messages: a consumer's, admin. */
    {"ReceiveMessage", receive_message, SCOPE_ADMIN},
    {"DeleteMessage", delete_message, SCOPE_ADMIN},
    {"DeleteMessageBatch", delete_message_batch, SCOPE_ADMIN},
    {"ChangeMessageVisibility", change_message_visibility, SCOPE_ADMIN},
    {"ChangeMessageVisibilityBatch", change_message_visibility_batch, SCOPE_ADMIN},
};

static const action *action_named(const char *name)
{
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (strcmp(name, actions[i].name) == 0) return &actions[i];
    return NULL;
}

/* The JSON protocol's action, from its target header. */
static const action *action_of(const http_request *req)
{
    const char *target = http_header(req, "x-amz-target");
    if (!target || strncmp(target, TARGET_PREFIX, sizeof TARGET_PREFIX - 1) != 0) return NULL;
    return action_named(target + sizeof TARGET_PREFIX - 1);
}

/* SQS's requests: POST to / or to a queue URL, in either protocol (GET of
 * the query protocol is not served). Nothing else of spated is there. */
int api_sqs_match(const http_request *req)
{
    return api_route_match(req->path).route == R_SQS && (req->method == HTTP_POST || is_json(req));
}

/* Before the body a query request's action is unknown: any scope passes
 * admission, and the signature's check with the body asks the action's. */
unsigned api_sqs_scope(const http_request *req)
{
    const action *act;
    if (is_json(req)) {
        act = action_of(req);
    } else {
        char name[40];
        sqs_query_action(req->body.data, req->body.len, name);
        act = action_named(name);
    }
    return act ? act->scope : SCOPE_ANY; /* an unknown action is refused as such */
}

/* The region of the signature's credential scope (ARNs name it). */
static void region_of(const http_request *req, char *out, size_t cap)
{
    snprintf(out, cap, "us-east-1");
    const char *authz = http_header(req, "authorization");
    const char *cred = authz ? strstr(authz, "Credential=") : NULL;
    if (!cred) return;
    /* Credential=KEY/DATE/REGION/sqs/aws4_request */
    const char *p = cred;
    for (int i = 0; i < 2 && p; i++) p = strchr(p + 1, '/');
    if (!p) return;
    size_t n = strcspn(p + 1, "/,");
    /* A region's characters only: it goes into ARNs and the RedrivePolicy
     * JSON unescaped (and without a token file, any signature passes). */
    if (n > 0 && n < cap && strspn(p + 1, "abcdefghijklmnopqrstuvwxyz0123456789-") == n)
        snprintf(out, cap, "%.*s", (int)n, p + 1);
}

static void start(sqs_call *c, api *a, http_request *req, cJSON *in, const action *act)
{
    c->a = a;
    c->req = req;
    c->in = in;
    snprintf(c->action, sizeof c->action, "%s", act->name);
    region_of(req, c->region, sizeof c->region);
    const char *host = http_header(req, "host");
    snprintf(c->host, sizeof c->host, "%s", host && *host ? host : "localhost");
    /* The query protocol may name the queue by the path it posts to. */
    if (c->query && strncmp(req->path, "/" SQS_ACCOUNT "/", sizeof SQS_ACCOUNT + 1) == 0 &&
        !cJSON_GetObjectItemCaseSensitive(in, "QueueUrl"))
        cJSON_AddStringToObject(in, "QueueUrl", req->path);
    act->run(c);
}

/* A request of the query protocol: its form read into the JSON protocol's
 * input object, its answer written in XML. */
static void query_request(api *a, http_request *req)
{
    cJSON *in = NULL;
    char name[40], why[200];
    int e = sqs_query_read(req->body.data, req->body.len, &in, name, sizeof name, why, sizeof why);
    if (e >= 0) return query_error(req, errors[e].status, errors[e].code, why);
    const action *act = action_named(name);
    if (!act) {
        cJSON_Delete(in);
        return query_error(req, 400, "InvalidAction",
                           name[0] ? "the action is not valid for this endpoint"
                                   : "the request must contain the parameter Action");
    }
    sqs_call *c = calloc(1, sizeof *c);
    if (!c) {
        cJSON_Delete(in);
        return query_error(req, 500, "InternalError", "out of memory");
    }
    c->query = 1;
    start(c, a, req, in, act);
}

void api_sqs(api *a, http_request *req)
{
    if (req->method != HTTP_POST) return api_method_not_allowed(req, "POST");
    if (!is_json(req)) return query_request(a, req);
    const action *act = action_of(req);
    if (!act)
        return json_error(req, 400, "InvalidAction", "InvalidAction",
                          "the action is not valid for this endpoint");
    if (api_json_has_nul(req->body.data, req->body.len))
        return json_error(req, 400, "InvalidMessageContents", "InvalidMessageContents",
                          "the request holds a NUL character, which SQS does not accept");
    cJSON *in = cJSON_ParseWithLength(req->body.data ? req->body.data : "", req->body.len);
    if (!in || !cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return json_error(req, 400, "SerializationException", "MalformedQueryString",
                          "the request body is not a JSON object");
    }
    sqs_call *c = calloc(1, sizeof *c);
    if (!c) {
        cJSON_Delete(in);
        return json_error(req, 500, "InternalError", "InternalError", "out of memory");
    }
    start(c, a, req, in, act);
}
