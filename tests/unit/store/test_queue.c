/* Unit tests of the queue on SQLite (store/queue.h), without spated: a
 * temporary store, a real uv loop, the writer thread committing as in
 * production. Each test starts from an empty store. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "store/sqlqueue.h"
#include "store/store.h"
#include "test.h"

/* A wait gives up after this: far beyond any commit on a loaded machine,
 * short of ctest's timeout. */
#define WAIT_MS 10000

static char root[256];
static char dir[300];
static int dirs;
static uv_loop_t loop;
static uv_timer_t tick; /* keeps uv_run from blocking while a test waits */
static store *st;
static queue *q;
static int available;

static void on_available(queue_sub *sub, void *data)
{
    available++;
}

static void on_tick(uv_timer_t *t) {}

/* Runs the loop until *flag is set or WAIT_MS have passed; 0 when it was. */
static int run_until(const int *flag)
{
    int64_t end = clock_now_ms() + WAIT_MS;
    uv_timer_start(&tick, on_tick, 5, 5);
    while (!*flag && clock_now_ms() < end) uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
    return *flag ? 0 : -1;
}

/* Runs the loop for about ms. */
static void run_for(int64_t ms)
{
    int64_t end = clock_now_ms() + ms;
    uv_timer_start(&tick, on_tick, 5, 5);
    while (clock_now_ms() < end) uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
}

static void open_queue(void)
{
    char err[256] = "";
    int rc = store_open(dir, &st, err, sizeof err);
    if (rc) fprintf(stderr, "store_open: %s\n", err);
    CHECK_INT(rc, 0);
    queue_events ev = {.available = on_available};
    rc = queue_open(&loop, st, &ev, &q, err, sizeof err);
    if (rc) fprintf(stderr, "queue_open: %s\n", err);
    CHECK_INT(rc, 0);
}

static void on_closed(void *data)
{
    *(int *)data = 1;
}

static void close_queue(void)
{
    int done = 0;
    queue_close(q, on_closed, &done);
    CHECK_INT(run_until(&done), 0);
    store_close(st);
    q = NULL;
    st = NULL;
}

/* A new, empty store directory for the next test. */
static void fresh(void)
{
    snprintf(dir, sizeof dir, "%s/%d", root, ++dirs);
    open_queue();
}

typedef struct result {
    int done, status;
    uint64_t value; /* first seq, count */
} result;

static void on_published(void *data, int status, uint64_t first)
{
    result *r = data;
    r->done = 1;
    r->status = status;
    r->value = first;
}

static void on_done(void *data, int status)
{
    result *r = data;
    r->done = 1;
    r->status = status;
}

static void on_count(void *data, int status, uint64_t count)
{
    result *r = data;
    r->done = 1;
    r->status = status;
    r->value = count;
}

/* Publishes one message (key NULL: none) and waits for its commit; its seq. */
static uint64_t publish(const char *topic, const char *key, const char *data)
{
    buf body;
    buf_init(&body, 1u << 20);
    size_t klen = key ? strlen(key) : 0, dlen = strlen(data);
    /* The key NUL-terminated, as queue_msg promises it. */
    if (key) buf_append(&body, key, klen + 1);
    buf_append(&body, data, dlen + 1);
    queue_input in = {.key = key ? body.data : NULL,
                      .key_len = (uint32_t)klen,
                      .data = body.data + (key ? klen + 1 : 0),
                      .len = (uint32_t)dlen};
    result r = {0};
    queue_publish(q, topic, &body, &in, 1, on_published, &r);
    CHECK_INT(run_until(&r.done), 0);
    CHECK_INT(r.status, 0);
    return r.value;
}

static queue_sub *subscribe(const char *topic, const char *function, const char *dlq, int ordered)
{
    queue_sub_config cfg = {.max_attempts = 3, .ordered = ordered};
    snprintf(cfg.function, sizeof cfg.function, "%s", function);
    snprintf(cfg.dlq, sizeof cfg.dlq, "%s", dlq ? dlq : "none.dlq");
    result r = {0};
    CHECK_INT(queue_subscribe(q, topic, &cfg, on_done, &r), 0);
    CHECK_INT(run_until(&r.done), 0);
    CHECK_INT(r.status, 0);
    queue_sub *s = queue_find_sub(q, topic, function);
    CHECK(s != NULL);
    return s;
}

/* The next lease of s, waiting for one up to WAIT_MS; NULL when none came. */
static queue_lease *lease_wait(queue_sub *s)
{
    int64_t end = clock_now_ms() + WAIT_MS;
    uv_timer_start(&tick, on_tick, 5, 5);
    queue_lease *l;
    while (!(l = queue_lease_next(s)) && clock_now_ms() < end) uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
    return l;
}

static int msg_is(const queue_msg *m, const char *data)
{
    return m->len == strlen(data) && memcmp(m->data, data, m->len) == 0;
}

