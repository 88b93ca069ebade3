/*
 * registry_js.c - the registry interface (store/registry.h) of a cluster.
 *
 * Each node keeps its own registry (SQLite, wrapped here: versions, numbers
 * and artifact files are local) and the nodes agree through a JetStream
 * key-value bucket:
 *   fn.NAME           {"sha256", "size", "origin", "config", "version",
 *                     "latest"}: the function's active version, its artifact
 *                     in the artifact stream, and its number: each node stores
 *                     it under that number, so NAME:3 is the same code
 *                     everywhere; latest is the highest number given
 *   ve.NAME.N         version N as fn.NAME named it when it was made (the
 *                     same JSON): a node that lacks it (it joined later) fetches
 *                     and stores it, not active, so NAME:N runs everywhere;
 *                     its artifact stays in the stream while one names it
 *   al.FUNCTION.ALIAS an alias (entries.c); kept in memory like schedules
 *   tr.FUNCTION.TOPIC the trigger's configuration (registry_trigger_json)
 *   sc.NAME           a schedule, with the time it last fired (entries.c)
 *   so.NAME           a source, its URL whole (entries.c)
 *   lease.KIND.NAME   who runs a schedule or a source now (lease.c)
 * A put or delete made through this registry is made locally, then written
 * to the bucket on the worker thread (with the artifact's chunks first).
 * The watcher thread follows the bucket; a change another node made is
 * fetched if need be and handed to the events (the scheduler), which makes
 * this node match through this same registry: a put of exactly the version
 * being applied, or a delete being applied, is recorded here only.
 *
 * A rollback is an fn entry naming a version a node has already: that node
 * makes it active again (registry_events.function_activate) rather than
 * deploying it anew; one that lacks it (it joined later) stores it under
 * its number. Two nodes that deploy one function at the same moment both
 * number their version alike: the last write to the bucket stands, and a
 * node that kept the other under that number logs that it cannot apply it.
 *
 * Versions a node lacks and aliases: registry_versions.c.
 *
 * Schedules, sources and aliases live in the bucket only: this registry keeps the
 * bucket's view of them in memory (changed at once by a put or remove made
 * through it, then by what the watcher hears), and tells their watchers
 * when another node changed them; registry_sync answers once the writes
 * queued before it are in the bucket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/registry_js.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/fnconfig_json.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/strmap.h"

static void apply(rjs *r, const char *name);

/* --- The registry entry: a function version as JSON ------------------------------------ */

/* {"sha256", "size", "origin", "config": as GET /v1/functions/NAME shows it,
 * with the values of env and secrets} */
static char *entry_json(const rjs *r, const reg_version *v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "sha256", v->sha256);
    cJSON_AddNumberToObject(o, "size", (double)v->size);
    cJSON_AddStringToObject(o, "origin", r->c->id);
    cJSON_AddItemToObject(o, "config", fnconfig_json(&v->config, 1, 1));
    cJSON_AddNumberToObject(o, "version", v->version);
    /* The highest number given so far: a node that joined later (it has
     * only the versions made active since) numbers its next deploy after
     * it, not after its own. */
    uint32_t next = 0;
    registry_next_version(r->local, v->function, &next);
    cJSON_AddNumberToObject(o, "latest", next > v->version ? next - 1 : v->version);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The SHA-256 a parsed entry names into sha; -1 if it names none. */
static int sha_of(const cJSON *o, char sha[HASH_HEX_LEN + 1])
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "sha256");
    if (!cJSON_IsString(s) || strlen(s->valuestring) != HASH_HEX_LEN) return -1;
    memcpy(sha, s->valuestring, HASH_HEX_LEN + 1);
    return 0;
}

/* Reads an entry: its SHA-256 into sha and its configuration into cfg. */
int rjs_entry_parse(const char *text, char sha[HASH_HEX_LEN + 1], fn_config *cfg, char *why,
                    size_t cap)
{
    cJSON *o = cJSON_Parse(text);
    if (sha_of(o, sha) != 0) {
        snprintf(why, cap, "malformed registry entry");
        cJSON_Delete(o);
        return -1;
    }
    int rc = fnconfig_from_json(cJSON_GetObjectItemCaseSensitive(o, "config"), cfg, why, cap);
    cJSON_Delete(o);
    return rc;
}

/* The SHA-256 an entry's text names into sha; -1 if it names none. */
int rjs_entry_sha(const char *text, char sha[HASH_HEX_LEN + 1])
{
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    int rc = sha_of(o, sha);
    cJSON_Delete(o);
    return rc;
}

/* The version number an entry's text names (member "version"; "latest":
 * the highest given); 0 if none (one written before numbers were shared:
 * the applying node numbers it itself). */
static uint32_t entry_number(const char *text, const char *member)
{
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, member);
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    cJSON_Delete(o);
    return d >= 1 && d <= SPATE_VERSION_MAX ? (uint32_t)d : 0;
}

uint32_t rjs_entry_version(const char *text)
{
    return entry_number(text, "version");
}

/* The same version and configuration, whoever deployed it. An entry
 * without a number matches on the rest (one from an older spate would
 * otherwise be deployed again at each start). */
static int same_entry(const char *x, const char *y)
{
    if (!x || !y) return 0;
    cJSON *a = cJSON_Parse(x), *b = cJSON_Parse(y);
    cJSON_DeleteItemFromObject(a, "origin");
    cJSON_DeleteItemFromObject(b, "origin");
    cJSON_DeleteItemFromObject(a, "latest"); /* each node's own history */
    cJSON_DeleteItemFromObject(b, "latest");
    if (!cJSON_HasObjectItem(a, "version") || !cJSON_HasObjectItem(b, "version")) {
        cJSON_DeleteItemFromObject(a, "version");
        cJSON_DeleteItemFromObject(b, "version");
    }
    int same = cJSON_Compare(a, b, 1);
    cJSON_Delete(a);
    cJSON_Delete(b);
    return same;
}

typedef struct first {
    rjs *r;
    uint32_t version; /* 0: the first listed, the active one */
    char *entry;
} first;

