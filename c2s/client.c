/* client.c — one client stream, from accept to close.
 *
 * Owns the connection and its parser, the stream header and features, the
 * STARTTLS upgrade, the limits (connections, stanza size and rate, unsent
 * bytes), the timers (the stream header and login deadlines, idle timeout,
 * XEP-0199 pings, the bind timeout, a login's turn), and stream errors.
 * What a stanza means is decided elsewhere: SASL in auth.c, registration
 * in register.c, binding and everything after it in session.c.
 *
 * Limits, from the first byte:
 *  - at accept, a connection over c2s.max-connections, over
 *    c2s.max-connections-per-ip, or over c2s.max-pending-per-ip (the
 *    connections of its address, IPv6 per prefix, that have not
 *    authenticated yet) is refused at once: before its stream header, which
 *    RFC 6120 §4.9.1.1 allows, a STARTTLS port writes the stream header and
 *    the error policy-violation and closes; a direct TLS port only closes
 *    (the error would need a TLS handshake first);
 *  - the stream header must come within c2s.header-timeout of accept, and
 *    the session within c2s.auth-timeout: SASL and resource binding, or at
 *    least a bind the sm is still answering (stream error
 *    connection-timeout);
 *  - every stanza, negotiation included, takes a token of the c2s.rate /
 *    c2s.burst bucket; an empty bucket pauses reading;
 *  - bytes queued for a client and not yet taken by its socket may not pass
 *    c2s.max-queue: a client that stops reading is cut off with
 *    policy-violation, and the sm is told its session ended, before it can
 *    make this process grow;
 *  - a stream this side ends (a stream error, a refusal) has CLOSE_GRACE to
 *    read its last words; then the connection is dropped, queue and all.
 *
 * A client lives as long as its connection or any operation in flight (a
 * storage call, work on the thread pool) holds a reference: such an
 * operation checks client_is_open() when it completes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s.h"

#define CLOSE_GRACE 2000 /* ms a stream we closed may take to read its end */

static void on_open(void *ud, elem_t *header, const char *default_ns);
static void on_stanza(void *ud, elem_t *stanza, const xstream_raw_t *raw);
static void on_stream_close(void *ud);
static void on_read(conn_t *c, const char *data, size_t len);
static void on_tls(conn_t *c, int status);
static void on_conn_close(conn_t *c, const char *reason);
static void on_timer(uv_timer_t *t);

static const xstream_cb_t stream_cb = {on_open, on_stanza, on_stream_close};
static const conn_cb_t conn_cb = {
    .on_read = on_read,
    .on_tls = on_tls,
    .on_close = on_conn_close,
};

const char *client_peer(const client_t *cl)
{
    return cl->addr ? cl->addr->ip : "?";
}

void client_ref(client_t *cl)
{
    cl->refs++;
}

static void on_timer_closed(uv_handle_t *h)
{
    client_t *cl = h->data;
    free(cl);
}

static void client_free(client_t *cl)
{
    c2s_t *c2s = cl->c2s;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        c2s->clients = cl->next;
    if (cl->next) cl->next->prev = cl->prev;
    c2s->nclients--;
    auth_free(cl);
    preauth_free(cl);
    if (cl->xs) xstream_free(cl->xs);
    if (cl->jid) jid_free(cl->jid);
    free(cl->user);
    free(cl->sid);
    free(cl->route_head);
    c2s->held_bytes -= ackq_clear(&cl->rq, NULL, NULL);
    free(cl->presence);
    free(cl->seen);
    free(cl->bind_iq_id);
    uv_close((uv_handle_t *)&cl->timer, on_timer_closed);
}

bool client_unref(client_t *cl)
{
    bool is_open = client_is_open(cl);
    if (--cl->refs == 0) client_free(cl);
    return is_open;
}

bool client_is_open(const client_t *cl)
{
    return cl->conn != NULL && cl->state != CL_CLOSING;
}

/* Bytes out, unchecked: for the stream's own header and last words. */
static void queue(client_t *cl, const char *data, size_t len)
{
    if (!cl->conn) return;
    metric_add(&c2s_metrics.bytes_out, len);
    conn_write(cl->conn, data, len);
}

