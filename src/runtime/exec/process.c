#include "runtime/exec.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/fmt.h"
#include "common/limits.h"
#include "common/list.h"
#include "common/log.h"
#include "http/server.h"
#include "runtime/isolate.h"
#include "runtime/output.h"
#include "runtime/zproto.h"

#define API "/2018-06-01/runtime"

struct exec_version {
    uv_loop_t *loop;
    char *root;
    char *bootstrap;
    uint32_t tmp_mb; /* with mount namespaces: the root is bound at /var/task */
    char *runner;    /* spate-runner, the sandbox the bootstrap runs in */
    char *function;
    char **env; /* the function's environment and the Lambda variables, but the API address */
    size_t nenv;
    char arn[160];
    uint32_t refs; /* 1 while not stopped, + live instances */
    /* /proc entries its instances' Runtime API checks may still read
     * (SPATE_RUNTIME_API_CHECK_RATE), as of check_at_ms. */
    uint32_t check_left;
    uint64_t check_at_ms;
};

/* An invocation the instance has been given and not yet finished. */
typedef struct pending_inv {
    list_node link;
    char request_id[72];
    int64_t deadline_ms;
    uint32_t attempt;
    uint32_t len;
    char payload[]; /* len bytes */
} pending_inv;

typedef struct exec_instance {
    instance base;
    exec_version *ver;
    uv_process_t proc;
    http_server *api;
    int port;
    list_node queue;      /* given, not yet handed to the runtime */
    pending_inv *running; /* handed out by /next, not yet answered */
    uint64_t running_since;
    http_request *next_req; /* a /next waiting for work */
    char *init_error;
    int status_fd; /* read end: why the runner could not start the bootstrap */
    int ready, alive, killed, exited;
    int open;         /* the process handle and the API server, until both are closed */
    uint32_t refused; /* Runtime API connections from other processes */
} exec_instance;

static void version_unref(exec_version *x)
{
    if (--x->refs > 0) return;
    for (size_t i = 0; i < x->nenv; i++) free(x->env[i]);
    free(x->env);
    free(x->root);
    free(x->bootstrap);
    free(x->runner);
    free(x->function);
    free(x);
}

/* --- Version ----------------------------------------------------------------------- */

static int env_push(exec_version *x, size_t *cap, const char *kv)
{
    if (x->nenv + 2 > *cap) {
        size_t c = *cap ? *cap * 2 : 32;
        char **e = realloc(x->env, c * sizeof *e);
        if (!e) return ERR_NOMEM;
        x->env = e;
        *cap = c;
    }
    if (!(x->env[x->nenv] = strdup(kv))) return ERR_NOMEM;
    x->nenv++;
    x->env[x->nenv] = NULL;
    return 0;
}

