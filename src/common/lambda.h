/* lambda.h - AWS Lambda's conventions that the layers above read, with
 * cJSON, which lives here for them (scripts/check-layers). */
#ifndef SPATE_LAMBDA_H
#define SPATE_LAMBDA_H

#include <stddef.h>

/* Reads a function's answer to a batch by Lambda's rules for
 * ReportBatchItemFailures: nothing, null, {} or {"batchItemFailures": null
 * or []} is success (0, on_id never called); on_id is called with each
 * itemIdentifier of the list, and returns nonzero for an id that is no
 * message of the batch. Anything else (not JSON, not an object, a list that
 * is not one, an entry without a non-empty string itemIdentifier, an id
 * on_id refuses) is ERR_INVAL with why: the whole batch failed. */
int lambda_batch_failures(const char *body, size_t len, int (*on_id)(const char *id, void *data),
                          void *data, char *why, size_t why_cap);

/* Whether s (len bytes) is one JSON object. */
int lambda_json_is_object(const char *s, size_t len);

#endif
