#include "common/lambda.h"

#include <cjson/cJSON.h>
#include <stdio.h>

#include "common/err.h"

static int only_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return 0;
    return 1;
}

static int each_id(const cJSON *list, int (*on_id)(const char *id, void *data), void *data,
                   char *why, size_t why_cap)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "itemIdentifier");
        if (!cJSON_IsObject(item) || !cJSON_IsString(id) || !id->valuestring[0]) {
            snprintf(why, why_cap,
                     "each batchItemFailures entry must be {\"itemIdentifier\": \"<messageId>\"}");
            return ERR_INVAL;
        }
        if (on_id(id->valuestring, data)) {
            snprintf(why, why_cap, "itemIdentifier '%.64s' is no message of the batch",
                     id->valuestring);
            return ERR_INVAL;
        }
    }
    return 0;
}

int lambda_batch_failures(const char *body, size_t len, int (*on_id)(const char *id, void *data),
                          void *data, char *why, size_t why_cap)
{
    if (!body || only_space(body, len)) return 0;
    cJSON *doc = cJSON_ParseWithLength(body, len);
    if (!doc) {
        snprintf(why, why_cap, "the answer is not JSON");
        return ERR_INVAL;
    }
    int rc = 0;
    if (cJSON_IsNull(doc)) {
        rc = 0;
    } else if (!cJSON_IsObject(doc)) {
        snprintf(why, why_cap, "the answer is not a JSON object with batchItemFailures");
        rc = ERR_INVAL;
    } else {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "batchItemFailures");
        if (list && !cJSON_IsNull(list) && !cJSON_IsArray(list)) {
            snprintf(why, why_cap, "batchItemFailures is not a list");
            rc = ERR_INVAL;
        } else if (cJSON_IsArray(list)) {
            rc = each_id(list, on_id, data, why, why_cap);
        }
    }
    cJSON_Delete(doc);
    return rc;
}

int lambda_json_is_object(const char *s, size_t len)
{
    cJSON *doc = cJSON_ParseWithLength(s, len);
    int ok = cJSON_IsObject(doc);
    cJSON_Delete(doc);
    return ok;
}
