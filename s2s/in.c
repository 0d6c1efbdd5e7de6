/* in.c — streams from other servers: STARTTLS, dialback (keys checked with
 * the authoritative server through out_verify; db:verify answered for our
 * own keys), then stanzas from the domains verified on the stream. */
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
    char **verified; /* remote domains dialback verified on this stream */
    int nverified;
    bool dead;
    uv_timer_t timer; /* idle */
};

static uint64_t next_serial = 1;

static void in_write(in_t *in, const char *text)
{
    if (in->conn && !in->dead) conn_write(in->conn, text, strlen(text));
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

static void on_idle(uv_timer_t *t)
{
    in_t *in = t->data;
    if (in->dead || !in->conn) return;
    log_info("s2s incoming from %s: idle, closing", conn_peer(in->conn));
    in_write(in, "</stream:stream>");
    in->dead = true;
    conn_close(in->conn);
}

static void x_open(void *ud, elem_t *header, const char *default_ns)
{
    in_t *in = ud;
    const char *to = elem_attr(header, "to"), *from = elem_attr(header, "from");
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
    if (!conn_has_tls(in->conn))
        in_write(in, in->s->require_tls
                         ? "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                           "<required/></starttls></stream:features>"
                         : "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                           "<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>");
    else
        in_write(in, "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                     "</stream:features>");
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
    log_info("s2s incoming from %s: dialback for %s -> %s, verifying", conn_peer(in->conn),
             from, to);
    out_verify(in->s, in, in->serial, to, from, in->id, key);
}

static void on_db_verify(in_t *in, elem_t *st)
{
    const char *from = elem_attr(st, "from"), *to = elem_attr(st, "to");
    const char *id = elem_attr(st, "id");
    if (!from || !to || !id) {
        stream_error(in, "invalid-xml", "db:verify needs from, to and id");
        return;
    }
    char key[65];
    s2s_dialback_key(in->s, from, to, id, key);
    bool valid = s2s_is_local(in->s, to) && strcmp(key, elem_text(st)) == 0;
    buf_t b = BUF_INIT;
    buf_appends(&b, "<db:verify from='");
    xml_escape(&b, to, strlen(to), true);
    buf_appends(&b, "' to='");
    xml_escape(&b, from, strlen(from), true);
    buf_appends(&b, "' id='");
    xml_escape(&b, id, strlen(id), true);
    buf_printf(&b, "' type='%s'/>", valid ? "valid" : "invalid");
    in_write(in, b.data);
    buf_free(&b);
}

static void on_stanza_in(in_t *in, elem_t *st)
{
    const char *from = elem_attr(st, "from"), *to = elem_attr(st, "to");
    jid_t *jfrom = from ? jid_new(from, strlen(from), NULL) : NULL;
    jid_t *jto = to ? jid_new(to, strlen(to), NULL) : NULL;
    if (!jfrom || !is_verified(in, jid_domain(jfrom)))
        stream_error(in, "invalid-from", NULL);
    else if (!jto || !s2s_is_local(in->s, jid_domain(jto)))
        stream_error(in, "host-unknown", NULL);
    else
        s2s_deliver_local(in->s, st);
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
        xstream_reset(in->xs);
        conn_starttls(in->conn, in->s->tls_server, true, NULL);
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
    if (in->s->idle_timeout) uv_timer_start(&in->timer, on_idle, in->s->idle_timeout, 0);
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
    free(in);
}

static void c_close(conn_t *c, const char *reason)
{
    in_t *in = conn_data(c);
    log_debug("s2s incoming from %s closed%s%s", conn_peer(c), reason ? ": " : "",
              reason ? reason : "");
    in->conn = NULL;
    in->dead = true;
    for (in_t **p = &in->s->ins; *p; p = &(*p)->next)
        if (*p == in) {
            *p = in->next;
            break;
        }
    xstream_free(in->xs);
    uv_close((uv_handle_t *)&in->timer, free_in);
}

static const conn_cb_t c_cb = {.on_read = c_read, .on_tls = c_tls, .on_close = c_close};

void in_accept(s2s_t *s, uv_stream_t *server)
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
    if (s->idle_timeout) uv_timer_start(&in->timer, on_idle, s->idle_timeout, 0);
    in->next = s->ins;
    s->ins = in;
    log_debug("s2s incoming from %s", conn_peer(in->conn));
}

void in_verified(s2s_t *s, uint64_t serial, const char *receiving, const char *originating,
                 bool valid)
{
    in_t *in = s->ins;
    while (in && in->serial != serial)
        in = in->next;
    if (!in || in->dead) return;
    log_info("s2s incoming: dialback for %s -> %s %s", originating, receiving,
             valid ? "valid" : "invalid");
    if (valid && !is_verified(in, originating)) {
        char **v = realloc(in->verified, (size_t)(in->nverified + 1) * sizeof(char *));
        if (!v || !(v[in->nverified] = strdup(originating))) log_fatal("out of memory");
        in->verified = v;
        in->nverified++;
    }
    buf_t b = BUF_INIT;
    buf_appends(&b, "<db:result from='");
    xml_escape(&b, receiving, strlen(receiving), true);
    buf_appends(&b, "' to='");
    xml_escape(&b, originating, strlen(originating), true);
    buf_printf(&b, "' type='%s'/>", valid ? "valid" : "invalid");
    in_write(in, b.data);
    buf_free(&b);
}

void in_close_all(s2s_t *s)
{
    for (in_t *in = s->ins; in; in = in->next)
        if (!in->dead) stream_error(in, "system-shutdown", NULL);
}
