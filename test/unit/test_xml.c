/* test_xml.c — the element tree and serializer (xml.h), fragments, the arena
 * and buffers underneath them, and the error writers of xmpp.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "xmpp.h"

static char *serialized(const elem_t *e, const char *parent_ns)
{
    static buf_t b = BUF_INIT;
    buf_reset(&b);
    elem_serialize(e, parent_ns, &b);
    return b.data;
}

static char *serialized_stanza(const elem_t *e, const char *content_ns)
{
    static buf_t b = BUF_INIT;
    buf_reset(&b);
    elem_serialize_stanza(e, content_ns, &b);
    return b.data;
}

static char *escaped(const char *s, size_t len, bool is_attr)
{
    static buf_t b = BUF_INIT;
    buf_reset(&b);
    xml_escape(&b, s, len, is_attr);
    return b.data;
}

/* ---- arena and buffers ------------------------------------------------- */

static void test_arena(void)
{
    arena_t *a = arena_new(0);
    is_int(arena_used(a), 0, "arena_starts_empty");
    char *p = arena_alloc(a, 1), *q = arena_alloc(a, 24);
    ok(((uintptr_t)p % _Alignof(max_align_t)) == 0 && ((uintptr_t)q % _Alignof(max_align_t)) == 0,
       "arena_allocations_aligned");
    ok(arena_used(a) >= 25, "arena_used_counts_allocations");
    char *big = arena_alloc(a, 1 << 20);
    memset(big, 1, 1 << 20);
    char *after = arena_alloc(a, 8);
    ok(after != NULL && arena_used(a) >= (1u << 20) + 33, "arena_big_allocation_own_chunk");
    size_t total = 0;
    for (int i = 0; i < 10000; i++) {
        char *s = arena_alloc(a, 100);
        memset(s, 2, 100);
        total += 100;
    }
    ok(arena_used(a) >= total, "arena_grows_across_chunks");
    is_str(arena_strndup(a, "hello world", 5), "hello", "arena_strndup_copies_len_bytes");
    is_str(arena_strdup(a, "abc"), "abc", "arena_strdup_copies");
    arena_reset(a);
    is_int(arena_used(a), 0, "arena_reset_forgets_allocations");
    char *again = arena_alloc(a, 16);
    ok(again == p, "arena_reset_reuses_first_chunk");
    arena_free(a);

    arena_t *small = arena_new(64);
    for (int i = 0; i < 1000; i++)
        arena_alloc(small, 48);
    ok(arena_used(small) >= 48000, "arena_with_small_first_chunk_grows");
    arena_free(small);
}

static void test_buf(void)
{
    buf_t b = BUF_INIT;
    buf_init(&b);
    ok(b.data && b.data[0] == '\0' && b.len == 0, "buf_init_is_empty_string");
    buf_append(&b, "abc", 3);
    buf_appends(&b, "def");
    is_str(b.data, "abcdef", "buf_append_and_appends");
    buf_printf(&b, "-%d-%s", 42, "x");
    is_str(b.data, "abcdef-42-x", "buf_printf_appends");
    char long_s[1000];
    memset(long_s, 'q', sizeof long_s - 1);
    long_s[sizeof long_s - 1] = '\0';
    buf_printf(&b, "%s", long_s);
    is_int(b.len, 11 + 999, "buf_printf_longer_than_scratch");
    ok(b.data[b.len] == '\0', "buf_nul_terminated_after_printf");
    buf_consume(&b, 6);
    ok(strncmp(b.data, "-42-x", 5) == 0 && b.len == 5 + 999, "buf_consume_drops_prefix");
    buf_reset(&b);
    ok(b.len == 0 && b.data[0] == '\0' && b.cap > 0, "buf_reset_keeps_memory");
    buf_appends(&b, "take me");
    char *t = buf_take(&b);
    is_str(t, "take me", "buf_take_hands_out_bytes");
    ok(b.len == 0 && b.data[0] == '\0', "buf_take_leaves_empty");
    free(t);
    t = buf_take(&b);
    is_str(t, "", "buf_take_of_empty_is_empty_string");
    free(t);
    buf_reserve(&b, 10000);
    ok(b.cap >= 10001 && b.len == 0, "buf_reserve_grows_capacity");
    buf_free(&b);

    buf_appends(&b, "shared");
    rbuf_t *r = rbuf_from_buf(&b);
    ok(r->len == 6 && memcmp(r->data, "shared", 6) == 0 && r->data[6] == '\0',
       "rbuf_from_buf_copies");
    is_int(b.len, 0, "rbuf_from_buf_resets_buf");
    ok(rbuf_ref(r) == r && r->refs == 2, "rbuf_ref_counts");
    rbuf_unref(r);
    is_int(r->refs, 1, "rbuf_unref_counts_down");
    rbuf_unref(r);
    rbuf_t *z = rbuf_new("a\0b", 3);
    ok(z->len == 3 && z->data[1] == '\0' && z->data[2] == 'b', "rbuf_new_keeps_embedded_nul");
    rbuf_unref(z);
    buf_free(&b);
}

