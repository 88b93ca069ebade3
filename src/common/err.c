#include "common/err.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

static const char *const names[] = {"OK",
#define X(name, msg) #name,
                                    ERR_MAP(X)
#undef X
};

static const char *const messages[] = {"success",
#define X(name, msg) msg,
                                       ERR_MAP(X)
#undef X
};

#define COUNT ((int)(sizeof(names) / sizeof(names[0])))

const char *err_name(int code)
{
    return (code <= 0 && -code < COUNT) ? names[-code] : "UNKNOWN";
}

const char *err_str(int code)
{
    return (code <= 0 && -code < COUNT) ? messages[-code] : "unknown error";
}

int err_from_errno(int e, int fallback)
{
    switch (e) {
    case EMFILE:
    case ENFILE:
        return ERR_DESCRIPTORS;
    case EAGAIN:
        return ERR_PROCESSES;
    case ENOMEM:
        return ERR_MEMORY;
    default:
        return fallback;
    }
}

static const int limit_errs[] = {
#define X(name, label, code, msg) ERR_##name,
    ERR_LIMIT_MAP(X)
#undef X
};

static const char *const limit_codes[] = {
#define X(name, label, code, msg) code,
    ERR_LIMIT_MAP(X)
#undef X
};

static const char *const limit_labels[] = {
#define X(name, label, code, msg) label,
    ERR_LIMIT_MAP(X)
#undef X
};

int err_limit(int code)
{
    for (int i = 0; i < ERR_LIMITS; i++)
        if (limit_errs[i] == code) return i;
    return -1;
}

int err_of_limit(int limit)
{
    return limit >= 0 && limit < ERR_LIMITS ? limit_errs[limit] : ERR_INVAL;
}

const char *err_limit_code(int limit)
{
    return limit >= 0 && limit < ERR_LIMITS ? limit_codes[limit] : NULL;
}

const char *err_limit_label(int limit)
{
    return limit >= 0 && limit < ERR_LIMITS ? limit_labels[limit] : NULL;
}

int err_limit_by_code(const char *code)
{
    for (int i = 0; code && i < ERR_LIMITS; i++)
        if (strcmp(limit_codes[i], code) == 0) return i;
    return -1;
}
