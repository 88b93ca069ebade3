#include "store/sqlqueue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/strmap.h"
#include "store/sql.h"
#include "store/writer.h"

/* --- In memory --------------------------------------------------------------------- */

typedef struct q_block q_block;
typedef struct q_topic q_topic;

/* A message as this queue holds it: what the consumer reads first. */
typedef struct sq_msg {
    q_msg m;
    uint32_t refs; /* the ready ring, leases and reads that hold it */
    q_block *block;
} sq_msg;

static sq_msg *sq_msg_of(const q_msg *m)
{
    return (sq_msg *)m;
}

/* A lease as this queue keeps it: what the consumer reads first. */
typedef struct sq_lease {
    q_lease base;
    list_node link;     /* in the subscription's leased list */
    int64_t visible_ms; /* retries: when it may run again */
    char *error;        /* retries: the last error */
    uint32_t heap_index;
    unsigned in_retry_table : 1;
} sq_lease;

static sq_lease *sq_lease_of(q_lease *l)
{
    return (sq_lease *)l;
}

/* One allocation holding the bytes of several messages (a published batch,
 * a fetched chunk) and their records; freed when the last message goes. */
struct q_block {
    uint32_t refs; /* messages still referenced */
    char *mem;     /* owned: the bytes the messages point into */
    size_t n;
    sq_msg msgs[];
};

static const queue_ops sq_ops;

struct q_topic {
    list_node link;
    queue *q;
    char *name;
    int64_t id;
    int persisted;      /* its row is committed (or in the batch being committed) */
    uint64_t next_seq;  /* next number to give */
    uint64_t committed; /* every seq below is committed or never will be */
    uint64_t published;
    uint64_t stored;
    uint64_t trimmed; /* rows below are deleted (or asked to be) */
    uint64_t bytes;   /* payload and key bytes of the stored messages */
    int64_t oldest_stored_ms;
    list_node subs;
    uint32_t nsubs;
    /* What removed subscriptions had settled (q_topic_stats.acked). */
    uint64_t retired_acked, retired_dead;
    q_retention ret;
    int retaining; /* a retention pass is with the writer */
    /* Deleted: hidden, and its memory kept (ops in flight point to it) until
     * a publish or a subscription brings the name back. */
    int deleted;
};

struct q_sub {
    const queue_ops *ops; /* first, as queue.h wants */
    list_node link;       /* in topic->subs */
    queue *q;
    q_topic *topic;
    int64_t id;
    int persisted;
    q_sub_config cfg;
    void *user;
    uint32_t refs; /* 1 while subscribed, + leases out */
    int closed;

    /* ready: a ring of committed messages, in seq order */
    q_msg **ready;
    size_t rhead, rlen, rcap;
    uint64_t ready_bytes;
    uint64_t fetched; /* every seq below is in memory, settled, or absent */
    int lagging;      /* messages from fetched on are only in the store */
    int fetching;
    int64_t lag_oldest_ms;

    list_node leased;
    uint32_t nleased;
    sq_lease **heap; /* retries, earliest visible first */
    uint32_t nheap, heapcap;
    uint64_t retry_bytes;
    uv_timer_t timer;
    int64_t timer_at;

    strmap busy_keys;  /* ordered: keys with a message leased or retrying */
    uint64_t *restore; /* after a restart: reloaded seqs the range fetches skip (sorted) */
    size_t nrestore;
    int dirty;
    list_node dirty_link;
    uint64_t acked, dead_lettered, delivered;
};

struct queue {
    const queue_ops *ops; /* first, as queue.h wants */
    uv_loop_t *loop;
    store *st;
    writer *w;
    queue_events ev;
    list_node topics;
    strmap by_name;
    int64_t next_topic_id, next_sub_id;
    list_node dirty;
    uv_timer_t retention; /* every SPATE_RETENTION_TICK_MS: topics over their limits */
    int closing;
    int closed_parts; /* the writer stopped, the timer closed: both free q */
    void (*close_cb)(void *);
    void *close_data;
    /* Statements of the writer thread's connection (used only there). */
    sqlite3 *wdb;
    sqlite3_stmt *ins_msg, *upd_pub, *upd_sub, *del_msgs, *upsert_retry, *del_retry;
};

/* Memory a subscription keeps in ready before it leaves the rest in the
 * store; it fetches again below the low mark. */
#define READY_MAX 65536
#define READY_BYTES (64u * MIB)
#define FETCH_ROWS 4096
#define FETCH_BYTES (16u * MIB)
/* Past this, an ordered subscription stops scanning ready for a free key. */
#define ORDERED_SCAN 4096
/* Past this much retrying, new messages wait in the store (back-pressure). */
#define RETRY_BYTES_MAX (64u * MIB)

static void sq_msg_unref(q_msg *pm)
{
    sq_msg *m = sq_msg_of(pm);
    if (--m->refs > 0) return;
    q_block *b = m->block;
    if (--b->refs == 0) {
        free(b->mem);
        free(b);
    }
}

static q_block *sq_block_new(size_t n, char *mem)
{
    q_block *b = calloc(1, sizeof *b + n * sizeof(sq_msg));
    if (!b) return NULL;
    b->mem = mem;
    b->n = n;
    b->refs = (uint32_t)n;
    for (size_t i = 0; i < n; i++) b->msgs[i].block = b;
    return b;
}

/* Drops the references nobody took (messages no subscription wanted); frees
 * the block if none was taken (or it held no message). */
static void sq_block_settle(q_block *b)
{
    uint32_t untaken = 0;
    for (size_t i = 0; i < b->n; i++) untaken += b->msgs[i].refs == 0;
    b->refs -= untaken;
    if (b->refs == 0) {
        free(b->mem);
        free(b);
    }
}

static void sq_mark_dirty(q_sub *s)
{
    /* A removed subscription has no state to save, and a lease that settles
     * after the removal may drop its last reference: on the dirty list it
     * would be snapshot after it was freed. */
    if (s->dirty || !s->persisted || s->closed) return;
    s->dirty = 1;
    list_push_back(&s->q->dirty, &s->dirty_link);
    writer_kick(s->q->w);
}

static void sq_notify(q_sub *s)
{
    if (!s->closed && s->q->ev.available) s->q->ev.available(s, s->q->ev.data);
}

/* --- Ready ring ---------------------------------------------------------------------- */

static int ready_grow(q_sub *s)
{
    size_t cap = s->rcap ? s->rcap * 2 : 256;
    q_msg **r = malloc(cap * sizeof *r);
    if (!r) return ERR_NOMEM;
    for (size_t i = 0; i < s->rlen; i++) r[i] = s->ready[(s->rhead + i) % s->rcap];
    free(s->ready);
    s->ready = r;
    s->rcap = cap;
    s->rhead = 0;
    return 0;
}

static q_msg *sq_ready_at(const q_sub *s, size_t i)
{
    return s->ready[(s->rhead + i) % s->rcap];
}

static int sq_ready_push(q_sub *s, q_msg *m)
{
    if (s->rlen == s->rcap && ready_grow(s)) return ERR_NOMEM;
    s->ready[(s->rhead + s->rlen) % s->rcap] = m;
    s->rlen++;
    s->ready_bytes += m->len;
    sq_msg_of(m)->refs++;
    return 0;
}

/* Inserts in seq order (a released message goes back near the front). */
static int sq_ready_insert(q_sub *s, q_msg *m)
{
    if (s->rlen == s->rcap && ready_grow(s)) return ERR_NOMEM;
    size_t pos = 0;
    while (pos < s->rlen && sq_ready_at(s, pos)->seq < m->seq) pos++;
    s->rhead = (s->rhead + s->rcap - 1) % s->rcap;
    for (size_t i = 0; i < pos; i++)
        s->ready[(s->rhead + i) % s->rcap] = s->ready[(s->rhead + i + 1) % s->rcap];
    s->ready[(s->rhead + pos) % s->rcap] = m;
    s->rlen++;
    s->ready_bytes += m->len; /* the caller's reference moves to ready */
    return 0;
}

static q_msg *sq_ready_take(q_sub *s, size_t pos)
{
    q_msg *m = sq_ready_at(s, pos);
    for (size_t i = pos; i > 0; i--)
        s->ready[(s->rhead + i) % s->rcap] = s->ready[(s->rhead + i - 1) % s->rcap];
    s->rhead = (s->rhead + 1) % s->rcap;
    s->rlen--;
    s->ready_bytes -= m->len;
    return m;
}

static int sq_ready_full(const q_sub *s)
{
    return s->rlen >= READY_MAX || s->ready_bytes >= READY_BYTES;
}

/* --- Retry heap -------------------------------------------------------------------- */

static void heap_swap(q_sub *s, uint32_t a, uint32_t b)
{
    sq_lease *t = s->heap[a];
    s->heap[a] = s->heap[b];
    s->heap[b] = t;
    s->heap[a]->heap_index = a;
    s->heap[b]->heap_index = b;
}

static void heap_up(q_sub *s, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (s->heap[p]->visible_ms <= s->heap[i]->visible_ms) break;
        heap_swap(s, p, i);
        i = p;
    }
}

static void heap_down(q_sub *s, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->nheap && s->heap[l]->visible_ms < s->heap[m]->visible_ms) m = l;
        if (r < s->nheap && s->heap[r]->visible_ms < s->heap[m]->visible_ms) m = r;
        if (m == i) return;
        heap_swap(s, i, m);
        i = m;
    }
}

static int sq_heap_push(q_sub *s, sq_lease *l)
{
    if (s->nheap == s->heapcap) {
        uint32_t cap = s->heapcap ? s->heapcap * 2 : 64;
        sq_lease **h = realloc(s->heap, cap * sizeof *h);
        if (!h) return ERR_NOMEM;
        s->heap = h;
        s->heapcap = cap;
    }
    l->heap_index = s->nheap;
    s->heap[s->nheap++] = l;
    heap_up(s, l->heap_index);
    s->retry_bytes += l->base.msg->len;
    return 0;
}

static sq_lease *sq_heap_pop(q_sub *s)
{
    sq_lease *top = s->heap[0];
    s->heap[0] = s->heap[--s->nheap];
    if (s->nheap) {
        s->heap[0]->heap_index = 0;
        heap_down(s, 0);
    }
    s->retry_bytes -= top->base.msg->len;
    return top;
}

static void on_retry_timer(uv_timer_t *t);

/* Wakes the scheduler when the earliest retry comes due. A retry already due
 * arms nothing: the scheduler was told, and leases it when it has room
 * (re-arming at once would spin the loop while the function is full). */
