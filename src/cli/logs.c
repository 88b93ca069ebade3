/*
 * logs.c - spate logs: what a function's processes wrote, and what
 * happened to them, from GET /v1/functions/NAME/logs (a long poll with
 * --follow).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cli/cli.h"

/* One line of GET .../logs: "TIME vV instance N req ID STREAM: TEXT". */
static void print_log_line(const cJSON *line)
{
    double ms = cli_json_num(line, "time_ms");
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char who[128];
    int n = 0;
    double version = cli_json_num(line, "version"), inst = cli_json_num(line, "instance");
    const char *req = cli_json_str(line, "request_id"), *stream = cli_json_str(line, "stream");
    if (version > 0) n += snprintf(who + n, sizeof who - (size_t)n, " v%.0f", version);
    if (inst > 0)
        n += snprintf(who + n, sizeof who - (size_t)n, " instance %.0f", inst);
    else
        n += snprintf(who + n, sizeof who - (size_t)n, " zygote");
    if (*req) n += snprintf(who + n, sizeof who - (size_t)n, " req %s", req);
    if (*stream && strcmp(stream, "unknown") != 0)
        snprintf(who + n, sizeof who - (size_t)n, " %s", stream);
    printf("%s.%03dZ", when, (int)((int64_t)ms % 1000));
    cli_put_text(stdout, who);
    fputs(": ", stdout);
    cli_put_text(stdout,
                 cli_json_str(line, "text")); /* the function's words: --json has them raw */
    putchar('\n');
}

/* Prints the lines of a logs answer, as text or (--json --follow) one JSON
 * object a line, as the answer holds them: a stream has no one document to
 * print. Returns the after= of the next request. */
static uint64_t print_log_lines(const cJSON *doc, uint64_t after, int json)
{
    const cJSON *line;
    cJSON_ArrayForEach(line, cJSON_GetObjectItemCaseSensitive(doc, "lines"))
    {
        if (json) {
            char *text = cJSON_PrintUnformatted(line);
            if (text) printf("%s\n", text);
            free(text);
        } else {
            print_log_line(line);
        }
        after = (uint64_t)cli_json_num(line, "seq");
    }
    fflush(stdout);
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next");
    return cJSON_IsNumber(next) ? (uint64_t)next->valuedouble : after;
}

/* n digits at *s, as a number; advances *s. -1 when they are not there. */
static int take_digits(const char **s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*s)++) {
        if (**s < '0' || **s > '9') return -1;
        v = v * 10 + (**s - '0');
    }
    return v;
}

/* A time, YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|+HH:MM|-HH:MM] (no zone: UTC,
 * as spate prints times), in ms since 1970. -1 when it is not one. */
static int64_t parse_when(const char *s)
{
    struct tm tm = {0};
    int ms = 0, offset_min = 0;
    int y = take_digits(&s, 4);
    if (y < 1970 || *s++ != '-') return -1;
    int mo = take_digits(&s, 2);
    if (mo < 1 || mo > 12 || *s++ != '-') return -1;
    int d = take_digits(&s, 2);
    if (d < 1 || d > 31) return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    if (*s == 'T' || *s == ' ') {
        s++;
        tm.tm_hour = take_digits(&s, 2);
        if (tm.tm_hour < 0 || tm.tm_hour > 23 || *s++ != ':') return -1;
        tm.tm_min = take_digits(&s, 2);
        if (tm.tm_min < 0 || tm.tm_min > 59) return -1;
        if (*s == ':') {
            s++;
            tm.tm_sec = take_digits(&s, 2);
            if (tm.tm_sec < 0 || tm.tm_sec > 60) return -1;
            if (*s == '.') {
                s++;
                for (int scale = 100; *s >= '0' && *s <= '9'; s++, scale /= 10)
                    ms += (*s - '0') * scale;
            }
        }
    }
    if (*s == 'Z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        int sign = *s++ == '-' ? -1 : 1;
        int h = take_digits(&s, 2);
        if (*s == ':') s++;
        int m = take_digits(&s, 2);
        if (h < 0 || h > 23 || m < 0 || m > 59) return -1;
        offset_min = sign * (h * 60 + m);
    }
    if (*s) return -1;
    return ((int64_t)timegm(&tm) - (int64_t)offset_min * 60) * 1000 + ms;
}

