/* main.c — hearth-s2s: reads the config, loads (or makes) the certificate,
 * listens for other servers, binds the router's default route and runs the
 * loop. Streams are out.c's and in.c's. On SIGHUP (daemon.h) the
 * certificates and trusted CAs are loaded again, all or none, for the
 * streams that start TLS from then on; streams in TLS keep theirs. */
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "daemon.h"
#include "s2s.h"

static s2s_t s2s;

bool s2s_is_local(const s2s_t *s, const char *domain)
{
    for (int i = 0; i < s->ndomains; i++)
        if (strcmp(s->domains[i], domain) == 0) return true;
    return false;
}

s2s_auth_t s2s_policy(const s2s_t *s, const char *domain)
{
    for (int i = 0; i < s->npeers; i++)
        if (strcmp(s->peers[i].domain, domain) == 0) return s->peers[i].auth;
    return s->auth;
}

tls_ctx_t *s2s_tls_for(const s2s_t *s, const char *local)
{
    for (int i = 0; i < s->ndomains; i++)
        if (strcmp(s->domains[i], local) == 0) return s->tls_client[i];
    return s->tls_client[0];
}

const s2s_route_t *s2s_route_for(const s2s_t *s, const char *domain)
{
    for (int i = 0; i < s->nroutes; i++)
        if (strcmp(s->routes[i].domain, domain) == 0) return &s->routes[i];
    return NULL;
}

void s2s_dialback_key(const s2s_t *s, const char *receiving, const char *originating,
                      const char *id, char out[65])
{
    buf_t text = BUF_INIT;
    buf_printf(&text, "%s %s %s", receiving, originating, id);
    unsigned char mac[32];
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, s->secret, sizeof s->secret, text.data, text.len, mac) <
        0)
        log_fatal("HMAC-SHA256 failed");
    buf_free(&text);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
}

static void append_attr(buf_t *b, const char *name, const char *value)
{
    if (value) xml_attr(b, name, value);
}

void s2s_dialback_xml(buf_t *b, const char *name, const char *from, const char *to, const char *id,
                      const char *type, const char *key)
{
    buf_printf(b, "<db:%s", name);
    append_attr(b, "from", from);
    append_attr(b, "to", to);
    append_attr(b, "id", id);
    append_attr(b, "type", type);
    if (!key) {
        buf_appends(b, "/>");
        return;
    }
    buf_appends(b, ">");
    xml_escape(b, key, strlen(key), false);
    buf_printf(b, "</db:%s>", name);
}

void s2s_deliver(s2s_t *s, const jid_t *to, const elem_t *stanza)
{
    if (comp_send_to(s->comp, jid_domain(to), s->id, jid_bare(to), stanza) < 0)
        log_info("router link down: stanza to %s dropped", jid_full(to));
}

void s2s_deliver_local(s2s_t *s, const elem_t *stanza)
{
    const char *to = elem_attr(stanza, "to");
    jid_t *j = to && s->comp ? jid_new(to, strlen(to), NULL) : NULL;
    if (j) s2s_deliver(s, j, stanza);
    jid_free(j);
}

bool s2s_is_unserved_subdomain(const s2s_t *s, const char *domain)
{
    size_t len = strlen(domain);
    bool is_under_local = false;
    for (int i = 0; i < s->ndomains && !is_under_local; i++) {
        size_t n = strlen(s->domains[i]);
        is_under_local = len > n + 1 && domain[len - n - 1] == '.' &&
                         strcmp(domain + len - n, s->domains[i]) == 0;
    }
    if (!is_under_local || s2s_route_for(s, domain)) return false;
    for (int i = 0; i < config_count(s->config, "resolver.override"); i++) {
        const char *d = config_get_at(s->config, "resolver.override@domain", i);
        if (d && strcasecmp(d, domain) == 0) return false;
    }
    return true;
}

void s2s_bounce(s2s_t *s, elem_t *stanza, const char *condition, const char *text)
{
    if (xmpp_stanza_error(stanza, condition, text) < 0) return;
    metric_inc(&s2s_metrics.bounces);
    s2s_deliver_local(s, stanza);
}

static char *xstrdup(const char *v)
{
    char *d = strdup(v ? v : "");
    if (!d) log_fatal("out of memory");
    return d;
}

