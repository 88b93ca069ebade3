/*
 * spated - the spate daemon: wires the store, the function table, the API and
 * the HTTP server onto one libuv loop, and stops gracefully on SIGTERM/SIGINT.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "api/auth.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/fnlog.h"
#include "common/parse.h"
#include "http/server.h"
#include "runtime/isolate.h"
#include "sched/functions.h"
#include "sched/pool.h"
#include "sched/triggers.h"
#include "store/queue.h"
#include "store/store.h"

typedef struct options {
    const char *data_dir;
    char host[256];
    int port;
    char runner[PATH_MAX];
    http_config http;
    api_limits limits;
    uint32_t grace_ms;
    uint32_t max_instances;
    const char *token_file;
    int insecure;
    const char *run_as;
    uint32_t uid_base;
    uint32_t pids_max;
    size_t function_log_max;
} options;

typedef struct node {
    uv_loop_t *loop;
    options opt;
    store *st;
    functions *table;
    queue *q;
    triggers *tr;
    api *api;
    http_server *http;
    uv_signal_t sigterm, sigint;
    uv_timer_t grace;
    int stopping;
    int queue_closing;
} node;

/* --- Options: one table of name, bounds and default ----------------------------- */

enum opt_kind { OPT_STRING, OPT_LISTEN, OPT_U32, OPT_SIZE, OPT_LOGLEVEL, OPT_LOGFORMAT, OPT_FLAG };

typedef struct opt_def {
    const char *name;
    enum opt_kind kind;
    size_t offset;
    uint64_t min, max;
    const char *help;
} opt_def;

#define OFF(f) offsetof(options, f)
static const opt_def opt_defs[] = {
    {"--data", OPT_STRING, OFF(data_dir), 0, 0, "data directory (store, artifacts) [./spate-data]"},
    {"--listen", OPT_LISTEN, 0, 0, 0, "HOST:PORT to serve the API on [127.0.0.1:7728]"},
    {"--runner", OPT_STRING, 0, 0, 0, "path of spate-runner [beside spated]"},
    {"--max-connections", OPT_U32, OFF(http.max_connections), 1, 1000000,
     "open client connections [1024]"},
    {"--idle-timeout", OPT_U32, OFF(http.idle_timeout_ms), 100, 86400000,
     "ms before an idle keep-alive connection closes [60000]"},
    {"--request-timeout", OPT_U32, OFF(http.request_timeout_ms), 100, 3600000,
     "ms for a request to arrive whole, else 408 [30000]"},
    {"--header-max", OPT_U32, OFF(http.header_bytes_max), 1024, 1048576,
     "bytes of request line and headers, else 431 [16384]"},
    {"--payload-max", OPT_SIZE, OFF(limits.invoke_payload_max), 0, SPATE_INVOKE_PAYLOAD_MAX,
     "bytes of an invoke payload, else 413 [6291456]"},
    {"--artifact-max", OPT_SIZE, OFF(limits.artifact_max), 1, 1024u * MIB,
     "bytes of an artifact, else 413 [67108864]"},
    {"--message-max", OPT_SIZE, OFF(limits.message_max), 1, 64u * MIB,
     "bytes of one published message, else 413 [262144]"},
    {"--publish-max", OPT_SIZE, OFF(limits.publish_max), 1, 1024u * MIB,
     "bytes of one publish request (an NDJSON batch), else 413 [16777216]"},
    {"--max-instances", OPT_U32, OFF(max_instances), 1, SPATE_NODE_INSTANCES_CEILING,
     "live instances on this node, over all functions [one per 16 MiB of memory]"},
    {"--shutdown-grace", OPT_U32, OFF(grace_ms), 0, 3600000,
     "ms in-flight invocations get on SIGTERM [30000]"},
    {"--token-file", OPT_STRING, OFF(token_file), 0, 0,
     "lines 'SCOPE TOKEN' (admin, invoke, publish); requests need a token [none]"},
    {"--insecure", OPT_FLAG, OFF(insecure), 0, 0,
     "allow a non-loopback --listen without a token file"},
    {"--run-as", OPT_STRING, OFF(run_as), 0, 0,
     "when spated is root, functions run in this user's group [nobody]"},
    {"--uid-base", OPT_U32, OFF(uid_base), 0, 4000000000u,
     "each function runs as its own uid from here on; 0: all as --run-as [2000000000]"},
    {"--pids-max", OPT_U32, OFF(pids_max), 1, 1000000,
     "processes and threads one instance may have (pids cgroup) [128]"},
    {"--function-log-max", OPT_SIZE, OFF(function_log_max), 65536, 1024u * 1024 * 1024,
     "bytes of a function's output file DATA/logs/NAME.log; one older file is kept [8388608]"},
    {"--log-level", OPT_LOGLEVEL, 0, 0, 0, "debug, info, warn or error [info]"},
    {"--log-format", OPT_LOGFORMAT, 0, 0, 0, "text, or json: one object a line [text]"},
};
#define NOPTS (sizeof opt_defs / sizeof opt_defs[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: spated [options]\n\n");
    for (size_t i = 0; i < NOPTS; i++)
        fprintf(out, "  %-20s %s\n", opt_defs[i].name, opt_defs[i].help);
    fprintf(out, "  %-20s %s\n  %-20s %s\n", "--version", "print the version and exit", "--help",
            "print this help and exit");
}

