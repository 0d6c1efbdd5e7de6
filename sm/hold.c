/* hold.c — the c2s instances the sm has lost sight of, and what waits for
 * their sessions.
 *
 * When the router link is lost, every c2s holding sessions of ours is
 * "away"; so is one whose routes come back from the router as not-found
 * (it is reconnecting). Sessions on an away c2s are kept, and what the sm
 * sends them is held here, in order, up to sm.hold-max bytes. Once the sm
 * is linked again and the router advertises that c2s, the sm asks it which
 * of those sessions it still holds (sess_check_c2s: the others are ended
 * by its answers), and once it has said action='checked' to every batch,
 * sends what was held for the sessions that are left, and delivers anew
 * the messages held for those that ended. A c2s the router does not
 * advertise within sm.c2s-grace, or says is gone, took its clients with
 * it: its sessions end (with the unavailable presence their contacts
 * expect), and the messages held for them are delivered anew, to the
 * user's other sessions or the offline store (RFC 6121 §8.5). */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define HOLD_TICK_MS 500

typedef struct held {
    struct held *next;
    char sid[33]; /* the session it is for */
    size_t len;
    char data[];
} held_t;

struct away {
    away_t *next;
    char *c2s;
    uint64_t since;  /* loop ms */
    unsigned checks; /* batches of a check not answered yet */
    bool is_checking;
    held_t *held, **tail;
    size_t bytes;
};

static void on_tick(uv_timer_t *t);

void hold_init(sm_t *sm)
{
    uv_timer_init(sm->loop, &sm->hold_timer);
    sm->hold_timer.data = sm;
    sm->hold_max = config_size(sm->config, "sm.hold-max");
    sm->c2s_grace = config_ms(sm->config, "sm.c2s-grace");
}

static away_t *find(sm_t *sm, const char *c2s)
{
    for (away_t *a = sm->away; a; a = a->next)
        if (strcmp(a->c2s, c2s) == 0) return a;
    return NULL;
}

void hold_c2s_away(sm_t *sm, const char *c2s)
{
    if (find(sm, c2s)) return;
    away_t *a = calloc(1, sizeof *a);
    if (!a || !(a->c2s = strdup(c2s))) log_fatal("out of memory");
    a->since = uv_now(sm->loop);
    a->tail = &a->held;
    a->next = sm->away;
    sm->away = a;
    log_notice("%s is out of sight; its sessions are kept for %llu s", c2s,
               (unsigned long long)(sm->c2s_grace / 1000));
    if (!uv_is_active((uv_handle_t *)&sm->hold_timer))
        uv_timer_start(&sm->hold_timer, on_tick, HOLD_TICK_MS, HOLD_TICK_MS);
}

bool hold_route(sm_t *sm, const sess_t *sess, const char *data, size_t len)
{
    const char *c2s = sess->c2s;
    away_t *a = find(sm, c2s);
    if (!a) return false;
    if (sm->held_bytes + len > sm->hold_max) {
        log_warn("%s is out of sight and sm.hold-max is reached: a stanza for it dropped", c2s);
        return true;
    }
    held_t *h = malloc(sizeof *h + len);
    if (!h) log_fatal("out of memory");
    h->next = NULL;
    memcpy(h->sid, sess->sid, sizeof h->sid);
    h->len = len;
    memcpy(h->data, data, len);
    *a->tail = h;
    a->tail = &h->next;
    a->bytes += len;
    sm->held_bytes += len;
    return true;
}

static void unlink_away(sm_t *sm, away_t *a)
{
    for (away_t **p = &sm->away; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    if (!sm->away) uv_timer_stop(&sm->hold_timer);
}

static void away_free(sm_t *sm, away_t *a)
{
    while (a->held) {
        held_t *h = a->held;
        a->held = h->next;
        sm->held_bytes -= h->len;
        free(h);
    }
    free(a->c2s);
    free(a);
}

/* A held route whose session is gone: a message is delivered anew. */
static bool redeliver(sm_t *sm, const held_t *h)
{
    arena_t *ar = arena_new(0);
    elem_t *route = xml_parse_fragment(ar, h->data, h->len, NS_HEARTH_COMPONENT);
    elem_t *payload = route ? elem_first(route) : NULL;
    bool is_message = payload && strcmp(payload->name, "message") == 0;
    if (is_message) deliver_again(sm, payload);
    arena_free(ar);
    return is_message;
}

/* What was held goes to the sessions still there, or anew. */
static void flush(sm_t *sm, away_t *a)
{
    unlink_away(sm, a);
    unsigned sent = 0, again = 0;
    for (held_t *h = a->held; h; h = h->next) {
        const sess_t *s = map_get(&sm->sessions_by_sid, h->sid);
        if (s && strcmp(s->c2s, a->c2s) == 0)
            sent += comp_send_raw(sm->comp, h->data, h->len) == 0;
        else
            again += redeliver(sm, h);
    }
    log_notice("%s is back: %u held stanzas sent on, %u messages delivered anew", a->c2s, sent,
               again);
    away_free(sm, a);
}

void hold_c2s_back(sm_t *sm, const char *c2s)
{
    away_t *a = find(sm, c2s);
    if (!a || a->is_checking) return;
    a->is_checking = true;
    a->since = uv_now(sm->loop);
    a->checks = sess_check_c2s(sm, c2s);
    if (a->checks == 0) flush(sm, a);
}

void hold_c2s_checked(sm_t *sm, const char *c2s)
{
    away_t *a = find(sm, c2s);
    if (a && a->is_checking && a->checks > 0 && --a->checks == 0) flush(sm, a);
}

/* Its sessions are over: deliver anew the messages held for them. */
static void give_up(sm_t *sm, away_t *a, const char *why)
{
    unlink_away(sm, a);
    sess_end_c2s(sm, a->c2s, why);
    unsigned n = 0;
    for (held_t *h = a->held; h; h = h->next)
        n += redeliver(sm, h);
    if (n) log_notice("%u messages held for %s delivered anew", n, a->c2s);
    away_free(sm, a);
}

void hold_c2s_gone(sm_t *sm, const char *c2s)
{
    away_t *a = find(sm, c2s);
    if (a)
        give_up(sm, a, "c2s gone");
    else
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
        if (now - a->since >= sm->c2s_grace) give_up(sm, a, "c2s did not come back");
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

void hold_close(sm_t *sm)
{
    while (sm->away) {
        away_t *a = sm->away;
        sm->away = a->next;
        away_free(sm, a);
    }
    uv_close((uv_handle_t *)&sm->hold_timer, NULL);
}
