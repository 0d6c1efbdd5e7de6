/* mod_admin.c — administration requests from hearthctl (urn:hearth:admin:1).
 *
 * hearthctl connects to the router with the admin account (role admin),
 * binds hearthctl-PID and sends IQs to a local domain in a route; this
 * module answers them. Only a request the router marked role='admin' is
 * obeyed (pkt->role): clients, remote servers and other components are
 * refused with forbidden, whatever name they send from.
 *
 * The payload (one child of the IQ, namespace urn:hearth:admin:1):
 *
 *   <iq type='get'><online/></iq>
 *     -> <online><session jid='FULL JID' c2s='c2s-1'
 *                               available='true|false' [show='away|chat|dnd|xa']
 *                               priority='N'/>...
 *        </online>
 *        every session of this sm (with several sm shards, of the one the
 *        router picked);
 *   <iq type='set'><deleted jid='BARE JID'/></iq>
 *     -> empty result: the account was deleted from the store (hearthctl
 *        deluser); the core forgets it and its sessions end with the
 *        not-authorized stream error;
 *   <iq type='set'><created jid='BARE JID'/></iq>
 *     -> empty result: the account was added to the store (hearthctl
 *        adduser); the core forgets that it was known not to exist;
 *   <iq type='set'><disabled jid='BARE JID'/></iq>
 *     -> empty result: the account was disabled in the store (hearthctl
 *        disable); its sessions end with the not-authorized stream error;
 *   <iq type='set'><kick jid='BARE OR FULL JID'/></iq>
 *     -> <kick sessions='N'/>: every session of the account, or the one of
 *        that full JID, ended with the policy-violation stream error
 *        (hearthctl kick); N of them, 0 when none was online.
 * Anything else in the namespace: bad-request. */
#include <stdio.h>
#include <string.h>

#include "sm.h"

#define NS_ADMIN "urn:hearth:admin:1"

/* The local account a command's jid names, or NULL. */
static jid_t *account_jid(const sm_t *sm, const elem_t *cmd)
{
    return sm_local_account(sm, elem_attr(cmd, "jid"));
}

static void add_session(sess_t *sess, void *ud)
{
    elem_t *online = ud;
    char priority[16];
    snprintf(priority, sizeof priority, "%d", sess->priority);
    elem_t *s = elem_add(online, NULL, "session");
    elem_set_attr(s, "jid", jid_full(sess->jid));
    elem_set_attr(s, "c2s", sess->c2s);
    elem_set_attr(s, "available", sess->is_available ? "true" : "false");
    /* RFC 6121 §4.7.2.1: away, chat, dnd or xa; absent is plain available */
    const elem_t *show = sess->presence ? elem_child(sess->presence, NULL, "show") : NULL;
    const char *value = show && sess->is_available ? elem_text(show) : "";
    if (strcmp(value, "away") == 0 || strcmp(value, "chat") == 0 || strcmp(value, "dnd") == 0 ||
        strcmp(value, "xa") == 0)
        elem_set_attr(s, "show", value);
    elem_set_attr(s, "priority", priority);
}

/* kick: the account or one of its sessions. */
static void kick(sm_t *sm, sm_pkt_t *pkt, const elem_t *cmd)
{
    const char *text = elem_attr(cmd, "jid");
    jid_t *j = text ? jid_new(text, strlen(text), NULL) : NULL;
    if (!j || !jid_has_node(j) || !sm_is_local(sm, jid_domain(j))) {
        sm_reply_error(sm, pkt, "jid-malformed");
    } else {
        char n[16];
        snprintf(n, sizeof n, "%d",
                 sm_end_user_sessions(sm, jid_bare(j), jid_has_resource(j) ? jid_resource(j) : NULL,
                                      "policy-violation"));
        log_notice("admin: %s kicked: %s session(s) ended", jid_full(j), n);
        elem_t *answer = elem_new(pkt->stanza->arena, NS_ADMIN, "kick");
        elem_set_attr(answer, "sessions", n);
        sm_reply_result(sm, pkt, answer);
    }
    jid_free(j);
}

static sm_verdict_t on_server(sm_t *sm, sm_pkt_t *pkt)
{
    if (strcmp(pkt->kind, "iq") != 0) return SM_PASS;
    bool is_get = strcmp(pkt->type, "get") == 0;
    if (!is_get && strcmp(pkt->type, "set") != 0) return SM_PASS;
    elem_t *cmd = elem_first(pkt->stanza);
    if (!cmd || strcmp(cmd->ns, NS_ADMIN) != 0) return SM_PASS;
    if (pkt->role != ROLE_ADMIN) {
        log_warn("admin: request from %s refused", jid_full(pkt->from));
        sm_reply_error(sm, pkt, "forbidden");
        return SM_HANDLED;
    }

    if (is_get && strcmp(cmd->name, "online") == 0) {
        elem_t *online = elem_new(pkt->stanza->arena, NS_ADMIN, "online");
        sm_each_session(sm, add_session, online);
        sm_reply_result(sm, pkt, online);
    } else if (!is_get && strcmp(cmd->name, "deleted") == 0) {
        jid_t *j = account_jid(sm, cmd);
        if (!j) {
            sm_reply_error(sm, pkt, "jid-malformed");
        } else {
            log_notice("admin: %s was deleted; ending its sessions", jid_bare(j));
            sm_account_forget(sm, jid_bare(j));
            sm_end_user_sessions(sm, jid_bare(j), NULL, "not-authorized");
            sm_reply_result(sm, pkt, NULL);
        }
        jid_free(j);
    } else if (!is_get && strcmp(cmd->name, "created") == 0) {
        jid_t *j = account_jid(sm, cmd);
        if (!j) {
            sm_reply_error(sm, pkt, "jid-malformed");
        } else {
            sm_account_created(sm, jid_bare(j));
            sm_reply_result(sm, pkt, NULL);
        }
        jid_free(j);
    } else if (!is_get && strcmp(cmd->name, "disabled") == 0) {
        jid_t *j = account_jid(sm, cmd);
        if (!j) {
            sm_reply_error(sm, pkt, "jid-malformed");
        } else {
            log_notice("admin: %s was disabled; ending its sessions", jid_bare(j));
            sm_end_user_sessions(sm, jid_bare(j), NULL, "not-authorized");
            sm_reply_result(sm, pkt, NULL);
        }
        jid_free(j);
    } else if (!is_get && strcmp(cmd->name, "kick") == 0) {
        kick(sm, pkt, cmd);
    } else {
        sm_reply_error(sm, pkt, "bad-request");
    }
    return SM_HANDLED;
}

void mod_admin_init(sm_t *sm); /* listed in modules.c */

void mod_admin_init(sm_t *sm)
{
    sm_hook(sm, SM_CHAIN_IN_SERVER, 200, on_server);
}
