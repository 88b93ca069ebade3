#include "runtime/native.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/list.h"
#include "common/log.h"
#include "runtime/output.h"
#include "runtime/zproto.h"

typedef struct native {
    instance base;
    uv_pipe_t pipe;     /* our end of the instance socket */
    uv_poll_t exitpoll; /* the pidfd: readable once the process has exited */
    int handles;        /* open libuv handles; freed when none is left */
    uv_write_t wreq;
    zygote *z; /* NULL once the zygote is gone */
    pid_t pid;
    int pidfd;
    frame_reader reader;
    list_node dirty; /* in the list of instances with frames to send */
    buf out;         /* frames not yet handed to the socket */
    buf sending;     /* frames a pending uv_write is sending */
    int writing;
    int status;          /* as from waitpid, once exited */
    uint32_t unanswered; /* INVOKE frames sent without a RESULT yet */
    /* INVOKE frames queued and RESULT frames read since the start, and how
     * many INVOKEs had been queued when the last CANCEL was: only those may
     * come back cancelled (a CANCEL covers what was sent before it). */
    uint64_t sent, answered, cancel_upto;
    uint32_t pass;    /* after a sure withdrawal: answers to report first (the running one) */
    uint32_t swallow; /* then CANCELLED answers for invocations already taken back */
    char *init_error;
    unsigned spawned : 1, exited : 1, kill_pending : 1, killed : 1, closed : 1, finalized : 1,
        polling : 1, broken : 1;
} native;

static void native_kill(instance *base);
static int native_usable(const instance *base);

/* Frames queued during one turn of the loop leave together at its end (a
 * check handle), so several invocations for one instance cost one write. */
static uv_check_t flusher;
static list_node dirty_list;
static int flusher_ready;

static void on_closed(uv_handle_t *h)
{
    native *inst = h->data;
    if (--inst->handles > 0) return;
    frame_reader_free(&inst->reader);
    buf_free(&inst->out);
    buf_free(&inst->sending);
    free(inst->init_error);
    free(inst);
}

/* Reports the end once and releases the instance. */
static void finalize(native *inst, const char *why)
{
    if (inst->finalized) return;
    inst->finalized = 1;
    char oom[160];
    if (instance_release(&inst->base, oom, sizeof oom)) why = oom;
    list_remove(&inst->dirty);
    if (inst->z) zygote_forget(inst->z, &inst->base);
    uv_read_stop((uv_stream_t *)&inst->pipe);
    if (inst->polling) uv_close((uv_handle_t *)&inst->exitpoll, on_closed); /* before the fd */
    if (inst->pidfd >= 0) {
        /* Whatever the zygote said, an instance that is over is dead: its
         * pidfd reaches only it (and nothing once it has been reaped). */
        syscall(SYS_pidfd_send_signal, inst->pidfd, SIGKILL, NULL, 0);
        close(inst->pidfd);
    }
    inst->pidfd = -1;
    inst->base.cb->exited(&inst->base, why, inst->base.data);
    uv_close((uv_handle_t *)&inst->pipe, on_closed);
}

/* Nothing it says after that is believed: the frames already read are dropped. */
static void protocol_error(native *inst, const char *what)
{
    inst->broken = 1;
    log_warn("instance broke the frame protocol: %s instance=%llu pid=%d", what,
             (unsigned long long)inst->base.id, (int)inst->pid);
    uv_read_stop((uv_stream_t *)&inst->pipe);
    native_kill(&inst->base);
}

