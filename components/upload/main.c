/* main.c — hearth-upload: reads the config, opens its HTTP listeners,
 * links to the router with the router/component account "upload",
 * binds upload.DOMAIN for every local domain, and runs. What it does is
 * in upload.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "metrics.h"
#include "upload.h"

upload_metrics_t upload_metrics;
static upload_t upload;

char *upload_strdup(const char *s)
{
    char *d = strdup(s);
    if (!d) log_fatal("out of memory");
    return d;
}

static void on_route(comp_t *c, elem_t *route, const xstream_raw_t *raw)
{
    (void)raw;
    slot_on_route(comp_data(c), route);
}

static void on_ready(comp_t *c)
{
    (void)c;
    log_notice("upload: linked to the router");
    daemon_ready();
}

static void on_down(comp_t *c)
{
    (void)c;
    log_warn("upload: router link lost, reconnecting");
}

static void on_bind_error(comp_t *c, const char *name, const char *error)
{
    (void)c;
    log_err("upload: the router refused the name %s: %s (router/component name='upload' needs "
            "bind='upload.DOMAIN')",
            name, error);
}

static void on_stopped(void *ud)
{
    (void)ud;
}

static void on_stop(void *ud)
{
    upload_t *u = ud;
    metrics_close();
    comp_free(u->comp);
    u->comp = NULL;
    if (u->https) http_server_free(u->https);
    if (u->http) http_server_free(u->http);
    u->https = u->http = NULL;
    uv_timer_stop(&u->sweep);
    uv_close((uv_handle_t *)&u->sweep, NULL);
    if (u->st) storage_close(u->st, on_stopped, NULL);
    u->st = NULL;
}

/* The port of a host:port address, or NULL. */
static const char *port_of(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    return colon && colon[1] ? colon + 1 : NULL;
}

static http_server_t *listen_http(upload_t *u, const config_t *cf, const char *setting,
                                  tls_ctx_t *tls)
{
    const char *addr = config_get(cf, setting);
    http_opts_t o = {
        .max_header = config_size(cf, "http.max-header"),
        .max_body = 0, /* no request of ours has a body outside PUT, which streams */
        .max_connections = (unsigned)config_int(cf, "upload.max-connections"),
        .request_timeout = config_ms(cf, "upload.timeout"),
        .idle_timeout = config_ms(cf, "upload.timeout"),
        .tls = tls,
    };
    http_server_t *s = http_server_new(u->loop, &o);
    files_route(u, s);
    int rc = http_listen(s, addr);
    if (rc < 0) log_fatal("%s: %s %s: %s", config_file(cf), setting, addr, uv_strerror(rc));
    log_notice("upload: %s on %s", tls ? "HTTPS" : "HTTP", addr);
    return s;
}

static void configure(upload_t *u, const config_t *cf)
{
    u->domains = daemon_domains(cf, &u->ndomains);
    u->max_file_size = config_size(cf, "upload.max-file-size");
    u->user_quota = config_size(cf, "upload.user-quota");
    u->total_quota = config_size(cf, "upload.total-quota");
    u->slot_lifetime = config_ms(cf, "upload.slot-lifetime") / 1000;
    u->expiry = config_ms(cf, "upload.expiry") / 1000;
    if (u->slot_lifetime == 0) u->slot_lifetime = 1;
    const char *dir = config_get(cf, "upload.dir");
    char path[4096];
    snprintf(path, sizeof path, "%s/upload", config_get(cf, "statedir"));
    u->dir = upload_strdup(dir && *dir ? dir : path);

    const char *tls_addr = config_get(cf, "upload.listen-tls");
    const char *plain = config_get(cf, "upload.listen");
    bool has_tls = tls_addr && *tls_addr, has_plain = plain && *plain;
    if (!has_tls && !has_plain)
        log_fatal("%s: upload.listen-tls and upload.listen are both empty: nowhere to upload to",
                  config_file(cf));
    /* Plain HTTP only where nobody but a proxy on this host can see it. */
    if (has_plain && !conn_addr_is_loopback(plain) && strncmp(plain, "unix:", 5) != 0)
        log_fatal("%s: upload.listen %s: plain HTTP only on loopback (behind a reverse proxy); "
                  "use upload.listen-tls",
                  config_file(cf), plain);
    const char *url = config_get(cf, "upload.url");
    buf_t b = BUF_INIT;
    if (url && *url) {
        buf_appends(&b, url);
        while (b.len && b.data[b.len - 1] == '/')
            b.data[--b.len] = '\0';
    } else if (has_tls) {
        buf_printf(&b, "https://%s:%s", u->domains[0], port_of(tls_addr) ? port_of(tls_addr) : "");
    } else {
        if (strncmp(plain, "unix:", 5) == 0)
            log_fatal("%s: with upload.listen on a Unix socket, upload.url must say where "
                      "clients reach the files",
                      config_file(cf));
        buf_printf(&b, "http://%s", plain);
    }
    u->base_url = buf_take(&b);

    if (has_tls) {
        const char *cert = config_get(cf, "upload.cert"), *key = config_get(cf, "upload.key");
        if (!(cert && *cert)) {
            cert = config_get(cf, "c2s.cert");
            key = config_get(cf, "c2s.key");
        }
        u->tls = tls_ctx_for_domain(cert, key, config_get(cf, "statedir"), u->domains[0], "upload");
        u->https = listen_http(u, cf, "upload.listen-tls", u->tls);
    }
    if (has_plain) u->http = listen_http(u, cf, "upload.listen", NULL);
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0750) < 0 && errno != EEXIST)
        log_fatal("upload: cannot create %s: %s", path, strerror(errno));
}

