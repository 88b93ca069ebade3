/*
 * sources.c - the manager of event sources (sources.h): a thread per
 * source that fetches upstream, the loop's side that publishes each batch
 * through the queue interface, and the handshake between them.
 *
 * The handshake, per source, under its mutex: the thread fills a slot's
 * batch, points pub at the slot and sets submitted; the loop (woken by the
 * manager's uv_async) copies the batch into a publish and sets publishing;
 * the publish's callback sets result and result_ready and signals the
 * thread, which acks upstream only when result is 0.
 *
 * Two slots make a pipeline: while one batch is being committed the thread
 * fetches the next into the other, then waits for the first's outcome, acks
 * it and submits the second. So the upstream's round trips overlap the
 * store's commit, a source has at most one batch in flight and one fetched
 * ahead, batches reach the topic in the order they were fetched, and a slow
 * or refusing store stops it from taking more. A batch is acked only on the
 * connection it was fetched on (an AMQP delivery tag means nothing on
 * another): when that one dropped, its entries come again.
 */
#include "sources/sources.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "sources/tls.h"
#include "sources/connector.h"

/* A batch and what its publish needs (the thread's, lent to the loop while
 * submitted). */
typedef struct src_slot {
    src_batch batch;
    size_t to_publish; /* entries not refused */
    size_t to_dead;    /* entries refused, to put into the dead letters */
    int dead_done; /* under mu: they are stored (a failed publish of the rest does not repeat them)
                    */
    uint64_t conn_gen; /* the connection it was fetched on */
} src_slot;

typedef struct source source;
struct source {
    sources *mgr;
    source *next;
    reg_source cfg; /* the real URL: never shown */
    char shown[SPATE_SOURCE_URL_MAX + 1];
    const connector *conn;
    void *ccfg;
    pthread_t thread;
    int started; /* a thread runs (or ran) */
    /* Runs on one node of a cluster, the holder of its lease (the
     * connector has no consumer group); else on every node. */
    int leased;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu. */
    int stop;
    int submitted, publishing, result_ready, result;
    int exited;
    /* The thread's connection while it is open (for interrupt), when the
     * source was stopped, and whether its connection was cut since. */
    src_conn *open_conn;
    uint64_t stop_ns;
    int cut;
    const char *state;
    int connected;
    char last_error[512];
    int64_t last_error_ms;
    uint64_t received, committed, refused, dead_lettered, publish_failures;
    int64_t lag;
    /* Dropped by the client library (at-most-once upstreams): on closed
     * connections, and the current one's count. */
    uint64_t dropped_before, dropped_now;
    /* The thread's; pub is lent to the loop while submitted. */
    src_slot slot[2];
    src_slot *pub;
};

struct sources {
    uv_loop_t *loop;
    queue *q;
    registry *reg;
    char consumer[256];
    size_t message_max; /* read by the threads: __atomic */
    uv_async_t async;
    /* Ticks while stopped sources are alive: cuts those still blocked
     * upstream (connector.h, interrupt). */
    uv_timer_t reaper;
    source *live;  /* by name */
    source *dying; /* stopped, their threads not yet joined */
    void (*closed)(void *data);
    void *closed_data;
    int closing;
};

/* --- The source's thread ----------------------------------------------------------------- */

static void set_state(source *s, const char *state, int connected)
{
    pthread_mutex_lock(&s->mu);
    s->state = state;
    s->connected = connected;
    pthread_mutex_unlock(&s->mu);
}

static void set_error(source *s, const char *what, const char *err)
{
    pthread_mutex_lock(&s->mu);
    snprintf(s->last_error, sizeof s->last_error, "%s%s", what, err);
    s->last_error_ms = clock_now_ms();
    pthread_mutex_unlock(&s->mu);
    /* The URL is never quoted: only the source's name, and the connector's
     * message, which names the host and port at most. */
    log_warn("source %s: %s%s", s->cfg.name, what, err);
}

static int stopping(source *s)
{
    pthread_mutex_lock(&s->mu);
    int stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* Waits ms, or less when the source is stopped. */
static void pause_ms(source *s, uint32_t ms)
{
    struct timespec ts = clock_mono_after(ms);
    pthread_mutex_lock(&s->mu);
    while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&s->mu);
}

