/* fuzz_xml_fragment.c — libFuzzer target for xml_parse_fragment and the
 * serializers (xml.h).
 *
 * The first byte picks the default namespace the fragment is parsed in
 * (none, jabber:client, jabber:server, another); the rest is the
 * fragment. Besides the sanitizers, the oracles, for whatever parses:
 *   - round trip: serialize(parse(serialize(x))) == serialize(x), and the
 *     serialization parses (in no default namespace) at all;
 *   - serializing inside the namespace it was parsed in, then parsing in
 *     that namespace, gives the same tree;
 *   - a stanza serialized as a stanza (elem_serialize_stanza, as the
 *     router and c2s write them), read back in the namespace it names,
 *     gives the same tree;
 *   - a deep copy serializes the same.
 * Build and run: test/fuzz/run.sh (FUZZ_TARGETS=xml_fragment). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"
#include "xmpp.h"

static void check(int cond, const char *what, const buf_t *text)
{
    if (!cond) {
        fprintf(stderr, "fuzz_xml_fragment: broken invariant: %s\n", what);
        if (text) fprintf(stderr, "  serialized: %.*s\n", (int)text->len, text->data);
        abort();
    }
}

static int same(const buf_t *a, const buf_t *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* The serialization (in no namespace) of text parsed in default_ns; the
 * parse must succeed. */
static void reparse(const buf_t *text, const char *default_ns, buf_t *out, const char *what)
{
    arena_t *a = arena_new(0);
    elem_t *e = xml_parse_fragment(a, text->data, text->len, default_ns);
    check(e != NULL, what, text);
    elem_serialize(e, NULL, out);
    arena_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const namespaces[] = {NULL, NS_CLIENT, NS_SERVER, "urn:example:other"};
    if (size < 1) return 0;
    const char *default_ns = namespaces[data[0] % 4];
    arena_t *a = arena_new(0);
    elem_t *e = xml_parse_fragment(a, (const char *)data + 1, size - 1, default_ns);
    if (!e) {
        arena_free(a);
        return 0;
    }
    check(e->name != NULL && e->ns != NULL && e->parent == NULL, "a fragment is one element", NULL);

    buf_t once = BUF_INIT, twice = BUF_INIT;
    elem_serialize(e, NULL, &once);
    reparse(&once, NULL, &twice, "the serialization parses again");
    check(same(&once, &twice), "serialize(parse(serialize(x))) == serialize(x)", &once);

    if (default_ns) {
        buf_t inside = BUF_INIT, back = BUF_INIT;
        elem_serialize(e, default_ns, &inside);
        reparse(&inside, default_ns, &back, "serialized in its namespace, it parses there");
        check(same(&once, &back), "serialized in its namespace, it reads back the same", &inside);
        buf_free(&inside);
        buf_free(&back);
    }

    /* As a stanza: with the namespace written out, and with none (the
     * stream's default, which the reader then supplies). */
    static const char *const contents[] = {NULL, NS_CLIENT, NS_SERVER};
    for (int i = 0; i < 3; i++) {
        buf_t stanza = BUF_INIT, back = BUF_INIT;
        elem_serialize_stanza(e, contents[i], &stanza);
        bool is_stanza = strcmp(e->ns, NS_CLIENT) == 0 || strcmp(e->ns, NS_SERVER) == 0 ||
                         strcmp(e->ns, NS_COMPONENT_ACCEPT) == 0;
        /* A stanza written without its namespace is read in it, as a
         * stream's default; anything else says its own. */
        const char *reader_ns = is_stanza && !contents[i] ? e->ns : NULL;
        reparse(&stanza, reader_ns, &back, "a stanza serialization parses");
        if (!is_stanza || !contents[i] || strcmp(contents[i], e->ns) == 0) {
            /* Not a stanza: written as it is. A stanza read in its own
             * namespace: the same tree. (One moved to another stanza
             * namespace is another tree.) */
            check(same(&once, &back), "a stanza serialization reads back the same", &stanza);
        }
        buf_free(&stanza);
        buf_free(&back);
    }

    arena_t *b = arena_new(0);
    elem_t *copy = elem_copy(b, e);
    buf_t copied = BUF_INIT;
    elem_serialize(copy, NULL, &copied);
    check(same(&once, &copied), "a copy serializes the same", &copied);
    buf_free(&copied);
    arena_free(b);

    buf_free(&once);
    buf_free(&twice);
    arena_free(a);
    return 0;
}
