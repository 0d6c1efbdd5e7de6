/* in.c — streams from other servers: STARTTLS or direct TLS, SASL EXTERNAL
 * for a peer whose certificate is valid for the domain it names, dialback
 * (a key from a peer with a valid certificate is accepted as is, XEP-0344;
 * others are checked with the authoritative server through out_verify;
 * db:verify answered for our own keys), then stanzas from the domains
 * authenticated on the stream. */
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "s2s.h"

struct in {
    s2s_t *s;
    in_t *next;
    uint64_t serial;
    conn_t *conn;
    xstream_t *xs;
    char id[33];
    char *from;      /* the stream header's from: the domain SASL would prove */
    bool sasl_done;  /* SASL EXTERNAL succeeded */
    bool direct;     /* accepted on s2s.listen-tls */
    char **verified; /* remote domains dialback verified on this stream */
    int nverified;
    bool dead;
    bool flow_paused; /* the router link is full (in_resume_all) */
    bool rate_paused; /* over s2s.rate: the timer resumes reading */
    int verifying;    /* db:results waiting for the authoritative server */
    rate_bucket_t bucket;
    uv_timer_t timer; /* idle, or the end of a rate pause */
};

static uint64_t next_serial = 1;

/* Each db:result we cannot check by certificate makes us connect to the
 * claimed domain's server: a stream may have only this many waiting, or
 * one peer could make us open connections to a third party without end. */
#define MAX_VERIFYING 4

/* What we write to a peer answers what it sent (dialback results and
 * verifications, features); one that sends and never reads would grow our
 * queue without end: past s2s.max-queue bytes its stream is cut. */
static void in_write(in_t *in, const char *text)
{
    if (!in->conn || in->dead) return;
    conn_write(in->conn, text, strlen(text));
    if (conn_queued(in->conn) > in->s->max_queue) {
        log_warn("s2s incoming from %s: the peer does not read (%zu bytes wait, s2s.max-queue "
                 "%zu): closing",
                 conn_peer(in->conn), conn_queued(in->conn), in->s->max_queue);
        in->dead = true;
        conn_abort(in->conn);
    }
}

static void stream_error(in_t *in, const char *condition, const char *text)
{
    if (in->dead) return;
    log_info("s2s incoming from %s: stream error %s%s%s", conn_peer(in->conn), condition,
             text ? ": " : "", text ? text : "");
    buf_t b = BUF_INIT;
    xmpp_stream_error(&b, condition, text);
    buf_appends(&b, "</stream:stream>");
    conn_write(in->conn, b.data, b.len);
    buf_free(&b);
    in->dead = true;
    conn_close(in->conn);
}

static bool is_verified(const in_t *in, const char *domain)
{
    for (int i = 0; i < in->nverified; i++)
        if (!strcmp(in->verified[i], domain)) return true;
    return false;
}

static void update_reading(in_t *in)
{
    if (in->dead || !in->conn) return;
    if (in->flow_paused || in->rate_paused)
        conn_pause(in->conn);
    else if (conn_is_paused(in->conn))
        conn_resume(in->conn);
}

/* The end of a rate pause, or of the idle timeout. */
static void on_timer(uv_timer_t *t)
{
    in_t *in = t->data;
    if (in->dead || !in->conn) return;
    if (in->rate_paused) {
        in->rate_paused = false;
        update_reading(in);
        if (in->s->idle_timeout) uv_timer_start(&in->timer, on_timer, in->s->idle_timeout, 0);
        return;
    }
    log_info("s2s incoming from %s: idle, closing", conn_peer(in->conn));
    in_write(in, "</stream:stream>");
    in->dead = true;
    conn_close(in->conn);
}

