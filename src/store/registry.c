/*
 * registry.c - the registry of one node (store/registry.h): functions and
 * versions as rows of the store's SQLite database, artifacts as the files of
 * store/artifacts.c under the data directory. Triggers are the queue's
 * subscriptions, which store/queue/ saves with the topics: nothing here.
 */
#include "store/registry_sqlite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "store/artifacts.h"
#include "store/sql.h"

typedef struct sqlreg {
    const registry_ops *ops; /* first, as registry.h wants */
    uv_loop_t *loop;
    store *st;
} sqlreg;

#define STORE(r) (((sqlreg *)(r))->st)

/* The statement helpers are the store's (store/sql.h); these say on the
 * log what failed and turn SQLite's code into the registry's ERR_STORE. */
static int prepare(store *s, const char *sql, sqlite3_stmt **st)
{
    if (sql_prepare(store_db(s), st, sql) != SQLITE_OK) {
        log_error("store: cannot prepare statement: %s", sqlite3_errmsg(store_db(s)));
        return ERR_STORE;
    }
    return 0;
}

/* The user's callback of a reader, called by its row function. */
typedef struct rows_to {
    union {
        registry_version_cb version;
        registry_schedule_cb schedule;
        registry_source_cb source;
        registry_alias_cb alias;
    } cb;
    void *data;
} rows_to;

/* Reads st's rows through row (store/sql.h), saying on the log which rows
 * (what) could not be read. */
static int read_rows(store *s, sqlite3_stmt *st, sql_row_fn row, rows_to *to, const char *what)
{
    if (sql_each_finalize(st, row, to) != SQLITE_OK) {
        log_error("store: cannot read the %s: %s", what, sqlite3_errmsg(store_db(s)));
        return ERR_STORE;
    }
    return 0;
}

static int step_done(store *s, sqlite3_stmt *st)
{
    if (sql_step_finalize(st) != SQLITE_OK) {
        log_error("store: %s", sqlite3_errmsg(store_db(s)));
        return ERR_STORE;
    }
    return 0;
}

/* step_done for a statement that must change a row: ERR_NOTFOUND when it
 * changed none (a DELETE or UPDATE of a name that is not there). */
static int step_changed(store *s, sqlite3_stmt *st)
{
    int rc = step_done(s, st);
    if (!rc && sqlite3_changes(store_db(s)) == 0) rc = ERR_NOTFOUND;
    return rc;
}

static int sq_next_version(registry *r, const char *name, uint32_t *out)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s, "SELECT COALESCE(MAX(version), 0) FROM versions WHERE function = ?", &st))
        return ERR_STORE;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = (uint32_t)sqlite3_column_int64(st, 0) + 1;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : ERR_STORE;
}

static int sq_put_version(registry *r, const reg_version *v)
{
    store *s = STORE(r);
    if (store_exec(s, "BEGIN IMMEDIATE")) return ERR_STORE;
    sqlite3_stmt *st;
    int rc = prepare(
        s,
        "INSERT INTO versions (function, version, sha256, size, created_ms, runtime,"
        " min_instances, max_instances, timeout_ms, memory_mb, keep_alive_ms, env, queue_max,"
        " cpu_millis, network, tmp_mb, secrets, on_success, on_failure, handler, description,"
        " prewarm)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &st);
    if (!rc) {
        const fn_config *c = &v->config;
        sqlite3_bind_text(st, 1, v->function, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, v->version);
        sqlite3_bind_text(st, 3, v->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)v->size);
        sqlite3_bind_int64(st, 5, v->created_ms);
        sqlite3_bind_text(st, 6, fnconfig_runtime_name(c->runtime), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, c->min_instances);
        sqlite3_bind_int64(st, 8, c->max_instances);
        sqlite3_bind_int64(st, 9, c->timeout_ms);
        sqlite3_bind_int64(st, 10, c->memory_mb);
        sqlite3_bind_int64(st, 11, c->keep_alive_ms);
        if (c->env)
            sqlite3_bind_text(st, 12, c->env, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 12);
        sqlite3_bind_int64(st, 13, c->queue_max);
        sqlite3_bind_int64(st, 14, c->cpu_millis);
        sqlite3_bind_int64(st, 15, c->network ? 1 : 0);
        sqlite3_bind_int64(st, 16, c->tmp_mb);
        if (c->secrets)
            sqlite3_bind_text(st, 17, c->secrets, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 17);
        sqlite3_bind_text(st, 18, c->on_success, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 19, c->on_failure, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 20, c->handler, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 21, c->description, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 22, c->prewarm ? 1 : 0);
        rc = step_done(s, st);
    }
    if (!rc)
        rc = prepare(s,
                     "INSERT INTO functions (name, active_version, created_ms, updated_ms)"
                     " VALUES (?1, ?2, ?3, ?3) ON CONFLICT(name) DO UPDATE SET"
                     " active_version = excluded.active_version, updated_ms = ?3",
                     &st);
    if (!rc) {
        sqlite3_bind_text(st, 1, v->function, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, v->version);
        sqlite3_bind_int64(st, 3, v->created_ms);
        rc = step_done(s, st);
    }
    if (!rc) rc = store_exec(s, "COMMIT");
    if (rc) store_exec(s, "ROLLBACK");
    return rc;
}

