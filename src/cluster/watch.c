/* watch.c - the thread that follows the registry's key-value bucket and
 * hands each change to the registry (registry_js.c), which takes it to the
 * loop. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/internal.h"
#include "common/clock.h"
#include "common/log.h"

/* A watcher whose consumer lived on a lost server stops hearing, silently,
 * until nats.c notices missed heartbeats. The bucket's stream, replicated,
 * knows its last revision: behind it for over a second, watch again. */
static int watcher_behind(cluster *c, uint64_t seen, uint64_t *since)
{
    static __thread uint64_t checked;
    uint64_t now = clock_mono_ns() / 1000000;
    if (now - checked < 1000) return 0;
    checked = now;
    jsStreamInfo *si = NULL;
    if (js_GetStreamInfo(&si, c->js, "KV_" CLUSTER_BUCKET, NULL, NULL) != NATS_OK) return 0;
    uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    if (last <= seen) {
        *since = 0;
        return 0;
    }
    if (!*since) *since = now;
    if (now - *since < 1000) return 0;
    *since = 0;
    log_info("cluster: the registry watcher fell behind (revision %llu of %llu); watching again",
             (unsigned long long)seen, (unsigned long long)last);
    return 1;
}

/* What a key of the bucket holds (its prefix, three bytes), or -1: not
 * followed (leases are lease.c's). */
static int change_kind(const char *key)
{
    static const struct {
        const char *prefix;
        enum cluster_change kind;
    } kinds[] = {{"fn.", CLUSTER_CH_FUNCTION}, {"tr.", CLUSTER_CH_TRIGGER},
                 {"sc.", CLUSTER_CH_SCHEDULE}, {"so.", CLUSTER_CH_SOURCE},
                 {"al.", CLUSTER_CH_ALIAS},    {"ve.", CLUSTER_CH_VERSION}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strncmp(key, kinds[i].prefix, 3) == 0) return (int)kinds[i].kind;
    return -1;
}

typedef struct watch {
    cluster *c;
    cluster_heard_fn heard;
    void *data;
} watch;

static void *watcher_main(void *arg)
{
    watch wa = *(watch *)arg;
    free(arg);
    cluster *c = wa.c;
    kvWatcher *w = NULL;
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    natsStatus s;
    uint64_t seen = 0, behind_since = 0;
    while (!c->stopping) {
        /* (Again) from the current values: after a reconnect or an error the
         * watcher's consumer may be gone; applying a value twice is harmless. */
        if (!w || c->rewatch) {
            c->rewatch = 0;
            kvWatcher_Destroy(w);
            w = NULL;
            s = kvStore_Watch(&w, c->kv, ">", &o);
            if (s != NATS_OK) {
                log_warn("cluster: cannot watch the registry (trying again): %s",
                         natsStatus_GetText(s));
                w = NULL;
                usleep(500 * 1000);
                continue;
            }
        }
        kvEntry *ent = NULL;
        s = kvWatcher_Next(&ent, w, 500);
        if (s == NATS_TIMEOUT) {
            if (watcher_behind(c, seen, &behind_since)) c->rewatch = 1;
            continue;
        }
        if (s != NATS_OK) {
            c->rewatch = 1;
            usleep(200 * 1000);
            continue;
        }
        if (!ent) { /* the current values are all in */
            wa.heard(wa.data, CLUSTER_CH_READY, "", NULL);
            continue;
        }
        if (kvEntry_Revision(ent) > seen) seen = kvEntry_Revision(ent);
        const char *key = kvEntry_Key(ent);
        int put = kvEntry_Operation(ent) == kvOp_Put;
        int kind = change_kind(key);
        if (kind >= 0 && strlen(key + 3) < CLUSTER_KEY_MAX) {
            char *text = NULL;
            if (put && kvEntry_ValueLen(ent) > (int)(SPATE_CLUSTER_ENTRY_MAX + SEAL_VALUE_EXTRA)) {
                log_warn("cluster: registry entry %s is %d bytes, over the limit of %u: ignored",
                         key, kvEntry_ValueLen(ent), SPATE_CLUSTER_ENTRY_MAX);
            } else if (cluster__kv_open(c, ent, &text) == 0) {
                wa.heard(wa.data, (enum cluster_change)kind, key + 3, text);
            } else if (kind == CLUSTER_CH_FUNCTION) {
                /* Refused: the node must not take it for a delete either. */
                wa.heard(wa.data, CLUSTER_CH_FUNCTION_REFUSED, key + 3, NULL);
            }
        }
        kvEntry_Destroy(ent);
    }
    kvWatcher_Destroy(w);
    return NULL;
}

int cluster__watch_start(cluster *c, cluster_heard_fn heard, void *data, pthread_t *out)
{
    watch *wa = malloc(sizeof *wa);
    if (!wa) return -1;
    *wa = (watch){c, heard, data};
    if (pthread_create(out, NULL, watcher_main, wa) != 0) {
        free(wa);
        return -1;
    }
    return 0;
}
