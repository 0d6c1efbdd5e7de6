/* xml.c — the element tree, its serializer, and one-shot fragment parsing.
 *
 * Nodes live in an arena and are never freed one by one. Element names and
 * namespaces are plain strings compared with strcmp; a child added with
 * ns NULL shares its parent's string.
 *
 * The serializer writes elements unprefixed and declares the default
 * namespace only where it changes. Two exceptions: an element in the streams
 * namespace is written as stream:NAME (clients match that prefix), declaring
 * xmlns:stream on the outermost one written; and a namespaced attribute gets
 * a generated prefix (ns1, ns2, ...) declared on its own element, except
 * xml:lang and friends, whose prefix is predeclared.
 *
 * xml_parse_fragment() runs the stream parser (xstream.c) over the bytes
 * inside a synthetic root, so a fragment obeys exactly a stream's rules. */
#include "xml.h"

#include <stdlib.h>
#include <string.h>

#include "xmpp.h"
#include "xstream.h"

static elem_t *node_new(arena_t *a)
{
    elem_t *e = arena_alloc(a, sizeof *e);
    memset(e, 0, sizeof *e);
    e->arena = a;
    return e;
}

static void append_child(elem_t *parent, elem_t *child)
{
    child->parent = parent;
    child->next = NULL;
    if (parent->last)
        parent->last->next = child;
    else
        parent->children = child;
    parent->last = child;
}

elem_t *elem_new(arena_t *a, const char *ns, const char *name)
{
    elem_t *e = node_new(a);
    e->name = arena_strdup(a, name);
    e->ns = ns && *ns ? arena_strdup(a, ns) : "";
    return e;
}

elem_t *elem_add(elem_t *parent, const char *ns, const char *name)
{
    elem_t *e = node_new(parent->arena);
    e->name = arena_strdup(parent->arena, name);
    if (!ns || strcmp(ns, parent->ns) == 0)
        e->ns = parent->ns;
    else
        e->ns = *ns ? arena_strdup(parent->arena, ns) : "";
    append_child(parent, e);
    return e;
}

void elem_add_text(elem_t *e, const char *text, size_t len)
{
    if (len == 0) return;
    elem_t *t = node_new(e->arena);
    t->text = arena_strndup(e->arena, text, len);
    t->text_len = len;
    append_child(e, t);
}

static const char *copy_ns(arena_t *a, const char *ns)
{
    if (!ns) return NULL;
    if (!*ns) return "";
    if (strcmp(ns, NS_XML) == 0) return NS_XML;
    return arena_strdup(a, ns);
}

static elem_t *copy_tree(arena_t *a, const elem_t *src, const elem_t *new_parent)
{
    elem_t *e = node_new(a);
    if (!src->name) {
        e->text = arena_strndup(a, src->text, src->text_len);
        e->text_len = src->text_len;
        return e;
    }
    e->name = arena_strdup(a, src->name);
    if (new_parent && strcmp(src->ns, new_parent->ns) == 0)
        e->ns = new_parent->ns;
    else
        e->ns = copy_ns(a, src->ns);
    attr_t **tail = &e->attrs;
    for (const attr_t *sa = src->attrs; sa; sa = sa->next) {
        attr_t *na = arena_alloc(a, sizeof *na);
        na->name = arena_strdup(a, sa->name);
        na->ns = copy_ns(a, sa->ns);
        na->value = arena_strndup(a, sa->value, sa->value_len);
        na->value_len = sa->value_len;
        na->next = NULL;
        *tail = na;
        tail = &na->next;
    }
    for (const elem_t *c = src->children; c; c = c->next)
        append_child(e, copy_tree(a, c, e));
    return e;
}

elem_t *elem_add_copy(elem_t *parent, const elem_t *src)
{
    elem_t *e = copy_tree(parent->arena, src, parent);
    append_child(parent, e);
    return e;
}

elem_t *elem_copy(arena_t *a, const elem_t *src)
{
    return copy_tree(a, src, NULL);
}

void elem_unlink(elem_t *e)
{
    elem_t *parent = e->parent;
    if (!parent) return;
    elem_t *prev = NULL;
    for (elem_t *c = parent->children; c && c != e; c = c->next)
        prev = c;
    if (prev)
        prev->next = e->next;
    else
        parent->children = e->next;
    if (parent->last == e) parent->last = prev;
    e->parent = NULL;
    e->next = NULL;
}

/* ---- attributes -------------------------------------------------------- */

static bool attr_matches(const attr_t *a, const char *ns, const char *name)
{
    /* The first byte tells most names apart without a call. */
    if (a->name[0] != name[0] || strcmp(a->name, name) != 0) return false;
    if (!ns) return a->ns == NULL;
    return a->ns && strcmp(a->ns, ns) == 0;
}

