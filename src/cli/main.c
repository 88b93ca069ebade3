/*
 * spate - the command-line client. It talks to spated only through the HTTP
 * API (libcurl), as curl's tool uses only libcurl.
 *
 * Server from --url or SPATE_URL (default http://127.0.0.1:7728), token from
 * SPATE_TOKEN. Exit status: 0 on success, 1 when the request failed, 2 on a
 * usage error.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/limits.h"

/* Files and stdin are read up to this much; the server enforces its own limits. */
#define INPUT_MAX (1024u * MIB)
/* Answers are read up to this much (the largest function output plus room). */
#define ANSWER_MAX (SPATE_RESPONSE_MAX + 1u * MIB)

typedef struct cli {
    const char *url;
    const char *token;
    int json;
} cli;

typedef struct answer {
    long status;
    buf body;
    char content_type[128];
} answer;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: spate [--url URL] [--json] COMMAND ...\n\n"
        "  deploy NAME FILE [--runtime native|exec] [--min N] [--max N] [--timeout MS]\n"
        "                   [--memory MB] [--keep-alive MS] [--queue N] [--env K=V]...\n"
        "                   [--unset-env K]... [--clear-env] [--env-file FILE]\n"
        "                   [--secret K=V]... [--secret-file FILE] [--cpu MILLICORES] [--tmp MB]\n"
        "                   [--network | --no-network]\n"
        "                                a redeploy keeps every setting it does not name\n"
        "  config NAME [the options of deploy but --runtime]\n"
        "                                change the configuration: a new version with the\n"
        "                                same artifact\n"
        "  invoke NAME [PAYLOAD | -]     print the function's output on stdout\n"
        "  ls                            list functions\n"
        "  status NAME                   describe a function, its instances and versions\n"
        "  rm NAME [--force]             delete a function (--force: and its triggers)\n"
        "  logs NAME [--limit N] [--since DURATION|TIME] [--request ID] [--instance N]\n"
        "            [--follow]          what the function's processes wrote to stdout\n"
        "                                and stderr, and what happened to them (the\n"
        "                                newest N lines; 100); --follow alone: new ones\n"
        "  publish TOPIC [PAYLOAD | -] [--key K | --key-field F] [--lines]\n"
        "                                (--lines: one message per line of standard input)\n"
        "  trigger add TOPIC FUNCTION [--max-attempts N] [--dlq TOPIC] [--ordered]\n"
        "                             [--deadline MS] [--max-concurrency N]\n"
        "  trigger set TOPIC FUNCTION [the options of add] [--no-ordered]\n"
        "                                change what is given, keep the rest\n"
        "                                (--deadline 0, --max-concurrency 0: none)\n"
        "  trigger ls | trigger rm TOPIC FUNCTION\n"
        "  topic ls                      every topic: depth, in flight, oldest age, stored\n"
        "  topic stats TOPIC             depth, in flight, oldest age, dead-lettered\n"
        "  topic rm TOPIC [--force]      delete it and its messages (--force: and the\n"
        "                                triggers that read it)\n"
        "  topic purge TOPIC             delete its messages (not those in flight)\n"
        "  topic set TOPIC [--max-age DURATION] [--max-bytes N] [--max-messages N]\n"
        "                                retention while no trigger reads it (0: none)\n"
        "  nodes                         the nodes of the cluster (* is this one)\n"
        "  dlq ls TOPIC | dlq redrive TOPIC\n"
        "                                dead letters of TOPIC's triggers (their --dlq\n"
        "                                topics), or of TOPIC if it is one; redrive\n"
        "                                sends them back to their source topic\n\n"
        "The server is --url, else $SPATE_URL, else http://127.0.0.1:7728;\n"
        "the token is $SPATE_TOKEN.\n");
}

static void __attribute__((noreturn)) usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spate: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'spate --help')\n");
    va_end(ap);
    exit(2);
}

static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spate: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

/* --- HTTP ------------------------------------------------------------------------- */

static size_t on_data(char *p, size_t size, size_t n, void *data)
{
    answer *a = data;
    if (buf_append(&a->body, p, size * n) != 0) return 0; /* over the limit: abort */
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
    answer *a = data;
    size_t len = size * n;
    if (len > 13 && strncasecmp(p, "content-type:", 13) == 0) {
        const char *v = p + 13;
        while (*v == ' ') v++;
        size_t vl = len - (size_t)(v - p);
        while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n')) vl--;
        snprintf(a->content_type, sizeof a->content_type, "%.*s", (int)vl, v);
    }
    return len;
}

/* Sends one request; 0 when an HTTP answer came back (any status). */
static int request_with(const cli *c, const char *method, const char *path, const void *body,
                        size_t len, const char *const *extra, answer *out)
{
    memset(out, 0, sizeof *out);
    buf_init(&out->body, ANSWER_MAX);
    CURL *h = curl_easy_init();
    if (!h) return fail("cannot initialise libcurl");
    char url[4096];
    size_t ulen = strlen(c->url);
    while (ulen > 0 && c->url[ulen - 1] == '/') ulen--;
    snprintf(url, sizeof url, "%.*s%s", (int)ulen, c->url, path);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    if (c->token) {
        char auth[1024];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    int has_type = 0;
    for (const char *const *x = extra; x && *x; x++) {
        hdrs = curl_slist_append(hdrs, *x);
        if (strncasecmp(*x, "content-type:", 13) == 0) has_type = 1;
    }
    if (body && !has_type) hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, len ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    }
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) buf_free(&out->body);
    if (rc == CURLE_WRITE_ERROR)
        return fail("answer from %s is larger than %u bytes", c->url, ANSWER_MAX);
    if (rc != CURLE_OK)
        return fail("cannot reach spated at %s: %s", c->url, curl_easy_strerror(rc));
    return 0;
}

static int request(const cli *c, const char *method, const char *path, const void *body, size_t len,
                   answer *out)
{
    return request_with(c, method, path, body, len, NULL, out);
}

