/* test_conn.c — conn.h and tls.h over real sockets on 127.0.0.1 (port 0)
 * and Unix sockets in a temporary directory: echo, gathered writes, flow
 * control, STARTTLS with a certificate from tls_make_selfsigned, channel
 * binding, and every way a connection ends.
 *
 * Each test runs its own loop to the end and checks that the loop closes
 * clean (every handle, including conn.c's per-loop flusher, released).
 *
 * tls-unique needs TLS 1.2, and the session's priorities are not in the
 * API: the test runs itself again with GNUTLS_SYSTEM_PRIORITY_FILE pointing
 * at a GnuTLS configuration that disables TLS 1.3, and reads the result. */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "conn.h"
#include "tap.h"
#include "tls.h"

/* ---- harness -------------------------------------------------------------- */

typedef struct side side_t;
struct side {
    const char *name;
    conn_t *c;
    buf_t got;       /* bytes read, when kept */
    bool keep;       /* keep bytes in got */
    size_t rx_total; /* bytes read */
    bool rx_bad;     /* pattern mismatch */
    int reads;
    int closes, connects, connect_status, tls_calls, tls_status, drains;
    int order; /* 1: on_connect came before on_close */
    bool reason_is_null;
    char reason[96];
    char peer[64];
    bool is_local;
    bool echo;
    bool tls_up;
    void (*read_hook)(side_t *s, const char *data, size_t len);
    void (*tls_hook)(side_t *s);
    void (*connect_hook)(side_t *s);
    void (*drain_hook)(side_t *s);
};

static uv_loop_t loop;
static uv_timer_t guard;
static bool timed_out;
static side_t srv, cli;
static listener_t lst;
static bool lst_open;
static bool accept_tls; /* the server starts TLS at accept (direct TLS) */
static tls_ctx_t *server_ctx, *client_ctx, *verifying_ctx;
static char tmpdir[64], cert_file[96], key_file[96];
static char addr[128];

static void side_init(side_t *s, const char *name)
{
    if (s->name) buf_free(&s->got); /* the previous test's */
    memset(s, 0, sizeof *s);
    s->name = name;
    buf_init(&s->got);
    s->keep = true;
}

static void on_read(conn_t *c, const char *data, size_t len)
{
    side_t *s = conn_data(c);
    s->reads++;
    s->rx_total += len;
    if (s->keep) buf_append(&s->got, data, len);
    if (s->echo) conn_write(c, data, len);
    if (s->read_hook) s->read_hook(s, data, len);
}

static void on_drain(conn_t *c)
{
    side_t *s = conn_data(c);
    s->drains++;
    if (s->drain_hook) s->drain_hook(s);
}

static void on_connect(conn_t *c, int status)
{
    side_t *s = conn_data(c);
    s->connects++;
    s->connect_status = status;
    if (s->closes == 0) s->order = 1;
    if (status == 0 && s->connect_hook) s->connect_hook(s);
}

static void on_tls(conn_t *c, int status)
{
    side_t *s = conn_data(c);
    s->tls_calls++;
    s->tls_status = status;
    s->tls_up = status == 0;
    if (status == 0 && s->tls_hook) s->tls_hook(s);
}

static void on_close(conn_t *c, const char *reason)
{
    side_t *s = conn_data(c);
    s->closes++;
    s->reason_is_null = reason == NULL;
    snprintf(s->reason, sizeof s->reason, "%s", reason ? reason : "");
    s->c = NULL;
}

static const conn_cb_t callbacks = {
    .on_read = on_read,
    .on_drain = on_drain,
    .on_connect = on_connect,
    .on_tls = on_tls,
    .on_close = on_close,
};

static void close_listener(void)
{
    if (!lst_open) return;
    conn_listener_close(&lst);
    lst_open = false;
}

/* One connection per test: accept it and stop listening. */
static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) return;
    srv.c = conn_accept(server, &callbacks, &srv);
    if (srv.c) {
        snprintf(srv.peer, sizeof srv.peer, "%s", conn_peer(srv.c));
        srv.is_local = conn_is_local(srv.c);
        if (accept_tls) conn_starttls(srv.c, server_ctx, true, NULL);
    }
    close_listener();
}

static void on_guard(uv_timer_t *t)
{
    timed_out = true;
    printf("# timeout: aborting the test's connections\n");
    if (srv.c) conn_abort(srv.c);
    if (cli.c) conn_abort(cli.c);
    close_listener();
}

static void loop_start(void)
{
    uv_loop_init(&loop);
    side_init(&srv, "server");
    side_init(&cli, "client");
    timed_out = false;
    accept_tls = false;
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, on_guard, 15000, 0);
    uv_unref((uv_handle_t *)&guard);
}

static void loop_finish(const char *test)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ok(!timed_out, "%s: finished in time", test);
    is_int(uv_loop_close(&loop), 0, "loop closes with every handle released");
}

/* Listen on 127.0.0.1, port 0; addr gets the real address. */
static int listen_tcp(const char *host)
{
    char any[96];
    snprintf(any, sizeof any, host[0] == ':' ? "[%s]:0" : "%s:0", host);
    int rc = conn_listen(&loop, &lst, any, false, on_connection);
    if (rc < 0) return rc;
    lst_open = true;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&lst.h.tcp, (struct sockaddr *)&ss, &len);
    int port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    snprintf(addr, sizeof addr, host[0] == ':' ? "[%s]:%d" : "%s:%d", host, port);
    return 0;
}

