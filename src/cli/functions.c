/*
 * functions.c - the commands about functions: deploy, config, invoke, ls,
 * status, rm, and nodes (where they run).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

/* The configuration options of deploy and config (config refuses --runtime). */
#define CONFIG_OPTS                                                                                \
    {"min",                                                                                        \
     0,                                                                                            \
     OPT_NUMBER,                                                                                   \
     "min",                                                                                        \
     NULL,                                                                                         \
     "N",                                                                                          \
     "instances kept warm (default " CLI_STR(SPATE_MIN_DEFAULT) ")"},                              \
        {"max",                                                                                    \
         0,                                                                                        \
         OPT_NUMBER,                                                                               \
         "max",                                                                                    \
         NULL,                                                                                     \
         "N",                                                                                      \
         "instances at most (default " CLI_STR(SPATE_MAX_DEFAULT) ")"},                            \
        {"timeout",                                                                                \
         0,                                                                                        \
         OPT_NUMBER,                                                                               \
         "timeout",                                                                                \
         NULL,                                                                                     \
         "MS",                                                                                     \
         "time an invocation may run (default " CLI_STR(SPATE_TIMEOUT_DEFAULT_MS) ")"},            \
        {"memory",                                                                                 \
         0,                                                                                        \
         OPT_NUMBER,                                                                               \
         "memory",                                                                                 \
         NULL,                                                                                     \
         "MB",                                                                                     \
         "memory of an instance (default " CLI_STR(SPATE_MEMORY_DEFAULT_MB) ")"},                  \
        {"keep-alive",                                                                             \
         0,                                                                                        \
         OPT_NUMBER,                                                                               \
         "keep_alive",                                                                             \
         NULL,                                                                                     \
         "MS",                                                                                     \
         "how long an idle instance stays (default " CLI_STR(SPATE_KEEP_ALIVE_DEFAULT_MS) ")"},    \
        {"queue",                                                                                  \
         0,                                                                                        \
         OPT_NUMBER,                                                                               \
         "queue",                                                                                  \
         NULL,                                                                                     \
         "N",                                                                                      \
         "invocations that may wait at max instances (default " CLI_STR(                           \
             SPATE_WAIT_QUEUE_DEFAULT) ")"},                                                       \
        {"cpu",                                                                                    \
         0,                                                                                        \
         OPT_NUMBER,                                                                               \
         "cpu",                                                                                    \
         NULL,                                                                                     \
         "MILLICORES",                                                                             \
         "CPU share of an instance (default: no limit; 0 lifts it)"},                              \
        {"tmp",                                                                                    \
         0,                                                                                        \
         OPT_NUMBER,                                                                               \
         "tmp",                                                                                    \
         NULL,                                                                                     \
         "MB",                                                                                     \
         "size of the instance's private /tmp (default " CLI_STR(SPATE_TMP_DEFAULT_MB) ")"},       \
        {"env", 0, OPT_KV, "env", NULL, "K=V", "set an environment variable (repeatable)"},        \
        {"env-file",                                                                               \
         0,                                                                                        \
         OPT_VARS_FILE,                                                                            \
         "env",                                                                                    \
         NULL,                                                                                     \
         "FILE",                                                                                   \
         "variables from FILE, KEY=VALUE a line"},                                                 \
        {"unset-env", 0, OPT_TEXT, "unset_env", NULL, "K", "remove a variable (repeatable)"},      \
        {"clear-env",                                                                              \
         0,                                                                                        \
         OPT_FLAG,                                                                                 \
         "clear_env",                                                                              \
         "true",                                                                                   \
         NULL,                                                                                     \
         "drop every variable before the --env options apply"},                                    \
        {"secret",                                                                                 \
         0,                                                                                        \
         OPT_KV,                                                                                   \
         "secret",                                                                                 \
         NULL,                                                                                     \
         "K=V",                                                                                    \
         "set a secret variable: in the environment, never shown"},                                \
        {"secret-file",                                                                            \
         0,                                                                                        \
         OPT_VARS_FILE,                                                                            \
         "secret",                                                                                 \
         NULL,                                                                                     \
         "FILE",                                                                                   \
         "secret variables from FILE, KEY=VALUE a line"},                                          \
        {"network", 0, OPT_FLAG, "network", "true", NULL, "instances may use the network"},        \
        {"prewarm",                                                                                \
         0,                                                                                        \
         OPT_FLAG,                                                                                 \
         "prewarm",                                                                                \
         "true",                                                                                   \
         NULL,                                                                                     \
         "keep the zygote running: started at deploy and start-up, never stopped when idle"},      \
        {"no-prewarm",                                                                             \
         0,                                                                                        \
         OPT_FLAG,                                                                                 \
         "prewarm",                                                                                \
         "false",                                                                                  \
         NULL,                                                                                     \
         "the zygote starts at the first invocation and stops when idle (the default)"},           \
        {"on-success",                                                                             \
         0,                                                                                        \
         OPT_TEXT,                                                                                 \
         "on_success",                                                                             \
         NULL,                                                                                     \
         "TOPIC",                                                                                  \
         "async invocations that succeed: a destination record to TOPIC (\"\": none)"},            \
        {"on-failure",                                                                             \
         0,                                                                                        \
         OPT_TEXT,                                                                                 \
         "on_failure",                                                                             \
         NULL,                                                                                     \
         "TOPIC",                                                                                  \
         "async invocations that fail for good: a destination record to TOPIC"},                   \
    {                                                                                              \
        "no-network", 0, OPT_FLAG, "network", "false", NULL, "instances have no network"           \
    }

