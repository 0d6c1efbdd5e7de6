/* ctl_invite.c — hearthctl's one-time registration tokens (XEP-0401,
 * XEP-0445):
 *
 *   hearthctl [-c FILE] invite [JID]
 *   hearthctl [-c FILE] reset JID
 *
 * invite makes a token that lets one in-band registration through, even
 * with c2s.registration off: of any name in the first configured domain,
 * or of the name JID gives (an account that does not exist yet; until the
 * token expires nobody else may register it). reset makes a token with
 * which the user of JID (an existing account) sets a new password by
 * registering their own name, without the old one. Each prints two lines:
 * the token, and the URI to hand over (RFC 5122, XEP-0401):
 *   xmpp:DOMAIN?register;preauth=TOKEN  or  xmpp:JID?register;preauth=TOKEN
 * The token is valid for c2s.token-expiry and used up by the registration
 * that succeeds with it; expired ones are deleted when a new one is made. The store keeps only its
 * SHA-256 (token.c), in the tokens table every c2s reads (c2s/preauth.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "hearthctl.h"
#include "storage.h"

typedef struct invite {
    uv_loop_t *loop;
    config_t *config;
    storage_t *st;
    bool is_reset;
    jid_t *jid;                  /* the account, or NULL (invite: any name) */
    char domain[JID_STRING_MAX]; /* where the token registers, prepared */
    char token[TOKEN_LEN + 1];
    char hash[65];
    int status;
} invite_t;

static void on_stored(void *ud, const st_result_t *res)
{
    invite_t *c = ud;
    if (st_status(res) != ST_OK) {
        fprintf(stderr, "hearthctl: cannot store the token: %s\n", st_error(res));
        c->status = 1;
        return;
    }
    buf_t uri = BUF_INIT;
    token_uri(&uri, c->jid ? jid_bare(c->jid) : c->domain, "register", c->token, false);
    printf("%s\n%s\n", c->token, uri.data);
    buf_free(&uri);
}

static void store_token(invite_t *c)
{
    token_row_t row = {
        .hash = c->hash,
        .kind = c->is_reset ? "reset" : "invite",
        .domain = c->domain,
        .owner = c->jid ? jid_bare(c->jid) : NULL,
        .expires =
            (long long)time(NULL) + (long long)(config_ms(c->config, "c2s.token-expiry") / 1000),
    };
    token_store(c->st, &row, on_stored, c);
}

/* invite JID: no such account yet; reset JID: the account exists. */
static void on_account(void *ud, const st_result_t *res)
{
    invite_t *c = ud;
    if (st_status(res) != ST_OK) {
        fprintf(stderr, "hearthctl: cannot read %s: %s\n", jid_bare(c->jid), st_error(res));
        c->status = 1;
    } else if (c->is_reset && st_rows(res) == 0) {
        fprintf(stderr, "hearthctl: %s: no such user\n", jid_bare(c->jid));
        c->status = 1;
    } else if (!c->is_reset && st_rows(res) > 0) {
        fprintf(stderr, "hearthctl: %s already exists\n", jid_bare(c->jid));
        c->status = 1;
    } else {
        store_token(c);
    }
}

static void on_closed(void *ud)
{
    (void)ud;
}

bool ctl_invite_handles(const char *cmd)
{
    return strcmp(cmd, "invite") == 0 || strcmp(cmd, "reset") == 0;
}

int ctl_invite_main(const char *path, int argc, char **argv)
{
    invite_t ctl = {0}, *c = &ctl;
    c->is_reset = strcmp(argv[0], "reset") == 0;
    if (argc > 2 || (c->is_reset && argc != 2)) return CTL_USAGE;
    char *err = NULL;
    if (!(c->config = ctl_config_load(path))) return 1;
    c->loop = uv_default_loop();
    if (daemon_switch_user(c->config, &err) < 0) {
        fprintf(stderr, "hearthctl: %s\n", err);
        free(err);
        c->status = 1;
    } else if (argc == 2 && !(c->jid = ctl_jid_of(c->config, argv[1], false))) {
        c->status = 1;
    } else if (!c->jid && jid_prep(config_get(c->config, "domain"),
                                   strlen(config_get(c->config, "domain")), c->domain, NULL) < 0) {
        fprintf(stderr, "hearthctl: %s: the first <domain> is not a valid domain\n",
                config_file(c->config));
        c->status = 1;
    } else if (token_new(c->token) < 0 || token_hash(c->token, c->hash) < 0) {
        fprintf(stderr, "hearthctl: cannot make a token: no random numbers\n");
        c->status = 1;
    } else if (!(c->st = storage_open(c->loop, c->config, &err))) {
        fprintf(stderr, "hearthctl: cannot open the store: %s\n", err);
        free(err);
        c->status = 1;
    } else {
        if (c->jid) {
            snprintf(c->domain, sizeof c->domain, "%s", jid_domain(c->jid));
            const char *params[] = {jid_bare(c->jid)};
            storage_query(c->st, "SELECT owner FROM auth WHERE owner = $1", 1, params, on_account,
                          c);
        } else {
            store_token(c);
        }
        uv_run(c->loop, UV_RUN_DEFAULT);
    }
    if (c->st) storage_close(c->st, on_closed, NULL);
    uv_run(c->loop, UV_RUN_DEFAULT);
    uv_loop_close(c->loop);
    explicit_bzero(c->token, sizeof c->token);
    jid_free(c->jid);
    config_free(c->config);
    log_close();
    return c->status;
}
