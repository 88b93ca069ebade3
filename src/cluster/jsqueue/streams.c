/*
 * jsqueue/streams.c - topics and their streams: names, creating a stream,
 * the retention limits a stream's description asks for, a stream's figures.
 */
#include "cluster/jsqueue/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/names.h"

/* Stream names cannot hold '.': escaped, so that names stay distinct. */
void jsqueue__stream_name(const char *topic, char *out, size_t cap)
{
    name_topic_stream(topic, strlen(topic), out, cap);
}

jtopic *jsqueue__topic_of(queue *q, const char *name, int create)
{
    jtopic *t = strmap_get(&q->by_name, name, strlen(name));
    if (t) {
        if (t->gone && !create) return NULL;
        if (t->gone) {
            t->gone = 0;
            memset(&t->stats, 0, sizeof t->stats);
            memset(&t->ret, 0, sizeof t->ret);
            t->retired_acked = t->retired_dead = 0;
        }
        return t;
    }
    if (!create) return NULL;
    t = calloc(1, sizeof *t);
    if (!t) return NULL;
    snprintf(t->name, sizeof t->name, "%s", name);
    jsqueue__stream_name(name, t->stream, sizeof t->stream);
    snprintf(t->subject, sizeof t->subject, "spate.t.%s", t->stream + 8); /* no '.' in it */
    if (strmap_put(&q->by_name, t->name, t)) {
        free(t);
        return NULL;
    }
    list_push_back(&q->topics, &t->link);
    return t;
}

/* Worker thread: the stream, created if new. */
natsStatus jsqueue__ensure_stream(queue *q, const char *stream, const char *subject)
{
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, q->js, stream, NULL, NULL);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return NATS_OK;
    }
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = stream;
    char all[SPATE_TOPIC_NAME_MAX * 3 + 32];
    snprintf(all, sizeof all, "%s.>", subject);
    const char *subjects[] = {all};
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = q->replicas;
    sc.AllowDirect = true; /* reading stored messages: any replica answers */
    /* Nats-Msg-Id's window (publish.c): SQS's FIFO deduplication's 5 minutes. */
    sc.Duplicates = (int64_t)SPATE_SQS_DEDUP_WINDOW_MS * 1000000;
    s = js_AddStream(&si, q->js, &sc, NULL, NULL);
    if (s == NATS_OK) jsStreamInfo_Destroy(si);
    return s;
}

void jsqueue__parse_retention(const char *description, queue_retention *out)
{
    unsigned long long age = 0, bytes = 0, msgs = 0;
    memset(out, 0, sizeof *out);
    if (description && sscanf(description, RETENTION_FMT, &age, &bytes, &msgs) == 3) {
        out->max_age_ms = age;
        out->max_bytes = bytes;
        out->max_messages = msgs;
    }
}

/* Worker thread: the stream's limits as its retention wants them now (none
 * while a consumer reads it). Changes si's configuration. */
natsStatus jsqueue__apply_limits(queue *q, jsStreamInfo *si, int consumers)
{
    jsStreamConfig *c = si->Config;
    queue_retention r;
    jsqueue__parse_retention(c->Description, &r);
    int64_t age = consumers ? 0 : (int64_t)r.max_age_ms * 1000000;
    int64_t bytes = consumers || !r.max_bytes ? -1 : (int64_t)r.max_bytes;
    int64_t msgs = consumers || !r.max_messages ? -1 : (int64_t)r.max_messages;
    if (c->MaxAge == age && c->MaxBytes == bytes && c->MaxMsgs == msgs) return NATS_OK;
    c->MaxAge = age;
    c->MaxBytes = bytes;
    c->MaxMsgs = msgs;
    /* JetStream refuses a duplicate window longer than the age limit. */
    if (age && (c->Duplicates == 0 || c->Duplicates > age)) c->Duplicates = age;
    jsStreamInfo *up = NULL;
    natsStatus s = js_UpdateStream(&up, q->js, c, NULL, NULL);
    /* A trigger added meanwhile (through another node, whose jsqueue__lift_limits ran
     * before this update): lifted again at once, not at the next refresh. */
    if (s == NATS_OK && up && !consumers && up->State.Consumers > 0)
        s = jsqueue__apply_limits(q, up, 1);
    if (up) jsStreamInfo_Destroy(up);
    return s;
}

/* Worker thread: the limits of a stream a trigger is about to read are
 * lifted before its consumer exists. */
natsStatus jsqueue__lift_limits(queue *q, const char *stream)
{
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, q->js, stream, NULL, NULL);
    if (s == NATS_OK) s = jsqueue__apply_limits(q, si, 1);
    if (si) jsStreamInfo_Destroy(si);
    return s;
}

/* Worker or puller thread: the stream's figures. */
int jsqueue__stream_stats(queue *q, const char *stream, queue_topic_stats *out)
{
    jsStreamInfo *si = NULL;
    if (js_GetStreamInfo(&si, q->js, stream, NULL, NULL) != NATS_OK) return -1;
    out->published = si->State.LastSeq;
    out->stored = si->State.Msgs;
    out->bytes = si->State.Bytes;
    jsqueue__parse_retention(si->Config->Description, &out->retention);
    out->oldest_ms = si->State.Msgs ? si->State.FirstTime / 1000000 : 0;
    jsStreamInfo_Destroy(si);
    return 0;
}

/* Any thread: the sequence of the first message of subject (wildcards
 * allowed) at or after seq in stream, 0 in *found when there is none;
 * answered by the stream's leader (STREAM.MSG.GET), never by a replica that
 * may be behind, as a direct get can be. Not OK without an answer. */
natsStatus jsqueue__next_of_subject(queue *q, const char *stream, const char *subject, uint64_t seq,
                                    uint64_t *found)
{
    char api[SPATE_TOPIC_NAME_MAX * 3 + 64], body[SPATE_TOPIC_NAME_MAX * 3 + 96];
    snprintf(api, sizeof api, "$JS.API.STREAM.MSG.GET.%s", stream);
    int n =
        snprintf(body, sizeof body, "{\"seq\":%" PRIu64 ",\"next_by_subj\":\"%s\"}", seq, subject);
    if (n < 0 || (size_t)n >= sizeof body) return NATS_INVALID_ARG;
    natsMsg *reply = NULL;
    natsStatus st =
        natsConnection_Request(&reply, cluster_nc(q->c), api, body, n, SPATE_JS_LOOKUP_WAIT_MS);
    if (st != NATS_OK) return st;
    /* {"message":{"seq":N,...}}, or {"error":{"code":404,...}} for none. */
    cJSON *doc =
        cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, "message");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(m, "seq");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    *found = 0;
    if (cJSON_IsNumber(s) && s->valuedouble >= 1)
        *found = (uint64_t)s->valuedouble;
    else if (!cJSON_IsNumber(code) || code->valueint != 404)
        st = NATS_ERR; /* no leader, or not JetStream's answer */
    cJSON_Delete(doc);
    natsMsg_Destroy(reply);
    return st;
}
