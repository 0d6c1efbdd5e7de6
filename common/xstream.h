/* xstream.h — an XML stream parser on libxml2's SAX2 push interface.
 *
 * Bytes go in as they arrive, in chunks of any size and split anywhere; out
 * come the stream header, one element tree per top-level child (a stanza),
 * and the stream's end. Each stanza also comes with its raw bytes as
 * received, so a relay (the router) can forward it without serializing.
 *
 * RFC 6120 §11 is enforced: a DTD, entity declarations, entity references
 * beyond the five predefined, comments and processing instructions are
 * XSTREAM_RESTRICTED_XML; a stanza (or header) larger than max_stanza bytes
 * or deeper than max_depth is XSTREAM_POLICY_VIOLATION, detected as the bytes
 * arrive, so memory stays bounded whatever a peer sends; anything else
 * malformed is XSTREAM_NOT_WELL_FORMED. After an error the stream is dead:
 * every later feed returns the same error. */
#ifndef HEARTH_XSTREAM_H
#define HEARTH_XSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "xml.h"

typedef enum xstream_status {
    XSTREAM_OK = 0,
    XSTREAM_NOT_WELL_FORMED = -1,
    XSTREAM_RESTRICTED_XML = -2,
    XSTREAM_POLICY_VIOLATION = -3,
} xstream_status_t;

typedef struct xstream_raw {
    const char *data;   /* the stanza exactly as received, from '<' to '>' */
    size_t len;
    size_t inner_off;   /* its content: the bytes between start and end tag */
    size_t inner_len;   /* (0 for an empty element <x/>) */
    /* An element or attribute of it has a prefix other than xml: (its
     * bytes alone may not say its namespaces); always true when its content
     * was skipped (xstream_skip_content). */
    bool has_prefixes;
    bool declares_default_ns; /* its start tag has xmlns='…' */
} xstream_raw_t;

typedef struct xstream_cb {
    /* The stream header (the root element's start tag, no children) and the
     * default namespace it declares ("" if none). */
    void (*on_open)(void *ud, elem_t *header, const char *default_ns);
    /* One complete top-level element. stanza and raw are valid until the
     * callback returns, unless it calls xstream_detach(). In shallow mode the
     * stanza has its name, namespace and attributes but no children. */
    void (*on_stanza)(void *ud, elem_t *stanza, const xstream_raw_t *raw);
    /* The root element was closed (</stream:stream>). */
    void (*on_close)(void *ud);
} xstream_cb_t;

typedef struct xstream_opts {
    size_t max_stanza;  /* bytes; 0: 64 KiB */
    unsigned max_depth; /* element nesting below the root; 0: 32 */
    bool shallow;       /* build only the top element of each stanza */
} xstream_opts_t;

typedef struct xstream xstream_t;

xstream_t *xstream_new(const xstream_opts_t *opts, const xstream_cb_t *cb, void *ud);
void xstream_free(xstream_t *xs);
/* Parse len more bytes. Callbacks run from inside this call. Returns
 * XSTREAM_OK or the (sticky) error. */
xstream_status_t xstream_feed(xstream_t *xs, const char *data, size_t len);
/* Start a new stream (after STARTTLS or SASL success). Safe inside a
 * callback: the bytes of the current feed after the current stanza are then
 * parsed as the start of the new stream. */
void xstream_reset(xstream_t *xs);
/* The same, but the rest of the current feed is dropped, not parsed: for
 * STARTTLS, where bytes that came in the clear behind <starttls/> or
 * <proceed/> must never be taken as part of the encrypted stream (they were
 * not protected by it: an attacker on the path can have put them there). */
void xstream_reset_discard(xstream_t *xs);
/* Between stanzas, give back what a quiet stream holds: libxml2's parser
 * and the stanza arena (most of a stream's memory). The next feed builds
 * them again from the saved stream header, unseen by the callbacks. For
 * daemons with many idle streams (c2s). 0 done, -1 not now (a stanza is
 * under way, the stream has not opened or has failed, or inside a
 * callback). */
int xstream_hibernate(xstream_t *xs);
/* Shallow mode only: libxml2 is no longer given the content of a stanza
 * whose bytes arrive within one feed, only its start and end tags (the
 * scanner still holds the content to the size, depth and attribute limits
 * and refuses comments, PIs and DTDs in it); a start tag of the plain kind
 * Hearth's serializers write (ASCII names, no prefixes or namespace
 * declarations, quoted values with only the five named references) is read
 * without libxml2 at all. A stanza split across feeds is parsed whole as
 * before. For a relay whose payloads are parsed again before use or come
 * from a serializer it trusts (the router). */
void xstream_skip_content(xstream_t *xs, bool on);
/* Inside on_stanza: take the stanza's arena; the caller arena_free()s it.
 * The stanza tree stays valid; raw does not. */
arena_t *xstream_detach(xstream_t *xs);
/* The RFC 6120 stream error condition for a status ("not-well-formed", ...). */
const char *xstream_condition(xstream_status_t status);
/* Total bytes fed so far (for metrics and limits). */
unsigned long long xstream_bytes(const xstream_t *xs);

#endif