static const cli_opt deploy_opts[] = {
    {"runtime", 0, OPT_TEXT, "runtime", NULL, "native|exec|python3|nodejs",
     "native: a shared object (the default); exec: an executable,\nor a zip/tar archive with a "
     "bootstrap at its root; python3, nodejs:\na source file, or a zip with the handler's module "
     "at its root"},
    {"handler", 0, OPT_TEXT, "handler", NULL, "MODULE.FUNCTION",
     "python3 and nodejs: the handler, as Lambda names it\n(app.handler: handler in app.py)"},
    CONFIG_OPTS,
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static const cli_opt config_opts[] = {
    CONFIG_OPTS,
    {"runtime", 0, OPT_TEXT, NULL, NULL, "R", "refused: the runtime belongs to the artifact"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static void print_config(const cJSON *cfg, const char *indent)
{
    printf("%sruntime %s, min %.0f, max %.0f, timeout %.0f ms, memory %.0f MB, keep-alive %.0f ms,"
           " queue %.0f\n",
           indent, cli_json_str(cfg, "runtime"), cli_json_num(cfg, "min"), cli_json_num(cfg, "max"),
           cli_json_num(cfg, "timeout_ms"), cli_json_num(cfg, "memory_mb"),
           cli_json_num(cfg, "keep_alive_ms"), cli_json_num(cfg, "queue"));
    const cJSON *handler = cJSON_GetObjectItemCaseSensitive(cfg, "handler");
    if (cJSON_IsString(handler)) printf("%shandler %s\n", indent, handler->valuestring);
    if (cli_json_num(cfg, "cpu_millis") > 0)
        printf("%scpu %.0f millicores\n", indent, cli_json_num(cfg, "cpu_millis"));
    const cJSON *net = cJSON_GetObjectItemCaseSensitive(cfg, "network");
    if (cJSON_IsFalse(net)) printf("%sno network\n", indent);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "prewarm")))
        printf("%sprewarm (the zygote is kept running)\n", indent);
    const cJSON *dest = cJSON_GetObjectItemCaseSensitive(cfg, "on_success");
    if (cJSON_IsString(dest)) printf("%son success %s\n", indent, dest->valuestring);
    dest = cJSON_GetObjectItemCaseSensitive(cfg, "on_failure");
    if (cJSON_IsString(dest)) printf("%son failure %s\n", indent, dest->valuestring);
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(cfg, "env");
    const cJSON *e;
    /* A value is null when the token may not see it (only admin may). */
    cJSON_ArrayForEach(e, env)
    {
        if (cJSON_IsString(e))
            printf("%senv %s=%s\n", indent, e->string, e->valuestring);
        else
            printf("%senv %s (value hidden: needs an admin token)\n", indent, e->string);
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(cfg, "secrets"))
    {
        if (cJSON_IsString(e)) printf("%ssecret %s (value never shown)\n", indent, e->valuestring);
    }
}

