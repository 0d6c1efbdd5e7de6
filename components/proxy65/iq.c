/* iq.c — the XMPP side of hearth-proxy65: what proxy.DOMAIN answers on
 * the router link.
 *
 *   - disco#info (XEP-0030): the identity proxy/bytestreams and the
 *     features disco#info and bytestreams; disco#items: no items; a node:
 *     item-not-found.
 *   - The streamhost query (XEP-0065 §4, an IQ-get): one
 *     <streamhost jid='proxy.DOMAIN' host='…' port='…'/>, to anyone: it
 *     tells no more than the address, and a SOCKS5 connection alone
 *     relays nothing.
 *   - Activation (§6.3.5, an IQ-set with sid and <activate>TARGET</activate>):
 *     only from a user of this server, that is a route the router marked
 *     role sm (the sm checked that the stanza's from is the session's full
 *     JID) whose from is a user of one of our domains. Anyone else (a
 *     remote server's user, role s2s; a component) gets forbidden, the
 *     XEP's answer to a requester the proxy does not serve (§4). The
 *     stream is found by the hash of the sid, that from and the target
 *     prepared (relay.c), so another local user finds none of someone
 *     else's streams: item-not-found, as the XEP says of a from that is
 *     not the requester's; a stream with one connection: not-allowed; one
 *     over the user's max-streams-per-user: resource-constraint (the XEP
 *     names none). A query-set without sid or <activate>: bad-request; a
 *     target that is not a JID: jid-malformed.
 *   - Any other IQ-get or -set: service-unavailable; results, errors,
 *     messages and presence are dropped.
 *
 * Answers go to the sender's domain, from the name that was asked:
 * <route to='DOMAIN' from='proxy.DOMAIN' user='BARE JID'>, user being the
 * recipient's bare JID (the sm shards by it); a remote JID's domain goes
 * on the router's default route, to s2s. */
#include <stdio.h>
#include <string.h>

#include "proxy65.h"

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

static comp_t *comp;
static p65_service_t service;

void iq_init(comp_t *c, const p65_service_t *s)
{
    comp = c;
    service = *s;
}

static bool is(const char *a, const char *b)
{
    return a && strcmp(a, b) == 0;
}

static bool is_local_user(const jid_t *j)
{
    if (!jid_has_node(j)) return false;
    for (int i = 0; i < service.ndomains; i++)
        if (strcmp(service.domains[i], jid_domain(j)) == 0) return true;
    return false;
}

static void send_to(const elem_t *stanza)
{
    if (comp_send_stanza(comp, stanza) < 0)
        log_warn("proxy65: answer to %s dropped: no router link", elem_attr(stanza, "to"));
}

static void answer_error(elem_t *iq, const char *condition)
{
    if (xmpp_stanza_error(iq, condition, NULL) == 0) send_to(iq);
}

/* The result to iq, with payload (may be NULL), in the iq's arena. */
static void answer_result(const elem_t *iq, const elem_t *payload)
{
    elem_t *r = xmpp_iq_result(iq);
    if (payload) elem_add_copy(r, payload);
    send_to(r);
}

static void disco(const char *name, const jid_t *from, elem_t *iq, const elem_t *query)
{
    if (elem_attr(query, "node")) {
        answer_error(iq, "item-not-found");
        return;
    }
    elem_t *r = elem_new(iq->arena, query->ns, "query");
    if (strcmp(query->ns, NS_DISCO_INFO) == 0) {
        elem_t *id = elem_add(r, NULL, "identity");
        elem_set_attr(id, "category", "proxy");
        elem_set_attr(id, "type", "bytestreams");
        elem_set_attr(id, "name", "SOCKS5 Bytestreams Service");
        elem_set_attr(elem_add(r, NULL, "feature"), "var", NS_DISCO_INFO);
        elem_set_attr(elem_add(r, NULL, "feature"), "var", NS_BYTESTREAMS);
    }
    answer_result(iq, r);
}

static void streamhost(const char *name, const jid_t *from, const elem_t *iq)
{
    elem_t *r = elem_new(iq->arena, NS_BYTESTREAMS, "query");
    elem_t *host = elem_add(r, NULL, "streamhost");
    char port[16];
    snprintf(port, sizeof port, "%d", service.port);
    elem_set_attr(host, "jid", name);
    elem_set_attr(host, "host", service.host);
    elem_set_attr(host, "port", port);
    answer_result(iq, r);
}

static void activate(const char *name, const jid_t *from, comp_role_t role, elem_t *iq,
                     const elem_t *query)
{
    const char *sid = elem_attr(query, "sid");
    const elem_t *target = elem_child(query, NS_BYTESTREAMS, "activate");
    if (!sid || !*sid || !target) {
        answer_error(iq, "bad-request");
        return;
    }
    if (role != ROLE_SM || !is_local_user(from)) {
        char key[JID_STRING_MAX + 32];
        snprintf(key, sizeof key, "proxy65 activation %s", jid_full(from));
        if (log_is_first(key))
            log_warn("proxy65: activation by %s (role %s) refused: not a user of this server "
                     "(logged once per sender)",
                     jid_full(from), *comp_role_name(role) ? comp_role_name(role) : "none");
        answer_error(iq, "forbidden");
        return;
    }
    const char *text = elem_text(target);
    char prepared[JID_STRING_MAX];
    if (jid_prep(text, strlen(text), prepared, NULL) < 0) {
        answer_error(iq, "jid-malformed");
        return;
    }
    const char *refusal = relay_activate(sid, jid_full(from), prepared, jid_bare(from));
    if (refusal)
        answer_error(iq, refusal);
    else
        answer_result(iq, NULL);
}

void iq_route(elem_t *route)
{
    const char *name = elem_attr(route, "to");
    if (is(elem_attr(route, "type"), "error")) {
        log_debug("proxy65: a route to %s came back: %s",
                  elem_attr(route, "from") ? elem_attr(route, "from") : "?",
                  elem_attr(route, "error") ? elem_attr(route, "error") : "?");
        return;
    }
    elem_t *iq = elem_first(route);
    if (!name || !iq || !is(iq->name, "iq")) return;
    const char *type = elem_attr(iq, "type");
    if (!is(type, "get") && !is(type, "set")) return;
    const char *from_text = elem_attr(iq, "from");
    jid_t *from = from_text ? jid_new(from_text, strlen(from_text), NULL) : NULL;
    if (!from) {
        log_info("proxy65: an IQ with %s from dropped", from_text ? "an invalid" : "no");
        return;
    }
    elem_t *query = elem_first(iq);
    bool is_get = is(type, "get");
    if (query && is_get && is(query->name, "query") &&
        (is(query->ns, NS_DISCO_INFO) || is(query->ns, NS_DISCO_ITEMS)))
        disco(name, from, iq, query);
    else if (query && is_get && elem_is(query, NS_BYTESTREAMS, "query"))
        streamhost(name, from, iq);
    else if (query && !is_get && elem_is(query, NS_BYTESTREAMS, "query"))
        activate(name, from, comp_route_role(route), iq, query);
    else
        answer_error(iq, "service-unavailable");
    jid_free(from);
}
