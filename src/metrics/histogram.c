#include "metrics/histogram.h"

const double hist_bounds[HIST_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,     0.25,   0.5,     1,      2.5,   5,      10,    30,   60,
};
/* As they appear in le="...": written once, not by %g (5e-05). */
static const char *const bound_text[HIST_BUCKETS] = {
    "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1",     "0.25",   "0.5",     "1",      "2.5",   "5",      "10",    "30",   "60",
};

void histogram_observe(histogram *h, double seconds)
{
    int i = 0;
    while (i < HIST_BUCKETS && seconds > hist_bounds[i]) i++;
    h->counts[i]++;
    h->total++;
    h->sum += seconds;
}

int histogram_write(buf *out, const char *name, const char *labels, const histogram *h)
{
    const char *sep = labels[0] ? "," : "";
    uint64_t cumulative = 0;
    int rc = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        cumulative += h->counts[i];
        rc |= buf_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, bound_text[i],
                         (unsigned long long)cumulative);
    }
    rc |= buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                     (unsigned long long)h->total);
    if (labels[0])
        rc |= buf_printf(out, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels, h->sum, name,
                         labels, (unsigned long long)h->total);
    else
        rc |= buf_printf(out, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name,
                         (unsigned long long)h->total);
    return rc;
}
