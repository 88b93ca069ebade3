/* registry_dispatch.c - the registry interface (registry.h) as calls through
 * the table each implementation's registry begins with. */
#include "store/registry.h"

#include "common/err.h"

#define OPS(x) (*(const registry_ops *const *)(const void *)(x))

int registry_next_version(registry *r, const char *name, uint32_t *out)
{
    return OPS(r)->next_version(r, name, out);
}

int registry_put_version(registry *r, const reg_version *v)
{
    return OPS(r)->put_version(r, v);
}

int registry_delete_function(registry *r, const char *name)
{
    return OPS(r)->delete_function(r, name);
}

int registry_each_active(registry *r, registry_version_cb cb, void *data)
{
    return OPS(r)->each_active(r, cb, data);
}

int registry_each_version(registry *r, const char *name, registry_version_cb cb, void *data)
{
    return OPS(r)->each_version(r, name, cb, data);
}

int registry_artifact_used(registry *r, const char *sha256)
{
    return OPS(r)->artifact_used(r, sha256);
}

void registry_artifact_put(registry *r, const void *bytes, size_t len, int unpack,
                           registry_stored_cb cb, void *data)
{
    OPS(r)->artifact_put(r, bytes, len, unpack, cb, data);
}

void registry_artifact_path(registry *r, const char *sha256, int unpacked, char *out, size_t cap)
{
    OPS(r)->artifact_path(r, sha256, unpacked, out, cap);
}

int registry_artifact_remove(registry *r, const char *sha256)
{
    return OPS(r)->artifact_remove(r, sha256);
}

int registry_trigger_put(registry *r, const char *topic, const queue_sub_config *cfg)
{
    return OPS(r)->trigger_put(r, topic, cfg);
}

int registry_trigger_remove(registry *r, const char *topic, const char *function)
{
    return OPS(r)->trigger_remove(r, topic, function);
}

void registry_each_trigger(registry *r, registry_trigger_cb cb, void *data)
{
    OPS(r)->each_trigger(r, cb, data);
}

void registry_set_events(registry *r, const registry_events *ev)
{
    OPS(r)->set_events(r, ev);
}

void registry_close(registry *r)
{
    if (r) OPS(r)->close(r);
}

int registry_schedule_put(registry *r, const reg_schedule *s)
{
    return OPS(r)->schedule_put(r, s);
}

int registry_schedule_remove(registry *r, const char *name)
{
    return OPS(r)->schedule_remove(r, name);
}

int registry_schedule_fired(registry *r, const char *name, int64_t fire_ms)
{
    return OPS(r)->schedule_fired(r, name, fire_ms);
}

int registry_each_schedule(registry *r, registry_schedule_cb cb, void *data)
{
    return OPS(r)->each_schedule(r, cb, data);
}

int registry_source_put(registry *r, const reg_source *s)
{
    return OPS(r)->source_put(r, s);
}

int registry_source_remove(registry *r, const char *name)
{
    return OPS(r)->source_remove(r, name);
}

int registry_each_source(registry *r, registry_source_cb cb, void *data)
{
    return OPS(r)->each_source(r, cb, data);
}

void registry_watch(registry *r, enum registry_kind kind, registry_changed_cb cb, void *data)
{
    if (OPS(r)->watch) OPS(r)->watch(r, kind, cb, data);
}

void registry_sync(registry *r, registry_done_cb cb, void *data)
{
    if (OPS(r)->sync)
        OPS(r)->sync(r, cb, data);
    else
        cb(data, 0);
}

int registry_lease(registry *r, const char *key, char *holder, size_t cap)
{
    if (OPS(r)->lease) return OPS(r)->lease(r, key, holder, cap);
    if (cap) holder[0] = '\0';
    return 1;
}

void registry_lease_drop(registry *r, const char *key)
{
    if (OPS(r)->lease_drop) OPS(r)->lease_drop(r, key);
}

int registry_activate(registry *r, const char *name, uint32_t version)
{
    return OPS(r)->activate ? OPS(r)->activate(r, name, version) : ERR_NOTSUP;
}

int registry_alias_put(registry *r, const reg_alias *a)
{
    return OPS(r)->alias_put ? OPS(r)->alias_put(r, a) : ERR_NOTSUP;
}

int registry_alias_remove(registry *r, const char *function, const char *name)
{
    return OPS(r)->alias_remove ? OPS(r)->alias_remove(r, function, name) : ERR_NOTSUP;
}

int registry_each_alias(registry *r, const char *function, registry_alias_cb cb, void *data)
{
    return OPS(r)->each_alias ? OPS(r)->each_alias(r, function, cb, data) : ERR_NOTSUP;
}
