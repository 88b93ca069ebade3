/*
 * internal.h - the queue of one node on SQLite (store/sqlqueue.h), shared by
 * the files of src/store/queue/ and by nothing else.
 *
 * The log of each topic is in the store's database, written by the
 * group-committing writer thread (store/writer.h); the working set is in
 * memory. A topic is an append-only log of messages numbered 1, 2, ... Each
 * subscription (one per trigger) tracks its own progress:
 *   ready    committed messages in memory, not yet leased, in order (memory.c);
 *   leased   handed to the scheduler and not yet settled (lease.c);
 *   retry    failed, visible again at a time, attempts counted (memory.c, lease.c);
 *   lagging  committed but only in the store, fetched in chunks when ready runs
 *            low (fetch.c).
 * A message published with a delay (queue_msg.visible_ms, its own column)
 * skips ready: on its way there (sq_ready_push, from a publish or a fetch)
 * it becomes a retry at attempt 0 due at its time, with a retry row like any
 * other, so that the cursor may pass it; a restart reloads it from that row,
 * or, had the row not been committed yet, meets it again on the way to
 * ready (the cursor was not saved past it either: the writer keeps order).
 * A message is removed from the store once every subscription has settled it
 * (state.c trims), or by purge, deletion or retention (admin.c).
 *
 * Durability: a publish completes after its commit (publish.c). A
 * subscription's progress (the first message not yet leased, and the leased
 * set) is saved in every commit after it changes (state.c), so after a crash
 * only messages that were leased (in flight) or not yet leased are delivered
 * again; retries keep their own rows (lease.c).
 *
 * Threads: everything here runs on the loop thread but the apply and read
 * callbacks of writer operations (wop), which run on the writer thread and
 * touch only their op and the SQLite connection they are given.
 *
 * Ownership: the queue owns its topics; a topic its subscriptions; a block
 * the bytes of its messages, freed when its last message is unreferenced
 * (ready ring, leases, retries). A subscription lives while it is subscribed
 * or has leases or operations out (refs).
 */
#ifndef SPATE_QUEUE_INTERNAL_H
#define SPATE_QUEUE_INTERNAL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/list.h"
#include "common/strmap.h"
#include "store/queue.h"
#include "store/store.h"
#include "store/writer.h"

typedef struct sq_block sq_block;
typedef struct sq_topic sq_topic;

/* A message as this queue holds it: what the consumer reads first. */
typedef struct sq_msg {
    queue_msg m;
    uint32_t refs; /* the ready ring, leases and reads that hold it */
    sq_block *block;
    /* A publish's deduplication id (queue_input.dedup, into the block's
     * bytes), written with the message; NULL for every other message. */
    const char *dedup;
    int64_t dedup_until_ms;
} sq_msg;

static inline sq_msg *sq_msg_of(const queue_msg *m)
{
    return (sq_msg *)m;
}

/* The saved state of a message delivered again after a restart: its runs
 * so far, when it may run next, its last error, whether it has a retry row. */
typedef struct sq_saved {
    uint64_t seq;
    uint32_t attempts;
    int64_t visible_ms;
    char *error; /* owned */
    int in_table;
} sq_saved;

/* A lease as this queue keeps it: what the consumer reads first. */
typedef struct sq_lease {
    queue_lease base;
    list_node link;     /* in the subscription's leased list */
    int64_t visible_ms; /* retries: when it may run again */
    char *error;        /* retries: the last error */
    uint32_t heap_index;
    unsigned in_retry_table : 1;
    /* In the heap without its retry row (out of memory when it came back):
     * the snapshot counts it as leased, so that a restart delivers it. */
    unsigned unsaved : 1;
} sq_lease;

static inline sq_lease *sq_lease_of(queue_lease *l)
{
    return (sq_lease *)l;
}

/* One allocation holding the bytes of several messages (a published batch,
 * a fetched chunk) and their records; freed when the last message goes. */
struct sq_block {
    uint32_t refs; /* messages still referenced */
    char *mem;     /* owned: the bytes the messages point into */
    char *extra;   /* owned: their attributes and dead-letter fields, NULL if none */
    size_t n;
    sq_msg msgs[];
};

struct sq_topic {
    list_node link;
    queue *q;
    char *name;
    int64_t id;
    int persisted;      /* its row is committed (or in the batch being committed) */
    uint64_t next_seq;  /* next number to give */
    uint64_t committed; /* every seq below is committed or never will be */
    uint64_t published;
    uint64_t stored;
    uint64_t trimmed; /* rows below are deleted (or asked to be) */
    uint64_t bytes;   /* payload and key bytes of the stored messages */
    int64_t oldest_stored_ms;
    list_node subs;
    uint32_t nsubs;
    list_node sub_link; /* in q->sub_topics while nsubs > 0 */
    /* What removed subscriptions had settled (queue_topic_stats.acked). */
    uint64_t retired_acked, retired_dead;
    queue_retention ret;
    int retaining; /* a retention pass is with the writer */
    /* Retention under subscriptions: what was published before this has
     * expired (a fetch still on its way may bring some back: left out). */
    int64_t expired_ms;
    /* Deleted: hidden, and its memory kept (ops in flight point to it) until
     * a publish or a subscription brings the name back. */
    int deleted;
};

