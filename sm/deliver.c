/* deliver.c — where a stanza goes: RFC 6121 §8 for local accounts, the
 * server's own address, and everything else through the router.
 *
 * Stanzas come from our sessions (from stamped with the session's full
 * JID, then SM_CHAIN_IN_SESS), from the router (other servers, components,
 * other sm shards) and from modules (sm_deliver). A stanza for a local
 * account first needs the account to exist (sm_account_check: cached,
 * else one lookup in `auth`); then SM_CHAIN_IN_USER, then the delivery
 * rules of RFC 6121 §8.5.2 (bare JID) and §8.5.3 (full JID); a message no
 * session can take goes to SM_CHAIN_UNDELIVERED (mod_offline). Nothing
 * here answers in a way that reveals whether a user is online to someone
 * the user did not allow (RFC 6121 §8.5.1, §4.3). */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define ACCOUNT_CACHE_MAX 200000
/* How long "no such account" is believed: long enough that a flood of
 * stanzas to one nonexistent name costs one lookup, short enough that an
 * account made where the sm is not told (by hand in the store) soon gets
 * its stanzas. Creation through c2s or hearthctl ends it at once. */
#define ACCOUNT_ABSENT_TTL_MS 30000
#define ACCOUNT_ABSENT_MAX 100000

/* ---- account existence ------------------------------------------------ */

typedef struct waiter {
    account_cb cb;
    void *ud;
} waiter_t;

typedef struct check {
    sm_t *sm;
    waiter_t *waiters;
    int n, cap;
    char bare[];
} check_t;

static void check_wait(check_t *c, account_cb cb, void *ud)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 4;
        c->waiters = realloc(c->waiters, (size_t)c->cap * sizeof(*c->waiters));
        if (!c->waiters) log_fatal("out of memory");
    }
    c->waiters[c->n++] = (waiter_t){cb, ud};
}

static void account_known(sm_t *sm, const char *bare)
{
    if (sm->accounts.count >= ACCOUNT_CACHE_MAX) {
        map_free(&sm->accounts);
        map_init(&sm->accounts);
    }
    map_put(&sm->accounts, bare, (void *)1);
}

static void account_absent(sm_t *sm, const char *bare)
{
    if (sm->absent.count >= ACCOUNT_ABSENT_MAX) {
        map_free(&sm->absent);
        map_init(&sm->absent);
    }
    map_put(&sm->absent, bare, (void *)(uintptr_t)(uv_now(sm->loop) + ACCOUNT_ABSENT_TTL_MS));
}

/* Known not to exist, and not for too long. */
static bool is_absent(sm_t *sm, const char *bare)
{
    void *expiry = map_get(&sm->absent, bare);
    if (!expiry) return false;
    if ((uint64_t)(uintptr_t)expiry > uv_now(sm->loop)) return true;
    map_del(&sm->absent, bare);
    return false;
}

static void account_checked(void *ud, const st_result_t *res)
{
    check_t *c = ud;
    sm_t *sm = c->sm;
    int exists = st_status(res) != ST_OK ? -1 : st_rows(res) > 0;
    if (exists < 0)
        log_warn("account lookup for %s failed: %s", c->bare, st_error(res));
    else if (exists)
        account_known(sm, c->bare);
    else
        account_absent(sm, c->bare);
    map_del(&sm->checking, c->bare);
    for (int i = 0; i < c->n; i++)
        c->waiters[i].cb(sm, c->waiters[i].ud, exists);
    free(c->waiters);
    free(c);
}

void sm_account_check(sm_t *sm, const char *bare, account_cb cb, void *ud)
{
    check_t *c = map_get(&sm->checking, bare);
    if (c) {
        check_wait(c, cb, ud);
        return;
    }
    if (map_get(&sm->users, bare) || map_get(&sm->accounts, bare)) {
        metric_inc(&sm_metrics.account_hits);
        cb(sm, ud, 1);
        return;
    }
    if (is_absent(sm, bare)) {
        metric_inc(&sm_metrics.account_hits);
        cb(sm, ud, 0);
        return;
    }
    sm_account_verify(sm, bare, cb, ud);
}

