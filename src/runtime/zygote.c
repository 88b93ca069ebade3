#include "runtime/zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/isolate.h"
#include "runtime/native.h"
#include "runtime/output.h"
#include "runtime/zproto.h"

enum zstate { Z_LOADING, Z_READY, Z_STOPPING };

typedef struct zslot {
    uint64_t id;
    pid_t pid; /* 0 until SPAWNED */
    instance *inst;
} zslot;

struct zygote {
    uv_loop_t *loop;
    uv_process_t proc;
    uv_poll_t poll;
    uv_timer_t load_timer;
    int ctl;     /* our end of the control socket */
    output *out; /* the zygote's stdout and stderr */
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
};

static void maybe_free(zygote *z)
{
    if (z->open_handles > 0) return;
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
    z->loaded(z, ERR_INVAL, why, z->data);
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

static void on_message(zygote *z, const zmsg *m, int fd)
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
        if (z->state == Z_LOADING) fail_loading(z, m->text);
        break;
    case ZMSG_SPAWNED:
        if ((s = slot_by_id(z, m->id)) == NULL) break;
        s->pid = m->pid;
        native_on_spawned(s->inst, m->pid, fd);
        fd = -1; /* the instance owns the pidfd now */
        break;
    case ZMSG_SPAWN_FAILED:
        if ((s = slot_by_id(z, m->id)) == NULL) break;
        native_on_spawn_failed(s->inst, m->err);
        break;
    case ZMSG_EXITED:
        if ((s = slot_by_pid(z, m->pid)) == NULL) break;
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
        int fds[2];
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
        if (fds[1] >= 0) close(fds[1]); /* nothing sends two */
        on_message(z, &m, fds[0]);
    }
}

static void on_load_timeout(uv_timer_t *t)
{
    zygote *z = t->data;
    if (z->state != Z_LOADING) return;
    char why[96];
    snprintf(why, sizeof why, "the shared object did not load within %d ms (spate_preload hangs?)",
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

static void on_process_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
    zygote *z = p->data;
    z->process_alive = 0;
    /* Read what it said before it died: a LOAD_FAILED reason, or reports of
     * instances that ended just before, and what it printed. */
    on_control(&z->poll, 0, UV_READABLE);
    output_close(z->out);
    z->out = NULL;

    char how[128];
    describe_status(how, sizeof how, exit_status, term_signal);
    if (z->state == Z_LOADING) {
        char why[192];
        snprintf(why, sizeof why, "spate-runner %s while loading the shared object", how);
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
    uv_close((uv_handle_t *)&z->proc, on_handle_closed);
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
        log_error("cannot create zygote socket: %s fn=%s", strerror(e), cfg->function);
        free(z->function);
        free(z);
        return ERR_IO;
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);

    char version[16], uid[16], gid[16], memory[16], tmp[16];
    snprintf(version, sizeof version, "%u", cfg->version);
    char *args[20] = {(char *)cfg->runner_path, "--control-fd", "3",    "--function",
                      (char *)cfg->function,    "--version",    version};
    int n = 7;
    const isolate_config *iso = isolate_get();
    if (iso->drop) {
        snprintf(uid, sizeof uid, "%u", (unsigned)isolate_uid(cfg->function));
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
    if (iso->mount_ns) { /* /var/task, and a private /tmp per instance */
        snprintf(tmp, sizeof tmp, "%u", cfg->tmp_mb ? cfg->tmp_mb : SPATE_TMP_DEFAULT_MB);
        args[n++] = "--tmp-mb";
        args[n++] = tmp;
    }
    args[n++] = (char *)cfg->object_path;
    args[n] = NULL;
    int outfd = -1;
    if (cfg->log && output_open(loop, cfg->log, 0, &outfd, &z->out) != 0) outfd = -1;
    uv_stdio_container_t stdio[4] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = outfd >= 0 ? outfd : STDOUT_FILENO},
        {.flags = UV_INHERIT_FD, .data.fd = outfd >= 0 ? outfd : STDERR_FILENO},
        {.flags = UV_INHERIT_FD, .data.fd = sv[1]},
    };
    uv_process_options_t opt = {
        .exit_cb = on_process_exit,
        .file = cfg->runner_path,
        .args = args,
        .env = cfg->env,
        .stdio_count = 4,
        .stdio = stdio,
    };
    z->proc.data = z;
    int rc = uv_spawn(loop, &z->proc, &opt);
    close(sv[1]);
    if (outfd >= 0) close(outfd);
    if (rc != 0) {
        output_close(z->out);
        z->out = NULL;
        log_error("cannot start '%s': %s fn=%s", cfg->runner_path, uv_strerror(rc), cfg->function);
        close(sv[0]);
        /* uv_spawn failing leaves an initialised handle that must be closed. */
        z->open_handles = 1;
        uv_close((uv_handle_t *)&z->proc, on_handle_closed);
        return ERR_IO;
    }
    z->process_alive = 1;
    z->ctl = sv[0];
    z->open_handles = 3;
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

int zygote_request_spawn(zygote *z, instance *inst, int fd, int out, const char *text)
{
    if (z->state != Z_READY || !z->process_alive) {
        close(fd);
        if (out >= 0) close(out);
        return ERR_CLOSED;
    }
    if (z->nslots == z->capslots) {
        size_t cap = z->capslots ? z->capslots * 2 : 16;
        zslot *s = realloc(z->slots, cap * sizeof *s);
        if (!s) {
            close(fd);
            if (out >= 0) close(out);
            return ERR_NOMEM;
        }
        z->slots = s;
        z->capslots = cap;
    }
    uint64_t id = z->next_id++;
    zmsg m = {.type = ZMSG_SPAWN, .id = id};
    snprintf(m.text, sizeof m.text, "%s", text);
    int rc = zmsg_send(z->ctl, &m, fd, out);
    close(fd);
    if (out >= 0) close(out);
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
