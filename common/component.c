/* component.c — a daemon's link to the router: connect, authenticate with
 * SCRAM-SHA-256, bind, carry routes, and reconnect when the router goes.
 *
 * One comp_t per daemon. It keeps the list of names the daemon asked for
 * and binds them all again after every reconnect, so a router restart needs
 * nothing from the daemon but patience. The link's states follow the
 * component protocol of DESIGN.md; the router's side is router/link.c. */
#include "component_private.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "jid.h"
#include "log.h"
#include "sasl.h"
#include "xmpp.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000

static void on_open(void *ud, elem_t *header, const char *default_ns);
static void on_stanza(void *ud, elem_t *stanza, const xstream_raw_t *raw);
static void on_stream_close(void *ud);
static void on_connect(conn_t *c, int status);
static void open_stream(comp_t *c);
static void on_tls(conn_t *c, int status);
static void on_read(conn_t *c, const char *data, size_t len);
static void on_drain(conn_t *c);
static void on_close(conn_t *c, const char *reason);

static const xstream_cb_t stream_cb = {on_open, on_stanza, on_stream_close};
static const conn_cb_t conn_cb = {
    .on_read = on_read,
    .on_drain = on_drain,
    .on_connect = on_connect,
    .on_tls = on_tls,
    .on_close = on_close,
};

char *comp_strdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) log_fatal("out of memory");
    return d;
}

comp_t *comp_new(uv_loop_t *loop, const comp_opts_t *opts, const comp_cb_t *cb, void *ud)
{
    comp_t *c = calloc(1, sizeof(*c));
    if (!c) log_fatal("out of memory");
    c->loop = loop;
    c->cb = *cb;
    c->ud = ud;
    c->router = comp_strdup(opts->router);
    c->id = comp_strdup(opts->id);
    c->user = comp_strdup(opts->user);
    c->password = comp_strdup(opts->password);
    c->tls_ca = opts->tls_ca ? comp_strdup(opts->tls_ca) : NULL;
    c->tls_name = comp_strdup(opts->tls_name);
    c->max_stanza = opts->max_stanza ? opts->max_stanza : 1024 * 1024;
    c->is_shallow = opts->shallow;
    c->backoff_ms = BACKOFF_FIRST_MS;
    uv_timer_init(loop, &c->retry);
    c->retry.data = c;
    return c;
}

void comp_set_shallow(comp_t *c)
{
    c->is_shallow = true;
}

void comp_route_head(buf_t *b, const char *to, const char *from, const char *user, const char *cid,
                     const char *sid)
{
    buf_appends(b, "<route");
    xml_attr(b, "to", to);
    xml_attr(b, "from", from);
    if (user) xml_attr(b, "user", user);
    if (cid) xml_attr(b, "cid", cid);
    if (sid) xml_attr(b, "sid", sid);
}

arena_t *comp_keep_route(comp_t *c)
{
    return c->cur_xs ? xstream_detach(c->cur_xs) : NULL;
}

elem_t *comp_reparse(comp_t *c, arena_t *a, const xstream_raw_t *raw)
{
    if (!c->reparser && !(c->reparser = xml_reparser_new(NS_HEARTH_COMPONENT, c->max_stanza)))
        log_fatal("out of memory");
    return xml_reparse(c->reparser, a, raw->data, raw->len);
}

