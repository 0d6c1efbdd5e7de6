/* session.c — the session protocol of DESIGN.md, the sm's side.
 *
 * A c2s asks <session action='start' jid='full' cid='…'/>; the sm checks
 * the account exists and the domain is ours, ends an older session of the
 * same full JID (RFC 6120 §7.7.2.2: the newer one wins, the older gets the
 * conflict stream error), and answers action='started' with a random sid,
 * or action='failed' with a stanza-shaped <error/>. action='end' (the
 * client left) and a c2s going away end sessions; sm_end_session() ends
 * one from the server's side with action='ended'. Every end runs
 * SM_CHAIN_SESS_END (mod_presence broadcasts the unavailable presence).
 *
 * Only a c2s may speak this protocol (core.c checks the route's role), and
 * a session's stanzas count only from the c2s that started it, with the
 * cid and sid it was given. Besides sessions, a c2s tells of an account it
 * created by in-band registration, so that the sm stops answering for it
 * as for a nonexistent one (the negative cache of deliver.c):
 *   <account xmlns='urn:hearth:session:1' action='created' jid='BARE'/>
 * routed to the account's domain with user='BARE' (its shard); with
 * contact='INVITER' when it registered with a user's invitation (XEP-0401),
 * and then also, to the inviter's shard (user='INVITER'),
 *   <account xmlns='urn:hearth:session:1' action='invited' jid='INVITER'
 *            contact='BARE'/>
 * so that each shard subscribes its own user to the other (mod_roster). */
#include <stdlib.h>
#include <string.h>

#include "core.h"

typedef struct start {
    char *c2s, *cid;
    jid_t *jid;
} start_t;

/* An answer to a c2s about one of its connections. */
static void send_session(sm_t *sm, const char *c2s, const char *cid, const jid_t *jid,
                         elem_t *session)
{
    buf_t *b = &sm->out;
    buf_reset(b);
    buf_appends(b, "<route to='");
    xml_escape(b, c2s, strlen(c2s), true);
    buf_appends(b, "' from='");
    const char *domain = sm_is_local(sm, jid_domain(jid)) ? jid_domain(jid) : sm_domain(sm);
    xml_escape(b, domain, strlen(domain), true);
    buf_appends(b, "' user='");
    xml_escape(b, jid_bare(jid), strlen(jid_bare(jid)), true);
    buf_appends(b, "' cid='");
    xml_escape(b, cid, strlen(cid), true);
    buf_appends(b, "'>");
    elem_serialize(session, NS_HEARTH_COMPONENT, b);
    buf_appends(b, "</route>");
    if (comp_send_raw(sm->comp, b->data, b->len) < 0)
        log_info("router link down: session answer for %s lost", jid_full(jid));
}

static void fail(sm_t *sm, const char *c2s, const char *cid, const jid_t *jid, const char *jid_text,
                 const char *condition)
{
    arena_t *a = arena_new(0);
    elem_t *s = elem_new(a, NS_HEARTH_SESSION, "session");
    elem_set_attr(s, "action", "failed");
    elem_set_attr(s, "jid", jid_text);
    elem_set_attr(s, "cid", cid);
    xmpp_stanza_error(s, condition, NULL);
    elem_set_attr(s, "type", NULL);
    if (jid) {
        send_session(sm, c2s, cid, jid, s);
    } else {
        /* Not even a JID to route by: answer as the server. */
        jid_t *server = jid_new(sm_domain(sm), strlen(sm_domain(sm)), NULL);
        send_session(sm, c2s, cid, server, s);
        jid_free(server);
    }
    log_info("session for %s on %s refused: %s", jid_text, cid, condition);
    arena_free(a);
}

/* A packet for the session chains: a <session/> with from = the full JID. */
static sm_pkt_t *session_pkt(sm_t *sm, sess_t *s, const elem_t *request, const char *action,
                             const char *reason)
{
    elem_t *e = request ? elem_copy(arena_new(0), request)
                        : elem_new(arena_new(0), NS_HEARTH_SESSION, "session");
    if (!request) elem_set_attr(e, "action", action);
    if (reason) elem_set_attr(e, "reason", reason);
    elem_set_attr(e, "to", NULL);
    elem_set_attr(e, "from", jid_full(s->jid));
    sm_pkt_t *p = sm_pkt_new(sm, e);
    if (!p) log_fatal("session %s: its own JID does not parse", s->sid);
    p->sess = s;
    return p;
}

static void sess_add(sm_t *sm, sess_t *s)
{
    sess_t *first = map_get(&sm->users, jid_bare(s->jid));
    if (!first) {
        map_put(&sm->users, jid_bare(s->jid), s);
    } else {
        while (first->next)
            first = first->next;
        first->next = s;
    }
    map_put(&sm->sessions_by_sid, s->sid, s);
    sm->nsessions++;
}

