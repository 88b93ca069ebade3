#include "common/fnconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/utf8.h"

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
    free(c->secrets);
    c->secrets = NULL;
    c->secret_count = 0;
}

int fnconfig_copy(fn_config *dst, const fn_config *src)
{
    *dst = *src;
    dst->env = dst->secrets = NULL;
    if ((src->env && !(dst->env = strdup(src->env))) ||
        (src->secrets && !(dst->secrets = strdup(src->secrets)))) {
        fnconfig_free(dst);
        return ERR_NOMEM;
    }
    return 0;
}

uint32_t fnconfig_count_lines(const char *text)
{
    uint32_t n = 0;
    for (const char *e = text; e && *e; e++) n += *e == '\n';
    return text && *text ? n + 1 : 0;
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

/* A list of variables: "K=V" lines joined by '\n' in *text (NULL when empty)
 * and their number. The environment and the secrets are two of them. */
typedef struct vars {
    char **text;
    uint32_t *count;
} vars;

/* Where the line of key K is in the list: its offset and length; 0 if K is not set. */
static int find_var(const char *text, const char *key, size_t klen, size_t *at, size_t *len)
{
    for (const char *p = text; p && *p;) {
        size_t n = strcspn(p, "\n");
        if (n > klen && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            *at = (size_t)(p - text);
            *len = n;
            return 1;
        }
        p += n + (p[n] == '\n');
    }
    return 0;
}

static int unset_var(vars v, const char *key, size_t klen)
{
    size_t at, line;
    if (!find_var(*v.text, key, klen, &at, &line)) return ERR_NOTFOUND;
    char *text = *v.text;
    size_t have = strlen(text);
    /* Take the line with one of its newlines: the one after it, else the one before. */
    size_t from = at, to = at + line;
    if (text[to] == '\n')
        to++;
    else if (from > 0)
        from--;
    memmove(text + from, text + to, have - to + 1);
    if (--*v.count == 0) {
        free(text);
        *v.text = NULL;
    }
    return 0;
}

/* Sets one "K=V" in v; other (the other list) loses K, so that a variable is
 * either plain or secret. The limits count both lists: all of it becomes
 * the instance's environment. */
static int set_var(fn_config *c, vars v, vars other, const char *kv, size_t len, char *why,
                   size_t whycap)
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
    /* A key given again replaces its value, in its place. */
    size_t at, line, oat, oline;
    int found = find_var(*v.text, kv, klen, &at, &line);
    int in_other = find_var(*other.text, kv, klen, &oat, &oline);
    size_t have = *v.text ? strlen(*v.text) : 0;
    size_t count = c->env_count + c->secret_count + !found - in_other;
    size_t bytes = (c->env ? strlen(c->env) + 1 : 0) + (c->secrets ? strlen(c->secrets) + 1 : 0) -
                   (found ? line + 1 : 0) - (in_other ? oline + 1 : 0) + len + 1;
    if (count > SPATE_ENV_COUNT_MAX || bytes > SPATE_ENV_BYTES_MAX) {
        snprintf(why, whycap, "environment and secrets exceed %d entries or %u bytes",
                 SPATE_ENV_COUNT_MAX, SPATE_ENV_BYTES_MAX);
        return ERR_TOOBIG;
    }
    if (found) {
        char *text = malloc(have - line + len + 1);
        if (!text) return ERR_NOMEM;
        memcpy(text, *v.text, at);
        memcpy(text + at, kv, len);
        memcpy(text + at + len, *v.text + at + line, have - at - line + 1);
        free(*v.text);
        *v.text = text;
    } else {
        char *text = realloc(*v.text, have + len + 2);
        if (!text) return ERR_NOMEM;
        if (have) text[have++] = '\n';
        memcpy(text + have, kv, len);
        text[have + len] = '\0';
        *v.text = text;
        ++*v.count;
    }
    if (in_other) unset_var(other, kv, klen);
    return 0;
}

static vars env_of(fn_config *c)
{
    return (vars){&c->env, &c->env_count};
}

static vars secrets_of(fn_config *c)
{
    return (vars){&c->secrets, &c->secret_count};
}

int fnconfig_add_env(fn_config *c, const char *kv, size_t len, char *why, size_t whycap)
{
    return set_var(c, env_of(c), secrets_of(c), kv, len, why, whycap);
}

int fnconfig_add_secret(fn_config *c, const char *kv, size_t len, char *why, size_t whycap)
{
    return set_var(c, secrets_of(c), env_of(c), kv, len, why, whycap);
}

int fnconfig_unset_env(fn_config *c, const char *key, size_t klen)
{
    return unset_var(env_of(c), key, klen) == 0 || unset_var(secrets_of(c), key, klen) == 0
               ? 0
               : ERR_NOTFOUND;
}

