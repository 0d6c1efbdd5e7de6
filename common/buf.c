/* buf.c — growable byte buffers and reference-counted immutable ones.
 *
 * A buf_t starts with no memory of its own: data points at a shared empty
 * string (cap 0) so it is NUL-terminated from the first buf_ call without a
 * malloc. Growth doubles. An rbuf_t is one malloc holding its count, length
 * and bytes; the loop is single-threaded, so the count is a plain integer. */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char empty[1];

static void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (!q) {
        fprintf(stderr, "hearth: out of memory (%zu bytes)\n", size);
        abort();
    }
    return q;
}

void buf_init(buf_t *b)
{
    b->data = empty;
    b->len = 0;
    b->cap = 0;
}

void buf_free(buf_t *b)
{
    if (b->cap) free(b->data);
    buf_init(b);
}

void buf_reset(buf_t *b)
{
    b->len = 0;
    if (b->cap)
        b->data[0] = '\0';
    else
        b->data = empty;
}

void buf_reserve(buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) {
        fprintf(stderr, "hearth: buffer of %zu + %zu bytes is too big\n", b->len, extra);
        abort();
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    if (need == 1) { /* nothing to hold yet: the shared empty string will do */
        b->data = empty;
        return;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = xrealloc(b->cap ? b->data : NULL, cap);
    if (!b->cap) p[0] = '\0';
    b->data = p;
    b->cap = cap;
}

void buf_append(buf_t *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    if (b->cap) b->data[b->len] = '\0';
}

void buf_appends(buf_t *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_append_u64(buf_t *b, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do
        digits[sizeof digits - ++n] = (char)('0' + v % 10);
    while ((v /= 10) && n < sizeof digits);
    buf_append(b, digits + sizeof digits - n, n);
}

void buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, copy);
    va_end(copy);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        buf_append(b, small, (size_t)n);
        return;
    }
    buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_consume(buf_t *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *buf_take(buf_t *b)
{
    char *p = b->cap ? b->data : xrealloc(NULL, 1);
    if (!b->cap) p[0] = '\0';
    buf_init(b);
    return p;
}

rbuf_t *rbuf_alloc(size_t len)
{
    if (len > SIZE_MAX - sizeof(rbuf_t) - 1) {
        fprintf(stderr, "hearth: buffer of %zu bytes is too big\n", len);
        abort();
    }
    rbuf_t *r = xrealloc(NULL, sizeof(rbuf_t) + len + 1);
    r->refs = 1;
    r->len = len;
    r->data[len] = '\0';
    return r;
}

rbuf_t *rbuf_new(const void *data, size_t len)
{
    rbuf_t *r = rbuf_alloc(len);
    if (len) memcpy(r->data, data, len);
    return r;
}

rbuf_t *rbuf_from_buf(buf_t *b)
{
    rbuf_t *r = rbuf_new(b->data, b->len);
    buf_reset(b);
    return r;
}

rbuf_t *rbuf_ref(rbuf_t *r)
{
    r->refs++;
    return r;
}

void rbuf_unref(rbuf_t *r)
{
    if (r && --r->refs == 0) free(r);
}