static int listen_unix(const char *name)
{
    snprintf(addr, sizeof addr, "unix:%s/%s", tmpdir, name);
    int rc = conn_listen(&loop, &lst, addr, false, on_connection);
    if (rc == 0) lst_open = true;
    return rc;
}

static bool got_has(const side_t *s, const char *what)
{
    return s->got.len >= strlen(what) && memmem(s->got.data, s->got.len, what, strlen(what));
}

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 131 + (i >> 12)) & 0xff);
}

static void check_pattern(side_t *s, const char *data, size_t len)
{
    size_t base = s->rx_total - len;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] != pattern(base + i)) s->rx_bad = true;
}

static void write_pattern(conn_t *c, size_t from, size_t len)
{
    char chunk[16384];
    while (len > 0) {
        size_t n = len < sizeof chunk ? len : sizeof chunk;
        /* cppcheck-suppress knownConditionTrueFalse */
        for (size_t i = 0; i < n; i++)
            chunk[i] = (char)pattern(from + i);
        conn_write(c, chunk, n);
        from += n;
        len -= n;
    }
}

/* ---- echo ------------------------------------------------------------------ */

static void client_sends_hello(side_t *s)
{
    conn_write(s->c, "hello", 5);
}

static void client_closes_after_hello(side_t *s, const char *data, size_t len)
{
    if (got_has(s, "hello")) conn_close(s->c);
}

/* source: connect from that local address (conn_connect_from), or NULL. */
static void echo_test(const char *what, const char *expect_peer_prefix, const char *source)
{
    char name[64];
    srv.echo = true;
    cli.connect_hook = client_sends_hello;
    cli.read_hook = client_closes_after_hello;
    char target[128];
    snprintf(target, sizeof target, "%s", addr);
    cli.c = source ? conn_connect_from(&loop, target, source, &callbacks, &cli)
                   : conn_connect(&loop, target, &callbacks, &cli);
    ok(cli.c != NULL, "%s: conn_connect returns a connection", what);
    if (cli.c) {
        ok(strcmp(conn_peer(cli.c), strncmp(target, "unix:", 5) == 0 ? "unix" : target) == 0,
           "%s: client's peer is '%s' (%s)", what, conn_peer(cli.c), target);
        ok(conn_loop(cli.c) == &loop, "%s: conn_loop", what);
    }
    snprintf(name, sizeof name, "%s", what);
    loop_finish(name);
    is_int(cli.connects, 1, "on_connect called once");
    is_int(cli.connect_status, 0, "connected");
    is_int(cli.got.len, 5, "echo came back whole");
    ok(got_has(&cli, "hello"), "%s: echo is 'hello'", what);
    ok(strncmp(srv.peer, expect_peer_prefix, strlen(expect_peer_prefix)) == 0,
       "%s: server's peer '%s' starts with '%s'", what, srv.peer, expect_peer_prefix);
    ok(srv.is_local, "%s: peer is local", what);
    is_int(cli.closes, 1, "client's on_close once");
    is_int(srv.closes, 1, "server's on_close once");
    ok(cli.reason_is_null, "%s: reason NULL after conn_close (got '%s')", what, cli.reason);
    is_str(srv.reason, "peer closed", "server sees the peer close");
}

static void echo_over_tcp(void)
{
    loop_start();
    is_int(listen_tcp("127.0.0.1"), 0, "listen on 127.0.0.1:0");
    echo_test("tcp", "127.0.0.1:", NULL);
}

static void echo_from_a_source_address(void)
{
    loop_start();
    is_int(listen_tcp("127.0.0.1"), 0, "listen on 127.0.0.1:0");
    echo_test("tcp from 127.0.0.2", "127.0.0.2:", "127.0.0.2");
    ok(conn_connect_from(&loop, "127.0.0.1:1", "not-an-ip", &callbacks, &cli) == NULL,
       "a source that is not an IP address is refused");
}

static void echo_over_unix_socket(void)
{
    loop_start();
    is_int(listen_unix("echo.sock"), 0, "listen on a Unix socket");
    echo_test("unix", "unix", NULL);
    struct stat st;
    ok(stat(addr + 5, &st) < 0 && errno == ENOENT, "closing the listener removes the socket file");
}

static void echo_over_ipv6(void)
{
    loop_start();
    if (listen_tcp("::1") < 0) {
        ok(1, "# SKIP no IPv6 loopback here");
        loop_finish("ipv6 skipped");
        return;
    }
    echo_test("ipv6", "[::1]:", NULL);
}

/* ---- many small writes ------------------------------------------------------ */

static buf_t expected_lines;
static size_t queued_after_writes;

static void write_10000_lines(side_t *s)
{
    char line[16];
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(line, sizeof line, "%05d\n", i);
        conn_write(s->c, line, (size_t)n);
    }
    queued_after_writes = conn_queued(s->c);
    conn_close(s->c);
}

