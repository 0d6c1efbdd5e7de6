/* test_xstream.c — the stream parser through xstream.h: events, raw bytes,
 * chunking, RFC 6120 §11 restrictions, limits, reset, detach. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "tap.h"
#include "xmpp.h"
#include "xstream.h"

#define HEADER                                                                                     \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "        \
    "to='example.com' version='1.0'>"

/* Everything a stream reported, as one comparable transcript. */
typedef struct record {
    buf_t log;
    unsigned opens, stanzas, closes;
    size_t max_arena; /* largest stanza arena seen */
    xstream_t *xs;
    int reset_on_stanza; /* reset from inside the n-th on_stanza (1-based) */
    bool reset_on_close;
    bool discard; /* reset_on_stanza uses xstream_reset_discard */
    bool detach;
    bool free_on_stanza;
    arena_t *detached[8];
    elem_t *kept[8];
    unsigned ndetached;
    unsigned prefixed; /* bit i: stanza i (from 0) had raw->has_prefixes */
    unsigned declared; /* bit i: stanza i had raw->declares_default_ns */
} record_t;

static void rec_open(void *ud, elem_t *header, const char *default_ns)
{
    record_t *r = ud;
    r->opens++;
    buf_printf(&r->log, "open{%s|%s|%s}", header->name, header->ns, default_ns);
    for (attr_t *a = header->attrs; a; a = a->next)
        buf_printf(&r->log, "[%s%s%s=%s]", a->ns ? a->ns : "", a->ns ? ":" : "", a->name, a->value);
    buf_appends(&r->log, "\n");
}

static void rec_stanza(void *ud, elem_t *stanza, const xstream_raw_t *raw)
{
    record_t *r = ud;
    if (raw->has_prefixes && r->stanzas < 32) r->prefixed |= 1u << r->stanzas;
    if (raw->declares_default_ns && r->stanzas < 32) r->declared |= 1u << r->stanzas;
    r->stanzas++;
    size_t used = arena_used(stanza->arena);
    if (used > r->max_arena) r->max_arena = used;
    buf_appends(&r->log, "stanza{");
    elem_serialize(stanza, "jabber:client", &r->log);
    buf_appends(&r->log, "}raw{");
    buf_append(&r->log, raw->data, raw->len);
    buf_appends(&r->log, "}inner{");
    buf_append(&r->log, raw->data + raw->inner_off, raw->inner_len);
    buf_printf(&r->log, "}%zu/%zu\n", raw->inner_off, raw->inner_len);
    if (r->detach && r->ndetached < 8) {
        r->detached[r->ndetached] = xstream_detach(r->xs);
        r->kept[r->ndetached++] = stanza;
    }
    if ((int)r->stanzas == r->reset_on_stanza) {
        if (r->discard)
            xstream_reset_discard(r->xs);
        else
            xstream_reset(r->xs);
    }
    if (r->free_on_stanza) xstream_free(r->xs);
}

static void rec_close(void *ud)
{
    record_t *r = ud;
    r->closes++;
    buf_appends(&r->log, "close\n");
    if (r->reset_on_close) xstream_reset(r->xs);
}

static const xstream_cb_t rec_cb = {rec_open, rec_stanza, rec_close};

static xstream_t *rec_new(record_t *r, size_t max_stanza, unsigned max_depth, bool shallow)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->log);
    xstream_opts_t o = {max_stanza, max_depth, shallow};
    r->xs = xstream_new(&o, &rec_cb, r);
    return r->xs;
}

static void rec_free(record_t *r)
{
    xstream_free(r->xs);
    buf_free(&r->log);
    for (unsigned i = 0; i < r->ndetached; i++)
        arena_free(r->detached[i]);
}

static xstream_status_t feed_str(xstream_t *xs, const char *s)
{
    return xstream_feed(xs, s, strlen(s));
}

/* Parse s whole; return the status and leave the transcript in r. */
static xstream_status_t parse_all(record_t *r, const char *s, size_t max_stanza, bool shallow)
{
    rec_new(r, max_stanza, 0, shallow);
    return feed_str(r->xs, s);
}

static xstream_status_t status_of(const char *s)
{
    record_t r;
    xstream_status_t st = parse_all(&r, s, 0, false);
    rec_free(&r);
    return st;
}

/* ---- events and raw bytes ---------------------------------------------- */

static void test_header_reported_with_default_namespace(void)
{
    record_t r;
    is_int(parse_all(&r, "<?xml version='1.0'?>" HEADER, 0, false), XSTREAM_OK,
           "stream_header_parses");
    is_int(r.opens, 1, "stream_header_opens_once");
    is_str(r.log.data,
           "open{stream|http://etherx.jabber.org/streams|jabber:client}[to=example.com]"
           "[version=1.0]\n",
           "stream_header_has_name_ns_attrs_and_default_ns");
    rec_free(&r);

    parse_all(&r, "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>", 0, false);
    is_str(r.log.data, "open{stream|http://etherx.jabber.org/streams|}\n",
           "stream_header_without_default_ns_reports_empty");
    rec_free(&r);

    parse_all(&r, "<s xml:lang='en'>", 0, false);
    is_str(r.log.data, "open{s||}[http://www.w3.org/XML/1998/namespace:lang=en]\n",
           "stream_header_xml_lang_in_xml_namespace");
    rec_free(&r);
}

static void test_stanza_tree_and_raw(void)
{
    record_t r;
    const char *s = HEADER "<message to='a@b' id='1'><body>hi</body></message>";
    is_int(parse_all(&r, s, 0, false), XSTREAM_OK, "stanza_parses");
    is_int(r.stanzas, 1, "stanza_reported_once");
    ok(strstr(r.log.data, "stanza{<message to='a@b' id='1'><body>hi</body></message>}") != NULL,
       "stanza_tree_matches_input");
    ok(strstr(r.log.data, "raw{<message to='a@b' id='1'><body>hi</body></message>}"
                          "inner{<body>hi</body>}25/15") != NULL,
       "stanza_raw_and_inner_bytes_exact");
    rec_free(&r);

    parse_all(&r, HEADER "<presence/>", 0, false);
    ok(strstr(r.log.data, "raw{<presence/>}inner{}0/0") != NULL, "empty_stanza_inner_is_0_0");
    rec_free(&r);

    parse_all(&r, HEADER "<presence ></presence >", 0, false);
    ok(strstr(r.log.data, "raw{<presence ></presence >}inner{}11/0") != NULL,
       "stanza_with_empty_content_inner_len_0");
    rec_free(&r);
}

