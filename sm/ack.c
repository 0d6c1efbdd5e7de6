/* ack.c — at-least-once delivery between the c2s processes and the sm
 * (DESIGN.md: sessions outlive a restart; sm/session.c tells the protocol).
 *
 * Both ways, every stanza of a session travels with the session's next
 * sequence number (the route's seq attribute), and the receiver drops one
 * it has had already. A c2s keeps each stanza it routed until the sm
 * acknowledges it; the sm acknowledges a client stanza only once
 * everything made from it is in the next hop's hands: every copy routed
 * to a session acknowledged by that session's c2s, every packet a module
 * held for it (the offline store's write, a roster change) released. So
 * when the sm is killed, what it had not passed on is still at the c2s,
 * which sends it again to the next sm. The sm keeps what it routes to a
 * session (sess->oq) until that c2s acknowledges it, and sends it again
 * when the c2s is seen again after a router restart (hold.c); messages a
 * c2s that died never acknowledged are delivered anew (to the user's other
 * sessions or the offline store).
 *
 * A message made of a client stanza carries origin='CID SEQ' (the sending
 * session's cid and the stanza's seq): an sm that was killed after passing
 * a stanza on, before acknowledging it, gets it again from its c2s, and
 * the receiving c2s drops the second copy by that mark (c2s/session.c).
 *
 * An origin is one client stanza in the sm: counted references from the
 * packets made while it was processed (sm_pkt_new takes one from
 * sm->origin) and from the routes to sessions that carry it. When the last
 * goes, it is done; each session acknowledges the longest prefix of its
 * origins that is done. Acknowledgements go out in batches, one route per
 * c2s:
 *   <ack xmlns='urn:hearth:session:1'><a cid='…' sid='…' h='N'/>…</ack>
 * and the c2s sends the same back for what it took from the sm. A batch
 * leaves with the next stanza the sm routes once it has gathered a little,
 * or by itself after a while (ack_batch_t in common/ackq.h). */
#include <stdlib.h>
#include <string.h>

#include "core.h"

struct origin {
    sm_t *sm;
    origin_t *next;  /* the session's origins, in seq order */
    sess_t *sess;    /* NULL once the session ended */
    uint64_t seq;
    unsigned refs;
    bool is_done;
};

static void flush(void *ud);
static void drop_entry(void *ud, ackq_entry_t *e);

void ack_init(sm_t *sm)
{
    ack_batch_init(&sm->ack_batch, sm->loop, flush, sm);
}

void ack_close(sm_t *sm)
{
    ackq_clear(&sm->s2sq, drop_entry, sm);
    ack_batch_close(&sm->ack_batch);
}

static void due(sm_t *sm, sess_t *s)
{
    if (s->is_ack_due) return;
    s->is_ack_due = true;
    ack_batch_due(&sm->ack_batch);
    s->ack_next = sm->acks;
    sm->acks = s;
}

void ack_along(sm_t *sm)
{
    ack_batch_along(&sm->ack_batch);
}

void ack_again(sm_t *sm, sess_t *s)
{
    due(sm, s);
}

origin_t *origin_new(sm_t *sm, sess_t *s, uint64_t seq)
{
    origin_t *o = calloc(1, sizeof *o);
    if (!o) log_fatal("out of memory");
    o->sm = sm;
    o->sess = s;
    o->seq = seq;
    o->refs = 1;
    if (s->origins_tail)
        s->origins_tail->next = o;
    else
        s->origins = o;
    s->origins_tail = o;
    return o;
}

origin_t *origin_ref(origin_t *o)
{
    if (o) o->refs++;
    return o;
}

void origin_attr(const origin_t *o, buf_t *b)
{
    if (!o || !o->sess) return;
    buf_appends(b, " origin='");
    xml_escape(b, o->sess->cid, strlen(o->sess->cid), true);
    buf_appends(b, " ");
    buf_append_u64(b, o->seq);
    buf_appends(b, "'");
}

/* The session's origins that are done, from the first: acknowledged. */
static void progress(sm_t *sm, sess_t *s)
{
    bool moved = false;
    while (s->origins && s->origins->is_done) {
        origin_t *o = s->origins;
        s->origins = o->next;
        if (!s->origins) s->origins_tail = NULL;
        s->acked_in = o->seq;
        free(o);
        moved = true;
    }
    if (moved) due(sm, s);
}

void origin_unref(origin_t *o)
{
    if (!o || --o->refs > 0) return;
    if (!o->sess) {
        free(o);
        return;
    }
    o->is_done = true;
    progress(o->sm, o->sess);
}

/* ---- what the sm routes to a session ------------------------------------ */

static void drop_entry(void *ud, ackq_entry_t *e)
{
    sm_t *sm = ud;
    sm->held_bytes -= e->len;
    origin_unref(e->token);
}

void ack_keep(sm_t *sm, sess_t *s, uint64_t seq, const char *data, size_t len)
{
    if (sm->held_bytes + len > sm->hold_max) {
        if (log_is_first("sm.hold-max reached"))
            log_warn("sm.hold-max reached: stanzas to sessions are sent without being kept "
                     "for a resend (logged once)");
        return;
    }
    ackq_push(&s->oq, seq, 0, data, len, origin_ref(sm->origin));
    sm->held_bytes += len;
}

void ack_taken(sm_t *sm, sess_t *s, uint64_t h)
{
    ackq_ack(&s->oq, h, drop_entry, sm);
}

