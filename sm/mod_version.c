/* mod_version.c — software version of the server (XEP-0092).
 *
 * Answers jabber:iq:version gets addressed to the server with the name
 * "Hearth" and this build's version; the operating system is told only when
 * sm.version-os is on, since it helps an attacker more than a user. A
 * query to an account is not ours: the core sends it on to the client. */
#include <string.h>
#include <sys/utsname.h>

#include "sm.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define NS_VERSION "jabber:iq:version"

static bool show_os;

static sm_verdict_t on_server(sm_t *sm, sm_pkt_t *pkt)
{
    if (strcmp(pkt->kind, "iq") != 0) return SM_PASS;
    bool is_get = strcmp(pkt->type, "get") == 0;
    if (!is_get && strcmp(pkt->type, "set") != 0) return SM_PASS;
    elem_t *query = elem_first(pkt->stanza);
    if (!query || !elem_is(query, NS_VERSION, "query")) return SM_PASS;
    if (!is_get) {
        sm_reply_error(sm, pkt, "bad-request");
        return SM_HANDLED;
    }

    arena_t *a = pkt->stanza->arena;
    elem_t *reply = elem_new(a, NS_VERSION, "query");
    elem_t *name = elem_add(reply, NULL, "name");
    elem_add_text(name, "Hearth", 6);
    elem_t *version = elem_add(reply, NULL, "version");
    elem_add_text(version, PACKAGE_VERSION, strlen(PACKAGE_VERSION));
    struct utsname u;
    if (show_os && uname(&u) == 0) {
        elem_t *os = elem_add(reply, NULL, "os");
        buf_t text = BUF_INIT;
        buf_printf(&text, "%s %s", u.sysname, u.release);
        elem_add_text(os, text.data, text.len);
        buf_free(&text);
    }
    sm_reply_result(sm, pkt, reply);
    return SM_HANDLED;
}

void mod_version_init(sm_t *sm); /* listed in modules.c */

void mod_version_init(sm_t *sm)
{
    show_os = config_bool(sm_config(sm), "sm.version-os");
    sm_hook(sm, SM_CHAIN_IN_SERVER, 500, on_server);
    sm_feature(sm, NS_VERSION);
}
