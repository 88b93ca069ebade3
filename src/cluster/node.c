/* node.c - heartbeats and the nodes view: each node says every second who it
 * is, where its API is and how busy it is; a node unheard of for
 * SPATE_CLUSTER_NODE_DOWN_MS is down. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "common/fnconfig_json.h"
#include "common/log.h"

/* A heartbeat's seal covers when it was sent: an old one replayed does not
 * make a dead node look alive. */
static const char *const hb_sealed[] = {"Spate-Sent-Ms", NULL};

static node_info *node_slot(cluster *c, const char *id)
{
    for (uint32_t i = 0; i < c->nnodes; i++)
        if (strcmp(c->nodes[i].id, id) == 0) return &c->nodes[i];
    if (c->nnodes == SPATE_CLUSTER_NODES_MAX) return NULL;
    node_info *n = &c->nodes[c->nnodes++];
    memset(n, 0, sizeof *n);
    snprintf(n->id, sizeof n->id, "%s", id);
    return n;
}

static void send_heartbeat(uv_timer_t *t)
{
    cluster *c = t->data;
    uint32_t instances = 0, nfns = 0;
    if (c->figures) c->figures(c->figures_data, &instances, &nfns);
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "{\"id\":\"%s\",\"url\":\"%s\",\"instances\":%u,\"functions\":%u}", c->id,
                     c->url, instances, nfns);
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, "spate.node.hb", NULL, msg, n) != NATS_OK) return;
    cluster__msg_stamp(m);
    cluster__msg_seal(c, m, "hb", hb_sealed);
    natsConnection_PublishMsg(c->nc, m);
    natsMsg_Destroy(m);
}

typedef struct heard {
    cluster *c;
    char *text;
    uint64_t sent; /* its Spate-Sent-Ms, checked under its seal */
} heard;

static void drop_heard(void *arg)
{
    heard *h = arg;
    free(h->text);
    free(h);
}

/* On the loop: a heartbeat (its JSON). */
static void on_heartbeat(void *arg)
{
    heard *h = arg;
    cluster *c = h->c;
    cJSON *o = cJSON_Parse(h->text);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(o, "url");
    node_info *n = cJSON_IsString(id) && strlen(id->valuestring) == CLUSTER_ID_LEN
                       ? node_slot(c, id->valuestring)
                       : NULL;
    /* A recorded heartbeat published again (any NATS client can) holds a
     * good seal for minutes: with a key, only a newer one than the node's
     * last counts, so a stopped node goes down however many are replayed. */
    if (n && c->seal && h->sent <= n->sent_ms) {
        cluster__refuse(c, CLUSTER_REFUSED_MESSAGE, "spate.node.hb", 0,
                        "a replay: not newer than the node's last heartbeat");
        n = NULL;
    }
    if (n) {
        n->sent_ms = h->sent;
        if (!n->seen_ms || uv_now(c->loop) - n->seen_ms > SPATE_CLUSTER_NODE_DOWN_MS)
            log_info("cluster: node %s is up url=%s", n->id,
                     cJSON_IsString(url) ? url->valuestring : "?");
        n->seen_ms = uv_now(c->loop);
        if (cJSON_IsString(url)) snprintf(n->url, sizeof n->url, "%s", url->valuestring);
        n->instances = fnconfig_json_u32(o, "instances", 0);
        n->functions = fnconfig_json_u32(o, "functions", 0);
    }
    cJSON_Delete(o);
    drop_heard(h);
}

/* nats.c's thread. */
static void on_heartbeat_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    cluster *c = closure;
    char why[160];
    /* A node no other node would believe (forged, or another key): not
     * shown, not routed to. */
    if (cluster__msg_check(c, m, "hb", hb_sealed, why, sizeof why) != 0 ||
        cluster__msg_fresh(c, m, why, sizeof why) != 0) {
        cluster__refuse(c, CLUSTER_REFUSED_MESSAGE, "spate.node.hb", 0, why);
        natsMsg_Destroy(m);
        return;
    }
    heard *h = calloc(1, sizeof *h);
    if (h && (h->text = strndup(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m)))) {
        h->c = closure;
        h->sent = cluster__msg_sent(m);
        bridge_post(h->c->bridge, on_heartbeat, drop_heard, h);
    } else {
        free(h);
    }
    natsMsg_Destroy(m);
}

int cluster__nodes_start(cluster *c, char *err, size_t errcap)
{
    natsStatus s =
        natsConnection_Subscribe(&c->hb_sub, c->nc, "spate.node.hb", on_heartbeat_msg, c);
    if (s != NATS_OK) {
        snprintf(err, errcap, "cluster: cannot subscribe: %s", natsStatus_GetText(s));
        return -1;
    }
    uv_timer_init(c->loop, &c->heartbeat);
    c->heartbeat.data = c;
    uv_timer_start(&c->heartbeat, send_heartbeat, 0, SPATE_CLUSTER_HEARTBEAT_MS);
    return 0;
}

void cluster__nodes_stop(cluster *c)
{
    natsSubscription_Destroy(c->hb_sub);
    c->hb_sub = NULL;
}

void cluster_set_figures(cluster *c, cluster_figures_fn fn, void *data)
{
    c->figures = fn;
    c->figures_data = data;
}

int cluster__node_live(const cluster *c, const node_info *n)
{
    return n->seen_ms && uv_now(c->loop) - n->seen_ms <= SPATE_CLUSTER_NODE_DOWN_MS;
}

uint32_t cluster_live_nodes(const cluster *c)
{
    uint32_t live = 0;
    for (uint32_t i = 0; i < c->nnodes; i++) live += cluster__node_live(c, &c->nodes[i]) ? 1 : 0;
    return live;
}

cJSON *cluster_nodes_json(const cluster *c)
{
    cJSON *arr = cJSON_CreateArray();
    for (int self = 1; self >= 0; self--)
        for (uint32_t i = 0; i < c->nnodes; i++) {
            const node_info *n = &c->nodes[i];
            if ((strcmp(n->id, c->id) == 0) != self) continue;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", n->id);
            cJSON_AddStringToObject(o, "url", n->url);
            cJSON_AddBoolToObject(o, "self", self);
            cJSON_AddStringToObject(o, "state",
                                    self && !c->connected      ? "disconnected"
                                    : cluster__node_live(c, n) ? "up"
                                                               : "down");
            cJSON_AddNumberToObject(o, "instances", n->instances);
            cJSON_AddNumberToObject(o, "functions", n->functions);
            cJSON_AddNumberToObject(o, "last_heartbeat_ms_ago",
                                    (double)(uv_now(c->loop) - n->seen_ms));
            cJSON_AddItemToArray(arr, o);
        }
    return arr;
}
