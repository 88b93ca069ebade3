/*
 * sealed.c - the cluster key at work (seal.c makes and checks the HMACs):
 * registry values written sealed and opened checked, messages sealed in a
 * header, and the count and log of what was refused.
 *
 * With a key, a delete is a sealed tombstone (an empty value): a bare
 * delete marker can be written by any NATS client, and would make every
 * node drop the function, trigger or schedule. Bare delete markers are then
 * refused like any unsealed value.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "common/clock.h"
#include "common/log.h"

/* --- Registry values ------------------------------------------------------------------------ */

typedef natsStatus (*kv_write)(cluster *c, uint64_t *rev, const char *key, const char *v,
                               size_t len, uint64_t last);

static natsStatus put_raw(cluster *c, uint64_t *rev, const char *key, const char *v, size_t len,
                          uint64_t last)
{
    (void)last;
    return kvStore_Put(rev, c->kv, key, v, (int)len);
}

static natsStatus create_raw(cluster *c, uint64_t *rev, const char *key, const char *v, size_t len,
                             uint64_t last)
{
    (void)last;
    return kvStore_Create(rev, c->kv, key, v, (int)len);
}

static natsStatus update_raw(cluster *c, uint64_t *rev, const char *key, const char *v, size_t len,
                             uint64_t last)
{
    return kvStore_Update(rev, c->kv, key, v, (int)len, last);
}

static natsStatus sealed_write(cluster *c, kv_write w, uint64_t *rev, const char *key,
                               const char *value, uint64_t last)
{
    size_t len = 0;
    char *v = seal_value(c->seal, key, value, strlen(value), &len);
    if (!v) return NATS_NO_MEMORY;
    natsStatus s = w(c, rev, key, v, len, last);
    free(v);
    return s;
}

natsStatus cluster__kv_put(cluster *c, const char *key, const char *value)
{
    return sealed_write(c, put_raw, NULL, key, value, 0);
}

natsStatus cluster__kv_create(cluster *c, uint64_t *rev, const char *key, const char *value)
{
    return sealed_write(c, create_raw, rev, key, value, 0);
}

natsStatus cluster__kv_update(cluster *c, uint64_t *rev, const char *key, const char *value,
                              uint64_t last)
{
    return sealed_write(c, update_raw, rev, key, value, last);
}

natsStatus cluster__kv_delete(cluster *c, const char *key)
{
    if (!c->seal) return kvStore_Delete(c->kv, key);
    return cluster__kv_put(c, key, "");
}

int cluster__kv_open(cluster *c, kvEntry *e, char **text)
{
    *text = NULL;
    const char *key = kvEntry_Key(e);
    char why[200];
    if (kvEntry_Operation(e) != kvOp_Put) {
        if (!c->seal) return 0;
        cluster__refuse(c, CLUSTER_REFUSED_ENTRY, key, kvEntry_Revision(e),
                        "a bare delete: a node with the cluster key deletes with a sealed "
                        "tombstone");
        return -1;
    }
    const char *body = NULL;
    size_t len = 0;
    if (seal_open(c->seal, key, kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &body, &len, why,
                  sizeof why) != 0) {
        cluster__refuse(c, CLUSTER_REFUSED_ENTRY, key, kvEntry_Revision(e), why);
        return -1;
    }
    if (c->seal && len == 0) return 0; /* a tombstone */
    *text = strndup(body, len);
    return *text ? 0 : -1;
}

/* --- Messages --------------------------------------------------------------------------------- */

#define PARTS_MAX 8

/* what, the subject, each header named (absent: empty), the data. */
static size_t msg_parts(natsMsg *m, const char *what, const char *const *headers,
                        seal_part p[PARTS_MAX])
{
    size_t n = 0;
    p[n++] = (seal_part){what, strlen(what)};
    p[n++] = (seal_part){natsMsg_GetSubject(m), strlen(natsMsg_GetSubject(m))};
    for (size_t i = 0; headers && headers[i] && n < PARTS_MAX - 1; i++) {
        const char *v = NULL;
        if (natsMsgHeader_Get(m, headers[i], &v) != NATS_OK || !v) v = "";
        p[n++] = (seal_part){v, strlen(v)};
    }
    p[n++] = (seal_part){natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m)};
    return n;
}

void cluster__msg_seal(cluster *c, natsMsg *m, const char *what, const char *const *headers)
{
    if (!c->seal) return;
    seal_part p[PARTS_MAX];
    char hex[SEAL_HEX_LEN + 1];
    /* Unsealed, it is refused by the others: no worse than not sent. */
    if (seal_mac(c->seal, p, msg_parts(m, what, headers, p), hex) == 0)
        natsMsgHeader_Set(m, CLUSTER_SEAL_HEADER, hex);
}