static int first_version(const reg_version *v, int64_t created, void *data)
{
    first *f = data;
    if (f->version && v->version != f->version) return 0;
    f->entry = entry_json(f->r, v);
    return 1;
}

/* The entry of version of name as this node has it (0: what it runs, its
 * active version), or NULL. */
char *rjs_version_entry(rjs *r, const char *name, uint32_t version)
{
    first f = {r, version, NULL};
    registry_each_version(r->local, name, first_version, &f);
    return f.entry;
}

static fn_sync *sync_of(rjs *r, const char *name);

/* The entry of what this node runs of name, or NULL. */
static char *local_entry(rjs *r, const char *name)
{
    fn_sync *s = sync_of(r, name);
    return s && s->active ? rjs_version_entry(r, name, s->active) : NULL;
}

static fn_sync *sync_of(rjs *r, const char *name)
{
    fn_sync *s = strmap_get(&r->syncs, name, strlen(name));
    if (s) return s;
    s = calloc(1, sizeof *s);
    if (s) snprintf(s->name, sizeof s->name, "%s", name);
    if (s && strmap_put(&r->syncs, s->name, s) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

struct sha_use {
    const char *sha;
    int used;
};

static void count_use(const char *key, void *value, void *data)
{
    const fn_sync *s = value;
    struct sha_use *u = data;
    char sha[HASH_HEX_LEN + 1];
    if (!u->used && s->entry && rjs_entry_sha(s->entry, sha) == 0 && strcmp(sha, u->sha) == 0)
        u->used = 1;
}

static void count_version_use(const char *key, void *value, void *data)
{
    const ve_entry *e = value;
    struct sha_use *u = data;
    char sha[HASH_HEX_LEN + 1];
    if (!u->used && rjs_entry_sha(e->text, sha) == 0 && strcmp(sha, u->sha) == 0) u->used = 1;
}

/* A function's entry is replaced or deleted: if no entry (nor version
 * entry) names the artifact it named any more, the job purges it from the
 * artifact stream after the registry write. (A deploy uploads its artifact again each time, so one
 * purged while another node deploys the same bytes comes back with that
 * deploy's next write.) */
void rjs_purge_if_unused(rjs *r, job *j, const char *old_entry)
{
    char sha[HASH_HEX_LEN + 1];
    if (rjs_entry_sha(old_entry, sha) != 0) return;
    struct sha_use u = {.sha = sha};
    strmap_each(&r->syncs, count_use, &u);
    strmap_each(&r->vers, count_version_use, &u);
    if (!u.used) memcpy(j->purge, sha, sizeof j->purge);
}

/* --- The worker thread: JetStream calls that block ------------------------------------- */

static void job_free(void *arg)
{
    job *j = arg;
    buf_free(&j->data);
    free(j->value);
    free(j);
}

static void job_publish(job *j)
{
    natsStatus s = cluster__chunks_put(j->c, j->sha, j->path, j->err, sizeof j->err);
    if (!j->err[0] && s == NATS_OK) {
        char key[SPATE_NAME_MAX + 8];
        snprintf(key, sizeof key, "fn.%s", j->name);
        s = cluster__kv_put(j->c, key, j->value);
    }
    if (!j->err[0] && s != NATS_OK) snprintf(j->err, sizeof j->err, "%s", natsStatus_GetText(s));
}

/* The schedule j->key fired for j->fire_ms: written into its entry,
 * checked against the revision read, unless the entry is gone, another
 * schedule of that name (created anew) or knows of a later run. */
static void job_fired(job *j)
{
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, j->c->kv, j->key);
    if (s == NATS_NOT_FOUND) return;
    if (s != NATS_OK) {
        snprintf(j->err, sizeof j->err, "%s", natsStatus_GetText(s));
        return;
    }
    char *text = NULL;
    int opened = cluster__kv_open(j->c, e, &text);
    uint64_t rev = kvEntry_Revision(e);
    kvEntry_Destroy(e);
    if (opened != 0) return; /* refused (logged): not ours to update */
    reg_schedule sc;
    char *payload = NULL;
    int ok = text && cluster__schedule_parse(text, &sc, &payload) == 0;
    free(text);
    char *value = NULL;
    if (ok && sc.created_ms == j->created_ms && sc.last_fire_ms < j->fire_ms) {
        sc.last_fire_ms = j->fire_ms;
        value = cluster__schedule_json(&sc);
    }
    free(payload);
    if (!value) return;
    s = cluster__kv_update(j->c, NULL, j->key, value, rev);
    free(value);
    if (s != NATS_OK) snprintf(j->err, sizeof j->err, "%s", natsStatus_GetText(s));
}

static void job_work(void *arg)
{
    job *j = arg;
    cluster *c = j->c;
    /* While a NATS server is lost, its clients reconnect and JetStream
     * elects new leaders: seconds in which calls fail. Try again for a
     * while before giving up. */
    for (int tries = 0; tries < SPATE_CLUSTER_JOB_TRIES && !c->stopping; tries++) {
        j->err[0] = '\0';
        buf_free(&j->data);
        if (j->kind == JOB_PUBLISH) {
            job_publish(j);
        } else if (j->kind == JOB_DELETE) {
            natsStatus s = cluster__kv_delete(c, j->key);
            if (s != NATS_OK) snprintf(j->err, sizeof j->err, "%s", natsStatus_GetText(s));
        } else if (j->kind == JOB_PUT) {
            natsStatus s = cluster__kv_put(c, j->key, j->value);
            if (s != NATS_OK) snprintf(j->err, sizeof j->err, "%s", natsStatus_GetText(s));
        } else if (j->kind == JOB_FIRED) {
            job_fired(j);
        } else if (j->kind == JOB_SYNC) {
            break; /* the jobs before it are done: nothing to do */
        } else {
            cluster__chunks_get(c, j->sha, &j->data, j->err, sizeof j->err);
        }
        if (!j->err[0] || strstr(j->err, "refused")) break;
        usleep(SPATE_CLUSTER_JOB_RETRY_MS * 1000);
    }
    if (!j->err[0] && j->purge[0]) cluster__chunks_purge(c, j->purge);
}

static void fetched(rjs *r, job *j);

/* On the loop: a job is done. */
static void job_done(void *arg)
{
    job *j = arg;
    if (j->kind == JOB_SYNC) {
        j->done(j->done_data, j->r->failed == j->seq && j->seq ? ERR_STORE : 0);
    } else if (j->kind == JOB_FETCH) {
        /* A deploy from the registry: not while stopping. */
        if (!j->c->quiet) fetched(j->r, j);
    } else if (j->kind == JOB_BACKFILL) {
        rjs_backfill_fetched(j->r, j);
    } else if (j->err[0]) {
        j->r->failed = j->seq;
        log_error("cluster: cannot %s the registry: %s key=%s",
                  j->kind == JOB_DELETE ? "delete from" : "update", j->err,
                  j->key[0] ? j->key : j->name);
    }
    job_free(j);
}

job *rjs_new_job(rjs *r, enum job_kind kind, const char *name)
{
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->r = r;
    j->c = r->c;
    j->kind = kind;
    snprintf(j->name, sizeof j->name, "%s", name);
    return j;
}

void rjs_submit(job *j)
{
    j->seq = j->kind == JOB_SYNC ? j->r->queued : ++j->r->queued;
    bridge_run(j->c->bridge, job_work, job_done, job_free, j);
}

/* --- Following the registry ------------------------------------------------------------------- */

typedef struct kv_deploy {
    rjs *r;
    char name[SPATE_NAME_MAX + 1];
} kv_deploy;

static void applied(rjs *r, const char *name)
{
    fn_sync *s = sync_of(r, name);
    if (!s) return;
    s->applying = 0;
    free(s->deploying);
    s->deploying = NULL;
    if (s->changed) {
        s->changed = 0;
        apply(r, name);
    }
    rjs_backfill(r, name);
}

static void on_kv_deployed(void *data, int status, const char *message, uint32_t version)
{
    kv_deploy *d = data;
    if (status >= 400)
        log_warn("cluster: cannot deploy from the registry: %s fn=%s", message, d->name);
    else
        log_info("cluster: deployed from the registry fn=%s version=%u", d->name, version);
    applied(d->r, d->name);
    free(d);
}

/* The registry's entry names a version this node has but does not run (a
 * rollback made elsewhere): make it active here. 1 when that started. */
static int activate(rjs *r, fn_sync *s)
{
    uint32_t version = rjs_entry_version(s->entry);
    char *have = version ? rjs_version_entry(r, s->name, version) : NULL;
    int same = same_entry(have, s->entry);
    free(have);
    kv_deploy *d = same && r->ev.function_activate ? calloc(1, sizeof *d) : NULL;
    char *deploying = d ? strdup(s->entry) : NULL;
    if (!deploying) {
        free(d);
        return 0;
    }
    d->r = r;
    snprintf(d->name, sizeof d->name, "%s", s->name);
    free(s->deploying);
    s->deploying = deploying;
    s->applying = 1;
    r->ev.function_activate(s->name, version, on_kv_deployed, d, r->ev.data);
    return 1;
}

/* The registry holds a version of name this node does not run: fetch its
 * artifact and deploy it; or it holds none of a function this node runs:
 * delete it here. */
static void apply(rjs *r, const char *name)
{
    fn_sync *s = r->c ? sync_of(r, name) : NULL;
    if (!s) return;
    if (s->applying) {
        s->changed = 1;
        return;
    }
    char *mine = local_entry(r, name);
    if (!s->entry && s->refused) {
        /* A forged or foreign entry is all the bucket has (at start): keep
         * what runs here until a sealed one comes. */
        if (mine)
            log_warn("cluster: the registry's entry was refused: this node keeps the version "
                     "it runs fn=%s",
                     name);
        free(mine);
        return;
    }
    if (!s->entry) {
        if (mine && r->ev.function_deleted) {
            s->deleting = 1; /* the delete that follows is recorded here only */
            if (r->ev.function_deleted(name, r->ev.data) == 0)
                log_info("cluster: deleted as the registry says fn=%s", name);
            s->deleting = 0;
        }
        free(mine);
        return;
    }
    char sha[HASH_HEX_LEN + 1], why[256];
    fn_config cfg;
    if (rjs_entry_parse(s->entry, sha, &cfg, why, sizeof why) != 0) {
        log_warn("cluster: %s fn=%s", why, name);
        free(mine);
        return;
    }
    int same = same_entry(mine, s->entry);
    free(mine);
    fnconfig_free(&cfg);
    if (same || activate(r, s)) return;
    /* Another version under that number here: two nodes numbered theirs
     * alike (or an older spated numbered them per node). Its put would
     * fail; say why, and keep what runs. */
    uint32_t number = rjs_entry_version(s->entry);
    char *other = number ? rjs_version_entry(r, name, number) : NULL;
    int taken = other != NULL;
    free(other);
    if (taken) {
        log_warn("cluster: this node has another version %u (two nodes numbered a version "
                 "alike): not applied fn=%s",
                 number, name);
        return;
    }
    job *j = rjs_new_job(r, JOB_FETCH, name);
    if (!j) return;
    memcpy(j->sha, sha, sizeof j->sha);
    s->applying = 1;
    rjs_submit(j);
}

static void fetched(rjs *r, job *j)
{
    fn_sync *s = sync_of(r, j->name);
    if (j->err[0] || !s || !s->entry) {
        if (j->err[0]) log_warn("cluster: %s fn=%s", j->err, j->name);
        applied(r, j->name);
        return;
    }
    char sha[HASH_HEX_LEN + 1], why[256];
    fn_config cfg;
    kv_deploy *d = calloc(1, sizeof *d);
    int parsed = d && rjs_entry_parse(s->entry, sha, &cfg, why, sizeof why) == 0;
    if (!parsed || strcmp(sha, j->sha) != 0) {
        if (parsed) fnconfig_free(&cfg);
        free(d);
        applied(r, j->name); /* a newer entry came; apply() runs again */
        return;
    }
    d->r = r;
    snprintf(d->name, sizeof d->name, "%s", j->name);
    free(s->deploying);
    s->deploying = strdup(s->entry);
    if (!r->ev.function_put) {
        fnconfig_free(&cfg);
        on_kv_deployed(d, 503, "nothing applies registry changes here", 0);
        return;
    }
    r->ev.function_put(j->name, &cfg, &j->data, on_kv_deployed, d, r->ev.data);
}

static void on_trigger_applied(void *data, int status)
{
    char *what = data;
    if (status)
        log_warn("cluster: cannot apply trigger %s from the registry: %s", what, err_str(status));
    free(what);
}

/* key is FUNCTION.TOPIC; text the configuration, NULL when removed. */
static void on_trigger_entry(rjs *r, const char *key, const char *text)
{
    const char *dot = strchr(key, '.');
    if (!dot || (size_t)(dot - key) > SPATE_NAME_MAX) return;
    char function[SPATE_NAME_MAX + 1];
    snprintf(function, sizeof function, "%.*s", (int)(dot - key), key);
    if (function[0] == '=') function[0] = '@'; /* a queue's receiver (trigger_key) */
    const char *topic = dot + 1;
    tr_entry *t = strmap_get(&r->trigs, key, strlen(key));
    if (!text) {
        if (t) {
            strmap_remove(&r->trigs, key);
            free(t);
        }
        if (r->ev.trigger_removed)
            r->ev.trigger_removed(topic, function, on_trigger_applied, strdup(key), r->ev.data);
        return;
    }
    cJSON *o = cJSON_Parse(text);
    queue_sub_config cfg;
    registry_trigger_from_json(o, topic, function, &cfg);
    cJSON_Delete(o);
    if (!t && strlen(key) < sizeof t->key && strlen(topic) < sizeof t->topic &&
        (t = calloc(1, sizeof *t)) != NULL) {
        snprintf(t->key, sizeof t->key, "%s", key);
        snprintf(t->topic, sizeof t->topic, "%s", topic);
        if (strmap_put(&r->trigs, t->key, t) != 0) {
            free(t);
            t = NULL;
        }
    }
    if (t) t->cfg = cfg;
    if (r->ev.trigger_put)
        r->ev.trigger_put(topic, &cfg, on_trigger_applied, strdup(key), r->ev.data);
}

/* --- Schedules and sources ------------------------------------------------------------------- */

/* Tells kind's watcher that the bucket's view changed: not before the
 * current values are all in (then once, for all of them). */
static void tell(rjs *r, enum registry_kind kind)
{
    if (r->ready && r->watchers[kind].cb) r->watchers[kind].cb(r->watchers[kind].data);
}

void cluster__registry_leases_changed(rjs *r)
{
    tell(r, REGISTRY_SCHEDULES);
    tell(r, REGISTRY_SOURCES);
}

static void sc_free(sc_entry *e)
{
    if (!e) return;
    free(e->payload);
    free(e);
}

/* Puts a copy of sc (payload in payload, taken) into the view. */
static int sc_keep(rjs *r, const reg_schedule *sc, char *payload)
{
    sc_entry *e = calloc(1, sizeof *e), *old;
    if (!e) {
        free(payload);
        return ERR_NOMEM;
    }
    e->s = *sc;
    e->payload = payload;
    e->s.payload = payload;
    old = strmap_get(&r->scheds, sc->name, strlen(sc->name));
    if (strmap_put(&r->scheds, e->s.name, e) != 0) {
        sc_free(e);
        return ERR_NOMEM;
    }
    sc_free(old);
    return 0;
}

/* The same schedule but perhaps for when it last fired. */
static int same_schedule(const reg_schedule *a, const reg_schedule *b)
{
    return a->created_ms == b->created_ms && !strcmp(a->expression, b->expression) &&
           !strcmp(a->zone, b->zone) && !strcmp(a->topic, b->topic) &&
           !strcmp(a->function, b->function) && !a->payload == !b->payload &&
           (!a->payload ||
            (a->payload_len == b->payload_len && !memcmp(a->payload, b->payload, a->payload_len)));
}

static void on_schedule_entry(rjs *r, const char *name, const char *text)
{
    sc_entry *old = strmap_get(&r->scheds, name, strlen(name));
    if (!text) {
        if (!old) return;
        strmap_remove(&r->scheds, name);
        sc_free(old);
        tell(r, REGISTRY_SCHEDULES);
        return;
    }
    reg_schedule sc;
    char *payload = NULL;
    if (cluster__schedule_parse(text, &sc, &payload) != 0 || strcmp(sc.name, name) != 0) {
        free(payload);
        log_warn("cluster: malformed registry entry sc.%s: ignored", name);
        return;
    }
    if (old && same_schedule(&old->s, &sc)) {
        /* A later run's record, or an older one heard late (this node
         * wrote a newer one meanwhile): the latest counts. */
        free(payload);
        if (sc.last_fire_ms <= old->s.last_fire_ms) return;
        old->s.last_fire_ms = sc.last_fire_ms;
    } else if (sc_keep(r, &sc, payload) != 0) {
        log_error("cluster: out of memory for schedule %s", name);
        return;
    }
    tell(r, REGISTRY_SCHEDULES);
}

static void on_source_entry(rjs *r, const char *name, const char *text)
{
    so_entry *old = strmap_get(&r->srcs, name, strlen(name));
    if (!text) {
        if (!old) return;
        strmap_remove(&r->srcs, name);
        free(old);
        tell(r, REGISTRY_SOURCES);
        return;
    }
    reg_source src;
    if (cluster__source_parse(text, &src) != 0 || strcmp(src.name, name) != 0) {
        log_warn("cluster: malformed registry entry so.%s: ignored", name);
        return;
    }
    if (old && !memcmp(&old->s, &src, sizeof src)) return;
    so_entry *e = old ? old : calloc(1, sizeof *e);
    if (e) e->s = src; /* the map's key is e->s.name: set before the put */
    explicit_bzero(&src, sizeof src);
    if (!e || (!old && strmap_put(&r->srcs, e->s.name, e) != 0)) {
        free(e);
        log_error("cluster: out of memory for source %s", name);
        return;
    }
    tell(r, REGISTRY_SOURCES);
}

/* A function here that the registry does not hold (deleted while this node
 * was away) goes: in cluster mode the registry decides. */
static int reconcile_one(const reg_version *v, int64_t created, void *data)
{
    fn_sync *s = sync_of(data, v->function);
    if (s) s->active = v->version;
    return 0;
}

static void apply_each(const char *key, void *value, void *data)
{
    apply(data, key);
}

static void backfill_each(const char *key, void *value, void *data)
{
    rjs_backfill(data, key);
}

static int js_schedule_put(registry *reg, const reg_schedule *sc);
static int js_source_put(registry *reg, const reg_source *src);

/* Before schedules and sources were shared, a cluster's node kept them in
 * its own SQLite registry. Those the bucket does not hold move into it
 * (every node then has them); all leave the node's own registry, so that
 * one deleted in the cluster later does not come back at the next start.
 * Of two nodes with one of the same name, the last written stands. */
typedef struct adopt {
    rjs *r;
    char (*names)[SPATE_NAME_MAX + 1];
    size_t n, cap;
} adopt;

static void adopted(adopt *a, const char *name)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        void *v = realloc(a->names, cap * sizeof *a->names);
        if (!v) return; /* kept locally: moved at the next start */
        a->names = v;
        a->cap = cap;
    }
    snprintf(a->names[a->n++], sizeof a->names[0], "%s", name);
}

