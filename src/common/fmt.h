/*
 * fmt.h - number and string formatting for hot paths, where snprintf's
 * format parsing shows up in profiles. Each writes at p and returns the end;
 * the caller guarantees room (at most 20 bytes for a number).
 */
#ifndef SPATE_FMT_H
#define SPATE_FMT_H

#include <stdint.h>
#include <string.h>

static inline char *fmt_str(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define fmt_lit(p, s) fmt_str((p), (s), sizeof(s) - 1)

static inline char *fmt_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

/* Exactly digits lowercase hex digits of v (the low ones). */
static inline char *fmt_hex(char *p, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = hex[v & 15];
        v >>= 4;
    }
    return p + digits;
}

/* s[0..len) as the inside of a JSON string ('"' and '\\' escaped, control
 * characters as \u00XX), written at p; stops before p reaches end - 6, so
 * that one escape always fits and room is left after it. Returns the end. */
static inline char *fmt_json_str(char *p, const char *end, const char *s, size_t len)
{
    for (size_t i = 0; i < len && p < end - 6; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c < 0x20) {
            p = fmt_lit(p, "\\u00");
            p = fmt_hex(p, c, 2);
        } else {
            *p++ = (char)c;
        }
    }
    return p;
}

#endif
