#include "common/lambda.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/hash.h"

static int only_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return 0;
    return 1;
}

static int each_id(const cJSON *list, int (*on_id)(const char *id, void *data), void *data,
                   char *why, size_t why_cap)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "itemIdentifier");
        if (!cJSON_IsObject(item) || !cJSON_IsString(id) || !id->valuestring[0]) {
            snprintf(why, why_cap,
                     "each batchItemFailures entry must be {\"itemIdentifier\": \"<messageId>\"}");
            return ERR_INVAL;
        }
        if (on_id(id->valuestring, data)) {
            snprintf(why, why_cap, "itemIdentifier '%.64s' is no message of the batch",
                     id->valuestring);
            return ERR_INVAL;
        }
    }
    return 0;
}

int lambda_batch_failures(const char *body, size_t len, int (*on_id)(const char *id, void *data),
                          void *data, char *why, size_t why_cap)
{
    if (!body || only_space(body, len)) return 0;
    cJSON *doc = cJSON_ParseWithLength(body, len);
    if (!doc) {
        snprintf(why, why_cap, "the answer is not JSON");
        return ERR_INVAL;
    }
    int rc = 0;
    if (cJSON_IsNull(doc)) {
        rc = 0;
    } else if (!cJSON_IsObject(doc)) {
        snprintf(why, why_cap, "the answer is not a JSON object with batchItemFailures");
        rc = ERR_INVAL;
    } else {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "batchItemFailures");
        if (list && !cJSON_IsNull(list) && !cJSON_IsArray(list)) {
            snprintf(why, why_cap, "batchItemFailures is not a list");
            rc = ERR_INVAL;
        } else if (cJSON_IsArray(list)) {
            rc = each_id(list, on_id, data, why, why_cap);
        }
    }
    cJSON_Delete(doc);
    return rc;
}

/* Decimal digits at s as a number, at most 1000; 0 when none. */
static uint32_t small_number(const char *s)
{
    uint32_t n = 0;
    for (; *s >= '0' && *s <= '9'; s++)
        if ((n = n * 10 + (uint32_t)(*s - '0')) > 1000) return 1000;
    return n;
}

uint32_t lambda_trace_lineage(const char *trace)
{
    const char *l = trace ? strstr(trace, "Lineage=") : NULL;
    if (!l) return 0;
    l += sizeof "Lineage=" - 1;
    size_t hash = strspn(l, "0123456789abcdefABCDEF");
    return hash && l[hash] == ':' ? small_number(l + hash + 1) : 0;
}

uint32_t lambda_sqs_lineage(const char *headers, size_t len)
{
    /* Cheap for the messages of a batch that have attributes but no
     * lineage: parsed only when the name is there. */
    if (!headers || !len ||
        !memmem(headers, len, LAMBDA_SQS_LINEAGE_ATTR, sizeof LAMBDA_SQS_LINEAGE_ATTR - 1))
        return 0;
    cJSON *doc = cJSON_ParseWithLength(headers, len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, LAMBDA_SQS_LINEAGE_ATTR);
    uint32_t n = cJSON_IsString(v) ? small_number(v->valuestring) : 0;
    cJSON_Delete(doc);
    return n;
}

int lambda_json_is_object(const char *s, size_t len)
{
    cJSON *doc = cJSON_ParseWithLength(s, len);
    int ok = cJSON_IsObject(doc);
    cJSON_Delete(doc);
    return ok;
}

size_t lambda_async_attrs_write(const lambda_async_attrs *a, char *out, size_t cap)
{
    int n = 0;
    out[0] = '\0';
    if (a->version)
        n = snprintf(out, cap, "{\"" LAMBDA_ASYNC_VERSION_HEADER "\":\"%u\"", a->version);
    if (a->hops && n >= 0 && (size_t)n < cap)
        n += snprintf(out + n, cap - (size_t)n, "%s\"" LAMBDA_ASYNC_HOPS_HEADER "\":\"%u\"",
                      n ? "," : "{", a->hops);
    if (n > 0 && (size_t)n < cap) n += snprintf(out + n, cap - (size_t)n, "}");
    return n > 0 && (size_t)n < cap ? (size_t)n : (out[0] = '\0', 0);
}

static uint32_t number_of(const cJSON *doc, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
    if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > 9) return 0;
    for (const char *p = v->valuestring; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return (uint32_t)strtoul(v->valuestring, NULL, 10);
}

void lambda_async_attrs_read(const char *headers, size_t len, lambda_async_attrs *out)
{
    out->version = out->hops = 0;
    if (!headers || !len) return;
    cJSON *doc = cJSON_ParseWithLength(headers, len);
    if (cJSON_IsObject(doc)) {
        out->version = number_of(doc, LAMBDA_ASYNC_VERSION_HEADER);
        out->hops = number_of(doc, LAMBDA_ASYNC_HOPS_HEADER);
    }
    cJSON_Delete(doc);
}

int lambda_sqs_attrs_each(const char *headers, size_t len, int max,
                          int (*on_attr)(const char *name, const char *type, const char *value,
                                         int binary, void *data),
                          void *data)
{
    cJSON *map = headers && len ? cJSON_ParseWithLength(headers, len) : NULL;
    int rc = 0, count = 0;
    const cJSON *it, *obj = cJSON_IsObject(map) ? map : NULL;
    cJSON_ArrayForEach(it, obj)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "DataType");
        const cJSON *sv = cJSON_GetObjectItemCaseSensitive(it, "StringValue");
        const cJSON *bv = cJSON_GetObjectItemCaseSensitive(it, "BinaryValue");
        const cJSON *v = cJSON_IsString(sv) ? sv : bv;
        if (!it->string || !cJSON_IsString(type) || !cJSON_IsString(v)) continue;
        if (count++ == max) break;
        rc = on_attr(it->string, type->valuestring, v->valuestring, v != sv, data);
        if (rc) break;
    }
    cJSON_Delete(map);
    return rc;
}

void lambda_sqs_message_id(const char *qname, int64_t created, uint64_t seq,
                           char out[LAMBDA_SQS_MESSAGE_ID_LEN + 1])
{
    uint64_t h = hash_fnv1a(qname, strlen(qname));
    if (created > 0) h ^= (uint64_t)created * 0x9e3779b97f4a7c15ull;
    snprintf(out, LAMBDA_SQS_MESSAGE_ID_LEN + 1, "%08x-%04x-4%03x-8%03x-%012llx",
             (unsigned)(h >> 32), (unsigned)(h >> 16) & 0xffff, (unsigned)(h >> 4) & 0xfff,
             (unsigned)(seq >> 48) & 0xfff, (unsigned long long)(seq & 0xffffffffffffull));
}

int lambda_sqs_message_seq(const char *qname, int64_t created, const char *id, uint64_t *seq)
{
    /* 8-4-4-4-12 lowercase hex: the seq is the fourth group's last three
     * digits and the fifth; the rest must be the queue's (written again). */
    if (strlen(id) != LAMBDA_SQS_MESSAGE_ID_LEN) return -1;
    uint64_t v = 0;
    for (int i = 20; i < LAMBDA_SQS_MESSAGE_ID_LEN; i++) {
        char c = id[i];
        if (i == 23) {
            if (c != '-') return -1;
            continue;
        }
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    char again[LAMBDA_SQS_MESSAGE_ID_LEN + 1];
    lambda_sqs_message_id(qname, created, v, again);
    if (strcmp(again, id) != 0) return -1;
    *seq = v;
    return 0;
}
