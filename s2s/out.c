/* out.c — streams to other servers: connect, TLS (STARTTLS or direct),
 * authentication by SASL EXTERNAL (XEP-0178) when the peer offers it, else
 * dialback, then the queued stanzas; and the asking of an authoritative
 * server whether a dialback key is valid (db:verify): over our stream to
 * it when one is up, else over a short link of its own. */
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "s2s.h"

/* A db:verify sent, waiting for its answer (for the incoming stream
 * in_serial). */
typedef struct pending {
    char *id;
    uint64_t in_serial;
    struct pending *next;
} pending_t;

typedef struct qitem {
    elem_t *stanza; /* in its own arena */
    size_t size;    /* its bytes as they came from the router */
    struct qitem *next;
} qitem_t;

enum out_state { O_RESOLVING, O_CONNECTING, O_OPENING, O_STARTTLS, O_SASL, O_DIALBACK, O_READY };

typedef struct target {
    char addr[80]; /* "192.0.2.1:5269", "[2001:db8::1]:5269" */
    bool direct;   /* TLS from the first byte (XEP-0368) */
} target_t;

struct out {
    s2s_t *s;
    out_t *next;
    char *local, *remote;
    conn_t *conn;
    xstream_t *xs;
    enum out_state state;
    bool dead;             /* failing or closing: no new stanzas */
    const char *condition; /* bounce queued stanzas with this */
    char stream_id[256];
    qitem_t *queue, **queue_tail;
    size_t queued;      /* bytes in queue */
    bool sasl_done;     /* SASL EXTERNAL succeeded: the restarted stream is ours */
    uv_timer_t timer;   /* connect timeout, then idle timeout */
    uint64_t last_sent; /* loop time of the last stanza, for the idle timeout */
    uint64_t serial;    /* the id of its resolver request */
    target_t *targets;  /* from the resolver, in the order to try */
    int ntargets, next_target;
    bool direct;         /* the current target wants TLS at once */
    bool cert_checked;   /* TLS is up and the peer's certificate was checked */
    bool cert_valid;     /* ...and it is valid for remote */
    pending_t *verifies; /* db:verify sent on this stream, unanswered */
    /* a db:verify link: it sends vkey for verifies's one id, then closes */
    bool is_verify;
    char *vkey;
};

static void free_out(uv_handle_t *h);

/* Once the peer stops reading, what we write waits in the connection's
 * queue: past s2s.max-queue bytes the stream ends (stalled), so that a peer
 * holds at most that much of our memory, however it makes us write
 * (stanzas, db:verify requests for its own incoming streams). */
static bool is_over_limit(const out_t *o)
{
    return o->conn && conn_queued(o->conn) > o->s->max_queue;
}

/* The peer does not read: the stream ends, closed gracefully (what waits
 * gets the close's grace time to leave; then it is dropped), and the next
 * stanza for the pair opens a new one. The stanza that did not fit bounces
 * as remote-server-timeout (out_send), as would any still queued, and the
 * db:verify requests waiting on the stream are answered invalid. */
static void stalled(out_t *o)
{
    if (o->dead) return;
    log_warn("s2s %s -> %s: the peer does not read (%zu bytes wait, s2s.max-queue %zu): "
             "ending the stream",
             o->local, o->remote, conn_queued(o->conn), o->s->max_queue);
    o->condition = "remote-server-timeout";
    o->dead = true;
    conn_close(o->conn); /* its on_close finishes */
}

static void out_write(out_t *o, const char *text)
{
    if (!o->conn) return;
    conn_write(o->conn, text, strlen(text));
    if (is_over_limit(o)) stalled(o);
}

static void bounce_queue(out_t *o)
{
    const char *condition = o->condition ? o->condition : "remote-server-not-found";
    while (o->queue) {
        qitem_t *q = o->queue;
        o->queue = q->next;
        s2s_bounce(o->s, q->stanza, condition, NULL);
        arena_free(q->stanza->arena);
        free(q);
    }
    o->queue_tail = &o->queue;
    o->queued = 0;
}

