/* hold.c — what a session sends while the sm of its domain is away.
 *
 * The router restarting, or the sm, does not end anybody's session
 * (DESIGN.md, "The session protocol"): the clients stay connected, and the
 * routes their sessions send meanwhile wait here, per domain, in the order
 * they were sent, each holding a reference on its client. When the sm's
 * domain is advertised again (and this c2s is bound at the router), the
 * sessions of the domain are resumed first (session_resume: the sm keeps
 * or rebuilds each one), then what was held goes out in order, so the sm
 * sees every session before its stanzas.
 *
 * A client that leaves while its sm is away is parked: its session's end
 * is held like its stanzas, the client record (JID, cid, sid, presence)
 * stays until that end is sent, and the resume names it too, so that the
 * sm delivers what it sent, then ends it (with the unavailable presence
 * its contacts expect) instead of keeping a ghost.
 *
 * Limits: c2s.hold-max bytes held in all; c2s.hold-time, after which what
 * is still held is answered with service-unavailable (a parked session's
 * end is dropped: the sm, when it comes back, ends sessions no c2s holds),
 * and a session whose sm has been away that long is answered at once
 * rather than held. */
#include <stdlib.h>
#include <string.h>

#include "c2s.h"

#define HOLD_TICK_MS 1000

struct held {
    held_t *next;
    client_t *cl;
    uint64_t at; /* loop ms */
    bool is_end; /* the session's end: the parked client goes with it */
    size_t len;
    char data[];
};

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
    return c2s->comp && comp_is_ready(c2s->comp) && d->is_available && !d->held;
}

/* The parked client's session is over for this c2s. */
static void unpark(client_t *cl)
{
    cl->is_parked = false;
    session_forget(cl);
}

static void entry_free(c2s_t *c2s, domain_state_t *d, held_t *h)
{
    d->held_bytes -= h->len;
    c2s->held_bytes -= h->len;
    client_t *cl = h->cl;
    if (h->is_end) unpark(cl);
    free(h);
    client_unref(cl);
}

hold_result_t hold_send(client_t *cl, const char *data, size_t len, bool is_end)
{
    c2s_t *c2s = cl->c2s;
    domain_state_t *d = c2s_domain(c2s, cl->domain);
    if (!d) return HOLD_REFUSED;
    if (can_send(c2s, d)) return comp_send_raw(c2s->comp, data, len) < 0 ? HOLD_REFUSED : HOLD_SENT;
    uint64_t now = uv_now(c2s->loop);
    if (!is_end && (now - d->away_since >= c2s->hold_time || c2s->held_bytes + len > c2s->hold_max))
        return HOLD_REFUSED;
    held_t *h = malloc(sizeof *h + len);
    if (!h) log_fatal("out of memory");
    h->next = NULL;
    h->cl = cl;
    h->at = now;
    h->is_end = is_end;
    h->len = len;
    memcpy(h->data, data, len);
    client_ref(cl);
    if (d->held_tail)
        d->held_tail->next = h;
    else
        d->held = h;
    d->held_tail = h;
    d->held_bytes += len;
    c2s->held_bytes += len;
    if (!uv_is_active((uv_handle_t *)&c2s->hold_timer))
        uv_timer_start(&c2s->hold_timer, hold_tick, HOLD_TICK_MS, HOLD_TICK_MS);
    return HOLD_HELD;
}

void hold_domain_away(c2s_t *c2s, domain_state_t *d)
{
    if (!d->needs_resume) d->away_since = uv_now(c2s->loop);
    d->needs_resume = true;
}

void hold_flush(c2s_t *c2s, domain_state_t *d)
{
    if (!c2s->comp || !comp_is_ready(c2s->comp) || !d->is_available) return;
    if (d->needs_resume) {
        d->needs_resume = false;
        unsigned n = 0;
        for (client_t *cl = c2s->clients; cl; cl = cl->next)
            if (cl->domain == d->name && cl->sid && (cl->state == CL_BOUND || cl->is_parked))
                n += session_resume(cl) == 0;
        size_t held = d->held_bytes;
        log_notice("%s: the session manager of %s is back: %u sessions resumed, %zu bytes held "
                   "sent on",
                   c2s->id, d->name, n, held);
    }
    while (d->held && comp_is_ready(c2s->comp)) {
        held_t *h = d->held;
        if (comp_send_raw(c2s->comp, h->data, h->len) < 0) break;
        d->held = h->next;
        if (!d->held) d->held_tail = NULL;
        entry_free(c2s, d, h);
    }
}

/* Answer a held stanza the sm never got in time. */
static void expire(client_t *cl, const held_t *h)
{
    if (h->is_end || !client_is_open(cl)) return;
    arena_t *a = arena_new(0);
    elem_t *route = xml_parse_fragment(a, h->data, h->len, NS_HEARTH_COMPONENT);
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
    bool is_holding = false;
    for (int i = 0; i < c2s->ndomains; i++) {
        domain_state_t *d = &c2s->domains[i];
        unsigned n = 0;
        while (d->held && now - d->held->at >= c2s->hold_time) {
            held_t *h = d->held;
            d->held = h->next;
            if (!d->held) d->held_tail = NULL;
            expire(h->cl, h);
            entry_free(c2s, d, h);
            n++;
        }
        if (n)
            log_warn("%s: the session manager of %s is away for %llu s: %u held stanzas answered "
                     "service-unavailable",
                     c2s->id, d->name, (unsigned long long)(c2s->hold_time / 1000), n);
        if (d->held) is_holding = true;
    }
    if (!is_holding) uv_timer_stop(t);
}

void hold_free_all(c2s_t *c2s)
{
    for (int i = 0; i < c2s->ndomains; i++) {
        domain_state_t *d = &c2s->domains[i];
        while (d->held) {
            held_t *h = d->held;
            d->held = h->next;
            entry_free(c2s, d, h);
        }
        d->held_tail = NULL;
    }
}