static void adopt_schedule(const reg_schedule *sc, void *data)
{
    adopt *a = data;
    if (!strmap_get(&a->r->scheds, sc->name, strlen(sc->name))) {
        if (js_schedule_put((registry *)a->r, sc) != 0) return;
        log_info("cluster: schedule %s moved from this node's registry into the cluster's",
                 sc->name);
    }
    adopted(a, sc->name);
}

static void adopt_source(const reg_source *src, void *data)
{
    adopt *a = data;
    if (!strmap_get(&a->r->srcs, src->name, strlen(src->name))) {
        if (js_source_put((registry *)a->r, src) != 0) return;
        log_info("cluster: source %s moved from this node's registry into the cluster's",
                 src->name);
    }
    adopted(a, src->name);
}

static void adopt_local(rjs *r)
{
    adopt a = {.r = r};
    registry_each_schedule(r->local, adopt_schedule, &a);
    for (size_t i = 0; i < a.n; i++) registry_schedule_remove(r->local, a.names[i]);
    a.n = 0;
    registry_each_source(r->local, adopt_source, &a);
    for (size_t i = 0; i < a.n; i++) registry_source_remove(r->local, a.names[i]);
    free(a.names);
}

/* The registry's current values are in: make this node match them. */
static void on_registry_ready(rjs *r)
{
    if (r->ready) return;
    r->ready = 1;
    registry_each_active(r->local, reconcile_one, r);
    strmap_each(&r->syncs, apply_each, r);
    strmap_each(&r->syncs, backfill_each, r);
    adopt_local(r);
    tell(r, REGISTRY_SCHEDULES);
    tell(r, REGISTRY_SOURCES);
    log_info("cluster: registry followed node=%s", r->c->id);
}