/* The answer to the db:verify id (every one when id is NULL, then
 * invalid): to the incoming streams that wait for it. */
static void answer_verifies(out_t *o, const char *id, bool valid)
{
    for (pending_t **p = &o->verifies; *p;) {
        pending_t *v = *p;
        if (id && strcmp(v->id, id) != 0) {
            p = &v->next;
            continue;
        }
        *p = v->next;
        in_verified(o->s, v->in_serial, o->local, o->remote, valid);
        free(v->id);
        free(v);
    }
}

static void send_verify(out_t *o, const char *id, const char *key)
{
    buf_t b = BUF_INIT;
    s2s_dialback_xml(&b, "verify", o->local, o->remote, id, NULL, key);
    out_write(o, b.data);
    buf_free(&b);
}

/* The key of s->out_by_pair: "local remote" (a domain holds no space). */
static const char *pair_key(char key[2 * JID_STRING_MAX], const char *local, const char *remote)
{
    snprintf(key, 2 * JID_STRING_MAX, "%s %s", local, remote);
    return key;
}

/* The stream stanzas from local to remote go on (not a db:verify link,
 * not ending), or NULL. */
static out_t *stream_for(s2s_t *s, const char *local, const char *remote)
{
    char key[2 * JID_STRING_MAX];
    out_t *o = map_get(&s->out_by_pair, pair_key(key, local, remote));
    return o && !o->dead ? o : NULL;
}

/* The stream is over: what waits on it is answered, and it goes. */
static void finish(out_t *o)
{
    o->dead = true;
    char key[2 * JID_STRING_MAX];
    if (map_get(&o->s->out_by_pair, pair_key(key, o->local, o->remote)) == o)
        map_del(&o->s->out_by_pair, key);
    bounce_queue(o);
    answer_verifies(o, NULL, false);
    for (out_t **p = &o->s->outs; *p; p = &(*p)->next)
        if (*p == o) {
            *p = o->next;
            break;
        }
    xstream_free(o->xs);
    uv_close((uv_handle_t *)&o->timer, free_out);
}

static void fail(out_t *o, const char *condition, const char *why)
{
    if (!o->dead) log_info("s2s %s -> %s: %s", o->local, o->remote, why);
    o->dead = true;
    if (!o->condition) o->condition = condition;
    if (o->conn)
        conn_abort(o->conn); /* its on_close finishes */
    else
        finish(o);
}

static void on_timer(uv_timer_t *t)
{
    out_t *o = t->data;
    if (o->state == O_READY && !o->is_verify) {
        /* Stanzas only note the time; the timer catches up here. */
        uint64_t idle = uv_now(o->s->loop) - o->last_sent;
        if (idle < o->s->idle_timeout) {
            uv_timer_start(&o->timer, on_timer, o->s->idle_timeout - idle, 0);
            return;
        }
        log_info("s2s %s -> %s: idle, closing", o->local, o->remote);
        o->dead = true;
        out_write(o, "</stream:stream>");
        if (o->conn) conn_close(o->conn);
        return;
    }
    fail(o, "remote-server-timeout", "timed out");
}

static void send_header(out_t *o)
{
    buf_t b = BUF_INIT;
    buf_appends(&b, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                    "xmlns:stream='http://etherx.jabber.org/streams' "
                    "xmlns:db='jabber:server:dialback' version='1.0' from='");
    xml_escape(&b, o->local, strlen(o->local), true);
    buf_appends(&b, "' to='");
    xml_escape(&b, o->remote, strlen(o->remote), true);
    buf_appends(&b, "'>");
    out_write(o, b.data);
    buf_free(&b);
    o->state = O_OPENING;
}

static void send_stanza(out_t *o, const elem_t *stanza)
{
    buf_t *b = &o->s->scratch; /* one buffer for every stanza: no allocation each */
    buf_reset(b);
    elem_serialize_stanza(stanza, NULL, b);
    if (!o->conn) return;
    int kind = metric_kind(stanza->name);
    if (kind >= 0) metric_inc(&s2s_metrics.stanzas_out[kind]);
    conn_write(o->conn, b->data, b->len);
}

