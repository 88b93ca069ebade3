/*
 * history.c - the ring of the last 15 minutes (metrics/history.h).
 *
 * A frame is a run of rows in the byte ring (their encoding: ROW_HEAD
 * below). Frames sit contiguously in the ring; one that does not fit before
 * its end starts again at 0 and the tail is left unused.
 */
#include "metrics/history.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/strmap.h"

/* A series' second as field codes: integers as they are, floats as q16
 * codes (below). Rows compare field by field. */
#define FIELDS_MAX 12
typedef struct hvals {
    uint32_t f[FIELDS_MAX];
} hvals;

/* Function fields, in this order: busy, idle, starting, cold starts,
 * backlog, then the floats arrivals, completions, p50, p99, eta, deadline,
 * then flags (1 triggered, 2 at risk). Topics: depth, oldest (float).
 * Sources: lag (float), connected. */
enum {
    F_BUSY,
    F_IDLE,
    F_STARTING,
    F_COLD,
    F_BACKLOG,
    F_ARRIVALS,
    F_COMPLETIONS,
    F_P50,
    F_P99,
    F_ETA,
    F_DEADLINE,
    F_FLAGS
};
static const uint8_t nfields[HISTORY_KINDS] = {12, 2, 2};
static const uint16_t float_fields[HISTORY_KINDS] = {0x7e0, 0x2, 0x1};

/* Row: [u16 id][u8 kind][u16 mask of the fields that follow], then each
 * field of the mask: a float's q16 code in 2 bytes, an integer as a LEB128
 * varint. In a keyframe the mask names the fields that are not zero; in a
 * delta, those that changed. */
#define ROW_HEAD 5

/* q16: a float to 3 significant digits in 16 bits, what a chart shows and
 * what counts as a change: 0 is 0; (e + 32) << 10 | m is m x 10^e with m in
 * 100..999; Q16_INF infinity; Q16_NONE a negative (-1: unknown). */
#define Q16_INF 0xffffu
#define Q16_NONE 0xfffeu

/* 10^(i - 32): q16's exponents without pow(). */
static double pow10_table[64];

static double pow10i(int e)
{
    if (pow10_table[32] == 0)
        for (int i = 0; i < 64; i++) pow10_table[i] = pow(10, i - 32);
    return pow10_table[e + 32];
}

static uint32_t q16(double x)
{
    if (isnan(x) || x < 0) return Q16_NONE;
    if (isinf(x)) return Q16_INF;
    if (x < 1e-30) return 0;
    if (x >= 1e32) return Q16_INF;
    int e = (int)floor(log10(x)) - 2;
    double m = round(x / pow10i(e));
    if (m >= 1000) {
        m = 100;
        e++;
    }
    if (e > 30) return Q16_INF;
    return (uint32_t)((e + 32) << 10) | (uint32_t)m;
}

static double q16_value(uint32_t c)
{
    if (c == 0) return 0;
    if (c == Q16_INF) return INFINITY;
    if (c == Q16_NONE) return -1;
    return (double)(c & 0x3ff) * pow10i((int)(c >> 10) - 32);
}

