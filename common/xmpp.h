/* xmpp.h — protocol constants and the one place stream and stanza errors are
 * written (RFC 6120 §4.9 and §8.3). Callers name the condition; this file
 * knows its namespace, its error type and the XML around it. */
#ifndef HEARTH_XMPP_H
#define HEARTH_XMPP_H

#include "buf.h"
#include "xml.h"

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_CLIENT "jabber:client"
#define NS_SERVER "jabber:server"
#define NS_COMPONENT_ACCEPT "jabber:component:accept"
#define NS_HEARTH_COMPONENT "urn:hearth:component:1"
#define NS_HEARTH_SESSION "urn:hearth:session:1"
#define NS_CARBONS "urn:xmpp:carbons:2" /* XEP-0280: sm/mod_carbons.c, c2s/session.c */
#define NS_HINTS "urn:xmpp:hints"       /* XEP-0334: sm/mod_carbons.c, sm/mod_offline.c */
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates" /* XEP-0085: the same */
#define NS_STREAM_ERRORS "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_STANZA_ERRORS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"

/* Append <stream:error><condition/>[<text>text</text>]</stream:error>. The
 * caller writes </stream:stream> after it and closes. */
void xmpp_stream_error(buf_t *out, const char *condition, const char *text);
/* Append <failure xmlns='...xmpp-sasl'><condition/></failure>, the SASL
 * failure of RFC 6120 §6.5 (c2s logins, s2s SASL EXTERNAL). */
void xmpp_sasl_failure(buf_t *out, const char *condition);
/* The RFC 6120 §8.3.3 error type (cancel, modify, auth, wait) of a stanza
 * error condition; "cancel" for an unknown one. */
const char *xmpp_error_type(const char *condition);
/* Turn stanza into the error reply to itself, in place: to and from swapped,
 * type='error', an <error/> with the condition (and text) appended. Returns
 * -1 and leaves the stanza alone if it already is an error: an error is
 * never answered with an error (RFC 6120 §8.3.1). */
int xmpp_stanza_error(elem_t *stanza, const char *condition, const char *text);
/* The result to iq, new in its arena: type='result', its id, to its from
 * and from its to (a component's answer; the caller adds the payload). */
elem_t *xmpp_iq_result(const elem_t *iq);

#endif
