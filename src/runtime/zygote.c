#include "runtime/zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/isolate.h"
#include "runtime/native.h"
#include "runtime/output.h"
#include "runtime/zproto.h"

enum zstate { Z_LOADING, Z_READY, Z_STOPPING };

/* What spated waits to hear about an instance, by when. */
enum zwait { W_NONE, W_SPAWNED, W_EXITED };

typedef struct zslot {
    uint64_t id;
    pid_t pid; /* 0 until SPAWNED */
    instance *inst;
    enum zwait wait;
    uint64_t due_ns;
} zslot;

struct zygote {
    uv_loop_t *loop;
    uv_process_t proc;
    uv_poll_t poll;
    uv_timer_t load_timer;
    uv_timer_t watch;     /* the reports spated waits for (zslot.wait) */
    int ctl;              /* our end of the control socket */
    isolate_version *iso; /* its cgroups: everything it and its children run */
    output *out;          /* the zygote's stdout and stderr */
    enum zstate state;
    int process_alive;
    int open_handles;
    zygote_loaded_cb loaded;
    zygote_exit_cb exited;
    void *data;
    char *function;
    uint32_t version;
    zslot *slots;
    size_t nslots, capslots;
    uint64_t next_id;
    uint32_t *cancel;   /* SPATE_CANCEL_COUNTERS, shared with the runner; NULL: none */
    int managed;        /* a managed runtime's: loading imports the handler's module */
    uint32_t memory_mb; /* its limit, named when the load is killed */
};

#define CANCEL_BYTES (SPATE_CANCEL_COUNTERS * sizeof(uint32_t))

/* The page of CANCEL counters (limits.h), or -1 when the host refuses one:
 * then instances look at their socket before each invocation. */
static int cancel_page(zygote *z)
{
    int fd = memfd_create("spate-cancel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    /* Sealed at its size: the zygote runs function code, and a page it could
     * shrink would fault (SIGBUS) in spated, which writes it. */
    void *p = ftruncate(fd, CANCEL_BYTES) == 0 &&
                      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0
                  ? mmap(NULL, CANCEL_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                  : MAP_FAILED;
    if (p == MAP_FAILED) {
        close(fd);
        return -1;
    }
    z->cancel = p;
    return fd;
}

static void maybe_free(zygote *z)
{
    if (z->open_handles > 0) return;
    if (z->cancel) munmap(z->cancel, CANCEL_BYTES);
    free(z->slots);
    free(z->function);
    free(z);
}

static void on_handle_closed(uv_handle_t *h)
{
    zygote *z = h->data;
    z->open_handles--;
    maybe_free(z);
}

/* Stops listening to the runner: closes the control socket and the timer. */
static void close_control(zygote *z)
{
    if (z->ctl < 0) return;
    uv_close((uv_handle_t *)&z->poll, on_handle_closed);
    uv_close((uv_handle_t *)&z->load_timer, on_handle_closed);
    uv_close((uv_handle_t *)&z->watch, on_handle_closed);
    close(z->ctl);
    z->ctl = -1;
}

/* Every instance still known is reported lost: the runner is gone or going,
 * and its instances die with it (PR_SET_PDEATHSIG). */
static void lose_instances(zygote *z)
{
    while (z->nslots > 0) {
        instance *inst = z->slots[z->nslots - 1].inst;
        z->nslots--;
        native_on_zygote_lost(inst);
    }
}

static void fail_loading(zygote *z, const char *why)
{
    z->state = Z_STOPPING;
    close_control(z);
    if (z->process_alive) uv_process_kill(&z->proc, SIGKILL);
    isolate_version_kill(z->iso);
    z->loaded(z, ERR_INVAL, why, z->data);
}

/* The zygote said something no honest zygote says: function code has taken
 * over its control socket (spate_preload runs in it). Stop it and everything
 * in its cgroups, as if it had died; its instances are lost and the pool
 * starts a new zygote. Nothing it named is ever signalled. */
static void broken(zygote *z, const char *what)
{
    if (z->state == Z_STOPPING) return;
    log_warn("zygote broke the control protocol: %s; stopping it and everything it started "
             "fn=%s version=%u pid=%d",
             what, z->function, z->version, z->proc.pid);
    if (z->state == Z_LOADING) {
        char why[300];
        snprintf(why, sizeof why, "the zygote broke the control protocol: %s", what);
        fail_loading(z, why);
        return;
    }
    z->state = Z_STOPPING;
    close_control(z);
    if (z->process_alive) uv_process_kill(&z->proc, SIGKILL);
    isolate_version_kill(z->iso);
    lose_instances(z);
    zygote_exit_cb cb = z->exited;
    z->exited = NULL;
    if (cb) cb(z, z->data);
}

static zslot *slot_by_id(zygote *z, uint64_t id)
{
    for (size_t i = 0; i < z->nslots; i++)
        if (z->slots[i].id == id) return &z->slots[i];
    return NULL;
}

static zslot *slot_by_pid(zygote *z, pid_t pid)
{
    for (size_t i = 0; i < z->nslots; i++)
        if (z->slots[i].pid == pid) return &z->slots[i];
    return NULL;
}

/* The value after "key" on its line of text, or NULL. */
static const char *field(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, key, n) == 0) return p + n;
    return NULL;
}