static void test_raw_bytes_tricky_cases(void)
{
    record_t r;
    parse_all(&r, HEADER "<iq a='x>y' b=\"/>\" c='/'><q xmlns='urn:q' v='>'/></iq>", 0, false);
    ok(strstr(r.log.data,
              "raw{<iq a='x>y' b=\"/>\" c='/'><q xmlns='urn:q' v='>'/></iq>}inner{<q xmlns='urn:q' "
              "v='>'/>}") != NULL,
       "raw_bytes_exact_with_gt_and_slash_in_attributes");
    rec_free(&r);

    parse_all(&r, HEADER " \n\t <a/>\r\n  <b/>   ", 0, false);
    ok(strstr(r.log.data, "raw{<a/>}") && strstr(r.log.data, "raw{<b/>}"),
       "raw_bytes_exclude_whitespace_between_stanzas");
    rec_free(&r);

    const char *utf8 = HEADER "<message><body>h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80</body>"
                              "</message>";
    parse_all(&r, utf8, 0, false);
    ok(strstr(r.log.data,
              "raw{<message><body>h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80</body></message>}") !=
           NULL,
       "raw_bytes_exact_with_multibyte_utf8");
    ok(strstr(r.log.data, "<body>h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80</body>") != NULL,
       "text_keeps_multibyte_utf8");
    rec_free(&r);

    parse_all(&r, HEADER "<m><![CDATA[<not> a </tag> ]] ]]]></m>", 0, false);
    ok(strstr(r.log.data, "stanza{<m>&lt;not&gt; a &lt;/tag&gt; ]] ]</m>}") != NULL,
       "cdata_section_becomes_text");
    ok(strstr(r.log.data, "raw{<m><![CDATA[<not> a </tag> ]] ]]]></m>}") != NULL,
       "cdata_section_raw_bytes_exact");
    rec_free(&r);
}

static void test_entities_and_references(void)
{
    record_t r;
    parse_all(&r,
              HEADER "<m a='1&amp;2&lt;&#38;&#x26;&quot;&apos;'>&lt;&gt;&amp;&quot;&apos;&#65;"
                     "&#x42;</m>",
              0, false);
    ok(strstr(r.log.data,
              "stanza{<m a='1&amp;2&lt;&amp;&amp;&quot;&apos;'>&lt;&gt;&amp;\"'AB</m>}") != NULL,
       "predefined_entities_and_char_refs_decoded");
    rec_free(&r);

    record_t r2;
    rec_new(&r2, 0, 0, false);
    feed_str(r2.xs, HEADER "<m a='&amp;'/>");
    ok(strstr(r2.log.data, "stanza{<m a='&amp;'/>}") != NULL, "amp_alone_in_attribute_decoded");
    rec_free(&r2);

    rec_new(&r2, 0, 0, false);
    feed_str(r2.xs, "<s xmlns='urn:a&amp;b'><m xmlns:p='urn:c&#38;d' p:x='1'/>");
    ok(strstr(r2.log.data, "open{s|urn:a&b|urn:a&b}") != NULL, "amp_in_default_namespace_decoded");
    ok(strstr(r2.log.data, "stanza{<m xmlns='urn:a&amp;b' xmlns:ns1='urn:c&amp;d' ns1:x='1'/>}") !=
           NULL,
       "amp_in_prefixed_namespace_decoded");
    rec_free(&r2);

    is_int(status_of(HEADER "<m>&#0;</m>"), XSTREAM_NOT_WELL_FORMED, "char_ref_to_nul_refused");
}

static void test_several_stanzas_and_close(void)
{
    record_t r;
    is_int(parse_all(&r, HEADER "<a/><b x='1'>t</b>\n<c><d/></c></stream:stream>", 0, false),
           XSTREAM_OK, "several_stanzas_parse");
    is_int(r.stanzas, 3, "several_stanzas_in_one_chunk_all_reported");
    is_int(r.closes, 1, "stream_close_reported");
    ok(strstr(r.log.data, "close") > strstr(r.log.data, "raw{<c><d/></c>}"),
       "close_comes_after_last_stanza");
    is_int(feed_str(r.xs, "\n "), XSTREAM_OK, "whitespace_after_close_accepted");
    is_int(feed_str(r.xs, "<x/>"), XSTREAM_NOT_WELL_FORMED, "element_after_close_refused");
    rec_free(&r);
}

/* has_prefixes: a prefix other than xml: anywhere in the stanza, on an
 * element or an attribute, whether declared in it or outside (on the
 * header); in full and in shallow mode, and anew for each stanza. */
static void test_prefixes_are_told(void)
{
    static const char stanzas[] =
        "<message to='a' xml:lang='en'><body>plain</body></message>"      /* 0: no */
        "<message to='a'><x:q xmlns:x='urn:x'/></message>"                 /* 1: yes */
        "<iq type='get'><query xmlns='urn:q'/></iq>"                       /* 2: no */
        "<presence h:a='1'/>"                                               /* 3: yes */
        "<message><body><h:b/></body></message>"                            /* 4: yes */
        "<s:features/>"                                                     /* 5: yes */
        "<message xmlns='jabber:client'><body>plain</body></message>";     /* 6: no */
    for (int shallow = 0; shallow <= 1; shallow++) {
        record_t r;
        is_int(parse_all(&r,
                         "<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/"
                         "streams' xmlns:h='urn:h'>",
                         0, shallow),
               XSTREAM_OK, "prefixes_header");
        is_int(feed_str(r.xs, stanzas), XSTREAM_OK, "prefixes_stanzas_parse");
        is_int((int)r.stanzas, 7, "prefixes_seven_stanzas");
        is_int((int)r.prefixed, (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5),
               shallow ? "prefixes_told_in_shallow_mode" : "prefixes_told_in_full_mode");
        is_int((int)r.declared, 1 << 6, "default_namespace_declaration_told");
        rec_free(&r);
    }
}

static void test_shallow_mode(void)
{
    record_t r;
    parse_all(&r, HEADER "<message to='a' xmlns:x='urn:x' x:y='z'><body>hi</body><x:q/></message>",
              0, true);
    ok(strstr(r.log.data, "stanza{<message to='a' xmlns:ns2='urn:x' ns2:y='z'/>}") != NULL,
       "shallow_stanza_has_attrs_but_no_children");
    ok(strstr(r.log.data, "raw{<message to='a' xmlns:x='urn:x' x:y='z'><body>hi</body><x:q/>"
                          "</message>}") != NULL,
       "shallow_stanza_raw_bytes_complete");
    rec_free(&r);

    is_int(parse_all(&r, HEADER "<m><a></b></m>", 0, true), XSTREAM_NOT_WELL_FORMED,
           "shallow_mode_still_checks_payload_well_formed");
    rec_free(&r);
    is_int(parse_all(&r, HEADER "<m><!-- c --></m>", 0, true), XSTREAM_RESTRICTED_XML,
           "shallow_mode_still_refuses_comment_in_payload");
    rec_free(&r);
}

