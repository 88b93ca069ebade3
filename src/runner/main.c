/*
 * spate-runner - the zygote of one native function version, and the instances
 * forked from it.
 *
 *     spate-runner --control-fd FD --function NAME --version N [SANDBOX] OBJECT.so
 *     spate-runner --exec [SANDBOX] [--status-fd FD] [--tmpdir DIR] [--task DIR] BOOTSTRAP
 *
 * The zygote reads the shared object while it still may (spated starts it as
 * root), enters the sandbox (runner/sandbox.h: no new privileges, the
 * unprivileged user, seccomp, optionally no network), loads the object from
 * memory, runs spate_preload, reports LOADED on the control socket (see
 * runtime/zproto.h) and then forks an instance for every SPAWN it receives.
 * Each instance joins its cgroups, runs spate_init, says READY on its own
 * socket and serves INVOKE frames one at a time (runtime/frame.h).
 *
 * With --exec the runner is the sandboxing wrapper of an exec instance: it
 * enters the same sandbox and the instance's cgroups, then runs BOOTSTRAP; if
 * it cannot, it writes why to the status FD (closed by a successful exec) and
 * exits with SPATE_SANDBOX_FAILED_STATUS.
 *
 * SANDBOX is [--uid N --gid N] [--no-network] [--memory-mb N] [--cgroups DIRS]
 * [--env-fd FD] [--tmp-mb N [--writable PATH]...]. The zygote joins DIRS (its
 * version's cgroups) while still root; the exec wrapper joins them (its
 * instance's) after the drop. The runner starts with a clean environment (spated gives it nothing
 * of the function's: it is root); the function's variables come in FD,
 * "K=V\0...", and become the environment only once it runs as the function's
 * user.
 *
 * --tmp-mb asks for mount namespaces (runner/sandbox.h): spated passes it only
 * where they work. The host's filesystem is then read-only for the zygote
 * and the instances but for each --writable PATH (spated's --writable), /proc
 * and /sys/fs/cgroup. The zygote holds a copy of the object at
 * /var/task/function.so (or, given --task DIR, DIR there: the code of a
 * managed runtime whose zygote the object is) and each instance makes its own /tmp and /dev/shm;
 * an exec runner binds --task DIR at /var/task, makes /tmp and /dev/shm and
 * runs BOOTSTRAP (then /var/task/bootstrap) in /var/task.
 *
 * The zygote links nothing but libc and keeps its heap small, because every
 * page it holds makes each fork slower.
 */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spate.h"
#include "common/buf.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/parse.h"
#include "runner/sandbox.h"
#include "runtime/frame.h"
#include "runtime/zproto.h"

typedef int (*handler_fn)(const spate_request *, spate_response *);
typedef int (*hook_fn)(void);

struct spate_response {
    buf out;
    int failed;
    size_t message_len;
    char message[SPATE_ERROR_MESSAGE_MAX];
};

static handler_fn handler;
static hook_fn init_hook;

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPATE_ASAN_BUILD 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(SPATE_ASAN_BUILD)
/* LeakSanitizer stops the world with ptrace, which the sandbox denies: in
 * the sanitizer build it would turn every exit into "exit status 1". */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return 1;
}
#endif

/* --- The ABI calls native code makes back into the runner ----------------- */

int spate_write(spate_response *res, const void *data, size_t len)
{
    if (!res || (!data && len)) return -1;
    return buf_append(&res->out, data, len) ? -1 : 0;
}

int spate_fail(spate_response *res, const char *message)
{
    if (!res) return -1;
    res->failed = 1;
    if (!message) message = "function failed";
    size_t n = strnlen(message, sizeof res->message);
    memcpy(res->message, message, n);
    res->message_len = n;
    return 0;
}

/* --- Instance --------------------------------------------------------------- */

static int write_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t n = writev(fd, iov, cnt);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static int send_frame(int fd, uint8_t type, uint8_t flags, const void *body, size_t len)
{
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_header_encode(hdr, (uint32_t)len, type, flags);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)body, len}};
    return write_all(fd, iov, len ? 2 : 1);
}

/* Reads at least want bytes in total into in (more if they are there);
 * 0, or -1 at end of stream or on error. *emptied: the last read took all
 * there was (it returned less than it had room for). */