static void sess_remove(sm_t *sm, sess_t *s)
{
    sess_t *first = map_get(&sm->users, jid_bare(s->jid));
    if (first == s) {
        if (s->next)
            map_put(&sm->users, jid_bare(s->jid), s->next);
        else
            map_del(&sm->users, jid_bare(s->jid));
    } else {
        for (sess_t *p = first; p; p = p->next)
            if (p->next == s) {
                p->next = s->next;
                break;
            }
    }
    map_del(&sm->sessions_by_sid, s->sid);
    sm->nsessions--;
}

/* Run the end chain, then forget and free the session. */
static void sess_finish(sm_t *sm, sess_t *s, const elem_t *request, const char *reason)
{
    sm_pkt_t *p = session_pkt(sm, s, request, "end", reason);
    sm_chain_run(sm, SM_CHAIN_SESS_END, p);
    sm_pkt_release(p);
    sess_remove(sm, s);
    log_info("session %s of %s on %s ended%s%s", s->sid, jid_full(s->jid), s->cid,
             reason ? ": " : "", reason ? reason : "");
    if (s->presence) arena_free(s->presence->arena);
    jid_free(s->jid);
    free(s->c2s);
    free(s->cid);
    free(s);
}

void sm_end_session(sm_t *sm, sess_t *s, const char *reason)
{
    arena_t *a = arena_new(0);
    elem_t *e = elem_new(a, NS_HEARTH_SESSION, "session");
    elem_set_attr(e, "action", "ended");
    elem_set_attr(e, "reason", reason ? reason : "reset");
    elem_set_attr(e, "sid", s->sid);
    elem_set_attr(e, "cid", s->cid);
    elem_set_attr(e, "jid", jid_full(s->jid));
    sm_send_to_sess(sm, s, e);
    arena_free(a);
    sess_finish(sm, s, NULL, reason ? reason : "reset");
}

static void start_free(start_t *st)
{
    free(st->c2s);
    free(st->cid);
    jid_free(st->jid);
    free(st);
}

static void start_checked(sm_t *sm, void *ud, int exists)
{
    start_t *st = ud;
    if (exists <= 0) {
        fail(sm, st->c2s, st->cid, st->jid, jid_full(st->jid),
             exists < 0 ? "internal-server-error" : "not-authorized");
        start_free(st);
        return;
    }
    sess_t *old = sm_session(sm, st->jid);
    if (old) sm_end_session(sm, old, "conflict");

    sess_t *s = calloc(1, sizeof(*s));
    if (!s) log_fatal("out of memory");
    s->jid = st->jid;
    s->c2s = st->c2s;
    s->cid = st->cid;
    free(st);
    do
        random_hex(s->sid, 16);
    while (map_get(&sm->sessions_by_sid, s->sid));
    sess_add(sm, s);

    arena_t *a = arena_new(0);
    elem_t *e = elem_new(a, NS_HEARTH_SESSION, "session");
    elem_set_attr(e, "action", "started");
    elem_set_attr(e, "jid", jid_full(s->jid));
    elem_set_attr(e, "cid", s->cid);
    elem_set_attr(e, "sid", s->sid);
    sm_send_to_sess(sm, s, e);
    log_info("session %s of %s on %s started", s->sid, jid_full(s->jid), s->cid);

    elem_set_attr(e, "action", "start");
    sm_pkt_t *p = session_pkt(sm, s, e, NULL, NULL);
    arena_free(a);
    sm_chain_run(sm, SM_CHAIN_SESS_START, p);
    sm_pkt_release(p);
}

static void start(sm_t *sm, const char *c2s, elem_t *req)
{
    const char *cid = elem_attr(req, "cid"), *jid_text = elem_attr(req, "jid");
    if (!cid || !*cid) {
        log_warn("%s: session request without cid dropped", c2s);
        return;
    }
    if (!jid_text) jid_text = "";
    const char *why = NULL;
    jid_t *jid = jid_new(jid_text, strlen(jid_text), &why);
    if (!jid || !jid_has_node(jid) || !jid_has_resource(jid)) {
        fail(sm, c2s, cid, NULL, jid_text, "jid-malformed");
        jid_free(jid);
        return;
    }
    if (!sm_is_local(sm, jid_domain(jid))) {
        fail(sm, c2s, cid, jid, jid_text, "not-allowed");
        jid_free(jid);
        return;
    }
    start_t *st = calloc(1, sizeof(*st));
    if (!st || !(st->c2s = strdup(c2s)) || !(st->cid = strdup(cid))) log_fatal("out of memory");
    st->jid = jid;
    sm_account_check(sm, jid_bare(jid), start_checked, st);
}

/* A c2s sent for a session we do not have (this sm restarted, or the
 * session ended meanwhile): tell it the session is over, so that its
 * client is not left talking to nobody. */