static int cmd_deploy(const cli *c, cli_args *a)
{
    const char *name = a->argv[0], *file = a->argv[1];
    buf artifact;
    int rc = cli_read_file(c, file, &artifact);
    if (rc) return rc;
    /* A lone source file keeps its name (app.py, index.mjs: the module and,
     * for Node.js, its kind); spated ignores it for an archive. */
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    const char *rt = cli_value(a, "runtime");
    int managed =
        cli_value(a, "handler") || (rt && (!strcmp(rt, "python3") || !strcmp(rt, "nodejs")));
    if (managed && base[0] &&
        strspn(base, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
                     "OPQRSTUVWXYZ0123456789_.-") == strlen(base))
        cli_add_param(&a->query, "file", base);
    char path[70 * KIB];
    cli_function_path(path, sizeof path, name, a->query.data ? a->query.data : "");
    answer r;
    rc = cli_request(c, "PUT", path, artifact.data ? artifact.data : "", artifact.len, NULL, &r);
    buf_free(&artifact);
    if (rc) return rc;
    if (r.status >= 300) return cli_finish(&r, NULL, cli_answer_error(c, "deploy failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, "deploy", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    printf("deployed %s version %.0f (sha256 %.12s, %.0f bytes)%s\n", cli_json_str(doc, "name"),
           cli_json_num(doc, "version"), cli_json_str(doc, "sha256"), cli_json_num(doc, "size"),
           r.status == 201 ? ", new function" : "");
    return cli_finish(&r, doc, 0);
}

/* A configuration change without an upload: PATCH makes a new version with
 * the active version's artifact. */
static int cmd_config(const cli *c, cli_args *a)
{
    if (cli_value(a, "runtime"))
        cli_usage(c, "config cannot change the runtime: deploy the artifact again with --runtime");
    if (!a->query.len) cli_usage(c, "config needs NAME and at least one option");
    char path[70 * KIB];
    cli_function_path(path, sizeof path, a->argv[0], a->query.data);
    answer r;
    int rc = cli_request(c, "PATCH", path, NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status >= 300) return cli_finish(&r, NULL, cli_answer_error(c, "config failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, "config", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(doc, "changed")))
        printf("%s unchanged: version %.0f has that configuration already\n",
               cli_json_str(doc, "name"), cli_json_num(doc, "version"));
    else
        printf("configured %s version %.0f (same artifact, sha256 %.12s)\n",
               cli_json_str(doc, "name"), cli_json_num(doc, "version"),
               cli_json_str(doc, "sha256"));
    print_config(cJSON_GetObjectItemCaseSensitive(doc, "config"), "  ");
    return cli_finish(&r, doc, 0);
}

static const cli_opt invoke_opts[] = {
    {"timeout", 0, OPT_NUMBER, "timeout", NULL, "MS",
     "this invocation's timeout: at most the function's own"},
    {"async", 0, OPT_FLAG, "async", "true", NULL,
     "store the invocation and return its request id at once;\nit runs (and is retried) in the "
     "background"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static int cmd_invoke(const cli *c, cli_args *a)
{
    buf payload;
    int rc = a->argc == 2 ? cli_read_payload(c, a->argv[1], &payload) : 0;
    if (a->argc < 2) buf_init(&payload, 0);
    if (rc) return rc;
    char path[1024];
    buf suffix;
    buf_init(&suffix, 1024);
    /* NAME:VERSION or NAME:ALIAS: the ':' goes unescaped, as the route has it. */
    char name[256];
    snprintf(name, sizeof name, "%s", a->argv[0]);
    char *colon = strchr(name, ':');
    if (colon) {
        *colon = '\0';
        char *e = curl_easy_escape(NULL, colon + 1, 0);
        buf_printf(&suffix, ":%s", e ? e : "");
        curl_free(e);
    }
    buf_printf(&suffix, "/invoke%s", a->query.data ? a->query.data : "");
    cli_function_path(path, sizeof path, name, suffix.data);
    buf_free(&suffix);
    answer r;
    rc = cli_request(c, "POST", path, payload.data ? payload.data : "", payload.len, NULL, &r);
    buf_free(&payload);
    if (rc) return rc;
    if (r.status != 200 && r.status != 202) {
        rc = cli_answer_error(c, "invoke failed", &r);
        /* What the function wrote and what happened to its instance are in
         * its log under the request id, which only --json showed. */
        if (rc == CLI_FUNCTION && !c->json && r.request_id[0])
            fprintf(stderr, "(its log: spate logs %s --request %s)\n", a->argv[0], r.request_id);
        return cli_finish(&r, NULL, rc);
    }
    if (r.status == 202) { /* --async: stored; the request id names it */
        if (c->json || !r.request_id[0])
            cli_print_raw(&r);
        else
            printf("%s\n", r.request_id);
        return cli_finish(&r, NULL, 0);
    }
    cli_print_raw(&r);
    /* Output without a final newline would run into the shell's prompt; a
     * pipe or a file gets the bytes exactly as the function wrote them. */
    if (r.body.len && r.body.data[r.body.len - 1] != '\n' && isatty(STDOUT_FILENO)) putchar('\n');
    return cli_finish(&r, NULL, 0);
}

/* Every function, page by page (GET /v1/functions?limit=&after=, following
 * "next"): a table, or with --json one document of them all in the
 * answer's shape. At most LS_PAGES_MAX pages (10 million functions). */
#define LS_PAGE 1000
#define LS_PAGES_MAX 10000

/* What cmd_ls keeps across its pages. */
typedef struct ls_walk {
    cJSON *all, *all_fns; /* with --json: the one document */
    double total;
    int header; /* the table's header printed */
} ls_walk;

static int ls_page(cJSON *doc, void *data)
{
    ls_walk *w = data;
    w->total = cli_json_num(doc, "total");
    if (w->all) {
        cli_json_take_items(doc, "functions", w->all_fns);
        return 0;
    }
    if (!w->header++)
        printf("%-24s %7s %-7s %8s %5s %5s %7s\n", "NAME", "VERSION", "RUNTIME", "STARTING", "IDLE",
               "BUSY", "WAITING");
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(doc, "functions"))
    {
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(f, "instances");
        printf("%-24s %7.0f %-7s %8.0f %5.0f %5.0f %7.0f\n", cli_json_str(f, "name"),
               cli_json_num(f, "version"), cli_json_str(f, "runtime"), cli_json_num(in, "starting"),
               cli_json_num(in, "idle"), cli_json_num(in, "busy"), cli_json_num(f, "waiting"));
    }
    return 0;
}

static int cmd_ls(const cli *c, cli_args *a)
{
    (void)a;
    ls_walk w = {0};
    w.all = c->json ? cJSON_CreateObject() : NULL;
    w.all_fns = w.all ? cJSON_AddArrayToObject(w.all, "functions") : NULL;
    int rc =
        cli_each_page(c, "/v1/functions", "ls failed", "ls", LS_PAGE, LS_PAGES_MAX, ls_page, &w);
    if (!rc && w.all) {
        cJSON_AddNullToObject(w.all, "next");
        cJSON_AddNumberToObject(w.all, "total", w.total);
        char *text = cJSON_PrintUnformatted(w.all);
        if (text) printf("%s\n", text);
        free(text);
    }
    cJSON_Delete(w.all);
    return rc;
}

static int cmd_nodes(const cli *c, cli_args *a)
{
    answer r;
    int rc = cli_request(c, "GET", "/v1/nodes", NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status != 200) return cli_finish(&r, NULL, cli_answer_error(c, "nodes failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, "nodes", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    printf("%-18s %-28s %-5s %9s %9s %14s %s\n", "NODE", "URL", "STATE", "INSTANCES", "FUNCTIONS",
           "LAST HEARTBEAT", "ZYGOTES");
    const cJSON *n;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(doc, "nodes"))
    {
        char id[40];
        snprintf(id, sizeof id, "%s%s", cli_json_str(n, "id"),
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "self")) ? "*" : "");
        /* A single node tells its zygotes (running/max); cluster heartbeats do not. */
        const cJSON *z = cJSON_GetObjectItemCaseSensitive(n, "zygotes");
        char zy[48] = "-";
        if (cJSON_IsObject(z))
            snprintf(zy, sizeof zy, "%.0f/%.0f", cli_json_num(z, "running"),
                     cli_json_num(z, "max"));
        printf("%-18s %-28s %-5s %9.0f %9.0f %11.1f s %s\n", id, cli_json_str(n, "url"),
               cli_json_str(n, "state"), cli_json_num(n, "instances"), cli_json_num(n, "functions"),
               cli_json_num(n, "last_heartbeat_ms_ago") / 1000, zy);
    }
    return cli_finish(&r, doc, 0);
}

static void print_time(const char *label, double ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char when[64];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    printf("%-14s %s\n", label, when);
}

/* The autoscaler's view of a function with triggers. */
static void print_scaling(const cJSON *sc)
{
    const cJSON *eta = cJSON_GetObjectItemCaseSensitive(sc, "drain_eta_s");
    char etas[64], desired[48];
    if (cJSON_IsNumber(eta))
        snprintf(etas, sizeof etas, "%.2f s", eta->valuedouble);
    else if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(sc, "drain_eta_known")))
        snprintf(etas, sizeof etas, "not known until an invocation finishes");
    else
        snprintf(etas, sizeof etas, "never at this rate");
    printf("%-14s %.0f (oldest %.2f s), arrivals %.1f/s, desired %s, drain ETA %s\n", "backlog",
           cli_json_num(sc, "backlog"), cli_json_num(sc, "oldest_age_s"),
           cli_json_num(sc, "arrival_per_s"),
           cli_plural(cli_json_num(sc, "desired_instances"), "instance", "instances", desired,
                      sizeof desired),
           etas);
    if (!cJSON_GetObjectItemCaseSensitive(sc, "deadline_s")) return;
    double left = cli_json_num(sc, "time_left_s");
    const char *verdict = "on track";
    if (left < 0)
        verdict = "MISSED (the oldest is past it)";
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sc, "deadline_at_risk")))
        verdict = "AT RISK (the maximum of instances cannot drain in time, or none can start)";
    printf("%-14s %.1f s, %.2f s left for the oldest: %s\n", "deadline",
           cli_json_num(sc, "deadline_s"), left, verdict);
}

