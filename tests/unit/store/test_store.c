/* Unit tests of the store: schema, registry and artifacts, across reopen. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/fnconfig_json.h"
#include "store/artifacts.h"
#include "store/registry_sqlite.h"
#include "test.h"

static char dir[256];

static store *open_store(void)
{
    store *s = NULL;
    char err[256];
    int rc = store_open(dir, &s, err, sizeof err);
    if (rc) fprintf(stderr, "store_open: %s\n", err);
    CHECK_INT(rc, 0);
    return s;
}

/* The registry of one node, over s (no loop: nothing here stores artifacts). */
static registry *open_registry(store *s)
{
    registry *r = NULL;
    CHECK_INT(registry_sqlite_open(NULL, s, &r), 0);
    return r;
}

static reg_version make(const char *name, uint32_t version, const char *sha, const char *env)
{
    reg_version v = {.version = version, .size = 100 + version, .created_ms = 1000 * version};
    snprintf(v.function, sizeof v.function, "%s", name);
    snprintf(v.sha256, sizeof v.sha256, "%s", sha);
    fnconfig_defaults(&v.config);
    v.config.timeout_ms = 500 * version;
    v.config.env = (char *)env;
    return v;
}

typedef struct seen {
    int n;
    uint32_t versions[8];
    char names[8][80];
    char env[8][80];
    uint32_t timeouts[8];
} seen;

static int record(const reg_version *v, int64_t created, void *data)
{
    seen *s = data;
    if (s->n < 8) {
        s->versions[s->n] = v->version;
        snprintf(s->names[s->n], sizeof s->names[0], "%s", v->function);
        snprintf(s->env[s->n], sizeof s->env[0], "%s", v->config.env ? v->config.env : "");
        s->timeouts[s->n] = v->config.timeout_ms;
    }
    s->n++;
    return 0;
}

static void versions_survive_reopen(void)
{
    store *s = open_store();
    registry *r = open_registry(s);
    uint32_t next;
    CHECK_INT(registry_next_version(r, "alpha", &next), 0);
    CHECK_INT(next, 1);
    reg_version v1 = make("alpha", 1, "aa11", "A=1");
    reg_version v2 = make("alpha", 2, "bb22", NULL);
    reg_version b1 = make("beta", 1, "aa11", "X=y\nZ=w");
    CHECK_INT(registry_put_version(r, &v1), 0);
    CHECK_INT(registry_put_version(r, &v2), 0);
    CHECK_INT(registry_put_version(r, &b1), 0);
    /* A version number is immutable: a second put of the same one fails. */
    CHECK_INT(registry_put_version(r, &v2), ERR_STORE);
    CHECK_INT(registry_next_version(r, "alpha", &next), 0);
    CHECK_INT(next, 3);
    registry_close(r);
    store_close(s);

    s = open_store();
    r = open_registry(s);
    seen active = {0};
    CHECK_INT(registry_each_active(r, record, &active), 0);
    CHECK_INT(active.n, 2);
    CHECK_STR(active.names[0], "alpha");
    CHECK_INT(active.versions[0], 2);
    CHECK_INT(active.timeouts[0], 1000);
    CHECK_STR(active.names[1], "beta");
    CHECK_STR(active.env[1], "X=y\nZ=w");

    seen all = {0};
    CHECK_INT(registry_each_version(r, "alpha", record, &all), 0);
    CHECK_INT(all.n, 2);
    CHECK_INT(all.versions[0], 2); /* newest first */
    CHECK_INT(all.versions[1], 1);
    CHECK_STR(all.env[1], "A=1");

    CHECK_INT(registry_artifact_used(r, "aa11"), 1);
    CHECK_INT(registry_delete_function(r, "alpha"), 0);
    CHECK_INT(registry_delete_function(r, "alpha"), ERR_NOTFOUND);
    CHECK_INT(registry_artifact_used(r, "bb22"), 0);
    CHECK_INT(registry_artifact_used(r, "aa11"), 1); /* beta still uses it */
    CHECK_INT(registry_next_version(r, "alpha", &next), 0);
    CHECK_INT(next, 1);
    registry_close(r);
    store_close(s);

    s = open_store();
    r = open_registry(s);
    seen after = {0};
    registry_each_active(r, record, &after);
    CHECK_INT(after.n, 1);
    CHECK_STR(after.names[0], "beta");
    registry_close(r);
    store_close(s);
}

typedef struct aliases_seen {
    int n;
    reg_alias a[4];
} aliases_seen;

