/*
 * jsqueue/refresh.c - every second, the cluster's streams: the topics this
 * node shows and their figures, retention limits put in force or lifted
 * (what every trigger has settled leaves the streams in trim.c).
 */
#include "cluster/jsqueue/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

typedef struct refresh_job {
    queue *q;
    uint32_t serial, deletions; /* as of its start */
    int n;
    struct {
        char name[SPATE_TOPIC_NAME_MAX + 1];
        queue_topic_stats stats;
    } * items;
} refresh_job;

/* SPATE_T_a_2eb -> a.b */
static int topic_from_stream(const char *stream, char *out, size_t cap)
{
    if (strncmp(stream, "SPATE_T_", 8) != 0) return -1;
    size_t n = 0;
    for (const char *p = stream + 8; *p && n + 1 < cap; p++) {
        unsigned v;
        if (*p == '_' && sscanf(p + 1, "%2x", &v) == 1 && p[1] && p[2]) {
            out[n++] = (char)v;
            p += 2;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return n ? 0 : -1;
}

static void refresh_work(void *arg)
{
    refresh_job *j = arg;
    jsStreamInfoList *list = NULL;
    /* Read (or made) at once: a part without a mark looks for what
     * JetStream skipped only among messages stored after it. */
    jsqueue__unmarked_since_ns(j->q);
    if (js_Streams(&list, j->q->js, NULL, NULL) != NATS_OK || !list) return;
    j->items = calloc((size_t)list->Count + 1, sizeof *j->items);
    for (int i = 0; j->items && i < list->Count; i++) {
        jsStreamInfo *si = list->List[i];
        if (!si->Config || topic_from_stream(si->Config->Name, j->items[j->n].name,
                                             sizeof j->items[j->n].name) != 0)
            continue;
        queue_topic_stats *st = &j->items[j->n].stats;
        st->published = si->State.LastSeq;
        st->stored = si->State.Msgs;
        st->bytes = si->State.Bytes;
        st->oldest_ms = si->State.Msgs ? si->State.FirstTime / 1000000 : 0;
        jsqueue__parse_retention(si->Config->Description, &st->retention);
        /* Retention in force only while no trigger reads the stream. */
        natsStatus ls = jsqueue__apply_limits(j->q, si, si->State.Consumers > 0);
        if (ls != NATS_OK)
            log_debug("cluster: cannot set the limits of %s: %s", si->Config->Name,
                      natsStatus_GetText(ls));
        j->n++;
    }
    jsStreamInfoList_Destroy(list);
}

static void refresh_done(void *arg)
{
    refresh_job *j = arg;
    queue *q = j->q;
    q->refreshing = 0;
    if (q->closing) {
        free(j->items);
        free(j);
        jsqueue__finish_close(q);
        return;
    }
    int deleted_since = j->deletions != q->deletions;
    for (int i = 0; i < j->n; i++) {
        jtopic *t = jsqueue__topic_of(q, j->items[i].name, 0);
        /* A topic deleted here after the refresh began stays deleted. */
        if (!t && deleted_since) continue;
        if (!t) t = jsqueue__topic_of(q, j->items[i].name, 1);
        if (t) {
            t->listed = j->serial;
            t->created = 1;
            t->ret = j->items[i].stats.retention;
            t->stats = j->items[i].stats;
        }
    }
    /* Streams gone (deleted through another node): their topics too, unless
     * a trigger here reads them or this node made the stream since. */
    /* Marked above (the streams found) and here (the topics a trigger reads):
     * linear in topics and triggers, where a search per topic was quadratic. */
    for (list_node *m = list_first(&q->subs); m != &q->subs; m = m->next)
        list_entry(m, queue_sub, link)->topic->listed = j->serial;
    for (list_node *n = list_first(&q->topics); n != &q->topics; n = n->next) {
        jtopic *t = list_entry(n, jtopic, link);
        if (t->gone || !t->created || t->touched >= j->serial) continue;
        if (t->listed != j->serial) {
            t->created = 0;
            t->gone = 1;
        }
    }
    free(j->items);
    free(j);
}

void jsqueue__on_refresh(uv_timer_t *h)
{
    queue *q = h->data;
    if (q->refreshing || q->closing) return;
    refresh_job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->q = q;
    j->serial = ++q->refresh_serial;
    j->deletions = q->deletions;
    q->refreshing = 1;
    cluster_run(q->c, refresh_work, refresh_done, j);
}
