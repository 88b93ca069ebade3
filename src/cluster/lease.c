/*
 * lease.c - leases in the registry bucket: what one node of the cluster runs
 * (a schedule, a source without a consumer group) runs where its lease is.
 *
 * A lease is the key lease.KIND.NAME, its value {"node": ID, "expires_ms"}
 * (the expiry is for people; nodes do not trust each other's clocks). One
 * thread follows the leases this node was asked about (registry_lease):
 *   - free (no key, or "node": "" after a release): take it, kvStore_Create
 *     or a revision-checked kvStore_Update, so that one node wins;
 *   - ours: rewrite it every SPATE_CLUSTER_LEASE_RENEW_MS, again checked
 *     against the revision we wrote last (a node that took it meanwhile
 *     makes ours fail: lost);
 *   - another node's: note when its revision last moved, on this node's
 *     clock; unmoved for SPATE_CLUSTER_LEASE_TTL_MS, its holder is taken
 *     for dead and the lease taken over, checked against that revision.
 * The holder acts only until TTL - RENEW after the renewal it sent last:
 * before another node, which counts TTL from when it saw that renewal, can
 * take it. A change of holder is posted to the loop, which tells the
 * registry's watchers. Stopping releases the leases held.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/internal.h"
#include "common/clock.h"
#include "common/log.h"

#define MS_NS 1000000ull

typedef struct lease {
    char key[CLUSTER_LEASE_KEY_MAX + 1]; /* KIND.NAME, the map's key */
    int want;                            /* asked for since its last drop */
    int mine;
    uint64_t until_ns;               /* mine: acts until then (monotonic) */
    uint64_t renewed_ns;             /* mine: when the last write was sent */
    uint64_t rev;                    /* the revision last seen or written */
    uint64_t seen_ns;                /* another's: when rev was first seen */
    char holder[CLUSTER_ID_LEN + 1]; /* "" while taken and not yet confirmed */
    int taken;                       /* written as ours, to be confirmed */
} lease;

static uint64_t now_ns(void)
{
    return clock_mono_ns();
}

/* {"node": ID, "expires_ms": ...} for this node, or the release. */
static int lease_value(cluster *c, int release, char *out, size_t cap)
{
    long long expires = release ? 0 : (long long)clock_now_ms() + SPATE_CLUSTER_LEASE_TTL_MS;
    return snprintf(out, cap, "{\"node\":\"%s\",\"expires_ms\":%lld}", release ? "" : c->id,
                    expires);
}

/* The holder a value names into node ("" when released or unreadable, or
 * refused: its seal does not hold; then the next write, checked against its
 * revision, replaces it). */
static void value_node(cluster *c, kvEntry *e, char node[CLUSTER_ID_LEN + 1])
{
    node[0] = '\0';
    if (kvEntry_ValueLen(e) > 256 + (int)SEAL_VALUE_EXTRA) return;
    char *text = NULL;
    if (cluster__kv_open(c, e, &text) != 0 || !text) return;
    const char *at = strstr(text, "\"node\":\"");
    size_t n = at ? strcspn(at + 8, "\"") : 0;
    if (at && n <= CLUSTER_ID_LEN) {
        memcpy(node, at + 8, n);
        node[n] = '\0';
    }
    free(text);
}

typedef struct outcome {
    int mine;
    uint64_t rev, renewed_ns;
    char holder[CLUSTER_ID_LEN + 1];
    int taken;
    int known; /* the bucket answered */
} outcome;

/* Written as ours, but not acted on yet: the next look confirms it (it
 * still names this node at that revision) with a renewal. nats-server 2.9
 * lets two revision-checked writes in flight at once both pass their check
 * on a replicated stream; the later one's value stands, and the other
 * node's confirming write, checked against a revision that has moved on,
 * fails. So one node acts, a tick later. */
static void taken(cluster *c, outcome *o, uint64_t rev)
{
    (void)c;
    *o = (outcome){.mine = 0, .rev = rev, .taken = 1, .known = 1};
}

