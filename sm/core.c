/* core.c — the sm's core as modules see it (sm.h): chains of hooks,
 * features, per-session slots, packets, replies and the link to clients.
 *
 * Also the entry of every route from the router: a session request goes
 * to session.c, a client's stanza (route with sid) and anything else to
 * deliver.c, a bounce back to deliver.c. The delivery rules themselves are
 * in deliver.c, sessions in session.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* ---- chains ----------------------------------------------------------- */

const char *sm_iq_account(const sm_pkt_t *pkt, bool *is_own)
{
    if (pkt->sess) {
        if (pkt->to && (jid_has_resource(pkt->to) || !jid_equal_bare(pkt->to, pkt->from)))
            return NULL;
        *is_own = true;
        return jid_bare(pkt->from);
    }
    if (!pkt->to || jid_has_resource(pkt->to)) return NULL;
    *is_own = jid_equal_bare(pkt->to, pkt->from);
    return jid_bare(pkt->to);
}

bool sm_is_to_own_server(const sm_pkt_t *pkt)
{
    bool is_own = false;
    if (!pkt->sess) return false;
    if (sm_iq_account(pkt, &is_own) && is_own) return true;
    return !jid_has_node(pkt->to) && !jid_has_resource(pkt->to) &&
           strcmp(jid_domain(pkt->to), jid_domain(pkt->from)) == 0;
}

void sm_hook(sm_t *sm, sm_chain_t chain, int order, sm_hook_fn fn)
{
    chain_t *c = &sm->chains[chain];
    hook_t *h = realloc(c->hooks, (size_t)(c->n + 1) * sizeof(*h));
    if (!h) log_fatal("out of memory");
    int i = c->n;
    /* Keep registration order among equal orders. */
    while (i > 0 && h[i - 1].order > order) {
        h[i] = h[i - 1];
        i--;
    }
    h[i] = (hook_t){order, fn};
    c->hooks = h;
    c->n++;
}

sm_verdict_t sm_chain_run(sm_t *sm, sm_chain_t chain, sm_pkt_t *pkt)
{
    const chain_t *c = &sm->chains[chain];
    for (int i = 0; i < c->n; i++)
        if (c->hooks[i].fn(sm, pkt) == SM_HANDLED) return SM_HANDLED;
    return SM_PASS;
}

void sm_feature(sm_t *sm, const char *var)
{
    for (int i = 0; i < sm->nfeatures; i++)
        if (strcmp(sm->features[i], var) == 0) return;
    const char **f = realloc(sm->features, (size_t)(sm->nfeatures + 2) * sizeof(*f));
    if (!f) log_fatal("out of memory");
    f[sm->nfeatures++] = var;
    f[sm->nfeatures] = NULL;
    sm->features = f;
}

const char *const *sm_features(const sm_t *sm)
{
    static const char *const none[] = {NULL};
    return sm->features ? sm->features : none;
}

int sm_slot(sm_t *sm)
{
    if (sm->nslots >= SM_SLOTS) log_fatal("more than %d session slots asked for", SM_SLOTS);
    return sm->nslots++;
}

/* ---- packets ---------------------------------------------------------- */

static bool is_stanza_ns(const char *ns)
{
    return ns && (strcmp(ns, NS_HEARTH_COMPONENT) == 0 || strcmp(ns, NS_SERVER) == 0 ||
                  strcmp(ns, NS_COMPONENT_ACCEPT) == 0 || *ns == '\0');
}

static void move_ns(elem_t *e, const char *from)
{
    for (elem_t *k = e->children; k; k = k->next) {
        if (!k->name || strcmp(k->ns, from) != 0) continue;
        k->ns = NS_CLIENT;
        move_ns(k, from);
    }
}

void sm_stanza_normalize(elem_t *stanza)
{
    if (!is_stanza_ns(stanza->ns)) return;
    const char *from = stanza->ns;
    stanza->ns = NS_CLIENT;
    move_ns(stanza, from);
}

