/* test_sasl.c — sasl.h: SCRAM key derivation against the RFC examples, and
 * whole client<->server exchanges for every mechanism, through libgsasl on
 * both sides. */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gsasl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"
#include "tap.h"

/* ---- helpers -------------------------------------------------------------- */

static size_t b64_decode(const char *b64, unsigned char *out, size_t outsize)
{
    char *dec = NULL;
    size_t len = 0;
    if (gsasl_base64_from(b64, strlen(b64), &dec, &len) != GSASL_OK || len > outsize) {
        gsasl_free(dec);
        return 0;
    }
    memcpy(out, dec, len);
    gsasl_free(dec);
    return len;
}

static void b64_encode(const unsigned char *data, size_t len, char *out, size_t outsize)
{
    char *enc = NULL;
    size_t n = 0;
    gsasl_base64_to((const char *)data, len, &enc, &n);
    snprintf(out, outsize, "%s", enc ? enc : "");
    gsasl_free(enc);
}

/* RFC 5802 §3, computed here with GnuTLS's primitives, independently of
 * sasl.c. */
static void expected_keys(gnutls_mac_algorithm_t mac, gnutls_digest_algorithm_t dig, size_t hlen,
                          const char *password, const char *salt_b64, unsigned iterations,
                          char *stored_b64, char *server_b64)
{
    unsigned char salt[64], salted[32], client_key[32], stored[32], server[32];
    size_t saltlen = b64_decode(salt_b64, salt, sizeof salt);
    gnutls_datum_t key = {(unsigned char *)password, (unsigned)strlen(password)};
    gnutls_datum_t s = {salt, (unsigned)saltlen};
    gnutls_pbkdf2(mac, &key, &s, iterations, salted, hlen);
    gnutls_hmac_fast(mac, salted, hlen, "Client Key", 10, client_key);
    gnutls_hash_fast(dig, client_key, hlen, stored);
    gnutls_hmac_fast(mac, salted, hlen, "Server Key", 10, server);
    b64_encode(stored, hlen, stored_b64, 64);
    b64_encode(server, hlen, server_b64, 64);
}

/* Check keys against an RFC example's own messages: the server signature
 * it shows must be HMAC(ServerKey, AuthMessage), and the client proof XOR
 * HMAC(StoredKey, AuthMessage) must be a ClientKey whose hash is StoredKey. */
static void check_against_transcript(const char *name, gnutls_mac_algorithm_t mac,
                                     gnutls_digest_algorithm_t dig, size_t hlen,
                                     const scram_keys_t *k, const char *auth_message,
                                     const char *proof_b64, const char *signature_b64)
{
    unsigned char server_key[32], stored_key[32], proof[32], signature[32], got[32];
    char msg[200];
    is_int(b64_decode(k->server_key, server_key, sizeof server_key), hlen,
           "ServerKey has the hash's length");
    is_int(b64_decode(k->stored_key, stored_key, sizeof stored_key), hlen,
           "StoredKey has the hash's length");
    b64_decode(proof_b64, proof, sizeof proof);
    b64_decode(signature_b64, signature, sizeof signature);

    gnutls_hmac_fast(mac, server_key, hlen, auth_message, strlen(auth_message), got);
    char got_b64[64];
    b64_encode(got, hlen, got_b64, sizeof got_b64);
    snprintf(msg, sizeof msg, "%s: ServerSignature from our ServerKey matches the RFC's v=", name);
    is_str(got_b64, signature_b64, msg);

    unsigned char client_signature[32], client_key[32], stored_again[32];
    gnutls_hmac_fast(mac, stored_key, hlen, auth_message, strlen(auth_message), client_signature);
    for (size_t i = 0; i < hlen; i++)
        client_key[i] = proof[i] ^ client_signature[i];
    gnutls_hash_fast(dig, client_key, hlen, stored_again);
    char a[64], b[64];
    b64_encode(stored_again, hlen, a, sizeof a);
    b64_encode(stored_key, hlen, b, sizeof b);
    snprintf(msg, sizeof msg, "%s: the RFC's client proof verifies against our StoredKey", name);
    is_str(a, b, msg);
}

/* A user database of one or two accounts. */
typedef struct user {
    const char *name;
    bool has_sha1, has_sha256;
    scram_keys_t sha1, sha256;
} user_t;

static user_t users[4];
static int nusers;
static int lookups;

