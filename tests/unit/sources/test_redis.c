/* Unit tests of sources/redis.c's list of entries fetched and not yet
 * acked: an ack takes its batch off the front of the list (batches are
 * acked in the order fetched), and one out of that order is refused. */
#include <stdlib.h>

#include "sources/redis.c"
#include "test.h"

/* A batch of the given ids, remembered as fetched on c. */
static void fetched(src_conn *c, src_batch *b, const char *const *ids)
{
    src_batch_init(b);
    for (; *ids; ids++) CHECK(src_batch_add(b, *ids, strlen(*ids)) != NULL);
    CHECK_INT(remember(c, b, 0), 0);
}

static void acked_in_order(void)
{
    src_conn c = {0};
    src_batch a, b;
    fetched(&c, &a, (const char *const[]){"1-0", "2-0", NULL});
    fetched(&c, &b, (const char *const[]){"3-0", NULL});
    CHECK_INT(c.n_unacked, 3);
    char err[256] = "";
    CHECK_INT(forget(&c, &a, err, sizeof err), 0);
    CHECK_INT(c.n_unacked, 1);
    CHECK_STR(c.unacked[0], "3-0");
    CHECK(is_unacked(&c, "3-0", 3) && !is_unacked(&c, "1-0", 3));
    CHECK_INT(forget(&c, &b, err, sizeof err), 0);
    CHECK_INT(c.n_unacked, 0);
    src_batch_free(&a);
    src_batch_free(&b);
    free(c.unacked);
}

static void out_of_order_is_refused(void)
{
    redis_cfg cfg = {.stream = "s"};
    src_conn c = {.cfg = &cfg};
    src_batch a, b;
    fetched(&c, &a, (const char *const[]){"1-0", NULL});
    fetched(&c, &b, (const char *const[]){"2-0", NULL});
    char err[256] = "";
    CHECK_INT(forget(&c, &b, err, sizeof err), ERR_PROTO);
    CHECK(strstr(err, "2-0") != NULL);
    CHECK_INT(c.n_unacked, 2); /* the connection is dropped with it */
    src_batch_free(&a);
    src_batch_free(&b);
    free(c.unacked);
}

int main(void)
{
    RUN(acked_in_order);
    RUN(out_of_order_is_refused);
    return TEST_RESULT();
}
