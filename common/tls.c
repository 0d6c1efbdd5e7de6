/* tls.c — GnuTLS credentials: a server's certificate and key, a client's
 * trusted CAs, and the self-signed certificate a first start needs.
 *
 * A tls_ctx_t holds the credentials and the priority cache that every TLS
 * session made from it shares. Sessions live in conn.c, which holds a
 * reference on the context for as long as a session uses it, so
 * tls_ctx_free() is safe while connections are still open (a reload can
 * swap contexts). The loop is single-threaded; the count is not atomic.
 *
 * Protocol versions: TLS 1.2 and 1.3 only, on top of GnuTLS's NORMAL
 * priorities (and whatever the system's GnuTLS configuration removes). */
#include "tls.h"
#include "tls_private.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define SELFSIGNED_DAYS 3653 /* ten years, leap days included */

struct tls_ctx {
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t priority;
    bool verify;       /* as a client: refuse a server that does not verify */
    bool request_cert; /* as a server: ask the client for its certificate */
    unsigned refs;
};

static void set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(char **err, const char *fmt, ...)
{
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0) log_fatal("out of memory");
    va_end(ap);
}

static tls_ctx_t *ctx_new(bool verify, char **err)
{
    tls_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx) log_fatal("out of memory");
    ctx->verify = verify;
    ctx->refs = 1;
    int rc = gnutls_certificate_allocate_credentials(&ctx->cred);
    if (rc < 0) {
        set_err(err, "gnutls credentials: %s", gnutls_strerror(rc));
        free(ctx);
        return NULL;
    }
    const char *where = NULL;
    rc = gnutls_priority_init2(&ctx->priority, PRIORITIES, &where, 0);
    if (rc < 0) {
        set_err(err, "gnutls priorities at '%s': %s", where ? where : "?", gnutls_strerror(rc));
        gnutls_certificate_free_credentials(ctx->cred);
        free(ctx);
        return NULL;
    }
    return ctx;
}

