/*
 * metrics.c - GET /metrics: the node in the Prometheus text exposition
 * format (version 0.0.4). Everything is read from the live structures at
 * scrape time; nothing is kept for it but the counters and histograms the
 * pools and triggers maintain anyway.
 *
 * A scrape never holds the loop for long, whatever the number of topics:
 * their figures are read, then the kept ones' series written, over several
 * loop turns, each at most SPATE_METRICS_SLICE_US, resumed from the last
 * topic's name (the queue keeps every topic's place, queue_topics_after) or
 * the last series written, and other work (an invocation, a publish) runs
 * between them. Only the deepest --metrics-topics topics get series of their
 * own (kept in a heap as they are read); the rest are counted. Functions and
 * triggers are read and written in the last turn. The answer goes once it is
 * whole.
 *
 * Names follow Prometheus conventions: a spate_ prefix, base units (seconds,
 * bytes), _total on counters; process_* as the official clients name them.
 * Function and topic names need no escaping in label values: their alphabet
 * (common/names.h) has no quote, backslash or newline.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/fmt.h"
#include "common/limits.h"
#include "sched/functions.h"
#include "sched/triggers.h"
#include "common/storehealth.h"

#define LABELS_MAX 256

/* Outcomes by version, over the function's pool and its side pools. */
#define FN_ROW_VERSIONS (POOL_METRIC_VERSIONS * (2 + SPATE_SIDE_POOLS_MAX))

typedef struct fn_row {
    const fn *f;
    pool_stats st;
    const pool_metrics *m;
    scale_view sv;
    pool_version_outcomes vers[FN_ROW_VERSIONS];
    size_t nvers;
} fn_row;

typedef struct topic_row {
    char *name;
    topic_summary sum;
    size_t order; /* in the queue's order: the chosen are written so */
} topic_row;

typedef struct trigger_row {
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    char function[SPATE_NAME_MAX + 1];
    queue_sub_stats stats;
    uint32_t in_flight;
    const histogram *end_to_end;
} trigger_row;

typedef struct scrape {
    api *a;
    http_request *req;
    int aborted;                           /* the client left: stop at the next turn */
    uv_idle_t turn;                        /* a slice each loop turn; idle, not a 0 ms timer, which
                                              libuv runs again before polling when re-armed in its callback */
    char cursor[SPATE_TOPIC_NAME_MAX + 1]; /* the last topic read ("" none yet) */
    uint64_t slice_end_ns;
    uint32_t in_slice;
    size_t visited; /* topics the turns went past */
    int topics_done;
    size_t all_topics;                /* topics read, before keeping the deepest */
    size_t series_family, series_row; /* where write_topic_series goes on */
    buf out;
    fn_row *fns;
    size_t nfns, capfns;
    topic_row *topics;
    size_t ntopics, captopics;
    trigger_row *trs;
    size_t ntrs, captrs;
} scrape;

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return 0;
    size_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, c * size);
    if (!p) return -1;
    *arr = p;
    *cap = c;
    return 0;
}

static void add_versions(const pool_version_outcomes *m, void *data)
{
    fn_row *r = data;
    for (size_t i = 0; i < POOL_METRIC_VERSIONS; i++) {
        if (!m[i].version) continue;
        size_t k = 0;
        while (k < r->nvers && r->vers[k].version != m[i].version) k++;
        if (k == r->nvers) {
            if (k == FN_ROW_VERSIONS) continue;
            r->vers[r->nvers++] = (pool_version_outcomes){.version = m[i].version};
        }
        for (int o = 0; o < POOL_OUTCOMES; o++) r->vers[k].outcomes[o] += m[i].outcomes[o];
    }
}

static int by_version(const void *a, const void *b)
{
    uint32_t x = ((const pool_version_outcomes *)a)->version;
    uint32_t y = ((const pool_version_outcomes *)b)->version;
    return x < y ? -1 : x > y;
}