static int fill(int fd, buf *in, size_t want, int *emptied)
{
    *emptied = 0;
    while (in->len < want) {
        /* Room for many small frames at once: spated may have queued several. */
        size_t room = want - in->len < 64 * KIB ? 64 * KIB : want - in->len;
        if (room > in->max - in->len) room = in->max - in->len;
        if (buf_reserve(in, room) != 0) return -1;
        ssize_t n = read(fd, in->data + in->len, in->cap - in->len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        in->len += (size_t)n;
        *emptied = (size_t)n < in->cap - (in->len - (size_t)n);
    }
    return 0;
}

/* The CANCEL counters spated shares (--cancel-fd; NULL: none), and this
 * instance's: while it stays the same, spated has sent no CANCEL and the
 * socket need not be read before the next invocation (limits.h). */
static const uint32_t *cancel_counters;
static const uint32_t *my_cancel;

/* Reads, without waiting, what spated has sent since: a CANCEL sent before
 * this instance's last answer is in it (frame.h). End of stream is left for
 * the next fill to find. */
static void read_more(int fd, buf *in)
{
    for (;;) {
        size_t room = in->max - in->len < 64 * KIB ? in->max - in->len : 64 * KIB;
        if (room == 0 || buf_reserve(in, room) != 0) return;
        ssize_t n = recv(fd, in->data + in->len, room, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        in->len += (size_t)n;
    }
}

/* Marks an INVOKE that a CANCEL covers (a header flag spated never sets). */
#define CANCELLED_HERE 0x80

/* Applies the CANCELs among the whole frames of in from scanned on: each
 * covers the INVOKEs before it from off (the next to run) on, none of which
 * has started. Returns where the next look starts. */
static size_t apply_cancels(buf *in, size_t off, size_t scanned)
{
    if (scanned < off) scanned = off;
    while (in->len - scanned >= FRAME_HEADER_SIZE) {
        frame f;
        if (frame_header_decode((const uint8_t *)in->data + scanned, SPATE_FRAME_MAX, &f)) _exit(2);
        size_t whole = FRAME_HEADER_SIZE + f.len;
        if (in->len - scanned < whole) break;
        if (f.type == FRAME_CANCEL) {
            for (size_t at = off; at < scanned;) {
                frame g;
                frame_header_decode((const uint8_t *)in->data + at, SPATE_FRAME_MAX, &g);
                if (g.type == FRAME_INVOKE) in->data[at + 5] |= (char)CANCELLED_HERE;
                at += FRAME_HEADER_SIZE + g.len;
            }
        }
        scanned += whole;
    }
    return scanned;
}

/* The result being written. Each leaves before the next invocation starts:
 * if that one crashed the instance, a held-back result would be lost, and a
 * finished invocation reported as the one that crashed. */
static buf outq;
#define FLUSH_BYTES (64 * KIB)

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void flush(int fd)
{
    if (outq.len == 0) return;
    struct iovec iov = {outq.data, outq.len};
    if (write_all(fd, &iov, 1)) _exit(0);
    buf_reset(&outq);
    if (outq.cap > 256 * KIB) buf_free(&outq);
}

/* Whether stdout is spated's output pipe (so FIONREAD on it means something). */
static int has_output_pipe;

static void put_result(int fd, uint8_t flags, uint32_t duration_us, const void *body, size_t len)
{
    uint8_t hdr[FRAME_HEADER_SIZE + FRAME_RESULT_FIXED];
    frame_header_encode(hdr, (uint32_t)(FRAME_RESULT_FIXED + len), FRAME_RESULT, flags);
    frame_result_encode_fixed(hdr + FRAME_HEADER_SIZE, duration_us);
    if (len > 16 * KIB) {
        /* Large output: no copy; it goes straight from the handler's buffer. */
        flush(fd);
        struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)body, len}};
        if (write_all(fd, iov, 2)) _exit(0);
        return;
    }
    if (buf_append(&outq, hdr, sizeof hdr) || buf_append(&outq, body, len)) _exit(3);
    flush(fd);
}

