#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/storehealth.h"

struct store {
    sqlite3 *db;
    char *dir;
};

/* Each entry moves the schema from version i to i + 1 (PRAGMA user_version).
 * Never edit an entry that has shipped; append a new one. */
static const char *const migrations[] = {
    "CREATE TABLE functions ("
    "  name TEXT PRIMARY KEY,"
    "  active_version INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL"
    ");"
    "CREATE TABLE versions ("
    "  function TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  sha256 TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  runtime TEXT NOT NULL,"
    "  min_instances INTEGER NOT NULL,"
    "  max_instances INTEGER NOT NULL,"
    "  timeout_ms INTEGER NOT NULL,"
    "  memory_mb INTEGER NOT NULL,"
    "  keep_alive_ms INTEGER NOT NULL,"
    "  queue_max INTEGER NOT NULL,"
    "  env TEXT,"
    "  PRIMARY KEY (function, version)"
    ");"
    "CREATE INDEX versions_sha256 ON versions(sha256);",

    /* 2: durable topics and the subscriptions of triggers (store/queue/). */
    "CREATE TABLE topics ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created_ms INTEGER NOT NULL,"
    "  published INTEGER NOT NULL,"
    "  next_seq INTEGER NOT NULL DEFAULT 1"
    ");"
    "CREATE TABLE messages ("
    "  topic_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  published_ms INTEGER NOT NULL,"
    "  key BLOB,"
    "  payload BLOB NOT NULL,"
    "  source TEXT,"
    "  attempts INTEGER,"
    "  error TEXT,"
    "  PRIMARY KEY (topic_id, seq)"
    ") WITHOUT ROWID;"
    "CREATE TABLE subscriptions ("
    "  id INTEGER PRIMARY KEY,"
    "  topic_id INTEGER NOT NULL,"
    "  function TEXT NOT NULL,"
    "  max_attempts INTEGER NOT NULL,"
    "  dlq TEXT NOT NULL,"
    "  ordered INTEGER NOT NULL,"
    "  deadline_ms INTEGER NOT NULL,"
    "  max_concurrency INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  cursor INTEGER NOT NULL,"
    "  leased BLOB,"
    "  acked INTEGER NOT NULL DEFAULT 0,"
    "  dead_lettered INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (topic_id, function)"
    ");"
    "CREATE TABLE retries ("
    "  sub_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  visible_ms INTEGER NOT NULL,"
    "  error TEXT,"
    "  PRIMARY KEY (sub_id, seq)"
    ") WITHOUT ROWID;",
    /* 3: per-version CPU quota and network switch (isolation). */
    ("ALTER TABLE versions ADD COLUMN cpu_millis INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE versions ADD COLUMN network INTEGER NOT NULL DEFAULT 1;"),
    /* 4: size of the instances' private /tmp (runtime/isolate.h). */
    "ALTER TABLE versions ADD COLUMN tmp_mb INTEGER NOT NULL DEFAULT 512;",
    /* 5: secret variables, "K=V" lines like env (common/fnconfig.h). */
    "ALTER TABLE versions ADD COLUMN secrets TEXT;",
    /* 6: per-topic retention (for topics no trigger reads), and the counters
     * of the topic's removed subscriptions (store/queue/). */
    ("ALTER TABLE topics ADD COLUMN max_age_ms INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE topics ADD COLUMN max_bytes INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE topics ADD COLUMN max_messages INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE topics ADD COLUMN acked INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE topics ADD COLUMN dead_lettered INTEGER NOT NULL DEFAULT 0;"),
    /* 7: schedules (schedules/), and when each last fired. */
    ("CREATE TABLE schedules ("
     "  name TEXT PRIMARY KEY,"
     "  expression TEXT NOT NULL,"
     "  zone TEXT NOT NULL DEFAULT '',"
     "  topic TEXT NOT NULL,"
     "  function TEXT NOT NULL DEFAULT '',"
     "  payload BLOB,"
     "  created_ms INTEGER NOT NULL,"
     "  last_fire_ms INTEGER NOT NULL DEFAULT 0"
     ");"),
    /* 8: event sources (src/sources/): the URL whole, credentials included
     * (the database is 0600 in a 0711 directory, read by spated only). */
    ("CREATE TABLE sources ("
     "  name TEXT PRIMARY KEY,"
     "  url TEXT NOT NULL,"
     "  topic TEXT NOT NULL,"
     "  key_field TEXT NOT NULL DEFAULT '',"
     "  created_ms INTEGER NOT NULL"
     ");"),
    /* 9: a message's attributes from an event source (store/queue.h
     * queue_attrs); NULL in every column for a plain message. redelivered
     * is written (0 or 1) whenever a message has attributes: it says so. */
    ("ALTER TABLE messages ADD COLUMN event_source TEXT;"
     "ALTER TABLE messages ADD COLUMN upstream_id TEXT;"
     "ALTER TABLE messages ADD COLUMN upstream_ts_ms INTEGER;"
     "ALTER TABLE messages ADD COLUMN headers TEXT;"
     "ALTER TABLE messages ADD COLUMN redelivered INTEGER;"),
    /* 10: aliases of functions' versions (registry.h reg_alias), with the
     * weight of a second version. */
    ("CREATE TABLE aliases ("
     "  function TEXT NOT NULL,"
     "  name TEXT NOT NULL,"
     "  version INTEGER NOT NULL,"
     "  weight_version INTEGER NOT NULL DEFAULT 0,"
     "  weight_percent INTEGER NOT NULL DEFAULT 0,"
     "  created_ms INTEGER NOT NULL,"
     "  updated_ms INTEGER NOT NULL,"
     "  PRIMARY KEY (function, name)"
     ");"),
    /* 11: a trigger's batches and event format (store/queue.h
     * queue_sub_config); 0 in each is today's one raw message per call. */
    ("ALTER TABLE subscriptions ADD COLUMN batch_size INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE subscriptions ADD COLUMN batch_window_ms INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE subscriptions ADD COLUMN event_format INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE subscriptions ADD COLUMN report_failures INTEGER NOT NULL DEFAULT 0;"),
    /* 12: the destinations of a version's asynchronous invocations
     * (common/fnconfig.h on_success, on_failure): topic names, '' for none. */
    ("ALTER TABLE versions ADD COLUMN on_success TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE versions ADD COLUMN on_failure TEXT NOT NULL DEFAULT '';"),
    /* 13: a managed runtime's handler, MODULE.FUNCTION (common/fnconfig.h);
     * '' for native and exec versions. */
    ("ALTER TABLE versions ADD COLUMN handler TEXT NOT NULL DEFAULT '';"),
    /* 14: what a trigger invokes of its function (store/queue.h
     * queue_sub_config.qualifier): '' for the active version. */
    ("ALTER TABLE subscriptions ADD COLUMN qualifier TEXT NOT NULL DEFAULT '';"),
    /* 15: when a message published with a delay becomes visible
     * (store/queue.h queue_msg.visible_ms), epoch ms; NULL for the others. */
    ("ALTER TABLE messages ADD COLUMN visible_ms INTEGER;"),
    /* 16: a topic's max_age_ms applies under its subscriptions too
     * (store/queue.h queue_retention.under_subscriptions): 0 or 1. */
    ("ALTER TABLE topics ADD COLUMN retain_read INTEGER NOT NULL DEFAULT 0;"),
    /* 17: a version's description (common/fnconfig.h; Lambda's
     * Description): '' for none. */
    ("ALTER TABLE versions ADD COLUMN description TEXT NOT NULL DEFAULT '';"),
    /* 18: the deduplication ids of a FIFO queue's messages (store/queue.h
     * queue_input.dedup), each with its message's seq, until its window
     * ends; the writer deletes the ended ones. */
    ("CREATE TABLE dedup_ids ("
     "  topic_id INTEGER NOT NULL,"
     "  id TEXT NOT NULL,"
     "  seq INTEGER NOT NULL,"
     "  until_ms INTEGER NOT NULL,"
     "  PRIMARY KEY (topic_id, id)"
     ") WITHOUT ROWID;"
     "CREATE INDEX dedup_ids_until ON dedup_ids(until_ms);"),
    /* 19: a paused trigger and when its configuration last changed
     * (store/queue.h queue_sub_config.paused, modified_ms; Lambda's
     * disabled event source mapping and its LastModified). */
    ("ALTER TABLE subscriptions ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE subscriptions ADD COLUMN modified_ms INTEGER NOT NULL DEFAULT 0;"),
    /* 20: a version whose zygote is kept running (common/fnconfig.h
     * prewarm): 0 or 1. */
    ("ALTER TABLE versions ADD COLUMN prewarm INTEGER NOT NULL DEFAULT 0;"),
};

