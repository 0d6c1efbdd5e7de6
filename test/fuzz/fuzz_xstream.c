/* fuzz_xstream.c — libFuzzer target for the stream parser (xstream.h) and the
 * serializer (xml.h).
 *
 * Each input is parsed several times: whole and in chunks of 1, 3, 17 and
 * 200 bytes, in full and in shallow mode, with small limits so the limit
 * paths are reached. Besides the sanitizers, four oracles:
 *   - chunking never changes what is delivered: two runs agree event for
 *     event (trees and raw bytes) until one of them fails, and entirely when
 *     both succeed. (How soon libxml2 notices malformed input depends on
 *     how much it has seen, so the point of failure may move.) Shallow mode
 *     delivers the same raw bytes;
 *   - raw bytes look like an element: '<' ... '>', the content inside them;
 *   - raw bytes parsed on their own give the same tree as the stream did
 *     (when they do not lean on prefixes declared on the stream header);
 *   - a full-mode stanza, serialized, parses back to the same serialization.
 * Skipping the content (xstream_skip_content) takes whatever shallow mode
 * takes and delivers the same, whole and in chunks.
 * A stanza named "proceed" resets the stream from its callback, as STARTTLS
 * does, and one named "keep" is detached, so those paths are fuzzed too.
 * Build and run: test/fuzz/run.sh. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmpp.h"
#include "xstream.h"

#define MAX_STANZA 512
#define MAX_DEPTH 6

typedef struct run {
    xstream_t *xs;
    bool is_shallow;
    char default_ns[MAX_STANZA + 1]; /* a header is at most MAX_STANZA bytes */
    buf_t events; /* trees and raw bytes */
    buf_t raws;   /* raw bytes only: must match between full and shallow */
    arena_t *kept[4];
    unsigned nkept;
} run_t;

static void check(bool cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_xstream: broken invariant: %s\n", what);
        abort();
    }
}

static void on_open(void *ud, elem_t *header, const char *default_ns)
{
    run_t *r = ud;
    snprintf(r->default_ns, sizeof r->default_ns, "%s", default_ns);
    buf_printf(&r->events, "open[%s]", default_ns);
    elem_serialize(header, default_ns, &r->events);
    buf_appends(&r->raws, "open\n");
}

static void check_round_trip(const elem_t *stanza)
{
    buf_t once = BUF_INIT, twice = BUF_INIT;
    elem_serialize(stanza, NULL, &once);
    arena_t *a = arena_new(0);
    elem_t *again = xml_parse_fragment(a, once.data, once.len, NULL);
    check(again != NULL, "serialized stanza parses again");
    elem_serialize(again, NULL, &twice);
    check(once.len == twice.len && memcmp(once.data, twice.data, once.len) == 0,
          "serialize(parse(serialize(x))) == serialize(x)");
    arena_free(a);
    buf_free(&once);
    buf_free(&twice);
}

static void check_raw_matches_tree(const run_t *r, const elem_t *stanza, const xstream_raw_t *raw)
{
    /* A fragment binds stream: to the streams namespace; the stream being
     * fuzzed may bind it to anything. */
    if (memmem(raw->data, raw->len, "stream:", 7)) return;
    arena_t *a = arena_new(0);
    elem_t *alone = xml_parse_fragment(a, raw->data, raw->len, r->default_ns);
    if (alone) {
        buf_t want = BUF_INIT, got = BUF_INIT;
        elem_serialize(stanza, NULL, &want);
        elem_serialize(alone, NULL, &got);
        check(want.len == got.len && memcmp(want.data, got.data, want.len) == 0,
              "raw bytes parse to the stanza's tree");
        buf_free(&want);
        buf_free(&got);
    }
    arena_free(a);
}

static void on_stanza(void *ud, elem_t *stanza, const xstream_raw_t *raw)
{
    run_t *r = ud;
    check(raw->len >= 3 && raw->data[0] == '<' && raw->data[raw->len - 1] == '>',
          "raw bytes run from '<' to '>'");
    check(raw->len <= MAX_STANZA, "raw bytes within max_stanza");
    check(raw->inner_off + raw->inner_len <= raw->len, "inner bytes inside raw bytes");
    if (raw->inner_len)
        check(raw->data[raw->inner_off - 1] == '>' &&
                  raw->data[raw->inner_off + raw->inner_len] == '<',
              "inner bytes between start and end tag");
    check(r->is_shallow ? stanza->children == NULL : true, "shallow stanza has no children");

    buf_appends(&r->events, "stanza:");
    elem_serialize(stanza, NULL, &r->events);
    buf_appends(&r->events, "|");
    buf_append(&r->events, raw->data, raw->len);
    buf_printf(&r->events, "|%zu/%zu\n", raw->inner_off, raw->inner_len);
    buf_append(&r->raws, raw->data, raw->len);
    buf_printf(&r->raws, "|%zu/%zu\n", raw->inner_off, raw->inner_len);

    if (!r->is_shallow) {
        check_round_trip(stanza);
        check_raw_matches_tree(r, stanza, raw);
    }
    if (strcmp(stanza->name, "keep") == 0 && r->nkept < 4) {
        arena_t *a = xstream_detach(r->xs);
        check(a != NULL && stanza->arena == a, "detach hands out the stanza's arena");
        r->kept[r->nkept++] = a;
    }
    if (strcmp(stanza->name, "proceed") == 0) xstream_reset(r->xs);
}

