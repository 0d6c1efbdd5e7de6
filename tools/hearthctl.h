/* hearthctl.h — what hearthctl.c shares with the files of its other
 * subcommands (tools/ctl_*.c). */
#ifndef HEARTH_HEARTHCTL_H
#define HEARTH_HEARTHCTL_H

#include <stdbool.h>

#include "common.h"

/* A subcommand's main returns this for a usage error: hearthctl prints its
 * usage and exits 2. */
#define CTL_USAGE (-1)

/* Is domain (prepared) one of the configured domains? */
bool is_local_domain(const config_t *config, const char *domain);
/* Is there a router account for hearthctl (role admin, or the shared one of
 * older configs)? */
bool has_admin_account(const config_t *config);

/* The JID argument of a subcommand, prepared: an account of a configured
 * domain (user alone: in the first one), with a resource only when
 * may_be_full. NULL, with the reason on standard error, if it is not. */
jid_t *ctl_jid_of(const config_t *config, const char *arg, bool may_be_full);

/* disable, enable, kick (ctl_account.c): argv[0] is the subcommand. */
bool ctl_account_handles(const char *cmd);
int ctl_account_main(const char *config_path, int argc, char **argv);

/* invite, reset (ctl_invite.c). */
bool ctl_invite_handles(const char *cmd);
int ctl_invite_main(const char *config_path, int argc, char **argv);

/* hearthctl export / import (ctl_pie.c): argv[0] is the subcommand; the
 * exit status. */
int pie_main(const char *config_path, int argc, char **argv);

#endif
