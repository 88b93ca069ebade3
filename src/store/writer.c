#include "store/writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/storehealth.h"

/* After a failed transaction (an I/O error, a full disk) the next waits
 * this long, doubled after each failure up to the maximum: a disk that keeps
 * failing is not hammered, nor the log filled, and a publish waits at most
 * the maximum to learn that the store still fails. */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
/* At most one line a second about failing transactions (and a count of the
 * others); one line when they commit again. */
#define FAIL_LOG_EVERY_MS 1000
/* Transactions tried while stopping with the store failing. */
#define STOP_TRIES 3

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
    /* The thread's last transaction failed: written by it under mu, read on
     * the loop after async. */
    int last_failed;
    /* Loop thread: after a failure, handoffs wait for the timer. */
    uv_timer_t backoff;
    uint32_t backoff_ms;
    int backing_off;
    /* Loop thread: a transaction that only rewrites the schema's
     * user_version, to learn that the disk takes writes again when nothing
     * else is to be written (store/health.h then says healthy). */
    wop probe;
    int probing;
    int stop_failures;
    /* The thread's own: failures since the last commit, and their logging. */
    uint64_t failed_run, unlogged;
    int64_t failed_since_ms, logged_ms;
};

/* --- The thread ---------------------------------------------------------------------- */

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* What a failed transaction's rc says to the operations: the disk is full,
 * the disk failed, or the store refused otherwise. */
static int status_of(int rc)
{
    if (rc == SQLITE_OK) return 0;
    if ((rc & 0xff) == SQLITE_FULL) return ERR_NOSPACE;
    if ((rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_CANTOPEN ||
        (rc & 0xff) == SQLITE_CORRUPT)
        return ERR_IO;
    return ERR_STORE;
}

static void note_failure(writer *w, int rc, size_t nops)
{
    int ext = sqlite3_extended_errcode(w->db);
    const char *call = ext == SQLITE_IOERR_FSYNC || ext == SQLITE_IOERR_DIR_FSYNC   ? "an fsync"
                       : ext == SQLITE_IOERR_WRITE                                  ? "a write"
                       : ext == SQLITE_IOERR_READ || ext == SQLITE_IOERR_SHORT_READ ? "a read"
                       : ext == SQLITE_FULL ? "a write: the disk is full"
                                            : NULL;
    char what[160];
    if (call)
        snprintf(what, sizeof what, "%s (%s failed)", sqlite3_errmsg(w->db), call);
    else
        snprintf(what, sizeof what, "%s (SQLite code %d)", sqlite3_errmsg(w->db), ext);
    store_health_failed(STORE_OP_COMMIT, what);
    int64_t now = clock_now_ms();
    if (w->failed_run++ == 0) w->failed_since_ms = now;
    if (now - w->logged_ms < FAIL_LOG_EVERY_MS) {
        w->unlogged++;
        return;
    }
    w->logged_ms = now;
    log_error("store: transaction of %zu operations failed: %s; rolled back, its operations "
              "failed (%llu failed transactions since %lld ms ago, %llu not logged)",
              nops, what, (unsigned long long)w->failed_run, (long long)(now - w->failed_since_ms),
              (unsigned long long)w->unlogged);
    w->unlogged = 0;
}

static void note_success(writer *w)
{
    if (w->failed_run) {
        log_warn("store: commits again after %llu failed transactions over %lld ms",
                 (unsigned long long)w->failed_run,
                 (long long)(clock_now_ms() - w->failed_since_ms));
        w->failed_run = w->unlogged = 0;
        w->logged_ms = 0;
    }
    store_health_ok(STORE_OP_COMMIT);
}

/* Runs one batch as one transaction; nonzero when it or a read failed. */
static int run_batch(writer *w, list_node *batch)
{
    /* A failure may leave the transaction open (SQLite rolls back by itself
     * after some I/O errors, not after all): the next one starts clean. */
    if (!sqlite3_get_autocommit(w->db)) exec(w->db, "ROLLBACK");
    int rc = exec(w->db, "BEGIN IMMEDIATE");
    size_t nops = 0;
    for (list_node *n = list_first(batch); n != batch; n = n->next) {
        wop *op = list_entry(n, wop, link);
        nops++;
        if (rc == SQLITE_OK && op->apply) rc = op->apply(w->db, op);
    }
    if (rc == SQLITE_OK) rc = exec(w->db, "COMMIT");
    if (rc != SQLITE_OK) {
        note_failure(w, rc, nops);
        if (!sqlite3_get_autocommit(w->db)) exec(w->db, "ROLLBACK");
    } else {
        note_success(w);
    }
    int status = status_of(rc), read_failed = 0;
    for (list_node *n = list_first(batch); n != batch; n = n->next) {
        wop *op = list_entry(n, wop, link);
        op->status = status;
        /* Reads come after the commit: they see only what is durable. */
        if (status == 0 && op->read) {
            int rrc = op->read(w->db, op);
            if (rrc != SQLITE_OK) {
                read_failed = 1;
                op->status = status_of(rrc);
                store_health_failed(STORE_OP_READ, sqlite3_errmsg(w->db));
            } else {
                store_health_ok(STORE_OP_READ);
            }
        }
    }
    /* A failed read holds the next batch back as a failed commit does: what
     * reads again (a lagging trigger's fetch) waits for the backoff. */
    return rc != SQLITE_OK || read_failed;
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
        int failed = run_batch(w, &batch);
        uv_mutex_lock(&w->mu);
        w->last_failed = failed;
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
    if (!w->busy && !w->backing_off) uv_check_start(&w->check, on_check);
}

static int apply_probe(sqlite3 *db, wop *op)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    rc = sqlite3_finalize(st);
    if (rc != SQLITE_OK) return rc;
    if (v < 0) return SQLITE_ERROR;
    char sql[48];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
    return exec(db, sql);
}

