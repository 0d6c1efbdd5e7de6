/* session.c — resource binding and the session protocol with the sm
 * (DESIGN.md, "The session protocol"), and the stanzas of a session both
 * ways.
 *
 * Bind: <session xmlns='urn:hearth:session:1' action='start' jid='FULL'
 * cid='c2s-1:N'/> goes to the user's domain, routed with user='BARE'. The
 * sm answers, in a route to this instance, with action='started' sid='…'
 * (then the client gets its bind result; a jid attribute, when present,
 * is the JID the sm chose) or action='failed' carrying an <error/> whose
 * condition the bind error takes. No answer within a few seconds gives
 * internal-server-error; a route bounced by the router (no sm for the
 * domain) gives service-unavailable. A 'started' that comes too late is
 * answered with action='end' so the sm does not keep a session nobody
 * holds.
 *
 * cid: "<instance>:<16 hex digits>", 64 random bits new for every bind
 * attempt; routes from the sm find their client by it (the route's cid
 * attribute, else the session element's). Never a file descriptor or a
 * counter: nobody can guess another client's.
 *
 * With one sm, these routes take the sm's direct link (common/direct.c)
 * once it is up, instead of the router: the same routes, marked with the
 * same role by the link.
 *
 * Trust: routes for clients count only from the sm (the router marks each
 * route with its sender's role: role='sm'), and a stanza reaches a client
 * only when its route carries the sid the sm gave that session; the
 * router's own bounces (role='router') of what we sent come back too.
 * Anything else is dropped and logged once per sender.
 *
 * After binding, every client stanza is checked (RFC 6120 §8.1.2.1: a
 * from other than the session's JID, bare or full, is the stream error
 * invalid-from; an IQ without an id or type is answered bad-request), and
 * it goes to the sm as
 * <route to='DOMAIN' from='c2s-1' user='BARE' cid='…' sid='…'>stanza</route>,
 * the stanza as the client's bytes with xmlns='jabber:client' on its start
 * tag (serialized from its tree only when it has a prefix, whose
 * declaration may be outside it). Its from is stamped with the full JID by
 * the sm (sm/deliver.c), the one place that does. Stanzas from the sm are
 * written to the client in jabber:client; their routes arrive with the
 * attributes only (comp_set_shallow), and one stanza in jabber:client as
 * the sm writes it goes out as its bytes, unparsed.
 *
 * At-least-once (sm/ack.c tells the sm's side): every stanza route of a
 * session, both ways, carries seq='N', the session's next number in that
 * direction (from 1). The sender keeps the route until the receiver
 * acknowledges it; the receiver takes a seq at most once. Acknowledgements
 * gather for ACK_DELAY_MS and go with the next stanza routed after that, in
 * the same write (no wake-up of their own at a light load), or ACK_MAX_MS
 * after the first was due when nothing else goes; batched:
 *   <route to='DOMAIN' from='c2s-1' user='BARE'>
 *     <ack xmlns='urn:hearth:session:1'><a cid='…' sid='…' h='N'/>…</ack>
 *   </route>
 * (one route per domain, or per session when sm.shards > 1, so each
 * reaches its shard); the sm answers the same way to this instance. The
 * client leaving sends action='end' with h='N', what it was given: the sm
 * delivers anew what came after. A resume carries h (what this side has
 * taken) and next (the first seq it will send again), and after it the
 * session's unacknowledged routes go again, in order. Once every session
 * of a domain is resumed, <session action='resumed'/> tells its sm (routed
 * with user='c2s-N'), which waits for that from every c2s before it takes
 * a user without a session for offline (sm/hold.c).
 *
 * action='ended' from the sm (resource conflict, account removed, kick)
 * closes the stream with the reason as stream error. The client leaving
 * sends action='end'.
 *
 * Sessions outlive a restart of the router or the sm. When the router link
 * is lost, or the sm's domain is no longer advertised, the clients stay
 * connected and what their sessions send is held (hold.c). When the domain
 * is advertised again and this c2s is bound, every session of the domain
 * is re-announced, before anything held is sent:
 *   <session action='resume' jid='FULL' cid='…' sid='…' [roster='true'] [carbons='true']>
 *     [the session's last broadcast available presence, in jabber:client]
 *   </session>
 * routed like its stanzas (user='BARE', cid, sid). roster='true': the
 * client has asked for its roster (it gets roster pushes); carbons='true':
 * it turned message carbons on (XEP-0280, sm/mod_carbons.c). An sm that
 * still has the session keeps it; one that restarted rebuilds it with that
 * sid (sm/session.c). In turn the sm asks about the sessions it holds here,
 * in batches:
 *   <session action='check'><held jid='FULL' cid='…' sid='…'/>…</session>
 * and each one that is not held here any more is answered action='end',
 * as if its client had just left (so no session outlives its client as a
 * ghost); then, routed with the user of the batch's first session (so it
 * reaches the shard that asked), <session action='checked'/>: the ends
 * are all sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s.h"

#define PING_ID "c2s-ping"

/* ---- the cid table ------------------------------------------------------ */

