/* publish.c - the SQLite queue: publishing: numbering, the insertion, and handing committed
 * messages to the subscriptions that are caught up. */
#include "store/queue/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "store/sql.h"

/* How often, at most, the writer deletes the deduplication ids whose time
 * ended: with a publish that brings new ones, so the table holds about one
 * window of them (and one prune of a second's worth each time). */
#define DEDUP_PRUNE_MS 1000

/* The deduplication ids of b's messages (queue_input.dedup), in the
 * messages' transaction: one the process answered with is never lost, one
 * whose message was not stored is never kept. A repeat of an id (a publish
 * that did not look, or after its time ended) takes the newer message. */
static int insert_dedups(queue *q, sqlite3 *db, int64_t topic_id, const sq_block *b)
{
    int rc = SQLITE_OK, any = 0;
    for (size_t i = 0; i < b->n && rc == SQLITE_OK; i++) {
        const sq_msg *m = &b->msgs[i];
        if (!m->dedup) continue;
        any = 1;
        rc = sql_prepare_cached(db, &q->ins_dedup,
                                "INSERT OR REPLACE INTO dedup_ids (topic_id, id, seq, until_ms)"
                                " VALUES (?, ?, ?, ?)");
        if (rc != SQLITE_OK) break;
        sqlite3_bind_int64(q->ins_dedup, 1, topic_id);
        sqlite3_bind_text(q->ins_dedup, 2, m->dedup, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q->ins_dedup, 3, (sqlite3_int64)m->m.seq);
        sqlite3_bind_int64(q->ins_dedup, 4, m->dedup_until_ms);
        rc = sql_step_reset(q->ins_dedup);
    }
    int64_t now = clock_now_ms();
    if (rc != SQLITE_OK || !any || now - q->dedup_pruned_ms < DEDUP_PRUNE_MS) return rc;
    q->dedup_pruned_ms = now;
    rc = sql_prepare_cached(db, &q->del_dedup, "DELETE FROM dedup_ids WHERE until_ms <= ?");
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(q->del_dedup, 1, now);
    return sql_step_reset(q->del_dedup);
}

/* The columns of a message's attributes (migration 9) are written only for
 * a message that has some: the plain path's statement does not name them. */
static int insert_messages(queue *q, sqlite3 *db, int64_t topic_id, sq_block *b)
{
    int rc = sql_prepare_cached(
        db, &q->ins_msg,
        "INSERT INTO messages (topic_id, seq, published_ms, key, payload, source,"
        " attempts, error, visible_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?14)");
    for (size_t i = 0; i < b->n && rc == SQLITE_OK && !q->ins_msg_attrs; i++)
        if (b->msgs[i].m.attrs)
            rc = sql_prepare_cached(
                db, &q->ins_msg_attrs,
                "INSERT INTO messages (topic_id, seq, published_ms, key, payload, source,"
                " attempts, error, event_source, upstream_id, upstream_ts_ms, headers,"
                " redelivered, visible_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?14)");
    if (rc != SQLITE_OK) return rc;
    for (size_t i = 0; i < b->n && rc == SQLITE_OK; i++) {
        const queue_msg *m = &b->msgs[i].m;
        sqlite3_stmt *st = m->attrs ? q->ins_msg_attrs : q->ins_msg;
        sqlite3_bind_int64(st, 1, topic_id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)m->seq);
        sqlite3_bind_int64(st, 3, m->published_ms);
        if (m->key)
            sqlite3_bind_blob(st, 4, m->key, (int)m->key_len, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 4);
        sqlite3_bind_blob(st, 5, m->len ? m->data : "", (int)m->len, SQLITE_STATIC);
        if (m->source) {
            sqlite3_bind_text(st, 6, m->source, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 7, m->attempts);
            sqlite3_bind_text(st, 8, m->error ? m->error : "", -1, SQLITE_STATIC);
        } else {
            sqlite3_bind_null(st, 6);
            sqlite3_bind_null(st, 7);
            sqlite3_bind_null(st, 8);
        }
        /* ?14 in both statements: the plain one names no attributes. */
        if (m->visible_ms)
            sqlite3_bind_int64(st, 14, m->visible_ms);
        else
            sqlite3_bind_null(st, 14);
        if (m->attrs) {
            const queue_attrs *a = m->attrs;
            sqlite3_bind_text(st, 9, a->source, -1, SQLITE_STATIC); /* NULL binds NULL */
            sqlite3_bind_text(st, 10, a->upstream_id, -1, SQLITE_STATIC);
            if (a->upstream_ts_ms)
                sqlite3_bind_int64(st, 11, a->upstream_ts_ms);
            else
                sqlite3_bind_null(st, 11);
            sqlite3_bind_text(st, 12, a->headers, (int)a->headers_len, SQLITE_STATIC);
            sqlite3_bind_int(st, 13, a->redelivered ? 1 : 0);
        }
        rc = sql_step_reset(st);
    }
    if (rc == SQLITE_OK) rc = insert_dedups(q, db, topic_id, b);
    if (rc != SQLITE_OK) return rc;
    /* The next number is kept too: once every message is consumed and deleted,
     * it alone says where numbering goes on after a restart. */
    rc = sql_prepare_cached(
        db, &q->upd_pub,
        "UPDATE topics SET published = published + ?, next_seq = MAX(next_seq, ?)"
        " WHERE id = ?");
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(q->upd_pub, 1, (sqlite3_int64)b->n);
    sqlite3_bind_int64(q->upd_pub, 2, (sqlite3_int64)(b->msgs[b->n - 1].m.seq + 1));
    sqlite3_bind_int64(q->upd_pub, 3, topic_id);
    return sql_step_reset(q->upd_pub);
}

