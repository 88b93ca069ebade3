/* lease.c - the SQLite queue: the lease state machine: lease, ack, nack, release, dead letter. */
#include "store/queue/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "store/sql.h"

static sq_lease *lease_new(queue_sub *s, queue_msg *m, uint32_t attempt)
{
    sq_lease *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->base.msg = m;
    l->base.attempt = attempt;
    l->base.sub = s;
    list_push_back(&s->leased, &l->link);
    s->nleased++;
    s->refs++;
    s->delivered++;
    return l;
}

/* A reloaded retry (sv) at ready's position i, its key held, not yet due:
 * waits in the heap as before the restart, holding its key, and takes sv's
 * error. 0 if moved there, else -1 (no memory: it is leased now). */
static int retry_saved(queue_sub *s, size_t i, sq_saved *sv)
{
    sq_lease *l = calloc(1, sizeof *l);
    if (!l) return -1;
    l->base.msg = sq_ready_at(s, i);
    l->base.sub = s;
    l->base.attempt = sv->attempts;
    l->visible_ms = sv->visible_ms;
    l->in_retry_table = (unsigned)sv->in_table;
    l->unsaved = !sv->in_table;
    list_init(&l->link);
    if (sq_heap_push(s, l) != 0) {
        free(l);
        return -1;
    }
    l->error = sv->error;
    sv->error = NULL;
    s->refs++;
    sq_ready_take(s, i); /* ready's reference moves to the lease */
    sq_mark_dirty(s);
    sq_arm_retry(s);
    return 0;
}

queue_lease *sq_lease_next(queue_sub *s)
{
    if (s->closed) return NULL;
    /* Out of memory, nothing is taken: what is ready stays ready. */
    if (sq_heap_reserve(s, s->refs + 1) != 0) {
        log_error("store: cannot lease from '%s' for '%s': out of memory", s->topic->name,
                  s->cfg.function);
        return NULL;
    }
    int64_t now = clock_now_ms();
    if (s->nheap && s->heap[0]->visible_ms <= now) {
        sq_lease *l = sq_heap_pop(s);
        l->base.attempt++;
        l->unsaved = 0; /* in the leased set now */
        list_push_back(&s->leased, &l->link);
        s->nleased++;
        s->delivered++;
        sq_mark_dirty(s);
        sq_maybe_fetch(s);
        return &l->base;
    }
    sq_lease *l = NULL;
    if (s->cfg.ordered) {
        size_t scan = s->rlen < SPATE_QUEUE_ORDERED_SCAN ? s->rlen : SPATE_QUEUE_ORDERED_SCAN;
        for (size_t i = 0; i < scan; i++) {
            queue_msg *m = sq_ready_at(s, i);
            if (sq_key_busy(s, m)) continue;
            /* The key first: a message of a key not held would let the next
             * of its key run beside it. */
            if (sq_key_hold(s, m) != 0) break;
            sq_saved *sv = s->nsaved ? sq_saved_find(s, m->seq) : NULL;
            if (sv) {
                /* A retry reloaded after a restart, its turn come. */
                if (sv->visible_ms > now && retry_saved(s, i, sv) == 0) {
                    sq_saved_forget(s, sv);
                    i--;
                    scan--;
                    continue;
                }
                l = lease_new(s, m, sv->attempts + 1);
                if (l) {
                    l->error = sv->error;
                    sv->error = NULL;
                    l->in_retry_table = (unsigned)sv->in_table;
                    sq_saved_forget(s, sv);
                    sq_ready_take(s, i);
                } else {
                    sq_key_free(s, m); /* its state stays for the next try */
                }
                break;
            }
            l = lease_new(s, m, 1);
            if (l)
                sq_ready_take(s, i);
            else
                sq_key_free(s, m);
            break;
        }
    } else if (s->rlen) {
        l = lease_new(s, sq_ready_at(s, 0), 1);
        if (l) sq_ready_take(s, 0);
    }
    if (l) sq_mark_dirty(s);
    sq_maybe_fetch(s);
    return l ? &l->base : NULL;
}