sm_pkt_t *sm_pkt_new(sm_t *sm, elem_t *stanza)
{
    const char *from = elem_attr(stanza, "from"), *to = elem_attr(stanza, "to");
    jid_t *jfrom = from ? jid_new(from, strlen(from), NULL) : NULL;
    jid_t *jto = to ? jid_new(to, strlen(to), NULL) : NULL;
    if (!jfrom || (to && !jto)) {
        jid_free(jfrom);
        jid_free(jto);
        arena_free(stanza->arena);
        return NULL;
    }
    return sm_pkt_new_jids(sm, stanza, jfrom, jto);
}

sm_pkt_t *sm_pkt_new_jids(sm_t *sm, elem_t *stanza, jid_t *jfrom, jid_t *jto)
{
    sm_pkt_t *p = calloc(1, sizeof(*p));
    if (!p) log_fatal("out of memory");
    p->stanza = stanza;
    p->origin = origin_ref(sm->origin);
    p->kind = stanza->name;
    const char *type = elem_attr(stanza, "type");
    p->type = type ? type : "";
    p->from = jfrom;
    p->to = jto;
    p->refs = 1;
    return p;
}

sm_pkt_t *sm_pkt_hold(sm_pkt_t *pkt)
{
    pkt->refs++;
    return pkt;
}

void sm_pkt_release(sm_pkt_t *pkt)
{
    if (!pkt || --pkt->refs > 0) return;
    origin_unref(pkt->origin);
    jid_free(pkt->from);
    jid_free(pkt->to);
    arena_free(pkt->stanza->arena);
    free(pkt);
}

/* ---- sending ---------------------------------------------------------- */

void sm_send_to_sess(sm_t *sm, sess_t *sess, const elem_t *stanza)
{
    buf_t *b = &sm->out;
    buf_reset(b);
    buf_appends(b, sess->route_head);
    /* The session protocol's own elements (started, ended) are not
     * numbered, kept nor sent again: only stanzas are (ack.c). */
    bool is_stanza = !(stanza->ns && strcmp(stanza->ns, NS_HEARTH_SESSION) == 0);
    if (is_stanza) {
        buf_appends(b, " seq='");
        buf_append_u64(b, ++sess->out_seq);
        buf_appends(b, "'");
    }
    /* A message: one copy per session of a client stanza (presence makes
     * several for one session, a probe's answers with its echo). */
    if (strcmp(stanza->name, "message") == 0) origin_attr(sm->origin, b);
    buf_appends(b, ">");
    if (stanza == sm->fan_of) {
        if (!sm->fan.len) elem_serialize(stanza, NS_HEARTH_COMPONENT, &sm->fan);
        buf_append(b, sm->fan.data, sm->fan.len);
    } else {
        elem_serialize(stanza, NS_HEARTH_COMPONENT, b);
    }
    buf_appends(b, "</route>");
    int kind = metric_kind(stanza->name);
    if (kind >= 0) metric_inc(&sm_metrics.to_sess[kind]);
    /* Kept until its c2s has it (ack.c); only kept while it is away. */
    if (is_stanza) ack_keep(sm, sess, sess->out_seq, b->data, b->len);
    if (sm->away && hold_is_away(sm, sess->c2s)) return;
    comp_send_raw(sm->comp, b->data, b->len);
    ack_along(sm);
}

void sm_fanout_begin(sm_t *sm, const elem_t *stanza)
{
    if (sm->fan_of) return;
    sm->fan_of = stanza;
    buf_reset(&sm->fan);
}

void sm_fanout_end(sm_t *sm, const elem_t *stanza)
{
    if (sm->fan_of != stanza) return;
    sm->fan_of = NULL;
    if (sm->fan.cap > 16 * 1024) buf_free(&sm->fan); /* after a big stanza */
}

void sm_send_answer(sm_t *sm, const sm_pkt_t *pkt, elem_t *answer)
{
    sess_t *s = jid_has_resource(pkt->from) ? sm_session(sm, pkt->from) : NULL;
    if (s)
        sm_send_to_sess(sm, s, answer);
    else
        sm_deliver(sm, answer);
    arena_free(answer->arena);
}

void sm_reply_error(sm_t *sm, sm_pkt_t *pkt, const char *condition)
{
    elem_t *e = elem_copy(arena_new(0), pkt->stanza);
    if (xmpp_stanza_error(e, condition, NULL) < 0) {
        arena_free(e->arena);
        return;
    }
    sm_send_answer(sm, pkt, e);
}