static const char *env_get(char **env, const char *key)
{
    size_t n = strlen(key);
    for (char **e = env; e && *e; e++)
        if (strncmp(*e, key, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

int exec_version_start(uv_loop_t *loop, const launcher_config *cfg, exec_version **out, char *err,
                       size_t errcap)
{
    exec_version *x = calloc(1, sizeof *x);
    if (!x) return ERR_NOMEM;
    x->loop = loop;
    x->refs = 1;
    x->check_left = SPATE_RUNTIME_API_CHECK_RATE;
    x->check_at_ms = clock_mono_ns() / 1000000;
    x->root = strdup(cfg->path);
    x->function = strdup(cfg->function);
    x->runner = strdup(cfg->runner_path);
    size_t blen = strlen(cfg->path) + sizeof "/bootstrap";
    x->bootstrap = malloc(blen);
    if (!x->root || !x->function || !x->bootstrap || !x->runner) {
        version_unref(x);
        return ERR_NOMEM;
    }
    snprintf(x->bootstrap, blen, "%s/bootstrap", cfg->path);
    if (isolate_get()->mount_ns) x->tmp_mb = cfg->tmp_mb ? cfg->tmp_mb : SPATE_TMP_DEFAULT_MB;
    /* Where the function sees its code: at /var/task in its own namespace. */
    const char *task = x->tmp_mb ? "/var/task" : cfg->path;
    struct stat st;
    if (stat(x->bootstrap, &st) != 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
        snprintf(err, errcap, "the artifact has no executable bootstrap");
        version_unref(x);
        return ERR_INVAL;
    }
    if (isolate_reachable(x->bootstrap, err, errcap) != 0) {
        log_warn("%s fn=%s", err, cfg->function);
        version_unref(x);
        return ERR_INVAL;
    }
    const char *region = env_get(cfg->env, "AWS_REGION");
    if (!region) region = "us-east-1";
    snprintf(x->arn, sizeof x->arn, "arn:aws:lambda:%s:000000000000:function:%s", region,
             cfg->function);
    /* The function's own variables first: they win over the defaults below. */
    size_t cap = 0;
    int rc = 0;
    for (char **e = cfg->env; !rc && e && *e; e++)
        if (strncmp(*e, "AWS_LAMBDA_RUNTIME_API=", 23) != 0) rc = env_push(x, &cap, *e);
    char kv[512];
    const char *defaults[][2] = {
        {"_HANDLER", "index.handler"},
        {"LAMBDA_TASK_ROOT", task},
        {"LAMBDA_RUNTIME_DIR", task},
        {"AWS_LAMBDA_FUNCTION_NAME", cfg->function},
        {"AWS_REGION", region},
        {"AWS_DEFAULT_REGION", region},
        {"AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"},
        {"AWS_EXECUTION_ENV", "AWS_Lambda_spate"},
        {"TZ", ":UTC"},
        {"LANG", "C.UTF-8"},
        {"PATH", "/usr/local/bin:/usr/bin:/bin"},
    };
    for (size_t i = 0; !rc && i < sizeof defaults / sizeof defaults[0]; i++) {
        if (env_get(x->env, defaults[i][0])) continue;
        snprintf(kv, sizeof kv, "%s=%s", defaults[i][0], defaults[i][1]);
        rc = env_push(x, &cap, kv);
    }
    snprintf(kv, sizeof kv, "AWS_LAMBDA_FUNCTION_VERSION=%u", cfg->version);
    if (!rc && !env_get(x->env, "AWS_LAMBDA_FUNCTION_VERSION")) rc = env_push(x, &cap, kv);
    snprintf(kv, sizeof kv, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%u", cfg->memory_mb);
    if (!rc && !env_get(x->env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE")) rc = env_push(x, &cap, kv);
    if (rc) {
        version_unref(x);
        return rc;
    }
    *out = x;
    return 0;
}

void exec_version_stop(exec_version *x)
{
    if (x) version_unref(x);
}

/* --- The Runtime API --------------------------------------------------------------- */

static void maybe_free(exec_instance *e)
{
    if (e->open > 0) return;
    while (!list_empty(&e->queue)) {
        pending_inv *p = list_entry(list_first(&e->queue), pending_inv, link);
        list_remove(&p->link);
        free(p);
    }
    free(e->running);
    free(e->init_error);
    version_unref(e->ver);
    free(e);
}

static void respond_lambda_error(http_request *req, int status, const char *type,
                                 const char *message)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "errorMessage", message);
    cJSON_AddStringToObject(doc, "errorType", type);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    http_respond(req, status, "application/json", NULL, text ? text : "{}",
                 text ? strlen(text) : 2);
    free(text);
}

/* Trace ids need spread, not secrecy: a generator seeded once, so that no
 * invocation pays a getrandom call. */
static uint64_t next_random(void)
{
    static uint64_t state;
    if (!state && (getrandom(&state, sizeof state, 0) != sizeof state || !state))
        state = 0x9e3779b97f4a7c15ull ^ (uint64_t)clock_mono_ns();
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ull;
}

/* Hands the oldest given invocation to a waiting /next. */
static void hand_out(exec_instance *e, http_request *req)
{
    pending_inv *p = list_entry(list_first(&e->queue), pending_inv, link);
    list_remove(&p->link);
    e->running = p;
    e->running_since = clock_mono_ns();
    char trace[96], *t = trace;
    t = fmt_lit(t, "Root=1-");
    t = fmt_hex(t, (uint64_t)(clock_now_ms() / 1000), 8);
    *t++ = '-';
    t = fmt_hex(t, next_random(), 16);
    t = fmt_hex(t, next_random(), 8);
    t = fmt_lit(t, ";Parent=");
    t = fmt_hex(t, next_random(), 16);
    t = fmt_lit(t, ";Sampled=0");
    *t = '\0';
    char headers[512];
    snprintf(headers, sizeof headers,
             "Lambda-Runtime-Aws-Request-Id: %s\r\nLambda-Runtime-Deadline-Ms: %lld\r\n"
             "Lambda-Runtime-Invoked-Function-Arn: %s\r\nLambda-Runtime-Trace-Id: %s\r\n",
             p->request_id, (long long)p->deadline_ms, e->ver->arn, trace);
    http_respond(req, 200, "application/json", headers, p->payload, p->len);
}

static void next_aborted(http_request *req)
{
    exec_instance *e = req->data;
    if (e->next_req == req) e->next_req = NULL;
    http_respond(req, 410, NULL, NULL, NULL, 0); /* dropped: the client is gone */
}

/* The running invocation is over: tell the pool. */
static void finish(exec_instance *e, int failed, const char *body, size_t len)
{
    pending_inv *p = e->running;
    e->running = NULL;
    uint64_t took = (clock_mono_ns() - e->running_since) / 1000;
    free(p);
    e->base.output_unread = 1; /* its stdout is the pipe itself: nothing tells */
    e->base.cb->result(&e->base, failed, took > UINT32_MAX ? UINT32_MAX : (uint32_t)took, body, len,
                       e->base.data);
}

static void on_next(exec_instance *e, http_request *req)
{
    if (e->running) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the runtime asked for the next invocation without answering request %s",
                 e->running->request_id);
        finish(e, 1, msg, strlen(msg));
    }
    if (e->next_req) {
        respond_lambda_error(req, 400, "InvalidRequest", "a /next request is already waiting");
        return;
    }
    if (!e->ready) {
        e->ready = 1;
        e->base.cb->ready(&e->base, e->base.data); /* may give it work at once */
    }
    if (!list_empty(&e->queue)) {
        hand_out(e, req);
        return;
    }
    e->next_req = req;
    req->data = e;
    req->on_abort = next_aborted;
}

/* "/{id}/response" or "/{id}/error" after /invocation: the id and which. */
static int parse_answer(const char *rest, char *id, size_t cap, int *is_error)
{
    const char *slash = strchr(rest, '/');
    if (!slash || slash == rest || (size_t)(slash - rest) >= cap) return -1;
    memcpy(id, rest, (size_t)(slash - rest));
    id[slash - rest] = '\0';
    if (strcmp(slash, "/response") == 0)
        *is_error = 0;
    else if (strcmp(slash, "/error") == 0)
        *is_error = 1;
    else
        return -1;
    return 0;
}

/* The message of an error the runtime posted: "Type: message". */
static void error_message(http_request *req, char *out, size_t cap)
{
    const char *type_hdr = http_header(req, "lambda-runtime-function-error-type");
    cJSON *doc = cJSON_ParseWithLength(req->body.data ? req->body.data : "", req->body.len);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "errorMessage");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(doc, "errorType");
    const char *t = cJSON_IsString(type) ? type->valuestring : type_hdr;
    if (cJSON_IsString(msg))
        snprintf(out, cap, "%s%s%s", t ? t : "", t ? ": " : "", msg->valuestring);
    else
        snprintf(out, cap, "%s%s%.*s", t ? t : "Error", req->body.len ? ": " : "",
                 (int)(req->body.len > 2000 ? 2000 : req->body.len),
                 req->body.data ? req->body.data : "");
    cJSON_Delete(doc);
}

static void on_answer(exec_instance *e, http_request *req, const char *rest)
{
    char id[80];
    int is_error;
    if (parse_answer(rest, id, sizeof id, &is_error) != 0) {
        respond_lambda_error(req, 404, "NotFound", "no such Runtime API route");
        return;
    }
    if (!e->running || strcmp(id, e->running->request_id) != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "request id '%.80s' is not the invocation in progress", id);
        respond_lambda_error(req, 400, "InvalidRequestID", msg);
        return;
    }
    if (is_error) {
        char msg[SPATE_ERROR_MESSAGE_MAX];
        error_message(req, msg, sizeof msg);
        finish(e, 1, msg, strlen(msg));
        http_respond(req, 202, "application/json", NULL, "{\"status\":\"OK\"}", 15);
        return;
    }
    if (req->body.len > SPATE_RESPONSE_MAX) {
        char msg[160];
        snprintf(msg, sizeof msg, "the response of %zu bytes is over the limit of %u bytes",
                 req->body.len, SPATE_RESPONSE_MAX);
        finish(e, 1, msg, strlen(msg));
        respond_lambda_error(req, 413, "RequestEntityTooLarge", msg);
        return;
    }
    /* The body stays with the request until it is answered, after this. */
    finish(e, 0, req->body.data ? req->body.data : "", req->body.len);
    http_respond(req, 202, "application/json", NULL, "{\"status\":\"OK\"}", 15);
}

