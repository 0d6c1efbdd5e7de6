/* role.c — the names of the router accounts' roles (role.h). */
#include "role.h"

#include <string.h>

static const char *const role_names[] = {
    [ROLE_NONE] = "",
    [ROLE_C2S] = "c2s",
    [ROLE_SM] = "sm",
    [ROLE_S2S] = "s2s",
    [ROLE_RESOLVER] = "resolver",
    [ROLE_ADMIN] = "admin",
    [ROLE_COMPONENT] = "component",
    [ROLE_ROUTER] = "router",
};

const char *comp_role_name(comp_role_t role)
{
    return (unsigned)role < sizeof role_names / sizeof *role_names ? role_names[role] : "";
}

comp_role_t comp_role_of(const char *name)
{
    if (!name || !*name) return ROLE_NONE;
    for (unsigned i = 1; i < sizeof role_names / sizeof *role_names; i++)
        if (strcmp(role_names[i], name) == 0) return (comp_role_t)i;
    return ROLE_NONE;
}

comp_role_t comp_route_role(const elem_t *route)
{
    return comp_role_of(elem_attr(route, "role"));
}