/* A change the watcher saw, for the loop. */
typedef struct change {
    rjs *r;
    enum cluster_change kind;
    char key[CLUSTER_KEY_MAX];
    char *text; /* the value, NUL-terminated; NULL: deleted */
} change;

static void drop_change(void *arg)
{
    change *ch = arg;
    free(ch->text);
    free(ch);
}

static int stale_echo(rjs *r, fn_sync *s, const char *text);

static void on_change(void *arg)
{
    change *ch = arg;
    rjs *r = ch->r;
    /* While stopping, registry changes wait for the next start. */
    if (!r->c->quiet) {
        if (ch->kind == CLUSTER_CH_READY) {
            on_registry_ready(r);
        } else if (ch->kind == CLUSTER_CH_TRIGGER) {
            on_trigger_entry(r, ch->key, ch->text);
        } else if (ch->kind == CLUSTER_CH_SCHEDULE) {
            on_schedule_entry(r, ch->key, ch->text);
        } else if (ch->kind == CLUSTER_CH_SOURCE) {
            on_source_entry(r, ch->key, ch->text);
        } else if (ch->kind == CLUSTER_CH_ALIAS) {
            rjs_on_alias_entry(r, ch->key, ch->text);
        } else if (ch->kind == CLUSTER_CH_VERSION) {
            rjs_on_version_entry(r, ch->key, ch->text);
            ch->text = NULL; /* taken */
        } else if (ch->kind == CLUSTER_CH_FUNCTION_REFUSED) {
            fn_sync *s = sync_of(r, ch->key);
            if (s) s->refused = 1;
        } else {
            fn_sync *s = sync_of(r, ch->key);
            if (s) s->refused = 0;
            if (s && stale_echo(r, s, ch->text)) {
                /* keep the newer entry this node wrote */
            } else if (s) {
                free(s->entry);
                s->entry = ch->text; /* NULL for a delete */
                ch->text = NULL;
                if (r->ready) apply(r, ch->key);
            }
        }
    }
    drop_change(ch);
}

