/*
 * history.c - the ring of the last 15 minutes (metrics/history.h).
 *
 * A frame is a run of rows in the byte ring: [u16 id][u8 kind][payload],
 * the payload a normalized struct of its kind (padding zeroed, so rows
 * compare with memcmp). Frames sit contiguously in the ring; one that does
 * not fit before its end starts again at 0 and the tail is left unused.
 */
#include "metrics/history.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/strmap.h"

typedef union history_value {
    history_fn fn;
    history_topic topic;
    history_source src;
} history_value;

static const size_t payload_size[HISTORY_KINDS] = {sizeof(history_fn), sizeof(history_topic),
                                                   sizeof(history_source)};

#define ROW_HEAD 3

typedef struct hname {
    char *key; /* the kind's letter, then the name: the map's key */
    uint8_t kind, present;
    int64_t last_ref_ms; /* the time of the newest frame with a row of it */
    history_value last;  /* what a reader holds after the newest frame */
    history_value cur;   /* this frame's */
} hname;

typedef struct frame {
    int64_t t_ms;
    uint32_t off, len;
    uint8_t key;
} frame;

struct history {
    strmap byname;
    hname **ids; /* by id; NULL: free */
    size_t nids, capids;
    uint8_t *data;
    size_t cap, head;
    frame frames[HISTORY_FRAMES];
    size_t first, count;
    size_t keyframes;
    int64_t now_ms, last_key_ms;
    int building, key;
    buf scratch;
    uint64_t dropped;
};

static const char kind_letter[HISTORY_KINDS] = {'f', 't', 's'};

history *history_create(size_t bytes_max)
{
    history *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->data = malloc(bytes_max);
    if (!h->data) {
        free(h);
        return NULL;
    }
    h->cap = bytes_max;
    strmap_init(&h->byname);
    buf_init(&h->scratch, bytes_max);
    return h;
}

void history_free(history *h)
{
    if (!h) return;
    for (size_t i = 0; i < h->nids; i++)
        if (h->ids[i]) {
            free(h->ids[i]->key);
            free(h->ids[i]);
        }
    free(h->ids);
    strmap_free(&h->byname);
    buf_free(&h->scratch);
    free(h->data);
    free(h);
}

static const frame *frame_at(const history *h, size_t i)
{
    return &h->frames[(h->first + i) % HISTORY_FRAMES];
}

/* Drops the oldest keyframe and the deltas after it (a delta without its
 * keyframe could not be rebuilt). */
static void evict_minute(history *h)
{
    if (!h->count) return;
    h->first = (h->first + 1) % HISTORY_FRAMES;
    h->count--;
    h->keyframes--;
    while (h->count && !frame_at(h, 0)->key) {
        h->first = (h->first + 1) % HISTORY_FRAMES;
        h->count--;
    }
}

/* Where len bytes go, evicting what they need; -1 if they never fit. */
static long place(history *h, size_t len)
{
    if (len > h->cap) return -1;
    for (;;) {
        if (!h->count) {
            h->head = 0;
            return 0;
        }
        size_t tail = frame_at(h, 0)->off;
        if (h->head > tail || (h->head == tail && h->count == 0)) {
            if (h->cap - h->head >= len) return (long)h->head;
            if (tail >= len) return 0; /* wraps: the end stays unused */
        } else if (tail - h->head >= len) {
            return (long)h->head;
        }
        evict_minute(h);
    }
}

static hname *name_get(history *h, enum history_kind kind, const char *name)
{
    char key[160];
    int n = snprintf(key, sizeof key, "%c%s", kind_letter[kind], name);
    if (n < 0 || (size_t)n >= sizeof key) return NULL;
    hname *e = strmap_get(&h->byname, key, (size_t)n);
    if (e) return e;
    size_t id = 0;
    while (id < h->nids && h->ids[id]) id++;
    if (id >= HISTORY_NAMES_MAX) return NULL;
    if (id == h->capids) {
        size_t c = h->capids ? h->capids * 2 : 64;
        hname **p = realloc(h->ids, c * sizeof *p);
        if (!p) return NULL;
        h->ids = p;
        h->capids = c;
    }
    e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return NULL;
    }
    e->kind = (uint8_t)kind;
    if (strmap_put(&h->byname, e->key, e) != 0) {
        free(e->key);
        free(e);
        return NULL;
    }
    h->ids[id] = e;
    if (id == h->nids) h->nids++;
    return e;
}