static queue_topic_stats topic_stats(const char *topic)
{
    queue_topic_stats ts;
    memset(&ts, 0, sizeof ts);
    CHECK_INT(queue_topic_get_stats(q, topic, &ts), 0);
    return ts;
}

/* Runs the loop until topic stores n messages (settled ones leave the store
 * in a later commit); 0 when it did. */
static int stored_becomes(const char *topic, uint64_t n)
{
    int64_t end = clock_now_ms() + WAIT_MS;
    while (topic_stats(topic).stored != n && clock_now_ms() < end) run_for(10);
    return topic_stats(topic).stored == n ? 0 : -1;
}

/* --- Reading a topic -------------------------------------------------------------- */

typedef struct readout {
    int done, status;
    size_t n;
    uint64_t seq[8];
    char data[8][32], key[8][32], source[8][32], error[8][32];
    uint32_t attempts[8];
} readout;

static void on_read(void *data, int status, queue_msg *const *msgs, size_t n)
{
    readout *r = data;
    r->done = 1;
    r->status = status;
    for (size_t i = 0; i < n && i < 8; i++) {
        const queue_msg *m = msgs[i];
        r->seq[i] = m->seq;
        snprintf(r->data[i], sizeof r->data[i], "%.*s", (int)m->len, m->data);
        snprintf(r->key[i], sizeof r->key[i], "%s", m->key ? m->key : "");
        snprintf(r->source[i], sizeof r->source[i], "%s", m->source ? m->source : "");
        snprintf(r->error[i], sizeof r->error[i], "%s", m->error ? m->error : "");
        r->attempts[i] = m->attempts;
    }
    r->n = n;
}

static readout read_topic(const char *topic)
{
    readout r;
    memset(&r, 0, sizeof r);
    CHECK_INT(queue_read(q, topic, 0, 8, on_read, &r), 0);
    CHECK_INT(run_until(&r.done), 0);
    CHECK_INT(r.status, 0);
    return r;
}

/* --- Tests ------------------------------------------------------------------------ */

/* Messages come in publish order, once each; acked ones leave the store. */
static void publish_lease_ack(void)
{
    fresh();
    queue_sub *s = subscribe("orders", "f", NULL, 0);
    CHECK_INT(publish("orders", NULL, "one"), 1);
    CHECK_INT(publish("orders", NULL, "two"), 2);
    CHECK_INT(publish("orders", NULL, "three"), 3);
    CHECK_INT(topic_stats("orders").stored, 3);
    const char *want[] = {"one", "two", "three"};
    queue_lease *l[3];
    for (int i = 0; i < 3; i++) {
        l[i] = lease_wait(s);
        CHECK(l[i] != NULL);
        if (!l[i]) return;
        CHECK_INT(l[i]->msg->seq, i + 1);
        CHECK_INT(l[i]->attempt, 1);
        CHECK(msg_is(l[i]->msg, want[i]));
    }
    CHECK(queue_lease_next(s) == NULL); /* each message once */
    queue_sub_stats ss;
    queue_sub_get_stats(s, &ss);
    CHECK_INT(ss.leased, 3);
    CHECK_INT(ss.depth, 3);
    for (int i = 0; i < 3; i++) queue_ack(l[i]);
    queue_sub_get_stats(s, &ss);
    CHECK_INT(ss.depth, 0);
    CHECK_INT(ss.leased, 0);
    CHECK_INT(ss.acked, 3);
    CHECK_INT(ss.delivered, 3);
    CHECK_INT(stored_becomes("orders", 0), 0);
    CHECK_INT(topic_stats("orders").published, 3);
    close_queue();
}

/* A nack counts the attempt and hides the message for its delay. */
static void nack_with_delay(void)
{
    fresh();
    queue_sub *s = subscribe("orders", "f", NULL, 0);
    publish("orders", NULL, "m");
    queue_lease *l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    int64_t nacked = clock_now_ms();
    queue_nack(l, 300, "boom");
    CHECK(queue_lease_next(s) == NULL); /* not visible before the delay */
    queue_sub_stats ss;
    queue_sub_get_stats(s, &ss);
    CHECK_INT(ss.retrying, 1);
    CHECK_INT(ss.depth, 1);
    run_for(100);
    CHECK(queue_lease_next(s) == NULL); /* still hidden */
    /* Wait for the word first: a lease polled by the 5 ms tick can find the
     * message due before the queue's own timer has fired and told anyone. */
    available = 0;
    CHECK_INT(run_until(&available), 0); /* the consumer is told when it comes due */
    l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    CHECK(clock_now_ms() - nacked >= 300);
    CHECK_INT(l->attempt, 2);
    CHECK(msg_is(l->msg, "m"));
    queue_ack(l);
    queue_sub_get_stats(s, &ss);
    CHECK_INT(ss.depth, 0);
    CHECK_INT(ss.retrying, 0);
    close_queue();
}

