#include "common/reqid.h"

#include <stdint.h>
#include <sys/random.h>
#include <time.h>

#include "common/fmt.h"

static uint64_t prefix, counter;
static int ready;

void reqid_next(char out[REQID_LEN + 1])
{
    if (!ready) {
        if (getrandom(&prefix, sizeof prefix, 0) != sizeof prefix)
            prefix = (uint64_t)time(NULL) * 2654435761u;
        ready = 1;
    }
    /* xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx */
    uint64_t n = ++counter;
    char *p = fmt_hex(out, prefix >> 32, 8);
    *p++ = '-';
    p = fmt_hex(p, prefix >> 16, 4);
    *p++ = '-';
    p = fmt_hex(p, prefix, 4);
    *p++ = '-';
    p = fmt_hex(p, n >> 48, 4);
    *p++ = '-';
    p = fmt_hex(p, n, 12);
    *p = '\0';
}
