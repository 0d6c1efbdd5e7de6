/* register.c — in-band registration before login (XEP-0077), when
 * c2s.registration is on.
 *
 * A get answers the form (instructions, username, password); a set
 * computes the SCRAM-SHA-1 and SCRAM-SHA-256 keys of the password on the
 * thread pool and INSERTs them into `auth`: an existing account is a
 * conflict. One account per connection. With registration off, both get
 * service-unavailable (and the stream feature is not offered). Password
 * changes and account removal after login are the sm's: c2s passes those
 * IQs on like any other stanza.
 *
 * What a registration costs (two PBKDF2 runs on the thread pool every
 * login also needs) is bounded:
 *  - one at a time per connection: a set while one is in flight gets
 *    resource-constraint, type wait (RFC 6120 §8.3.3.18: the server
 *    cannot take the request now; the client may send it again once
 *    the first is answered);
 *  - a budget per address, c2s.registration-rate accounts an hour, and
 *    one for the host, c2s.registration-rate-total, shared by every c2s
 *    (limits.c), taken before the keys are derived. Past it the answer is
 *    resource-constraint too: XEP-0077 names no condition for it, and of
 *    RFC 6120's, policy-violation (type modify) would tell the client to
 *    change its request and not-allowed (type cancel) not to try again,
 *    while the one thing that helps is to wait, which is what type wait
 *    says; the text says which budget is spent;
 *  - a derivation not started yet is cancelled when the client goes, and
 *    the result of one that ran is dropped.
 * A stream that gave a registration token (preauth.c) may register with
 * registration off, outside the budgets (the token is one registration):
 * an invitation creates the account, a reset sets the keys of an existing
 * one; the token is used up before the keys are stored. */
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "c2s.h"

struct reg {
    client_t *cl;
    uv_work_t work;
    char *id; /* the IQ's */
    char *bare;
    char *password;   /* wiped after use */
    bool is_deriving; /* on the thread pool */
    int status;       /* of the derivation */
    auth_keys_t keys;
};

static void reg_free(reg_t *r)
{
    if (r->password) {
        gnutls_memset(r->password, 0, strlen(r->password));
        free(r->password);
    }
    gnutls_memset(&r->keys, 0, sizeof r->keys);
    free(r->id);
    free(r->bare);
    free(r);
}

static void send_form(client_t *cl, const char *id)
{
    arena_t *a = arena_new(0);
    elem_t *q = elem_new(a, NS_REGISTER, "query");
    elem_t *ins = elem_add(q, NULL, "instructions");
    char text[1200];
    snprintf(text, sizeof text, "Choose a user name and a password for your account on %s.",
             cl->domain);
    elem_add_text(ins, text, strlen(text));
    elem_add(q, NULL, "username");
    elem_add(q, NULL, "password");
    client_iq_result(cl, id, q);
    arena_free(a);
}

static void on_inserted(void *ud, const st_result_t *res)
{
    reg_t *r = ud;
    client_t *cl = r->cl;
    cl->reg = NULL;
    st_status_t st = st_status(res);
    /* The sm learns of the account even if its maker has hung up. */
    bool is_reset = preauth_is_reset(cl);
    if (st == ST_OK && is_reset && st_changes(res) == 0) st = ST_FAILED; /* the account is gone */
    if (st == ST_OK && !is_reset)
        session_account_created(cl->c2s, cl->domain, r->bare, preauth_inviter(cl));
    if (st == ST_OK)
        preauth_used(cl);
    else if (st == ST_CONSTRAINT)
        preauth_unclaim(cl);
    if (client_unref(cl)) {
        if (st == ST_OK) {
            cl->has_registered = true;
            metric_inc(&c2s_metrics.registration_successes);
            log_info("%s (%s): %s %s", cl->c2s->id, client_peer(cl),
                     is_reset ? "set a new password of" : "registered", r->bare);
            client_iq_result(cl, r->id, NULL);
        } else if (is_reset && st == ST_FAILED) {
            client_iq_error(cl, r->id, "item-not-found", "no such account");
        } else if (st == ST_CONSTRAINT) {
            client_iq_error(cl, r->id, "conflict", "that user name is taken");
        } else {
            log_warn("%s: cannot store the account %s: %s", cl->c2s->id, r->bare, st_error(res));
            client_iq_error(cl, r->id,
                            st == ST_FULL ? "resource-constraint" : "internal-server-error", NULL);
        }
    }
    reg_free(r);
}