struct queue_sub {
    const queue_ops *ops; /* first, as queue.h wants */
    list_node link;       /* in topic->subs */
    queue *q;
    sq_topic *topic;
    int64_t id;
    int persisted;
    queue_sub_config cfg;
    void *user;
    uint32_t refs; /* 1 while subscribed, + leases out */
    int closed;

    /* ready: a ring of committed messages, in seq order */
    queue_msg **ready;
    size_t rhead, rlen, rcap;
    uint64_t ready_bytes;
    uint64_t fetched; /* every seq below is in memory, settled, or absent */
    int lagging;      /* messages from fetched on are only in the store */
    int fetching;
    int64_t lag_oldest_ms;

    list_node leased;
    uint32_t nleased;
    sq_lease **heap; /* retries, earliest visible first */
    uint32_t nheap, heapcap;
    uint64_t retry_bytes;
    uv_timer_t timer;
    int64_t timer_at;

    strmap busy_keys;  /* ordered: keys with a message leased or retrying */
    uint64_t *restore; /* after a restart: reloaded seqs the range fetches skip (sorted) */
    size_t nrestore;
    /* Ordered, after a restart: retries past the saved position. They come
     * back through the range fetches, in publish order behind the earlier
     * messages of their key, and take their state when leased from ready
     * (sorted by seq; sq_saved_find). */
    sq_saved *saved;
    size_t nsaved;
    int dirty;
    list_node dirty_link;
    uint64_t acked, dead_lettered, delivered;
    uint32_t ndelayed; /* in the heap at attempt 0: published with a delay, not yet leased */
};

struct queue {
    const queue_ops *ops; /* first, as queue.h wants */
    uv_loop_t *loop;
    store *st;
    writer *w;
    queue_events ev;
    list_node topics;
    strmap by_name;
    /* The topics that have subscriptions: what each_sub walks, so that it
     * costs the subscriptions, not every topic. */
    list_node sub_topics;
    uint32_t ntopics; /* live (not deleted): what --max-topics bounds */
    int64_t next_topic_id, next_sub_id;
    list_node dirty;
    uv_timer_t retention; /* every SPATE_RETENTION_TICK_MS: topics over their limits */
    int closing;
    int closed_parts; /* the writer stopped, the timer closed: both free q */
    void (*close_cb)(void *);
    void *close_data;
    /* Statements of the writer thread's connection (used only there). */
    sqlite3 *wdb;
    sqlite3_stmt *ins_msg, *ins_msg_attrs, *upd_pub, *upd_sub, *del_msgs, *upsert_retry, *del_retry;
    sqlite3_stmt *ins_dedup, *del_dedup;
    int64_t dedup_pruned_ms; /* writer thread: when expired ids were last deleted */
    sqlite3_stmt *first_pub; /* sq_first_published_cached */
};

typedef struct publish_op {
    wop op;
    queue *q;
    sq_topic *topic;
    sq_block *block;
    uint64_t first;
    int create_topic;
    queue_publish_cb done;
    void *data;
} publish_op;

/* What sq_delete_rows wants back of each row. */
#define RETURNING_BYTES " RETURNING length(payload) + ifnull(length(key), 0)"

/* --- memory.c: blocks, the ready ring, the retry heap, busy keys */
void sq_msg_unref(queue_msg *pm);
sq_block *sq_block_new(size_t n, char *mem);
/* Copies what in[0..n) carry beside their bytes (attributes, a refused
 * message's reason and topic) into b->extra: one allocation, made only when
 * some input has any. ERR_NOMEM. */
int sq_block_take_extras(sq_block *b, const queue_input *in, size_t n);
void sq_block_settle(sq_block *b);
void sq_mark_dirty(queue_sub *s);
void sq_notify(queue_sub *s);
queue_msg *sq_ready_at(const queue_sub *s, size_t i);
int sq_ready_push(queue_sub *s, queue_msg *m);
int sq_ready_insert(queue_sub *s, queue_msg *m);
queue_msg *sq_ready_take(queue_sub *s, size_t pos);
int sq_ready_full(const queue_sub *s);
/* Room for n leases in the heap. A lease is handed out only once there is
 * room for every lease of the subscription (s->refs), so that one coming
 * back (nack, release, a dead letter not moved) always has a place. */
int sq_heap_reserve(queue_sub *s, uint32_t n);
int sq_heap_push(queue_sub *s, sq_lease *l);
/* Frees the retries published before cutoff_ms (their rows deleted too). */
void sq_heap_drop_older(queue_sub *s, int64_t cutoff_ms);
sq_lease *sq_heap_pop(queue_sub *s);
void sq_arm_retry(queue_sub *s);
int sq_key_busy(const queue_sub *s, const queue_msg *m);
/* ERR_NOMEM: not held (the message is not to be leased). */
int sq_key_hold(queue_sub *s, queue_msg *m);
void sq_key_free(queue_sub *s, queue_msg *m);

