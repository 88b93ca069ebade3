/*
 * topics.c - the commands about events: publish, topic ls|stats|rm|purge|
 * set, trigger add|set|ls|rm, and dlq ls|redrive.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli/cli.h"

/* --- publish --------------------------------------------------------------------------- */

static const cli_opt publish_opts[] = {
    {"key", 0, OPT_TEXT, NULL, NULL, "K", "the message key (ordered triggers keep a key's order)"},
    {"key-field", 0, OPT_TEXT, NULL, NULL, "F", "the key is this field of each JSON message"},
    {"lines", 0, OPT_FLAG, NULL, NULL, NULL,
     "one message per line of standard input (or of @FILE)"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static int cmd_publish(const cli *c, cli_args *a)
{
    const char *topic = a->argv[0], *payload = a->argc > 1 ? a->argv[1] : NULL;
    const char *key = cli_value(a, "key"), *field = cli_value(a, "key-field");
    int lines = cli_value(a, "lines") != NULL;
    if (key && field) cli_usage(c, "give --key or --key-field, not both");
    /* No payload and a person at the terminal: they meant to give one (an
     * empty message is published only when asked for, with ""). */
    if (!payload && !lines && isatty(STDIN_FILENO))
        cli_usage(c, "publish needs a PAYLOAD: give it as an argument (\"\" for an empty "
                     "message), '@FILE' to read it from a file, '-' to read it from standard "
                     "input, or --lines for one message per line");
    if (lines && payload && strcmp(payload, "-") != 0 && (payload[0] != '@' || payload[1] == '@'))
        cli_usage(c, "--lines reads standard input or @FILE, not a PAYLOAD argument");
    buf body;
    int rc = 0;
    if (payload || lines)
        rc = cli_read_payload(c, payload ? payload : "-", &body);
    else
        buf_init(&body, 0); /* no PAYLOAD, standard input not a terminal: an empty message */
    if (rc) return rc;
    char hkey[SPATE_KEY_MAX + 32], hfield[300];
    const char *extra[4] = {NULL};
    int n = 0;
    if (lines) extra[n++] = "Content-Type: application/x-ndjson";
    if (key) {
        snprintf(hkey, sizeof hkey, "Spate-Key: %s", key);
        extra[n++] = hkey;
    }
    if (field) {
        snprintf(hfield, sizeof hfield, "Spate-Key-Field: %s", field);
        extra[n++] = hfield;
    }
    char path[512];
    cli_topic_path(path, sizeof path, "/v1/topics/", topic, "/messages");
    answer r;
    rc = cli_request(c, "POST", path, body.data ? body.data : "", body.len, extra, &r);
    buf_free(&body);
    if (rc) return rc;
    if (r.status != 202) return cli_finish(&r, NULL, cli_answer_error(c, "publish failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, "publish", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    double count = cli_json_num(doc, "published"), first = cli_json_num(doc, "first_seq");
    char what[48];
    cli_plural(count, "message", "messages", what, sizeof what);
    if (first > 0) /* a cluster's topics do not say */
        printf("published %s to %s (seq %.0f to %.0f)\n", what, topic, first,
               cli_json_num(doc, "last_seq"));
    else
        printf("published %s to %s\n", what, topic);
    return cli_finish(&r, doc, 0);
}

/* --- trigger --------------------------------------------------------------------------- */

/* ", batches of up to 100 (window 50 ms), sqs events, item failures": what
 * a trigger that does not take one raw message per call does instead. */
static void print_batching(const cJSON *t)
{
    double size = cli_json_num(t, "batch_size"), window = cli_json_num(t, "batch_window_ms");
    if (size > 1) printf(", batches of up to %.0f", size);
    if (size > 1 && window > 0) printf(" (window %.0f ms)", window);
    if (strcmp(cli_json_str(t, "event_format"), "sqs") == 0) printf(", sqs events");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "report_batch_item_failures")))
        printf(", batch item failures reported");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "paused"))) printf(", paused");
}

static void print_trigger_line(const cJSON *t)
{
    /* NAME:Q when the trigger invokes a version or an alias. */
    char function[160];
    const char *q = cli_json_str(t, "qualifier");
    snprintf(function, sizeof function, "%s%s%s", cli_json_str(t, "function"), q[0] ? ":" : "", q);
    printf("%-20s %-20s %8.0f %8.0f %8.0f %9.0f %6s %8.0f  %s", cli_json_str(t, "topic"), function,
           cli_json_num(t, "depth"), cli_json_num(t, "in_flight"), cli_json_num(t, "retrying"),
           cli_json_num(t, "dead_lettered"),
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "ordered")) ? "yes" : "no",
           cli_json_num(t, "deadline_ms"), cli_json_str(t, "dlq"));
    print_batching(t);
    printf("\n");
}