static void handle_frame(native *inst, const frame *f)
{
    switch (f->type) {
    case FRAME_READY:
        inst->base.cb->ready(&inst->base, inst->base.data);
        break;
    case FRAME_INIT_FAILED:
        free(inst->init_error);
        inst->init_error = strndup(f->body, f->len < 1024 ? f->len : 1024);
        break;
    case FRAME_RESULT: {
        uint32_t duration, len;
        const char *body;
        if (frame_result_decode(f->body, f->len, &duration, &body, &len)) {
            protocol_error(inst, "short result frame");
            break;
        }
        /* A result for no invocation, or a "cancelled" that no CANCEL asked
         * for: a cancelled invocation goes back first in line, to this very
         * instance if it is idle, which would bounce it for ever. */
        if (++inst->answered > inst->sent) {
            protocol_error(inst, "a result for no invocation");
            break;
        }
        if ((f->flags & FRAME_CANCELLED) && inst->answered > inst->cancel_upto) {
            protocol_error(inst, "cancelled an invocation spated did not take back");
            break;
        }
        if (inst->unanswered) inst->unanswered--;
        if (inst->pass) {
            inst->pass--;
        } else if (inst->swallow) {
            /* Taken back for sure (native_withdraw): it cannot have run. */
            if (!(f->flags & FRAME_CANCELLED))
                protocol_error(inst, "ran an invocation it was told not to");
            else
                inst->swallow--;
            break;
        }
        if (f->flags & FRAME_CANCELLED) {
            inst->base.cb->withdrawn(&inst->base, inst->base.data);
            break;
        }
        inst->base.output_unread = (f->flags & FRAME_OUTPUT_PENDING) != 0;
        inst->base.cb->result(&inst->base, f->flags & FRAME_FAILED, duration, body, len,
                              inst->base.data);
        break;
    }
    default:
        protocol_error(inst, "unexpected frame type");
    }
}

static void consume(native *inst, size_t n)
{
    frame_reader_commit(&inst->reader, n);
    frame f;
    int rc = 0;
    while (!inst->finalized && !inst->broken && (rc = frame_reader_next(&inst->reader, &f)) == 1)
        handle_frame(inst, &f);
    if (rc < 0 && !inst->finalized && !inst->broken) protocol_error(inst, err_str(rc));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    native *inst = h->data;
    char *p = NULL;
    size_t len = 0;
    if (frame_reader_space(&inst->reader, suggested, &p, &len) != 0) len = 0;
    *out = uv_buf_init(p, (unsigned)len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    native *inst = s->data;
    if (nread > 0) {
        consume(inst, (size_t)nread);
    } else if (nread < 0) {
        /* End of stream: the process is exiting (or closed its socket, which
         * leaves it useless). The zygote's EXITED report finishes the job. */
        uv_read_stop(s);
        inst->closed = 1;
        if (nread == UV_ENOBUFS)
            protocol_error(inst, "frame too large");
        else
            native_kill(&inst->base);
    }
}

/* Reads whatever the instance wrote before it died, so a result sent just
 * before exiting is not lost. */
static void drain(native *inst)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&inst->pipe, &fd) != 0) return;
    while (!inst->finalized && !inst->broken) {
        char *p;
        size_t len;
        if (frame_reader_space(&inst->reader, 64 * KIB, &p, &len) != 0) return;
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        consume(inst, (size_t)n);
    }
}

static const instance_ops ops;

int native_start(zygote *z, const instance_limits *lim, const instance_callbacks *cb, void *data,
                 instance **out)
{
    native *inst = calloc(1, sizeof *inst);
    if (!inst) return ERR_NOMEM;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        int e = errno;
        free(inst);
        return err_from_errno(e, ERR_IO);
    }
    instance_init(&inst->base, &ops, cb, data);
    int outfd[2];
    int rc = instance_isolate(&inst->base, lim, outfd);
    if (rc != 0) {
        close(sv[0]);
        close(sv[1]);
        free(inst);
        return rc;
    }
    inst->z = z;
    inst->pidfd = -1;
    list_init(&inst->dirty);
    frame_reader_init(&inst->reader, SPATE_FRAME_MAX);
    /* Room for one invocation of the largest size and a full mailbox of small ones. */
    buf_init(&inst->out, (size_t)FRAME_HEADER_SIZE + SPATE_FRAME_MAX +
                             SPATE_PREFETCH_MAX * (SPATE_PREFETCH_PAYLOAD_MAX + 64u * KIB));
    buf_init(&inst->sending, 0);
    uv_pipe_init(zygote_loop(z), &inst->pipe, 0);
    inst->pipe.data = inst;
    inst->handles = 1;
    if (uv_pipe_open(&inst->pipe, sv[0]) != 0) {
        close(sv[0]);
        close(sv[1]);
        output_close_fds(outfd);
        instance_release(&inst->base, NULL, 0);
        uv_close((uv_handle_t *)&inst->pipe, on_closed);
        return ERR_IO;
    }
    char text[ZMSG_TEXT_MAX];
    instance_sandbox_text(&inst->base, text, sizeof text);
    rc = zygote_request_spawn(z, &inst->base, sv[1], outfd, text);
    if (rc != 0) {
        instance_release(&inst->base, NULL, 0);
        uv_close((uv_handle_t *)&inst->pipe, on_closed);
        return rc;
    }
    uv_read_start((uv_stream_t *)&inst->pipe, on_alloc, on_read);
    *out = &inst->base;
    return 0;
}

