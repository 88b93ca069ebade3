/* admin.c - the SQLite queue: administering topics: deletion, purge, retention. */
#include "store/queue/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "store/sql.h"

typedef struct admin_op {
    wop op;
    queue *q;
    sq_topic *topic;
    int64_t topic_id;
    uint64_t below; /* purge, retention: only committed messages, below this seq */
    uint64_t *keep; /* purge: seqs leased now, which stay (sorted) */
    size_t nkeep;
    queue_retention ret; /* set: to save; retention: the limits; delete: to restore on failure */
    int create_topic;    /* set: insert the topic's row first */
    int64_t now_ms;
    uint64_t rows, bytes; /* deleted */
    uint64_t stop;        /* retention: the first seq kept */
    int64_t oldest_ms;    /* of what is left */
    queue_count_cb count_cb;
    queue_done_cb done_cb;
    void *data;
} admin_op;

static admin_op *admin_new(queue *q, sq_topic *t, int (*apply)(sqlite3 *, wop *),
                           void (*done)(wop *, int))
{
    admin_op *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->q = q;
    a->topic = t;
    a->topic_id = t->id;
    a->op.apply = apply;
    a->op.done = done;
    return a;
}

static int apply_delete(sqlite3 *db, wop *op)
{
    admin_op *a = (admin_op *)op;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "DELETE FROM messages WHERE topic_id = ?" RETURNING_BYTES, -1,
                                &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->topic_id);
    rc = sq_delete_rows(st, &a->rows, &a->bytes);
    sqlite3_finalize(st);
    /* Subscriptions are gone already (the topic had none); their rows too,
     * unless a removal failed on its own. */
    if (rc == SQLITE_OK)
        rc = sq_exec_topic(db,
                           "DELETE FROM retries WHERE sub_id IN"
                           " (SELECT id FROM subscriptions WHERE topic_id = ?1)",
                           a->topic_id);
    if (rc == SQLITE_OK)
        rc = sq_exec_topic(db, "DELETE FROM subscriptions WHERE topic_id = ?1", a->topic_id);
    if (rc == SQLITE_OK)
        rc = sq_exec_topic(db, "DELETE FROM dedup_ids WHERE topic_id = ?1", a->topic_id);
    if (rc == SQLITE_OK) rc = sq_exec_topic(db, "DELETE FROM topics WHERE id = ?1", a->topic_id);
    return rc;
}

static void done_delete(wop *op, int status)
{
    admin_op *a = (admin_op *)op;
    sq_topic *t = a->topic;
    if (status == 0) {
        /* The counters start again: what was published before the deletion
         * went with it (a publish asked for after it is counted after this,
         * as its done comes later). */
        t->published = t->stored = t->bytes = 0;
        t->oldest_stored_ms = 0;
        t->retired_acked = t->retired_dead = 0;
    } else if (t->deleted) {
        t->deleted = 0; /* still there, as it was */
        t->q->ntopics++;
        t->ret = a->ret;
    }
    a->count_cb(a->data, status, a->rows);
    free(a);
}

int sq_topic_delete(queue *q, const char *topic, queue_count_cb done, void *data)
{
    if (q->closing) return ERR_CLOSED;
    sq_topic *t = sq_topic_get(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    if (t->nsubs) return ERR_BUSY;
    admin_op *a = admin_new(q, t, apply_delete, done_delete);
    if (!a) return ERR_NOMEM;
    a->count_cb = done;
    a->data = data;
    a->ret = t->ret;
    memset(&t->ret, 0, sizeof t->ret);
    t->deleted = 1;
    q->ntopics--;
    writer_submit(q->w, &a->op);
    return 0;
}

/* Deletes the topic's rows below seq below but a->keep's (the leased
 * ones): the ranges between them. */
static int delete_below(sqlite3 *db, admin_op *a, uint64_t below)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        db, "DELETE FROM messages WHERE topic_id = ? AND seq >= ? AND seq < ?" RETURNING_BYTES, -1,
        &st, NULL);
    if (rc != SQLITE_OK) return rc;
    uint64_t from = 0;
    for (size_t i = 0; i <= a->nkeep && rc == SQLITE_OK; i++) {
        uint64_t to = i < a->nkeep && a->keep[i] < below ? a->keep[i] : below;
        if (to > from) {
            sqlite3_bind_int64(st, 1, a->topic_id);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)from);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)to);
            rc = sq_delete_rows(st, &a->rows, &a->bytes);
        }
        if (to + 1 > from) from = to + 1;
        if (to == below) break;
    }
    sqlite3_finalize(st);
    return rc;
}

static int apply_purge(sqlite3 *db, wop *op)
{
    admin_op *a = (admin_op *)op;
    int rc = delete_below(db, a, a->below);
    if (rc == SQLITE_OK) a->oldest_ms = sq_first_published(db, a->topic_id);
    return rc;
}