static s2s_auth_t parse_auth(const char *v)
{
    return !strcmp(v, "certificate") ? AUTH_CERTIFICATE
           : !strcmp(v, "block")     ? AUTH_BLOCK
                                     : AUTH_DIALBACK;
}

/* A domain from the config, nameprepped; fatal if it is not one. */
static char *config_domain(const config_t *cf, const char *what, const char *d)
{
    char prepped[JID_STRING_MAX];
    if (!d || !*d || jid_prep(d, strlen(d), prepped, NULL) < 0)
        log_fatal("%s: %s %s is not a valid domain", config_file(cf), what, d ? d : "");
    return xstrdup(prepped);
}

static void free_certificates(tls_ctx_t *server, tls_ctx_t **clients, int n)
{
    if (server) tls_ctx_free(server);
    for (int i = 0; clients && i < n; i++)
        if (clients[i]) tls_ctx_free(clients[i]);
    free(clients);
}

/* Certificates: per local domain, s2s/certificate, else s2s.cert and key,
 * else STATEDIR/tls/DOMAIN.pem (self-signed at first start; at a reload,
 * is_reload, nothing is made). The server context holds them all (SNI
 * chooses); each domain also has a client context presenting its own. All
 * trust the system's CAs and s2s.ca. 0, or -1 with *err and nothing
 * loaded. */
static int load_certificates(const s2s_t *s, const config_t *cf, bool is_reload, tls_ctx_t **server,
                             tls_ctx_t ***clients, char **err)
{
    int nca = config_count(cf, "s2s.ca");
    const char **cas = calloc((size_t)nca + 1, sizeof(char *));
    tls_ctx_t **client = calloc((size_t)s->ndomains, sizeof(tls_ctx_t *));
    if (!cas || !client) log_fatal("out of memory");
    int used = 0;
    for (int i = 0; i < nca; i++) {
        const char *ca = config_get_at(cf, "s2s.ca", i);
        if (ca && *ca) cas[used++] = ca;
    }
    tls_ctx_t *srv = NULL;
    char *why = NULL;
    const char *failed = NULL; /* the domain whose certificate did not load */
    int ncert = config_count(cf, "s2s.certificate");
    for (int i = 0; i < s->ndomains && !failed; i++) {
        const char *cert = config_get(cf, "s2s.cert"), *key = config_get(cf, "s2s.key");
        for (int j = 0; j < ncert; j++) {
            const char *d = config_get_at(cf, "s2s.certificate@domain", j);
            char prepped[JID_STRING_MAX];
            if (!d || jid_prep(d, strlen(d), prepped, NULL) < 0) {
                if (!is_reload)
                    log_fatal("%s: s2s/certificate %s is not a valid domain", config_file(cf),
                              d ? d : "");
                if (asprintf(&why, "s2s/certificate %s is not a valid domain", d ? d : "") < 0)
                    log_fatal("out of memory");
                failed = s->domains[i];
                break;
            }
            if (strcmp(prepped, s->domains[i]) == 0) {
                cert = config_get_at(cf, "s2s.certificate@cert", j);
                key = config_get_at(cf, "s2s.certificate@key", j);
            }
        }
        if (failed) break;
        char cert_path[TLS_PATH_MAX], key_path[TLS_PATH_MAX];
        if (is_reload) {
            if (tls_key_pair_paths(cert, key, config_get(cf, "statedir"), s->domains[i], cert_path,
                                   key_path, &why) < 0) {
                failed = s->domains[i];
                break;
            }
        } else {
            tls_cert_for_domain(cert, key, config_get(cf, "statedir"), s->domains[i], "s2s",
                                cert_path, key_path);
        }
        if (!(client[i] = tls_ctx_new_server(cert_path, key_path, &why)) ||
            tls_ctx_trust(client[i], cas, used, &why) < 0 ||
            (i == 0 && !(srv = tls_ctx_new_server(cert_path, key_path, &why))) ||
            (i > 0 && tls_ctx_add_key_pair(srv, cert_path, key_path, &why) < 0))
            failed = s->domains[i];
    }
    if (!failed && tls_ctx_trust(srv, cas, used, &why) < 0) failed = "every domain";
    free(cas);
    if (failed) {
        if (asprintf(err, "s2s certificate for %s: %s", failed, why ? why : "cannot load") < 0)
            log_fatal("out of memory");
        free(why);
        free_certificates(srv, client, s->ndomains);
        return -1;
    }
    *server = srv;
    *clients = client;
    return 0;
}

