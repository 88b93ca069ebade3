/*
 * history_ring.c - bench/console's measure of the history ring alone
 * (src/metrics/history.c): N functions and N/10 topics sampled for 16
 * simulated minutes, each changing every CHANGE seconds (1: every second,
 * the worst case), in the ring spated uses (4 MiB). Prints one line of
 * JSON: the memory held, the minutes kept, the ring's bytes used and the
 * time of a sample (begin, puts, end) on this machine.
 *
 *     history_ring N CHANGE
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "metrics/history.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: history_ring FUNCTIONS CHANGE_EVERY_S\n");
        return 2;
    }
    int n = atoi(argv[1]), every = atoi(argv[2]);
    if (n < 1 || every < 1) return 2;
    history *h = history_create(HISTORY_BYTES_DEFAULT);
    if (!h) return 1;
    char(*names)[32] = malloc((size_t)n * sizeof *names);
    for (int k = 0; k < n; k++) snprintf(names[k], sizeof names[k], "function-%d", k);
    const int seconds = 16 * 60;
    double spent = 0;
    for (int s = 0; s < seconds; s++) {
        double t0 = now_s();
        history_begin(h, 1800000000000LL + (int64_t)s * 1000);
        for (int k = 0; k < n; k++) {
            /* Function k changes every `every` seconds, staggered. */
            int step = (s + k) / every;
            history_fn f = {.busy = (uint16_t)(step % 4),
                            .idle = 1,
                            .backlog = (uint32_t)(step % 50),
                            .completions = (float)(step % 9),
                            .arrivals = (float)(step % 9),
                            .p50_ms = 2.5f,
                            .p99_ms = 9.0f + (float)(step % 3)};
            history_put_fn(h, names[k], &f);
            if (k % 10 == 0) {
                history_topic q = {.depth = (uint32_t)(step % 50), .oldest_s = 0.5f};
                history_put_topic(h, names[k], &q);
            }
        }
        history_end(h);
        spent += now_s() - t0;
    }
    history_stats st;
    history_get_stats(h, &st);
    printf(
        "{\"functions\": %d, \"change_every_s\": %d, \"memory_bytes\": %zu, \"ring_bytes\": %zu, "
        "\"ring_bytes_used\": %zu, \"minutes_kept\": %.1f, \"sample_us\": %.1f, \"dropped\": "
        "%llu}\n",
        n, every, st.memory, st.bytes_max, st.bytes_used,
        (double)(st.newest_ms - st.oldest_ms) / 60000.0, spent / seconds * 1e6,
        (unsigned long long)st.dropped_rows);
    history_free(h);
    free(names);
    return 0;
}
