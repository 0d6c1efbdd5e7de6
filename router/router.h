/* router.h — the router's private face: the links (one per connected
 * component), the name table, and the routing between them.
 *
 * link.c owns a link's life: its stream, SASL or XEP-0114 handshake, and
 * bind/unbind requests. account.c owns the accounts, their roles and the
 * names each may bind. header.c reads and writes route start tags. names.c owns the table of bound names, shard choice
 * and advertisements. route.c moves packets: lookup, forwarding of the raw
 * bytes marked with the sender's role, bounces, and flow control. main.c
 * wires them to the config. */
#ifndef HEARTH_ROUTER_H
#define HEARTH_ROUTER_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "metrics.h"

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
    comp_role_t role;  /* ROLE_NONE for the shared account of older configs */
    scram_keys_t keys;
    char **patterns;   /* component: the names it may bind (fnmatch) */
    int npatterns;
    bool is_shared;    /* router.user/router.password: any first-party role */
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
    char **domains; /* the local domains (prepared): the sm's names */
    int ndomains;
    tls_ctx_t *tls;        /* NULL: components on other hosts are refused */
    bool is_tls_required;  /* for local components too */
    size_t max_stanza;
    size_t write_limit;
    size_t max_queue;      /* a link that lets more wait is cut off */
    uint64_t shard_grace;  /* ms a dead shard keeps its place (names.c) */
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
    const account_t *account; /* once authenticated (NULL: XEP-0114) */
    comp_role_t role;      /* ROLE_NONE until known (shared account: first bind) */
    char mark[32];         /* "<route role='ROLE'": the start of what it sends */
    size_t mark_len;
    bool has_warned;       /* a refused route was logged (once per link) */
    link_name_t *names;    /* names this link has bound */
    link_t **waiting;      /* links paused until this one's queue drains */
    int nwaiting, waiting_cap;
    int blocked_by;        /* destinations holding this link paused */
    link_t *prev, *next;   /* in router->links */
};

/* A bound name: one link, or several for a shard='user' name. */
/* The place of a shard whose link died, kept for router.shard-grace. */
typedef struct tomb {
    uint64_t key;   /* its shard_key */
    uint64_t until; /* loop ms */
} tomb_t;

struct name {
    char *name;
    link_t **links;
    int nlinks, cap;
    tomb_t *tombs; /* shards of this name that died and may come back */
    int ntombs;
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
/* After a write to l: a link with more than router.max-queue unread is
 * cut off (it does not read; flow control holds back only what others
 * send it, not its own bounces or adverts). false if it was. */
bool link_check_queue(link_t *l);
/* The link's role is known: routes from it are marked with it. */
void link_set_role(link_t *l, comp_role_t role);

/* account.c */
/* Read router/account, router/component, the shared router.password and
 * router/external; fatal on a broken entry. */
void accounts_load(router_t *r, const config_t *c);
void accounts_free(router_t *r);
const account_t *accounts_find(const router_t *r, const char *name);
/* May l bind name (with these options)? For the shared account of older
 * configs the first bind also sets the link's role. */
bool accounts_may_bind(const router_t *r, link_t *l, const char *name, bool is_shard,
                       bool is_default);
/* A name only first-party daemons may hold (local domains, c2s-*, s2s,
 * resolver, hearthctl-*, router). */
bool accounts_is_reserved(const router_t *r, const char *name);

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
 * shard; user may be NULL); NULL when the user's shard died less than
 * router.shard-grace ago (its packets are bounced, not given to another
 * shard: it is restarting, and its users' sessions with it). */
link_t *names_pick(const router_t *r, name_t *n, const char *user);
/* Tell one new link every name currently bound. */
void names_advertise_all(router_t *r, link_t *to);
uint64_t names_hash(const char *s, size_t len);

/* header.c: the route start tag (no connection involved) */
/* The bytes start "<route" and a blank, so a mark can go in front of the
 * attributes, and the route carries no role of its own. */
bool header_is_markable(const elem_t *route, const xstream_raw_t *raw);
/* "<route role='ROLE'" into out; its length (0 if it does not fit). */
size_t header_mark(char *out, size_t size, comp_role_t role);
/* Append the bounce of route: role='router', to and from swapped,
 * type='error' error=condition, the payload as it came. -1 (nothing
 * appended) when the start tag declares namespaces, which the bounce could
 * not keep. */
int header_bounce(buf_t *b, const elem_t *route, const xstream_raw_t *raw, const char *condition);
/* The payload's bytes, blanks around it trimmed. */
void header_payload(const xstream_raw_t *raw, const char **data, size_t *len);

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

/* metrics.c (docs/metrics.md) */
typedef struct router_metrics {
    metric_counter_t delivered[ROLE_ROUTER + 1]; /* by the destination's role */
    metric_counter_t bounces, bytes_in, bytes_out, pauses;
} router_metrics_t;
extern router_metrics_t router_metrics;
void router_metrics_init(router_t *r);
/* A route went to dest: counted by its class. */
void router_metric_delivered(const link_t *dest);

#endif