static void add_user(const char *name, const char *password, bool sha1, bool sha256)
{
    user_t *u = &users[nusers++];
    memset(u, 0, sizeof *u);
    u->name = name;
    u->has_sha1 = sha1;
    u->has_sha256 = sha256;
    if (sha1 && scram_keys_make("SHA-1", password, NULL, 4096, &u->sha1) < 0) abort();
    if (sha256 && scram_keys_make("SHA-256", password, NULL, 4096, &u->sha256) < 0) abort();
}

static int lookup(void *ud, const char *authcid, const char *hash, scram_keys_t *out)
{
    lookups++;
    for (int i = 0; i < nusers; i++) {
        if (strcmp(users[i].name, authcid) != 0) continue;
        if (strcmp(hash, "SHA-1") == 0 && users[i].has_sha1) {
            *out = users[i].sha1;
            return 0;
        }
        if (strcmp(hash, "SHA-256") == 0 && users[i].has_sha256) {
            *out = users[i].sha256;
            return 0;
        }
        return -1;
    }
    return -1;
}

typedef struct exchange {
    sasl_result_t server, client; /* last results */
    char authcid[64];
    int rounds;
} exchange_t;

static exchange_t run_between(sasl_t *srv, sasl_t *cli);

/* Run a whole exchange: the client speaks first (initial response), then
 * server and client alternate until one finishes or fails. */
static exchange_t run(const char *mech, const char *authcid, const char *password,
                      const char *server_cb_type, const char *server_cb, const char *client_cb_type,
                      const char *client_cb)
{
    sasl_t *srv = sasl_server_new(mech, lookup, NULL, server_cb_type, server_cb,
                                  server_cb ? strlen(server_cb) : 0);
    sasl_t *cli = sasl_client_new(mech, authcid, password, client_cb_type, client_cb,
                                  client_cb ? strlen(client_cb) : 0);
    return run_between(srv, cli);
}

/* The same between a given server and client (both freed). */
static exchange_t run_between(sasl_t *srv, sasl_t *cli)
{
    exchange_t x = {SASL_FAILED, SASL_FAILED, "", 0};
    if (!srv || !cli) {
        sasl_free(srv);
        sasl_free(cli);
        x.server = x.client = SASL_MALFORMED;
        return x;
    }
    char *c_out = NULL, *s_out = NULL;
    x.client = sasl_step(cli, "", &c_out);
    while (x.client >= 0 && x.rounds < 10) {
        x.rounds++;
        x.server = sasl_step(srv, c_out, &s_out);
        free(c_out);
        c_out = NULL;
        if (x.server < 0) break;
        if (x.server == SASL_DONE) {
            if (sasl_authcid(srv)) snprintf(x.authcid, sizeof x.authcid, "%s", sasl_authcid(srv));
            /* The client checks the server's final data (SCRAM's v=). */
            if (x.client == SASL_CONTINUE) x.client = sasl_step(cli, s_out, &c_out);
            break;
        }
        x.client = sasl_step(cli, s_out, &c_out);
        free(s_out);
        s_out = NULL;
    }
    free(c_out);
    free(s_out);
    sasl_free(srv);
    sasl_free(cli);
    return x;
}

/* ---- tests ------------------------------------------------------------------ */

