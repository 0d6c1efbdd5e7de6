/* link.c — one component's connection to the router, from accept to close.
 *
 * The stream header decides what the peer is: urn:hearth:component:1 is a
 * Hearth daemon, which authenticates with SASL SCRAM-SHA-256 against the
 * component accounts (after STARTTLS when it is not on this machine), then
 * binds names and sends routes; jabber:component:accept is a third-party
 * XEP-0114 component, which proves the shared secret with a handshake and
 * thereby binds the domain it named. The account (account.c) gives the link
 * its role, which decides the names it may bind and marks what it sends.
 * Packets themselves go to route.c.
 *
 * Native streams are parsed shallow (a route's payload is never built into
 * a tree); the few control elements (auth, handshake, stanzas of external
 * components) are parsed again in full from their raw bytes. What libxml2
 * checks of a route's payload depends on who sent it (link_set_role): a
 * component's is parsed as it streams in, so a malformed one ends that
 * component's link and never reaches another daemon; the payloads of
 * Hearth's own daemons (c2s, sm, s2s, resolver), which each serializes
 * from a tree its own parser built, and the stanzas of XEP-0114
 * components, parsed again anyway, are only scanned (sizes, depth,
 * forbidden markup: xstream_skip_content), and their plain start tags read
 * without libxml2, which spares the router a libxml2 pass over every byte
 * it relays. */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

static void on_open(void *ud, elem_t *header, const char *default_ns);
static void on_stanza(void *ud, elem_t *stanza, const xstream_raw_t *raw);
static void on_stream_close(void *ud);
static void on_read(conn_t *c, const char *data, size_t len);
static void on_drain(conn_t *c);
static void on_conn_close(conn_t *c, const char *reason);

static const xstream_cb_t stream_cb = {on_open, on_stanza, on_stream_close};
static const conn_cb_t conn_cb = {
    .on_read = on_read,
    .on_drain = on_drain,
    .on_close = on_conn_close,
};

static void write_header(link_t *l, const char *ns, const char *from)
{
    buf_t *b = &l->router->scratch;
    buf_reset(b);
    buf_appends(b, "<?xml version='1.0'?><stream:stream xmlns='");
    buf_appends(b, ns);
    buf_appends(b, "' xmlns:stream='" NS_STREAMS "' from='");
    xml_escape(b, from, strlen(from), true);
    buf_printf(b, "' id='%s' version='1.0'>", l->stream_id);
    conn_write(l->conn, b->data, b->len);
    l->header_sent = true;
}

void link_fail(link_t *l, const char *condition, const char *text)
{
    if (l->state == LINK_CLOSING) return;
    log_notice("%s (%s): stream error %s%s%s", l->id, conn_peer(l->conn), condition,
               text ? ": " : "", text ? text : "");
    if (!l->header_sent) write_header(l, NS_HEARTH_COMPONENT, "router");
    buf_t *b = &l->router->scratch;
    buf_reset(b);
    xmpp_stream_error(b, condition, text);
    buf_appends(b, "</stream:stream>");
    conn_write(l->conn, b->data, b->len);
    l->state = LINK_CLOSING;
    conn_close(l->conn);
}

void link_accept(router_t *r, uv_stream_t *server)
{
    link_t *l = calloc(1, sizeof(*l));
    if (!l) log_fatal("out of memory");
    l->router = r;
    l->conn = conn_accept(server, &conn_cb, l);
    if (!l->conn) {
        free(l);
        return;
    }
    xstream_opts_t opts = {.max_stanza = r->max_stanza, .shallow = true};
    l->xs = xstream_new(&opts, &stream_cb, l);
    random_hex(l->stream_id, 16);
    snprintf(l->id, sizeof(l->id), "%s", conn_peer(l->conn));
    conn_set_write_limit(l->conn, r->write_limit);
    l->next = r->links;
    if (r->links) r->links->prev = l;
    r->links = l;
    r->nlinks++;
    if (r->nlinks > r->max_links) {
        link_fail(l, "policy-violation", "too many components");
        return;
    }
    log_debug("connection from %s", conn_peer(l->conn));
}

void link_close_all(router_t *r)
{
    for (link_t *l = r->links; l; l = l->next) {
        if (l->state == LINK_CLOSING) continue;
        link_fail(l, "system-shutdown", NULL);
    }
}