static void done_purge(wop *op, int status)
{
    admin_op *a = (admin_op *)op;
    if (status == 0) sq_forget_rows(a->topic, a->rows, a->bytes, a->oldest_ms);
    a->count_cb(a->data, status, a->rows);
    free(a->keep);
    free(a);
}

/* Empties what a subscription holds but its leases: it goes on from the next
 * publish (bound: the first seq not yet committed). Returns the seqs it has
 * leased into keep. */
static void add_leased(const queue_sub *s, uint64_t *keep, size_t *nkeep)
{
    for (list_node *n = list_first(&s->leased); n != &s->leased; n = n->next)
        keep[(*nkeep)++] = list_entry(n, sq_lease, link)->base.msg->seq;
}

static void sub_purge(queue_sub *s, uint64_t bound, uint64_t *keep, size_t *nkeep)
{
    add_leased(s, keep, nkeep);
    while (s->rlen) sq_msg_unref(sq_ready_take(s, 0));
    while (s->nheap) {
        sq_lease *l = sq_heap_pop(s);
        sq_key_free(s, l->base.msg);
        if (l->in_retry_table) sq_submit_retry(l, NULL);
        sq_lease_free(l);
    }
    uv_timer_stop(&s->timer);
    sq_drop_saved(s);
    free(s->restore);
    s->restore = NULL;
    s->nrestore = 0;
    if (s->fetched < bound) s->fetched = bound;
    s->lagging = 0;
    s->lag_oldest_ms = 0;
    sq_mark_dirty(s);
}

int sq_topic_purge(queue *q, const char *topic, queue_count_cb done, void *data)
{
    if (q->closing) return ERR_CLOSED;
    sq_topic *t = sq_topic_get(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    size_t leased = 0;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next)
        leased += list_entry(n, queue_sub, link)->nleased;
    admin_op *a = admin_new(q, t, apply_purge, done_purge);
    uint64_t *keep = a && leased ? malloc(leased * sizeof *keep) : NULL;
    if (!a || (leased && !keep)) {
        free(a);
        return ERR_NOMEM;
    }
    /* Committed messages only: a publish still on its way is after the purge. */
    a->below = t->committed;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next)
        sub_purge(list_entry(n, queue_sub, link), a->below, keep, &a->nkeep);
    if (a->nkeep) qsort(keep, a->nkeep, sizeof *keep, sq_cmp_u64);
    a->keep = keep;
    if (t->trimmed < a->below) t->trimmed = a->below; /* a new subscription starts there */
    a->count_cb = done;
    a->data = data;
    writer_submit(q->w, &a->op);
    return 0;
}

/* Retention: the oldest messages of a topic no subscription reads, while it
 * is over a limit. */
static int over_limits(const sq_topic *t, const queue_retention *r, int64_t now)
{
    return (r->max_messages && t->stored > r->max_messages) ||
           (r->max_bytes && t->bytes > r->max_bytes) ||
           (r->max_age_ms && t->stored && t->oldest_stored_ms &&
            now - t->oldest_stored_ms > (int64_t)r->max_age_ms);
}

static int apply_retain(sqlite3 *db, wop *op)
{
    admin_op *a = (admin_op *)op;
    const queue_retention *r = &a->ret;
    sqlite3_stmt *st;
    /* The figures of the store, not of memory: publishes and deletions may be
     * in this same transaction. */
    int rc = sqlite3_prepare_v2(db,
                                "SELECT COUNT(*), TOTAL(length(payload) + ifnull(length(key), 0))"
                                " FROM messages WHERE topic_id = ?",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->topic_id);
    uint64_t count = 0, bytes = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        count = (uint64_t)sqlite3_column_int64(st, 0);
        bytes = (uint64_t)sqlite3_column_double(st, 1);
    }
    sqlite3_finalize(st);
    rc = sqlite3_prepare_v2(db,
                            "SELECT seq, published_ms, length(payload) + ifnull(length(key), 0)"
                            " FROM messages WHERE topic_id = ? AND seq < ? ORDER BY seq",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->topic_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a->below);
    a->stop = a->below;
    int64_t cutoff = a->now_ms - (int64_t)r->max_age_ms;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int old = r->max_age_ms && sqlite3_column_int64(st, 1) < cutoff;
        if (!old && !(r->max_messages && count > r->max_messages) &&
            !(r->max_bytes && bytes > r->max_bytes)) {
            a->stop = (uint64_t)sqlite3_column_int64(st, 0);
            break;
        }
        count--;
        bytes -= (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    rc = delete_below(db, a, a->stop);
    if (rc == SQLITE_OK) a->oldest_ms = sq_first_published(db, a->topic_id);
    return rc;
}

