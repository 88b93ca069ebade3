/* Unit tests of the autoscaler's arithmetic, UTF-8 validation and request ids. */
#include <math.h>

#include "common/reqid.h"
#include "common/utf8.h"
#include "sched/autoscaler.h"
#include "test.h"

static scale_input base(void)
{
    return (scale_input){.arrival_per_s = 0,
                         .service_s = 0.01,
                         .backlog = 0,
                         .oldest_age_s = 0,
                         .deadline_s = 0,
                         .cold_start_s = 0.001,
                         .drain_target_s = 1.0,
                         .min = 0,
                         .max = 100};
}

static void littles_law(void)
{
    scale_output out;
    scale_input in = base();
    autoscale(&in, &out);
    CHECK_INT(out.desired, 0); /* nothing to do: down to the minimum */
    in.min = 2;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 2);

    /* 1000/s at 10 ms keeps 10 busy; at 80% utilisation that is 12.5 -> 13. */
    in = base();
    in.arrival_per_s = 1000;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 13);

    /* A backlog of 500 at 10 ms to drain in 1 s needs 5 more. */
    in.backlog = 500;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 18);
    CHECK(out.eta_s > 0 && isfinite(out.eta_s));

    /* Never more instances for a backlog than it has messages. */
    in = base();
    in.service_s = 30;
    in.backlog = 3;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 3);

    /* Clamped to the maximum. */
    in = base();
    in.backlog = 1e6;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 100);
}

static void unknown_service_time(void)
{
    /* Before any handler time is known: a few start (the probe), not one
     * per waiting message. */
    scale_input in = base();
    in.service_s = 0;
    in.backlog = 5000;
    in.max = 200;
    scale_output out;
    autoscale(&in, &out);
    CHECK_INT(out.desired, AUTOSCALE_PROBE);
    CHECK(!out.at_risk);
    CHECK(isinf(out.eta_s));
    in.backlog = 1;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 1); /* never more than it has messages */
    in.backlog = 0;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 0);

    /* What the oldest running call has lasted is a lower bound of the
     * handler time: 200 waiting, one has run 50 ms, so 200 x 0.05 / 1 s = 10
     * at least. */
    in.backlog = 200;
    in.service_floor_s = 0.05;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 10);
    /* It grows while the calls run on: a 3 s function with 6 waiting has
     * them all after 1 s, before any ends. */
    in.backlog = 6;
    in.service_floor_s = 1.0;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 6);
    /* Arrivals do not count at the lower bound: a burst's arrivals are its
     * backlog. 200 x 0.02 = 4, whatever the rate. */
    in.backlog = 200;
    in.arrival_per_s = 100;
    in.service_floor_s = 0.02;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 4);
    /* A tiny floor still gets the probe. */
    in.arrival_per_s = 0;
    in.service_floor_s = 0.0001;
    autoscale(&in, &out);
    CHECK_INT(out.desired, AUTOSCALE_PROBE);
}

static void the_burst(void)
{
    /* Issue 20: 200 invocations of a 20 ms function at once. Once the time
     * is known, the rule asks for 4 to drain them within 1 s, and at most 5
     * more for the arrival rate their burst makes (200/s at most once
     * smoothed): never the 100 one per invocation would start. */
    scale_input in = base();
    in.service_s = 0.02;
    in.backlog = 200;
    scale_output out;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 4);
    CHECK(fabs(out.eta_s - 1.0) < 1e-9);
    in.arrival_per_s = 200;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 9);
}

static void deadlines(void)
{
    scale_output out;
    /* 60 messages of 100 ms on at most 2 instances: 3 s to drain, 1 s deadline. */
    scale_input in = base();
    in.service_s = 0.1;
    in.backlog = 60;
    in.max = 2;
    in.deadline_s = 1.0;
    in.oldest_age_s = 0.2;
    autoscale(&in, &out);
    CHECK_INT(out.desired, 2);
    CHECK(out.at_risk);
    CHECK(fabs(out.time_left_s - 0.8) < 1e-9);
    CHECK(fabs(out.eta_max_s - 3.0) < 1e-9);

    /* With room to scale, the deadline tightens the drain target instead. */
    in.max = 100;
    autoscale(&in, &out);
    CHECK(!out.at_risk);
    /* 60 x 0.1 s within 0.8 - 0.001 s: 8 instances. */
    CHECK_INT(out.desired, 8);

    /* Arrivals faster than all instances can serve: never drains. */
    in = base();
    in.arrival_per_s = 1000;
    in.service_s = 0.1;
    in.max = 10;
    in.backlog = 10;
    in.deadline_s = 5;
    autoscale(&in, &out);
    CHECK(isinf(out.eta_max_s));
    CHECK(out.at_risk);

    /* Nothing has run yet (no handler time: the ETA is unknown), but the
     * oldest is past the deadline: missed, not "on track". */
    in = base();
    in.backlog = 3;
    in.max = 10;
    in.deadline_s = 2;
    in.oldest_age_s = 17;
    autoscale(&in, &out);
    CHECK(out.time_left_s < 0);
    CHECK(out.at_risk);
    in.oldest_age_s = 1;
    autoscale(&in, &out);
    CHECK(!out.at_risk);
    /* Before it is missed: no instance can start (a node limit, a zygote
     * that does not load), so nothing of the backlog runs. */
    in.blocked = 1;
    autoscale(&in, &out);
    CHECK(out.at_risk);
}

static void rates(void)
{
    rate_meter m = {0};
    uint64_t t = 1000000000ull;
    rate_update(&m, 0, t);
    for (int i = 1; i <= 100; i++) rate_update(&m, (uint64_t)i * 50, t + (uint64_t)i * 50000000ull);
    /* 50 every 50 ms is 1000/s; after 5 s of it the smoothed rate is there. */
    CHECK(fabs(m.rate - 1000) < 10);
    /* A counter that goes back (a trigger gone, a batch size changed) is a
     * new start, not 2^64 arrivals. */
    rate_update(&m, 10, t + 101 * 50000000ull);
    CHECK(m.rate < 2000);
    rate_update(&m, 60, t + 102 * 50000000ull);
    CHECK(fabs(m.rate - 1000) < 10);
}

static void utf8(void)
{
    CHECK(utf8_valid("plain", 5));
    CHECK(utf8_valid("caf\xc3\xa9", 5));
    CHECK(utf8_valid("\xf0\x9f\x98\x80", 4));
    CHECK(!utf8_valid("\xff", 1));
    CHECK(!utf8_valid("\xc3", 1));             /* truncated */
    CHECK(!utf8_valid("\xc0\xaf", 2));         /* overlong */
    CHECK(!utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CHECK(!utf8_valid("a\0b", 3));             /* NUL */
    CHECK(!utf8_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
}

static void request_ids(void)
{
    char a[REQID_LEN + 1], b[REQID_LEN + 1];
    reqid_next(a);
    reqid_next(b);
    CHECK_INT(strlen(a), REQID_LEN);
    CHECK(strcmp(a, b) != 0);
    CHECK(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
}

int main(void)
{
    RUN(littles_law);
    RUN(unknown_service_time);
    RUN(the_burst);
    RUN(deadlines);
    RUN(rates);
    RUN(utf8);
    RUN(request_ids);
    return TEST_RESULT();
}
