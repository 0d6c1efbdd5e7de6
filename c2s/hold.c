/* hold.c — what a session has sent the sm and the sm has not acknowledged,
 * and what waits while the sm of its domain is away.
 *
 * Every stanza a session routes to the sm carries the session's next
 * sequence number and stays in the session's queue (cl->rq) until the sm
 * acknowledges it (session.c tells the protocol: the sm acknowledges once
 * the stanza is in the next hop's hands). The router restarting, or the
 * sm, does not end anybody's session: the clients stay connected, what
 * their sessions send meanwhile is only queued, and when the sm's domain
 * is advertised again (and this c2s is bound at the router) each session
 * of the domain is resumed (session_resume: the sm keeps or rebuilds it)
 * and its queue sent again, in order; the sm drops what it already had by
 * the sequence numbers. So nothing a client sent is lost when the router
 * or the sm is killed, whether it was queued here or in flight.
 *
 * A client that leaves while its sm is away is parked: the client record
 * (JID, cid, sid, presence, queue) stays until it is resumed, its queue
 * sent, and its end sent after, so that the sm delivers what it sent, then
 * ends it with the unavailable presence its contacts expect, instead of
 * keeping a ghost.
 *
 * Limits: a client with more than c2s.max-queue bytes the sm has not
 * taken yet is not read until half of it is (the store may be slower than
 * a client). While the sm is away, c2s.hold-max bytes queued in all (a
 * stanza past it is answered service-unavailable; so is one whose sm has
 * been away c2s.hold-time);
 * while the sm is away, what has waited c2s.hold-time is answered
 * service-unavailable and dropped (a parked client is then dropped too:
 * the sm, when it comes back, ends sessions no c2s holds). */
#include <stdlib.h>
#include <string.h>

#include "c2s.h"

#define HOLD_TICK_MS 1000

static void hold_tick(uv_timer_t *t);

void hold_init(c2s_t *c2s)
{
    uv_timer_init(c2s->loop, &c2s->hold_timer);
    c2s->hold_timer.data = c2s;
}

void hold_close(c2s_t *c2s)
{
    uv_close((uv_handle_t *)&c2s->hold_timer, NULL);
}

static bool can_send(const c2s_t *c2s, const domain_state_t *d)
{
    return c2s->comp && comp_is_ready(c2s->comp) && d->is_available && !d->needs_resume;
}

static void unpark(client_t *cl)
{
    c2s_t *c2s = cl->c2s;
    c2s->held_bytes -= ackq_clear(&cl->rq, NULL, NULL);
    cl->is_parked = false;
    session_forget(cl);
    client_unref(cl);
}

bool hold_send(client_t *cl, uint64_t seq, const char *data, size_t len)
{
    c2s_t *c2s = cl->c2s;
    domain_state_t *d = c2s_domain(c2s, cl->domain);
    uint64_t now = uv_now(c2s->loop);
    bool is_sendable = d && can_send(c2s, d);
    if (!d || (!is_sendable && (c2s->held_bytes + len > c2s->hold_max ||
                                now - d->away_since >= c2s->hold_time)))
        return false;
    ackq_push(&cl->rq, seq, now, data, len, NULL);
    c2s->held_bytes += len;
    if (!is_sendable) {
        if (!uv_is_active((uv_handle_t *)&c2s->hold_timer))
            uv_timer_start(&c2s->hold_timer, hold_tick, HOLD_TICK_MS, HOLD_TICK_MS);
        return true;
    }
    /* Flow control: a client whose stanzas the sm has not taken yet (the
     * store is slower than it) is read no more until they are. */
    if (cl->rq.bytes > c2s->max_queue && !cl->is_waiting_ack && cl->conn) {
        cl->is_waiting_ack = true;
        conn_pause(cl->conn);
    }
    comp_send_raw(c2s->comp, data, len); /* if the link just went, it is sent again */
    return true;
}

void hold_acked(client_t *cl, uint64_t h)
{
    c2s_t *c2s = cl->c2s;
    c2s->held_bytes -= ackq_ack(&cl->rq, h, NULL, NULL);
    if (cl->is_waiting_ack && cl->rq.bytes <= c2s->max_queue / 2) {
        cl->is_waiting_ack = false;
        if (!cl->resume_at && cl->conn) conn_resume(cl->conn);
    }
}

