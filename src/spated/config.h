/*
 * config.h - spated's options: their table, defaults, the command line, an
 * INI file (--config, parsed by libinih) where each option is a key, and
 * what a reload (SIGHUP) may change.
 *
 * Precedence: defaults, then the file, then the command line. Every error
 * names where it came from: "option '--x'" or "FILE:LINE: key 'x'".
 */
#ifndef SPATE_CONFIG_H
#define SPATE_CONFIG_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "api/api.h"
#include "http/server.h"

typedef struct options {
    char data_dir[PATH_MAX];
    char host[256];
    int port;
    char runner[PATH_MAX];
    http_config http;
    api_limits limits;
    uint32_t grace_ms;
    uint32_t max_instances;
    uint32_t max_processes;    /* 0: none of spated's own */
    uint32_t max_starting;     /* instances starting at once, over all functions */
    uint32_t max_zygotes;      /* zygotes running at once, over all functions */
    uint32_t zygote_idle_s;    /* a zygote without instances stops after this */
    uint32_t spare_idle_s;     /* a function keeps a spare instance this long after use */
    uint32_t catch_up;         /* runs of a schedule missed while stopped, published at start */
    char token_file[PATH_MAX]; /* "" when none */
    int insecure;
    char tls_cert[PATH_MAX];      /* "" when the API is in clear */
    char tls_key[PATH_MAX];       /* with tls_cert */
    char tls_client_ca[PATH_MAX]; /* "": no client certificates asked for */
    char run_as[64];
    uint32_t uid_base;
    uint32_t pids_max;
    size_t function_log_max;
    int log_level;      /* enum log_level */
    int log_format;     /* enum log_format */
    char cluster[1024]; /* nats://HOST:PORT[,...]; "" for a single node */
    /* Host paths left writable in instances: "PATH,PATH,..." (each absolute
     * and resolved once loaded, at most SPATE_WRITABLE_MAX), "" for none. */
    char writable[PATH_MAX];
    uint32_t cluster_replicas;
    /* Towards NATS (cluster/secure.h): "" when unused. */
    char cluster_creds[PATH_MAX];
    char cluster_tls_ca[PATH_MAX];
    char cluster_tls_cert[PATH_MAX];
    char cluster_tls_key[PATH_MAX];
    char cluster_key[PATH_MAX]; /* --cluster-key FILE: seals what nodes share; "" for none */
    char config_file[PATH_MAX]; /* "" when none */
    int check_config;
} options;

/* Reads the command line, and the file it names with --config, into o.
 * Prints help or the version and exits when asked; on an error writes it
 * into err and returns -1. */
int config_load(int argc, char **argv, options *o, char *err, size_t errcap);

/* Makes the paths among the options (data, runner, token file, config file)
 * absolute against the working directory, and resolves each --writable path
 * (which must exist, and not be /, nor under what each instance has of its
 * own: /tmp, /dev/shm, /var/task); config_load does it. 0, or -1 with err set
 * when one cannot be. */
int config_absolute_paths(options *o, char *err, size_t errcap);

/* Writes the effective configuration as a config file would hold it. */
void config_print(const options *o, FILE *out);

/* A reload: fills next from the same file and command line. Then
 * config_diff calls cb for each option that differs, with whether it can
 * change at run time. */
typedef void (*config_change_cb)(const char *key, const char *was, const char *now, int live,
                                 void *data);
void config_diff(const options *cur, const options *next, config_change_cb cb, void *data);

#endif
