/*
 * histogram.h - a latency histogram with fixed buckets in seconds, in the
 * shape Prometheus expects: counts per bucket, their sum and total. Observing
 * is a short scan and three additions, cheap enough for every invocation.
 *
 * Buckets go 1-2.5-5 from 50 us to 60 s: fine enough at the sub-millisecond
 * end for native handlers, wide enough for deadlines of minutes.
 */
#ifndef SPATE_HISTOGRAM_H
#define SPATE_HISTOGRAM_H

#include <stdint.h>

#include "common/buf.h"

#define HIST_BUCKETS 19

typedef struct histogram {
    uint64_t counts[HIST_BUCKETS + 1]; /* the last: above every bound (+Inf) */
    uint64_t total;
    double sum; /* seconds */
} histogram;

/* The upper bounds, in seconds. */
extern const double hist_bounds[HIST_BUCKETS];

void histogram_observe(histogram *h, double seconds);
static inline void histogram_observe_us(histogram *h, uint64_t us)
{
    histogram_observe(h, (double)us / 1e6);
}

/* Appends the _bucket, _sum and _count series of name; labels is the text
 * inside the braces (e.g. `function="f"`), or "" for none. */
int histogram_write(buf *out, const char *name, const char *labels, const histogram *h);

#endif
