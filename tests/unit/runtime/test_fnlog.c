/* Unit tests of a function's log: the file line parser (both formats, and
 * what is neither), filters and the numbers readers follow, and a log filled
 * again from its files. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/limits.h"
#include "runtime/fnlog.h"
#include "test.h"

static int parse(const char *s, fnlog_record *r)
{
    return fnlog_parse_line(s, strlen(s), r);
}

static void parses_both_formats(void)
{
    fnlog_record r;
    CHECK_INT(parse("2026-01-02T03:04:05.678Z seq=12 version=3 instance=7 stream=stderr "
                    "req=abc-1 hello world",
                    &r),
              0);
    CHECK_INT(r.seq, 12);
    CHECK_INT(r.version, 3);
    CHECK_INT(r.instance, 7);
    CHECK_INT(r.stream, FNLOG_STDERR);
    CHECK_STR(r.req, "abc-1");
    CHECK_INT(r.time_ms, 1767323045678LL);
    CHECK_INT(r.len, 11);
    CHECK(memcmp(r.text, "hello world", 11) == 0);
    /* No request, empty text, a stream this version does not know. */
    CHECK_INT(parse("2026-01-02T03:04:05.678Z seq=1 version=1 instance=0 stream=later req=- ", &r),
              0);
    CHECK_STR(r.req, "");
    CHECK_INT(r.len, 0);
    CHECK_INT(r.stream, FNLOG_UNKNOWN);
    /* The format before: no seq, version nor stream. */
    CHECK_INT(parse("2026-01-02T03:04:05.678Z instance=4 req=r1 old text", &r), 0);
    CHECK_INT(r.seq, 0);
    CHECK_INT(r.instance, 4);
    CHECK_STR(r.req, "r1");
    CHECK_INT(r.stream, FNLOG_UNKNOWN);
    CHECK_INT(parse("2026-01-02T03:04:05.678Z zygote preloaded", &r), 0);
    CHECK_INT(r.instance, 0);
    CHECK_INT(r.len, 9);
}

static void refuses_what_is_neither(void)
{
    fnlog_record r;
    const char *bad[] = {
        "",
        "not a log line",
        "2026-01-02T03:04:05.678Z",
        "2026-01-02 03:04:05.678Z instance=4 req=r1 x",
        "2026-13-02T03:04:05.678Z instance=4 req=r1 x",
        "2026-01-02T03:04:05.678Z instance=4",
        "2026-01-02T03:04:05.678Z instance=4 req=r1",
        "2026-01-02T03:04:05.678Z instance=x req=r1 text",
        "2026-01-02T03:04:05.678Z seq=0 version=1 instance=1 stream=stdout req=- x",
        "2026-01-02T03:04:05.678Z seq=1 version=99999999999 instance=1 stream=stdout req=- x",
        "2026-01-02T03:04:05.678Z seq=1 version=1 instance=999999999999999999999 stream=stdout "
        "req=- x",
        "2026-01-02T03:04:05.678Z seq=1 version=1 stream=stdout req=- x",
        "2026-01-02T03:04:05.678Z seq=1 version=1 instance=1 stream=stdout req=- ",
        "2026-01-02T03:04:05.678Z instance=1 req=0123456789012345678901234567890123456789x y",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(bad[i], &r);
        if (i == 12) { /* an empty text is a line */
            CHECK_INT(rc, 0);
            continue;
        }
        if (rc != ERR_INVAL) fprintf(stderr, "    parsed: '%s'\n", bad[i]);
        CHECK_INT(rc, ERR_INVAL);
    }
    /* Cut short inside its fields: not a line. */
    const char *whole =
        "2026-01-02T03:04:05.678Z seq=5 version=1 instance=1 stream=stdout req=ab x";
    for (size_t n = 0; n < strlen(whole) - 1; n++)
        CHECK_INT(fnlog_parse_line(whole, n, &r), ERR_INVAL);
}

static void append(fnlog *l, uint64_t instance, const char *req, const char *text)
{
    fnlog_tag tag = {.instance = instance, .version = 1, .stream = FNLOG_STDOUT, .req = req};
    fnlog_append(l, &tag, text, strlen(text));
}

static void count_line(const fnlog_line *line, void *data)
{
    (*(int *)data)++;
}

static void filters_and_next(void)
{
    fnlog *l = fnlog_open("filters");
    append(l, 1, "a", "one");
    append(l, 2, "b", "two");
    append(l, 1, "a", "three");
    append(l, 2, "", "four");
    int n = 0;
    CHECK_INT(fnlog_each(l, 0, 100, NULL, count_line, &n), 4);
    CHECK_INT(n, 4);
    fnlog_filter byreq = {.req = "a"};
    n = 0;
    CHECK_INT(fnlog_each(l, 0, 100, &byreq, count_line, &n), 4);
    CHECK_INT(n, 2);
    fnlog_filter byinst = {.has_instance = 1, .instance = 2};
    n = 0;
    /* Limited: the next call starts just before the line that did not fit. */
    CHECK_INT(fnlog_each(l, 1, 1, &byinst, count_line, &n), 3);
    CHECK_INT(n, 1);
    n = 0;
    CHECK_INT(fnlog_each(l, 3, 1, &byinst, count_line, &n), 4);
    CHECK_INT(n, 1);
    /* limit 0: where the log ends, nothing else. */
    n = 0;
    CHECK_INT(fnlog_each(l, 0, 0, NULL, count_line, &n), 4);
    CHECK_INT(n, 0);
    CHECK(fnlog_has_after(l, 2, &byreq));
    CHECK(!fnlog_has_after(l, 3, &byreq));
    /* A reader ahead of the log is sent back to its end. */
    CHECK_INT(fnlog_each(l, 99, 10, NULL, count_line, &n), 4);
    /* One log per name. */
    fnlog *again = fnlog_open("filters");
    CHECK(again == l);
    fnlog_unref(again);
    fnlog_unref(l);
}

static void fills_again_from_its_files(void)
{
    char dir[] = "/tmp/spate-test-fnlog-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    fnlog_set_files(dir, 4096);
    CHECK(fnlog_find("f") == NULL); /* neither open nor on disk */
    fnlog *l = fnlog_open("f");
    char text[64];
    for (int i = 0; i < 200; i++) { /* past the file's size: rotated once or more */
        snprintf(text, sizeof text, "line %d", i);
        append(l, 1, "r", text);
        fnlog_flush(l);
    }
    fnlog_unref(l);
    char path[128];
    snprintf(path, sizeof path, "%s/f.log.1", dir);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    l = fnlog_find("f");
    CHECK(l != NULL);
    if (l) {
        CHECK_INT(fnlog_next_seq(l), 201);
        fnlog_filter f = {.req = "r"};
        int n = 0;
        fnlog_each(l, 0, SPATE_LOG_LINES_KEPT, &f, count_line, &n);
        CHECK(n > 40 && n < 200); /* what two files of 4 KiB hold */
        fnlog_unref(l);
    }
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
    fnlog_set_files(NULL, SPATE_LOG_FILE_MAX);
}

int main(void)
{
    RUN(parses_both_formats);
    RUN(refuses_what_is_neither);
    RUN(filters_and_next);
    RUN(fills_again_from_its_files);
    return TEST_RESULT();
}
