/* Unit tests of the trim rule of cluster/jsqueue/refresh.c: a topic's stream
 * is trimmed only below what every consumer has seen and settled, by the
 * figures of its replicated state, never by its NumPending (which a leader on
 * a lagging replica counts against its own stale copy of the stream). */
#include "cluster/jsqueue/internal.h"
#include "test.h"

static jsConsumerInfo consumer(uint64_t delivered, uint64_t ack_floor, int64_t ack_pending,
                               uint64_t pending)
{
    jsConsumerInfo ci = {0};
    ci.Delivered.Stream = delivered;
    ci.AckFloor.Stream = ack_floor;
    ci.NumAckPending = ack_pending;
    ci.NumPending = pending;
    return ci;
}

static uint64_t keep_of(jsConsumerInfo *c, int n)
{
    jsConsumerInfo *list[8];
    for (int i = 0; i < n; i++) list[i] = &c[i];
    return jsqueue__trim_keep(list, n);
}

/* The nemesis's loss: a consumer's leader on a nats-server that restarted
 * has seen up to 900 of a stream whose leader has 1000; it counts nothing
 * pending, and the trim must still keep 901-1000, which it never delivered. */
static void test_a_lagging_leader_keeps_what_it_has_not_seen(void)
{
    jsConsumerInfo c[] = {consumer(900, 900, 0, 0)};
    CHECK_INT(keep_of(c, 1), 901);
}

/* All it delivered acknowledged, and the messages its filter does not take
 * passed over (Delivered.Stream is past its ack floor): everything it has
 * looked at goes, so an ordered trigger's idle parts do not hold the stream. */
static void test_settled_consumers_let_everything_seen_go(void)
{
    jsConsumerInfo c[] = {consumer(1000, 950, 0, 0), consumer(1000, 1000, 0, 0)};
    CHECK_INT(keep_of(c, 2), 1001);
}

/* Something unacknowledged (in flight, or waiting for a retry): only below
 * its ack floor, whatever NumPending says. */
static void test_unacknowledged_holds_at_the_ack_floor(void)
{
    jsConsumerInfo c[] = {consumer(1000, 700, 3, 0)};
    CHECK_INT(keep_of(c, 1), 701);
}

/* The lowest over every consumer (one per key part of an ordered trigger). */
static void test_the_lowest_consumer_decides(void)
{
    jsConsumerInfo c[] = {consumer(1000, 990, 0, 0), consumer(1000, 640, 1, 5),
                          consumer(800, 800, 0, 0), consumer(1000, 999, 1, 0)};
    CHECK_INT(keep_of(c, 4), 641);
}

/* A consumer that has delivered nothing yet keeps the whole stream; no
 * consumer at all: nothing to go by, keep everything (0). */
static void test_nothing_seen_keeps_everything(void)
{
    jsConsumerInfo c[] = {consumer(0, 0, 0, 1000), consumer(1000, 1000, 0, 0)};
    CHECK_INT(keep_of(c, 2), 1);
    CHECK_INT(keep_of(c, 0), 0);
}

int main(void)
{
    RUN(test_a_lagging_leader_keeps_what_it_has_not_seen);
    RUN(test_settled_consumers_let_everything_seen_go);
    RUN(test_unacknowledged_holds_at_the_ack_floor);
    RUN(test_the_lowest_consumer_decides);
    RUN(test_nothing_seen_keeps_everything);
    return TEST_RESULT();
}
