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

/* One invocation. Everything is borrowed until spate_handler returns. */
typedef struct spate_request {
    const char *request_id; /* unique per invocation */
    const char *function;   /* function name */
    const void *payload;    /* event bytes, not NUL-terminated */
    size_t payload_len;
    int64_t deadline_ms; /* epoch ms by which the handler must return */
    uint32_t attempt;    /* 1 on first delivery */
    const char *topic;   /* NULL for a direct invoke */
    const char *key;     /* ordering key or NULL */
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
