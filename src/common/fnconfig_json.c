#include "common/fnconfig_json.h"

#include <stdio.h>
#include <string.h>

#include "common/limits.h"

/* Adds the "K=V" lines of text to obj: as "K": "V" with values, else as
 * "K": null (the name only), or, when obj is an array, as the names. */
static void add_vars(cJSON *obj, const char *text, int values)
{
    for (const char *p = text; p && *p;) {
        size_t len = strcspn(p, "\n");
        char line[SPATE_ENV_BYTES_MAX + 1];
        if (len < sizeof line) {
            memcpy(line, p, len);
            line[len] = '\0';
            char *eq = strchr(line, '=');
            if (eq) {
                *eq = '\0';
                if (cJSON_IsArray(obj))
                    cJSON_AddItemToArray(obj, cJSON_CreateString(line));
                else if (values)
                    cJSON_AddStringToObject(obj, line, eq + 1);
                else
                    cJSON_AddNullToObject(obj, line);
            }
        }
        p += len + (p[len] == '\n');
    }
}

cJSON *fnconfig_json(const fn_config *c, int env_values, int secret_values)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "runtime", fnconfig_runtime_name(c->runtime));
    cJSON_AddNumberToObject(o, "min", c->min_instances);
    cJSON_AddNumberToObject(o, "max", c->max_instances);
    cJSON_AddNumberToObject(o, "timeout_ms", c->timeout_ms);
    cJSON_AddNumberToObject(o, "memory_mb", c->memory_mb);
    cJSON_AddNumberToObject(o, "keep_alive_ms", c->keep_alive_ms);
    cJSON_AddNumberToObject(o, "queue", c->queue_max);
    cJSON_AddNumberToObject(o, "cpu_millis", c->cpu_millis);
    cJSON_AddBoolToObject(o, "network", c->network);
    cJSON_AddNumberToObject(o, "tmp_mb", c->tmp_mb);
    if (c->prewarm) cJSON_AddTrueToObject(o, "prewarm"); /* shown when set */
    if (c->on_success[0]) cJSON_AddStringToObject(o, "on_success", c->on_success);
    if (c->on_failure[0]) cJSON_AddStringToObject(o, "on_failure", c->on_failure);
    if (c->handler[0]) cJSON_AddStringToObject(o, "handler", c->handler);
    if (c->description[0]) cJSON_AddStringToObject(o, "description", c->description);
    /* Values only for who may see them (admin); names for the others. */
    add_vars(cJSON_AddObjectToObject(o, "env"), c->env, env_values);
    /* Secrets: the names, to anyone; their values only in the registry's copy. */
    if (secret_values)
        add_vars(cJSON_AddObjectToObject(o, "secrets"), c->secrets, 1);
    else
        add_vars(cJSON_AddArrayToObject(o, "secrets"), c->secrets, 0);
    return o;
}

uint32_t fnconfig_json_u32(const cJSON *o, const char *key, uint32_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 4e9
               ? (uint32_t)v->valuedouble
               : dflt;
}

int fnconfig_from_json(const cJSON *k, fn_config *cfg, char *why, size_t cap)
{
    fnconfig_defaults(cfg);
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(k, "runtime");
    if (cJSON_IsString(rt)) {
        int r = fnconfig_runtime_parse(rt->valuestring, strlen(rt->valuestring));
        if (r >= 0) cfg->runtime = (enum fn_runtime)r;
    }
    cfg->min_instances = fnconfig_json_u32(k, "min", cfg->min_instances);
    cfg->max_instances = fnconfig_json_u32(k, "max", cfg->max_instances);
    cfg->timeout_ms = fnconfig_json_u32(k, "timeout_ms", cfg->timeout_ms);
    cfg->memory_mb = fnconfig_json_u32(k, "memory_mb", cfg->memory_mb);
    cfg->keep_alive_ms = fnconfig_json_u32(k, "keep_alive_ms", cfg->keep_alive_ms);
    cfg->queue_max = fnconfig_json_u32(k, "queue", cfg->queue_max);
    cfg->cpu_millis = fnconfig_json_u32(k, "cpu_millis", cfg->cpu_millis);
    cfg->tmp_mb = fnconfig_json_u32(k, "tmp_mb", cfg->tmp_mb);
    cfg->network = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(k, "network"));
    cfg->prewarm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(k, "prewarm"));
    const cJSON *dest = cJSON_GetObjectItemCaseSensitive(k, "on_success");
    if (cJSON_IsString(dest))
        snprintf(cfg->on_success, sizeof cfg->on_success, "%s", dest->valuestring);
    dest = cJSON_GetObjectItemCaseSensitive(k, "on_failure");
    if (cJSON_IsString(dest))
        snprintf(cfg->on_failure, sizeof cfg->on_failure, "%s", dest->valuestring);
    int rc = 0;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(k, "handler");
    if (cJSON_IsString(h))
        rc = fnconfig_set_handler(cfg, h->valuestring, strlen(h->valuestring), why, cap);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(k, "description");
    if (rc == 0 && cJSON_IsString(d))
        rc = fnconfig_set_description(cfg, d->valuestring, strlen(d->valuestring), why, cap);
    const cJSON *var;
    cJSON_ArrayForEach(var, cJSON_GetObjectItemCaseSensitive(k, "env"))
    {
        char kv[SPATE_ENV_BYTES_MAX + 2];
        int n = snprintf(kv, sizeof kv, "%s=%s", var->string,
                         cJSON_IsString(var) ? var->valuestring : "");
        if (rc == 0)
            rc = fnconfig_add_env(cfg, kv, n < (int)sizeof kv ? (size_t)n : sizeof kv, why, cap);
    }
    cJSON_ArrayForEach(var, cJSON_GetObjectItemCaseSensitive(k, "secrets"))
    {
        char kv[SPATE_ENV_BYTES_MAX + 2];
        int n = snprintf(kv, sizeof kv, "%s=%s", var->string ? var->string : "",
                         cJSON_IsString(var) ? var->valuestring : "");
        if (rc == 0)
            rc = fnconfig_add_secret(cfg, kv, n < (int)sizeof kv ? (size_t)n : sizeof kv, why, cap);
    }
    if (rc == 0) rc = fnconfig_check(cfg, why, cap);
    if (rc != 0) fnconfig_free(cfg);
    return rc ? -1 : 0;
}
