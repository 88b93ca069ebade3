/*
 * recent.c - the pool's newest finished invocations, a small ring kept for
 * the console's function page (GET /v1/functions/NAME "recent"): what ran,
 * how it ended, how long it took, and the start of its error.
 */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/utf8.h"
#include "sched/pool/internal.h"

/* Copies an answer's text as JSON can carry it: control bytes become '?',
 * a multi-byte character cut at the end is dropped, and text that is still
 * not UTF-8 keeps only its ASCII. */
static void copy_text(char *out, size_t cap, const char *body, size_t len)
{
    if (len > cap - 1) {
        len = cap - 1;
        /* Back off over the continuation bytes of a character the cut split. */
        size_t back = 0;
        while (back < 3 && len > back && ((unsigned char)body[len - 1 - back] & 0xC0) == 0x80)
            back++;
        if (len > back && ((unsigned char)body[len - 1 - back] & 0xC0) == 0xC0) len -= back + 1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)body[i];
        out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[len] = '\0';
    if (!utf8_valid(out, len))
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)out[i] >= 0x80) out[i] = '?';
}

void pool__remember(pool *p, const invocation *inv, enum pool_outcome outcome, uint32_t version,
                    const char *body, size_t len)
{
    if (!p->recent) {
        p->recent = malloc(SPATE_RECENT_INVOCATIONS * sizeof *p->recent);
        if (!p->recent) return; /* the list is a convenience: the invocation goes on */
    }
    pool_recent_entry *e = &p->recent[p->recent_next];
    p->recent_next = (p->recent_next + 1) % SPATE_RECENT_INVOCATIONS;
    if (p->recent_count < SPATE_RECENT_INVOCATIONS) p->recent_count++;
    e->time_ms = clock_now_ms();
    uint64_t took = inv->queued_ns ? (clock_mono_ns() - inv->queued_ns) / 1000 : 0;
    e->duration_us = took > UINT32_MAX ? UINT32_MAX : (uint32_t)took;
    e->version = version;
    e->outcome = outcome;
    const char *id = inv->request_id ? inv->request_id : "";
    copy_text(e->request_id, sizeof e->request_id, id, strlen(id));
    if (outcome == POOL_OK || !body)
        e->error[0] = '\0';
    else
        copy_text(e->error, sizeof e->error, body, len);
}

size_t pool_recent_get(const pool *p, pool_recent_entry *out, size_t max)
{
    size_t n = p->recent_count < max ? p->recent_count : max;
    for (size_t i = 0; i < n; i++) {
        uint32_t at = (p->recent_next + SPATE_RECENT_INVOCATIONS - 1 - (uint32_t)i) %
                      SPATE_RECENT_INVOCATIONS;
        out[i] = p->recent[at];
    }
    return n;
}
