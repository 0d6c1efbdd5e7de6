/* main.c — hearth-s2s: reads the config, loads (or makes) the certificate,
 * listens for other servers, binds the router's default route and runs the
 * loop. Streams are out.c's and in.c's. */
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "s2s.h"

static s2s_t s2s;

bool s2s_is_local(const s2s_t *s, const char *domain)
{
    for (int i = 0; i < s->ndomains; i++)
        if (strcmp(s->domains[i], domain) == 0) return true;
    return false;
}

const char *s2s_route_for(const s2s_t *s, const char *domain)
{
    for (int i = 0; i < s->nroutes; i++)
        if (strcmp(s->routes[i].domain, domain) == 0) return s->routes[i].target;
    return NULL;
}

void s2s_dialback_key(const s2s_t *s, const char *receiving, const char *originating,
                      const char *id, char out[65])
{
    buf_t text = BUF_INIT;
    buf_printf(&text, "%s %s %s", receiving, originating, id);
    unsigned char mac[32];
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, s->secret, sizeof s->secret, text.data, text.len,
                         mac) < 0)
        log_fatal("HMAC-SHA256 failed");
    buf_free(&text);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
}

void s2s_deliver_local(s2s_t *s, const elem_t *stanza)
{
    const char *to = elem_attr(stanza, "to");
    jid_t *j = to && s->comp ? jid_new(to, strlen(to), NULL) : NULL;
    if (!j) return;
    jid_t *bare = jid_new_parts(jid_node(j), jid_domain(j), NULL, NULL);
    if (comp_send_to(s->comp, jid_domain(j), s->id, bare ? jid_bare(bare) : jid_domain(j),
                     stanza) < 0)
        log_info("router link down: stanza to %s dropped", jid_full(j));
    jid_free(bare);
    jid_free(j);
}

void s2s_bounce(s2s_t *s, elem_t *stanza, const char *condition)
{
    if (xmpp_stanza_error(stanza, condition, NULL) < 0) return;
    s2s_deliver_local(s, stanza);
}

static char *xstrdup(const char *v)
{
    char *d = strdup(v ? v : "");
    if (!d) log_fatal("out of memory");
    return d;
}

static void configure(s2s_t *s, const config_t *cf)
{
    int n = config_count(cf, "domain");
    s->ndomains = n ? n : 1;
    s->domains = calloc((size_t)s->ndomains, sizeof(char *));
    if (!s->domains) log_fatal("out of memory");
    for (int i = 0; i < s->ndomains; i++) {
        const char *d = n ? config_get_at(cf, "domain", i) : config_get(cf, "domain");
        char prepped[JID_STRING_MAX];
        if (!d || jid_prep(d, strlen(d), prepped, NULL) < 0)
            log_fatal("%s: domain %s is not valid", config_file(cf), d ? d : "");
        s->domains[i] = xstrdup(prepped);
    }
    s->nroutes = config_count(cf, "s2s.route");
    s->routes = calloc((size_t)s->nroutes + 1, sizeof(*s->routes));
    if (!s->routes) log_fatal("out of memory");
    for (int i = 0; i < s->nroutes; i++) {
        const char *d = config_get_at(cf, "s2s.route@domain", i);
        const char *t = config_get_at(cf, "s2s.route@target", i);
        if (!d || !*d || !t || !*t)
            log_fatal("%s: s2s/route needs domain and target", config_file(cf));
        char prepped[JID_STRING_MAX];
        if (jid_prep(d, strlen(d), prepped, NULL) < 0)
            log_fatal("%s: s2s/route domain %s is not valid", config_file(cf), d);
        s->routes[i].domain = xstrdup(prepped);
        s->routes[i].target = xstrdup(t);
    }
    s->require_tls = config_bool(cf, "s2s.require-tls");
    s->connect_timeout = config_ms(cf, "s2s.connect-timeout");
    s->idle_timeout = config_ms(cf, "s2s.idle-timeout");
    s->max_stanza = config_size(cf, "s2s.max-stanza");

    const char *secret = config_get(cf, "s2s.dialback-secret");
    char random[65];
    if (!secret || !*secret) {
        random_hex(random, 32);
        secret = random;
    }
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, secret, strlen(secret), s->secret) < 0)
        log_fatal("SHA-256 failed");

    const char *ca = config_get(cf, "s2s.ca");
    char *err = NULL;
    if (!(s->tls_client = tls_ctx_new_client(ca && *ca ? ca : NULL,
                                             config_bool(cf, "s2s.verify-certificates"), &err)))
        log_fatal("s2s TLS client: %s", err ? err : "cannot set up");
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    in_accept(&s2s, server);
}