/* A release gives the message back at once without counting the attempt. */
static void release_keeps_attempt(void)
{
    fresh();
    queue_sub *s = subscribe("orders", "f", NULL, 0);
    publish("orders", NULL, "a");
    publish("orders", NULL, "b");
    queue_lease *l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    queue_release(l);
    l = queue_lease_next(s);
    CHECK(l != NULL);
    if (!l) return;
    CHECK_INT(l->msg->seq, 1); /* back in its place, before "b" */
    CHECK_INT(l->attempt, 1);
    /* A retry released stays at its attempt too. */
    queue_nack(l, 0, "once");
    l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    CHECK_INT(l->msg->seq, 1);
    CHECK_INT(l->attempt, 2);
    queue_release(l);
    l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    CHECK_INT(l->msg->seq, 1);
    CHECK_INT(l->attempt, 2);
    queue_ack(l);
    l = queue_lease_next(s);
    CHECK(l != NULL);
    if (!l) return;
    CHECK(msg_is(l->msg, "b"));
    queue_ack(l);
    close_queue();
}

/* A dead letter lands in the DLQ topic with its source, attempts and error,
 * and leaves the subscription. */
static void dead_letter(void)
{
    fresh();
    queue_sub *s = subscribe("orders", "f", "orders.dlq", 0);
    publish("orders", "k1", "payload");
    queue_lease *l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    queue_nack(l, 0, "first");
    l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    CHECK_INT(l->attempt, 2);
    queue_dead_letter(l, "final error");
    CHECK_INT(stored_becomes("orders.dlq", 1), 0);
    readout r = read_topic("orders.dlq");
    CHECK_INT(r.n, 1);
    CHECK_STR(r.data[0], "payload");
    CHECK_STR(r.key[0], "k1");
    CHECK_STR(r.source[0], "orders");
    CHECK_STR(r.error[0], "final error");
    CHECK_INT(r.attempts[0], 2);
    queue_sub_stats ss;
    queue_sub_get_stats(s, &ss);
    CHECK_INT(ss.dead_lettered, 1);
    CHECK_INT(ss.depth, 0);
    CHECK(queue_lease_next(s) == NULL);
    CHECK_INT(stored_becomes("orders", 0), 0);
    close_queue();
}

/* Publishes what in says (attributes, a refusal) with data as its body. */
static void publish_input(const char *topic, queue_input in, const char *data)
{
    buf body;
    buf_init(&body, 1u << 20);
    buf_append(&body, data, strlen(data) + 1);
    in.data = body.data;
    in.len = (uint32_t)strlen(data);
    result r = {0};
    queue_publish(q, topic, &body, &in, 1, on_published, &r);
    CHECK_INT(run_until(&r.done), 0);
    CHECK_INT(r.status, 0);
}

static int attrs_are(const queue_attrs *a, const char *source, const char *id, int64_t ts,
                     const char *headers, int redelivered)
{
    return a && a->source && strcmp(a->source, source) == 0 && a->upstream_id &&
           strcmp(a->upstream_id, id) == 0 && a->upstream_ts_ms == ts &&
           (headers ? a->headers && a->headers_len == strlen(headers) &&
                          strcmp(a->headers, headers) == 0
                    : !a->headers) &&
           a->redelivered == redelivered;
}

static int read_attrs_ok;

static void on_read_attrs(void *data, int status, queue_msg *const *msgs, size_t n)
{
    int *done = data;
    *done = 1;
    read_attrs_ok =
        status == 0 && n == 2 && msgs[0]->attrs == NULL &&
        attrs_are(msgs[1]->attrs, "src", "1700000000000-1", 1700000000000, "{\"h\":\"v\"}", 1);
}

/* Attributes go in with a message and come out with it: leased, after a
 * restart, in its dead letter, back through a redrive; a message without
 * them has none. The deadline's origin is the earlier of the two times. */
