/*
 * spated - the spate daemon: wires the store, the function table, the API and
 * the HTTP server onto one libuv loop, stops gracefully on SIGTERM/SIGINT and
 * reloads what can change at run time on SIGHUP (spated/config.h).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "api/api.h"
#include "api/auth.h"
#include "cluster/cluster.h"
#include "cluster/jsqueue.h"
#include "common/err.h"
#include "common/failio.h"
#include "common/failpoint.h"
#include "common/json_alloc.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/fnlog.h"
#include "common/parse.h"
#include "http/server.h"
#include "metrics/history.h"
#include "runtime/isolate.h"
#include "sched/functions.h"
#include "sched/pool.h"
#include "sched/triggers.h"
#include "schedules/schedules.h"
#include "sources/sources.h"
#include "spated/config.h"
#include "store/faultvfs.h"
#include "store/registry_sqlite.h"
#include "store/sqlqueue.h"
#include "store/store.h"
#include "spated/tls.h"

typedef struct node {
    uv_loop_t *loop;
    options opt;
    int argc; /* kept for reloads, which read the command line again */
    char **argv;
    auth *tokens;
    char logs_dir[PATH_MAX + 8];
    store *st;
    registry *reg; /* the node's, or the cluster's over it */
    functions *table;
    queue *q;
    schedules *sched;
    triggers *tr;
    sources *src;
    api *api;
    http_server *http;
    cluster *cluster;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t grace;
    uv_timer_t hard; /* after the cut: the bound on what is left of stopping */
    int cutting;
    int stopping;
    int queue_closing;
    int src_closing;
} node;

/* --- Options: one table of name, bounds and default ----------------------------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char text[8192];
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    /* One "spated: " a line: a config file's errors come several at once. */
    for (char *line = text, *end; line; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        fprintf(stderr, "spated: %.*s\n", end ? (int)(end - line) : (int)strlen(line), line);
    }
    exit(2);
}

/* 127.0.0.0/8, ::1 and localhost: reachable from this machine only. */
static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* The uids spated hands to functions (isolate.h): --run-as's, and with
 * --uid-base every uid from there up (isolate_uid assigns them only there).
 * When spated is not root, functions run as its own user and no uid tells
 * them apart from it: then none is function code's, as nothing would
 * enforce the difference (docs/api.md). */
static int is_function_uid(uid_t uid, void *data)
{
    (void)data;
    const isolate_config *iso = isolate_get();
    if (!iso->drop) return 0;
    return uid == iso->uid || (iso->uid_base && uid >= iso->uid_base);
}

/* Every connection and every instance's Runtime API endpoint is a
 * descriptor: the soft limit goes up to the hard one, as servers do. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_warn("cannot raise the open files limit: %s", strerror(errno));
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
    /* Last: until now functions ran invocations other nodes sent. */
    cluster_stop(n->cluster);
    n->cluster = NULL;
    uv_close((uv_handle_t *)&n->sigterm, on_closed_handle);
    uv_close((uv_handle_t *)&n->sigint, on_closed_handle);
    uv_close((uv_handle_t *)&n->sighup, on_closed_handle);
    uv_close((uv_handle_t *)&n->grace, on_closed_handle);
    uv_close((uv_handle_t *)&n->hard, on_closed_handle);
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

/* The queue goes last: triggers and pools hold its leases until they stop,
 * sources publish into it until theirs do. */
static void maybe_close_queue(node *n)
{
    if (!n->tr && !n->table && !n->src && n->q && !n->queue_closing) {
        n->queue_closing = 1;
        queue_close(n->q, on_queue_closed, n);
    }
}

static void on_sources_closed(void *data)
{
    node *n = data;
    n->src = NULL;
    api_set_sources(n->api, NULL);
    maybe_close_queue(n);
}

/* Sources stop first: each finishes its batch in flight (a committed one is
 * acked upstream), and what is not acked stays pending upstream for the
 * next start. */