void sm_reply_result(sm_t *sm, sm_pkt_t *pkt, const elem_t *payload)
{
    elem_t *iq = elem_new(arena_new(0), NS_CLIENT, "iq");
    elem_set_attr(iq, "type", "result");
    const char *id = elem_attr(pkt->stanza, "id");
    if (id) elem_set_attr(iq, "id", id);
    elem_set_attr(iq, "to", jid_full(pkt->from));
    /* An IQ with no to was for the account itself (RFC 6120 §10.3.3): the
     * result goes without a from. */
    if (pkt->to) elem_set_attr(iq, "from", jid_full(pkt->to));
    if (payload) elem_add_copy(iq, payload);
    sm_send_answer(sm, pkt, iq);
}

/* ---- lookups ---------------------------------------------------------- */

sess_t *sm_sessions(sm_t *sm, const char *bare)
{
    return map_get(&sm->users, bare);
}

sess_t *sm_session(sm_t *sm, const jid_t *full)
{
    for (sess_t *s = sm_sessions(sm, jid_bare(full)); s; s = s->next)
        if (strcmp(jid_resource(s->jid), jid_resource(full)) == 0) return s;
    return NULL;
}

void sm_each_session(sm_t *sm, void (*fn)(sess_t *sess, void *ud), void *ud)
{
    map_iter_t it;
    map_iter_init(&it, &sm->users);
    for (sess_t *s; (s = map_iter_next(&it, NULL));)
        for (; s; s = s->next)
            fn(s, ud);
}

bool sm_is_local(const sm_t *sm, const char *domain)
{
    for (int i = 0; i < sm->ndomains; i++)
        if (strcmp(sm->domains[i], domain) == 0) return true;
    return false;
}

const char *sm_domain(const sm_t *sm)
{
    return sm->domains[0];
}

storage_t *sm_storage(sm_t *sm)
{
    return sm->st;
}

const config_t *sm_config(const sm_t *sm)
{
    return sm->config;
}

void sm_at_stop(sm_t *sm, void (*fn)(sm_t *sm))
{
    if (sm->nat_stop == SM_AT_STOP_MAX) log_fatal("more than %d sm_at_stop calls", SM_AT_STOP_MAX);
    sm->at_stop[sm->nat_stop++] = fn;
}

void sm_run_at_stop(sm_t *sm)
{
    for (int i = 0; i < sm->nat_stop; i++)
        sm->at_stop[i](sm);
}

bool sm_is_stopping(const sm_t *sm)
{
    return sm->is_stopping;
}

uv_loop_t *sm_loop(sm_t *sm)
{
    return sm->loop;
}

const char *const *sm_components(const sm_t *sm)
{
    static const char *const none[] = {NULL};
    return sm->components ? (const char *const *)sm->components : none;
}

/* ---- the router ------------------------------------------------------- */

void sm_on_advert(comp_t *c, const char *name, bool available)
{
    sm_t *sm = comp_data(c);
    int i = 0;
    while (i < sm->ncomponents && strcmp(sm->components[i], name) != 0)
        i++;
    if (available && i == sm->ncomponents) {
        char **v = realloc(sm->components, (size_t)(sm->ncomponents + 2) * sizeof(*v));
        if (!v || !(v[sm->ncomponents] = strdup(name))) log_fatal("out of memory");
        v[++sm->ncomponents] = NULL;
        sm->components = v;
    } else if (!available && i < sm->ncomponents) {
        free(sm->components[i]);
        sm->components[i] = sm->components[--sm->ncomponents];
        sm->components[sm->ncomponents] = NULL;
    }
    /* DESIGN.md: a c2s that went away took its clients with it; one seen
     * again is asked about the sessions we kept for it (hold.c). Before
     * on_ready our own binds are not through: main.c's on_ready does it. */
    if (available && strcmp(name, "s2s") == 0) sm->had_s2s = true;
    if (available && strncmp(name, "c2s-", 4) == 0) comp_direct_offer(c, name);
    if (!available) {
        if (strncmp(name, "c2s-", 4) == 0) hold_c2s_gone(sm, name);
    } else if (comp_is_ready(sm->comp)) {
        hold_c2s_back(sm, name);
        if (strcmp(name, "s2s") == 0) {
            ack_resend_s2s(sm);
            hold_out_flush(sm);
        } else if (strcmp(name, "sm") == 0 || strncmp(name, "sm-", 3) == 0) {
            hold_out_flush(sm); /* a shard is back: what waited for its users goes */
        }
    }
}