static void flush(native *inst);

static void on_written(uv_write_t *w, int status)
{
    native *inst = w->data;
    inst->writing = 0;
    buf_reset(&inst->sending);
    if (inst->finalized) return;
    if (status < 0) {
        log_warn("cannot send invocation to instance: %s instance=%llu", uv_strerror(status),
                 (unsigned long long)inst->base.id);
        native_kill(&inst->base);
        return;
    }
    flush(inst);
}

/* Hands queued frames to the socket: at once if it takes them (the usual
 * case: no copy beyond the queue), else through a uv_write of the rest,
 * during which new frames accumulate in out. */
static void flush(native *inst)
{
    if (inst->writing || inst->out.len == 0) return;
    uv_buf_t b = uv_buf_init(inst->out.data, (unsigned)inst->out.len);
    int n = uv_try_write((uv_stream_t *)&inst->pipe, &b, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        native_kill(&inst->base);
        return;
    }
    if ((size_t)n == inst->out.len) {
        buf_reset(&inst->out);
        if (inst->out.cap > 1024 * KIB) buf_free(&inst->out);
        return;
    }
    /* Swap: the unsent rest goes out from sending; out takes new frames. */
    buf tmp = inst->sending;
    inst->sending = inst->out;
    inst->out = tmp;
    inst->out.max = inst->sending.max;
    b = uv_buf_init(inst->sending.data + n, (unsigned)(inst->sending.len - (size_t)n));
    inst->wreq.data = inst;
    inst->writing = 1;
    if (uv_write(&inst->wreq, (uv_stream_t *)&inst->pipe, &b, 1, on_written) != 0) {
        inst->writing = 0;
        native_kill(&inst->base);
    }
}

static void on_check(uv_check_t *h)
{
    while (!list_empty(&dirty_list)) {
        native *inst = list_entry(list_first(&dirty_list), native, dirty);
        list_remove(&inst->dirty);
        flush(inst);
    }
    uv_check_stop(h);
}

static int native_invoke(instance *base, const frame_invoke *inv)
{
    native *inst = (native *)base;
    size_t mark = inst->out.len;
    int rc = frame_invoke_encode(&inst->out, inv);
    if (rc == 0) rc = buf_append(&inst->out, inv->payload, inv->payload_len);
    if (rc != 0) {
        inst->out.len = mark;
        return rc;
    }
    if (!flusher_ready) {
        uv_check_init(inst->pipe.loop, &flusher);
        uv_unref((uv_handle_t *)&flusher); /* never keeps the loop alive */
        list_init(&dirty_list);
        flusher_ready = 1;
    }
    if (inst->dirty.next == &inst->dirty) {
        list_push_back(&dirty_list, &inst->dirty);
        uv_check_start(&flusher, on_check);
    }
    inst->unanswered++;
    inst->sent++;
    return 0;
}

/* Sends a CANCEL for every invocation not started. The instance reads all
 * that spated sent before it answers the one it runs, before it starts the
 * next (frame.h): if the CANCEL is in the socket while that answer is not
 * (nothing of it has arrived), none of the n newest will run. */
