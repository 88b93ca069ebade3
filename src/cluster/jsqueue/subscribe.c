/*
 * jsqueue/subscribe.c - subscriptions: the durable consumers of a trigger
 * (one, or one per key part when ordered), their pullers, and a removed
 * subscription's lifetime.
 */
#include "cluster/jsqueue/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"

typedef struct sub_job {
    queue_sub *s;
    int remove;
    _Atomic int foreign; /* a consumer of its name is another trigger's (make_consumer) */
    uint32_t ack_wait_ms;
    uint64_t give_up_ns; /* monotonic: the set-up's attempts end here */
    queue_done_cb done;
    void *data;
    int status;
    char err[200];
} sub_job;

/* A consumer's creation is asked again after a time-out (2 s each) and
 * after "JetStream system temporarily unavailable" (its meta leader being
 * elected after a nats-server went: make check saw an ordered trigger's 65
 * consumers meet it, the latter after a wait), until the trigger's set-up
 * has taken SPATE_JS_CONSUMER_MAKE_FOR_MS. */
#define CONSUMER_UNAVAILABLE_WAIT_MS 500

/* Worker thread: whether the stream has a consumer named as pt with another
 * filter: another trigger's. A function's name may hold '_', so function
 * x's ordered trigger (F_x_u, F_x_kNN) and function x_u's or x_k07's plain
 * one (F_x_u, F_x_k07) name the same consumer; made or changed for the
 * second, the first's messages went to either, or to neither. */
static int foreign_consumer(queue *q, const char *stream, const struct part *pt)
{
    jsConsumerInfo *ci = NULL;
    if (js_GetConsumerInfo(&ci, q->js, stream, pt->durable, NULL, NULL) != NATS_OK) return 0;
    const char *filter = ci->Config ? ci->Config->FilterSubject : NULL;
    int foreign = !filter || strcmp(filter, pt->filter) != 0;
    jsConsumerInfo_Destroy(ci);
    return foreign;
}

/* Whether a consumer's creation or deletion that got st (and code) is
 * asked again: no answer, or no meta leader, within the job's time. */
static int ask_again(const sub_job *j, natsStatus st, jsErrCode code)
{
    return (st == NATS_TIMEOUT || code == JSClusterNotAvailErr) && clock_mono_ns() < j->give_up_ns;
}

/* One consumer of a subscription, created (or changed) and bound. */
static natsStatus make_consumer(queue_sub *s, struct part *pt, sub_job *j)
{
    queue *q = s->q;
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = pt->durable;
    cc.FilterSubject = pt->filter;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll; /* from the oldest stored message */
    cc.AckWait = (int64_t)j->ack_wait_ms * 1000000;
    cc.MaxAckPending = pt->one_at_a_time ? 1 : SPATE_JS_ACK_PENDING_MAX;
    /* JetStream's API answers within jsOptions.Wait (2 s, cluster.c) or
     * not at all: while a stream's leader is elected, or on a loaded
     * machine, one call may go unanswered. Asking again here costs the
     * caller seconds; failing costs it the trigger (a 503 seen under load
     * in a three-node test, and three time-outs in a row under make check's
     * load). Add and update are idempotent: a consumer a timed-out call made
     * is found and updated by the next attempt. */
    natsStatus st = NATS_TIMEOUT;
    jsErrCode code = 0;
    for (int first = 1; first || ask_again(j, st, code); first = 0) {
        jsConsumerInfo *ci = NULL;
        if (code == JSClusterNotAvailErr) nats_Sleep(CONSUMER_UNAVAILABLE_WAIT_MS);
        code = 0;
        /* Asked first: JetStream takes an add of a consumer that exists as
         * a change of its configuration, filter included. */
        if (foreign_consumer(q, s->topic->stream, pt)) {
            j->foreign = 1;
            return NATS_ERR;
        }
        st = js_AddConsumer(&ci, q->js, s->topic->stream, &cc, NULL, &code);
        if (st != NATS_OK && st != NATS_TIMEOUT && code != JSClusterNotAvailErr) {
            code = 0; /* it exists: a new configuration */
            st = js_UpdateConsumer(&ci, q->js, s->topic->stream, &cc, NULL, &code);
        }
        if (ci) jsConsumerInfo_Destroy(ci);
    }
    if (st == NATS_OK && !pt->pull) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = s->topic->stream;
        so.Consumer = pt->durable;
        st = js_PullSubscribe(&pt->pull, q->js, pt->filter, pt->durable, NULL, &so, NULL);
    }
    return st;
}