void history_begin(history *h, int64_t now_ms)
{
    h->now_ms = now_ms;
    h->building = 1;
    h->key = !h->count || now_ms - h->last_key_ms >= HISTORY_KEYFRAME_S * 1000;
    buf_reset(&h->scratch);
    for (size_t i = 0; i < h->nids; i++)
        if (h->ids[i]) {
            h->ids[i]->present = 0;
            memset(&h->ids[i]->cur, 0, sizeof h->ids[i]->cur);
        }
}

/* Three significant digits: what a chart shows, and what counts as a change. */
static float q3(double x)
{
    if (x == 0 || !isfinite(x)) return (float)x;
    double e = floor(log10(fabs(x)));
    double scale = pow(10, 2 - e);
    return (float)(round(x * scale) / scale);
}

static void put(history *h, enum history_kind kind, const char *name, const history_value *v)
{
    if (!h->building) return;
    hname *e = name_get(h, kind, name);
    if (!e) {
        h->dropped++;
        return;
    }
    e->present = 1;
    e->cur = *v;
}

void history_put_fn(history *h, const char *name, const history_fn *v)
{
    history_value x;
    memset(&x, 0, sizeof x);
    x.fn.busy = v->busy;
    x.fn.idle = v->idle;
    x.fn.starting = v->starting;
    x.fn.cold_starts = v->cold_starts;
    x.fn.backlog = v->backlog;
    x.fn.arrivals = q3(v->arrivals);
    x.fn.completions = q3(v->completions);
    x.fn.p50_ms = q3(v->p50_ms);
    x.fn.p99_ms = q3(v->p99_ms);
    x.fn.eta_s = q3(v->eta_s);
    x.fn.deadline_s = q3(v->deadline_s);
    x.fn.triggered = v->triggered ? 1 : 0;
    x.fn.at_risk = v->at_risk ? 1 : 0;
    put(h, HISTORY_FUNCTION, name, &x);
}

void history_put_topic(history *h, const char *name, const history_topic *v)
{
    history_value x;
    memset(&x, 0, sizeof x);
    x.topic.depth = v->depth;
    x.topic.oldest_s = q3(v->oldest_s);
    put(h, HISTORY_TOPIC, name, &x);
}

void history_put_source(history *h, const char *name, const history_source *v)
{
    history_value x;
    memset(&x, 0, sizeof x);
    x.src.lag = v->lag < 0 ? -1.0f : q3(v->lag);
    x.src.connected = v->connected ? 1 : 0;
    put(h, HISTORY_SOURCE, name, &x);
}

static const history_value zero_value;

