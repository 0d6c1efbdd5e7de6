/* fuzz_json.c — libFuzzer target for common/json.c: the strict reader of
 * flat objects of strings (the admin API's request bodies) and the string
 * writer. Besides the sanitizers, the oracles:
 *   - an object the reader accepts, written back member by member with
 *     json_string, reads back to the same names and values;
 *   - a refused input leaves an empty object and an error message;
 *   - the input written as a JSON string always makes a valid member
 *     value: {"k": <it>} reads back, to the input itself when the input is
 *     valid UTF-8 without NUL (\u0000 is refused by design).
 * Build and run: test/fuzz/run.sh (FUZZ_TARGETS=json). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_json: broken invariant: %s\n", what);
        abort();
    }
}

/* Whether s (len bytes) is valid UTF-8 without NUL: what json_string
 * passes through unchanged apart from escapes. */
static int is_clean_utf8(const uint8_t *s, size_t len)
{
    buf_t b = BUF_INIT;
    json_string(&b, (const char *)s, len);
    int has_replacement = 0;
    /* json_string writes U+FFFD only for bytes that are not UTF-8, or
     * when the input holds U+FFFD itself: compare counts. */
    size_t in = 0, out = 0;
    for (size_t i = 0; i + 2 < len; i++)
        if (s[i] == 0xEF && s[i + 1] == 0xBF && s[i + 2] == 0xBD) in++;
    for (size_t i = 0; i + 2 < b.len; i++)
        if ((uint8_t)b.data[i] == 0xEF && (uint8_t)b.data[i + 1] == 0xBF &&
            (uint8_t)b.data[i + 2] == 0xBD)
            out++;
    has_replacement = out != in;
    buf_free(&b);
    return !has_replacement && !memchr(s, 0, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_object_t o;
    const char *err = NULL;
    if (json_read_object((const char *)data, size, &o, &err) == 0) {
        buf_t b = BUF_INIT;
        buf_appends(&b, "{");
        for (int i = 0; i < o.n; i++) {
            if (i) buf_appends(&b, ",");
            json_strz(&b, o.names[i]);
            buf_appends(&b, ":");
            json_strz(&b, o.values[i]);
        }
        buf_appends(&b, "}");
        json_object_t again;
        check(json_read_object(b.data, b.len, &again, &err) == 0, "what was read writes back");
        check(again.n == o.n, "the same number of members");
        for (int i = 0; i < o.n; i++) {
            check(strcmp(again.names[i], o.names[i]) == 0, "the same names");
            check(strcmp(again.values[i], o.values[i]) == 0, "the same values");
        }
        json_object_free(&again);
        buf_free(&b);
    } else {
        check(o.n == 0 && err && *err, "a refusal says why and keeps nothing");
    }
    json_object_free(&o);

    buf_t w = BUF_INIT;
    buf_appends(&w, "{\"k\":");
    json_string(&w, (const char *)data, size);
    buf_appends(&w, "}");
    json_object_t one;
    int rc = json_read_object(w.data, w.len, &one, &err);
    if (!memchr(data, 0, size)) {
        check(rc == 0, "a written string reads back");
        if (is_clean_utf8(data, size))
            check(strlen(one.values[0]) == size && memcmp(one.values[0], data, size) == 0,
                  "valid UTF-8 reads back as itself");
    }
    json_object_free(&one);
    buf_free(&w);
    return 0;
}
