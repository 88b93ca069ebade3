/*
 * strmap.h - a hash map from strings to pointers (FNV-1a, chained). Keys are
 * borrowed: they must live as long as their entry (usually inside the value).
 */
#ifndef SPATE_STRMAP_H
#define SPATE_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap_entry {
    struct strmap_entry *next;
    uint64_t hash;
    const char *key;
    size_t klen;
    void *value;
} strmap_entry;

typedef struct strmap {
    strmap_entry **buckets;
    size_t nbuckets;
    size_t count;
} strmap;

void strmap_init(strmap *m);
/* Frees the map's own memory, not the values. */
void strmap_free(strmap *m);
/* Adds or replaces. 0 or ERR_NOMEM. */
int strmap_put(strmap *m, const char *key, void *value);
void *strmap_get(const strmap *m, const char *key, size_t klen);
/* Removes and returns the value, or NULL. */
void *strmap_remove(strmap *m, const char *key);
/* Calls cb for each entry in no particular order; cb must not change the map. */
void strmap_each(const strmap *m, void (*cb)(const char *key, void *value, void *data), void *data);

#endif