static int read_text(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    return 0;
}

/* Whether pidfd names what the zygote says it forked: a live child of the
 * zygote that runs as the function's user (and so only ever the function's
 * own process). 0: yes. 1: the process is gone already, so nothing can be
 * checked and nothing a signal through pidfd could reach. -1: no; why says
 * what is wrong. The last check is that the process is still alive: then
 * the pid read from fdinfo was still its own when /proc/PID was read. */
static int check_spawned(zygote *z, pid_t claimed, int pidfd, char *why, size_t cap)
{
    char path[64], text[2048];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
    const char *v = read_text(path, text, sizeof text) == 0 ? field(text, "Pid:") : NULL;
    if (!v) {
        snprintf(why, cap, "SPAWNED pid %d with a descriptor that is not a pidfd", (int)claimed);
        return -1;
    }
    long pid = strtol(v, NULL, 10);
    if (pid == -1) return 1;
    if (pid <= 0 || pid != claimed) {
        snprintf(why, cap, "SPAWNED pid %d with a pidfd of pid %ld", (int)claimed, pid);
        return -1;
    }
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    int bad = 0;
    long ppid = -1;
    unsigned long uids[4] = {0};
    if (read_text(path, text, sizeof text) != 0 || !(v = field(text, "PPid:")) ||
        (ppid = strtol(v, NULL, 10)) != z->proc.pid) {
        snprintf(why, cap, "SPAWNED pid %ld, which is not its child (parent %ld)", pid, ppid);
        bad = 1;
    } else if (!(v = field(text, "Uid:")) ||
               sscanf(v, "%lu %lu %lu %lu", &uids[0], &uids[1], &uids[2], &uids[3]) != 4) {
        snprintf(why, cap, "SPAWNED pid %ld, whose uids cannot be read", pid);
        bad = 1;
    } else {
        uid_t want = isolate_get()->drop ? isolate_uid(z->function) : geteuid();
        for (int i = 0; i < 4 && !bad; i++) {
            if (uids[i] != (unsigned long)want) {
                snprintf(why, cap, "SPAWNED pid %ld, which runs as uid %lu, not the function's %u",
                         pid, uids[i], (unsigned)want);
                bad = 1;
            }
        }
    }
    if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) != 0) return 1;
    return bad ? -1 : 0;
}

/* Acts on the reports spated waited for in vain. */
static void on_watch(uv_timer_t *t)
{
    zygote *z = t->data;
    uint64_t now = clock_mono_ns(), next = 0;
    for (size_t i = 0; i < z->nslots && z->state == Z_READY;) {
        zslot *s = &z->slots[i];
        if (s->wait == W_NONE) {
            i++;
            continue;
        }
        if (s->due_ns > now) {
            if (!next || s->due_ns < next) next = s->due_ns;
            i++;
            continue;
        }
        if (s->wait == W_SPAWNED) {
            char why[160];
            snprintf(why, sizeof why, "no SPAWNED for instance %llu within %d ms",
                     (unsigned long long)s->id, SPATE_ZYGOTE_REPORT_MS);
            broken(z, why);
            return;
        }
        /* Its process is gone (its pidfd said so) and the zygote did not
         * report it: the instance ends without knowing how. */
        log_warn("zygote did not report the exit of pid %d within %d ms fn=%s", (int)s->pid,
                 SPATE_ZYGOTE_REPORT_MS, z->function);
        s->wait = W_NONE;
        native_on_unreported_exit(s->inst); /* forgets the slot: i now holds another */
    }
    if (next && z->state == Z_READY)
        uv_timer_start(&z->watch, on_watch, (next - now) / 1000000 + 1, 0);
}