/* Content skipped (xstream_skip_content): libxml2 sees the stanza's tags,
 * the scanner its content. */
static void test_skip_content(void)
{
    record_t r;
    rec_new(&r, 0, 0, true);
    xstream_skip_content(r.xs, true);
    is_int(feed_str(r.xs, HEADER "<route to='a'><message><a></b>&bogus;</message></route>"
                                 "<route to='b'/><route to='c'></route>"),
           XSTREAM_OK, "skipping: content libxml2 would refuse is not looked at");
    is_int(r.stanzas, 3, "skipping: every stanza is delivered");
    ok(strstr(r.log.data, "stanza{<route to='a'/>}raw{<route to='a'><message><a></b>&bogus;"
                          "</message></route>}") != NULL,
       "skipping: the stanza's attributes and its raw bytes, content included");
    rec_free(&r);

    rec_new(&r, 0, 0, true);
    is_int(feed_str(r.xs, HEADER "<route to='a'><message><a></b></message></route>"),
           XSTREAM_NOT_WELL_FORMED, "not skipping: the same content is refused");
    rec_free(&r);

    static const struct {
        const char *doc;
        xstream_status_t want;
        const char *what;
    } still[] = {
        {HEADER "<route><!-- c --></route>", XSTREAM_RESTRICTED_XML, "a comment in the content"},
        {HEADER "<route><?pi x?></route>", XSTREAM_RESTRICTED_XML, "a PI in the content"},
        {HEADER "<route a='1' a='2'><m/></route>", XSTREAM_NOT_WELL_FORMED,
         "a duplicate attribute on the stanza"},
        {HEADER "<route a='1'><m/></rout>", XSTREAM_NOT_WELL_FORMED, "a wrong end tag"},
        {HEADER "<route><a><a><a><a><a><a><a><a></a></a></a></a></a></a></a></a></route>",
         XSTREAM_POLICY_VIOLATION, "content deeper than max_depth"},
    };
    for (size_t k = 0; k < sizeof still / sizeof still[0]; k++) {
        xstream_opts_t o = {0, 4, true};
        record_t q;
        memset(&q, 0, sizeof q);
        buf_init(&q.log);
        q.xs = xstream_new(&o, &rec_cb, &q);
        xstream_skip_content(q.xs, true);
        char what[96];
        snprintf(what, sizeof what, "skipping still refuses %s", still[k].what);
        is_int(feed_str(q.xs, still[k].doc), still[k].want, what);
        rec_free(&q);
    }

    /* A stanza split across feeds is parsed whole: its content is checked. */
    rec_new(&r, 0, 0, true);
    xstream_skip_content(r.xs, true);
    feed_str(r.xs, HEADER "<route to='a'><message><a>");
    is_int(feed_str(r.xs, "</b></message></route>"), XSTREAM_NOT_WELL_FORMED,
           "skipping: a stanza split across feeds is parsed whole");
    rec_free(&r);

    /* Over a long stream libxml2's offsets stay in step with the stream's:
     * stanzas many and big enough to renew the parser and fill the queue. */
    rec_new(&r, 0, 0, true);
    xstream_skip_content(r.xs, true);
    buf_t doc = BUF_INIT;
    buf_appends(&doc, HEADER);
    for (int i = 0; i < 3000; i++)
        buf_printf(&doc, "<route to='n%d'><message><body>%0*d</body></message></route>", i,
                   i % 500, i);
    is_int(xstream_feed(r.xs, doc.data, doc.len), XSTREAM_OK, "skipping: a long stream parses");
    is_int(r.stanzas, 3000, "skipping: every one of its stanzas arrives");
    buf_free(&doc);
    rec_free(&r);
}

/* ---- chunking ------------------------------------------------------------ */

static const char *chunk_doc =
    "<?xml version='1.0' encoding='UTF-8'?>\n" HEADER "\n"
    "<message to='a@b/c' from=\"d@e\" x='>/' type='chat'><body>h\xc3\xa9 &amp; &lt;\xf0\x9f\x98\x80"
    "&#x41;</body><thread/><x xmlns='urn:x' xml:lang='fr'><y a='1'>t<![CDATA[a]]b>]]></y></x>"
    "</message> \r\n"
    "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"
    "<presence/><presence></presence >"
    "<message><body>it's \"quoted\" 'x' a > b ]] > c</body><x a=\"'\" b='\"'/></message>\n"
    "<message><body>\xe2\x82\xac\xe2\x82\xac</body></message>"
    "</stream:stream>\n";

/* mode: 0 full, 1 shallow, 2 shallow with the content skipped */
static bool transcript_with_chunks(const char *doc, const size_t *cuts, size_t ncuts, int mode,
                                   buf_t *out)
{
    record_t r;
    rec_new(&r, 0, 0, mode > 0);
    if (mode == 2) xstream_skip_content(r.xs, true);
    size_t len = strlen(doc), at = 0;
    bool is_ok = true;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : len;
        if (xstream_feed(r.xs, doc + at, to - at) != XSTREAM_OK) is_ok = false;
        at = to;
    }
    buf_reset(out);
    buf_append(out, r.log.data, r.log.len);
    rec_free(&r);
    return is_ok;
}

static void test_split_at_every_byte(void)
{
    static const char *const names[] = {"full", "shallow", "skipping"};
    size_t len = strlen(chunk_doc);
    buf_t shallow_whole = BUF_INIT;
    for (int mode = 0; mode <= 2; mode++) {
        const char *name = names[mode];
        buf_t whole = BUF_INIT, split = BUF_INIT;
        ok(transcript_with_chunks(chunk_doc, (size_t[1]){0}, 0, mode, &whole),
           "%s: whole_document_parses", name);
        if (mode == 1) buf_append(&shallow_whole, whole.data, whole.len + 1);
        if (mode == 2)
            is_str(whole.data, shallow_whole.data, "skipping: the same stanzas and raw as shallow");
        size_t bad_two = 0, bad_three = 0;
        for (size_t cut = 1; cut < len; cut++) {
            size_t cuts[1] = {cut};
            if (!transcript_with_chunks(chunk_doc, cuts, 1, mode, &split) ||
                strcmp(split.data, whole.data) != 0)
                bad_two++;
        }
        char what[96];
        snprintf(what, sizeof what, "%s: split_in_two_at_every_byte_same_trees_and_raw", name);
        is_int(bad_two, 0, what);
        for (size_t a = 1; a < len; a += 7) {
            for (size_t b = a + 1; b < len; b += 3) {
                size_t cuts[2] = {a, b};
                if (!transcript_with_chunks(chunk_doc, cuts, 2, mode, &split) ||
                    strcmp(split.data, whole.data) != 0)
                    bad_three++;
            }
        }
        snprintf(what, sizeof what, "%s: split_in_three_same_trees_and_raw", name);
        is_int(bad_three, 0, what);
        size_t *every = malloc(len * sizeof *every);
        for (size_t k = 0; k + 1 < len; k++)
            every[k] = k + 1;
        ok(transcript_with_chunks(chunk_doc, every, len - 1, mode, &split) &&
               strcmp(split.data, whole.data) == 0,
           "%s: one_byte_at_a_time_same_trees_and_raw", name);
        free(every);
        buf_free(&whole);
        buf_free(&split);
    }
    buf_free(&shallow_whole);
}