static uint32_t next_backoff(uint32_t *b)
{
    *b = *b ? *b * 2 : SPATE_SOURCE_BACKOFF_BASE_MS;
    if (*b > SPATE_SOURCE_BACKOFF_CAP_MS) *b = SPATE_SOURCE_BACKOFF_CAP_MS;
    return *b;
}

/* Lends p to the loop to publish; its outcome comes with wait_result. */
static void submit(source *s, src_slot *p)
{
    pthread_mutex_lock(&s->mu);
    s->pub = p;
    s->submitted = 1;
    s->result_ready = 0;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->mgr->async);
}

static int wait_result(source *s)
{
    pthread_mutex_lock(&s->mu);
    while (!s->result_ready) pthread_cond_wait(&s->cv, &s->mu);
    int rc = s->result;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Takes the connection's dropped count into the source's (before a
 * disconnect, closing says so: the next connection counts from 0). */
static void count_dropped(source *s, src_conn *c, int closing)
{
    if (!s->conn->dropped) return;
    int64_t n = s->conn->dropped(c);
    pthread_mutex_lock(&s->mu);
    s->dropped_now = n > 0 ? (uint64_t)n : 0;
    if (closing) {
        s->dropped_before += s->dropped_now;
        s->dropped_now = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

/* Closes c, its dropped messages counted. */
static void drop_conn(source *s, src_conn *c)
{
    count_dropped(s, c, 1);
    pthread_mutex_lock(&s->mu);
    s->open_conn = NULL; /* the loop no longer interrupts it */
    pthread_mutex_unlock(&s->mu);
    s->conn->disconnect(c);
}

/* p is stored in spate (or has nothing to store): acks it upstream when
 * the connection it came on is still open (*c, generation gen), else its
 * entries come again (at least once). */
static void complete(source *s, src_slot *p, src_conn **c, uint64_t gen)
{
    char err[512];
    if (*c && p->conn_gen == gen && s->conn->ack(*c, &p->batch, err, sizeof err) != 0) {
        /* Committed here but not acked there: the pending entries come
         * again after the reconnect (at least once). */
        set_error(s, "", err);
        drop_conn(s, *c);
        *c = NULL;
    }
    size_t good = p->to_publish, dead = p->to_dead;
    for (size_t i = 0; i < p->batch.n; i++)
        if (p->batch.e[i].refused[0])
            log_warn("source %s: entry %s refused (%s, acked upstream): %s", s->cfg.name,
                     p->batch.e[i].id,
                     dead ? "in the dead letters" : "topic name too long for .dlq",
                     p->batch.e[i].refused);
    pthread_mutex_lock(&s->mu);
    s->committed += good;
    s->refused += p->batch.n - good;
    s->dead_lettered += dead;
    pthread_mutex_unlock(&s->mu);
}

/* Waits for the outcome of p, lent to the loop, publishing it again with
 * back-off while the store refuses it (never dropped), then completes it.
 * Nonzero: the source stopped before p was stored; it is not acked and
 * comes again upstream. */
static int finish(source *s, src_slot *p, src_conn **c, uint64_t gen, uint32_t *backoff)
{
    int rc = wait_result(s);
    while (rc != 0 && !stopping(s)) {
        pthread_mutex_lock(&s->mu);
        s->publish_failures++;
        pthread_mutex_unlock(&s->mu);
        set_error(s, "cannot publish into the topic: ", err_str(rc));
        set_state(s, "backing-off", *c != NULL);
        pause_ms(s, next_backoff(backoff));
        if (stopping(s)) break;
        set_state(s, "running", *c != NULL);
        submit(s, p);
        rc = wait_result(s);
    }
    if (rc != 0) return rc;
    *backoff = 0;
    complete(s, p, c, gen);
    return 0;
}

/* p was not stored, the source stopped while the store refused it: an
 * upstream that forgot p when it was read (MQTT) does not send it again, so
 * the loss is told. A stop does not wait for the store: spated's shutdown
 * would wait for as long as its disk is full. */
static void lost_on_stop(source *s, const src_slot *p)
{
    if (!s->conn->acked_on_fetch || !p->batch.n) return;
    log_error("source %s: stopped while the store refused its publish: %zu entries, acknowledged "
              "upstream when read, are lost",
              s->cfg.name, p->batch.n);
}

/* Counts p's entries, refused or not, before it is published. */
static void prepare(source *s, src_slot *p)
{
    size_t good = 0;
    for (size_t i = 0; i < p->batch.n; i++) good += !p->batch.e[i].refused[0];
    p->to_publish = good;
    /* Refused entries go to the dead letters of the topic (the default
     * dead-letter topic of its triggers), stored before anything is acked;
     * with no room for that name they are only logged. */
    p->to_dead = strlen(s->cfg.topic) + 4 <= SPATE_TOPIC_NAME_MAX ? p->batch.n - good : 0;
    p->dead_done = 0;
    pthread_mutex_lock(&s->mu);
    s->received += p->batch.n;
    pthread_mutex_unlock(&s->mu);
}

static void *run(void *arg)
{
    source *s = arg;
    src_conn *c = NULL;
    uint64_t gen = 0; /* of c: counts the connections */
    src_slot *inflight = NULL;
    unsigned next = 0;
    uint32_t backoff = 0;
    uint64_t last_lag = 0;
    char err[512];
    while (!stopping(s)) {
        if (!c) {
            set_state(s, "connecting", 0);
            if (s->conn->connect(s->ccfg, s->mgr->consumer, &c, err, sizeof err) != 0) {
                c = NULL;
                set_error(s, "", err);
                set_state(s, "backing-off", 0);
                pause_ms(s, next_backoff(&backoff));
                continue;
            }
            gen++;
            log_info("source %s: connected to %s", s->cfg.name, s->shown);
            pthread_mutex_lock(&s->mu);
            s->open_conn = c;
            int stop = s->stop; /* stopped before the loop could see c: not cut */
            pthread_mutex_unlock(&s->mu);
            if (stop) continue;
            set_state(s, "running", 1);
        }
        src_limits lim = {.message_max = __atomic_load_n(&s->mgr->message_max, __ATOMIC_RELAXED),
                          .key_field = s->cfg.key_field};
        /* An upstream that forgets what it hands over (MQTT) is not read
         * ahead: a crash loses at most the one batch being committed. */
        if (inflight && s->conn->acked_on_fetch) {
            int rc = finish(s, inflight, &c, gen, &backoff);
            if (rc) lost_on_stop(s, inflight);
            inflight = NULL;
            if (rc) break;
            if (!c) continue;
        }
        src_slot *p = &s->slot[next];
        src_batch_reset(&p->batch);
        p->conn_gen = gen;
        /* With a batch in flight, only what is there already: its ack
         * should not wait for the upstream's next entry. */
        uint32_t wait = inflight ? SPATE_SOURCE_AHEAD_WAIT_MS : SPATE_SOURCE_WAIT_MS;
        if (s->conn->fetch(c, &lim, SPATE_SOURCE_BATCH_MAX, wait, &p->batch, err, sizeof err) !=
            0) {
            set_error(s, "", err);
            drop_conn(s, c);
            c = NULL;
            int rc = inflight ? finish(s, inflight, &c, gen, &backoff) : 0;
            if (rc) lost_on_stop(s, inflight);
            inflight = NULL;
            if (rc) break;
            set_state(s, "backing-off", 0);
            pause_ms(s, next_backoff(&backoff));
            continue;
        }
        uint64_t now = clock_mono_ns();
        if (s->conn->lag && now - last_lag > (uint64_t)SPATE_SOURCE_LAG_EVERY_MS * 1000000) {
            last_lag = now;
            int64_t lag = s->conn->lag(c);
            pthread_mutex_lock(&s->mu);
            s->lag = lag;
            pthread_mutex_unlock(&s->mu);
            count_dropped(s, c, 0);
        }
        if (p->batch.n) prepare(s, p);
        /* The batch before is stored and acked before this one goes: in
         * order into the topic, and an AMQP ack up to this batch's last tag
         * covers only what spate holds. */
        if (inflight) {
            int rc = finish(s, inflight, &c, gen, &backoff);
            if (rc) {
                lost_on_stop(s, inflight);
                lost_on_stop(s, p);
            }
            inflight = NULL;
            if (rc) break; /* stopped: p is not acked either, it comes again */
        }
        if (p->batch.n == 0) {
            backoff = 0;
            continue;
        }
        if (p->to_publish || p->to_dead) {
            submit(s, p);
            inflight = p;
            next ^= 1;
        } else {
            complete(s, p, &c, gen);
        }
    }
    /* Stopped: the loop stores what it had begun to (or what an upstream
     * that forgot it on fetch will not send again), else refuses it. */
    if (inflight && finish(s, inflight, &c, gen, &backoff)) lost_on_stop(s, inflight);
    if (c) drop_conn(s, c);
    pthread_mutex_lock(&s->mu);
    s->exited = 1;
    s->connected = 0;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->mgr->async);
    return NULL;
}

/* --- The loop's side ---------------------------------------------------------------------- */

static void on_published(void *data, int status, uint64_t first)
{
    source *s = data;
    (void)first;
    pthread_mutex_lock(&s->mu);
    s->publishing = 0;
    s->result = status;
    s->result_ready = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Copies the batch's entries (refused ones when dead, the others when not)
 * into one publish to topic, with their attributes (the thread keeps its
 * batch to publish again if this one fails). */
static void publish_entries(source *s, const char *topic, int dead, size_t n, queue_publish_cb cb)
{
    src_batch *b = &s->pub->batch;
    /* The queue wants NUL-terminated keys; in the batch's bytes a key is
     * followed by whatever came next: each is copied after them, with its NUL. */
    size_t key_bytes = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i].has_key) key_bytes += b->e[i].key_len + 1;
    buf body;
    buf_init(&body, b->bytes.len + key_bytes + 1);
    queue_input *in = calloc(n, sizeof *in);
    queue_attrs *at = calloc(n, sizeof *at);
    if (!in || !at || (b->bytes.len && buf_append(&body, b->bytes.data, b->bytes.len)) ||
        (key_bytes && buf_reserve(&body, key_bytes))) {
        free(in);
        free(at);
        buf_free(&body);
        cb(s, ERR_NOMEM, 0);
        return;
    }
    size_t keys_at = body.len;
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i].has_key) {
            buf_append(&body, b->bytes.data + b->e[i].key_at, b->e[i].key_len);
            buf_append(&body, "", 1);
        }
    size_t max = __atomic_load_n(&s->mgr->message_max, __ATOMIC_RELAXED);
    const char *base = body.data ? body.data : "";
    const char *key = base + keys_at;
    size_t k = 0;
    for (size_t i = 0; i < b->n && k < n; i++) {
        const src_entry *e = &b->e[i];
        const char *this_key = e->has_key ? key : NULL;
        if (e->has_key) key += e->key_len + 1;
        if ((e->refused[0] != 0) != dead) continue;
        at[k] = (queue_attrs){.source = s->cfg.name,
                              .upstream_id =
                                  strlen(e->id) <= SPATE_SOURCE_UPSTREAM_ID_MAX ? e->id : NULL,
                              .upstream_ts_ms = e->ts_ms,
                              .headers = e->hdr_len ? base + e->hdr_at : NULL,
                              .headers_len = (uint32_t)e->hdr_len,
                              .redelivered = e->redelivered};
        /* A dead letter keeps the body its connector kept (none for an
         * entry over the maximum), never more than a message may be. */
        in[k] = (queue_input){.key = this_key,
                              .key_len = (uint32_t)e->key_len,
                              .data = base + e->data_at,
                              .len = (uint32_t)(dead && e->len > max ? max : e->len),
                              .attrs = &at[k],
                              .error = dead ? e->refused : NULL,
                              .source_topic = dead ? s->cfg.topic : NULL};
        k++;
    }
    queue_publish(s->mgr->q, topic, &body, in, k, cb, s);
    free(in);
    free(at);
}

