/*
 * fuzz_fnlog - the parser of log file lines (runtime/fnlog.h) against
 * arbitrary bytes, as spated meets them when it reads a function's log files
 * back: each piece between newlines parsed, and what parses stays inside
 * the line with a request id that fits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fnlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        fnlog_record r;
        if (fnlog_parse_line(p, n, &r) == 0 &&
            (r.text < p || r.text + r.len != p + n || strlen(r.req) > FNLOG_REQ_MAX ||
             r.stream < FNLOG_UNKNOWN || r.stream > FNLOG_PLATFORM))
            abort();
        p += n + 1;
    }
    return 0;
}
