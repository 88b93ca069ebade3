/*
 * lambda_mgmt.c - Lambda's management API (2015-03-31, rest-json) on
 * spated's port: CreateFunction, GetFunction, GetFunctionConfiguration,
 * ListFunctions, UpdateFunctionCode, UpdateFunctionConfiguration,
 * DeleteFunction, PublishVersion, ListVersionsByFunction; aliases are
 * api/lambda_aliases.c's. How Lambda's model maps onto spate's versions:
 * api/lambda_mgmt.h. Every change goes through the code the native API
 * uses (functions_deploy, functions_reconfigure, api_function_delete), so
 * the checks and the durability are the same; only the shapes differ.
 *
 * Limits: a body of CreateFunction or UpdateFunctionCode is at most the
 * artifact limit (--artifact-max, 64 MiB) in base64 plus 64 KiB for the
 * rest; the decoded zip over the artifact limit is
 * RequestEntityTooLargeException. Other bodies: 64 KiB.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/artifact.h"
#include "api/lambda_mgmt.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/limits.h"

/* What Lambda's Role would be; spate runs functions as its own users. */
#define ROLE "arn:aws:iam::" LAMBDA_ACCOUNT ":role/spate"

/* --- Errors, bodies, names ------------------------------------------------------------- */

void api_lambda_mgmt_fail(http_request *req, int status, const char *code, const char *message)
{
    (void)code;
    const char *type = status == 404   ? "ResourceNotFoundException"
                       : status == 409 ? "ResourceConflictException"
                       : status == 412 ? "PreconditionFailedException"
                       : status == 413 ? "RequestEntityTooLargeException"
                       : status == 429 ? "TooManyRequestsException"
                       : status >= 500 ? "ServiceException"
                                       : "InvalidParameterValueException";
    api_lambda_error(req, status, type, "%s", message);
}

size_t api_lambda_code_body_max(const api *a)
{
    return HASH_BASE64_LEN(a->limits.artifact_max) + SPATE_HTTP_SMALL_BODY_MAX;
}

cJSON *api_lambda_body(http_request *req)
{
    if (req->body.len == 0) return cJSON_CreateObject();
    cJSON *doc = cJSON_ParseWithLength(req->body.data, req->body.len);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        api_lambda_error(req, 400, "InvalidRequestContentException",
                         "Could not parse request body into json: the body is not a JSON object");
        return NULL;
    }
    if (api_json_has_nul(req->body.data, req->body.len)) {
        cJSON_Delete(doc);
        api_lambda_error(req, 400, "InvalidParameterValueException",
                         "a string of the body holds a NUL (\\u0000)");
        return NULL;
    }
    return doc;
}

void api_lambda_arn(char *out, size_t cap, const char *function, const char *qualifier)
{
    snprintf(out, cap, "arn:aws:lambda:%s:%s:function:%s%s%s", LAMBDA_REGION, LAMBDA_ACCOUNT,
             function, qualifier && qualifier[0] ? ":" : "", qualifier ? qualifier : "");
}

static void not_found(http_request *req, const char *function, const char *qualifier)
{
    char arn[300];
    api_lambda_arn(arn, sizeof arn, function, qualifier);
    api_lambda_error(req, 404, "ResourceNotFoundException", "Function not found: %s", arn);
}

fn *api_lambda_function(api *a, http_request *req, const route_match *m, char *qualifier)
{
    lambda_target t;
    char why[300];
    if (lambda_parse_target(m->name, m->name_len, req->query, &t, why, sizeof why) != 0) {
        api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
        return NULL;
    }
    if (!qualifier && t.qualifier[0]) {
        api_lambda_error(req, 400, "InvalidParameterValueException",
                         "this operation takes a function's name or ARN without a qualifier");
        return NULL;
    }
    if (qualifier) memcpy(qualifier, t.qualifier, sizeof t.qualifier);
    fn *f = functions_find(a->table, t.function, strlen(t.function));
    if (!f || !f->registered) {
        not_found(req, t.function, "");
        return NULL;
    }
    return f;
}

void api_lambda_revision(char *out, size_t cap, uint32_t version, int64_t ms)
{
    snprintf(out, cap, "%" PRIu32 "-%" PRId64, version, ms);
}

