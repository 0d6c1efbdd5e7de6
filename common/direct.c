/* direct.c — direct links between the sm and each c2s on its machine, so
 * that a session's stanzas cross one process fewer each way (a chat
 * message: c2s, sm, c2s instead of c2s, router, sm, router, c2s).
 *
 * The session protocol (DESIGN.md) is unchanged; only its transport is: a
 * route to a name a direct link speaks for goes on the link instead of
 * through the router, byte for byte what the router would have carried.
 * The router stays the only place names are resolved and roles are given:
 * a link is offered and switched on by routes through the router, which
 * carry the router's role mark, and it exists only between the sm and one
 * named c2s. How a link starts (every route through the router, marked):
 *
 *  1. The sm listens on a loopback address (sm.direct-listen) and, for each
 *     c2s the router advertises, sends it
 *       <route to='c2s-1' from='sm-1' direct='offer' addr='127.0.0.1:P'
 *              token='T' names='example.com … sm-1'/>
 *     T is 128 random bits, good once, for that c2s, for OFFER_MS; names are
 *     the names the sm bound. Only the router and c2s-1 see T.
 *  2. A c2s takes an offer only with role='sm', for a loopback address, and
 *     only when its own router link is local (so all three are on one
 *     machine and the sm owns that port). It connects and opens a stream
 *       <stream:stream xmlns='urn:hearth:component:1' … from='c2s-1' token='T'>
 *     and reads nothing from it yet.
 *  3. The sm matches the token to its offer (anything else is closed),
 *     answers with its own stream header, stops reading, and sends
 *       <route to='c2s-1' from='sm-1' direct='switch' token='T'/>
 *     through the router; from then on every route it sends to c2s-1 goes
 *     on the link.
 *  4. The c2s, given that switch by the router (role='sm', its token),
 *     starts reading the link: all the sm routed before the switch came
 *     through the router, before it, so nothing overtakes. It answers
 *       <route to='NAME' from='c2s-1' user='c2s-1' direct='switch' token='T'/>
 *     and from then on its routes to the offered names go on the link.
 *  5. The sm, given that switch (role='c2s', from the c2s it offered to,
 *     the token), starts reading the link, the same way.
 *
 * The sm learns T back only from a connection to its own listener, and a
 * c2s reads a link only after the sm, through the router, said it took
 * that token there: a process that is neither cannot take part. What
 * arrives on a link is marked with the role the router would have given
 * it (role='sm' or role='c2s'); a route on a link that carries a role of
 * its own, speaks for a name its peer does not, or comes before the
 * switch, ends the link. So does anything that is not a route.
 *
 * A link that closes after it carried routes (its peer died, an error) is
 * first told to the peer through the router,
 *   <route to='c2s-1' from='sm' direct='down' token='T'/> (and back the same way),
 * so that a peer that has not seen the break yet closes its end before it
 * reads what follows that mark (else it would answer on the dead link);
 * then it is reported to the daemon by on_direct_down for each name it
 * spoke for, unless the router has already said that peer is gone; the daemon then
 * does what it does for a peer that was out of sight and is back (the c2s
 * resumes its sessions, the sm checks its sessions there and sends their
 * queues again: c2s/hold.c, sm/hold.c), through the router, so what was in
 * flight on the link is not lost. The sm offers a new link after
 * RETRY_MS. With sm.shards above 1 no links are offered: the router picks
 * each user's shard. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "component_private.h"
#include "log.h"
#include "tls.h"
#include "xmpp.h"

#define TOKEN_BYTES 16
#define OFFER_MS 10000     /* an offer, and a link waiting for its switch */
#define HELLO_MS 5000      /* an accepted connection, for its token */
#define RETRY_MS 2000      /* a new offer after a link or an offer failed, */
#define RETRY_MAX_MS 60000 /* doubling each time up to this */
#define TICK_MS 1000

typedef enum link_state {
    LINK_HELLO,      /* sm: accepted, waiting for the stream with the token */
    LINK_CONNECTING, /* c2s: TCP connect in progress */
    LINK_OPEN,       /* token given and taken; waiting for the switch */
    LINK_LIVE,       /* switched: read and written both ways */
} link_state_t;