static uint32_t native_withdraw(instance *base, uint32_t n)
{
    native *inst = (native *)base;
    if (n == 0 || n + 1 != inst->unanswered || inst->pass || inst->swallow || !native_usable(base))
        return 0;
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_header_encode(hdr, 0, FRAME_CANCEL, 0);
    if (buf_append(&inst->out, hdr, sizeof hdr) != 0) return 0;
    inst->cancel_upto = inst->sent;
    flush(inst);
    if (inst->out.len || inst->writing) return 0; /* unsure: CANCELLED answers will tell */
    /* The instance looks at this before each invocation (frame.h). */
    uint32_t *counter = inst->z ? zygote_cancel_counter(inst->z, base) : NULL;
    if (counter) __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
    uv_os_fd_t fd;
    int unread = 0;
    if (uv_fileno((uv_handle_t *)&inst->pipe, &fd) != 0 || ioctl(fd, FIONREAD, &unread) != 0 ||
        unread > 0 || inst->reader.in.len > inst->reader.consumed)
        return 0;
    inst->pass = 1;
    inst->swallow = n;
    return n;
}

static int native_usable(const instance *base)
{
    const native *inst = (const native *)base;
    return !(inst->exited || inst->killed || inst->kill_pending || inst->closed || inst->finalized);
}

static void native_kill(instance *base)
{
    native *inst = (native *)base;
    if (inst->finalized) return;
    inst->killed = 1;
    if (inst->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, inst->pidfd, SIGKILL, NULL, 0);
    } else if (!inst->kill_pending) {
        inst->kill_pending = 1;
        /* Killed as soon as the zygote says it forked it, which must be soon. */
        if (inst->z) zygote_await_spawned(inst->z, &inst->base);
    }
}

/* Its pidfd turns readable once the process has exited. */
static int native_alive(const instance *base)
{
    const native *inst = (const native *)base;
    if (!native_usable(base)) return 0;
    if (inst->pidfd < 0) return 1;
    struct pollfd pfd = {.fd = inst->pidfd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 0;
}

static pid_t native_pid(const instance *base)
{
    const native *inst = (const native *)base;
    return inst->pid;
}

static const instance_ops ops = {
    .invoke = native_invoke,
    .kill = native_kill,
    .usable = native_usable,
    .withdraw = native_withdraw,
    .pid = native_pid,
    .alive = native_alive,
};

/* The process has exited (it may not be reaped yet): spated learns that
 * from its pidfd, not only from what the zygote reports. */
static void on_process_gone(uv_poll_t *h, int status, int events)
{
    native *inst = h->data;
    uv_poll_stop(h);
    if (!inst->finalized && !inst->exited && inst->z) zygote_await_exited(inst->z, &inst->base);
}

void native_on_spawned(instance *base, pid_t pid, int pidfd)
{
    native *inst = (native *)base;
    inst->spawned = 1;
    inst->pid = pid;
    inst->pidfd = pidfd;
    if (uv_poll_init(inst->pipe.loop, &inst->exitpoll, pidfd) == 0) {
        inst->exitpoll.data = inst;
        inst->polling = 1;
        inst->handles++;
        uv_poll_start(&inst->exitpoll, UV_READABLE, on_process_gone);
    }
    if (inst->kill_pending) native_kill(&inst->base);
}

void native_on_unreported_exit(instance *base)
{
    native *inst = (native *)base;
    inst->exited = 1;
    drain(inst);
    char why[1100];
    if (inst->init_error)
        snprintf(why, sizeof why, "instance failed to start: %s", inst->init_error);
    else
        snprintf(why, sizeof why, "exited; its zygote did not report how");
    finalize(inst, why);
}

void native_on_spawn_failed(instance *base, int err)
{
    native *inst = (native *)base;
    char why[128];
    snprintf(why, sizeof why, "cannot fork an instance: %s", strerror(err));
    inst->base.limit_err = err_from_errno(err, 0);
    finalize(inst, why);
}

void native_on_exited(instance *base, int status)
{
    native *inst = (native *)base;
    inst->exited = 1;
    inst->status = status;
    drain(inst);
    char why[1100];
    if (inst->init_error)
        snprintf(why, sizeof why, "instance failed to start: %s", inst->init_error);
    else if (WIFSIGNALED(status))
        snprintf(why, sizeof why, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(status));
    finalize(inst, why);
}

void native_on_zygote_lost(instance *base)
{
    native *inst = (native *)base;
    inst->z = NULL;
    drain(inst);
    finalize(inst, "lost: its zygote exited");
}
