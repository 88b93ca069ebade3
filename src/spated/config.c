#include "spated/config.h"

#include <errno.h>
#include <ini.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/parse.h"

/* OPT_PATHS is a list, "A,B,...": each occurrence adds to it (repeated
 * --KEY options, repeated keys or a comma-separated value in the file), and
 * the command line's, if any, replace the file's. */
enum opt_kind {
    OPT_STR,
    OPT_LISTEN,
    OPT_U32,
    OPT_SIZE,
    OPT_LOGLEVEL,
    OPT_LOGFORMAT,
    OPT_FLAG,
    OPT_PATHS
};

typedef struct opt_def {
    const char *key; /* the option is --key */
    enum opt_kind kind;
    size_t offset;
    uint64_t min, max; /* numbers; for OPT_STR max is the field's size */
    int live;          /* a reload can change it */
    const char *help;  /* --help shows the default after it, from defaults() */
    const char *dflt;  /* the default in words, where it is not a fixed value */
} opt_def;

#define OFF(f) offsetof(options, f)
#define STR(f) OPT_STR, OFF(f), 0, sizeof(((options *)0)->f)
static const opt_def opt_defs[] = {
    {"data", STR(data_dir), 0, "data directory (store, artifacts, logs)", NULL},
    {"listen", OPT_LISTEN, 0, 0, 0, 0, "HOST:PORT to serve the API on", NULL},
    {"runner", STR(runner), 0, "path of spate-runner", "beside spated"},
    {"max-connections", OPT_U32, OFF(http.max_connections), 1, 1000000, 1,
     "open client connections", NULL},
    {"idle-timeout", OPT_U32, OFF(http.idle_timeout_ms), 100, 86400000, 1,
     "ms before an idle keep-alive connection closes", NULL},
    {"request-timeout", OPT_U32, OFF(http.request_timeout_ms), 100, 3600000, 1,
     "ms for a request to arrive whole, else 408", NULL},
    {"header-timeout", OPT_U32, OFF(http.header_timeout_ms), 100, 3600000, 1,
     "ms for a new connection to send its first request's headers, else 408", NULL},
    {"max-new-connections", OPT_U32, OFF(http.new_max), 1, 1000000, 1,
     "connections without a complete request yet; over it the oldest closes", NULL},
    {"header-max", OPT_U32, OFF(http.header_bytes_max), 1024, 1048576, 1,
     "bytes of request line and headers, else 431", NULL},
    {"payload-max", OPT_SIZE, OFF(limits.invoke_payload_max), 0, SPATE_INVOKE_PAYLOAD_MAX, 1,
     "bytes of an invoke payload, else 413", NULL},
    {"artifact-max", OPT_SIZE, OFF(limits.artifact_max), 1, 1024u * MIB, 1,
     "bytes of an artifact, else 413", NULL},
    {"message-max", OPT_SIZE, OFF(limits.message_max), 1, 64u * MIB, 1,
     "bytes of one published message, else 413", NULL},
    {"publish-max", OPT_SIZE, OFF(limits.publish_max), 1, 1024u * MIB, 1,
     "bytes of one publish request (an NDJSON batch), else 413", NULL},
    {"max-topics", OPT_U32, OFF(limits.max_topics), 1, SPATE_TOPICS_CEILING, 1,
     "topics on this node; a publish, PUT or CreateQueue that would make one more is refused "
     "409 topic_limit",
     NULL},
    {"metrics-topics", OPT_U32, OFF(limits.metrics_topics), 0, SPATE_TOPICS_CEILING, 1,
     "topics /metrics and the dashboard's history give series of their own (the deepest); 0: "
     "none, only the counts",
     NULL},
    {"max-instances", OPT_U32, OFF(max_instances), 1, SPATE_NODE_INSTANCES_CEILING, 1,
     "live instances on this node, over all functions", "one per 16 MiB of memory"},
    {"max-starting", OPT_U32, OFF(max_starting), 1, SPATE_NODE_STARTING_CEILING, 1,
     "instances starting at once over all functions; more wait until one is ready or fails; "
     "the last quarter is kept for functions with none starting, one each",
     "8 per CPU, at least 16"},
    {"max-processes", OPT_U32, OFF(max_processes), 0, 4194304, 1,
     "processes and threads of all functions together (their pids cgroup); 0: only the host's "
     "limits",
     NULL},
    {"max-zygotes", OPT_U32, OFF(max_zygotes), 1, SPATE_ZYGOTES_CEILING, 1,
     "zygotes running at once, over all functions; when full the least recently used one "
     "with no instance at work stops (its idle ones first), and if none can, an invocation "
     "that needs one gets 503 zygote_budget; also the most spare instances (--spare-idle) the "
     "node keeps",
     NULL},
    {"zygote-idle", OPT_U32, OFF(zygote_idle_s), 0, 86400, 1,
     "seconds a function version's zygote runs without instances before it stops (the next "
     "invocation starts it again)",
     NULL},
    {"spare-idle", OPT_U32, OFF(spare_idle_s), 0, SPATE_SPARE_IDLE_CEILING_S, 1,
     "seconds a function keeps a spare instance (started ahead, handed to the next invocation "
     "that finds no instance) after it was last invoked or deployed (at most --max-zygotes "
     "of them; a burst of deploys gets a few); 0: no spares",
     NULL},
    {"shutdown-grace", OPT_U32, OFF(grace_ms), 0, 3600000, 1,
     "ms in-flight invocations get on SIGTERM", NULL},
    {"token-file", STR(token_file), 1,
     "lines 'SCOPE TOKEN [ACCESS_KEY_ID]' (admin, invoke, publish); requests need a token "
     "(AWS routes: SigV4 by ACCESS_KEY_ID)",
     NULL},
    {"insecure", OPT_FLAG, OFF(insecure), 0, 0, 0,
     "allow a non-loopback --listen without a token file, or with one but without TLS", NULL},
    {"tls-cert", STR(tls_cert), 1,
     "PEM certificate (chain) to serve the API over TLS with; reloaded on SIGHUP", NULL},
    {"tls-key", STR(tls_key), 1, "PEM private key of --tls-cert", NULL},
    {"tls-client-ca", STR(tls_client_ca), 1,
     "PEM CA certificate(s): clients must present a certificate signed by one (mutual TLS)", NULL},
    {"run-as", STR(run_as), 0, "when spated is root, functions run in this user's group", NULL},
    {"uid-base", OPT_U32, OFF(uid_base), 0, 4000000000u, 0,
     "each function runs as its own uid from here on; 0: all as --run-as", NULL},
    {"pids-max", OPT_U32, OFF(pids_max), 1, 1000000, 0,
     "processes and threads one instance may have (pids cgroup)", NULL},
    {"function-log-max", OPT_SIZE, OFF(function_log_max), 65536, 1024u * MIB, 1,
     "bytes of a function's output file DATA/logs/NAME.log; one older file is kept", NULL},
    {"writable", OPT_PATHS, OFF(writable), 0, sizeof(((options *)0)->writable), 0,
     "PATH[,PATH]: a host path functions may write; the rest is read-only to them (repeatable)",
     NULL},
    {"cluster", STR(cluster), 0,
     "nats://[USER:PASSWORD@|TOKEN@]HOST:PORT[,...] (tls://... for TLS): join the nodes "
     "sharing that NATS JetStream",
     NULL},
    {"cluster-creds", STR(cluster_creds), 0,
     "a NATS creds file (user JWT and seed) or an NKey seed file (seed and public key) to "
     "authenticate to NATS with",
     NULL},
    {"cluster-tls-ca", STR(cluster_tls_ca), 0,
     "PEM: the CA of the NATS servers' certificates (TLS required)", NULL},
    {"cluster-tls-cert", STR(cluster_tls_cert), 0,
     "PEM: this node's client certificate for NATS (with --cluster-tls-key)", NULL},
    {"cluster-tls-key", STR(cluster_tls_key), 0, "PEM: the key of --cluster-tls-cert", NULL},
    {"cluster-replicas", OPT_U32, OFF(cluster_replicas), 0, 5, 0,
     "replicas of the shared registry; 0: 3 with 3 NATS servers or more, else 1", NULL},
    {"cluster-key", STR(cluster_key), 0,
     "FILE: a secret (32 bytes or more, mode 600) every node of the cluster shares: registry "
     "entries, artifacts and messages between nodes are sealed and checked with it",
     NULL},
    {"catch-up", OPT_U32, OFF(catch_up), 0, SPATE_SCHEDULE_CATCH_UP_CEILING, 0,
     "runs of each schedule missed while spated was down that are published at start (the "
     "latest; the rest are skipped); 0: skip them all",
     NULL},
    {"log-level", OPT_LOGLEVEL, OFF(log_level), 0, 0, 1, "debug, info, warn or error", NULL},
    {"log-format", OPT_LOGFORMAT, OFF(log_format), 0, 0, 1, "text, or json: one object a line",
     NULL},
};
#define NOPTS (sizeof opt_defs / sizeof opt_defs[0])

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* --- Defaults ------------------------------------------------------------------------ */

