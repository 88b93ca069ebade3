#include "runtime/instance.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/err.h"
#include "runtime/isolate.h"
#include "runtime/output.h"

static uint64_t next_id = 1;

void instance_init(instance *i, const instance_ops *ops, const instance_callbacks *cb, void *data)
{
    i->ops = ops;
    i->cb = cb;
    i->data = data;
    i->id = next_id++;
    i->iso = NULL;
    i->out = NULL;
    i->output_unread = 0;
    i->version = 0;
    i->limit_err = 0;
}

int instance_isolate(instance *i, const instance_limits *l, int out_fds[2])
{
    out_fds[0] = out_fds[1] = -1;
    i->iso = isolate_acquire(l->memory_mb, l->cpu_millis, l->uid);
    i->memory_mb = l->memory_mb;
    i->version = l->version;
    /* Short of descriptors: a node limit, answered 503 descriptors_exhausted. */
    if (!i->iso) return errno == EMFILE || errno == ENFILE ? ERR_DESCRIPTORS : ERR_NOMEM;
    int rc = l->log ? output_open(l->loop, l->log, i->id, l->version, out_fds, &i->out) : 0;
    if (rc != 0) {
        isolate_release(i->iso);
        i->iso = NULL;
        return rc == ERR_NOMEM || err_limit(rc) >= 0 ? rc : ERR_IO;
    }
    return 0;
}

void instance_set_request(instance *i, const char *request_id)
{
    if (i->out) output_set_request(i->out, request_id, i->output_unread);
    i->output_unread = 0;
}

void instance_sandbox_text(const instance *i, char *out, size_t cap)
{
    snprintf(out, cap, "%s\t%s", i->iso ? i->iso->cgroups : "", i->iso ? i->iso->tmpdir : "");
}

int instance_at_pids_limit(const instance *i)
{
    return i->iso && isolate_at_pids_limit(i->iso);
}

void instance_stop_forks(instance *i)
{
    if (i->iso) isolate_stop_forks(i->iso);
}

int instance_release(instance *i, char *why, size_t cap)
{
    output_close(i->out);
    i->out = NULL;
    if (!i->iso) return 0;
    int oom = isolate_release(i->iso);
    i->iso = NULL;
    if (oom && why)
        snprintf(why, cap, "out of memory: the instance used more than its %u MB (--memory)",
                 i->memory_mb);
    return oom;
}