#define MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

int store_exec(store *s, const char *sql)
{
    int begin = strncmp(sql, "BEGIN", 5) == 0, commit = strcmp(sql, "COMMIT") == 0;
    /* A failed COMMIT may have rolled back by itself (an I/O error), or not:
     * ROLLBACK only what is open, and never BEGIN inside what a failure
     * left open (the connection would refuse every transaction after). */
    if (strcmp(sql, "ROLLBACK") == 0 && sqlite3_get_autocommit(s->db)) return 0;
    if (begin && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_error("store: %s (in: %.60s)", msg ? msg : "unknown error", sql);
        if (commit) store_health_failed(STORE_OP_COMMIT, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return (rc & 0xff) == SQLITE_FULL ? ERR_NOSPACE : ERR_STORE;
    }
    if (commit) store_health_ok(STORE_OP_COMMIT);
    return 0;
}

/* Creates path with exactly mode (whatever the umask), or sets the mode of
 * the directory that is there. */
static int make_dir(const char *path, mode_t mode, char *err, size_t errcap)
{
    if ((mkdir(path, mode) == 0 || errno == EEXIST) && chmod(path, mode) == 0) return 0;
    snprintf(err, errcap, "cannot create directory '%s': %s", path, strerror(errno));
    return ERR_IO;
}

static int migrate(store *s, char *err, size_t errcap)
{
    sqlite3_stmt *st;
    int have = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) have = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (have > MIGRATIONS) {
        snprintf(err, errcap, "store schema version %d is newer than this spated knows (%d)", have,
                 MIGRATIONS);
        return ERR_STORE;
    }
    for (int v = have; v < MIGRATIONS; v++) {
        char pragma[48];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
        if (store_exec(s, "BEGIN IMMEDIATE") || store_exec(s, migrations[v]) ||
            store_exec(s, pragma) || store_exec(s, "COMMIT")) {
            store_exec(s, "ROLLBACK");
            snprintf(err, errcap, "cannot migrate store schema to version %d", v + 1);
            return ERR_STORE;
        }
    }
    return 0;
}

