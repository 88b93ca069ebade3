/* memory.c - the SQLite queue: the working set in memory: message blocks, the ready ring, the retry
 * heap, the busy keys of ordered subscriptions. */
#include "store/queue/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"

void sq_msg_unref(queue_msg *pm)
{
    sq_msg *m = sq_msg_of(pm);
    if (--m->refs > 0) return;
    sq_block *b = m->block;
    if (--b->refs == 0) {
        free(b->mem);
        free(b->extra);
        free(b);
    }
}

sq_block *sq_block_new(size_t n, char *mem)
{
    sq_block *b = calloc(1, sizeof *b + n * sizeof(sq_msg));
    if (!b) return NULL;
    b->mem = mem;
    b->n = n;
    b->refs = (uint32_t)n;
    for (size_t i = 0; i < n; i++) b->msgs[i].block = b;
    return b;
}

int sq_block_take_extras(sq_block *b, const queue_input *in, size_t n)
{
    size_t i = 0;
    while (i < n && !in[i].attrs && !in[i].error) i++;
    if (i == n) return 0; /* the plain path: nothing allocated */
    queue_input *own = malloc(n * sizeof *own);
    if (!own) return ERR_NOMEM;
    memcpy(own, in, n * sizeof *own);
    int rc = queue_inputs_own_extras(own, n, &b->extra);
    for (i = 0; rc == 0 && i < n; i++) {
        queue_msg *m = &b->msgs[i].m;
        m->attrs = own[i].attrs;
        if (own[i].error) {
            m->source = own[i].source_topic;
            m->error = own[i].error;
            m->attempts = 0;
        }
    }
    free(own);
    return rc;
}

/* Drops the references nobody took (messages no subscription wanted); frees
 * the block if none was taken (or it held no message). */
void sq_block_settle(sq_block *b)
{
    uint32_t untaken = 0;
    for (size_t i = 0; i < b->n; i++) untaken += b->msgs[i].refs == 0;
    b->refs -= untaken;
    if (b->refs == 0) {
        free(b->mem);
        free(b->extra);
        free(b);
    }
}

void sq_mark_dirty(queue_sub *s)
{
    /* A removed subscription has no state to save, and a lease that settles
     * after the removal may drop its last reference: on the dirty list it
     * would be snapshot after it was freed. */
    if (s->dirty || !s->persisted || s->closed) return;
    s->dirty = 1;
    list_push_back(&s->q->dirty, &s->dirty_link);
    writer_kick(s->q->w);
}

void sq_notify(queue_sub *s)
{
    if (!s->closed && s->q->ev.available) s->q->ev.available(s, s->q->ev.data);
}

/* --- Ready ring ---------------------------------------------------------------------- */

static int ready_grow(queue_sub *s)
{
    size_t cap = s->rcap ? s->rcap * 2 : 256;
    queue_msg **r = malloc(cap * sizeof *r);
    if (!r) return ERR_NOMEM;
    for (size_t i = 0; i < s->rlen; i++) r[i] = s->ready[(s->rhead + i) % s->rcap];
    free(s->ready);
    s->ready = r;
    s->rcap = cap;
    s->rhead = 0;
    return 0;
}

queue_msg *sq_ready_at(const queue_sub *s, size_t i)
{
    return s->ready[(s->rhead + i) % s->rcap];
}

/* A message published with a delay, not yet due: a retry at attempt 0, its
 * row written (internal.h). ERR_NOMEM. */
static int defer(queue_sub *s, queue_msg *m)
{
    sq_lease *l = calloc(1, sizeof *l);
    if (!l) return ERR_NOMEM;
    l->base.msg = m;
    l->base.sub = s;
    l->visible_ms = m->visible_ms;
    l->in_retry_table = 1;
    list_init(&l->link);
    if (sq_heap_push(s, l) != 0) {
        free(l);
        return ERR_NOMEM;
    }
    sq_msg_of(m)->refs++;
    s->refs++;
    /* No key held: a delay lets later messages of its key go first (SQS's
     * delays are not FIFO's). */
    sq_submit_retry(l, "");
    sq_mark_dirty(s);
    sq_arm_retry(s);
    return 0;
}

int sq_ready_push(queue_sub *s, queue_msg *m)
{
    if (m->visible_ms && m->visible_ms > clock_now_ms()) return defer(s, m);
    if (s->rlen == s->rcap && ready_grow(s)) return ERR_NOMEM;
    s->ready[(s->rhead + s->rlen) % s->rcap] = m;
    s->rlen++;
    s->ready_bytes += m->len;
    sq_msg_of(m)->refs++;
    return 0;
}

