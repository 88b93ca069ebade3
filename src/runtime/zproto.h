/*
 * zproto.h - messages between spated and a zygote over a SOCK_SEQPACKET
 * socketpair (one message per packet; descriptors ride along as SCM_RIGHTS).
 *
 *   LOADED        zygote -> spated  object loaded, spate_preload succeeded
 *   LOAD_FAILED   zygote -> spated  text: why (loader message, missing handler...)
 *   SPAWN         spated -> zygote  id, text "CGROUPS\tTMPDIR" of the instance
 *                                   (runner/sandbox.h); carries its socket and
 *                                   the write ends of its stdout and stderr
 *                                   pipes (both or neither)
 *   SPAWNED       zygote -> spated  id, pid; carries a pidfd of the instance
 *   SPAWN_FAILED  zygote -> spated  id, err (errno of fork)
 *   EXITED        zygote -> spated  pid, status (as from waitpid)
 *
 * Instances are children of the zygote, which reaps them and reports how they
 * ended; spated holds a pidfd of each so that it can kill one without racing
 * against pid reuse.
 */
#ifndef SPATE_ZPROTO_H
#define SPATE_ZPROTO_H

#include <stdint.h>

enum zmsg_type {
    ZMSG_LOADED = 1,
    ZMSG_LOAD_FAILED = 2,
    ZMSG_SPAWN = 3,
    ZMSG_SPAWNED = 4,
    ZMSG_SPAWN_FAILED = 5,
    ZMSG_EXITED = 6,
};

#define ZMSG_TEXT_MAX 4096

typedef struct zmsg {
    uint32_t type;
    int32_t err;
    uint64_t id;
    int32_t pid;
    int32_t status;
    char text[ZMSG_TEXT_MAX]; /* NUL-terminated; only LOAD_FAILED and SPAWN use it */
} zmsg;

/* The exit status of `spate-runner --exec` when it could not enter the
 * sandbox or run the bootstrap (it says why on stderr). */
#define SPATE_SANDBOX_FAILED_STATUS 125

/* Bytes of a message without its text. */
#define ZMSG_FIXED_SIZE (sizeof(zmsg) - ZMSG_TEXT_MAX)

/* Descriptors one message may carry. */
#define ZMSG_FDS_MAX 3

/* Sends one message (its text only for LOAD_FAILED and SPAWN) with those of
 * the descriptors fds (NULL: none) that are >= 0, in order. 0, or -errno. */
int zmsg_send(int sock, const zmsg *m, const int fds[ZMSG_FDS_MAX]);
/* Receives one message; fds are the received descriptors, in order, then -1.
 * Returns 1, 0 at end of stream, or -errno (-EAGAIN when nothing is waiting,
 * -EPROTO when the message is malformed). */
int zmsg_recv(int sock, zmsg *m, int fds[ZMSG_FDS_MAX]);

#endif
