/* http.h — an HTTP/1.1 server on our conn (libuv + GnuTLS), for the metrics
 * endpoint of every daemon and the sm's admin API, and later for upload,
 * WebSocket and BOSH.
 *
 * The bytes are parsed by Debian's http-parser (request line, headers,
 * chunked or Content-Length bodies, keep-alive); this file only routes and
 * answers. A handler is registered for a method and a path prefix; the
 * longest prefix that matches the request's path wins; HEAD goes to a GET
 * handler, whose answer loses its body. A path that some prefix matches
 * for another method only gets 405, none 404. A client that sends
 * Expect: 100-continue gets 100 Continue once its headers are within the
 * limits.
 *
 * One request at a time per connection: reading stops while a handler
 * holds the request, so a handler may answer later (after a storage call)
 * with http_respond(); bytes a client pipelined behind it wait in the
 * connection and are parsed after the answer. A request whose connection
 * closed meanwhile is still answered by its handler (http_respond frees it
 * and writes nothing): every request handed to a handler must be answered
 * exactly once.
 *
 * Limits (http_opts_t, from the http section of hearth.xml): the request
 * line and headers over max_header bytes get 431, a body over max_body 413
 * (at once when Content-Length says so), a connection beyond
 * max_connections 503, a request not read in full within request_timeout
 * of its first byte 408; a kept-alive connection silent for idle_timeout is
 * closed. After any of these answers, and after a parse error (400), the
 * connection closes. An Upgrade request (WebSocket) is answered like any
 * other, and the connection then closes: nothing here speaks what would
 * follow. A client that pipelines requests without reading the
 * answers is not read further while 1 MiB of them wait for it. With a TLS context, every connection
 * starts with the TLS handshake (HTTPS, ALPN http/1.1).
 *
 * Streaming, for bodies too big to hold (file upload): a route added with
 * http_route_stream() gets its request as soon as the headers are in, with
 * no body read yet and max_body not applied. The handler refuses it at
 * once (http_respond: the body is never read and the connection closes
 * after the answer) or, later if it must first look something up, calls
 * http_req_read_body(); the body's bytes then reach on_data as they
 * arrive, with the request deadline counted from the last byte rather
 * than the first, and on_end once it is all in (answer then), or
 * on_abort if the connection breaks first (answer anyway: it only frees
 * the request). An answer may stream as well (http_respond_stream): the
 * handler gives its pieces one at a time when the layer asks, so that a
 * file is never held whole; a client that reads nothing of it for
 * request_timeout is cut off. */
#ifndef HEARTH_HTTP_H
#define HEARTH_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "config.h"
#include "tls.h"

typedef struct http_server http_server_t;
typedef struct http_req http_req_t;

typedef struct http_opts {
    size_t max_header;        /* request line and headers, bytes */
    size_t max_body;          /* bytes */
    unsigned max_connections; /* open at once on this server */
    uint64_t request_timeout; /* ms from a request's first byte to its last; 0 never */
    uint64_t idle_timeout;    /* ms a kept-alive connection may stay silent; 0 never */
    tls_ctx_t *tls;           /* HTTPS when set; the caller owns it */
} http_opts_t;

/* The limits of the shared http section of the config. When http.cert and
 * http.key are both set, *tls is a new server context for them (the caller
 * frees it) and opts->tls points at it; else both are NULL. Fatal if the
 * files do not load. */
void http_opts_from_config(const config_t *cf, http_opts_t *opts, tls_ctx_t **tls);

/* A handler owns req until it calls http_respond(). */
typedef void (*http_handler_t)(http_req_t *req, void *ud);

/* opts is copied. */
http_server_t *http_server_new(uv_loop_t *loop, const http_opts_t *opts);
/* Listen on addr ("127.0.0.1:9100", "[::1]:9100", "unix:/path"). 0 or a
 * libuv error. One address per server. */
int http_listen(http_server_t *s, const char *addr);
/* The address of instance index (c2s-2 is 2) of a daemon configured with
 * addr: the port moved up by index - 1, a Unix socket path with "-INDEX"
 * appended for index > 1, so that every process of one daemon has its
 * own. 0, or -1 if addr is not host:port or unix:path, or out too small. */
int http_instance_address(const char *addr, int index, char *out, size_t size);
/* Requests with this method ("GET", "POST", ...) whose path is prefix, or
 * starts with prefix followed by '/' (or prefix ends with '/'), go to h.
 * prefix must outlive the server (a literal). Up to HTTP_MAX_ROUTES. */
