/*
 * sql.h - the statement helpers the store's modules share. Each returns an
 * SQLite result code, SQLITE_OK on success, as the writer thread's
 * operations do (store/writer.h); the caller says what failed and maps the
 * code to an ERR_*.
 */
#ifndef SPATE_SQL_H
#define SPATE_SQL_H

#include <sqlite3.h>
#include <stddef.h>

/* A statement run once: prepared into *st, which the caller finalizes
 * (sql_step_finalize, or sqlite3_finalize after reading its rows). */
int sql_prepare(sqlite3 *db, sqlite3_stmt **st, const char *sql);
/* A statement run again and again on one connection: prepared once into *st
 * (kept by the caller, finalized when the connection goes), reset on every
 * later call. */
int sql_prepare_cached(sqlite3 *db, sqlite3_stmt **st, const char *sql);
/* Runs a statement that returns no rows and resets it for its next use. */
int sql_step_reset(sqlite3_stmt *st);
/* Runs a statement that returns no rows and finalizes it. */
int sql_step_finalize(sqlite3_stmt *st);

/* Called for each row of a statement; non-zero stops the reading there. */
typedef int (*sql_row_fn)(sqlite3_stmt *st, void *data);
/* Reads a statement's rows, row for each, then finalizes it: SQLITE_OK when
 * every row was read (or row stopped it), else the code the step failed with. */
int sql_each_finalize(sqlite3_stmt *st, sql_row_fn row, void *data);
/* Copies text column col into out (cap bytes, cut there); NULL is "". */
void sql_column_copy(sqlite3_stmt *st, int col, char *out, size_t cap);

#endif
