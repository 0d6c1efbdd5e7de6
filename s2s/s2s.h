/* s2s.h — hearth-s2s: federation with other XMPP servers (RFC 6120 server
 * streams, STARTTLS, server dialback XEP-0220 with XEP-0185 keys).
 *
 * The s2s binds the router's default route, so every stanza for a domain
 * nobody on this server serves reaches it. Outgoing (out.c): one stream per
 * (local domain, remote domain), opened on the first stanza (to the
 * address of a static s2s/route, else to those hearth-resolver gives), which waits in
 * the stream's queue until dialback succeeds; a peer that cannot be reached
 * gets every queued stanza bounced to its sender. Incoming (in.c): streams
 * from other servers, STARTTLS, dialback keys checked by connecting back to
 * the authoritative server (db:verify), stanzas accepted only from domains
 * verified on that stream and routed to the local domain's sm. */
#ifndef HEARTH_S2S_H
#define HEARTH_S2S_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "component.h"
#include "config.h"
#include "conn.h"
#include "jid.h"
#include "log.h"
#include "tls.h"
#include "xml.h"
#include "xmpp.h"
#include "xstream.h"

#define NS_DIALBACK "jabber:server:dialback"
#define NS_RESOLVER "urn:hearth:resolver:1"

typedef struct out out_t;
typedef struct in in_t;

typedef struct s2s_route {
    char *domain;
    char *target; /* "127.0.0.1:5269" */
} s2s_route_t;

typedef struct s2s {
    uv_loop_t *loop;
    const char *id;
    comp_t *comp;
    const config_t *config;
    char **domains; /* local domains */
    int ndomains;
    s2s_route_t *routes;
    int nroutes;
    tls_ctx_t *tls_server;
    tls_ctx_t *tls_client;
    bool require_tls;
    bool has_resolver; /* the router advertises "resolver" */
    uint64_t connect_timeout, idle_timeout;
    size_t max_stanza;
    unsigned char secret[32]; /* SHA-256 of the dialback secret */
    listener_t listener;
    bool listening;
    out_t *outs; /* every outgoing stream (and db:verify link) */
    in_t *ins;   /* every incoming stream */
    bool is_stopping;
    uv_timer_t stop_timer;
} s2s_t;

bool s2s_is_local(const s2s_t *s, const char *domain);
/* The static route's address for domain, or NULL. */
const char *s2s_route_for(const s2s_t *s, const char *domain);
/* The XEP-0185 key: hex HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' id). */
void s2s_dialback_key(const s2s_t *s, const char *receiving, const char *originating,
                      const char *id, char out[65]);
/* Send stanza (any stanza namespace) to the local sm: routed to the
 * domain of its to, user the bare to. */
void s2s_deliver_local(s2s_t *s, const elem_t *stanza);
/* Answer stanza with an error (remote-server-not-found, ...) to its sender. */
void s2s_bounce(s2s_t *s, elem_t *stanza, const char *condition);

/* out.c */
/* A stanza from the router for a remote domain (a copy is kept). */
void out_send(s2s_t *s, const char *local, const char *remote, const elem_t *stanza);
/* Ask the authoritative server of `originating` whether key is valid for a
 * stream from it to `receiving` with id; answer later with in_verified. */
void out_verify(s2s_t *s, in_t *in, uint64_t in_serial, const char *receiving,
                const char *originating, const char *id, const char *key);
void out_close_all(s2s_t *s);
/* The resolver's <resolved/> answer to one of our requests. */
void out_resolved(s2s_t *s, const elem_t *answer);

/* in.c */
void in_accept(s2s_t *s, uv_stream_t *server);
/* The outcome of a db:verify for in (which may have gone: in_serial). */
void in_verified(s2s_t *s, uint64_t in_serial, const char *receiving, const char *originating,
                 bool valid);
void in_close_all(s2s_t *s);

#endif