int sq_apply_publish(sqlite3 *db, wop *op)
{
    publish_op *p = (publish_op *)op;
    int rc = SQLITE_OK;
    if (p->create_topic) rc = sq_insert_topic(db, p->topic);
    if (rc == SQLITE_OK) rc = insert_messages(p->q, db, p->topic->id, p->block);
    /* The topic's row is missing though this publish was not the one to
     * insert it: that one's transaction failed (the disk) after this one
     * was handed over. Without the row the messages would be committed and
     * lost at the next start; the row goes in now (the update is redone:
     * its counts start from the row's zero). */
    if (rc == SQLITE_OK && !p->create_topic && sqlite3_changes(db) == 0) {
        rc = sq_insert_topic(db, p->topic);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(p->q->upd_pub, 1, (sqlite3_int64)p->block->n);
            sqlite3_bind_int64(p->q->upd_pub, 2,
                               (sqlite3_int64)(p->block->msgs[p->block->n - 1].m.seq + 1));
            sqlite3_bind_int64(p->q->upd_pub, 3, p->topic->id);
            rc = sql_step_reset(p->q->upd_pub);
        }
    }
    return rc;
}

/* Hands committed messages to the subscriptions that are caught up. A
 * subscription's available event may settle at once what it was handed (a
 * trigger on an SQS queue acks its own subscription's copies): each message
 * stays referenced here until every subscription had it, else that ack
 * freed the block under the next subscription (a queue made on a topic
 * whose trigger came first); sq_block_settle then drops the untaken. */
static void fan_out(sq_topic *t, sq_block *b, uint64_t first, uint64_t last)
{
    for (size_t i = 0; i < b->n; i++) b->msgs[i].refs++;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next) {
        queue_sub *s = list_entry(n, queue_sub, link);
        if (s->fetched != first) continue; /* behind (lagging) or already has them */
        if (s->lagging || sq_ready_full(s) || s->retry_bytes > SPATE_QUEUE_RETRY_BYTES_MAX) {
            if (!s->lagging) s->lag_oldest_ms = queue_msg_since_ms(&b->msgs[0].m);
            s->lagging = 1;
            continue;
        }
        size_t i = 0;
        while (i < b->n && sq_ready_push(s, &b->msgs[i].m) == 0) i++;
        if (i < b->n) {
            /* Out of memory: the rest is read back from the store, as a
             * subscription that lags behind does. */
            log_error("store: '%s' for '%s' reads %zu messages back from the store: out of memory",
                      t->name, s->cfg.function, b->n - i);
            s->fetched = b->msgs[i].m.seq;
            s->lag_oldest_ms = queue_msg_since_ms(&b->msgs[i].m);
            s->lagging = 1;
        } else {
            s->fetched = last + 1;
        }
        sq_notify(s);
        sq_maybe_fetch(s);
    }
    for (size_t i = 0; i < b->n; i++) b->msgs[i].refs--;
}