void client_write(client_t *cl, const char *data, size_t len)
{
    if (!cl->conn) return;
    metric_add(&c2s_metrics.bytes_out, len);
    conn_write(cl->conn, data, len);
    if (conn_queued(cl->conn) > cl->c2s->max_queue && client_is_open(cl))
        client_fail(cl, "policy-violation", "too much data unread");
}

void client_send(client_t *cl, const elem_t *stanza)
{
    buf_t *b = &cl->c2s->scratch;
    buf_reset(b);
    elem_serialize_stanza(stanza, NULL, b);
    client_write(cl, b->data, b->len);
}

void client_error_reply(client_t *cl, elem_t *stanza, const char *condition, const char *text)
{
    if (xmpp_stanza_error(stanza, condition, text) == 0) client_send(cl, stanza);
}

void client_iq_error(client_t *cl, const char *id, const char *condition, const char *text)
{
    arena_t *a = arena_new(0);
    elem_t *iq = elem_new(a, NS_CLIENT, "iq");
    elem_set_attr(iq, "type", "set");
    elem_set_attr(iq, "id", id);
    elem_set_attr(iq, "to", cl->domain);
    client_error_reply(cl, iq, condition, text);
    arena_free(a);
}

void client_iq_result(client_t *cl, const char *id, const elem_t *payload)
{
    arena_t *a = arena_new(0);
    elem_t *iq = elem_new(a, NS_CLIENT, "iq");
    elem_set_attr(iq, "type", "result");
    elem_set_attr(iq, "id", id);
    if (payload) elem_add_copy(iq, payload);
    client_send(cl, iq);
    arena_free(a);
}

static void write_header(client_t *cl)
{
    buf_t *b = &cl->c2s->scratch;
    buf_reset(b);
    buf_appends(b, "<?xml version='1.0'?><stream:stream xmlns='" NS_CLIENT
                   "' xmlns:stream='" NS_STREAMS "' from='");
    const char *from = cl->domain ? cl->domain : cl->c2s->domains[0].name;
    xml_escape(b, from, strlen(from), true);
    buf_printf(b, "' id='%s' version='1.0' xml:lang='en'>", cl->stream_id);
    queue(cl, b->data, b->len);
    cl->header_sent = true;
}

/* A stream we closed has CLOSE_GRACE to take its last words: one that does
 * not read them (or a peer that never closes) does not keep its socket and
 * queue for the conn's own 10 s. */
static void on_linger(uv_timer_t *t)
{
    client_t *cl = t->data;
    cl->armed_at = 0;
    if (cl->conn) conn_abort(cl->conn);
}

static void linger(client_t *cl)
{
    cl->armed_at = uv_now(cl->c2s->loop) + CLOSE_GRACE;
    uv_timer_start(&cl->timer, on_linger, CLOSE_GRACE, 0);
}

/* The stream ends: the sm is told, work not started yet is cancelled. */
static void enter_closing(client_t *cl)
{
    session_client_gone(cl);
    cl->state = CL_CLOSING;
    auth_cancel(cl);
    register_cancel(cl);
}

void client_fail(client_t *cl, const char *condition, const char *text)
{
    if (!client_is_open(cl)) return;
    log_notice("%s (%s%s%s): stream error %s%s%s", cl->c2s->id, client_peer(cl),
               cl->jid    ? " "
               : cl->user ? " "
                          : "",
               cl->jid    ? jid_full(cl->jid)
               : cl->user ? cl->user
                          : "",
               condition, text ? ": " : "", text ? text : "");
    if (!cl->header_sent) write_header(cl);
    buf_t *b = &cl->c2s->scratch;
    buf_reset(b);
    xmpp_stream_error(b, condition, text);
    buf_appends(b, "</stream:stream>");
    queue(cl, b->data, b->len);
    enter_closing(cl);
    conn_close(cl->conn);
    linger(cl);
}

void client_close_all(c2s_t *c2s, const char *condition)
{
    for (client_t *cl = c2s->clients; cl; cl = cl->next)
        client_fail(cl, condition, NULL);
}

void client_abort_all(c2s_t *c2s)
{
    client_t *next;
    for (client_t *cl = c2s->clients; cl; cl = next) {
        next = cl->next; /* aborting may free cl */
        if (cl->conn) conn_abort(cl->conn);
    }
}