/* --since: a duration back from now (90s, 5m, 1h30m, 2d, 500ms) or a time. */
static int64_t parse_since(const cli *c, const char *arg)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *s = arg;
    int64_t back = 0;
    while (*s >= '0' && *s <= '9') {
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        size_t k = 0;
        while (k < sizeof units / sizeof units[0] &&
               (strncmp(end, units[k].unit, strlen(units[k].unit)) != 0 ||
                (end[strlen(units[k].unit)] >= 'a' && end[strlen(units[k].unit)] <= 'z')))
            k++;
        if (errno || k == sizeof units / sizeof units[0] ||
            n > 100LL * 365 * 86400000 / units[k].ms)
            break;
        back += n * units[k].ms;
        s = end + strlen(units[k].unit);
        if (!*s) {
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 - back;
        }
    }
    int64_t when = parse_when(arg);
    if (when < 0)
        cli_usage(c,
                  "--since takes a duration (90s, 5m, 1h30m, 2d) or a time "
                  "(2025-06-01T12:00:00Z), not '%s'",
                  arg);
    return when;
}

static const cli_opt logs_opts[] = {
    {"limit", 0, OPT_NUMBER, "limit", NULL, "N", "the newest N lines (default 100)"},
    {"since", 0, OPT_TEXT, NULL, NULL, "DURATION|TIME",
     "lines since 90s, 5m, 1h30m, 2d ago, or since a time\n(2025-06-01T12:00:00Z; no zone: UTC)"},
    {"request", 0, OPT_TEXT, "request", NULL, "ID", "the lines of one invocation"},
    {"instance", 0, OPT_TEXT, "instance", NULL, "N", "the lines of one instance"},
    {"follow", 'f', OPT_FLAG, NULL, NULL, NULL,
     "keep printing new lines; alone, only those written from now"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static int cmd_logs(const cli *c, cli_args *a)
{
    const char *name = a->argv[0];
    int follow = cli_value(a, "follow") != NULL;
    const char *limit = cli_value(a, "limit"), *request_id = cli_value(a, "request"),
               *instance = cli_value(a, "instance"), *since_arg = cli_value(a, "since");
    int64_t since = since_arg ? parse_since(c, since_arg) : -1;
    if (instance && (!*instance || strspn(instance, "0123456789") != strlen(instance)))
        cli_usage(c, "--instance takes an instance number, not '%s'", instance);
    buf filters;
    buf_init(&filters, 1024);
    if (since >= 0) buf_printf(&filters, "&since=%lld", (long long)since);
    if (instance) buf_printf(&filters, "&instance=%s", instance);
    if (request_id) {
        char *esc = curl_easy_escape(NULL, request_id, 0);
        buf_printf(&filters, "&request=%s", esc ? esc : "");
        curl_free(esc);
    }
    /* Everything kept since a time or of one request; else the newest 100.
     * --follow alone starts at the end: only lines written from now on. */
    int alone = !limit && since < 0 && !request_id && !instance;
    if (!limit) limit = since >= 0 || request_id ? "2000" : "100";
    if (follow && alone) limit = "0";
    uint64_t after = 0;
    int said_removed = 0, rc = 0;
    for (int first = 1;; first = 0) {
        char path[2048];
        buf suffix;
        buf_init(&suffix, 1536);
        /* Following: each request waits for new lines (a long poll). */
        buf_printf(&suffix, "/logs?limit=%s&after=%llu%s%.*s", first ? limit : "2000",
                   (unsigned long long)after, follow && !first ? "&wait=25000" : "",
                   (int)filters.len, filters.data ? filters.data : "");
        cli_function_path(path, sizeof path, name, suffix.data);
        buf_free(&suffix);
        answer r;
        if ((rc = cli_request(c, "GET", path, NULL, 0, NULL, &r))) break;
        if (r.status != 200) {
            rc = cli_finish(&r, NULL, cli_answer_error(c, "logs failed", &r));
            break;
        }
        if (c->json && !follow) {
            cli_print_raw(&r);
            rc = cli_finish(&r, NULL, 0);
            break;
        }
        cJSON *doc = cli_answer_json(c, "logs", &r);
        if (!doc) {
            rc = cli_finish(&r, NULL, CLI_FAILED);
            break;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "removed")) && !said_removed++)
            fprintf(stderr, "spate: function '%s' was removed; this is what its log kept\n", name);
        after = print_log_lines(doc, after, c->json);
        cli_finish(&r, doc, 0);
        if (!follow) break;
    }
    buf_free(&filters);
    return rc;
}

const cli_cmd cli_logs_cmds[] = {
    {"logs", "NAME", 1, 1, logs_opts, "what a function wrote, what happened",
     "What the function's processes wrote to stdout and stderr, and what happened\n"
     "to its instances (platform lines: killed by a signal, out of memory, timed\n"
     "out, failed to start), each line with its version, instance, request id and\n"
     "stream: the newest 100 lines (--limit), or with --since or --request all\n"
     "that are kept. A removed function's log is shown while its files remain.",
     cmd_logs},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
