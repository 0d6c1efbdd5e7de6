/* mod_presence.c — presence (RFC 6121 §4): what a session's presence
 * becomes, who hears it, and answers to probes.
 *
 * A session's broadcast presence (no to) is kept as its last presence with
 * its priority (read by the core's delivery rules), then sent to the
 * contacts subscribed to the user (from/both) and to the user's other
 * available sessions. The first available presence also probes the
 * contacts the user is subscribed to (to/both), shows the new session the
 * user's other sessions, and raises SM_CHAIN_AVAILABLE (offline messages,
 * pending subscription requests). Directed presence is remembered per
 * session and withdrawn with unavailable presence when the session goes
 * unavailable or ends. Probes from others are answered only for contacts
 * with a from/both subscription (RFC 6121 §4.3.2). The roster comes from
 * roster.h; subscriptions themselves are mod_roster's. */
#include <stdlib.h>
#include <string.h>

#include "roster.h"

#define DIRECTED_MAX 256

static int slot; /* directed_t per session */

typedef struct directed {
    int n, cap;
    char **jids;
} directed_t;

static bool is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

static directed_t *directed_of(sess_t *s)
{
    if (!s->slots[slot]) {
        if (!(s->slots[slot] = calloc(1, sizeof(directed_t)))) log_fatal("out of memory");
    }
    return s->slots[slot];
}

static void directed_add(sess_t *s, const char *jid)
{
    directed_t *d = directed_of(s);
    for (int i = 0; i < d->n; i++)
        if (is(d->jids[i], jid)) return;
    if (d->n == DIRECTED_MAX) return;
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 4;
        if (!(d->jids = realloc(d->jids, (size_t)d->cap * sizeof(*d->jids))))
            log_fatal("out of memory");
    }
    if (!(d->jids[d->n++] = strdup(jid))) log_fatal("out of memory");
}

static void directed_del(sess_t *s, const char *jid)
{
    directed_t *d = s->slots[slot];
    for (int i = 0; d && i < d->n; i++)
        if (is(d->jids[i], jid)) {
            free(d->jids[i]);
            d->jids[i] = d->jids[--d->n];
            return;
        }
}

static void directed_free(directed_t *d)
{
    for (int i = 0; d && i < d->n; i++)
        free(d->jids[i]);
    if (d) free(d->jids);
    free(d);
}

/* ---- broadcasts ------------------------------------------------------- */

typedef struct broadcast {
    elem_t *presence; /* from = the session's full JID */
    jid_t *full;
    bool is_initial;
    bool is_ending;       /* the session ends: nothing more to it */
    directed_t *directed; /* unavailable: who got directed presence */
} broadcast_t;

static void send_to(sm_t *sm, elem_t *p, const char *to)
{
    elem_set_attr(p, "to", to);
    sm_deliver(sm, p);
}

