/* relay.c — hearth-proxy65's streams: the two SOCKS5 connections of one
 * hash paired, activated by their requester, and their bytes relayed
 * under the limits.
 *
 * A stream is made by the first CONNECT that names its hash (the target's,
 * by XEP-0065's order) and takes a second (the requester's); socks5.c
 * refuses a third. Which connection is which does not matter once the
 * stream is active: bytes read on one are written to the other, both ways.
 * Activation (iq.c) looks the stream up by the hash of SID + the
 * activating full JID + the target, so only the requester, as the sm
 * vouched for it, can activate its own stream.
 *
 * Limits (the proxy65 section of hearth.xml):
 *   - max-streams-per-user: the activated streams of one bare JID (the
 *     requester's); one more is refused at activation, and its two
 *     connections closed. A stream that is not active belongs to nobody
 *     yet (its hash tells no JID): those are held by max-connections and
 *     closed by idle-timeout (socks5.c).
 *   - rate: one token bucket per stream, of bytes, for both directions
 *     together, holding 100 ms of the rate (at least 64 KiB). A read that
 *     takes the bucket below zero pauses reading on both connections until
 *     the debt is paid back; nothing is dropped.
 *   - idle-timeout: an active stream that relays no byte for this long is
 *     closed. One timer per stream, pushed back lazily: it fires, looks at
 *     the time of the last byte, and sleeps again for the rest.
 * Flow control: what one side reads is written to the other (conn_write);
 * when that one's write queue is full (WRITE_LIMIT), the reading side is
 * paused until it drains (on_drain). So a stream holds at most about
 * WRITE_LIMIT plus one read (64 KiB) per direction, whatever the peers
 * do.
 *
 * When one connection of an active stream closes, the other is closed
 * after what is queued for it is written: a sender that is done closes its
 * socket, and the receiver gets every byte, then the end. */
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "proxy65.h"

#define WRITE_LIMIT (512 * 1024)
#define MIN_BURST (64 * 1024)

struct stream {
    char hash[P65_HASH_LEN + 1];
    peer_t *peers[2];
    char *user; /* the requester's bare JID, once active */
    bool is_active, is_closing;
    bool is_held; /* over its rate: both connections paused */
    uv_timer_t idle_timer, rate_timer;
    int open_timers;
    uint64_t last_at; /* loop ms of the last byte relayed */
    double tokens;    /* bytes it may relay now; negative: a debt */
    uint64_t refill_at;
};

/* Active streams of one bare JID. */
typedef struct user {
    int streams;
} user_t;

static struct {
    uv_loop_t *loop;
    p65_limits_t lim;
    double burst;
    map_t streams; /* by hash, those not closing */
    map_t users;   /* by bare JID */
    int nactive;
} R;

static metric_gauge_t m_streams, m_waiting;
static metric_counter_t m_bytes, m_activations, m_refused, m_idle;

void relay_init(uv_loop_t *loop, const p65_limits_t *limits)
{
    R.loop = loop;
    R.lim = *limits;
    R.burst = (double)R.lim.rate / 10.0;
    if (R.burst < MIN_BURST) R.burst = MIN_BURST;
    map_init(&R.streams);
    map_init(&R.users);
    metrics_gauge("hearth_proxy65_streams", "bytestreams activated and relaying", &m_streams, NULL);
    metrics_gauge("hearth_proxy65_streams_waiting",
                  "bytestreams that one or two connections asked for, not activated yet",
                  &m_waiting, NULL);
    metrics_counter("hearth_proxy65_relayed_bytes_total", "bytes relayed, both directions",
                    &m_bytes, NULL);
    metrics_counter("hearth_proxy65_activations_total", "bytestreams activated", &m_activations,
                    NULL);
    metrics_counter("hearth_proxy65_activations_refused_total",
                    "activations refused (no such stream, one connection only, "
                    "max-streams-per-user, not a local user)",
                    &m_refused, NULL);
    metrics_counter("hearth_proxy65_idle_closed_total",
                    "active bytestreams closed after proxy65.idle-timeout without a byte", &m_idle,
                    NULL);
}

