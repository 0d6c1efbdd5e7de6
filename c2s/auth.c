/* auth.c — SASL for clients (RFC 6120 §6): SCRAM-SHA-256-PLUS and
 * SCRAM-SHA-1-PLUS (channel binding tls-exporter on TLS 1.3, tls-unique on
 * TLS 1.2, advertised with XEP-0440), SCRAM-SHA-256, SCRAM-SHA-1, and
 * PLAIN inside TLS.
 *
 * common/sasl.c runs the exchanges, but its key lookup is synchronous, so
 * this file first reads the user name from the client's first message
 * itself (SCRAM "n,,n=user,r=..." / PLAIN "authzid\0user\0password"),
 * fetches that user's keys from the `auth` table with storage_query, and
 * only then starts the exchange with the keys in hand. PLAIN derives keys
 * from the offered password (PBKDF2, milliseconds) on the thread pool.
 *
 * One exchange at a time per stream: an <auth/> while one runs is the
 * stream error policy-violation (RFC 6120 §6.4: the exchange is a strict
 * sequence the initiator may only abort; a second one in the middle breaks
 * it, and a client that does so is not one a retry would help).
 *
 * Every attempt waits for its turn (limits.c), shared by every c2s of the
 * host: it is counted against its address as a failure from its first
 * message on, whether the client stays for the answer or not, and it is
 * evaluated only at its turn, success as well as failure, so that neither
 * hanging up nor timing tells anything sooner. Within c2s.auth-burst the
 * turn is now; a turn that would come after the connection's login
 * deadline (c2s.auth-timeout) is refused at once with
 * temporary-auth-failure (RFC 6120 §6.5.12: try again later), uncounted.
 * A success is not counted against the address.
 *
 * A channel binding the stream cannot honour (tls-unique on TLS 1.3, the
 * "y" flag although -PLUS was offered, a binding with a mechanism without
 * -PLUS or the reverse) is refused at once, before the attempt is counted:
 * that is mechanism negotiation, not a password guess (binding_problem).
 *
 * A disabled account (auth.disabled, set by hearthctl disable or the
 * XEP-0133 disable-user command) is refused with account-disabled (RFC
 * 6120 §6.5.1), but only once its credentials proved right, so that the
 * failure tells nothing to one who does not know the password.
 *
 * Failures answer not-authorized; after c2s.auth-failures of them the
 * stream is closed (RFC 6120 §6.4.5). A store that is down answers
 * temporary-auth-failure, which is not counted either. PLAIN's key
 * derivation on the thread pool is cancelled when the client goes before
 * it started.
 *
 * Accounts with keys of one hash only (imported: Prosody keeps SCRAM-SHA-1
 * keys alone by default; see hearthctl import). SCRAM with the other hash
 * runs to its end against keys made up as for an unknown user, answered
 * as a wrong password is (not being counted, its repetition shows that the
 * account has one hash only, never anything of the password), and fails
 * with not-authorized,
 * which lets a client go on to its next mechanism (RFC 6120 §6.4.5 lets it
 * retry; slixmpp, for one, tries the next mechanism it shares with the
 * server); that failure is not counted against the stream or the address,
 * since no password was wrong. A PLAIN login that succeeds against the
 * keys there are derives the missing ones from the password (on the
 * thread pool, with the derivation that checked it) and stores them, so
 * from then on every mechanism works; a SCRAM login cannot, since it never
 * sees the password. */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s.h"

#define MAX_SASL_MESSAGE 4096 /* decoded bytes of a first message */
#define MAX_WAIT 60000        /* ms a turn may be away when c2s.auth-timeout is 0 */

struct auth {
    client_t *cl;
    char mech[24];
    bool is_plain;
    bool is_waiting;     /* a storage call or thread pool work in flight */
    bool is_working;     /* of those, PLAIN's derivation on the thread pool */
    bool awaits_initial; /* sent an empty challenge for the first message */
    bool is_counted;     /* the attempt counts against the address (limits.c) */
    char *turn_b64;      /* the first message, waiting for the attempt's turn */
    uint64_t turn;       /* then (limits_now() ms) */
    char *first_b64;     /* the first message, kept during the lookup */
    char *bare;          /* the claimed user, prepared (NULL: not a valid name) */
    char cb_type[16];    /* the binding the client asked for ("" none) */
    buf_t cb_data;
    bool has_sha1, has_sha256;
    bool lacks_hash;  /* the account exists, without keys of the SCRAM hash asked */
    bool is_disabled; /* the account may not log in (auth.disabled) */
    scram_keys_t sha1, sha256;
    sasl_t *sasl;
    /* PLAIN on the thread pool */
    uv_work_t work;
    char *password;
    bool is_match;
    bool is_upgrade;    /* made the keys of the hash it lacked: store them */
    scram_keys_t added; /* those keys */
    char added_hash[8]; /* "sha1" or "sha256": their columns */
};