typedef struct dlink {
    struct dlink *next;
    comp_t *comp;
    conn_t *conn;
    xstream_t *xs;
    link_state_t state;
    char token[2 * TOKEN_BYTES + 1];
    char *peer;   /* for the logs: c2s-1, or the sm's first name */
    char **names; /* routes to these go on the link; its routes' from is one */
    int nnames;
    comp_role_t peer_role;
    bool is_writing, is_reading;
    bool is_closing;   /* aborted: its on_close is on the way; written no more */
    bool is_forgotten; /* the router said its peer is gone: no on_direct_down */
    uint64_t since;
} dlink_t;

typedef struct offer {
    struct offer *next;
    char *peer;
    char token[2 * TOKEN_BYTES + 1];
    uint64_t at;
} offer_t;

typedef struct wanted { /* a peer advertised: it should have a link */
    struct wanted *next;
    char *peer;
    uint64_t retry_at;
    unsigned backoff_ms;
} wanted_t;

struct comp_direct {
    comp_t *comp;
    listener_t *listener;   /* the sm's side */
    char addr[64];          /* where it listens, as offered */
    comp_role_t peer_role;  /* the sm: whom it offers to (c2s) */
    comp_role_t offer_role; /* a c2s: whose offers it takes (sm) */
    offer_t *offers;
    wanted_t *wanted;
    dlink_t *links;
    uv_timer_t tick;
};

static void link_on_open(void *ud, elem_t *header, const char *default_ns);
static void link_on_stanza(void *ud, elem_t *e, const xstream_raw_t *raw);
static void link_on_stream_close(void *ud);
static void link_on_read(conn_t *conn, const char *data, size_t len);
static void link_on_drain(conn_t *conn);
static void link_on_connect(conn_t *conn, int status);
static void link_on_close(conn_t *conn, const char *reason);

static const xstream_cb_t link_stream_cb = {link_on_open, link_on_stanza, link_on_stream_close};
static const conn_cb_t link_conn_cb = {
    .on_read = link_on_read,
    .on_drain = link_on_drain,
    .on_connect = link_on_connect,
    .on_close = link_on_close,
};

static void on_tick(uv_timer_t *t);

static comp_direct_t *direct_get(comp_t *c)
{
    if (c->direct) return c->direct;
    comp_direct_t *d = calloc(1, sizeof *d);
    if (!d) log_fatal("out of memory");
    d->comp = c;
    uv_timer_init(c->loop, &d->tick);
    d->tick.data = d;
    c->direct = d;
    return d;
}

/* ---- links ----------------------------------------------------------------- */

static void tick_soon(comp_direct_t *d)
{
    if (!uv_is_active((uv_handle_t *)&d->tick)) uv_timer_start(&d->tick, on_tick, TICK_MS, TICK_MS);
}

static dlink_t *link_new(comp_t *c, link_state_t state)
{
    dlink_t *l = calloc(1, sizeof *l);
    if (!l) log_fatal("out of memory");
    l->comp = c;
    l->state = state;
    l->since = uv_now(c->loop);
    l->next = c->direct->links;
    c->direct->links = l;
    tick_soon(c->direct);
    return l;
}

static void link_add_name(dlink_t *l, const char *name, size_t len)
{
    char **v = realloc(l->names, (size_t)(l->nnames + 1) * sizeof *v);
    if (!v || !(v[l->nnames] = strndup(name, len))) log_fatal("out of memory");
    l->names = v;
    l->nnames++;
}

static bool link_speaks_for(const dlink_t *l, const char *name, size_t len)
{
    for (int i = 0; i < l->nnames; i++)
        if (strlen(l->names[i]) == len && memcmp(l->names[i], name, len) == 0) return true;
    return false;
}

static void link_start_stream(dlink_t *l)
{
    xstream_opts_t opts = {.max_stanza = l->comp->max_stanza, .shallow = l->comp->is_shallow};
    l->xs = xstream_new(&opts, &link_stream_cb, l);
    if (!l->xs) log_fatal("out of memory");
    xstream_skip_content(l->xs, l->comp->is_shallow);
}