static void attributes(void)
{
    fresh();
    queue_sub *s = subscribe("orders", "f", "orders.dlq", 0);
    publish("orders", NULL, "plain");
    const char *hdr = "{\"h\":\"v\"}";
    queue_attrs a = {.source = "src",
                     .upstream_id = "1700000000000-1",
                     .upstream_ts_ms = 1700000000000,
                     .headers = hdr,
                     .headers_len = (uint32_t)strlen(hdr),
                     .redelivered = 1};
    publish_input("orders", (queue_input){.attrs = &a}, "with");
    queue_lease *l = lease_wait(s);
    CHECK(l != NULL && l->msg->attrs == NULL && queue_msg_since_ms(l->msg) == l->msg->published_ms);
    if (l) queue_ack(l);
    l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    CHECK(attrs_are(l->msg->attrs, "src", "1700000000000-1", 1700000000000, hdr, 1));
    CHECK(queue_msg_since_ms(l->msg) == 1700000000000);
    queue_sub_stats ss;
    queue_sub_get_stats(s, &ss);
    CHECK(ss.oldest_ms == 1700000000000);
    queue_dead_letter(l, "gave up");
    CHECK_INT(stored_becomes("orders.dlq", 1), 0);
    /* A refused entry: stored as a dead letter of orders, attempts 0. */
    a.redelivered = 0;
    a.headers = NULL;
    a.headers_len = 0;
    publish_input("orders.dlq",
                  (queue_input){.attrs = &a, .error = "too big", .source_topic = "orders"}, "");
    close_queue();
    open_queue();
    readout r = read_topic("orders.dlq");
    CHECK_INT(r.n, 2);
    CHECK_STR(r.source[0], "orders");
    CHECK_STR(r.source[1], "orders");
    CHECK_STR(r.error[1], "too big");
    CHECK_INT(r.attempts[1], 0);
    /* Redriven: both back in orders, their attributes with them. */
    result rr = {0};
    CHECK_INT(queue_redrive(q, "orders.dlq", 0, 10, (queue_redrive_cb)on_count, &rr), 0);
    CHECK_INT(run_until(&rr.done), 0);
    CHECK_INT(rr.value, 2);
    s = queue_find_sub(q, "orders", "f");
    CHECK(s != NULL);
    if (!s) return;
    l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    CHECK(attrs_are(l->msg->attrs, "src", "1700000000000-1", 1700000000000, hdr, 1));
    CHECK(l->msg->source == NULL);
    queue_ack(l);
    l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    CHECK(attrs_are(l->msg->attrs, "src", "1700000000000-1", 1700000000000, NULL, 0));
    CHECK_INT(l->msg->len, 0);
    queue_ack(l);
    /* Read back from the store, the plain one without. */
    publish("plain", NULL, "p");
    a.headers = hdr;
    a.headers_len = (uint32_t)strlen(hdr);
    a.redelivered = 1;
    publish_input("plain", (queue_input){.attrs = &a}, "w");
    int done = 0;
    CHECK_INT(queue_read(q, "plain", 0, 8, on_read_attrs, &done), 0);
    CHECK_INT(run_until(&done), 0);
    CHECK(read_attrs_ok);
    close_queue();
}

/* An ordered subscription leases one message per key at a time, in order. */
static void ordered_keys(void)
{
    fresh();
    queue_sub *s = subscribe("orders", "f", NULL, 1);
    publish("orders", "a", "a1");
    publish("orders", "a", "a2");
    publish("orders", "b", "b1");
    publish("orders", NULL, "nokey");
    queue_lease *a1 = lease_wait(s);
    CHECK(a1 != NULL);
    if (!a1) return;
    CHECK(msg_is(a1->msg, "a1"));
    queue_lease *b1 = queue_lease_next(s); /* a is busy: a2 waits */
    CHECK(b1 != NULL);
    if (!b1) return;
    CHECK(msg_is(b1->msg, "b1"));
    queue_lease *nk = queue_lease_next(s); /* no key: never held back */
    CHECK(nk != NULL);
    if (!nk) return;
    CHECK(msg_is(nk->msg, "nokey"));
    CHECK(queue_lease_next(s) == NULL);
    /* A key stays busy while its message waits for a retry. */
    queue_nack(a1, 0, "again");
    a1 = lease_wait(s);
    CHECK(a1 != NULL);
    if (!a1) return;
    CHECK(msg_is(a1->msg, "a1"));
    CHECK_INT(a1->attempt, 2);
    CHECK(queue_lease_next(s) == NULL);
    queue_ack(a1);
    queue_lease *a2 = queue_lease_next(s);
    CHECK(a2 != NULL);
    if (!a2) return;
    CHECK(msg_is(a2->msg, "a2"));
    queue_ack(a2);
    queue_ack(b1);
    queue_ack(nk);
    close_queue();
}

/* Ordered, after a crash: a key's message that ran and was settled in memory
 * only (the saved position could not pass another key's waiting message)
 * runs again before the later message of its key that was in flight — not
 * after it (the nemesis saw k:722 run again before k:711). */
static void ordered_replay_in_order(void)
{
    fresh();
    queue_sub *s = subscribe("o", "f", NULL, 1);
    publish("o", "b", "b1"); /* 1: leased, holds b */
    publish("o", "b", "b2"); /* 2: waits behind b1: the position stays here */
    publish("o", "a", "a1"); /* 3: runs, settled in memory only */
    publish("o", "a", "a2"); /* 4: in flight at the crash */
    queue_lease *b1 = lease_wait(s), *a1 = queue_lease_next(s);
    CHECK(b1 && msg_is(b1->msg, "b1") && a1 && msg_is(a1->msg, "a1"));
    if (!b1 || !a1) return;
    queue_ack(a1);
    queue_lease *a2 = queue_lease_next(s);
    CHECK(a2 && msg_is(a2->msg, "a2"));
    run_for(50); /* the snapshot: position 2, leased {1, 4} */
    close_queue();

    open_queue();
    s = queue_find_sub(q, "o", "f");
    CHECK(s != NULL);
    if (!s) return;
    /* What may run at once now: b1 (b) and one of a: a1, the older. */
    queue_lease *x = lease_wait(s), *y = lease_wait(s);
    CHECK(x && y);
    if (!x || !y) return;
    queue_lease *a = x->msg->key[0] == 'a' ? x : y, *b = a == x ? y : x;
    CHECK(msg_is(a->msg, "a1"));
    CHECK(msg_is(b->msg, "b1"));
    CHECK(queue_lease_next(s) == NULL); /* a2 and b2 wait for their keys */
    queue_ack(a);
    queue_ack(b);
    x = lease_wait(s);
    y = lease_wait(s);
    CHECK(x && y);
    if (x) queue_ack(x);
    if (y) queue_ack(y);
    close_queue();
}

