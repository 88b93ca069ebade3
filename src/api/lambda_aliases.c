/*
 * lambda_aliases.c - Lambda's alias API over spate's aliases
 * (functions_alias_set, _remove, _find: sched/functions.h): CreateAlias,
 * GetAlias, UpdateAlias, DeleteAlias, ListAliases. An alias names a
 * version number and may send a whole percentage of its invocations to one
 * more version: RoutingConfig.AdditionalVersionWeights {"2": 0.1} is
 * weight_version 2, weight_percent 10. What spate's aliases cannot hold is
 * refused, not dropped: $LATEST as FunctionVersion, a weight that is no
 * whole percent, more than one additional version, a Description.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/lambda_mgmt.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/names.h"

/* AliasConfiguration. Caller owns. */
static cJSON *alias_json(const reg_alias *al)
{
    char arn[300], ver[16], rev[48];
    api_lambda_arn(arn, sizeof arn, al->function, al->name);
    snprintf(ver, sizeof ver, "%" PRIu32, al->version);
    api_lambda_revision(rev, sizeof rev, al->version, al->updated_ms);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "AliasArn", arn);
    cJSON_AddStringToObject(o, "Name", al->name);
    cJSON_AddStringToObject(o, "FunctionVersion", ver);
    cJSON_AddStringToObject(o, "Description", "");
    if (al->weight_version) {
        char w[16];
        snprintf(w, sizeof w, "%" PRIu32, al->weight_version);
        cJSON *weights = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "RoutingConfig"),
                                                 "AdditionalVersionWeights");
        cJSON_AddNumberToObject(weights, w, al->weight_percent / 100.0);
    }
    cJSON_AddStringToObject(o, "RevisionId", rev);
    return o;
}

/* Records al (created: 201, else 200) and answers it once durable. */
static void set_alias(api *a, http_request *req, fn *f, const reg_alias *al, int status)
{
    char why[200] = "";
    int rc = functions_alias_set(a->table, f, al, why, sizeof why);
    if (rc == ERR_INVAL)
        return api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
    if (rc == ERR_TOOBIG) return api_lambda_error(req, 429, "TooManyRequestsException", "%s", why);
    if (rc)
        return api_lambda_error(req, 500, "ServiceException", "cannot record the alias: %s",
                                err_str(rc));
    const reg_alias *now = functions_alias_find(f, al->name, strlen(al->name));
    api_respond_durable_as(a, req, status, now ? alias_json(now) : NULL, api_lambda_mgmt_fail);
}

static void create_alias(api *a, http_request *req, fn *f, const cJSON *body)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "Name"));
    reg_alias al = {0};
    char why[300];
    if (!name || !name_is_alias(name, strlen(name)))
        return api_lambda_error(req, 400, "InvalidParameterValueException",
                                "Name must be an alias name: " NAME_ALIAS_RULE, SPATE_ALIAS_MAX);
    if (functions_alias_find(f, name, strlen(name))) {
        char arn[300];
        api_lambda_arn(arn, sizeof arn, f->name, name);
        return api_lambda_error(req, 409, "ResourceConflictException", "Alias already exists: %s",
                                arn);
    }
    if (!cJSON_GetObjectItemCaseSensitive(body, "FunctionVersion"))
        return api_lambda_error(req, 400, "InvalidParameterValueException",
                                "FunctionVersion is required");
    snprintf(al.function, sizeof al.function, "%s", f->name);
    snprintf(al.name, sizeof al.name, "%s", name);
    if (lambda_body_alias(body, &al, why, sizeof why) != 0)
        return api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
    set_alias(a, req, f, &al, 201);
}

static void list_aliases(http_request *req, const fn *f)
{
    lambda_list_query q;
    if (api_lambda_list_query(req, &q)) return;
    uint32_t only = 0;
    if (q.function_version[0] && lambda_version_number(q.function_version, &only) != 0)
        return api_lambda_error(req, 400, "InvalidParameterValueException",
                                "FunctionVersion must be a version number");
    lambda_page p = {cJSON_CreateArray(), q.max, 0, 0, ""};
    for (size_t i = 0; i < f->naliases; i++) { /* by name */
        const reg_alias *al = &f->aliases[i];
        if (only && al->version != only && al->weight_version != only) continue;
        if (q.marker[0] && strcmp(al->name, q.marker) <= 0) continue;
        if (api_lambda_page_take(&p, al->name)) cJSON_AddItemToArray(p.items, alias_json(al));
    }
    api_lambda_page_answer(req, &p, "Aliases");
}

/* GetAlias, UpdateAlias, DeleteAlias. */
static void one_alias(api *a, http_request *req, fn *f, const route_match *m, const cJSON *body)
{
    char name[SPATE_ALIAS_MAX + 1];
    if (!name_is_alias(m->name2, m->name2_len))
        return api_lambda_error(req, 400, "InvalidParameterValueException",
                                "invalid alias name '%.*s': " NAME_ALIAS_RULE,
                                (int)(m->name2_len > 80 ? 80 : m->name2_len), m->name2,
                                SPATE_ALIAS_MAX);
    snprintf(name, sizeof name, "%.*s", (int)m->name2_len, m->name2);
    const reg_alias *al = functions_alias_find(f, name, m->name2_len);
    if (!al) {
        char arn[300];
        api_lambda_arn(arn, sizeof arn, f->name, name);
        return api_lambda_error(req, 404, "ResourceNotFoundException", "Alias not found: %s", arn);
    }
    if (req->method == HTTP_GET || req->method == HTTP_HEAD)
        return api_respond_json(req, 200, alias_json(al));
    if (req->method == HTTP_DELETE) {
        int rc = functions_alias_remove(a->table, f, name);
        if (rc)
            return api_lambda_error(req, 500, "ServiceException", "cannot remove the alias: %s",
                                    err_str(rc));
        return api_respond_durable_as(a, req, 204, NULL, api_lambda_mgmt_fail);
    }
    /* PUT: UpdateAlias, from the alias as it is. */
    reg_alias next = *al;
    char rev[48], why[300];
    api_lambda_revision(rev, sizeof rev, al->version, al->updated_ms);
    if (!api_lambda_revision_ok(req, body, rev)) return;
    if (lambda_body_alias(body, &next, why, sizeof why) != 0)
        return api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
    set_alias(a, req, f, &next, 200);
}

void api_lambda_aliases(api *a, http_request *req, const route_match *m)
{
    enum http_method meth = req->method;
    int get = meth == HTTP_GET || meth == HTTP_HEAD;
    int ok = m->route == R_LAMBDA_ALIASES ? get || meth == HTTP_POST
                                          : get || meth == HTTP_PUT || meth == HTTP_DELETE;
    if (!ok)
        return api_lambda_error(req, 405, "MethodNotAllowedException",
                                "method %s is not allowed here", http_method_str(meth));
    fn *f = api_lambda_function(a, req, m, NULL);
    if (!f) return;
    cJSON *body = api_lambda_body(req);
    if (!body) return;
    if (m->route == R_LAMBDA_ALIAS)
        one_alias(a, req, f, m, body);
    else if (get)
        list_aliases(req, f);
    else
        create_alias(a, req, f, body);
    cJSON_Delete(body);
}
