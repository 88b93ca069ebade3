/*
 * spate - the command-line client: global options, finding the command
 * (one word, or two for trigger, topic, dlq and schedule), and help. The commands
 * live in functions.c, logs.c, topics.c and schedules.c; cli.h says how they fit.
 *
 * Server from --url or SPATE_URL (default http://127.0.0.1:7728), token from
 * SPATE_TOKEN; https verified against --cacert or SPATE_CACERT, with a
 * client certificate from --cert/--cert-key. The exit status says what went wrong (cli.h,
 * spate(1)).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/cli.h"

static const cli_cmd *const tables[] = {cli_function_cmds, cli_logs_cmds,   cli_topic_cmds,
                                        cli_schedule_cmds, cli_source_cmds, cli_alias_cmds};
#define NTABLES (sizeof tables / sizeof tables[0])

/* The command named by words[0] (and words[1] for a group); *used says how
 * many words it took. NULL when none is. */
static const cli_cmd *find(int n, char **words, int *used)
{
    for (size_t t = 0; t < NTABLES; t++)
        for (const cli_cmd *c = tables[t]; c->name; c++) {
            size_t l0 = strcspn(c->name, " ");
            if (strlen(words[0]) != l0 || strncmp(c->name, words[0], l0) != 0) continue;
            if (!c->name[l0]) {
                *used = 1;
                return c;
            }
            if (n > 1 && strcmp(c->name + l0 + 1, words[1]) == 0) {
                *used = 2;
                return c;
            }
        }
    return NULL;
}

/* Whether word names a group of commands ("trigger"). */
static int is_group(const char *word)
{
    size_t len = strlen(word);
    for (size_t t = 0; t < NTABLES; t++)
        for (const cli_cmd *c = tables[t]; c->name; c++)
            if (strncmp(c->name, word, len) == 0 && c->name[len] == ' ') return 1;
    return 0;
}

/* The commands whose name starts with prefix ("" for all), one a line. */
static void list_commands(FILE *out, const char *prefix)
{
    size_t len = strlen(prefix);
    for (size_t t = 0; t < NTABLES; t++)
        for (const cli_cmd *c = tables[t]; c->name; c++) {
            if (len && (strncmp(c->name, prefix, len) != 0 || c->name[len] != ' ')) continue;
            char head[96];
            snprintf(head, sizeof head, "  %s%s%s%s", c->name, *c->args ? " " : "", c->args,
                     c->opts ? " [OPTIONS]" : "");
            if (strlen(head) < 40)
                fprintf(out, "%-40s %s\n", head, c->summary);
            else
                fprintf(out, "%s\n%40s %s\n", head, "", c->summary);
        }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: spate [--url URL] [--json] [--cacert FILE] [--cert FILE --cert-key FILE]\n"
                 "             COMMAND [ARGS] [OPTIONS]\n\nCommands:\n");
    list_commands(out, "");
    fprintf(out, "%-40s %s\n\n", "  help [COMMAND]", "this, or a command's options");
    fprintf(out, "'spate COMMAND --help' or 'spate help COMMAND' shows a command's options.\n"
                 "The server is --url, else $SPATE_URL, else http://127.0.0.1:7728;\n"
                 "the token is $SPATE_TOKEN. --json prints the server's JSON answer, and\n"
                 "errors as JSON on standard error. An https:// server is verified against\n"
                 "--cacert FILE (else $SPATE_CACERT, else the system's CAs); --cert and\n"
                 "--cert-key ($SPATE_CERT, $SPATE_CERT_KEY) present a client certificate.\n\n"
                 "Exit status: 0 ok, 1 failed, 2 usage, 3 not found, 4 refused or over "
                 "capacity,\n5 function error or timeout, 6 server unreachable (see spate(1)).\n");
}