static void on_init_error(exec_instance *e, http_request *req)
{
    char msg[SPATE_ERROR_MESSAGE_MAX];
    error_message(req, msg, sizeof msg);
    free(e->init_error);
    e->init_error = strdup(msg);
    http_respond(req, 202, "application/json", NULL, "{\"status\":\"OK\"}", 15);
    e->base.ops->kill(&e->base);
}

static size_t api_body_limit(const http_request *req, void *data)
{
    /* Room to see a response is too large and say so. */
    return req->method == HTTP_POST ? SPATE_RESPONSE_MAX + 64u * KIB : 0;
}

static void api_handle(http_request *req, void *data)
{
    exec_instance *e = data;
    const char *p = req->path;
    if (strncmp(p, API, sizeof API - 1) != 0) {
        respond_lambda_error(req, 404, "NotFound", "no such Runtime API route");
        return;
    }
    p += sizeof API - 1;
    if (req->method == HTTP_GET && strcmp(p, "/invocation/next") == 0)
        on_next(e, req);
    else if (req->method == HTTP_POST && strncmp(p, "/invocation/", 12) == 0)
        on_answer(e, req, p + 12);
    else if (req->method == HTTP_POST && strcmp(p, "/init/error") == 0)
        on_init_error(e, req);
    else
        respond_lambda_error(req, 404, "NotFound", "no such Runtime API route");
}