static int sq_delete_function(registry *r, const char *name)
{
    store *s = STORE(r);
    if (store_exec(s, "BEGIN IMMEDIATE")) return ERR_STORE;
    sqlite3_stmt *st;
    int rc = prepare(s, "DELETE FROM functions WHERE name = ?", &st);
    int changed = 0;
    if (!rc) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = step_done(s, st);
        changed = sqlite3_changes(store_db(s));
    }
    /* Its versions, and the aliases that named them. */
    static const char *const also[] = {"DELETE FROM versions WHERE function = ?",
                                       "DELETE FROM aliases WHERE function = ?"};
    for (size_t i = 0; !rc && changed && i < sizeof also / sizeof *also; i++) {
        rc = prepare(s, also[i], &st);
        if (!rc) {
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
            rc = step_done(s, st);
        }
    }
    if (!rc) rc = store_exec(s, "COMMIT");
    if (rc) store_exec(s, "ROLLBACK");
    if (!rc && !changed) return ERR_NOTFOUND;
    return rc;
}

#define VERSION_COLUMNS                                                                            \
    "v.function, v.version, v.sha256, v.size, v.created_ms, v.runtime, v.min_instances,"           \
    " v.max_instances, v.timeout_ms, v.memory_mb, v.keep_alive_ms, v.env, f.created_ms,"           \
    " v.queue_max, v.cpu_millis, v.network, v.tmp_mb, v.secrets, v.on_success, v.on_failure,"      \
    " v.handler, v.description, v.prewarm"

static void read_version(sqlite3_stmt *st, reg_version *v)
{
    memset(v, 0, sizeof *v);
    sql_column_copy(st, 0, v->function, sizeof v->function);
    v->version = (uint32_t)sqlite3_column_int64(st, 1);
    sql_column_copy(st, 2, v->sha256, sizeof v->sha256);
    v->size = (uint64_t)sqlite3_column_int64(st, 3);
    v->created_ms = sqlite3_column_int64(st, 4);
    const char *rt = (const char *)sqlite3_column_text(st, 5);
    int r = rt ? fnconfig_runtime_parse(rt, strlen(rt)) : -1;
    v->config.runtime = r >= 0 ? (enum fn_runtime)r : RUNTIME_NATIVE;
    sql_column_copy(st, 20, v->config.handler, sizeof v->config.handler);
    sql_column_copy(st, 21, v->config.description, sizeof v->config.description);
    v->config.min_instances = (uint32_t)sqlite3_column_int64(st, 6);
    v->config.max_instances = (uint32_t)sqlite3_column_int64(st, 7);
    v->config.timeout_ms = (uint32_t)sqlite3_column_int64(st, 8);
    v->config.memory_mb = (uint32_t)sqlite3_column_int64(st, 9);
    v->config.keep_alive_ms = (uint32_t)sqlite3_column_int64(st, 10);
    v->config.queue_max = (uint32_t)sqlite3_column_int64(st, 13);
    v->config.cpu_millis = (uint32_t)sqlite3_column_int64(st, 14);
    v->config.network = sqlite3_column_int(st, 15) != 0;
    v->config.prewarm = sqlite3_column_int(st, 22) != 0;
    v->config.tmp_mb = (uint32_t)sqlite3_column_int64(st, 16);
    /* env and secrets stay borrowed from the statement: valid during the callback. */
    v->config.env = (char *)sqlite3_column_text(st, 11);
    v->config.env_count = fnconfig_count_lines(v->config.env);
    v->config.secrets = (char *)sqlite3_column_text(st, 17);
    v->config.secret_count = fnconfig_count_lines(v->config.secrets);
    sql_column_copy(st, 18, v->config.on_success, sizeof v->config.on_success);
    sql_column_copy(st, 19, v->config.on_failure, sizeof v->config.on_failure);
}