/* Prints the server's error for a failed answer and returns 1. */
static int answer_error(const char *what, answer *a)
{
    cJSON *doc = cJSON_ParseWithLength(a->body.data ? a->body.data : "", a->body.len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(doc, "code");
    if (cJSON_IsString(e))
        fail("%s: %s (HTTP %ld%s%s)", what, e->valuestring, a->status,
             cJSON_IsString(code) ? ", " : "", cJSON_IsString(code) ? code->valuestring : "");
    else
        fail("%s: HTTP %ld %.*s", what, a->status, (int)(a->body.len > 200 ? 200 : a->body.len),
             a->body.data ? a->body.data : "");
    cJSON_Delete(doc);
    return 1;
}

static cJSON *answer_json(const char *what, answer *a)
{
    cJSON *doc = cJSON_ParseWithLength(a->body.data ? a->body.data : "", a->body.len);
    if (!doc) fail("%s: the server's answer is not JSON", what);
    return doc;
}

static void print_raw(const answer *a)
{
    if (a->body.len) fwrite(a->body.data, 1, a->body.len, stdout);
}

/* Every command ends here: the answer is released and rc returned. */
static int finish(answer *a, cJSON *doc, int rc)
{
    cJSON_Delete(doc);
    buf_free(&a->body);
    return rc;
}

/* --- Input --------------------------------------------------------------------------- */

static int read_stream(FILE *f, const char *name, buf *out)
{
    buf_init(out, INPUT_MAX);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_append(out, chunk, n) != 0) {
            buf_free(out);
            return fail("%s is larger than %u bytes", name, INPUT_MAX);
        }
    }
    if (ferror(f)) {
        buf_free(out);
        return fail("cannot read %s: %s", name, strerror(errno));
    }
    return 0;
}

static int read_file(const char *path, buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return fail("cannot open '%s': %s", path, strerror(errno));
    int rc = read_stream(f, path, out);
    fclose(f);
    return rc;
}

/* --- Commands -------------------------------------------------------------------------- */

static const char *json_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double json_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* "/v1/functions/NAME" + suffix, with NAME escaped so that any input makes a
 * well-formed URL (the server then says what is wrong with the name). */
static void function_path(char *out, size_t cap, const char *name, const char *suffix)
{
    char *esc = curl_easy_escape(NULL, name, 0);
    snprintf(out, cap, "/v1/functions/%s%s", esc ? esc : "", suffix);
    curl_free(esc);
}

static void add_param(buf *q, const char *key, const char *val)
{
    char *esc = curl_easy_escape(NULL, val, 0);
    buf_printf(q, "%s%s=%s", q->len ? "&" : "?", key, esc ? esc : "");
    curl_free(esc);
}

static void print_config(const cJSON *cfg, const char *indent);

/* A file of variables for --env-file and --secret-file: one KEY=VALUE a
 * line, taken as it stands (no quotes, no expansion, as docker's
 * --env-file); blank lines and lines starting with '#' are skipped. Each
 * becomes a query parameter key; a line without '=' is a usage error that
 * names the file and the line. */
static void vars_file(const char *opt, const char *path, const char *key, buf *q)
{
    FILE *f = fopen(path, "r");
    if (!f) usage_error("%s: cannot open '%s': %s", opt, path, strerror(errno));
    char line[SPATE_ENV_BYTES_MAX + 2];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        n++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n')
            usage_error("%s: %s:%d: longer than %u bytes", opt, path, n, SPATE_ENV_BYTES_MAX);
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        if (!strchr(line, '=') || line[0] == '=')
            usage_error("%s: %s:%d: '%.40s' is not KEY=VALUE", opt, path, n, line);
        add_param(q, key, line);
    }
    if (ferror(f)) usage_error("%s: cannot read '%s': %s", opt, path, strerror(errno));
    fclose(f);
}

/* The configuration options of deploy and config, from argv[from], as query
 * parameters; runtime: whether --runtime is one of them. */
static void config_options(const char *cmd, int argc, char **argv, int from, int runtime, buf *q)
{
    static const char *const numeric[][2] = {{"--min", "min"},
                                             {"--max", "max"},
                                             {"--timeout", "timeout"},
                                             {"--memory", "memory"},
                                             {"--keep-alive", "keep_alive"},
                                             {"--queue", "queue"},
                                             {"--cpu", "cpu"},
                                             {"--tmp", "tmp"},
                                             {"--env", "env"},
                                             {"--secret", "secret"},
                                             {"--unset-env", "unset_env"},
                                             {"--runtime", "runtime"}};
    for (int i = from; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--no-network") == 0 || strcmp(opt, "--network") == 0) {
            add_param(q, "network", opt[2] == 'n' && opt[3] == 'o' ? "false" : "true");
            continue;
        }
        if (strcmp(opt, "--clear-env") == 0) {
            add_param(q, "clear_env", "true");
            continue;
        }
        if (strcmp(opt, "--env-file") == 0 || strcmp(opt, "--secret-file") == 0) {
            if (i + 1 >= argc) usage_error("option '%s' needs a value", opt);
            vars_file(opt, argv[i + 1], opt[2] == 'e' ? "env" : "secret", q);
            i++;
            continue;
        }
        if ((strcmp(opt, "--env") == 0 || strcmp(opt, "--secret") == 0) && i + 1 < argc &&
            !strchr(argv[i + 1], '='))
            usage_error("%s '%s': not KEY=VALUE", opt, argv[i + 1]);
        const char *key = NULL;
        size_t n = sizeof numeric / sizeof numeric[0] - !runtime;
        for (size_t k = 0; !key && k < n; k++)
            if (strcmp(opt, numeric[k][0]) == 0) key = numeric[k][1];
        if (!key && strcmp(opt, "--runtime") == 0)
            usage_error("%s cannot change the runtime: deploy the artifact again with --runtime",
                        cmd);
        if (!key) usage_error("unknown %s option '%s'", cmd, opt);
        if (i + 1 >= argc) usage_error("option '%s' needs a value", opt);
        add_param(q, key, argv[++i]);
    }
}