static void die(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "spated: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    exit(2);
}

static void default_runner(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(out, cap, "spate-runner");
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash || (size_t)(slash - self) + sizeof "/spate-runner" > cap) {
        snprintf(out, cap, "spate-runner");
        return;
    }
    memcpy(slash, "/spate-runner", sizeof "/spate-runner");
    memcpy(out, self, (size_t)(slash - self) + sizeof "/spate-runner");
}

/* 127.0.0.0/8, ::1 and localhost: reachable from this machine only. */
static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* One instance per 16 MiB of memory, within the floor and ceiling. */
static uint32_t default_max_instances(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    uint64_t n = pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size / (16u * MIB) : 0;
    if (n < SPATE_NODE_INSTANCES_FLOOR) n = SPATE_NODE_INSTANCES_FLOOR;
    if (n > SPATE_NODE_INSTANCES_CEILING) n = SPATE_NODE_INSTANCES_CEILING;
    return (uint32_t)n;
}

static void parse_options(int argc, char **argv, options *o)
{
    o->data_dir = "./spate-data";
    snprintf(o->host, sizeof o->host, "127.0.0.1");
    o->port = 7728;
    default_runner(o->runner, sizeof o->runner);
    http_config_defaults(&o->http);
    o->limits.invoke_payload_max = SPATE_INVOKE_PAYLOAD_MAX;
    o->limits.artifact_max = SPATE_ARTIFACT_MAX;
    o->limits.message_max = SPATE_MESSAGE_MAX;
    o->limits.publish_max = SPATE_PUBLISH_BODY_MAX;
    o->grace_ms = SPATE_SHUTDOWN_GRACE_MS;
    o->max_instances = default_max_instances();
    o->run_as = "nobody";
    o->uid_base = SPATE_UID_BASE;
    o->pids_max = SPATE_PIDS_DEFAULT;
    o->function_log_max = SPATE_LOG_FILE_MAX;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(arg, "--version") == 0) {
            printf("spated %s (commit %s)\n", SPATE_VERSION, SPATE_COMMIT);
            exit(0);
        }
        const opt_def *d = NULL;
        const char *val = NULL;
        for (size_t k = 0; k < NOPTS && !d; k++) {
            size_t n = strlen(opt_defs[k].name);
            if (strncmp(arg, opt_defs[k].name, n) != 0) continue;
            if (arg[n] == '=')
                val = arg + n + 1;
            else if (arg[n] != '\0')
                continue;
            d = &opt_defs[k];
        }
        if (!d) die("unknown option '%s' (see --help)%s", arg, "");
        if (d->kind == OPT_FLAG) {
            if (val) die("option '%s' takes no value%s", d->name, "");
            *(int *)((char *)o + d->offset) = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) die("option '%s' needs a value%s", arg, "");
            val = argv[++i];
        }
        uint64_t num;
        switch (d->kind) {
        case OPT_STRING:
            if (strcmp(d->name, "--runner") == 0)
                snprintf(o->runner, sizeof o->runner, "%s", val);
            else
                *(const char **)((char *)o + d->offset) = val;
            break;
        case OPT_LISTEN:
            if (parse_host_port(val, o->host, sizeof o->host, &o->port))
                die("--listen '%s' is not HOST:PORT%s", val, "");
            break;
        case OPT_U32:
        case OPT_SIZE:
            if (parse_u64(val, strlen(val), d->min, d->max, &num)) {
                char range[64];
                snprintf(range, sizeof range, "from %llu to %llu", (unsigned long long)d->min,
                         (unsigned long long)d->max);
                die("option '%s' must be an integer %s", d->name, range);
            }
            if (d->kind == OPT_U32)
                *(uint32_t *)((char *)o + d->offset) = (uint32_t)num;
            else
                *(size_t *)((char *)o + d->offset) = (size_t)num;
            break;
        case OPT_FLAG:
            break;
        case OPT_LOGLEVEL:
            if (log_level_parse(val) < 0)
                die("--log-level '%s' is not one of debug, info, warn, error%s", val, "");
            log_level_min = log_level_parse(val);
            break;
        case OPT_LOGFORMAT:
            if (log_format_parse(val) < 0)
                die("--log-format '%s' is not one of text, json%s", val, "");
            log_format = log_format_parse(val);
            break;
        }
    }
}

