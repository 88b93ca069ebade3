/* The failing SQLite VFS (store/faultvfs.h) and its control file
 * (common/failio.h), issue 21 item 2: each rule fails what it names, and
 * only that, and a change of the file is seen while the process runs. Then
 * the queue on a failing disk, where two losses were found: a retry whose
 * row was not written, and a topic whose row went with a failed transaction
 * while a second publish to it was already handed to the writer. Both are
 * checked on the store as a crash would leave it.
 *
 * Needs the build option SPATE_FAILPOINTS: skipped without it (exit 77). */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/failio.h"
#include "common/storehealth.h"
#include "store/faultvfs.h"
#include "store/sqlqueue.h"
#include "store/store.h"
#include "test.h"

#ifndef SPATE_FAILPOINTS
int main(void)
{
    fprintf(stderr, "skipped: built without SPATE_FAILPOINTS (cmake -DSPATE_FAILPOINTS=ON)\n");
    return test_failures ? 1 : 77;
}
#else

static char root[256], ctl[300];
static uv_loop_t loop;
static uv_timer_t tick;

/* Sets the control file's rules (a new file renamed over: never half read),
 * and lets the next check see them (it looks at most every 50 ms). */
static void set_faults(const char *rules)
{
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.new", ctl);
    FILE *f = fopen(tmp, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(rules, f);
    fclose(f);
    CHECK_INT(rename(tmp, ctl), 0);
    usleep((FAILIO_RECHECK_MS + 20) * 1000);
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int insert(sqlite3 *db, int v)
{
    char sql[96];
    snprintf(sql, sizeof sql, "BEGIN; INSERT INTO t VALUES (%d); COMMIT", v);
    int rc = exec(db, sql);
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(db)) exec(db, "ROLLBACK");
    return rc;
}

static int count(sqlite3 *db)
{
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void test_rules(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/rules.db", root);
    sqlite3 *db = NULL;
    CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_extended_result_codes(db, 1); /* which call failed: IOERR_FSYNC, _WRITE */
    CHECK_INT(exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                       "CREATE TABLE t (v INTEGER)"),
              SQLITE_OK);
    CHECK_INT(insert(db, 1), SQLITE_OK);

    uint64_t fired = failio_fired();
    set_faults("sync wal\n");
    CHECK_INT(insert(db, 2), SQLITE_IOERR_FSYNC);
    CHECK_INT(insert(db, 3), SQLITE_IOERR_FSYNC); /* every time while the rule is there */
    CHECK(failio_fired() >= fired + 2);
    CHECK_INT(count(db), 1); /* rolled back: nothing of them is seen */

    set_faults("write wal\n");
    CHECK_INT(insert(db, 4), SQLITE_IOERR_WRITE);
    set_faults("full wal # the disk is full\n");
    CHECK_INT(insert(db, 5), SQLITE_FULL);
    set_faults("full db\n"); /* another file: the log takes the commit */
    CHECK_INT(insert(db, 6), SQLITE_OK);

    /* A count: the next one fails, then they pass. */
    set_faults("write wal 1\n");
    CHECK_INT(insert(db, 7), SQLITE_IOERR_WRITE);
    CHECK_INT(insert(db, 8), SQLITE_OK);

    /* Lines that are not rules are ignored (and said); the others hold. */
    set_faults("bogus wal\nsync nowhere\nsync wal 1 2\n\n# nothing\nsync any 1\n");
    CHECK_INT(insert(db, 9), SQLITE_IOERR_FSYNC);
    CHECK_INT(insert(db, 10), SQLITE_OK);

    /* Cleared: everything commits, on the same connection (no reopen). */
    set_faults("");
    CHECK_INT(insert(db, 11), SQLITE_OK);
    CHECK_INT(count(db), 5); /* 1, 6, 8, 10, 11 */

    /* A checkpoint that cannot write the database fails; the log keeps
     * every commit meanwhile, and the next checkpoint moves them. */
    set_faults("write db\n");
    CHECK_INT(insert(db, 100), SQLITE_OK);
    CHECK_INT(exec(db, "PRAGMA wal_checkpoint(TRUNCATE)"), SQLITE_IOERR_WRITE);
    CHECK_INT(insert(db, 101), SQLITE_OK);
    set_faults("");
    CHECK_INT(count(db), 7);
    CHECK_INT(exec(db, "DELETE FROM t WHERE v >= 100"), SQLITE_OK);

    /* A read of the database's pages (a new connection has no cache). */
    sqlite3 *rd = NULL;
    CHECK_INT(exec(db, "PRAGMA wal_checkpoint(TRUNCATE)"), SQLITE_OK);
    CHECK_INT(sqlite3_open(path, &rd), SQLITE_OK);
    set_faults("read db\n");
    CHECK_INT(count(rd), -1);
    set_faults("");
    CHECK_INT(count(rd), 5);
    sqlite3_close(rd);

    /* No control file at all: nothing fails. */
    unlink(ctl);
    usleep((FAILIO_RECHECK_MS + 20) * 1000);
    CHECK_INT(insert(db, 12), SQLITE_OK);
    sqlite3_close(db);
    set_faults("");
}

/* --- The queue on a failing disk -------------------------------------------------------- */

static void on_tick(uv_timer_t *t) {}

static void run_for(int64_t ms)
{
    int64_t end = clock_now_ms() + ms;
    uv_timer_start(&tick, on_tick, 5, 5);
    while (clock_now_ms() < end) uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
}

static void run_until(const int *flag)
{
    int64_t end = clock_now_ms() + 10000;
    uv_timer_start(&tick, on_tick, 5, 5);
    while (!*flag && clock_now_ms() < end) uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
}

typedef struct result {
    int done, status;
} result;

static void on_status(void *data, int status)
{
    result *r = data;
    r->done = 1;
    r->status = status;
}

static void on_published(void *data, int status, uint64_t first)
{
    on_status(data, status);
}

static void on_closed(void *data)
{
    *(int *)data = 1;
}

static int open_queue(const char *dir, store **st, queue **q)
{
    char err[512];
    int rc = store_open(dir, st, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    if (rc) return rc;
    queue_events ev = {0};
    rc = queue_open(&loop, *st, &ev, q, err, sizeof err);
    if (rc) {
        fprintf(stderr, "%s\n", err);
        run_for(20);
        store_close(*st);
    }
    return rc;
}

static void close_queue(store *st, queue *q)
{
    int done = 0;
    queue_close(q, on_closed, &done);
    run_until(&done);
    CHECK(done);
    store_close(st);
}

/* Publishes payload to topic; r is set when it is answered. */
static void publish_async(queue *q, const char *topic, const char *payload, result *r)
{
    buf body;
    buf_init(&body, 64);
    CHECK_INT(buf_append(&body, payload, strlen(payload)), 0);
    queue_input in = {.data = body.data, .len = (uint32_t)strlen(payload)};
    queue_publish(q, topic, &body, &in, 1, on_published, r);
}

static int subscribe(queue *q, const char *topic, const char *function)
{
    queue_sub_config cfg = {.max_attempts = 5};
    snprintf(cfg.function, sizeof cfg.function, "%s", function);
    snprintf(cfg.dlq, sizeof cfg.dlq, "%s.dlq", topic);
    result r = {0};
    int rc = queue_subscribe(q, topic, &cfg, on_status, &r);
    if (rc) return rc;
    run_until(&r.done);
    return r.done ? r.status : ERR_TIMEOUT;
}

/* The store of dir as a crash would leave it (what is committed), in to. */
static void crash_copy(const char *dir, const char *to)
{
    char from_db[400], to_db[400];
    snprintf(from_db, sizeof from_db, "%s/spate.db", dir);
    snprintf(to_db, sizeof to_db, "%s/spate.db", to);
    CHECK_INT(mkdir(to, 0700), 0);
    sqlite3 *src = NULL, *dst = NULL;
    CHECK_INT(sqlite3_open_v2(from_db, &src, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_open(to_db, &dst), SQLITE_OK);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    CHECK(b != NULL);
    if (b) {
        CHECK_INT(sqlite3_backup_step(b, -1), SQLITE_DONE);
        CHECK_INT(sqlite3_backup_finish(b), SQLITE_OK);
    }
    sqlite3_close(src);
    sqlite3_close(dst);
}

/* The payload of the next lease of function on topic within ms, acked; ""
 * when none comes. */
static void lease_one(queue *q, const char *topic, const char *function, int64_t ms, char *out,
                      size_t cap)
{
    out[0] = '\0';
    queue_sub *s = queue_find_sub(q, topic, function);
    CHECK(s != NULL);
    int64_t end = clock_now_ms() + ms;
    while (s && clock_now_ms() < end) {
        queue_lease *l = queue_lease_next(s);
        if (l) {
            snprintf(out, cap, "%.*s", (int)l->msg->len, l->msg->data);
            queue_ack(l);
            return;
        }
        run_for(10);
    }
}

/* A message nacked with a delay while the disk fails: its retry row is not
 * written, and once the disk is back the snapshot no longer counts it as
 * leased. It must come back after a crash (it was acknowledged). */
static void test_retry_row_lost_with_the_disk(void)
{
    char dir[300], copy[310], got[64];
    snprintf(dir, sizeof dir, "%s/retry", root);
    snprintf(copy, sizeof copy, "%s.crash", dir);
    store *st;
    queue *q;
    CHECK_INT(open_queue(dir, &st, &q), 0);
    CHECK_INT(subscribe(q, "t", "f"), 0);
    result r = {0};
    publish_async(q, "t", "one", &r);
    run_until(&r.done);
    CHECK_INT(r.status, 0);
    queue_sub *s = queue_find_sub(q, "t", "f");
    queue_lease *l = NULL;
    for (int i = 0; i < 100 && s && !(l = queue_lease_next(s)); i++) run_for(10);
    CHECK(l != NULL);
    if (!l) return;
    run_for(100); /* the lease's snapshot committed */

    set_faults("sync wal\n");
    queue_nack(l, 60000, "boom"); /* due in a minute: it stays a retry */
    run_for(300);                 /* its row and the snapshot fail, retried */
    store_health h;
    store_health_get(&h);
    CHECK(!h.healthy && h.failing[STORE_OP_COMMIT]);
    set_faults("");
    run_for(1500); /* the writer's backoff (at most 1 s), then the commit */
    store_health_get(&h);
    CHECK(h.healthy);

    crash_copy(dir, copy);
    close_queue(st, q);
    CHECK_INT(open_queue(copy, &st, &q), 0);
    lease_one(q, "t", "f", 2000, got, sizeof got);
    CHECK_STR(got, "one");
    close_queue(st, q);
}

/* Two publishes to a new topic, the second handed to the writer while the
 * first (which inserts the topic's row) fails: the second is acknowledged,
 * so its message and the topic's row must be committed together. */
static void test_topic_row_lost_with_a_failed_publish(void)
{
    char dir[300], copy[310], got[64];
    snprintf(dir, sizeof dir, "%s/topic", root);
    snprintf(copy, sizeof copy, "%s.crash", dir);
    store *st;
    queue *q;
    CHECK_INT(open_queue(dir, &st, &q), 0);
    set_faults("sync wal 1\n"); /* the next commit fails, no more */
    result a = {0}, b = {0};
    publish_async(q, "n", "first", &a);
    uv_run(&loop, UV_RUN_NOWAIT); /* a is with the writer */
    publish_async(q, "n", "second", &b);
    run_until(&a.done);
    run_until(&b.done);
    CHECK(a.status != 0);
    CHECK_INT(b.status, 0);
    set_faults("");
    run_for(50);

    crash_copy(dir, copy);
    close_queue(st, q);
    CHECK_INT(open_queue(copy, &st, &q), 0);
    queue_topic_stats ts;
    CHECK_INT(queue_topic_get_stats(q, "n", &ts), 0);
    CHECK_INT(subscribe(q, "n", "f"), 0);
    lease_one(q, "n", "f", 2000, got, sizeof got);
    CHECK_STR(got, "second");
    close_queue(st, q);
}

static int available;

static void on_available(queue_sub *sub, void *data)
{
    available++;
}

/* A trigger that must read its messages from the store (at start, all are
 * there only) while reads fail: once they work again it reads them and says
 * so by itself, with nothing leased nor published meanwhile (before, it
 * waited for a lease that nothing would ask for). */
static void test_lagging_read_retried(void)
{
    char dir[300], got[64];
    snprintf(dir, sizeof dir, "%s/lag", root);
    store *st;
    queue *q;
    CHECK_INT(open_queue(dir, &st, &q), 0);
    CHECK_INT(subscribe(q, "t", "f"), 0);
    result r = {0};
    publish_async(q, "t", "stored", &r);
    run_until(&r.done);
    CHECK_INT(r.status, 0);
    close_queue(st, q);

    CHECK_INT(open_queue(dir, &st, &q), 0); /* its fetch is queued, not yet run */
    queue_events ev = {.available = on_available};
    queue_set_events(q, &ev);
    set_faults("read any\n");
    run_for(300);
    store_health h;
    store_health_get(&h);
    CHECK(h.failing[STORE_OP_READ]);
    available = 0;
    set_faults("");
    run_for(1500); /* the writer's backoff, then the read */
    CHECK(available > 0);
    store_health_get(&h);
    CHECK(h.healthy);
    lease_one(q, "t", "f", 100, got, sizeof got);
    CHECK_STR(got, "stored");
    close_queue(st, q);
}

int main(void)
{
    snprintf(root, sizeof root, "%s/spate-test-faultvfs-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(root)) return 1;
    snprintf(ctl, sizeof ctl, "%s/faults", root);
    set_faults("");
    failio_watch(ctl);
    CHECK_INT(faultvfs_register(), SQLITE_OK);
    CHECK_STR(sqlite3_vfs_find(NULL)->zName, "spate-faults");
    uv_loop_init(&loop);
    uv_timer_init(&loop, &tick);

    RUN(test_rules);
    RUN(test_retry_row_lost_with_the_disk);
    RUN(test_topic_row_lost_with_a_failed_publish);
    RUN(test_lagging_read_retried);

    failio_watch(NULL);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", root);
    return TEST_RESULT();
}
#endif
