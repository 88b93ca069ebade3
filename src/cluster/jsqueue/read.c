/*
 * jsqueue/read.c - reading a topic's stored messages and redriving dead
 * letters to their source topics, on the worker thread (as the streams'
 * leaders have them).
 */
#include "cluster/jsqueue/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"

typedef struct read_job {
    queue *q;
    char stream[SPATE_TOPIC_NAME_MAX * 3 + 16];
    char all[SPATE_TOPIC_NAME_MAX * 3 + 32]; /* every subject of the topic */
    uint64_t after;
    uint32_t limit;
    int redrive;
    int known; /* listed here: a trigger's topic exists before its stream */
    natsMsg *nm[SPATE_JS_READ_MAX];
    queue_msg m[SPATE_JS_READ_MAX];
    queue_attrs attrs[SPATE_JS_READ_MAX];
    size_t n;
    uint64_t moved;
    int status;
    queue_read_cb cb;
    queue_redrive_cb rcb;
    void *data;
} read_job;

static const char *header(natsMsg *m, const char *name)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, name, &v) == NATS_OK ? v : NULL;
}

/* Worker thread: the stored messages after j->after, in order, as the
 * stream's leader has them (next message by subject from a sequence:
 * deleted ones, such as redriven dead letters, are skipped by JetStream),
 * then each read by its sequence. Not direct gets: any replica answers
 * those, and one behind (a nats-server back from a partition) left out
 * dead letters stored minutes before — the cluster nemesis's checker saw
 * acknowledged messages "lost" and deliberate failures missing that every
 * replica had. Two requests a message; reads are not a hot path. */
static natsStatus read_stored(read_job *j)
{
    uint64_t seq = j->after + 1;
    while (j->n < j->limit) {
        uint64_t found = 0;
        natsStatus s = jsqueue__next_of_subject(j->q, j->stream, j->all, seq, &found);
        if (s != NATS_OK) return s;
        if (!found) break; /* the end */
        natsMsg *nm = NULL;
        s = js_GetMsg(&nm, j->q->js, j->stream, found, NULL, NULL);
        if (s == NATS_NOT_FOUND) { /* deleted meanwhile (redriven, trimmed) */
            seq = found + 1;
            continue;
        }
        if (s != NATS_OK) return s;
        queue_msg *m = &j->m[j->n];
        j->nm[j->n++] = nm;
        m->seq = natsMsg_GetSequence(nm);
        m->data = natsMsg_GetData(nm);
        m->len = (uint32_t)natsMsg_GetDataLength(nm);
        m->key = header(nm, "Spate-Key");
        m->key_len = m->key ? (uint32_t)strlen(m->key) : 0;
        const char *v = header(nm, "Spate-Published");
        m->published_ms = v ? strtoll(v, NULL, 10) : natsMsg_GetTime(nm) / 1000000;
        m->source = header(nm, "Spate-Source");
        m->error = header(nm, "Spate-Error");
        v = header(nm, "Spate-Attempts");
        m->attempts = v ? (uint32_t)strtoul(v, NULL, 10) : 0;
        m->attrs = jsqueue__msg_attrs(nm, &j->attrs[j->n - 1]);
        if (m->seq < seq) return NATS_ERR; /* never: it would loop */
        seq = m->seq + 1;
    }
    return NATS_OK;
}

/* Worker thread: dead letters back to their source topics as new messages
 * (attempts start again), then deleted from the dead-letter stream. A node
 * lost in between leaves them in both: redriven twice, never lost. */
