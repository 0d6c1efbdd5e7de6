/* hearthctl.h — what the subcommands in their own files (ctl_*.c) share
 * with hearthctl.c, which holds main() and the account commands. */
#ifndef HEARTH_HEARTHCTL_H
#define HEARTH_HEARTHCTL_H

#include <stdbool.h>

#include "common.h"

/* Is domain (prepared) one of hearth.xml's <domain>s? */
bool is_local_domain(const config_t *config, const char *domain);
/* Is there a router account hearthctl may use (role admin, or the shared
 * one of older configs)? */
bool has_admin_account(const config_t *config);

/* hearthctl export / import (ctl_pie.c): argv[0] is the subcommand; the
 * exit status. */
int pie_main(const char *config_path, int argc, char **argv);

#endif
