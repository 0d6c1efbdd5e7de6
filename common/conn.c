/* conn.c — stream connections on the libuv loop: TCP or Unix socket,
 * gathered writes, flow control, and TLS through GnuTLS.
 *
 * Writes. conn_write() never touches the socket: bytes are copied into the
 * connection's queue (small copies coalesce into 16 KiB chunks, so a burst
 * of tiny writes costs no allocation each), shared rbuf_t are queued by
 * reference. The connection is then marked dirty; once per loop turn a
 * uv_check handle (one per loop, kept in a small static list of "loop
 * contexts") flushes every dirty connection: uv_try_write of everything
 * queued, and one uv_write of what the kernel did not take. A uv_idle
 * handle runs alongside while anything is dirty, only so that the loop does
 * not block in poll with writes pending (writes made from timers or close
 * callbacks happen before the poll phase). A chunk that is part of a write
 * in flight is sealed: later copies go to a new chunk.
 *
 * Reads go into a 64 KiB buffer shared by every connection of the loop:
 * on_read consumes the bytes synchronously, and libuv reads one stream at
 * a time. conn_pause/conn_resume stop and start reading.
 *
 * TLS. conn_starttls() puts a GnuTLS session on the connection with memory
 * transport functions: pull reads from the ciphertext received so far, push
 * appends records to the write queue. Bytes queued before starttls are
 * already in the wire queue, so they leave in the clear ahead of the
 * handshake; conn_write() after it goes to a plaintext queue that the flush
 * encrypts (corked, so many small writes become few records) once the
 * handshake is done. The handshake is driven by reads (the first step runs
 * on the loop turn of conn_starttls). While paused, received records stay
 * encrypted and nothing is delivered; conn_resume picks them up on the next
 * loop turn.
 *
 * Closing. conn_close: stop taking writes, flush, TLS close_notify,
 * shutdown(SHUT_WR), then keep reading (and discarding) until the peer's
 * EOF, so that our last bytes are not lost to a reset; a 10 s timer bounds
 * the whole. Peer EOF (or a TLS close_notify) flushes what is queued and
 * closes with the reason "peer closed". conn_abort and errors close at
 * once. Each conn's memory is freed in the last close callback of its
 * handles, right after on_close, which is called exactly once.
 *
 * A starttls done in on_read applies to the bytes of the next read: the
 * rest of the current chunk was already delivered as plaintext. XMPP peers
 * wait for <proceed/>, so an honest one sends none; whatever is there came
 * in the clear, and the daemons drop it (xstream_reset_discard). */
#include "conn.h"
#include "tls_private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define READ_BUF_SIZE 65536
#define PLAIN_BUF_SIZE 16384 /* one TLS record's plaintext */
#define CHUNK_SIZE 16384     /* coalescing buffer for copied writes */
#define SMALL_RBUF 512       /* shared buffers this small are copied */
#define ENCRYPT_BATCH 65536  /* plaintext corked into records at once */
#define EARLY_FLUSH 65536    /* this much queued leaves before the turn ends */
#define DEFAULT_WRITE_LIMIT (1024 * 1024)
#define MAX_IOV 1024
#define CLOSE_TIMEOUT_MS 10000
#define LISTEN_BACKLOG 511

/* One queued piece: a shared buffer, or a chunk of our own. */
typedef struct seg {
    rbuf_t *rbuf;
    char *own;
    size_t cap; /* of own */
    size_t len; /* bytes held */
    size_t off; /* bytes already written */
} seg_t;

typedef struct segq {
    seg_t *v;
    size_t head, n, cap; /* live segments: v[head .. n) */
    size_t bytes;        /* not yet written */
} segq_t;

typedef struct loopctx loopctx_t;

struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_timer_t close_timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    uv_connect_t connect_req;
    loopctx_t *lc;
    conn_cb_t cb;
    void *ud;
    char peer[64];
    bool is_local;
    int open_handles;

    bool is_connected;
    bool is_paused;
    bool is_reading;
    bool app_closed;  /* conn_close/conn_abort: no more on_read, on_drain */
    bool is_closing;  /* graceful close under way */
    bool is_closed;   /* uv_close called */
    bool peer_eof;    /* TCP EOF seen */
    bool peer_closed; /* EOF or TLS close_notify: the peer sends no more */
    bool shutdown_sent, shutdown_done;
    bool has_timer;
    bool was_full;
    bool is_silent; /* a failed accept: no callbacks at all */
    bool connect_reported;
    int connect_status;
    bool has_reason;
    const char *reason;

    segq_t wire;                     /* bytes for the socket: clear text or TLS records */
    segq_t plain;                    /* with TLS: plaintext waiting for encryption */
    size_t inflight, inflight_bytes; /* head segments in the uv_write */
    size_t limit;
    uv_buf_t *iov;
    size_t iov_cap;

    gnutls_session_t tls;
    tls_ctx_t *tls_ctx;
    const char *alpn; /* the ALPN protocol to ask for or accept, or NULL */
    bool tls_done;   /* handshake finished */
    bool tls_failed; /* handshake or record error: nothing more through TLS */
    bool bye_sent;
    bool tls_input_pending; /* run tls_input on the next flush */
    char *in;               /* ciphertext received, not yet pulled */
    size_t in_len, in_off, in_cap;

    conn_t *dirty_prev, *dirty_next;
    bool is_dirty;
};

/* Per loop: the flusher and the shared read buffers. */
struct loopctx {
    uv_loop_t *loop;
    loopctx_t *next;
    uv_check_t check;
    uv_idle_t idle;
    conn_t *dirty;
    unsigned nconns;
    int open_handles;
    char rx[READ_BUF_SIZE];
    char plain[PLAIN_BUF_SIZE];
};

static loopctx_t *loopctxs; /* one per loop; a process has one or a few */

