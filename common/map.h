/* map.h — a string-keyed hash table for in-memory indexes: the sm's
 * (sessions by id, users by bare JID, rosters, pending checks) and the
 * s2s's outgoing streams by domain pair.
 *
 * Keys are copied; values are the caller's. Chained buckets that double
 * when the table is full, FNV-1a hashing. Not for peers' data without a
 * bound: callers keep their own limits. */
#ifndef HEARTH_MAP_H
#define HEARTH_MAP_H

#include <stddef.h>

typedef struct map_entry map_entry_t;
typedef struct map {
    map_entry_t **buckets;
    size_t nbuckets;
    size_t count;
} map_t;

void map_init(map_t *m);
/* Free the table and its keys (not the values). */
void map_free(map_t *m);
void *map_get(const map_t *m, const char *key);
/* Set key to value (replacing); value must not be NULL. */
void map_put(map_t *m, const char *key, void *value);
/* Remove key; returns its value or NULL. */
void *map_del(map_t *m, const char *key);

/* Iteration that survives removing the current entry. */
typedef struct map_iter {
    const map_t *m;
    size_t bucket;
    map_entry_t *next;
} map_iter_t;
void map_iter_init(map_iter_t *it, const map_t *m);
/* The next entry's value (and key in *key if not NULL), or NULL at the end. */
void *map_iter_next(map_iter_t *it, const char **key);

#endif
