/* ctl_account.c — hearthctl's commands on an account's state:
 *
 *   hearthctl [-c FILE] disable JID
 *   hearthctl [-c FILE] enable JID
 *   hearthctl [-c FILE] kick JID[/RESOURCE]
 *
 * disable sets the account's disabled flag in the store (auth.disabled):
 * it keeps every datum but c2s refuses its logins with the SASL failure
 * account-disabled. Then the running sm is told (best effort, like
 * deluser), and ends the account's sessions with the not-authorized stream
 * error. enable clears the flag. kick asks the running sm to end every
 * session of the account, or the one of the full JID, with the
 * policy-violation stream error, and prints how many ended; it needs the sm.
 * The sm is reached through ctl_link.c: through the router, as
 * hearthctl-PID with the router account of role admin, sending to the
 * account's domain the admin requests of sm/mod_admin.c (<disabled/>,
 * <kick/>), believing only an answer the router marked as the sm's.
 *
 * hearthctl.c's main hands these commands here (ctl_account_main) before
 * it reads anything. Exit status as hearthctl's: 0 done, 1 failed, 2 usage
 * (returned as CTL_USAGE, for hearthctl to print its usage). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "hearthctl.h"
#include "storage.h"

#define ANSWER_TIMEOUT_MS 5000 /* kick: the sm's answer */
#define NOTICE_TIMEOUT_MS 2000 /* disable: best effort */

typedef struct acct {
    uv_loop_t *loop;
    config_t *config;
    storage_t *st;
    jid_t *jid; /* the account (kick: maybe a full JID), prepared */
    const char *cmd;
    int status;
    ctl_link_t *link;
    bool is_asked;
} acct_t;

jid_t *ctl_jid_of(const config_t *config, const char *arg, bool may_be_full)
{
    buf_t text = BUF_INIT;
    const char *slash = strchr(arg, '/'), *at = strchr(arg, '@');
    if (at && (!slash || at < slash)) {
        buf_appends(&text, arg);
    } else {
        /* No domain: the first configured one, before any resource. */
        buf_append(&text, arg, slash ? (size_t)(slash - arg) : strlen(arg));
        buf_printf(&text, "@%s%s", config_get(config, "domain"), slash ? slash : "");
    }
    const char *why = NULL;
    jid_t *j = jid_new(text.data, text.len, &why);
    bool is_ok = false;
    if (!j)
        fprintf(stderr, "hearthctl: %s: not a valid JID (%s)\n", text.data, why ? why : "invalid");
    else if (!jid_has_node(j) || (jid_has_resource(j) && !may_be_full))
        fprintf(stderr, "hearthctl: %s: an account is user@domain, %s a resource\n", text.data,
                may_be_full ? "with or without" : "without");
    else if (!is_local_domain(config, jid_domain(j)))
        fprintf(stderr, "hearthctl: %s: %s is not a domain of this server (see <domain> in %s)\n",
                text.data, jid_domain(j), config_file(config));
    else
        is_ok = true;
    buf_free(&text);
    if (!is_ok) {
        jid_free(j);
        return NULL;
    }
    return j;
}

/* ---- the sm, through the router -------------------------------------------- */

static bool is_kick(const acct_t *c)
{
    return strcmp(c->cmd, "kick") == 0;
}

static void on_answer(void *ud, const elem_t *iq, ctl_problem_t problem, const char *detail)
{
    acct_t *c = ud;
    const char *router = config_get(c->config, "router.listen");
    if (problem == CTL_BOUNCED) {
        if (is_kick(c))
            ctl_fail(&c->status, "no sm serves %s (router: %s): is hearth-sm running?",
                     jid_domain(c->jid), detail);
        /* disable: no sm runs, so no session to end */
    } else if (problem != CTL_ANSWERED) {
        if (is_kick(c))
            ctl_fail(&c->status,
                     "no answer from the sm through the router at %s: is Hearth running?", router);
        else
            fprintf(stderr,
                    "hearthctl: warning: the sm did not answer through the router at %s; "
                    "sessions of %s, if any, end when they log out\n",
                    router, jid_bare(c->jid));
    } else if (ctl_link_error(iq)) {
        ctl_fail(&c->status, "the sm refused: %s", ctl_link_error(iq));
    } else if (is_kick(c)) {
        const elem_t *answer = ctl_link_answer(iq, "kick");
        const char *n = answer ? elem_attr(answer, "sessions") : NULL;
        if (!n)
            ctl_fail(&c->status, "the sm's answer has no session count");
        else
            printf("ended %s session%s of %s\n", n, strcmp(n, "1") == 0 ? "" : "s",
                   jid_full(c->jid));
    }
}