static int cmd_deploy(const cli *c, int argc, char **argv)
{
    if (argc < 2) usage_error("deploy needs NAME and FILE");
    const char *name = argv[0], *file = argv[1];
    buf q;
    buf_init(&q, 64 * KIB);
    config_options("deploy", argc, argv, 2, 1, &q);
    buf artifact;
    if (read_file(file, &artifact)) {
        buf_free(&q);
        return 1;
    }
    char path[70 * KIB];
    function_path(path, sizeof path, name, q.data ? q.data : "");
    answer a;
    int rc = request(c, "PUT", path, artifact.data ? artifact.data : "", artifact.len, &a);
    buf_free(&artifact);
    buf_free(&q);
    if (rc) return rc;
    if (a.status >= 300) return finish(&a, NULL, answer_error("deploy failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("deploy", &a);
    if (!doc) return finish(&a, NULL, 1);
    printf("deployed %s version %.0f (sha256 %.12s, %.0f bytes)%s\n", json_str(doc, "name"),
           json_num(doc, "version"), json_str(doc, "sha256"), json_num(doc, "size"),
           a.status == 201 ? ", new function" : "");
    return finish(&a, doc, 0);
}

/* A configuration change without an upload: PATCH makes a new version with
 * the active version's artifact. */
static int cmd_config(const cli *c, int argc, char **argv)
{
    if (argc < 2) usage_error("config needs NAME and at least one option");
    buf q;
    buf_init(&q, 64 * KIB);
    config_options("config", argc, argv, 1, 0, &q);
    char path[70 * KIB];
    function_path(path, sizeof path, argv[0], q.data ? q.data : "");
    buf_free(&q);
    answer a;
    if (request(c, "PATCH", path, NULL, 0, &a)) return 1;
    if (a.status >= 300) return finish(&a, NULL, answer_error("config failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("config", &a);
    if (!doc) return finish(&a, NULL, 1);
    if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(doc, "changed")))
        printf("%s unchanged: version %.0f has that configuration already\n", json_str(doc, "name"),
               json_num(doc, "version"));
    else
        printf("configured %s version %.0f (same artifact, sha256 %.12s)\n", json_str(doc, "name"),
               json_num(doc, "version"), json_str(doc, "sha256"));
    print_config(cJSON_GetObjectItemCaseSensitive(doc, "config"), "  ");
    return finish(&a, doc, 0);
}

static int cmd_invoke(const cli *c, int argc, char **argv)
{
    if (argc < 1 || argc > 2) usage_error("invoke needs NAME and at most one PAYLOAD");
    buf payload;
    buf_init(&payload, INPUT_MAX);
    if (argc == 2 && strcmp(argv[1], "-") == 0) {
        if (read_stream(stdin, "standard input", &payload)) return 1;
    } else if (argc == 2) {
        buf_append_str(&payload, argv[1]);
    }
    char path[1024];
    function_path(path, sizeof path, argv[0], "/invoke");
    answer a;
    int rc = request(c, "POST", path, payload.data ? payload.data : "", payload.len, &a);
    buf_free(&payload);
    if (rc) return rc;
    if (a.status != 200) return finish(&a, NULL, answer_error("invoke failed", &a));
    print_raw(&a);
    return finish(&a, NULL, 0);
}

static int cmd_ls(const cli *c, int argc, char **argv)
{
    if (argc != 0) usage_error("ls takes no arguments");
    answer a;
    if (request(c, "GET", "/v1/functions", NULL, 0, &a)) return 1;
    if (a.status != 200) return finish(&a, NULL, answer_error("ls failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("ls", &a);
    if (!doc) return finish(&a, NULL, 1);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "functions");
    printf("%-24s %7s %-7s %8s %5s %5s %7s\n", "NAME", "VERSION", "RUNTIME", "STARTING", "IDLE",
           "BUSY", "WAITING");
    const cJSON *f;
    cJSON_ArrayForEach(f, arr)
    {
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(f, "instances");
        printf("%-24s %7.0f %-7s %8.0f %5.0f %5.0f %7.0f\n", json_str(f, "name"),
               json_num(f, "version"), json_str(f, "runtime"), json_num(in, "starting"),
               json_num(in, "idle"), json_num(in, "busy"), json_num(f, "waiting"));
    }
    return finish(&a, doc, 0);
}

static int cmd_nodes(const cli *c, int argc, char **argv)
{
    if (argc != 0) usage_error("nodes takes no arguments");
    answer a;
    if (request(c, "GET", "/v1/nodes", NULL, 0, &a)) return 1;
    if (a.status != 200) return finish(&a, NULL, answer_error("nodes failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("nodes", &a);
    if (!doc) return finish(&a, NULL, 1);
    printf("%-18s %-28s %-5s %9s %9s %14s\n", "NODE", "URL", "STATE", "INSTANCES", "FUNCTIONS",
           "LAST HEARTBEAT");
    const cJSON *n;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(doc, "nodes"))
    {
        char id[40];
        snprintf(id, sizeof id, "%s%s", json_str(n, "id"),
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "self")) ? "*" : "");
        printf("%-18s %-28s %-5s %9.0f %9.0f %11.1f s\n", id, json_str(n, "url"),
               json_str(n, "state"), json_num(n, "instances"), json_num(n, "functions"),
               json_num(n, "last_heartbeat_ms_ago") / 1000);
    }
    return finish(&a, doc, 0);
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

static void print_config(const cJSON *cfg, const char *indent)
{
    printf("%sruntime %s, min %.0f, max %.0f, timeout %.0f ms, memory %.0f MB, keep-alive %.0f ms,"
           " queue %.0f\n",
           indent, json_str(cfg, "runtime"), json_num(cfg, "min"), json_num(cfg, "max"),
           json_num(cfg, "timeout_ms"), json_num(cfg, "memory_mb"), json_num(cfg, "keep_alive_ms"),
           json_num(cfg, "queue"));
    if (json_num(cfg, "cpu_millis") > 0)
        printf("%scpu %.0f millicores\n", indent, json_num(cfg, "cpu_millis"));
    const cJSON *net = cJSON_GetObjectItemCaseSensitive(cfg, "network");
    if (cJSON_IsFalse(net)) printf("%sno network\n", indent);
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

static int cmd_status(const cli *c, int argc, char **argv)
{
    if (argc != 1) usage_error("status needs NAME");
    char path[1024];
    function_path(path, sizeof path, argv[0], "");
    answer a;
    if (request(c, "GET", path, NULL, 0, &a)) return 1;
    if (a.status != 200) return finish(&a, NULL, answer_error("status failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("status", &a);
    if (!doc) return finish(&a, NULL, 1);
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(doc, "instances");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(doc, "stats");
    printf("%-14s %s\n", "name", json_str(doc, "name"));
    printf("%-14s %.0f (sha256 %s, %.0f bytes)\n", "version", json_num(doc, "version"),
           json_str(doc, "sha256"), json_num(doc, "size"));
    print_time("created", json_num(doc, "created_ms"));
    print_time("updated", json_num(doc, "updated_ms"));
    print_config(cJSON_GetObjectItemCaseSensitive(doc, "config"), "config         ");
    printf("%-14s %.0f starting, %.0f idle, %.0f busy, %.0f stopping; %.0f waiting\n", "instances",
           json_num(in, "starting"), json_num(in, "idle"), json_num(in, "busy"),
           json_num(in, "stopping"), json_num(doc, "waiting"));
    printf("%-14s %.0f invocations, %.0f errors, %.0f timeouts, %.0f crashes, %.0f rejected\n",
           "stats", json_num(st, "invocations"), json_num(st, "errors"), json_num(st, "timeouts"),
           json_num(st, "crashes"), json_num(st, "rejected"));
    printf("%-14s %.0f (last took %.0f us)\n", "cold starts", json_num(st, "cold_starts"),
           json_num(st, "last_cold_start_us"));
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(doc, "scaling");
    printf("%-14s handler %.3f ms, cold start %.3f ms, mailbox %.0f\n", "service",
           json_num(sc, "service_ms"), json_num(sc, "cold_start_ms"), json_num(sc, "mailbox"));
    if (cJSON_GetObjectItemCaseSensitive(sc, "backlog")) {
        const cJSON *eta = cJSON_GetObjectItemCaseSensitive(sc, "drain_eta_s");
        char etas[48];
        if (cJSON_IsNumber(eta))
            snprintf(etas, sizeof etas, "%.2f s", eta->valuedouble);
        else
            snprintf(etas, sizeof etas, "never at this rate");
        printf("%-14s %.0f (oldest %.2f s), arrivals %.1f/s, desired %.0f instances, "
               "drain ETA %s\n",
               "backlog", json_num(sc, "backlog"), json_num(sc, "oldest_age_s"),
               json_num(sc, "arrival_per_s"), json_num(sc, "desired_instances"), etas);
        if (cJSON_GetObjectItemCaseSensitive(sc, "deadline_s"))
            printf("%-14s %.1f s, %.2f s left for the oldest: %s\n", "deadline",
                   json_num(sc, "deadline_s"), json_num(sc, "time_left_s"),
                   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sc, "deadline_at_risk"))
                       ? "AT RISK (even the maximum of instances cannot drain in time)"
                       : "on track");
    }
    if (*json_str(doc, "load_error"))
        printf("%-14s %s\n", "load error", json_str(doc, "load_error"));
    const cJSON *vers = cJSON_GetObjectItemCaseSensitive(doc, "versions");
    const cJSON *v;
    printf("versions\n");
    cJSON_ArrayForEach(v, vers)
    {
        time_t t = (time_t)(json_num(v, "created_ms") / 1000);
        struct tm tm;
        char when[64];
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        printf("  %-5.0f %s  sha256 %.12s  %.0f bytes\n", json_num(v, "version"), when,
               json_str(v, "sha256"), json_num(v, "size"));
    }
    return finish(&a, doc, 0);
}

/* Prints lines of a logs answer; returns the last seq seen (or after). */
/* One line of GET .../logs: "TIME vV instance N req ID STREAM: TEXT". */
static void print_log_line(const cJSON *line)
{
    double ms = json_num(line, "time_ms");
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char who[128];
    int n = 0;
    double version = json_num(line, "version"), inst = json_num(line, "instance");
    const char *req = json_str(line, "request_id"), *stream = json_str(line, "stream");
    if (version > 0) n += snprintf(who + n, sizeof who - (size_t)n, " v%.0f", version);
    if (inst > 0)
        n += snprintf(who + n, sizeof who - (size_t)n, " instance %.0f", inst);
    else
        n += snprintf(who + n, sizeof who - (size_t)n, " zygote");
    if (*req) n += snprintf(who + n, sizeof who - (size_t)n, " req %s", req);
    if (*stream && strcmp(stream, "unknown") != 0)
        snprintf(who + n, sizeof who - (size_t)n, " %s", stream);
    printf("%s.%03dZ%s: %s\n", when, (int)((int64_t)ms % 1000), who, json_str(line, "text"));
}

/* Prints the lines of a logs answer; returns the after= of the next request. */
static uint64_t print_log_lines(const cJSON *doc, uint64_t after)
{
    const cJSON *line;
    cJSON_ArrayForEach(line, cJSON_GetObjectItemCaseSensitive(doc, "lines"))
    {
        print_log_line(line);
        after = (uint64_t)json_num(line, "seq");
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
static int64_t parse_since(const char *arg)
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
        usage_error("--since takes a duration (90s, 5m, 1h30m, 2d) or a time "
                    "(2025-06-01T12:00:00Z), not '%s'",
                    arg);
    return when;
}

static int cmd_logs(const cli *c, int argc, char **argv)
{
    if (argc < 1) usage_error("logs needs NAME");
    int follow = 0;
    const char *limit = NULL, *request_id = NULL, *instance = NULL;
    int64_t since = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0)
            follow = 1;
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
            limit = argv[++i];
        else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc)
            since = parse_since(argv[++i]);
        else if (strcmp(argv[i], "--request") == 0 && i + 1 < argc)
            request_id = argv[++i];
        else if (strcmp(argv[i], "--instance") == 0 && i + 1 < argc)
            instance = argv[++i];
        else
            usage_error("unknown logs option '%s'", argv[i]);
    }
    if (instance && (!*instance || strspn(instance, "0123456789") != strlen(instance)))
        usage_error("--instance takes an instance number, not '%s'", instance);
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
        function_path(path, sizeof path, argv[0], suffix.data);
        buf_free(&suffix);
        answer a;
        if (request(c, "GET", path, NULL, 0, &a)) {
            rc = 1;
            break;
        }
        if (a.status != 200) {
            rc = finish(&a, NULL, answer_error("logs failed", &a));
            break;
        }
        if (c->json && !follow) {
            print_raw(&a);
            rc = finish(&a, NULL, 0);
            break;
        }
        cJSON *doc = answer_json("logs", &a);
        if (!doc) {
            rc = finish(&a, NULL, 1);
            break;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "removed")) && !said_removed++)
            fprintf(stderr, "spate: function '%s' was removed; this is what its log kept\n",
                    argv[0]);
        after = print_log_lines(doc, after);
        finish(&a, doc, 0);
        if (!follow) break;
    }
    buf_free(&filters);
    return rc;
}

