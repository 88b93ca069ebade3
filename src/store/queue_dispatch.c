/* queue_dispatch.c - the queue interface (queue.h) as calls through the
 * table each implementation's queue and queue_sub begin with. */
#include "store/queue.h"

#define OPS(x) (*(const queue_ops *const *)(const void *)(x))

void queue_publish(queue *q, const char *topic, buf *body, const queue_input *in, size_t n,
                   queue_publish_cb done, void *data)
{
    OPS(q)->publish(q, topic, body, in, n, done, data);
}

queue_lease *queue_lease_next(queue_sub *sub)
{
    return OPS(sub)->lease(sub);
}

void queue_ack(queue_lease *l)
{
    OPS(l->sub)->ack(l);
}

void queue_nack(queue_lease *l, uint32_t delay_ms, const char *error)
{
    OPS(l->sub)->nack(l, delay_ms, error);
}

void queue_release(queue_lease *l)
{
    OPS(l->sub)->release(l);
}

void queue_dead_letter(queue_lease *l, const char *error)
{
    OPS(l->sub)->dead_letter(l, error);
}

int queue_subscribe(queue *q, const char *topic, const queue_sub_config *cfg, queue_done_cb done,
                    void *data)
{
    return OPS(q)->subscribe(q, topic, cfg, done, data);
}

int queue_unsubscribe(queue *q, const char *topic, const char *function, queue_done_cb done,
                      void *data)
{
    return OPS(q)->unsubscribe(q, topic, function, done, data);
}

queue_sub *queue_find_sub(queue *q, const char *topic, const char *function)
{
    return OPS(q)->find_sub(q, topic, function);
}

void queue_each_sub(queue *q, void (*cb)(queue_sub *sub, void *data), void *data)
{
    OPS(q)->each_sub(q, cb, data);
}

const queue_sub_config *queue_sub_get_config(const queue_sub *sub)
{
    return OPS(sub)->sub_config(sub);
}

const char *queue_sub_topic(const queue_sub *sub)
{
    return OPS(sub)->sub_topic(sub);
}

void queue_sub_set_data(queue_sub *sub, void *data)
{
    OPS(sub)->sub_set_data(sub, data);
}

void *queue_sub_data(const queue_sub *sub)
{
    return OPS(sub)->sub_data(sub);
}

void queue_sub_get_stats(const queue_sub *sub, queue_sub_stats *out)
{
    OPS(sub)->sub_stats(sub, out);
}

int queue_topic_get_stats(queue *q, const char *topic, queue_topic_stats *out)
{
    return OPS(q)->topic_stats(q, topic, out);
}

void queue_each_topic(queue *q, void (*cb)(const char *topic, void *data), void *data)
{
    OPS(q)->each_topic(q, cb, data);
}

int queue_topics_after(queue *q, const char *after, int (*cb)(const char *topic, void *data),
                       void *data)
{
    return OPS(q)->topics_after(q, after, cb, data);
}

uint32_t queue_topic_count(queue *q)
{
    return OPS(q)->topic_count(q);
}

void queue_each_sub_of(queue *q, const char *topic, void (*cb)(queue_sub *sub, void *data),
                       void *data)
{
    OPS(q)->each_sub_of(q, topic, cb, data);
}

int queue_read(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_read_cb cb,
               void *data)
{
    return OPS(q)->read(q, topic, after, limit, cb, data);
}

int queue_redrive(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_redrive_cb cb,
                  void *data)
{
    return OPS(q)->redrive(q, topic, after, limit, cb, data);
}

int queue_topic_delete(queue *q, const char *topic, queue_count_cb done, void *data)
{
    return OPS(q)->topic_delete(q, topic, done, data);
}

int queue_topic_purge(queue *q, const char *topic, queue_count_cb done, void *data)
{
    return OPS(q)->topic_purge(q, topic, done, data);
}

int queue_topic_retention(queue *q, const char *topic, const queue_retention *r, queue_done_cb done,
                          void *data)
{
    return OPS(q)->topic_retention(q, topic, r, done, data);
}

void queue_set_events(queue *q, const queue_events *ev)
{
    OPS(q)->set_events(q, ev);
}

void queue_close(queue *q, void (*cb)(void *data), void *data)
{
    OPS(q)->close(q, cb, data);
}

unsigned queue_flags(queue *q)
{
    return OPS(q)->flags;
}

int queue_dedup_each(queue *q, queue_dedup_cb cb, void *data)
{
    return OPS(q)->dedup_each ? OPS(q)->dedup_each(q, cb, data) : 0;
}

void queue_touch(queue_lease *l)
{
    if (OPS(l->sub)->touch) OPS(l->sub)->touch(l);
}
