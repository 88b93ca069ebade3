/*
 * err.h - the error codes of spate: one table yields both a name and a message
 * (as libuv's UV_ERRNO_MAP). Functions return 0 on success or a negative ERR_*.
 */
#ifndef SPATE_ERR_H
#define SPATE_ERR_H

#define ERR_MAP(X)                                                                                 \
    X(NOMEM, "out of memory")                                                                      \
    X(INVAL, "invalid argument")                                                                   \
    X(NOTFOUND, "not found")                                                                       \
    X(EXISTS, "already exists")                                                                    \
    X(TOOBIG, "too large")                                                                         \
    X(IO, "input/output error")                                                                    \
    X(PROTO, "protocol error")                                                                     \
    X(BUSY, "busy")                                                                                \
    X(CLOSED, "closed")                                                                            \
    X(TIMEOUT, "timed out")                                                                        \
    X(NOTSUP, "not supported here")                                                                \
    X(STORE, "store error")                                                                        \
    X(DISCONNECTED, "cut off from the cluster's NATS servers")

enum {
    ERR_OK = 0,
#define X(name, msg) ERR__##name,
    ERR_MAP(X)
#undef X
};

enum {
#define X(name, msg) ERR_##name = -ERR__##name,
    ERR_MAP(X)
#undef X
};

/* Short upper-case name of an error code, "OK" for 0. */
const char *err_name(int code);
/* Human message of an error code. */
const char *err_str(int code);

#endif