static int cmd_rm(const cli *c, int argc, char **argv)
{
    const char *name = NULL;
    int force = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0)
            force = 1;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            usage_error("unknown rm option '%s'", argv[i]);
        else if (!name)
            name = argv[i];
        else
            usage_error("rm takes one NAME");
    }
    if (!name) usage_error("rm needs NAME");
    char path[1024];
    function_path(path, sizeof path, name, force ? "?force=true" : "");
    answer a;
    if (request(c, "DELETE", path, NULL, 0, &a)) return 1;
    if (a.status >= 300) return finish(&a, NULL, answer_error("rm failed", &a));
    cJSON *doc = force ? answer_json("rm", &a) : NULL;
    if (force && !doc) return finish(&a, NULL, 1);
    if (c->json && doc) {
        print_raw(&a);
    } else if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "removed", name);
        char *text = cJSON_PrintUnformatted(o);
        printf("%s\n", text ? text : "");
        free(text);
        cJSON_Delete(o);
    } else {
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "triggers_removed"))
            printf("removed trigger %s -> %s\n", json_str(t, "topic"), json_str(t, "function"));
        printf("removed %s\n", name);
    }
    return finish(&a, doc, 0);
}

/* "/v1/topics/TOPIC" + suffix, the topic escaped. */
static void topic_path(char *out, size_t cap, const char *prefix, const char *topic,
                       const char *suffix)
{
    char *esc = curl_easy_escape(NULL, topic, 0);
    snprintf(out, cap, "%s%s%s", prefix, esc ? esc : "", suffix);
    curl_free(esc);
}