void client_authenticated(client_t *cl)
{
    if (cl->is_pending) {
        cl->is_pending = false;
        cl->addr->pending--;
    }
    xstream_reset(cl->xs);
    cl->header_sent = false;
}

/* ---- timers ------------------------------------------------------------- */

static uint64_t min_deadline(uint64_t a, uint64_t b)
{
    if (!a) return b;
    if (!b) return a;
    return a < b ? a : b;
}

/* The earliest moment something is due: the stream header and login
 * deadlines, the idle check (a ping, or the timeout), the bind timeout,
 * the end of a rate pause, a login attempt's turn. */
static uint64_t next_deadline(const client_t *cl)
{
    const c2s_t *c2s = cl->c2s;
    uint64_t t = 0;
    if (cl->state == CL_BOUND && c2s->ping_interval && !cl->is_pinging)
        t = cl->last_read + c2s->ping_interval;
    else if (c2s->idle_timeout)
        t = cl->last_read + c2s->idle_timeout;
    if (c2s->idle_release && !cl->is_released)
        t = min_deadline(t, cl->last_read + c2s->idle_release);
    if (cl->state == CL_OPENING) t = min_deadline(t, cl->open_deadline);
    if (cl->state < CL_BINDING) t = min_deadline(t, cl->login_deadline);
    t = min_deadline(t, cl->bind_deadline);
    t = min_deadline(t, cl->resume_at);
    t = min_deadline(t, cl->auth_at);
    return t;
}

void client_arm(client_t *cl)
{
    if (!client_is_open(cl)) return;
    uint64_t t = next_deadline(cl), now = uv_now(cl->c2s->loop);
    if (!t) {
        if (cl->armed_at) uv_timer_stop(&cl->timer);
        cl->armed_at = 0;
        return;
    }
    /* Firing early is harmless (on_timer re-arms), so keep an earlier
     * timer rather than re-inserting it on every read. */
    if (cl->armed_at && cl->armed_at <= t && cl->armed_at > now) return;
    cl->armed_at = t;
    uv_timer_start(&cl->timer, on_timer, t > now ? t - now : 0, 0);
}

static void send_ping(client_t *cl)
{
    buf_t *b = &cl->c2s->scratch;
    buf_reset(b);
    buf_appends(b, "<iq type='get' id='c2s-ping' from='");
    xml_escape(b, cl->domain, strlen(cl->domain), true);
    buf_appends(b, "' to='");
    const char *to = jid_full(cl->jid);
    xml_escape(b, to, strlen(to), true);
    buf_appends(b, "'><ping xmlns='" NS_PING "'/></iq>");
    client_write(cl, b->data, b->len);
    cl->is_pinging = true;
}

static void on_timer(uv_timer_t *t)
{
    client_t *cl = t->data;
    cl->armed_at = 0;
    if (!client_is_open(cl)) return;
    c2s_t *c2s = cl->c2s;
    uint64_t now = uv_now(c2s->loop);
    if (cl->state == CL_OPENING && cl->open_deadline && cl->open_deadline <= now) {
        client_fail(cl, "connection-timeout", "no stream header in time");
        return;
    }
    if (cl->state < CL_BINDING && cl->login_deadline && cl->login_deadline <= now) {
        client_fail(cl, "connection-timeout", "no login in time");
        return;
    }
    if (cl->auth_at && cl->auth_at <= now) {
        cl->auth_at = 0;
        auth_turn(cl);
        if (!client_is_open(cl)) return;
    }
    if (cl->bind_deadline && cl->bind_deadline <= now) {
        cl->bind_deadline = 0;
        session_bind_timeout(cl);
        if (!client_is_open(cl)) return;
    }
    if (cl->resume_at && cl->resume_at <= now) {
        cl->resume_at = 0;
        if (!cl->is_waiting_ack) conn_resume(cl->conn);
    }
    if (c2s->idle_release && !cl->is_released && cl->last_read + c2s->idle_release <= now) {
        /* Quiet: most of an idle client's memory is its parser. Not now if
         * a stanza is half-received; then the next bytes decide again. */
        cl->is_released = true;
        if (xstream_hibernate(cl->xs) == 0) c2s_trim_soon(c2s);
    }
    if (cl->state == CL_BOUND && c2s->ping_interval && !cl->is_pinging &&
        cl->last_read + c2s->ping_interval <= now) {
        send_ping(cl);
        cl->last_read = now; /* the idle timeout counts from the ping */
    } else if (c2s->idle_timeout && cl->last_read + c2s->idle_timeout <= now) {
        client_fail(cl, "connection-timeout", NULL);
        return;
    }
    client_arm(cl);
}

