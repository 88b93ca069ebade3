/*
 * sqs_query.c - SQS's query/XML protocol (Action=...&Version=2012-11-05,
 * form-encoded; answers in XML in the 2012-11-05 namespace), as Debian's
 * awscli 2.9 and python3-boto3 1.26 speak it. It is a codec only: the form
 * becomes the JSON protocol's input object and the action's answer object
 * becomes XML, so that the actions (sqs.c) are the same for both protocols.
 *
 * The form's keys: plain members (QueueUrl=...), flattened lists
 * (AttributeName.1=All), maps (Attribute.1.Name=X&Attribute.1.Value=Y) and
 * lists of structures (SendMessageBatchRequestEntry.1.Id=a). Each index is
 * bounded, and each key checked against what SQS's model has; anything else
 * is left out of the object, as SQS ignores parameters it does not know.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/sqs.h"
#include "common/buf.h"
#include "common/limits.h"

#define XMLNS "http://queue.amazonaws.com/doc/2012-11-05/"

/* Members whose values are numbers in the JSON protocol. */
static int numeric(const char *name)
{
    static const char *const nums[] = {"MaxNumberOfMessages", "VisibilityTimeout",
                                       "WaitTimeSeconds", "DelaySeconds", "MaxResults"};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (strcmp(name, nums[i]) == 0) return 1;
    return 0;
}

/* Flattened lists of strings: the form's name, the JSON member. */
static const char *const lists[][2] = {
    {"AttributeName", "AttributeNames"},
    {"MessageSystemAttributeName", "MessageSystemAttributeNames"},
    {"MessageAttributeName", "MessageAttributeNames"},
};

/* Lists of structures: batch entries, in every batch action. */
static const char *const entry_lists[] = {
    "SendMessageBatchRequestEntry",
    "DeleteMessageBatchRequestEntry",
    "ChangeMessageVisibilityBatchRequestEntry",
};

/* The highest index a form may use: a batch's entries, a queue's or a
 * message's attributes (SQS allows 10 message attributes; queue attributes
 * are fewer than 20). */
#define MAX_INDEX 20

typedef struct form {
    cJSON *in;
    char action[40];
    int has_action;
    int err; /* an sqs_err, or -1 */
    char why[200];
} form;

/* The slot of index idx (1-based) in the array member name of obj,
 * created with the elements before it (objects, or NULL items when
 * strings): NULL on a bad index. */
static cJSON *slot(cJSON *obj, const char *name, long idx, int objects)
{
    if (idx < 1 || idx > MAX_INDEX) return NULL;
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!arr) arr = cJSON_AddArrayToObject(obj, name);
    if (!arr) return NULL;
    while (cJSON_GetArraySize(arr) < idx)
        cJSON_AddItemToArray(arr, objects ? cJSON_CreateObject() : cJSON_CreateNull());
    return cJSON_GetArrayItem(arr, (int)idx - 1);
}

static void set_member(cJSON *obj, const char *name, const char *val)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
    char *end = NULL;
    double d = numeric(name) ? strtod(val, &end) : 0;
    if (end && end != val && *end == '\0')
        cJSON_AddNumberToObject(obj, name, d);
    else
        cJSON_AddStringToObject(obj, name, val);
}

/* N.rest from p: the index and what follows its dot (NULL: nothing). */
static long index_of(const char *p, const char **rest)
{
    char *end;
    long idx = strtol(p, &end, 10);
    if (end == p) return -1;
    *rest = *end == '.' ? end + 1 : (*end == '\0' ? NULL : "");
    return idx;
}

/* Attribute.N.Name / .Value pairs: kept by index while the form is read
 * (names and values may come in any order), made a map at the end. */
static void map_part(cJSON *obj, const char *pairs, long idx, const char *part, const char *val)
{
    cJSON *s = slot(obj, pairs, idx, 1);
    if (!s || (strcmp(part, "Name") != 0 && strncmp(part, "Value", 5) != 0)) return;
    /* A message attribute's Value.StringValue / Value.DataType: kept whole. */
    cJSON_DeleteItemFromObjectCaseSensitive(s, part);
    cJSON_AddStringToObject(s, part, val);
}

