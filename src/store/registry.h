/*
 * registry.h - functions and their immutable versions in the store.
 *
 * Every deploy adds a version (numbered 1, 2, ... per function) and makes it
 * the function's active one, in one transaction. Deleting a function removes
 * it and its versions; its artifacts become unreferenced.
 */
#ifndef SPATE_REGISTRY_H
#define SPATE_REGISTRY_H

#include <stdint.h>

#include "common/fnconfig.h"
#include "common/hash.h"
#include "common/limits.h"
#include "store/store.h"

typedef struct reg_version {
    char function[SPATE_NAME_MAX + 1];
    uint32_t version;
    char sha256[HASH_HEX_LEN + 1];
    uint64_t size;
    int64_t created_ms;
    fn_config config; /* owned; fnconfig_free when done */
} reg_version;

/* The number the next deploy of name gets (1 for a new function). */
int registry_next_version(store *s, const char *name, uint32_t *out);
/* Adds v and makes it active; creates the function if new. 0 or ERR_STORE. */
int registry_put_version(store *s, const reg_version *v);
/* ERR_NOTFOUND when there is no such function. */
int registry_delete_function(store *s, const char *name);

/* Calls cb for each function's active version, by name; v is borrowed for the
 * call. Stops early if cb returns non-zero. */
typedef int (*registry_version_cb)(const reg_version *v, int64_t function_created_ms, void *data);
int registry_each_active(store *s, registry_version_cb cb, void *data);
/* Calls cb for each version of name, newest first. */
int registry_each_version(store *s, const char *name, registry_version_cb cb, void *data);
/* 1 if any version uses the artifact, 0 if none, or a negative error. */
int registry_artifact_used(store *s, const char *sha256);

#endif
