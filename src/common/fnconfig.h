/*
 * fnconfig.h - the configuration of a function version, as deployed: runtime,
 * scaling bounds, timeout, memory, keep-alive and environment.
 */
#ifndef SPATE_FNCONFIG_H
#define SPATE_FNCONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"

/* python3 and nodejs are managed runtimes: exec functions whose bootstrap is
 * the runtime client spate ships (runtimes/), run over the user's code. */
enum fn_runtime { RUNTIME_NATIVE, RUNTIME_EXEC, RUNTIME_PYTHON3, RUNTIME_NODEJS };

/* MODULE.FUNCTION of a managed runtime's handler, at most this long. */
#define FN_HANDLER_MAX 128
/* A version's description, at most this long (Lambda's limit). */
#define FN_DESCRIPTION_MAX 256

typedef struct fn_config {
    enum fn_runtime runtime;
    uint32_t min_instances;
    uint32_t max_instances;
    uint32_t timeout_ms;
    uint32_t memory_mb;
    uint32_t keep_alive_ms;
    uint32_t queue_max;  /* invocations that may wait for an instance */
    uint32_t cpu_millis; /* cgroup CPU quota in thousandths of a core; 0: none */
    int network;         /* 0: native instances get no network (own namespace) */
    uint32_t tmp_mb;     /* size of the instance's private /tmp (and /dev/shm) */
    int prewarm;         /* its zygote starts at deploy and start-up and never idles out */
    /* "K=V" lines joined by '\n' (values cannot hold a newline); owned; NULL when empty. */
    char *env;
    uint32_t env_count;
    /* The same for secret variables: in the instance's environment like env,
     * but their values are never shown (describe, status, logs, metrics give
     * the names only); a name is either in env or here. */
    char *secrets;
    uint32_t secret_count;
    /* Destinations of its asynchronous invocations (Lambda's on-success and
     * on-failure): topics that get a destination record per invocation
     * (api/lambda_async.c); "" when none. */
    char on_success[SPATE_TOPIC_NAME_MAX + 1];
    char on_failure[SPATE_TOPIC_NAME_MAX + 1];
    /* Managed runtimes: the handler, MODULE.FUNCTION (Lambda's _HANDLER);
     * "" for native and exec. */
    char handler[FN_HANDLER_MAX + 1];
    /* What the version is, in the deployer's words (Lambda's Description):
     * shown, never interpreted; "" when none. */
    char description[FN_DESCRIPTION_MAX + 1];
} fn_config;

/* The defaults of limits.h. */
void fnconfig_defaults(fn_config *c);
/* Releases env and secrets. NULL is a no-op. */
void fnconfig_free(fn_config *c);
/* Deep copy; ERR_NOMEM. */
int fnconfig_copy(fn_config *dst, const fn_config *src);
/* Sets one "K=V": adds K, or replaces the value of a K already set (in its
 * place). K must match [A-Za-z_][A-Za-z0-9_]* and V hold no newline or NUL;
 * count and bytes are limited (limits.h). On error, why says what is wrong
 * (at least 128 bytes). */
int fnconfig_add_env(fn_config *c, const char *kv, size_t len, char *why, size_t whycap);
/* The same for a secret variable; a plain variable of that name goes. */
int fnconfig_add_secret(fn_config *c, const char *kv, size_t len, char *why, size_t whycap);
/* Removes variable K, plain or secret; ERR_NOTFOUND when it is not set. */
int fnconfig_unset_env(fn_config *c, const char *key, size_t klen);
/* Lines of a "K=V\n..." list (env_count and secret_count of a stored one). */
uint32_t fnconfig_count_lines(const char *text);
/* 1 when a and b are the same configuration (env compared as written). */
int fnconfig_equal(const fn_config *a, const fn_config *b);
/* Checks min <= max, that exec functions keep the network (their Runtime
 * API is on loopback) and that a managed runtime has a handler (and only
 * it); on error why says what is wrong. */
int fnconfig_check(const fn_config *c, char *why, size_t whycap);

const char *fnconfig_runtime_name(enum fn_runtime r);
/* "native", "exec", "python3" or "nodejs"; -1 when unknown. */
int fnconfig_runtime_parse(const char *s, size_t len);
/* 1 for the runtimes whose instances are bootstraps speaking the Lambda
 * Runtime API (exec and the managed ones). */
static inline int fnconfig_runtime_is_exec(enum fn_runtime r)
{
    return r != RUNTIME_NATIVE;
}
/* 1 for python3 and nodejs. */
static inline int fnconfig_runtime_is_managed(enum fn_runtime r)
{
    return r == RUNTIME_PYTHON3 || r == RUNTIME_NODEJS;
}
/* Sets c->handler after checking it is MODULE.FUNCTION (a module path of
 * names joined by '/' or '.', then a function name); on error why says so. */
int fnconfig_set_handler(fn_config *c, const char *s, size_t len, char *why, size_t whycap);
/* Sets c->description: at most FN_DESCRIPTION_MAX bytes of UTF-8 without
 * control characters (it goes into JSON and logs as it is); on error why
 * says so. */
int fnconfig_set_description(fn_config *c, const char *s, size_t len, char *why, size_t whycap);

#endif