static void await(zygote *z, instance *inst, enum zwait what)
{
    for (size_t i = 0; i < z->nslots; i++) {
        zslot *s = &z->slots[i];
        if (s->inst != inst || s->wait != W_NONE) continue;
        s->wait = what;
        s->due_ns = clock_mono_ns() + (uint64_t)SPATE_ZYGOTE_REPORT_MS * 1000000u;
        if (z->ctl >= 0 && !uv_is_active((uv_handle_t *)&z->watch))
            uv_timer_start(&z->watch, on_watch, SPATE_ZYGOTE_REPORT_MS, 0);
        return;
    }
}

void zygote_await_spawned(zygote *z, instance *inst)
{
    await(z, inst, W_SPAWNED);
}

void zygote_await_exited(zygote *z, instance *inst)
{
    await(z, inst, W_EXITED);
}

/* 1 when the instance took the pidfd. */
static int on_spawned(zygote *z, const zmsg *m, int fd)
{
    char why[200];
    if (m->id == 0 || m->id >= z->next_id) {
        snprintf(why, sizeof why, "SPAWNED for instance %llu, which it was never asked for",
                 (unsigned long long)m->id);
        broken(z, why);
        return 0;
    }
    zslot *s = slot_by_id(z, m->id);
    if (!s) return 0; /* an instance spated has finished with */
    if (s->pid) {
        snprintf(why, sizeof why, "a second SPAWNED for instance %llu", (unsigned long long)m->id);
        broken(z, why);
        return 0;
    }
    if (fd < 0) {
        snprintf(why, sizeof why, "SPAWNED pid %d without a pidfd", (int)m->pid);
        broken(z, why);
        return 0;
    }
    if (check_spawned(z, m->pid, fd, why, sizeof why) < 0) {
        broken(z, why);
        return 0;
    }
    /* Checked, or gone already: either way the pidfd reaches only it. */
    s->pid = m->pid;
    s->wait = W_NONE;
    native_on_spawned(s->inst, m->pid, fd);
    return 1;
}

/* Text from the zygote goes to logs and to the deployer: no control characters. */
static void clean_text(char *t)
{
    for (; *t; t++)
        if ((unsigned char)*t < 0x20 || *t == 0x7f) *t = '?';
}

static void on_message(zygote *z, zmsg *m, int fd)
{
    zslot *s;
    switch (m->type) {
    case ZMSG_LOADED:
        if (z->state != Z_LOADING) break;
        z->state = Z_READY;
        uv_timer_stop(&z->load_timer);
        z->loaded(z, 0, NULL, z->data);
        break;
    case ZMSG_LOAD_FAILED:
        clean_text(m->text);
        if (z->state == Z_LOADING) fail_loading(z, m->text);
        break;
    case ZMSG_SPAWNED:
        if (on_spawned(z, m, fd)) fd = -1; /* the instance owns the pidfd now */
        break;
    case ZMSG_SPAWN_FAILED:
        if ((s = slot_by_id(z, m->id)) == NULL) break;
        if (s->pid) {
            broken(z, "SPAWN_FAILED for an instance it had reported SPAWNED");
            break;
        }
        native_on_spawn_failed(s->inst, m->err);
        break;
    case ZMSG_EXITED:
        /* A pid spated does not know is ignored: no signal ever follows. */
        if (m->pid <= 0 || (s = slot_by_pid(z, m->pid)) == NULL) break;
        native_on_exited(s->inst, m->status);
        break;
    default:
        log_warn("zygote sent an unknown message type %u fn=%s", m->type, z->function);
    }
    if (fd >= 0) close(fd);
}

