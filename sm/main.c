/* main.c — hearth-sm: reads the config, drops privileges, opens the store,
 * links to the router binding every local domain as a shard, starts the
 * modules and runs the loop. The work is in core.c, session.c, deliver.c
 * and the modules (sm/mod_*.c, listed in modules.c). */
#include <stdlib.h>
#include <string.h>

#include "core.h"

static sm_t the_sm;

static void on_ready(comp_t *c)
{
    sm_t *sm = comp_data(c);
    log_notice("%s linked to the router, serving %d domain(s)", sm->id, sm->ndomains);
    daemon_ready();
    if (sm->was_down)
        hold_linked(sm);
    else if (!sm->has_linked)
        hold_gather(sm);
    sm->has_linked = true;
    sm->was_down = false;
    if (sm_is_advertised(sm, "s2s")) ack_resend_s2s(sm);
    hold_out_flush(sm);
}

static void keep_sessions_of(sess_t *s, void *ud)
{
    hold_c2s_away(ud, s->c2s);
}

/* The sessions stay; so do the c2s they are on, out of sight until the
 * router advertises them again (hold.c). */
static void on_down(comp_t *c)
{
    sm_t *sm = comp_data(c);
    log_warn("router link lost; reconnecting (%lu sessions kept)", sm->nsessions);
    sm->was_down = true;
    for (int i = 0; i < sm->ncomponents; i++)
        free(sm->components[i]);
    sm->ncomponents = 0;
    if (sm->components) sm->components[0] = NULL;
    sm_each_session(sm, keep_sessions_of, sm);
}

static void on_bind_error(comp_t *c, const char *name, const char *error)
{
    (void)c;
    log_err("the router refused to bind %s: %s", name, error);
}

static void on_storage_closed(void *ud)
{
    sm_t *sm = ud;
    sm->st = NULL;
    comp_free(sm->comp);
    sm->comp = NULL;
}

static void on_stop(void *ud)
{
    sm_t *sm = ud;
    if (sm->is_stopping) return;
    sm->is_stopping = true;
    log_notice("%s stopping", sm->id);
    metrics_close();
    sm_api_stop();
    ack_flush(sm);
    sess_end_all(sm);
    hold_close(sm);
    ack_close(sm);
    sm_run_at_stop(sm);
    storage_close(sm->st, on_storage_closed, sm);
}

int main(int argc, char **argv)
{
    sm_t *sm = &the_sm;
    daemon_ctx_t d = {.name = "sm", .on_stop = on_stop, .ud = sm};
    d.loop = sm->loop = uv_default_loop();
    daemon_init(&d, argc, argv);
    sm->config = d.config;
    sm->id = d.id;
    sm->shards = (int)config_int(d.config, "sm.shards");

    sm->domains = (const char **)daemon_domains(d.config, &sm->ndomains);
    map_init(&sm->sessions_by_sid);
    map_init(&sm->users);
    map_init(&sm->accounts);
    map_init(&sm->checking);
    map_init(&sm->absent);
    hold_init(sm);
    ack_init(sm);

    static const comp_cb_t cb = {
        .on_ready = on_ready,
        .on_down = on_down,
        .on_route = sm_on_route,
        .on_advert = sm_on_advert,
        .on_bind_error = on_bind_error,
        .on_direct_down = sm_on_direct_down,
    };
    /* Its router secret is read before the switch (it may be root's). */
    sm->comp = comp_new_from_config(sm->loop, d.config, d.id, ROLE_SM, &cb, sm);
    /* With shards, the router picks each user's sm: no direct links. */
    const char *direct = config_get(d.config, "sm.direct-listen");
    if (sm->shards == 1 && direct && *direct) {
        int rc = comp_direct_listen(sm->comp, direct, ROLE_C2S);
        if (rc < 0)
            log_fatal("%s: sm.direct-listen %s: %s", config_file(d.config), direct,
                      rc == UV_EINVAL ? "not a loopback TCP address" : uv_strerror(rc));
    }
    sm_metrics_init(sm);
    metrics_listen(sm->loop, d.config, "sm.metrics-listen", metrics_instance_index(sm->id));
    sm_api_start(sm);
    /* The store, the user's from here on. */
    daemon_drop_privileges(&d);
    char *err = NULL;
    if (!(sm->st = storage_open(sm->loop, d.config, &err)))
        log_fatal("cannot open the store: %s", err ? err : "unknown error");

    for (int i = 0; i < sm->ndomains; i++)
        comp_bind(sm->comp, sm->domains[i], COMP_BIND_SHARD);
    /* Its own name too: its advert tells each c2s that this shard is back
     * (c2s/session.c resumes its sessions then). */
    comp_bind(sm->comp, sm->id, 0);
    for (const sm_module_t *m = sm_modules; m->name; m++)
        m->init(sm);

    comp_start(sm->comp);
    log_notice("%s started (%s store, %d shard(s))", sm->id, storage_driver(sm->st), sm->shards);

    uv_run(sm->loop, UV_RUN_DEFAULT);

    log_notice("%s stopped", sm->id);
    for (int i = 0; i < SM_CHAINS; i++)
        free(sm->chains[i].hooks);
    free(sm->features);
    for (int i = 0; i < sm->ncomponents; i++)
        free(sm->components[i]);
    free(sm->components);
    daemon_domains_free((char **)sm->domains, sm->ndomains);
    map_free(&sm->sessions_by_sid);
    map_free(&sm->users);
    map_free(&sm->accounts);
    map_free(&sm->checking);
    map_free(&sm->absent);
    buf_free(&sm->out);
    buf_free(&sm->fan);
    daemon_done(&d);
    uv_run(sm->loop, UV_RUN_NOWAIT);
    uv_loop_close(sm->loop);
    log_close();
    return 0;
}
