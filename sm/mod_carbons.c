/* mod_carbons.c — Message Carbons (XEP-0280 1.0, urn:xmpp:carbons:2): every
 * device of a user sees the conversations the others have.
 *
 * A session turns carbons on and off with an IQ set of <enable/> or
 * <disable/> to the server (no to, its own bare JID or its domain). While on:
 *   - a message it gets no original of, sent to its account (to the bare
 *     JID or to another resource), reaches it as
 *       <message from='BARE' to='FULL' type=…><received xmlns='urn:xmpp:carbons:2'>
 *         <forwarded xmlns='urn:xmpp:forward:0'>the message</forwarded></received></message>
 *     (the sessions that get the original, by RFC 6121 §8.5, get no copy:
 *     sm_message_goes_to);
 *   - a message another session of the same account sends reaches it as
 *     the same with <sent/>; the sender never gets a copy of its own.
 * Which messages (XEP-0280 §6): chat; normal with a body, with the payloads
 * of instant messaging (receipts, chat states, chat markers, the call
 * signalling of XEP-0353 Jingle Message Initiation) or with a XEP-0334
 * <store xmlns='urn:xmpp:hints'/> (a sender's word that the message
 * matters though it has no body); errors; never groupchat or headline, nor
 * one with <private xmlns='urn:xmpp:carbons:2'/> or
 * <no-copy xmlns='urn:xmpp:hints'/>, nor one that is itself a carbon, nor
 * one between resources of the same account (they see it anyway).
 * Private messages of a group chat are of type chat, so they are copied.
 * XEP-0353 wants every device of both parties to see a call's propose,
 * proceed, reject, retract and finish: its messages are of type chat, and
 * a client of an older revision that sends them as normal is covered too.
 *
 * The choice survives a restart of the sm: the c2s tells it again when it
 * re-announces the session (carbons='true' on action='resume', beside
 * roster='true'; c2s/session.c watches the client's enable and disable). */
#include <string.h>

#include "sm.h"

#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_RECEIPTS "urn:xmpp:receipts"
#define NS_MARKERS "urn:xmpp:chat-markers:0"
#define NS_JINGLE_MESSAGE "urn:xmpp:jingle-message:0"

static int slot; /* sess->slots[slot] != NULL: carbons on */

static bool is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* A body, a payload of instant messaging or a <store/> hint: what makes a
 * normal message one of a conversation. One pass over the children. */
static bool is_conversation(const elem_t *msg)
{
    for (const elem_t *c = elem_first(msg); c; c = c->next) {
        if (!c->name) continue; /* text */
        const char *ns = c->ns;
        if (is(ns, NS_RECEIPTS) || is(ns, NS_CHATSTATES) || is(ns, NS_MARKERS) ||
            is(ns, NS_JINGLE_MESSAGE))
            return true;
        if ((is(ns, NS_CLIENT) && is(c->name, "body")) ||
            (is(ns, NS_HINTS) && is(c->name, "store")))
            return true;
    }
    return false;
}

/* XEP-0280 §6. */
static bool is_eligible(const sm_pkt_t *pkt)
{
    const elem_t *msg = pkt->stanza;
    if (elem_child(msg, NS_CARBONS, "private") || elem_child(msg, NS_HINTS, "no-copy") ||
        elem_child(msg, NS_CARBONS, "received") || elem_child(msg, NS_CARBONS, "sent"))
        return false;
    const char *type = pkt->type;
    if (is(type, "chat") || is(type, "error")) return true;
    if (!is(type, "normal") && !is(type, "")) return false;
    return is_conversation(msg);
}

/* <message from=BARE type=…><HOW><forwarded>msg</forwarded></HOW></message>
 * to each session of bare with carbons on for which skip() is false, when
 * the message is eligible (asked only once such a session is found: most
 * users have none, and most messages cost no look at their children). */
static void copy_to_sessions(sm_t *sm, const sm_pkt_t *pkt, const char *bare, const char *how,
                             bool (*skip)(sm_t *sm, const sm_pkt_t *pkt, const sess_t *s))
{
    arena_t *a = NULL;
    elem_t *copy = NULL;
    for (sess_t *s = sm_sessions(sm, bare); s; s = s->next) {
        if (!s->slots[slot] || skip(sm, pkt, s)) continue;
        if (!copy) {
            if (!is_eligible(pkt)) return;
            a = arena_new(0);
            copy = elem_new(a, NS_CLIENT, "message");
            elem_set_attr(copy, "from", bare);
            if (*pkt->type) elem_set_attr(copy, "type", pkt->type);
            elem_add_copy(elem_add(elem_add(copy, NS_CARBONS, how), NS_FORWARD, "forwarded"),
                          pkt->stanza);
        }
        elem_set_attr(copy, "to", jid_full(s->jid));
        sm_send_to_sess(sm, s, copy);
    }
    if (a) arena_free(a);
}

static bool is_sender(sm_t *sm, const sm_pkt_t *pkt, const sess_t *s)
{
    (void)sm;
    return s == pkt->sess;
}

static bool is_to_own_account(const sm_pkt_t *pkt)
{
    return pkt->to && is(jid_bare(pkt->to), jid_bare(pkt->from));
}

/* An IQ set of <enable/> or <disable/> from a session, to its server. */
static sm_verdict_t on_iq(sm_t *sm, sm_pkt_t *pkt)
{
    const elem_t *cmd = elem_first(pkt->stanza);
    if (!cmd || !cmd->ns || !is(cmd->ns, NS_CARBONS) || !sm_is_to_own_server(pkt)) return SM_PASS;
    if (!is(pkt->type, "set") || (!is(cmd->name, "enable") && !is(cmd->name, "disable"))) {
        sm_reply_error(sm, pkt, "bad-request");
        return SM_HANDLED;
    }
    pkt->sess->slots[slot] = is(cmd->name, "enable") ? (void *)1 : NULL;
    sm_reply_result(sm, pkt, NULL);
    return SM_HANDLED;
}

static sm_verdict_t on_sess(sm_t *sm, sm_pkt_t *pkt)
{
    if (is(pkt->kind, "iq")) return on_iq(sm, pkt);
    if (is(pkt->kind, "message") && !is_to_own_account(pkt))
        copy_to_sessions(sm, pkt, jid_bare(pkt->from), "sent", is_sender);
    return SM_PASS;
}

static sm_verdict_t on_user(sm_t *sm, sm_pkt_t *pkt)
{
    if (is(pkt->kind, "message") && !is_to_own_account(pkt))
        copy_to_sessions(sm, pkt, jid_bare(pkt->to), "received", sm_message_goes_to);
    return SM_PASS;
}

/* A session re-announced after a restart says whether it had them on. */
static sm_verdict_t on_sess_start(sm_t *sm, sm_pkt_t *pkt)
{
    (void)sm;
    const char *carbons = elem_attr(pkt->stanza, "carbons");
    pkt->sess->slots[slot] = carbons && is(carbons, "true") ? (void *)1 : NULL;
    return SM_PASS;
}

void mod_carbons_init(sm_t *sm); /* listed in modules.c */

void mod_carbons_init(sm_t *sm)
{
    slot = sm_slot(sm);
    /* After blocking (100) and every module that takes a message. */
    sm_hook(sm, SM_CHAIN_IN_SESS, 800, on_sess);
    sm_hook(sm, SM_CHAIN_IN_USER, 800, on_user);
    sm_hook(sm, SM_CHAIN_SESS_START, 800, on_sess_start);
    sm_feature(sm, NS_CARBONS);
}