void sq_done_publish(wop *op, int status)
{
    publish_op *p = (publish_op *)op;
    sq_topic *t = p->topic;
    uint64_t last = p->first + p->block->n - 1;
    if (status == 0) {
        t->published += p->block->n;
        if (t->stored == 0) t->oldest_stored_ms = p->block->msgs[0].m.published_ms;
        t->stored += p->block->n;
        for (size_t i = 0; i < p->block->n; i++)
            t->bytes += p->block->msgs[i].m.len + p->block->msgs[i].m.key_len;
    } else if (p->create_topic) {
        t->persisted = 0; /* insert it with the next publish */
    }
    if (t->committed <= last) t->committed = last + 1;
    if (status == 0) {
        fan_out(t, p->block, p->first, last);
    } else {
        /* Those numbers will never exist: step over them. */
        for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next) {
            queue_sub *s = list_entry(n, queue_sub, link);
            if (s->fetched == p->first) s->fetched = last + 1;
        }
    }
    sq_block_settle(p->block);
    if (p->done) p->done(p->data, status, p->first);
    free(p);
}

/* --- Topics ---------------------------------------------------------------------- */

sq_topic *sq_topic_get(queue *q, const char *name, int create)
{
    sq_topic *t = strmap_get(&q->by_name, name, strlen(name));
    if (t && t->deleted) {
        if (!create) return NULL;
        /* Back: a new topic under the old name. Its numbering goes on (rows
         * of the old one may still be on their way out); the counters start
         * again once the deletion is done (done_delete). */
        t->deleted = 0;
        t->persisted = 0;
        q->ntopics++;
        return t;
    }
    if (t || !create) return t;
    t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        return NULL;
    }
    t->q = q;
    t->id = q->next_topic_id++;
    t->next_seq = t->committed = t->trimmed = 1;
    list_init(&t->subs);
    list_init(&t->sub_link);
    if (strmap_put(&q->by_name, t->name, t)) {
        free(t->name);
        free(t);
        return NULL;
    }
    list_push_back(&q->topics, &t->link);
    q->ntopics++;
    return t;
}

/* Builds and submits the insertion of block's messages into topic t. */
void sq_submit_messages(queue *q, sq_topic *t, sq_block *b, queue_publish_cb done, void *data)
{
    publish_op *p = calloc(1, sizeof *p);
    if (!p) {
        sq_block_settle(b);
        if (done) done(data, ERR_NOMEM, 0);
        return;
    }
    int64_t now = clock_now_ms();
    p->first = t->next_seq;
    for (size_t i = 0; i < b->n; i++) {
        b->msgs[i].m.seq = t->next_seq++;
        if (!b->msgs[i].m.published_ms) b->msgs[i].m.published_ms = now;
    }
    p->q = q;
    p->topic = t;
    p->block = b;
    p->create_topic = !t->persisted;
    t->persisted = 1;
    p->done = done;
    p->data = data;
    p->op.apply = sq_apply_publish;
    p->op.done = sq_done_publish;
    writer_submit(q->w, &p->op);
}

void sq_publish(queue *q, const char *topic, buf *body, const queue_input *in, size_t n,
                queue_publish_cb done, void *data)
{
    sq_topic *t = q->closing ? NULL : sq_topic_get(q, topic, 1);
    sq_block *b = t && n ? sq_block_new(n, NULL) : NULL;
    if (!b) {
        buf_free(body);
        done(data, q->closing ? ERR_CLOSED : (n ? ERR_NOMEM : ERR_INVAL), 0);
        return;
    }
    b->mem = buf_detach(body, NULL);
    if (sq_block_take_extras(b, in, n) != 0) {
        sq_block_settle(b);
        done(data, ERR_NOMEM, 0);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        queue_msg *m = &b->msgs[i].m;
        m->key = in[i].key;
        m->key_len = in[i].key_len;
        m->data = in[i].data;
        m->len = in[i].len;
        /* published_ms is set at submission, this same moment. */
        if (in[i].delay_ms) m->visible_ms = clock_now_ms() + in[i].delay_ms;
        if (in[i].dedup) {
            b->msgs[i].dedup = in[i].dedup;
            b->msgs[i].dedup_until_ms = clock_now_ms() + in[i].dedup_ms;
        }
    }
    /* Numbered in order from here (sq_submit_messages). */
    for (size_t i = 0; i < n; i++)
        if (in[i].seq) *in[i].seq = t->next_seq + i;
    sq_submit_messages(q, t, b, done, data);
}

int sq_dedup_each(queue *q, queue_dedup_cb cb, void *data)
{
    sqlite3 *db = store_db(q->st);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT t.name, d.id, d.seq, d.until_ms FROM dedup_ids d"
                           " JOIN topics t ON t.id = d.topic_id WHERE d.until_ms > ?"
                           " ORDER BY d.until_ms",
                           -1, &st, NULL) != SQLITE_OK)
        return ERR_STORE;
    sqlite3_bind_int64(st, 1, clock_now_ms());
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(data, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
           (uint64_t)sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : ERR_STORE;
}