static void conn_flush(conn_t *c);
static void tls_input(conn_t *c);
static void hard_close(conn_t *c, const char *reason);

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) log_fatal("out of memory");
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) log_fatal("out of memory");
    return p;
}

/* ---- segment queues ------------------------------------------------------- */

static inline char *seg_data(const seg_t *s)
{
    return s->rbuf ? s->rbuf->data : s->own;
}

static void seg_release(seg_t *s)
{
    if (s->rbuf) rbuf_unref(s->rbuf);
    free(s->own);
    memset(s, 0, sizeof *s);
}

static seg_t *segq_add(segq_t *q)
{
    if (q->n == q->cap) {
        if (q->head > 0) {
            memmove(q->v, q->v + q->head, (q->n - q->head) * sizeof *q->v);
            q->n -= q->head;
            q->head = 0;
        }
        if (q->n == q->cap) {
            q->cap = q->cap ? q->cap * 2 : 16;
            q->v = xrealloc(q->v, q->cap * sizeof *q->v);
        }
    }
    seg_t *s = &q->v[q->n++];
    memset(s, 0, sizeof *s);
    return s;
}

/* Copy len bytes in. Segments before index sealed (those in a write in
 * flight) are never appended to. */
static void segq_copy(segq_t *q, const void *data, size_t len, size_t sealed)
{
    if (q->n > q->head && q->n - 1 >= sealed) {
        seg_t *t = &q->v[q->n - 1];
        if (t->own && t->cap - t->len >= len) {
            memcpy(t->own + t->len, data, len);
            t->len += len;
            q->bytes += len;
            return;
        }
    }
    seg_t *s = segq_add(q);
    s->cap = len > CHUNK_SIZE ? len : CHUNK_SIZE;
    s->own = xmalloc(s->cap);
    memcpy(s->own, data, len);
    s->len = len;
    q->bytes += len;
}

static void segq_take_rbuf(segq_t *q, rbuf_t *r)
{
    seg_t *s = segq_add(q);
    s->rbuf = r;
    s->len = r->len;
    q->bytes += r->len;
}

/* Drop n written bytes from the front. */
static void segq_consume(segq_t *q, size_t n)
{
    while (n > 0 && q->head < q->n) {
        seg_t *s = &q->v[q->head];
        size_t left = s->len - s->off;
        if (n < left) {
            s->off += n;
            q->bytes -= n;
            return;
        }
        n -= left;
        q->bytes -= left;
        seg_release(s);
        q->head++;
    }
    if (q->head == q->n) q->head = q->n = 0;
}

static void segq_clear(segq_t *q)
{
    for (size_t i = q->head; i < q->n; i++)
        seg_release(&q->v[i]);
    free(q->v);
    memset(q, 0, sizeof *q);
}

/* ---- loop contexts and the once-per-turn flush ---------------------------- */

static void on_idle(uv_idle_t *idle)
{
    (void)idle; /* exists only to keep poll from blocking */
}

static void unlink_dirty(conn_t *c)
{
    if (!c->is_dirty) return;
    if (c->dirty_prev)
        c->dirty_prev->dirty_next = c->dirty_next;
    else
        c->lc->dirty = c->dirty_next;
    if (c->dirty_next) c->dirty_next->dirty_prev = c->dirty_prev;
    c->dirty_prev = c->dirty_next = NULL;
    c->is_dirty = false;
}

static void on_check(uv_check_t *check)
{
    loopctx_t *lc = check->data;
    /* Take the list: connections dirtied while it runs wait for the next
     * turn (the idle handle keeps that turn from blocking). No conn is
     * freed during the check phase, only in close callbacks. */
    conn_t *list = lc->dirty;
    lc->dirty = NULL;
    while (list) {
        conn_t *c = list;
        list = c->dirty_next;
        if (list) list->dirty_prev = NULL;
        c->dirty_prev = c->dirty_next = NULL;
        c->is_dirty = false;
        if (c->is_closed) continue;
        if (c->tls_input_pending) {
            c->tls_input_pending = false;
            tls_input(c);
        }
        conn_flush(c);
    }
    /* cppcheck-suppress knownConditionTrueFalse ; the callbacks above re-dirty */
    if (!lc->dirty) {
        uv_check_stop(&lc->check);
        uv_idle_stop(&lc->idle);
    }
}

static void mark_dirty(conn_t *c)
{
    if (c->is_dirty || c->is_closed) return;
    loopctx_t *lc = c->lc;
    c->dirty_prev = NULL;
    c->dirty_next = lc->dirty;
    if (lc->dirty) lc->dirty->dirty_prev = c;
    lc->dirty = c;
    c->is_dirty = true;
    uv_check_start(&lc->check, on_check);
    uv_idle_start(&lc->idle, on_idle);
}

static loopctx_t *loopctx_get(uv_loop_t *loop)
{
    for (loopctx_t *lc = loopctxs; lc; lc = lc->next)
        if (lc->loop == loop) return lc;
    loopctx_t *lc = calloc(1, sizeof *lc);
    if (!lc) log_fatal("out of memory");
    lc->loop = loop;
    uv_check_init(loop, &lc->check);
    uv_idle_init(loop, &lc->idle);
    lc->check.data = lc->idle.data = lc;
    lc->open_handles = 2;
    lc->next = loopctxs;
    loopctxs = lc;
    return lc;
}

static void on_loopctx_close(uv_handle_t *h)
{
    loopctx_t *lc = h->data;
    if (--lc->open_handles == 0) free(lc);
}

/* The last connection of a loop is gone: release its handles, so that the
 * loop can end and be closed. A new connection makes a new context. */
