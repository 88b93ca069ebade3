/*
 * history.h - the last 15 minutes of what the dashboard draws, one frame a
 * second, in a ring of bounded size: the page opened at any moment draws
 * them at once (GET /v1/history).
 *
 * Compact by change: a frame holds a row only for the series that changed
 * since the frame before (floats kept to 3 significant digits, so jitter is
 * no change), and every HISTORY_KEYFRAME_S a keyframe holds every series that
 * is not all zero. A series absent from a keyframe is zero. Eviction drops a
 * keyframe with the deltas after it, so the oldest frame is always a
 * keyframe and any second can be rebuilt from it. A steady function costs a
 * row a minute; one that changes every second a row (43 bytes) a second.
 * The ring's bytes are fixed at create: when they are full before 15
 * minutes, the oldest minute goes (the answer's oldest_ms says so).
 *
 * Pure: no clock, no loop; the caller passes the time (api/history.c
 * samples once a second on the loop).
 */
#ifndef SPATE_HISTORY_H
#define SPATE_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define HISTORY_KEEP_S 900
/* Keyframe interval: a rebuild replays at most this many frames. */
#define HISTORY_KEYFRAME_S 60
/* Frames the ring may hold: 15 minutes, the minute before the oldest one
 * kept, and slack for a second sampled twice. */
#define HISTORY_FRAMES 1100
/* The ring's bytes by default: 4 MiB holds 15 minutes of 1,000 functions
 * that each change every 5 s (docs/api.md "History"). */
#define HISTORY_BYTES_DEFAULT (4u << 20)
/* Series ids are 16 bits. */
#define HISTORY_NAMES_MAX 65535u

enum history_kind { HISTORY_FUNCTION, HISTORY_TOPIC, HISTORY_SOURCE, HISTORY_KINDS };

/* A function's second. Zero everywhere is the state of an idle function. */
typedef struct history_fn {
    uint16_t busy, idle, starting, cold_starts; /* cold_starts: in that second */
    uint32_t backlog;
    float arrivals, completions; /* per second */
    float p50_ms, p99_ms;        /* of what finished in that second; 0: nothing did */
    float eta_s;                 /* drain ETA; -1 unknown, INFINITY cannot drain */
    float deadline_s;            /* the tightest trigger deadline; 0 none */
    uint8_t triggered, at_risk;  /* has triggers; even its maximum misses the deadline */
} history_fn;

typedef struct history_topic {
    uint32_t depth;
    float oldest_s;
} history_topic;

typedef struct history_source {
    float lag; /* -1: the broker does not tell */
    uint8_t connected;
} history_source;

typedef struct history history;

/* A ring of bytes_max bytes of frames (its names and bookkeeping aside).
 * Caller owns; free with history_free. NULL: out of memory. */
history *history_create(size_t bytes_max);
void history_free(history *h);

/* One frame: begin, put each series once, end. Series not put are zero.
 * A frame at or before the last one's time is dropped at end. */
void history_begin(history *h, int64_t now_ms);
void history_put_fn(history *h, const char *name, const history_fn *v);
void history_put_topic(history *h, const char *name, const history_topic *v);
void history_put_source(history *h, const char *name, const history_source *v);
void history_end(history *h);

/* Appends the members of the JSON answer (docs/api.md "GET /v1/history"),
 * without the braces, for frames after
 * since_ms. delta: the caller holds the state at the frame of since_ms; when
 * the ring has it the answer starts with a delta, else with a full frame.
 * Stops before max_bytes (then "truncated": true and "next_since"). 0, or
 * the error of an append past out's maximum. */
int history_json(const history *h, buf *out, int64_t since_ms, int delta, size_t max_bytes);

typedef struct history_stats {
    size_t frames, keyframes;
    int64_t oldest_ms, newest_ms;
    size_t bytes_used, bytes_max; /* frames' bytes in the ring, its size */
    size_t names;                 /* series known */
    size_t memory;                /* everything the history holds */
    uint64_t dropped_rows;        /* past HISTORY_NAMES_MAX or a frame past the ring */
} history_stats;
void history_get_stats(const history *h, history_stats *out);

#endif
