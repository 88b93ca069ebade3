#include "runtime/fnlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/strmap.h"

/* The most a line's fields take in a file before its text: the time (24),
 * five fields of at most 20 digits or the request id, and their names. */
#define HEADER_MAX 192
/* How much of the end of a function's files is read to fill a log opened
 * again: enough for the ring at its fullest, whatever the file's size. */
#define REFILL_BYTES (SPATE_LOG_BYTES_KEPT + SPATE_LOG_LINES_KEPT * (HEADER_MAX + 1))

struct fnlog {
    unsigned refs;
    char function[SPATE_NAME_MAX + 1];
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
    int filled;            /* from its files, which happens when it is first used */
};

static char *log_dir;
static size_t file_max = SPATE_LOG_FILE_MAX;
/* Function name -> its open log. */
static strmap open_logs;

static const char *const stream_names[] = {"unknown", "stdout", "stderr", "platform"};

static void fill(fnlog *l);

const char *fnlog_stream_name(int stream)
{
    return stream > 0 && stream <= FNLOG_PLATFORM ? stream_names[stream] : stream_names[0];
}

void fnlog_set_files(const char *dir, size_t max_bytes)
{
    free(log_dir);
    log_dir = dir ? strdup(dir) : NULL;
    file_max = max_bytes;
}