static void link_close(dlink_t *l)
{
    l->is_closing = true;
    conn_abort(l->conn);
}

static void link_fail(dlink_t *l, const char *why)
{
    log_warn("direct link with %s: %s; its routes go through the router", l->peer ? l->peer : "?",
             why);
    link_close(l);
}

static void link_go_live(dlink_t *l)
{
    l->state = LINK_LIVE;
    l->is_reading = true;
    if (!l->comp->is_paused) conn_resume(l->conn);
    log_notice("direct link with %s up", l->peer);
    for (wanted_t *w = l->comp->direct->wanted; w; w = w->next)
        if (strcmp(w->peer, l->peer) == 0) w->backoff_ms = RETRY_MS;
}

/* ---- routes through the router ----------------------------------------------- */

/* A route of ours through the router (never a direct link): from is the
 * first name we bound, to and the direct='…' attributes as given. */
static void send_control(comp_t *c, const char *to, const char *user, const char *what,
                         const char *token, const char *extra)
{
    if (c->state != COMP_READY) return;
    buf_t *b = &c->out;
    comp_route_head(b, to, c->names ? c->names->name : c->id, user, NULL, NULL);
    xml_attr(b, "direct", what);
    xml_attr(b, "token", token);
    if (extra) buf_appends(b, extra);
    buf_appends(b, "/>");
    conn_write(c->conn, b->data, b->len);
    buf_reset(b);
}

static void send_offer(comp_direct_t *d, wanted_t *w)
{
    comp_t *c = d->comp;
    if (c->state != COMP_READY) return;
    offer_t *o = calloc(1, sizeof *o);
    if (!o) log_fatal("out of memory");
    o->peer = comp_strdup(w->peer);
    random_hex(o->token, TOKEN_BYTES);
    o->at = uv_now(c->loop);
    o->next = d->offers;
    d->offers = o;
    tick_soon(d);
    buf_t extra = {0};
    xml_attr(&extra, "addr", d->addr);
    buf_appends(&extra, " names='");
    for (comp_name_t *n = c->names; n; n = n->next) {
        xml_escape(&extra, n->name, strlen(n->name), true);
        if (n->next) buf_appends(&extra, " ");
    }
    buf_appends(&extra, "'");
    buf_append(&extra, "", 1);
    send_control(c, w->peer, NULL, "offer", o->token, extra.data);
    buf_free(&extra);
}

/* The offer to peer, or its link, failed: offer again later, and later
 * each time (a c2s that cannot take links is not asked every few seconds). */
static void retry_later(comp_direct_t *d, const char *peer)
{
    for (wanted_t *w = d->wanted; w; w = w->next)
        if (peer && strcmp(w->peer, peer) == 0) {
            w->retry_at = uv_now(d->comp->loop) + w->backoff_ms;
            w->backoff_ms = w->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : w->backoff_ms * 2;
            tick_soon(d);
        }
}

static bool has_link_or_offer(const comp_direct_t *d, const char *peer)
{
    for (const dlink_t *l = d->links; l; l = l->next)
        if (l->peer && strcmp(l->peer, peer) == 0 && !l->is_closing) return true;
    for (const offer_t *o = d->offers; o; o = o->next)
        if (strcmp(o->peer, peer) == 0) return true;
    return false;
}

static void offer_free(offer_t *o)
{
    explicit_bzero(o->token, sizeof o->token);
    free(o->peer);
    free(o);
}

/* ---- the sm's side ------------------------------------------------------------ */

/* conn_listen made the listener its handle's data. */
static void free_listener(uv_handle_t *h)
{
    free(h->data);
}

static void on_direct_conn(uv_stream_t *server, int status)
{
    comp_direct_t *d = ((listener_t *)server->data)->data;
    if (status < 0) return;
    dlink_t *l = link_new(d->comp, LINK_HELLO);
    if (!(l->conn = conn_accept(server, &link_conn_cb, l))) {
        d->links = l->next;
        free(l);
        return;
    }
    if (!conn_is_local(l->conn)) {
        link_fail(l, "not from this machine");
        return;
    }
    link_start_stream(l);
}

