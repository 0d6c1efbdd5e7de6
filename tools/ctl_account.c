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
 * The sm is reached as hearthctl.c does it: through the router, as
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
#include <unistd.h>

#include "common.h"
#include "hearthctl.h"
#include "storage.h"

#define NS_ADMIN "urn:hearth:admin:1"
#define ANSWER_TIMEOUT_MS 5000 /* kick: the sm's answer */
#define NOTICE_TIMEOUT_MS 2000 /* disable: best effort */

typedef struct acct {
    uv_loop_t *loop;
    config_t *config;
    storage_t *st;
    jid_t *jid; /* the account (kick: maybe a full JID), prepared */
    const char *cmd;
    int status;
    comp_t *comp;
    char id[64];
    uv_timer_t timer;
    bool is_timer_open, is_answered;
} acct_t;

static void fail(acct_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(acct_t *c, const char *fmt, ...)
{
    fputs("hearthctl: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    c->status = 1;
}

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

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

static void finish_link(acct_t *c)
{
    if (c->comp) {
        comp_free(c->comp);
        c->comp = NULL;
    }
    if (c->is_timer_open) {
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
        c->is_timer_open = false;
    }
}

static void on_timeout(uv_timer_t *t)
{
    acct_t *c = t->data;
    const char *router = config_get(c->config, "router.listen");
    if (c->is_answered)
        ; /* done_soon(): the link closes outside its own callback */
    else if (is_kick(c))
        fail(c, "no answer from the sm through the router at %s: is Hearth running?", router);
    else
        fprintf(stderr,
                "hearthctl: warning: the sm did not answer through the router at %s; sessions "
                "of %s, if any, end when they log out\n",
                router, jid_bare(c->jid));
    finish_link(c);
}

static void done_soon(acct_t *c)
{
    c->is_answered = true;
    uv_timer_start(&c->timer, on_timeout, 0, 0);
}

static void on_ready(comp_t *comp)
{
    acct_t *c = comp_data(comp);
    const char *to = jid_domain(c->jid);
    arena_t *a = arena_new(0);
    elem_t *iq = elem_new(a, NS_CLIENT, "iq");
    elem_set_attr(iq, "type", "set");
    elem_set_attr(iq, "id", c->cmd);
    elem_set_attr(iq, "from", c->id);
    elem_set_attr(iq, "to", to);
    elem_t *request = elem_add(iq, NS_ADMIN, is_kick(c) ? "kick" : "disabled");
    elem_set_attr(request, "jid", is_kick(c) ? jid_full(c->jid) : jid_bare(c->jid));
    /* user= picks the shard that holds the account (DESIGN.md). */
    comp_send_to(comp, to, c->id, jid_bare(c->jid), iq);
    arena_free(a);
}

static void on_route(comp_t *comp, elem_t *route, const xstream_raw_t *raw)
{
    (void)raw;
    acct_t *c = comp_data(comp);
    elem_t *iq = elem_first(route);
    const char *route_type = elem_attr(route, "type");
    bool is_bounce = route_type && strcmp(route_type, "error") == 0;
    if (comp_route_role(route) != (is_bounce ? ROLE_ROUTER : ROLE_SM) || c->is_answered) return;
    if (is_bounce) {
        if (is_kick(c))
            fail(c, "no sm serves %s (router: %s): is hearth-sm running?", jid_domain(c->jid),
                 elem_attr(route, "error"));
        done_soon(c); /* disable: no sm runs, so no session to end */
        return;
    }
    if (!iq || strcmp(iq->name, "iq") != 0) return;
    const char *id = elem_attr(iq, "id"), *type = elem_attr(iq, "type");
    if (!id || strcmp(id, c->cmd) != 0 || !type) return;
    if (strcmp(type, "result") != 0) {
        const elem_t *error = elem_child(iq, NULL, "error");
        const elem_t *condition = error ? elem_first(error) : NULL;
        fail(c, "the sm refused: %s", condition ? condition->name : "error");
    } else if (is_kick(c)) {
        const elem_t *answer = elem_child(iq, NS_ADMIN, "kick");
        const char *n = answer ? elem_attr(answer, "sessions") : NULL;
        if (!n)
            fail(c, "the sm's answer has no session count");
        else
            printf("ended %s session%s of %s\n", n, strcmp(n, "1") == 0 ? "" : "s",
                   jid_full(c->jid));
    }
    done_soon(c);
}

static void ask_sm(acct_t *c)
{
    if (!c->comp) {
        if (is_kick(c))
            fail(c, "no router account of role admin in %s (router/account role='admin')",
                 config_file(c->config));
        return;
    }
    comp_bind(c->comp, c->id, 0);
    comp_start(c->comp);
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    c->is_timer_open = true;
    uv_timer_start(&c->timer, on_timeout, is_kick(c) ? ANSWER_TIMEOUT_MS : NOTICE_TIMEOUT_MS, 0);
}

/* ---- the store --------------------------------------------------------------- */

static void on_flag_set(void *ud, const st_result_t *res)
{
    acct_t *c = ud;
    bool is_disable = strcmp(c->cmd, "disable") == 0;
    if (st_status(res) != ST_OK) {
        fail(c, "cannot %s %s: %s", c->cmd, jid_bare(c->jid), st_error(res));
    } else if (st_changes(res) == 0) {
        fail(c, "%s: no such user", jid_bare(c->jid));
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
    if (!(c->config = config_load(path, &err))) {
        fprintf(stderr, "hearthctl: %s\n", err);
        free(err);
        return 1;
    }
    log_open("hearthctl", "stderr", "warn");
    c->loop = uv_default_loop();
    /* The router link, made before the switch of user: its secret may be
     * root's. */
    static const comp_cb_t cb = {.on_ready = on_ready, .on_route = on_route};
    if (has_admin_account(c->config)) {
        snprintf(c->id, sizeof c->id, "hearthctl-%ld", (long)getpid());
        c->comp = comp_new_from_config(c->loop, c->config, c->id, ROLE_ADMIN, &cb, c);
    }
    if (daemon_switch_user(c->config, &err) < 0) {
        fail(c, "%s", err);
        free(err);
    } else if (!(c->jid = ctl_jid_of(c->config, argv[1], is_kick(c)))) {
        c->status = 1;
    } else {
        if (is_kick(c)) {
            ask_sm(c);
        } else if (!(c->st = storage_open(c->loop, c->config, &err))) {
            fail(c, "cannot open the store: %s", err);
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
    finish_link(c);
    if (c->st) storage_close(c->st, on_closed, NULL);
    uv_run(c->loop, UV_RUN_DEFAULT);
    uv_loop_close(c->loop);
    jid_free(c->jid);
    config_free(c->config);
    log_close();
    return c->status;
}
