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
    size_t key_at; /* key: offset and length in the batch's bytes */
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
/* Sets e's key from the top-level field of its payload (already in the
 * batch's bytes), which must be one JSON object, as Spate-Key-Field reads a
 * line: a string as it is, a number or boolean as JSON text; anything else
 * refuses e. Call it before the headers. -1: no memory. */
int src_entry_key_from_json(src_batch *b, src_entry *e, const char *field);

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
    /* Waits up to wait_ms for at most max entries; 0 with an empty batch
     * when none came. Any error: the connection is to be dropped. */
    int (*fetch)(src_conn *c, const src_limits *lim, size_t max, uint32_t wait_ms, src_batch *out,
                 char *err, size_t errcap);
    /* Acknowledges every entry of the batch upstream. */
    int (*ack)(src_conn *c, const src_batch *b, char *err, size_t errcap);
    /* Entries upstream not yet delivered to the group; -1 when unknown. */
    int64_t (*lag)(src_conn *c);
    void (*disconnect)(src_conn *c);
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
} src_url;
int src_url_parse(const char *url, src_url *out, char *err, size_t errcap);
void src_url_free(src_url *u);
/* The query's value for key, percent-decoded into out; 0 if found, 1 if
 * absent; an unknown key makes src_url_check_keys fail with its name. */
int src_url_param(const src_url *u, const char *key, char *out, size_t cap);
int src_url_check_keys(const src_url *u, const char *const *known, char *err, size_t errcap);

#endif
