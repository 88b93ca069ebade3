/* state.c - the SQLite queue: the state of each subscription, saved in every commit after it
 * changes (its codec), reloaded after a restart; trimming what every subscription has settled. */
#include "store/queue/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "store/sql.h"

typedef struct state_op {
    wop op;
    queue *q;
    int64_t sub_id;
    uint64_t cursor;
    uint64_t acked, dead_lettered;
    size_t nleased;
    uint8_t *leased; /* (u64 seq, u32 attempt) pairs, little endian */
} state_op;

typedef struct trim_op {
    wop op;
    queue *q;
    sq_topic *topic;
    int64_t topic_id;
    uint64_t below;
    uint64_t deleted, bytes;
    int64_t oldest_ms; /* of what is left */
} trim_op;

static uint64_t sub_cursor(const queue_sub *s)
{
    return s->rlen ? sq_ready_at(s, 0)->seq : s->fetched;
}

/* The lowest seq this subscription has not settled. */
static uint64_t sub_low(const queue_sub *s)
{
    uint64_t low = sub_cursor(s);
    for (list_node *n = list_first(&s->leased); n != &s->leased; n = n->next) {
        sq_lease *l = list_entry(n, sq_lease, link);
        if (l->base.msg->seq < low) low = l->base.msg->seq;
    }
    for (uint32_t i = 0; i < s->nheap; i++)
        if (s->heap[i]->base.msg->seq < low) low = s->heap[i]->base.msg->seq;
    return low;
}

static int apply_state(sqlite3 *db, wop *op)
{
    state_op *s = (state_op *)op;
    queue *q = s->q;
    int rc = sql_prepare_cached(db, &q->upd_sub,
                                "UPDATE subscriptions SET cursor = ?, leased = ?, acked = ?,"
                                " dead_lettered = ? WHERE id = ?");
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(q->upd_sub, 1, (sqlite3_int64)s->cursor);
    sqlite3_bind_blob(q->upd_sub, 2, s->leased ? (const void *)s->leased : "",
                      (int)(s->nleased * 12), SQLITE_STATIC);
    sqlite3_bind_int64(q->upd_sub, 3, (sqlite3_int64)s->acked);
    sqlite3_bind_int64(q->upd_sub, 4, (sqlite3_int64)s->dead_lettered);
    sqlite3_bind_int64(q->upd_sub, 5, s->sub_id);
    return sql_step_reset(q->upd_sub);
}

static void done_state(wop *op, int status)
{
    state_op *s = (state_op *)op;
    if (status != 0) {
        /* Not saved: save it again with the next commit. */
        queue *q = s->q;
        for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
            sq_topic *t = list_entry(n, sq_topic, link);
            for (list_node *m = list_first(&t->subs); m != &t->subs; m = m->next) {
                queue_sub *sub = list_entry(m, queue_sub, link);
                if (sub->id == s->sub_id) sq_mark_dirty(sub);
            }
        }
    }
    free(s->leased);
    free(s);
}

/* Loop thread: rows and bytes that left topic t. */
void sq_forget_rows(sq_topic *t, uint64_t rows, uint64_t bytes, int64_t oldest_ms)
{
    t->stored = t->stored > rows ? t->stored - rows : 0;
    t->bytes = t->bytes > bytes ? t->bytes - bytes : 0;
    t->oldest_stored_ms = oldest_ms;
}

static int apply_trim(sqlite3 *db, wop *op)
{
    trim_op *t = (trim_op *)op;
    queue *q = t->q;
    int rc = sql_prepare_cached(
        db, &q->del_msgs, "DELETE FROM messages WHERE topic_id = ? AND seq < ?" RETURNING_BYTES);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(q->del_msgs, 1, t->topic_id);
    sqlite3_bind_int64(q->del_msgs, 2, (sqlite3_int64)t->below);
    rc = sq_delete_rows(q->del_msgs, &t->deleted, &t->bytes);
    /* The oldest left: what the topic's age says once no trigger reads it. */
    if (rc == SQLITE_OK) t->oldest_ms = sq_first_published_cached(q, db, t->topic_id);
    return rc;
}

static void done_trim(wop *op, int status)
{
    trim_op *t = (trim_op *)op;
    if (status == 0 && t->topic) {
        sq_forget_rows(t->topic, t->deleted, t->bytes, t->oldest_ms);
    } else if (t->topic && t->topic->trimmed == t->below) {
        t->topic->trimmed = 1; /* try again later */
    }
    free(t);
}

