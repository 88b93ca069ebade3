/*
 * route.c - the API's routes: which route a path is (api_route_match) and the
 * token scope a request on it needs (api_route_scope). Nothing here reads a
 * body or answers: admission and dispatch are api.c's.
 */
#include <string.h>

#include "api/internal.h"
#include "api/lambda.h"

#define PREFIX "/v1/functions"
#define PREFIX_LEN (sizeof PREFIX - 1)

/* /v1/topics/TOPIC[/messages|/redrive] and /v1/triggers/TOPIC/FUNCTION. */
static int match_topics(const char *path, route_match *m)
{
    if (strcmp(path, "/v1/topics") == 0 || strcmp(path, "/v1/topics/") == 0) {
        m->route = R_TOPICS;
    } else if (strncmp(path, "/v1/topics/", 11) == 0) {
        m->name = path + 11;
        const char *slash = strchr(m->name, '/');
        m->name_len = slash ? (size_t)(slash - m->name) : strlen(m->name);
        if (!slash)
            m->route = R_TOPIC;
        else if (strcmp(slash, "/messages") == 0)
            m->route = R_TOPIC_MESSAGES;
        else if (strcmp(slash, "/redrive") == 0)
            m->route = R_TOPIC_REDRIVE;
        else if (strcmp(slash, "/purge") == 0)
            m->route = R_TOPIC_PURGE;
    } else if (strcmp(path, "/v1/triggers") == 0 || strcmp(path, "/v1/triggers/") == 0) {
        m->route = R_TRIGGERS;
    } else if (strncmp(path, "/v1/triggers/", 13) == 0) {
        m->name = path + 13;
        const char *slash = strchr(m->name, '/');
        if (slash && !strchr(slash + 1, '/')) {
            m->name_len = (size_t)(slash - m->name);
            m->name2 = slash + 1;
            m->name2_len = strlen(m->name2);
            m->route = R_TRIGGER;
        }
    } else {
        return 0;
    }
    return 1;
}

/* Lambda's routes, rest the path after /2015-03-31/functions: "" or "/"
 * (the list, CreateFunction), /NAME, /NAME/invocations and the management
 * sub-resources of a function. */
static void match_lambda(const char *rest, route_match *m)
{
    static const struct {
        const char *suffix;
        enum route route;
    } subs[] = {
        {"", R_LAMBDA_FUNCTION},
        {"/invocations", R_LAMBDA_INVOKE},
        {"/configuration", R_LAMBDA_CONFIG},
        {"/code", R_LAMBDA_CODE},
        {"/versions", R_LAMBDA_VERSIONS},
        {"/aliases", R_LAMBDA_ALIASES},
        {"/aliases/", R_LAMBDA_ALIASES},
    };
    if (*rest == '\0' || strcmp(rest, "/") == 0) {
        m->route = R_LAMBDA_FUNCTIONS;
        return;
    }
    if (*rest != '/' || rest[1] == '/') return;
    const char *name = rest + 1;
    const char *slash = strchr(name, '/');
    size_t len = slash ? (size_t)(slash - name) : strlen(name);
    const char *tail = name + len;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(tail, subs[i].suffix) == 0) m->route = subs[i].route;
    if (m->route == R_NONE && strncmp(tail, "/aliases/", 9) == 0 && tail[9] &&
        !strchr(tail + 9, '/')) {
        m->route = R_LAMBDA_ALIAS;
        m->name2 = tail + 9;
        m->name2_len = strlen(m->name2);
    }
    if (m->route == R_NONE) return;
    m->name = name;
    m->name_len = len;
}

