/*
 * jsqueue/open.c - the queue of a cluster opened and closed, and the table
 * through which store/queue.h reaches the other files of cluster/jsqueue/.
 */
#include "cluster/jsqueue/internal.h"

#include <stdlib.h>

#include "common/err.h"
#include "common/log.h"

void jsqueue__set_events(queue *q, const queue_events *ev)
{
    q->ev = ev ? *ev : (queue_events){0};
}

static void on_refresh_closed(uv_handle_t *h)
{
    queue *q = h->data;
    void (*cb)(void *) = q->close_cb;
    void *data = q->close_data;
    while (!list_empty(&q->topics)) {
        jtopic *t = list_entry(list_first(&q->topics), jtopic, link);
        list_remove(&t->link);
        free(t);
    }
    strmap_free(&q->by_name);
    free(q);
    if (cb) cb(data);
}

void jsqueue__finish_close(queue *q)
{
    /* refresh_done and the last jsqueue__sub_maybe_free come back here. */
    if (q->refreshing || q->zombies || q->jobs_out || q->closed) return;
    q->closed = 1;
    uv_close((uv_handle_t *)&q->refresh, on_refresh_closed);
}

void jsqueue__run_job(queue *q, cluster_fn work, cluster_fn done, void *job)
{
    q->jobs_out++;
    cluster_run(q->c, work, done, job);
}

void jsqueue__job_done(queue *q)
{
    q->jobs_out--;
    if (q->closing) jsqueue__finish_close(q);
}

void jsqueue__close(queue *q, void (*cb)(void *data), void *data)
{
    q->closing = 1;
    q->close_cb = cb;
    q->close_data = data;
    uv_timer_stop(&q->refresh);
    jsqueue__trim_stop(q);
    jsqueue__confirm_stop(q);
    for (list_node *n = list_first(&q->subs); n != &q->subs; n = n->next) {
        queue_sub *s = list_entry(n, queue_sub, link);
        jsqueue__stop_puller(s);
        jsqueue__give_back_ready(s);
    }
    while (!list_empty(&q->subs)) {
        queue_sub *s = list_entry(list_first(&q->subs), queue_sub, link);
        list_remove(&s->link);
        s->removed = 1;
        q->zombies++;
        jsqueue__sub_maybe_free(s);
    }
    jsqueue__finish_close(q);
}

const queue_ops jsqueue__ops = {
    .publish = jsqueue__publish,
    .lease = jsqueue__lease,
    .ack = jsqueue__ack,
    .nack = jsqueue__nack,
    .release = jsqueue__release,
    .touch = jsqueue__touch,
    .dead_letter = jsqueue__dead_letter,
    .subscribe = jsqueue__subscribe,
    .unsubscribe = jsqueue__unsubscribe,
    .find_sub = jsqueue__find_sub,
    .each_sub = jsqueue__each_sub,
    .sub_config = jsqueue__sub_config,
    .sub_topic = jsqueue__sub_topic,
    .sub_set_data = jsqueue__sub_set_data,
    .sub_data = jsqueue__sub_data,
    .sub_stats = jsqueue__sub_stats,
    .topic_stats = jsqueue__topic_stats,
    .each_topic = jsqueue__each_topic,
    .topics_after = jsqueue__topics_after,
    .topic_count = jsqueue__topic_count,
    .each_sub_of = jsqueue__each_sub_of,
    .read = jsqueue__read,
    .redrive = jsqueue__redrive,
    .topic_delete = jsqueue__topic_delete,
    .topic_purge = jsqueue__topic_purge,
    .topic_retention = jsqueue__topic_retention,
    .set_events = jsqueue__set_events,
    .close = jsqueue__close,
    .flags = QUEUE_SHARED | QUEUE_DEDUP,
};

int jsqueue_open(uv_loop_t *loop, cluster *c, const queue_events *ev, queue **out)
{
    queue *q = calloc(1, sizeof *q);
    if (!q) return ERR_NOMEM;
    q->ops = &jsqueue__ops;
    q->loop = loop;
    q->c = c;
    q->js = cluster_js(c);
    q->replicas = cluster_replicas(c);
    q->ev = *ev;
    list_init(&q->topics);
    strmap_init(&q->by_name);
    list_init(&q->subs);
    uv_timer_init(loop, &q->refresh);
    q->refresh.data = q;
    uv_timer_start(&q->refresh, jsqueue__on_refresh, 0, SPATE_JS_STATS_MS);
    if (jsqueue__confirm_start(q) != 0)
        log_warn("cluster: acks are not confirmed (one lost to a nats-server that goes runs its "
                 "message again)");
    if (jsqueue__trim_start(q) != 0)
        log_warn("cluster: cannot start the trimmer thread: settled messages stay in the streams");
    *out = q;
    return 0;
}
