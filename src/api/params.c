/*
 * params.c - query parameters every route parses the same way: integers
 * within bounds and booleans, each with the message a refusal gives.
 */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/parse.h"

int api_number_param(const char *key, const char *val, size_t vlen, uint64_t min, uint64_t max,
                     uint32_t *out, char *why, size_t whycap)
{
    uint64_t v;
    if (parse_u64(val, vlen, min, max, &v)) {
        snprintf(why, whycap, "parameter '%s' must be an integer from %llu to %llu", key,
                 (unsigned long long)min, (unsigned long long)max);
        return ERR_INVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

int api_bool_param(const char *key, const char *val, size_t vlen, int *out, char *why,
                   size_t whycap)
{
    /* A bare "?force" means true. */
    if (vlen == 0 || (vlen == 4 && memcmp(val, "true", 4) == 0) || (vlen == 1 && val[0] == '1'))
        *out = 1;
    else if ((vlen == 5 && memcmp(val, "false", 5) == 0) || (vlen == 1 && val[0] == '0'))
        *out = 0;
    else {
        snprintf(why, whycap, "parameter '%s' must be true or false", key);
        return ERR_INVAL;
    }
    return 0;
}

int api_json_has_nul(const char *text, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] != '\\') continue;
        /* An escape: \u0000 is the NUL; any other skips its character. */
        if (text[i + 1] == 'u' && i + 6 <= len && memcmp(text + i + 2, "0000", 4) == 0) return 1;
        i++;
    }
    return 0;
}