static int cmd_publish(const cli *c, int argc, char **argv)
{
    const char *topic = NULL, *payload = NULL, *key = NULL, *field = NULL;
    int lines = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--lines") == 0)
            lines = 1;
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--key-field") == 0 && i + 1 < argc)
            field = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            usage_error("unknown publish option '%s'", argv[i]);
        else if (!topic)
            topic = argv[i];
        else if (!payload)
            payload = argv[i];
        else
            usage_error("publish takes TOPIC and at most one PAYLOAD");
    }
    if (!topic) usage_error("publish needs TOPIC");
    if (key && field) usage_error("give --key or --key-field, not both");
    /* No payload and a person at the terminal: they meant to give one (an
     * empty message is published only when asked for, with ""). */
    if (!payload && !lines && isatty(STDIN_FILENO))
        usage_error("publish needs a PAYLOAD: give it as an argument (\"\" for an empty "
                    "message), '-' to read it from standard input, or --lines for one message "
                    "per line");
    buf body;
    buf_init(&body, INPUT_MAX);
    if (lines || (payload && strcmp(payload, "-") == 0)) {
        if (payload && strcmp(payload, "-") != 0) usage_error("--lines reads standard input");
        if (read_stream(stdin, "standard input", &body)) return 1;
    } else if (payload) {
        buf_append_str(&body, payload);
    }
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
    topic_path(path, sizeof path, "/v1/topics/", topic, "/messages");
    answer a;
    int rc = request_with(c, "POST", path, body.data ? body.data : "", body.len, extra, &a);
    buf_free(&body);
    if (rc) return rc;
    if (a.status != 202) return finish(&a, NULL, answer_error("publish failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("publish", &a);
    if (!doc) return finish(&a, NULL, 1);
    double count = json_num(doc, "published"), first = json_num(doc, "first_seq");
    if (first > 0) /* a cluster's topics do not say */
        printf("published %.0f message%s to %s (seq %.0f to %.0f)\n", count, count == 1 ? "" : "s",
               topic, first, json_num(doc, "last_seq"));
    else
        printf("published %.0f message%s to %s\n", count, count == 1 ? "" : "s", topic);
    return finish(&a, doc, 0);
}

static void print_trigger_line(const cJSON *t)
{
    printf("%-20s %-20s %8.0f %8.0f %8.0f %9.0f %6s %8.0f  %s\n", json_str(t, "topic"),
           json_str(t, "function"), json_num(t, "depth"), json_num(t, "in_flight"),
           json_num(t, "retrying"), json_num(t, "dead_lettered"),
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "ordered")) ? "yes" : "no",
           json_num(t, "deadline_ms"), json_str(t, "dlq"));
}

static void print_trigger_header(void)
{
    printf("%-20s %-20s %8s %8s %8s %9s %6s %8s  %s\n", "TOPIC", "FUNCTION", "DEPTH", "INFLIGHT",
           "RETRYING", "DEADLTRD", "ORDER", "DEADLINE", "DLQ");
}

static int cmd_trigger(const cli *c, int argc, char **argv)
{
    if (argc < 1) usage_error("trigger needs add, set, ls or rm");
    const char *sub = argv[0];
    answer a;
    char path[1024];
    if (strcmp(sub, "ls") == 0) {
        if (argc != 1) usage_error("trigger ls takes no arguments");
        if (request(c, "GET", "/v1/triggers", NULL, 0, &a)) return 1;
        if (a.status != 200) return finish(&a, NULL, answer_error("trigger ls failed", &a));
        if (c->json) {
            print_raw(&a);
            return finish(&a, NULL, 0);
        }
        cJSON *doc = answer_json("trigger ls", &a);
        if (!doc) return finish(&a, NULL, 1);
        print_trigger_header();
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "triggers"))
            print_trigger_line(t);
        return finish(&a, doc, 0);
    }
    if (argc < 3) usage_error("trigger %s needs TOPIC and FUNCTION", sub);
    char *ft = curl_easy_escape(NULL, argv[2], 0);
    topic_path(path, sizeof path, "/v1/triggers/", argv[1], "/");
    size_t plen = strlen(path);
    snprintf(path + plen, sizeof path - plen, "%s", ft ? ft : "");
    curl_free(ft);
    if (strcmp(sub, "rm") == 0) {
        if (argc != 3) usage_error("trigger rm takes TOPIC and FUNCTION");
        if (request(c, "DELETE", path, NULL, 0, &a)) return 1;
        if (a.status >= 300) return finish(&a, NULL, answer_error("trigger rm failed", &a));
        if (!c->json)
            printf("removed trigger %s -> %s\n", argv[1], argv[2]);
        else
            printf("{\"removed\":true}\n");
        return finish(&a, NULL, 0);
    }
    int set = strcmp(sub, "set") == 0;
    if (!set && strcmp(sub, "add") != 0) usage_error("unknown trigger command '%s'", sub);
    if (set && argc == 3) usage_error("trigger set needs an option to change");
    buf q;
    buf_init(&q, 8 * KIB);
    if (set) add_param(&q, "update", "true");
    static const char *const opts[][2] = {{"--max-attempts", "max_attempts"},
                                          {"--dlq", "dlq"},
                                          {"--deadline", "deadline"},
                                          {"--max-concurrency", "max_concurrency"}};
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--ordered") == 0 || strcmp(argv[i], "--no-ordered") == 0) {
            add_param(&q, "ordered", argv[i][2] == 'o' ? "true" : "false");
            continue;
        }
        const char *key = NULL;
        for (size_t k = 0; !key && k < sizeof opts / sizeof opts[0]; k++)
            if (strcmp(argv[i], opts[k][0]) == 0) key = opts[k][1];
        if (!key) usage_error("unknown trigger %s option '%s'", sub, argv[i]);
        if (i + 1 >= argc) usage_error("option '%s' needs a value", argv[i]);
        add_param(&q, key, argv[++i]);
    }
    plen = strlen(path);
    snprintf(path + plen, sizeof path - plen, "%s", q.data ? q.data : "");
    buf_free(&q);
    if (request(c, "PUT", path, "", 0, &a)) return 1;
    if (a.status >= 300)
        return finish(&a, NULL,
                      answer_error(set ? "trigger set failed" : "trigger add failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json(set ? "trigger set" : "trigger add", &a);
    if (!doc) return finish(&a, NULL, 1);
    printf("trigger %s -> %s%s: up to %.0f attempts, dead letters to %s%s", argv[1], argv[2],
           set ? " changed" : "", json_num(doc, "max_attempts"), json_str(doc, "dlq"),
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "ordered")) ? ", ordered by key"
                                                                          : "");
    if (json_num(doc, "deadline_ms") > 0)
        printf(", deadline %.0f ms", json_num(doc, "deadline_ms"));
    if (json_num(doc, "max_concurrency") > 0)
        printf(", at most %.0f at once", json_num(doc, "max_concurrency"));
    printf("\n");
    return finish(&a, doc, 0);
}