static fnlog *create(const char *function)
{
    fnlog *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->refs = 1;
    l->next_seq = 1;
    l->tokens = SPATE_LOG_BURST_BYTES;
    l->fd = -1;
    list_init(&l->waiters);
    buf_init(&l->pending, SPATE_LOG_FILE_MAX + SPATE_LOG_LINE_MAX + HEADER_MAX);
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
    if (strmap_get(&open_logs, l->function, strlen(l->function)) == l) {
        strmap_remove(&open_logs, l->function);
        if (open_logs.count == 0) strmap_free(&open_logs);
    }
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

/* A new line in the ring, numbered; NULL when out of memory. */
static fnlog_line *ring_add(fnlog *l, uint64_t seq, int64_t time_ms, const fnlog_tag *tag,
                            const char *text, size_t len)
{
    if (!l->ring && !(l->ring = calloc(SPATE_LOG_LINES_KEPT, sizeof *l->ring))) return NULL;
    fnlog_line *line = malloc(sizeof *line + len);
    if (!line) return NULL;
    line->seq = seq;
    line->time_ms = time_ms;
    line->instance = tag->instance;
    line->version = tag->version;
    line->stream = (uint8_t)tag->stream;
    snprintf(line->req, sizeof line->req, "%s", tag->req ? tag->req : "");
    line->len = (uint32_t)len;
    memcpy(line->text, text, len);
    l->next_seq = seq + 1;
    while (l->count > 0 &&
           (l->count == SPATE_LOG_LINES_KEPT || l->bytes + len > SPATE_LOG_BYTES_KEPT))
        evict_oldest(l);
    l->ring[(l->head + l->count) % SPATE_LOG_LINES_KEPT] = line;
    l->count++;
    l->bytes += len;
    return line;
}

/* --- The file ---------------------------------------------------------------------- */

static void file_line(fnlog *l, const fnlog_line *line)
{
    if (!l->path || l->pending.len > file_max) return;
    char when[32];
    time_t secs = (time_t)(line->time_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03dZ", (int)(line->time_ms % 1000));
    buf_printf(&l->pending, "%s seq=%llu version=%u instance=%llu stream=%s req=%s ", when,
               (unsigned long long)line->seq, line->version, (unsigned long long)line->instance,
               fnlog_stream_name(line->stream), line->req[0] ? line->req : "-");
    buf_append(&l->pending, line->text, line->len);
    buf_append(&l->pending, "\n", 1);
}

/* Opens the file, or when it is full keeps it as NAME.log.1 (dropping the
 * one before) and starts a new one. A file whose last line was cut short
 * (spated stopped in the middle of a write) gets its end of line first, so
 * that the next line starts on its own. */
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
    /* Never through a link or into a FIFO put in its place. */
    l->fd = open(l->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (l->fd < 0) return -1;
    struct stat st;
    if (fstat(l->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(l->fd);
        l->fd = -1;
        errno = EINVAL;
        return -1;
    }
    l->size = st.st_size;
    char last;
    if (l->size > 0 && pread(l->fd, &last, 1, l->size - 1) == 1 && last != '\n' &&
        write(l->fd, "\n", 1) == 1)
        l->size++;
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

uint64_t fnlog_next_seq(fnlog *l)
{
    fill(l);
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

void fnlog_append(fnlog *l, const fnlog_tag *tag, const char *text, size_t len)
{
    if (len > SPATE_LOG_LINE_MAX) len = SPATE_LOG_LINE_MAX;
    fill(l); /* numbers go on from the files' */
    const char *req = tag->req ? tag->req : "";
    /* At debug level spated's log shows it too, control characters made
     * harmless. */
    if (log_level_min <= LOGL_DEBUG) {
        char clean[SPATE_LOG_LINE_MAX];
        for (size_t i = 0; i < len; i++)
            clean[i] = (unsigned char)text[i] < 0x20 && text[i] != '\t' ? '?' : text[i];
        log_debug("output: %.*s fn=%s version=%u instance=%llu stream=%s req=%s", (int)len, clean,
                  l->function, tag->version, (unsigned long long)tag->instance,
                  fnlog_stream_name(tag->stream), req[0] ? req : "-");
    }
    fnlog_line *line = ring_add(l, l->next_seq, clock_now_ms(), tag, text, len);
    if (line) file_line(l, line);
}

void fnlog_platform(fnlog *l, uint64_t instance, uint32_t version, const char *req, const char *fmt,
                    ...)
{
    char text[SPATE_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    /* It may quote the function (its init error): a newline there began a
     * line of the file that was read back as the platform's (fill). */
    size_t len = log_escape_controls(text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1,
                                     sizeof text);
    fnlog_tag tag = {
        .instance = instance, .version = version, .stream = FNLOG_PLATFORM, .req = req};
    fnlog_append(l, &tag, text, len);
    fnlog_flush(l);
}

/* --- Readers ----------------------------------------------------------------------- */

static const fnlog_line *at(const fnlog *l, uint64_t i)
{
    return l->ring[(l->head + i) % SPATE_LOG_LINES_KEPT];
}

static int passes(const fnlog_line *line, const fnlog_filter *f)
{
    if (!f) return 1;
    if (f->since_ms && line->time_ms < f->since_ms) return 0;
    if (f->has_instance && line->instance != f->instance) return 0;
    return !f->req || strcmp(line->req, f->req) == 0;
}

/* The index of the first kept line numbered above after. Numbers only grow
 * but may have gaps (lines read back from files): a binary search. */
static uint64_t first_after(const fnlog *l, uint64_t after)
{
    uint64_t lo = 0, hi = l->count;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (at(l, mid)->seq <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t fnlog_each(fnlog *l, uint64_t after, uint32_t limit, const fnlog_filter *f,
                    fnlog_line_cb cb, void *data)
{
    fill(l);
    uint64_t newest = l->next_seq - 1;
    uint64_t i = 0;
    if (after == 0) {
        /* The newest: walk back until limit lines pass. */
        uint32_t found = 0;
        for (i = l->count; i > 0 && found < limit; i--)
            if (passes(at(l, i - 1), f)) found++;
    } else {
        i = first_after(l, after);
    }
    for (; i < l->count; i++) {
        const fnlog_line *line = at(l, i);
        if (!passes(line, f)) continue;
        if (limit == 0) return line->seq - 1; /* more to come: from just before it */
        cb(line, data);
        limit--;
    }
    /* Also for a reader ahead of the log (its files were removed): it
     * starts again from here. */
    return newest;
}

int fnlog_has_after(fnlog *l, uint64_t after, const fnlog_filter *f)
{
    fill(l);
    for (uint64_t i = first_after(l, after); i < l->count; i++)
        if (passes(at(l, i), f)) return 1;
    return 0;
}

uint64_t fnlog_evicted(fnlog *l)
{
    fill(l);
    return l->evicted;
}

/* --- Reading the files back -------------------------------------------------------- */

/* n decimal digits at s, within max. */
static int digits(const char *s, int n, int max, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) return -1;
    *out = v;
    return 0;
}

/* "2006-01-02T15:04:05.000Z" into ms since the epoch. */
static int parse_time(const char *s, int64_t *ms)
{
    int y, mo, d, h, mi, sec, milli;
    if (digits(s, 4, 9999, &y) || s[4] != '-' || digits(s + 5, 2, 12, &mo) || s[7] != '-' ||
        digits(s + 8, 2, 31, &d) || s[10] != 'T' || digits(s + 11, 2, 23, &h) || s[13] != ':' ||
        digits(s + 14, 2, 59, &mi) || s[16] != ':' || digits(s + 17, 2, 60, &sec) || s[19] != '.' ||
        digits(s + 20, 3, 999, &milli) || s[23] != 'Z' || mo == 0 || d == 0)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    *ms = (int64_t)timegm(&tm) * 1000 + milli;
    return 0;
}

/* "KEY=VALUE " at *p: the value (up to the space, which must be there). */
static int field(const char **p, const char *end, const char *key, const char **v, size_t *vlen)
{
    size_t k = strlen(key);
    if ((size_t)(end - *p) < k + 1 || memcmp(*p, key, k) != 0 || (*p)[k] != '=') return -1;
    const char *start = *p + k + 1;
    const char *sp = memchr(start, ' ', (size_t)(end - start));
    if (!sp) return -1;
    *v = start;
    *vlen = (size_t)(sp - start);
    *p = sp + 1;
    return 0;
}

static int number_field(const char **p, const char *end, const char *key, uint64_t max,
                        uint64_t *out)
{
    const char *v;
    size_t n;
    if (field(p, end, key, &v, &n) || n == 0 || n > 20) return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9' || x > (UINT64_MAX - 9) / 10) return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (x > max) return -1;
    *out = x;
    return 0;
}

static int req_field(const char **p, const char *end, char *out)
{
    const char *v;
    size_t n;
    if (field(p, end, "req", &v, &n) || n == 0 || n > FNLOG_REQ_MAX) return -1;
    if (n == 1 && v[0] == '-') n = 0;
    memcpy(out, v, n);
    out[n] = '\0';
    return 0;
}

int fnlog_parse_line(const char *s, size_t len, fnlog_record *r)
{
    memset(r, 0, sizeof *r);
    const char *end = s + len, *p = s + 25;
    if (len < 25 || parse_time(s, &r->time_ms) || s[24] != ' ') return ERR_INVAL;
    uint64_t v;
    if ((size_t)(end - p) >= 4 && memcmp(p, "seq=", 4) == 0) {
        const char *name;
        size_t n;
        if (number_field(&p, end, "seq", UINT64_MAX >> 1, &r->seq) || r->seq == 0 ||
            number_field(&p, end, "version", UINT32_MAX, &v) ||
            number_field(&p, end, "instance", UINT64_MAX, &r->instance) ||
            field(&p, end, "stream", &name, &n) || req_field(&p, end, r->req))
            return ERR_INVAL;
        r->version = (uint32_t)v;
        for (int st = FNLOG_STDOUT; st <= FNLOG_PLATFORM; st++)
            if (strlen(stream_names[st]) == n && memcmp(name, stream_names[st], n) == 0)
                r->stream = st;
    } else if ((size_t)(end - p) >= 7 && memcmp(p, "zygote ", 7) == 0) {
        p += 7; /* the format before: the zygote's line */
    } else if (number_field(&p, end, "instance", UINT64_MAX, &r->instance) ||
               req_field(&p, end, r->req)) {
        return ERR_INVAL;
    }
    r->text = p;
    r->len = (size_t)(end - p);
    return 0;
}

/* The last want bytes of the file at path into out (which has room), from
 * the start of a line; *got is 0 when there is no such file. 0 or an errno. */
static int read_tail(const char *path, size_t want, char *out, size_t *got)
{
    *got = 0;
    /* Not through a link; O_NONBLOCK: a FIFO found there must not hang spated
     * (not a file: refused below). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT ? 0 : errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return EINVAL;
    }
    off_t from = st.st_size > (off_t)want ? st.st_size - (off_t)want : 0;
    size_t n = 0;
    while (n < (size_t)(st.st_size - from)) {
        ssize_t r = pread(fd, out + n, (size_t)(st.st_size - from) - n, from + (off_t)n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    size_t skip = 0;
    if (from > 0) { /* mid-line: from the next one */
        const char *nl = memchr(out, '\n', n);
        skip = nl ? (size_t)(nl + 1 - out) : n;
    }
    memmove(out, out + skip, n - skip);
    *got = n - skip;
    return 0;
}

/* Puts the lines of text (a file's tail) in the ring. A last line without
 * its end (spated stopped mid-write) is taken as far as it goes; lines that
 * are not in either format are counted in *bad and left out. */
static void refill_from(fnlog *l, const char *text, size_t len, uint64_t *bad)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        fnlog_record r;
        if (fnlog_parse_line(p, n, &r) == 0) {
            /* Numbers must grow: a line without one, or out of order, gets the next. */
            uint64_t seq = r.seq >= l->next_seq ? r.seq : l->next_seq;
            fnlog_tag tag = {
                .instance = r.instance, .version = r.version, .stream = r.stream, .req = r.req};
            ring_add(l, seq, r.time_ms, &tag, r.text,
                     r.len > SPATE_LOG_LINE_MAX ? SPATE_LOG_LINE_MAX : r.len);
        } else if (n > 0) {
            (*bad)++;
        }
        p += n + 1;
    }
}

/* Fills a log opened again from the newest lines of NAME.log.1 and NAME.log,
 * once, when it is first used (not when opened: spated starts without reading
 * every function's files). */
static void fill(fnlog *l)
{
    if (l->filled) return;
    l->filled = 1;
    if (!l->path) return;
    size_t plen = strlen(l->path);
    char *older = malloc(plen + 3);
    char *text = malloc(REFILL_BYTES);
    if (!older || !text) {
        free(older);
        free(text);
        return;
    }
    snprintf(older, plen + 3, "%s.1", l->path);
    struct stat st;
    size_t newer = stat(l->path, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 0;
    uint64_t bad = 0;
    const char *paths[2] = {older, l->path};
    size_t wants[2] = {newer < REFILL_BYTES ? REFILL_BYTES - newer : 0, REFILL_BYTES};
    for (int i = 0; i < 2; i++) {
        size_t got;
        if (wants[i] == 0) continue;
        int err = read_tail(paths[i], wants[i], text, &got);
        if (err) log_warn("cannot read %s: %s fn=%s", paths[i], strerror(err), l->function);
        refill_from(l, text, got, &bad);
    }
    if (bad)
        log_warn("left out %llu unreadable line%s of %s fn=%s", (unsigned long long)bad,
                 bad == 1 ? "" : "s", l->path, l->function);
    l->evicted = 0;
    l->notified_seq = l->next_seq;
    free(older);
    free(text);
}

fnlog *fnlog_open(const char *function)
{
    fnlog *l = strmap_get(&open_logs, function, strlen(function));
    if (l) {
        l->refs++;
        return l;
    }
    if (!(l = create(function))) return NULL;
    if (strmap_put(&open_logs, l->function, l) != 0)
        log_warn("out of memory sharing the log fn=%s", function); /* it works, unshared */
    return l;
}

fnlog *fnlog_find(const char *function)
{
    fnlog *l = strmap_get(&open_logs, function, strlen(function));
    if (l) {
        l->refs++;
        return l;
    }
    if (!log_dir) return NULL;
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s.log", log_dir, function);
    int exists = stat(path, &st) == 0;
    snprintf(path, sizeof path, "%s/%s.log.1", log_dir, function);
    if (!exists && stat(path, &st) != 0) return NULL;
    return fnlog_open(function);
}
