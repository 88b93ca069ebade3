/*
 * spate.h - the ABI of native spate functions.
 *
 * A native function is a shared object that exports spate_handler and, if it
 * wants, spate_preload and spate_init. It builds with nothing more than
 *
 *     cc -shared -fPIC -I include -o f.so f.c
 *
 * spate_write and spate_fail are provided by the process that loads the
 * function (spate-runner); the shared object needs no library to link against.
 *
 * Life of a function version:
 *   - the zygote loads the object and calls spate_preload() once; memory set up
 *     here is shared copy-on-write by every instance, so load reference data here;
 *   - each instance is forked from the zygote and calls spate_init() once, for
 *     what must not be shared (connections, descriptors, random state);
 *   - the instance then calls spate_handler() for one invocation at a time.
 * A non-zero return from spate_preload or spate_init fails the deploy or the
 * instance start respectively.
 */
#ifndef SPATE_H
#define SPATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this ABI. 1: the fields up to key. 2: a message's
 * attributes after them (docs/functions.md "Message attributes"). */
#define SPATE_ABI_VERSION 2

/* One invocation. Everything is borrowed until spate_handler returns.
 *
 * Compatibility: fields are only ever added at the end. An object built
 * against an older spate.h sees a shorter struct and keeps working; a newer
 * object reads a field added in version N only when abi_version >= N.
 * (spate-runner, part of the spated that loads the object, fills
 * abi_version; an object built against this header needs a spated of
 * SPATE_ABI_VERSION 2 or later, as it reads abi_version itself.) */
typedef struct spate_request {
    const char *request_id; /* unique per invocation */
    const char *function;   /* function name */
    const void *payload;    /* event bytes, not NUL-terminated */
    size_t payload_len;
    int64_t deadline_ms; /* epoch ms by which the handler must return */
    uint32_t attempt;    /* 1 on first delivery */
    const char *topic;   /* NULL for a direct invoke */
    const char *key;     /* ordering key or NULL */
    /* --- SPATE_ABI_VERSION 2: the message's attributes, from an event
     * source (all NULL / 0 for a message published to spate directly and
     * for a direct invoke). */
    const char *source;       /* the event source's name */
    const char *upstream_id;  /* the entry's id upstream (stream id, partition/offset, ...) */
    int64_t upstream_ts_ms;   /* its timestamp upstream, epoch ms; 0: none */
    const char *headers_json; /* its upstream headers: a JSON object of strings, NUL-terminated */
    size_t headers_len;
    uint32_t redelivered; /* 1: the upstream delivered it before */
    uint32_t abi_version; /* SPATE_ABI_VERSION of the runtime that calls the handler */
} spate_request;

/* Opaque; owned by the runtime. */
typedef struct spate_response spate_response;

/* Appends len bytes to the invocation's output. Returns 0, or -1 when the
 * output would exceed the response size limit (6 MiB); the output is then
 * unchanged. */
int spate_write(spate_response *res, const void *data, size_t len);

/* Marks the invocation failed with a message (copied; at most 4 KiB kept).
 * The caller sees it as a function error; output written so far is dropped. */
int spate_fail(spate_response *res, const char *message);

/* Exported by the function. Returns 0 on success; non-zero marks it failed. */
int spate_handler(const spate_request *req, spate_response *res);
/* Optional: once in the zygote, before any fork. */
int spate_preload(void);
/* Optional: once per instance, after fork. */
int spate_init(void);

#ifdef __cplusplus
}
#endif

#endif /* SPATE_H */
