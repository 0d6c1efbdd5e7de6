/* mod_ping.c — pings to the server (XEP-0199 §4.2, client-to-server).
 *
 * An urn:xmpp:ping get to the server (or with no to) gets an empty result.
 * Pings to an account or a resource are the core's to deliver; the pings
 * the server sends to find dead connections are c2s's. */
#include <string.h>

#include "sm.h"

#define NS_PING "urn:xmpp:ping"

static sm_verdict_t on_server(sm_t *sm, sm_pkt_t *pkt)
{
    if (strcmp(pkt->kind, "iq") != 0) return SM_PASS;
    bool is_get = strcmp(pkt->type, "get") == 0;
    if (!is_get && strcmp(pkt->type, "set") != 0) return SM_PASS;
    elem_t *ping = elem_first(pkt->stanza);
    if (!ping || !elem_is(ping, NS_PING, "ping")) return SM_PASS;
    if (is_get)
        sm_reply_result(sm, pkt, NULL);
    else
        sm_reply_error(sm, pkt, "bad-request");
    return SM_HANDLED;
}

void mod_ping_init(sm_t *sm); /* listed in modules.c */

void mod_ping_init(sm_t *sm)
{
    sm_hook(sm, SM_CHAIN_IN_SERVER, 500, on_server);
    sm_feature(sm, NS_PING);
}
