/*
 * sqs_recv.c - SQS's receiver (api/sqs.h "Design"): the leases that
 * ReceiveMessage hands out, held for their visibility timeout; receipt
 * handles; long polls woken by the queue's available event. One uv timer
 * serves every deadline: the held leases' in a heap, the long polls' in a
 * list (one a connection at most).
 */
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uv.h>

#include "api/sqs.h"
#include "common/clock.h"
#include "common/hash.h"
#include "common/lambda.h"
#include "common/limits.h"
#include "common/list.h"
#include "common/log.h"
#include "common/strmap.h"
#include "sched/triggers.h"

/* A receive's name: this process's life (16 hex digits, drawn at start) and
 * a number, so that a handle from before a restart is told apart (stale)
 * from one of ours (its MAC checked) and names no receive made since. */
#define SQS_LIFE_LEN 16
#define SQS_GEN_MAX (SQS_LIFE_LEN + 1 + 20)

/* A received message, invisible until its deadline. */
typedef struct held {
    size_t slot; /* in sqs->heap */
    queue_lease *lease;
    uint64_t seq;
    uint64_t deadline; /* uv_now, ms */
    /* Cluster mode: when to tell the queue again that the lease is held
     * (queue_touch), before its AckWait gives the message to another node;
     * 0: not before the deadline. The heap is by the earlier of the two. */
    uint64_t touch_at;
    char gen[SQS_GEN_MAX + 1]; /* LIFE-N, this receive's name: the key in sqs->by_gen */
    char queue[SPATE_SQS_NAME_MAX + 1];
} held;

/* A FIFO deduplication id sent within the window: QUEUE\nID. */
typedef struct dedup {
    list_node link; /* in sqs->dedups, oldest first */
    int64_t until_ms;
    uint64_t seq;
    char key[];
} dedup;

/* A ReceiveMessage waiting for a message (long polling). */
typedef struct waiter {
    list_node link; /* in sqs->waiters, oldest first */
    sqs_call *call;
    uint64_t deadline;
    uint32_t max, visibility_s;
    unsigned attrs;
} waiter;

struct sqs {
    api *a;
    uv_timer_t timer; /* the earliest deadline of held (the heap's top) and waiters */
    int timer_open;
    uint64_t armed; /* the timer's due time; 0: stopped */
    int closed;     /* the triggers closed: the queue is going */
    /* Leasing may make a queue's available event come at once (a lease
     * given back inside fill): it is kept for after, not run inside. */
    int filling;
    queue_sub *missed;
    /* The receive leasing now: its queue and how many more it takes (what
     * a queue that must fetch asks, on_room). */
    const char *fill_queue;
    uint32_t fill_left;
    held **heap; /* what receives hold, a min-heap by deadline */
    size_t nheap, capheap;
    list_node waiters; /* a few: one a connection at most */
    strmap by_gen;
    uint64_t gen;
    strmap dedup_ids; /* dedup.key -> dedup */
    list_node dedups;
    size_t ndedup;
    int64_t dedup_warned_ms;
    uint32_t dedup_window_ms;    /* SPATE_SQS_DEDUP_WINDOW_MS, or the test knob's */
    unsigned char key[32];       /* receipt handles' HMAC key, drawn at start */
    char life[SQS_LIFE_LEN + 1]; /* this process's, in every handle (SQS_GEN_MAX) */
    /* HMAC-SHA256 under key, set up once: OpenSSL's one-shot HMAC() looks
     * the algorithms up and builds a context on every call, which made a
     * fifth of the loop's time under bench/sqs (two MACs a message: its
     * receive and its delete). */
    EVP_MAC_CTX *mac;
};

static struct sqs *state(api *a)
{
    return a->sqs;
}

/* HMAC-SHA256 of queue, gen and seq, its first 16 bytes in hex. */
static void handle_mac(const struct sqs *s, const char *qname, const char *gen, uint64_t seq,
                       char hex[33])
{
    char text[160];
    int n = snprintf(text, sizeof text, "%s\n%s\n%llu", qname, gen, (unsigned long long)seq);
    unsigned char mac[32];
    size_t len = 0;
    /* A NULL key starts again under the key set at start. A failure (out
     * of memory) gives no hex: no handle's MAC (sqs_settle reads only
     * hex) matches it. */
    if (!EVP_MAC_init(s->mac, NULL, 0, NULL) ||
        !EVP_MAC_update(s->mac, (const unsigned char *)text, (size_t)n) ||
        !EVP_MAC_final(s->mac, mac, &len, sizeof mac) || len != sizeof mac) {
        memset(hex, 'x', 32);
        hex[32] = '\0';
        return;
    }
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[32] = '\0';
}

