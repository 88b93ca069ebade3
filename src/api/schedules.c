/*
 * schedules.c - the /v1/schedules routes: adding or replacing a schedule
 * (PUT), removing it (DELETE), showing it with its status and listing them
 * (GET). A schedule that runs a function (--function F) publishes into the
 * topic schedule.NAME, and this file makes (and on removal takes away) the
 * trigger from that topic to F, so retries and dead letters hold for
 * scheduled runs as for any other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/json.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/names.h"
#include "schedules/schedules.h"

#define SCHEDULE_TOPIC_PREFIX "schedule."

typedef struct schedule_req {
    api *a;
    http_request *req;
    reg_schedule def;
    char *payload;                         /* def.payload's storage */
    char old_function[SPATE_NAME_MAX + 1]; /* a replaced schedule's trigger to take away */
    char old_topic[SPATE_TOPIC_NAME_MAX + 1];
    int removing;
} schedule_req;

static void req_free(schedule_req *r)
{
    free(r->payload);
    free(r);
}

/* Takes the trigger of a schedule's topic away, logging a failure: the
 * schedule itself is already gone or changed. */
static void on_untriggered(void *data, int status)
{
    if (status) log_warn("cannot remove a schedule's trigger: %s", err_str(status));
}

static void untrigger(api *a, const char *topic, const char *function)
{
    if (queue_find_sub(a->q, topic, function))
        triggers_remove(a->tr, topic, function, on_untriggered, NULL);
}

static cJSON *shown(const api *a, const http_request *req, cJSON *s);

/* Saves the schedule now that its trigger (if any) is in place. */
static void put_schedule(schedule_req *r)
{
    api *a = r->a;
    char err[256] = "";
    int replaced = 0;
    int rc = schedules_put(a->sched, &r->def, &replaced, err, sizeof err);
    if (rc == ERR_INVAL) {
        http_respond_error(r->req, 400, "bad_schedule", "%s", err);
    } else if (rc) {
        http_respond_error(r->req, 503, "store_unavailable", "%s", err);
    } else {
        if (r->old_function[0] && strcmp(r->old_function, r->def.function) != 0)
            untrigger(a, r->old_topic, r->old_function);
        api_respond_durable(a, r->req, replaced ? 200 : 201,
                            shown(a, r->req, schedules_json(a->sched, r->def.name)));
    }
    req_free(r);
}

static void on_triggered(void *data, int status)
{
    schedule_req *r = data;
    if (status) {
        http_respond_error(r->req, 503, "store_unavailable",
                           "cannot add the trigger from '%s' to '%s': %s", r->def.topic,
                           r->def.function, err_str(status));
        req_free(r);
        return;
    }
    put_schedule(r);
}

/* A string member of the body into out (at most cap - 1 bytes); absent is
 * "". 0, or -1 having answered 400. */