static void start_publish(source *s);

static void on_dead_published(void *data, int status, uint64_t first)
{
    source *s = data;
    if (status) {
        on_published(s, status, first);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->pub->dead_done = 1;
    pthread_mutex_unlock(&s->mu);
    start_publish(s);
}

/* The refused entries first, into the dead letters, then the messages. */
static void start_publish(source *s)
{
    pthread_mutex_lock(&s->mu);
    src_slot *p = s->pub;
    int dead = p->to_dead && !p->dead_done;
    pthread_mutex_unlock(&s->mu);
    if (dead) {
        char dlq[SPATE_TOPIC_NAME_MAX + 8]; /* fits: checked when the batch came */
        snprintf(dlq, sizeof dlq, "%s.dlq", s->cfg.topic);
        publish_entries(s, dlq, 1, p->to_dead, on_dead_published);
    } else if (p->to_publish) {
        publish_entries(s, s->cfg.topic, 0, p->to_publish, on_published);
    } else {
        on_published(s, 0, 0);
    }
}

static void source_free(source *s)
{
    if (s->ccfg) s->conn->free_cfg(s->ccfg);
    src_batch_free(&s->slot[0].batch);
    src_batch_free(&s->slot[1].batch);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* Stopped sources still blocked upstream SPATE_SOURCE_IO_TIMEOUT_MS after
 * their stop (a broker that sends a byte now and then): their connection is
 * cut, so removal and shutdown end. What they fetched is not acked: it
 * comes again. */
static void on_reaper(uv_timer_t *t)
{
    sources *m = t->data;
    uint64_t now = clock_mono_ns();
    for (source *s = m->dying; s; s = s->next) {
        if (!s->conn || !s->conn->interrupt) continue;
        pthread_mutex_lock(&s->mu);
        int cut = !s->exited && s->open_conn && !s->cut &&
                  now - s->stop_ns >= (uint64_t)SPATE_SOURCE_IO_TIMEOUT_MS * 1000000;
        if (cut) {
            s->conn->interrupt(s->open_conn);
            s->cut = 1;
        }
        pthread_mutex_unlock(&s->mu);
        if (cut)
            log_warn("source %s: still blocked upstream %d ms after it was stopped: its "
                     "connection is cut",
                     s->cfg.name, SPATE_SOURCE_IO_TIMEOUT_MS);
    }
    if (!m->dying) uv_timer_stop(t);
}

static void on_reaper_closed(uv_handle_t *h);

static void on_async_closed(uv_handle_t *h)
{
    sources *m = h->data;
    void (*cb)(void *) = m->closed;
    void *data = m->closed_data;
    free(m);
    if (cb) cb(data);
}

/* Serves the publishes the threads asked for, and joins those that ended. */
static void on_async(uv_async_t *a)
{
    sources *m = a->data;
    source **lists[] = {&m->live, &m->dying};
    for (int l = 0; l < 2; l++) {
        for (source **pp = lists[l]; *pp;) {
            source *s = *pp;
            pthread_mutex_lock(&s->mu);
            int go = s->submitted && !s->publishing;
            if (go) {
                s->submitted = 0;
                if (s->stop && !s->conn->acked_on_fetch) {
                    /* Stopping: not published, so not acked upstream (a
                     * connector whose upstream forgot the batch when it was
                     * read publishes it still: it is not coming again). */
                    s->result = ERR_CLOSED;
                    s->result_ready = 1;
                    pthread_cond_signal(&s->cv);
                    go = 0;
                } else {
                    s->publishing = 1;
                }
            }
            int done = s->exited && !s->publishing && !s->submitted;
            pthread_mutex_unlock(&s->mu);
            if (go) start_publish(s);
            if (done && l == 1) {
                if (s->started) pthread_join(s->thread, NULL);
                *pp = s->next;
                source_free(s);
                continue;
            }
            pp = &s->next;
        }
    }
    if (m->closing && !m->live && !m->dying && !uv_is_closing((uv_handle_t *)&m->reaper))
        uv_close((uv_handle_t *)&m->reaper, on_reaper_closed);
}

static void on_reaper_closed(uv_handle_t *h)
{
    sources *m = h->data;
    uv_close((uv_handle_t *)&m->async, on_async_closed);
}

static void stop_source(sources *m, source *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    s->stop_ns = clock_mono_ns();
    s->state = "stopping";
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (!s->started) {
        s->exited = 1;
    }
    s->next = m->dying;
    m->dying = s;
    if (s->started && s->conn && s->conn->interrupt && !uv_is_active((uv_handle_t *)&m->reaper))
        uv_timer_start(&m->reaper, on_reaper, 1000, 1000);
    uv_async_send(&m->async);
}

static void lease_key(const source *s, char *out, size_t cap)
{
    snprintf(out, cap, "source.%s", s->cfg.name);
}

/* Whether this node runs s: every node does when its broker balances them,
 * else the holder of its lease (holder: who that is, "" unknown). */
static int runs_here(source *s, char *holder, size_t cap)
{
    if (cap) holder[0] = '\0';
    if (!s->leased) return 1;
    char key[SPATE_NAME_MAX + 16];
    lease_key(s, key, sizeof key);
    return registry_lease(s->mgr->reg, key, holder, cap);
}

static void lease_drop(source *s)
{
    char key[SPATE_NAME_MAX + 16];
    lease_key(s, key, sizeof key);
    if (s->leased) registry_lease_drop(s->mgr->reg, key);
}

static void start_thread(source *s)
{
    s->state = "connecting";
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        s->state = "invalid";
        snprintf(s->last_error, sizeof s->last_error, "cannot start its thread");
        log_error("source %s: cannot start its thread", s->cfg.name);
        return;
    }
    s->started = 1;
}

/* A source from its saved configuration; a URL that no longer parses (a
 * connector gone from this build) leaves it listed, with why, and idle; one
 * whose lease another node holds waits, on standby. */
static source *source_new(sources *m, const reg_source *cfg)
{
    source *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->mgr = m;
    s->cfg = *cfg;
    sources_url_redact(cfg->url, s->shown, sizeof s->shown);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    src_batch_init(&s->slot[0].batch);
    src_batch_init(&s->slot[1].batch);
    s->lag = -1;
    s->state = "connecting";
    char err[512];
    s->conn = connector_for(cfg->url, err, sizeof err);
    if (!s->conn || s->conn->parse(cfg->url, &s->ccfg, err, sizeof err) != 0) {
        s->ccfg = NULL;
        s->state = "invalid";
        snprintf(s->last_error, sizeof s->last_error, "%s", err);
        log_error("source %s: %s; it does not run", cfg->name, err);
        return s;
    }
    if (s->conn->name_cfg) s->conn->name_cfg(s->ccfg, cfg->name);
    s->leased = !(s->conn->group && s->conn->group(s->ccfg));
    char holder[64];
    if (!runs_here(s, holder, sizeof holder)) {
        s->state = "standby";
        return s;
    }
    start_thread(s);
    return s;
}

static void insert_live(sources *m, source *s)
{
    source **pp = &m->live;
    while (*pp && strcmp((*pp)->cfg.name, s->cfg.name) < 0) pp = &(*pp)->next;
    s->next = *pp;
    *pp = s;
}

static source **find_live(sources *m, const char *name)
{
    for (source **pp = &m->live; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->cfg.name, name) == 0) return pp;
    return NULL;
}