void elem_set_attr_ns(elem_t *e, const char *ns, const char *name, const char *value)
{
    if (ns && !*ns) ns = NULL;
    attr_t *prev = NULL, *a = e->attrs;
    while (a && !attr_matches(a, ns, name)) {
        prev = a;
        a = a->next;
    }
    if (!value) {
        if (!a) return;
        if (prev)
            prev->next = a->next;
        else
            e->attrs = a->next;
        return;
    }
    size_t len = strlen(value);
    if (a) {
        a->value = arena_strndup(e->arena, value, len);
        a->value_len = len;
        return;
    }
    a = arena_alloc(e->arena, sizeof *a);
    a->name = arena_strdup(e->arena, name);
    a->ns = copy_ns(e->arena, ns);
    a->value = arena_strndup(e->arena, value, len);
    a->value_len = len;
    a->next = NULL;
    if (prev)
        prev->next = a;
    else
        e->attrs = a;
}

void elem_set_attr(elem_t *e, const char *name, const char *value)
{
    elem_set_attr_ns(e, NULL, name, value);
}

const char *elem_attr_ns(const elem_t *e, const char *ns, const char *name)
{
    if (ns && !*ns) ns = NULL;
    for (const attr_t *a = e->attrs; a; a = a->next)
        if (attr_matches(a, ns, name)) return a->value;
    return NULL;
}

const char *elem_attr(const elem_t *e, const char *name)
{
    return elem_attr_ns(e, NULL, name);
}

/* ---- navigation -------------------------------------------------------- */

static bool node_matches(const elem_t *e, const char *ns, const char *name)
{
    return e->name && (!name || strcmp(e->name, name) == 0) && (!ns || strcmp(e->ns, ns) == 0);
}

elem_t *elem_child(const elem_t *e, const char *ns, const char *name)
{
    for (elem_t *c = e->children; c; c = c->next)
        if (node_matches(c, ns, name)) return c;
    return NULL;
}

elem_t *elem_next(const elem_t *after, const char *ns, const char *name)
{
    for (elem_t *c = after->next; c; c = c->next)
        if (node_matches(c, ns, name)) return c;
    return NULL;
}

elem_t *elem_first(const elem_t *e)
{
    return elem_child(e, NULL, NULL);
}

const char *elem_text(const elem_t *e)
{
    const elem_t *only = NULL;
    size_t count = 0, total = 0;
    for (const elem_t *c = e->children; c; c = c->next) {
        if (c->name) continue;
        only = c;
        count++;
        total += c->text_len;
    }
    if (count == 0) return "";
    if (count == 1) return only->text;
    char *s = arena_alloc(e->arena, total + 1), *p = s;
    for (const elem_t *c = e->children; c; c = c->next) {
        if (c->name) continue;
        memcpy(p, c->text, c->text_len);
        p += c->text_len;
    }
    *p = '\0';
    return s;
}

bool elem_is(const elem_t *e, const char *ns, const char *name)
{
    return e && node_matches(e, ns, name);
}

/* ---- serializer -------------------------------------------------------- */

/* What a byte becomes: 0 itself, 1 escaped everywhere, 2 escaped in
 * attribute values only, 3 dropped (XML 1.0 cannot carry it). */
static const unsigned char escape_class[256] = {
    [0x00] = 3, [0x01] = 3, [0x02] = 3, [0x03] = 3, [0x04] = 3, [0x05] = 3, [0x06] = 3, [0x07] = 3,
    [0x08] = 3, ['\t'] = 2, ['\n'] = 2, [0x0b] = 3, [0x0c] = 3, ['\r'] = 1, [0x0e] = 3, [0x0f] = 3,
    [0x10] = 3, [0x11] = 3, [0x12] = 3, [0x13] = 3, [0x14] = 3, [0x15] = 3, [0x16] = 3, [0x17] = 3,
    [0x18] = 3, [0x19] = 3, [0x1a] = 3, [0x1b] = 3, [0x1c] = 3, [0x1d] = 3, [0x1e] = 3, [0x1f] = 3,
    ['&'] = 1,  ['<'] = 1,  ['>'] = 1,  ['"'] = 2,  ['\''] = 2,
};

static const char *escape_of(unsigned char c)
{
    switch (c) {
    case '&':
        return "&amp;";
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '"':
        return "&quot;";
    case '\'':
        return "&apos;";
    /* Character references survive the parser's end-of-line and
     * attribute-value normalization, so the text reads back unchanged. */
    case '\t':
        return "&#9;";
    case '\n':
        return "&#10;";
    case '\r':
        return "&#13;";
    default:
        return "";
    }
}

