/*
 * jsqueue.h - the queue interface (store/queue.h) on NATS JetStream, shared
 * by the nodes of a cluster. How each part of the interface maps:
 *
 *   topic          a stream SPATE_T_<name> (file storage, the cluster's
 *                  replicas) on subjects spate.t.<name>.k00 to .k63 (a keyed
 *                  message goes to the part its key hashes to) and .u (no
 *                  key); a message carries its key and publish time as headers
 *   subscription   a durable pull consumer named after the function, shared
 *                  by every node; AckWait is the subscription's ack wait
 *                  (queue_sub_config.ack_wait_ms: the function's timeout) plus a
 *                  margin, so the messages of a node that dies go to others
 *   lease          a fetched message. A node fetches only what its trigger
 *                  says it has room for (queue_events.room), so work flows to
 *                  free capacity
 *   ack / nack     Ack / NakWithDelay; release is a Nak at once; dead letter:
 *                  the message is published to the dead-letter topic, then
 *                  terminated
 *   attempt        failures recorded in the cluster's attempts bucket (the
 *                  delivery count also counts hand-backs that never ran it)
 *   ordered        a consumer per key part with MaxAckPending 1: a key's
 *                  messages run one at a time, in order, on whichever node;
 *                  the 64 parts run in parallel (and unkeyed messages freely)
 *
 * The code is in cluster/jsqueue/, one concern a file (its internal.h lists
 * them and says which thread runs what).
 */
#ifndef SPATE_JSQUEUE_H
#define SPATE_JSQUEUE_H

#include <uv.h>

#include "cluster/cluster.h"
#include "store/queue.h"

/* Opens the queue of cluster c (borrowed until the queue is closed, with
 * queue_close); it starts empty and learns the cluster's topics within a
 * second. Returns 0 or ERR_NOMEM. */
int jsqueue_open(uv_loop_t *loop, cluster *c, const queue_events *ev, queue **out);

#endif