static int on_reload(void *ud, const config_t *fresh, char **err)
{
    s2s_t *s = ud;
    tls_ctx_t *server, **clients;
    if (s->is_stopping) return 0;
    if (load_certificates(s, fresh, true, &server, &clients, err) < 0) return -1;
    /* Streams in TLS hold the old contexts until they close (tls.c). */
    free_certificates(s->tls_server, s->tls_client, s->ndomains);
    s->tls_server = server;
    s->tls_client = clients;
    return 0;
}

static void configure(s2s_t *s, const config_t *cf)
{
    int n = config_count(cf, "domain");
    s->ndomains = n ? n : 1;
    s->domains = calloc((size_t)s->ndomains, sizeof(char *));
    if (!s->domains) log_fatal("out of memory");
    for (int i = 0; i < s->ndomains; i++) {
        const char *d = n ? config_get_at(cf, "domain", i) : config_get(cf, "domain");
        s->domains[i] = config_domain(cf, "domain", d);
    }
    s->nroutes = config_count(cf, "s2s.route");
    s->routes = calloc((size_t)s->nroutes + 1, sizeof(*s->routes));
    if (!s->routes) log_fatal("out of memory");
    for (int i = 0; i < s->nroutes; i++) {
        const char *t = config_get_at(cf, "s2s.route@target", i);
        if (!t || !*t) log_fatal("%s: s2s/route needs a target", config_file(cf));
        s->routes[i].domain =
            config_domain(cf, "s2s/route", config_get_at(cf, "s2s.route@domain", i));
        s->routes[i].target = xstrdup(t);
        s->routes[i].direct = !strcmp(config_get_at(cf, "s2s.route@tls", i), "direct");
    }
    s->npeers = config_count(cf, "s2s.peer");
    s->peers = calloc((size_t)s->npeers + 1, sizeof(*s->peers));
    if (!s->peers) log_fatal("out of memory");
    for (int i = 0; i < s->npeers; i++) {
        const char *auth = config_get_at(cf, "s2s.peer@auth", i);
        if (!auth) log_fatal("%s: s2s/peer needs auth", config_file(cf));
        s->peers[i].domain = config_domain(cf, "s2s/peer", config_get_at(cf, "s2s.peer@domain", i));
        s->peers[i].auth = parse_auth(auth);
    }
    s->auth = parse_auth(config_get(cf, "s2s.auth"));
    s->require_tls = config_bool(cf, "s2s.require-tls");
    s->connect_timeout = config_ms(cf, "s2s.connect-timeout");
    s->idle_timeout = config_ms(cf, "s2s.idle-timeout");
    s->max_stanza = config_size(cf, "s2s.max-stanza");
    s->max_queue = config_size(cf, "s2s.max-queue");
    s->rate = (double)config_int(cf, "s2s.rate");
    s->burst = (double)config_int(cf, "s2s.burst");
    s->max_per_domain = (int)config_int(cf, "s2s.max-connections-per-domain");
    s->max_connections = (int)config_int(cf, "s2s.max-connections");

    /* s2s.dialback-secret, or better the first line of
     * s2s.dialback-secret-file, read here, before the privileges go (a file
     * that others may read is warned about: whoever knows the secret can
     * make our keys, and so speak for our domains); else random. */
    char *err = NULL;
    char *secret = config_secret(cf, "s2s.dialback-secret", "s2s.dialback-secret-file", -1, &err);
    if (err) log_fatal("%s", err);
    if (!secret) {
        if (!(secret = malloc(65))) log_fatal("out of memory");
        random_hex(secret, 32);
    }
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, secret, strlen(secret), s->secret) < 0)
        log_fatal("SHA-256 failed");
    gnutls_memset(secret, 0, strlen(secret));
    free(secret);
    if (load_certificates(s, cf, false, &s->tls_server, &s->tls_client, &err) < 0)
        log_fatal("%s", err);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    in_accept(&s2s, server, server == (uv_stream_t *)&s2s.listener_tls.h.tcp);
}