static void flush_queue(out_t *o)
{
    while (o->queue) {
        qitem_t *q = o->queue;
        o->queue = q->next;
        send_stanza(o, q->stanza);
        arena_free(q->stanza->arena);
        free(q);
    }
    o->queue_tail = &o->queue;
    o->queued = 0;
    o->last_sent = uv_now(o->s->loop);
    if (o->s->idle_timeout) uv_timer_start(&o->timer, on_timer, o->s->idle_timeout, 0);
}

static void ready(out_t *o, const char *how)
{
    log_info("s2s %s -> %s: %s", o->local, o->remote, how);
    o->state = O_READY;
    uv_timer_stop(&o->timer);
    flush_queue(o);
}

/* XEP-0178: our certificate speaks for us; the authorization identity is
 * our domain. */
static void sasl_external(out_t *o)
{
    gnutls_datum_t in = {(unsigned char *)o->local, (unsigned)strlen(o->local)}, b64 = {NULL, 0};
    if (gnutls_base64_encode2(&in, &b64) < 0) log_fatal("out of memory");
    buf_t b = BUF_INIT;
    buf_appends(&b, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>");
    buf_append(&b, b64.data, b64.size);
    buf_appends(&b, "</auth>");
    gnutls_free(b64.data);
    out_write(o, b.data);
    buf_free(&b);
    o->state = O_SASL;
}

static bool offers_external(const elem_t *features)
{
    elem_t *mechs = elem_child(features, NS_SASL, "mechanisms");
    for (elem_t *m = mechs ? elem_child(mechs, NS_SASL, "mechanism") : NULL; m;
         m = elem_next(m, NS_SASL, "mechanism"))
        if (strcmp(elem_text(m), "EXTERNAL") == 0) return true;
    return false;
}

static void authenticate(out_t *o)
{
    o->state = O_DIALBACK;
    if (o->is_verify) {
        if (o->verifies) send_verify(o, o->verifies->id, o->vkey);
        return;
    }
    char key[65];
    s2s_dialback_key(o->s, o->remote, o->local, o->stream_id, key);
    buf_t b = BUF_INIT;
    s2s_dialback_xml(&b, "result", o->local, o->remote, NULL, NULL, key);
    out_write(o, b.data);
    buf_free(&b);
}

static void x_open(void *ud, elem_t *header, const char *default_ns)
{
    out_t *o = ud;
    (void)default_ns;
    const char *id = elem_attr(header, "id");
    log_debug("s2s %s -> %s: stream opened, id %s", o->local, o->remote, id ? id : "(none)");
    snprintf(o->stream_id, sizeof o->stream_id, "%s", id ? id : "");
    if (!id || !*id) fail(o, "remote-server-not-found", "the peer's stream has no id");
}

static void x_stanza(void *ud, elem_t *st, const xstream_raw_t *raw)
{
    out_t *o = ud;
    (void)raw;
    log_debug("s2s %s -> %s: <%s xmlns='%s'/>", o->local, o->remote, st->name, st->ns);
    if (o->dead) return;
    if (elem_is(st, NS_STREAMS, "features") && o->state == O_OPENING) {
        if (!conn_has_tls(o->conn) && elem_child(st, NS_TLS, "starttls")) {
            out_write(o, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            o->state = O_STARTTLS;
        } else if (!conn_has_tls(o->conn) &&
                   (o->s->require_tls || s2s_policy(o->s, o->remote) == AUTH_CERTIFICATE)) {
            fail(o, "remote-server-not-found", "the peer offers no STARTTLS");
        } else if (o->sasl_done) {
            ready(o, "authenticated by certificate (SASL EXTERNAL)");
        } else if (!o->is_verify && conn_has_tls(o->conn) && offers_external(st)) {
            sasl_external(o);
        } else {
            authenticate(o);
        }
    } else if (elem_is(st, NS_TLS, "proceed") && o->state == O_STARTTLS) {
        xstream_reset_discard(o->xs); /* what followed in the clear is dropped */
        conn_starttls(o->conn, s2s_tls_for(o->s, o->local), false, o->remote);
    } else if (elem_is(st, NS_SASL, "success") && o->state == O_SASL) {
        o->sasl_done = true;
        xstream_reset(o->xs);
        send_header(o);
    } else if (elem_is(st, NS_SASL, "failure") && o->state == O_SASL) {
        elem_t *cond = elem_first(st);
        log_info("s2s %s -> %s: SASL EXTERNAL refused (%s), trying dialback", o->local, o->remote,
                 cond ? cond->name : "?");
        authenticate(o);
    } else if (elem_is(st, NS_DIALBACK, "result") && !o->is_verify && o->state == O_DIALBACK) {
        const char *type = elem_attr(st, "type");
        if (type && strcmp(type, "valid") == 0) {
            ready(o, "dialback accepted");
        } else {
            fail(o, "remote-server-not-found", "the peer refused our dialback key");
        }
    } else if (elem_is(st, NS_DIALBACK, "verify") && elem_attr(st, "id")) {
        const char *type = elem_attr(st, "type");
        answer_verifies(o, elem_attr(st, "id"), type && !strcmp(type, "valid"));
        if (o->is_verify && !o->verifies) {
            o->dead = true;
            out_write(o, "</stream:stream>");
            conn_close(o->conn);
        }
    } else if (elem_is(st, NS_STREAMS, "error")) {
        elem_t *cond = elem_first(st);
        log_info("s2s %s -> %s: stream error %s", o->local, o->remote, cond ? cond->name : "?");
        fail(o, "remote-server-not-found", "stream error");
    } else if (elem_is(st, NS_TLS, "failure")) {
        fail(o, "remote-server-not-found", "STARTTLS refused");
    } else {
        log_debug("s2s %s -> %s: <%s/> ignored", o->local, o->remote, st->name);
    }
}

static void x_close(void *ud)
{
    out_t *o = ud;
    o->dead = true;
    out_write(o, "</stream:stream>");
    if (o->conn) conn_close(o->conn);
}

static const xstream_cb_t x_cb = {.on_open = x_open, .on_stanza = x_stanza, .on_close = x_close};

static void c_read(conn_t *c, const char *data, size_t len)
{
    out_t *o = conn_data(c);
    xstream_status_t st = xstream_feed(o->xs, data, len);
    if (st != XSTREAM_OK) fail(o, "remote-server-not-found", xstream_condition(st));
}

static void c_connect(conn_t *c, int status)
{
    out_t *o = conn_data(c);
    if (status < 0) {
        log_info("s2s %s -> %s: cannot connect: %s", o->local, o->remote, uv_strerror(status));
        o->condition = "remote-server-not-found";
        return; /* on_close follows */
    }
    if (o->direct) {
        conn_set_alpn(c, "xmpp-server"); /* XEP-0368 */
        conn_starttls(c, s2s_tls_for(o->s, o->local), false, o->remote);
    } else {
        send_header(o);
    }
}

static void c_tls(conn_t *c, int status)
{
    out_t *o = conn_data(c);
    if (status < 0) {
        log_info("s2s %s -> %s: TLS failed", o->local, o->remote);
        o->condition = "remote-server-not-found";
        return;
    }
    /* Whatever the policy, the peer's certificate is checked and the result
     * kept (hearthctl s2s shows it). A peer that must show a valid one and
     * does not is left; under dialback its domain is proven by DNS and the
     * callback, so an invalid certificate is allowed, but noted. */
    o->cert_checked = true;
    o->cert_valid = conn_peer_verified(c, o->remote);
    if (!o->cert_valid && s2s_policy(o->s, o->remote) == AUTH_CERTIFICATE) {
        fail(o, "remote-server-not-found", "its certificate is not valid for its domain");
        return;
    }
    log_info("s2s %s -> %s: the peer's certificate is %s", o->local, o->remote,
             o->cert_valid ? "valid for its domain"
                           : "not valid for its domain (allowed under dialback)");
    send_header(o);
}

static void free_out(uv_handle_t *h)
{
    out_t *o = h->data;
    free(o->local);
    free(o->remote);
    free(o->vkey);
    free(o->targets);
    free(o);
}

static bool connect_next(out_t *o);

static void c_close(conn_t *c, const char *reason)
{
    out_t *o = conn_data(c);
    if (reason && !o->dead) log_info("s2s %s -> %s: closed: %s", o->local, o->remote, reason);
    o->conn = NULL;
    /* Not connected yet: the resolver may have given more addresses. */
    if (!o->dead && o->state == O_CONNECTING && o->next_target < o->ntargets && connect_next(o))
        return;
    finish(o);
}

static const conn_cb_t c_cb = {
    .on_read = c_read, .on_connect = c_connect, .on_tls = c_tls, .on_close = c_close};

static char *xstrdup(const char *v)
{
    char *d = strdup(v ? v : "");
    if (!d) log_fatal("out of memory");
    return d;
}

static uint64_t next_serial = 1;

/* Connect to the next target of the resolver's list; false if none works. */
static bool connect_next(out_t *o)
{
    while (o->next_target < o->ntargets) {
        target_t *t = &o->targets[o->next_target++];
        o->direct = t->direct;
        o->conn = conn_connect(o->s->loop, t->addr, &c_cb, o);
        if (o->conn) {
            o->state = O_CONNECTING;
            log_info("s2s %s -> %s: connecting to %s%s", o->local, o->remote, t->addr,
                     t->direct ? " (direct TLS)" : "");
            return true;
        }
    }
    return false;
}

/* Ask the resolver for o's targets; with no resolver at the router now
 * after there was one (it is restarting), out_resolver_back() asks once it
 * is there again, and the connect timeout bounds the wait either way. A
 * server that never had a resolver bounces at once (out_new). */
static void ask_resolver(out_t *o)
{
    s2s_t *s = o->s;
    if (!s->has_resolver) {
        log_info("s2s %s -> %s: waiting for the resolver", o->local, o->remote);
        return;
    }
    arena_t *a = arena_new(0);
    elem_t *req = elem_new(a, NS_RESOLVER, "resolve");
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)o->serial);
    elem_set_attr(req, "id", id);
    elem_set_attr(req, "domain", o->remote);
    if (comp_send_to(s->comp, "resolver", s->id, NULL, req) < 0)
        log_info("s2s %s -> %s: router link down; resolving when it is back", o->local, o->remote);
    arena_free(a);
    log_info("s2s %s -> %s: resolving", o->local, o->remote);
}