/* --- Stopping ------------------------------------------------------------------------ */

static void on_closed_handle(uv_handle_t *h)
{
    (void)h;
}

static void on_http_closed(void *data)
{
    node *n = data;
    uv_close((uv_handle_t *)&n->sigterm, on_closed_handle);
    uv_close((uv_handle_t *)&n->sigint, on_closed_handle);
    uv_close((uv_handle_t *)&n->grace, on_closed_handle);
}

/* Stopping goes down the layers: triggers stop leasing and their running
 * invocations finish; pools drain and stop; the queue commits its last
 * state; connections close. */
static void on_queue_closed(void *data)
{
    node *n = data;
    n->q = NULL;
    log_info("store committed; closing connections");
    http_server_close(n->http, on_http_closed, n);
}

/* The queue goes last: triggers and pools hold its leases until they stop. */
static void maybe_close_queue(node *n)
{
    if (!n->tr && !n->table && n->q && !n->queue_closing) {
        n->queue_closing = 1;
        queue_close(n->q, on_queue_closed, n);
    }
}

static void on_functions_closed(void *data)
{
    node *n = data;
    n->table = NULL;
    maybe_close_queue(n);
}

static void on_triggers_closed(void *data)
{
    node *n = data;
    n->tr = NULL;
    log_info("triggers stopped; draining functions");
    if (n->table) functions_close(n->table, 1, on_functions_closed, n);
    maybe_close_queue(n);
}

static void cut(node *n)
{
    if (n->tr) triggers_close(n->tr, 0, on_triggers_closed, n);
    if (n->table) functions_close(n->table, 0, on_functions_closed, n);
}

static void on_grace_over(uv_timer_t *t)
{
    node *n = t->data;
    log_warn("shutdown grace of %u ms is over: cutting running invocations", n->opt.grace_ms);
    cut(n);
}

