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

bool name_is_alias(const char *s, size_t len)
{
    if (!valid(s, len, SPATE_ALIAS_MAX, false)) return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return true;
    return false; /* digits only: that is a version */
}
