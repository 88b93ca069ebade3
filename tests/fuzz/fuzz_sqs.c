/*
 * fuzz_sqs - SQS's query protocol codec (api/sqs.h) against arbitrary bytes,
 * as a client may post them: the form is read into the JSON protocol's
 * input object; what reads must be an object whose batch entries stay
 * within SQS's bounds, and it must render as XML (the answer writer walks
 * the same shapes) with an error's XML beside it. A refusal says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/sqs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *in = NULL;
    /* Initialised: on success the reader sets neither, and the error
     * rendered below reads why (strlen ran past an uninitialised buffer). */
    char action[40] = "", why[200] = "";
    int e = sqs_query_read((const char *)data, size, &in, action, sizeof action, why, sizeof why);
    if (e >= 0) {
        if (in || !why[0] || strnlen(why, sizeof why) == sizeof why) abort();
        return 0;
    }
    if (!cJSON_IsObject(in) || strnlen(action, sizeof action) == sizeof action) abort();
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(in, "Entries");
    if (entries && cJSON_GetArraySize(entries) > 20) abort();
    size_t len = 0;
    char *xml = sqs_query_render(action[0] ? action : "Fuzz", in, "req", &len);
    if (!xml || strlen(xml) != len) abort();
    free(xml);
    char *err = sqs_query_error(action, 1, why, "req", &len);
    if (!err || strlen(err) != len) abort();
    free(err);
    char act2[40];
    sqs_query_action((const char *)data, size, act2);
    if (strcmp(act2, action) != 0 && act2[0]) abort();
    cJSON_Delete(in);
    return 0;
}