static void listen_on(s2s_t *s, listener_t *l, bool *listening, const char *what)
{
    const char *addr = config_get(s->config, what);
    if (!addr || !*addr) return;
    int err = conn_listen(s->loop, l, addr, false, on_connection);
    if (err < 0) log_fatal("cannot listen on %s: %s", addr, uv_strerror(err));
    *listening = true;
    log_notice("%s listening on %s%s", s->id, addr, l == &s->listener_tls ? " (direct TLS)" : "");
}

static void on_ready(comp_t *comp)
{
    s2s_t *s = comp_data(comp);
    log_info("%s: connected to the router", s->id);
    daemon_ready();
    if (s->has_resolver) out_resolver_back(s);
}

static void on_down(comp_t *comp)
{
    s2s_t *s = comp_data(comp);
    log_warn("%s: lost the router", s->id);
    s->has_resolver = false; /* the new router's list tells */
}

/* What a route may ask of us depends on the role the router marked it with
 * (role='…', set by the router, never by the sender; DESIGN.md): the
 * report only to admin, <resolved/> only from the resolver, stanzas for
 * remote servers from the sm, or from a component for its own domain. A
 * refusal is logged once per sender and kind, so that one that keeps
 * trying cannot fill the log. */
static void refuse(const elem_t *route, const char *what)
{
    const char *from = elem_attr(route, "from");
    char key[2 * JID_STRING_MAX];
    snprintf(key, sizeof key, "s2s refuses %s %s", what, from ? from : "");
    if (!log_is_first(key)) return;
    const char *role = comp_role_name(comp_route_role(route));
    log_warn("%s (role %s) may not send %s to s2s: refused (logged once per sender)",
             from ? from : "(no from)", *role ? role : "none", what);
}

/* hearthctl s2s (urn:hearth:admin:1): the streams, answered to the
 * component that asked, if it is an admin; any other is answered
 * forbidden, so that a tool run with the wrong account says so at once. */
static void report(s2s_t *s, const elem_t *route, const elem_t *iq)
{
    const char *asker = elem_attr(route, "from");
    const char *type = elem_attr(iq, "type");
    if (!asker || !type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)) return;
    if (comp_route_role(route) != ROLE_ADMIN) {
        refuse(route, "the hearthctl s2s request");
        elem_t *error = elem_copy(arena_new(0), iq);
        if (xmpp_stanza_error(error, "forbidden", NULL) == 0)
            comp_send_to(s->comp, asker, s->id, NULL, error);
        arena_free(error->arena);
        return;
    }
    arena_t *a = arena_new(0);
    elem_t *answer = elem_new(a, NS_CLIENT, "iq");
    elem_set_attr(answer, "type", "result");
    const char *id = elem_attr(iq, "id");
    if (id) elem_set_attr(answer, "id", id);
    elem_t *list = elem_add(answer, NS_ADMIN, "s2s");
    out_report(s, list);
    in_report(s, list);
    comp_send_to(s->comp, asker, s->id, NULL, answer);
    arena_free(a);
}

static void on_route(comp_t *comp, elem_t *route, const xstream_raw_t *raw)
{
    s2s_t *s = comp_data(comp);
    elem_t *payload = elem_first(route);
    if (!payload) return;
    comp_role_t role = comp_route_role(route);
    if (elem_is(payload, NS_RESOLVER, "resolved")) {
        if (role == ROLE_RESOLVER)
            out_resolved(s, payload);
        else
            refuse(route, "resolver answers");
        return;
    }
    if (elem_is(payload, NS_CLIENT, "iq") && elem_child(payload, NS_ADMIN, "s2s")) {
        report(s, route, payload);
        return;
    }
    if (elem_attr(route, "type")) {
        log_debug("a route from s2s came back (%s): dropped",
                  elem_attr(route, "error") ? elem_attr(route, "error") : "?");
        return;
    }
    const char *to = elem_attr(payload, "to"), *from = elem_attr(payload, "from");
    jid_t *jto = to ? jid_new(to, strlen(to), NULL) : NULL;
    jid_t *jfrom = from ? jid_new(from, strlen(from), NULL) : NULL;
    /* The sm speaks for every user of the local domains; a component only
     * for its own domain, the route's from (a name the router let it
     * bind). Either way the from must be a domain this s2s serves, in
     * both directions (dialback, certificates): a component's own domain
     * (muc's conference.DOMAIN) is not federated until the s2s serves it. */
    const char *sender = elem_attr(route, "from");
    bool may_send = role == ROLE_SM || (role == ROLE_COMPONENT && jfrom && sender &&
                                        strcmp(jid_domain(jfrom), sender) == 0);
    if (!may_send) {
        refuse(route, "stanzas for remote servers");
    } else if (!jto || !jfrom || !s2s_is_local(s, jid_domain(jfrom)) ||
               s2s_is_local(s, jid_domain(jto))) {
        log_info("stanza without a local from and a remote to dropped");
    } else if (ack_is_new(s, route)) {
        out_send(s, jid_domain(jfrom), jid_domain(jto), payload, raw->len);
    }
    jid_free(jto);
    jid_free(jfrom);
}

