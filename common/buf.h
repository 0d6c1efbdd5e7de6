/* buf.h — byte buffers: a growable one for building output, and a
 * reference-counted immutable one for fanning one serialization out to many
 * write queues. Out of memory is fatal. */
#ifndef HEARTH_BUF_H
#define HEARTH_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    char *data; /* always NUL-terminated after any buf_ call (not counted in len) */
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

void buf_init(buf_t *b);
void buf_free(buf_t *b);
void buf_reset(buf_t *b); /* len = 0, keeps the memory */
void buf_reserve(buf_t *b, size_t extra);
void buf_append(buf_t *b, const void *data, size_t len);
void buf_appends(buf_t *b, const char *s);
/* v in decimal (sequence numbers on the message path: no printf). */
void buf_append_u64(buf_t *b, uint64_t v);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Drop the first n bytes (n <= len). */
void buf_consume(buf_t *b, size_t n);
/* Hand the bytes to the caller (free() them); b is left empty. */
char *buf_take(buf_t *b);

typedef struct rbuf {
    unsigned refs;
    size_t len;
    char data[];
} rbuf_t;

/* A new buffer holding a copy of data, with one reference. */
rbuf_t *rbuf_new(const void *data, size_t len);
/* A new buffer of len bytes for the caller to fill (a file read into it),
 * with one reference; the caller may lower len to what it filled. */
rbuf_t *rbuf_alloc(size_t len);
/* A new buffer with the contents of b (b is reset). */
rbuf_t *rbuf_from_buf(buf_t *b);
rbuf_t *rbuf_ref(rbuf_t *r);
void rbuf_unref(rbuf_t *r);

#endif
