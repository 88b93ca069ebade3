/*
 * fnlog.h - the log of one function: the lines its instances (and its
 * zygote) wrote to stdout and stderr, newest kept, capped in lines, bytes and
 * rate. Lines are numbered, so a reader can ask for those after one it saw.
 *
 * Each line also goes to a file, DIR/NAME.log (fnlog_set_files), of at most
 * a given size (--function-log-max, SPATE_LOG_FILE_MAX by default): when full it becomes NAME.log.1
 * (the one before is dropped) and a new one starts. Lines are buffered and written once per read
 * from a pipe (fnlog_flush), not once each.
 *
 * The rate cap is a token bucket in bytes: when a function writes faster, its
 * output readers stop reading (runtime/output.c), its pipe fills and its
 * writes block: the function slows down, nothing else does.
 */
#ifndef SPATE_FNLOG_H
#define SPATE_FNLOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/list.h"

typedef struct fnlog fnlog;

#define FNLOG_REQ_MAX 40 /* request ids are 36 characters */

typedef struct fnlog_line {
    uint64_t seq;
    int64_t time_ms;             /* wall clock */
    uint64_t instance;           /* 0: the zygote (spate_preload) */
    char req[FNLOG_REQ_MAX + 1]; /* the request running when it was written, "" if none */
    uint32_t len;
    char text[]; /* len bytes, not terminated */
} fnlog_line;

/* Where log files go, for every fnlog created after (NULL: no files), and
 * the size at which each is rotated. dir is copied. */
void fnlog_set_files(const char *dir, size_t max_bytes);
fnlog *fnlog_create(const char *function);
void fnlog_ref(fnlog *l);
void fnlog_unref(fnlog *l); /* NULL is a no-op */

/* Takes len bytes (just read) from the rate budget at now_ms (monotonic).
 * Returns 0 while some budget is left, else the ms to wait before reading
 * more. */
uint64_t fnlog_spend(fnlog *l, size_t len, uint64_t now_ms);
/* Appends one line (at most SPATE_LOG_LINE_MAX bytes are kept); spated's own
 * log shows it at debug level. req may be "" or NULL. */
void fnlog_append(fnlog *l, uint64_t instance, const char *req, const char *text, size_t len);
/* Writes the lines appended since the last flush to the file. */
void fnlog_flush(fnlog *l);

/* Calls cb for kept lines, oldest first, at most limit of them: those with
 * seq > after, or with after 0 the newest. */
typedef void (*fnlog_line_cb)(const fnlog_line *line, void *data);
void fnlog_each(const fnlog *l, uint64_t after, uint32_t limit, fnlog_line_cb cb, void *data);
/* Long polls: cb runs once, on the loop, when lines have been added (at the
 * next flush). A waiter is the caller's; fnlog_unwait withdraws it. */
typedef struct fnlog_waiter fnlog_waiter;
struct fnlog_waiter {
    list_node link;
    void (*cb)(fnlog_waiter *w);
};
void fnlog_wait(fnlog *l, fnlog_waiter *w);
void fnlog_unwait(fnlog_waiter *w);
/* The number the next line will have. */
uint64_t fnlog_next_seq(const fnlog *l);

/* Lines evicted to keep the caps. */
uint64_t fnlog_evicted(const fnlog *l);

#endif
