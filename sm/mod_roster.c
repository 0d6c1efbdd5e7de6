/* mod_roster.c — the roster (RFC 6121 §2, with XEP-0237 versioning) and
 * the subscription state machine (RFC 6121 §3: none/to/from/both, ask,
 * pre-approval).
 *
 * Roster gets and sets come from the user's sessions; every change is
 * saved (item and version in one transaction) before it is pushed to the
 * sessions that fetched the roster and acknowledged. Subscription presence
 * goes both ways: outbound from a session (stamped with the user's bare
 * JID, the roster updated, then routed) and inbound to an account (the
 * roster updated, then delivered to the available sessions, or, for a
 * subscribe request to a user with none, kept in roster_items.pending_in
 * and delivered at the next available presence). Presence itself is
 * mod_presence's; this module only sends what RFC 6121 §3 ties to a
 * subscription change (current presence on approval, unavailable on
 * cancellation).
 *
 * Limits: a roster holds at most sm.roster-max items (counting those that
 * only keep a contact's pending request), each with a name and groups of
 * bounded size, and a kept request of at most PENDING_MAX bytes (a bigger
 * one is kept as the bare request, without its status or other payload).
 * What would add an item to a full roster is refused, nothing changed,
 * with resource-constraint (type wait, RFC 6120 §8.3.3.18: the server
 * will not take more now); items already there change as usual:
 *  - a roster set of a new item: the IQ error (RFC 6121 §2.3.3 lets the
 *    server refuse a set with a stanza error);
 *  - the user's subscribe, or pre-approval (RFC 6121 §3.4), to a contact
 *    not in the roster: a presence error to the user, and the request is
 *    not sent, since RFC 6121 §3.1.2 wants the item (ask) before it goes;
 *  - a contact's subscribe request for a user whose full roster lacks it:
 *    unsubscribed back on the user's behalf, as for an account that does
 *    not exist (RFC 6121 §3.1.3), since the request could be neither kept
 *    nor approved later (approval needs the item); the contact's server
 *    then clears its pending request (§3.2.3), where an error would be
 *    dropped unseen (it goes to the contact's bare JID). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roster.h"

#define NS_ROSTER "jabber:iq:roster"
#define NAME_MAX_BYTES 1023
#define GROUPS_MAX 64
#define GROUPS_MAX_BYTES 4096 /* all of an item's group names */
#define PENDING_MAX 4096      /* a kept subscription request, as XML */

static int roster_max; /* sm.roster-max */

static unsigned long push_counter;

static bool is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

static bool is_subscription_type(const char *type)
{
    return is(type, "subscribe") || is(type, "subscribed") || is(type, "unsubscribe") ||
           is(type, "unsubscribed");
}

static const char *store_condition(st_status_t status)
{
    return status == ST_FULL ? "resource-constraint" : "internal-server-error";
}

/* ---- roster items on the wire ----------------------------------------- */

static void add_item(elem_t *query, const ritem_t *it, bool is_removed)
{
    static const char *const subs[] = {"none", "to", "from", "both"};
    elem_t *item = elem_add(query, NULL, "item");
    elem_set_attr(item, "jid", it->jid);
    if (is_removed) {
        elem_set_attr(item, "subscription", "remove");
        return;
    }
    if (it->name) elem_set_attr(item, "name", it->name);
    elem_set_attr(item, "subscription", subs[it->sub & 3]);
    if (it->ask) elem_set_attr(item, "ask", "subscribe");
    if (it->preapproved) elem_set_attr(item, "approved", "true");
    for (const char *g = it->groups; *g;) {
        const char *end = strchr(g, '\n');
        size_t len = end ? (size_t)(end - g) : strlen(g);
        elem_t *group = elem_add(item, NULL, "group");
        elem_add_text(group, g, len);
        g += len + (end ? 1 : 0);
    }
}

/* RFC 6121 §2.1.6: a change goes to every session that asked for the
 * roster. */
