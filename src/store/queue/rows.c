/* rows.c - the SQLite queue: writer thread: the SQL the other files share (topic rows, reading
 * message rows into a block, deleting them). */
#include "store/queue/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/limits.h"
#include "store/sql.h"

int sq_insert_topic(sqlite3 *db, const sq_topic *t)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT OR IGNORE INTO topics (id, name, created_ms, published)"
                                " VALUES (?, ?, ?, 0)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_text(st, 2, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, clock_now_ms());
    return sql_step_finalize(st);
}

/* Writer thread: steps a DELETE ... RETURNING the bytes of each row,
 * adding up rows and bytes. */
int sq_delete_rows(sqlite3_stmt *st, uint64_t *rows, uint64_t *bytes)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        (*rows)++;
        *bytes += (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Writer thread: the publish time of the topic's oldest stored message, 0
 * when it stores none. */
#define FIRST_PUBLISHED_SQL                                                                        \
    "SELECT published_ms FROM messages WHERE topic_id = ? ORDER BY seq LIMIT 1"

static int64_t first_published(sqlite3_stmt *st, int64_t topic_id)
{
    sqlite3_bind_int64(st, 1, topic_id);
    int64_t ms = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return ms;
}

int64_t sq_first_published(sqlite3 *db, int64_t topic_id)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, FIRST_PUBLISHED_SQL, -1, &st, NULL) != SQLITE_OK) return 0;
    int64_t ms = first_published(st, topic_id);
    sqlite3_finalize(st);
    return ms;
}

/* Preparing the statement each time was a tenth of the writer thread's
 * work under SQS round trips (bench/sqs), where every settled batch trims. */
int64_t sq_first_published_cached(queue *q, sqlite3 *db, int64_t topic_id)
{
    if (sql_prepare_cached(db, &q->first_pub, FIRST_PUBLISHED_SQL) != SQLITE_OK) return 0;
    return first_published(q->first_pub, topic_id);
}

static char *column_dup(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return NULL;
    const char *v = (const char *)sqlite3_column_text(st, col);
    return strndup(v ? v : "", (size_t)sqlite3_column_bytes(st, col));
}

/* Reads rows of a SELECT (seq, published_ms, key, payload, source, attempts,
 * error, then the attributes: event_source, upstream_id, upstream_ts_ms,
 * headers, redelivered; then visible_ms) into one block. */