static void send_features(in_t *in)
{
    bool tls = conn_has_tls(in->conn);
    buf_t b = BUF_INIT;
    buf_appends(&b, "<stream:features>");
    if (!tls)
        buf_appends(&b, in->s->require_tls
                            ? "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
                            : "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    if (tls && !in->sasl_done && in->from && s2s_policy(in->s, in->from) != AUTH_BLOCK &&
        conn_peer_verified(in->conn, in->from))
        buf_appends(&b, "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                        "<mechanism>EXTERNAL</mechanism></mechanisms>");
    if (tls || !in->s->require_tls)
        buf_appends(&b, "<dialback xmlns='urn:xmpp:features:dialback'/>");
    buf_appends(&b, "</stream:features>");
    in_write(in, b.data);
    buf_free(&b);
}

/* A peer that names one of our own domains as its own is refused with the
 * stream error invalid-from (RFC 6120 4.9.3.9: a from that is not a domain
 * the peer may use), whether in its stream header, a db:result, a db:verify
 * or, through the header, SASL EXTERNAL. No honest server does that (our
 * domains reach each other without s2s), so it is an attack or a loop, and
 * ending the stream beats a dialback 'invalid' the peer could retry on the
 * same stream: nothing it claims is ever checked, so no key for our own
 * domain is ever sent to anyone, no connection made to ourselves, and no
 * certificate for our domain (XEP-0344) accepted. True when refused. */
static bool claims_local(in_t *in, const char *domain, const char *where)
{
    char prepped[JID_STRING_MAX];
    if (!domain || jid_prep(domain, strlen(domain), prepped, NULL) < 0 ||
        !s2s_is_local(in->s, prepped))
        return false;
    log_warn("s2s incoming from %s: %s claims our own domain %s", conn_peer(in->conn), where,
             prepped);
    stream_error(in, "invalid-from", "that domain is served here");
    return true;
}

static void x_open(void *ud, elem_t *header, const char *default_ns)
{
    in_t *in = ud;
    const char *to = elem_attr(header, "to"), *from = elem_attr(header, "from");
    char prepped[JID_STRING_MAX];
    free(in->from);
    in->from = from && jid_prep(from, strlen(from), prepped, NULL) == 0 ? strdup(prepped) : NULL;
    random_hex(in->id, 16);
    buf_t b = BUF_INIT;
    buf_appends(&b, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                    "xmlns:stream='http://etherx.jabber.org/streams' "
                    "xmlns:db='jabber:server:dialback' version='1.0' id='");
    buf_appends(&b, in->id);
    buf_appends(&b, "'");
    if (to) {
        buf_appends(&b, " from='");
        xml_escape(&b, to, strlen(to), true);
        buf_appends(&b, "'");
    }
    if (from) {
        buf_appends(&b, " to='");
        xml_escape(&b, from, strlen(from), true);
        buf_appends(&b, "'");
    }
    buf_appends(&b, ">");
    in_write(in, b.data);
    buf_free(&b);
    if (strcmp(default_ns, NS_SERVER) != 0) {
        stream_error(in, "invalid-namespace", NULL);
        return;
    }
    if (to && !s2s_is_local(in->s, to)) {
        stream_error(in, "host-unknown", NULL);
        return;
    }
    if (claims_local(in, from, "the stream header")) return;
    send_features(in);
}

/* Streams from domain authenticated, on any stream but in. */
static int streams_from(const s2s_t *s, const in_t *in, const char *domain)
{
    int n = 0;
    for (const in_t *p = s->ins; p; p = p->next)
        if (p != in && !p->dead && is_verified(p, domain)) n++;
    return n;
}

/* domain has proven itself on in: accept its stanzas, unless it has too
 * many streams already (then the stream ends: false). */
static bool authorize(in_t *in, const char *domain)
{
    if (is_verified(in, domain)) return true;
    if (streams_from(in->s, in, domain) >= in->s->max_per_domain) {
        stream_error(in, "resource-constraint", "too many streams from your domain");
        return false;
    }
    char **v = realloc(in->verified, (size_t)(in->nverified + 1) * sizeof(char *));
    if (!v || !(v[in->nverified] = strdup(domain))) log_fatal("out of memory");
    in->verified = v;
    in->nverified++;
    return true;
}

/* Answer a db:result (after authorize when valid). */
static void answer_result(in_t *in, const char *receiving, const char *originating, bool valid)
{
    log_info("s2s incoming: dialback for %s -> %s %s", originating, receiving,
             valid ? "valid" : "invalid");
    if (valid && !authorize(in, originating)) return;
    buf_t b = BUF_INIT;
    s2s_dialback_xml(&b, "result", receiving, originating, NULL, valid ? "valid" : "invalid",
                     NULL);
    in_write(in, b.data);
    buf_free(&b);
}

/* XEP-0178: the peer's certificate proves the domain of its stream header;
 * the authorization identity, if any, must be that domain. */
static void on_sasl_auth(in_t *in, elem_t *st)
{
    const char *mechanism = elem_attr(st, "mechanism"), *text = elem_text(st);
    char authzid[JID_STRING_MAX] = "";
    const char *condition = NULL;
    if (*text && strcmp(text, "=") != 0) {
        gnutls_datum_t b64 = {(unsigned char *)text, (unsigned)strlen(text)}, raw = {NULL, 0};
        if (gnutls_base64_decode2(&b64, &raw) < 0 || raw.size >= sizeof authzid ||
            memchr(raw.data, '\0', raw.size))
            condition = "incorrect-encoding";
        else
            memcpy(authzid, raw.data, raw.size);
        gnutls_free(raw.data);
    }
    if (!mechanism || strcmp(mechanism, "EXTERNAL") != 0)
        condition = "invalid-mechanism";
    else if (in->sasl_done || !in->from || s2s_policy(in->s, in->from) == AUTH_BLOCK ||
             !conn_peer_verified(in->conn, in->from))
        condition = "not-authorized";
    else if (!condition && *authzid && strcmp(authzid, in->from) != 0)
        condition = "invalid-authzid";
    /* in->from is never local (x_open refused it); and what it proves here
     * must not be either. */
    if (!condition && claims_local(in, in->from, "SASL EXTERNAL")) return;
    if (condition) {
        log_info("s2s incoming from %s: SASL EXTERNAL for %s refused: %s", conn_peer(in->conn),
                 in->from ? in->from : "(no from)", condition);
        buf_t b = BUF_INIT;
        xmpp_sasl_failure(&b, condition);
        in_write(in, b.data);
        buf_free(&b);
        return;
    }
    if (!authorize(in, in->from)) return;
    log_info("s2s incoming from %s: %s authenticated by certificate (SASL EXTERNAL)",
             conn_peer(in->conn), in->from);
    in_write(in, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    in->sasl_done = true;
    xstream_reset(in->xs);
}

static bool is_stanza(const elem_t *st)
{
    return st->name && (!strcmp(st->name, "message") || !strcmp(st->name, "presence") ||
                        !strcmp(st->name, "iq"));
}

static void on_db_result(in_t *in, elem_t *st)
{
    const char *from = elem_attr(st, "from"), *to = elem_attr(st, "to");
    const char *key = elem_text(st);
    if (in->s->require_tls && !conn_has_tls(in->conn)) {
        stream_error(in, "policy-violation", "STARTTLS first");
        return;
    }
    if (!from || !to || !*key) {
        stream_error(in, "invalid-xml", "db:result needs from, to and a key");
        return;
    }
    if (!s2s_is_local(in->s, to)) {
        stream_error(in, "host-unknown", NULL);
        return;
    }
    if (claims_local(in, from, "db:result")) return;
    s2s_auth_t policy = s2s_policy(in->s, from);
    if (policy != AUTH_BLOCK && conn_peer_verified(in->conn, from)) {
        answer_result(in, to, from, true);
    } else if (policy != AUTH_DIALBACK) {
        log_info("s2s incoming from %s: %s needs a valid certificate", conn_peer(in->conn), from);
        answer_result(in, to, from, false);
    } else if (in->verifying >= MAX_VERIFYING) {
        stream_error(in, "policy-violation", "too many dialback requests waiting");
    } else {
        log_info("s2s incoming from %s: dialback for %s -> %s, verifying", conn_peer(in->conn),
                 from, to);
        in->verifying++;
        out_verify(in->s, in->serial, to, from, in->id, key);
    }
}

static void on_db_verify(in_t *in, elem_t *st)
{
    const char *from = elem_attr(st, "from"), *to = elem_attr(st, "to");
    const char *id = elem_attr(st, "id");
    if (!from || !to || !id) {
        stream_error(in, "invalid-xml", "db:verify needs from, to and id");
        return;
    }
    if (claims_local(in, from, "db:verify")) return;
    char key[65];
    s2s_dialback_key(in->s, from, to, id, key);
    /* In constant time: strcmp would tell a guesser how many of its first
     * characters are right. */
    const char *given = elem_text(st);
    bool valid = s2s_is_local(in->s, to) && tls_equal(key, 64, given, strlen(given));
    buf_t b = BUF_INIT;
    s2s_dialback_xml(&b, "verify", to, from, id, valid ? "valid" : "invalid", NULL);
    in_write(in, b.data);
    buf_free(&b);
}

static void on_stanza_in(in_t *in, elem_t *st)
{
    const char *from = elem_attr(st, "from"), *to = elem_attr(st, "to");
    jid_t *jfrom = from ? jid_new(from, strlen(from), NULL) : NULL;
    jid_t *jto = to ? jid_new(to, strlen(to), NULL) : NULL;
    if (!jfrom || !jto)
        stream_error(in, "improper-addressing", "a stanza needs a valid from and to");
    else if (!is_verified(in, jid_domain(jfrom)))
        stream_error(in, "invalid-from", NULL);
    else if (!s2s_is_local(in->s, jid_domain(jto)))
        stream_error(in, "host-unknown", NULL);
    else {
        int kind = metric_kind(st->name);
        if (kind >= 0) metric_inc(&s2s_metrics.stanzas_in[kind]);
        s2s_deliver(in->s, jto, st);
    }
    /* A peer over s2s.rate, or faster than the router link, is read more
     * slowly: the timer (once the whole debt of what was read is paid) or
     * in_resume_all reads on. */
    uint64_t wait = rate_take(&in->bucket, in->s->rate, in->s->burst, uv_now(in->s->loop));
    if (wait) {
        in->rate_paused = true;
        uv_timer_start(&in->timer, on_timer, wait, 0);
    }
    if (in->s->comp && comp_is_full(in->s->comp)) in->flow_paused = true;
    update_reading(in);
    jid_free(jfrom);
    jid_free(jto);
}

static void x_stanza(void *ud, elem_t *st, const xstream_raw_t *raw)
{
    in_t *in = ud;
    (void)raw;
    if (in->dead) return;
    log_debug("s2s incoming from %s: <%s xmlns='%s'/>", conn_peer(in->conn), st->name, st->ns);
    if (elem_is(st, NS_TLS, "starttls")) {
        if (conn_has_tls(in->conn)) {
            stream_error(in, "policy-violation", "TLS is already on");
            return;
        }
        in_write(in, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        xstream_reset_discard(in->xs); /* what followed in the clear is dropped */
        conn_starttls(in->conn, in->s->tls_server, true, NULL);
    } else if (elem_is(st, NS_SASL, "auth")) {
        on_sasl_auth(in, st);
    } else if (elem_is(st, NS_DIALBACK, "result")) {
        on_db_result(in, st);
    } else if (elem_is(st, NS_DIALBACK, "verify")) {
        on_db_verify(in, st);
    } else if (is_stanza(st) && !strcmp(st->ns, NS_SERVER)) {
        on_stanza_in(in, st);
    } else if (elem_is(st, NS_STREAMS, "error")) {
        in->dead = true;
        conn_close(in->conn);
    } else {
        stream_error(in, "unsupported-stanza-type", NULL);
    }
}

static void x_close(void *ud)
{
    in_t *in = ud;
    in_write(in, "</stream:stream>");
    in->dead = true;
    conn_close(in->conn);
}

static const xstream_cb_t x_cb = {.on_open = x_open, .on_stanza = x_stanza, .on_close = x_close};

static void c_read(conn_t *c, const char *data, size_t len)
{
    in_t *in = conn_data(c);
    if (in->s->idle_timeout && !in->rate_paused)
        uv_timer_start(&in->timer, on_timer, in->s->idle_timeout, 0);
    xstream_status_t st = xstream_feed(in->xs, data, len);
    if (st != XSTREAM_OK) stream_error(in, xstream_condition(st), NULL);
}

static void c_tls(conn_t *c, int status)
{
    if (status < 0) log_info("s2s incoming from %s: TLS failed", conn_peer(c));
}

static void free_in(uv_handle_t *h)
{
    in_t *in = h->data;
    for (int i = 0; i < in->nverified; i++)
        free(in->verified[i]);
    free(in->verified);
    free(in->from);
    free(in);
}

static void c_close(conn_t *c, const char *reason)
{
    in_t *in = conn_data(c);
    log_debug("s2s incoming from %s closed%s%s", conn_peer(c), reason ? ": " : "",
              reason ? reason : "");
    in->conn = NULL;
    in->dead = true;
    in->s->nins--;
    for (in_t **p = &in->s->ins; *p; p = &(*p)->next)
        if (*p == in) {
            *p = in->next;
            break;
        }
    xstream_free(in->xs);
    uv_close((uv_handle_t *)&in->timer, free_in);
}

static const conn_cb_t c_cb = {.on_read = c_read, .on_tls = c_tls, .on_close = c_close};

void in_accept(s2s_t *s, uv_stream_t *server, bool direct_tls)
{
    in_t *in = calloc(1, sizeof *in);
    if (!in) log_fatal("out of memory");
    in->s = s;
    in->serial = next_serial++;
    in->conn = conn_accept(server, &c_cb, in);
    if (!in->conn) {
        free(in);
        return;
    }
    xstream_opts_t xo = {.max_stanza = s->max_stanza};
    in->xs = xstream_new(&xo, &x_cb, in);
    uv_timer_init(s->loop, &in->timer);
    in->timer.data = in;
    rate_init(&in->bucket, s->burst, uv_now(s->loop));
    if (s->idle_timeout) uv_timer_start(&in->timer, on_timer, s->idle_timeout, 0);
    in->direct = direct_tls;
    in->next = s->ins;
    s->ins = in;
    s->nins++;
    log_info("s2s incoming from %s%s", conn_peer(in->conn), direct_tls ? " (direct TLS)" : "");
    if (s->nins > s->max_connections) {
        log_warn("s2s incoming from %s refused: s2s.max-connections (%d) reached",
                 conn_peer(in->conn), s->max_connections);
        in->dead = true;
        conn_abort(in->conn);
    } else if (direct_tls) {
        conn_set_alpn(in->conn, "xmpp-server"); /* XEP-0368 */
        conn_starttls(in->conn, s->tls_server, true, NULL);
    }
}

void in_verified(s2s_t *s, uint64_t serial, const char *receiving, const char *originating,
                 bool valid)
{
    in_t *in = s->ins;
    while (in && in->serial != serial)
        in = in->next;
    if (in && in->verifying > 0) in->verifying--;
    if (in && !in->dead) answer_result(in, receiving, originating, valid);
}

void in_resume_all(s2s_t *s)
{
    for (in_t *in = s->ins; in; in = in->next) {
        in->flow_paused = false;
        update_reading(in);
    }
}

void in_report(s2s_t *s, elem_t *list)
{
    for (in_t *in = s->ins; in; in = in->next) {
        if (in->dead || !in->conn) continue;
        elem_t *e = elem_add(list, NULL, "in");
        elem_set_attr(e, "peer", conn_peer(in->conn));
        buf_t domains = BUF_INIT;
        for (int i = 0; i < in->nverified; i++)
            buf_printf(&domains, "%s%s", i ? "," : "", in->verified[i]);
        elem_set_attr(e, "domains", domains.len ? domains.data : "");
        buf_free(&domains);
        elem_set_attr(e, "auth", in->sasl_done ? "certificate" : "dialback");
        elem_set_attr(e, "tls", !conn_has_tls(in->conn) ? "none"
                                : in->direct            ? "direct"
                                                        : "starttls");
    }
}

void in_close_all(s2s_t *s)
{
    for (in_t *in = s->ins; in; in = in->next)
        if (!in->dead) stream_error(in, "system-shutdown", NULL);
}

/* ---- metrics: incoming streams by state ----------------------------------- */

static double count_in(void *ud, bool is_authenticated)
{
    const s2s_t *s = ud;
    unsigned n = 0;
    for (const in_t *in = s->ins; in; in = in->next)
        if (!in->dead && (in->nverified > 0 || in->sasl_done) == is_authenticated) n++;
    return n;
}

static double count_in_authenticated(void *ud)
{
    return count_in(ud, true);
}

static double count_in_negotiating(void *ud)
{
    return count_in(ud, false);
}

void in_metrics_init(s2s_t *s)
{
    const char *help = "server-to-server streams by direction and state";
    metrics_gauge_fn("hearth_s2s_streams", help, count_in_negotiating, s, "direction", "in",
                     "state", "negotiating", NULL);
    metrics_gauge_fn("hearth_s2s_streams", help, count_in_authenticated, s, "direction", "in",
                     "state", "authenticated", NULL);
}
