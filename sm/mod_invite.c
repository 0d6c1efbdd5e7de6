/* mod_invite.c — invitations made from an XMPP client (XEP-0401), as
 * ad-hoc commands of the server's JID (adhoc.h):
 *
 *  - urn:xmpp:invite#invite, for every user when sm.user-invites is above
 *    0: a link with which one person registers here (XEP-0445), even with
 *    c2s.registration off: xmpp:INVITER?roster;preauth=TOKEN;ibr=y. The
 *    new account and the inviter are then subscribed to each other
 *    (c2s/preauth.c tells both sm shards; mod_roster does it). Someone who
 *    has an account already and asks the inviter for a subscription with
 *    the token (XEP-0379) is asked like anyone else: the token does not
 *    approve it. A user has at most sm.user-invites unexpired invitations
 *    (resource-constraint beyond).
 *  - urn:xmpp:invite#create-account, for administrators: the same as
 *    hearthctl invite, from a client: a form with an optional username
 *    (the invitation is then for that name only, reserved meanwhile), and
 *    the link xmpp:DOMAIN?register;preauth=TOKEN (or xmpp:JID?...).
 *
 * The result form (FORM_TYPE urn:xmpp:invite#invitation) carries uri and
 * expire (XEP-0082 DateTime). Tokens are those of storage/token.c, in the
 * tokens table every c2s reads (c2s/preauth.c), valid for
 * c2s.token-expiry, stored only as a hash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adhoc.h"

#define NS_INVITATION "urn:xmpp:invite#invitation"

typedef struct invite {
    adhoc_req_t *req;
    char token[TOKEN_LEN + 1];
    char hash[65];
    char domain[JID_STRING_MAX];
    char inviter[JID_STRING_MAX]; /* "" for create-account */
    char owner[JID_STRING_MAX];   /* create-account with a username, else "" */
    long long expires;
} invite_t;

static long long max_user_invites;

static void invite_free(invite_t *inv)
{
    explicit_bzero(inv->token, sizeof inv->token);
    free(inv);
}

static void on_stored(void *ud, const st_result_t *res)
{
    invite_t *inv = ud;
    if (st_status(res) != ST_OK) {
        log_warn("invite: cannot store a token of %s: %s",
                 inv->inviter[0] ? inv->inviter : "an administrator", st_error(res));
        adhoc_fail(inv->req,
                   st_status(res) == ST_FULL ? "resource-constraint" : "internal-server-error",
                   NULL);
        invite_free(inv);
        return;
    }
    buf_t uri = BUF_INIT;
    if (inv->inviter[0])
        token_uri(&uri, inv->inviter, "roster", inv->token, true);
    else
        token_uri(&uri, inv->owner[0] ? inv->owner : inv->domain, "register", inv->token, false);
    char expire[32];
    time_t t = (time_t)inv->expires;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(expire, sizeof expire, "%Y-%m-%dT%H:%M:%SZ", &tm);
    elem_t *x = adhoc_form_new(adhoc_arena(inv->req), "result", NULL, NS_INVITATION);
    adhoc_field_add(x, "text-single", "uri", "Invitation link", uri.data);
    adhoc_field_add(x, "text-single", "expire", "Valid until", expire);
    log_info("invite: %s made an invitation%s%s, valid until %s",
             inv->inviter[0] ? inv->inviter : jid_full(adhoc_requester(inv->req)),
             inv->owner[0] ? " for " : "", inv->owner, expire);
    buf_free(&uri);
    adhoc_done(inv->req, NULL, x);
    invite_free(inv);
}

static void store(invite_t *inv)
{
    token_row_t row = {
        .hash = inv->hash,
        .kind = "invite",
        .domain = inv->domain,
        .owner = inv->owner[0] ? inv->owner : NULL,
        .inviter = inv->inviter[0] ? inv->inviter : NULL,
        .expires = inv->expires,
    };
    token_store(sm_storage(adhoc_sm(inv->req)), &row, on_stored, inv);
}

/* A new invitation of the request's domain; NULL (the request answered)
 * when no token can be made. */
