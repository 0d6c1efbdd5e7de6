/* hold.c — the c2s instances the sm has lost sight of.
 *
 * When the router link is lost, every c2s holding sessions of ours is
 * "away"; so is one whose routes come back from the router as not-found
 * (it is reconnecting). Sessions on an away c2s are kept, and what the sm
 * routes to them is only queued in each session's queue of what its c2s
 * has not acknowledged (ack.c), up to sm.hold-max bytes in all. Once the
 * sm is linked again and the router advertises that c2s, the sm asks it
 * which of those sessions it still holds (sess_check_c2s: the others are
 * ended by its answers), and once it has said action='checked' to every
 * batch, sends each remaining session's queue again; the c2s drops what
 * it had by the sequence numbers. A c2s the router does not advertise
 * within sm.c2s-grace, or says is gone, took its clients with it: its
 * sessions end (with the unavailable presence their contacts expect), and
 * the messages it never acknowledged are delivered anew, to the user's
 * other sessions or the offline store (RFC 6121 §8.5).
 *
 * A new sm gathers first: until every c2s the router advertised when it
 * linked has said action='resumed' (its sessions are all re-announced),
 * or GATHER_MS went by, a message for a user with no session waits rather
 * than going to the offline store: that user may be online on a c2s whose
 * announcements are still on the way. */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define HOLD_TICK_MS 500
#define GATHER_MS 2000

struct away {
    away_t *next;
    char *c2s;
    uint64_t since;  /* loop ms */
    unsigned checks; /* batches of a check not answered yet */
    bool is_checking;
};

static void on_tick(uv_timer_t *t);

void hold_init(sm_t *sm)
{
    uv_timer_init(sm->loop, &sm->hold_timer);
    sm->hold_timer.data = sm;
    uv_timer_init(sm->loop, &sm->gather_timer);
    sm->gather_timer.data = sm;
    uv_timer_init(sm->loop, &sm->out_timer);
    sm->out_timer.data = sm;
    sm->outs_tail = &sm->outs;
    sm->out_wait = config_ms(sm->config, "s2s.connect-timeout");
    sm->hold_max = config_size(sm->config, "sm.hold-max");
    sm->c2s_grace = config_ms(sm->config, "sm.c2s-grace");
}

static away_t *find(const sm_t *sm, const char *c2s)
{
    for (away_t *a = sm->away; a; a = a->next)
        if (strcmp(a->c2s, c2s) == 0) return a;
    return NULL;
}

bool hold_is_away(const sm_t *sm, const char *c2s)
{
    return sm->away && find(sm, c2s);
}

void hold_c2s_away(sm_t *sm, const char *c2s)
{
    if (find(sm, c2s)) return;
    away_t *a = calloc(1, sizeof *a);
    if (!a || !(a->c2s = strdup(c2s))) log_fatal("out of memory");
    a->since = uv_now(sm->loop);
    a->next = sm->away;
    sm->away = a;
    log_notice("%s is out of sight; its sessions are kept for %llu s", c2s,
               (unsigned long long)(sm->c2s_grace / 1000));
    if (!uv_is_active((uv_handle_t *)&sm->hold_timer))
        uv_timer_start(&sm->hold_timer, on_tick, HOLD_TICK_MS, HOLD_TICK_MS);
}