static void test_long_multibyte_cdata_split_anywhere(void)
{
    /* libxml2 hands long CDATA over in pieces; no piece may cut a character
     * in two, or the UTF-8 check would refuse good input. */
    buf_t doc = BUF_INIT, whole = BUF_INIT, split = BUF_INIT;
    buf_appends(&doc, HEADER "<m><![CDATA[");
    for (int i = 0; i < 120; i++)
        buf_appends(&doc, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80<>");
    buf_appends(&doc, "]]></m>");
    ok(transcript_with_chunks(doc.data, (size_t[1]){0}, 0, false, &whole) &&
           strstr(whole.data, "stanza{") != NULL,
       "long_multibyte_cdata_parses");
    size_t bad = 0;
    for (size_t cut = 1; cut < doc.len; cut++) {
        size_t cuts[1] = {cut};
        if (!transcript_with_chunks(doc.data, cuts, 1, false, &split) ||
            strcmp(split.data, whole.data) != 0)
            bad++;
    }
    is_int(bad, 0, "long_multibyte_cdata_split_anywhere_same_tree");
    buf_free(&doc);
    buf_free(&whole);
    buf_free(&split);
}

static void test_many_stanzas_across_chunks(void)
{
    /* More stanzas than one slice holds, in odd-sized chunks. */
    buf_t doc = BUF_INIT, expect = BUF_INIT;
    buf_appends(&doc, HEADER);
    for (int i = 0; i < 3000; i++) {
        char one[128];
        snprintf(one, sizeof one, "<message id='m%d'><body>%*d</body></message>%s", i, i % 50, i,
                 i % 3 ? "" : " ");
        buf_appends(&doc, one);
        snprintf(one, sizeof one, "raw{<message id='m%d'><body>%*d</body></message>}", i, i % 50,
                 i);
        buf_appends(&expect, one);
    }
    size_t chunks[] = {1, 7, 100, 4096, 65536, 1 << 20};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        record_t r;
        rec_new(&r, 0, 0, c % 2);
        bool is_ok = true;
        for (size_t at = 0; at < doc.len; at += chunks[c]) {
            size_t n = doc.len - at < chunks[c] ? doc.len - at : chunks[c];
            if (xstream_feed(r.xs, doc.data + at, n) != XSTREAM_OK) is_ok = false;
        }
        /* Keep only the raw parts of the transcript. */
        buf_t raws = BUF_INIT;
        for (const char *p = r.log.data; (p = strstr(p, "raw{")) != NULL;) {
            const char *e = strstr(p, "}inner{");
            buf_append(&raws, p, (size_t)(e - p) + 1);
            p = e;
        }
        ok(is_ok && r.stanzas == 3000 && strcmp(raws.data, expect.data) == 0,
           "3000_stanzas_in_%zu_byte_chunks_all_exact", chunks[c]);
        buf_free(&raws);
        rec_free(&r);
    }
    buf_free(&doc);
    buf_free(&expect);
}

/* ---- RFC 6120 §11 ------------------------------------------------------- */

static void test_restricted_xml(void)
{
    is_int(status_of("<!-- hi -->" HEADER), XSTREAM_RESTRICTED_XML,
           "comment_before_header_restricted");
    is_int(status_of(HEADER "<m><!-- hi --></m>"), XSTREAM_RESTRICTED_XML,
           "comment_in_stanza_restricted");
    is_int(status_of(HEADER "<!-- hi -->"), XSTREAM_RESTRICTED_XML,
           "comment_between_stanzas_restricted");
    is_int(status_of(HEADER "<m><!--"), XSTREAM_RESTRICTED_XML,
           "unterminated_comment_restricted_at_once");
    is_int(status_of("<?xml-stylesheet href='a'?>" HEADER), XSTREAM_RESTRICTED_XML,
           "pi_before_header_restricted");
    is_int(status_of(HEADER "<m><?pi x?></m>"), XSTREAM_RESTRICTED_XML, "pi_in_stanza_restricted");
    /* Whitespace before a stream is no part of it (see test_reset). */
    is_int(status_of(" \n<?xml version='1.0'?>" HEADER), XSTREAM_OK,
           "whitespace_before_xml_declaration_skipped");
    is_int(status_of(HEADER "<m/><?xml version='1.0'?>"), XSTREAM_RESTRICTED_XML,
           "xml_declaration_inside_stream_restricted");
    is_int(status_of("<!DOCTYPE stream>" HEADER), XSTREAM_RESTRICTED_XML, "doctype_restricted");
    is_int(status_of("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
                     "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>"
                     "<lolz>&lol2;</lolz>"),
           XSTREAM_RESTRICTED_XML, "billion_laughs_restricted");
    is_int(status_of(HEADER "<m>&foo;</m>"), XSTREAM_RESTRICTED_XML,
           "undeclared_entity_reference_restricted");
    is_int(status_of(HEADER "<m a='&foo;'/>"), XSTREAM_RESTRICTED_XML,
           "entity_reference_in_attribute_restricted");
    is_int(status_of(HEADER "<m><!ENTITY x 'y'></m>"), XSTREAM_NOT_WELL_FORMED,
           "markup_declaration_in_content_not_well_formed");
    is_int(status_of("<?xml version='1.0' standalone='yes'?>" HEADER "<m>&#x10FFFF;</m>"),
           XSTREAM_OK, "xml_declaration_and_char_refs_allowed");

    record_t r;
    rec_new(&r, 0, 0, false);
    feed_str(r.xs, HEADER "<a/><!-- x --><b/>");
    is_int(r.stanzas, 1, "stanzas_before_restricted_markup_delivered_after_it_none");
    is_int(feed_str(r.xs, "<c/>"), XSTREAM_RESTRICTED_XML, "restricted_status_is_sticky");
    is_int(r.stanzas, 1, "no_callbacks_after_error");
    rec_free(&r);
}