int fnconfig_equal(const fn_config *a, const fn_config *b)
{
    const char *ea = a->env ? a->env : "", *eb = b->env ? b->env : "";
    const char *sa = a->secrets ? a->secrets : "", *sb = b->secrets ? b->secrets : "";
    if (strcmp(sa, sb) != 0) return 0;
    return a->runtime == b->runtime && a->min_instances == b->min_instances &&
           a->max_instances == b->max_instances && a->timeout_ms == b->timeout_ms &&
           a->memory_mb == b->memory_mb && a->keep_alive_ms == b->keep_alive_ms &&
           a->queue_max == b->queue_max && a->cpu_millis == b->cpu_millis &&
           !a->network == !b->network && !a->prewarm == !b->prewarm && a->tmp_mb == b->tmp_mb &&
           strcmp(ea, eb) == 0 && strcmp(a->on_success, b->on_success) == 0 &&
           strcmp(a->on_failure, b->on_failure) == 0 && strcmp(a->handler, b->handler) == 0 &&
           strcmp(a->description, b->description) == 0;
}

int fnconfig_check(const fn_config *c, char *why, size_t whycap)
{
    if (c->min_instances > c->max_instances) {
        snprintf(why, whycap, "min (%u) is larger than max (%u)", c->min_instances,
                 c->max_instances);
        return ERR_INVAL;
    }
    if (fnconfig_runtime_is_managed(c->runtime) && !c->handler[0]) {
        snprintf(why, whycap, "runtime %s needs a handler: MODULE.FUNCTION (e.g. app.handler)",
                 fnconfig_runtime_name(c->runtime));
        return ERR_INVAL;
    }
    if (!fnconfig_runtime_is_managed(c->runtime) && c->handler[0]) {
        snprintf(why, whycap, "a handler is for runtimes python3 and nodejs, not %s",
                 fnconfig_runtime_name(c->runtime));
        return ERR_INVAL;
    }
    if (fnconfig_runtime_is_exec(c->runtime) && !c->network) {
        snprintf(why, whycap,
                 "exec functions need the network: their Runtime API is on 127.0.0.1 "
                 "(network=false is for native functions)");
        return ERR_INVAL;
    }
    return 0;
}

static const char *const runtime_names[] = {
    [RUNTIME_NATIVE] = "native",
    [RUNTIME_EXEC] = "exec",
    [RUNTIME_PYTHON3] = "python3",
    [RUNTIME_NODEJS] = "nodejs",
};

const char *fnconfig_runtime_name(enum fn_runtime r)
{
    return (size_t)r < sizeof runtime_names / sizeof *runtime_names ? runtime_names[r] : "native";
}

int fnconfig_runtime_parse(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof runtime_names / sizeof *runtime_names; i++)
        if (strlen(runtime_names[i]) == len && memcmp(s, runtime_names[i], len) == 0) return (int)i;
    return -1;
}

static int name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '$' || ch == '-';
}

int fnconfig_set_handler(fn_config *c, const char *s, size_t len, char *why, size_t whycap)
{
    /* MODULE.FUNCTION: the last '.' splits them; the module may be a path
     * (lib/app.handler, as Lambda allows) but never climbs out of the code. */
    const char *dot = len ? memrchr(s, '.', len) : NULL;
    int ok = len > 0 && len <= FN_HANDLER_MAX && dot && dot > s && dot < s + len - 1 && s[0] != '/';
    for (size_t i = 0; ok && i < len; i++) {
        char ch = s[i];
        if (ch == '/' && i + 1 < len && (s[i + 1] == '/' || s[i + 1] == '.')) ok = 0;
        if (ch == '.' && i > 0 && (s[i - 1] == '.' || s[i - 1] == '/')) ok = 0;
        if (!name_char(ch) && ch != '.' && ch != '/') ok = 0;
    }
    for (const char *p = dot ? dot + 1 : s + len; ok && p < s + len; p++)
        if (!name_char(*p)) ok = 0;
    if (!ok) {
        snprintf(why, whycap,
                 "the handler '%.*s' is not MODULE.FUNCTION (e.g. app.handler: function handler "
                 "of app.py or app.js; letters, digits, '_', '-', '.' and '/' only, at most %d "
                 "bytes)",
                 (int)(len > 64 ? 64 : len), s, FN_HANDLER_MAX);
        return ERR_INVAL;
    }
    memcpy(c->handler, s, len);
    c->handler[len] = '\0';
    return 0;
}

int fnconfig_set_description(fn_config *c, const char *s, size_t len, char *why, size_t whycap)
{
    int ok = len <= FN_DESCRIPTION_MAX && utf8_valid(s, len);
    for (size_t i = 0; ok && i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ok = 0;
    if (!ok) {
        snprintf(why, whycap,
                 "the description must be at most %d bytes of UTF-8 text without control "
                 "characters",
                 FN_DESCRIPTION_MAX);
        return ERR_INVAL;
    }
    memcpy(c->description, s, len);
    c->description[len] = '\0';
    return 0;
}
