/*
 * lambda_parse.c - what an Invoke request of Lambda's API names and asks
 * for (api/lambda.h): the function and qualifier from the path and query,
 * the invocation and log types from the headers.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/lambda.h"
#include "common/names.h"
#include "http/server.h"

/* A FunctionName is at most 170 characters in Lambda's model (an ARN with
 * a qualifier); its decoded form is never longer than the encoded one. */
#define SEGMENT_MAX 256

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* %-decodes a path segment ('+' stays '+', as in a path); -1 on a bad
 * escape or an encoded NUL or '/'. */
static long decode_segment(const char *src, size_t len, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = src[i];
        if (ch == '%') {
            if (i + 2 >= len) return -1;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            ch = (char)(hi * 16 + lo);
            if (ch == '\0' || ch == '/') return -1;
            i += 2;
        }
        dst[o++] = ch;
    }
    dst[o] = '\0';
    return (long)o;
}

typedef struct query_state {
    char qualifier[LAMBDA_QUALIFIER_MAX + 1];
    int bad;
} query_state;

static int on_query(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    query_state *q = data;
    (void)klen;
    if (strcmp(k, "Qualifier") != 0) return 0; /* Lambda ignores what it does not know */
    if (vlen == 0 || vlen > LAMBDA_QUALIFIER_MAX || memchr(v, '\0', vlen)) {
        q->bad = 1;
        return -1;
    }
    memcpy(q->qualifier, v, vlen);
    q->qualifier[vlen] = '\0';
    return 0;
}

/* Lambda's qualifier pattern: $LATEST, a version, or an alias
 * ([a-zA-Z0-9-_]+, not all digits but for a version). */
static int qualifier_ok(const char *q)
{
    if (strcmp(q, "$LATEST") == 0) return 1;
    if (!*q) return 0;
    for (const char *p = q; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return 0;
    return 1;
}

int lambda_parse_target(const char *segment, size_t len, const char *query, lambda_target *out,
                        char *why, size_t whycap)
{
    memset(out, 0, sizeof *out);
    char name[SEGMENT_MAX + 1];
    if (len == 0 || len > SEGMENT_MAX || decode_segment(segment, len, name) < 0) {
        snprintf(why, whycap, "the function name is empty, too long or badly encoded");
        return -1;
    }
    /* The parts between ':'; an ARN has 7 or 8, ACCOUNT:function:NAME 3 or 4. */
    char *parts[9];
    size_t n = 0;
    for (char *p = name;; p++) {
        if (n == 9) break;
        parts[n++] = p;
        p = strchr(p, ':');
        if (!p) break;
        *p = '\0';
    }
    const char *fname = NULL, *qual = NULL;
    if (n >= 7 && n <= 8 && strcmp(parts[0], "arn") == 0) {
        if (strcmp(parts[2], "lambda") != 0 || strcmp(parts[5], "function") != 0) {
            snprintf(why, whycap, "'%.*s' is not the ARN of a Lambda function", 80, segment);
            return -1;
        }
        fname = parts[6];
        qual = n == 8 ? parts[7] : NULL;
    } else if ((n == 3 || n == 4) && strcmp(parts[1], "function") == 0) {
        fname = parts[2];
        qual = n == 4 ? parts[3] : NULL;
    } else if (n <= 2) {
        fname = parts[0];
        qual = n == 2 ? parts[1] : NULL;
    } else {
        snprintf(why, whycap,
                 "the function name must be NAME, NAME:QUALIFIER or a function's ARN "
                 "(arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER])");
        return -1;
    }
    if (!name_is_function(fname, strlen(fname))) {
        snprintf(why, whycap, "invalid function name '%.80s': " NAME_FUNCTION_RULE, fname,
                 SPATE_NAME_MAX);
        return -1;
    }
    snprintf(out->function, sizeof out->function, "%s", fname);
    if (qual) {
        if (strlen(qual) > LAMBDA_QUALIFIER_MAX || !qualifier_ok(qual)) {
            snprintf(why, whycap, "invalid qualifier '%.80s'", qual);
            return -1;
        }
        snprintf(out->qualifier, sizeof out->qualifier, "%s", qual);
    }
    query_state q = {{0}, 0};
    if (query && *query && (http_query_parse(query, on_query, &q) != 0 || q.bad)) {
        snprintf(why, whycap, "malformed query string or Qualifier");
        return -1;
    }
    if (q.qualifier[0]) {
        if (!qualifier_ok(q.qualifier)) {
            snprintf(why, whycap, "invalid qualifier '%.80s'", q.qualifier);
            return -1;
        }
        if (out->qualifier[0] && strcmp(out->qualifier, q.qualifier) != 0) {
            snprintf(why, whycap,
                     "the qualifier in the function name (%s) does not match the Qualifier "
                     "parameter (%s)",
                     out->qualifier, q.qualifier);
            return -1;
        }
        snprintf(out->qualifier, sizeof out->qualifier, "%s", q.qualifier);
    }
    return 0;
}

int lambda_parse_invocation_type(const char *header)
{
    if (!header || strcmp(header, "RequestResponse") == 0) return LAMBDA_REQUEST_RESPONSE;
    if (strcmp(header, "Event") == 0) return LAMBDA_EVENT;
    if (strcmp(header, "DryRun") == 0) return LAMBDA_DRY_RUN;
    return -1;
}

int lambda_parse_log_type(const char *header)
{
    if (!header || strcmp(header, "None") == 0) return 0;
    if (strcmp(header, "Tail") == 0) return 1;
    return -1;
}

const char *lambda_split_error(const char *text, size_t len, char *type, size_t typecap)
{
    size_t i = 0;
    while (i < len && i + 1 < typecap &&
           ((text[i] >= 'a' && text[i] <= 'z') || (text[i] >= 'A' && text[i] <= 'Z') ||
            (text[i] >= '0' && text[i] <= '9') || text[i] == '_' || text[i] == '.'))
        i++;
    if (i > 0 && i + 1 < len && text[i] == ':' && text[i + 1] == ' ') {
        memcpy(type, text, i);
        type[i] = '\0';
        return text + i + 2;
    }
    if (typecap) type[0] = '\0';
    return text;
}
