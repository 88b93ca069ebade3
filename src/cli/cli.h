/*
 * cli.h - the inside of spate, the command-line client. It talks to spated
 * only through the HTTP API (libcurl), as curl's tool uses only libcurl.
 *
 * Each command is a cli_cmd: its words ("deploy", "trigger add"), its
 * positional arguments, one table of options (cli_opt) that drives
 * getopt_long and prints its --help, and the function that runs it. The
 * files split by concern:
 *
 *   main.c       global options, finding the command, spate help / --help
 *   opts.c       the option tables: parsing (getopt_long), help text, values
 *   answer.c     requests, answers, errors and the exit status of each
 *   functions.c  deploy, config, invoke, ls, status, rm, nodes
 *   logs.c       logs
 *   topics.c     publish, topic *, trigger *, dlq *
 *   schedules.c  schedule *
 *   sources.c    source *
 *
 * Every message goes through answer.c, so that --json turns errors into
 * JSON and each failure exits with the status documented in spate(1).
 */
#ifndef SPATE_CLI_H
#define SPATE_CLI_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/buf.h"
#include "common/limits.h"

/* Exit status, documented in spate(1) EXIT STATUS. */
enum cli_exit {
    CLI_OK = 0,
    CLI_FAILED = 1,      /* anything not below: a server error, a local file, auth */
    CLI_USAGE = 2,       /* the command line is wrong (or spated says so: HTTP 400, 413) */
    CLI_NOT_FOUND = 3,   /* HTTP 404: no such function, topic or trigger */
    CLI_REFUSED = 4,     /* HTTP 409, 429, 503: a conflict, over capacity, unavailable */
    CLI_FUNCTION = 5,    /* HTTP 502, 504: the function failed, crashed or timed out */
    CLI_UNREACHABLE = 6, /* no answer: connection refused, DNS, TLS, reset */
};

/* Files and stdin are read up to this much; the server enforces its own limits. */
#define CLI_INPUT_MAX (1024u * MIB)
/* Answers are read up to this much (the largest function output plus room). */
#define CLI_ANSWER_MAX (SPATE_RESPONSE_MAX + 1u * MIB)
/* A constant of limits.h as a string, for help texts. */
#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)
/* Options in one command's table, the global ones included. */
#define CLI_OPTS_MAX 40

struct cli_cmd;

typedef struct cli {
    const char *url;
    const char *token;
    /* https: the CA to verify spated by (--cacert, $SPATE_CACERT; NULL: the
     * system's), and a client certificate and its key for mutual TLS
     * (--cert, --cert-key, $SPATE_CERT, $SPATE_CERT_KEY). */
    const char *cacert, *cert, *cert_key;
    int json;
    const struct cli_cmd *cmd; /* the command running, for its messages */
} cli;

/* --- Options (opts.c) ------------------------------------------------------------------ */

enum cli_opt_kind {
    OPT_FLAG,      /* no value: the parameter gets opt->value */
    OPT_TEXT,      /* any value, sent as it is */
    OPT_NUMBER,    /* a non-negative integer (spated checks the range) */
    OPT_KV,        /* KEY=VALUE (--env, --secret) */
    OPT_VARS_FILE, /* a file of KEY=VALUE lines, each sent as param */
    OPT_DURATION,  /* 90s, 30m, 7d, 500ms or 0, sent in milliseconds */
    OPT_SIZE,      /* 1048576, 64K, 64M, 1G, sent in bytes */
};

typedef struct cli_opt {
    const char *name; /* long name without "--"; NULL ends a table */
    char short_name;  /* 0: none */
    enum cli_opt_kind kind;
    const char *param; /* the query parameter it becomes; NULL: the command reads it */
    const char *value; /* OPT_FLAG: the parameter's value */
    const char *arg;   /* what the value is, for help ("N", "MS"); NULL for a flag */
    const char *help;  /* one line or a few, for --help */
} cli_opt;

/* What a command line said, after its options were parsed. */
typedef struct cli_args {
    int argc;
    char **argv;                     /* the positional arguments; borrowed from main's */
    buf query;                       /* "?k=v&..." of the options with a param */
    const char *value[CLI_OPTS_MAX]; /* last value of each option ("" for a flag), or NULL */
    const cli_opt *opts;             /* the table value[] is indexed by */
} cli_args;

typedef struct cli_cmd {
    const char *name; /* "deploy", "trigger add"; NULL ends a table */
    const char *args; /* positional arguments, for help: "NAME FILE" */
    int min_args, max_args;
    const cli_opt *opts; /* NULL: none but the global ones */
    const char *summary; /* one line, for spate --help */
    const char *help;    /* paragraphs for spate COMMAND --help */
    int (*run)(const cli *c, cli_args *a);
} cli_cmd;

/* The commands of each file, each table ended by an entry without a name. */
extern const cli_cmd cli_function_cmds[];
extern const cli_cmd cli_logs_cmds[];
extern const cli_cmd cli_topic_cmds[];
extern const cli_cmd cli_schedule_cmds[];
extern const cli_cmd cli_source_cmds[];
extern const cli_cmd cli_alias_cmds[];

/* Parses argv (what follows the command's words) by cmd's table into *out
 * (free with cli_args_free); --url and --json change *c. A usage error
 * exits; --help prints the command's help and exits 0. */