static int version_row(sqlite3_stmt *st, void *data)
{
    const rows_to *to = data;
    reg_version v;
    read_version(st, &v);
    return to->cb.version(&v, sqlite3_column_int64(st, 12), to->data);
}

static int each(store *s, sqlite3_stmt *st, registry_version_cb cb, void *data)
{
    rows_to to = {.cb.version = cb, .data = data};
    return read_rows(s, st, version_row, &to, "versions");
}

static int sq_each_active(registry *r, registry_version_cb cb, void *data)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s,
                "SELECT " VERSION_COLUMNS " FROM functions f JOIN versions v"
                " ON v.function = f.name AND v.version = f.active_version ORDER BY f.name",
                &st))
        return ERR_STORE;
    return each(s, st, cb, data);
}

static int sq_each_version(registry *r, const char *name, registry_version_cb cb, void *data)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s,
                "SELECT " VERSION_COLUMNS " FROM versions v JOIN functions f"
                " ON v.function = f.name WHERE v.function = ? ORDER BY v.version DESC",
                &st))
        return ERR_STORE;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    return each(s, st, cb, data);
}

static int sq_artifact_used(registry *r, const char *sha256)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s, "SELECT 1 FROM versions WHERE sha256 = ? LIMIT 1", &st)) return ERR_STORE;
    sqlite3_bind_text(st, 1, sha256, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return 1;
    return rc == SQLITE_DONE ? 0 : ERR_STORE;
}

/* --- Artifacts: files under the data directory -------------------------------------- */

typedef struct put_job {
    uv_work_t work;
    const char *dir;
    const void *bytes;
    size_t len;
    int unpack;
    int rc;
    char sha[HASH_HEX_LEN + 1];
    char err[512];
    registry_stored_cb cb;
    void *data;
} put_job;

static void put_work(uv_work_t *w)
{
    put_job *j = w->data;
    j->rc = artifacts_put(j->dir, j->bytes, j->len, j->sha, j->err, sizeof j->err);
    if (j->rc == 0 && j->unpack)
        j->rc = artifacts_unpack(j->dir, j->bytes, j->len, j->sha,
                                 j->unpack == REGISTRY_UNPACK_EXEC, j->err, sizeof j->err);
}

static void put_done(uv_work_t *w, int status)
{
    put_job *j = w->data;
    j->cb(j->data, j->rc, j->sha, j->err);
    free(j);
}

static void sq_artifact_put(registry *r, const void *bytes, size_t len, int unpack,
                            registry_stored_cb cb, void *data)
{
    sqlreg *sr = (sqlreg *)r;
    put_job *j = calloc(1, sizeof *j);
    if (j) {
        *j = (put_job){.dir = store_dir(sr->st),
                       .bytes = bytes,
                       .len = len,
                       .unpack = unpack,
                       .cb = cb,
                       .data = data};
        j->work.data = j;
    }
    if (!j || uv_queue_work(sr->loop, &j->work, put_work, put_done) != 0) {
        /* Never before returning (registry.h): the loop's next turn would
         * need a handle; a failure to queue is reported as the store's. */
        if (j) {
            snprintf(j->err, sizeof j->err, "cannot queue the artifact write");
            j->rc = ERR_IO;
            cb(data, j->rc, "", j->err);
            free(j);
        } else {
            cb(data, ERR_NOMEM, "", "out of memory");
        }
    }
}

static void sq_artifact_path(registry *r, const char *sha256, int unpacked, char *out, size_t cap)
{
    if (unpacked)
        artifacts_unpacked_path(store_dir(STORE(r)), sha256, out, cap);
    else
        artifacts_path(store_dir(STORE(r)), sha256, out, cap);
}

static int sq_artifact_remove(registry *r, const char *sha256)
{
    return artifacts_remove(store_dir(STORE(r)), sha256);
}

/* --- Triggers: the queue's subscriptions (store/queue/) ------------------------------ */

static int sq_trigger_put(registry *r, const char *topic, const queue_sub_config *cfg)
{
    return 0;
}