static void print_trigger_header(void)
{
    printf("%-20s %-20s %8s %8s %8s %9s %6s %8s  %s\n", "TOPIC", "FUNCTION", "DEPTH", "INFLIGHT",
           "RETRYING", "DEADLTRD", "ORDER", "DEADLINE", "DLQ");
}

/* A page of trigger ls, the most the server gives; and how many pages at
 * most (10 million triggers). */
#define TRIGGER_LS_PAGE 1000
#define TRIGGER_LS_PAGES_MAX 10000

/* A page of triggers, added to the list gathered. */
static int take_triggers(cJSON *doc, void *list)
{
    cli_json_take_items(doc, "triggers", list);
    return 0;
}

/* Every trigger, page by page (GET /v1/triggers?limit=&after=, following
 * "next"), in one document of the answer's shape: 0 with *out (caller
 * owns; cJSON_Delete), else the exit status after saying why (what names
 * the command). */
static int all_triggers(const cli *c, const char *what, cJSON **out)
{
    cJSON *all = cJSON_CreateObject();
    cJSON *list = all ? cJSON_AddArrayToObject(all, "triggers") : NULL;
    if (!list) {
        cJSON_Delete(all);
        fprintf(stderr, "spate: %s: out of memory\n", what);
        return CLI_FAILED;
    }
    int rc = cli_each_page(c, "/v1/triggers", what, what, TRIGGER_LS_PAGE, TRIGGER_LS_PAGES_MAX,
                           take_triggers, list);
    if (rc) {
        cJSON_Delete(all);
        return rc;
    }
    cJSON_AddNullToObject(all, "next");
    *out = all;
    return 0;
}

static int trigger_ls(const cli *c, cli_args *a)
{
    (void)a;
    cJSON *doc;
    int rc = all_triggers(c, "trigger ls failed", &doc);
    if (rc) return rc;
    if (c->json) {
        char *text = cJSON_PrintUnformatted(doc);
        if (text) printf("%s\n", text);
        free(text);
    } else {
        print_trigger_header();
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "triggers"))
            print_trigger_line(t);
    }
    cJSON_Delete(doc);
    return 0;
}

/* "/v1/triggers/TOPIC/FUNCTION" + suffix, both escaped; FUNCTION may be
 * NAME:VERSION or NAME:ALIAS, whose ':' goes unescaped (as for invoke). */
static void trigger_path(char *out, size_t cap, const char *topic, const char *function,
                         const char *suffix)
{
    cli_remember_name(function);
    char name[256];
    snprintf(name, sizeof name, "%s", function);
    char *colon = strchr(name, ':');
    if (colon) *colon = '\0';
    char *ft = curl_easy_escape(NULL, name, 0);
    char *qt = colon ? curl_easy_escape(NULL, colon + 1, 0) : NULL;
    char tail[9 * KIB];
    snprintf(tail, sizeof tail, "/%s%s%s%s", ft ? ft : "", colon ? ":" : "", qt ? qt : "", suffix);
    curl_free(ft);
    curl_free(qt);
    cli_topic_path(out, cap, "/v1/triggers/", topic, tail);
}

static int trigger_rm(const cli *c, cli_args *a)
{
    char path[1024];
    trigger_path(path, sizeof path, a->argv[0], a->argv[1], "");
    answer r;
    int rc = cli_request(c, "DELETE", path, NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status >= 300) return cli_finish(&r, NULL, cli_answer_error(c, "trigger rm failed", &r));
    if (!c->json)
        printf("removed trigger %s -> %s\n", a->argv[0], a->argv[1]);
    else
        printf("{\"removed\":true}\n");
    return cli_finish(&r, NULL, 0);
}

/* trigger add and trigger set: PUT with the options as parameters (set:
 * update=true, which changes what is given and keeps the rest). */