static void test_not_well_formed(void)
{
    is_int(status_of(HEADER "<m></n>"), XSTREAM_NOT_WELL_FORMED, "mismatched_end_tag");
    is_int(status_of(HEADER "<m a='1' a='2'/>"), XSTREAM_NOT_WELL_FORMED, "duplicate_attribute");
    is_int(status_of(HEADER "<x:m/>"), XSTREAM_NOT_WELL_FORMED, "undeclared_element_prefix");
    is_int(status_of(HEADER "<m x:a='1'/>"), XSTREAM_NOT_WELL_FORMED,
           "undeclared_attribute_prefix");
    is_int(status_of(HEADER "<m a='<'/>"), XSTREAM_NOT_WELL_FORMED, "lt_in_attribute_value");
    is_int(status_of(HEADER "<m a=1/>"), XSTREAM_NOT_WELL_FORMED, "unquoted_attribute");
    is_int(status_of(HEADER "<m>\xff</m>"), XSTREAM_NOT_WELL_FORMED, "invalid_utf8_in_text");
    is_int(status_of(HEADER "<m a='\xc3('/>"), XSTREAM_NOT_WELL_FORMED,
           "invalid_utf8_in_attribute");
    is_int(status_of(HEADER "<m\xc0\x80/>"), XSTREAM_NOT_WELL_FORMED, "overlong_utf8_in_name");
    is_int(status_of("<?xml version='1.0' encoding='ISO-8859-1'?>" HEADER "<m>\xe9</m>"),
           XSTREAM_NOT_WELL_FORMED, "declared_latin1_still_read_as_utf8");
    is_int(status_of("<?xml version='1.0' encoding='UTF-16'?>" HEADER "<m>\xc3\xa9</m>"),
           XSTREAM_OK, "declared_utf16_ignored_utf8_read");
    is_int(status_of("hello" HEADER), XSTREAM_NOT_WELL_FORMED, "text_before_header");
    is_int(status_of("\xef\xbb\xbf" HEADER), XSTREAM_NOT_WELL_FORMED, "byte_order_mark_refused");
    is_int(status_of(HEADER "<m>a]]>b</m>"), XSTREAM_NOT_WELL_FORMED, "cdata_end_in_text");
    is_int(status_of(HEADER "<![CDAT[x]]>"), XSTREAM_NOT_WELL_FORMED, "broken_cdata_opener");
    is_int(status_of(HEADER "<m><![CDATA[a\xc1\x9d]]></m>"), XSTREAM_NOT_WELL_FORMED,
           "overlong_utf8_in_cdata");
    is_int(status_of(HEADER "<![CDATA[\xed\xa0\x80]]><m/>"), XSTREAM_NOT_WELL_FORMED,
           "surrogate_in_cdata_between_stanzas");
    is_int(status_of(HEADER "<m><![CDATA[\xf4\x90\x80\x80]]></m>"), XSTREAM_NOT_WELL_FORMED,
           "code_point_past_10ffff_in_cdata");
    is_int(status_of(HEADER "<m><![CDATA[\x01]]></m>"), XSTREAM_NOT_WELL_FORMED,
           "control_character_in_cdata");
    record_t sh;
    rec_new(&sh, 0, 0, true);
    is_int(feed_str(sh.xs, HEADER "<m><b><![CDATA[\xe0\x80\xbf]]></b></m>"),
           XSTREAM_NOT_WELL_FORMED, "overlong_utf8_in_cdata_refused_in_shallow_mode");
    rec_free(&sh);
    is_int(status_of("</stream:stream>"), XSTREAM_NOT_WELL_FORMED, "end_tag_before_header");
    is_int(status_of(HEADER "<m/></stream:stream><m/>"), XSTREAM_NOT_WELL_FORMED,
           "content_after_close");
    is_int(status_of(HEADER "<m xmlns:p=''/>"), XSTREAM_NOT_WELL_FORMED,
           "empty_prefixed_namespace");
    is_int(status_of(HEADER "< m/>"), XSTREAM_NOT_WELL_FORMED, "blank_after_lt");

    record_t bad;
    rec_new(&bad, 0, 0, false);
    is_int(feed_str(bad.xs, "<stream\x0b a='>'>"), XSTREAM_NOT_WELL_FORMED,
           "control_character_in_header_not_well_formed");
    is_int(bad.opens, 0, "malformed_header_not_reported_as_open");
    rec_free(&bad);
    rec_new(&bad, 0, 0, false);
    feed_str(bad.xs, "<stream\x0b>");
    is_int(bad.opens, 0, "header_with_junk_before_gt_not_reported_as_open");
    rec_free(&bad);
    rec_new(&bad, 0, 0, false);
    is_int(feed_str(bad.xs, "<stream/>"), XSTREAM_OK, "empty_root_parses");
    is_int(bad.opens + bad.closes, 2, "empty_root_opens_and_closes");
    rec_free(&bad);

    record_t r;
    rec_new(&r, 0, 0, false);
    is_int(feed_str(r.xs, HEADER "<a/><b></c>"), XSTREAM_NOT_WELL_FORMED, "error_reported");
    is_int(feed_str(r.xs, "<d/>"), XSTREAM_NOT_WELL_FORMED, "not_well_formed_is_sticky");
    is_int(r.stanzas, 1, "stanza_before_error_delivered");
    ok(strcmp(xstream_condition(XSTREAM_NOT_WELL_FORMED), "not-well-formed") == 0 &&
           strcmp(xstream_condition(XSTREAM_RESTRICTED_XML), "restricted-xml") == 0 &&
           strcmp(xstream_condition(XSTREAM_POLICY_VIOLATION), "policy-violation") == 0 &&
           xstream_condition(XSTREAM_OK) == NULL,
       "status_condition_names");
    rec_free(&r);
}

/* ---- limits ------------------------------------------------------------ */

/* Feed `fill` repeated in 64 KiB chunks, up to `total` bytes, after `prefix`.
 * Returns how many bytes went in before the stream failed (or total). */
static size_t feed_flood(record_t *r, const char *prefix, char fill, size_t total,
                         xstream_status_t *st)
{
    static char chunk[64 * 1024];
    memset(chunk, fill, sizeof chunk);
    *st = feed_str(r->xs, prefix);
    size_t fed = 0;
    while (*st == XSTREAM_OK && fed < total) {
        *st = xstream_feed(r->xs, chunk, sizeof chunk);
        fed += sizeof chunk;
    }
    return fed;
}

