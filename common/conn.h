/* conn.h — a stream connection on the libuv loop (TCP or Unix socket), with
 * optional TLS, a bounded write queue and gathered writes.
 *
 * Writes are queued, not sent: once per loop turn (a uv_check handle) every
 * connection with queued data is flushed with a single vectored write, so
 * many stanzas to one peer cost one syscall. A buffer written to many
 * connections is one rbuf_t referenced by each queue. conn_is_full() tells a
 * relay to stop reading from whoever feeds this connection; on_drain tells it
 * to start again. After conn_starttls() both directions go through GnuTLS.
 *
 * Callbacks run on the loop; a conn is freed right after its on_close. */
#ifndef HEARTH_CONN_H
#define HEARTH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "buf.h"
#include "tls.h"

typedef struct conn conn_t;

typedef struct conn_cb {
    /* Plaintext bytes arrived. */
    void (*on_read)(conn_t *c, const char *data, size_t len);
    /* The write queue fell below half the limit after conn_is_full() was true. */
    void (*on_drain)(conn_t *c);
    /* An outgoing connection is established (status 0) or failed (a libuv
     * error; on_close follows). */
    void (*on_connect)(conn_t *c, int status);
    /* The TLS handshake finished (0) or failed (negative; on_close follows). */
    void (*on_tls)(conn_t *c, int status);
    /* Closed: reason is NULL after conn_close/conn_abort, else why (peer
     * closed, a libuv or TLS error). c is freed when this returns. */
    void (*on_close)(conn_t *c, const char *reason);
} conn_cb_t;

/* Bind and listen: addr is "127.0.0.1:5347", "[::1]:5222" or
 * "unix:/path/to/socket". reuseport sets SO_REUSEPORT (several processes
 * on one port). on_conn is libuv's connection callback; in it, call
 * conn_accept(). The listener is a uv_stream_t the caller owns. Returns 0 or
 * a libuv error. */
typedef struct listener {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    void *data;
} listener_t;
int conn_listen(uv_loop_t *loop, listener_t *l, const char *addr, bool reuseport,
                uv_connection_cb on_conn);
void conn_listener_close(listener_t *l);

conn_t *conn_accept(uv_stream_t *server, const conn_cb_t *cb, void *ud);
/* Connect to addr (as for conn_listen; numeric hosts only). on_connect tells
 * the outcome. NULL only if addr does not parse. */
conn_t *conn_connect(uv_loop_t *loop, const char *addr, const conn_cb_t *cb, void *ud);
/* The same from a given local IP address (a load generator spreads its
 * connections over 127.0.0.x to go past one address's 64k ports). NULL
 * also if source does not parse, or addr is a Unix socket. */
conn_t *conn_connect_from(uv_loop_t *loop, const char *addr, const char *source,
                          const conn_cb_t *cb, void *ud);

void *conn_data(const conn_t *c);
void conn_set_data(conn_t *c, void *ud);
uv_loop_t *conn_loop(const conn_t *c);
/* "127.0.0.1:40000", "[::1]:40000" or "unix". */
const char *conn_peer(const conn_t *c);
/* The peer is on this machine (loopback address or Unix socket). */
bool conn_is_local(const conn_t *c);
/* An address (as for conn_listen) on loopback: "127.x.x.x:P" or
 * "[::1]:P". */
bool conn_addr_is_loopback(const char *addr);

/* Queue bytes (copied) or a shared buffer (a reference is taken). */
void conn_write(conn_t *c, const void *data, size_t len);
void conn_write_rbuf(conn_t *c, rbuf_t *r);
/* Write what is queued now rather than at the end of the loop turn (the
 * load generator's clients that write each stanza on its own). */
void conn_write_now(conn_t *c);
size_t conn_queued(const conn_t *c);
/* Bytes queued beyond which conn_is_full() is true (default 1 MiB). */
void conn_set_write_limit(conn_t *c, size_t limit);
bool conn_is_full(const conn_t *c);

/* Stop and restart delivering reads (flow control). */
void conn_pause(conn_t *c);
void conn_resume(conn_t *c);
bool conn_is_paused(const conn_t *c);

/* Start TLS. Anything queued before is sent in the clear first; everything
 * after is encrypted. server_name: SNI and the name verified (client side).
 * Returns 0, or -1 if TLS is already on. */
int conn_starttls(conn_t *c, tls_ctx_t *ctx, bool is_server, const char *server_name);
/* Before conn_starttls: offer (client) or accept (server) this ALPN
 * protocol, e.g. "xmpp-client" for direct TLS (XEP-0368). protocol must
 * outlive the connection (a string literal). */
void conn_set_alpn(conn_t *c, const char *protocol);
bool conn_has_tls(const conn_t *c);
/* After the handshake: the peer presented a certificate that chains to the
 * context's trusted CAs, is in its validity period and names `name`, an
 * XMPP server's domain: as a DNS-ID (or CN), an SRV-ID _xmpp-server.NAME or
 * _xmpps-server.NAME, or an XmppAddr NAME. Server side, the context must ask
 * for one (tls_ctx_trust). */
bool conn_peer_verified(conn_t *c, const char *name);
/* The same naming rule alone, on a certificate (DER, len bytes) read from
 * a file rather than presented by a peer: whether it names the server
 * domain `name`. Chain and dates are not looked at (hearthctl check). */
bool conn_cert_names_server(const void *der, size_t len, const char *name);
/* Channel binding data for SCRAM-*-PLUS: type "tls-unique" or
 * "tls-exporter". 0 and the raw bytes in out, or -1. */
int conn_channel_binding(conn_t *c, const char *type, buf_t *out);

/* Send what is queued, then close. */
void conn_close(conn_t *c);
/* Close now, dropping the queue. */
void conn_abort(conn_t *c);

#endif
