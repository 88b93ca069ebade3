/*
 * triggers.h - the consumption of topics by functions: each trigger leases
 * messages from its subscription and invokes its function once per message,
 * retries failures with exponential back-off and jitter, moves a message to
 * the dead-letter topic after its last attempt, and never counts an attempt
 * for a message that waited for capacity.
 *
 * The autoscaler lives here too: per function it measures the arrival rate
 * (publishes on its triggers' topics), takes the handler time from the pool,
 * and feeds sched/autoscaler.c every SPATE_AUTOSCALE_TICK_MS and at once on
 * publishes and completions. Its answer bounds how much each trigger hands to
 * the pool, so the pool grows to it, and warns when a deadline is at risk.
 */
#ifndef SPATE_TRIGGERS_H
#define SPATE_TRIGGERS_H

#include <uv.h>

#include "sched/autoscaler.h"
#include "sched/functions.h"
#include "store/queue.h"

typedef struct triggers triggers;

/* Step 1: create (the queue needs triggers_events at open). */
triggers *triggers_create(uv_loop_t *loop, functions *table);
const queue_events *triggers_events(triggers *t);
/* Step 2: attach the opened queue; starts the triggers it has. */
void triggers_attach(triggers *t, queue *q);
/* Stops leasing. With drain, running invocations finish (and are settled);
 * without, they are cut and their messages go back. cb when nothing runs. */
void triggers_close(triggers *t, int drain, void (*cb)(void *data), void *data);

/* Adds or updates a trigger; done reports the commit. A trigger added or
 * removed here is recorded in the registry (which, in a cluster, tells the
 * other nodes); those the registry says another node changed are applied
 * here from triggers_attach on (the registry's events, functions' too). */
int triggers_add(triggers *t, const char *topic, const queue_sub_config *cfg, queue_done_cb done,
                 void *data);
int triggers_remove(triggers *t, const char *topic, const char *function, queue_done_cb done,
                    void *data);

/* What became of one invocation a trigger made, told before its message is
 * settled (api/lambda_async.c sends the destination records of async
 * invocations from it). Everything is borrowed for the call. */
typedef struct trigger_outcome {
    const char *topic;
    const char *function;
    const char *request_id;
    const queue_msg *msg;
    uint32_t attempt;
    uint32_t max_attempts;
    uint32_t version; /* that ran it */
    enum pool_outcome outcome;
    const char *body; /* the output, or the error's message */
    size_t len;
    int final; /* succeeded, or failed for the last time (to the dead letters) */
} trigger_outcome;
typedef void (*triggers_outcome_cb)(const trigger_outcome *o, void *data);
/* Sets the one hook (NULL: none); data is borrowed while it is set. Not
 * called for an invocation that never ran (no room: its message goes back). */
void triggers_set_outcome_hook(triggers *t, triggers_outcome_cb cb, void *data);

/* A message with attributes of this source (queue_attrs.source) carries in
 * upstream_id the request id it was given when it was accepted (an async
 * invocation, api/lambda_async.c): each of its attempts runs under that id,
 * so that its logs and destination records are found by it. */
#define TRIGGERS_INVOKE_SOURCE "spate:invoke"
/* The topic of NAME's async invocations is this and NAME; the version such
 * a message carries (common/lambda.h) is NAME's, so only NAME's trigger on
 * it runs that version. */
#define TRIGGERS_ASYNC_PREFIX "spate.async."

/* A subscription of this name is no function's: it is an SQS queue's
 * receiver (api/sqs.h), leased by the callers of ReceiveMessage. Not a valid
 * function name, so no trigger can take it. The triggers neither lease from
 * nor list it; they tell its availability to the receiver hook. */
#define TRIGGERS_RECEIVER "@receiver"
int triggers_is_receiver(const queue_sub *sub);
/* The creation time (epoch seconds) of the SQS queue whose receiver is
 * receiver: the first number of its qualifier ("CREATED MODIFIED", api/sqs.h);
 * 0 when unknown (a queue made before spated kept it). It enters the queue's
 * MessageIds (common/lambda.h lambda_sqs_message_id). */
int64_t triggers_receiver_created(const queue_sub *receiver);
/* Both times a receiver's configuration keeps in its qualifier ("CREATED
 * MODIFIED", epoch seconds): 0 and 0 when it does not hold two such numbers.
 * The one reader of that format (api/sqs.c's settings, the MessageIds). */
void triggers_receiver_times(const queue_sub_config *cfg, int64_t *created, int64_t *modified);
/* The one receiver hook (NULL: none): available when a receiver's messages
 * became available, closing once when the triggers close (the receiver then
 * settles or releases what it holds: the queue closes after the triggers).
 * data is borrowed while it is set. */