static int trigger_put(const cli *c, cli_args *a, int set)
{
    /* NAME:QUALIFIER is a change of its own (what the trigger invokes). */
    if (set && !a->query.len && !strchr(a->argv[1], ':'))
        cli_usage(c, "trigger set needs an option to change");
    char path[10 * KIB];
    buf q;
    buf_init(&q, 9 * KIB);
    if (set) cli_add_param(&q, "update", "true");
    if (a->query.len) buf_printf(&q, "%s%s", q.len ? "&" : "?", a->query.data + 1);
    trigger_path(path, sizeof path, a->argv[0], a->argv[1], q.data ? q.data : "");
    buf_free(&q);
    answer r;
    int rc = cli_request(c, "PUT", path, "", 0, NULL, &r);
    if (rc) return rc;
    if (r.status >= 300)
        return cli_finish(
            &r, NULL, cli_answer_error(c, set ? "trigger set failed" : "trigger add failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, set ? "trigger set" : "trigger add", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    char attempts[48];
    printf("trigger %s -> %s%s: up to %s, dead letters to %s%s", a->argv[0], a->argv[1],
           set ? " changed" : "",
           cli_plural(cli_json_num(doc, "max_attempts"), "attempt", "attempts", attempts,
                      sizeof attempts),
           cli_json_str(doc, "dlq"),
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "ordered")) ? ", ordered by key"
                                                                          : "");
    if (cli_json_num(doc, "deadline_ms") > 0)
        printf(", deadline %.0f ms", cli_json_num(doc, "deadline_ms"));
    if (cli_json_num(doc, "max_concurrency") > 0)
        printf(", at most %.0f at once", cli_json_num(doc, "max_concurrency"));
    print_batching(doc);
    printf("\n");
    return cli_finish(&r, doc, 0);
}

static int trigger_add(const cli *c, cli_args *a)
{
    return trigger_put(c, a, 0);
}

static int trigger_set(const cli *c, cli_args *a)
{
    return trigger_put(c, a, 1);
}

static const cli_opt trigger_opts[] = {
    {"max-attempts", 0, OPT_NUMBER, "max_attempts", NULL, "N",
     "deliveries of a message before it is a dead letter\n(default " CLI_STR(
         SPATE_MAX_ATTEMPTS_DEFAULT) ")"},
    {"dlq", 0, OPT_TEXT, "dlq", NULL, "TOPIC", "where dead letters go (default TOPIC.dlq)"},
    {"ordered", 0, OPT_FLAG, "ordered", "true", NULL, "one message of a key at a time, in order"},
    {"no-ordered", 0, OPT_FLAG, "ordered", "false", NULL, "messages of a key in parallel"},
    {"deadline", 0, OPT_NUMBER, "deadline", NULL, "MS",
     "a message should be done this long after its publish;\nthe autoscaler sizes for it "
     "(0: none)"},
    {"max-concurrency", 0, OPT_NUMBER, "max_concurrency", NULL, "N",
     "invocations of this trigger at once at most (0: no limit)"},
    {"batch-size", 0, OPT_NUMBER, "batch_size", NULL, "N",
     "messages per invocation at most, 1 to " CLI_STR(
         SPATE_BATCH_SIZE_MAX) " (default 1);\n"
                               "over 1: exec functions only"},
    {"batch-window", 0, OPT_NUMBER, "batch_window", NULL, "MS",
     "wait up to this long for a batch to fill (0 to " CLI_STR(SPATE_BATCH_WINDOW_MAX_MS) ")"},
    {"event-format", 0, OPT_TEXT, "event_format", NULL, "raw|sqs",
     "raw: the message (a JSON array of them in batches);\nsqs: Lambda's SQS event"},
    {"report-batch-item-failures", 0, OPT_FLAG, "report_batch_item_failures", "true", NULL,
     "retry only the messages the answer's batchItemFailures\nnames"},
    {"no-report-batch-item-failures", 0, OPT_FLAG, "report_batch_item_failures", "false", NULL,
     "a successful call acknowledges its whole batch"},
    {"paused", 0, OPT_FLAG, "paused", "true", NULL,
     "run nothing: messages wait (on a queue, for ReceiveMessage)"},
    {"no-paused", 0, OPT_FLAG, "paused", "false", NULL, "run again"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

/* --- topic ----------------------------------------------------------------------------- */

/* A topic's retention as a few words: "none", "7d, 64 MiB, 1000 messages". */
static void format_retention(const cJSON *r, char *out, size_t cap)
{
    double age = cli_json_num(r, "max_age_ms"), bytes = cli_json_num(r, "max_bytes"),
           msgs = cli_json_num(r, "max_messages");
    size_t n = 0;
    out[0] = '\0';
    if (age > 0) {
        static const struct {
            const char *unit;
            double ms;
        } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
        size_t i = 0;
        while (i + 1 < sizeof units / sizeof units[0] &&
               (age < units[i].ms || (uint64_t)age % (uint64_t)units[i].ms))
            i++;
        n += (size_t)snprintf(out + n, cap - n, "%.0f%s", age / units[i].ms, units[i].unit);
    }
    if (bytes > 0 && n < cap) {
        /* As --max-bytes takes it: 1G shows as 1 GiB, not 1073741824 bytes. */
        static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};
        uint64_t b = (uint64_t)bytes, scale = (uint64_t)1 << 40;
        size_t i = 0;
        while (i < 4 && (b < scale || b % scale)) {
            i++;
            scale >>= 10;
        }
        if (i < 4)
            n += (size_t)snprintf(out + n, cap - n, "%s%llu %s", n ? ", " : "",
                                  (unsigned long long)(b / scale), units[i]);
        else
            n += (size_t)snprintf(out + n, cap - n, "%s%.0f bytes", n ? ", " : "", bytes);
    }
    if (msgs > 0 && n < cap)
        n += (size_t)snprintf(out + n, cap - n, "%s%.0f message%s", n ? ", " : "", msgs,
                              msgs == 1 ? "" : "s");
    if (!n) snprintf(out, cap, "none");
}

/* "a -> f, b -> g" of an array of {topic, function}. */
static void format_refs(const cJSON *arr, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) if (n < cap) n +=
        (size_t)snprintf(out + n, cap - n, "%s%s -> %s", n ? ", " : "", cli_json_str(e, "topic"),
                         cli_json_str(e, "function"));
}

