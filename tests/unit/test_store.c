/* Unit tests of the store: schema, registry and artifacts, across reopen. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
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
    RUN(artifacts);
    RUN(bad_directory);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return TEST_RESULT();
}