static void group_usage(FILE *out, const char *group)
{
    fprintf(out, "usage: spate %s COMMAND ...\n\n", group);
    list_commands(out, group);
    fprintf(out, "\n'spate %s COMMAND --help' shows a command's options.\n", group);
}

/* spate help [COMMAND [SUBCOMMAND]]. */
static int help(cli *c, int n, char **words)
{
    if (n == 0) {
        usage(stdout);
        return 0;
    }
    /* help is a command too (spate --help lists it): "spate help help". */
    if (n == 1 && (strcmp(words[0], "help") == 0 || strcmp(words[0], "--help") == 0 ||
                   strcmp(words[0], "-h") == 0)) {
        printf("usage: spate help [COMMAND]\n\nThe commands, or a command's usage and options "
               "(as 'spate COMMAND --help').\n");
        return 0;
    }
    int used;
    const cli_cmd *cmd = find(n, words, &used);
    if (cmd && used == n) {
        cli_print_help(cmd, stdout);
        return 0;
    }
    if (n == 1 && is_group(words[0])) {
        group_usage(stdout, words[0]);
        return 0;
    }
    cli_usage(c, "no such command '%s%s%s'", words[0], n > 1 ? " " : "", n > 1 ? words[1] : "");
}

int main(int argc, char **argv)
{
    cli c = {.url = getenv("SPATE_URL"),
             .token = getenv("SPATE_TOKEN"),
             .cacert = getenv("SPATE_CACERT"),
             .cert = getenv("SPATE_CERT"),
             .cert_key = getenv("SPATE_CERT_KEY")};
    if (!c.url || !*c.url) c.url = "http://127.0.0.1:7728";
    if (c.token && !*c.token) c.token = NULL;
    if (c.cacert && !*c.cacert) c.cacert = NULL;
    if (c.cert && !*c.cert) c.cert = NULL;
    if (c.cert_key && !*c.cert_key) c.cert_key = NULL;

    /* Global options before the command ('+': stop at the command). */
    static const struct option globals[] = {
        {"url", required_argument, NULL, 'u'},      {"json", no_argument, NULL, 'j'},
        {"cacert", required_argument, NULL, 'C'},   {"cert", required_argument, NULL, 'E'},
        {"cert-key", required_argument, NULL, 'K'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0}};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "+:h", globals, NULL)) != -1) {
        switch (ch) {
        case 'u':
            c.url = optarg;
            break;
        case 'j':
            c.json = 1;
            break;
        case 'C':
            c.cacert = optarg;
            break;
        case 'E':
            c.cert = optarg;
            break;
        case 'K':
            c.cert_key = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("spate %s (commit %s)\n", SPATE_VERSION, SPATE_COMMIT);
            return 0;
        case ':':
            cli_usage(&c, "option '%s' needs a value", argv[optind - 1]);
        default:
            cli_usage(&c, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    int n = argc - optind;
    char **words = argv + optind;
    if (strcmp(words[0], "help") == 0) return help(&c, n - 1, words + 1);
    int used;
    const cli_cmd *cmd = find(n, words, &used);
    if (!cmd && is_group(words[0])) {
        /* "spate trigger", "spate trigger --help", "spate trigger frob". */
        if (n > 1 && (strcmp(words[1], "--help") == 0 || strcmp(words[1], "-h") == 0))
            return help(&c, 1, words);
        cli_cmd group = {.name = words[0]}; /* for the hint: see 'spate trigger --help' */
        c.cmd = &group;
        if (n > 1) cli_usage(&c, "unknown %s command '%s'", words[0], words[1]);
        group_usage(stderr, words[0]);
        return CLI_USAGE;
    }
    if (!cmd) cli_usage(&c, "unknown command '%s'", words[0]);
    /* getopt_long sees the command's last word as its argv[0]. */
    cli_args a;
    cli_parse(&c, cmd, n - used + 1, words + used - 1, &a);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmd->run(&c, &a);
    curl_global_cleanup();
    cli_args_free(&a);
    return rc;
}
