/* main.c — hearth-router: reads the config, opens the component port,
 * drops privileges and runs the loop. The accounts are account.c's, the
 * routing link.c's, names.c's and route.c's. On SIGHUP (daemon.h) the
 * router.tls certificate is loaded again for the links that STARTTLS from
 * then on; accounts and limits stay as they started. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

static router_t router;

/* router.tls of c into *tls (NULL when unset). 0, or -1 with *err. */
static int load_tls(const config_t *c, tls_ctx_t **tls, char **err)
{
    const char *cert = config_get(c, "router.tls@cert"), *key = config_get(c, "router.tls@key");
    *tls = NULL;
    if (!cert && !key) return 0;
    char *why = NULL;
    if (!cert || !key || !(*tls = tls_ctx_new_server(cert, key, &why))) {
        if (asprintf(err, "router.tls: %s", why ? why : "needs both cert and key") < 0)
            log_fatal("out of memory");
        free(why);
        return -1;
    }
    return 0;
}

static void configure(router_t *r, const config_t *c)
{
    accounts_load(r, c);

    char *err = NULL;
    if (load_tls(c, &r->tls, &err) < 0) log_fatal("%s", err);
    r->is_tls_required = config_bool(c, "router.require-tls");
    if (r->is_tls_required && !r->tls) log_fatal("router.require-tls needs router.tls");
    r->max_stanza = config_size(c, "router.max-stanza");
    r->write_limit = config_size(c, "router.write-limit");
    r->max_queue = config_size(c, "router.max-queue");
    r->shard_grace = config_ms(c, "router.shard-grace");
    if (r->max_queue < r->write_limit) log_fatal("router.max-queue is below router.write-limit");
    r->max_links = (int)config_int(c, "router.max-connections");
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    link_accept(&router, server);
}

static int on_reload(void *ud, const config_t *fresh, char **err)
{
    router_t *r = ud;
    tls_ctx_t *tls;
    if (load_tls(fresh, &tls, err) < 0) return -1;
    if (r->is_tls_required && !tls) {
        if (asprintf(err, "router.require-tls needs router.tls") < 0) log_fatal("out of memory");
        return -1;
    }
    /* Links in TLS hold the old context until they close (tls.c). */
    if (r->tls) tls_ctx_free(r->tls);
    r->tls = tls;
    return 0;
}

static void on_stop(void *ud)
{
    router_t *r = ud;
    r->is_stopping = true;
    conn_listener_close(&r->listener);
    metrics_close();
    link_close_all(r);
}

int main(int argc, char **argv)
{
    router_t *r = &router;
    daemon_ctx_t d = {.name = "router", .on_stop = on_stop, .on_reload = on_reload, .ud = r};
    d.loop = r->loop = uv_default_loop();
    daemon_init(&d, argc, argv);
    configure(r, d.config);
    names_init(r);

    const char *addr = config_get(d.config, "router.listen");
    int err = conn_listen(r->loop, &r->listener, addr, false, on_connection);
    if (err < 0) log_fatal("cannot listen on %s: %s", addr, uv_strerror(err));
    router_metrics_init(r);
    metrics_listen(r->loop, d.config, "router.metrics-listen", 1);
    daemon_drop_privileges(&d);
    log_notice("router listening on %s", addr);
    daemon_ready();

    uv_run(r->loop, UV_RUN_DEFAULT);

    log_notice("router stopped");
    names_free(r);
    accounts_free(r);
    if (r->tls) tls_ctx_free(r->tls);
    buf_free(&r->scratch);
    daemon_done(&d);
    uv_run(r->loop, UV_RUN_NOWAIT);
    uv_loop_close(r->loop);
    log_close();
    return 0;
}