/* "7d", "12h", "30m", "90s", "500ms" or "0" in milliseconds; -1 if not one. */
static int64_t parse_duration_ms(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *s == '-' || errno) return -1;
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    if (*end == '\0') return v == 0 ? 0 : -1; /* a number needs its unit, but for 0 */
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].unit) == 0)
            return v > (uint64_t)INT64_MAX / units[i].ms ? -1 : (int64_t)(v * units[i].ms);
    return -1;
}

/* "1048576", "64K", "64M", "1G" (powers of 1024) in bytes; -1 if not one. */
static int64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *s == '-' || errno) return -1;
    uint64_t mult = 1;
    if (*end && (!end[1] || strcmp(end + 1, "iB") == 0 || strcmp(end + 1, "B") == 0)) {
        const char *units = "KMGT";
        const char *u = strchr(units, *end == 'k' ? 'K' : *end);
        if (!u || !*end) return -1;
        for (const char *p = units; p <= u; p++) mult *= 1024;
        end += strlen(end);
    }
    if (*end) return -1;
    return v > (uint64_t)INT64_MAX / mult ? -1 : (int64_t)(v * mult);
}

/* A topic's retention as a few words: "none", "7d, 64 MiB, 1000 messages". */
static void format_retention(const cJSON *r, char *out, size_t cap)
{
    double age = json_num(r, "max_age_ms"), bytes = json_num(r, "max_bytes"),
           msgs = json_num(r, "max_messages");
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
    if (bytes > 0 && n < cap)
        n += (size_t)snprintf(out + n, cap - n, "%s%.0f bytes", n ? ", " : "", bytes);
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
        (size_t)snprintf(out + n, cap - n, "%s%s -> %s", n ? ", " : "", json_str(e, "topic"),
                         json_str(e, "function"));
}

static int topic_ls(const cli *c)
{
    answer a;
    if (request(c, "GET", "/v1/topics", NULL, 0, &a)) return 1;
    if (a.status != 200) return finish(&a, NULL, answer_error("topic ls failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("topic ls", &a);
    if (!doc) return finish(&a, NULL, 1);
    printf("%-24s %8s %8s %10s %8s %10s %8s %8s  %s\n", "TOPIC", "DEPTH", "INFLIGHT", "OLDEST",
           "STORED", "BYTES", "DEADLTRD", "TRIGGERS", "RETENTION");
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "topics"))
    {
        char ret[128];
        format_retention(cJSON_GetObjectItemCaseSensitive(t, "retention"), ret, sizeof ret);
        printf("%-24s %8.0f %8.0f %8.1f s %8.0f %10.0f %8.0f %8d  %s\n", json_str(t, "name"),
               json_num(t, "depth"), json_num(t, "in_flight"), json_num(t, "oldest_age_s"),
               json_num(t, "stored"), json_num(t, "bytes"), json_num(t, "dead_lettered"),
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "triggers")), ret);
    }
    return finish(&a, doc, 0);
}

static int topic_stats(const cli *c, const char *topic)
{
    char path[512];
    topic_path(path, sizeof path, "/v1/topics/", topic, "");
    answer a;
    if (request(c, "GET", path, NULL, 0, &a)) return 1;
    if (a.status != 200) return finish(&a, NULL, answer_error("topic stats failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("topic stats", &a);
    if (!doc) return finish(&a, NULL, 1);
    char ret[128], refs[1024];
    format_retention(cJSON_GetObjectItemCaseSensitive(doc, "retention"), ret, sizeof ret);
    printf("%-14s %s\n", "topic", json_str(doc, "name"));
    printf("%-14s %.0f\n", "depth", json_num(doc, "depth"));
    printf("%-14s %.0f\n", "in flight", json_num(doc, "in_flight"));
    printf("%-14s %.3f s\n", "oldest age", json_num(doc, "oldest_age_s"));
    printf("%-14s %.0f\n", "published", json_num(doc, "published"));
    printf("%-14s %.0f\n", "acknowledged", json_num(doc, "acknowledged"));
    printf("%-14s %.0f\n", "dead-lettered", json_num(doc, "dead_lettered"));
    printf("%-14s %.0f (%.0f bytes)\n", "stored", json_num(doc, "stored"), json_num(doc, "bytes"));
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
    return finish(&a, doc, 0);
}

static int topic_rm(const cli *c, int argc, char **argv)
{
    const char *topic = NULL;
    int force = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0)
            force = 1;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            usage_error("unknown topic rm option '%s'", argv[i]);
        else if (!topic)
            topic = argv[i];
        else
            usage_error("topic rm takes one TOPIC");
    }
    if (!topic) usage_error("topic rm needs TOPIC");
    char path[512];
    topic_path(path, sizeof path, "/v1/topics/", topic, force ? "?force=true" : "");
    answer a;
    if (request(c, "DELETE", path, NULL, 0, &a)) return 1;
    if (a.status != 200) return finish(&a, NULL, answer_error("topic rm failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("topic rm", &a);
    if (!doc) return finish(&a, NULL, 1);
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "removed_triggers"))
        printf("removed trigger %s -> %s\n", json_str(t, "topic"), json_str(t, "function"));
    double n = json_num(doc, "messages");
    printf("removed topic %s and its %.0f message%s\n", topic, n, n == 1 ? "" : "s");
    char refs[1024];
    format_refs(cJSON_GetObjectItemCaseSensitive(doc, "dead_letter_topic_of"), refs, sizeof refs);
    if (refs[0])
        printf("note: it stays the dead-letter topic of %s; their next dead letter makes it "
               "again\n",
               refs);
    return finish(&a, doc, 0);
}

