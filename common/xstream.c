/* xstream.c — an XML stream parser: libxml2's SAX2 push parser, fenced.
 *
 * Two readers look at every byte. A small scanner of our own goes first: it
 * knows XML's lexical shape (tags, quoted attribute values, CDATA) well
 * enough to find where each stanza starts and ends, to enforce the size,
 * depth and attribute limits before libxml2 is handed a byte, and to refuse
 * comments, processing instructions and DTDs on sight. libxml2 comes second,
 * over the bytes the scanner let through, and is the judge of
 * well-formedness, namespaces, character data and entity references; its
 * callbacks build the element tree.
 *
 * The scanner cuts the input into slices that end on stanza boundaries and
 * queues each complete stanza's byte span; when libxml2 reports a top-level
 * element closed, the span at the head of the queue is its raw bytes (checked
 * against libxml2's own position). A stanza begun in an earlier feed is kept
 * in `pending` so its raw bytes are contiguous; one inside the current feed
 * is handed out in place, without a copy.
 *
 * Memory: every unit (header, stanza, run of text between stanzas) is capped
 * by max_stanza before libxml2 sees it, and libxml2 is handed 8 KiB at a
 * time. Its name dictionary (a peer could grow it with fresh names forever)
 * and its input buffer (which never shrinks) are dropped by replacing the
 * parser at a stanza boundary, replaying the stream header, once either got
 * big. The stanza arena is reset after each stanza. After an error the
 * parser is freed.
 *
 * Skipping (xstream_skip_content, shallow mode): libxml2 is given each
 * stanza's start and end tags but not its content when the scanner has
 * queued the whole stanza within the slice being fed; lx_delta then grows
 * by the bytes left out, so libxml2's offsets still map onto the stream's.
 * A stanza whose tags are plain (read_plain) and which follows nothing
 * libxml2 still holds unparsed is not given to libxml2 at all: read_plain
 * builds the same shallow element libxml2 would, and anything it is not
 * sure of goes to libxml2 instead. fuzz_xstream checks that skipping takes
 * what shallow mode takes and delivers the same.
 *
 * Callers: c2s, s2s, the router and the component client (one xstream per
 * connection), and xml_parse_fragment(). Not thread-safe; one per stream. */
#include "xstream.h"

#include <libxml/SAX2.h>
#include <libxml/dict.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <limits.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_STANZA (64 * 1024)
#define DEFAULT_MAX_DEPTH 32
/* No XMPP stanza needs more; keeps the limit arithmetic far from overflow. */
#define MAX_MAX_STANZA ((size_t)1 << 30)
/* Attribute values (namespace declarations included) in one start tag. No
 * XMPP element needs more; libxml2 checks duplicates in quadratic time. */
#define MAX_ATTRS 256
/* Stanzas queued per slice, and the size after which a slice ends at the next
 * stanza boundary. */
#define QUEUE_SIZE 64
#define SLICE_BYTES (16 * 1024)
#define NO_POS ULLONG_MAX

typedef unsigned long long pos_t; /* a byte offset in the current stream */

typedef struct span {
    pos_t start, inner_start, inner_end, end;
} span_t;

enum scan_state {
    SC_PROLOG,     /* before the root: blanks, the XML declaration */
    SC_XMLDECL,    /* inside <?xml ...?> */
    SC_TEXT,       /* character data inside the root */
    SC_LT,         /* after '<' */
    SC_STAG,       /* inside a start tag */
    SC_STAG_QUOTE, /* inside a quoted attribute value */
    SC_ETAG,       /* inside an end tag */
    SC_BANG,       /* after "<!", deciding what follows */
    SC_PI,         /* after "<?", deciding whether it is the XML declaration */
    SC_CDATA,      /* inside <![CDATA[ ... ]]> */
    SC_CLOSED,     /* after the root's end tag */
};

enum scan_event { EV_NONE, EV_HEADER, EV_CLOSE };

typedef struct scanner {
    enum scan_state state;
    pos_t pos;        /* stream offset of the next byte to scan */
    pos_t unit_start; /* start of the unit the size limit applies to */
    pos_t tag_start;  /* the '<' of the markup being scanned */
    pos_t keep_from;  /* raw bytes needed from here on (NO_POS: none) */
    pos_t stanza_start, inner_start;
    pos_t header_start, header_end, close_end;
    unsigned open;    /* elements open, the root included */
    unsigned attrs;   /* attribute values in this start tag */
    unsigned matched; /* bytes of a keyword, or ']'/'?' seen, so far */
    unsigned char quote;
    unsigned char last; /* the byte before pos */
} scanner_t;

struct xstream {
    xstream_opts_t opts;
    xstream_cb_t cb;
    void *ud;
    xstream_status_t status;
    unsigned long long bytes;

    xmlParserCtxtPtr ctxt;
    long long lx_delta; /* stream offset = libxml2 offset + lx_delta */
    bool is_lx_bloated; /* libxml2 had to buffer a lot: renew it */
    bool is_skipping;   /* xstream_skip_content() in shallow mode: content bypasses libxml2 */
    bool is_replaying;  /* feeding the saved header to a new parser */

    scanner_t sc;
    span_t queue[QUEUE_SIZE];
    unsigned queue_head, queue_len;

    const char *chunk; /* the bytes of the feed being parsed */
    pos_t chunk_pos;   /* their stream offset */
    buf_t pending;     /* bytes of an unfinished stanza from earlier feeds */
    pos_t pending_pos;
    buf_t header; /* the root start tag, replayed into a new parser */
    buf_t default_ns; /* the one the header declares, NUL-terminated ("" if none) */

    arena_t *arena;
    unsigned depth; /* elements open per libxml2 */
    bool has_prefixes; /* xstream_raw_t's, for the stanza being parsed */
    bool declares_default_ns;
    elem_t *stanza;
    elem_t *cur;
    buf_t text; /* character data not yet made a node */
    struct {
        const xmlChar *key;
        const char *copy;
    } ns_cache[8];
    unsigned ns_cached;

    bool is_feeding;
    bool is_in_callback;
    bool is_detached;
    bool wants_reset;
    bool wants_discard; /* with wants_reset: drop the rest of the feed */
    bool is_at_start; /* nothing but whitespace seen of this stream yet */
    bool wants_free;
    pos_t reset_at;
};

