/* failpoint.c - the allocation-failure injection of failpoint.h (built in with
 * SPATE_FAILPOINTS only). */
#ifdef SPATE_FAILPOINTS

#include "common/failpoint.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/failpoint_alloc.h"

/* This file allocates with libc's own functions. */
#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef strndup

#define AFTER_MAX 128

static atomic_int armed;
static atomic_int counting; /* with a marker: one was seen */
static atomic_uint_fast64_t counted, target, fired, marks;
static uint64_t nth_base, fail_count, step;
static char after[AFTER_MAX];
static size_t after_len;

static void report(uint64_t n, const char *file, int line)
{
    char msg[512];
    int len = snprintf(msg, sizeof msg, "failpoint: allocation %llu%s%s%s failed at %s:%d\n",
                       (unsigned long long)n, after_len ? " after '" : "", after,
                       after_len ? "'" : "", file, line);
    if (len > (int)sizeof msg - 1) len = (int)sizeof msg - 1;
    if (len > 0 && write(STDERR_FILENO, msg, (size_t)len) < 0) {
        /* Nowhere else to say it. */
    }
}

/* Counts one allocation; nonzero when it is to fail. */
static int fails(const char *file, int line)
{
    if (!atomic_load_explicit(&armed, memory_order_relaxed)) return 0;
    if (after_len && !atomic_load(&counting)) return 0;
    uint64_t c = atomic_fetch_add(&counted, 1) + 1;
    uint64_t t = atomic_load(&target);
    if (c < t || (fail_count && c >= t + fail_count)) return 0;
    atomic_fetch_add(&fired, 1);
    report(c, file, line);
    errno = ENOMEM;
    return 1;
}

void *failpoint_malloc(size_t n, const char *file, int line)
{
    return fails(file, line) ? NULL : malloc(n);
}

void *failpoint_calloc(size_t n, size_t size, const char *file, int line)
{
    return fails(file, line) ? NULL : calloc(n, size);
}

void *failpoint_realloc(void *p, size_t n, const char *file, int line)
{
    return fails(file, line) ? NULL : realloc(p, n);
}

char *failpoint_strdup(const char *s, const char *file, int line)
{
    return fails(file, line) ? NULL : strdup(s);
}

char *failpoint_strndup(const char *s, size_t n, const char *file, int line)
{
    return fails(file, line) ? NULL : strndup(s, n);
}

void failpoint_arm(uint64_t nth, uint64_t count, const char *after_prefix, uint64_t step_)
{
    atomic_store(&armed, 0);
    nth_base = nth ? nth : 1;
    fail_count = count;
    step = step_;
    snprintf(after, sizeof after, "%s", after_prefix ? after_prefix : "");
    after_len = strlen(after);
    atomic_store(&counting, 0);
    atomic_store(&counted, 0);
    atomic_store(&fired, 0);
    atomic_store(&marks, 0);
    atomic_store(&target, nth_base);
    atomic_store(&armed, 1);
}

void failpoint_disarm(void)
{
    atomic_store(&armed, 0);
}

uint64_t failpoint_fired(void)
{
    return atomic_load(&fired);
}

uint64_t failpoint_counted(void)
{
    return atomic_load(&counted);
}

int failpoint_marking(void)
{
    return atomic_load_explicit(&armed, memory_order_relaxed) && after_len;
}

void failpoint_mark(const char *name)
{
    if (!failpoint_marking() || strncmp(name, after, after_len) != 0) return;
    uint64_t k = atomic_fetch_add(&marks, 1);
    atomic_store(&target, nth_base + k * step);
    atomic_store(&counted, 0);
    atomic_store(&counting, 1);
}

void failpoint_mark2(const char *a, const char *b)
{
    if (!failpoint_marking()) return;
    char name[AFTER_MAX + 16];
    snprintf(name, sizeof name, "%s %s", a, b);
    failpoint_mark(name);
}

/* A whole decimal number from the environment; -1 when set but not one. */
static int env_u64(const char *name, uint64_t *out, char *err, size_t errcap)
{
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || *v == '-') {
        snprintf(err, errcap, "%s: '%.40s' is not a whole number", name, v);
        return -1;
    }
    *out = x;
    return 1;
}

int failpoint_init_env(char *err, size_t errcap)
{
    uint64_t n = 0, count = 1, step_ = 0;
    int set = env_u64("SPATE_FAIL_ALLOC", &n, err, errcap);
    if (set < 0 || env_u64("SPATE_FAIL_ALLOC_COUNT", &count, err, errcap) < 0 ||
        env_u64("SPATE_FAIL_ALLOC_STEP", &step_, err, errcap) < 0)
        return -1;
    const char *a = getenv("SPATE_FAIL_ALLOC_AFTER");
    if (a && strlen(a) >= AFTER_MAX) {
        snprintf(err, errcap, "SPATE_FAIL_ALLOC_AFTER: longer than %d bytes", AFTER_MAX - 1);
        return -1;
    }
    if (set) {
        if (n == 0) {
            snprintf(err, errcap, "SPATE_FAIL_ALLOC: 0 is no allocation (the first is 1)");
            return -1;
        }
        failpoint_arm(n, count, a, step_);
        char msg[300];
        int len =
            snprintf(msg, sizeof msg,
                     "failpoint: armed: allocation %llu%s%s%s fails (count %llu, step %llu)\n",
                     (unsigned long long)n, a && *a ? " after '" : "", a ? a : "",
                     a && *a ? "'" : "", (unsigned long long)count, (unsigned long long)step_);
        if (len > (int)sizeof msg - 1) len = (int)sizeof msg - 1;
        if (write(STDERR_FILENO, msg, (size_t)len) < 0) {
            /* Nowhere else to say it. */
        }
    }
    /* Runners, zygotes and functions start from spated: they are not to fail. */
    unsetenv("SPATE_FAIL_ALLOC");
    unsetenv("SPATE_FAIL_ALLOC_COUNT");
    unsetenv("SPATE_FAIL_ALLOC_STEP");
    unsetenv("SPATE_FAIL_ALLOC_AFTER");
    return 0;
}

#else
/* ISO C wants something in a translation unit. */
typedef int failpoint_not_built;
#endif
