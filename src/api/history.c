/*
 * history.c - this node's history (metrics/history.h): once a second on the
 * loop, a sample of every busy function (invoked or with instances since it
 * was last quiet; an idle one's row is zero), topic and source as the
 * dashboard draws them, and GET /v1/history?since=MS&delta=1 to read it.
 *
 * A sample reads what /metrics reads (pool stats, the autoscaler's view,
 * topic summaries, sources) and keeps, per function, the counters of the
 * second before: rates, cold starts and p50/p99 are of that second alone.
 * What a sample cost (the loop thread's CPU time) is shown in the answer
 * (sample_us, sample_avg_us).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "api/internal.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/fmt.h"
#include "common/parse.h"
#include "common/strmap.h"
#include "metrics/history.h"
#include "sched/functions.h"
#include "sched/triggers.h"

/* An answer's samples stop past this (the rest: ask again from next_since).
 * Writing a MiB of it holds the loop some 30 ms: at 8 MiB an answer, 50
 * readers at once held every other request for 4 s. */
#define HISTORY_ANSWER_BUDGET (1u << 20)
/* Its buffer: the budget and one full frame of the most series. */
#define HISTORY_ANSWER_MAX (24u << 20)
/* The answers' bytes written in one second, all readers together: past it
 * the next gets 503 for the rest of that second (the page asks again the
 * next), so readers, however many, take at most a few tenths of the loop. */
#define HISTORY_BYTES_PER_S (8u << 20)

typedef struct fn_prev {
    char *name;         /* the map's key */
    int64_t created_ms; /* of the function these counters are of */
    uint64_t done, cold, waiting;
    histogram duration;
    int64_t seen_ms;
    struct fn_prev *next_gone; /* drop_forgotten's list */
} fn_prev;

struct api_history {
    api *a;
    uv_timer_t timer;
    history *ring;
    strmap prev; /* function name -> fn_prev */
    int64_t now_ms;
    uint32_t topics_sampled; /* in this sample */
    /* The cost of sampling: the last, and the total over samples. */
    uint64_t sample_ns, total_ns, samples;
    /* Answers' bytes written in the second answer_s (HISTORY_BYTES_PER_S). */
    int64_t answer_s;
    size_t answer_bytes;
};

/* The q-quantile (ms) of what the histogram delta d holds, by linear
 * interpolation in its bucket (as PromQL's histogram_quantile); 0: empty. */
static double quantile_ms(const histogram *d, double q)
{
    uint64_t total = 0;
    for (int i = 0; i <= HIST_BUCKETS; i++) total += d->counts[i];
    if (!total) return 0;
    double rank = q * (double)total, below = 0, lower = 0;
    for (int i = 0; i <= HIST_BUCKETS; i++) {
        double upper = i < HIST_BUCKETS ? hist_bounds[i] : lower;
        double in = (double)d->counts[i];
        if (below + in >= rank && in > 0)
            return 1000 * (lower + (upper - lower) * ((rank - below) / in));
        below += in;
        lower = upper;
    }
    return 1000 * lower;
}

static uint16_t u16(uint64_t v)
{
    return v > UINT16_MAX ? UINT16_MAX : (uint16_t)v;
}

/* Nonzero while it has a trigger's backlog to show (functions_each_busy
 * keeps it in the busy list). */
static int sample_fn(fn *f, void *data)
{
    struct api_history *hs = data;
    pool_stats st;
    pool_stats_get(f->pool, &st);
    const pool_metrics *m = pool_metrics_get(f->pool);
    scale_view sv;
    triggers_scale_view(hs->a->tr, f->name, &sv);
    uint64_t done = m->outcomes[POOL_OK] + m->outcomes[POOL_FAILED] + m->outcomes[POOL_CRASHED] +
                    m->outcomes[POOL_TIMEOUT];

    /* A function is sampled from its first invocation or instance on (the
     * busy list), and its counters are kept while it exists: those of one
     * never seen are its pool's first, from zero. A function deleted and
     * deployed again under its name starts from zero too. */
    fn_prev *p = strmap_get(&hs->prev, f->name, strlen(f->name));
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p || !(p->name = strdup(f->name)) || strmap_put(&hs->prev, p->name, p) != 0) {
            if (p) free(p->name);
            free(p);
            return 0;
        }
        p->created_ms = f->created_ms;
    }
    if (p->created_ms != f->created_ms) {
        char *name = p->name;
        memset(p, 0, sizeof *p);
        p->name = name;
        p->created_ms = f->created_ms;
    }
    double dt = 1.0; /* the timer's period */
    history_fn v = {
        .busy = u16(st.busy),
        .idle = u16(st.idle),
        .starting = u16(st.starting),
        .triggered = (uint8_t)(sv.has_triggers != 0),
        .backlog = (uint32_t)(sv.has_triggers ? sv.backlog : st.waiting),
    };
    {
        histogram d = {0};
        for (int i = 0; i <= HIST_BUCKETS; i++)
            d.counts[i] = m->duration.counts[i] - p->duration.counts[i];
        v.p50_ms = (float)quantile_ms(&d, 0.5);
        v.p99_ms = (float)quantile_ms(&d, 0.99);
        v.completions = (float)((double)(done - p->done) / dt);
        v.cold_starts = u16(st.cold_starts - p->cold);
        double arr = sv.has_triggers
                         ? sv.arrival_per_s
                         : v.completions + ((double)st.waiting - (double)p->waiting) / dt;
        v.arrivals = (float)(arr > 0 ? arr : 0);
    }
    if (sv.has_triggers) {
        /* No handler time measured yet: the ETA is unknown, not infinite. */
        v.eta_s = isinf(sv.eta_s) && sv.service_ms <= 0 ? -1.0f : (float)sv.eta_s;
        v.deadline_s = (float)sv.deadline_s;
        v.at_risk = (uint8_t)(sv.at_risk != 0);
    }
    p->done = done;
    p->cold = st.cold_starts;
    p->waiting = st.waiting;
    p->duration = m->duration;
    p->seen_ms = hs->now_ms;
    history_put_fn(hs->ring, f->name, &v);
    return v.backlog > 0;
}

