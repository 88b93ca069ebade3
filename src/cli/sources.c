/*
 * sources.c - spate source add|ls|status|rm: event sources, upstream brokers
 * drained into topics (docs/api.md "Sources"). The URL spated shows has its
 * password redacted; the one typed is sent once, in the body of the PUT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void source_path(char *out, size_t cap, const char *name)
{
    cli_name_path(out, cap, "/v1/sources/", name, "");
}

static const cli_opt add_opts[] = {
    {"to", 0, OPT_TEXT, NULL, NULL, "TOPIC", "the topic the source publishes into (required)"},
    {"key-field", 0, OPT_TEXT, NULL, NULL, "F",
     "take each message's key from the entry's field F\n(for ordered triggers)"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static int source_add(const cli *c, cli_args *a)
{
    const char *topic = cli_value(a, "to");
    if (!topic || !*topic) cli_usage(c, "source add needs --to TOPIC");
    const char *field = cli_value(a, "key-field");
    cJSON *body = cJSON_CreateObject();
    if (!body) return cli_fail(c, CLI_FAILED, "io_error", "out of memory");
    cJSON_AddStringToObject(body, "url", a->argv[1]);
    cJSON_AddStringToObject(body, "topic", topic);
    if (field) cJSON_AddStringToObject(body, "key_field", field);
    char path[512];
    source_path(path, sizeof path, a->argv[0]);
    answer r;
    int rc;
    cJSON *doc = cli_call_json(c, "source add", "PUT", path, body, &r, &rc);
    if (!doc) return rc;
    printf("source %s %s: %s -> topic %s", a->argv[0], r.status == 201 ? "added" : "replaced",
           cli_json_str(doc, "url"), cli_json_str(doc, "topic"));
    if (field) printf(", key from field %s", field);
    printf("\n");
    return cli_finish(&r, doc, 0);
}

static int source_ls(const cli *c, cli_args *a)
{
    answer r;
    int rc;
    cJSON *doc = cli_call_json(c, "source ls", "GET", "/v1/sources", NULL, &r, &rc);
    if (!doc) return rc;
    printf("%-20s %-12s %-20s %10s %10s  %s\n", "NAME", "STATE", "TOPIC", "COMMITTED", "LAG",
           "URL");
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "sources"))
    {
        const cJSON *lag = cJSON_GetObjectItemCaseSensitive(s, "lag");
        char lagtext[32] = "-";
        if (cJSON_IsNumber(lag)) snprintf(lagtext, sizeof lagtext, "%.0f", lag->valuedouble);
        printf("%-20s %-12s %-20s %10.0f %10s  ", cli_json_str(s, "name"), cli_json_str(s, "state"),
               cli_json_str(s, "topic"), cli_json_num(s, "committed"), lagtext);
        cli_put_text(stdout, cli_json_str(s, "url"));
        printf("\n");
    }
    return cli_finish(&r, doc, 0);
}

static int source_status(const cli *c, cli_args *a)
{
    char path[512];
    source_path(path, sizeof path, a->argv[0]);
    answer r;
    int rc;
    cJSON *s = cli_call_json(c, "source status", "GET", path, NULL, &r, &rc);
    if (!s) return rc;
    const cJSON *lag = cJSON_GetObjectItemCaseSensitive(s, "lag");
    printf("source     %s\nurl        ", cli_json_str(s, "name"));
    cli_put_text(stdout, cli_json_str(s, "url"));
    printf("\ntopic      %s\nkey field  %s\nstate      %s (%s)\n", cli_json_str(s, "topic"),
           or_dash(cli_json_str(s, "key_field")), cli_json_str(s, "state"),
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "connected")) ? "connected"
                                                                          : "not connected");
    printf("received   %.0f\ncommitted  %.0f\nrefused    %.0f (%.0f in the dead letters)\n",
           cli_json_num(s, "received"), cli_json_num(s, "committed"), cli_json_num(s, "refused"),
           cli_json_num(s, "dead_lettered"));
    if (cJSON_IsNumber(lag)) printf("lag        %.0f\n", lag->valuedouble);
    const char *delivery = cli_json_str(s, "delivery");
    if (delivery && *delivery)
        printf("delivery   %s%s\n", delivery,
               strcmp(delivery, "at-most-once") == 0
                   ? " (what is published upstream while not connected, or dropped, is lost)"
                   : "");
    const cJSON *dropped = cJSON_GetObjectItemCaseSensitive(s, "dropped");
    if (cJSON_IsNumber(dropped)) printf("dropped    %.0f\n", dropped->valuedouble);
    /* In a cluster: one node runs a source without a consumer group. */
    const char *holder = cli_json_str(s, "lease_holder");
    if (holder && *holder) printf("runs on    node %s (holds its lease)\n", holder);
    const char *err = cli_json_str(s, "last_error");
    if (err && *err) {
        printf("last error ");
        cli_put_text(stdout, err);
        printf("\n");
    }
    return cli_finish(&r, s, 0);
}

static int source_rm(const cli *c, cli_args *a)
{
    char path[512];
    source_path(path, sizeof path, a->argv[0]);
    answer r;
    int rc = cli_request(c, "DELETE", path, NULL, 0, NULL, &r);
    if (rc) return rc;
    if (r.status >= 300) return cli_finish(&r, NULL, cli_answer_error(c, "source rm failed", &r));
    if (!c->json)
        printf("removed source %s\n", a->argv[0]);
    else
        printf("{\"removed\":true}\n");
    return cli_finish(&r, NULL, 0);
}

const cli_cmd cli_source_cmds[] = {
    {"source add", "NAME URL", 2, 2, add_opts, "drain an upstream broker into a topic",
     "Drain an upstream broker into a topic: each entry becomes a message of\n"
     "--to TOPIC, acknowledged upstream only once it is durable in spate.\n"
     "URL: redis://[USER:PASS@]HOST:PORT/STREAM?group=G (Redis Streams, a\n"
     "consumer group), mqtt://[USER:PASS@]HOST:PORT/TOPIC-FILTER?qos=1 (MQTT,\n"
     "a persistent session; '#' written %23),\n"
     "nats://[USER:PASS@|TOKEN@]HOST:PORT/SUBJECT?stream=S (NATS JetStream,\n"
     "a durable pull consumer), or without stream=S (core NATS: at most once),\n"
     "amqp://USER:PASS@HOST:PORT/VHOST?queue=Q (a RabbitMQ queue; %2F is the\n"
     "default vhost). Over TLS: rediss://, amqps://, mqtts://, or tls=1 for\n"
     "NATS and Kafka, with ca=FILE (else the system's CAs) and\n"
     "cert=FILE&key=FILE (a client certificate); always verified.\n"
     "An existing source of that name is replaced.",
     source_add},
    {"source ls", "", 0, 0, NULL, "list sources",
     "List sources: state, topic, committed entries, upstream lag, URL (its\n"
     "password redacted).",
     source_ls},
    {"source status", "NAME", 1, 1, NULL, "a source's state, counters, last error",
     "A source's state (connecting, running, backing-off), whether it is\n"
     "connected, entries received, committed and refused, upstream lag, the\n"
     "last error, its delivery (at-least-once, at-most-once) and what an\n"
     "at-most-once source dropped.",
     source_status},
    {"source rm", "NAME", 1, 1, NULL, "remove a source",
     "Remove a source: it stops taking entries; what it fetched and did not\n"
     "commit stays pending upstream.",
     source_rm},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