int api_lambda_revision_ok(http_request *req, const cJSON *body, const char *rev)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(body, "RevisionId");
    if (!r || cJSON_IsNull(r) || (cJSON_IsString(r) && strcmp(r->valuestring, rev) == 0)) return 1;
    api_lambda_error(req, 412, "PreconditionFailedException",
                     "The Revision Id provided does not match the latest Revision Id. Call the "
                     "GetFunction/GetAlias API to retrieve the latest Revision Id");
    return 0;
}

/* --- Lists -------------------------------------------------------------------------- */

typedef struct list_parse {
    lambda_list_query *q;
    char why[200];
} list_parse;

static int on_list_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    list_parse *p = data;
    (void)klen;
    if (strcmp(k, "MaxItems") == 0)
        return api_number_param(k, v, vlen, 1, LAMBDA_LIST_MAX, &p->q->max, p->why, sizeof p->why);
    char *dst = strcmp(k, "Marker") == 0            ? p->q->marker
                : strcmp(k, "FunctionVersion") == 0 ? p->q->function_version
                                                    : NULL;
    size_t cap = dst == p->q->marker ? sizeof p->q->marker : sizeof p->q->function_version;
    if (!dst) return 0; /* Lambda ignores what it does not know (MasterRegion, ...) */
    if (vlen >= cap || memchr(v, '\0', vlen)) {
        snprintf(p->why, sizeof p->why, "parameter '%s' is too long", k);
        return ERR_INVAL;
    }
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
    return 0;
}

int api_lambda_list_query(http_request *req, lambda_list_query *q)
{
    memset(q, 0, sizeof *q);
    q->max = LAMBDA_LIST_DEFAULT;
    list_parse p = {q, ""};
    if (req->query && http_query_parse(req->query, on_list_param, &p) != 0) {
        api_lambda_error(req, 400, "InvalidParameterValueException", "%s",
                         p.why[0] ? p.why : "malformed query string");
        return -1;
    }
    return 0;
}

int api_lambda_page_take(lambda_page *p, const char *key)
{
    if (p->n == p->max) {
        p->more = 1;
        return 0;
    }
    p->n++;
    snprintf(p->next, sizeof p->next, "%s", key);
    return 1;
}

void api_lambda_page_answer(http_request *req, lambda_page *p, const char *list)
{
    cJSON *doc = cJSON_CreateObject();
    if (p->more) cJSON_AddStringToObject(doc, "NextMarker", p->next);
    cJSON_AddItemToObject(doc, list, p->items);
    p->items = NULL;
    api_respond_json(req, 200, doc);
}

/* --- FunctionConfiguration ------------------------------------------------------------ */

/* Lambda's timestamp: 2026-12-03T09:50:30.123+0000. */
static void iso_time(char *out, size_t cap, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03d+0000", (int)(ms % 1000));
}

/* Lambda's CodeSha256: the base64 of the digest, not its hex. */
static void code_sha256(char *out, const char *hex)
{
    unsigned char raw[HASH_HEX_LEN / 2];
    for (size_t i = 0; i < sizeof raw; i++) {
        unsigned v = 0;
        sscanf(hex + 2 * i, "%2x", &v);
        raw[i] = (unsigned char)v;
    }
    hash_base64(raw, sizeof raw, out);
}

/* The "K=V" lines of env as {"K": "V"}. */
static void add_env(cJSON *vars, const char *env)
{
    for (const char *p = env; p && *p;) {
        size_t len = strcspn(p, "\n");
        const char *eq = memchr(p, '=', len);
        if (eq) {
            char key[SPATE_ENV_BYTES_MAX + 1];
            snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
            char value[SPATE_ENV_BYTES_MAX + 1];
            snprintf(value, sizeof value, "%.*s", (int)(len - (size_t)(eq + 1 - p)), eq + 1);
            cJSON_AddStringToObject(vars, key, value);
        }
        p += len + (p[len] == '\n');
    }
}

/* FunctionConfiguration of version v of f; latest: it is shown as
 * $LATEST (the active version, unqualified), else by its number. Env
 * values only for an admin (env_values); secrets never. Caller owns. */
