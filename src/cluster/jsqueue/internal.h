/*
 * jsqueue/internal.h - what the files of the JetStream queue share (the
 * mapping of the interface onto JetStream is in cluster/jsqueue.h). Only
 * files under cluster/jsqueue/ include it.
 *
 *   open.c       the table of calls (queue_ops), open and close
 *   streams.c    topic names, streams, their retention limits and figures
 *   publish.c    publishing, dead letters included (settle.c makes their job)
 *   subscribe.c  subscriptions: their consumers, pullers and lifetime
 *   pull.c       the puller threads: fetching; leasing what they fetched
 *   settle.c     ack, nack, release, dead letter; the attempts bucket
 *   read.c       reading and redriving stored messages
 *   topics.c     a topic's figures; delete, purge, retention
 *   refresh.c    every second: the cluster's streams, their figures
 *   confirm.c    acks and terms sent again until the consumer's leader has them
 *   trim.c       every few seconds, on a thread of its own: what every trigger
 *                has settled deleted from the streams
 *   skipped.c    an ordered part's mark (its last settled message), and the
 *                messages JetStream delivered and forgot below a delivery
 *
 * Threads. The loop owns every structure below. Blocking NATS calls run on
 * the cluster's worker thread (cluster_run): a *_work function there touches
 * only its job (and the NATS context), which its *_done gets back on the
 * loop. A subscription's puller threads (one per consumer) read its parts,
 * want and stop, and hand what they fetch to the loop (cluster_post). The
 * trimmer thread reads only the NATS context and its own fields (trim_*).
 * Nothing else crosses threads.
 */
#ifndef SPATE_JSQUEUE_INTERNAL_H
#define SPATE_JSQUEUE_INTERNAL_H

#include <nats/nats.h>
#include <pthread.h>

#include "cluster/jsqueue.h"
#include "common/limits.h"
#include "common/list.h"
#include "common/strmap.h"

#define PARTS_MAX (SPATE_JS_KEY_PARTS + 1) /* the key parts and the unkeyed one */
/* A message's record in the attempts bucket: "<stream>.<consumer>.<seq>". */
#define KV_KEY_CAP (SPATE_TOPIC_NAME_MAX * 3 + SPATE_NAME_MAX + 48)

typedef struct jtopic {
    list_node link;
    char name[SPATE_TOPIC_NAME_MAX + 1];
    char stream[SPATE_TOPIC_NAME_MAX * 3 + 16];
    char subject[SPATE_TOPIC_NAME_MAX * 3 + 16]; /* the base of its subjects */
    int created;                                 /* the stream exists */
    queue_topic_stats stats;
    /* Deleted (here, or its stream went from another node): hidden until a
     * publish or a trigger brings the name back. */
    int gone;
    uint32_t touched;    /* q->refresh_serial when this node last made its stream */
    uint32_t listed;     /* the serial of the last refresh that found its stream */
    queue_retention ret; /* as its stream's description says */
    uint64_t retired_acked, retired_dead; /* of its removed triggers, on this node */
} jtopic;

struct queue_sub {
    const queue_ops *ops; /* first, as queue.h wants */
    list_node link;
    queue *q;
    jtopic *topic;
    queue_sub_config cfg;
    void *user;
    /* One consumer (a plain trigger) or one per key part and one for
     * unkeyed messages (ordered). */
    struct part {
        queue_sub *sub;
        pthread_t thread;
        int running;
        natsSubscription *pull;
        char durable[SPATE_NAME_MAX + 8];
        char filter[SPATE_TOPIC_NAME_MAX * 3 + 32];
        int one_at_a_time;
        /* Its puller's: the stream's creation (an ordered part's marks
         * name it, skipped.c), read again when the consumer's changes. */
        int64_t stream_ns, consumer_ns;
        /* Its puller's: what waits in nats.c's queue for its subscription
         * came at or after this (monotonic ms; pull.c). */
        uint64_t queue_floor_ms;
    } parts[PARTS_MAX];
    int nparts;
    int started;      /* its pullers run */
    _Atomic int want; /* messages the trigger has room for */
    pthread_mutex_t wake_lock;
    pthread_cond_t wake; /* want went up: pullers fetch at once */
    _Atomic int stop;
    list_node ready;       /* fetched, not yet leased (jlease) */
    queue_sub_stats stats; /* from consumer info, refreshed by the puller */
    uint64_t acked, dead;
    int removed;
    uint32_t leases;   /* out: the struct lives until they are settled */
    _Atomic int posts; /* fetches posted to the loop and not yet seen there */
    int jobs;          /* subscribe, unsubscribe, NAK and dead-letter jobs on the worker thread */
};

