/* route.c - direct invocations between nodes: when this one has no room, sent
 * to each other live node in turn (spate.invoke.NODE.NAME) until one runs it,
 * and taken on this node's own subject for the handler that spated's main set
 * (the scheduler's). Asking nodes one by one rather than a queue group: a
 * group's random pick can land on the asker or on the same busy node again
 * and again while a node with room is never asked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "common/clock.h"

/* What the cluster key's seal covers of an invocation and of its answer
 * (beside the subject and the payload). Spate-Reply is the subject the
 * answer goes to: NATS's reply subject is outside the seal, and a recorded
 * invocation published again with the replayer's own inbox had its answer,
 * the function's output, sent to the replayer. */
static const char *const invoke_sealed[] = {"Spate-Origin",  "Spate-Request-Id", "Spate-Timeout-Ms",
                                            "Spate-Sent-Ms", "Spate-Reply",      NULL};
/* Spate-Asked is the invocation's own seal: an answer holds only for the
 * invocation it answers. The inbox alone did not say which: its sequence
 * number starts again at 1 when spated does, and an answer recorded from
 * the run before was taken as the answer to the new invocation with that
 * number (its output, another call's, given to the caller). */
static const char *const reply_sealed[] = {"Spate-Status", "Spate-Node", "Spate-Code",
                                           "Spate-Asked", NULL};

typedef struct routed {
    list_node link;
    cluster *c;
    uint64_t seq;
    char function[SPATE_NAME_MAX + 1];
    char request_id[64];
    buf payload;
    uint32_t timeout_ms;
    uint32_t start;               /* the index in c->nodes the tries began at */
    uint32_t tried;               /* the nodes' slots looked at so far, from start */
    char asked[SEAL_HEX_LEN + 1]; /* the seal of the last one sent (with a key) */
    uv_timer_t timer;
    cluster_invoke_cb cb;
    void *data;
} routed;

typedef struct inbound {
    cluster *c;
    natsMsg *msg;
} inbound;

/* A message of nats.c's threads, for the loop (which destroys it). */
typedef struct arrived {
    cluster *c;
    natsMsg *msg;
} arrived;

static void drop_arrived(void *arg)
{
    arrived *a = arg;
    natsMsg_Destroy(a->msg);
    free(a);
}

static void post_msg(cluster *c, bridge_fn call, natsMsg *m)
{
    arrived *a = malloc(sizeof *a);
    if (!a) {
        natsMsg_Destroy(m);
        return;
    }
    *a = (arrived){c, m};
    bridge_post(c->bridge, call, drop_arrived, a);
}

/* --- Invocations from other nodes ------------------------------------------------------------- */

static void reply(cluster *c, natsMsg *req, int status, const char *code, const char *body,
                  size_t len)
{
    const char *to = natsMsg_GetReply(req);
    natsMsg *m = NULL;
    if (!to || natsMsg_Create(&m, to, NULL, body, (int)len) != NATS_OK) return;
    char st[16];
    snprintf(st, sizeof st, "%d", status);
    natsMsgHeader_Set(m, "Spate-Status", st);
    natsMsgHeader_Set(m, "Spate-Node", c->id);
    if (code) natsMsgHeader_Set(m, "Spate-Code", code);
    const char *asked = NULL;
    if (natsMsgHeader_Get(req, CLUSTER_SEAL_HEADER, &asked) == NATS_OK && asked)
        natsMsgHeader_Set(m, "Spate-Asked", asked);
    cluster__msg_seal(c, m, "reply", reply_sealed);
    natsStatus s = natsConnection_PublishMsg(c->nc, m);
    natsMsg_Destroy(m);
    /* An output larger than a NATS message: the asker must not wait for an
     * answer that never comes. */
    if (s == NATS_MAX_PAYLOAD && len > 0) {
        static const char big[] = "{\"error\":\"the output is larger than a NATS message and "
                                  "cannot travel between nodes\",\"code\":\"output_too_large\"}";
        reply(c, req, 502, "output_too_large", big, sizeof big - 1);
    }
}