static void default_runner(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    snprintf(out, cap, "spate-runner");
    if (n <= 0) return;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash) return;
    *slash = '\0';
    /* Beside spated (the build folder), else where make install puts it. */
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/spate-runner", self);
    if (access(path, X_OK) != 0) {
        char alt[PATH_MAX + 64];
        snprintf(alt, sizeof alt, "%s/../libexec/spate/spate-runner", self);
        if (access(alt, X_OK) == 0) snprintf(path, sizeof path, "%s", alt);
    }
    if (strlen(path) < cap) snprintf(out, cap, "%s", path);
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

/* SPATE_NODE_STARTING_PER_CPU per CPU, within the floor and ceiling. */
static uint32_t default_max_starting(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t n = cpus > 0 ? (uint64_t)cpus * SPATE_NODE_STARTING_PER_CPU : 0;
    if (n < SPATE_NODE_STARTING_FLOOR) n = SPATE_NODE_STARTING_FLOOR;
    if (n > SPATE_NODE_STARTING_CEILING) n = SPATE_NODE_STARTING_CEILING;
    return (uint32_t)n;
}

static void defaults(options *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->data_dir, sizeof o->data_dir, "./spate-data");
    snprintf(o->host, sizeof o->host, "127.0.0.1");
    o->port = 7728;
    default_runner(o->runner, sizeof o->runner);
    http_config_defaults(&o->http);
    o->limits.invoke_payload_max = SPATE_INVOKE_PAYLOAD_MAX;
    o->limits.artifact_max = SPATE_ARTIFACT_MAX;
    o->limits.message_max = SPATE_MESSAGE_MAX;
    o->limits.publish_max = SPATE_PUBLISH_BODY_MAX;
    o->limits.max_topics = SPATE_TOPICS_DEFAULT;
    o->limits.metrics_topics = SPATE_METRICS_TOPICS_DEFAULT;
    o->grace_ms = SPATE_SHUTDOWN_GRACE_MS;
    o->max_instances = default_max_instances();
    o->max_starting = default_max_starting();
    o->max_zygotes = SPATE_ZYGOTES_DEFAULT;
    o->zygote_idle_s = SPATE_ZYGOTE_IDLE_DEFAULT_MS / 1000;
    o->spare_idle_s = SPATE_SPARE_IDLE_DEFAULT_MS / 1000;
    o->catch_up = SPATE_SCHEDULE_CATCH_UP_DEFAULT;
    snprintf(o->run_as, sizeof o->run_as, "nobody");
    o->uid_base = SPATE_UID_BASE;
    o->pids_max = SPATE_PIDS_DEFAULT;
    o->function_log_max = SPATE_LOG_FILE_MAX;
    o->log_level = LOGL_INFO;
    o->log_format = LOG_TEXT;
}