/* ---- accept and stream open ---------------------------------------------- */

/* Why a new connection from a is refused, or NULL. */
static const char *refusal(const c2s_t *c2s, const addr_t *a)
{
    if (c2s->is_stopping) return "shutting down";
    if (c2s->nclients >= c2s->max_connections) return "too many connections";
    if (a->connections >= c2s->max_per_ip) return "too many connections from your address";
    if (a->pending >= c2s->max_pending_per_ip) return "too many logins at once from your address";
    return NULL;
}

/* Refused: the header and the error go out before the client's header
 * (RFC 6120 §4.9.1.1) on a STARTTLS port; a direct TLS port just closes.
 * No parser, no address counted, and no more than CLOSE_GRACE. */
static void refuse(client_t *cl, const char *why)
{
    log_debug("%s: refused %s: %s", cl->c2s->id, conn_peer(cl->conn), why);
    cl->state = CL_CLOSING;
    if (cl->is_direct_tls) {
        conn_abort(cl->conn);
        return;
    }
    write_header(cl);
    buf_t *b = &cl->c2s->scratch;
    buf_reset(b);
    xmpp_stream_error(b, "policy-violation", why);
    buf_appends(b, "</stream:stream>");
    queue(cl, b->data, b->len);
    conn_close(cl->conn);
    linger(cl);
}

void client_accept(c2s_t *c2s, uv_stream_t *server, bool is_direct_tls)
{
    client_t *cl = calloc(1, sizeof(*cl));
    if (!cl) log_fatal("out of memory");
    cl->c2s = c2s;
    cl->conn = conn_accept(server, &conn_cb, cl);
    if (!cl->conn) {
        free(cl);
        return;
    }
    cl->refs = 1;
    uv_timer_init(c2s->loop, &cl->timer);
    cl->timer.data = cl;
    cl->next = c2s->clients;
    if (c2s->clients) c2s->clients->prev = cl;
    c2s->clients = cl;
    cl->is_direct_tls = is_direct_tls;
    random_hex(cl->stream_id, 8);
    addr_key_t key;
    char text[sizeof(((addr_t *)0)->ip)];
    addr_key_of(conn_peer(cl->conn), c2s->ipv6_prefix, &key, text, sizeof text);
    addr_t *a = addr_get(c2s, &key, text);
    const char *why = refusal(c2s, a);
    c2s->nclients++;
    if (why) {
        if (!a->connections) addr_release(c2s, a);
        refuse(cl, why);
        return;
    }
    cl->addr = a;
    a->connections++;
    a->pending++;
    cl->is_pending = true;
    cl->last_read = uv_now(c2s->loop);
    if (c2s->header_timeout) cl->open_deadline = cl->last_read + c2s->header_timeout;
    if (c2s->auth_timeout) cl->login_deadline = cl->last_read + c2s->auth_timeout;
    rate_init(&cl->bucket, c2s->burst, cl->last_read);
    xstream_opts_t opts = {.max_stanza = c2s->max_stanza};
    cl->xs = xstream_new(&opts, &stream_cb, cl);
    if (is_direct_tls) {
        conn_set_alpn(cl->conn, "xmpp-client"); /* XEP-0368 */
        conn_starttls(cl->conn, c2s->tls, true, NULL);
    }
    client_arm(cl);
    log_debug("%s: connection from %s%s", c2s->id, conn_peer(cl->conn),
              is_direct_tls ? " (direct TLS)" : "");
}