static void on_close(void *ud)
{
    run_t *r = ud;
    buf_appends(&r->events, "close\n");
    buf_appends(&r->raws, "close\n");
}

static const xstream_cb_t callbacks = {on_open, on_stanza, on_close};

/* mode: 0 full, 1 shallow, 2 shallow with the content skipped */
static xstream_status_t parse(const uint8_t *data, size_t size, size_t chunk, int mode, run_t *r)
{
    bool is_shallow = mode > 0;
    memset(r, 0, sizeof *r);
    buf_init(&r->events);
    buf_init(&r->raws);
    r->is_shallow = is_shallow;
    xstream_opts_t opts = {MAX_STANZA, MAX_DEPTH, is_shallow};
    r->xs = xstream_new(&opts, &callbacks, r);
    if (mode == 2) xstream_skip_content(r->xs, true);
    xstream_status_t st = XSTREAM_OK;
    for (size_t at = 0; at < size || size == 0; at += chunk) {
        size_t n = size - at < chunk ? size - at : chunk;
        st = xstream_feed(r->xs, (const char *)data + at, n);
        if (size == 0) break;
    }
    check(xstream_feed(r->xs, "<x/>", 4) == st || st == XSTREAM_OK, "errors are sticky");
    check(xstream_bytes(r->xs) == size + 4, "bytes are counted");
    xstream_free(r->xs);
    /* Detached trees outlive the stream. */
    for (unsigned i = 0; i < r->nkept; i++)
        arena_free(r->kept[i]);
    return st;
}

/* Same events until one run failed; everything when both succeeded. */
static void check_agree(const buf_t *a, xstream_status_t sta, const buf_t *b, xstream_status_t stb,
                        const char *what)
{
    if (sta == XSTREAM_OK && stb == XSTREAM_OK) {
        check(a->len == b->len && memcmp(a->data, b->data, a->len) == 0, what);
        return;
    }
    /* The run that failed (the one that failed sooner, if both did) must
     * have delivered a prefix of what the other delivered. */
    bool is_a_first = sta != XSTREAM_OK && (stb == XSTREAM_OK || a->len <= b->len);
    const buf_t *failed = is_a_first ? a : b, *other = is_a_first ? b : a;
    check(failed->len <= other->len && memcmp(failed->data, other->data, failed->len) == 0, what);
}

static void done(run_t *r)
{
    buf_free(&r->events);
    buf_free(&r->raws);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = {1, 3, 17, 200};
    run_t whole, shallow_whole;
    xstream_status_t st_full = parse(data, size, size ? size : 1, 0, &whole);
    xstream_status_t st_shallow = parse(data, size, size ? size : 1, 1, &shallow_whole);
    check_agree(&whole.raws, st_full, &shallow_whole.raws, st_shallow,
                "shallow and full mode deliver the same raw bytes");
    /* Skipping the content looks at less: what shallow mode takes it takes,
     * with the same events, whole or in chunks. */
    for (size_t c = 0; c < 2; c++) {
        run_t skip;
        size_t chunk = c == 0 ? (size ? size : 1) : 17;
        xstream_status_t st = parse(data, size, chunk, 2, &skip);
        check(st_shallow != XSTREAM_OK || st == XSTREAM_OK,
              "skipping takes whatever shallow mode takes");
        check_agree(&skip.events, st, &shallow_whole.events, st_shallow,
                    "skipping delivers what shallow mode does");
        done(&skip);
    }
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        if (chunks[i] >= size) break;
        run_t split;
        bool is_shallow = i % 2;
        xstream_status_t st = parse(data, size, chunks[i], is_shallow ? 1 : 0, &split);
        if (is_shallow)
            check_agree(&split.events, st, &shallow_whole.events, st_shallow,
                        "shallow: chunking does not change what is delivered");
        else
            check_agree(&split.events, st, &whole.events, st_full,
                        "full: chunking does not change what is delivered");
        done(&split);
    }
    done(&whole);
    done(&shallow_whole);
    return 0;
}
