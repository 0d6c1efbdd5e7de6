/* xml.h — the compact element tree every stanza is parsed into, and its
 * serializer.
 *
 * A tree lives in one arena (arena.h). Names and namespaces are arena strings;
 * text is kept unescaped with its length. The serializer escapes text and
 * attribute values and declares a namespace only where it changes. Parsing a
 * stream is xstream.h's job; xml_parse_fragment() here is for one-shot parses
 * of bytes already known to be one element. */
#ifndef HEARTH_XML_H
#define HEARTH_XML_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "buf.h"

#define NS_XML "http://www.w3.org/XML/1998/namespace"

typedef struct attr attr_t;
struct attr {
    const char *name; /* local name */
    const char *ns;   /* NULL for an unqualified attribute; NS_XML for xml:lang */
    const char *value;
    size_t value_len;
    attr_t *next;
};

typedef struct elem elem_t;
struct elem {
    const char *name; /* local name; NULL for a text node */
    const char *ns;   /* namespace URI, "" when none; NULL for a text node */
    const char *text; /* text node only: unescaped characters, NUL-terminated */
    size_t text_len;
    attr_t *attrs;    /* in document order */
    elem_t *parent;
    elem_t *children; /* element and text nodes in document order */
    elem_t *last;
    elem_t *next;
    arena_t *arena;   /* the arena this node lives in */
};

/* A new element with no parent. */
elem_t *elem_new(arena_t *a, const char *ns, const char *name);
/* A new child element appended to parent; ns NULL means the parent's. */
elem_t *elem_add(elem_t *parent, const char *ns, const char *name);
/* Append a text node (a copy of len bytes of text). */
void elem_add_text(elem_t *e, const char *text, size_t len);
/* Append an existing tree (from any arena) as a deep copy. */
elem_t *elem_add_copy(elem_t *parent, const elem_t *src);
/* A deep copy of src into arena a. */
elem_t *elem_copy(arena_t *a, const elem_t *src);
/* Detach e from its parent (it stays in the arena). */
void elem_unlink(elem_t *e);

/* Set (replace) or, with value NULL, remove an unqualified attribute. */
void elem_set_attr(elem_t *e, const char *name, const char *value);
void elem_set_attr_ns(elem_t *e, const char *ns, const char *name, const char *value);
/* An unqualified attribute's value, or NULL. */
const char *elem_attr(const elem_t *e, const char *name);
const char *elem_attr_ns(const elem_t *e, const char *ns, const char *name);

/* First child element named name (NULL: any) in ns (NULL: any), or NULL. */
elem_t *elem_child(const elem_t *e, const char *ns, const char *name);
/* Next sibling element after `after` with the same filter, or NULL. */
elem_t *elem_next(const elem_t *after, const char *ns, const char *name);
/* The first child element of any name, or NULL. */
elem_t *elem_first(const elem_t *e);
/* Concatenated text of e's direct text children (arena string, "" if none). */
const char *elem_text(const elem_t *e);
bool elem_is(const elem_t *e, const char *ns, const char *name);

/* Write e as XML. xmlns is written on e when e->ns differs from parent_ns,
 * and on any descendant whose namespace differs from its parent's. */
void elem_serialize(const elem_t *e, const char *parent_ns, buf_t *out);
/* Write a stanza. If e is in a stanza namespace (jabber:client, jabber:server,
 * jabber:component:accept) it is written as if in content_ns: no xmlns when
 * content_ns is NULL (it takes the stream's default), else xmlns='content_ns';
 * its descendants in its original namespace follow it. */
void elem_serialize_stanza(const elem_t *e, const char *content_ns, buf_t *out);
/* Escape text (quotes too when is_attr) onto out. */
void xml_escape(buf_t *out, const char *s, size_t len, bool is_attr);
/* Append ` name='value'`, the value escaped. */
void xml_attr(buf_t *out, const char *name, const char *value);
/* XML's white space (the S production). */
static inline bool xml_is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Parse one element from data (whose unprefixed elements are in default_ns)
 * into arena a, under the same restrictions as a stream (no DTD, comments,
 * PIs or entities). The prefix stream: is bound to NS_STREAMS, as in any
 * XMPP stream. NULL if it is not exactly one well-formed element. */
elem_t *xml_parse_fragment(arena_t *a, const char *data, size_t len, const char *default_ns);

/* The same for many fragments of at most max bytes, one after another,
 * with one parser kept between them (cheaper than a parser each). */
typedef struct xml_reparser xml_reparser_t;
xml_reparser_t *xml_reparser_new(const char *default_ns, size_t max);
elem_t *xml_reparse(xml_reparser_t *r, arena_t *a, const char *data, size_t len);
void xml_reparser_free(xml_reparser_t *r);

#endif
