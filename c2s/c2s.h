/* c2s.h — the c2s daemon's private header: client connections (DESIGN.md,
 * "The session protocol").
 *
 * One c2s process holds client streams: TLS (STARTTLS or XEP-0368 direct
 * TLS), SASL against the storage `auth` table, in-band registration before
 * login, resource binding, and then relays stanzas between each client and
 * the sm of its domain through the router. Several c2s processes share the
 * client ports (SO_REUSEPORT); each binds its instance id (c2s-1, ...) at
 * the router.
 *
 *   main.c      config, certificate, listeners, router link, loop
 *   client.c    one client stream: open, features, STARTTLS, limits,
 *               timers, stream errors, close
 *   auth.c      SASL (SCRAM-*-PLUS, SCRAM-*, PLAIN), each login in its turn
 *   register.c  XEP-0077 account creation before login
 *   preauth.c   XEP-0445 tokens: registration by invitation, password reset
 *   session.c   resource binding, the session protocol with the sm, routing
 *               stanzas both ways, the table of connection ids
 *   hold.c      what sessions send while their sm (or the router) is away
 *   addr.c      client addresses: their keys, and the connections (and
 *               those not yet authenticated) each holds in this process
 *   limits.c    what every c2s of the host shares: each address's login
 *               schedule and registration budget, the host's budget */
#ifndef HEARTH_C2S_H
#define HEARTH_C2S_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "metrics.h"
#include "storage.h"

#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_REGISTER "jabber:iq:register"
#define NS_REGISTER_FEATURE "http://jabber.org/features/iq-register"
#define NS_SASL_CB "urn:xmpp:sasl-cb:0"
#define NS_PING "urn:xmpp:ping"
#define NS_ROSTER "jabber:iq:roster"
#define NS_STANZAS NS_STANZA_ERRORS

typedef struct c2s c2s_t;
typedef struct client client_t;
typedef struct seen seen_t; /* the origins a session got copies of (session.c) */
typedef struct addr addr_t;
typedef struct limits limits_t;

/* A client address as the limits count it: an IPv4 address as ::ffff:a.b.c.d,
 * an IPv6 address cut to its first c2s.ipv6-prefix bits (a /64: one
 * customer's network), a Unix socket as all zeros. */
typedef struct addr_key {
    uint8_t b[16];
} addr_key_t;

typedef enum client_state {
    CL_OPENING,   /* waiting for the client's stream header */
    CL_NEGOTIATE, /* before authentication: STARTTLS, SASL, registration */
    CL_AUTHED,    /* authenticated: waiting for the restarted stream, then bind */
    CL_BINDING,   /* bind asked, waiting for the sm's answer */
    CL_BOUND,     /* a session: stanzas flow */
    CL_CLOSING,   /* a stream error or </stream:stream> sent; closing */
} client_state_t;

typedef struct auth auth_t; /* an exchange in progress (auth.c) */
typedef struct reg reg_t;   /* a registration in progress (register.c) */
/* A token the stream gave (preauth.c). */
typedef struct preauth preauth_t;

struct client {
    c2s_t *c2s;
    conn_t *conn; /* NULL once closed */
    xstream_t *xs;
    client_state_t state;
    unsigned refs;         /* the connection + each operation in flight */
    client_t *prev, *next; /* c2s->clients */
    addr_t *addr;          /* its address's counters */
    const char *domain;    /* the served domain the stream is for (c2s->domains) */
    char stream_id[17];
    bool is_direct_tls; /* came in on a direct TLS port */
    bool header_sent;
    bool has_registered; /* created an account on this stream */
    bool is_pinging;     /* a ping went out, unanswered */
    bool is_pending;     /* not authenticated yet: counted in addr->pending */
    unsigned auth_failures;
    auth_t *auth;
    reg_t *reg;   /* the registration in flight (one at a time), or NULL */
    char *user;   /* bare JID once authenticated */
    jid_t *jid;   /* full JID once bound (or asked to) */
    char cid[48]; /* connection id of the current bind: "c2s-1:42" */
    uint64_t cid_num;
    client_t *cid_next; /* c2s->by_cid chain */
    char *sid;          /* the sm's session id once started */
    char *route_head;   /* "<route to from user cid sid" of its stanzas, with sid */
    char *presence;     /* its last broadcast available presence, as routed; or NULL */
    size_t presence_len;
    bool is_interested; /* has asked for its roster (a resume says so) */
    bool has_carbons;   /* has turned message carbons on (XEP-0280; the same) */
    bool is_parked;     /* gone while the sm was away: resumed and ended when it is back (hold.c) */
    ackq_t rq;          /* routed to the sm, not acknowledged yet (hold.c) */
    uint64_t seq_out;   /* the last sequence number routed to the sm */
    uint64_t seq_in;    /* the highest one taken from the sm */
    bool is_ack_due;    /* seq_in is to be acknowledged (in c2s->acks) */
    bool is_waiting_ack; /* not read until the sm takes more of rq (hold.c) */
    seen_t *seen;        /* NULL until a copy with an origin comes */
    client_t *ack_next;
    char *bind_iq_id;   /* the bind IQ waiting for the sm */
    /* timers: one uv_timer_t, armed at the earliest deadline below */
    uv_timer_t timer;
    uint64_t last_read; /* loop ms of the last bytes from the client */
    bool is_released;   /* quiet: its parser's memory was given back */
    uint64_t bind_deadline;
    uint64_t open_deadline;  /* the stream header is due (c2s.header-timeout); 0: came */
    uint64_t login_deadline; /* a session is due (c2s.auth-timeout); 0: none */
    uint64_t resume_at;      /* rate limit: reading resumes then */
    uint64_t auth_at;        /* the login attempt's turn (limits.c) */
    uint64_t armed_at;       /* when the timer fires (0: not armed) */
    rate_bucket_t bucket;    /* rate limit (c2s.rate, c2s.burst) */
    /* The stream's registration token (preauth.c), or NULL. */
    preauth_t *preauth;
};

