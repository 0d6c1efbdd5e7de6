/* hearth-bench-c2s — the client load generator: many real XMPP clients
 * against a running Hearth, measuring what issue 3's targets name.
 *
 *   hearth-bench-c2s [-d DOMAIN] users N [PREFIX]   SQL that creates bench accounts
 *   hearth-bench-c2s [options] login|chat|rate|idle
 *
 * Options:
 *   -a HOST:PORT  c2s address (127.0.0.1:5222)     -d DOMAIN  (localhost)
 *   -A HOST:PORT  chat, rate: the second client of every pair logs in here,
 *   -D DOMAIN     to this domain (another server; then every message
 *                 crosses federation). Both or neither.
 *   -n N          clients (login, idle) or pairs (chat, rate)      [100]
 *   -c N          logins in progress at once, per worker            [64]
 *   -w N          chat: messages in flight per client               [16]
 *   -r N          rate: messages per second, all pairs together   [5000]
 *   -s SECONDS    chat, rate: how long to measure; idle: how long to hold [10]
 *   -t            STARTTLS (default: plain TCP; the server must allow it)
 *   -j N          worker processes (each holds its share of clients)  [1]
 *   -S IP,IP,...  source addresses, one per worker in turn (127.0.0.x)
 *   -p PREFIX     account names PREFIX0..PREFIX(N-1)              [bench]
 *   -P PASSWORD   their password                                  [bench]
 *   -W            chat, rate: each message in its own write(), as a
 *                 client that sends as it types does (default: the
 *                 messages of a loop turn gathered in one write)
 *
 * Accounts: `users` prints INSERTs for the auth table, every account with
 * the same password and salt, so a client derives the SCRAM SaltedPassword
 * once and keeps it, as real clients do after their first login; the
 * server still runs a full SCRAM-SHA-256 exchange per login. Load them with
 * `sqlite3 STATEDIR/hearth.sqlite < users.sql` (or psql).
 *
 * login: connect, TLS if -t, SASL, bind, then close; prints sessions/s.
 * chat:  2N clients in N pairs; each keeps -w messages in flight to its
 *        partner's full JID for -s seconds, then waits for the stragglers;
 *        prints messages/s delivered, latency p50/p99 and how many were lost.
 * rate:  the same at a steady -r messages/s in all, evenly spaced
 *        (pace.h), for latency. Only the first client of each pair sends.
 * idle:  log in N clients and hold them for -s seconds; prints "idle N"
 *        once all are in, so a script can read the server's memory then.
 * With -A/-D the accounts of both servers are PREFIX0..PREFIX(2N-1), each
 * server's with its own domain (`-d DOMAIN users 2N` for each); client 2k
 * uses the first server, 2k+1 the second. The first message to the other
 * domain makes the servers connect and run dialback: warm them up with a
 * short run first, or that delay counts in the latency.
 * It stops by itself. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "pace.h"

#define SALT "aGVhcnRoLWJlbmNoLXNhbHQ="
#define ITERATIONS 4096
#define HIST_FINE 10000   /* 1 µs buckets up to 10 ms */
#define HIST_COARSE 10000 /* then 1 ms buckets up to 10 s */

typedef enum mode { MODE_LOGIN, MODE_CHAT, MODE_RATE, MODE_IDLE } mode_t_;

typedef enum cstate {
    C_CONNECTING, C_FEATURES, C_TLS, C_AUTH, C_RESTART, C_BIND, C_READY, C_DONE
} cstate_t;

typedef struct client {
    int index;
    conn_t *conn;
    xstream_t *xs;
    sasl_t *sasl;
    cstate_t state;
    struct client *partner;
    const char *addr, *domain; /* where this client logs in: -a/-d, or -A/-D */
    unsigned long sent, received;
    uint64_t t_connect;
    char jid[128];
} client_t;

/* What a worker reports to the parent (through a pipe). */
typedef struct report {
    unsigned long logins, failures, sent, received;
    double login_seconds, measure_seconds;
    uint32_t hist[HIST_FINE + HIST_COARSE];
} report_t;

