/* test_batch.c - a batch's events (SQS, raw) and the reading of a
 * function's batchItemFailures answer (sched/batch.c). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/lambda.h"
#include "sched/batch.h"
#include "test.h"

static queue_msg msgs[3] = {
    {.seq = 7,
     .published_ms = 1700000000123,
     .key = "k\"1",
     .key_len = 3,
     .data = "hi\n",
     .len = 3},
    {.seq = 12, .published_ms = 1700000000456, .data = "\xff\x01", .len = 2},
    {.seq = 100, .published_ms = 1700000000789, .data = "{}", .len = 2},
};
static queue_lease leases[3] = {{.msg = &msgs[0], .attempt = 1},
                                {.msg = &msgs[1], .attempt = 3},
                                {.msg = &msgs[2], .attempt = 2}};
static queue_lease *const batch[3] = {&leases[0], &leases[1], &leases[2]};

/* A receipt handle of the most bytes batch_event may be given. */
static void longest_handle(const char *topic, uint64_t seq, uint32_t attempt, char *out, size_t cap,
                           void *data)
{
    (void)topic, (void)seq, (void)attempt, (void)data;
    size_t n = cap - 1 < BATCH_HANDLE_MAX ? cap - 1 : BATCH_HANDLE_MAX;
    memset(out, 'h', n);
    out[n] = '\0';
}

static cJSON *event(int format)
{
    buf b;
    buf_init(&b, 1 << 20);
    CHECK_INT(batch_event(&b, batch, 3, format, "t.x", 0, 0, NULL, NULL), 0);
    cJSON *doc = cJSON_ParseWithLength(b.data, b.len);
    CHECK(doc != NULL);
    /* The estimate the cap counts bounds what each record takes. */
    size_t max = 0;
    for (int i = 0; i < 3; i++) max += batch_record_max(&msgs[i], format, 3, 0);
    CHECK(b.len <= max);
    buf_free(&b);
    return doc;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void sqs_event(void)
{
    cJSON *doc = event(QUEUE_EVENT_SQS);
    const cJSON *recs = cJSON_GetObjectItemCaseSensitive(doc, "Records");
    CHECK_INT(cJSON_GetArraySize(recs), 3);
    const cJSON *r0 = cJSON_GetArrayItem(recs, 0), *r1 = cJSON_GetArrayItem(recs, 1);
    CHECK_STR(str(r0, "messageId"), "7");
    CHECK_STR(str(r0, "body"), "hi\n");
    /* md5 of "hi\n" */
    CHECK_STR(str(r0, "md5OfBody"), "764efa883dda1e11db47671c4a3bbd9e");
    CHECK_STR(str(r0, "eventSourceARN"), "arn:aws:sqs:us-east-1:000000000000:t.x");
    const cJSON *a0 = cJSON_GetObjectItemCaseSensitive(r0, "attributes");
    CHECK_STR(str(a0, "MessageGroupId"), "k\"1");
    CHECK_STR(str(a0, "ApproximateReceiveCount"), "1");
    CHECK_STR(str(a0, "SentTimestamp"), "1700000000123");
    CHECK_STR(str(r1, "body"), "/wE=");
    const cJSON *a1 = cJSON_GetObjectItemCaseSensitive(r1, "attributes");
    CHECK(!cJSON_GetObjectItemCaseSensitive(a1, "MessageGroupId"));
    CHECK_STR(str(a1, "ApproximateReceiveCount"), "3");
    cJSON_Delete(doc);
}

static void raw_event(void)
{
    cJSON *doc = event(QUEUE_EVENT_RAW);
    CHECK(cJSON_IsArray(doc));
    CHECK_STR(str(cJSON_GetArrayItem(doc, 0), "payload"), "hi\n");
    CHECK_STR(str(cJSON_GetArrayItem(doc, 1), "payload_base64"), "/wE=");
    CHECK_STR(str(cJSON_GetArrayItem(doc, 2), "messageId"), "100");
    cJSON_Delete(doc);
}

static int answer(const char *body, uint8_t *failed)
{
    char why[160];
    memset(failed, 0, 3);
    return batch_failures(body, strlen(body), batch, 3, failed, NULL, 0, why, sizeof why);
}

static void answers(void)
{
    uint8_t f[3];
    const char *success[] = {"",
                             "  \n",
                             "null",
                             "{}",
                             "{\"batchItemFailures\":null}",
                             "{\"batchItemFailures\":[]}",
                             "{\"other\":1}"};
    for (size_t i = 0; i < sizeof success / sizeof success[0]; i++) {
        CHECK_INT(answer(success[i], f), 0);
        CHECK(!f[0] && !f[1] && !f[2]);
    }
    CHECK_INT(answer("{\"batchItemFailures\":[{\"itemIdentifier\":\"100\"},"
                     "{\"itemIdentifier\":\"7\"},{\"itemIdentifier\":\"7\"}]}",
                     f),
              0);
    CHECK(f[0] && !f[1] && f[2]);
    const char *bad[] = {
        "nope",
        "\"ok\"",
        "[]",
        "{\"batchItemFailures\":{}}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":\"8\"}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":\"07\"}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":\"\"}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":null}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":7}]}",
        "{\"batchItemFailures\":[{\"ItemIdentifier\":\"7\"}]}",
        "{\"batchItemFailures\":[\"7\"]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":\"99999999999999999999999\"}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (answer(bad[i], f) != ERR_INVAL) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            test_failures++;
        }
    }
}