int sources_create(uv_loop_t *loop, queue *q, registry *reg, const char *consumer,
                   size_t message_max, sources **out)
{
    sources *m = calloc(1, sizeof *m);
    if (!m) return ERR_NOMEM;
    m->loop = loop;
    m->q = q;
    m->reg = reg;
    snprintf(m->consumer, sizeof m->consumer, "%s", consumer);
    m->message_max = message_max;
    if (uv_async_init(loop, &m->async, on_async) != 0) {
        free(m);
        return ERR_NOMEM;
    }
    m->async.data = m;
    uv_timer_init(loop, &m->reaper);
    m->reaper.data = m;
    *out = m;
    return 0;
}

void sources_set_message_max(sources *m, size_t message_max)
{
    __atomic_store_n(&m->message_max, message_max, __ATOMIC_RELAXED);
}

static void start_saved(const reg_source *cfg, void *data)
{
    sources *m = data;
    source *s = source_new(m, cfg);
    if (s)
        insert_live(m, s);
    else
        log_error("source %s: out of memory; it does not run", cfg->name);
}

/* Leases moved: a source whose lease this node took starts; one whose
 * lease it lost stops, and waits on standby (its figures kept). */
static void follow_leases(sources *m)
{
    char holder[64];
    for (source **pp = &m->live; *pp; pp = &(*pp)->next) {
        source *s = *pp;
        if (!s->ccfg || !s->leased) continue;
        int here = runs_here(s, holder, sizeof holder);
        if (here && !s->started) {
            log_info("source %s: this node holds its lease: running", s->cfg.name);
            start_thread(s);
        } else if (!here && s->started) {
            source *n = source_new(m, &s->cfg);
            if (!n) continue; /* out of memory: try again at the next change */
            log_info("source %s: its lease went to node %s: on standby", s->cfg.name,
                     holder[0] ? holder : "(none yet)");
            pthread_mutex_lock(&s->mu);
            n->received = s->received;
            n->committed = s->committed;
            n->refused = s->refused;
            n->publish_failures = s->publish_failures;
            pthread_mutex_unlock(&s->mu);
            n->next = s->next;
            *pp = n;
            stop_source(m, s);
        }
    }
}