#define MSG_PAIRS " message attribute pairs"

/* N.Name, N.Value.DataType, N.Value.StringValue or N.Value.BinaryValue of a
 * message's attributes (p after "MessageAttribute."), into obj's pairs. */
static void message_attribute(cJSON *obj, const char *p, const char *val)
{
    const char *rest = NULL;
    long idx = index_of(p, &rest);
    if (rest && *rest) map_part(obj, MSG_PAIRS, idx, rest, val);
}

/* obj's message attribute pairs become its MessageAttributes map, in the
 * JSON protocol's shape. */
static void message_attributes(cJSON *obj)
{
    cJSON *pairs = cJSON_DetachItemFromObjectCaseSensitive(obj, MSG_PAIRS), *p;
    if (!pairs) return;
    cJSON *map = cJSON_AddObjectToObject(obj, "MessageAttributes");
    cJSON_ArrayForEach(p, pairs)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "Name");
        if (!cJSON_IsString(n) || cJSON_GetObjectItemCaseSensitive(map, n->valuestring)) continue;
        cJSON *v = cJSON_AddObjectToObject(map, n->valuestring);
        static const char *const parts[] = {"DataType", "StringValue", "BinaryValue"};
        for (size_t i = 0; i < 3; i++) {
            char key[24];
            snprintf(key, sizeof key, "Value.%s", parts[i]);
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(p, key);
            if (cJSON_IsString(x)) cJSON_AddStringToObject(v, parts[i], x->valuestring);
        }
    }
    cJSON_Delete(pairs);
}

static int on_pair(const char *key, size_t klen, const char *val, size_t vlen, void *data)
{
    form *f = data;
    if (memchr(key, '\0', klen)) return 0;
    if (memchr(val, '\0', vlen)) {
        f->err = SQS_CONTENTS;
        snprintf(f->why, sizeof f->why, "the value of %.60s holds a NUL character", key);
        return 1;
    }
    if (strcmp(key, "Action") == 0) {
        /* Once only: the scope is checked on the first (sqs_query_action). */
        if (f->has_action) {
            f->err = SQS_INVALID_PARAMETER;
            snprintf(f->why, sizeof f->why, "the parameter Action is given more than once");
            return 1;
        }
        f->has_action = 1;
        snprintf(f->action, sizeof f->action, "%.*s", (int)(vlen < 39 ? vlen : 39), val);
        return 0;
    }
    if (strcmp(key, "Version") == 0) return 0;
    const char *dot = strchr(key, '.'), *rest = NULL;
    if (!dot) {
        set_member(f->in, key, val);
        return 0;
    }
    size_t head = (size_t)(dot - key);
    long idx = index_of(dot + 1, &rest);
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (strlen(lists[i][0]) == head && strncmp(key, lists[i][0], head) == 0 && !rest) {
            cJSON *arr = cJSON_GetObjectItemCaseSensitive(f->in, lists[i][1]);
            if (slot(f->in, lists[i][1], idx, 0) && !arr)
                arr = cJSON_GetObjectItemCaseSensitive(f->in, lists[i][1]);
            if (arr && idx >= 1 && idx <= MAX_INDEX)
                cJSON_ReplaceItemInArray(arr, (int)idx - 1, cJSON_CreateString(val));
            return 0;
        }
    for (size_t i = 0; i < sizeof entry_lists / sizeof entry_lists[0]; i++)
        if (strlen(entry_lists[i]) == head && strncmp(key, entry_lists[i], head) == 0 && rest &&
            *rest) {
            cJSON *e = slot(f->in, "Entries", idx, 1);
            if (e && !strchr(rest, '.')) set_member(e, rest, val);
            if (e && strncmp(rest, "MessageAttribute.", 17) == 0) /* its attributes */
                message_attribute(e, rest + 17, val);
            return 0;
        }
    if (head == 9 && strncmp(key, "Attribute", 9) == 0 && rest && *rest) {
        map_part(f->in, " attribute pairs", idx, rest, val);
        return 0;
    }
    if (head == 16 && strncmp(key, "MessageAttribute", 16) == 0) {
        message_attribute(f->in, dot + 1, val);
        return 0;
    }
    /* CreateQueue's Tag.N.Key/Value: not kept yet, so refused as the JSON
     * protocol's tags are (create_queue), not dropped unsaid. */
    if (head == 3 && strncmp(key, "Tag", 3) == 0) {
        if (!cJSON_GetObjectItemCaseSensitive(f->in, "tags"))
            cJSON_AddObjectToObject(f->in, "tags");
        return 0;
    }
    return 0; /* SQS ignores what it does not know */
}

