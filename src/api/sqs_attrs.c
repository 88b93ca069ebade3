/*
 * sqs_attrs.c - SQS message attributes: checked as SQS checks them, their
 * digest (MD5OfMessageAttributes) exactly as SQS computes it, and the
 * selection a ReceiveMessage asks for (MessageAttributeNames).
 *
 * A message sent with attributes is stored with queue_attrs.source
 * SQS_ATTRS_SOURCE and its attributes, normalized, in queue_attrs.headers:
 * a JSON object {"NAME": {"DataType": T, "StringValue": S} or
 * {"DataType": T, "BinaryValue": BASE64}} (the JSON protocol's own shape).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/sqs.h"
#include "common/buf.h"
#include "common/hash.h"
#include "common/limits.h"

/* A name: [A-Za-z0-9_.-], 1..256, no leading or trailing '.', no "..",
 * not in AWS's own prefixes. */
static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SPATE_SQS_ATTR_NAME_MAX || s[0] == '.' || s[n - 1] == '.' ||
        strstr(s, "..") || strncasecmp(s, "aws.", 4) == 0 || strncasecmp(s, "amazon.", 7) == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
            return 0;
    return 1;
}

/* 1 String or Number (with a custom suffix), 2 Binary; 0 neither. */
static int transport(const char *type)
{
    static const char *const kinds[] = {"String", "Number", "Binary"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(type, kinds[i], n) == 0 && (type[n] == '\0' || type[n] == '.'))
            return i == 2 ? 2 : 1;
    }
    return 0;
}

/* A Number attribute's value, as SQS takes it: a decimal number (sign,
 * digits, a point, an exponent) of at most 38 significant digits, within
 * -10^128 .. 10^126; else consumers that read it as a number fail on it. */
static int number_ok(const char *s)
{
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    size_t digits = 0, lead = 1;
    int any = 0, point = 0;
    for (; (*p >= '0' && *p <= '9') || (*p == '.' && !point); p++) {
        if (*p == '.') {
            point = 1;
            continue;
        }
        any = 1;
        if (*p != '0') lead = 0;
        if (!lead) digits++;
    }
    if (!any) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+') p++;
        if (!(*p >= '0' && *p <= '9')) return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p || digits > 38) return 0;
    double v = strtod(s, NULL);
    return v >= -1e128 && v <= 1e126;
}

/* Decodes base64 into out (cap bytes at least 3/4 of len): its length, or
 * -1 when it is not base64. */
static long unbase64(const char *s, size_t len, unsigned char *out)
{
    if (len % 4) return -1;
    if (len == 0) return 0;
    int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
    if (n < 0) return -1;
    if (s[len - 1] == '=') n--; /* EVP_DecodeBlock counts the padding */
    if (s[len - 2] == '=') n--;
    return n;
}

int sqs_attrs_read(const cJSON *attrs, cJSON **norm, size_t *bytes, char *why, size_t cap)
{
    *norm = NULL;
    *bytes = 0;
    if (!attrs) return -1;
    if (!cJSON_IsObject(attrs)) {
        snprintf(why, cap, "MessageAttributes must be a map");
        return SQS_INVALID_PARAMETER;
    }
    if (cJSON_GetArraySize(attrs) > SPATE_SQS_ATTRS_MAX) {
        snprintf(why, cap, "number of message attributes [%d] exceeds the allowed maximum [%d]",
                 cJSON_GetArraySize(attrs), SPATE_SQS_ATTRS_MAX);
        return SQS_INVALID_PARAMETER;
    }
    cJSON *out = cJSON_CreateObject();
    if (!out) {
        snprintf(why, cap, "out of memory");
        return SQS_INTERNAL;
    }
    const cJSON *a;
    cJSON_ArrayForEach(a, attrs)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(a, "DataType");
        const cJSON *sv = cJSON_GetObjectItemCaseSensitive(a, "StringValue");
        const cJSON *bv = cJSON_GetObjectItemCaseSensitive(a, "BinaryValue");
        int e = SQS_INVALID_PARAMETER;
        if (!name_ok(a->string))
            snprintf(why, cap, "message attribute name '%.80s' is invalid", a->string);
        else if (cJSON_GetObjectItemCaseSensitive(out, a->string))
            snprintf(why, cap, "message attribute name '%.80s' is given twice", a->string);
        else if (!cJSON_IsString(type) || strlen(type->valuestring) > SPATE_SQS_ATTR_NAME_MAX ||
                 !transport(type->valuestring))
            snprintf(why, cap, "the message attribute '%.80s' has an invalid DataType", a->string);
        else if (cJSON_GetObjectItemCaseSensitive(a, "StringListValues") ||
                 cJSON_GetObjectItemCaseSensitive(a, "BinaryListValues"))
            e = SQS_UNSUPPORTED, snprintf(why, cap, "list values are not implemented (by SQS)");
        else if (transport(type->valuestring) == 1 && !(cJSON_IsString(sv) && *sv->valuestring))
            snprintf(why, cap, "the message attribute '%.80s' must contain a non-empty value",
                     a->string);
        else if (transport(type->valuestring) == 2 && !(cJSON_IsString(bv) && *bv->valuestring))
            snprintf(why, cap, "the message attribute '%.80s' must contain a non-empty value",
                     a->string);
        else if (strncmp(type->valuestring, "Number", 6) == 0 && !number_ok(sv->valuestring))
            snprintf(why, cap, "can't cast the value of message attribute '%.80s' to a number",
                     a->string);
        else
            e = -1;
        if (e < 0) {
            int bin = transport(type->valuestring) == 2;
            const char *v = bin ? bv->valuestring : sv->valuestring;
            size_t vlen = strlen(v);
            if ((!bin && !sqs_contents_ok(v, vlen)) ||
                !sqs_contents_ok(type->valuestring, strlen(type->valuestring))) {
                e = SQS_CONTENTS;
                snprintf(why, cap,
                         "the message attribute '%.80s' holds a character SQS does not accept "
                         "(#x9, #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF)",
                         a->string);
            } else if (bin && vlen > 4 * (SPATE_SQS_MESSAGE_MAX / 3 + 1)) {
                snprintf(why, cap, "the message attribute '%.80s' is too long", a->string);
            } else {
                size_t raw = vlen;
                if (bin) {
                    unsigned char *tmp = malloc(vlen / 4 * 3 + 3);
                    long n = tmp ? unbase64(v, vlen, tmp) : -1;
                    free(tmp);
                    if (n < 0) {
                        snprintf(why, cap, "the message attribute '%.80s' is not base64",
                                 a->string);
                        e = SQS_INVALID_PARAMETER;
                    }
                    raw = n < 0 ? 0 : (size_t)n;
                }
                if (e < 0) {
                    *bytes += strlen(a->string) + strlen(type->valuestring) + raw;
                    cJSON *o = cJSON_AddObjectToObject(out, a->string);
                    cJSON_AddStringToObject(o, "DataType", type->valuestring);
                    cJSON_AddStringToObject(o, bin ? "BinaryValue" : "StringValue", v);
                }
            }
        }
        if (e >= 0) {
            cJSON_Delete(out);
            return e;
        }
    }
    if (cJSON_GetArraySize(out) == 0) {
        cJSON_Delete(out);
        out = NULL;
    }
    *norm = out;
    return -1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static int put_len(buf *b, const void *p, size_t n)
{
    unsigned char be[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                           (unsigned char)(n >> 8), (unsigned char)n};
    return buf_append(b, be, 4) || buf_append(b, p, n);
}

