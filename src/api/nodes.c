/*
 * nodes.c - GET /v1/nodes: the nodes as the cluster shows them (api_nodes,
 * read-only), or this one alone; GET /v1/status: this node's limits.
 */
#include "api/internal.h"

#include "common/storehealth.h"

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
        pool_spare_stats ss;
        pool_spare_stats_get(&ss);
        cJSON *sp = cJSON_AddObjectToObject(o, "spares");
        cJSON_AddNumberToObject(sp, "running", ss.running);
        cJSON_AddNumberToObject(sp, "idle_s", ss.idle_ms / 1000);
        cJSON_AddItemToArray(arr, o);
    }
    api_respond_json(req, 200, doc);
}

/* One limit: what is used of it and its maximum (null: none of spated's
 * own, or unknown), its API code and how many callers it refused. */
static cJSON *add_limit(cJSON *to, int limit, double used, double max, int has_max,
                        const pool_headroom *h)
{
    cJSON *o = cJSON_AddObjectToObject(to, err_limit_label(limit));
    if (!o) return NULL;
    if (used >= 0)
        cJSON_AddNumberToObject(o, "used", used);
    else
        cJSON_AddNullToObject(o, "used");
    if (has_max)
        cJSON_AddNumberToObject(o, "max", max);
    else
        cJSON_AddNullToObject(o, "max");
    cJSON_AddStringToObject(o, "code", err_limit_code(limit));
    cJSON_AddNumberToObject(o, "refused", (double)h->refusals[limit]);
    return o;
}

void api_status(api *a, http_request *req)
{
    pool_headroom h;
    pool_headroom_get(&h);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "version", SPATE_VERSION);
    cJSON_AddNumberToObject(doc, "functions", functions_count(a->table));
    cJSON *lim = cJSON_AddObjectToObject(doc, "limits");
    add_limit(lim, ERR_LIMIT_DESCRIPTORS, (double)h.descriptors, (double)h.descriptors_max,
              h.descriptors_max > 0, &h);
    add_limit(lim, ERR_LIMIT_PROCESSES, h.has_processes ? (double)h.processes : -1,
              (double)h.processes_max, h.has_processes && h.processes_max > 0, &h);
    cJSON *mem = add_limit(lim, ERR_LIMIT_MEMORY, -1, 0, 0, &h);
    if (mem) cJSON_AddNumberToObject(mem, "available_bytes", (double)h.memory_available);
    add_limit(lim, ERR_LIMIT_INSTANCES, h.instances, h.instances_max, 1, &h);
    add_limit(lim, ERR_LIMIT_ZYGOTES, h.zygotes, h.zygotes_max, h.zygotes_max > 0, &h);
    /* Spare instances: among the instances above, and what they have cost. */
    pool_spare_stats ss;
    pool_spare_stats_get(&ss);
    cJSON *sp = cJSON_AddObjectToObject(doc, "spares");
    cJSON_AddNumberToObject(sp, "running", ss.running);
    cJSON_AddNumberToObject(sp, "idle_s", ss.idle_ms / 1000);
    cJSON_AddNumberToObject(sp, "started", (double)ss.started);
    cJSON_AddNumberToObject(sp, "handed_over", (double)ss.handovers);
    cJSON_AddNumberToObject(sp, "idle_stopped", (double)ss.idle_stopped);
    cJSON_AddNumberToObject(sp, "reclaimed", (double)ss.reclaimed);
    cJSON_AddNumberToObject(sp, "lost", (double)ss.lost);
    cJSON_AddNumberToObject(sp, "instance_seconds", ss.seconds);
    /* The store's disk (store/health.h): unhealthy from a failure until the
     * same operation succeeds again. */
    store_health sh;
    store_health_get(&sh);
    cJSON *st = cJSON_AddObjectToObject(doc, "store");
    cJSON_AddBoolToObject(st, "healthy", sh.healthy);
    if (sh.healthy) {
        cJSON_AddNullToObject(st, "error");
        cJSON_AddNullToObject(st, "since_ms");
    } else {
        cJSON_AddStringToObject(st, "error", sh.error);
        cJSON_AddNumberToObject(st, "since_ms", (double)sh.since_ms);
    }
    cJSON *errs = cJSON_AddObjectToObject(st, "errors");
    for (int i = 0; i < STORE_OPS; i++)
        cJSON_AddNumberToObject(errs, store_op_label(i), (double)sh.errors[i]);
    api_respond_json(req, 200, doc);
}
