/*
 * output.h - reads what one process (an instance, or a zygote) writes to its
 * stdout and stderr, both one pipe, and appends it line by line to its
 * function's log (fnlog.h), within the log's rate: when that is spent,
 * reading pauses and the process's writes wait.
 */
#ifndef SPATE_OUTPUT_H
#define SPATE_OUTPUT_H

#include <stdint.h>
#include <uv.h>

#include "runtime/fnlog.h"

typedef struct output output;

/* Creates the pipe. *write_fd is its write end, for the process's stdout and
 * stderr: close it once the process has it. instance tags the lines (0 for
 * a zygote). ERR_IO or ERR_NOMEM on failure. */
int output_open(uv_loop_t *loop, fnlog *log, uint64_t instance, int *write_fd, output **out);
/* Tags the lines that follow with the request the process now runs (NULL:
 * none). With unread (the process said its output may still be in the
 * pipe), reads that first, under the previous one. */
void output_set_request(output *o, const char *request_id, int unread);
/* The process is gone: keeps what it wrote that is still in the pipe (within
 * the rate) and frees everything. NULL is a no-op. */
void output_close(output *o);

#endif