/* Ordered, after a crash: a retry past the saved position (its row keeps its
 * attempts) runs again after the earlier message of its key that ran and was
 * settled in memory only, not before it (the nemesis: 18 of 40 faults, every
 * one a failed message); with its attempts, and if not yet due, at its time,
 * holding its key meanwhile. */
static void ordered_retry_replay_in_order(void)
{
    fresh();
    queue_sub *s = subscribe("o", "f", NULL, 1);
    publish("o", "b", "b1"); /* 1: leased, holds b */
    publish("o", "b", "b2"); /* 2: waits behind b1: the position stays here */
    publish("o", "a", "a1"); /* 3: runs, settled in memory only */
    publish("o", "a", "a2"); /* 4: fails, due again at once */
    publish("o", "c", "c1"); /* 5: runs, settled in memory only */
    publish("o", "c", "c2"); /* 6: fails, due again in a minute */
    publish("o", "c", "c3"); /* 7: waits behind c2 */
    queue_lease *b1 = lease_wait(s), *a1 = queue_lease_next(s), *c1 = queue_lease_next(s);
    CHECK(b1 && msg_is(b1->msg, "b1") && a1 && msg_is(a1->msg, "a1") && c1 &&
          msg_is(c1->msg, "c1"));
    if (!b1 || !a1 || !c1) return;
    queue_ack(a1);
    queue_ack(c1);
    queue_lease *a2 = queue_lease_next(s), *c2 = queue_lease_next(s);
    CHECK(a2 && msg_is(a2->msg, "a2") && c2 && msg_is(c2->msg, "c2"));
    if (!a2 || !c2) return;
    queue_nack(a2, 0, "a2 failed");
    queue_nack(c2, 60000, "c2 failed");
    run_for(50); /* position 2, leased {1}, retry rows {4, 6} */
    close_queue();

    open_queue();
    s = queue_find_sub(q, "o", "f");
    CHECK(s != NULL);
    if (!s) return;
    queue_lease *got[3] = {0};
    for (int i = 0; i < 3; i++) {
        queue_lease *l = lease_wait(s);
        CHECK(l != NULL);
        if (!l) return;
        got[l->msg->key[0] - 'a'] = l;
    }
    CHECK(got[0] && msg_is(got[0]->msg, "a1"));
    CHECK(got[1] && msg_is(got[1]->msg, "b1"));
    CHECK(got[2] && msg_is(got[2]->msg, "c1"));
    CHECK(queue_lease_next(s) == NULL); /* a2, b2, c2 and c3 wait for their keys */
    if (!got[0] || !got[1] || !got[2]) return;
    queue_ack(got[0]);
    a2 = queue_lease_next(s);
    CHECK(a2 && msg_is(a2->msg, "a2"));
    if (a2) CHECK_INT(a2->attempt, 2);
    queue_ack(got[2]);
    CHECK(queue_lease_next(s) == NULL); /* c2 not due: c3 waits behind it */
    queue_ack(got[1]);
    queue_lease *b2 = queue_lease_next(s);
    CHECK(b2 && msg_is(b2->msg, "b2"));
    CHECK(queue_lease_next(s) == NULL);
    if (a2) queue_ack(a2);
    if (b2) queue_ack(b2);
    close_queue();
}

/* After close and reopen, what was leased but not settled and what was never
 * leased come back; what was acked does not; a retry keeps its attempts. */
static void restore_after_reopen(void)
{
    fresh();
    queue_sub *s = subscribe("orders", "f", NULL, 0);
    for (int i = 1; i <= 5; i++) {
        char d[8];
        snprintf(d, sizeof d, "m%d", i);
        publish("orders", NULL, d);
    }
    queue_lease *l1 = lease_wait(s), *l2 = queue_lease_next(s), *l3 = queue_lease_next(s);
    CHECK(l1 && l2 && l3);
    if (!l1 || !l2 || !l3) return;
    queue_ack(l1);                  /* settled: gone for good */
    queue_nack(l3, 60000, "later"); /* retrying, far in the future */
    run_for(50);                    /* its state committed */
    (void)l2;                       /* in flight when the node stops */
    close_queue();

    open_queue();
    s = queue_find_sub(q, "orders", "f");
    CHECK(s != NULL);
    if (!s) return;
    uint64_t seen[8];
    uint32_t attempts[8];
    size_t n = 0;
    queue_lease *l;
    while (n < 8 && (l = lease_wait(s)) != NULL) {
        seen[n] = l->msg->seq;
        attempts[n++] = l->attempt;
        queue_ack(l);
        if (n == 3) break;
    }
    CHECK_INT(n, 3);
    CHECK(queue_lease_next(s) == NULL); /* m1 acked, m3 not yet due */
    /* m2 first (it was in flight), then m4 and m5 never leased. */
    if (n == 3) {
        CHECK_INT(seen[0], 2);
        CHECK_INT(attempts[0], 1);
        CHECK_INT(seen[1], 4);
        CHECK_INT(seen[2], 5);
    }
    queue_sub_stats ss;
    queue_sub_get_stats(s, &ss);
    CHECK_INT(ss.retrying, 1);
    CHECK_INT(ss.depth, 1);
    CHECK_INT(ss.acked, 4); /* the one acked before the restart is counted */
    close_queue();
}

