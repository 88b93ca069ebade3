#include "runtime/output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/limits.h"

struct output {
    uv_pipe_t pipe;
    uv_timer_t resume; /* reading waits for the rate budget */
    fnlog *log;
    uint64_t instance;
    char req[FNLOG_REQ_MAX + 1]; /* the request the process is running, "" between */
    char *partial;               /* the start of a line not yet ended, SPATE_LOG_LINE_MAX bytes */
    size_t plen;
    int closing, open_handles;
};

/* One loop thread: reads share one buffer. */
static char readbuf[64 * 1024];

static void on_handle_closed(uv_handle_t *h)
{
    output *o = h->data;
    if (--o->open_handles > 0) return;
    fnlog_unref(o->log);
    free(o->partial);
    free(o);
}

static void emit(output *o, const char *text, size_t len)
{
    fnlog_append(o->log, o->instance, o->req, text, len);
}

/* Splits data into lines; a line longer than the maximum is cut there. */
static void consume(output *o, const char *data, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (o->plen + take >= SPATE_LOG_LINE_MAX) take = SPATE_LOG_LINE_MAX - o->plen;
        int ended = nl && data + take == nl;
        if (ended && o->plen == 0) {
            emit(o, data, take); /* the usual case: a whole line, no copy */
        } else {
            if (!o->partial && !(o->partial = malloc(SPATE_LOG_LINE_MAX))) return;
            memcpy(o->partial + o->plen, data, take);
            o->plen += take;
            if (ended || o->plen == SPATE_LOG_LINE_MAX) {
                emit(o, o->partial, o->plen);
                o->plen = 0;
            }
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

static void on_resume(uv_timer_t *t)
{
    output *o = t->data;
    if (!o->closing) uv_read_start((uv_stream_t *)&o->pipe, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    output *o = s->data;
    if (n < 0) {
        uv_read_stop(s);
        if (o->plen) emit(o, o->partial, o->plen);
        o->plen = 0;
        return;
    }
    consume(o, b->base, (size_t)n);
    fnlog_flush(o->log);
    uint64_t wait = fnlog_spend(o->log, (size_t)n, uv_now(s->loop));
    if (wait) {
        /* Over the rate: let the pipe fill, so the writer waits. */
        uv_read_stop(s);
        uv_timer_start(&o->resume, on_resume, wait, 0);
    }
}

int output_open(uv_loop_t *loop, fnlog *log, uint64_t instance, int *write_fd, output **out)
{
    output *o = calloc(1, sizeof *o);
    if (!o) return ERR_NOMEM;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        free(o);
        return ERR_IO;
    }
    o->log = log;
    fnlog_ref(log);
    o->instance = instance;
    uv_pipe_init(loop, &o->pipe, 0);
    uv_timer_init(loop, &o->resume);
    o->pipe.data = o->resume.data = o;
    o->open_handles = 2;
    if (uv_pipe_open(&o->pipe, fds[0]) != 0) {
        close(fds[0]);
        close(fds[1]);
        output_close(o);
        return ERR_IO;
    }
    uv_read_start((uv_stream_t *)&o->pipe, on_alloc, on_read);
    *write_fd = fds[1];
    *out = o;
    return 0;
}

/* Reads what is in the pipe now, within the budget, without waiting. */
static void read_now(output *o)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&o->pipe, &fd) != 0) return;
    uint64_t now = uv_now(o->pipe.loop);
    ssize_t n;
    while (fnlog_spend(o->log, 0, now) == 0 && (n = read(fd, readbuf, sizeof readbuf)) > 0) {
        consume(o, readbuf, (size_t)n);
        fnlog_spend(o->log, (size_t)n, now);
    }
    fnlog_flush(o->log);
}

void output_set_request(output *o, const char *request_id, int unread)
{
    /* What the last request wrote is in the pipe before its result reached
     * spated (the runner flushes stdio first): read it under its id. While
     * reading waits for the rate, later lines may carry the next id. */
    if (unread && o->req[0] && !uv_is_active((uv_handle_t *)&o->resume)) read_now(o);
    if (o->req[0] && o->plen) { /* a line cut short belongs to the old request */
        emit(o, o->partial, o->plen);
        o->plen = 0;
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
    if (o->plen) emit(o, o->partial, o->plen);
    o->plen = 0;
    fnlog_flush(o->log);
    uv_close((uv_handle_t *)&o->pipe, on_handle_closed);
    uv_close((uv_handle_t *)&o->resume, on_handle_closed);
}
