/* main.c — hearth-c2s: reads the config, loads (or makes) the certificate,
 * opens the client ports and the limits it shares with the other c2s
 * processes (limits.c), drops privileges, opens the store, connects to the
 * router and runs the loop. The client streams are client.c's.
 *
 * SIGHUP (daemon.h): the certificate is loaded again from c2s.cert and
 * c2s.key (or STATEDIR/tls/DOMAIN.pem) and presented to the connections
 * that start TLS from then on, while those in TLS keep theirs; the limits
 * of set_limits() and the shared login and registration budgets take
 * their new values: the deadlines of a connection are fixed when it opens,
 * the others apply to every connection from its next use of them. A
 * certificate that does not load, or a max-queue below max-stanza, keeps
 * every running setting. Listeners, domains, max-stanza and ipv6-prefix
 * need a restart. */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "c2s.h"

static c2s_t c2s;

domain_state_t *c2s_domain(c2s_t *c, const char *name)
{
    for (int i = 0; i < c->ndomains; i++)
        if (strcmp(c->domains[i].name, name) == 0) return &c->domains[i];
    return NULL;
}

/* The one limit a reload can refuse: the queue must hold a stanza. */
static int check_limits(const c2s_t *c, const config_t *cf, char **err)
{
    size_t max_queue = config_size(cf, "c2s.max-queue");
    if (max_queue >= c->max_stanza) return 0;
    if (asprintf(err, "%s: c2s.max-queue (%zu) must be at least c2s.max-stanza (%zu)",
                 config_file(cf), max_queue, c->max_stanza) < 0)
        log_fatal("out of memory");
    return -1;
}

/* The limits a reload changes (the file's header comment). */
static void set_limits(c2s_t *c, const config_t *cf)
{
    c->registration = config_bool(cf, "c2s.registration");
    c->max_queue = config_size(cf, "c2s.max-queue");
    c->max_connections = (unsigned)config_int(cf, "c2s.max-connections");
    c->max_per_ip = (unsigned)config_int(cf, "c2s.max-connections-per-ip");
    c->max_pending_per_ip = (unsigned)config_int(cf, "c2s.max-pending-per-ip");
    c->rate = (double)config_int(cf, "c2s.rate");
    c->burst = (double)config_int(cf, "c2s.burst");
    c->max_auth_failures = (unsigned)config_int(cf, "c2s.auth-failures");
    c->ping_interval = config_ms(cf, "c2s.ping-interval");
    c->idle_timeout = config_ms(cf, "c2s.idle-timeout");
    c->idle_release = config_ms(cf, "c2s.idle-release");
    c->header_timeout = config_ms(cf, "c2s.header-timeout");
    c->auth_timeout = config_ms(cf, "c2s.auth-timeout");
    c->hold_max = config_size(cf, "c2s.hold-max");
    c->is_sm_sharded = config_int(cf, "sm.shards") > 1;
    c->hold_time = config_ms(cf, "c2s.hold-time");
}

static void configure(c2s_t *c, const config_t *cf)
{
    c->ndomains = config_count(cf, "domain");
    if (c->ndomains == 0) c->ndomains = 1; /* the default, localhost */
    c->domains = calloc((size_t)c->ndomains, sizeof(*c->domains));
    if (!c->domains) log_fatal("out of memory");
    for (int i = 0; i < c->ndomains; i++) {
        const char *d =
            config_count(cf, "domain") ? config_get_at(cf, "domain", i) : config_get(cf, "domain");
        char prepped[JID_STRING_MAX];
        const char *why = NULL;
        if (!d || jid_prep(d, strlen(d), prepped, &why) < 0 || strchr(prepped, '@') ||
            strchr(prepped, '/'))
            log_fatal("%s: domain %s is not a valid domain%s%s", config_file(cf), d ? d : "",
                      why ? ": " : "", why ? why : "");
        if (!(c->domains[i].name = strdup(prepped))) log_fatal("out of memory");
    }
    c->require_tls = config_bool(cf, "c2s.require-tls");
    c->max_stanza = config_size(cf, "c2s.max-stanza");
    c->ipv6_prefix = (unsigned)config_int(cf, "c2s.ipv6-prefix");
    char *err = NULL;
    if (check_limits(c, cf, &err) < 0) log_fatal("%s", err);
    set_limits(c, cf);
    c->bind_timeout = 5000;
    /* cids of a restarted process must not meet those of its previous
     * run that an sm may still hold: start from the clock. */
    c->next_cid = (uint64_t)time(NULL) << 16;
}