static void reply_error(cluster *c, natsMsg *req, int status, const char *code, const char *msg,
                        size_t len)
{
    cJSON *o = cJSON_CreateObject();
    char *text = strndup(msg, len);
    cJSON_AddStringToObject(o, "error", text ? text : "");
    cJSON_AddStringToObject(o, "code", code);
    char *s = cJSON_PrintUnformatted(o);
    reply(c, req, status, code, s ? s : "{}", s ? strlen(s) : 2);
    free(s);
    free(text);
    cJSON_Delete(o);
}

/* The handler's answer (cluster.h): passed on to the asker. */
static void on_answer(void *ctx, int status, const char *code, const char *body, size_t len)
{
    inbound *in = ctx;
    if (status == 200)
        reply(in->c, in->msg, 200, NULL, body, len);
    else if (status == 0)
        reply(in->c, in->msg, 0, "busy", "", 0);
    else
        reply_error(in->c, in->msg, status, code, body, len);
    natsMsg_Destroy(in->msg);
    free(in);
}

/* 1 when an invocation with this seal was taken already (with a key): a
 * recorded one published again as it was, within SPATE_CLUSTER_MSG_SKEW_MS.
 * Else it is remembered. */
static int invoked_before(cluster *c, natsMsg *m)
{
    const char *hex = NULL;
    if (!c->seal || natsMsgHeader_Get(m, CLUSTER_SEAL_HEADER, &hex) != NATS_OK || !hex ||
        strlen(hex) < 16)
        return 0;
    if (!c->invoked && !(c->invoked = calloc(SPATE_CLUSTER_INVOKED_SLOTS, sizeof *c->invoked)))
        return 0;
    char head[17];
    memcpy(head, hex, 16);
    head[16] = '\0';
    uint64_t h = strtoull(head, NULL, 16) | 1, sent = cluster__msg_sent(m), now = clock_now_ms();
    size_t base =
        (size_t)(h % SPATE_CLUSTER_INVOKED_SLOTS) & ~(size_t)(SPATE_CLUSTER_INVOKED_WAYS - 1);
    struct invoked_seen *slot = NULL; /* a free one, else the oldest */
    int free_slot = 0;
    for (size_t i = 0; i < SPATE_CLUSTER_INVOKED_WAYS; i++) {
        struct invoked_seen *s = &c->invoked[base + i];
        if (s->seal == h && s->sent_ms == sent) return 1;
        if (!s->seal || now > s->sent_ms + SPATE_CLUSTER_MSG_SKEW_MS) {
            if (!free_slot) slot = s;
            free_slot = 1;
        } else if (!free_slot && (!slot || s->sent_ms < slot->sent_ms)) {
            slot = s;
        }
    }
    *slot = (struct invoked_seen){h, sent};
    return 0;
}

static void on_invoke_in(void *arg)
{
    arrived *a = arg;
    cluster *c = a->c;
    natsMsg *m = a->msg;
    free(a);
    const char *subj = natsMsg_GetSubject(m);
    const char *name = subj + strlen("spate.invoke.") + CLUSTER_ID_LEN + 1;
    const char *origin = NULL, *rid = NULL, *timeout = NULL;
    natsMsgHeader_Get(m, "Spate-Origin", &origin);
    natsMsgHeader_Get(m, "Spate-Request-Id", &rid);
    natsMsgHeader_Get(m, "Spate-Timeout-Ms", &timeout);
    /* Unsealed (with a key): not from a node of this cluster; no answer, as
     * if it had not come. */
    char why[160];
    const char *sealed_to = NULL, *to = natsMsg_GetReply(m);
    if (natsMsgHeader_Get(m, "Spate-Reply", &sealed_to) != NATS_OK) sealed_to = NULL;
    if (cluster__msg_check(c, m, "invoke", invoke_sealed, why, sizeof why) != 0 ||
        cluster__msg_fresh(c, m, why, sizeof why) != 0) {
        cluster__refuse(c, CLUSTER_REFUSED_MESSAGE, subj, 0, why);
        natsMsg_Destroy(m);
        return;
    }
    if (c->seal && (!to || !sealed_to || strcmp(to, sealed_to) != 0)) {
        cluster__refuse(c, CLUSTER_REFUSED_MESSAGE, subj, 0,
                        "its answer is asked for on another subject than the one sealed: a "
                        "replay");
        natsMsg_Destroy(m);
        return;
    }
    if (invoked_before(c, m)) {
        cluster__refuse(c, CLUSTER_REFUSED_MESSAGE, subj, 0,
                        "taken already: a replay of a recorded invocation; not run again");
        natsMsg_Destroy(m);
        return;
    }
    /* Stopping, the asker itself (a message made by hand), or nothing to
     * run it: say so at once, it asks another. */
    inbound *in = NULL;
    if (!c->quiet && c->on_invoke && !(origin && strcmp(origin, c->id) == 0))
        in = calloc(1, sizeof *in);
    if (!in) {
        reply(c, m, 0, "busy", "", 0);
        natsMsg_Destroy(m);
        return;
    }
    in->c = c;
    in->msg = m;
    c->on_invoke(c->invoke_data, name, rid ? rid : "routed", natsMsg_GetData(m),
                 (size_t)natsMsg_GetDataLength(m),
                 timeout ? (uint32_t)strtoul(timeout, NULL, 10) : 0, on_answer, in);
}

