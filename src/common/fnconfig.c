#include "common/fnconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/limits.h"

void fnconfig_defaults(fn_config *c)
{
    memset(c, 0, sizeof *c);
    c->runtime = RUNTIME_NATIVE;
    c->min_instances = SPATE_MIN_DEFAULT;
    c->max_instances = SPATE_MAX_DEFAULT;
    c->timeout_ms = SPATE_TIMEOUT_DEFAULT_MS;
    c->memory_mb = SPATE_MEMORY_DEFAULT_MB;
    c->keep_alive_ms = SPATE_KEEP_ALIVE_DEFAULT_MS;
    c->network = 1;
    c->cpu_millis = SPATE_CPU_DEFAULT_MILLIS;
    c->queue_max = SPATE_WAIT_QUEUE_DEFAULT;
    c->tmp_mb = SPATE_TMP_DEFAULT_MB;
}

void fnconfig_free(fn_config *c)
{
    if (!c) return;
    free(c->env);
    c->env = NULL;
    c->env_count = 0;
}

int fnconfig_copy(fn_config *dst, const fn_config *src)
{
    *dst = *src;
    if (src->env && !(dst->env = strdup(src->env))) return ERR_NOMEM;
    return 0;
}

static int key_char(char c, int first)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

/* Variables the dynamic loader and libc act on, from glibc's
 * UNSECURE_ENVVARS (sysdeps/generic/unsecvars.h), which glibc itself drops
 * for setuid programs; every LD_ name besides. spate-runner no longer starts
 * with a function's environment, so none of these reaches it as root; they
 * are refused anyway, so that no future path can hand them over. TMPDIR of
 * that list is allowed: it names a directory, and each instance gets its own. */
static const char *const loader_vars[] = {
    "GCONV_PATH",   "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES",      "LOCALDOMAIN", "LOCPATH",
    "MALLOC_TRACE", "NIS_PATH",    "NLSPATH",        "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR",
};

static int loader_var(const char *key, size_t klen)
{
    if (klen >= 3 && memcmp(key, "LD_", 3) == 0) return 1;
    for (size_t i = 0; i < sizeof loader_vars / sizeof loader_vars[0]; i++)
        if (strlen(loader_vars[i]) == klen && memcmp(loader_vars[i], key, klen) == 0) return 1;
    return 0;
}

int fnconfig_add_env(fn_config *c, const char *kv, size_t len, char *why, size_t whycap)
{
    const char *eq = memchr(kv, '=', len);
    size_t klen = eq ? (size_t)(eq - kv) : 0;
    if (!eq || klen == 0) {
        snprintf(why, whycap, "environment entry must be KEY=VALUE");
        return ERR_INVAL;
    }
    for (size_t i = 0; i < klen; i++) {
        if (!key_char(kv[i], i == 0)) {
            snprintf(why, whycap, "environment key '%.*s' must match [A-Za-z_][A-Za-z0-9_]*",
                     (int)(klen > 64 ? 64 : klen), kv);
            return ERR_INVAL;
        }
    }
    if (loader_var(kv, klen)) {
        snprintf(why, whycap,
                 "environment variable '%.*s' is refused: the dynamic loader or libc acts on it "
                 "(LD_*, GCONV_PATH, GLIBC_TUNABLES, LOCPATH, NLSPATH, ...)",
                 (int)(klen > 64 ? 64 : klen), kv);
        return ERR_INVAL;
    }
    if (memchr(kv, '\n', len) || memchr(kv, '\0', len)) {
        snprintf(why, whycap, "environment value of '%.*s' holds a newline or NUL", (int)klen, kv);
        return ERR_INVAL;
    }
    size_t have = c->env ? strlen(c->env) : 0;
    if (c->env_count >= SPATE_ENV_COUNT_MAX || have + len + 1 > SPATE_ENV_BYTES_MAX) {
        snprintf(why, whycap, "environment exceeds %d entries or %u bytes", SPATE_ENV_COUNT_MAX,
                 SPATE_ENV_BYTES_MAX);
        return ERR_TOOBIG;
    }
    char *env = realloc(c->env, have + len + 2);
    if (!env) return ERR_NOMEM;
    if (have) env[have++] = '\n';
    memcpy(env + have, kv, len);
    env[have + len] = '\0';
    c->env = env;
    c->env_count++;
    return 0;
}

int fnconfig_check(const fn_config *c, char *why, size_t whycap)
{
    if (c->min_instances > c->max_instances) {
        snprintf(why, whycap, "min (%u) is larger than max (%u)", c->min_instances,
                 c->max_instances);
        return ERR_INVAL;
    }
    if (c->runtime == RUNTIME_EXEC && !c->network) {
        snprintf(why, whycap,
                 "exec functions need the network: their Runtime API is on 127.0.0.1 "
                 "(network=false is for native functions)");
        return ERR_INVAL;
    }
    return 0;
}

const char *fnconfig_runtime_name(enum fn_runtime r)
{
    return r == RUNTIME_EXEC ? "exec" : "native";
}

int fnconfig_runtime_parse(const char *s, size_t len)
{
    if (len == 6 && memcmp(s, "native", 6) == 0) return RUNTIME_NATIVE;
    if (len == 4 && memcmp(s, "exec", 4) == 0) return RUNTIME_EXEC;
    return -1;
}
