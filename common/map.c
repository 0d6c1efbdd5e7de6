/* map.c — a string-keyed hash table (see map.h). */
#include "map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct map_entry {
    map_entry_t *next;
    uint32_t hash;
    void *value;
    char key[];
};

static uint32_t hash_of(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

void map_init(map_t *m)
{
    m->buckets = NULL;
    m->nbuckets = 0;
    m->count = 0;
}

void map_free(map_t *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        map_entry_t *e = m->buckets[i];
        while (e) {
            map_entry_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    map_init(m);
}

static map_entry_t **slot_of(const map_t *m, const char *key, uint32_t h)
{
    map_entry_t **p = &m->buckets[h & (m->nbuckets - 1)];
    while (*p && ((*p)->hash != h || strcmp((*p)->key, key) != 0))
        p = &(*p)->next;
    return p;
}

void *map_get(const map_t *m, const char *key)
{
    if (m->count == 0) return NULL;
    map_entry_t **p = slot_of(m, key, hash_of(key));
    return *p ? (*p)->value : NULL;
}

static void grow(map_t *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
    map_entry_t **b = calloc(n, sizeof(*b));
    if (!b) log_fatal("out of memory");
    for (size_t i = 0; i < m->nbuckets; i++) {
        map_entry_t *e = m->buckets[i];
        while (e) {
            map_entry_t *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

void map_put(map_t *m, const char *key, void *value)
{
    if (m->count >= m->nbuckets) grow(m);
    uint32_t h = hash_of(key);
    map_entry_t **p = slot_of(m, key, h);
    if (*p) {
        (*p)->value = value;
        return;
    }
    size_t len = strlen(key);
    map_entry_t *e = malloc(sizeof(*e) + len + 1);
    if (!e) log_fatal("out of memory");
    memcpy(e->key, key, len + 1);
    e->hash = h;
    e->value = value;
    e->next = NULL;
    *p = e;
    m->count++;
}

void *map_del(map_t *m, const char *key)
{
    if (m->count == 0) return NULL;
    map_entry_t **p = slot_of(m, key, hash_of(key));
    map_entry_t *e = *p;
    if (!e) return NULL;
    void *value = e->value;
    *p = e->next;
    free(e);
    m->count--;
    return value;
}

static map_entry_t *first_from(map_iter_t *it)
{
    while (it->bucket < it->m->nbuckets) {
        map_entry_t *e = it->m->buckets[it->bucket++];
        if (e) return e;
    }
    return NULL;
}

void map_iter_init(map_iter_t *it, const map_t *m)
{
    it->m = m;
    it->bucket = 0;
    it->next = first_from(it);
}

void *map_iter_next(map_iter_t *it, const char **key)
{
    map_entry_t *e = it->next;
    if (!e) return NULL;
    it->next = e->next ? e->next : first_from(it);
    if (key) *key = e->key;
    return e->value;
}
