/*
 * opts.c - one table of options per command drives getopt_long, turns the
 * options into query parameters, and prints the command's --help. Every
 * command parses the same way: options anywhere after the command's words
 * (GNU permutation), "--" ends them, --opt=VALUE and unique abbreviations
 * work, and an unknown option is named as such.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/cli.h"
#include "common/fnconfig.h"

/* --url, --json, the TLS files and --help belong to every command. */
static const cli_opt global_opts[] = {
    {"url", 0, OPT_TEXT, NULL, NULL, "URL",
     "the server (default: $SPATE_URL, else "
     "http://127.0.0.1:7728)"},
    {"json", 0, OPT_FLAG, NULL, NULL, NULL, "print the server's JSON answer; errors as JSON too"},
    {"help", 'h', OPT_FLAG, NULL, NULL, NULL, "print this help"},
    {"cacert", 0, OPT_TEXT, NULL, NULL, "FILE",
     "https: verify the server against the CA(s) in FILE\n(default: $SPATE_CACERT, else the "
     "system's)"},
    {"cert", 0, OPT_TEXT, NULL, NULL, "FILE",
     "https: present this client certificate ($SPATE_CERT)"},
    {"cert-key", 0, OPT_TEXT, NULL, NULL, "FILE", "the key of --cert ($SPATE_CERT_KEY)"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static size_t count(const cli_opt *t)
{
    size_t n = 0;
    while (t && t[n].name) n++;
    return n;
}

/* The i-th option of cmd's table followed by the global ones. */
static const cli_opt *nth(const cli_cmd *cmd, size_t i)
{
    size_t n = count(cmd->opts);
    return i < n ? &cmd->opts[i] : &global_opts[i - n];
}

void cli_add_param(buf *q, const char *key, const char *val)
{
    char *esc = curl_easy_escape(NULL, val, 0);
    buf_printf(q, "%s%s=%s", q->len ? "&" : "?", key, esc ? esc : "");
    curl_free(esc);
}

int64_t cli_parse_duration_ms(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *s == '-' || errno) return -1;
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    if (*end == '\0') return v == 0 ? 0 : -1; /* a number needs its unit, but for 0 */
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].unit) == 0)
            return v > (uint64_t)INT64_MAX / units[i].ms ? -1 : (int64_t)(v * units[i].ms);
    return -1;
}

int64_t cli_parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *s == '-' || errno) return -1;
    uint64_t mult = 1;
    if (*end && (!end[1] || strcmp(end + 1, "iB") == 0 || strcmp(end + 1, "B") == 0)) {
        const char *units = "KMGT";
        const char *u = strchr(units, *end == 'k' ? 'K' : *end);
        if (!u || !*end) return -1;
        for (const char *p = units; p <= u; p++) mult *= 1024;
        end += strlen(end);
    }
    if (*end) return -1;
    return v > (uint64_t)INT64_MAX / mult ? -1 : (int64_t)(v * mult);
}

/* A file of variables for --env-file and --secret-file: one KEY=VALUE a
 * line, taken as it stands (no quotes, no expansion, as docker's
 * --env-file); blank lines and lines starting with '#' are skipped. Each
 * becomes a query parameter key. A line spated would refuse (not KEY=VALUE,
 * a key such as "B " or "export B", a loader variable, a NUL byte) is a
 * usage error that names the file and the line: spated's own message could
 * not say where in the file it was. The file that cannot be read is an I/O
 * error (exit 1, io_error), as an artifact or an @FILE payload is. */
static void vars_file(cli *c, const char *opt, const char *path, const char *key, buf *q)
{
    FILE *f = fopen(path, "r");
    if (!f)
        exit(cli_fail(c, CLI_FAILED, "io_error", "%s: cannot open '%s': %s", opt, path,
                      strerror(errno)));
    buf data;
    buf_init(&data, SPATE_VARS_FILE_MAX);
    char chunk[16 * 1024];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(&data, chunk, got) != 0)
            cli_usage(c, "%s: '%s' is larger than %u bytes: not a file of variables", opt, path,
                      SPATE_VARS_FILE_MAX);
    if (ferror(f))
        exit(cli_fail(c, CLI_FAILED, "io_error", "%s: cannot read '%s': %s", opt, path,
                      strerror(errno)));
    fclose(f);
    fn_config check; /* the same rules as spated's, applied line by line */
    fnconfig_defaults(&check);
    char why[256], line[SPATE_ENV_BYTES_MAX + 1];
    int n = 0;
    for (size_t at = 0; at < data.len;) {
        n++;
        const char *start = data.data + at, *nl = memchr(start, '\n', data.len - at);
        size_t len = nl ? (size_t)(nl - start) : data.len - at;
        at += len + (nl != NULL);
        if (len > 0 && start[len - 1] == '\r') len--;
        if (len > SPATE_ENV_BYTES_MAX)
            cli_usage(c, "%s: %s:%d: longer than %u bytes", opt, path, n, SPATE_ENV_BYTES_MAX);
        if (memchr(start, '\0', len)) cli_usage(c, "%s: %s:%d: holds a NUL byte", opt, path, n);
        memcpy(line, start, len);
        line[len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        if (!strchr(line, '=') || line[0] == '=') {
            /* A secret's line may be all value (a PEM key's second line). */
            if (strcmp(key, "secret") == 0) cli_usage(c, "%s: %s:%d: not KEY=VALUE", opt, path, n);
            cli_usage(c, "%s: %s:%d: '%.40s' is not KEY=VALUE", opt, path, n, line);
        }
        if (fnconfig_add_env(&check, line, len, why, sizeof why) != 0)
            cli_usage(c, "%s: %s:%d: %s", opt, path, n, why);
        cli_add_param(q, key, line);
    }
    fnconfig_free(&check);
    buf_free(&data);
}

