/*
 * fuzz_runtime_api - the requests an exec function's runtime makes to its
 * Runtime API endpoint (runtime/exec/): arbitrary bytes as one client
 * connection to the endpoint of a real exec instance (whose bootstrap only
 * sleeps: the fuzzer is its runtime). An invocation is kept waiting, so
 * /next has work; "{id}" in the input becomes its request id, so that
 * answers can reach the paths that settle it.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/limits.h"
#include "http_client.h"
#include "runtime/exec.h"
#include "runtime/isolate.h"
#include "runtime/launcher.h"

static uv_loop_t *loop;
static launcher *version;
static instance *inst;
static int loaded, outstanding;
static unsigned long serial;
static char current_id[40];

static void die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_runtime_api: %s: %s\n", what, err);
    exit(1);
}

static void on_ready(instance *i, void *data) {}

static void on_result(instance *i, int failed, uint32_t us, const char *body, size_t len,
                      void *data)
{
    outstanding--;
}

static void on_exited(instance *i, const char *why, void *data)
{
    inst = NULL;
    outstanding = 0;
}

static const instance_callbacks callbacks = {
    .ready = on_ready, .result = on_result, .exited = on_exited};

static void on_loaded(launcher *l, int status, const char *message, void *data)
{
    if (status) die("launcher", message);
    loaded = 1;
}

static void on_launcher_exit(launcher *l, void *data) {}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    loop = uv_default_loop();
    signal(SIGPIPE, SIG_IGN); /* as spated does */
    char dir[64], root[96], boot[128], err[512];
    snprintf(dir, sizeof dir, "/tmp/fuzz-rapi-%d", (int)getpid());
    mkdir(dir, 0711);
    snprintf(root, sizeof root, "%s/root", dir);
    mkdir(root, 0755);
    snprintf(boot, sizeof boot, "%s/bootstrap", root);
    FILE *f = fopen(boot, "w");
    fprintf(f, "#!/bin/sh\nexec sleep 1000000\n");
    fclose(f);
    chmod(boot, 0755);
    if (isolate_init(loop, "nobody", SPATE_UID_BASE, SPATE_PIDS_DEFAULT, err, sizeof err))
        die("isolate_init", err);
    exec_api_check_peers(0); /* the fuzzer is the runtime, from outside the instance */
    static char *env[] = {"PATH=/usr/bin:/bin", NULL};
    launcher_config cfg = {
        .runtime = RUNTIME_EXEC,
        .runner_path = getenv("SPATE_RUNNER") ? getenv("SPATE_RUNNER") : "build/spate-runner",
        .path = root,
        .function = "fuzz",
        .version = 1,
        .memory_mb = 128,
        .cpu_millis = 1000,
        .env = env,
    };
    if (launcher_start(loop, &cfg, on_loaded, on_launcher_exit, NULL, &version))
        die("launcher_start", "failed");
    while (!loaded) uv_run(loop, UV_RUN_ONCE);
    return 0;
}

/* Keeps an instance and one invocation waiting for the runtime. */
static void prepare(void)
{
    if (!inst && launcher_spawn(version, &callbacks, NULL, &inst) != 0) die("spawn", "failed");
    if (outstanding > 0) return;
    snprintf(current_id, sizeof current_id, "fuzz-%lu", ++serial);
    frame_invoke inv = {.deadline_ms = 0,
                        .attempt = 1,
                        .request_id = current_id,
                        .function = "fuzz",
                        .payload = "{}",
                        .payload_len = 2};
    if (instance_invoke(inst, &inv) == 0) outstanding++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    prepare();
    /* "{id}" -> the waiting invocation's id. */
    size_t idlen = strlen(current_id), cap = size * (idlen > 4 ? idlen : 4) / 4 + 1, n = 0;
    uint8_t *msg = malloc(cap);
    for (size_t i = 0; i < size;) {
        if (i + 4 <= size && memcmp(data + i, "{id}", 4) == 0) {
            memcpy(msg + n, current_id, idlen);
            n += idlen;
            i += 4;
        } else {
            msg[n++] = data[i++];
        }
    }
    if (inst) fuzz_http_exchange(loop, exec_api_port(inst), msg, n, 10);
    free(msg);
    return 0;
}
