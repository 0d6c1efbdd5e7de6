/* fuzz_route.c — libFuzzer target for the component protocol's route header
 * as the router handles it (router/header.c).
 *
 * The input follows a component stream header, parsed shallow as the router
 * parses every native link. For each top-level <route> that parses on its
 * own (it does not lean on prefixes of the stream header):
 *   - when header_is_markable() takes it, the route marked for each role
 *     (the role's mark, then the sender's bytes after "<route") parses
 *     again, carries exactly that role, every attribute the sender gave
 *     with the same value, and the same payload;
 *   - a route that carries a role of its own is never markable;
 *   - its bounce (header_bounce), unless refused because the start tag
 *     declares namespaces, parses whenever the route parses, is
 *     role='router' type='error', has to and from swapped, and the same
 *     payload;
 *   - header_payload() stays inside the route's content.
 * Build and run: test/fuzz/run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "component.h"
#include "router.h"

static void check(bool cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_route: broken invariant: %s\n", what);
        abort();
    }
}

static const char *attr_or_empty(const elem_t *e, const char *name)
{
    const char *v = elem_attr(e, name);
    return v ? v : "\x01(none)";
}

/* The children of e, serialized: what "the same payload" means. */
static void payload_of(const elem_t *e, buf_t *out)
{
    for (const elem_t *k = e->children; k; k = k->next) {
        if (k->name)
            elem_serialize(k, NS_HEARTH_COMPONENT, out);
        else
            xml_escape(out, k->text, k->text_len, false);
    }
}

static bool same_payload(const elem_t *a, const elem_t *b)
{
    buf_t x = BUF_INIT, y = BUF_INIT;
    payload_of(a, &x);
    payload_of(b, &y);
    bool same = x.len == y.len && (x.len == 0 || memcmp(x.data, y.data, x.len) == 0);
    buf_free(&x);
    buf_free(&y);
    return same;
}

static void check_marked(const elem_t *orig, const xstream_raw_t *raw, comp_role_t role)
{
    char mark[32];
    size_t n = header_mark(mark, sizeof mark, role);
    check(n > 0, "every role has a mark");
    buf_t b = BUF_INIT;
    buf_append(&b, mark, n);
    buf_append(&b, raw->data + 6, raw->len - 6);
    arena_t *a = arena_new(0);
    elem_t *e = xml_parse_fragment(a, b.data, b.len, NS_HEARTH_COMPONENT);
    check(e != NULL, "a marked route parses");
    check(strcmp(e->name, "route") == 0, "a marked route is a route");
    check(comp_route_role(e) == role, "a marked route carries its sender's role");
    int given = 0, seen = 0;
    for (const attr_t *at = orig->attrs; at; at = at->next) {
        if (at->ns) continue;
        given++;
        check(strcmp(attr_or_empty(e, at->name), at->value) == 0,
              "a marked route keeps every attribute of the sender");
    }
    for (const attr_t *at = e->attrs; at; at = at->next)
        if (!at->ns) seen++;
    check(seen == given + 1, "marking adds the role and nothing else");
    check(same_payload(orig, e), "marking keeps the payload");
    arena_free(a);
    buf_free(&b);
}

static void check_bounce(const elem_t *orig, const xstream_raw_t *raw)
{
    buf_t b = BUF_INIT;
    if (header_bounce(&b, orig, raw, "not-found") < 0) {
        check(b.len == 0, "a refused bounce appends nothing");
        buf_free(&b);
        return;
    }
    arena_t *a = arena_new(0);
    elem_t *e = xml_parse_fragment(a, b.data, b.len, NS_HEARTH_COMPONENT);
    check(e != NULL, "a bounce parses");
    check(comp_route_role(e) == ROLE_ROUTER, "a bounce is the router's");
    check(strcmp(attr_or_empty(e, "type"), "error") == 0, "a bounce is an error");
    check(strcmp(attr_or_empty(e, "to"), attr_or_empty(orig, "from")) == 0,
          "a bounce goes back to the sender");
    check(strcmp(attr_or_empty(e, "from"), attr_or_empty(orig, "to")) == 0,
          "a bounce comes from where the route went");
    check(same_payload(orig, e), "a bounce carries the payload back");
    arena_free(a);
    buf_free(&b);
}

static void on_open(void *ud, elem_t *header, const char *default_ns)
{
    (void)ud, (void)header, (void)default_ns;
}

static void on_close(void *ud)
{
    (void)ud;
}

static void on_stanza(void *ud, elem_t *shallow, const xstream_raw_t *raw)
{
    (void)ud;
    if (strcmp(shallow->name, "route") != 0) return;
    const char *payload;
    size_t payload_len;
    header_payload(raw, &payload, &payload_len);
    check(payload >= raw->data + raw->inner_off &&
              payload + payload_len <= raw->data + raw->inner_off + raw->inner_len,
          "the payload lies inside the route");
    arena_t *a = arena_new(0);
    elem_t *orig = xml_parse_fragment(a, raw->data, raw->len, NS_HEARTH_COMPONENT);
    if (orig && strcmp(orig->name, "route") == 0) {
        bool markable = header_is_markable(shallow, raw);
        if (elem_attr(shallow, "role")) check(!markable, "a route with a role is not markable");
        if (markable)
            for (comp_role_t r = ROLE_C2S; r <= ROLE_ROUTER; r++)
                check_marked(orig, raw, r);
        check_bounce(orig, raw);
    }
    arena_free(a);
}

static const xstream_cb_t cb = {on_open, on_stanza, on_close};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char header[] = "<?xml version='1.0'?><stream:stream xmlns='" NS_HEARTH_COMPONENT
                                 "' xmlns:stream='" NS_STREAMS "' to='router' from='fuzz'>";
    xstream_opts_t opts = {.max_stanza = 4096, .shallow = true};
    xstream_t *xs = xstream_new(&opts, &cb, NULL);
    if (xstream_feed(xs, header, sizeof header - 1) == XSTREAM_OK)
        xstream_feed(xs, (const char *)data, size);
    xstream_free(xs);
    return 0;
}
