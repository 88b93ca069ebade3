#include "runtime/instance.h"

static uint64_t next_id = 1;

void instance_init(instance *i, const instance_ops *ops, const instance_callbacks *cb, void *data)
{
    i->ops = ops;
    i->cb = cb;
    i->data = data;
    i->id = next_id++;
}