static cJSON *config_json(const fn *f, const reg_version *v, int latest, int env_values)
{
    const fn_config *c = &v->config;
    char num[16], arn[300], when[40], sha[HASH_BASE64_LEN(32) + 1], rev[48];
    snprintf(num, sizeof num, "%" PRIu32, v->version);
    api_lambda_arn(arn, sizeof arn, f->name, latest ? "" : num);
    iso_time(when, sizeof when, v->created_ms);
    code_sha256(sha, v->sha256);
    api_lambda_revision(rev, sizeof rev, v->version, v->created_ms);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "FunctionName", f->name);
    cJSON_AddStringToObject(o, "FunctionArn", arn);
    cJSON_AddStringToObject(o, "Runtime", lambda_runtime_name(c->runtime));
    cJSON_AddStringToObject(o, "Role", ROLE);
    if (c->handler[0]) cJSON_AddStringToObject(o, "Handler", c->handler);
    cJSON_AddNumberToObject(o, "CodeSize", (double)v->size);
    cJSON_AddStringToObject(o, "Description", c->description);
    cJSON_AddNumberToObject(o, "Timeout", (c->timeout_ms + 999) / 1000);
    cJSON_AddNumberToObject(o, "MemorySize", c->memory_mb);
    cJSON_AddStringToObject(o, "LastModified", when);
    cJSON_AddStringToObject(o, "CodeSha256", sha);
    cJSON_AddStringToObject(o, "Version", latest ? "$LATEST" : num);
    if (env_values && c->env)
        add_env(cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "Environment"), "Variables"),
                c->env);
    cJSON_AddStringToObject(o, "RevisionId", rev);
    /* A version answers only once its zygote loaded it: it is active, and
     * its last update succeeded (the CLI's waiters look at these). */
    cJSON_AddStringToObject(o, "State", "Active");
    cJSON_AddStringToObject(o, "LastUpdateStatus", "Successful");
    cJSON_AddStringToObject(o, "PackageType", "Zip");
    cJSON *arch = cJSON_AddArrayToObject(o, "Architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(LAMBDA_ARCHITECTURE));
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(o, "EphemeralStorage"), "Size", c->tmp_mb);
    return o;
}

/* --- A version by qualifier ----------------------------------------------------------- */

typedef struct version_find {
    uint32_t want;
    reg_version v;
    int found;
} version_find;

static int on_version_find(const reg_version *v, int64_t created, void *data)
{
    version_find *vf = data;
    (void)created;
    if (v->version != vf->want) return 0;
    vf->v = *v;
    if (fnconfig_copy(&vf->v.config, &v->config) != 0) return ERR_NOMEM;
    vf->found = 1;
    return 1;
}

/* Answers the configuration of the version qualifier names ("" and
 * $LATEST: the active one; an alias: the version it names), as
 * GetFunctionConfiguration (wrap 0) or GetFunction (wrap 1) do. */
static void get_function(api *a, http_request *req, const route_match *m, int wrap)
{
    char qualifier[LAMBDA_QUALIFIER_MAX + 1];
    fn *f = api_lambda_function(a, req, m, qualifier);
    if (!f) return;
    int latest = !qualifier[0] || strcmp(qualifier, "$LATEST") == 0;
    uint32_t want = f->active.version;
    if (!latest) {
        const reg_alias *al = functions_alias_find(f, qualifier, strlen(qualifier));
        if (al)
            want = al->version;
        else if (lambda_version_number(qualifier, &want) != 0)
            return not_found(req, f->name, qualifier);
    }
    int env_values = api_aws_caller_is_admin(a, req);
    cJSON *conf;
    if (want == f->active.version) {
        conf = config_json(f, &f->active, latest, env_values);
    } else {
        version_find vf = {.want = want};
        int rc = functions_versions(a->table, f, on_version_find, &vf);
        if (rc < 0)
            return api_lambda_error(req, 500, "ServiceException",
                                    "cannot read the versions of '%s': %s", f->name, err_str(rc));
        if (!vf.found) return not_found(req, f->name, qualifier);
        conf = config_json(f, &vf.v, 0, env_values);
        fnconfig_free(&vf.v.config);
    }
    if (!wrap) return api_respond_json(req, 200, conf);
    /* No Code.Location: spate has no route to download an artifact. */
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "Configuration", conf);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(doc, "Code"), "RepositoryType", "S3");
    api_respond_json(req, 200, doc);
}

/* --- ListFunctions, ListVersionsByFunction -------------------------------------------- */

typedef struct versions_ctx {
    const fn *f;
    cJSON *newest_first;
    int env_values;
} versions_ctx;

static int on_version(const reg_version *v, int64_t created, void *data)
{
    versions_ctx *vc = data;
    (void)created;
    cJSON_AddItemToArray(vc->newest_first, config_json(vc->f, v, 0, vc->env_values));
    return 0;
}