static void loopctx_unref(loopctx_t *lc)
{
    if (--lc->nconns > 0) return;
    for (loopctx_t **p = &loopctxs; *p; p = &(*p)->next) {
        if (*p == lc) {
            *p = lc->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&lc->check, on_loopctx_close);
    uv_close((uv_handle_t *)&lc->idle, on_loopctx_close);
}

/* ---- addresses ------------------------------------------------------------- */

typedef struct address {
    bool is_unix;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct sockaddr_storage ss;
} address_t;

/* "host:port", "[v6]:port" (numeric hosts) or "unix:/path". */
static int parse_address(const char *addr, address_t *a)
{
    memset(a, 0, sizeof *a);
    if (!addr) return UV_EINVAL;
    if (strncmp(addr, "unix:", 5) == 0) {
        const char *path = addr + 5;
        size_t len = strlen(path);
        if (len == 0 || len >= sizeof a->path) return UV_EINVAL;
        memcpy(a->path, path, len + 1);
        a->is_unix = true;
        return 0;
    }
    char host[INET6_ADDRSTRLEN + 32];
    const char *port;
    bool is_v6 = addr[0] == '[';
    if (is_v6) {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof host) return UV_EINVAL;
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = 0;
        port = end + 2;
    } else {
        const char *colon = strrchr(addr, ':');
        if (!colon || (size_t)(colon - addr) >= sizeof host) return UV_EINVAL;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = 0;
        if (strchr(host, ':')) return UV_EINVAL; /* IPv6 needs brackets */
        port = colon + 1;
    }
    if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port)) return UV_EINVAL;
    long p = strtol(port, NULL, 10);
    if (p > 65535) return UV_EINVAL;
    if (is_v6) {
        struct in6_addr tmp;
        char bare[sizeof host];
        snprintf(bare, sizeof bare, "%s", host);
        char *scope = strchr(bare, '%');
        if (scope) *scope = 0;
        if (inet_pton(AF_INET6, bare, &tmp) != 1) return UV_EINVAL;
        return uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)&a->ss);
    }
    struct in_addr tmp;
    if (inet_pton(AF_INET, host, &tmp) != 1) return UV_EINVAL;
    return uv_ip4_addr(host, (int)p, (struct sockaddr_in *)&a->ss);
}

static socklen_t sockaddr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Peer name and locality, once, from the address. */
static void describe_peer(conn_t *c, const struct sockaddr_storage *ss)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "%s:%u", ip, ntohs(sin->sin_port));
        c->is_local = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "[%s]:%u", ip, ntohs(sin6->sin6_port));
        const uint8_t *b = sin6->sin6_addr.s6_addr;
        c->is_local = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
                      (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && b[12] == 127);
    } else {
        snprintf(c->peer, sizeof c->peer, "unknown");
        c->is_local = false;
    }
}

/* ---- listening ----------------------------------------------------------- */

/* A socket file left by a process that died: remove it, unless someone
 * answers on it or it is not a socket. */
static int remove_stale_socket(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) return UV_EADDRINUSE;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof sun);
    int err = errno;
    close(fd);
    if (rc == 0 || err == EAGAIN || err == EINPROGRESS) return UV_EADDRINUSE;
    if (err != ECONNREFUSED) return -err;
    if (unlink(path) < 0 && errno != ENOENT) return -errno;
    return 0;
}

/* The socket is made, bound and listening before any libuv handle exists,
 * so a failure leaves nothing to close. */
int conn_listen(uv_loop_t *loop, listener_t *l, const char *addr, bool reuseport,
                uv_connection_cb on_conn)
{
    address_t a;
    int rc = parse_address(addr, &a);
    if (rc < 0) return rc;
    int fd;
    if (a.is_unix) {
        if ((rc = remove_stale_socket(a.path)) < 0) return rc;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -errno;
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        memcpy(sun.sun_path, a.path, strlen(a.path) + 1);
        if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) goto fail;
    } else {
        fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -errno;
        int on = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0) goto fail;
        if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) goto fail;
        if (bind(fd, (struct sockaddr *)&a.ss, sockaddr_len(&a.ss)) < 0) goto fail;
    }
    if (listen(fd, LISTEN_BACKLOG) < 0) goto fail;

    void *data = l->data;
    memset(&l->h, 0, sizeof l->h);
    if (a.is_unix) {
        uv_pipe_init(loop, &l->h.pipe, 0);
        rc = uv_pipe_open(&l->h.pipe, fd);
    } else {
        uv_tcp_init(loop, &l->h.tcp);
        rc = uv_tcp_open(&l->h.tcp, fd);
    }
    if (rc == 0) rc = uv_listen((uv_stream_t *)&l->h, LISTEN_BACKLOG, on_conn);
    l->h.tcp.data = l; /* server->data in on_conn is the listener */
    l->data = data;
    if (rc < 0) {
        /* fd now belongs to the handle; closing it closes fd. */
        uv_close((uv_handle_t *)&l->h, NULL);
        return rc;
    }
    return 0;
fail:
    rc = -errno;
    close(fd);
    return rc;
}

/* Close the listener (the handle finishes closing on the loop's next
 * turn; l must live until then). A Unix socket's file is removed. */
void conn_listener_close(listener_t *l)
{
    uv_handle_t *h = (uv_handle_t *)&l->h;
    if (uv_is_closing(h)) return;
    if (h->type == UV_NAMED_PIPE) {
        char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
        size_t len = sizeof path;
        if (uv_pipe_getsockname(&l->h.pipe, path, &len) == 0 && len > 0 && path[0] == '/')
            unlink(path);
    }
    uv_close(h, NULL);
}

/* ---- life and death of a connection -------------------------------------- */

