#include "runtime/launcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/limits.h"
#include "runtime/exec.h"
#include "runtime/isolate.h"
#include "runtime/native.h"
#include "runtime/zygote.h"

struct launcher {
    uv_loop_t *loop;
    enum fn_runtime runtime;
    launcher_loaded_cb loaded;
    launcher_exit_cb exited;
    void *data;
    zygote *z;
    exec_version *x;
    instance_limits limits;
    uv_timer_t later; /* exec: reports "loaded" from the loop, not from start */
    char *message;
    /* Managed runtimes: one instance started at a deploy's load (check),
     * which imports the handler in the sandbox, so that a handler that
     * cannot load fails the deploy with the import error; it is killed once
     * it asks for work. A launcher started again on demand skips it. */
    instance *probe;
    int check;    /* launcher_config.check: a probe is wanted */
    int probing;  /* loaded not yet reported */
    int stopping; /* launcher_stop came while the probe still ran */
};

static void on_zygote_loaded(zygote *z, int status, const char *message, void *data)
{
    launcher *l = data;
    l->loaded(l, status, message, l->data);
    if (status != 0) free(l); /* the zygote is already stopping */
}

static void on_zygote_exit(zygote *z, void *data)
{
    launcher *l = data;
    l->exited(l, l->data);
    free(l);
}

static void on_timer_closed(uv_handle_t *h)
{
    launcher *l = h->data;
    free(l->message);
    free(l);
}

static void probe_ready(instance *inst, void *data)
{
    launcher *l = data;
    instance_kill(inst);
    if (!l->probing) return;
    l->probing = 0;
    uv_timer_stop(&l->later);
    l->loaded(l, 0, NULL, l->data);
}

static void probe_result(instance *inst, int failed, uint32_t duration_us, const char *body,
                         size_t len, void *data)
{
    (void)inst, (void)failed, (void)duration_us, (void)body, (void)len, (void)data;
}

static void probe_withdrawn(instance *inst, void *data)
{
    (void)inst, (void)data;
}

static void probe_exited(instance *inst, const char *why, void *data)
{
    launcher *l = data;
    (void)inst;
    l->probe = NULL;
    if (l->stopping) {
        uv_close((uv_handle_t *)&l->later, on_timer_closed);
        return;
    }
    if (!l->probing) return;
    /* Not ready: the handler did not load (why has its /init/error). */
    l->probing = 0;
    uv_timer_stop(&l->later);
    char msg[SPATE_ERROR_MESSAGE_MAX + 64];
    snprintf(msg, sizeof msg, "the handler cannot be loaded: %s", why);
    exec_version_stop(l->x);
    l->x = NULL;
    l->loaded(l, ERR_INVAL, msg, l->data);
    uv_close((uv_handle_t *)&l->later, on_timer_closed);
}

static const instance_callbacks probe_callbacks = {
    .ready = probe_ready,
    .result = probe_result,
    .exited = probe_exited,
    .withdrawn = probe_withdrawn,
};

/* The probe took too long: it goes, and its exit says so. */
static void on_probe_timeout(uv_timer_t *t)
{
    launcher *l = t->data;
    if (l->probe) instance_kill(l->probe);
}

static void on_later(uv_timer_t *t)
{
    launcher *l = t->data;
    if (!l->message && l->x && l->check && fnconfig_runtime_is_managed(l->runtime)) {
        l->probing = 1;
        if (exec_spawn(l->x, &l->limits, &probe_callbacks, l, &l->probe) == 0) {
            uv_timer_start(&l->later, on_probe_timeout, SPATE_RUNTIME_CHECK_TIMEOUT_MS, 0);
            return;
        }
        l->probing = 0;
        l->probe = NULL;
        exec_version_stop(l->x);
        l->x = NULL;
        l->message = strdup("cannot start an instance to load the handler (see the spated log)");
        if (!l->message) {
            l->loaded(l, ERR_NOMEM, "out of memory", l->data);
            uv_close((uv_handle_t *)&l->later, on_timer_closed);
            return;
        }
    }
    if (l->message) {
        /* Could not start: report it, then go. */
        l->loaded(l, ERR_INVAL, l->message, l->data);
        uv_close((uv_handle_t *)&l->later, on_timer_closed);
        return;
    }
    l->loaded(l, 0, NULL, l->data);
}

/* Reports "loaded" (or l->message) from the loop's next turn. */
static int later(launcher *l, launcher **out)
{
    uv_timer_init(l->loop, &l->later);
    l->later.data = l;
    uv_timer_start(&l->later, on_later, 0, 0);
    *out = l;
    return 0;
}

