#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/fmt.h"
#include "common/limits.h"

int log_level_min = LOGL_INFO;
int log_format = LOG_TEXT;
static const char *log_tag = "spate";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

int log_format_parse(const char *name)
{
    if (strcmp(name, "text") == 0) return LOG_TEXT;
    if (strcmp(name, "json") == 0) return LOG_JSON;
    return -1;
}

void log_set_tag(const char *tag)
{
    log_tag = tag;
}

static int is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Where the trailing "key=value" words of msg begin (len when none). */
static size_t context_start(const char *msg, size_t len)
{
    size_t start = len;
    while (start > 0) {
        size_t w = start;
        while (w > 0 && msg[w - 1] != ' ') w--;
        size_t k = w;
        while (k < start && is_key_char(msg[k])) k++;
        if (k == w || k == start || msg[k] != '=' || !(msg[w] >= 'a' && msg[w] <= 'z')) break;
        start = w > 0 ? w - 1 : 0; /* include the space before it */
        if (w == 0) break;
    }
    return start;
}

static size_t format_json(char *line, const char *when, int level, const char *msg, size_t mlen)
{
    char *p = line, *end = line + SPATE_LOG_MESSAGE_MAX - 2;
    p += snprintf(p, (size_t)(end - p), "{\"time\":\"%s\",\"level\":\"%s\",\"tag\":\"", when,
                  level_names[level & 3]);
    p = fmt_json_str(p, end, log_tag, strlen(log_tag));
    p += snprintf(p, (size_t)(end - p), "\",\"msg\":\"");
    size_t ctx = context_start(msg, mlen);
    p = fmt_json_str(p, end, msg, ctx);
    if (p < end) *p++ = '"';
    /* Each key=value word becomes a field. */
    size_t i = ctx;
    while (i < mlen && p < end - 8) {
        while (i < mlen && msg[i] == ' ') i++;
        size_t eq = i;
        while (eq < mlen && msg[eq] != '=') eq++;
        size_t stop = eq;
        while (stop < mlen && msg[stop] != ' ') stop++;
        if (eq >= mlen) break;
        *p++ = ',';
        *p++ = '"';
        p = fmt_json_str(p, end, msg + i, eq - i);
        if (p < end - 3) {
            memcpy(p, "\":\"", 3);
            p += 3;
        }
        p = fmt_json_str(p, end, msg + eq + 1, stop - eq - 1);
        if (p < end) *p++ = '"';
        i = stop;
    }
    if (p < end) *p++ = '}';
    return (size_t)(p - line);
}

/* Control characters of msg as escapes ("\n", "\x1b"), in place, within cap:
 * a message may quote what a function or a client said, and a newline there
 * would begin a line of their making in the log, an escape sequence act on
 * the terminal of whoever reads it. Returns the new length. */
size_t log_escape_controls(char *msg, size_t len, size_t cap)
{
    size_t extra = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c < 0x20 || c == 0x7f) extra += c == '\n' || c == '\r' || c == '\t' ? 1 : 3;
    }
    if (!extra) return len;
    while (len + extra >= cap) { /* cut the end off: whole escapes only */
        unsigned char c = (unsigned char)msg[--len];
        if (c < 0x20 || c == 0x7f) extra -= c == '\n' || c == '\r' || c == '\t' ? 1 : 3;
    }
    static const char hex[] = "0123456789abcdef";
    size_t out = len + extra;
    msg[out] = '\0';
    for (size_t i = len; i-- > 0;) {
        unsigned char c = (unsigned char)msg[i];
        if (c >= 0x20 && c != 0x7f) {
            msg[--out] = (char)c;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            msg[--out] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            msg[--out] = '\\';
        } else {
            msg[--out] = hex[c & 15];
            msg[--out] = hex[c >> 4];
            msg[--out] = 'x';
            msg[--out] = '\\';
        }
    }
    return len + extra;
}

void log_write(int level, const char *fmt, ...)
{
    char when[64];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    char msg[SPATE_LOG_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t mlen = m < 0 ? 0 : (size_t)m >= sizeof msg ? sizeof msg - 1 : (size_t)m;

    char line[SPATE_LOG_MESSAGE_MAX + 64];
    size_t len;
    if (log_format == LOG_JSON) {
        len = format_json(line, when, level, msg, mlen);
    } else {
        mlen = log_escape_controls(msg, mlen, sizeof msg);
        int n = snprintf(line, sizeof line, "%s %-5s %s: %.*s", when, level_names[level & 3],
                         log_tag, (int)mlen, msg);
        len = n < 0 ? 0 : (size_t)n >= sizeof line - 1 ? sizeof line - 2 : (size_t)n;
    }
    line[len++] = '\n';
    /* One write per line, so lines from several processes do not interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
