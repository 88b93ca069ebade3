/*
 * nodes.c - GET /v1/nodes: the nodes as the cluster shows them (api_nodes,
 * read-only), or this one alone.
 */
#include "api/internal.h"

void api_nodes_list(api *a, http_request *req)
{
    cJSON *doc = cJSON_CreateObject();
    const api_nodes *n = &a->nodes;
    cJSON_AddBoolToObject(doc, "cluster", n->json != NULL);
    if (n->json) {
        cJSON_AddStringToObject(doc, "self", n->self(n->data));
        cJSON_AddBoolToObject(doc, "connected", n->connected(n->data));
        cJSON_AddItemToObject(doc, "nodes", n->json(n->data));
    } else {
        cJSON *arr = cJSON_AddArrayToObject(doc, "nodes");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", "local");
        cJSON_AddBoolToObject(o, "self", 1);
        cJSON_AddStringToObject(o, "state", "up");
        cJSON_AddNumberToObject(o, "instances", pool_node_live());
        cJSON_AddNumberToObject(o, "functions", functions_count(a->table));
        pool_zygote_stats zs;
        pool_zygote_stats_get(&zs);
        cJSON *z = cJSON_AddObjectToObject(o, "zygotes");
        cJSON_AddNumberToObject(z, "running", zs.running);
        cJSON_AddNumberToObject(z, "max", zs.max);
        cJSON_AddNumberToObject(z, "idle_s", zs.idle_ms / 1000);
        cJSON_AddItemToArray(arr, o);
    }
    api_respond_json(req, 200, doc);
}
