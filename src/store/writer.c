#include "store/writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"

struct writer {
    uv_loop_t *loop;
    sqlite3 *db;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    list_node pending;  /* loop thread: not yet handed over */
    list_node handed;   /* under mu: the batch the thread is to run */
    list_node finished; /* under mu: run, awaiting completion on the loop */
    int busy;           /* loop thread: a batch is with the thread */
    int kicked;
    int stopping; /* under mu */
    uv_async_t async;
    uv_check_t check;
    void (*presubmit)(void *);
    void *presubmit_data;
    void (*stop_cb)(void *);
    void *stop_data;
    int closing_handles;
    writer_stats stats;
    int failed_batches; /* written by the thread, read on the loop after async */
};

/* --- The thread ---------------------------------------------------------------------- */

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Runs one batch as one transaction. */
static void run_batch(writer *w, list_node *batch)
{
    int rc = exec(w->db, "BEGIN IMMEDIATE");
    for (list_node *n = list_first(batch); rc == SQLITE_OK && n != batch; n = n->next) {
        wop *op = list_entry(n, wop, link);
        if (op->apply) rc = op->apply(w->db, op);
    }
    if (rc == SQLITE_OK) rc = exec(w->db, "COMMIT");
    if (rc != SQLITE_OK) {
        log_error("store: transaction failed: %s (%d)", sqlite3_errmsg(w->db), rc);
        exec(w->db, "ROLLBACK");
    }
    int status = rc == SQLITE_OK ? 0
                 : (rc == SQLITE_FULL || rc == SQLITE_IOERR || (rc & 0xff) == SQLITE_IOERR)
                     ? ERR_IO
                     : ERR_STORE;
    for (list_node *n = list_first(batch); n != batch; n = n->next) {
        wop *op = list_entry(n, wop, link);
        op->status = status;
        /* Reads come after the commit: they see only what is durable. */
        if (status == 0 && op->read && op->read(w->db, op) != SQLITE_OK) op->status = ERR_STORE;
    }
}

static void thread_main(void *arg)
{
    writer *w = arg;
    list_node batch;
    uv_mutex_lock(&w->mu);
    for (;;) {
        while (list_empty(&w->handed) && !w->stopping) uv_cond_wait(&w->cv, &w->mu);
        if (list_empty(&w->handed)) break;
        /* Take the whole batch. */
        list_init(&batch);
        while (!list_empty(&w->handed)) {
            list_node *n = list_first(&w->handed);
            list_remove(n);
            list_push_back(&batch, n);
        }
        uv_mutex_unlock(&w->mu);
        run_batch(w, &batch);
        uv_mutex_lock(&w->mu);
        while (!list_empty(&batch)) {
            list_node *n = list_first(&batch);
            list_remove(n);
            list_push_back(&w->finished, n);
        }
        uv_async_send(&w->async);
    }
    uv_mutex_unlock(&w->mu);
}

/* --- The loop side ------------------------------------------------------------------- */

static void handoff(writer *w)
{
    if (w->busy) return;
    w->kicked = 0;
    if (w->presubmit) w->presubmit(w->presubmit_data);
    if (list_empty(&w->pending)) return;
    uv_mutex_lock(&w->mu);
    while (!list_empty(&w->pending)) {
        list_node *n = list_first(&w->pending);
        list_remove(n);
        list_push_back(&w->handed, n);
        w->stats.ops++;
    }
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu);
    w->busy = 1;
    w->stats.commits++;
}

static void on_check(uv_check_t *h)
{
    writer *w = h->data;
    uv_check_stop(h);
    handoff(w);
}

static void want_handoff(writer *w)
{
    if (!w->busy) uv_check_start(&w->check, on_check);
}

static void on_handle_closed(uv_handle_t *h)
{
    writer *w = h->data;
    if (--w->closing_handles > 0) return;
    void (*cb)(void *) = w->stop_cb;
    void *data = w->stop_data;
    sqlite3_close_v2(w->db);
    uv_mutex_destroy(&w->mu);
    uv_cond_destroy(&w->cv);
    free(w);
    if (cb) cb(data);
}