static bool has_binding(client_t *cl, const char *type)
{
    buf_t b = BUF_INIT;
    int rc = conn_channel_binding(cl->conn, type, &b);
    buf_free(&b);
    return rc == 0;
}

void auth_features(client_t *cl, buf_t *b)
{
    bool has_tls = conn_has_tls(cl->conn);
    bool has_exporter = has_tls && has_binding(cl, "tls-exporter");
    bool has_unique = has_tls && has_binding(cl, "tls-unique");
    buf_appends(b, "<mechanisms xmlns='" NS_SASL "'>");
    if (has_exporter || has_unique)
        buf_appends(b, "<mechanism>SCRAM-SHA-256-PLUS</mechanism>"
                       "<mechanism>SCRAM-SHA-1-PLUS</mechanism>");
    buf_appends(b, "<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism>");
    if (has_tls) buf_appends(b, "<mechanism>PLAIN</mechanism>");
    buf_appends(b, "</mechanisms>");
    if (has_exporter || has_unique) {
        buf_appends(b, "<sasl-channel-binding xmlns='" NS_SASL_CB "'>");
        if (has_exporter) buf_appends(b, "<channel-binding type='tls-exporter'/>");
        if (has_unique) buf_appends(b, "<channel-binding type='tls-unique'/>");
        buf_appends(b, "</sasl-channel-binding>");
    }
}

static bool is_offered(client_t *cl, const char *mech)
{
    if (strcmp(mech, "PLAIN") == 0) return conn_has_tls(cl->conn);
    if (strcmp(mech, "SCRAM-SHA-256") == 0 || strcmp(mech, "SCRAM-SHA-1") == 0) return true;
    if (strcmp(mech, "SCRAM-SHA-256-PLUS") == 0 || strcmp(mech, "SCRAM-SHA-1-PLUS") == 0)
        return conn_has_tls(cl->conn) &&
               (has_binding(cl, "tls-exporter") || has_binding(cl, "tls-unique"));
    return false;
}

void auth_free(client_t *cl)
{
    auth_t *a = cl->auth;
    if (!a) return;
    cl->auth = NULL;
    if (a->sasl) sasl_free(a->sasl);
    if (a->password) {
        gnutls_memset(a->password, 0, strlen(a->password));
        free(a->password);
    }
    buf_free(&a->cb_data);
    free(a->turn_b64);
    free(a->first_b64);
    free(a->bare);
    free(a);
}

static void sasl_reply(client_t *cl, const char *what, const char *data)
{
    buf_t *b = &cl->c2s->scratch;
    buf_reset(b);
    if (data && *data)
        buf_printf(b, "<%s xmlns='" NS_SASL "'>%s</%s>", what, data, what);
    else
        buf_printf(b, "<%s xmlns='" NS_SASL "'/>", what);
    client_write(cl, b->data, b->len);
}

/* <failure><condition/></failure> now, and the exchange is over. */
static void send_failure(client_t *cl, const char *condition)
{
    buf_t *b = &cl->c2s->scratch;
    buf_reset(b);
    xmpp_sasl_failure(b, condition);
    client_write(cl, b->data, b->len);
    auth_free(cl);
}

/* The attempt was not the client's to lose (the store is down): it does
 * not count against the address. */
static void uncount(client_t *cl)
{
    auth_t *a = cl->auth;
    if (!a || !a->is_counted) return;
    a->is_counted = false;
    limits_login_succeeded(cl->c2s->limits, &cl->addr->key);
}

/* A failed login (already counted when it began); the stream closes after
 * too many. */
static void fail_login(client_t *cl, const char *condition)
{
    c2s_t *c2s = cl->c2s;
    auth_t *a = cl->auth;
    cl->auth_failures++;
    int mech = a ? c2s_mechanism_index(a->mech) : -1;
    if (mech >= 0) metric_inc(&c2s_metrics.auth_failure[mech]);
    log_info("%s (%s): login as %s failed (%s)", c2s->id, client_peer(cl),
             a && a->bare ? a->bare : "(invalid name)", condition);
    send_failure(cl, condition);
    if (cl->auth_failures >= c2s->max_auth_failures)
        client_fail(cl, "policy-violation", "too many failed logins");
}