void cli_parse(cli *c, const cli_cmd *cmd, int argc, char **argv, cli_args *out);
void cli_args_free(cli_args *a);
/* The value of option name ("" for a flag given), or NULL when not given. */
const char *cli_value(const cli_args *a, const char *name);
/* The option of cmd's table whose query parameter is param, or NULL. */
const cli_opt *cli_opt_of_param(const cli_cmd *cmd, const char *param, size_t len);

void cli_print_help(const cli_cmd *cmd, FILE *out);
/* "?k=v" or "&k=v", the value escaped. */
void cli_add_param(buf *q, const char *key, const char *val);
/* "7d", "12h", "30m", "90s", "500ms" or "0" in milliseconds; -1 if not one. */
int64_t cli_parse_duration_ms(const char *s);
/* "1048576", "64K", "64M", "1G" (powers of 1024) in bytes; -1 if not one. */
int64_t cli_parse_size(const char *s);

/* --- Answers and errors (answer.c) ----------------------------------------------------- */

typedef struct answer {
    long status;
    buf body;
    char content_type[128];
    char request_id[64]; /* Spate-Request-Id, when it came */
} answer;

/* Sends one request; 0 when an HTTP answer came back (any status), else
 * the exit status after saying why (the answer is then empty). extra: more
 * headers, NULL-terminated, or NULL. */
int cli_request(const cli *c, const char *method, const char *path, const void *body, size_t len,
                const char *const *extra, answer *out);
/* The exit status an HTTP status stands for. */
int cli_exit_of_status(long status);
/* Says what went wrong with a failed answer (the server's message, with
 * its parameters named as the options typed and names as typed) and returns
 * its exit status. what: "invoke failed". */
int cli_answer_error(const cli *c, const char *what, const answer *a);
/* The answer as JSON, or NULL after saying it is not. */
cJSON *cli_answer_json(const cli *c, const char *what, const answer *a);
void cli_print_raw(const answer *a);
/* Prints s with its control characters escaped ("\n", "\x1b"): text from
 * the server, a function or a file must not act on the user's terminal, nor
 * begin a line that reads as spate's own. */
void cli_put_text(FILE *out, const char *s);
/* Every command ends here: the answer and doc are released and rc returned. */
int cli_finish(answer *a, cJSON *doc, int rc);
/* For commands whose --json output is the server's answer as it is: prints
 * it and returns 1 (the caller returns cli_finish(a, NULL, 0)); else 0. */
int cli_json_passthrough(const cli *c, const answer *a);

/* Sends body (taken; NULL: none) as JSON with method to path for command
 * what ("schedule add") and returns the JSON answer to print, the caller
 * ending with cli_finish(r, doc, 0); or NULL when the command is over and
 * *rc is its exit status: a failure said (a status of 300 or more, or an
 * answer that is not JSON), or with --json the answer printed as it came. */
cJSON *cli_call_json(const cli *c, const char *what, const char *method, const char *path,
                     cJSON *body, answer *r, int *rc);

/* Every page of a list (GET path?limit=page&after=, following the answer's
 * "next", at most pages_max + 1 pages), each answer handed to on_page (its
 * items may be detached; the doc is freed after). 0 when the list is over;
 * else the exit status after saying why (failed: "ls failed", for a failed
 * status; what: "ls", for an answer that is not JSON), or on_page's nonzero
 * return, which ends the walk. */
int cli_each_page(const cli *c, const char *path, const char *failed, const char *what, int page,
                  int pages_max, int (*on_page)(cJSON *doc, void *data), void *data);
/* Moves the items of doc's array key to the end of the array to: the pages
 * of a list gathered into one document of the answer's shape. */
void cli_json_take_items(cJSON *doc, const char *key, cJSON *to);

/* A failure of the client itself (a file it cannot read): says so, as JSON
 * with --json, and returns status. code: "io_error", "bad_answer". */
int cli_fail(const cli *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A usage error: says so, with where to find help, and exits 2. */
void __attribute__((noreturn)) cli_usage(const cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Names sent escaped in the URL, so that messages show them as typed. */
void cli_remember_name(const char *name);

/* prefix + NAME escaped + suffix, the name remembered as typed. */
void cli_name_path(char *out, size_t cap, const char *prefix, const char *name, const char *suffix);
/* "/v1/functions/NAME" + suffix, NAME escaped: any input makes a well-formed
 * URL and the server says what is wrong with the name. */
void cli_function_path(char *out, size_t cap, const char *name, const char *suffix);
/* prefix + TOPIC escaped + suffix. */
void cli_topic_path(char *out, size_t cap, const char *prefix, const char *topic,
                    const char *suffix);

/* --- Input and output helpers (answer.c) ---------------------------------------------- */

/* Reads all of f into *out (up to CLI_INPUT_MAX); 0, or the exit status
 * after saying why. */
int cli_read_stream(const cli *c, FILE *f, const char *name, buf *out);
int cli_read_file(const cli *c, const char *path, buf *out);
/* A PAYLOAD argument: "-" reads standard input, "@FILE" the file, "@@x"
 * is the text "@x", anything else is the text itself. */
int cli_read_payload(const cli *c, const char *arg, buf *out);
const char *cli_json_str(const cJSON *o, const char *k);
double cli_json_num(const cJSON *o, const char *k);
/* "1 instance", "2 instances": n and the word, singular when n is 1. */
const char *cli_plural(double n, const char *one, const char *many, char *out, size_t cap);

#endif
