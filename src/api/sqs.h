/*
 * sqs.h - Amazon SQS on spated's port (issue 18): what sqs.c (the wire and
 * the actions) and sqs_recv.c (the receiver: leases held for their
 * visibility timeout, long polls) share. Nothing outside api/ includes it.
 *
 * Design.
 *
 * A queue is a spate topic (its name: 1..80 of [A-Za-z0-9_-], SQS's rule,
 * which every topic name rule admits) with one extra subscription, the
 * queue's receiver (sched/triggers.h TRIGGERS_RECEIVER): a topic fans out
 * to each of its subscriptions, a queue gives each message to one receiver
 * only, so every ReceiveMessage caller leases from that one subscription.
 * The receiver's existence is the queue's: CreateQueue subscribes it (a
 * durable commit), DeleteQueue removes it and deletes the topic. Its saved
 * configuration holds the queue's attributes, so they are durable without a
 * table of their own: deadline_ms the VisibilityTimeout, batch_window_ms
 * the ReceiveMessageWaitTimeSeconds (both in ms), max_concurrency the
 * DelaySeconds, batch_size the MessageRetentionPeriod (s), qualifier the
 * created and modified times, dlq and max_attempts the RedrivePolicy (none
 * of them means to a receiver what it means to a trigger): a receive whose visibility timeout ends
 * when it was the maxReceiveCount-th moves its message to the dead-letter queue's topic
 * (queue_dead_letter, one transaction), where that queue's receiver finds it.
 *
 * The wire: two protocols, one set of actions. An action reads its input
 * as the JSON 1.0 protocol's object (the query protocol, not yet, will turn
 * its form into the same object) and answers a cJSON object or an error
 * from one table (sqs_err) that holds the JSON protocol's __type, the query
 * protocol's code and the HTTP status, as SQS sends them.
 *
 * Visibility timeout: a ReceiveMessage leases a message and holds the lease
 * in this process with a deadline; DeleteMessage acks it, the deadline
 * nacks it (delay 0: visible again at once, the attempt counted: the next
 * receive's ApproximateReceiveCount is the lease's attempt),
 * ChangeMessageVisibility moves the deadline. One uv timer serves every
 * deadline (held leases and long polls). A kill -9 forgets the held leases:
 * their messages are delivered again after the restart (at least once, as
 * SQS). The receipt handle names the receive (a number unique in the
 * process), the message's seq and an HMAC-SHA256 of them and the queue's
 * name under a key drawn at start: a forged handle is refused
 * (ReceiptHandleIsInvalid), a stale one (its lease expired, or from before a
 * restart: the receive's number starts with a random id of the process's
 * life, so another life's handle is known stale without its key) deletes
 * nothing and succeeds, as SQS does.
 *
 * Long polling: a ReceiveMessage that finds nothing and may wait
 * (WaitTimeSeconds, or the queue's ReceiveMessageWaitTimeSeconds) waits on
 * the loop; the queue's available event (a send committed, a lease back)
 * serves the waiters of that queue in arrival order; its deadline answers
 * an empty list. No polling. A waiter whose client sent its FIN is
 * answered empty rather than given messages it would hide unread; one
 * whose connection reset is answered too (dropped), which frees it.
 *
 * Triggers on a queue (Lambda's event source mappings) share its receiver:
 * sched/triggers.c leases for them from the receiver rather than from their
 * own subscription (which only keeps the trigger, and settles every message
 * at once), so each message goes to one ReceiveMessage caller or to one
 * function. A message a function failed is nacked with the queue's
 * visibility timeout as its delay, or dead-lettered to the queue's DLQ after
 * maxReceiveCount receives: the receiver's configuration decides, not the
 * trigger's. The receiver's available event reaches both (the hook here
 * first: long polls wait on connections); a receive's visibility timeout
 * ending here tells the triggers (triggers_receiver_available), as the queue
 * does not. The SQS event shows an SQS sender's attributes in Lambda's shape
 * (sched/batch.c).
 *
 * Retention: MessageRetentionPeriod is the receiver's batch_size (seconds;
 * 0: SQS's default); every lease from a receiver goes through
 * triggers_receiver_next, which deletes (acks) what is older, and the
 * queue's topic carries it as an age limit under its subscriptions
 * (queue_retention.under_subscriptions, set with the receiver's settings),
 * so that what nobody receives expires too. The JetStream queue keeps no
 * such limit: cluster mode refuses a retention other than the default,
 * which receiving alone applies there.
 * CreatedTimestamp and LastModifiedTimestamp live in the receiver's
 * qualifier ("CREATED MODIFIED", epoch seconds): a receiver invokes nothing.
 *
 * Delays: DelaySeconds (the queue's in the receiver's max_concurrency, which
 * a receiver has no use for; a message's own wins) becomes the message's
 * queue_input.delay_ms: the queue keeps its visible time with the message
 * and holds it back from every subscription until then (store/queue.h),
 * counted in queue_sub_stats.delayed (ApproximateNumberOfMessagesDelayed).
 * Only the SQLite queue keeps delays (QUEUE_DELAYS): in cluster mode a
 * delay over 0 is refused.
 *
 * FIFO queues (.fifo): the receiver is ordered (cfg.ordered), a message's
 * MessageGroupId its key, so the queue leases one message per group at a
 * time, in order, to ReceiveMessage and triggers alike;
 * ContentBasedDeduplication is the receiver's report_failures. Deduplication
 * ids (given, or the body's SHA-256) are remembered 5 minutes: looked up in
 * this process (sqs_recv.c: a map and a list by age, bounded), and kept by
 * the SQLite queue with their message, in its transaction (queue_input.dedup,
 * the dedup_ids table; the writer prunes the ended ones), reloaded at start:
 * a send retried across a restart, kill -9 too, is answered with the first
 * one's MessageId and SequenceNumber. In cluster mode JetStream keeps them
 * (Nats-Msg-Id, below). A
 * FIFO queue takes no delay yet: a delayed message waits as a retry, and a
 * retry's lease does not look at its group's order.
 *
 * SendMessage(Batch) answers after the queue's commit (fsync, the group
 * commit): an acknowledged message survives kill -9. A message's MessageId
 * and SequenceNumber come from the seq the queue gave it (queue_input.seq).
 *
 * Cluster mode (the JetStream queue, QUEUE_SHARED). The receiver is added
 * through triggers_add, so the registry carries it to every node (with its
 * settings: SetQueueAttributes and DeleteQueue travel alike). A node fetches
 * what its receives ask (on_room: the receive leasing and the long polls)
 * and the sharing triggers have room for; sched/triggers.c releases what
 * nobody took, for the other nodes. A receive that finds nothing waits for
 * that fetch (SPATE_SQS_CLUSTER_POLL_MS), even a short poll. The receiver's
 * AckWait is the queue's visibility timeout (+ margin): a held lease is
 * touched (queue_touch, JetStream's in progress) every visibility timeout
 * while its own lasts longer; so are a sharing trigger's leases while its
 * batch gathers and runs (sched/triggers.c touch_held). Only the node that
 * received a message holds it: its receipt handles begin with its node id,
 * and another node refuses them (SQS_HANDLE_ELSEWHERE) rather than take
 * them for stale (sqs_recv.c node_id). FIFO deduplication ids go as Nats-Msg-Id: the
 * stream's window catches a retry through another node. Refused there:
 * DelaySeconds over 0, a retention other than the default.
 */