/* --- Values --------------------------------------------------------------------------- */

static const opt_def *find(const char *key, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opt_defs[i].key) == len && strncmp(opt_defs[i].key, key, len) == 0)
            return &opt_defs[i];
    return NULL;
}

/* Sets d from text; NULL on success, else why not (into why). */
static const char *apply(options *o, const opt_def *d, const char *val, char *why, size_t cap)
{
    char *field = (char *)o + d->offset;
    uint64_t num;
    switch (d->kind) {
    case OPT_STR:
        if (strlen(val) >= d->max) {
            snprintf(why, cap, "is longer than %llu bytes", (unsigned long long)d->max - 1);
            return why;
        }
        snprintf(field, d->max, "%s", val);
        return NULL;
    case OPT_PATHS: {
        size_t used = strlen(field), add = strlen(val);
        if (!add) return NULL;
        if (used + (used > 0) + add >= d->max) {
            snprintf(why, cap, "the list is longer than %llu bytes",
                     (unsigned long long)d->max - 1);
            return why;
        }
        snprintf(field + used, d->max - used, "%s%s", used ? "," : "", val);
        return NULL;
    }
    case OPT_LISTEN:
        if (parse_host_port(val, o->host, sizeof o->host, &o->port)) {
            snprintf(why, cap, "'%.200s' is not HOST:PORT", val);
            return why;
        }
        return NULL;
    case OPT_U32:
    case OPT_SIZE:
        if (parse_u64(val, strlen(val), d->min, d->max, &num)) {
            snprintf(why, cap, "'%.64s' is not an integer from %llu to %llu", val,
                     (unsigned long long)d->min, (unsigned long long)d->max);
            return why;
        }
        if (d->kind == OPT_U32)
            *(uint32_t *)field = (uint32_t)num;
        else
            *(size_t *)field = (size_t)num;
        return NULL;
    case OPT_LOGLEVEL:
        if (log_level_parse(val) < 0) {
            snprintf(why, cap, "'%.64s' is not one of debug, info, warn, error", val);
            return why;
        }
        *(int *)field = log_level_parse(val);
        return NULL;
    case OPT_LOGFORMAT:
        if (log_format_parse(val) < 0) {
            snprintf(why, cap, "'%.64s' is not one of text, json", val);
            return why;
        }
        *(int *)field = log_format_parse(val);
        return NULL;
    case OPT_FLAG:
        if (strcmp(val, "true") == 0 || strcmp(val, "yes") == 0 || strcmp(val, "1") == 0) {
            *(int *)field = 1;
        } else if (strcmp(val, "false") == 0 || strcmp(val, "no") == 0 || strcmp(val, "0") == 0) {
            *(int *)field = 0;
        } else {
            snprintf(why, cap, "'%.64s' is not true or false", val);
            return why;
        }
        return NULL;
    }
    return NULL;
}