/* The token is used up, or no invitation reserves the name: store. */
static void on_claimed(client_t *cl, void *ud, const char *condition, const char *text)
{
    reg_t *r = ud;
    if (condition) {
        cl->reg = NULL;
        if (client_unref(cl)) client_iq_error(cl, r->id, condition, text);
        reg_free(r);
        return;
    }
    auth_store(cl->c2s->storage, r->bare, &r->keys, !preauth_is_reset(cl), on_inserted, r);
}

static void derive_work(uv_work_t *w)
{
    reg_t *r = w->data;
    r->status = auth_keys_make(r->password, &r->keys);
}

static void derive_done(uv_work_t *w, int status)
{
    reg_t *r = w->data;
    client_t *cl = r->cl;
    r->is_deriving = false;
    cl->reg = NULL;
    if (!client_unref(cl)) { /* gone (and the work cancelled if it had not started) */
        reg_free(r);
        return;
    }
    if (status < 0 || r->status < 0) {
        client_iq_error(cl, r->id, "not-acceptable", "unusable password");
        reg_free(r);
        return;
    }
    cl->reg = r;
    client_ref(cl);
    preauth_claim(cl, r->bare, on_claimed, r);
}

void register_handle(client_t *cl, elem_t *iq)
{
    c2s_t *c2s = cl->c2s;
    const char *id = elem_attr(iq, "id"), *type = elem_attr(iq, "type");
    elem_t *q = elem_child(iq, NS_REGISTER, "query");
    if (!id) id = "";
    bool has_token = preauth_is_accepted(cl);
    if (!c2s->registration && !has_token) {
        client_iq_error(cl, id, "service-unavailable", NULL);
        return;
    }
    if (type && strcmp(type, "get") == 0) {
        send_form(cl, id);
        return;
    }
    if (!type || strcmp(type, "set") != 0) {
        client_iq_error(cl, id, "bad-request", NULL);
        return;
    }
    if (elem_child(q, NS_REGISTER, "remove")) {
        client_iq_error(cl, id, "not-authorized", "log in to remove an account");
        return;
    }
    metric_inc(&c2s_metrics.registration_attempts);
    if (cl->has_registered) {
        client_iq_error(cl, id, "not-allowed", "one account per connection");
        return;
    }
    if (cl->reg) {
        client_iq_error(cl, id, "resource-constraint", "one registration at a time");
        return;
    }
    elem_t *u = elem_child(q, NS_REGISTER, "username"), *p = elem_child(q, NS_REGISTER, "password");
    const char *user = u ? elem_text(u) : "", *password = p ? elem_text(p) : "";
    if (!*user || !*password) {
        client_iq_error(cl, id, "not-acceptable", "a user name and a password are needed");
        return;
    }
    jid_t *j = jid_new_parts(user, cl->domain, NULL, NULL);
    if (!j || strchr(user, '@') || strchr(user, '/')) {
        if (j) jid_free(j);
        client_iq_error(cl, id, "jid-malformed", "that user name is not allowed");
        return;
    }
    const char *refusal = preauth_refusal(cl, jid_bare(j));
    if (refusal) {
        jid_free(j);
        client_iq_error(cl, id, "not-allowed", refusal);
        return;
    }
    limits_verdict_t verdict =
        has_token ? LIMITS_OK : limits_registration(c2s->limits, &cl->addr->key);
    if (verdict != LIMITS_OK) {
        log_info("%s (%s): registration of %s refused: %s", c2s->id, client_peer(cl), jid_bare(j),
                 verdict == LIMITS_ADDRESS ? "c2s.registration-rate"
                                           : "c2s.registration-rate-total");
        jid_free(j);
        client_iq_error(cl, id, "resource-constraint",
                        verdict == LIMITS_ADDRESS
                            ? "too many new accounts from your address; try again later"
                            : "the server takes no more new accounts for now; try again later");
        return;
    }
    reg_t *r = calloc(1, sizeof(*r));
    if (!r) log_fatal("out of memory");
    r->cl = cl;
    r->id = strdup(id);
    r->bare = strdup(jid_bare(j));
    r->password = strdup(password);
    jid_free(j);
    if (!r->id || !r->bare || !r->password) log_fatal("out of memory");
    r->work.data = r;
    r->is_deriving = true;
    cl->reg = r;
    client_ref(cl);
    uv_queue_work(c2s->loop, &r->work, derive_work, derive_done);
}

void register_cancel(client_t *cl)
{
    if (cl->reg && cl->reg->is_deriving) uv_cancel((uv_req_t *)&cl->reg->work);
}