/* Worker thread: a consumer deleted, asked again while JetStream does not
 * answer (each node deletes a removed trigger's consumers at once, 65 of an
 * ordered one, and a 2 s wait ran out now and then: the removal failed
 * whole, the trigger gone on the node asked and kept by the others, its
 * consumers left keeping the topic's messages: test_an_ordered_trigger_
 * removed_again_and_again_is_gone_everywhere), until the job has taken
 * SPATE_JS_CONSUMER_MAKE_FOR_MS. One a time-out deleted is not found the
 * next time: done. */
static natsStatus delete_consumer(queue *q, const char *stream, const char *durable,
                                  const sub_job *j)
{
    natsStatus st = NATS_TIMEOUT;
    jsErrCode code = 0;
    for (int first = 1; first || ask_again(j, st, code); first = 0) {
        if (code == JSClusterNotAvailErr) nats_Sleep(CONSUMER_UNAVAILABLE_WAIT_MS);
        code = 0;
        st = js_DeleteConsumer(q->js, stream, durable, NULL, &code);
    }
    return st;
}

typedef struct maker {
    sub_job *j;
    int first;
    natsStatus st;
    char err[160]; /* why, when st is not NATS_OK: nats.c's last error is its thread's */
} maker;

static void *maker_main(void *arg)
{
    maker *m = arg;
    queue_sub *s = m->j->s;
    m->st = NATS_OK;
    int i = m->first;
    for (; i < s->nparts && m->st == NATS_OK; i += SPATE_JS_CONSUMER_MAKERS)
        m->st = make_consumer(s, &s->parts[i], m->j);
    if (m->st != NATS_OK)
        snprintf(m->err, sizeof m->err, "consumer %s: %s",
                 s->parts[i - SPATE_JS_CONSUMER_MAKERS].durable, cluster_nats_why(m->st));
    return NULL;
}

static void subscribe_work(void *arg)
{
    sub_job *j = arg;
    queue_sub *s = j->s;
    queue *q = s->q;
    natsStatus st;
    /* The makers' outcomes: why, below, points into one of them (declared
     * in the branch, it was read after its scope ended: ASan's
     * stack-use-after-scope at a consumer that could not be made). */
    maker m[SPATE_JS_CONSUMER_MAKERS];
    const char *why = NULL; /* a consumer maker's */
    j->give_up_ns = clock_mono_ns() + (uint64_t)SPATE_JS_CONSUMER_MAKE_FOR_MS * 1000000;
    if (j->remove) {
        st = NATS_OK;
        for (int i = 0; i < s->nparts && st == NATS_OK; i++) {
            /* Another trigger's (this one was refused it): left alone. */
            if (foreign_consumer(q, s->topic->stream, &s->parts[i])) continue;
            natsStatus d = delete_consumer(q, s->topic->stream, s->parts[i].durable, j);
            /* Refused past its tries: JetStream is down, and each of the
             * rest would hold this thread (every publish's) as long. */
            if (d != NATS_OK && d != NATS_NOT_FOUND) st = d;
        }
    } else {
        st = jsqueue__ensure_stream(q, s->topic->stream, s->topic->subject);
        if (st == NATS_OK) st = jsqueue__lift_limits(q, s->topic->stream);
        pthread_t th[SPATE_JS_CONSUMER_MAKERS];
        int n = 0;
        for (; st == NATS_OK && n < SPATE_JS_CONSUMER_MAKERS && n < s->nparts; n++) {
            m[n] = (maker){.j = j, .first = n};
            if (pthread_create(&th[n], NULL, maker_main, &m[n]) != 0) {
                maker_main(&m[n]); /* no thread: here, then */
                th[n] = 0;
            }
        }
        for (int i = 0; i < n; i++) {
            if (th[i]) pthread_join(th[i], NULL);
            if (m[i].st != NATS_OK) {
                st = m[i].st;
                why = m[i].err;
            }
        }
    }
    j->status = st == NATS_OK ? 0 : j->foreign ? ERR_EXISTS : ERR_IO;
    if (j->foreign)
        snprintf(j->err, sizeof j->err,
                 "another trigger on this topic has a consumer of the same name: an ordered "
                 "trigger of function X and a trigger of function X_u or X_kNN cannot read one "
                 "topic; name one of the functions otherwise");
    else if (st != NATS_OK && why)
        snprintf(j->err, sizeof j->err, "%s", why);
    else if (st != NATS_OK)
        snprintf(j->err, sizeof j->err, "%s", cluster_nats_why(st));
}