static void write_features(client_t *cl)
{
    c2s_t *c2s = cl->c2s;
    buf_t *b = &c2s->scratch;
    buf_reset(b);
    buf_appends(b, "<stream:features>");
    bool has_tls = conn_has_tls(cl->conn);
    if (cl->state == CL_NEGOTIATE) {
        if (!has_tls)
            buf_appends(b, c2s->require_tls ? "<starttls xmlns='" NS_TLS "'><required/></starttls>"
                                            : "<starttls xmlns='" NS_TLS "'/>");
        if (has_tls || !c2s->require_tls) {
            auth_features(cl, b);
            if (c2s->registration) buf_appends(b, "<register xmlns='" NS_REGISTER_FEATURE "'/>");
            preauth_features(cl, b);
        }
    } else {
        buf_appends(b, "<bind xmlns='" NS_BIND "'/>"
                       "<session xmlns='" NS_SESSION "'><optional/></session>"
                       "<ver xmlns='urn:xmpp:features:rosterver'/>"
                       "<sub xmlns='urn:xmpp:features:pre-approval'/>");
    }
    buf_appends(b, "</stream:features>");
    client_write(cl, b->data, b->len);
}

static void on_open(void *ud, elem_t *header, const char *default_ns)
{
    client_t *cl = ud;
    c2s_t *c2s = cl->c2s;
    if (!client_is_open(cl)) return;
    const char *to = elem_attr(header, "to");
    char prepped[JID_STRING_MAX];
    domain_state_t *d = NULL;
    if (to && jid_prep(to, strlen(to), prepped, NULL) == 0)
        d = c2s_domain(c2s, prepped);
    else if (!to)
        d = &c2s->domains[0];
    if (cl->domain) {
        /* A restarted stream (after STARTTLS or SASL) names the same host. */
        if (!d || strcmp(d->name, cl->domain) != 0) d = NULL;
    }
    if (d) cl->domain = d->name;
    write_header(cl);
    if (!elem_is(header, NS_STREAMS, "stream") || strcmp(default_ns, NS_CLIENT) != 0) {
        client_fail(cl, "invalid-namespace", NULL);
        return;
    }
    if (!d) {
        client_fail(cl, "host-unknown", NULL);
        return;
    }
    const char *version = elem_attr(header, "version");
    if (!version || strtol(version, NULL, 10) < 1) {
        client_fail(cl, "unsupported-version", NULL);
        return;
    }
    if (cl->state == CL_OPENING) {
        cl->state = CL_NEGOTIATE;
        cl->open_deadline = 0;
    }
    write_features(cl);
}

/* ---- stanzas ----------------------------------------------------------- */

static void handle_starttls(client_t *cl)
{
    c2s_t *c2s = cl->c2s;
    if (conn_has_tls(cl->conn) || cl->state != CL_NEGOTIATE) {
        client_fail(cl, "policy-violation", "TLS is already on");
        return;
    }
    static const char proceed[] = "<proceed xmlns='" NS_TLS "'/>";
    client_write(cl, proceed, sizeof(proceed) - 1);
    conn_starttls(cl->conn, c2s->tls, true, NULL);
    /* Whatever followed <starttls/> in this read came in the clear: never
     * part of the TLS stream. */
    xstream_reset_discard(cl->xs);
    cl->header_sent = false;
}

/* Before the session: only negotiation (STARTTLS, SASL, registration, bind,
 * the legacy session IQ) is allowed; RFC 6120 §4.3: anything else is
 * not-authorized. */
static void handle_negotiation(client_t *cl, elem_t *e)
{
    bool needs_tls = cl->c2s->require_tls && !conn_has_tls(cl->conn);
    if (elem_is(e, NS_TLS, "starttls")) {
        handle_starttls(cl);
    } else if (e->ns && strcmp(e->ns, NS_SASL) == 0 && cl->state == CL_NEGOTIATE) {
        auth_handle(cl, e);
    } else if (elem_is(e, NS_CLIENT, "iq") && cl->state == CL_NEGOTIATE &&
               elem_child(e, NS_REGISTER, "query")) {
        if (needs_tls)
            client_fail(cl, "policy-violation", "STARTTLS first");
        else
            register_handle(cl, e);
    } else if (elem_is(e, NS_CLIENT, "iq") && cl->state == CL_NEGOTIATE &&
               elem_child(e, "urn:xmpp:pars:0", "preauth")) {
        if (needs_tls)
            client_fail(cl, "policy-violation", "STARTTLS first");
        else
            preauth_handle(cl, e);
    } else if (elem_is(e, NS_CLIENT, "iq") && cl->state == CL_AUTHED &&
               elem_child(e, NS_BIND, "bind")) {
        session_bind(cl, e);
    } else if (elem_is(e, NS_CLIENT, "iq") && cl->state == CL_AUTHED &&
               elem_child(e, NS_SESSION, "session")) {
        const char *id = elem_attr(e, "id");
        client_iq_result(cl, id ? id : "", NULL);
    } else {
        client_fail(cl, "not-authorized", needs_tls ? "STARTTLS first" : NULL);
    }
}