typedef struct sync_pass {
    sources *m;
    source *kept; /* the live ones the registry still holds, out of m->live */
} sync_pass;

static source **find_in(source **list, const char *name)
{
    for (source **pp = list; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->cfg.name, name) == 0) return pp;
    return NULL;
}

/* One source the registry holds: kept as it runs, or new, or replaced by
 * another node's change. */
static void sync_one(const reg_source *cfg, void *data)
{
    sync_pass *p = data;
    sources *m = p->m;
    source **pp = find_in(&m->live, cfg->name), *s = pp ? *pp : NULL;
    if (s) *pp = s->next; /* out of live, into kept or stopped */
    if (s && !strcmp(s->cfg.url, cfg->url) && !strcmp(s->cfg.topic, cfg->topic) &&
        !strcmp(s->cfg.key_field, cfg->key_field)) {
        s->next = p->kept;
        p->kept = s;
        return;
    }
    source *n = source_new(m, cfg);
    if (!n) {
        log_error("source %s: out of memory; it does not run", cfg->name);
        if (s) {
            s->next = p->kept;
            p->kept = s;
        }
        return;
    }
    if (s) stop_source(m, s);
    log_info("source %s: %s from the registry: %s into topic %s", cfg->name,
             s ? "replaced" : "added", n->shown, cfg->topic);
    n->next = p->kept;
    p->kept = n;
}

