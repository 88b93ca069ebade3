/* Unit tests of schedule expressions (src/schedules/cron.c): parsing, the
 * errors that name the field, and next fire times in UTC and fixed offsets. */
#include <stdint.h>
#include <time.h>

#include "schedules/cron.h"
#include "test.h"

/* ms of a UTC date and time. */
static int64_t at(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm) * 1000;
}

static int64_t next(const char *expr, const char *zone, int64_t after)
{
    cron_expr e;
    char err[256];
    int32_t off;
    if (cron_parse(expr, &e, err, sizeof err) || cron_parse_zone(zone, &off, err, sizeof err)) {
        fprintf(stderr, "  %s: %s\n", expr, err);
        return -2;
    }
    return cron_next(&e, off, 0, after);
}

static void next_times(void)
{
    int64_t t0 = at(2026, 12, 2, 23, 10); /* a Wednesday */
    CHECK_INT(next("* * * * *", "", t0), at(2026, 12, 2, 23, 11));
    CHECK_INT(next("* * * * *", "", t0 + 30000), at(2026, 12, 2, 23, 11));
    CHECK_INT(next("*/15 * * * *", "", t0), at(2026, 12, 2, 23, 15));
    CHECK_INT(next("5/20 * * * *", "", t0), at(2026, 12, 2, 23, 25));
    CHECK_INT(next("0 0 * * *", "", t0), at(2026, 12, 3, 0, 0));
    CHECK_INT(next("@daily", "UTC", t0), at(2026, 12, 3, 0, 0));
    CHECK_INT(next("@hourly", "", t0), at(2026, 12, 3, 0, 0));
    CHECK_INT(next("0 9 * * mon-fri", "", t0), at(2026, 12, 3, 9, 0));
    CHECK_INT(next("30 8 1 jan *", "", t0), at(2027, 1, 1, 8, 30));
    CHECK_INT(next("@yearly", "", t0), at(2027, 1, 1, 0, 0));
    /* 7 is Sunday, as 0 is. */
    CHECK_INT(next("0 12 * * 7", "", t0), at(2026, 12, 6, 12, 0));
    CHECK_INT(next("0 12 * * 0", "", t0), at(2026, 12, 6, 12, 0));
    CHECK_INT(next("0 12 * * sun", "", t0), at(2026, 12, 6, 12, 0));
    CHECK_INT(next("0 12 * * 5-7", "", t0), at(2026, 12, 4, 12, 0));
    /* Feb 29: the next leap year. */
    CHECK_INT(next("0 0 29 2 *", "", t0), at(2028, 2, 29, 0, 0));
    /* Both days restricted: either (Vixie cron). The 1st, or a Friday. */
    CHECK_INT(next("0 0 1 * fri", "", t0), at(2026, 12, 4, 0, 0));
    CHECK_INT(next("0 0 1 * fri", "", at(2026, 12, 26, 0, 0)), at(2027, 1, 1, 0, 0));
    /* One restricted by a step of 2 (it begins with a star): still AND. */
    CHECK_INT(next("0 0 */2 * fri", "", t0), at(2026, 12, 11, 0, 0));
    /* Lists and ranges with steps. */
    CHECK_INT(next("0,30 1-5/2 * * *", "", t0), at(2026, 12, 3, 1, 0));
    CHECK_INT(next("0,30 1-5/2 * * *", "", at(2026, 12, 3, 1, 0)), at(2026, 12, 3, 1, 30));
    CHECK_INT(next("0,30 1-5/2 * * *", "", at(2026, 12, 3, 1, 30)), at(2026, 12, 3, 3, 0));
    /* The 31st skips the short months. */
    CHECK_INT(next("0 0 31 * *", "", at(2027, 1, 31, 0, 0)), at(2027, 3, 31, 0, 0));
    /* Never: 30 February. */
    CHECK_INT(next("0 0 30 2 *", "", t0), -1);
    /* Fixed offsets: 09:00 at +02:00 is 07:00 UTC; at -05:30, 14:30 UTC. */
    CHECK_INT(next("0 9 * * *", "+02:00", t0), at(2026, 12, 3, 7, 0));
    CHECK_INT(next("0 9 * * *", "-0530", t0), at(2026, 12, 3, 14, 30));
    CHECK_INT(next("0 9 * * *", "UTC+1", t0), at(2026, 12, 3, 8, 0));
    /* Midnight on Thursday at +02:00 is Wednesday 22:00 UTC: the day is the zone's. */
    CHECK_INT(next("0 0 * * thu", "+02:00", at(2026, 12, 2, 12, 0)), at(2026, 12, 2, 22, 0));
}