/* --- Who may use the endpoint ---------------------------------------------------------- */

/* The parent and session of process pid (/proc/PID/stat), or -1. */
static int stat_ids(pid_t pid, pid_t *ppid, pid_t *sid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* The name in parentheses may hold anything: read after its last ')'. */
    char *p = strrchr(line, ')');
    int pp, pgrp, sd;
    char state;
    if (!p || sscanf(p + 1, " %c %d %d %d", &state, &pp, &pgrp, &sd) != 4) return -1;
    *ppid = (pid_t)pp;
    *sid = (pid_t)sd;
    return 0;
}

/* Whether pid belongs to the instance whose bootstrap is leader: in its
 * session (uv_spawn made the bootstrap a session leader) or descended from
 * it. A process of another instance can do neither, even one that joined
 * this instance's cgroup. */
static int of_instance(pid_t pid, pid_t leader)
{
    pid_t ppid, sid;
    if (stat_ids(pid, &ppid, &sid) != 0) return 0;
    if (sid == leader || pid == leader) return 1;
    for (int depth = 0; depth < 64 && ppid > 1; depth++) {
        if (ppid == leader) return 1;
        if (stat_ids(ppid, &ppid, &sid) != 0) return 0;
    }
    return 0;
}

/* Whether process pid holds the socket "socket:[INODE]" among its
 * descriptors; each descriptor looked at costs one of *left, and the search
 * stops when none is left. */