typedef struct hname {
    char *key; /* the kind's letter, then the name: the map's key */
    uint8_t kind, present;
    int64_t last_ref_ms; /* the time of the newest frame with a row of it */
    hvals last;          /* what a reader holds after the newest frame */
    hvals cur;           /* this frame's */
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
    size_t free_from; /* no free id below this: a new name's search starts here */
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

/* Where len bytes go, evicting what they need; -1 if they never fit. The
 * frames lie in [tail, head), or wrapped: [tail, end of the last) and
 * [0, head). */
static long place(history *h, size_t len)
{
    if (len > h->cap) return -1;
    for (;;) {
        if (!h->count) {
            h->head = 0;
            return 0;
        }
        size_t tail = frame_at(h, 0)->off;
        if (h->head > tail) {
            if (h->cap - h->head >= len) return (long)h->head;
            if (tail >= len) return 0; /* wraps: the end stays unused */
        } else if (h->head < tail && tail - h->head >= len) {
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
    /* From the lowest id that may be free: from 0 each time, the first
     * sample of 100,000 functions took minutes on the loop. */
    size_t id = h->free_from;
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
    h->free_from = id + 1;
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

static void put(history *h, enum history_kind kind, const char *name, const hvals *v)
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
    hvals x = {{v->busy, v->idle, v->starting, v->cold_starts, v->backlog, q16(v->arrivals),
                q16(v->completions), q16(v->p50_ms), q16(v->p99_ms), q16(v->eta_s),
                q16(v->deadline_s),
                (uint32_t)(v->triggered ? 1 : 0) | (uint32_t)(v->at_risk ? 2 : 0)}};
    put(h, HISTORY_FUNCTION, name, &x);
}

void history_put_topic(history *h, const char *name, const history_topic *v)
{
    hvals x = {{v->depth, q16(v->oldest_s)}};
    put(h, HISTORY_TOPIC, name, &x);
}

void history_put_source(history *h, const char *name, const history_source *v)
{
    hvals x = {{q16(v->lag), v->connected ? 1u : 0u}};
    put(h, HISTORY_SOURCE, name, &x);
}

static int is_zero(const hvals *v, int kind)
{
    for (int i = 0; i < nfields[kind]; i++)
        if (v->f[i]) return 0;
    return 1;
}

/* Appends a row of the fields of mask; 0 or the buffer's error. */
static int write_row(buf *out, size_t id, int kind, unsigned mask, const hvals *v)
{
    uint8_t row[ROW_HEAD + FIELDS_MAX * 5], *p = row;
    *p++ = (uint8_t)(id & 0xff);
    *p++ = (uint8_t)(id >> 8);
    *p++ = (uint8_t)kind;
    *p++ = (uint8_t)(mask & 0xff);
    *p++ = (uint8_t)(mask >> 8);
    for (int i = 0; i < nfields[kind]; i++) {
        if (!(mask & (1u << i))) continue;
        uint32_t x = v->f[i];
        if (float_fields[kind] & (1u << i)) {
            *p++ = (uint8_t)(x & 0xff);
            *p++ = (uint8_t)(x >> 8);
            continue;
        }
        do {
            *p++ = (uint8_t)((x & 0x7f) | (x > 0x7f ? 0x80 : 0));
            x >>= 7;
        } while (x);
    }
    return buf_append(out, row, (size_t)(p - row));
}

/* Reads the row at p into v (the fields of its mask; the others are left
 * as they are) and returns the byte after it, or NULL past end. */
static const uint8_t *read_row(const uint8_t *p, const uint8_t *end, size_t *id, int *kind,
                               hvals *v)
{
    if (end - p < ROW_HEAD) return NULL;
    *id = (size_t)p[0] | (size_t)p[1] << 8;
    *kind = p[2];
    unsigned mask = (unsigned)p[3] | (unsigned)p[4] << 8;
    p += ROW_HEAD;
    if (*kind >= HISTORY_KINDS) return NULL;
    for (int i = 0; i < nfields[*kind]; i++) {
        if (!(mask & (1u << i))) continue;
        if (float_fields[*kind] & (1u << i)) {
            if (end - p < 2) return NULL;
            v->f[i] = (uint32_t)p[0] | (uint32_t)p[1] << 8;
            p += 2;
            continue;
        }
        uint32_t x = 0;
        for (int shift = 0;; shift += 7) {
            if (p >= end || shift > 28) return NULL;
            x |= (uint32_t)(*p & 0x7f) << shift;
            if (!(*p++ & 0x80)) break;
        }
        v->f[i] = x;
    }
    return p;
}

void history_end(history *h)
{
    if (!h->building) return;
    h->building = 0;
    if (h->count && h->now_ms <= frame_at(h, h->count - 1)->t_ms) return;
    int64_t oldest = h->count ? frame_at(h, 0)->t_ms : h->now_ms;
    for (size_t id = 0; id < h->nids; id++) {
        hname *e = h->ids[id];
        if (!e) continue;
        unsigned mask = 0;
        for (int i = 0; i < nfields[e->kind]; i++)
            if (h->key ? e->cur.f[i] != 0 : e->cur.f[i] != e->last.f[i]) mask |= 1u << i;
        if (mask) {
            if (write_row(&h->scratch, id, e->kind, mask, &e->cur) != 0) {
                h->dropped++;
                continue;
            }
            e->last_ref_ms = h->now_ms;
        }
        e->last = e->cur;
        /* Zero, and no frame left refers to it: its id may serve another. */
        if (!e->present && !mask && e->last_ref_ms < oldest && is_zero(&e->cur, e->kind)) {
            strmap_remove(&h->byname, e->key);
            free(e->key);
            free(e);
            h->ids[id] = NULL;
            if (id < h->free_from) h->free_from = id;
        }
    }
    while (h->nids && !h->ids[h->nids - 1]) h->nids--;
    if (h->free_from > h->nids) h->free_from = h->nids;

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
    if (h->scratch.len) memcpy(h->data + at, h->scratch.data, h->scratch.len);
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
        buf_append_str(out, ",\"inf\"");
    else if (v < 0)
        buf_append_str(out, ",null");
    else
        buf_printf(out, ",%.4g", v);
}

/* A row of the answer: the name, then the fields in docs/api.md's order. */
static void row_json(const history *h, buf *out, size_t id, int kind, const hvals *v, int *first)
{
    const char *name = id < h->nids && h->ids[id] ? h->ids[id]->key + 1 : "?";
    buf_printf(out, "%s[\"%s\"", *first ? "" : ",", name);
    *first = 0;
    const uint32_t *f = v->f;
    if (kind == HISTORY_FUNCTION) {
        int triggered = f[F_FLAGS] & 1;
        buf_printf(out, ",%u,%u,%u,%u", f[F_BUSY], f[F_IDLE], f[F_STARTING], f[F_BACKLOG]);
        num(out, q16_value(f[F_ARRIVALS]));
        num(out, q16_value(f[F_COMPLETIONS]));
        num(out, f[F_P50] ? q16_value(f[F_P50]) : -1);
        num(out, f[F_P99] ? q16_value(f[F_P99]) : -1);
        num(out, triggered ? q16_value(f[F_ETA]) : -1);
        num(out, f[F_DEADLINE] ? q16_value(f[F_DEADLINE]) : -1);
        buf_printf(out, ",%u,%u]", f[F_COLD], (f[F_FLAGS] >> 1) & 1);
    } else if (kind == HISTORY_TOPIC) {
        buf_printf(out, ",%u", f[0]);
        num(out, q16_value(f[1]));
        buf_append_str(out, "]");
    } else {
        num(out, q16_value(f[0]));
        buf_printf(out, ",%u]", f[1]);
    }
}

/* Applies frame f to state (a keyframe starts from zero); the ids of its
 * rows go to ids (each once) when it is not NULL. */
static void apply(const history *h, const frame *f, hvals *state, uint8_t *kinds, size_t *ids,
                  size_t *nids)
{
    if (f->key) {
        memset(state, 0, h->nids * sizeof *state);
        memset(kinds, 0, h->nids);
    }
    if (nids) *nids = 0;
    const uint8_t *p = h->data + f->off, *end = p + f->len;
    while (p < end) {
        size_t id;
        int kind;
        hvals v;
        memset(&v, 0, sizeof v);
        const uint8_t *next = read_row(p, end, &id, &kind, &v);
        if (!next || id >= h->nids) break;
        /* Read again over the state: a delta keeps the fields it does not name. */
        if (f->key) memset(&state[id], 0, sizeof state[id]);
        read_row(p, end, &id, &kind, &state[id]);
        kinds[id] = (uint8_t)(kind + 1);
        if (ids) ids[(*nids)++] = id;
        p = next;
    }
}

static void frame_json(const history *h, buf *out, const frame *f, int full, const hvals *state,
                       const uint8_t *kinds, const size_t *ids, size_t nids)
{
    static const char *member[HISTORY_KINDS] = {"functions", "topics", "sources"};
    buf_printf(out, "{\"t\":%lld,\"full\":%s", (long long)f->t_ms, full ? "true" : "false");
    for (int k = 0; k < HISTORY_KINDS; k++) {
        buf_printf(out, ",\"%s\":[", member[k]);
        int first = 1;
        if (full) {
            for (size_t id = 0; id < h->nids; id++)
                if (kinds[id] == k + 1 && !is_zero(&state[id], k))
                    row_json(h, out, id, k, &state[id], &first);
        } else {
            for (size_t i = 0; i < nids; i++)
                if (kinds[ids[i]] == k + 1) row_json(h, out, ids[i], k, &state[ids[i]], &first);
        }
        buf_append_str(out, "]");
    }
    buf_append_str(out, "}");
}

int history_json(const history *h, buf *out, int64_t since_ms, int delta, size_t max_bytes)
{
    size_t start = 0;
    while (start < h->count && frame_at(h, start)->t_ms <= since_ms) start++;
    int have = delta && start > 0 && frame_at(h, start - 1)->t_ms == since_ms;
    size_t n = h->nids ? h->nids : 1;
    hvals *state = calloc(n, sizeof *state);
    uint8_t *kinds = calloc(n, 1);
    size_t *ids = calloc(n, sizeof *ids);
    if (!state || !kinds || !ids) {
        free(state);
        free(kinds);
        free(ids);
        return ERR_NOMEM;
    }
    /* The state before the first frame answered, from the keyframe before it. */
    if (start < h->count) {
        size_t k = start;
        while (k > 0 && !frame_at(h, k)->key) k--;
        for (size_t i = k; i < start; i++) apply(h, frame_at(h, i), state, kinds, NULL, NULL);
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
        size_t nrows;
        apply(h, f, state, kinds, ids, &nrows);
        if (i > start) buf_append_str(out, ",");
        frame_json(h, out, f, (i == start && !have) || f->key, state, kinds, ids, nrows);
    }
    buf_append_str(out, "],\"truncated\":");
    int rc = truncated ? buf_printf(out, "true,\"next_since\":%lld", (long long)next_since)
                       : buf_append_str(out, "false");
    free(state);
    free(kinds);
    free(ids);
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
