/*
 * batch.h - the event a trigger's batch is delivered as, and the answer a
 * function may give about it (docs/functions.md "Batches").
 *
 * Formats (queue_sub_config.event_format):
 *  - QUEUE_EVENT_SQS: Lambda's SQS event, {"Records":[...]}, one record per
 *    message, its messageId stable across redeliveries: on an SQS queue the
 *    MessageId SendMessage answered (common/lambda.h), with the attributes
 *    ReceiveMessage shows (SenderId, ApproximateFirstReceiveTimestamp, a
 *    FIFO queue's SequenceNumber); on any other topic the message's seq in
 *    decimal, SenderId the publisher (queue_attrs.source, else "spate"). A payload that is not
 * UTF-8 text (or holds a NUL) goes base64 in body, and messageAttributes says so with
 *    "spate.body_encoding": "base64"; md5OfBody is of body as sent. A
 *    message sent to an SQS queue with attributes has them in
 *    messageAttributes (BATCH_SQS_SOURCE).
 *  - QUEUE_EVENT_RAW: a JSON array of messages, each with messageId (as in
 *    the SQS shape), seq,
 *    key, payload (or payload_base64), published_ms, attempt and, when it
 *    has any, the message's attributes as GET .../messages shows them.
 *
 * The region and account the SQS shape names (eventSourceARN, awsRegion)
 * are fixed: spate has no regions, and its SQS face uses account
 * 000000000000 too (DESIGN.md "Round 2").
 */
#ifndef SPATE_BATCH_H
#define SPATE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "store/queue.h"

/* queue_attrs.source of a message sent through the SQS API with message
 * attributes (api/sqs_attrs.c): its headers hold them as the JSON protocol
 * writes them, {"NAME": {"DataType": T, "StringValue": S | "BinaryValue":
 * BASE64}}, which an SQS record shows in messageAttributes (Lambda's shape:
 * stringValue or binaryValue, empty stringListValues and binaryListValues,
 * dataType). */
#define BATCH_SQS_SOURCE "spate:sqs"

#define BATCH_AWS_REGION "us-east-1"
#define BATCH_AWS_ACCOUNT "000000000000"

/* At least the bytes message m adds to an event of format on topic (of
 * topic_len bytes; on_queue: an SQS queue's, its records with a receipt
 * handle of up to BATCH_HANDLE_MAX): what the trigger counts against
 * SPATE_BATCH_BYTES_MAX. */
size_t batch_record_max(const queue_msg *m, int format, size_t topic_len, int on_queue);

/* Writes into out (cap bytes, at most BATCH_HANDLE_MAX written) the
 * receipt handle of an SQS record of message seq, received the attempt-th
 * time from queue topic: one the queue's DeleteMessage and
 * ChangeMessageVisibility accept while the batch runs (api/sqs_recv.c), as
 * a Lambda function settles its messages with its event's handles. */
typedef void (*batch_handle_fn)(const char *topic, uint64_t seq, uint32_t attempt, char *out,
                                size_t cap, void *data);
#define BATCH_HANDLE_MAX 128

/* Appends the event for leases l[0..n) to out; on_queue: topic is an SQS
 * queue's and the leases its receiver's, created that queue's creation time
 * (triggers_receiver_created: its MessageIds), and handle (NULL: none) writes
 * the records' receipt handles, else TOPIC:SEQ:ATTEMPT. ERR_NOMEM,
 * ERR_TOOBIG. */
int batch_event(buf *out, queue_lease *const *l, size_t n, int format, const char *topic,
                int on_queue, int64_t created, batch_handle_fn handle, void *handle_data);

/* Reads a function's answer about the batch l[0..n) by Lambda's rules:
 * nothing, null, {} or {"batchItemFailures": null or []} is success; each
 * {"itemIdentifier": "<messageId>"} in the list marks that message failed
 * (failed[i] = 1; failed must hold n, zeroed): the messageId batch_event
 * wrote, the queue's MessageId when qname names the SQS queue the batch
 * came from, made at created (NULL: another topic's, the seq in decimal). Anything else (not JSON,
 * not an object, a list that is not one, an item without a non-empty
 * string itemIdentifier, an id not in the batch) is ERR_INVAL, with why:
 * then the whole batch failed. */
int batch_failures(const char *body, size_t len, queue_lease *const *l, size_t n, uint8_t *failed,
                   const char *qname, int64_t created, char *why, size_t why_cap);

#endif
