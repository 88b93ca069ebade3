#include "common/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/hash.h"

void strmap_init(strmap *m)
{
    m->buckets = NULL;
    m->nbuckets = 0;
    m->count = 0;
}

void strmap_free(strmap *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        strmap_entry *e = m->buckets[i];
        while (e) {
            strmap_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    strmap_init(m);
}

static strmap_entry **find(const strmap *m, const char *key, size_t klen, uint64_t h)
{
    if (m->nbuckets == 0) return NULL;
    strmap_entry **pe = &m->buckets[h & (m->nbuckets - 1)];
    while (*pe && !((*pe)->hash == h && (*pe)->klen == klen && memcmp((*pe)->key, key, klen) == 0))
        pe = &(*pe)->next;
    return pe;
}

static int grow(strmap *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 64;
    strmap_entry **b = calloc(n, sizeof *b);
    if (!b) return ERR_NOMEM;
    for (size_t i = 0; i < m->nbuckets; i++) {
        strmap_entry *e = m->buckets[i];
        while (e) {
            strmap_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
    return 0;
}

int strmap_put(strmap *m, const char *key, void *value)
{
    size_t klen = strlen(key);
    uint64_t h = hash_fnv1a(key, klen);
    strmap_entry **pe = find(m, key, klen, h);
    if (pe && *pe) {
        (*pe)->key = key;
        (*pe)->value = value;
        return 0;
    }
    if (m->count >= m->nbuckets && grow(m)) return ERR_NOMEM;
    strmap_entry *e = malloc(sizeof *e);
    if (!e) return ERR_NOMEM;
    *e = (strmap_entry){.hash = h, .key = key, .klen = klen, .value = value};
    size_t i = h & (m->nbuckets - 1);
    e->next = m->buckets[i];
    m->buckets[i] = e;
    m->count++;
    return 0;
}

void *strmap_get(const strmap *m, const char *key, size_t klen)
{
    strmap_entry **pe = find(m, key, klen, hash_fnv1a(key, klen));
    return pe && *pe ? (*pe)->value : NULL;
}

void *strmap_remove(strmap *m, const char *key)
{
    size_t klen = strlen(key);
    strmap_entry **pe = find(m, key, klen, hash_fnv1a(key, klen));
    if (!pe || !*pe) return NULL;
    strmap_entry *e = *pe;
    void *v = e->value;
    *pe = e->next;
    free(e);
    m->count--;
    return v;
}

void strmap_each(const strmap *m, void (*cb)(const char *key, void *value, void *data), void *data)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        for (strmap_entry *e = m->buckets[i]; e; e = e->next) cb(e->key, e->value, data);
}