/* A peer-chosen instance name is kept only if it is short and printable. */
static bool is_good_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(((link_t *)0)->id)) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '\'' || s[i] == '"' || s[i] == '<' ||
            s[i] == '&' || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* Components on other hosts, or all when configured so, use TLS. */
static bool needs_tls(const link_t *l)
{
    return (l->router->is_tls_required || !conn_is_local(l->conn)) && !conn_has_tls(l->conn);
}

static const external_t *find_external(const router_t *r, const char *name)
{
    for (int i = 0; i < r->nexternals; i++)
        if (strcmp(r->externals[i].name, name) == 0) return &r->externals[i];
    return NULL;
}

static void on_open(void *ud, elem_t *header, const char *default_ns)
{
    link_t *l = ud;
    router_t *r = l->router;
    if (!elem_is(header, NS_STREAMS, "stream")) {
        link_fail(l, "invalid-namespace", NULL);
        return;
    }
    if (strcmp(default_ns, NS_COMPONENT_ACCEPT) == 0) {
        const char *to = elem_attr(header, "to");
        write_header(l, NS_COMPONENT_ACCEPT, to ? to : "");
        if (!to || !find_external(r, to)) {
            link_fail(l, "host-unknown", NULL);
            return;
        }
        l->is_external = true;
        snprintf(l->id, sizeof(l->id), "%s", to);
        l->state = LINK_AUTH;
        return;
    }
    write_header(l, NS_HEARTH_COMPONENT, "router");
    if (strcmp(default_ns, NS_HEARTH_COMPONENT) != 0) {
        link_fail(l, "invalid-namespace", NULL);
        return;
    }
    const char *from = elem_attr(header, "from");
    if (from && is_good_id(from)) snprintf(l->id, sizeof(l->id), "%s", from);
    l->shard_key = names_hash(l->id, strlen(l->id));

    buf_t *b = &r->scratch;
    buf_reset(b);
    if (needs_tls(l)) {
        if (!r->tls) {
            link_fail(l, "policy-violation", "components on other hosts need router.tls");
            return;
        }
        buf_appends(b, "<stream:features><starttls xmlns='" NS_TLS
                       "'><required/></starttls></stream:features>");
    } else {
        buf_appends(b, "<stream:features><mechanisms xmlns='" NS_SASL
                       "'><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>");
    }
    conn_write(l->conn, b->data, b->len);
    l->state = LINK_AUTH;
}

static int lookup_account(void *ud, const char *authcid, const char *hash, scram_keys_t *out)
{
    const account_t *a = accounts_find(ud, authcid);
    if (strcmp(hash, "SHA-256") != 0 || !a) return -1;
    *out = a->keys;
    return 0;
}

bool link_check_queue(link_t *l)
{
    if (l->state == LINK_CLOSING || conn_queued(l->conn) <= l->router->max_queue) return true;
    log_warn("%s (%s): %zu bytes wait for it, more than router.max-queue: disconnected", l->id,
             conn_peer(l->conn), conn_queued(l->conn));
    l->state = LINK_CLOSING;
    conn_abort(l->conn);
    return false;
}

void link_set_role(link_t *l, comp_role_t role)
{
    l->role = role;
    l->mark_len = header_mark(l->mark, sizeof l->mark, role);
    bool is_own = role == ROLE_C2S || role == ROLE_SM || role == ROLE_S2S || role == ROLE_RESOLVER;
    xstream_skip_content(l->xs, is_own || l->is_external);
}

static void sasl_reply(link_t *l, const char *what, const char *data)
{
    buf_t *b = &l->router->scratch;
    buf_reset(b);
    buf_printf(b, "<%s xmlns='" NS_SASL "'>%s</%s>", what, data ? data : "", what);
    conn_write(l->conn, b->data, b->len);
}