static int sq_trigger_remove(registry *r, const char *topic, const char *function)
{
    return 0;
}

static void sq_each_trigger(registry *r, registry_trigger_cb cb, void *data) {}

/* One node hears of no change made elsewhere. */
static void sq_set_events(registry *r, const registry_events *ev) {}

/* --- Schedules: rows of the schedules table ------------------------------------------ */

static int sq_schedule_put(registry *r, const reg_schedule *sc)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s,
                "INSERT OR REPLACE INTO schedules (name, expression, zone, topic, function,"
                " payload, created_ms, last_fire_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                &st))
        return ERR_STORE;
    sqlite3_bind_text(st, 1, sc->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sc->expression, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sc->zone, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, sc->topic, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, sc->function, -1, SQLITE_STATIC);
    if (sc->payload)
        sqlite3_bind_blob(st, 6, sc->payload, (int)sc->payload_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, sc->created_ms);
    sqlite3_bind_int64(st, 8, sc->last_fire_ms);
    return step_done(s, st);
}

static int sq_schedule_remove(registry *r, const char *name)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s, "DELETE FROM schedules WHERE name = ?", &st)) return ERR_STORE;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    return step_changed(s, st);
}

static int sq_schedule_fired(registry *r, const char *name, int64_t fire_ms)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s, "UPDATE schedules SET last_fire_ms = ? WHERE name = ?", &st)) return ERR_STORE;
    sqlite3_bind_int64(st, 1, fire_ms);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    return step_done(s, st);
}

static int schedule_row(sqlite3_stmt *st, void *data)
{
    const rows_to *to = data;
    reg_schedule sc = {0};
    sql_column_copy(st, 0, sc.name, sizeof sc.name);
    sql_column_copy(st, 1, sc.expression, sizeof sc.expression);
    sql_column_copy(st, 2, sc.zone, sizeof sc.zone);
    sql_column_copy(st, 3, sc.topic, sizeof sc.topic);
    sql_column_copy(st, 4, sc.function, sizeof sc.function);
    if (sqlite3_column_type(st, 5) != SQLITE_NULL) {
        sc.payload = sqlite3_column_blob(st, 5);
        sc.payload_len = (size_t)sqlite3_column_bytes(st, 5);
        if (!sc.payload) sc.payload = ""; /* an empty blob: an empty payload */
    }
    sc.created_ms = sqlite3_column_int64(st, 6);
    sc.last_fire_ms = sqlite3_column_int64(st, 7);
    to->cb.schedule(&sc, to->data);
    return 0;
}

static int sq_each_schedule(registry *r, registry_schedule_cb cb, void *data)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s,
                "SELECT name, expression, zone, topic, function, payload, created_ms,"
                " last_fire_ms FROM schedules ORDER BY name",
                &st))
        return ERR_STORE;
    rows_to to = {.cb.schedule = cb, .data = data};
    return read_rows(s, st, schedule_row, &to, "schedules");
}

static void sq_close(registry *r)
{
    free(r);
}

/* --- Event sources ------------------------------------------------------------------- */

static int sq_source_put(registry *r, const reg_source *src)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s,
                "INSERT OR REPLACE INTO sources (name, url, topic, key_field, created_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                &st))
        return ERR_STORE;
    sqlite3_bind_text(st, 1, src->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, src->url, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, src->topic, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, src->key_field, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, src->created_ms);
    return step_done(s, st);
}

static int sq_source_remove(registry *r, const char *name)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s, "DELETE FROM sources WHERE name = ?", &st)) return ERR_STORE;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    return step_changed(s, st);
}

static int source_row(sqlite3_stmt *st, void *data)
{
    const rows_to *to = data;
    reg_source src;
    sql_column_copy(st, 0, src.name, sizeof src.name);
    sql_column_copy(st, 1, src.url, sizeof src.url);
    sql_column_copy(st, 2, src.topic, sizeof src.topic);
    sql_column_copy(st, 3, src.key_field, sizeof src.key_field);
    src.created_ms = sqlite3_column_int64(st, 4);
    to->cb.source(&src, to->data);
    return 0;
}

static int sq_each_source(registry *r, registry_source_cb cb, void *data)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s, "SELECT name, url, topic, key_field, created_ms FROM sources ORDER BY name",
                &st))
        return ERR_STORE;
    rows_to to = {.cb.source = cb, .data = data};
    return read_rows(s, st, source_row, &to, "sources");
}

