/* resolver.h — hearth-resolver: DNS for s2s, and its protocol.
 *
 * The protocol (component routes; s2s is the client). A request:
 *
 *   <route to='resolver' from='s2s'>
 *     <resolve xmlns='urn:hearth:resolver:1' id='N' domain='example.org'/>
 *   </route>
 *
 * The answer goes back to the route's sender, with the request's id and
 * domain:
 *
 *   <route to='s2s' from='resolver'>
 *     <resolved xmlns='urn:hearth:resolver:1' id='N' domain='example.org'>
 *       <target host='xmpp.example.org' port='5270' tls='direct' addr='2001:db8::1'/>
 *       <target host='xmpp.example.org' port='5270' tls='direct' addr='192.0.2.1'/>
 *       <target host='xmpp.example.org' port='5269' tls='starttls' addr='192.0.2.1'/>
 *     </resolved>
 *   </route>
 *
 * one <target> per address, in the order to try them; or, with no target,
 *   <resolved ... error='not-found|timeout|no-service|bad-request'/>.
 * Only requests the router marked role='s2s' (or 'admin') are answered; a
 * component's are dropped and logged once per sender. s2s in turn takes
 * answers only marked role='resolver'.
 *
 * How the list is made (RFC 6120 §3.2, XEP-0368, RFC 2782):
 *   - a static override of the config (resolver/override) wins, no DNS;
 *   - SRV _xmpps-server._tcp (tls='direct') and _xmpp-server._tcp
 *     (tls='starttls') are merged by priority; at equal priority direct TLS
 *     comes first; within one priority and kind, records are ordered at
 *     random by weight, anew for each answer;
 *   - a service whose only record has the target "." is not offered; when
 *     no service is left and one said so: error='no-service';
 *   - no SRV record at all: the domain's own AAAA and A on port 5269;
 *   - every SRV target is resolved to AAAA and A, IPv6 first.
 * Answers are cached for their smallest DNS TTL; failures for
 * resolver.negative-ttl. Nothing here blocks: c-ares runs on the loop.
 *
 * Inside the daemon: main.c reads the config and talks to the router;
 * resolve.c does the lookups, the cache and the ordering. */
#ifndef HEARTH_RESOLVER_H
#define HEARTH_RESOLVER_H

#include <uv.h>

#include "common.h"
#include "metrics.h"

#define NS_RESOLVER "urn:hearth:resolver:1"

typedef struct resolver resolver_t;

/* Called once per request with the finished <resolved/> element, which
 * lives until the callback returns; with NULL when resolver_free cancels
 * the request (only ud is to be released then). */
typedef void (*resolve_cb)(void *ud, const elem_t *resolved);

typedef struct resolver_opts {
    const char *nameserver; /* "host:port[,host:port]"; NULL or "": resolv.conf */
    unsigned long long timeout_ms;
    unsigned long long negative_ttl_ms;
    unsigned long long max_ttl_ms;
    int cache_size;
} resolver_opts_t;

/* NULL if c-ares cannot start (the reason is logged). */
resolver_t *resolver_new(uv_loop_t *loop, const resolver_opts_t *opts);
/* Stop every lookup (their callbacks run with NULL) and close the handles. */
void resolver_free(resolver_t *r);
/* A static answer for domain: target "host:port" (an IP address),
 * is_direct for direct TLS. Repeat to add more, in order. -1 if target is
 * not an IP address with a port. */
int resolver_override(resolver_t *r, const char *domain, const char *target, bool is_direct);
/* Resolve domain; cb runs (maybe before this returns, from the cache) with
 * an element carrying id and domain. ud is the caller's. */
void resolver_lookup(resolver_t *r, const char *domain, const char *id, resolve_cb cb, void *ud);

/* Register the resolver's metrics (docs/metrics.md): requests, those
 * answered from the cache, and those answered with an error. */
void resolver_metrics_init(void);

#endif
