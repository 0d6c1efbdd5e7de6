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
 * Between the sm and a c2s on its machine, these routes take their direct
 * link (common/direct.c) rather than the router; they are the same routes,
 * marked with the same role.
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
 * so that each shard subscribes its own user to the other (mod_roster).
 *
 * Reconciliation (sessions outlive a restart of the router or the sm;
 * c2s/session.c tells the c2s side). A c2s that lost sight of us
 * re-announces each session it holds:
 *   <session action='resume' jid='FULL' cid='…' sid='…' [roster='true']>
 *     [its last broadcast available presence]</session>
 * A session we have (same sid, c2s and cid) is kept as it is. One we do
 * not have (this sm restarted) is rebuilt with that sid: SM_CHAIN_SESS_START
 * runs, roster='true' makes it interested, and its presence goes through
 * the core as if the client had just sent it (broadcast, and probes that
 * bring the client its contacts' presence anew); its account is checked
 * after, and the session ends with not-authorized if it is gone. A resume
 * whose full JID has a newer session is answered ended/conflict. In turn,
 * when we see a c2s again (hold.c), we ask it about our sessions there:
 *   <session action='check'><held jid='FULL' cid='…' sid='…'/>…</session>
 * in batches of CHECK_BATCH, routed to it; it answers action='end' for
 * each one it no longer holds, then action='checked' (hold.c waits for
 * that before it sends what it held for the c2s). */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define CHECK_BATCH 256

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
    const char *domain = sm_is_local(sm, jid_domain(jid)) ? jid_domain(jid) : sm_domain(sm);
    comp_route_head(b, c2s, domain, jid_bare(jid), cid, NULL);
    buf_appends(b, ">");
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
    buf_t head = BUF_INIT;
    comp_route_head(&head, s->c2s, jid_domain(s->jid), jid_bare(s->jid), s->cid, s->sid);
    if (!(s->route_head = strndup(head.data, head.len))) log_fatal("out of memory");
    buf_free(&head);
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

/* Run the end chain, then forget and free the session; with redeliver
 * (its c2s died), the messages it never acknowledged go anew. */
static void sess_finish(sm_t *sm, sess_t *s, const elem_t *request, const char *reason,
                        bool redeliver)
{
    sm_pkt_t *p = session_pkt(sm, s, request, "end", reason);
    sm_chain_run(sm, SM_CHAIN_SESS_END, p);
    sm_pkt_release(p);
    sess_remove(sm, s);
    ack_session_ends(sm, s, redeliver);
    log_info("session %s of %s on %s ended%s%s", s->sid, jid_full(s->jid), s->cid,
             reason ? ": " : "", reason ? reason : "");
    if (s->presence) arena_free(s->presence->arena);
    jid_free(s->jid);
    free(s->c2s);
    free(s->cid);
    free(s->route_head);
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
    sess_finish(sm, s, NULL, reason ? reason : "reset", false);
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
                        const char *user, const char *reason)
{
    jid_t *jid = user ? jid_new(user, strlen(user), NULL) : NULL;
    if (!jid || !sm_is_local(sm, jid_domain(jid))) {
        jid_free(jid);
        jid = jid_new(sm_domain(sm), strlen(sm_domain(sm)), NULL);
    }
    arena_t *a = arena_new(0);
    elem_t *e = elem_new(a, NS_HEARTH_SESSION, "session");
    elem_set_attr(e, "action", "ended");
    elem_set_attr(e, "reason", reason);
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
        if (c2s && cid) end_unknown(sm, c2s, cid, sid, elem_attr(route, "user"), "reset");
        return NULL;
    }
    return s;
}

/* The account of a rebuilt session, checked after the fact. */
static void resume_checked(sm_t *sm, void *ud, int exists)
{
    char *sid = ud;
    sess_t *s = map_get(&sm->sessions_by_sid, sid);
    if (s && exists == 0) sm_end_session(sm, s, "not-authorized");
    free(sid);
}

