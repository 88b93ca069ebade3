#include "runtime/fnlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/limits.h"
#include "common/log.h"

struct fnlog {
    unsigned refs;
    char function[72];
    fnlog_line **ring; /* SPATE_LOG_LINES_KEPT slots, allocated on the first line */
    uint32_t head;     /* oldest */
    uint32_t count;
    size_t bytes;
    uint64_t next_seq;
    uint64_t evicted;
    double tokens; /* bytes that may be written now */
    uint64_t refilled_ms;
};

fnlog *fnlog_create(const char *function)
{
    fnlog *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->refs = 1;
    l->next_seq = 1;
    l->tokens = SPATE_LOG_BURST_BYTES;
    snprintf(l->function, sizeof l->function, "%s", function);
    return l;
}

void fnlog_ref(fnlog *l)
{
    l->refs++;
}

void fnlog_unref(fnlog *l)
{
    if (!l || --l->refs > 0) return;
    for (uint32_t i = 0; i < l->count; i++) free(l->ring[(l->head + i) % SPATE_LOG_LINES_KEPT]);
    free(l->ring);
    free(l);
}

uint64_t fnlog_spend(fnlog *l, size_t len, uint64_t now_ms)
{
    if (now_ms > l->refilled_ms) {
        l->tokens += (double)(now_ms - l->refilled_ms) * SPATE_LOG_RATE_BYTES / 1000.0;
        if (l->tokens > SPATE_LOG_BURST_BYTES) l->tokens = SPATE_LOG_BURST_BYTES;
        l->refilled_ms = now_ms;
    }
    l->tokens -= (double)len; /* below zero: the debt is waited off */
    if (l->tokens > 0) return 0;
    return (uint64_t)(-l->tokens * 1000.0 / SPATE_LOG_RATE_BYTES) + 1;
}

static void evict_oldest(fnlog *l)
{
    fnlog_line *old = l->ring[l->head];
    l->bytes -= old->len;
    free(old);
    l->head = (l->head + 1) % SPATE_LOG_LINES_KEPT;
    l->count--;
    l->evicted++;
}

void fnlog_append(fnlog *l, uint64_t instance, const char *text, size_t len)
{
    if (len > SPATE_LOG_LINE_MAX) len = SPATE_LOG_LINE_MAX;
    /* At debug level spated's log shows it too, control characters made
     * harmless. */
    if (log_level_min <= LOGL_DEBUG) {
        char clean[SPATE_LOG_LINE_MAX];
        for (size_t i = 0; i < len; i++)
            clean[i] = (unsigned char)text[i] < 0x20 && text[i] != '\t' ? '?' : text[i];
        if (instance)
            log_debug("output fn=%s instance=%llu: %.*s", l->function, (unsigned long long)instance,
                      (int)len, clean);
        else
            log_debug("output fn=%s zygote: %.*s", l->function, (int)len, clean);
    }

    if (!l->ring && !(l->ring = calloc(SPATE_LOG_LINES_KEPT, sizeof *l->ring))) return;
    fnlog_line *line = malloc(sizeof *line + len);
    if (!line) return;
    line->seq = l->next_seq++;
    line->time_ms = clock_now_ms();
    line->instance = instance;
    line->len = (uint32_t)len;
    memcpy(line->text, text, len);
    while (l->count > 0 &&
           (l->count == SPATE_LOG_LINES_KEPT || l->bytes + len > SPATE_LOG_BYTES_KEPT))
        evict_oldest(l);
    l->ring[(l->head + l->count) % SPATE_LOG_LINES_KEPT] = line;
    l->count++;
    l->bytes += len;
}

void fnlog_each(const fnlog *l, uint64_t after, uint32_t limit, fnlog_line_cb cb, void *data)
{
    /* Lines are numbered without gaps: the first wanted is found directly. */
    if (l->count == 0) return;
    uint64_t first = l->ring[l->head]->seq;
    uint64_t skip = after >= first ? after - first + 1 : 0;
    if (after == 0 && l->count > limit) skip = l->count - limit; /* the newest */
    for (uint64_t i = skip; i < l->count && limit > 0; i++, limit--)
        cb(l->ring[(l->head + i) % SPATE_LOG_LINES_KEPT], data);
}

uint64_t fnlog_evicted(const fnlog *l)
{
    return l->evicted;
}