/* An option's value as shown (help, --check-config, reload's log): the
 * cluster's URLs without their passwords or tokens. */
static void value_text(const options *o, const opt_def *d, char *out, size_t cap)
{
    const char *field = (const char *)o + d->offset;
    switch (d->kind) {
    case OPT_STR:
        if (d->offset == OFF(cluster))
            cluster_shown_urls(field, out, cap);
        else
            snprintf(out, cap, "%s", field);
        return;
    case OPT_PATHS:
        snprintf(out, cap, "%s", field);
        return;
    case OPT_LISTEN:
        snprintf(out, cap, strchr(o->host, ':') ? "[%s]:%d" : "%s:%d", o->host, o->port);
        return;
    case OPT_U32:
        snprintf(out, cap, "%u", *(const uint32_t *)field);
        return;
    case OPT_SIZE:
        snprintf(out, cap, "%zu", *(const size_t *)field);
        return;
    case OPT_LOGLEVEL:
        snprintf(out, cap, "%s", level_names[*(const int *)field & 3]);
        return;
    case OPT_LOGFORMAT:
        snprintf(out, cap, "%s", *(const int *)field == LOG_JSON ? "json" : "text");
        return;
    case OPT_FLAG:
        snprintf(out, cap, "%s", *(const int *)field ? "true" : "false");
        return;
    }
}

static void defaults(options *o);

/* Each option's default is the value defaults() gives it, so that the help
 * says what spated does (a flag has none to say). */