void out_resolver_back(s2s_t *s)
{
    /* What was asked of a resolver that died is lost with it: ask again. */
    for (out_t *o = s->outs; o; o = o->next)
        if (!o->dead && o->state == O_RESOLVING) ask_resolver(o);
}

static out_t *out_new(s2s_t *s, const char *local, const char *remote)
{
    const s2s_route_t *route = s2s_route_for(s, remote);
    if (!route && !s->has_resolver && !s->had_resolver) {
        log_info("s2s: no route to %s and no resolver", remote);
        return NULL;
    }
    out_t *o = calloc(1, sizeof *o);
    if (!o) log_fatal("out of memory");
    o->s = s;
    o->serial = next_serial++;
    o->local = xstrdup(local);
    o->remote = xstrdup(remote);
    o->queue_tail = &o->queue;
    xstream_opts_t xo = {.max_stanza = s->max_stanza};
    o->xs = xstream_new(&xo, &x_cb, o);
    uv_timer_init(s->loop, &o->timer);
    o->timer.data = o;
    if (route) {
        o->targets = calloc(1, sizeof *o->targets);
        if (!o->targets) log_fatal("out of memory");
        snprintf(o->targets[0].addr, sizeof o->targets[0].addr, "%s", route->target);
        o->targets[0].direct = route->direct;
        o->ntargets = 1;
        if (!connect_next(o)) {
            log_warn("s2s: route to %s: bad address %s", remote, route->target);
            xstream_free(o->xs);
            uv_close((uv_handle_t *)&o->timer, free_out);
            return NULL;
        }
    } else {
        o->state = O_RESOLVING;
        ask_resolver(o);
    }
    uv_timer_start(&o->timer, on_timer, s->connect_timeout, 0);
    o->next = s->outs;
    s->outs = o;
    return o;
}

