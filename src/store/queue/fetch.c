/* fetch.c - the SQLite queue: fetching: a lagging subscription reads the next chunk from the store
 * when its ready ring runs low. */
#include "store/queue/internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"

typedef struct fetch_op {
    wop op;
    queue_sub *sub;
    int64_t topic_id;
    uint64_t from;
    uint32_t limit;
    sq_block *block;
    int complete; /* fewer rows than asked: nothing more to fetch now */
} fetch_op;

static int read_fetch(sqlite3 *db, wop *op)
{
    fetch_op *f = (fetch_op *)op;
    sqlite3_stmt *st;
    char sql[256];
    snprintf(sql, sizeof sql, "%s WHERE topic_id = ? AND seq >= ? ORDER BY seq LIMIT ?",
             sq_select_rows);
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, f->topic_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)f->from);
    sqlite3_bind_int64(st, 3, f->limit);
    uint32_t n = 0;
    rc = sq_read_rows(st, f->limit, &f->block, &n);
    sqlite3_finalize(st);
    f->complete = n < f->limit;
    return rc;
}

static int restored(const queue_sub *s, uint64_t seq)
{
    size_t lo = 0, hi = s->nrestore;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->restore[mid] == seq) return 1;
        if (s->restore[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static void done_fetch(wop *op, int status)
{
    fetch_op *f = (fetch_op *)op;
    queue_sub *s = f->sub;
    s->fetching = 0;
    if (status == 0 && f->block && !s->closed) {
        sq_block *b = f->block;
        uint64_t last = f->from - 1;
        int short_of_memory = 0;
        for (size_t i = 0; i < b->n; i++) {
            queue_msg *m = &b->msgs[i].m;
            if (m->seq >= s->fetched && !restored(s, m->seq) &&
                m->published_ms >= s->topic->expired_ms && sq_ready_push(s, m) != 0) {
                /* Read again from here with the next fetch. */
                short_of_memory = 1;
                break;
            }
            /* Else taken, or came with a publish meanwhile, or reloaded at
             * start-up, or retention took it. */
            last = m->seq;
        }
        if (last + 1 > s->fetched) s->fetched = last + 1;
        if (short_of_memory) {
            log_error("store: '%s' for '%s' stops reading at message %llu: out of memory",
                      s->topic->name, s->cfg.function, (unsigned long long)(last + 1));
        } else if (f->complete) {
            /* Everything committed so far is in memory now. */
            if (s->fetched < s->topic->committed) s->fetched = s->topic->committed;
            s->lagging = 0;
            s->lag_oldest_ms = 0;
            free(s->restore);
            s->restore = NULL;
            s->nrestore = 0;
        } else if (b->n) {
            s->lag_oldest_ms = 0;
        }
        /* The untaken dropped before the available event, which may settle
         * at once what it was handed (a trigger on an SQS queue acks its own
         * subscription's copies): that freed the block when it held every
         * message, and the settle after it read the freed block (heap
         * corruption when a mapping was made on a queue with messages). */
        sq_block_settle(b);
        f->block = NULL;
        sq_mark_dirty(s);
        sq_notify(s);
    }
    if (f->block) sq_block_settle(f->block);
    int again = status != 0 && !s->closed && !s->q->closing;
    if (again) {
        /* One line a second at most, however many triggers lag (loop thread). */
        static int64_t logged_ms;
        static uint64_t unlogged;
        int64_t now = clock_now_ms();
        if (now - logged_ms >= 1000) {
            log_error("store: cannot read '%s' for '%s': %s (read again once the store answers; "
                      "%llu more such failures not logged)",
                      s->topic->name, s->cfg.function, err_str(status),
                      (unsigned long long)unlogged);
            logged_ms = now;
            unlogged = 0;
        } else {
            unlogged++;
        }
        /* Again now: the writer holds it back while the store fails (its
         * backoff). Waiting for the next lease would wait forever when
         * nothing is leased nor ready: a publish does not wake a lagging
         * subscription. */
        sq_maybe_fetch(s);
    }
    sq_sub_unref(s);
    free(f);
}

/* Fetches the next chunk for a lagging subscription when ready runs low. */
void sq_maybe_fetch(queue_sub *s)
{
    if (!s->lagging || s->fetching || s->closed || s->rlen > SPATE_QUEUE_READY_MAX / 4 ||
        s->retry_bytes > SPATE_QUEUE_RETRY_BYTES_MAX)
        return;
    fetch_op *f = calloc(1, sizeof *f);
    if (!f) return;
    f->sub = s;
    f->topic_id = s->topic->id;
    f->from = s->fetched;
    f->limit = SPATE_QUEUE_FETCH_ROWS;
    f->op.read = read_fetch;
    f->op.done = done_fetch;
    s->fetching = 1;
    s->refs++;
    writer_submit(s->q->w, &f->op);
}