/* ---- tree -------------------------------------------------------------- */

static void test_tree_building(void)
{
    arena_t *a = arena_new(0);
    elem_t *m = elem_new(a, NS_CLIENT, "message");
    is_str(m->ns, NS_CLIENT, "elem_new_sets_namespace");
    ok(elem_new(a, NULL, "x")->ns[0] == '\0', "elem_new_null_ns_is_empty");
    elem_t *body = elem_add(m, NULL, "body");
    ok(body->ns == m->ns && body->parent == m, "elem_add_null_ns_inherits_parent");
    elem_add_text(body, "hello ", 6);
    elem_add_text(body, "world", 5);
    is_str(elem_text(body), "hello world", "elem_text_concatenates_text_children");
    is_str(elem_text(m), "", "elem_text_empty_without_text");
    elem_t *x = elem_add(m, "urn:x", "x");
    elem_t *y = elem_add(m, "urn:y", "y");
    elem_t *x2 = elem_add(m, "urn:x", "x");
    ok(elem_first(m) == body, "elem_first_is_first_element");
    ok(elem_child(m, "urn:x", "x") == x, "elem_child_by_ns_and_name");
    ok(elem_child(m, "urn:y", NULL) == y, "elem_child_by_ns_any_name");
    ok(elem_child(m, NULL, "y") == y, "elem_child_by_name_any_ns");
    ok(elem_child(m, "urn:z", NULL) == NULL, "elem_child_missing_is_null");
    ok(elem_next(x, "urn:x", "x") == x2, "elem_next_skips_non_matching");
    ok(elem_next(x2, NULL, NULL) == NULL, "elem_next_at_end_is_null");
    ok(elem_is(x, "urn:x", "x") && !elem_is(x, "urn:y", "x") && !elem_is(NULL, NULL, NULL),
       "elem_is_matches");

    elem_set_attr(m, "to", "a@b");
    elem_set_attr(m, "id", "1");
    elem_set_attr(m, "to", "c@d");
    is_str(elem_attr(m, "to"), "c@d", "set_attr_replaces_value");
    is_str(m->attrs->name, "to", "set_attr_replace_keeps_order");
    elem_set_attr_ns(m, NS_XML, "lang", "en");
    is_str(elem_attr_ns(m, NS_XML, "lang"), "en", "attr_ns_lookup");
    ok(elem_attr(m, "lang") == NULL, "unqualified_lookup_ignores_namespaced_attr");
    elem_set_attr(m, "id", NULL);
    ok(elem_attr(m, "id") == NULL, "set_attr_null_removes");
    elem_set_attr(m, "absent", NULL);
    is_str(serialized(m, NS_CLIENT),
           "<message to='c@d' xml:lang='en'><body>hello world</body><x xmlns='urn:x'/>"
           "<y xmlns='urn:y'/><x xmlns='urn:x'/></message>",
           "tree_serializes_as_built");

    elem_unlink(y);
    ok(y->parent == NULL && elem_next(x, NULL, NULL) == x2, "unlink_middle_child");
    elem_unlink(x2);
    ok(m->last == x, "unlink_last_child_updates_last");
    elem_unlink(body);
    ok(elem_first(m) == x, "unlink_first_child");

    arena_t *b = arena_new(0);
    elem_t *copy = elem_copy(b, m);
    arena_free(a);
    is_str(serialized(copy, NS_CLIENT),
           "<message to='c@d' xml:lang='en'><x xmlns='urn:x'/></message>",
           "elem_copy_survives_source_arena");
    arena_t *c = arena_new(0);
    elem_t *holder = elem_new(c, "urn:h", "holder");
    elem_t *added = elem_add_copy(holder, copy);
    ok(added->arena == c && added->parent == holder, "elem_add_copy_into_parent_arena");
    arena_free(b);
    is_str(serialized(holder, NULL),
           "<holder xmlns='urn:h'><message xmlns='jabber:client' to='c@d' xml:lang='en'>"
           "<x xmlns='urn:x'/></message></holder>",
           "elem_add_copy_deep");
    arena_free(c);
}

