/*
 * registry_versions.c - the cluster registry's versions made while a node
 * was away (ve.NAME.N: fetched and stored beside the active version, one at
 * a time) and its aliases (al.FUNCTION.ALIAS, kept in memory like
 * schedules). registry_js.c says what the bucket holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/registry_js.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"

/* --- Versions made while a node was away ------------------------------------------------------ */

void rjs_ve_key(char *out, size_t cap, const char *name, uint32_t version)
{
    snprintf(out, cap, "%s.%u", name, version);
}

/* Keeps text (taken; NULL: removes it) as the view's entry of key. */
void rjs_ve_keep(rjs *r, const char *key, char *text)
{
    ve_entry *e = strmap_get(&r->vers, key, strlen(key));
    if (!text) {
        if (e) {
            strmap_remove(&r->vers, key);
            free(e->text);
            free(e);
        }
        return;
    }
    if (!e && strlen(key) < sizeof e->key && (e = calloc(1, sizeof *e)) != NULL) {
        snprintf(e->key, sizeof e->key, "%s", key);
        if (strmap_put(&r->vers, e->key, e) != 0) {
            free(e);
            e = NULL;
        }
    }
    if (!e) {
        free(text);
        return;
    }
    free(e->text);
    e->text = text;
}

typedef struct ve_pick {
    rjs *r;
    const char *name;
    size_t len;
    uint32_t missing;                  /* rjs_backfill: the lowest version name lacks here */
    char (*keys)[SPATE_NAME_MAX + 12]; /* drop: the keys of name's versions */
    size_t n;
} ve_pick;

/* Is key one of p->name's versions (NAME.N)? Its number, else 0. */
static uint32_t ve_of(const ve_pick *p, const char *key)
{
    if (strncmp(key, p->name, p->len) != 0 || key[p->len] != '.') return 0;
    const char *n = key + p->len + 1;
    if (!*n || strspn(n, "0123456789") != strlen(n) || strlen(n) > 9) return 0;
    return (uint32_t)strtoul(n, NULL, 10);
}

static void find_missing(const char *key, void *value, void *data)
{
    ve_pick *p = data;
    uint32_t v = ve_of(p, key);
    if (!v || (p->missing && v > p->missing)) return;
    char *have = rjs_version_entry(p->r, p->name, v);
    if (!have) p->missing = v;
    free(have);
}

/* Fetches and stores, one at a time, the versions of name the bucket has and
 * this node lacks (made while it was away), once it runs name: the others
 * are stored beside its active version, which stays. */
void rjs_backfill(rjs *r, const char *name)
{
    fn_sync *s = r->c && r->ready ? strmap_get(&r->syncs, name, strlen(name)) : NULL;
    if (!s || !s->active || s->applying || s->backfilling || r->c->quiet) return;
    ve_pick p = {.r = r, .name = name, .len = strlen(name)};
    strmap_each(&r->vers, find_missing, &p);
    if (!p.missing) return;
    char key[CLUSTER_KEY_MAX], sha[HASH_HEX_LEN + 1];
    rjs_ve_key(key, sizeof key, name, p.missing);
    ve_entry *e = strmap_get(&r->vers, key, strlen(key));
    job *j = e && rjs_entry_sha(e->text, sha) == 0 ? rjs_new_job(r, JOB_BACKFILL, name) : NULL;
    if (!j) return;
    memcpy(j->sha, sha, sizeof j->sha);
    snprintf(j->key, sizeof j->key, "%s", key);
    s->backfilling = 1;
    rjs_submit(j);
}

typedef struct backfill_ctx {
    rjs *r;
    char name[SPATE_NAME_MAX + 1];
    char key[CLUSTER_KEY_MAX];
    buf data;    /* the artifact, until stored */
    size_t size; /* its length */
} backfill_ctx;

static void backfill_done(rjs *r, const char *name, int next)
{
    fn_sync *s = strmap_get(&r->syncs, name, strlen(name));
    if (!s) return;
    s->backfilling = 0;
    if (next) rjs_backfill(r, name);
}

/* The artifact is stored here: the version goes in beside the active one. */
static void on_backfill_stored(void *data, int status, const char *sha, const char *err)
{
    backfill_ctx *b = data;
    rjs *r = b->r;
    buf_free(&b->data);
    ve_entry *e = strmap_get(&r->vers, b->key, strlen(b->key));
    fn_sync *s = strmap_get(&r->syncs, b->name, strlen(b->name));
    reg_version v = {.created_ms = clock_now_ms()};
    char why[256] = "";
    int ok = status == 0 && e && s && s->active && r->c &&
             rjs_entry_parse(e->text, v.sha256, &v.config, why, sizeof why) == 0;
    if (ok) {
        snprintf(v.function, sizeof v.function, "%s", b->name);
        v.version = rjs_entry_version(e->text);
        v.size = b->size;
        char *have = v.version ? rjs_version_entry(r, b->name, v.version) : NULL;
        /* Stored as a put stores it, then the active version made active
         * again, with nothing between (a stop between: the next start
         * activates what the registry says). */
        ok = !have && strcmp(v.sha256, sha) == 0 && v.version &&
             registry_put_version(r->local, &v) == 0 &&
             registry_activate(r->local, b->name, s->active) == 0;
        free(have);
        fnconfig_free(&v.config);
        if (ok) log_info("cluster: stored version %u made elsewhere fn=%s", v.version, b->name);
    }
    /* Stored for nothing (the function went meanwhile): not left behind. */
    if (!ok && status == 0 && sha[0] && registry_artifact_used(r->local, sha) == 0)
        registry_artifact_remove(r->local, sha);
    if (!ok)
        log_warn("cluster: cannot store version %s from the registry: %s", b->key,
                 status   ? (err && err[0] ? err : err_str(status))
                 : why[0] ? why
                          : "it changed");
    backfill_done(r, b->name, ok);
    free(b);
}