int comp_direct_listen(comp_t *c, const char *addr, comp_role_t peer_role)
{
    if (strncmp(addr, "unix:", 5) == 0) return UV_EINVAL;
    comp_direct_t *d = direct_get(c);
    d->peer_role = peer_role;
    d->listener = calloc(1, sizeof *d->listener);
    if (!d->listener) log_fatal("out of memory");
    d->listener->data = d;
    int rc = conn_listen(c->loop, d->listener, addr, false, on_direct_conn);
    if (rc < 0) {
        free(d->listener);
        d->listener = NULL;
        return rc;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "";
    rc = uv_tcp_getsockname(&d->listener->h.tcp, (struct sockaddr *)&ss, &len);
    if (rc == 0 && ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        uv_ip4_name(in, host, sizeof host);
        if ((ntohl(in->sin_addr.s_addr) >> 24) != 127) rc = UV_EINVAL;
        snprintf(d->addr, sizeof d->addr, "%s:%u", host, ntohs(in->sin_port));
    } else if (rc == 0 && ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(in6, host, sizeof host);
        if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) rc = UV_EINVAL;
        snprintf(d->addr, sizeof d->addr, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (rc == 0) {
        rc = UV_EINVAL;
    }
    if (rc < 0) {
        uv_close((uv_handle_t *)&d->listener->h, free_listener);
        d->listener = NULL;
        return rc;
    }
    log_info("direct links for c2s processes on %s", d->addr);
    return 0;
}

void comp_direct_offer(comp_t *c, const char *peer)
{
    comp_direct_t *d = c->direct;
    if (!d || !d->listener) return;
    for (wanted_t *w = d->wanted; w; w = w->next)
        if (strcmp(w->peer, peer) == 0) return;
    wanted_t *w = calloc(1, sizeof *w);
    if (!w) log_fatal("out of memory");
    w->peer = comp_strdup(peer);
    w->backoff_ms = RETRY_MS;
    w->next = d->wanted;
    d->wanted = w;
    if (!has_link_or_offer(d, peer)) send_offer(d, w);
}

/* The stream from a c2s: its token must be the one we offered it. */
static void hello(dlink_t *l, const elem_t *header)
{
    comp_direct_t *d = l->comp->direct;
    const char *token = elem_attr(header, "token"), *from = elem_attr(header, "from");
    offer_t **p = &d->offers;
    while (*p &&
           !(token && from && strcmp((*p)->token, token) == 0 && strcmp((*p)->peer, from) == 0))
        p = &(*p)->next;
    if (!*p) {
        char key[128];
        snprintf(key, sizeof key, "direct hello %s", conn_peer(l->conn));
        if (log_is_first(key))
            log_warn("direct link from %s refused: no offer for that token (logged once per "
                     "address)",
                     conn_peer(l->conn));
        link_close(l);
        return;
    }
    offer_t *o = *p;
    *p = o->next;
    l->peer = o->peer;
    o->peer = NULL;
    memcpy(l->token, o->token, sizeof l->token);
    offer_free(o);
    link_add_name(l, l->peer, strlen(l->peer));
    l->peer_role = d->peer_role;
    if (l->comp->state != COMP_READY) {
        link_fail(l, "the router went away before the switch");
        return;
    }
    l->state = LINK_OPEN;
    l->since = uv_now(l->comp->loop);
    conn_pause(l->conn);
    comp_write_header(l->comp, l->conn, NULL, NULL); /* the c2s's carries the token */
    send_control(l->comp, l->peer, NULL, "switch", l->token, NULL);
    l->is_writing = true;
}

/* ---- a c2s's side ------------------------------------------------------------- */

void comp_direct_accept(comp_t *c, comp_role_t offer_role)
{
    direct_get(c)->offer_role = offer_role;
}

static void take_offer(comp_t *c, const elem_t *route)
{
    comp_direct_t *d = c->direct;
    const char *addr = elem_attr(route, "addr"), *token = elem_attr(route, "token");
    const char *names = elem_attr(route, "names");
    if (!addr || !token || strlen(token) != 2 * TOKEN_BYTES || !names ||
        strspn(names, " ") == strlen(names)) {
        log_warn("direct link offer without addr, token or names: ignored");
        return;
    }
    if (!conn_addr_is_loopback(addr) || !conn_is_local(c->conn)) {
        if (log_is_first("direct offer not local"))
            log_notice("direct link offered on %s not taken: the sm, the router and this "
                       "process must share a machine (logged once)",
                       addr);
        return;
    }
    dlink_t *l = link_new(c, LINK_CONNECTING);
    memcpy(l->token, token, sizeof l->token);
    for (const char *p = names; *p;) {
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len) link_add_name(l, p, len);
        p += len + (e != NULL);
    }
    l->peer = comp_strdup(l->names[0]);
    l->peer_role = d->offer_role;
    /* A link the sm no longer has (it restarted): this one replaces it. */
    for (dlink_t *o = d->links; o; o = o->next)
        if (o != l && !o->is_closing && link_speaks_for(l, o->names[0], strlen(o->names[0])))
            link_fail(o, "replaced by a new offer");
    if (!(l->conn = conn_connect(c->loop, addr, &link_conn_cb, l))) {
        d->links = l->next; /* link_new put it first; nothing else was added since */
        log_warn("direct link offer for %s: address does not parse", addr);
        free(l->peer);
        for (int i = 0; i < l->nnames; i++)
            free(l->names[i]);
        free(l->names);
        free(l);
    }
}

static void link_on_connect(conn_t *conn, int status)
{
    dlink_t *l = conn_data(conn);
    if (!l || status < 0) return; /* on_close follows */
    conn_pause(conn);             /* nothing is read before the sm's switch */
    link_start_stream(l);
    comp_write_header(l->comp, l->conn, NULL, l->token);
    l->state = LINK_OPEN;
    l->since = uv_now(l->comp->loop);
}

/* ---- switches, through the router -------------------------------------------- */

/* The link of that token (in state, or any state when LIVE is asked for
 * with is_any), not closing. */
static dlink_t *find_by_token(comp_direct_t *d, const char *token, link_state_t state, bool is_any)
{
    for (dlink_t *l = d->links; l; l = l->next)
        if (!l->is_closing && (is_any || l->state == state) && token &&
            strcmp(l->token, token) == 0)
            return l;
    return NULL;
}

/* A route through the router from the peer of l (the sm's names, or the
 * c2s it was offered to), with the peer's role. */
static bool is_from_peer(const comp_direct_t *d, const dlink_t *l, comp_role_t role,
                         const char *from)
{
    if (role != l->peer_role || !from) return false;
    return d->listener ? strcmp(from, l->peer) == 0 : link_speaks_for(l, from, strlen(from));
}

void direct_control(comp_t *c, const elem_t *route)
{
    comp_direct_t *d = c->direct;
    const char *what = elem_attr(route, "direct"), *from = elem_attr(route, "from");
    comp_role_t role = comp_route_role(route);
    bool is_taker = d && d->offer_role;
    if (is_taker && role == d->offer_role && strcmp(what, "offer") == 0) {
        take_offer(c, route);
        return;
    }
    const char *token = elem_attr(route, "token");
    if (d && strcmp(what, "down") == 0) {
        /* The peer saw the link break: close our end before anything the
         * peer routed after this mark is answered. A stale one is no news. */
        dlink_t *l = find_by_token(d, token, LINK_LIVE, true);
        if (l && is_from_peer(d, l, role, from)) link_fail(l, "its peer saw it break");
        return;
    }
    dlink_t *l = d ? find_by_token(d, token, LINK_OPEN, false) : NULL;
    if (l && strcmp(what, "switch") == 0 && is_from_peer(d, l, role, from)) {
        link_go_live(l);
        if (is_taker) {
            send_control(c, l->names[0], c->id, "switch", l->token, NULL);
            l->is_writing = true;
        }
        return;
    }
    char key[320];
    snprintf(key, sizeof key, "direct %s %s %s", what, comp_role_name(role), from ? from : "-");
    if (log_is_first(key))
        log_warn("direct='%s' route from %s (role %s) refused (logged once per sender)", what,
                 from ? from : "?", role ? comp_role_name(role) : "none");
}

/* ---- reading a link ------------------------------------------------------------ */

static void link_on_open(void *ud, elem_t *header, const char *default_ns)
{
    dlink_t *l = ud;
    if (l->is_closing) return;
    if (!elem_is(header, NS_STREAMS, "stream") || strcmp(default_ns, NS_HEARTH_COMPONENT) != 0) {
        link_fail(l, "not a component stream");
        return;
    }
    if (l->state == LINK_HELLO) hello(l, header);
}

static void link_on_stanza(void *ud, elem_t *e, const xstream_raw_t *raw)
{
    dlink_t *l = ud;
    comp_t *c = l->comp;
    const char *from = elem_attr(e, "from");
    if (l->is_closing) return;
    if (l->state != LINK_LIVE || strcmp(e->name, "route") != 0) {
        link_fail(l, l->state != LINK_LIVE ? "a route before the switch" : "not a route");
        return;
    }
    if (elem_attr(e, "role") || elem_attr(e, "direct")) {
        link_fail(l, "a route that marks itself");
        return;
    }
    /* The sm's link speaks for its c2s alone; a c2s's for the sm's names. */
    bool is_peers = from && (c->direct->listener ? strcmp(from, l->peer) == 0
                                                 : link_speaks_for(l, from, strlen(from)));
    if (!is_peers) {
        link_fail(l, "a route from a name its peer does not speak for");
        return;
    }
    elem_set_attr(e, "role", comp_role_name(l->peer_role));
    comp_give_route(c, l->xs, e, raw);
}

static void link_on_stream_close(void *ud)
{
    dlink_t *l = ud;
    l->is_closing = true;
    conn_close(l->conn);
}

static void link_on_read(conn_t *conn, const char *data, size_t len)
{
    dlink_t *l = conn_data(conn);
    if (!l || !l->xs) return;
    xstream_status_t st = xstream_feed(l->xs, data, len);
    if (st != XSTREAM_OK) link_fail(l, xstream_condition(st));
}

static void link_on_drain(conn_t *conn)
{
    dlink_t *l = conn_data(conn);
    if (l && l->comp->cb.on_drain) l->comp->cb.on_drain(l->comp);
}

static void link_free(dlink_t *l)
{
    if (l->xs) xstream_free(l->xs);
    explicit_bzero(l->token, sizeof l->token);
    for (int i = 0; i < l->nnames; i++)
        free(l->names[i]);
    free(l->names);
    free(l->peer);
    free(l);
}

static void link_on_close(conn_t *conn, const char *reason)
{
    dlink_t *l = conn_data(conn);
    if (!l) return;
    comp_t *c = l->comp;
    comp_direct_t *d = c->direct;
    for (dlink_t **p = &d->links; *p; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            break;
        }
    if (l->is_writing || l->state == LINK_LIVE)
        log_notice("direct link with %s closed%s%s", l->peer ? l->peer : "?", reason ? ": " : "",
                   reason ? reason : "");
    retry_later(d, l->peer);
    if (l->is_writing && !l->is_forgotten) {
        /* The peer may not have seen it yet, and would write on: tell it
         * first, through the router, where what the daemon sends next
         * (checks, resumes) follows, so it reads that after closing. */
        if (d->listener)
            send_control(c, l->peer, NULL, "down", l->token, NULL);
        else
            send_control(c, l->names[0], c->id, "down", l->token, NULL);
        /* Unlinked already: what the daemon sends now goes through the router. */
        for (int i = 0; c->cb.on_direct_down && i < l->nnames; i++)
            c->cb.on_direct_down(c, l->names[i]);
    }
    link_free(l);
}

/* ---- what component.c asks --------------------------------------------------- */

conn_t *direct_conn_for(comp_t *c, const char *to, size_t len)
{
    for (dlink_t *l = c->direct->links; l; l = l->next)
        if (l->is_writing && !l->is_closing && link_speaks_for(l, to, len)) return l->conn;
    return NULL;
}

void direct_name_gone(comp_t *c, const char *name)
{
    comp_direct_t *d = c->direct;
    size_t len = strlen(name);
    for (wanted_t **p = &d->wanted; *p;) {
        wanted_t *w = *p;
        if (strcmp(w->peer, name) == 0) {
            *p = w->next;
            free(w->peer);
            free(w);
        } else {
            p = &w->next;
        }
    }
    for (offer_t **p = &d->offers; *p;) {
        offer_t *o = *p;
        if (strcmp(o->peer, name) == 0) {
            *p = o->next;
            offer_free(o);
        } else {
            p = &o->next;
        }
    }
    for (dlink_t *l = d->links; l; l = l->next)
        if (!l->is_closing && link_speaks_for(l, name, len)) {
            l->is_forgotten = true;
            link_close(l);
        }
}

void direct_ready(comp_t *c)
{
    comp_direct_t *d = c->direct;
    for (wanted_t *w = d->wanted; w; w = w->next)
        if (!has_link_or_offer(d, w->peer)) send_offer(d, w);
}

static void on_tick(uv_timer_t *t)
{
    comp_direct_t *d = t->data;
    uint64_t now = uv_now(d->comp->loop);
    for (offer_t **p = &d->offers; *p;) {
        offer_t *o = *p;
        if (now - o->at >= OFFER_MS) {
            *p = o->next;
            retry_later(d, o->peer);
            offer_free(o);
        } else {
            p = &o->next;
        }
    }
    bool is_waiting = d->offers != NULL;
    for (dlink_t *l = d->links; l; l = l->next) {
        if (l->is_closing || l->state == LINK_LIVE) continue;
        if (l->state == LINK_HELLO && now - l->since >= HELLO_MS)
            link_fail(l, "no token in time");
        else if (l->state != LINK_HELLO && now - l->since >= OFFER_MS)
            link_fail(l, "no switch in time");
        else
            is_waiting = true;
    }
    for (wanted_t *w = d->wanted; w; w = w->next) {
        if (has_link_or_offer(d, w->peer)) continue;
        if (now >= w->retry_at) send_offer(d, w); /* none while the router is away */
        is_waiting = true;
    }
    /* Nothing to time: no wake-up of its own. */
    if (!is_waiting) uv_timer_stop(&d->tick);
}

bool direct_is_full(const comp_t *c)
{
    if (!c->direct) return false;
    for (const dlink_t *l = c->direct->links; l; l = l->next)
        if (l->is_writing && conn_is_full(l->conn)) return true;
    return false;
}

void direct_pause(comp_t *c, bool is_paused)
{
    if (!c->direct) return;
    for (dlink_t *l = c->direct->links; l; l = l->next)
        if (l->is_reading) is_paused ? conn_pause(l->conn) : conn_resume(l->conn);
}

unsigned comp_direct_count(const comp_t *c)
{
    unsigned n = 0;
    for (const dlink_t *l = c->direct ? c->direct->links : NULL; l; l = l->next)
        n += l->state == LINK_LIVE;
    return n;
}

static void free_direct(uv_handle_t *h)
{
    free(h->data);
}

void direct_free(comp_t *c)
{
    comp_direct_t *d = c->direct;
    if (!d) return;
    c->direct = NULL;
    while (d->links) {
        dlink_t *l = d->links;
        d->links = l->next;
        conn_set_data(l->conn, NULL);
        /* What the daemon sent last (a stopping c2s's session ends) still
         * goes, as on the router link (comp_free). */
        if (l->is_writing && !l->is_closing) {
            conn_write(l->conn, "</stream:stream>", 16);
            conn_close(l->conn);
        } else {
            conn_abort(l->conn);
        }
        link_free(l);
    }
    while (d->offers) {
        offer_t *o = d->offers;
        d->offers = o->next;
        offer_free(o);
    }
    while (d->wanted) {
        wanted_t *w = d->wanted;
        d->wanted = w->next;
        free(w->peer);
        free(w);
    }
    if (d->listener) uv_close((uv_handle_t *)&d->listener->h, free_listener);
    uv_close((uv_handle_t *)&d->tick, free_direct);
}
