#include "runtime/fnlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"

#include "common/clock.h"
#include "common/limits.h"
#include "common/log.h"

struct fnlog {
    unsigned refs;
    char function[72];
    fnlog_line **ring; /* SPATE_LOG_LINES_KEPT slots, allocated on the first line */
    uint32_t head;     /* oldest */
    uint32_t count;
    size_t bytes;
    uint64_t next_seq;
    uint64_t evicted;
    double tokens; /* bytes that may be written now */
    uint64_t refilled_ms;
    char *path;            /* DIR/NAME.log, or NULL */
    int fd;                /* -1 until the first flush */
    off_t size;            /* of the file */
    buf pending;           /* lines for the file */
    int warned;            /* the file could not be written; said once */
    list_node waiters;     /* fnlog_waiter */
    uint64_t notified_seq; /* lines below this have been announced to waiters */
};

static char *log_dir;
static size_t file_max = SPATE_LOG_FILE_MAX;

void fnlog_set_files(const char *dir, size_t max_bytes)
{
    free(log_dir);
    log_dir = dir ? strdup(dir) : NULL;
    file_max = max_bytes;
}

fnlog *fnlog_create(const char *function)
{
    fnlog *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->refs = 1;
    l->next_seq = 1;
    l->tokens = SPATE_LOG_BURST_BYTES;
    l->fd = -1;
    list_init(&l->waiters);
    buf_init(&l->pending, SPATE_LOG_FILE_MAX + SPATE_LOG_LINE_MAX + 128);
    snprintf(l->function, sizeof l->function, "%s", function);
    if (log_dir) {
        size_t n = strlen(log_dir) + strlen(l->function) + 8;
        if ((l->path = malloc(n))) snprintf(l->path, n, "%s/%s.log", log_dir, l->function);
    }
    return l;
}

void fnlog_ref(fnlog *l)
{
    l->refs++;
}

void fnlog_unref(fnlog *l)
{
    if (!l || --l->refs > 0) return;
    fnlog_flush(l);
    if (l->fd >= 0) close(l->fd);
    free(l->path);
    buf_free(&l->pending);
    for (uint32_t i = 0; i < l->count; i++) free(l->ring[(l->head + i) % SPATE_LOG_LINES_KEPT]);
    free(l->ring);
    free(l);
}

uint64_t fnlog_spend(fnlog *l, size_t len, uint64_t now_ms)
{
    if (now_ms > l->refilled_ms) {
        l->tokens += (double)(now_ms - l->refilled_ms) * SPATE_LOG_RATE_BYTES / 1000.0;
        if (l->tokens > SPATE_LOG_BURST_BYTES) l->tokens = SPATE_LOG_BURST_BYTES;
        l->refilled_ms = now_ms;
    }
    l->tokens -= (double)len; /* below zero: the debt is waited off */
    if (l->tokens > 0) return 0;
    return (uint64_t)(-l->tokens * 1000.0 / SPATE_LOG_RATE_BYTES) + 1;
}

static void evict_oldest(fnlog *l)
{
    fnlog_line *old = l->ring[l->head];
    l->bytes -= old->len;
    free(old);
    l->head = (l->head + 1) % SPATE_LOG_LINES_KEPT;
    l->count--;
    l->evicted++;
}