static void push(sm_t *sm, const roster_t *r, const ritem_t *it, bool is_removed)
{
    if (!is_removed && !ritem_is_visible(it)) return;
    arena_t *a = arena_new(0);
    elem_t *iq = elem_new(a, NS_CLIENT, "iq");
    char id[32], ver[24];
    snprintf(id, sizeof(id), "push%lu", ++push_counter);
    snprintf(ver, sizeof(ver), "%lld", r->version);
    elem_set_attr(iq, "type", "set");
    elem_set_attr(iq, "id", id);
    elem_t *query = elem_add(iq, NS_ROSTER, "query");
    elem_set_attr(query, "ver", ver);
    add_item(query, it, is_removed);
    for (sess_t *s = sm_sessions(sm, r->owner); s; s = s->next) {
        if (!s->is_interested) continue;
        elem_set_attr(iq, "to", jid_full(s->jid));
        sm_send_to_sess(sm, s, iq);
    }
    arena_free(a);
}

/* Can the roster take one more item? */
static bool has_room(const roster_t *r)
{
    int n = 0;
    for (const ritem_t *it = r->items; it; it = it->next)
        if (++n >= roster_max) return false;
    return true;
}

/* ---- roster get and set (RFC 6121 §2.2, §2.3, §2.5) ------------------- */

static void get_op(sm_t *sm, roster_t *r, void *ud)
{
    sm_pkt_t *pkt = ud;
    if (!r->is_loaded) {
        sm_reply_error(sm, pkt, "internal-server-error");
    } else {
        const elem_t *q = elem_child(pkt->stanza, NS_ROSTER, "query");
        const char *ver = elem_attr(q, "ver");
        char current[24];
        snprintf(current, sizeof(current), "%lld", r->version);
        if (ver && is(ver, current)) {
            /* XEP-0237 §3: up to date, an empty result; changes come as
             * pushes. */
            sm_reply_result(sm, pkt, NULL);
        } else {
            arena_t *a = arena_new(0);
            elem_t *query = elem_new(a, NS_ROSTER, "query");
            elem_set_attr(query, "ver", current);
            for (const ritem_t *it = r->items; it; it = it->next)
                if (ritem_is_visible(it)) add_item(query, it, false);
            sm_reply_result(sm, pkt, query);
            arena_free(a);
        }
    }
    sm_pkt_release(pkt);
    roster_done(sm, r);
}

typedef struct set_req {
    sm_pkt_t *pkt;
    char jid[JID_STRING_MAX];
    bool is_removal;
    /* outbound presence a removal owes the contact (RFC 6121 §2.5.2) */
    bool send_unsubscribe, send_unsubscribed;
} set_req_t;

static void send_presence_type(sm_t *sm, const char *from, const char *to, const char *type)
{
    arena_t *a = arena_new(0);
    elem_t *p = elem_new(a, NS_CLIENT, "presence");
    elem_set_attr(p, "type", type);
    elem_set_attr(p, "from", from);
    elem_set_attr(p, "to", to);
    sm_deliver(sm, p);
    arena_free(a);
}

static void set_saved(sm_t *sm, roster_t *r, void *ud, st_status_t status)
{
    set_req_t *req = ud;
    if (status != ST_OK) {
        sm_reply_error(sm, req->pkt, store_condition(status));
    } else {
        if (req->is_removal) {
            ritem_t gone = {.jid = req->jid, .groups = ""};
            push(sm, r, &gone, true);
            if (req->send_unsubscribe) send_presence_type(sm, r->owner, req->jid, "unsubscribe");
            if (req->send_unsubscribed) {
                send_presence_type(sm, r->owner, req->jid, "unsubscribed");
                presence_send_current(sm, r->owner, req->jid, true);
            }
        } else {
            push(sm, r, roster_find(r, req->jid), false);
        }
        sm_reply_result(sm, req->pkt, NULL);
    }
    sm_pkt_release(req->pkt);
    free(req);
    roster_done(sm, r);
}