void relay_free(void)
{
    map_free(&R.streams);
    map_free(&R.users);
}

/* ---- lifetime ----------------------------------------------------------- */

static void maybe_free(stream_t *s)
{
    if (!s->is_closing || s->open_timers > 0 || s->peers[0] || s->peers[1]) return;
    free(s->user);
    free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    stream_t *s = h->data;
    s->open_timers--;
    maybe_free(s);
}

/* No more activation nor relaying: out of the table, timers closed; freed
 * once its connections have left too. */
static void stream_close(stream_t *s)
{
    if (s->is_closing) return;
    s->is_closing = true;
    map_del(&R.streams, s->hash);
    if (s->is_active) {
        metric_gauge_set(&m_streams, --R.nactive);
        user_t *u = map_get(&R.users, s->user);
        if (u && --u->streams == 0) free(map_del(&R.users, s->user));
    }
    metric_gauge_set(&m_waiting, (int64_t)R.streams.count - R.nactive);
    uv_close((uv_handle_t *)&s->idle_timer, on_timer_closed);
    uv_close((uv_handle_t *)&s->rate_timer, on_timer_closed);
}

int relay_join(peer_t *p, const char *hash)
{
    stream_t *s = map_get(&R.streams, hash);
    if (s && (s->is_active || (s->peers[0] && s->peers[1]))) return -1;
    if (!s) {
        if (!(s = calloc(1, sizeof(*s)))) log_fatal("out of memory");
        memcpy(s->hash, hash, P65_HASH_LEN + 1);
        uv_timer_init(R.loop, &s->idle_timer);
        uv_timer_init(R.loop, &s->rate_timer);
        s->idle_timer.data = s->rate_timer.data = s;
        s->open_timers = 2;
        map_put(&R.streams, s->hash, s);
        metric_gauge_set(&m_waiting, (int64_t)R.streams.count - R.nactive);
    }
    p->side = s->peers[0] ? 1 : 0;
    s->peers[p->side] = p;
    p->stream = s;
    conn_set_write_limit(p->conn, WRITE_LIMIT);
    return 0;
}

void relay_leave(peer_t *p)
{
    stream_t *s = p->stream;
    s->peers[p->side] = NULL;
    p->stream = NULL;
    peer_t *other = s->peers[1 - p->side];
    if (s->is_active && other) conn_close(other->conn);
    if (s->is_active || !other) stream_close(s);
    maybe_free(s);
}

/* ---- relaying ----------------------------------------------------------- */

/* Read p unless the other side is full or the stream is over its rate. */
static void update_reading(peer_t *p)
{
    if (!p) return;
    bool should_pause = p->is_blocked || p->stream->is_held;
    if (should_pause && !conn_is_paused(p->conn))
        conn_pause(p->conn);
    else if (!should_pause && conn_is_paused(p->conn))
        conn_resume(p->conn);
}

static void refill(stream_t *s, uint64_t now)
{
    s->tokens += (double)(now - s->refill_at) * (double)R.lim.rate / 1000.0;
    if (s->tokens > R.burst) s->tokens = R.burst;
    s->refill_at = now;
}

static void on_rate(uv_timer_t *t)
{
    stream_t *s = t->data;
    refill(s, uv_now(R.loop));
    if (s->tokens < 0) {
        uv_timer_start(&s->rate_timer, on_rate,
                       (uint64_t)(-s->tokens * 1000.0 / (double)R.lim.rate) + 1, 0);
        return;
    }
    s->is_held = false;
    update_reading(s->peers[0]);
    update_reading(s->peers[1]);
}

/* len bytes relayed: over the rate, hold both sides for as long as it
 * takes to pay the debt back. */
static void take_tokens(stream_t *s, size_t len, uint64_t now)
{
    refill(s, now);
    s->tokens -= (double)len;
    if (s->tokens >= 0 || s->is_held) return;
    s->is_held = true;
    uv_timer_start(&s->rate_timer, on_rate,
                   (uint64_t)(-s->tokens * 1000.0 / (double)R.lim.rate) + 1, 0);
}

