/*
 * lambda.h - the request parsing of AWS Lambda's Invoke API
 * (POST /2015-03-31/functions/NAME/invocations, docs/api.md "AWS Lambda
 * API"): which function and qualifier a request names, and how it asks to
 * be run. Pure functions of their input (tests/fuzz/fuzz_lambda.c drives
 * them); answering is api/lambda.c's.
 */
#ifndef SPATE_API_LAMBDA_H
#define SPATE_API_LAMBDA_H

#include <stddef.h>

#include "common/limits.h"

/* The account and region of the ARNs spate shows (one account: the node). */
#define LAMBDA_ACCOUNT "000000000000"
#define LAMBDA_REGION "us-east-1"
/* The path of the Invoke route, before the function's name. */
#define LAMBDA_FUNCTIONS_PREFIX "/2015-03-31/functions/"

/* A qualifier: "$LATEST", a version number or an alias (Lambda allows 128). */
#define LAMBDA_QUALIFIER_MAX 128

typedef struct lambda_target {
    char function[SPATE_NAME_MAX + 1];
    char qualifier[LAMBDA_QUALIFIER_MAX + 1]; /* "" when none was given */
} lambda_target;

enum lambda_invocation_type { LAMBDA_REQUEST_RESPONSE, LAMBDA_EVENT, LAMBDA_DRY_RUN };

/* Parses the FunctionName segment of the path (still %-encoded, len bytes)
 * and the query string (Qualifier=...) into out: NAME, NAME:QUALIFIER,
 * ACCOUNT:function:NAME[:QUALIFIER] or
 * arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER], as Lambda takes
 * them. 0, or -1 with why (a message for InvalidParameterValueException). */
int lambda_parse_target(const char *segment, size_t len, const char *query, lambda_target *out,
                        char *why, size_t whycap);

/* X-Amz-Invocation-Type (NULL: RequestResponse); -1 when unknown. */
int lambda_parse_invocation_type(const char *header);

/* X-Amz-Log-Type (NULL: None): 1 for Tail, 0 for None, -1 when unknown. */
int lambda_parse_log_type(const char *header);

/* Splits an error message as the runtimes write it, "Type: message", into
 * its type (up to typecap - 1 bytes; "" when the text has no such prefix)
 * and where the message starts. */
const char *lambda_split_error(const char *text, size_t len, char *type, size_t typecap);

#endif
