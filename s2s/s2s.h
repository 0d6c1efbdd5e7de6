/* s2s.h — hearth-s2s: federation with other XMPP servers (RFC 6120 server
 * streams, STARTTLS and direct TLS (XEP-0368), SASL EXTERNAL with
 * certificates (XEP-0178), server dialback XEP-0220 with XEP-0185 keys).
 *
 * The s2s binds the router's default route, so every stanza for a domain
 * nobody on this server serves reaches it. Outgoing (out.c): one stream per
 * (local domain, remote domain), found by a hash of the pair, opened on the
 * first stanza (to the address of a static s2s/route, else to those
 * hearth-resolver gives), which waits in the stream's queue until the
 * stream is authenticated (by SASL EXTERNAL when the peer accepts our
 * certificate, else by dialback); a peer that cannot be reached gets every
 * queued stanza bounced to its sender.
 * Incoming (in.c): streams from other servers, STARTTLS or direct TLS,
 * SASL EXTERNAL offered when the peer's certificate is valid for its
 * domain, dialback keys accepted on a valid certificate or checked by
 * connecting back to the authoritative server (db:verify); stanzas are
 * accepted only from domains authenticated on that stream and routed to
 * the local domain's sm.
 *
 * Policy (s2s.auth, s2s/peer): a remote domain must show a valid
 * certificate (AUTH_CERTIFICATE), may fall back to dialback
 * (AUTH_DIALBACK), or is refused both ways (AUTH_BLOCK). */
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
#include "map.h"
#include "metrics.h"
#include "rate.h"
#include "tls.h"
#include "xml.h"
#include "xmpp.h"
#include "xstream.h"

#define NS_DIALBACK "jabber:server:dialback"
#define NS_RESOLVER "urn:hearth:resolver:1"
#define NS_ADMIN "urn:hearth:admin:1"

typedef struct out out_t;
typedef struct in in_t;

typedef enum s2s_auth { AUTH_CERTIFICATE, AUTH_DIALBACK, AUTH_BLOCK } s2s_auth_t;

typedef struct s2s_peer {
    char *domain;
    s2s_auth_t auth;
} s2s_peer_t;

typedef struct s2s_route {
    char *domain;
    char *target; /* "127.0.0.1:5269" */
    bool direct;  /* TLS from the first byte (XEP-0368) */
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
    s2s_peer_t *peers; /* per remote domain policy */
    int npeers;
    s2s_auth_t auth;   /* everyone else's */
    tls_ctx_t *tls_server;  /* every domain's certificate, chosen by SNI */
    tls_ctx_t **tls_client; /* per local domain, its certificate as a client */
    bool require_tls;
    bool has_resolver; /* the router advertises "resolver" */
    bool had_resolver; /* it did once: one restarting is waited for */
    uint64_t connect_timeout, idle_timeout;
    size_t max_stanza;
    size_t max_queue;       /* bytes waiting for one remote domain */
    double rate, burst;     /* stanzas per second from one incoming stream */
    int max_per_domain;     /* incoming streams authenticated for one domain */
    int max_connections;    /* incoming streams in all */
    int nins;
    unsigned char secret[32]; /* SHA-256 of the dialback secret */
    listener_t listener, listener_tls;
    bool listening, listening_tls;
    out_t *outs; /* every outgoing stream (and db:verify link) */
    map_t out_by_pair; /* "local remote" -> the stream stanzas go on */
    in_t *ins;   /* every incoming stream */
    bool is_stopping;
    uv_timer_t stop_timer;
    buf_t scratch; /* serialization of outgoing stanzas */
    map_t sm_links; /* sm instance -> what we took of it (ack.c) */
    uv_timer_t ack_timer;
} s2s_t;