static natsStatus redrive_stored(read_job *j)
{
    char when[24];
    snprintf(when, sizeof when, "%lld", (long long)clock_now_ms());
    char last[SPATE_TOPIC_NAME_MAX * 3 + 16] = "";
    natsStatus s = NATS_OK;
    cluster_acks acks;
    cluster_acks_begin(j->q->c, &acks);
    for (size_t i = 0; s == NATS_OK && i < j->n; i++) {
        const queue_msg *m = &j->m[i];
        if (!m->source || !*m->source) continue; /* not a dead letter */
        char stream[sizeof last], base[SPATE_TOPIC_NAME_MAX * 3 + 16];
        jsqueue__stream_name(m->source, stream, sizeof stream);
        snprintf(base, sizeof base, "spate.t.%s", stream + 8);
        if (strcmp(stream, last) != 0) {
            s = jsqueue__ensure_stream(j->q, stream, base);
            snprintf(last, sizeof last, "%s", stream);
        }
        queue_input in = {.key = m->key,
                          .key_len = m->key_len,
                          .data = m->data,
                          .len = m->len,
                          .attrs = m->attrs};
        natsMsg *out = NULL;
        if (s == NATS_OK) s = jsqueue__topic_msg(&out, base, &in, when);
        if (s == NATS_OK) s = jsqueue__publish_async(j->q, &out);
        if (out) natsMsg_Destroy(out);
    }
    char err[200] = "";
    natsStatus acked = jsqueue__await_acks(j->q, &acks, err, sizeof err);
    if (s == NATS_OK) s = acked;
    if (err[0]) log_warn("cluster: redrive of %s: %s", j->stream, err);
    for (size_t i = 0; s == NATS_OK && i < j->n; i++) {
        if (!j->m[i].source || !*j->m[i].source) continue;
        s = js_DeleteMsg(j->q->js, j->stream, j->m[i].seq, NULL, NULL);
        if (s == NATS_OK) j->moved++;
    }
    return s;
}

static void read_work(void *arg)
{
    read_job *j = arg;
    natsStatus s = NATS_OK;
    if (!cluster_connected(j->q->c)) {
        j->status = ERR_DISCONNECTED;
        return;
    }
    jsStreamInfo *si = NULL;
    s = js_GetStreamInfo(&si, j->q->js, j->stream, NULL, NULL);
    if (si) jsStreamInfo_Destroy(si);
    if (s == NATS_NOT_FOUND) { /* a topic only triggered yet holds nothing */
        if (!j->known) j->status = ERR_NOTFOUND;
        return;
    }
    if (s == NATS_OK) s = read_stored(j);
    if (s == NATS_OK && j->redrive) s = redrive_stored(j);
    if (s != NATS_OK) {
        j->status = ERR_IO;
        log_warn("cluster: cannot %s %s: %s", j->redrive ? "redrive" : "read", j->stream,
                 cluster_nats_why(s));
    }
}

static void read_done(void *arg)
{
    read_job *j = arg;
    if (j->redrive) {
        j->rcb(j->data, j->status, j->moved);
    } else {
        queue_msg *ptrs[SPATE_JS_READ_MAX];
        for (size_t i = 0; i < j->n; i++) ptrs[i] = &j->m[i];
        j->cb(j->data, j->status, ptrs, j->status ? 0 : j->n);
    }
    for (size_t i = 0; i < j->n; i++) natsMsg_Destroy(j->nm[i]);
    queue *q = j->q;
    free(j);
    jsqueue__job_done(q);
}

/* By name, not from the list of topics: one published to through another
 * node a moment ago may not be listed here yet (the list refreshes every
 * second); the stream says whether it exists. */
static read_job *new_read(queue *q, const char *topic, uint64_t after, uint32_t limit)
{
    if (q->closing) return NULL;
    read_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->q = q;
    j->known = jsqueue__topic_of(q, topic, 0) != NULL;
    jsqueue__stream_name(topic, j->stream, sizeof j->stream);
    snprintf(j->all, sizeof j->all, "spate.t.%s.>", j->stream + 8);
    j->after = after;
    j->limit = limit > SPATE_JS_READ_MAX ? SPATE_JS_READ_MAX : limit;
    return j;
}

int jsqueue__read(queue *q, const char *topic, uint64_t after, uint32_t limit, queue_read_cb cb,
                  void *data)
{
    read_job *j = new_read(q, topic, after, limit);
    if (!j) return q->closing ? ERR_CLOSED : ERR_NOMEM;
    j->cb = cb;
    j->data = data;
    jsqueue__run_job(q, read_work, read_done, j);
    return 0;
}

int jsqueue__redrive(queue *q, const char *topic, uint64_t after, uint32_t limit,
                     queue_redrive_cb cb, void *data)
{
    read_job *j = new_read(q, topic, after, limit);
    if (!j) return q->closing ? ERR_CLOSED : ERR_NOMEM;
    j->redrive = 1;
    j->rcb = cb;
    j->data = data;
    jsqueue__run_job(q, read_work, read_done, j);
    return 0;
}