static void many_small_writes_arrive_in_order(void)
{
    loop_start();
    buf_init(&expected_lines);
    for (int i = 0; i < 10000; i++)
        buf_printf(&expected_lines, "%05d\n", i);
    listen_tcp("127.0.0.1");
    cli.connect_hook = write_10000_lines;
    cli.c = conn_connect(&loop, addr, &callbacks, &cli);
    loop_finish("10,000 small writes");
    is_int(queued_after_writes, 60000, "writes are queued, not sent, within the loop turn");
    is_int(srv.got.len, expected_lines.len, "all bytes arrive");
    ok(srv.got.len == expected_lines.len &&
           memcmp(srv.got.data, expected_lines.data, expected_lines.len) == 0,
       "10,000 writes arrive intact and in order");
    is_str(srv.reason, "peer closed", "then EOF");
    buf_free(&expected_lines);
}

/* ---- flow control ------------------------------------------------------------ */

#define FLOW_LIMIT (64 * 1024)
static uv_idle_t pump;
static uv_timer_t hold_timer;
static size_t sent_total;
static bool full_seen, drain_while_paused, still_full_after_wait;
static size_t queued_at_drain;

static int drains_at_full;
static bool resumed;

static void on_hold_over(uv_timer_t *t)
{
    still_full_after_wait = cli.c && conn_is_full(cli.c);
    drain_while_paused = cli.drains > drains_at_full;
    resumed = true;
    if (srv.c) conn_resume(srv.c);
    uv_close((uv_handle_t *)t, NULL);
}

/* Keep the queue over the limit until the kernel's buffers are full too
 * (the reader is paused): then the queue stays full from one turn to the
 * next. Hold it there a while before the reader resumes. */
static void on_pump(uv_idle_t *idle)
{
    static int turns_full;
    if (!cli.c) {
        uv_close((uv_handle_t *)idle, NULL);
        return;
    }
    if (conn_is_full(cli.c)) {
        static uint64_t full_since;
        if (turns_full++ == 0) full_since = uv_now(&loop);
        if (turns_full >= 20 && uv_now(&loop) - full_since >= 50) {
            full_seen = true;
            drains_at_full = cli.drains;
            uv_close((uv_handle_t *)idle, NULL);
            uv_timer_init(&loop, &hold_timer);
            uv_timer_start(&hold_timer, on_hold_over, 200, 0);
        }
        return;
    }
    turns_full = 0;
    while (!conn_is_full(cli.c)) {
        write_pattern(cli.c, sent_total, 16384);
        sent_total += 16384;
    }
}

static void flow_start(side_t *s)
{
    conn_set_write_limit(s->c, FLOW_LIMIT);
    uv_idle_init(&loop, &pump);
    uv_idle_start(&pump, on_pump);
}

static void flow_drained(side_t *s)
{
    if (!resumed) return; /* the kernel took a share while we filled it */
    queued_at_drain = conn_queued(s->c);
    conn_close(s->c);
}

static void flow_reader(side_t *s, const char *data, size_t len)
{
    check_pattern(s, data, len);
}

static void flow_pause_on_accept(uv_stream_t *server, int status)
{
    on_connection(server, status);
    if (srv.c) conn_pause(srv.c);
}

static void full_queue_drains_when_reader_resumes(void)
{
    loop_start();
    conn_listen(&loop, &lst, "127.0.0.1:0", false, flow_pause_on_accept);
    lst_open = true;
    struct sockaddr_in sin;
    int len = sizeof sin;
    uv_tcp_getsockname(&lst.h.tcp, (struct sockaddr *)&sin, &len);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sin.sin_port));
    srv.keep = false;
    srv.read_hook = flow_reader;
    cli.connect_hook = flow_start;
    cli.drain_hook = flow_drained;
    sent_total = 0;
    full_seen = drain_while_paused = still_full_after_wait = resumed = false;
    drains_at_full = 0;
    cli.c = conn_connect(&loop, addr, &callbacks, &cli);
    loop_finish("flow control");
    ok(full_seen, "conn_is_full once the paused peer stops taking data");
    ok(still_full_after_wait, "still full while the peer stays paused");
    ok(!drain_while_paused, "no on_drain while the peer is paused");
    is_int(cli.drains - drains_at_full, 1, "on_drain once after the peer resumes");
    ok(queued_at_drain <= FLOW_LIMIT / 2, "on_drain at half the limit (queued %zu)",
       queued_at_drain);
    is_int(srv.rx_total, sent_total, "every byte arrives");
    ok(!srv.rx_bad, "in order and intact");
    is_int(srv.closes, 1, "server closed once");
    is_str(srv.reason, "peer closed", "server sees EOF after the last byte");
}

/* ---- close and abort ------------------------------------------------------- */

#define CLOSE_BYTES (3 * 1024 * 1024)

static void write_then_close(side_t *s)
{
    write_pattern(s->c, 0, CLOSE_BYTES);
    conn_close(s->c);
    conn_write(s->c, "late", 4); /* after conn_close: dropped */
    conn_close(s->c);            /* twice: harmless */
}

static void close_delivers_queued_data(void)
{
    loop_start();
    listen_tcp("127.0.0.1");
    srv.keep = false;
    srv.read_hook = flow_reader;
    cli.connect_hook = write_then_close;
    cli.c = conn_connect(&loop, addr, &callbacks, &cli);
    loop_finish("conn_close");
    is_int(srv.rx_total, CLOSE_BYTES, "conn_close: everything queued arrives before EOF");
    ok(!srv.rx_bad, "conn_close: intact, and nothing written after close");
    is_str(srv.reason, "peer closed", "conn_close: the peer sees EOF");
    is_int(cli.closes, 1, "conn_close: on_close once");
    ok(cli.reason_is_null, "conn_close: reason NULL");
}