int sqs_query_read(const char *body, size_t len, cJSON **in, char *action, size_t cap, char *why,
                   size_t whycap)
{
    form f = {.in = cJSON_CreateObject(), .err = -1};
    char *text = malloc(len + 1);
    if (!f.in || !text) {
        cJSON_Delete(f.in);
        free(text);
        snprintf(why, whycap, "out of memory");
        return SQS_INTERNAL;
    }
    if (len) memcpy(text, body, len);
    text[len] = '\0';
    int rc = memchr(text, '\0', len) ? -1 : http_query_parse(text, on_pair, &f);
    free(text);
    if (f.err < 0 && rc) {
        f.err = SQS_MALFORMED;
        snprintf(f.why, sizeof f.why, "the form is not valid: a bad %%-escape or a NUL byte");
    }
    /* The pairs of Attribute.N become the Attributes map. */
    cJSON *pairs = cJSON_DetachItemFromObjectCaseSensitive(f.in, " attribute pairs"), *p;
    if (pairs && f.err < 0) {
        cJSON *map = cJSON_AddObjectToObject(f.in, "Attributes");
        cJSON_ArrayForEach(p, pairs)
        {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "Name");
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "Value");
            if (!cJSON_IsString(n) || !cJSON_IsString(v)) continue;
            cJSON_DeleteItemFromObjectCaseSensitive(map, n->valuestring);
            cJSON_AddStringToObject(map, n->valuestring, v->valuestring);
        }
    }
    cJSON_Delete(pairs);
    message_attributes(f.in);
    cJSON *entries = cJSON_GetObjectItemCaseSensitive(f.in, "Entries"), *e;
    cJSON_ArrayForEach(e, entries) message_attributes(e);
    if (f.err >= 0) {
        cJSON_Delete(f.in);
        snprintf(why, whycap, "%s", f.why);
        return f.err;
    }
    snprintf(action, cap, "%s", f.action);
    *in = f.in;
    return -1;
}

/* --- XML --------------------------------------------------------------------------------- */

/* The answer being written; a failed append (out of memory) fails it whole. */
typedef struct xbuf {
    buf b;
    int failed;
} xbuf;

static void put(xbuf *x, const char *s, size_t n)
{
    if (!x->failed && buf_append(&x->b, s, n)) x->failed = 1;
}

static void puts_(xbuf *x, const char *s)
{
    put(x, s, strlen(s));
}

