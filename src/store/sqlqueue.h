/*
 * sqlqueue.h - the queue of one node (store/queue.h is the interface): the
 * log in the store's SQLite database, written by the group-committing writer
 * thread, and the working set in memory. src/store/queue/internal.h says how.
 */
#ifndef SPATE_SQLQUEUE_H
#define SPATE_SQLQUEUE_H

#include <stddef.h>
#include <uv.h>

#include "store/queue.h"
#include "store/store.h"

/* Loads topics and subscriptions from st (borrowed until queue_close's
 * callback) and starts the writer. On error, err says what failed. Caller
 * owns the queue; free with queue_close. */
int queue_open(uv_loop_t *loop, store *st, const queue_events *ev, queue **out, char *err,
               size_t errcap);

#endif
