/*
 * exec.h - exec functions: any executable that speaks the AWS Lambda Runtime
 * API. Each instance is the version's `bootstrap`, started in its root with
 * the environment a Lambda custom runtime reads, and served by its own
 * Runtime API endpoint on 127.0.0.1 (AWS_LAMBDA_RUNTIME_API):
 *
 *   GET  /2018-06-01/runtime/invocation/next           held until there is one
 *   POST /2018-06-01/runtime/invocation/{id}/response   the result
 *   POST /2018-06-01/runtime/invocation/{id}/error      a function error
 *   POST /2018-06-01/runtime/init/error                 initialisation failed
 *
 * The first /next makes the instance ready; a wrong request id is answered
 * 400; a response over 6 MiB fails the invocation. A connection from any
 * process but the instance's own (its uid, in its cgroup and session) is
 * closed at once.
 */
#ifndef SPATE_EXEC_H
#define SPATE_EXEC_H

#include <uv.h>

#include "runtime/instance.h"
#include "runtime/launcher.h"

typedef struct exec_version exec_version;

/* Checks the root has an executable bootstrap. On error, err says why. */
int exec_version_start(uv_loop_t *loop, const launcher_config *cfg, exec_version **out, char *err,
                       size_t errcap);
/* For a python3 version run by the Python zygote (runtimes/python3/zygote.c,
 * a native function): the environment its instances get (the Lambda one,
 * plus where the code is, SPATE_PYTHON_TASK, and the ARN, SPATE_PYTHON_ARN;
 * NULL-terminated, free each and the array) and the zygote object's path.
 * ERR_NOMEM. */
int exec_version_zygote(const exec_version *x, char ***env, char *object, size_t cap);
/* Kills its instances still running; frees it once they are gone. */
void exec_version_stop(exec_version *x);
/* Starts one instance: spate-runner --exec, which enters the sandbox and
 * the instance's cgroups (held to lim) and runs the bootstrap. */
int exec_spawn(exec_version *x, const instance_limits *lim, const instance_callbacks *cb,
               void *data, instance **out);
/* The port of an exec instance's Runtime API endpoint (tests/fuzz). */
int exec_api_port(const instance *inst);
/* Each endpoint serves only processes of its own instance, with its uid
 * (checked once per connection); off (0) lets any client in, for the
 * fuzzer, which plays the runtime itself. spated never turns it off. */
void exec_api_check_peers(int on);

#endif
