/*
 * process.c - an exec instance's life: spate-runner --exec started in its
 * own process group with its Runtime API endpoint, the instance interface
 * the pool drives, its exit and its free (internal.h has who owns what).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/exec/internal.h"
#include "runtime/isolate.h"
#include "runtime/output.h"
#include "runtime/zproto.h"

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
    free(e->unready);
    exec__version_unref(e->ver);
    free(e);
}

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
                 "the bootstrap did not ask for work (GET %s/invocation/next) in time%s%s%s",
                 EXEC__API, e->unready ? " (" : "", e->unready ? e->unready : "",
                 e->unready ? ")" : "");
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
    size_t attrs = exec__attr_headers_size(inv);
    pending_inv *p = malloc(sizeof *p + inv->payload_len + attrs);
    if (!p) return ERR_NOMEM;
    p->attr_len = attrs ? (uint32_t)exec__attr_headers(p->payload + inv->payload_len, inv) : 0;
    snprintf(p->request_id, sizeof p->request_id, "%s", inv->request_id);
    p->deadline_ms = inv->deadline_ms;
    p->attempt = inv->attempt;
    p->lineage = inv->lineage;
    p->len = inv->payload_len;
    if (inv->payload_len) memcpy(p->payload, inv->payload, inv->payload_len);
    list_push_back(&e->queue, &p->link);
    if (e->next_req) {
        http_request *req = e->next_req;
        e->next_req = NULL;
        req->on_abort = NULL;
        exec__hand_out(e, req);
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

/* What /proc/PID/stat says of a process. */
typedef struct {
    char name[33];
    char state;
    unsigned long long own_ticks;  /* utime + stime */
    unsigned long long kids_ticks; /* cutime + cstime: its waited-for children's */
} proc_stat;

/* Reads a /proc stat file (a process's, or one of its threads') into *st:
 * 0, or -1 when /proc cannot say (gone). */
static int proc_stat_read_path(const char *path, proc_stat *st)
{
    char line[512];
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* The name in parentheses may hold anything: read after its last ')'. */
    char *open = strchr(line, '('), *close = strrchr(line, ')');
    unsigned long long utime, stime, cutime, cstime;
    if (!open || !close || close < open ||
        sscanf(close + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
               &st->state, &utime, &stime, &cutime, &cstime) != 5)
        return -1;
    *close = '\0';
    snprintf(st->name, sizeof st->name, "%s", open + 1);
    st->own_ticks = utime + stime;
    st->kids_ticks = cutime + cstime;
    return 0;
}

static int proc_stat_read(pid_t pid, proc_stat *st)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return proc_stat_read_path(path, st);
}

/* Whether a thread of pid other than its first is runnable: a bootstrap
 * whose init runs on a thread while the first waits for it (a Python thread
 * joined, a Go runtime, a JVM) showed S however starved it was, and was
 * killed at 10 s (brk9). At most SPATE_STARVED_PROCS_MAX threads read. */
static int other_thread_runnable(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (!dir) return 0;
    int found = 0;
    struct dirent *d;
    for (int i = 0; !found && i < SPATE_STARVED_PROCS_MAX && (d = readdir(dir)) != NULL;) {
        int tid = atoi(d->d_name);
        if (tid <= 0 || tid == (int)pid) continue;
        i++;
        char stat[64];
        proc_stat st;
        snprintf(stat, sizeof stat, "/proc/%d/task/%d/stat", (int)pid, tid);
        found = proc_stat_read_path(stat, &st) == 0 && st.state == 'R';
    }
    closedir(dir);
    return found;
}

static unsigned long long ticks_ms(unsigned long long ticks)
{
    long tick = sysconf(_SC_CLK_TCK);
    return tick > 0 ? ticks * 1000 / (unsigned long long)tick : 0;
}

/* What the bootstrap pid, which has not asked for work, is doing: its name,
 * state and what it waits in, and the CPU it has had, e.g. "python3, S in
 * do_select, 40 ms of CPU" (a hang, or a machine too loaded to run it).
 * Caller owns the result; free with free(). NULL when /proc cannot say. */