void rjs_backfill_fetched(rjs *r, job *j)
{
    backfill_ctx *b = j->err[0] || j->c->quiet ? NULL : calloc(1, sizeof *b);
    ve_entry *e = b ? strmap_get(&r->vers, j->key, strlen(j->key)) : NULL;
    fn_config cfg;
    char sha[HASH_HEX_LEN + 1], why[256];
    if (!e || rjs_entry_parse(e->text, sha, &cfg, why, sizeof why) != 0) {
        if (j->err[0]) log_warn("cluster: cannot fetch version %s: %s", j->key, j->err);
        free(b);
        backfill_done(r, j->name, 0);
        return;
    }
    int unpack = registry_unpack_of(&cfg);
    fnconfig_free(&cfg);
    b->r = r;
    snprintf(b->name, sizeof b->name, "%s", j->name);
    snprintf(b->key, sizeof b->key, "%s", j->key);
    b->data = j->data; /* borrowed by the store until its callback */
    buf_init(&j->data, 0);
    b->size = b->data.len;
    registry_artifact_put(r->local, b->data.data, b->data.len, unpack, on_backfill_stored, b);
}

/* key is NAME.N; text its entry, NULL when removed. */
void rjs_on_version_entry(rjs *r, const char *key, char *text)
{
    const char *dot = strrchr(key, '.');
    if (!dot || (size_t)(dot - key) > SPATE_NAME_MAX) {
        free(text);
        return;
    }
    char name[SPATE_NAME_MAX + 1];
    snprintf(name, sizeof name, "%.*s", (int)(dot - key), key);
    rjs_ve_keep(r, key, text);
    if (text) rjs_backfill(r, name);
}

static void collect_version(const char *key, void *value, void *data)
{
    ve_pick *p = data;
    if (ve_of(p, key) && p->n < p->r->vers.count)
        snprintf(p->keys[p->n++], sizeof p->keys[0], "%s", key);
}

/* name is deleted: its version entries go from the view, and with write
 * (the delete was made here) from the bucket, each purging its artifact
 * when nothing names it any more. */
void rjs_drop_versions(rjs *r, const char *name, int write)
{
    ve_pick p = {.r = r, .name = name, .len = strlen(name)};
    p.keys = calloc(r->vers.count + 1, sizeof *p.keys);
    if (!p.keys) return;
    strmap_each(&r->vers, collect_version, &p);
    char(*shas)[HASH_HEX_LEN + 1] = calloc(p.n + 1, sizeof *shas);
    for (size_t i = 0; i < p.n; i++) {
        ve_entry *e = strmap_get(&r->vers, p.keys[i], strlen(p.keys[i]));
        if (shas && e && rjs_entry_sha(e->text, shas[i]) != 0) shas[i][0] = '\0';
        rjs_ve_keep(r, p.keys[i], NULL);
    }
    for (size_t i = 0; write && r->c && i < p.n; i++) {
        job *j = rjs_new_job(r, JOB_DELETE, name);
        if (!j) break;
        snprintf(j->key, sizeof j->key, "ve.%s", p.keys[i]);
        if (shas && shas[i][0]) {
            char entry[HASH_HEX_LEN + 16];
            snprintf(entry, sizeof entry, "{\"sha256\":\"%s\"}", shas[i]);
            rjs_purge_if_unused(r, j, entry);
        }
        rjs_submit(j);
    }
    free(shas);
    free(p.keys);
}

/* --- Aliases --------------------------------------------------------------------------------- */

static void alias_key(char *out, size_t cap, const char *function, const char *name)
{
    snprintf(out, cap, "%s.%s", function, name);
}

/* Puts a copy of a into the view (replacing the one of its key). */
static int alias_keep(rjs *r, const reg_alias *a)
{
    char key[CLUSTER_KEY_MAX];
    alias_key(key, sizeof key, a->function, a->name);
    reg_alias *old = strmap_get(&r->aliases, key, strlen(key));
    if (old) {
        *old = *a;
        return 0;
    }
    /* The map's key lives with the value: function and name, then the key. */
    struct kept {
        reg_alias a;
        char key[CLUSTER_KEY_MAX];
    } *k = calloc(1, sizeof *k);
    if (!k) return ERR_NOMEM;
    k->a = *a;
    memcpy(k->key, key, sizeof key);
    if (strmap_put(&r->aliases, k->key, k) != 0) {
        free(k);
        return ERR_NOMEM;
    }
    return 0;
}

