/*
 * entries.c - schedules, sources and aliases as the registry bucket keeps
 * them (sc.NAME, so.NAME, al.FUNCTION.ALIAS): JSON both ways. A source's URL is kept whole,
 * credentials included, as the SQLite registry keeps it: the bucket must be
 * protected (docs/operations.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "common/limits.h"

char *cluster__schedule_json(const reg_schedule *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddStringToObject(o, "expression", s->expression);
    cJSON_AddStringToObject(o, "zone", s->zone);
    cJSON_AddStringToObject(o, "topic", s->topic);
    cJSON_AddStringToObject(o, "function", s->function);
    if (s->payload) {
        /* Checked UTF-8 without NULs (schedules_check): a string. */
        char *p = strndup(s->payload, s->payload_len);
        cJSON_AddStringToObject(o, "payload", p ? p : "");
        free(p);
    } else {
        cJSON_AddNullToObject(o, "payload");
    }
    cJSON_AddNumberToObject(o, "created_ms", (double)s->created_ms);
    cJSON_AddNumberToObject(o, "last_fire_ms", (double)s->last_fire_ms);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* A string member into out (cap bytes with its NUL); -1 when absent, not a
 * string or too long. */
static int str_member(const cJSON *o, const char *key, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) return -1;
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int64_t num_member(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && v->valuedouble > 0 ? (int64_t)v->valuedouble : 0;
}

int cluster__schedule_parse(const char *text, reg_schedule *s, char **payload)
{
    memset(s, 0, sizeof *s);
    *payload = NULL;
    cJSON *o = cJSON_Parse(text);
    int rc = -1;
    if (!cJSON_IsObject(o) || str_member(o, "name", s->name, sizeof s->name) ||
        str_member(o, "expression", s->expression, sizeof s->expression) ||
        str_member(o, "zone", s->zone, sizeof s->zone) ||
        str_member(o, "topic", s->topic, sizeof s->topic) ||
        str_member(o, "function", s->function, sizeof s->function))
        goto done;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "payload");
    if (cJSON_IsString(p)) {
        if (strlen(p->valuestring) > SPATE_SCHEDULE_PAYLOAD_MAX ||
            !(*payload = strdup(p->valuestring)))
            goto done;
        s->payload = *payload;
        s->payload_len = strlen(*payload);
    }
    s->created_ms = num_member(o, "created_ms");
    s->last_fire_ms = num_member(o, "last_fire_ms");
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

char *cluster__source_json(const reg_source *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddStringToObject(o, "url", s->url);
    cJSON_AddStringToObject(o, "topic", s->topic);
    cJSON_AddStringToObject(o, "key_field", s->key_field);
    cJSON_AddNumberToObject(o, "created_ms", (double)s->created_ms);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

int cluster__source_parse(const char *text, reg_source *s)
{
    memset(s, 0, sizeof *s);
    cJSON *o = cJSON_Parse(text);
    int rc = -1;
    if (cJSON_IsObject(o) && !str_member(o, "name", s->name, sizeof s->name) &&
        !str_member(o, "url", s->url, sizeof s->url) &&
        !str_member(o, "topic", s->topic, sizeof s->topic) &&
        !str_member(o, "key_field", s->key_field, sizeof s->key_field)) {
        s->created_ms = num_member(o, "created_ms");
        rc = 0;
    }
    cJSON_Delete(o);
    return rc;
}

char *cluster__alias_json(const reg_alias *a, const char *origin)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "origin", origin);
    cJSON_AddStringToObject(o, "function", a->function);
    cJSON_AddStringToObject(o, "name", a->name);
    cJSON_AddNumberToObject(o, "version", a->version);
    cJSON_AddNumberToObject(o, "weight_version", a->weight_version);
    cJSON_AddNumberToObject(o, "weight_percent", a->weight_percent);
    cJSON_AddNumberToObject(o, "created_ms", (double)a->created_ms);
    cJSON_AddNumberToObject(o, "updated_ms", (double)a->updated_ms);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

int cluster__alias_parse(const char *text, reg_alias *a, char *origin, size_t cap)
{
    memset(a, 0, sizeof *a);
    cJSON *o = cJSON_Parse(text);
    int rc = -1;
    if (origin && cap && str_member(o, "origin", origin, cap) != 0) origin[0] = '\0';
    if (cJSON_IsObject(o) && !str_member(o, "function", a->function, sizeof a->function) &&
        !str_member(o, "name", a->name, sizeof a->name)) {
        int64_t v = num_member(o, "version"), wv = num_member(o, "weight_version"),
                wp = num_member(o, "weight_percent");
        a->version = v <= SPATE_VERSION_MAX ? (uint32_t)v : 0;
        a->weight_version = wv <= SPATE_VERSION_MAX ? (uint32_t)wv : 0;
        a->weight_percent = wp < 100 ? (uint32_t)wp : 0;
        a->created_ms = num_member(o, "created_ms");
        a->updated_ms = num_member(o, "updated_ms");
        /* What functions_alias_set would have refused is no alias. */
        if (a->version &&
            (!a->weight_version || (a->weight_percent && a->weight_version != a->version)))
            rc = 0;
    }
    cJSON_Delete(o);
    return rc;
}