static void table_grow(c2s_t *c2s)
{
    size_t size = c2s->by_cid_size ? c2s->by_cid_size * 2 : 1024;
    client_t **t = calloc(size, sizeof(*t));
    if (!t) log_fatal("out of memory");
    for (size_t i = 0; i < c2s->by_cid_size; i++) {
        client_t *cl = c2s->by_cid[i];
        while (cl) {
            client_t *next = cl->cid_next;
            cl->cid_next = t[cl->cid_num % size];
            t[cl->cid_num % size] = cl;
            cl = next;
        }
    }
    free(c2s->by_cid);
    c2s->by_cid = t;
    c2s->by_cid_size = size;
}

static void table_add(c2s_t *c2s, client_t *cl)
{
    if (c2s->by_cid_count >= c2s->by_cid_size) table_grow(c2s);
    client_t **slot = &c2s->by_cid[cl->cid_num % c2s->by_cid_size];
    cl->cid_next = *slot;
    *slot = cl;
    c2s->by_cid_count++;
}

static void table_remove(c2s_t *c2s, client_t *cl)
{
    if (!cl->cid_num || !c2s->by_cid_size) return;
    for (client_t **p = &c2s->by_cid[cl->cid_num % c2s->by_cid_size]; *p; p = &(*p)->cid_next) {
        if (*p == cl) {
            *p = cl->cid_next;
            c2s->by_cid_count--;
            break;
        }
    }
    cl->cid_num = 0;
    cl->cid_next = NULL;
    cl->cid[0] = '\0';
}

/* The client of a cid "c2s-1:0123456789abcdef" of this instance, or NULL. */
static client_t *table_find(c2s_t *c2s, const char *cid)
{
    size_t n = strlen(c2s->id);
    if (!cid || strncmp(cid, c2s->id, n) != 0 || cid[n] != ':' || !c2s->by_cid_size ||
        strlen(cid + n + 1) != 16)
        return NULL;
    char *end = NULL;
    unsigned long long num = strtoull(cid + n + 1, &end, 16);
    if (!end || *end || num == 0) return NULL;
    for (client_t *cl = c2s->by_cid[num % c2s->by_cid_size]; cl; cl = cl->cid_next)
        if (cl->cid_num == num) return cl;
    return NULL;
}

void session_table_free(c2s_t *c2s)
{
    free(c2s->by_cid);
    c2s->by_cid = NULL;
    c2s->by_cid_size = c2s->by_cid_count = 0;
}

/* ---- routes to the sm --------------------------------------------------- */

/* <route to=DOMAIN from=us user=USER [cid] [sid] [seq]> (cid, sid NULL and
 * seq 0: none). */
static void route_seq(buf_t *b, uint64_t seq)
{
    if (seq) {
        buf_appends(b, " seq='");
        buf_append_u64(b, seq);
        buf_appends(b, "'");
    }
    buf_appends(b, ">");
}

static void route_open(buf_t *b, c2s_t *c2s, const char *domain, const char *user, const char *cid,
                       const char *sid, uint64_t seq)
{
    comp_route_head(b, domain, c2s->id, user, cid, sid);
    route_seq(b, seq);
}

/* The sm named cl's session: its stanzas' routes all start alike, so
 * that start is written once. */
static void set_sid(client_t *cl, const char *sid)
{
    free(cl->sid);
    free(cl->route_head);
    buf_t b = BUF_INIT;
    comp_route_head(&b, cl->domain, cl->c2s->id, cl->user, cl->cid, sid);
    if (!(cl->sid = strdup(sid)) || !(cl->route_head = strndup(b.data, b.len)))
        log_fatal("out of memory");
    buf_free(&b);
}

static int send_session(c2s_t *c2s, const char *domain, const char *user, const char *cid,
                        const char *action, const char *jid, const char *sid)
{
    buf_t *b = &c2s->scratch;
    buf_reset(b);
    route_open(b, c2s, domain, user, cid, sid, 0);
    buf_appends(b, "<session xmlns='" NS_HEARTH_SESSION "'");
    xml_attr(b, "action", action);
    if (jid) xml_attr(b, "jid", jid);
    xml_attr(b, "cid", cid);
    if (sid) xml_attr(b, "sid", sid);
    buf_appends(b, "/></route>");
    return c2s->comp ? comp_send_raw(c2s->comp, b->data, b->len) : -1;
}

/* <account action=ACTION jid=JID [contact=CONTACT]/> to JID's shard. */
static int send_account(c2s_t *c2s, const char *domain, const char *action, const char *jid,
                        const char *contact)
{
    buf_t *b = &c2s->scratch;
    buf_reset(b);
    route_open(b, c2s, domain, jid, NULL, NULL, 0);
    buf_appends(b, "<account xmlns='" NS_HEARTH_SESSION "'");
    xml_attr(b, "action", action);
    xml_attr(b, "jid", jid);
    if (contact) xml_attr(b, "contact", contact);
    buf_appends(b, "/></route>");
    return c2s->comp ? comp_send_raw(c2s->comp, b->data, b->len) : -1;
}

void session_account_created(c2s_t *c2s, const char *domain, const char *bare, const char *inviter)
{
    const char *at = inviter ? strrchr(inviter, '@') : NULL;
    if (send_account(c2s, domain, "created", bare, inviter) < 0 ||
        (at && send_account(c2s, at + 1, "invited", inviter, bare) < 0))
        log_info("%s: router link down: the sm is not told of the new account %s", c2s->id, bare);
}

/* ---- bind --------------------------------------------------------------- */