static conn_t *conn_new(uv_loop_t *loop, bool is_unix, const conn_cb_t *cb, void *ud)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c) log_fatal("out of memory");
    c->lc = loopctx_get(loop);
    c->lc->nconns++;
    if (cb) c->cb = *cb;
    c->ud = ud;
    c->limit = DEFAULT_WRITE_LIMIT;
    if (is_unix) {
        uv_pipe_init(loop, &c->h.pipe, 0);
        snprintf(c->peer, sizeof c->peer, "unix");
        c->is_local = true;
    } else {
        uv_tcp_init(loop, &c->h.tcp);
    }
    c->h.handle.data = c;
    c->write_req.data = c->shutdown_req.data = c->connect_req.data = c;
    c->open_handles = 1;
    return c;
}

static void conn_finalize(conn_t *c)
{
    unlink_dirty(c);
    if (!c->is_silent) {
        if (!c->connect_reported && c->connect_status < 0 && !c->app_closed && c->cb.on_connect)
            c->cb.on_connect(c, c->connect_status);
        if (c->cb.on_close) c->cb.on_close(c, c->reason);
    }
    segq_clear(&c->wire);
    segq_clear(&c->plain);
    free(c->iov);
    free(c->in);
    if (c->tls) gnutls_deinit(c->tls);
    if (c->tls_ctx) tls_ctx_release(c->tls_ctx);
    loopctx_t *lc = c->lc;
    free(c);
    loopctx_unref(lc);
}

static void on_handle_close(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->open_handles == 0) conn_finalize(c);
}

static void set_reason(conn_t *c, const char *reason)
{
    if (c->has_reason) return;
    c->has_reason = true;
    c->reason = reason;
}

static void hard_close(conn_t *c, const char *reason)
{
    if (c->is_closed) return;
    set_reason(c, reason);
    c->is_closed = true;
    c->is_reading = false;
    uv_close(&c->h.handle, on_handle_close);
    if (c->has_timer) uv_close((uv_handle_t *)&c->close_timer, on_handle_close);
}

static void on_close_timeout(uv_timer_t *t)
{
    hard_close(t->data, NULL);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    (void)suggested;
    buf->base = c->lc->rx;
    buf->len = sizeof c->lc->rx;
}

/* Read when connected and not paused; while closing at our request, read
 * regardless (and discard), to see the peer's EOF and never deadlock with a
 * peer that is itself blocked writing to us. */
static void update_reading(conn_t *c)
{
    bool want =
        !c->is_closed && c->is_connected && !c->peer_eof && (!c->is_paused || c->app_closed);
    if (want && !c->is_reading) {
        int rc = uv_read_start(&c->h.stream, on_alloc, on_read);
        if (rc < 0) {
            hard_close(c, uv_strerror(rc));
            return;
        }
        c->is_reading = true;
    } else if (!want && c->is_reading) {
        uv_read_stop(&c->h.stream);
        c->is_reading = false;
    }
}

/* Start the graceful path: flush, close_notify, shutdown, wait for EOF. */
static void begin_close(conn_t *c)
{
    if (c->is_closed) return;
    c->is_closing = true;
    if (!c->has_timer) {
        uv_timer_init(c->h.handle.loop, &c->close_timer);
        c->close_timer.data = c;
        c->has_timer = true;
        c->open_handles++;
        uv_timer_start(&c->close_timer, on_close_timeout, CLOSE_TIMEOUT_MS, 0);
    }
    update_reading(c);
    mark_dirty(c);
}

/* The peer sends no more (TCP EOF, or TLS close_notify). */
static void peer_closed(conn_t *c)
{
    set_reason(c, "peer closed");
    c->peer_closed = true;
    if (c->shutdown_done) {
        hard_close(c, NULL);
        return;
    }
    begin_close(c);
}

static void on_peer_eof(conn_t *c)
{
    c->peer_eof = true;
    c->is_reading = false; /* libuv stops reading at EOF */
    if (c->tls && !c->tls_failed)
        tls_input(c); /* flush the last records; calls peer_closed when drained */
    else
        peer_closed(c);
}

/* ---- writing ------------------------------------------------------------- */

static void maybe_drain(conn_t *c)
{
    if (!c->was_full || conn_queued(c) > c->limit / 2) return;
    c->was_full = false;
    if (!c->app_closed && !c->is_closed && c->cb.on_drain) c->cb.on_drain(c);
}

static int start_write(conn_t *c);
static int tls_encrypt(conn_t *c);

/* A daemon that reads for milliseconds in one loop turn would hold all it
 * writes until the turn ends, and the next daemon in the chain would wait
 * idle: once EARLY_FLUSH bytes are queued and no write is in flight, they
 * go at once. Only the socket write happens here, never a callback (an
 * error closes the connection asynchronously); the turn's flush does the
 * rest. */
static void flush_early(conn_t *c)
{
    if (c->inflight || !c->is_connected || c->is_closed || c->is_closing) return;
    if (c->tls) {
        if (!c->tls_done || c->tls_failed || c->plain.bytes < EARLY_FLUSH) return;
        if (tls_encrypt(c) < 0) return;
    } else if (c->wire.bytes < EARLY_FLUSH) {
        return;
    }
    if (c->wire.bytes) start_write(c);
}

static void note_queued(conn_t *c)
{
    if (conn_queued(c) > c->limit) c->was_full = true;
    mark_dirty(c);
    flush_early(c);
}

static bool can_write(const conn_t *c)
{
    return !c->is_closed && !c->app_closed && !c->shutdown_sent && !c->bye_sent && !c->tls_failed;
}

void conn_write(conn_t *c, const void *data, size_t len)
{
    if (!c || !len || !can_write(c)) return;
    if (c->tls)
        segq_copy(&c->plain, data, len, 0);
    else
        segq_copy(&c->wire, data, len, c->wire.head + c->inflight);
    note_queued(c);
}

void conn_write_rbuf(conn_t *c, rbuf_t *r)
{
    if (!c || !r || !r->len || !can_write(c)) return;
    if (r->len <= SMALL_RBUF) {
        conn_write(c, r->data, r->len);
        return;
    }
    segq_take_rbuf(c->tls ? &c->plain : &c->wire, rbuf_ref(r));
    note_queued(c);
}