/* python3 runs from the Python zygote unless the function opts out with
 * SPATE_PYTHON_ZYGOTE=0 (its module starts threads at import, which a fork
 * would not carry over): then each instance is the bootstrap. */
static int python_zygote(const launcher_config *cfg)
{
    if (cfg->runtime != RUNTIME_PYTHON3) return 0;
    for (char **e = cfg->env; e && *e; e++)
        if (strcmp(*e, "SPATE_PYTHON_ZYGOTE=0") == 0) return 0;
    return 1;
}

/* The zygote of a version: a native one loads object (the function's
 * shared object) with the function's env; a managed runtime's loads the
 * runtime's object with code_dir (the handler's code) and the Lambda
 * environment built for it. The rest is the version's. */
static zygote_config zygote_config_of(const launcher_config *cfg, const char *object,
                                      const char *code_dir, char **env)
{
    return (zygote_config){
        .runner_path = cfg->runner_path,
        .object_path = object,
        .code_dir = code_dir,
        .function = cfg->function,
        .version = cfg->version,
        .memory_mb = cfg->memory_mb,
        .max_instances = cfg->max_instances,
        .tmp_mb = cfg->tmp_mb,
        .no_network = cfg->no_network,
        .log = cfg->log,
        .env = env,
    };
}

int launcher_start(uv_loop_t *loop, const launcher_config *cfg, launcher_loaded_cb loaded,
                   launcher_exit_cb exited, void *data, launcher **out)
{
    launcher *l = calloc(1, sizeof *l);
    if (!l) return ERR_NOMEM;
    l->loop = loop;
    l->runtime = cfg->runtime;
    l->check = cfg->check;
    l->loaded = loaded;
    l->exited = exited;
    l->data = data;
    l->limits = (instance_limits){.loop = loop,
                                  .log = cfg->log,
                                  .version = cfg->version,
                                  .memory_mb = cfg->memory_mb,
                                  .cpu_millis = cfg->cpu_millis,
                                  .uid = isolate_uid(cfg->function)};
    if (python_zygote(cfg)) {
        /* The Lambda environment and the checks of an exec version, then
         * the zygote that imports the handler once (runtimes/python3/). */
        exec_version *x;
        char err[512], object[4200];
        char **env = NULL;
        if (exec_version_start(loop, cfg, &x, err, sizeof err) != 0) {
            if (!(l->message = strdup(err))) {
                free(l);
                return ERR_NOMEM;
            }
            return later(l, out);
        }
        int rc = exec_version_zygote(x, &env, object, sizeof object);
        exec_version_stop(x);
        if (rc == 0) {
            zygote_config zc = zygote_config_of(cfg, object, cfg->path, env);
            rc = zygote_start(loop, &zc, on_zygote_loaded, on_zygote_exit, l, &l->z);
            for (char **e = env; *e; e++) free(*e);
            free(env);
        }
        if (rc != 0)
            free(l);
        else
            *out = l;
        return rc;
    }
    if (cfg->runtime == RUNTIME_NATIVE) {
        zygote_config zc = zygote_config_of(cfg, cfg->path, NULL, cfg->env);
        int rc = zygote_start(loop, &zc, on_zygote_loaded, on_zygote_exit, l, &l->z);
        if (rc != 0)
            free(l);
        else
            *out = l;
        return rc;
    }
    char err[512];
    if (exec_version_start(loop, cfg, &l->x, err, sizeof err) != 0 && !(l->message = strdup(err))) {
        free(l);
        return ERR_NOMEM;
    }
    return later(l, out);
}

int launcher_spawn(launcher *l, const instance_callbacks *cb, void *data, instance **out)
{
    if (l->z) return native_start(l->z, &l->limits, cb, data, out);
    if (l->x) return exec_spawn(l->x, &l->limits, cb, data, out);
    return ERR_CLOSED;
}

void launcher_stop(launcher *l)
{
    if (!l) return;
    if (l->z) {
        zygote_stop(l->z);
        free(l);
        return;
    }
    exec_version_stop(l->x);
    l->x = NULL;
    uv_timer_stop(&l->later);
    l->probing = 0;
    if (l->probe) {
        /* Its exit callback still comes, with l: the timer closes then. */
        l->stopping = 1;
        instance_kill(l->probe);
        return;
    }
    uv_close((uv_handle_t *)&l->later, on_timer_closed);
}

int launcher_pid(const launcher *l)
{
    return l->z ? zygote_pid(l->z) : 0;
}

int launcher_exited(const launcher *l)
{
    return l->z ? zygote_exited(l->z) : 0;
}