struct addr {
    addr_key_t key;
    char ip[64]; /* the key, printable: "192.0.2.1", "2001:db8:1:2::/64" */
    unsigned connections;
    unsigned pending; /* of those, not authenticated yet */
    addr_t *next;
};

typedef struct domain_state {
    const char *name;
    bool is_available; /* the router advertises the sm's name */
    bool needs_resume; /* the sm was away: its sessions are re-announced when it is back */
    uint64_t away_since; /* loop ms */
} domain_state_t;

struct c2s {
    uv_loop_t *loop;
    const config_t *config;
    const char *id; /* instance: "c2s-1" */
    comp_t *comp;
    storage_t *storage;
    tls_ctx_t *tls;
    listener_t *listeners;
    bool *listener_is_tls;
    int nlisteners;
    domain_state_t *domains;
    int ndomains;
    client_t *clients;
    unsigned nclients;
    uint64_t next_cid;
    client_t **by_cid; /* hash by cid_num */
    size_t by_cid_size, by_cid_count;
    addr_t **addrs; /* hash by key */
    size_t addrs_size;
    limits_t *limits;
    uv_timer_t stop_timer; /* the end of a shutdown */
    uv_timer_t trim;       /* returns released parsers' pages to the system */
    uv_timer_t hold_timer; /* expires what waits for an absent sm (hold.c) */
    size_t held_bytes;     /* in every session's queue */
    ack_batch_t ack_batch; /* acknowledgements to the sm go out in batches */
    client_t *acks;        /* sessions with one due */
    bool is_sm_sharded;    /* sm.shards > 1: one acknowledgement route per session */
    bool is_stopping;
    buf_t scratch;
    /* settings */
    bool require_tls, registration;
    size_t max_stanza, max_queue;
    unsigned max_connections, max_per_ip, max_pending_per_ip, ipv6_prefix;
    double rate, burst;
    unsigned max_auth_failures;
    uint64_t ping_interval, idle_timeout, bind_timeout, idle_release;
    uint64_t header_timeout, auth_timeout;
    size_t hold_max;
    uint64_t hold_time;
};

/* main.c: return released memory to the system soon (once per batch). */
void c2s_trim_soon(c2s_t *c);

/* client.c */
void client_accept(c2s_t *c2s, uv_stream_t *server, bool is_direct_tls);
/* Write a stream error and close (the header first if none was sent). */
void client_fail(client_t *cl, const char *condition, const char *text);
/* Queue bytes for the client; past c2s.max-queue unsent, the client is
 * cut off (policy-violation). */
void client_write(client_t *cl, const char *data, size_t len);
/* Write a stanza (serialized so it takes the stream's jabber:client). */
void client_send(client_t *cl, const elem_t *stanza);
/* Answer stanza (an element of the client's) with a stanza error. */
void client_error_reply(client_t *cl, elem_t *stanza, const char *condition, const char *text);
/* An IQ error to id (from the domain), without echoing the request's
 * payload (it may hold a password). */
void client_iq_error(client_t *cl, const char *id, const char *condition, const char *text);
/* An IQ result to id (from the domain), with payload (may be NULL). */
void client_iq_result(client_t *cl, const char *id, const elem_t *payload);
void client_ref(client_t *cl);
/* Drop a reference; false if the client is gone (closed) or closing. */
bool client_unref(client_t *cl);
bool client_is_open(const client_t *cl);
/* Re-arm the client's timer after a deadline changed. */
void client_arm(client_t *cl);
/* SASL success: no longer pending; the stream restarts (the parser is
 * reset). */