/* Every topic, page by page (GET /v1/topics?limit=&after=, following
 * "next"): a table, or with --json one document of them all in the
 * answer's shape. */
/* A page of topic ls, the most the server gives; and how many pages at
 * most (10 million topics, SPATE_TOPICS_CEILING). */
#define TOPIC_LS_PAGE 1000
#define TOPIC_LS_PAGES_MAX 10000

/* What topic_ls keeps across its pages. */
typedef struct topic_walk {
    cJSON *all, *all_topics; /* with --json: the one document */
    int header;              /* the table's header printed */
} topic_walk;

static int topic_page(cJSON *doc, void *data)
{
    topic_walk *w = data;
    if (w->all) {
        cli_json_take_items(doc, "topics", w->all_topics);
        return 0;
    }
    if (!w->header++)
        printf("%-24s %8s %8s %10s %8s %10s %8s %8s  %s\n", "TOPIC", "DEPTH", "INFLIGHT", "OLDEST",
               "STORED", "BYTES", "DEADLTRD", "TRIGGERS", "RETENTION");
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "topics"))
    {
        char ret[128];
        format_retention(cJSON_GetObjectItemCaseSensitive(t, "retention"), ret, sizeof ret);
        printf("%-24s %8.0f %8.0f %8.1f s %8.0f %10.0f %8.0f %8d  %s\n", cli_json_str(t, "name"),
               cli_json_num(t, "depth"), cli_json_num(t, "in_flight"),
               cli_json_num(t, "oldest_age_s"), cli_json_num(t, "stored"), cli_json_num(t, "bytes"),
               cli_json_num(t, "dead_lettered"),
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "triggers")), ret);
    }
    return 0;
}

static int topic_ls(const cli *c, cli_args *a)
{
    (void)a;
    topic_walk w = {0};
    w.all = c->json ? cJSON_CreateObject() : NULL;
    w.all_topics = w.all ? cJSON_AddArrayToObject(w.all, "topics") : NULL;
    int rc = cli_each_page(c, "/v1/topics", "topic ls failed", "topic ls", TOPIC_LS_PAGE,
                           TOPIC_LS_PAGES_MAX, topic_page, &w);
    if (!rc && w.all) {
        cJSON_AddNullToObject(w.all, "next");
        char *text = cJSON_PrintUnformatted(w.all);
        if (text) printf("%s\n", text);
        free(text);
    }
    cJSON_Delete(w.all);
    return rc;
}