/* A message published with a delay is leased by no subscription before its
 * time, at attempt 1; a plain one published after it goes first; the delay
 * holds through a close and reopen (its row and its retry row), and one
 * published with no subscriber yet (fetched from the store) waits too. */
static void delayed_publish(void)
{
    fresh();
    queue_sub *s = subscribe("orders", "f", NULL, 0);
    int64_t start = clock_now_ms();
    publish_input("orders", (queue_input){.delay_ms = 400}, "late");
    publish("orders", NULL, "now");
    queue_sub_stats ss;
    queue_sub_get_stats(s, &ss);
    CHECK_INT(ss.depth, 2);
    /* Asked only while it is early: this machine may be slow. */
    if (clock_now_ms() - start < 350) CHECK_INT(ss.delayed, 1);
    queue_lease *l = lease_wait(s);
    CHECK(l && msg_is(l->msg, "now"));
    if (l) queue_ack(l);
    l = lease_wait(s);
    CHECK(l && msg_is(l->msg, "late") && l->attempt == 1);
    CHECK(clock_now_ms() - start >= 400);
    if (l) queue_ack(l);
    queue_sub_get_stats(s, &ss);
    CHECK_INT(ss.delayed, 0);
    CHECK_INT(ss.depth, 0);

    /* Through a reopen: committed (its retry row), and on another topic
     * published before its subscription (read from the store). */
    start = clock_now_ms();
    publish_input("orders", (queue_input){.delay_ms = 1500}, "kept");
    publish_input("later", (queue_input){.delay_ms = 1500}, "fetched");
    run_for(50);
    close_queue();
    open_queue();
    s = queue_find_sub(q, "orders", "f");
    queue_sub *t = subscribe("later", "g", NULL, 0);
    CHECK(s != NULL && t != NULL);
    if (!s || !t) return;
    run_for(100);
    if (clock_now_ms() - start < 1400) {
        CHECK(queue_lease_next(s) == NULL);
        CHECK(queue_lease_next(t) == NULL);
        queue_sub_get_stats(s, &ss);
        CHECK_INT(ss.delayed, 1);
    }
    l = lease_wait(s);
    CHECK(l && msg_is(l->msg, "kept") && l->attempt == 1);
    CHECK(clock_now_ms() - start >= 1500);
    if (l) queue_ack(l);
    l = lease_wait(t);
    CHECK(l && msg_is(l->msg, "fetched") && l->attempt == 1);
    CHECK(clock_now_ms() - start >= 1500);
    if (l) queue_ack(l);
    close_queue();
}

/* An age limit under subscriptions: what is older goes for each of them (a
 * retry and a ready message), the leased one stays until settled; younger
 * ones stay; the flag is kept across a restart. */
static void retention_under_subscriptions(void)
{
    fresh();
    queue_sub *s = subscribe("q", "f", NULL, 0);
    queue_sub *t = subscribe("q", "g", NULL, 0);
    publish("q", NULL, "old1");
    publish("q", NULL, "old2");
    publish("q", NULL, "old3");
    queue_lease *held = lease_wait(s); /* old1, leased now */
    queue_lease *retry = queue_lease_next(s);
    CHECK(held && retry);
    if (!held || !retry) return;
    queue_nack(retry, 600000, "later"); /* old2 waits as a retry */
    /* Old by 3 s; young will have 3 s to be leased before it is old too. */
    run_for(3100);
    queue_retention ret = {.max_age_ms = 3000, .under_subscriptions = 1};
    result r = {0};
    CHECK_INT(queue_topic_retention(q, "q", &ret, on_done, &r), 0);
    CHECK_INT(run_until(&r.done), 0);
    publish("q", NULL, "young");
    /* Only old1 (leased by f) and young are left in the store. */
    CHECK_INT(stored_becomes("q", 2), 0);
    queue_lease *l = lease_wait(s);
    CHECK(l && msg_is(l->msg, "young"));
    if (l) queue_ack(l);
    CHECK(queue_lease_next(s) == NULL);
    l = lease_wait(t); /* g never leased old1: gone for it too */
    CHECK(l && msg_is(l->msg, "young"));
    if (l) queue_ack(l);
    queue_sub_stats ss;
    queue_sub_get_stats(s, &ss);
    CHECK_INT(ss.retrying, 0);
    CHECK_INT(ss.leased, 1);
    queue_ack(held);
    close_queue();
    open_queue();
    CHECK_INT(topic_stats("q").retention.under_subscriptions, 1);
    CHECK_INT(topic_stats("q").retention.max_age_ms, 3000);
    close_queue();
}