void history_end(history *h)
{
    if (!h->building) return;
    h->building = 0;
    if (h->count && h->now_ms <= frame_at(h, h->count - 1)->t_ms) return;
    int64_t oldest = h->count ? frame_at(h, 0)->t_ms : h->now_ms;
    for (size_t id = 0; id < h->nids; id++) {
        hname *e = h->ids[id];
        if (!e) continue;
        size_t size = payload_size[e->kind];
        int write =
            h->key ? memcmp(&e->cur, &zero_value, size) != 0 : memcmp(&e->cur, &e->last, size) != 0;
        if (write) {
            uint8_t head[ROW_HEAD] = {(uint8_t)(id & 0xff), (uint8_t)(id >> 8), e->kind};
            if (buf_append(&h->scratch, head, sizeof head) != 0 ||
                buf_append(&h->scratch, &e->cur, size) != 0) {
                h->dropped++;
                continue;
            }
            e->last_ref_ms = h->now_ms;
        }
        e->last = e->cur;
        /* Zero, and no frame left refers to it: its id may serve another. */
        if (!e->present && !write && e->last_ref_ms < oldest &&
            memcmp(&e->cur, &zero_value, size) == 0) {
            strmap_remove(&h->byname, e->key);
            free(e->key);
            free(e);
            h->ids[id] = NULL;
        }
    }
    while (h->nids && !h->ids[h->nids - 1]) h->nids--;

    /* Fifteen minutes kept: a minute goes once the keyframe after it is old enough. */
    if (h->key) {
        while (h->count >= HISTORY_FRAMES - HISTORY_KEYFRAME_S * 2) evict_minute(h);
        for (;;) {
            size_t next = 1;
            while (next < h->count && !frame_at(h, next)->key) next++;
            if (next >= h->count || frame_at(h, next)->t_ms > h->now_ms - HISTORY_KEEP_S * 1000)
                break;
            evict_minute(h);
        }
    }
    if (h->count == HISTORY_FRAMES) evict_minute(h);
    long at = place(h, h->scratch.len);
    if (at < 0) {
        h->dropped++;
        return;
    }
    memcpy(h->data + at, h->scratch.data, h->scratch.len);
    h->head = (size_t)at + h->scratch.len;
    frame *f = &h->frames[(h->first + h->count) % HISTORY_FRAMES];
    *f = (frame){.t_ms = h->now_ms,
                 .off = (uint32_t)at,
                 .len = (uint32_t)h->scratch.len,
                 .key = (uint8_t)h->key};
    h->count++;
    if (h->key) {
        h->keyframes++;
        h->last_key_ms = h->now_ms;
    }
}

/* --- The answer ------------------------------------------------------------------------------ */

static void num(buf *out, double v)
{
    if (isinf(v))
        buf_append_str(out, "\"inf\"");
    else if (isnan(v))
        buf_append_str(out, "null");
    else
        buf_printf(out, "%.4g", v);
}

static void row_json(const history *h, buf *out, size_t id, int kind, const history_value *v,
                     int *first)
{
    const char *name = h->ids[id] ? h->ids[id]->key + 1 : "?";
    buf_printf(out, "%s[\"%s\"", *first ? "" : ",", name);
    *first = 0;
    if (kind == HISTORY_FUNCTION) {
        const history_fn *f = &v->fn;
        buf_printf(out, ",%u,%u,%u,%u,", f->busy, f->idle, f->starting, f->backlog);
        num(out, f->arrivals);
        buf_append_str(out, ",");
        num(out, f->completions);
        buf_append_str(out, ",");
        num(out, f->p50_ms > 0 ? f->p50_ms : NAN);
        buf_append_str(out, ",");
        num(out, f->p99_ms > 0 ? f->p99_ms : NAN);
        buf_append_str(out, ",");
        num(out, f->triggered && f->eta_s >= 0 ? f->eta_s : NAN);
        buf_append_str(out, ",");
        num(out, f->deadline_s > 0 ? f->deadline_s : NAN);
        buf_printf(out, ",%u,%u]", f->cold_starts, f->at_risk);
    } else if (kind == HISTORY_TOPIC) {
        buf_printf(out, ",%u,", v->topic.depth);
        num(out, v->topic.oldest_s);
        buf_append_str(out, "]");
    } else {
        num(out, v->src.lag >= 0 ? v->src.lag : NAN);
        buf_printf(out, ",%u]", v->src.connected);
    }
}

/* Rows of one frame, kind by kind. full: the state (every row not zero)
 * instead of the frame's own rows. */
static void frame_json(const history *h, buf *out, const frame *f, int full,
                       const history_value *state, const uint8_t *kinds)
{
    static const char *member[HISTORY_KINDS] = {"functions", "topics", "sources"};
    buf_printf(out, "{\"t\":%lld,\"full\":%s", (long long)f->t_ms, full ? "true" : "false");
    for (int k = 0; k < HISTORY_KINDS; k++) {
        buf_printf(out, ",\"%s\":[", member[k]);
        int first = 1;
        if (full) {
            for (size_t id = 0; id < h->nids; id++)
                if (kinds[id] == k + 1 && memcmp(&state[id], &zero_value, payload_size[k]) != 0)
                    row_json(h, out, id, k, &state[id], &first);
        } else {
            const uint8_t *p = h->data + f->off, *end = p + f->len;
            while (p + ROW_HEAD <= end) {
                size_t id = (size_t)p[0] | (size_t)p[1] << 8;
                int kind = p[2];
                history_value v;
                memset(&v, 0, sizeof v);
                memcpy(&v, p + ROW_HEAD, payload_size[kind]);
                if (kind == k) row_json(h, out, id, kind, &v, &first);
                p += ROW_HEAD + payload_size[kind];
            }
        }
        buf_append_str(out, "]");
    }
    buf_append_str(out, "}");
}