static void on_control(uv_poll_t *h, int status, int events)
{
    zygote *z = h->data;
    while (z->ctl >= 0) {
        zmsg m;
        int fds[ZMSG_FDS_MAX];
        int rc = zmsg_recv(z->ctl, &m, fds);
        if (rc == -EAGAIN) return;
        if (rc == -EPROTO) {
            log_warn("malformed message from zygote fn=%s", z->function);
            continue;
        }
        if (rc <= 0) {
            /* The runner closed its end: it is exiting; on_process_exit follows. */
            uv_poll_stop(&z->poll);
            return;
        }
        for (int i = 1; i < ZMSG_FDS_MAX; i++)
            if (fds[i] >= 0) close(fds[i]); /* nothing sends more than one */
        on_message(z, &m, fds[0]);
    }
}

static void on_load_timeout(uv_timer_t *t)
{
    zygote *z = t->data;
    if (z->state != Z_LOADING) return;
    char why[96];
    if (z->managed)
        snprintf(why, sizeof why, "the handler's module did not import within %d ms (it hangs?)",
                 SPATE_ZYGOTE_LOAD_TIMEOUT_MS);
    else
        snprintf(why, sizeof why,
                 "the shared object did not load within %d ms (spate_preload hangs?)",
                 SPATE_ZYGOTE_LOAD_TIMEOUT_MS);
    fail_loading(z, why);
}

static void describe_status(char *out, size_t cap, int64_t exit_status, int term_signal)
{
    if (term_signal)
        snprintf(out, cap, "killed by signal %d (%s)", term_signal, strsignal(term_signal));
    else
        snprintf(out, cap, "exited with status %lld", (long long)exit_status);
}

/* Zygote processes alive, for the node's headroom (zygote_running). */
static uint32_t running;

static void on_process_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
    zygote *z = p->data;
    z->process_alive = 0;
    running--;
    /* Read what it said before it died: a LOAD_FAILED reason, or reports of
     * instances that ended just before, and what it printed. */
    on_control(&z->poll, 0, UV_READABLE);
    output_close(z->out);
    z->out = NULL;

    char how[128];
    describe_status(how, sizeof how, exit_status, term_signal);
    if (z->state == Z_LOADING) {
        /* The load's own timeout is reported before it kills: a SIGKILL
         * now is the memory cgroup's, most likely. */
        char why[256], hint[64] = "";
        if (term_signal == SIGKILL && z->memory_mb)
            snprintf(hint, sizeof hint, " (over its --memory of %u MB?)", z->memory_mb);
        snprintf(why, sizeof why, "%s %s while %s%s", z->managed ? "the runtime" : "spate-runner",
                 how, z->managed ? "importing the handler's module" : "loading the shared object",
                 hint);
        fail_loading(z, why);
    } else if (z->state == Z_READY) {
        log_warn("zygote %s fn=%s version=%u pid=%d", how, z->function, z->version, (int)p->pid);
        z->state = Z_STOPPING;
        close_control(z);
        lose_instances(z);
        if (z->exited) z->exited(z, z->data);
    } else {
        close_control(z);
        lose_instances(z);
    }
    /* What spate_preload started dies with its zygote. */
    isolate_version_release(z->iso);
    z->iso = NULL;
    uv_close((uv_handle_t *)&z->proc, on_handle_closed);
}

uint32_t zygote_running(void)
{
    return running;
}

