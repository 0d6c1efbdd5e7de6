/* sasl.c — SASL exchanges through libgsasl, and the SCRAM keys they check.
 *
 * One Gsasl context serves the whole process (made on first use; the loop
 * is single-threaded, so no locking). Each sasl_t is one gsasl session; the
 * gsasl callback finds it again through the session hook and answers the
 * properties gsasl asks for:
 *
 *   server SCRAM: GSASL_SCRAM_ITER, _SALT, _STOREDKEY, _SERVERKEY from the
 *                 caller's lookup (done once per exchange), plus the
 *                 channel binding for -PLUS;
 *   server PLAIN: GSASL_VALIDATE_SIMPLE, answered by deriving keys from the
 *                 offered password (scram_keys_match), SHA-256 keys first;
 *   client:       GSASL_AUTHID, GSASL_PASSWORD and the channel binding.
 *
 * Encodings: scram_keys_t holds base64 throughout, and so does libgsasl
 * 2.x: the salt goes into the server-first message as is, and StoredKey and
 * ServerKey are base64-decoded by the SCRAM server (gsasl.h calls them
 * "Hex-encoded", but 2.2's lib/scram/server.c decodes them with
 * gsasl_base64_from, so hex would make every login fail; the full
 * exchanges in test_sasl cover it).
 * Channel binding data go to gsasl in base64 too.
 *
 * An unknown user is not told apart from a wrong password: the server
 * answers with a salt derived from the name and a per-process secret and
 * with random keys, so the exchange runs to the end and fails there (RFC
 * 5802 §5.1 allows either; this one does not leak which names exist).
 *
 * Key derivation (RFC 5802 §3) uses GnuTLS directly: PBKDF2, HMAC, hash.
 * PBKDF2 costs milliseconds; callers that care run scram_keys_make and PLAIN
 * steps on the thread pool. */
#include "sasl.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gsasl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "log.h"

#define MAX_HASH_LEN 32
#define SALT_LEN 16
#define FAKE_ITERATIONS 4096

struct sasl {
    Gsasl_session *session;
    bool is_server;
    bool is_finished; /* DONE or FAILED: further steps fail */
    const char *hash; /* "SHA-1" or "SHA-256" (SCRAM), NULL for PLAIN */
    sasl_lookup_fn lookup;
    void *ud;
    bool has_keys; /* the lookup ran; keys is real or fake */
    scram_keys_t keys;
    char *cb_type;  /* "tls-unique" / "tls-exporter", or NULL */
    char *cb_b64;   /* its data in base64 */
    char *authcid;  /* client: ours; server: the peer's, after SASL_DONE */
    char *password; /* client only */
    char *salted;   /* client only: a cached SaltedPassword, hex */
};

static Gsasl *gsasl_ctx;
static unsigned char fake_secret[32];

static const char *const mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                                    "SCRAM-SHA-256-PLUS", "PLAIN"};

/* ---- small helpers -------------------------------------------------------- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) log_fatal("out of memory");
    return d;
}

static int hash_params(const char *hash, gnutls_mac_algorithm_t *mac,
                       gnutls_digest_algorithm_t *dig, size_t *len)
{
    if (!hash) return -1;
    if (strcmp(hash, "SHA-1") == 0) {
        *mac = GNUTLS_MAC_SHA1;
        *dig = GNUTLS_DIG_SHA1;
        *len = 20;
        return 0;
    }
    if (strcmp(hash, "SHA-256") == 0) {
        *mac = GNUTLS_MAC_SHA256;
        *dig = GNUTLS_DIG_SHA256;
        *len = 32;
        return 0;
    }
    return -1;
}

/* base64 of len bytes into out (size outsize, NUL-terminated); -1 if it
 * does not fit. */
static int b64_encode(const void *data, size_t len, char *out, size_t outsize)
{
    char *enc = NULL;
    size_t enclen = 0;
    if (gsasl_base64_to(data, len, &enc, &enclen) != GSASL_OK) log_fatal("out of memory");
    int rc = -1;
    if (enclen < outsize) {
        memcpy(out, enc, enclen + 1);
        rc = 0;
    }
    gsasl_free(enc);
    return rc;
}

