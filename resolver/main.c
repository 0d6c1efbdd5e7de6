/* main.c — hearth-resolver: reads the config, starts the resolver
 * (resolve.c), links to the router as "resolver" and answers each
 * <resolve/> route to its sender. The protocol is in resolver.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver.h"

static comp_t *comp;
static resolver_t *resolver;

typedef struct request {
    char *from;
} request_t;

static void on_resolved(void *ud, const elem_t *resolved)
{
    request_t *req = ud;
    if (resolved && comp_send_to(comp, req->from, "resolver", NULL, resolved) < 0)
        log_warn("resolver: answer to %s dropped: no router link", req->from);
    free(req->from);
    free(req);
}

static void on_route(comp_t *c, elem_t *route, const xstream_raw_t *raw)
{
    (void)c;
    (void)raw;
    elem_t *payload = elem_first(route);
    const char *from = elem_attr(route, "from"), *type = elem_attr(route, "type");
    if (type && strcmp(type, "error") == 0) {
        log_info("resolver: route bounced: %s", elem_attr(route, "error") ?: "?");
        return;
    }
    if (!from || !payload || !elem_is(payload, NS_RESOLVER, "resolve")) {
        log_info("resolver: ignored a route from %s that is not a <resolve/>", from ? from : "?");
        return;
    }
    /* Lookups are for federation (and hearthctl): a component that could
     * make us send DNS queries at will could use us against others. */
    comp_role_t role = comp_route_role(route);
    if (role != ROLE_S2S && role != ROLE_ADMIN) {
        char key[300];
        snprintf(key, sizeof key, "resolver refuses %s", from);
        if (log_is_first(key))
            log_warn("resolver: request from %s (role %s) refused: only s2s asks "
                     "(logged once per sender)",
                     from, *comp_role_name(role) ? comp_role_name(role) : "none");
        return;
    }
    request_t *req = calloc(1, sizeof(*req));
    if (!req || !(req->from = strdup(from))) log_fatal("out of memory");
    resolver_lookup(resolver, elem_attr(payload, "domain"), elem_attr(payload, "id"), on_resolved,
                    req);
}

static void on_ready(comp_t *c)
{
    (void)c;
    log_notice("resolver: linked to the router");
    daemon_ready();
}

static void on_down(comp_t *c)
{
    (void)c;
    log_warn("resolver: router link lost, reconnecting");
}

static void on_bind_error(comp_t *c, const char *name, const char *error)
{
    (void)c;
    log_err("resolver: the router refused the name %s: %s", name, error);
}

static void on_stop(void *ud)
{
    (void)ud;
    metrics_close();
    comp_free(comp);
    comp = NULL;
    resolver_free(resolver);
    resolver = NULL;
}

static void configure(const config_t *cfg)
{
    resolver_opts_t o = {
        .nameserver = config_get(cfg, "resolver.nameserver"),
        .timeout_ms = config_ms(cfg, "resolver.timeout"),
        .negative_ttl_ms = config_ms(cfg, "resolver.negative-ttl"),
        .max_ttl_ms = config_ms(cfg, "resolver.max-ttl"),
        .cache_size = (int)config_int(cfg, "resolver.cache-size"),
    };
    if (!(resolver = resolver_new(uv_default_loop(), &o)))
        log_fatal("%s: cannot start the resolver", config_file(cfg));
    for (int i = 0; i < config_count(cfg, "resolver.override"); i++) {
        const char *domain = config_get_at(cfg, "resolver.override@domain", i);
        const char *target = config_get_at(cfg, "resolver.override@target", i);
        const char *tls = config_get_at(cfg, "resolver.override@tls", i);
        bool is_direct = tls && strcmp(tls, "direct") == 0;
        if (!domain || !target || resolver_override(resolver, domain, target, is_direct) < 0)
            log_fatal("%s: resolver.override needs a domain and a target IP:port, not %s",
                      config_file(cfg), target ? target : "nothing");
    }
}

int main(int argc, char **argv)
{
    daemon_ctx_t d = {.name = "resolver", .on_stop = on_stop};
    d.loop = uv_default_loop();
    daemon_init(&d, argc, argv);
    configure(d.config);

    static const comp_cb_t cb = {.on_ready = on_ready,
                                 .on_down = on_down,
                                 .on_route = on_route,
                                 .on_bind_error = on_bind_error};
    /* Its router secret is read before the switch (it may be root's). */
    comp = comp_new_from_config(d.loop, d.config, d.id, ROLE_RESOLVER, &cb, NULL);
    if (!comp) log_fatal("cannot set up the router link");
    metrics_add_process();
    resolver_metrics_init();
    metrics_listen(d.loop, d.config, "resolver.metrics-listen", 1);
    daemon_drop_privileges(&d);
    comp_bind(comp, "resolver", 0);
    comp_start(comp);

    uv_run(d.loop, UV_RUN_DEFAULT);

    log_notice("resolver stopped");
    daemon_done(&d);
    uv_run(d.loop, UV_RUN_NOWAIT);
    uv_loop_close(d.loop);
    log_close();
    return 0;
}
