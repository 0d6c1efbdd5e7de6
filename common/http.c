/* http.c — the HTTP/1.1 server of http.h: connections, parsing through
 * http-parser, the limits, routing and the answer's framing.
 *
 * A connection keeps what it has read and not yet parsed in `pending`: the
 * parser is paused at the end of each request (http_parser_pause) so that
 * bytes a client pipelined behind it are parsed only once the handler has
 * answered. One timer per connection serves both deadlines: the request's
 * (armed at its first byte) and the idle one (armed after an answer on a
 * kept-alive connection). Answers always carry Content-Length; a request
 * that asked to close, an HTTP/1.0 one without keep-alive, an Upgrade, and
 * every error this file raises itself end with Connection: close.
 *
 * A request is built when its headers are complete (the url parsed, the
 * route found), so that a streaming route gets it then: the parser stays
 * paused there until the handler asks for the body, whose bytes then go
 * to the handler instead of a buffer. A streamed answer asks the handler
 * for its next piece only once the last one has left the queue
 * (HTTP_STREAM_LOW), so a download holds one piece of memory whatever the
 * file's size and however slowly the client reads. */
#include "http.h"

#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "log.h"

/* Answers queued for one client beyond which its requests wait. */
#define HTTP_WRITE_LIMIT (1024 * 1024)
/* The write limit of a connection that streams an answer: any piece
 * queued makes it full, and it drains once the piece is all with the
 * kernel; only then is the handler asked for the next, so a download
 * holds one piece at a time (being read, or being sent). */
#define HTTP_STREAM_LOW 1

typedef struct route {
    const char *method;
    const char *prefix;
    size_t prefix_len;
    http_handler_t handler;
    void *ud;
    bool is_stream; /* http_route_stream */
} route_t;

typedef struct hconn hconn_t;

struct http_server {
    uv_loop_t *loop;
    http_opts_t opts;
    listener_t listener;
    bool is_listening;
    bool is_freed;
    route_t routes[HTTP_MAX_ROUTES];
    int nroutes;
    hconn_t *conns;
    unsigned nconns;
};

struct hconn {
    http_server_t *server;
    hconn_t *prev, *next;
    conn_t *conn;
    uv_timer_t timer;
    http_parser parser;
    buf_t pending;          /* read, not yet parsed */
    buf_t url;              /* of the request being parsed */
    buf_t headers;          /* name NUL value NUL ... */
    size_t header_bytes;    /* request line and headers so far */
    bool is_in_value;       /* the last header bytes were a value */
    bool is_in_message;     /* between a request's first byte and its end */
    bool is_complete;       /* the parser reached the end of a request */
    bool is_head_done;      /* it paused after a streaming request's headers */
    bool is_dispatching;    /* in process(): a handler answering at once */
    bool is_answered_early; /* a streaming handler answered in on_data */
    bool is_closing;
    int error_status; /* a limit a callback hit: 431 or 413 */
    http_req_t *cur;  /* the request being parsed, once its headers are in */
    http_req_t *req;  /* the request a handler holds */
};

struct http_req {
    hconn_t *hc; /* NULL once the connection closed */
    const route_t *route;
    bool is_other_method; /* no route, but one for another method: 405 */
    const char *method;
    char *path;
    char *query;
    buf_t headers;
    buf_t body;
    buf_t resp_headers;
    long long content_length;
    bool is_keep_alive;
    /* a streaming route's body: being read, paused by the handler, all in */
    bool is_reading, is_body_paused, is_body_done;
    http_body_cb_t in;
    void *in_ud;
    /* a streamed answer: the handler owes a piece, is in on_writable, the
     * end came inside on_writable (and how) */
    bool is_out, is_out_busy, is_in_writable, is_out_done, is_out_complete;
    uint64_t out_left;
    http_out_cb_t out;
    void *out_ud;
    char peer[64];
};

static void process(hconn_t *hc);

/* ---- options ------------------------------------------------------------- */

