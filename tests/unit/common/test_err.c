/* Unit tests of common/err: the node limits' table (ERR_LIMIT_MAP) both
 * ways, and the errnos that say a limit was reached. */
#include <errno.h>

#include "common/err.h"
#include "test.h"

static void limits_table(void)
{
    static const char *const codes[] = {"descriptors_exhausted", "processes_exhausted",
                                        "memory_exhausted", "instances_exhausted", "zygote_budget"};
    CHECK_INT(ERR_LIMITS, 5);
    for (int l = 0; l < ERR_LIMITS; l++) {
        int code = err_of_limit(l);
        CHECK(code < 0);
        CHECK_INT(err_limit(code), l);
        CHECK_STR(err_limit_code(l), codes[l]);
        CHECK_INT(err_limit_by_code(codes[l]), l);
        /* Each is an error of the one table, with its own name and message. */
        CHECK(strcmp(err_name(code), "UNKNOWN") != 0);
        CHECK(strstr(err_str(code), "the node") != NULL);
    }
    CHECK_STR(err_limit_label(ERR_LIMIT_INSTANCES), "instances");
    CHECK_STR(err_name(ERR_DESCRIPTORS), "DESCRIPTORS");
    /* The errors before them keep their numbers. */
    CHECK_INT(ERR_NOMEM, -1);
    CHECK_INT(err_limit(ERR_IO), -1);
    CHECK_INT(err_limit(ERR_NOMEM), -1);
    CHECK_INT(err_limit(0), -1);
    CHECK(err_limit_code(ERR_LIMITS) == NULL);
    CHECK(err_limit_code(-1) == NULL);
    CHECK_INT(err_limit_by_code("unavailable"), -1);
    CHECK_INT(err_limit_by_code(NULL), -1);
}

static void errnos(void)
{
    CHECK_INT(err_from_errno(EMFILE, ERR_IO), ERR_DESCRIPTORS);
    CHECK_INT(err_from_errno(ENFILE, ERR_IO), ERR_DESCRIPTORS);
    CHECK_INT(err_from_errno(EAGAIN, ERR_IO), ERR_PROCESSES);
    CHECK_INT(err_from_errno(ENOMEM, ERR_IO), ERR_MEMORY);
    CHECK_INT(err_from_errno(EACCES, ERR_IO), ERR_IO);
    CHECK_INT(err_from_errno(ENOENT, 0), 0);
}

int main(void)
{
    RUN(limits_table);
    RUN(errnos);
    return TEST_RESULT();
}
