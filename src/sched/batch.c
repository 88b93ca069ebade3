/*
 * batch.c - a batch's event (SQS or raw) and the function's answer naming
 * the messages that failed (batch.h). The event is written straight into a
 * buffer rather than through a JSON tree: a batch of 10,000 messages would
 * otherwise copy every payload twice more.
 */
#include "sched/batch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/fmt.h"
#include "common/hash.h"
#include "common/lambda.h"
#include "common/limits.h"
#include "common/utf8.h"

/* Bytes s takes as a JSON string's content (quotes not counted), as
 * fmt_json_str writes it. */
static size_t escaped_len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        n += c == '"' || c == '\\' ? 2 : c < 0x20 ? 6 : 1;
    }
    return n;
}

/* The bytes of a record beside its body, key, attributes and topic: the
 * names, the fixed strings, numbers at their longest (20 digits, a sign),
 * a queue's MessageId (36) and a FIFO queue's SequenceNumber, the md5 and
 * a comma, with a few to spare; and the messageAttributes an SQS record not
 * UTF-8 gains. Counted with the longest value of each (the unit test
 * checks that an event never passes the sum). */
#define SQS_FIXED 560
#define RAW_FIXED 320
#define BASE64_MARK 128
/* An SQS attribute's record beside its name, type and value: the names
 * and empty lists of Lambda's shape. */
#define SQS_ATTR_FIXED 96

/* Whether m was sent through the SQS API with message attributes. */
static int sqs_sent(const queue_msg *m)
{
    return m->attrs && m->attrs->source && strcmp(m->attrs->source, BATCH_SQS_SOURCE) == 0 &&
           m->attrs->headers && m->attrs->headers_len;
}

size_t batch_record_max(const queue_msg *m, int format, size_t topic_len, int on_queue)
{
    int sqs = format == QUEUE_EVENT_SQS;
    size_t n = sqs ? SQS_FIXED + 2 * topic_len + (on_queue ? BATCH_HANDLE_MAX : 0) : RAW_FIXED;
    if (utf8_valid(m->data, m->len))
        n += escaped_len(m->data, m->len);
    else
        n += HASH_BASE64_LEN(m->len) + (sqs ? BASE64_MARK : 0);
    if (m->key) n += escaped_len(m->key, m->key_len);
    const queue_attrs *a = m->attrs;
    if (a) {
        /* The sender's name in SQS records; every attribute in raw ones. */
        if (a->source) n += escaped_len(a->source, strlen(a->source));
        if (!sqs && a->upstream_id) n += escaped_len(a->upstream_id, strlen(a->upstream_id));
        if (!sqs) n += a->headers_len;
        /* An SQS sender's attributes: each string escaped again (a stored
         * "\n" is written "\u000a": 3 times at most), in Lambda's shape. */
        if (sqs && sqs_sent(m))
            n += 3 * (size_t)a->headers_len + SQS_ATTR_FIXED * SPATE_SQS_ATTRS_MAX;
    } else if (sqs) {
        n += 5; /* "spate" */
    }
    return n;
}