/* One record at the longest of every number, attributes and all: the
 * estimate the 6 MiB cap counts is never short. */
static void estimate_bounds(void)
{
    queue_attrs at = {.source = "src\"x",
                      .upstream_id = "u\n1",
                      .headers = "{\"h\":\"v\"}",
                      .headers_len = 9,
                      .upstream_ts_ms = INT64_MIN,
                      .redelivered = 1};
    char topic[129];
    memset(topic, 't', 128);
    topic[128] = '\0';
    for (int bin = 0; bin < 2; bin++) {
        for (int withattrs = 0; withattrs < 2; withattrs++) {
            queue_msg m = {.seq = UINT64_MAX,
                           .published_ms = INT64_MIN,
                           .key = "\x01k",
                           .key_len = 2,
                           .data = bin ? "\xff\xfe\xfd\xfc" : "\x01\"\\",
                           .len = bin ? 4 : 3,
                           .attrs = withattrs ? &at : NULL};
            queue_lease l = {.msg = &m, .attempt = UINT32_MAX};
            queue_lease *const one[1] = {&l};
            for (int format = 0; format < 4; format++) {
                buf b;
                buf_init(&b, 1 << 20);
                /* 2 and 3: the same formats on a queue (its MessageIds). */
                /* On a queue with the longest receipt handle there is. */
                CHECK_INT(batch_event(&b, one, 1, format % 2, topic, format / 2, 0,
                                      format / 2 ? longest_handle : NULL, NULL),
                          0);
                /* The envelope, {"Records":[ ]}, is the trigger's margin. */
                CHECK(b.len - (format % 2 == QUEUE_EVENT_SQS ? 14 : 2) <=
                      batch_record_max(&m, format % 2, 128, format / 2));
                cJSON *doc = cJSON_ParseWithLength(b.data, b.len);
                CHECK(doc != NULL);
                cJSON_Delete(doc);
                buf_free(&b);
            }
        }
    }
}

/* A message sent through the SQS API with attributes: Lambda's shape in
 * messageAttributes, beside the body's encoding when that is base64; the
 * estimate holds with ten attributes whose values escape to the most. */
