/* json_alloc.c - counting cJSON's failed allocations (json_alloc.h). */
#include "common/json_alloc.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>

static _Thread_local uint64_t failed, checked;

static void *json_malloc(size_t n)
{
    /* With -DSPATE_FAILPOINTS this malloc is failpoint's: cJSON's
     * allocations are counted and can be made to fail. */
    void *p = malloc(n);
    if (!p) failed++;
    return p;
}

static void json_free(void *p)
{
    free(p);
}

void json_alloc_init(void)
{
    cJSON_Hooks h = {.malloc_fn = json_malloc, .free_fn = json_free};
    cJSON_InitHooks(&h);
}

int json_alloc_failed_since(void)
{
    int any = failed != checked;
    checked = failed;
    return any;
}