/* `spate status` without a name: the node's limits (GET /v1/status). */
static int node_status(const cli *c)
{
    answer r;
    int rc = cli_request(c, "GET", "/v1/status", NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status != 200) return cli_finish(&r, NULL, cli_answer_error(c, "status failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, "status", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    printf("%-14s spated %s, %.0f functions\n", "node", cli_json_str(doc, "version"),
           cli_json_num(doc, "functions"));
    const cJSON *l;
    cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(doc, "limits"))
    {
        const cJSON *used = cJSON_GetObjectItemCaseSensitive(l, "used");
        const cJSON *max = cJSON_GetObjectItemCaseSensitive(l, "max");
        char what[96];
        if (cJSON_IsNumber(used) && cJSON_IsNumber(max))
            snprintf(what, sizeof what, "%.0f of %.0f (%.0f left)", used->valuedouble,
                     max->valuedouble, max->valuedouble - used->valuedouble);
        else if (cJSON_IsNumber(used))
            snprintf(what, sizeof what, "%.0f (no limit of spated's own)", used->valuedouble);
        else if (cJSON_GetObjectItemCaseSensitive(l, "available_bytes"))
            snprintf(what, sizeof what, "%.0f MiB available",
                     cli_json_num(l, "available_bytes") / (1024.0 * 1024.0));
        else
            snprintf(what, sizeof what, "unknown here");
        printf("%-14s %s; %.0f refused (%s)\n", l->string, what, cli_json_num(l, "refused"),
               cli_json_str(l, "code"));
    }
    /* The store's disk (an older spated has no "store"). */
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(doc, "store");
    if (st) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(st, "errors");
        char counts[160];
        snprintf(counts, sizeof counts, "%.0f commit, %.0f read, %.0f artifact errors since start",
                 cli_json_num(e, "commit"), cli_json_num(e, "read"), cli_json_num(e, "artifact"));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "healthy")))
            printf("%-14s healthy; %s\n", "store", counts);
        else
            printf("%-14s FAILING: %s; %s\n", "store", cli_json_str(st, "error"), counts);
    }
    return cli_finish(&r, doc, 0);
}

