/* sasl.h — SASL through libgsasl: SCRAM-SHA-1, SCRAM-SHA-256 (with -PLUS
 * channel binding) and PLAIN, on both sides, against stored SCRAM keys.
 *
 * Servers never see or keep a password: the lookup callback returns the
 * salted keys of RFC 5802 (salt, iteration count, StoredKey, ServerKey), and
 * PLAIN is checked by deriving keys from the offered password. Messages in
 * and out are base64, as XMPP carries them. */
#ifndef HEARTH_SASL_H
#define HEARTH_SASL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct scram_keys {
    char salt[64];       /* base64 */
    unsigned iterations;
    char stored_key[64]; /* base64 */
    char server_key[64]; /* base64 */
} scram_keys_t;

/* Derive keys from a password. hash: "SHA-1" or "SHA-256". salt_b64 NULL
 * makes a random 16-byte salt. 0, or -1 on a bad argument. */
int scram_keys_make(const char *hash, const char *password, const char *salt_b64,
                    unsigned iterations, scram_keys_t *out);
/* Does password match the keys? (PLAIN against stored keys.) */
bool scram_keys_match(const char *hash, const scram_keys_t *keys, const char *password);

/* Look up authcid's keys for hash ("SHA-1"/"SHA-256"): 0 found, -1 unknown. */
typedef int (*sasl_lookup_fn)(void *ud, const char *authcid, const char *hash,
                              scram_keys_t *out);

typedef enum sasl_result {
    SASL_DONE = 0,      /* success; out may hold final data (SCRAM v=) */
    SASL_CONTINUE = 1,  /* send out as a challenge and wait */
    SASL_FAILED = -1,   /* not-authorized */
    SASL_MALFORMED = -2 /* malformed-request / incorrect-encoding */
} sasl_result_t;

typedef struct sasl sasl_t;

/* Is mech one this module serves ("SCRAM-SHA-256-PLUS", "PLAIN", ...)? */
bool sasl_mech_supported(const char *mech);
/* A server exchange. cb_type/cb_data: the connection's channel binding
 * ("tls-exporter" or "tls-unique" and its bytes), NULL when there is none;
 * -PLUS mechanisms need it. NULL if mech is unsupported. */
sasl_t *sasl_server_new(const char *mech, sasl_lookup_fn lookup, void *ud,
                        const char *cb_type, const void *cb_data, size_t cb_len);
/* A client exchange with a password (tests, component client). */
sasl_t *sasl_client_new(const char *mech, const char *authcid, const char *password,
                        const char *cb_type, const void *cb_data, size_t cb_len);
/* A SCRAM client that skips PBKDF2, with the SaltedPassword a client
 * keeps after its first login (hex, for the salt and iteration count the
 * server will send): what real clients do, and what load generators need. */
sasl_t *sasl_client_new_salted(const char *mech, const char *authcid, const char *salted_hex);
/* That SaltedPassword, in hex (hexlen >= 2 * hash length + 1). */
int scram_salted_password(const char *hash, const char *password, const char *salt_b64,
                          unsigned iterations, char *hex, size_t hexlen);
void sasl_free(sasl_t *s);
/* One step: in_b64 is the peer's message ("" for none). *out_b64 is set to
 * a malloc'ed base64 string (maybe "") for SASL_DONE and SASL_CONTINUE. */
sasl_result_t sasl_step(sasl_t *s, const char *in_b64, char **out_b64);
/* The authenticated identity after SASL_DONE (server side). */
const char *sasl_authcid(const sasl_t *s);

#endif