static void collect_fn(fn *f, void *data)
{
    scrape *s = data;
    if (grow((void **)&s->fns, &s->capfns, s->nfns, sizeof *s->fns)) return;
    fn_row *r = &s->fns[s->nfns++];
    r->f = f;
    pool_stats_get(f->pool, &r->st);
    r->m = pool_metrics_get(f->pool);
    triggers_scale_view(s->a->tr, f->name, &r->sv);
    r->nvers = 0;
    functions_each_outcomes(f, add_versions, r);
    qsort(r->vers, r->nvers, sizeof *r->vers, by_version);
}

static int deeper(const topic_row *x, const topic_row *y)
{
    if (x->sum.depth != y->sum.depth) return x->sum.depth > y->sum.depth;
    return x->order < y->order;
}

static void swap_rows(topic_row *x, topic_row *y)
{
    topic_row t = *x;
    *x = *y;
    *y = t;
}

/* The kept rows are a heap whose root is the shallowest of them: a topic
 * deeper than it takes its place. Ties go to the earlier topic, so with
 * equal depths (the usual case: a crowd of idle topics) a later topic costs
 * one comparison and nothing is copied. */
static void sift_down(topic_row *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && deeper(&h[m], &h[l])) m = l;
        if (r < n && deeper(&h[m], &h[r])) m = r;
        if (m == i) return;
        swap_rows(&h[i], &h[m]);
        i = m;
    }
}

static void sift_up(topic_row *h, size_t i)
{
    while (i > 0 && deeper(&h[(i - 1) / 2], &h[i])) {
        swap_rows(&h[(i - 1) / 2], &h[i]);
        i = (i - 1) / 2;
    }
}

/* One topic's figures, kept if it is among the deepest --metrics-topics so
 * far; 1 (stop) once the turn's time is up, checked every 32 topics (a
 * summary costs about a microsecond). */
static int collect_topic(const char *topic, void *data)
{
    scrape *s = data;
    if (++s->in_slice % 32 == 0 && clock_mono_ns() >= s->slice_end_ns) return 1;
    snprintf(s->cursor, sizeof s->cursor, "%s", topic);
    s->visited++;
    topic_row r = {0};
    if (api_topic_summary(s->a, topic, &r.sum) != 0) return 0;
    r.order = s->all_topics++;
    size_t keep = s->a->limits.metrics_topics;
    if (s->ntopics < keep) {
        if (grow((void **)&s->topics, &s->captopics, s->ntopics, sizeof *s->topics) ||
            !(r.name = strdup(topic)))
            return 0;
        s->topics[s->ntopics] = r;
        sift_up(s->topics, s->ntopics++);
    } else if (keep && deeper(&r, &s->topics[0])) {
        if (!(r.name = strdup(topic))) return 0;
        free(s->topics[0].name);
        s->topics[0] = r;
        sift_down(s->topics, s->ntopics, 0);
    }
    return 0;
}

static int by_order(const void *x, const void *y)
{
    size_t a = ((const topic_row *)x)->order, b = ((const topic_row *)y)->order;
    return a < b ? -1 : a > b;
}

/* The kept rows in the queue's order, as they are written. */
static void keep_deepest(scrape *s)
{
    if (s->ntopics > 0) /* topics is NULL until the first (qsort's first argument may not be) */
        qsort(s->topics, s->ntopics, sizeof *s->topics, by_order);
}

static void collect_trigger(const trigger_view *v, void *data)
{
    scrape *s = data;
    if (grow((void **)&s->trs, &s->captrs, s->ntrs, sizeof *s->trs)) return;
    trigger_row *r = &s->trs[s->ntrs++];
    snprintf(r->topic, sizeof r->topic, "%s", v->topic);
    snprintf(r->function, sizeof r->function, "%s", v->cfg->function);
    r->stats = v->stats;
    r->in_flight = v->in_flight;
    r->end_to_end = v->end_to_end;
}

