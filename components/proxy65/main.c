/* main.c — hearth-proxy65: reads the proxy65 section, opens the SOCKS5
 * listener (socks5.c), links to the router with the router/component
 * account "proxy65", binds proxy.DOMAIN for every domain served and
 * hands the routes to iq.c. proxy65.h tells how the parts fit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "proxy65.h"

static comp_t *comp;
static char **domains, **names;
static int ndomains;
static char host[JID_STRING_MAX];

static void on_route(comp_t *c, elem_t *route, const xstream_raw_t *raw)
{
    (void)c;
    (void)raw;
    iq_route(route);
}

static void on_ready(comp_t *c)
{
    (void)c;
    log_notice("proxy65: linked to the router");
    daemon_ready();
}

static void on_down(comp_t *c)
{
    (void)c;
    log_warn("proxy65: router link lost, reconnecting");
}

static void on_bind_error(comp_t *c, const char *name, const char *error)
{
    (void)c;
    log_err("proxy65: the router refused the name %s: %s", name, error);
}

static void on_stop(void *ud)
{
    (void)ud;
    metrics_close();
    comp_free(comp);
    comp = NULL;
    socks5_stop();
}

static void read_domains(const config_t *cfg)
{
    domains = daemon_domains(cfg, &ndomains);
    names = calloc((size_t)ndomains, sizeof(*names));
    if (!names) log_fatal("out of memory");
    for (int i = 0; i < ndomains; i++) {
        size_t len = strlen(domains[i]) + sizeof "proxy.";
        if (!(names[i] = malloc(len))) log_fatal("out of memory");
        snprintf(names[i], len, "proxy.%s", domains[i]);
    }
}

/* The streamhost clients are told of: proxy65.host and .port, else the
 * listen address's (the first domain for a wildcard address). */
static int read_streamhost(const config_t *cfg, const char *listen)
{
    const char *colon = strrchr(listen, ':');
    if (strncmp(listen, "unix:", 5) == 0 || !colon)
        log_fatal("%s: proxy65.listen must be host:port or [IPv6]:port, not %s", config_file(cfg),
                  listen);
    const char *start = listen, *end = colon;
    if (*start == '[' && end > start && end[-1] == ']') {
        start++;
        end--;
    }
    snprintf(host, sizeof host, "%.*s", (int)(end - start), start);
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 || !*host)
        snprintf(host, sizeof host, "%s", domains[0]);
    const char *configured = config_get(cfg, "proxy65.host");
    if (configured && *configured) snprintf(host, sizeof host, "%s", configured);
    int port = (int)config_int(cfg, "proxy65.port");
    return port ? port : atoi(colon + 1);
}

int main(int argc, char **argv)
{
    daemon_ctx_t d = {.name = "proxy65", .on_stop = on_stop};
    d.loop = uv_default_loop();
    daemon_init(&d, argc, argv);
    read_domains(d.config);
    const char *listen = config_get(d.config, "proxy65.listen");
    p65_service_t service = {.host = host,
                             .port = read_streamhost(d.config, listen),
                             .domains = (const char *const *)domains,
                             .ndomains = ndomains};
    p65_limits_t limits = {
        .idle_ms = config_ms(d.config, "proxy65.idle-timeout"),
        .rate = config_size(d.config, "proxy65.rate"),
        .max_streams_per_user = (int)config_int(d.config, "proxy65.max-streams-per-user"),
        .max_connections = (int)config_int(d.config, "proxy65.max-connections"),
    };
    if (limits.idle_ms == 0)
        log_fatal("%s: proxy65.idle-timeout must be more than 0", config_file(d.config));

    static const comp_cb_t cb = {.on_ready = on_ready,
                                 .on_down = on_down,
                                 .on_route = on_route,
                                 .on_bind_error = on_bind_error};
    /* Its router secret is read before the switch (it may be root's). */
    comp = comp_new_from_config(d.loop, d.config, "proxy65", ROLE_COMPONENT, &cb, NULL);
    if (!comp) log_fatal("cannot set up the router link");
    metrics_add_process();
    relay_init(d.loop, &limits);
    int rc = socks5_listen(d.loop, listen, &limits);
    if (rc < 0)
        log_fatal("%s: proxy65.listen %s: %s", config_file(d.config), listen, uv_strerror(rc));
    metrics_listen(d.loop, d.config, "proxy65.metrics-listen", 1);
    daemon_drop_privileges(&d);
    iq_init(comp, &service);
    for (int i = 0; i < ndomains; i++)
        comp_bind(comp, names[i], 0);
    comp_start(comp);
    log_notice("proxy65: SOCKS5 on %s, streamhost %s:%d", listen, host, service.port);

    uv_run(d.loop, UV_RUN_DEFAULT);

    log_notice("proxy65 stopped");
    daemon_done(&d);
    uv_run(d.loop, UV_RUN_NOWAIT);
    uv_loop_close(d.loop);
    relay_free();
    for (int i = 0; i < ndomains; i++)
        free(names[i]);
    free(names);
    daemon_domains_free(domains, ndomains);
    log_close();
    return 0;
}