/* The first --metrics-topics topics in the queue's order: a sample costs
 * that many summaries whatever the number of topics (each second, on the
 * loop). */
static int sample_topic(const char *topic, void *data)
{
    struct api_history *hs = data;
    if (hs->topics_sampled++ >= hs->a->limits.metrics_topics) return 1;
    topic_summary sum;
    if (api_topic_summary(hs->a, topic, &sum) != 0) return 0;
    history_topic v = {.depth = sum.depth > UINT32_MAX ? UINT32_MAX : (uint32_t)sum.depth,
                       .oldest_s = (float)sum.oldest_age_s};
    history_put_topic(hs->ring, topic, &v);
    return 0;
}

static void sample_source(const source_view *s, void *data)
{
    struct api_history *hs = data;
    history_source v = {.lag = (float)s->lag, .connected = (uint8_t)(s->connected != 0)};
    history_put_source(hs->ring, s->name, &v);
}

/* Forgets the counters of functions that are gone (deleted; a new one of
 * that name starts from its own zero). Not those idle for long: the busy
 * list leaves them out of the samples, and their next busy second's rates
 * are counted from these. */
static void forget(const char *key, void *value, void *data)
{
    fn_prev *p = value;
    struct api_history *hs = data;
    fn *f = functions_find(hs->a->table, key, strlen(key));
    if (!f || f->created_ms != p->created_ms) p->seen_ms = -1;
}

static void collect_gone(const char *key, void *value, void *data)
{
    (void)key;
    fn_prev **list = data;
    fn_prev *p = value;
    if (p->seen_ms != -1) return;
    p->next_gone = *list;
    *list = p;
}

static void drop_forgotten(struct api_history *hs)
{
    strmap_each(&hs->prev, forget, hs);
    /* strmap_each may not change the map: remove in a second pass, the
     * gone ones gathered in one walk (not a walk for each). */
    fn_prev *gone = NULL;
    strmap_each(&hs->prev, collect_gone, &gone);
    while (gone) {
        fn_prev *next = gone->next_gone;
        strmap_remove(&hs->prev, gone->name);
        free(gone->name);
        free(gone);
        gone = next;
    }
}

/* CPU time of this thread: what a sample costs, not how long the machine
 * left it waiting. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_sample(uv_timer_t *t)
{
    struct api_history *hs = t->data;
    uint64_t t0 = thread_cpu_ns();
    hs->now_ms = clock_now_ms();
    history_begin(hs->ring, hs->now_ms);
    /* The busy functions only (invoked, or with instances, since they were
     * last found quiet): an idle one's row is all zero, which a sample
     * says by leaving it out (history_begin), so the sample costs the busy
     * ones whatever the number of functions (100,000 deployed cost each
     * second what they were, sorted by name). A function's last row, once
     * quiet, is written before it leaves the list. */
    functions_each_busy(hs->a->table, sample_fn, hs);
    hs->topics_sampled = 0;
    queue_topics_after(hs->a->q, NULL, sample_topic, hs);
    if (hs->a->src) sources_each(hs->a->src, sample_source, hs);
    history_end(hs->ring);
    if (hs->samples % 60 == 59) drop_forgotten(hs);
    hs->sample_ns = thread_cpu_ns() - t0;
    hs->total_ns += hs->sample_ns;
    hs->samples++;
}