static void finish_stop(writer *w)
{
    uv_mutex_lock(&w->mu);
    w->stopping = 1;
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu);
    uv_thread_join(&w->thread);
    w->closing_handles = 2;
    uv_close((uv_handle_t *)&w->async, on_handle_closed);
    uv_close((uv_handle_t *)&w->check, on_handle_closed);
}

static void on_async(uv_async_t *a)
{
    writer *w = a->data;
    list_node done;
    list_init(&done);
    uv_mutex_lock(&w->mu);
    while (!list_empty(&w->finished)) {
        list_node *n = list_first(&w->finished);
        list_remove(n);
        list_push_back(&done, n);
    }
    uv_mutex_unlock(&w->mu);
    if (list_empty(&done)) return;
    w->busy = 0;
    while (!list_empty(&done)) {
        wop *op = list_entry(list_first(&done), wop, link);
        list_remove(&op->link);
        if (op->status) w->stats.failures++;
        if (op->done) op->done(op, op->status);
    }
    if (w->stop_cb) {
        /* Stopping: one more transaction if anything (or the owner's
         * snapshot, through presubmit) is left, then the end. */
        handoff(w);
        if (!w->busy) finish_stop(w);
        return;
    }
    /* What came in meanwhile goes at the end of this turn, with whatever else
     * this turn adds. */
    if (!list_empty(&w->pending) || w->kicked) want_handoff(w);
}

int writer_start(uv_loop_t *loop, const char *path, writer **out, char *err, size_t errcap)
{
    writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errcap, "cannot start the store writer: out of memory");
        return ERR_NOMEM;
    }
    w->loop = loop;
    list_init(&w->pending);
    list_init(&w->handed);
    list_init(&w->finished);
    char cache[64];
    snprintf(cache, sizeof cache, "PRAGMA cache_size=-%u", SPATE_WRITER_CACHE_KIB);
    if (sqlite3_open_v2(path, &w->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        exec(w->db, "PRAGMA synchronous=FULL") != SQLITE_OK || exec(w->db, cache) != SQLITE_OK) {
        snprintf(err, errcap, "cannot open store '%s' for writing: %s", path,
                 w->db ? sqlite3_errmsg(w->db) : "out of memory");
        sqlite3_close_v2(w->db);
        free(w);
        return ERR_STORE;
    }
    sqlite3_busy_timeout(w->db, SPATE_WRITER_BUSY_TIMEOUT_MS);
    uv_mutex_init(&w->mu);
    uv_cond_init(&w->cv);
    uv_async_init(loop, &w->async, on_async);
    w->async.data = w;
    uv_check_init(loop, &w->check);
    w->check.data = w;
    if (uv_thread_create(&w->thread, thread_main, w) != 0) {
        snprintf(err, errcap, "cannot start the store writer thread");
        /* Handles are initialised; close them properly. */
        w->closing_handles = 2;
        uv_close((uv_handle_t *)&w->async, on_handle_closed);
        uv_close((uv_handle_t *)&w->check, on_handle_closed);
        return ERR_IO;
    }
    *out = w;
    return 0;
}

void writer_submit(writer *w, wop *op)
{
    op->status = 0;
    list_push_back(&w->pending, &op->link);
    want_handoff(w);
}

void writer_set_presubmit(writer *w, void (*cb)(void *data), void *data)
{
    w->presubmit = cb;
    w->presubmit_data = data;
}

void writer_kick(writer *w)
{
    w->kicked = 1;
    want_handoff(w);
}

void writer_stop(writer *w, void (*cb)(void *data), void *data)
{
    w->stop_cb = cb;
    w->stop_data = data;
    if (w->busy) return; /* on_async finishes the stop */
    handoff(w);
    if (!w->busy) finish_stop(w);
}

void writer_stats_get(const writer *w, writer_stats *out)
{
    *out = w->stats;
}
