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
 * SIGTERM and SIGINT call on_stop once; SIGPIPE is ignored; the open-file
 * limit is raised to the most the system allows.
 *
 * SIGHUP: the log file is reopened (rotation), the config file read again
 * and, if it is valid, given to on_reload, which applies what can change
 * without dropping anyone (certificates for new connections, c2s limits)
 * and returns -1 with *err to keep every running setting instead; an
 * invalid file is logged and changes nothing. The new config is freed
 * after on_reload: the daemon copies what it keeps, and goes on reading
 * the config it started with. Reading the file (and the certificates) on
 * the loop is an administrator's action of a few milliseconds.
 *
 * Readiness (systemd Type=notify, etc/systemd/): daemon_ready() sends
 * "READY=1" as one datagram to the Unix socket $NOTIFY_SOCKET (a path, or
 * an abstract name written with a leading '@'), once per process; nothing
 * when the variable is unset. The router calls it once it listens, the
 * others once they are logged in to the router.
 *
 * Liveness. Once its privileges are dropped, a daemon proves its loop
 * turns: every supervisor.watchdog / 3 it sets the time of
 * STATEDIR/heartbeat/ID (asynchronously, on the thread pool), which
 * hearthd reads to kill and restart a daemon that stopped answering; and
 * under systemd with WatchdogSec (WATCHDOG_USEC set), it sends
 * "WATCHDOG=1" to $NOTIFY_SOCKET every half of that period.
 *
 * Privileges (docs: the `user` setting). Every daemon runs with umask 077,
 * so what it creates (the store, its -journal, keys, logs) is the
 * owner's only. A daemon started as root becomes `user` (default hearth)
 * once its ports are bound and its keys loaded, before it opens anything
 * it writes later (the store): main.c's order is config, certificates,
 * ports, daemon_drop_privileges, store, router link, loop. Started as root
 * with a `user` that does not exist, it exits at once naming the two ways
 * out: create the account, or set <user>root</user>, which keeps root on
 * purpose (with a warning). Before the switch STATEDIR is made to exist,
 * owned by the user, mode 0750 at most; a SQLite store that an older,
 * root-run version left there owned by root is given to the user. A config
 * file readable by others (or by a group other than the daemon user's),
 * or a private key readable by anyone but its owner, is warned about once
 * at start. */
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
    /* SIGHUP with a valid config (above); NULL: the log alone. */
    int (*on_reload)(void *ud, const config_t *fresh, char **err);
    void *ud;
    uv_signal_t sig_term, sig_int, sig_hup;
    /* the watchdog's heartbeat (daemon_drop_privileges) */
    uv_timer_t heartbeat;
    uv_fs_t heartbeat_req;
    int heartbeat_fd;
    bool has_heartbeat, is_touching, is_systemd_watchdog;
} daemon_ctx_t;

/* Parse options, load and validate the config, open the log, install the
 * signal handlers on loop. Exits the process for -t, --get, -V, a bad
 * option or an invalid config (with the message on stderr). */
void daemon_init(daemon_ctx_t *d, int argc, char **argv);
/* Once the ports are bound and the keys loaded, before the store is
 * opened: warn about a config or key file others may read; then, when
 * running as root, become the config's `user` (its uid, gid and groups),
 * unless it is root. Exits if that fails; only the warnings when not root. */
void daemon_drop_privileges(daemon_ctx_t *d);
/* The switch alone, for a program that is not a daemon (hearthctl), so that
 * what it creates in STATEDIR belongs to the daemons' user: when root,
 * prepare STATEDIR and become `user` as above; nothing when not root or
 * when `user` is root. 0, or -1 with *err (malloc'ed, the caller frees)
 * naming what to do. */
int daemon_switch_user(const config_t *config, char **err);
/* Whether the config file at path (it holds secrets) is readable or
 * writable by others, or by a group other than group (the daemons' own):
 * NULL if not, else the warning, with the chmod that ends it (malloc'ed,
 * the caller frees). Said at start by every daemon; hearthctl check too. */
char *daemon_config_exposure(const char *path, gid_t group);

/* Tell systemd the daemon is ready (above). */
void daemon_ready(void);
/* The local domains of the config (every <domain>, "localhost" when there
 * is none), prepared (stringprep), each malloc'ed, in a malloc'ed array
 * of *n; daemon_domains_free() frees them. Fatal, naming the file, for one
 * that is not a domain. */
char **daemon_domains(const config_t *config, int *n);
void daemon_domains_free(char **domains, int n);
/* Release the signal handles (before the loop's last run) and the config. */
void daemon_done(daemon_ctx_t *d);

#endif
