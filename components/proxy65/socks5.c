/* socks5.c — the SOCKS5 side of hearth-proxy65: the listener, each
 * client's handshake, and the limits that hold before activation. What an
 * activated connection reads goes to relay.c.
 *
 * XEP-0065 (§5.3.3, §6.3.3, §9.2) uses a subset of RFC 1928: the greeting
 * must offer method 0 (no authentication), which is the one selected; the
 * request must be CONNECT (CMD 1) with ATYP 3 (a domain name) whose
 * DST.ADDR is the SHA-1 of SID + requester JID + target JID in hex.
 * DST.PORT (0 by the XEP) is not checked; the success reply echoes
 * DST.ADDR and DST.PORT as BND.ADDR and BND.PORT (§6.3.3). What the XEP
 * leaves open, decided here:
 *   - a greeting without method 0 gets X'FF' (RFC 1928 §3) and is closed;
 *   - a command other than CONNECT gets REP 7; an address type other than
 *     3 gets REP 8; a DST.ADDR that is not 40 hex digits (either case,
 *     compared in lower case) gets REP 4: it names no stream;
 *   - a connection with the hash of a stream that has its two connections
 *     already, or is active, gets REP 2 (not allowed by ruleset): a
 *     StreamHost "allows only one Target to connect" (§9.1), so the first
 *     two connections of a hash are the pair and nobody can join or take
 *     over a stream later;
 *   - bytes sent before activation are read and dropped (§9.1: "ignore"),
 *     so that a closed connection is seen at once, and none is kept.
 * Error replies carry ATYP 1 and 0.0.0.0:0; the connection is closed
 * behind them. A connection that breaks the protocol otherwise (another
 * VER) is closed without a reply.
 *
 * Limits: beyond proxy65.max-connections a new connection is closed at
 * once, unread. A connection whose stream is not activated within
 * proxy65.idle-timeout of its accept (handshake included) is closed. The
 * connections waiting are one list in accept order, so their deadlines are
 * in order too, and one timer serves them all. */
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "proxy65.h"

enum {
    ST_GREETING, /* waiting for VER NMETHODS METHODS */
    ST_REQUEST,  /* waiting for VER CMD RSV ATYP DST.ADDR DST.PORT */
    ST_JOINED,   /* in a stream, not activated: input dropped */
    ST_ACTIVE,   /* relaying */
    ST_DONE,     /* refused: closing, input dropped */
};

/* RFC 1928 §6 reply codes. */
#define REP_OK 0
#define REP_NOT_ALLOWED 2
#define REP_HOST_UNREACHABLE 4
#define REP_COMMAND 7
#define REP_ADDRESS_TYPE 8

static struct {
    uv_loop_t *loop;
    p65_limits_t lim;
    listener_t listener;
    bool is_listening;
    uv_timer_t deadline_timer;
    peer_t *all;                   /* every connection */
    peer_t *waiting, *waiting_end; /* not yet activated, in accept order */
    int nconns;
} S;

static metric_gauge_t m_connections;
static metric_counter_t m_refused, m_timeouts;

/* ---- the list of connections waiting for activation ------------------- */

static void on_deadline(uv_timer_t *t);

static void wait_add(peer_t *p)
{
    p->deadline = uv_now(S.loop) + S.lim.idle_ms;
    p->wnext = NULL;
    p->wprev = S.waiting_end;
    if (S.waiting_end)
        S.waiting_end->wnext = p;
    else
        S.waiting = p;
    S.waiting_end = p;
    p->is_waiting = true;
    if (!uv_is_active((uv_handle_t *)&S.deadline_timer))
        uv_timer_start(&S.deadline_timer, on_deadline, S.lim.idle_ms, 0);
}