static void set_op(sm_t *sm, roster_t *r, void *ud)
{
    set_req_t *req = ud;
    if (!r->is_loaded) {
        set_saved(sm, r, req, ST_UNAVAILABLE);
        return;
    }
    const elem_t *item =
        elem_child(elem_child(req->pkt->stanza, NS_ROSTER, "query"), NS_ROSTER, "item");
    ritem_t *it = roster_find(r, req->jid);
    if (req->is_removal) {
        if (!it || !ritem_is_visible(it)) {
            sm_reply_error(sm, req->pkt, "item-not-found");
            sm_pkt_release(req->pkt);
            free(req);
            roster_done(sm, r);
            return;
        }
        req->send_unsubscribe = (it->sub & SUB_TO) || it->ask;
        req->send_unsubscribed = (it->sub & SUB_FROM) || it->pending_in;
        roster_save(sm, r, it, true, set_saved, req);
        return;
    }
    if (!it && !has_room(r)) {
        sm_reply_error(sm, req->pkt, "resource-constraint");
        sm_pkt_release(req->pkt);
        free(req);
        roster_done(sm, r);
        return;
    }
    if (!it) it = roster_add(r, req->jid);
    ritem_set(&it->name, elem_attr(item, "name"));
    if (it->name && !*it->name) ritem_set(&it->name, NULL);
    buf_t groups = BUF_INIT;
    buf_appends(&groups, "");
    for (const elem_t *g = elem_child(item, NS_ROSTER, "group"); g;
         g = elem_next(g, NS_ROSTER, "group")) {
        if (groups.len) buf_appends(&groups, "\n");
        buf_appends(&groups, elem_text(g));
    }
    ritem_set(&it->groups, groups.data);
    buf_free(&groups);
    roster_save(sm, r, it, false, set_saved, req);
}

/* RFC 6121 §2.3.3: what makes a roster set refused before it is tried.
 * The condition, or NULL; the item's prepared JID into jid. */
static const char *set_problem(const elem_t *query, char *jid, bool *is_removal)
{
    const elem_t *item = elem_child(query, NS_ROSTER, "item");
    if (!item || elem_next(item, NS_ROSTER, "item")) return "bad-request";
    const char *j = elem_attr(item, "jid");
    if (!j) return "bad-request";
    if (jid_prep(j, strlen(j), jid, NULL) < 0) return "jid-malformed"; /* RFC 6120 §8.3.3.8 */
    const char *sub = elem_attr(item, "subscription");
    *is_removal = sub && is(sub, "remove");
    const char *name = elem_attr(item, "name");
    if (name && strlen(name) > NAME_MAX_BYTES) return "not-acceptable";
    int n = 0;
    size_t bytes = 0;
    for (const elem_t *g = elem_child(item, NS_ROSTER, "group"); g;
         g = elem_next(g, NS_ROSTER, "group")) {
        const char *text = elem_text(g);
        if (!*text || strlen(text) > NAME_MAX_BYTES || strchr(text, '\n')) return "not-acceptable";
        if (++n > GROUPS_MAX || (bytes += strlen(text) + 1) > GROUPS_MAX_BYTES)
            return "not-acceptable";
        for (const elem_t *h = elem_child(item, NS_ROSTER, "group"); h != g;
             h = elem_next(h, NS_ROSTER, "group"))
            if (is(elem_text(h), text)) return "bad-request";
    }
    return NULL;
}

static sm_verdict_t roster_iq(sm_t *sm, sm_pkt_t *pkt)
{
    const elem_t *query = elem_child(pkt->stanza, NS_ROSTER, "query");
    if (is(pkt->type, "get")) {
        pkt->sess->is_interested = true;
        roster_with(sm, jid_bare(pkt->from), get_op, sm_pkt_hold(pkt));
        return SM_HANDLED;
    }
    if (!is(pkt->type, "set")) return SM_PASS;
    set_req_t *req = calloc(1, sizeof(*req));
    if (!req) log_fatal("out of memory");
    const char *problem = set_problem(query, req->jid, &req->is_removal);
    if (problem) {
        sm_reply_error(sm, pkt, problem);
        free(req);
        return SM_HANDLED;
    }
    req->pkt = sm_pkt_hold(pkt);
    roster_with(sm, jid_bare(pkt->from), set_op, req);
    return SM_HANDLED;
}