static void test_policy_limits(void)
{
    record_t r;
    xstream_status_t st;
    size_t fed;

    rec_new(&r, 0, 0, false);
    fed = feed_flood(&r, HEADER "<message a='", 'x', 100u << 20, &st);
    is_int(st, XSTREAM_POLICY_VIOLATION, "100mb_attribute_value_policy_violation");
    ok(fed <= 2 * 65536, "100mb_attribute_value_stops_at_limit (fed %zu)", fed);
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    fed = feed_flood(&r, HEADER "<message><body>", 'y', 100u << 20, &st);
    is_int(st, XSTREAM_POLICY_VIOLATION, "huge_text_node_policy_violation");
    ok(fed <= 2 * 65536, "huge_text_node_stops_at_limit (fed %zu)", fed);
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    fed = feed_flood(&r, "<stream:stream a='", 'z', 100u << 20, &st);
    is_int(st, XSTREAM_POLICY_VIOLATION, "huge_header_policy_violation");
    ok(fed <= 2 * 65536, "huge_header_stops_at_limit (fed %zu)", fed);
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    fed = feed_flood(&r, HEADER, ' ', 100u << 20, &st);
    is_int(st, XSTREAM_POLICY_VIOLATION, "endless_whitespace_between_stanzas_policy_violation");
    ok(fed <= 2 * 65536, "endless_whitespace_between_stanzas_stops_at_limit (fed %zu)", fed);
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    fed = feed_flood(&r, HEADER "<m><![CDATA[", 'c', 100u << 20, &st);
    is_int(st, XSTREAM_POLICY_VIOLATION, "endless_cdata_policy_violation");
    ok(fed <= 2 * 65536, "endless_cdata_stops_at_limit (fed %zu)", fed);
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    fed = feed_flood(&r, HEADER "<m xmlns:p='", 'n', 100u << 20, &st);
    is_int(st, XSTREAM_POLICY_VIOLATION, "endless_namespace_uri_policy_violation");
    ok(fed <= 2 * 65536, "endless_namespace_uri_stops_at_limit (fed %zu)", fed);
    rec_free(&r);

    /* Exactly max_stanza bytes is fine; one more is not. */
    char big[300];
    memset(big, 'a', sizeof big);
    memcpy(big, "<m>", 3);
    memcpy(big + sizeof big - 4, "</m>", 4);
    rec_new(&r, sizeof big, 0, false);
    feed_str(r.xs, HEADER);
    is_int(xstream_feed(r.xs, big, sizeof big), XSTREAM_OK,
           "stanza_of_exactly_max_stanza_accepted");
    is_int(r.stanzas, 1, "stanza_of_exactly_max_stanza_delivered");
    rec_free(&r);
    rec_new(&r, sizeof big - 1, 0, false);
    feed_str(r.xs, HEADER);
    is_int(xstream_feed(r.xs, big, sizeof big), XSTREAM_POLICY_VIOLATION,
           "stanza_one_byte_over_max_stanza_refused");
    is_int(r.stanzas, 0, "oversized_stanza_not_delivered");
    rec_free(&r);

    rec_new(&r, SIZE_MAX, 0, false);
    is_int(feed_str(r.xs, HEADER "<a/>"), XSTREAM_OK, "huge_max_stanza_does_not_overflow");
    is_int(r.stanzas, 1, "huge_max_stanza_stanza_delivered");
    rec_free(&r);

    /* Nesting. */
    buf_t deep = BUF_INIT;
    buf_appends(&deep, HEADER);
    for (int i = 0; i < 4; i++)
        buf_appends(&deep, "<a>");
    for (int i = 0; i < 4; i++)
        buf_appends(&deep, "</a>");
    rec_new(&r, 0, 4, false);
    is_int(xstream_feed(r.xs, deep.data, deep.len), XSTREAM_OK,
           "depth_equal_to_max_depth_accepted");
    rec_free(&r);
    rec_new(&r, 0, 3, false);
    is_int(xstream_feed(r.xs, deep.data, deep.len), XSTREAM_POLICY_VIOLATION,
           "depth_over_max_depth_policy_violation");
    rec_free(&r);

    buf_reset(&deep);
    buf_appends(&deep, HEADER);
    rec_new(&r, 50u << 20, 0, false);
    st = xstream_feed(r.xs, deep.data, deep.len);
    for (int i = 0; i < 1000000 && st == XSTREAM_OK; i++)
        st = feed_str(r.xs, "<a>");
    is_int(st, XSTREAM_POLICY_VIOLATION, "million_nested_elements_stop_at_max_depth");
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    st = feed_str(r.xs, HEADER "<message>");
    for (int i = 0; i < 1000000 && st == XSTREAM_OK; i++)
        st = feed_str(r.xs, "<a/>");
    is_int(st, XSTREAM_POLICY_VIOLATION,
           "million_sibling_elements_in_one_stanza_stop_at_max_stanza");
    rec_free(&r);

    /* Attributes. */
    buf_reset(&deep);
    buf_appends(&deep, HEADER "<m");
    for (int i = 0; i < 256; i++)
        buf_printf(&deep, " a%d=''", i);
    buf_appends(&deep, "/>");
    rec_new(&r, 0, 0, false);
    is_int(xstream_feed(r.xs, deep.data, deep.len), XSTREAM_OK, "256_attributes_accepted");
    rec_free(&r);
    buf_reset(&deep);
    buf_appends(&deep, HEADER "<m");
    for (int i = 0; i < 5000; i++)
        buf_printf(&deep, " a%d=''", i);
    buf_appends(&deep, "/>");
    rec_new(&r, 1 << 20, 0, false);
    is_int(xstream_feed(r.xs, deep.data, deep.len), XSTREAM_POLICY_VIOLATION,
           "thousands_of_attributes_policy_violation");
    rec_free(&r);
    buf_free(&deep);
}

/* Heap bytes in use, where the C library can tell (0 elsewhere). */
static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