static void bind_error(client_t *cl, const char *condition, const char *text)
{
    arena_t *a = arena_new(0);
    elem_t *iq = elem_new(a, NS_CLIENT, "iq");
    elem_set_attr(iq, "type", "set");
    elem_set_attr(iq, "id", cl->bind_iq_id ? cl->bind_iq_id : "");
    elem_add(iq, NS_BIND, "bind");
    client_error_reply(cl, iq, condition, text);
    arena_free(a);
}

/* Back to "authenticated, not bound": the client may try again. */
static void bind_reset(client_t *cl)
{
    table_remove(cl->c2s, cl);
    if (cl->jid) jid_free(cl->jid);
    cl->jid = NULL;
    free(cl->bind_iq_id);
    cl->bind_iq_id = NULL;
    cl->bind_deadline = 0;
    if (cl->state == CL_BINDING) cl->state = CL_AUTHED;
}

/* 64 random bits, not 0 and not in use. */
static uint64_t new_cid(c2s_t *c2s)
{
    uint64_t n;
    char cid[64];
    do {
        tls_random(&n, sizeof n);
        snprintf(cid, sizeof cid, "%s:%016llx", c2s->id, (unsigned long long)n);
    } while (n == 0 || table_find(c2s, cid));
    return n;
}

void session_bind(client_t *cl, elem_t *iq)
{
    c2s_t *c2s = cl->c2s;
    const char *id = elem_attr(iq, "id"), *type = elem_attr(iq, "type");
    if (!id) {
        client_error_reply(cl, iq, "bad-request", "an IQ needs an id");
        return;
    }
    if (!type || strcmp(type, "set") != 0) {
        client_error_reply(cl, iq, "bad-request", NULL);
        return;
    }
    elem_t *bind = elem_child(iq, NS_BIND, "bind");
    elem_t *res = elem_child(bind, NS_BIND, "resource");
    const char *resource = res ? elem_text(res) : "";
    char generated[33];
    if (!*resource) {
        random_hex(generated, 8);
        resource = generated;
    }
    buf_t *b = &c2s->scratch;
    buf_reset(b);
    buf_printf(b, "%s/%s", cl->user, resource);
    const char *why = NULL;
    jid_t *j = jid_new(b->data, b->len, &why);
    if (!j) {
        elem_unlink(bind);
        client_error_reply(cl, iq, "bad-request", why);
        return;
    }
    cl->jid = j;
    cl->bind_iq_id = strdup(id);
    if (!cl->bind_iq_id) log_fatal("out of memory");
    cl->cid_num = new_cid(c2s);
    snprintf(cl->cid, sizeof cl->cid, "%s:%016llx", c2s->id, (unsigned long long)cl->cid_num);
    table_add(c2s, cl);
    cl->state = CL_BINDING;
    if (send_session(c2s, cl->domain, cl->user, cl->cid, "start", jid_full(j), NULL) < 0) {
        bind_error(cl, "service-unavailable", "the server is not ready");
        bind_reset(cl);
        return;
    }
    cl->bind_deadline = uv_now(c2s->loop) + c2s->bind_timeout;
    client_arm(cl);
}

void session_bind_timeout(client_t *cl)
{
    if (cl->state != CL_BINDING) return;
    log_warn("%s: no answer from the sm of %s to binding %s", cl->c2s->id, cl->domain,
             jid_full(cl->jid));
    bind_error(cl, "internal-server-error", "no answer from the session manager");
    bind_reset(cl);
}

static void bind_started(client_t *cl, elem_t *session)
{
    const char *sid = elem_attr(session, "sid"), *jid = elem_attr(session, "jid");
    if (jid && strcmp(jid, jid_full(cl->jid)) != 0) {
        jid_t *j = jid_new(jid, strlen(jid), NULL);
        if (j && strcmp(jid_bare(j), cl->user) == 0 && jid_has_resource(j)) {
            jid_free(cl->jid);
            cl->jid = j;
        } else if (j) {
            jid_free(j);
        }
    }
    set_sid(cl, sid);
    cl->state = CL_BOUND;
    cl->bind_deadline = 0;
    cl->last_read = uv_now(cl->c2s->loop);
    client_arm(cl);
    log_info("%s (%s): %s bound (%s)", cl->c2s->id, client_peer(cl), jid_full(cl->jid), cl->cid);

    arena_t *a = arena_new(0);
    elem_t *bind = elem_new(a, NS_BIND, "bind");
    elem_t *j = elem_add(bind, NULL, "jid");
    elem_add_text(j, jid_full(cl->jid), strlen(jid_full(cl->jid)));
    client_iq_result(cl, cl->bind_iq_id, bind);
    arena_free(a);
    free(cl->bind_iq_id);
    cl->bind_iq_id = NULL;
}

/* The condition of the <error/> an action='failed' carries. */
static const char *error_condition(const elem_t *session)
{
    elem_t *err = elem_child(session, NULL, "error");
    for (elem_t *c = err ? elem_first(err) : NULL; c; c = elem_next(c, NULL, NULL))
        if (c->ns && strcmp(c->ns, NS_STANZAS) == 0 && strcmp(c->name, "text") != 0) return c->name;
    return "internal-server-error";
}

/* ---- stanzas from the client -------------------------------------------- */