/* Takes l off the leased list; the message reference stays with l. */
static void unlease(sq_lease *l)
{
    queue_sub *s = l->base.sub;
    list_remove(&l->link);
    s->nleased--;
    sq_mark_dirty(s);
}

typedef struct retry_op {
    wop op;
    queue *q;
    queue_sub *sub; /* referenced; NULL in a dead letter's op */
    int64_t sub_id;
    uint64_t seq;
    uint32_t attempts;
    int64_t visible_ms;
    char *error; /* NULL: delete the row */
} retry_op;

static int apply_retry(sqlite3 *db, wop *op)
{
    retry_op *r = (retry_op *)op;
    queue *q = r->q;
    sqlite3_stmt *st;
    int rc;
    if (r->error) {
        rc = sql_prepare_cached(db, &q->upsert_retry,
                                "INSERT INTO retries (sub_id, seq, attempts, visible_ms, error)"
                                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(sub_id, seq) DO UPDATE SET"
                                " attempts = excluded.attempts, visible_ms = excluded.visible_ms,"
                                " error = excluded.error");
        st = q->upsert_retry;
    } else {
        rc = sql_prepare_cached(db, &q->del_retry,
                                "DELETE FROM retries WHERE sub_id = ? AND seq = ?");
        st = q->del_retry;
    }
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, r->sub_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)r->seq);
    if (r->error) {
        sqlite3_bind_int64(st, 3, r->attempts);
        sqlite3_bind_int64(st, 4, r->visible_ms);
        sqlite3_bind_text(st, 5, r->error, -1, SQLITE_STATIC);
    }
    return sql_step_reset(st);
}

static void done_retry(wop *op, int status)
{
    retry_op *r = (retry_op *)op;
    queue_sub *s = r->sub;
    if (status != 0 && r->error && !s->closed) {
        /* The row was not written (the store failed), and the snapshot that
         * no longer counts the message as leased may commit once the store
         * recovers: the retry is saved as leased instead, as when its row
         * could not be built (a restart delivers it again). */
        for (uint32_t i = 0; i < s->nheap; i++) {
            sq_lease *l = s->heap[i];
            if (l->base.msg->seq != r->seq) continue;
            l->unsaved = 1;
            sq_mark_dirty(s);
            break;
        }
    }
    /* A row not deleted (an ack's) may run its message again after a
     * restart: a duplicate of work that was in flight, nothing lost. */
    free(r->error);
    free(r);
    sq_sub_unref(s);
}

/* Writes (error set) or deletes (NULL) the retry row of message seq. */
static int submit_retry(queue_sub *s, uint64_t seq, uint32_t attempts, int64_t visible_ms,
                        const char *error)
{
    retry_op *r = calloc(1, sizeof *r);
    /* An error that cannot be copied is saved empty: a NULL error would
     * delete the row that keeps the retry across a restart. */
    char *e = r && error ? strdup(error) : NULL;
    if (!r || (error && !e && !(e = strdup("")))) {
        free(r);
        return ERR_NOMEM;
    }
    r->q = s->q;
    r->sub = s;
    s->refs++;
    r->sub_id = s->id;
    r->seq = seq;
    r->attempts = attempts;
    r->visible_ms = visible_ms;
    r->error = e;
    r->op.apply = apply_retry;
    r->op.done = done_retry;
    writer_submit(s->q->w, &r->op);
    return 0;
}

