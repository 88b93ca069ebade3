/*
 * invoke.c - POST /v1/functions/NAME[:QUALIFIER]/invoke: the payload goes to
 * the pool of the version the qualifier names (none: the active one; a
 * number; an alias, which picks by its weight), or to another node when this
 * one has no room (cluster mode, the active version only), and the outcome
 * becomes the answer's status. Spate-Version says which version ran it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/fmt.h"
#include "common/limits.h"
#include "common/reqid.h"

typedef struct api_invocation {
    invocation inv;
    http_request *req;
    pool *pool;
    buf payload;
    char request_id[REQID_LEN + 1];
    api *a; /* routed ones: to find the function again */
    char function[SPATE_NAME_MAX + 1];
} api_invocation;

static void on_invoke_done(invocation *inv, enum pool_outcome outcome, const char *body, size_t len,
                           void *data);
static void on_invoke_abort(http_request *req);

static void on_invoke_done(invocation *inv, enum pool_outcome outcome, const char *body, size_t len,
                           void *data)
{
    api_invocation *ai = data;
    http_request *req = ai->req;
    char hdr[128];
    char *p = fmt_lit(hdr, "Spate-Request-Id: ");
    p = fmt_str(p, ai->request_id, strlen(ai->request_id));
    p = fmt_lit(p, "\r\nSpate-Version: ");
    p = fmt_u64(p, inv->version);
    p = fmt_lit(p, "\r\n");
    *p = '\0';
    int n = (int)(len > 2048 ? 2048 : len);
    /* Errors carry the request id too: the function's log has what happened
     * to it under that id (spate logs NAME --request ID). */
    switch (outcome) {
    case POOL_OK:
        http_respond(req, 200, "application/octet-stream", hdr, body, len);
        break;
    case POOL_FAILED:
        http_respond_error_with(req, 502, hdr, "function_error", "%.*s", n, body);
        break;
    case POOL_CRASHED:
        http_respond_error_with(req, 502, hdr, "function_crashed", "function crashed: %.*s", n,
                                body);
        break;
    case POOL_TIMEOUT:
        http_respond_error_with(req, 504, hdr, "function_timeout", "%.*s", n, body);
        break;
    case POOL_OVERLOADED:
        http_respond_error_with(req, 429, hdr, "over_capacity", "%.*s", n, body);
        break;
    case POOL_UNAVAILABLE:
        /* A node limit names itself (zygote_budget); else the function cannot run. */
        http_respond_error_with(req, 503, hdr, inv->limit ? inv->limit : "unavailable", "%.*s", n,
                                body);
        break;
    }
    buf_free(&ai->payload);
    free(ai);
}

/* The answer of another node (cluster mode), passed on as it is; status 0:
 * no node had room, so it waits here. */
static void on_routed_done(int status, const char *body, size_t len, const char *node, void *data)
{
    api_invocation *ai = data;
    http_request *req = ai->req;
    if (status == 0) {
        /* It may have been deleted meanwhile. */
        fn *f = functions_find(ai->a->table, ai->function, strlen(ai->function));
        if (f) {
            ai->pool = f->pool;
            req->on_abort = on_invoke_abort;
            pool_invoke(f->pool, &ai->inv);
            return;
        }
        status = 404;
        static const char gone[] =
            "{\"error\":\"the function was deleted\",\"code\":\"not_found\"}";
        body = gone;
        len = sizeof gone - 1;
    }
    char hdr[256];
    snprintf(hdr, sizeof hdr, "Spate-Request-Id: %s\r\nSpate-Node: %.32s\r\n", ai->request_id,
             node);
    http_respond(req, status, status == 200 ? "application/octet-stream" : "application/json", hdr,
                 body, len);
    buf_free(&ai->payload);
    free(ai);
}

/* The client went away: a waiting invocation is withdrawn; a running one
 * finishes and its answer is dropped. */
static void on_invoke_abort(http_request *req)
{
    api_invocation *ai = req->data;
    pool_cancel(ai->pool, &ai->inv);
}

/* ?timeout=MS: this invocation's timeout, which may only shorten the
 * function's (a caller's deadline, not a way past the operator's limit). */
typedef struct invoke_params {
    uint32_t timeout_ms;                 /* 0: the function's */
    char qualifier[SPATE_ALIAS_MAX + 2]; /* ?qualifier=, as NAME:QUALIFIER */
    int has_qualifier;
    int async; /* ?async=1: stored, run in the background (api/lambda_async.c) */
    char why[200];
} invoke_params;

static int on_invoke_param(const char *k, size_t klen, const char *v, size_t vlen, void *data)
{
    invoke_params *p = data;
    if (strcmp(k, "timeout") == 0 || strcmp(k, "timeout_ms") == 0)
        return api_number_param(k, v, vlen, 1, SPATE_TIMEOUT_CEILING_MS, &p->timeout_ms, p->why,
                                sizeof p->why);
    if (strcmp(k, "async") == 0)
        return api_bool_param(k, v, vlen, &p->async, p->why, sizeof p->why);
    if (strcmp(k, "qualifier") == 0) {
        if (vlen >= sizeof p->qualifier || memchr(v, '\0', vlen)) {
            snprintf(p->why, sizeof p->why, "parameter 'qualifier' is not a version or an alias");
            return ERR_INVAL;
        }
        memcpy(p->qualifier, v, vlen);
        p->qualifier[vlen] = '\0';
        p->has_qualifier = 1;
        return 0;
    }
    snprintf(p->why, sizeof p->why, "unknown parameter '%.*s' (timeout, qualifier, async)",
             (int)(klen > 64 ? 64 : klen), k);
    return ERR_INVAL;
}