static void away_free(sm_t *sm, away_t *a)
{
    for (away_t **p = &sm->away; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    if (!sm->away) uv_timer_stop(&sm->hold_timer);
    free(a->c2s);
    free(a);
}

typedef struct resend_ctx {
    sm_t *sm;
    const char *c2s;
    unsigned sessions;
    size_t bytes;
} resend_ctx_t;

static void resend_one(sess_t *s, void *ud)
{
    resend_ctx_t *r = ud;
    if (strcmp(s->c2s, r->c2s) != 0) return;
    r->sessions++;
    r->bytes += s->oq.bytes;
    ack_resend(r->sm, s);
}

/* Checked: each session left there gets its queue again. */
static void back(sm_t *sm, away_t *a)
{
    char *c2s = a->c2s;
    a->c2s = NULL;
    away_free(sm, a);
    resend_ctx_t r = {.sm = sm, .c2s = c2s};
    sm_each_session(sm, resend_one, &r);
    log_notice("%s is back: %u sessions kept, %zu bytes sent again", c2s, r.sessions, r.bytes);
    free(c2s);
}

void hold_c2s_back(sm_t *sm, const char *c2s)
{
    away_t *a = find(sm, c2s);
    if (!a || a->is_checking) return;
    a->is_checking = true;
    a->since = uv_now(sm->loop);
    a->checks = sess_check_c2s(sm, c2s);
    if (a->checks == 0) back(sm, a);
}

void hold_c2s_checked(sm_t *sm, const char *c2s)
{
    away_t *a = find(sm, c2s);
    if (a && a->is_checking && a->checks > 0 && --a->checks == 0) back(sm, a);
}

void hold_c2s_gone(sm_t *sm, const char *c2s)
{
    away_t *a = find(sm, c2s);
    if (a) away_free(sm, a);
    sess_end_c2s(sm, c2s, "c2s gone");
}

static void on_tick(uv_timer_t *t)
{
    sm_t *sm = t->data;
    if (!comp_is_ready(sm->comp)) return; /* the grace counts once we see the router */
    uint64_t now = uv_now(sm->loop);
    away_t *a = sm->away;
    while (a) {
        away_t *next = a->next;
        if (now - a->since >= sm->c2s_grace) {
            char *c2s = a->c2s;
            a->c2s = NULL;
            away_free(sm, a);
            sess_end_c2s(sm, c2s, "c2s did not come back");
            free(c2s);
        }
        a = next;
    }
}

void hold_linked(sm_t *sm)
{
    uint64_t now = uv_now(sm->loop);
    away_t *a = sm->away;
    while (a) {
        away_t *next = a->next;
        a->since = now;
        if (sm_is_advertised(sm, a->c2s)) hold_c2s_back(sm, a->c2s);
        a = next;
    }
}

/* ---- stanzas for the router or s2s ----------------------------------------- */

#define OUT_WAIT_MAX 100000 /* stanzas */

typedef struct out_wait {
    struct out_wait *next;
    sm_pkt_t *pkt; /* held: its origin is not acknowledged meanwhile (ack.c) */
    char *user;
    uint64_t at;
} out_wait_t;

static void on_out_tick(uv_timer_t *t);

void hold_out(sm_t *sm, sm_pkt_t *pkt, const char *user)
{
    if (sm->nouts >= OUT_WAIT_MAX) {
        if (log_is_first("sm: stanzas waiting for the router or s2s"))
            log_warn("%u stanzas wait for the router or s2s: more are answered "
                     "remote-server-timeout (logged once)", sm->nouts);
        sm_reply_error(sm, pkt, "remote-server-timeout");
        return;
    }
    out_wait_t *w = calloc(1, sizeof *w);
    if (!w || (user && !(w->user = strdup(user)))) log_fatal("out of memory");
    w->pkt = sm_pkt_hold(pkt);
    w->at = uv_now(sm->loop);
    if (!sm->outs_tail) sm->outs_tail = &sm->outs;
    *sm->outs_tail = w;
    sm->outs_tail = &w->next;
    sm->nouts++;
    if (!uv_is_active((uv_handle_t *)&sm->out_timer))
        uv_timer_start(&sm->out_timer, on_out_tick, 1000, 1000);
}

static out_wait_t *out_pop(sm_t *sm)
{
    out_wait_t *w = sm->outs;
    if (!w) return NULL;
    sm->outs = w->next;
    if (!sm->outs) sm->outs_tail = &sm->outs;
    sm->nouts--;
    return w;
}

static void out_free(out_wait_t *w)
{
    sm_pkt_release(w->pkt);
    free(w->user);
    free(w);
}

void hold_out_flush(sm_t *sm)
{
    if (!sm->outs) return;
    unsigned n = sm->nouts;
    /* What cannot go yet comes back to the end: take this many only. */
    for (unsigned i = 0; i < n; i++) {
        out_wait_t *w = out_pop(sm);
        origin_t *was = sm->origin;
        sm->origin = w->pkt->origin;
        deliver_route_out(sm, w->pkt, w->user);
        sm->origin = was;
        out_free(w);
    }
    if (sm->nouts < n) log_notice("%u stanzas that waited for the router or s2s sent on", n - sm->nouts);
}

static void on_out_tick(uv_timer_t *t)
{
    sm_t *sm = t->data;
    uint64_t now = uv_now(sm->loop);
    while (sm->outs && now - sm->outs->at >= sm->out_wait) {
        out_wait_t *w = out_pop(sm);
        sm_reply_error(sm, w->pkt, "remote-server-timeout");
        out_free(w);
    }
    if (!sm->outs) uv_timer_stop(t);
}

/* ---- a new sm gathers its sessions ------------------------------------ */

static void gather_end(sm_t *sm, const char *why)
{
    if (!sm->is_gathering) return;
    sm->is_gathering = false;
    uv_timer_stop(&sm->gather_timer);
    for (int i = 0; i < sm->ngather; i++)
        free(sm->gather[i]);
    sm->ngather = 0;
    sm_pkt_t **list = sm->gathered;
    int n = sm->ngathered;
    sm->gathered = NULL;
    sm->ngathered = sm->gathered_cap = 0;
    log_notice("sessions gathered (%s): %d waiting messages delivered", why, n);
    for (int i = 0; i < n; i++) {
        deliver_waiting(sm, list[i]);
        sm_pkt_release(list[i]);
    }
    free(list);
}

static void on_gather_timeout(uv_timer_t *t)
{
    gather_end(t->data, "not every c2s answered in time");
}

void hold_gather(sm_t *sm)
{
    for (int i = 0; i < sm->ncomponents; i++) {
        if (strncmp(sm->components[i], "c2s-", 4) != 0) continue;
        char **v = realloc(sm->gather, (size_t)(sm->ngather + 1) * sizeof(*v));
        if (!v || !(v[sm->ngather] = strdup(sm->components[i]))) log_fatal("out of memory");
        sm->gather = v;
        sm->ngather++;
    }
    if (sm->ngather == 0) return;
    sm->is_gathering = true;
    uv_timer_start(&sm->gather_timer, on_gather_timeout, GATHER_MS, 0);
    log_notice("waiting for %d c2s processes to re-announce their sessions", sm->ngather);
}

void hold_c2s_resumed(sm_t *sm, const char *c2s)
{
    for (int i = 0; i < sm->ngather; i++) {
        if (strcmp(sm->gather[i], c2s) != 0) continue;
        free(sm->gather[i]);
        sm->gather[i] = sm->gather[--sm->ngather];
        break;
    }
    if (sm->is_gathering && sm->ngather == 0) gather_end(sm, "every c2s re-announced");
}

bool hold_gathering(sm_t *sm, sm_pkt_t *pkt)
{
    if (!sm->is_gathering) return false;
    if (sm->ngathered == sm->gathered_cap) {
        sm->gathered_cap = sm->gathered_cap ? 2 * sm->gathered_cap : 64;
        sm->gathered = realloc(sm->gathered, (size_t)sm->gathered_cap * sizeof(*sm->gathered));
        if (!sm->gathered) log_fatal("out of memory");
    }
    sm->gathered[sm->ngathered++] = sm_pkt_hold(pkt);
    return true;
}

void hold_close(sm_t *sm)
{
    gather_end(sm, "stopping");
    free(sm->gather);
    uv_close((uv_handle_t *)&sm->gather_timer, NULL);
    while (sm->outs)
        out_free(out_pop(sm));
    uv_close((uv_handle_t *)&sm->out_timer, NULL);
    while (sm->away)
        away_free(sm, sm->away);
    uv_close((uv_handle_t *)&sm->hold_timer, NULL);
}