void conn_write_now(conn_t *c)
{
    if (c) conn_flush(c);
}

static size_t build_iov(conn_t *c, size_t *bytes)
{
    segq_t *q = &c->wire;
    size_t n = q->n - q->head;
    if (n > MAX_IOV) n = MAX_IOV;
    if (n > c->iov_cap) {
        c->iov_cap = n < 16 ? 16 : n;
        c->iov = xrealloc(c->iov, c->iov_cap * sizeof *c->iov);
    }
    *bytes = 0;
    for (size_t i = 0; i < n; i++) {
        seg_t *s = &q->v[q->head + i];
        c->iov[i] = uv_buf_init(seg_data(s) + s->off, (unsigned)(s->len - s->off));
        *bytes += s->len - s->off;
    }
    return n;
}

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    size_t bytes = c->inflight_bytes;
    c->inflight = c->inflight_bytes = 0;
    if (status < 0) {
        hard_close(c, uv_strerror(status)); /* no-op when already closing */
        return;
    }
    segq_consume(&c->wire, bytes);
    if (c->is_closed) return;
    if (c->wire.bytes || c->plain.bytes || c->is_closing) mark_dirty(c);
    maybe_drain(c);
}

/* Try the kernel directly; what it does not take goes into one uv_write. */
static int start_write(conn_t *c)
{
    size_t bytes;
    size_t n = build_iov(c, &bytes);
    int rc = uv_try_write(&c->h.stream, c->iov, (unsigned)n);
    if (rc == UV_EAGAIN || rc == UV_ENOSYS) rc = 0;
    if (rc < 0) {
        hard_close(c, uv_strerror(rc));
        return -1;
    }
    if (rc > 0) segq_consume(&c->wire, (size_t)rc);
    if (!c->wire.bytes) return 0;
    n = build_iov(c, &bytes);
    rc = uv_write(&c->write_req, &c->h.stream, c->iov, (unsigned)n, on_write);
    if (rc < 0) {
        hard_close(c, uv_strerror(rc));
        return -1;
    }
    c->inflight = n;
    c->inflight_bytes = bytes;
    return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    if (c->is_closed) return;
    c->shutdown_done = true;
    if (status < 0 || c->peer_closed || c->peer_eof)
        hard_close(c, status < 0 ? uv_strerror(status) : NULL);
    else
        update_reading(c); /* wait for the peer's EOF (or the timer) */
}

/* Encrypt the plaintext queue into records on the wire queue. */
static int tls_encrypt(conn_t *c)
{
    while (c->plain.bytes > 0) {
        size_t batch = 0;
        gnutls_record_cork(c->tls);
        while (c->plain.bytes > 0 && batch < ENCRYPT_BATCH) {
            seg_t *s = &c->plain.v[c->plain.head];
            ssize_t n = gnutls_record_send(c->tls, seg_data(s) + s->off, s->len - s->off);
            if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN) continue;
            if (n < 0) {
                c->tls_failed = true;
                hard_close(c, gnutls_strerror((int)n));
                return -1;
            }
            segq_consume(&c->plain, (size_t)n);
            batch += (size_t)n;
        }
        int rc;
        do {
            rc = gnutls_record_uncork(c->tls, GNUTLS_RECORD_WAIT);
        } while (rc == GNUTLS_E_INTERRUPTED || rc == GNUTLS_E_AGAIN);
        if (rc < 0) {
            c->tls_failed = true;
            hard_close(c, gnutls_strerror(rc));
            return -1;
        }
    }
    return 0;
}

/* Once per loop turn for a dirty connection. */
static void conn_flush(conn_t *c)
{
    if (c->is_closed || !c->is_connected) return;
    if (c->tls && c->tls_failed) segq_consume(&c->plain, c->plain.bytes);
    if (c->tls && c->tls_done && !c->tls_failed && c->plain.bytes && tls_encrypt(c) < 0) return;
    if (c->is_closing && c->tls && c->tls_done && !c->tls_failed && !c->bye_sent &&
        !c->plain.bytes) {
        c->bye_sent = true;
        gnutls_bye(c->tls, GNUTLS_SHUT_WR); /* close_notify through push */
    }
    if (!c->inflight && c->wire.bytes && start_write(c) < 0) return;
    /* Plaintext waits for the handshake, unless the peer is gone. */
    bool plain_waits = c->plain.bytes && !c->peer_closed;
    if (c->is_closing && !c->shutdown_sent && !c->inflight && !c->wire.bytes && !plain_waits) {
        c->shutdown_sent = true;
        int rc = uv_shutdown(&c->shutdown_req, &c->h.stream, on_shutdown);
        if (rc < 0) {
            hard_close(c, NULL);
            return;
        }
    }
    maybe_drain(c);
}

/* ---- TLS transport ------------------------------------------------------- */

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *data, size_t size)
{
    conn_t *c = ptr;
    size_t avail = c->in_len - c->in_off;
    if (avail == 0) {
        if (c->peer_eof) return 0;
        gnutls_transport_set_errno(c->tls, EAGAIN);
        return -1;
    }
    size_t n = avail < size ? avail : size;
    memcpy(data, c->in + c->in_off, n);
    c->in_off += n;
    if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
    return (ssize_t)n;
}

static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms)
{
    conn_t *c = ptr;
    (void)ms;
    return c->in_len > c->in_off || c->peer_eof ? 1 : 0;
}

static ssize_t tls_push(gnutls_transport_ptr_t ptr, const void *data, size_t size)
{
    conn_t *c = ptr;
    if (c->is_closed || c->shutdown_sent) {
        gnutls_transport_set_errno(c->tls, EPIPE);
        return -1;
    }
    segq_copy(&c->wire, data, size, c->wire.head + c->inflight);
    mark_dirty(c);
    return (ssize_t)size;
}