static void write_then_abort(side_t *s)
{
    conn_write(s->c, "never sent", 10);
    conn_abort(s->c);
    conn_close(s->c); /* after abort, before on_close: harmless */
    conn_abort(s->c);
}

static void abort_drops_the_queue(void)
{
    loop_start();
    listen_tcp("127.0.0.1");
    cli.connect_hook = write_then_abort;
    cli.c = conn_connect(&loop, addr, &callbacks, &cli);
    loop_finish("conn_abort");
    is_int(cli.closes, 1, "conn_abort: on_close once");
    ok(cli.reason_is_null, "conn_abort: reason NULL");
    is_int(srv.got.len, 0, "conn_abort: queued bytes never sent");
    is_int(srv.closes, 1, "conn_abort: the peer is closed too");
    ok(!srv.reason_is_null, "conn_abort: the peer has a reason ('%s')", srv.reason);
}

/* ---- connect failures and addresses ---------------------------------------- */

static void failed_connect_reports_then_closes(void)
{
    loop_start();
    /* A bound port nobody listens on refuses connections. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&sin, sizeof sin);
    socklen_t len = sizeof sin;
    getsockname(fd, (struct sockaddr *)&sin, &len);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sin.sin_port));
    cli.c = conn_connect(&loop, addr, &callbacks, &cli);
    ok(cli.c != NULL, "connect to a closed port still returns a connection");
    loop_finish("failed connect");
    close(fd);
    is_int(cli.connects, 1, "failed connect: on_connect once");
    ok(cli.connect_status < 0, "failed connect: status %d (%s)", cli.connect_status,
       cli.connect_status < 0 ? uv_strerror(cli.connect_status) : "ok");
    is_int(cli.closes, 1, "failed connect: then on_close once");
    is_int(cli.order, 1, "failed connect: on_connect before on_close");
    ok(!cli.reason_is_null, "failed connect: a reason ('%s')", cli.reason);

    loop_start();
    char path[128];
    snprintf(path, sizeof path, "unix:%s/nobody.sock", tmpdir);
    cli.c = conn_connect(&loop, path, &callbacks, &cli);
    loop_finish("failed unix connect");
    ok(cli.connect_status < 0, "missing Unix socket: on_connect(%d)", cli.connect_status);
    is_int(cli.closes, 1, "missing Unix socket: on_close once");
}

static void addresses_are_checked(void)
{
    loop_start();
    static const char *const bad[] = {"nonsense",       "127.0.0.1",     "[::1:5222", "::1:5222",
                                      "localhost:5222", "1.2.3.4:99999", "1.2.3.4:",  "1.2.3.4:-1",
                                      "unix:",          "1.2.3.4:5x",    NULL};
    for (int i = 0; bad[i]; i++) {
        ok(conn_connect(&loop, bad[i], &callbacks, &cli) == NULL, "connect refuses '%s'", bad[i]);
        listener_t l = {.data = NULL};
        ok(conn_listen(&loop, &l, bad[i], false, on_connection) < 0, "listen refuses '%s'", bad[i]);
    }
    ok(conn_connect(&loop, NULL, &callbacks, &cli) == NULL, "connect refuses NULL");
    loop_finish("addresses");
}

static void reuseport_lets_two_listen(void)
{
    loop_start();
    listener_t a = {.data = &srv}, b = {.data = NULL}, c = {.data = NULL};
    is_int(conn_listen(&loop, &a, "127.0.0.1:0", true, on_connection), 0, "first reuseport listen");
    ok(a.data == &srv, "conn_listen keeps the listener's data");
    ok(a.h.tcp.data == &a, "server->data in on_conn is the listener");
    struct sockaddr_in sin;
    int len = sizeof sin;
    uv_tcp_getsockname(&a.h.tcp, (struct sockaddr *)&sin, &len);
    char same[64];
    snprintf(same, sizeof same, "127.0.0.1:%d", ntohs(sin.sin_port));
    is_int(conn_listen(&loop, &b, same, true, on_connection), 0,
           "second listen on the same port with SO_REUSEPORT");
    is_int(conn_listen(&loop, &c, same, false, on_connection), UV_EADDRINUSE,
           "without SO_REUSEPORT the port is taken");
    conn_listener_close(&a);
    conn_listener_close(&b);
    loop_finish("reuseport");
}

static void stale_unix_socket_is_replaced(void)
{
    loop_start();
    char path[100];
    snprintf(path, sizeof path, "%s/stale.sock", tmpdir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path) + 1);
    bind(fd, (struct sockaddr *)&sun, sizeof sun);
    close(fd); /* the file stays: a socket nobody answers */
    char a[160];
    snprintf(a, sizeof a, "unix:%s", path);
    listener_t l1 = {.data = NULL}, l2 = {.data = NULL};
    is_int(conn_listen(&loop, &l1, a, false, on_connection), 0, "stale socket file replaced");
    is_int(conn_listen(&loop, &l2, a, false, on_connection), UV_EADDRINUSE,
           "a live socket is not taken over");
    conn_listener_close(&l1);

    snprintf(path, sizeof path, "%s/regular", tmpdir);
    FILE *f = fopen(path, "w");
    fclose(f);
    snprintf(a, sizeof a, "unix:%s", path);
    ok(conn_listen(&loop, &l2, a, false, on_connection) < 0, "a regular file is not replaced");
    struct stat st;
    ok(stat(path, &st) == 0 && S_ISREG(st.st_mode), "... and is still there");
    unlink(path);
    loop_finish("stale socket");
}

