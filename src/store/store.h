/*
 * store.h - the embedded store under the data directory: one SQLite database
 * in WAL mode with synchronous=FULL (a commit is on disk before it returns),
 * and the artifact files beside it.
 *
 *     DIR/spate.db         functions, versions, artifacts (schema in store.c)
 *     DIR/artifacts/xx/... artifacts named by their SHA-256
 *     DIR/tmp/             partial artifact writes, renamed into place
 */
#ifndef SPATE_STORE_H
#define SPATE_STORE_H

#include <sqlite3.h>
#include <stddef.h>

typedef struct store store;

/* Opens (creating and migrating as needed) the store in dir. On error, err
 * says what failed. Caller owns the store; free with store_close. */
int store_open(const char *dir, store **out, char *err, size_t errcap);
/* NULL is a no-op. */
void store_close(store *s);

/* For the store's own modules. */
sqlite3 *store_db(store *s);
const char *store_dir(const store *s);
/* Runs sql (no results) and logs a failure. 0 or ERR_STORE. */
int store_exec(store *s, const char *sql);

#endif