/* A message leased again after a retry has a leased entry and a retry row:
 * after a restart it is delivered once, at the attempt it was at, and its
 * row goes with its ack. */
static void restore_once_after_retry(void)
{
    fresh();
    queue_sub *s = subscribe("r", "f", NULL, 0);
    publish("r", NULL, "m");
    queue_lease *l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    queue_nack(l, 0, "again");
    l = lease_wait(s);
    CHECK(l && l->attempt == 2);
    run_for(50); /* its state committed, it in flight */
    close_queue();
    open_queue();
    s = queue_find_sub(q, "r", "f");
    CHECK(s != NULL);
    if (!s) return;
    l = lease_wait(s);
    CHECK(l && l->attempt == 2 && msg_is(l->msg, "m"));
    if (l) queue_ack(l);
    run_for(100);
    CHECK(queue_lease_next(s) == NULL);
    queue_sub_stats ss;
    queue_sub_get_stats(s, &ss);
    CHECK_INT(ss.depth, 0);
    close_queue();
    /* And its retry row went with the ack. */
    open_queue();
    s = queue_find_sub(q, "r", "f");
    run_for(100);
    CHECK(s && queue_lease_next(s) == NULL);
    close_queue();
}

/* Messages restored from the leased set that are not leased again at once
 * (a trigger of batches leases only what its instances can take) stay in
 * every snapshot: a second restart without their lease brings them all back
 * (the nemesis lost 550 acknowledged messages to two kill -9 before). */
static void restored_kept_until_leased(void)
{
    fresh();
    queue_sub *s = subscribe("b", "f", NULL, 0);
    for (int i = 1; i <= 5; i++) {
        char d[8];
        snprintf(d, sizeof d, "m%d", i);
        publish("b", NULL, d);
    }
    for (int i = 0; i < 5; i++) CHECK((i ? queue_lease_next(s) : lease_wait(s)) != NULL);
    run_for(50); /* all five leased, in the snapshot */
    close_queue();

    open_queue();
    s = queue_find_sub(q, "b", "f");
    CHECK(s != NULL);
    if (!s) return;
    queue_lease *one = lease_wait(s); /* one taken again, four still waiting */
    CHECK(one && one->msg->seq == 1);
    run_for(50); /* a snapshot with it leased */
    close_queue();

    open_queue();
    s = queue_find_sub(q, "b", "f");
    CHECK(s != NULL);
    if (!s) return;
    int seen = 0, got[6] = {0};
    queue_lease *l;
    while (seen < 6 && (l = seen ? queue_lease_next(s) : lease_wait(s)) != NULL) {
        CHECK(l->msg->seq >= 1 && l->msg->seq <= 5);
        if (l->msg->seq >= 1 && l->msg->seq <= 5) got[l->msg->seq]++;
        CHECK_INT(l->attempt, 1);
        queue_ack(l);
        seen++;
    }
    CHECK_INT(seen, 5);
    for (int i = 1; i <= 5; i++) CHECK_INT(got[i], 1);
    close_queue();
}

/* A purge deletes what is stored but the leased messages; the subscription
 * goes on from the next publish. */
static void purge(void)
{
    fresh();
    queue_sub *s = subscribe("orders", "f", NULL, 0);
    publish("orders", NULL, "a");
    publish("orders", NULL, "b");
    publish("orders", NULL, "c");
    queue_lease *l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    result r = {0};
    CHECK_INT(queue_topic_purge(q, "orders", on_count, &r), 0);
    CHECK_INT(run_until(&r.done), 0);
    CHECK_INT(r.status, 0);
    CHECK_INT(r.value, 2);
    CHECK(queue_lease_next(s) == NULL);
    CHECK_INT(topic_stats("orders").stored, 1); /* the leased one stays */
    queue_ack(l);
    publish("orders", NULL, "d");
    l = lease_wait(s);
    CHECK(l != NULL);
    if (!l) return;
    CHECK(msg_is(l->msg, "d"));
    queue_ack(l);
    CHECK_INT(stored_becomes("orders", 0), 0);
    CHECK_INT(queue_topic_purge(q, "nosuch", on_count, &r), ERR_NOTFOUND);
    close_queue();
}

