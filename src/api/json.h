/* json.h - JSON documents of the API (cJSON): functions, versions, configuration. */
#ifndef SPATE_API_JSON_H
#define SPATE_API_JSON_H

#include <cjson/cJSON.h>

#include "http/server.h"
#include "sched/functions.h"
#include "sched/triggers.h"

/* The configuration as the API shows it: env with its values (env_values 1,
 * admin) or only its names, each mapped to null; secrets as a list of names,
 * to anyone. Caller owns. */
cJSON *api_json_config_shown(const fn_config *c, int env_values);
/* One line of the list: name, version, runtime, instances. Caller owns. */
cJSON *api_json_function_summary(const fn *f);
/* A whole description; with versions (read through table) when asked, and
 * its scaling when sv is given; env values only with env_values (else the
 * names, mapped to null). Caller owns. */
cJSON *api_json_function(const fn *f, functions *table, int with_versions, const scale_view *sv,
                         int env_values);

/* An alias: name, function, version, and weight_version with
 * weight_percent when it sends some invocations to a second version.
 * Caller owns. */
cJSON *api_json_alias(const reg_alias *a);

/* What a route answers when it refuses a body: code and message for one
 * that is not a JSON object (the message shows what it takes), and code and
 * message for one with an escaped NUL in a string. */
typedef struct api_body_rules {
    const char *code;        /* "bad_json" */
    const char *usage;       /* "the body must be a JSON object: {...}" */
    const char *nul_code;    /* "bad_schedule" */
    const char *nul_message; /* "a string of the body holds a NUL ..." */
} api_body_rules;

/* The request's body as a JSON object, or NULL after answering 400 as rules
 * say. A string with \u0000 is refused as well: cJSON ends a string at its
 * NUL, so "a\u0000b" would be taken as "a" (and a member name with one as
 * the name before it). Caller owns; free with cJSON_Delete. */
cJSON *api_json_object_body(http_request *req, const api_body_rules *rules);

#endif
