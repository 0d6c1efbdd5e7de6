/* component.h — a daemon's link to the router (DESIGN.md, "The component
 * protocol").
 *
 * Connects, upgrades to TLS when the router asks (STARTTLS, verifying
 * its certificate), authenticates with SASL SCRAM-SHA-256, binds the names the
 * daemon asked for, then carries routes both ways. When the router goes
 * away it reconnects with a growing backoff (100 ms doubling to 5 s) and
 * binds the same names again by itself. Routes sent while the link is down
 * are dropped and counted: the daemon sees the link state through
 * on_ready/on_down and must not rely on them. A route to a name that a
 * direct link speaks for (comp_direct_*) goes on that link instead. */
#ifndef HEARTH_COMPONENT_H
#define HEARTH_COMPONENT_H

#include <stdbool.h>
#include <uv.h>

#include "buf.h"
#include "config.h"
#include "role.h"
#include "xml.h"
#include "xstream.h"

typedef struct comp comp_t;

typedef struct comp_cb {
    /* Authenticated and every name bound (again, after a reconnect). */
    void (*on_ready)(comp_t *c);
    /* The link to the router was lost; reconnecting. */
    void (*on_down)(comp_t *c);
    /* A route arrived. route lives until the callback returns (unless
     * the callback keeps it: comp_keep_route); its payload is
     * elem_first(route). raw is its bytes as received. */
    void (*on_route)(comp_t *c, elem_t *route, const xstream_raw_t *raw);
    /* A name was bound (available) or released somewhere on the router. */
    void (*on_advert)(comp_t *c, const char *name, bool available);
    /* The router refused a bind (error: "conflict", ...). */
    void (*on_bind_error)(comp_t *c, const char *name, const char *error);
    /* Writes can go on after comp_is_full() was true. */
    void (*on_drain)(comp_t *c);
    /* A direct link (below) that carried our routes to name closed while
     * the router still advertises name: what was in flight on it may be
     * lost, and routes to name go through the router again. */
    void (*on_direct_down)(comp_t *c, const char *name);
} comp_cb_t;

typedef struct comp_opts {
    const char *router; /* "127.0.0.1:5347" or "unix:/path" */
    const char *id;     /* this instance's stable name ("sm-1"), sent as
                         * the stream's from: the router's shard hashing
                         * and its logs use it */
    const char *user;   /* component account */
    const char *password;
    const char *tls_ca;   /* when the router asks for STARTTLS: the PEM file
                           * to trust (a CA or its own certificate); NULL:
                           * the system's CAs */
    const char *tls_name; /* the name its certificate must carry */
    size_t max_stanza;    /* 0: 1 MiB */
    bool shallow;         /* routes arrive with their attributes only; the
                           * payload is in raw (relays that don't read it),
                           * and libxml2 is not given it (xstream_skip_content):
                           * what the router sends is well-formed, from
                           * Hearth's own daemons or parsed by the router */
} comp_opts_t;

/* Bind flags (DESIGN.md): catch-all route, user-sharded name. */
#define COMP_BIND_DEFAULT 1u
#define COMP_BIND_SHARD 2u

comp_t *comp_new(uv_loop_t *loop, const comp_opts_t *opts, const comp_cb_t *cb, void *ud);
/* The same with the link settings of hearth.xml for instance id of a
 * daemon of role: router.listen, .ca, .tls-name, and the router account
 * of that role (router/account role='…': name, password or
 * password-file). Without one, the shared account router.user /
 * router.password of older configs, with a warning. Fatal when there is
 * neither. Role component (hearth-upload, hearth-proxy65): the
 * router/component account whose name is id, fatal without one. The daemon
 * reads no other account's secret. */
comp_t *comp_new_from_config(uv_loop_t *loop, const config_t *config, const char *id,
                             comp_role_t role, const comp_cb_t *cb, void *ud);
/* Before comp_start: routes arrive as with comp_opts_t.shallow. */
void comp_set_shallow(comp_t *c);
/* A shallow route (or other element) of this link parsed in full into a,
 * by one parser kept for the link; NULL if it is not one element. */
elem_t *comp_reparse(comp_t *c, arena_t *a, const xstream_raw_t *raw);
/* In on_route: the route (and everything in its tree) outlives the
 * callback; the caller owns the arena returned and frees it with
 * arena_free. NULL outside on_route or when already kept. */
arena_t *comp_keep_route(comp_t *c);
/* Direct links between the sm and each c2s on its machine, so that their
 * routes skip the router (common/direct.c tells the protocol). The sm
 * listens on addr (a loopback TCP address, port 0 for any) for peers of
 * peer_role; 0 or a libuv error. */
int comp_direct_listen(comp_t *c, const char *addr, comp_role_t peer_role);
/* The sm: offer peer (a name the router advertised) a link, now and again
 * after one closes, until the router says peer is gone. */
void comp_direct_offer(comp_t *c, const char *peer);
/* A c2s: take the links offered by routes the router marked offer_role. */
void comp_direct_accept(comp_t *c, comp_role_t offer_role);
/* Direct links carrying routes both ways. */
unsigned comp_direct_count(const comp_t *c);
/* Close the link and free; no callback runs after this. */
void comp_free(comp_t *c);
void *comp_data(const comp_t *c);
/* Start connecting (and keep reconnecting). */
void comp_start(comp_t *c);
/* Ask for a name now and after every reconnect. */
void comp_bind(comp_t *c, const char *name, unsigned flags);
void comp_unbind(comp_t *c, const char *name);
bool comp_is_ready(const comp_t *c);

/* Send a route element (serialized in the component namespace). -1 if the
 * link is down. */
int comp_send(comp_t *c, const elem_t *route);
/* Send <route to from [user]> around payload. */
int comp_send_to(comp_t *c, const char *to, const char *from, const char *user,
                 const elem_t *payload);
/* A component's stanza: in a route from its from's domain (a name the
 * component bound) to its to's domain, user= its to's bare JID (the sm
 * shards by it; s2s takes a remote domain on the default route). -1 if
 * the link is down or to or from is not a JID. */
int comp_send_stanza(comp_t *c, const elem_t *stanza);
/* Write the start of a route, "<route to='…' from='…'", then user, cid
 * and sid when not NULL, escaped; the caller adds any other attribute and
 * the ">". */
void comp_route_head(buf_t *b, const char *to, const char *from, const char *user, const char *cid,
                     const char *sid);
/* Send bytes that are already one serialized route. */
int comp_send_raw(comp_t *c, const char *data, size_t len);
/* The write queue to the router is over its limit: stop producing until
 * on_drain. */
bool comp_is_full(const comp_t *c);
/* Stop and restart reading from the router (the daemon's own flow
 * control: the router then holds whoever sends to it). */
void comp_pause(comp_t *c);
void comp_resume(comp_t *c);
/* Routes dropped because the link was down. */
unsigned long comp_dropped(const comp_t *c);

#endif
