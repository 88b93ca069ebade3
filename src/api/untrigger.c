/*
 * untrigger.c - removing a set of triggers on behalf of a request that goes
 * on only when all are gone: DELETE of a function or a topic with force=true.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/log.h"

cJSON *api_trigger_ref(const char *topic, const char *function)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "topic", topic);
    cJSON_AddStringToObject(o, "function", function);
    return o;
}

typedef struct batch {
    api *a;
    api_untriggered_cb cb;
    void *data;
    cJSON *refs;    /* what to remove; the removals point into it */
    cJSON *removed; /* what was, for the callback */
    size_t pending; /* removals not done yet, + 1 while they are being asked for */
    char err[400];  /* the first that failed */
} batch;

typedef struct removal {
    batch *b;
    const char *topic, *function; /* into b->refs */
} removal;

static void failed(batch *b, const char *topic, const char *function, const char *why)
{
    log_warn("cannot remove trigger %s -> %s: %s", topic, function, why);
    if (!b->err[0])
        snprintf(b->err, sizeof b->err, "cannot remove trigger %s -> %s: %s", topic, function, why);
}

static void one_done(batch *b)
{
    if (--b->pending > 0) return;
    cJSON *removed = b->removed;
    b->cb(b->data, removed, b->err[0] ? b->err : NULL);
    cJSON_Delete(b->refs);
    free(b);
}

static void on_removed(void *data, int status)
{
    removal *r = data;
    batch *b = r->b;
    if (status == 0) {
        cJSON_AddItemToArray(b->removed, api_trigger_ref(r->topic, r->function));
        log_info("removed trigger (force) topic=%s fn=%s", r->topic, r->function);
    } else {
        failed(b, r->topic, r->function, err_str(status));
    }
    free(r);
    one_done(b);
}

void api_remove_triggers(api *a, cJSON *refs, api_untriggered_cb cb, void *data)
{
    batch *b = calloc(1, sizeof *b);
    cJSON *removed = cJSON_CreateArray();
    if (!b || !removed) {
        free(b);
        cJSON_Delete(refs);
        cb(data, removed, "out of memory");
        return;
    }
    *b = (batch){.a = a, .cb = cb, .data = data, .refs = refs, .removed = removed, .pending = 1};
    const cJSON *t;
    cJSON_ArrayForEach(t, refs)
    {
        const char *topic = cJSON_GetObjectItemCaseSensitive(t, "topic")->valuestring;
        const char *function = cJSON_GetObjectItemCaseSensitive(t, "function")->valuestring;
        removal *r = malloc(sizeof *r);
        if (!r) {
            failed(b, topic, function, "out of memory");
            break;
        }
        *r = (removal){.b = b, .topic = topic, .function = function};
        b->pending++;
        int rc = triggers_remove(a->tr, topic, function, on_removed, r);
        if (rc != 0) {
            free(r);
            b->pending--;
            /* Gone meanwhile is as good as removed; anything else stops the caller. */
            if (rc != ERR_NOTFOUND) failed(b, topic, function, err_str(rc));
        }
    }
    one_done(b);
}