static void putf(xbuf *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(xbuf *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (!x->failed && buf_vprintf(&x->b, fmt, ap)) x->failed = 1;
    va_end(ap);
}

/* Runs of plain characters go in at once: a byte at a time made this most
 * of an XML answer's cost (bench/sqs, the query protocol's round trips). */
static void escaped(xbuf *b, const char *s)
{
    for (;;) {
        size_t n = strcspn(s, "<>&\"\r");
        put(b, s, n);
        s += n;
        switch (*s) {
        case '\0':
            return;
        case '<':
            puts_(b, "&lt;");
            break;
        case '>':
            puts_(b, "&gt;");
            break;
        case '&':
            puts_(b, "&amp;");
            break;
        case '"':
            puts_(b, "&quot;");
            break;
        default: /* '\r' */
            puts_(b, "&#xD;");
        }
        s++;
    }
}

/* <name> or </name>, without a printf: a few of them for each member. */
static void tag(xbuf *b, const char *open, const char *name)
{
    puts_(b, open);
    puts_(b, name);
    put(b, ">", 1);
}

static void element(xbuf *b, const char *name, const cJSON *v, const char *action);

/* The element name of each item of a flattened list member. */
static const char *item_name(const char *member, const char *action)
{
    static char entry[64];
    if (strcmp(member, "Messages") == 0) return "Message";
    if (strcmp(member, "QueueUrls") == 0) return "QueueUrl";
    if (strcmp(member, "Failed") == 0) return "BatchResultErrorEntry";
    snprintf(entry, sizeof entry, "%sResultEntry", action); /* Successful */
    return entry;
}

static void members(xbuf *b, const cJSON *obj, const char *action)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, obj)
    {
        if (cJSON_IsArray(m)) { /* flattened: the items stand for the member */
            const char *item = item_name(m->string, action);
            const cJSON *it;
            cJSON_ArrayForEach(it, m) element(b, item, it, action);
        } else if (cJSON_IsObject(m) && (strcmp(m->string, "Attributes") == 0 ||
                                         strcmp(m->string, "MessageAttributes") == 0)) {
            /* A flattened map: an element of Name and Value for each. */
            const char *item = m->string[0] == 'M' ? "MessageAttribute" : "Attribute";
            const cJSON *a;
            cJSON_ArrayForEach(a, m)
            {
                tag(b, "<", item);
                puts_(b, "<Name>");
                escaped(b, a->string);
                puts_(b, "</Name>");
                element(b, "Value", a, action);
                tag(b, "</", item);
            }
        } else {
            element(b, m->string, m, action);
        }
    }
}

static void element(xbuf *b, const char *name, const cJSON *v, const char *action)
{
    tag(b, "<", name);
    if (cJSON_IsString(v))
        escaped(b, v->valuestring);
    else if (cJSON_IsBool(v))
        puts_(b, cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNumber(v))
        putf(b, "%.0f", v->valuedouble);
    else if (cJSON_IsObject(v))
        members(b, v, action);
    tag(b, "</", name);
}

char *sqs_query_render(const char *action, const cJSON *out, const char *request_id, size_t *len)
{
    xbuf b = {.failed = 0};
    buf_init(&b.b, 64u * SPATE_SQS_MESSAGE_MAX); /* ten messages, escaped, with room */
    putf(&b, "<?xml version=\"1.0\"?><%sResponse xmlns=\"" XMLNS "\"><%sResult>", action, action);
    members(&b, out, action);
    putf(&b,
         "</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></"
         "%sResponse>",
         action, request_id, action);
    put(&b, "", 1);
    if (b.failed) {
        buf_free(&b.b);
        return NULL;
    }
    char *text = buf_detach(&b.b, len);
    if (text) (*len)--; /* the NUL is not sent */
    return text;
}

char *sqs_query_error(const char *code, int sender, const char *message, const char *request_id,
                      size_t *len)
{
    xbuf b = {.failed = 0};
    buf_init(&b.b, 4096 + 6 * strlen(message));
    putf(&b,
         "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"" XMLNS "\"><Error><Type>%s</Type>"
         "<Code>",
         sender ? "Sender" : "Receiver");
    escaped(&b, code);
    puts_(&b, "</Code><Message>");
    escaped(&b, message);
    putf(&b, "</Message><Detail/></Error><RequestId>%s</RequestId></ErrorResponse>", request_id);
    put(&b, "", 1);
    if (b.failed) {
        buf_free(&b.b);
        return NULL;
    }
    char *text = buf_detach(&b.b, len);
    if (text) (*len)--;
    return text;
}

/* The Action of a form, for the scope it needs (ANY when none). */
static int action_only(const char *key, size_t klen, const char *val, size_t vlen, void *data)
{
    if (klen == 6 && memcmp(key, "Action", 6) == 0) {
        snprintf(data, 40, "%.*s", (int)(vlen < 39 ? vlen : 39), val);
        return 1;
    }
    return 0;
}

void sqs_query_action(const char *body, size_t len, char action[40])
{
    action[0] = '\0';
    char *text = malloc(len + 1);
    if (!text) return;
    if (len) memcpy(text, body, len);
    text[len] = '\0';
    if (!memchr(text, '\0', len)) http_query_parse(text, action_only, action);
    free(text);
}