/* Is from (as the client wrote it) the session's full or bare JID? */
static bool is_own_jid(const client_t *cl, const char *from)
{
    char prepped[JID_STRING_MAX];
    if (jid_prep(from, strlen(from), prepped, NULL) < 0) return false;
    return strcmp(prepped, jid_full(cl->jid)) == 0 || strcmp(prepped, cl->user) == 0;
}

static bool is_iq_type(const char *t)
{
    return t && (strcmp(t, "get") == 0 || strcmp(t, "set") == 0 || strcmp(t, "result") == 0 ||
                 strcmp(t, "error") == 0);
}

/* Is to empty, the client's domain or its own bare JID (the server)? */
static bool is_to_server(const client_t *cl, const char *to)
{
    return !to || strcmp(to, cl->domain) == 0;
}

/* A request the server answers for the client's account: to nothing, its
 * domain or its own bare JID. */
static bool is_to_own_account(const client_t *cl, const elem_t *stanza)
{
    const char *to = elem_attr(stanza, "to");
    return is_to_server(cl, to) || strcmp(to, cl->user) == 0;
}

/* What a resume tells the sm of the session (the header): its broadcast
 * presence (the bytes about to be routed), its interest in the roster and
 * whether it turned carbons on (sm/mod_carbons.c answers every such set
 * with a result, so the request is the state). */
static void remember(client_t *cl, const elem_t *stanza, const char *data, size_t len)
{
    if (strcmp(stanza->name, "presence") == 0) {
        const char *type = elem_attr(stanza, "type");
        if (elem_attr(stanza, "to") || (type && strcmp(type, "unavailable") != 0)) return;
        free(cl->presence);
        cl->presence = NULL;
        cl->presence_len = 0;
        if (type) return;
        if (!(cl->presence = malloc(len))) log_fatal("out of memory");
        memcpy(cl->presence, data, len);
        cl->presence_len = len;
    } else if (!cl->is_interested && strcmp(stanza->name, "iq") == 0 &&
               strcmp(elem_attr(stanza, "type"), "get") == 0 &&
               elem_child(stanza, NS_ROSTER, "query") && is_to_own_account(cl, stanza)) {
        cl->is_interested = true;
    } else if (strcmp(stanza->name, "iq") == 0 && strcmp(elem_attr(stanza, "type"), "set") == 0 &&
               is_to_own_account(cl, stanza)) {
        const elem_t *cmd = elem_first(stanza);
        if (cmd && cmd->ns && strcmp(cmd->ns, NS_CARBONS) == 0)
            cl->has_carbons = strcmp(cmd->name, "enable") == 0;
    }
}

/* The start of a route with <session action=…> about cl's session,
 * left open for more attributes. */
static buf_t *session_open(client_t *cl, const char *action)
{
    buf_t *b = &cl->c2s->scratch;
    buf_reset(b);
    route_open(b, cl->c2s, cl->domain, cl->user, cl->cid, cl->sid, 0);
    buf_appends(b, "<session xmlns='" NS_HEARTH_SESSION "'");
    xml_attr(b, "action", action);
    xml_attr(b, "cid", cl->cid);
    xml_attr(b, "sid", cl->sid);
    return b;
}

int session_resume(client_t *cl)
{
    buf_t *b = session_open(cl, "resume");
    xml_attr(b, "jid", jid_full(cl->jid));
    uint64_t next = cl->rq.head ? cl->rq.head->seq : cl->seq_out + 1;
    buf_printf(b, " h='%llu' next='%llu'", (unsigned long long)cl->seq_in,
               (unsigned long long)next);
    if (cl->is_interested) xml_attr(b, "roster", "true");
    if (cl->has_carbons) xml_attr(b, "carbons", "true");
    buf_appends(b, ">");
    if (cl->presence) buf_append(b, cl->presence, cl->presence_len);
    buf_appends(b, "</session></route>");
    return comp_send_raw(cl->c2s->comp, b->data, b->len);
}

/* A client's stanza in jabber:client, without prefixes, as it sent it:
 * its bytes, which say their namespaces themselves once the default one
 * is declared on the start tag. */
static void client_bytes(buf_t *b, const elem_t *stanza, const xstream_raw_t *raw)
{
    if (raw->declares_default_ns) {
        buf_append(b, raw->data, raw->len);
        return;
    }
    size_t n = 1 + strlen(stanza->name); /* "<message" */
    buf_append(b, raw->data, n);
    buf_appends(b, " xmlns='" NS_CLIENT "'");
    buf_append(b, raw->data + n, raw->len - n);
}

