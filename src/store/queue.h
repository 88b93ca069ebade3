/*
 * queue.h - the queue interface: durable topics and the subscriptions of
 * triggers to them. The scheduler and the API use only this header; two
 * implementations provide it, the queue of one node (store/sqlqueue.h, on
 * SQLite) and the queue that nodes share (cluster/jsqueue.h, on JetStream).
 *
 * Topics. A topic is an append-only log of messages, each numbered (seq) in
 * publish order, created by its first publish or subscription. A publish
 * completes (its callback, status 0) only once its messages are durable: they
 * survive a crash of the process and of the machine.
 *
 * Subscriptions. A trigger is a subscription of one function to one topic.
 * Each subscription sees every message of its topic (fan-out), from the
 * oldest one stored when it was created, and keeps its own progress.
 *
 * Leases. The consumer takes one message at a time with queue_lease_next and
 * settles each lease exactly once: ack (done: the message is settled for this
 * subscription), nack (failed: the attempt counts, visible again after a
 * delay), release (not run: back at once, the attempt not counted) or
 * dead_letter (failed for good: moved to the subscription's dead-letter
 * topic with its source, attempts and last error). A message leaves a topic
 * once every subscription has settled it (or by purge, deletion or
 * retention).
 *
 * Delivery is at least once: a lease that is never settled (the node stopped
 * or died) is delivered again, to this node after a restart or to another
 * node of a cluster. A settled message is never delivered again to that
 * subscription. An ordered subscription leases at most one message per key
 * at a time (a key is busy while one of its messages is leased or waits for
 * a retry), in publish order.
 *
 * Ownership: leases and messages belong to the queue. A lease and its message
 * are borrowed from queue_lease_next until the lease is settled; messages given to
 * a read callback are borrowed for the call. Every call is made on the loop
 * thread; callbacks come on it too.
 */
#ifndef SPATE_QUEUE_H
#define SPATE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct queue queue;
typedef struct queue_sub queue_sub; /* each implementation's own; begins with its queue_ops */

/* Attributes a message may carry from where it came from (an event source,
 * DESIGN.md "Round 2"): kept with it in the store, in its dead letters and
 * through a redrive, shown when it is read and given to functions. A plain
 * message has none (its attrs pointer is NULL: nothing stored, nothing
 * allocated). Strings are NUL-terminated; NULL is absent. */
typedef struct queue_attrs {
    const char *source;      /* the event source's name */
    const char *upstream_id; /* stream id, delivery tag, partition/offset, ... */
    const char *headers;     /* a JSON object of strings, headers_len bytes */
    int64_t upstream_ts_ms;  /* the upstream's timestamp, epoch ms; 0: none */
    uint32_t headers_len;
    int redelivered; /* the upstream said it delivered it before */
} queue_attrs;

/* A committed message, read-only. */
typedef struct queue_msg {
    uint64_t seq;
    int64_t published_ms;
    const char *key; /* NUL-terminated, or NULL */
    const char *data;
    uint32_t len;
    uint32_t key_len;
    /* Dead letters only: where it came from, attempts made there, last error. */
    const char *source;
    const char *error;
    uint32_t attempts;
    const queue_attrs *attrs; /* NULL: none */
    /* Published with a delay (queue_input.delay_ms): no subscription leases
     * it before this time, epoch ms; 0: at once. */
    int64_t visible_ms;
} queue_msg;

/* Where a message's age counts from (a trigger's deadline, the oldest age
 * the autoscaler sees): its upstream timestamp when it has one, else its
 * publish time, whichever is earlier, so that an upstream clock ahead of
 * this one never extends a deadline. */
static inline int64_t queue_msg_since_ms(const queue_msg *m)
{
    int64_t up = m->attrs ? m->attrs->upstream_ts_ms : 0;
    return up > 0 && up < m->published_ms ? up : m->published_ms;
}

/* One delivery of a message to a subscription, read-only. An implementation
 * embeds it as the first member of its own lease. */
typedef struct queue_lease {
    queue_msg *msg;
    uint32_t attempt; /* 1 on first delivery */
    queue_sub *sub;   /* the subscription it came from (settling goes through its table) */
} queue_lease;