/* Cluster mode: this node's id (SQS_NODE_LEN hex digits, kept in
 * DATA/node-id, so the same across restarts), or NULL on a single node.
 *
 * Receipt handles across nodes. A node holds what its receives leased (the
 * lease is its JetStream delivery), so only it can delete the message or
 * change its visibility. A handle of another node used here once looked
 * like one of an earlier run (another life) and was answered as stale: a
 * DeleteMessage succeeded and deleted nothing, and the message the client
 * took for deleted came back when the visibility timeout ended. So a
 * node's handles begin with its id, NODE-LIFE-N.SEQ.MAC: a handle of
 * another node is refused saying so (SQS_HANDLE_ELSEWHERE), one of an
 * earlier run of this node is stale as before. Handing the settle on to
 * the node that holds the lease (SQS accepts a handle on any endpoint)
 * would need a request between nodes; not yet. */
#define SQS_NODE_LEN 16
static const char *node_id(const struct sqs *s)
{
    const char *id = s->a->nodes.self ? s->a->nodes.self(s->a->nodes.data) : NULL;
    if (!id || strlen(id) != SQS_NODE_LEN || strspn(id, "0123456789abcdef") != SQS_NODE_LEN)
        return NULL;
    return id;
}

/* [NODE-]GEN.SEQ.MAC: all a handle says, checked by its MAC (of GEN, SEQ
 * and the queue: the node's id only says where the lease is). */
static void make_handle(const struct sqs *s, const held *h, char *out, size_t cap)
{
    char mac[33];
    const char *node = node_id(s);
    handle_mac(s, h->queue, h->gen, h->seq, mac);
    snprintf(out, cap, "%s%s%s.%llu.%s", node ? node : "", node ? "-" : "", h->gen,
             (unsigned long long)h->seq, mac);
}

/* A trigger's lease (Lambda's event source mapping): the receipt handle its
 * function's SQS event shows, [NODE-]LIFE-tATTEMPT.SEQ.MAC. The 't' tells it
 * from a receive's LIFE-N; the attempt names the lease (a handle of an
 * earlier receive of the message is stale), and sched/triggers.c holds the
 * lease until the invocation ends (triggers_receiver_settle). */
static void on_handle(const char *topic, uint64_t seq, uint32_t attempt, char *out, size_t cap,
                      void *data)
{
    const struct sqs *s = data;
    char gen[SQS_GEN_MAX + 1], mac[33];
    const char *node = node_id(s);
    snprintf(gen, sizeof gen, "%s-t%u", s->life, (unsigned)attempt);
    handle_mac(s, topic, gen, seq, mac);
    snprintf(out, cap, "%s%s%s.%llu.%s", node ? node : "", node ? "-" : "", gen,
             (unsigned long long)seq, mac);
}

/* --- The timer ------------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t);

static void arm(struct sqs *s, uint64_t due)
{
    if (!s->timer_open || (s->armed && s->armed <= due)) return;
    uint64_t now = uv_now(s->timer.loop);
    s->armed = due;
    uv_timer_start(&s->timer, on_timer, due > now ? due - now : 0, 0);
}

/* --- The heap of held leases, by deadline ----------------------------------------------- */

/* When the timer has something to do for h: its deadline, or a touch before. */
static uint64_t due(const held *h)
{
    return h->touch_at && h->touch_at < h->deadline ? h->touch_at : h->deadline;
}

static void place(struct sqs *s, size_t i, held *h)
{
    s->heap[i] = h;
    h->slot = i;
}

static void sift_up(struct sqs *s, size_t i)
{
    held *h = s->heap[i];
    while (i > 0 && due(s->heap[(i - 1) / 2]) > due(h)) {
        place(s, i, s->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    place(s, i, h);
}

static void sift_down(struct sqs *s, size_t i)
{
    held *h = s->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap) break;
        if (c + 1 < s->nheap && due(s->heap[c + 1]) < due(s->heap[c])) c++;
        if (due(s->heap[c]) >= due(h)) break;
        place(s, i, s->heap[c]);
        i = c;
    }
    place(s, i, h);
}

static int heap_push(struct sqs *s, held *h)
{
    if (s->nheap == s->capheap) {
        size_t cap = s->capheap ? 2 * s->capheap : 64;
        held **p = realloc(s->heap, cap * sizeof *p);
        if (!p) return -1;
        s->heap = p;
        s->capheap = cap;
    }
    place(s, s->nheap++, h);
    sift_up(s, s->nheap - 1);
    return 0;
}

/* After h's deadline changed. */
static void heap_fix(struct sqs *s, held *h)
{
    sift_up(s, h->slot);
    sift_down(s, h->slot);
}

static void unhold(struct sqs *s, held *h)
{
    size_t i = h->slot;
    held *last = s->heap[--s->nheap];
    if (last != h) {
        place(s, i, last);
        heap_fix(s, last);
    }
    strmap_remove(&s->by_gen, h->gen);
    free(h);
}

static void on_available(queue_sub *sub, void *data);

/* Its visibility timeout is over: visible again, the receive counted. A
 * nack due now wakes nobody (its taker leases on), so the queue's waiters
 * are served here. */