void http_opts_from_config(const config_t *cf, http_opts_t *opts, tls_ctx_t **tls)
{
    memset(opts, 0, sizeof *opts);
    opts->max_header = config_size(cf, "http.max-header");
    opts->max_body = config_size(cf, "http.max-body");
    opts->max_connections = (unsigned)config_int(cf, "http.max-connections");
    opts->request_timeout = config_ms(cf, "http.request-timeout");
    opts->idle_timeout = config_ms(cf, "http.idle-timeout");
    *tls = NULL;
    const char *cert = config_get(cf, "http.cert"), *key = config_get(cf, "http.key");
    bool has_cert = cert && *cert, has_key = key && *key;
    if (has_cert != has_key) log_fatal("%s: http.cert and http.key go together", config_file(cf));
    if (has_cert) {
        char *err = NULL;
        if (!(*tls = tls_ctx_new_server(cert, key, &err)))
            log_fatal("http: %s", err ? err : "cannot load the certificate");
        opts->tls = *tls;
    }
}

const char *http_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

/* ---- writing ------------------------------------------------------------- */

/* The status line and headers of an answer of len bytes. */
static void write_head(hconn_t *hc, int status, const char *content_type, const buf_t *extra,
                       uint64_t len, bool is_keep_alive)
{
    buf_t b = BUF_INIT;
    buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    /* A type with CR or LF would end the header: none is sent then. */
    if (content_type && !strpbrk(content_type, "\r\n"))
        buf_printf(&b, "Content-Type: %s\r\n", content_type);
    /* RFC 9110 §8.6: none on a 204; on a 304 it would be the file's. */
    if (status != 204 && status != 304)
        buf_printf(&b, "Content-Length: %llu\r\n", (unsigned long long)len);
    if (!is_keep_alive) buf_appends(&b, "Connection: close\r\n");
    if (extra && extra->len) buf_append(&b, extra->data, extra->len);
    buf_appends(&b, "\r\n");
    conn_write(hc->conn, b.data, b.len);
    buf_free(&b);
}

static void write_answer(hconn_t *hc, int status, const char *content_type, const buf_t *extra,
                         const void *body, size_t len, bool is_keep_alive, bool has_body)
{
    write_head(hc, status, content_type, extra, len, is_keep_alive);
    if (len && has_body) conn_write(hc->conn, body, len);
}

/* An error this layer raises: answered, then the connection closes. */
static void fail(hconn_t *hc, int status)
{
    if (hc->is_closing) return;
    hc->is_closing = true;
    char body[96];
    int n = snprintf(body, sizeof body, "%d %s\n", status, http_status_text(status));
    write_answer(hc, status, "text/plain; charset=utf-8", NULL, body, (size_t)n, false, true);
    uv_timer_stop(&hc->timer);
    conn_close(hc->conn);
}

/* ---- timers -------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    hconn_t *hc = t->data;
    if (hc->is_closing) return;
    http_req_t *r = hc->req;
    if (r && r->is_out && !r->is_out_busy) {
        log_debug("http: %s: reads nothing of its answer", conn_peer(hc->conn));
        hc->is_closing = true;
        conn_abort(hc->conn);
        return;
    }
    /* Else a request in a handler's hands is the handler's to answer,
     * unless its body is still on its way. */
    if (r && !r->is_reading) return;
    if (hc->is_in_message) {
        log_debug("http: %s: request not complete in time", conn_peer(hc->conn));
        fail(hc, 408);
    } else {
        hc->is_closing = true;
        conn_close(hc->conn);
    }
}

static void arm(hconn_t *hc, uint64_t ms)
{
    uv_timer_stop(&hc->timer);
    if (ms) uv_timer_start(&hc->timer, on_timer, ms, 0);
}

/* ---- requests ------------------------------------------------------------ */

static const route_t *find_route(const http_server_t *s, const char *method, const char *path,
                                 bool *is_other_method)
{
    const route_t *best = NULL;
    size_t best_len = 0;
    size_t plen = strlen(path);
    *is_other_method = false;
    for (int i = 0; i < s->nroutes; i++) {
        const route_t *r = &s->routes[i];
        if (plen < r->prefix_len || memcmp(path, r->prefix, r->prefix_len) != 0) continue;
        if (plen > r->prefix_len && r->prefix[r->prefix_len - 1] != '/' &&
            path[r->prefix_len] != '/')
            continue;
        /* HEAD is GET without the body (RFC 9110 §9.3.2). */
        bool is_head_of_get = strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0;
        if (strcmp(r->method, method) != 0 && !is_head_of_get) {
            *is_other_method = true;
            continue;
        }
        if (!best || r->prefix_len > best_len) {
            best = r;
            best_len = r->prefix_len;
        }
    }
    return best;
}

static void req_free(http_req_t *r)
{
    free(r->path);
    free(r->query);
    buf_free(&r->headers);
    buf_free(&r->body);
    buf_free(&r->resp_headers);
    free(r);
}