bool hold_park(client_t *cl)
{
    c2s_t *c2s = cl->c2s;
    domain_state_t *d = c2s_domain(c2s, cl->domain);
    if (!d || can_send(c2s, d)) {
        c2s->held_bytes -= ackq_clear(&cl->rq, NULL, NULL);
        return false;
    }
    cl->is_parked = true;
    client_ref(cl);
    return true;
}

void hold_domain_away(c2s_t *c2s, domain_state_t *d)
{
    if (!d->needs_resume) d->away_since = uv_now(c2s->loop);
    d->needs_resume = true;
    if (!uv_is_active((uv_handle_t *)&c2s->hold_timer))
        uv_timer_start(&c2s->hold_timer, hold_tick, HOLD_TICK_MS, HOLD_TICK_MS);
}

/* Send the session's queue again, in order. */
static void resend(client_t *cl)
{
    for (ackq_entry_t *e = cl->rq.head; e; e = e->next)
        if (comp_send_raw(cl->c2s->comp, e->data, e->len) < 0) return;
}

void hold_flush(c2s_t *c2s, domain_state_t *d)
{
    if (!c2s->comp || !comp_is_ready(c2s->comp) || !d->is_available || !d->needs_resume) return;
    d->needs_resume = false;
    unsigned n = 0, parked = 0;
    size_t bytes = 0;
    client_t *next;
    for (client_t *cl = c2s->clients; cl; cl = next) {
        next = cl->next;
        if (cl->domain != d->name || !cl->sid || !(cl->state == CL_BOUND || cl->is_parked))
            continue;
        if (session_resume(cl) < 0) {
            d->needs_resume = true; /* the link went again: the next ready resumes */
            return;
        }
        n++;
        bytes += cl->rq.bytes;
        resend(cl);
        if (cl->is_parked) {
            parked++;
            session_send_end(cl);
            unpark(cl);
        }
    }
    session_send_resumed(c2s, d->name);
    log_notice("%s: the session manager of %s is back: %u sessions resumed (%u of clients that "
               "left meanwhile, now ended), %zu bytes sent again",
               c2s->id, d->name, n, parked, bytes);
}

/* Answer a queued stanza the sm never got in time. */
static void expire(client_t *cl, const ackq_entry_t *e)
{
    if (!client_is_open(cl)) return;
    arena_t *a = arena_new(0);
    elem_t *route = xml_parse_fragment(a, e->data, e->len, NS_HEARTH_COMPONENT);
    elem_t *stanza = route ? elem_first(route) : NULL;
    if (stanza) {
        elem_set_attr(stanza, "from", NULL);
        client_error_reply(cl, stanza, "service-unavailable", "the session manager is away");
    }
    arena_free(a);
}

static void hold_tick(uv_timer_t *t)
{
    c2s_t *c2s = t->data;
    uint64_t now = uv_now(c2s->loop);
    bool is_away = false;
    unsigned expired = 0, dropped = 0;
    client_t *next;
    for (client_t *cl = c2s->clients; cl; cl = next) {
        next = cl->next;
        domain_state_t *d = c2s_domain(c2s, cl->domain);
        if (!d || can_send(c2s, d)) continue;
        while (cl->rq.head && now - cl->rq.head->at >= c2s->hold_time) {
            ackq_entry_t *e = ackq_pop(&cl->rq);
            c2s->held_bytes -= e->len;
            expire(cl, e);
            free(e);
            expired++;
        }
        if (cl->is_parked && now - d->away_since >= c2s->hold_time) {
            unpark(cl);
            dropped++;
        }
    }
    for (int i = 0; i < c2s->ndomains; i++)
        if (!can_send(c2s, &c2s->domains[i])) is_away = true;
    if (expired || dropped)
        log_warn("%s: the session manager is away for %llu s: %u waiting stanzas answered "
                 "service-unavailable, %u sessions of clients that left dropped",
                 c2s->id, (unsigned long long)(c2s->hold_time / 1000), expired, dropped);
    if (!is_away) uv_timer_stop(t);
}

void hold_free_all(c2s_t *c2s)
{
    client_t *next;
    for (client_t *cl = c2s->clients; cl; cl = next) {
        next = cl->next;
        c2s->held_bytes -= ackq_clear(&cl->rq, NULL, NULL);
        if (cl->is_parked) unpark(cl);
    }
}
