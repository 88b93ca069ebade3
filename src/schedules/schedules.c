/*
 * schedules.c - schedules (schedules.h): a map of entries by name, each with
 * its parsed expression and one uv timer, publishing into the queue.
 */
#include "schedules/schedules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/strmap.h"
#include "common/utf8.h"
#include "schedules/cron.h"

/* Catching up looks this far back at most for a cron expression (one that
 * fires every minute walks 44,640 times): older missed runs are skipped
 * without being counted. @every counts them all (arithmetic). */
#define CATCH_UP_WINDOW_MS (31LL * 86400 * 1000)

typedef struct entry {
    schedules *owner;
    uint64_t id; /* a replaced schedule's publishes under way are not the new one's */
    reg_schedule def;
    char *payload; /* def.payload's storage, or NULL */
    cron_expr expr;
    cron_zone zone;
    uv_timer_t timer;
    int64_t next_ms; /* -1: never again */
    /* This node holds the schedule's lease (always, alone): it fires. Set
     * when the lease comes, which catches up the runs its last holder
     * missed. */
    int leased;
    uint64_t fired, failed, caught_up, skipped;
    char last_error[256];
} entry;

struct schedules {
    uv_loop_t *loop;
    queue *q;
    registry *reg;
    uint32_t catch_up;
    strmap map; /* name -> entry */
    uint64_t next_id;
    int stopped;
};

typedef struct fire {
    schedules *s;
    uint64_t id;
    char name[SPATE_NAME_MAX + 1];
    int64_t time_ms;
} fire;

static void on_entry_closed(uv_handle_t *h)
{
    entry *e = h->data;
    cron_zone_close(&e->zone);
    free(e->payload);
    free(e);
}

static void drop(entry *e)
{
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, on_entry_closed);
}

int schedules_check(const reg_schedule *def, char *err, size_t errcap)
{
    cron_expr x;
    cron_zone zone;
    if (cron_parse(def->expression, &x, err, errcap) ||
        cron_zone_open(def->zone, &zone, err, errcap))
        return ERR_INVAL;
    int64_t next = x.every_ms == 0 ? cron_next(&x, &zone, 0, clock_now_ms()) : 0;
    cron_zone_close(&zone);
    if (next < 0) {
        snprintf(err, errcap, "'%s' never fires (no such date within eight years)",
                 def->expression);
        return ERR_INVAL;
    }
    if (def->payload && def->payload_len > SPATE_SCHEDULE_PAYLOAD_MAX) {
        snprintf(err, errcap, "payload: %zu bytes is over the limit of %u", def->payload_len,
                 SPATE_SCHEDULE_PAYLOAD_MAX);
        return ERR_INVAL;
    }
    if (def->payload && !utf8_valid(def->payload, def->payload_len)) {
        snprintf(err, errcap, "payload: not valid UTF-8");
        return ERR_INVAL;
    }
    return 0;
}

/* --- Firing ------------------------------------------------------------------------------ */

static void on_published(void *data, int status, uint64_t first_seq)
{
    fire *f = data;
    entry *e = strmap_get(&f->s->map, f->name, strlen(f->name));
    if (e && e->id != f->id) e = NULL;
    if (status) {
        log_warn("schedule '%s': cannot publish the run of %lld: %s", f->name,
                 (long long)f->time_ms, err_str(status));
        if (e) {
            e->failed++;
            snprintf(e->last_error, sizeof e->last_error, "cannot publish to '%s': %s",
                     e->def.topic, err_str(status));
        }
    } else if (e) {
        e->fired++;
        e->last_error[0] = '\0';
        if (f->time_ms > e->def.last_fire_ms) {
            e->def.last_fire_ms = f->time_ms;
            if (registry_schedule_fired(f->s->reg, f->name, f->time_ms) != 0)
                log_warn("schedule '%s': cannot record its last run", f->name);
        }
    }
    free(f);
}