/* Fetched and not leased: back to the other nodes now, not after AckWait. */
void jsqueue__give_back_ready(queue_sub *s)
{
    while (!list_empty(&s->ready)) {
        jlease *jl = list_entry(list_first(&s->ready), jlease, link);
        list_remove(&jl->link);
        natsMsg_Nak(jl->nm, NULL);
        natsMsg_Destroy(jl->nm);
        free(jl);
    }
}

void jsqueue__stop_puller(queue_sub *s)
{
    if (!s->started) return;
    pthread_mutex_lock(&s->wake_lock);
    s->stop = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->wake_lock);
    for (int i = 0; i < s->nparts; i++)
        if (s->parts[i].running) {
            pthread_join(s->parts[i].thread, NULL);
            s->parts[i].running = 0;
        }
    s->started = 0;
    /* The pull subscriptions stay until the subscription goes
     * (jsqueue__sub_maybe_free): a lease still out acks or naks through its
     * message's subscription, which nats.c would have freed. */
}

static void subscribe_done(void *arg)
{
    sub_job *j = arg;
    queue_sub *s = j->s;
    if (j->status)
        log_warn("cluster: cannot %s trigger %s -> %s: %s", j->remove ? "remove" : "set up",
                 s->topic->name, s->cfg.function, j->err);
    if (!j->remove && j->status == 0 && !s->started && !s->removed) {
        s->stop = 0;
        for (int i = 0; i < s->nparts; i++) {
            s->parts[i].sub = s;
            if (pthread_create(&s->parts[i].thread, NULL, jsqueue__puller_main, &s->parts[i]) ==
                0) {
                s->parts[i].running = 1;
                s->started = 1;
            }
        }
        s->topic->created = 1;
        s->topic->touched = s->q->refresh_serial;
    }
    if (j->done) j->done(j->data, j->status);
    s->jobs--;
    free(j);
    jsqueue__sub_maybe_free(s);
}

static queue_sub *find(queue *q, const char *topic, const char *function)
{
    for (list_node *n = list_first(&q->subs); n != &q->subs; n = n->next) {
        queue_sub *s = list_entry(n, queue_sub, link);
        if (strcmp(s->topic->name, topic) == 0 && strcmp(s->cfg.function, function) == 0) return s;
    }
    return NULL;
}

/* A plain trigger reads the whole topic through one consumer; an ordered one
 * has a consumer per key part, one at a time each, and one for unkeyed
 * messages. */
static void set_parts(queue_sub *s, const queue_sub_config *cfg)
{
    const char *base = s->topic->subject;
    if (!cfg->ordered) {
        s->nparts = 1;
        snprintf(s->parts[0].durable, sizeof s->parts[0].durable, "F_%s", cfg->function);
        snprintf(s->parts[0].filter, sizeof s->parts[0].filter, "%s.>", base);
        return;
    }
    s->nparts = PARTS_MAX;
    for (int i = 0; i < SPATE_JS_KEY_PARTS; i++) {
        snprintf(s->parts[i].durable, sizeof s->parts[i].durable, "F_%s_k%02d", cfg->function, i);
        snprintf(s->parts[i].filter, sizeof s->parts[i].filter, "%s.k%02d", base, i);
        s->parts[i].one_at_a_time = 1;
    }
    struct part *u = &s->parts[SPATE_JS_KEY_PARTS];
    snprintf(u->durable, sizeof u->durable, "F_%s_u", cfg->function);
    snprintf(u->filter, sizeof u->filter, "%s.u", base);
}