static void out_of_memory(void)
{
    fprintf(stderr, "hearth: out of memory in the XML parser\n");
    abort();
}

static void fail(xstream_t *xs, xstream_status_t status)
{
    if (xs->status == XSTREAM_OK) xs->status = status;
}

/* ---- the scanner ------------------------------------------------------- */

/* The index of the first of bytes a, b, c in d[i..end), or end. The scanner
 * spends its time here. Most runs (names, short values) are short and a
 * byte loop is quickest; past 16 bytes, SSE2 (every x86-64 has it) looks at
 * 16 bytes a step. */
static inline size_t find3(const unsigned char *d, size_t i, size_t end, unsigned char a,
                           unsigned char b, unsigned char c)
{
    size_t stop = end - i > 16 ? i + 16 : end;
    for (; i < stop; i++)
        if (d[i] == a || d[i] == b || d[i] == c) return i;
#ifdef __SSE2__
    const __m128i va = _mm_set1_epi8((char)a), vb = _mm_set1_epi8((char)b),
                  vc = _mm_set1_epi8((char)c);
    for (; i + 16 <= end; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(d + i));
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, va), _mm_cmpeq_epi8(x, vb)),
                                   _mm_cmpeq_epi8(x, vc));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask) return i + (size_t)__builtin_ctz(mask);
    }
#endif
    while (i < end && d[i] != a && d[i] != b && d[i] != c)
        i++;
    return i;
}

static void scanner_init(scanner_t *sc)
{
    memset(sc, 0, sizeof *sc);
    sc->state = SC_PROLOG;
    sc->keep_from = NO_POS;
    sc->header_start = sc->header_end = sc->close_end = NO_POS;
}

static void queue_push(xstream_t *xs, pos_t start, pos_t inner_start, pos_t inner_end, pos_t end)
{
    span_t *s = &xs->queue[(xs->queue_head + xs->queue_len++) % QUEUE_SIZE];
    s->start = start;
    s->inner_start = inner_start;
    s->inner_end = inner_end;
    s->end = end;
}

/* A top-level element ended at `end`: its span is queued and the next unit
 * (blanks, then the next stanza) starts. */
static void stanza_done(xstream_t *xs, pos_t inner_start, pos_t inner_end, pos_t end)
{
    scanner_t *sc = &xs->sc;
    queue_push(xs, sc->stanza_start, inner_start, inner_end, end);
    sc->unit_start = end;
    sc->keep_from = NO_POS;
}

/* Scan d[i..n) (d[i] is at stream offset sc->pos). Returns where the slice
 * ends: at n, after a stanza once the queue or the slice is full, after the
 * stream header or the root's end tag (*event), or where an error was found
 * (*err; the bytes before it may still go to libxml2). */
static size_t scan(xstream_t *xs, const unsigned char *d, size_t n, size_t i, xstream_status_t *err,
                   enum scan_event *event)
{
    scanner_t *sc = &xs->sc;
    const pos_t base = sc->pos - i; /* stream offset of d[0] */
    const size_t slice_start = i;
    *err = XSTREAM_OK;
    *event = EV_NONE;

#define POS(k) (base + (pos_t)(k))
#define STOP(st)                                                                                   \
    do {                                                                                           \
        *err = (st);                                                                               \
        goto out;                                                                                  \
    } while (0)

