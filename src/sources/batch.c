/*
 * batch.c - what a connector's fetch fills (connector.h): entries, their
 * payloads and keys in one buffer, and their upstream headers as one JSON
 * object of strings each.
 */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/limits.h"
#include "common/utf8.h"
#include "sources/connector.h"

void src_batch_init(src_batch *b)
{
    memset(b, 0, sizeof *b);
    buf_init(&b->bytes, (size_t)-1);
}

void src_batch_reset(src_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->e[i].id);
    }
    b->n = 0;
    buf_reset(&b->bytes);
}

void src_batch_free(src_batch *b)
{
    src_batch_reset(b);
    free(b->e);
    buf_free(&b->bytes);
    memset(b, 0, sizeof *b);
}

src_entry *src_batch_add(src_batch *b, const char *id, size_t id_len)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        src_entry *e = realloc(b->e, cap * sizeof *e);
        if (!e) return NULL;
        b->e = e;
        b->cap = cap;
    }
    src_entry *e = &b->e[b->n];
    memset(e, 0, sizeof *e);
    e->id = strndup(id, id_len);
    if (!e->id) return NULL;
    b->n++;
    return e;
}

void src_entry_refuse(src_entry *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->refused, sizeof e->refused, fmt, ap);
    va_end(ap);
}

/* Appends s as the inside of a JSON string. Bytes that are not UTF-8 text
 * are taken one by one as U+0000..U+00FF (Latin-1), so any header value
 * makes valid JSON; control characters are escaped. */
static int append_json_chars(buf *o, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t run = i;
        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\') run++;
        if (run > i && buf_append(o, s + i, run - i) != 0) return -1;
        i = run;
        if (i == n) break;
        unsigned c = s[i];
        if (c >= 0x80) {
            size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            if (len > 1 && i + len <= n && utf8_valid((const char *)s + i, len)) {
                if (buf_append(o, s + i, len) != 0) return -1;
                i += len;
                continue;
            }
        }
        char esc[8];
        int m = c == '"'    ? snprintf(esc, sizeof esc, "\\\"")
                : c == '\\' ? snprintf(esc, sizeof esc, "\\\\")
                            : snprintf(esc, sizeof esc, "\\u%04x", c);
        if (buf_append(o, esc, (size_t)m) != 0) return -1;
        i++;
    }
    return 0;
}

int src_entry_header(src_batch *b, src_entry *e, const char *name, size_t nlen, const void *val,
                     size_t vlen)
{
    if (e->refused[0]) return 0;
    if (!e->hdr_len) e->hdr_at = b->bytes.len;
    size_t before = b->bytes.len;
    if (buf_append(&b->bytes, e->hdr_len ? "," : "{", 1) != 0 ||
        buf_append(&b->bytes, "\"", 1) != 0 ||
        append_json_chars(&b->bytes, (const unsigned char *)name, nlen) != 0 ||
        buf_append(&b->bytes, "\":\"", 3) != 0 || append_json_chars(&b->bytes, val, vlen) != 0 ||
        buf_append(&b->bytes, "\"", 1) != 0)
        return -1;
    e->hdr_len += b->bytes.len - before;
    if (e->hdr_len + 1 > SPATE_SOURCE_HEADERS_MAX) {
        b->bytes.len = e->hdr_at;
        e->hdr_len = 0;
        src_entry_refuse(e, "its upstream headers are over %u bytes as JSON",
                         (unsigned)SPATE_SOURCE_HEADERS_MAX);
    }
    return 0;
}

int src_entry_headers_end(src_batch *b, src_entry *e)
{
    if (!e->hdr_len || e->refused[0]) return 0;
    if (buf_append(&b->bytes, "}", 1) != 0) return -1;
    e->hdr_len++;
    return 0;
}

int src_entry_key_from_json(src_batch *b, src_entry *e, const char *field)
{
    if (e->refused[0]) return 0;
    const char *p = b->bytes.data + e->data_at, *end = NULL;
    /* The whole payload is the object, as Spate-Key-Field reads a line. */
    cJSON *doc = e->len ? cJSON_ParseWithLengthOpts(p, e->len, &end, 0) : NULL;
    while (doc && end && end < p + e->len && memchr(" \t\r\n", *end, 4)) end++;
    if (!cJSON_IsObject(doc) || end != p + e->len) {
        cJSON_Delete(doc);
        src_entry_refuse(e, "the message is not a JSON object: no key field '%.64s' in it", field);
        return 0;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);
    char *text = NULL;
    const char *key = NULL;
    if (cJSON_IsString(v))
        key = v->valuestring;
    else if (cJSON_IsNumber(v) || cJSON_IsBool(v))
        key = text = cJSON_PrintUnformatted(v);
    int rc = 0;
    if (!key && (cJSON_IsString(v) || cJSON_IsNumber(v) || cJSON_IsBool(v))) {
        rc = -1;
    } else if (!key) {
        src_entry_refuse(e, "the key field '%.64s' is missing (or not a string or number)", field);
    } else if (strlen(key) > SPATE_KEY_MAX || !utf8_valid(key, strlen(key))) {
        src_entry_refuse(e, "the key is over %d bytes or not valid UTF-8", SPATE_KEY_MAX);
    } else {
        e->key_at = b->bytes.len;
        e->key_len = strlen(key);
        e->has_key = 1;
        /* NUL-terminated, as the queue copies keys (key_len + 1 bytes). */
        rc = buf_append(&b->bytes, key, e->key_len + 1) != 0 ? -1 : 0;
    }
    free(text);
    cJSON_Delete(doc);
    return rc;
}