/* Another node added, replaced or removed a source, or a lease moved. */
static void on_registry_changed(void *data)
{
    sources *m = data;
    if (m->closing) return;
    sync_pass p = {.m = m};
    if (registry_each_source(m->reg, sync_one, &p) != 0) {
        /* Unread: nothing is taken away. */
        while (p.kept) {
            source *s = p.kept;
            p.kept = s->next;
            insert_live(m, s);
        }
        return;
    }
    /* What is left in live the registry no longer holds. */
    while (m->live) {
        source *s = m->live;
        m->live = s->next;
        log_info("source %s: removed from the registry", s->cfg.name);
        lease_drop(s);
        stop_source(m, s);
    }
    while (p.kept) {
        source *s = p.kept;
        p.kept = s->next;
        insert_live(m, s);
    }
    follow_leases(m);
}

void sources_forbid_file(const char *path)
{
    src_tls_forbid(path);
}

void sources_start(sources *m)
{
    if (registry_each_source(m->reg, start_saved, m) != 0)
        log_error("cannot read the sources from the registry; none runs");
    registry_watch(m->reg, REGISTRY_SOURCES, on_registry_changed, m);
}

void sources_close(sources *m, void (*cb)(void *data), void *data)
{
    m->closing = 1;
    m->closed = cb;
    m->closed_data = data;
    registry_watch(m->reg, REGISTRY_SOURCES, NULL, NULL);
    while (m->live) {
        source *s = m->live;
        m->live = s->next;
        lease_drop(s); /* another node runs it from now on */
        stop_source(m, s);
    }
    uv_async_send(&m->async);
}