/* Offers f's $LATEST, then every version from the first, to page p: those
 * after version after ($LATEST counts as 0; with_latest 0 leaves it out).
 * Each item's key is prefix and its Version. 0, or ERR_STORE when the
 * versions cannot be read. */
static int page_versions(functions *t, const fn *f, lambda_page *p, int with_latest,
                         unsigned long after, const char *prefix, int env_values)
{
    versions_ctx vc = {f, cJSON_CreateArray(), env_values};
    if (!vc.newest_first || functions_versions(t, f, on_version, &vc) < 0) {
        cJSON_Delete(vc.newest_first);
        return ERR_STORE;
    }
    char key[SPATE_NAME_MAX + 24];
    snprintf(key, sizeof key, "%s$LATEST", prefix);
    if (with_latest && api_lambda_page_take(p, key))
        cJSON_AddItemToArray(p->items, config_json(f, &f->active, 1, env_values));
    for (int i = cJSON_GetArraySize(vc.newest_first) - 1; i >= 0; i--) {
        cJSON *item = cJSON_GetArrayItem(vc.newest_first, i);
        const char *ver = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "Version"));
        if (!ver || strtoul(ver, NULL, 10) <= after) continue;
        snprintf(key, sizeof key, "%s%s", prefix, ver);
        if (api_lambda_page_take(p, key))
            cJSON_AddItemToArray(p->items, cJSON_DetachItemFromArray(vc.newest_first, i));
    }
    cJSON_Delete(vc.newest_first);
    return 0;
}

/* Where a list of versions goes on after Marker: a Version ("$LATEST" or
 * a number); "" starts from $LATEST. */
static void version_marker(const char *marker, int *with_latest, unsigned long *after)
{
    *with_latest = marker[0] == '\0';
    *after = *with_latest || strcmp(marker, "$LATEST") == 0 ? 0 : strtoul(marker, NULL, 10);
}

typedef struct list_ctx {
    lambda_page page;
    functions *table;
    const char *marker;
    int all; /* FunctionVersion=ALL: every version of each function */
    int env_values;
    int failed;
} list_ctx;

static void list_one(fn *f, void *data)
{
    list_ctx *l = data;
    if (!l->all) {
        /* By name: the page after Marker, the last name of the page before. */
        if (l->marker[0] && strcmp(f->name, l->marker) <= 0) return;
        if (api_lambda_page_take(&l->page, f->name))
            cJSON_AddItemToArray(l->page.items, config_json(f, &f->active, 1, l->env_values));
        return;
    }
    /* ALL: by name, then $LATEST and the versions; Marker is NAME:VERSION. */
    const char *colon = strrchr(l->marker, ':');
    size_t nlen = colon ? (size_t)(colon - l->marker) : strlen(l->marker);
    int cmp = l->marker[0] ? strncmp(f->name, l->marker, nlen) : 1;
    if (cmp == 0 && f->name[nlen] != '\0') cmp = 1;
    if (cmp < 0 || l->failed || l->page.more) return;
    int with_latest = 1;
    unsigned long after = 0;
    if (cmp == 0) version_marker(colon ? colon + 1 : "$LATEST", &with_latest, &after);
    char prefix[SPATE_NAME_MAX + 2];
    snprintf(prefix, sizeof prefix, "%s:", f->name);
    if (page_versions(l->table, f, &l->page, with_latest, after, prefix, l->env_values) != 0)
        l->failed = 1;
}

static void list_functions(api *a, http_request *req)
{
    lambda_list_query q;
    if (api_lambda_list_query(req, &q)) return;
    int all = strcmp(q.function_version, "ALL") == 0;
    if (q.function_version[0] && !all)
        return api_lambda_error(req, 400, "InvalidParameterValueException",
                                "FunctionVersion must be ALL");
    list_ctx l = {{cJSON_CreateArray(), q.max, 0, 0, ""}, a->table, q.marker, all,
                  api_aws_caller_is_admin(a, req),        0};
    functions_each(a->table, list_one, &l);
    if (l.failed) {
        cJSON_Delete(l.page.items);
        return api_lambda_error(req, 500, "ServiceException", "cannot read the versions");
    }
    api_lambda_page_answer(req, &l.page, "Functions");
}

/* $LATEST, then every version from the first; Marker is the Version of the
 * page before's last item. */
