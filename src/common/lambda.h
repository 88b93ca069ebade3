/* lambda.h - AWS Lambda's conventions that the layers above read, with
 * cJSON, which lives here for them (scripts/check-layers). */
#ifndef SPATE_LAMBDA_H
#define SPATE_LAMBDA_H

#include <stddef.h>
#include <stdint.h>

/* Reads a function's answer to a batch by Lambda's rules for
 * ReportBatchItemFailures: nothing, null, {} or {"batchItemFailures": null
 * or []} is success (0, on_id never called); on_id is called with each
 * itemIdentifier of the list, and returns nonzero for an id that is no
 * message of the batch. Anything else (not JSON, not an object, a list that
 * is not one, an entry without a non-empty string itemIdentifier, an id
 * on_id refuses) is ERR_INVAL with why: the whole batch failed. */
int lambda_batch_failures(const char *body, size_t len, int (*on_id)(const char *id, void *data),
                          void *data, char *why, size_t why_cap);

/* Calls on_attr for each of the first max message attributes in the
 * headers of an SQS sender's message ({"NAME": {"DataType": T,
 * "StringValue"|"BinaryValue": V}}, as api/sqs stores them): its name, data
 * type, value and whether the value is binary (base64). Entries of another
 * shape are skipped; a map that does not read as one (or no memory, which
 * cJSON does not tell apart) gives none. Stops at on_attr's first nonzero
 * answer and returns it; else 0. */
int lambda_sqs_attrs_each(const char *headers, size_t len, int max,
                          int (*on_attr)(const char *name, const char *type, const char *value,
                                         int binary, void *data),
                          void *data);

/* The MessageId of message seq on SQS queue qname, as SendMessage answers
 * it, ReceiveMessage shows it and a queue's SQS event names it (messageId):
 * a UUID's shape, version 4 and variant bits set, stable across
 * redeliveries and nodes. Its first 51 bits come from the queue's name
 * (FNV-1a) and its creation time (created, epoch seconds; 0: unknown, a
 * queue made before spated kept it), its last 60 are the seq, so it reads
 * back (lambda_sqs_message_seq). The creation time, because a queue made
 * again under a name numbers its messages from 1 again: its MessageIds
 * repeated the deleted queue's, which a consumer that deduplicates by
 * MessageId took for processed. */
#define LAMBDA_SQS_MESSAGE_ID_LEN 36
void lambda_sqs_message_id(const char *qname, int64_t created, uint64_t seq,
                           char out[LAMBDA_SQS_MESSAGE_ID_LEN + 1]);
/* The seq of id when id is exactly what lambda_sqs_message_id writes for
 * qname, created and some seq below 2^60: 0 with *seq; else -1. */
int lambda_sqs_message_seq(const char *qname, int64_t created, const char *id, uint64_t *seq);

/* Recursive loops (SPATE_SQS_LOOP_MAX). A triggered invocation's trace
 * header (Lambda-Runtime-Trace-Id, which the runtime clients put in
 * _X_AMZN_TRACE_ID and the AWS SDKs send back as X-Amzn-Trace-Id, as in
 * Lambda) carries ";Lineage=HASH:N": the invocation is the N-th of its
 * chain. A message SendMessage took with it keeps N under this name in its
 * attributes' JSON (a name no sender may give: SQS keeps "aws." to itself;
 * not an attribute's shape, so neither ReceiveMessage nor an event shows
 * it); the trigger running it makes invocation N+1. */
#define LAMBDA_SQS_LINEAGE_ATTR "aws.lineage"
/* N of a trace header's Lineage=HASH:N (NULL or none: 0; at most 1000). */
uint32_t lambda_trace_lineage(const char *trace);
/* N of a stored message's attributes (headers, len bytes; NULL: 0). */
uint32_t lambda_sqs_lineage(const char *headers, size_t len);

/* Whether s (len bytes) is one JSON object. */
int lambda_json_is_object(const char *s, size_t len);

/* An async invocation's own attributes, in the headers (a JSON object of
 * strings) of its message on spate.async.NAME: the version it runs (0: the
 * one active when it runs) and how many async invocations made it, one
 * through the other's destination record (0: a client's call). */
#define LAMBDA_ASYNC_VERSION_HEADER "spate-async-version"
#define LAMBDA_ASYNC_HOPS_HEADER "spate-async-hops"
typedef struct lambda_async_attrs {
    uint32_t version;
    uint32_t hops;
} lambda_async_attrs;

/* The headers of a (nonzero fields only) into out: its length, 0 when
 * there is none to write (out is ""). cap of 64 is always enough. */
size_t lambda_async_attrs_write(const lambda_async_attrs *a, char *out, size_t cap);
/* Reads them back from a message's headers (NULL or len 0: none); a field
 * absent or not a decimal number in range is 0. */
void lambda_async_attrs_read(const char *headers, size_t len, lambda_async_attrs *out);

#endif