static void invoke(int fd, const frame_invoke *inv, spate_response *res)
{
    spate_request req = {
        .request_id = inv->request_id,
        .function = inv->function,
        .payload = inv->payload,
        .payload_len = inv->payload_len,
        .deadline_ms = inv->deadline_ms,
        .attempt = inv->attempt,
        .topic = inv->topic,
        .key = inv->key,
        .source = inv->source,
        .upstream_id = inv->upstream_id,
        .upstream_ts_ms = inv->upstream_ts_ms,
        .headers_json = inv->headers,
        .headers_len = inv->headers_len,
        .redelivered = inv->redelivered ? 1 : 0,
        .abi_version = SPATE_ABI_VERSION,
    };
    buf_reset(&res->out);
    res->failed = 0;
    res->message_len = 0;

    uint64_t start = mono_ns();
    int rc = handler(&req, res);
    uint64_t took = (mono_ns() - start) / 1000;
    uint32_t duration_us = took > UINT32_MAX ? UINT32_MAX : (uint32_t)took;
    /* Its output reaches the pipe before its result reaches spated, which
     * tags the lines with this request (runtime/output.c). */
    if (__fpending(stdout)) fflush(stdout);
    uint8_t flags = 0;
    int unread = 0;
    if (has_output_pipe && ((ioctl(STDOUT_FILENO, FIONREAD, &unread) == 0 && unread > 0) ||
                            (ioctl(STDERR_FILENO, FIONREAD, &unread) == 0 && unread > 0)))
        flags |= FRAME_OUTPUT_PENDING;
    if (rc != 0 && !res->failed)
        res->message_len =
            (size_t)snprintf(res->message, sizeof res->message, "spate_handler returned %d", rc);
    if (rc != 0 || res->failed) {
        if (res->message_len == 0) {
            memcpy(res->message, "function failed", 15);
            res->message_len = 15;
        }
        put_result(fd, flags | FRAME_FAILED, duration_us, res->message, res->message_len);
    } else {
        put_result(fd, flags, duration_us, res->out.data, res->out.len);
    }
    /* A large output leaves a large heap behind; give it back while idle. */
    if (res->out.cap > 256 * KIB) buf_free(&res->out);
}

/* Serves invocations on fd until spated closes it. Never returns. */
static void __attribute__((noreturn)) run_instance(int fd)
{
    if (init_hook) {
        int rc = init_hook();
        if (rc != 0) {
            char msg[64];
            int n = snprintf(msg, sizeof msg, "spate_init returned %d", rc);
            send_frame(fd, FRAME_INIT_FAILED, 0, msg, (size_t)n);
            _exit(1);
        }
    }
    if (send_frame(fd, FRAME_READY, 0, NULL, 0)) _exit(0);

    static spate_response res;
    buf_init(&res.out, SPATE_RESPONSE_MAX);
    buf_init(&outq, FLUSH_BYTES + FRAME_HEADER_SIZE + FRAME_RESULT_FIXED + 16 * KIB);
    buf in;
    buf_init(&in, FRAME_HEADER_SIZE + SPATE_FRAME_MAX);
    size_t want = FRAME_HEADER_SIZE;
    uint32_t cancels = my_cancel ? __atomic_load_n(my_cancel, __ATOMIC_ACQUIRE) : 0;
    for (;;) {
        int emptied;
        if (fill(fd, &in, want, &emptied)) _exit(0);
        /* Run every whole frame that is here, one at a time, in order: several
         * arrive in one read when spated queued them. Before each but a first
         * that a read emptying the socket brought, whatever spated sent
         * meanwhile is read, and its CANCELs applied: a CANCEL spated can be
         * sure of covers only invocations after the oldest it has no answer
         * to, and that answer went out before this read. */
        size_t off = 0, scanned = 0;
        want = FRAME_HEADER_SIZE;
        for (int first = 1; in.len - off >= FRAME_HEADER_SIZE; first = 0) {
            if (my_cancel) {
                /* spated bumps it after the CANCEL is in the socket. */
                uint32_t now = __atomic_load_n(my_cancel, __ATOMIC_ACQUIRE);
                if (now != cancels) read_more(fd, &in);
                cancels = now;
            } else if (!first || !emptied) {
                read_more(fd, &in);
            }
            scanned = apply_cancels(&in, off, scanned);
            frame f;
            if (frame_header_decode((const uint8_t *)in.data + off, SPATE_FRAME_MAX, &f)) _exit(2);
            size_t whole = FRAME_HEADER_SIZE + f.len;
            if (in.len - off < whole) {
                want = whole;
                break;
            }
            if (f.type == FRAME_INVOKE && (f.flags & CANCELLED_HERE)) {
                put_result(fd, FRAME_CANCELLED, 0, NULL, 0);
            } else if (f.type == FRAME_INVOKE) {
                frame_invoke inv;
                if (frame_invoke_decode(in.data + off + FRAME_HEADER_SIZE, f.len, &inv)) _exit(2);
                invoke(fd, &inv, &res);
            } else if (f.type != FRAME_CANCEL) {
                _exit(2);
            }
            off += whole;
        }
        memmove(in.data, in.data + off, in.len - off);
        in.len -= off;
        if (in.cap > 256 * KIB && in.len == 0) buf_free(&in);
    }
}