comp_t *comp_new_from_config(uv_loop_t *loop, const config_t *config, const char *id,
                             comp_role_t role, const comp_cb_t *cb, void *ud)
{
    comp_opts_t opts = {
        .router = config_get(config, "router.listen"),
        .id = id,
        .tls_ca = config_get(config, "router.ca"),
        .tls_name = config_get(config, "router.tls-name"),
    };
    const char *role_name = comp_role_name(role);
    char *password = NULL, *err = NULL;
    /* A component daemon of ours (hearth-upload, hearth-proxy65) logs in
     * with the router/component account named as the daemon, whose bind
     * list says which names it may take. */
    if (role == ROLE_COMPONENT) {
        for (int i = 0; i < config_count(config, "router.component"); i++) {
            const char *name = config_get_at(config, "router.component@name", i);
            if (!name || strcmp(name, id) != 0) continue;
            opts.user = name;
            password = config_secret(config, "router.component@password",
                                     "router.component@password-file", i, &err);
            if (!password)
                log_fatal("%s: router component account %s: %s", config_file(config), name,
                          err ? err : "no password or password-file");
            break;
        }
        if (!password)
            log_fatal("%s: no router account for %s (router/component name='%s' with its "
                      "password and bind list)",
                      config_file(config), id, id);
    }
    int n = role == ROLE_COMPONENT ? 0 : config_count(config, "router.account");
    for (int i = 0; i < n; i++) {
        const char *r = config_get_at(config, "router.account@role", i);
        if (!r || strcmp(r, role_name) != 0) continue;
        const char *name = config_get_at(config, "router.account@name", i);
        opts.user = name && *name ? name : role_name;
        password = config_secret(config, "router.account@password", "router.account@password-file",
                                 i, &err);
        if (!password)
            log_fatal("%s: router account %s: %s", config_file(config), opts.user,
                      err ? err : "no password or password-file");
        break;
    }
    if (!password) { /* first-party roles only: a component has its account */
        const char *shared = config_get(config, "router.password");
        if (!shared || !*shared)
            log_fatal("%s: no router account for role %s (router/account role='%s')",
                      config_file(config), role_name, role_name);
        log_warn("%s: no router account of role %s; using the shared router.password, with which "
                 "any daemon can act as any other (give each its own router/account)",
                 config_file(config), role_name);
        opts.user = config_get(config, "router.user");
        password = strdup(shared);
        if (!password) log_fatal("out of memory");
    }
    opts.password = password;
    comp_t *c = comp_new(loop, &opts, cb, ud);
    explicit_bzero(password, strlen(password));
    free(password);
    return c;
}

void *comp_data(const comp_t *c)
{
    return c->ud;
}

bool comp_is_ready(const comp_t *c)
{
    return c->state == COMP_READY;
}

unsigned long comp_dropped(const comp_t *c)
{
    return c->dropped;
}

bool comp_is_full(const comp_t *c)
{
    return (c->conn && conn_is_full(c->conn)) || direct_is_full(c);
}

void comp_pause(comp_t *c)
{
    c->is_paused = true;
    if (c->conn) conn_pause(c->conn);
    direct_pause(c, true);
}

void comp_resume(comp_t *c)
{
    c->is_paused = false;
    if (c->conn) conn_resume(c->conn);
    direct_pause(c, false);
}

static void connect_now(comp_t *c)
{
    c->state = COMP_CONNECTING;
    c->conn = conn_connect(c->loop, c->router, &conn_cb, c);
    if (!c->conn) log_fatal("router address %s does not parse", c->router);
}

static void on_retry(uv_timer_t *t)
{
    connect_now(t->data);
}

void comp_start(comp_t *c)
{
    if (c->is_started) return;
    c->is_started = true;
    connect_now(c);
}

