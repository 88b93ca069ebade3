/* subs.c - the SQLite queue: subscriptions: adding, reconfiguring, removing, finding; their figures
 * and the topics'. */
#include "store/queue/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "store/sql.h"

typedef struct sub_op {
    wop op;
    queue *q;
    queue_sub *sub;
    int64_t topic_id;
    sq_topic *topic;
    int create_topic;
    int remove;
    queue_sub_config cfg;
    queue_done_cb done;
    void *data;
} sub_op;

static void on_timer_closed(uv_handle_t *h)
{
    queue_sub *s = h->data;
    free(s->ready);
    free(s->heap);
    free(s->restore);
    sq_saved_free(s);
    strmap_free(&s->busy_keys);
    free(s);
}

void sq_sub_unref(queue_sub *s)
{
    if (--s->refs > 0) return;
    while (s->rlen) sq_msg_unref(sq_ready_take(s, 0));
    while (s->nheap) {
        sq_lease *l = sq_heap_pop(s);
        sq_msg_unref(l->base.msg);
        free(l->error);
        free(l);
    }
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

queue_sub *sq_sub_new(queue *q, sq_topic *t, const queue_sub_config *cfg)
{
    queue_sub *s = calloc(1, sizeof *s);
    if (s) s->ops = &sq_ops;
    if (!s) return NULL;
    s->q = q;
    s->topic = t;
    s->cfg = *cfg;
    s->refs = 1;
    s->fetched = t->trimmed;
    s->lagging = 1;
    list_init(&s->leased);
    list_init(&s->dirty_link);
    strmap_init(&s->busy_keys);
    uv_timer_init(q->loop, &s->timer);
    s->timer.data = s;
    list_push_back(&t->subs, &s->link);
    if (t->nsubs++ == 0) list_push_back(&q->sub_topics, &t->sub_link);
    return s;
}

static int apply_sub(sqlite3 *db, wop *op)
{
    sub_op *o = (sub_op *)op;
    int rc = SQLITE_OK;
    if (o->create_topic) rc = sq_insert_topic(db, o->topic);
    if (rc != SQLITE_OK) return rc;
    sqlite3_stmt *st;
    if (o->remove) {
        rc = sqlite3_prepare_v2(db, "DELETE FROM subscriptions WHERE id = ?", -1, &st, NULL);
        if (rc != SQLITE_OK) return rc;
        sqlite3_bind_int64(st, 1, o->sub->id);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return rc;
        rc = sqlite3_prepare_v2(db, "DELETE FROM retries WHERE sub_id = ?", -1, &st, NULL);
        if (rc != SQLITE_OK) return rc;
        sqlite3_bind_int64(st, 1, o->sub->id);
    } else {
        rc = sqlite3_prepare_v2(
            db,
            "INSERT INTO subscriptions (id, topic_id, function, max_attempts, dlq, ordered,"
            " deadline_ms, max_concurrency, created_ms, cursor, leased, batch_size,"
            " batch_window_ms, event_format, report_failures, qualifier, paused, modified_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, x'', ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE"
            " SET max_attempts = excluded.max_attempts, dlq = excluded.dlq,"
            " ordered = excluded.ordered, deadline_ms = excluded.deadline_ms,"
            " max_concurrency = excluded.max_concurrency, batch_size = excluded.batch_size,"
            " batch_window_ms = excluded.batch_window_ms,"
            " event_format = excluded.event_format,"
            " report_failures = excluded.report_failures, qualifier = excluded.qualifier,"
            " paused = excluded.paused, modified_ms = excluded.modified_ms",
            -1, &st, NULL);
        if (rc != SQLITE_OK) return rc;
        sqlite3_bind_int64(st, 1, o->sub->id);
        sqlite3_bind_int64(st, 2, o->topic_id);
        sqlite3_bind_text(st, 3, o->cfg.function, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, o->cfg.max_attempts);
        sqlite3_bind_text(st, 5, o->cfg.dlq, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, o->cfg.ordered);
        sqlite3_bind_int64(st, 7, o->cfg.deadline_ms);
        sqlite3_bind_int64(st, 8, o->cfg.max_concurrency);
        sqlite3_bind_int64(st, 9, clock_now_ms());
        sqlite3_bind_int64(st, 10, (sqlite3_int64)o->sub->fetched);
        sqlite3_bind_int64(st, 11, o->cfg.batch_size);
        sqlite3_bind_int64(st, 12, o->cfg.batch_window_ms);
        sqlite3_bind_int(st, 13, o->cfg.event_format);
        sqlite3_bind_int(st, 14, o->cfg.report_failures);
        sqlite3_bind_text(st, 15, o->cfg.qualifier, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 16, o->cfg.paused);
        sqlite3_bind_int64(st, 17, o->cfg.modified_ms);
    }
    return sql_step_finalize(st);
}

static void done_sub(wop *op, int status)
{
    sub_op *o = (sub_op *)op;
    queue_sub *s = o->sub;
    if (!o->remove) {
        if (status == 0) {
            s->persisted = 1;
            sq_maybe_fetch(s);
            sq_notify(s);
        } else if (o->create_topic) {
            o->topic->persisted = 0;
        }
    }
    if (o->done) o->done(o->data, status);
    sq_sub_unref(s);
    free(o);
}

static queue_sub *find_sub(sq_topic *t, const char *function)
{
    for (list_node *n = t ? list_first(&t->subs) : NULL; t && n != &t->subs; n = n->next) {
        queue_sub *s = list_entry(n, queue_sub, link);
        if (strcmp(s->cfg.function, function) == 0) return s;
    }
    return NULL;
}

int sq_subscribe(queue *q, const char *topic, const queue_sub_config *cfg, queue_done_cb done,
                 void *data)
{
    if (q->closing) return ERR_CLOSED;
    sq_topic *t = sq_topic_get(q, topic, 1);
    if (!t) return ERR_NOMEM;
    queue_sub *s = find_sub(t, cfg->function);
    int created = 0;
    if (!s) {
        if (!(s = sq_sub_new(q, t, cfg))) return ERR_NOMEM;
        s->id = q->next_sub_id++;
        created = 1;
    } else {
        int was_ordered = s->cfg.ordered;
        s->cfg = *cfg;
        if (was_ordered && !cfg->ordered) strmap_free(&s->busy_keys);
    }
    sub_op *o = calloc(1, sizeof *o);
    if (!o) {
        if (created) {
            list_remove(&s->link);
            if (--t->nsubs == 0) list_remove(&t->sub_link);
            sq_sub_unref(s);
        }
        return ERR_NOMEM;
    }
    o->q = q;
    o->sub = s;
    o->topic = t;
    o->topic_id = t->id;
    o->create_topic = !t->persisted;
    t->persisted = 1;
    o->cfg = *cfg;
    o->done = done;
    o->data = data;
    o->op.apply = apply_sub;
    o->op.done = done_sub;
    s->refs++;
    writer_submit(q->w, &o->op);
    return 0;
}

int sq_unsubscribe(queue *q, const char *topic, const char *function, queue_done_cb done,
                   void *data)
{
    sq_topic *t = sq_topic_get(q, topic, 0);
    queue_sub *s = find_sub(t, function);
    if (!s) return ERR_NOTFOUND;
    sub_op *o = calloc(1, sizeof *o);
    if (!o) return ERR_NOMEM;
    s->closed = 1;
    list_remove(&s->link);
    if (--t->nsubs == 0) list_remove(&t->sub_link);
    if (s->dirty) {
        list_remove(&s->dirty_link);
        s->dirty = 0;
    }
    /* Its counters stay the topic's; what it alone held back may go now. */
    sq_retire_counts(q, t, s->acked, s->dead_lettered);
    sq_maybe_trim(q, t);
    uv_timer_stop(&s->timer);
    /* What waits is dropped; leases still out settle into nothing. */
    while (s->rlen) sq_msg_unref(sq_ready_take(s, 0));
    while (s->nheap) sq_lease_free(sq_heap_pop(s));
    o->q = q;
    o->sub = s;
    o->topic = t;
    o->remove = 1;
    o->done = done;
    o->data = data;
    o->op.apply = apply_sub;
    o->op.done = done_sub;
    writer_submit(q->w, &o->op);
    /* The queue's own reference goes now; done_sub holds the op's one (the
     * subscription's reference passes to the op). */
    return 0;
}

queue_sub *sq_find_sub(queue *q, const char *topic, const char *function)
{
    return find_sub(sq_topic_get(q, topic, 0), function);
}

static void each_sub_of(sq_topic *t, void (*cb)(queue_sub *sub, void *data), void *data)
{
    for (list_node *m = list_first(&t->subs); m != &t->subs;) {
        queue_sub *s = list_entry(m, queue_sub, link);
        m = m->next;
        cb(s, data);
    }
}

void sq_each_sub(queue *q, void (*cb)(queue_sub *sub, void *data), void *data)
{
    for (list_node *n = list_first(&q->sub_topics); n != &q->sub_topics;) {
        sq_topic *t = list_entry(n, sq_topic, sub_link);
        n = n->next; /* cb may remove the topic's last subscription */
        each_sub_of(t, cb, data);
    }
}

void sq_each_sub_of(queue *q, const char *topic, void (*cb)(queue_sub *sub, void *data), void *data)
{
    sq_topic *t = strmap_get(&q->by_name, topic, strlen(topic));
    if (t) each_sub_of(t, cb, data);
}

const queue_sub_config *sq_sub_config(const queue_sub *s)
{
    return &s->cfg;
}

const char *sq_sub_topic(const queue_sub *s)
{
    return s->topic->name;
}

void sq_sub_set_data(queue_sub *s, void *data)
{
    s->user = data;
}

void *sq_sub_data(const queue_sub *s)
{
    return s->user;
}

/* --- Stats ---------------------------------------------------------------------------- */

void sq_sub_stats(const queue_sub *s, queue_sub_stats *out)
{
    memset(out, 0, sizeof *out);
    uint64_t lag = s->topic->committed > s->fetched ? s->topic->committed - s->fetched : 0;
    out->depth = lag + s->rlen + s->nleased + s->nheap;
    out->leased = s->nleased;
    out->retrying = s->nheap;
    out->delayed = s->ndelayed;
    out->acked = s->acked;
    out->dead_lettered = s->dead_lettered;
    out->delivered = s->delivered;
    int64_t oldest = 0;
#define OLDER(ms)                                                                                  \
    if ((ms) && (!oldest || (ms) < oldest)) oldest = (ms)
    /* The ready ring's head is its oldest by publish; one further back
     * upstream is not looked for among the rest (a tick must stay cheap). */
    if (s->rlen) OLDER(queue_msg_since_ms(sq_ready_at(s, 0)));
    if (lag) OLDER(s->lag_oldest_ms);
    for (list_node *n = list_first(&s->leased); n != &s->leased; n = n->next)
        OLDER(queue_msg_since_ms(list_entry(n, sq_lease, link)->base.msg));
    for (uint32_t i = 0; i < s->nheap; i++) OLDER(queue_msg_since_ms(s->heap[i]->base.msg));
#undef OLDER
    out->oldest_ms = oldest;
}

int sq_topic_stats(queue *q, const char *topic, queue_topic_stats *out)
{
    sq_topic *t = sq_topic_get(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    memset(out, 0, sizeof *out);
    out->published = t->published;
    out->stored = t->stored;
    out->bytes = t->bytes;
    out->subscriptions = t->nsubs;
    out->oldest_ms = t->stored ? t->oldest_stored_ms : 0;
    out->acked = t->retired_acked;
    out->dead_lettered = t->retired_dead;
    out->retention = t->ret;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next) {
        queue_sub_stats ss;
        sq_sub_stats(list_entry(n, queue_sub, link), &ss);
        out->acked += ss.acked;
        out->dead_lettered += ss.dead_lettered;
        if (ss.oldest_ms && (!out->oldest_ms || ss.oldest_ms > out->oldest_ms))
            out->oldest_ms = ss.oldest_ms;
    }
    return 0;
}

void sq_each_topic(queue *q, void (*cb)(const char *topic, void *data), void *data)
{
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        sq_topic *t = list_entry(n, sq_topic, link);
        if (!t->deleted) cb(t->name, data);
    }
}

int sq_topics_after(queue *q, const char *after, int (*cb)(const char *topic, void *data),
                    void *data)
{
    list_node *n = list_first(&q->topics);
    if (after) {
        /* A deleted topic keeps its place (its memory stays), so a cursor
         * naming one still finds where it was. */
        sq_topic *t = strmap_get(&q->by_name, after, strlen(after));
        if (!t) return ERR_NOTFOUND;
        n = t->link.next;
    }
    if (!cb) return 0; /* only the cursor asked about */
    for (; n != &q->topics; n = n->next) {
        sq_topic *t = list_entry(n, sq_topic, link);
        if (!t->deleted && cb(t->name, data)) break;
    }
    return 0;
}

uint32_t sq_topic_count(const queue *q)
{
    return q->ntopics;
}
