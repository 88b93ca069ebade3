/*
 * jsqueue/topics.c - a topic's figures, and deleting, purging and setting
 * the retention of its stream.
 */
#include "cluster/jsqueue/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

int jsqueue__topic_stats(queue *q, const char *topic, queue_topic_stats *out)
{
    jtopic *t = jsqueue__topic_of(q, topic, 0);
    if (!t) return ERR_NOTFOUND;
    *out = t->stats;
    out->subscriptions = 0;
    out->acked = t->retired_acked;
    out->dead_lettered = t->retired_dead;
    out->retention = t->ret;
    for (list_node *n = list_first(&q->subs); n != &q->subs; n = n->next) {
        queue_sub *s = list_entry(n, queue_sub, link);
        if (s->topic != t) continue;
        out->subscriptions++;
        out->acked += s->acked;
        out->dead_lettered += s->dead;
    }
    return 0;
}

void jsqueue__each_topic(queue *q, void (*cb)(const char *topic, void *data), void *data)
{
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        jtopic *t = list_entry(n, jtopic, link);
        if (!t->gone) cb(t->name, data);
    }
}

int jsqueue__topics_after(queue *q, const char *after, int (*cb)(const char *topic, void *data),
                          void *data)
{
    list_node *n = list_first(&q->topics);
    if (after) {
        /* A gone topic keeps its place until the queue closes. */
        jtopic *t = strmap_get(&q->by_name, after, strlen(after));
        if (!t) return ERR_NOTFOUND;
        n = t->link.next;
    }
    if (!cb) return 0; /* only the cursor asked about */
    for (; n != &q->topics; n = n->next) {
        jtopic *t = list_entry(n, jtopic, link);
        if (!t->gone && cb(t->name, data)) break;
    }
    return 0;
}

/* Counted when asked: the flags change in several places, and this is
 * asked only when a request would make a topic. */
uint32_t jsqueue__topic_count(const queue *q)
{
    uint32_t n = 0;
    for (const list_node *m = q->topics.next; m != &q->topics; m = m->next)
        n += !list_entry(m, jtopic, link)->gone;
    return n;
}

void jsqueue__each_sub_of(queue *q, const char *topic, void (*cb)(queue_sub *sub, void *data),
                          void *data)
{
    jtopic *t = strmap_get(&q->by_name, topic, strlen(topic));
    if (!t) return;
    for (list_node *n = list_first(&q->subs); n != &q->subs;) {
        queue_sub *s = list_entry(n, queue_sub, link);
        n = n->next;
        if (s->topic == t) cb(s, data);
    }
}

enum admin_what { A_DELETE, A_PURGE, A_RETENTION };

typedef struct admin_job {
    queue *q;
    jtopic *topic;
    enum admin_what what;
    char stream[SPATE_TOPIC_NAME_MAX * 3 + 16];
    char subject[SPATE_TOPIC_NAME_MAX * 3 + 16];
    queue_retention ret;
    int created; /* its stream was there, as far as this node knew */
    uint64_t count;
    int status;
    char err[200];
    queue_count_cb count_cb;
    queue_done_cb done_cb;
    void *data;
} admin_job;

static void admin_work(void *arg)
{
    admin_job *j = arg;
    queue *q = j->q;
    if (!cluster_connected(q->c)) {
        j->status = ERR_DISCONNECTED;
        return;
    }
    natsStatus s = NATS_OK;
    if (j->what == A_RETENTION) s = jsqueue__ensure_stream(q, j->stream, j->subject);
    jsStreamInfo *si = NULL;
    if (s == NATS_OK) s = js_GetStreamInfo(&si, q->js, j->stream, NULL, NULL);
    if (s == NATS_NOT_FOUND) {
        /* A topic only triggered yet, or one another node deleted: nothing stored. */
        j->status = j->created ? ERR_NOTFOUND : 0;
        return;
    }
    if (s == NATS_OK && j->what == A_DELETE) {
        j->count = si->State.Msgs;
        s = js_DeleteStream(q->js, j->stream, NULL, NULL);
    } else if (s == NATS_OK && j->what == A_PURGE) {
        /* Up to the last message as of now: a publish meanwhile stays. */
        jsOptions o;
        jsOptions_Init(&o);
        o.Stream.Purge.Sequence = si->State.LastSeq + 1;
        j->count = si->State.Msgs;
        s = js_PurgeStream(q->js, j->stream, &o, NULL);
    } else if (s == NATS_OK) {
        char description[160];
        snprintf(description, sizeof description, RETENTION_FMT,
                 (unsigned long long)j->ret.max_age_ms, (unsigned long long)j->ret.max_bytes,
                 (unsigned long long)j->ret.max_messages);
        /* The description first (whatever the limits), then the limits it says. */
        const char *before = si->Config->Description;
        si->Config->Description = description;
        jsStreamInfo *up = NULL;
        s = js_UpdateStream(&up, q->js, si->Config, NULL, NULL);
        si->Config->Description = before; /* si's own, freed with it */
        if (s == NATS_OK && up) s = jsqueue__apply_limits(q, up, up->State.Consumers > 0);
        if (up) jsStreamInfo_Destroy(up);
    }
    if (si) jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        j->status = ERR_IO;
        snprintf(j->err, sizeof j->err, "%s", cluster_nats_why(s));
    }
}