bool s2s_is_local(const s2s_t *s, const char *domain);
/* How domain must authenticate (s2s/peer, else s2s.auth). */
s2s_auth_t s2s_policy(const s2s_t *s, const char *domain);
/* The TLS context for streams from local domain (its certificate). */
tls_ctx_t *s2s_tls_for(const s2s_t *s, const char *local);
/* The static route for domain, or NULL. */
const s2s_route_t *s2s_route_for(const s2s_t *s, const char *domain);
/* The XEP-0185 key: hex HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' id). */
void s2s_dialback_key(const s2s_t *s, const char *receiving, const char *originating,
                      const char *id, char out[65]);
/* Append a dialback element (XEP-0220): <db:NAME from to [id] [type]>KEY
 * </db:NAME>, or empty when key is NULL; id and type are left out when NULL. */
void s2s_dialback_xml(buf_t *b, const char *name, const char *from, const char *to,
                      const char *id, const char *type, const char *key);
/* Send stanza (any stanza namespace) to the local sm: routed to the
 * domain of its to, user the bare to. */
void s2s_deliver_local(s2s_t *s, const elem_t *stanza);
/* The same when its to is parsed already. */
void s2s_deliver(s2s_t *s, const jid_t *to, const elem_t *stanza);
/* Answer stanza with an error (remote-server-not-found, ...) to its sender. */
void s2s_bounce(s2s_t *s, elem_t *stanza, const char *condition, const char *text);
/* A subdomain of a local domain (conference.example.com under
 * example.com) that nothing here serves: no component bound it at the
 * router (else the stanza would not be ours), and neither an s2s/route nor
 * a resolver/override sends it elsewhere. Such a domain is a service of
 * this server that does not run, not another server to look up in DNS. */
bool s2s_is_unserved_subdomain(const s2s_t *s, const char *domain);

/* out.c */
/* A stanza from the router for a remote domain (a copy is kept); size:
 * its bytes, counted against s2s.max-queue. */
void out_send(s2s_t *s, const char *local, const char *remote, const elem_t *stanza,
              size_t size);
/* Ask the authoritative server of `originating` whether key is valid for a
 * stream from it to `receiving` with id; answer later with in_verified. */
void out_verify(s2s_t *s, uint64_t in_serial, const char *receiving, const char *originating,
                const char *id, const char *key);
void out_close_all(s2s_t *s);
/* hearthctl s2s: an <out/> per outgoing stream into list. */
void out_report(s2s_t *s, elem_t *list);
/* The resolver's <resolved/> answer to one of our requests. */
void out_resolved(s2s_t *s, const elem_t *answer);
/* The resolver is at the router (again): streams still resolving ask it. */
void out_resolver_back(s2s_t *s);

/* ack.c: the sm's stanzas, acknowledged. */
void ack_init(s2s_t *s);
void ack_close(s2s_t *s);
/* Is this route new (not one the sm sent again that we took)? Notes it
 * to be acknowledged. */
bool ack_is_new(s2s_t *s, const elem_t *route);

/* in.c */
/* A connection on the s2s.listen (direct_tls false) or s2s.listen-tls port. */
void in_accept(s2s_t *s, uv_stream_t *server, bool direct_tls);
/* The outcome of a db:verify for in (which may have gone: in_serial). */
void in_verified(s2s_t *s, uint64_t in_serial, const char *receiving, const char *originating,
                 bool valid);
/* The router link drained: read from the streams paused for it again. */
void in_resume_all(s2s_t *s);
void in_close_all(s2s_t *s);
/* hearthctl s2s: an <in/> per incoming stream into list. */
void in_report(s2s_t *s, elem_t *list);

/* metrics.c (docs/metrics.md): the counters; out.c and in.c register
 * the gauges of their streams by state. */
typedef struct s2s_metrics {
    metric_counter_t stanzas_in[METRIC_KINDS], stanzas_out[METRIC_KINDS];
    metric_counter_t bounces;
} s2s_metrics_t;
extern s2s_metrics_t s2s_metrics;
void s2s_metrics_init(s2s_t *s);
void out_metrics_init(s2s_t *s);
void in_metrics_init(s2s_t *s);

#endif