/* Bytes queue_attrs_copy needs for a (0 for NULL), alignment included. */
size_t queue_attrs_size(const queue_attrs *a);
/* Copies a (the struct, then its strings) to *p, advancing it past them;
 * NULL for NULL. */
const queue_attrs *queue_attrs_copy(char **p, const queue_attrs *a);

/* One message to publish; pointers into the body given to queue_publish,
 * or, for attrs and error (which the queue copies), borrowed for the call. */
typedef struct queue_input {
    const char *key; /* NULL when none */
    uint32_t key_len;
    const char *data;
    uint32_t len;
    const queue_attrs *attrs; /* NULL: none */
    /* Not NULL: the message is stored as a dead letter of source_topic that
     * never was a message there (attempts 0), refused for this reason: how an
     * event source keeps an upstream entry it cannot publish. */
    const char *error;
    const char *source_topic;
    /* Delivered to no subscription before this many ms after its publish
     * (SQS's DelaySeconds), durably: a restart keeps the delay. Only a queue
     * with QUEUE_DELAYS keeps it; others deliver at once. */
    uint32_t delay_ms;
    /* Not NULL: a deduplication id (NUL-terminated, dedup_len bytes before
     * the NUL, pointing into the body like key) that the queue remembers
     * with the message's seq for dedup_ms, in the message's own transaction:
     * once the publish completes, queue_dedup_each shows it, after a restart
     * too, and never before (SQS's FIFO deduplication, api/sqs.h). Only a
     * queue with QUEUE_DEDUP keeps it; others ignore it. JetStream keeps it
     * as the message's Nats-Msg-Id for its stream's duplicate window (5
     * minutes, not dedup_ms) and itself answers a repeat with the first
     * message's seq (below); queue_dedup_each shows none there. */
    const char *dedup;
    uint32_t dedup_len;
    uint32_t dedup_ms;
    /* Not NULL: where the queue writes the seq the message got, before done
     * (status 0). A repeat of a deduplication id the queue itself caught
     * (JetStream's window) gets the first message's seq and is not stored. */
    uint64_t *seq;
} queue_input;

/* Copies what in[0..n) carry beside the body (attributes, a refused
 * message's reason and topic) into one allocation and points in[] at the
 * copies: what a queue that publishes later keeps. *extra: caller owns, free
 * with free(); NULL when no input has any (nothing allocated). ERR_NOMEM. */
int queue_inputs_own_extras(queue_input *in, size_t n, char **extra);

/* A trigger's event format (queue_sub_config.event_format). */
enum { QUEUE_EVENT_RAW = 0, QUEUE_EVENT_SQS = 1 };

typedef struct queue_sub_config {
    char function[65];
    /* What the trigger invokes of function (NAME:Q, Lambda's qualified
     * event source mapping): "" its active version, a version's number, or
     * an alias, resolved at each invocation (SPATE_ALIAS_MAX). */
    char qualifier[65];
    char dlq[129];
    uint32_t max_attempts;
    uint32_t deadline_ms;     /* 0: none */
    uint32_t max_concurrency; /* 0: no limit beyond the function's */
    int ordered;
    /* Batches (docs/functions.md "Batches"): up to batch_size messages per
     * invocation (0 or 1: one), waiting up to batch_window_ms for more when
     * fewer are ready, within SPATE_BATCH_BYTES_MAX of event; the event in
     * event_format; with report_failures the function's answer may name the
     * messages that failed (batchItemFailures), the rest are acknowledged.
     * The scheduler builds batches from single leases (sched/batch.h): a
     * queue only keeps and shows these. */
    uint32_t batch_size;
    uint32_t batch_window_ms;
    int event_format; /* QUEUE_EVENT_RAW or QUEUE_EVENT_SQS */
    int report_failures;
    /* A paused trigger leases nothing: its messages wait (on a queue they
     * stay for ReceiveMessage), as Lambda's disabled event source mapping.
     * modified_ms: when its configuration last changed (epoch ms, set by the
     * API; 0 when unknown, a trigger saved before it was kept). */
    int paused;
    int64_t modified_ms;
    /* How long a lease may be out before the queue may take it for lost and
     * deliver its message again (the trigger sets it from its function's
     * timeout); 0: the implementation's default. Not part of the trigger's
     * saved or shown configuration. A queue shared by nodes (cluster/jsqueue)
     * makes it, plus a margin, its consumers' AckWait, so that a dead node's
     * messages go to the others; the SQLite queue ignores it: its leases live
     * in this process, where the pool's timeout bounds them. */
    uint32_t ack_wait_ms;
} queue_sub_config;

