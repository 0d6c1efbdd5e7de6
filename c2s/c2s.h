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
 *   auth.c      SASL (SCRAM-*-PLUS, SCRAM-*, PLAIN), failure delays
 *   register.c  XEP-0077 account creation before login
 *   session.c   resource binding, the session protocol with the sm, routing
 *               stanzas both ways, the table of connection ids
 *   addr.c      per-address accounting: connections and login failures */
#ifndef HEARTH_C2S_H
#define HEARTH_C2S_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "storage.h"

#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_REGISTER "jabber:iq:register"
#define NS_REGISTER_FEATURE "http://jabber.org/features/iq-register"
#define NS_SASL_CB "urn:xmpp:sasl-cb:0"
#define NS_PING "urn:xmpp:ping"
#define NS_STANZAS NS_STANZA_ERRORS

typedef struct c2s c2s_t;
typedef struct client client_t;
typedef struct addr addr_t;

typedef enum client_state {
    CL_OPENING,   /* waiting for the client's stream header */
    CL_NEGOTIATE, /* before authentication: STARTTLS, SASL, registration */
    CL_AUTHED,    /* authenticated: waiting for the restarted stream, then bind */
    CL_BINDING,   /* bind asked, waiting for the sm's answer */
    CL_BOUND,     /* a session: stanzas flow */
    CL_CLOSING,   /* a stream error or </stream:stream> sent; closing */
} client_state_t;

typedef struct auth auth_t; /* an exchange in progress (auth.c) */

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
    bool is_refused;     /* over a connection limit: refused at stream open */
    bool has_registered; /* created an account on this stream */
    bool is_pinging;     /* a ping went out, unanswered */
    unsigned auth_failures;
    auth_t *auth;
    char *user;   /* bare JID once authenticated */
    jid_t *jid;   /* full JID once bound (or asked to) */
    char cid[48]; /* connection id of the current bind: "c2s-1:42" */
    uint64_t cid_num;
    client_t *cid_next; /* c2s->by_cid chain */
    char *sid;          /* the sm's session id once started */
    char *bind_iq_id;   /* the bind IQ waiting for the sm */
    /* timers: one uv_timer_t, armed at the earliest deadline below */
    uv_timer_t timer;
    uint64_t last_read; /* loop ms of the last bytes from the client */
    bool is_released;   /* quiet: its parser's memory was given back */
    uint64_t bind_deadline;
    uint64_t resume_at;     /* rate limit: reading resumes then */
    uint64_t auth_reply_at; /* a delayed SASL failure goes out then */
    uint64_t armed_at;      /* when the timer fires (0: not armed) */
    rate_bucket_t bucket;   /* rate limit (c2s.rate, c2s.burst) */
};

struct addr {
    char ip[48];
    unsigned connections;
    unsigned failures;     /* recent login failures */
    uint64_t last_failure; /* loop ms */
    addr_t *next;
};

typedef struct domain_state {
    const char *name;
    bool is_available; /* the router advertises the sm's name */
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
    addr_t **addrs; /* hash by ip */
    size_t addrs_size;
    uv_timer_t sweep; /* forgets old per-address records */
    uv_timer_t trim;  /* returns released parsers' pages to the system */
    bool is_stopping;
    buf_t scratch;
    /* settings */
    bool require_tls, registration;
    size_t max_stanza;
    unsigned max_connections, max_per_ip;
    double rate, burst;
    unsigned max_auth_failures;
    uint64_t ping_interval, idle_timeout, bind_timeout, idle_release;
};

/* main.c: return released memory to the system soon (once per batch). */
void c2s_trim_soon(c2s_t *c);

/* client.c */
void client_accept(c2s_t *c2s, uv_stream_t *server, bool is_direct_tls);
/* Write a stream error and close (the header first if none was sent). */
void client_fail(client_t *cl, const char *condition, const char *text);
/* Queue bytes for the client. */
void client_write(client_t *cl, const char *data, size_t len);
/* Write a stanza (serialized so it takes the stream's jabber:client). */
void client_send(client_t *cl, const elem_t *stanza);
/* Answer stanza (an element of the client's) with a stanza error. */
void client_error_reply(client_t *cl, elem_t *stanza, const char *condition, const char *text);
/* An IQ result to id (from the domain), with payload (may be NULL). */
void client_iq_result(client_t *cl, const char *id, const elem_t *payload);
void client_ref(client_t *cl);
/* Drop a reference; false if the client is gone (closed) or closing. */
bool client_unref(client_t *cl);
bool client_is_open(const client_t *cl);
/* Re-arm the client's timer after a deadline changed. */
void client_arm(client_t *cl);
/* The stream restarts (after SASL success): reset the parser. */
void client_restart_stream(client_t *cl);
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
/* The delayed failure is due. */
void auth_deadline(client_t *cl);
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

/* session.c */
void session_bind(client_t *cl, elem_t *iq);
/* A stanza from a bound client. */
void session_stanza(client_t *cl, elem_t *stanza);
/* A route from the router. */
void session_route(c2s_t *c2s, elem_t *route);
/* The bind took too long. */
void session_bind_timeout(client_t *cl);
/* The client is gone: tell the sm, drop the cid. */
void session_client_gone(client_t *cl);
/* The sm of a domain came or went. */
void session_domain_advert(c2s_t *c2s, const char *name, bool available);
/* The router link went down: sessions are lost. */
void session_router_down(c2s_t *c2s);
void session_table_free(c2s_t *c2s);

/* addr.c */
addr_t *addr_get(c2s_t *c2s, const char *peer);
void addr_release(c2s_t *c2s, addr_t *a);
/* A login failure from a: the delay (ms) before answering it. */
uint64_t addr_failed(c2s_t *c2s, addr_t *a);
void addr_sweep(c2s_t *c2s);
void addr_table_free(c2s_t *c2s);

/* A served domain's state by name, or NULL. */
domain_state_t *c2s_domain(c2s_t *c2s, const char *name);

#endif