/* A job on the worker thread that JetStream refused for now (no leader
 * after a nats-server went) and tries again in SPATE_JS_SETTLE_RETRY_MS,
 * the message it settles kept in progress meanwhile (settle.c). */
typedef struct jretry {
    int again;        /* set by the job's work: to try again */
    int64_t until_ms; /* tries end (SPATE_JS_SETTLE_RETRY_FOR_MS after the first refusal) */
    int timer_in_use; /* closed before the job goes */
    uv_timer_t timer;
    queue *q;
    /* cluster_run, or cluster_run_settle for the attempts bucket's records */
    void (*run)(cluster *c, cluster_fn work, cluster_fn done, void *arg);
    cluster_fn work, done;
    void *job;
} jretry;

typedef struct jlease {
    queue_lease l;
    queue_msg m;
    list_node link;
    natsMsg *nm;
    uint32_t failed;   /* attempts that failed before this delivery */
    int64_t stored_ns; /* when JetStream stored it: with m.seq, the message (attempts_key) */
    struct part *pt;   /* the consumer it came from */
    /* An ordered part's: its stream's creation and its mark's revision
     * when delivered (skipped.c), for the mark raised before the ack. */
    int64_t created_ns;
    uint64_t mark_rev;
    uint64_t asked_ms; /* monotonic: when the fetch that got it was asked for */
    char key[SPATE_KEY_MAX + 1];
    queue_attrs attrs; /* m.attrs when it has some: strings in nm's headers */
} jlease;

/* confirm.c: the acks and terms not yet answered (under lock). */
typedef struct jconfirm {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a stop */
    pthread_t thread;
    int running, stop;
    natsSubscription *answers; /* on inbox.* */
    char inbox[64];
    strmap by_id;
    list_node order; /* oldest send first */
    size_t count;
    uint64_t next_id;
} jconfirm;

struct queue {
    const queue_ops *ops; /* first */
    uv_loop_t *loop;
    cluster *c;
    jsCtx *js;
    int replicas;
    queue_events ev;
    list_node topics;
    strmap by_name; /* the topics by name (borrowed: jtopic.name) */
    list_node subs;
    int closing;
    uv_timer_t refresh;      /* every topic of the cluster, and its figures */
    int refreshing;          /* a refresh is on the worker thread */
    uint32_t refresh_serial; /* refreshes started: what a refresh saw is as of then */
    uint32_t deletions;      /* topics deleted here: a refresh started before does not
                                bring them back */
    int zombies;             /* subscriptions removed but not yet freed */
    /* Publishes (dead letters too), reads and topic changes on the worker
     * thread: each reads q there and comes back to the loop; the queue is
     * freed only after the last (a publish in flight at a stop wrote into
     * the freed queue: ASan). */
    uint32_t jobs_out;
    int closed;
    /* The trimmer (trim.c): started at open, stopped (joined) at close. */
    pthread_t trimmer;
    int trimming; /* it runs */
    pthread_mutex_t trim_lock;
    pthread_cond_t trim_wake; /* a stop */
    _Atomic int trim_stop;
    jconfirm confirm;
    /* settle.c: failure records wait for the attempts bucket until then
     * (clock_now_ms) after a refusal; the settle thread's */
    int64_t attempts_refused_until_ms;
    int async_published; /* worker thread: js_PublishMsgAsync has worked once */
    /* skipped.c: when the nodes began to keep marks (0: not read yet), set
     * by a refresh, a puller or the trimmer (the same value: a race is
     * harmless), and when the trimmer last wrote it again. */
    _Atomic int64_t marks_since_ns;
    int64_t marks_since_kept_ns;
    void (*close_cb)(void *data);
    void *close_data;
};

/* A topic's retention lives in its stream's description (replicated with the
 * stream, seen by every node's refresh) and is put in force as the stream's
 * JetStream limits only while no consumer reads the stream: JetStream's
 * limits drop the oldest messages whoever has yet to read them, and a trigger
 * must never lose a message it has not settled. */
