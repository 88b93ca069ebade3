/*
 * aliases.c - a function's aliases (GET /v1/functions/NAME/aliases, and
 * PUT, GET, DELETE /v1/functions/NAME/aliases/ALIAS) and its rollback
 * (POST /v1/functions/NAME/rollback). What they mean: sched/functions.h.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "api/json.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/names.h"

/* A whole number min..max in member key of doc (absent: *out stays). 0,
 * or it answered 400 and returns -1. */
static int number_member(http_request *req, const cJSON *doc, const char *key, uint32_t min,
                         uint32_t max, uint32_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    if (!v || cJSON_IsNull(v)) return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (d < min || d > max || floor(d) != d) {
        http_respond_error(req, 400, "bad_alias", "'%s' must be a whole number from %u to %u", key,
                           min, max);
        return -1;
    }
    *out = (uint32_t)d;
    return 0;
}

/* The members of these bodies are numbers, but a name can hold a NUL too:
 * cJSON would read "version\u0000x" as "version". */
#define NUL_IN_MEMBER "a string of the body holds a NUL (\\u0000), which no member name may"

static void put_alias(api *a, http_request *req, fn *f, const char *name)
{
    static const api_body_rules rules = {
        "bad_json",
        "the body must be a JSON object: {\"version\": N, \"weight_version\": M, "
        "\"weight_percent\": P}",
        "bad_alias",
        NUL_IN_MEMBER,
    };
    cJSON *doc = api_json_object_body(req, &rules);
    if (!doc) return;
    reg_alias al = {0};
    snprintf(al.name, sizeof al.name, "%s", name);
    int bad = number_member(req, doc, "version", 1, UINT32_MAX, &al.version) ||
              number_member(req, doc, "weight_version", 0, UINT32_MAX, &al.weight_version) ||
              number_member(req, doc, "weight_percent", 0, 100, &al.weight_percent);
    cJSON_Delete(doc);
    if (bad) return;
    if (!al.version) {
        http_respond_error(req, 400, "bad_alias", "'version' is required: the version it names");
        return;
    }
    if (al.weight_percent && !al.weight_version) {
        http_respond_error(req, 400, "bad_alias",
                           "'weight_percent' needs 'weight_version': the version it sends to");
        return;
    }
    int existed = functions_alias_find(f, name, strlen(name)) != NULL;
    char why[200] = "";
    int rc = functions_alias_set(a->table, f, &al, why, sizeof why);
    if (rc == ERR_INVAL || rc == ERR_TOOBIG) {
        http_respond_error(req, rc == ERR_INVAL ? 400 : 409, "bad_alias", "%s", why);
        return;
    }
    if (rc == ERR_NOTSUP) {
        http_respond_error(req, 501, "not_supported", "this registry keeps no aliases");
        return;
    }
    if (rc) {
        http_respond_error(req, 500, "store_error", "cannot record the alias: %s", err_str(rc));
        return;
    }
    const reg_alias *now = functions_alias_find(f, name, strlen(name));
    api_respond_durable(a, req, existed ? 200 : 201, now ? api_json_alias(now) : NULL);
}

static void list_aliases(http_request *req, const fn *f)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "aliases");
    for (size_t i = 0; i < f->naliases; i++)
        cJSON_AddItemToArray(arr, api_json_alias(&f->aliases[i]));
    api_respond_json(req, 200, doc);
}

static void alias(api *a, http_request *req, fn *f, const route_match *m)
{
    char name[SPATE_ALIAS_MAX + 1];
    if (!name_is_alias(m->name2, m->name2_len)) {
        http_respond_error(req, 400, "bad_name", "invalid alias name '%.*s': " NAME_ALIAS_RULE,
                           (int)(m->name2_len > 80 ? 80 : m->name2_len), m->name2, SPATE_ALIAS_MAX);
        return;
    }
    snprintf(name, sizeof name, "%.*s", (int)m->name2_len, m->name2);
    if (req->method == HTTP_PUT) return put_alias(a, req, f, name);
    const reg_alias *al = functions_alias_find(f, name, m->name2_len);
    if (req->method == HTTP_GET || req->method == HTTP_HEAD) {
        if (!al)
            http_respond_error(req, 404, "not_found", "function '%s' has no alias '%s'", f->name,
                               name);
        else
            api_respond_json(req, 200, api_json_alias(al));
        return;
    }
    if (req->method != HTTP_DELETE) return api_method_not_allowed(req, "GET, HEAD, PUT, DELETE");
    int rc = functions_alias_remove(a->table, f, name);
    if (rc == ERR_NOTFOUND)
        http_respond_error(req, 404, "not_found", "function '%s' has no alias '%s'", f->name, name);
    else if (rc == ERR_NOTSUP)
        http_respond_error(req, 501, "not_supported", "this registry keeps no aliases");
    else if (rc)
        http_respond_error(req, 500, "store_error", "cannot remove the alias: %s", err_str(rc));
    else
        api_respond_durable(a, req, 204, NULL);
}

static void on_rolled_back(const deploy_result *r, void *data)
{
    http_request *req = data;
    if (r->status >= 400) {
        http_respond_error(req, r->status, r->code, "%s", r->message);
        return;
    }
    api_respond_json(req, 200, api_json_function(r->f, NULL, 0, NULL, 1)); /* an admin's */
}

/* POST /v1/functions/NAME/rollback, body {"version": N} or none (the one
 * before the active version). */
static void rollback(api *a, http_request *req, const fn *f)
{
    if (req->method != HTTP_POST) return api_method_not_allowed(req, "POST");
    uint32_t version = 0;
    if (req->body.len) {
        static const api_body_rules rules = {
            "bad_json",
            "the body must be empty or a JSON object: {\"version\": N}",
            "bad_alias",
            NUL_IN_MEMBER,
        };
        cJSON *doc = api_json_object_body(req, &rules);
        if (!doc) return;
        int bad = number_member(req, doc, "version", 1, UINT32_MAX, &version);
        cJSON_Delete(doc);
        if (bad) return;
    }
    functions_rollback(a->table, f->name, version, on_rolled_back, req);
}

void api_aliases(api *a, http_request *req, const route_match *m)
{
    fn *f = functions_find(a->table, m->name, m->name_len);
    if (!f) {
        http_respond_error(req, 404, "not_found", "function '%.*s' does not exist",
                           (int)m->name_len, m->name);
        return;
    }
    if (m->route == R_ROLLBACK) return rollback(a, req, f);
    if (m->route == R_ALIAS) return alias(a, req, f, m);
    if (req->method != HTTP_GET && req->method != HTTP_HEAD)
        return api_method_not_allowed(req, "GET, HEAD");
    list_aliases(req, f);
}
