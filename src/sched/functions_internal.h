/*
 * functions_internal.h - what functions.c shares with versions.c (the
 * versions other than the active one, aliases): the table itself.
 */
#ifndef SPATE_FUNCTIONS_INTERNAL_H
#define SPATE_FUNCTIONS_INTERNAL_H

#include "common/list.h"
#include "common/strmap.h"
#include "sched/functions.h"

struct functions {
    uv_loop_t *loop;
    registry *reg;
    const char *runner_path;
    strmap byname;
    /* Every record of byname by name, for pages (GET /v1/functions?after=)
     * and walks in name order without a sort: kept sorted as records come
     * and go (a binary search and a move of pointers). */
    fn **sorted;
    size_t nsorted, capsorted;
    uint32_t nregistered;     /* records with registered set */
    list_node busy;           /* fn.busy_link: functions_each_busy */
    list_node retiring;       /* functions whose pools are stopping */
    list_node stopping_sides; /* side pools (versions.c) that are stopping */
    int closing;
    int pools_open; /* pools not yet closed, and the sweep timer */
    void (*close_cb)(void *);
    void *close_data;
    fn_route_fn route; /* cluster mode: to run a direct invoke elsewhere */
    void *router;
    uv_timer_t sweep; /* stops side pools nobody invoked for their keep-alive */
    uint64_t rng;     /* picks an alias's version by its weight */
};

/* functions.c */
int functions__version_spec(functions *t, const char *name, uint32_t version, const char *sha,
                            const fn_config *c, pool_version_spec *spec, char *path,
                            size_t pathcap);
void functions__free_env(char **env);
void functions__maybe_closed(functions *t);

/* versions.c: the sweep timer (counted in pools_open), the aliases of every
 * function from the registry, and a function's side pools when it goes
 * (hurried without drain). */
void functions__versions_open(functions *t);
void functions__versions_close(functions *t, int drain);
void functions__close_sides(functions *t, fn *f, int drain);
int functions__load_aliases(functions *t, fn *f);
/* Version of name from the registry: 0 with v filled (its config owned),
 * ERR_NOTFOUND, ERR_NOMEM or ERR_STORE. */
int functions__read_version(functions *t, const char *name, uint32_t version, reg_version *v);

#endif