static void sq_arm_retry(q_sub *s)
{
    if (s->nheap == 0 || s->closed) return;
    int64_t at = s->heap[0]->visible_ms, now = clock_now_ms();
    if (at <= now) return;
    if (uv_is_active((uv_handle_t *)&s->timer) && s->timer_at <= at) return;
    uv_timer_start(&s->timer, on_retry_timer, (uint64_t)(at - now), 0);
    s->timer_at = at;
}

static void on_retry_timer(uv_timer_t *t)
{
    q_sub *s = t->data;
    sq_notify(s);
    /* Due ones it could not take stay at the top; look past them. */
    int64_t now = clock_now_ms();
    int64_t next = 0;
    for (uint32_t i = 0; i < s->nheap; i++)
        if (s->heap[i]->visible_ms > now && (!next || s->heap[i]->visible_ms < next))
            next = s->heap[i]->visible_ms;
    if (next && !s->closed) {
        uv_timer_start(&s->timer, on_retry_timer, (uint64_t)(next - now), 0);
        s->timer_at = next;
    }
}

/* --- Keys of ordered subscriptions ------------------------------------------------- */

static int sq_key_busy(const q_sub *s, const q_msg *m)
{
    return s->cfg.ordered && m->key && strmap_get(&s->busy_keys, m->key, m->key_len);
}

static void sq_key_hold(q_sub *s, q_msg *m)
{
    if (s->cfg.ordered && m->key) strmap_put(&s->busy_keys, m->key, m);
}

static void sq_key_free(q_sub *s, q_msg *m)
{
    if (s->cfg.ordered && m->key && strmap_get(&s->busy_keys, m->key, m->key_len) == m)
        strmap_remove(&s->busy_keys, m->key);
}

/* --- Writer operations ---------------------------------------------------------------- */

typedef struct publish_op {
    wop op;
    queue *q;
    q_topic *topic;
    q_block *block;
    uint64_t first;
    int create_topic;
    queue_publish_cb done;
    void *data;
} publish_op;

static int sq_insert_topic(sqlite3 *db, const q_topic *t)
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

static int insert_messages(queue *q, sqlite3 *db, int64_t topic_id, q_block *b)
{
    int rc = sql_prepare_cached(
        db, &q->ins_msg,
        "INSERT INTO messages (topic_id, seq, published_ms, key, payload, source,"
        " attempts, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (rc != SQLITE_OK) return rc;
    for (size_t i = 0; i < b->n && rc == SQLITE_OK; i++) {
        const q_msg *m = &b->msgs[i].m;
        sqlite3_bind_int64(q->ins_msg, 1, topic_id);
        sqlite3_bind_int64(q->ins_msg, 2, (sqlite3_int64)m->seq);
        sqlite3_bind_int64(q->ins_msg, 3, m->published_ms);
        if (m->key)
            sqlite3_bind_blob(q->ins_msg, 4, m->key, (int)m->key_len, SQLITE_STATIC);
        else
            sqlite3_bind_null(q->ins_msg, 4);
        sqlite3_bind_blob(q->ins_msg, 5, m->len ? m->data : "", (int)m->len, SQLITE_STATIC);
        if (m->source) {
            sqlite3_bind_text(q->ins_msg, 6, m->source, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q->ins_msg, 7, m->attempts);
            sqlite3_bind_text(q->ins_msg, 8, m->error ? m->error : "", -1, SQLITE_STATIC);
        } else {
            sqlite3_bind_null(q->ins_msg, 6);
            sqlite3_bind_null(q->ins_msg, 7);
            sqlite3_bind_null(q->ins_msg, 8);
        }
        rc = sql_step_reset(q->ins_msg);
    }
    if (rc != SQLITE_OK) return rc;
    /* The next number is kept too: once every message is consumed and deleted,
     * it alone says where numbering goes on after a restart. */
    rc = sql_prepare_cached(
        db, &q->upd_pub,
        "UPDATE topics SET published = published + ?, next_seq = MAX(next_seq, ?)"
        " WHERE id = ?");
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(q->upd_pub, 1, (sqlite3_int64)b->n);
    sqlite3_bind_int64(q->upd_pub, 2, (sqlite3_int64)(b->msgs[b->n - 1].m.seq + 1));
    sqlite3_bind_int64(q->upd_pub, 3, topic_id);
    return sql_step_reset(q->upd_pub);
}

static int sq_apply_publish(sqlite3 *db, wop *op)
{
    publish_op *p = (publish_op *)op;
    int rc = SQLITE_OK;
    if (p->create_topic) rc = sq_insert_topic(db, p->topic);
    if (rc == SQLITE_OK) rc = insert_messages(p->q, db, p->topic->id, p->block);
    return rc;
}

/* Hands committed messages to the subscriptions that are caught up. */
static void fan_out(q_topic *t, q_block *b, uint64_t first, uint64_t last)
{
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next) {
        q_sub *s = list_entry(n, q_sub, link);
        if (s->fetched != first) continue; /* behind (lagging) or already has them */
        if (s->lagging || sq_ready_full(s) || s->retry_bytes > RETRY_BYTES_MAX) {
            if (!s->lagging) s->lag_oldest_ms = b->msgs[0].m.published_ms;
            s->lagging = 1;
            continue;
        }
        for (size_t i = 0; i < b->n; i++) sq_ready_push(s, &b->msgs[i].m);
        s->fetched = last + 1;
        sq_notify(s);
    }
}

static void sq_done_publish(wop *op, int status)
{
    publish_op *p = (publish_op *)op;
    q_topic *t = p->topic;
    uint64_t last = p->first + p->block->n - 1;
    if (status == 0) {
        t->published += p->block->n;
        if (t->stored == 0) t->oldest_stored_ms = p->block->msgs[0].m.published_ms;
        t->stored += p->block->n;
        for (size_t i = 0; i < p->block->n; i++)
            t->bytes += p->block->msgs[i].m.len + p->block->msgs[i].m.key_len;
    } else if (p->create_topic) {
        t->persisted = 0; /* insert it with the next publish */
    }
    if (t->committed <= last) t->committed = last + 1;
    if (status == 0) {
        fan_out(t, p->block, p->first, last);
    } else {
        /* Those numbers will never exist: step over them. */
        for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next) {
            q_sub *s = list_entry(n, q_sub, link);
            if (s->fetched == p->first) s->fetched = last + 1;
        }
    }
    sq_block_settle(p->block);
    if (p->done) p->done(p->data, status, p->first);
    free(p);
}

/* --- Topics ---------------------------------------------------------------------- */

static q_topic *sq_topic_get(queue *q, const char *name, int create)
{
    q_topic *t = strmap_get(&q->by_name, name, strlen(name));
    if (t && t->deleted) {
        if (!create) return NULL;
        /* Back: a new topic under the old name. Its numbering goes on (rows
         * of the old one may still be on their way out); the counters start
         * again once the deletion is done (done_delete). */
        t->deleted = 0;
        t->persisted = 0;
        return t;
    }
    if (t || !create) return t;
    t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        return NULL;
    }
    t->q = q;
    t->id = q->next_topic_id++;
    t->next_seq = t->committed = t->trimmed = 1;
    list_init(&t->subs);
    if (strmap_put(&q->by_name, t->name, t)) {
        free(t->name);
        free(t);
        return NULL;
    }
    list_push_back(&q->topics, &t->link);
    return t;
}

/* Builds and submits the insertion of block's messages into topic t. */
static void sq_submit_messages(queue *q, q_topic *t, q_block *b, queue_publish_cb done, void *data)
{
    publish_op *p = calloc(1, sizeof *p);
    if (!p) {
        sq_block_settle(b);
        if (done) done(data, ERR_NOMEM, 0);
        return;
    }
    int64_t now = clock_now_ms();
    p->first = t->next_seq;
    for (size_t i = 0; i < b->n; i++) {
        b->msgs[i].m.seq = t->next_seq++;
        if (!b->msgs[i].m.published_ms) b->msgs[i].m.published_ms = now;
    }
    p->q = q;
    p->topic = t;
    p->block = b;
    p->create_topic = !t->persisted;
    t->persisted = 1;
    p->done = done;
    p->data = data;
    p->op.apply = sq_apply_publish;
    p->op.done = sq_done_publish;
    writer_submit(q->w, &p->op);
}

static void sq_publish(queue *q, const char *topic, buf *body, const q_input *in, size_t n,
                       queue_publish_cb done, void *data)
{
    q_topic *t = q->closing ? NULL : sq_topic_get(q, topic, 1);
    q_block *b = t && n ? sq_block_new(n, NULL) : NULL;
    if (!b) {
        buf_free(body);
        done(data, q->closing ? ERR_CLOSED : (n ? ERR_NOMEM : ERR_INVAL), 0);
        return;
    }
    b->mem = buf_detach(body, NULL);
    for (size_t i = 0; i < n; i++) {
        q_msg *m = &b->msgs[i].m;
        m->key = in[i].key;
        m->key_len = in[i].key_len;
        m->data = in[i].data;
        m->len = in[i].len;
    }
    sq_submit_messages(q, t, b, done, data);
}

/* --- Subscription state: saved in every commit after it changes ------------------------ */

typedef struct state_op {
    wop op;
    queue *q;
    int64_t sub_id;
    uint64_t cursor;
    uint64_t acked, dead_lettered;
    size_t nleased;
    uint8_t *leased; /* (u64 seq, u32 attempt) pairs, little endian */
} state_op;

typedef struct trim_op {
    wop op;
    queue *q;
    q_topic *topic;
    int64_t topic_id;
    uint64_t below;
    uint64_t deleted, bytes;
    int64_t oldest_ms; /* of what is left */
} trim_op;

static uint64_t sub_cursor(const q_sub *s)
{
    return s->rlen ? sq_ready_at(s, 0)->seq : s->fetched;
}

/* The lowest seq this subscription has not settled. */
static uint64_t sub_low(const q_sub *s)
{
    uint64_t low = sub_cursor(s);
    for (list_node *n = list_first(&s->leased); n != &s->leased; n = n->next) {
        sq_lease *l = list_entry(n, sq_lease, link);
        if (l->base.msg->seq < low) low = l->base.msg->seq;
    }
    for (uint32_t i = 0; i < s->nheap; i++)
        if (s->heap[i]->base.msg->seq < low) low = s->heap[i]->base.msg->seq;
    return low;
}

