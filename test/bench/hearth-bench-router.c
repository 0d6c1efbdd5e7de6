/* hearth-bench-router — how many routed packets per second the router
 * moves between two components, and what it costs the router.
 *
 *   hearth-bench-router -r ADDR -p PASSWORD [-u USER] [-s SECONDS]
 *                       [-P ROUTER-PID] [-n PAIRS] [-b PAYLOAD-BYTES]
 *
 * PAIRS sender/receiver component pairs log in (real SCRAM, real binds);
 * each sender keeps its link to the router full of small routes (respecting
 * flow control), each receiver counts what arrives (parsed shallow, as a
 * relay would). After a one-second warm-up it measures for SECONDS and
 * prints packets/s received and, given the router's pid, its CPU use and
 * resident memory sampled every 250 ms (from /proc). It stops by itself. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define MAX_PAIRS 64
#define BATCH 256

typedef struct pair {
    comp_t *src, *dst;
    char src_name[32], dst_name[32];
    rbuf_t *batch;        /* BATCH routes, serialized once */
    unsigned long received;
} pair_t;

static pair_t pairs[MAX_PAIRS];
static int npairs = 1, nready;
static uv_loop_t *loop;
static uv_timer_t tick;
static int router_pid;
static double seconds = 10;
static size_t payload_bytes = 100;
static bool is_measuring;
static uint64_t t_start;
static unsigned long count_start;
static double cpu_start;
static long rss_max_kb, rss_first_kb;
static int ticks;

static unsigned long total_received(void)
{
    unsigned long n = 0;
    for (int i = 0; i < npairs; i++) n += pairs[i].received;
    return n;
}

/* The router's CPU seconds (user + system) and resident memory. */
static double router_cpu(void)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", router_pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    double cpu = 0;
    if (fgets(line, sizeof(line), f)) {
        char *p = strrchr(line, ')');
        unsigned long ut = 0, st = 0;
        /* Fields after the command: state(3) ... utime(14) stime(15). */
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            cpu = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    fclose(f);
    return cpu;
}

static long router_rss_kb(void)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", router_pid);
    FILE *f = fopen(path, "r");
    long kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static void fill(pair_t *p)
{
    while (!comp_is_full(p->src) && comp_is_ready(p->src))
        comp_send_raw(p->src, p->batch->data, p->batch->len);
}

static void on_src_drain(comp_t *c)
{
    fill(comp_data(c));
}

static void on_dst_route(comp_t *c, elem_t *route, const xstream_raw_t *raw)
{
    pair_t *p = comp_data(c);
    p->received++;
}

static void report(void)
{
    double elapsed = (double)(uv_hrtime() - t_start) / 1e9;
    unsigned long n = total_received() - count_start;
    printf("pairs %d, payload %zu bytes, %.1f s: %lu packets, %.0f packets/s\n", npairs,
           payload_bytes, elapsed, n, (double)n / elapsed);
    if (router_pid > 0) {
        double cpu = router_cpu() - cpu_start;
        printf("router: cpu %.0f%% of one core, %.2f us/packet; rss %ld kB at start, "
               "%ld kB max, %ld kB at end\n",
               100.0 * cpu / elapsed, n ? cpu * 1e6 / (double)n : 0.0, rss_first_kb, rss_max_kb,
               router_rss_kb());
    }
    fflush(stdout);
}

static void on_tick(uv_timer_t *t)
{
    ticks++;
    if (router_pid > 0) {
        long rss = router_rss_kb();
        if (rss > rss_max_kb) rss_max_kb = rss;
    }
    if (!is_measuring && ticks == 4) { /* one second of warm-up */
        is_measuring = true;
        t_start = uv_hrtime();
        count_start = total_received();
        cpu_start = router_pid > 0 ? router_cpu() : 0;
        rss_first_kb = rss_max_kb = router_pid > 0 ? router_rss_kb() : 0;
        return;
    }
    if (is_measuring && (double)(uv_hrtime() - t_start) / 1e9 >= seconds) {
        report();
        uv_timer_stop(&tick);
        uv_close((uv_handle_t *)&tick, NULL);
        for (int i = 0; i < npairs; i++) {
            comp_free(pairs[i].src);
            comp_free(pairs[i].dst);
        }
    }
}

static void on_ready(comp_t *c)
{
    if (++nready < 2 * npairs) return;
    for (int i = 0; i < npairs; i++) fill(&pairs[i]);
    uv_timer_start(&tick, on_tick, 250, 250);
}

static void on_down(comp_t *c)
{
    fprintf(stderr, "bench: lost the router\n");
    exit(1);
}

static void make_batch(pair_t *p)
{
    buf_t b = BUF_INIT;
    char *body = malloc(payload_bytes + 1);
    if (!body) abort();
    memset(body, 'x', payload_bytes);
    body[payload_bytes] = '\0';
    for (int i = 0; i < BATCH; i++)
        buf_printf(&b,
                   "<route to='%s' from='%s' user='user%d@%s'><message xmlns='jabber:client' "
                   "to='user%d@%s' type='chat'><body>%s</body></message></route>",
                   p->dst_name, p->src_name, i, p->dst_name, i, p->dst_name, body);
    free(body);
    p->batch = rbuf_from_buf(&b);
    buf_free(&b);
}

int main(int argc, char **argv)
{
    const char *router = "127.0.0.1:5347", *user = "hearth", *password = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "r:u:p:s:P:n:b:")) != -1) {
        switch (opt) {
        case 'r': router = optarg; break;
        case 'u': user = optarg; break;
        case 'p': password = optarg; break;
        case 's': seconds = atof(optarg); break;
        case 'P': router_pid = atoi(optarg); break;
        case 'n': npairs = atoi(optarg); break;
        case 'b': payload_bytes = (size_t)atol(optarg); break;
        default: password = NULL; optind = argc + 1; break;
        }
    }
    if (!password || npairs < 1 || npairs > MAX_PAIRS || seconds <= 0) {
        fprintf(stderr, "usage: hearth-bench-router -r ADDR -p PASSWORD [-u USER] [-s SECONDS] "
                        "[-P ROUTER-PID] [-n PAIRS 1-%d] [-b PAYLOAD-BYTES]\n",
                MAX_PAIRS);
        return 2;
    }
    log_open("bench", "stderr", "warn");
    loop = uv_default_loop();
    uv_timer_init(loop, &tick);
    static const comp_cb_t src_cb = {.on_ready = on_ready, .on_down = on_down,
                                     .on_drain = on_src_drain};
    static const comp_cb_t dst_cb = {.on_ready = on_ready, .on_down = on_down,
                                     .on_route = on_dst_route};
    for (int i = 0; i < npairs; i++) {
        pair_t *p = &pairs[i];
        snprintf(p->src_name, sizeof(p->src_name), "src%d.bench", i);
        snprintf(p->dst_name, sizeof(p->dst_name), "dst%d.bench", i);
        make_batch(p);
        comp_opts_t opts = {.router = router, .user = user, .password = password,
                            .id = p->src_name, .shallow = true};
        p->src = comp_new(loop, &opts, &src_cb, p);
        opts.id = p->dst_name;
        p->dst = comp_new(loop, &opts, &dst_cb, p);
        comp_bind(p->src, p->src_name, 0);
        comp_bind(p->dst, p->dst_name, 0);
        comp_start(p->src);
        comp_start(p->dst);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    for (int i = 0; i < npairs; i++) rbuf_unref(pairs[i].batch);
    return 0;
}