static void wait_remove(peer_t *p)
{
    if (!p->is_waiting) return;
    if (p->wprev)
        p->wprev->wnext = p->wnext;
    else
        S.waiting = p->wnext;
    if (p->wnext)
        p->wnext->wprev = p->wprev;
    else
        S.waiting_end = p->wprev;
    p->wprev = p->wnext = NULL;
    p->is_waiting = false;
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(S.loop);
    while (S.waiting && S.waiting->deadline <= now) {
        peer_t *p = S.waiting;
        wait_remove(p);
        log_info("proxy65: %s not activated within %llu ms: closed", conn_peer(p->conn),
                 (unsigned long long)S.lim.idle_ms);
        metric_inc(&m_timeouts);
        p->state = ST_DONE;
        conn_abort(p->conn);
    }
    if (S.waiting) uv_timer_start(&S.deadline_timer, on_deadline, S.waiting->deadline - now, 0);
}

void socks5_activated(peer_t *p)
{
    wait_remove(p);
    p->state = ST_ACTIVE;
}

/* ---- the handshake ------------------------------------------------------ */

static void refuse(peer_t *p, unsigned char rep)
{
    const unsigned char reply[10] = {5, rep, 0, 1, 0, 0, 0, 0, 0, 0};
    conn_write(p->conn, reply, sizeof reply);
    p->state = ST_DONE;
    conn_close(p->conn);
}

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* How many bytes of p->hs the greeting took: 0 for more needed, -1 when
 * the connection is refused or closed. */
static long parse_greeting(peer_t *p)
{
    if (p->hs_len < 2) return 0;
    if (p->hs[0] != 5) {
        log_info("proxy65: %s does not speak SOCKS5: closed", conn_peer(p->conn));
        p->state = ST_DONE;
        conn_abort(p->conn);
        return -1;
    }
    size_t n = p->hs[1];
    if (p->hs_len < 2 + n) return 0;
    bool has_none = memchr(p->hs + 2, 0, n) != NULL;
    const unsigned char reply[2] = {5, has_none ? 0 : 0xFF};
    conn_write(p->conn, reply, sizeof reply);
    if (!has_none) {
        p->state = ST_DONE;
        conn_close(p->conn);
        return -1;
    }
    p->state = ST_REQUEST;
    return (long)(2 + n);
}

static long parse_request(peer_t *p)
{
    const unsigned char *h = p->hs;
    if (p->hs_len < 4) return 0;
    if (h[0] != 5) {
        p->state = ST_DONE;
        conn_abort(p->conn);
        return -1;
    }
    if (h[1] != 1) {
        refuse(p, REP_COMMAND);
        return -1;
    }
    if (h[3] != 3) {
        refuse(p, REP_ADDRESS_TYPE);
        return -1;
    }
    if (p->hs_len < 5) return 0;
    size_t alen = h[4], total = 5 + alen + 2;
    if (p->hs_len < total) return 0;
    char hash[P65_HASH_LEN + 1];
    bool is_valid = alen == P65_HASH_LEN;
    for (size_t i = 0; is_valid && i < alen; i++) {
        is_valid = is_hex(h[5 + i]);
        hash[i] = (char)(h[5 + i] >= 'A' && h[5 + i] <= 'F' ? h[5 + i] - 'A' + 'a' : h[5 + i]);
    }
    if (!is_valid) {
        refuse(p, REP_HOST_UNREACHABLE);
        return -1;
    }
    hash[P65_HASH_LEN] = '\0';
    if (relay_join(p, hash) < 0) {
        log_info("proxy65: %s asked for stream %s, which has its connections: refused",
                 conn_peer(p->conn), hash);
        refuse(p, REP_NOT_ALLOWED);
        return -1;
    }
    /* §6.3.3: BND.ADDR and BND.PORT are DST.ADDR and DST.PORT. */
    unsigned char reply[5 + 255 + 2];
    reply[0] = 5;
    reply[1] = REP_OK;
    reply[2] = 0;
    memcpy(reply + 3, h + 3, total - 3);
    conn_write(p->conn, reply, total);
    p->state = ST_JOINED;
    return (long)total;
}