static void admin_done(void *arg)
{
    admin_job *j = arg;
    jtopic *t = j->topic;
    if (j->err[0]) log_warn("cluster: cannot change topic %s: %s", t->name, j->err);
    if (j->what == A_DELETE && j->status == 0) {
        t->created = 0;
    } else if (j->what == A_DELETE && j->status != ERR_NOTFOUND && t->gone) {
        t->gone = 0; /* still there */
    }
    if (j->what != A_DELETE && j->status == 0) {
        t->created = 1; /* its stream is there (an unlisted one shows now) */
        t->gone = 0;
    }
    if (j->count_cb) j->count_cb(j->data, j->status, j->count);
    if (j->done_cb) j->done_cb(j->data, j->status);
    queue *q = j->q;
    free(j);
    jsqueue__job_done(q);
}

static admin_job *admin_new(queue *q, jtopic *t, enum admin_what what)
{
    if (q->closing) return NULL;
    admin_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->q = q;
    j->topic = t;
    j->what = what;
    memcpy(j->stream, t->stream, sizeof j->stream);
    memcpy(j->subject, t->subject, sizeof j->subject);
    j->created = t->created;
    return j;
}

/* The topic to change. One published to through another node a moment ago
 * may not be listed here yet (the list refreshes every second): then its
 * stream decides, and it stays hidden unless the change finds it. */
static jtopic *admin_topic(queue *q, const char *topic, int *unlisted)
{
    jtopic *t = jsqueue__topic_of(q, topic, 0);
    *unlisted = !t;
    if (t) return t;
    if ((t = jsqueue__topic_of(q, topic, 1))) t->gone = 1;
    return t;
}

int jsqueue__topic_delete(queue *q, const char *topic, queue_count_cb done, void *data)
{
    int unlisted;
    jtopic *t = admin_topic(q, topic, &unlisted);
    if (!t) return ERR_NOMEM;
    for (list_node *n = list_first(&q->subs); n != &q->subs; n = n->next)
        if (list_entry(n, queue_sub, link)->topic == t) return ERR_BUSY;
    admin_job *j = admin_new(q, t, A_DELETE);
    if (!j) return q->closing ? ERR_CLOSED : ERR_NOMEM;
    j->created |= unlisted; /* no stream: it does not exist */
    j->count_cb = done;
    j->data = data;
    t->gone = 1;
    q->deletions++;
    jsqueue__run_job(q, admin_work, admin_done, j);
    return 0;
}

int jsqueue__topic_purge(queue *q, const char *topic, queue_count_cb done, void *data)
{
    int unlisted;
    jtopic *t = admin_topic(q, topic, &unlisted);
    if (!t) return ERR_NOMEM;
    admin_job *j = admin_new(q, t, A_PURGE);
    if (!j) return q->closing ? ERR_CLOSED : ERR_NOMEM;
    j->created |= unlisted;
    j->count_cb = done;
    j->data = data;
    jsqueue__run_job(q, admin_work, admin_done, j);
    return 0;
}

int jsqueue__topic_retention(queue *q, const char *topic, const queue_retention *r,
                             queue_done_cb done, void *data)
{
    jtopic *t = jsqueue__topic_of(q, topic, 1);
    if (!t) return ERR_NOMEM;
    admin_job *j = admin_new(q, t, A_RETENTION);
    if (!j) return q->closing ? ERR_CLOSED : ERR_NOMEM;
    j->ret = *r;
    t->ret = *r;
    t->touched = q->refresh_serial;
    j->done_cb = done;
    j->data = data;
    jsqueue__run_job(q, admin_work, admin_done, j);
    return 0;
}
