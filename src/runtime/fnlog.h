/*
 * fnlog.h - the log of one function: the lines its instances (and its
 * zygote) wrote to stdout and stderr, and what the platform says about them
 * (a crash, a timeout, a failed start), newest kept, capped in lines, bytes
 * and rate. Lines are numbered, so a reader can ask for those after one it
 * saw; the numbers go on across restarts.
 *
 * One log per function name, shared (fnlog_open): a function redeployed
 * while its old pool drains, or deleted and deployed again, writes one log.
 *
 * Each line also goes to a file, DIR/NAME.log (fnlog_set_files), of at most
 * a given size (--function-log-max, SPATE_LOG_FILE_MAX by default): when full
 * it becomes NAME.log.1 (the one before is dropped) and a new one starts.
 * Lines are buffered and written once per read from a pipe (fnlog_flush), not
 * once each. A log opened again (after a restart, or for a deleted function
 * whose files remain) starts from the newest lines of those files, read when
 * it is first used.
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

/* Where a line came from. UNKNOWN: a line read from a file of an older
 * format, which did not say. */
enum fnlog_stream { FNLOG_UNKNOWN = 0, FNLOG_STDOUT, FNLOG_STDERR, FNLOG_PLATFORM };
/* "stdout", "stderr", "platform" or "unknown". */
const char *fnlog_stream_name(int stream);

typedef struct fnlog_line {
    uint64_t seq;
    int64_t time_ms;             /* wall clock */
    uint64_t instance;           /* 0: the zygote (spate_preload), or the version as a whole */
    uint32_t version;            /* 0: unknown (an older file) */
    uint8_t stream;              /* enum fnlog_stream */
    char req[FNLOG_REQ_MAX + 1]; /* the request running when it was written, "" if none */
    uint32_t len;
    char text[]; /* len bytes, not terminated */
} fnlog_line;

/* Who wrote a line. */
typedef struct fnlog_tag {
    uint64_t instance;
    uint32_t version;
    int stream;      /* enum fnlog_stream */
    const char *req; /* "" or NULL: none */
} fnlog_tag;

/* Where log files go, for every log opened after (NULL: no files), and the
 * size at which each is rotated. dir is copied. */
void fnlog_set_files(const char *dir, size_t max_bytes);
/* The log of function (a valid function name): the open one, or a new one
 * filled from its files. Caller owns a reference; NULL when out of memory. */
fnlog *fnlog_open(const char *function);
/* As fnlog_open, but only when the log is open or its files exist (a deleted
 * function): NULL otherwise. */
fnlog *fnlog_find(const char *function);
void fnlog_ref(fnlog *l);
void fnlog_unref(fnlog *l); /* NULL is a no-op */

/* Takes len bytes (just read) from the rate budget at now_ms (monotonic).
 * Returns 0 while some budget is left, else the ms to wait before reading
 * more. */
uint64_t fnlog_spend(fnlog *l, size_t len, uint64_t now_ms);
/* Appends one line (at most SPATE_LOG_LINE_MAX bytes are kept); spated's own
 * log shows it at debug level. */
void fnlog_append(fnlog *l, const fnlog_tag *tag, const char *text, size_t len);
/* Appends a line of the platform's own (stream "platform") and flushes it:
 * what happened to an instance, for the function's developer to read. */
void fnlog_platform(fnlog *l, uint64_t instance, uint32_t version, const char *req, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));
/* Writes the lines appended since the last flush to the file. */
void fnlog_flush(fnlog *l);

/* Which lines a reader wants. */
typedef struct fnlog_filter {
    int64_t since_ms; /* written at or after this (wall clock); 0: any */
    int has_instance;
    uint64_t instance;
    const char *req; /* NULL: any */
} fnlog_filter;

/* Calls cb for kept lines that pass f (NULL: all), oldest first, at most
 * limit of them: those with seq > after, or with after 0 the newest.
 * Returns the number a reader passes as after to get only lines it has not
 * been shown nor skipped: the last line given when limit stopped it, else
 * the newest line's. */
typedef void (*fnlog_line_cb)(const fnlog_line *line, void *data);
uint64_t fnlog_each(fnlog *l, uint64_t after, uint32_t limit, const fnlog_filter *f,
                    fnlog_line_cb cb, void *data);
/* Whether a kept line after seq after passes f. */
int fnlog_has_after(fnlog *l, uint64_t after, const fnlog_filter *f);
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
uint64_t fnlog_next_seq(fnlog *l);

/* Lines evicted to keep the caps. */
uint64_t fnlog_evicted(fnlog *l);

/* One line of a log file, parsed: the current format,
 *   TIME seq=N version=V instance=I stream=S req=ID|- TEXT
 * or the one before it (no seq, version nor stream),
 *   TIME instance=I req=ID|- TEXT   or   TIME zygote TEXT
 * TIME is 2006-01-02T15:04:05.000Z. text points into s. */
typedef struct fnlog_record {
    uint64_t seq; /* 0: none */
    int64_t time_ms;
    uint64_t instance;
    uint32_t version;
    int stream;
    char req[FNLOG_REQ_MAX + 1];
    const char *text;
    size_t len;
} fnlog_record;
/* s is one line without its '\n'. 0, or ERR_INVAL when it is neither. */
int fnlog_parse_line(const char *s, size_t len, fnlog_record *out);

#endif