void client_authenticated(client_t *cl);
/* Close every client (shutting down). */
void client_close_all(c2s_t *c2s, const char *condition);
/* Drop every connection now (the end of a shutdown). */
void client_abort_all(c2s_t *c2s);
const char *client_peer(const client_t *cl);

/* auth.c */
/* Mechanisms on offer now (for features), written into out. */
void auth_features(client_t *cl, buf_t *out);
/* An element of the SASL namespace (auth, response, abort). */
void auth_handle(client_t *cl, const elem_t *e);
/* The login attempt's turn came. */
void auth_turn(client_t *cl);
/* The client is closing: work not started yet on the thread pool is
 * cancelled. */
void auth_cancel(client_t *cl);
void auth_free(client_t *cl);

/* saslmsg.c: the first SASL message a client sends, read for its user
 * name before the exchange starts (auth.c). Pure functions on bytes. */
typedef struct sasl_first {
    char user[1024];    /* authcid, unescaped (not yet prepared) */
    char authzid[1024]; /* "" when absent */
    char flag;          /* SCRAM GS2 channel binding flag: 'n', 'y' or 'p' */
    char cb_type[16];   /* with 'p': "tls-exporter", "tls-unique", ... */
} sasl_first_t;
/* SCRAM client-first: "gs2-flag,[a=authzid],n=user,r=nonce[,...]". 0, or
 * -1 if malformed (a NUL, bad escapes, too long, parts missing). */
int sasl_parse_scram_first(const char *m, size_t len, sasl_first_t *out);
/* PLAIN: "authzid NUL authcid NUL password" (m NUL-terminated at len);
 * *password points into m. 0, or -1 if malformed or a part is empty. */
int sasl_parse_plain(const char *m, size_t len, sasl_first_t *out, const char **password);

/* register.c */
/* A jabber:iq:register IQ before login. */
void register_handle(client_t *cl, elem_t *iq);
/* The client is closing: a derivation not started yet is cancelled. */
void register_cancel(client_t *cl);

/* preauth.c */
/* The stream feature <register xmlns='urn:xmpp:ibr-token:0'/>. */
void preauth_features(client_t *cl, buf_t *b);
/* A <preauth xmlns='urn:xmpp:pars:0'/> IQ before login. */
void preauth_handle(client_t *cl, elem_t *iq);
/* The stream gave a valid token: it may register (registration off too). */
bool preauth_is_accepted(const client_t *cl);
/* That token is a password reset: the registration sets new keys. */
bool preauth_is_reset(const client_t *cl);
/* Why the token does not allow registering bare (not-allowed), or NULL. */
const char *preauth_refusal(const client_t *cl, const char *bare);
/* Before the keys of bare are stored: use up the stream's token, or, with
 * none, check that no invitation reserves the name. cb gets condition NULL
 * to go on, else the error to answer (condition, text). */
typedef void (*preauth_cb)(client_t *cl, void *ud, const char *condition, const char *text);
void preauth_claim(client_t *cl, const char *bare, preauth_cb cb, void *ud);
/* The store refused the account: the token is given back. */
void preauth_unclaim(client_t *cl);
/* The registration succeeded: the token is gone. */
void preauth_used(client_t *cl);
/* The user whose invitation the accepted token is, or NULL. */
const char *preauth_inviter(const client_t *cl);
void preauth_free(client_t *cl);

/* session.c */
void session_bind(client_t *cl, elem_t *iq);
/* A stanza from a bound client, with its bytes as received. */
void session_stanza(client_t *cl, elem_t *stanza, const xstream_raw_t *raw);
/* A route from the router, with its bytes as received. */
void session_route(c2s_t *c2s, elem_t *route, const xstream_raw_t *raw);
/* The bind took too long. */
void session_bind_timeout(client_t *cl);
/* An account was created by registration: the sm of its domain is told,
 * so that it stops answering for it as for a nonexistent one. */
void session_account_created(c2s_t *c2s, const char *domain, const char *bare, const char *inviter);
/* The client is gone: tell the sm (or hold the end: hold.c), drop the cid. */
void session_client_gone(client_t *cl);
/* The session is over here: its sid and cid are dropped. */
void session_forget(client_t *cl);
/* Re-announce cl's session to its sm (action='resume'); -1 if the link is
 * down. */
