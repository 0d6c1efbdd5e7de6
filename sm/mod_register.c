/* mod_register.c — in-band registration after login (XEP-0077 §3.2, §3.3):
 * a user changes their password or removes their account.
 *
 * Creating an account is c2s's job (before login); here the requests come
 * from a session, with no to or to the server. A get answers <registered/>
 * with the username. A set with <username/> and <password/> sets new
 * SCRAM keys (sm_account_set_password: the password itself is never
 * stored). A set with <remove/> deletes every collection the user owns
 * (sm_account_remove), answers, then ends each of the user's sessions
 * with the not-authorized stream error. Nothing is answered before the
 * store confirms it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

#define NS_REGISTER "jabber:iq:register"

/* ---- password change ---------------------------------------------------- */

static const char *condition_of(sm_account_result_t result)
{
    switch (result) {
    case SM_ACCOUNT_NOT_FOUND:
        return "item-not-found"; /* removed by an admin meanwhile */
    case SM_ACCOUNT_BAD_PASSWORD:
        return "not-acceptable";
    case SM_ACCOUNT_FULL:
        return "resource-constraint";
    default:
        return "internal-server-error";
    }
}

static void on_password_set(sm_t *sm, void *ud, sm_account_result_t result)
{
    sm_pkt_t *pkt = ud;
    if (result == SM_ACCOUNT_OK) {
        log_info("register: %s changed their password", jid_bare(pkt->from));
        sm_reply_result(sm, pkt, NULL);
    } else {
        sm_reply_error(sm, pkt, condition_of(result));
    }
    sm_pkt_release(pkt);
}

static void change_password(sm_t *sm, sm_pkt_t *pkt, const elem_t *query)
{
    const elem_t *username = elem_child(query, NULL, "username");
    const elem_t *password = elem_child(query, NULL, "password");
    const char *text = password ? elem_text(password) : "";
    /* XEP-0077 §3.3: the username, if given, is the user's own. */
    jid_t *named =
        username ? jid_new_parts(elem_text(username), jid_domain(pkt->from), NULL, NULL) : NULL;
    bool is_other = username && (!named || !jid_equal_bare(named, pkt->from));
    jid_free(named);
    if (!*text || strlen(text) > SM_PASSWORD_MAX || is_other) {
        sm_reply_error(sm, pkt, "bad-request");
        return;
    }
    sm_account_set_password(sm, jid_bare(pkt->from), text, on_password_set, sm_pkt_hold(pkt));
}

/* ---- account removal ---------------------------------------------------- */

/* XEP-0077 §3.2: the result first; sm_account_remove then ends the
 * sessions. */
static void on_removed(sm_t *sm, void *ud, sm_account_result_t result)
{
    sm_pkt_t *pkt = ud;
    if (result == SM_ACCOUNT_OK) {
        log_notice("register: %s removed their account", jid_bare(pkt->from));
        sm_reply_result(sm, pkt, NULL);
    } else {
        sm_reply_error(sm, pkt, condition_of(result));
    }
    sm_pkt_release(pkt);
}

static void remove_account(sm_t *sm, sm_pkt_t *pkt)
{
    sm_account_remove(sm, jid_bare(pkt->from), on_removed, sm_pkt_hold(pkt));
}

/* ---- the hook ----------------------------------------------------------- */

static sm_verdict_t on_server(sm_t *sm, sm_pkt_t *pkt)
{
    if (strcmp(pkt->kind, "iq") != 0) return SM_PASS;
    bool is_get = strcmp(pkt->type, "get") == 0;
    if (!is_get && strcmp(pkt->type, "set") != 0) return SM_PASS;
    elem_t *query = elem_first(pkt->stanza);
    if (!query || !elem_is(query, NS_REGISTER, "query")) return SM_PASS;
    /* Only a user of ours, from one of their sessions, about themselves. */
    if (!jid_has_node(pkt->from) || !sm_session(sm, pkt->from)) return SM_PASS;

    if (is_get) {
        elem_t *reply = elem_new(pkt->stanza->arena, NS_REGISTER, "query");
        elem_add(reply, NULL, "registered");
        elem_t *username = elem_add(reply, NULL, "username");
        elem_add_text(username, jid_node(pkt->from), strlen(jid_node(pkt->from)));
        elem_add(reply, NULL, "password");
        sm_reply_result(sm, pkt, reply);
    } else if (elem_child(query, NULL, "remove")) {
        remove_account(sm, pkt);
    } else {
        change_password(sm, pkt, query);
    }
    return SM_HANDLED;
}

void mod_register_init(sm_t *sm); /* listed in modules.c */

void mod_register_init(sm_t *sm)
{
    sm_hook(sm, SM_CHAIN_IN_SERVER, 500, on_server);
    sm_feature(sm, NS_REGISTER);
}