static int apply_state(sqlite3 *db, wop *op)
{
    state_op *s = (state_op *)op;
    queue *q = s->q;
    int rc = sql_prepare_cached(db, &q->upd_sub,
                                "UPDATE subscriptions SET cursor = ?, leased = ?, acked = ?,"
                                " dead_lettered = ? WHERE id = ?");
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(q->upd_sub, 1, (sqlite3_int64)s->cursor);
    sqlite3_bind_blob(q->upd_sub, 2, s->leased ? (const void *)s->leased : "",
                      (int)(s->nleased * 12), SQLITE_STATIC);
    sqlite3_bind_int64(q->upd_sub, 3, (sqlite3_int64)s->acked);
    sqlite3_bind_int64(q->upd_sub, 4, (sqlite3_int64)s->dead_lettered);
    sqlite3_bind_int64(q->upd_sub, 5, s->sub_id);
    return sql_step_reset(q->upd_sub);
}

static void done_state(wop *op, int status)
{
    state_op *s = (state_op *)op;
    if (status != 0) {
        /* Not saved: save it again with the next commit. */
        queue *q = s->q;
        for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
            q_topic *t = list_entry(n, q_topic, link);
            for (list_node *m = list_first(&t->subs); m != &t->subs; m = m->next) {
                q_sub *sub = list_entry(m, q_sub, link);
                if (sub->id == s->sub_id) sq_mark_dirty(sub);
            }
        }
    }
    free(s->leased);
    free(s);
}

/* Writer thread: steps a DELETE ... RETURNING the bytes of each row,
 * adding up rows and bytes. */
static int sq_delete_rows(sqlite3_stmt *st, uint64_t *rows, uint64_t *bytes)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        (*rows)++;
        *bytes += (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* What sq_delete_rows wants back of each row. */
#define RETURNING_BYTES " RETURNING length(payload) + ifnull(length(key), 0)"

/* Writer thread: the publish time of the topic's oldest stored message, 0
 * when it stores none. */
static int64_t sq_first_published(sqlite3 *db, int64_t topic_id)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT published_ms FROM messages WHERE topic_id = ? ORDER BY seq"
                           " LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, topic_id);
    int64_t ms = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return ms;
}

/* Loop thread: rows and bytes that left topic t. */
static void sq_forget_rows(q_topic *t, uint64_t rows, uint64_t bytes, int64_t oldest_ms)
{
    t->stored = t->stored > rows ? t->stored - rows : 0;
    t->bytes = t->bytes > bytes ? t->bytes - bytes : 0;
    t->oldest_stored_ms = oldest_ms;
}

static int apply_trim(sqlite3 *db, wop *op)
{
    trim_op *t = (trim_op *)op;
    queue *q = t->q;
    int rc = sql_prepare_cached(
        db, &q->del_msgs, "DELETE FROM messages WHERE topic_id = ? AND seq < ?" RETURNING_BYTES);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(q->del_msgs, 1, t->topic_id);
    sqlite3_bind_int64(q->del_msgs, 2, (sqlite3_int64)t->below);
    rc = sq_delete_rows(q->del_msgs, &t->deleted, &t->bytes);
    /* The oldest left: what the topic's age says once no trigger reads it. */
    if (rc == SQLITE_OK) t->oldest_ms = sq_first_published(db, t->topic_id);
    return rc;
}

static void done_trim(wop *op, int status)
{
    trim_op *t = (trim_op *)op;
    if (status == 0 && t->topic) {
        sq_forget_rows(t->topic, t->deleted, t->bytes, t->oldest_ms);
    } else if (t->topic && t->topic->trimmed == t->below) {
        t->topic->trimmed = 1; /* try again later */
    }
    free(t);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void sq_maybe_trim(queue *q, q_topic *t)
{
    if (t->nsubs == 0) return; /* messages stay until a subscription takes them */
    uint64_t low = UINT64_MAX;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next) {
        uint64_t l = sub_low(list_entry(n, q_sub, link));
        if (l < low) low = l;
    }
    if (low <= t->trimmed || low == UINT64_MAX) return;
    trim_op *op = calloc(1, sizeof *op);
    if (!op) return;
    op->q = q;
    op->topic = t;
    op->topic_id = t->id;
    op->below = low;
    t->trimmed = low;
    op->op.apply = apply_trim;
    op->op.done = done_trim;
    writer_submit(q->w, &op->op);
}

/* Writer hook, just before a handoff: snapshot every changed subscription. */
static void sq_presubmit(void *data)
{
    queue *q = data;
    while (!list_empty(&q->dirty)) {
        q_sub *s = list_entry(list_first(&q->dirty), q_sub, dirty_link);
        list_remove(&s->dirty_link);
        s->dirty = 0;
        state_op *op = calloc(1, sizeof *op);
        if (!op) continue;
        op->q = q;
        op->sub_id = s->id;
        op->cursor = sub_cursor(s);
        op->acked = s->acked;
        op->dead_lettered = s->dead_lettered;
        op->nleased = s->nleased;
        op->leased = s->nleased ? malloc(s->nleased * 12) : NULL;
        uint8_t *p = op->leased;
        for (list_node *n = list_first(&s->leased); p && n != &s->leased; n = n->next) {
            sq_lease *l = list_entry(n, sq_lease, link);
            put_u64(p, l->base.msg->seq);
            put_u32(p + 8, l->base.attempt);
            p += 12;
        }
        if (s->nleased && !op->leased) op->nleased = 0;
        op->op.apply = apply_state;
        op->op.done = done_state;
        writer_submit(q->w, &op->op);
        sq_maybe_trim(q, s->topic);
    }
}

/* The counters of a topic's removed subscriptions: added to its row when a
 * subscription goes, and for each settling that comes after (a lease that
 * was out when its trigger was removed). */
typedef struct counter_op {
    wop op;
    int64_t topic_id;
    uint64_t acked, dead_lettered;
} counter_op;

static int apply_counter(sqlite3 *db, wop *op)
{
    counter_op *c = (counter_op *)op;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db,
                                "UPDATE topics SET acked = acked + ?, dead_lettered ="
                                " dead_lettered + ? WHERE id = ?",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)c->acked);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)c->dead_lettered);
    sqlite3_bind_int64(st, 3, c->topic_id);
    return sql_step_finalize(st);
}

static void done_counter(wop *op, int status)
{
    if (status) log_warn("cannot save the counters of a removed trigger: %s", err_str(status));
    free(op);
}

/* Counts settlings of t's removed subscriptions, in memory and in its row. */
static void sq_retire_counts(queue *q, q_topic *t, uint64_t acked, uint64_t dead)
{
    if (!acked && !dead) return;
    t->retired_acked += acked;
    t->retired_dead += dead;
    counter_op *c = calloc(1, sizeof *c);
    if (!c || !t->persisted) {
        free(c);
        return;
    }
    c->topic_id = t->id;
    c->acked = acked;
    c->dead_lettered = dead;
    c->op.apply = apply_counter;
    c->op.done = done_counter;
    writer_submit(q->w, &c->op);
}

/* --- Fetching from the store ------------------------------------------------------- */

typedef struct fetch_op {
    wop op;
    q_sub *sub;
    int64_t topic_id;
    uint64_t from;
    uint32_t limit;
    q_block *block;
    int complete; /* fewer rows than asked: nothing more to fetch now */
} fetch_op;

/* Reads rows of a SELECT (seq, published_ms, key, payload, source, attempts,
 * error) into one block. */
static int sq_read_rows(sqlite3_stmt *st, uint32_t limit, q_block **out, uint32_t *count)
{
    size_t cap = 64, n = 0, bytes = 0;
    typedef struct row {
        uint64_t seq;
        int64_t published_ms;
        char *key, *data, *source, *error;
        uint32_t key_len, len, attempts;
    } row;
    row *rows = malloc(cap * sizeof *rows);
    int rc = rows ? SQLITE_OK : SQLITE_NOMEM;
    while (rc == SQLITE_OK && n < limit && bytes < FETCH_BYTES) {
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
        bytes += r->len + r->key_len;
        n++;
    }
    /* Pack everything into one block: one free for the whole chunk. */
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += rows[i].len + 1 + (rows[i].key ? rows[i].key_len + 1 : 0) +
                 (rows[i].source ? strlen(rows[i].source) + 1 : 0) +
                 (rows[i].error ? strlen(rows[i].error) + 1 : 0);
    q_block *b = rc == SQLITE_OK ? sq_block_new(n, NULL) : NULL;
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
            q_msg *m = &b->msgs[i].m;
            m->seq = r->seq;
            m->published_ms = r->published_ms;
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
        }
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

static const char *const sq_select_rows =
    "SELECT seq, published_ms, key, payload, source, attempts, error FROM messages";

static int read_fetch(sqlite3 *db, wop *op)
{
    fetch_op *f = (fetch_op *)op;
    sqlite3_stmt *st;
    char sql[256];
    snprintf(sql, sizeof sql, "%s WHERE topic_id = ? AND seq >= ? ORDER BY seq LIMIT ?",
             sq_select_rows);
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, f->topic_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)f->from);
    sqlite3_bind_int64(st, 3, f->limit);
    uint32_t n = 0;
    rc = sq_read_rows(st, f->limit, &f->block, &n);
    sqlite3_finalize(st);
    f->complete = n < f->limit;
    return rc;
}

static void sq_sub_unref(q_sub *s);

