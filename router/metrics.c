/* metrics.c — what the router counts (docs/metrics.md): routes delivered
 * by the class of their destination (its role: c2s, sm, s2s, resolver,
 * admin, component), bounces, bytes, flow-control pauses, and the links
 * and their queues, read when scraped. */
#include "router.h"

router_metrics_t router_metrics;

static double links(void *ud)
{
    return ((router_t *)ud)->nlinks;
}

static double queued(void *ud)
{
    size_t n = 0;
    for (link_t *l = ((router_t *)ud)->links; l; l = l->next)
        if (l->conn) n += conn_queued(l->conn);
    return (double)n;
}

void router_metric_delivered(const link_t *dest)
{
    comp_role_t role = dest->is_external ? ROLE_COMPONENT : dest->role;
    if (role <= ROLE_NONE || role > ROLE_ROUTER) role = ROLE_COMPONENT;
    metric_inc(&router_metrics.delivered[role]);
}

void router_metrics_init(router_t *r)
{
    router_metrics_t *m = &router_metrics;
    metrics_add_process();
    metrics_gauge_fn("hearth_router_links", "component connections (links) open", links, r, NULL);
    metrics_gauge_fn("hearth_router_queue_bytes", "bytes queued to links, not yet sent", queued, r,
                     NULL);
    static const comp_role_t classes[] = {ROLE_C2S,      ROLE_SM,    ROLE_S2S,
                                          ROLE_RESOLVER, ROLE_ADMIN, ROLE_COMPONENT};
    for (size_t i = 0; i < sizeof classes / sizeof *classes; i++)
        metrics_counter("hearth_router_routes_total", "routes delivered, by destination class",
                        &m->delivered[classes[i]], "destination", comp_role_name(classes[i]), NULL);
    metrics_counter("hearth_router_bounces_total",
                    "routes sent back to their sender as errors (not-found, forbidden)",
                    &m->bounces, NULL);
    metrics_counter("hearth_router_bytes_total", "bytes read from links and of routes written",
                    &m->bytes_in, "direction", "in", NULL);
    metrics_counter("hearth_router_bytes_total", "bytes read from links and of routes written",
                    &m->bytes_out, "direction", "out", NULL);
    metrics_counter("hearth_router_flow_pauses_total",
                    "times a sender stopped being read because a destination's queue was full",
                    &m->pauses, NULL);
}
