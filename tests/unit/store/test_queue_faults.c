/* The queue on SQLite under allocation failures (issue 21), as SQLite tests
 * itself: a scenario (publish, lease, ack, nack, release, dead letter,
 * redrive, a new trigger, and a restore) runs once for each allocation it makes, that
 * allocation failing (common/failpoint.h). After each run the store is copied
 * as a crash would leave it (what was committed, nothing more) and reopened;
 * every message whose publish was acknowledged must be delivered there again
 * unless it was settled, and nothing may crash or leak (ASan, LSan).
 *
 * Needs the build option SPATE_FAILPOINTS (the ASan build of make sanitize):
 * skipped without it (ctest: exit 77). SPATE_FAULTS_MAX bounds the sweep
 * (default: every allocation of the scenario, some hundreds of runs). */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/failpoint.h"
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

#define WAIT_MS 10000
#define NMSG 5 /* published in the scenario */

static char root[256];
static uv_loop_t loop;
static uv_timer_t tick;
static int runs;

static void on_tick(uv_timer_t *t) {}

static void run_until(const int *flag)
{
    int64_t end = clock_now_ms() + WAIT_MS;
    uv_timer_start(&tick, on_tick, 5, 5);
    while (!*flag && clock_now_ms() < end) uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
}

static void run_for(int64_t ms)
{
    int64_t end = clock_now_ms() + ms;
    uv_timer_start(&tick, on_tick, 5, 5);
    while (clock_now_ms() < end) uv_run(&loop, UV_RUN_ONCE);
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

static void on_moved(void *data, int status, uint64_t moved)
{
    on_status(data, status);
}

static void on_closed(void *data)
{
    *(int *)data = 1;
}

static int open_queue(const char *dir, store **st, queue **q, char *err, size_t errcap)
{
    int rc = store_open(dir, st, err, errcap);
    if (rc) return rc;
    queue_events ev = {0};
    rc = queue_open(&loop, *st, &ev, q, err, errcap);
    if (rc) {
        /* Its writer's handles close with the loop's next turns. */
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

/* One publish of "m<i>" (key "k<i % 2>"); its status. */
static int publish(queue *q, const char *topic, int i)
{
    buf body;
    buf_init(&body, 1024);
    char key[8], data[16];
    snprintf(key, sizeof key, "k%d", i % 2);
    snprintf(data, sizeof data, "m%d", i);
    if (buf_append(&body, key, strlen(key) + 1) || buf_append(&body, data, strlen(data) + 1)) {
        buf_free(&body);
        return ERR_NOMEM; /* a failed allocation of the test's own */
    }
    queue_input in = {.key = body.data,
                      .key_len = (uint32_t)strlen(key),
                      .data = body.data + strlen(key) + 1,
                      .len = (uint32_t)strlen(data)};
    result r = {0};
    queue_publish(q, topic, &body, &in, 1, on_published, &r);
    run_until(&r.done);
    CHECK(r.done);
    return r.status;
}

static int subscribe(queue *q, const char *function, int ordered, int max_attempts)
{
    queue_sub_config cfg = {.max_attempts = (uint32_t)max_attempts, .ordered = ordered};
    snprintf(cfg.function, sizeof cfg.function, "%s", function);
    snprintf(cfg.dlq, sizeof cfg.dlq, "t.dlq");
    result r = {0};
    int rc = queue_subscribe(q, "t", &cfg, on_status, &r);
    if (rc) return rc;
    run_until(&r.done);
    CHECK(r.done);
    return r.status;
}

static int msg_index(const queue_msg *m)
{
    int i = -1;
    if (m->len >= 2 && m->data[0] == 'm') i = atoi(m->data + 1);
    CHECK(i >= 0 && i < NMSG);
    return i >= 0 && i < NMSG ? i : 0;
}

/* The store of dir as a crash would leave it: what is committed, copied with
 * SQLite's backup (it reads through the WAL) into to/spate.db. */
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

typedef struct outcome {
    int acknowledged[NMSG]; /* the publish answered 0 */
    int settled[NMSG];      /* acked by f, or dead-lettered by f (then in t.dlq) */
    int dead[NMSG];         /* handed to queue_dead_letter by f */
} outcome;

/* Leases what f and g have, and settles f's in turn: ack, nack, release, dead
 * letter. g (ordered) holds its leases: in flight at the crash. */
static void consume(queue *q, outcome *o)
{
    queue_sub *f = queue_find_sub(q, "t", "f");
    queue_sub *g = queue_find_sub(q, "t", "g");
    int turn = 0;
    /* Everything committed is ready at once (a nack without delay, a release
     * too); what is not there now is not waited for. */
    for (int round = 0; f && round < NMSG + 2; round++) {
        queue_lease *l = queue_lease_next(f);
        if (!l) break;
        int i = msg_index(l->msg);
        switch (turn++ % 4) {
        case 0:
            queue_ack(l);
            o->settled[i] = 1;
            break;
        case 1:
            queue_nack(l, 0, "boom");
            break;
        case 2:
            queue_release(l);
            break;
        default:
            queue_dead_letter(l, "for good");
            o->dead[i] = 1;
            break;
        }
    }
    for (int round = 0; g && round < NMSG; round++)
        if (!queue_lease_next(g)) break;
}

/* After the restart: every acknowledged message not settled is delivered
 * (f: again, or found in t.dlq when it was dead-lettered; g: all). */
static void check_restored(queue *q, const outcome *o, uint64_t n)
{
    int seen_f[NMSG] = {0}, seen_g[NMSG] = {0}, in_dlq[NMSG] = {0};
    queue_sub *f = queue_find_sub(q, "t", "f");
    queue_sub *g = queue_find_sub(q, "t", "g");
    CHECK(f != NULL && g != NULL);
    if (!f || !g) return;
    int64_t end = clock_now_ms() + 3000;
    for (;;) {
        int missing = 0;
        queue_lease *l;
        while ((l = queue_lease_next(f))) {
            seen_f[msg_index(l->msg)] = 1;
            queue_ack(l);
        }
        while ((l = queue_lease_next(g))) {
            seen_g[msg_index(l->msg)] = 1;
            queue_ack(l);
        }
        /* Dead letters: f sees them again (not moved, or redriven), or they
         * are in t.dlq (read below). */
        for (int i = 0; i < NMSG; i++)
            missing +=
                o->acknowledged[i] && ((!o->settled[i] && !o->dead[i] && !seen_f[i]) || !seen_g[i]);
        if (!missing || clock_now_ms() > end) break;
        run_for(10);
    }
    queue_sub_config cfg = {.max_attempts = 1};
    snprintf(cfg.function, sizeof cfg.function, "d");
    result r = {0};
    CHECK_INT(queue_subscribe(q, "t.dlq", &cfg, on_status, &r), 0);
    run_until(&r.done);
    queue_sub *d = queue_find_sub(q, "t.dlq", "d");
    end = clock_now_ms() + 1000;
    while (d && clock_now_ms() < end) {
        queue_lease *l = queue_lease_next(d);
        if (!l) {
            int all = 1;
            for (int i = 0; i < NMSG; i++)
                all &= !(o->acknowledged[i] && !o->settled[i] && !seen_f[i] && !in_dlq[i]);
            if (all) break;
            run_for(10);
            continue;
        }
        in_dlq[msg_index(l->msg)] = 1;
        queue_ack(l);
    }
    for (int i = 0; i < NMSG; i++) {
        if (!o->acknowledged[i]) continue;
        if (!seen_g[i] || (!o->settled[i] && !seen_f[i] && !in_dlq[i])) {
            fprintf(stderr,
                    "allocation %llu failing: acknowledged m%d lost after the restart "
                    "(f %d, g %d, dlq %d, acked %d, dead %d)\n",
                    (unsigned long long)n, i, seen_f[i], seen_g[i], in_dlq[i], o->settled[i],
                    o->dead[i]);
            test_failures++;
        }
    }
}

/* The scenario with allocation n failing (and, in a second pass, the restore
 * with allocation n failing); 0 when neither reached allocation n. */
static int run_with_failure(uint64_t n)
{
    char dir[300], copy[310];
    snprintf(dir, sizeof dir, "%s/%d", root, ++runs);
    snprintf(copy, sizeof copy, "%s.crash", dir);
    char err[512] = "";
    store *st;
    queue *q;
    CHECK_INT(open_queue(dir, &st, &q, err, sizeof err), 0);
    CHECK_INT(subscribe(q, "f", 0, 2), 0);
    CHECK_INT(subscribe(q, "g", 1, 3), 0);
    outcome o;
    memset(&o, 0, sizeof o);

    failpoint_arm(n, 1, NULL, 0);
    for (int i = 0; i < NMSG - 1; i++) o.acknowledged[i] = publish(q, "t", i) == 0;
    consume(q, &o);
    /* The dead letters back to t (once their move is committed). */
    run_for(15);
    result r = {0};
    if (queue_redrive(q, "t.dlq", 0, 10, on_moved, &r) == 0) {
        run_until(&r.done);
        CHECK(r.done);
    }
    /* A trigger change while messages are in flight. */
    subscribe(q, "h", 0, 1);
    o.acknowledged[NMSG - 1] = publish(q, "t", NMSG - 1) == 0;
    consume(q, &o);
    run_for(15); /* the commits of what the scenario changed */
    uint64_t fired = failpoint_fired();
    failpoint_disarm();

    crash_copy(dir, copy);
    close_queue(st, q);

    /* The restart, allocation n failing in it: a clean refusal, or a start. */
    failpoint_arm(n, 1, NULL, 0);
    err[0] = '\0';
    int rc = open_queue(copy, &st, &q, err, sizeof err);
    fired += failpoint_fired();
    failpoint_disarm();
    if (rc != 0) {
        /* Refused with its reason. */
        if (!err[0])
            fprintf(stderr, "allocation %llu failing: the store did not open, nor said why\n",
                    (unsigned long long)n);
        CHECK(err[0] != '\0');
        err[0] = '\0';
        rc = open_queue(copy, &st, &q, err, sizeof err);
        if (rc) fprintf(stderr, "reopen: %s\n", err);
        CHECK_INT(rc, 0);
        if (rc) return 0;
    }
    check_restored(q, &o, n);
    close_queue(st, q);
    return fired > 0;
}

int main(void)
{
    /* In memory when there is a tmpfs: the runs commit a few hundred times,
     * and what is tested is not the disk. */
    snprintf(root, sizeof root, "%s/spate-test-faults-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(root)) return 1;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &tick);
    uint64_t max = 0;
    const char *m = getenv("SPATE_FAULTS_MAX");
    if (m) max = strtoull(m, NULL, 10);
    /* Allocation 0 is none: the scenario's own checks without a failure. */
    uint64_t n = 1;
    CHECK_INT(run_with_failure(UINT64_MAX / 2), 0);
    while ((!max || n <= max) && run_with_failure(n) && test_failures < 20) n++;
    fprintf(stderr, "  %llu allocations failed in turn\n", (unsigned long long)n - 1);
    CHECK(n > 10); /* the scenario allocates: the injection reached it */
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", root);
    return TEST_RESULT();
}
#endif
