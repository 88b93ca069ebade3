/* Unit tests of cluster/bridge.c: work runs on the worker thread in order,
 * done and posted calls on the loop, and a stop drops (never runs) what it
 * leaves behind. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "cluster/bridge.h"
#include "test.h"

static pthread_t loop_thread;
static uv_loop_t *loop;

typedef struct job {
    int seq;
    int worked_on_loop; /* work ran on the loop's thread: wrong */
    int done_off_loop;  /* done ran elsewhere: wrong */
    int done, dropped;
} job;

static int order[16], norder;
static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;

static void work(void *arg)
{
    job *j = arg;
    j->worked_on_loop = pthread_equal(pthread_self(), loop_thread);
    pthread_mutex_lock(&order_lock);
    if (norder < 16) order[norder++] = j->seq;
    pthread_mutex_unlock(&order_lock);
}

static void done(void *arg)
{
    job *j = arg;
    j->done_off_loop = !pthread_equal(pthread_self(), loop_thread);
    j->done++;
}

static void dropped(void *arg)
{
    ((job *)arg)->dropped++;
}

static void run_until(int *flag, int want)
{
    for (int i = 0; i < 2000 && *flag < want; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static void work_on_the_thread_done_on_the_loop(void)
{
    bridge *b = NULL;
    CHECK_INT(bridge_open(loop, &b), 0);
    job jobs[8] = {{0}};
    for (int i = 0; i < 8; i++) {
        jobs[i].seq = i;
        bridge_run(b, work, done, dropped, &jobs[i]);
    }
    run_until(&jobs[7].done, 1);
    for (int i = 0; i < 8; i++) {
        CHECK_INT(jobs[i].done, 1);
        CHECK_INT(jobs[i].dropped, 0);
        CHECK_INT(jobs[i].worked_on_loop, 0);
        CHECK_INT(jobs[i].done_off_loop, 0);
        CHECK_INT(order[i], i); /* in the order given */
    }
    CHECK_INT(bridge_stopping(b), 0);
    bridge_stop(b);
    CHECK_INT(bridge_stopping(b), 1);
    bridge_close(b);
    uv_run(loop, UV_RUN_NOWAIT);
}

typedef struct poster {
    bridge *b;
    job *j;
} poster;

static void *post_from_a_thread(void *arg)
{
    poster *p = arg;
    bridge_post(p->b, done, dropped, p->j);
    return NULL;
}

static void posts_reach_the_loop(void)
{
    bridge *b = NULL;
    CHECK_INT(bridge_open(loop, &b), 0);
    job j = {0};
    poster p = {b, &j};
    pthread_t t;
    pthread_create(&t, NULL, post_from_a_thread, &p);
    pthread_join(t, NULL);
    run_until(&j.done, 1);
    CHECK_INT(j.done, 1);
    CHECK_INT(j.done_off_loop, 0);
    bridge_stop(b);
    bridge_close(b);
    uv_run(loop, UV_RUN_NOWAIT);
}

static int blocker_release;

static void block(void *arg)
{
    while (!__atomic_load_n(&blocker_release, __ATOMIC_SEQ_CST)) usleep(1000);
}

static void *release_soon(void *arg)
{
    usleep(50 * 1000);
    __atomic_store_n(&blocker_release, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* What a stop leaves — jobs not started, dones and posts not delivered —
 * goes to drop, and nothing of it runs. */
static void a_stop_drops_what_is_left(void)
{
    bridge *b = NULL;
    CHECK_INT(bridge_open(loop, &b), 0);
    job running = {0}, waiting = {0}, posted = {0};
    bridge_run(b, block, done, dropped, &running);
    bridge_run(b, work, done, dropped, &waiting);
    bridge_post(b, done, dropped, &posted);
    pthread_t t;
    pthread_create(&t, NULL, release_soon, NULL);
    bridge_stop(b); /* the running job finishes; the waiting one never starts */
    pthread_join(t, NULL);
    bridge_close(b); /* the loop never ran: the done and the post are dropped */
    CHECK_INT(running.done, 0);
    CHECK_INT(running.dropped, 1);
    CHECK_INT(waiting.done, 0);
    CHECK_INT(waiting.dropped, 1);
    CHECK_INT(posted.done, 0);
    CHECK_INT(posted.dropped, 1);
    uv_run(loop, UV_RUN_NOWAIT);
}

int main(void)
{
    loop = uv_default_loop();
    loop_thread = pthread_self();
    RUN(work_on_the_thread_done_on_the_loop);
    RUN(posts_reach_the_loop);
    RUN(a_stop_drops_what_is_left);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(loop), 0);
    return TEST_RESULT();
}