static void record_alias(const reg_alias *a, void *data)
{
    aliases_seen *s = data;
    if (s->n < 4) s->a[s->n] = *a;
    s->n++;
}

/* Aliases and rollback (registry_activate) persist, and go with their
 * function. */
static void aliases_and_activate(void)
{
    store *s = open_store();
    registry *r = open_registry(s);
    reg_version v1 = make("gamma", 1, "cc11", NULL);
    reg_version v2 = make("gamma", 2, "cc22", NULL);
    CHECK_INT(registry_put_version(r, &v1), 0);
    CHECK_INT(registry_put_version(r, &v2), 0);
    reg_alias live = {.function = "gamma",
                      .name = "live",
                      .version = 1,
                      .weight_version = 2,
                      .weight_percent = 10,
                      .created_ms = 5,
                      .updated_ms = 5};
    reg_alias beta = {.function = "gamma", .name = "beta", .version = 2};
    CHECK_INT(registry_alias_put(r, &live), 0);
    CHECK_INT(registry_alias_put(r, &beta), 0);
    live.version = 2; /* moved: created_ms stays the first one's */
    live.weight_version = 0;
    live.weight_percent = 0;
    live.created_ms = 9;
    live.updated_ms = 9;
    CHECK_INT(registry_alias_put(r, &live), 0);
    CHECK_INT(registry_activate(r, "gamma", 1), 0);
    CHECK_INT(registry_activate(r, "gamma", 7), ERR_NOTFOUND);
    CHECK_INT(registry_activate(r, "nope", 1), ERR_NOTFOUND);
    registry_close(r);
    store_close(s);

    s = open_store();
    r = open_registry(s);
    aliases_seen seen_aliases = {0};
    CHECK_INT(registry_each_alias(r, "gamma", record_alias, &seen_aliases), 0);
    CHECK_INT(seen_aliases.n, 2);
    CHECK_STR(seen_aliases.a[0].name, "beta"); /* by name */
    CHECK_STR(seen_aliases.a[1].name, "live");
    CHECK_INT(seen_aliases.a[1].version, 2);
    CHECK_INT(seen_aliases.a[1].weight_version, 0);
    CHECK_INT(seen_aliases.a[1].created_ms, 5);
    CHECK_INT(seen_aliases.a[1].updated_ms, 9);
    seen active = {0};
    registry_each_active(r, record, &active);
    int found = 0;
    for (int i = 0; i < active.n && i < 8; i++)
        if (strcmp(active.names[i], "gamma") == 0) found = (int)active.versions[i];
    CHECK_INT(found, 1); /* rolled back, across a reopen */
    CHECK_INT(registry_alias_remove(r, "gamma", "beta"), 0);
    CHECK_INT(registry_alias_remove(r, "gamma", "beta"), ERR_NOTFOUND);
    CHECK_INT(registry_delete_function(r, "gamma"), 0);
    aliases_seen none = {0};
    CHECK_INT(registry_each_alias(r, NULL, record_alias, &none), 0);
    CHECK_INT(none.n, 0);
    registry_close(r);
    store_close(s);
}

static void artifacts(void)
{
    char sha[HASH_HEX_LEN + 1], sha2[HASH_HEX_LEN + 1], err[256], path[512];
    CHECK_INT(artifacts_put(dir, "abc", 3, sha, err, sizeof err), 0);
    /* SHA-256("abc"), the FIPS 180-2 example. */
    CHECK_STR(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    artifacts_path(dir, sha, path, sizeof path);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_size, 3);
    CHECK_INT(artifacts_put(dir, "abc", 3, sha2, err, sizeof err), 0);
    CHECK_STR(sha2, sha);
    CHECK_INT(artifacts_remove(dir, sha), 0);
    CHECK(stat(path, &st) != 0);
    CHECK_INT(artifacts_remove(dir, sha), 0);
}

typedef struct stored {
    int calls, status;
    char sha[HASH_HEX_LEN + 1];
    char err[256];
} stored;

static void on_stored(void *data, int status, const char *sha, const char *err)
{
    stored *st = data;
    st->calls++;
    st->status = status;
    snprintf(st->sha, sizeof st->sha, "%s", sha);
    snprintf(st->err, sizeof st->err, "%s", err);
}

static void count_trigger(const char *topic, const queue_sub_config *cfg, void *data)
{
    (*(int *)data)++;
}