static void end_unknown(sm_t *sm, const char *c2s, const char *cid, const char *sid,
                        const char *user)
{
    jid_t *jid = user ? jid_new(user, strlen(user), NULL) : NULL;
    if (!jid || !sm_is_local(sm, jid_domain(jid))) {
        jid_free(jid);
        jid = jid_new(sm_domain(sm), strlen(sm_domain(sm)), NULL);
    }
    arena_t *a = arena_new(0);
    elem_t *e = elem_new(a, NS_HEARTH_SESSION, "session");
    elem_set_attr(e, "action", "ended");
    elem_set_attr(e, "reason", "reset");
    elem_set_attr(e, "cid", cid);
    if (sid) elem_set_attr(e, "sid", sid);
    send_session(sm, c2s, cid, jid, e);
    arena_free(a);
    jid_free(jid);
}

sess_t *sess_of_route(sm_t *sm, const elem_t *route)
{
    const char *sid = elem_attr(route, "sid"), *cid = elem_attr(route, "cid");
    const char *c2s = elem_attr(route, "from");
    sess_t *s = sid ? map_get(&sm->sessions_by_sid, sid) : NULL;
    if (!s || !cid || !c2s || strcmp(s->cid, cid) != 0 || strcmp(s->c2s, c2s) != 0) {
        log_info("route from %s for %s, no such session of it: dropped", c2s ? c2s : "?",
                 cid ? cid : "?");
        if (c2s && cid) end_unknown(sm, c2s, cid, sid, elem_attr(route, "user"));
        return NULL;
    }
    return s;
}

/* <account action='created' jid='BARE' [contact='BARE']/>: c2s registered
 * an account (with the invitation of contact); <account action='invited'
 * jid='BARE' contact='BARE'/>: someone registered with jid's invitation
 * (XEP-0401). Modules hear of both on SM_CHAIN_ACCOUNT. */
static void account_event(sm_t *sm, const char *c2s, elem_t *req)
{
    const char *action = elem_attr(req, "action"), *text = elem_attr(req, "jid");
    jid_t *j = text ? jid_new(text, strlen(text), NULL) : NULL;
    bool is_created = action && strcmp(action, "created") == 0;
    bool is_invited = action && strcmp(action, "invited") == 0;
    if (!(is_created || is_invited) || !j || !jid_has_node(j) || jid_has_resource(j) ||
        !sm_is_local(sm, jid_domain(j))) {
        log_warn("%s: account event '%s' for '%s' not understood", c2s, action ? action : "",
                 text ? text : "");
        jid_free(j);
        return;
    }
    if (is_created) sm_account_created(sm, jid_bare(j));
    elem_t *event = elem_copy(arena_new(0), req);
    elem_set_attr(event, "from", jid_bare(j));
    sm_pkt_t *pkt = sm_pkt_new(sm, event);
    if (pkt) {
        sm_chain_run(sm, SM_CHAIN_ACCOUNT, pkt);
        sm_pkt_release(pkt);
    }
    jid_free(j);
}

void sess_on_request(sm_t *sm, const elem_t *route, elem_t *req)
{
    const char *action = elem_attr(req, "action"), *c2s = elem_attr(route, "from");
    if (!c2s || !action) return;
    if (strcmp(req->name, "account") == 0) {
        account_event(sm, c2s, req);
        return;
    }
    if (strcmp(req->name, "session") != 0) {
        log_warn("%s: <%s/> is not part of the session protocol", c2s, req->name);
        return;
    }
    if (strcmp(action, "start") == 0) {
        start(sm, c2s, req);
    } else if (strcmp(action, "end") == 0) {
        const char *sid = elem_attr(req, "sid") ? elem_attr(req, "sid") : elem_attr(route, "sid");
        const char *cid = elem_attr(req, "cid") ? elem_attr(req, "cid") : elem_attr(route, "cid");
        sess_t *s = sid ? map_get(&sm->sessions_by_sid, sid) : NULL;
        if (!s || strcmp(s->c2s, c2s) != 0 || (cid && strcmp(s->cid, cid) != 0)) {
            log_debug("%s: end of an unknown session %s", c2s, sid ? sid : "(no sid)");
            return;
        }
        sess_finish(sm, s, req, NULL);
    } else {
        log_warn("%s: unknown session action '%s'", c2s, action);
    }
}

static void collect(sess_t *s, void *ud)
{
    void **v = ud;
    const char *c2s = v[0];
    sess_t ***list = v[1];
    size_t *n = v[2];
    if (c2s && strcmp(s->c2s, c2s) != 0) return;
    sess_t **l = realloc(*list, (*n + 1) * sizeof(*l));
    if (!l) log_fatal("out of memory");
    l[(*n)++] = s;
    *list = l;
}

static void end_matching(sm_t *sm, const char *c2s, const char *reason)
{
    sess_t **list = NULL;
    size_t n = 0;
    void *v[3] = {(void *)c2s, &list, &n};
    sm_each_session(sm, collect, v);
    for (size_t i = 0; i < n; i++)
        sess_finish(sm, list[i], NULL, reason);
    free(list);
    if (n) log_notice("%zu sessions ended: %s", n, reason);
}

void sess_end_c2s(sm_t *sm, const char *c2s)
{
    end_matching(sm, c2s, "c2s gone");
}

void sess_end_all(sm_t *sm)
{
    end_matching(sm, NULL, "sm stopping");
}