/* Publishes the run of time_ms (durable before on_published). */
static void publish(entry *e, int64_t time_ms, int caught_up)
{
    schedules *s = e->owner;
    fire *f = calloc(1, sizeof *f);
    buf body;
    buf_init(&body, SPATE_SCHEDULE_PAYLOAD_MAX + 256);
    int rc = f ? 0 : ERR_NOMEM;
    if (!rc && e->def.payload) {
        rc = buf_append(&body, e->def.payload, e->def.payload_len);
    } else if (!rc) {
        char iso[40];
        cron_iso8601(time_ms, iso, sizeof iso);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "schedule", e->def.name);
        cJSON_AddStringToObject(o, "time", iso);
        if (caught_up) cJSON_AddBoolToObject(o, "caught_up", 1);
        char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        rc = text ? buf_append_str(&body, text) : ERR_NOMEM;
        free(text);
    }
    if (rc) {
        log_error("schedule '%s': out of memory for a run", e->def.name);
        e->failed++;
        snprintf(e->last_error, sizeof e->last_error, "out of memory");
        buf_free(&body);
        free(f);
        return;
    }
    *f = (fire){.s = s, .id = e->id, .time_ms = time_ms};
    snprintf(f->name, sizeof f->name, "%s", e->def.name);
    queue_input in = {.data = body.data ? body.data : "", .len = (uint32_t)body.len};
    queue_publish(s->q, e->def.topic, &body, &in, 1, on_published, f);
}

static void on_timer(uv_timer_t *t);

/* Sets the timer to next_ms, or to an hour from now if that is later: the
 * wall clock is looked at again then (it may have been set). */
static void arm(entry *e, int64_t now)
{
    if (e->next_ms < 0 || e->owner->stopped) return;
    int64_t wait = e->next_ms - now;
    if (wait < 0) wait = 0;
    if (wait > SPATE_SCHEDULE_TIMER_MAX_MS) wait = SPATE_SCHEDULE_TIMER_MAX_MS;
    uv_timer_start(&e->timer, on_timer, (uint64_t)wait, 0);
}

static int64_t next_after(const entry *e, int64_t after)
{
    return cron_next(&e->expr, &e->zone, e->def.created_ms, after);
}

static void lease_key(const entry *e, char *out, size_t cap)
{
    snprintf(out, cap, "schedule.%s", e->def.name);
}

/* Whether this node fires e now: it holds its lease (a cluster's node may
 * have lost it since it was last told). */
static int held(entry *e)
{
    char key[SPATE_NAME_MAX + 16], holder[64];
    lease_key(e, key, sizeof key);
    return registry_lease(e->owner->reg, key, holder, sizeof holder);
}

static void on_timer(uv_timer_t *t)
{
    entry *e = t->data;
    int64_t now = clock_now_ms();
    if (now >= e->next_ms) {
        /* Another node holds the lease: it fires, this one keeps time. */
        if (held(e) && e->leased) publish(e, e->next_ms, 0);
        /* Runs that fell due meanwhile (the loop was held up, the clock set
         * forward) are skipped and counted, not published in a burst. */
        int64_t n = next_after(e, e->next_ms);
        while (n >= 0 && n <= now) {
            e->skipped++;
            n = next_after(e, n);
        }
        e->next_ms = n;
    }
    arm(e, now);
}

/* The runs missed since the last one (or since the schedule was made): the
 * most recent catch_up are published, the rest skipped. */