/* A topic nobody reads keeps its newest messages within its retention. */
static void retention_trim(void)
{
    fresh();
    for (int i = 1; i <= 5; i++) {
        char d[8];
        snprintf(d, sizeof d, "m%d", i);
        publish("log", NULL, d);
    }
    CHECK_INT(topic_stats("log").stored, 5);
    queue_retention ret = {.max_messages = 2};
    result r = {0};
    CHECK_INT(queue_topic_retention(q, "log", &ret, on_done, &r), 0);
    CHECK_INT(run_until(&r.done), 0);
    CHECK_INT(r.status, 0);
    CHECK_INT(stored_becomes("log", 2), 0);
    readout out = read_topic("log");
    CHECK_INT(out.n, 2);
    CHECK_INT(out.seq[0], 4);
    CHECK_STR(out.data[1], "m5");
    CHECK_INT(topic_stats("log").retention.max_messages, 2);
    close_queue();
    /* The limit is kept across a restart. */
    open_queue();
    CHECK_INT(topic_stats("log").retention.max_messages, 2);
    CHECK_INT(topic_stats("log").published, 5);
    close_queue();
}

/* Publishes data with deduplication id id, kept for ms; its seq (also as
 * queue_input.seq says). */
static uint64_t publish_dedup(const char *topic, const char *id, uint32_t ms, const char *data)
{
    buf body;
    buf_init(&body, 256);
    buf_append(&body, data, strlen(data) + 1);
    size_t off = body.len;
    buf_append(&body, id, strlen(id) + 1);
    uint64_t seq = 0;
    queue_input in = {.data = body.data,
                      .len = (uint32_t)strlen(data),
                      .dedup = body.data + off,
                      .dedup_len = (uint32_t)strlen(id),
                      .dedup_ms = ms,
                      .seq = &seq};
    result r = {0};
    queue_publish(q, topic, &body, &in, 1, on_published, &r);
    CHECK_INT(run_until(&r.done), 0);
    CHECK_INT(r.status, 0);
    CHECK_INT(seq, r.value);
    return seq;
}

typedef struct dedups {
    int n;
    char topic[4][16], id[4][16];
    uint64_t seq[4];
} dedups;

static void on_dedup(void *data, const char *topic, const char *id, uint64_t seq, int64_t until)
{
    dedups *d = data;
    CHECK(until > clock_now_ms());
    if (d->n == 4) return;
    snprintf(d->topic[d->n], sizeof d->topic[0], "%s", topic);
    snprintf(d->id[d->n], sizeof d->id[0], "%s", id);
    d->seq[d->n++] = seq;
}

/* Deduplication ids are committed with their messages and read back after a
 * restart while their time lasts, the soonest to end first; ended ones and
 * a deleted topic's go. */
static void dedup_ids(void)
{
    fresh();
    CHECK(queue_flags(q) & QUEUE_DEDUP);
    publish("plain", NULL, "no id");
    uint64_t a = publish_dedup("q.fifo", "id-a", 60000, "a");
    uint64_t b = publish_dedup("q.fifo", "id-b", 30000, "b");
    publish_dedup("q.fifo", "brief", 200, "c");
    publish_dedup("gone", "id-g", 60000, "g");
    close_queue();
    open_queue();
    run_for(300); /* "brief" ends */
    dedups d = {0};
    CHECK_INT(queue_dedup_each(q, on_dedup, &d), 0);
    CHECK_INT(d.n, 3);
    CHECK_STR(d.id[0], "id-b");
    CHECK_INT(d.seq[0], b);
    CHECK_STR(d.id[1], "id-a");
    CHECK_STR(d.topic[1], "q.fifo");
    CHECK_INT(d.seq[1], a);
    CHECK_STR(d.topic[2], "gone");
    /* A later publish with an id prunes the ended ones; a deletion takes a
     * topic's. */
    publish_dedup("q.fifo", "id-d", 60000, "d");
    result r = {0};
    CHECK_INT(queue_topic_delete(q, "gone", on_count, &r), 0);
    CHECK_INT(run_until(&r.done), 0);
    CHECK_INT(r.status, 0);
    memset(&d, 0, sizeof d);
    CHECK_INT(queue_dedup_each(q, on_dedup, &d), 0);
    CHECK_INT(d.n, 3);
    CHECK_STR(d.id[2], "id-d");
    sqlite3 *db = store_db(st);
    sqlite3_stmt *stmt;
    CHECK_INT(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM dedup_ids", -1, &stmt, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_step(stmt), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(stmt, 0), 3); /* "brief" pruned, "id-g" deleted */
    sqlite3_finalize(stmt);
    close_queue();
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/spate-test-queue-XXXXXX");
    if (!mkdtemp(root)) return 1;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &tick);
    RUN(publish_lease_ack);
    RUN(nack_with_delay);
    RUN(release_keeps_attempt);
    RUN(dead_letter);
    RUN(ordered_keys);
    RUN(restore_after_reopen);
    RUN(purge);
    RUN(retention_trim);
    RUN(attributes);
    RUN(delayed_publish);
    RUN(retention_under_subscriptions);
    RUN(restore_once_after_retry);
    RUN(restored_kept_until_leased);
    RUN(ordered_replay_in_order);
    RUN(ordered_retry_replay_in_order);
    RUN(dedup_ids);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", root);
    return TEST_RESULT();
}
