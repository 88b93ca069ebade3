/*
 * fuzz_lambda - the request parsing of Lambda's Invoke API (api/lambda.h)
 * against arbitrary bytes, as a client may send them: the input's lines are
 * the path's function segment, the query string, X-Amz-Invocation-Type,
 * X-Amz-Log-Type, and an error text as a runtime reports it. What parses
 * must name a valid function and a qualifier that fits; the route of the
 * whole path must point into it; a split error stays inside its text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/lambda.h"
#include "common/names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next line of [*p, end) as a NUL-terminated copy (caller frees). */
static char *next_line(const char **p, const char *end)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += n + (nl ? 1 : 0);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    char *segment = next_line(&p, end);
    char *query = next_line(&p, end);
    char *itype = next_line(&p, end);
    char *ltype = next_line(&p, end);
    size_t rest = (size_t)(end - p);

    lambda_target t;
    char why[300];
    if (lambda_parse_target(segment, strlen(segment), query, &t, why, sizeof why) == 0) {
        if (!name_is_function(t.function, strlen(t.function))) abort();
        if (strlen(t.qualifier) > LAMBDA_QUALIFIER_MAX) abort();
    } else if (strnlen(why, sizeof why) == sizeof why || !why[0]) {
        abort();
    }

    size_t slen = strlen(segment);
    char *path = malloc(slen + 64);
    if (!path) abort();
    memcpy(path, LAMBDA_FUNCTIONS_PREFIX, sizeof LAMBDA_FUNCTIONS_PREFIX - 1);
    memcpy(path + sizeof LAMBDA_FUNCTIONS_PREFIX - 1, segment, slen);
    strcpy(path + sizeof LAMBDA_FUNCTIONS_PREFIX - 1 + slen, "/invocations");
    route_match m = api_route_match(path);
    if (m.route == R_LAMBDA_INVOKE &&
        (m.name != path + sizeof LAMBDA_FUNCTIONS_PREFIX - 1 || m.name_len == 0 ||
         m.name + m.name_len > path + strlen(path)))
        abort();

    int it = lambda_parse_invocation_type(itype);
    int lt = lambda_parse_log_type(ltype);
    if (it < -1 || it > LAMBDA_DRY_RUN || lt < -1 || lt > 1) abort();

    char type[96];
    const char *msg = lambda_split_error(p, rest, type, sizeof type);
    if (msg < p || msg > end || strnlen(type, sizeof type) == sizeof type) abort();

    free(path);
    free(segment);
    free(query);
    free(itype);
    free(ltype);
    return 0;
}