/* One SASL message from the peer: auth (starts), response, or abort. */
static void handle_sasl(link_t *l, const elem_t *e)
{
    router_t *r = l->router;
    if (needs_tls(l)) {
        link_fail(l, "policy-violation", "STARTTLS first");
        return;
    }
    if (strcmp(e->name, "auth") == 0) {
        const char *mech = elem_attr(e, "mechanism");
        if (l->sasl || !mech || strcmp(mech, "SCRAM-SHA-256") != 0) {
            sasl_reply(l, "failure", "<invalid-mechanism/>");
            link_fail(l, "not-authorized", NULL);
            return;
        }
        l->sasl = sasl_server_new(mech, lookup_account, r, NULL, NULL, 0);
        if (!l->sasl) log_fatal("SASL %s unavailable", mech);
    } else if (strcmp(e->name, "response") != 0 || !l->sasl) {
        sasl_reply(l, "failure", "<aborted/>");
        link_fail(l, "not-authorized", NULL);
        return;
    }
    char *out = NULL;
    sasl_result_t res = sasl_step(l->sasl, elem_text(e), &out);
    if (res == SASL_CONTINUE) {
        sasl_reply(l, "challenge", out);
    } else if (res == SASL_DONE) {
        sasl_reply(l, "success", out);
        l->account = accounts_find(r, sasl_authcid(l->sasl));
        if (l->account->role != ROLE_NONE) link_set_role(l, l->account->role);
        log_info("%s (%s) authenticated as %s (%s)", l->id, conn_peer(l->conn), l->account->name,
                 l->account->is_shared ? "the shared account" : comp_role_name(l->role));
        sasl_free(l->sasl);
        l->sasl = NULL;
        l->state = LINK_READY;
        names_advertise_all(r, l);
    } else {
        sasl_reply(l, "failure",
                   res == SASL_MALFORMED ? "<malformed-request/>" : "<not-authorized/>");
        link_fail(l, "not-authorized", NULL);
    }
    free(out);
}

static void handle_starttls(link_t *l)
{
    router_t *r = l->router;
    if (!r->tls || conn_has_tls(l->conn)) {
        link_fail(l, "policy-violation", "STARTTLS not available");
        return;
    }
    conn_write(l->conn, "<proceed xmlns='" NS_TLS "'/>", strlen("<proceed xmlns='" NS_TLS "'/>"));
    conn_starttls(l->conn, r->tls, true, NULL);
    xstream_reset_discard(l->xs); /* what followed in the clear is dropped */
    l->header_sent = false;
    l->state = LINK_OPENING;
}

static bool is_true(const char *v)
{
    return v && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

static void bind_reply(link_t *l, const char *what, const char *name, const char *error)
{
    buf_t *b = &l->router->scratch;
    buf_reset(b);
    buf_printf(b, "<%s name='", what);
    xml_escape(b, name, strlen(name), true);
    if (error) buf_printf(b, "' error='%s", error);
    buf_appends(b, "'/>");
    conn_write(l->conn, b->data, b->len);
}

static bool is_good_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > JID_PART_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ') return false;
    return true;
}

static void handle_bind(link_t *l, const elem_t *e)
{
    const char *name = elem_attr(e, "name");
    if (!name || !is_good_name(name)) {
        bind_reply(l, e->name, name ? name : "", "bad-request");
        return;
    }
    const char *error = NULL;
    if (strcmp(e->name, "unbind") == 0) {
        if (names_unbind(l->router, l, name) < 0) error = "item-not-found";
    } else {
        const char *shard = elem_attr(e, "shard");
        if (shard && strcmp(shard, "user") != 0) {
            bind_reply(l, "bind", name, "bad-request");
            return;
        }
        bool is_default = is_true(elem_attr(e, "default"));
        if (!accounts_may_bind(l->router, l, name, shard != NULL, is_default)) {
            log_warn("%s (%s, account %s, %s): bind %s%s%s refused: not a name of its role", l->id,
                     conn_peer(l->conn), l->account ? l->account->name : "?",
                     l->role ? comp_role_name(l->role) : "no role yet", name, shard ? " shard" : "",
                     is_default ? " default" : "");
            bind_reply(l, "bind", name, "not-allowed");
            return;
        }
        names_bind(l->router, l, name, shard != NULL, is_default, &error);
    }
    bind_reply(l, e->name, name, error);
}

/* SHA-1 of the stream id and the secret, in lower-case hex (XEP-0114). */
static bool handshake_matches(const link_t *l, const char *secret, const char *offered)
{
    unsigned char digest[20];
    char hex[41], input[256];
    int n = snprintf(input, sizeof(input), "%s%s", l->stream_id, secret);
    if (n < 0 || (size_t)n >= sizeof(input)) return false;
    gnutls_hash_fast(GNUTLS_DIG_SHA1, input, n, digest);
    explicit_bzero(input, sizeof input);
    for (int i = 0; i < 20; i++)
        sprintf(hex + 2 * i, "%02x", digest[i]);
    char lower[41];
    size_t len = strlen(offered);
    if (len != 40) return false;
    for (size_t i = 0; i < len; i++)
        lower[i] =
            offered[i] >= 'A' && offered[i] <= 'F' ? (char)(offered[i] - 'A' + 'a') : offered[i];
    return tls_equal(lower, 40, hex, 40);
}

