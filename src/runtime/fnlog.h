/*
 * fnlog.h - the log of one function: the lines its instances (and its
 * zygote) wrote to stdout and stderr, newest kept, capped in lines, bytes and
 * rate. Lines are numbered, so a reader can ask for those after one it saw.
 *
 * The rate cap is a token bucket in bytes: when a function writes faster, its
 * output readers stop reading (runtime/output.c), its pipe fills and its
 * writes block: the function slows down, nothing else does.
 */
#ifndef SPATE_FNLOG_H
#define SPATE_FNLOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct fnlog fnlog;

typedef struct fnlog_line {
    uint64_t seq;
    int64_t time_ms;   /* wall clock */
    uint64_t instance; /* 0: the zygote (spate_preload) */
    uint32_t len;
    char text[]; /* len bytes, not terminated */
} fnlog_line;

fnlog *fnlog_create(const char *function);
void fnlog_ref(fnlog *l);
void fnlog_unref(fnlog *l); /* NULL is a no-op */

/* Takes len bytes (just read) from the rate budget at now_ms (monotonic).
 * Returns 0 while some budget is left, else the ms to wait before reading
 * more. */
uint64_t fnlog_spend(fnlog *l, size_t len, uint64_t now_ms);
/* Appends one line (at most SPATE_LOG_LINE_MAX bytes are kept); spated's own
 * log shows it at debug level. */
void fnlog_append(fnlog *l, uint64_t instance, const char *text, size_t len);

/* Calls cb for kept lines, oldest first, at most limit of them: those with
 * seq > after, or with after 0 the newest. */
typedef void (*fnlog_line_cb)(const fnlog_line *line, void *data);
void fnlog_each(const fnlog *l, uint64_t after, uint32_t limit, fnlog_line_cb cb, void *data);
/* Lines evicted to keep the caps. */
uint64_t fnlog_evicted(const fnlog *l);

#endif
