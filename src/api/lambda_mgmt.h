/*
 * lambda_mgmt.h - what the files of Lambda's management API share
 * (api/lambda_mgmt.c: functions, code, configuration, versions;
 * api/lambda_aliases.c: aliases; api/lambda_esm.c: event source mappings).
 * Only those include it.
 *
 * How Lambda's model maps onto spate's (docs/api.md "AWS Lambda API",
 * "Managing functions"):
 *
 *   - $LATEST is the function's active version. Every spate deploy and
 *     configuration change makes a numbered, immutable version and
 *     activates it, so CreateFunction, UpdateFunctionCode and
 *     UpdateFunctionConfiguration each make one (Lambda would make a number
 *     only with Publish); Publish only says that the answer names the
 *     number instead of $LATEST. PublishVersion names the active version's
 *     number (it is published already); with a Description that differs
 *     from the active one's it makes a configuration change first, so that
 *     the version it names carries that description.
 *   - ListVersionsByFunction lists $LATEST and every version; versions go
 *     only with their function (DeleteFunction with a Qualifier is refused).
 *   - An alias names a version number (not $LATEST) and at most one more
 *     with a weight in whole percents (spate's reg_alias); an alias keeps no
 *     description.
 *   - Every change goes through the code /v1 uses: functions_deploy,
 *     functions_reconfigure, api_function_delete, functions_alias_set and
 *     _remove, with spate's checks (an import error of a python3 or nodejs
 *     handler is a 400 with the reason); spate's errors map onto Lambda's
 *     types by their status (api_lambda_mgmt_fail).
 *
 * Event source mappings (api/lambda_esm.c): a mapping is a trigger (topic =
 * the queue's name from its ARN arn:aws:sqs:REGION:ACCOUNT:QUEUE, function =
 * FunctionName[:QUALIFIER]) in the SQS event format; its UUID is derived,
 * not stored: the first 16 bytes of SHA-256("esm\0" TOPIC "\0" FUNCTION)
 * formatted as a version-4-shaped UUID, so every node derives the same one
 * and nothing new is kept in the registry; Get/Update/Delete by UUID walk
 * the triggers (triggers_each) for the one whose derived UUID matches.
 * BatchSize -> batch_size, MaximumBatchingWindowInSeconds ->
 * batch_window_ms, FunctionResponseTypes [ReportBatchItemFailures] ->
 * report_failures, ScalingConfig.MaximumConcurrency -> max_concurrency,
 * Enabled=false -> paused (queue_sub_config.paused, durable), LastModified
 * <- modified_ms. The trigger shares the queue's "@receiver" (api/sqs.h),
 * so a message goes to either the mapping or a ReceiveMessage caller,
 * never both; the SQS event names each message by its MessageId
 * (common/lambda.h lambda_sqs_message_id).
 *
 * The routes: POST /2015-03-31/event-source-mappings/ (Create, 202 as
 * Lambda answers, State "Enabled" once the trigger is durable: spate makes
 * it synchronously, so no "Creating"), GET .../event-source-mappings/
 * (List: EventSourceArn and FunctionName filters, Marker = the UUID of the
 * page before's last item, in UUID order), GET/PUT/DELETE
 * .../event-source-mappings/UUID (Get; Update: what the body names, the
 * rest kept; Delete: 202 with State "Deleting", the trigger removed).
 * Which triggers are mappings: those in the SQS event format, on a queue
 * or on the topic of a queue since deleted (a mapping outlives its queue,
 * as in Lambda: found, LastProcessingResult "PROBLEM: ...", deletable);
 * raw triggers are spate's own and not listed. An
 * EventSourceArn that is no queue is InvalidParameterValueException; a
 * second mapping of the same queue and function is
 * ResourceConflictException (a trigger is unique by topic and function).
 * FunctionArn in the answers is qualified when the trigger invokes a
 * version or an alias. Routes R_LAMBDA_ESMS and R_LAMBDA_ESM, admin scope
 * for changes (api_aws_scope), the default body limit of 64 KiB.
 */
#ifndef SPATE_API_LAMBDA_MGMT_H
#define SPATE_API_LAMBDA_MGMT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "api/internal.h"
#include "api/lambda.h"

/* ListFunctions, ListVersionsByFunction and ListAliases: MaxItems' range
 * and default (Lambda's). */
#define LAMBDA_LIST_MAX 10000
#define LAMBDA_LIST_DEFAULT 50

/* api_error_fn in Lambda's shape: the type from the status (400
 * InvalidParameterValueException, 404 ResourceNotFoundException, 409
 * ResourceConflictException, 412 PreconditionFailedException, 413
 * RequestEntityTooLargeException, 429 TooManyRequestsException, 5xx
 * ServiceException). */
void api_lambda_mgmt_fail(http_request *req, int status, const char *code, const char *message);

/* The request's body as a JSON object ({} when empty), or NULL after
 * answering InvalidRequestContentException (not a JSON object) or
 * InvalidParameterValueException (a string holding \u0000). Caller owns. */
cJSON *api_lambda_body(http_request *req);

/* The function the path names (NAME or its ARN, no qualifier allowed when
 * qualifier is NULL; else the qualifier, "" when none, goes there, up to
 * LAMBDA_QUALIFIER_MAX + 1 bytes), registered; NULL after answering 400 or
 * 404. */
fn *api_lambda_function(api *a, http_request *req, const route_match *m, char *qualifier);

/* The query of a list: Marker, MaxItems, FunctionVersion. */
typedef struct lambda_list_query {
    char marker[256];
    uint32_t max;
    char function_version[LAMBDA_QUALIFIER_MAX + 1];
} lambda_list_query;
/* 0, or -1 after answering 400. */
int api_lambda_list_query(http_request *req, lambda_list_query *q);

/* A page of a list, built in the list's order: each item the query's
 * Marker lets through is offered; past MaxItems the answer gets
 * NextMarker, the key of the page's last item. */
typedef struct lambda_page {
    cJSON *items;
    uint32_t max, n;
    int more;
    char next[256];
} lambda_page;
/* 1 when the item of that key belongs on the page (then it is counted). */
int api_lambda_page_take(lambda_page *p, const char *key);
/* {"<list>": items, "NextMarker": ...}: takes p->items. */
void api_lambda_page_answer(http_request *req, lambda_page *p, const char *list);

/* "1-1795700000000": a revision that changes with every change. */
void api_lambda_revision(char *out, size_t cap, uint32_t version, int64_t ms);
/* Whether a RevisionId member of body (if any) is rev; else answers 412. */
int api_lambda_revision_ok(http_request *req, const cJSON *body, const char *rev);

/* arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]. */
void api_lambda_arn(char *out, size_t cap, const char *function, const char *qualifier);

/* api/lambda_aliases.c: CreateAlias, ListAliases (R_LAMBDA_ALIASES) and
 * GetAlias, UpdateAlias, DeleteAlias (R_LAMBDA_ALIAS). */
void api_lambda_aliases(api *a, http_request *req, const route_match *m);

#endif
