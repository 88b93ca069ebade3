/* open.c - the SQLite queue: opening (loading topics and subscriptions), closing, and the table of
 * operations. */
#include "store/queue/internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/err.h"
#include "common/failpoint.h"
#include "common/limits.h"
#include "store/sqlqueue.h"

static void free_topics(queue *q);

static int load(queue *q, char *err, size_t errcap)
{
    sqlite3 *db = store_db(q->st);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db,
            "SELECT t.id, t.name, t.published, t.next_seq,"
            " (SELECT MAX(seq) FROM messages m WHERE m.topic_id = t.id),"
            " (SELECT MIN(seq) FROM messages m WHERE m.topic_id = t.id),"
            " (SELECT COUNT(*) FROM messages m WHERE m.topic_id = t.id),"
            " (SELECT published_ms FROM messages m WHERE m.topic_id = t.id"
            "  ORDER BY seq LIMIT 1),"
            " (SELECT TOTAL(length(payload) + ifnull(length(key), 0)) FROM messages m"
            "  WHERE m.topic_id = t.id),"
            " t.max_age_ms, t.max_bytes, t.max_messages, t.acked, t.dead_lettered,"
            " t.retain_read FROM topics t ORDER BY t.name",
            -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errcap, "cannot read topics: %s", sqlite3_errmsg(db));
        return ERR_STORE;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (id >= q->next_topic_id) q->next_topic_id = id + 1;
        sq_topic *t = sq_topic_get(q, (const char *)sqlite3_column_text(st, 1), 1);
        if (!t) {
            snprintf(err, errcap, "cannot restore topic '%s': out of memory",
                     (const char *)sqlite3_column_text(st, 1));
            sqlite3_finalize(st);
            return ERR_NOMEM;
        }
        t->id = id;
        t->persisted = 1;
        t->published = (uint64_t)sqlite3_column_int64(st, 2);
        uint64_t next = (uint64_t)sqlite3_column_int64(st, 3);
        uint64_t max = (uint64_t)sqlite3_column_int64(st, 4);
        uint64_t min = (uint64_t)sqlite3_column_int64(st, 5);
        if (next < max + 1) next = max + 1;
        t->next_seq = t->committed = next;
        t->trimmed = min ? min : next;
        t->stored = (uint64_t)sqlite3_column_int64(st, 6);
        t->oldest_stored_ms = sqlite3_column_int64(st, 7);
        t->bytes = (uint64_t)sqlite3_column_double(st, 8);
        t->ret.max_age_ms = (uint64_t)sqlite3_column_int64(st, 9);
        t->ret.max_bytes = (uint64_t)sqlite3_column_int64(st, 10);
        t->ret.max_messages = (uint64_t)sqlite3_column_int64(st, 11);
        t->retired_acked = (uint64_t)sqlite3_column_int64(st, 12);
        t->retired_dead = (uint64_t)sqlite3_column_int64(st, 13);
        t->ret.under_subscriptions = sqlite3_column_int64(st, 14) != 0;
    }
    sqlite3_finalize(st);
    if (q->next_topic_id < 1) q->next_topic_id = 1;

    if (sqlite3_prepare_v2(db,
                           "SELECT s.id, t.name, s.function, s.max_attempts, s.dlq, s.ordered,"
                           " s.deadline_ms, s.max_concurrency, s.cursor, s.leased, s.acked,"
                           " s.dead_lettered, s.batch_size, s.batch_window_ms, s.event_format,"
                           " s.report_failures, s.qualifier, s.paused, s.modified_ms"
                           " FROM subscriptions s JOIN topics t"
                           " ON t.id = s.topic_id ORDER BY t.name, s.function",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errcap, "cannot read subscriptions: %s", sqlite3_errmsg(db));
        return ERR_STORE;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        sq_topic *t = sq_topic_get(q, (const char *)sqlite3_column_text(st, 1), 0);
        if (!t) continue;
        queue_sub_config cfg = {0};
        snprintf(cfg.function, sizeof cfg.function, "%s", sqlite3_column_text(st, 2));
        cfg.max_attempts = (uint32_t)sqlite3_column_int64(st, 3);
        snprintf(cfg.dlq, sizeof cfg.dlq, "%s", sqlite3_column_text(st, 4));
        cfg.ordered = sqlite3_column_int(st, 5);
        cfg.deadline_ms = (uint32_t)sqlite3_column_int64(st, 6);
        cfg.max_concurrency = (uint32_t)sqlite3_column_int64(st, 7);
        cfg.batch_size = (uint32_t)sqlite3_column_int64(st, 12);
        cfg.batch_window_ms = (uint32_t)sqlite3_column_int64(st, 13);
        cfg.event_format = sqlite3_column_int(st, 14);
        cfg.report_failures = sqlite3_column_int(st, 15);
        snprintf(cfg.qualifier, sizeof cfg.qualifier, "%s", sqlite3_column_text(st, 16));
        cfg.paused = sqlite3_column_int(st, 17);
        cfg.modified_ms = sqlite3_column_int64(st, 18);
        queue_sub *s = sq_sub_new(q, t, &cfg);
        if (!s) {
            /* Without it the topic's other triggers would trim what it has
             * not read yet. */
            snprintf(err, errcap, "cannot restore the trigger of '%s' on '%s': out of memory",
                     cfg.function, t->name);
            sqlite3_finalize(st);
            return ERR_NOMEM;
        }
        s->id = sqlite3_column_int64(st, 0);
        if (s->id >= q->next_sub_id) q->next_sub_id = s->id + 1;
        s->persisted = 1;
        s->fetched = (uint64_t)sqlite3_column_int64(st, 8);
        if (s->fetched < t->trimmed) s->fetched = t->trimmed;
        /* Numbering never goes back below what a subscription has seen. */
        if (s->fetched > t->next_seq) t->next_seq = t->committed = s->fetched;
        s->acked = (uint64_t)sqlite3_column_int64(st, 10);
        s->dead_lettered = (uint64_t)sqlite3_column_int64(st, 11);
        int rc = sq_restore_sub(q, s, sqlite3_column_blob(st, 9), sqlite3_column_bytes(st, 9));
        if (rc != 0) {
            snprintf(err, errcap, "cannot restore the messages in flight of '%s' on '%s': %s",
                     cfg.function, t->name, err_str(rc));
            sqlite3_finalize(st);
            return rc;
        }
    }
    sqlite3_finalize(st);
    if (q->next_sub_id < 1) q->next_sub_id = 1;
    return 0;
}