static void on_advert(comp_t *comp, const char *name, bool available)
{
    s2s_t *s = comp_data(comp);
    if (strcmp(name, "resolver") != 0) return;
    bool was = s->has_resolver;
    s->has_resolver = available;
    if (available) s->had_resolver = true;
    if (available && !was && comp_is_ready(comp)) out_resolver_back(s);
}

static void on_bind_error(comp_t *comp, const char *name, const char *error)
{
    (void)comp;
    log_fatal("the router refused %s: %s (is another s2s running?)", name, error);
}

static void on_drain(comp_t *comp)
{
    in_resume_all(comp_data(comp));
}

static const comp_cb_t comp_cb = {
    .on_drain = on_drain,
    .on_ready = on_ready,
    .on_down = on_down,
    .on_route = on_route,
    .on_advert = on_advert,
    .on_bind_error = on_bind_error,
};

static void on_stop_timer(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
}

static void on_stop(void *ud)
{
    s2s_t *s = ud;
    if (s->is_stopping) return;
    s->is_stopping = true;
    log_notice("%s stopping", s->id);
    if (s->listening) conn_listener_close(&s->listener);
    if (s->listening_tls) conn_listener_close(&s->listener_tls);
    metrics_close();
    out_close_all(s);
    in_close_all(s);
    ack_close(s);
    comp_free(s->comp);
    s->comp = NULL;
    uv_timer_init(s->loop, &s->stop_timer);
    uv_timer_start(&s->stop_timer, on_stop_timer, 10, 0);
}

int main(int argc, char **argv)
{
    s2s_t *s = &s2s;
    daemon_ctx_t d = {.name = "s2s", .on_stop = on_stop, .on_reload = on_reload, .ud = s};
    d.loop = s->loop = uv_default_loop();
    daemon_init(&d, argc, argv);
    s->config = d.config;
    s->id = d.id;
    configure(s, d.config);
    buf_init(&s->scratch);
    map_init(&s->out_by_pair);
    ack_init(s);
    listen_on(s, &s->listener, &s->listening, "s2s.listen");
    listen_on(s, &s->listener_tls, &s->listening_tls, "s2s.listen-tls");
    s2s_metrics_init(s);
    metrics_listen(s->loop, d.config, "s2s.metrics-listen", 1);
    /* Its router secret is read before the switch (it may be root's). */
    s->comp = comp_new_from_config(s->loop, d.config, s->id, ROLE_S2S, &comp_cb, s);
    if (!s->comp) log_fatal("cannot set up the router link");
    daemon_drop_privileges(&d);

    comp_bind(s->comp, "s2s", COMP_BIND_DEFAULT);
    comp_start(s->comp);

    uv_run(s->loop, UV_RUN_DEFAULT);

    log_notice("%s stopped", s->id);
    free_certificates(s->tls_server, s->tls_client, s->ndomains);
    buf_free(&s->scratch);
    map_free(&s->out_by_pair);
    for (int i = 0; i < s->ndomains; i++)
        free(s->domains[i]);
    free(s->domains);
    for (int i = 0; i < s->npeers; i++)
        free(s->peers[i].domain);
    free(s->peers);
    for (int i = 0; i < s->nroutes; i++) {
        free(s->routes[i].domain);
        free(s->routes[i].target);
    }
    free(s->routes);
    daemon_done(&d);
    uv_run(s->loop, UV_RUN_NOWAIT);
    uv_loop_close(s->loop);
    log_close();
    return 0;
}