/* ---- serializer -------------------------------------------------------- */

static void test_escaping(void)
{
    is_str(escaped("a&b<c>d\"e'f", 11, false), "a&amp;b&lt;c&gt;d\"e'f", "text_escapes_amp_lt_gt");
    is_str(escaped("a&b<c>d\"e'f", 11, true), "a&amp;b&lt;c&gt;d&quot;e&apos;f",
           "attribute_escapes_quotes_too");
    is_str(escaped("a\tb\nc\rd", 7, true), "a&#9;b&#10;c&#13;d",
           "attribute_escapes_tab_newline_cr");
    is_str(escaped("a\tb\nc\rd", 7, false), "a\tb\nc&#13;d", "text_escapes_only_cr");
    is_str(escaped("a\x01\x1f"
                   "b",
                   4, false),
           "ab", "control_characters_dropped");
    is_str(escaped("a\0b", 3, false), "ab", "nul_dropped_length_respected");
    is_str(escaped("\xc3\xa9\xe2\x82\xac", 5, true), "\xc3\xa9\xe2\x82\xac", "utf8_passes_through");
    is_str(escaped("", 0, false), "", "empty_escapes_to_empty");
}

static void test_serializer_namespaces(void)
{
    arena_t *a = arena_new(0);
    elem_t *iq = elem_new(a, NS_CLIENT, "iq");
    elem_t *q = elem_add(iq, "jabber:iq:roster", "query");
    elem_t *item = elem_add(q, NULL, "item");
    elem_add(item, NS_CLIENT, "back");
    is_str(serialized(iq, NS_CLIENT),
           "<iq><query xmlns='jabber:iq:roster'><item><back "
           "xmlns='jabber:client'/></item></query></iq>",
           "xmlns_only_where_namespace_changes");
    is_str(serialized(iq, NULL),
           "<iq xmlns='jabber:client'><query xmlns='jabber:iq:roster'><item>"
           "<back xmlns='jabber:client'/></item></query></iq>",
           "xmlns_on_top_when_parent_ns_differs");
    elem_t *bare = elem_new(a, "", "bare");
    is_str(serialized(bare, NULL), "<bare/>", "empty_ns_under_null_parent_has_no_xmlns");
    is_str(serialized(bare, NS_CLIENT), "<bare xmlns=''/>",
           "empty_ns_under_other_default_undeclares");

    elem_t *e = elem_new(a, "urn:e", "e");
    elem_set_attr_ns(e, "urn:p", "a", "1");
    elem_set_attr_ns(e, "urn:q", "b", "2");
    elem_set_attr_ns(e, "urn:p", "c", "3");
    elem_set_attr(e, "plain", "x'y");
    elem_set_attr_ns(e, NS_XML, "lang", "de");
    is_str(serialized(e, "urn:e"),
           "<e xmlns:ns1='urn:p' ns1:a='1' xmlns:ns2='urn:q' ns2:b='2' ns1:c='3' plain='x&apos;y' "
           "xml:lang='de'/>",
           "namespaced_attributes_get_declared_prefixes");
    elem_set_attr(e, "xmlns", "urn:wrong");
    ok(strstr(serialized(e, "urn:e"), "urn:wrong") == NULL, "stray_xmlns_attribute_not_written");

    elem_t *features = elem_new(a, NS_STREAMS, "features");
    elem_add(features, NS_TLS, "starttls");
    elem_add(features, NS_STREAMS, "inner");
    is_str(serialized(features, NS_CLIENT),
           "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
           "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:inner/></stream:features>",
           "streams_namespace_written_with_stream_prefix");

    elem_t *t = elem_new(a, "", "t");
    elem_add_text(t, "1 < 2 & 3 > 2", 13);
    is_str(serialized(t, NULL), "<t>1 &lt; 2 &amp; 3 &gt; 2</t>", "text_escaped_in_output");
    arena_free(a);
}

