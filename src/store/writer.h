/*
 * writer.h - one thread that owns the store's write connection and
 * group-commits: every operation handed over while it was busy goes into the
 * next transaction, so a commit (one fsync with synchronous=FULL) serves many
 * publishes and acknowledgements at once.
 *
 * Operations are built on the loop thread, executed on the writer thread, and
 * completed (done callback) back on the loop thread, in submission order.
 * A failed commit fails every operation of that transaction.
 */
#ifndef SPATE_WRITER_H
#define SPATE_WRITER_H

#include <sqlite3.h>
#include <uv.h>

#include "common/list.h"

typedef struct writer writer;
typedef struct wop wop;

struct wop {
    /* Runs on the writer thread inside the transaction (apply) or, for reads,
     * after the commit (read). Returns 0 or an SQLite error code; a write that
     * fails rolls back to its own savepoint and fails alone. */
    int (*apply)(sqlite3 *db, wop *op);
    int (*read)(sqlite3 *db, wop *op);
    /* Runs on the loop thread once the transaction is committed (status 0)
     * or failed (a negative ERR_*). */
    void (*done)(wop *op, int status);
    void *data;

    /* Private. */
    list_node link;
    int status;
};

/* Opens its own connection to path and starts the thread. */
int writer_start(uv_loop_t *loop, const char *path, writer **out, char *err, size_t errcap);
/* Queues op for the next transaction. Loop thread only. */
void writer_submit(writer *w, wop *op);
/* Called on the loop thread just before each handoff to the writer thread,
 * so the owner can add operations that snapshot its state (acknowledgements)
 * into the same transaction. */
void writer_set_presubmit(writer *w, void (*cb)(void *data), void *data);
/* Asks for a handoff at the end of this loop turn even if nothing is queued
 * yet (the presubmit hook will add something). */
void writer_kick(writer *w);
/* Finishes what is queued, stops the thread, closes the connection; cb runs
 * on the loop thread when all is done. */
void writer_stop(writer *w, void (*cb)(void *data), void *data);
/* Counters (loop thread). */
typedef struct writer_stats {
    uint64_t commits;
    uint64_t ops;
    uint64_t failures;
} writer_stats;
void writer_stats_get(const writer *w, writer_stats *out);

#endif
