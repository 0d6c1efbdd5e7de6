/* mod_disco.c — service discovery (XEP-0030) of the server and accounts.
 *
 * The server (to = a local domain) is an "server/im" identity with every
 * feature the modules announced through sm_feature(), and, when hearth.xml
 * lists sm/contact addresses, the XEP-0157 form (FORM_TYPE
 * http://jabber.org/network/serverinfo, XEP-0128), one field per kind of
 * address given (abuse-addresses, admin-addresses, ...), each value a URI
 * in the order written; its items are the
 * components the router advertised under one of our domains (none when the
 * core reports none). An account's bare JID is an "account/registered"
 * identity; its items are the user's own resources when the user asks,
 * nothing for anyone else (the server never tells who is online). A query
 * with no to is the user's own account (RFC 6120 §10.3.3). Nodes: none, so
 * any node is item-not-found. */
#include <stdio.h>
#include <string.h>

#include "sm.h"

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_XDATA "jabber:x:data"
#define NS_SERVERINFO "http://jabber.org/network/serverinfo"

/* XEP-0157's kinds of address, in the order its registry lists them. */
static const char *const kinds[] = {"abuse",    "admin",  "feedback", "sales",
                                    "security", "status", "support",  NULL};
static const config_t *config;

static void add_value(elem_t *field, const char *value)
{
    elem_add_text(elem_add(field, NULL, "value"), value, strlen(value));
}

/* The serverinfo form, when any address is configured. */
static void add_contacts(elem_t *query)
{
    int n = config_count(config, "sm.contact");
    if (n == 0) return;
    elem_t *x = elem_add(query, NS_XDATA, "x");
    elem_set_attr(x, "type", "result");
    elem_t *type = elem_add(x, NULL, "field");
    elem_set_attr(type, "var", "FORM_TYPE");
    elem_set_attr(type, "type", "hidden");
    add_value(type, NS_SERVERINFO);
    for (const char *const *k = kinds; *k; k++) {
        elem_t *field = NULL;
        for (int i = 0; i < n; i++) {
            const char *kind = config_get_at(config, "sm.contact@type", i);
            const char *address = config_get_at(config, "sm.contact@address", i);
            if (!kind || !address || strcmp(kind, *k) != 0) continue;
            if (!field) {
                char var[32];
                snprintf(var, sizeof var, "%s-addresses", *k);
                field = elem_add(x, NULL, "field");
                elem_set_attr(field, "var", var);
                elem_set_attr(field, "type", "list-multi");
            }
            add_value(field, address);
        }
    }
}

static void add_identity(elem_t *query, const char *category, const char *type, const char *name)
{
    elem_t *id = elem_add(query, NULL, "identity");
    elem_set_attr(id, "category", category);
    elem_set_attr(id, "type", type);
    if (name) elem_set_attr(id, "name", name);
}

static void add_feature(elem_t *query, const char *var)
{
    elem_set_attr(elem_add(query, NULL, "feature"), "var", var);
}

/* The disco query of a get, or NULL (not ours). *is_info tells which. */
static elem_t *disco_query(sm_pkt_t *pkt, bool *is_info)
{
    if (strcmp(pkt->kind, "iq") != 0) return NULL;
    if (strcmp(pkt->type, "get") != 0 && strcmp(pkt->type, "set") != 0) return NULL;
    elem_t *query = elem_first(pkt->stanza);
    if (!query) return NULL;
    if (elem_is(query, NS_DISCO_INFO, "query"))
        *is_info = true;
    else if (elem_is(query, NS_DISCO_ITEMS, "query"))
        *is_info = false;
    else
        return NULL;
    return query;
}

/* Errors every disco request shares: a set, or a node we don't have. */
static bool refuse(sm_t *sm, sm_pkt_t *pkt, const elem_t *query)
{
    if (strcmp(pkt->type, "set") == 0) {
        sm_reply_error(sm, pkt, "bad-request");
        return true;
    }
    if (elem_attr(query, "node")) {
        sm_reply_error(sm, pkt, "item-not-found");
        return true;
    }
    return false;
}

static sm_verdict_t on_server(sm_t *sm, sm_pkt_t *pkt)
{
    bool is_info;
    elem_t *query = disco_query(pkt, &is_info);
    if (!query) return SM_PASS;
    if (refuse(sm, pkt, query)) return SM_HANDLED;

    elem_t *reply = elem_new(pkt->stanza->arena, is_info ? NS_DISCO_INFO : NS_DISCO_ITEMS, "query");
    if (is_info) {
        add_identity(reply, "server", "im", "Hearth");
        for (const char *const *f = sm_features(sm); *f; f++)
            add_feature(reply, *f);
        add_contacts(reply);
    } else {
        const char *domain = pkt->to ? jid_domain(pkt->to) : sm_domain(sm);
        size_t dlen = strlen(domain);
        for (const char *const *c = sm_components(sm); c && *c; c++) {
            /* Only services under this domain: conference.example.com for
             * example.com, never the daemons' own names (c2s-1, sm-1). */
            size_t clen = strlen(*c);
            if (clen > dlen + 1 && (*c)[clen - dlen - 1] == '.' &&
                strcmp(*c + clen - dlen, domain) == 0)
                elem_set_attr(elem_add(reply, NULL, "item"), "jid", *c);
        }
    }
    sm_reply_result(sm, pkt, reply);
    return SM_HANDLED;
}

/* owner: the account asked about; is_own: the user asks about himself. */
static sm_verdict_t on_account(sm_t *sm, sm_pkt_t *pkt, const char *owner, bool is_own)
{
    bool is_info;
    elem_t *query = disco_query(pkt, &is_info);
    if (!query) return SM_PASS;
    if (refuse(sm, pkt, query)) return SM_HANDLED;

    elem_t *reply = elem_new(pkt->stanza->arena, is_info ? NS_DISCO_INFO : NS_DISCO_ITEMS, "query");
    if (is_info) {
        add_identity(reply, "account", "registered", NULL);
        add_feature(reply, NS_DISCO_INFO);
        add_feature(reply, NS_DISCO_ITEMS);
    } else if (is_own) {
        for (const sess_t *s = sm_sessions(sm, owner); s; s = s->next)
            elem_set_attr(elem_add(reply, NULL, "item"), "jid", jid_full(s->jid));
    }
    sm_reply_result(sm, pkt, reply);
    return SM_HANDLED;
}

/* The user's own requests, and requests to an account's bare JID. */
static sm_verdict_t on_iq(sm_t *sm, sm_pkt_t *pkt)
{
    bool is_own;
    const char *owner = sm_iq_account(pkt, &is_own);
    return owner ? on_account(sm, pkt, owner, is_own) : SM_PASS;
}

void mod_disco_init(sm_t *sm); /* listed in modules.c */

void mod_disco_init(sm_t *sm)
{
    config = sm_config(sm);
    for (int i = 0; i < config_count(config, "sm.contact"); i++)
        if (!config_get_at(config, "sm.contact@address", i) ||
            !strchr(config_get_at(config, "sm.contact@address", i), ':'))
            log_fatal("%s: sm/contact %d needs an address that is a URI (mailto:, xmpp:, "
                      "https:)",
                      config_file(config), i + 1);
    sm_feature(sm, NS_DISCO_INFO);
    sm_feature(sm, NS_DISCO_ITEMS);
    sm_hook(sm, SM_CHAIN_IN_SERVER, 500, on_server);
    sm_hook(sm, SM_CHAIN_IN_SESS, 500, on_iq);
    sm_hook(sm, SM_CHAIN_IN_USER, 500, on_iq);
}