static void list_versions(api *a, http_request *req, fn *f)
{
    lambda_list_query q;
    if (api_lambda_list_query(req, &q)) return;
    int with_latest;
    unsigned long after;
    version_marker(q.marker, &with_latest, &after);
    lambda_page p = {cJSON_CreateArray(), q.max, 0, 0, ""};
    if (page_versions(a->table, f, &p, with_latest, after, "", api_aws_caller_is_admin(a, req))) {
        cJSON_Delete(p.items);
        return api_lambda_error(req, 500, "ServiceException", "cannot read the versions of '%s'",
                                f->name);
    }
    api_lambda_page_answer(req, &p, "Versions");
}

/* The zip of Code.ZipFile (create) or ZipFile (update), decoded into out.
 * 0, or -1 after answering. */
static int read_zip(api *a, http_request *req, const cJSON *holder, buf *out)
{
    static const char *const elsewhere[] = {"S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri"};
    for (size_t i = 0; i < sizeof elsewhere / sizeof *elsewhere; i++)
        if (cJSON_GetObjectItemCaseSensitive(holder, elsewhere[i])) {
            api_lambda_error(req, 400, "InvalidParameterValueException",
                             "%s is not supported: spate takes the code as ZipFile", elsewhere[i]);
            return -1;
        }
    const cJSON *zip = cJSON_GetObjectItemCaseSensitive(holder, "ZipFile");
    if (!cJSON_IsString(zip) || !zip->valuestring[0]) {
        api_lambda_error(req, 400, "InvalidParameterValueException",
                         "ZipFile is required: the function's code, a zip archive in base64");
        return -1;
    }
    size_t len = strlen(zip->valuestring);
    size_t max = a->limits.artifact_max;
    if (len / 4 * 3 > max + 2) {
        api_lambda_error(req, 413, "RequestEntityTooLargeException",
                         "the zip is over the artifact limit of %zu bytes", max);
        return -1;
    }
    /* Room for a lone source file's tar wrapping (api_artifact_prepare). */
    buf_init(out, len / 4 * 3 + SPATE_HTTP_SMALL_BODY_MAX);
    if (buf_reserve(out, len / 4 * 3 + 1) != 0) {
        buf_free(out);
        api_lambda_error(req, 503, "ServiceException", "out of memory");
        return -1;
    }
    long n = hash_unbase64(zip->valuestring, len, (unsigned char *)out->data);
    if (n < 0) {
        buf_free(out);
        api_lambda_error(req, 400, "InvalidParameterValueException", "ZipFile is not base64");
        return -1;
    }
    out->len = (size_t)n;
    if (out->len > max) {
        buf_free(out);
        api_lambda_error(req, 413, "RequestEntityTooLargeException",
                         "the zip is over the artifact limit of %zu bytes", max);
        return -1;
    }
    return 0;
}

/* Whether the body asks only for what spate can do; else answers 400. */
static int supported(http_request *req, const cJSON *body)
{
    char why[200];
    if (lambda_body_supported(body, why, sizeof why) == 0) return 1;
    api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
    return 0;
}

/* --- Changes ---------------------------------------------------------------------------- */

typedef struct change {
    api *a;
    http_request *req;
    int status;  /* of the answer: 201 or 200 */
    int publish; /* the answer names the version's number, not $LATEST */
} change;

static void on_changed(const deploy_result *r, void *data)
{
    change *ch = data;
    if (r->status >= 400) {
        api_lambda_mgmt_fail(ch->req, r->status, r->code, r->message);
    } else {
        int env_values = api_aws_caller_is_admin(ch->a, ch->req);
        api_respond_json(ch->req, ch->status,
                         config_json(r->f, &r->f->active, !ch->publish, env_values));
    }
    free(ch);
}

static change *change_new(api *a, http_request *req, int status, int publish)
{
    change *ch = calloc(1, sizeof *ch);
    if (!ch) {
        api_lambda_error(req, 503, "ServiceException", "out of memory");
        return NULL;
    }
    *ch = (change){a, req, status, publish};
    return ch;
}

/* Prepares zip for cfg and deploys it as name's next version; answers.
 * Takes cfg and zip. */
