/* ctl_check_tls.c — hearthctl check: the certificates.
 *
 * Every place a certificate is used: the c2s's one (c2s.cert/key, else
 * STATEDIR/tls/FIRST-DOMAIN.pem, presented for every domain), the s2s's
 * per local domain (its s2s/certificate, else s2s.cert/key, else
 * STATEDIR/tls/DOMAIN.pem) and the router's <tls>. Each file pair is
 * checked once: both files exist and parse, the key is the certificate's
 * and is closed to group and others (tls_key_is_exposed, the daemons' own
 * test), the certificate is in its validity period (expired: error;
 * expiring within EXPIRY_WARNING_DAYS: warning) and its chain verifies
 * against the system's CAs plus every s2s.ca file (self-signed or not
 * trusted: warning, since the daemons run with it). Then each use checks
 * that the certificate names what it serves: a local domain by the rule
 * that s2s applies to peers (conn_cert_names_server: DNS-ID or CN, SRV-ID,
 * XmppAddr), the router by router.tls-name. A default file that does not
 * exist yet is a note: the daemons make it at first start. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl_check.h"

#define EXPIRY_WARNING_DAYS 30
#define MAX_CHAIN 16
#define MAX_PAIRS 64 /* file pairs remembered as checked */

/* The remedy for a certificate that ran out or is about to. */
#define RENEW "renew it (e.g. certbot) and run hearthd restart"

typedef struct chain {
    gnutls_x509_crt_t *crts;
    unsigned n;
} chain_t;

static void chain_free(chain_t *c)
{
    for (unsigned i = 0; i < c->n; i++)
        gnutls_x509_crt_deinit(c->crts[i]);
    gnutls_free(c->crts);
    c->crts = NULL;
    c->n = 0;
}

/* The certificates of a PEM file, the server's first. 0, or a GnuTLS
 * error (GNUTLS_E_FILE_ERROR when it cannot be read). */
static int chain_load(const char *file, chain_t *c)
{
    gnutls_datum_t data = {NULL, 0};
    int rc = gnutls_load_file(file, &data);
    if (rc < 0) return rc;
    c->crts = NULL;
    c->n = 0;
    rc = gnutls_x509_crt_list_import2(&c->crts, &c->n, &data, GNUTLS_X509_FMT_PEM, 0);
    gnutls_free(data.data);
    if (rc >= 0 && c->n == 0) rc = GNUTLS_E_NO_CERTIFICATE_FOUND;
    return rc < 0 ? rc : 0;
}

static const char *day_of(time_t t, char buf[16])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 16, "%Y-%m-%d", &tm);
    return buf;
}

bool check_cert_paths(const check_t *k, const char *what, const char *domain,
                      char cert[TLS_PATH_MAX], char key[TLS_PATH_MAX])
{
    bool is_s2s = strcmp(what, "s2s") == 0;
    const char *c = config_get(k->config, is_s2s ? "s2s.cert" : "c2s.cert");
    const char *y = config_get(k->config, is_s2s ? "s2s.key" : "c2s.key");
    for (int j = 0; is_s2s && j < config_count(k->config, "s2s.certificate"); j++) {
        const char *d = config_get_at(k->config, "s2s.certificate@domain", j);
        char prepared[JID_STRING_MAX];
        if (d && jid_prep(d, strlen(d), prepared, NULL) == 0 && strcmp(prepared, domain) == 0) {
            c = config_get_at(k->config, "s2s.certificate@cert", j);
            y = config_get_at(k->config, "s2s.certificate@key", j);
        }
    }
    if ((c && *c) || (y && *y)) {
        snprintf(cert, TLS_PATH_MAX, "%s", c ? c : "");
        snprintf(key, TLS_PATH_MAX, "%s", y ? y : "");
        return false;
    }
    const char *statedir = config_get(k->config, "statedir");
    snprintf(cert, TLS_PATH_MAX, "%s/tls/%s.pem", statedir, domain);
    snprintf(key, TLS_PATH_MAX, "%s/tls/%s.key", statedir, domain);
    return true;
}

bool check_cert_names(const char *cert_file, const char *name)
{
    chain_t c;
    if (chain_load(cert_file, &c) < 0) return false;
    gnutls_datum_t der = {NULL, 0};
    bool named = gnutls_x509_crt_export2(c.crts[0], GNUTLS_X509_FMT_DER, &der) == 0 &&
                 conn_cert_names_server(der.data, der.size, name);
    gnutls_free(der.data);
    chain_free(&c);
    return named;
}

bool check_cert_has_host(const char *cert_file, const char *name)
{
    chain_t c;
    if (chain_load(cert_file, &c) < 0) return false;
    bool named = gnutls_x509_crt_check_hostname(c.crts[0], name) != 0;
    chain_free(&c);
    return named;
}

/* ---- one file pair ------------------------------------------------------- */

typedef struct tls_check {
    check_t *k;
    gnutls_x509_trust_list_t trust;
    char *checked[MAX_PAIRS]; /* "cert\nkey" of the pairs done, and their outcome */
    bool is_usable[MAX_PAIRS];
    int nchecked;
} tls_check_t;