void relay_data(peer_t *p, const char *data, size_t len)
{
    stream_t *s = p->stream;
    peer_t *other = s ? s->peers[1 - p->side] : NULL;
    if (!other || s->is_closing) return;
    conn_write(other->conn, data, len);
    metric_add(&m_bytes, len);
    s->last_at = uv_now(R.loop);
    if (conn_is_full(other->conn)) p->is_blocked = true;
    if (R.lim.rate) take_tokens(s, len, s->last_at);
    update_reading(p);
    if (s->is_held) update_reading(other);
}

void relay_drained(peer_t *p)
{
    stream_t *s = p->stream;
    peer_t *other = s ? s->peers[1 - p->side] : NULL;
    if (!other || !other->is_blocked) return;
    other->is_blocked = false;
    update_reading(other);
}

static void on_idle(uv_timer_t *t)
{
    stream_t *s = t->data;
    uint64_t quiet = uv_now(R.loop) - s->last_at;
    if (quiet < R.lim.idle_ms) {
        uv_timer_start(&s->idle_timer, on_idle, R.lim.idle_ms - quiet, 0);
        return;
    }
    log_info("proxy65: stream %s of %s relayed nothing for %llu ms: closed", s->hash, s->user,
             (unsigned long long)R.lim.idle_ms);
    metric_inc(&m_idle);
    for (int i = 0; i < 2; i++)
        if (s->peers[i]) conn_close(s->peers[i]->conn);
    stream_close(s);
}

/* ---- activation --------------------------------------------------------- */

/* XEP-0065 §5.3.2: SHA-1 of SID + requester JID + target JID, in hex. */
static void stream_hash(const char *sid, const char *requester, const char *target,
                        char out[P65_HASH_LEN + 1])
{
    buf_t b = BUF_INIT;
    buf_appends(&b, sid);
    buf_appends(&b, requester);
    buf_appends(&b, target);
    unsigned char digest[20];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA1, b.data, b.len, digest) < 0)
        log_fatal("proxy65: SHA-1 is not available");
    buf_free(&b);
    for (int i = 0; i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

const char *relay_activate(const char *sid, const char *requester, const char *target,
                           const char *requester_bare)
{
    char hash[P65_HASH_LEN + 1];
    stream_hash(sid, requester, target, hash);
    stream_t *s = map_get(&R.streams, hash);
    const char *refusal = NULL;
    if (!s)
        refusal = "item-not-found"; /* §6.3.5: not the requester's, or no such sid */
    else if (s->is_active || !s->peers[0] || !s->peers[1])
        refusal = "not-allowed"; /* §6.3.5: only one party is connected */
    if (refusal) {
        metric_inc(&m_refused);
        log_info("proxy65: activation of %s by %s refused: %s", hash, requester, refusal);
        return refusal;
    }
    user_t *u = map_get(&R.users, requester_bare);
    if (u && u->streams >= R.lim.max_streams_per_user) {
        metric_inc(&m_refused);
        log_info("proxy65: %s has %d streams (proxy65.max-streams-per-user): stream %s refused",
                 requester_bare, u->streams, hash);
        conn_close(s->peers[0]->conn);
        conn_close(s->peers[1]->conn);
        stream_close(s);
        return "resource-constraint";
    }
    if (!u) {
        if (!(u = calloc(1, sizeof(*u)))) log_fatal("out of memory");
        map_put(&R.users, requester_bare, u);
    }
    u->streams++;
    if (!(s->user = strdup(requester_bare))) log_fatal("out of memory");
    s->is_active = true;
    s->last_at = s->refill_at = uv_now(R.loop);
    s->tokens = R.burst;
    uv_timer_start(&s->idle_timer, on_idle, R.lim.idle_ms, 0);
    for (int i = 0; i < 2; i++)
        socks5_activated(s->peers[i]);
    metric_inc(&m_activations);
    metric_gauge_set(&m_streams, ++R.nactive);
    metric_gauge_set(&m_waiting, (int64_t)R.streams.count - R.nactive);
    log_info("proxy65: stream %s of %s to %s activated", hash, requester, target);
    return NULL;
}