static void expire(struct sqs *s, held *h)
{
    queue_sub *sub = h->lease->sub;
    const queue_sub_config *cfg = queue_sub_get_config(sub);
    if (cfg->max_attempts && cfg->dlq[0] && h->lease->attempt >= cfg->max_attempts &&
        queue_find_sub(s->a->q, cfg->dlq, TRIGGERS_RECEIVER)) {
        /* Received maxReceiveCount times and not deleted: to the DLQ (while
         * it is a queue: once deleted, the message would go to a bare topic
         * that no receive reads, so it stays here, visible again). */
        queue_dead_letter(h->lease, "received maxReceiveCount times and not deleted");
        unhold(s, h);
        return;
    }
    /* A receiver removed meanwhile (its queue deleted) may go with its last
     * lease: nobody is told of it then. */
    int live = queue_find_sub(s->a->q, h->queue, TRIGGERS_RECEIVER) == sub;
    queue_nack(h->lease, 0, "visibility timeout expired");
    unhold(s, h);
    if (!live) return;
    on_available(sub, s);
    /* What the waiters left goes to the queue's triggers (which share its
     * receiver), told by nobody else either. */
    if (s->a->tr && !s->closed) triggers_receiver_available(s->a->tr, sub);
}

static void answer_waiter(struct sqs *s, waiter *w, cJSON *out)
{
    list_remove(&w->link);
    w->call->req->on_abort = NULL;
    sqs_ok(w->call, out);
    free(w);
    (void)s;
}

/* Cluster mode: a held lease is told to the queue again every queue's
 * VisibilityTimeout (its receiver's consumer's AckWait is that and a margin:
 * api/sqs.h), so a receive's longer timeout, or one a ChangeMessageVisibility
 * extended, keeps the message from other nodes until it ends. */
static void plan_touch(struct sqs *s, held *h, uint64_t now)
{
    h->touch_at = 0;
    if (!(queue_flags(s->a->q) & QUEUE_SHARED)) return;
    uint64_t every = queue_sub_get_config(h->lease->sub)->deadline_ms;
    if (every < SPATE_SQS_TOUCH_MIN_MS) every = SPATE_SQS_TOUCH_MIN_MS;
    if (now + every < h->deadline) h->touch_at = now + every;
}

static void on_timer(uv_timer_t *t)
{
    struct sqs *s = t->data;
    uint64_t now = uv_now(t->loop), next = 0;
    s->armed = 0;
    while (s->nheap && due(s->heap[0]) <= now) {
        held *h = s->heap[0];
        if (h->deadline <= now) {
            expire(s, h);
            continue;
        }
        queue_touch(h->lease);
        plan_touch(s, h, now);
        heap_fix(s, h);
    }
    if (s->nheap) next = due(s->heap[0]);
    for (list_node *n = list_first(&s->waiters), *nx; n != &s->waiters; n = nx) {
        nx = n->next;
        waiter *w = list_entry(n, waiter, link);
        if (w->deadline <= now)
            answer_waiter(s, w, NULL);
        else if (!next || w->deadline < next)
            next = w->deadline;
    }
    if (next) arm(s, next);
}

/* --- Receiving ----------------------------------------------------------------------- */

/* What SQS can carry of data (len bytes) into out (3 * len + 1 bytes at
 * least): each character sqs_contents_ok refuses, or byte that starts no
 * valid UTF-8 sequence, as U+FFFD. Its length (out is NUL-terminated).
 * Else one such message made every answer holding it unreadable (XML
 * cannot carry a control character, JSON invalid UTF-8), and with it the
 * other messages of those answers, received each time and lost to the
 * caller. */
