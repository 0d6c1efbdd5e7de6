/* metrics.c — what s2s counts (docs/metrics.md): stanzas to and from
 * remote servers by kind, and stanzas bounced back to local senders. The
 * stream gauges are out.c's and in.c's. */
#include "s2s.h"

s2s_metrics_t s2s_metrics;

void s2s_metrics_init(s2s_t *s)
{
    s2s_metrics_t *m = &s2s_metrics;
    const char *help = "stanzas from and to remote servers";
    metrics_add_process();
    for (int k = 0; k < METRIC_KINDS; k++) {
        metrics_counter("hearth_s2s_stanzas_total", help, &m->stanzas_in[k], "direction", "in",
                        "kind", metric_kind_names[k], NULL);
        metrics_counter("hearth_s2s_stanzas_total", help, &m->stanzas_out[k], "direction", "out",
                        "kind", metric_kind_names[k], NULL);
    }
    metrics_counter("hearth_s2s_bounces_total",
                    "stanzas sent back to their local sender with an error", &m->bounces, NULL);
    out_metrics_init(s);
    in_metrics_init(s);
}
