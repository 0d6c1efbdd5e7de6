/* route.c — moving packets between links.
 *
 * A route from a native link is forwarded as the bytes it arrived in: the
 * router reads the route's attributes (to, from, user) and never parses or
 * copies its payload into a tree. The destination is the link bound to `to`
 * (names_pick() for a shard), else the default route (never for a name of
 * this server's own daemons: a local domain, c2s-N, s2s, resolver); with
 * neither, the packet goes back to its sender as <route type='error'
 * error='not-found'> with the payload intact. A link may only send from a name it bound (the
 * default-route holder, s2s, speaks for remote domains too).
 *
 * Roles. Every route delivered to a native link starts
 * <route role='ROLE' …>, ROLE being the sender's (account.c): the router
 * writes the mark in front of the sender's bytes after "<route", so the
 * payload is still never copied into a tree or re-serialized. A route that
 * arrives with a role attribute of its own is refused (forbidden): only the
 * router says who sent what. The router's own bounces are role='router',
 * the stanzas of XEP-0114 components role='component'.
 *
 * XEP-0114 components speak plain stanzas: theirs are wrapped in a route on
 * the way in and unwrapped on the way out (re-serialized so the stanza takes
 * the component stream's namespace).
 *
 * Flow control: when a write leaves the destination's queue over its limit,
 * the sender stops being read until that queue drains (DESIGN.md). */
#include <stdlib.h>
#include <string.h>

#include "router.h"

static bool link_speaks_for(const link_t *l, const char *from)
{
    for (const link_name_t *ln = l->names; ln; ln = ln->next)
        if (ln->name->is_default || strcmp(ln->name->name, from) == 0) return true;
    return false;
}

static void hold(link_t *dest, link_t *sender)
{
    for (int i = 0; i < dest->nwaiting; i++)
        if (dest->waiting[i] == sender) return;
    if (dest->nwaiting == dest->waiting_cap) {
        dest->waiting_cap = dest->waiting_cap ? dest->waiting_cap * 2 : 4;
        dest->waiting = realloc(dest->waiting, dest->waiting_cap * sizeof(*dest->waiting));
        if (!dest->waiting) log_fatal("out of memory");
    }
    dest->waiting[dest->nwaiting++] = sender;
    if (sender->blocked_by++ == 0) {
        metric_inc(&router_metrics.pauses);
        conn_pause(sender->conn);
    }
}

static void release_waiting(link_t *l)
{
    for (int i = 0; i < l->nwaiting; i++) {
        link_t *w = l->waiting[i];
        if (--w->blocked_by == 0 && w->state != LINK_CLOSING) conn_resume(w->conn);
    }
    l->nwaiting = 0;
}

void route_write(link_t *l, link_t *sender, const char *data, size_t len)
{
    metric_add(&router_metrics.bytes_out, len);
    conn_write(l->conn, data, len);
    if (!link_check_queue(l)) return;
    if (sender && conn_is_full(l->conn)) hold(l, sender);
}

/* A sender's route to l, marked with the sender's role: its mark, then its
 * bytes after "<route". */
static void write_marked(link_t *l, link_t *sender, const xstream_raw_t *raw)
{
    metric_add(&router_metrics.bytes_out, sender->mark_len);
    conn_write(l->conn, sender->mark, sender->mark_len);
    route_write(l, sender, raw->data + 6, raw->len - 6);
}

void route_drained(link_t *l)
{
    release_waiting(l);
}

void route_forget(link_t *l)
{
    release_waiting(l);
    if (l->blocked_by == 0) return;
    for (link_t *o = l->router->links; o; o = o->next) {
        for (int i = 0; i < o->nwaiting; i++) {
            if (o->waiting[i] != l) continue;
            o->waiting[i] = o->waiting[--o->nwaiting];
            break;
        }
    }
    l->blocked_by = 0;
}

/* The stanza error an XEP-0114 component gets for a route error. */
static const char *stanza_condition(const char *route_error)
{
    if (route_error && strcmp(route_error, "forbidden") == 0) return "forbidden";
    return "remote-server-not-found";
}

/* Deliver a stanza to an external link: re-serialized in its namespace. A
 * route of type error becomes the stanza error it stands for. */
static void deliver_external(router_t *r, link_t *dest, link_t *sender, const elem_t *route,
                             const xstream_raw_t *raw)
{
    const char *data;
    size_t len;
    header_payload(raw, &data, &len);
    arena_t *a = arena_new(0);
    elem_t *stanza = xml_parse_fragment(a, data, len, NS_HEARTH_COMPONENT);
    if (!stanza) {
        log_warn("%s: route to %s without a stanza, dropped", sender->id, dest->id);
        arena_free(a);
        return;
    }
    const char *type = elem_attr(route, "type");
    if (type && strcmp(type, "error") == 0 &&
        xmpp_stanza_error(stanza, stanza_condition(elem_attr(route, "error")), NULL) < 0) {
        arena_free(a);
        return;
    }
    buf_t *b = &r->scratch;
    buf_reset(b);
    elem_serialize_stanza(stanza, NULL, b);
    route_write(dest, sender, b->data, b->len);
    arena_free(a);
}

/* Send a route back to its sender as an error, payload intact. Errors are
 * never bounced: a route of type error that can't be delivered is dropped. */
