#include "common/err.h"

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