int queue_open(uv_loop_t *loop, store *st, const queue_events *ev, queue **out, char *err,
               size_t errcap)
{
    failpoint_mark("queue_open"); /* SPATE_FAIL_ALLOC_AFTER=queue_open: the restore's */
    queue *q = calloc(1, sizeof *q);
    if (!q) {
        snprintf(err, errcap, "cannot open the queue: out of memory");
        return ERR_NOMEM;
    }
    q->ops = &sq_ops;
    q->loop = loop;
    q->st = st;
    q->ev = *ev;
    list_init(&q->topics);
    list_init(&q->sub_topics);
    list_init(&q->dirty);
    strmap_init(&q->by_name);
    q->next_topic_id = q->next_sub_id = 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/spate.db", store_dir(st));
    int rc = writer_start(loop, path, &q->w, err, errcap);
    if (rc == 0) rc = load(q, err, errcap);
    if (rc != 0) {
        if (q->w) writer_stop(q->w, NULL, NULL);
        free_topics(q);
        free(q);
        return rc;
    }
    writer_set_presubmit(q->w, sq_presubmit, q);
    /* Retention: at once (what aged while spated was down), then every tick. */
    uv_timer_init(loop, &q->retention);
    q->retention.data = q;
    uv_timer_start(&q->retention, sq_retention_tick, 0, SPATE_RETENTION_TICK_MS);
    /* Start every subscription: reload from the store. */
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        sq_topic *t = list_entry(n, sq_topic, link);
        for (list_node *m = list_first(&t->subs); m != &t->subs; m = m->next) {
            queue_sub *s = list_entry(m, queue_sub, link);
            sq_maybe_fetch(s);
            sq_arm_retry(s);
        }
    }
    *out = q;
    return 0;
}