static void catch_up(entry *e, int64_t now)
{
    int64_t base = e->def.last_fire_ms ? e->def.last_fire_ms : e->def.created_ms;
    uint32_t keep = e->owner->catch_up;
    uint64_t missed = 0;
    int64_t first = next_after(e, base);
    if (first < 0 || first > now) return;
    if (e->expr.every_ms > 0) {
        missed = (uint64_t)((now - first) / e->expr.every_ms) + 1;
    } else {
        if (first < now - CATCH_UP_WINDOW_MS) first = next_after(e, now - CATCH_UP_WINDOW_MS);
        for (int64_t t = first; t >= 0 && t <= now; t = next_after(e, t)) missed++;
    }
    uint64_t run = missed < keep ? missed : keep;
    e->skipped += missed - run;
    /* The last run times, oldest first: step back from the last due one. */
    int64_t last = e->expr.every_ms > 0 ? first + (int64_t)(missed - 1) * e->expr.every_ms : -1;
    if (run && e->expr.every_ms == 0) {
        /* Walk again to the (missed - run)th: cron has no step back. */
        uint64_t i = 0;
        for (int64_t t = first; t >= 0 && t <= now; t = next_after(e, t), i++) {
            if (i >= missed - run) {
                publish(e, t, 1);
                e->caught_up++;
            }
        }
    } else {
        for (uint64_t i = run; i > 0; i--) {
            publish(e, last - (int64_t)(i - 1) * e->expr.every_ms, 1);
            e->caught_up++;
        }
    }
    if (missed)
        log_info("schedule '%s': %llu run%s missed while stopped: %llu caught up, %llu skipped",
                 e->def.name, (unsigned long long)missed, missed == 1 ? "" : "s",
                 (unsigned long long)run, (unsigned long long)(missed - run));
}

/* The lease came (at start alone, or from a node that died or let it go):
 * the runs it missed are caught up here; or it went. */
static void check_lease(entry *e, int64_t now)
{
    int mine = held(e);
    if (mine && !e->leased) {
        e->leased = 1;
        catch_up(e, now);
    } else if (!mine) {
        e->leased = 0;
    }
}

/* --- The set ------------------------------------------------------------------------------- */

/* A new entry for def (copied), its timer initialized but not started. */
static entry *make(schedules *s, const reg_schedule *def, char *err, size_t errcap)
{
    entry *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    e->owner = s;
    e->id = ++s->next_id;
    e->def = *def;
    if (def->payload) {
        e->payload = malloc(def->payload_len + 1);
        if (!e->payload) {
            free(e);
            snprintf(err, errcap, "out of memory");
            return NULL;
        }
        memcpy(e->payload, def->payload, def->payload_len);
        e->payload[def->payload_len] = '\0';
        e->def.payload = e->payload;
    }
    if (cron_parse(def->expression, &e->expr, err, errcap) ||
        cron_zone_open(def->zone, &e->zone, err, errcap)) {
        free(e->payload);
        free(e);
        return NULL;
    }
    uv_timer_init(s->loop, &e->timer);
    e->timer.data = e;
    return e;
}

static void load_one(const reg_schedule *def, void *data)
{
    schedules *s = data;
    char err[256];
    entry *e = make(s, def, err, sizeof err);
    if (!e) {
        log_warn("schedule '%s' is not loaded: %s", def->name, err);
        return;
    }
    if (strmap_put(&s->map, e->def.name, e) != 0) {
        log_warn("schedule '%s' is not loaded: out of memory", def->name);
        drop(e);
        return;
    }
    int64_t now = clock_now_ms();
    check_lease(e, now);
    e->next_ms = next_after(e, now);
    arm(e, now);
}

/* --- Shared with other nodes (a cluster's registry) ------------------------------------------ */

typedef struct sync_pass {
    schedules *s;
    strmap seen; /* names the registry holds */
} sync_pass;

/* Takes the registry's view of one schedule: a new one, one another node
 * replaced, or the time its holder last fired it. */
static void sync_one(const reg_schedule *def, void *data)
{
    sync_pass *p = data;
    schedules *s = p->s;
    entry *e = strmap_get(&s->map, def->name, strlen(def->name));
    if (e && e->def.created_ms == def->created_ms) {
        if (def->last_fire_ms > e->def.last_fire_ms) e->def.last_fire_ms = def->last_fire_ms;
    } else {
        char err[256];
        entry *n = make(s, def, err, sizeof err);
        if (!n || strmap_put(&s->map, n->def.name, n) != 0) {
            log_warn("schedule '%s' is not loaded: %s", def->name, n ? "out of memory" : err);
            if (n) drop(n);
            return;
        }
        const char *how = e ? "replaced" : "added";
        if (e) drop(e);
        e = n;
        int64_t now = clock_now_ms();
        e->next_ms = next_after(e, now);
        arm(e, now);
        log_info("schedule '%s': %s from the registry", def->name, how);
    }
    strmap_put(&p->seen, e->def.name, e);
}

