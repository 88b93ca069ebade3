/* storehealth.c - the store's failures (storehealth.h). */
#include "common/storehealth.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static store_health state = {.healthy = 1};
/* Any op failing: a success costs one load while none is (each commit reports). */
static atomic_int any_failing;

static const char *const labels[STORE_OPS] = {"commit", "read", "artifact"};

const char *store_op_label(store_op op)
{
    return (unsigned)op < STORE_OPS ? labels[op] : "unknown";
}

static void update(void)
{
    int healthy = 1;
    for (int i = 0; i < STORE_OPS; i++) healthy &= !state.failing[i];
    if (healthy) {
        state.since_ms = 0;
        state.error[0] = '\0';
    }
    state.healthy = healthy;
    atomic_store(&any_failing, !healthy);
}

void store_health_failed(store_op op, const char *what)
{
    if ((unsigned)op >= STORE_OPS) return;
    pthread_mutex_lock(&mu);
    state.errors[op]++;
    state.failing[op] = 1;
    if (state.healthy) state.since_ms = clock_now_ms();
    snprintf(state.error, sizeof state.error, "%s: %s", labels[op], what ? what : "failed");
    update();
    pthread_mutex_unlock(&mu);
}

void store_health_ok(store_op op)
{
    if ((unsigned)op >= STORE_OPS || !atomic_load_explicit(&any_failing, memory_order_relaxed))
        return;
    pthread_mutex_lock(&mu);
    if (state.failing[op]) {
        state.failing[op] = 0;
        update();
    }
    pthread_mutex_unlock(&mu);
}

void store_health_get(store_health *out)
{
    pthread_mutex_lock(&mu);
    *out = state;
    pthread_mutex_unlock(&mu);
}
