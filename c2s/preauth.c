/* preauth.c — pre-authenticated in-band registration (XEP-0445 0.2, with
 * the tokens of XEP-0401): a client that holds a token of hearthctl invite
 * or hearthctl reset registers once, even with c2s.registration off.
 *
 * Before login the stream features offer <register
 * xmlns='urn:xmpp:ibr-token:0'/>. The client sends
 *   <iq type='set' to='DOMAIN'><preauth xmlns='urn:xmpp:pars:0' token='T'/></iq>
 * and the token is looked up by its hash in the tokens table that every
 * c2s shares: unknown, expired (its expiry is checked here and only here,
 * as XEP-0445 asks) or for another domain is item-not-found; a known one is
 * an empty result, and the stream may then register (register.c):
 *  - an invitation: one new account, of the name it was made for if it
 *    names one (another name is not-allowed); a user's invitation (made
 *    with urn:xmpp:invite#invite, sm/mod_invite.c) names its inviter, and
 *    the new account and the inviter are then subscribed to each other
 *    (session_account_created);
 *  - a reset: the account it was made for, which gets the new password of
 *    the registration (an UPDATE of its keys) without the old one.
 * A token is used up by the registration that succeeds with it: it is
 * deleted from the table before the keys are stored (so that two streams
 * racing with one token cannot both use it), and put back if the store
 * refuses the account (its name was taken). Without a token, a
 * registration (c2s.registration on) of a name that an unexpired
 * invitation names is a conflict: XEP-0445 §5 reserves it. One preauth
 * lookup at a time per stream; a new token replaces the one accepted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "c2s.h"

#define NS_PREAUTH "urn:xmpp:pars:0"
#define NS_IBR_TOKEN "urn:xmpp:ibr-token:0"
#define MAX_TOKEN 256

struct preauth {
    client_t *cl;
    char hash[65];
    bool is_reset;     /* else an invitation */
    char *owner;       /* the account it is for, or NULL */
    char *inviter;     /* the user whose invitation it is, or NULL */
    long long expires; /* of the token, kept to put it back */
    bool is_accepted;
    bool is_looking; /* the lookup in flight */
    bool is_claimed; /* deleted from the table for this registration */
    char *iq_id;
    preauth_cb cb; /* the claim's */
    void *ud;
};

void preauth_features(client_t *cl, buf_t *b)
{
    (void)cl;
    buf_appends(b, "<register xmlns='" NS_IBR_TOKEN "'/>");
}

bool preauth_is_accepted(const client_t *cl)
{
    return cl->preauth && cl->preauth->is_accepted;
}

bool preauth_is_reset(const client_t *cl)
{
    return preauth_is_accepted(cl) && cl->preauth->is_reset;
}

const char *preauth_refusal(const client_t *cl, const char *bare)
{
    const preauth_t *p = cl->preauth;
    if (!p || !p->is_accepted) return NULL;
    if (p->owner && strcmp(p->owner, bare) != 0)
        return p->is_reset ? "this token resets the password of another account"
                           : "this invitation is for another user name";
    return NULL;
}

void preauth_free(client_t *cl)
{
    preauth_t *p = cl->preauth;
    if (!p) return;
    free(p->owner);
    free(p->inviter);
    free(p->iq_id);
    free(p);
    cl->preauth = NULL;
}

/* ---- the <preauth/> IQ ------------------------------------------------------ */

static void on_looked_up(void *ud, const st_result_t *res)
{
    preauth_t *p = ud;
    client_t *cl = p->cl;
    p->is_looking = false;
    if (!client_unref(cl)) return;
    if (st_status(res) != ST_OK) {
        log_warn("%s: cannot read the tokens: %s", cl->c2s->id, st_error(res));
        client_iq_error(cl, p->iq_id, "internal-server-error", NULL);
    } else if (st_rows(res) == 0) {
        log_info("%s (%s): an unknown or expired token refused", cl->c2s->id, client_peer(cl));
        client_iq_error(cl, p->iq_id, "item-not-found", "The provided token is invalid or expired");
    } else {
        p->is_accepted = true;
        p->is_reset = strcmp(st_text(res, 0, 0), "reset") == 0;
        const char *owner = st_text(res, 0, 1);
        if (owner && !(p->owner = strdup(owner))) log_fatal("out of memory");
        p->expires = st_int(res, 0, 2);
        const char *inviter = st_text(res, 0, 3);
        if (inviter && !(p->inviter = strdup(inviter))) log_fatal("out of memory");
        log_info("%s (%s): %s token accepted%s%s", cl->c2s->id, client_peer(cl),
                 p->is_reset ? "a reset" : "an invitation", owner ? " for " : "",
                 owner ? owner : "");
        client_iq_result(cl, p->iq_id, NULL);
    }
}

