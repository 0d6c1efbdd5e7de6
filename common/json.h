/* json.h — the JSON the HTTP admin API speaks (RFC 8259): a writer of
 * strings into a buf_t, and a strict reader of flat objects of strings.
 *
 * Writer: json_string() appends a quoted string, escaping '"', '\\' and
 * the control characters below U+0020 (as \n, \t ... or \u00XX); bytes
 * that are not valid UTF-8 become U+FFFD, so the output is always valid
 * JSON. Numbers, objects and arrays are plain enough to write with
 * buf_printf around it.
 *
 * Reader: json_read_object() accepts exactly one object whose members are
 * all strings, e.g. {"jid": "a@b", "password": "x"}, with whitespace
 * between tokens, and nothing else: no nesting, no numbers, true, false or
 * null, no duplicate names, no trailing bytes, at most JSON_MAX_MEMBERS
 * members. Strings must be valid UTF-8 without raw control characters;
 * escapes (\uXXXX with surrogate pairs included) are decoded, except
 * \u0000, refused so that every value is a C string. */
#ifndef HEARTH_JSON_H
#define HEARTH_JSON_H

#include <stddef.h>

#include "buf.h"

void json_string(buf_t *b, const char *s, size_t len);
/* The same for a NUL-terminated string. */
void json_strz(buf_t *b, const char *s);

#define JSON_MAX_MEMBERS 16
typedef struct json_object {
    int n;
    char *names[JSON_MAX_MEMBERS];
    char *values[JSON_MAX_MEMBERS];
} json_object_t;

/* Parse text (len bytes) into o. 0, or -1 with *err a static message
 * saying what is wrong ("expected a string value"). o is empty on error;
 * json_object_free it in both cases. */
int json_read_object(const char *text, size_t len, json_object_t *o, const char **err);
/* The value of member name, or NULL. */
const char *json_object_get(const json_object_t *o, const char *name);
void json_object_free(json_object_t *o);

#endif