static void sq_set_events(queue *q, const queue_events *ev)
{
    q->ev = *ev;
}

/* The writer stopped and the retention timer closed: q goes. */
static void close_part(queue *q)
{
    if (++q->closed_parts < 2) return;
    void (*cb)(void *) = q->close_cb;
    void *cbdata = q->close_data;
    free(q);
    if (cb) cb(cbdata);
}

static void on_retention_closed(uv_handle_t *h)
{
    close_part(h->data);
}

/* Frees every topic and subscription in memory (their leases forgotten). */
static void free_topics(queue *q)
{
    while (!list_empty(&q->topics)) {
        sq_topic *t = list_entry(list_first(&q->topics), sq_topic, link);
        list_remove(&t->link);
        list_remove(&t->sub_link);
        while (!list_empty(&t->subs)) {
            queue_sub *s = list_entry(list_first(&t->subs), queue_sub, link);
            list_remove(&s->link);
            s->closed = 1;
            /* Leases still out are forgotten: the scheduler has stopped. */
            while (!list_empty(&s->leased)) {
                sq_lease *l = list_entry(list_first(&s->leased), sq_lease, link);
                list_remove(&l->link);
                sq_msg_unref(l->base.msg);
                free(l->error);
                free(l);
                s->refs--;
            }
            s->refs = 1;
            sq_sub_unref(s);
        }
        free(t->name);
        free(t);
    }
    strmap_free(&q->by_name);
}

static void on_writer_stopped(void *data)
{
    queue *q = data;
    free_topics(q);
    sqlite3_stmt *sts[] = {q->ins_msg,   q->ins_msg_attrs, q->upd_pub,
                           q->upd_sub,   q->del_msgs,      q->upsert_retry,
                           q->del_retry, q->ins_dedup,     q->del_dedup};
    for (size_t i = 0; i < sizeof sts / sizeof *sts; i++) sqlite3_finalize(sts[i]);
    sqlite3_finalize(q->first_pub);
    close_part(q);
}

static void sq_close(queue *q, void (*cb)(void *data), void *data)
{
    q->closing = 1;
    q->close_cb = cb;
    q->close_data = data;
    uv_close((uv_handle_t *)&q->retention, on_retention_closed);
    /* Save the latest state of every subscription with the last commit. */
    writer_stop(q->w, on_writer_stopped, q);
}

const queue_ops sq_ops = {
    .publish = sq_publish,
    .lease = sq_lease_next,
    .ack = sq_ack,
    .nack = sq_nack,
    .release = sq_release,
    .dead_letter = sq_dead_letter,
    .subscribe = sq_subscribe,
    .unsubscribe = sq_unsubscribe,
    .find_sub = sq_find_sub,
    .each_sub = sq_each_sub,
    .sub_config = sq_sub_config,
    .sub_topic = sq_sub_topic,
    .sub_set_data = sq_sub_set_data,
    .sub_data = sq_sub_data,
    .sub_stats = sq_sub_stats,
    .topic_stats = sq_topic_stats,
    .each_topic = sq_each_topic,
    .topics_after = sq_topics_after,
    .topic_count = sq_topic_count,
    .each_sub_of = sq_each_sub_of,
    .read = sq_read,
    .redrive = sq_redrive,
    .topic_delete = sq_topic_delete,
    .topic_purge = sq_topic_purge,
    .topic_retention = sq_topic_retention,
    .set_events = sq_set_events,
    .close = sq_close,
    .dedup_each = sq_dedup_each,
    .flags = QUEUE_DELAYS | QUEUE_DEDUP,
};
