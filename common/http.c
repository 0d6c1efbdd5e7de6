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
 * every error this file raises itself end with Connection: close. */
#include "http.h"

#include <http_parser.h>
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

typedef struct route {
    const char *method;
    const char *prefix;
    size_t prefix_len;
    http_handler_t handler;
    void *ud;
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
    buf_t pending; /* read, not yet parsed */
    buf_t url;     /* of the request being parsed */
    buf_t headers; /* name NUL value NUL ... */
    buf_t body;
    size_t header_bytes; /* request line and headers so far */
    bool is_in_value;    /* the last header bytes were a value */
    bool is_in_message;  /* between a request's first byte and its end */
    bool is_complete;    /* the parser reached the end of a request */
    bool is_dispatching; /* in process(): a handler answering at once */
    bool is_closing;
    int error_status; /* a limit a callback hit: 431 or 413 */
    http_req_t *req;  /* the request a handler holds */
};

struct http_req {
    hconn_t *hc; /* NULL once the connection closed */
    const char *method;
    char *path;
    char *query;
    buf_t headers;
    buf_t body;
    buf_t resp_headers;
    bool is_keep_alive;
    char peer[64];
};

static void process(hconn_t *hc);
static const char *find_header(const buf_t *headers, const char *name);

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
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* ---- writing ------------------------------------------------------------- */

static void write_answer(hconn_t *hc, int status, const char *content_type, const buf_t *extra,
                         const void *body, size_t len, bool is_keep_alive, bool has_body)
{
    buf_t b = BUF_INIT;
    buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    if (content_type) buf_printf(&b, "Content-Type: %s\r\n", content_type);
    buf_printf(&b, "Content-Length: %zu\r\n", len);
    if (!is_keep_alive) buf_appends(&b, "Connection: close\r\n");
    if (extra && extra->len) buf_append(&b, extra->data, extra->len);
    buf_appends(&b, "\r\n");
    conn_write(hc->conn, b.data, b.len);
    buf_free(&b);
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
    if (hc->is_closing || hc->req) return;
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
    buf_reset(&hc->body);
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
    /* ULLONG_MAX: no Content-Length (chunked, or no body). */
    if (p->content_length != (uint64_t)-1 && p->content_length > hc->server->opts.max_body) {
        hc->error_status = 413;
        return -1;
    }
    /* RFC 9110 §10.1.1: a client that waits for our word before sending
     * the body (curl does, past 1 KiB) gets it, once the size is known to
     * be acceptable. */
    const char *expect = find_header(&hc->headers, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1)
        conn_write(hc->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    hconn_t *hc = p->data;
    if (hc->body.len + len > hc->server->opts.max_body) {
        hc->error_status = 413;
        return -1;
    }
    buf_append(&hc->body, at, len);
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

/* The parser reached the end of a request: hand it to its handler. */
static void dispatch(hconn_t *hc)
{
    http_parser *p = &hc->parser;
    hc->is_complete = false;
    hc->is_in_message = false;
    uv_timer_stop(&hc->timer);
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(hc->url.data ? hc->url.data : "", hc->url.len,
                              p->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        fail(hc, 400);
        return;
    }
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
    r->body = hc->body;
    buf_init(&hc->body);
    if (!r->body.data) buf_reserve(&r->body, 1);
    r->is_keep_alive = http_should_keep_alive(p) && !p->upgrade;
    snprintf(r->peer, sizeof r->peer, "%s", conn_peer(hc->conn));
    hc->req = r;
    conn_pause(hc->conn);

    bool is_other_method;
    const route_t *route = find_route(hc->server, r->method, r->path, &is_other_method);
    if (!route) {
        const char *text = is_other_method ? "method not allowed\n" : "not found\n";
        http_respond(r, is_other_method ? 405 : 404, "text/plain; charset=utf-8", text,
                     strlen(text));
        return;
    }
    route->handler(r, route->ud);
}

/* Parse what is pending until a request goes to a handler, the bytes run
 * out, or the connection fails. */
static void process(hconn_t *hc)
{
    hc->is_dispatching = true;
    /* A client that pipelines requests and reads no answers is not read
     * further until its queue drains (on_drain). */
    while (!hc->req && !hc->is_closing && hc->pending.len && !conn_is_full(hc->conn)) {
        size_t n =
            http_parser_execute(&hc->parser, &parser_settings, hc->pending.data, hc->pending.len);
        enum http_errno e = HTTP_PARSER_ERRNO(&hc->parser);
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
        if (hc->is_complete)
            dispatch(hc);
        else if (n == 0)
            break;
    }
    hc->is_dispatching = false;
    if (hc->is_closing || hc->req) return;
    if (conn_is_full(hc->conn)) {
        conn_pause(hc->conn);
        return;
    }
    conn_resume(hc->conn);
    if (!hc->is_in_message) arm(hc, hc->server->opts.idle_timeout);
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

void http_respond(http_req_t *r, int status, const char *content_type, const void *body, size_t len)
{
    hconn_t *hc = r->hc;
    if (!hc || hc->is_closing) {
        if (hc) hc->req = NULL;
        req_free(r);
        return;
    }
    /* A HEAD answer says the length of what a GET would get, and sends none. */
    write_answer(hc, status, content_type, &r->resp_headers, body, len, r->is_keep_alive,
                 strcmp(r->method, "HEAD") != 0);
    bool is_keep_alive = r->is_keep_alive;
    hc->req = NULL;
    req_free(r);
    if (!is_keep_alive) {
        hc->is_closing = true;
        conn_close(hc->conn);
        return;
    }
    http_parser_pause(&hc->parser, 0);
    if (!hc->is_dispatching) process(hc);
}

/* ---- connections --------------------------------------------------------- */

static void on_read(conn_t *c, const char *data, size_t len)
{
    hconn_t *hc = conn_data(c);
    if (hc->is_closing) return;
    buf_append(&hc->pending, data, len);
    /* Bytes beyond a request in a handler's hands wait; a client that
     * keeps sending meanwhile is paused by the conn, so this stays within
     * one read. */
    if (hc->req) return;
    process(hc);
}

static void on_drain(conn_t *c)
{
    hconn_t *hc = conn_data(c);
    if (!hc->is_closing && !hc->req) process(hc);
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
    buf_free(&hc->body);
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
    if (hc->req) hc->req->hc = NULL;
    hc->conn = NULL;
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
    s->routes[s->nroutes++] = (route_t){method, prefix, strlen(prefix), h, ud};
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