void sq_submit_retry(sq_lease *l, const char *error)
{
    queue_sub *s = l->base.sub;
    if (submit_retry(s, l->base.msg->seq, l->base.attempt, l->visible_ms, error) == 0) return;
    if (error) {
        /* Saved as leased with the next snapshot instead (sq_presubmit). */
        log_error("store: cannot save the retry of message %llu of '%s' for '%s': out of "
                  "memory (saved as in flight)",
                  (unsigned long long)l->base.msg->seq, s->topic->name, s->cfg.function);
        l->unsaved = 1;
        sq_mark_dirty(s);
    } else {
        log_error("store: cannot delete the retry of message %llu of '%s' for '%s': out of "
                  "memory (it may run again after a restart)",
                  (unsigned long long)l->base.msg->seq, s->topic->name, s->cfg.function);
    }
}

void sq_drop_saved(queue_sub *s)
{
    for (size_t i = 0; i < s->nsaved; i++)
        if (s->saved[i].in_table && submit_retry(s, s->saved[i].seq, 0, 0, NULL) != 0)
            log_error("store: cannot delete the retry of message %llu of '%s' for '%s': out of "
                      "memory (found settled at the next start)",
                      (unsigned long long)s->saved[i].seq, s->topic->name, s->cfg.function);
    sq_saved_free(s);
}

void sq_lease_free(sq_lease *l)
{
    queue_sub *s = l->base.sub;
    sq_msg_unref(l->base.msg);
    free(l->error);
    free(l);
    sq_sub_unref(s);
}

void sq_ack(queue_lease *ql)
{
    sq_lease *l = sq_lease_of(ql);
    queue_sub *s = l->base.sub;
    unlease(l);
    sq_key_free(s, l->base.msg);
    if (s->closed)
        sq_retire_counts(s->q, s->topic, 1, 0);
    else
        s->acked++;
    if (l->in_retry_table && !s->closed) sq_submit_retry(l, NULL);
    sq_lease_free(l);
}

void sq_nack(queue_lease *ql, uint32_t delay_ms, const char *error)
{
    sq_lease *l = sq_lease_of(ql);
    queue_sub *s = l->base.sub;
    unlease(l);
    if (s->closed) {
        sq_lease_free(l);
        return;
    }
    l->visible_ms = clock_now_ms() + delay_ms;
    free(l->error);
    l->error = strdup(error ? error : "");
    l->in_retry_table = 1;
    sq_submit_retry(l, l->error ? l->error : "");
    if (sq_heap_push(s, l) != 0) {
        sq_lease_free(l);
        return;
    }
    sq_arm_retry(s);
}

void sq_release(queue_lease *ql)
{
    sq_lease *l = sq_lease_of(ql);
    queue_sub *s = l->base.sub;
    unlease(l);
    if (s->closed) {
        sq_lease_free(l);
        return;
    }
    if (l->base.attempt > 1 || l->in_retry_table) {
        /* A retry: back in the heap, due now, its count unchanged; saved
         * as leased until leased again when no row keeps it (one restored
         * from the leased set). */
        l->base.attempt--;
        l->visible_ms = clock_now_ms();
        if (!l->in_retry_table) {
            l->unsaved = 1;
            sq_mark_dirty(s);
        }
        if (sq_heap_push(s, l) == 0) {
            sq_notify(s);
            return;
        }
    } else {
        sq_msg_of(l->base.msg)->refs++;
        if (sq_ready_insert(s, l->base.msg) == 0) {
            sq_key_free(s, l->base.msg);
            sq_lease_free(l);
            sq_notify(s);
            return;
        }
        sq_msg_of(l->base.msg)->refs--;
        /* No room in the ready ring (out of memory): a retry due now instead,
         * its key still held, in the heap (which has room: sq_heap_reserve). */
        l->base.attempt--;
        l->visible_ms = clock_now_ms();
        l->in_retry_table = 1;
        sq_submit_retry(l, "");
        if (sq_heap_push(s, l) == 0) {
            sq_notify(s);
            return;
        }
    }
    log_error("store: message %llu of '%s' for '%s' dropped: out of memory",
              (unsigned long long)l->base.msg->seq, s->topic->name, s->cfg.function);
    sq_lease_free(l);
}

typedef struct dead_op {
    publish_op pub; /* the insertion into the dead-letter topic */
    sq_lease *lease;
} dead_op;