/* An entry this node wrote heard back after it wrote a newer one. Another
 * node's entry ends the wait for the echo of the last. */
static int stale_echo(rjs *r, fn_sync *s, const char *text)
{
    if (!s->wrote) return 0;
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    const cJSON *origin = cJSON_GetObjectItemCaseSensitive(o, "origin");
    int mine = cJSON_IsString(origin) && strcmp(origin->valuestring, r->c->id) == 0;
    cJSON_Delete(o);
    if (mine && !same_entry(text, s->wrote)) return 1;
    free(s->wrote);
    s->wrote = NULL;
    return 0;
}

/* From the watcher thread (watch.c): a change, for the loop. */
static void on_heard(void *data, enum cluster_change kind, const char *key, char *text)
{
    rjs *r = data;
    change *ch = calloc(1, sizeof *ch);
    if (!ch) {
        free(text);
        return;
    }
    *ch = (change){.r = r, .kind = kind, .text = text};
    snprintf(ch->key, sizeof ch->key, "%s", key);
    bridge_post(r->c->bridge, on_change, drop_change, ch);
}

void cluster__registry_follow(rjs *r)
{
    if (!r->watching && cluster__watch_start(r->c, on_heard, r, &r->watcher) == 0) r->watching = 1;
}

void cluster__registry_stop(rjs *r)
{
    if (r->watching) pthread_join(r->watcher, NULL);
    r->watching = 0;
    r->c = NULL;
}