void sm_account_verify(sm_t *sm, const char *bare, account_cb cb, void *ud)
{
    check_t *c = map_get(&sm->checking, bare);
    if (c) {
        check_wait(c, cb, ud);
        return;
    }
    metric_inc(&sm_metrics.account_misses);
    size_t len = strlen(bare);
    c = calloc(1, sizeof(*c) + len + 1);
    if (!c) log_fatal("out of memory");
    c->sm = sm;
    memcpy(c->bare, bare, len + 1);
    check_wait(c, cb, ud);
    map_put(&sm->checking, bare, c);
    const char *params[] = {bare};
    storage_query(sm->st, "SELECT 1 FROM auth WHERE owner = $1", 1, params, account_checked, c);
}

void sm_account_forget(sm_t *sm, const char *bare)
{
    map_del(&sm->accounts, bare);
}

void sm_account_created(sm_t *sm, const char *bare)
{
    map_del(&sm->absent, bare);
}

/* ---- helpers ---------------------------------------------------------- */

static bool is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

static bool is_stanza_name(const char *name)
{
    return name && (is(name, "message") || is(name, "presence") || is(name, "iq"));
}

static bool is_local_account(const sm_t *sm, const jid_t *j)
{
    return j && jid_has_node(j) && sm_is_local(sm, jid_domain(j));
}

static bool is_request(const sm_pkt_t *pkt)
{
    return is(pkt->kind, "iq") && (is(pkt->type, "get") || is(pkt->type, "set"));
}

/* A route's payload as a stanza of its own: no parent, no sibling, in
 * jabber:client. */
static elem_t *untie(elem_t *payload)
{
    elem_unlink(payload);
    sm_stanza_normalize(payload);
    return payload;
}

/* The same, copied out of the route's arena, which dies with the route. */
static elem_t *take(const elem_t *payload)
{
    return untie(elem_copy(arena_new(0), payload));
}

void deliver_route_out(sm_t *sm, sm_pkt_t *pkt, const char *user)
{
    /* Without the router, or without s2s for a remote domain (one of them
     * restarting), it waits (hold.c). */
    const char *domain = jid_domain(pkt->to);
    bool is_remote = !sm_is_local(sm, domain) && !sm_is_advertised(sm, domain);
    if (!comp_is_ready(sm->comp) || (is_remote && sm->had_s2s && !sm_is_advertised(sm, "s2s"))) {
        hold_out(sm, pkt, user);
        return;
    }
    const char *from =
        sm_is_local(sm, jid_domain(pkt->from)) ? jid_domain(pkt->from) : sm_domain(sm);
    if (is_remote)
        ack_to_s2s(sm, domain, from, user, pkt->stanza); /* kept until s2s has it */
    else
        comp_send_to(sm->comp, domain, from, user, pkt->stanza);
}

/* ---- local delivery (RFC 6121 §8.5) ----------------------------------- */

/* The highest priority among the available sessions of a user, or -1. */
static int best_priority(const sess_t *first)
{
    int best = -1;
    for (const sess_t *s = first; s; s = s->next)
        if (s->is_available && s->priority > best) best = s->priority;
    return best;
}

/* §8.5.2.1.1: a message to the bare JID goes to the available sessions of
 * highest non-negative priority (best), or to every available one of
 * non-negative priority (all: headline). */
static bool is_recipient(const sess_t *s, int best, bool all)
{
    return best >= 0 && s->is_available && s->priority >= 0 && (all || s->priority == best);
}

/* Send to the sessions is_recipient() names. How many got it. */
static int to_best_sessions(sm_t *sm, sm_pkt_t *pkt, bool all)
{
    sess_t *first = sm_sessions(sm, jid_bare(pkt->to));
    int best = best_priority(first);
    if (best < 0) return 0;
    int n = 0;
    sm_fanout_begin(sm, pkt->stanza);
    for (sess_t *s = first; s; s = s->next)
        if (is_recipient(s, best, all)) {
            sm_send_to_sess(sm, s, pkt->stanza);
            n++;
        }
    sm_fanout_end(sm, pkt->stanza);
    return n;
}