void session_stanza(client_t *cl, elem_t *stanza, const xstream_raw_t *raw)
{
    c2s_t *c2s = cl->c2s;
    if (!stanza->ns || strcmp(stanza->ns, NS_CLIENT) != 0 ||
        (strcmp(stanza->name, "message") != 0 && strcmp(stanza->name, "presence") != 0 &&
         strcmp(stanza->name, "iq") != 0)) {
        client_fail(cl, "unsupported-stanza-type", NULL);
        return;
    }
    metric_inc(&c2s_metrics.stanzas_in[metric_kind(stanza->name)]);
    const char *from = elem_attr(stanza, "from");
    if (from && !is_own_jid(cl, from)) {
        client_fail(cl, "invalid-from", NULL);
        return;
    }
    if (strcmp(stanza->name, "iq") == 0) {
        const char *id = elem_attr(stanza, "id"), *type = elem_attr(stanza, "type");
        const char *to = elem_attr(stanza, "to");
        if (!id || !is_iq_type(type)) {
            client_error_reply(cl, stanza, "bad-request",
                               id ? "an IQ needs a type" : "an IQ needs an id");
            return;
        }
        /* The answer to our XEP-0199 ping: reading it was the point. */
        if (strcmp(id, PING_ID) == 0 && (!strcmp(type, "result") || !strcmp(type, "error")) &&
            is_to_server(cl, to))
            return;
        if (is_to_server(cl, to) && strcmp(type, "set") == 0) {
            if (elem_child(stanza, NS_SESSION, "session")) { /* RFC 3921's, now a no-op */
                client_iq_result(cl, id, NULL);
                return;
            }
            if (elem_child(stanza, NS_BIND, "bind")) {
                client_error_reply(cl, stanza, "not-allowed", "one resource per stream");
                return;
            }
        }
    }
    buf_t *b = &c2s->scratch;
    buf_reset(b);
    if (cl->route_head) {
        buf_appends(b, cl->route_head);
        route_seq(b, cl->seq_out + 1);
    } else { /* the sm has ended the session */
        route_open(b, c2s, cl->domain, cl->user, cl->cid, NULL, cl->seq_out + 1);
    }
    size_t at = b->len;
    if (raw->has_prefixes)
        elem_serialize_stanza(stanza, NS_CLIENT, b);
    else
        client_bytes(b, stanza, raw);
    remember(cl, stanza, b->data + at, b->len - at);
    buf_appends(b, "</route>");
    if (hold_send(cl, cl->seq_out + 1, b->data, b->len)) {
        cl->seq_out++;
        ack_batch_along(&c2s->ack_batch); /* gathered acks go in the same write */
    } else {
        client_error_reply(cl, stanza, "service-unavailable", NULL);
    }
}

/* ---- routes from the router ---------------------------------------------- */

static void end_orphan(c2s_t *c2s, const elem_t *route, const elem_t *session)
{
    const char *sid = elem_attr(session, "sid"), *cid = elem_attr(session, "cid");
    const char *from = elem_attr(route, "from"), *user = elem_attr(route, "user");
    if (!cid) cid = elem_attr(route, "cid");
    if (!sid || !cid || !from) return;
    log_info("%s: session %s for %s is not held here (bind timed out or client gone); ending it",
             c2s->id, cid, user ? user : "?");
    send_session(c2s, from, user ? user : "", cid, "end", NULL, sid);
}

static void handle_bounce(c2s_t *c2s, client_t *cl, elem_t *payload)
{
    if (!cl || !client_is_open(cl) || !payload) return;
    if (elem_is(payload, NS_HEARTH_SESSION, "session")) {
        const char *action = elem_attr(payload, "action");
        if (action && strcmp(action, "start") == 0 && cl->state == CL_BINDING) {
            log_warn("%s: no session manager for %s", c2s->id, cl->domain);
            bind_error(cl, "service-unavailable", "no session manager for this domain");
            bind_reset(cl);
        }
        return;
    }
    /* One of the client's stanzas came back: the sm went away after it was
     * sent. It is still in the session's queue, sent again when the sm is
     * back (hold.c). */
    if (cl->state == CL_BOUND && cl->sid) return;
    elem_set_attr(payload, "from", NULL);
    client_error_reply(cl, payload, "service-unavailable", NULL);
}

/* The sm asks which of its sessions here are still held: each that is
 * not is ended (the header). A parked one is: its end is on its way. */
static void check_held(c2s_t *c2s, const elem_t *check)
{
    unsigned n = 0, gone = 0;
    char domain[JID_STRING_MAX] = "", user[JID_STRING_MAX] = "";
    for (elem_t *h = elem_child(check, NS_HEARTH_SESSION, "held"); h;
         h = elem_next(h, NS_HEARTH_SESSION, "held")) {
        const char *jid = elem_attr(h, "jid"), *cid = elem_attr(h, "cid"),
                   *sid = elem_attr(h, "sid");
        jid_t *j = jid && cid && sid ? jid_new(jid, strlen(jid), NULL) : NULL;
        if (!j) continue;
        n++;
        if (!*user) {
            snprintf(domain, sizeof domain, "%s", jid_domain(j));
            snprintf(user, sizeof user, "%s", jid_bare(j));
        }
        client_t *cl = table_find(c2s, cid);
        bool is_held =
            cl && cl->sid && strcmp(cl->sid, sid) == 0 && (client_is_open(cl) || cl->is_parked);
        if (!is_held && send_session(c2s, jid_domain(j), jid_bare(j), cid, "end", NULL, sid) == 0)
            gone++;
        jid_free(j);
    }
    /* After the ends, on the same way: the sm knows it has them all. */
    if (*user) {
        buf_t *b = &c2s->scratch;
        buf_reset(b);
        route_open(b, c2s, domain, user, NULL, NULL, 0);
        buf_appends(b, "<session xmlns='" NS_HEARTH_SESSION "' action='checked'/></route>");
        comp_send_raw(c2s->comp, b->data, b->len);
    }
    log_info("%s: the sm asked about %u sessions: %u are not held here, ended", c2s->id, n, gone);
}

