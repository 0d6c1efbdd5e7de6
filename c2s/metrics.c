/* metrics.c — what c2s counts (docs/metrics.md): the counters the code
 * increments where things happen (c2s_metrics), and the gauges read from
 * the client list when scraped. Registered once at start by main.c. */
#include <string.h>

#include "c2s.h"

c2s_metrics_t c2s_metrics;

const char *const c2s_mechanisms[C2S_MECHANISMS] = {
    "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN",
};

int c2s_mechanism_index(const char *mech)
{
    for (int i = 0; mech && i < C2S_MECHANISMS; i++)
        if (strcmp(mech, c2s_mechanisms[i]) == 0) return i;
    return -1;
}

static double connections(void *ud)
{
    return ((c2s_t *)ud)->nclients;
}

static double sessions(void *ud)
{
    unsigned n = 0;
    for (client_t *cl = ((c2s_t *)ud)->clients; cl; cl = cl->next)
        if (cl->state == CL_BOUND && client_is_open(cl)) n++;
    return n;
}

static double queued(void *ud)
{
    size_t n = 0;
    for (client_t *cl = ((c2s_t *)ud)->clients; cl; cl = cl->next)
        if (cl->conn) n += conn_queued(cl->conn);
    return (double)n;
}

static double direct_links(void *ud)
{
    const c2s_t *c = ud;
    return c->comp ? comp_direct_count(c->comp) : 0;
}

void c2s_metrics_init(c2s_t *c)
{
    c2s_metrics_t *m = &c2s_metrics;
    metrics_add_process();
    metrics_gauge_fn("hearth_c2s_connections", "client connections open", connections, c, NULL);
    metrics_gauge_fn("hearth_c2s_sessions", "clients with a session (bound)", sessions, c, NULL);
    metrics_gauge_fn("hearth_c2s_direct_links", "direct links to the sm, skipping the router",
                     direct_links, c, NULL);
    metrics_gauge_fn("hearth_c2s_write_queue_bytes", "bytes queued for clients, not yet sent",
                     queued, c, NULL);
    for (int k = 0; k < METRIC_KINDS; k++) {
        metrics_counter("hearth_c2s_stanzas_total", "stanzas from and to clients with a session",
                        &m->stanzas_in[k], "direction", "in", "kind", metric_kind_names[k], NULL);
        metrics_counter("hearth_c2s_stanzas_total", "stanzas from and to clients with a session",
                        &m->stanzas_out[k], "direction", "out", "kind", metric_kind_names[k], NULL);
    }
    metrics_counter("hearth_c2s_bytes_total", "bytes of XML read from and queued to clients",
                    &m->bytes_in, "direction", "in", NULL);
    metrics_counter("hearth_c2s_bytes_total", "bytes of XML read from and queued to clients",
                    &m->bytes_out, "direction", "out", NULL);
    for (int i = 0; i < C2S_MECHANISMS; i++) {
        metrics_counter("hearth_c2s_auth_total", "SASL logins by outcome and mechanism",
                        &m->auth_success[i], "mechanism", c2s_mechanisms[i], "result", "success",
                        NULL);
        metrics_counter("hearth_c2s_auth_total", "SASL logins by outcome and mechanism",
                        &m->auth_failure[i], "mechanism", c2s_mechanisms[i], "result", "failure",
                        NULL);
    }
    metrics_counter("hearth_c2s_registrations_total", "in-band registrations (XEP-0077)",
                    &m->registration_attempts, "result", "attempt", NULL);
    metrics_counter("hearth_c2s_registrations_total", "in-band registrations (XEP-0077)",
                    &m->registration_successes, "result", "success", NULL);
}