static void handle_handshake(link_t *l, const elem_t *e)
{
    const external_t *ext = find_external(l->router, l->id);
    if (!ext || !handshake_matches(l, ext->secret, elem_text(e))) {
        link_fail(l, "not-authorized", NULL);
        return;
    }
    const char *error = NULL;
    if (names_bind(l->router, l, ext->name, false, false, &error) < 0) {
        link_fail(l, "conflict", NULL);
        return;
    }
    conn_write(l->conn, "<handshake/>", strlen("<handshake/>"));
    link_set_role(l, ROLE_COMPONENT);
    l->state = LINK_READY;
    log_info("%s (%s) connected (XEP-0114)", l->id, conn_peer(l->conn));
}

static void on_stanza(void *ud, elem_t *stanza, const xstream_raw_t *raw)
{
    link_t *l = ud;
    if (l->state == LINK_CLOSING) return;
    if (l->state == LINK_READY && !l->is_external && strcmp(stanza->name, "route") == 0) {
        route_packet(l->router, l, stanza, raw);
        return;
    }
    if (l->state == LINK_READY && !l->is_external &&
        (strcmp(stanza->name, "bind") == 0 || strcmp(stanza->name, "unbind") == 0)) {
        handle_bind(l, stanza);
        return;
    }

    /* The rest is rare: parse it in full from its bytes. */
    arena_t *a = arena_new(0);
    elem_t *e = xml_parse_fragment(a, raw->data, raw->len,
                                   l->is_external ? NS_COMPONENT_ACCEPT : NS_HEARTH_COMPONENT);
    if (!e) {
        link_fail(l, "not-well-formed", NULL);
    } else if (l->is_external && l->state == LINK_READY) {
        if (strcmp(e->name, "message") == 0 || strcmp(e->name, "presence") == 0 ||
            strcmp(e->name, "iq") == 0)
            route_external(l->router, l, e);
        else
            link_fail(l, "unsupported-stanza-type", NULL);
    } else if (l->is_external) {
        if (elem_is(e, NS_COMPONENT_ACCEPT, "handshake"))
            handle_handshake(l, e);
        else
            link_fail(l, "not-authorized", NULL);
    } else if (l->state == LINK_AUTH && elem_is(e, NS_TLS, "starttls")) {
        handle_starttls(l);
    } else if (l->state == LINK_AUTH && e->ns && strcmp(e->ns, NS_SASL) == 0) {
        handle_sasl(l, e);
    } else if (l->state == LINK_AUTH) {
        link_fail(l, "not-authorized", NULL);
    } else {
        link_fail(l, "unsupported-stanza-type", NULL);
    }
    arena_free(a);
}

static void on_stream_close(void *ud)
{
    link_t *l = ud;
    if (l->state == LINK_CLOSING) return;
    conn_write(l->conn, "</stream:stream>", strlen("</stream:stream>"));
    l->state = LINK_CLOSING;
    conn_close(l->conn);
}

static void on_read(conn_t *c, const char *data, size_t len)
{
    link_t *l = conn_data(c);
    if (l->state == LINK_CLOSING) return;
    metric_add(&router_metrics.bytes_in, len);
    xstream_status_t st = xstream_feed(l->xs, data, len);
    if (st != XSTREAM_OK) link_fail(l, xstream_condition(st), NULL);
}

static void on_drain(conn_t *c)
{
    route_drained(conn_data(c));
}

static void on_conn_close(conn_t *c, const char *reason)
{
    link_t *l = conn_data(c);
    router_t *r = l->router;
    if (l->state == LINK_OPENING)
        log_debug("%s: closed before opening a stream", conn_peer(c));
    else if (reason && l->state != LINK_CLOSING)
        log_notice("%s (%s): connection lost: %s", l->id, conn_peer(c), reason);
    else
        log_info("%s (%s): disconnected", l->id, conn_peer(c));
    l->state = LINK_CLOSING;
    names_unbind_all(r, l);
    route_forget(l);
    if (l->prev)
        l->prev->next = l->next;
    else
        r->links = l->next;
    if (l->next) l->next->prev = l->prev;
    r->nlinks--;
    if (l->sasl) sasl_free(l->sasl);
    xstream_free(l->xs);
    free(l->waiting);
    free(l);
}