/* Decode base64 into out (at most outsize bytes); the decoded length, or -1
 * if b64 is not valid base64 or too long. */
static ssize_t b64_decode(const char *b64, unsigned char *out, size_t outsize)
{
    char *dec = NULL;
    size_t declen = 0;
    if (!b64 || gsasl_base64_from(b64, strlen(b64), &dec, &declen) != GSASL_OK) return -1;
    ssize_t rc = -1;
    if (declen <= outsize) {
        memcpy(out, dec, declen);
        rc = (ssize_t)declen;
    }
    gsasl_free(dec);
    return rc;
}

static bool equal_constant_time(const unsigned char *a, const unsigned char *b, size_t len)
{
    unsigned char diff = 0;
    for (size_t i = 0; i < len; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

/* SaltedPassword = Hi(password, salt, i) per RFC 5802 §3, from a
 * SASLprepped password; salted gets the hash's length in bytes. */
static int salt_password(const char *hash, const char *prepped, const unsigned char *salt,
                         size_t saltlen, unsigned iterations, unsigned char *salted)
{
    gnutls_mac_algorithm_t mac;
    gnutls_digest_algorithm_t dig;
    size_t hlen;
    if (hash_params(hash, &mac, &dig, &hlen) < 0) return -1;
    gnutls_datum_t key = {(unsigned char *)prepped, (unsigned)strlen(prepped)};
    gnutls_datum_t salt_datum = {(unsigned char *)salt, (unsigned)saltlen};
    return gnutls_pbkdf2(mac, &key, &salt_datum, iterations, salted, hlen) < 0 ? -1 : 0;
}

/* SaltedPassword, ClientKey... per RFC 5802 §3, from a SASLprepped
 * password. stored_key and server_key get hlen bytes each. */
static int derive(const char *hash, const char *prepped, const unsigned char *salt, size_t saltlen,
                  unsigned iterations, unsigned char *stored_key, unsigned char *server_key)
{
    gnutls_mac_algorithm_t mac;
    gnutls_digest_algorithm_t dig;
    size_t hlen;
    if (hash_params(hash, &mac, &dig, &hlen) < 0) return -1;
    unsigned char salted[MAX_HASH_LEN], client_key[MAX_HASH_LEN];
    int rc = -1;
    if (salt_password(hash, prepped, salt, saltlen, iterations, salted) < 0) goto out;
    if (gnutls_hmac_fast(mac, salted, hlen, "Client Key", 10, client_key) < 0) goto out;
    if (gnutls_hash_fast(dig, client_key, hlen, stored_key) < 0) goto out;
    if (gnutls_hmac_fast(mac, salted, hlen, "Server Key", 10, server_key) < 0) goto out;
    rc = 0;
out:
    gnutls_memset(salted, 0, sizeof salted);
    gnutls_memset(client_key, 0, sizeof client_key);
    return rc;
}

/* RFC 4013 SASLprep, for stored strings: unassigned code points, prohibited
 * characters, invalid UTF-8 and a result that is empty all fail. */
static char *saslprep(const char *password)
{
    char *out = NULL;
    if (!password || gsasl_saslprep(password, 0, &out, NULL) != GSASL_OK) return NULL;
    if (!*out) {
        gsasl_free(out);
        return NULL;
    }
    return out;
}

static void free_prepped(char *p)
{
    gnutls_memset(p, 0, strlen(p));
    gsasl_free(p);
}

/* ---- keys ------------------------------------------------------------------ */

/* Invalid: an unknown hash, iterations 0, a salt that is not base64 or does
 * not fit scram_keys_t, and a password SASLprep rejects (prohibited or
 * unassigned code points, bad UTF-8, empty after preparation). */
int scram_keys_make(const char *hash, const char *password, const char *salt_b64,
                    unsigned iterations, scram_keys_t *out)
{
    gnutls_mac_algorithm_t mac;
    gnutls_digest_algorithm_t dig;
    size_t hlen;
    if (hash_params(hash, &mac, &dig, &hlen) < 0 || iterations == 0 || !out) return -1;

    unsigned char salt[64];
    ssize_t saltlen;
    scram_keys_t k;
    memset(&k, 0, sizeof k);
    if (salt_b64) {
        saltlen = b64_decode(salt_b64, salt, sizeof salt);
        if (saltlen <= 0 || strlen(salt_b64) >= sizeof k.salt) return -1;
        memcpy(k.salt, salt_b64, strlen(salt_b64) + 1);
    } else {
        saltlen = SALT_LEN;
        if (gnutls_rnd(GNUTLS_RND_NONCE, salt, SALT_LEN) < 0) return -1;
        b64_encode(salt, SALT_LEN, k.salt, sizeof k.salt);
    }

    char *prepped = saslprep(password);
    if (!prepped) return -1;
    unsigned char stored[MAX_HASH_LEN], server[MAX_HASH_LEN];
    int rc = derive(hash, prepped, salt, (size_t)saltlen, iterations, stored, server);
    free_prepped(prepped);
    if (rc < 0) return -1;
    k.iterations = iterations;
    b64_encode(stored, hlen, k.stored_key, sizeof k.stored_key);
    b64_encode(server, hlen, k.server_key, sizeof k.server_key);
    *out = k;
    return 0;
}

bool scram_keys_match(const char *hash, const scram_keys_t *keys, const char *password)
{
    gnutls_mac_algorithm_t mac;
    gnutls_digest_algorithm_t dig;
    size_t hlen;
    if (!keys || hash_params(hash, &mac, &dig, &hlen) < 0 || keys->iterations == 0) return false;
    unsigned char salt[64], want[MAX_HASH_LEN + 4];
    ssize_t saltlen = b64_decode(keys->salt, salt, sizeof salt);
    if (saltlen <= 0 || b64_decode(keys->stored_key, want, sizeof want) != (ssize_t)hlen)
        return false;
    char *prepped = saslprep(password);
    if (!prepped) return false;
    unsigned char stored[MAX_HASH_LEN], server[MAX_HASH_LEN];
    int rc = derive(hash, prepped, salt, (size_t)saltlen, keys->iterations, stored, server);
    free_prepped(prepped);
    return rc == 0 && equal_constant_time(stored, want, hlen);
}

/* Keys for a user that does not exist: the same salt every time for one
 * name (so probing twice shows nothing), keys nobody can match. */
static void make_fake_keys(const char *hash, const char *authcid, scram_keys_t *out)
{
    static bool has_secret;
    if (!has_secret) {
        if (gnutls_rnd(GNUTLS_RND_RANDOM, fake_secret, sizeof fake_secret) < 0)
            log_fatal("no random numbers");
        has_secret = true;
    }
    gnutls_mac_algorithm_t mac;
    gnutls_digest_algorithm_t dig;
    size_t hlen = 32;
    if (hash_params(hash, &mac, &dig, &hlen) < 0) hlen = 32;
    unsigned char digest[32], key[MAX_HASH_LEN];
    char input[1100];
    int n = snprintf(input, sizeof input, "%s\n%s", hash ? hash : "", authcid ? authcid : "");
    if (n < 0 || (size_t)n >= sizeof input) n = (int)sizeof input - 1;
    gnutls_hmac_fast(GNUTLS_MAC_SHA256, fake_secret, sizeof fake_secret, input, (size_t)n, digest);
    memset(out, 0, sizeof *out);
    b64_encode(digest, SALT_LEN, out->salt, sizeof out->salt);
    out->iterations = FAKE_ITERATIONS;
    gnutls_rnd(GNUTLS_RND_NONCE, key, hlen);
    b64_encode(key, hlen, out->stored_key, sizeof out->stored_key);
    gnutls_rnd(GNUTLS_RND_NONCE, key, hlen);
    b64_encode(key, hlen, out->server_key, sizeof out->server_key);
}

/* Keys whose fields decode to the right sizes; anything else is treated as
 * an unknown user rather than handed to gsasl. */
static bool keys_are_valid(const char *hash, const scram_keys_t *k)
{
    gnutls_mac_algorithm_t mac;
    gnutls_digest_algorithm_t dig;
    size_t hlen;
    unsigned char tmp[64];
    if (hash_params(hash, &mac, &dig, &hlen) < 0 || k->iterations == 0) return false;
    if (!memchr(k->salt, 0, sizeof k->salt) || !memchr(k->stored_key, 0, sizeof k->stored_key) ||
        !memchr(k->server_key, 0, sizeof k->server_key))
        return false;
    return b64_decode(k->salt, tmp, sizeof tmp) > 0 &&
           b64_decode(k->stored_key, tmp, sizeof tmp) == (ssize_t)hlen &&
           b64_decode(k->server_key, tmp, sizeof tmp) == (ssize_t)hlen;
}

/* The lookup, once per exchange: real keys, or fake ones for an unknown
 * user. */
static const scram_keys_t *server_keys(sasl_t *s, Gsasl_session *sctx)
{
    if (s->has_keys) return &s->keys;
    const char *authcid = gsasl_property_fast(sctx, GSASL_AUTHID);
    bool found = authcid && s->lookup && s->lookup(s->ud, authcid, s->hash, &s->keys) == 0 &&
                 keys_are_valid(s->hash, &s->keys);
    if (!found) make_fake_keys(s->hash, authcid, &s->keys);
    s->has_keys = true;
    return &s->keys;
}

/* PLAIN: derive from the offered password, SHA-256 keys first. An unknown
 * user costs the same derivation as a known one. */
static int validate_plain(sasl_t *s, Gsasl_session *sctx)
{
    const char *authcid = gsasl_property_fast(sctx, GSASL_AUTHID);
    const char *password = gsasl_property_fast(sctx, GSASL_PASSWORD);
    if (!authcid || !password) return GSASL_AUTHENTICATION_ERROR;
    static const char *const hashes[] = {"SHA-256", "SHA-1"};
    scram_keys_t k;
    for (size_t i = 0; i < 2; i++) {
        if (s->lookup && s->lookup(s->ud, authcid, hashes[i], &k) == 0 &&
            keys_are_valid(hashes[i], &k))
            return scram_keys_match(hashes[i], &k, password) ? GSASL_OK
                                                             : GSASL_AUTHENTICATION_ERROR;
    }
    make_fake_keys("SHA-256", authcid, &k);
    (void)scram_keys_match("SHA-256", &k, password);
    return GSASL_AUTHENTICATION_ERROR;
}

static int callback(Gsasl *ctx, Gsasl_session *sctx, Gsasl_property prop)
{
    sasl_t *s = gsasl_session_hook_get(sctx);
    if (!s) return GSASL_NO_CALLBACK;
    char num[16];
    switch (prop) {
    case GSASL_AUTHID:
        if (s->is_server || !s->authcid) return GSASL_NO_CALLBACK;
        return gsasl_property_set(sctx, prop, s->authcid);
    case GSASL_PASSWORD:
        if (s->is_server || !s->password) return GSASL_NO_CALLBACK;
        return gsasl_property_set(sctx, prop, s->password);
    case GSASL_SCRAM_SALTED_PASSWORD:
        if (s->is_server || !s->salted) return GSASL_NO_CALLBACK;
        return gsasl_property_set(sctx, prop, s->salted);
    case GSASL_CB_TLS_UNIQUE:
        if (!s->cb_type || strcmp(s->cb_type, "tls-unique") != 0) return GSASL_NO_CALLBACK;
        return gsasl_property_set(sctx, prop, s->cb_b64);
    case GSASL_CB_TLS_EXPORTER:
        if (!s->cb_type || strcmp(s->cb_type, "tls-exporter") != 0) return GSASL_NO_CALLBACK;
        return gsasl_property_set(sctx, prop, s->cb_b64);
    case GSASL_SCRAM_ITER:
        if (!s->is_server || !s->hash) return GSASL_NO_CALLBACK;
        snprintf(num, sizeof num, "%u", server_keys(s, sctx)->iterations);
        return gsasl_property_set(sctx, prop, num);
    case GSASL_SCRAM_SALT:
        if (!s->is_server || !s->hash) return GSASL_NO_CALLBACK;
        return gsasl_property_set(sctx, prop, server_keys(s, sctx)->salt);
    case GSASL_SCRAM_STOREDKEY:
        if (!s->is_server || !s->hash) return GSASL_NO_CALLBACK;
        return gsasl_property_set(sctx, prop, server_keys(s, sctx)->stored_key);
    case GSASL_SCRAM_SERVERKEY:
        if (!s->is_server || !s->hash) return GSASL_NO_CALLBACK;
        return gsasl_property_set(sctx, prop, server_keys(s, sctx)->server_key);
    case GSASL_VALIDATE_SIMPLE:
        if (!s->is_server) return GSASL_NO_CALLBACK;
        return validate_plain(s, sctx);
    default:
        return GSASL_NO_CALLBACK;
    }
}

static Gsasl *context(void)
{
    if (!gsasl_ctx) {
        int rc = gsasl_init(&gsasl_ctx);
        if (rc != GSASL_OK) log_fatal("gsasl_init: %s", gsasl_strerror(rc));
        gsasl_callback_set(gsasl_ctx, callback);
    }
    return gsasl_ctx;
}

/* ---- exchanges ------------------------------------------------------------- */

bool sasl_mech_supported(const char *mech)
{
    if (!mech) return false;
    for (size_t i = 0; i < sizeof mechs / sizeof mechs[0]; i++)
        if (strcmp(mech, mechs[i]) == 0) return true;
    return false;
}

static bool is_plus(const char *mech)
{
    size_t n = strlen(mech);
    return n > 5 && strcmp(mech + n - 5, "-PLUS") == 0;
}

/* Common set-up; NULL for an unknown mechanism, or a -PLUS one without a
 * usable channel binding. */
static sasl_t *sasl_new(const char *mech, bool is_server, const char *cb_type, const void *cb_data,
                        size_t cb_len)
{
    if (!sasl_mech_supported(mech)) return NULL;
    bool has_cb = cb_type && cb_data && cb_len > 0 &&
                  (strcmp(cb_type, "tls-unique") == 0 || strcmp(cb_type, "tls-exporter") == 0);
    if (is_plus(mech) && !has_cb) return NULL;

    sasl_t *s = calloc(1, sizeof *s);
    if (!s) log_fatal("out of memory");
    s->is_server = is_server;
    if (strncmp(mech, "SCRAM-", 6) == 0) s->hash = strstr(mech, "SHA-256") ? "SHA-256" : "SHA-1";
    /* A server hands its binding to gsasl for every SCRAM mechanism, so
     * that a client saying "y" (could bind, thinks we cannot) is refused as
     * a downgrade. A client binds only with -PLUS: libgsasl 2.2's client
     * fails outright when it has binding data for a plain SCRAM. */
    if (has_cb && (is_server || is_plus(mech))) {
        char *enc = NULL;
        size_t enclen = 0;
        if (gsasl_base64_to(cb_data, cb_len, &enc, &enclen) != GSASL_OK) log_fatal("out of memory");
        s->cb_b64 = xstrdup(enc);
        gsasl_free(enc);
        s->cb_type = xstrdup(cb_type);
    }
    int rc = is_server ? gsasl_server_start(context(), mech, &s->session)
                       : gsasl_client_start(context(), mech, &s->session);
    if (rc != GSASL_OK) {
        log_warn("sasl: cannot start %s: %s", mech, gsasl_strerror(rc));
        sasl_free(s);
        return NULL;
    }
    gsasl_session_hook_set(s->session, s);
    return s;
}

sasl_t *sasl_server_new(const char *mech, sasl_lookup_fn lookup, void *ud, const char *cb_type,
                        const void *cb_data, size_t cb_len)
{
    sasl_t *s = sasl_new(mech, true, cb_type, cb_data, cb_len);
    if (s) {
        s->lookup = lookup;
        s->ud = ud;
    }
    return s;
}

sasl_t *sasl_client_new(const char *mech, const char *authcid, const char *password,
                        const char *cb_type, const void *cb_data, size_t cb_len)
{
    if (!authcid || !password) return NULL;
    sasl_t *s = sasl_new(mech, false, cb_type, cb_data, cb_len);
    if (s) {
        s->authcid = xstrdup(authcid);
        s->password = xstrdup(password);
    }
    return s;
}

sasl_t *sasl_client_new_salted(const char *mech, const char *authcid, const char *salted_hex)
{
    if (!authcid || !salted_hex || strncmp(mech, "SCRAM-", 6) != 0) return NULL;
    sasl_t *s = sasl_new(mech, false, NULL, NULL, 0);
    if (s) {
        s->authcid = xstrdup(authcid);
        s->salted = xstrdup(salted_hex);
    }
    return s;
}

int scram_salted_password(const char *hash, const char *password, const char *salt_b64,
                          unsigned iterations, char *hex, size_t hexlen)
{
    gnutls_mac_algorithm_t mac;
    gnutls_digest_algorithm_t dig;
    size_t hlen;
    unsigned char salt[64], salted[MAX_HASH_LEN];
    if (hash_params(hash, &mac, &dig, &hlen) < 0 || hexlen < 2 * hlen + 1 || !salt_b64)
        return -1;
    ssize_t saltlen = b64_decode(salt_b64, salt, sizeof salt);
    char *prepped = saslprep(password);
    int rc = -1;
    if (saltlen > 0 && prepped &&
        salt_password(hash, prepped, salt, (size_t)saltlen, iterations, salted) == 0) {
        for (size_t i = 0; i < hlen; i++) snprintf(hex + 2 * i, 3, "%02x", salted[i]);
        rc = 0;
    }
    if (prepped) free_prepped(prepped);
    gnutls_memset(salted, 0, sizeof salted);
    return rc;
}

void sasl_free(sasl_t *s)
{
    if (!s) return;
    if (s->salted) {
        gnutls_memset(s->salted, 0, strlen(s->salted));
        free(s->salted);
    }
    if (s->session) gsasl_finish(s->session);
    if (s->password) {
        gnutls_memset(s->password, 0, strlen(s->password));
        free(s->password);
    }
    gnutls_memset(&s->keys, 0, sizeof s->keys);
    free(s->authcid);
    free(s->cb_type);
    free(s->cb_b64);
    free(s);
}

static sasl_result_t result_of(int rc)
{
    switch (rc) {
    case GSASL_OK:
        return SASL_DONE;
    case GSASL_NEEDS_MORE:
        return SASL_CONTINUE;
    case GSASL_BASE64_ERROR:
    case GSASL_MECHANISM_PARSE_ERROR:
    case GSASL_MECHANISM_CALLED_TOO_MANY_TIMES:
        return SASL_MALFORMED;
    default:
        return SASL_FAILED;
    }
}

/* "=" is XMPP's empty initial response (RFC 6120 §6.4.2); to gsasl it is
 * the same as no data. */
sasl_result_t sasl_step(sasl_t *s, const char *in_b64, char **out_b64)
{
    if (out_b64) *out_b64 = NULL;
    if (!s || !out_b64) return SASL_FAILED;
    if (s->is_finished) return SASL_FAILED;
    if (!in_b64 || strcmp(in_b64, "=") == 0) in_b64 = "";

    char *out = NULL;
    int rc = gsasl_step64(s->session, in_b64, &out);
    sasl_result_t res = result_of(rc);
    if (res == SASL_DONE || res == SASL_CONTINUE) {
        *out_b64 = xstrdup(out ? out : "");
    } else {
        log_debug("sasl: %s: %s", gsasl_mechanism_name(s->session), gsasl_strerror(rc));
    }
    if (out) gsasl_free(out);
    if (res == SASL_DONE && s->is_server) {
        const char *authcid = gsasl_property_fast(s->session, GSASL_AUTHID);
        if (authcid) {
            s->authcid = xstrdup(authcid);
        } else {
            free(*out_b64);
            *out_b64 = NULL;
            res = SASL_FAILED;
        }
    }
    if (res != SASL_CONTINUE) s->is_finished = true;
    return res;
}

const char *sasl_authcid(const sasl_t *s)
{
    if (!s || (s->is_server && !s->is_finished)) return NULL;
    return s->authcid;
}