/* SQS's digest: for each attribute in name order, the name, the data type
 * (each with its length, 4 bytes big-endian), the transport byte (1 for
 * String and Number, 2 for Binary) and the value with its length (a
 * Binary's decoded bytes). */
int sqs_attrs_md5(const cJSON *attrs, char out[HASH_MD5_HEX_LEN + 1])
{
    int n = cJSON_GetArraySize(attrs), i = 0, rc = 0;
    const cJSON **sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted), *a;
    if (!sorted) return -1;
    cJSON_ArrayForEach(a, attrs) sorted[i++] = a;
    qsort(sorted, (size_t)n, sizeof *sorted, by_name);
    buf b;
    buf_init(&b, 4 * SPATE_SQS_MESSAGE_MAX);
    for (i = 0; i < n && !rc; i++) {
        const char *name = sorted[i]->string;
        const char *type = cJSON_GetObjectItemCaseSensitive(sorted[i], "DataType")->valuestring;
        unsigned char t = (unsigned char)transport(type);
        rc = put_len(&b, name, strlen(name)) || put_len(&b, type, strlen(type)) ||
             buf_append(&b, &t, 1);
        if (rc) break;
        if (t == 2) {
            const char *v = cJSON_GetObjectItemCaseSensitive(sorted[i], "BinaryValue")->valuestring;
            size_t vlen = strlen(v);
            unsigned char *raw = malloc(vlen / 4 * 3 + 3);
            long m = raw ? unbase64(v, vlen, raw) : -1;
            rc = m < 0 || put_len(&b, raw, (size_t)m);
            free(raw);
        } else {
            const char *v = cJSON_GetObjectItemCaseSensitive(sorted[i], "StringValue")->valuestring;
            rc = put_len(&b, v, strlen(v));
        }
    }
    free(sorted);
    if (!rc) hash_md5_hex(b.data ? b.data : "", b.len, out);
    buf_free(&b);
    return rc ? -1 : 0;
}

/* Whether names (MessageAttributeNames: "All", ".*", "PREFIX.*" or a
 * name) asks for name. */
static int wanted(const cJSON *names, const char *name)
{
    const cJSON *n;
    cJSON_ArrayForEach(n, names)
    {
        if (!cJSON_IsString(n)) continue;
        const char *w = n->valuestring;
        size_t len = strlen(w);
        if (strcmp(w, "All") == 0 || strcmp(w, ".*") == 0 || strcmp(w, name) == 0) return 1;
        if (len > 2 && strcmp(w + len - 2, ".*") == 0 && strncmp(name, w, len - 1) == 0) return 1;
    }
    return 0;
}

cJSON *sqs_attrs_select(const char *json, size_t len, const cJSON *names)
{
    if (!names || !json) return NULL;
    cJSON *all = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(all)) {
        cJSON_Delete(all);
        return NULL;
    }
    for (cJSON *a = all->child, *next; a; a = next) {
        next = a->next;
        /* Not an attribute's shape: spate's own (LAMBDA_SQS_LINEAGE_ATTR). */
        if (!cJSON_IsObject(a) || !wanted(names, a->string))
            cJSON_Delete(cJSON_DetachItemViaPointer(all, a));
    }
    if (cJSON_GetArraySize(all) == 0) {
        cJSON_Delete(all);
        return NULL;
    }
    return all;
}