static int topic_purge(const cli *c, const char *topic)
{
    char path[512];
    topic_path(path, sizeof path, "/v1/topics/", topic, "/purge");
    answer a;
    if (request(c, "POST", path, "", 0, &a)) return 1;
    if (a.status != 200) return finish(&a, NULL, answer_error("topic purge failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("topic purge", &a);
    if (!doc) return finish(&a, NULL, 1);
    double n = json_num(doc, "purged");
    printf("purged %.0f message%s from %s\n", n, n == 1 ? "" : "s", topic);
    return finish(&a, doc, 0);
}

static int topic_set(const cli *c, int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') usage_error("topic set needs TOPIC");
    buf q;
    buf_init(&q, 4 * KIB);
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--max-age") && strcmp(opt, "--max-bytes") && strcmp(opt, "--max-messages"))
            usage_error("unknown topic set option '%s'", opt);
        if (i + 1 >= argc) usage_error("option '%s' needs a value", opt);
        const char *val = argv[++i];
        char num[32];
        int64_t v;
        if (strcmp(opt, "--max-age") == 0) {
            if ((v = parse_duration_ms(val)) < 0)
                usage_error("--max-age takes a duration such as 90s, 30m, 12h or 7d (0: no "
                            "limit), not '%s'",
                            val);
            snprintf(num, sizeof num, "%lld", (long long)v);
            add_param(&q, "max_age_ms", num);
        } else if (strcmp(opt, "--max-bytes") == 0) {
            if ((v = parse_size(val)) < 0)
                usage_error("--max-bytes takes a size such as 1048576, 64M or 1G (0: no limit), "
                            "not '%s'",
                            val);
            snprintf(num, sizeof num, "%lld", (long long)v);
            add_param(&q, "max_bytes", num);
        } else {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(val, &end, 10);
            if (end == val || *end || *val == '-' || errno || n > INT64_MAX)
                usage_error("--max-messages takes a number (0: no limit), not '%s'", val);
            add_param(&q, "max_messages", val);
        }
    }
    if (!q.len) usage_error("topic set needs --max-age, --max-bytes or --max-messages");
    char path[5 * KIB];
    topic_path(path, sizeof path, "/v1/topics/", argv[0], q.data);
    buf_free(&q);
    answer a;
    if (request(c, "PUT", path, "", 0, &a)) return 1;
    if (a.status != 200) return finish(&a, NULL, answer_error("topic set failed", &a));
    if (c->json) {
        print_raw(&a);
        return finish(&a, NULL, 0);
    }
    cJSON *doc = answer_json("topic set", &a);
    if (!doc) return finish(&a, NULL, 1);
    char ret[128];
    format_retention(cJSON_GetObjectItemCaseSensitive(doc, "retention"), ret, sizeof ret);
    printf("topic %s keeps: %s%s\n", argv[0], ret,
           cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "triggers")) > 0
               ? " (applied only while no trigger reads it)"
               : "");
    return finish(&a, doc, 0);
}

static int cmd_topic(const cli *c, int argc, char **argv)
{
    const char *sub = argc ? argv[0] : "";
    if (strcmp(sub, "ls") == 0) {
        if (argc != 1) usage_error("topic ls takes no arguments");
        return topic_ls(c);
    }
    if (strcmp(sub, "stats") == 0) {
        if (argc != 2) usage_error("usage: spate topic stats TOPIC");
        return topic_stats(c, argv[1]);
    }
    if (strcmp(sub, "rm") == 0) return topic_rm(c, argc - 1, argv + 1);
    if (strcmp(sub, "purge") == 0) {
        if (argc != 2) usage_error("usage: spate topic purge TOPIC");
        return topic_purge(c, argv[1]);
    }
    if (strcmp(sub, "set") == 0) return topic_set(c, argc - 1, argv + 1);
    usage_error("usage: spate topic ls | stats TOPIC | rm TOPIC [--force] | purge TOPIC | "
                "set TOPIC [--max-age DURATION] [--max-bytes N] [--max-messages N]");
}

/* A dead-letter topic that TOPIC stands for, and the triggers whose dead
 * letters it holds ("in -> f, in -> g"; empty when none says so). */
#define DLQ_TARGETS 16
typedef struct dlq_target {
    char topic[SPATE_TOPIC_NAME_MAX + 1];
    char of[512];
} dlq_target;

static void add_of(dlq_target *t, const cJSON *trigger)
{
    size_t n = strlen(t->of);
    if (n < sizeof t->of)
        snprintf(t->of + n, sizeof t->of - n, "%s%s -> %s", n ? ", " : "",
                 json_str(trigger, "topic"), json_str(trigger, "function"));
}

/* Asks the server which dead-letter topics TOPIC stands for: itself when a
 * trigger sends its dead letters there, else those of the triggers that read
 * it (each trigger's own --dlq); a topic with neither stands for TOPIC.dlq
 * if that exists (the default of a trigger since removed), else for itself.
 * 0 with *n set, or 1 after saying why not. */
