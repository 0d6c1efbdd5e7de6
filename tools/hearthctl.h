/* hearthctl.h — what hearthctl.c shares with the files of its other
 * subcommands (tools/ctl_*.c). */
#ifndef HEARTH_HEARTHCTL_H
#define HEARTH_HEARTHCTL_H

#include <stdbool.h>

#include "config.h"

/* A subcommand's main returns this for a usage error: hearthctl prints its
 * usage and exits 2. */
#define CTL_USAGE (-1)

/* Is domain (prepared) one of the configured domains? */
bool is_local_domain(const config_t *config, const char *domain);
/* Is there a router account for hearthctl (role admin, or the shared one of
 * older configs)? */
bool has_admin_account(const config_t *config);

/* disable, enable, kick (ctl_account.c): argv[0] is the subcommand. */
bool ctl_account_handles(const char *cmd);
int ctl_account_main(const char *config_path, int argc, char **argv);

#endif
