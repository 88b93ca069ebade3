/*
 * log.h - one line per event on stderr: time, level, message, then context
 * (fn=... req=... instance=...). Formatting is skipped below the level.
 *
 * Messages end with their context as key=value words; in the JSON format
 * (--log-format json) those become fields of the object:
 *   {"time":"...","level":"warn","tag":"spated","msg":"...","fn":"f","req":"..."}
 */
#ifndef SPATE_LOG_H
#define SPATE_LOG_H

#include <stddef.h>

enum log_level { LOGL_DEBUG, LOGL_INFO, LOGL_WARN, LOGL_ERROR };

extern int log_level_min;

enum log_format { LOG_TEXT, LOG_JSON };
extern int log_format;
/* Parses "text" or "json"; -1 when unknown. */
int log_format_parse(const char *name);

/* Parses "debug", "info", "warn" or "error"; -1 when unknown. */
int log_level_parse(const char *name);
/* Tags every line, e.g. "spated" or "runner fn=x". Borrowed for the process life. */
void log_set_tag(const char *tag);
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The control characters of msg (len bytes, room for cap) as escapes ("\n",
 * "\x1b"), in place, the end cut off to fit: a line that quotes foreign words
 * stays one line. Returns the new length (msg is NUL-terminated there). */
size_t log_escape_controls(char *msg, size_t len, size_t cap);

#define log_at(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= log_level_min) log_write((level), __VA_ARGS__);                             \
    } while (0)
#define log_debug(...) log_at(LOGL_DEBUG, __VA_ARGS__)
#define log_info(...) log_at(LOGL_INFO, __VA_ARGS__)
#define log_warn(...) log_at(LOGL_WARN, __VA_ARGS__)
#define log_error(...) log_at(LOGL_ERROR, __VA_ARGS__)

#endif