static int restored(const q_sub *s, uint64_t seq)
{
    size_t lo = 0, hi = s->nrestore;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->restore[mid] == seq) return 1;
        if (s->restore[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static void done_fetch(wop *op, int status)
{
    fetch_op *f = (fetch_op *)op;
    q_sub *s = f->sub;
    s->fetching = 0;
    if (status == 0 && f->block && !s->closed) {
        q_block *b = f->block;
        uint64_t last = f->from - 1;
        for (size_t i = 0; i < b->n; i++) {
            q_msg *m = &b->msgs[i].m;
            last = m->seq;
            if (m->seq < s->fetched) continue; /* it came with a publish meanwhile */
            if (restored(s, m->seq)) continue; /* reloaded at start-up */
            sq_ready_push(s, m);
        }
        if (last + 1 > s->fetched) s->fetched = last + 1;
        if (f->complete) {
            /* Everything committed so far is in memory now. */
            if (s->fetched < s->topic->committed) s->fetched = s->topic->committed;
            s->lagging = 0;
            s->lag_oldest_ms = 0;
            free(s->restore);
            s->restore = NULL;
            s->nrestore = 0;
        } else if (b->n) {
            s->lag_oldest_ms = 0;
        }
        sq_mark_dirty(s);
        sq_notify(s);
    }
    if (f->block) sq_block_settle(f->block);
    sq_sub_unref(s);
    free(f);
}

/* Fetches the next chunk for a lagging subscription when ready runs low. */
static void sq_maybe_fetch(q_sub *s)
{
    if (!s->lagging || s->fetching || s->closed || s->rlen > READY_MAX / 4 ||
        s->retry_bytes > RETRY_BYTES_MAX)
        return;
    fetch_op *f = calloc(1, sizeof *f);
    if (!f) return;
    f->sub = s;
    f->topic_id = s->topic->id;
    f->from = s->fetched;
    f->limit = FETCH_ROWS;
    f->op.read = read_fetch;
    f->op.done = done_fetch;
    s->fetching = 1;
    s->refs++;
    writer_submit(s->q->w, &f->op);
}

/* --- Leasing ------------------------------------------------------------------------ */

static sq_lease *lease_new(q_sub *s, q_msg *m, uint32_t attempt)
{
    sq_lease *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->base.msg = m;
    l->base.attempt = attempt;
    l->base.sub = s;
    list_push_back(&s->leased, &l->link);
    s->nleased++;
    s->refs++;
    s->delivered++;
    return l;
}

static q_lease *sq_lease_next(q_sub *s)
{
    if (s->closed) return NULL;
    int64_t now = clock_now_ms();
    if (s->nheap && s->heap[0]->visible_ms <= now) {
        sq_lease *l = sq_heap_pop(s);
        l->base.attempt++;
        list_push_back(&s->leased, &l->link);
        s->nleased++;
        s->delivered++;
        sq_mark_dirty(s);
        sq_maybe_fetch(s);
        return &l->base;
    }
    sq_lease *l = NULL;
    if (s->cfg.ordered) {
        size_t scan = s->rlen < ORDERED_SCAN ? s->rlen : ORDERED_SCAN;
        for (size_t i = 0; i < scan; i++) {
            q_msg *m = sq_ready_at(s, i);
            if (sq_key_busy(s, m)) continue;
            sq_ready_take(s, i);
            sq_key_hold(s, m);
            l = lease_new(s, m, 1);
            break;
        }
    } else if (s->rlen) {
        l = lease_new(s, sq_ready_take(s, 0), 1);
    }
    if (l) sq_mark_dirty(s);
    sq_maybe_fetch(s);
    return l ? &l->base : NULL;
}

/* Takes l off the leased list; the message reference stays with l. */
static void unlease(sq_lease *l)
{
    q_sub *s = l->base.sub;
    list_remove(&l->link);
    s->nleased--;
    sq_mark_dirty(s);
}

typedef struct retry_op {
    wop op;
    queue *q;
    int64_t sub_id;
    uint64_t seq;
    uint32_t attempts;
    int64_t visible_ms;
    char *error; /* NULL: delete the row */
} retry_op;

static int apply_retry(sqlite3 *db, wop *op)
{
    retry_op *r = (retry_op *)op;
    queue *q = r->q;
    sqlite3_stmt *st;
    int rc;
    if (r->error) {
        rc = sql_prepare_cached(db, &q->upsert_retry,
                                "INSERT INTO retries (sub_id, seq, attempts, visible_ms, error)"
                                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(sub_id, seq) DO UPDATE SET"
                                " attempts = excluded.attempts, visible_ms = excluded.visible_ms,"
                                " error = excluded.error");
        st = q->upsert_retry;
    } else {
        rc = sql_prepare_cached(db, &q->del_retry,
                                "DELETE FROM retries WHERE sub_id = ? AND seq = ?");
        st = q->del_retry;
    }
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, r->sub_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)r->seq);
    if (r->error) {
        sqlite3_bind_int64(st, 3, r->attempts);
        sqlite3_bind_int64(st, 4, r->visible_ms);
        sqlite3_bind_text(st, 5, r->error, -1, SQLITE_STATIC);
    }
    return sql_step_reset(st);
}

static void done_retry(wop *op, int status)
{
    retry_op *r = (retry_op *)op;
    free(r->error);
    free(r);
}

static void sq_submit_retry(sq_lease *l, const char *error)
{
    q_sub *s = l->base.sub;
    retry_op *r = calloc(1, sizeof *r);
    if (!r) return;
    r->q = s->q;
    r->sub_id = s->id;
    r->seq = l->base.msg->seq;
    r->attempts = l->base.attempt;
    r->visible_ms = l->visible_ms;
    r->error = error ? strdup(error) : NULL;
    r->op.apply = apply_retry;
    r->op.done = done_retry;
    writer_submit(s->q->w, &r->op);
}

static void sq_lease_free(sq_lease *l)
{
    q_sub *s = l->base.sub;
    sq_msg_unref(l->base.msg);
    free(l->error);
    free(l);
    sq_sub_unref(s);
}

static void sq_ack(q_lease *ql)
{
    sq_lease *l = sq_lease_of(ql);
    q_sub *s = l->base.sub;
    unlease(l);
    sq_key_free(s, l->base.msg);
    if (s->closed)
        sq_retire_counts(s->q, s->topic, 1, 0);
    else
        s->acked++;
    if (l->in_retry_table && !s->closed) sq_submit_retry(l, NULL);
    sq_lease_free(l);
}

static void sq_nack(q_lease *ql, uint32_t delay_ms, const char *error)
{
    sq_lease *l = sq_lease_of(ql);
    q_sub *s = l->base.sub;
    unlease(l);
    if (s->closed) {
        sq_lease_free(l);
        return;
    }
    l->visible_ms = clock_now_ms() + delay_ms;
    free(l->error);
    l->error = strdup(error ? error : "");
    l->in_retry_table = 1;
    sq_submit_retry(l, l->error ? l->error : "");
    if (sq_heap_push(s, l) != 0) {
        sq_lease_free(l);
        return;
    }
    sq_arm_retry(s);
}

static void sq_release(q_lease *ql)
{
    sq_lease *l = sq_lease_of(ql);
    q_sub *s = l->base.sub;
    unlease(l);
    if (s->closed) {
        sq_lease_free(l);
        return;
    }
    if (l->base.attempt > 1 || l->in_retry_table) {
        /* A retry: back in the heap, due now, its count unchanged. */
        l->base.attempt--;
        l->visible_ms = clock_now_ms();
        if (sq_heap_push(s, l) == 0) {
            sq_notify(s);
            return;
        }
    } else {
        sq_key_free(s, l->base.msg);
        sq_msg_of(l->base.msg)->refs++;
        if (sq_ready_insert(s, l->base.msg) == 0) {
            sq_lease_free(l);
            sq_notify(s);
            return;
        }
        sq_msg_of(l->base.msg)->refs--;
    }
    sq_lease_free(l);
}

typedef struct dead_op {
    publish_op pub; /* the insertion into the dead-letter topic */
    sq_lease *lease;
} dead_op;

static int apply_dead(sqlite3 *db, wop *op)
{
    dead_op *d = (dead_op *)op;
    int rc = sq_apply_publish(db, op);
    if (rc == SQLITE_OK && d->lease->in_retry_table) {
        retry_op r = {
            .q = d->pub.q, .sub_id = d->lease->base.sub->id, .seq = d->lease->base.msg->seq};
        rc = apply_retry(db, &r.op);
    }
    return rc;
}

static void done_dead(wop *op, int status)
{
    dead_op *d = (dead_op *)op;
    sq_lease *l = d->lease;
    q_sub *s = l->base.sub;
    if (status == 0) {
        sq_key_free(s, l->base.msg);
        if (s->closed)
            sq_retire_counts(s->q, s->topic, 0, 1);
        else
            s->dead_lettered++;
        sq_mark_dirty(s);
        sq_lease_free(l);
    } else if (!s->closed) {
        /* Not moved: keep it, and try again soon. */
        l->visible_ms = clock_now_ms() + 1000;
        l->base.attempt--;
        if (sq_heap_push(s, l) == 0)
            sq_arm_retry(s);
        else
            sq_lease_free(l);
    } else {
        sq_lease_free(l);
    }
    d->pub.op.done = NULL;
    sq_done_publish(op, status); /* frees d (its first member) */
}

static void sq_dead_letter(q_lease *ql, const char *error)
{
    sq_lease *l = sq_lease_of(ql);
    q_sub *s = l->base.sub;
    queue *q = s->q;
    unlease(l);
    q_topic *t = sq_topic_get(q, s->cfg.dlq, 1);
    const q_msg *m = l->base.msg;
    size_t srclen = strlen(s->topic->name) + 1;
    size_t errlen = strlen(error ? error : "") + 1;
    char *mem = malloc(m->len + 1 + (m->key ? m->key_len + 1 : 0) + srclen + errlen);
    q_block *b = mem && t ? sq_block_new(1, mem) : NULL;
    dead_op *d = b ? calloc(1, sizeof *d) : NULL;
    if (!d) {
        free(mem);
        free(b);
        log_error("out of memory moving a message to '%s'", s->cfg.dlq);
        l->visible_ms = clock_now_ms() + 1000;
        if (sq_heap_push(s, l) == 0) sq_arm_retry(s);
        return;
    }
    q_msg *dm = &b->msgs[0].m;
    char *p = mem;
    memcpy(p, m->data, m->len);
    dm->data = p;
    dm->len = m->len;
    p += m->len + 1;
    if (m->key) {
        memcpy(p, m->key, m->key_len + 1);
        dm->key = p;
        dm->key_len = m->key_len;
        p += m->key_len + 1;
    }
    memcpy(p, s->topic->name, srclen);
    dm->source = p;
    p += srclen;
    memcpy(p, error ? error : "", errlen);
    dm->error = p;
    dm->attempts = l->base.attempt;
    d->lease = l;
    publish_op *pub = &d->pub;
    pub->first = t->next_seq;
    dm->seq = t->next_seq++;
    dm->published_ms = clock_now_ms();
    pub->q = q;
    pub->topic = t;
    pub->block = b;
    pub->create_topic = !t->persisted;
    t->persisted = 1;
    pub->op.apply = apply_dead;
    pub->op.done = done_dead;
    writer_submit(q->w, &pub->op);
}

/* --- Subscriptions ---------------------------------------------------------------- */

typedef struct sub_op {
    wop op;
    queue *q;
    q_sub *sub;
    int64_t topic_id;
    q_topic *topic;
    int create_topic;
    int remove;
    q_sub_config cfg;
    queue_done_cb done;
    void *data;
} sub_op;