/* --- The registry interface ------------------------------------------------------------------ */

/* A version being applied from the registry keeps the number it has
 * there; a new one comes after every number given, here or elsewhere. */
static int js_next_version(registry *reg, const char *name, uint32_t *out)
{
    rjs *r = RJS(reg);
    fn_sync *s = strmap_get(&r->syncs, name, strlen(name));
    uint32_t v = s && s->deploying ? rjs_entry_version(s->deploying) : 0;
    if (v) {
        *out = v;
        return 0;
    }
    int rc = registry_next_version(r->local, name, out);
    uint32_t latest = s && s->entry ? entry_number(s->entry, "latest") : 0;
    if (rc == 0 && latest && latest < UINT32_MAX && latest + 1 > *out) *out = latest + 1;
    return rc;
}

/* Writes value (taken), the entry of name's active version whose artifact
 * is sha, to the bucket with the artifact's chunks (again: one no entry
 * named may have been purged). */
static void publish_entry(rjs *r, const char *name, const char *sha, char *value)
{
    fn_sync *s = sync_of(r, name);
    job *j = rjs_new_job(r, JOB_PUBLISH, name);
    if (!j) {
        free(value);
        return;
    }
    memcpy(j->sha, sha, sizeof j->sha);
    registry_artifact_path(r->local, sha, 0, j->path, sizeof j->path);
    j->value = value;
    /* What this node runs is what the registry will say: no need to apply it. */
    if (s) {
        char *old = s->entry;
        s->entry = j->value ? strdup(j->value) : NULL;
        rjs_purge_if_unused(r, j, old);
        free(old);
        free(s->wrote);
        s->wrote = j->value ? strdup(j->value) : NULL;
    }
    rjs_submit(j);
}

/* The registry's own version (or activation), being applied here: value
 * is freed. */
static int applying_own(rjs *r, const char *name, char *value)
{
    fn_sync *s = sync_of(r, name);
    if (!value || (s && s->deploying && same_entry(value, s->deploying))) {
        free(value);
        return 1;
    }
    return 0;
}

/* Recorded here; and, unless it is the version being applied from the
 * registry, written to the bucket with its artifact's chunks. */
static int js_put_version(registry *reg, const reg_version *v)
{
    rjs *r = RJS(reg);
    const fn_sync *was = strmap_get(&r->syncs, v->function, strlen(v->function));
    int created = r->ready && (!was || !was->entry); /* the registry has no such function */
    int rc = registry_put_version(r->local, v);
    fn_sync *s = rc == 0 ? sync_of(r, v->function) : NULL;
    if (s) s->active = v->version;
    if (rc != 0 || !r->c) return rc;
    char *value = entry_json(r, v);
    if (applying_own(r, v->function, value)) return 0;
    /* A function new to the cluster has no aliases: one in the bucket was
     * set by a node that had not yet heard of its namesake's delete (a
     * race), and would name this one's versions. Its removal goes first. */
    if (created) rjs_drop_aliases(r, v->function, 1);
    char key[CLUSTER_KEY_MAX + 8], *copy = strdup(value);
    publish_entry(r, v->function, v->sha256, value);
    /* After the fn entry (the worker keeps the order): its chunks are in. */
    rjs_ve_key(key, sizeof key, v->function, v->version);
    rjs_ve_keep(r, key, copy ? strdup(copy) : NULL);
    snprintf(key, sizeof key, "ve.%s.%u", v->function, v->version);
    if (copy) rjs_write_key(r, key, copy);
    return 0;
}

/* A rollback: recorded here, then the version's entry goes to the bucket
 * as a put's does. Making the active version active (functions_rollback's
 * probe) writes nothing. */
static int js_activate(registry *reg, const char *name, uint32_t version)
{
    rjs *r = RJS(reg);
    char *was = local_entry(r, name);
    int already = rjs_entry_version(was) == version;
    free(was);
    int rc = registry_activate(r->local, name, version);
    fn_sync *s = rc == 0 ? sync_of(r, name) : NULL;
    if (s) s->active = version;
    if (rc != 0 || !r->c || already) return rc;
    char *value = rjs_version_entry(r, name, version), sha[HASH_HEX_LEN + 1];
    if (applying_own(r, name, value)) return 0;
    if (rjs_entry_sha(value, sha) != 0) {
        free(value);
        return 0;
    }
    publish_entry(r, name, sha, value);
    return 0;
}

static int js_delete_function(registry *reg, const char *name)
{
    rjs *r = RJS(reg);
    int rc = registry_delete_function(r->local, name);
    fn_sync *s = rc == 0 ? sync_of(r, name) : NULL;
    if (s) s->active = 0;
    if (rc != 0 || !r->c) return rc;
    rjs_drop_aliases(r, name, !(s && s->deleting));
    rjs_drop_versions(r, name, !(s && s->deleting));
    if (s && s->deleting) return 0; /* the registry's own delete, applied here */
    job *j = rjs_new_job(r, JOB_DELETE, name);
    if (j) snprintf(j->key, sizeof j->key, "fn.%s", name);
    if (s) {
        char *old = s->entry;
        s->entry = NULL;
        free(s->wrote); /* a delete: every earlier entry of this node is stale */
        s->wrote = strdup("");
        if (j) rjs_purge_if_unused(r, j, old);
        free(old);
    }
    if (j) rjs_submit(j);
    return 0;
}

static int js_each_active(registry *reg, registry_version_cb cb, void *data)
{
    return registry_each_active(RJS(reg)->local, cb, data);
}

static int js_each_version(registry *reg, const char *name, registry_version_cb cb, void *data)
{
    return registry_each_version(RJS(reg)->local, name, cb, data);
}

static int js_artifact_used(registry *reg, const char *sha256)
{
    return registry_artifact_used(RJS(reg)->local, sha256);
}