typedef struct triggers_receiver {
    void (*available)(queue_sub *sub, void *data);
    void (*closing)(void *data);
    /* Optional: how many of a receiver's messages its receives would take
     * now (a receive leasing, long polls waiting): with the room of the
     * triggers that share the receiver, what a queue that must fetch
     * (cluster mode, queue_events.room) fetches for it. */
    uint32_t (*room)(queue_sub *sub, void *data);
    /* Optional: the queue on topic was deleted on another node (cluster
     * mode), its receiver about to be removed here. */
    void (*removed)(const char *topic, void *data);
    /* Optional: the receipt handle of a message a trigger leased from the
     * receiver, as its SQS event shows it (sched/batch.h batch_handle_fn);
     * none: TOPIC:SEQ:ATTEMPT, which no DeleteMessage takes. */
    void (*handle)(const char *topic, uint64_t seq, uint32_t attempt, char *out, size_t cap,
                   void *data);
    void *data;
} triggers_receiver;
void triggers_set_receiver(triggers *t, const triggers_receiver *r);
/* A function settling a message of its running batch by the receipt handle
 * its event showed (DeleteMessage, ChangeMessageVisibility: what Lambda
 * functions do): message seq of queue topic, leased the attempt-th time by
 * a trigger whose invocation still runs. Taken into account when the
 * invocation ends, not before (the lease is the trigger's until then): a
 * deleted message is deleted whatever the outcome; one given a visibility
 * timeout that fails (named in batchItemFailures, or the whole batch) is
 * visible again after visibility_ms rather than the queue's visibility
 * timeout; if it succeeds it is deleted, as Lambda does. 0, or -1: no
 * running invocation holds that lease (stale, or never given). */
#define TRIGGERS_SETTLE_DELETE 0
#define TRIGGERS_SETTLE_VISIBILITY 1
int triggers_receiver_settle(triggers *t, const char *topic, uint64_t seq, uint32_t attempt, int op,
                             uint32_t visibility_ms);
/* PurgeQueue on topic: what the triggers sharing its receiver hold goes
 * too, as SQS purges what is in flight: a running invocation's messages are
 * deleted when it ends (whatever its outcome), a gathering batch's now. */
void triggers_receiver_purge(triggers *t, const char *topic);
/* A trigger on a queue (a topic with a receiver) leases from the receiver,
 * which it shares with ReceiveMessage's callers: each message goes to one of
 * them or to the function. A message it fails is visible again when the
 * queue's visibility timeout (the receiver's deadline_ms) ends, or goes to
 * the queue's dead-letter queue after maxReceiveCount receives (the
 * receiver's max_attempts and dlq); the trigger's own max_attempts and dlq
 * do not apply there. The receiver's messages became available without the
 * queue saying so (a receive's visibility timeout ended): the triggers that
 * share it lease them. */
void triggers_receiver_available(triggers *t, queue_sub *receiver);
/* A queue's retention (SQS's MessageRetentionPeriod) is the receiver's
 * batch_size in seconds, 0 this default: a message older is deleted as
 * receiving meets it (triggers_receiver_next). */
#define TRIGGERS_RETENTION_DEFAULT_S 345600
/* The receiver's next message, as queue_lease_next, past those older than
 * the queue's retention (acked: deleted). Every lease from a receiver goes
 * through here, ReceiveMessage's and the triggers'. */
queue_lease *triggers_receiver_next(queue_sub *receiver);

/* Cluster mode: the number of live nodes, over which the autoscaler spreads
 * a function's instances (each sizes its share of the cluster's backlog). */
void triggers_set_nodes(triggers *t, uint32_t (*live)(void *data), void *data);
/* The queue it was attached to. */
queue *triggers_queue(triggers *t);

/* What the API shows of a function's scaling. */
typedef struct scale_view {
    int has_triggers;
    double arrival_per_s;
    double service_ms;
    uint64_t backlog;
    double oldest_age_s;
    uint32_t desired;
    double eta_s;      /* INFINITY when it cannot drain */
    double deadline_s; /* the tightest deadline of its triggers, 0 if none */
    double time_left_s;
    int at_risk;
} scale_view;
void triggers_scale_view(triggers *t, const char *function, scale_view *out);

/* A trigger as the API lists it. */
typedef struct trigger_view {
    const char *topic;
    const queue_sub_config *cfg;
    queue_sub_stats stats;
    uint32_t in_flight;          /* invocations handed to the pool */
    const histogram *end_to_end; /* publish to success; NULL before it runs */
} trigger_view;
void triggers_each(triggers *t, void (*cb)(const trigger_view *v, void *data), void *data);
/* A page of triggers in (topic, function) order: cb for each after
 * (after_topic, after_function) (after_topic NULL: from the first), at most
 * limit of them; *more is set when another follows (also when cb returned
 * nonzero: it took no more), *total counts them all. One walk over the
 * triggers' names (a selection of the page's, O(n log limit)); only the
 * page's are read for their figures. ERR_NOMEM. */
int triggers_page(triggers *t, const char *after_topic, const char *after_function, uint32_t limit,
                  int (*cb)(const trigger_view *v, void *data), void *data, int *more,
                  uint32_t *total);
/* The triggers of one topic. */
void triggers_each_of_topic(triggers *t, const char *topic,
                            void (*cb)(const trigger_view *v, void *data), void *data);

#endif