static void handle_session(c2s_t *c2s, client_t *cl, const elem_t *route, elem_t *session)
{
    const char *action = elem_attr(session, "action");
    if (!action) return;
    if (strcmp(action, "started") == 0) {
        if (cl && cl->state == CL_BINDING && elem_attr(session, "sid"))
            bind_started(cl, session);
        else
            end_orphan(c2s, route, session);
    } else if (strcmp(action, "failed") == 0) {
        if (!cl || cl->state != CL_BINDING) return;
        const char *condition = error_condition(session);
        log_info("%s (%s): binding %s refused: %s", c2s->id, client_peer(cl), jid_full(cl->jid),
                 condition);
        bind_error(cl, condition, NULL);
        bind_reset(cl);
    } else if (strcmp(action, "check") == 0) {
        check_held(c2s, session);
    } else if (strcmp(action, "ended") == 0) {
        if (!cl || !client_is_open(cl)) return;
        const char *sid = elem_attr(session, "sid");
        if (sid && cl->sid && strcmp(sid, cl->sid) != 0) return; /* an older session's */
        const char *reason = elem_attr(session, "reason");
        hold_acked(cl, UINT64_MAX);
        session_forget(cl); /* the sm has ended it: nothing to tell it back */
        client_fail(cl, reason && *reason ? reason : "reset", NULL);
    }
}

/* ---- copies made again ------------------------------------------------------ */

/* Messages from the sm carry origin='CID SEQ', the client stanza they
 * were made of (sm/ack.c): a new sm makes them again when the old one was
 * killed before acknowledging it. A session remembers, for the last
 * SEEN_ORIGINS sessions it got messages from, the highest origin seq and which of the 64 below it
 * came (copies of one sender's stanzas can arrive out of order: a lookup in the store delays one).
 * A copy it had is dropped; one older than that window is let through. */
#define SEEN_ORIGINS 8

typedef struct seen_origin {
    char cid[48];
    uint64_t top;  /* the highest seq */
    uint64_t bits; /* bit i: top - i came */
    uint64_t used; /* for replacing the least recent */
} seen_origin_t;

struct seen {
    seen_origin_t o[SEEN_ORIGINS];
    uint64_t clock;
};

static bool is_seen(client_t *cl, const char *origin)
{
    const char *space = strchr(origin, ' ');
    size_t len = space ? (size_t)(space - origin) : 0;
    if (!space || len == 0 || len >= sizeof(((seen_origin_t *)0)->cid)) return false;
    uint64_t seq = strtoull(space + 1, NULL, 10);
    if (!cl->seen && !(cl->seen = calloc(1, sizeof *cl->seen))) log_fatal("out of memory");
    seen_t *s = cl->seen;
    seen_origin_t *o = NULL, *oldest = &s->o[0];
    for (int i = 0; i < SEEN_ORIGINS && !o; i++) {
        if (strncmp(s->o[i].cid, origin, len) == 0 && s->o[i].cid[len] == '\0') o = &s->o[i];
        if (s->o[i].used < oldest->used) oldest = &s->o[i];
    }
    if (!o) {
        o = oldest;
        memcpy(o->cid, origin, len);
        o->cid[len] = '\0';
        o->top = seq;
        o->bits = 1;
        o->used = ++s->clock;
        return false;
    }
    o->used = ++s->clock;
    if (seq > o->top) {
        uint64_t shift = seq - o->top;
        o->bits = shift >= 64 ? 1 : (o->bits << shift) | 1;
        o->top = seq;
        return false;
    }
    uint64_t back = o->top - seq;
    if (back >= 64) return false;
    if (o->bits & (1ULL << back)) return true;
    o->bits |= 1ULL << back;
    return false;
}

/* ---- acknowledgements ---------------------------------------------------- */

/* <ack><a cid='…' sid='…' h='N'/>…</ack> from the sm: it has taken the
 * stanzas of those sessions up to N. */
static void handle_ack(c2s_t *c2s, const elem_t *ack)
{
    for (elem_t *a = elem_child(ack, NS_HEARTH_SESSION, "a"); a;
         a = elem_next(a, NS_HEARTH_SESSION, "a")) {
        const char *sid = elem_attr(a, "sid"), *h = elem_attr(a, "h");
        client_t *cl = table_find(c2s, elem_attr(a, "cid"));
        if (cl && cl->sid && sid && h && strcmp(cl->sid, sid) == 0)
            hold_acked(cl, strtoull(h, NULL, 10));
    }
}

static void ack_entry(buf_t *b, const client_t *cl)
{
    buf_appends(b, "<a");
    xml_attr(b, "cid", cl->cid);
    xml_attr(b, "sid", cl->sid);
    buf_printf(b, " h='%llu'/>", (unsigned long long)cl->seq_in);
}

static void ack_route_open(buf_t *b, c2s_t *c2s, const client_t *cl)
{
    buf_reset(b);
    route_open(b, c2s, cl->domain, cl->user, NULL, NULL, 0);
    buf_appends(b, "<ack xmlns='" NS_HEARTH_SESSION "'>");
}

/* What the sessions took from the sm, in one route per domain (per
 * session when the sm is sharded: each goes to its own shard). */