static void test_serialize_stanza(void)
{
    arena_t *a = arena_new(0);
    elem_t *m = elem_new(a, NS_SERVER, "message");
    elem_set_attr(m, "to", "a@b");
    elem_add_text(elem_add(m, NULL, "body"), "hi", 2);
    elem_t *fwd = elem_add(m, "urn:xmpp:forward:0", "forwarded");
    elem_t *inner = elem_add(fwd, NS_CLIENT, "message");
    elem_add(inner, NULL, "body");
    elem_add(elem_add(m, "urn:x", "x"), NS_SERVER, "deep");

    is_str(serialized_stanza(m, NULL),
           "<message to='a@b'><body>hi</body><forwarded xmlns='urn:xmpp:forward:0'>"
           "<message xmlns='jabber:client'><body/></message></forwarded>"
           "<x xmlns='urn:x'><deep xmlns='jabber:server'/></x></message>",
           "stanza_takes_stream_default_when_content_ns_null");
    is_str(serialized_stanza(m, NS_CLIENT),
           "<message xmlns='jabber:client' to='a@b'><body>hi</body>"
           "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body/></message>"
           "</forwarded>"
           "<x xmlns='urn:x'><deep xmlns='jabber:server'/></x></message>",
           "stanza_rewritten_into_content_ns_with_children_following");

    elem_t *route = elem_new(a, NS_HEARTH_COMPONENT, "route");
    is_str(serialized_stanza(route, NULL), "<route xmlns='urn:hearth:component:1'/>",
           "non_stanza_namespace_declares_itself");
    elem_t *none = elem_new(a, "", "none");
    is_str(serialized_stanza(none, NULL), "<none xmlns=''/>", "no_namespace_element_undeclares");
    elem_t *p = elem_new(a, NS_COMPONENT_ACCEPT, "presence");
    is_str(serialized_stanza(p, NS_SERVER), "<presence xmlns='jabber:server'/>",
           "component_accept_stanza_rewritten");
    arena_free(a);
}

/* ---- fragments and round trips ----------------------------------------- */

static void test_fragments(void)
{
    arena_t *a = arena_new(0);
    elem_t *e =
        xml_parse_fragment(a, " <message to='x'><body>hi</body></message>\n", 43, NS_CLIENT);
    ok(e != NULL, "fragment_parses");
    if (e) {
        is_str(e->ns, NS_CLIENT, "fragment_takes_default_ns");
        is_str(elem_attr(e, "to"), "x", "fragment_has_attributes");
        is_str(elem_text(elem_child(e, NULL, "body")), "hi", "fragment_has_children");
        ok(e->arena == a, "fragment_lives_in_given_arena");
    }
    e = xml_parse_fragment(a, "<a/>", 4, NULL);
    ok(e && e->ns[0] == '\0', "fragment_without_default_ns_has_empty_ns");
    ok(xml_parse_fragment(a, "<a/><b/>", 8, NULL) == NULL, "two_elements_not_a_fragment");
    ok(xml_parse_fragment(a, "x<a/>", 5, NULL) == NULL, "text_before_element_not_a_fragment");
    ok(xml_parse_fragment(a, "<a/>x", 5, NULL) == NULL, "text_after_element_not_a_fragment");
    ok(xml_parse_fragment(a, "<a>", 3, NULL) == NULL, "unclosed_element_not_a_fragment");
    ok(xml_parse_fragment(a, "", 0, NULL) == NULL, "empty_input_not_a_fragment");
    ok(xml_parse_fragment(a, "<a><!-- c --></a>", 17, NULL) == NULL, "comment_refused_in_fragment");
    ok(xml_parse_fragment(a, "<a>&ent;</a>", 12, NULL) == NULL, "entity_refused_in_fragment");
    ok(xml_parse_fragment(a, "<?xml version='1.0'?><a/>", 25, NULL) == NULL,
       "xml_declaration_refused_in_fragment");
    ok(xml_parse_fragment(a, "<a/>\0<b/>", 9, NULL) == NULL, "nul_byte_refused_in_fragment");
    ok(xml_parse_fragment(a, "<p:x/>", 6, NULL) == NULL, "undeclared_prefix_refused_in_fragment");
    e = xml_parse_fragment(a, "<stream:features/>", 18, NS_CLIENT);
    ok(e && strcmp(e->ns, NS_STREAMS) == 0 && strcmp(e->name, "features") == 0,
       "stream_prefix_bound_in_fragment");
    e = xml_parse_fragment(a, "<a xmlns='urn:own'/>", 20, NS_CLIENT);
    ok(e && strcmp(e->ns, "urn:own") == 0, "fragment_own_xmlns_wins");
    arena_free(a);
}

/* One reparser for many fragments: each bad one is refused as by
 * xml_parse_fragment, and the good one after it still parses whole. */