static int apply_dead(sqlite3 *db, wop *op)
{
    dead_op *d = (dead_op *)op;
    int rc = sq_apply_publish(db, op);
    if (rc == SQLITE_OK && d->lease->in_retry_table) {
        retry_op r = {
            .q = d->pub.q, .sub_id = d->lease->base.sub->id, .seq = d->lease->base.msg->seq};
        rc = apply_retry(db, &r.op);
    }
    return rc;
}

static void done_dead(wop *op, int status)
{
    dead_op *d = (dead_op *)op;
    sq_lease *l = d->lease;
    queue_sub *s = l->base.sub;
    if (status == 0) {
        sq_key_free(s, l->base.msg);
        if (s->closed)
            sq_retire_counts(s->q, s->topic, 0, 1);
        else
            s->dead_lettered++;
        sq_mark_dirty(s);
        sq_lease_free(l);
    } else if (!s->closed) {
        /* Not moved: keep it, and try again soon. */
        l->visible_ms = clock_now_ms() + SPATE_QUEUE_DEAD_LETTER_RETRY_MS;
        l->base.attempt--;
        l->unsaved = 1; /* the snapshot without it failed with the move */
        if (sq_heap_push(s, l) == 0)
            sq_arm_retry(s);
        else
            sq_lease_free(l);
    } else {
        sq_lease_free(l);
    }
    d->pub.op.done = NULL;
    sq_done_publish(op, status); /* frees d (its first member) */
}

void sq_dead_letter(queue_lease *ql, const char *error)
{
    sq_lease *l = sq_lease_of(ql);
    queue_sub *s = l->base.sub;
    queue *q = s->q;
    unlease(l);
    sq_topic *t = sq_topic_get(q, s->cfg.dlq, 1);
    const queue_msg *m = l->base.msg;
    size_t srclen = strlen(s->topic->name) + 1;
    size_t errlen = strlen(error ? error : "") + 1;
    char *mem = malloc(m->len + 1 + (m->key ? m->key_len + 1 : 0) + srclen + errlen +
                       queue_attrs_size(m->attrs));
    sq_block *b = mem && t ? sq_block_new(1, mem) : NULL;
    dead_op *d = b ? calloc(1, sizeof *d) : NULL;
    if (!d) {
        free(mem);
        free(b);
        log_error("out of memory moving a message to '%s'", s->cfg.dlq);
        l->visible_ms = clock_now_ms() + SPATE_QUEUE_DEAD_LETTER_RETRY_MS;
        l->base.attempt--;
        l->unsaved = 1; /* no row: the snapshot keeps it (unlease made it dirty) */
        if (sq_heap_push(s, l) == 0) sq_arm_retry(s);
        return;
    }
    queue_msg *dm = &b->msgs[0].m;
    char *p = mem;
    memcpy(p, m->data, m->len);
    dm->data = p;
    dm->len = m->len;
    p += m->len + 1;
    if (m->key) {
        memcpy(p, m->key, m->key_len + 1);
        dm->key = p;
        dm->key_len = m->key_len;
        p += m->key_len + 1;
    }
    memcpy(p, s->topic->name, srclen);
    dm->source = p;
    p += srclen;
    memcpy(p, error ? error : "", errlen);
    dm->error = p;
    p += errlen;
    dm->attrs = queue_attrs_copy(&p, m->attrs); /* a dead letter keeps where it came from */
    dm->attempts = l->base.attempt;
    d->lease = l;
    publish_op *pub = &d->pub;
    pub->first = t->next_seq;
    dm->seq = t->next_seq++;
    dm->published_ms = clock_now_ms();
    pub->q = q;
    pub->topic = t;
    pub->block = b;
    pub->create_topic = !t->persisted;
    t->persisted = 1;
    pub->op.apply = apply_dead;
    pub->op.done = done_dead;
    writer_submit(q->w, &pub->op);
}