int sources_check_url(const char *url, char *err, size_t errcap)
{
    const connector *c = connector_for(url, err, errcap);
    if (!c) return ERR_INVAL;
    void *cfg = NULL;
    int rc = c->parse(url, &cfg, err, errcap);
    if (rc) return rc == ERR_NOMEM ? rc : ERR_INVAL;
    c->free_cfg(cfg);
    return 0;
}

int sources_put(sources *m, const reg_source *src, int *replaced, char *err, size_t errcap)
{
    int rc = sources_check_url(src->url, err, errcap);
    if (rc) return rc;
    source **old = find_live(m, src->name);
    *replaced = old != NULL;
    size_t count = 0;
    for (source *s = m->live; s; s = s->next) count++;
    if (!old && count >= SPATE_SOURCES_MAX) {
        snprintf(err, errcap, "this node runs %d sources, its maximum", SPATE_SOURCES_MAX);
        return ERR_TOOBIG;
    }
    reg_source cfg = *src;
    if (old) cfg.created_ms = (*old)->cfg.created_ms;
    if (registry_source_put(m->reg, &cfg) != 0) {
        snprintf(err, errcap, "cannot save the source");
        return ERR_STORE;
    }
    if (old) {
        source *s = *old;
        *old = s->next;
        stop_source(m, s);
    }
    source *s = source_new(m, &cfg);
    if (!s) {
        snprintf(err, errcap, "out of memory (the source is saved and starts with spated)");
        return ERR_NOMEM;
    }
    insert_live(m, s);
    log_info("source %s: %s %s into topic %s", cfg.name, old ? "replaced:" : "added:", s->shown,
             cfg.topic);
    return 0;
}