/* Which version of which function the request names: 0, or it was answered. */
static int resolve(api *a, http_request *req, const route_match *m, const invoke_params *ip, fn **f,
                   uint32_t *version)
{
    char name[SPATE_NAME_MAX + 1], qual[SPATE_ALIAS_MAX + 2] = "";
    snprintf(name, sizeof name, "%.*s", (int)m->name_len, m->name);
    if (m->qualifier && ip->has_qualifier) {
        http_respond_error(req, 400, "bad_parameter",
                           "name the version or alias once: NAME:QUALIFIER or ?qualifier=");
        return -1;
    }
    if (m->qualifier) {
        if (m->qualifier_len == 0 || m->qualifier_len >= sizeof qual) {
            http_respond_error(req, 400, "bad_qualifier",
                               "invalid qualifier after '%s:': a version number or an alias name",
                               name);
            return -1;
        }
        memcpy(qual, m->qualifier, m->qualifier_len);
        qual[m->qualifier_len] = '\0';
        /* The path is not decoded: `spate invoke NAME:$LATEST` sends %24. */
        if (strcmp(qual, "%24LATEST") == 0) strcpy(qual, "$LATEST");
    } else if (ip->has_qualifier) {
        memcpy(qual, ip->qualifier, sizeof qual);
    }
    int rc = functions_resolve(a->table, name, qual, f, version);
    if (rc == 0) return 0;
    if (!*f)
        http_respond_error(req, 404, "not_found", "function '%s' does not exist", name);
    else if (rc == ERR_NOTFOUND && strspn(qual, "0123456789") == strlen(qual))
        http_respond_error(req, 404, "not_found", "function '%s' has no version %s", name, qual);
    else if (rc == ERR_NOTFOUND)
        http_respond_error(req, 404, "not_found", "function '%s' has no alias '%s'", name, qual);
    else if (rc == ERR_INVAL)
        http_respond_error(req, 400, "bad_qualifier",
                           "invalid qualifier '%s': a version number or an alias name", qual);
    else
        http_respond_error(req, 500, "store_error", "cannot read the versions: %s", err_str(rc));
    return -1;
}

void api_invoke(api *a, http_request *req, const route_match *m)
{
    invoke_params ip = {0};
    if (req->query[0]) { /* the common invoke has none: no parsing, no allocation */
        int rc = http_query_parse(req->query, on_invoke_param, &ip);
        if (rc == ERR_NOMEM) {
            http_respond_error(req, 503, "out_of_memory", "out of memory");
            return;
        }
        if (rc) {
            http_respond_error(req, 400, "bad_parameter", "%s",
                               ip.why[0] ? ip.why : "malformed query string");
            return;
        }
    }
    fn *f;
    uint32_t version;
    if (resolve(a, req, m, &ip, &f, &version)) return;
    if (ip.async) {
        if (ip.timeout_ms) {
            http_respond_error(req, 400, "bad_parameter",
                               "parameter 'timeout' does not apply to an async invocation");
            return;
        }
        const char *qual = m->qualifier ? m->qualifier : ip.qualifier;
        size_t qlen = m->qualifier ? m->qualifier_len : strlen(ip.qualifier);
        uint32_t run;
        char why[300];
        if (api_async_version(f, qual, qlen, version, &run, why, sizeof why) != 0) {
            http_respond_error(req, 400, "bad_parameter", "%s", why);
            return;
        }
        api_async_invoke(a, req, f, run, 0);
        return;
    }
    /* Another version's timeout is its own: the pool takes the shorter. */
    if (ip.timeout_ms && version == f->active.version &&
        ip.timeout_ms > f->active.config.timeout_ms) {
        http_respond_error(req, 400, "bad_parameter",
                           "parameter 'timeout' (%u ms) is longer than the function's timeout "
                           "(%u ms): it may only shorten it",
                           ip.timeout_ms, f->active.config.timeout_ms);
        return;
    }
    api_invocation *ai = malloc(sizeof *ai);
    if (!ai) {
        http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    ai->req = req;
    ai->pool = f->pool;
    buf_init(&ai->payload, 0);
    buf_move(&ai->payload, &req->body);
    reqid_next(ai->request_id);
    ai->inv = (invocation){
        .request_id = ai->request_id,
        .payload = ai->payload.data,
        .payload_len = (uint32_t)ai->payload.len,
        .attempt = 1,
        .timeout_limit_ms = ip.timeout_ms,
        .done = on_invoke_done,
        .data = ai,
    };
    req->data = ai;
    req->on_abort = on_invoke_abort;
    /* No room here: another node may have some (cluster mode); another node
     * runs the function's active version only. */
    if (version == f->active.version && !pool_has_room(f->pool)) {
        ai->a = a;
        snprintf(ai->function, sizeof ai->function, "%s", f->name);
        if (functions_route(a->table, f, ai->request_id, ai->payload.data, ai->payload.len,
                            ip.timeout_ms ? ip.timeout_ms : f->active.config.timeout_ms,
                            on_routed_done, ai) == 0) {
            req->on_abort = NULL; /* it runs elsewhere; the answer is dropped if the client left */
            return;
        }
    }
    functions_invoke(a->table, f, version, &ai->inv, &ai->pool);
}