static void succeed(client_t *cl, const char *final_b64)
{
    auth_t *a = cl->auth;
    uncount(cl);
    if (a->is_disabled) {
        log_info("%s (%s): %s is disabled: login refused", cl->c2s->id, client_peer(cl), a->bare);
        send_failure(cl, "account-disabled");
        return;
    }
    int mech = c2s_mechanism_index(a->mech);
    if (mech >= 0) metric_inc(&c2s_metrics.auth_success[mech]);
    sasl_reply(cl, "success", final_b64);
    cl->user = a->bare;
    a->bare = NULL;
    log_info("%s (%s): %s logged in (%s%s%s)", cl->c2s->id, client_peer(cl), cl->user, a->mech,
             a->cb_type[0] ? ", " : "", a->cb_type);
    auth_free(cl);
    cl->state = CL_AUTHED;
    client_authenticated(cl);
}

/* ---- reading the first message ---------------------------------------- */

static char *b64_decode(const char *in, size_t *len)
{
    gnutls_datum_t src = {(unsigned char *)in, (unsigned)strlen(in)}, out = {NULL, 0};
    if (gnutls_base64_decode2(&src, &out) < 0) return NULL;
    char *s = malloc(out.size + 1);
    if (!s) log_fatal("out of memory");
    memcpy(s, out.data, out.size);
    s[out.size] = '\0';
    *len = out.size;
    gnutls_free(out.data);
    return s;
}

/* ---- the exchange ------------------------------------------------------ */

static int lookup_keys(void *ud, const char *authcid, const char *hash, scram_keys_t *out)
{
    auth_t *a = ud;
    (void)authcid; /* the same message named it; its keys are the ones fetched */
    if (strcmp(hash, "SHA-256") == 0 && a->has_sha256) {
        *out = a->sha256;
        return 0;
    }
    if (strcmp(hash, "SHA-1") == 0 && a->has_sha1) {
        *out = a->sha1;
        return 0;
    }
    return -1;
}

static void step(client_t *cl, const char *in_b64)
{
    auth_t *a = cl->auth;
    char *out = NULL;
    sasl_result_t res = sasl_step(a->sasl, in_b64, &out);
    if (res == SASL_CONTINUE)
        sasl_reply(cl, "challenge", out);
    else if (res == SASL_DONE)
        succeed(cl, out);
    else if (res == SASL_MALFORMED)
        send_failure(cl, "malformed-request");
    else if (a->lacks_hash) {
        log_info("%s (%s): %s has no %s keys yet: not-authorized, uncounted, so that the client "
                 "tries another mechanism",
                 cl->c2s->id, client_peer(cl), a->bare, a->mech);
        uncount(cl);
        send_failure(cl, "not-authorized");
    } else
        fail_login(cl, "not-authorized");
    free(out);
}

static void plain_work(uv_work_t *w)
{
    auth_t *a = w->data;
    if (a->has_sha256) {
        a->is_match = scram_keys_match("SHA-256", &a->sha256, a->password);
    } else if (a->has_sha1) {
        a->is_match = scram_keys_match("SHA-1", &a->sha1, a->password);
    } else {
        /* An unknown user costs the same derivation as a known one. */
        scram_keys_t k;
        scram_keys_make("SHA-256", a->password, NULL, 4096, &k);
        a->is_match = false;
    }
    /* The keys of the hash the account lacks, from the password just
     * checked. */
    if (a->is_match && (!a->has_sha1 || !a->has_sha256)) {
        const char *hash = a->has_sha1 ? "SHA-256" : "SHA-1";
        a->is_upgrade = scram_keys_make(hash, a->password, NULL, AUTH_ITERATIONS, &a->added) == 0;
        snprintf(a->added_hash, sizeof a->added_hash, "%s", a->has_sha1 ? "sha256" : "sha1");
    }
}

static void on_upgraded(void *ud, const st_result_t *res)
{
    char *owner = ud;
    if (st_status(res) != ST_OK)
        log_warn("cannot store the keys %s lacked: %s (they are made again at its next PLAIN "
                 "login)",
                 owner, st_error(res));
    else if (st_changes(res) > 0)
        log_info("%s: stored the SCRAM keys it lacked, derived at its PLAIN login", owner);
    free(owner);
}