void xml_escape(buf_t *out, const char *s, size_t len, bool is_attr)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0;
    buf_reserve(out, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char cls = escape_class[p[i]];
        if (cls == 0 || (cls == 2 && !is_attr)) continue;
        buf_append(out, s + run, i - run);
        buf_appends(out, escape_of(p[i]));
        run = i + 1;
    }
    buf_append(out, s + run, len - run);
}

/* The scope marker for "the stanza's own namespace as it will be written":
 * content_ns if one was given, else the stream's default, unknown here. */
static const char stanza_scope[] = "";

typedef struct ser {
    buf_t *out;
    const char *map_from;   /* the stanza namespace being rewritten, or NULL */
    const char *content_ns; /* what it becomes; NULL for the stream default */
} ser_t;

static void write_attr_value(buf_t *out, const char *value, size_t len)
{
    buf_append(out, "='", 2);
    xml_escape(out, value, len, true);
    buf_append(out, "'", 1);
}

void xml_attr(buf_t *out, const char *name, const char *value)
{
    buf_append(out, " ", 1);
    buf_appends(out, name);
    write_attr_value(out, value, strlen(value));
}

static void write_attrs(buf_t *out, const elem_t *e)
{
    unsigned index = 0;
    for (const attr_t *a = e->attrs; a; a = a->next, index++) {
        /* The tree's ns field is the element's namespace; a stray attribute
         * called xmlns would contradict it. */
        if (!a->ns && strcmp(a->name, "xmlns") == 0) continue;
        buf_append(out, " ", 1);
        if (a->ns && strcmp(a->ns, NS_XML) == 0) {
            buf_append(out, "xml:", 4);
        } else if (a->ns) {
            /* A namespace's prefix is named after its first attribute here,
             * and declared there. */
            unsigned first = 0;
            for (const attr_t *b = e->attrs; b != a; b = b->next, first++)
                if (b->ns && strcmp(b->ns, a->ns) == 0) break;
            if (first == index) {
                buf_printf(out, "xmlns:ns%u", first + 1);
                write_attr_value(out, a->ns, strlen(a->ns));
                buf_append(out, " ", 1);
            }
            buf_printf(out, "ns%u:", first + 1);
        }
        buf_appends(out, a->name);
        write_attr_value(out, a->value, a->value_len);
    }
}

static void write_elem(const ser_t *s, const elem_t *e, const char *scope, bool has_stream_prefix)
{
    buf_t *out = s->out;
    if (!e->name) {
        xml_escape(out, e->text, e->text_len, false);
        return;
    }
    bool is_stream = strcmp(e->ns, NS_STREAMS) == 0;
    /* <xml:x/> is in the XML namespace, which may never be declared, let
     * alone as the default (Namespaces in XML §3): keep its own prefix. */
    bool is_xml = strcmp(e->ns, NS_XML) == 0;
    const char *child_scope = scope;
    buf_append(out, "<", 1);
    if (is_stream) buf_append(out, "stream:", 7);
    if (is_xml) buf_append(out, "xml:", 4);
    buf_appends(out, e->name);
    if (is_xml) {
        /* Bound by definition. */
    } else if (is_stream) {
        if (!has_stream_prefix) {
            buf_appends(out, " xmlns:stream");
            write_attr_value(out, NS_STREAMS, strlen(NS_STREAMS));
            has_stream_prefix = true;
        }
    } else if (scope == stanza_scope && s->map_from && strcmp(e->ns, s->map_from) == 0) {
        /* Follows the stanza into its new namespace. */
    } else {
        const char *real = scope == stanza_scope ? s->content_ns : scope;
        if (!real || strcmp(e->ns, real) != 0) {
            buf_appends(out, " xmlns");
            write_attr_value(out, e->ns, strlen(e->ns));
            child_scope = e->ns;
        }
    }
    write_attrs(out, e);
    if (!e->children) {
        buf_append(out, "/>", 2);
        return;
    }
    buf_append(out, ">", 1);
    for (const elem_t *c = e->children; c; c = c->next)
        write_elem(s, c, child_scope, has_stream_prefix);
    buf_append(out, "</", 2);
    if (is_stream) buf_append(out, "stream:", 7);
    if (is_xml) buf_append(out, "xml:", 4);
    buf_appends(out, e->name);
    buf_append(out, ">", 1);
}

void elem_serialize(const elem_t *e, const char *parent_ns, buf_t *out)
{
    ser_t s = {out, NULL, NULL};
    write_elem(&s, e, parent_ns ? parent_ns : "", false);
}

