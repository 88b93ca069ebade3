/*
 * sources.h - event sources: upstream brokers drained into spate topics
 * (docs/api.md "Sources"). Each source runs on its own thread (its client
 * library blocks): it fetches a batch upstream, hands it to the loop, which
 * publishes it into the source's topic through the queue interface, and
 * only after that publish committed (status 0) does the thread acknowledge
 * the batch upstream. A refused publish is not acknowledged: the source
 * waits (back-off) and publishes the same batch again; nothing is dropped.
 * At most one batch per source is in flight: that is the backpressure.
 *
 * Sources are kept in the registry (store/registry.h) and started at
 * sources_start. In a cluster the registry is shared: the manager follows
 * the changes other nodes make, and runs a source whose connector has no
 * consumer group (connector.h, group) only while this node holds its
 * lease; the others wait on standby. All calls are made on the loop.
 */
#ifndef SPATE_SOURCES_H
#define SPATE_SOURCES_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store/queue.h"
#include "store/registry.h"

typedef struct sources sources;

/* q and reg are borrowed for the life of the manager; consumer names this
 * node upstream (a Redis consumer's name); message_max is the largest
 * message a topic takes (larger upstream entries are refused). */
int sources_create(uv_loop_t *loop, queue *q, registry *reg, const char *consumer,
                   size_t message_max, sources **out);
void sources_set_message_max(sources *s, size_t message_max);
/* Names one of spated's own secret files (TLS key, cluster key, NATS
 * credentials, token or config file), which no source may use as its ca,
 * cert, key, creds or seed (sources/tls.h says why). Before sources_start;
 * "" is ignored. */
void sources_forbid_file(const char *path);
/* Starts every source the registry keeps. */
void sources_start(sources *s);
/* Stops every source (each thread finishes its batch in flight: committed
 * ones are acked) and frees the manager; cb when done. */
void sources_close(sources *s, void (*cb)(void *data), void *data);

/* Checks url (a 400's message in err, ERR_INVAL) without saving it. */
int sources_check_url(const char *url, char *err, size_t errcap);
/* Adds or replaces (and restarts) the source named src->name; *replaced
 * says which. ERR_INVAL (err says why), ERR_LIMIT (too many sources),
 * ERR_STORE. */
int sources_put(sources *s, const reg_source *src, int *replaced, char *err, size_t errcap);
/* Stops and forgets it. ERR_NOTFOUND, ERR_STORE. */
int sources_remove(sources *s, const char *name);

/* A source as shown: its configuration (the URL redacted) and status. */
typedef struct source_view {
    const char *name;
    const char *url; /* redacted */
    const char *topic;
    const char *key_field;
    int64_t created_ms;
    const char *state; /* connecting, running, backing-off, stopping */
    int connected;
    char last_error[512]; /* "" if none since the last success */
    int64_t last_error_ms;
    uint64_t received;      /* entries fetched upstream (a redelivery counts again) */
    uint64_t committed;     /* published into the topic, then acked upstream */
    uint64_t refused;       /* acked upstream but not published (too big, no key) */
    uint64_t dead_lettered; /* of those, stored in the topic's dead letters first */
    uint64_t publish_failures;
    int64_t lag;          /* entries upstream not yet delivered to the group; -1 unknown */
    const char *delivery; /* what the connector promises ("at-least-once", "at-most-once"...) */
    /* 1: runs on one node of a cluster, the holder of its lease (named, ""
     * when none is known or spated runs alone); 0: on every node. */
    int leased;
    char lease_holder[64];
    int64_t dropped; /* dropped by the client library (at-most-once); -1: cannot be */
} source_view;
typedef void (*sources_view_cb)(const source_view *v, void *data);
/* By name. */
void sources_each(sources *s, sources_view_cb cb, void *data);
/* ERR_NOTFOUND. */
int sources_get(sources *s, const char *name, sources_view_cb cb, void *data);

/* Writes url with its password replaced by *** (sources/url.c). */
void sources_url_redact(const char *url, char *out, size_t cap);

#endif