static char *unready_note(pid_t pid)
{
    proc_stat st;
    char path[64], wchan[64] = "";
    if (proc_stat_read(pid, &st) < 0) return NULL;
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
    FILE *f = fopen(path, "re");
    if (f) {
        size_t w = fread(wchan, 1, sizeof wchan - 1, f);
        fclose(f);
        wchan[w] = '\0';
    }
    char *out = malloc(160);
    if (out)
        snprintf(out, 160, "%s, %c%s%.40s, %llu ms of CPU", st.name, st.state,
                 wchan[0] && strcmp(wchan, "0") ? " in " : "", strcmp(wchan, "0") ? wchan : "",
                 ticks_ms(st.own_ticks));
    return out;
}

/* Adds what /proc says of pid: runnable, and its CPU in clock ticks (its own
 * and its waited-for children's). */
static void add_process(pid_t pid, int *running, unsigned long long *ticks)
{
    proc_stat st;
    if (proc_stat_read(pid, &st) < 0) return;
    if (st.state == 'R' || (!*running && other_thread_runnable(pid))) *running = 1;
    *ticks += st.own_ticks + st.kids_ticks;
}

/* Runnable, and given less than half of what it could have had since it
 * was spawned: starved by the machine (dozens of starts at once, other
 * load), not hung (asleep) nor spinning (its CPU near a core, or its
 * quota). Judged over the instance as a whole, every process of its pids
 * cgroup (the bootstrap alone without one): a shell bootstrap waiting for
 * its interpreter is as starved as the interpreter (brk7: judged by the
 * shell, asleep, it was killed at 10 s and begun again, never ready), and
 * one whose own children take its CPU has had it (brk7: such bootstraps,
 * judged starved, held their starts for 60 s). */
static int starved_now(const exec_instance *e)
{
    int running = 0;
    unsigned long long ticks = 0;
    const isolate_slot *s = e->base.iso;
    FILE *procs = NULL;
    if (s && s->pids >= 0) {
        char path[sizeof s->dirs[0] + 16];
        snprintf(path, sizeof path, "%s/cgroup.procs", s->dirs[s->pids]);
        procs = fopen(path, "re");
    }
    if (procs) {
        long pid;
        for (int i = 0; i < SPATE_STARVED_PROCS_MAX && fscanf(procs, "%ld", &pid) == 1; i++)
            add_process((pid_t)pid, &running, &ticks);
        fclose(procs);
    } else {
        add_process(e->proc.pid, &running, &ticks);
    }
    unsigned long long cpu_ms = ticks_ms(ticks);
    unsigned long long ran_ms = (clock_mono_ns() - e->spawned_ns) / 1000000;
    /* One thread's worth: a quota of several cores is no more to a
     * single-threaded bootstrap stuck in a loop. */
    uint32_t millis = s ? s->cpu_millis : 0;
    if (!millis || millis > 1000) millis = 1000;
    unsigned long long could_ms = ran_ms * millis / 1000;
    if (!running || cpu_ms * 2 >= could_ms) return 0;
    /* Throttled by its own quota in half its periods or more: it had its
     * CPU, though not in its processes' sums (brk8: short-lived children
     * no one waits for burnt it, and took their CPU with them). */
    uint64_t periods, throttled;
    if (e->throttle_known && isolate_cpu_throttled(s, &periods, &throttled) == 0 &&
        periods > e->periods0 && (throttled - e->throttled0) * 2 >= periods - e->periods0)
        return 0;
    return 1;
}

static int exec_starved(const instance *base)
{
    const exec_instance *e = (const exec_instance *)base;
    if (!e->alive || e->ready || e->killed || e->init_error) return 0;
    return starved_now(e);
}

