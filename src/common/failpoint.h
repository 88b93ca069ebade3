/*
 * failpoint.h - allocation-failure injection (issue 21), as SQLite's and
 * curl's torture tests do it: fail the Nth allocation and see that spated
 * answers 503 or logs the failure, does not crash, leaks nothing and loses
 * nothing it acknowledged.
 *
 * Built in only with the CMake option SPATE_FAILPOINTS (on in the ASan build
 * of make sanitize). Then failpoint_alloc.h is included first in every source
 * of spated's own libraries, and malloc, calloc, realloc, strdup and strndup
 * there go through failpoint_malloc() and friends; cJSON's allocations go
 * through them too (its hooks in common/json_alloc.c, installed by spated). libuv,
 * SQLite, nats.c and OpenSSL allocate on their own (why: docs/architecture.md, Tests).
 * Without the option the calls below are empty inlines and allocations are
 * plain libc: nothing is counted.
 *
 * Nothing fails until armed, from the environment of spated (read once at
 * start, then removed so that runners and functions do not inherit it) or
 * by a unit test through failpoint_arm():
 *
 *   SPATE_FAIL_ALLOC=N        the Nth allocation counted fails (1 = the first)
 *   SPATE_FAIL_ALLOC_COUNT=K  K allocations fail from the Nth on (default 1;
 *                             0 = every one from the Nth on)
 *   SPATE_FAIL_ALLOC_AFTER=P  count only from a marker whose name starts with
 *                             P (failpoint_mark); each such marker starts the
 *                             count again. The API marks each request as
 *                             "METHOD /path" ("POST /v1/topics/t/messages").
 *   SPATE_FAIL_ALLOC_STEP=S   with AFTER: the kth marker (from 0) fails
 *                             allocation N + k*S after it, so that one process
 *                             sweeps a request's allocations in turn.
 *
 * Each failure is written to stderr as one line, "failpoint: allocation N
 * after 'P' failed at FILE:LINE", whatever the log level. Counting is over
 * every thread of the process (the store's writer thread included).
 */
#ifndef SPATE_FAILPOINT_H
#define SPATE_FAILPOINT_H

#include <stddef.h>
#include <stdint.h>

#ifdef SPATE_FAILPOINTS

/* Reads SPATE_FAIL_ALLOC* (and unsets them).
 * Returns -1 with a message in err when a value is not a number. */
int failpoint_init_env(char *err, size_t errcap);
/* Fails count allocations from the nth on (count 0: all from the nth), counting
 * from now; after, when not NULL, is the marker prefix as for the environment,
 * step its step. */
void failpoint_arm(uint64_t nth, uint64_t count, const char *after, uint64_t step);
void failpoint_disarm(void);
/* Allocations that failed since the last arm. */
uint64_t failpoint_fired(void);
/* Allocations counted since the last arm (or the last marker). */
uint64_t failpoint_counted(void);
/* Nonzero when armed with a marker prefix (so a caller may skip building a
 * marker's name). */
int failpoint_marking(void);
/* A point a test can count from: see SPATE_FAIL_ALLOC_AFTER. */
void failpoint_mark(const char *name);
/* The same, the name being "a b" (a request's method and path). */
void failpoint_mark2(const char *a, const char *b);

#else

static inline int failpoint_init_env(char *err, size_t errcap)
{
    (void)err;
    (void)errcap;
    return 0;
}
static inline int failpoint_marking(void)
{
    return 0;
}
static inline void failpoint_mark(const char *name)
{
    (void)name;
}
static inline void failpoint_mark2(const char *a, const char *b)
{
    (void)a;
    (void)b;
}

#endif
#endif