/* The same files through the registry interface: stored on a worker thread
 * of the loop, answered on it; an exec artifact that is no executable nor
 * archive is refused. One node's registry keeps no triggers of its own. */
static void registry_artifacts(void)
{
    uv_loop_t *loop = uv_default_loop();
    store *s = open_store();
    registry *r = NULL;
    CHECK_INT(registry_sqlite_open(loop, s, &r), 0);
    stored st = {0};
    registry_artifact_put(r, "abc", 3, 0, on_stored, &st);
    CHECK_INT(st.calls, 0); /* not before it is written */
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_INT(st.calls, 1);
    CHECK_INT(st.status, 0);
    CHECK_STR(st.sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char path[512], want[512];
    registry_artifact_path(r, st.sha, 0, path, sizeof path);
    artifacts_path(dir, st.sha, want, sizeof want);
    CHECK_STR(path, want);
    struct stat sb;
    CHECK_INT(stat(path, &sb), 0);
    CHECK_INT(registry_artifact_remove(r, st.sha), 0);
    CHECK(stat(path, &sb) != 0);

    stored bad = {0};
    registry_artifact_put(r, "not a program", 13, 1, on_stored, &bad);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_INT(bad.calls, 1);
    CHECK_INT(bad.status, ERR_INVAL);
    CHECK(bad.err[0] != '\0');
    registry_artifact_remove(r, bad.sha);

    queue_sub_config cfg = {.function = "f", .dlq = "t.dlq", .max_attempts = 3};
    CHECK_INT(registry_trigger_put(r, "t", &cfg), 0);
    int triggers = 0;
    registry_each_trigger(r, count_trigger, &triggers);
    CHECK_INT(triggers, 0);
    CHECK_INT(registry_trigger_remove(r, "t", "f"), 0);
    registry_close(r);
    store_close(s);
}

/* What a cluster registry writes it reads back as it was: a function's
 * configuration (secrets' values too) and a trigger's (defaults filled). */
static void entries_as_json(void)
{
    fn_config c, back;
    char why[256];
    fnconfig_defaults(&c);
    c.timeout_ms = 1234;
    c.network = 0;
    c.max_instances = 7;
    CHECK_INT(fnconfig_add_env(&c, "A=1", 3, why, sizeof why), 0);
    CHECK_INT(fnconfig_add_secret(&c, "S=top", 5, why, sizeof why), 0);
    cJSON *o = fnconfig_json(&c, 1, 1);
    CHECK_INT(fnconfig_from_json(o, &back, why, sizeof why), 0);
    CHECK(fnconfig_equal(&c, &back));
    cJSON_Delete(o);
    fnconfig_free(&back);
    /* As the API shows it: the secret's name only. */
    o = fnconfig_json(&c, 0, 0);
    char *text = cJSON_PrintUnformatted(o);
    CHECK(strstr(text, "top") == NULL);
    CHECK(strstr(text, "\"secrets\":[\"S\"]") != NULL);
    free(text);
    cJSON_Delete(o);
    fnconfig_free(&c);

    queue_sub_config t = {.function = "f",
                          .dlq = "d",
                          .max_attempts = 5,
                          .ordered = 1,
                          .deadline_ms = 60000,
                          .max_concurrency = 2},
                     t2;
    o = registry_trigger_json("orders", &t);
    registry_trigger_from_json(o, "orders", "f", &t2);
    CHECK_STR(t2.function, "f");
    CHECK_STR(t2.dlq, "d");
    CHECK_INT(t2.max_attempts, 5);
    CHECK_INT(t2.ordered, 1);
    CHECK_INT(t2.deadline_ms, 60000);
    CHECK_INT(t2.max_concurrency, 2);
    cJSON_Delete(o);
    o = cJSON_CreateObject();
    registry_trigger_from_json(o, "orders", "g", &t2);
    CHECK_STR(t2.dlq, "orders.dlq");
    CHECK_INT(t2.max_attempts, 3);
    CHECK_STR(t2.function, "g");
    cJSON_Delete(o);
}

static void bad_directory(void)
{
    store *s = NULL;
    char err[256];
    CHECK(store_open("/proc/no/such/place", &s, err, sizeof err) != 0);
    CHECK(strstr(err, "/proc/no/such/place") != NULL);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/spate-test-store-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(versions_survive_reopen);
    RUN(aliases_and_activate);
    RUN(artifacts);
    RUN(registry_artifacts);
    RUN(entries_as_json);
    RUN(bad_directory);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return TEST_RESULT();
}