/* One look at a lease (a copy of its state in l): blocking. */
static void step(cluster *c, const lease *l, outcome *o)
{
    char k[CLUSTER_LEASE_KEY_MAX + 8], val[128];
    snprintf(k, sizeof k, "lease.%s", l->key);
    lease_value(c, 0, val, sizeof val);
    *o = (outcome){.mine = l->mine, .rev = l->rev, .renewed_ns = l->renewed_ns};
    snprintf(o->holder, sizeof o->holder, "%s", l->holder);
    kvEntry *e = NULL;
    uint64_t t0 = now_ns(), rev = 0;
    natsStatus s = kvStore_Get(&e, c->kv, k);
    if (s == NATS_NOT_FOUND) {
        o->known = 1;
        o->mine = 0;
        o->holder[0] = '\0';
        if (cluster__kv_create(c, &rev, k, val) == NATS_OK) taken(c, o, rev);
        return;
    }
    if (s != NATS_OK) return; /* NATS away: nothing known; ours may expire */
    o->known = 1;
    char node[CLUSTER_ID_LEN + 1];
    value_node(c, e, node);
    uint64_t seen = kvEntry_Revision(e);
    kvEntry_Destroy(e);
    int ours = strcmp(node, c->id) == 0;
    /* What this node wrote last still stands: held (or taken a tick ago,
     * and now confirmed). Ours otherwise (left by this node before a
     * restart: same id), free, or another's gone quiet: taken, with a
     * write checked against the revision read, so that of two nodes one
     * wins, and confirmed at the next look. */
    int confirmed = ours && l->rev && seen == l->rev;
    /* A replica behind (a direct get) may show our previous renewal: the
     * check is against the one we wrote. */
    if (ours && l->mine && seen < l->rev) {
        seen = l->rev;
        confirmed = 1;
    }
    int quiet = !ours && node[0] && seen == l->rev && l->seen_ns &&
                t0 - l->seen_ns >= SPATE_CLUSTER_LEASE_TTL_MS * MS_NS;
    int due = !l->mine || t0 - l->renewed_ns >= SPATE_CLUSTER_LEASE_RENEW_MS * MS_NS;
    if ((ours && due) || !node[0] || quiet) {
        if (cluster__kv_update(c, &rev, k, val, seen) == NATS_OK) {
            if (confirmed) {
                if (!l->mine) log_info("cluster: this node holds lease %s", l->key);
                *o = (outcome){.mine = 1, .rev = rev, .renewed_ns = t0, .known = 1};
                snprintf(o->holder, sizeof o->holder, "%s", c->id);
            } else {
                taken(c, o, rev);
            }
            if (quiet)
                log_info("cluster: lease %s of node %s unrenewed for %d ms: claimed (revision "
                         "%llu, now %llu)",
                         l->key, node, SPATE_CLUSTER_LEASE_TTL_MS, (unsigned long long)seen,
                         (unsigned long long)rev);
            return;
        }
        o->mine = 0; /* another node was first */
        o->holder[0] = '\0';
        o->rev = 0;
        return;
    }
    if (ours) return; /* held, not due */
    o->mine = 0;
    snprintf(o->holder, sizeof o->holder, "%s", node);
    o->rev = seen;
}

/* The keys to look at this tick (wanted or to release), copied. */
typedef struct snapshot {
    lease *v;
    size_t n;
} snapshot;

static void copy_one(const char *key, void *value, void *data)
{
    snapshot *s = data;
    s->v[s->n++] = *(lease *)value;
}

static void notify(void *arg)
{
    cluster *c = arg;
    if (c->reg && !c->quiet) cluster__registry_leases_changed(c->reg);
}

/* Releases a lease this node holds: "node": "" at once frees it for the
 * others (they need not wait for it to age). */
static void release(cluster *c, const lease *l)
{
    char k[CLUSTER_LEASE_KEY_MAX + 8], val[128];
    snprintf(k, sizeof k, "lease.%s", l->key);
    lease_value(c, 1, val, sizeof val);
    if (cluster__kv_update(c, NULL, k, val, l->rev) == NATS_OK)
        log_info("cluster: released lease %s", l->key);
}

static void tick(cluster *c)
{
    pthread_mutex_lock(&c->lease_mu);
    snapshot snap = {calloc(c->leases.count + 1, sizeof(lease)), 0};
    if (snap.v) strmap_each(&c->leases, copy_one, &snap);
    pthread_mutex_unlock(&c->lease_mu);
    if (!snap.v) return;
    int changed = 0;
    for (size_t i = 0; i < snap.n && !c->stopping; i++) {
        lease *l = &snap.v[i];
        outcome o = {0};
        if (l->want)
            step(c, l, &o);
        else if (l->mine || l->taken)
            release(c, l);
        uint64_t now = now_ns();
        pthread_mutex_lock(&c->lease_mu);
        lease *cur = strmap_get(&c->leases, l->key, strlen(l->key));
        if (cur && !l->want && !cur->want) { /* dropped: forgotten */
            strmap_remove(&c->leases, cur->key);
            changed |= cur->mine;
            free(cur);
            cur = NULL;
        } else if (cur && l->want && o.known) {
            if (cur->mine != o.mine || strcmp(cur->holder, o.holder) != 0) changed = 1;
            if (o.rev != cur->rev) cur->seen_ns = now;
            cur->mine = o.mine;
            cur->taken = o.taken;
            cur->rev = o.rev;
            cur->renewed_ns = o.renewed_ns;
            if (o.mine)
                cur->until_ns = o.renewed_ns +
                                (SPATE_CLUSTER_LEASE_TTL_MS - SPATE_CLUSTER_LEASE_RENEW_MS) * MS_NS;
            snprintf(cur->holder, sizeof cur->holder, "%s", o.holder);
        }
        /* Not renewed in time (NATS away): ours no more. */
        if (cur && cur->mine && now >= cur->until_ns) {
            cur->mine = 0;
            cur->holder[0] = '\0';
            changed = 1;
            log_warn("cluster: lease %s lapsed (not renewed in time)", cur->key);
        }
        pthread_mutex_unlock(&c->lease_mu);
    }
    free(snap.v);
    if (changed) bridge_post(c->bridge, notify, NULL, c);
}

