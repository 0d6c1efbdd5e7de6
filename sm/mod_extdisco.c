/* mod_extdisco.c — STUN and TURN services for calls (XEP-0215, External
 * Service Discovery, urn:xmpp:extdisco:2, and :1 answered the same way).
 *
 * The services are the sm.external-service elements of hearth.xml. A
 * session of a local user asks its server (no to, or its domain):
 *   <services xmlns='urn:xmpp:extdisco:2' [type='turn']/>: every service
 *     (of that type), each <service type host port transport/>, TURN ones
 *     with fresh credentials;
 *   <credentials><service host='…' type='…' [port='…']/></credentials>:
 *     credentials for the services named; item-not-found for one that is
 *     not offered.
 * TURN credentials follow the TURN REST scheme coturn implements with
 * use-auth-secret: username EXPIRY:BARE-JID (EXPIRY in Unix seconds, ttl
 * from now), password base64(HMAC-SHA1(secret, username)), expires the same
 * instant in XEP-0082 form, restricted='1'. The secret never leaves the sm.
 * Only the user's own sessions are answered: the same request from
 * another server or a component reaches the core, which answers
 * service-unavailable. */
#include <gnutls/crypto.h>
#include <gsasl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sm.h"

#define NS_EXTDISCO_2 "urn:xmpp:extdisco:2"
#define NS_EXTDISCO_1 "urn:xmpp:extdisco:1"

typedef struct service {
    const char *type, *host, *transport, *port; /* from the config */
    char *secret;                               /* TURN only */
    long long ttl;
} service_t;

static service_t *services;
static int nservices;

static bool is(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static bool needs_credentials(const service_t *s)
{
    return is(s->type, "turn") || is(s->type, "turns");
}

/* <service/> for s under parent, with credentials for bare when it takes
 * them. */
static void add_service(elem_t *parent, const char *ns, const service_t *s, const char *bare)
{
    elem_t *e = elem_add(parent, ns, "service");
    elem_set_attr(e, "type", s->type);
    elem_set_attr(e, "host", s->host);
    elem_set_attr(e, "port", s->port);
    elem_set_attr(e, "transport", s->transport);
    if (!needs_credentials(s)) return;
    time_t expiry = time(NULL) + (time_t)s->ttl;
    char username[JID_STRING_MAX + 32], expires[32];
    snprintf(username, sizeof username, "%lld:%s", (long long)expiry, bare);
    unsigned char mac[20];
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA1, s->secret, strlen(s->secret), username, strlen(username),
                         mac) < 0)
        log_fatal("HMAC-SHA1 failed");
    char *password = NULL;
    size_t len = 0;
    if (gsasl_base64_to((const char *)mac, sizeof mac, &password, &len) != GSASL_OK)
        log_fatal("out of memory");
    struct tm tm;
    gmtime_r(&expiry, &tm);
    strftime(expires, sizeof expires, "%Y-%m-%dT%H:%M:%SZ", &tm); /* XEP-0082 */
    elem_set_attr(e, "username", username);
    elem_set_attr(e, "password", password);
    elem_set_attr(e, "expires", expires);
    elem_set_attr(e, "restricted", "1");
    gsasl_free(password);
}

static sm_verdict_t on_sess(sm_t *sm, sm_pkt_t *pkt)
{
    if (!is(pkt->kind, "iq")) return SM_PASS;
    const elem_t *q = elem_first(pkt->stanza);
    if (!q || !(is(q->ns, NS_EXTDISCO_2) || is(q->ns, NS_EXTDISCO_1)) || !sm_is_to_own_server(pkt))
        return SM_PASS;
    bool is_services = is(q->name, "services"), is_credentials = is(q->name, "credentials");
    if (!is(pkt->type, "get") || (!is_services && !is_credentials)) {
        sm_reply_error(sm, pkt, "bad-request");
        return SM_HANDLED;
    }
    const char *bare = jid_bare(pkt->from);
    arena_t *a = arena_new(0);
    elem_t *answer = elem_new(a, q->ns, q->name);
    if (is_services) {
        const char *type = elem_attr(q, "type");
        for (int i = 0; i < nservices; i++)
            if (!type || is(type, services[i].type)) add_service(answer, q->ns, &services[i], bare);
    } else {
        for (const elem_t *want = elem_child(q, q->ns, "service"); want;
             want = elem_next(want, q->ns, "service")) {
            const char *host = elem_attr(want, "host"), *type = elem_attr(want, "type");
            const char *port = elem_attr(want, "port");
            int i = 0;
            while (i < nservices && !(is(host, services[i].host) && is(type, services[i].type) &&
                                      (!port || is(port, services[i].port))))
                i++;
            if (i == nservices) {
                arena_free(a);
                sm_reply_error(sm, pkt, "item-not-found");
                return SM_HANDLED;
            }
            add_service(answer, q->ns, &services[i], bare);
        }
    }
    sm_reply_result(sm, pkt, answer);
    arena_free(a);
    return SM_HANDLED;
}

static void load(const config_t *c)
{
    const char *at = "sm.external-service";
    nservices = config_count(c, at);
    if (nservices && !(services = calloc((size_t)nservices, sizeof *services)))
        log_fatal("out of memory");
    for (int i = 0; i < nservices; i++) {
        service_t *s = &services[i];
        s->type = config_get_at(c, "sm.external-service@type", i);
        s->host = config_get_at(c, "sm.external-service@host", i);
        s->port = config_get_at(c, "sm.external-service@port", i);
        s->transport = config_get_at(c, "sm.external-service@transport", i);
        s->ttl = atoll(config_get_at(c, "sm.external-service@ttl", i));
        if (!s->type || !s->host || !*s->host)
            log_fatal("%s: sm/external-service %d needs a type and a host", config_file(c), i + 1);
        char *err = NULL;
        s->secret = config_secret(c, "sm.external-service@secret",
                                  "sm.external-service@secret-file", i, &err);
        if (err) log_fatal("%s: sm/external-service %s: %s", config_file(c), s->host, err);
        if (needs_credentials(s) && (!s->secret || !*s->secret))
            log_fatal("%s: sm/external-service %s: a TURN service needs the secret it shares "
                      "with the TURN server (secret or secret-file; coturn's static-auth-secret)",
                      config_file(c), s->host);
    }
}

void mod_extdisco_init(sm_t *sm); /* listed in modules.c */

void mod_extdisco_init(sm_t *sm)
{
    load(sm_config(sm));
    sm_hook(sm, SM_CHAIN_IN_SESS, 500, on_sess);
    sm_feature(sm, NS_EXTDISCO_2);
    sm_feature(sm, NS_EXTDISCO_1);
}