static void exec_kill(instance *base)
{
    exec_instance *e = (exec_instance *)base;
    if (e->alive && !e->ready && !e->killed && !e->init_error) {
        e->unready = unready_note(e->proc.pid);
        e->base.starved = starved_now(e);
    }
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

/* spated's child: one that has exited waits to be reaped, which waitid
 * sees without reaping it (libuv does that from its SIGCHLD handler). */
static int exec_alive(const instance *base)
{
    const exec_instance *e = (const exec_instance *)base;
    if (!exec_usable(base)) return 0;
    /* A bootstrap killed a moment ago has its sockets closed before it
     * becomes a zombie: its /next connection tells first. */
    if (e->next_req && http_request_peer_closed(e->next_req)) return 0;
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)e->proc.pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) return 1;
    return si.si_pid == 0;
}

/* Handed out by /next and not answered: what is still in the queue was
 * never asked for (a bootstrap that posts an error and exits leaves it). */
static int exec_delivered(const instance *base)
{
    return ((const exec_instance *)base)->running != NULL;
}

static const instance_ops ops = {
    .invoke = exec_invoke,
    .withdraw = exec_withdraw,
    .kill = exec_kill,
    .usable = exec_usable,
    .pid = exec_pid,
    .delivered = exec_delivered,
    .alive = exec_alive,
    .starved = exec_starved,
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
        /* A managed runtime's bootstrap is read where it is installed: the
         * host is visible (read-only) in the instance's namespace. */
        args[n++] = x->managed ? x->bootstrap : "/var/task/bootstrap";
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
    rc = http_server_start(x->loop, "127.0.0.1", 0, &hc, &exec__api_handlers, e, &e->api, err,
                           sizeof err);
    if (rc != 0) {
        if (err_limit(rc) >= 0) /* the pool tells a node limit once */
            log_debug("cannot open a Runtime API endpoint: %s fn=%s", err, x->function);
        else
            log_warn("cannot open a Runtime API endpoint: %s fn=%s", err, x->function);
        output_close_fds(outfd);
        instance_release(&e->base, NULL, 0);
        free(e);
        return err_limit(rc) >= 0 ? rc : ERR_IO;
    }
    e->port = http_server_port(e->api);
    /* The version's environment plus this instance's own endpoint, in a
     * descriptor the runner reads once it is no longer root (isolate.h). */
    char api[48];
    snprintf(api, sizeof api, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d", e->port);
    int envfd = isolate_env_fd(x->env, api);
    if (envfd < 0) {
        int e_no = errno;
        if (err_limit(err_from_errno(e_no, ERR_IO)) >= 0)
            log_debug("cannot pass the environment to an instance: %s fn=%s", strerror(e_no),
                      x->function);
        else
            log_warn("cannot pass the environment to an instance: %s fn=%s", strerror(e_no),
                     x->function);
        output_close_fds(outfd);
        http_server_close(e->api, NULL, NULL);
        instance_release(&e->base, NULL, 0);
        free(e);
        return err_from_errno(e_no, ERR_IO);
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
    e->throttle_known =
        e->base.iso && isolate_cpu_throttled(e->base.iso, &e->periods0, &e->throttled0) == 0;
    e->spawned_ns = clock_mono_ns();
    rc = uv_spawn(x->loop, &e->proc, &opt);
    close(envfd);
    output_close_fds(outfd);
    if (status[1] >= 0) close(status[1]);
    if (rc != 0) {
        if (e->status_fd >= 0) close(e->status_fd);
        e->status_fd = -1;
        if (err_limit(err_from_errno(-rc, ERR_IO)) >= 0)
            log_debug("cannot start '%s': %s fn=%s", x->runner, uv_strerror(rc), x->function);
        else
            log_warn("cannot start '%s': %s fn=%s", x->runner, uv_strerror(rc), x->function);
        instance_release(&e->base, NULL, 0);
        e->open = 2;
        e->exited = 1;
        x->refs++;
        uv_close((uv_handle_t *)&e->proc, on_proc_closed);
        http_server_close(e->api, on_api_closed, e);
        return err_from_errno(-rc, ERR_IO);
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