/* Token bucket: a stanza costs one token, from the first of the stream
 * (negotiation too: a flood of registration forms or SASL attempts is read
 * as slowly as chat); the bucket refills at c2s.rate per second up to
 * c2s.burst. An empty bucket pauses reading until it holds a token again:
 * a fast client is slowed, never cut off. */
static void charge_rate(client_t *cl)
{
    c2s_t *c2s = cl->c2s;
    uint64_t now = uv_now(c2s->loop);
    uint64_t wait = rate_take(&cl->bucket, c2s->rate, c2s->burst, now);
    if (wait) { /* until the debt of everything read so far is paid */
        conn_pause(cl->conn);
        cl->resume_at = now + wait;
        client_arm(cl);
    }
}

static void on_stanza(void *ud, elem_t *stanza, const xstream_raw_t *raw)
{
    client_t *cl = ud;
    if (!client_is_open(cl)) return;
    charge_rate(cl);
    if (cl->state == CL_BOUND) {
        session_stanza(cl, stanza, raw);
    } else if (cl->state == CL_BINDING) {
        client_fail(cl, "not-authorized", "wait for the bind result");
    } else {
        handle_negotiation(cl, stanza);
    }
}

static void on_stream_close(void *ud)
{
    client_t *cl = ud;
    if (!client_is_open(cl)) return;
    if (cl->state == CL_BOUND)
        log_info("%s (%s): %s logged out (%s)", cl->c2s->id, client_peer(cl), jid_full(cl->jid),
                 cl->cid);
    else
        log_debug("%s (%s): stream closed before a session", cl->c2s->id, client_peer(cl));
    queue(cl, "</stream:stream>", strlen("</stream:stream>"));
    enter_closing(cl);
    conn_close(cl->conn);
}

static void on_read(conn_t *c, const char *data, size_t len)
{
    client_t *cl = conn_data(c);
    if (!client_is_open(cl)) return;
    metric_add(&c2s_metrics.bytes_in, len);
    cl->last_read = uv_now(cl->c2s->loop);
    cl->is_pinging = false; /* any sign of life answers a ping */
    cl->is_released = false;
    xstream_status_t st = xstream_feed(cl->xs, data, len);
    if (st != XSTREAM_OK) client_fail(cl, xstream_condition(st), NULL);
}

static void on_tls(conn_t *c, int status)
{
    client_t *cl = conn_data(c);
    if (status < 0) log_info("%s (%s): TLS handshake failed", cl->c2s->id, client_peer(cl));
}

static void on_conn_close(conn_t *c, const char *reason)
{
    client_t *cl = conn_data(c);
    c2s_t *c2s = cl->c2s;
    if (reason && cl->state != CL_CLOSING && cl->state != CL_OPENING)
        log_info("%s (%s%s%s): connection lost: %s", c2s->id, client_peer(cl), cl->jid ? " " : "",
                 cl->jid ? jid_full(cl->jid) : "", reason);
    else
        log_debug("%s (%s): disconnected", c2s->id, client_peer(cl));
    if (cl->state != CL_CLOSING) enter_closing(cl);
    cl->conn = NULL;
    if (cl->armed_at) uv_timer_stop(&cl->timer);
    cl->armed_at = 0;
    if (cl->is_pending) cl->addr->pending--;
    cl->is_pending = false;
    addr_release(c2s, cl->addr);
    cl->addr = NULL;
    client_unref(cl);
}