static void bounce(router_t *r, link_t *sender, const elem_t *route, const xstream_raw_t *raw,
                   const char *condition)
{
    const char *type = elem_attr(route, "type");
    if (type && strcmp(type, "error") == 0) {
        log_debug("%s: undeliverable route error to %s dropped", sender->id,
                  elem_attr(route, "to") ? elem_attr(route, "to") : "(none)");
        return;
    }
    metric_inc(&router_metrics.bounces);
    buf_t *b = &r->scratch;
    buf_reset(b);
    if (header_bounce(b, route, raw, condition) < 0) {
        log_debug("%s: route to %s declares namespaces on its start tag: dropped, not bounced",
                  sender->id, elem_attr(route, "to") ? elem_attr(route, "to") : "(none)");
        return;
    }
    route_write(sender, NULL, b->data, b->len);
}

/* Log a refused route once per link: a sender that keeps trying must not
 * fill the log. */
static void warn_refused(link_t *l, const elem_t *route, const char *why)
{
    if (l->has_warned) return;
    l->has_warned = true;
    log_warn("%s (%s, %s): route to '%s' refused: %s (logged once per connection)", l->id,
             conn_peer(l->conn), comp_role_name(l->role),
             elem_attr(route, "to") ? elem_attr(route, "to") : "", why);
}

void route_packet(router_t *r, link_t *from, elem_t *route, const xstream_raw_t *raw)
{
    if (!header_is_markable(route, raw) || from->mark_len == 0) {
        warn_refused(from, route,
                     elem_attr(route, "role") ? "it carries a role; only the router sets one"
                                              : "not a plain <route …> start tag");
        bounce(r, from, route, raw, "forbidden");
        return;
    }
    const char *sender_name = elem_attr(route, "from");
    if (!sender_name || !link_speaks_for(from, sender_name)) {
        warn_refused(from, route, "its from is not a name it has bound");
        bounce(r, from, route, raw, "forbidden");
        return;
    }
    const char *to = elem_attr(route, "to");
    name_t *n = to ? names_find(r, to) : NULL;
    /* A name of this server (a local domain, c2s-N, ...) nobody holds now
     * is not a remote domain: its daemon is restarting, and the sender,
     * told so, keeps or re-routes the packet (DESIGN.md: sessions outlive
     * a restart); s2s would only drop it. */
    if (!n && to && !accounts_is_reserved(r, to)) n = r->default_route;
    if (!n) {
        bounce(r, from, route, raw, "not-found");
        return;
    }
    link_t *dest = names_pick(r, n, elem_attr(route, "user"));
    if (!dest) { /* its shard is restarting */
        bounce(r, from, route, raw, "not-found");
        return;
    }
    router_metric_delivered(dest);
    if (dest->is_external)
        deliver_external(r, dest, from, route, raw);
    else
        write_marked(dest, from, raw);
}

/* The domain part of a JID string, in a caller buffer. -1 if invalid. */
static int jid_domain_of(const char *s, char *domain, char *bare)
{
    const char *why;
    jid_t *j = jid_new(s, strlen(s), &why);
    if (!j) return -1;
    strcpy(domain, jid_domain(j));
    strcpy(bare, jid_has_node(j) ? jid_bare(j) : "");
    jid_free(j);
    return 0;
}

/* Answer a stanza of an external link with a stanza error. */
static void refuse_external(router_t *r, link_t *l, elem_t *stanza, const char *condition)
{
    if (xmpp_stanza_error(stanza, condition, NULL) < 0) return;
    buf_t *b = &r->scratch;
    buf_reset(b);
    elem_serialize_stanza(stanza, NULL, b);
    route_write(l, NULL, b->data, b->len);
}

void route_external(router_t *r, link_t *l, elem_t *stanza)
{
    char domain[JID_STRING_MAX], bare[JID_STRING_MAX];
    const char *from = elem_attr(stanza, "from");
    if (!from || jid_domain_of(from, domain, bare) < 0 || !link_speaks_for(l, domain)) {
        /* RFC 6120 §4.9.3.9: a from the stream is not allowed to use. */
        link_fail(l, "invalid-from", NULL);
        return;
    }
    const char *to = elem_attr(stanza, "to");
    if (!to || jid_domain_of(to, domain, bare) < 0) {
        refuse_external(r, l, stanza, "jid-malformed");
        return;
    }
    name_t *n = names_find(r, domain);
    if (!n) n = r->default_route;
    if (!n) {
        refuse_external(r, l, stanza, "remote-server-not-found");
        return;
    }
    link_t *dest = names_pick(r, n, bare[0] ? bare : NULL);
    if (!dest) {
        refuse_external(r, l, stanza, "remote-server-timeout");
        return;
    }
    router_metric_delivered(dest);
    buf_t *b = &r->scratch;
    buf_reset(b);
    if (dest->is_external) {
        elem_serialize_stanza(stanza, NULL, b);
    } else {
        buf_appends(b, "<route role='component' to='");
        xml_escape(b, domain, strlen(domain), true);
        buf_appends(b, "' from='");
        xml_escape(b, l->names->name->name, strlen(l->names->name->name), true);
        if (bare[0]) {
            buf_appends(b, "' user='");
            xml_escape(b, bare, strlen(bare), true);
        }
        buf_appends(b, "'>");
        elem_serialize_stanza(stanza, NS_CLIENT, b);
        buf_appends(b, "</route>");
    }
    route_write(dest, l, b->data, b->len);
}