void cluster_set_invoke_handler(cluster *c, cluster_invoke_handler h, void *data)
{
    c->on_invoke = h;
    c->invoke_data = data;
}

/* --- Invocations sent to other nodes ------------------------------------------------------------
 */

static void routed_closed(uv_handle_t *h)
{
    routed *r = h->data;
    buf_free(&r->payload);
    free(r);
}

static void routed_finish(routed *r, int status, const char *body, size_t len, const char *node)
{
    list_remove(&r->link);
    uv_timer_stop(&r->timer);
    r->cb(status, body, len, node, r->data);
    uv_close((uv_handle_t *)&r->timer, routed_closed);
}

/* The next live node after those tried, not this one; NULL: none is left. */
static const node_info *next_node(routed *r)
{
    cluster *c = r->c;
    while (r->tried < c->nnodes) {
        const node_info *n = &c->nodes[(r->start + r->tried++) % c->nnodes];
        if (strcmp(n->id, c->id) != 0 && cluster__node_live(c, n)) return n;
    }
    return NULL;
}

static int send_routed(routed *r)
{
    cluster *c = r->c;
    const node_info *to = next_node(r);
    if (!to) return -1;
    char subj[SPATE_NAME_MAX + CLUSTER_ID_LEN + 32], inbox[96];
    snprintf(subj, sizeof subj, "spate.invoke.%s.%s", to->id, r->function);
    snprintf(inbox, sizeof inbox, "_INBOX.spate.%s.%llu", c->id, (unsigned long long)r->seq);
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subj, inbox, r->payload.data, (int)r->payload.len) != NATS_OK) return -1;
    natsMsgHeader_Set(m, "Spate-Origin", c->id);
    natsMsgHeader_Set(m, "Spate-Request-Id", r->request_id);
    char timeout[16]; /* the caller's (?timeout=), else the function's here */
    snprintf(timeout, sizeof timeout, "%u", r->timeout_ms);
    natsMsgHeader_Set(m, "Spate-Timeout-Ms", timeout);
    natsMsgHeader_Set(m, "Spate-Reply", inbox);
    cluster__msg_stamp(m);
    cluster__msg_seal(c, m, "invoke", invoke_sealed);
    const char *asked = NULL;
    if (natsMsgHeader_Get(m, CLUSTER_SEAL_HEADER, &asked) != NATS_OK || !asked) asked = "";
    snprintf(r->asked, sizeof r->asked, "%s", asked);
    natsStatus s = natsConnection_PublishMsg(c->nc, m);
    natsMsg_Destroy(m);
    return s == NATS_OK ? 0 : -1;
}

static void on_routed_timeout(uv_timer_t *t)
{
    routed *r = t->data;
    char body[160];
    int n = snprintf(body, sizeof body,
                     "{\"error\":\"no answer from the node the invocation was routed to\","
                     "\"code\":\"function_timeout\"}");
    routed_finish(r, 504, body, (size_t)n, "");
}