void out_resolved(s2s_t *s, const elem_t *answer)
{
    const char *id = elem_attr(answer, "id");
    out_t *o = s->outs;
    char mine[24];
    for (; o; o = o->next) {
        snprintf(mine, sizeof mine, "%llu", (unsigned long long)o->serial);
        if (id && !strcmp(id, mine)) break;
    }
    if (!o || o->dead || o->state != O_RESOLVING) return;
    int n = 0;
    for (elem_t *t = elem_child(answer, NS_RESOLVER, "target"); t;
         t = elem_next(t, NS_RESOLVER, "target"))
        n++;
    const char *error = elem_attr(answer, "error");
    if (n == 0) {
        fail(o,
             error && !strcmp(error, "timeout") ? "remote-server-timeout"
                                                : "remote-server-not-found",
             error ? error : "no address");
        return;
    }
    o->targets = calloc((size_t)n, sizeof *o->targets);
    if (!o->targets) log_fatal("out of memory");
    for (elem_t *t = elem_child(answer, NS_RESOLVER, "target"); t;
         t = elem_next(t, NS_RESOLVER, "target")) {
        const char *addr = elem_attr(t, "addr"), *port = elem_attr(t, "port");
        const char *tls = elem_attr(t, "tls");
        if (!addr || !port) continue;
        target_t *x = &o->targets[o->ntargets++];
        snprintf(x->addr, sizeof x->addr, strchr(addr, ':') ? "[%s]:%s" : "%s:%s", addr, port);
        x->direct = tls && !strcmp(tls, "direct");
    }
    o->state = O_CONNECTING;
    if (!connect_next(o)) fail(o, "remote-server-not-found", "no address to connect to");
}