static int holds_socket(pid_t pid, const char *want, uint32_t *left)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *de;
    while (!found && *left > 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        --*left;
        char link[64];
        ssize_t n = readlinkat(dirfd(d), de->d_name, link, sizeof link - 1);
        if (n <= 0) continue;
        link[n] = '\0';
        found = strcmp(link, want) == 0;
    }
    closedir(d);
    return found;
}

/* The next candidate process of instance e: from its pids cgroup, or
 * without one every process of uid; 0 at the end. Each costs one of *left. */
static pid_t next_candidate(FILE *procs, DIR *all, uid_t uid, uint32_t *left)
{
    long pid;
    if (*left == 0) return 0;
    --*left;
    if (procs) return fscanf(procs, "%ld", &pid) == 1 ? (pid_t)pid : 0;
    struct dirent *de;
    while (all && *left > 0 && (de = readdir(all))) {
        char *end;
        pid = strtol(de->d_name, &end, 10);
        struct stat st;
        if (*end || pid <= 0) continue;
        --*left;
        if (fstatat(dirfd(all), de->d_name, &st, 0) != 0) continue;
        if (st.st_uid == uid) return (pid_t)pid;
    }
    return 0;
}

/* The process of instance e that holds the socket, or 0; the bootstrap is
 * looked at first (most runtimes connect from it). At most *left /proc
 * entries are read; what was read is taken off it. */
static pid_t instance_holder(const exec_instance *e, uid_t uid, uint64_t inode, uint32_t *left)
{
    char want[48];
    snprintf(want, sizeof want, "socket:[%llu]", (unsigned long long)inode);
    pid_t leader = e->proc.pid;
    if (holds_socket(leader, want, left)) return leader;
    const isolate_slot *iso = e->base.iso;
    FILE *procs = NULL;
    if (iso && iso->pids >= 0) {
        char path[600];
        snprintf(path, sizeof path, "%s/cgroup.procs", iso->dirs[iso->pids]);
        procs = fopen(path, "re");
    }
    DIR *all = procs ? NULL : opendir("/proc");
    pid_t pid, found = 0;
    while (!found && (pid = next_candidate(procs, all, uid, left)) > 0)
        if (pid != leader && holds_socket(pid, want, left) && of_instance(pid, leader)) found = pid;
    if (procs) fclose(procs);
    if (all) closedir(all);
    return found;
}

/* How many /proc entries the next check of x's instances may read: the
 * version's allowance refilled at SPATE_RUNTIME_API_CHECK_RATE a second,
 * at most SPATE_RUNTIME_API_CHECK_MAX. */
static uint32_t check_allowance(exec_version *x)
{
    uint64_t now = clock_mono_ns() / 1000000;
    uint64_t gained = (now - x->check_at_ms) * SPATE_RUNTIME_API_CHECK_RATE / 1000;
    if (gained > 0) {
        uint64_t left = x->check_left + gained;
        x->check_left =
            left > SPATE_RUNTIME_API_CHECK_RATE ? SPATE_RUNTIME_API_CHECK_RATE : (uint32_t)left;
        x->check_at_ms = now;
    }
    return x->check_left < SPATE_RUNTIME_API_CHECK_MAX ? x->check_left
                                                       : SPATE_RUNTIME_API_CHECK_MAX;
}

static int check_peers = 1;

void exec_api_check_peers(int on)
{
    check_peers = on;
}

/* Once per accepted connection: only a process of this very instance, as
 * its uid, may use its endpoint (another uid could take its invocations,
 * another instance of the same function too). Costs a scan of the
 * instance's processes' descriptors (docs/functions.md has the figure). */
