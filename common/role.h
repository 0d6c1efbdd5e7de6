/* role.h — the roles of router accounts, and the mark the router puts on
 * every route it delivers (DESIGN.md, "The component protocol").
 *
 * Shared by the router (which marks) and every daemon (which reads the
 * mark to decide what to trust a route with). */
#ifndef HEARTH_ROLE_H
#define HEARTH_ROLE_H

#include "xml.h"

/* The role of a router account (DESIGN.md, "The component protocol"): it
 * fixes the names the account may bind, and receivers decide what to trust
 * a route with by it. The router marks every route it delivers with
 * role='NAME', which a sender cannot set (the router refuses a route that
 * carries one); comp_route_role() reads it. docs/security.md has the model. */
typedef enum comp_role {
    ROLE_NONE = 0,  /* no or an unknown role attribute: trust nothing */
    ROLE_C2S,       /* client connections: the session protocol */
    ROLE_SM,        /* the session manager of the local domains */
    ROLE_S2S,       /* federation: stanzas of remote domains */
    ROLE_RESOLVER,  /* DNS answers for s2s */
    ROLE_ADMIN,     /* hearthctl */
    ROLE_COMPONENT, /* any other component: speaks for the names it bound */
    ROLE_ROUTER,    /* the router itself: its bounces (type='error') */
} comp_role_t;

/* "c2s", "sm", ... ("" for ROLE_NONE). */
const char *comp_role_name(comp_role_t role);
/* The role of a name ("c2s", ...), ROLE_NONE if none. */
comp_role_t comp_role_of(const char *name);
/* The role the router marked a route with. */
comp_role_t comp_route_role(const elem_t *route);

#endif
