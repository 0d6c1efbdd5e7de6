/* metrics.c — the process's registry of metrics (metrics.h), its rendering
 * in the Prometheus text format 0.0.4, and the /metrics endpoint.
 *
 * The registry is a fixed array filled at start. Rendering groups the
 * series of one name under a single # HELP and # TYPE, in the order the
 * names were first registered; label values were escaped once, at
 * registration (backslash, double quote and line feed, as the format
 * says), and help texts are escaped (backslash, line feed) when rendered. */
#include "metrics.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "log.h"

typedef enum kind {
    K_COUNTER,
    K_GAUGE,
    K_HISTOGRAM,
    K_GAUGE_FN,
    K_COUNTER_FN,
} kind_t;

typedef struct entry {
    const char *name;
    const char *help;
    kind_t kind;
    char *labels; /* a="b",c="d" (escaped), or "" */
    void *metric;
    metric_fn_t fn;
    void *ud;
} entry_t;

static entry_t entries[METRICS_MAX];
static int nentries;
static http_server_t *server;
static tls_ctx_t *server_tls;

const char *const metric_kind_names[METRIC_KINDS] = {"message", "presence", "iq"};

int metric_kind(const char *name)
{
    for (int i = 0; name && i < METRIC_KINDS; i++)
        if (strcmp(name, metric_kind_names[i]) == 0) return i;
    return -1;
}

static bool is_valid_name(const char *s, bool allow_colon)
{
    if (!*s || isdigit((unsigned char)*s)) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && !(allow_colon && *s == ':')) return false;
    return true;
}

static void escape(buf_t *b, const char *s, bool is_label)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_appends(b, "\\\\");
        else if (*s == '\n')
            buf_appends(b, "\\n");
        else if (is_label && *s == '"')
            buf_appends(b, "\\\"");
        else
            buf_append(b, s, 1);
    }
}

static void add(const char *name, const char *help, kind_t kind, void *metric, metric_fn_t fn,
                void *ud, va_list ap)
{
    if (!is_valid_name(name, true)) log_fatal("metrics: bad name %s", name);
    if (nentries == METRICS_MAX) log_fatal("metrics: more than %d series", METRICS_MAX);
    buf_t labels = BUF_INIT;
    buf_appends(&labels, "");
    const char *lname;
    while ((lname = va_arg(ap, const char *))) {
        const char *value = va_arg(ap, const char *);
        if (!value || !is_valid_name(lname, false) || strcmp(lname, "le") == 0)
            log_fatal("metrics: %s: bad label %s", name, lname);
        buf_printf(&labels, "%s%s=\"", labels.len ? "," : "", lname);
        escape(&labels, value, true);
        buf_appends(&labels, "\"");
    }
    for (int i = 0; i < nentries; i++) {
        if (strcmp(entries[i].name, name) != 0) continue;
        if (entries[i].kind != kind || strcmp(entries[i].labels, labels.data) == 0)
            log_fatal("metrics: %s{%s} registered twice", name, labels.data);
    }
    if (kind == K_HISTOGRAM && ((metric_histogram_t *)metric)->nbounds > METRIC_MAX_BUCKETS)
        log_fatal("metrics: %s: too many buckets", name);
    entries[nentries++] = (entry_t){name, help, kind, buf_take(&labels), metric, fn, ud};
}

#define REGISTER(kind, metric, fn, ud, last)                                                       \
    do {                                                                                           \
        va_list ap;                                                                                \
        va_start(ap, last);                                                                        \
        add(name, help, kind, metric, fn, ud, ap);                                                 \
        va_end(ap);                                                                                \
    } while (0)

void metrics_counter(const char *name, const char *help, metric_counter_t *c, ...)
{
    REGISTER(K_COUNTER, c, NULL, NULL, c);
}

void metrics_gauge(const char *name, const char *help, metric_gauge_t *g, ...)
{
    REGISTER(K_GAUGE, g, NULL, NULL, g);
}

void metrics_histogram(const char *name, const char *help, metric_histogram_t *h, ...)
{
    REGISTER(K_HISTOGRAM, h, NULL, NULL, h);
}

void metrics_gauge_fn(const char *name, const char *help, metric_fn_t fn, void *ud, ...)
{
    REGISTER(K_GAUGE_FN, NULL, fn, ud, ud);
}

void metrics_counter_fn(const char *name, const char *help, metric_fn_t fn, void *ud, ...)
{
    REGISTER(K_COUNTER_FN, NULL, fn, ud, ud);
}

/* ---- the process --------------------------------------------------------- */

/* utime and stime, fields 14 and 15 of /proc/self/stat; the second field
 * (the command) is in parentheses and may hold spaces, so count from the
 * last ')'. */
static double process_cpu(void *ud)
{
    char text[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *p = strrchr(text, ')');
    if (!p) return 0;
    unsigned long long utime = 0, stime = 0;
    /* After ')': state (3), then fields 4..13, then utime (14), stime (15). */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
        2)
        return 0;
    long hz = sysconf(_SC_CLK_TCK);
    return hz > 0 ? (double)(utime + stime) / (double)hz : 0;
}

static double process_rss(void *ud)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, resident = 0;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    if (n != 2) return 0;
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

void metrics_add_process(void)
{
    metrics_counter_fn("hearth_process_cpu_seconds_total",
                       "user and system CPU time of the process", process_cpu, NULL, NULL);
    metrics_gauge_fn("hearth_process_resident_memory_bytes", "resident memory of the process",
                     process_rss, NULL, NULL);
}

