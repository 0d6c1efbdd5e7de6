/* daemon.h — the first steps of every daemon's main (STYLE.md, "Processes"):
 * command-line options, the config file, the log, and the signals that stop
 * or reopen it.
 *
 * Options every daemon takes:
 *   -c FILE      config file (default: SYSCONFDIR/hearth/hearth.xml)
 *   -i ID        this instance's name when several run (c2s-2); default:
 *                the daemon's name
 *   -t           check the config file and exit (0 valid, 1 not)
 *   --get PATH   print the value(s) of a setting, one per line, and exit
 *   -V           print the version and exit
 * SIGTERM and SIGINT call on_stop once; SIGHUP reopens a log file; SIGPIPE is
 * ignored; the open-file limit is raised to the most the system allows. */
#ifndef HEARTH_DAEMON_H
#define HEARTH_DAEMON_H

#include <uv.h>

#include "config.h"

typedef struct daemon_ctx {
    const char *name; /* "router", "c2s", ... */
    const char *id;   /* the instance: -i, else name */
    config_t *config;
    uv_loop_t *loop;
    void (*on_stop)(void *ud);
    void *ud;
    uv_signal_t sig_term, sig_int, sig_hup;
} daemon_ctx_t;

/* Parse options, load and validate the config, open the log, install the
 * signal handlers on loop. Exits the process for -t, --get, -V, a bad
 * option or an invalid config (with the message on stderr). */
void daemon_init(daemon_ctx_t *d, int argc, char **argv);
/* Once the ports are open: when running as root, become the config's
 * `user` (its uid, gid and groups). Exits if that fails; a no-op when not
 * root or no user is set. */
void daemon_drop_privileges(daemon_ctx_t *d);
/* Release the signal handles (before the loop's last run) and the config. */
void daemon_done(daemon_ctx_t *d);

#endif