route_match api_route_match(const char *path)
{
    route_match m = {.route = R_NONE};
    if (match_topics(path, &m)) return m;
    if (strcmp(path, "/v1/health") == 0) {
        m.route = R_HEALTH;
    } else if (strcmp(path, "/metrics") == 0) {
        m.route = R_METRICS;
    } else if (strcmp(path, "/v1/schedules") == 0 || strcmp(path, "/v1/schedules/") == 0) {
        m.route = R_SCHEDULES;
    } else if (strncmp(path, "/v1/schedules/", 14) == 0 && !strchr(path + 14, '/')) {
        m.route = R_SCHEDULE;
        m.name = path + 14;
        m.name_len = strlen(m.name);
    } else if (strcmp(path, "/v1/sources") == 0 || strcmp(path, "/v1/sources/") == 0) {
        m.route = R_SOURCES;
    } else if (strncmp(path, "/v1/sources/", 12) == 0) {
        m.route = R_SOURCE;
        m.name = path + 12;
        m.name_len = strlen(m.name);
    } else if (strcmp(path, LAMBDA_ESM_PREFIX) == 0 || strcmp(path, LAMBDA_ESM_PREFIX "/") == 0) {
        m.route = R_LAMBDA_ESMS;
    } else if (strncmp(path, LAMBDA_ESM_PREFIX "/", sizeof LAMBDA_ESM_PREFIX) == 0 &&
               !strchr(path + sizeof LAMBDA_ESM_PREFIX, '/')) {
        m.route = R_LAMBDA_ESM;
        m.name = path + sizeof LAMBDA_ESM_PREFIX;
        m.name_len = strlen(m.name);
    } else if (strncmp(path, LAMBDA_FUNCTIONS_PREFIX, sizeof LAMBDA_FUNCTIONS_PREFIX - 2) == 0) {
        match_lambda(path + sizeof LAMBDA_FUNCTIONS_PREFIX - 2, &m);
    } else if (strcmp(path, "/") == 0 ||
               strncmp(path, "/000000000000/", 14) == 0) { /* SQS: the endpoint, a queue URL */
        m.route = R_SQS;
    } else if (strcmp(path, "/v1/nodes") == 0) {
        m.route = R_NODES;
    } else if (strcmp(path, "/v1/status") == 0) {
        m.route = R_STATUS;
    } else if (strcmp(path, "/v1/history") == 0) {
        m.route = R_HISTORY;
    } else if (strncmp(path, "/ui", 3) == 0 && (path[3] == '\0' || path[3] == '/')) {
        m.route = R_UI;
    } else if (strncmp(path, PREFIX, PREFIX_LEN) == 0) {
        const char *rest = path + PREFIX_LEN;
        if (*rest == '\0' || strcmp(rest, "/") == 0) {
            m.route = R_FUNCTIONS;
        } else if (*rest == '/') {
            m.name = rest + 1;
            const char *slash = strchr(m.name, '/');
            m.name_len = slash ? (size_t)(slash - m.name) : strlen(m.name);
            if (!slash)
                m.route = R_FUNCTION;
            else if (strcmp(slash, "/invoke") == 0)
                m.route = R_FUNCTION_INVOKE;
            else if (strcmp(slash, "/logs") == 0)
                m.route = R_FUNCTION_LOGS;
            else if (strcmp(slash, "/aliases") == 0 || strcmp(slash, "/aliases/") == 0)
                m.route = R_ALIASES;
            else if (strcmp(slash, "/rollback") == 0)
                m.route = R_ROLLBACK;
            else if (strncmp(slash, "/aliases/", 9) == 0 && !strchr(slash + 9, '/')) {
                m.route = R_ALIAS;
                m.name2 = slash + 9;
                m.name2_len = strlen(m.name2);
            }
            /* NAME:QUALIFIER invokes a version or an alias (versions.c). */
            const char *colon = memchr(m.name, ':', m.name_len);
            if (colon && m.route == R_FUNCTION_INVOKE) {
                m.qualifier = colon + 1;
                m.qualifier_len = m.name_len - (size_t)(colon + 1 - m.name);
                m.name_len = (size_t)(colon - m.name);
            }
        }
    }
    return m;
}

/* The scope a request needs: none for health; admin to change functions and
 * triggers, redrive, or read message payloads; invoke to invoke; publish to
 * publish; any token to read. Sources are admin's alone, reading too: they
 * name the user's brokers. */
unsigned api_route_scope(const route_match *m, enum http_method method)
{
    int read = method == HTTP_GET || method == HTTP_HEAD;
    switch (m->route) {
    case R_HEALTH:
    case R_UI: /* the page's files hold no data; it asks for a token to read any */
        return 0;
    case R_FUNCTION_INVOKE:
    case R_LAMBDA_INVOKE:
        return method == HTTP_POST ? SCOPE_INVOKE : SCOPE_ANY;
    case R_TOPIC_MESSAGES:
        return method == HTTP_POST ? SCOPE_PUBLISH : SCOPE_ADMIN;
    case R_FUNCTION:
    case R_ALIASES:
    case R_ALIAS:
    case R_LAMBDA_FUNCTIONS: /* with a token file, SigV4 and api_aws_scope */
    case R_LAMBDA_FUNCTION:
    case R_LAMBDA_CONFIG:
    case R_LAMBDA_CODE:
    case R_LAMBDA_VERSIONS:
    case R_LAMBDA_ALIASES:
    case R_LAMBDA_ALIAS:
    case R_LAMBDA_ESMS:
    case R_LAMBDA_ESM:
    case R_TRIGGER:
    case R_TOPIC: /* DELETE and PUT (retention) change it */
    case R_SCHEDULE:
        return read ? SCOPE_ANY : SCOPE_ADMIN;
    case R_SQS: /* with a token file, SigV4 and the action's scope (api_sqs_scope) */
    case R_SOURCES:
    case R_SOURCE:
    case R_TOPIC_REDRIVE:
    case R_TOPIC_PURGE:
    case R_ROLLBACK:
    case R_FUNCTION_LOGS: /* what functions print may be as private as payloads */
        return SCOPE_ADMIN;
    default:
        return SCOPE_ANY;
    }
}

/* The AWS routes: Lambda's Invoke (POST /2015-03-31/functions/NAME/invocations)
 * needs invoke, reading any scope, anything else (managing functions) admin. */
unsigned api_aws_scope(enum http_method method, const char *path)
{
    static const char fns[] = "/2015-03-31/functions/", inv[] = "/invocations";
    size_t n = strlen(path);
    if (method == HTTP_POST && strncmp(path, fns, sizeof fns - 1) == 0 &&
        n > sizeof fns - 1 + sizeof inv - 1 && strcmp(path + n - (sizeof inv - 1), inv) == 0 &&
        !memchr(path + sizeof fns - 1, '/', n - (sizeof fns - 1) - (sizeof inv - 1)))
        return SCOPE_INVOKE;
    return method == HTTP_GET || method == HTTP_HEAD ? SCOPE_ANY : SCOPE_ADMIN;
}