int api_history_start(api *a, uv_loop_t *loop, size_t bytes)
{
    struct api_history *hs = calloc(1, sizeof *hs);
    if (!hs || !(hs->ring = history_create(bytes))) {
        free(hs);
        return ERR_NOMEM;
    }
    hs->a = a;
    strmap_init(&hs->prev);
    uv_timer_init(loop, &hs->timer);
    hs->timer.data = hs;
    /* The history never keeps spated running. */
    uv_unref((uv_handle_t *)&hs->timer);
    uv_timer_start(&hs->timer, on_sample, 1000, 1000);
    a->history = hs;
    return 0;
}

void api_history_stop(api *a)
{
    if (a->history) uv_timer_stop(&a->history->timer);
}

static void free_prev(const char *key, void *value, void *data)
{
    (void)key;
    (void)data;
    fn_prev *p = value;
    free(p->name);
    free(p);
}

static void on_closed(uv_handle_t *h)
{
    struct api_history *hs = h->data;
    strmap_each(&hs->prev, free_prev, NULL);
    strmap_free(&hs->prev);
    history_free(hs->ring);
    free(hs);
}

void api_history_free(api *a)
{
    if (!a->history) return;
    uv_timer_stop(&a->history->timer);
    uv_close((uv_handle_t *)&a->history->timer, on_closed);
    a->history = NULL;
}

typedef struct history_params {
    uint64_t since;
    int delta;
    char why[200];
} history_params;

static int on_param(const char *key, size_t klen, const char *val, size_t vlen, void *data)
{
    history_params *p = data;
    if (klen == 5 && memcmp(key, "since", 5) == 0) {
        /* Milliseconds since the epoch, up to the year 9999. */
        if (parse_u64(val, vlen, 0, 253402300799999ull, &p->since) == 0) return 0;
        snprintf(p->why, sizeof p->why,
                 "since must be milliseconds since the epoch (0 to 253402300799999), not '%.*s'",
                 (int)(vlen > 40 ? 40 : vlen), val);
        return ERR_INVAL;
    }
    if (klen == 5 && memcmp(key, "delta", 5) == 0)
        return api_bool_param("delta", val, vlen, &p->delta, p->why, sizeof p->why) ? ERR_INVAL : 0;
    snprintf(p->why, sizeof p->why, "unknown parameter '%.*s' (since and delta are known)",
             (int)(klen > 40 ? 40 : klen), key);
    return ERR_INVAL;
}

/* GET /v1/history?since=MS&delta=1 */
void api_history(api *a, http_request *req)
{
    struct api_history *hs = a->history;
    if (!hs) {
        http_respond_error(req, 503, "unavailable", "this node keeps no history");
        return;
    }
    history_params p = {0};
    if (http_query_parse(req->query, on_param, &p) != 0) {
        http_respond_error(req, 400, "bad_parameter", "%s",
                           p.why[0] ? p.why : "malformed query string");
        return;
    }
    uint64_t since = p.since;
    int delta = p.delta;
    int64_t second = clock_now_ms() / 1000;
    if (second != hs->answer_s) {
        hs->answer_s = second;
        hs->answer_bytes = 0;
    }
    if (hs->answer_bytes >= HISTORY_BYTES_PER_S) {
        http_respond_error(req, 503, "busy",
                           "the history answered %u MiB this second, its most: ask again in a "
                           "second",
                           HISTORY_BYTES_PER_S >> 20);
        return;
    }

    history_stats st;
    history_get_stats(hs->ring, &st);
    buf out;
    buf_init(&out, HISTORY_ANSWER_MAX);
    const char *self = a->nodes.self ? a->nodes.self(a->nodes.data) : "";
    char node[256];
    *fmt_json_str(node, node + sizeof node, self, strlen(self)) = '\0';
    buf_printf(&out,
               "{\"node\":\"%s\",\"ring_bytes\":%zu,\"ring_bytes_used\":%zu,\"series\":%zu,"
               "\"sample_us\":%.1f,\"sample_avg_us\":%.1f,",
               node, st.bytes_max, st.bytes_used, st.names, (double)hs->sample_ns / 1e3,
               hs->samples ? (double)hs->total_ns / (double)hs->samples / 1e3 : 0.0);
    int rc = history_json(hs->ring, &out, (int64_t)since, delta, HISTORY_ANSWER_BUDGET);
    if (rc == 0) rc = buf_append_str(&out, "}\n");
    if (rc != 0) {
        buf_free(&out);
        http_respond_error(req, 500, "internal", "cannot write the history: %s", err_str(rc));
        return;
    }
    hs->answer_bytes += out.len;
    http_respond(req, 200, "application/json", "Cache-Control: no-store\r\n", out.data, out.len);
    buf_free(&out);
}
