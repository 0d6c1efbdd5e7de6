/* json.c — json.h's string writer and flat-object reader. The reader is a
 * recursive-descent scanner over the grammar of RFC 8259 §2-7 restricted
 * to one object of string members; it never reads past len. */
#include "json.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates, beyond U+10FFFF. */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

void json_string(buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    buf_appends(b, "\"");
    while (p < end) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_append(b, esc, 2);
            p++;
        } else if (c < 0x20) {
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (named) {
                buf_appends(b, named);
            } else {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                buf_append(b, esc, 6);
            }
            p++;
        } else {
            size_t n = utf8_len(p, (size_t)(end - p));
            if (n == 0) {
                buf_appends(b, "\xEF\xBF\xBD");
                p++;
            } else {
                buf_append(b, p, n);
                p += n;
            }
        }
    }
    buf_appends(b, "\"");
}

void json_strz(buf_t *b, const char *s)
{
    json_string(b, s, strlen(s));
}

/* ---- reader -------------------------------------------------------------- */

typedef struct scanner {
    const unsigned char *p, *end;
    const char *err;
} scanner_t;

static void skip_ws(scanner_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static bool expect(scanner_t *s, char c, const char *err)
{
    skip_ws(s);
    if (s->p < s->end && *s->p == (unsigned char)c) {
        s->p++;
        return true;
    }
    s->err = err;
    return false;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static void put_utf8(buf_t *b, uint32_t cp)
{
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_append(b, out, n);
}

/* A string token, decoded into a malloc'ed C string; NULL with s->err. */
static char *read_string(scanner_t *s, const char *what)
{
    if (!expect(s, '"', what)) return NULL;
    buf_t b = BUF_INIT;
    buf_appends(&b, "");
    while (s->p < s->end && *s->p != '"') {
        unsigned c = *s->p;
        if (c < 0x20) {
            s->err = "control character in a string";
            goto fail;
        }
        if (c != '\\') {
            size_t n = utf8_len(s->p, (size_t)(s->end - s->p));
            if (n == 0) {
                s->err = "invalid UTF-8 in a string";
                goto fail;
            }
            buf_append(&b, s->p, n);
            s->p += n;
            continue;
        }
        if (s->end - s->p < 2) break;
        char e = (char)s->p[1];
        s->p += 2;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            buf_append(&b, &decoded[simple - "\"\\/bfnrt"], 1);
            continue;
        }
        if (e != 'u' || s->end - s->p < 4) {
            s->err = "bad escape in a string";
            goto fail;
        }
        int cp = hex4(s->p);
        s->p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u' ? hex4(s->p + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) {
                s->err = "unpaired surrogate in a string";
                goto fail;
            }
            s->p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) {
            s->err = "bad \\u escape in a string";
            goto fail;
        } else if (cp == 0) {
            s->err = "\\u0000 in a string";
            goto fail;
        }
        put_utf8(&b, (uint32_t)cp);
    }
    if (s->p >= s->end) {
        s->err = "unterminated string";
        goto fail;
    }
    s->p++;
    return buf_take(&b);
fail:
    buf_free(&b);
    return NULL;
}

int json_read_object(const char *text, size_t len, json_object_t *o, const char **err)
{
    memset(o, 0, sizeof *o);
    scanner_t s = {(const unsigned char *)text, (const unsigned char *)text + len, NULL};
    if (!text || !expect(&s, '{', "expected a JSON object")) goto fail;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            if (o->n == JSON_MAX_MEMBERS) {
                s.err = "too many members";
                goto fail;
            }
            char *name = read_string(&s, "expected a member name");
            if (!name) goto fail;
            if (json_object_get(o, name)) {
                free(name);
                s.err = "duplicate member";
                goto fail;
            }
            o->names[o->n] = name;
            if (!expect(&s, ':', "expected ':'")) {
                free(name);
                goto fail;
            }
            char *value = read_string(&s, "expected a string value");
            if (!value) {
                free(name);
                goto fail;
            }
            o->values[o->n++] = value;
            skip_ws(&s);
            if (s.p < s.end && *s.p == ',') {
                s.p++;
                continue;
            }
            if (!expect(&s, '}', "expected ',' or '}'")) goto fail;
            break;
        }
    }
    skip_ws(&s);
    if (s.p != s.end) {
        s.err = "bytes after the object";
        goto fail;
    }
    return 0;
fail:
    json_object_free(o);
    *err = s.err ? s.err : "expected a JSON object";
    return -1;
}

const char *json_object_get(const json_object_t *o, const char *name)
{
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->names[i], name) == 0) return o->values[i];
    return NULL;
}

void json_object_free(json_object_t *o)
{
    for (int i = 0; i < o->n; i++) {
        free(o->names[i]);
        free(o->values[i]);
    }
    o->n = 0;
}
