/* proxy65.h — the parts of hearth-proxy65, the XEP-0065 SOCKS5
 * bytestreams proxy, as they call one another.
 *
 * main.c reads the config and wires the parts; iq.c answers the XMPP side
 * (disco, the streamhost query, activation) on the router link; socks5.c
 * accepts the clients' TCP connections and speaks the SOCKS5 handshake;
 * relay.c pairs two connections of one hash into a stream, activates it
 * and relays its bytes under the limits. Nothing here is for other
 * daemons. */
#ifndef HEARTH_PROXY65_H
#define HEARTH_PROXY65_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common.h"

#define NS_BYTESTREAMS "http://jabber.org/protocol/bytestreams"
/* DST.ADDR: SHA-1 as hex, 40 characters. */
#define P65_HASH_LEN 40

/* What main.c reads from the proxy65 section. */
typedef struct p65_limits {
    uint64_t idle_ms;         /* handshake + activation, and silence of a stream */
    uint64_t rate;            /* bytes per second of one stream; 0: none */
    int max_streams_per_user; /* activated streams of one bare JID */
    int max_connections;      /* SOCKS5 connections at once */
} p65_limits_t;

/* One SOCKS5 connection (socks5.c owns it; relay.c reads and sets the
 * fields marked so). Freed after its conn's on_close. */
typedef struct stream stream_t;
typedef struct peer peer_t;
struct peer {
    conn_t *conn;
    stream_t *stream; /* relay.c: the stream it joined by its CONNECT */
    int side;         /* relay.c: its index in the stream (0 first) */
    bool is_blocked;  /* relay.c: the other side's write queue is full */
    /* socks5.c's own */
    int state;
    unsigned char hs[600]; /* handshake bytes not yet parsed */
    size_t hs_len;
    uint64_t deadline;     /* loop ms by which it must be activated */
    peer_t *prev, *next;   /* every connection */
    peer_t *wprev, *wnext; /* those not activated yet */
    bool is_waiting;
};

/* ---- socks5.c ---- */
/* Listen on addr for SOCKS5 clients; 0 or a libuv error. */
int socks5_listen(uv_loop_t *loop, const char *addr, const p65_limits_t *limits);
/* The stream of p was activated: no deadline any more. */
void socks5_activated(peer_t *p);
/* Stop listening and close every connection (the daemon stops). */
void socks5_stop(void);

/* ---- relay.c ---- */
void relay_init(uv_loop_t *loop, const p65_limits_t *limits);
/* The CONNECT of p named hash (40 lower-case hex digits): p joins the
 * stream of that hash, made if there is none. -1 when the stream has its
 * two connections already or is active: p is refused. */
int relay_join(peer_t *p, const char *hash);
/* Bytes from p after activation. */
void relay_data(peer_t *p, const char *data, size_t len);
/* p's write queue drained: whoever fills it may be read again. */
void relay_drained(peer_t *p);
/* p closed (its conn is gone after this). */
void relay_leave(peer_t *p);
/* Activate the stream of SID + requester + target (prepared JIDs):
 * NULL on success, else the stanza error condition (iq.c's answer). */
const char *relay_activate(const char *sid, const char *requester, const char *target,
                           const char *requester_bare);
/* Release what is left (the daemon stops; every connection is closed). */
void relay_free(void);

/* ---- iq.c ---- */
typedef struct p65_service {
    const char *host; /* the streamhost address told to clients */
    int port;
    const char *const *domains; /* the local domains, prepared */
    int ndomains;
} p65_service_t;
void iq_init(comp_t *comp, const p65_service_t *service);
/* A route from the router. */
void iq_route(elem_t *route);

#endif
