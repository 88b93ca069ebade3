/*
 * connector.h - what a source needs of an upstream broker: a table per URL
 * scheme (parse, connect, fetch, ack, lag, disconnect). Connectors wrap
 * blocking client libraries, so every call but parse runs on the source's
 * own thread (sources/sources.c), never on the loop.
 *
 * The contract that makes a source lose nothing: fetch hands over a batch
 * and the connector keeps each entry pending upstream until ack names it;
 * the manager acks only after the batch is durable in spate. After a
 * (re)connect, fetch first gives again what was fetched and never acked.
 */
#ifndef SPATE_SOURCES_CONNECTOR_H
#define SPATE_SOURCES_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* One upstream entry, converted to a message (or refused). */
typedef struct src_entry {
    char *id;       /* upstream id, owned (acked by it) */
    size_t data_at; /* payload: offset and length in the batch's bytes */
    size_t len;
    size_t key_at; /* key: offset and length in the batch's bytes, followed
                    * there by a NUL (the queue takes keys NUL-terminated) */
    size_t key_len;
    int has_key;
    /* Attributes kept with the message (DESIGN.md "Round 2"): the upstream
     * timestamp (epoch ms, 0: the upstream has none; the deadline counts
     * from it), the headers (a JSON object of strings in the batch's bytes,
     * hdr_len 0: none; see src_entry_header), and whether the upstream says
     * it delivered this entry before (AMQP redelivered, a Redis pending
     * entry read again, a JetStream delivery count above 1). */
    int64_t ts_ms;
    size_t hdr_at, hdr_len;
    unsigned redelivered : 1;
    char refused[256]; /* "": a message; else why it cannot be one (acked, counted) */
} src_entry;

/* What a fetch returned: entries whose payloads and keys are in bytes. */
typedef struct src_batch {
    src_entry *e;
    size_t n, cap;
    buf bytes;
} src_batch;

void src_batch_init(src_batch *b);
/* Empties it for the next fetch (keeps the allocations). */
void src_batch_reset(src_batch *b);
void src_batch_free(src_batch *b);
/* Adds an entry with its upstream id (copied); its payload and key are
 * appended to bytes by the caller. NULL when out of memory. */
