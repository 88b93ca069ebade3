/*
 * registry_sqlite.h - the registry of one node (store/registry.h is the
 * interface): functions and versions in the store's SQLite database,
 * artifacts as files under its directory.
 */
#ifndef SPATE_REGISTRY_SQLITE_H
#define SPATE_REGISTRY_SQLITE_H

#include <uv.h>

#include "store/registry.h"
#include "store/store.h"

/* st is borrowed for the life of the registry (close the registry first);
 * loop runs the artifact writes' worker threads (NULL: none may be stored).
 * Free with registry_close. */
int registry_sqlite_open(uv_loop_t *loop, store *st, registry **out);

#endif