static void forget_gone(const char *key, void *value, void *data)
{
    sync_pass *p = data;
    if (!strmap_get(&p->seen, key, strlen(key))) strmap_put(&p->seen, key, NULL);
}

typedef struct gone {
    const char **names;
    size_t n;
} gone;

static void list_gone(const char *key, void *value, void *data)
{
    gone *g = data;
    if (!value) g->names[g->n++] = key;
}

static void lease_each(const char *key, void *value, void *data)
{
    check_lease(value, *(int64_t *)data);
}

/* The registry says what there is (another node changed it, or a lease
 * moved): this node's timers follow. */
static void on_registry_changed(void *data)
{
    schedules *s = data;
    if (s->stopped) return;
    sync_pass p = {.s = s};
    strmap_init(&p.seen);
    if (registry_each_schedule(s->reg, sync_one, &p) != 0) {
        strmap_free(&p.seen);
        return;
    }
    /* Those the registry no longer holds: marked NULL in seen, then dropped. */
    strmap_each(&s->map, forget_gone, &p);
    gone g = {calloc(p.seen.count + 1, sizeof *g.names), 0};
    if (g.names) strmap_each(&p.seen, list_gone, &g);
    for (size_t i = 0; i < g.n; i++) {
        entry *e = strmap_remove(&s->map, g.names[i]);
        if (!e) continue;
        char key[SPATE_NAME_MAX + 16];
        lease_key(e, key, sizeof key);
        registry_lease_drop(s->reg, key);
        log_info("schedule '%s': removed from the registry", e->def.name);
        drop(e);
    }
    free(g.names);
    strmap_free(&p.seen);
    int64_t now = clock_now_ms();
    strmap_each(&s->map, lease_each, &now);
}

schedules *schedules_open(uv_loop_t *loop, queue *q, registry *reg, uint32_t catch_up_max)
{
    schedules *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    *s = (schedules){.loop = loop, .q = q, .reg = reg, .catch_up = catch_up_max};
    strmap_init(&s->map);
    if (registry_each_schedule(reg, load_one, s) != 0)
        log_warn("some schedules could not be loaded (see above)");
    registry_watch(reg, REGISTRY_SCHEDULES, on_registry_changed, s);
    return s;
}

int schedules_put(schedules *s, const reg_schedule *def, int *replaced, char *err, size_t errcap)
{
    int rc = schedules_check(def, err, errcap);
    if (rc) return rc;
    entry *e = make(s, def, err, errcap);
    if (!e) return ERR_NOMEM;
    e->def.created_ms = clock_now_ms();
    e->def.last_fire_ms = 0;
    entry *old = strmap_get(&s->map, def->name, strlen(def->name));
    rc = registry_schedule_put(s->reg, &e->def);
    /* Replacing takes no allocation (the key becomes the new entry's). */
    if (rc == 0) rc = strmap_put(&s->map, e->def.name, e);
    if (rc) {
        snprintf(err, errcap, "cannot save the schedule: %s", err_str(rc));
        drop(e);
        return rc;
    }
    *replaced = old != NULL;
    if (old) drop(old);
    check_lease(e, e->def.created_ms);
    e->next_ms = next_after(e, e->def.created_ms);
    arm(e, e->def.created_ms);
    return 0;
}

const reg_schedule *schedules_get(schedules *s, const char *name)
{
    entry *e = strmap_get(&s->map, name, strlen(name));
    return e ? &e->def : NULL;
}