/* ---- TLS ---------------------------------------------------------------------- */

static buf_t srv_cb, cli_cb;
static int srv_cb_rc, cli_cb_rc, cli_unique_rc;
static const char *cb_type = "tls-exporter";
static char client_clear[64], server_clear[64];

static void server_tls_up(side_t *s)
{
    srv_cb_rc = conn_channel_binding(s->c, cb_type, &srv_cb);
    conn_write(s->c, "welcome;", 8);
}

static void server_starttls_reader(side_t *s, const char *data, size_t len)
{
    if (conn_has_tls(s->c)) {
        if (s->tls_up && !s->echo) { /* the first TLS bytes: echo from now on */
            s->echo = true;
            conn_write(s->c, data, len);
        }
        return;
    }
    if (got_has(s, "STARTTLS\n")) {
        snprintf(server_clear, sizeof server_clear, "%.*s", (int)s->got.len, s->got.data);
        buf_reset(&s->got);
        conn_write(s->c, "PROCEED\n", 8);
        ok(conn_starttls(s->c, server_ctx, true, NULL) == 0, "server: conn_starttls");
        ok(conn_starttls(s->c, server_ctx, true, NULL) == -1, "server: a second starttls is -1");
    }
}

static void client_tls_up(side_t *s)
{
    cli_cb_rc = conn_channel_binding(s->c, cb_type, &cli_cb);
    buf_t tmp = BUF_INIT;
    buf_init(&tmp);
    cli_unique_rc = conn_channel_binding(s->c, "tls-unique", &tmp);
    buf_free(&tmp);
}

static void client_starttls_reader(side_t *s, const char *data, size_t len)
{
    if (!conn_has_tls(s->c)) {
        if (got_has(s, "PROCEED\n")) {
            snprintf(client_clear, sizeof client_clear, "%.*s", (int)s->got.len, s->got.data);
            buf_reset(&s->got);
            conn_starttls(s->c, verifying_ctx, false, "example.test");
            conn_write(s->c, "ping;", 5); /* queued: goes encrypted after the handshake */
        }
        return;
    }
    if (got_has(s, "welcome;ping;")) conn_close(s->c);
}

static void client_asks_starttls(side_t *s)
{
    conn_write(s->c, "STARTTLS\n", 9);
}

static void starttls_both_sides(const char *type, bool over_unix, size_t cb_len, bool is_tls13)
{
    loop_start();
    buf_init(&srv_cb);
    buf_init(&cli_cb);
    srv_cb_rc = cli_cb_rc = cli_unique_rc = 99;
    cb_type = type;
    client_clear[0] = server_clear[0] = 0;
    if (over_unix)
        listen_unix("tls.sock");
    else
        listen_tcp("127.0.0.1");
    srv.read_hook = server_starttls_reader;
    srv.tls_hook = server_tls_up;
    cli.read_hook = client_starttls_reader;
    cli.tls_hook = client_tls_up;
    cli.connect_hook = client_asks_starttls;
    cli.c = conn_connect(&loop, addr, &callbacks, &cli);
    loop_finish("STARTTLS");
    is_str(server_clear, "STARTTLS\n", "STARTTLS: server reads the request in the clear");
    is_str(client_clear, "PROCEED\n", "STARTTLS: client reads the answer in the clear");
    is_int(srv.tls_calls, 1, "STARTTLS: server's on_tls once");
    is_int(srv.tls_status, 0, "STARTTLS: server handshake done");
    is_int(cli.tls_calls, 1, "STARTTLS: client's on_tls once");
    is_int(cli.tls_status, 0, "STARTTLS: client handshake done (certificate verified)");
    ok(got_has(&srv, "ping;"), "STARTTLS: client -> server data after the handshake");
    ok(got_has(&cli, "welcome;ping;"), "STARTTLS: server -> client data after the handshake");
    is_int(srv_cb_rc, 0, "server: channel binding available");
    is_int(cli_cb_rc, 0, "client: channel binding available");
    is_int(cli_cb.len, cb_len, "channel binding length");
    ok(srv_cb.len == cli_cb.len && srv_cb.len > 0 &&
           memcmp(srv_cb.data, cli_cb.data, srv_cb.len) == 0,
       "channel binding (%s) equal on both sides", type);
    if (is_tls13)
        is_int(cli_unique_rc, -1, "tls-unique refused under TLS 1.3");
    else
        is_int(cli_unique_rc, 0, "tls-unique available under TLS 1.2");
    is_str(srv.reason, "peer closed", "STARTTLS: close_notify and EOF reach the server");
    is_int(srv.closes, 1, "server's on_close once");
    is_int(cli.closes, 1, "client's on_close once");
    buf_free(&srv_cb);
    buf_free(&cli_cb);
}

/* Raw observer: the client writes, starts TLS and writes again in one go;
 * the server (no TLS) must see the clear bytes, then a TLS record. */
static void clear_then_starttls(side_t *s)
{
    conn_write(s->c, "clear-before", 12);
    ok(conn_starttls(s->c, client_ctx, false, "example.test") == 0, "client: conn_starttls");
    ok(conn_has_tls(s->c), "conn_has_tls once starttls is called");
    conn_write(s->c, "secret", 6);
}

