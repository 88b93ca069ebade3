/*
 * users.c - the uid each function's processes run as: from its name, the
 * same after a restart and on every node (internal.h has who owns what).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/strmap.h"
#include "runtime/isolate/internal.h"

/* Function name -> uid, assigned on first use. */
typedef struct fn_uid {
    uid_t uid;
    char name[];
} fn_uid;
static strmap uids;
/* uids given, to keep them distinct: uid -> 1 */
static strmap uids_taken;

uid_t isolate_uid(const char *function)
{
    const isolate_config *cfg = isolate_get();
    if (!cfg->drop || !cfg->uid_base) return cfg->uid;
    fn_uid *f = strmap_get(&uids, function, strlen(function));
    if (f) return f->uid;
    size_t len = strlen(function);
    if (!(f = malloc(sizeof *f + len + 1))) return cfg->uid;
    memcpy(f->name, function, len + 1);
    /* From the name, so that a function has the same uid after a restart
     * and on every node of a cluster (files it shares stay its own); the
     * next free one when two names meet. Below 2^31 when the base allows:
     * programs that keep a uid in an int would see a negative one. */
    uint64_t top = cfg->uid_base < INT32_MAX ? INT32_MAX : 4294967294ull;
    uint64_t range = top - cfg->uid_base;
    if (range > 1000000000ull) range = 1000000000ull;
    uint64_t off = hash_fnv1a(function, len) % range;
    char key[16];
    for (;;) {
        snprintf(key, sizeof key, "%llu", (unsigned long long)off);
        if (!strmap_get(&uids_taken, key, strlen(key))) break;
        off = (off + 1) % range;
    }
    f->uid = (uid_t)(cfg->uid_base + off);
    char *k = strdup(key);
    if (!k || strmap_put(&uids_taken, k, k) != 0) {
        free(k);
        free(f);
        return cfg->uid;
    }
    if (strmap_put(&uids, f->name, f) != 0) {
        free(f); /* its number stays taken: harmless */
        return cfg->uid;
    }
    return f->uid;
}

static void free_uid(const char *key, void *value, void *data)
{
    fn_uid *f = value;
    if (isolate__host.cg_root[CG_CPU][0]) { /* its cpu group, empty by now */
        char dir[200];
        snprintf(dir, sizeof dir, "%s/u%u", isolate__host.cg_root[CG_CPU], (unsigned)f->uid);
        isolate__remove_cgroup(dir, 1);
    }
    free(f);
}

static void free_key(const char *key, void *value, void *data)
{
    free(value);
}

void isolate__users_init(void)
{
    strmap_init(&uids);
    strmap_init(&uids_taken);
}

void isolate__users_free(void)
{
    strmap_each(&uids, free_uid, NULL);
    strmap_free(&uids);
    strmap_each(&uids_taken, free_key, NULL);
    strmap_free(&uids_taken);
}