static void resume(sm_t *sm, const char *c2s, elem_t *req)
{
    const char *cid = elem_attr(req, "cid"), *sid = elem_attr(req, "sid");
    const char *jid_text = elem_attr(req, "jid");
    jid_t *jid = jid_text ? jid_new(jid_text, strlen(jid_text), NULL) : NULL;
    if (!cid || !sid || strlen(sid) != sizeof(((sess_t *)0)->sid) - 1 || !jid ||
        !jid_has_node(jid) || !jid_has_resource(jid) || !sm_is_local(sm, jid_domain(jid))) {
        log_warn("%s: a resume without a valid jid, cid and sid dropped", c2s);
        jid_free(jid);
        return;
    }
    const char *h_text = elem_attr(req, "h"), *next_text = elem_attr(req, "next");
    uint64_t h = h_text ? strtoull(h_text, NULL, 10) : 0;
    uint64_t next = next_text ? strtoull(next_text, NULL, 10) : 1;
    sess_t *s = map_get(&sm->sessions_by_sid, sid);
    if (s && strcmp(s->c2s, c2s) == 0 && strcmp(s->cid, cid) == 0 &&
        strcmp(jid_full(s->jid), jid_full(jid)) == 0) {
        /* Kept as it is: what it has not had comes again. */
        jid_free(jid);
        ack_taken(sm, s, h);
        if (!hold_is_away(sm, c2s)) ack_resend(sm, s);
        return;
    }
    sess_t *newer = sm_session(sm, jid);
    if (s || newer) {
        log_info("session %s of %s on %s not resumed: %s", sid, jid_full(jid), cid,
                 s ? "its sid names another session" : "a newer session has its resource");
        end_unknown(sm, c2s, cid, sid, jid_bare(jid), "conflict");
        jid_free(jid);
        return;
    }
    s = calloc(1, sizeof(*s));
    if (!s || !(s->c2s = strdup(c2s)) || !(s->cid = strdup(cid))) log_fatal("out of memory");
    s->jid = jid;
    memcpy(s->sid, sid, sizeof s->sid);
    /* Numbered on from where its c2s is: what it sends again from next is
     * new to us, and what we send follows what it had. */
    s->in_h = s->acked_in = next ? next - 1 : 0;
    s->out_seq = h;
    const char *roster = elem_attr(req, "roster");
    s->is_interested = roster && strcmp(roster, "true") == 0;
    sess_add(sm, s);
    log_info("session %s of %s on %s rebuilt from its c2s", s->sid, jid_full(s->jid), s->cid);
    sm_pkt_t *p = session_pkt(sm, s, req, NULL, NULL);
    sm_chain_run(sm, SM_CHAIN_SESS_START, p);
    sm_pkt_release(p);
    char *copy = strdup(sid);
    if (!copy) log_fatal("out of memory");
    elem_t *presence = elem_child(req, NS_CLIENT, "presence");
    if (presence && map_get(&sm->sessions_by_sid, copy)) deliver_from_sess(sm, s, presence);
    s = map_get(&sm->sessions_by_sid, copy);
    if (s)
        sm_account_verify(sm, jid_bare(s->jid), resume_checked, copy);
    else
        free(copy);
}

unsigned sess_check_c2s(sm_t *sm, const char *c2s)
{
    buf_t *b = &sm->out;
    unsigned n = 0, in_batch = 0, batches = 0;
    map_iter_t it;
    map_iter_init(&it, &sm->sessions_by_sid);
    for (const sess_t *s; (s = map_iter_next(&it, NULL));) {
        if (strcmp(s->c2s, c2s) != 0) continue;
        if (in_batch == 0) {
            buf_reset(b);
            comp_route_head(b, c2s, sm_domain(sm), NULL, NULL, NULL);
            buf_appends(b, "><session xmlns='" NS_HEARTH_SESSION "' action='check'>");
        }
        buf_appends(b, "<held jid='");
        xml_escape(b, jid_full(s->jid), strlen(jid_full(s->jid)), true);
        buf_appends(b, "' cid='");
        xml_escape(b, s->cid, strlen(s->cid), true);
        buf_printf(b, "' sid='%s'/>", s->sid);
        n++;
        if (++in_batch == CHECK_BATCH) {
            buf_appends(b, "</session></route>");
            batches += comp_send_raw(sm->comp, b->data, b->len) == 0;
            in_batch = 0;
        }
    }
    if (in_batch) {
        buf_appends(b, "</session></route>");
        batches += comp_send_raw(sm->comp, b->data, b->len) == 0;
    }
    if (n) log_info("asked %s about its %u sessions", c2s, n);
    return batches;
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
    if (c2s && strcmp(req->name, "ack") == 0) {
        ack_from_c2s(sm, c2s, req);
        return;
    }
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
    } else if (strcmp(action, "resume") == 0) {
        resume(sm, c2s, req);
    } else if (strcmp(action, "checked") == 0) {
        hold_c2s_checked(sm, c2s);
    } else if (strcmp(action, "resumed") == 0) {
        hold_c2s_resumed(sm, c2s);
    } else if (strcmp(action, "end") == 0) {
        const char *sid = elem_attr(req, "sid") ? elem_attr(req, "sid") : elem_attr(route, "sid");
        const char *cid = elem_attr(req, "cid") ? elem_attr(req, "cid") : elem_attr(route, "cid");
        sess_t *s = sid ? map_get(&sm->sessions_by_sid, sid) : NULL;
        if (!s || strcmp(s->c2s, c2s) != 0 || (cid && strcmp(s->cid, cid) != 0)) {
            log_debug("%s: end of an unknown session %s", c2s, sid ? sid : "(no sid)");
            return;
        }
        /* What its c2s did not give the client goes anew (ack.c). */
        const char *h = elem_attr(req, "h");
        if (h) ack_taken(sm, s, strtoull(h, NULL, 10));
        sess_finish(sm, s, req, NULL, true);
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
        sess_finish(sm, list[i], NULL, reason, c2s != NULL);
    free(list);
    if (n) log_notice("%zu sessions ended: %s", n, reason);
}

void sess_end_c2s(sm_t *sm, const char *c2s, const char *why)
{
    end_matching(sm, c2s, why);
}

void sess_end_all(sm_t *sm)
{
    end_matching(sm, NULL, "sm stopping (its c2s keeps the client for the next sm)");
}