static void observer_reader(side_t *s, const char *data, size_t len)
{
    if (s->got.len >= 13) conn_abort(s->c);
}

static void plaintext_before_starttls_goes_first(void)
{
    loop_start();
    listen_tcp("127.0.0.1");
    srv.read_hook = observer_reader;
    cli.connect_hook = clear_then_starttls;
    cli.c = conn_connect(&loop, addr, &callbacks, &cli);
    loop_finish("clear before TLS");
    ok(srv.got.len >= 13 && memcmp(srv.got.data, "clear-before", 12) == 0,
       "bytes written before starttls arrive first, in the clear");
    ok(srv.got.len >= 13 && (unsigned char)srv.got.data[12] == 0x16,
       "then a TLS handshake record (0x%02x)",
       srv.got.len >= 13 ? (unsigned char)srv.got.data[12] : 0);
    ok(!got_has(&srv, "secret"), "bytes written after starttls never go in the clear");
    is_int(cli.tls_calls, 1, "handshake cut short: on_tls once");
    ok(cli.tls_status < 0, "handshake cut short: on_tls(%d)", cli.tls_status);
    is_int(cli.closes, 1, "handshake cut short: then on_close once");
}

/* Direct TLS (like port 5223), client verifying the name. */
static const char *direct_name;

static void direct_client_start(side_t *s)
{
    conn_starttls(s->c, verifying_ctx, false, direct_name);
}

static void direct_client_up(side_t *s)
{
    conn_close(s->c);
}

static void direct_tls(const char *name, bool expect_ok)
{
    loop_start();
    listen_tcp("127.0.0.1");
    accept_tls = true;
    direct_name = name;
    cli.connect_hook = direct_client_start;
    cli.tls_hook = direct_client_up;
    cli.c = conn_connect(&loop, addr, &callbacks, &cli);
    loop_finish(expect_ok ? "direct TLS" : "direct TLS, wrong name");
    is_int(cli.tls_calls, 1, "direct TLS: client's on_tls once");
    if (expect_ok) {
        is_int(cli.tls_status, 0, "certificate verifies for example.test");
    } else {
        ok(cli.tls_status < 0, "certificate refused for %s (%s)", name,
           cli.tls_status < 0 ? gnutls_strerror(cli.tls_status) : "accepted");
        ok(!cli.reason_is_null, "refused certificate: close reason '%s'", cli.reason);
        ok(srv.tls_calls == 0 || srv.tls_status < 0, "server's handshake did not succeed");
    }
    is_int(cli.closes, 1, "direct TLS: client's on_close once");
    is_int(srv.closes, 1, "direct TLS: server's on_close once");
}

/* Paused with TLS: records that arrive are not decrypted into on_read. */
static int reads_while_paused;
static bool is_srv_paused;
static uv_timer_t resume_timer, send_timer;
static int sends;

static void on_resume_timer(uv_timer_t *t)
{
    reads_while_paused = srv.reads - 1;
    is_srv_paused = false;
    conn_resume(srv.c);
    uv_close((uv_handle_t *)t, NULL);
}

static void paused_reader(side_t *s, const char *data, size_t len)
{
    if (s->reads == 1) {
        conn_pause(s->c);
        is_srv_paused = true;
        ok(conn_is_paused(s->c), "conn_is_paused");
        uv_timer_init(&loop, &resume_timer);
        uv_timer_start(&resume_timer, on_resume_timer, 150, 0);
    }
    if (got_has(s, "one;two;three;")) conn_close(s->c);
}

static void on_send_timer(uv_timer_t *t)
{
    static const char *const words[] = {"two;", "three;"};
    if (cli.c) conn_write(cli.c, words[sends], strlen(words[sends]));
    if (++sends == 2) uv_close((uv_handle_t *)t, NULL);
}

static void paused_client_up(side_t *s)
{
    conn_write(s->c, "one;", 4);
    sends = 0;
    uv_timer_init(&loop, &send_timer);
    uv_timer_start(&send_timer, on_send_timer, 20, 20);
}

static void tls_pause_holds_records(void)
{
    loop_start();
    listen_tcp("127.0.0.1");
    accept_tls = true;
    srv.read_hook = paused_reader;
    direct_name = "example.test";
    cli.connect_hook = direct_client_start;
    cli.tls_hook = paused_client_up;
    reads_while_paused = -1;
    cli.c = conn_connect(&loop, addr, &callbacks, &cli);
    loop_finish("TLS pause");
    is_int(reads_while_paused, 0, "TLS: nothing delivered while paused");
    ok(got_has(&srv, "one;two;three;"), "TLS: everything delivered after resume, in order");
    is_int(cli.closes, 1, "TLS pause: client closed once");
    is_str(cli.reason, "peer closed", "TLS pause: client sees the server close");
}

/* Client certificates (s2s, XEP-0178): both sides present the self-signed
 * example.test certificate and trust it (tls_ctx_trust); each then checks
 * the other's with conn_peer_verified. */
static tls_ctx_t *peer_ctx; /* the client's context in peer_certificates */
static int srv_verified, srv_verified_other, cli_verified;

static void peer_client_start(side_t *s)
{
    conn_set_alpn(s->c, "xmpp-server");
    conn_starttls(s->c, peer_ctx, false, "example.test");
}