/* One occurrence of option o with value v (NULL for a flag): checked by its
 * kind and added to the query when it has a parameter. */
static void take(cli *c, const cli_opt *o, const char *v, cli_args *out)
{
    char num[32];
    int64_t n;
    switch (o->kind) {
    case OPT_FLAG:
        if (o->param) cli_add_param(&out->query, o->param, o->value);
        return;
    case OPT_TEXT:
        break;
    case OPT_NUMBER:
        if (!*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 19)
            cli_usage(c, "--%s takes a number, not '%s'", o->name, v);
        break;
    case OPT_KV:
        if (!strchr(v, '=') && o->param && strcmp(o->param, "secret") == 0)
            cli_usage(c, "--%s takes KEY=VALUE (what was given is not shown: a secret's value)",
                      o->name);
        if (!strchr(v, '=')) cli_usage(c, "--%s '%s': not KEY=VALUE", o->name, v);
        break;
    case OPT_VARS_FILE: {
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", o->name);
        vars_file(c, opt, v, o->param, &out->query);
        return;
    }
    case OPT_DURATION:
        if ((n = cli_parse_duration_ms(v)) < 0)
            cli_usage(c,
                      "--%s takes a duration such as 90s, 30m, 12h or 7d (0: no limit), not '%s'",
                      o->name, v);
        snprintf(num, sizeof num, "%lld", (long long)n);
        v = num;
        break;
    case OPT_SIZE:
        if ((n = cli_parse_size(v)) < 0)
            cli_usage(c, "--%s takes a size such as 1048576, 64M or 1G (0: no limit), not '%s'",
                      o->name, v);
        snprintf(num, sizeof num, "%lld", (long long)n);
        v = num;
        break;
    }
    if (o->param) cli_add_param(&out->query, o->param, v);
}

/* The long options whose names start with the typed prefix, as "--a, --b";
 * empty unless there are two or more (an ambiguous abbreviation). */
static void candidates(const cli_cmd *cmd, size_t total, const char *typed, char *out, size_t cap)
{
    size_t len = strcspn(typed, "=");
    int found = 0;
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < total; i++) {
        const cli_opt *o = nth(cmd, i);
        if (strncmp(o->name, typed, len) != 0) continue;
        found++;
        if (used < cap)
            used += (size_t)snprintf(out + used, cap - used, "%s--%s", used ? ", " : "", o->name);
    }
    if (found < 2) out[0] = '\0';
}