static void on_timer_closed(uv_handle_t *h)
{
    q_sub *s = h->data;
    free(s->ready);
    free(s->heap);
    free(s->restore);
    strmap_free(&s->busy_keys);
    free(s);
}

static void sq_sub_unref(q_sub *s)
{
    if (--s->refs > 0) return;
    while (s->rlen) sq_msg_unref(sq_ready_take(s, 0));
    while (s->nheap) {
        sq_lease *l = sq_heap_pop(s);
        sq_msg_unref(l->base.msg);
        free(l->error);
        free(l);
    }
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static q_sub *sq_sub_new(queue *q, q_topic *t, const q_sub_config *cfg)
{
    q_sub *s = calloc(1, sizeof *s);
    if (s) s->ops = &sq_ops;
    if (!s) return NULL;
    s->q = q;
    s->topic = t;
    s->cfg = *cfg;
    s->refs = 1;
    s->fetched = t->trimmed;
    s->lagging = 1;
    list_init(&s->leased);
    list_init(&s->dirty_link);
    strmap_init(&s->busy_keys);
    uv_timer_init(q->loop, &s->timer);
    s->timer.data = s;
    list_push_back(&t->subs, &s->link);
    t->nsubs++;
    return s;
}

static int apply_sub(sqlite3 *db, wop *op)
{
    sub_op *o = (sub_op *)op;
    int rc = SQLITE_OK;
    if (o->create_topic) rc = sq_insert_topic(db, o->topic);
    if (rc != SQLITE_OK) return rc;
    sqlite3_stmt *st;
    if (o->remove) {
        rc = sqlite3_prepare_v2(db, "DELETE FROM subscriptions WHERE id = ?", -1, &st, NULL);
        if (rc != SQLITE_OK) return rc;
        sqlite3_bind_int64(st, 1, o->sub->id);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return rc;
        rc = sqlite3_prepare_v2(db, "DELETE FROM retries WHERE sub_id = ?", -1, &st, NULL);
        if (rc != SQLITE_OK) return rc;
        sqlite3_bind_int64(st, 1, o->sub->id);
    } else {
        rc = sqlite3_prepare_v2(
            db,
            "INSERT INTO subscriptions (id, topic_id, function, max_attempts, dlq, ordered,"
            " deadline_ms, max_concurrency, created_ms, cursor, leased)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, x'') ON CONFLICT(id) DO UPDATE SET"
            " max_attempts = excluded.max_attempts, dlq = excluded.dlq,"
            " ordered = excluded.ordered, deadline_ms = excluded.deadline_ms,"
            " max_concurrency = excluded.max_concurrency",
            -1, &st, NULL);
        if (rc != SQLITE_OK) return rc;
        sqlite3_bind_int64(st, 1, o->sub->id);
        sqlite3_bind_int64(st, 2, o->topic_id);
        sqlite3_bind_text(st, 3, o->cfg.function, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, o->cfg.max_attempts);
        sqlite3_bind_text(st, 5, o->cfg.dlq, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, o->cfg.ordered);
        sqlite3_bind_int64(st, 7, o->cfg.deadline_ms);
        sqlite3_bind_int64(st, 8, o->cfg.max_concurrency);
        sqlite3_bind_int64(st, 9, clock_now_ms());
        sqlite3_bind_int64(st, 10, (sqlite3_int64)o->sub->fetched);
    }
    return sql_step_finalize(st);
}

static void done_sub(wop *op, int status)
{
    sub_op *o = (sub_op *)op;
    q_sub *s = o->sub;
    if (!o->remove) {
        if (status == 0) {
            s->persisted = 1;
            sq_maybe_fetch(s);
            sq_notify(s);
        } else if (o->create_topic) {
            o->topic->persisted = 0;
        }
    }
    if (o->done) o->done(o->data, status);
    sq_sub_unref(s);
    free(o);
}

static q_sub *find_sub(q_topic *t, const char *function)
{
    for (list_node *n = t ? list_first(&t->subs) : NULL; t && n != &t->subs; n = n->next) {
        q_sub *s = list_entry(n, q_sub, link);
        if (strcmp(s->cfg.function, function) == 0) return s;
    }
    return NULL;
}

static int sq_subscribe(queue *q, const char *topic, const q_sub_config *cfg, queue_done_cb done,
                        void *data)
{
    if (q->closing) return ERR_CLOSED;
    q_topic *t = sq_topic_get(q, topic, 1);
    if (!t) return ERR_NOMEM;
    q_sub *s = find_sub(t, cfg->function);
    int created = 0;
    if (!s) {
        if (!(s = sq_sub_new(q, t, cfg))) return ERR_NOMEM;
        s->id = q->next_sub_id++;
        created = 1;
    } else {
        int was_ordered = s->cfg.ordered;
        s->cfg = *cfg;
        if (was_ordered && !cfg->ordered) strmap_free(&s->busy_keys);
    }
    sub_op *o = calloc(1, sizeof *o);
    if (!o) {
        if (created) {
            list_remove(&s->link);
            t->nsubs--;
            sq_sub_unref(s);
        }
        return ERR_NOMEM;
    }
    o->q = q;
    o->sub = s;
    o->topic = t;
    o->topic_id = t->id;
    o->create_topic = !t->persisted;
    t->persisted = 1;
    o->cfg = *cfg;
    o->done = done;
    o->data = data;
    o->op.apply = apply_sub;
    o->op.done = done_sub;
    s->refs++;
    writer_submit(q->w, &o->op);
    return 0;
}

static int sq_unsubscribe(queue *q, const char *topic, const char *function, queue_done_cb done,
                          void *data)
{
    q_topic *t = sq_topic_get(q, topic, 0);
    q_sub *s = find_sub(t, function);
    if (!s) return ERR_NOTFOUND;
    sub_op *o = calloc(1, sizeof *o);
    if (!o) return ERR_NOMEM;
    s->closed = 1;
    list_remove(&s->link);
    t->nsubs--;
    if (s->dirty) {
        list_remove(&s->dirty_link);
        s->dirty = 0;
    }
    /* Its counters stay the topic's; what it alone held back may go now. */
    sq_retire_counts(q, t, s->acked, s->dead_lettered);
    sq_maybe_trim(q, t);
    uv_timer_stop(&s->timer);
    /* What waits is dropped; leases still out settle into nothing. */
    while (s->rlen) sq_msg_unref(sq_ready_take(s, 0));
    while (s->nheap) sq_lease_free(sq_heap_pop(s));
    o->q = q;
    o->sub = s;
    o->topic = t;
    o->remove = 1;
    o->done = done;
    o->data = data;
    o->op.apply = apply_sub;
    o->op.done = done_sub;
    writer_submit(q->w, &o->op);
    /* The queue's own reference goes now; done_sub holds the op's one (the
     * subscription's reference passes to the op). */
    return 0;
}

static q_sub *sq_find_sub(queue *q, const char *topic, const char *function)
{
    return find_sub(sq_topic_get(q, topic, 0), function);
}

static void sq_each_sub(queue *q, void (*cb)(q_sub *sub, void *data), void *data)
{
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        q_topic *t = list_entry(n, q_topic, link);
        for (list_node *m = list_first(&t->subs); m != &t->subs;) {
            q_sub *s = list_entry(m, q_sub, link);
            m = m->next;
            cb(s, data);
        }
    }
}

static const q_sub_config *sq_sub_config(const q_sub *s)
{
    return &s->cfg;
}

static const char *sq_sub_topic(const q_sub *s)
{
    return s->topic->name;
}

static void sq_sub_set_data(q_sub *s, void *data)
{
    s->user = data;
}

static void *sq_sub_data(const q_sub *s)
{
    return s->user;
}

/* --- Stats ---------------------------------------------------------------------------- */

static void sq_sub_stats(const q_sub *s, q_sub_stats *out)
{
    memset(out, 0, sizeof *out);
    uint64_t lag = s->topic->committed > s->fetched ? s->topic->committed - s->fetched : 0;
    out->depth = lag + s->rlen + s->nleased + s->nheap;
    out->leased = s->nleased;
    out->retrying = s->nheap;
    out->acked = s->acked;
    out->dead_lettered = s->dead_lettered;
    out->delivered = s->delivered;
    int64_t oldest = 0;
#define OLDER(ms)                                                                                  \
    if ((ms) && (!oldest || (ms) < oldest)) oldest = (ms)
    if (s->rlen) OLDER(sq_ready_at(s, 0)->published_ms);
    if (lag) OLDER(s->lag_oldest_ms);
    for (list_node *n = list_first(&s->leased); n != &s->leased; n = n->next)
        OLDER(list_entry(n, sq_lease, link)->base.msg->published_ms);
    for (uint32_t i = 0; i < s->nheap; i++) OLDER(s->heap[i]->base.msg->published_ms);
#undef OLDER
    out->oldest_ms = oldest;
}

static int sq_topic_stats(queue *q, const char *topic, q_topic_stats *out)
{
    q_topic *t = sq_topic_get(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    memset(out, 0, sizeof *out);
    out->published = t->published;
    out->stored = t->stored;
    out->bytes = t->bytes;
    out->subscriptions = t->nsubs;
    out->oldest_ms = t->stored ? t->oldest_stored_ms : 0;
    out->acked = t->retired_acked;
    out->dead_lettered = t->retired_dead;
    out->retention = t->ret;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next) {
        q_sub_stats ss;
        sq_sub_stats(list_entry(n, q_sub, link), &ss);
        out->acked += ss.acked;
        out->dead_lettered += ss.dead_lettered;
        if (ss.oldest_ms && (!out->oldest_ms || ss.oldest_ms > out->oldest_ms))
            out->oldest_ms = ss.oldest_ms;
    }
    return 0;
}

static void sq_each_topic(queue *q, void (*cb)(const char *topic, void *data), void *data)
{
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        q_topic *t = list_entry(n, q_topic, link);
        if (!t->deleted) cb(t->name, data);
    }
}

/* --- Reading and redriving ------------------------------------------------------------- */

typedef struct read_op {
    wop op;
    queue *q;
    int64_t topic_id;
    uint64_t after;
    uint32_t limit;
    q_block *block;
    queue_read_cb cb;
    void *data;
    /* redrive */
    int redrive;
    queue_redrive_cb rcb;
} read_op;