/* Stored here; the bytes reach the bucket's artifact stream with the version
 * that uses them (js_put_version). */
static void js_artifact_put(registry *reg, const void *bytes, size_t len, int unpack,
                            registry_stored_cb cb, void *data)
{
    registry_artifact_put(RJS(reg)->local, bytes, len, unpack, cb, data);
}

static void js_artifact_path(registry *reg, const char *sha256, int unpacked, char *out, size_t cap)
{
    registry_artifact_path(RJS(reg)->local, sha256, unpacked, out, cap);
}

static int js_artifact_remove(registry *reg, const char *sha256)
{
    return registry_artifact_remove(RJS(reg)->local, sha256);
}

/* A bucket's keys take no '@': an SQS queue's receiver (sched/triggers.h
 * TRIGGERS_RECEIVER, "@receiver") is "=receiver" there, which no function's
 * name can be (on_trigger_entry reads it back). */
static void trigger_key(char *out, size_t cap, const char *topic, const char *function)
{
    snprintf(out, cap, "tr.%s%s.%s", function[0] == '@' ? "=" : "",
             function[0] == '@' ? function + 1 : function, topic);
}

static int js_trigger_put(registry *reg, const char *topic, const queue_sub_config *cfg)
{
    rjs *r = RJS(reg);
    if (!r->c) return ERR_CLOSED;
    job *j = rjs_new_job(r, JOB_PUT, cfg->function);
    if (!j) return ERR_NOMEM;
    trigger_key(j->key, sizeof j->key, topic, cfg->function);
    cJSON *o = registry_trigger_json(topic, cfg);
    j->value = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    rjs_submit(j);
    return 0;
}

static int js_trigger_remove(registry *reg, const char *topic, const char *function)
{
    rjs *r = RJS(reg);
    if (!r->c) return ERR_CLOSED;
    job *j = rjs_new_job(r, JOB_DELETE, function);
    if (!j) return ERR_NOMEM;
    trigger_key(j->key, sizeof j->key, topic, function);
    rjs_submit(j);
    return 0;
}

typedef struct each_tr {
    registry_trigger_cb cb;
    void *data;
} each_tr;

static void each_trigger_one(const char *key, void *value, void *data)
{
    const tr_entry *t = value;
    each_tr *e = data;
    e->cb(t->topic, &t->cfg, e->data);
}

/* The triggers of the bucket as this node last heard (those it wrote itself
 * come back through the watcher). */
static void js_each_trigger(registry *reg, registry_trigger_cb cb, void *data)
{
    each_tr e = {cb, data};
    strmap_each(&RJS(reg)->trigs, each_trigger_one, &e);
}

static void js_set_events(registry *reg, const registry_events *ev)
{
    RJS(reg)->ev = *ev;
}

static void free_sync(const char *key, void *value, void *data)
{
    fn_sync *s = value;
    free(s->entry);
    free(s->deploying);
    free(s->wrote);
    free(s);
}

static void free_trigger(const char *key, void *value, void *data)
{
    free(value);
}

static void free_version(const char *key, void *value, void *data)
{
    ve_entry *e = value;
    free(e->text);
    free(e);
}

static void free_schedule(const char *key, void *value, void *data)
{
    sc_free(value);
}

static void free_source(const char *key, void *value, void *data)
{
    explicit_bzero(value, sizeof(so_entry));
    free(value);
}

static void js_close(registry *reg)
{
    rjs *r = RJS(reg);
    strmap_each(&r->syncs, free_sync, NULL);
    strmap_free(&r->syncs);
    strmap_each(&r->trigs, free_trigger, NULL);
    strmap_free(&r->trigs);
    strmap_each(&r->aliases, free_trigger, NULL); /* plain allocations both */
    strmap_free(&r->aliases);
    strmap_each(&r->vers, free_version, NULL);
    strmap_free(&r->vers);
    strmap_each(&r->scheds, free_schedule, NULL);
    strmap_free(&r->scheds);
    strmap_each(&r->srcs, free_source, NULL);
    strmap_free(&r->srcs);
    registry_close(r->local);
    free(r);
}

/* Queues the write of key (value taken; NULL: its delete). */
int rjs_write_key(rjs *r, const char *key, char *value)
{
    job *j = r->c ? rjs_new_job(r, value ? JOB_PUT : JOB_DELETE, "") : NULL;
    if (!j) {
        free(value);
        return r->c ? ERR_NOMEM : ERR_CLOSED;
    }
    snprintf(j->key, sizeof j->key, "%s", key);
    j->value = value;
    rjs_submit(j);
    return 0;
}

static int js_schedule_put(registry *reg, const reg_schedule *sc)
{
    rjs *r = RJS(reg);
    if (!r->c) return ERR_CLOSED;
    char *value = cluster__schedule_json(sc), key[CLUSTER_KEY_MAX + 8];
    char *payload = sc->payload ? strndup(sc->payload, sc->payload_len) : NULL;
    if (!value || (sc->payload && !payload) || sc_keep(r, sc, payload) != 0) {
        free(value);
        return ERR_NOMEM;
    }
    snprintf(key, sizeof key, "sc.%s", sc->name);
    return rjs_write_key(r, key, value);
}

static int js_schedule_remove(registry *reg, const char *name)
{
    rjs *r = RJS(reg);
    if (!r->c) return ERR_CLOSED;
    sc_free(strmap_remove(&r->scheds, name));
    /* The lease goes with it; written first so that the entry's delete is
     * the last write, the one registry_sync answers for. (A node that has
     * not heard yet may take the lease again: a stale lease key is inert.) */
    char key[CLUSTER_KEY_MAX + 8];
    snprintf(key, sizeof key, "lease.schedule.%s", name);
    rjs_write_key(r, key, NULL);
    snprintf(key, sizeof key, "sc.%s", name);
    return rjs_write_key(r, key, NULL);
}

/* The holder fired name: written into its entry, which the next holder
 * catches up from. */