typedef struct queue_sub_stats {
    uint64_t depth; /* not yet settled: waiting, leased or retrying */
    uint64_t leased;
    uint64_t retrying; /* the delayed messages too */
    uint64_t delayed;  /* published with a delay, not yet due (queue_input.delay_ms) */
    /* Age origin (queue_msg_since_ms) of the oldest unsettled message, 0 if
     * none. Among messages not yet leased an implementation may look at the
     * first in publish order only (SQLite: the ready ring's head; JetStream:
     * the first after the ack floor), to stay cheap. */
    int64_t oldest_ms;
    uint64_t acked;
    uint64_t dead_lettered;
    uint64_t delivered; /* leases handed out */
} queue_sub_stats;

/* How much a topic nobody consumes keeps; 0 is no limit. Retention deletes
 * the oldest stored messages while the topic has no subscription only
 * (unless under_subscriptions): a message some subscription has not settled
 * is never deleted by it (and a settled one leaves the store anyway). */
typedef struct queue_retention {
    uint64_t max_age_ms;
    uint64_t max_bytes; /* payload and key bytes of the stored messages */
    uint64_t max_messages;
    /* max_age_ms applies while subscriptions read the topic too (an SQS
     * queue's MessageRetentionPeriod): an older message goes for every one
     * of them, but one leased now, which its consumer settles as usual. The
     * SQLite queue only; max_bytes and max_messages never apply under
     * subscriptions. */
    uint64_t under_subscriptions; /* 0 or 1; 64 bits: no padding in the struct */
} queue_retention;

typedef struct queue_topic_stats {
    uint64_t published; /* since the topic was created */
    uint64_t stored;    /* messages in the store */
    uint64_t bytes;     /* their payload and key bytes */
    int64_t oldest_ms;  /* publish time of the oldest stored message, 0 if none */
    uint32_t subscriptions;
    /* Over every subscription the topic has had, removed ones included: a
     * counter never goes down when a trigger goes. */
    uint64_t acked;
    uint64_t dead_lettered;
    queue_retention retention;
} queue_topic_stats;

typedef struct queue_events {
    /* Messages became available to lease on sub (published, fetched, or a
     * retry came due). */
    void (*available)(queue_sub *sub, void *data);
    /* Optional: how many more leases sub's consumer could start now. A
     * queue that must fetch (cluster mode) fetches no more than that. */
    uint32_t (*room)(queue_sub *sub, void *data);
    void *data;
} queue_events;

/* Replaces the event callbacks (NULL callbacks: no events). */
void queue_set_events(queue *q, const queue_events *ev);
/* Makes durable what is pending, then frees everything; cb when done. Leases
 * still out are forgotten (in flight: delivered again). */
void queue_close(queue *q, void (*cb)(void *data), void *data);

/* --- Publishing --------------------------------------------------------------------- */

/* Appends n messages to topic (created if new) in one transaction. The
 * inputs point into body, whose storage is taken. done is called once, after
 * the commit (status 0) or its failure (ERR_IO / ERR_STORE: nothing stored). */
typedef void (*queue_publish_cb)(void *data, int status, uint64_t first_seq);
void queue_publish(queue *q, const char *topic, buf *body, const queue_input *in, size_t n,
                   queue_publish_cb done, void *data);

/* --- Subscriptions -------------------------------------------------------------------- */

/* Adds (or, if it exists, reconfigures) the subscription of cfg->function to
 * topic; done reports the commit. The subscription starts at the oldest stored
 * message. */
typedef void (*queue_done_cb)(void *data, int status);
int queue_subscribe(queue *q, const char *topic, const queue_sub_config *cfg, queue_done_cb done,
                    void *data);
/* Removes it; its leases must all have been settled or are dropped.
 * ERR_NOTFOUND. */
int queue_unsubscribe(queue *q, const char *topic, const char *function, queue_done_cb done,
                      void *data);