static int read_topic(sqlite3 *db, wop *op)
{
    read_op *r = (read_op *)op;
    sqlite3_stmt *st;
    char sql[320];
    /* A redrive reads dead letters only: a message without a source has
     * nowhere to go back to, and is not the redrive's to move or delete. */
    snprintf(sql, sizeof sql, "%s WHERE topic_id = ? AND seq > ?%s ORDER BY seq LIMIT ?",
             sq_select_rows, r->redrive ? " AND source IS NOT NULL AND source <> ''" : "");
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, r->topic_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)r->after);
    sqlite3_bind_int64(st, 3, r->limit);
    uint32_t n;
    rc = sq_read_rows(st, r->limit, &r->block, &n);
    sqlite3_finalize(st);
    return rc;
}

/* Deletes the dead letters a redrive republished, by seq, in the same
 * transaction as their publishes (submitted just before it in the same loop
 * turn, so in the same batch): both happen or neither. */
typedef struct redrive_op {
    wop op;
    q_topic *dlq;
    uint64_t *seqs; /* republished: these are deleted, nothing else */
    size_t nseqs;
    uint64_t deleted, bytes;
    int64_t oldest_ms;  /* of what is left */
    int publish_failed; /* set by on_redrive_published when a publish failed at once */
    queue_redrive_cb cb;
    void *data;
} redrive_op;

static int apply_redrive_delete(sqlite3 *db, wop *op)
{
    redrive_op *r = (redrive_op *)op;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db,
                                "DELETE FROM messages WHERE topic_id = ? AND seq = ?"
                                " AND source IS NOT NULL" RETURNING_BYTES,
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    for (size_t i = 0; i < r->nseqs && rc == SQLITE_OK; i++) {
        sqlite3_bind_int64(st, 1, r->dlq->id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)r->seqs[i]);
        rc = sq_delete_rows(st, &r->deleted, &r->bytes);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK) r->oldest_ms = sq_first_published(db, r->dlq->id);
    return rc;
}

static void done_redrive_delete(wop *op, int status)
{
    redrive_op *r = (redrive_op *)op;
    /* trimmed stays: the deletion left holes, not a clean prefix. */
    if (status == 0) sq_forget_rows(r->dlq, r->deleted, r->bytes, r->oldest_ms);
    r->cb(r->data, status, status ? 0 : r->nseqs);
    free(r->seqs);
    free(r);
}

/* A publish that fails at once (out of memory) says so here, before its seq
 * is added to those to delete; one that fails later failed with the whole
 * transaction, the deletion included. */
static void on_redrive_published(void *data, int status, uint64_t first)
{
    (void)first;
    if (status) ((redrive_op *)data)->publish_failed = 1;
}

/* Copies dead letter m as a new message of its source topic t (no source,
 * attempts start again) and submits it. 0, or -1 when it was not published. */
static int republish(queue *q, q_topic *t, const q_msg *m, redrive_op *d)
{
    size_t kl = m->key ? m->key_len + 1 : 0;
    char *mem = malloc(m->len + 1 + kl);
    q_block *nb = mem ? sq_block_new(1, mem) : NULL;
    if (!nb) {
        free(mem);
        return -1;
    }
    memcpy(mem, m->data, m->len);
    nb->msgs[0].m.data = mem;
    nb->msgs[0].m.len = m->len;
    if (m->key) {
        memcpy(mem + m->len + 1, m->key, kl);
        nb->msgs[0].m.key = mem + m->len + 1;
        nb->msgs[0].m.key_len = m->key_len;
    }
    d->publish_failed = 0;
    sq_submit_messages(q, t, nb, on_redrive_published, d);
    return d->publish_failed ? -1 : 0;
}

static q_topic *topic_by_id(queue *q, int64_t id)
{
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        q_topic *t = list_entry(n, q_topic, link);
        if (t->id == id) return t;
    }
    return NULL;
}

/* The dead letters read: each published back to its source, and deleted from
 * the dead-letter topic in the same transaction. */
static void redrive_block(queue *q, read_op *r, q_block *b)
{
    redrive_op *d = calloc(1, sizeof *d);
    uint64_t *seqs = d ? calloc(b->n, sizeof *seqs) : NULL;
    if (!seqs) {
        free(d);
        r->rcb(r->data, ERR_NOMEM, 0);
        return;
    }
    d->seqs = seqs;
    d->cb = r->rcb;
    d->data = r->data;
    d->dlq = topic_by_id(q, r->topic_id);
    if (!d->dlq) {
        free(seqs);
        free(d);
        r->rcb(r->data, ERR_NOTFOUND, 0);
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        const q_msg *m = &b->msgs[i].m;
        if (!m->source || !*m->source) continue; /* never: the read asked for sources */
        q_topic *t = sq_topic_get(q, m->source, 1);
        if (!t || t == d->dlq) continue; /* back to itself would loop; leave it */
        if (republish(q, t, m, d) == 0) d->seqs[d->nseqs++] = m->seq;
    }
    d->op.apply = apply_redrive_delete;
    d->op.done = done_redrive_delete;
    writer_submit(q->w, &d->op);
}

static void done_read(wop *op, int status)
{
    read_op *r = (read_op *)op;
    queue *q = r->q;
    q_block *b = r->block;
    if (!r->redrive) {
        q_msg *ptrs[1024];
        size_t n = b ? b->n : 0;
        for (size_t i = 0; i < n && i < 1024; i++) ptrs[i] = &b->msgs[i].m;
        r->cb(r->data, status, ptrs, status ? 0 : n);
    } else if (status != 0 || !b || b->n == 0) {
        r->rcb(r->data, status, 0);
    } else {
        redrive_block(q, r, b);
    }
    if (b) sq_block_settle(b);
    free(r);
}

static read_op *new_read(queue *q, q_topic *t, uint64_t after, uint32_t limit)
{
    read_op *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->q = q;
    r->topic_id = t->id;
    r->after = after;
    r->limit = limit > 1024 ? 1024 : limit;
    r->op.read = read_topic;
    r->op.done = done_read;
    return r;
}

static int sq_read(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_read_cb cb,
                   void *data)
{
    q_topic *t = sq_topic_get(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    read_op *r = new_read(q, t, after, limit);
    if (!r) return ERR_NOMEM;
    r->cb = cb;
    r->data = data;
    writer_submit(q->w, &r->op);
    return 0;
}

static int sq_redrive(queue *q, const char *topic, uint64_t after, uint32_t limit,
                      queue_redrive_cb cb, void *data)
{
    q_topic *t = sq_topic_get(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    read_op *r = new_read(q, t, after, limit);
    if (!r) return ERR_NOMEM;
    r->redrive = 1;
    r->rcb = cb;
    r->data = data;
    writer_submit(q->w, &r->op);
    return 0;
}

static int sq_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* --- Administering topics ---------------------------------------------------------- */

typedef struct admin_op {
    wop op;
    queue *q;
    q_topic *topic;
    int64_t topic_id;
    uint64_t below; /* purge, retention: only committed messages, below this seq */
    uint64_t *keep; /* purge: seqs leased now, which stay (sorted) */
    size_t nkeep;
    q_retention ret;  /* set: to save; retention: the limits; delete: to restore on failure */
    int create_topic; /* set: insert the topic's row first */
    int64_t now_ms;
    uint64_t rows, bytes; /* deleted */
    uint64_t stop;        /* retention: the first seq kept */
    int64_t oldest_ms;    /* of what is left */
    queue_count_cb count_cb;
    queue_done_cb done_cb;
    void *data;
} admin_op;

static admin_op *admin_new(queue *q, q_topic *t, int (*apply)(sqlite3 *, wop *),
                           void (*done)(wop *, int))
{
    admin_op *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->q = q;
    a->topic = t;
    a->topic_id = t->id;
    a->op.apply = apply;
    a->op.done = done;
    return a;
}

/* Writer thread: one statement bound to the topic's id (?1) and run. */
static int sq_exec_topic(sqlite3 *db, const char *sql, int64_t topic_id)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, topic_id);
    return sql_step_finalize(st);
}

static int apply_delete(sqlite3 *db, wop *op)
{
    admin_op *a = (admin_op *)op;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "DELETE FROM messages WHERE topic_id = ?" RETURNING_BYTES, -1,
                                &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->topic_id);
    rc = sq_delete_rows(st, &a->rows, &a->bytes);
    sqlite3_finalize(st);
    /* Subscriptions are gone already (the topic had none); their rows too,
     * unless a removal failed on its own. */
    if (rc == SQLITE_OK)
        rc = sq_exec_topic(db,
                           "DELETE FROM retries WHERE sub_id IN"
                           " (SELECT id FROM subscriptions WHERE topic_id = ?1)",
                           a->topic_id);
    if (rc == SQLITE_OK)
        rc = sq_exec_topic(db, "DELETE FROM subscriptions WHERE topic_id = ?1", a->topic_id);
    if (rc == SQLITE_OK) rc = sq_exec_topic(db, "DELETE FROM topics WHERE id = ?1", a->topic_id);
    return rc;
}

static void done_delete(wop *op, int status)
{
    admin_op *a = (admin_op *)op;
    q_topic *t = a->topic;
    if (status == 0) {
        /* The counters start again: what was published before the deletion
         * went with it (a publish asked for after it is counted after this,
         * as its done comes later). */
        t->published = t->stored = t->bytes = 0;
        t->oldest_stored_ms = 0;
        t->retired_acked = t->retired_dead = 0;
    } else if (t->deleted) {
        t->deleted = 0; /* still there, as it was */
        t->ret = a->ret;
    }
    a->count_cb(a->data, status, a->rows);
    free(a);
}

static int sq_topic_delete(queue *q, const char *topic, queue_count_cb done, void *data)
{
    if (q->closing) return ERR_CLOSED;
    q_topic *t = sq_topic_get(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    if (t->nsubs) return ERR_BUSY;
    admin_op *a = admin_new(q, t, apply_delete, done_delete);
    if (!a) return ERR_NOMEM;
    a->count_cb = done;
    a->data = data;
    a->ret = t->ret;
    memset(&t->ret, 0, sizeof t->ret);
    t->deleted = 1;
    writer_submit(q->w, &a->op);
    return 0;
}

static int apply_purge(sqlite3 *db, wop *op)
{
    admin_op *a = (admin_op *)op;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        db, "DELETE FROM messages WHERE topic_id = ? AND seq >= ? AND seq < ?" RETURNING_BYTES, -1,
        &st, NULL);
    if (rc != SQLITE_OK) return rc;
    /* Everything below the bound but the leased seqs: the ranges between them. */
    uint64_t from = 0;
    for (size_t i = 0; i <= a->nkeep && rc == SQLITE_OK; i++) {
        uint64_t to = i < a->nkeep ? a->keep[i] : a->below;
        if (to > from) {
            sqlite3_bind_int64(st, 1, a->topic_id);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)from);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)to);
            rc = sq_delete_rows(st, &a->rows, &a->bytes);
        }
        if (to + 1 > from) from = to + 1;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK) a->oldest_ms = sq_first_published(db, a->topic_id);
    return rc;
}

