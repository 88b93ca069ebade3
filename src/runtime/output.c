#include "runtime/output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/limits.h"

/* One stream: its pipe and the start of a line not yet ended. */
typedef struct stream {
    uv_pipe_t pipe;
    char *partial; /* SPATE_LOG_LINE_MAX bytes, allocated when first needed */
    size_t plen;
} stream;

struct output {
    stream s[2];       /* stdout, stderr */
    uv_timer_t resume; /* reading waits for the rate budget */
    fnlog *log;
    uint64_t instance;
    uint32_t version;
    char req[FNLOG_REQ_MAX + 1]; /* the request the process is running, "" between */
    int closing, open_handles;
};

/* One loop thread: reads share one buffer. */
static char readbuf[64 * 1024];

static void on_handle_closed(uv_handle_t *h)
{
    output *o = h->data;
    if (--o->open_handles > 0) return;
    fnlog_unref(o->log);
    free(o->s[0].partial);
    free(o->s[1].partial);
    free(o);
}

static int index_of(const output *o, const uv_stream_t *s)
{
    return (const uv_pipe_t *)s == &o->s[0].pipe ? 0 : 1;
}

static void emit(output *o, int i, const char *text, size_t len)
{
    fnlog_tag tag = {.instance = o->instance,
                     .version = o->version,
                     .stream = i == 0 ? FNLOG_STDOUT : FNLOG_STDERR,
                     .req = o->req};
    fnlog_append(o->log, &tag, text, len);
}

/* What is left of an unended line, as a line of its own. */
static void emit_partial(output *o, int i)
{
    if (o->s[i].plen) emit(o, i, o->s[i].partial, o->s[i].plen);
    o->s[i].plen = 0;
}

/* Splits data into lines; a line longer than the maximum is cut there. */
static void consume(output *o, int i, const char *data, size_t len)
{
    stream *st = &o->s[i];
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (st->plen + take >= SPATE_LOG_LINE_MAX) take = SPATE_LOG_LINE_MAX - st->plen;
        int ended = nl && data + take == nl;
        if (ended && st->plen == 0) {
            emit(o, i, data, take); /* the usual case: a whole line, no copy */
        } else {
            if (!st->partial && !(st->partial = malloc(SPATE_LOG_LINE_MAX))) return;
            memcpy(st->partial + st->plen, data, take);
            st->plen += take;
            if (ended || st->plen == SPATE_LOG_LINE_MAX) emit_partial(o, i);
        }
        data += take + (size_t)ended;
        len -= take + (size_t)ended;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    *b = uv_buf_init(readbuf, sizeof readbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void read_start(output *o)
{
    for (int i = 0; i < 2; i++)
        if (!uv_is_closing((uv_handle_t *)&o->s[i].pipe) &&
            uv_is_readable((uv_stream_t *)&o->s[i].pipe))
            uv_read_start((uv_stream_t *)&o->s[i].pipe, on_alloc, on_read);
}

static void on_resume(uv_timer_t *t)
{
    output *o = t->data;
    if (!o->closing) read_start(o);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    output *o = s->data;
    int i = index_of(o, s);
    if (n < 0) {
        uv_read_stop(s);
        emit_partial(o, i);
        fnlog_flush(o->log);
        return;
    }
    consume(o, i, b->base, (size_t)n);
    fnlog_flush(o->log);
    uint64_t wait = fnlog_spend(o->log, (size_t)n, uv_now(s->loop));
    if (wait) {
        /* Over the rate: let the pipes fill, so the writer waits. */
        uv_read_stop((uv_stream_t *)&o->s[0].pipe);
        uv_read_stop((uv_stream_t *)&o->s[1].pipe);
        uv_timer_start(&o->resume, on_resume, wait, 0);
    }
}

int output_open(uv_loop_t *loop, fnlog *log, uint64_t instance, uint32_t version, int write_fds[2],
                output **out)
{
    output *o = calloc(1, sizeof *o);
    if (!o) return ERR_NOMEM;
    int fds[2][2];
    if (pipe2(fds[0], O_CLOEXEC) != 0) {
        int e = errno;
        free(o);
        return err_from_errno(e, ERR_IO);
    }
    if (pipe2(fds[1], O_CLOEXEC) != 0) {
        int e = errno;
        close(fds[0][0]);
        close(fds[0][1]);
        free(o);
        return err_from_errno(e, ERR_IO);
    }
    o->log = log;
    fnlog_ref(log);
    o->instance = instance;
    o->version = version;
    uv_timer_init(loop, &o->resume);
    o->resume.data = o;
    o->open_handles = 3;
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        uv_pipe_init(loop, &o->s[i].pipe, 0);
        o->s[i].pipe.data = o;
        if (!rc && uv_pipe_open(&o->s[i].pipe, fds[i][0]) != 0) rc = ERR_IO;
    }
    if (rc) {
        for (int i = 0; i < 2; i++) {
            int fd;
            /* A pipe libuv took is closed with its handle. */
            if (uv_fileno((uv_handle_t *)&o->s[i].pipe, &fd) != 0) close(fds[i][0]);
            close(fds[i][1]);
        }
        output_close(o);
        return rc;
    }
    read_start(o);
    write_fds[0] = fds[0][1];
    write_fds[1] = fds[1][1];
    *out = o;
    return 0;
}

void output_close_fds(int write_fds[2])
{
    for (int i = 0; i < 2; i++) {
        if (write_fds[i] >= 0) close(write_fds[i]);
        write_fds[i] = -1;
    }
}

/* Reads what is in the pipes now, within the budget, without waiting. */
static void read_now(output *o)
{
    uint64_t now = uv_now(o->resume.loop);
    for (int i = 0; i < 2; i++) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&o->s[i].pipe, &fd) != 0) continue;
        ssize_t n;
        while (fnlog_spend(o->log, 0, now) == 0 && (n = read(fd, readbuf, sizeof readbuf)) > 0) {
            consume(o, i, readbuf, (size_t)n);
            fnlog_spend(o->log, (size_t)n, now);
        }
    }
    fnlog_flush(o->log);
}

void output_set_request(output *o, const char *request_id, int unread)
{
    /* What the last request wrote is in the pipes before its result reached
     * spated (the runner flushes stdio first): read it under its id. While
     * reading waits for the rate, later lines may carry the next id. */
    if (unread && o->req[0] && !uv_is_active((uv_handle_t *)&o->resume)) read_now(o);
    if (o->req[0]) { /* a line cut short belongs to the old request */
        emit_partial(o, 0);
        emit_partial(o, 1);
    }
    size_t n = request_id ? strnlen(request_id, FNLOG_REQ_MAX) : 0;
    memcpy(o->req, request_id ? request_id : "", n);
    o->req[n] = '\0';
}

void output_close(output *o)
{
    if (!o) return;
    o->closing = 1;
    read_now(o);
    emit_partial(o, 0);
    emit_partial(o, 1);
    fnlog_flush(o->log);
    uv_close((uv_handle_t *)&o->s[0].pipe, on_handle_closed);
    uv_close((uv_handle_t *)&o->s[1].pipe, on_handle_closed);
    uv_close((uv_handle_t *)&o->resume, on_handle_closed);
}
