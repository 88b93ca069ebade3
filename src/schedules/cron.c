/*
 * cron.c - parsing schedule expressions and finding their next fire time
 * (cron.h). The next time is searched field by field from the largest: a
 * month that does not match skips to the next month, a day to the next day,
 * so a search costs at most a few thousand steps over the eight years a
 * rare expression (29 February on a Monday) may need.
 */
#include "schedules/cron.h"

#include <ctype.h>
#include <unicode/ucal.h>
#include <unicode/ustring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct field {
    const char *name;
    int min, max;
    const char *const *names; /* names for min.., or NULL */
} field;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const field fields[5] = {
    {"minute", 0, 59, NULL},          {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},    {"month", 1, 12, month_names},
    {"day-of-week", 0, 7, day_names},
};

/* A number or (where the field has them) a name, at *p; advances *p. */
static int value(const field *f, const char **p, int *out, char *err, size_t errcap)
{
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        long v = 0;
        while (isdigit((unsigned char)*s) && v < 1000) v = v * 10 + (*s++ - '0');
        if (v < f->min || v > f->max) {
            snprintf(err, errcap, "%s: %ld is out of range %d-%d", f->name, v, f->min, f->max);
            return -1;
        }
        *out = (int)v;
        *p = s;
        return 0;
    }
    if (f->names && isalpha((unsigned char)s[0]) && isalpha((unsigned char)s[1]) &&
        isalpha((unsigned char)s[2]) && !isalpha((unsigned char)s[3])) {
        for (int i = 0; f->names[i]; i++) {
            if (strncasecmp(s, f->names[i], 3) == 0) {
                *out = f->min + i;
                *p = s + 3;
                return 0;
            }
        }
    }
    int len = 0;
    while (s[len] && s[len] != ',' && s[len] != '-' && s[len] != '/' && len < 20) len++;
    snprintf(err, errcap, "%s: '%.*s' is not a %s", f->name, len, s,
             f->names ? "number or a name" : "number");
    return -1;
}

/* One field (a comma list of *, N, N-M, each with an optional /STEP) into bits. */
static int parse_field(const field *f, const char *s, uint64_t *bits, int *star, char *err,
                       size_t errcap)
{
    *bits = 0;
    *star = s[0] == '*';
    const char *p = s;
    for (;;) {
        int lo, hi, step = 1, single = 0;
        if (*p == '*') {
            lo = f->min;
            hi = f->max == 7 ? 6 : f->max; /* day-of-week: 7 is Sunday again */
            p++;
        } else {
            if (value(f, &p, &lo, err, errcap)) return -1;
            hi = lo;
            single = *p != '-';
            if (*p == '-') {
                p++;
                if (value(f, &p, &hi, err, errcap)) return -1;
                if (hi < lo) {
                    snprintf(err, errcap, "%s: range %d-%d goes backwards", f->name, lo, hi);
                    return -1;
                }
            }
        }
        if (*p == '/') {
            p++;
            if (!isdigit((unsigned char)*p)) {
                snprintf(err, errcap, "%s: a step needs a number after '/'", f->name);
                return -1;
            }
            long v = 0;
            while (isdigit((unsigned char)*p) && v < 1000) v = v * 10 + (*p++ - '0');
            if (v < 1 || v > f->max) {
                snprintf(err, errcap, "%s: step %ld is out of range 1-%d", f->name, v, f->max);
                return -1;
            }
            /* N/STEP is N-MAX/STEP, as Vixie cron reads it. */
            if (single) hi = f->max == 7 ? 6 : f->max;
            step = (int)v;
        }
        for (int v = lo; v <= hi; v += step) *bits |= 1ull << (f->max == 7 && v == 7 ? 0 : v);
        if (*p == '\0') return 0;
        if (*p != ',') {
            snprintf(err, errcap, "%s: unexpected '%c' in '%s'", f->name, *p, s);
            return -1;
        }
        p++;
    }
}

/* 30s, 5m, 1h, 1h30m, 2d: at least one number-unit pair. */
static int parse_duration(const char *s, int64_t *ms, char *err, size_t errcap)
{
    int64_t total = 0;
    const char *p = s;
    if (!*p) goto bad;
    while (*p) {
        if (!isdigit((unsigned char)*p)) goto bad;
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (*p++ - '0');
            if (v > 100000000) goto bad;
        }
        int64_t unit;
        if (strncmp(p, "ms", 2) == 0) {
            unit = 1;
            p++;
        } else if (*p == 's') {
            unit = 1000;
        } else if (*p == 'm') {
            unit = 60000;
        } else if (*p == 'h') {
            unit = 3600000;
        } else if (*p == 'd') {
            unit = 86400000;
        } else {
            goto bad;
        }
        p++;
        total += v * unit;
        if (total > 366LL * 86400000) {
            snprintf(err, errcap, "@every: '%s' is longer than a year", s);
            return -1;
        }
    }
    if (total < 1000) {
        snprintf(err, errcap, "@every: '%s' is shorter than the minimum, 1s", s);
        return -1;
    }
    *ms = total;
    return 0;