static void done_purge(wop *op, int status)
{
    admin_op *a = (admin_op *)op;
    if (status == 0) sq_forget_rows(a->topic, a->rows, a->bytes, a->oldest_ms);
    a->count_cb(a->data, status, a->rows);
    free(a->keep);
    free(a);
}

/* Empties what a subscription holds but its leases: it goes on from the next
 * publish (bound: the first seq not yet committed). Returns the seqs it has
 * leased into keep. */
static void sub_purge(q_sub *s, uint64_t bound, uint64_t *keep, size_t *nkeep)
{
    for (list_node *n = list_first(&s->leased); n != &s->leased; n = n->next)
        keep[(*nkeep)++] = list_entry(n, sq_lease, link)->base.msg->seq;
    while (s->rlen) sq_msg_unref(sq_ready_take(s, 0));
    while (s->nheap) {
        sq_lease *l = sq_heap_pop(s);
        sq_key_free(s, l->base.msg);
        if (l->in_retry_table) sq_submit_retry(l, NULL);
        sq_lease_free(l);
    }
    uv_timer_stop(&s->timer);
    free(s->restore);
    s->restore = NULL;
    s->nrestore = 0;
    if (s->fetched < bound) s->fetched = bound;
    s->lagging = 0;
    s->lag_oldest_ms = 0;
    sq_mark_dirty(s);
}

static int sq_topic_purge(queue *q, const char *topic, queue_count_cb done, void *data)
{
    if (q->closing) return ERR_CLOSED;
    q_topic *t = sq_topic_get(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    size_t leased = 0;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next)
        leased += list_entry(n, q_sub, link)->nleased;
    admin_op *a = admin_new(q, t, apply_purge, done_purge);
    uint64_t *keep = a && leased ? malloc(leased * sizeof *keep) : NULL;
    if (!a || (leased && !keep)) {
        free(a);
        return ERR_NOMEM;
    }
    /* Committed messages only: a publish still on its way is after the purge. */
    a->below = t->committed;
    for (list_node *n = list_first(&t->subs); n != &t->subs; n = n->next)
        sub_purge(list_entry(n, q_sub, link), a->below, keep, &a->nkeep);
    if (a->nkeep) qsort(keep, a->nkeep, sizeof *keep, sq_cmp_u64);
    a->keep = keep;
    if (t->trimmed < a->below) t->trimmed = a->below; /* a new subscription starts there */
    a->count_cb = done;
    a->data = data;
    writer_submit(q->w, &a->op);
    return 0;
}

/* Retention: the oldest messages of a topic no subscription reads, while it
 * is over a limit. */
static int over_limits(const q_topic *t, int64_t now)
{
    const q_retention *r = &t->ret;
    return (r->max_messages && t->stored > r->max_messages) ||
           (r->max_bytes && t->bytes > r->max_bytes) ||
           (r->max_age_ms && t->stored && t->oldest_stored_ms &&
            now - t->oldest_stored_ms > (int64_t)r->max_age_ms);
}

static int apply_retain(sqlite3 *db, wop *op)
{
    admin_op *a = (admin_op *)op;
    const q_retention *r = &a->ret;
    sqlite3_stmt *st;
    /* The figures of the store, not of memory: publishes and deletions may be
     * in this same transaction. */
    int rc = sqlite3_prepare_v2(db,
                                "SELECT COUNT(*), TOTAL(length(payload) + ifnull(length(key), 0))"
                                " FROM messages WHERE topic_id = ?",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->topic_id);
    uint64_t count = 0, bytes = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        count = (uint64_t)sqlite3_column_int64(st, 0);
        bytes = (uint64_t)sqlite3_column_double(st, 1);
    }
    sqlite3_finalize(st);
    rc = sqlite3_prepare_v2(db,
                            "SELECT seq, published_ms, length(payload) + ifnull(length(key), 0)"
                            " FROM messages WHERE topic_id = ? AND seq < ? ORDER BY seq",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->topic_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a->below);
    a->stop = a->below;
    int64_t cutoff = a->now_ms - (int64_t)r->max_age_ms;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int old = r->max_age_ms && sqlite3_column_int64(st, 1) < cutoff;
        if (!old && !(r->max_messages && count > r->max_messages) &&
            !(r->max_bytes && bytes > r->max_bytes)) {
            a->stop = (uint64_t)sqlite3_column_int64(st, 0);
            break;
        }
        count--;
        bytes -= (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    rc = sqlite3_prepare_v2(
        db, "DELETE FROM messages WHERE topic_id = ? AND seq < ?" RETURNING_BYTES, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->topic_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a->stop);
    rc = sq_delete_rows(st, &a->rows, &a->bytes);
    sqlite3_finalize(st);
    if (rc == SQLITE_OK) a->oldest_ms = sq_first_published(db, a->topic_id);
    return rc;
}

static void done_retain(wop *op, int status)
{
    admin_op *a = (admin_op *)op;
    q_topic *t = a->topic;
    t->retaining = 0;
    if (status == 0 && !t->deleted) {
        sq_forget_rows(t, a->rows, a->bytes, a->oldest_ms);
        if (t->trimmed < a->stop) t->trimmed = a->stop;
        if (a->rows)
            log_debug("retention dropped %llu messages (%llu bytes) of topic '%s'",
                      (unsigned long long)a->rows, (unsigned long long)a->bytes, t->name);
    } else if (status) {
        log_warn("cannot apply the retention of topic '%s': %s", t->name, err_str(status));
    }
    free(a);
}

static void retain(queue *q, q_topic *t)
{
    if (t->deleted || t->nsubs || t->retaining || !t->persisted || q->closing) return;
    int64_t now = clock_now_ms();
    if (!over_limits(t, now)) return;
    admin_op *a = admin_new(q, t, apply_retain, done_retain);
    if (!a) return;
    a->ret = t->ret;
    a->now_ms = now;
    a->below = t->committed;
    t->retaining = 1;
    writer_submit(q->w, &a->op);
}

static void sq_retention_tick(uv_timer_t *h)
{
    queue *q = h->data;
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next)
        retain(q, list_entry(n, q_topic, link));
}

static int apply_set_retention(sqlite3 *db, wop *op)
{
    admin_op *a = (admin_op *)op;
    int rc = a->create_topic ? sq_insert_topic(db, a->topic) : SQLITE_OK;
    if (rc != SQLITE_OK) return rc;
    sqlite3_stmt *st;
    rc = sqlite3_prepare_v2(db,
                            "UPDATE topics SET max_age_ms = ?, max_bytes = ?, max_messages = ?"
                            " WHERE id = ?",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)a->ret.max_age_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a->ret.max_bytes);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)a->ret.max_messages);
    sqlite3_bind_int64(st, 4, a->topic_id);
    return sql_step_finalize(st);
}

static void done_set_retention(wop *op, int status)
{
    admin_op *a = (admin_op *)op;
    if (status && a->create_topic) a->topic->persisted = 0;
    if (status == 0) retain(a->q, a->topic); /* now, not at the next tick */
    a->done_cb(a->data, status);
    free(a);
}

static int sq_topic_retention(queue *q, const char *topic, const q_retention *r, queue_done_cb done,
                              void *data)
{
    if (q->closing) return ERR_CLOSED;
    q_topic *t = sq_topic_get(q, topic, 1);
    if (!t) return ERR_NOMEM;
    admin_op *a = admin_new(q, t, apply_set_retention, done_set_retention);
    if (!a) return ERR_NOMEM;
    a->ret = *r;
    a->create_topic = !t->persisted;
    t->persisted = 1;
    t->ret = *r; /* in force from now: a failed save says so to the caller */
    a->done_cb = done;
    a->data = data;
    writer_submit(q->w, &a->op);
    return 0;
}

/* --- Opening and closing ------------------------------------------------------------- */

/* Reloads, after a restart, the messages a subscription had leased (they were
 * in flight: due again now, their attempt repeated) and those waiting for a
 * retry. Runs on the store's own connection before the writer starts. */