static void usage(FILE *out)
{
    options d;
    defaults(&d);
    fprintf(out, "usage: spated [options]\n\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const opt_def *o = &opt_defs[i];
        char name[40], val[512];
        snprintf(name, sizeof name, "--%s", o->key);
        if (o->kind == OPT_FLAG) {
            fprintf(out, "  %-20s %s\n", name, o->help);
            continue;
        }
        if (o->dflt)
            snprintf(val, sizeof val, "%s", o->dflt);
        else
            value_text(&d, o, val, sizeof val);
        fprintf(out, "  %-20s %s [%s]\n", name, o->help, val[0] ? val : "none");
    }
    fprintf(out, "  %-20s %s\n  %-20s %s\n  %-20s %s\n  %-20s %s\n", "--config FILE",
            "read options from FILE (key = value; the command line wins)", "--check-config",
            "print the effective configuration and exit (0 when valid)", "--version",
            "print the version and exit", "--help", "print this help and exit");
}

/* --- The file ----------------------------------------------------------------------------- */

typedef struct ini_ctx {
    FILE *f;
    const char *path;
    int line;
    options *o;
    char *err;
    size_t errcap;
    int failed, full;
} ini_ctx;

/* Every error of the file is said, one a line ("\n" between them), so that
 * one --check-config shows all there is to fix; beyond what err holds, the
 * last line says that more followed. */
static void file_error(ini_ctx *c, const char *fmt, const char *a, const char *b)
{
    char line[600];
    int n = snprintf(line, sizeof line, "%s:%d: ", c->path, c->line);
    if (n > 0 && (size_t)n < sizeof line) snprintf(line + n, sizeof line - (size_t)n, fmt, a, b);
    size_t used = strlen(c->err);
    if (c->failed && c->full) return;
    const char *more = "\n(and more errors)";
    if (used + 1 + strlen(line) + strlen(more) >= c->errcap) {
        if (c->failed && used + strlen(more) < c->errcap)
            memcpy(c->err + used, more, strlen(more) + 1);
        c->full = 1;
        if (c->failed) return;
    }
    snprintf(c->err + used, c->errcap - used, "%s%s", c->failed ? "\n" : "", line);
    c->failed = 1;
}

/* Reads one line for inih, counting lines so errors can name them. */
static char *read_line(char *str, int num, void *stream)
{
    ini_ctx *c = stream;
    if (!fgets(str, num, c->f)) return NULL;
    c->line++;
    size_t len = strlen(str);
    if (len == (size_t)num - 1 && str[len - 1] != '\n' && !feof(c->f)) {
        char max[24];
        snprintf(max, sizeof max, "%d", num - 2);
        file_error(c, "line longer than %s bytes%s", max, "");
        /* Skip the rest of it. */
        int ch;
        while ((ch = fgetc(c->f)) != EOF && ch != '\n') {
        }
    }
    return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx *c = user;
    if (section[0] && strcmp(section, "spated") != 0) {
        file_error(c, "unknown section [%s] (keys go at the top or under [spated])%s", section, "");
        return 1;
    }
    char key[64];
    snprintf(key, sizeof key, "%s", name);
    for (char *p = key; *p; p++)
        if (*p == '_') *p = '-';
    const opt_def *d = find(key, strlen(key));
    if (!d) {
        if (strcmp(key, "config") == 0 || strcmp(key, "check-config") == 0)
            file_error(c, "key '%s' belongs on the command line only%s", key, "");
        else
            file_error(c, "unknown key '%s' (spated --help lists the options)%s", key, "");
        return 1;
    }
    char why[512];
    const char *bad = apply(c->o, d, value, why, sizeof why);
    if (bad) file_error(c, "key '%s': %s", name, bad);
    return 1;
}