/* ---- rendering ----------------------------------------------------------- */

/* The shortest of %.15g and %.17g that reads back as v. */
static void format_double(char *out, size_t size, double v)
{
    snprintf(out, size, "%.15g", v);
    if (strtod(out, NULL) != v) snprintf(out, size, "%.17g", v);
}

static void number(buf_t *b, double v)
{
    char text[32];
    if (v != v)
        buf_appends(b, "NaN");
    else if (v > 1.7976931348623157e308)
        buf_appends(b, "+Inf");
    else if (v < -1.7976931348623157e308)
        buf_appends(b, "-Inf");
    else {
        format_double(text, sizeof text, v);
        buf_appends(b, text);
    }
}

static void series(buf_t *b, const char *name, const char *suffix, const char *labels,
                   const char *extra)
{
    buf_printf(b, "%s%s", name, suffix);
    if (*labels || extra) {
        buf_appends(b, "{");
        buf_appends(b, labels);
        if (extra) buf_printf(b, "%s%s", *labels ? "," : "", extra);
        buf_appends(b, "}");
    }
    buf_appends(b, " ");
}

static void render_entry(buf_t *b, const entry_t *e)
{
    switch (e->kind) {
    case K_COUNTER:
        series(b, e->name, "", e->labels, NULL);
        buf_printf(b, "%llu\n", (unsigned long long)((metric_counter_t *)e->metric)->n);
        break;
    case K_GAUGE:
        series(b, e->name, "", e->labels, NULL);
        buf_printf(b, "%lld\n", (long long)((metric_gauge_t *)e->metric)->n);
        break;
    case K_GAUGE_FN:
    case K_COUNTER_FN:
        series(b, e->name, "", e->labels, NULL);
        number(b, e->fn(e->ud));
        buf_appends(b, "\n");
        break;
    case K_HISTOGRAM: {
        const metric_histogram_t *h = e->metric;
        uint64_t cumulative = 0;
        char le[64];
        for (unsigned i = 0; i <= h->nbounds; i++) {
            cumulative += h->counts[i];
            if (i < h->nbounds) {
                char bound[32];
                format_double(bound, sizeof bound, h->bounds[i]);
                snprintf(le, sizeof le, "le=\"%s\"", bound);
            } else
                snprintf(le, sizeof le, "le=\"+Inf\"");
            series(b, e->name, "_bucket", e->labels, le);
            buf_printf(b, "%llu\n", (unsigned long long)cumulative);
        }
        series(b, e->name, "_sum", e->labels, NULL);
        number(b, h->sum);
        buf_appends(b, "\n");
        series(b, e->name, "_count", e->labels, NULL);
        buf_printf(b, "%llu\n", (unsigned long long)h->count);
        break;
    }
    }
}

void metrics_render(buf_t *out)
{
    static const char *const types[] = {"counter", "gauge", "histogram", "gauge", "counter"};
    for (int i = 0; i < nentries; i++) {
        bool is_first = true;
        for (int j = 0; j < i && is_first; j++)
            if (strcmp(entries[j].name, entries[i].name) == 0) is_first = false;
        if (!is_first) continue;
        buf_printf(out, "# HELP %s ", entries[i].name);
        escape(out, entries[i].help, false);
        buf_printf(out, "\n# TYPE %s %s\n", entries[i].name, types[entries[i].kind]);
        for (int j = i; j < nentries; j++)
            if (strcmp(entries[j].name, entries[i].name) == 0) render_entry(out, &entries[j]);
    }
}

/* ---- serving ------------------------------------------------------------- */

static void on_metrics(http_req_t *req, void *ud)
{
    buf_t b = BUF_INIT;
    metrics_render(&b);
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
}

int metrics_instance_index(const char *id)
{
    const char *dash = id ? strrchr(id, '-') : NULL;
    if (!dash || !dash[1] || strspn(dash + 1, "0123456789") != strlen(dash + 1)) return 1;
    long n = strtol(dash + 1, NULL, 10);
    return n >= 1 && n <= 65535 ? (int)n : 1;
}

int metrics_listen(uv_loop_t *loop, const config_t *cf, const char *setting, int index)
{
    const char *addr = config_get(cf, setting);
    if (!addr || !*addr) return 0;
    char shifted[512];
    if (http_instance_address(addr, index, shifted, sizeof shifted) < 0)
        log_fatal("%s: %s: %s is not an address (host:port or unix:/path)", config_file(cf),
                  setting, addr);
    http_opts_t opts;
    http_opts_from_config(cf, &opts, &server_tls);
    server = http_server_new(loop, &opts);
    http_route(server, "GET", "/metrics", on_metrics, NULL);
    int rc = http_listen(server, shifted);
    if (rc < 0) log_fatal("%s: cannot listen on %s: %s", setting, shifted, uv_strerror(rc));
    log_notice("metrics at http%s://%s/metrics", server_tls ? "s" : "", shifted);
    return 0;
}

void metrics_close(void)
{
    if (server) http_server_free(server);
    server = NULL;
    /* server_tls stays: connections being aborted still use it until
     * their close callbacks run; it lives as long as the process. */
    for (int i = 0; i < nentries; i++)
        free(entries[i].labels);
    nentries = 0;
}