static invite_t *invite_new(adhoc_req_t *req)
{
    invite_t *inv = calloc(1, sizeof *inv);
    if (!inv) log_fatal("out of memory");
    inv->req = req;
    if (token_new(inv->token) < 0 || token_hash(inv->token, inv->hash) < 0) {
        adhoc_fail(req, "internal-server-error", "no random numbers for a token");
        invite_free(inv);
        return NULL;
    }
    snprintf(inv->domain, sizeof inv->domain, "%s", adhoc_domain(req));
    inv->expires = (long long)time(NULL) +
                   (long long)(config_ms(sm_config(adhoc_sm(req)), "c2s.token-expiry") / 1000);
    return inv;
}

/* ---- urn:xmpp:invite#invite ------------------------------------------------ */

static void on_counted(void *ud, const st_result_t *res)
{
    invite_t *inv = ud;
    if (st_status(res) != ST_OK) {
        adhoc_fail(inv->req, "internal-server-error", NULL);
        invite_free(inv);
    } else if (st_int(res, 0, 0) >= max_user_invites) {
        char text[96];
        snprintf(text, sizeof text, "at most %lld unexpired invitations per user",
                 max_user_invites);
        adhoc_fail(inv->req, "resource-constraint", text);
        invite_free(inv);
    } else {
        store(inv);
    }
}

static void run_invite(adhoc_req_t *req, const elem_t *form)
{
    (void)form;
    invite_t *inv = invite_new(req);
    if (!inv) return;
    snprintf(inv->inviter, sizeof inv->inviter, "%s", jid_bare(adhoc_requester(req)));
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    const char *params[] = {inv->inviter, now};
    storage_query(sm_storage(adhoc_sm(req)),
                  "SELECT COUNT(*) FROM tokens WHERE inviter = $1 AND expires > $2", 2, params,
                  on_counted, inv);
}

/* ---- urn:xmpp:invite#create-account ------------------------------------------ */

static void ask_create_account(adhoc_req_t *req, elem_t *x)
{
    (void)req;
    adhoc_field_add(x, "hidden", "FORM_TYPE", NULL, NS_INVITATION);
    adhoc_field_add(x, "text-single", "username", "User name (empty: the invitee chooses)", NULL);
}

static void on_account(void *ud, const st_result_t *res)
{
    invite_t *inv = ud;
    if (st_status(res) != ST_OK) {
        adhoc_fail(inv->req, "internal-server-error", NULL);
        invite_free(inv);
    } else if (st_rows(res) > 0) {
        adhoc_fail(inv->req, "conflict", "that account exists");
        invite_free(inv);
    } else {
        store(inv);
    }
}

static void run_create_account(adhoc_req_t *req, const elem_t *form)
{
    const char *username = adhoc_value(form, "username");
    invite_t *inv = invite_new(req);
    if (!inv) return;
    if (!username || !*username) {
        store(inv);
        return;
    }
    jid_t *j = jid_new_parts(username, inv->domain, NULL, NULL);
    if (!j) {
        adhoc_fail(req, "jid-malformed", "not a valid user name");
        invite_free(inv);
        return;
    }
    snprintf(inv->owner, sizeof inv->owner, "%s", jid_bare(j));
    jid_free(j);
    const char *params[] = {inv->owner};
    storage_query(sm_storage(adhoc_sm(req)), "SELECT owner FROM auth WHERE owner = $1", 1, params,
                  on_account, inv);
}

/* ---- the tables --------------------------------------------------------------- */

/* clang-format off */
static const adhoc_cmd_t admin_commands[] = {
    {"urn:xmpp:invite#create-account", "Create an Account Invitation", ask_create_account,
     run_create_account, false},
    {NULL, NULL, NULL, NULL, false},
};
static const adhoc_cmd_t user_commands[] = {
    {"urn:xmpp:invite#invite", "Invite Someone", NULL, run_invite, true},
    {NULL, NULL, NULL, NULL, false},
};
/* clang-format on */

void mod_invite_init(sm_t *sm); /* listed in modules.c */

void mod_invite_init(sm_t *sm)
{
    max_user_invites = config_int(sm_config(sm), "sm.user-invites");
    adhoc_register(sm, admin_commands);
    if (max_user_invites > 0) adhoc_register(sm, user_commands);
}