int zygote_start(uv_loop_t *loop, const zygote_config *cfg, zygote_loaded_cb loaded,
                 zygote_exit_cb exited, void *data, zygote **out)
{
    zygote *z = calloc(1, sizeof *z);
    if (!z) return ERR_NOMEM;
    z->loop = loop;
    z->loaded = loaded;
    z->exited = exited;
    z->data = data;
    z->version = cfg->version;
    z->next_id = 1;
    z->function = strdup(cfg->function);
    if (!z->function) {
        free(z);
        return ERR_NOMEM;
    }

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        int e = errno;
        /* A node limit is the pool's to tell, once (sched/pool/limits.c). */
        if (err_limit(err_from_errno(e, ERR_IO)) >= 0)
            log_debug("cannot create zygote socket: %s fn=%s", strerror(e), cfg->function);
        else
            log_error("cannot create zygote socket: %s fn=%s", strerror(e), cfg->function);
        free(z->function);
        free(z);
        return err_from_errno(e, ERR_IO);
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    z->managed = cfg->code_dir != NULL;
    z->memory_mb = cfg->memory_mb;
    uid_t fn_uid = isolate_uid(cfg->function);
    z->iso = isolate_version_acquire(cfg->memory_mb, cfg->max_instances, fn_uid);
    /* The function's variables reach the runner only in a descriptor it
     * reads once it is no longer root (isolate.h). */
    int envfd = z->iso ? isolate_env_fd(cfg->env, NULL) : -1;
    if (envfd < 0) {
        int e = z->iso ? errno : ENOMEM;
        if (err_limit(err_from_errno(e, ERR_IO)) >= 0)
            log_debug("cannot pass the environment to the zygote: %s fn=%s", strerror(e),
                      cfg->function);
        else
            log_error("cannot pass the environment to the zygote: %s fn=%s", strerror(e),
                      cfg->function);
        isolate_version_release(z->iso);
        close(sv[0]);
        close(sv[1]);
        free(z->function);
        free(z);
        return err_from_errno(e, ERR_IO);
    }

    char version[16], uid[16], gid[16], memory[16], tmp[16];
    snprintf(version, sizeof version, "%u", cfg->version);
    char *args[28 + 2 * SPATE_WRITABLE_MAX] = {
        (char *)cfg->runner_path, "--control-fd", "3",    "--function",
        (char *)cfg->function,    "--version",    version};
    int n = 7;
    const isolate_config *iso = isolate_get();
    if (iso->drop) {
        snprintf(uid, sizeof uid, "%u", (unsigned)fn_uid);
        snprintf(gid, sizeof gid, "%u", (unsigned)iso->gid);
        args[n++] = "--uid";
        args[n++] = uid;
        args[n++] = "--gid";
        args[n++] = gid;
    }
    if (cfg->no_network) args[n++] = "--no-network";
    if (cfg->memory_mb) {
        snprintf(memory, sizeof memory, "%u", cfg->memory_mb);
        args[n++] = "--memory-mb";
        args[n++] = memory;
    }
    const char *cgroups = isolate_version_cgroups(z->iso);
    if (cgroups[0]) {
        args[n++] = "--cgroups";
        args[n++] = (char *)cgroups;
    }
    args[n++] = "--env-fd";
    args[n++] = "4";
    int cancelfd = cancel_page(z);
    if (cancelfd >= 0) {
        args[n++] = "--cancel-fd";
        args[n++] = "5";
    }
    if (iso->mount_ns) { /* /var/task, and a private /tmp per instance */
        snprintf(tmp, sizeof tmp, "%u", cfg->tmp_mb ? cfg->tmp_mb : SPATE_TMP_DEFAULT_MB);
        args[n++] = "--tmp-mb";
        args[n++] = tmp;
        if (cfg->code_dir) {
            args[n++] = "--task";
            args[n++] = (char *)cfg->code_dir;
        }
        for (int i = 0; iso->writable[i]; i++) {
            args[n++] = "--writable";
            args[n++] = (char *)iso->writable[i];
        }
    }
    args[n++] = (char *)cfg->object_path;
    args[n] = NULL;
    int outfd[2] = {-1, -1};
    if (cfg->log && output_open(loop, cfg->log, 0, cfg->version, outfd, &z->out) != 0)
        outfd[0] = outfd[1] = -1;
    uv_stdio_container_t stdio[6] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = outfd[0] >= 0 ? outfd[0] : STDOUT_FILENO},
        {.flags = UV_INHERIT_FD, .data.fd = outfd[1] >= 0 ? outfd[1] : STDERR_FILENO},
        {.flags = UV_INHERIT_FD, .data.fd = sv[1]},
        {.flags = UV_INHERIT_FD, .data.fd = envfd},
        {.flags = UV_INHERIT_FD, .data.fd = cancelfd},
    };
    uv_process_options_t opt = {
        .exit_cb = on_process_exit,
        .file = cfg->runner_path,
        .args = args,
        .env = isolate_runner_env(), /* it starts as root: nothing of the function's */
        .stdio_count = cancelfd >= 0 ? 6 : 5,
        .stdio = stdio,
    };
    z->proc.data = z;
    int rc = uv_spawn(loop, &z->proc, &opt);
    close(sv[1]);
    close(envfd);
    if (cancelfd >= 0) close(cancelfd);
    output_close_fds(outfd);
    if (rc != 0) {
        isolate_version_release(z->iso);
        z->iso = NULL;
        output_close(z->out);
        z->out = NULL;
        if (err_limit(err_from_errno(-rc, ERR_IO)) >= 0)
            log_debug("cannot start '%s': %s fn=%s", cfg->runner_path, uv_strerror(rc),
                      cfg->function);
        else
            log_error("cannot start '%s': %s fn=%s", cfg->runner_path, uv_strerror(rc),
                      cfg->function);
        close(sv[0]);
        /* uv_spawn failing leaves an initialised handle that must be closed. */
        z->open_handles = 1;
        uv_close((uv_handle_t *)&z->proc, on_handle_closed);
        return err_from_errno(-rc, ERR_IO);
    }
    z->process_alive = 1;
    running++;
    z->ctl = sv[0];
    z->open_handles = 4;
    uv_timer_init(loop, &z->watch);
    z->watch.data = z;
    uv_poll_init(loop, &z->poll, z->ctl);
    z->poll.data = z;
    uv_poll_start(&z->poll, UV_READABLE, on_control);
    uv_timer_init(loop, &z->load_timer);
    z->load_timer.data = z;
    uv_timer_start(&z->load_timer, on_load_timeout, SPATE_ZYGOTE_LOAD_TIMEOUT_MS, 0);
    *out = z;
    return 0;
}