#ifndef SPATE_API_SQS_H
#define SPATE_API_SQS_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "api/internal.h"
#include "sched/batch.h"

/* The account id of every queue URL and ARN. */
#define SQS_ACCOUNT "000000000000"

/* The errors, as SQS names them: NAME (the JSON protocol's __type after
 * "com.amazonaws.sqs#"), the query protocol's code (also the JSON
 * protocol's x-amzn-query-error), the HTTP status. */
#define SQS_ERR_MAP(X)                                                                             \
    X(INVALID_ACTION, "InvalidAction", "InvalidAction", 400)                                       \
    X(MISSING_PARAMETER, "MissingParameter", "MissingParameter", 400)                              \
    X(INVALID_PARAMETER, "InvalidParameterValue", "InvalidParameterValue", 400)                    \
    X(MALFORMED, "SerializationException", "MalformedQueryString", 400)                            \
    X(NO_QUEUE, "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", 400)               \
    X(QUEUE_EXISTS, "QueueNameExists", "QueueAlreadyExists", 400)                                  \
    X(INVALID_ADDRESS, "InvalidAddress", "InvalidAddress", 404)                                    \
    X(BAD_HANDLE, "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 404)                         \
    X(HANDLE_ELSEWHERE, "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 404)                   \
    X(NOT_INFLIGHT, "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight", 400)        \
    X(ATTR_NAME, "InvalidAttributeName", "InvalidAttributeName", 400)                              \
    X(ATTR_VALUE, "InvalidAttributeValue", "InvalidAttributeValue", 400)                           \
    X(CONTENTS, "InvalidMessageContents", "InvalidMessageContents", 400)                           \
    X(EMPTY_BATCH, "EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", 400)           \
    X(TOO_MANY, "TooManyEntriesInBatchRequest",                                                    \
      "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400)                                  \
    X(IDS_NOT_DISTINCT, "BatchEntryIdsNotDistinct",                                                \
      "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400)                                      \
    X(BAD_ENTRY_ID, "InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId", 400)      \
    X(BATCH_TOO_LONG, "BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", 400)    \
    X(UNSUPPORTED, "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", 400)     \
    X(OVER_LIMIT, "OverLimit", "OverLimit", 403)                                                   \
    X(UNAVAILABLE, "ServiceUnavailable", "ServiceUnavailable", 503)                                \
    X(INTERNAL, "InternalError", "InternalError", 500)

enum sqs_err {
#define X(id, type, code, status) SQS_##id,
    SQS_ERR_MAP(X)
#undef X
};

/* One call of an action: made by the protocol's reader, answered once by
 * sqs_ok or sqs_fail (which free it), now or from a callback. */
