/*
 * jsqueue.h - the queue of a cluster: topics as NATS JetStream streams,
 * triggers as durable pull consumers shared by the nodes (store/queue.h is
 * the interface; jsqueue.c says how each call maps).
 */
#ifndef SPATE_JSQUEUE_H
#define SPATE_JSQUEUE_H

#include <uv.h>

#include "cluster/cluster.h"
#include "store/queue.h"

int jsqueue_open(uv_loop_t *loop, cluster *c, const queue_events *ev, queue **out);

#endif