void preauth_handle(client_t *cl, elem_t *iq)
{
    const char *id = elem_attr(iq, "id"), *type = elem_attr(iq, "type");
    const elem_t *q = elem_child(iq, NS_PREAUTH, "preauth");
    const char *token = q ? elem_attr(q, "token") : NULL;
    if (!id) id = "";
    if (!type || strcmp(type, "set") != 0 || !token || !*token || strlen(token) > MAX_TOKEN) {
        client_iq_error(cl, id, "bad-request", NULL);
        return;
    }
    if ((cl->preauth && (cl->preauth->is_looking || cl->preauth->is_claimed)) || cl->reg) {
        client_iq_error(cl, id, "resource-constraint", "one token at a time");
        return;
    }
    preauth_free(cl);
    preauth_t *p = calloc(1, sizeof *p);
    if (!p || !(p->iq_id = strdup(id))) log_fatal("out of memory");
    p->cl = cl;
    cl->preauth = p;
    if (token_hash(token, p->hash) < 0) {
        client_iq_error(cl, id, "internal-server-error", NULL);
        return;
    }
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    const char *params[] = {p->hash, cl->domain, now};
    p->is_looking = true;
    client_ref(cl);
    storage_query(cl->c2s->storage,
                  "SELECT kind, owner, expires, inviter FROM tokens"
                  " WHERE hash = $1 AND domain = $2 AND expires > $3",
                  3, params, on_looked_up, p);
}

/* ---- the registration ---------------------------------------------------------- */

static void on_claimed(void *ud, const st_result_t *res)
{
    preauth_t *p = ud;
    if (st_status(res) != ST_OK) {
        log_warn("%s: cannot use a token: %s", p->cl->c2s->id, st_error(res));
        p->cb(p->cl, p->ud, "internal-server-error", NULL);
    } else if (st_changes(res) == 0) {
        p->cb(p->cl, p->ud, "item-not-found", "The provided token was used meanwhile");
    } else {
        p->is_claimed = true;
        p->cb(p->cl, p->ud, NULL, NULL);
    }
}

static void on_reservation(void *ud, const st_result_t *res)
{
    preauth_t *p = ud;
    client_t *cl = p->cl;
    preauth_cb cb = p->cb;
    void *cb_ud = p->ud;
    /* Not the stream's own token: only the reservation check needed it. */
    preauth_free(cl);
    if (st_status(res) != ST_OK) {
        log_warn("%s: cannot read the tokens: %s", cl->c2s->id, st_error(res));
        cb(cl, cb_ud, "internal-server-error", NULL);
    } else if (st_rows(res) > 0) {
        cb(cl, cb_ud, "conflict", "that user name is reserved by an invitation");
    } else {
        cb(cl, cb_ud, NULL, NULL);
    }
}

void preauth_claim(client_t *cl, const char *bare, preauth_cb cb, void *ud)
{
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    preauth_t *p = cl->preauth;
    if (!preauth_is_accepted(cl)) {
        if (!p) {
            if (!(p = cl->preauth = calloc(1, sizeof *p))) log_fatal("out of memory");
            p->cl = cl;
        }
        p->cb = cb;
        p->ud = ud;
        const char *params[] = {bare, now};
        storage_query(
            cl->c2s->storage,
            "SELECT hash FROM tokens WHERE owner = $1 AND kind = 'invite' AND expires > $2", 2,
            params, on_reservation, p);
        return;
    }
    p->cb = cb;
    p->ud = ud;
    const char *params[] = {p->hash};
    storage_query(cl->c2s->storage, "DELETE FROM tokens WHERE hash = $1", 1, params, on_claimed, p);
}

static void on_unclaimed(void *ud, const st_result_t *res)
{
    char *hash = ud;
    if (st_status(res) != ST_OK)
        log_warn("c2s: a token could not be given back after a failed registration: %s",
                 st_error(res));
    free(hash);
}

void preauth_unclaim(client_t *cl)
{
    preauth_t *p = cl->preauth;
    if (!p || !p->is_claimed) return;
    p->is_claimed = false;
    char expires[24];
    snprintf(expires, sizeof expires, "%lld", p->expires);
    char *hash = strdup(p->hash);
    if (!hash) log_fatal("out of memory");
    const char *params[] = {
        hash, p->is_reset ? "reset" : "invite", cl->domain, p->owner, expires, p->inviter};
    storage_query(cl->c2s->storage,
                  "INSERT INTO tokens (hash, kind, domain, owner, expires, inviter)"
                  " VALUES ($1, $2, $3, $4, $5, $6)",
                  6, params, on_unclaimed, hash);
}

const char *preauth_inviter(const client_t *cl)
{
    return preauth_is_accepted(cl) ? cl->preauth->inviter : NULL;
}

void preauth_used(client_t *cl)
{
    preauth_free(cl);
}
