/* hearth-testcomp — a native component driven line by line, for the e2e
 * tests: they start it, write commands to its stdin and read events from
 * its stdout. It is a real user of common/component.c, nothing mocked.
 *
 *   hearth-testcomp ROUTER-ADDR USER PASSWORD ID [CA-FILE TLS-NAME]
 *
 * CA-FILE and TLS-NAME: what to trust when the router asks for STARTTLS.
 *
 * Commands (stdin):
 *   connect                        start the link (after the first binds,
 *                                  so that "ready" means they are bound)
 *   bind NAME [shard|default]      unbind NAME
 *   send TO FROM USER|- PAYLOAD    a route around PAYLOAD (one line of XML)
 *   raw XML                        bytes sent as they are
 *   flood TO FROM N                N small routes, respecting flow control
 *   pause | resume                 stop / restart reading from the router
 *   quiet | loud                   stop / start printing each route
 *   count                          print "count N" (routes received)
 *   direct-accept                  take direct links the sm offers, as a
 *                                  c2s does (common/direct.c)
 *   direct-count                   print "direct N" (links up)
 * Events (stdout): ready, down, advert NAME available|unavailable,
 *   binderror NAME ERROR, route <raw bytes>, flooded N, count N, direct N,
 *   directdown NAME. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static comp_t *comp;
static uv_pipe_t in;
static buf_t line_buf;
static bool is_quiet;
static unsigned long received;
static struct {
    char to[256], from[256];
    unsigned long left, sent;
} flood;

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void flood_some(void)
{
    char msg[600];
    while (flood.left > 0 && !comp_is_full(comp)) {
        int n = snprintf(msg, sizeof(msg),
                         "<route to='%s' from='%s'><message xmlns='jabber:client' "
                         "type='chat'><body>flood %lu</body></message></route>",
                         flood.to, flood.from, flood.sent);
        if (comp_send_raw(comp, msg, (size_t)n) < 0) return;
        flood.left--;
        flood.sent++;
    }
    if (flood.left == 0 && flood.sent > 0) {
        emit("flooded %lu", flood.sent);
        flood.sent = 0;
    }
}

static void on_ready(comp_t *c)
{
    emit("ready");
}

static void on_down(comp_t *c)
{
    emit("down");
}

static void on_route(comp_t *c, elem_t *route, const xstream_raw_t *raw)
{
    received++;
    if (is_quiet) return;
    /* One line per route: the raw bytes with newlines flattened. */
    for (size_t i = 0; i < raw->len; i++)
        putchar(raw->data[i] == '\n' ? ' ' : raw->data[i]);
    printf("\n");
    fflush(stdout);
}

static void on_advert(comp_t *c, const char *name, bool available)
{
    emit("advert %s %s", name, available ? "available" : "unavailable");
}

static void on_bind_error(comp_t *c, const char *name, const char *error)
{
    emit("binderror %s %s", name, error);
}

static void on_drain(comp_t *c)
{
    flood_some();
}

static void on_direct_down(comp_t *c, const char *name)
{
    emit("directdown %s", name);
}

static void command(char *line)
{
    char *arg = strchr(line, ' ');
    if (arg) *arg++ = '\0';
    if (strcmp(line, "connect") == 0) {
        comp_start(comp);
    } else if (strcmp(line, "bind") == 0 && arg) {
        char *flag = strchr(arg, ' ');
        unsigned flags = 0;
        if (flag) {
            *flag++ = '\0';
            flags = strcmp(flag, "shard") == 0 ? COMP_BIND_SHARD : COMP_BIND_DEFAULT;
        }
        comp_bind(comp, arg, flags);
    } else if (strcmp(line, "unbind") == 0 && arg) {
        comp_unbind(comp, arg);
    } else if (strcmp(line, "raw") == 0 && arg) {
        comp_send_raw(comp, arg, strlen(arg));
    } else if (strcmp(line, "send") == 0 && arg) {
        char *to = strtok(arg, " "), *from = strtok(NULL, " "), *user = strtok(NULL, " ");
        char *payload = strtok(NULL, "");
        if (!payload) {
            emit("error usage: send TO FROM USER|- PAYLOAD");
            return;
        }
        arena_t *a = arena_new(0);
        elem_t *p = xml_parse_fragment(a, payload, strlen(payload), NS_CLIENT);
        if (!p)
            emit("error payload is not one XML element");
        else if (comp_send_to(comp, to, from, strcmp(user, "-") == 0 ? NULL : user, p) < 0)
            emit("error link down");
        arena_free(a);
    } else if (strcmp(line, "flood") == 0 && arg) {
        if (sscanf(arg, "%255s %255s %lu", flood.to, flood.from, &flood.left) != 3) {
            emit("error usage: flood TO FROM N");
            return;
        }
        flood.sent = 0;
        flood_some();
    } else if (strcmp(line, "pause") == 0) {
        comp_pause(comp);
    } else if (strcmp(line, "resume") == 0) {
        comp_resume(comp);
    } else if (strcmp(line, "quiet") == 0) {
        is_quiet = true;
    } else if (strcmp(line, "loud") == 0) {
        is_quiet = false;
    } else if (strcmp(line, "count") == 0) {
        emit("count %lu", received);
    } else if (strcmp(line, "direct-accept") == 0) {
        comp_direct_accept(comp, ROLE_SM);
    } else if (strcmp(line, "direct-count") == 0) {
        emit("direct %u", comp_direct_count(comp));
    } else {
        emit("error unknown command %s", line);
    }
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    static char space[65536];
    b->base = space;
    b->len = sizeof(space);
}

static void on_stdin(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    if (n < 0) {
        /* The test is done with us. */
        uv_close((uv_handle_t *)&in, NULL);
        comp_free(comp);
        return;
    }
    buf_append(&line_buf, b->base, (size_t)n);
    char *nl;
    while ((nl = memchr(line_buf.data, '\n', line_buf.len)) != NULL) {
        size_t len = (size_t)(nl - line_buf.data);
        char *line = strndup(line_buf.data, len);
        buf_consume(&line_buf, len + 1);
        if (!line) abort();
        command(line);
        free(line);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: hearth-testcomp ROUTER-ADDR USER PASSWORD ID [CA-FILE TLS-NAME]\n");
        return 2;
    }
    log_open("testcomp", "stderr", getenv("HEARTH_DEBUG") ? "debug" : "info");
    uv_loop_t *loop = uv_default_loop();
    static const comp_cb_t cb = {
        .on_ready = on_ready,
        .on_down = on_down,
        .on_route = on_route,
        .on_advert = on_advert,
        .on_bind_error = on_bind_error,
        .on_drain = on_drain,
        .on_direct_down = on_direct_down,
    };
    comp_opts_t opts = {.router = argv[1], .user = argv[2], .password = argv[3], .id = argv[4]};
    if (argc == 7) {
        opts.tls_ca = argv[5];
        opts.tls_name = argv[6];
    }
    comp = comp_new(loop, &opts, &cb, NULL);
    uv_pipe_init(loop, &in, 0);
    uv_pipe_open(&in, 0);
    uv_read_start((uv_stream_t *)&in, on_alloc, on_stdin);
    uv_run(loop, UV_RUN_DEFAULT);
    buf_free(&line_buf);
    uv_loop_close(loop);
    return 0;
}
