/* hearth-bench-floor — what a chain of processes costs on this machine when
 * they do nothing but pass messages on: the floor under the latency and
 * light-load figures of run-c2s-bench.
 *
 *   hearth-bench-floor [-h HOPS] [-r RATE] [-s SECONDS] [-b BYTES]
 *
 * HOPS relay processes [5] are linked in a line by TCP over loopback, as
 * Hearth's daemons are; each one runs a libuv loop that reads what arrives
 * and writes it to the next (one read and one write per wake-up, as the
 * daemons do at a light load), with no parsing and no other work. This
 * process writes messages of BYTES bytes [300] into the first, each in its
 * own write(), at a steady RATE per second [1000], evenly spaced (pace.h),
 * for SECONDS [10] after a one-second warm-up, and reads them back from
 * the last. A chat message
 * through Hearth makes five such hops (c2s, router, sm, router, c2s).
 *
 * Prints, after the run: the relays' CPU (user + system, from wait4) per
 * message and per hop, their average and the costliest hop, and the
 * latency from write to read back: p50, p99, p99.9 and the largest. A rate
 * the chain cannot carry (the first link's socket buffer fills) stops the
 * run with an error: this measures a light load, not a saturated one. */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "pace.h"

#define MAX_HOPS 32
#define HIST_US 100000 /* latencies counted to the µs up to 100 ms */

static struct {
    int hops, rate, bytes;
    double seconds;
} opt = {5, 1000, 300, 10};

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* Two connected loopback TCP sockets, with TCP_NODELAY as every Hearth
 * socket has. */