void cli_parse(cli *c, const cli_cmd *cmd, int argc, char **argv, cli_args *out)
{
    memset(out, 0, sizeof *out);
    buf_init(&out->query, 64 * KIB);
    out->opts = cmd->opts;
    c->cmd = cmd;
    size_t total = count(cmd->opts) + count(global_opts);
    if (total > CLI_OPTS_MAX) { /* a table too long for value[]: raise CLI_OPTS_MAX */
        cli_fail(c, CLI_FAILED, "internal", "%s has more than %d options", cmd->name, CLI_OPTS_MAX);
        exit(CLI_FAILED);
    }
    struct option lo[CLI_OPTS_MAX + 1];
    char shorts[3 * CLI_OPTS_MAX + 2] = ":"; /* ':' first: a missing value returns ':' */
    size_t ns = 1;
    for (size_t i = 0; i < total; i++) {
        const cli_opt *o = nth(cmd, i);
        lo[i] = (struct option){o->name, o->kind == OPT_FLAG ? no_argument : required_argument,
                                NULL, o->short_name ? o->short_name : 256 + (int)i};
        if (o->short_name) {
            shorts[ns++] = o->short_name;
            if (o->kind != OPT_FLAG) shorts[ns++] = ':';
        }
    }
    shorts[ns] = '\0';
    lo[total] = (struct option){0};
    opterr = 0;
    optind = 0; /* GNU: start afresh (main parsed the global options before the command) */
    int ch, li;
    while ((ch = getopt_long(argc, argv, shorts, lo, &li)) != -1) {
        if (ch == '?' || ch == ':') {
            const char *typed = argv[optind - 1];
            int is_long = strncmp(typed, "--", 2) == 0;
            char name[80];
            if (optopt >= 256)
                snprintf(name, sizeof name, "--%s", lo[optopt - 256].name);
            else if (optopt)
                snprintf(name, sizeof name, "-%c", optopt);
            else
                snprintf(name, sizeof name, "%.*s", (int)strcspn(typed, "="), typed);
            if (ch == ':') {
                const cli_opt *o = NULL;
                for (size_t i = 0; i < total; i++)
                    if ((lo[i].val == optopt)) o = nth(cmd, i);
                cli_usage(c, "option '%s' needs a value (%s)", name, o && o->arg ? o->arg : "");
            }
            if (optopt && is_long) cli_usage(c, "option '%s' takes no value", name);
            char amb[256];
            candidates(cmd, total, is_long ? typed + 2 : "", amb, sizeof amb);
            if (is_long && amb[0]) cli_usage(c, "option '%s' is ambiguous: %s", name, amb);
            cli_usage(c, "unknown option '%s'%s", name,
                      cmd->max_args ? " (an argument that begins with '-' goes after '--')" : "");
        }
        size_t i = 0;
        while (i < total && lo[i].val != ch) i++;
        if (i == total) continue;
        const cli_opt *o = nth(cmd, i);
        if (o == &global_opts[0]) {
            c->url = optarg;
        } else if (o == &global_opts[1]) {
            c->json = 1;
        } else if (o == &global_opts[2]) {
            cli_print_help(cmd, stdout);
            exit(0);
        } else if (o == &global_opts[3]) {
            c->cacert = optarg;
        } else if (o == &global_opts[4]) {
            c->cert = optarg;
        } else if (o == &global_opts[5]) {
            c->cert_key = optarg;
        } else {
            out->value[i] = o->kind == OPT_FLAG ? "" : optarg;
            take(c, o, o->kind == OPT_FLAG ? NULL : optarg, out);
        }
    }
    out->argc = argc - optind;
    out->argv = argv + optind;
    if (out->argc < cmd->min_args) cli_usage(c, "%s needs %s", cmd->name, cmd->args);
    if (out->argc > cmd->max_args) {
        if (!cmd->max_args) cli_usage(c, "%s takes no arguments", cmd->name);
        cli_usage(c, "unexpected argument '%s': %s takes %s", out->argv[cmd->max_args], cmd->name,
                  cmd->args);
    }
}

void cli_args_free(cli_args *a)
{
    buf_free(&a->query);
}

const char *cli_value(const cli_args *a, const char *name)
{
    for (size_t i = 0; a->opts && a->opts[i].name; i++)
        if (strcmp(a->opts[i].name, name) == 0) return a->value[i];
    return NULL;
}

const cli_opt *cli_opt_of_param(const cli_cmd *cmd, const char *param, size_t len)
{
    for (const cli_opt *o = cmd ? cmd->opts : NULL; o && o->name; o++)
        if (o->param && strlen(o->param) == len && strncmp(o->param, param, len) == 0) return o;
    return NULL;
}

/* Text with its lines indented by `indent` spaces but the first. */
static void print_indented(FILE *out, const char *text, int indent)
{
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        fprintf(out, "%.*s\n", (int)n, p);
        p += n;
        if (*p == '\n') p++;
        if (*p) fprintf(out, "%*s", indent, "");
    }
}

static void print_opt(FILE *out, const cli_opt *o)
{
    char head[64], flag[8] = "    ";
    if (o->short_name) snprintf(flag, sizeof flag, "-%c, ", o->short_name);
    int n = snprintf(head, sizeof head, "  %s--%s%s%s", flag, o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
    if (n < 27)
        fprintf(out, "%-28s", head);
    else
        fprintf(out, "%s\n%28s", head, "");
    print_indented(out, o->help, 28);
}

void cli_print_help(const cli_cmd *cmd, FILE *out)
{
    fprintf(out, "usage: spate %s%s%s%s\n\n", cmd->name, *cmd->args ? " " : "", cmd->args,
            count(cmd->opts) ? " [OPTIONS]" : "");
    fprintf(out, "%s\n", cmd->help);
    if (count(cmd->opts)) {
        fprintf(out, "\nOptions:\n");
        for (const cli_opt *o = cmd->opts; o->name; o++) print_opt(out, o);
    }
    fprintf(out, "\nGlobal options:\n");
    for (const cli_opt *o = global_opts; o->name; o++) print_opt(out, o);
    fprintf(out, "\nExit status: 0 ok, 1 failed, 2 usage, 3 not found, 4 refused or over "
                 "capacity,\n5 function error or timeout, 6 server unreachable (see spate(1)).\n");
}