/* --- Rollback and aliases ------------------------------------------------------------ */

static int sq_activate(registry *r, const char *name, uint32_t version)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s,
                "UPDATE functions SET active_version = ?1, updated_ms = ?3 WHERE name = ?2"
                " AND EXISTS (SELECT 1 FROM versions WHERE function = ?2 AND version = ?1)",
                &st))
        return ERR_STORE;
    sqlite3_bind_int64(st, 1, version);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, clock_now_ms());
    return step_changed(s, st);
}

static int sq_alias_put(registry *r, const reg_alias *a)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s,
                "INSERT INTO aliases (function, name, version, weight_version, weight_percent,"
                " created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(function, name) DO UPDATE SET version = excluded.version,"
                " weight_version = excluded.weight_version,"
                " weight_percent = excluded.weight_percent, updated_ms = excluded.updated_ms",
                &st))
        return ERR_STORE;
    sqlite3_bind_text(st, 1, a->function, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, a->version);
    sqlite3_bind_int64(st, 4, a->weight_version);
    sqlite3_bind_int64(st, 5, a->weight_percent);
    sqlite3_bind_int64(st, 6, a->created_ms);
    sqlite3_bind_int64(st, 7, a->updated_ms);
    return step_done(s, st);
}

static int sq_alias_remove(registry *r, const char *function, const char *name)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s, "DELETE FROM aliases WHERE function = ? AND name = ?", &st)) return ERR_STORE;
    sqlite3_bind_text(st, 1, function, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    return step_changed(s, st);
}

static int alias_row(sqlite3_stmt *st, void *data)
{
    const rows_to *to = data;
    reg_alias a = {0};
    sql_column_copy(st, 0, a.function, sizeof a.function);
    sql_column_copy(st, 1, a.name, sizeof a.name);
    a.version = (uint32_t)sqlite3_column_int64(st, 2);
    a.weight_version = (uint32_t)sqlite3_column_int64(st, 3);
    a.weight_percent = (uint32_t)sqlite3_column_int64(st, 4);
    a.created_ms = sqlite3_column_int64(st, 5);
    a.updated_ms = sqlite3_column_int64(st, 6);
    to->cb.alias(&a, to->data);
    return 0;
}

static int sq_each_alias(registry *r, const char *function, registry_alias_cb cb, void *data)
{
    store *s = STORE(r);
    sqlite3_stmt *st;
    if (prepare(s,
                "SELECT function, name, version, weight_version, weight_percent, created_ms,"
                " updated_ms FROM aliases WHERE ?1 IS NULL OR function = ?1"
                " ORDER BY function, name",
                &st))
        return ERR_STORE;
    if (function)
        sqlite3_bind_text(st, 1, function, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 1);
    rows_to to = {.cb.alias = cb, .data = data};
    return read_rows(s, st, alias_row, &to, "aliases");
}

static const registry_ops sqlite_ops = {
    .next_version = sq_next_version,
    .put_version = sq_put_version,
    .delete_function = sq_delete_function,
    .each_active = sq_each_active,
    .each_version = sq_each_version,
    .artifact_used = sq_artifact_used,
    .artifact_put = sq_artifact_put,
    .artifact_path = sq_artifact_path,
    .artifact_remove = sq_artifact_remove,
    .trigger_put = sq_trigger_put,
    .trigger_remove = sq_trigger_remove,
    .each_trigger = sq_each_trigger,
    .set_events = sq_set_events,
    .close = sq_close,
    .schedule_put = sq_schedule_put,
    .schedule_remove = sq_schedule_remove,
    .schedule_fired = sq_schedule_fired,
    .each_schedule = sq_each_schedule,
    .source_put = sq_source_put,
    .source_remove = sq_source_remove,
    .each_source = sq_each_source,
    .activate = sq_activate,
    .alias_put = sq_alias_put,
    .alias_remove = sq_alias_remove,
    .each_alias = sq_each_alias,
};

int registry_sqlite_open(uv_loop_t *loop, store *st, registry **out)
{
    sqlreg *sr = calloc(1, sizeof *sr);
    if (!sr) return ERR_NOMEM;
    *sr = (sqlreg){.ops = &sqlite_ops, .loop = loop, .st = st};
    *out = (registry *)sr;
    return 0;
}