/* The link is gone: tell the daemon and try again later. */
static void schedule_reconnect(comp_t *c)
{
    bool was_ready = c->state == COMP_READY;
    c->state = COMP_IDLE;
    if (c->sasl) {
        sasl_free(c->sasl);
        c->sasl = NULL;
    }
    if (was_ready && c->cb.on_down) c->cb.on_down(c);
    if (!c->is_started) return;
    uv_timer_start(&c->retry, on_retry, c->backoff_ms, 0);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void send_buf(comp_t *c)
{
    conn_write(c->conn, c->out.data, c->out.len);
    buf_reset(&c->out);
}

static void send_bind(comp_t *c, const char *what, const char *name, unsigned flags)
{
    buf_printf(&c->out, "<%s name='", what);
    xml_escape(&c->out, name, strlen(name), true);
    buf_appends(&c->out, "'");
    if (flags & COMP_BIND_DEFAULT) buf_appends(&c->out, " default='true'");
    if (flags & COMP_BIND_SHARD) buf_appends(&c->out, " shard='user'");
    buf_appends(&c->out, "/>");
    send_buf(c);
}

void comp_bind(comp_t *c, const char *name, unsigned flags)
{
    comp_name_t *n = calloc(1, sizeof(*n));
    if (!n) log_fatal("out of memory");
    n->name = comp_strdup(name);
    n->flags = flags;
    n->next = c->names;
    c->names = n;
    if (c->state == COMP_READY) send_bind(c, "bind", name, flags);
}

void comp_unbind(comp_t *c, const char *name)
{
    for (comp_name_t **p = &c->names; *p; p = &(*p)->next) {
        comp_name_t *n = *p;
        if (strcmp(n->name, name) != 0) continue;
        *p = n->next;
        if (c->state == COMP_READY) send_bind(c, "unbind", name, 0);
        free(n->name);
        free(n);
        return;
    }
}

/* Where a route to `to` goes: its direct link if it has one, else the
 * router; NULL (and counted) when neither can take it. */
static conn_t *writer_for(comp_t *c, const char *to, size_t len)
{
    conn_t *direct = c->direct && to ? direct_conn_for(c, to, len) : NULL;
    if (direct) return direct;
    if (c->state != COMP_READY) {
        c->dropped++;
        return NULL;
    }
    return c->conn;
}

int comp_send_raw(comp_t *c, const char *data, size_t len)
{
    /* Our daemons' routes start <route to='…' (comp_route_head); only a
     * direct link needs to know where it goes. */
    static const char head[] = "<route to='";
    const char *to = NULL, *end = NULL;
    if (c->direct && len > sizeof head - 1 && memcmp(data, head, sizeof head - 1) == 0) {
        to = data + sizeof head - 1;
        end = memchr(to, '\'', len - (sizeof head - 1));
    }
    conn_t *w = writer_for(c, end ? to : NULL, end ? (size_t)(end - to) : 0);
    if (!w) return -1;
    conn_write(w, data, len);
    return 0;
}

int comp_send(comp_t *c, const elem_t *route)
{
    const char *to = elem_attr(route, "to");
    conn_t *w = writer_for(c, to, to ? strlen(to) : 0);
    if (!w) return -1;
    elem_serialize(route, NS_HEARTH_COMPONENT, &c->out);
    conn_write(w, c->out.data, c->out.len);
    buf_reset(&c->out);
    return 0;
}

int comp_send_to(comp_t *c, const char *to, const char *from, const char *user,
                 const elem_t *payload)
{
    conn_t *w = writer_for(c, to, strlen(to));
    if (!w) return -1;
    comp_route_head(&c->out, to, from, user, NULL, NULL);
    buf_appends(&c->out, ">");
    elem_serialize(payload, NS_HEARTH_COMPONENT, &c->out);
    buf_appends(&c->out, "</route>");
    conn_write(w, c->out.data, c->out.len);
    buf_reset(&c->out);
    return 0;
}

int comp_send_stanza(comp_t *c, const elem_t *stanza)
{
    const char *to = elem_attr(stanza, "to"), *from = elem_attr(stanza, "from");
    jid_t *jto = to ? jid_new(to, strlen(to), NULL) : NULL;
    jid_t *jfrom = from ? jid_new(from, strlen(from), NULL) : NULL;
    int rc = jto && jfrom
                 ? comp_send_to(c, jid_domain(jto), jid_domain(jfrom), jid_bare(jto), stanza)
                 : -1;
    jid_free(jto);
    jid_free(jfrom);
    return rc;
}

/* Tear the link down without reconnecting; conn's on_close does the rest. */
static void fail(comp_t *c, const char *why)
{
    log_warn("router link %s: %s", c->router, why);
    if (c->conn) conn_abort(c->conn);
}

static void on_connect(conn_t *conn, int status)
{
    comp_t *c = conn_data(conn);
    if (!c || status < 0) return; /* on_close follows and schedules the retry */
    xstream_opts_t opts = {.max_stanza = c->max_stanza, .shallow = c->is_shallow};
    c->xs = xstream_new(&opts, &stream_cb, c);
    xstream_skip_content(c->xs, c->is_shallow);
    open_stream(c);
}

static void on_tls(conn_t *conn, int status)
{
    comp_t *c = conn_data(conn);
    if (!c || status < 0) return; /* on_close follows */
    open_stream(c);
}

/* Send our stream header (again, after TLS). */
void comp_write_header(comp_t *c, conn_t *conn, const char *to, const char *token)
{
    buf_appends(&c->out, "<?xml version='1.0'?><stream:stream xmlns='" NS_HEARTH_COMPONENT
                         "' xmlns:stream='" NS_STREAMS "'");
    if (to) xml_attr(&c->out, "to", to);
    xml_attr(&c->out, "from", c->id);
    if (token) xml_attr(&c->out, "token", token);
    buf_appends(&c->out, " version='1.0'>");
    conn_write(conn, c->out.data, c->out.len);
    buf_reset(&c->out);
}

static void open_stream(comp_t *c)
{
    comp_write_header(c, c->conn, "router", NULL);
    c->state = COMP_OPENING;
}

static void on_open(void *ud, elem_t *header, const char *default_ns)
{
    comp_t *c = ud;
    if (!elem_is(header, NS_STREAMS, "stream") || strcmp(default_ns, NS_HEARTH_COMPONENT) != 0)
        fail(c, "the router answered with a stream of another kind");
}

static void sasl_send(comp_t *c, const char *what, const char *data)
{
    buf_printf(&c->out, "<%s xmlns='" NS_SASL "'", what);
    if (strcmp(what, "auth") == 0) buf_appends(&c->out, " mechanism='SCRAM-SHA-256'");
    buf_printf(&c->out, ">%s</%s>", data, what);
    send_buf(c);
}

/* The router wants TLS first: ask for it, with the trust we were given. */
static void start_tls(comp_t *c)
{
    char *err = NULL;
    if (!c->tls && !(c->tls = tls_ctx_new_client(c->tls_ca, true, &err))) {
        fail(c, err ? err : "cannot load the CAs to trust");
        free(err);
        return;
    }
    buf_appends(&c->out, "<starttls xmlns='" NS_TLS "'/>");
    send_buf(c);
    c->state = COMP_TLS;
}

static void start_auth(comp_t *c, const elem_t *features)
{
    if (elem_child(features, NS_TLS, "starttls") && !conn_has_tls(c->conn)) {
        start_tls(c);
        return;
    }
    const elem_t *mechs = elem_child(features, NS_SASL, "mechanisms");
    bool has_scram = false;
    for (const elem_t *m = mechs ? elem_child(mechs, NS_SASL, "mechanism") : NULL; m;
         m = elem_next(m, NS_SASL, "mechanism"))
        if (strcmp(elem_text(m), "SCRAM-SHA-256") == 0) has_scram = true;
    if (!has_scram) {
        fail(c, "the router offers no SCRAM-SHA-256");
        return;
    }
    c->sasl = sasl_client_new("SCRAM-SHA-256", c->user, c->password, NULL, NULL, 0);
    char *out = NULL;
    if (!c->sasl || sasl_step(c->sasl, "", &out) != SASL_CONTINUE) {
        free(out);
        fail(c, "cannot start SASL");
        return;
    }
    sasl_send(c, "auth", out);
    free(out);
    c->state = COMP_AUTH;
}

static void bind_all(comp_t *c)
{
    c->state = COMP_BINDING;
    c->binds_pending = 0;
    for (comp_name_t *n = c->names; n; n = n->next) {
        send_bind(c, "bind", n->name, n->flags);
        c->binds_pending++;
    }
}

static void become_ready(comp_t *c)
{
    c->state = COMP_READY;
    if (c->is_paused) conn_pause(c->conn);
    c->backoff_ms = BACKOFF_FIRST_MS;
    log_info("router link %s ready", c->router);
    if (c->cb.on_ready) c->cb.on_ready(c);
    if (c->direct) direct_ready(c);
}

static void handle_sasl(comp_t *c, const elem_t *e)
{
    char *out = NULL;
    sasl_result_t res = sasl_step(c->sasl, elem_text(e), &out);
    if (strcmp(e->name, "challenge") == 0 && res == SASL_CONTINUE) {
        sasl_send(c, "response", out);
    } else if (strcmp(e->name, "success") == 0 && res == SASL_DONE) {
        sasl_free(c->sasl);
        c->sasl = NULL;
        bind_all(c);
        if (c->binds_pending == 0) become_ready(c);
    } else {
        /* A wrong password will not get better: keep retrying slowly. */
        c->backoff_ms = BACKOFF_MAX_MS;
        fail(c, strcmp(e->name, "failure") == 0 ? "authentication refused"
                                                : "the router failed SCRAM verification");
    }
    free(out);
}

static void handle_bind_reply(comp_t *c, const elem_t *e)
{
    const char *name = elem_attr(e, "name");
    const char *error = elem_attr(e, "error");
    if (error) {
        log_warn("router refused %s %s: %s", e->name, name ? name : "", error);
        if (c->cb.on_bind_error) c->cb.on_bind_error(c, name ? name : "", error);
    }
    if (c->state == COMP_BINDING && strcmp(e->name, "bind") == 0 && --c->binds_pending == 0)
        become_ready(c);
}

/* Everything from the router that is not a route. */
static void handle_control(comp_t *c, const elem_t *e)
{
    if (strcmp(e->name, "presence") == 0) {
        const char *from = elem_attr(e, "from");
        const char *type = elem_attr(e, "type");
        bool is_available = !(type && strcmp(type, "unavailable") == 0);
        if (from && !is_available && c->direct) direct_name_gone(c, from);
        if (from && c->cb.on_advert) c->cb.on_advert(c, from, is_available);
    } else if (strcmp(e->name, "bind") == 0 || strcmp(e->name, "unbind") == 0) {
        handle_bind_reply(c, e);
    } else if (c->state == COMP_OPENING && elem_is(e, NS_STREAMS, "features")) {
        start_auth(c, e);
    } else if (c->state == COMP_TLS && elem_is(e, NS_TLS, "proceed")) {
        xstream_reset_discard(c->xs); /* what followed in the clear is dropped */
        if (conn_starttls(c->conn, c->tls, false, c->tls_name) < 0) fail(c, "cannot start TLS");
        c->state = COMP_OPENING;
    } else if (c->state == COMP_AUTH && e->ns && strcmp(e->ns, NS_SASL) == 0) {
        handle_sasl(c, e);
    } else if (elem_is(e, NS_STREAMS, "error")) {
        const elem_t *cond = elem_first(e);
        log_warn("router link %s: stream error %s", c->router, cond ? cond->name : "?");
    } else {
        fail(c, "unexpected element from the router");
    }
}

void comp_give_route(comp_t *c, xstream_t *xs, elem_t *route, const xstream_raw_t *raw)
{
    c->cur_xs = xs; /* what comp_keep_route detaches */
    if (c->cb.on_route) c->cb.on_route(c, route, raw);
    c->cur_xs = NULL;
}

static void on_stanza(void *ud, elem_t *e, const xstream_raw_t *raw)
{
    comp_t *c = ud;
    if (c->state == COMP_READY && strcmp(e->name, "route") == 0) {
        if (elem_attr(e, "direct")) {
            direct_control(c, e);
            return;
        }
        comp_give_route(c, c->xs, e, raw);
        return;
    }
    if (!c->is_shallow) {
        handle_control(c, e);
        return;
    }
    /* A shallow stream has no children: parse the element again in full. */
    arena_t *a = arena_new(0);
    elem_t *full = comp_reparse(c, a, raw);
    if (full)
        handle_control(c, full);
    else
        fail(c, "not-well-formed");
    arena_free(a);
}

static void on_stream_close(void *ud)
{
    comp_t *c = ud;
    conn_close(c->conn);
}

static void on_read(conn_t *conn, const char *data, size_t len)
{
    comp_t *c = conn_data(conn);
    if (!c) return;
    xstream_status_t st = xstream_feed(c->xs, data, len);
    if (st != XSTREAM_OK) fail(c, xstream_condition(st));
}

static void on_drain(conn_t *conn)
{
    comp_t *c = conn_data(conn);
    if (c && c->state == COMP_READY && c->cb.on_drain) c->cb.on_drain(c);
}

static void on_close(conn_t *conn, const char *reason)
{
    comp_t *c = conn_data(conn);
    if (!c) return; /* comp_free() already let go of it */
    if (reason) log_notice("router link %s lost: %s", c->router, reason);
    c->conn = NULL;
    if (c->xs) {
        xstream_free(c->xs);
        c->xs = NULL;
    }
    schedule_reconnect(c);
}

static void free_after_close(uv_handle_t *h)
{
    comp_t *c = h->data;
    buf_free(&c->out);
    free(c);
}

void comp_free(comp_t *c)
{
    c->is_started = false;
    direct_free(c);
    if (c->conn) {
        if (c->state >= COMP_OPENING) conn_write(c->conn, "</stream:stream>", 16);
        conn_set_data(c->conn, NULL);
        conn_close(c->conn);
    }
    if (c->xs) xstream_free(c->xs);
    xml_reparser_free(c->reparser);
    if (c->sasl) sasl_free(c->sasl);
    while (c->names) {
        comp_name_t *n = c->names;
        c->names = n->next;
        free(n->name);
        free(n);
    }
    free(c->router);
    free(c->id);
    free(c->user);
    free(c->password);
    free(c->tls_ca);
    free(c->tls_name);
    if (c->tls) tls_ctx_free(c->tls);
    uv_close((uv_handle_t *)&c->retry, free_after_close);
}