/* Store the keys PLAIN derived, unless some came meanwhile. */
static void store_upgrade(client_t *cl)
{
    auth_t *a = cl->auth;
    bool is256 = strcmp(a->added_hash, "sha256") == 0;
    char iter[16];
    snprintf(iter, sizeof iter, "%u", a->added.iterations);
    const char *params[] = {a->bare, a->added.salt, iter, a->added.stored_key, a->added.server_key};
    char *owner = strdup(a->bare);
    if (!owner) log_fatal("out of memory");
    storage_query(cl->c2s->storage,
                  is256 ? "UPDATE auth SET sha256_salt = $2, sha256_iter = CAST($3 AS INTEGER), "
                          "sha256_stored = $4, sha256_server = $5 WHERE owner = $1 AND "
                          "sha256_stored IS NULL"
                        : "UPDATE auth SET sha1_salt = $2, sha1_iter = CAST($3 AS INTEGER), "
                          "sha1_stored = $4, sha1_server = $5 WHERE owner = $1 AND "
                          "sha1_stored IS NULL",
                  5, params, on_upgraded, owner);
    gnutls_memset(&a->added, 0, sizeof a->added);
}

static void plain_done(uv_work_t *w, int status)
{
    auth_t *a = w->data;
    client_t *cl = a->cl;
    a->is_waiting = a->is_working = false;
    if (!client_unref(cl)) return; /* gone, or cancelled because it was */
    if (status < 0 || !a->is_match) {
        fail_login(cl, "not-authorized");
        return;
    }
    if (a->is_upgrade) store_upgrade(cl);
    succeed(cl, NULL);
}

static void copy_keys(const st_result_t *res, int col, scram_keys_t *k, bool *has)
{
    const char *salt = st_text(res, 0, col), *stored = st_text(res, 0, col + 2),
               *server = st_text(res, 0, col + 3);
    long long iter = st_int(res, 0, col + 1);
    *has = salt && stored && server && iter > 0 && strlen(salt) < sizeof k->salt &&
           strlen(stored) < sizeof k->stored_key && strlen(server) < sizeof k->server_key;
    if (!*has) return;
    snprintf(k->salt, sizeof k->salt, "%s", salt);
    snprintf(k->stored_key, sizeof k->stored_key, "%s", stored);
    snprintf(k->server_key, sizeof k->server_key, "%s", server);
    k->iterations = (unsigned)iter;
}

static void on_keys(void *ud, const st_result_t *res)
{
    auth_t *a = ud;
    client_t *cl = a->cl;
    a->is_waiting = false;
    if (!client_unref(cl)) return;
    if (st_status(res) != ST_OK) {
        log_warn("%s: cannot read the keys of %s: %s", cl->c2s->id, a->bare ? a->bare : "?",
                 st_error(res));
        uncount(cl);
        send_failure(cl, "temporary-auth-failure");
        return;
    }
    if (st_rows(res) > 0) {
        copy_keys(res, 0, &a->sha1, &a->has_sha1);
        copy_keys(res, 4, &a->sha256, &a->has_sha256);
        bool is256 = strncmp(a->mech, "SCRAM-SHA-256", 13) == 0;
        a->lacks_hash =
            !a->is_plain && (is256 ? a->has_sha1 && !a->has_sha256 : a->has_sha256 && !a->has_sha1);
        a->is_disabled = st_int(res, 0, 8) != 0;
    }
    if (a->is_plain) {
        a->work.data = a;
        client_ref(cl);
        a->is_waiting = a->is_working = true;
        uv_queue_work(cl->c2s->loop, &a->work, plain_work, plain_done);
        return;
    }
    const void *cb = a->cb_type[0] ? a->cb_data.data : NULL;
    a->sasl = sasl_server_new(a->mech, lookup_keys, a, a->cb_type[0] ? a->cb_type : NULL, cb,
                              a->cb_type[0] ? a->cb_data.len : 0);
    if (!a->sasl) {
        send_failure(cl, "invalid-mechanism");
        return;
    }
    char *first = a->first_b64;
    a->first_b64 = NULL;
    step(cl, first);
    free(first);
}

static void fetch_keys(client_t *cl)
{
    static const char sql[] = "SELECT sha1_salt, sha1_iter, sha1_stored, sha1_server, "
                              "sha256_salt, sha256_iter, sha256_stored, sha256_server, "
                              "disabled FROM auth WHERE owner = $1";
    auth_t *a = cl->auth;
    const char *params[1] = {a->bare ? a->bare : ""};
    client_ref(cl);
    a->is_waiting = true;
    storage_query(cl->c2s->storage, sql, 1, params, on_keys, a);
}