static void *lease_main(void *arg)
{
    cluster *c = arg;
    while (!c->stopping) {
        tick(c);
        struct timespec ts = clock_mono_after(SPATE_CLUSTER_LEASE_TICK_MS);
        pthread_mutex_lock(&c->lease_mu);
        while (!c->stopping && !c->lease_wake &&
               pthread_cond_timedwait(&c->lease_cv, &c->lease_mu, &ts) != ETIMEDOUT) {
        }
        c->lease_wake = 0;
        pthread_mutex_unlock(&c->lease_mu);
    }
    /* Stopping: what is held is released, for another node to take now. */
    pthread_mutex_lock(&c->lease_mu);
    snapshot snap = {calloc(c->leases.count + 1, sizeof(lease)), 0};
    if (snap.v) strmap_each(&c->leases, copy_one, &snap);
    pthread_mutex_unlock(&c->lease_mu);
    for (size_t i = 0; snap.v && i < snap.n; i++)
        if (snap.v[i].mine || snap.v[i].taken) release(c, &snap.v[i]);
    free(snap.v);
    return NULL;
}

void cluster__leases_init(cluster *c)
{
    pthread_mutex_init(&c->lease_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->lease_cv, &ca);
    pthread_condattr_destroy(&ca);
    strmap_init(&c->leases);
}

void cluster__leases_start(cluster *c)
{
    if (!c->leasing && pthread_create(&c->lease_thread, NULL, lease_main, c) == 0) c->leasing = 1;
}

static void free_lease(const char *key, void *value, void *data)
{
    free(value);
}

void cluster__leases_stop(cluster *c)
{
    if (c->leasing) {
        pthread_mutex_lock(&c->lease_mu);
        pthread_cond_signal(&c->lease_cv);
        pthread_mutex_unlock(&c->lease_mu);
        pthread_join(c->lease_thread, NULL);
        c->leasing = 0;
    }
    strmap_each(&c->leases, free_lease, NULL);
    strmap_free(&c->leases);
    pthread_mutex_destroy(&c->lease_mu);
    pthread_cond_destroy(&c->lease_cv);
}

int cluster__lease_query(cluster *c, const char *key, char *holder, size_t cap)
{
    if (cap) holder[0] = '\0';
    if (strlen(key) > CLUSTER_LEASE_KEY_MAX) return 0;
    int mine = 0;
    pthread_mutex_lock(&c->lease_mu);
    lease *l = strmap_get(&c->leases, key, strlen(key));
    if (!l && c->leases.count < SPATE_CLUSTER_LEASES_MAX && (l = calloc(1, sizeof *l)) != NULL) {
        snprintf(l->key, sizeof l->key, "%s", key);
        if (strmap_put(&c->leases, l->key, l) != 0) {
            free(l);
            l = NULL;
        }
        c->lease_wake = 1; /* a new one is looked at now, not at the next tick */
        pthread_cond_signal(&c->lease_cv);
    }
    if (l) {
        l->want = 1;
        mine = l->mine && now_ns() < l->until_ns;
        if (cap) snprintf(holder, cap, "%s", mine ? c->id : l->holder);
    }
    pthread_mutex_unlock(&c->lease_mu);
    return mine;
}

void cluster__lease_drop(cluster *c, const char *key)
{
    pthread_mutex_lock(&c->lease_mu);
    lease *l = strmap_get(&c->leases, key, strlen(key));
    if (l) {
        l->want = 0;
        c->lease_wake = 1;
        pthread_cond_signal(&c->lease_cv);
    }
    pthread_mutex_unlock(&c->lease_mu);
}