/* ---- subscriptions ---------------------------------------------------- */

typedef struct sub_req {
    sm_pkt_t *pkt;
    elem_t *stanza; /* the presence as it goes on: bare from and to */
    const char *type;
    ritem_t *it;
    bool is_inbound;
    bool then_route;    /* outbound: route the stanza once saved */
    bool then_deliver;  /* inbound: to the available sessions once saved */
    bool then_presence; /* send current presence to the contact */
    bool then_unavailable;
    bool then_approve; /* inbound: answer subscribed on the user's behalf */
} sub_req_t;

static void deliver_to_available(sm_t *sm, const char *owner, const elem_t *stanza)
{
    sm_fanout_begin(sm, stanza);
    for (sess_t *s = sm_sessions(sm, owner); s; s = s->next)
        if (s->is_available) sm_send_to_sess(sm, s, stanza);
    sm_fanout_end(sm, stanza);
}

static bool has_available(sm_t *sm, const char *owner)
{
    for (sess_t *s = sm_sessions(sm, owner); s; s = s->next)
        if (s->is_available) return true;
    return false;
}

static void sub_finish(sm_t *sm, roster_t *r, sub_req_t *req)
{
    const char *contact = elem_attr(req->stanza, req->is_inbound ? "from" : "to");
    if (req->then_approve) send_presence_type(sm, r->owner, contact, "subscribed");
    if (req->then_route) sm_deliver(sm, req->stanza);
    if (req->then_deliver) deliver_to_available(sm, r->owner, req->stanza);
    if (req->then_presence) presence_send_current(sm, r->owner, contact, false);
    if (req->then_unavailable) presence_send_current(sm, r->owner, contact, true);
    sm_pkt_release(req->pkt);
    arena_free(req->stanza->arena);
    free(req);
    roster_done(sm, r);
}

static void sub_saved(sm_t *sm, roster_t *r, void *ud, st_status_t status)
{
    sub_req_t *req = ud;
    if (status != ST_OK) {
        /* Nothing was changed; say so to whoever asked, unless the request
         * can still reach an available session (an inbound subscribe). */
        bool is_delivered =
            req->is_inbound && is(req->type, "subscribe") && has_available(sm, r->owner);
        if (!is_delivered) sm_reply_error(sm, req->pkt, store_condition(status));
        req->then_route = req->then_presence = req->then_unavailable = req->then_approve = false;
        req->then_deliver = is_delivered;
    } else if (req->it) {
        push(sm, r, req->it, false);
    }
    sub_finish(sm, r, req);
}

static void sub_save(sm_t *sm, roster_t *r, sub_req_t *req)
{
    roster_save(sm, r, req->it, false, sub_saved, req);
}

/* The subscription would need a new item in a full roster: refused,
 * nothing changed, nothing sent on: to the user an error, to a contact
 * unsubscribed. */
static void sub_refuse(sm_t *sm, roster_t *r, sub_req_t *req)
{
    const char *contact = elem_attr(req->stanza, req->is_inbound ? "from" : "to");
    log_info("roster of %s is full (sm.roster-max %d): %s %s %s refused", r->owner, roster_max,
             req->type, req->is_inbound ? "from" : "to", contact);
    if (req->is_inbound)
        send_presence_type(sm, r->owner, contact, "unsubscribed");
    else
        sm_reply_error(sm, req->pkt, "resource-constraint");
    sub_finish(sm, r, req);
}

/* A contact's request as kept for later: the whole presence, or, past
 * PENDING_MAX, the bare request. */