/* The bare JID of user at the stream's domain, prepared; NULL if invalid. */
static char *bare_of(client_t *cl, const char *user)
{
    if (!*user) return NULL;
    jid_t *j = jid_new_parts(user, cl->domain, NULL, NULL);
    if (!j) return NULL;
    char *bare = strdup(jid_bare(j));
    if (!bare) log_fatal("out of memory");
    jid_free(j);
    return bare;
}

/* The client's first message: find the user, then fetch the keys. */
static void start(client_t *cl, const char *in_b64)
{
    auth_t *a = cl->auth;
    size_t len = 0;
    char *m = strcmp(in_b64, "=") == 0 ? strdup("") : b64_decode(in_b64, &len);
    if (!m || len > MAX_SASL_MESSAGE || len == 0) {
        send_failure(cl, m ? "malformed-request" : "incorrect-encoding");
        free(m);
        return;
    }
    sasl_first_t first;
    const char *user = first.user, *authzid = first.authzid;
    if (a->is_plain) {
        const char *password = NULL;
        if (sasl_parse_plain(m, len, &first, &password) < 0) {
            free(m);
            send_failure(cl, "malformed-request");
            return;
        }
        a->password = strdup(password);
        if (!a->password) log_fatal("out of memory");
        gnutls_memset(m, 0, len);
    } else {
        if (sasl_parse_scram_first(m, len, &first) < 0) {
            free(m);
            send_failure(cl, "malformed-request");
            return;
        }
        /* begin() refused every flag this stream cannot honour */
        if (first.flag == 'p') {
            snprintf(a->cb_type, sizeof a->cb_type, "%s", first.cb_type);
            conn_channel_binding(cl->conn, a->cb_type, &a->cb_data);
        }
    }
    free(m);
    a->bare = bare_of(cl, user);
    if (authzid[0]) {
        char *az = NULL;
        jid_t *j = jid_new(authzid, strlen(authzid), NULL);
        if (j) az = strdup(jid_bare(j)), jid_free(j);
        bool is_same = az && a->bare && strcmp(az, a->bare) == 0 && !strchr(authzid, '/');
        free(az);
        if (!is_same) {
            send_failure(cl, "invalid-authzid");
            return;
        }
    }
    if (!a->is_plain) {
        a->first_b64 = strdup(in_b64);
        if (!a->first_b64) log_fatal("out of memory");
    }
    fetch_keys(cl);
}

/* What is wrong with a SCRAM first message's channel binding on this
 * stream, or NULL: decided by the message and the stream alone, before any
 * password is looked at. Clients meet this while they negotiate (Debian
 * 12's slixmpp asks for tls-unique on TLS 1.3, then sends "y" although
 * -PLUS was offered, then moves on to the next mechanism), so such a
 * refusal is answered at once and not counted as a failed login, against
 * the address or toward c2s.auth-failures; it costs no lookup and no
 * hashing, and the stanza rate and c2s.auth-timeout bound how often a
 * client can repeat it. *condition is the SASL failure to answer. */
static const char *binding_problem(client_t *cl, const char *in_b64, char **user,
                                   const char **condition)
{
    auth_t *a = cl->auth;
    size_t len = 0;
    char *m = strcmp(in_b64, "=") == 0 ? NULL : b64_decode(in_b64, &len);
    sasl_first_t first;
    const char *problem = NULL;
    *condition = "not-authorized";
    if (m && len <= MAX_SASL_MESSAGE && sasl_parse_scram_first(m, len, &first) == 0) {
        bool is_plus = strstr(a->mech, "-PLUS") != NULL;
        buf_t cb = BUF_INIT;
        if (first.flag == 'p' && !is_plus) {
            problem = "it asked for channel binding with a mechanism without -PLUS";
            *condition = "malformed-request";
        } else if (first.flag == 'p' && conn_channel_binding(cl->conn, first.cb_type, &cb) < 0) {
            /* RFC 9266: TLS 1.3 has no tls-unique; tls-exporter replaces it */
            problem = strcmp(first.cb_type, "tls-unique") == 0 && has_binding(cl, "tls-exporter")
                          ? "it asked for channel binding tls-unique, which TLS 1.3 does not have "
                            "(RFC 9266: tls-exporter, which we offered)"
                          : "it asked for a channel binding type this stream does not offer";
        } else if (is_plus && first.flag != 'p') {
            problem = "it chose a -PLUS mechanism without channel binding";
            *condition = "malformed-request";
        } else if (first.flag == 'y' &&
                   (has_binding(cl, "tls-exporter") || has_binding(cl, "tls-unique"))) {
            /* RFC 5802 §6: "y" means the client could bind but thinks we
             * cannot; we offered -PLUS, so it was stripped or ignored. */
            problem = "its client says it could bind a channel but saw no -PLUS mechanism, "
                      "which we offered (flag y: refused as a downgrade, RFC 5802 §6)";
        }
        buf_free(&cb);
        if (problem) *user = bare_of(cl, first.user);
    }
    free(m);
    return problem;
}

