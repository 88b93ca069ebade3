/* Unit tests of schedule expressions (src/schedules/cron.c): parsing, the
 * errors that name the field, and next fire times in UTC, fixed offsets and
 * named zones across their daylight-saving changes. */
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
    cron_zone z;
    if (cron_parse(expr, &e, err, sizeof err) || cron_zone_open(zone, &z, err, sizeof err)) {
        fprintf(stderr, "  %s: %s\n", expr, err);
        return -2;
    }
    int64_t t = cron_next(&e, &z, 0, after);
    cron_zone_close(&z);
    return t;
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
    CHECK_INT(cron_next(&e, NULL, 1000, 1000), 31000);
    CHECK_INT(cron_next(&e, NULL, 1000, 30999), 31000);
    CHECK_INT(cron_next(&e, NULL, 1000, 31000), 61000);
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
    cron_zone z;
    CHECK_INT(cron_zone_open("Europe/Pariss", &z, err, sizeof err), -1);
    CHECK(strstr(err, "unknown zone 'Europe/Pariss'") != NULL);
    CHECK_INT(cron_zone_open("Mars/Olympus", &z, err, sizeof err), -1);
    CHECK_INT(cron_zone_open("+25:00", &z, err, sizeof err), -1);
    CHECK(strstr(err, "not a fixed offset") != NULL);
    CHECK_INT(cron_zone_open("UTC+14:59", &z, err, sizeof err), -1);
    CHECK_INT(cron_zone_open("-14:30", &z, err, sizeof err), -1);
    CHECK_INT(cron_zone_open("+14:00", &z, err, sizeof err), 0);
    CHECK_INT(cron_zone_offset(&z, 0), 14 * 3600);
    CHECK_INT(cron_zone_open("+02:00", &z, err, sizeof err), 0);
    CHECK_INT(cron_zone_offset(&z, 0), 7200);
    CHECK_INT(cron_zone_open("Europe/Paris", &z, err, sizeof err), 0);
    CHECK_INT(cron_zone_offset(&z, at(2027, 1, 15, 12, 0)), 3600);
    CHECK_INT(cron_zone_offset(&z, at(2027, 7, 15, 12, 0)), 7200);
    cron_zone_close(&z);
}

/* Europe/Paris in 2027: summer time from Sunday 28 March 01:00 UTC (local
 * 02:00 -> 03:00) to Sunday 31 October 01:00 UTC (local 03:00 -> 02:00). */
static void named_zones(void)
{
    const char *paris = "Europe/Paris";
    CHECK_INT(next("0 9 * * *", paris, at(2027, 1, 10, 12, 0)), at(2027, 1, 11, 8, 0));
    CHECK_INT(next("0 9 * * *", paris, at(2027, 7, 10, 12, 0)), at(2027, 7, 11, 7, 0));
    /* Across the change in spring: 09:00 local is 08:00 UTC, then 07:00. */
    CHECK_INT(next("0 9 * * *", paris, at(2027, 3, 27, 8, 0)), at(2027, 3, 28, 7, 0));
    /* 02:30 does not happen on 28 March: it fires at the change. */
    CHECK_INT(next("30 2 * * *", paris, at(2027, 3, 27, 12, 0)), at(2027, 3, 28, 1, 0));
    CHECK_INT(next("30 2 * * *", paris, at(2027, 3, 28, 1, 0)), at(2027, 3, 29, 0, 30));
    /* 02:30 happens twice on 31 October: it fires the first time only. */
    CHECK_INT(next("30 2 * * *", paris, at(2027, 10, 30, 12, 0)), at(2027, 10, 31, 0, 30));
    CHECK_INT(next("30 2 * * *", paris, at(2027, 10, 31, 0, 30)), at(2027, 11, 1, 1, 30));
    /* Every hour at :30 runs by real time through both changes. */
    CHECK_INT(next("30 * * * *", paris, at(2027, 3, 28, 0, 30)), at(2027, 3, 28, 1, 30));
    CHECK_INT(next("30 * * * *", paris, at(2027, 10, 31, 0, 30)), at(2027, 10, 31, 1, 30));
    CHECK_INT(next("30 * * * *", paris, at(2027, 10, 31, 1, 30)), at(2027, 10, 31, 2, 30));
    /* Once a year, months ahead across a change. */
    CHECK_INT(next("0 12 1 7 *", paris, at(2027, 1, 1, 0, 0)), at(2027, 7, 1, 10, 0));
    CHECK_INT(next("0 12 1 1 *", paris, at(2027, 9, 1, 0, 0)), at(2028, 1, 1, 11, 0));
    /* A zone east of UTC across midnight. */
    CHECK_INT(next("0 0 * * *", "Asia/Tokyo", at(2027, 5, 1, 12, 0)), at(2027, 5, 1, 15, 0));
}

int main(void)
{
    RUN(named_zones);
    RUN(next_times);
    RUN(every);
    RUN(errors);
    return TEST_RESULT();
}