int cluster__msg_check(cluster *c, natsMsg *m, const char *what, const char *const *headers,
                       char *why, size_t whycap)
{
    const char *hex = NULL;
    if (natsMsgHeader_Get(m, CLUSTER_SEAL_HEADER, &hex) != NATS_OK) hex = NULL;
    if (!c->seal) {
        if (!hex) return 0;
        snprintf(why, whycap, "sealed with a cluster key, and this node has none (--cluster-key)");
        return -1;
    }
    if (!hex) {
        snprintf(why, whycap, "not sealed: sent by a client or node without the cluster key");
        return -1;
    }
    seal_part p[PARTS_MAX];
    if (seal_check(c->seal, p, msg_parts(m, what, headers, p), hex) != 0) {
        snprintf(why, whycap, "its seal does not match: sent with another cluster key, or altered");
        return -1;
    }
    return 0;
}

void cluster__msg_stamp(natsMsg *m)
{
    static _Atomic uint64_t last;
    uint64_t now = clock_now_ms(), prev = atomic_load(&last);
    do {
        if (now <= prev) now = prev + 1;
    } while (!atomic_compare_exchange_weak(&last, &prev, now));
    char text[24];
    snprintf(text, sizeof text, "%llu", (unsigned long long)now);
    natsMsgHeader_Set(m, "Spate-Sent-Ms", text);
}

uint64_t cluster__msg_sent(natsMsg *m)
{
    const char *v = NULL;
    char *end = NULL;
    if (natsMsgHeader_Get(m, "Spate-Sent-Ms", &v) != NATS_OK || !v) return 0;
    unsigned long long sent = strtoull(v, &end, 10);
    return end && !*end ? (uint64_t)sent : 0;
}

int cluster__msg_fresh(cluster *c, natsMsg *m, char *why, size_t whycap)
{
    if (!c->seal) return 0;
    const char *v = NULL;
    char *end = NULL;
    unsigned long long sent = 0;
    if (natsMsgHeader_Get(m, "Spate-Sent-Ms", &v) == NATS_OK && v) sent = strtoull(v, &end, 10);
    uint64_t now = clock_now_ms();
    if (!sent || !end || *end ||
        (sent > now ? sent - now : now - sent) > SPATE_CLUSTER_MSG_SKEW_MS) {
        snprintf(why, whycap,
                 "sent at %s, over %d s from this node's clock: a replay, or clocks apart",
                 v ? v : "(no time)", SPATE_CLUSTER_MSG_SKEW_MS / 1000);
        return -1;
    }
    return 0;
}

/* --- Refusals --------------------------------------------------------------------------------- */

static const char *const refused_names[CLUSTER_REFUSED_KINDS] = {"registry entry", "artifact chunk",
                                                                 "message"};

/* FNV-1a: which slot a key's refusals are remembered in. */
static uint64_t key_hash(const char *key)
{
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h | 1; /* never 0: an empty slot */
}

void cluster__refuse(cluster *c, enum cluster_refused kind, const char *key, uint64_t rev,
                     const char *why)
{
    int say = 1;
    uint64_t unsaid = 0;
    pthread_mutex_lock(&c->refused_lock);
    if (rev) {
        /* Entries and chunks are read again (a watcher restarted, a fetch
         * tried again): one log line and one count for each revision. */
        uint64_t h = key_hash(key);
        size_t slot = (size_t)(h % SPATE_CLUSTER_REFUSED_SLOTS);
        if (c->refused_seen[slot].key == h && c->refused_seen[slot].rev == rev) {
            say = 0;
        } else {
            c->refused_seen[slot].key = h;
            c->refused_seen[slot].rev = rev;
            /* New ones come as fast as a forger writes: a few lines a window. */
            uint64_t now = clock_mono_ns() / 1000000;
            if (!c->refused_window_ms[kind] ||
                now - c->refused_window_ms[kind] >= SPATE_CLUSTER_REFUSED_LOG_MS) {
                c->refused_window_ms[kind] = now;
                c->refused_lines[kind] = 0;
            }
            if (c->refused_lines[kind] >= SPATE_CLUSTER_REFUSED_LOG_BURST) {
                say = -1;
                c->refused_unsaid[kind]++;
            } else {
                c->refused_lines[kind]++;
                unsaid = c->refused_unsaid[kind];
                c->refused_unsaid[kind] = 0;
            }
        }
    } else {
        /* Messages come as fast as a sender sends: counted, logged now and then. */
        uint64_t now = clock_mono_ns() / 1000000;
        if (c->refused_logged_ms[kind] &&
            now - c->refused_logged_ms[kind] < SPATE_CLUSTER_REFUSED_LOG_MS)
            say = -1;
        else
            c->refused_logged_ms[kind] = now;
    }
    pthread_mutex_unlock(&c->refused_lock);
    if (!say) return;
    c->refused[kind]++;
    if (say < 0) return;
    char revision[40] = "";
    if (rev) snprintf(revision, sizeof revision, " revision %llu", (unsigned long long)rev);
    char more[80] = "";
    if (unsaid)
        snprintf(more, sizeof more, " (and %llu more before it, not logged)",
                 (unsigned long long)unsaid);
    log_warn("cluster: refused %s %s%s: %s; not applied (spate_cluster_rejected_total counts "
             "them)%s",
             refused_names[kind], key, revision, why, more);
}

uint64_t cluster_refused(const cluster *c, enum cluster_refused kind)
{
    return kind < CLUSTER_REFUSED_KINDS ? c->refused[kind] : 0;
}