static void keep_request(ritem_t *it, const elem_t *presence)
{
    buf_t xml = BUF_INIT;
    elem_serialize(presence, NS_CLIENT, &xml);
    if (xml.len > PENDING_MAX) {
        arena_t *a = arena_new(0);
        elem_t *bare = elem_new(a, NS_CLIENT, "presence");
        static const char *const attrs[] = {"type", "from", "to", "id"};
        for (size_t i = 0; i < sizeof attrs / sizeof *attrs; i++)
            if (elem_attr(presence, attrs[i]))
                elem_set_attr(bare, attrs[i], elem_attr(presence, attrs[i]));
        buf_reset(&xml);
        elem_serialize(bare, NS_CLIENT, &xml);
        arena_free(a);
    }
    ritem_set(&it->pending_in, xml.data);
    buf_free(&xml);
}

/* RFC 6121 §3.1.2, §3.1.5, §3.2.2, §3.3.2, §3.4: the user sends. */
static void outbound_op(sm_t *sm, roster_t *r, void *ud)
{
    sub_req_t *req = ud;
    if (!r->is_loaded) {
        sub_saved(sm, r, req, ST_UNAVAILABLE);
        return;
    }
    const char *contact = elem_attr(req->stanza, "to");
    ritem_t *it = roster_find(r, contact);
    const char *type = req->type;
    bool changed = false;
    if (is(type, "subscribe")) {
        if (!it && !has_room(r)) {
            sub_refuse(sm, r, req);
            return;
        }
        if (!it) it = roster_add(r, contact);
        if (!(it->sub & SUB_TO) && !it->ask) {
            it->ask = true;
            changed = true;
        }
        req->then_route = true;
    } else if (is(type, "subscribed")) {
        if (it && it->pending_in) {
            /* Approving their request. */
            it->sub |= SUB_FROM;
            ritem_set(&it->pending_in, NULL);
            it->preapproved = false;
            changed = true;
            req->then_route = req->then_presence = true;
        } else if (!it || !(it->sub & SUB_FROM)) {
            /* §3.4: no request yet: approve in advance. */
            if (!it && !has_room(r)) {
                sub_refuse(sm, r, req);
                return;
            }
            if (!it) it = roster_add(r, contact);
            if (!it->preapproved) {
                it->preapproved = true;
                changed = true;
            }
        }
    } else if (is(type, "unsubscribe")) {
        if (it && ((it->sub & SUB_TO) || it->ask)) {
            it->sub &= ~SUB_TO;
            it->ask = false;
            changed = true;
        }
        req->then_route = true;
    } else { /* unsubscribed */
        if (it && (it->sub & SUB_FROM)) {
            it->sub &= ~SUB_FROM;
            changed = req->then_route = req->then_unavailable = true;
        }
        if (it && it->pending_in) {
            ritem_set(&it->pending_in, NULL);
            changed = req->then_route = true;
        }
        if (it && it->preapproved) {
            it->preapproved = false;
            changed = true;
        }
    }
    req->it = it;
    if (changed)
        sub_save(sm, r, req);
    else
        sub_finish(sm, r, req);
}

/* RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3: the contact sends. */
static void inbound_op(sm_t *sm, roster_t *r, void *ud)
{
    sub_req_t *req = ud;
    if (!r->is_loaded) {
        sub_saved(sm, r, req, ST_UNAVAILABLE);
        return;
    }
    const char *contact = elem_attr(req->stanza, "from");
    ritem_t *it = roster_find(r, contact);
    const char *type = req->type;
    bool changed = false;
    if (is(type, "subscribe")) {
        if (it && (it->sub & SUB_FROM)) {
            /* Already subscribed: the server answers for the user. */
            req->then_approve = true;
        } else if (it && it->preapproved) {
            it->sub |= SUB_FROM;
            it->preapproved = false;
            changed = req->then_approve = req->then_presence = true;
        } else {
            /* Kept until the user answers; shown now if online, else at
             * the next available presence. */
            if (!it && !has_room(r)) {
                sub_refuse(sm, r, req);
                return;
            }
            if (!it) it = roster_add(r, contact);
            keep_request(it, req->stanza);
            changed = req->then_deliver = true;
        }
    } else if (is(type, "subscribed")) {
        if (it && it->ask) {
            it->sub |= SUB_TO;
            it->ask = false;
            changed = req->then_deliver = true;
        }
    } else if (is(type, "unsubscribe")) {
        if (it && (it->sub & SUB_FROM)) {
            it->sub &= ~SUB_FROM;
            changed = req->then_deliver = req->then_unavailable = true;
        }
        if (it && it->pending_in) {
            ritem_set(&it->pending_in, NULL);
            changed = req->then_deliver = true;
        }
    } else { /* unsubscribed */
        if (it && ((it->sub & SUB_TO) || it->ask)) {
            it->sub &= ~SUB_TO;
            it->ask = false;
            changed = req->then_deliver = true;
        }
    }
    req->it = it;
    if (changed)
        sub_save(sm, r, req);
    else
        sub_finish(sm, r, req);
}