#define HTTP_MAX_ROUTES 32
void http_route(http_server_t *s, const char *method, const char *prefix, http_handler_t h,
                void *ud);
/* The same for a streaming route: h gets the request with its headers only
 * (above). */
void http_route_stream(http_server_t *s, const char *method, const char *prefix, http_handler_t h,
                       void *ud);
/* Close the listener and every connection; requests a handler still holds
 * are freed when it answers them. */
void http_server_free(http_server_t *s);
/* Connections open now. */
unsigned http_server_connections(const http_server_t *s);

/* The request: method ("GET"), the path without query (still %-encoded,
 * NUL-terminated), the query (after '?', or "") and the body (its length
 * in *len; NUL-terminated as well, but may hold NULs). */
const char *http_req_method(const http_req_t *r);
const char *http_req_path(const http_req_t *r);
const char *http_req_query(const http_req_t *r);
const char *http_req_body(const http_req_t *r, size_t *len);
/* The value of header name (case-insensitive; the first if repeated), or
 * NULL. */
const char *http_req_header(const http_req_t *r, const char *name);
/* Percent-decode (RFC 3986 §2.1) len bytes of s into out (size bytes,
 * NUL-terminated): the decoded length, or -1 when a %XX is malformed or
 * %00, or out is too small. http-parser leaves this to its caller. */
int http_percent_decode(const char *s, size_t len, char *out, size_t size);
/* The value of the query parameter name (application/x-www-form-urlencoded:
 * '+' is a space), decoded into out: 1, 0 when absent, -1 when malformed
 * or longer than out. */
int http_query_param(const http_req_t *r, const char *name, char *out, size_t size);
/* The connection's peer, as conn_peer(). */
const char *http_req_peer(const http_req_t *r);
/* The request's Content-Length, or -1 when it has none (chunked). */
long long http_req_content_length(const http_req_t *r);

/* ---- streaming (http_route_stream) ---- */
typedef struct http_body_cb {
    /* Bytes of the body, valid during the call. The handler may answer
     * here (a refusal): nothing more is read and the connection closes. */
    void (*on_data)(http_req_t *r, const char *data, size_t len, void *ud);
    /* The last byte is in: answer. */
    void (*on_end)(http_req_t *r, void *ud);
    /* The connection broke (or timed out) first: answer anyway. */
    void (*on_abort)(http_req_t *r, void *ud);
} http_body_cb_t;
/* Start reading the body of a streaming request (cb is copied). When its
 * connection is already gone, on_abort runs before this returns. */
void http_req_read_body(http_req_t *r, const http_body_cb_t *cb, void *ud);
/* Stop and restart reading the body (the handler's writes lag behind):
 * what was already read may still reach on_data after a pause. */
void http_req_pause_body(http_req_t *r);
void http_req_resume_body(http_req_t *r);

typedef struct http_out_cb {
    /* Produce the next piece and give it with http_resp_write, now or
     * later; this is not called again before that. */
    void (*on_writable)(http_req_t *r, void *ud);
    /* The answer is finished (is_complete) or abandoned (the connection
     * broke or timed out): release what the handler held; r is freed when
     * this returns. Called exactly once, never from inside on_writable. */
    void (*on_done)(http_req_t *r, bool is_complete, void *ud);
} http_out_cb_t;
/* Answer with a body of len bytes that the handler produces piece by
 * piece (cb is copied); a HEAD answer (or len 0) is done at once. */
void http_respond_stream(http_req_t *r, int status, const char *content_type, uint64_t len,
                         const http_out_cb_t *cb, void *ud);
/* The next piece of a streamed answer (its reference is taken): at most
 * what is left of len, else the connection is cut (a handler's bug). An
 * empty piece abandons the answer (the file could not be read): the
 * connection is cut, since the client was promised len bytes. */
void http_resp_write(http_req_t *r, rbuf_t *piece);

/* A header for the answer, before http_respond (copied; a name or value
 * with CR or LF is dropped). Content-Length, Content-Type and Connection
 * are the server's. */
void http_resp_header(http_req_t *r, const char *name, const char *value);
/* Answer and free r: status (200, 404, ...), the Content-Type (NULL for
 * none) and the body. */
void http_respond(http_req_t *r, int status, const char *content_type, const void *body,
                  size_t len);
/* The reason phrase of a status ("Not Found"), "Unknown" if we do not
 * know it. */
const char *http_status_text(int status);

#endif