src_entry *src_batch_add(src_batch *b, const char *id, size_t id_len);
/* Marks e refused with a reason (printf-like). */
void src_entry_refuse(src_entry *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adds one upstream header (name and value: any bytes; not UTF-8 is kept as
 * Latin-1) to e's headers; call it for each header of e with nothing else
 * appended to the batch's bytes in between, then src_entry_headers_end.
 * Headers over SPATE_SOURCE_HEADERS_MAX refuse the entry. -1: no memory. */
int src_entry_header(src_batch *b, src_entry *e, const char *name, size_t nlen, const void *val,
                     size_t vlen);
int src_entry_headers_end(src_batch *b, src_entry *e);
/* --key-field for a payload that is a JSON object (one message as the HTTP
 * publish's Spate-Key-Field takes it): e's key is the payload's top-level
 * field key_field, a string or the JSON text of a number or boolean,
 * appended to the batch's bytes with its NUL. A payload that is not one JSON object, a
 * missing field, a key over SPATE_KEY_MAX or not UTF-8 refuse e. Nothing
 * when key_field is NULL or "". -1: no memory. */
int src_entry_json_key(src_batch *b, src_entry *e, const char *key_field);

/* Limits a connector applies to every entry: over them an entry is refused. */
typedef struct src_limits {
    size_t message_max;
    const char *key_field; /* "" or NULL: no key */
} src_limits;

typedef struct src_conn src_conn; /* a connector's own */

typedef struct connector {
    const char *scheme; /* "redis" */
    const char *form;   /* the URL's form, for messages */
    /* Parses url into the connector's config (*cfg, freed with free_cfg), or
     * writes why it is wrong (a 400's message) into err. */
    int (*parse)(const char *url, void **cfg, char *err, size_t errcap);
    void (*free_cfg)(void *cfg);
    /* Connects as consumer (the node's name); creates what must exist
     * upstream (a consumer group). */
    int (*connect)(const void *cfg, const char *consumer, src_conn **out, char *err, size_t errcap);
    /* Waits up to wait_ms for at most max entries (wait_ms 0: takes only
     * what is there, without waiting); 0 with an empty batch when none
     * came. Any error: the connection is to be dropped. The manager
     * fetches the next batch before it acks this one (sources.c): ack
     * names its batch, which is never the last one fetched. */
    int (*fetch)(src_conn *c, const src_limits *lim, size_t max, uint32_t wait_ms, src_batch *out,
                 char *err, size_t errcap);
    /* Acknowledges every entry of the batch upstream. */
    int (*ack)(src_conn *c, const src_batch *b, char *err, size_t errcap);
    /* Entries upstream not yet delivered to the group; -1 when unknown. */
    int64_t (*lag)(src_conn *c);
    void (*disconnect)(src_conn *c);
    /* Optional (NULL: not needed). Tells cfg the source's name, right after
     * parse: a connector whose upstream identity is per source (an MQTT
     * client id, hence its persistent session) derives it from the name. */
    void (*name_cfg)(void *cfg, const char *source);
    /* Optional: what the connector promises, for status ("delivery"); NULL:
     * "at-least-once". Borrowed for the life of cfg. */
    const char *(*delivery)(const void *cfg);
    /* The upstream forgets an entry as soon as fetch read it (libmosquitto
     * sends an MQTT PUBACK before the message reaches us): a stopping
     * source still publishes the batch it holds instead of leaving it to a
     * redelivery that will not come. */
    unsigned acked_on_fetch : 1;
    /* Where a source runs in a cluster (docs/operations.md). When the
     * broker balances the consumers of a group (a Redis group, a Kafka
     * consumer group, an AMQP queue, a JetStream durable), every node runs
     * the source and each gets its share: group returns 1 for that cfg.
     * When every subscriber gets every message (core NATS subjects, MQTT
     * subscriptions) one node runs it, the holder of the source's lease in
     * the registry: group returns 0, or is left NULL (the default, which
     * never consumes twice). One node alone runs every source either way. */
    int (*group)(const void *cfg);
    /* Optional. Messages the client library dropped on this connection
     * (an at-most-once upstream's slow consumer). */
    int64_t (*dropped)(src_conn *c);
    /* Optional, for a connector whose reads time out per read, not per
     * reply (hiredis): a broker that sends a byte now and then holds fetch
     * or ack for ever. Called on the loop, while the source's thread may be
     * in any call on c (c stays open until the thread disconnects it), when
     * a stopped source is still blocked SPATE_SOURCE_IO_TIMEOUT_MS later:
     * makes the blocked call fail at once (shutdown(2) of the socket). */
    void (*interrupt)(src_conn *c);
} connector;

/* The connector of url's scheme, or NULL with why in err (unknown scheme,
 * or one this build does not have yet). */
const connector *connector_for(const char *url, char *err, size_t errcap);

/* URL parts every connector shares (sources/url.c). The user, password,
 * host and path are percent-decoded. */
typedef struct src_url {
    char scheme[16];
    char user[256];
    char pass[256];
    char host[256];
    int port;       /* 0: none given */
    char path[512]; /* without its leading '/' */
    char *query;    /* owned: the raw query, "" if none */
    int has_pass;   /* a ':' after the user: USER:PASS@, else USER@ (a NATS token) */
} src_url;
int src_url_parse(const char *url, src_url *out, char *err, size_t errcap);
void src_url_free(src_url *u);
/* The query's value for key, percent-decoded into out; 0 if found, 1 if
 * absent; an unknown key makes src_url_check_keys fail with its name. */
int src_url_param(const src_url *u, const char *key, char *out, size_t cap);
int src_url_check_keys(const src_url *u, const char *const *known, char *err, size_t errcap);

#endif