static void check_dates(tls_check_t *t, const char *what, const char *file, gnutls_x509_crt_t crt)
{
    time_t now = time(NULL), begins = gnutls_x509_crt_get_activation_time(crt),
           ends = gnutls_x509_crt_get_expiration_time(crt);
    char day[16];
    if (ends != (time_t)-1 && ends < now)
        check_error(t->k, "%s %s expired on %s — %s", what, file, day_of(ends, day), RENEW);
    else if (ends != (time_t)-1 && ends - now < (time_t)EXPIRY_WARNING_DAYS * 86400)
        check_warning(t->k, "%s %s expires on %s, in %ld days — %s", what, file, day_of(ends, day),
                      (long)((ends - now) / 86400), RENEW);
    if (begins != (time_t)-1 && begins > now)
        check_error(t->k,
                    "%s %s is not valid before %s — check the system clock, or use a "
                    "certificate valid now",
                    what, file, day_of(begins, day));
}

static void check_chain(tls_check_t *t, const char *what, const char *file, const chain_t *c)
{
    unsigned status = 0;
    int rc = gnutls_x509_trust_list_verify_crt2(t->trust, c->crts, c->n, NULL, 0,
                                                GNUTLS_VERIFY_DISABLE_TIME_CHECKS, &status, NULL);
    if (rc == 0 && status == 0) return;
    bool is_self_signed = c->n == 1 && gnutls_x509_crt_check_issuer(c->crts[0], c->crts[0]);
    if (is_self_signed) {
        check_warning(t->k,
                      "%s %s is self-signed: clients must accept it; federation works by "
                      "dialback only — get one from a CA (e.g. certbot) and set it in the config",
                      what, file);
        return;
    }
    gnutls_datum_t why = {NULL, 0};
    if (rc == 0) gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0);
    check_warning(t->k,
                  "%s %s does not verify against the system's CAs and s2s.ca: %s — put the "
                  "intermediate certificates after it in the file, or trust its CA with s2s/ca",
                  what, file, why.data ? (const char *)why.data : gnutls_strerror(rc));
    gnutls_free(why.data);
}