/* --- Zygote ------------------------------------------------------------------ */

static int control_fd = -1;
static int sigchld_fd = -1;
static uint32_t memory_mb;
static uint32_t tmp_mb; /* 0: no mount namespaces */
/* --writable paths, NULL-terminated: the only host paths left writable. */
static const char *writable[SPATE_WRITABLE_MAX + 1];

static void send_load_failed(const char *fmt, const char *a, const char *b)
{
    zmsg m = {.type = ZMSG_LOAD_FAILED};
    snprintf(m.text, sizeof m.text, fmt, a, b);
    zmsg_send(control_fd, &m, NULL);
    exit(1);
}

/* The instance's part of the sandbox; text is "CGROUPS\tTMPDIR" from SPAWN. */
static void enter_instance(int fd, char *text)
{
    char *tab = strchr(text, '\t');
    if (tab) *tab = '\0';
    sandbox_instance si = {.cgroups = text, .tmpdir = tab ? tab + 1 : "", .memory_mb = memory_mb};
    char why[256];
    /* Cgroups first: the pages of its /tmp are charged to whoever writes them. */
    if (sandbox_enter_instance(&si, fd, why, sizeof why) != 0 ||
        (tmp_mb && sandbox_enter_instance_ns(tmp_mb, why, sizeof why) != 0)) {
        send_frame(fd, FRAME_INIT_FAILED, 0, why, strlen(why));
        _exit(1);
    }
}

/* fd: the instance's socket; out: its stdout and stderr pipes, or -1. */
static void spawn(uint64_t id, int fd, const int out[2], char *text)
{
    pid_t zygote = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        /* An instance must not outlive its zygote (and so spated). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != zygote) _exit(0);
        if (out[0] >= 0) {
            dup2(out[0], STDOUT_FILENO);
            dup2(out[1] >= 0 ? out[1] : out[0], STDERR_FILENO);
            has_output_pipe = 1;
        }
        enter_instance(fd, text); /* closes the zygote's descriptors */
        if (cancel_counters) my_cancel = &cancel_counters[id % SPATE_CANCEL_COUNTERS];
        setvbuf(stdout, NULL, _IOLBF, 0);
        run_instance(fd);
    }
    close(fd);
    for (int i = 0; i < 2; i++)
        if (out[i] >= 0) close(out[i]);
    zmsg m = {.id = id};
    if (pid < 0) {
        m.type = ZMSG_SPAWN_FAILED;
        m.err = errno;
        zmsg_send(control_fd, &m, NULL);
        return;
    }
    /* The child cannot be reaped before we wait for it, so this pidfd is
     * certain to name it. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    m.type = ZMSG_SPAWNED;
    m.pid = pid;
    int fds[ZMSG_FDS_MAX] = {pidfd, -1, -1};
    zmsg_send(control_fd, &m, fds);
    if (pidfd >= 0) close(pidfd);
}

static void reap(void)
{
    struct signalfd_siginfo si;
    while (read(sigchld_fd, &si, sizeof si) == sizeof si) {
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        zmsg m = {.type = ZMSG_EXITED, .pid = pid, .status = status};
        zmsg_send(control_fd, &m, NULL);
    }
}

/* The loader maps segments without checking that the file holds them, so a
 * truncated object kills the process with SIGBUS instead of failing dlopen.
 * Check the program headers first, to say what is wrong. Returns NULL when
 * the file looks whole (or is not ELF at all: dlopen says so better). */
static const char *truncated_elf(int fd, char *why, size_t cap)
{
    struct stat st;
    Elf64_Ehdr eh;
    const char *bad = NULL;
    if (fstat(fd, &st) != 0 || pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
        return NULL;
    uint64_t size = (uint64_t)st.st_size, need = 0;
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256) {
        bad = "has malformed program headers";
    } else {
        need = eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr);
        for (int i = 0; need <= size && i < eh.e_phnum; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) !=
                (ssize_t)sizeof ph)
                break;
            if (ph.p_offset + ph.p_filesz > need) need = ph.p_offset + ph.p_filesz;
        }
        uint64_t sh = eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize;
        if (sh > need) need = sh;
        if (need > size) bad = "is truncated";
    }
    if (!bad) return NULL;
    snprintf(why, cap, "cannot load shared object: the file %s (%llu bytes; its headers need %llu)",
             bad, (unsigned long long)size, (unsigned long long)need);
    return why;
}