static void on_reply(void *arg)
{
    arrived *a = arg;
    cluster *c = a->c;
    natsMsg *m = a->msg;
    const char *subj = natsMsg_GetSubject(m);
    const char *dot = strrchr(subj, '.');
    uint64_t seq = dot ? strtoull(dot + 1, NULL, 10) : 0;
    routed *r = NULL;
    for (list_node *n = list_first(&c->routed); n != &c->routed; n = n->next)
        if (list_entry(n, routed, link)->seq == seq) r = list_entry(n, routed, link);
    const char *st = NULL, *node = NULL;
    natsMsgHeader_Get(m, "Spate-Status", &st);
    natsMsgHeader_Get(m, "Spate-Node", &node);
    int status = st ? atoi(st) : 0;
    char why[160];
    /* An answer taken to the caller must come from a node with the key; a
     * busy one (NATS's own "no responders" too) only makes this node ask
     * another. */
    if (r && status != 0 && cluster__msg_check(c, m, "reply", reply_sealed, why, sizeof why) != 0) {
        cluster__refuse(c, CLUSTER_REFUSED_MESSAGE, subj, 0, why);
        r = NULL; /* waits for the real one, or times out */
    } else if (r && status != 0 && c->seal) {
        const char *asked = NULL;
        if (natsMsgHeader_Get(m, "Spate-Asked", &asked) != NATS_OK || !asked ||
            strcmp(asked, r->asked) != 0) {
            cluster__refuse(c, CLUSTER_REFUSED_MESSAGE, subj, 0,
                            "an answer to another invocation: a replay (or from a node of "
                            "an older spate, which does not say which it answers)");
            r = NULL;
        }
    }
    if (!r) {
        /* it timed out */
    } else if (status == 0) {
        /* Busy, or no responder (NATS status 503: it went away): the next
         * node, while one is left; then it runs here. */
        if (send_routed(r) != 0) routed_finish(r, 0, "", 0, "");
    } else {
        routed_finish(r, status, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m),
                      node ? node : "");
    }
    drop_arrived(a);
}

int cluster_route_invoke(cluster *c, const char *function, const char *request_id,
                         const void *payload, size_t len, uint32_t timeout_ms, cluster_invoke_cb cb,
                         void *data)
{
    if (cluster_live_nodes(c) < 2 || len > SPATE_CLUSTER_ROUTED_PAYLOAD_MAX || c->stopping)
        return -1;
    routed *r = calloc(1, sizeof *r);
    if (!r) return -1;
    r->c = c;
    r->seq = ++c->next_seq;
    r->start = (uint32_t)(r->seq % (c->nnodes ? c->nnodes : 1)); /* spread over the nodes */
    r->timeout_ms = timeout_ms;
    snprintf(r->function, sizeof r->function, "%s", function);
    snprintf(r->request_id, sizeof r->request_id, "%s", request_id);
    buf_init(&r->payload, len);
    if (buf_append(&r->payload, payload, len) != 0 || send_routed(r) != 0) {
        buf_free(&r->payload);
        free(r);
        return -1;
    }
    r->cb = cb;
    r->data = data;
    uv_timer_init(c->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_routed_timeout, (uint64_t)timeout_ms + 5000, 0);
    list_push_back(&c->routed, &r->link);
    return 0;
}

/* --- nats.c's threads ------------------------------------------------------------------------ */

static void on_invoke_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    post_msg(closure, on_invoke_in, m);
}

static void on_reply_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    post_msg(closure, on_reply, m);
}

int cluster__route_start(cluster *c, char *err, size_t errcap)
{
    char inbox[96];
    char mine[96];
    snprintf(inbox, sizeof inbox, "_INBOX.spate.%s.*", c->id);
    snprintf(mine, sizeof mine, "spate.invoke.%s.*", c->id);
    natsStatus s = natsConnection_Subscribe(&c->invoke_sub, c->nc, mine, on_invoke_msg, c);
    if (s == NATS_OK) s = natsConnection_Subscribe(&c->reply_sub, c->nc, inbox, on_reply_msg, c);
    if (s != NATS_OK) {
        snprintf(err, errcap, "cluster: cannot subscribe: %s", natsStatus_GetText(s));
        return -1;
    }
    return 0;
}

void cluster__route_stop(cluster *c)
{
    natsSubscription_Destroy(c->invoke_sub);
    natsSubscription_Destroy(c->reply_sub);
    c->invoke_sub = c->reply_sub = NULL;
    while (!list_empty(&c->routed)) {
        routed *r = list_entry(list_first(&c->routed), routed, link);
        routed_finish(r, 0, "", 0, "");
    }
}