bool sm_message_goes_to(sm_t *sm, const sm_pkt_t *pkt, const sess_t *s)
{
    if (jid_has_resource(pkt->to)) {
        sess_t *to = sm_session(sm, pkt->to);
        if (to) return to == s;
    }
    if (is(pkt->type, "error") || is(pkt->type, "groupchat")) return false;
    return is_recipient(s, best_priority(sm_sessions(sm, jid_bare(pkt->to))),
                        is(pkt->type, "headline"));
}

static void message_to_user(sm_t *sm, sm_pkt_t *pkt)
{
    const char *type = pkt->type;
    if (jid_has_resource(pkt->to)) {
        sess_t *s = sm_session(sm, pkt->to);
        if (s) {
            sm_send_to_sess(sm, s, pkt->stanza);
            return;
        }
        /* RFC 6121 §8.5.3.2.1: no such resource; normal, chat and
         * headline go on as if to the bare JID. */
    }
    if (is(type, "error")) return;
    if (is(type, "groupchat")) {
        /* §8.5.2.1.1: groupchat to a user is refused. */
        sm_reply_error(sm, pkt, "service-unavailable");
        return;
    }
    if (is(type, "headline")) {
        /* §8.5.2.1.1: headline to every non-negative resource, else dropped. */
        to_best_sessions(sm, pkt, true);
        return;
    }
    /* §8.5.2.1.1: chat and normal (and any unknown type, treated as normal)
     * to the available resources of highest non-negative priority;
     * §8.5.2.2: with none, offline storage or service-unavailable. */
    if (to_best_sessions(sm, pkt, false) > 0) return;
    if (hold_gathering(sm, pkt)) return; /* the user may be online still (hold.c) */
    if (sm_chain_run(sm, SM_CHAIN_UNDELIVERED, pkt) == SM_HANDLED) return;
    sm_reply_error(sm, pkt, "service-unavailable");
}

void deliver_waiting(sm_t *sm, sm_pkt_t *pkt)
{
    origin_t *was = sm->origin;
    sm->origin = pkt->origin; /* its copies carry their origin mark (ack.c) */
    message_to_user(sm, pkt);
    sm->origin = was;
}

static void presence_to_user(sm_t *sm, sm_pkt_t *pkt)
{
    const char *type = pkt->type;
    /* Subscriptions and probes are mod_roster's and mod_presence's; what
     * reaches here is available, unavailable or error presence. */
    if (!is(type, "") && !is(type, "unavailable") && !is(type, "error")) return;
    if (jid_has_resource(pkt->to)) {
        /* §8.5.3.1 / §8.5.3.2.2: to that resource, or ignored. */
        sess_t *s = sm_session(sm, pkt->to);
        if (s) sm_send_to_sess(sm, s, pkt->stanza);
        return;
    }
    /* §8.5.2.1.2: to every available resource. RFC 6121 says nothing of
     * errors to the bare JID; those come back for what the user sent from
     * it (a subscription request to a server that can't be reached, RFC
     * 6121 §3.1.2 stamps it with the bare JID), so its sessions hear them
     * like any other answer. */
    sm_fanout_begin(sm, pkt->stanza);
    for (sess_t *s = sm_sessions(sm, jid_bare(pkt->to)); s; s = s->next)
        if (s->is_available) sm_send_to_sess(sm, s, pkt->stanza);
    sm_fanout_end(sm, pkt->stanza);
}

static void iq_to_user(sm_t *sm, sm_pkt_t *pkt)
{
    if (jid_has_resource(pkt->to)) {
        sess_t *s = sm_session(sm, pkt->to);
        if (s) {
            sm_send_to_sess(sm, s, pkt->stanza);
            return;
        }
    }
    /* §8.5.3.2.3 (no such resource) and §8.5.2.1.3 (bare JID: the server
     * answers for the account, and no module did). */
    if (is_request(pkt)) sm_reply_error(sm, pkt, "service-unavailable");
}

