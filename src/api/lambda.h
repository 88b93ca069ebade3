/*
 * lambda.h - the request parsing of AWS Lambda's Invoke API
 * (POST /2015-03-31/functions/NAME/invocations, docs/api.md "AWS Lambda
 * API"): which function and qualifier a request names, and how it asks to
 * be run; and what the JSON bodies of its management API ask for
 * (api/lambda_body.c). Pure functions of their input (tests/fuzz/
 * fuzz_lambda.c and fuzz_lambda_mgmt.c drive them); answering is
 * api/lambda.c's, api/lambda_mgmt.c's and api/lambda_aliases.c's.
 */
#ifndef SPATE_API_LAMBDA_H
#define SPATE_API_LAMBDA_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fnconfig.h"
#include "common/limits.h"
#include "store/registry.h"

/* The account and region of the ARNs spate shows (one account: the node). */
#define LAMBDA_ACCOUNT "000000000000"
#define LAMBDA_REGION "us-east-1"
/* The path of the Invoke route, before the function's name. */
#define LAMBDA_FUNCTIONS_PREFIX "/2015-03-31/functions/"
/* The event source mappings' path (api/lambda_esm.c), without a '/'. */
#define LAMBDA_ESM_PREFIX "/2015-03-31/event-source-mappings"

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

/* --- The management API's bodies (api/lambda_body.c) ------------------------------- */

/* The node's architecture as Lambda names it. */
#if defined(__aarch64__)
#define LAMBDA_ARCHITECTURE "arm64"
#else
#define LAMBDA_ARCHITECTURE "x86_64"
#endif

/* The runtime a Lambda runtime name runs as: python3.N (python3),
 * nodejs18.x, nodejs20.x, nodejs22.x (nodejs), provided, provided.al2,
 * provided.al2023 (exec); -1 for another. */
int lambda_runtime_of(const char *name);
/* The name shown for a runtime: one of its family's (spate keeps the
 * family, not the name asked for). */
const char *lambda_runtime_name(enum fn_runtime rt);

/* 0 when body asks only for what spate can do; else -1 with why (a
 * member such as Layers or a VPC with subnets, a PackageType but Zip,
 * Architectures but the node's). */
int lambda_body_supported(const cJSON *body, char *why, size_t cap);
/* Applies what a CreateFunction or UpdateFunctionConfiguration body sets
 * (Runtime, Handler, Description, Timeout, MemorySize,
 * EphemeralStorage.Size, Environment.Variables: the plain variables
 * replaced) over c, and checks the result (fnconfig_check). 0, or -1 with
 * why; c is the caller's to free either way. */
int lambda_body_config(const cJSON *body, fn_config *c, char *why, size_t cap);

/* A version number of Lambda's (digits, no leading 0, within 32 bits): 0
 * and *out, or -1. */
int lambda_version_number(const char *s, uint32_t *out);
/* Applies what a CreateAlias or UpdateAlias body sets (FunctionVersion, a
 * number; RoutingConfig.AdditionalVersionWeights, at most one version with
 * a weight in whole percents from 0.01 to 0.99) over al; an absent member
 * keeps al's. 0, or -1 with why ($LATEST, a Description, ...). */
int lambda_body_alias(const cJSON *body, reg_alias *al, char *why, size_t cap);

#endif