static void family(scrape *s, const char *name, const char *type, const char *help)
{
    buf_printf(&s->out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A sample value; Prometheus spells infinity +Inf. Whole numbers (most
 * samples: counts) are written without printf's floating-point path, which
 * was most of a large scrape's time. */
static void value(scrape *s, const char *name, const char *labels, double v)
{
    size_t nlen = strlen(name), llen = strlen(labels);
    if (v >= 0 && v < 9007199254740992.0 && v == (double)(uint64_t)v && nlen + llen < 400) {
        char line[448], *p = line;
        p = fmt_str(p, name, nlen);
        *p++ = '{';
        p = fmt_str(p, labels, llen);
        p = fmt_lit(p, "} ");
        p = fmt_u64(p, (uint64_t)v);
        *p++ = '\n';
        buf_append(&s->out, line, (size_t)(p - line));
    } else if (isinf(v))
        buf_printf(&s->out, "%s{%s} +Inf\n", name, labels);
    else if (isnan(v))
        buf_printf(&s->out, "%s{%s} NaN\n", name, labels);
    else
        buf_printf(&s->out, "%s{%s} %.17g\n", name, labels, v);
}

static void fn_labels(const fn_row *r, char *out)
{
    snprintf(out, LABELS_MAX, "function=\"%s\"", r->f->name);
}

/* --- Functions -------------------------------------------------------------------------- */

static void write_functions(scrape *s)
{
    char l[LABELS_MAX];

    family(s, "spate_invocations_total", "counter",
           "Invocations finished, by function and outcome (ok, error, crashed, timeout, "
           "rejected, unavailable).");
    for (size_t i = 0; i < s->nfns; i++)
        for (int o = 0; o < POOL_OUTCOMES; o++) {
            snprintf(l, sizeof l, "function=\"%s\",outcome=\"%s\"", s->fns[i].f->name,
                     pool_outcome_name((enum pool_outcome)o));
            value(s, "spate_invocations_total", l, (double)s->fns[i].m->outcomes[o]);
        }

    /* Beside the series above rather than a label of them: their set of
     * labels stays what dashboards and alerts already match. */
    family(s, "spate_invocations_by_version_total", "counter",
           "Invocations finished, by function, the version that ran them (or was meant to) and "
           "outcome; the newest versions each pool ran.");
    for (size_t i = 0; i < s->nfns; i++)
        for (size_t k = 0; k < s->fns[i].nvers; k++)
            for (int o = 0; o < POOL_OUTCOMES; o++) {
                snprintf(l, sizeof l, "function=\"%s\",version=\"%u\",outcome=\"%s\"",
                         s->fns[i].f->name, s->fns[i].vers[k].version,
                         pool_outcome_name((enum pool_outcome)o));
                value(s, "spate_invocations_by_version_total", l,
                      (double)s->fns[i].vers[k].outcomes[o]);
            }

    static const struct {
        const char *name, *help;
        size_t offset;
    } hists[] = {
        {"spate_invocation_duration_seconds", "Time in the handler, as the instance measured it.",
         offsetof(pool_metrics, duration)},
        {"spate_invocation_queue_wait_seconds",
         "Time an invocation waited for an instance to start it.",
         offsetof(pool_metrics, queue_wait)},
        {"spate_cold_start_duration_seconds",
         "Time from asking for a new instance (spares too) until it was ready.",
         offsetof(pool_metrics, cold_start)},
    };
    for (size_t h = 0; h < sizeof hists / sizeof hists[0]; h++) {
        family(s, hists[h].name, "histogram", hists[h].help);
        for (size_t i = 0; i < s->nfns; i++) {
            fn_labels(&s->fns[i], l);
            histogram_write(&s->out, hists[h].name, l,
                            (const histogram *)((const char *)s->fns[i].m + hists[h].offset));
        }
    }

    family(s, "spate_cold_starts_total", "counter",
           "Invocations that found no instance and got a new one (started for them, or a spare "
           "instance handed over).");
    for (size_t i = 0; i < s->nfns; i++) {
        fn_labels(&s->fns[i], l);
        value(s, "spate_cold_starts_total", l, (double)s->fns[i].st.cold_starts);
    }

    family(s, "spate_instance_seconds_total", "counter",
           "Seconds of instance life (every instance of the function, its spares too): the cost.");
    for (size_t i = 0; i < s->nfns; i++) {
        fn_labels(&s->fns[i], l);
        value(s, "spate_instance_seconds_total", l, s->fns[i].st.instance_seconds);
    }
    family(s, "spate_spare_instance_seconds_total", "counter",
           "The part of spate_instance_seconds_total spent as spare instances (started ahead).");
    for (size_t i = 0; i < s->nfns; i++) {
        fn_labels(&s->fns[i], l);
        value(s, "spate_spare_instance_seconds_total", l, s->fns[i].st.spare_seconds);
    }

    family(s, "spate_instances", "gauge",
           "Instances by function and state (spare: started ahead, serving nothing yet).");
    for (size_t i = 0; i < s->nfns; i++) {
        const pool_stats *st = &s->fns[i].st;
        const struct {
            const char *state;
            uint32_t n;
        } states[] = {{"starting", st->starting},
                      {"idle", st->idle},
                      {"busy", st->busy},
                      {"stopping", st->stopping},
                      {"spare", st->spare}};
        for (size_t k = 0; k < 5; k++) {
            snprintf(l, sizeof l, "function=\"%s\",state=\"%s\"", s->fns[i].f->name,
                     states[k].state);
            value(s, "spate_instances", l, states[k].n);
        }
    }

    family(s, "spate_invocations_waiting", "gauge",
           "Invocations waiting for an instance (in the queue or an instance's mailbox).");
    for (size_t i = 0; i < s->nfns; i++) {
        fn_labels(&s->fns[i], l);
        value(s, "spate_invocations_waiting", l, s->fns[i].st.waiting);
    }

    family(s, "spate_function_max_instances", "gauge", "The function's maximum of instances.");
    for (size_t i = 0; i < s->nfns; i++) {
        fn_labels(&s->fns[i], l);
        value(s, "spate_function_max_instances", l, s->fns[i].st.max_instances);
    }
}

/* --- The autoscaler, per function (over the triggers that feed it) ---------------------- */

static void write_scaling(scrape *s)
{
    static const struct {
        const char *name, *help;
    } g[] = {
        {"spate_autoscaler_desired_instances",
         "Instances the autoscaler wants for the function's triggers."},
        {"spate_autoscaler_backlog_messages",
         "Messages not yet done on the triggers of the function."},
        {"spate_autoscaler_arrivals_per_second",
         "Arrival rate on the topics of the function's triggers."},
        {"spate_autoscaler_service_seconds", "Moving average of the handler time."},
        {"spate_autoscaler_drain_eta_seconds",
         "Time to drain the backlog at the desired instances (+Inf: it cannot; NaN: not "
         "known until an invocation finishes)."},
        {"spate_autoscaler_deadline_seconds",
         "The tightest deadline of the function's triggers (0: none)."},
        {"spate_autoscaler_deadline_at_risk",
         "1 when even the maximum of instances cannot drain the backlog within the deadline."},
    };
    char l[LABELS_MAX];
    for (size_t k = 0; k < sizeof g / sizeof g[0]; k++) {
        family(s, g[k].name, "gauge", g[k].help);
        for (size_t i = 0; i < s->nfns; i++) {
            const scale_view *v = &s->fns[i].sv;
            if (!v->has_triggers) continue;
            /* No handler time measured yet: the ETA is unknown, not infinite. */
            double eta = isinf(v->eta_s) && v->service_ms <= 0 ? NAN : v->eta_s;
            double x[] = {v->desired, (double)v->backlog, v->arrival_per_s,  v->service_ms / 1e3,
                          eta,        v->deadline_s,      v->at_risk ? 1 : 0};
            fn_labels(&s->fns[i], l);
            value(s, g[k].name, l, x[k]);
        }
    }
}

/* --- Topics and triggers ------------------------------------------------------------------ */

static const struct {
    const char *name, *type, *help;
} topic_families[] = {
    {"spate_topic_depth", "gauge",
     "Messages not yet done by the slowest trigger (with no trigger: stored)."},
    {"spate_topic_oldest_message_age_seconds", "gauge",
     "Age of the oldest message not yet done (0: none)."},
    {"spate_topic_in_flight", "gauge", "Messages handed to functions and not yet settled."},
    {"spate_topic_dead_lettered_total", "counter",
     "Messages moved to a dead-letter topic after their last attempt."},
    {"spate_topic_messages_published_total", "counter", "Messages published to the topic."},
    {"spate_topic_messages_stored", "gauge", "Messages kept in the store."},
};
#define TOPIC_FAMILIES (sizeof topic_families / sizeof topic_families[0])

/* The kept topics' series, from where the last turn stopped (their rows are
 * copies: nothing they point to goes between turns). 1 when all are written,
 * 0 when the slice is over. 6,000 series took 0.6-0.8 ms in one go. */
static int write_topic_series(scrape *s)
{
    char l[LABELS_MAX];
    for (; s->series_family < TOPIC_FAMILIES; s->series_family++, s->series_row = 0) {
        size_t k = s->series_family;
        if (s->series_row == 0)
            family(s, topic_families[k].name, topic_families[k].type, topic_families[k].help);
        for (; s->series_row < s->ntopics; s->series_row++) {
            if (s->series_row % 32 == 31 && clock_mono_ns() >= s->slice_end_ns) return 0;
            const topic_summary *t = &s->topics[s->series_row].sum;
            double x[] = {(double)t->depth,         t->oldest_age_s,      (double)t->in_flight,
                          (double)t->dead_lettered, (double)t->published, (double)t->stored};
            snprintf(l, sizeof l, "topic=\"%s\"", s->topics[s->series_row].name);
            value(s, topic_families[k].name, l, x[k]);
        }
    }
    return 1;
}

/* The triggers' series and the topic counts: in the last turn. */
static void write_topics(scrape *s)
{
    char l[LABELS_MAX];
    static const struct {
        const char *name, *type, *help;
    } t[] = {
        {"spate_trigger_depth", "gauge", "Messages of the topic the trigger has not yet done."},
        {"spate_trigger_in_flight", "gauge", "Invocations of the trigger running or waiting."},
        {"spate_trigger_retrying", "gauge", "Messages waiting for a retry."},
        {"spate_trigger_delivered_total", "counter", "Deliveries (attempts) handed out."},
        {"spate_trigger_acknowledged_total", "counter", "Messages done successfully."},
        {"spate_trigger_dead_lettered_total", "counter", "Messages given up on."},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        family(s, t[k].name, t[k].type, t[k].help);
        for (size_t i = 0; i < s->ntrs; i++) {
            const trigger_row *r = &s->trs[i];
            double x[] = {(double)r->stats.depth,    (double)r->in_flight,
                          (double)r->stats.retrying, (double)r->stats.delivered,
                          (double)r->stats.acked,    (double)r->stats.dead_lettered};
            snprintf(l, sizeof l, "topic=\"%s\",function=\"%s\"", r->topic, r->function);
            value(s, t[k].name, l, x[k]);
        }
    }

    family(s, "spate_topics", "gauge", "Topics on this node.");
    buf_printf(&s->out, "spate_topics %zu\n", s->all_topics);
    family(s, "spate_topics_max", "gauge", "The node's maximum of topics (--max-topics).");
    buf_printf(&s->out, "spate_topics_max %u\n", api_max_topics(s->a));
    family(s, "spate_topics_without_series", "gauge",
           "Topics given no spate_topic_* series of their own: beyond the deepest "
           "--metrics-topics.");
    buf_printf(&s->out, "spate_topics_without_series %zu\n", s->all_topics - s->ntopics);

    family(s, "spate_event_end_to_end_seconds", "histogram",
           "Time from a message's publish until its function succeeded with it.");
    for (size_t i = 0; i < s->ntrs; i++) {
        const trigger_row *r = &s->trs[i];
        if (!r->end_to_end) continue;
        snprintf(l, sizeof l, "topic=\"%s\",function=\"%s\"", r->topic, r->function);
        histogram_write(&s->out, "spate_event_end_to_end_seconds", l, r->end_to_end);
    }
}

/* --- The process ---------------------------------------------------------------------------- */

static double boot_time_s(void)
{
    static double btime;
    if (btime > 0) return btime;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lf", &btime) == 1) break;
    fclose(f);
    return btime;
}

/* The node's limits (common/err.h): what is used of each, its maximum where
 * there is one, and the callers it refused (docs/operations.md). */
static void write_limits(scrape *s, const pool_headroom *h)
{
    struct {
        int limit, has_used, has_max;
        uint64_t used, max;
    } rows[] = {
        {ERR_LIMIT_DESCRIPTORS, 1, h->descriptors_max > 0, h->descriptors, h->descriptors_max},
        {ERR_LIMIT_PROCESSES, h->has_processes, h->has_processes && h->processes_max > 0,
         h->processes, h->processes_max},
        {ERR_LIMIT_INSTANCES, 1, 1, h->instances, h->instances_max},
        {ERR_LIMIT_ZYGOTES, 1, h->zygotes_max > 0, h->zygotes, h->zygotes_max},
    };
    size_t n = sizeof rows / sizeof rows[0];
    family(s, "spate_node_limit_used", "gauge",
           "What the node uses of a limit: spated's descriptors, its functions' processes and "
           "threads, live instances, running zygotes.");
    for (size_t i = 0; i < n; i++)
        if (rows[i].has_used)
            buf_printf(&s->out, "spate_node_limit_used{limit=\"%s\"} %llu\n",
                       err_limit_label(rows[i].limit), (unsigned long long)rows[i].used);
    family(s, "spate_node_limit_max", "gauge",
           "A limit of the node (RLIMIT_NOFILE, --max-processes, --max-instances, the zygote "
           "budget); absent where spated sets none.");
    for (size_t i = 0; i < n; i++)
        if (rows[i].has_max)
            buf_printf(&s->out, "spate_node_limit_max{limit=\"%s\"} %llu\n",
                       err_limit_label(rows[i].limit), (unsigned long long)rows[i].max);
    family(s, "spate_node_limit_refusals_total", "counter",
           "Invocations and deploys answered 503 because a node limit was reached.");
    for (int l = 0; l < ERR_LIMITS; l++)
        buf_printf(&s->out, "spate_node_limit_refusals_total{limit=\"%s\"} %llu\n",
                   err_limit_label(l), (unsigned long long)h->refusals[l]);
    family(s, "spate_node_memory_available_bytes", "gauge",
           "Memory the host can still give (MemAvailable of /proc/meminfo).");
    buf_printf(&s->out, "spate_node_memory_available_bytes %llu\n",
               (unsigned long long)h->memory_available);
}

/* The store's disk (store/health.h). */
static void write_store_health(scrape *s)
{
    store_health sh;
    store_health_get(&sh);
    family(s, "spate_store_errors_total", "counter",
           "Failures of the store's disk: op commit (a transaction: I/O error, disk full), read "
           "(messages read back), artifact (an artifact's write, fsync or rename).");
    for (int i = 0; i < STORE_OPS; i++)
        buf_printf(&s->out, "spate_store_errors_total{op=\"%s\"} %llu\n", store_op_label(i),
                   (unsigned long long)sh.errors[i]);
    family(s, "spate_store_healthy", "gauge",
           "1 when the store's last commit, read and artifact write succeeded, 0 while one fails.");
    buf_printf(&s->out, "spate_store_healthy %d\n", sh.healthy ? 1 : 0);
}

static void write_process(scrape *s)
{
    char stat[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(stat, 1, sizeof stat - 1, f) : 0;
    if (f) fclose(f);
    stat[n] = '\0';
    /* Fields after the command, which ends at the last ')'. */
    const char *p = strrchr(stat, ')');
    unsigned long utime = 0, stime = 0, vsize = 0;
    unsigned long long start = 0;
    long rss = 0;
    if (p && sscanf(p + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                    "%*d %llu %lu %ld",
                    &utime, &stime, &start, &vsize, &rss) == 5) {
        double tick = (double)sysconf(_SC_CLK_TCK);
        family(s, "process_cpu_seconds_total", "counter", "User and system CPU time of spated.");
        buf_printf(&s->out, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / tick);
        family(s, "process_resident_memory_bytes", "gauge", "Resident memory of spated.");
        buf_printf(&s->out, "process_resident_memory_bytes %lld\n",
                   (long long)rss * sysconf(_SC_PAGESIZE));
        family(s, "process_virtual_memory_bytes", "gauge", "Virtual memory of spated.");
        buf_printf(&s->out, "process_virtual_memory_bytes %lu\n", vsize);
        family(s, "process_start_time_seconds", "gauge",
               "Start time of spated since the Unix epoch.");
        buf_printf(&s->out, "process_start_time_seconds %.2f\n",
                   boot_time_s() + (double)start / tick);
    }

    pool_headroom h;
    pool_headroom_get(&h);
    family(s, "process_open_fds", "gauge", "Open file descriptors of spated.");
    buf_printf(&s->out, "process_open_fds %llu\n", (unsigned long long)h.descriptors);
    if (h.descriptors_max) {
        family(s, "process_max_fds", "gauge", "The limit of open file descriptors of spated.");
        buf_printf(&s->out, "process_max_fds %llu\n", (unsigned long long)h.descriptors_max);
    }
    write_limits(s, &h);
    write_store_health(s);

    const api_nodes *nodes = &s->a->nodes;
    if (nodes->json) {
        family(s, "spate_cluster_nodes", "gauge",
               "Nodes of the cluster heard from in the last 5 s.");
        buf_printf(&s->out, "spate_cluster_nodes %u\n", nodes->live(nodes->data));
        family(s, "spate_cluster_connected", "gauge",
               "1 while the node is connected to a NATS server, 0 while it reconnects.");
        buf_printf(&s->out, "spate_cluster_connected %d\n", nodes->connected(nodes->data));
        if (nodes->rejected) {
            static const char *const kinds[] = {"entry", "chunk", "message"};
            family(s, "spate_cluster_rejected_total", "counter",
                   "Registry entries, artifact chunks and messages between nodes refused: not "
                   "sealed with this node's cluster key (forged, another key, or altered).");
            for (int k = 0; k < 3; k++)
                buf_printf(&s->out, "spate_cluster_rejected_total{kind=\"%s\"} %llu\n", kinds[k],
                           (unsigned long long)nodes->rejected(nodes->data, k));
        }
    }
    family(s, "spate_async_loops_stopped_total", "counter",
           "Destination records sent to dead letters, not to an async topic: their chain of "
           "async invocations was 16 long.");
    buf_printf(&s->out, "spate_async_loops_stopped_total %llu\n",
               (unsigned long long)s->a->async_loops_stopped);
    family(s, "spate_node_instances", "gauge", "Live instances of every function of the node.");
    buf_printf(&s->out, "spate_node_instances %u\n", pool_node_live());
    pool_zygote_stats zs;
    pool_zygote_stats_get(&zs);
    family(s, "spate_node_zygotes", "gauge",
           "Zygote processes running (loading or ready), over every function.");
    buf_printf(&s->out, "spate_node_zygotes %u\n", zs.running);
    family(s, "spate_node_zygotes_max", "gauge", "The zygote budget: spated --max-zygotes.");
    buf_printf(&s->out, "spate_node_zygotes_max %u\n", zs.max);
    family(s, "spate_zygote_stops_total", "counter",
           "Zygotes stopped: reason idle (--zygote-idle without instances) or budget (the least "
           "recently used, to make room).");
    buf_printf(&s->out, "spate_zygote_stops_total{reason=\"idle\"} %llu\n",
               (unsigned long long)zs.idle_stopped);
    buf_printf(&s->out, "spate_zygote_stops_total{reason=\"budget\"} %llu\n",
               (unsigned long long)zs.evicted);
    family(s, "spate_zygote_refusals_total", "counter",
           "Invocations' zygote starts refused by a full budget (503 zygote_budget).");
    buf_printf(&s->out, "spate_zygote_refusals_total %llu\n", (unsigned long long)zs.refused);
    pool_spare_stats ss;
    pool_spare_stats_get(&ss);
    family(s, "spate_node_spares", "gauge",
           "Spare instances (started ahead of use, one per recently used function), over every "
           "function; counted in spate_node_instances.");
    buf_printf(&s->out, "spate_node_spares %u\n", ss.running);
    family(s, "spate_spare_events_total", "counter",
           "Spare instances: started, handed over (a cold start served by one), stopped idle "
           "(--spare-idle without use), reclaimed (their room given to another function's start at "
           "--max-instances), lost (ended by themselves).");
    const struct {
        const char *event;
        uint64_t n;
    } ev[] = {{"started", ss.started},
              {"handed_over", ss.handovers},
              {"idle", ss.idle_stopped},
              {"reclaimed", ss.reclaimed},
              {"lost", ss.lost}};
    for (size_t k = 0; k < sizeof ev / sizeof ev[0]; k++)
        buf_printf(&s->out, "spate_spare_events_total{event=\"%s\"} %llu\n", ev[k].event,
                   (unsigned long long)ev[k].n);
    family(s, "spate_spare_instance_seconds_node_total", "counter",
           "Seconds of spare instance life over every function since spated started.");
    buf_printf(&s->out, "spate_spare_instance_seconds_node_total %.3f\n", ss.seconds);
    family(s, "spate_build_info", "gauge", "The version of spated, as labels; always 1.");
    buf_printf(&s->out, "spate_build_info{version=\"%s\",commit=\"%s\"} 1\n", SPATE_VERSION,
               SPATE_COMMIT);
}

static void scrape_free(uv_handle_t *h)
{
    scrape *s = h->data;
    buf_free(&s->out);
    for (size_t i = 0; i < s->ntopics; i++) free(s->topics[i].name);
    free(s->topics);
    free(s->fns);
    free(s->trs);
    free(s);
}

static void finish(scrape *s)
{
    if (s->aborted) {
        http_respond(s->req, 499, "text/plain", NULL, "", 0); /* frees the gone connection */
    } else if (s->a->stopping) {
        s->req->on_abort = NULL;
        http_respond_error(s->req, 503, "shutting_down", "spated is shutting down");
    } else {
        /* Functions and triggers in the last turn: their rows point into
         * live structures that may go between turns. */
        functions_each(s->a->table, collect_fn, s);
        triggers_each(s->a->tr, collect_trigger, s);
        write_functions(s);
        write_scaling(s);
        write_topics(s);
        api_sources_metrics(s->a, &s->out);
        write_process(s);
        s->req->on_abort = NULL;
        http_respond(s->req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, s->out.data,
                     s->out.len);
    }
    uv_close((uv_handle_t *)&s->turn, scrape_free);
}

/* A loop turn's share of the topics; the next turn goes on after I/O. */
static void on_turn(uv_idle_t *t)
{
    scrape *s = t->data;
    int written = 0;
    if (!s->aborted && !s->a->stopping) {
        s->slice_end_ns = clock_mono_ns() + SPATE_METRICS_SLICE_US * 1000ull;
        s->in_slice = 0;
        if (!s->topics_done) {
            size_t before = s->visited;
            int rc = queue_topics_after(s->a->q, s->cursor[0] ? s->cursor : NULL, collect_topic, s);
            /* Done: no topic left after the cursor, or the cursor's topic is
             * unknown (the queue closed meanwhile). */
            if (rc || s->visited == before) {
                s->topics_done = 1;
                keep_deepest(s); /* their series from the next turn on */
            }
        } else {
            written = write_topic_series(s);
        }
    }
    if (s->aborted || s->a->stopping || written) {
        uv_idle_stop(&s->turn);
        finish(s);
    }
}

static void on_scrape_abort(http_request *req)
{
    scrape *s = req->data;
    s->aborted = 1;
}

void api_metrics(api *a, http_request *req)
{
    scrape *s = calloc(1, sizeof *s);
    if (!s) return http_respond_error(req, 503, "out_of_memory", "out of memory");
    s->a = a;
    s->req = req;
    buf_init(&s->out, 256u * 1024 * 1024); /* far above any node's size */
    req->data = s;
    req->on_abort = on_scrape_abort;
    uv_idle_init(http_request_loop(req), &s->turn);
    s->turn.data = s;
    uv_idle_start(&s->turn, on_turn);
}