static sub_req_t *sub_req_new(sm_pkt_t *pkt, const char *from, const char *to, bool is_inbound)
{
    sub_req_t *req = calloc(1, sizeof(*req));
    if (!req) log_fatal("out of memory");
    req->pkt = sm_pkt_hold(pkt);
    req->stanza = elem_copy(arena_new(0), pkt->stanza);
    elem_set_attr(req->stanza, "from", from);
    elem_set_attr(req->stanza, "to", to);
    elem_set_attr(req->stanza, "id", elem_attr(pkt->stanza, "id"));
    req->type = pkt->type;
    req->is_inbound = is_inbound;
    return req;
}

/* ---- hooks ------------------------------------------------------------ */

static sm_verdict_t on_session_stanza(sm_t *sm, sm_pkt_t *pkt)
{
    if (is(pkt->kind, "iq")) {
        if (!elem_child(pkt->stanza, NS_ROSTER, "query")) return SM_PASS;
        if (pkt->to && !(jid_equal_bare(pkt->to, pkt->from) && !jid_has_resource(pkt->to)))
            return SM_PASS;
        return roster_iq(sm, pkt);
    }
    if (!is(pkt->kind, "presence") || !is_subscription_type(pkt->type)) return SM_PASS;
    /* A subscription without a contact, or to oneself, means nothing. */
    if (!pkt->to || jid_equal_bare(pkt->to, pkt->from)) return SM_HANDLED;
    /* RFC 6121 §3.1.2: stamped with the bare JIDs. */
    sub_req_t *req = sub_req_new(pkt, jid_bare(pkt->from), jid_bare(pkt->to), false);
    roster_with(sm, jid_bare(pkt->from), outbound_op, req);
    return SM_HANDLED;
}

static sm_verdict_t on_user_stanza(sm_t *sm, sm_pkt_t *pkt)
{
    if (!is(pkt->kind, "presence") || !is_subscription_type(pkt->type)) return SM_PASS;
    if (jid_equal_bare(pkt->to, pkt->from)) return SM_HANDLED;
    sub_req_t *req = sub_req_new(pkt, jid_bare(pkt->from), jid_bare(pkt->to), true);
    roster_with(sm, jid_bare(pkt->to), inbound_op, req);
    return SM_HANDLED;
}

/* RFC 6121 §3.1.3: requests kept for an offline user are shown when a
 * session becomes available. */
static void pending_op(sm_t *sm, roster_t *r, void *ud)
{
    jid_t *full = ud;
    sess_t *s = sm_session(sm, full);
    if (s && r->is_loaded) {
        for (const ritem_t *it = r->items; it; it = it->next) {
            if (!it->pending_in) continue;
            arena_t *a = arena_new(0);
            elem_t *p = xml_parse_fragment(a, it->pending_in, strlen(it->pending_in), NS_CLIENT);
            if (p) sm_send_to_sess(sm, s, p);
            arena_free(a);
        }
    }
    jid_free(full);
    roster_done(sm, r);
}

static sm_verdict_t on_available(sm_t *sm, sm_pkt_t *pkt)
{
    roster_with(sm, jid_bare(pkt->from), pending_op, jid_dup(pkt->from));
    return SM_PASS;
}