void ack_resend(sm_t *sm, sess_t *s)
{
    for (ackq_entry_t *e = s->oq.head; e; e = e->next)
        if (comp_send_raw(sm->comp, e->data, e->len) < 0) return;
}

/* A message the session's c2s never took: delivered anew (its other
 * sessions, or the offline store). */
static void redeliver_entry(void *ud, ackq_entry_t *e)
{
    sm_t *sm = ud;
    arena_t *a = arena_new(0);
    elem_t *route = xml_parse_fragment(a, e->data, e->len, NS_HEARTH_COMPONENT);
    elem_t *payload = route ? elem_first(route) : NULL;
    if (payload && strcmp(payload->name, "message") == 0) {
        origin_t *was = sm->origin;
        sm->origin = e->token; /* the new copies carry the same client stanza */
        deliver_again(sm, payload);
        sm->origin = was;
    }
    arena_free(a);
    drop_entry(ud, e);
}

void ack_session_ends(sm_t *sm, sess_t *s, bool redeliver)
{
    if (redeliver) {
        /* Out of the session first: the messages must not come back to it. */
        ackq_t q = s->oq;
        memset(&s->oq, 0, sizeof s->oq);
        ackq_clear(&q, redeliver_entry, sm);
    } else {
        ackq_clear(&s->oq, drop_entry, sm);
    }
    for (origin_t *o = s->origins, *next; o; o = next) {
        next = o->next;
        o->sess = NULL;
        if (o->is_done) free(o);
    }
    s->origins = s->origins_tail = NULL;
    if (s->is_ack_due) {
        for (sess_t **p = &sm->acks; *p; p = &(*p)->ack_next)
            if (*p == s) {
                *p = s->ack_next;
                break;
            }
        s->is_ack_due = false;
    }
}

/* ---- what the sm routes to s2s ------------------------------------------------ */

void ack_to_s2s(sm_t *sm, const char *to, const char *from, const char *user,
                const elem_t *stanza)
{
    buf_t *b = &sm->out;
    buf_reset(b);
    comp_route_head(b, to, from, user, NULL, NULL);
    xml_attr(b, "link", sm->id);
    buf_appends(b, " seq='");
    buf_append_u64(b, ++sm->s2s_seq);
    buf_appends(b, "'>");
    elem_serialize(stanza, NS_HEARTH_COMPONENT, b);
    buf_appends(b, "</route>");
    if (sm->held_bytes + b->len <= sm->hold_max) {
        ackq_push(&sm->s2sq, sm->s2s_seq, 0, b->data, b->len, origin_ref(sm->origin));
        sm->held_bytes += b->len;
    }
    comp_send_raw(sm->comp, b->data, b->len);
    ack_along(sm);
}

void ack_from_s2s(sm_t *sm, const elem_t *ack)
{
    const char *link = elem_attr(ack, "link"), *h = elem_attr(ack, "h");
    if (link && h && strcmp(link, sm->id) == 0)
        ackq_ack(&sm->s2sq, strtoull(h, NULL, 10), drop_entry, sm);
}

void ack_resend_s2s(sm_t *sm)
{
    unsigned n = 0;
    for (ackq_entry_t *e = sm->s2sq.head; e; e = e->next, n++)
        if (comp_send_raw(sm->comp, e->data, e->len) < 0) return;
    if (n) log_notice("%u stanzas s2s had not acknowledged sent again", n);
}

/* ---- acknowledgements ------------------------------------------------------ */

void ack_from_c2s(sm_t *sm, const char *c2s, const elem_t *ack)
{
    for (elem_t *a = elem_child(ack, NS_HEARTH_SESSION, "a"); a;
         a = elem_next(a, NS_HEARTH_SESSION, "a")) {
        const char *sid = elem_attr(a, "sid"), *cid = elem_attr(a, "cid"), *h = elem_attr(a, "h");
        sess_t *s = sid ? map_get(&sm->sessions_by_sid, sid) : NULL;
        if (s && cid && h && strcmp(s->c2s, c2s) == 0 && strcmp(s->cid, cid) == 0)
            ack_taken(sm, s, strtoull(h, NULL, 10));
    }
}

static void send_batch(sm_t *sm, buf_t *b)
{
    buf_appends(b, "</ack></route>");
    comp_send_raw(sm->comp, b->data, b->len);
}

void ack_flush(sm_t *sm)
{
    ack_batch_flush(&sm->ack_batch);
}

static void flush(void *ud)
{
    sm_t *sm = ud;
    sess_t *list = sm->acks;
    sm->acks = NULL;
    buf_t *b = &sm->out;
    /* One route per c2s: take the first's c2s, then every other of it. */
    while (list) {
        const char *c2s = list->c2s;
        buf_reset(b);
        comp_route_head(b, c2s, jid_domain(list->jid), NULL, NULL, NULL);
        buf_appends(b, "><ack xmlns='" NS_HEARTH_SESSION "'>");
        sess_t **p = &list;
        while (*p) {
            sess_t *s = *p;
            if (strcmp(s->c2s, c2s) != 0) {
                p = &s->ack_next;
                continue;
            }
            *p = s->ack_next;
            s->ack_next = NULL;
            s->is_ack_due = false;
            buf_appends(b, "<a cid='");
            xml_escape(b, s->cid, strlen(s->cid), true);
            buf_printf(b, "' sid='%s' h='%llu'/>", s->sid, (unsigned long long)s->acked_in);
        }
        if (!hold_is_away(sm, c2s)) send_batch(sm, b);
    }
}