static void deploy(api *a, http_request *req, const char *name, fn_config *cfg, buf *zip,
                   int publish, int status)
{
    char why[400];
    int rc = api_artifact_prepare(zip, cfg, "", why, sizeof why);
    change *ch = rc ? NULL : change_new(a, req, status, publish);
    if (rc == ERR_NOMEM)
        api_lambda_error(req, 503, "ServiceException", "out of memory");
    else if (rc)
        api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
    if (!ch) {
        fnconfig_free(cfg);
        buf_free(zip);
        return;
    }
    functions_deploy(a->table, name, cfg, zip, on_changed, ch);
}

static void create_function(api *a, http_request *req)
{
    cJSON *body = api_lambda_body(req);
    if (!body) return;
    buf_free(&req->body); /* parsed: its base64 is in body, and the zip comes next */
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "FunctionName"));
    lambda_target t;
    char why[400];
    fn_config cfg;
    buf zip;
    fnconfig_defaults(&cfg);
    if (!name) {
        api_lambda_error(req, 400, "InvalidParameterValueException", "FunctionName is required");
    } else if (lambda_parse_target(name, strlen(name), "", &t, why, sizeof why) != 0 ||
               t.qualifier[0]) {
        api_lambda_error(req, 400, "InvalidParameterValueException", "%s",
                         t.qualifier[0] ? "FunctionName takes no qualifier" : why);
    } else if (functions_find(a->table, t.function, strlen(t.function))) {
        api_lambda_error(req, 409, "ResourceConflictException", "Function already exist: %s",
                         t.function);
    } else if (supported(req, body)) {
        if (!cJSON_GetObjectItemCaseSensitive(body, "Runtime"))
            api_lambda_error(req, 400, "InvalidParameterValueException",
                             "Runtime is required for a .zip deployment package");
        else if (lambda_body_config(body, &cfg, why, sizeof why) != 0)
            api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
        else if (read_zip(a, req, cJSON_GetObjectItemCaseSensitive(body, "Code"), &zip) == 0) {
            int publish = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "Publish"));
            cJSON_Delete(body);
            deploy(a, req, t.function, &cfg, &zip, publish, 201);
            return;
        }
    }
    fnconfig_free(&cfg);
    cJSON_Delete(body);
}

static void update_code(api *a, http_request *req, const route_match *m)
{
    fn *f = api_lambda_function(a, req, m, NULL);
    if (!f) return;
    cJSON *body = api_lambda_body(req);
    if (!body) return;
    buf_free(&req->body); /* parsed: its base64 is in body, and the zip comes next */
    char rev[48];
    api_lambda_revision(rev, sizeof rev, f->active.version, f->active.created_ms);
    buf zip;
    fn_config cfg;
    if (api_lambda_revision_ok(req, body, rev) && supported(req, body) &&
        read_zip(a, req, body, &zip) == 0) {
        if (fnconfig_copy(&cfg, &f->active.config) != 0) {
            buf_free(&zip);
            api_lambda_error(req, 503, "ServiceException", "out of memory");
        } else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "DryRun"))) {
            /* Checked, not deployed: the answer is the configuration now. */
            char why[400];
            int rc = api_artifact_prepare(&zip, &cfg, "", why, sizeof why);
            fnconfig_free(&cfg);
            buf_free(&zip);
            if (rc)
                api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
            else
                api_respond_json(req, 200,
                                 config_json(f, &f->active, 1, api_aws_caller_is_admin(a, req)));
        } else {
            int publish = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "Publish"));
            cJSON_Delete(body);
            return deploy(a, req, f->name, &cfg, &zip, publish, 200);
        }
    }
    cJSON_Delete(body);
}

/* A configuration change (UpdateFunctionConfiguration, or PublishVersion
 * with a new description): a new version through functions_reconfigure,
 * or, when cfg changes nothing, the active version as it is. Takes cfg. */
static void reconfigure(api *a, http_request *req, fn *f, fn_config *cfg, int status, int publish)
{
    if (fnconfig_equal(cfg, &f->active.config)) {
        fnconfig_free(cfg);
        api_respond_json(req, status,
                         config_json(f, &f->active, !publish, api_aws_caller_is_admin(a, req)));
        return;
    }
    change *ch = change_new(a, req, status, publish);
    if (!ch) return fnconfig_free(cfg);
    functions_reconfigure(a->table, f->name, cfg, on_changed, ch);
}

