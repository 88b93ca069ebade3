/*
 * batch.c - a batch's event (SQS or raw) and the function's answer naming
 * the messages that failed (batch.h). The event is written straight into a
 * buffer rather than through cJSON: a batch of 10,000 messages would
 * otherwise copy every payload twice more.
 */
#include "sched/batch.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/utf8.h"

/* Bytes s takes as a JSON string's content (quotes not counted). */
static size_t escaped_len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f')
            n += 2;
        else if (c < 0x20)
            n += 6;
        else
            n++;
    }
    return n;
}

static size_t b64_len(size_t len)
{
    return 4 * ((len + 2) / 3);
}

/* The bytes of a record beside its body, key, attributes and topic: the
 * names, the fixed strings, numbers at their longest (20 digits, a sign),
 * the md5 and a comma, with a few to spare; and the messageAttributes an
 * SQS record not UTF-8 gains. Counted with the longest value of each (the
 * unit test checks that an event never passes the sum). */
#define SQS_FIXED 480
#define RAW_FIXED 288
#define BASE64_MARK 128

size_t batch_record_max(const queue_msg *m, int format, size_t topic_len)
{
    int sqs = format == QUEUE_EVENT_SQS;
    size_t n = sqs ? SQS_FIXED + 2 * topic_len : RAW_FIXED;
    if (utf8_valid(m->data, m->len))
        n += escaped_len(m->data, m->len);
    else
        n += b64_len(m->len) + (sqs ? BASE64_MARK : 0);
    if (m->key) n += escaped_len(m->key, m->key_len);
    const queue_attrs *a = m->attrs;
    if (a) {
        /* The sender's name in SQS records; every attribute in raw ones. */
        if (a->source) n += escaped_len(a->source, strlen(a->source));
        if (!sqs && a->upstream_id) n += escaped_len(a->upstream_id, strlen(a->upstream_id));
        if (!sqs) n += a->headers_len;
    } else if (sqs) {
        n += 5; /* "spate" */
    }
    return n;
}

/* Appends s as a JSON string; s must be UTF-8 without NUL (or made so). */
static int put_str(buf *b, const char *s, size_t len)
{
    int rc = buf_reserve(b, escaped_len(s, len) + 2);
    if (rc) return rc;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            *o++ = '\\', *o++ = '"';
            break;
        case '\\':
            *o++ = '\\', *o++ = '\\';
            break;
        case '\n':
            *o++ = '\\', *o++ = 'n';
            break;
        case '\r':
            *o++ = '\\', *o++ = 'r';
            break;
        case '\t':
            *o++ = '\\', *o++ = 't';
            break;
        case '\b':
            *o++ = '\\', *o++ = 'b';
            break;
        case '\f':
            *o++ = '\\', *o++ = 'f';
            break;
        default:
            if (c < 0x20) {
                snprintf(o, 7, "\\u%04x", c);
                o += 6;
            } else {
                *o++ = (char)c;
            }
        }
    }
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
    *b64 = malloc(b64_len(m->len) + 1);
    if (!*b64) return ERR_NOMEM;
    *len =
        (size_t)EVP_EncodeBlock((unsigned char *)*b64, (const unsigned char *)m->data, (int)m->len);
    *text = *b64;
    return 0;
}

static int sqs_record(buf *b, const queue_lease *l, const char *topic)
{
    const queue_msg *m = l->msg;
    const char *body;
    size_t body_len;
    char *b64;
    int rc = body_text(m, &body, &body_len, &b64);
    if (rc) return rc;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char md5[33] = "";
    if (EVP_Digest(body, body_len, md, &mdlen, EVP_md5(), NULL) && mdlen == 16)
        for (unsigned i = 0; i < 16; i++) snprintf(md5 + 2 * i, 3, "%02x", md[i]);
    const char *sender = m->attrs && m->attrs->source ? m->attrs->source : "spate";
    rc = buf_printf(b,
                    "{\"messageId\":\"%" PRIu64 "\",\"receiptHandle\":\"%s:%" PRIu64 ":%" PRIu32
                    "\",\"body\":",
                    m->seq, topic, m->seq, l->attempt);
    if (!rc) rc = put_str(b, body, body_len);
    /* spate keeps no first delivery time: the publish time stands for it, the
     * earliest it can have been. */
    if (!rc)
        rc = buf_printf(b,
                        ",\"attributes\":{\"ApproximateReceiveCount\":\"%" PRIu32
                        "\",\"SentTimestamp\":\"%" PRId64 "\",\"SenderId\":",
                        l->attempt, m->published_ms);
    if (!rc) rc = put_cstr(b, sender);
    if (!rc)
        rc =
            buf_printf(b, ",\"ApproximateFirstReceiveTimestamp\":\"%" PRId64 "\"", m->published_ms);
    if (!rc && m->key) {
        rc = buf_append_str(b, ",\"MessageGroupId\":");
        if (!rc) rc = put_str(b, m->key, m->key_len);
    }
    if (!rc)
        rc = buf_append_str(b, b64 ? "},\"messageAttributes\":{\"spate.body_encoding\":{"
                                     "\"stringValue\":\"base64\",\"stringListValues\":[],"
                                     "\"binaryListValues\":[],\"dataType\":\"String\"}}"
                                   : "},\"messageAttributes\":{}");
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
        cJSON *h = cJSON_ParseWithLength(a->headers, a->headers_len);
        if (cJSON_IsObject(h)) {
            rc = buf_append_str(b, ",\"headers\":");
            if (!rc) rc = buf_append(b, a->headers, a->headers_len);
        }
        cJSON_Delete(h);
    }
    if (!rc) rc = buf_append_str(b, "}");
    return rc;
}

