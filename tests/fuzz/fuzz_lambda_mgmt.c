/*
 * fuzz_lambda_mgmt - what the JSON bodies of Lambda's management API ask
 * for (api/lambda.h, api/lambda_body.c) against arbitrary bytes, as a
 * deploy tool may send them: the input is parsed as JSON (as
 * api/lambda_mgmt.c does) and read as a function's configuration over the
 * defaults, as the members spate refuses, and as an alias. What is taken
 * must be a configuration fnconfig_check passes with a description within
 * its limit, and an alias with a version and a weight from 1 to 99 only
 * together with a second version.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/lambda.h"
#include "common/fnconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *body = cJSON_ParseWithLength((const char *)data, size);
    if (!body) return 0;
    char why[400];

    why[0] = '\0';
    if (lambda_body_supported(body, why, sizeof why) != 0 && !why[0]) abort();

    fn_config c;
    fnconfig_defaults(&c);
    why[0] = '\0';
    if (lambda_body_config(body, &c, why, sizeof why) == 0) {
        char again[200];
        if (fnconfig_check(&c, again, sizeof again) != 0) abort();
        if (strlen(c.description) > FN_DESCRIPTION_MAX) abort();
        if (c.timeout_ms == 0 || c.timeout_ms > SPATE_TIMEOUT_CEILING_MS) abort();
    } else if (!why[0] || strnlen(why, sizeof why) == sizeof why) {
        abort();
    }
    fnconfig_free(&c);

    const char *rt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "Runtime"));
    if (rt) {
        int r = lambda_runtime_of(rt);
        if (r >= 0 && lambda_runtime_of(lambda_runtime_name((enum fn_runtime)r)) != r) abort();
    }

    reg_alias al = {.version = 1};
    why[0] = '\0';
    if (lambda_body_alias(body, &al, why, sizeof why) == 0) {
        if (al.version == 0) abort();
        if ((al.weight_version == 0) != (al.weight_percent == 0)) abort();
        if (al.weight_percent > 99) abort();
    } else if (!why[0]) {
        abort();
    }
    cJSON_Delete(body);
    return 0;
}