int sq_read_rows(sqlite3_stmt *st, uint32_t limit, sq_block **out, uint32_t *count)
{
    size_t cap = 64, n = 0, bytes = 0;
    typedef struct row {
        uint64_t seq;
        int64_t published_ms;
        char *key, *data, *source, *error;
        uint32_t key_len, len, attempts;
        int64_t visible_ms;
        int has_attrs;
        queue_attrs attrs; /* its strings owned until packed */
    } row;
    row *rows = malloc(cap * sizeof *rows);
    int rc = rows ? SQLITE_OK : SQLITE_NOMEM;
    while (rc == SQLITE_OK && n < limit && bytes < SPATE_QUEUE_FETCH_BYTES) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE) break;
        if (s != SQLITE_ROW) {
            rc = s;
            break;
        }
        if (n == cap) {
            row *r = realloc(rows, 2 * cap * sizeof *rows);
            if (!r) {
                rc = SQLITE_NOMEM;
                break;
            }
            rows = r;
            cap *= 2;
        }
        row *r = &rows[n];
        memset(r, 0, sizeof *r);
        r->seq = (uint64_t)sqlite3_column_int64(st, 0);
        r->published_ms = sqlite3_column_int64(st, 1);
        r->visible_ms = sqlite3_column_int64(st, 12); /* NULL reads 0 */
        if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
            r->key_len = (uint32_t)sqlite3_column_bytes(st, 2);
            r->key = malloc(r->key_len + 1);
            if (r->key) {
                memcpy(r->key, sqlite3_column_blob(st, 2), r->key_len);
                r->key[r->key_len] = '\0';
            }
        }
        r->len = (uint32_t)sqlite3_column_bytes(st, 3);
        r->data = malloc(r->len + 1);
        if (r->data && r->len) memcpy(r->data, sqlite3_column_blob(st, 3), r->len);
        if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
            r->source = strdup((const char *)sqlite3_column_text(st, 4));
            r->attempts = (uint32_t)sqlite3_column_int64(st, 5);
            const char *e = (const char *)sqlite3_column_text(st, 6);
            r->error = strdup(e ? e : "");
        }
        if (sqlite3_column_type(st, 11) != SQLITE_NULL) {
            r->has_attrs = 1;
            r->attrs.source = column_dup(st, 7);
            r->attrs.upstream_id = column_dup(st, 8);
            r->attrs.upstream_ts_ms = sqlite3_column_int64(st, 9);
            r->attrs.headers = column_dup(st, 10);
            r->attrs.headers_len = r->attrs.headers ? (uint32_t)strlen(r->attrs.headers) : 0;
            r->attrs.redelivered = sqlite3_column_int(st, 11) != 0;
        }
        bytes += r->len + r->key_len;
        n++;
        /* A row short of its key, payload or attributes would be delivered
         * as another message: the read fails instead. */
        if ((sqlite3_column_type(st, 2) != SQLITE_NULL && !r->key) || !r->data ||
            (sqlite3_column_type(st, 4) != SQLITE_NULL && (!r->source || !r->error)) ||
            (r->has_attrs &&
             ((sqlite3_column_type(st, 7) != SQLITE_NULL && !r->attrs.source) ||
              (sqlite3_column_type(st, 8) != SQLITE_NULL && !r->attrs.upstream_id) ||
              (sqlite3_column_type(st, 10) != SQLITE_NULL && !r->attrs.headers))))
            rc = SQLITE_NOMEM;
    }
    /* Pack everything into one block: one free for the whole chunk. */
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += rows[i].len + 1 + (rows[i].key ? rows[i].key_len + 1 : 0) +
                 (rows[i].source ? strlen(rows[i].source) + 1 : 0) +
                 (rows[i].error ? strlen(rows[i].error) + 1 : 0) +
                 queue_attrs_size(rows[i].has_attrs ? &rows[i].attrs : NULL);
    sq_block *b = rc == SQLITE_OK ? sq_block_new(n, NULL) : NULL;
    char *mem = b ? malloc(total + 1) : NULL;
    if (b && !mem) {
        free(b);
        b = NULL;
    }
    if (rc == SQLITE_OK && !b) rc = SQLITE_NOMEM;
    char *p = mem;
    for (size_t i = 0; i < n; i++) {
        row *r = &rows[i];
        if (b) {
            queue_msg *m = &b->msgs[i].m;
            m->seq = r->seq;
            m->published_ms = r->published_ms;
            m->visible_ms = r->visible_ms;
            m->len = r->len;
            m->data = p;
            if (r->len) memcpy(p, r->data, r->len);
            p[r->len] = '\0';
            p += r->len + 1;
            if (r->key) {
                memcpy(p, r->key, r->key_len + 1);
                m->key = p;
                m->key_len = r->key_len;
                p += r->key_len + 1;
            }
            if (r->source) {
                size_t sl = strlen(r->source) + 1, el = strlen(r->error) + 1;
                memcpy(p, r->source, sl);
                m->source = p;
                p += sl;
                memcpy(p, r->error, el);
                m->error = p;
                p += el;
                m->attempts = r->attempts;
            }
            m->attrs = queue_attrs_copy(&p, r->has_attrs ? &r->attrs : NULL);
        }
        free((char *)r->attrs.source);
        free((char *)r->attrs.upstream_id);
        free((char *)r->attrs.headers);
        free(r->key);
        free(r->data);
        free(r->source);
        free(r->error);
    }
    free(rows);
    if (b) b->mem = mem;
    *out = b;
    *count = (uint32_t)n;
    return rc;
}

const char *const sq_select_rows =
    "SELECT seq, published_ms, key, payload, source, attempts, error, event_source, upstream_id,"
    " upstream_ts_ms, headers, redelivered, visible_ms FROM messages";

/* Writer thread: one statement bound to the topic's id (?1) and run. */
int sq_exec_topic(sqlite3 *db, const char *sql, int64_t topic_id)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, topic_id);
    return sql_step_finalize(st);
}