static void acks_flush(void *ud)
{
    c2s_t *c2s = ud;
    client_t *list = c2s->acks;
    c2s->acks = NULL;
    buf_t *b = &c2s->scratch;
    for (int i = 0; i < c2s->ndomains; i++) {
        const char *domain = c2s->domains[i].name;
        size_t n = 0;
        for (client_t *cl = list; cl; cl = cl->ack_next) {
            if (cl->domain != domain || !cl->sid || !client_is_open(cl)) continue;
            if (!c2s->comp) break;
            if (n == 0 || c2s->is_sm_sharded) {
                if (n) {
                    buf_appends(b, "</ack></route>");
                    comp_send_raw(c2s->comp, b->data, b->len);
                }
                ack_route_open(b, c2s, cl);
            }
            ack_entry(b, cl);
            n++;
        }
        if (n) {
            buf_appends(b, "</ack></route>");
            if (c2s->comp) comp_send_raw(c2s->comp, b->data, b->len);
        }
    }
    client_t *next;
    for (client_t *cl = list; cl; cl = next) {
        next = cl->ack_next;
        cl->ack_next = NULL;
        cl->is_ack_due = false;
        client_unref(cl);
    }
}

static void ack_due(client_t *cl)
{
    c2s_t *c2s = cl->c2s;
    if (cl->is_ack_due) return;
    cl->is_ack_due = true;
    client_ref(cl);
    ack_batch_due(&c2s->ack_batch);
    cl->ack_next = c2s->acks;
    c2s->acks = cl;
}

void session_init(c2s_t *c2s)
{
    ack_batch_init(&c2s->ack_batch, c2s->loop, acks_flush, c2s);
}

void session_close(c2s_t *c2s)
{
    ack_batch_close(&c2s->ack_batch);
}

/* A route from someone who may not send it: dropped, logged once per
 * sender. */
static void refuse(c2s_t *c2s, const elem_t *route, const char *why)
{
    const char *from = elem_attr(route, "from"), *role = elem_attr(route, "role");
    char key[320];
    snprintf(key, sizeof key, "c2s refuses %s %s", role ? role : "-", from ? from : "-");
    if (!log_is_first(key)) return;
    log_warn("%s: route from %s (role %s) refused: %s (logged once per sender)", c2s->id,
             from ? from : "?", role ? role : "none", why);
}

/* A stanza for a client of this c2s: written out as the sm serialized
 * it. payload is its tree (a route parsed again), or NULL for the bytes
 * of a jabber:client stanza of kind kind (client_stanza_kind). */
static void to_client(c2s_t *c2s, client_t *cl, const elem_t *route, const elem_t *payload,
                      int kind, const xstream_raw_t *raw)
{
    const char *cid = elem_attr(route, "cid");
    if (!cl || cl->state != CL_BOUND || !client_is_open(cl)) {
        log_debug("%s: stanza for %s, which is not connected here", c2s->id,
                  cid ? cid : "(no cid)");
        return;
    }
    const char *sid = elem_attr(route, "sid");
    if (!sid || !cl->sid || strcmp(sid, cl->sid) != 0) {
        refuse(c2s, route, "a stanza without the sid of the session it names");
        return;
    }
    const char *seq = elem_attr(route, "seq"), *origin = elem_attr(route, "origin");
    if (seq) {
        uint64_t n = strtoull(seq, NULL, 10);
        ack_due(cl);
        if (n <= cl->seq_in) return; /* sent again after a restart: had it */
        cl->seq_in = n;
    }
    if (origin && is_seen(cl, origin)) return; /* made again by a new sm */
    if (kind >= 0) metric_inc(&c2s_metrics.stanzas_out[kind]);
    /* A jabber:client payload (declaring that namespace, which the client
     * stream has too) goes out as it came, not serialized again; another
     * stanza namespace (a component's, a remote server's) must become the
     * stream's, as client_send writes it. */
    if (payload)
        client_send(cl, payload);
    else
        client_write(cl, raw->data + raw->inner_off, raw->inner_len);
}

/* The kind (metric_kind) of the route's payload when it is one stanza in
 * jabber:client as the sm writes it, "<NAME xmlns='jabber:client'" first
 * and "</NAME>" or "/>" last; else -1, and the route is parsed again. The
 * payload itself was not given to libxml2 (comp_set_shallow): the sm
 * serialized it from a tree it parsed. */
static int client_stanza_kind(const xstream_raw_t *raw)
{
    static const char ns[] = " xmlns='" NS_CLIENT "'";
    const char *p = raw->data + raw->inner_off, *end = p + raw->inner_len;
    if (raw->inner_len < 2 || *p != '<' || end[-1] != '>') return -1;
    for (int kind = 0; kind < METRIC_KINDS; kind++) {
        const char *name = metric_kind_names[kind];
        size_t n = strlen(name);
        if ((size_t)(end - p) < 1 + n + sizeof ns - 1 + 2 || memcmp(p + 1, name, n) != 0 ||
            memcmp(p + 1 + n, ns, sizeof ns - 1) != 0)
            continue;
        const char *after = p + 1 + n + sizeof ns - 1;
        if (*after != ' ' && *after != '>' && *after != '/') return -1;
        if (end[-2] == '/') return kind;
        if ((size_t)(end - after) < n + 3 || memcmp(end - n - 3, "</", 2) != 0 ||
            memcmp(end - n - 1, name, n) != 0)
            return -1;
        return kind;
    }
    return -1;
}

