/*
 * awsauth.c - admission on the AWS routes when tokens are on: AWS Signature
 * Version 4 (sigv4.c) with the secret of the token-file line that names the
 * access key id, the same scope rules as the native API, and refusals in the
 * shape of the route's AWS protocol, so that the AWS CLI and SDKs name the
 * error (UnrecognizedClientException, InvalidSignatureException, ...).
 *
 * Two steps, as for bearer tokens: before the body is read everything but a
 * signature over the body is checked (api_aws_admit), so the body of a
 * request without a known access key id costs at most
 * SPATE_HTTP_SMALL_BODY_MAX; with the body, the signature (api_aws_verify).
 * A request with a known key id that its headers refuse (a clock off, the
 * wrong scope) keeps its route's body limit: an SDK sending a large payload
 * from a skewed clock must hear "Signature expired", which it corrects its
 * clock by, not 413. A refusal is written by the handler, not by the
 * server's admission, because only the handler answers in the protocol's
 * shape.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "api/sigv4.h"
#include "common/limits.h"

/* rest-json (Lambda): the type in x-amzn-ErrorType, {"message": ...}. */
static void rest_json_error(http_request *req, int status, const char *type, const char *message)
{
    char hdr[128];
    snprintf(hdr, sizeof hdr, "x-amzn-ErrorType: %s\r\n", type);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "message", message);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!text) {
        http_respond_error(req, 500, "out_of_memory", "cannot build the answer");
        return;
    }
    http_respond(req, status, "application/json", hdr, text, strlen(text));
    free(text);
}

/* The AWS protocols spated speaks, by the paths they own (SQS's by its
 * target header or queue URL: it shares POST / with nothing else). */
static const api_aws_protocol protocols[] = {
    {"/2015-03-31/", "lambda", rest_json_error, NULL, NULL},
    {"/", "sqs", api_sqs_error, api_sqs_match, api_sqs_scope},
};

const api_aws_protocol *api_aws_protocol_of(const http_request *req)
{
    for (size_t i = 0; i < sizeof protocols / sizeof protocols[0]; i++) {
        const api_aws_protocol *p = &protocols[i];
        if (p->match ? p->match(req) : strncmp(req->path, p->prefix, strlen(p->prefix)) == 0)
            return p;
    }
    return NULL;
}

/* Between admission and the handler, req->data says the headers were
 * refused already and name no known key (the handler then answers why, with
 * the body read up to the small limit). */
static const char refused_mark;

typedef struct lookup_ctx {
    const auth *auth;
    unsigned scopes;
} lookup_ctx;

static int lookup(void *data, const char *key_id, const char **secret, size_t *secret_len)
{
    lookup_ctx *l = data;
    return auth_key(l->auth, key_id, secret, secret_len, &l->scopes);
}

static const char *header(const void *req, const char *name)
{
    return http_header(req, name);
}

static const char *header_at(const void *req, size_t i)
{
    return http_header_name_at(req, i);
}

/* The check: 1 when the request may go on (SIGV4_OK, or SIGV4_PENDING
 * without the body); else 0 with status, type and message of the refusal.
 * *known: whether the access key id is one of the token file's. */
static int check(const api *a, const http_request *req, const api_aws_protocol *p, int have_body,
                 int *status, const char **type, int *known, char *why, size_t whycap)
{
    sigv4_request r = {http_method_str(req->method),
                       req->path,
                       req->query,
                       header,
                       req,
                       req->body.data,
                       req->body.len,
                       have_body,
                       header_at};
    lookup_ctx l = {a->auth, 0};
    enum sigv4_status st = sigv4_verify(&r, p->service, lookup, &l, time(NULL), why, whycap);
    *status = 403;
    *known = l.scopes != 0; /* every line has a scope */
    switch (st) {
    case SIGV4_OK:
    case SIGV4_PENDING: {
        unsigned need = p->scope ? p->scope(req) : api_aws_scope(req->method, req->path);
        if (l.scopes & need) return 1;
        *type = "AccessDeniedException";
        snprintf(why, whycap, "this request needs the %s scope; the access key has %s",
                 auth_scope_name(need), auth_scope_name(l.scopes));
        return 0;
    }
    case SIGV4_MISSING:
        *type = "MissingAuthenticationTokenException";
        return 0;
    case SIGV4_UNKNOWN_KEY:
        *type = "UnrecognizedClientException";
        return 0;
    case SIGV4_MALFORMED:
        *type = "IncompleteSignatureException";
        return 0;
    case SIGV4_EXPIRED:
    case SIGV4_MISMATCH:
    case SIGV4_UNSIGNED:
    default:
        *type = "InvalidSignatureException";
        return 0;
    }
}

void api_aws_admit(const api *a, http_request *req, const api_aws_protocol *p)
{
    int status, known;
    const char *type;
    char why[512];
    if (!check(a, req, p, 0, &status, &type, &known, why, sizeof why) && !known)
        req->data = (void *)&refused_mark;
}

int api_aws_refused(const http_request *req)
{
    return req->data == &refused_mark;
}

int api_aws_verify(const api *a, http_request *req, const api_aws_protocol *p)
{
    int status, known;
    const char *type;
    char why[512];
    req->data = NULL;
    if (!check(a, req, p, 1, &status, &type, &known, why, sizeof why)) {
        p->error(req, status, type, why);
        return 0;
    }
    http_trust(req);
    return 1;
}

/* The access key id of a signed request: Credential=KEY/... of its
 * Authorization header, or the X-Amz-Credential of a presigned query. */
static int key_id_of(const http_request *req, char *out, size_t cap)
{
    const char *hdr = http_header(req, "authorization");
    const char *cred = hdr ? strstr(hdr, "Credential=") : NULL;
    if (cred) {
        cred += 11;
    } else if ((cred = strstr(req->query ? req->query : "", "X-Amz-Credential="))) {
        cred += 17;
    } else {
        return -1;
    }
    /* In a query the '/' after the key is %2F; a key id holds neither. */
    size_t n = strcspn(cred, "/%,& ");
    if (n == 0 || n >= cap) return -1;
    memcpy(out, cred, n);
    out[n] = '\0';
    return 0;
}

int api_aws_caller_is_admin(const api *a, const http_request *req)
{
    if (!a->auth) return api_caller_is_admin(a, req);
    char key[SIGV4_KEY_ID_MAX + 1];
    const char *secret;
    size_t len;
    unsigned scopes = 0;
    if (key_id_of(req, key, sizeof key) != 0 || auth_key(a->auth, key, &secret, &len, &scopes) != 0)
        return 0;
    return (scopes & SCOPE_ADMIN) != 0;
}