static void every(void)
{
    cron_expr e;
    char err[256];
    CHECK_INT(cron_parse("@every 30s", &e, err, sizeof err), 0);
    CHECK_INT(e.every_ms, 30000);
    CHECK_INT(cron_next(&e, 0, 1000, 1000), 31000);
    CHECK_INT(cron_next(&e, 0, 1000, 30999), 31000);
    CHECK_INT(cron_next(&e, 0, 1000, 31000), 61000);
    CHECK_INT(cron_parse("@every 1h30m", &e, err, sizeof err), 0);
    CHECK_INT(e.every_ms, 5400000);
    CHECK_INT(cron_parse("@every 1s", &e, err, sizeof err), 0);
    CHECK_INT(cron_parse("@every 500ms", &e, err, sizeof err), -1);
    CHECK(strstr(err, "minimum") != NULL);
    CHECK_INT(cron_parse("@every 5x", &e, err, sizeof err), -1);
    CHECK(strstr(err, "not a duration") != NULL);
    CHECK_INT(cron_parse("@every", &e, err, sizeof err), -1);
}

static void errors(void)
{
    cron_expr e;
    char err[256];
    CHECK_INT(cron_parse("60 * * * *", &e, err, sizeof err), -1);
    CHECK_STR(err, "minute: 60 is out of range 0-59");
    CHECK_INT(cron_parse("* 24 * * *", &e, err, sizeof err), -1);
    CHECK(strncmp(err, "hour:", 5) == 0);
    CHECK_INT(cron_parse("* * 0 * *", &e, err, sizeof err), -1);
    CHECK(strncmp(err, "day-of-month:", 13) == 0);
    CHECK_INT(cron_parse("* * * foo *", &e, err, sizeof err), -1);
    CHECK_STR(err, "month: 'foo' is not a number or a name");
    CHECK_INT(cron_parse("* * * * 8", &e, err, sizeof err), -1);
    CHECK(strncmp(err, "day-of-week:", 12) == 0);
    CHECK_INT(cron_parse("5-1 * * * *", &e, err, sizeof err), -1);
    CHECK(strstr(err, "backwards") != NULL);
    CHECK_INT(cron_parse("*/0 * * * *", &e, err, sizeof err), -1);
    CHECK(strstr(err, "step") != NULL);
    CHECK_INT(cron_parse("* * * *", &e, err, sizeof err), -1);
    CHECK(strstr(err, "five fields") != NULL);
    CHECK_INT(cron_parse("* * * * * *", &e, err, sizeof err), -1);
    CHECK_INT(cron_parse("", &e, err, sizeof err), -1);
    CHECK_INT(cron_parse("@often", &e, err, sizeof err), -1);
    CHECK_INT(cron_parse("1,,2 * * * *", &e, err, sizeof err), -1);
    CHECK_INT(cron_parse("1; * * * *", &e, err, sizeof err), -1);
    int32_t off;
    CHECK_INT(cron_parse_zone("Europe/Paris", &off, err, sizeof err), -1);
    CHECK(strstr(err, "named zones") != NULL);
    CHECK_INT(cron_parse_zone("+25:00", &off, err, sizeof err), -1);
    CHECK_INT(cron_parse_zone("+02:00", &off, err, sizeof err), 0);
    CHECK_INT(off, 7200);
}

int main(void)
{
    RUN(next_times);
    RUN(every);
    RUN(errors);
    return TEST_RESULT();
}
