/* read.c - the SQLite queue: reading a topic's stored messages, and redriving dead letters back to
 * their sources. */
#include "store/queue/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/limits.h"

typedef struct read_op {
    wop op;
    queue *q;
    int64_t topic_id;
    uint64_t after;
    uint32_t limit;
    sq_block *block;
    queue_read_cb cb;
    void *data;
    /* redrive */
    int redrive;
    queue_redrive_cb rcb;
} read_op;

static int read_topic(sqlite3 *db, wop *op)
{
    read_op *r = (read_op *)op;
    sqlite3_stmt *st;
    char sql[320];
    /* A redrive reads dead letters only: a message without a source has
     * nowhere to go back to, and is not the redrive's to move or delete. */
    snprintf(sql, sizeof sql, "%s WHERE topic_id = ? AND seq > ?%s ORDER BY seq LIMIT ?",
             sq_select_rows, r->redrive ? " AND source IS NOT NULL AND source <> ''" : "");
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, r->topic_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)r->after);
    sqlite3_bind_int64(st, 3, r->limit);
    uint32_t n;
    rc = sq_read_rows(st, r->limit, &r->block, &n);
    sqlite3_finalize(st);
    return rc;
}

/* Deletes the dead letters a redrive republished, by seq, in the same
 * transaction as their publishes (submitted just before it in the same loop
 * turn, so in the same batch): both happen or neither. */
typedef struct redrive_op {
    wop op;
    sq_topic *dlq;
    uint64_t *seqs; /* republished: these are deleted, nothing else */
    size_t nseqs;
    uint64_t deleted, bytes;
    int64_t oldest_ms;  /* of what is left */
    int publish_failed; /* set by on_redrive_published when a publish failed at once */
    queue_redrive_cb cb;
    void *data;
} redrive_op;

static int apply_redrive_delete(sqlite3 *db, wop *op)
{
    redrive_op *r = (redrive_op *)op;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db,
                                "DELETE FROM messages WHERE topic_id = ? AND seq = ?"
                                " AND source IS NOT NULL" RETURNING_BYTES,
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    for (size_t i = 0; i < r->nseqs && rc == SQLITE_OK; i++) {
        sqlite3_bind_int64(st, 1, r->dlq->id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)r->seqs[i]);
        rc = sq_delete_rows(st, &r->deleted, &r->bytes);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK) r->oldest_ms = sq_first_published(db, r->dlq->id);
    return rc;
}

static void done_redrive_delete(wop *op, int status)
{
    redrive_op *r = (redrive_op *)op;
    /* trimmed stays: the deletion left holes, not a clean prefix. */
    if (status == 0) sq_forget_rows(r->dlq, r->deleted, r->bytes, r->oldest_ms);
    r->cb(r->data, status, status ? 0 : r->nseqs);
    free(r->seqs);
    free(r);
}

/* A publish that fails at once (out of memory) says so here, before its seq
 * is added to those to delete; one that fails later failed with the whole
 * transaction, the deletion included. */
static void on_redrive_published(void *data, int status, uint64_t first)
{
    (void)first;
    if (status) ((redrive_op *)data)->publish_failed = 1;
}

/* Copies dead letter m as a new message of its source topic t (no source,
 * attempts start again) and submits it. 0, or -1 when it was not published. */
static int republish(queue *q, sq_topic *t, const queue_msg *m, redrive_op *d)
{
    size_t kl = m->key ? m->key_len + 1 : 0;
    char *mem = malloc(m->len + 1 + kl + queue_attrs_size(m->attrs));
    sq_block *nb = mem ? sq_block_new(1, mem) : NULL;
    if (!nb) {
        free(mem);
        return -1;
    }
    memcpy(mem, m->data, m->len);
    nb->msgs[0].m.data = mem;
    nb->msgs[0].m.len = m->len;
    if (m->key) {
        memcpy(mem + m->len + 1, m->key, kl);
        nb->msgs[0].m.key = mem + m->len + 1;
        nb->msgs[0].m.key_len = m->key_len;
    }
    char *p = mem + m->len + 1 + kl;
    nb->msgs[0].m.attrs = queue_attrs_copy(&p, m->attrs);
    d->publish_failed = 0;
    sq_submit_messages(q, t, nb, on_redrive_published, d);
    return d->publish_failed ? -1 : 0;
}

static sq_topic *topic_by_id(queue *q, int64_t id)
{
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        sq_topic *t = list_entry(n, sq_topic, link);
        if (t->id == id) return t;
    }
    return NULL;
}

/* The dead letters read: each published back to its source, and deleted from
 * the dead-letter topic in the same transaction. */
static void redrive_block(queue *q, read_op *r, sq_block *b)
{
    redrive_op *d = calloc(1, sizeof *d);
    uint64_t *seqs = d ? calloc(b->n, sizeof *seqs) : NULL;
    if (!seqs) {
        free(d);
        r->rcb(r->data, ERR_NOMEM, 0);
        return;
    }
    d->seqs = seqs;
    d->cb = r->rcb;
    d->data = r->data;
    d->dlq = topic_by_id(q, r->topic_id);
    if (!d->dlq) {
        free(seqs);
        free(d);
        r->rcb(r->data, ERR_NOTFOUND, 0);
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        const queue_msg *m = &b->msgs[i].m;
        if (!m->source || !*m->source) continue; /* never: the read asked for sources */
        sq_topic *t = sq_topic_get(q, m->source, 1);
        if (!t || t == d->dlq) continue; /* back to itself would loop; leave it */
        if (republish(q, t, m, d) == 0) d->seqs[d->nseqs++] = m->seq;
    }
    d->op.apply = apply_redrive_delete;
    d->op.done = done_redrive_delete;
    writer_submit(q->w, &d->op);
}

static void done_read(wop *op, int status)
{
    read_op *r = (read_op *)op;
    queue *q = r->q;
    sq_block *b = r->block;
    if (!r->redrive) {
        queue_msg *ptrs[SPATE_QUEUE_READ_MAX];
        size_t n = b ? b->n : 0;
        for (size_t i = 0; i < n && i < SPATE_QUEUE_READ_MAX; i++) ptrs[i] = &b->msgs[i].m;
        r->cb(r->data, status, ptrs, status ? 0 : n);
    } else if (status != 0 || !b || b->n == 0) {
        r->rcb(r->data, status, 0);
    } else {
        redrive_block(q, r, b);
    }
    if (b) sq_block_settle(b);
    free(r);
}

static read_op *new_read(queue *q, sq_topic *t, uint64_t after, uint32_t limit)
{
    read_op *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->q = q;
    r->topic_id = t->id;
    r->after = after;
    r->limit = limit > SPATE_QUEUE_READ_MAX ? SPATE_QUEUE_READ_MAX : limit;
    r->op.read = read_topic;
    r->op.done = done_read;
    return r;
}

int sq_read(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_read_cb cb,
            void *data)
{
    sq_topic *t = sq_topic_get(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    read_op *r = new_read(q, t, after, limit);
    if (!r) return ERR_NOMEM;
    r->cb = cb;
    r->data = data;
    writer_submit(q->w, &r->op);
    return 0;
}

int sq_redrive(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_redrive_cb cb,
               void *data)
{
    sq_topic *t = sq_topic_get(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    read_op *r = new_read(q, t, after, limit);
    if (!r) return ERR_NOMEM;
    r->redrive = 1;
    r->rcb = cb;
    r->data = data;
    writer_submit(q->w, &r->op);
    return 0;
}