static void file_line(fnlog *l, const fnlog_line *line)
{
    if (!l->path || l->pending.len > file_max) return;
    char when[32];
    time_t secs = (time_t)(line->time_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03dZ", (int)(line->time_ms % 1000));
    if (line->instance)
        buf_printf(&l->pending, "%s instance=%llu req=%s ", when,
                   (unsigned long long)line->instance, line->req[0] ? line->req : "-");
    else
        buf_printf(&l->pending, "%s zygote ", when);
    buf_append(&l->pending, line->text, line->len);
    buf_append(&l->pending, "\n", 1);
}

/* Opens the file, or when it is full keeps it as NAME.log.1 (dropping the
 * one before) and starts a new one. */
static int file_open(fnlog *l, int rotate)
{
    if (l->fd >= 0) {
        close(l->fd);
        l->fd = -1;
    }
    if (rotate) {
        char old[4200];
        snprintf(old, sizeof old, "%s.1", l->path);
        if (rename(l->path, old) != 0 && errno != ENOENT) return -1;
    }
    l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (l->fd < 0) return -1;
    struct stat st;
    l->size = fstat(l->fd, &st) == 0 ? st.st_size : 0;
    return 0;
}

void fnlog_wait(fnlog *l, fnlog_waiter *w)
{
    list_push_back(&l->waiters, &w->link);
}

void fnlog_unwait(fnlog_waiter *w)
{
    if (w->link.next) list_remove(&w->link); /* also after the callback, or never waited */
}

uint64_t fnlog_next_seq(const fnlog *l)
{
    return l->next_seq;
}

/* New lines: every waiter, once. They move to a list of their own first:
 * each call may answer a request, and that may wait again. */
static void notify(fnlog *l)
{
    if (l->notified_seq == l->next_seq) return;
    l->notified_seq = l->next_seq;
    list_node ready;
    list_init(&ready);
    while (!list_empty(&l->waiters)) {
        list_node *n = list_first(&l->waiters);
        list_remove(n);
        list_push_back(&ready, n);
    }
    while (!list_empty(&ready)) {
        fnlog_waiter *w = list_entry(list_first(&ready), fnlog_waiter, link);
        list_remove(&w->link);
        w->cb(w);
    }
}

void fnlog_flush(fnlog *l)
{
    notify(l);
    if (!l->path || l->pending.len == 0) return;
    const char *p = l->pending.data, *end = p + l->pending.len;
    int rc = l->fd < 0 ? file_open(l, 0) : 0;
    while (rc == 0 && p < end) {
        /* As many whole lines as fit; none fit: a new file. */
        size_t room = l->size < (off_t)file_max ? file_max - (size_t)l->size : 0;
        size_t take = (size_t)(end - p);
        if (take > room) {
            const char *nl = room ? memrchr(p, '\n', room) : NULL;
            take = nl ? (size_t)(nl + 1 - p) : 0;
        }
        if (take == 0) {
            if (l->size == 0) break; /* a line longer than the file: dropped */
            rc = file_open(l, 1);
            continue;
        }
        ssize_t w = write(l->fd, p, take);
        if (w <= 0) {
            rc = -1;
            break;
        }
        l->size += w;
        p += w;
    }
    if (rc != 0 && !l->warned) {
        log_warn("cannot write %s: %s fn=%s", l->path, strerror(errno), l->function);
        l->warned = 1;
    }
    buf_reset(&l->pending);
}

void fnlog_append(fnlog *l, uint64_t instance, const char *req, const char *text, size_t len)
{
    if (len > SPATE_LOG_LINE_MAX) len = SPATE_LOG_LINE_MAX;
    if (!req) req = "";
    /* At debug level spated's log shows it too, control characters made
     * harmless. */
    if (log_level_min <= LOGL_DEBUG) {
        char clean[SPATE_LOG_LINE_MAX];
        for (size_t i = 0; i < len; i++)
            clean[i] = (unsigned char)text[i] < 0x20 && text[i] != '\t' ? '?' : text[i];
        if (instance)
            log_debug("output: %.*s fn=%s instance=%llu req=%s", (int)len, clean, l->function,
                      (unsigned long long)instance, req[0] ? req : "-");
        else
            log_debug("output: %.*s fn=%s zygote", (int)len, clean, l->function);
    }

    if (!l->ring && !(l->ring = calloc(SPATE_LOG_LINES_KEPT, sizeof *l->ring))) return;
    fnlog_line *line = malloc(sizeof *line + len);
    if (!line) return;
    line->seq = l->next_seq++;
    line->time_ms = clock_now_ms();
    line->instance = instance;
    snprintf(line->req, sizeof line->req, "%s", req);
    line->len = (uint32_t)len;
    memcpy(line->text, text, len);
    file_line(l, line);
    while (l->count > 0 &&
           (l->count == SPATE_LOG_LINES_KEPT || l->bytes + len > SPATE_LOG_BYTES_KEPT))
        evict_oldest(l);
    l->ring[(l->head + l->count) % SPATE_LOG_LINES_KEPT] = line;
    l->count++;
    l->bytes += len;
}

void fnlog_each(const fnlog *l, uint64_t after, uint32_t limit, fnlog_line_cb cb, void *data)
{
    /* Lines are numbered without gaps: the first wanted is found directly. */
    if (l->count == 0) return;
    uint64_t first = l->ring[l->head]->seq;
    uint64_t skip = after >= first ? after - first + 1 : 0;
    if (after == 0 && l->count > limit) skip = l->count - limit; /* the newest */
    for (uint64_t i = skip; i < l->count && limit > 0; i++, limit--)
        cb(l->ring[(l->head + i) % SPATE_LOG_LINES_KEPT], data);
}

uint64_t fnlog_evicted(const fnlog *l)
{
    return l->evicted;
}
