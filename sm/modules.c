/* modules.c — the sm's modules, in the order they are started (one line
 * each; a module registers its hooks in its init). */
#include "sm.h"

void mod_presence_init(sm_t *sm);
void mod_roster_init(sm_t *sm);
void mod_offline_init(sm_t *sm);
void mod_disco_init(sm_t *sm);
void mod_vcard_init(sm_t *sm);
void mod_private_init(sm_t *sm);
void mod_version_init(sm_t *sm);
void mod_time_init(sm_t *sm);
void mod_last_init(sm_t *sm);
void mod_ping_init(sm_t *sm);
void mod_blocking_init(sm_t *sm);
void mod_register_init(sm_t *sm);
void mod_admin_init(sm_t *sm);
void mod_adhoc_init(sm_t *sm);
void mod_admin_commands_init(sm_t *sm);
void mod_invite_init(sm_t *sm);
void mod_carbons_init(sm_t *sm);
void mod_extdisco_init(sm_t *sm);

/* One line per module, so that adding one is a one-line change. */
/* clang-format off */
const sm_module_t sm_modules[] = {
    {"presence", mod_presence_init},
    {"roster", mod_roster_init},
    {"offline", mod_offline_init},
    {"disco", mod_disco_init},
    {"vcard", mod_vcard_init},
    {"private", mod_private_init},
    {"version", mod_version_init},
    {"time", mod_time_init},
    {"last", mod_last_init},
    {"ping", mod_ping_init},
    {"blocking", mod_blocking_init},
    {"register", mod_register_init},
    {"admin", mod_admin_init},
    {"adhoc", mod_adhoc_init},
    {"admin_commands", mod_admin_commands_init},
    {"invite", mod_invite_init},
    {"carbons", mod_carbons_init},
    {"extdisco", mod_extdisco_init},
    {NULL, NULL},
};
/* clang-format on */