int sources_remove(sources *m, const char *name)
{
    source **pp = find_live(m, name);
    if (!pp) return ERR_NOTFOUND;
    int rc = registry_source_remove(m->reg, name);
    if (rc && rc != ERR_NOTFOUND) return rc;
    source *s = *pp;
    *pp = s->next;
    lease_drop(s);
    stop_source(m, s);
    log_info("source %s: removed", name);
    return 0;
}

static void view(source *s, sources_view_cb cb, void *data)
{
    source_view v = {.name = s->cfg.name,
                     .url = s->shown,
                     .topic = s->cfg.topic,
                     .key_field = s->cfg.key_field,
                     .created_ms = s->cfg.created_ms,
                     .leased = s->leased};
    runs_here(s, v.lease_holder, sizeof v.lease_holder);
    pthread_mutex_lock(&s->mu);
    v.state = s->state;
    v.connected = s->connected;
    memcpy(v.last_error, s->last_error, sizeof v.last_error);
    v.last_error_ms = s->last_error_ms;
    v.received = s->received;
    v.committed = s->committed;
    v.refused = s->refused;
    v.dead_lettered = s->dead_lettered;
    v.publish_failures = s->publish_failures;
    v.lag = s->lag;
    int64_t dropped = (int64_t)(s->dropped_before + s->dropped_now);
    pthread_mutex_unlock(&s->mu);
    v.delivery = "at-least-once";
    if (s->ccfg && s->conn->delivery) v.delivery = s->conn->delivery(s->ccfg);
    /* Only an at-most-once source can lose what its library dropped. */
    v.dropped =
        s->conn && s->conn->dropped && strcmp(v.delivery, "at-most-once") == 0 ? dropped : -1;
    cb(&v, data);
}

void sources_each(sources *m, sources_view_cb cb, void *data)
{
    for (source *s = m->live; s; s = s->next) view(s, cb, data);
}

int sources_get(sources *m, const char *name, sources_view_cb cb, void *data)
{
    source **pp = find_live(m, name);
    if (!pp) return ERR_NOTFOUND;
    view(*pp, cb, data);
    return 0;
}