static int member(http_request *req, const cJSON *doc, const char *key, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    out[0] = '\0';
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) {
        http_respond_error(req, 400, "bad_schedule", "'%s' must be a string", key);
        return -1;
    }
    if (strlen(v->valuestring) >= cap) {
        http_respond_error(req, 400, "bad_schedule", "'%s' is longer than %zu bytes", key, cap - 1);
        return -1;
    }
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static void add_schedule(api *a, http_request *req, const char *name)
{
    static const api_body_rules rules = {
        "bad_json",
        "the body must be a JSON object: {\"expression\": \"*/5 * * * *\", "
        "\"topic\": T | \"function\": F, \"payload\": P, \"tz\": Z}",
        "bad_schedule",
        "a string of the body holds a NUL (\\u0000), which no expression, name, zone or "
        "payload may",
    };
    cJSON *doc = api_json_object_body(req, &rules);
    if (!doc) return;
    schedule_req *r = calloc(1, sizeof *r);
    if (!r) {
        cJSON_Delete(doc);
        http_respond_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    r->a = a;
    r->req = req;
    reg_schedule *d = &r->def;
    snprintf(d->name, sizeof d->name, "%s", name);
    const char *expr_key =
        cJSON_GetObjectItemCaseSensitive(doc, "expression") ? "expression" : "cron";
    if (member(req, doc, expr_key, d->expression, sizeof d->expression) ||
        member(req, doc, "tz", d->zone, sizeof d->zone) ||
        member(req, doc, "topic", d->topic, sizeof d->topic) ||
        member(req, doc, "function", d->function, sizeof d->function))
        goto done;
    if (!d->expression[0]) {
        http_respond_error(req, 400, "bad_schedule",
                           "'expression' is missing: five cron fields or @every DURATION");
        goto done;
    }
    if (!d->topic[0] == !d->function[0]) {
        http_respond_error(req, 400, "bad_schedule",
                           "give exactly one of 'topic' (publish there) and 'function' (run it)");
        goto done;
    }
    if (d->topic[0] && !name_is_topic(d->topic, strlen(d->topic))) {
        http_respond_error(req, 400, "bad_schedule", "'topic': '%s' is not a valid topic name",
                           d->topic);
        goto done;
    }
    if (d->function[0]) {
        if (!name_is_function(d->function, strlen(d->function))) {
            http_respond_error(req, 400, "bad_schedule", "'function': invalid function name '%s'",
                               d->function);
            goto done;
        }
        if (!functions_find(a->table, d->function, strlen(d->function))) {
            http_respond_error(req, 404, "not_found", "function '%s' does not exist", d->function);
            goto done;
        }
        snprintf(d->topic, sizeof d->topic, SCHEDULE_TOPIC_PREFIX "%s", name);
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(doc, "payload");
    if (p && !cJSON_IsNull(p)) {
        if (!cJSON_IsString(p)) {
            http_respond_error(req, 400, "bad_schedule",
                               "'payload' must be a string (the message published as it is)");
            goto done;
        }
        r->payload = strdup(p->valuestring);
        if (!r->payload) {
            http_respond_error(req, 503, "out_of_memory", "out of memory");
            goto done;
        }
        d->payload = r->payload;
        d->payload_len = strlen(r->payload);
    }
    char err[256];
    if (schedules_check(d, err, sizeof err) != 0) {
        http_respond_error(req, 400, "bad_schedule", "%s", err);
        goto done;
    }
    const reg_schedule *old = schedules_get(a->sched, name);
    if (old) {
        snprintf(r->old_function, sizeof r->old_function, "%s", old->function);
        snprintf(r->old_topic, sizeof r->old_topic, "%s", old->topic);
    }
    cJSON_Delete(doc);
    if (d->function[0] && !queue_find_sub(a->q, d->topic, d->function)) {
        queue_sub_config cfg = {.max_attempts = SPATE_MAX_ATTEMPTS_DEFAULT};
        snprintf(cfg.function, sizeof cfg.function, "%s", d->function);
        snprintf(cfg.dlq, sizeof cfg.dlq, SCHEDULE_TOPIC_PREFIX "%s.dlq", d->name);
        if (triggers_add(a->tr, d->topic, &cfg, on_triggered, r) != 0) {
            http_respond_error(req, 503, "unavailable", "cannot add the trigger now");
            req_free(r);
        }
        return;
    }
    put_schedule(r);
    return;
done:
    cJSON_Delete(doc);
    req_free(r);
}

static void remove_schedule(api *a, http_request *req, const char *name)
{
    const reg_schedule *s = schedules_get(a->sched, name);
    if (!s) {
        http_respond_error(req, 404, "not_found", "no schedule '%s'", name);
        return;
    }
    char topic[SPATE_TOPIC_NAME_MAX + 1], function[SPATE_NAME_MAX + 1];
    snprintf(topic, sizeof topic, "%s", s->topic);
    snprintf(function, sizeof function, "%s", s->function);
    int rc = schedules_remove(a->sched, name);
    if (rc) {
        http_respond_error(req, 503, "store_unavailable", "cannot remove the schedule: %s",
                           err_str(rc));
        return;
    }
    /* The trigger this schedule's --function made goes with it. */
    if (function[0]) untrigger(a, topic, function);
    api_respond_durable(a, req, 204, NULL);
}

/* A payload may be as private as a message's (reading those needs admin):
 * others see that there is one, not what it says. */
static cJSON *shown(const api *a, const http_request *req, cJSON *s)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(s, "payload");
    if (s && cJSON_IsString(p) && !api_caller_is_admin(a, req)) {
        cJSON_ReplaceItemInObjectCaseSensitive(s, "payload", cJSON_CreateNull());
        cJSON_AddBoolToObject(s, "payload_hidden", 1);
    }
    return s;
}

void api_schedules(api *a, http_request *req, const route_match *m)
{
    int get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    if (!a->sched) {
        http_respond_error(req, 503, "unavailable", "schedules are not running on this node");
        return;
    }
    if (m->route == R_SCHEDULES) {
        if (!get) return api_method_not_allowed(req, "GET, HEAD");
        cJSON *doc = schedules_json_all(a->sched), *one;
        cJSON_ArrayForEach(one, cJSON_GetObjectItemCaseSensitive(doc, "schedules"))
            shown(a, req, one);
        api_respond_json(req, 200, doc);
        return;
    }
    if (!name_is_function(m->name, m->name_len)) {
        http_respond_error(req, 400, "bad_name",
                           "invalid schedule name '%.*s': " NAME_FUNCTION_RULE,
                           API_NAME_FMT(m->name_len), m->name, SPATE_NAME_MAX);
        return;
    }
    char name[SPATE_NAME_MAX + 1];
    memcpy(name, m->name, m->name_len);
    name[m->name_len] = '\0';
    if (req->method == HTTP_PUT) {
        add_schedule(a, req, name);
    } else if (req->method == HTTP_DELETE) {
        remove_schedule(a, req, name);
    } else if (get) {
        cJSON *doc = shown(a, req, schedules_json(a->sched, name));
        if (!doc)
            http_respond_error(req, 404, "not_found", "no schedule '%s'", name);
        else
            api_respond_json(req, 200, doc);
    } else {
        api_method_not_allowed(req, "GET, HEAD, PUT, DELETE");
    }
}