static void user_deliver(sm_t *sm, sm_pkt_t *pkt)
{
    if (sm_chain_run(sm, SM_CHAIN_IN_USER, pkt) == SM_HANDLED) return;
    if (is(pkt->kind, "message"))
        message_to_user(sm, pkt);
    else if (is(pkt->kind, "presence"))
        presence_to_user(sm, pkt);
    else
        iq_to_user(sm, pkt);
}

/* RFC 6121 §8.5.1: no such account. Presence is ignored whatever it is;
 * nothing says whether the name exists beyond what an error must. */
static void no_account(sm_t *sm, sm_pkt_t *pkt)
{
    if (is(pkt->kind, "message")) {
        if (is(pkt->type, "groupchat") || is(pkt->type, "headline") || is(pkt->type, "error"))
            return;
        sm_reply_error(sm, pkt, "service-unavailable");
    } else if (is_request(pkt)) {
        sm_reply_error(sm, pkt, "service-unavailable");
    }
}

static void user_checked(sm_t *sm, void *ud, int exists)
{
    sm_pkt_t *pkt = ud;
    /* Called back maybe later: what it makes carries its origin (ack.c). */
    origin_t *was = sm->origin;
    sm->origin = pkt->origin;
    if (exists > 0) {
        user_deliver(sm, pkt);
    } else if (exists == 0) {
        no_account(sm, pkt);
    } else if (is_request(pkt) || (is(pkt->kind, "message") && !is(pkt->type, "error") &&
                                   !is(pkt->type, "groupchat") && !is(pkt->type, "headline"))) {
        /* The store is down: say so rather than drop (nothing is lost
         * silently). */
        sm_reply_error(sm, pkt, "internal-server-error");
    }
    sm->origin = was;
    sm_pkt_release(pkt);
}

static void to_server(sm_t *sm, sm_pkt_t *pkt)
{
    if (sm_chain_run(sm, SM_CHAIN_IN_SERVER, pkt) == SM_HANDLED) return;
    if (is_request(pkt)) sm_reply_error(sm, pkt, "service-unavailable");
}

/* Send pkt on by its to. from_router: it came from the router, which
 * already picked this shard; it is never sent back out. */
static void send_on(sm_t *sm, sm_pkt_t *pkt, bool from_router)
{
    if (!pkt->to || (!jid_has_node(pkt->to) && sm_is_local(sm, jid_domain(pkt->to)))) {
        to_server(sm, pkt);
        return;
    }
    if (!from_router && is_local_account(sm, pkt->from) &&
        sm_chain_run(sm, SM_CHAIN_OUT, pkt) == SM_HANDLED)
        return;
    if (sm_is_local(sm, jid_domain(pkt->to))) {
        if (sm->shards > 1 && !from_router) {
            /* The router picks the shard that owns the account. */
            deliver_route_out(sm, pkt, jid_bare(pkt->to));
            return;
        }
        sm_account_check(sm, jid_bare(pkt->to), user_checked, sm_pkt_hold(pkt));
        return;
    }
    if (from_router) {
        log_debug("stanza from %s to %s is not for us: dropped", jid_full(pkt->from),
                  jid_full(pkt->to));
        return;
    }
    deliver_route_out(sm, pkt, jid_bare(pkt->from));
}

/* ---- entries ---------------------------------------------------------- */

/* RFC 6120 §8.2.3 and §8.3: what a stanza must have before anything else
 * looks at it. The condition to answer, or NULL when it is fine and then
 * its to, parsed, in *jto (NULL when it has none; the caller's to free). */