void out_send(s2s_t *s, const char *local, const char *remote, const elem_t *stanza, size_t size)
{
    out_t *o = NULL;
    const char *refused = NULL, *text = NULL;
    char why[JID_STRING_MAX + 96];
    if (s2s_policy(s, remote) == AUTH_BLOCK) {
        refused = "not-allowed";
    } else if (!(o = stream_for(s, local, remote)) && s2s_is_unserved_subdomain(s, remote)) {
        /* RFC 6120 §8.3.3.19: the service does not exist here (checked
         * only where a stream would be made: such a domain never has one) */
        snprintf(why, sizeof why, "%s is not served here: no component is bound to it", remote);
        refused = "service-unavailable", text = why;
    } else {
        char key[2 * JID_STRING_MAX];
        if (!o && !s->is_stopping && (o = out_new(s, local, remote)))
            map_put(&s->out_by_pair, pair_key(key, local, remote), o);
        /* A peer that is not there yet holds at most s2s.max-queue bytes
         * of ours; one that stopped reading as much, and then its stream
         * ends (stalled; a stanza alone on an empty queue always goes). */
        size_t waiting = o && o->conn ? conn_queued(o->conn) : 0;
        if (!o) {
            refused = "remote-server-not-found";
        } else if (o->state != O_READY) {
            if (o->queued + waiting + size > s->max_queue) refused = "resource-constraint";
        } else if (waiting && waiting + size > s->max_queue) {
            stalled(o);
            refused = "remote-server-timeout";
        }
    }
    if (refused) {
        elem_t *copy = elem_copy(arena_new(0), stanza);
        s2s_bounce(s, copy, refused, text);
        arena_free(copy->arena);
        return;
    }
    if (o->state == O_READY) {
        send_stanza(o, stanza);
        o->last_sent = uv_now(s->loop);
        return;
    }
    qitem_t *q = calloc(1, sizeof *q);
    if (!q) log_fatal("out of memory");
    q->stanza = elem_copy(arena_new(0), stanza);
    q->stanza->parent = q->stanza->next = NULL;
    q->size = size;
    o->queued += size;
    *o->queue_tail = q;
    o->queue_tail = &q->next;
}

