/*
 * frame.h - the length-prefixed frame protocol between spated and a native
 * instance, over a stream socketpair.
 *
 * Every frame is an 8-byte header then a body:
 *     u32 body length (little endian) | u8 type | u8 flags | u16 zero
 *
 *   READY        instance -> spated  spate_init succeeded; body empty
 *   INIT_FAILED  instance -> spated  body: message
 *   INVOKE       spated -> instance  body: invocation (below)
 *   RESULT       instance -> spated  u32 handler duration in us, then: with flag
 *                                    FRAME_FAILED the error message, else the output;
 *                                    with FRAME_CANCELLED (body: duration 0) the
 *                                    invocation did not run
 *   CANCEL       spated -> instance  body empty: every INVOKE sent before it that
 *                                    has not started is not to run
 *
 * spated may queue several INVOKE frames on an instance; it runs them one at
 * a time, in order, and answers each with a RESULT in the same order. Before
 * it starts one it has read everything spated sent until it answered the one
 * before (runner/main.c): a CANCEL that spated sent before that answer came
 * is always in time for the invocations it covers (runtime/native.c relies
 * on it to take invocations back from a busy instance).
 *
 * INVOKE body: i64 deadline_ms | u32 attempt | u16 request_id_len | u16 function_len |
 *              u16 topic_len | u16 key_len | u32 payload_len | u32 flags (FRAME_HAS_TOPIC,
 *              FRAME_HAS_KEY, FRAME_HAS_ATTRS) | u32 zero | request_id NUL | function NUL |
 *              topic NUL | key NUL | [attributes] | payload
 * attributes, only with FRAME_HAS_ATTRS (a message from an event source;
 * nothing is sent for others): i64 upstream_ts_ms | u16 source_len |
 * u16 upstream_id_len | u32 headers_len | u32 attr flags (FRAME_ATTR_*) |
 * source NUL | upstream_id NUL | headers NUL.
 * The strings carry their NUL so the instance can hand them to the handler
 * without copying.
 */
#ifndef SPATE_FRAME_H
#define SPATE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define FRAME_HEADER_SIZE 8
#define FRAME_INVOKE_FIXED 32
#define FRAME_ATTRS_FIXED 20
#define FRAME_RESULT_FIXED 4

enum frame_type {
    FRAME_READY = 1,
    FRAME_INIT_FAILED = 2,
    FRAME_INVOKE = 3,
    FRAME_RESULT = 4,
    FRAME_CANCEL = 5,
};

/* RESULT flags. OUTPUT_PENDING: the handler's output was still in the pipe
 * when it answered, so spated reads it before the next request's. */
enum { FRAME_FAILED = 1, FRAME_OUTPUT_PENDING = 2, FRAME_CANCELLED = 4 };
enum { FRAME_HAS_TOPIC = 1, FRAME_HAS_KEY = 2, FRAME_HAS_ATTRS = 4 };
enum {
    FRAME_ATTR_REDELIVERED = 1,
    FRAME_ATTR_SOURCE = 2,
    FRAME_ATTR_UPSTREAM_ID = 4,
    FRAME_ATTR_HEADERS = 8
};

typedef struct frame {
    uint8_t type;
    uint8_t flags;
    const char *body; /* borrowed from the reader until its next call */
    uint32_t len;
} frame;

typedef struct frame_invoke {
    int64_t deadline_ms;
    uint32_t attempt;
    const char *request_id; /* NUL-terminated */
    const char *function;
    const char *topic; /* NULL when absent */
    const char *key;   /* NULL when absent */
    const void *payload;
    uint32_t payload_len;
    /* Exec instances only (not framed): its trace header's Lineage
     * (common/lambda.h); 0: none. */
    uint32_t lineage;
    /* A message's attributes (store/queue.h queue_attrs); has_attrs 0: none. */
    int has_attrs;
    int redelivered;
    int64_t upstream_ts_ms;  /* 0: none */
    const char *source;      /* NULL when absent */
    const char *upstream_id; /* NULL when absent */
    const char *headers;     /* a JSON object, NULL when absent */
    uint32_t headers_len;
} frame_invoke;

void frame_header_encode(uint8_t out[FRAME_HEADER_SIZE], uint32_t len, uint8_t type, uint8_t flags);
/* Checks the type and that the length is at most max. 0 or ERR_PROTO / ERR_TOOBIG. */
int frame_header_decode(const uint8_t in[FRAME_HEADER_SIZE], uint32_t max, frame *f);

/* Appends the frame header and the invocation's metadata to out; the payload
 * is not copied: send inv->payload right after it. */
int frame_invoke_encode(buf *out, const frame_invoke *inv);
/* Parses an INVOKE body; pointers in out point into body. 0 or ERR_PROTO. */
int frame_invoke_decode(const char *body, uint32_t len, frame_invoke *out);

/* The fixed part of a RESULT body. */
void frame_result_encode_fixed(uint8_t out[FRAME_RESULT_FIXED], uint32_t duration_us);
/* Splits a RESULT body into its duration and its output or message.
 * 0 or ERR_PROTO when too short. */
int frame_result_decode(const char *body, uint32_t len, uint32_t *duration_us, const char **data,
                        uint32_t *data_len);

/*
 * An incremental reader for the non-blocking side: the caller reads into
 * frame_reader_space(), reports the count with frame_reader_commit(), then
 * takes whole frames with frame_reader_next().
 */
typedef struct frame_reader {
    buf in;
    size_t consumed; /* bytes of in already handed out as frames */
    uint32_t max_body;
} frame_reader;

void frame_reader_init(frame_reader *r, uint32_t max_body);
void frame_reader_free(frame_reader *r);
/* Room for at least want more bytes (less only near the maximum). */
int frame_reader_space(frame_reader *r, size_t want, char **ptr, size_t *len);
void frame_reader_commit(frame_reader *r, size_t n);
/* 1 and a frame, 0 when more bytes are needed, or a negative error. */
int frame_reader_next(frame_reader *r, frame *f);

#endif