static void sqs_attributes(void)
{
    char headers[2048];
    int n = snprintf(headers, sizeof headers,
                     "{\"b\":{\"DataType\":\"Binary\",\"BinaryValue\":\"AAE=\"}");
    for (int i = 0; i < 9; i++)
        n += snprintf(headers + n, sizeof headers - (size_t)n,
                      ",\"s%d\":{\"DataType\":\"String.x\",\"StringValue\":\"\\n\\t\\\"\"}", i);
    n += snprintf(headers + n, sizeof headers - (size_t)n, "}");
    queue_attrs at = {.source = BATCH_SQS_SOURCE, .headers = headers, .headers_len = (uint32_t)n};
    for (int bin = 0; bin < 2; bin++) {
        queue_msg m = {
            .seq = 5, .published_ms = 1, .data = bin ? "\xff" : "x", .len = 1, .attrs = &at};
        queue_lease l = {.msg = &m, .attempt = 2};
        queue_lease *const one[1] = {&l};
        buf b;
        buf_init(&b, 1 << 20);
        CHECK_INT(batch_event(&b, one, 1, QUEUE_EVENT_SQS, "q", 0, 0, NULL, NULL), 0);
        CHECK(b.len - 14 <= batch_record_max(&m, QUEUE_EVENT_SQS, 1, 0));
        cJSON *doc = cJSON_ParseWithLength(b.data, b.len);
        CHECK(doc != NULL);
        const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "Records"), 0);
        const cJSON *ma = cJSON_GetObjectItemCaseSensitive(r, "messageAttributes");
        CHECK_INT(cJSON_GetArraySize(ma), bin ? 11 : 10);
        const cJSON *bv = cJSON_GetObjectItemCaseSensitive(ma, "b");
        CHECK_STR(str(bv, "binaryValue"), "AAE=");
        CHECK_STR(str(bv, "dataType"), "Binary");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(bv, "stringListValues")) == 0);
        const cJSON *sv = cJSON_GetObjectItemCaseSensitive(ma, "s8");
        CHECK_STR(str(sv, "stringValue"), "\n\t\"");
        CHECK_STR(str(sv, "dataType"), "String.x");
        CHECK(cJSON_GetObjectItemCaseSensitive(sv, "binaryValue") == NULL);
        CHECK(!bin || cJSON_GetObjectItemCaseSensitive(ma, "spate.body_encoding") != NULL);
        CHECK_STR(str(cJSON_GetObjectItemCaseSensitive(r, "attributes"), "ApproximateReceiveCount"),
                  "2");
        cJSON_Delete(doc);
        buf_free(&b);
    }
}

/* On an SQS queue: each messageId is the MessageId SendMessage answered,
 * the attributes as ReceiveMessage shows them, and batchItemFailures names
 * messages by those ids (not by the seq, nor another queue's ids). */
static void queue_ids(void)
{
    buf b;
    buf_init(&b, 1 << 20);
    CHECK_INT(batch_event(&b, batch, 3, QUEUE_EVENT_SQS, "q.fifo", 1, 1700000000, NULL, NULL), 0);
    cJSON *doc = cJSON_ParseWithLength(b.data, b.len);
    CHECK(doc != NULL);
    const cJSON *recs = cJSON_GetObjectItemCaseSensitive(doc, "Records");
    char id[3][LAMBDA_SQS_MESSAGE_ID_LEN + 1];
    for (int i = 0; i < 3; i++) {
        lambda_sqs_message_id("q.fifo", 1700000000, msgs[i].seq, id[i]);
        CHECK_STR(str(cJSON_GetArrayItem(recs, i), "messageId"), id[i]);
    }
    const cJSON *a0 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(recs, 0), "attributes");
    CHECK_STR(str(a0, "SenderId"), "000000000000");
    CHECK_STR(str(a0, "MessageGroupId"), "k\"1");
    CHECK_STR(str(a0, "SequenceNumber"), "00000000000000000007");
    /* A first receive: now, not the send's time. */
    CHECK(atoll(str(a0, "ApproximateFirstReceiveTimestamp")) > 1700000000123);
    const cJSON *a1 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(recs, 1), "attributes");
    CHECK_STR(str(a1, "ApproximateFirstReceiveTimestamp"), "1700000000456");
    cJSON_Delete(doc);
    buf_free(&b);

    uint64_t seq = 0;
    CHECK_INT(lambda_sqs_message_seq("q.fifo", 1700000000, id[2], &seq), 0);
    CHECK(seq == 100);
    char other[LAMBDA_SQS_MESSAGE_ID_LEN + 1], body[256], why[160];
    lambda_sqs_message_id("other", 1700000000, 100, other);
    CHECK_INT(lambda_sqs_message_seq("q.fifo", 1700000000, other, &seq), -1);
    /* The queue made again under the name (another second): other ids. */
    CHECK_INT(lambda_sqs_message_seq("q.fifo", 1700000001, id[2], &seq), -1);
    uint8_t f[3] = {0};
    snprintf(body, sizeof body, "{\"batchItemFailures\":[{\"itemIdentifier\":\"%s\"}]}", id[1]);
    CHECK_INT(
        batch_failures(body, strlen(body), batch, 3, f, "q.fifo", 1700000000, why, sizeof why), 0);
    CHECK(!f[0] && f[1] && !f[2]);
    const char *bad[] = {"7", other};
    for (int i = 0; i < 2; i++) {
        memset(f, 0, sizeof f);
        snprintf(body, sizeof body, "{\"batchItemFailures\":[{\"itemIdentifier\":\"%s\"}]}",
                 bad[i]);
        CHECK_INT(
            batch_failures(body, strlen(body), batch, 3, f, "q.fifo", 1700000000, why, sizeof why),
            ERR_INVAL);
    }
    /* Upper case is not what the event showed. */
    char upper[LAMBDA_SQS_MESSAGE_ID_LEN + 1];
    memcpy(upper, id[1], sizeof upper);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'f') *c = (char)(*c - 'a' + 'A');
    CHECK_INT(strcmp(upper, id[1]) != 0 ? lambda_sqs_message_seq("q.fifo", 1700000000, upper, &seq)
                                        : -1,
              -1);
}

