/*
 * aliases.c - spate alias set | ls | rm and spate rollback: the routes
 * /v1/functions/NAME/aliases[/ALIAS] and /v1/functions/NAME/rollback
 * (docs/api.md).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* A version number as the command line gives it: 1 .. 2^32-1, or usage. */
static unsigned long version_arg(const cli *c, const char *what, const char *s)
{
    char *end;
    unsigned long v = strspn(s, "0123456789") == strlen(s) ? strtoul(s, &end, 10) : 0;
    if (!*s || v == 0 || v > 0xffffffffUL) cli_usage(c, "%s '%s' is not a version number", what, s);
    return v;
}

/* "/v1/functions/NAME/aliases[/ALIAS]", both escaped. */
static void alias_path(char *out, size_t cap, const char *name, const char *alias)
{
    char suffix[256] = "/aliases";
    if (alias) {
        char *e = curl_easy_escape(NULL, alias, 0);
        snprintf(suffix, sizeof suffix, "/aliases/%s", e ? e : "");
        curl_free(e);
    }
    cli_function_path(out, cap, name, suffix);
}

static void print_alias(const cJSON *al)
{
    printf("%-20s version %.0f", cli_json_str(al, "name"), cli_json_num(al, "version"));
    if (cJSON_GetObjectItemCaseSensitive(al, "weight_version"))
        printf(", %.0f%% to version %.0f", cli_json_num(al, "weight_percent"),
               cli_json_num(al, "weight_version"));
    putchar('\n');
}

static const cli_opt set_opts[] = {
    {"weight", 0, OPT_TEXT, NULL, NULL, "VERSION=PERCENT",
     "send PERCENT (1 to 99) of the alias's invocations to VERSION, the rest to\n"
     "the alias's own version (chosen per invocation)"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static int alias_set(const cli *c, cli_args *a)
{
    cJSON *body = cJSON_CreateObject();
    if (!body) return cli_fail(c, CLI_FAILED, "io_error", "out of memory");
    cJSON_AddNumberToObject(body, "version", (double)version_arg(c, "VERSION", a->argv[2]));
    const char *w = cli_value(a, "weight");
    if (w) {
        const char *eq = strchr(w, '=');
        char ver[16];
        if (!eq || eq == w || (size_t)(eq - w) >= sizeof ver)
            cli_usage(c, "--weight takes VERSION=PERCENT, not '%s'", w);
        snprintf(ver, sizeof ver, "%.*s", (int)(eq - w), w);
        char *end;
        long pct = strtol(eq + 1, &end, 10);
        if (!eq[1] || *end || pct < 1 || pct > 99)
            cli_usage(c, "--weight %s: PERCENT must be a whole number from 1 to 99", w);
        cJSON_AddNumberToObject(body, "weight_version", (double)version_arg(c, "VERSION", ver));
        cJSON_AddNumberToObject(body, "weight_percent", (double)pct);
    }
    char path[512];
    alias_path(path, sizeof path, a->argv[0], a->argv[1]);
    answer r;
    int rc;
    cJSON *doc = cli_call_json(c, "alias set", "PUT", path, body, &r, &rc);
    if (!doc) return rc;
    printf("%s alias %s:", r.status == 201 ? "created" : "moved", a->argv[0]);
    print_alias(doc);
    return cli_finish(&r, doc, 0);
}

static int alias_ls(const cli *c, cli_args *a)
{
    char path[512];
    alias_path(path, sizeof path, a->argv[0], NULL);
    answer r;
    int rc;
    cJSON *doc = cli_call_json(c, "alias ls", "GET", path, NULL, &r, &rc);
    if (!doc) return rc;
    const cJSON *al;
    cJSON_ArrayForEach(al, cJSON_GetObjectItemCaseSensitive(doc, "aliases")) print_alias(al);
    return cli_finish(&r, doc, 0);
}

static int alias_rm(const cli *c, cli_args *a)
{
    char path[512];
    alias_path(path, sizeof path, a->argv[0], a->argv[1]);
    answer r;
    int rc = cli_request(c, "DELETE", path, NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status >= 300) return cli_finish(&r, NULL, cli_answer_error(c, "alias rm failed", &r));
    if (!c->json) printf("removed alias %s:%s\n", a->argv[0], a->argv[1]);
    return cli_finish(&r, NULL, 0);
}

static int rollback(const cli *c, cli_args *a)
{
    unsigned long version = a->argc == 2 ? version_arg(c, "VERSION", a->argv[1]) : 0;
    /* {} (no version): the version before the active one. */
    cJSON *body = cJSON_CreateObject();
    if (!body) return cli_fail(c, CLI_FAILED, "io_error", "out of memory");
    if (version) cJSON_AddNumberToObject(body, "version", (double)version);
    char path[512];
    cli_function_path(path, sizeof path, a->argv[0], "/rollback");
    answer r;
    int rc;
    cJSON *doc = cli_call_json(c, "rollback", "POST", path, body, &r, &rc);
    if (!doc) return rc;
    printf("rolled back %s to version %.0f (sha256 %.12s)\n", cli_json_str(doc, "name"),
           cli_json_num(doc, "version"), cli_json_str(doc, "sha256"));
    return cli_finish(&r, doc, 0);
}

const cli_cmd cli_alias_cmds[] = {
    {"alias set", "NAME ALIAS VERSION", 3, 3, set_opts, "point an alias at a version",
     "Create alias ALIAS of function NAME, or move it, to VERSION: 'spate invoke\n"
     "NAME:ALIAS' runs that version. With --weight V=P, P percent of its\n"
     "invocations run version V instead (a canary), picked per invocation.\n"
     "ALIAS: letters, digits, '-' or '_', not all digits (digits are a version).",
     alias_set},
    {"alias ls", "NAME", 1, 1, NULL, "the aliases of a function",
     "The aliases of function NAME: the version each names and its weight.", alias_ls},
    {"alias rm", "NAME ALIAS", 2, 2, NULL, "remove an alias",
     "Remove alias ALIAS of function NAME; its versions stay.", alias_rm},
    {"rollback", "NAME [VERSION]", 1, 2, NULL, "make an earlier version active again",
     "Make VERSION of NAME its active version again (by default the version before\n"
     "the active one), with the configuration that version had, without an upload\n"
     "and without a new version. Its zygote loads first, as in a deploy; the\n"
     "version it replaces stops once its invocations end.",
     rollback},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