static void done_retain(wop *op, int status)
{
    admin_op *a = (admin_op *)op;
    sq_topic *t = a->topic;
    t->retaining = 0;
    if (status == 0 && !t->deleted) {
        sq_forget_rows(t, a->rows, a->bytes, a->oldest_ms);
        if (t->trimmed < a->stop) t->trimmed = a->stop;
        if (a->rows)
            log_debug("retention dropped %llu messages (%llu bytes) of topic '%s'",
                      (unsigned long long)a->rows, (unsigned long long)a->bytes, t->name);
    } else if (status) {
        log_warn("cannot apply the retention of topic '%s': %s", t->name, err_str(status));
    }
    free(a->keep);
    free(a);
}

/* Retention under subscriptions: each drops what it holds from before
 * cutoff_ms but its leases (their seqs into a->keep, sorted, which the
 * deletion spares). -1 when out of memory (nothing changed). */
static int expire_subs(sq_topic *t, int64_t cutoff_ms, admin_op *a)
{
    size_t leased = 0;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next)
        leased += list_entry(n, queue_sub, link)->nleased;
    if (leased && !(a->keep = malloc(leased * sizeof *a->keep))) return -1;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next) {
        queue_sub *s = list_entry(n, queue_sub, link);
        add_leased(s, a->keep, &a->nkeep);
        int dropped = 0;
        /* Ready is in publish order: the old ones are at its head. */
        while (s->rlen && sq_ready_at(s, 0)->published_ms < cutoff_ms) {
            sq_msg_unref(sq_ready_take(s, 0));
            dropped = 1;
        }
        sq_heap_drop_older(s, cutoff_ms);
        if (dropped) sq_mark_dirty(s);
    }
    if (a->nkeep) qsort(a->keep, a->nkeep, sizeof *a->keep, sq_cmp_u64);
    if (t->expired_ms < cutoff_ms) t->expired_ms = cutoff_ms;
    return 0;
}

static void retain(queue *q, sq_topic *t)
{
    if (t->deleted || t->retaining || !t->persisted || q->closing) return;
    queue_retention r = t->ret;
    if (t->nsubs) {
        /* Read by subscriptions: their age limit alone, if it applies. */
        if (!r.under_subscriptions || !r.max_age_ms) return;
        r.max_bytes = r.max_messages = 0;
    }
    int64_t now = clock_now_ms();
    if (!over_limits(t, &r, now)) return;
    admin_op *a = admin_new(q, t, apply_retain, done_retain);
    if (!a) return;
    a->ret = r;
    a->now_ms = now;
    a->below = t->committed;
    if (t->nsubs && expire_subs(t, now - (int64_t)r.max_age_ms, a)) {
        free(a);
        return;
    }
    t->retaining = 1;
    writer_submit(q->w, &a->op);
}

void sq_retention_tick(uv_timer_t *h)
{
    queue *q = h->data;
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next)
        retain(q, list_entry(n, sq_topic, link));
}

static int apply_set_retention(sqlite3 *db, wop *op)
{
    admin_op *a = (admin_op *)op;
    int rc = a->create_topic ? sq_insert_topic(db, a->topic) : SQLITE_OK;
    if (rc != SQLITE_OK) return rc;
    sqlite3_stmt *st;
    rc = sqlite3_prepare_v2(db,
                            "UPDATE topics SET max_age_ms = ?, max_bytes = ?, max_messages = ?,"
                            " retain_read = ? WHERE id = ?",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)a->ret.max_age_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a->ret.max_bytes);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)a->ret.max_messages);
    sqlite3_bind_int(st, 4, a->ret.under_subscriptions ? 1 : 0);
    sqlite3_bind_int64(st, 5, a->topic_id);
    return sql_step_finalize(st);
}

static void done_set_retention(wop *op, int status)
{
    admin_op *a = (admin_op *)op;
    if (status && a->create_topic) a->topic->persisted = 0;
    if (status == 0) retain(a->q, a->topic); /* now, not at the next tick */
    a->done_cb(a->data, status);
    free(a);
}

int sq_topic_retention(queue *q, const char *topic, const queue_retention *r, queue_done_cb done,
                       void *data)
{
    if (q->closing) return ERR_CLOSED;
    sq_topic *t = sq_topic_get(q, topic, 1);
    if (!t) return ERR_NOMEM;
    admin_op *a = admin_new(q, t, apply_set_retention, done_set_retention);
    if (!a) return ERR_NOMEM;
    a->ret = *r;
    a->create_topic = !t->persisted;
    t->persisted = 1;
    t->ret = *r; /* in force from now: a failed save says so to the caller */
    a->done_cb = done;
    a->data = data;
    writer_submit(q->w, &a->op);
    return 0;
}
