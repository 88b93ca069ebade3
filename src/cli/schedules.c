/*
 * schedules.c - spate schedule add | ls | status | rm: the /v1/schedules
 * routes (docs/api.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* "/v1/schedules/NAME", NAME escaped. */
static void schedule_path(char *out, size_t cap, const char *name)
{
    cli_name_path(out, cap, "/v1/schedules/", name, "");
}

static const cli_opt add_opts[] = {
    {"to", 0, OPT_TEXT, NULL, NULL, "TOPIC", "publish each run's message to TOPIC"},
    {"function", 0, OPT_TEXT, NULL, NULL, "F",
     "run function F: each run is published to the topic schedule.NAME, which a\n"
     "trigger to F reads (made now, removed with the schedule)"},
    {"payload", 0, OPT_TEXT, NULL, NULL, "P",
     "the message of each run: text, @FILE or - (standard input); default\n"
     "{\"schedule\":NAME,\"time\":ISO8601}"},
    {"tz", 0, OPT_TEXT, NULL, NULL, "ZONE",
     "read the cron fields in ZONE: UTC (the default), a fixed offset like\n"
     "+02:00, or a named zone like Europe/Paris"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static void print_time(const cJSON *o, const char *key)
{
    const char *t = cli_json_str(o, key);
    printf("  %-20s", *t ? t : "-");
}

static void print_line(const cJSON *s)
{
    const char *fn = cli_json_str(s, "function");
    char target[200];
    if (*fn)
        snprintf(target, sizeof target, "function %s", fn);
    else
        snprintf(target, sizeof target, "topic %s", cli_json_str(s, "topic"));
    printf("%-20s  %-18s  %-7s", cli_json_str(s, "name"), cli_json_str(s, "expression"),
           cli_json_str(s, "tz"));
    print_time(s, "next_fire");
    print_time(s, "last_fire");
    printf("  %s\n", target);
}

static int schedule_ls(const cli *c, cli_args *a)
{
    answer r;
    int rc;
    cJSON *doc = cli_call_json(c, "schedule ls", "GET", "/v1/schedules", NULL, &r, &rc);
    if (!doc) return rc;
    printf("%-20s  %-18s  %-7s  %-20s  %-20s  %s\n", "NAME", "EXPRESSION", "TZ", "NEXT (UTC)",
           "LAST (UTC)", "TARGET");
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "schedules")) print_line(s);
    return cli_finish(&r, doc, 0);
}

static void print_status(const cJSON *s)
{
    const char *keys[] = {"name",      "expression", "tz",      "topic",     "function",
                          "next_fire", "last_fire",  "created", "last_error"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = cli_json_str(s, keys[i]);
        printf("%-11s ", keys[i]);
        cli_put_text(stdout, *v ? v : "-");
        printf("\n");
    }
    printf("%-11s %.0f since start (%.0f failed)\n", "fired", cli_json_num(s, "fired"),
           cli_json_num(s, "failed"));
    printf("%-11s %.0f caught up, %.0f skipped\n", "missed", cli_json_num(s, "caught_up"),
           cli_json_num(s, "skipped"));
    /* In a cluster: the node that fires it. */
    const char *holder = cli_json_str(s, "lease_holder");
    if (holder && *holder) printf("%-11s node %s (holds its lease)\n", "fired by", holder);
}

static int schedule_status(const cli *c, cli_args *a)
{
    char path[512];
    schedule_path(path, sizeof path, a->argv[0]);
    answer r;
    int rc;
    cJSON *doc = cli_call_json(c, "schedule status", "GET", path, NULL, &r, &rc);
    if (!doc) return rc;
    print_status(doc);
    return cli_finish(&r, doc, 0);
}

static int schedule_add(const cli *c, cli_args *a)
{
    const char *to = cli_value(a, "to"), *fn = cli_value(a, "function");
    const char *payload = cli_value(a, "payload"), *tz = cli_value(a, "tz");
    if (!to == !fn) cli_usage(c, "schedule add needs one of --to TOPIC and --function F");
    cJSON *body = cJSON_CreateObject();
    if (!body) return cli_fail(c, CLI_FAILED, "io_error", "out of memory");
    cJSON_AddStringToObject(body, "expression", a->argv[1]);
    if (to) cJSON_AddStringToObject(body, "topic", to);
    if (fn) cJSON_AddStringToObject(body, "function", fn);
    if (tz) cJSON_AddStringToObject(body, "tz", tz);
    if (payload) {
        buf p;
        buf_init(&p, CLI_INPUT_MAX);
        int rc = cli_read_payload(c, payload, &p);
        if (rc || buf_append(&p, "", 1)) {
            buf_free(&p);
            cJSON_Delete(body);
            return rc ? rc : cli_fail(c, CLI_FAILED, "io_error", "out of memory");
        }
        cJSON_AddStringToObject(body, "payload", p.data);
        buf_free(&p);
    }
    char path[512];
    schedule_path(path, sizeof path, a->argv[0]);
    answer r;
    int rc;
    cJSON *doc = cli_call_json(c, "schedule add", "PUT", path, body, &r, &rc);
    if (!doc) return rc;
    const char *next = cli_json_str(doc, "next_fire");
    printf("%s schedule %s; next run %s\n", r.status == 200 ? "replaced" : "added", a->argv[0],
           *next ? next : "never");
    return cli_finish(&r, doc, 0);
}

static int schedule_rm(const cli *c, cli_args *a)
{
    char path[512];
    schedule_path(path, sizeof path, a->argv[0]);
    answer r;
    int rc = cli_request(c, "DELETE", path, NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status >= 300) return cli_finish(&r, NULL, cli_answer_error(c, "schedule rm failed", &r));
    if (!c->json)
        printf("removed schedule %s\n", a->argv[0]);
    else
        printf("{\"removed\":true}\n");
    return cli_finish(&r, NULL, 0);
}

const cli_cmd cli_schedule_cmds[] = {
    {"schedule add", "NAME EXPRESSION", 2, 2, add_opts, "publish or run on a schedule",
     "Publish a message to a topic (--to), or run a function (--function), when\n"
     "EXPRESSION says: five cron fields (minute hour day-of-month month\n"
     "day-of-week, as cron reads them: 1,5 1-5 */15 jan mon), @hourly, @daily,\n"
     "@weekly, @monthly, @yearly, or @every DURATION (30s, 5m, 1h; at least 1s).\n"
     "A schedule of that name is replaced. Runs missed while spated was down are\n"
     "caught up at start (spated --catch-up, default 1) and the rest skipped.",
     schedule_add},
    {"schedule ls", "", 0, 0, NULL, "list schedules",
     "List schedules: expression, zone, next and last run, and what each runs.", schedule_ls},
    {"schedule status", "NAME", 1, 1, NULL, "a schedule's next and last run, missed runs",
     "A schedule: its next and last run, runs since spated started, and the runs\n"
     "missed while it was down that were caught up or skipped.",
     schedule_status},
    {"schedule rm", "NAME", 1, 1, NULL, "remove a schedule",
     "Remove a schedule (and the trigger its --function made).", schedule_rm},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