#define RETENTION_FMT "spate retention: max_age_ms=%llu max_bytes=%llu max_messages=%llu"

typedef struct pub_job {
    queue *q;
    jtopic *topic; /* lives as long as the queue */
    char stream[SPATE_TOPIC_NAME_MAX * 3 + 16];
    char subject[SPATE_TOPIC_NAME_MAX * 3 + 16];
    buf body;
    queue_input *in;
    size_t n;
    /* The part of in being published: a batch goes in parts of
     * SPATE_JS_PUBLISH_PART messages, each a job of the worker thread of its
     * own, so that one huge batch does not hold up every other publish,
     * read and change of the node until it is all stored. */
    size_t first, count;
    /* When some input wants its seq (queue_input.seq): every message's,
     * and the messages as published, to match JetStream's answers. */
    uint64_t *seqs;
    const void **msgs;
    char *extra; /* owned: the inputs' attributes and refusals (queue_inputs_own_extras) */
    /* Dead letters: the source, its error and attempts, as headers. */
    char source[SPATE_TOPIC_NAME_MAX + 1];
    char *error;
    uint32_t attempts;
    natsMsg *term;   /* terminated once the dead letter is stored */
    int termed;      /* its record written and term sent (settle thread) */
    int terming;     /* stored: its term (record, mark) is what retry tries again */
    queue_sub *hold; /* term's subscription, kept (its jobs) until done */
    /* A dead letter's Nats-Msg-Id, where it failed, and its key in the
     * attempts bucket ("+TERM" once stored). */
    char dead_id[KV_KEY_CAP + 24];
    char dead_key[KV_KEY_CAP];
    int64_t stored_ns;
    /* An ordered part's dead letter: its mark raised to dead_seq before the
     * term (skipped.c); mark_key empty otherwise. */
    char mark_key[KV_KEY_CAP];
    uint64_t dead_seq, mark_rev;
    int64_t created_ns;
    jretry retry;      /* a dead letter JetStream refused, tried again */
    int stream_seen;   /* topic->created when queued: not asked for first */
    uint32_t stored;   /* of the batch, not duplicates (JetStream's acks) */
    uint64_t last_seq; /* the highest stream seq they gave */
    queue_publish_cb done;
    void *data;
    int status;
    char err[512];
} pub_job;

extern const queue_ops jsqueue__ops;

/* --- Loop thread unless said ----------------------------------------------------------- */

/* streams.c */
void jsqueue__stream_name(const char *topic, char *out, size_t cap);
/* The topic called name; NULL if unknown or deleted, unless create (NULL
 * then only without memory). Lives as long as the queue. */
jtopic *jsqueue__topic_of(queue *q, const char *name, int create);
void jsqueue__parse_retention(const char *description, queue_retention *out);
/* Worker thread (stream_stats: or a puller). */
natsStatus jsqueue__ensure_stream(queue *q, const char *stream, const char *subject);
natsStatus jsqueue__apply_limits(queue *q, jsStreamInfo *si, int consumers);
natsStatus jsqueue__lift_limits(queue *q, const char *stream);
int jsqueue__stream_stats(queue *q, const char *stream, queue_topic_stats *out);

/* settle.c: a job whose work set r->again is put on the worker thread again
 * (1) unless the queue closes (0); the job freed (as free) once its timer is. */
int jsqueue__retry_later(jretry *r, queue *q,
                         void (*run)(cluster *c, cluster_fn work, cluster_fn done, void *arg),
                         cluster_fn work, cluster_fn done, void *job);
/* Worker thread: whether a refused job may try again (the first refusal
 * starts SPATE_JS_SETTLE_RETRY_FOR_MS). */
int jsqueue__retry_allowed(jretry *r);
void jsqueue__retry_free(jretry *r, void *job);

/* publish.c: a job from new_pub runs as cluster_run(c, publish_work,
 * publish_done, j), which frees it. topic_msg and await_acks: worker thread. */
pub_job *jsqueue__new_pub(queue *q, const char *topic);
void jsqueue__publish_work(void *arg);
void jsqueue__publish_done(void *arg);
natsStatus jsqueue__topic_msg(natsMsg **m, const char *base, const queue_input *in,
                              const char *when);
/* The attributes among m's headers into *out (strings borrowed from m):
 * out, or NULL when it has none. */