static char *dup_range(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (!d) log_fatal("out of memory");
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

/* The request whose headers the parser just finished, routed; NULL when
 * its url does not parse. */
static http_req_t *req_new(hconn_t *hc)
{
    http_parser *p = &hc->parser;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(hc->url.data ? hc->url.data : "", hc->url.len,
                              p->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH)))
        return NULL;
    http_req_t *r = calloc(1, sizeof *r);
    if (!r) log_fatal("out of memory");
    r->hc = hc;
    r->method = http_method_str((enum http_method)p->method);
    r->path = dup_range(hc->url.data + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    if (u.field_set & (1 << UF_QUERY))
        r->query = dup_range(hc->url.data + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    else
        r->query = dup_range("", 0);
    r->headers = hc->headers;
    buf_init(&hc->headers);
    /* ULLONG_MAX: no Content-Length (chunked, or no body). */
    r->content_length = p->content_length == (uint64_t)-1 || p->content_length > (uint64_t)LLONG_MAX
                            ? -1
                            : (long long)p->content_length;
    r->is_keep_alive = http_should_keep_alive(p) && !p->upgrade;
    snprintf(r->peer, sizeof r->peer, "%s", conn_peer(hc->conn));
    r->route = find_route(hc->server, r->method, r->path, &r->is_other_method);
    return r;
}

/* RFC 9110 §10.1.1: a client that waits for our word before sending the
 * body (curl does, past 1 KiB) gets it, once the body is wanted. */
static void send_continue(hconn_t *hc, const http_req_t *r)
{
    const char *expect = http_req_header(r, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && hc->parser.http_minor >= 1)
        conn_write(hc->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/* ---- parser callbacks ---------------------------------------------------- */

/* Headers are kept NUL-separated: a NUL of the peer's is refused (400). */
static bool count_header(hconn_t *hc, const char *at, size_t len, size_t extra)
{
    if (memchr(at, '\0', len)) {
        hc->error_status = 400;
        return false;
    }
    hc->header_bytes += len + extra;
    if (hc->header_bytes <= hc->server->opts.max_header) return true;
    hc->error_status = 431;
    return false;
}

static int on_message_begin(http_parser *p)
{
    hconn_t *hc = p->data;
    /* The first request's deadline started at accept. */
    if (!hc->is_in_message) arm(hc, hc->server->opts.request_timeout);
    hc->is_in_message = true;
    hc->header_bytes = 0;
    hc->is_in_value = false;
    buf_reset(&hc->url);
    buf_reset(&hc->headers);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    hconn_t *hc = p->data;
    if (!count_header(hc, at, len, 0)) return -1;
    buf_append(&hc->url, at, len);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    hconn_t *hc = p->data;
    if (!count_header(hc, at, len, 4)) return -1; /* ": " and CRLF */
    if (hc->is_in_value) buf_append(&hc->headers, "", 1);
    hc->is_in_value = false;
    buf_append(&hc->headers, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    hconn_t *hc = p->data;
    if (!count_header(hc, at, len, 0)) return -1;
    if (!hc->is_in_value) buf_append(&hc->headers, "", 1);
    hc->is_in_value = true;
    buf_append(&hc->headers, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    hconn_t *hc = p->data;
    if (hc->is_in_value) buf_append(&hc->headers, "", 1);
    hc->is_in_value = false;
    http_req_t *r = req_new(hc);
    if (!r) {
        hc->error_status = 400;
        return -1;
    }
    hc->cur = r;
    if (r->route && r->route->is_stream) {
        /* Its handler decides whether the body is wanted (process). */
        hc->is_head_done = true;
        http_parser_pause(p, 1);
        return 0;
    }
    if (r->content_length > 0 && (uint64_t)r->content_length > hc->server->opts.max_body) {
        hc->error_status = 413;
        return -1;
    }
    send_continue(hc, r);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    hconn_t *hc = p->data;
    http_req_t *r = hc->cur;
    if (r->is_reading) {
        arm(hc, hc->server->opts.request_timeout); /* from its last byte */
        r->in.on_data(r, at, len, r->in_ud);
        /* Answered there (r is gone): read no further. */
        return hc->is_answered_early ? -1 : 0;
    }
    if (r->body.len + len > hc->server->opts.max_body) {
        hc->error_status = 413;
        return -1;
    }
    buf_append(&r->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hconn_t *hc = p->data;
    hc->is_complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- handing requests over ----------------------------------------------- */

static void answer_unrouted(http_req_t *r)
{
    const char *text = r->is_other_method ? "method not allowed\n" : "not found\n";
    http_respond(r, r->is_other_method ? 405 : 404, "text/plain; charset=utf-8", text,
                 strlen(text));
}

/* A streaming route's request has its headers: to its handler. */
static void start_stream(hconn_t *hc)
{
    http_req_t *r = hc->cur;
    hc->req = r;
    conn_pause(hc->conn);
    uv_timer_stop(&hc->timer); /* the handler's lookups are not the client's delay */
    r->route->handler(r, r->route->ud);
}

/* The parser reached the end of a request: the streaming handler's body
 * is in, or a request goes to its handler. */
static void end_message(hconn_t *hc)
{
    http_req_t *r = hc->cur;
    hc->cur = NULL;
    hc->is_in_message = false;
    uv_timer_stop(&hc->timer);
    conn_pause(hc->conn);
    if (r->is_reading) {
        r->is_reading = false;
        r->is_body_done = true;
        r->in.on_end(r, r->in_ud);
        return;
    }
    if (!r->body.data) buf_reserve(&r->body, 1);
    hc->req = r;
    if (!r->route) {
        answer_unrouted(r);
        return;
    }
    r->route->handler(r, r->route->ud);
}

static bool may_parse(const hconn_t *hc)
{
    return !hc->req || (hc->req->is_reading && !hc->req->is_body_paused);
}

/* Parse what is pending until a request goes to a handler, the bytes run
 * out, or the connection fails. */
static void process(hconn_t *hc)
{
    hc->is_dispatching = true;
    hc->is_answered_early = false;
    /* A client that pipelines requests and reads no answers is not read
     * further until its queue drains (on_drain). */
    while (may_parse(hc) && !hc->is_closing && hc->pending.len && !conn_is_full(hc->conn)) {
        size_t n =
            http_parser_execute(&hc->parser, &parser_settings, hc->pending.data, hc->pending.len);
        enum http_errno e = HTTP_PARSER_ERRNO(&hc->parser);
        if (hc->is_answered_early) break; /* that answer closes the connection */
        if (hc->error_status) {
            fail(hc, hc->error_status);
            break;
        }
        if (e == HPE_HEADER_OVERFLOW) {
            fail(hc, 431);
            break;
        }
        if (e != HPE_OK && e != HPE_PAUSED) {
            log_debug("http: %s: %s", conn_peer(hc->conn), http_errno_description(e));
            fail(hc, 400);
            break;
        }
        /* An Upgrade request stops the parser before the bytes that follow
         * it: they are not HTTP, and nothing here speaks them yet. */
        if (hc->parser.upgrade && !hc->is_complete) n = hc->pending.len;
        buf_consume(&hc->pending, n);
        if (hc->is_head_done) {
            hc->is_head_done = false;
            start_stream(hc);
        } else if (hc->is_complete) {
            hc->is_complete = false;
            end_message(hc);
        } else if (n == 0) {
            break;
        }
    }
    hc->is_dispatching = false;
    if (hc->is_closing) return;
    if (hc->req) {
        if (hc->req->is_reading && !hc->req->is_body_paused) conn_resume(hc->conn);
        return;
    }
    if (conn_is_full(hc->conn)) {
        conn_pause(hc->conn);
        return;
    }
    conn_resume(hc->conn);
    if (!hc->is_in_message) arm(hc, hc->server->opts.idle_timeout);
}

/* ---- streaming ----------------------------------------------------------- */

void http_req_read_body(http_req_t *r, const http_body_cb_t *cb, void *ud)
{
    r->in = *cb;
    r->in_ud = ud;
    hconn_t *hc = r->hc;
    if (!hc || hc->is_closing) {
        r->in.on_abort(r, ud);
        return;
    }
    r->is_reading = true;
    send_continue(hc, r);
    arm(hc, hc->server->opts.request_timeout);
    http_parser_pause(&hc->parser, 0);
    if (!hc->is_dispatching) process(hc);
}

void http_req_pause_body(http_req_t *r)
{
    if (r->is_body_paused || !r->is_reading) return;
    r->is_body_paused = true;
    if (!r->hc) return;
    conn_pause(r->hc->conn);
    uv_timer_stop(&r->hc->timer); /* our delay, not the client's */
}

void http_req_resume_body(http_req_t *r)
{
    if (!r->is_body_paused) return;
    r->is_body_paused = false;
    hconn_t *hc = r->hc;
    if (!hc || !r->is_reading) return;
    arm(hc, hc->server->opts.request_timeout);
    if (!hc->is_dispatching) process(hc);
}
const char *http_req_method(const http_req_t *r)
{
    return r->method;
}

const char *http_req_path(const http_req_t *r)
{
    return r->path;
}

const char *http_req_query(const http_req_t *r)
{
    return r->query;
}

const char *http_req_body(const http_req_t *r, size_t *len)
{
    if (len) *len = r->body.len;
    return r->body.data;
}

const char *http_req_peer(const http_req_t *r)
{
    return r->peer;
}

long long http_req_content_length(const http_req_t *r)
{
    return r->content_length;
}

/* The value of header name in headers (name NUL value NUL ...), or NULL. */
static const char *find_header(const buf_t *headers, const char *name)
{
    const char *p = headers->data, *end = p + headers->len;
    while (p && p < end) {
        const char *value = p + strlen(p) + 1;
        if (value >= end) break;
        if (strcasecmp(p, name) == 0) return value;
        p = value + strlen(value) + 1;
    }
    return NULL;
}

const char *http_req_header(const http_req_t *r, const char *name)
{
    return find_header(&r->headers, name);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int decode(const char *s, size_t len, char *out, size_t size, bool is_form)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len) return -1;
            int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (is_form && c == '+') {
            c = ' ';
        }
        if (n + 1 >= size) return -1;
        out[n++] = c;
    }
    if (size == 0) return -1;
    out[n] = '\0';
    return (int)n;
}

int http_percent_decode(const char *s, size_t len, char *out, size_t size)
{
    return decode(s, len, out, size, false);
}

int http_query_param(const http_req_t *r, const char *name, char *out, size_t size)
{
    size_t name_len = strlen(name);
    const char *p = r->query;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t key_len = eq ? (size_t)(eq - p) : len;
        if (key_len == name_len && memcmp(p, name, name_len) == 0) {
            if (!eq) return decode("", 0, out, size, true) < 0 ? -1 : 1;
            return decode(eq + 1, len - key_len - 1, out, size, true) < 0 ? -1 : 1;
        }
        p += len;
        if (*p == '&') p++;
    }
    return 0;
}

void http_resp_header(http_req_t *r, const char *name, const char *value)
{
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return;
    buf_printf(&r->resp_headers, "%s: %s\r\n", name, value);
}

/* The answer to r is written (or abandoned): free it, then close or go on
 * to what the client pipelined. */
static void req_done(http_req_t *r, bool is_keep_alive)
{
    hconn_t *hc = r->hc;
    if (hc) {
        hc->req = NULL;
        if (hc->cur == r) hc->cur = NULL;
    }
    req_free(r);
    if (!hc || hc->is_closing) return;
    if (!is_keep_alive) {
        hc->is_closing = true;
        conn_close(hc->conn);
        return;
    }
    http_parser_pause(&hc->parser, 0);
    if (!hc->is_dispatching) process(hc);
}

/* A streaming request answered before its body was read in full leaves
 * the rest of the body unread on the connection: it closes after the
 * answer. */
static void note_answered(http_req_t *r)
{
    if (!r->route || !r->route->is_stream || r->is_body_done) return;
    r->is_keep_alive = false;
    if (r->is_reading && r->hc) r->hc->is_answered_early = true;
    r->is_reading = false;
}

void http_respond(http_req_t *r, int status, const char *content_type, const void *body, size_t len)
{
    hconn_t *hc = r->hc;
    note_answered(r);
    if (hc && !hc->is_closing)
        /* A HEAD answer says the length of what a GET would get, and sends none. */
        write_answer(hc, status, content_type, &r->resp_headers, body, len, r->is_keep_alive,
                     strcmp(r->method, "HEAD") != 0);
    req_done(r, r->is_keep_alive);
}

static void out_finish(http_req_t *r, bool is_complete)
{
    r->is_out = false;
    if (r->hc) conn_set_write_limit(r->hc->conn, HTTP_WRITE_LIMIT);
    if (r->out.on_done) r->out.on_done(r, is_complete, r->out_ud);
    req_done(r, r->is_keep_alive && is_complete);
}

/* The streamed answer ends: now, or once on_writable returns. */
static void out_end(http_req_t *r, bool is_complete)
{
    if (r->is_in_writable) {
        r->is_out_done = true;
        r->is_out_complete = is_complete;
        return;
    }
    out_finish(r, is_complete);
}

/* Ask the handler for pieces while the client keeps up. */
static void out_pump(http_req_t *r)
{
    while (r->hc && !r->is_out_busy && !r->is_out_done) {
        if (conn_is_full(r->hc->conn)) {
            /* on_drain goes on; a client that reads nothing is cut off */
            arm(r->hc, r->hc->server->opts.request_timeout);
            return;
        }
        uv_timer_stop(&r->hc->timer);
        r->is_out_busy = true;
        r->is_in_writable = true;
        r->out.on_writable(r, r->out_ud);
        r->is_in_writable = false;
    }
    if (r->is_out_done) out_finish(r, r->is_out_complete);
}

void http_respond_stream(http_req_t *r, int status, const char *content_type, uint64_t len,
                         const http_out_cb_t *cb, void *ud)
{
    r->out = *cb;
    r->out_ud = ud;
    hconn_t *hc = r->hc;
    note_answered(r);
    if (!hc || hc->is_closing) {
        out_finish(r, false);
        return;
    }
    write_head(hc, status, content_type, &r->resp_headers, len, r->is_keep_alive);
    if (strcmp(r->method, "HEAD") == 0 || len == 0) {
        out_finish(r, true);
        return;
    }
    r->is_out = true;
    r->out_left = len;
    conn_set_write_limit(hc->conn, HTTP_STREAM_LOW);
    out_pump(r);
}

void http_resp_write(http_req_t *r, rbuf_t *piece)
{
    r->is_out_busy = false;
    hconn_t *hc = r->hc;
    size_t len = piece->len;
    if (!hc || hc->is_closing) {
        rbuf_unref(piece);
        out_end(r, false);
        return;
    }
    if (len == 0 || len > r->out_left) {
        if (len)
            log_err("http: %s: a streamed answer of %zu bytes more than announced", r->peer,
                    len - (size_t)r->out_left);
        rbuf_unref(piece);
        hc->is_closing = true;
        conn_abort(hc->conn);
        out_end(r, false);
        return;
    }
    conn_write_rbuf(hc->conn, piece);
    rbuf_unref(piece);
    r->out_left -= len;
    if (r->out_left == 0)
        out_end(r, true);
    else if (!r->is_in_writable)
        out_pump(r);
}

/* ---- connections --------------------------------------------------------- */

static void on_read(conn_t *c, const char *data, size_t len)
{
    hconn_t *hc = conn_data(c);
    if (hc->is_closing) return;
    buf_append(&hc->pending, data, len);
    /* Bytes beyond a request in a handler's hands wait (unless they are
     * the body it reads); a client that keeps sending meanwhile is paused
     * by the conn, so this stays within one read. */
    if (!may_parse(hc)) return;
    process(hc);
}

static void on_drain(conn_t *c)
{
    hconn_t *hc = conn_data(c);
    if (hc->is_closing) return;
    if (!hc->req)
        process(hc);
    else if (hc->req->is_out && !hc->req->is_out_busy)
        out_pump(hc->req);
}

static void maybe_free_server(http_server_t *s)
{
    if (s->is_freed && !s->is_listening && s->nconns == 0) free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    hconn_t *hc = h->data;
    http_server_t *s = hc->server;
    buf_free(&hc->pending);
    buf_free(&hc->url);
    buf_free(&hc->headers);
    free(hc);
    s->nconns--;
    maybe_free_server(s);
}

static void on_conn_close(conn_t *c, const char *reason)
{
    hconn_t *hc = conn_data(c);
    http_server_t *s = hc->server;
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        s->conns = hc->next;
    if (hc->next) hc->next->prev = hc->prev;
    if (hc->cur && hc->cur != hc->req) req_free(hc->cur); /* no handler has it */
    hc->cur = NULL;
    hc->conn = NULL;
    http_req_t *r = hc->req;
    hc->req = NULL;
    if (r) {
        r->hc = NULL;
        if (r->is_reading) {
            r->is_reading = false;
            r->in.on_abort(r, r->in_ud);
        } else if (r->is_out && !r->is_out_busy) {
            out_finish(r, false);
        }
    }
    uv_close((uv_handle_t *)&hc->timer, on_timer_closed);
}

static const conn_cb_t conn_cb = {
    .on_read = on_read,
    .on_drain = on_drain,
    .on_close = on_conn_close,
};

static void on_connection(uv_stream_t *server, int status)
{
    http_server_t *s = server->data;
    if (status < 0) {
        log_warn("http accept: %s", uv_strerror(status));
        return;
    }
    hconn_t *hc = calloc(1, sizeof *hc);
    if (!hc) log_fatal("out of memory");
    hc->server = s;
    if (!(hc->conn = conn_accept(server, &conn_cb, hc))) {
        free(hc);
        return;
    }
    s->nconns++;
    hc->next = s->conns;
    if (s->conns) s->conns->prev = hc;
    s->conns = hc;
    uv_timer_init(s->loop, &hc->timer);
    hc->timer.data = hc;
    conn_set_write_limit(hc->conn, HTTP_WRITE_LIMIT);
    http_parser_init(&hc->parser, HTTP_REQUEST);
    hc->parser.data = hc;
    if (s->opts.tls) {
        conn_set_alpn(hc->conn, "http/1.1");
        conn_starttls(hc->conn, s->opts.tls, true, NULL);
    }
    if (s->nconns > s->opts.max_connections) {
        log_debug("http: %s refused: %u connections", conn_peer(hc->conn), s->nconns - 1);
        fail(hc, 503);
        return;
    }
    /* The first request's deadline runs from accept: a client that
     * connects and sends nothing holds a slot no longer than that. */
    hc->is_in_message = s->opts.request_timeout != 0;
    arm(hc, s->opts.request_timeout ? s->opts.request_timeout : s->opts.idle_timeout);
}

int http_instance_address(const char *addr, int index, char *out, size_t size)
{
    if (index <= 1) return snprintf(out, size, "%s", addr) < (int)size ? 0 : -1;
    if (strncmp(addr, "unix:", 5) == 0)
        return snprintf(out, size, "%s-%d", addr, index) < (int)size ? 0 : -1;
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1)) return -1;
    long port = strtol(colon + 1, NULL, 10) + index - 1;
    if (port > 65535) return -1;
    return snprintf(out, size, "%.*s:%ld", (int)(colon - addr), addr, port) < (int)size ? 0 : -1;
}

/* ---- the server ---------------------------------------------------------- */

http_server_t *http_server_new(uv_loop_t *loop, const http_opts_t *opts)
{
    http_server_t *s = calloc(1, sizeof *s);
    if (!s) log_fatal("out of memory");
    s->loop = loop;
    s->opts = *opts;
    if (s->opts.max_connections == 0) s->opts.max_connections = 1;
    return s;
}

int http_listen(http_server_t *s, const char *addr)
{
    if (s->is_listening) return UV_EALREADY;
    int rc = conn_listen(s->loop, &s->listener, addr, false, on_connection);
    if (rc < 0) return rc;
    s->listener.h.tcp.data = s;
    s->is_listening = true;
    return 0;
}

void http_route(http_server_t *s, const char *method, const char *prefix, http_handler_t h,
                void *ud)
{
    if (s->nroutes == HTTP_MAX_ROUTES || !*prefix) log_fatal("http: cannot route %s", prefix);
    s->routes[s->nroutes++] = (route_t){method, prefix, strlen(prefix), h, ud, false};
}

void http_route_stream(http_server_t *s, const char *method, const char *prefix, http_handler_t h,
                       void *ud)
{
    http_route(s, method, prefix, h, ud);
    s->routes[s->nroutes - 1].is_stream = true;
}

unsigned http_server_connections(const http_server_t *s)
{
    return s->nconns;
}

static void on_listener_closed(uv_handle_t *h)
{
    http_server_t *s = h->data;
    s->is_listening = false;
    maybe_free_server(s);
}

void http_server_free(http_server_t *s)
{
    s->is_freed = true;
    for (hconn_t *hc = s->conns, *next; hc; hc = next) {
        next = hc->next;
        hc->is_closing = true;
        conn_abort(hc->conn);
    }
    if (s->is_listening) {
        uv_handle_t *h = (uv_handle_t *)&s->listener.h;
        if (h->type == UV_NAMED_PIPE) {
            char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
            size_t len = sizeof path;
            if (uv_pipe_getsockname(&s->listener.h.pipe, path, &len) == 0 && len > 0 &&
                path[0] == '/')
                unlink(path);
        }
        uv_close(h, on_listener_closed);
        return;
    }
    maybe_free_server(s);
}