static int api_connect(http_peer *peer, const char *client, void *data)
{
    exec_instance *e = data;
    if (!check_peers) return 0;
    const isolate_config *iso = isolate_get();
    uid_t want = iso->drop ? e->base.iso->owner : geteuid();
    uint64_t t0 = clock_mono_ns();
    char why[200];
    pid_t pid = 0;
    uint32_t allowed = 0, left = 0;
    if (!peer->known) {
        snprintf(why, sizeof why, "its uid is unknown");
    } else if (peer->uid != want) {
        snprintf(why, sizeof why, "uid %u is not the instance's (%u)", (unsigned)peer->uid,
                 (unsigned)want);
    } else if (!peer->inode || (allowed = left = check_allowance(e->ver)) == 0) {
        snprintf(why, sizeof why,
                 "uid %u, but the function's budget for checking Runtime API clients is spent",
                 (unsigned)peer->uid);
    } else if (!(pid = instance_holder(e, want, peer->inode, &left))) {
        snprintf(why, sizeof why,
                 "uid %u, but no process of this instance (bootstrap pid %d) holds its socket "
                 "%llu%s",
                 (unsigned)peer->uid, (int)e->proc.pid, (unsigned long long)peer->inode,
                 left ? "" : " among the descriptors it may look at");
    }
    e->ver->check_left -= allowed - left;
    if (pid) {
        log_debug("runtime api connection from pid %d checked in %llu us fn=%s", (int)pid,
                  (unsigned long long)((clock_mono_ns() - t0) / 1000), e->ver->function);
        return 0;
    }
    /* Said for the 1st, 2nd, 4th, 8th, ... so that a flood cannot fill the log. */
    e->refused++;
    if ((e->refused & (e->refused - 1)) == 0)
        log_warn("refused a Runtime API connection from %s: %s (%u refused so far) fn=%s", client,
                 why, e->refused, e->ver->function);
    return -1;
}

static const http_handlers api_handlers = {
    .connect = api_connect, .body_limit = api_body_limit, .handle = api_handle};

/* --- The process --------------------------------------------------------------------- */

static void on_api_closed(void *data)
{
    exec_instance *e = data;
    e->open--;
    maybe_free(e);
}

static void on_proc_closed(uv_handle_t *h)
{
    exec_instance *e = h->data;
    e->open--;
    maybe_free(e);
}

/* Why the runner could not start the bootstrap, as it wrote to the status
 * pipe (its write end is closed now: the process is gone). */
static void sandbox_failure(exec_instance *e, char *why, size_t cap)
{
    char text[400];
    ssize_t n = e->status_fd >= 0 ? read(e->status_fd, text, sizeof text - 1) : -1;
    if (n <= 0) {
        snprintf(why, cap, "the instance could not enter its sandbox (spate-runner said nothing)");
    } else {
        text[n] = '\0';
        for (ssize_t i = 0; i < n; i++)
            if ((unsigned char)text[i] < 0x20) text[i] = ' ';
        snprintf(why, cap, "the instance could not enter its sandbox: %s", text);
    }
    log_warn("%s fn=%s", why, e->ver->function);
}

static void on_process_exit(uv_process_t *p, int64_t status, int signal)
{
    exec_instance *e = p->data;
    e->alive = 0;
    e->exited = 1;
    /* Whatever it started dies with it. */
    uv_kill(-p->pid, SIGKILL);
    char why[SPATE_ERROR_MESSAGE_MAX + 64];
    if (instance_release(&e->base, why, sizeof why))
        ; /* out of memory: said */
    else if (e->init_error)
        snprintf(why, sizeof why, "instance failed to start: %s", e->init_error);
    else if (e->killed && !e->ready)
        snprintf(why, sizeof why,
                 "the bootstrap did not ask for work (GET %s/invocation/next) in time", API);
    else if (signal)
        snprintf(why, sizeof why, "killed by signal %d (%s)", signal, strsignal(signal));
    else if (!e->ready && status == SPATE_SANDBOX_FAILED_STATUS)
        sandbox_failure(e, why, sizeof why);
    else if (!e->ready)
        snprintf(why, sizeof why, "bootstrap exited with status %lld before asking for work",
                 (long long)status);
    else
        snprintf(why, sizeof why, "exited with status %lld", (long long)status);
    if (e->status_fd >= 0) close(e->status_fd);
    e->status_fd = -1;
    e->base.cb->exited(&e->base, why, e->base.data);
    uv_close((uv_handle_t *)&e->proc, on_proc_closed);
    http_server_close(e->api, on_api_closed, e);
}