const queue_attrs *jsqueue__msg_attrs(natsMsg *m, queue_attrs *out);
natsStatus jsqueue__publish_async(queue *q, natsMsg **m);
natsStatus jsqueue__await_acks(queue *q, cluster_acks *a, char *err, size_t cap);
void jsqueue__publish(queue *q, const char *topic, buf *body, const queue_input *in, size_t n,
                      queue_publish_cb done, void *data);

/* subscribe.c */
int jsqueue__subscribe(queue *q, const char *topic, const queue_sub_config *cfg, queue_done_cb done,
                       void *data);
int jsqueue__unsubscribe(queue *q, const char *topic, const char *function, queue_done_cb done,
                         void *data);
queue_sub *jsqueue__find_sub(queue *q, const char *topic, const char *function);
void jsqueue__each_sub(queue *q, void (*cb)(queue_sub *sub, void *data), void *data);
const queue_sub_config *jsqueue__sub_config(const queue_sub *s);
const char *jsqueue__sub_topic(const queue_sub *s);
void jsqueue__sub_set_data(queue_sub *s, void *data);
void *jsqueue__sub_data(const queue_sub *s);
void jsqueue__sub_stats(const queue_sub *s, queue_sub_stats *out);
/* Frees a removed subscription once nothing refers to it. */
void jsqueue__sub_maybe_free(queue_sub *s);
void jsqueue__stop_puller(queue_sub *s);
void jsqueue__give_back_ready(queue_sub *s);

/* pull.c: puller_main is a puller thread's (arg: its struct part). */
void *jsqueue__puller_main(void *arg);
queue_lease *jsqueue__lease(queue_sub *s);

/* settle.c (attempts_key: any thread). A message's key in the attempts
 * bucket: "<stream>.<consumer>.<seq>". A settled record says when its
 * message was stored ("+ACK <ns>", "+TERM <ns>"), so that a topic deleted
 * and made again (its seqs from 1 again) is not settled by an old one. */
void jsqueue__attempts_key(char *out, size_t cap, const queue_sub *s, const struct part *pt,
                           uint64_t seq);
void jsqueue__ack(queue_lease *l);
void jsqueue__nack(queue_lease *l, uint32_t delay_ms, const char *error);
void jsqueue__release(queue_lease *l);
void jsqueue__touch(queue_lease *l);
void jsqueue__dead_letter(queue_lease *l, const char *error);

/* read.c */
int jsqueue__read(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_read_cb cb,
                  void *data);
int jsqueue__redrive(queue *q, const char *topic, uint64_t after, uint32_t limit,
                     queue_redrive_cb cb, void *data);

/* topics.c */
int jsqueue__topic_stats(queue *q, const char *topic, queue_topic_stats *out);
void jsqueue__each_topic(queue *q, void (*cb)(const char *topic, void *data), void *data);
int jsqueue__topics_after(queue *q, const char *after, int (*cb)(const char *topic, void *data),
                          void *data);
uint32_t jsqueue__topic_count(const queue *q);
void jsqueue__each_sub_of(queue *q, const char *topic, void (*cb)(queue_sub *sub, void *data),
                          void *data);
int jsqueue__topic_delete(queue *q, const char *topic, queue_count_cb done, void *data);
int jsqueue__topic_purge(queue *q, const char *topic, queue_count_cb done, void *data);
int jsqueue__topic_retention(queue *q, const char *topic, const queue_retention *r,
                             queue_done_cb done, void *data);

/* refresh.c: the timer's callback. */
void jsqueue__on_refresh(uv_timer_t *h);

/* trim.c: the trimmer thread started (0, or -1 without a thread: then
 * nothing is trimmed) and stopped (waits for the request in flight: a
 * JetStream call's wait, 2 s, or a deletion's, SPATE_JS_TRIM_WAIT_MS; the
 * round ends at the next request). trim_keep (any thread, pure): the
 * first sequence of a stream one of its consumers (list, n of them) may still
 * want, 0 when there is none: below it every consumer has settled
 * everything. A consumer with nothing unacknowledged has settled all it has
 * looked at (Delivered.Stream: its filter's messages delivered and
 * acknowledged, the others passed over); otherwise all up to its ack floor.
 * Never the stream's last message by a consumer's NumPending of 0: a
 * consumer led by a replica still catching up (a nats-server restarted)
 * counts its pending messages against its own stale copy of the stream.
 * Both figures are the consumer's replicated state and cover only messages
 * it has seen. */