static void test_reparser(void)
{
    static const char *const bad[] = {
        "<a/><b/>", "x<a/>", "<a/>x", "<a>", "", "<a><!-- c --></a>", "<a>&ent;</a>",
        "<?xml version='1.0'?><a/>", "<p:x/>", "</fragment>", "<a></b>", "<a x='1' x='2'/>",
    };
    arena_t *a = arena_new(0);
    xml_reparser_t *r = xml_reparser_new(NS_CLIENT, 1024);
    bool is_ok = true;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            is_ok &= xml_reparse(r, a, bad[i], strlen(bad[i])) == NULL;
            char good[64];
            int n = snprintf(good, sizeof good, " <message n='%zu'><body>b</body></message>\n", i);
            elem_t *e = xml_reparse(r, a, good, (size_t)n);
            char want[8];
            snprintf(want, sizeof want, "%zu", i);
            is_ok &= e && strcmp(e->ns, NS_CLIENT) == 0 && strcmp(elem_attr(e, "n"), want) == 0 &&
                     strcmp(elem_text(elem_child(e, NULL, "body")), "b") == 0 && e->arena == a;
        }
    }
    ok(is_ok, "reparser_refuses_each_bad_fragment_and_parses_the_next_good_one");
    char big[2048];
    memset(big, 'x', sizeof big);
    memcpy(big, "<a>", 3);
    memcpy(big + sizeof big - 4, "</a>", 4);
    ok(xml_reparse(r, a, big, sizeof big) == NULL, "reparser_refuses_a_fragment_over_its_max");
    ok(xml_reparse(r, a, "<a/>", 4) != NULL, "reparser_parses_after_one_over_its_max");
    xml_reparser_free(r);
    arena_free(a);
}

static void test_round_trips(void)
{
    static const char *const docs[] = {
        "<message to='a@b' type='chat'><body>x &amp; y &lt; z &gt; w \"q\" 'p'</body></message>",
        "<iq type='get' id='1'><query xmlns='jabber:iq:roster'><item jid='c@d' name='C&apos;D'/>"
        "</query></iq>",
        "<presence><show>away</show><x xmlns='urn:x' xmlns:p='urn:p' p:a='1' xml:lang='en'>"
        "<y xmlns='jabber:client'/></x></presence>",
        "<m a='tab&#9;nl&#10;cr&#13;'>line1&#13;\nline2 \xc3\xa9\xf0\x9f\x98\x80</m>",
        "<m><![CDATA[<cdata> & stuff]]></m>",
        /* the XML namespace can't be declared: its elements keep xml: */
        "<iq type='get' id='2'><xml:query a='1'><b/></xml:query></iq>",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        arena_t *a = arena_new(0);
        elem_t *first = xml_parse_fragment(a, docs[i], strlen(docs[i]), NS_CLIENT);
        char *once = first ? strdup(serialized(first, NS_CLIENT)) : NULL;
        elem_t *second = once ? xml_parse_fragment(a, once, strlen(once), NS_CLIENT) : NULL;
        const char *twice = second ? serialized(second, NS_CLIENT) : NULL;
        ok(once && twice && strcmp(once, twice) == 0, "round_trip_%zu_parse_serialize_is_stable",
           i);
        free(once);
        arena_free(a);
    }
    arena_t *a = arena_new(0);
    const char *xml_ns = "<iq><xml:query/></iq>";
    elem_t *q = xml_parse_fragment(a, xml_ns, strlen(xml_ns), NS_CLIENT);
    ok(q && strcmp(serialized(q, NS_CLIENT), "<iq><xml:query/></iq>") == 0,
       "element_in_the_xml_namespace_keeps_its_prefix (%s)", q ? serialized(q, NS_CLIENT) : "");
    const char *doc = "<m a='tab&#9;nl&#10;'>cr&#13;</m>";
    elem_t *e = xml_parse_fragment(a, doc, strlen(doc), NULL);
    ok(e && strcmp(elem_attr(e, "a"), "tab\tnl\n") == 0 && strcmp(elem_text(e), "cr\r") == 0,
       "char_refs_for_whitespace_survive_round_trip");
    arena_free(a);
}

/* ---- xmpp.h ------------------------------------------------------------ */