/* --- rows.c: writer thread: SQL the files share */
int sq_insert_topic(sqlite3 *db, const sq_topic *t);
int sq_delete_rows(sqlite3_stmt *st, uint64_t *rows, uint64_t *bytes);
int64_t sq_first_published(sqlite3 *db, int64_t topic_id);
/* The same with q's statement, for the trim after each settled batch. */
int64_t sq_first_published_cached(queue *q, sqlite3 *db, int64_t topic_id);
int sq_read_rows(sqlite3_stmt *st, uint32_t limit, sq_block **out, uint32_t *count);
extern const char
    *const sq_select_rows; /* SELECT ... FROM messages: the columns sq_read_rows wants */
int sq_exec_topic(sqlite3 *db, const char *sql, int64_t topic_id);

/* --- publish.c: numbering, inserting, fanning out */
int sq_apply_publish(sqlite3 *db, wop *op);
void sq_done_publish(wop *op, int status);
sq_topic *sq_topic_get(queue *q, const char *name, int create);
void sq_submit_messages(queue *q, sq_topic *t, sq_block *b, queue_publish_cb done, void *data);
void sq_publish(queue *q, const char *topic, buf *body, const queue_input *in, size_t n,
                queue_publish_cb done, void *data);

/* --- state.c: each subscription's saved state; trimming; counters of removed ones */
void sq_forget_rows(sq_topic *t, uint64_t rows, uint64_t bytes, int64_t oldest_ms);
void sq_maybe_trim(queue *q, sq_topic *t);
void sq_presubmit(void *data);
void sq_retire_counts(queue *q, sq_topic *t, uint64_t acked, uint64_t dead);
int sq_cmp_u64(const void *a, const void *b);
int sq_restore_sub(queue *q, queue_sub *s, const void *leased, int leased_len);
/* The saved state of message seq in s->saved, or NULL. */
sq_saved *sq_saved_find(queue_sub *s, uint64_t seq);
/* Removes sv from s->saved (its error freed, unless taken: NULL). */
void sq_saved_forget(queue_sub *s, sq_saved *sv);
void sq_saved_free(queue_sub *s);

/* --- fetch.c: lagging subscriptions read the next chunk */
void sq_maybe_fetch(queue_sub *s);

/* --- lease.c: lease, ack, nack, release, dead letter */
queue_lease *sq_lease_next(queue_sub *s);
void sq_submit_retry(sq_lease *l, const char *error);
/* Deletes the retry rows of s->saved, and forgets them (purge). */
void sq_drop_saved(queue_sub *s);
void sq_lease_free(sq_lease *l);
void sq_ack(queue_lease *ql);
void sq_nack(queue_lease *ql, uint32_t delay_ms, const char *error);
void sq_release(queue_lease *ql);
void sq_dead_letter(queue_lease *ql, const char *error);

/* --- subs.c: subscriptions and figures */
void sq_sub_unref(queue_sub *s);
queue_sub *sq_sub_new(queue *q, sq_topic *t, const queue_sub_config *cfg);
int sq_subscribe(queue *q, const char *topic, const queue_sub_config *cfg, queue_done_cb done,
                 void *data);
int sq_unsubscribe(queue *q, const char *topic, const char *function, queue_done_cb done,
                   void *data);
queue_sub *sq_find_sub(queue *q, const char *topic, const char *function);
void sq_each_sub(queue *q, void (*cb)(queue_sub *sub, void *data), void *data);
const queue_sub_config *sq_sub_config(const queue_sub *s);
const char *sq_sub_topic(const queue_sub *s);
void sq_sub_set_data(queue_sub *s, void *data);
void *sq_sub_data(const queue_sub *s);
void sq_sub_stats(const queue_sub *s, queue_sub_stats *out);
int sq_topic_stats(queue *q, const char *topic, queue_topic_stats *out);
void sq_each_topic(queue *q, void (*cb)(const char *topic, void *data), void *data);
int sq_topics_after(queue *q, const char *after, int (*cb)(const char *topic, void *data),
                    void *data);
uint32_t sq_topic_count(const queue *q);
void sq_each_sub_of(queue *q, const char *topic, void (*cb)(queue_sub *sub, void *data),
                    void *data);

int sq_dedup_each(queue *q, queue_dedup_cb cb, void *data);

/* --- read.c: reading topics, redriving dead letters */
int sq_read(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_read_cb cb,
            void *data);
int sq_redrive(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_redrive_cb cb,
               void *data);

/* --- admin.c: deletion, purge, retention */
int sq_topic_delete(queue *q, const char *topic, queue_count_cb done, void *data);
int sq_topic_purge(queue *q, const char *topic, queue_count_cb done, void *data);
void sq_retention_tick(uv_timer_t *h);
int sq_topic_retention(queue *q, const char *topic, const queue_retention *r, queue_done_cb done,
                       void *data);

/* --- open.c: opening, closing, the table of operations */
extern const queue_ops sq_ops;

#endif
