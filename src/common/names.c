#include "common/names.h"

#include "common/limits.h"

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool valid(const char *s, size_t len, size_t max, bool dots)
{
    if (len == 0 || len > max || !is_alnum(s[0])) return false;
    for (size_t i = 1; i < len; i++) {
        char c = s[i];
        if (!is_alnum(c) && c != '-' && c != '_' && !(dots && c == '.')) return false;
    }
    return true;
}

bool name_is_function(const char *s, size_t len)
{
    return valid(s, len, SPATE_NAME_MAX, false);
}

bool name_is_topic(const char *s, size_t len)
{
    return valid(s, len, SPATE_TOPIC_NAME_MAX, true);
}

static void put(char *out, size_t cap, size_t at, char c)
{
    if (out && at + 1 < cap) out[at] = c;
}

size_t name_topic_stream(const char *topic, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const char *p = "SPATE_T_"; *p; p++) put(out, cap, n++, *p);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)topic[i];
        if (c == '.' || c == '_') { /* '_' is the escape, '.' a subject's separator */
            put(out, cap, n++, '_');
            put(out, cap, n++, hex[c >> 4]);
            put(out, cap, n++, hex[c & 15]);
        } else {
            put(out, cap, n++, (char)c);
        }
    }
    if (out && cap) out[n < cap ? n : cap - 1] = '\0';
    return n;
}

bool name_is_alias(const char *s, size_t len)
{
    if (!valid(s, len, SPATE_ALIAS_MAX, false)) return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return true;
    return false; /* digits only: that is a version */
}