static bool is_stanza_ns(const char *ns)
{
    return ns && (strcmp(ns, NS_CLIENT) == 0 || strcmp(ns, NS_SERVER) == 0 ||
                  strcmp(ns, NS_COMPONENT_ACCEPT) == 0);
}

void elem_serialize_stanza(const elem_t *e, const char *content_ns, buf_t *out)
{
    ser_t s = {out, NULL, content_ns};
    if (!e->name || !is_stanza_ns(e->ns)) {
        /* Not a stanza: the scope around it is unknown, so it says its own
         * namespace. */
        write_elem(&s, e, NULL, false);
        return;
    }
    s.map_from = e->ns;
    buf_append(out, "<", 1);
    buf_appends(out, e->name);
    if (content_ns) {
        buf_appends(out, " xmlns");
        write_attr_value(out, content_ns, strlen(content_ns));
    }
    write_attrs(out, e);
    if (!e->children) {
        buf_append(out, "/>", 2);
        return;
    }
    buf_append(out, ">", 1);
    for (const elem_t *c = e->children; c; c = c->next)
        write_elem(&s, c, stanza_scope, false);
    buf_append(out, "</", 2);
    buf_appends(out, e->name);
    buf_append(out, ">", 1);
}

/* ---- fragments --------------------------------------------------------- */

/* A stream (xstream.c) whose root is a synthetic <fragment>, fed one
 * fragment at a time. It stays open from one fragment to the next, so one
 * libxml2 parser serves many; anything but exactly one element, or an
 * error, ends it, and the next fragment gets a new one. */
struct xml_reparser {
    buf_t root; /* the synthetic root's start tag */
    size_t max;
    xstream_t *xs;
    /* the fragment being parsed */
    arena_t *arena;
    const char *start; /* its first non-blank byte */
    size_t len;        /* up to its last non-blank byte */
    elem_t *result;
    unsigned count;
    bool is_exact;
};

static void fragment_stanza(void *ud, elem_t *stanza, const xstream_raw_t *raw)
{
    xml_reparser_t *r = ud;
    if (++r->count != 1) return;
    r->is_exact = raw->data == r->start && raw->len == r->len;
    if (r->is_exact) r->result = elem_copy(r->arena, stanza);
}

xml_reparser_t *xml_reparser_new(const char *default_ns, size_t max)
{
    xml_reparser_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    buf_init(&r->root);
    /* The stream: prefix is bound as in every XMPP stream, so an element
     * cut from one (<stream:features/>) parses on its own. */
    buf_appends(&r->root, "<fragment xmlns:stream='" NS_STREAMS "'");
    if (default_ns && *default_ns) {
        buf_appends(&r->root, " xmlns");
        write_attr_value(&r->root, default_ns, strlen(default_ns));
    }
    buf_append(&r->root, ">", 1);
    r->max = max;
    return r;
}

void xml_reparser_free(xml_reparser_t *r)
{
    if (!r) return;
    if (r->xs) xstream_free(r->xs);
    buf_free(&r->root);
    free(r);
}

elem_t *xml_reparse(xml_reparser_t *r, arena_t *a, const char *data, size_t len)
{
    size_t lead = 0, end = len;
    while (lead < len && xml_is_blank(data[lead]))
        lead++;
    while (end > lead && xml_is_blank(data[end - 1]))
        end--;
    if (lead == end || data[lead] != '<' || len > r->max) return NULL;
    if (!r->xs) {
        xstream_opts_t opts = {r->max + r->root.len + 64, 64, false};
        xstream_cb_t cb = {NULL, fragment_stanza, NULL};
        r->xs = xstream_new(&opts, &cb, r);
        if (xstream_feed(r->xs, r->root.data, r->root.len) != XSTREAM_OK) {
            xstream_free(r->xs);
            r->xs = NULL;
            return NULL;
        }
    }
    r->arena = a;
    r->start = data + lead;
    r->len = end - lead;
    r->result = NULL;
    r->count = 0;
    r->is_exact = false;
    xstream_status_t st = xstream_feed(r->xs, data, len);
    elem_t *result = st == XSTREAM_OK && r->count == 1 && r->is_exact ? r->result : NULL;
    if (!result) { /* the stream may be inside an element, or dead */
        xstream_free(r->xs);
        r->xs = NULL;
    }
    return result;
}

elem_t *xml_parse_fragment(arena_t *a, const char *data, size_t len, const char *default_ns)
{
    xml_reparser_t *r = xml_reparser_new(default_ns, len);
    if (!r) return NULL;
    elem_t *e = xml_reparse(r, a, data, len);
    xml_reparser_free(r);
    return e;
}
