/*
 * lambda_body.c - what the JSON bodies of Lambda's management API ask for
 * (api/lambda.h): a function's configuration (CreateFunction,
 * UpdateFunctionConfiguration), the members spate refuses, an alias's
 * versions and weights. Pure functions of the parsed body
 * (tests/fuzz/fuzz_lambda_mgmt.c drives them); answering is
 * api/lambda_mgmt.c's and api/lambda_aliases.c's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/lambda.h"
#include "common/err.h"
#include "common/limits.h"

/* What runs a runtime name of Lambda's: python3.N, nodejs18.x and later,
 * the provided ones (a bootstrap: exec); -1 for another. */
int lambda_runtime_of(const char *name)
{
    static const char *const exec[] = {"provided", "provided.al2", "provided.al2023"};
    static const char *const node[] = {"nodejs18.x", "nodejs20.x", "nodejs22.x"};
    for (size_t i = 0; i < sizeof exec / sizeof *exec; i++)
        if (strcmp(name, exec[i]) == 0) return RUNTIME_EXEC;
    for (size_t i = 0; i < sizeof node / sizeof *node; i++)
        if (strcmp(name, node[i]) == 0) return RUNTIME_NODEJS;
    if (strncmp(name, "python3.", 8) == 0 && name[8] &&
        strspn(name + 8, "0123456789") == strlen(name + 8))
        return RUNTIME_PYTHON3;
    return -1;
}

/* The name shown for a runtime: one of the family's (spate keeps the
 * family, and runs the node's python3 or node, whatever was asked for). */
const char *lambda_runtime_name(enum fn_runtime rt)
{
    switch (rt) {
    case RUNTIME_PYTHON3:
        return "python3.11";
    case RUNTIME_NODEJS:
        return "nodejs18.x";
    case RUNTIME_EXEC:
        return "provided.al2023";
    default:
        return "spate.native";
    }
}

/* Members spate cannot honour: refused when they ask for something (not
 * null, an empty list or an empty object), rather than acknowledged and
 * dropped. Tags, TracingConfig, LoggingConfig, KMSKeyArn are accepted and
 * ignored (said in docs/api.md): they change nothing about how code runs. */
int lambda_body_supported(const cJSON *body, char *why, size_t cap)
{
    static const char *const members[] = {
        "Layers",           "FileSystemConfigs", "ImageConfig",         "VpcConfig",
        "DeadLetterConfig", "SnapStart",         "CodeSigningConfigArn"};
    for (size_t i = 0; i < sizeof members / sizeof *members; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, members[i]);
        if (!v || cJSON_IsNull(v) || ((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child) ||
            (cJSON_IsString(v) && !v->valuestring[0]))
            continue;
        /* An empty VPC (no subnets, as some tools send) asks for nothing. */
        if (strcmp(members[i], "VpcConfig") == 0 &&
            !cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(v, "SubnetIds")))
            continue;
        snprintf(why, cap, "%s is not supported by spate", members[i]);
        return -1;
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(body, "PackageType");
    if (pt && !(cJSON_IsString(pt) && strcmp(pt->valuestring, "Zip") == 0)) {
        snprintf(why, cap, "PackageType must be Zip: spate runs no container images");
        return -1;
    }
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(body, "Architectures");
    const cJSON *one;
    cJSON_ArrayForEach(one, arch)
    {
        if (!cJSON_IsString(one) || strcmp(one->valuestring, LAMBDA_ARCHITECTURE) != 0) {
            snprintf(why, cap, "Architectures must be [\"%s\"]: the node's", LAMBDA_ARCHITECTURE);
            return -1;
        }
    }
    return 0;
}

/* A whole number member key of o from min to max into *out (absent or
 * null: *out stays); scale multiplies it (seconds to ms). 0, or -1 with
 * why. */
static int number_member(const cJSON *o, const char *key, uint32_t min, uint32_t max,
                         uint32_t scale, uint32_t *out, char *why, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (d < min || d > max || floor(d) != d) {
        snprintf(why, cap, "%s must be a whole number from %u to %u", key, min, max);
        return -1;
    }
    *out = (uint32_t)d * scale;
    return 0;
}

/* A string member (absent or null: NULL; not a string: -1 via *bad). */
static const char *string_member(const cJSON *o, const char *key, int *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsString(v)) *bad = 1;
    return cJSON_GetStringValue(v);
}

/* Environment.Variables replaces the plain variables (Lambda replaces the
 * whole map); spate's secrets stay, but for a name the map sets. */
static int set_environment(fn_config *c, const cJSON *env, char *why, size_t cap)
{
    if (!env || cJSON_IsNull(env)) return 0;
    const cJSON *vars = cJSON_GetObjectItemCaseSensitive(env, "Variables");
    if (!cJSON_IsObject(env) || (vars && !cJSON_IsNull(vars) && !cJSON_IsObject(vars))) {
        snprintf(why, cap, "Environment must be {\"Variables\": {\"KEY\": \"value\"}}");
        return -1;
    }
    free(c->env);
    c->env = NULL;
    c->env_count = 0;
    const cJSON *var;
    cJSON_ArrayForEach(var, vars)
    {
        if (!cJSON_IsString(var)) {
            snprintf(why, cap, "the value of environment variable '%.64s' must be a string",
                     var->string);
            return -1;
        }
        size_t klen = strlen(var->string), vlen = strlen(var->valuestring);
        if (klen + vlen + 1 > SPATE_ENV_BYTES_MAX) {
            snprintf(why, cap, "the environment is over %u bytes", (unsigned)SPATE_ENV_BYTES_MAX);
            return -1;
        }
        char kv[SPATE_ENV_BYTES_MAX + 1];
        int n = snprintf(kv, sizeof kv, "%s=%s", var->string, var->valuestring);
        if (fnconfig_add_env(c, kv, (size_t)n, why, cap) != 0) return -1;
    }
    return 0;
}