static int topic_stats(const cli *c, cli_args *a)
{
    char path[512];
    cli_topic_path(path, sizeof path, "/v1/topics/", a->argv[0], "");
    answer r;
    int rc = cli_request(c, "GET", path, NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status != 200) return cli_finish(&r, NULL, cli_answer_error(c, "topic stats failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, "topic stats", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    char ret[128], refs[1024];
    format_retention(cJSON_GetObjectItemCaseSensitive(doc, "retention"), ret, sizeof ret);
    printf("%-14s %s\n", "topic", cli_json_str(doc, "name"));
    printf("%-14s %.0f\n", "depth", cli_json_num(doc, "depth"));
    printf("%-14s %.0f\n", "in flight", cli_json_num(doc, "in_flight"));
    printf("%-14s %.3f s\n", "oldest age", cli_json_num(doc, "oldest_age_s"));
    printf("%-14s %.0f\n", "published", cli_json_num(doc, "published"));
    printf("%-14s %.0f\n", "acknowledged", cli_json_num(doc, "acknowledged"));
    printf("%-14s %.0f\n", "dead-lettered", cli_json_num(doc, "dead_lettered"));
    printf("%-14s %.0f (%.0f bytes)\n", "stored", cli_json_num(doc, "stored"),
           cli_json_num(doc, "bytes"));
    const cJSON *trs = cJSON_GetObjectItemCaseSensitive(doc, "triggers");
    printf("%-14s %s%s\n", "retention", ret,
           strcmp(ret, "none") != 0 && cJSON_GetArraySize(trs) > 0
               ? " (paused: triggers read it, and keep what they have not settled)"
               : "");
    format_refs(cJSON_GetObjectItemCaseSensitive(doc, "dead_letter_topic_of"), refs, sizeof refs);
    if (refs[0]) printf("%-14s %s\n", "dead letters of", refs);
    if (cJSON_GetArraySize(trs) > 0) {
        printf("\n");
        print_trigger_header();
        const cJSON *t;
        cJSON_ArrayForEach(t, trs) print_trigger_line(t);
    }
    return cli_finish(&r, doc, 0);
}

static const cli_opt topic_rm_opts[] = {
    {"force", 0, OPT_FLAG, "force", "true", NULL, "remove the triggers that read it first"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static int topic_rm(const cli *c, cli_args *a)
{
    const char *topic = a->argv[0];
    char path[512];
    cli_topic_path(path, sizeof path, "/v1/topics/", topic, a->query.data ? a->query.data : "");
    answer r;
    int rc = cli_request(c, "DELETE", path, NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status != 200) return cli_finish(&r, NULL, cli_answer_error(c, "topic rm failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, "topic rm", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "removed_triggers"))
        printf("removed trigger %s -> %s\n", cli_json_str(t, "topic"), cli_json_str(t, "function"));
    char msgs[48];
    printf("removed topic %s and its %s\n", topic,
           cli_plural(cli_json_num(doc, "messages"), "message", "messages", msgs, sizeof msgs));
    char refs[1024];
    format_refs(cJSON_GetObjectItemCaseSensitive(doc, "dead_letter_topic_of"), refs, sizeof refs);
    if (refs[0])
        printf("note: it stays the dead-letter topic of %s; their next dead letter makes it "
               "again\n",
               refs);
    return cli_finish(&r, doc, 0);
}

static int topic_purge(const cli *c, cli_args *a)
{
    char path[512];
    cli_topic_path(path, sizeof path, "/v1/topics/", a->argv[0], "/purge");
    answer r;
    int rc = cli_request(c, "POST", path, "", 0, NULL, &r);
    if (rc) return rc;
    if (r.status != 200) return cli_finish(&r, NULL, cli_answer_error(c, "topic purge failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, "topic purge", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    char msgs[48];
    printf("purged %s from %s\n",
           cli_plural(cli_json_num(doc, "purged"), "message", "messages", msgs, sizeof msgs),
           a->argv[0]);
    return cli_finish(&r, doc, 0);
}

static const cli_opt topic_set_opts[] = {
    {"max-age", 0, OPT_DURATION, "max_age_ms", NULL, "DURATION",
     "keep messages this long: 90s, 30m, 12h, 7d (0: no limit)"},
    {"max-bytes", 0, OPT_SIZE, "max_bytes", NULL, "N",
     "keep this many bytes: 1048576, 64M, 1G (0: no limit)"},
    {"max-messages", 0, OPT_NUMBER, "max_messages", NULL, "N",
     "keep this many messages (0: no limit)"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static int topic_set(const cli *c, cli_args *a)
{
    if (!a->query.len) cli_usage(c, "topic set needs --max-age, --max-bytes or --max-messages");
    char path[5 * KIB];
    cli_topic_path(path, sizeof path, "/v1/topics/", a->argv[0], a->query.data);
    answer r;
    int rc = cli_request(c, "PUT", path, "", 0, NULL, &r);
    if (rc) return rc;
    if (r.status != 200) return cli_finish(&r, NULL, cli_answer_error(c, "topic set failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, "topic set", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    char ret[128];
    format_retention(cJSON_GetObjectItemCaseSensitive(doc, "retention"), ret, sizeof ret);
    printf("topic %s keeps: %s%s\n", a->argv[0], ret,
           cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "triggers")) > 0
               ? " (applied only while no trigger reads it)"
               : "");
    return cli_finish(&r, doc, 0);
}

/* --- dlq ------------------------------------------------------------------------------- */

/* A dead-letter topic that TOPIC stands for, and the triggers whose dead
 * letters it holds ("in -> f, in -> g"; empty when none says so). */
typedef struct dlq_target {
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    char of[512];
} dlq_target;

static void add_of(dlq_target *t, const cJSON *trigger)
{
    size_t n = strlen(t->of);
    if (n < sizeof t->of)
        snprintf(t->of + n, sizeof t->of - n, "%s%s -> %s", n ? ", " : "",
                 cli_json_str(trigger, "topic"), cli_json_str(trigger, "function"));
}

/* Asks the server which dead-letter topics TOPIC stands for: itself when a
 * trigger sends its dead letters there, else those of the triggers that read
 * it (each trigger's own --dlq); a topic with neither stands for TOPIC.dlq
 * if that exists (the default of a trigger since removed), else for itself.
 * 0 with *n set, or the exit status after saying why not. */
static int find_dlqs(const cli *c, const char *topic, dlq_target *out, int *n)
{
    *n = 0;
    answer r;
    cJSON *doc;
    int rc = all_triggers(c, "dlq: cannot list triggers", &doc);
    if (rc) return rc;
    const cJSON *t, *trs = cJSON_GetObjectItemCaseSensitive(doc, "triggers");
    cJSON_ArrayForEach(t, trs) if (strcmp(cli_json_str(t, "dlq"), topic) == 0)
    {
        if (!*n) snprintf(out[(*n)++].topic, sizeof out->topic, "%s", topic);
        add_of(&out[0], t);
    }
    if (*n) {
        cJSON_Delete(doc);
        return 0;
    }
    cJSON_ArrayForEach(t, trs)
    {
        if (strcmp(cli_json_str(t, "topic"), topic) != 0) continue;
        int i = 0;
        while (i < *n && strcmp(out[i].topic, cli_json_str(t, "dlq")) != 0) i++;
        if (i == *n && *n == SPATE_DLQ_TARGETS_SHOWN) continue;
        if (i == *n) snprintf(out[(*n)++].topic, sizeof out->topic, "%s", cli_json_str(t, "dlq"));
        add_of(&out[i], t);
    }
    cJSON_Delete(doc);
    if (*n) return 0;
    char name[SPATE_TOPIC_NAME_MAX + 8], path[1024];
    snprintf(name, sizeof name, "%s.dlq", topic);
    cli_topic_path(path, sizeof path, "/v1/topics/", name, "");
    int found = cli_request(c, "GET", path, NULL, 0, NULL, &r) == 0 && r.status == 200;
    buf_free(&r.body);
    snprintf(out[(*n)++].topic, sizeof out->topic, "%.128s", found ? name : topic);
    return 0;
}

/* How a target was found, for the user: " (dead letters of trigger in -> f)". */
static void describe_target(const dlq_target *t, const char *asked, char *out, size_t cap)
{
    if (t->of[0])
        snprintf(out, cap, " (the dead-letter topic of trigger%s %s)",
                 strchr(t->of, ',') ? "s" : "", t->of);
    else if (strcmp(t->topic, asked) != 0)
        snprintf(out, cap, " (no trigger reads %s now; %s is its default dead-letter topic)", asked,
                 t->topic);
    else
        snprintf(out, cap, " (no trigger reads it or sends it dead letters)");
}

static void print_all(const cli *c, cJSON *all)
{
    if (c->json) {
        char *text = cJSON_PrintUnformatted(all);
        if (text) printf("{\"dead_letter_topics\":%s}\n", text);
        free(text);
    }
    cJSON_Delete(all);
}

static int dlq_redrive(const cli *c, cli_args *args)
{
    const char *asked = args->argv[0];
    dlq_target t[SPATE_DLQ_TARGETS_SHOWN];
    int n, rc = find_dlqs(c, asked, t, &n);
    if (rc) return rc;
    cJSON *all = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        char path[512], how[700];
        describe_target(&t[i], asked, how, sizeof how);
        cli_topic_path(path, sizeof path, "/v1/topics/", t[i].topic, "/redrive");
        answer a;
        int one = cli_request(c, "POST", path, "", 0, NULL, &a);
        if (one) {
            rc = one;
            continue;
        }
        if (a.status == 404 && t[i].of[0]) {
            /* Named by a trigger, never written to: nothing to move. */
            if (!c->json) printf("no dead letters in %s%s\n", t[i].topic, how);
            cli_finish(&a, NULL, 0);
            continue;
        }
        if (a.status != 200) {
            char what[SPATE_TOPIC_NAME_MAX + 32];
            snprintf(what, sizeof what, "dlq redrive %.128s failed", t[i].topic);
            rc = cli_finish(&a, NULL, cli_answer_error(c, what, &a));
            continue;
        }
        cJSON *doc = cli_answer_json(c, "dlq redrive", &a);
        if (!doc) {
            rc = cli_finish(&a, NULL, CLI_FAILED);
            continue;
        }
        double moved = cli_json_num(doc, "redriven");
        char msgs[48];
        if (!c->json)
            printf("redrove %s from %s%s to their source topics\n",
                   cli_plural(moved, "message", "messages", msgs, sizeof msgs), t[i].topic, how);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "topic", t[i].topic);
        cJSON_AddNumberToObject(o, "redriven", moved);
        cJSON_AddItemToArray(all, o);
        cli_finish(&a, doc, 0);
    }
    print_all(c, all);
    return rc;
}

/* A message's attributes (from an event source), on a line under it. */
static void print_attributes(const cJSON *m)
{
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(m, "attributes");
    if (!cJSON_IsObject(at)) return;
    printf("         from source %s, upstream id %s", cli_json_str(at, "source"),
           cli_json_str(at, "upstream_id"));
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(at, "upstream_ts");
    if (cJSON_IsNumber(ts)) printf(", upstream time %.0f ms", ts->valuedouble);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(at, "redelivered"))) printf(", redelivered");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(at, "headers");
    if (cJSON_IsObject(h)) {
        char *text = cJSON_PrintUnformatted(h);
        if (text) {
            printf(", headers ");
            cli_put_text(stdout, text);
            free(text);
        }
    }
    printf("\n");
}

static int dlq_ls(const cli *c, cli_args *args)
{
    const char *asked = args->argv[0];
    dlq_target t[SPATE_DLQ_TARGETS_SHOWN];
    int n, rc = find_dlqs(c, asked, t, &n);
    if (rc) return rc;
    cJSON *all = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        char path[512], how[700];
        describe_target(&t[i], asked, how, sizeof how);
        cli_topic_path(path, sizeof path, "/v1/topics/", t[i].topic, "/messages?limit=1000");
        answer a;
        int one = cli_request(c, "GET", path, NULL, 0, NULL, &a);
        if (one) {
            rc = one;
            continue;
        }
        cJSON *doc = NULL;
        if (a.status == 200) {
            doc = cli_answer_json(c, "dlq ls", &a);
            if (!doc) rc = CLI_FAILED;
        } else if (!(a.status == 404 && t[i].of[0])) {
            char what[SPATE_TOPIC_NAME_MAX + 32];
            snprintf(what, sizeof what, "dlq ls %.128s failed", t[i].topic);
            rc = cli_finish(&a, NULL, cli_answer_error(c, what, &a));
            continue;
        }
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(doc, "messages"), *m;
        if (c->json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "topic", t[i].topic);
            cJSON_AddItemToObject(o, "messages",
                                  msgs ? cJSON_Duplicate(msgs, 1) : cJSON_CreateArray());
            cJSON_AddItemToArray(all, o);
            cli_finish(&a, doc, 0);
            continue;
        }
        int dead = 0;
        cJSON_ArrayForEach(m, msgs) dead += *cli_json_str(m, "source") != '\0';
        if (i) printf("\n");
        printf("%s%s: %d dead letter%s\n", t[i].topic, how, dead, dead == 1 ? "" : "s");
        if (dead) {
            printf("%-8s %-16s %-8s %-20s %-30s %s\n", "SEQ", "SOURCE", "ATTEMPTS", "KEY",
                   "PAYLOAD", "LAST ERROR");
            cJSON_ArrayForEach(m, msgs)
            {
                if (!*cli_json_str(m, "source")) continue; /* not a dead letter */
                const char *payload = cli_json_str(m, "payload");
                int binary = cJSON_HasObjectItem(m, "payload_base64");
                printf("%-8.0f %-16s %-8.0f %-20.20s %-30.30s %s\n", cli_json_num(m, "seq"),
                       cli_json_str(m, "source"), cli_json_num(m, "attempts"),
                       cli_json_str(m, "key"),
                       binary     ? "(binary)"
                       : *payload ? payload
                                  : "(empty)",
                       cli_json_str(m, "error"));
                print_attributes(m);
            }
        }
        cli_finish(&a, doc, 0);
    }
    print_all(c, all);
    return rc;
}

const cli_cmd cli_topic_cmds[] = {
    {"publish", "TOPIC [PAYLOAD | @FILE | -]", 1, 2, publish_opts, "publish a message to TOPIC",
     "Publish a message: PAYLOAD, the contents of FILE (@FILE; @@TEXT sends @TEXT),\n"
     "or standard input (-). With --lines, one message per line of standard input\n"
     "or of @FILE. Returns once the messages are durable. With no PAYLOAD and a\n"
     "terminal on standard input it publishes nothing and says what it expects;\n"
     "\"\" publishes an empty message.",
     cmd_publish},
    {"trigger add", "TOPIC FUNCTION", 2, 2, trigger_opts, "run FUNCTION for each message",
     "Run FUNCTION for each message of TOPIC. Refused when that trigger exists\n"
     "already: change it with trigger set. With --batch-size N an invocation\n"
     "takes up to N messages as one event (--event-format raw or sqs).",
     trigger_add},
    {"trigger set", "TOPIC FUNCTION", 2, 2, trigger_opts, "change a trigger (keep the rest)",
     "Change an existing trigger: what is given changes, everything else (dead-\n"
     "letter topic, order, attempts, deadline) stays. --deadline 0 and\n"
     "--max-concurrency 0 take the deadline or the limit away.",
     trigger_set},
    {"trigger ls", "", 0, 0, NULL, "list triggers",
     "List triggers: depth, in flight, retrying, dead letters, order, deadline and\n"
     "dead-letter topic of each.",
     trigger_ls},
    {"trigger rm", "TOPIC FUNCTION", 2, 2, NULL, "remove a trigger", "Remove a trigger.",
     trigger_rm},
    {"topic ls", "", 0, 0, NULL, "every topic, its depth and retention",
     "Every topic: depth, in flight, oldest age, messages and bytes stored, dead\n"
     "letters, triggers and retention.",
     topic_ls},
    {"topic stats", "TOPIC", 1, 1, NULL, "depth, in flight, oldest age of TOPIC",
     "Depth, in flight, oldest age and dead letters of a topic, its retention, and\n"
     "the triggers that read it or send it their dead letters.",
     topic_stats},
    {"topic rm", "TOPIC", 1, 1, topic_rm_opts, "delete a topic and its messages",
     "Delete a topic and its messages. Refused while a trigger reads it or sends it\n"
     "its dead letters (the error names them); --force removes the triggers that\n"
     "read it first, and says which.",
     topic_rm},
    {"topic purge", "TOPIC", 1, 1, NULL, "delete its messages (not in flight)",
     "Delete the messages of a topic but those in flight (their invocations finish\n"
     "as usual), and say how many; its triggers go on with what comes next.",
     topic_purge},
    {"topic set", "TOPIC", 1, 1, topic_set_opts, "retention while no trigger reads it",
     "Retention: how much a topic keeps while no trigger reads it (the oldest\n"
     "messages go first). 0 lifts a limit, and a limit not given stays. While a\n"
     "trigger reads the topic its limits are paused.",
     topic_set},
    {"dlq ls", "TOPIC", 1, 1, NULL, "the dead letters of TOPIC's triggers",
     "Dead letters of TOPIC: TOPIC itself when a trigger sends its dead letters\n"
     "there, else the --dlq topic of each trigger that reads TOPIC, else TOPIC.dlq\n"
     "if it exists, else TOPIC; the answer says which.",
     dlq_ls},
    {"dlq redrive", "TOPIC", 1, 1, NULL, "send dead letters back to their topics",
     "Send the dead letters of TOPIC (found as dlq ls finds them) back to their\n"
     "source topics. On a topic that holds no dead letters it is refused, and\n"
     "deletes nothing.",
     dlq_redrive},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