static void ask_sm(acct_t *c)
{
    if (!c->link) {
        if (is_kick(c))
            ctl_fail(&c->status,
                     "no router account of role admin in %s (router/account role='admin')",
                     config_file(c->config));
        return;
    }
    ctl_request_t req = {
        .to = jid_domain(c->jid),
        .role = ROLE_SM,
        .user = jid_bare(c->jid),
        .is_set = true,
        .name = is_kick(c) ? "kick" : "disabled",
        .jid = is_kick(c) ? jid_full(c->jid) : jid_bare(c->jid),
        .timeout_ms = is_kick(c) ? ANSWER_TIMEOUT_MS : NOTICE_TIMEOUT_MS,
    };
    c->is_asked = true;
    ctl_link_ask(c->link, &req, on_answer, c);
}

/* ---- the store --------------------------------------------------------------- */

static void on_flag_set(void *ud, const st_result_t *res)
{
    acct_t *c = ud;
    bool is_disable = strcmp(c->cmd, "disable") == 0;
    if (st_status(res) != ST_OK) {
        ctl_fail(&c->status, "cannot %s %s: %s", c->cmd, jid_bare(c->jid), st_error(res));
    } else if (st_changes(res) == 0) {
        ctl_fail(&c->status, "%s: no such user", jid_bare(c->jid));
    } else {
        printf("%s %s\n", is_disable ? "disabled" : "enabled", jid_bare(c->jid));
        /* Its sessions, if any, end now rather than at their next login. */
        if (is_disable) ask_sm(c);
    }
}

/* ---- main ----------------------------------------------------------------------- */

static void on_closed(void *ud)
{
    (void)ud;
}

bool ctl_account_handles(const char *cmd)
{
    return strcmp(cmd, "disable") == 0 || strcmp(cmd, "enable") == 0 || strcmp(cmd, "kick") == 0;
}

int ctl_account_main(const char *path, int argc, char **argv)
{
    if (argc != 2) return CTL_USAGE;
    acct_t ctl = {0}, *c = &ctl;
    c->cmd = argv[0];
    char *err = NULL;
    if (!(c->config = ctl_config_load(path))) return 1;
    c->loop = uv_default_loop();
    /* The router link, made before the switch of user: its secret may be
     * root's. */
    c->link = ctl_link_new(c->loop, c->config);
    if (daemon_switch_user(c->config, &err) < 0) {
        ctl_fail(&c->status, "%s", err);
        free(err);
    } else if (!(c->jid = ctl_jid_of(c->config, argv[1], is_kick(c)))) {
        c->status = 1;
    } else {
        if (is_kick(c)) {
            ask_sm(c);
        } else if (!(c->st = storage_open(c->loop, c->config, &err))) {
            ctl_fail(&c->status, "cannot open the store: %s", err);
            free(err);
        } else {
            const char *params[] = {jid_bare(c->jid)};
            storage_query(c->st,
                          strcmp(c->cmd, "disable") == 0
                              ? "UPDATE auth SET disabled = 1 WHERE owner = $1"
                              : "UPDATE auth SET disabled = 0 WHERE owner = $1",
                          1, params, on_flag_set, c);
        }
        uv_run(c->loop, UV_RUN_DEFAULT);
    }
    if (!c->is_asked) ctl_link_free(c->link);
    if (c->st) storage_close(c->st, on_closed, NULL);
    uv_run(c->loop, UV_RUN_DEFAULT);
    uv_loop_close(c->loop);
    jid_free(c->jid);
    config_free(c->config);
    log_close();
    return c->status;
}