queue_sub *queue_find_sub(queue *q, const char *topic, const char *function);
/* Calls cb for every subscription (by topic, then function); it costs the
 * subscriptions and the topics that have one, not every topic. */
void queue_each_sub(queue *q, void (*cb)(queue_sub *sub, void *data), void *data);
/* Calls cb for every subscription of topic (none if it is unknown), at the
 * cost of a lookup and its own subscriptions. */
void queue_each_sub_of(queue *q, const char *topic, void (*cb)(queue_sub *sub, void *data),
                       void *data);
const queue_sub_config *queue_sub_get_config(const queue_sub *sub);
const char *queue_sub_topic(const queue_sub *sub);
/* The scheduler's own pointer for a subscription. */
void queue_sub_set_data(queue_sub *sub, void *data);
void *queue_sub_data(const queue_sub *sub);

/* --- Leasing ------------------------------------------------------------------------ */

/* The next message to deliver: a due retry first, else the oldest ready one
 * (for ordered subscriptions, the oldest whose key is not busy). NULL when
 * none is available now; events.available follows when one is. */
queue_lease *queue_lease_next(queue_sub *sub);
/* Done: the message is settled for this subscription. */
void queue_ack(queue_lease *l);
/* Failed: counts the attempt; visible again after delay_ms. */
void queue_nack(queue_lease *l, uint32_t delay_ms, const char *error);
/* Not run (no capacity): back at once, the attempt not counted. */
void queue_release(queue_lease *l);
/* Failed for good: moves it to the subscription's dead-letter topic with its
 * attempts and error, in one transaction with its settling. */
void queue_dead_letter(queue_lease *l, const char *error);
/* Still being worked on: a queue shared by nodes holds the lease from the
 * others for another ack wait (queue_sub_config.ack_wait_ms; JetStream's
 * "in progress"); a queue of one node, whose leases live in its process,
 * has nothing to do. */
void queue_touch(queue_lease *l);

void queue_sub_get_stats(const queue_sub *sub, queue_sub_stats *out);
/* ERR_NOTFOUND for a topic never published to nor subscribed to. */
int queue_topic_get_stats(queue *q, const char *topic, queue_topic_stats *out);
/* Calls cb for each topic name. */
void queue_each_topic(queue *q, void (*cb)(const char *topic, void *data), void *data);
/* Calls cb for each topic name after the topic named after (NULL: from the
 * first), in the queue's own stable order (the order it learned them), until
 * cb returns nonzero: a listing in pages, each resumed from the last name of
 * the one before, sees every topic that lived throughout exactly once.
 * ERR_NOTFOUND when after names no topic this queue knows (nor knew); cb
 * NULL only checks after. */
int queue_topics_after(queue *q, const char *after, int (*cb)(const char *topic, void *data),
                       void *data);
/* Topics there are now (deleted ones not counted): what --max-topics bounds. */
uint32_t queue_topic_count(queue *q);

/* --- Administering topics ------------------------------------------------------------- */

/* done gets how many messages went (status 0) or the error. */
typedef void (*queue_count_cb)(void *data, int status, uint64_t count);
/* Deletes the topic and every message it stores. ERR_NOTFOUND; ERR_BUSY while
 * a subscription reads it (remove those first). A publish after it creates
 * the topic anew. */
int queue_topic_delete(queue *q, const char *topic, queue_count_cb done, void *data);
/* Deletes the topic's stored messages but those leased now (in flight: their
 * invocations settle them as usual); every subscription goes on from the
 * next publish. ERR_NOTFOUND. */
int queue_topic_purge(queue *q, const char *topic, queue_count_cb done, void *data);
/* Sets the topic's retention (created if new); enforced within about a
 * second and after every restart. */
int queue_topic_retention(queue *q, const char *topic, const queue_retention *r, queue_done_cb done,
                          void *data);

/* --- Reading and redriving ------------------------------------------------------------- */

/* Reads up to limit stored messages of topic with seq > after. cb gets them
 * (borrowed for the call) or an error. */
typedef void (*queue_read_cb)(void *data, int status, queue_msg *const *msgs, size_t n);
int queue_read(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_read_cb cb,
               void *data);