tls_ctx_t *tls_ctx_new_server(const char *cert_file, const char *key_file, char **err)
{
    if (err) *err = NULL;
    if (!cert_file || !key_file) {
        set_err(err, "a server needs a certificate and a key");
        return NULL;
    }
    tls_ctx_t *ctx = ctx_new(false, err);
    if (ctx && tls_ctx_add_key_pair(ctx, cert_file, key_file, err) < 0) {
        tls_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

tls_ctx_t *tls_ctx_new_client(const char *ca_file, bool verify, char **err)
{
    if (err) *err = NULL;
    tls_ctx_t *ctx = ctx_new(verify, err);
    if (!ctx) return NULL;
    int rc;
    if (ca_file) {
        rc = gnutls_certificate_set_x509_trust_file(ctx->cred, ca_file, GNUTLS_X509_FMT_PEM);
        if (rc <= 0) {
            set_err(err, "%s: %s", ca_file,
                    rc == 0 ? "no certificate in the file" : gnutls_strerror(rc));
            tls_ctx_free(ctx);
            return NULL;
        }
    } else {
        rc = gnutls_certificate_set_x509_system_trust(ctx->cred);
        /* Without verification nobody needs the system's CAs. */
        if (rc <= 0 && verify) {
            set_err(err, "system CAs: %s", rc == 0 ? "none found" : gnutls_strerror(rc));
            tls_ctx_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

bool tls_key_is_exposed(const char *key_file, unsigned *mode)
{
    struct stat st;
    if (stat(key_file, &st) < 0 || !(st.st_mode & (S_IRWXG | S_IRWXO))) return false;
    if (mode) *mode = (unsigned)(st.st_mode & 07777);
    return true;
}

/* A private key that its group or others may read is not private any
 * more: said once, at start, by whichever daemon loads it. */
static void warn_if_exposed(const char *key_file)
{
    unsigned mode = 0;
    if (!tls_key_is_exposed(key_file, &mode) || !log_is_first(key_file)) return;
    log_warn("key %s is readable by its group or others (mode %04o): chmod 600 %s", key_file, mode,
             key_file);
}

int tls_ctx_add_key_pair(tls_ctx_t *ctx, const char *cert_file, const char *key_file, char **err)
{
    if (err) *err = NULL;
    warn_if_exposed(key_file);
    int rc = gnutls_certificate_set_x509_key_file2(ctx->cred, cert_file, key_file,
                                                   GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        set_err(err, "%s / %s: %s", cert_file, key_file, gnutls_strerror(rc));
        return -1;
    }
    return 0;
}

int tls_ctx_trust(tls_ctx_t *ctx, const char *const *ca_files, int nca, char **err)
{
    if (err) *err = NULL;
    /* A machine without a CA bundle can still trust the listed files. */
    int total = gnutls_certificate_set_x509_system_trust(ctx->cred);
    if (total < 0) total = 0;
    for (int i = 0; i < nca; i++) {
        int rc = gnutls_certificate_set_x509_trust_file(ctx->cred, ca_files[i],
                                                        GNUTLS_X509_FMT_PEM);
        if (rc <= 0) {
            set_err(err, "%s: %s", ca_files[i],
                    rc == 0 ? "no certificate in the file" : gnutls_strerror(rc));
            return -1;
        }
        total += rc;
    }
    if (total == 0) {
        set_err(err, "no trusted CA: the system has none and none is configured");
        return -1;
    }
    ctx->request_cert = true;
    return 0;
}

bool tls_ctx_requests_cert(const tls_ctx_t *ctx)
{
    return ctx->request_cert;
}

void tls_ctx_free(tls_ctx_t *ctx)
{
    tls_ctx_release(ctx);
}

gnutls_certificate_credentials_t tls_ctx_credentials(const tls_ctx_t *ctx)
{
    return ctx->cred;
}

gnutls_priority_t tls_ctx_priority(const tls_ctx_t *ctx)
{
    return ctx->priority;
}

bool tls_ctx_verifies(const tls_ctx_t *ctx)
{
    return ctx->verify;
}

tls_ctx_t *tls_ctx_hold(tls_ctx_t *ctx)
{
    ctx->refs++;
    return ctx;
}

void tls_ctx_release(tls_ctx_t *ctx)
{
    if (!ctx || --ctx->refs > 0) return;
    gnutls_priority_deinit(ctx->priority);
    gnutls_certificate_free_credentials(ctx->cred);
    free(ctx);
}

/* ---- self-signed certificates ------------------------------------------- */

static int write_file(const char *path, const gnutls_datum_t *data, mode_t mode, char **err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        set_err(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* An existing file keeps its mode through O_CREAT: set it. */
    if (fchmod(fd, mode) < 0) {
        set_err(err, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    size_t off = 0;
    while (off < data->size) {
        ssize_t n = write(fd, data->data + off, data->size - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            set_err(err, "%s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    if (close(fd) < 0) {
        set_err(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* An EC P-256 key and a certificate naming domain as its CN and DNS
 * subjectAltName, valid for ten years, usable as TLS server and client (s2s
 * presents it both ways). The key file is mode 0600. */
int tls_make_selfsigned(const char *domain, const char *cert_file, const char *key_file, char **err)
{
    if (err) *err = NULL;
    if (!domain || !*domain || !cert_file || !key_file) {
        set_err(err, "a domain, a certificate file and a key file are needed");
        return -1;
    }
    gnutls_x509_privkey_t key = NULL;
    gnutls_privkey_t signer = NULL;
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t cert_pem = {NULL, 0}, key_pem = {NULL, 0};
    unsigned char serial[16], key_id[64];
    size_t key_id_len = sizeof key_id;
    time_t now = time(NULL);
    const char *step = "";
    int rc;

#define TRY(what, call)                                                                            \
    do {                                                                                           \
        step = what;                                                                               \
        if ((rc = (call)) < 0) goto fail;                                                          \
    } while (0)

    TRY("key", gnutls_x509_privkey_init(&key));
    TRY("key", gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                            GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0));
    TRY("key", gnutls_privkey_init(&signer));
    TRY("key", gnutls_privkey_import_x509(signer, key, 0));
    TRY("certificate", gnutls_x509_crt_init(&crt));
    TRY("certificate", gnutls_x509_crt_set_version(crt, 3));
    TRY("serial", gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial));
    serial[0] &= 0x7f; /* a positive INTEGER (RFC 5280 §4.1.2.2) */
    serial[0] |= 0x01;
    TRY("serial", gnutls_x509_crt_set_serial(crt, serial, sizeof serial));
    TRY("dates", gnutls_x509_crt_set_activation_time(crt, now - 3600));
    TRY("dates", gnutls_x509_crt_set_expiration_time(crt, now + (time_t)SELFSIGNED_DAYS * 86400));
    TRY("name", gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, domain,
                                              (unsigned)strlen(domain)));
    TRY("name", gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, domain,
                                                     (unsigned)strlen(domain), GNUTLS_FSAN_SET));
    TRY("certificate", gnutls_x509_crt_set_key(crt, key));
    TRY("certificate", gnutls_x509_crt_set_basic_constraints(crt, 0, -1));
    TRY("certificate", gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE));
    TRY("certificate", gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0));
    TRY("certificate", gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0));
    TRY("certificate", gnutls_x509_crt_get_key_id(crt, 0, key_id, &key_id_len));
    TRY("certificate", gnutls_x509_crt_set_subject_key_id(crt, key_id, key_id_len));
    TRY("signature", gnutls_x509_crt_privkey_sign(crt, crt, signer, GNUTLS_DIG_SHA256, 0));
    TRY("export", gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cert_pem));
    TRY("export", gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL,
                                                    GNUTLS_PKCS_PLAIN, &key_pem));
#undef TRY

    rc = -1;
    if (write_file(key_file, &key_pem, 0600, err) == 0 &&
        write_file(cert_file, &cert_pem, 0644, err) == 0)
        rc = 0;
    goto done;

fail:
    set_err(err, "self-signed certificate for %s (%s): %s", domain, step, gnutls_strerror(rc));
    rc = -1;
done:
    if (key_pem.data) {
        gnutls_memset(key_pem.data, 0, key_pem.size);
        gnutls_free(key_pem.data);
    }
    gnutls_free(cert_pem.data);
    if (crt) gnutls_x509_crt_deinit(crt);
    if (signer) gnutls_privkey_deinit(signer);
    if (key) gnutls_x509_privkey_deinit(key);
    return rc;
}

/* ---- what daemons share ---------------------------------------------------- */

void tls_random(void *out, size_t n)
{
    if (gnutls_rnd(GNUTLS_RND_RANDOM, out, n) < 0) log_fatal("no random numbers");
}

void random_hex(char *out, size_t bytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[32];
    if (bytes > sizeof raw) bytes = sizeof raw;
    if (gnutls_rnd(GNUTLS_RND_NONCE, raw, bytes) < 0) log_fatal("no random numbers");
    for (size_t i = 0; i < bytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * bytes] = '\0';
}

bool tls_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen) return false;
    const unsigned char *x = a, *y = b;
    /* volatile: the compiler may not stop at the first difference */
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < alen; i++)
        diff |= (unsigned char)(x[i] ^ y[i]);
    return diff == 0;
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST) log_fatal("cannot create %s: %m", path);
}