static int cmd_status(const cli *c, cli_args *a)
{
    if (a->argc == 0) return node_status(c);
    char path[1024];
    cli_function_path(path, sizeof path, a->argv[0], "");
    answer r;
    int rc = cli_request(c, "GET", path, NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status != 200) return cli_finish(&r, NULL, cli_answer_error(c, "status failed", &r));
    if (cli_json_passthrough(c, &r)) return cli_finish(&r, NULL, 0);
    cJSON *doc = cli_answer_json(c, "status", &r);
    if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(doc, "instances");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(doc, "stats");
    printf("%-14s %s\n", "name", cli_json_str(doc, "name"));
    printf("%-14s %.0f (sha256 %s, %.0f bytes)\n", "version", cli_json_num(doc, "version"),
           cli_json_str(doc, "sha256"), cli_json_num(doc, "size"));
    print_time("created", cli_json_num(doc, "created_ms"));
    print_time("updated", cli_json_num(doc, "updated_ms"));
    print_config(cJSON_GetObjectItemCaseSensitive(doc, "config"), "config         ");
    printf("%-14s %.0f starting, %.0f idle, %.0f busy, %.0f stopping, %.0f spare; %.0f waiting\n",
           "instances", cli_json_num(in, "starting"), cli_json_num(in, "idle"),
           cli_json_num(in, "busy"), cli_json_num(in, "stopping"), cli_json_num(in, "spare"),
           cli_json_num(doc, "waiting"));
    /* Native and python3 versions run from a zygote, started on demand. */
    const char *rt = cli_json_str(cJSON_GetObjectItemCaseSensitive(doc, "config"), "runtime");
    if (cli_json_num(doc, "zygote_pid") > 0)
        printf("%-14s running, pid %.0f\n", "zygote", cli_json_num(doc, "zygote_pid"));
    else if (*cli_json_str(doc, "load_error"))
        printf("%-14s not running: its last start failed (load error below)\n", "zygote");
    else if (strcmp(rt, "native") == 0 || strcmp(rt, "python3") == 0)
        printf("%-14s not running: the next invocation starts it\n", "zygote");
    char w[5][48];
    printf("%-14s %s, %s, %s, %s, %.0f rejected\n", "stats",
           cli_plural(cli_json_num(st, "invocations"), "invocation", "invocations", w[0], 48),
           cli_plural(cli_json_num(st, "errors"), "error", "errors", w[1], 48),
           cli_plural(cli_json_num(st, "timeouts"), "timeout", "timeouts", w[2], 48),
           cli_plural(cli_json_num(st, "crashes"), "crash", "crashes", w[3], 48),
           cli_json_num(st, "rejected"));
    printf("%-14s %.0f (last took %.0f us)\n", "cold starts", cli_json_num(st, "cold_starts"),
           cli_json_num(st, "last_cold_start_us"));
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(doc, "scaling");
    printf("%-14s handler %.3f ms, cold start %.3f ms, mailbox %.0f\n", "service",
           cli_json_num(sc, "service_ms"), cli_json_num(sc, "cold_start_ms"),
           cli_json_num(sc, "mailbox"));
    if (cJSON_GetObjectItemCaseSensitive(sc, "backlog")) print_scaling(sc);
    if (*cli_json_str(doc, "load_error"))
        printf("%-14s %s\n", "load error", cli_json_str(doc, "load_error"));
    const cJSON *v;
    printf("versions\n");
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(doc, "versions"))
    {
        time_t t = (time_t)(cli_json_num(v, "created_ms") / 1000);
        struct tm tm;
        char when[64];
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        printf("  %-5.0f %s  sha256 %.12s  %.0f bytes\n", cli_json_num(v, "version"), when,
               cli_json_str(v, "sha256"), cli_json_num(v, "size"));
    }
    /* Versions invoked by number or alias run beside the active one. */
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(doc, "running_versions"))
    {
        const cJSON *vi = cJSON_GetObjectItemCaseSensitive(v, "instances");
        printf("%-14s version %.0f: %.0f idle, %.0f busy\n", "also running",
               cli_json_num(v, "version"), cli_json_num(vi, "idle"), cli_json_num(vi, "busy"));
    }
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(doc, "aliases"))
    {
        printf("%-14s %s -> version %.0f", "alias", cli_json_str(v, "name"),
               cli_json_num(v, "version"));
        if (cJSON_GetObjectItemCaseSensitive(v, "weight_version"))
            printf(", %.0f%% to version %.0f", cli_json_num(v, "weight_percent"),
                   cli_json_num(v, "weight_version"));
        putchar('\n');
    }
    return cli_finish(&r, doc, 0);
}

