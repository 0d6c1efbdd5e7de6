/* metrics.h — counters, gauges and histograms of one process, rendered in
 * the Prometheus text exposition format 0.0.4 and served at GET /metrics.
 *
 * A metric is a plain struct the code that counts owns (usually a static
 * or a member of the daemon's state): incrementing it is one addition, no
 * allocation, no lock, no lookup (a daemon is one thread). At start the
 * daemon registers each of them once with its name, help text and labels;
 * labels are fixed pairs given at registration (a metric with a label
 * that takes three values is three structs registered under one name), so
 * the set of series is known before the first scrape and never grows.
 * Names follow Prometheus' conventions and start with hearth_; every one
 * is described in docs/metrics.md.
 *
 * The registry is the process's: storage/ registers its own metrics
 * without knowing which daemon links it. metrics_listen() serves it over
 * HTTP (http.h) on the address of a daemon's X.metrics-listen setting. */
#ifndef HEARTH_METRICS_H
#define HEARTH_METRICS_H

#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "config.h"

typedef struct metric_counter {
    uint64_t n;
} metric_counter_t;

typedef struct metric_gauge {
    int64_t n;
} metric_gauge_t;

#define METRIC_MAX_BUCKETS 16
typedef struct metric_histogram {
    const double *bounds; /* upper bounds, increasing; the +Inf bucket is implicit */
    unsigned nbounds;     /* at most METRIC_MAX_BUCKETS */
    uint64_t counts[METRIC_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
} metric_histogram_t;

static inline void metric_inc(metric_counter_t *c)
{
    c->n++;
}

static inline void metric_add(metric_counter_t *c, uint64_t n)
{
    c->n += n;
}

static inline void metric_gauge_set(metric_gauge_t *g, int64_t n)
{
    g->n = n;
}

static inline void metric_gauge_add(metric_gauge_t *g, int64_t d)
{
    g->n += d;
}

static inline void metric_observe(metric_histogram_t *h, double v)
{
    unsigned i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

/* Stanzas by kind: the label values, and the index of a stanza's element
 * name (message 0, presence 1, iq 2; -1 for anything else). */
#define METRIC_KINDS 3
extern const char *const metric_kind_names[METRIC_KINDS];
int metric_kind(const char *name);

/* Registration, at start. name: [a-zA-Z_:][a-zA-Z0-9_:]*; help: one line;
 * then label name/value pairs, ended by NULL (names [a-zA-Z_][a-zA-Z0-9_]*,
 * values any UTF-8, escaped when rendered). A bad name, a series
 * registered twice or more than METRICS_MAX series is a programming error
 * and fatal. The metric must outlive the registry (metrics_free). */
#define METRICS_MAX 512
void metrics_counter(const char *name, const char *help, metric_counter_t *c, ...)
    __attribute__((sentinel));
void metrics_gauge(const char *name, const char *help, metric_gauge_t *g, ...)
    __attribute__((sentinel));
/* h->bounds and h->nbounds set by the caller first. */
void metrics_histogram(const char *name, const char *help, metric_histogram_t *h, ...)
    __attribute__((sentinel));
/* A value computed when scraped (a table's size, the process's memory):
 * fn(ud) is called once per scrape. */
typedef double (*metric_fn_t)(void *ud);
void metrics_gauge_fn(const char *name, const char *help, metric_fn_t fn, void *ud, ...)
    __attribute__((sentinel));
void metrics_counter_fn(const char *name, const char *help, metric_fn_t fn, void *ud, ...)
    __attribute__((sentinel));

/* hearth_process_cpu_seconds_total and hearth_process_resident_memory_bytes,
 * read from /proc/self/stat and /proc/self/statm at each scrape (files of
 * the kernel's memory, no disk behind them). */
void metrics_add_process(void);

/* Append the exposition of every registered metric to out. */
void metrics_render(buf_t *out);

/* Serve GET /metrics on the address of setting (e.g. "c2s.metrics-listen";
 * empty: nothing, return 0). index > 1 (c2s-2, c2s-3 ...) moves the port
 * up by index - 1 (a Unix socket path gets "-INDEX" appended), so that
 * every process of one daemon has its own address. The limits are the
 * http section's. Fatal if the address is bad or cannot be bound. */
int metrics_listen(uv_loop_t *loop, const config_t *cf, const char *setting, int index);
/* The instance index of an id: 2 for "c2s-2", 1 for "c2s" or "sm". */
int metrics_instance_index(const char *id);
/* Stop serving (on stop: the loop can end) and forget every registration. */
void metrics_close(void);

#endif