static void __attribute__((noreturn)) serve(void)
{
    struct pollfd pfd[2] = {{control_fd, POLLIN, 0}, {sigchld_fd, POLLIN, 0}};
    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) continue;
            exit(1);
        }
        if (pfd[1].revents) reap();
        if (pfd[0].revents) {
            zmsg m;
            int fds[ZMSG_FDS_MAX];
            int rc = zmsg_recv(control_fd, &m, fds);
            if (rc == -EAGAIN || rc == -EPROTO) continue;
            if (rc <= 0) exit(0); /* spated is gone: our instances follow (PDEATHSIG) */
            if (m.type == ZMSG_SPAWN && fds[0] >= 0) {
                spawn(m.id, fds[0], fds + 1, m.text);
            } else {
                for (int i = 0; i < ZMSG_FDS_MAX; i++)
                    if (fds[i] >= 0) close(fds[i]);
            }
        }
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: spate-runner --control-fd FD --function NAME --version N [SANDBOX] OBJECT\n"
            "       spate-runner --exec [SANDBOX] [--status-fd FD] [--tmpdir DIR] [--task DIR] "
            "BOOTSTRAP\n"
            "SANDBOX: [--uid N --gid N] [--no-network] [--memory-mb N] [--cgroups DIRS]\n"
            "         [--env-fd FD] [--tmp-mb N [--writable PATH]...]\n"
            "spate-runner is started by spated; it is not meant to be run by hand\n");
    exit(2);
}

static uint32_t arg_u32(const char *s, uint64_t max)
{
    uint64_t v;
    if (parse_u64(s, strlen(s), 0, max, &v)) usage();
    return (uint32_t)v;
}

/* Copies the object into memory while we may still read it: once the
 * sandbox is entered the artifact store is out of reach. Returns the memfd. */
static int read_object(const char *object)
{
    int fd = open(object, O_RDONLY | O_CLOEXEC);
    if (fd < 0) send_load_failed("cannot read the shared object: %s%s", strerror(errno), "");
    char why[256];
    if (truncated_elf(fd, why, sizeof why)) send_load_failed("%s%s", why, "");
    int mem = memfd_create("function.so", MFD_CLOEXEC);
    struct stat st;
    if (mem < 0 || fstat(fd, &st) != 0)
        send_load_failed("cannot copy the shared object: %s%s", strerror(errno), "");
    off_t off = 0;
    while (off < st.st_size) {
        ssize_t n = sendfile(mem, fd, &off, (size_t)(st.st_size - off));
        if (n <= 0) send_load_failed("cannot copy the shared object: %s%s", strerror(errno), "");
    }
    close(fd);
    return mem;
}

/* The function's environment from --env-fd (runtime/isolate.h: a memfd of
 * "K=V\0K=V\0..."), in place of the whole environment. Called only after
 * the privilege drop, so that nothing in it (LD_PRELOAD and its like) acts
 * while the process is root. Closes fd. 0, or -1 with why filled. */