static void broadcast_op(sm_t *sm, roster_t *r, void *ud)
{
    broadcast_t *b = ud;
    elem_t *p = b->presence;
    bool is_unavailable = elem_attr(p, "type") != NULL;
    const char *full = jid_full(b->full);
    if (r->is_loaded) {
        /* RFC 6121 §4.2.2, §4.4.2, §4.5.2: contacts with from/both. */
        for (const ritem_t *it = r->items; it; it = it->next)
            if (it->sub & SUB_FROM) send_to(sm, p, it->jid);
    } else {
        log_warn("presence of %s not broadcast: roster unavailable", full);
    }
    /* RFC 6121 §4.2.2, §4.4.2: every available session of the user, the
     * sender included (one is subscribed to oneself); a session that is
     * ending gets nothing more. */
    for (sess_t *s = sm_sessions(sm, r->owner); s; s = s->next) {
        bool is_self = is(jid_full(s->jid), full);
        if (is_self ? b->is_ending : !s->is_available) continue;
        elem_set_attr(p, "to", jid_full(s->jid));
        sm_send_to_sess(sm, s, p);
    }
    /* RFC 6121 §4.6.3: those who got directed presence learn it ended. */
    if (is_unavailable && b->directed) {
        for (int i = 0; i < b->directed->n; i++) {
            const char *to = b->directed->jids[i];
            char bare[JID_STRING_MAX];
            const char *slash = strchr(to, '/');
            size_t len = slash ? (size_t)(slash - to) : strlen(to);
            memcpy(bare, to, len);
            bare[len] = '\0';
            const ritem_t *it = r->is_loaded ? roster_find(r, bare) : NULL;
            if (it && (it->sub & SUB_FROM)) continue; /* had it above */
            send_to(sm, p, to);
        }
    }
    if (b->is_initial) {
        sess_t *self = sm_session(sm, b->full);
        /* RFC 6121 §4.2.3: probe the contacts the user subscribes to. */
        if (r->is_loaded)
            for (const ritem_t *it = r->items; it; it = it->next) {
                if (!(it->sub & SUB_TO)) continue;
                arena_t *a = arena_new(0);
                elem_t *probe = elem_new(a, NS_CLIENT, "presence");
                elem_set_attr(probe, "type", "probe");
                elem_set_attr(probe, "from", r->owner);
                elem_set_attr(probe, "to", it->jid);
                sm_deliver(sm, probe);
                arena_free(a);
            }
        /* The new session sees the user's other available sessions. */
        for (sess_t *s = sm_sessions(sm, r->owner); self && s; s = s->next) {
            if (s == self || !s->is_available || !s->presence) continue;
            arena_t *a = arena_new(0);
            elem_t *other = elem_copy(a, s->presence);
            elem_set_attr(other, "from", jid_full(s->jid));
            elem_set_attr(other, "to", full);
            sm_send_to_sess(sm, self, other);
            arena_free(a);
        }
        if (self) {
            arena_t *a = arena_new(0);
            elem_t *copy = elem_copy(a, self->presence ? self->presence : p);
            elem_set_attr(copy, "from", full);
            sm_pkt_t *pkt = sm_pkt_new(sm, copy);
            if (pkt) {
                pkt->sess = self;
                sm_chain_run(sm, SM_CHAIN_AVAILABLE, pkt);
                pkt->sess = NULL;
                sm_pkt_release(pkt);
            }
        }
    }
    arena_free(p->arena);
    jid_free(b->full);
    directed_free(b->directed);
    free(b);
    roster_done(sm, r);
}

static void broadcast(sm_t *sm, sess_t *s, const elem_t *presence, bool is_initial,
                      bool is_ending, directed_t *directed)
{
    broadcast_t *b = calloc(1, sizeof(*b));
    if (!b) log_fatal("out of memory");
    b->presence = elem_copy(arena_new(0), presence);
    elem_set_attr(b->presence, "from", jid_full(s->jid));
    elem_set_attr(b->presence, "to", NULL);
    b->full = jid_dup(s->jid);
    b->is_initial = is_initial;
    b->is_ending = is_ending;
    b->directed = directed;
    roster_with(sm, jid_bare(s->jid), broadcast_op, b);
}

/* The session stops being available: unavailable to everyone who had its
 * presence. unavailable may be NULL (the core's own end). */
static void go_unavailable(sm_t *sm, sess_t *s, const elem_t *unavailable)
{
    arena_t *a = arena_new(0);
    elem_t *p = unavailable ? elem_copy(a, unavailable) : elem_new(a, NS_CLIENT, "presence");
    elem_set_attr(p, "type", "unavailable");
    bool was_available = s->is_available;
    directed_t *directed = s->slots[slot];
    s->slots[slot] = NULL;
    s->is_available = false;
    if (s->presence) {
        arena_free(s->presence->arena);
        s->presence = NULL;
    }
    if (was_available || (directed && directed->n))
        broadcast(sm, s, p, false, !unavailable, directed);
    else
        directed_free(directed);
    arena_free(a);
}

/* RFC 6121 §4.7.2.3: -128..127, 0 when absent. NULL if invalid. */
static bool priority_of(const elem_t *presence, int *out)
{
    const elem_t *e = elem_child(presence, NULL, "priority");
    *out = 0;
    if (!e) return true;
    char *end;
    long v = strtol(elem_text(e), &end, 10);
    if (end == elem_text(e) || *end || v < -128 || v > 127) return false;
    *out = (int)v;
    return true;
}