    while (i < n) {
        /* The current unit may not grow past max_stanza bytes. */
        pos_t limit = sc->unit_start + xs->opts.max_stanza;
        size_t end = limit < POS(n) ? (limit > base ? (size_t)(limit - base) : 0) : n;
        if (i >= end) STOP(XSTREAM_POLICY_VIOLATION);

        switch (sc->state) {
        case SC_PROLOG:
        case SC_CLOSED:
            while (i < end && xml_is_blank(d[i]))
                i++;
            if (i == end) break;
            if (sc->state == SC_CLOSED || d[i] != '<') STOP(XSTREAM_NOT_WELL_FORMED);
            sc->tag_start = sc->keep_from = POS(i);
            sc->state = SC_LT;
            i++;
            break;

        /* The common states chain to one another with goto, without a trip
         * round the loop; `end` may be stale there, but only ever too small
         * (units only move forward), which costs one more trip at worst. */
        case SC_TEXT:
        text:
            i = find3(d, i, end, '<', '<', '<');
            if (i == end) {
                sc->state = SC_TEXT;
                goto next;
            }
            if (sc->open == 1) {
                /* Something at the top level: a stanza, or the root's end. */
                sc->unit_start = sc->keep_from = POS(i);
            }
            sc->tag_start = POS(i);
            i++;
            goto lt;

        case SC_LT:
        lt : {
            if (i == end) {
                sc->state = SC_LT;
                goto next;
            }
            unsigned char c = d[i];
            if (c == '/') {
                if (sc->open == 0) STOP(XSTREAM_NOT_WELL_FORMED);
                i++;
                goto etag;
            } else if (c == '!') {
                sc->state = SC_BANG;
                sc->matched = 0;
                i++;
            } else if (c == '?') {
                /* Only the XML declaration, and only at the very start. */
                if (sc->tag_start != 0) STOP(XSTREAM_RESTRICTED_XML);
                sc->state = SC_PI;
                sc->matched = 0;
                i++;
            } else {
                if (sc->open > xs->opts.max_depth) STOP(XSTREAM_POLICY_VIOLATION);
                if (sc->open == 0) sc->header_start = sc->tag_start;
                if (sc->open == 1) sc->stanza_start = sc->tag_start;
                sc->attrs = 0;
                goto stag;
            }
            break;
        }

        case SC_STAG_QUOTE:
            i = find3(d, i, end, sc->quote, sc->quote, sc->quote);
            if (i == end) break;
            i++;
            goto stag;

        case SC_STAG:
        stag : {
            for (;;) {
                i = find3(d, i, end, '>', '\'', '"');
                if (i == end) {
                    sc->state = SC_STAG;
                    goto next;
                }
                unsigned char quote = d[i];
                if (quote == '>') break;
                if (++sc->attrs > MAX_ATTRS) STOP(XSTREAM_POLICY_VIOLATION);
                i = find3(d, i + 1, end, quote, quote, quote);
                if (i == end) {
                    sc->quote = quote;
                    sc->state = SC_STAG_QUOTE;
                    goto next;
                }
                i++;
            }
            bool is_empty = (i > 0 ? d[i - 1] : sc->last) == '/';
            pos_t after = POS(i) + 1;
            i++;
            sc->state = SC_TEXT;
            if (sc->open == 0) {
                sc->header_end = sc->unit_start = after;
                sc->keep_from = NO_POS;
                *event = EV_HEADER;
                if (is_empty) {
                    sc->close_end = after;
                    sc->state = SC_CLOSED;
                } else {
                    sc->open = 1;
                }
                goto out;
            }
            if (sc->open == 1) {
                if (is_empty) {
                    stanza_done(xs, sc->stanza_start, sc->stanza_start, after);
                    if (xs->queue_len == QUEUE_SIZE || POS(i) - POS(slice_start) >= SLICE_BYTES)
                        goto out;
                    goto text;
                }
                sc->inner_start = after;
            }
            if (!is_empty) sc->open++;
            goto text;
        }

        case SC_ETAG:
        etag : {
            i = find3(d, i, end, '>', '>', '>');
            if (i == end) {
                sc->state = SC_ETAG;
                goto next;
            }
            pos_t etag_start = sc->tag_start;
            i++;
            sc->state = SC_TEXT;
            if (--sc->open == 1) {
                stanza_done(xs, sc->inner_start, etag_start, POS(i));
                if (xs->queue_len == QUEUE_SIZE || POS(i) - POS(slice_start) >= SLICE_BYTES)
                    goto out;
            } else if (sc->open == 0) {
                sc->close_end = sc->unit_start = POS(i);
                sc->keep_from = NO_POS;
                sc->state = SC_CLOSED;
                *event = EV_CLOSE;
                goto out;
            }
            goto text;
        }

        case SC_BANG: {
            /* "<!--" is a comment and "<!D" a DTD: RFC 6120 §11.1 forbids
             * both. "<![CDATA[" is text. Anything else is malformed. */
            static const char cdata[] = "[CDATA[";
            unsigned char c = d[i++];
            if (sc->matched == 0 && c == 'D') STOP(XSTREAM_RESTRICTED_XML);
            if (sc->matched == 0 && c == '-') {
                sc->matched = 100;
                break;
            }
            if (sc->matched == 100)
                STOP(c == '-' ? XSTREAM_RESTRICTED_XML : XSTREAM_NOT_WELL_FORMED);
            if (sc->open == 0 || c != (unsigned char)cdata[sc->matched])
                STOP(XSTREAM_NOT_WELL_FORMED);
            if (++sc->matched == sizeof cdata - 1) {
                sc->state = SC_CDATA;
                sc->matched = 0;
            }
            break;
        }

        case SC_CDATA:
            while (i < end) {
                unsigned char c = d[i++];
                if (c == '>' && sc->matched >= 2) {
                    sc->state = SC_TEXT;
                    if (sc->open == 1) sc->keep_from = NO_POS;
                    break;
                }
                sc->matched = c == ']' ? sc->matched + 1 : 0;
            }
            break;

        case SC_PI: {
            static const char xml[] = "xml";
            unsigned char c = d[i++];
            if (sc->matched < 3) {
                if (c != (unsigned char)xml[sc->matched]) STOP(XSTREAM_RESTRICTED_XML);
                sc->matched++;
            } else {
                if (!xml_is_blank(c)) STOP(XSTREAM_RESTRICTED_XML);
                sc->state = SC_XMLDECL;
                sc->matched = 0;
            }
            break;
        }

        case SC_XMLDECL:
            while (i < end) {
                unsigned char c = d[i++];
                if (c == '>' && sc->matched) {
                    sc->state = SC_PROLOG;
                    sc->keep_from = NO_POS;
                    break;
                }
                sc->matched = c == '?';
            }
            break;
        }
    next:;
    }
out:
    if (i > 0) sc->last = d[i - 1];
    sc->pos = POS(i);
    return i;
#undef POS
#undef STOP
}

/* ---- building the tree (libxml2 callbacks) ----------------------------- */

/* With entity substitution off, libxml2 hands '&' in an attribute value
 * (namespace declarations included) back as "&#38;", for a later reparse
 * that we do not do. Every other reference is resolved, and a bare '&' is an
 * error, so each '&' left starts "&#38;". */