/* A trigger's chain length, from a trace header and from a message's
 * stored attributes (common/lambda.h): what the recursive loop detection
 * reads. Anything that is not one is 0; a number is capped. */
static void lineage(void)
{
    CHECK_INT(lambda_trace_lineage(NULL), 0);
    CHECK_INT(lambda_trace_lineage("Root=1-5e-abc;Parent=1;Sampled=0"), 0);
    CHECK_INT(lambda_trace_lineage("Root=1-5e-abc;Sampled=0;Lineage=a87bd80c:7"), 7);
    CHECK_INT(lambda_trace_lineage("Lineage=:7"), 0);
    CHECK_INT(lambda_trace_lineage("Lineage=zz:7"), 0);
    CHECK_INT(lambda_trace_lineage("Lineage=ab:99999999999999999999"), 1000);
    static const char h[] = "{\"x\":{\"DataType\":\"String\",\"StringValue\":\"aws.lineage\"},"
                            "\"" LAMBDA_SQS_LINEAGE_ATTR "\":\"15\"}";
    CHECK_INT(lambda_sqs_lineage(h, sizeof h - 1), 15);
    CHECK_INT(lambda_sqs_lineage(h, 20), 0); /* cut: not JSON */
    static const char bad[] = "{\"" LAMBDA_SQS_LINEAGE_ATTR "\":15}";
    CHECK_INT(lambda_sqs_lineage(bad, sizeof bad - 1), 0);
    CHECK_INT(lambda_sqs_lineage(NULL, 0), 0);
    /* Not an attribute's shape: an SQS record shows no messageAttributes. */
    static const char only[] = "{\"" LAMBDA_SQS_LINEAGE_ATTR "\":\"3\"}";
    queue_attrs at = {.source = BATCH_SQS_SOURCE, .headers = only, .headers_len = sizeof only - 1};
    queue_msg m = {.seq = 1, .published_ms = 1, .data = "x", .len = 1, .attrs = &at};
    queue_lease l = {.msg = &m, .attempt = 1};
    queue_lease *const one[1] = {&l};
    buf b;
    buf_init(&b, 1 << 20);
    CHECK_INT(batch_event(&b, one, 1, QUEUE_EVENT_SQS, "q", 1, 0, NULL, NULL), 0);
    cJSON *doc = cJSON_ParseWithLength(b.data, b.len);
    const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "Records"), 0);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "messageAttributes")), 0);
    cJSON_Delete(doc);
    buf_free(&b);
}

int main(void)
{
    RUN(lineage);
    RUN(estimate_bounds);
    RUN(sqs_attributes);
    RUN(sqs_event);
    RUN(raw_event);
    RUN(answers);
    RUN(queue_ids);
    return TEST_RESULT();
}