int schedules_remove(schedules *s, const char *name)
{
    entry *e = strmap_get(&s->map, name, strlen(name));
    if (!e) return ERR_NOTFOUND;
    int rc = registry_schedule_remove(s->reg, name);
    if (rc && rc != ERR_NOTFOUND) return rc;
    strmap_remove(&s->map, name);
    char key[SPATE_NAME_MAX + 16];
    lease_key(e, key, sizeof key);
    registry_lease_drop(s->reg, key);
    drop(e);
    return 0;
}

static void add_time(cJSON *o, const char *key, int64_t ms)
{
    if (ms <= 0) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    char iso[40];
    cron_iso8601(ms, iso, sizeof iso);
    cJSON_AddStringToObject(o, key, iso);
}

static cJSON *entry_json(entry *e)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", e->def.name);
    cJSON_AddStringToObject(o, "expression", e->def.expression);
    cJSON_AddStringToObject(o, "tz", e->def.zone[0] ? e->def.zone : "UTC");
    cJSON_AddStringToObject(o, "topic", e->def.topic);
    if (e->def.function[0])
        cJSON_AddStringToObject(o, "function", e->def.function);
    else
        cJSON_AddNullToObject(o, "function");
    if (e->def.payload)
        cJSON_AddStringToObject(o, "payload", e->def.payload);
    else
        cJSON_AddNullToObject(o, "payload");
    add_time(o, "created", e->def.created_ms);
    add_time(o, "next_fire", e->next_ms);
    add_time(o, "last_fire", e->def.last_fire_ms);
    cJSON_AddNumberToObject(o, "fired", (double)e->fired);
    cJSON_AddNumberToObject(o, "failed", (double)e->failed);
    cJSON_AddNumberToObject(o, "caught_up", (double)e->caught_up);
    cJSON_AddNumberToObject(o, "skipped", (double)e->skipped);
    if (e->last_error[0])
        cJSON_AddStringToObject(o, "last_error", e->last_error);
    else
        cJSON_AddNullToObject(o, "last_error");
    /* In a cluster: the node that fires it (null: none yet, or one node). */
    char key[SPATE_NAME_MAX + 16], holder[64];
    lease_key(e, key, sizeof key);
    registry_lease(e->owner->reg, key, holder, sizeof holder);
    if (holder[0])
        cJSON_AddStringToObject(o, "lease_holder", holder);
    else
        cJSON_AddNullToObject(o, "lease_holder");
    return o;
}

cJSON *schedules_json(schedules *s, const char *name)
{
    entry *e = strmap_get(&s->map, name, strlen(name));
    return e ? entry_json(e) : NULL;
}

typedef struct collect {
    entry **v;
    size_t n;
} collect;

static void collect_one(const char *key, void *value, void *data)
{
    collect *c = data;
    c->v[c->n++] = value;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(entry *const *)a)->def.name, (*(entry *const *)b)->def.name);
}

cJSON *schedules_json_all(schedules *s)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "schedules");
    collect c = {calloc(s->map.count + 1, sizeof *c.v), 0};
    if (!c.v) {
        cJSON_Delete(doc);
        return NULL;
    }
    strmap_each(&s->map, collect_one, &c);
    qsort(c.v, c.n, sizeof *c.v, by_name);
    for (size_t i = 0; i < c.n; i++) cJSON_AddItemToArray(arr, entry_json(c.v[i]));
    free(c.v);
    return doc;
}

/* Stopping lets the leases go: another node fires from now on. */
static void stop_one(const char *key, void *value, void *data)
{
    entry *e = value;
    char lk[SPATE_NAME_MAX + 16];
    lease_key(e, lk, sizeof lk);
    registry_lease_drop(e->owner->reg, lk);
    drop(e);
}

void schedules_stop(schedules *s)
{
    if (s->stopped) return;
    s->stopped = 1;
    strmap_each(&s->map, stop_one, NULL);
    strmap_free(&s->map);
    strmap_init(&s->map);
}

void schedules_free(schedules *s)
{
    if (!s) return;
    schedules_stop(s);
    strmap_free(&s->map);
    free(s);
}
