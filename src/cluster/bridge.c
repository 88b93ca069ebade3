#include "cluster/bridge.h"

#include <pthread.h>
#include <stdlib.h>

#include "common/err.h"
#include "common/list.h"

typedef struct item {
    list_node link;
    bridge_fn work; /* a job not run yet, else NULL */
    bridge_fn call; /* what the loop runs: a job's done, or a posted call */
    bridge_fn drop;
    void *arg;
} item;

struct bridge {
    uv_loop_t *loop;
    uv_async_t async;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    list_node jobs;  /* to the worker */
    list_node calls; /* to the loop */
    pthread_t worker;
    _Atomic int stopping;
};

static void to_loop(bridge *b, item *it)
{
    pthread_mutex_lock(&b->lock);
    list_push_back(&b->calls, &it->link);
    pthread_mutex_unlock(&b->lock);
    uv_async_send(&b->async);
}

static void *worker_main(void *arg)
{
    bridge *b = arg;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (list_empty(&b->jobs) && !b->stopping) pthread_cond_wait(&b->wake, &b->lock);
        if (b->stopping) break;
        item *it = list_entry(list_first(&b->jobs), item, link);
        list_remove(&it->link);
        pthread_mutex_unlock(&b->lock);
        it->work(it->arg);
        it->work = NULL;
        to_loop(b, it);
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* The loop's side: what the worker and other threads handed over. */
static void on_async(uv_async_t *a)
{
    bridge *b = a->data;
    list_node batch;
    list_init(&batch);
    pthread_mutex_lock(&b->lock);
    while (!list_empty(&b->calls)) {
        list_node *n = list_first(&b->calls);
        list_remove(n);
        list_push_back(&batch, n);
    }
    pthread_mutex_unlock(&b->lock);
    while (!list_empty(&batch)) {
        item *it = list_entry(list_first(&batch), item, link);
        list_remove(&it->link);
        it->call(it->arg);
        free(it);
    }
}

int bridge_open(uv_loop_t *loop, bridge **out)
{
    bridge *b = calloc(1, sizeof *b);
    if (!b) return ERR_NOMEM;
    b->loop = loop;
    list_init(&b->jobs);
    list_init(&b->calls);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->wake, NULL);
    uv_async_init(loop, &b->async, on_async);
    b->async.data = b;
    if (pthread_create(&b->worker, NULL, worker_main, b) != 0) {
        uv_close((uv_handle_t *)&b->async, NULL);
        return ERR_IO; /* b leaks with its handle: spated exits */
    }
    *out = b;
    return 0;
}

void bridge_run(bridge *b, bridge_fn work, bridge_fn done, bridge_fn drop, void *arg)
{
    item *it = calloc(1, sizeof *it);
    if (!it) { /* out of memory: run it here rather than lose it */
        work(arg);
        done(arg);
        return;
    }
    *it = (item){.work = work, .call = done, .drop = drop, .arg = arg};
    pthread_mutex_lock(&b->lock);
    list_push_back(&b->jobs, &it->link);
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(&b->lock);
}

void bridge_post(bridge *b, bridge_fn call, bridge_fn drop, void *arg)
{
    item *it = calloc(1, sizeof *it);
    if (!it) {
        if (drop) drop(arg);
        return;
    }
    *it = (item){.call = call, .drop = drop, .arg = arg};
    to_loop(b, it);
}

int bridge_stopping(const bridge *b)
{
    return b->stopping;
}

static void drop_all(list_node *list)
{
    while (!list_empty(list)) {
        item *it = list_entry(list_first(list), item, link);
        list_remove(&it->link);
        if (it->drop) it->drop(it->arg);
        free(it);
    }
}

void bridge_stop(bridge *b)
{
    if (!b) return;
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->worker, NULL);
    drop_all(&b->jobs); /* not started */
}

static void on_closed(uv_handle_t *h)
{
    bridge *b = h->data;
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->wake);
    free(b);
}

void bridge_close(bridge *b)
{
    if (!b) return;
    drop_all(&b->calls);
    uv_close((uv_handle_t *)&b->async, on_closed);
}