static size_t unescape_amp(char *s, size_t len)
{
    char *w = memchr(s, '&', len);
    if (!w) return len;
    const char *r = w, *end = s + len;
    while (r < end) {
        if (*r == '&' && end - r >= 5 && memcmp(r, "&#38;", 5) == 0) {
            *w++ = '&';
            r += 5;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static const char *intern_ns(xstream_t *xs, const xmlChar *uri)
{
    if (!uri) return "";
    for (unsigned k = 0; k < xs->ns_cached; k++)
        if (xs->ns_cache[k].key == uri) return xs->ns_cache[k].copy;
    size_t len = strlen((const char *)uri);
    char *copy = arena_strndup(xs->arena, (const char *)uri, len);
    unescape_amp(copy, len);
    if (xs->ns_cached < sizeof xs->ns_cache / sizeof xs->ns_cache[0]) {
        xs->ns_cache[xs->ns_cached].key = uri;
        xs->ns_cache[xs->ns_cached++].copy = copy;
    }
    return copy;
}

static elem_t *make_elem(xstream_t *xs, const xmlChar *localname, const xmlChar *uri,
                         int nb_attributes, const xmlChar **attributes)
{
    arena_t *a = xs->arena;
    elem_t *e = arena_alloc(a, sizeof *e);
    memset(e, 0, sizeof *e);
    e->arena = a;
    e->name = arena_strdup(a, (const char *)localname);
    e->ns = intern_ns(xs, uri);
    attr_t **tail = &e->attrs;
    for (int k = 0; k < nb_attributes; k++, attributes += 5) {
        attr_t *at = arena_alloc(a, sizeof *at);
        at->name = arena_strdup(a, (const char *)attributes[0]);
        at->ns = attributes[2] ? intern_ns(xs, attributes[2]) : NULL;
        if (at->ns && strcmp(at->ns, NS_XML) == 0) at->ns = NS_XML;
        size_t len = (size_t)(attributes[4] - attributes[3]);
        char *value = arena_strndup(a, (const char *)attributes[3], len);
        at->value_len = unescape_amp(value, len);
        at->value = value;
        at->next = NULL;
        *tail = at;
        tail = &at->next;
    }
    return e;
}

static void flush_text(xstream_t *xs)
{
    if (!xs->text.len) return;
    elem_add_text(xs->cur, xs->text.data, xs->text.len);
    buf_reset(&xs->text);
}

/* A new arena after the callee took the old one, else the old one emptied. */
static void recycle_arena(xstream_t *xs)
{
    if (xs->is_detached) {
        xs->arena = arena_new(0);
        xs->is_detached = false;
    } else {
        arena_reset(xs->arena);
    }
    xs->ns_cached = 0;
}

static pos_t lx_pos(const xstream_t *xs)
{
    const xmlParserInputPtr in = xs->ctxt->input;
    return (pos_t)((long long)in->consumed + (in->cur - in->base) + xs->lx_delta);
}

static void request_stop(xstream_t *xs)
{
    xmlStopParser(xs->ctxt);
}

static void sax_start(void *ud, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                      int nb_namespaces, const xmlChar **namespaces, int nb_attributes,
                      int nb_defaulted, const xmlChar **attributes)
{
    xstream_t *xs = ud;
    if (xs->status != XSTREAM_OK || xs->wants_reset) return;
    unsigned depth = xs->depth++;
    if (depth == 0) {
        if (xs->is_replaying) return;
        /* libxml2 reports a start tag before it checks how the tag ends: the
         * header is only real if libxml2 stands on the '>' (or "/>") that the
         * scanner saw end it. */
        pos_t at = lx_pos(xs), end = xs->sc.header_end;
        xmlChar here = *xs->ctxt->input->cur;
        if (end == NO_POS || !((here == '>' && at + 1 == end) || (here == '/' && at + 2 == end))) {
            fail(xs, XSTREAM_NOT_WELL_FORMED);
            request_stop(xs);
            return;
        }
        const char *default_ns = "";
        for (int k = 0; k < nb_namespaces; k++)
            if (!namespaces[2 * k] && namespaces[2 * k + 1])
                default_ns = (const char *)namespaces[2 * k + 1];
        buf_reset(&xs->default_ns);
        buf_append(&xs->default_ns, default_ns, strlen(default_ns) + 1);
        xs->default_ns.len = unescape_amp(xs->default_ns.data, xs->default_ns.len - 1) + 1;
        xs->ns_cached = 0;
        elem_t *header = make_elem(xs, localname, uri, nb_attributes, attributes);
        if (xs->cb.on_open) {
            xs->is_in_callback = true;
            xs->cb.on_open(xs->ud, header, intern_ns(xs, (const xmlChar *)default_ns));
            xs->is_in_callback = false;
        }
        recycle_arena(xs);
        if (xs->wants_reset || xs->wants_free) {
            xs->reset_at = xs->sc.header_end;
            request_stop(xs);
        }
        return;
    }
    if (prefix && strcmp((const char *)prefix, "xml") != 0) xs->has_prefixes = true;
    for (int k = 0; k < nb_attributes && !xs->has_prefixes; k++) {
        const xmlChar *p = attributes[5 * k + 1];
        xs->has_prefixes = p && strcmp((const char *)p, "xml") != 0;
    }
    if (depth == 1) {
        for (int k = 0; k < nb_namespaces; k++)
            xs->declares_default_ns |= !namespaces[2 * k];
        xs->ns_cached = 0;
        xs->stanza = xs->cur = make_elem(xs, localname, uri, nb_attributes, attributes);
        return;
    }
    if (xs->opts.shallow) return;
    flush_text(xs);
    elem_t *e = make_elem(xs, localname, uri, nb_attributes, attributes);
    e->parent = xs->cur;
    if (xs->cur->last)
        xs->cur->last->next = e;
    else
        xs->cur->children = e;
    xs->cur->last = e;
    xs->cur = e;
}

/* Give the stanza of span to the callback, then make ready for the next. */
static void hand_out(xstream_t *xs, const span_t *span, elem_t *stanza)
{
    xstream_raw_t raw;
    if (span->start >= xs->chunk_pos)
        raw.data = xs->chunk + (span->start - xs->chunk_pos);
    else
        raw.data = xs->pending.data + (span->start - xs->pending_pos);
    raw.len = (size_t)(span->end - span->start);
    raw.inner_off = (size_t)(span->inner_start - span->start);
    raw.inner_len = (size_t)(span->inner_end - span->inner_start);
    raw.has_prefixes = xs->has_prefixes || xs->is_skipping;
    raw.declares_default_ns = xs->declares_default_ns;
    xs->has_prefixes = xs->declares_default_ns = false;
    xs->stanza = xs->cur = NULL;
    if (xs->cb.on_stanza) {
        xs->is_in_callback = true;
        xs->cb.on_stanza(xs->ud, stanza, &raw);
        xs->is_in_callback = false;
    }
    recycle_arena(xs);
    if (xs->text.cap > 16 * 1024) buf_free(&xs->text); /* after a big stanza */
    if (xs->wants_reset || xs->wants_free) {
        xs->reset_at = span->end;
        request_stop(xs);
    }
}

static void deliver_stanza(xstream_t *xs)
{
    if (xs->queue_len == 0) {
        /* libxml2 closed an element the scanner did not: they disagree
         * about these bytes, so trust neither. */
        fail(xs, XSTREAM_NOT_WELL_FORMED);
        request_stop(xs);
        return;
    }
    span_t span = xs->queue[xs->queue_head];
    xs->queue_head = (xs->queue_head + 1) % QUEUE_SIZE;
    xs->queue_len--;
    if (lx_pos(xs) != span.end) {
        fail(xs, XSTREAM_NOT_WELL_FORMED);
        request_stop(xs);
        return;
    }
    hand_out(xs, &span, xs->stanza);
}

static void sax_end(void *ud, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri)
{
    xstream_t *xs = ud;
    if (xs->status != XSTREAM_OK || xs->wants_reset || xs->depth == 0) return;
    unsigned depth = --xs->depth;
    if (depth == 0) {
        if (xs->cb.on_close) {
            xs->is_in_callback = true;
            xs->cb.on_close(xs->ud);
            xs->is_in_callback = false;
        }
        if (xs->wants_reset || xs->wants_free) {
            xs->reset_at = xs->sc.close_end;
            request_stop(xs);
        }
        return;
    }
    if (depth == 1) {
        if (!xs->opts.shallow) flush_text(xs);
        deliver_stanza(xs);
        return;
    }
    if (xs->opts.shallow) return;
    flush_text(xs);
    xs->cur = xs->cur->parent;
}

static void sax_characters(void *ud, const xmlChar *ch, int len)
{
    xstream_t *xs = ud;
    if (xs->depth < 2 || xs->opts.shallow || xs->status != XSTREAM_OK || len <= 0) return;
    buf_append(&xs->text, ch, (size_t)len);
}

/* Strict UTF-8 (RFC 3629: no overlongs, surrogates or code points past
 * U+10FFFF) of XML 1.0 characters only. */
static bool is_xml_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i], cp, more;
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return false;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            cp = c & 0x1f, more = 1;
        else if (c >= 0xe0 && c <= 0xef)
            cp = c & 0x0f, more = 2;
        else if (c >= 0xf0 && c <= 0xf4)
            cp = c & 0x07, more = 3;
        else
            return false;
        if (len - i <= more) return false;
        for (unsigned k = 1; k <= more; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((more == 2 && cp < 0x800) || (more == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
            return false;
        i += more + 1;
    }
    return true;
}

/* libxml2 2.9.14's push parser lets overlong UTF-8 through in CDATA sections
 * (everywhere else it decodes strictly), and the raw bytes go on to peers
 * that would choke on them: check every CDATA block, whatever the mode. */
static void sax_cdata(void *ud, const xmlChar *value, int len)
{
    xstream_t *xs = ud;
    if (xs->status != XSTREAM_OK || len <= 0) return;
    if (!is_xml_utf8(value, (size_t)len)) {
        fail(xs, XSTREAM_NOT_WELL_FORMED);
        request_stop(xs);
        return;
    }
    sax_characters(ud, value, len);
}

/* Everything RFC 6120 §11 forbids lands here, should the scanner have let it
 * through: DTDs, entity declarations and references, comments, PIs. */
static void restricted(xstream_t *xs)
{
    fail(xs, XSTREAM_RESTRICTED_XML);
    request_stop(xs);
}

static void sax_internal_subset(void *ud, const xmlChar *name, const xmlChar *external_id,
                                const xmlChar *system_id)
{
    restricted(ud);
}

static void sax_entity_decl(void *ud, const xmlChar *name, int type, const xmlChar *public_id,
                            const xmlChar *system_id, xmlChar *content)
{
    restricted(ud);
}

static void sax_notation_decl(void *ud, const xmlChar *name, const xmlChar *public_id,
                              const xmlChar *system_id)
{
    restricted(ud);
}

static void sax_attribute_decl(void *ud, const xmlChar *elem, const xmlChar *fullname, int type,
                               int def, const xmlChar *default_value, xmlEnumerationPtr tree)
{
    xmlFreeEnumeration(tree);
    restricted(ud);
}

static void sax_element_decl(void *ud, const xmlChar *name, int type, xmlElementContentPtr content)
{
    restricted(ud);
}

static void sax_unparsed_entity_decl(void *ud, const xmlChar *name, const xmlChar *public_id,
                                     const xmlChar *system_id, const xmlChar *notation_name)
{
    restricted(ud);
}

static xmlEntityPtr sax_get_entity(void *ud, const xmlChar *name)
{
    restricted(ud);
    return NULL;
}

static xmlParserInputPtr sax_resolve_entity(void *ud, const xmlChar *public_id,
                                            const xmlChar *system_id)
{
    restricted(ud);
    return NULL;
}

static void sax_reference(void *ud, const xmlChar *name)
{
    restricted(ud);
}

static void sax_pi(void *ud, const xmlChar *target, const xmlChar *data)
{
    restricted(ud);
}

static void sax_comment(void *ud, const xmlChar *value)
{
    restricted(ud);
}

static void sax_error(void *ud, xmlErrorPtr error)
{
    xstream_t *xs = ud;
    if (error && error->level >= XML_ERR_ERROR && !xs->wants_reset) {
        fail(xs, XSTREAM_NOT_WELL_FORMED);
        if (xs->ctxt) xs->ctxt->disableSAX = 1;
    }
}

static xmlSAXHandler sax_handler = {
    .internalSubset = sax_internal_subset,
    .externalSubset = sax_internal_subset,
    .getEntity = sax_get_entity,
    .getParameterEntity = sax_get_entity,
    .resolveEntity = sax_resolve_entity,
    .entityDecl = sax_entity_decl,
    .notationDecl = sax_notation_decl,
    .attributeDecl = sax_attribute_decl,
    .elementDecl = sax_element_decl,
    .unparsedEntityDecl = sax_unparsed_entity_decl,
    .reference = sax_reference,
    .characters = sax_characters,
    .ignorableWhitespace = sax_characters,
    .cdataBlock = sax_cdata,
    .processingInstruction = sax_pi,
    .comment = sax_comment,
    .initialized = XML_SAX2_MAGIC,
    .startElementNs = sax_start,
    .endElementNs = sax_end,
    .serror = sax_error,
};

/* ---- driving libxml2 --------------------------------------------------- */

static void lx_new(xstream_t *xs)
{
    xmlParserCtxtPtr c = xmlCreatePushParserCtxt(&sax_handler, xs, NULL, 0, NULL);
    if (!c) out_of_memory();
    /* No network, no entity substitution, no XML_PARSE_HUGE; the
     * declaration's encoding is ignored: XMPP is UTF-8 (RFC 6120 §11.6). */
    xmlCtxtUseOptions(c, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                             XML_PARSE_IGNORE_ENC);
    xmlSwitchEncoding(c, XML_CHAR_ENCODING_UTF8);
    xs->ctxt = c;
    xs->lx_delta = 0;
    xs->is_lx_bloated = false;
    xs->depth = 0;
    xs->has_prefixes = xs->declares_default_ns = false;
}

static void lx_free(xstream_t *xs)
{
    if (!xs->ctxt) return;
    xmlFreeParserCtxt(xs->ctxt);
    xs->ctxt = NULL;
}

/* libxml2 copies what it is given into an input buffer that never shrinks,
 * so it gets small pieces: its buffer then holds a piece plus whatever it
 * could not parse yet, which is only large for a huge start tag. */
#define LX_PIECE 8192
#define LX_BACKLOG_BIG (16 * 1024)

static void lx_feed(xstream_t *xs, const char *data, size_t len)
{
    while (len && xs->status == XSTREAM_OK && !xs->wants_reset && !xs->wants_free) {
        int n = len > LX_PIECE ? LX_PIECE : (int)len;
        xmlParseChunk(xs->ctxt, data, n, 0);
        data += n;
        len -= (size_t)n;
        if (xs->status != XSTREAM_OK || xs->wants_reset || xs->wants_free) break;
        const xmlParserInputPtr in = xs->ctxt->input;
        if (!xs->ctxt->wellFormed || !xs->ctxt->nsWellFormed || xs->ctxt->instate == XML_PARSER_EOF)
            fail(xs, XSTREAM_NOT_WELL_FORMED);
        else if (in->end - in->cur > LX_BACKLOG_BIG)
            xs->is_lx_bloated = true;
    }
}

/* ---- stanzas read without libxml2 (skipping) ---------------------------- */

static bool is_name_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(unsigned char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* The length of the ASCII name (no prefix) at p, or 0. */
static size_t plain_name(const unsigned char *p, const unsigned char *end)
{
    if (p == end || !is_name_start(*p)) return 0;
    const unsigned char *q = p + 1;
    while (q < end && is_name_char(*q))
        q++;
    return (size_t)(q - p);
}

/* An attribute value as libxml2 would report it, into out (NUL-terminated):
 * false for anything it would change or refuse (a character or unknown
 * reference, '<', whitespace other than spaces, bad UTF-8), which is then
 * left to libxml2. */
static bool plain_value(const unsigned char *p, size_t len, char *out, size_t *out_len)
{
    static const struct {
        const char *ref;
        size_t len;
        char c;
    } refs[] = {{"&lt;", 4, '<'}, {"&gt;", 4, '>'}, {"&amp;", 5, '&'}, {"&quot;", 6, '"'},
                {"&apos;", 6, '\''}};
    size_t n = 0;
    bool is_ascii = true;
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c == '<' || c < 0x20) return false;
        is_ascii &= c < 0x80;
        if (c != '&') {
            out[n++] = (char)c;
            i++;
            continue;
        }
        size_t k = 0;
        while (k < sizeof refs / sizeof refs[0] &&
               (len - i < refs[k].len || memcmp(p + i, refs[k].ref, refs[k].len) != 0))
            k++;
        if (k == sizeof refs / sizeof refs[0]) return false;
        out[n++] = refs[k].c;
        i += refs[k].len;
    }
    out[n] = '\0';
    *out_len = n;
    return is_ascii || is_xml_utf8((const unsigned char *)out, n);
}

/* The stanza of span (wholly in d, d[0] at stream offset base) as shallow
 * mode's libxml2 would build it, or NULL unless it is of the plain kind
 * Hearth's own serializers write: an unprefixed ASCII name, attributes with
 * unprefixed ASCII names, none twice and none a namespace declaration, each
 * value quoted and within plain_value, and an end tag naming it. Anything
 * else goes to libxml2. */
static elem_t *read_plain(xstream_t *xs, const char *d, pos_t base, const span_t *span)
{
    const unsigned char *p = (const unsigned char *)d + (span->start - base);
    bool is_empty = span->inner_start == span->start;
    const unsigned char *tag_end =
        (const unsigned char *)d + ((is_empty ? span->end : span->inner_start) - base);
    tag_end -= is_empty ? 2 : 1; /* at "/>" or '>' */
    size_t name_len = plain_name(++p, tag_end);
    if (!name_len) return NULL;
    const unsigned char *name = p;
    p += name_len;
    if (!is_empty) {
        /* the end tag: "</" name blanks* ">" */
        const unsigned char *e = (const unsigned char *)d + (span->inner_end - base);
        const unsigned char *e_end = (const unsigned char *)d + (span->end - base) - 1;
        if ((size_t)(e_end - e) < name_len + 2 || memcmp(e + 2, name, name_len) != 0) return NULL;
        for (e += 2 + name_len; e < e_end; e++)
            if (!xml_is_blank(*e)) return NULL;
    }
    arena_t *a = xs->arena;
    elem_t *el = arena_alloc(a, sizeof *el);
    memset(el, 0, sizeof *el);
    el->arena = a;
    el->name = arena_strndup(a, (const char *)name, name_len);
    el->ns = arena_strdup(a, xs->default_ns.len ? xs->default_ns.data : "");
    attr_t **tail = &el->attrs;
    for (;;) {
        bool had_blank = false;
        while (p < tag_end && xml_is_blank(*p)) {
            p++;
            had_blank = true;
        }
        if (p == tag_end) break;
        size_t n = plain_name(p, tag_end);
        if (!n || !had_blank || (n == 5 && memcmp(p, "xmlns", 5) == 0)) return NULL;
        const unsigned char *an = p;
        p += n;
        while (p < tag_end && xml_is_blank(*p))
            p++;
        if (p == tag_end || *p++ != '=') return NULL;
        while (p < tag_end && xml_is_blank(*p))
            p++;
        if (p == tag_end || (*p != '\'' && *p != '"')) return NULL;
        unsigned char quote = *p++;
        const unsigned char *v = p;
        while (p < tag_end && *p != quote)
            p++;
        if (p == tag_end) return NULL;
        for (const attr_t *at = el->attrs; at; at = at->next)
            if (strlen(at->name) == n && memcmp(at->name, an, n) == 0) return NULL;
        attr_t *at = arena_alloc(a, sizeof *at);
        at->name = arena_strndup(a, (const char *)an, n);
        at->ns = NULL;
        char *value = arena_alloc(a, (size_t)(p - v) + 1);
        if (!plain_value(v, (size_t)(p - v), value, &at->value_len)) return NULL;
        at->value = value;
        at->next = NULL;
        *tail = at;
        tail = &at->next;
        p++;
    }
    return el;
}

/* Feed d[i..stop) of the current slice (d[0] at stream offset base). When
 * skipping, the content of each stanza the scanner queued wholly inside the
 * slice is left out: libxml2 sees "<route …></route>", and its offsets
 * fall behind the stream's by what it did not see (lx_delta), so that the
 * end of each stanza still checks against the scanner's span. */
static void lx_feed_slice(xstream_t *xs, const char *d, pos_t base, size_t i, size_t stop)
{
    if (xs->is_skipping) {
        span_t spans[QUEUE_SIZE]; /* libxml2's callbacks take them off the queue */
        unsigned n = xs->queue_len;
        for (unsigned k = 0; k < n; k++)
            spans[k] = xs->queue[(xs->queue_head + k) % QUEUE_SIZE];
        for (unsigned k = 0; k < n; k++) {
            const span_t *s = &spans[k];
            if (s->start < base + i) continue;
            size_t start = (size_t)(s->start - base);
            lx_feed(xs, d + i, start - i);
            if (xs->status != XSTREAM_OK || xs->wants_reset || xs->wants_free) return;
            i = start;
            /* A plain stanza libxml2 need not see at all (read_plain): it
             * leaves the queue here, in its turn, once libxml2 has parsed
             * everything before it (text it still holds, waiting for a
             * '<', is checked only when it sees the stanza's). */
            const xmlParserInputPtr in = xs->ctxt->input;
            bool is_drained = in->cur == in->end && xs->queue_len &&
                              xs->queue[xs->queue_head].start == s->start;
            elem_t *plain = is_drained ? read_plain(xs, d, base, s) : NULL;
            if (plain) {
                xs->queue_head = (xs->queue_head + 1) % QUEUE_SIZE;
                xs->queue_len--;
                xs->lx_delta += (long long)(s->end - s->start);
                i = (size_t)(s->end - base);
                hand_out(xs, s, plain);
                if (xs->status != XSTREAM_OK || xs->wants_reset || xs->wants_free) return;
                continue;
            }
            if (s->inner_end == s->inner_start) continue;
            size_t from = (size_t)(s->inner_start - base), to = (size_t)(s->inner_end - base);
            lx_feed(xs, d + i, from - i);
            if (xs->status != XSTREAM_OK || xs->wants_reset || xs->wants_free) return;
            xs->lx_delta += (long long)(to - from);
            i = to;
        }
    }
    lx_feed(xs, d + i, stop - i);
}

/* At a stanza boundary, a parser whose name dictionary has grown (a peer can
 * send fresh names forever), or whose input buffer had to grow for a huge
 * start tag, is replaced by a fresh one that reads the saved header first. */
/* A new libxml2 parser at the current position, brought inside the root
 * element again by feeding it the saved stream header. */
static void lx_replay(xstream_t *xs)
{
    lx_new(xs);
    xs->is_replaying = true;
    xs->lx_delta = (long long)xs->sc.pos - (long long)xs->header.len;
    lx_feed(xs, xs->header.data, xs->header.len);
    xs->is_replaying = false;
    if (xs->depth != 1) fail(xs, XSTREAM_NOT_WELL_FORMED);
}

/* Between stanzas, with nothing of the next one seen yet. */
static bool is_between_stanzas(const xstream_t *xs)
{
    const scanner_t *sc = &xs->sc;
    return sc->state == SC_TEXT && sc->open == 1 && sc->keep_from == NO_POS && !xs->queue_len &&
           !xs->text.len;
}

static void lx_renew_if_big(xstream_t *xs)
{
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* Fuzzing: renew at about half the boundaries, to exercise the replay. */
    bool is_forced = xs->sc.pos & 1;
#else
    bool is_forced = false;
#endif
    if (!is_forced && !xs->is_lx_bloated &&
        xmlDictGetUsage(xs->ctxt->dict) < xs->opts.max_stanza + 64 * 1024)
        return;
    /* Bytes libxml2 holds unparsed (text it has not seen the end of) would be
     * lost unchecked: wait for a boundary where it has read everything. */
    if (xs->ctxt->input->cur != xs->ctxt->input->end) return;
    lx_free(xs);
    lx_replay(xs);
}

static void save_header(xstream_t *xs, const char *d, pos_t base)
{
    scanner_t *sc = &xs->sc;
    buf_reset(&xs->header);
    pos_t from = sc->header_start;
    if (from < base) {
        buf_append(&xs->header, xs->pending.data + (from - xs->pending_pos), (size_t)(base - from));
        from = base;
    }
    buf_append(&xs->header, d + (from - base), (size_t)(sc->header_end - from));
}

/* Parse n bytes of the current stream. Returns how many were used: all of
 * them, unless the stream was reset from a callback, which ends it early. */
static size_t feed_stream(xstream_t *xs, const char *d, size_t n)
{
    scanner_t *sc = &xs->sc;
    const pos_t base = sc->pos;
    bool is_pending_complete = false;
    size_t i = 0;
    xs->chunk = d;
    xs->chunk_pos = base;

    while (i < n && xs->status == XSTREAM_OK) {
        xstream_status_t err;
        enum scan_event event;
        size_t stop = scan(xs, (const unsigned char *)d, n, i, &err, &event);

        /* A stanza begun in an earlier feed: complete its bytes. */
        if (xs->queue_len && !is_pending_complete && xs->queue[xs->queue_head].start < base) {
            span_t *s = &xs->queue[xs->queue_head];
            buf_append(&xs->pending, d, (size_t)(s->end - base));
            is_pending_complete = true;
        }
        if (event == EV_HEADER) save_header(xs, d, base);

        lx_feed_slice(xs, d, base, i, stop);
        if (xs->wants_reset || xs->wants_free) return (size_t)(xs->reset_at - base);
        if (xs->status != XSTREAM_OK) return n;
        if (xs->queue_len) {
            /* libxml2 left a complete stanza unparsed: the two readers
             * disagree, and raw bytes could go wrong. */
            fail(xs, XSTREAM_NOT_WELL_FORMED);
            return n;
        }
        if (err != XSTREAM_OK) {
            fail(xs, err);
            return n;
        }
        i = stop;
        if (sc->state == SC_TEXT && sc->open == 1 && sc->keep_from == NO_POS) lx_renew_if_big(xs);
    }

    /* Keep the unfinished stanza's bytes for its raw form. */
    if (sc->keep_from == NO_POS) {
        buf_reset(&xs->pending);
        if (xs->pending.cap > 16 * 1024) buf_free(&xs->pending);
    } else if (sc->keep_from >= base) {
        buf_reset(&xs->pending);
        buf_append(&xs->pending, d + (sc->keep_from - base), (size_t)(base + n - sc->keep_from));
        xs->pending_pos = sc->keep_from;
    } else {
        buf_append(&xs->pending, d, n);
    }
    return n;
}

/* ---- the public face --------------------------------------------------- */

static void stream_start(xstream_t *xs)
{
    scanner_init(&xs->sc);
    xs->queue_head = xs->queue_len = 0;
    buf_reset(&xs->pending);
    xs->pending_pos = 0;
    buf_reset(&xs->header);
    buf_reset(&xs->text);
    xs->stanza = xs->cur = NULL;
    xs->status = XSTREAM_OK;
    xs->wants_reset = false;
    xs->wants_discard = false;
    xs->is_at_start = true;
    lx_new(xs);
}

xstream_t *xstream_new(const xstream_opts_t *opts, const xstream_cb_t *cb, void *ud)
{
    static bool is_initialized;
    if (!is_initialized) {
        xmlInitParser();
        is_initialized = true;
    }
    xstream_t *xs = calloc(1, sizeof *xs);
    if (!xs) out_of_memory();
    if (opts) xs->opts = *opts;
    if (!xs->opts.max_stanza) xs->opts.max_stanza = DEFAULT_MAX_STANZA;
    if (xs->opts.max_stanza > MAX_MAX_STANZA) xs->opts.max_stanza = MAX_MAX_STANZA;
    if (!xs->opts.max_depth) xs->opts.max_depth = DEFAULT_MAX_DEPTH;
    if (cb) xs->cb = *cb;
    xs->ud = ud;
    buf_init(&xs->pending);
    buf_init(&xs->header);
    buf_init(&xs->text);
    xs->arena = arena_new(0);
    stream_start(xs);
    return xs;
}

static void destroy(xstream_t *xs)
{
    lx_free(xs);
    buf_free(&xs->pending);
    buf_free(&xs->header);
    buf_free(&xs->default_ns);
    buf_free(&xs->text);
    if (!xs->is_detached) arena_free(xs->arena);
    free(xs);
}

void xstream_free(xstream_t *xs)
{
    if (!xs) return;
    if (xs->is_feeding) {
        /* From a callback: the feed in progress finishes the job. */
        xs->wants_free = true;
        return;
    }
    destroy(xs);
}

/* Once dead, a stream keeps nothing but its status. */
static void release(xstream_t *xs)
{
    lx_free(xs);
    buf_free(&xs->pending);
    buf_free(&xs->header);
    buf_free(&xs->default_ns);
    buf_free(&xs->text);
    xs->queue_len = 0;
}

xstream_status_t xstream_feed(xstream_t *xs, const char *data, size_t len)
{
    if (xs->is_feeding) {
        fprintf(stderr, "hearth: xstream_feed called from its own callback\n");
        abort();
    }
    xs->bytes += len;
    if (xs->status != XSTREAM_OK) return xs->status;
    xs->is_feeding = true;
    size_t off = 0;
    if (!xs->ctxt) {
        /* Hibernating (xstream_hibernate): a parser again, in the root. */
        xs->arena = arena_new(0);
        lx_replay(xs);
    }
    while (off < len && xs->status == XSTREAM_OK) {
        /* Whitespace before a stream's first '<' belongs to no document: a
         * client's newline after <starttls/> arrives before the new stream,
         * whose <?xml?> declaration must still come first for libxml2. */
        while (xs->is_at_start && off < len &&
               (data[off] == ' ' || data[off] == '\t' || data[off] == '\r' || data[off] == '\n'))
            off++;
        if (off == len) break;
        xs->is_at_start = false;
        off += feed_stream(xs, data + off, len - off);
        if (xs->wants_free) break;
        if (xs->wants_reset) {
            bool discard = xs->wants_discard;
            lx_free(xs);
            stream_start(xs);
            if (discard) break;
        }
    }
    xs->is_feeding = false;
    if (xs->wants_free) {
        destroy(xs);
        return XSTREAM_OK;
    }
    if (xs->status != XSTREAM_OK) release(xs);
    return xs->status;
}

void xstream_reset_discard(xstream_t *xs)
{
    xstream_reset(xs);
    if (xs->is_feeding) xs->wants_discard = true;
}

void xstream_reset(xstream_t *xs)
{
    if (xs->is_feeding) {
        xs->wants_reset = true;
        return;
    }
    lx_free(xs);
    if (!xs->arena) {
        xs->arena = arena_new(0); /* it was hibernating */
        xs->is_detached = false;
    }
    if (xs->is_detached) recycle_arena(xs);
    arena_reset(xs->arena);
    stream_start(xs);
}

int xstream_hibernate(xstream_t *xs)
{
    if (xs->status != XSTREAM_OK || xs->is_feeding || !xs->ctxt || xs->depth != 1 ||
        !is_between_stanzas(xs) || xs->ctxt->input->cur != xs->ctxt->input->end)
        return -1;
    lx_free(xs);
    if (!xs->is_detached) arena_free(xs->arena);
    xs->arena = NULL;
    xs->is_detached = false;
    xs->ns_cached = 0;
    buf_free(&xs->pending);
    buf_free(&xs->text);
    return 0;
}

void xstream_skip_content(xstream_t *xs, bool on)
{
    xs->is_skipping = on && xs->opts.shallow;
}

arena_t *xstream_detach(xstream_t *xs)
{
    if (!xs->is_in_callback || xs->is_detached) return NULL;
    xs->is_detached = true;
    return xs->arena;
}

const char *xstream_condition(xstream_status_t status)
{
    switch (status) {
    case XSTREAM_OK:
        return NULL;
    case XSTREAM_NOT_WELL_FORMED:
        return "not-well-formed";
    case XSTREAM_RESTRICTED_XML:
        return "restricted-xml";
    case XSTREAM_POLICY_VIOLATION:
        return "policy-violation";
    }
    return "undefined-condition";
}

unsigned long long xstream_bytes(const xstream_t *xs)
{
    return xs->bytes;
}