typedef struct sqs_call {
    api *a;
    http_request *req;
    cJSON *in;       /* the action's input object (owned) */
    char queue[81];  /* the queue named by QueueUrl, when the action takes one */
    char region[32]; /* for ARNs: the signature's region, else us-east-1 */
    char host[256];  /* for queue URLs: the Host the client used */
    int query;       /* answered in the query protocol\'s XML (sqs_query.c) */
    char action[40]; /* its name */
} sqs_call;

/* Answers out (taken; NULL: an empty object). */
void sqs_ok(sqs_call *c, cJSON *out);
void sqs_fail(sqs_call *c, enum sqs_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether text holds only what SQS accepts in a body or an attribute's
 * string: #x9 #xA #xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to
 * #x10FFFF (valid UTF-8 besides); the query protocol's XML can carry no
 * other (a control character made every later receive unreadable). */
int sqs_contents_ok(const char *s, size_t len);

/* --- Message attributes (sqs_attrs.c) ------------------------------------------------------ */

/* queue_attrs.source of a message sent with attributes; its headers hold
 * them (the JSON protocol's MessageAttributes map, normalized). */
#define SQS_ATTRS_SOURCE BATCH_SQS_SOURCE
/* Checks a MessageAttributes map (NULL: none) as SQS does: -1 with *norm
 * the normalized map (caller owns; NULL when empty) and *bytes what they
 * count toward the message's size, or an sqs_err with why. */
int sqs_attrs_read(const cJSON *attrs, cJSON **norm, size_t *bytes, char *why, size_t cap);
/* MD5OfMessageAttributes of a normalized map: 0, or -1 (out of memory). */
int sqs_attrs_md5(const cJSON *attrs, char out[33]);
/* The attributes of a stored map (json, len bytes) that MessageAttributeNames
 * (names, a list; NULL: none) asks for: caller owns; NULL when none. */
cJSON *sqs_attrs_select(const char *json, size_t len, const cJSON *names);

/* --- The query/XML protocol (sqs_query.c) ---------------------------------------------- */

/* Reads a form into the JSON protocol's input object (*in, caller owns)
 * and its Action: -1, or an sqs_err with why (nothing to free). */
int sqs_query_read(const char *body, size_t len, cJSON **in, char *action, size_t cap, char *why,
                   size_t whycap);
/* The XML answer of action with out (the JSON protocol's answer object),
 * or an error's; caller owns, free with free(); NULL when out of memory. */
char *sqs_query_render(const char *action, const cJSON *out, const char *request_id, size_t *len);
char *sqs_query_error(const char *code, int sender, const char *message, const char *request_id,
                      size_t *len);
/* The Action a form names ("" when none). */
void sqs_query_action(const char *body, size_t len, char action[40]);

/* --- The receiver (sqs_recv.c) ----------------------------------------------------------- */

/* Which system attributes a received message shows (AttributeNames). */
#define SQS_ATTR_RECEIVE_COUNT 1u
#define SQS_ATTR_SENT_TIMESTAMP 2u
#define SQS_ATTR_FIRST_RECEIVE 4u
#define SQS_ATTR_SENDER 8u
#define SQS_ATTR_FIFO 16u /* MessageGroupId and SequenceNumber */

/* ReceiveMessage on c->queue's receiver sub: up to max messages, each
 * invisible for visibility_s, waiting up to wait_s for the first. Answers c. */
void sqs_receive(sqs_call *c, queue_sub *sub, uint32_t max, uint32_t visibility_s, uint32_t wait_s,
                 unsigned attrs);
/* What a receipt handle does to its message. */
enum sqs_settle { SQS_DELETE, SQS_VISIBILITY };
/* Deletes the message of handle, or sets its visibility timeout to
 * visibility_s from now: 0, or SQS_BAD_HANDLE (not one of ours for this
 * queue), or SQS_NOT_INFLIGHT (visibility only: its lease is gone), or
 * SQS_HANDLE_ELSEWHERE (cluster mode: another node made it and holds its
 * lease). A delete with a stale handle is 0 and deletes nothing. */
int sqs_settle(api *a, const char *qname, const char *handle, enum sqs_settle op,
               uint32_t visibility_s);
/* Messages of the queue held now (ApproximateNumberOfMessagesNotVisible). */
uint64_t sqs_held_count(api *a, const char *qname);
/* Gives back what the queue's receives hold, answers its long polls
 * (empty) and forgets its FIFO deduplication ids: before DeleteQueue
 * removes its receiver. */
void sqs_forget_queue(api *a, const char *qname);
/* Deletes (acks) every message the queue's receives hold (PurgeQueue). */
void sqs_delete_held(api *a, const char *qname);
/* FIFO deduplication (SQS's 5-minute window): whether id was sent to qname
 * within the window (*seq: the message it made), and noting one sent (after
 * its commit, which stored the id with it where the queue has QUEUE_DEDUP).
 * The window, in ms (a test may shorten it). */
int sqs_dedup_find(api *a, const char *qname, const char *id, uint64_t *seq);
void sqs_dedup_add(api *a, const char *qname, const char *id, uint64_t seq);
uint32_t sqs_dedup_window_ms(api *a);

#endif