/* Routes arrive with their attributes only (comp_set_shallow): a stanza
 * for a client is written from its bytes; anything else (the session
 * protocol, acks, bounces, another namespace) is parsed again first. */
void session_route(c2s_t *c2s, elem_t *route, const xstream_raw_t *raw)
{
    comp_role_t role = comp_route_role(route);
    const char *type = elem_attr(route, "type");
    bool is_bounce = type && strcmp(type, "error") == 0;
    if (is_bounce ? role != ROLE_ROUTER : role != ROLE_SM) {
        refuse(c2s, route,
               is_bounce ? "a route error not from the router"
                         : "routes for clients come from the sm");
        return;
    }
    int kind = is_bounce ? -1 : client_stanza_kind(raw);
    if (kind >= 0) {
        to_client(c2s, table_find(c2s, elem_attr(route, "cid")), route, NULL, kind, raw);
        return;
    }
    arena_t *a = arena_new(0);
    route = comp_reparse(c2s->comp, a, raw);
    elem_t *payload = route ? elem_first(route) : NULL;
    const char *cid = route ? elem_attr(route, "cid") : NULL;
    bool is_session = payload && elem_is(payload, NS_HEARTH_SESSION, "session");
    if (!cid && is_session) cid = elem_attr(payload, "cid");
    client_t *cl = table_find(c2s, cid);
    if (is_bounce)
        handle_bounce(c2s, cl, payload);
    else if (is_session)
        handle_session(c2s, cl, route, payload);
    else if (payload && elem_is(payload, NS_HEARTH_SESSION, "ack"))
        handle_ack(c2s, payload);
    else if (payload)
        to_client(c2s, cl, route, payload, metric_kind(payload->name), raw);
    arena_free(a);
}

/* ---- the end of sessions -------------------------------------------------- */

void session_forget(client_t *cl)
{
    free(cl->sid);
    free(cl->route_head);
    cl->sid = cl->route_head = NULL;
    table_remove(cl->c2s, cl);
}

void session_send_resumed(c2s_t *c2s, const char *domain)
{
    buf_t *b = &c2s->scratch;
    buf_reset(b);
    route_open(b, c2s, domain, c2s->id, NULL, NULL, 0);
    buf_appends(b, "<session xmlns='" NS_HEARTH_SESSION "' action='resumed'/></route>");
    comp_send_raw(c2s->comp, b->data, b->len);
}

/* With h: what the client was given; the sm delivers anew the rest. */
void session_send_end(client_t *cl)
{
    c2s_t *c2s = cl->c2s;
    buf_t *b = session_open(cl, "end");
    buf_printf(b, " h='%llu'/></route>", (unsigned long long)cl->seq_in);
    if (c2s->comp) comp_send_raw(c2s->comp, b->data, b->len);
}

void session_client_gone(client_t *cl)
{
    if (cl->sid && cl->state == CL_BOUND) {
        if (hold_park(cl)) return; /* the end goes after its resume (hold.c) */
        session_send_end(cl);
    }
    session_forget(cl);
}

/* An sm shard (each binds its id too) came back while the others kept the
 * domain: its users' stanzas waited here (the router bounced them), and it
 * has none of their sessions. Every session is announced again; a shard
 * that has one keeps it. */
static void sm_shard_back(c2s_t *c2s, const char *name)
{
    if (!c2s->is_sm_sharded || !c2s->comp || !comp_is_ready(c2s->comp)) return;
    log_notice("%s: sm shard %s is back; announcing the sessions again", c2s->id, name);
    for (int i = 0; i < c2s->ndomains; i++) {
        hold_domain_away(c2s, &c2s->domains[i]);
        hold_flush(c2s, &c2s->domains[i]);
    }
}

void session_domain_advert(c2s_t *c2s, const char *name, bool available)
{
    if (available && (strcmp(name, "sm") == 0 || strncmp(name, "sm-", 3) == 0)) {
        sm_shard_back(c2s, name);
        return;
    }
    domain_state_t *d = c2s_domain(c2s, name);
    if (!d) return;
    if (d->is_available && !available) {
        log_warn("%s: the session manager of %s went away; its sessions wait for it", c2s->id,
                 name);
        hold_domain_away(c2s, d);
    }
    d->is_available = available;
    if (available) hold_flush(c2s, d);
}

void session_router_down(c2s_t *c2s)
{
    unsigned n = 0;
    for (client_t *cl = c2s->clients; cl; cl = cl->next)
        n += cl->sid && cl->state == CL_BOUND;
    for (int i = 0; i < c2s->ndomains; i++) {
        hold_domain_away(c2s, &c2s->domains[i]);
        c2s->domains[i].is_available = false;
    }
    log_warn("%s: lost the router; %u sessions wait for it", c2s->id, n);
}

/* What was on the direct link (common/direct.c) may be lost: the sm is
 * away and back at once (hold.c), so every session is re-announced and its
 * queue sent again, through the router. */
void session_direct_down(c2s_t *c2s, const char *name)
{
    domain_state_t *d = c2s_domain(c2s, name);
    if (!d || !d->is_available || d->needs_resume) return;
    hold_domain_away(c2s, d);
    hold_flush(c2s, d);
}

void session_router_up(c2s_t *c2s)
{
    for (int i = 0; i < c2s->ndomains; i++)
        hold_flush(c2s, &c2s->domains[i]);
}