/* confirm.c: started at open (-1: acks are sent as nats.c does, unconfirmed),
 * stopped at close. confirm (any thread): nm's ack or term ("+ACK",
 * "+TERM"), sent until JetStream answers; nm may go at once. */
int jsqueue__confirm_start(queue *q);
void jsqueue__confirm_stop(queue *q);
void jsqueue__confirm(queue *q, natsMsg *nm, const char *body);
/* confirm.c (loop): an ordered part's ack sent once its mark is raised to
 * seq (skipped.c): the mark's write goes at once, its answer sends the ack,
 * so that marks of many parts are on the way together. -1: not taken
 * (closing, too many waiting): then nothing is sent. */
int jsqueue__confirm_after_mark(queue *q, natsMsg *nm, const char *mark_key, uint64_t seq,
                                int64_t created_ns, uint64_t rev);

/* streams.c (any thread): the first message of subject at or after seq, as
 * the stream's leader has it (*found 0: none). */
natsStatus jsqueue__next_of_subject(queue *q, const char *stream, const char *subject, uint64_t seq,
                                    uint64_t *found);

/* skipped.c: an ordered part's mark, the highest stream sequence of its
 * subject settled (the attempts bucket's "<stream>.<consumer>.settled"),
 * and the messages JetStream skipped below a delivery. mark_key: any
 * thread. mark_read (puller or trimmer thread): OK also when there is none
 * (rev 0). mark_raise (settle thread): to seq unless another node raised it
 * as far, given the revision read at the delivery (0: none); OK without a
 * write when the stream created at created_ns is gone (deleted, or made
 * again: the mark then is the new stream's). replay_skipped
 * (puller thread): for a delivery of seq by ordered part pt whose mark is
 * mark, publishes again each message of pt's subject between them stored
 * at or after since_ns; 1: seq may run; 0: unknown (no answer, or a publish
 * failed): seq must wait; the mark (rev, of created_ns's stream) raised
 * past each published again. unmarked_since_ns (puller or trimmer thread):
 * without a mark of its stream, a part has settled nothing stored since
 * then: its mark counts as 0, since then; -1: unknown (no answer). Also
 * on the worker thread (a refresh: read at start).
 * keep_marks_since (trimmer thread): that time's record kept from the
 * bucket's TTL. next_unsettled (any thread): next_of_subject's
 * first message stored at or after since_ns (0: any), 0 in *found past
 * SPATE_JS_SKIPPED_MAX older ones. */
typedef struct jmark {
    uint64_t seq;
    int64_t created_ns; /* its stream's creation: a mark of another is none */
    uint64_t rev;       /* the record's revision, 0: there is none */
} jmark;
void jsqueue__mark_key(char *out, size_t cap, const char *stream, const char *consumer);
/* Whether mk is a mark of the stream created at stream_ns (any thread). */
int jsqueue__mark_is_of(const jmark *mk, int64_t stream_ns);
natsStatus jsqueue__mark_read(queue *q, const char *key, jmark *out);
natsStatus jsqueue__mark_raise(queue *q, const char *key, uint64_t seq, int64_t created_ns,
                               uint64_t rev);
int jsqueue__replay_skipped(queue *q, const char *stream, const struct part *pt, uint64_t mark,
                            uint64_t seq, int64_t since_ns, int64_t created_ns, uint64_t rev);
int64_t jsqueue__unmarked_since_ns(queue *q);
void jsqueue__keep_marks_since(queue *q);
natsStatus jsqueue__next_unsettled(queue *q, const char *stream, const char *subject, uint64_t seq,
                                   int64_t since_ns, uint64_t *found);

int jsqueue__trim_start(queue *q);
void jsqueue__trim_stop(queue *q);
uint64_t jsqueue__trim_keep(jsConsumerInfo *const *list, int n);

/* open.c: close ends once no refresh runs and every removed subscription is
 * freed; those call finish_close again. */
void jsqueue__set_events(queue *q, const queue_events *ev);
void jsqueue__close(queue *q, void (*cb)(void *data), void *data);
void jsqueue__finish_close(queue *q);
/* A publish, read or topic change to the worker thread, counted in
 * jobs_out until its done calls job_done (the loop). */
void jsqueue__run_job(queue *q, cluster_fn work, cluster_fn done, void *job);
void jsqueue__job_done(queue *q);

#endif
