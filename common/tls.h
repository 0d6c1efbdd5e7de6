/* tls.h — GnuTLS credentials: loading certificates, trusting CAs, and making
 * the self-signed certificate a first start needs. The TLS session itself
 * runs inside a connection (conn.h: conn_starttls). */
#ifndef HEARTH_TLS_H
#define HEARTH_TLS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tls_ctx tls_ctx_t;

/* Server credentials from PEM files. NULL with *err (malloc'ed) on failure. */
tls_ctx_t *tls_ctx_new_server(const char *cert_file, const char *key_file, char **err);
/* Client credentials trusting ca_file (PEM) or, when NULL, the system's
 * CAs. verify: refuse a peer whose certificate does not verify for the
 * server name given to conn_starttls. */
tls_ctx_t *tls_ctx_new_client(const char *ca_file, bool verify, char **err);
void tls_ctx_free(tls_ctx_t *ctx);
/* Another certificate and key for server credentials (one per domain):
 * GnuTLS presents the one whose name matches the client's SNI. 0 or -1
 * with *err. */
int tls_ctx_add_key_pair(tls_ctx_t *ctx, const char *cert_file, const char *key_file, char **err);
/* Trust the system's CAs plus the nca PEM files ca_files, and, as a server,
 * ask clients for a certificate; conn_peer_verified() then says whether
 * the peer's certificate is valid for a name. Used by s2s, whose contexts
 * act as server and client both. 0, or -1 with *err when a file does not
 * load or no CA at all is trusted. */
int tls_ctx_trust(tls_ctx_t *ctx, const char *const *ca_files, int nca, char **err);

/* Whether the private key file key_file may be read or written by its
 * group or others (then *mode, when not NULL, is its mode): the daemons
 * warn about it where they load a key, hearthctl check reports it. */
bool tls_key_is_exposed(const char *key_file, unsigned *mode);

/* Write a new self-signed certificate and key (PEM) for domain. */
int tls_make_selfsigned(const char *domain, const char *cert_file, const char *key_file,
                        char **err);

#define TLS_PATH_MAX 4096
/* The certificate and key files of a daemon for domain: cert and key when
 * set, else STATEDIR/tls/DOMAIN.pem and .key, made self-signed the first
 * time (under a lock: several processes may start at once). `what` names
 * the daemon in messages. Fatal on failure. */
void tls_cert_for_domain(const char *cert, const char *key, const char *statedir,
                         const char *domain, const char *what, char cert_path[TLS_PATH_MAX],
                         char key_path[TLS_PATH_MAX]);
/* The same two paths without making anything, for a reload (SIGHUP): 0,
 * or -1 with *err (malloc'ed) when only one of cert and key is set or a
 * path is too long. */
int tls_key_pair_paths(const char *cert, const char *key, const char *statedir, const char *domain,
                       char cert_path[TLS_PATH_MAX], char key_path[TLS_PATH_MAX], char **err);
/* Server credentials from those files (tls_cert_for_domain). */
tls_ctx_t *tls_ctx_for_domain(const char *cert, const char *key, const char *statedir,
                              const char *domain, const char *what);
/* The same, loaded again on a reload: never fatal, nothing made; NULL
 * with *err (malloc'ed). */
tls_ctx_t *tls_ctx_reload_for_domain(const char *cert, const char *key, const char *statedir,
                                     const char *domain, char **err);

/* Whether a (alen bytes) and b (blen bytes) are equal, in a time that
 * depends on the lengths only, never on where the contents differ: for
 * comparing secrets and keys a peer sent (dialback keys, the XEP-0114
 * handshake), where strcmp would tell it how much of its guess was right. */
bool tls_equal(const void *a, size_t alen, const void *b, size_t blen);

/* bytes random bytes (at most 32) as lower-case hex into out (2 * bytes + 1):
 * stream ids, session ids, resources. */
void random_hex(char *out, size_t bytes);
/* n bytes from the cryptographic generator (unguessable ids). */
void tls_random(void *out, size_t n);

#endif