/* Applies frame f to state (a keyframe starts from zero). */
static void apply(const history *h, const frame *f, history_value *state, uint8_t *kinds)
{
    if (f->key) {
        memset(state, 0, h->nids * sizeof *state);
        memset(kinds, 0, h->nids);
    }
    const uint8_t *p = h->data + f->off, *end = p + f->len;
    while (p + ROW_HEAD <= end) {
        size_t id = (size_t)p[0] | (size_t)p[1] << 8;
        int kind = p[2];
        if (id < h->nids) {
            memset(&state[id], 0, sizeof state[id]);
            memcpy(&state[id], p + ROW_HEAD, payload_size[kind]);
            kinds[id] = (uint8_t)(kind + 1);
        }
        p += ROW_HEAD + payload_size[kind];
    }
}

int history_json(const history *h, buf *out, int64_t since_ms, int delta, size_t max_bytes)
{
    size_t start = 0;
    while (start < h->count && frame_at(h, start)->t_ms <= since_ms) start++;
    int have = delta && start > 0 && frame_at(h, start - 1)->t_ms == since_ms;
    history_value *state = NULL;
    uint8_t *kinds = NULL;
    if (!have && start < h->count) {
        state = calloc(h->nids ? h->nids : 1, sizeof *state);
        kinds = calloc(h->nids ? h->nids : 1, 1);
        if (!state || !kinds) {
            free(state);
            free(kinds);
            return ERR_NOMEM;
        }
        size_t k = start;
        while (k > 0 && !frame_at(h, k)->key) k--;
        for (size_t i = k; i <= start; i++) apply(h, frame_at(h, i), state, kinds);
    }
    buf_printf(out,
               "\"interval_ms\":1000,\"keep_s\":%d,\"oldest_ms\":%lld,\"newest_ms\":%lld,"
               "\"samples\":[",
               HISTORY_KEEP_S, (long long)(h->count ? frame_at(h, 0)->t_ms : 0),
               (long long)(h->count ? frame_at(h, h->count - 1)->t_ms : 0));
    int truncated = 0;
    int64_t next_since = 0;
    for (size_t i = start; i < h->count; i++) {
        const frame *f = frame_at(h, i);
        if (i > start && out->len + 64 > max_bytes) {
            truncated = 1;
            next_since = frame_at(h, i - 1)->t_ms;
            break;
        }
        if (i > start) buf_append_str(out, ",");
        frame_json(h, out, f, i == start && !have, state, kinds);
    }
    buf_append_str(out, "],\"truncated\":");
    int rc = truncated ? buf_printf(out, "true,\"next_since\":%lld", (long long)next_since)
                       : buf_append_str(out, "false");
    free(state);
    free(kinds);
    return rc;
}

void history_get_stats(const history *h, history_stats *out)
{
    memset(out, 0, sizeof *out);
    out->frames = h->count;
    out->keyframes = h->keyframes;
    out->bytes_max = h->cap;
    for (size_t i = 0; i < h->count; i++) out->bytes_used += frame_at(h, i)->len;
    if (h->count) {
        out->oldest_ms = frame_at(h, 0)->t_ms;
        out->newest_ms = frame_at(h, h->count - 1)->t_ms;
    }
    out->memory = sizeof *h + h->cap + h->capids * sizeof *h->ids + h->scratch.cap +
                  h->byname.nbuckets * sizeof(void *);
    for (size_t i = 0; i < h->nids; i++)
        if (h->ids[i]) {
            out->names++;
            out->memory += sizeof *h->ids[i] + strlen(h->ids[i]->key) + 1 + sizeof(strmap_entry);
        }
    out->dropped_rows = h->dropped;
}
