/*
 * json_alloc.h - cJSON's allocations through a hook that counts the failed
 * ones, per thread. cJSON_Add* returns NULL and adds nothing when it cannot
 * allocate; a document built on without checking each call would be sent
 * short of a member. A sender checks json_alloc_failed_since() instead, once,
 * before it sends: a failure on its thread since its last check means the
 * document may be short (or another's was: a needless 503 beats a wrong 200).
 */
#ifndef SPATE_JSON_ALLOC_H
#define SPATE_JSON_ALLOC_H

/* Installs the hooks (cJSON_InitHooks); once, before any thread uses cJSON. */
void json_alloc_init(void);
/* Nonzero when an allocation of cJSON failed on this thread since the last
 * call (on this thread). */
int json_alloc_failed_since(void);

#endif