static const char *stanza_problem(const elem_t *st, jid_t **jto)
{
    const char *problem = NULL, *to = elem_attr(st, "to");
    *jto = to ? jid_new(to, strlen(to), NULL) : NULL;
    if (to && !*jto) return "jid-malformed";
    if (!is(st->name, "iq")) return NULL;
    const char *type = elem_attr(st, "type"), *id = elem_attr(st, "id");
    if (!id || !type) {
        problem = "bad-request";
    } else if (is(type, "get") || is(type, "set")) {
        const elem_t *child = elem_first(st);
        if (!child || elem_next(child, NULL, NULL)) problem = "bad-request";
    } else if (!is(type, "result") && !is(type, "error")) {
        problem = "bad-request";
    }
    if (problem) {
        jid_free(*jto);
        *jto = NULL;
    }
    return problem;
}

void deliver_from_sess(sm_t *sm, sess_t *sess, elem_t *payload)
{
    if (!is_stanza_name(payload->name)) {
        log_info("%s sent <%s/>, not a stanza: dropped", jid_full(sess->jid), payload->name);
        return;
    }
    /* The stanza stays where the parser put it: the packet takes the
     * route's arena instead of a copy (core.h). */
    elem_t *st = comp_keep_route(sm->comp) ? untie(payload) : take(payload);
    /* The server stamps every client stanza (RFC 6120 §8.1.2.1). */
    elem_set_attr(st, "from", jid_full(sess->jid));
    jid_t *jto;
    const char *problem = stanza_problem(st, &jto);
    if (problem) {
        if (xmpp_stanza_error(st, problem, NULL) == 0) {
            elem_set_attr(st, "from", NULL);
            sm_send_to_sess(sm, sess, st);
        }
        arena_free(st->arena);
        return;
    }
    sm_pkt_t *pkt = sm_pkt_new_jids(sm, st, jid_dup(sess->jid), jto);
    metric_inc(&sm_metrics.from_sess[metric_kind(pkt->kind)]);
    pkt->sess = sess;
    bool is_taken = sm_chain_run(sm, SM_CHAIN_IN_SESS, pkt) == SM_HANDLED;
    pkt->sess = NULL;
    if (!is_taken && strcmp(pkt->kind, "message") == 0) metric_inc(&sm_metrics.messages_routed);
    if (!is_taken) send_on(sm, pkt, false);
    sm_pkt_release(pkt);
}

/* May a daemon of role, bound as sender, route a stanza from `from`? s2s
 * speaks for remote domains only, another sm shard for anyone (its users,
 * and what it relays), a component or hearthctl only for the name it bound
 * (and the JIDs under it); nobody else sends stanzas of their own. */
static const char *sender_problem(const sm_t *sm, comp_role_t role, const char *sender,
                                  const jid_t *from)
{
    switch (role) {
    case ROLE_S2S:
        return sm_is_local(sm, jid_domain(from)) ? "s2s speaking for a local domain" : NULL;
    case ROLE_SM:
        return NULL;
    case ROLE_COMPONENT:
    case ROLE_ADMIN:
        return sender && strcmp(jid_domain(from), sender) == 0
                   ? NULL
                   : "a from outside the name the sender bound";
    case ROLE_NONE:
        return "a route with no role";
    default:
        return "a role that sends no stanzas of its own";
    }
}

void deliver_inbound(sm_t *sm, elem_t *payload, comp_role_t role, const char *sender)
{
    if (!is_stanza_name(payload->name)) {
        log_info("route with <%s/>, not a stanza: dropped", payload->name);
        return;
    }
    elem_t *st = comp_keep_route(sm->comp) ? untie(payload) : take(payload);
    jid_t *jto;
    const char *problem = stanza_problem(st, &jto);
    const char *from = elem_attr(st, "from");
    jid_t *jfrom = problem || !from ? NULL : jid_new(from, strlen(from), NULL);
    if (!jfrom) {
        if (problem || !from)
            log_info("stanza from %s refused: %s", from ? from : "(none)",
                     problem ? problem : "no from");
        else
            log_info("stanza with an invalid from dropped");
        jid_free(jto);
        arena_free(st->arena);
        return;
    }
    sm_pkt_t *pkt = sm_pkt_new_jids(sm, st, jfrom, jto);
    const char *refusal = sender_problem(sm, role, sender, pkt->from);
    if (refusal) {
        char why[JID_STRING_MAX + 128];
        snprintf(why, sizeof why, "%s (%s)", refusal, jid_full(pkt->from));
        sm_refuse(role, sender, why);
        sm_pkt_release(pkt);
        return;
    }
    pkt->role = role;
    metric_inc(&sm_metrics.from_router[metric_kind(pkt->kind)]);
    send_on(sm, pkt, true);
    sm_pkt_release(pkt);
}