void sq_maybe_trim(queue *q, sq_topic *t)
{
    if (t->nsubs == 0) return; /* messages stay until a subscription takes them */
    uint64_t low = UINT64_MAX;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next) {
        uint64_t l = sub_low(list_entry(n, queue_sub, link));
        if (l < low) low = l;
    }
    if (low <= t->trimmed || low == UINT64_MAX) return;
    trim_op *op = calloc(1, sizeof *op);
    if (!op) return;
    op->q = q;
    op->topic = t;
    op->topic_id = t->id;
    op->below = low;
    t->trimmed = low;
    op->op.apply = apply_trim;
    op->op.done = done_trim;
    writer_submit(q->w, &op->op);
}

/* Writer hook, just before a handoff: snapshot every changed subscription.
 * A snapshot is all or nothing: the cursor is saved only with the leased set
 * that goes with it (a cursor past messages whose leases were not saved would
 * lose them at a restart). One that cannot be made (out of memory) stays
 * dirty, for the next commit; the state saved before stays, and is consistent
 * (after a crash its leases are delivered again). */
void sq_presubmit(void *data)
{
    queue *q = data;
    list_node todo;
    list_init(&todo);
    while (!list_empty(&q->dirty)) {
        list_node *n = list_first(&q->dirty);
        list_remove(n);
        list_push_back(&todo, n);
    }
    while (!list_empty(&todo)) {
        queue_sub *s = list_entry(list_first(&todo), queue_sub, dirty_link);
        list_remove(&s->dirty_link);
        s->dirty = 0;
        size_t nsave = s->nleased;
        for (uint32_t i = 0; i < s->nheap; i++) nsave += s->heap[i]->unsaved;
        state_op *op = calloc(1, sizeof *op);
        uint8_t *leased = op && nsave ? malloc(nsave * 12) : NULL;
        if (!op || (nsave && !leased)) {
            free(op);
            log_error("store: cannot save the state of subscription %lld of topic '%s': out of "
                      "memory (it is saved with the next commit)",
                      (long long)s->id, s->topic->name);
            /* Back on q->dirty (not todo): this commit goes without it. */
            sq_mark_dirty(s);
            continue;
        }
        op->q = q;
        op->sub_id = s->id;
        op->cursor = sub_cursor(s);
        op->acked = s->acked;
        op->dead_lettered = s->dead_lettered;
        op->nleased = nsave;
        op->leased = leased;
        uint8_t *p = op->leased;
        for (list_node *n = list_first(&s->leased); p && n != &s->leased; n = n->next) {
            sq_lease *l = list_entry(n, sq_lease, link);
            put_u64(p, l->base.msg->seq);
            put_u32(p + 8, l->base.attempt);
            p += 12;
        }
        /* Saved as leased at the attempt it is to run with (a leased one is
         * restored at its attempt, repeated). */
        for (uint32_t i = 0; p && i < s->nheap; i++) {
            if (!s->heap[i]->unsaved) continue;
            put_u64(p, s->heap[i]->base.msg->seq);
            put_u32(p + 8, s->heap[i]->base.attempt + 1);
            p += 12;
        }
        op->op.apply = apply_state;
        op->op.done = done_state;
        writer_submit(q->w, &op->op);
        sq_maybe_trim(q, s->topic);
    }
}

/* The counters of a topic's removed subscriptions: added to its row when a
 * subscription goes, and for each settling that comes after (a lease that
 * was out when its trigger was removed). */
typedef struct counter_op {
    wop op;
    int64_t topic_id;
    uint64_t acked, dead_lettered;
} counter_op;

static int apply_counter(sqlite3 *db, wop *op)
{
    counter_op *c = (counter_op *)op;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db,
                                "UPDATE topics SET acked = acked + ?, dead_lettered ="
                                " dead_lettered + ? WHERE id = ?",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)c->acked);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)c->dead_lettered);
    sqlite3_bind_int64(st, 3, c->topic_id);
    return sql_step_finalize(st);
}

static void done_counter(wop *op, int status)
{
    if (status) log_warn("cannot save the counters of a removed trigger: %s", err_str(status));
    free(op);
}