void out_verify(s2s_t *s, uint64_t in_serial, const char *receiving, const char *originating,
                const char *id, const char *key)
{
    /* Our stream to the authoritative server, if one is up, carries it
     * (XEP-0220 2.1.3): no new connection. */
    out_t *o = stream_for(s, receiving, originating);
    if (o && o->state != O_READY) o = NULL;
    bool reuse = o != NULL;
    /* One verification link per pair at a time: a second db:result for the
     * same pair while one is checked is answered invalid, not with another
     * connection. */
    for (out_t *p = s->outs; !reuse && p; p = p->next) {
        if (p->dead || !p->is_verify || strcmp(p->local, receiving) != 0 ||
            strcmp(p->remote, originating) != 0)
            continue;
        log_info("s2s %s -> %s: a verification is already under way; this one is invalid",
                 receiving, originating);
        in_verified(s, in_serial, receiving, originating, false);
        return;
    }
    if (!o && !s->is_stopping && (o = out_new(s, receiving, originating))) {
        o->is_verify = true;
        o->vkey = xstrdup(key);
    }
    if (!o) {
        in_verified(s, in_serial, receiving, originating, false);
        return;
    }
    pending_t *v = calloc(1, sizeof *v);
    if (!v) log_fatal("out of memory");
    v->id = xstrdup(id);
    v->in_serial = in_serial;
    v->next = o->verifies;
    o->verifies = v;
    if (reuse) {
        log_info("s2s %s -> %s: db:verify over this stream", receiving, originating);
        send_verify(o, id, key);
    }
}

void out_report(s2s_t *s, elem_t *list)
{
    static const char *const states[] = {"resolving",      "connecting", "opening", "starttls",
                                         "authenticating", "dialback",   "ready"};
    for (out_t *o = s->outs; o; o = o->next) {
        if (o->dead) continue;
        elem_t *e = elem_add(list, NULL, "out");
        elem_set_attr(e, "local", o->local);
        elem_set_attr(e, "remote", o->remote);
        elem_set_attr(e, "state", o->is_verify ? "verifying" : states[o->state]);
        elem_set_attr(e, "auth", o->sasl_done ? "certificate" : "dialback");
        elem_set_attr(e, "tls",
                      !o->conn || !conn_has_tls(o->conn) ? "none"
                      : o->direct                        ? "direct"
                                                         : "starttls");
        char n[32];
        snprintf(n, sizeof n, "%zu", o->queued + (o->conn ? conn_queued(o->conn) : 0));
        elem_set_attr(e, "queued", n);
        elem_set_attr(e, "cert", !o->cert_checked ? "none" : o->cert_valid ? "valid" : "invalid");
    }
}

void out_close_all(s2s_t *s)
{
    for (out_t *o = s->outs, *next; o; o = next) {
        next = o->next;
        if (!o->conn) {
            fail(o, "remote-server-not-found", "shutting down");
            continue;
        }
        o->dead = true;
        if (o->state != O_CONNECTING) out_write(o, "</stream:stream>");
        conn_close(o->conn);
    }
}

/* ---- metrics: outgoing streams by state ----------------------------------- */

typedef struct state_count {
    s2s_t *s;
    enum out_state state;
} state_count_t;

static double count_state(void *ud)
{
    const state_count_t *c = ud;
    unsigned n = 0;
    for (const out_t *o = c->s->outs; o; o = o->next)
        if (!o->is_verify && !o->dead && o->state == c->state) n++;
    return n;
}

void out_metrics_init(s2s_t *s)
{
    static const char *const names[] = {"resolving", "connecting", "opening", "starttls",
                                        "sasl",      "dialback",   "ready"};
    static state_count_t counts[O_READY + 1];
    for (int i = 0; i <= O_READY; i++) {
        counts[i] = (state_count_t){s, (enum out_state)i};
        metrics_gauge_fn("hearth_s2s_streams", "server-to-server streams by direction and state",
                         count_state, &counts[i], "direction", "out", "state", names[i], NULL);
    }
}