static void on_signal(uv_signal_t *s, int signum)
{
    node *n = s->data;
    if (n->stopping) {
        log_warn("second %s: stopping now", strsignal(signum));
        cut(n);
        return;
    }
    n->stopping = 1;
    log_info("%s: stopping; in-flight invocations may finish", strsignal(signum));
    /* New connections and requests get 503 from here on. */
    http_server_drain(n->http);
    uv_timer_start(&n->grace, on_grace_over, n->opt.grace_ms, 0);
    triggers_close(n->tr, 1, on_triggers_closed, n);
}

int main(int argc, char **argv)
{
    node n = {0};
    log_set_tag("spated");
    parse_options(argc, argv, &n.opt);
    signal(SIGPIPE, SIG_IGN);
    if (access(n.opt.runner, X_OK) != 0)
        die("cannot run '%s': %s (use --runner)", n.opt.runner, strerror(errno));

    char err[512];
    auth *tokens = NULL;
    if (n.opt.token_file && auth_load(n.opt.token_file, &tokens, err, sizeof err) != 0)
        die("%s%s", err, "");
    if (!tokens && !is_loopback(n.opt.host) && !n.opt.insecure)
        die("refusing to listen on '%s' without --token-file: anyone who can reach it could run "
            "code (give --insecure to do it anyway)%s",
            n.opt.host, "");
    if (tokens) n.opt.http.header_bytes_preauth = SPATE_HTTP_HEADER_PREAUTH_MAX;
    if (store_open(n.opt.data_dir, &n.st, err, sizeof err) != 0) die("%s%s", err, "");
    /* Functions' output, a size-capped file each beside their ring in memory. */
    char logs_dir[4096];
    snprintf(logs_dir, sizeof logs_dir, "%s/logs", n.opt.data_dir);
    if (mkdir(logs_dir, 0700) != 0 && errno != EEXIST)
        die("cannot create %s: %s", logs_dir, strerror(errno));
    fnlog_set_files(logs_dir, n.opt.function_log_max);

    n.loop = uv_default_loop();
    if (isolate_init(n.loop, n.opt.run_as, n.opt.uid_base, n.opt.pids_max, err, sizeof err) != 0)
        die("%s%s", err, "");
    pool_set_node_max(n.opt.max_instances);
    if (functions_open(n.loop, n.st, n.opt.runner, &n.table) != 0)
        log_warn("some functions could not be restored (see above)");
    n.tr = triggers_create(n.loop, n.table);
    if (!n.tr) die("out of memory%s%s", "", "");
    if (queue_open(n.loop, n.st, triggers_events(n.tr), &n.q, err, sizeof err) != 0)
        die("%s%s", err, "");
    triggers_attach(n.tr, n.q);
    n.api = api_create(n.table, n.q, n.tr, tokens, &n.opt.limits);
    if (!n.api) die("out of memory%s%s", "", "");
    if (http_server_start(n.loop, n.opt.host, n.opt.port, &n.opt.http, api_http_handlers(), n.api,
                          &n.http, err, sizeof err) != 0)
        die("%s%s", err, "");

    uv_signal_init(n.loop, &n.sigterm);
    uv_signal_init(n.loop, &n.sigint);
    n.sigterm.data = n.sigint.data = &n;
    uv_signal_start(&n.sigterm, on_signal, SIGTERM);
    uv_signal_start(&n.sigint, on_signal, SIGINT);
    uv_timer_init(n.loop, &n.grace);
    n.grace.data = &n;

    log_info("listening on %s:%d data=%s version=%s max-instances=%u", n.opt.host,
             http_server_port(n.http), n.opt.data_dir, SPATE_VERSION, n.opt.max_instances);
    uv_run(n.loop, UV_RUN_DEFAULT);

    api_free(n.api);
    auth_free(tokens);
    store_close(n.st);
    isolate_cleanup();
    uv_run(n.loop, UV_RUN_DEFAULT); /* the handles isolate_cleanup closed */
    uv_loop_close(n.loop);
    log_info("stopped");
    return 0;
}