int tls_key_pair_paths(const char *cert, const char *key, const char *statedir, const char *domain,
                       char cert_path[TLS_PATH_MAX], char key_path[TLS_PATH_MAX], char **err)
{
    if (err) *err = NULL;
    if ((cert && *cert) || (key && *key)) {
        if (!cert || !*cert || !key || !*key) {
            set_err(err, "cert and key go together");
            return -1;
        }
        if (snprintf(cert_path, TLS_PATH_MAX, "%s", cert) >= TLS_PATH_MAX ||
            snprintf(key_path, TLS_PATH_MAX, "%s", key) >= TLS_PATH_MAX) {
            set_err(err, "certificate path too long");
            return -1;
        }
        return 0;
    }
    if (snprintf(cert_path, TLS_PATH_MAX, "%s/tls/%s.pem", statedir, domain) >= TLS_PATH_MAX ||
        snprintf(key_path, TLS_PATH_MAX, "%s/tls/%s.key", statedir, domain) >= TLS_PATH_MAX) {
        set_err(err, "statedir %s is too long", statedir);
        return -1;
    }
    return 0;
}

tls_ctx_t *tls_ctx_reload_for_domain(const char *cert, const char *key, const char *statedir,
                                     const char *domain, char **err)
{
    char cert_path[TLS_PATH_MAX], key_path[TLS_PATH_MAX];
    if (tls_key_pair_paths(cert, key, statedir, domain, cert_path, key_path, err) < 0) return NULL;
    return tls_ctx_new_server(cert_path, key_path, err);
}

void tls_cert_for_domain(const char *cert, const char *key, const char *statedir,
                         const char *domain, const char *what, char cert_path[TLS_PATH_MAX],
                         char key_path[TLS_PATH_MAX])
{
    char *err = NULL;
    if (tls_key_pair_paths(cert, key, statedir, domain, cert_path, key_path, &err) < 0)
        log_fatal("%s: %s", what, err);
    if ((cert && *cert) || (key && *key)) return;
    char dir[TLS_PATH_MAX], lock[TLS_PATH_MAX + 16];
    make_dir(statedir);
    snprintf(dir, sizeof dir, "%s/tls", statedir);
    make_dir(dir);
    snprintf(lock, sizeof lock, "%s/.lock", dir);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) < 0) log_fatal("cannot lock %s: %m", lock);
    if (access(cert_path, R_OK) < 0 || access(key_path, R_OK) < 0) {
        if (tls_make_selfsigned(domain, cert_path, key_path, &err) < 0)
            log_fatal("cannot make a certificate in %s: %s", dir, err ? err : "?");
        log_notice("made a self-signed certificate for %s: %s (peers will warn; set %s's "
                   "cert and key for a real one)",
                   domain, cert_path, what);
    }
    close(fd); /* releases the lock */
}

tls_ctx_t *tls_ctx_for_domain(const char *cert, const char *key, const char *statedir,
                              const char *domain, const char *what)
{
    char cert_path[TLS_PATH_MAX], key_path[TLS_PATH_MAX];
    tls_cert_for_domain(cert, key, statedir, domain, what, cert_path, key_path);
    char *err = NULL;
    tls_ctx_t *ctx = tls_ctx_new_server(cert_path, key_path, &err);
    if (!ctx) log_fatal("%s certificate %s: %s", what, cert_path, err ? err : "cannot load");
    return ctx;
}