int session_resume(client_t *cl);
/* Tell the sm the session is over (action='end'). */
void session_send_end(client_t *cl);
/* Tell the sm of domain that every session here is re-announced. */
void session_send_resumed(c2s_t *c2s, const char *domain);
void session_init(c2s_t *c2s);
void session_close(c2s_t *c2s);
/* The sm of a domain came or went. */
void session_domain_advert(c2s_t *c2s, const char *name, bool available);
/* The router link went down, or is up again: sessions wait for it. */
void session_router_down(c2s_t *c2s);
void session_router_up(c2s_t *c2s);
/* The direct link that carried routes to name (a domain) closed. */
void session_direct_down(c2s_t *c2s, const char *name);
/* hold.c */
void hold_init(c2s_t *c2s);
void hold_close(c2s_t *c2s);
/* One stanza route of cl's session, carrying seq: queued until the sm
 * acknowledges it, and sent now unless the sm is away. false, nothing
 * queued: past c2s.hold-max, or the sm has been away c2s.hold-time. */
bool hold_send(client_t *cl, uint64_t seq, const char *data, size_t len);
/* The sm has taken everything up to h. */
void hold_acked(client_t *cl, uint64_t h);
/* The client left: parked (true) while its sm is away, else its queue
 * goes (the sm is told of the end by the caller). */
bool hold_park(client_t *cl);
/* The sm of d went away (the advert, or the router link). */
void hold_domain_away(c2s_t *c2s, domain_state_t *d);
/* The sm of d is there and we are bound: resume d's sessions if it was
 * away, then send what was held, in order. */
void hold_flush(c2s_t *c2s, domain_state_t *d);
/* Drop everything held (stopping). */
void hold_free_all(c2s_t *c2s);
void session_table_free(c2s_t *c2s);

/* addr.c */
/* The key of a peer as conn_peer() names it ("192.0.2.1:4000", "[::1]:4000",
 * "unix"), with IPv6 cut to prefix bits; its printable form into text. */
void addr_key_of(const char *peer, unsigned prefix, addr_key_t *key, char *text, size_t size);
/* The record of a key (made with no connections if new). */
addr_t *addr_get(c2s_t *c2s, const addr_key_t *key, const char *text);
/* A connection of a is gone; the record goes with its last one. */
void addr_release(c2s_t *c2s, addr_t *a);
void addr_table_free(c2s_t *c2s);

/* limits.c: shared by every c2s of the host (STATEDIR/run/c2s-limits). */
typedef struct limits_opts {
    unsigned auth_rate, auth_burst; /* login attempts per minute, and at once */
    unsigned registration_rate;     /* accounts per hour per address */
    unsigned registration_total;    /* accounts per hour in all */
} limits_opts_t;
/* Map the table (made or remade as needed); fatal if it cannot be. */
limits_t *limits_open(const char *statedir, const limits_opts_t *opts);
void limits_close(limits_t *l);
/* New rates and bursts for this process's use of the table (a reload). */
void limits_set(limits_t *l, const limits_opts_t *opts);
/* The host's clock for the table: CLOCK_MONOTONIC, in ms. */
uint64_t limits_now(void);
/* A login attempt from key starts: it is counted, and *turn (limits_now()
 * ms) is when it may be evaluated. false, nothing counted, if that turn
 * would come after latest. */
bool limits_login_begin(limits_t *l, const addr_key_t *key, uint64_t latest, uint64_t *turn);
/* The attempt succeeded: it is not counted against the address. */
void limits_login_succeeded(limits_t *l, const addr_key_t *key);
typedef enum limits_verdict {
    LIMITS_OK,      /* counted */
    LIMITS_ADDRESS, /* the address is past c2s.registration-rate */
    LIMITS_HOST,    /* the host is past c2s.registration-rate-total */
} limits_verdict_t;
/* A registration from key: counted against both budgets if both allow. */
limits_verdict_t limits_registration(limits_t *l, const addr_key_t *key);

/* metrics.c: the counters (docs/metrics.md), incremented where the
 * event happens; the gauges are read from the client list. */
#define C2S_MECHANISMS 5
extern const char *const c2s_mechanisms[C2S_MECHANISMS];
/* The index of a SASL mechanism's name, or -1. */
int c2s_mechanism_index(const char *mech);
typedef struct c2s_metrics {
    metric_counter_t stanzas_in[METRIC_KINDS], stanzas_out[METRIC_KINDS];
    metric_counter_t bytes_in, bytes_out;
    metric_counter_t auth_success[C2S_MECHANISMS], auth_failure[C2S_MECHANISMS];
    metric_counter_t registration_attempts, registration_successes;
} c2s_metrics_t;
extern c2s_metrics_t c2s_metrics;
void c2s_metrics_init(c2s_t *c);

/* A served domain's state by name, or NULL. */
domain_state_t *c2s_domain(c2s_t *c2s, const char *name);

#endif