void zygote_stop(zygote *z)
{
    if (!z) return;
    z->exited = NULL; /* the owner lets go: no more callbacks */
    if (z->state == Z_STOPPING) return;
    z->state = Z_STOPPING;
    close_control(z);
    if (z->process_alive) uv_process_kill(&z->proc, SIGKILL);
    /* Now, not once it has exited: spate_preload's children are not its
     * instances and do not die with it. */
    isolate_version_kill(z->iso);
    lose_instances(z);
}

uv_loop_t *zygote_loop(const zygote *z)
{
    return z->loop;
}

int zygote_pid(const zygote *z)
{
    return z->proc.pid;
}

int zygote_exited(const zygote *z)
{
    if (!z->process_alive) return 1;
    /* Its end is read by libuv on a later turn of the loop (SIGCHLD); the
     * zombie is there already. WNOWAIT: libuv still reaps it. */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)z->proc.pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) return 0;
    return si.si_pid != 0;
}

uint32_t *zygote_cancel_counter(zygote *z, const instance *inst)
{
    if (!z->cancel) return NULL;
    for (size_t i = 0; i < z->nslots; i++)
        if (z->slots[i].inst == inst) return &z->cancel[z->slots[i].id % SPATE_CANCEL_COUNTERS];
    return NULL;
}

int zygote_request_spawn(zygote *z, instance *inst, int fd, int out[2], const char *text)
{
    if (z->state != Z_READY || !z->process_alive) {
        close(fd);
        output_close_fds(out);
        return ERR_CLOSED;
    }
    if (z->nslots == z->capslots) {
        size_t cap = z->capslots ? z->capslots * 2 : 16;
        zslot *s = realloc(z->slots, cap * sizeof *s);
        if (!s) {
            close(fd);
            output_close_fds(out);
            return ERR_NOMEM;
        }
        z->slots = s;
        z->capslots = cap;
    }
    uint64_t id = z->next_id++;
    zmsg m = {.type = ZMSG_SPAWN, .id = id};
    snprintf(m.text, sizeof m.text, "%s", text);
    int fds[ZMSG_FDS_MAX] = {fd, out[0], out[1]};
    int rc = zmsg_send(z->ctl, &m, fds);
    close(fd);
    output_close_fds(out);
    if (rc != 0) {
        log_warn("cannot ask zygote for an instance: %s fn=%s", strerror(-rc), z->function);
        return ERR_IO;
    }
    z->slots[z->nslots++] = (zslot){.id = id, .inst = inst};
    return 0;
}

void zygote_forget(zygote *z, instance *inst)
{
    for (size_t i = 0; i < z->nslots; i++) {
        if (z->slots[i].inst == inst) {
            z->slots[i] = z->slots[--z->nslots];
            return;
        }
    }
}
