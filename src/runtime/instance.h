/*
 * instance.h - one native instance as spated sees it: a process forked by a
 * zygote and a socket carrying frames (frame.h). It serves one invocation at
 * a time and reports, exactly once, how it ended.
 */
#ifndef SPATE_INSTANCE_H
#define SPATE_INSTANCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "runtime/frame.h"
#include "runtime/zygote.h"

typedef struct instance instance;

typedef struct instance_callbacks {
    /* spate_init succeeded; the instance takes invocations. */
    void (*ready)(instance *inst, void *data);
    /* The oldest invocation sent finished after duration_us in the handler.
     * body is the output, or the error message when failed; borrowed for the
     * call. */
    void (*result)(instance *inst, int failed, uint32_t duration_us, const char *body, size_t len,
                   void *data);
    /* The instance is gone; why is e.g. "killed by signal 11 (Segmentation
     * fault)". Called once; the instance is freed after it returns. */
    void (*exited)(instance *inst, const char *why, void *data);
} instance_callbacks;

/* Creates the instance and asks the zygote to fork it. cb is borrowed for the
 * life of the instance. On error no callback is ever called. */
int instance_start(zygote *z, const instance_callbacks *cb, void *data, instance **out);
/* Sends one invocation; the instance must be ready. Several may be queued:
 * the instance runs them one at a time, in order, and results come back in
 * that order. The frame is copied; nothing is borrowed after the call. */
int instance_invoke(instance *inst, const frame_invoke *inv);
/* Kills the process (SIGKILL); exited follows. Safe to call more than once. */
void instance_kill(instance *inst);
/* False once the instance is known to be ending (killed, socket closed, or
 * exited): do not give it another invocation. */
int instance_usable(const instance *inst);
pid_t instance_pid(const instance *inst);
uint64_t instance_id(const instance *inst);

/* For zygote.c: events from the control socket. */
void instance_on_spawned(instance *inst, pid_t pid, int pidfd);
void instance_on_spawn_failed(instance *inst, int err);
void instance_on_exited(instance *inst, int status);
void instance_on_zygote_lost(instance *inst);

#endif