static int js_schedule_fired(registry *reg, const char *name, int64_t fire_ms)
{
    rjs *r = RJS(reg);
    sc_entry *e = strmap_get(&r->scheds, name, strlen(name));
    if (!r->c) return ERR_CLOSED;
    if (!e) return ERR_NOTFOUND;
    if (fire_ms > e->s.last_fire_ms) e->s.last_fire_ms = fire_ms;
    job *j = rjs_new_job(r, JOB_FIRED, name);
    if (!j) return ERR_NOMEM;
    snprintf(j->key, sizeof j->key, "sc.%s", name);
    j->created_ms = e->s.created_ms;
    j->fire_ms = fire_ms;
    rjs_submit(j);
    return 0;
}

/* The values of a map in order of their names: each value begins with its
 * name (sc_entry and so_entry begin with a reg_schedule or reg_source,
 * which begin with theirs). */
typedef struct sorted {
    void **v;
    size_t n;
} sorted;

static void sort_one(const char *key, void *value, void *data)
{
    sorted *s = data;
    s->v[s->n++] = value;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int sort_map(const strmap *m, sorted *s)
{
    s->n = 0;
    s->v = calloc(m->count + 1, sizeof *s->v);
    if (!s->v) return ERR_NOMEM;
    strmap_each(m, sort_one, s);
    qsort(s->v, s->n, sizeof *s->v, by_name);
    return 0;
}

static int js_each_schedule(registry *reg, registry_schedule_cb cb, void *data)
{
    sorted s;
    if (sort_map(&RJS(reg)->scheds, &s) != 0) return ERR_NOMEM;
    for (size_t i = 0; i < s.n; i++) cb(&((sc_entry *)s.v[i])->s, data);
    free(s.v);
    return 0;
}

static int js_source_put(registry *reg, const reg_source *src)
{
    rjs *r = RJS(reg);
    if (!r->c) return ERR_CLOSED;
    so_entry *e = strmap_get(&r->srcs, src->name, strlen(src->name));
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) return ERR_NOMEM;
        e->s = *src;
        if (strmap_put(&r->srcs, e->s.name, e) != 0) {
            free(e);
            return ERR_NOMEM;
        }
    }
    e->s = *src;
    char key[CLUSTER_KEY_MAX + 8];
    snprintf(key, sizeof key, "so.%s", src->name);
    char *value = cluster__source_json(src);
    return value ? rjs_write_key(r, key, value) : ERR_NOMEM;
}

static int js_source_remove(registry *reg, const char *name)
{
    rjs *r = RJS(reg);
    if (!r->c) return ERR_CLOSED;
    so_entry *e = strmap_remove(&r->srcs, name);
    if (e) explicit_bzero(e, sizeof *e);
    free(e);
    char key[CLUSTER_KEY_MAX + 8]; /* the lease first, as for a schedule */
    snprintf(key, sizeof key, "lease.source.%s", name);
    rjs_write_key(r, key, NULL);
    snprintf(key, sizeof key, "so.%s", name);
    return rjs_write_key(r, key, NULL);
}

static int js_each_source(registry *reg, registry_source_cb cb, void *data)
{
    sorted s;
    if (sort_map(&RJS(reg)->srcs, &s) != 0) return ERR_NOMEM;
    for (size_t i = 0; i < s.n; i++) cb(&((so_entry *)s.v[i])->s, data);
    free(s.v);
    return 0;
}

static void js_watch(registry *reg, enum registry_kind kind, registry_changed_cb cb, void *data)
{
    RJS(reg)->watchers[kind].cb = cb;
    RJS(reg)->watchers[kind].data = data;
}

/* A job after the writes queued: the worker takes them in order. */
static void js_sync(registry *reg, registry_done_cb cb, void *data)
{
    rjs *r = RJS(reg);
    job *j = r->c ? rjs_new_job(r, JOB_SYNC, "") : NULL;
    if (!j) {
        cb(data, r->c ? ERR_NOMEM : ERR_CLOSED);
        return;
    }
    j->done = cb;
    j->done_data = data;
    rjs_submit(j);
}

static int js_lease(registry *reg, const char *key, char *holder, size_t cap)
{
    rjs *r = RJS(reg);
    if (!r->c) {
        if (cap) holder[0] = '\0';
        return 0;
    }
    return cluster__lease_query(r->c, key, holder, cap);
}

static void js_lease_drop(registry *reg, const char *key)
{
    rjs *r = RJS(reg);
    if (r->c) cluster__lease_drop(r->c, key);
}

static const registry_ops js_ops = {
    .next_version = js_next_version,
    .put_version = js_put_version,
    .delete_function = js_delete_function,
    .each_active = js_each_active,
    .each_version = js_each_version,
    .artifact_used = js_artifact_used,
    .artifact_put = js_artifact_put,
    .artifact_path = js_artifact_path,
    .artifact_remove = js_artifact_remove,
    .trigger_put = js_trigger_put,
    .trigger_remove = js_trigger_remove,
    .each_trigger = js_each_trigger,
    .set_events = js_set_events,
    .close = js_close,
    .schedule_put = js_schedule_put,
    .schedule_remove = js_schedule_remove,
    .schedule_fired = js_schedule_fired,
    .each_schedule = js_each_schedule,
    .source_put = js_source_put,
    .source_remove = js_source_remove,
    .each_source = js_each_source,
    .watch = js_watch,
    .sync = js_sync,
    .lease = js_lease,
    .lease_drop = js_lease_drop,
    .activate = js_activate,
    .alias_put = rjs_alias_put,
    .alias_remove = rjs_alias_remove,
    .each_alias = rjs_each_alias,
};

int cluster_registry(cluster *c, registry *local, registry **out)
{
    if (c->reg) return ERR_BUSY;
    rjs *r = calloc(1, sizeof *r);
    if (!r) return ERR_NOMEM;
    r->ops = &js_ops;
    r->c = c;
    r->local = local;
    strmap_init(&r->syncs);
    strmap_init(&r->trigs);
    strmap_init(&r->scheds);
    strmap_init(&r->srcs);
    strmap_init(&r->aliases);
    strmap_init(&r->vers);
    registry_each_active(local, reconcile_one, r); /* what each function runs */
    c->reg = r;
    *out = (registry *)r;
    return 0;
}