static int exec_invoke(instance *base, const frame_invoke *inv)
{
    exec_instance *e = (exec_instance *)base;
    if (e->exited) return ERR_CLOSED;
    pending_inv *p = malloc(sizeof *p + inv->payload_len);
    if (!p) return ERR_NOMEM;
    snprintf(p->request_id, sizeof p->request_id, "%s", inv->request_id);
    p->deadline_ms = inv->deadline_ms;
    p->attempt = inv->attempt;
    p->len = inv->payload_len;
    if (inv->payload_len) memcpy(p->payload, inv->payload, inv->payload_len);
    list_push_back(&e->queue, &p->link);
    if (e->next_req) {
        http_request *req = e->next_req;
        e->next_req = NULL;
        req->on_abort = NULL;
        hand_out(e, req);
    }
    return 0;
}

/* What the bootstrap has not asked for yet is still here: sure. */
static uint32_t exec_withdraw(instance *base, uint32_t n)
{
    exec_instance *e = (exec_instance *)base;
    uint32_t queued = 0;
    for (list_node *l = list_first(&e->queue); l != &e->queue; l = l->next) queued++;
    if (n == 0 || queued < n) return 0;
    for (uint32_t i = 0; i < n; i++) {
        pending_inv *p = list_entry(list_last(&e->queue), pending_inv, link);
        list_remove(&p->link);
        free(p);
    }
    return n;
}

static void exec_kill(instance *base)
{
    exec_instance *e = (exec_instance *)base;
    e->killed = 1;
    /* Its process group: the bootstrap and whatever it started. */
    if (e->alive) uv_kill(-e->proc.pid, SIGKILL);
}

static int exec_usable(const instance *base)
{
    const exec_instance *e = (const exec_instance *)base;
    return e->alive && !e->killed;
}

static pid_t exec_pid(const instance *base)
{
    return ((const exec_instance *)base)->proc.pid;
}

static const instance_ops ops = {
    .invoke = exec_invoke,
    .withdraw = exec_withdraw,
    .kill = exec_kill,
    .usable = exec_usable,
    .pid = exec_pid,
};

/* spate-runner --exec [--uid N --gid N] [--memory-mb N] --cgroups C --env-fd 3 --tmpdir T
 * BOOTSTRAP, or with mount namespaces ... --tmp-mb N --task ROOT [--writable PATH]...
 * /var/task/bootstrap */
static void sandbox_args(exec_version *x, exec_instance *e, char **args, char num[4][16])
{
    int n = 0;
    const isolate_config *iso = isolate_get();
    args[n++] = x->runner;
    args[n++] = "--exec";
    if (iso->drop) {
        snprintf(num[0], sizeof num[0], "%u", (unsigned)e->base.iso->owner);
        snprintf(num[1], sizeof num[1], "%u", (unsigned)iso->gid);
        args[n++] = "--uid";
        args[n++] = num[0];
        args[n++] = "--gid";
        args[n++] = num[1];
    }
    if (e->base.memory_mb) {
        snprintf(num[2], sizeof num[2], "%u", e->base.memory_mb);
        args[n++] = "--memory-mb";
        args[n++] = num[2];
    }
    args[n++] = "--cgroups";
    args[n++] = e->base.iso->cgroups;
    args[n++] = "--env-fd";
    args[n++] = "3";
    args[n++] = "--status-fd";
    args[n++] = "4";
    if (x->tmp_mb) {
        snprintf(num[3], sizeof num[3], "%u", x->tmp_mb);
        args[n++] = "--tmp-mb";
        args[n++] = num[3];
        args[n++] = "--task";
        args[n++] = x->root;
        for (int i = 0; iso->writable[i]; i++) {
            args[n++] = "--writable";
            args[n++] = (char *)iso->writable[i];
        }
        args[n++] = "/var/task/bootstrap";
        args[n] = NULL;
        return;
    }
    args[n++] = "--tmpdir";
    args[n++] = e->base.iso->tmpdir;
    args[n++] = x->bootstrap;
    args[n] = NULL;
}