static void tcp_pair(int fd[2])
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) < 0)
        die("listen");
    fd[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (fd[0] < 0 || connect(fd[0], (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    fd[1] = accept(l, NULL, NULL);
    if (fd[1] < 0) die("accept");
    close(l);
    int one = 1;
    setsockopt(fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- a relay -------------------------------------------------------------- */

static uv_tcp_t relay_in, relay_out;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char space[65536];
    b->base = space;
    b->len = sizeof space;
}

static void on_written(uv_write_t *w, int status)
{
    free(w);
}

static void on_relay_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    if (n < 0) {
        uv_close((uv_handle_t *)&relay_in, NULL);
        uv_close((uv_handle_t *)&relay_out, NULL);
        return;
    }
    uv_buf_t out = uv_buf_init(b->base, (unsigned)n);
    int done = uv_try_write((uv_stream_t *)&relay_out, &out, 1);
    if (done == n) return;
    if (done < 0) done = 0;
    /* The next hop is behind: queue the rest (rare at these rates). */
    uv_write_t *w = malloc(sizeof *w + (size_t)(n - done));
    if (!w) die("malloc");
    char *copy = (char *)(w + 1);
    memcpy(copy, b->base + done, (size_t)(n - done));
    uv_buf_t rest = uv_buf_init(copy, (unsigned)(n - done));
    uv_write(w, (uv_stream_t *)&relay_out, &rest, 1, on_written);
}

static void relay(int in, int out)
{
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_init(loop, &relay_in);
    uv_tcp_init(loop, &relay_out);
    if (uv_tcp_open(&relay_in, in) || uv_tcp_open(&relay_out, out)) die("uv_tcp_open");
    uv_read_start((uv_stream_t *)&relay_in, on_alloc, on_relay_read);
    uv_run(loop, UV_RUN_DEFAULT);
    _exit(0);
}

/* ---- the driver ----------------------------------------------------------- */

static uv_loop_t *loop;
static uv_tcp_t first, last;
static pace_t *pace;
static uint64_t t_warm, t_measure, t_end;
static unsigned long sent, received, measured;
static uint32_t *hist;
static uint64_t slowest_ns;
static char *message;
static char *pending; /* a message read in part */
static size_t pending_len;

static void record(uint64_t ns)
{
    uint64_t us = ns / 1000;
    hist[us < HIST_US ? us : HIST_US]++;
    if (ns > slowest_ns) slowest_ns = ns;
    measured++;
}

static double percentile(double p)
{
    unsigned long want = (unsigned long)(p * (double)measured), seen = 0;
    for (int i = 0; i <= HIST_US; i++) {
        seen += hist[i];
        if (seen > want) return i / 1000.0;
    }
    return HIST_US / 1000.0;
}

static void on_last_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    if (n < 0) {
        uv_close((uv_handle_t *)&last, NULL);
        return;
    }
    uint64_t now = uv_hrtime();
    const char *p = b->base;
    size_t left = (size_t)n;
    while (left > 0) {
        size_t take = (size_t)opt.bytes - pending_len;
        if (take > left) take = left;
        memcpy(pending + pending_len, p, take);
        pending_len += take;
        p += take;
        left -= take;
        if (pending_len < (size_t)opt.bytes) break;
        pending_len = 0;
        uint64_t at;
        memcpy(&at, pending, sizeof at);
        received++;
        if (at >= t_measure) record(now - at);
    }
}

static void stop(void)
{
    pace_stop(pace);
    /* The end of the first link ends each relay in turn. */
    uv_close((uv_handle_t *)&first, NULL);
}

/* The messages due, evenly spaced (pace.h): as many as the elapsed time
 * asks for. */
static void on_pace(void *ud)
{
    uint64_t now = uv_hrtime();
    if (now >= t_end) {
        stop();
        return;
    }
    double due = (double)opt.rate * (double)(now - t_warm) / 1e9;
    while ((double)sent < due) {
        uint64_t at = uv_hrtime();
        memcpy(message, &at, sizeof at);
        uv_buf_t b = uv_buf_init(message, (unsigned)opt.bytes);
        if (uv_try_write((uv_stream_t *)&first, &b, 1) != opt.bytes) {
            fprintf(stderr, "hearth-bench-floor: the first relay does not keep up\n");
            exit(1);
        }
        sent++;
    }
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "h:r:s:b:")) != -1) {
        switch (c) {
        case 'h':
            opt.hops = atoi(optarg);
            break;
        case 'r':
            opt.rate = atoi(optarg);
            break;
        case 's':
            opt.seconds = atof(optarg);
            break;
        case 'b':
            opt.bytes = atoi(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: hearth-bench-floor [-h HOPS] [-r RATE] [-s SECONDS] [-b BYTES]\n");
            return 2;
        }
    }
    if (opt.hops < 1 || opt.hops > MAX_HOPS || opt.rate < 1 || opt.seconds <= 0 ||
        opt.bytes < (int)sizeof(uint64_t) || opt.bytes > 65536) {
        fprintf(stderr, "hearth-bench-floor: 1-%d hops, a rate, seconds and 8-65536 bytes\n",
                MAX_HOPS);
        return 2;
    }
    int links[MAX_HOPS + 1][2];
    for (int i = 0; i <= opt.hops; i++)
        tcp_pair(links[i]);
    pid_t pids[MAX_HOPS];
    for (int i = 0; i < opt.hops; i++) {
        pids[i] = fork();
        if (pids[i] < 0) die("fork");
        if (pids[i] == 0) {
            /* Relay i reads link i and writes link i+1; nothing else. */
            for (int j = 0; j <= opt.hops; j++) {
                if (j != i + 1) close(links[j][0]);
                if (j != i) close(links[j][1]);
            }
            relay(links[i][1], links[i + 1][0]);
        }
    }
    for (int j = 0; j <= opt.hops; j++) {
        if (j != 0) close(links[j][0]);
        if (j != opt.hops) close(links[j][1]);
    }
    hist = calloc(HIST_US + 1, sizeof *hist);
    message = calloc(1, (size_t)opt.bytes);
    pending = malloc((size_t)opt.bytes);
    if (!hist || !message || !pending) die("calloc");
    loop = uv_default_loop();
    uv_tcp_init(loop, &first);
    uv_tcp_init(loop, &last);
    if (uv_tcp_open(&first, links[0][0]) || uv_tcp_open(&last, links[opt.hops][1]))
        die("uv_tcp_open");
    uv_read_start((uv_stream_t *)&last, on_alloc, on_last_read);
    t_warm = uv_hrtime();
    t_measure = t_warm + 1000000000ull;
    t_end = t_measure + (uint64_t)(opt.seconds * 1e9);
    pace = pace_start(loop, opt.rate, on_pace, NULL);
    uv_run(loop, UV_RUN_DEFAULT);

    double total_us = 0, costliest_us = 0;
    for (int i = 0; i < opt.hops; i++) {
        int status;
        struct rusage ru;
        if (wait4(pids[i], &status, 0, &ru) < 0) die("wait4");
        double us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
        total_us += us;
        if (us > costliest_us) costliest_us = us;
    }
    if (received != sent) {
        fprintf(stderr, "hearth-bench-floor: %lu messages sent, %lu came back\n", sent, received);
        return 1;
    }
    printf("floor: %d hops, %d messages/s, %lu messages: relays' CPU %.2f us per message "
           "(%.2f us per hop, the costliest hop %.2f us); latency p50 %.3f ms p99 %.3f ms "
           "p99.9 %.3f ms max %.3f ms\n",
           opt.hops, opt.rate, sent, total_us / (double)sent, total_us / (double)sent / opt.hops,
           costliest_us / (double)sent, percentile(0.50), percentile(0.99), percentile(0.999),
           (double)slowest_ns / 1e6);
    return 0;
}