/* ---- probes ----------------------------------------------------------- */

typedef struct probe {
    char *prober; /* as the probe's from said */
} probe_t;

static void probe_op(sm_t *sm, roster_t *r, void *ud)
{
    probe_t *p = ud;
    char bare[JID_STRING_MAX];
    const char *slash = strchr(p->prober, '/');
    size_t len = slash ? (size_t)(slash - p->prober) : strlen(p->prober);
    memcpy(bare, p->prober, len);
    bare[len] = '\0';
    const ritem_t *it = r->is_loaded ? roster_find(r, bare) : NULL;
    if (!r->is_loaded) {
        log_warn("probe of %s by %s unanswered: roster unavailable", r->owner, p->prober);
    } else if (it && (it->sub & SUB_FROM)) {
        presence_send_current(sm, r->owner, p->prober, false);
    } else {
        /* §4.3.2: not subscribed: no presence, and unsubscribed so that
         * the prober's roster catches up. */
        arena_t *a = arena_new(0);
        elem_t *u = elem_new(a, NS_CLIENT, "presence");
        elem_set_attr(u, "type", "unsubscribed");
        elem_set_attr(u, "from", r->owner);
        elem_set_attr(u, "to", bare);
        sm_deliver(sm, u);
        arena_free(a);
    }
    free(p->prober);
    free(p);
    roster_done(sm, r);
}

/* ---- hooks ------------------------------------------------------------ */

static sm_verdict_t on_session_stanza(sm_t *sm, sm_pkt_t *pkt)
{
    if (!is(pkt->kind, "presence")) return SM_PASS;
    sess_t *s = pkt->sess;
    const char *type = pkt->type;
    if (pkt->to) {
        /* Directed presence (RFC 6121 §4.6): remembered, then sent on by
         * the core. */
        if (is(type, ""))
            directed_add(s, jid_full(pkt->to));
        else if (is(type, "unavailable"))
            directed_del(s, jid_full(pkt->to));
        return SM_PASS;
    }
    if (is(type, "")) {
        int priority;
        if (!priority_of(pkt->stanza, &priority)) {
            sm_reply_error(sm, pkt, "bad-request");
            return SM_HANDLED;
        }
        bool is_initial = !s->is_available;
        /* Kept for the session's life: a small arena, not a stanza's. */
        arena_t *a = arena_new(512);
        elem_t *kept = elem_copy(a, pkt->stanza);
        elem_set_attr(kept, "to", NULL);
        if (s->presence) arena_free(s->presence->arena);
        s->presence = kept;
        s->priority = priority;
        s->is_available = true;
        broadcast(sm, s, pkt->stanza, is_initial, false, NULL);
    } else if (is(type, "unavailable")) {
        go_unavailable(sm, s, pkt->stanza);
    }
    /* Anything else without a to (probe, error, subscriptions without a
     * contact) means nothing. */
    return SM_HANDLED;
}

static sm_verdict_t on_user_stanza(sm_t *sm, sm_pkt_t *pkt)
{
    if (!is(pkt->kind, "presence") || !is(pkt->type, "probe")) return SM_PASS;
    probe_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->prober = strdup(jid_full(pkt->from)))) log_fatal("out of memory");
    roster_with(sm, jid_bare(pkt->to), probe_op, p);
    return SM_HANDLED;
}

static sm_verdict_t on_session_end(sm_t *sm, sm_pkt_t *pkt)
{
    /* RFC 6121 §4.5.2 / §4.6.3: lost or closed, it becomes unavailable;
     * not when the sm stops: its c2s keeps the client, and the next sm
     * rebuilds the session from it (session.c), presence and all. */
    if (!sm_is_stopping(sm)) go_unavailable(sm, pkt->sess, NULL);
    return SM_PASS;
}

void mod_presence_init(sm_t *sm); /* listed in modules.c */

void mod_presence_init(sm_t *sm)
{
    slot = sm_slot(sm);
    sm_hook(sm, SM_CHAIN_IN_SESS, 300, on_session_stanza);
    sm_hook(sm, SM_CHAIN_IN_USER, 300, on_user_stanza);
    sm_hook(sm, SM_CHAIN_SESS_END, 100, on_session_end);
}
