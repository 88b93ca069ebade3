/*
 * version.c - an exec version: the unpacked root with an executable
 * bootstrap, and the environment of a Lambda custom runtime that each of its
 * instances gets (internal.h has who owns what).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "runtime/exec/internal.h"
#include "runtime/isolate.h"

void exec__version_unref(exec_version *x)
{
    if (--x->refs > 0) return;
    for (size_t i = 0; i < x->nenv; i++) free(x->env[i]);
    free(x->env);
    free(x->root);
    free(x->bootstrap);
    free(x->runner);
    free(x->function);
    free(x);
}

static int env_push(exec_version *x, size_t *cap, const char *kv)
{
    if (x->nenv + 2 > *cap) {
        size_t c = *cap ? *cap * 2 : 32;
        char **e = realloc(x->env, c * sizeof *e);
        if (!e) return ERR_NOMEM;
        x->env = e;
        *cap = c;
    }
    if (!(x->env[x->nenv] = strdup(kv))) return ERR_NOMEM;
    x->nenv++;
    x->env[x->nenv] = NULL;
    return 0;
}

static const char *env_get(char **env, const char *key)
{
    size_t n = strlen(key);
    for (char **e = env; e && *e; e++)
        if (strncmp(*e, key, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

int exec_version_start(uv_loop_t *loop, const launcher_config *cfg, exec_version **out, char *err,
                       size_t errcap)
{
    exec_version *x = calloc(1, sizeof *x);
    if (!x) return ERR_NOMEM;
    x->loop = loop;
    x->refs = 1;
    x->check_left = SPATE_RUNTIME_API_CHECK_RATE;
    x->check_at_ms = clock_mono_ns() / 1000000;
    x->root = strdup(cfg->path);
    x->function = strdup(cfg->function);
    x->runner = strdup(cfg->runner_path);
    x->managed = fnconfig_runtime_is_managed(cfg->runtime);
    /* A managed runtime's client is installed beside spate-runner, as
     * runtimes/NAME/bootstrap (the build tree and make install alike). */
    const char *slash = strrchr(cfg->runner_path, '/');
    int dir = slash ? (int)(slash - cfg->runner_path) : 0;
    size_t blen = strlen(cfg->path) + strlen(cfg->runner_path) + 64;
    x->bootstrap = malloc(blen);
    if (!x->root || !x->function || !x->bootstrap || !x->runner) {
        exec__version_unref(x);
        return ERR_NOMEM;
    }
    if (!x->managed)
        snprintf(x->bootstrap, blen, "%s/bootstrap", cfg->path);
    else
        snprintf(x->bootstrap, blen, "%.*s/runtimes/%s/bootstrap", dir, cfg->runner_path,
                 fnconfig_runtime_name(cfg->runtime));
    if (isolate_get()->mount_ns) x->tmp_mb = cfg->tmp_mb ? cfg->tmp_mb : SPATE_TMP_DEFAULT_MB;
    /* Where the function sees its code: at /var/task in its own namespace. */
    const char *task = x->tmp_mb ? "/var/task" : cfg->path;
    struct stat st;
    if (x->managed && (!slash || stat(x->bootstrap, &st) != 0 || !(st.st_mode & 0111))) {
        snprintf(err, errcap, "the %s runtime is not installed: no executable '%s'",
                 fnconfig_runtime_name(cfg->runtime), x->bootstrap);
        log_warn("%s fn=%s", err, cfg->function);
        exec__version_unref(x);
        return ERR_INVAL;
    }
    if (stat(x->bootstrap, &st) != 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
        snprintf(err, errcap, "the artifact has no executable bootstrap");
        exec__version_unref(x);
        return ERR_INVAL;
    }
    if (isolate_reachable(x->bootstrap, err, errcap) != 0) {
        log_warn("%s fn=%s", err, cfg->function);
        exec__version_unref(x);
        return ERR_INVAL;
    }
    char runtime_dir[400];
    snprintf(runtime_dir, sizeof runtime_dir, "%.*s",
             (int)(strrchr(x->bootstrap, '/') - x->bootstrap), x->bootstrap);
    const char *region = env_get(cfg->env, "AWS_REGION");
    if (!region) region = "us-east-1";
    snprintf(x->arn, sizeof x->arn, "arn:aws:lambda:%s:000000000000:function:%s", region,
             cfg->function);
    /* The function's own variables first: they win over the defaults below. */
    size_t cap = 0;
    int rc = 0;
    for (char **e = cfg->env; !rc && e && *e; e++)
        if (strncmp(*e, "AWS_LAMBDA_RUNTIME_API=", 23) != 0) rc = env_push(x, &cap, *e);
    char kv[512];
    const char *defaults[][2] = {
        {"_HANDLER", "index.handler"},
        {"LAMBDA_TASK_ROOT", task},
        {"LAMBDA_RUNTIME_DIR", x->managed ? runtime_dir : task},
        {"AWS_LAMBDA_FUNCTION_NAME", cfg->function},
        {"AWS_REGION", region},
        {"AWS_DEFAULT_REGION", region},
        {"AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"},
        {"AWS_EXECUTION_ENV", "AWS_Lambda_spate"},
        {"TZ", ":UTC"},
        {"LANG", "C.UTF-8"},
        {"PATH", "/usr/local/bin:/usr/bin:/bin"},
    };
    for (size_t i = 0; !rc && i < sizeof defaults / sizeof defaults[0]; i++) {
        if (env_get(x->env, defaults[i][0])) continue;
        snprintf(kv, sizeof kv, "%s=%s", defaults[i][0], defaults[i][1]);
        rc = env_push(x, &cap, kv);
    }
    snprintf(kv, sizeof kv, "AWS_LAMBDA_FUNCTION_VERSION=%u", cfg->version);
    if (!rc && !env_get(x->env, "AWS_LAMBDA_FUNCTION_VERSION")) rc = env_push(x, &cap, kv);
    snprintf(kv, sizeof kv, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%u", cfg->memory_mb);
    if (!rc && !env_get(x->env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE")) rc = env_push(x, &cap, kv);
    if (rc) {
        exec__version_unref(x);
        return rc;
    }
    *out = x;
    return 0;
}

void exec_version_stop(exec_version *x)
{
    if (x) exec__version_unref(x);
}

int exec_version_zygote(const exec_version *x, char ***env, char *object, size_t cap)
{
    char **e = calloc(x->nenv + 3, sizeof *e);
    if (!e) return ERR_NOMEM;
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; !rc && i < x->nenv; i++)
        if (!(e[n++] = strdup(x->env[i]))) rc = ERR_NOMEM;
    /* With mount namespaces the zygote binds the code at /var/task. */
    const char *code = x->tmp_mb ? "/var/task" : x->root;
    size_t tlen = strlen(code) + sizeof "SPATE_PYTHON_TASK=";
    if (!rc && (e[n] = malloc(tlen)) != NULL)
        snprintf(e[n++], tlen, "SPATE_PYTHON_TASK=%s", code);
    else
        rc = ERR_NOMEM;
    char arn[sizeof x->arn + 32];
    snprintf(arn, sizeof arn, "SPATE_PYTHON_ARN=%s", x->arn);
    if (!rc && !(e[n++] = strdup(arn))) rc = ERR_NOMEM;
    if (rc) {
        for (size_t i = 0; i < n; i++) free(e[i]);
        free(e);
        return rc;
    }
    const char *slash = strrchr(x->bootstrap, '/');
    snprintf(object, cap, "%.*s/zygote.so", (int)(slash - x->bootstrap), x->bootstrap);
    *env = e;
    return 0;
}
