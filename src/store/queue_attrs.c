/* queue_attrs.c - copying a message's attributes and a refused message's
 * dead-letter fields (store/queue.h), for both queue implementations. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "store/queue.h"

#define ATTRS_ALIGN _Alignof(queue_attrs)

static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

size_t queue_attrs_size(const queue_attrs *a)
{
    if (!a) return 0;
    return ATTRS_ALIGN - 1 + sizeof *a + str_size(a->source) + str_size(a->upstream_id) +
           (a->headers ? a->headers_len + 1 : 0);
}

static const char *put_str(char **p, const char *s, size_t len)
{
    if (!s) return NULL;
    char *out = *p;
    memcpy(out, s, len);
    out[len] = '\0';
    *p += len + 1;
    return out;
}

const queue_attrs *queue_attrs_copy(char **p, const queue_attrs *a)
{
    if (!a) return NULL;
    uintptr_t at = ((uintptr_t)*p + ATTRS_ALIGN - 1) & ~(uintptr_t)(ATTRS_ALIGN - 1);
    queue_attrs *out = (queue_attrs *)at;
    *p = (char *)(out + 1);
    *out = *a;
    out->source = put_str(p, a->source, a->source ? strlen(a->source) : 0);
    out->upstream_id = put_str(p, a->upstream_id, a->upstream_id ? strlen(a->upstream_id) : 0);
    out->headers = put_str(p, a->headers, a->headers_len);
    if (!out->headers) out->headers_len = 0;
    return out;
}

int queue_inputs_own_extras(queue_input *in, size_t n, char **extra)
{
    size_t need = 0;
    for (size_t i = 0; i < n; i++)
        need += queue_attrs_size(in[i].attrs) +
                (in[i].error ? str_size(in[i].error) + str_size(in[i].source_topic) + 1 : 0);
    *extra = NULL;
    if (!need) return 0;
    char *p = *extra = malloc(need);
    if (!p) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        in[i].attrs = queue_attrs_copy(&p, in[i].attrs);
        if (in[i].error) {
            const char *src = in[i].source_topic ? in[i].source_topic : "";
            in[i].source_topic = put_str(&p, src, strlen(src));
            in[i].error = put_str(&p, in[i].error, strlen(in[i].error));
        }
    }
    return 0;
}