bad:
    snprintf(err, errcap, "@every: '%s' is not a duration (like 30s, 5m, 1h, 1h30m)", s);
    return -1;
}

static const struct {
    const char *name, *expr;
} shorthands[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

int cron_parse(const char *expr, cron_expr *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    while (isspace((unsigned char)*expr)) expr++;
    if (strncmp(expr, "@every", 6) == 0 && isspace((unsigned char)expr[6])) {
        const char *d = expr + 6;
        while (isspace((unsigned char)*d)) d++;
        char dur[32];
        size_t n = strcspn(d, " \t\r\n");
        if (n >= sizeof dur) n = sizeof dur - 1;
        memcpy(dur, d, n);
        dur[n] = '\0';
        for (const char *t = d + strcspn(d, " \t\r\n"); *t; t++) {
            if (!isspace((unsigned char)*t)) {
                snprintf(err, errcap, "@every takes one duration, then nothing");
                return -1;
            }
        }
        return parse_duration(dur, &out->every_ms, err, errcap);
    }
    if (expr[0] == '@') {
        for (size_t i = 0; i < sizeof shorthands / sizeof shorthands[0]; i++)
            if (strcmp(expr, shorthands[i].name) == 0)
                return cron_parse(shorthands[i].expr, out, err, errcap);
        snprintf(err, errcap,
                 "unknown shorthand '%.32s' (@every DURATION, @hourly, @daily, @midnight, "
                 "@weekly, @monthly, @yearly, @annually)",
                 expr);
        return -1;
    }
    char copy[256];
    if (strlen(expr) >= sizeof copy) {
        snprintf(err, errcap, "the expression is longer than %zu bytes", sizeof copy - 1);
        return -1;
    }
    strcpy(copy, expr);
    char *words[6];
    int n = 0;
    for (char *save = NULL, *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        if (n < 6)
            words[n++] = w;
        else
            n = 7;
    if (n != 5) {
        snprintf(err, errcap,
                 "a cron expression has five fields (minute hour day-of-month month "
                 "day-of-week); this has %s",
                 n > 5    ? "more"
                 : n == 0 ? "none"
                          : "fewer");
        return -1;
    }
    uint64_t bits[5];
    int stars[5];
    for (int i = 0; i < 5; i++)
        if (parse_field(&fields[i], words[i], &bits[i], &stars[i], err, errcap)) return -1;
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->wdays = (uint8_t)bits[4];
    out->mday_star = stars[2];
    out->wday_star = stars[4];
    return 0;
}

/* A fixed offset: [UTC]+H, +HH, +HHMM, +HH:MM (up to 14 hours); 1 if zone
 * is not one. */
static int parse_fixed(const char *zone, int32_t *offset_s)
{
    const char *p = zone;
    if (strncmp(p, "UTC", 3) == 0) p += 3;
    int sign = *p == '+' ? 1 : *p == '-' ? -1 : 0;
    int h = 0, m = 0, digits = 0;
    if (!sign) return 1;
    p++;
    while (isdigit((unsigned char)*p) && digits < 2) h = h * 10 + (*p++ - '0'), digits++;
    if (*p == ':') p++;
    int md = 0;
    while (isdigit((unsigned char)*p) && md < 2) m = m * 10 + (*p++ - '0'), md++;
    /* No zone is more than 14:00 away from UTC: +14:59 is a typo. */
    if (!digits || *p != '\0' || (md != 0 && md != 2) || h * 60 + m > 14 * 60 || m >= 60) return 1;
    *offset_s = sign * (h * 3600 + m * 60);
    return 0;
}

int cron_zone_open(const char *zone, cron_zone *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    if (!zone || !*zone || strcmp(zone, "UTC") == 0 || strcmp(zone, "Z") == 0 ||
        strcmp(zone, "GMT") == 0 || strcmp(zone, "Etc/UTC") == 0)
        return 0;
    if (zone[0] == '+' || zone[0] == '-' || strncmp(zone, "UTC", 3) == 0) {
        if (parse_fixed(zone, &out->fixed_s) == 0) return 0;
        snprintf(err, errcap, "tz: '%.64s' is not a fixed offset (+02:00, -0530, UTC+5)", zone);
        return -1;
    }
    /* A named zone must be one ICU knows by that name: ICU opens any other
     * name as GMT without a word, which would fire at the wrong hours. */
    UChar id[128], canonical[128];
    size_t len = strlen(zone);
    UErrorCode status = U_ZERO_ERROR;
    UBool system = 0;
    if (len < sizeof id / sizeof id[0]) {
        u_charsToUChars(zone, id, (int32_t)len);
        ucal_getCanonicalTimeZoneID(id, (int32_t)len, canonical, 128, &system, &status);
    }
    if (len >= sizeof id / sizeof id[0] || U_FAILURE(status) || !system) {
        snprintf(err, errcap,
                 "tz: unknown zone '%.64s' (a name of the tz database such as Europe/Paris, "
                 "UTC, or a fixed offset such as +02:00)",
                 zone);
        return -1;
    }
    status = U_ZERO_ERROR;
    UCalendar *cal = ucal_open(id, (int32_t)len, "en_US_POSIX", UCAL_GREGORIAN, &status);
    if (U_FAILURE(status)) {
        snprintf(err, errcap, "tz: cannot open zone '%.64s': %s", zone, u_errorName(status));
        return -1;
    }
    out->cal = cal;
    return 0;
}

void cron_zone_close(cron_zone *z)
{
    if (z->cal) ucal_close(z->cal);
    z->cal = NULL;
}

int32_t cron_zone_offset(const cron_zone *z, int64_t utc_ms)
{
    if (!z || !z->cal) return z ? z->fixed_s : 0;
    UErrorCode status = U_ZERO_ERROR;
    ucal_setMillis(z->cal, (UDate)utc_ms, &status);
    int32_t ms =
        ucal_get(z->cal, UCAL_ZONE_OFFSET, &status) + ucal_get(z->cal, UCAL_DST_OFFSET, &status);
    return U_FAILURE(status) ? 0 : ms / 1000;
}

static int matches_day(const cron_expr *e, const struct tm *t)
{
    int mday = (e->mdays >> t->tm_mday) & 1;
    int wday = (e->wdays >> t->tm_wday) & 1;
    /* Vixie cron: both restricted, either matches; else both must. */
    if (e->mday_star || e->wday_star) return mday && wday;
    return mday || wday;
}

/* The first local time (seconds, held as if UTC, a whole minute) at or
 * after local_s that e matches; -1 when none within eight years. */
static int64_t match_from(const cron_expr *e, int64_t local_s)
{
    time_t t = (time_t)local_s;
    t = t - (t % 60 + 60) % 60 + ((t % 60 + 60) % 60 ? 60 : 0);
    time_t end = t + (time_t)8 * 366 * 86400;
    struct tm tm;
    while (t < end) {
        gmtime_r(&t, &tm);
        if (!((e->months >> (tm.tm_mon + 1)) & 1)) {
            tm.tm_mon++;
            tm.tm_mday = 1;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        } else if (!matches_day(e, &tm)) {
            tm.tm_mday++;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        } else if (!((e->hours >> tm.tm_hour) & 1)) {
            tm.tm_hour++;
            tm.tm_min = tm.tm_sec = 0;
        } else if (!((e->minutes >> tm.tm_min) & 1)) {
            tm.tm_min++;
            tm.tm_sec = 0;
        } else {
            return (int64_t)t;
        }
        t = timegm(&tm); /* normalizes the field carried over */
    }
    return -1;
}

static int32_t offset_at(const cron_zone *z, int64_t utc_s)
{
    return cron_zone_offset(z, utc_s * 1000);
}

/* Whether the local time of utc_s (offset off) already happened earlier, in
 * the hour a change back repeats. No zone changes twice within a day. */
static int repeated(const cron_zone *z, int64_t utc_s, int32_t off)
{
    int32_t before = offset_at(z, utc_s - 86400);
    return before > off && offset_at(z, utc_s - (before - off)) == before;
}

#define ALL_HOURS 0xffffffu

int64_t cron_next(const cron_expr *e, const cron_zone *z, int64_t anchor_ms, int64_t after_ms)
{
    if (e->every_ms > 0) {
        if (after_ms < anchor_ms) return anchor_ms;
        return anchor_ms + ((after_ms - anchor_ms) / e->every_ms + 1) * e->every_ms;
    }
    /* Real time is walked in stretches of one offset: within one, the first
     * local match is placed back on the UTC line; a change of offset before
     * it starts the next stretch at the change. Jobs at a fixed hour follow
     * cronie around changes: a local time skipped fires at the change, a
     * local time repeated fires the first time only. Jobs for every hour
     * just run by real time. */
    int fixed_hours = (e->hours & ALL_HOURS) != ALL_HOURS;
    int64_t s = after_ms >= 0 ? after_ms / 1000 : (after_ms - 999) / 1000;
    s = s - (s % 60 + 60) % 60 + 60; /* the next whole minute */
    int64_t end = s + (int64_t)8 * 366 * 86400;
    while (s < end) {
        int32_t off = offset_at(z, s);
        int64_t local = match_from(e, s + off);
        if (local < 0) return -1;
        int64_t c = local - off;
        if (offset_at(z, c) == off) {
            if (fixed_hours && z && z->cal && repeated(z, c, off)) {
                s = c + 60;
                continue;
            }
            return c * 1000;
        }
        /* The offset changes between s and c: find the change (to the second). */
        int64_t lo = s, hi = c;
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            if (offset_at(z, mid) == off)
                lo = mid;
            else
                hi = mid;
        }
        int32_t next_off = offset_at(z, hi);
        if (fixed_hours && next_off > off) {
            int64_t skipped = match_from(e, hi + off);
            if (skipped >= 0 && skipped < hi + next_off) return hi * 1000;
        }
        s = hi;
    }
    return -1;
}

void cron_iso8601(int64_t ms, char *out, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
