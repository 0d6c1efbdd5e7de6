/* ctl_check.h — what the files of `hearthctl check` share; private to
 * tools/.
 *
 * ctl_check.c runs the checks in order and counts what they report:
 * the config, the router accounts, the store and the file modes are its
 * own; the certificates are ctl_check_tls.c's, DNS and the listening
 * ports ctl_check_net.c's. Every finding is one line on standard output,
 * `error: WHAT — REMEDY`, `warning: WHAT — REMEDY` or `note: WHAT` (notes
 * are not problems and are not counted). */
#ifndef HEARTH_CTL_CHECK_H
#define HEARTH_CTL_CHECK_H

#include <stdbool.h>

#include "common.h"

typedef struct check {
    config_t *config;
    char **domains; /* the local domains, prepared; those that do not prepare are left out */
    int ndomains;
    bool is_dns_skipped, is_ports_skipped;
    int errors, warnings;
} check_t;

void check_error(check_t *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void check_warning(check_t *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void check_note(check_t *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The certificate and key files a daemon uses for domain: what the config
 * sets (for s2s, the domain's own s2s/certificate first), else the
 * default STATEDIR/tls/DOMAIN.pem and .key, as tls_cert_for_domain()
 * picks them. what: "c2s" or "s2s". True when they are the defaults. */
bool check_cert_paths(const check_t *k, const char *what, const char *domain,
                      char cert[TLS_PATH_MAX], char key[TLS_PATH_MAX]);
/* Whether the first certificate in cert_file names name as a server
 * (DNS-ID, CN, SRV-ID or XmppAddr: conn_cert_names_server); false when the
 * file does not load. */
bool check_cert_names(const char *cert_file, const char *name);
/* Whether the first certificate in cert_file carries name as a DNS name
 * (wildcards included), as for an SRV target's host name. */
bool check_cert_has_host(const char *cert_file, const char *name);

/* Whether hearthd runs daemon: supervisor.daemon names it, or is unset. */
bool check_runs(const check_t *k, const char *daemon);

void check_certificates(check_t *k);
void check_dns(check_t *k);
void check_ports(check_t *k);

/* hearthctl check: argv is what follows "check". The exit status. */
int ctl_check(const char *config_path, int argc, char **argv);

#endif