/* Counts settlings of t's removed subscriptions, in memory and in its row. */
void sq_retire_counts(queue *q, sq_topic *t, uint64_t acked, uint64_t dead)
{
    if (!acked && !dead) return;
    t->retired_acked += acked;
    t->retired_dead += dead;
    counter_op *c = calloc(1, sizeof *c);
    if (!c || !t->persisted) {
        free(c);
        return;
    }
    c->topic_id = t->id;
    c->acked = acked;
    c->dead_lettered = dead;
    c->op.apply = apply_counter;
    c->op.done = done_counter;
    writer_submit(q->w, &c->op);
}

int sq_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* --- Restoring after a restart ----------------------------------------------------------- */

static int cmp_saved(const void *a, const void *b)
{
    uint64_t x = ((const sq_saved *)a)->seq, y = ((const sq_saved *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Reloads, after a restart, the messages a subscription had leased (they were
 * in flight: due again now, their attempt repeated) and those waiting for a
 * retry. Runs on the store's own connection before the writer starts.
 * ERR_NOMEM or ERR_STORE when one of them cannot be: spated is not to start
 * without it (the next snapshot would drop it). */
int sq_restore_sub(queue *q, queue_sub *s, const void *leased, int leased_len)
{
    sqlite3 *db = store_db(q->st);
    sqlite3_stmt *one;
    char sql[256];
    snprintf(sql, sizeof sql, "%s WHERE topic_id = ? AND seq = ?", sq_select_rows);
    if (sqlite3_prepare_v2(db, sql, -1, &one, NULL) != SQLITE_OK) return ERR_STORE;

    int rc = 0;
    size_t n = 0, cap = 16;
    sq_saved *p = malloc(cap * sizeof *p);
    if (!p) rc = ERR_NOMEM;
    const uint8_t *b = leased;
    for (int i = 0; rc == 0 && i + 12 <= leased_len; i += 12) {
        if (n == cap) {
            sq_saved *np = realloc(p, (cap *= 2) * sizeof *p);
            if (!np) {
                rc = ERR_NOMEM;
                break;
            }
            p = np;
        }
        p[n++] = (sq_saved){get_u64(b + i), get_u32(b + i + 8) ? get_u32(b + i + 8) - 1 : 0,
                            clock_now_ms(), NULL, 0};
    }
    sqlite3_stmt *rs;
    if (rc == 0 && sqlite3_prepare_v2(db,
                                      "SELECT seq, attempts, visible_ms, error FROM retries"
                                      " WHERE sub_id = ?",
                                      -1, &rs, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(rs, 1, s->id);
        int st = SQLITE_DONE;
        while (rc == 0 && (st = sqlite3_step(rs)) == SQLITE_ROW) {
            if (n == cap) {
                sq_saved *np = realloc(p, (cap *= 2) * sizeof *p);
                if (!np) {
                    rc = ERR_NOMEM;
                    break;
                }
                p = np;
            }
            const char *e = (const char *)sqlite3_column_text(rs, 3);
            char *error = strdup(e ? e : "");
            if (!error) {
                rc = ERR_NOMEM;
                break;
            }
            p[n++] = (sq_saved){(uint64_t)sqlite3_column_int64(rs, 0),
                                (uint32_t)sqlite3_column_int64(rs, 1), sqlite3_column_int64(rs, 2),
                                error, 1};
        }
        if (rc == 0 && st != SQLITE_DONE) rc = ERR_STORE;
        sqlite3_finalize(rs);
    } else if (rc == 0) {
        rc = ERR_STORE;
    }
    /* A message leased again after a retry (or a delay) has both a leased
     * entry and its retry row: one lease of it, due now as the leased one
     * says, its row still to delete when it settles. */
    if (rc == 0 && n > 1) {
        qsort(p, n, sizeof *p, cmp_saved);
        size_t k = 1;
        for (size_t i = 1; i < n; i++) {
            if (p[i].seq != p[k - 1].seq) {
                p[k++] = p[i];
                continue;
            }
            sq_saved *keep = &p[k - 1], *row = &p[i];
            if (keep->in_table) { /* the leased one came second */
                sq_saved t = *keep;
                *keep = *row;
                *row = t;
            }
            keep->in_table = 1;
            free(keep->error);
            keep->error = row->error;
        }
        n = k;
    }
    /* Ordered: a retry past the saved position waits for the range fetch,
     * to run behind the earlier messages of its key that come back with it
     * (sq_lease_next takes its state). Due at once from here, it ran before
     * them: the nemesis saw a failed message run again before an earlier
     * message of its key that had run and was settled in memory only. */
    if (rc == 0 && s->cfg.ordered) {
        size_t nsaved = 0;
        for (size_t i = 0; i < n; i++) nsaved += p[i].seq >= s->fetched && p[i].attempts > 0;
        sq_saved *sv = nsaved ? realloc(s->saved, (s->nsaved + nsaved) * sizeof *sv) : NULL;
        if (nsaved && !sv) rc = ERR_NOMEM;
        if (sv) {
            s->saved = sv;
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                if (p[i].seq >= s->fetched && p[i].attempts > 0)
                    s->saved[s->nsaved++] = p[i]; /* in seq order: p is sorted */
                else
                    p[k++] = p[i];
            }
            n = k;
        }
    }
    /* Room for them all first: nothing fails once the first is in. */
    if (rc == 0 && n) {
        uint64_t *r = realloc(s->restore, (s->nrestore + n) * sizeof *r);
        if (!r) rc = ERR_NOMEM;
        if (r) s->restore = r;
        if (rc == 0 && sq_heap_reserve(s, s->nheap + (uint32_t)n) != 0) rc = ERR_NOMEM;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        /* Ordered: a first attempt past the saved position is read again
         * with the messages around it, in publish order. Due at once from
         * here, it ran before an earlier message of its key that had run
         * and was settled in memory only (the position could not pass
         * another key's waiting message): the nemesis saw k:722 run again
         * before k:711. */
        if (s->cfg.ordered && !p[i].in_table && p[i].attempts == 0 && p[i].seq >= s->fetched)
            continue;
        sqlite3_bind_int64(one, 1, s->topic->id);
        sqlite3_bind_int64(one, 2, (sqlite3_int64)p[i].seq);
        sq_block *blk = NULL;
        uint32_t got = 0;
        int rrc = sq_read_rows(one, 1, &blk, &got);
        sqlite3_reset(one);
        if (rrc != SQLITE_OK) {
            rc = rrc == SQLITE_NOMEM ? ERR_NOMEM : ERR_STORE;
        } else if (blk && got == 1) {
            sq_lease *l = calloc(1, sizeof *l);
            /* A delayed message not yet run holds no key, as when it was
             * published (memory.c, defer). */
            int delayed = p[i].attempts == 0 && p[i].in_table;
            if (l && (delayed || sq_key_hold(s, &blk->msgs[0].m) == 0)) {
                l->base.msg = &blk->msgs[0].m;
                blk->msgs[0].refs = 1;
                l->base.sub = s;
                l->base.attempt = p[i].attempts;
                l->visible_ms = p[i].visible_ms;
                l->error = p[i].error;
                p[i].error = NULL;
                l->in_retry_table = (unsigned)p[i].in_table;
                /* Without a row it is durable only in the leased set: saved
                 * there by every snapshot until it is leased again (a trigger
                 * that leases only some at a time would otherwise drop the
                 * rest from the next snapshot, and a second kill -9 lose them). */
                l->unsaved = !p[i].in_table;
                list_init(&l->link);
                s->refs++;
                sq_heap_push(s, l); /* reserved above */
                s->restore[s->nrestore++] = p[i].seq;
            } else {
                free(l);
                rc = ERR_NOMEM;
            }
        }
        /* No row: settled and trimmed before the snapshot was saved. */
        if (blk) sq_block_settle(blk);
    }
    for (size_t i = 0; p && i < n; i++) free(p[i].error);
    free(p);
    sqlite3_finalize(one);
    if (s->nrestore) qsort(s->restore, s->nrestore, sizeof *s->restore, sq_cmp_u64);
    return rc;
}

sq_saved *sq_saved_find(queue_sub *s, uint64_t seq)
{
    size_t lo = 0, hi = s->nsaved;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->saved[mid].seq == seq) return &s->saved[mid];
        if (s->saved[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void sq_saved_forget(queue_sub *s, sq_saved *sv)
{
    free(sv->error);
    size_t i = (size_t)(sv - s->saved);
    memmove(sv, sv + 1, (s->nsaved - i - 1) * sizeof *sv);
    if (--s->nsaved == 0) sq_saved_free(s);
}

/* Their rows stay: what purge or the subscription's removal does not delete
 * is reloaded (or found settled) at the next start. */
void sq_saved_free(queue_sub *s)
{
    for (size_t i = 0; i < s->nsaved; i++) free(s->saved[i].error);
    free(s->saved);
    s->saved = NULL;
    s->nsaved = 0;
}
