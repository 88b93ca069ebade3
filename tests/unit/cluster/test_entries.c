/* Unit tests of cluster/entries.c's aliases (al.FUNCTION.ALIAS): the JSON
 * goes back to the same alias and its writer, and what no alias may be
 * (functions_alias_set would refuse it) is refused when read. */
#include <stdlib.h>

#include "cluster/internal.h"
#include "test.h"

static void an_alias_round_trips(void)
{
    reg_alias a = {.function = "app",
                   .name = "live",
                   .version = 3,
                   .weight_version = 4,
                   .weight_percent = 10,
                   .created_ms = 1795700000000,
                   .updated_ms = 1795700100000};
    char *text = cluster__alias_json(&a, "1f7d35cdf71dbca9");
    reg_alias b;
    char origin[32];
    CHECK_INT(cluster__alias_parse(text, &b, origin, sizeof origin), 0);
    CHECK_STR(b.function, "app");
    CHECK_STR(b.name, "live");
    CHECK_INT(b.version, 3);
    CHECK_INT(b.weight_version, 4);
    CHECK_INT(b.weight_percent, 10);
    CHECK_INT(b.created_ms, a.created_ms);
    CHECK_INT(b.updated_ms, a.updated_ms);
    CHECK_STR(origin, "1f7d35cdf71dbca9");
    free(text);
    /* No origin (written by hand): read as "". */
    CHECK_INT(cluster__alias_parse("{\"function\":\"f\",\"name\":\"n\",\"version\":1}", &b, origin,
                                   sizeof origin),
              0);
    CHECK_STR(origin, "");
    CHECK_INT(b.weight_version, 0);
}

static void what_is_no_alias_is_refused(void)
{
    static const char *const bad[] = {
        "not json",
        "[]",
        "{\"name\":\"n\",\"version\":1}",                                         /* no function */
        "{\"function\":\"f\",\"name\":\"n\"}",                                    /* no version */
        "{\"function\":\"f\",\"name\":\"n\",\"version\":0}",                      /* version 0 */
        "{\"function\":\"f\",\"name\":\"n\",\"version\":1,\"weight_version\":2}", /* no percent */
        "{\"function\":\"f\",\"name\":\"n\",\"version\":1,\"weight_version\":1,"
        "\"weight_percent\":5}", /* itself */
        "{\"function\":\"f\",\"name\":\"n\",\"version\":1,\"weight_version\":2,"
        "\"weight_percent\":100}",                                    /* all of it */
        "{\"function\":\"f\",\"name\":\"n\",\"version\":5000000000}", /* past 32 bits */
        "{\"function\":\"f\",\"name\":\"n\",\"version\":1000000000}", /* no qualifier names it */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        reg_alias a;
        if (cluster__alias_parse(bad[i], &a, NULL, 0) == 0) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            test_failures++;
        }
    }
}

int main(void)
{
    RUN(an_alias_round_trips);
    RUN(what_is_no_alias_is_refused);
    return TEST_RESULT();
}