static void test_memory_stays_bounded(void)
{
    /* A million small stanzas: the arena is reused, never grows. */
    record_t r;
    rec_new(&r, 0, 0, false);
    feed_str(r.xs, HEADER);
    char chunk[64 * 1024];
    const char *one =
        "<message to='a@b' from='c@d' type='chat' id='x'><body>hello</body></message>";
    size_t n = strlen(one), per = sizeof chunk / n;
    for (size_t k = 0; k < per; k++)
        memcpy(chunk + k * n, one, n);
    xstream_status_t st = XSTREAM_OK;
    for (int i = 0; i < 1000000 / (int)per + 1 && st == XSTREAM_OK; i++)
        st = xstream_feed(r.xs, chunk, per * n);
    is_int(st, XSTREAM_OK, "million_stanzas_parse");
    ok(r.stanzas > 1000000, "million_stanzas_delivered (%u)", r.stanzas);
    ok(r.max_arena < 2048, "stanza_arena_stays_small (max %zu bytes)", r.max_arena);
    rec_free(&r);

    /* Fresh names in every stanza: the parser's dictionary is renewed, and
     * stanzas keep coming out right across renewals. 20000 long namespace
     * names would hold about 5 MB if the dictionary were never dropped. */
    rec_new(&r, 4096, 0, false);
    feed_str(r.xs, HEADER);
    bool is_right = true;
    size_t base = heap_in_use(), peak = base;
    char pad[201];
    memset(pad, 'p', 200);
    pad[200] = '\0';
    for (int i = 0; i < 20000 && is_right; i++) {
        char s[512], want[600];
        snprintf(s, sizeof s, "<n%d xmlns='urn:%s:%d' a%d='v'><c%d/></n%d>", i, pad, i, i, i, i);
        snprintf(want, sizeof want, "stanza{<n%d xmlns='urn:%s:%d' a%d='v'><c%d/></n%d>}", i, pad,
                 i, i, i, i);
        buf_reset(&r.log);
        if (feed_str(r.xs, s) != XSTREAM_OK || !strstr(r.log.data, want)) is_right = false;
        if (i % 500 == 0 && heap_in_use() > peak) peak = heap_in_use();
    }
    ok(is_right, "fresh_names_in_every_stanza_parse_across_dictionary_renewals");
    ok(peak - base < 1024 * 1024, "fresh_names_heap_growth_bounded (%zu bytes)", peak - base);
    rec_free(&r);
}

static void test_memory_released_after_big_stanza(void)
{
    /* One huge start tag makes libxml2's input buffer grow; the stream must
     * not keep that memory once the stanza is through. */
    record_t r;
    rec_new(&r, 256 * 1024, 0, false);
    feed_str(r.xs, HEADER "<a/>");
    buf_free(&r.log); /* the transcript would hold the stanza itself */
    size_t before = heap_in_use();
    static char big[100 * 1024];
    memset(big, 'x', sizeof big);
    memcpy(big, "<m a='", 6);
    memcpy(big + sizeof big - 3, "'/>", 3);
    xstream_status_t st = XSTREAM_OK;
    for (size_t at = 0; at < sizeof big && st == XSTREAM_OK; at += 4096)
        st = xstream_feed(r.xs, big + at, sizeof big - at < 4096 ? sizeof big - at : 4096);
    st = st == XSTREAM_OK ? feed_str(r.xs, "<b/>") : st;
    is_int(st, XSTREAM_OK, "huge_start_tag_within_limit_parses");
    is_int(r.stanzas, 3, "huge_start_tag_stanza_delivered");
    buf_free(&r.log);
    size_t after = heap_in_use();
    ok(after < before + 16 * 1024, "memory_released_after_huge_start_tag (%zd bytes kept)",
       (ssize_t)after - (ssize_t)before);
    rec_free(&r);
}

/* ---- reset, detach, free ---------------------------------------------- */

static void test_reset(void)
{
    record_t r;
    rec_new(&r, 0, 0, false);
    r.reset_on_stanza = 1;
    is_int(feed_str(r.xs, HEADER "<proceed/><?xml version='1.0'?>" HEADER "<message/>"), XSTREAM_OK,
           "reset_in_callback_new_header_in_same_chunk_parses");
    is_int(r.opens, 2, "reset_in_callback_second_header_reported");
    is_int(r.stanzas, 2, "reset_in_callback_stanza_of_new_stream_reported");
    ok(strstr(r.log.data, "raw{<message/>}") != NULL, "reset_in_callback_new_stream_raw_exact");
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    r.reset_on_stanza = 1;
    is_int(
        feed_str(r.xs, HEADER "<success/><stream:stream xmlns:stream='http://etherx.jabber.org/"),
        XSTREAM_OK, "reset_in_callback_with_partial_new_header");
    is_int(feed_str(r.xs, "streams'>"), XSTREAM_OK, "reset_in_callback_new_header_completes_later");
    is_int(r.opens, 2, "reset_in_callback_new_header_split_across_feeds_reported");
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    r.reset_on_stanza = 1;
    feed_str(r.xs, HEADER "<a>");
    is_int(feed_str(r.xs, "</a>" HEADER "<b/>"), XSTREAM_OK,
           "reset_in_callback_for_stanza_spanning_feeds");
    is_int(r.opens + r.stanzas, 4, "reset_after_spanning_stanza_new_stream_works");
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    r.reset_on_close = true;
    is_int(feed_str(r.xs, HEADER "<a/></stream:stream>" HEADER "<b/>"), XSTREAM_OK,
           "reset_in_close_callback_parses_next_stream");
    is_int(r.opens, 2, "reset_in_close_callback_second_header_reported");
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    feed_str(r.xs, HEADER "<a/><b");
    xstream_reset(r.xs);
    is_int(feed_str(r.xs, HEADER "<c/>"), XSTREAM_OK, "reset_between_feeds_drops_partial_stanza");
    is_int(r.opens, 2, "reset_between_feeds_new_header_reported");
    ok(strstr(r.log.data, "raw{<c/>}") != NULL, "reset_between_feeds_next_stanza_exact");
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    feed_str(r.xs, HEADER "<a></b>");
    xstream_reset(r.xs);
    is_int(feed_str(r.xs, HEADER "<c/>"), XSTREAM_OK, "reset_starts_clean_after_error");
    rec_free(&r);

    /* go-xmpp writes "<starttls/>\n": the newline reaches the new stream,
     * whose XML declaration must still be accepted. */
    rec_new(&r, 0, 0, false);
    r.reset_on_stanza = 1;
    is_int(feed_str(r.xs, HEADER "<starttls/>\n"), XSTREAM_OK, "reset_with_trailing_newline");
    is_int(feed_str(r.xs, " \r\n<?xml version='1.0'?>\n" HEADER "<c/>"), XSTREAM_OK,
           "whitespace_before_new_streams_xml_declaration_is_skipped");
    is_int(r.opens, 2, "new_stream_after_leading_whitespace_reported");
    ok(strstr(r.log.data, "raw{<c/>}") != NULL, "stanza_after_leading_whitespace_raw_exact");
    rec_free(&r);

    /* STARTTLS: what came in the clear behind <starttls/> in the same read
     * is dropped, never parsed as the start of the encrypted stream. */
    rec_new(&r, 0, 0, false);
    r.reset_on_stanza = 1;
    r.discard = true;
    is_int(feed_str(r.xs, HEADER "<starttls/><?xml version='1.0'?>" HEADER "<iq type='set'/>"),
           XSTREAM_OK, "reset_discard_in_callback_ok");
    is_int(r.opens, 1, "reset_discard_drops_a_header_in_the_same_feed");
    is_int(r.stanzas, 1, "reset_discard_drops_stanzas_in_the_same_feed");
    ok(strstr(r.log.data, "iq") == NULL, "reset_discard_injected_stanza_never_seen");
    is_int(feed_str(r.xs, "<?xml version='1.0'?>" HEADER "<c/>"), XSTREAM_OK,
           "reset_discard_next_feed_is_a_new_stream");
    is_int(r.opens, 2, "reset_discard_next_feed_header_reported");
    ok(strstr(r.log.data, "raw{<c/>}") != NULL, "reset_discard_next_feed_stanza_exact");
    rec_free(&r);

    rec_new(&r, 0, 0, false);
    r.reset_on_stanza = 1;
    r.discard = true;
    feed_str(r.xs, HEADER "<starttls/>garbage<<");
    is_int(feed_str(r.xs, HEADER "<c/>"), XSTREAM_OK, "reset_discard_drops_garbage_too");
    is_int(r.opens, 2, "reset_discard_after_garbage_new_stream_reported");
    rec_free(&r);
}