static double transfers(void *ud)
{
    return ((upload_t *)ud)->transfers;
}

static void metrics_init(upload_t *u)
{
    metrics_add_process();
    metrics_counter("hearth_upload_slots_total", "Upload slots handed out", &upload_metrics.slots,
                    NULL);
    metrics_counter("hearth_upload_refused_total", "Slot requests refused (size, quota, store)",
                    &upload_metrics.refused, NULL);
    metrics_counter("hearth_upload_puts_total", "Files uploaded in full", &upload_metrics.puts,
                    NULL);
    metrics_counter("hearth_upload_gets_total", "Downloads served in full", &upload_metrics.gets,
                    NULL);
    metrics_counter("hearth_upload_received_bytes_total", "Bytes of files uploaded",
                    &upload_metrics.bytes_in, NULL);
    metrics_counter("hearth_upload_sent_bytes_total", "Bytes of files served",
                    &upload_metrics.bytes_out, NULL);
    metrics_counter("hearth_upload_swept_total", "Files and slots removed by the sweep",
                    &upload_metrics.swept, NULL);
    metrics_gauge_fn("hearth_upload_transfers", "Uploads and downloads under way", transfers, u,
                     NULL);
}

int main(int argc, char **argv)
{
    upload_t *u = &upload;
    daemon_ctx_t d = {.name = "upload", .on_stop = on_stop, .ud = u};
    d.loop = uv_default_loop();
    daemon_init(&d, argc, argv);
    u->loop = d.loop;
    map_init(&u->busy);
    configure(u, d.config);

    static const comp_cb_t cb = {.on_ready = on_ready,
                                 .on_down = on_down,
                                 .on_route = on_route,
                                 .on_bind_error = on_bind_error};
    /* Its router secret is read before the switch (it may be root's). */
    u->comp = comp_new_from_config(d.loop, d.config, "upload", ROLE_COMPONENT, &cb, u);
    metrics_init(u);
    metrics_listen(d.loop, d.config, "upload.metrics-listen", 1);
    /* The store and the files, the user's from here on. */
    daemon_drop_privileges(&d);
    make_dir(u->dir);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/tmp", u->dir);
    make_dir(tmp);
    char *err = NULL;
    if (!(u->st = storage_open(d.loop, d.config, &err)))
        log_fatal("cannot open the store: %s", err ? err : "unknown error");
    for (int i = 0; i < u->ndomains; i++) {
        char name[JID_STRING_MAX + 8];
        snprintf(name, sizeof name, "upload.%s", u->domains[i]);
        comp_bind(u->comp, name, 0);
    }
    files_sweep_start(u);
    comp_start(u->comp);
    log_notice("upload started: files in %s, served as %s/upload/", u->dir, u->base_url);

    uv_run(d.loop, UV_RUN_DEFAULT);

    log_notice("upload stopped");
    daemon_done(&d);
    uv_run(d.loop, UV_RUN_NOWAIT);
    if (u->tls) tls_ctx_free(u->tls);
    daemon_domains_free(u->domains, u->ndomains);
    free(u->dir);
    free(u->base_url);
    map_free(&u->busy);
    uv_loop_close(d.loop);
    log_close();
    return 0;
}