static void rfc5802_sha1_example_keys(void)
{
    scram_keys_t k;
    is_int(scram_keys_make("SHA-1", "pencil", "QSXCR+Q6sek8bf92", 4096, &k), 0,
           "RFC 5802: scram_keys_make succeeds");
    is_str(k.salt, "QSXCR+Q6sek8bf92", "RFC 5802: salt kept as given");
    is_int(k.iterations, 4096, "RFC 5802: iterations kept");
    char stored[64], server[64];
    expected_keys(GNUTLS_MAC_SHA1, GNUTLS_DIG_SHA1, 20, "pencil", "QSXCR+Q6sek8bf92", 4096, stored,
                  server);
    is_str(k.stored_key, stored, "RFC 5802: StoredKey equals an independent derivation");
    is_str(k.server_key, server, "RFC 5802: ServerKey equals an independent derivation");
    check_against_transcript(
        "RFC 5802", GNUTLS_MAC_SHA1, GNUTLS_DIG_SHA1, 20, &k,
        "n=user,r=fyko+d2lbbFgONRv9qkxdawL,"
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,"
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
        "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    ok(scram_keys_match("SHA-1", &k, "pencil"), "RFC 5802: 'pencil' matches its keys");
    ok(!scram_keys_match("SHA-1", &k, "pencil "), "RFC 5802: 'pencil ' does not match");
    ok(!scram_keys_match("SHA-256", &k, "pencil"), "RFC 5802: SHA-1 keys do not match as SHA-256");
}

static void rfc7677_sha256_example_keys(void)
{
    scram_keys_t k;
    is_int(scram_keys_make("SHA-256", "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096, &k), 0,
           "RFC 7677: scram_keys_make succeeds");
    char stored[64], server[64];
    expected_keys(GNUTLS_MAC_SHA256, GNUTLS_DIG_SHA256, 32, "pencil",
                  "W22ZaJ0SNY7soEsUEjb6gQ==", 4096, stored, server);
    is_str(k.stored_key, stored, "RFC 7677: StoredKey equals an independent derivation");
    is_str(k.server_key, server, "RFC 7677: ServerKey equals an independent derivation");
    check_against_transcript(
        "RFC 7677", GNUTLS_MAC_SHA256, GNUTLS_DIG_SHA256, 32, &k,
        "n=user,r=rOprNGfwEbeRWgbNEkqO,"
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    ok(scram_keys_match("SHA-256", &k, "pencil"), "RFC 7677: 'pencil' matches its keys");
    ok(!scram_keys_match("SHA-256", &k, "Pencil"), "RFC 7677: 'Pencil' does not match");
}

static void keys_with_random_salt(void)
{
    scram_keys_t a, b;
    is_int(scram_keys_make("SHA-256", "secret", NULL, 4096, &a), 0, "random salt: made");
    is_int(scram_keys_make("SHA-256", "secret", NULL, 4096, &b), 0, "random salt: made again");
    unsigned char salt[64];
    is_int(b64_decode(a.salt, salt, sizeof salt), 16, "random salt: 16 bytes");
    ok(strcmp(a.salt, b.salt) != 0, "random salt: two salts differ");
    ok(strcmp(a.stored_key, b.stored_key) != 0, "random salt: so do the keys");
    ok(scram_keys_match("SHA-256", &a, "secret"), "random salt: password matches");
}

static void keys_bad_arguments(void)
{
    scram_keys_t k;
    is_int(scram_keys_make("MD5", "pencil", NULL, 4096, &k), -1, "unknown hash refused");
    is_int(scram_keys_make(NULL, "pencil", NULL, 4096, &k), -1, "NULL hash refused");
    is_int(scram_keys_make("SHA-1", "pencil", NULL, 0, &k), -1, "zero iterations refused");
    is_int(scram_keys_make("SHA-1", "pencil", "not base64!", 4096, &k), -1, "bad salt refused");
    is_int(scram_keys_make("SHA-1", NULL, NULL, 4096, &k), -1, "NULL password refused");
    is_int(scram_keys_make("SHA-1", "", NULL, 4096, &k), -1, "empty password refused");
    is_int(scram_keys_make("SHA-1", "bell\x07", NULL, 4096, &k), -1,
           "password with a control character (SASLprep-prohibited) refused");
    is_int(scram_keys_make("SHA-1", "\xff\xfe", NULL, 4096, &k), -1,
           "password that is not UTF-8 refused");
    is_int(scram_keys_make("SHA-1", "\xc2\xad", NULL, 4096, &k), -1,
           "password SASLprep maps to nothing refused");
    scram_keys_t bad = {"!!", 4096, "x", "y"};
    ok(!scram_keys_match("SHA-1", &bad, "pencil"), "keys with a bad salt never match");
}

static void keys_are_saslprepped(void)
{
    scram_keys_t a, b;
    /* RFC 4013 §3: "I<U+00AD>X" prepares to "IX". */
    scram_keys_make("SHA-256", "I\xc2\xadX", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096, &a);
    scram_keys_make("SHA-256", "IX", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096, &b);
    is_str(a.stored_key, b.stored_key, "SASLprep: soft hyphen dropped before derivation");
    ok(scram_keys_match("SHA-256", &b, "I\xc2\xadX"), "SASLprep: match prepares the offer too");
}

static void mechanisms_supported(void)
{
    const char *yes[] = {"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
                         "PLAIN"};
    for (size_t i = 0; i < 5; i++)
        ok(sasl_mech_supported(yes[i]), "%s supported", yes[i]);
    ok(!sasl_mech_supported("DIGEST-MD5"), "DIGEST-MD5 not supported");
    ok(!sasl_mech_supported("scram-sha-1"), "mechanism names are case-sensitive");
    ok(!sasl_mech_supported(""), "empty name not supported");
    ok(!sasl_mech_supported(NULL), "NULL not supported");
    ok(sasl_server_new("DIGEST-MD5", lookup, NULL, NULL, NULL, 0) == NULL,
       "server for an unsupported mechanism is NULL");
    ok(sasl_server_new("SCRAM-SHA-256-PLUS", lookup, NULL, NULL, NULL, 0) == NULL,
       "-PLUS server without channel binding is NULL");
    ok(sasl_client_new("SCRAM-SHA-1-PLUS", "user", "pencil", NULL, NULL, 0) == NULL,
       "-PLUS client without channel binding is NULL");
    ok(sasl_server_new("SCRAM-SHA-1-PLUS", lookup, NULL, "tls-bogus", "x", 1) == NULL,
       "-PLUS server with an unknown binding type is NULL");
}

static void full_exchanges(void)
{
    static const char *const plain_mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"};
    for (size_t i = 0; i < 3; i++) {
        exchange_t x = run(plain_mechs[i], "user", "pencil", NULL, NULL, NULL, NULL);
        char name[120];
        snprintf(name, sizeof name, "%s: server done", plain_mechs[i]);
        is_int(x.server, SASL_DONE, name);
        snprintf(name, sizeof name, "%s: client done (server verified)", plain_mechs[i]);
        is_int(x.client, SASL_DONE, name);
        snprintf(name, sizeof name, "%s: authcid", plain_mechs[i]);
        is_str(x.authcid, "user", name);
    }
    static const char *const plus_mechs[] = {"SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"};
    static const char *const types[] = {"tls-exporter", "tls-unique"};
    for (size_t i = 0; i < 2; i++) {
        for (size_t t = 0; t < 2; t++) {
            exchange_t x = run(plus_mechs[i], "user", "pencil", types[t], "binding-data", types[t],
                               "binding-data");
            char name[120];
            snprintf(name, sizeof name, "%s with %s: server done", plus_mechs[i], types[t]);
            is_int(x.server, SASL_DONE, name);
            snprintf(name, sizeof name, "%s with %s: client done", plus_mechs[i], types[t]);
            is_int(x.client, SASL_DONE, name);
            snprintf(name, sizeof name, "%s with %s: authcid", plus_mechs[i], types[t]);
            is_str(x.authcid, "user", name);
        }
    }
}

static void wrong_password_fails(void)
{
    static const char *const all[] = {"SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN", "SCRAM-SHA-1-PLUS",
                                      "SCRAM-SHA-256-PLUS"};
    for (size_t i = 0; i < 5; i++) {
        bool plus = strstr(all[i], "PLUS") != NULL;
        exchange_t x = run(all[i], "user", "pen", plus ? "tls-exporter" : NULL, plus ? "cb" : NULL,
                           plus ? "tls-exporter" : NULL, plus ? "cb" : NULL);
        char name[120];
        snprintf(name, sizeof name, "%s: wrong password fails", all[i]);
        is_int(x.server, SASL_FAILED, name);
        snprintf(name, sizeof name, "%s: unknown user fails", all[i]);
        x = run(all[i], "nobody", "pencil", plus ? "tls-exporter" : NULL, plus ? "cb" : NULL,
                plus ? "tls-exporter" : NULL, plus ? "cb" : NULL);
        is_int(x.server, SASL_FAILED, name);
    }
}

static void unknown_user_looks_like_a_known_one(void)
{
    /* The server-first message for a name that does not exist carries a
     * salt and iteration count like a real one, the same salt each time. */
    char *first = NULL, *out1 = NULL, *out2 = NULL;
    sasl_t *cli = sasl_client_new("SCRAM-SHA-256", "nobody", "x", NULL, NULL, 0);
    sasl_step(cli, "", &first);
    sasl_t *s1 = sasl_server_new("SCRAM-SHA-256", lookup, NULL, NULL, NULL, 0);
    sasl_t *s2 = sasl_server_new("SCRAM-SHA-256", lookup, NULL, NULL, NULL, 0);
    is_int(sasl_step(s1, first, &out1), SASL_CONTINUE, "unknown user: server continues");
    is_int(sasl_step(s2, first, &out2), SASL_CONTINUE, "unknown user: again");
    char d1[256] = "", d2[256] = "";
    b64_decode(out1 ? out1 : "", (unsigned char *)d1, sizeof d1 - 1);
    b64_decode(out2 ? out2 : "", (unsigned char *)d2, sizeof d2 - 1);
    const char *salt1 = strstr(d1, ",s="), *salt2 = strstr(d2, ",s=");
    ok(salt1 && salt2 && strcmp(salt1, salt2) == 0, "unknown user: same salt and count twice");
    ok(strstr(d1, ",i=4096") != NULL, "unknown user: an iteration count is offered");
    free(first);
    free(out1);
    free(out2);
    sasl_free(cli);
    sasl_free(s1);
    sasl_free(s2);
}

static void channel_binding_mismatch_fails(void)
{
    exchange_t x = run("SCRAM-SHA-256-PLUS", "user", "pencil", "tls-exporter", "server-side",
                       "tls-exporter", "client-side");
    is_int(x.server, SASL_FAILED, "-PLUS: different binding data fails");
    x = run("SCRAM-SHA-1-PLUS", "user", "pencil", "tls-unique", "same", "tls-exporter", "same");
    is_int(x.server, SASL_FAILED, "-PLUS: client's binding type unknown to the server fails");
}

static void downgrade_from_plus_detected(void)
{
    /* RFC 5802 §6: a client that could bind but believes the server cannot
     * says "y"; a server that can (it offered -PLUS) must refuse it. */
    char *out = NULL;
    const char *first = "eSwsbj11c2VyLHI9YWJjZGVmZ2hpams="; /* y,,n=user,r=abcdefghijk */
    sasl_t *s = sasl_server_new("SCRAM-SHA-256", lookup, NULL, "tls-exporter", "cb", 2);
    is_int(sasl_step(s, first, &out), SASL_FAILED, "'y' flag refused by a server that can bind");
    sasl_free(s);
    s = sasl_server_new("SCRAM-SHA-256", lookup, NULL, NULL, NULL, 0);
    is_int(sasl_step(s, first, &out), SASL_CONTINUE, "'y' flag accepted by a server that cannot");
    free(out);
    sasl_free(s);
    exchange_t x = run("SCRAM-SHA-256", "user", "pencil", NULL, NULL, "tls-exporter", "cb");
    is_int(x.server, SASL_DONE, "plain SCRAM client with binding data still logs in");
    x = run("SCRAM-SHA-1", "user", "pencil", "tls-unique", "cb", NULL, NULL);
    is_int(x.server, SASL_DONE, "plain SCRAM to a server that could bind: accepted ('n')");
}

static void plain_falls_back_to_sha1_keys(void)
{
    exchange_t x = run("PLAIN", "old", "oldpass", NULL, NULL, NULL, NULL);
    is_int(x.server, SASL_DONE, "PLAIN: a user with SHA-1 keys only logs in");
    x = run("PLAIN", "old", "newpass", NULL, NULL, NULL, NULL);
    is_int(x.server, SASL_FAILED, "PLAIN: ... and not with another password");
    x = run("SCRAM-SHA-256", "old", "oldpass", NULL, NULL, NULL, NULL);
    is_int(x.server, SASL_FAILED, "SCRAM-SHA-256: a user with SHA-1 keys only fails");
}

static void names_with_special_characters(void)
{
    exchange_t x = run("SCRAM-SHA-1", "a,b=c", "pw", NULL, NULL, NULL, NULL);
    is_int(x.server, SASL_DONE, "SCRAM: name with ',' and '=' logs in");
    is_str(x.authcid, "a,b=c", "SCRAM: authcid unescaped");
    x = run("SCRAM-SHA-256", "user",
            "pen\xc2\xad"
            "cil",
            NULL, NULL, NULL, NULL);
    is_int(x.server, SASL_DONE, "SCRAM: client SASLpreps the password like the keys");
}

static void malformed_input(void)
{
    static const char *const all[] = {"SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"};
    for (size_t i = 0; i < 3; i++) {
        char *out = NULL;
        char name[120];
        sasl_t *s = sasl_server_new(all[i], lookup, NULL, NULL, NULL, 0);
        snprintf(name, sizeof name, "%s: garbage base64 is malformed", all[i]);
        is_int(sasl_step(s, "!!!not*base64", &out), SASL_MALFORMED, name);
        ok(out == NULL, "%s: no output on failure", all[i]);
        snprintf(name, sizeof name, "%s: a step after failure fails", all[i]);
        is_int(sasl_step(s, "", &out), SASL_FAILED, name);
        sasl_free(s);

        /* "hello" is valid base64 but no SASL message. */
        s = sasl_server_new(all[i], lookup, NULL, NULL, NULL, 0);
        sasl_result_t r = sasl_step(s, "aGVsbG8=", &out);
        ok(r == SASL_MALFORMED || r == SASL_FAILED, "%s: nonsense message refused (%d)", all[i], r);
        free(out);
        out = NULL;
        sasl_free(s);

        /* Empty input: a challenge asking for the client's message, as
         * often as it comes, and never a crash. */
        s = sasl_server_new(all[i], lookup, NULL, NULL, NULL, 0);
        r = sasl_step(s, "", &out);
        snprintf(name, sizeof name, "%s: empty first message asks for more", all[i]);
        is_int(r, SASL_CONTINUE, name);
        is_str(out, "", "empty challenge");
        free(out);
        out = NULL;
        r = sasl_step(s, NULL, &out);
        snprintf(name, sizeof name, "%s: NULL input is empty input", all[i]);
        is_int(r, SASL_CONTINUE, name);
        free(out);
        out = NULL;
        sasl_free(s);
    }
    /* XMPP's "=" (empty initial response) is the same as none. */
    char *out = NULL;
    sasl_t *s = sasl_server_new("SCRAM-SHA-256", lookup, NULL, NULL, NULL, 0);
    is_int(sasl_step(s, "=", &out), SASL_CONTINUE, "'=' is an empty initial response");
    free(out);
    sasl_free(s);
    is_int(sasl_step(NULL, "", &out), SASL_FAILED, "NULL session fails");
    ok(sasl_authcid(NULL) == NULL, "no authcid for NULL");
    sasl_free(NULL);
}

static void authcid_only_after_success(void)
{
    char *c1 = NULL, *s1 = NULL;
    sasl_t *cli = sasl_client_new("SCRAM-SHA-1", "user", "pencil", NULL, NULL, 0);
    sasl_t *srv = sasl_server_new("SCRAM-SHA-1", lookup, NULL, NULL, NULL, 0);
    sasl_step(cli, "", &c1);
    sasl_step(srv, c1, &s1);
    ok(sasl_authcid(srv) == NULL, "no authcid in the middle of an exchange");
    free(c1);
    free(s1);
    sasl_free(cli);
    sasl_free(srv);
}

static void lookup_runs_once_per_exchange(void)
{
    lookups = 0;
    run("SCRAM-SHA-256", "user", "pencil", NULL, NULL, NULL, NULL);
    is_int(lookups, 1, "SCRAM: the keys are looked up once");
}

static void salted_password_client(void)
{
    char hex[2 * 32 + 1], wrong[2 * 32 + 1];
    const scram_keys_t *k = &users[0].sha256;
    ok(scram_salted_password("SHA-256", "pencil", k->salt, k->iterations, hex, sizeof hex) == 0,
       "SaltedPassword computed for the server's salt");
    is_int(strlen(hex), 64, "SaltedPassword is 32 bytes of hex for SHA-256");
    exchange_t x = run_between(sasl_server_new("SCRAM-SHA-256", lookup, NULL, NULL, NULL, 0),
                               sasl_client_new_salted("SCRAM-SHA-256", "user", hex));
    is_int(x.server, SASL_DONE, "a client with the cached SaltedPassword logs in");
    is_int(x.client, SASL_DONE, "and verifies the server's signature");
    scram_salted_password("SHA-256", "not-pencil", k->salt, k->iterations, wrong, sizeof wrong);
    x = run_between(sasl_server_new("SCRAM-SHA-256", lookup, NULL, NULL, NULL, 0),
                    sasl_client_new_salted("SCRAM-SHA-256", "user", wrong));
    is_int(x.server, SASL_FAILED, "a wrong cached SaltedPassword is refused");
    ok(sasl_client_new_salted("PLAIN", "user", hex) == NULL, "PLAIN has no SaltedPassword");
    ok(scram_salted_password("SHA-256", "pencil", k->salt, k->iterations, hex, 10) < 0,
       "a too small buffer is refused");
}

int main(void)
{
    add_user("user", "pencil", true, true);
    add_user("old", "oldpass", true, false);
    add_user("a,b=c", "pw", true, true);

    rfc5802_sha1_example_keys();
    rfc7677_sha256_example_keys();
    keys_with_random_salt();
    keys_bad_arguments();
    keys_are_saslprepped();
    mechanisms_supported();
    full_exchanges();
    wrong_password_fails();
    unknown_user_looks_like_a_known_one();
    channel_binding_mismatch_fails();
    downgrade_from_plus_detected();
    plain_falls_back_to_sha1_keys();
    names_with_special_characters();
    malformed_input();
    authcid_only_after_success();
    lookup_runs_once_per_exchange();
    salted_password_client();
    return done_testing();
}