static void done_probe(wop *op, int status)
{
    writer *w = op->data;
    w->probing = 0;
}

static void on_backoff(uv_timer_t *t)
{
    writer *w = t->data;
    w->backing_off = 0;
    /* Nothing else to write: a probe, so that the store is seen to recover. */
    if (list_empty(&w->pending) && !w->kicked && !w->probing && !w->stop_cb) {
        w->probing = 1;
        w->probe = (wop){.apply = apply_probe, .done = done_probe, .data = w};
        list_push_back(&w->pending, &w->probe.link);
    }
    handoff(w);
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
    w->closing_handles = 3;
    uv_close((uv_handle_t *)&w->async, on_handle_closed);
    uv_close((uv_handle_t *)&w->check, on_handle_closed);
    uv_close((uv_handle_t *)&w->backoff, on_handle_closed);
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
    int failed = w->last_failed;
    uv_mutex_unlock(&w->mu);
    if (list_empty(&done)) return;
    w->busy = 0;
    if (failed && !w->stop_cb) {
        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (w->backoff_ms > BACKOFF_MAX_MS) w->backoff_ms = BACKOFF_MAX_MS;
        w->backing_off = 1;
        uv_timer_start(&w->backoff, on_backoff, w->backoff_ms, 0);
    } else if (!failed) {
        w->backoff_ms = 0;
    }
    while (!list_empty(&done)) {
        wop *op = list_entry(list_first(&done), wop, link);
        list_remove(&op->link);
        if (op->status) w->stats.failures++;
        if (op->done) op->done(op, op->status);
    }
    if (w->stop_cb) {
        /* Stopping: one more transaction if anything (or the owner's
         * snapshot, through presubmit) is left, then the end. A store that
         * keeps failing gets a few tries: what is left then fails. */
        if (failed && ++w->stop_failures >= STOP_TRIES) {
            while (!list_empty(&w->pending)) {
                wop *op = list_entry(list_first(&w->pending), wop, link);
                list_remove(&op->link);
                w->stats.failures++;
                if (op->done) op->done(op, ERR_IO);
            }
            log_error("store: stopped with the store failing: the last acknowledgements and "
                      "progress of triggers were not saved (their messages run again after the "
                      "restart; no acknowledged publish is lost)");
            finish_stop(w);
            return;
        }
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
    uv_timer_init(loop, &w->backoff);
    w->backoff.data = w;
    if (uv_thread_create(&w->thread, thread_main, w) != 0) {
        snprintf(err, errcap, "cannot start the store writer thread");
        /* Handles are initialised; close them properly. */
        w->closing_handles = 3;
        uv_close((uv_handle_t *)&w->async, on_handle_closed);
        uv_close((uv_handle_t *)&w->check, on_handle_closed);
        uv_close((uv_handle_t *)&w->backoff, on_handle_closed);
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
    if (w->backing_off) {
        /* The last try, now: stopping does not wait for the disk. */
        uv_timer_stop(&w->backoff);
        w->backing_off = 0;
    }
    if (w->busy) return; /* on_async finishes the stop */
    handoff(w);
    if (!w->busy) finish_stop(w);
}

void writer_stats_get(const writer *w, writer_stats *out)
{
    *out = w->stats;
}