static struct {
    mode_t_ mode;
    const char *addr, *domain, *prefix, *password;
    const char *partner_addr, *partner_domain; /* -A, -D: NULL for one server */
    int n, concurrency, window, rate, workers;
    double seconds;
    bool use_tls;
    bool each_write; /* -W */
    char *sources[64];
    int nsources;
} opt = {MODE_LOGIN, "127.0.0.1:5222", "localhost", "bench", "bench", NULL, NULL,
         100, 64, 16, 5000, 1, 10, false, false, {NULL}, 0};

static uv_loop_t *loop;
static client_t *clients;
static int nclients, first_index, next_to_start, in_progress, ready_count, done_count;
static const char *source;
static char salted_hex[65];
static tls_ctx_t *tls;
static report_t rep;
static uint64_t t_start, t_measure;
static bool is_measuring, is_stopping;
static uv_timer_t timer;
static pace_t *pace; /* rate */
static unsigned long rate_sent;
static int rate_next;

static void start_more(void);
static void client_finish(client_t *c);
static void settle(void);

static void record_latency(uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us < HIST_FINE)
        rep.hist[us]++;
    else if (us / 1000 < HIST_COARSE)
        rep.hist[HIST_FINE + us / 1000]++;
    else
        rep.hist[HIST_FINE + HIST_COARSE - 1]++;
}

static double percentile(const report_t *r, double p)
{
    unsigned long total = 0, seen = 0;
    for (int i = 0; i < HIST_FINE + HIST_COARSE; i++) total += r->hist[i];
    if (total == 0) return 0;
    unsigned long want = (unsigned long)(p * (double)total);
    for (int i = 0; i < HIST_FINE + HIST_COARSE; i++) {
        seen += r->hist[i];
        if (seen > want) return i < HIST_FINE ? i / 1000.0 : (double)(i - HIST_FINE);
    }
    return (double)HIST_COARSE;
}

static void send_str(client_t *c, const char *s)
{
    conn_write(c->conn, s, strlen(s));
}

static void send_header(client_t *c)
{
    char h[256];
    snprintf(h, sizeof h,
             "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>",
             c->domain);
    send_str(c, h);
}

static void send_message(client_t *c)
{
    char m[512];
    snprintf(m, sizeof m, "<message to='%s' type='chat' id='m%lu'><body>%llu</body></message>",
             c->partner->jid, c->sent, (unsigned long long)uv_hrtime());
    send_str(c, m);
    if (opt.each_write) conn_write_now(c->conn);
    c->sent++;
    if (is_measuring) rep.sent++;
}

/* chat: top the window up. */
static void fill_window(client_t *c)
{
    while (!is_stopping && c->state == C_READY && c->partner->state == C_READY &&
           c->sent - c->partner->received < (unsigned long)opt.window && !conn_is_full(c->conn))
        send_message(c);
}

static void on_message(client_t *c, elem_t *msg)
{
    c->received++;
    if (is_measuring) {
        rep.received++;
        const elem_t *body = elem_child(msg, NULL, "body");
        if (body) record_latency(uv_hrtime() - strtoull(elem_text(body), NULL, 10));
    }
    if (opt.mode == MODE_CHAT) fill_window(c->partner);
}

static void became_ready(client_t *c)
{
    c->state = C_READY;
    in_progress--;
    ready_count++;
    rep.logins++;
    if (opt.mode == MODE_LOGIN) {
        client_finish(c);
    } else if (opt.mode != MODE_IDLE) {
        /* Online as a client would be; messages go to full JIDs. */
        send_str(c, "<presence/>");
    }
    start_more();
    settle();
}

/* Every client is in (or failed to get in): start measuring. */
static void settle(void)
{
    if (t_measure || opt.mode == MODE_LOGIN || ready_count + (int)rep.failures < nclients)
        return;
    rep.login_seconds = (double)(uv_hrtime() - t_start) / 1e9;
    if (opt.mode == MODE_IDLE) {
        printf("idle %d\n", ready_count);
        fflush(stdout);
    }
    is_measuring = opt.mode != MODE_IDLE;
    t_measure = uv_hrtime();
    if (opt.mode == MODE_CHAT)
        for (int i = 0; i < nclients; i++) fill_window(&clients[i]);
}

static void fail_client(client_t *c, const char *why)
{
    if (c->state == C_DONE) return;
    if (c->state != C_READY) {
        in_progress--;
        rep.failures++;
        if (rep.failures <= 3) fprintf(stderr, "bench: %s: %s\n", c->jid, why);
    }
    client_finish(c);
    start_more();
    settle();
}