static int sq_restore_sub(queue *q, q_sub *s, const void *leased, int leased_len)
{
    sqlite3 *db = store_db(q->st);
    sqlite3_stmt *one;
    char sql[256];
    snprintf(sql, sizeof sql, "%s WHERE topic_id = ? AND seq = ?", sq_select_rows);
    if (sqlite3_prepare_v2(db, sql, -1, &one, NULL) != SQLITE_OK) return ERR_STORE;

    /* (seq, attempt, visible_ms, error) of everything to reload. */
    typedef struct pending {
        uint64_t seq;
        uint32_t attempts;
        int64_t visible_ms;
        char *error;
        int in_table;
    } pending;
    size_t n = 0, cap = 16;
    pending *p = malloc(cap * sizeof *p);
    const uint8_t *b = leased;
    for (int i = 0; p && i + 12 <= leased_len; i += 12) {
        if (n == cap) {
            pending *np = realloc(p, (cap *= 2) * sizeof *p);
            if (!np) break;
            p = np;
        }
        p[n++] = (pending){get_u64(b + i), get_u32(b + i + 8) ? get_u32(b + i + 8) - 1 : 0,
                           clock_now_ms(), NULL, 0};
    }
    sqlite3_stmt *rs;
    if (p && sqlite3_prepare_v2(db,
                                "SELECT seq, attempts, visible_ms, error FROM retries"
                                " WHERE sub_id = ?",
                                -1, &rs, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(rs, 1, s->id);
        while (sqlite3_step(rs) == SQLITE_ROW) {
            if (n == cap) {
                pending *np = realloc(p, (cap *= 2) * sizeof *p);
                if (!np) break;
                p = np;
            }
            const char *e = (const char *)sqlite3_column_text(rs, 3);
            p[n++] = (pending){(uint64_t)sqlite3_column_int64(rs, 0),
                               (uint32_t)sqlite3_column_int64(rs, 1), sqlite3_column_int64(rs, 2),
                               strdup(e ? e : ""), 1};
        }
        sqlite3_finalize(rs);
    }
    for (size_t i = 0; p && i < n; i++) {
        sqlite3_bind_int64(one, 1, s->topic->id);
        sqlite3_bind_int64(one, 2, (sqlite3_int64)p[i].seq);
        q_block *blk = NULL;
        uint32_t got = 0;
        sq_read_rows(one, 1, &blk, &got);
        sqlite3_reset(one);
        if (blk && got == 1) {
            sq_lease *l = calloc(1, sizeof *l);
            if (l) {
                l->base.msg = &blk->msgs[0].m;
                blk->msgs[0].refs = 1;
                l->base.sub = s;
                l->base.attempt = p[i].attempts;
                l->visible_ms = p[i].visible_ms;
                l->error = p[i].error;
                p[i].error = NULL;
                l->in_retry_table = (unsigned)p[i].in_table;
                list_init(&l->link);
                s->refs++;
                sq_heap_push(s, l);
                sq_key_hold(s, l->base.msg);
                uint64_t *r = realloc(s->restore, (s->nrestore + 1) * sizeof *r);
                if (r) {
                    s->restore = r;
                    s->restore[s->nrestore++] = p[i].seq;
                }
            } else {
                sq_block_settle(blk);
            }
        } else if (blk) {
            sq_block_settle(blk);
        }
        free(p[i].error);
    }
    free(p);
    sqlite3_finalize(one);
    if (s->nrestore) qsort(s->restore, s->nrestore, sizeof *s->restore, sq_cmp_u64);
    return 0;
}

static int load(queue *q, char *err, size_t errcap)
{
    sqlite3 *db = store_db(q->st);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db,
            "SELECT t.id, t.name, t.published, t.next_seq,"
            " (SELECT MAX(seq) FROM messages m WHERE m.topic_id = t.id),"
            " (SELECT MIN(seq) FROM messages m WHERE m.topic_id = t.id),"
            " (SELECT COUNT(*) FROM messages m WHERE m.topic_id = t.id),"
            " (SELECT published_ms FROM messages m WHERE m.topic_id = t.id"
            "  ORDER BY seq LIMIT 1),"
            " (SELECT TOTAL(length(payload) + ifnull(length(key), 0)) FROM messages m"
            "  WHERE m.topic_id = t.id),"
            " t.max_age_ms, t.max_bytes, t.max_messages, t.acked, t.dead_lettered"
            " FROM topics t ORDER BY t.name",
            -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errcap, "cannot read topics: %s", sqlite3_errmsg(db));
        return ERR_STORE;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (id >= q->next_topic_id) q->next_topic_id = id + 1;
        q_topic *t = sq_topic_get(q, (const char *)sqlite3_column_text(st, 1), 1);
        if (!t) continue;
        t->id = id;
        t->persisted = 1;
        t->published = (uint64_t)sqlite3_column_int64(st, 2);
        uint64_t next = (uint64_t)sqlite3_column_int64(st, 3);
        uint64_t max = (uint64_t)sqlite3_column_int64(st, 4);
        uint64_t min = (uint64_t)sqlite3_column_int64(st, 5);
        if (next < max + 1) next = max + 1;
        t->next_seq = t->committed = next;
        t->trimmed = min ? min : next;
        t->stored = (uint64_t)sqlite3_column_int64(st, 6);
        t->oldest_stored_ms = sqlite3_column_int64(st, 7);
        t->bytes = (uint64_t)sqlite3_column_double(st, 8);
        t->ret.max_age_ms = (uint64_t)sqlite3_column_int64(st, 9);
        t->ret.max_bytes = (uint64_t)sqlite3_column_int64(st, 10);
        t->ret.max_messages = (uint64_t)sqlite3_column_int64(st, 11);
        t->retired_acked = (uint64_t)sqlite3_column_int64(st, 12);
        t->retired_dead = (uint64_t)sqlite3_column_int64(st, 13);
    }
    sqlite3_finalize(st);
    if (q->next_topic_id < 1) q->next_topic_id = 1;

    if (sqlite3_prepare_v2(db,
                           "SELECT s.id, t.name, s.function, s.max_attempts, s.dlq, s.ordered,"
                           " s.deadline_ms, s.max_concurrency, s.cursor, s.leased, s.acked,"
                           " s.dead_lettered FROM subscriptions s JOIN topics t"
                           " ON t.id = s.topic_id ORDER BY t.name, s.function",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errcap, "cannot read subscriptions: %s", sqlite3_errmsg(db));
        return ERR_STORE;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        q_topic *t = sq_topic_get(q, (const char *)sqlite3_column_text(st, 1), 0);
        if (!t) continue;
        q_sub_config cfg = {0};
        snprintf(cfg.function, sizeof cfg.function, "%s", sqlite3_column_text(st, 2));
        cfg.max_attempts = (uint32_t)sqlite3_column_int64(st, 3);
        snprintf(cfg.dlq, sizeof cfg.dlq, "%s", sqlite3_column_text(st, 4));
        cfg.ordered = sqlite3_column_int(st, 5);
        cfg.deadline_ms = (uint32_t)sqlite3_column_int64(st, 6);
        cfg.max_concurrency = (uint32_t)sqlite3_column_int64(st, 7);
        q_sub *s = sq_sub_new(q, t, &cfg);
        if (!s) continue;
        s->id = sqlite3_column_int64(st, 0);
        if (s->id >= q->next_sub_id) q->next_sub_id = s->id + 1;
        s->persisted = 1;
        s->fetched = (uint64_t)sqlite3_column_int64(st, 8);
        if (s->fetched < t->trimmed) s->fetched = t->trimmed;
        /* Numbering never goes back below what a subscription has seen. */
        if (s->fetched > t->next_seq) t->next_seq = t->committed = s->fetched;
        s->acked = (uint64_t)sqlite3_column_int64(st, 10);
        s->dead_lettered = (uint64_t)sqlite3_column_int64(st, 11);
        sq_restore_sub(q, s, sqlite3_column_blob(st, 9), sqlite3_column_bytes(st, 9));
    }
    sqlite3_finalize(st);
    if (q->next_sub_id < 1) q->next_sub_id = 1;
    return 0;
}

int queue_open(uv_loop_t *loop, store *st, const queue_events *ev, queue **out, char *err,
               size_t errcap)
{
    queue *q = calloc(1, sizeof *q);
    if (!q) return ERR_NOMEM;
    q->ops = &sq_ops;
    q->loop = loop;
    q->st = st;
    q->ev = *ev;
    list_init(&q->topics);
    list_init(&q->dirty);
    strmap_init(&q->by_name);
    q->next_topic_id = q->next_sub_id = 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/spate.db", store_dir(st));
    int rc = writer_start(loop, path, &q->w, err, errcap);
    if (rc == 0) rc = load(q, err, errcap);
    if (rc != 0) {
        if (q->w) writer_stop(q->w, NULL, NULL);
        strmap_free(&q->by_name);
        free(q);
        return rc;
    }
    writer_set_presubmit(q->w, sq_presubmit, q);
    /* Retention: at once (what aged while spated was down), then every tick. */
    uv_timer_init(loop, &q->retention);
    q->retention.data = q;
    uv_timer_start(&q->retention, sq_retention_tick, 0, SPATE_RETENTION_TICK_MS);
    /* Start every subscription: reload from the store. */
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        q_topic *t = list_entry(n, q_topic, link);
        for (list_node *m = list_first(&t->subs); m != &t->subs; m = m->next) {
            q_sub *s = list_entry(m, q_sub, link);
            sq_maybe_fetch(s);
            sq_arm_retry(s);
        }
    }
    *out = q;
    return 0;
}

static void sq_set_events(queue *q, const queue_events *ev)
{
    q->ev = *ev;
}

/* The writer stopped and the retention timer closed: q goes. */
static void close_part(queue *q)
{
    if (++q->closed_parts < 2) return;
    void (*cb)(void *) = q->close_cb;
    void *cbdata = q->close_data;
    free(q);
    if (cb) cb(cbdata);
}

static void on_retention_closed(uv_handle_t *h)
{
    close_part(h->data);
}

static void on_writer_stopped(void *data)
{
    queue *q = data;
    while (!list_empty(&q->topics)) {
        q_topic *t = list_entry(list_first(&q->topics), q_topic, link);
        list_remove(&t->link);
        while (!list_empty(&t->subs)) {
            q_sub *s = list_entry(list_first(&t->subs), q_sub, link);
            list_remove(&s->link);
            s->closed = 1;
            /* Leases still out are forgotten: the scheduler has stopped. */
            while (!list_empty(&s->leased)) {
                sq_lease *l = list_entry(list_first(&s->leased), sq_lease, link);
                list_remove(&l->link);
                sq_msg_unref(l->base.msg);
                free(l->error);
                free(l);
                s->refs--;
            }
            s->refs = 1;
            sq_sub_unref(s);
        }
        free(t->name);
        free(t);
    }
    strmap_free(&q->by_name);
    sqlite3_stmt *sts[] = {q->ins_msg,  q->upd_pub,      q->upd_sub,
                           q->del_msgs, q->upsert_retry, q->del_retry};
    for (size_t i = 0; i < sizeof sts / sizeof *sts; i++) sqlite3_finalize(sts[i]);
    close_part(q);
}

static void sq_close(queue *q, void (*cb)(void *data), void *data)
{
    q->closing = 1;
    q->close_cb = cb;
    q->close_data = data;
    uv_close((uv_handle_t *)&q->retention, on_retention_closed);
    /* Save the latest state of every subscription with the last commit. */
    writer_stop(q->w, on_writer_stopped, q);
}

static const queue_ops sq_ops = {
    .publish = sq_publish,
    .lease = sq_lease_next,
    .ack = sq_ack,
    .nack = sq_nack,
    .release = sq_release,
    .dead_letter = sq_dead_letter,
    .subscribe = sq_subscribe,
    .unsubscribe = sq_unsubscribe,
    .find_sub = sq_find_sub,
    .each_sub = sq_each_sub,
    .sub_config = sq_sub_config,
    .sub_topic = sq_sub_topic,
    .sub_set_data = sq_sub_set_data,
    .sub_data = sq_sub_data,
    .sub_stats = sq_sub_stats,
    .topic_stats = sq_topic_stats,
    .each_topic = sq_each_topic,
    .read = sq_read,
    .redrive = sq_redrive,
    .topic_delete = sq_topic_delete,
    .topic_purge = sq_topic_purge,
    .topic_retention = sq_topic_retention,
    .set_events = sq_set_events,
    .close = sq_close,
};