/* Applies what a CreateFunction or UpdateFunctionConfiguration body sets
 * to c (the defaults, or the active configuration). Runtime is mapped
 * (python3.x, nodejs18.x+, provided*); Handler is the managed runtimes'
 * (a provided runtime's bootstrap reads none from spate: ignored there);
 * Role is ignored. 0, or -1 with why. */
int lambda_body_config(const cJSON *body, fn_config *c, char *why, size_t cap)
{
    int bad = 0;
    const char *runtime = string_member(body, "Runtime", &bad);
    const char *handler = string_member(body, "Handler", &bad);
    const char *desc = string_member(body, "Description", &bad);
    string_member(body, "Role", &bad);
    if (bad) {
        snprintf(why, cap, "Runtime, Handler, Description and Role must be strings");
        return -1;
    }
    if (runtime) {
        int rt = lambda_runtime_of(runtime);
        if (rt < 0) {
            snprintf(why, cap,
                     "unsupported runtime '%.40s': spate runs python3.x, nodejs18.x, nodejs20.x, "
                     "nodejs22.x, provided, provided.al2 and provided.al2023",
                     runtime);
            return -1;
        }
        if ((enum fn_runtime)rt != c->runtime) c->handler[0] = '\0';
        c->runtime = (enum fn_runtime)rt;
    }
    if (handler && fnconfig_runtime_is_managed(c->runtime) &&
        fnconfig_set_handler(c, handler, strlen(handler), why, cap) != 0)
        return -1;
    if (desc && fnconfig_set_description(c, desc, strlen(desc), why, cap) != 0) return -1;
    if (number_member(body, "Timeout", 1, SPATE_TIMEOUT_CEILING_MS / 1000, 1000, &c->timeout_ms,
                      why, cap) ||
        number_member(body, "MemorySize", SPATE_MEMORY_FLOOR_MB, SPATE_MEMORY_CEILING_MB, 1,
                      &c->memory_mb, why, cap) ||
        number_member(cJSON_GetObjectItemCaseSensitive(body, "EphemeralStorage"), "Size",
                      SPATE_TMP_FLOOR_MB, SPATE_TMP_CEILING_MB, 1, &c->tmp_mb, why, cap))
        return -1;
    if (set_environment(c, cJSON_GetObjectItemCaseSensitive(body, "Environment"), why, cap))
        return -1;
    return fnconfig_check(c, why, cap) ? -1 : 0;
}

/* A version number of Lambda's (a string of digits, not 0). */
int lambda_version_number(const char *s, uint32_t *out)
{
    char *end;
    if (!s || !*s || *s == '0' || strspn(s, "0123456789") != strlen(s)) return -1;
    unsigned long long n = strtoull(s, &end, 10);
    if (n > UINT32_MAX) return -1;
    *out = (uint32_t)n;
    return 0;
}

/* What a CreateAlias or UpdateAlias body sets on al (FunctionVersion,
 * RoutingConfig; an absent member leaves al's). 0, or -1 with why. */
int lambda_body_alias(const cJSON *body, reg_alias *al, char *why, size_t cap)
{
    const cJSON *fv = cJSON_GetObjectItemCaseSensitive(body, "FunctionVersion");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(body, "Description");
    if (desc && !cJSON_IsNull(desc) && !(cJSON_IsString(desc) && !desc->valuestring[0])) {
        snprintf(why, cap, "spate keeps no description of an alias: leave Description out");
        return -1;
    }
    if (fv && !cJSON_IsNull(fv)) {
        const char *s = cJSON_GetStringValue(fv);
        if (s && strcmp(s, "$LATEST") == 0) {
            snprintf(why, cap,
                     "an alias of spate names a version number, not $LATEST (PublishVersion "
                     "gives the number of $LATEST)");
            return -1;
        }
        if (lambda_version_number(s, &al->version) != 0) {
            snprintf(why, cap, "FunctionVersion must be a version number");
            return -1;
        }
    }
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(body, "RoutingConfig");
    if (!rc || cJSON_IsNull(rc)) return 0;
    const cJSON *weights = cJSON_GetObjectItemCaseSensitive(rc, "AdditionalVersionWeights");
    if (!cJSON_IsObject(rc) || (weights && !cJSON_IsNull(weights) && !cJSON_IsObject(weights))) {
        snprintf(why, cap, "RoutingConfig must be {\"AdditionalVersionWeights\": {\"N\": W}}");
        return -1;
    }
    al->weight_version = al->weight_percent = 0;
    int n = cJSON_GetArraySize(weights);
    if (n == 0) return 0;
    const cJSON *w = weights->child;
    double pct = cJSON_IsNumber(w) ? w->valuedouble * 100 : -1;
    if (n > 1) {
        snprintf(why, cap, "an alias routes to at most one additional version");
        return -1;
    }
    if (lambda_version_number(w->string, &al->weight_version) != 0) {
        snprintf(why, cap, "the keys of AdditionalVersionWeights must be version numbers");
        return -1;
    }
    if (!(pct >= 1 && pct <= 99) || fabs(pct - round(pct)) > 1e-6) {
        snprintf(why, cap,
                 "the weight of version %s must be 0.01 to 0.99 in whole percents (spate routes "
                 "by the percent)",
                 w->string);
        return -1;
    }
    al->weight_percent = (uint32_t)round(pct);
    return 0;
}