static int raw_record(buf *b, const queue_lease *l)
{
    const queue_msg *m = l->msg;
    const char *body;
    size_t body_len;
    char *b64;
    int rc = body_text(m, &body, &body_len, &b64);
    if (rc) return rc;
    rc = buf_printf(b, "{\"messageId\":\"%" PRIu64 "\",\"seq\":%" PRIu64, m->seq, m->seq);
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

int batch_event(buf *out, queue_lease *const *l, size_t n, int format, const char *topic)
{
    int sqs = format == QUEUE_EVENT_SQS;
    int rc = buf_append_str(out, sqs ? "{\"Records\":[" : "[");
    for (size_t i = 0; i < n && !rc; i++) {
        if (i) rc = buf_append_str(out, ",");
        if (!rc) rc = sqs ? sqs_record(out, l[i], topic) : raw_record(out, l[i]);
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

/* The index in the batch of the message whose messageId is id, or -1. */
static long find_id(const by_seq *idx, size_t n, const char *id)
{
    /* Exactly the decimal a messageId is written as: no sign, space or
     * leading zero, so that one message has one id. */
    size_t len = strlen(id);
    if (!len || len > 20 || (id[0] == '0' && len > 1)) return -1;
    uint64_t seq = 0;
    for (size_t i = 0; i < len; i++) {
        if (id[i] < '0' || id[i] > '9') return -1;
        unsigned d = (unsigned)(id[i] - '0');
        if (seq > (UINT64_MAX - d) / 10) return -1;
        seq = seq * 10 + d;
    }
    by_seq key = {seq, 0};
    const by_seq *hit = bsearch(&key, idx, n, sizeof *idx, cmp_seq);
    return hit ? (long)hit->i : -1;
}

static int only_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return 0;
    return 1;
}

static int mark_failures(const cJSON *list, queue_lease *const *l, size_t n, uint8_t *failed,
                         char *why, size_t why_cap)
{
    by_seq *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) {
        snprintf(why, why_cap, "out of memory");
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) idx[i] = (by_seq){l[i]->msg->seq, i};
    qsort(idx, n, sizeof *idx, cmp_seq);
    int rc = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "itemIdentifier");
        if (!cJSON_IsObject(item) || !cJSON_IsString(id) || !id->valuestring[0]) {
            snprintf(why, why_cap,
                     "each batchItemFailures entry must be {\"itemIdentifier\": \"<messageId>\"}");
            rc = ERR_INVAL;
            break;
        }
        long i = find_id(idx, n, id->valuestring);
        if (i < 0) {
            snprintf(why, why_cap, "itemIdentifier '%.64s' is no message of the batch",
                     id->valuestring);
            rc = ERR_INVAL;
            break;
        }
        failed[i] = 1;
    }
    free(idx);
    return rc;
}

int batch_failures(const char *body, size_t len, queue_lease *const *l, size_t n, uint8_t *failed,
                   char *why, size_t why_cap)
{
    if (!body || only_space(body, len)) return 0;
    cJSON *doc = cJSON_ParseWithLength(body, len);
    if (!doc) {
        snprintf(why, why_cap, "the answer is not JSON");
        return ERR_INVAL;
    }
    int rc = 0;
    if (cJSON_IsNull(doc)) {
        rc = 0;
    } else if (!cJSON_IsObject(doc)) {
        snprintf(why, why_cap, "the answer is not a JSON object with batchItemFailures");
        rc = ERR_INVAL;
    } else {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "batchItemFailures");
        if (list && !cJSON_IsNull(list) && !cJSON_IsArray(list)) {
            snprintf(why, why_cap, "batchItemFailures is not a list");
            rc = ERR_INVAL;
        } else if (cJSON_IsArray(list)) {
            rc = mark_failures(list, l, n, failed, why, why_cap);
        }
    }
    cJSON_Delete(doc);
    return rc;
}