static limits_opts_t shared_limits(const config_t *cf)
{
    return (limits_opts_t){
        .auth_rate = (unsigned)config_int(cf, "c2s.auth-rate"),
        .auth_burst = (unsigned)config_int(cf, "c2s.auth-burst"),
        .registration_rate = (unsigned)config_int(cf, "c2s.registration-rate"),
        .registration_total = (unsigned)config_int(cf, "c2s.registration-rate-total"),
    };
}

static void load_certificate(c2s_t *c, const config_t *cf)
{
    c->tls = tls_ctx_for_domain(config_get(cf, "c2s.cert"), config_get(cf, "c2s.key"),
                                config_get(cf, "statedir"), c->domains[0].name, "c2s");
}

static void on_connection(uv_stream_t *server, int status)
{
    listener_t *l = server->data;
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    int i = (int)(l - c2s.listeners);
    client_accept(&c2s, server, c2s.listener_is_tls[i]);
}

static void add_listener(c2s_t *c, const char *addr, bool is_tls)
{
    if (!addr || !*addr) return;
    int i = c->nlisteners++;
    c->listeners = realloc(c->listeners, (size_t)c->nlisteners * sizeof(*c->listeners));
    c->listener_is_tls = realloc(c->listener_is_tls, (size_t)c->nlisteners * sizeof(bool));
    if (!c->listeners || !c->listener_is_tls) log_fatal("out of memory");
    memset(&c->listeners[i], 0, sizeof(c->listeners[i]));
    c->listener_is_tls[i] = is_tls;
}

static void listen_all(c2s_t *c, const config_t *cf)
{
    const char *paths[2] = {"c2s.listen", "c2s.listen-tls"};
    const char *addrs[64];
    bool is_tls[64];
    int n = 0;
    for (int p = 0; p < 2; p++) {
        int count = config_count(cf, paths[p]);
        for (int i = 0; i < (count ? count : 1) && n < 64; i++) {
            const char *a = count ? config_get_at(cf, paths[p], i) : config_get(cf, paths[p]);
            if (!a || !*a) continue;
            addrs[n] = a;
            is_tls[n++] = p == 1;
        }
    }
    if (n == 0) log_fatal("%s: c2s.listen and c2s.listen-tls are all empty", config_file(cf));
    for (int i = 0; i < n; i++)
        add_listener(c, addrs[i], is_tls[i]);
    /* Only now: the array no longer moves, so handles may point into it. */
    for (int i = 0; i < n; i++) {
        int err = conn_listen(c->loop, &c->listeners[i], addrs[i], true, on_connection);
        if (err < 0) log_fatal("cannot listen on %s: %s", addrs[i], uv_strerror(err));
        log_notice("%s listening on %s (%s)", c->id, addrs[i],
                   is_tls[i] ? "direct TLS" : "STARTTLS");
    }
}

static void on_ready(comp_t *comp)
{
    c2s_t *c = comp_data(comp);
    log_info("%s: connected to the router", c->id);
    daemon_ready();
    session_router_up(c);
}

static void on_down(comp_t *comp)
{
    c2s_t *c = comp_data(comp);
    session_router_down(c);
}

static void on_route(comp_t *comp, elem_t *route, const xstream_raw_t *raw)
{
    session_route(comp_data(comp), route, raw);
}

static void on_advert(comp_t *comp, const char *name, bool available)
{
    session_domain_advert(comp_data(comp), name, available);
}

static void on_direct_down(comp_t *comp, const char *name)
{
    session_direct_down(comp_data(comp), name);
}

static void on_bind_error(comp_t *comp, const char *name, const char *error)
{
    /* Another process holds our instance id: routes for our clients would
     * go to it. That is a broken setup; the supervisor restarts us. */
    log_fatal("the router refused %s to %s: %s (is another c2s running with -i %s?)", name,
              ((c2s_t *)comp_data(comp))->id, error, name);
}

/* Parsers released by quiet connections are free in the heap but still
 * resident: give whole free pages back to the system, once per batch. */
static void on_trim(uv_timer_t *t)
{
    malloc_trim(0);
}

void c2s_trim_soon(c2s_t *c)
{
    if (!c->is_stopping && !uv_is_active((uv_handle_t *)&c->trim))
        uv_timer_start(&c->trim, on_trim, 250, 0);
}

/* Before privileges are dropped: under hearthd, STATEDIR/run is root's,
 * and the mapping outlives the switch. */
static void open_limits(c2s_t *c, const config_t *cf)
{
    limits_opts_t opts = shared_limits(cf);
    c->limits = limits_open(config_get(cf, "statedir"), &opts);
}