/* Feed handshake bytes; what follows the request is dropped (§9.1). */
static void handshake(peer_t *p, const char *data, size_t len)
{
    while (len > 0 && (p->state == ST_GREETING || p->state == ST_REQUEST)) {
        size_t room = sizeof p->hs - p->hs_len, n = len < room ? len : room;
        memcpy(p->hs + p->hs_len, data, n);
        p->hs_len += n;
        data += n;
        len -= n;
        while (p->hs_len > 0 && (p->state == ST_GREETING || p->state == ST_REQUEST)) {
            long used = p->state == ST_GREETING ? parse_greeting(p) : parse_request(p);
            if (used <= 0) break;
            memmove(p->hs, p->hs + used, p->hs_len - (size_t)used);
            p->hs_len -= (size_t)used;
        }
        /* Both messages fit in hs (257 + 262 bytes): a full buffer that
         * parses no further is not SOCKS5. */
        if (p->hs_len == sizeof p->hs && (p->state == ST_GREETING || p->state == ST_REQUEST)) {
            p->state = ST_DONE;
            conn_abort(p->conn);
        }
    }
}

/* ---- connections -------------------------------------------------------- */

static void on_read(conn_t *c, const char *data, size_t len)
{
    peer_t *p = conn_data(c);
    if (p->state == ST_ACTIVE)
        relay_data(p, data, len);
    else if (p->state == ST_GREETING || p->state == ST_REQUEST)
        handshake(p, data, len);
}

static void on_drain(conn_t *c)
{
    peer_t *p = conn_data(c);
    if (p->state == ST_ACTIVE) relay_drained(p);
}

static void on_close(conn_t *c, const char *reason)
{
    peer_t *p = conn_data(c);
    if (!p) return; /* closed at once, over the limit */
    log_debug("proxy65: %s closed%s%s", conn_peer(c), reason ? ": " : "", reason ? reason : "");
    wait_remove(p);
    if (p->stream) relay_leave(p);
    if (p->prev)
        p->prev->next = p->next;
    else
        S.all = p->next;
    if (p->next) p->next->prev = p->prev;
    S.nconns--;
    metric_gauge_set(&m_connections, S.nconns);
    free(p);
}

static const conn_cb_t peer_cb = {.on_read = on_read, .on_drain = on_drain, .on_close = on_close};

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        log_warn("proxy65: accept: %s", uv_strerror(status));
        return;
    }
    if (S.nconns >= S.lim.max_connections) {
        conn_t *c = conn_accept(server, &peer_cb, NULL);
        if (c) conn_abort(c);
        metric_inc(&m_refused);
        if (log_is_first("proxy65 max-connections"))
            log_warn("proxy65: %d connections held (proxy65.max-connections): new ones are "
                     "closed (logged once)",
                     S.lim.max_connections);
        return;
    }
    peer_t *p = calloc(1, sizeof(*p));
    if (!p) log_fatal("out of memory");
    if (!(p->conn = conn_accept(server, &peer_cb, p))) {
        free(p);
        return;
    }
    p->state = ST_GREETING;
    p->next = S.all;
    if (S.all) S.all->prev = p;
    S.all = p;
    S.nconns++;
    metric_gauge_set(&m_connections, S.nconns);
    wait_add(p);
}

int socks5_listen(uv_loop_t *loop, const char *addr, const p65_limits_t *limits)
{
    S.loop = loop;
    S.lim = *limits;
    uv_timer_init(loop, &S.deadline_timer);
    metrics_gauge("hearth_proxy65_connections", "SOCKS5 connections open", &m_connections, NULL);
    metrics_counter("hearth_proxy65_connections_refused_total",
                    "SOCKS5 connections closed at once: proxy65.max-connections were open",
                    &m_refused, NULL);
    metrics_counter("hearth_proxy65_connections_timed_out_total",
                    "SOCKS5 connections closed for not being activated within "
                    "proxy65.idle-timeout",
                    &m_timeouts, NULL);
    int rc = conn_listen(loop, &S.listener, addr, false, on_connection);
    S.is_listening = rc == 0;
    return rc;
}

void socks5_stop(void)
{
    if (S.is_listening) conn_listener_close(&S.listener);
    S.is_listening = false;
    if (S.loop) uv_close((uv_handle_t *)&S.deadline_timer, NULL);
    S.loop = NULL;
    for (peer_t *p = S.all; p; p = p->next) {
        p->state = ST_DONE;
        conn_abort(p->conn);
    }
}