static int load_file(const char *path, options *o, char *err, size_t errcap)
{
    ini_ctx c = {.path = path, .o = o, .err = err, .errcap = errcap};
    err[0] = '\0';
    c.f = fopen(path, "r");
    if (!c.f) {
        snprintf(err, errcap, "cannot read config file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(c.f), &st) == 0 && st.st_size > (off_t)SPATE_CONFIG_FILE_MAX) {
        snprintf(err, errcap, "config file %s is larger than %u bytes", path,
                 SPATE_CONFIG_FILE_MAX);
        fclose(c.f);
        return -1;
    }
    int rc = ini_parse_stream(read_line, &c, on_key, &c);
    fclose(c.f);
    if (rc > 0) {
        c.line = rc;
        file_error(&c, "not 'key = value', a [section] or a comment%s%s", "", "");
    }
    if (rc < 0 && !c.failed) {
        snprintf(err, errcap, "cannot parse config file %s", path);
        return -1;
    }
    return c.failed ? -1 : 0;
}

/* --- The command line ------------------------------------------------------------------------ */

int config_load(int argc, char **argv, options *o, char *err, size_t errcap)
{
    defaults(o);
    /* First what decides the rest: help, version, the file. */
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
        if (strcmp(arg, "--check-config") == 0) o->check_config = 1;
        const char *file = NULL;
        if (strncmp(arg, "--config=", 9) == 0) {
            file = arg + 9;
        } else if (strcmp(arg, "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errcap, "option '--config' needs a value");
                return -1;
            }
            file = argv[++i];
        }
        if (file) snprintf(o->config_file, sizeof o->config_file, "%s", file);
    }
    if (o->config_file[0] && load_file(o->config_file, o, err, errcap) != 0) return -1;

    unsigned char listed[NOPTS] = {0}; /* lists the command line has begun anew */
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--check-config") == 0 || strncmp(arg, "--config=", 9) == 0) continue;
        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        const opt_def *d = NULL;
        const char *val = NULL;
        if (strncmp(arg, "--", 2) == 0) {
            const char *eq = strchr(arg + 2, '=');
            d = find(arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
            if (eq) val = eq + 1;
        }
        if (!d) {
            snprintf(err, errcap, "unknown option '%.200s' (see --help)", arg);
            return -1;
        }
        if (d->kind == OPT_FLAG && !val) {
            val = "true";
        } else if (!val) {
            if (i + 1 >= argc) {
                snprintf(err, errcap, "option '--%s' needs a value", d->key);
                return -1;
            }
            val = argv[++i];
        }
        if (d->kind == OPT_PATHS && !listed[d - opt_defs]) {
            listed[d - opt_defs] = 1;
            ((char *)o + d->offset)[0] = '\0';
        }
        char why[512];
        const char *bad = apply(o, d, val, why, sizeof why);
        if (bad) {
            snprintf(err, errcap, "option '--%s': %s", d->key, bad);
            return -1;
        }
    }
    return config_absolute_paths(o, err, errcap);
}

/* A relative path becomes absolute against the working directory spated was
 * started in: spated and the processes it starts (whose working directory is
 * elsewhere) must agree on it, and so must a reload. "./x" loses its "./". */
static int absolute(char *path, size_t cap, const char *what, char *err, size_t errcap)
{
    if (!path[0] || path[0] == '/') return 0;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        snprintf(err, errcap, "cannot make %s '%s' absolute: %s", what, path, strerror(errno));
        return -1;
    }
    const char *rel = path;
    while (rel[0] == '.' && rel[1] == '/') {
        rel += 2;
        while (*rel == '/') rel++;
    }
    if (strcmp(rel, ".") == 0) rel = "";
    char full[PATH_MAX * 2 + 2];
    int n = snprintf(full, sizeof full, "%s%s%s", cwd, rel[0] && strcmp(cwd, "/") ? "/" : "", rel);
    if (n < 0 || (size_t)n >= cap) {
        snprintf(err, errcap, "%s '%s' is longer than %zu bytes once absolute", what, path,
                 cap - 1);
        return -1;
    }
    memcpy(path, full, (size_t)n + 1);
    return 0;
}

/* Whether path is dir or below it. */
static int is_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The --writable list, each entry absolute and resolved (the runner binds
 * exactly that path, so no link in it may lead elsewhere later), checked,
 * and written back "A,B,...". */
