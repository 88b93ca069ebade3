/*
 * bridge.h - blocking work off the loop, and results back onto it.
 *
 * nats.c blocks (JetStream calls) or calls back on its own threads; the loop
 * must do neither. A bridge is one worker thread that takes jobs in order,
 * and a locked list of calls the loop runs, woken by one uv_async (the face
 * of Redis's ae.h: open and close, run, post).
 *
 * Every call takes an optional drop: when the bridge stops before a job's
 * work or done, or a posted call, has run, drop(arg) runs instead (on the
 * thread that stops it) so that arg can be freed; NULL leaves arg alone.
 */
#ifndef SPATE_BRIDGE_H
#define SPATE_BRIDGE_H

#include <uv.h>

typedef struct bridge bridge;
typedef void (*bridge_fn)(void *arg);

/* Starts the worker thread. ERR_NOMEM or ERR_IO; caller owns the bridge
 * (bridge_stop, then bridge_close). */
int bridge_open(uv_loop_t *loop, bridge **out);
/* work(arg) on the worker thread, after the jobs before it; then done(arg)
 * on the loop. Out of memory, both run here at once rather than be lost. */
void bridge_run(bridge *b, bridge_fn work, bridge_fn done, bridge_fn drop, void *arg);
/* call(arg) on the loop soon; from any thread. Out of memory: drop(arg). */
void bridge_post(bridge *b, bridge_fn call, bridge_fn drop, void *arg);
/* 1 once bridge_stop has begun: long work gives up (from any thread). */
int bridge_stopping(const bridge *b);
/* Lets the job running finish, then stops the worker; jobs not started are
 * dropped. Calls still come through post until bridge_close. */
void bridge_stop(bridge *b);
/* Once no thread posts any more: drops the calls not run and frees the
 * bridge (its handle closes on the loop). NULL is a no-op. */
void bridge_close(bridge *b);

#endif