/* Appends s as a JSON string; s must be UTF-8 without NUL (or made so). */
static int put_str(buf *b, const char *s, size_t len)
{
    size_t n = escaped_len(s, len);
    /* fmt_json_str stops 6 bytes short of its end: room for that too. */
    int rc = buf_reserve(b, n + 8);
    if (rc) return rc;
    char *o = b->data + b->len;
    *o++ = '"';
    o = fmt_json_str(o, o + n + 7, s, len);
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

static int put_cstr(buf *b, const char *s)
{
    return put_str(b, s, strlen(s));
}

/* The payload as text when it is, else its base64 (*b64: caller frees).
 * ERR_NOMEM. */
static int body_text(const queue_msg *m, const char **text, size_t *len, char **b64)
{
    *b64 = NULL;
    if (utf8_valid(m->data, m->len)) {
        *text = m->data;
        *len = m->len;
        return 0;
    }
    *b64 = malloc(HASH_BASE64_LEN(m->len) + 1);
    if (!*b64) return ERR_NOMEM;
    *len = hash_base64(m->data, m->len, *b64);
    *text = *b64;
    return 0;
}

/* One message attribute as ,"NAME":{...} in Lambda's shape. */
static int put_sqs_attr(const char *name, const char *type, const char *value, int binary,
                        void *data)
{
    buf *b = data;
    int rc = buf_append_str(b, ",");
    if (!rc) rc = put_cstr(b, name);
    if (!rc) rc = buf_append_str(b, binary ? ":{\"binaryValue\":" : ":{\"stringValue\":");
    if (!rc) rc = put_cstr(b, value);
    if (!rc)
        rc = buf_append_str(b, ",\"stringListValues\":[],\"binaryListValues\":[],"
                               "\"dataType\":");
    if (!rc) rc = put_cstr(b, type);
    if (!rc) rc = buf_append_str(b, "}");
    return rc;
}

/* The message attributes of an SQS sender's message (sqs_sent), each as
 * ,"NAME":{...} in Lambda's shape; the first SPATE_SQS_ATTRS_MAX (all an SQS
 * sender may give). A map that does not read as one is left out. */
static int sqs_attrs(buf *b, const queue_attrs *a)
{
    return lambda_sqs_attrs_each(a->headers, a->headers_len, SPATE_SQS_ATTRS_MAX, put_sqs_attr, b);
}

/* A record's messageId: on a queue the MessageId SendMessage answered and
 * ReceiveMessage shows (common/lambda.h), elsewhere the seq in decimal. */
static void message_id(char out[LAMBDA_SQS_MESSAGE_ID_LEN + 1], const queue_msg *m,
                       const char *topic, int on_queue, int64_t created)
{
    if (on_queue)
        lambda_sqs_message_id(topic, created, m->seq, out);
    else
        snprintf(out, LAMBDA_SQS_MESSAGE_ID_LEN + 1, "%" PRIu64, m->seq);
}

typedef struct handles {
    batch_handle_fn fn;
    void *data;
} handles;

static int sqs_record(buf *b, const queue_lease *l, const char *topic, int on_queue,
                      int64_t created, const handles *hs)
{
    const queue_msg *m = l->msg;
    const char *body;
    size_t body_len;
    char *b64;
    int rc = body_text(m, &body, &body_len, &b64);
    if (rc) return rc;
    char md5[HASH_MD5_HEX_LEN + 1] = "";
    if (hash_md5_hex(body, body_len, md5)) md5[0] = '\0';
    char id[LAMBDA_SQS_MESSAGE_ID_LEN + 1];
    message_id(id, m, topic, on_queue, created);
    /* On a queue, SenderId as ReceiveMessage shows it (one account, no IAM
     * principals); elsewhere who published it. */
    const char *sender = on_queue                       ? BATCH_AWS_ACCOUNT
                         : m->attrs && m->attrs->source ? m->attrs->source
                                                        : "spate";
    /* spate keeps no first delivery time. On a queue, as ReceiveMessage: now
     * for a first receive, else the send's time, the earliest it can have
     * been; elsewhere always the publish time. */
    int64_t first = on_queue && l->attempt <= 1 ? clock_now_ms() : m->published_ms;
    /* A queue's handle is its SQS face's (letters, digits, '-' and '.'):
     * no escaping. */
    char handle[BATCH_HANDLE_MAX + 1] = "";
    if (on_queue && hs->fn) hs->fn(topic, m->seq, l->attempt, handle, sizeof handle, hs->data);
    if (handle[0])
        rc = buf_printf(b, "{\"messageId\":\"%s\",\"receiptHandle\":\"%s\",\"body\":", id, handle);
    else
        rc = buf_printf(
            b,
            "{\"messageId\":\"%s\",\"receiptHandle\":\"%s:%" PRIu64 ":%" PRIu32 "\",\"body\":", id,
            topic, m->seq, l->attempt);
    if (!rc) rc = put_str(b, body, body_len);
    if (!rc)
        rc = buf_printf(b,
                        ",\"attributes\":{\"ApproximateReceiveCount\":\"%" PRIu32
                        "\",\"SentTimestamp\":\"%" PRId64 "\",\"SenderId\":",
                        l->attempt, m->published_ms);
    if (!rc) rc = put_cstr(b, sender);
    if (!rc) rc = buf_printf(b, ",\"ApproximateFirstReceiveTimestamp\":\"%" PRId64 "\"", first);
    if (!rc && m->key) {
        rc = buf_append_str(b, ",\"MessageGroupId\":");
        if (!rc) rc = put_str(b, m->key, m->key_len);
        /* A FIFO queue's (its messages have keys): as SendMessage answered. */
        if (!rc && on_queue) rc = buf_printf(b, ",\"SequenceNumber\":\"%020" PRIu64 "\"", m->seq);
    }
    /* The attributes: "{" then each with a leading comma, the first one's
     * dropped (an SQS sender's, and the body's encoding when base64). */
    size_t open = 0;
    if (!rc) rc = buf_append_str(b, "},\"messageAttributes\":{");
    if (!rc) open = b->len;
    if (!rc && b64)
        rc = buf_append_str(b, ",\"spate.body_encoding\":{\"stringValue\":\"base64\","
                               "\"stringListValues\":[],\"binaryListValues\":[],"
                               "\"dataType\":\"String\"}");
    if (!rc && sqs_sent(m)) rc = sqs_attrs(b, m->attrs);
    if (!rc && b->len > open) {
        memmove(b->data + open, b->data + open + 1, b->len - open - 1);
        b->len--;
    }
    if (!rc) rc = buf_append_str(b, "}");
    if (!rc)
        rc = buf_printf(b,
                        ",\"md5OfBody\":\"%s\",\"eventSource\":\"aws:sqs\",\"eventSourceARN\":"
                        "\"arn:aws:sqs:" BATCH_AWS_REGION ":" BATCH_AWS_ACCOUNT
                        ":%s\",\"awsRegion\":\"" BATCH_AWS_REGION "\"}",
                        md5, topic);
    free(b64);
    return rc;
}

static int raw_attrs(buf *b, const queue_attrs *a)
{
    int rc = buf_append_str(b, ",\"attributes\":{\"redelivered\":");
    if (!rc) rc = buf_append_str(b, a->redelivered ? "true" : "false");
    if (!rc && a->source) {
        rc = buf_append_str(b, ",\"source\":");
        if (!rc) rc = put_cstr(b, a->source);
    }
    if (!rc && a->upstream_id) {
        rc = buf_append_str(b, ",\"upstream_id\":");
        if (!rc) rc = put_cstr(b, a->upstream_id);
    }
    if (!rc && a->upstream_ts_ms)
        rc = buf_printf(b, ",\"upstream_ts\":%" PRId64, a->upstream_ts_ms);
    if (!rc && a->headers && a->headers_len) {
        /* Kept as the JSON object it was built as (sources/batch.c); checked,
         * as GET .../messages does, so that the event stays JSON. */
        if (lambda_json_is_object(a->headers, a->headers_len)) {
            rc = buf_append_str(b, ",\"headers\":");
            if (!rc) rc = buf_append(b, a->headers, a->headers_len);
        }
    }
    if (!rc) rc = buf_append_str(b, "}");
    return rc;
}

static int raw_record(buf *b, const queue_lease *l, const char *topic, int on_queue,
                      int64_t created)
{
    const queue_msg *m = l->msg;
    const char *body;
    size_t body_len;
    char *b64;
    int rc = body_text(m, &body, &body_len, &b64);
    if (rc) return rc;
    char id[LAMBDA_SQS_MESSAGE_ID_LEN + 1];
    message_id(id, m, topic, on_queue, created);
    rc = buf_printf(b, "{\"messageId\":\"%s\",\"seq\":%" PRIu64, id, m->seq);
    if (!rc && m->key) {
        rc = buf_append_str(b, ",\"key\":");
        if (!rc) rc = put_str(b, m->key, m->key_len);
    }
    if (!rc) rc = buf_append_str(b, b64 ? ",\"payload_base64\":" : ",\"payload\":");
    if (!rc) rc = put_str(b, body, body_len);
    if (!rc)
        rc = buf_printf(b, ",\"published_ms\":%" PRId64 ",\"attempt\":%" PRIu32, m->published_ms,
                        l->attempt);
    if (!rc && m->attrs) rc = raw_attrs(b, m->attrs);
    if (!rc) rc = buf_append_str(b, "}");
    free(b64);
    return rc;
}

int batch_event(buf *out, queue_lease *const *l, size_t n, int format, const char *topic,
                int on_queue, int64_t created, batch_handle_fn handle, void *handle_data)
{
    handles hs = {handle, handle_data};
    int sqs = format == QUEUE_EVENT_SQS;
    int rc = buf_append_str(out, sqs ? "{\"Records\":[" : "[");
    for (size_t i = 0; i < n && !rc; i++) {
        if (i) rc = buf_append_str(out, ",");
        if (!rc)
            rc = sqs ? sqs_record(out, l[i], topic, on_queue, created, &hs)
                     : raw_record(out, l[i], topic, on_queue, created);
    }
    if (!rc) rc = buf_append_str(out, sqs ? "]}" : "]");
    return rc;
}

/* --- The answer --------------------------------------------------------------------- */

typedef struct by_seq {
    uint64_t seq;
    size_t i;
} by_seq;

static int cmp_seq(const void *a, const void *b)
{
    uint64_t x = ((const by_seq *)a)->seq, y = ((const by_seq *)b)->seq;
    return x < y ? -1 : x > y;
}

/* The seq a messageId names: the decimal a seq is written as (no sign,
 * space or leading zero, so that one message has one id), or on a queue
 * its MessageId. 0, or -1: no message's id. */
static int id_seq(const char *id, const char *qname, int64_t created, uint64_t *out)
{
    if (qname) return lambda_sqs_message_seq(qname, created, id, out);
    size_t len = strlen(id);
    if (!len || len > 20 || (id[0] == '0' && len > 1)) return -1;
    uint64_t seq = 0;
    for (size_t i = 0; i < len; i++) {
        if (id[i] < '0' || id[i] > '9') return -1;
        unsigned d = (unsigned)(id[i] - '0');
        if (seq > (UINT64_MAX - d) / 10) return -1;
        seq = seq * 10 + d;
    }
    *out = seq;
    return 0;
}

typedef struct marking {
    const by_seq *idx;
    size_t n;
    uint8_t *failed;
    const char *qname;
    int64_t created;
} marking;

static int mark(const char *id, void *data)
{
    marking *m = data;
    by_seq key = {0, 0};
    if (id_seq(id, m->qname, m->created, &key.seq)) return -1;
    const by_seq *hit = bsearch(&key, m->idx, m->n, sizeof *m->idx, cmp_seq);
    if (!hit) return -1;
    m->failed[hit->i] = 1;
    return 0;
}

int batch_failures(const char *body, size_t len, queue_lease *const *l, size_t n, uint8_t *failed,
                   const char *qname, int64_t created, char *why, size_t why_cap)
{
    by_seq *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) {
        snprintf(why, why_cap, "out of memory");
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) idx[i] = (by_seq){l[i]->msg->seq, i};
    qsort(idx, n, sizeof *idx, cmp_seq);
    marking m = {idx, n, failed, qname, created};
    int rc = lambda_batch_failures(body, len, mark, &m, why, why_cap);
    free(idx);
    return rc;
}