/* The direct link to a c2s the router still sees closed (common/direct.c):
 * what was on it may be lost, so that c2s is out of sight and back at once
 * (hold.c): it is asked which sessions it holds, and theirs queues go again,
 * through the router. */
void sm_on_direct_down(comp_t *c, const char *name)
{
    sm_t *sm = comp_data(c);
    if (strncmp(name, "c2s-", 4) != 0 || hold_is_away(sm, name)) return;
    hold_c2s_away(sm, name);
    if (comp_is_ready(c) && sm_is_advertised(sm, name)) hold_c2s_back(sm, name);
}

bool sm_is_advertised(const sm_t *sm, const char *name)
{
    for (int i = 0; i < sm->ncomponents; i++)
        if (strcmp(sm->components[i], name) == 0) return true;
    return false;
}

/* A stanza of a session, with the seq its c2s gave it: one had already
 * (sent again after a restart) is only acknowledged again; the others are
 * processed as one origin (ack.c), acknowledged once all made of it is
 * passed on. */
static void from_sess(sm_t *sm, sess_t *s, const elem_t *route, elem_t *payload)
{
    const char *seq_text = elem_attr(route, "seq");
    uint64_t seq = seq_text ? strtoull(seq_text, NULL, 10) : 0;
    if (!seq) {
        deliver_from_sess(sm, s, payload);
        return;
    }
    if (seq <= s->in_h) {
        ack_again(sm, s);
        return;
    }
    s->in_h = seq;
    origin_t *o = origin_new(sm, s, seq);
    sm->origin = o;
    deliver_from_sess(sm, s, payload);
    sm->origin = NULL;
    origin_unref(o);
}

void sm_refuse(comp_role_t role, const char *sender, const char *why)
{
    char key[320];
    snprintf(key, sizeof key, "sm refuses %s %s", comp_role_name(role), sender ? sender : "-");
    if (log_is_first(key))
        log_warn("route from %s (role %s) refused: %s (logged once per sender)",
                 sender ? sender : "?", role ? comp_role_name(role) : "none", why);
}

/* Who may send what (docs/security.md): the session protocol and the
 * stanzas of sessions only a c2s; bounces only the router; stanzas with a
 * from of their own s2s (for remote domains), another sm shard, and a
 * component or hearthctl for the name they bound (deliver_inbound). */
void sm_on_route(comp_t *c, elem_t *route, const xstream_raw_t *raw)
{
    (void)raw;
    sm_t *sm = comp_data(c);
    comp_role_t role = comp_route_role(route);
    elem_t *payload = elem_first(route);
    if (!payload) {
        log_debug("route from %s without payload dropped",
                  elem_attr(route, "from") ? elem_attr(route, "from") : "?");
        return;
    }
    const char *type = elem_attr(route, "type");
    if (type && strcmp(type, "error") == 0) {
        if (role != ROLE_ROUTER)
            sm_refuse(role, elem_attr(route, "from"), "a route error not from the router");
        else
            deliver_bounced(sm, route, payload);
        return;
    }
    bool is_session = payload->ns && strcmp(payload->ns, NS_HEARTH_SESSION) == 0;
    if (is_session && role == ROLE_S2S && strcmp(payload->name, "ack") == 0) {
        ack_from_s2s(sm, payload);
        return;
    }
    if (is_session || elem_attr(route, "sid")) {
        if (role != ROLE_C2S) {
            sm_refuse(role, elem_attr(route, "from"),
                      is_session ? "the session protocol is for c2s only"
                                 : "a session's stanza not from a c2s");
            return;
        }
        if (is_session) {
            sess_on_request(sm, route, payload);
            return;
        }
        sess_t *s = sess_of_route(sm, route);
        if (s) from_sess(sm, s, route, payload);
        return;
    }
    deliver_inbound(sm, payload, role, elem_attr(route, "from"));
}