int exec_spawn(exec_version *x, const instance_limits *lim, const instance_callbacks *cb,
               void *data, instance **out)
{
    exec_instance *e = calloc(1, sizeof *e);
    if (!e) return ERR_NOMEM;
    instance_init(&e->base, &ops, cb, data);
    int outfd[2];
    int rc = instance_isolate(&e->base, lim, outfd);
    if (rc != 0) {
        free(e);
        return rc;
    }
    e->ver = x;
    list_init(&e->queue);
    http_config hc;
    http_config_defaults(&hc);
    hc.max_connections = 16;
    hc.bodies_max = SPATE_RUNTIME_API_BODIES_MAX;
    char err[256];
    if (http_server_start(x->loop, "127.0.0.1", 0, &hc, &api_handlers, e, &e->api, err,
                          sizeof err) != 0) {
        log_warn("cannot open a Runtime API endpoint: %s fn=%s", err, x->function);
        output_close_fds(outfd);
        instance_release(&e->base, NULL, 0);
        free(e);
        return ERR_IO;
    }
    e->port = http_server_port(e->api);
    /* The version's environment plus this instance's own endpoint, in a
     * descriptor the runner reads once it is no longer root (isolate.h). */
    char api[48];
    snprintf(api, sizeof api, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d", e->port);
    int envfd = isolate_env_fd(x->env, api);
    if (envfd < 0) {
        log_warn("cannot pass the environment to an instance: %s fn=%s", strerror(errno),
                 x->function);
        output_close_fds(outfd);
        http_server_close(e->api, NULL, NULL);
        instance_release(&e->base, NULL, 0);
        free(e);
        return ERR_IO;
    }
    /* Why the runner could not start the bootstrap comes back on a pipe,
     * read once it has exited (a successful exec closes it). */
    int status[2] = {-1, -1};
    if (pipe2(status, O_CLOEXEC | O_NONBLOCK) != 0) status[0] = status[1] = -1;
    e->status_fd = status[0];
    char *args[26 + 2 * SPATE_WRITABLE_MAX], num[4][16];
    sandbox_args(x, e, args, num);
    uv_stdio_container_t stdio[5] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = outfd[0] >= 0 ? outfd[0] : STDOUT_FILENO},
        {.flags = UV_INHERIT_FD, .data.fd = outfd[1] >= 0 ? outfd[1] : STDERR_FILENO},
        {.flags = UV_INHERIT_FD, .data.fd = envfd},
        {.flags = status[1] >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = status[1]},
    };
    uv_process_options_t opt = {
        .exit_cb = on_process_exit,
        .file = x->runner,
        .args = args,
        .env = isolate_runner_env(), /* it starts as root: nothing of the function's */
        .cwd = x->root,
        .stdio_count = 5,
        .stdio = stdio,
        /* Its own process group, so that a kill reaches what it starts. */
        .flags = UV_PROCESS_DETACHED,
    };
    e->proc.data = e;
    rc = uv_spawn(x->loop, &e->proc, &opt);
    close(envfd);
    output_close_fds(outfd);
    if (status[1] >= 0) close(status[1]);
    if (rc != 0) {
        if (e->status_fd >= 0) close(e->status_fd);
        e->status_fd = -1;
        log_warn("cannot start '%s': %s fn=%s", x->runner, uv_strerror(rc), x->function);
        instance_release(&e->base, NULL, 0);
        e->open = 2;
        e->exited = 1;
        x->refs++;
        uv_close((uv_handle_t *)&e->proc, on_proc_closed);
        http_server_close(e->api, on_api_closed, e);
        return ERR_IO;
    }
    e->alive = 1;
    e->open = 2;
    x->refs++;
    *out = &e->base;
    return 0;
}

int exec_api_port(const instance *inst)
{
    return ((const exec_instance *)inst)->port;
}
