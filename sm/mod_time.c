/* mod_time.c — the server's clock (XEP-0202, Entity Time).
 *
 * Answers urn:xmpp:time gets to the server with the UTC time (XEP-0082
 * format, to the millisecond) and the server's offset from UTC. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sm.h"

#define NS_TIME "urn:xmpp:time"

static void add_text_child(elem_t *parent, const char *name, const char *text)
{
    elem_t *e = elem_add(parent, NULL, name);
    elem_add_text(e, text, strlen(text));
}

static sm_verdict_t on_server(sm_t *sm, sm_pkt_t *pkt)
{
    if (strcmp(pkt->kind, "iq") != 0) return SM_PASS;
    bool is_get = strcmp(pkt->type, "get") == 0;
    if (!is_get && strcmp(pkt->type, "set") != 0) return SM_PASS;
    elem_t *query = elem_first(pkt->stanza);
    if (!query || !elem_is(query, NS_TIME, "time")) return SM_PASS;
    if (!is_get) {
        sm_reply_error(sm, pkt, "bad-request");
        return SM_HANDLED;
    }

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm utc, local;
    gmtime_r(&now.tv_sec, &utc);
    localtime_r(&now.tv_sec, &local);

    char utc_text[64], tzo[32];
    snprintf(utc_text, sizeof utc_text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
             utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
             (int)(now.tv_nsec / 1000000));
    int offset = (int)local.tm_gmtoff;
    char sign = offset < 0 ? '-' : '+';
    if (offset < 0) offset = -offset;
    snprintf(tzo, sizeof tzo, "%c%02d:%02d", sign, offset / 3600, offset % 3600 / 60);

    elem_t *reply = elem_new(pkt->stanza->arena, NS_TIME, "time");
    add_text_child(reply, "tzo", tzo);
    add_text_child(reply, "utc", utc_text);
    sm_reply_result(sm, pkt, reply);
    return SM_HANDLED;
}

void mod_time_init(sm_t *sm); /* listed in modules.c */

void mod_time_init(sm_t *sm)
{
    sm_hook(sm, SM_CHAIN_IN_SERVER, 500, on_server);
    sm_feature(sm, NS_TIME);
}
