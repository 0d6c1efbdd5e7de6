/* metrics.c — what the sm core counts (docs/metrics.md): stanzas by kind
 * from sessions, from the router and to sessions, the account cache, and
 * the sessions gauge. Modules register their own (mod_offline), the
 * store its own (storage/). */
#include "core.h"

sm_metrics_t sm_metrics;

static double sessions(void *ud)
{
    return (double)((sm_t *)ud)->nsessions;
}

static double users(void *ud)
{
    return (double)((sm_t *)ud)->users.count;
}

static double direct_links(void *ud)
{
    const sm_t *sm = ud;
    return sm->comp ? comp_direct_count(sm->comp) : 0;
}

void sm_metrics_init(sm_t *sm)
{
    sm_metrics_t *m = &sm_metrics;
    const char *help = "stanzas from sessions, from the router, and sent to sessions";
    metrics_add_process();
    metrics_gauge_fn("hearth_sm_sessions", "sessions (bound resources)", sessions, sm, NULL);
    metrics_gauge_fn("hearth_sm_users_online", "users with at least one session", users, sm, NULL);
    metrics_gauge_fn("hearth_sm_direct_links", "direct links to c2s processes, skipping the router",
                     direct_links, sm, NULL);
    for (int k = 0; k < METRIC_KINDS; k++) {
        const char *kind = metric_kind_names[k];
        metrics_counter("hearth_sm_stanzas_total", help, &m->from_sess[k], "path", "from_session",
                        "kind", kind, NULL);
        metrics_counter("hearth_sm_stanzas_total", help, &m->from_router[k], "path", "from_router",
                        "kind", kind, NULL);
        metrics_counter("hearth_sm_stanzas_total", help, &m->to_sess[k], "path", "to_session",
                        "kind", kind, NULL);
    }
    metrics_counter("hearth_sm_account_cache_total", "account existence checks by cache outcome",
                    &m->account_hits, "result", "hit", NULL);
    metrics_counter("hearth_sm_account_cache_total", "account existence checks by cache outcome",
                    &m->account_misses, "result", "miss", NULL);
    metrics_counter("hearth_sm_messages_routed_total",
                    "messages from sessions that no module took, sent on by their to",
                    &m->messages_routed, NULL);
}