static void tls_append_input(conn_t *c, const char *data, size_t len)
{
    if (c->in_off > 0 && c->in_cap - c->in_len < len) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_cap - c->in_len < len) {
        c->in_cap = c->in_len + len;
        c->in = xrealloc(c->in, c->in_cap);
    }
    memcpy(c->in + c->in_len, data, len);
    c->in_len += len;
}

/* A failed handshake or a broken record: tell on_tls (handshake only), send
 * the alert GnuTLS queued, and close. */
static void tls_fail(conn_t *c, int rc, bool in_handshake)
{
    c->tls_failed = true;
    set_reason(c, gnutls_strerror(rc));
    if (in_handshake && c->cb.on_tls) c->cb.on_tls(c, rc);
    if (c->is_closed) return;
    c->in_off = c->in_len = 0;
    begin_close(c);
}

/* Drive the handshake and deliver decrypted records, until input runs out
 * or the connection is paused. */
static void tls_input(conn_t *c)
{
    char *plain = c->lc->plain;
    while (!c->is_closed) {
        if (c->tls_failed) {
            c->in_off = c->in_len = 0; /* nothing more is read through TLS */
            return;
        }
        if (!c->tls_done) {
            int rc = gnutls_handshake(c->tls);
            if (rc == GNUTLS_E_SUCCESS) {
                c->tls_done = true;
                mark_dirty(c); /* the plaintext queue can go now */
                if (c->cb.on_tls) c->cb.on_tls(c, 0);
                continue;
            }
            if (rc == GNUTLS_E_AGAIN) break;
            if (rc == GNUTLS_E_INTERRUPTED || !gnutls_error_is_fatal(rc)) continue;
            tls_fail(c, rc, true);
            return;
        }
        if (c->is_paused && !c->app_closed) return; /* resume picks it up */
        ssize_t n = gnutls_record_recv(c->tls, plain, PLAIN_BUF_SIZE);
        if (n > 0) {
            if (!c->app_closed && c->cb.on_read) c->cb.on_read(c, plain, (size_t)n);
            continue;
        }
        if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION) {
            c->in_off = c->in_len = 0;
            peer_closed(c);
            return;
        }
        if (n == GNUTLS_E_AGAIN) {
            /* A post-handshake message (a TLS 1.3 session ticket) ends a
             * call with AGAIN although records may follow in the input. */
            if (c->in_len > c->in_off) continue;
            break;
        }
        if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_REHANDSHAKE) continue;
        if (gnutls_error_is_fatal((int)n)) {
            tls_fail(c, (int)n, false);
            return;
        }
    }
    if (!c->is_closed && c->peer_eof) peer_closed(c); /* all read: EOF */
}

/* ---- reading ------------------------------------------------------------- */

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = stream->data;
    if (nread == 0 || c->is_closed) return;
    if (nread < 0) {
        if (nread == UV_EOF)
            on_peer_eof(c);
        else
            hard_close(c, uv_strerror((int)nread));
        return;
    }
    if (c->tls) {
        if (c->tls_failed) return;
        tls_append_input(c, buf->base, (size_t)nread);
        tls_input(c);
        return;
    }
    if (c->app_closed || !c->cb.on_read) return; /* closing: discard */
    c->cb.on_read(c, buf->base, (size_t)nread);
}

/* ---- public API ---------------------------------------------------------- */

conn_t *conn_accept(uv_stream_t *server, const conn_cb_t *cb, void *ud)
{
    bool is_unix = server->type == UV_NAMED_PIPE;
    conn_t *c = conn_new(server->loop, is_unix, cb, ud);
    int rc = uv_accept(server, &c->h.stream);
    if (rc < 0) {
        log_warn("accept: %s", uv_strerror(rc));
        c->is_silent = true;
        hard_close(c, NULL);
        return NULL;
    }
    if (!is_unix) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        memset(&ss, 0, sizeof ss);
        if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0)
            describe_peer(c, &ss);
        else
            snprintf(c->peer, sizeof c->peer, "unknown");
        uv_tcp_nodelay(&c->h.tcp, 1); /* we gather writes ourselves */
    }
    c->is_connected = true;
    update_reading(c);
    return c;
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    if (c->is_closed || status == UV_ECANCELED) return;
    if (status < 0) {
        c->connect_status = status;
        c->connect_reported = true;
        if (!c->app_closed && c->cb.on_connect) c->cb.on_connect(c, status);
        hard_close(c, uv_strerror(status));
        return;
    }
    c->is_connected = true;
    if (c->h.handle.type == UV_TCP) uv_tcp_nodelay(&c->h.tcp, 1);
    c->connect_reported = true;
    if (!c->app_closed && c->cb.on_connect) c->cb.on_connect(c, 0);
    if (c->is_closed) return;
    update_reading(c);
    mark_dirty(c); /* what was written before the connection was up */
}

/* A numeric IPv4 or IPv6 address, port 0. */
static int parse_source(const char *ip, struct sockaddr_storage *ss)
{
    if (uv_ip4_addr(ip, 0, (struct sockaddr_in *)ss) == 0) return 0;
    return uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)ss) == 0 ? 0 : -1;
}

/* Bind the local address, leaving the port to connect(): bind() to port 0
 * would search the whole port space, slower with every port taken, while
 * connect() picks one free for this destination (IP_BIND_ADDRESS_NO_PORT). */