static void peer_client_up(side_t *s)
{
    cli_verified = conn_peer_verified(s->c, "example.test");
    conn_write(s->c, "hi;", 3);
}

static void peer_server_up(side_t *s)
{
    srv_verified = conn_peer_verified(s->c, "example.test");
    srv_verified_other = conn_peer_verified(s->c, "other.test");
}

static void peer_server_reader(side_t *s, const char *data, size_t len)
{
    if (got_has(s, "hi;")) conn_close(s->c);
}

static void peer_certificates(tls_ctx_t *server, tls_ctx_t *client, bool client_has_cert)
{
    loop_start();
    listen_tcp("127.0.0.1");
    tls_ctx_t *saved = server_ctx;
    server_ctx = server; /* what on_connection starts TLS with */
    peer_ctx = client;
    accept_tls = true;
    srv_verified = srv_verified_other = cli_verified = -1;
    srv.tls_hook = peer_server_up;
    srv.read_hook = peer_server_reader;
    cli.connect_hook = peer_client_start;
    cli.tls_hook = peer_client_up;
    cli.c = conn_connect(&loop, addr, &callbacks, &cli);
    loop_finish("client certificates");
    server_ctx = saved;
    is_int(srv.tls_status, 0, "peer certificates: server handshake done");
    is_int(cli.tls_status, 0, "peer certificates: client handshake done");
    is_int(cli_verified, 1, "client: the server's certificate is valid for example.test");
    is_int(srv_verified, client_has_cert,
           client_has_cert ? "server: the client's certificate is valid for example.test"
                           : "server: no client certificate asked for, none verified");
    is_int(srv_verified_other, 0, "server: ... and not for other.test");
    ok(got_has(&srv, "hi;"), "peer certificates: data after the handshake");
}

static void client_certificates(void)
{
    char *err = NULL;
    const char *cas[] = {cert_file};
    tls_ctx_t *mutual = tls_ctx_new_server(cert_file, key_file, &err);
    ok(mutual && tls_ctx_trust(mutual, cas, 1, &err) == 0, "tls_ctx_trust (%s)",
       err ? err : "ok");
    free(err);
    err = NULL;
    const char *missing[] = {"/nonexistent/ca.pem"};
    int rc = tls_ctx_trust(mutual, missing, 1, &err);
    ok(rc < 0 && err, "tls_ctx_trust: a missing file (%s)", err ? err : "no message");
    free(err);
    err = NULL;
    ok(tls_ctx_add_key_pair(mutual, cert_file, key_file, &err) == 0,
       "tls_ctx_add_key_pair: a second key pair");
    free(err);
    peer_certificates(mutual, mutual, true);
    peer_certificates(server_ctx, mutual, false); /* a server that asks for none */
    tls_ctx_free(mutual);
}

/* ---- certificates ------------------------------------------------------------- */

static void selfsigned_certificate(void)
{
    char *err = NULL;
    is_int(tls_make_selfsigned("example.test", cert_file, key_file, &err), 0,
           "tls_make_selfsigned");
    if (err) printf("# %s\n", err);
    free(err);
    struct stat st;
    ok(stat(key_file, &st) == 0 && (st.st_mode & 0777) == 0600, "key file is mode 0600 (%o)",
       st.st_mode & 0777);

    gnutls_datum_t pem = {NULL, 0};
    gnutls_x509_crt_t crt;
    gnutls_x509_crt_init(&crt);
    ok(gnutls_load_file(cert_file, &pem) == 0 &&
           gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM) == 0,
       "certificate is PEM X.509");
    char cn[256];
    size_t cnlen = sizeof cn;
    gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &cnlen);
    is_str(cn, "example.test", "CN is the domain");
    char san[256];
    size_t sanlen = sizeof san;
    int type = gnutls_x509_crt_get_subject_alt_name(crt, 0, san, &sanlen, NULL);
    is_int(type, GNUTLS_SAN_DNSNAME, "subjectAltName is a DNS name");
    is_str(san, "example.test", "subjectAltName is the domain");
    ok(gnutls_x509_crt_check_hostname(crt, "example.test"), "certificate matches the domain");
    time_t years = (gnutls_x509_crt_get_expiration_time(crt) - time(NULL)) / (365 * 86400);
    is_int(years, 10, "valid for ten years");
    gnutls_x509_crt_deinit(crt);
    gnutls_free(pem.data);

    server_ctx = tls_ctx_new_server(cert_file, key_file, &err);
    ok(server_ctx != NULL, "server context from the new files (%s)", err ? err : "ok");
    free(err);
    client_ctx = tls_ctx_new_client(NULL, false, &err);
    ok(client_ctx != NULL, "client context with system CAs, no verification");
    free(err);
    verifying_ctx = tls_ctx_new_client(cert_file, true, &err);
    ok(verifying_ctx != NULL, "client context trusting the certificate, verifying");
    free(err);

    err = NULL;
    ok(tls_ctx_new_server("/nonexistent/cert.pem", key_file, &err) == NULL && err != NULL,
       "missing certificate: NULL and a message (%s)", err ? err : "none");
    free(err);
    err = NULL;
    ok(tls_ctx_new_client("/nonexistent/ca.pem", true, &err) == NULL && err != NULL,
       "missing CA file: NULL and a message");
    free(err);
    err = NULL;
    ok(tls_make_selfsigned("", cert_file, key_file, &err) < 0 && err, "empty domain refused");
    free(err);
}