static void on_ready(comp_t *comp)
{
    s2s_t *s = comp_data(comp);
    log_info("%s: connected to the router", s->id);
}

static void on_down(comp_t *comp)
{
    s2s_t *s = comp_data(comp);
    log_warn("%s: lost the router", s->id);
}

static void on_route(comp_t *comp, elem_t *route, const xstream_raw_t *raw)
{
    (void)raw;
    s2s_t *s = comp_data(comp);
    elem_t *payload = elem_first(route);
    if (!payload) return;
    if (elem_is(payload, NS_RESOLVER, "resolved")) {
        out_resolved(s, payload);
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
    if (!jto || !jfrom || !s2s_is_local(s, jid_domain(jfrom)) ||
        s2s_is_local(s, jid_domain(jto))) {
        log_info("stanza without a local from and a remote to dropped");
    } else {
        out_send(s, jid_domain(jfrom), jid_domain(jto), payload);
    }
    jid_free(jto);
    jid_free(jfrom);
}

static void on_advert(comp_t *comp, const char *name, bool available)
{
    s2s_t *s = comp_data(comp);
    if (strcmp(name, "resolver") == 0) s->has_resolver = available;
}

static void on_bind_error(comp_t *comp, const char *name, const char *error)
{
    (void)comp;
    log_fatal("the router refused %s: %s (is another s2s running?)", name, error);
}

static const comp_cb_t comp_cb = {
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
    out_close_all(s);
    in_close_all(s);
    comp_free(s->comp);
    s->comp = NULL;
    uv_timer_init(s->loop, &s->stop_timer);
    uv_timer_start(&s->stop_timer, on_stop_timer, 10, 0);
}

int main(int argc, char **argv)
{
    s2s_t *s = &s2s;
    daemon_ctx_t d = {.name = "s2s", .on_stop = on_stop, .ud = s};
    d.loop = s->loop = uv_default_loop();
    daemon_init(&d, argc, argv);
    s->config = d.config;
    s->id = d.id;
    configure(s, d.config);
    s->tls_server = tls_ctx_for_domain(config_get(d.config, "s2s.cert"),
                                       config_get(d.config, "s2s.key"),
                                       config_get(d.config, "statedir"), s->domains[0], "s2s");

    const char *listen = config_get(d.config, "s2s.listen");
    if (listen && *listen) {
        int err = conn_listen(s->loop, &s->listener, listen, false, on_connection);
        if (err < 0) log_fatal("cannot listen on %s: %s", listen, uv_strerror(err));
        s->listening = true;
        log_notice("%s listening on %s", s->id, listen);
    }
    daemon_drop_privileges(&d);

    s->comp = comp_new_from_config(s->loop, d.config, s->id, &comp_cb, s);
    if (!s->comp) log_fatal("cannot set up the router link");
    comp_bind(s->comp, "s2s", COMP_BIND_DEFAULT);
    comp_start(s->comp);

    uv_run(s->loop, UV_RUN_DEFAULT);

    log_notice("%s stopped", s->id);
    tls_ctx_free(s->tls_server);
    tls_ctx_free(s->tls_client);
    for (int i = 0; i < s->ndomains; i++)
        free(s->domains[i]);
    free(s->domains);
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
