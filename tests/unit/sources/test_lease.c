/* Unit tests of where sources run in a cluster (sources/sources.c): a
 * connector without a consumer group runs only while this node holds the
 * source's lease, and waits on standby otherwise; one with a group runs
 * whatever the lease; a source the registry no longer holds stops and its
 * lease is dropped. A fake registry grants or withholds the lease and calls
 * the manager's watcher as a cluster's would; a fake connector (scheme mqtt,
 * which has no consumer group) counts its connections. */
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "common/err.h"
#include "sources/connector.h"
#include "sources/sources.h"
#include "test.h"

/* --- A connector without a consumer group --------------------------------------------------- */

static atomic_int connects, disconnects;

static int fake_parse(const char *url, void **cfg, char *err, size_t errcap)
{
    *cfg = malloc(1);
    return *cfg ? 0 : ERR_NOMEM;
}

static int fake_connect(const void *cfg, const char *consumer, src_conn **out, char *err,
                        size_t errcap)
{
    connects++;
    *out = malloc(1);
    return *out ? 0 : -1;
}

static int fake_fetch(src_conn *c, const src_limits *lim, size_t max, uint32_t wait_ms,
                      src_batch *out, char *err, size_t errcap)
{
    usleep(20 * 1000); /* nothing upstream */
    return 0;
}

static int fake_ack(src_conn *c, const src_batch *b, char *err, size_t errcap)
{
    return 0;
}

static void fake_disconnect(src_conn *c)
{
    disconnects++;
    free(c);
}

/* The table's mqtt entry (weak there): group left NULL, as a connector
 * whose every subscriber gets every message leaves it. */
const connector connector_mqtt = {.scheme = "mqtt",
                                  .form = "mqtt://HOST/TOPIC",
                                  .parse = fake_parse,
                                  .free_cfg = free,
                                  .connect = fake_connect,
                                  .fetch = fake_fetch,
                                  .ack = fake_ack,
                                  .disconnect = fake_disconnect};

/* --- A cluster's registry, as far as sources use it ------------------------------------------- */

typedef struct fake_reg {
    const registry_ops *ops;
    reg_source src[4];
    int n;
    int granted; /* this node holds every lease */
    int dropped; /* registry_lease_drop calls */
    char asked[64];
    registry_changed_cb changed;
    void *changed_data;
} fake_reg;

static int fr_each_source(registry *r, registry_source_cb cb, void *data)
{
    fake_reg *f = (fake_reg *)r;
    for (int i = 0; i < f->n; i++) cb(&f->src[i], data);
    return 0;
}

static void fr_watch(registry *r, enum registry_kind kind, registry_changed_cb cb, void *data)
{
    fake_reg *f = (fake_reg *)r;
    if (kind != REGISTRY_SOURCES) return;
    f->changed = cb;
    f->changed_data = data;
}

static int fr_lease(registry *r, const char *key, char *holder, size_t cap)
{
    fake_reg *f = (fake_reg *)r;
    snprintf(f->asked, sizeof f->asked, "%s", key);
    snprintf(holder, cap, "%s", f->granted ? "self" : "other");
    return f->granted;
}

static void fr_lease_drop(registry *r, const char *key)
{
    ((fake_reg *)r)->dropped++;
}

static const registry_ops fake_ops = {.each_source = fr_each_source,
                                      .watch = fr_watch,
                                      .lease = fr_lease,
                                      .lease_drop = fr_lease_drop};

/* --- The tests
 * ------------------------------------------------------------------------------------- */

typedef struct seen {
    char state[32];
    char holder[64];
    int leased;
} seen;

static void keep_view(const source_view *v, void *data)
{
    seen *s = data;
    snprintf(s->state, sizeof s->state, "%s", v->state);
    snprintf(s->holder, sizeof s->holder, "%s", v->lease_holder);
    s->leased = v->leased;
}

static seen look(sources *m, const char *name)
{
    seen s = {"(none)", "", -1};
    sources_get(m, name, keep_view, &s);
    return s;
}

/* Runs the loop until cond holds or about 5 s went by. */
#define SPIN_UNTIL(cond)                                                                           \
    do {                                                                                           \
        for (int i_ = 0; i_ < 500 && !(cond); i_++) {                                              \
            uv_run(uv_default_loop(), UV_RUN_NOWAIT);                                              \
            usleep(10 * 1000);                                                                     \
        }                                                                                          \
    } while (0)

static void on_closed(void *data)
{
    *(int *)data = 1;
}

static void leases(void)
{
    fake_reg f = {.ops = &fake_ops, .n = 2};
    f.src[0] = (reg_source){.name = "alone", .url = "mqtt://127.0.0.1/t", .topic = "t"};
    /* A consumer group (Redis): every node runs it; nothing listens on port 1. */
    f.src[1] = (reg_source){.name = "shared", .url = "redis://127.0.0.1:1/s?group=g", .topic = "t"};
    sources *m = NULL;
    CHECK_INT(sources_create(uv_default_loop(), NULL, (registry *)&f, "c", 1024, &m), 0);
    sources_start(m);
    CHECK(f.changed != NULL);

    /* Another node holds the lease: on standby, never connected. */
    seen s = look(m, "alone");
    CHECK_STR(s.state, "standby");
    CHECK_INT(s.leased, 1);
    CHECK_STR(s.holder, "other");
    CHECK_STR(f.asked, "source.alone");
    seen g = look(m, "shared");
    CHECK_INT(g.leased, 0);
    CHECK(strcmp(g.state, "standby") != 0);
    CHECK_STR(g.holder, "");
    usleep(100 * 1000);
    CHECK_INT(connects, 0);

    /* The lease comes here: it runs. */
    f.granted = 1;
    f.changed(f.changed_data);
    SPIN_UNTIL(connects >= 1);
    CHECK_INT(connects, 1);
    s = look(m, "alone");
    CHECK(strcmp(s.state, "standby") != 0);
    CHECK_STR(s.holder, "self");

    /* It goes to another node: this one stops, and waits on standby. */
    f.granted = 0;
    f.changed(f.changed_data);
    CHECK_STR(look(m, "alone").state, "standby");
    SPIN_UNTIL(disconnects >= 1);
    CHECK_INT(disconnects, 1);
    usleep(100 * 1000);
    CHECK_INT(connects, 1);

    /* Removed on another node: gone here, its lease dropped. */
    f.n = 1;
    f.src[0] = f.src[1];
    f.changed(f.changed_data);
    CHECK_STR(look(m, "alone").state, "(none)");
    CHECK(f.dropped >= 1);
    CHECK(strcmp(look(m, "shared").state, "(none)") != 0);

    int closed = 0;
    sources_close(m, on_closed, &closed);
    SPIN_UNTIL(closed);
    CHECK_INT(closed, 1);
}

int main(void)
{
    RUN(leases);
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    uv_loop_close(uv_default_loop());
    return TEST_RESULT();
}