static int bind_source(conn_t *c, const struct sockaddr_storage *src)
{
    int fd = socket(src->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return uv_translate_sys_error(errno);
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    int rc = uv_tcp_open(&c->h.tcp, fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return uv_tcp_bind(&c->h.tcp, (const struct sockaddr *)src, 0);
}

conn_t *conn_connect(uv_loop_t *loop, const char *addr, const conn_cb_t *cb, void *ud)
{
    return conn_connect_from(loop, addr, NULL, cb, ud);
}

conn_t *conn_connect_from(uv_loop_t *loop, const char *addr, const char *source,
                          const conn_cb_t *cb, void *ud)
{
    address_t a;
    struct sockaddr_storage src;
    if (parse_address(addr, &a) < 0) return NULL;
    if (source && (a.is_unix || parse_source(source, &src) < 0)) return NULL;
    conn_t *c = conn_new(loop, a.is_unix, cb, ud);
    if (a.is_unix) {
        uv_pipe_connect(&c->connect_req, &c->h.pipe, a.path, on_connect);
        return c;
    }
    describe_peer(c, &a.ss);
    int rc = source ? bind_source(c, &src) : 0;
    if (rc == 0)
        rc = uv_tcp_connect(&c->connect_req, &c->h.tcp, (struct sockaddr *)&a.ss, on_connect);
    if (rc < 0) {
        /* Told from the close callback: on_connect(rc), then on_close. */
        c->connect_status = rc;
        hard_close(c, uv_strerror(rc));
    }
    return c;
}

void *conn_data(const conn_t *c)
{
    return c->ud;
}

void conn_set_data(conn_t *c, void *ud)
{
    c->ud = ud;
}

uv_loop_t *conn_loop(const conn_t *c)
{
    return c->h.handle.loop;
}

const char *conn_peer(const conn_t *c)
{
    return c->peer;
}

bool conn_addr_is_loopback(const char *addr)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host || !colon[1]) return false;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct sockaddr_in in;
    if (uv_ip4_addr(host, 0, &in) == 0) return (ntohl(in.sin_addr.s_addr) >> 24) == 127;
    return strcmp(host, "[::1]") == 0;
}

bool conn_is_local(const conn_t *c)
{
    return c->is_local;
}

size_t conn_queued(const conn_t *c)
{
    return c->wire.bytes + c->plain.bytes;
}

/* 0 restores the default. */
void conn_set_write_limit(conn_t *c, size_t limit)
{
    c->limit = limit ? limit : DEFAULT_WRITE_LIMIT;
    if (conn_queued(c) > c->limit) c->was_full = true;
}

bool conn_is_full(const conn_t *c)
{
    return conn_queued(c) > c->limit;
}

void conn_pause(conn_t *c)
{
    c->is_paused = true;
    update_reading(c);
}

void conn_resume(conn_t *c)
{
    c->is_paused = false;
    update_reading(c);
    /* Records that arrived before the pause are decrypted on the next
     * turn, not inside the caller's callback. */
    if (c->tls && !c->is_closed) {
        c->tls_input_pending = true;
        mark_dirty(c);
    }
}

bool conn_is_paused(const conn_t *c)
{
    return c->is_paused;
}

/* TLS is "on" from this call: conn_has_tls() is true during the handshake
 * too. Returns -1 as well when the session cannot be set up (logged) or the
 * connection is closing. */
int conn_starttls(conn_t *c, tls_ctx_t *ctx, bool is_server, const char *server_name)
{
    if (!c || !ctx || c->tls || c->is_closed || c->is_closing) return -1;
    gnutls_session_t s;
    int rc = gnutls_init(&s, (is_server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK);
    if (rc < 0) {
        log_err("%s: TLS: %s", c->peer, gnutls_strerror(rc));
        return -1;
    }
    rc = gnutls_priority_set(s, tls_ctx_priority(ctx));
    if (rc == 0) rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, tls_ctx_credentials(ctx));
    if (rc == 0 && !is_server && server_name && *server_name)
        rc = gnutls_server_name_set(s, GNUTLS_NAME_DNS, server_name, strlen(server_name));
    if (rc < 0) {
        log_err("%s: TLS: %s", c->peer, gnutls_strerror(rc));
        gnutls_deinit(s);
        return -1;
    }
    if (!is_server && tls_ctx_verifies(ctx))
        gnutls_session_set_verify_cert(s, server_name && *server_name ? server_name : NULL, 0);
    if (is_server && tls_ctx_requests_cert(ctx))
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUEST);
    if (c->alpn) {
        gnutls_datum_t proto = {(unsigned char *)c->alpn, (unsigned)strlen(c->alpn)};
        gnutls_alpn_set_protocols(s, &proto, 1, 0);
    }
    gnutls_transport_set_ptr(s, c);
    gnutls_transport_set_push_function(s, tls_push);
    gnutls_transport_set_pull_function(s, tls_pull);
    gnutls_transport_set_pull_timeout_function(s, tls_pull_timeout);
    c->tls = s;
    c->tls_ctx = tls_ctx_hold(ctx);
    c->tls_input_pending = true; /* first handshake step on this turn's flush */
    mark_dirty(c);
    return 0;
}

void conn_set_alpn(conn_t *c, const char *protocol)
{
    c->alpn = protocol;
}

bool conn_has_tls(const conn_t *c)
{
    return c->tls != NULL;
}

/* s, n bytes, is "_xmpp-server.NAME" or "_xmpps-server.NAME" (XEP-0368). */
static bool srv_id_names(const char *s, size_t n, const char *name)
{
    static const char *const services[] = {"_xmpp-server.", "_xmpps-server."};
    size_t namelen = strlen(name);
    for (size_t i = 0; i < sizeof services / sizeof *services; i++) {
        size_t k = strlen(services[i]);
        if (n == k + namelen && strncasecmp(s, services[i], k) == 0 &&
            strncasecmp(s + k, name, namelen) == 0)
            return true;
    }
    return false;
}

/* The SRV-ID otherName (RFC 4985, id-on-dnsSRV). */
#define OID_SRV_ID "1.3.6.1.5.5.7.8.7"

