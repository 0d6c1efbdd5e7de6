/* arena.h — bump allocation for memory that dies together (one stanza).
 *
 * An arena hands out memory from large chunks and frees it all at once.
 * Stanza trees live in one arena, so building and dropping a stanza costs a
 * few pointer bumps instead of a malloc per node. Out of memory is fatal. */
#ifndef HEARTH_ARENA_H
#define HEARTH_ARENA_H

#include <stddef.h>

typedef struct arena arena_t;

/* A new arena whose first chunk holds at least `size` bytes (0: a default). */
arena_t *arena_new(size_t size);
void arena_free(arena_t *a);
/* Forget every allocation but keep the first chunk for reuse. */
void arena_reset(arena_t *a);
/* Memory aligned for any type, valid until arena_free/arena_reset. */
void *arena_alloc(arena_t *a, size_t size);
/* A NUL-terminated copy of `len` bytes of s. */
char *arena_strndup(arena_t *a, const char *s, size_t len);
char *arena_strdup(arena_t *a, const char *s);
/* Bytes handed out so far (for limits and tests). */
size_t arena_used(const arena_t *a);

#endif