/* Moves up to limit dead letters of topic with seq > after back to their
 * source topics (as new messages, attempts reset), in one transaction with
 * their deletion. Only messages that carry a source (were dead-lettered) are
 * touched: any other message of the topic stays as it is. cb gets how many
 * moved. */
typedef void (*queue_redrive_cb)(void *data, int status, uint64_t moved);
int queue_redrive(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_redrive_cb cb,
                  void *data);

/* What kind of queue q is. QUEUE_SHARED: nodes share its topics (cluster
 * mode): a publish batch is not one transaction (some of a failed one may
 * be stored), and a topic may exist that this node has not heard of yet. */
#define QUEUE_SHARED 1u
/* The queue keeps queue_input.delay_ms (the SQLite queue; not yet JetStream). */
#define QUEUE_DELAYS 2u
/* The queue keeps queue_input.dedup durably (both queues: see there). */
#define QUEUE_DEDUP 4u
unsigned queue_flags(queue *q);

/* Calls cb for every deduplication id of a committed publish whose time has
 * not ended (queue_input.dedup), the soonest to end first: what a process
 * reloads at its start. Reads the store on the loop thread: for the start
 * only. 0, or ERR_STORE; 0 and no call for a queue without QUEUE_DEDUP. */
typedef void (*queue_dedup_cb)(void *data, const char *topic, const char *id, uint64_t seq,
                               int64_t until_ms);
int queue_dedup_each(queue *q, queue_dedup_cb cb, void *data);

/* --- Implementations ----------------------------------------------------------------------
 *
 * Every function above is a call through a table (store/queue_dispatch.c).
 * An implementation's queue and queue_sub structs begin with a pointer to its
 * table; its leases begin with a queue_lease whose sub is set. Each is created
 * by its own open call (sqlqueue.h, jsqueue.h). */
typedef struct queue_ops {
    void (*publish)(queue *q, const char *topic, buf *body, const queue_input *in, size_t n,
                    queue_publish_cb done, void *data);
    queue_lease *(*lease)(queue_sub *sub);
    void (*ack)(queue_lease *l);
    void (*nack)(queue_lease *l, uint32_t delay_ms, const char *error);
    void (*release)(queue_lease *l);
    void (*dead_letter)(queue_lease *l, const char *error);
    int (*subscribe)(queue *q, const char *topic, const queue_sub_config *cfg, queue_done_cb done,
                     void *data);
    int (*unsubscribe)(queue *q, const char *topic, const char *function, queue_done_cb done,
                       void *data);
    queue_sub *(*find_sub)(queue *q, const char *topic, const char *function);
    void (*each_sub)(queue *q, void (*cb)(queue_sub *sub, void *data), void *data);
    const queue_sub_config *(*sub_config)(const queue_sub *sub);
    const char *(*sub_topic)(const queue_sub *sub);
    void (*sub_set_data)(queue_sub *sub, void *data);
    void *(*sub_data)(const queue_sub *sub);
    void (*sub_stats)(const queue_sub *sub, queue_sub_stats *out);
    int (*topic_stats)(queue *q, const char *topic, queue_topic_stats *out);
    void (*each_topic)(queue *q, void (*cb)(const char *topic, void *data), void *data);
    int (*topics_after)(queue *q, const char *after, int (*cb)(const char *topic, void *data),
                        void *data);
    uint32_t (*topic_count)(const queue *q);
    void (*each_sub_of)(queue *q, const char *topic, void (*cb)(queue_sub *sub, void *data),
                        void *data);
    int (*read)(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_read_cb cb,
                void *data);
    int (*redrive)(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_redrive_cb cb,
                   void *data);
    int (*topic_delete)(queue *q, const char *topic, queue_count_cb done, void *data);
    int (*topic_purge)(queue *q, const char *topic, queue_count_cb done, void *data);
    int (*topic_retention)(queue *q, const char *topic, const queue_retention *r,
                           queue_done_cb done, void *data);
    void (*set_events)(queue *q, const queue_events *ev);
    void (*close)(queue *q, void (*cb)(void *data), void *data);
    int (*dedup_each)(queue *q, queue_dedup_cb cb, void *data); /* NULL: none kept */
    void (*touch)(queue_lease *l);                              /* NULL: nothing to do */
    unsigned flags;                                             /* queue_flags */
} queue_ops;

#endif