static int apply_env(int fd, char *why, size_t cap)
{
    if (fd < 0) return 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > SPATE_RUNNER_ENV_MAX) {
        snprintf(why, cap, "cannot read the environment (--env-fd %d): unreadable or over %u bytes",
                 fd, SPATE_RUNNER_ENV_MAX);
        return -1;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *text = malloc(size + 1); /* for good: environ points into it */
    while (text && got < size) {
        ssize_t n = pread(fd, text + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (!text || got != size) {
        snprintf(why, cap, "cannot read the environment (--env-fd %d): %s", fd,
                 text ? "short read" : "out of memory");
        free(text);
        return -1;
    }
    text[size] = '\0';
    clearenv();
    for (char *p = text; p < text + size; p += strlen(p) + 1)
        if (p[0] != '=' && strchr(p, '=')) putenv(p);
    return 0;
}

/* The exec wrapper could not start the bootstrap: why goes to the function's
 * log (stderr) and to spated (status_fd, which a successful execv closes), so
 * that the caller's error names the cause. */
static void __attribute__((noreturn)) exec_failed(int status_fd, const char *why)
{
    fprintf(stderr, "spate-runner: %s\n", why);
    if (status_fd >= 0) {
        ssize_t n = write(status_fd, why, strlen(why));
        (void)n;
    }
    _exit(SPATE_SANDBOX_FAILED_STATUS);
}

/* The exec wrapper: its mounts while it is root, sandbox, environment, cgroups
 * (before the bootstrap writes to /tmp: tmpfs pages are charged to the
 * writer's cgroup), then the bootstrap in its place. */
static int __attribute__((noreturn))
run_exec(const sandbox_version *v, const sandbox_instance *si, const char *task, int env_fd,
         int status_fd, char *const *argv)
{
    char why[512];
    if (status_fd >= 0) fcntl(status_fd, F_SETFD, FD_CLOEXEC);
    if ((task && (sandbox_mount_task(task, writable, why, sizeof why) != 0 ||
                  sandbox_mount_tmp(tmp_mb, why, sizeof why) != 0)) ||
        sandbox_enter_version(v, why, sizeof why) != 0 || apply_env(env_fd, why, sizeof why) != 0 ||
        (task && setenv("TMPDIR", "/tmp", 1) != 0) ||
        sandbox_enter_instance(si, status_fd, why, sizeof why) != 0)
        exec_failed(status_fd, why);
    if (task && chdir(SANDBOX_TASK_ROOT) != 0) {
        snprintf(why, sizeof why, "cannot enter %s: %s", SANDBOX_TASK_ROOT, strerror(errno));
        exec_failed(status_fd, why);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the credential change cleared it */
    execv(argv[0], argv);
    snprintf(why, sizeof why, "cannot run %s: %s", argv[0], strerror(errno));
    exec_failed(status_fd, why);
}

int main(int argc, char **argv)
{
    const char *function = "?", *version = "?", *object = NULL, *task = NULL;
    sandbox_version sv = {.seccomp = 1};
    sandbox_instance si = {.cgroups = "", .tmpdir = ""};
    int exec_mode = 0, env_fd = -1, status_fd = -1, cancel_fd = -1, nwritable = 0, i;
    for (i = 1; i < argc && !object; i++) {
        if (strcmp(argv[i], "--version") == 0 && i + 1 < argc)
            version = argv[++i];
        else if (strcmp(argv[i], "--function") == 0 && i + 1 < argc)
            function = argv[++i];
        else if (strcmp(argv[i], "--control-fd") == 0 && i + 1 < argc)
            control_fd = (int)arg_u32(argv[++i], 1 << 20);
        else if (strcmp(argv[i], "--uid") == 0 && i + 1 < argc) {
            sv.uid = arg_u32(argv[++i], UINT32_MAX - 1);
            sv.drop = 1;
        } else if (strcmp(argv[i], "--gid") == 0 && i + 1 < argc)
            sv.gid = arg_u32(argv[++i], UINT32_MAX - 1);
        else if (strcmp(argv[i], "--no-network") == 0)
            sv.no_network = 1;
        else if (strcmp(argv[i], "--memory-mb") == 0 && i + 1 < argc)
            memory_mb = si.memory_mb = arg_u32(argv[++i], 1 << 20);
        else if (strcmp(argv[i], "--exec") == 0)
            exec_mode = 1;
        else if (strcmp(argv[i], "--cgroups") == 0 && i + 1 < argc)
            si.cgroups = argv[++i];
        else if (strcmp(argv[i], "--env-fd") == 0 && i + 1 < argc)
            env_fd = (int)arg_u32(argv[++i], 1 << 20);
        else if (strcmp(argv[i], "--status-fd") == 0 && i + 1 < argc)
            status_fd = (int)arg_u32(argv[++i], 1 << 20);
        else if (strcmp(argv[i], "--cancel-fd") == 0 && i + 1 < argc)
            cancel_fd = (int)arg_u32(argv[++i], 1 << 20);
        else if (strcmp(argv[i], "--tmpdir") == 0 && i + 1 < argc)
            si.tmpdir = argv[++i];
        else if (strcmp(argv[i], "--tmp-mb") == 0 && i + 1 < argc)
            tmp_mb = arg_u32(argv[++i], 1 << 20);
        else if (strcmp(argv[i], "--task") == 0 && i + 1 < argc)
            task = argv[++i];
        else if (strcmp(argv[i], "--writable") == 0 && i + 1 < argc &&
                 nwritable < SPATE_WRITABLE_MAX && argv[i + 1][0] == '/')
            writable[nwritable++] = argv[++i];
        else if (argv[i][0] != '-')
            object = argv[i];
        else
            usage();
    }
    if (!object || (task && !tmp_mb) || (nwritable && !tmp_mb)) usage();
    if (exec_mode) run_exec(&sv, &si, task, env_fd, status_fd, argv + i - 1);
    if (control_fd < 0 || env_fd == control_fd) usage();
    if (cancel_fd >= 0) { /* the fd goes with the others below; the mapping stays */
        void *p = mmap(NULL, SPATE_CANCEL_COUNTERS * sizeof(uint32_t), PROT_READ, MAP_SHARED,
                       cancel_fd, 0);
        cancel_counters = p == MAP_FAILED ? NULL : p;
    }
    sv.cgroups = si.cgroups; /* the zygote's are its version's */

    static char tag[128];
    snprintf(tag, sizeof tag, "runner fn=%s version=%s", function, version);
    log_set_tag(tag);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) return 0;
    /* Nothing of spated's but stdio, the control socket and the environment. */
    int keep[2] = {control_fd < env_fd ? control_fd : env_fd,
                   control_fd < env_fd ? env_fd : control_fd};
    unsigned from = 3;
    for (int k = 0; k < 2; k++) {
        if (keep[k] < 0) continue;
        if ((unsigned)keep[k] > from) syscall(SYS_close_range, from, (unsigned)keep[k] - 1, 0);
        from = (unsigned)keep[k] + 1;
    }
    syscall(SYS_close_range, from, ~0u, 0);

    int mem = read_object(object);
    char why[512];
    if (tmp_mb) {
        /* While root: the instances' /var/task, then a filter that lets them
         * build their /tmp, and the full one they load after that. */
        /* A managed runtime's zygote (--task: the user's code) sees that code
         * at /var/task, as its bootstrap would; the object is read from mem. */
        if ((task ? sandbox_mount_task(task, writable, why, sizeof why)
                  : sandbox_mount_task_object(mem, writable, why, sizeof why)) != 0)
            send_load_failed("%s%s", why, "");
        sv.zygote_ns = 1;
    }
    if (sandbox_enter_version(&sv, why, sizeof why) != 0 || apply_env(env_fd, why, sizeof why) != 0)
        send_load_failed("%s%s", why, "");
    /* After apply_env, which replaced the whole environment. */
    if (tmp_mb) setenv("LAMBDA_TASK_ROOT", SANDBOX_TASK_ROOT, 1);
    if (tmp_mb && sv.seccomp && sandbox_prepare_instance_filter(sv.no_network, why, sizeof why))
        send_load_failed("%s%s", why, "");
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the credential change cleared it */
    if (getppid() == 1) return 0;

    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", mem);
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        /* The path is only where the copy sits: of no use to the user. */
        const char *msg = dlerror();
        size_t n = strlen(path);
        if (strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0) msg += n + 2;
        send_load_failed("cannot load shared object: %s%s", msg, "");
    }
    close(mem);
    handler = (handler_fn)(uintptr_t)dlsym(so, "spate_handler");
    if (!handler) send_load_failed("the shared object does not export spate_handler%s%s", "", "");
    hook_fn preload = (hook_fn)(uintptr_t)dlsym(so, "spate_preload");
    init_hook = (hook_fn)(uintptr_t)dlsym(so, "spate_init");
    if (preload) {
        int rc = preload();
        if (rc != 0) {
            /* spate's own runtimes say why (runtimes/python3/zygote.c). */
            const char *(*said)(void) =
                (const char *(*)(void))(uintptr_t)dlsym(so, "spate_preload_error");
            if (said && said()[0]) send_load_failed("%s%s", said(), "");
            char num[24];
            snprintf(num, sizeof num, "%d", rc);
            send_load_failed("spate_preload returned %s%s", num, "");
        }
    }

    /* Writes to a closed peer should fail with EPIPE, not kill the function. */
    signal(SIGPIPE, SIG_IGN);

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    sigchld_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigchld_fd < 0) send_load_failed("signalfd: %s%s", strerror(errno), "");

    zmsg m = {.type = ZMSG_LOADED};
    if (zmsg_send(control_fd, &m, NULL)) return 1;
    serve();
}