static void update_config(api *a, http_request *req, const route_match *m)
{
    fn *f = api_lambda_function(a, req, m, NULL);
    if (!f) return;
    cJSON *body = api_lambda_body(req);
    if (!body) return;
    char rev[48], why[400];
    api_lambda_revision(rev, sizeof rev, f->active.version, f->active.created_ms);
    fn_config cfg;
    if (api_lambda_revision_ok(req, body, rev) && supported(req, body)) {
        if (fnconfig_copy(&cfg, &f->active.config) != 0) {
            api_lambda_error(req, 503, "ServiceException", "out of memory");
        } else if (lambda_body_config(body, &cfg, why, sizeof why) != 0) {
            fnconfig_free(&cfg);
            api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
        } else {
            reconfigure(a, req, f, &cfg, 200, 0);
        }
    }
    cJSON_Delete(body);
}

/* PublishVersion: the active version is published already (every change
 * made a number); CodeSha256 and RevisionId, when given, must be its. */
static void publish_version(api *a, http_request *req, fn *f)
{
    cJSON *body = api_lambda_body(req);
    if (!body) return;
    char rev[48], sha[HASH_BASE64_LEN(32) + 1], why[400];
    api_lambda_revision(rev, sizeof rev, f->active.version, f->active.created_ms);
    code_sha256(sha, f->active.sha256);
    const char *want = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "CodeSha256"));
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "Description");
    int bad = d && !cJSON_IsNull(d) && !cJSON_IsString(d);
    const char *desc = cJSON_GetStringValue(d);
    fn_config cfg;
    if (want && strcmp(want, sha) != 0) {
        api_lambda_error(req, 412, "PreconditionFailedException",
                         "CodeSha256 (%.64s) is not the code of $LATEST (%s)", want, sha);
    } else if (bad) {
        api_lambda_error(req, 400, "InvalidParameterValueException",
                         "Description must be a string");
    } else if (api_lambda_revision_ok(req, body, rev)) {
        if (fnconfig_copy(&cfg, &f->active.config) != 0) {
            api_lambda_error(req, 503, "ServiceException", "out of memory");
        } else if (desc && fnconfig_set_description(&cfg, desc, strlen(desc), why, sizeof why)) {
            fnconfig_free(&cfg);
            api_lambda_error(req, 400, "InvalidParameterValueException", "%s", why);
        } else {
            reconfigure(a, req, f, &cfg, 201, 1);
        }
    }
    cJSON_Delete(body);
}

/* DeleteFunction: the function and every version, as DELETE /v1/functions
 * does (a function that triggers feed is refused: ResourceConflictException
 * naming them). */
static void delete_function(api *a, http_request *req, const route_match *m)
{
    char qualifier[LAMBDA_QUALIFIER_MAX + 1];
    fn *f = api_lambda_function(a, req, m, qualifier);
    if (!f) return;
    if (qualifier[0])
        return api_lambda_error(req, 400, "InvalidParameterValueException",
                                "spate deletes a function's versions only with the function: "
                                "delete it without a qualifier");
    api_function_delete(a, req, f->name, 0, api_lambda_mgmt_fail);
}

/* --- Dispatch --------------------------------------------------------------------------- */

static void method_not_allowed(http_request *req)
{
    api_lambda_error(req, 405, "MethodNotAllowedException", "method %s is not allowed here",
                     http_method_str(req->method));
}

void api_lambda_mgmt(api *a, http_request *req, const route_match *m)
{
    enum http_method meth = req->method;
    int get = meth == HTTP_GET || meth == HTTP_HEAD;
    fn *f;
    switch (m->route) {
    case R_LAMBDA_FUNCTIONS:
        if (meth == HTTP_POST) return create_function(a, req);
        if (get) return list_functions(a, req);
        break;
    case R_LAMBDA_FUNCTION:
        if (get) return get_function(a, req, m, 1);
        if (meth == HTTP_DELETE) return delete_function(a, req, m);
        break;
    case R_LAMBDA_CONFIG:
        if (get) return get_function(a, req, m, 0);
        if (meth == HTTP_PUT) return update_config(a, req, m);
        break;
    case R_LAMBDA_CODE:
        if (meth == HTTP_PUT) return update_code(a, req, m);
        break;
    case R_LAMBDA_VERSIONS:
        if (!get && meth != HTTP_POST) break;
        if (!(f = api_lambda_function(a, req, m, NULL))) return;
        return get ? list_versions(a, req, f) : publish_version(a, req, f);
    case R_LAMBDA_ALIASES:
    case R_LAMBDA_ALIAS:
        return api_lambda_aliases(a, req, m);
    default:
        break;
    }
    method_not_allowed(req);
}