static void test_stream_errors(void)
{
    buf_t b = BUF_INIT;
    xmpp_stream_error(&b, "policy-violation", NULL);
    is_str(b.data,
           "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
           "</stream:error>",
           "stream_error_without_text");
    buf_reset(&b);
    xmpp_stream_error(&b, "not-well-formed", "bad <xml> & more");
    is_str(b.data,
           "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
           "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bad &lt;xml&gt; &amp; more</text>"
           "</stream:error>",
           "stream_error_with_escaped_text");
    buf_reset(&b);
    xmpp_stream_error(&b, "x'/><evil", NULL);
    ok(strstr(b.data, "<undefined-condition ") != NULL && strstr(b.data, "evil") == NULL,
       "stream_error_bad_condition_becomes_undefined");
    buf_free(&b);
}

static void test_error_types(void)
{
    static const char *const table[][2] = {
        {"bad-request", "modify"},
        {"conflict", "cancel"},
        {"feature-not-implemented", "cancel"},
        {"forbidden", "auth"},
        {"gone", "cancel"},
        {"internal-server-error", "cancel"},
        {"item-not-found", "cancel"},
        {"jid-malformed", "modify"},
        {"not-acceptable", "modify"},
        {"not-allowed", "cancel"},
        {"not-authorized", "auth"},
        {"policy-violation", "modify"},
        {"recipient-unavailable", "wait"},
        {"redirect", "modify"},
        {"registration-required", "auth"},
        {"remote-server-not-found", "cancel"},
        {"remote-server-timeout", "wait"},
        {"resource-constraint", "wait"},
        {"service-unavailable", "cancel"},
        {"subscription-required", "auth"},
        {"undefined-condition", "cancel"},
        {"unexpected-request", "wait"},
    };
    size_t wrong = 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(xmpp_error_type(table[i][0]), table[i][1]) != 0) wrong++;
    is_int(wrong, 0, "error_types_follow_rfc6120_8_3_3");
    is_str(xmpp_error_type("no-such-condition"), "cancel", "unknown_condition_type_is_cancel");
    is_str(xmpp_error_type(NULL), "cancel", "null_condition_type_is_cancel");
}

static void test_stanza_errors(void)
{
    arena_t *a = arena_new(0);
    const char *doc = "<iq to='srv' from='u@h/r' type='get' id='7'><query xmlns='urn:q'/></iq>";
    elem_t *iq = xml_parse_fragment(a, doc, strlen(doc), NS_CLIENT);
    is_int(xmpp_stanza_error(iq, "service-unavailable", NULL), 0, "stanza_error_succeeds");
    is_str(elem_attr(iq, "to"), "u@h/r", "stanza_error_to_is_old_from");
    is_str(elem_attr(iq, "from"), "srv", "stanza_error_from_is_old_to");
    is_str(elem_attr(iq, "type"), "error", "stanza_error_type_is_error");
    is_str(elem_attr(iq, "id"), "7", "stanza_error_keeps_id");
    elem_t *err = elem_child(iq, NS_CLIENT, "error");
    ok(err != NULL, "stanza_error_has_error_child_in_stanza_ns");
    is_str(err ? elem_attr(err, "type") : NULL, "cancel", "stanza_error_type_from_table");
    ok(err && elem_child(err, NS_STANZA_ERRORS, "service-unavailable"),
       "stanza_error_condition_in_stanzas_ns");
    is_str(serialized_stanza(iq, NULL),
           "<iq to='u@h/r' from='srv' type='error' id='7'><query xmlns='urn:q'/>"
           "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
           "</error></iq>",
           "stanza_error_serialized_shape");
    is_int(xmpp_stanza_error(iq, "bad-request", NULL), -1, "error_on_error_refused");
    ok(elem_next(err, NULL, "error") == NULL, "error_on_error_leaves_stanza_alone");

    elem_t *m = elem_new(a, NS_CLIENT, "message");
    elem_set_attr(m, "to", "x@y");
    xmpp_stanza_error(m, "not-authorized", "go <away>");
    ok(elem_attr(m, "to") == NULL && strcmp(elem_attr(m, "from"), "x@y") == 0,
       "stanza_error_without_from_drops_to");
    is_str(serialized_stanza(m, NULL),
           "<message from='x@y' type='error'><error type='auth'>"
           "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
           "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>go &lt;away&gt;</text></error>"
           "</message>",
           "stanza_error_with_text");
    arena_free(a);
}

int main(void)
{
    test_arena();
    test_buf();
    test_tree_building();
    test_escaping();
    test_serializer_namespaces();
    test_serialize_stanza();
    test_fragments();
    test_reparser();
    test_round_trips();
    test_stream_errors();
    test_error_types();
    test_stanza_errors();
    return done_testing();
}
