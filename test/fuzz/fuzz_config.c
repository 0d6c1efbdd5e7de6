/* fuzz_config.c — libFuzzer target for hearth.xml parsing (config.h).
 *
 * config_parse on the input, as if it were a file. Besides the sanitizers
 * (and the leak checker: every path through the parser frees what it
 * took), the oracles:
 *   - a refusal comes with a message that names the file;
 *   - a config that parses answers for every setting of cfg_settings: its
 *     value (config_get), the typed getters for typed settings, the count
 *     of its element and its value in each repetition (config_get_at);
 *     none of them may fail (a getter that meets a value it cannot read
 *     exits, which libFuzzer reports), and every value found is valid for
 *     its type.
 * Build and run: test/fuzz/run.sh (FUZZ_TARGETS=config). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlerror.h>

#include "config.h"

#define NAME "fuzz.xml"

static void check(int cond, const char *what, const char *path)
{
    if (!cond) {
        fprintf(stderr, "fuzz_config: broken invariant: %s (%s)\n", what, path ? path : "");
        abort();
    }
}

static int is_choice(const char *v, const char *choices)
{
    size_t len = strlen(v);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, v, n) == 0) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* v, found for s, is a value of its type. */
static void check_value(const cfg_setting_t *s, const char *v)
{
    if (!v) return;
    switch (s->type) {
    case CFG_INT: {
        char *end;
        long long n = strtoll(v, &end, 10);
        check(end != v && *end == '\0', "an integer setting holds an integer", s->path);
        if (s->min || s->max) check(n >= s->min && n <= s->max, "an integer is in range", s->path);
        break;
    }
    case CFG_CHOICE:
        check(is_choice(v, s->choices), "a choice is one of its words", s->path);
        break;
    default:
        break;
    }
}

static void query(const config_t *c, const cfg_setting_t *s)
{
    const char *v = config_get(c, s->path);
    check_value(s, v);
    switch (s->type) {
    case CFG_INT:
        if (v)
            check(config_int(c, s->path) == strtoll(v, NULL, 10), "config_int reads it", s->path);
        break;
    case CFG_BOOL:
        (void)config_bool(c, s->path);
        break;
    case CFG_SIZE:
        (void)config_size(c, s->path);
        break;
    case CFG_DURATION:
        (void)config_ms(c, s->path);
        break;
    default:
        break;
    }
    int n = config_count(c, s->path);
    check(n >= 0, "a count is not negative", s->path);
    if (n == 0 && s->type != CFG_SECTION && !strchr(s->path, '@'))
        check(v == s->dflt || (v && s->dflt && strcmp(v, s->dflt) == 0),
              "an absent setting has its default", s->path);
    for (int i = -1; i <= n; i++) {
        const char *at = config_get_at(c, s->path, i);
        if (i < 0 || i == n) {
            check(at == NULL, "no value outside the repetitions", s->path);
            continue;
        }
        check_value(s, at);
        if (i == 0 && s->type != CFG_SECTION && !strchr(s->path, '@'))
            check(at == v || (at && v && strcmp(at, v) == 0),
                  "the first repetition holds the value", s->path);
    }
}

static void quiet(void *ctx, const char *fmt, ...)
{
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libxml2 writes some errors (encoding ones) to stderr, past the parser's
 * own handler: keep the fuzzer's output readable. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    xmlSetGenericErrorFunc(NULL, quiet);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *err = NULL;
    config_t *c = config_parse(NAME, (const char *)data, size, &err);
    if (!c) {
        check(err && strncmp(err, NAME ":", strlen(NAME) + 1) == 0, "a refusal names the file",
              err);
        free(err);
        return 0;
    }
    check(err == NULL, "no message with a config", err);
    check(strcmp(config_file(c), NAME) == 0, "the config knows its file", NULL);
    for (const cfg_setting_t *s = cfg_settings; s->path; s++)
        query(c, s);
    config_free(c);
    return 0;
}