static size_t sqs_text(const char *data, size_t len, char *out)
{
    size_t o = 0;
    if (sqs_contents_ok(data, len)) { /* every message sent through SQS */
        memcpy(out, data, len);
        out[len] = '\0';
        return len;
    }
    for (size_t i = 0; i < len;) {
        size_t n = 1;
        while (n <= 4 && !(i + n <= len && sqs_contents_ok(data + i, n))) n++;
        if (n <= 4) {
            memcpy(out + o, data + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return o;
}

/* A message as ReceiveMessage shows it; holds its lease (or, with a
 * visibility timeout of 0, gives it back at once). NULL when out of memory
 * (the lease then goes back, not counted). */
static cJSON *take(struct sqs *s, const char *qname, queue_lease *l, uint32_t visibility_s,
                   unsigned attrs, const cJSON *names)
{
    held *h = calloc(1, sizeof *h);
    cJSON *m = cJSON_CreateObject();
    char *body = malloc((size_t)l->msg->len * 3 + 1); /* room for sqs_text's U+FFFDs */
    if (!h || !m || !body) goto fail;
    h->lease = l;
    h->seq = l->msg->seq;
    snprintf(h->gen, sizeof h->gen, "%s-%llu", s->life, (unsigned long long)++s->gen);
    snprintf(h->queue, sizeof h->queue, "%s", qname);
    char id[37], handle[SPATE_SQS_HANDLE_MAX + 1], md5[HASH_MD5_HEX_LEN + 1];
    lambda_sqs_message_id(qname, triggers_receiver_created(l->sub), h->seq, id);
    make_handle(s, h, handle, sizeof handle);
    /* A message published through spate's own API may hold what SQS
     * bodies cannot (a NUL, a control character, bytes that are not
     * UTF-8): shown as U+FFFD, its digest that of what is shown. */
    size_t blen = sqs_text(l->msg->data, l->msg->len, body);
    hash_md5_hex(body, blen, md5);
    /* A message shown without a part it has (out of memory) would be
     * another message: none is shown then, its lease goes back. */
    int ok = cJSON_AddStringToObject(m, "MessageId", id) &&
             cJSON_AddStringToObject(m, "ReceiptHandle", handle) &&
             cJSON_AddStringToObject(m, "MD5OfBody", md5) &&
             cJSON_AddStringToObject(m, "Body", body);
    free(body);
    body = NULL;
    const queue_attrs *qa = l->msg->attrs;
    cJSON *sel = qa && qa->source && strcmp(qa->source, SQS_ATTRS_SOURCE) == 0
                     ? sqs_attrs_select(qa->headers, qa->headers_len, names)
                     : NULL;
    if (sel) { /* only those asked for, and the digest of those */
        char amd5[HASH_MD5_HEX_LEN + 1];
        if (sqs_attrs_md5(sel, amd5) != 0 ||
            !cJSON_AddStringToObject(m, "MD5OfMessageAttributes", amd5))
            ok = 0;
        if (!cJSON_AddItemToObject(m, "MessageAttributes", sel)) {
            cJSON_Delete(sel);
            ok = 0;
        }
    }
    if (attrs) {
        cJSON *at = cJSON_AddObjectToObject(m, "Attributes");
        char num[24];
        if (!at) ok = 0;
        if (attrs & SQS_ATTR_RECEIVE_COUNT) {
            snprintf(num, sizeof num, "%u", l->attempt);
            ok &= cJSON_AddStringToObject(at, "ApproximateReceiveCount", num) != NULL;
        }
        if (attrs & SQS_ATTR_SENT_TIMESTAMP) {
            snprintf(num, sizeof num, "%lld", (long long)l->msg->published_ms);
            ok &= cJSON_AddStringToObject(at, "SentTimestamp", num) != NULL;
        }
        if (attrs & SQS_ATTR_FIRST_RECEIVE) {
            /* Now, for a first receive; the queue keeps no time of it, so a
             * later one shows the earliest it can have been, the send's. */
            snprintf(num, sizeof num, "%lld",
                     (long long)(l->attempt <= 1 ? clock_now_ms() : l->msg->published_ms));
            ok &= cJSON_AddStringToObject(at, "ApproximateFirstReceiveTimestamp", num) != NULL;
        }
        if (attrs & SQS_ATTR_SENDER) /* one account, no IAM principals */
            ok &= cJSON_AddStringToObject(at, "SenderId", SQS_ACCOUNT) != NULL;
        if (attrs & SQS_ATTR_FIFO && l->msg->key) { /* a FIFO queue's message */
            ok &= cJSON_AddStringToObject(at, "MessageGroupId", l->msg->key) != NULL;
            snprintf(num, sizeof num, "%020llu", (unsigned long long)l->msg->seq);
            ok &= cJSON_AddStringToObject(at, "SequenceNumber", num) != NULL;
        }
    }
    if (!ok) goto fail;
    /* A timeout of 0 expires on the timer's next turn, not inside this
     * receive (which would lease the message again). */
    h->deadline = uv_now(s->timer.loop) + (uint64_t)visibility_s * 1000;
    plan_touch(s, h, uv_now(s->timer.loop));
    if (strmap_put(&s->by_gen, h->gen, h)) goto fail;
    if (heap_push(s, h)) {
        strmap_remove(&s->by_gen, h->gen);
        goto fail;
    }
    arm(s, due(h));
    return m;
fail:
    free(h);
    free(body);
    cJSON_Delete(m);
    queue_release(l);
    return NULL;
}

/* Leases up to max into a Messages list; NULL when there was none. */
static cJSON *fill(struct sqs *s, const char *qname, queue_sub *sub, uint32_t max,
                   uint32_t visibility_s, unsigned attrs, const cJSON *names)
{
    cJSON *out = NULL, *list = NULL;
    s->filling++;
    const char *outer = s->fill_queue;
    uint32_t outer_left = s->fill_left;
    s->fill_queue = qname;
    for (uint32_t i = 0; i < max; i++) {
        s->fill_left = max - i;
        queue_lease *l = triggers_receiver_next(sub);
        if (!l) break;
        if (!out) {
            out = cJSON_CreateObject();
            list = out ? cJSON_AddArrayToObject(out, "Messages") : NULL;
            if (!list) {
                queue_release(l);
                cJSON_Delete(out);
                out = NULL;
                break;
            }
        }
        cJSON *m = take(s, qname, l, visibility_s, attrs, names);
        if (!m) break;
        cJSON_AddItemToArray(list, m);
    }
    s->fill_queue = outer;
    s->fill_left = outer_left;
    s->filling--;
    return out;
}

/* Runs the available event that came inside fill. */
static void run_missed(struct sqs *s)
{
    queue_sub *sub = s->missed;
    s->missed = NULL;
    if (sub && !s->filling) on_available(sub, s);
}

/* The client went away (a reset): the waiter goes, and the request is
 * still answered (empty, dropped by the server), which is what frees its
 * connection; without it the connection stayed allocated and shutdown
 * waited for it forever. */
static void on_abort(http_request *req)
{
    waiter *w = req->data;
    req->on_abort = NULL;
    list_remove(&w->link);
    sqs_ok(w->call, NULL);
    free(w);
}

void sqs_receive(sqs_call *c, queue_sub *sub, uint32_t max, uint32_t visibility_s, uint32_t wait_s,
                 unsigned attrs)
{
    struct sqs *s = state(c->a);
    if (!s || s->closed) return sqs_fail(c, SQS_UNAVAILABLE, "spated is stopping");
    if (!s->timer_open) { /* the loop is known from the first request on */
        uv_timer_init(http_request_loop(c->req), &s->timer);
        s->timer.data = s;
        s->timer_open = 1;
        uv_unref((uv_handle_t *)&s->timer); /* never what keeps spated running */
    }
    cJSON *out = fill(s, c->queue, sub, max, visibility_s, attrs,
                      cJSON_GetObjectItemCaseSensitive(c->in, "MessageAttributeNames"));
    /* Cluster mode: the queue fetches what a receive asks for from
     * JetStream (asked by the lease above, on_room): even a short poll waits
     * for that fetch, a second at most, or it would never find anything. */
    uint64_t wait_ms = (uint64_t)wait_s * 1000;
    if (!out && !wait_ms && queue_flags(c->a->q) & QUEUE_SHARED)
        wait_ms = SPATE_SQS_CLUSTER_POLL_MS;
    if (out || wait_ms == 0) {
        sqs_ok(c, out);
        run_missed(s);
        return;
    }
    waiter *w = calloc(1, sizeof *w);
    if (!w) return sqs_fail(c, SQS_INTERNAL, "out of memory");
    w->call = c;
    w->max = max;
    w->visibility_s = visibility_s;
    w->attrs = attrs;
    w->deadline = uv_now(s->timer.loop) + wait_ms;
    list_push_back(&s->waiters, &w->link);
    c->req->data = w;
    c->req->on_abort = on_abort;
    arm(s, w->deadline);
}

/* Messages became available on a queue: its waiters take them, oldest
 * first, until none is left. */
static void on_available(queue_sub *sub, void *data)
{
    struct sqs *s = data;
    if (s->closed) return;
    if (s->filling) {
        s->missed = sub;
        return;
    }
    const char *qname = queue_sub_topic(sub);
    for (list_node *n = list_first(&s->waiters), *nx; n != &s->waiters; n = nx) {
        nx = n->next;
        waiter *w = list_entry(n, waiter, link);
        if (strcmp(w->call->queue, qname) != 0) continue;
        if (http_request_peer_closed(w->call->req)) { /* gone: its messages would hide unseen */
            answer_waiter(s, w, NULL);
            continue;
        }
        cJSON *out = fill(s, qname, sub, w->max, w->visibility_s, w->attrs,
                          cJSON_GetObjectItemCaseSensitive(w->call->in, "MessageAttributeNames"));
        if (!out) break;
        answer_waiter(s, w, out);
    }
    run_missed(s);
}

/* How many of the receiver's messages this process's receives would take
 * now: the one leasing and the long polls on its queue. */
static uint32_t on_room(queue_sub *sub, void *data)
{
    struct sqs *s = data;
    if (s->closed) return 0;
    const char *qname = queue_sub_topic(sub);
    uint64_t n = s->fill_queue && strcmp(s->fill_queue, qname) == 0 ? s->fill_left : 0;
    for (list_node *l = list_first(&s->waiters); l != &s->waiters; l = l->next) {
        waiter *w = list_entry(l, waiter, link);
        if (strcmp(w->call->queue, qname) == 0) n += w->max;
    }
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* --- Settling ----------------------------------------------------------------------- */

/* The N of a receive's LIFE-N, or a trigger's tN (on_handle): digits, at
 * most 20, the trigger's attempt at most 10. */
static int gen_number(const char *tail)
{
    int t = tail[0] == 't';
    size_t n = strspn(tail + t, "0123456789");
    return n && n == strlen(tail + t) && n <= (t ? 10u : 20u);
}

int sqs_settle(api *a, const char *qname, const char *handle, enum sqs_settle op,
               uint32_t visibility_s)
{
    struct sqs *s = state(a);
    char gen[SQS_NODE_LEN + 1 + SQS_GEN_MAX + 1]; /* [NODE-]LIFE-N */
    unsigned long long seq;
    char mac[33], want[33];
    size_t len = strnlen(handle, SPATE_SQS_HANDLE_MAX + 1);
    if (!s || len > SPATE_SQS_HANDLE_MAX) return SQS_BAD_HANDLE;
    const char *dot = strchr(handle, '.');
    if (!dot || dot == handle || (size_t)(dot - handle) >= sizeof gen) return SQS_BAD_HANDLE;
    memcpy(gen, handle, (size_t)(dot - handle));
    gen[dot - handle] = '\0';
    /* SEQ.MAC exactly as make_handle writes them: the digits of a number
     * (no sign, space or leading zero) and 32 hex digits. */
    const char *num = dot + 1;
    size_t ndig = strspn(num, "0123456789");
    if (!ndig || ndig > 20 || (num[0] == '0' && ndig > 1) || num[ndig] != '.' ||
        strlen(num + ndig + 1) != 32 || strspn(num + ndig + 1, "0123456789abcdef") != 32)
        return SQS_BAD_HANDLE;
    errno = 0;
    seq = strtoull(num, NULL, 10);
    if (errno) return SQS_BAD_HANDLE; /* 20 digits past 2^64 */
    memcpy(mac, num + ndig + 1, 33);
    /* NODE-LIFE-N (cluster mode): LIFE-N has a single '-', after 16 hex
     * digits, so the two forms are told apart. */
    if (strlen(gen) > SQS_NODE_LEN + SQS_LIFE_LEN + 2 && gen[SQS_NODE_LEN] == '-' &&
        strspn(gen, "0123456789abcdef") == SQS_NODE_LEN &&
        strspn(gen + SQS_NODE_LEN + 1, "0123456789abcdef") == SQS_LIFE_LEN &&
        gen[SQS_NODE_LEN + 1 + SQS_LIFE_LEN] == '-' &&
        gen_number(gen + SQS_NODE_LEN + SQS_LIFE_LEN + 2)) {
        const char *self = node_id(s);
        if (!self || memcmp(gen, self, SQS_NODE_LEN) != 0) return SQS_HANDLE_ELSEWHERE;
        memmove(gen, gen + SQS_NODE_LEN + 1, strlen(gen + SQS_NODE_LEN + 1) + 1);
    }
    if (strlen(gen) < SQS_LIFE_LEN + 2 || gen[SQS_LIFE_LEN] != '-' ||
        strspn(gen, "0123456789abcdef") != SQS_LIFE_LEN || !gen_number(gen + SQS_LIFE_LEN + 1))
        return SQS_BAD_HANDLE;
    /* Another life's (before a restart, whose key is gone): its lease is
     * gone with it, so it is stale, as the docs promise, not invalid. */
    if (memcmp(gen, s->life, SQS_LIFE_LEN) != 0) return op == SQS_DELETE ? 0 : SQS_NOT_INFLIGHT;
    handle_mac(s, qname, gen, seq, want);
    if (CRYPTO_memcmp(mac, want, 32) != 0) return SQS_BAD_HANDLE;
    if (gen[SQS_LIFE_LEN + 1] == 't') {
        /* A trigger's (on_handle): its invocation settles it when it ends. */
        unsigned long attempt = strtoul(gen + SQS_LIFE_LEN + 2, NULL, 10);
        int rc = attempt <= UINT32_MAX && s->a->tr
                     ? triggers_receiver_settle(s->a->tr, qname, seq, (uint32_t)attempt,
                                                op == SQS_DELETE ? TRIGGERS_SETTLE_DELETE
                                                                 : TRIGGERS_SETTLE_VISIBILITY,
                                                visibility_s * 1000)
                     : -1;
        return rc == 0 || op == SQS_DELETE ? 0 : SQS_NOT_INFLIGHT; /* stale: as below */
    }
    held *h = strmap_get(&s->by_gen, gen, strlen(gen));
    if (!h || h->seq != seq || strcmp(h->queue, qname) != 0)
        return op == SQS_DELETE ? 0 : SQS_NOT_INFLIGHT; /* stale: SQS's answers */
    if (op == SQS_DELETE) {
        queue_ack(h->lease);
        unhold(s, h);
    } else if (visibility_s == 0) {
        expire(s, h);
    } else {
        h->deadline = uv_now(s->timer.loop) + (uint64_t)visibility_s * 1000;
        plan_touch(s, h, uv_now(s->timer.loop));
        heap_fix(s, h);
        arm(s, due(h));
    }
    return 0;
}

/* --- FIFO deduplication ----------------------------------------------------------- */

static void dedup_drop(struct sqs *s, dedup *d)
{
    strmap_remove(&s->dedup_ids, d->key);
    list_remove(&d->link);
    free(d);
    s->ndedup--;
}

/* Forgets what left the window (all the same length: the oldest first). */
static void dedup_expire(struct sqs *s)
{
    int64_t now = clock_now_ms();
    while (!list_empty(&s->dedups)) {
        dedup *d = list_entry(list_first(&s->dedups), dedup, link);
        if (d->until_ms > now) break;
        dedup_drop(s, d);
    }
}

int sqs_dedup_find(api *a, const char *qname, const char *id, uint64_t *seq)
{
    struct sqs *s = state(a);
    if (!s) return 0;
    dedup_expire(s);
    char key[SPATE_SQS_NAME_MAX + SPATE_SQS_FIFO_ID_MAX + 2];
    int n = snprintf(key, sizeof key, "%s\n%s", qname, id);
    dedup *d = strmap_get(&s->dedup_ids, key, (size_t)n);
    if (!d) return 0;
    *seq = d->seq;
    return 1;
}

/* Remembers key (QUEUE\nID) until until_ms as the message seq made. */
static void dedup_put(struct sqs *s, const char *key, size_t len, uint64_t seq, int64_t until_ms)
{
    dedup *d = malloc(sizeof *d + len + 1);
    if (!d) return; /* not remembered in memory: a repeat would be stored */
    memcpy(d->key, key, len);
    d->key[len] = '\0';
    dedup *old = strmap_get(&s->dedup_ids, d->key, len);
    if (old) dedup_drop(s, old);
    d->until_ms = until_ms;
    d->seq = seq;
    if (strmap_put(&s->dedup_ids, d->key, d)) {
        free(d);
        return;
    }
    list_push_back(&s->dedups, &d->link);
    /* Bounded: past it the oldest are forgotten early (logged once a while). */
    if (++s->ndedup > SPATE_SQS_DEDUP_MAX) {
        dedup_drop(s, list_entry(list_first(&s->dedups), dedup, link));
        int64_t now = clock_now_ms();
        if (now - s->dedup_warned_ms > 60000) {
            log_warn("over %d FIFO deduplication ids in 5 minutes: the oldest are forgotten "
                     "before their window ends",
                     SPATE_SQS_DEDUP_MAX);
            s->dedup_warned_ms = now;
        }
    }
}

void sqs_dedup_add(api *a, const char *qname, const char *id, uint64_t seq)
{
    struct sqs *s = state(a);
    if (!s) return;
    dedup_expire(s);
    char key[SPATE_SQS_NAME_MAX + SPATE_SQS_FIFO_ID_MAX + 2];
    int n = snprintf(key, sizeof key, "%s\n%s", qname, id);
    dedup_put(s, key, (size_t)n, seq, clock_now_ms() + s->dedup_window_ms);
}

uint32_t sqs_dedup_window_ms(api *a)
{
    return state(a) ? state(a)->dedup_window_ms : SPATE_SQS_DEDUP_WINDOW_MS;
}

/* A deduplication id the store kept (queue_dedup_each), at the start. */
static void on_dedup_row(void *data, const char *topic, const char *id, uint64_t seq,
                         int64_t until_ms)
{
    char key[SPATE_SQS_NAME_MAX + SPATE_SQS_FIFO_ID_MAX + 2];
    int n = snprintf(key, sizeof key, "%s\n%s", topic, id);
    if (n > 0 && (size_t)n < sizeof key) dedup_put(data, key, (size_t)n, seq, until_ms);
}

/* Forgets qname's deduplication ids (DeleteQueue: a queue created again
 * under the name starts afresh, as its rows in the store went with it). */
static void dedup_forget_queue(struct sqs *s, const char *qname)
{
    size_t len = strlen(qname);
    for (list_node *n = list_first(&s->dedups), *nx; n != &s->dedups; n = nx) {
        nx = n->next;
        dedup *d = list_entry(n, dedup, link);
        if (strncmp(d->key, qname, len) == 0 && d->key[len] == '\n') dedup_drop(s, d);
    }
}

uint64_t sqs_held_count(api *a, const char *qname)
{
    struct sqs *s = state(a);
    uint64_t n = 0;
    if (!s) return 0;
    for (size_t i = 0; i < s->nheap; i++)
        if (strcmp(s->heap[i]->queue, qname) == 0) n++;
    return n;
}

/* Settles what qname's receives hold (every queue's: NULL), acked or
 * given back, and makes a heap of the rest. Giving back may tell the queue's
 * availability at once: that waits until the heap is whole again. */
static void drop(struct sqs *s, const char *qname, int ack)
{
    size_t k = 0;
    s->filling++;
    for (size_t i = 0; i < s->nheap; i++) {
        held *h = s->heap[i];
        if (qname && strcmp(h->queue, qname) != 0) {
            s->heap[k++] = h;
            continue;
        }
        if (ack)
            queue_ack(h->lease);
        else
            queue_release(h->lease);
        strmap_remove(&s->by_gen, h->gen);
        free(h);
    }
    s->nheap = k;
    for (size_t i = 0; i < k; i++) s->heap[i]->slot = i;
    for (size_t i = k / 2; i-- > 0;) sift_down(s, i);
    s->filling--;
}

/* Gives back what qname's receives hold (every queue's: NULL) and answers
 * their long polls, empty. */
static void forget(struct sqs *s, const char *qname)
{
    drop(s, qname, 0);
    for (list_node *n = list_first(&s->waiters), *nx; n != &s->waiters; n = nx) {
        nx = n->next;
        waiter *w = list_entry(n, waiter, link);
        if (!qname || strcmp(w->call->queue, qname) == 0) answer_waiter(s, w, NULL);
    }
    run_missed(s);
}

void sqs_delete_held(api *a, const char *qname)
{
    if (!state(a)) return;
    drop(state(a), qname, 1);
    run_missed(state(a));
}

void sqs_forget_queue(api *a, const char *qname)
{
    if (!state(a)) return;
    forget(state(a), qname);
    dedup_forget_queue(state(a), qname);
}

/* --- Life ---------------------------------------------------------------------------- */

/* The triggers close, the queue after them: what receives hold goes back
 * (delivered again after the restart), the long polls answer. */
static void on_closing(void *data)
{
    struct sqs *s = data;
    s->closed = 1; /* first: nothing is leased again from here on */
    forget(s, NULL);
    if (s->timer_open) uv_timer_stop(&s->timer);
    s->armed = 0;
}

/* The queue was deleted on another node: as a DeleteQueue here does. */
static void on_removed(const char *topic, void *data)
{
    struct sqs *s = data;
    forget(s, topic);
    dedup_forget_queue(s, topic);
}

void api_sqs_start(api *a)
{
    struct sqs *s = calloc(1, sizeof *s);
    if (!s) {
        log_error("cannot start the SQS receiver: out of memory");
        return;
    }
    s->a = a;
    list_init(&s->waiters);
    strmap_init(&s->by_gen);
    strmap_init(&s->dedup_ids);
    list_init(&s->dedups);
    unsigned char life[SQS_LIFE_LEN / 2];
    if (getrandom(s->key, sizeof s->key, 0) != (ssize_t)sizeof s->key ||
        getrandom(life, sizeof life, 0) != (ssize_t)sizeof life) {
        log_error("cannot draw the SQS receipt handles' key: no SQS receiver");
        free(s);
        return;
    }
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    s->mac = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    EVP_MAC_free(hmac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (!s->mac || !EVP_MAC_init(s->mac, s->key, sizeof s->key, params)) {
        log_error("cannot set up the SQS receipt handles' HMAC: no SQS receiver");
        EVP_MAC_CTX_free(s->mac);
        free(s);
        return;
    }
    /* The deduplication window: SQS's 5 minutes; shorter for tests only
     * (docs/operations.md "Test knobs"), never longer. */
    s->dedup_window_ms = SPATE_SQS_DEDUP_WINDOW_MS;
    const char *w = getenv("SPATE_TEST_SQS_DEDUP_WINDOW_MS");
    long long ms = w ? atoll(w) : 0;
    if (ms > 0 && ms < SPATE_SQS_DEDUP_WINDOW_MS) s->dedup_window_ms = (uint32_t)ms;
    /* The ids of the window still open, kept with their messages. */
    if (a->q && queue_dedup_each(a->q, on_dedup_row, s) != 0)
        log_error("cannot read the FIFO deduplication ids: a send repeated across this restart "
                  "may be stored twice");
    for (size_t i = 0; i < sizeof life; i++) snprintf(s->life + 2 * i, 3, "%02x", life[i]);
    a->sqs = s;
    if (!a->tr) return; /* no triggers (tests of the API alone) */
    triggers_receiver r = {.available = on_available,
                           .closing = on_closing,
                           .room = on_room,
                           .removed = on_removed,
                           .handle = on_handle,
                           .data = s};
    triggers_set_receiver(a->tr, &r);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void api_sqs_free(api *a)
{
    struct sqs *s = state(a);
    if (!s) return;
    a->sqs = NULL;
    /* The queue closed (on_closing gave everything back): only memory is left. */
    for (size_t i = 0; i < s->nheap; i++) free(s->heap[i]);
    free(s->heap);
    for (list_node *n = list_first(&s->waiters), *nx; n != &s->waiters; n = nx) {
        nx = n->next;
        waiter *w = list_entry(n, waiter, link);
        cJSON_Delete(w->call->in);
        free(w->call);
        free(w);
    }
    strmap_free(&s->by_gen);
    while (!list_empty(&s->dedups)) {
        dedup *d = list_entry(list_first(&s->dedups), dedup, link);
        list_remove(&d->link);
        free(d);
    }
    strmap_free(&s->dedup_ids);
    EVP_MAC_CTX_free(s->mac);
    if (s->timer_open)
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    else
        free(s);
}