/* ---- TLS 1.2, in a child process ------------------------------------------------ */

/* Child mode: STARTTLS under the forced TLS 1.2 configuration; print what
 * the parent checks. */
static int run_tls12_child(void)
{
    starttls_both_sides("tls-unique", false, 12, false);
    return 0;
}

static void tls_unique_under_tls12(char *self)
{
    char conf[160], cmd[512];
    snprintf(conf, sizeof conf, "%s/gnutls.conf", tmpdir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "[overrides]\ndisabled-version = tls1.3\n");
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "GNUTLS_SYSTEM_PRIORITY_FILE='%s' HEARTH_TEST_TLS12_DIR='%s' '%s' 2>&1", conf, tmpdir,
             self);
    FILE *p = popen(cmd, "r");
    char line[512];
    int child_ok = 0, child_fail = 0;
    bool equal = false, is_tls12 = false;
    while (p && fgets(line, sizeof line, p)) {
        bool passed = strncmp(line, "ok ", 3) == 0;
        if (passed) child_ok++;
        if (strncmp(line, "not ok ", 7) == 0) child_fail++;
        if (strncmp(line, "ok ", 3) != 0 && line[0] != '1') printf("# child: %s", line);
        if (passed && strstr(line, "channel binding (tls-unique) equal on both sides"))
            equal = true;
        if (passed && strstr(line, "tls-unique available under TLS 1.2")) is_tls12 = true;
    }
    int status = p ? pclose(p) : -1;
    ok(is_tls12, "child process: GnuTLS configured down to TLS 1.2");
    ok(equal, "TLS 1.2: tls-unique equal on both sides");
    ok(status == 0 && child_ok > 10 && child_fail == 0,
       "TLS 1.2: every STARTTLS check passes (%d ok, %d not ok)", child_ok, child_fail);
}

/* ---- tls_equal -------------------------------------------------------------------- */

static void secrets_compare_by_length_and_content(void)
{
    static const char key[] = "3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a";
    char other[sizeof key];
    memcpy(other, key, sizeof key);
    ok(tls_equal(key, 64, other, 64), "tls_equal: the same 64 bytes are equal");
    ok(tls_equal("", 0, "x", 0), "tls_equal: two empty strings are equal");
    other[0] = 'x';
    ok(!tls_equal(key, 64, other, 64), "tls_equal: a difference in the first byte");
    other[0] = key[0];
    other[63] = 'x';
    ok(!tls_equal(key, 64, other, 64), "tls_equal: a difference in the last byte");
    ok(!tls_equal(key, 64, key, 63), "tls_equal: a prefix is not equal");
    ok(!tls_equal(key, 63, key, 64), "tls_equal: nor is a longer string");
    ok(!tls_equal("a\0b", 3, "a\0c", 3), "tls_equal: bytes after a NUL count");
    ok(tls_equal("a\0b", 3, "a\0b", 3), "tls_equal: and are equal when they are");
}

/* ---- main ---------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    const char *child_dir = getenv("HEARTH_TEST_TLS12_DIR");
    if (child_dir) {
        snprintf(tmpdir, sizeof tmpdir, "%s", child_dir);
        snprintf(cert_file, sizeof cert_file, "%s/cert.pem", tmpdir);
        snprintf(key_file, sizeof key_file, "%s/key.pem", tmpdir);
        server_ctx = tls_ctx_new_server(cert_file, key_file, NULL);
        verifying_ctx = tls_ctx_new_client(cert_file, true, NULL);
        run_tls12_child();
        buf_free(&srv.got);
        buf_free(&cli.got);
        tls_ctx_free(server_ctx);
        tls_ctx_free(verifying_ctx);
        return done_testing();
    }

    snprintf(tmpdir, sizeof tmpdir, "/tmp/hearth-conn-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(cert_file, sizeof cert_file, "%s/cert.pem", tmpdir);
    snprintf(key_file, sizeof key_file, "%s/key.pem", tmpdir);

    echo_over_tcp();
    echo_from_a_source_address();
    echo_over_unix_socket();
    echo_over_ipv6();
    many_small_writes_arrive_in_order();
    full_queue_drains_when_reader_resumes();
    close_delivers_queued_data();
    abort_drops_the_queue();
    failed_connect_reports_then_closes();
    addresses_are_checked();
    reuseport_lets_two_listen();
    stale_unix_socket_is_replaced();

    secrets_compare_by_length_and_content();
    selfsigned_certificate();
    if (server_ctx && client_ctx && verifying_ctx) {
        starttls_both_sides("tls-exporter", false, 32, true);
        starttls_both_sides("tls-exporter", true, 32, true);
        plaintext_before_starttls_goes_first();
        direct_tls("example.test", true);
        direct_tls("wrong.test", false);
        tls_pause_holds_records();
        client_certificates();
        tls_unique_under_tls12(argv[0]);
    }
    tls_ctx_free(server_ctx);
    tls_ctx_free(client_ctx);
    tls_ctx_free(verifying_ctx);

    char path[160];
    static const char *const files[] = {"cert.pem", "key.pem", "gnutls.conf"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    buf_free(&srv.got);
    buf_free(&cli.got);
    return done_testing();
}