static void warm_op(sm_t *sm, roster_t *r, void *ud)
{
    (void)ud;
    roster_done(sm, r);
}

static sm_verdict_t on_session_start(sm_t *sm, sm_pkt_t *pkt)
{
    /* Load the roster now, while the client is still negotiating. */
    roster_with(sm, jid_bare(pkt->from), warm_op, NULL);
    return SM_PASS;
}

static sm_verdict_t on_session_end(sm_t *sm, sm_pkt_t *pkt)
{
    roster_forget_if_idle(sm, jid_bare(pkt->from));
    return SM_PASS;
}

/* ---- invitations (XEP-0401) ---------------------------------------------- */

/* The op on r is over; a roster of a user without sessions leaves memory. */
static void befriend_done(sm_t *sm, roster_t *r)
{
    char *owner = strdup(r->owner);
    if (!owner) log_fatal("out of memory");
    roster_done(sm, r);
    if (!sm_sessions(sm, owner)) roster_forget_if_idle(sm, owner);
    free(owner);
}

/* Someone registered with a user's invitation: the inviter and the new
 * account are subscribed to each other (XEP-0401, "Redeeming a User
 * Invitation": both rosters end at both). Each shard does its own user's
 * half (the c2s tells both, sm/session.c), pushed to its sessions; their
 * presence flows at the next available presence, like any contacts'. A
 * full roster keeps its items as they are, and is logged. */
static void befriend_saved(sm_t *sm, roster_t *r, void *ud, st_status_t status)
{
    char *contact = ud;
    ritem_t *it = roster_find(r, contact);
    if (status != ST_OK)
        log_warn("invite: %s and %s not subscribed to each other: %s", r->owner, contact,
                 store_condition(status));
    else if (it)
        push(sm, r, it, false);
    free(contact);
    befriend_done(sm, r);
}

static void befriend_op(sm_t *sm, roster_t *r, void *ud)
{
    char *contact = ud;
    ritem_t *it = r->is_loaded ? roster_find(r, contact) : NULL;
    if (r->is_loaded && !it && has_room(r)) it = roster_add(r, contact);
    if (!it) {
        log_warn("invite: %s's roster %s: %s not added", r->owner,
                 r->is_loaded ? "is full" : "did not load", contact);
        free(contact);
        befriend_done(sm, r);
        return;
    }
    it->sub = SUB_TO | SUB_FROM;
    it->ask = false;
    it->preapproved = false;
    ritem_set(&it->pending_in, NULL);
    roster_save(sm, r, it, false, befriend_saved, contact);
}

static sm_verdict_t on_account(sm_t *sm, sm_pkt_t *pkt)
{
    const char *text = elem_attr(pkt->stanza, "contact");
    jid_t *contact = text ? jid_new(text, strlen(text), NULL) : NULL;
    if (contact && jid_has_node(contact) && !jid_has_resource(contact) &&
        strcmp(jid_bare(contact), jid_bare(pkt->from)) != 0) {
        char *copy = strdup(jid_bare(contact));
        if (!copy) log_fatal("out of memory");
        roster_with(sm, jid_bare(pkt->from), befriend_op, copy);
    }
    jid_free(contact);
    return SM_PASS;
}

void mod_roster_init(sm_t *sm); /* listed in modules.c */

void mod_roster_init(sm_t *sm)
{
    roster_max = (int)config_int(sm_config(sm), "sm.roster-max");
    sm_hook(sm, SM_CHAIN_IN_SESS, 200, on_session_stanza);
    sm_hook(sm, SM_CHAIN_IN_USER, 200, on_user_stanza);
    sm_hook(sm, SM_CHAIN_AVAILABLE, 200, on_available);
    sm_hook(sm, SM_CHAIN_SESS_START, 200, on_session_start);
    /* After mod_presence's broadcast, which reads the roster. */
    sm_hook(sm, SM_CHAIN_SESS_END, 900, on_session_end);
    sm_hook(sm, SM_CHAIN_ACCOUNT, 200, on_account);
    sm_feature(sm, NS_ROSTER);
}