static void aliases_changed(rjs *r, const char *function)
{
    if (r->ev.aliases_changed) r->ev.aliases_changed(function, r->ev.data);
}

/* key is FUNCTION.ALIAS (an alias has no dot); text the alias, NULL when
 * removed. */
void rjs_on_alias_entry(rjs *r, const char *key, const char *text)
{
    const char *dot = strrchr(key, '.');
    if (!dot || (size_t)(dot - key) > SPATE_NAME_MAX) return;
    char function[SPATE_NAME_MAX + 1];
    snprintf(function, sizeof function, "%.*s", (int)(dot - key), key);
    if (!text) {
        free(strmap_remove(&r->aliases, key));
        aliases_changed(r, function);
        return;
    }
    reg_alias a;
    char origin[64];
    if (cluster__alias_parse(text, &a, origin, sizeof origin) != 0 ||
        strcmp(a.function, function) != 0 || strcmp(a.name, dot + 1) != 0) {
        log_warn("cluster: malformed registry entry al.%s: ignored", key);
        return;
    }
    /* An older write of this node heard after a newer one (one clock:
     * comparable): not the registry's say, the newer one's echo follows. */
    const reg_alias *have = strmap_get(&r->aliases, key, strlen(key));
    if (have && strcmp(origin, r->c->id) == 0 && a.updated_ms < have->updated_ms) return;
    if (alias_keep(r, &a) != 0) {
        log_error("cluster: out of memory for alias %s", key);
        return;
    }
    aliases_changed(r, function);
}

int rjs_alias_put(registry *reg, const reg_alias *a)
{
    rjs *r = RJS(reg);
    if (!r->c) return ERR_CLOSED;
    char *value = cluster__alias_json(a, r->c->id), key[CLUSTER_KEY_MAX + 8];
    if (!value || alias_keep(r, a) != 0) {
        free(value);
        return ERR_NOMEM;
    }
    snprintf(key, sizeof key, "al.%s.%s", a->function, a->name);
    return rjs_write_key(r, key, value);
}

int rjs_alias_remove(registry *reg, const char *function, const char *name)
{
    rjs *r = RJS(reg);
    if (!r->c) return ERR_CLOSED;
    char key[CLUSTER_KEY_MAX + 8];
    alias_key(key, sizeof key, function, name);
    void *old = strmap_remove(&r->aliases, key);
    if (!old) return ERR_NOTFOUND;
    free(old);
    snprintf(key, sizeof key, "al.%s.%s", function, name);
    return rjs_write_key(r, key, NULL);
}

typedef struct alias_pick {
    const char *function; /* NULL: every function's */
    const reg_alias **v;
    size_t n;
} alias_pick;

static void pick_alias(const char *key, void *value, void *data)
{
    alias_pick *p = data;
    const reg_alias *a = value;
    if (!p->function || strcmp(a->function, p->function) == 0) p->v[p->n++] = a;
}

static int by_function_then_name(const void *x, const void *y)
{
    const reg_alias *a = *(const reg_alias *const *)x, *b = *(const reg_alias *const *)y;
    int c = strcmp(a->function, b->function);
    return c ? c : strcmp(a->name, b->name);
}

/* The view's aliases of function (NULL: all) in order; caller frees p->v. */
static int collect_aliases(rjs *r, const char *function, alias_pick *p)
{
    *p = (alias_pick){.function = function, .v = calloc(r->aliases.count + 1, sizeof *p->v)};
    if (!p->v) return ERR_NOMEM;
    strmap_each(&r->aliases, pick_alias, p);
    qsort(p->v, p->n, sizeof *p->v, by_function_then_name);
    return 0;
}

int rjs_each_alias(registry *reg, const char *function, registry_alias_cb cb, void *data)
{
    alias_pick p;
    if (collect_aliases(RJS(reg), function, &p) != 0) return ERR_NOMEM;
    for (size_t i = 0; i < p.n; i++) cb(p.v[i], data);
    free(p.v);
    return 0;
}

/* function is deleted: its aliases go from the view, and with write (the
 * delete was made here) from the bucket. */
void rjs_drop_aliases(rjs *r, const char *function, int write)
{
    alias_pick p;
    if (collect_aliases(r, function, &p) != 0) return;
    for (size_t i = 0; i < p.n; i++) {
        char name[SPATE_ALIAS_MAX + 1];
        snprintf(name, sizeof name, "%s", p.v[i]->name);
        if (write && r->c)
            rjs_alias_remove((registry *)r, function, name);
        else {
            char key[CLUSTER_KEY_MAX];
            alias_key(key, sizeof key, function, name);
            free(strmap_remove(&r->aliases, key));
        }
    }
    free(p.v);
}