static int resolve_writable(options *o, char *err, size_t errcap)
{
    char out[sizeof o->writable] = "";
    size_t used = 0;
    int count = 0;
    for (const char *p = o->writable; *p;) {
        size_t len = strcspn(p, ",");
        const char *next = p + len + (p[len] == ',');
        while (len && (*p == ' ' || *p == '\t')) p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (!len) {
            p = next;
            continue;
        }
        char path[PATH_MAX], real[PATH_MAX];
        snprintf(path, sizeof path, "%.*s", (int)len, p);
        p = next;
        if (absolute(path, sizeof path, "--writable", err, errcap)) return -1;
        if (!realpath(path, real)) {
            snprintf(err, errcap, "cannot use --writable '%s': %s", path, strerror(errno));
            return -1;
        }
        static const char *const own[] = {"/tmp", "/dev/shm", "/var/task"};
        for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
            if (is_under(real, own[i])) {
                snprintf(err, errcap,
                         "cannot use --writable '%s': each instance has a %s of its own, which "
                         "hides it",
                         real, own[i]);
                return -1;
            }
        if (strcmp(real, "/") == 0) {
            snprintf(err, errcap,
                     "cannot use --writable '/': name the directories to leave writable");
            return -1;
        }
        if (strchr(real, ',')) {
            snprintf(err, errcap, "cannot use --writable '%s': commas separate the list's paths",
                     real);
            return -1;
        }
        if (++count > SPATE_WRITABLE_MAX) {
            snprintf(err, errcap, "--writable: more than %d paths (bind a common parent instead)",
                     SPATE_WRITABLE_MAX);
            return -1;
        }
        size_t rl = strlen(real);
        if (used + (used > 0) + rl >= sizeof out) {
            snprintf(err, errcap, "--writable: the list is longer than %zu bytes once resolved",
                     sizeof out - 1);
            return -1;
        }
        used += (size_t)snprintf(out + used, sizeof out - used, "%s%s", used ? "," : "", real);
    }
    memcpy(o->writable, out, used + 1);
    return 0;
}

int config_absolute_paths(options *o, char *err, size_t errcap)
{
    return resolve_writable(o, err, errcap) ||
           absolute(o->data_dir, sizeof o->data_dir, "--data", err, errcap) ||
           /* A bare name is looked up in PATH. */
           (strchr(o->runner, '/') &&
            absolute(o->runner, sizeof o->runner, "--runner", err, errcap)) ||
           absolute(o->token_file, sizeof o->token_file, "--token-file", err, errcap) ||
           absolute(o->tls_cert, sizeof o->tls_cert, "--tls-cert", err, errcap) ||
           absolute(o->tls_key, sizeof o->tls_key, "--tls-key", err, errcap) ||
           absolute(o->tls_client_ca, sizeof o->tls_client_ca, "--tls-client-ca", err, errcap) ||
           absolute(o->cluster_creds, sizeof o->cluster_creds, "--cluster-creds", err, errcap) ||
           absolute(o->cluster_tls_ca, sizeof o->cluster_tls_ca, "--cluster-tls-ca", err, errcap) ||
           absolute(o->cluster_tls_cert, sizeof o->cluster_tls_cert, "--cluster-tls-cert", err,
                    errcap) ||
           absolute(o->cluster_tls_key, sizeof o->cluster_tls_key, "--cluster-tls-key", err,
                    errcap) ||
           absolute(o->config_file, sizeof o->config_file, "--config", err, errcap);
}

void config_print(const options *o, FILE *out)
{
    fprintf(out, "# spated %s: the effective configuration%s%s\n", SPATE_VERSION,
            o->config_file[0] ? " from " : "", o->config_file);
    for (size_t i = 0; i < NOPTS; i++) {
        char v[PATH_MAX + 64];
        value_text(o, &opt_defs[i], v, sizeof v);
        fprintf(out, "%s = %s\n", opt_defs[i].key, v);
    }
}

void config_diff(const options *cur, const options *next, config_change_cb cb, void *data)
{
    for (size_t i = 0; i < NOPTS; i++) {
        char was[PATH_MAX + 64], now[PATH_MAX + 64];
        value_text(cur, &opt_defs[i], was, sizeof was);
        value_text(next, &opt_defs[i], now, sizeof now);
        /* A masked value (the cluster's URL) may differ only in what it hides. */
        int hidden =
            opt_defs[i].kind == OPT_STR && strcmp((const char *)cur + opt_defs[i].offset,
                                                  (const char *)next + opt_defs[i].offset) != 0;
        if (strcmp(was, now) != 0 || hidden) cb(opt_defs[i].key, was, now, opt_defs[i].live, data);
    }
}
