#include "store/registry.h"

#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

static int prepare(store *s, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(store_db(s), sql, -1, st, NULL) != SQLITE_OK) {
        log_error("store: cannot prepare statement: %s", sqlite3_errmsg(store_db(s)));
        return ERR_STORE;
    }
    return 0;
}

static int step_done(store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        log_error("store: %s", sqlite3_errmsg(store_db(s)));
        return ERR_STORE;
    }
    return 0;
}

int registry_next_version(store *s, const char *name, uint32_t *out)
{
    sqlite3_stmt *st;
    if (prepare(s, "SELECT COALESCE(MAX(version), 0) FROM versions WHERE function = ?", &st))
        return ERR_STORE;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = (uint32_t)sqlite3_column_int64(st, 0) + 1;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : ERR_STORE;
}

int registry_put_version(store *s, const reg_version *v)
{
    if (store_exec(s, "BEGIN IMMEDIATE")) return ERR_STORE;
    sqlite3_stmt *st;
    int rc = prepare(
        s,
        "INSERT INTO versions (function, version, sha256, size, created_ms, runtime,"
        " min_instances, max_instances, timeout_ms, memory_mb, keep_alive_ms, env, queue_max,"
        " cpu_millis, network, tmp_mb, secrets)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

int registry_delete_function(store *s, const char *name)
{
    if (store_exec(s, "BEGIN IMMEDIATE")) return ERR_STORE;
    sqlite3_stmt *st;
    int rc = prepare(s, "DELETE FROM functions WHERE name = ?", &st);
    int changed = 0;
    if (!rc) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = step_done(s, st);
        changed = sqlite3_changes(store_db(s));
    }
    if (!rc && changed) {
        rc = prepare(s, "DELETE FROM versions WHERE function = ?", &st);
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
    " v.queue_max, v.cpu_millis, v.network, v.tmp_mb, v.secrets"

static void read_version(sqlite3_stmt *st, reg_version *v)
{
    memset(v, 0, sizeof *v);
    snprintf(v->function, sizeof v->function, "%s", (const char *)sqlite3_column_text(st, 0));
    v->version = (uint32_t)sqlite3_column_int64(st, 1);
    snprintf(v->sha256, sizeof v->sha256, "%s", (const char *)sqlite3_column_text(st, 2));
    v->size = (uint64_t)sqlite3_column_int64(st, 3);
    v->created_ms = sqlite3_column_int64(st, 4);
    const char *rt = (const char *)sqlite3_column_text(st, 5);
    v->config.runtime = rt && strcmp(rt, "exec") == 0 ? RUNTIME_EXEC : RUNTIME_NATIVE;
    v->config.min_instances = (uint32_t)sqlite3_column_int64(st, 6);
    v->config.max_instances = (uint32_t)sqlite3_column_int64(st, 7);
    v->config.timeout_ms = (uint32_t)sqlite3_column_int64(st, 8);
    v->config.memory_mb = (uint32_t)sqlite3_column_int64(st, 9);
    v->config.keep_alive_ms = (uint32_t)sqlite3_column_int64(st, 10);
    v->config.queue_max = (uint32_t)sqlite3_column_int64(st, 13);
    v->config.cpu_millis = (uint32_t)sqlite3_column_int64(st, 14);
    v->config.network = sqlite3_column_int(st, 15) != 0;
    v->config.tmp_mb = (uint32_t)sqlite3_column_int64(st, 16);
    /* env and secrets stay borrowed from the statement: valid during the callback. */
    v->config.env = (char *)sqlite3_column_text(st, 11);
    v->config.env_count = fnconfig_count_lines(v->config.env);
    v->config.secrets = (char *)sqlite3_column_text(st, 17);
    v->config.secret_count = fnconfig_count_lines(v->config.secrets);
}

static int each(store *s, sqlite3_stmt *st, registry_version_cb cb, void *data)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        reg_version v;
        read_version(st, &v);
        if (cb(&v, sqlite3_column_int64(st, 12), data)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        log_error("store: %s", sqlite3_errmsg(store_db(s)));
        return ERR_STORE;
    }
    return 0;
}

int registry_each_active(store *s, registry_version_cb cb, void *data)
{
    sqlite3_stmt *st;
    if (prepare(s,
                "SELECT " VERSION_COLUMNS " FROM functions f JOIN versions v"
                " ON v.function = f.name AND v.version = f.active_version ORDER BY f.name",
                &st))
        return ERR_STORE;
    return each(s, st, cb, data);
}

int registry_each_version(store *s, const char *name, registry_version_cb cb, void *data)
{
    sqlite3_stmt *st;
    if (prepare(s,
                "SELECT " VERSION_COLUMNS " FROM versions v JOIN functions f"
                " ON v.function = f.name WHERE v.function = ? ORDER BY v.version DESC",
                &st))
        return ERR_STORE;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    return each(s, st, cb, data);
}

int registry_artifact_used(store *s, const char *sha256)
{
    sqlite3_stmt *st;
    if (prepare(s, "SELECT 1 FROM versions WHERE sha256 = ? LIMIT 1", &st)) return ERR_STORE;
    sqlite3_bind_text(st, 1, sha256, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return 1;
    return rc == SQLITE_DONE ? 0 : ERR_STORE;
}
