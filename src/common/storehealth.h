/*
 * storehealth.h - whether the store's disk takes what spated writes (issue 21):
 * failures counted by operation, and the store "unhealthy" from a failure
 * until the next success of that operation. The writer thread reports its
 * transactions, the queue its reads, the registry its artifact files. What
 * GET /v1/status ("store") and /metrics (spate_store_errors_total{op}) show.
 * One per process; any thread.
 */
#ifndef SPATE_STOREHEALTH_H
#define SPATE_STOREHEALTH_H

#include <stdint.h>

typedef enum store_op {
    STORE_OP_COMMIT,   /* a transaction of the writer thread */
    STORE_OP_READ,     /* a read of messages (a lagging trigger's, a topic's) */
    STORE_OP_ARTIFACT, /* an artifact's write, fsync or rename */
    STORE_OPS
} store_op;

/* "commit", "read", "artifact": the metric's label. */
const char *store_op_label(store_op op);
/* A failure of op, what says why (copied, truncated). */
void store_health_failed(store_op op, const char *what);
/* A success of op: op fails no more. */
void store_health_ok(store_op op);

typedef struct store_health {
    uint64_t errors[STORE_OPS]; /* since start */
    int failing[STORE_OPS];     /* its last attempt failed */
    int healthy;                /* no op failing */
    int64_t since_ms;           /* unhealthy: since when (epoch ms), else 0 */
    char error[200];            /* unhealthy: the last failure */
} store_health;
void store_health_get(store_health *out);

#endif
