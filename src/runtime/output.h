/*
 * output.h - reads what one process (an instance, or a zygote) writes to its
 * stdout and stderr, a pipe each, and appends it line by line to its
 * function's log (fnlog.h), each line tagged with its stream, within the
 * log's rate: when that is spent, reading pauses and the process's writes
 * wait. Lines of one stream keep their order; between the two streams, order
 * is kept per read, not per line (as when a terminal shows both).
 */
#ifndef SPATE_OUTPUT_H
#define SPATE_OUTPUT_H

#include <stdint.h>
#include <uv.h>

#include "runtime/fnlog.h"

typedef struct output output;

/* Creates the pipes. write_fds[0] and [1] are their write ends, for the
 * process's stdout and stderr: close them once the process has them.
 * instance (0 for a zygote) and version tag the lines. ERR_IO or ERR_NOMEM
 * on failure. */
int output_open(uv_loop_t *loop, fnlog *log, uint64_t instance, uint32_t version, int write_fds[2],
                output **out);
/* Closes the write ends that are open (>= 0) and marks them -1. */
void output_close_fds(int write_fds[2]);
/* Tags the lines that follow with the request the process now runs (NULL:
 * none). With unread (the process said its output may still be in the
 * pipes), reads that first, under the previous one. */
void output_set_request(output *o, const char *request_id, int unread);
/* The process is gone: keeps what it wrote that is still in the pipes
 * (within the rate) and frees everything. NULL is a no-op. */
void output_close(output *o);

#endif