/* The key file loads and is the certificate's. */
static bool check_key(tls_check_t *t, const char *what, const char *cert, const char *key,
                      gnutls_x509_crt_t crt)
{
    unsigned mode = 0;
    if (access(key, R_OK) < 0) {
        check_error(t->k, "%s %s: %s — fix the key setting, or give this user access", what, key,
                    strerror(errno));
        return false;
    }
    if (tls_key_is_exposed(key, &mode))
        check_warning(t->k,
                      "%s %s is readable by its group or others (mode %04o) — chmod 600 "
                      "%s",
                      what, key, mode, key);
    gnutls_datum_t data = {NULL, 0};
    gnutls_x509_privkey_t pk = NULL;
    int rc = gnutls_load_file(key, &data);
    if (rc >= 0 && (rc = gnutls_x509_privkey_init(&pk)) >= 0)
        rc = gnutls_x509_privkey_import2(pk, &data, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (data.data) {
        gnutls_memset(data.data, 0, data.size);
        gnutls_free(data.data);
    }
    if (rc < 0) {
        if (pk) gnutls_x509_privkey_deinit(pk);
        check_error(t->k, "%s %s does not load (%s) — it must be an unencrypted PEM private key",
                    what, key, gnutls_strerror(rc));
        return false;
    }
    unsigned char cert_id[64], key_id[64];
    size_t cert_len = sizeof cert_id, key_len = sizeof key_id;
    bool is_match = gnutls_x509_crt_get_key_id(crt, 0, cert_id, &cert_len) == 0 &&
                    gnutls_x509_privkey_get_key_id(pk, 0, key_id, &key_len) == 0 &&
                    cert_len == key_len && memcmp(cert_id, key_id, cert_len) == 0;
    gnutls_x509_privkey_deinit(pk);
    if (!is_match) {
        check_error(t->k,
                    "%s %s does not match certificate %s — use the key the certificate "
                    "was made for",
                    what, key, cert);
        return false;
    }
    /* What the daemons themselves would make of the pair. */
    char *err = NULL;
    tls_ctx_t *ctx = tls_ctx_new_server(cert, key, &err);
    if (!ctx) {
        check_error(t->k, "%s %s: %s — the daemons cannot load this pair", what, key,
                    err ? err : "?");
        free(err);
        return false;
    }
    tls_ctx_free(ctx);
    return true;
}

/* Check the pair once; whether its certificate is there to check names.
 * who: "c2s", "s2s" or "router"; domain: the s2s's, else NULL. */
static bool check_pair(tls_check_t *t, const char *who, const char *domain, const char *cert,
                       const char *key, bool is_default)
{
    char what[64 + JID_STRING_MAX], key_what[64 + JID_STRING_MAX];
    snprintf(what, sizeof what, "%s certificate%s%s", who, domain ? " for " : "",
             domain ? domain : "");
    snprintf(key_what, sizeof key_what, "%s key%s%s", who, domain ? " for " : "",
             domain ? domain : "");
    char id[2 * TLS_PATH_MAX + 2];
    snprintf(id, sizeof id, "%s\n%s", cert, key);
    for (int i = 0; i < t->nchecked; i++)
        if (strcmp(t->checked[i], id) == 0) return t->is_usable[i];
    bool is_usable = false;
    if (!*cert || !*key) {
        check_error(t->k, "%s: a certificate and a key go together — set both%s", what,
                    strcmp(who, "router") == 0
                        ? ""
                        : ", or neither (for a self-signed one made at first start)");
    } else if (is_default && access(cert, F_OK) < 0) {
        check_note(t->k,
                   "%s %s does not exist yet: the daemons make a self-signed one at first "
                   "start",
                   what, cert);
    } else {
        chain_t c;
        int rc = chain_load(cert, &c);
        if (rc == GNUTLS_E_FILE_ERROR)
            check_error(t->k, "%s %s cannot be read — fix the cert setting, or create the file",
                        what, cert);
        else if (rc < 0)
            check_error(t->k,
                        "%s %s holds no PEM certificate (%s) — point the setting at the "
                        "PEM certificate file",
                        what, cert, gnutls_strerror(rc));
        if (rc == 0) {
            is_usable = true;
            check_dates(t, what, cert, c.crts[0]);
            check_chain(t, what, cert, &c);
            check_key(t, key_what, cert, key, c.crts[0]);
            chain_free(&c);
        }
    }
    if (t->nchecked < MAX_PAIRS) {
        if (!(t->checked[t->nchecked] = strdup(id))) log_fatal("out of memory");
        t->is_usable[t->nchecked++] = is_usable;
    }
    return is_usable;
}

static void check_name(tls_check_t *t, const char *what, const char *cert, const char *name)
{
    if (check_cert_names(cert, name)) return;
    check_error(t->k,
                "%s %s does not name %s (as a DNS name, SRV-ID or XmppAddr): clients and "
                "servers will refuse it — get one that names %s",
                what, cert, name, name);
}

/* ---- every use ------------------------------------------------------------ */

/* The system's CAs plus s2s.ca, as s2s trusts them (tls_ctx_trust). */
static void load_trust(tls_check_t *t)
{
    if (gnutls_x509_trust_list_init(&t->trust, 0) < 0) log_fatal("out of memory");
    gnutls_x509_trust_list_add_system_trust(t->trust, 0, 0);
    for (int i = 0; i < config_count(t->k->config, "s2s.ca"); i++) {
        const char *ca = config_get_at(t->k->config, "s2s.ca", i);
        if (!ca || !*ca) continue;
        int rc =
            gnutls_x509_trust_list_add_trust_file(t->trust, ca, NULL, GNUTLS_X509_FMT_PEM, 0, 0);
        if (rc <= 0)
            check_error(t->k,
                        "s2s.ca %s: %s — the s2s refuses to start: point it at a PEM file "
                        "of CA certificates",
                        ca, rc == 0 ? "no certificate in the file" : gnutls_strerror(rc));
    }
}

void check_certificates(check_t *k)
{
    tls_check_t t = {.k = k};
    load_trust(&t);
    char cert[TLS_PATH_MAX], key[TLS_PATH_MAX], what[64 + JID_STRING_MAX];
    if (k->ndomains > 0 && check_runs(k, "c2s")) {
        bool is_default = check_cert_paths(k, "c2s", k->domains[0], cert, key);
        if (check_pair(&t, "c2s", NULL, cert, key, is_default))
            for (int i = 0; i < k->ndomains; i++)
                check_name(&t, "c2s certificate", cert, k->domains[i]);
    }
    for (int i = 0; i < k->ndomains && check_runs(k, "s2s"); i++) {
        bool is_default = check_cert_paths(k, "s2s", k->domains[i], cert, key);
        snprintf(what, sizeof what, "s2s certificate for %s", k->domains[i]);
        if (check_pair(&t, "s2s", k->domains[i], cert, key, is_default))
            check_name(&t, what, cert, k->domains[i]);
    }
    const char *rcert = config_get(k->config, "router.tls@cert");
    const char *rkey = config_get(k->config, "router.tls@key");
    if (rcert || rkey) {
        const char *name = config_get(k->config, "router.tls-name");
        if (check_pair(&t, "router", NULL, rcert ? rcert : "", rkey ? rkey : "", false) &&
            !check_cert_names(rcert, name))
            check_error(k,
                        "router certificate %s does not name %s (router.tls-name): the daemons "
                        "will refuse it — get one for %s, or set router/tls-name to a name it "
                        "carries",
                        rcert, name, name);
    }
    for (int i = 0; i < t.nchecked; i++)
        free(t.checked[i]);
    gnutls_x509_trust_list_deinit(t.trust, 1);
}