int jsqueue__subscribe(queue *q, const char *topic, const queue_sub_config *cfg, queue_done_cb done,
                       void *data)
{
    queue_sub *s = find(q, topic, cfg->function);
    sub_job *j = calloc(1, sizeof *j);
    if (!j) return ERR_NOMEM;
    if (!s) {
        s = calloc(1, sizeof *s);
        jtopic *t = s ? jsqueue__topic_of(q, topic, 1) : NULL;
        if (!t) {
            free(s);
            free(j);
            return ERR_NOMEM;
        }
        s->ops = &jsqueue__ops;
        s->q = q;
        s->topic = t;
        pthread_mutex_init(&s->wake_lock, NULL);
        pthread_cond_init(&s->wake, NULL);
        list_init(&s->ready);
        set_parts(s, cfg);
        list_push_back(&q->subs, &s->link);
    } else if (s->cfg.ordered != cfg->ordered) {
        free(j); /* its consumers differ: a new trigger, not a change */
        return ERR_BUSY;
    }
    s->cfg = *cfg;
    j->s = s;
    j->ack_wait_ms =
        (cfg->ack_wait_ms ? cfg->ack_wait_ms : SPATE_TIMEOUT_DEFAULT_MS) + SPATE_JS_ACK_MARGIN_MS;
    j->done = done;
    j->data = data;
    s->jobs++;
    cluster_run(q->c, subscribe_work, subscribe_done, j);
    return 0;
}

int jsqueue__unsubscribe(queue *q, const char *topic, const char *function, queue_done_cb done,
                         void *data)
{
    queue_sub *s = find(q, topic, function);
    if (!s) return ERR_NOTFOUND;
    sub_job *j = calloc(1, sizeof *j);
    if (!j) return ERR_NOMEM;
    list_remove(&s->link);
    s->removed = 1;
    q->zombies++;
    jsqueue__stop_puller(s);
    jsqueue__give_back_ready(s);
    /* Its counters stay the topic's. */
    s->topic->retired_acked += s->acked;
    s->topic->retired_dead += s->dead;
    j->s = s;
    j->remove = 1;
    j->done = done;
    j->data = data;
    s->jobs++;
    cluster_run(q->c, subscribe_work, subscribe_done, j);
    return 0;
}

queue_sub *jsqueue__find_sub(queue *q, const char *topic, const char *function)
{
    return find(q, topic, function);
}

void jsqueue__each_sub(queue *q, void (*cb)(queue_sub *sub, void *data), void *data)
{
    for (list_node *n = list_first(&q->subs); n != &q->subs;) {
        queue_sub *s = list_entry(n, queue_sub, link);
        n = n->next;
        cb(s, data);
    }
}

const queue_sub_config *jsqueue__sub_config(const queue_sub *s)
{
    return &s->cfg;
}

const char *jsqueue__sub_topic(const queue_sub *s)
{
    return s->topic->name;
}

void jsqueue__sub_set_data(queue_sub *s, void *data)
{
    s->user = data;
}

void *jsqueue__sub_data(const queue_sub *s)
{
    return s->user;
}

void jsqueue__sub_stats(const queue_sub *s, queue_sub_stats *out)
{
    *out = s->stats;
    out->acked = s->acked;
    out->dead_lettered = s->dead;
}

/* A removed subscription goes once nothing refers to it: no lease out, no
 * fetch on its way to the loop, no job on the worker thread. */
void jsqueue__sub_maybe_free(queue_sub *s)
{
    if (!s->removed || s->started || s->leases || s->posts || s->jobs) return;
    queue *q = s->q;
    for (int i = 0; i < s->nparts; i++) natsSubscription_Destroy(s->parts[i].pull);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->wake_lock);
    free(s);
    q->zombies--;
    if (q->closing) jsqueue__finish_close(q);
}