/* Inserts in seq order (a released message goes back near the front). */
int sq_ready_insert(queue_sub *s, queue_msg *m)
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

queue_msg *sq_ready_take(queue_sub *s, size_t pos)
{
    queue_msg *m = sq_ready_at(s, pos);
    for (size_t i = pos; i > 0; i--)
        s->ready[(s->rhead + i) % s->rcap] = s->ready[(s->rhead + i - 1) % s->rcap];
    s->rhead = (s->rhead + 1) % s->rcap;
    s->rlen--;
    s->ready_bytes -= m->len;
    return m;
}

int sq_ready_full(const queue_sub *s)
{
    return s->rlen >= SPATE_QUEUE_READY_MAX || s->ready_bytes >= SPATE_QUEUE_READY_BYTES;
}

/* --- Retry heap -------------------------------------------------------------------- */

static void heap_swap(queue_sub *s, uint32_t a, uint32_t b)
{
    sq_lease *t = s->heap[a];
    s->heap[a] = s->heap[b];
    s->heap[b] = t;
    s->heap[a]->heap_index = a;
    s->heap[b]->heap_index = b;
}

static void heap_up(queue_sub *s, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (s->heap[p]->visible_ms <= s->heap[i]->visible_ms) break;
        heap_swap(s, p, i);
        i = p;
    }
}

static void heap_down(queue_sub *s, uint32_t i)
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

int sq_heap_reserve(queue_sub *s, uint32_t n)
{
    if (n <= s->heapcap) return 0;
    uint32_t cap = s->heapcap ? s->heapcap : 64;
    while (cap < n) cap *= 2;
    sq_lease **h = realloc(s->heap, cap * sizeof *h);
    if (!h) return ERR_NOMEM;
    s->heap = h;
    s->heapcap = cap;
    return 0;
}

int sq_heap_push(queue_sub *s, sq_lease *l)
{
    if (s->nheap == s->heapcap && sq_heap_reserve(s, s->nheap + 1)) return ERR_NOMEM;
    l->heap_index = s->nheap;
    s->heap[s->nheap++] = l;
    heap_up(s, l->heap_index);
    s->retry_bytes += l->base.msg->len;
    if (l->base.attempt == 0) s->ndelayed++;
    return 0;
}

void sq_heap_drop_older(queue_sub *s, int64_t cutoff_ms)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->nheap; i++) {
        sq_lease *l = s->heap[i];
        if (l->base.msg->published_ms >= cutoff_ms) {
            l->heap_index = k;
            s->heap[k++] = l;
            continue;
        }
        s->retry_bytes -= l->base.msg->len;
        if (l->base.attempt == 0) s->ndelayed--;
        sq_key_free(s, l->base.msg);
        if (l->in_retry_table) sq_submit_retry(l, NULL);
        sq_lease_free(l);
    }
    if (k == s->nheap) return;
    s->nheap = k;
    for (uint32_t i = k / 2; i-- > 0;) heap_down(s, i);
    sq_mark_dirty(s);
}

sq_lease *sq_heap_pop(queue_sub *s)
{
    sq_lease *top = s->heap[0];
    s->heap[0] = s->heap[--s->nheap];
    if (s->nheap) {
        s->heap[0]->heap_index = 0;
        heap_down(s, 0);
    }
    s->retry_bytes -= top->base.msg->len;
    if (top->base.attempt == 0) s->ndelayed--;
    return top;
}

static void on_retry_timer(uv_timer_t *t);

/* Wakes the scheduler when the earliest retry comes due. A retry already due
 * arms nothing: the scheduler was told, and leases it when it has room
 * (re-arming at once would spin the loop while the function is full). */
void sq_arm_retry(queue_sub *s)
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
    queue_sub *s = t->data;
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

int sq_key_busy(const queue_sub *s, const queue_msg *m)
{
    return s->cfg.ordered && m->key && strmap_get(&s->busy_keys, m->key, m->key_len);
}

int sq_key_hold(queue_sub *s, queue_msg *m)
{
    return s->cfg.ordered && m->key ? strmap_put(&s->busy_keys, m->key, m) : 0;
}

void sq_key_free(queue_sub *s, queue_msg *m)
{
    if (s->cfg.ordered && m->key && strmap_get(&s->busy_keys, m->key, m->key_len) == m)
        strmap_remove(&s->busy_keys, m->key);
}