static const cli_opt rm_opts[] = {
    {"force", 0, OPT_FLAG, "force", "true", NULL, "remove its triggers first (and say which)"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static int cmd_rm(const cli *c, cli_args *a)
{
    const char *name = a->argv[0];
    int force = cli_value(a, "force") != NULL;
    char path[1024];
    cli_function_path(path, sizeof path, name, a->query.data ? a->query.data : "");
    answer r;
    int rc = cli_request(c, "DELETE", path, NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status >= 300) return cli_finish(&r, NULL, cli_answer_error(c, "rm failed", &r));
    cJSON *doc = force ? cli_answer_json(c, "rm", &r) : NULL;
    if (force && !doc) return cli_finish(&r, NULL, CLI_FAILED);
    if (c->json && doc) {
        cli_print_raw(&r);
    } else if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "removed", name);
        char *text = cJSON_PrintUnformatted(o);
        printf("%s\n", text ? text : "");
        free(text);
        cJSON_Delete(o);
    } else {
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "triggers_removed")) printf(
            "removed trigger %s -> %s\n", cli_json_str(t, "topic"), cli_json_str(t, "function"));
        printf("removed %s\n", name);
    }
    return cli_finish(&r, doc, 0);
}

const cli_cmd cli_function_cmds[] = {
    {"deploy", "NAME FILE", 2, 2, deploy_opts, "deploy FILE as a new version of NAME",
     "Deploy FILE as a new version of function NAME: a shared object (--runtime\n"
     "native, the default), or an executable or a zip/tar archive with a bootstrap\n"
     "at its root (--runtime exec), or Python or Node.js code with --runtime\n"
     "python3|nodejs --handler MODULE.FUNCTION: a source file, or a zip with the\n"
     "module and its dependencies at its root. A redeploy keeps every setting of the active\n"
     "version that it does not name, the runtime included: --env K=V sets K and\n"
     "keeps the other variables, --unset-env K removes K, --clear-env drops them\n"
     "all before the --env options apply.",
     cmd_deploy},
    {"config", "NAME", 1, 1, config_opts, "change the configuration, no upload",
     "Change the configuration of NAME without an upload: a new version with the\n"
     "active version's artifact and the options applied as a redeploy applies\n"
     "them. When nothing would change, no version is made and it says so.",
     cmd_config},
    {"invoke", "NAME[:VERSION|:ALIAS] [PAYLOAD | @FILE | -]", 1, 2, invoke_opts,
     "invoke NAME and print its output",
     "Invoke NAME with PAYLOAD, the contents of FILE (@FILE; @@TEXT sends @TEXT) or\n"
     "standard input (-), and print the function's output on standard output as\n"
     "it is (on a terminal, with a final newline if it has none). A PAYLOAD that\n"
     "begins with '-' goes after '--'. NAME:3 runs version 3, NAME:ALIAS the\n"
     "version the alias picks (spate alias); NAME alone the active version.",
     cmd_invoke},
    {"ls", "", 0, 0, NULL, "list functions", "List functions, their versions and instances.",
     cmd_ls},
    {"status", "[NAME]", 0, 1, NULL, "a function, its instances and versions; or the node",
     "Describe a function: its configuration, instances, statistics, versions,\n"
     "and for a function with triggers the autoscaler's view (backlog, arrivals,\n"
     "desired instances, drain ETA, deadline risk). Without NAME, the node's\n"
     "limits: descriptors, processes, memory, instances and zygotes, what is\n"
     "used of each, and how many callers each refused (503 with its code).",
     cmd_status},
    {"rm", "NAME", 1, 1, rm_opts, "delete a function",
     "Delete a function. A function with triggers is not deleted: the error names\n"
     "the topics; --force removes its triggers first and prints each one removed.",
     cmd_rm},
    {"nodes", "", 0, 0, NULL, "the nodes of the cluster",
     "The nodes of the cluster (spated --cluster): id, URL, up or down, instances,\n"
     "functions and the age of the last heartbeat; * marks the node asked.",
     cmd_nodes},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