/* A DER IA5String (tag 22, short or long length form): its content in
 * *s, *n. false if data is not one. */
static bool der_ia5_string(const unsigned char *data, size_t len, const char **s, size_t *n)
{
    if (len < 2 || data[0] != 0x16) return false;
    size_t hdr = 2, body = data[1];
    if (body & 0x80) { /* long form: 1 or 2 length bytes are enough for a name */
        unsigned k = body & 0x7f;
        if (k < 1 || k > 2 || len < 2 + k) return false;
        body = 0;
        for (unsigned i = 0; i < k; i++) body = body << 8 | data[2 + i];
        hdr += k;
    }
    if (hdr + body != len) return false;
    *s = (const char *)data + hdr;
    *n = body;
    return true;
}

/* The i-th subjectAltName is an SRV-ID naming the xmpp-server or
 * xmpps-server service of name. GnuTLS releases before 3.8 do not know
 * the SRV-ID (no GNUTLS_SAN_OTHERNAME_SRV) and hand out its value as DER,
 * so it is read by its OID and decoded here; releases that know it hand
 * it out decoded, under a type of its own. */
static bool san_srv_id_names(gnutls_x509_crt_t crt, unsigned i, int type, const char *data,
                             size_t len, const char *name)
{
    if (type != GNUTLS_SAN_OTHERNAME && type <= GNUTLS_SAN_OTHERNAME_XMPP) return false;
    char oid[64];
    size_t oidlen = sizeof oid;
    if (gnutls_x509_crt_get_subject_alt_othername_oid(crt, i, oid, &oidlen) < 0 ||
        strcmp(oid, OID_SRV_ID) != 0)
        return false;
    const char *s = data;
    size_t n = len;
    if (type == GNUTLS_SAN_OTHERNAME && !der_ia5_string((const unsigned char *)data, len, &s, &n))
        return false;
    return srv_id_names(s, n, name);
}

/* An XMPP server's certificate names its domain (RFC 6120 13.7.1.2, RFC
 * 6125) by a DNS-ID (or, without any, the CN), as GnuTLS checks it, wildcards
 * included; by an SRV-ID for the xmpp-server or xmpps-server service; or by
 * an XmppAddr that is the bare domain. */
static bool cert_names_server(gnutls_x509_crt_t crt, const char *name)
{
    if (gnutls_x509_crt_check_hostname(crt, name)) return true;
    size_t namelen = strlen(name);
    for (unsigned i = 0;; i++) {
        char data[512];
        size_t len = sizeof data;
        int type = gnutls_x509_crt_get_subject_alt_name(crt, i, data, &len, NULL);
        if (type == GNUTLS_E_SHORT_MEMORY_BUFFER) continue; /* longer than any name */
        if (type < 0) return false;                         /* no more, or unreadable */
        if (type == GNUTLS_SAN_OTHERNAME_XMPP && len == namelen &&
            strncasecmp(data, name, namelen) == 0)
            return true;
        if (san_srv_id_names(crt, i, type, data, len, name)) return true;
    }
}

bool conn_cert_names_server(const void *der, size_t len, const char *name)
{
    gnutls_x509_crt_t crt;
    if (!der || !name || !*name || gnutls_x509_crt_init(&crt) < 0) return false;
    gnutls_datum_t d = {(unsigned char *)der, (unsigned)len};
    bool named =
        gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) == 0 && cert_names_server(crt, name);
    gnutls_x509_crt_deinit(crt);
    return named;
}

bool conn_peer_verified(conn_t *c, const char *name)
{
    if (!c || !name || !*name || !c->tls || !c->tls_done || c->tls_failed) return false;
    unsigned status = 0, n = 0;
    if (gnutls_certificate_verify_peers2(c->tls, &status) != 0 || status != 0) return false;
    const gnutls_datum_t *chain = gnutls_certificate_get_peers(c->tls, &n);
    gnutls_x509_crt_t crt;
    if (!chain || n == 0 || gnutls_x509_crt_init(&crt) < 0) return false;
    bool named = gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) == 0 &&
                 cert_names_server(crt, name);
    gnutls_x509_crt_deinit(crt);
    return named;
}

/* RFC 5929 tls-unique exists only up to TLS 1.2; RFC 9266 tls-exporter
 * needs TLS 1.3 or the extended master secret under TLS 1.2. */
int conn_channel_binding(conn_t *c, const char *type, buf_t *out)
{
    if (!c || !type || !out || !c->tls || !c->tls_done || c->tls_failed) return -1;
    gnutls_protocol_t version = gnutls_protocol_get_version(c->tls);
    gnutls_channel_binding_t cbtype;
    if (strcmp(type, "tls-unique") == 0) {
        if (version == GNUTLS_TLS1_3) return -1;
        cbtype = GNUTLS_CB_TLS_UNIQUE;
    } else if (strcmp(type, "tls-exporter") == 0) {
        if (version != GNUTLS_TLS1_3 && !gnutls_session_ext_master_secret_status(c->tls)) return -1;
        cbtype = GNUTLS_CB_TLS_EXPORTER;
    } else {
        return -1;
    }
    gnutls_datum_t d = {NULL, 0};
    if (gnutls_session_channel_binding(c->tls, cbtype, &d) < 0) return -1;
    buf_reset(out);
    buf_append(out, d.data, d.size);
    gnutls_free(d.data);
    return 0;
}

void conn_close(conn_t *c)
{
    if (!c || c->is_closed || c->app_closed) return;
    c->app_closed = true;
    set_reason(c, NULL);
    begin_close(c);
}

void conn_abort(conn_t *c)
{
    if (!c || c->is_closed) return;
    c->app_closed = true;
    set_reason(c, NULL);
    hard_close(c, NULL);
}