static void close_sources(node *n)
{
    if (n->src && !n->src_closing) {
        n->src_closing = 1;
        sources_close(n->src, on_sources_closed, n);
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

/* The cut did not finish in SPATE_SHUTDOWN_CUT_MS: something (a function's
 * process, a zygote that lies about its instances) holds it up. Stopping is
 * bounded whatever a function does: kill what is left of the functions and
 * exit. Everything acknowledged is already on disk. */
static void on_hard_stop(uv_timer_t *t)
{
    node *n = t->data;
    log_error("still stopping %d ms after the cut (%s%s%s): killing what is left and exiting",
              SPATE_SHUTDOWN_CUT_MS, n->tr ? "triggers " : "", n->table ? "functions " : "",
              n->q ? "queue" : "");
    isolate_version_kill_all();
    exit(1);
}

static void cut(node *n)
{
    if (!n->cutting) {
        n->cutting = 1;
        uv_timer_start(&n->hard, on_hard_stop, SPATE_SHUTDOWN_CUT_MS, 0);
    }
    close_sources(n);
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
    sd_notify(0, "STOPPING=1");
    cluster_quiesce(n->cluster);
    log_info("%s: stopping; in-flight invocations may finish", strsignal(signum));
    /* New connections and requests get 503 from here on. */
    http_server_drain(n->http);
    api_stop(n->api);         /* the triggers and functions it reads are closing */
    schedules_stop(n->sched); /* no more runs; those publishing complete with the queue */
    uv_timer_start(&n->grace, on_grace_over, n->opt.grace_ms, 0);
    close_sources(n);
    triggers_close(n->tr, 1, on_triggers_closed, n);
}

/* --- Reloading (SIGHUP) ----------------------------------------------------------------- */

static void on_change(const char *key, const char *was, const char *now, int live, void *data)
{
    node *n = data;
    /* A token file can be replaced, not added or taken away: that changes
     * what the listener accepts (is_loopback, the pre-auth header limit). */
    if (strcmp(key, "token-file") == 0 && (!was[0] || !now[0])) live = 0;
    /* Likewise TLS: a certificate can be replaced, not added or taken away. */
    if ((strcmp(key, "tls-cert") == 0 || strcmp(key, "tls-key") == 0) && (!was[0] || !now[0]))
        live = 0;
    if (live)
        log_info("reload: %s %s -> %s", key, was[0] ? was : "(none)", now[0] ? now : "(none)");
    else
        log_warn("reload: %s changed (%s -> %s) but takes a restart; still %s", key,
                 was[0] ? was : "(none)", now[0] ? now : "(none)", was[0] ? was : "(none)");
    (void)n;
}

/* --max-processes: the pids cgroup of every function's processes. */
static void set_max_processes(uint32_t max)
{
    int rc = isolate_set_node_pids_max(max);
    if (rc == ERR_NOTSUP && max)
        log_warn("--max-processes %u is not enforced: no writable pids cgroup", max);
    else if (rc != 0 && rc != ERR_NOTSUP)
        log_warn("cannot set --max-processes %u: %s", max, strerror(errno));
}

/* What may change at run time goes into effect everywhere it is read. */
static void apply_live(node *n)
{
    log_level_min = n->opt.log_level;
    log_format = n->opt.log_format;
    http_server_set_config(n->http, &n->opt.http);
    api_set_limits(n->api, &n->opt.limits);
    if (n->src) sources_set_message_max(n->src, n->opt.limits.message_max);
    pool_set_node_max(n->opt.max_instances);
    pool_set_node_starting_max(n->opt.max_starting);
    set_max_processes(n->opt.max_processes);
    pool_set_zygote_budget(n->opt.max_zygotes, n->opt.zygote_idle_s * 1000u);
    pool_set_spare_idle(n->opt.spare_idle_s * 1000u);
    fnlog_set_files(n->logs_dir, n->opt.function_log_max);
}

static void on_reload(uv_signal_t *s, int signum)
{
    node *n = s->data;
    if (n->stopping) return;
    sd_notify(0, "RELOADING=1");
    options next;
    char err[4096];
    if (config_load(n->argc, n->argv, &next, err, sizeof err) != 0) {
        for (char *p = err; (p = strchr(p, '\n')) != NULL;) *p = ';'; /* one log line */
        log_error("reload failed: %s; the running configuration stays", err);
        sd_notify(0, "READY=1");
        return;
    }
    config_diff(&n->opt, &next, on_change, n);
    /* A new token file, or the same one changed: load it. */
    if (n->tokens && next.token_file[0]) {
        auth *tokens = NULL;
        if (auth_load(next.token_file, &tokens, err, sizeof err) != 0) {
            log_error("reload: %s; the tokens in use stay", err);
            snprintf(next.token_file, sizeof next.token_file, "%s", n->opt.token_file);
        } else {
            api_set_auth(n->api, tokens); /* read only while admitting: safe to swap */
            auth_free(n->tokens);
            n->tokens = tokens;
            log_info("reload: tokens loaded from %s", next.token_file);
        }
    } else {
        snprintf(next.token_file, sizeof next.token_file, "%s", n->opt.token_file);
    }
    /* The certificate is read again even when its path is the same: a
     * rotation writes new files where the old ones were. */
    spated_tls_reload(n->http, &n->opt, &next);
    /* What takes a restart keeps its running value. */
    options cur = n->opt;
    memcpy(next.data_dir, cur.data_dir, sizeof next.data_dir);
    memcpy(next.host, cur.host, sizeof next.host);
    next.port = cur.port;
    memcpy(next.runner, cur.runner, sizeof next.runner);
    next.insecure = cur.insecure;
    memcpy(next.run_as, cur.run_as, sizeof next.run_as);
    next.uid_base = cur.uid_base;
    next.pids_max = cur.pids_max;
    next.http.header_bytes_preauth = cur.http.header_bytes_preauth;
    n->opt = next;
    apply_live(n);
    log_info("%s: configuration reloaded", strsignal(signum));
    sd_notify(0, "READY=1");
}

/* --- Starting ------------------------------------------------------------------------------ */

/* Cluster mode: what the cluster and the scheduler need of each other, and
 * what the API shows of the nodes, wired here so that neither knows the
 * other. */
static uint32_t live_nodes(void *data)
{
    return cluster_live_nodes(data);
}

static uint64_t node_rejected(void *data, int kind)
{
    return cluster_refused(data, (enum cluster_refused)kind);
}

static const char *node_self(void *data)
{
    return cluster_node_id(data);
}

static int node_connected(void *data)
{
    return cluster_connected(data);
}

static cJSON *nodes_json(void *data)
{
    return cluster_nodes_json(data);
}

static void node_figures(void *data, uint32_t *instances, uint32_t *deployed)
{
    *instances = pool_node_live();
    *deployed = functions_count(data);
}

static void run_routed(void *data, const char *function, const char *request_id,
                       const void *payload, size_t len, uint32_t timeout_ms,
                       cluster_answer_fn answer, void *ctx)
{
    functions_run_routed(data, function, request_id, payload, len, timeout_ms, answer, ctx);
}

static int route_invoke(void *router, const char *function, const char *request_id,
                        const void *payload, size_t len, uint32_t timeout_ms, fn_routed_cb cb,
                        void *data)
{
    return cluster_route_invoke(router, function, request_id, payload, len, timeout_ms, cb, data);
}

int main(int argc, char **argv)
{
    node n = {0};
    log_set_tag("spated");
    char err[4096];
    /* Before anything allocates, so that SPATE_FAIL_ALLOC=N counts from the start. */
    if (failpoint_init_env(err, sizeof err) != 0) die("%s", err);
    /* I/O faults (SPATE_FAIL_IO): the store's files through the failing VFS. */
    if (failio_init_env() && faultvfs_register() != 0)
        die("cannot register the failing SQLite VFS (SPATE_FAIL_IO)");
    json_alloc_init();
    if (config_load(argc, argv, &n.opt, err, sizeof err) != 0) die("%s", err);
    n.argc = argc;
    n.argv = argv;
    log_level_min = n.opt.log_level;
    log_format = n.opt.log_format;
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (access(n.opt.runner, X_OK) != 0)
        die("cannot run '%s': %s (use --runner)", n.opt.runner, strerror(errno));

    if (n.opt.token_file[0] && auth_load(n.opt.token_file, &n.tokens, err, sizeof err) != 0)
        die("%s", err);
    http_tls *tls = NULL;
    if (spated_tls_load(&n.opt, &tls, err, sizeof err) != 0) die("%s", err);
    if (!n.tokens && !is_loopback(n.opt.host) && !n.opt.insecure)
        die("refusing to listen on '%s' without --token-file: anyone who can reach it could run "
            "code (give --insecure to do it anyway)",
            n.opt.host);
    if (!tls && !is_loopback(n.opt.host) && !n.opt.insecure)
        die("refusing to listen on '%s' without TLS: every token and payload would cross the "
            "network readable (give --tls-cert and --tls-key, or --insecure to do it anyway)",
            n.opt.host);
    if (!is_loopback(n.opt.host) && (!n.tokens || !tls))
        log_warn("--insecure: listening on '%s'%s%s", n.opt.host,
                 n.tokens ? "" : " without tokens: anyone who can reach it may run code",
                 tls ? "" : " in clear: tokens and payloads cross the network readable");
    cluster_config cc = {.urls = n.opt.cluster,
                         .data_dir = n.opt.data_dir,
                         .api_url = "",
                         .replicas = n.opt.cluster_replicas,
                         .creds = n.opt.cluster_creds,
                         .tls_ca = n.opt.cluster_tls_ca,
                         .tls_cert = n.opt.cluster_tls_cert,
                         .tls_key = n.opt.cluster_tls_key,
                         .key_file = n.opt.cluster_key};
    if (!n.opt.cluster[0] && (cc.creds[0] || cc.tls_ca[0] || cc.tls_cert[0] || cc.tls_key[0]))
        die("--cluster-creds and --cluster-tls-* are for cluster mode: give --cluster too");
    if (n.opt.cluster[0] && cluster_check_files(&cc, err, sizeof err) != 0) die("%s", err);
    if (n.opt.check_config) {
        config_print(&n.opt, stdout);
        http_tls_free(tls);
        auth_free(n.tokens);
        return 0;
    }
    if (n.tokens) n.opt.http.header_bytes_preauth = SPATE_HTTP_HEADER_PREAUTH_MAX;
    if (store_open(n.opt.data_dir, &n.st, err, sizeof err) != 0) die("%s", err);
    /* Functions' output, a size-capped file each beside their ring in memory. */
    snprintf(n.logs_dir, sizeof n.logs_dir, "%s/logs", n.opt.data_dir);
    if (mkdir(n.logs_dir, 0700) != 0 && errno != EEXIST)
        die("cannot create %s: %s", n.logs_dir, strerror(errno));
    fnlog_set_files(n.logs_dir, n.opt.function_log_max);

    n.loop = uv_default_loop();
    if (isolate_init(n.loop, n.opt.run_as, n.opt.uid_base, n.opt.pids_max, err, sizeof err) != 0)
        die("%s", err);
    if (isolate_set_writable(n.opt.writable) != 0) die("--writable: too many paths");
    if (n.opt.writable[0] && !isolate_get()->mount_ns)
        log_warn("--writable means nothing without mount namespaces: functions may write wherever "
                 "their uid may");
    if (isolate_get()->drop && !isolate_get()->mount_ns) {
        /* No /var/task: exec functions reach their code through --data, as
         * before mount namespaces (isolate_init said so). */
        char exec_dir[4200];
        snprintf(exec_dir, sizeof exec_dir, "%s/exec", n.opt.data_dir);
        if (chmod(exec_dir, 0711) != 0) log_warn("cannot open %s: %s", exec_dir, strerror(errno));
    }
    pool_set_node_max(n.opt.max_instances);
    pool_set_node_starting_max(n.opt.max_starting);
    set_max_processes(n.opt.max_processes);
    pool_set_zygote_budget(n.opt.max_zygotes, n.opt.zygote_idle_s * 1000u);
    pool_set_spare_idle(n.opt.spare_idle_s * 1000u);
    if (registry_sqlite_open(n.loop, n.st, &n.reg) != 0) die("out of memory");
    if (n.opt.cluster[0]) {
        /* Topics, triggers and the registry live in NATS JetStream, shared by
         * the nodes; each keeps its own registry beneath the cluster's. */
        if (cluster_start(n.loop, &cc, &n.cluster, err, sizeof err) != 0) die("%s", err);
        registry *local = n.reg;
        if (cluster_registry(n.cluster, local, &n.reg) != 0) die("out of memory");
    }
    if (functions_open(n.loop, n.reg, n.opt.runner, &n.table) != 0)
        log_warn("some functions could not be restored (see above)");
    n.tr = triggers_create(n.loop, n.table);
    if (!n.tr) die("out of memory");
    if (n.cluster) {
        if (jsqueue_open(n.loop, n.cluster, triggers_events(n.tr), &n.q) != 0) die("out of memory");
        triggers_set_nodes(n.tr, live_nodes, n.cluster);
        cluster_set_figures(n.cluster, node_figures, n.table);
        cluster_set_invoke_handler(n.cluster, run_routed, n.table);
        functions_set_router(n.table, route_invoke, n.cluster);
    } else if (queue_open(n.loop, n.st, triggers_events(n.tr), &n.q, err, sizeof err) != 0) {
        die("%s", err);
    }
    triggers_attach(n.tr, n.q);
    n.api = api_create(n.table, n.q, n.tr, n.tokens, &n.opt.limits);
    if (!n.api) die("out of memory");
    api_set_function_uids(n.api, is_function_uid, NULL);
    /* The dashboard's last 15 minutes (GET /v1/history). */
    if (api_history_start(n.api, n.loop, HISTORY_BYTES_DEFAULT) != 0) die("out of memory");
    /* Schedules publish into the queue: after it, before the API takes requests. */
    n.sched = schedules_open(n.loop, n.q, n.reg, n.opt.catch_up);
    if (!n.sched) die("out of memory");
    api_set_schedules(n.api, n.sched);
    {
        /* Upstream, this node is consumer spate-HOSTNAME: the same after a
         * restart, so what it fetched and never acked comes back to it. A
         * cluster's node adds its id (kept in its data directory): nodes on
         * one host are distinct consumers of a group. */
        char host[256] = "", consumer[300];
        if (gethostname(host, sizeof host - 1) != 0 || !host[0])
            snprintf(host, sizeof host, "node");
        if (n.cluster)
            snprintf(consumer, sizeof consumer, "spate-%s-%s", host, cluster_node_id(n.cluster));
        else
            snprintf(consumer, sizeof consumer, "spate-%s", host);
        if (sources_create(n.loop, n.q, n.reg, consumer, n.opt.limits.message_max, &n.src) != 0)
            die("out of memory");
        api_set_sources(n.api, n.src);
        /* A source may not make spated (root) use its own secrets. */
        const char *const secrets[] = {n.opt.tls_key,       n.opt.cluster_key,
                                       n.opt.cluster_creds, n.opt.cluster_tls_key,
                                       n.opt.token_file,    n.opt.config_file};
        for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
            sources_forbid_file(secrets[i]);
        sources_start(n.src);
    }
    if (http_server_start(n.loop, n.opt.host, n.opt.port, &n.opt.http, api_http_handlers(), n.api,
                          &n.http, err, sizeof err) != 0)
        die("%s", err);
    if (tls) {
        char what[512];
        http_tls_describe(tls, what, sizeof what);
        http_server_set_tls(n.http, tls); /* before the loop runs: no connection is in clear */
        log_info("TLS: certificate %s from %s%s%s", what, n.opt.tls_cert,
                 n.opt.tls_client_ca[0] ? "; clients need a certificate of " : "",
                 n.opt.tls_client_ca);
    }

    uv_signal_init(n.loop, &n.sigterm);
    uv_signal_init(n.loop, &n.sigint);
    uv_signal_init(n.loop, &n.sighup);
    n.sigterm.data = n.sigint.data = n.sighup.data = &n;
    uv_signal_start(&n.sigterm, on_signal, SIGTERM);
    uv_signal_start(&n.sigint, on_signal, SIGINT);
    uv_signal_start(&n.sighup, on_reload, SIGHUP);
    uv_timer_init(n.loop, &n.grace);
    n.grace.data = &n;
    uv_timer_init(n.loop, &n.hard);
    uv_unref((uv_handle_t *)&n.hard); /* a bound, never a reason to keep running */
    n.hard.data = &n;

    if (n.cluster) {
        char url[300];
        snprintf(url, sizeof url, "%s://%s:%d", n.opt.tls_cert[0] ? "https" : "http", n.opt.host,
                 http_server_port(n.http));
        cluster_set_api_url(n.cluster, url);
        api_nodes nodes = {.self = node_self,
                           .connected = node_connected,
                           .live = live_nodes,
                           .json = nodes_json,
                           .rejected = node_rejected,
                           .data = n.cluster};
        api_set_nodes(n.api, &nodes);
        cluster_follow(n.cluster); /* the registry: functions, triggers, schedules, sources */
    }
    log_info("listening on %s:%d data=%s version=%s max-instances=%u%s%s", n.opt.host,
             http_server_port(n.http), n.opt.data_dir, SPATE_VERSION, n.opt.max_instances,
             n.opt.config_file[0] ? " config=" : "", n.opt.config_file);
    /* systemd (Type=notify): the listener and the store are up. */
    sd_notifyf(0, "READY=1\nSTATUS=listening on %s:%d\nMAINPID=%d", n.opt.host,
               http_server_port(n.http), (int)getpid());
    uv_run(n.loop, UV_RUN_DEFAULT);

    api_free(n.api);
    schedules_free(n.sched);
    auth_free(n.tokens);
    registry_close(n.reg);
    store_close(n.st);
    isolate_cleanup();
    uv_run(n.loop, UV_RUN_DEFAULT); /* the handles isolate_cleanup closed */
    uv_loop_close(n.loop);
    log_info("stopped");
    return 0;
}
