/* registry_json.c - a trigger's configuration as JSON (registry.h): what the
 * API shows and what a cluster registry keeps. */
#include <stdio.h>
#include <string.h>

#include "common/fnconfig_json.h"
#include "store/registry.h"

cJSON *registry_trigger_json(const char *topic, const queue_sub_config *cfg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "topic", topic);
    cJSON_AddStringToObject(o, "function", cfg->function);
    if (cfg->qualifier[0]) cJSON_AddStringToObject(o, "qualifier", cfg->qualifier);
    cJSON_AddNumberToObject(o, "max_attempts", cfg->max_attempts);
    cJSON_AddStringToObject(o, "dlq", cfg->dlq);
    cJSON_AddBoolToObject(o, "ordered", cfg->ordered);
    cJSON_AddNumberToObject(o, "deadline_ms", cfg->deadline_ms);
    cJSON_AddNumberToObject(o, "max_concurrency", cfg->max_concurrency);
    cJSON_AddNumberToObject(o, "batch_size", cfg->batch_size ? cfg->batch_size : 1);
    cJSON_AddNumberToObject(o, "batch_window_ms", cfg->batch_window_ms);
    cJSON_AddStringToObject(o, "event_format",
                            cfg->event_format == QUEUE_EVENT_SQS ? "sqs" : "raw");
    cJSON_AddBoolToObject(o, "report_batch_item_failures", cfg->report_failures);
    cJSON_AddBoolToObject(o, "paused", cfg->paused);
    if (cfg->modified_ms) cJSON_AddNumberToObject(o, "modified_ms", (double)cfg->modified_ms);
    return o;
}

void registry_trigger_from_json(const cJSON *o, const char *topic, const char *function,
                                queue_sub_config *cfg)
{
    *cfg = (queue_sub_config){0};
    snprintf(cfg->function, sizeof cfg->function, "%s", function);
    const cJSON *dlq = cJSON_GetObjectItemCaseSensitive(o, "dlq");
    snprintf(cfg->dlq, sizeof cfg->dlq, "%s", cJSON_IsString(dlq) ? dlq->valuestring : "");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "qualifier");
    if (cJSON_IsString(q) && strlen(q->valuestring) < sizeof cfg->qualifier)
        memcpy(cfg->qualifier, q->valuestring, strlen(q->valuestring) + 1);
    cfg->max_attempts = fnconfig_json_u32(o, "max_attempts", 3);
    cfg->deadline_ms = fnconfig_json_u32(o, "deadline_ms", 0);
    cfg->max_concurrency = fnconfig_json_u32(o, "max_concurrency", 0);
    cfg->ordered = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ordered"));
    cfg->batch_size = fnconfig_json_u32(o, "batch_size", 1);
    cfg->batch_window_ms = fnconfig_json_u32(o, "batch_window_ms", 0);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "event_format");
    cfg->event_format = cJSON_IsString(fmt) && strcmp(fmt->valuestring, "sqs") == 0
                            ? QUEUE_EVENT_SQS
                            : QUEUE_EVENT_RAW;
    cfg->report_failures =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "report_batch_item_failures"));
    cfg->paused = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "paused"));
    const cJSON *mod = cJSON_GetObjectItemCaseSensitive(o, "modified_ms");
    if (cJSON_IsNumber(mod) && mod->valuedouble > 0 && mod->valuedouble < 9e15)
        cfg->modified_ms = (int64_t)mod->valuedouble;
    /* Absent: the default. Present and empty: none (an SQS queue's receiver
     * without a RedrivePolicy; a trigger always names one). */
    if (!cJSON_IsString(dlq))
        snprintf(cfg->dlq, sizeof cfg->dlq, "%.*s.dlq", SPATE_TOPIC_NAME_MAX - 4, topic);
}
