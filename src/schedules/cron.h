/*
 * cron.h - schedule expressions: five-field cron (minute hour day-of-month
 * month day-of-week, as Vixie cron reads them: lists, ranges, steps, month
 * and day names, 7 for Sunday, day-of-month and day-of-week OR-ed when both
 * are restricted), the shorthands @hourly @daily @midnight @weekly @monthly
 * @yearly @annually, and @every DURATION (30s, 5m, 1h, 1h30m; at least 1s).
 *
 * Zones: UTC, fixed offsets (+02:00, -0530, +5) and named zones
 * (Europe/Paris) with their daylight-saving changes, through ICU: the C
 * library evaluates named zones only through the process-wide TZ, which
 * other threads read. Around a change, as cronie does: a local time that
 * does not exist (the hour skipped in spring) fires at the change, and one
 * that happens twice (the hour repeated in autumn) fires once, the first
 * time.
 */
#ifndef SPATE_CRON_H
#define SPATE_CRON_H

#include <stddef.h>
#include <stdint.h>

typedef struct cron_expr {
    uint64_t minutes;         /* bit m: minute m (0-59) */
    uint32_t hours;           /* bit h (0-23) */
    uint32_t mdays;           /* bit d (1-31) */
    uint16_t months;          /* bit m (1-12) */
    uint8_t wdays;            /* bit d (0-6, 0 Sunday) */
    int mday_star, wday_star; /* the field began with '*': Vixie's AND instead of OR */
    int64_t every_ms;         /* @every: > 0, the fields above unused */
} cron_expr;

/* Parses expr; 0, or -1 with err naming the field and the problem. */
int cron_parse(const char *expr, cron_expr *out, char *err, size_t errcap);
/* A zone: a fixed offset, or a named zone's calendar. Used by one thread at
 * a time (ICU's calendar keeps state). */
typedef struct cron_zone {
    int32_t fixed_s; /* seconds east of UTC, when cal is NULL */
    void *cal;       /* a named zone: ICU's UCalendar */
} cron_zone;

/* Opens a zone (empty or "UTC": UTC; +02:00; Europe/Paris); 0, or -1 with
 * err naming the problem (an unknown zone). Closed with cron_zone_close. */
int cron_zone_open(const char *zone, cron_zone *out, char *err, size_t errcap);
void cron_zone_close(cron_zone *z);
/* Seconds east of UTC in z at utc_ms. */
int32_t cron_zone_offset(const cron_zone *z, int64_t utc_ms);
/* The first fire time strictly after after_ms (ms since the epoch), the cron
 * read in zone z; for @every, the first of anchor_ms
 * + k * period after after_ms. -1 when there is none within eight years (an
 * expression that never fires: 30 February). */
int64_t cron_next(const cron_expr *e, const cron_zone *z, int64_t anchor_ms, int64_t after_ms);
/* ms as ISO 8601 in UTC ("2026-12-02T23:10:00Z"); out holds at least 32. */
void cron_iso8601(int64_t ms, char *out, size_t cap);

#endif
