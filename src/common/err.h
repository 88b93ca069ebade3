/*
 * err.h - the error codes of spate: one table yields both a name and a message
 * (as libuv's UV_ERRNO_MAP). Functions return 0 on success or a negative ERR_*.
 */
#ifndef SPATE_ERR_H
#define SPATE_ERR_H

/* The limits of the node (docs/operations.md, "Node limits"): an error that
 * says one was reached is answered 503 with the code (docs/api.md) and
 * counted in spate_node_limit_refusals_total under the label. Columns: the
 * ERR_ name, the metric label, the API code, the message. A new limit is one
 * line here. */
#define ERR_LIMIT_MAP(X)                                                                           \
    X(DESCRIPTORS, "descriptors", "descriptors_exhausted",                                         \
      "the node has no file descriptor left (its RLIMIT_NOFILE or the system's file table)")       \
    X(PROCESSES, "processes", "processes_exhausted",                                               \
      "the node cannot start another process (spated --max-processes, or the host's limit)")       \
    X(MEMORY, "memory", "memory_exhausted", "the node is out of memory")                           \
    X(INSTANCES, "instances", "instances_exhausted",                                               \
      "the node runs its maximum of instances (spated --max-instances)")                           \
    X(ZYGOTES, "zygotes", "zygote_budget", "the node runs its budget of zygotes")

/* Each limit is an error too: ERR_MAP's entries end with them (its users name
 * their macro X, as all of them do). */
#define ERR_LIMIT_AS_ERR(name, label, code, msg) X(name, msg)

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
    X(NOSPACE, "no space left on the store's disk")                                                \
    X(DISCONNECTED, "cut off from the cluster's NATS servers")                                     \
    ERR_LIMIT_MAP(ERR_LIMIT_AS_ERR)

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

/* The errno of a failed system call as an error code: a node limit when it
 * says one was reached (EMFILE, ENFILE: ERR_DESCRIPTORS; EAGAIN:
 * ERR_PROCESSES, as fork and clone say it; ENOMEM: ERR_MEMORY), fallback
 * otherwise. Only for calls whose EAGAIN means "no process left". */
int err_from_errno(int e, int fallback);

/* Node limits (ERR_LIMIT_MAP), numbered 0 .. ERR_LIMITS - 1 for counters. */
enum {
#define X(name, label, code, msg) ERR_LIMIT_##name,
    ERR_LIMIT_MAP(X)
#undef X
        ERR_LIMITS
};
/* Which node limit an error code says was reached, or -1 for any other. */
int err_limit(int code);
/* The error code of a node limit (0 .. ERR_LIMITS - 1). */
int err_of_limit(int limit);
/* The API code ("descriptors_exhausted") and metric label ("descriptors") of
 * a node limit; NULL for a number out of range. */
const char *err_limit_code(int limit);
const char *err_limit_label(int limit);
/* The node limit whose API code is code, or -1. */
int err_limit_by_code(const char *code);

#endif