static void test_hibernate(void)
{
    record_t r;
    rec_new(&r, 0, 0, false);
    is_int(xstream_hibernate(r.xs), -1, "hibernate_refused_before_the_header");
    feed_str(r.xs, HEADER "<a/>");
    is_int(xstream_hibernate(r.xs), 0, "hibernate_between_stanzas");
    is_int(xstream_hibernate(r.xs), -1, "hibernate_twice_refused");
    is_int(feed_str(r.xs, "<message to='x' a='>'><body>b</body></message>"), XSTREAM_OK,
           "feed_after_hibernate_ok");
    is_int(r.opens, 1, "hibernate_wakes_without_a_second_open");
    ok(strstr(r.log.data, "raw{<message to='x' a='>'><body>b</body></message>}") != NULL,
       "stanza_after_hibernate_raw_exact");
    ok(strstr(r.log.data, "stanza{<message to='x' a='&gt;'><body>b</body></message>}") != NULL,
       "stanza_after_hibernate_tree_whole");
    feed_str(r.xs, "<p");
    is_int(xstream_hibernate(r.xs), -1, "hibernate_refused_inside_a_stanza");
    feed_str(r.xs, "/>");
    is_int(r.stanzas, 3, "stanza_split_across_a_refused_hibernate_parses");
    is_int(xstream_hibernate(r.xs), 0, "hibernate_again_after_that_stanza");
    is_int(feed_str(r.xs, "<x><y/></z>"), XSTREAM_NOT_WELL_FORMED,
           "errors_still_caught_after_hibernate");
    rec_free(&r);

    rec_new(&r, 0, 0, true);
    feed_str(r.xs, HEADER "<a/>");
    xstream_hibernate(r.xs);
    xstream_reset(r.xs);
    is_int(feed_str(r.xs, HEADER "<b/>"), XSTREAM_OK, "reset_while_hibernating_starts_a_stream");
    is_int(r.opens, 2, "reset_while_hibernating_new_header_reported");
    xstream_hibernate(r.xs);
    rec_free(&r); /* and free while hibernating: ASan checks nothing leaks */

    rec_new(&r, 0, 0, false);
    feed_str(r.xs, HEADER "<a/>");
    xstream_hibernate(r.xs);
    is_int(feed_str(r.xs, "</stream:stream>"), XSTREAM_OK, "close_after_hibernate");
    is_int(r.closes, 1, "close_after_hibernate_reported");
    rec_free(&r);
}

static void test_detach(void)
{
    record_t r;
    rec_new(&r, 0, 0, false);
    r.detach = true;
    feed_str(r.xs, HEADER "<message id='1'><body>one</body></message>");
    feed_str(r.xs, "<message id='2'><body>two</body></message><message id='3'>");
    feed_str(r.xs, "<body>three</body></message>");
    is_int(r.ndetached, 3, "detach_hands_out_each_stanza_arena");
    ok(r.detached[0] && r.detached[1] && r.detached[0] != r.detached[1] &&
           r.detached[1] != r.detached[2],
       "detached_arenas_are_distinct");
    buf_t b = BUF_INIT;
    for (unsigned i = 0; i < r.ndetached; i++)
        elem_serialize(r.kept[i], "jabber:client", &b);
    is_str(b.data,
           "<message id='1'><body>one</body></message><message id='2'><body>two</body></message>"
           "<message id='3'><body>three</body></message>",
           "detached_stanzas_stay_valid_after_later_stanzas");
    ok(r.kept[0]->arena == r.detached[0], "detached_stanza_lives_in_detached_arena");
    ok(xstream_detach(r.xs) == NULL, "detach_outside_callback_returns_null");
    buf_free(&b);
    rec_free(&r);
}

static void test_free_inside_callback(void)
{
    record_t r;
    rec_new(&r, 0, 0, false);
    r.free_on_stanza = true;
    xstream_t *xs = r.xs;
    r.xs = xs;
    xstream_feed(xs, HEADER "<a/><b/>", strlen(HEADER "<a/><b/>"));
    is_int(r.stanzas, 1, "free_inside_callback_stops_parsing");
    r.xs = NULL;
    rec_free(&r);
}

static void test_bytes_counted(void)
{
    record_t r;
    rec_new(&r, 0, 0, false);
    feed_str(r.xs, HEADER);
    feed_str(r.xs, "<a/>");
    is_int(xstream_bytes(r.xs), strlen(HEADER) + 4, "bytes_fed_counted");
    rec_free(&r);
}

int main(void)
{
    test_header_reported_with_default_namespace();
    test_stanza_tree_and_raw();
    test_raw_bytes_tricky_cases();
    test_entities_and_references();
    test_several_stanzas_and_close();
    test_prefixes_are_told();
    test_shallow_mode();
    test_skip_content();
    test_split_at_every_byte();
    test_long_multibyte_cdata_split_anywhere();
    test_many_stanzas_across_chunks();
    test_restricted_xml();
    test_not_well_formed();
    test_policy_limits();
    test_memory_stays_bounded();
    test_memory_released_after_big_stanza();
    test_reset();
    test_hibernate();
    test_detach();
    test_free_inside_callback();
    test_bytes_counted();
    return done_testing();
}
