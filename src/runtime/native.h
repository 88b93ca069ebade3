/*
 * native.h - a native instance: a process forked by a zygote (zygote.h) that
 * runs the function's shared object and speaks frames (frame.h) on a socket.
 */
#ifndef SPATE_NATIVE_H
#define SPATE_NATIVE_H

#include <sys/types.h>

#include "runtime/instance.h"
#include "runtime/zygote.h"

/* Creates the instance (its cgroups and temporary directory, held to lim)
 * and asks the zygote to fork it. On error no callback
 * is ever called. */
int native_start(zygote *z, const instance_limits *lim, const instance_callbacks *cb, void *data,
                 instance **out);

/* For zygote.c: events from the control socket. */
void native_on_spawned(instance *inst, pid_t pid, int pidfd);
void native_on_spawn_failed(instance *inst, int err);
void native_on_exited(instance *inst, int status);
void native_on_zygote_lost(instance *inst);
/* Its process is gone and the zygote never said how it ended. */
void native_on_unreported_exit(instance *inst);

#endif