/* The attempt begins with its first message: counted now, evaluated at
 * its turn. */
static void begin(client_t *cl, const char *in_b64)
{
    c2s_t *c2s = cl->c2s;
    auth_t *a = cl->auth;
    if (!a->is_plain) {
        char *user = NULL;
        const char *condition, *problem = binding_problem(cl, in_b64, &user, &condition);
        if (problem) {
            log_info("%s (%s): %s login as %s refused before its password, not counted as a "
                     "failure: %s",
                     c2s->id, client_peer(cl), a->mech, user ? user : "(invalid name)", problem);
            free(user);
            send_failure(cl, condition);
            return;
        }
    }
    uint64_t now = limits_now(), loop_now = uv_now(c2s->loop);
    uint64_t left = !cl->login_deadline             ? MAX_WAIT
                    : cl->login_deadline > loop_now ? cl->login_deadline - loop_now
                                                    : 0;
    uint64_t turn = 0;
    if (!limits_login_begin(c2s->limits, &cl->addr->key, now + left, &turn)) {
        log_info("%s (%s): login refused: too many recent attempts from this address", c2s->id,
                 client_peer(cl));
        send_failure(cl, "temporary-auth-failure");
        return;
    }
    a->is_counted = true;
    now = limits_now(); /* the table's clock went on meanwhile */
    if (turn <= now) {
        start(cl, in_b64);
        return;
    }
    if (!(a->turn_b64 = strdup(in_b64))) log_fatal("out of memory");
    a->turn = turn;
    cl->auth_at = loop_now + (turn - now);
    client_arm(cl);
}

void auth_turn(client_t *cl)
{
    auth_t *a = cl->auth;
    if (!a || !a->turn_b64) return;
    uint64_t now = limits_now();
    if (now < a->turn) { /* the loop's clock lags the host's: not yet */
        cl->auth_at = uv_now(cl->c2s->loop) + (a->turn - now);
        client_arm(cl);
        return;
    }
    char *m = a->turn_b64;
    a->turn_b64 = NULL;
    start(cl, m);
    free(m);
}

void auth_cancel(client_t *cl)
{
    auth_t *a = cl->auth;
    if (a && a->is_working) uv_cancel((uv_req_t *)&a->work);
}

void auth_handle(client_t *cl, const elem_t *e)
{
    c2s_t *c2s = cl->c2s;
    auth_t *a = cl->auth;
    const char *text = elem_text(e);
    if (strcmp(e->name, "auth") == 0) {
        if (a) {
            client_fail(cl, "policy-violation", "one login at a time");
            return;
        }
        if (c2s->require_tls && !conn_has_tls(cl->conn)) {
            send_failure(cl, "encryption-required");
            return;
        }
        const char *mech = elem_attr(e, "mechanism");
        if (!mech || strlen(mech) >= sizeof a->mech || !is_offered(cl, mech)) {
            send_failure(cl, "invalid-mechanism");
            return;
        }
        a = cl->auth = calloc(1, sizeof(*a));
        if (!a) log_fatal("out of memory");
        a->cl = cl;
        snprintf(a->mech, sizeof a->mech, "%s", mech);
        a->is_plain = strcmp(mech, "PLAIN") == 0;
        if (!*text) {
            /* RFC 6120 §6.4.2: no initial response: an empty challenge. */
            a->awaits_initial = true;
            sasl_reply(cl, "challenge", NULL);
            return;
        }
        begin(cl, text);
    } else if (strcmp(e->name, "response") == 0 && a && !a->is_waiting && !a->turn_b64) {
        if (a->awaits_initial) {
            a->awaits_initial = false;
            begin(cl, *text ? text : "=");
        } else if (a->sasl) {
            step(cl, text);
        } else {
            client_fail(cl, "policy-violation", "unexpected SASL response");
        }
    } else if (strcmp(e->name, "abort") == 0 && a && !a->is_waiting) {
        send_failure(cl, "aborted");
    } else {
        client_fail(cl, "policy-violation", "unexpected SASL element");
    }
}