int store_open(const char *dir, store **out, char *err, size_t errcap)
{
    err[0] = '\0';
    store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    /* Functions run as other users (runtime/isolate.h) and read none of it:
     * not the store, not the artifacts, not the unpacked roots of exec
     * functions, which each sees only as its own /var/task (bound there by
     * the runner while it is root). An existing exec/ of mode 0711 is
     * closed here; spated opens it again only where mount namespaces do not
     * work (spated/main.c). */
    char path[4096];
    int rc = make_dir(dir, 0711, err, errcap);
    snprintf(path, sizeof path, "%s/artifacts", dir);
    if (!rc) rc = make_dir(path, 0700, err, errcap);
    snprintf(path, sizeof path, "%s/tmp", dir);
    if (!rc) rc = make_dir(path, 0700, err, errcap);
    snprintf(path, sizeof path, "%s/exec", dir);
    if (!rc) rc = make_dir(path, 0700, err, errcap);
    if (rc) {
        store_close(s);
        return rc;
    }
    /* SQLite gives the -wal and -shm files the mode of the database. */
    snprintf(path, sizeof path, "%s/spate.db", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0) {
        snprintf(err, errcap, "cannot create store '%s': %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        store_close(s);
        return ERR_IO;
    }
    close(fd);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        snprintf(err, errcap, "cannot open store '%s': %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        store_close(s);
        return ERR_STORE;
    }
    sqlite3_busy_timeout(s->db, SPATE_STORE_BUSY_TIMEOUT_MS);
    /* WAL with FULL sync: a commit has reached the disk when it returns. */
    if (store_exec(s, "PRAGMA journal_mode=WAL") || store_exec(s, "PRAGMA synchronous=FULL") ||
        store_exec(s, "PRAGMA foreign_keys=ON") || migrate(s, err, errcap)) {
        if (!err[0]) snprintf(err, errcap, "cannot set up store '%s'", path);
        store_close(s);
        return ERR_STORE;
    }
    *out = s;
    return 0;
}

void store_close(store *s)
{
    if (!s) return;
    if (s->db) sqlite3_close_v2(s->db);
    free(s->dir);
    free(s);
}

sqlite3 *store_db(store *s)
{
    return s->db;
}

const char *store_dir(const store *s)
{
    return s->dir;
}
