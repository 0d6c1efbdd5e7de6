/* component_private.h — what component.c and direct.c share of a
 * daemon's link to the router: the comp_t itself, and the entry points of
 * the direct links (direct.c) that component.c calls. Nothing else includes
 * it. */
#ifndef HEARTH_COMPONENT_PRIVATE_H
#define HEARTH_COMPONENT_PRIVATE_H

#include "component.h"
#include "conn.h"
#include "sasl.h"

typedef struct comp_direct comp_direct_t;

typedef enum comp_state {
    COMP_IDLE,       /* not started, or waiting to reconnect */
    COMP_CONNECTING, /* TCP connect in progress */
    COMP_OPENING,    /* stream header sent, waiting for features */
    COMP_TLS,        /* STARTTLS asked for, then the handshake */
    COMP_AUTH,       /* SASL in progress */
    COMP_BINDING,    /* authenticated, waiting for bind answers */
    COMP_READY,
} comp_state_t;

typedef struct comp_name {
    char *name;
    unsigned flags;
    struct comp_name *next;
} comp_name_t;

struct comp {
    uv_loop_t *loop;
    comp_cb_t cb;
    void *ud;
    char *router, *id, *user, *password, *tls_ca, *tls_name;
    tls_ctx_t *tls;
    size_t max_stanza;
    bool is_shallow, is_paused;
    xml_reparser_t *reparser; /* shallow: routes and control parsed again */
    comp_state_t state;
    conn_t *conn;
    xstream_t *xs;
    sasl_t *sasl;
    comp_name_t *names;
    int binds_pending;
    uv_timer_t retry;
    unsigned backoff_ms;
    unsigned long dropped;
    bool is_started;
    buf_t out;
    xstream_t *cur_xs;     /* the stream whose route on_route is given */
    comp_direct_t *direct; /* direct links (direct.c); NULL: none */
};

/* component.c, for direct.c: */

/* strdup, fatal when out of memory; NULL gives "". */
char *comp_strdup(const char *s);
/* Our stream header on conn: to (NULL: none), from our id, token (NULL:
 * none). */
void comp_write_header(comp_t *c, conn_t *conn, const char *to, const char *token);
/* Hand the daemon a route read on xs (the router link or a direct link),
 * which comp_keep_route may then detach. */
void comp_give_route(comp_t *c, xstream_t *xs, elem_t *route, const xstream_raw_t *raw);

/* direct.c, called by component.c: */

/* A route that carries direct='…' (an offer or a switch, through the
 * router): handled here, never given to the daemon. */
void direct_control(comp_t *c, const elem_t *route);
/* The direct link that routes to `to` go on, or NULL: the router. */
conn_t *direct_conn_for(comp_t *c, const char *to, size_t len);
/* The router says name is gone: links to it close, without on_direct_down
 * (the daemon hears of the peer's end from the advert itself). */
void direct_name_gone(comp_t *c, const char *name);
/* The router link is ready: offers that waited for it go. */
void direct_ready(comp_t *c);
bool direct_is_full(const comp_t *c);
void direct_pause(comp_t *c, bool is_paused);
void direct_free(comp_t *c);

#endif
