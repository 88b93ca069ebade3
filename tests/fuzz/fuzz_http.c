/*
 * fuzz_http - HTTP request parsing and routing: arbitrary bytes as one
 * client connection to the real API (http/server/ and api/), served on
 * this thread's loop from a scratch data directory. The first byte chooses
 * the server with a token file (admin token "fuzz-admin-token-0001", invoke token
 * "fuzz-invoke-token-0002", also the SigV4 secret of access key id AKIDFUZZ on
 * the AWS routes) or the one without.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/auth.h"
#include "common/limits.h"
#include "http/server.h"
#include "http_client.h"
#include "runtime/isolate.h"
#include "sched/functions.h"
#include "sched/triggers.h"
#include "store/registry_sqlite.h"
#include "store/sqlqueue.h"
#include "store/store.h"

static uv_loop_t *loop;
static int port_open, port_auth;

static void die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_http: %s: %s\n", what, err);
    exit(1);
}

static int start_server(api *a, const http_config *hc)
{
    http_server *s;
    char err[256];
    if (http_server_start(loop, "127.0.0.1", 0, hc, api_http_handlers(), a, &s, err, sizeof err))
        die("http_server_start", err);
    return http_server_port(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    loop = uv_default_loop();
    signal(SIGPIPE, SIG_IGN); /* as spated does */
    char dir[64], err[512], tokens[96];
    snprintf(dir, sizeof dir, "/tmp/fuzz-http-%d", (int)getpid());
    mkdir(dir, 0711);
    const char *runner = getenv("SPATE_RUNNER") ? getenv("SPATE_RUNNER") : "build/spate-runner";
    if (isolate_init(loop, "nobody", SPATE_UID_BASE, SPATE_PIDS_DEFAULT, err, sizeof err))
        die("isolate_init", err);
    store *st;
    if (store_open(dir, &st, err, sizeof err)) die("store_open", err);
    registry *reg;
    if (registry_sqlite_open(loop, st, &reg)) die("registry_sqlite_open", "out of memory");
    functions *table;
    if (functions_open(loop, reg, runner, &table)) die("functions_open", "failed");
    triggers *tr = triggers_create(loop, table);
    queue *q;
    if (queue_open(loop, st, triggers_events(tr), &q, err, sizeof err)) die("queue_open", err);
    triggers_attach(tr, q);
    api_limits limits = {.invoke_payload_max = SPATE_INVOKE_PAYLOAD_MAX,
                         .artifact_max = SPATE_ARTIFACT_MAX,
                         .message_max = SPATE_MESSAGE_MAX,
                         .publish_max = SPATE_PUBLISH_BODY_MAX};
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    FILE *f = fopen(tokens, "w");
    fprintf(f, "admin fuzz-admin-token-0001\ninvoke fuzz-invoke-token-0002 AKIDFUZZ\n");
    fclose(f);
    auth *au;
    if (auth_load(tokens, &au, err, sizeof err)) die("auth_load", err);
    http_config hc;
    http_config_defaults(&hc);
    hc.request_timeout_ms = 1000;
    port_open = start_server(api_create(table, q, tr, NULL, &limits), &hc);
    hc.header_bytes_preauth = SPATE_HTTP_HEADER_PREAUTH_MAX;
    port_auth = start_server(api_create(table, q, tr, au, &limits), &hc);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    int port = data[0] & 1 ? port_auth : port_open;
    fuzz_http_exchange(loop, port, data + 1, size - 1, 300);
    return 0;
}