void deliver_again(sm_t *sm, const elem_t *message)
{
    sm_pkt_t *pkt = sm_pkt_new(sm, take(message));
    if (!pkt) return;
    send_on(sm, pkt, true);
    sm_pkt_release(pkt);
}

/* A stanza for a session came back: its c2s is not at the router (it is
 * reconnecting, or gone and not yet advertised so). It is still in the
 * session's queue, and the session's stanzas wait for the c2s (hold.c).
 * With the session ended meanwhile, its queue was delivered anew as it
 * ended (ack.c): the bounce is a second copy, dropped. */
static void session_bounced(sm_t *sm, const elem_t *route)
{
    const char *c2s = elem_attr(route, "from"), *sid = elem_attr(route, "sid");
    sess_t *s = sid ? map_get(&sm->sessions_by_sid, sid) : NULL;
    if (c2s && s && strcmp(s->c2s, c2s) == 0) hold_c2s_away(sm, c2s);
}

void deliver_bounced(sm_t *sm, const elem_t *route, elem_t *payload)
{
    if (elem_attr(route, "cid") && is_stanza_name(payload->name)) {
        session_bounced(sm, route);
        return;
    }
    if (elem_attr(route, "cid") || !is_stanza_name(payload->name)) {
        log_debug("stanza for %s came back (%s): dropped",
                  elem_attr(route, "from") ? elem_attr(route, "from") : "?",
                  elem_attr(route, "error") ? elem_attr(route, "error") : "?");
        return;
    }
    const char *error = elem_attr(route, "error");
    elem_t *st = take(payload);
    /* Sent as s2s went away, or to a user of an sm shard that is
     * restarting (the router keeps its place): it waits (hold.c). */
    const char *to = elem_attr(st, "to");
    jid_t *jto = to ? jid_new(to, strlen(to), NULL) : NULL;
    bool is_remote = jto && sm->had_s2s && !sm_is_local(sm, jid_domain(jto)) &&
                     !sm_is_advertised(sm, jid_domain(jto)) && !sm_is_advertised(sm, "s2s");
    bool is_other_shard = jto && sm->shards > 1 && sm_is_local(sm, jid_domain(jto));
    jid_free(jto);
    if ((is_remote || is_other_shard) && error && is(error, "not-found")) {
        sm_pkt_t *pkt = sm_pkt_new(sm, st);
        if (!pkt) return;
        hold_out(sm, pkt, elem_attr(route, "user"));
        sm_pkt_release(pkt);
        return;
    }
    /* The router found no way to the stanza's domain: RFC 6120 §8.3.3.15. */
    const char *condition =
        error && is(error, "not-found") ? "remote-server-not-found" : "service-unavailable";
    if (xmpp_stanza_error(st, condition, NULL) < 0) {
        arena_free(st->arena);
        return;
    }
    sm_pkt_t *pkt = sm_pkt_new(sm, st);
    if (!pkt) return;
    send_on(sm, pkt, true);
    sm_pkt_release(pkt);
}

void sm_deliver(sm_t *sm, const elem_t *stanza)
{
    elem_t *st = take(stanza);
    sm_pkt_t *pkt = sm_pkt_new(sm, st);
    if (!pkt) {
        log_warn("sm_deliver: <%s/> without a valid from or to dropped", stanza->name);
        return;
    }
    send_on(sm, pkt, false);
    sm_pkt_release(pkt);
}