static int on_reload(void *ud, const config_t *fresh, char **err)
{
    c2s_t *c = ud;
    if (c->is_stopping) return 0;
    if (check_limits(c, fresh, err) < 0) return -1;
    char *why = NULL;
    tls_ctx_t *tls =
        tls_ctx_reload_for_domain(config_get(fresh, "c2s.cert"), config_get(fresh, "c2s.key"),
                                  config_get(c->config, "statedir"), c->domains[0].name, &why);
    if (!tls) {
        if (asprintf(err, "c2s certificate: %s", why ? why : "cannot load") < 0)
            log_fatal("out of memory");
        free(why);
        return -1;
    }
    /* Connections in TLS hold the old context until they close (tls.c). */
    tls_ctx_free(c->tls);
    c->tls = tls;
    set_limits(c, fresh);
    limits_opts_t opts = shared_limits(fresh);
    limits_set(c->limits, &opts);
    return 0;
}

static void on_storage_closed(void *ud)
{
    (void)ud;
}

/* Clients had a moment to read their system-shutdown; close the rest of
 * the connections now rather than wait for each peer to close. */
static void on_stop_timeout(uv_timer_t *t)
{
    c2s_t *c = t->data;
    client_abort_all(c);
    uv_close((uv_handle_t *)&c->stop_timer, NULL);
    uv_close((uv_handle_t *)&c->trim, NULL);
    hold_close(c);
    session_close(c);
}

static void on_stop(void *ud)
{
    c2s_t *c = ud;
    if (c->is_stopping) return;
    c->is_stopping = true;
    log_notice("%s stopping", c->id);
    for (int i = 0; i < c->nlisteners; i++)
        conn_listener_close(&c->listeners[i]);
    metrics_close();
    client_close_all(c, "system-shutdown");
    hold_free_all(c);
    uv_timer_start(&c->stop_timer, on_stop_timeout, 1000, 0);
    comp_free(c->comp);
    c->comp = NULL;
    storage_close(c->storage, on_storage_closed, c);
}

static const comp_cb_t comp_cb = {
    .on_ready = on_ready,
    .on_down = on_down,
    .on_route = on_route,
    .on_advert = on_advert,
    .on_bind_error = on_bind_error,
    .on_direct_down = on_direct_down,
};

int main(int argc, char **argv)
{
    c2s_t *c = &c2s;
    daemon_ctx_t d = {.name = "c2s", .on_stop = on_stop, .on_reload = on_reload, .ud = c};
    d.loop = c->loop = uv_default_loop();
    daemon_init(&d, argc, argv);
    c->config = d.config;
    c->id = d.id;
    configure(c, d.config);
    load_certificate(c, d.config);
    listen_all(c, d.config);
    c2s_metrics_init(c);
    metrics_listen(c->loop, d.config, "c2s.metrics-listen", metrics_instance_index(c->id));
    open_limits(c, d.config);
    /* Its router secret is read before the switch (it may be root's). */
    c->comp = comp_new_from_config(c->loop, d.config, c->id, ROLE_C2S, &comp_cb, c);
    if (!c->comp) log_fatal("cannot set up the router link");
    comp_set_shallow(c->comp); /* session.c reads routes from their bytes */
    /* The sm's direct link (common/direct.c); with shards the router picks. */
    if (!c->is_sm_sharded) comp_direct_accept(c->comp, ROLE_SM);
    /* Before the store: SQLite makes its -journal file later, and it
     * must be the user's. */
    daemon_drop_privileges(&d);

    char *err = NULL;
    if (!(c->storage = storage_open(c->loop, d.config, &err)))
        log_fatal("storage: %s", err ? err : "cannot open");

    uv_timer_init(c->loop, &c->stop_timer);
    c->stop_timer.data = c;
    uv_timer_init(c->loop, &c->trim);
    c->trim.data = c;
    hold_init(c);
    session_init(c);

    comp_bind(c->comp, c->id, 0);
    comp_start(c->comp);
    log_notice("%s serving %s%s", c->id, c->domains[0].name,
               c->ndomains > 1 ? " and more domains" : "");

    uv_run(c->loop, UV_RUN_DEFAULT);

    log_notice("%s stopped", c->id);
    session_table_free(c);
    addr_table_free(c);
    limits_close(c->limits);
    tls_ctx_free(c->tls);
    for (int i = 0; i < c->ndomains; i++)
        free((char *)c->domains[i].name);
    free(c->domains);
    free(c->listeners);
    free(c->listener_is_tls);
    buf_free(&c->scratch);
    daemon_done(&d);
    uv_run(c->loop, UV_RUN_NOWAIT);
    uv_loop_close(c->loop);
    log_close();
    return 0;
}
