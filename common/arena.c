/* arena.c — bump allocation for memory that dies together.
 *
 * An arena is a list of chunks. Small allocations bump a pointer in the
 * current chunk; when it is full a new chunk, twice the size of the last
 * (up to a cap), becomes current. An allocation too big to share a chunk gets
 * a chunk of its own, put behind the current one so the current one keeps
 * filling. The arena's own header lives in its first chunk, so a new arena is
 * one malloc, and arena_reset() frees every chunk but that first one.
 *
 * Callers: the element tree (xml.c), the stream parser (xstream.c, one arena
 * per stream reused stanza after stanza), and anyone with short-lived data. */
#include "arena.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN alignof(max_align_t)
#define DEFAULT_SIZE 4096
#define MAX_CHUNK (256 * 1024)

typedef struct chunk chunk_t;
struct chunk {
    chunk_t *next;
    size_t size; /* usable bytes in data */
    size_t used;
    alignas(max_align_t) unsigned char data[];
};

struct arena {
    chunk_t *current; /* where small allocations bump */
    chunk_t *first;   /* embedded in the same malloc as the arena */
    size_t used;      /* bytes handed out since the last reset */
    size_t next_size; /* usable size of the next regular chunk */
    size_t first_size;
};

static void *xmalloc(size_t size)
{
    void *p = malloc(size);
    if (!p) {
        fprintf(stderr, "hearth: out of memory (%zu bytes)\n", size);
        abort();
    }
    return p;
}

static size_t round_up(size_t n)
{
    if (n > SIZE_MAX - ALIGN) {
        fprintf(stderr, "hearth: arena allocation of %zu bytes is too big\n", n);
        abort();
    }
    return (n + ALIGN - 1) & ~(ALIGN - 1);
}

/* The arena header, padded so the first chunk that follows it is aligned. */
#define ARENA_HEADER round_up(sizeof(arena_t))

arena_t *arena_new(size_t size)
{
    if (size == 0) size = DEFAULT_SIZE - ARENA_HEADER - sizeof(chunk_t);
    size = round_up(size);
    unsigned char *block = xmalloc(ARENA_HEADER + sizeof(chunk_t) + size);
    arena_t *a = (arena_t *)block;
    chunk_t *c = (chunk_t *)(block + ARENA_HEADER);
    c->next = NULL;
    c->size = size;
    c->used = 0;
    a->current = a->first = c;
    a->used = 0;
    a->first_size = size;
    a->next_size = size * 2 < MAX_CHUNK ? size * 2 : MAX_CHUNK;
    if (a->next_size < size) a->next_size = size;
    return a;
}

static void free_chunks_after_first(arena_t *a)
{
    chunk_t *c = a->first->next;
    while (c) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->first->next = NULL;
}

void arena_free(arena_t *a)
{
    if (!a) return;
    free_chunks_after_first(a);
    free(a);
}

void arena_reset(arena_t *a)
{
    free_chunks_after_first(a);
    a->first->used = 0;
    a->current = a->first;
    a->used = 0;
    a->next_size = a->first_size * 2 < MAX_CHUNK ? a->first_size * 2 : MAX_CHUNK;
    if (a->next_size < a->first_size) a->next_size = a->first_size;
}

static chunk_t *chunk_new(size_t size)
{
    if (size > SIZE_MAX - sizeof(chunk_t)) {
        fprintf(stderr, "hearth: arena chunk of %zu bytes is too big\n", size);
        abort();
    }
    chunk_t *c = xmalloc(sizeof(chunk_t) + size);
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

void *arena_alloc(arena_t *a, size_t size)
{
    size = round_up(size ? size : 1);
    chunk_t *c = a->current;
    if (c->size - c->used < size) {
        if (size > a->next_size / 4) {
            /* Big: its own chunk, linked behind the current one. */
            chunk_t *big = chunk_new(size);
            big->used = size;
            big->next = c->next;
            c->next = big;
            a->used += size;
            return big->data;
        }
        chunk_t *fresh = chunk_new(a->next_size);
        if (a->next_size < MAX_CHUNK) a->next_size *= 2;
        fresh->next = c->next;
        c->next = fresh;
        a->current = c = fresh;
    }
    void *p = c->data + c->used;
    c->used += size;
    a->used += size;
    return p;
}

char *arena_strndup(arena_t *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_strdup(arena_t *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

size_t arena_used(const arena_t *a)
{
    return a->used;
}
