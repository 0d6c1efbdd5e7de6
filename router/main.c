/* main.c — hearth-router: reads the config, opens the component port,
 * drops privileges and runs the loop. The routing itself is in link.c,
 * names.c and route.c. */
#include <stdlib.h>
#include <string.h>

#include "router.h"

#define SCRAM_ITERATIONS 4096

static router_t router;

static void add_account(router_t *r, const char *name, const char *password)
{
    if (!name || !password) log_fatal("router.component needs a name and a password");
    r->accounts = realloc(r->accounts, (r->naccounts + 1) * sizeof(*r->accounts));
    if (!r->accounts) log_fatal("out of memory");
    account_t *a = &r->accounts[r->naccounts++];
    if (!(a->name = strdup(name))) log_fatal("out of memory");
    if (scram_keys_make("SHA-256", password, NULL, SCRAM_ITERATIONS, &a->keys) < 0)
        log_fatal("component account %s: unusable password", name);
}

static void configure(router_t *r, const config_t *c)
{
    const char *password = config_get(c, "router.password");
    if (!password || !*password) log_fatal("%s: router.password is required", config_file(c));
    add_account(r, config_get(c, "router.user"), password);
    for (int i = 0; i < config_count(c, "router.component"); i++)
        add_account(r, config_get_at(c, "router.component@name", i),
                    config_get_at(c, "router.component@password", i));

    int n = config_count(c, "router.external");
    r->externals = calloc(n > 0 ? n : 1, sizeof(*r->externals));
    if (!r->externals) log_fatal("out of memory");
    for (int i = 0; i < n; i++) {
        const char *name = config_get_at(c, "router.external@name", i);
        const char *secret = config_get_at(c, "router.external@secret", i);
        if (!name || !secret) log_fatal("%s: router.external needs name and secret", config_file(c));
        r->externals[i].name = strdup(name);
        r->externals[i].secret = strdup(secret);
        if (!r->externals[i].name || !r->externals[i].secret) log_fatal("out of memory");
    }
    r->nexternals = n;

    const char *cert = config_get(c, "router.tls@cert"), *key = config_get(c, "router.tls@key");
    if (cert || key) {
        char *err = NULL;
        if (!cert || !key || !(r->tls = tls_ctx_new_server(cert, key, &err)))
            log_fatal("router.tls: %s", err ? err : "needs both cert and key");
    }
    r->is_tls_required = config_bool(c, "router.require-tls");
    if (r->is_tls_required && !r->tls) log_fatal("router.require-tls needs router.tls");
    r->max_stanza = config_size(c, "router.max-stanza");
    r->write_limit = config_size(c, "router.write-limit");
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

static void on_stop(void *ud)
{
    router_t *r = ud;
    r->is_stopping = true;
    conn_listener_close(&r->listener);
    link_close_all(r);
}

int main(int argc, char **argv)
{
    router_t *r = &router;
    daemon_ctx_t d = {.name = "router", .on_stop = on_stop, .ud = r};
    d.loop = r->loop = uv_default_loop();
    daemon_init(&d, argc, argv);
    configure(r, d.config);
    names_init(r);

    const char *addr = config_get(d.config, "router.listen");
    int err = conn_listen(r->loop, &r->listener, addr, false, on_connection);
    if (err < 0) log_fatal("cannot listen on %s: %s", addr, uv_strerror(err));
    daemon_drop_privileges(&d);
    log_notice("router listening on %s", addr);

    uv_run(r->loop, UV_RUN_DEFAULT);

    log_notice("router stopped");
    names_free(r);
    for (int i = 0; i < r->naccounts; i++) free(r->accounts[i].name);
    free(r->accounts);
    for (int i = 0; i < r->nexternals; i++) {
        free(r->externals[i].name);
        free(r->externals[i].secret);
    }
    free(r->externals);
    if (r->tls) tls_ctx_free(r->tls);
    buf_free(&r->scratch);
    daemon_done(&d);
    uv_run(r->loop, UV_RUN_NOWAIT);
    uv_loop_close(r->loop);
    log_close();
    return 0;
}