static void start_auth(client_t *c)
{
    char user[96];
    snprintf(user, sizeof user, "%s%d", opt.prefix, c->index);
    c->sasl = sasl_client_new_salted("SCRAM-SHA-256", user, salted_hex);
    char *out = NULL;
    if (sasl_step(c->sasl, "", &out) != SASL_CONTINUE) {
        free(out);
        fail_client(c, "SASL would not start");
        return;
    }
    send_str(c, "<auth xmlns='" NS_SASL "' mechanism='SCRAM-SHA-256'>");
    send_str(c, out);
    send_str(c, "</auth>");
    free(out);
    c->state = C_AUTH;
}

static void on_stanza(void *ud, elem_t *e, const xstream_raw_t *raw)
{
    client_t *c = ud;
    if (c->state == C_READY) {
        if (strcmp(e->name, "message") == 0) on_message(c, e);
        return;
    }
    if (elem_is(e, NS_STREAMS, "features")) {
        if (c->state == C_FEATURES) {
            if (opt.use_tls && !conn_has_tls(c->conn)) {
                send_str(c, "<starttls xmlns='" NS_TLS "'/>");
                c->state = C_TLS;
            } else {
                start_auth(c);
            }
        } else if (c->state == C_RESTART) {
            char iq[256];
            snprintf(iq, sizeof iq,
                     "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                     "<resource>bench</resource></bind></iq>");
            send_str(c, iq);
            c->state = C_BIND;
        }
    } else if (c->state == C_TLS && elem_is(e, NS_TLS, "proceed")) {
        xstream_reset(c->xs);
        conn_starttls(c->conn, tls, false, c->domain);
    } else if (c->state == C_AUTH && elem_is(e, NS_SASL, "challenge")) {
        char *out = NULL;
        if (sasl_step(c->sasl, elem_text(e), &out) != SASL_CONTINUE) {
            free(out);
            fail_client(c, "bad SCRAM challenge");
            return;
        }
        send_str(c, "<response xmlns='" NS_SASL "'>");
        send_str(c, out);
        send_str(c, "</response>");
        free(out);
    } else if (c->state == C_AUTH && elem_is(e, NS_SASL, "success")) {
        char *out = NULL;
        sasl_result_t r = sasl_step(c->sasl, elem_text(e), &out);
        free(out);
        if (r != SASL_DONE) {
            fail_client(c, "the server's SCRAM signature does not verify");
            return;
        }
        xstream_reset(c->xs);
        send_header(c);
        c->state = C_RESTART;
    } else if (c->state == C_BIND && strcmp(e->name, "iq") == 0) {
        const char *type = elem_attr(e, "type");
        if (!type || strcmp(type, "result") != 0) {
            fail_client(c, "bind refused");
            return;
        }
        const elem_t *bind = elem_first(e);
        const elem_t *jid = bind ? elem_child(bind, NULL, "jid") : NULL;
        if (jid) snprintf(c->jid, sizeof c->jid, "%s", elem_text(jid));
        became_ready(c);
    } else if (elem_is(e, NS_SASL, "failure")) {
        fail_client(c, "not authorized (are the accounts loaded? see `users`)");
    } else if (elem_is(e, NS_STREAMS, "error")) {
        const elem_t *cond = elem_first(e);
        fail_client(c, cond ? cond->name : "stream error");
    }
}

static void on_open(void *ud, elem_t *header, const char *default_ns)
{
}

static void on_close_stream(void *ud)
{
    client_t *c = ud;
    fail_client(c, "the server closed the stream");
}

static const xstream_cb_t stream_cb = {on_open, on_stanza, on_close_stream};

static void on_read(conn_t *conn, const char *data, size_t len)
{
    client_t *c = conn_data(conn);
    if (xstream_feed(c->xs, data, len) != XSTREAM_OK) fail_client(c, "bad XML from the server");
}

static void on_connect(conn_t *conn, int status)
{
    client_t *c = conn_data(conn);
    if (status < 0) return; /* on_close follows */
    send_header(c);
    c->state = C_FEATURES;
}

static void on_tls(conn_t *conn, int status)
{
    client_t *c = conn_data(conn);
    if (status == 0) {
        send_header(c);
        c->state = C_FEATURES;
    }
}

static void on_drain(conn_t *conn)
{
    client_t *c = conn_data(conn);
    if (opt.mode == MODE_CHAT) fill_window(c);
}

static void on_conn_close(conn_t *conn, const char *reason)
{
    client_t *c = conn_data(conn);
    c->conn = NULL;
    if (c->state != C_DONE) fail_client(c, reason ? reason : "closed");
    xstream_free(c->xs);
    c->xs = NULL;
    done_count++;
    if (done_count == nclients) {
        uv_timer_stop(&timer);
        uv_close((uv_handle_t *)&timer, NULL);
    }
}

static const conn_cb_t conn_cb = {
    .on_read = on_read,
    .on_drain = on_drain,
    .on_connect = on_connect,
    .on_tls = on_tls,
    .on_close = on_conn_close,
};

static void client_finish(client_t *c)
{
    if (c->state == C_DONE) return;
    c->state = C_DONE;
    if (c->sasl) {
        sasl_free(c->sasl);
        c->sasl = NULL;
    }
    if (c->conn) {
        send_str(c, "</stream:stream>");
        conn_close(c->conn);
    }
}

static void client_start(client_t *c)
{
    xstream_opts_t xo = {.max_stanza = 65536};
    c->xs = xstream_new(&xo, &stream_cb, c);
    c->state = C_CONNECTING;
    c->t_connect = uv_hrtime();
    in_progress++;
    c->conn = conn_connect_from(loop, c->addr, source, &conn_cb, c);
    if (!c->conn) {
        fprintf(stderr, "bench: bad address %s or source %s\n", c->addr, source ? source : "-");
        exit(2);
    }
}

static void start_more(void)
{
    while (next_to_start < nclients && in_progress < opt.concurrency && !is_stopping)
        client_start(&clients[next_to_start++]);
}

static void stop_all(void)
{
    is_stopping = true;
    if (pace) pace_stop(pace);
    pace = NULL;
    for (int i = 0; i < nclients; i++) client_finish(&clients[i]);
}

/* rate: the messages due, evenly spaced (pace.h). The share of this
 * worker, spread over its pairs in turn; as many as the elapsed time asks
 * for, so the rate holds when a wake-up comes late. */
static void send_due(void *ud)
{
    if (!is_measuring || is_stopping) return;
    double due = (double)opt.rate / opt.workers * (double)(uv_hrtime() - t_measure) / 1e9;
    for (int pairs = nclients / 2; (double)rate_sent < due && pairs > 0; rate_sent++) {
        client_t *c = &clients[2 * (rate_next++ % pairs)];
        if (c->state == C_READY && c->partner->state == C_READY) send_message(c);
    }
}

/* The run's clock: once a second, every 10 ms for rate. */
static void on_timer(uv_timer_t *t)
{
    uint64_t now = uv_hrtime();
    if (!t_measure && !is_stopping && now - t_start > 300 * (uint64_t)1000000000) {
        fprintf(stderr, "bench: logins did not finish in 300 s\n");
        stop_all();
        return;
    }
    bool measured = t_measure && (double)(now - t_measure) / 1e9 >= opt.seconds;
    if (!is_stopping && measured && opt.mode != MODE_LOGIN) {
        rep.measure_seconds = (double)(now - t_measure) / 1e9;
        is_stopping = true;
        /* Stragglers may still arrive: give them two seconds. */
        uv_timer_start(&timer, on_timer, 2000, 0);
        return;
    }
    if (is_stopping && opt.mode != MODE_LOGIN) {
        is_measuring = false;
        stop_all();
    }
}

/* One worker: clients [first, first + count) from source address src. */
static void run_worker(int first, int count, const char *src)
{
    loop = uv_default_loop();
    source = src;
    first_index = first;
    nclients = count;
    clients = calloc((size_t)count, sizeof *clients);
    if (!clients) abort();
    for (int i = 0; i < count; i++) {
        client_t *c = &clients[i];
        c->index = first + i;
        bool is_paired = opt.mode == MODE_CHAT || opt.mode == MODE_RATE;
        if (is_paired) c->partner = &clients[i ^ 1];
        /* Pairs start at even indexes: the odd one is the second client. */
        bool is_on_partner = is_paired && opt.partner_addr && c->index % 2 == 1;
        c->addr = is_on_partner ? opt.partner_addr : opt.addr;
        c->domain = is_on_partner ? opt.partner_domain : opt.domain;
        snprintf(c->jid, sizeof c->jid, "%s%d@%s/bench", opt.prefix, c->index, c->domain);
    }
    if (opt.use_tls) {
        char *err = NULL;
        tls = tls_ctx_new_client(NULL, false, &err);
        if (!tls) {
            fprintf(stderr, "bench: %s\n", err);
            exit(2);
        }
    }
    uv_timer_init(loop, &timer);
    uint64_t clock_ms = opt.mode == MODE_RATE ? 10 : 1000;
    uv_timer_start(&timer, on_timer, clock_ms, clock_ms);
    if (opt.mode == MODE_RATE) pace = pace_start(loop, (double)opt.rate / opt.workers, send_due, NULL);
    t_start = uv_hrtime();
    start_more();
    uv_run(loop, UV_RUN_DEFAULT);
    if (opt.mode == MODE_LOGIN) rep.login_seconds = (double)(uv_hrtime() - t_start) / 1e9;
    if (tls) tls_ctx_free(tls);
    free(clients);
}

static void print_report(const report_t *r, double wall)
{
    switch (opt.mode) {
    case MODE_LOGIN:
    case MODE_IDLE:
        printf("%s: %lu sessions in %.2f s: %.0f sessions/s, %lu failed\n",
               opt.mode == MODE_LOGIN ? "login" : "idle", r->logins, wall,
               wall > 0 ? (double)r->logins / wall : 0, r->failures);
        break;
    case MODE_CHAT:
    case MODE_RATE:
        printf("%s: %d pairs, %.1f s: %lu messages delivered, %.0f messages/s, "
               "latency p50 %.3f ms p99 %.3f ms, lost %ld, login failures %lu\n",
               opt.mode == MODE_CHAT ? "chat" : "rate", opt.n, r->measure_seconds, r->received,
               r->measure_seconds > 0 ? (double)r->received / r->measure_seconds : 0,
               percentile(r, 0.50), percentile(r, 0.99), (long)(r->sent - r->received),
               r->failures);
        break;
    }
}

static void print_users(int n, const char *prefix)
{
    scram_keys_t k1, k256;
    if (scram_keys_make("SHA-1", opt.password, SALT, ITERATIONS, &k1) < 0 ||
        scram_keys_make("SHA-256", opt.password, SALT, ITERATIONS, &k256) < 0)
        exit(1);
    printf("BEGIN;\n");
    for (int i = 0; i < n; i++)
        printf("INSERT INTO auth (owner, sha1_salt, sha1_iter, sha1_stored, sha1_server, "
               "sha256_salt, sha256_iter, sha256_stored, sha256_server, created) VALUES "
               "('%s%d@%s', '%s', %u, '%s', '%s', '%s', %u, '%s', '%s', 0);\n",
               prefix, i, opt.domain, k1.salt, k1.iterations, k1.stored_key, k1.server_key,
               k256.salt, k256.iterations, k256.stored_key, k256.server_key);
    printf("COMMIT;\n");
}

static void usage(void)
{
    fprintf(stderr, "usage: hearth-bench-c2s [-d DOMAIN] users N [PREFIX]\n"
                    "       hearth-bench-c2s [-a ADDR] [-d DOMAIN] [-A ADDR -D DOMAIN] [-n N]"
                    " [-c N] [-w N] [-r N]"
                    " [-s SECONDS] [-t] [-W] [-j N] [-S IP,...] [-p PREFIX] [-P PASSWORD]"
                    " login|chat|rate|idle\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int o;
    while ((o = getopt(argc, argv, "a:d:A:D:n:c:w:r:s:tWj:S:p:P:")) != -1) {
        switch (o) {
        case 'a': opt.addr = optarg; break;
        case 'd': opt.domain = optarg; break;
        case 'A': opt.partner_addr = optarg; break;
        case 'D': opt.partner_domain = optarg; break;
        case 'n': opt.n = atoi(optarg); break;
        case 'c': opt.concurrency = atoi(optarg); break;
        case 'w': opt.window = atoi(optarg); break;
        case 'r': opt.rate = atoi(optarg); break;
        case 's': opt.seconds = atof(optarg); break;
        case 't': opt.use_tls = true; break;
        case 'W': opt.each_write = true; break;
        case 'j': opt.workers = atoi(optarg); break;
        case 'S':
            for (char *ip = strtok(optarg, ","); ip && opt.nsources < 64; ip = strtok(NULL, ","))
                opt.sources[opt.nsources++] = ip;
            break;
        case 'p': opt.prefix = optarg; break;
        case 'P': opt.password = optarg; break;
        default: usage();
        }
    }
    if (optind >= argc) usage();
    const char *m = argv[optind];
    if (strcmp(m, "users") == 0) {
        if (optind + 1 >= argc) usage();
        print_users(atoi(argv[optind + 1]), optind + 2 < argc ? argv[optind + 2] : opt.prefix);
        return 0;
    }
    opt.mode = strcmp(m, "login") == 0  ? MODE_LOGIN
               : strcmp(m, "chat") == 0 ? MODE_CHAT
               : strcmp(m, "rate") == 0 ? MODE_RATE
               : strcmp(m, "idle") == 0 ? MODE_IDLE
                                        : (usage(), MODE_LOGIN);
    if (opt.n < 1 || opt.workers < 1 || opt.workers > 64 || opt.concurrency < 1 || opt.window < 1)
        usage();
    if (!opt.partner_addr != !opt.partner_domain ||
        (opt.partner_addr && opt.mode != MODE_CHAT && opt.mode != MODE_RATE))
        usage();
    log_open("bench", "stderr", "error");
    if (scram_salted_password("SHA-256", opt.password, SALT, ITERATIONS, salted_hex,
                              sizeof salted_hex) < 0)
        return 1;

    /* chat and rate: n pairs = 2n clients, split by whole pairs. */
    int total = (opt.mode == MODE_CHAT || opt.mode == MODE_RATE) ? 2 * opt.n : opt.n;
    int unit = (opt.mode == MODE_CHAT || opt.mode == MODE_RATE) ? 2 : 1;
    int units = total / unit;
    int fds[64][2];
    pid_t pids[64];
    uint64_t t0 = uv_hrtime();
    for (int w = 0; w < opt.workers; w++) {
        int first = unit * (int)((long)units * w / opt.workers);
        int last = unit * (int)((long)units * (w + 1) / opt.workers);
        if (pipe(fds[w]) < 0) return 1;
        pids[w] = fork();
        if (pids[w] == 0) {
            close(fds[w][0]);
            run_worker(first, last - first,
                       opt.nsources ? opt.sources[w % opt.nsources] : NULL);
            ssize_t n = write(fds[w][1], &rep, sizeof rep);
            _exit(n == (ssize_t)sizeof rep ? 0 : 1);
        }
        close(fds[w][1]);
    }
    report_t total_rep;
    memset(&total_rep, 0, sizeof total_rep);
    int bad = 0;
    for (int w = 0; w < opt.workers; w++) {
        report_t r;
        size_t got = 0;
        while (got < sizeof r) {
            ssize_t n = read(fds[w][0], (char *)&r + got, sizeof r - got);
            if (n <= 0) break;
            got += (size_t)n;
        }
        int status;
        waitpid(pids[w], &status, 0);
        if (got != sizeof r) {
            bad++;
            continue;
        }
        total_rep.logins += r.logins;
        total_rep.failures += r.failures;
        total_rep.sent += r.sent;
        total_rep.received += r.received;
        if (r.measure_seconds > total_rep.measure_seconds)
            total_rep.measure_seconds = r.measure_seconds;
        if (r.login_seconds > total_rep.login_seconds) total_rep.login_seconds = r.login_seconds;
        for (int i = 0; i < HIST_FINE + HIST_COARSE; i++) total_rep.hist[i] += r.hist[i];
    }
    double wall = opt.mode == MODE_LOGIN ? (double)(uv_hrtime() - t0) / 1e9
                                         : total_rep.login_seconds;
    print_report(&total_rep, wall);
    if (bad) fprintf(stderr, "bench: %d workers died\n", bad);
    return bad || total_rep.failures ? 1 : 0;
}
