/* router.h — the router's private face: the links (one per connected
 * component), the name table, and the routing between them.
 *
 * link.c owns a link's life: its stream, SASL or XEP-0114 handshake, and
 * bind/unbind requests. names.c owns the table of bound names, shard choice
 * and advertisements. route.c moves packets: lookup, forwarding of the raw
 * bytes, bounces, and flow control. main.c wires them to the config. */
#ifndef HEARTH_ROUTER_H
#define HEARTH_ROUTER_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

typedef struct link link_t;
typedef struct name name_t;

typedef enum link_state {
    LINK_OPENING,   /* waiting for the stream header */
    LINK_AUTH,      /* native: SASL in progress; external: waiting for handshake */
    LINK_READY,     /* authenticated: may bind and route */
    LINK_CLOSING,   /* stream error sent or stream closed: reads ignored */
} link_state_t;

typedef struct account {
    char *name;
    scram_keys_t keys;
} account_t;

typedef struct external {
    char *name;   /* the domain the component binds */
    char *secret; /* the XEP-0114 handshake secret */
} external_t;

typedef struct router {
    uv_loop_t *loop;
    listener_t listener;
    account_t *accounts;
    int naccounts;
    external_t *externals;
    int nexternals;
    tls_ctx_t *tls;        /* NULL: components on other hosts are refused */
    bool is_tls_required;  /* for local components too */
    size_t max_stanza;
    size_t write_limit;
    int max_links;
    int nlinks;
    link_t *links;         /* every connected link */
    name_t **buckets;      /* the name table (names.c) */
    size_t nbuckets, nnames;
    name_t *default_route; /* the name bound with default='true', if any */
    buf_t scratch;         /* for building packets on the loop */
    bool is_stopping;
} router_t;

/* One bound name of a link. */
typedef struct link_name {
    name_t *name;
    struct link_name *next;
} link_name_t;

struct link {
    router_t *router;
    conn_t *conn;
    xstream_t *xs;
    link_state_t state;
    bool is_external;      /* XEP-0114 (jabber:component:accept) */
    bool header_sent;      /* our stream header is out */
    char id[64];           /* stable identity: the stream's from, else random */
    uint64_t shard_key;    /* hash of id, for rendezvous hashing */
    char stream_id[33];
    sasl_t *sasl;
    link_name_t *names;    /* names this link has bound */
    link_t **waiting;      /* links paused until this one's queue drains */
    int nwaiting, waiting_cap;
    int blocked_by;        /* destinations holding this link paused */
    link_t *prev, *next;   /* in router->links */
};

/* A bound name: one link, or several for a shard='user' name. */
struct name {
    char *name;
    link_t **links;
    int nlinks, cap;
    bool is_shard;
    bool is_default;
    name_t *next; /* hash chain */
};

/* link.c */
void link_accept(router_t *r, uv_stream_t *server);
/* Send a stream error and close. */
void link_fail(link_t *l, const char *condition, const char *text);
/* Close every link with system-shutdown (the router is stopping). */
void link_close_all(router_t *r);

/* names.c */
void names_init(router_t *r);
void names_free(router_t *r);
name_t *names_find(router_t *r, const char *name);
/* Bind name for l: 0, or -1 with *error ("conflict"). */
int names_bind(router_t *r, link_t *l, const char *name, bool is_shard, bool is_default,
               const char **error);
/* Release one name of l (0), or -1 if l had not bound it. */
int names_unbind(router_t *r, link_t *l, const char *name);
/* Release every name of l (it is going away). */
void names_unbind_all(router_t *r, link_t *l);
/* The link that takes a packet for name and user (rendezvous hashing for a
 * shard; user may be NULL). */
link_t *names_pick(const name_t *n, const char *user);
/* Tell one new link every name currently bound. */
void names_advertise_all(router_t *r, link_t *to);
uint64_t names_hash(const char *s, size_t len);

/* route.c */
/* A <route/> from a native link, with its raw bytes. */
void route_packet(router_t *r, link_t *from, elem_t *route, const xstream_raw_t *raw);
/* A stanza from an external (XEP-0114) link, to be wrapped. */
void route_external(router_t *r, link_t *from, elem_t *stanza);
/* Write to l, and pause `sender` if l's queue is now full. */
void route_write(link_t *l, link_t *sender, const char *data, size_t len);
/* l's queue drained: resume the links it held. */
void route_drained(link_t *l);
/* l is going away: release the links it held and forget those holding it. */
void route_forget(link_t *l);

#endif