static int find_dlqs(const cli *c, const char *topic, dlq_target *out, int *n)
{
    *n = 0;
    answer a;
    if (request(c, "GET", "/v1/triggers", NULL, 0, &a)) return 1;
    if (a.status != 200) return finish(&a, NULL, answer_error("dlq: cannot list triggers", &a));
    cJSON *doc = answer_json("trigger ls", &a);
    if (!doc) return finish(&a, NULL, 1);
    const cJSON *t, *trs = cJSON_GetObjectItemCaseSensitive(doc, "triggers");
    cJSON_ArrayForEach(t, trs) if (strcmp(json_str(t, "dlq"), topic) == 0)
    {
        if (!*n) snprintf(out[(*n)++].topic, sizeof out->topic, "%s", topic);
        add_of(&out[0], t);
    }
    if (*n) return finish(&a, doc, 0);
    cJSON_ArrayForEach(t, trs)
    {
        if (strcmp(json_str(t, "topic"), topic) != 0) continue;
        int i = 0;
        while (i < *n && strcmp(out[i].topic, json_str(t, "dlq")) != 0) i++;
        if (i == *n && *n == DLQ_TARGETS) continue;
        if (i == *n) snprintf(out[(*n)++].topic, sizeof out->topic, "%s", json_str(t, "dlq"));
        add_of(&out[i], t);
    }
    finish(&a, doc, 0);
    if (*n) return 0;
    char name[SPATE_TOPIC_NAME_MAX + 8], path[1024];
    snprintf(name, sizeof name, "%s.dlq", topic);
    topic_path(path, sizeof path, "/v1/topics/", name, "");
    int found = request(c, "GET", path, NULL, 0, &a) == 0 && a.status == 200;
    if (!found) buf_free(&a.body);
    if (found) finish(&a, NULL, 0);
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

static int dlq_redrive(const cli *c, const char *asked, const dlq_target *t, int n)
{
    int rc = 0;
    cJSON *all = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        char path[512], how[700];
        describe_target(&t[i], asked, how, sizeof how);
        topic_path(path, sizeof path, "/v1/topics/", t[i].topic, "/redrive");
        answer a;
        if (request(c, "POST", path, "", 0, &a)) {
            rc = 1;
            continue;
        }
        if (a.status == 404 && t[i].of[0]) {
            /* Named by a trigger, never written to: nothing to move. */
            if (!c->json) printf("no dead letters in %s%s\n", t[i].topic, how);
            finish(&a, NULL, 0);
            continue;
        }
        if (a.status != 200) {
            char what[SPATE_TOPIC_NAME_MAX + 32];
            snprintf(what, sizeof what, "dlq redrive %.128s failed", t[i].topic);
            rc = finish(&a, NULL, answer_error(what, &a));
            continue;
        }
        cJSON *doc = answer_json("dlq redrive", &a);
        if (!doc) {
            rc = finish(&a, NULL, 1);
            continue;
        }
        double moved = json_num(doc, "redriven");
        if (!c->json)
            printf("redrove %.0f message%s from %s%s to their source topics\n", moved,
                   moved == 1 ? "" : "s", t[i].topic, how);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "topic", t[i].topic);
        cJSON_AddNumberToObject(o, "redriven", moved);
        cJSON_AddItemToArray(all, o);
        finish(&a, doc, 0);
    }
    if (c->json) {
        char *text = cJSON_PrintUnformatted(all);
        if (text) printf("{\"dead_letter_topics\":%s}\n", text);
        free(text);
    }
    cJSON_Delete(all);
    return rc;
}

static int dlq_ls(const cli *c, const char *asked, const dlq_target *t, int n)
{
    int rc = 0;
    cJSON *all = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        char path[512], how[700];
        describe_target(&t[i], asked, how, sizeof how);
        topic_path(path, sizeof path, "/v1/topics/", t[i].topic, "/messages?limit=1000");
        answer a;
        if (request(c, "GET", path, NULL, 0, &a)) {
            rc = 1;
            continue;
        }
        cJSON *doc = NULL;
        if (a.status == 200) {
            doc = answer_json("dlq ls", &a);
            if (!doc) rc = 1;
        } else if (!(a.status == 404 && t[i].of[0])) {
            char what[SPATE_TOPIC_NAME_MAX + 32];
            snprintf(what, sizeof what, "dlq ls %.128s failed", t[i].topic);
            rc = finish(&a, NULL, answer_error(what, &a));
            continue;
        }
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(doc, "messages"), *m;
        if (c->json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "topic", t[i].topic);
            cJSON_AddItemToObject(o, "messages",
                                  msgs ? cJSON_Duplicate(msgs, 1) : cJSON_CreateArray());
            cJSON_AddItemToArray(all, o);
            finish(&a, doc, 0);
            continue;
        }
        int dead = 0;
        cJSON_ArrayForEach(m, msgs) dead += *json_str(m, "source") != '\0';
        if (i) printf("\n");
        printf("%s%s: %d dead letter%s\n", t[i].topic, how, dead, dead == 1 ? "" : "s");
        if (dead) {
            printf("%-8s %-16s %-8s %-20s %-30s %s\n", "SEQ", "SOURCE", "ATTEMPTS", "KEY",
                   "PAYLOAD", "LAST ERROR");
            cJSON_ArrayForEach(m, msgs)
            {
                if (!*json_str(m, "source")) continue; /* not a dead letter */
                const char *payload = json_str(m, "payload");
                printf("%-8.0f %-16s %-8.0f %-20.20s %-30.30s %s\n", json_num(m, "seq"),
                       json_str(m, "source"), json_num(m, "attempts"), json_str(m, "key"),
                       *payload ? payload : "(binary)", json_str(m, "error"));
            }
        }
        finish(&a, doc, 0);
    }
    if (c->json) {
        char *text = cJSON_PrintUnformatted(all);
        if (text) printf("{\"dead_letter_topics\":%s}\n", text);
        free(text);
    }
    cJSON_Delete(all);
    return rc;
}

static int cmd_dlq(const cli *c, int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[0], "ls") != 0 && strcmp(argv[0], "redrive") != 0))
        usage_error("usage: spate dlq ls TOPIC | spate dlq redrive TOPIC");
    dlq_target t[DLQ_TARGETS];
    int n;
    if (find_dlqs(c, argv[1], t, &n)) return 1;
    return strcmp(argv[0], "redrive") == 0 ? dlq_redrive(c, argv[1], t, n)
                                           : dlq_ls(c, argv[1], t, n);
}

int main(int argc, char **argv)
{
    cli c = {.url = getenv("SPATE_URL"), .token = getenv("SPATE_TOKEN")};
    if (!c.url || !*c.url) c.url = "http://127.0.0.1:7728";
    if (c.token && !*c.token) c.token = NULL;

    /* Global options come before the command; --json is accepted anywhere. */
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("spate %s (commit %s)\n", SPATE_VERSION, SPATE_COMMIT);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            c.json = 1;
        } else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
            c.url = argv[++i];
        } else {
            usage_error("unknown option '%s'", argv[i]);
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    /* Take --json (and --url) wherever they appear after the command. */
    int n = 0;
    char **rest = calloc((size_t)(argc - i) + 1, sizeof *rest);
    if (!rest) return fail("out of memory");
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            c.json = 1;
        else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            c.url = argv[++i];
        else
            rest[n++] = argv[i];
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    static const struct {
        const char *name;
        int (*run)(const cli *c, int argc, char **argv);
    } commands[] = {
        {"deploy", cmd_deploy}, {"invoke", cmd_invoke},   {"ls", cmd_ls},
        {"status", cmd_status}, {"rm", cmd_rm},           {"publish", cmd_publish},
        {"logs", cmd_logs},     {"trigger", cmd_trigger}, {"topic", cmd_topic},
        {"dlq", cmd_dlq},       {"nodes", cmd_nodes},     {"config", cmd_config},
    };
    int rc = -1;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (strcmp(cmd, commands[k].name) == 0) rc = commands[k].run(&c, n, rest);
    if (rc < 0) usage_error("unknown command '%s'", cmd);
    curl_global_cleanup();
    free(rest);
    return rc;
}
