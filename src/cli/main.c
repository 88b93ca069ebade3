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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    fprintf(out, "usage: spate [--url URL] [--json] COMMAND ...\n\n"
                 "  deploy NAME FILE [--runtime native|exec] [--min N] [--max N] [--timeout MS]\n"
                 "                   [--memory MB] [--keep-alive MS] [--queue N] [--env K=V]...\n"
                 "  invoke NAME [PAYLOAD | -]     print the function's output on stdout\n"
                 "  ls                            list functions\n"
                 "  status NAME                   describe a function, its instances and versions\n"
                 "  rm NAME                       delete a function\n\n"
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
static int request(const cli *c, const char *method, const char *path, const void *body, size_t len,
                   answer *out)
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
    if (body) hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
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

static int cmd_deploy(const cli *c, int argc, char **argv)
{
    if (argc < 2) usage_error("deploy needs NAME and FILE");
    const char *name = argv[0], *file = argv[1];
    buf q;
    buf_init(&q, 64 * KIB);
    static const char *const numeric[][2] = {{"--min", "min"},
                                             {"--max", "max"},
                                             {"--timeout", "timeout"},
                                             {"--memory", "memory"},
                                             {"--keep-alive", "keep_alive"},
                                             {"--queue", "queue"}};
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) usage_error("option '%s' needs a value", opt);
        const char *val = argv[++i];
        const char *key = NULL;
        if (strcmp(opt, "--runtime") == 0)
            key = "runtime";
        else if (strcmp(opt, "--env") == 0)
            key = "env";
        for (size_t k = 0; !key && k < sizeof numeric / sizeof numeric[0]; k++)
            if (strcmp(opt, numeric[k][0]) == 0) key = numeric[k][1];
        if (!key) usage_error("unknown deploy option '%s'", opt);
        add_param(&q, key, val);
    }
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
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(cfg, "env");
    const cJSON *e;
    cJSON_ArrayForEach(e, env)
        printf("%senv %s=%s\n", indent, e->string, cJSON_IsString(e) ? e->valuestring : "");
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

static int cmd_rm(const cli *c, int argc, char **argv)
{
    if (argc != 1) usage_error("rm needs NAME");
    char path[1024];
    function_path(path, sizeof path, argv[0], "");
    answer a;
    if (request(c, "DELETE", path, NULL, 0, &a)) return 1;
    if (a.status >= 300) return finish(&a, NULL, answer_error("rm failed", &a));
    if (c->json)
        printf("{\"removed\":\"%s\"}\n", argv[0]);
    else
        printf("removed %s\n", argv[0]);
    return finish(&a, NULL, 0);
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
    int rc;
    if (strcmp(cmd, "deploy") == 0)
        rc = cmd_deploy(&c, n, rest);
    else if (strcmp(cmd, "invoke") == 0)
        rc = cmd_invoke(&c, n, rest);
    else if (strcmp(cmd, "ls") == 0)
        rc = cmd_ls(&c, n, rest);
    else if (strcmp(cmd, "status") == 0)
        rc = cmd_status(&c, n, rest);
    else if (strcmp(cmd, "rm") == 0)
        rc = cmd_rm(&c, n, rest);
    else
        usage_error("unknown command '%s'", cmd);
    curl_global_cleanup();
    free(rest);
    return rc;
}
