/* resolve.c — the lookups behind hearth-resolver: c-ares on the libuv loop,
 * the SRV/AAAA/A sequence of RFC 6120 §3.2 and XEP-0368, the cache and the
 * RFC 2782 ordering of each answer.
 *
 * c-ares tells us which sockets it wants watched (sock_state_cb): each gets
 * a uv_poll; its timeouts run on one uv_timer re-armed from ares_timeout()
 * after every turn. A domain's cache entry is also its lookup in progress:
 * requests that come while it runs wait on it. The cache keeps the SRV
 * records and their addresses, not a finished list, so that every answer
 * is weighted at random anew. The protocol is described in resolver.h. */
#include <ares.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "resolver.h"

#define XMPP_PORT 5269
#define T_SRV 33
#define T_A 1
#define T_AAAA 28
#define C_IN 1

typedef struct srv_rec {
    char *host;
    unsigned port, priority, weight;
    bool is_direct;
    int nv6, nv4;
    char (*v6)[INET6_ADDRSTRLEN];
    char (*v4)[INET6_ADDRSTRLEN];
} srv_rec_t;

typedef struct waiter {
    struct waiter *next;
    char *id;
    resolve_cb cb;
    void *ud;
} waiter_t;

typedef struct entry {
    struct entry *next;
    resolver_t *r;
    char *domain;
    bool is_override, is_done;
    uint64_t expires;  /* uv_now() ms; the entry is fresh before it */
    const char *error; /* of a finished failed lookup */
    srv_rec_t *srvs;
    int nsrvs;
    int pending; /* queries outstanding */
    bool saw_dot, saw_timeout;
    uint32_t ttl; /* smallest TTL seen, seconds */
    waiter_t *waiters;
} entry_t;

typedef struct sock_watch {
    struct sock_watch *next;
    resolver_t *r;
    ares_socket_t fd;
    uv_poll_t poll;
} sock_watch_t;

struct resolver {
    uv_loop_t *loop;
    ares_channel channel;
    uv_timer_t timer;
    sock_watch_t *watches;
    entry_t *entries;
    int nentries;
    resolver_opts_t opts;
};

typedef struct query {
    entry_t *e;
    int srv;        /* index of the SRV record whose address is asked */
    bool is_direct; /* SRV queries: _xmpps-server */
    bool is_v6;     /* address queries: AAAA, else A */
} query_t;

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) log_fatal("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p) log_fatal("out of memory");
    return p;
}

/* ---- c-ares on the loop ------------------------------------------------ */

static void on_timer(uv_timer_t *t);

static void timer_rearm(resolver_t *r)
{
    struct timeval tv;
    if (ares_timeout(r->channel, NULL, &tv)) {
        uint64_t ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000 + 1;
        uv_timer_start(&r->timer, on_timer, ms, 0);
    } else {
        uv_timer_stop(&r->timer);
    }
}

static void on_watch_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_watch_t *w = h->data;
    resolver_t *r = w->r;
    ares_socket_t fd = w->fd;
    /* On an error let c-ares read and write: it sees the error itself. */
    if (status < 0) events = UV_READABLE | UV_WRITABLE;
    ares_process_fd(r->channel, (events & UV_READABLE) ? fd : ARES_SOCKET_BAD,
                    (events & UV_WRITABLE) ? fd : ARES_SOCKET_BAD);
    timer_rearm(r);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    resolver_t *r = data;
    sock_watch_t **pw = &r->watches;
    while (*pw && (*pw)->fd != fd)
        pw = &(*pw)->next;
    sock_watch_t *w = *pw;
    if (!readable && !writable) {
        if (!w) return;
        *pw = w->next;
        uv_poll_stop(&w->poll);
        uv_close((uv_handle_t *)&w->poll, on_watch_closed);
        return;
    }
    if (!w) {
        w = xcalloc(1, sizeof(*w));
        w->r = r;
        w->fd = fd;
        if (uv_poll_init_socket(r->loop, &w->poll, fd) < 0) {
            log_err("resolver: cannot watch a DNS socket");
            free(w);
            return;
        }
        w->poll.data = w;
        w->next = r->watches;
        r->watches = w;
    }
    uv_poll_start(&w->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), on_poll);
}

static void on_timer(uv_timer_t *t)
{
    resolver_t *r = t->data;
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    timer_rearm(r);
}

/* ---- answers ----------------------------------------------------------- */

/* The smallest TTL among the answer records of type `type` (seconds), or
 * -1 if there is none or the message is malformed. */
static long answer_ttl(const unsigned char *abuf, int alen, int type)
{
    if (alen < 12) return -1;
    int qd = abuf[4] << 8 | abuf[5], an = abuf[6] << 8 | abuf[7];
    const unsigned char *p = abuf + 12, *end = abuf + alen;
    char *name;
    long enclen, ttl = -1;
    for (int i = 0; i < qd; i++) {
        if (ares_expand_name(p, abuf, alen, &name, &enclen) != ARES_SUCCESS) return -1;
        ares_free_string(name);
        p += enclen + 4;
        if (p > end) return -1;
    }
    for (int i = 0; i < an; i++) {
        if (ares_expand_name(p, abuf, alen, &name, &enclen) != ARES_SUCCESS) return ttl;
        ares_free_string(name);
        p += enclen;
        if (end - p < 10) return ttl;
        int rtype = p[0] << 8 | p[1];
        long rttl =
            (long)((uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7]);
        int rdlen = p[8] << 8 | p[9];
        p += 10 + rdlen;
        if (p > end) return ttl;
        if (rttl > 0x7fffffffL) rttl = 0;
        if (rtype == type && (ttl < 0 || rttl < ttl)) ttl = rttl;
    }
    return ttl;
}

static void note_ttl(entry_t *e, long ttl)
{
    if (ttl >= 0 && (uint32_t)ttl < e->ttl) e->ttl = (uint32_t)ttl;
}

static void srv_free_all(entry_t *e)
{
    for (int i = 0; i < e->nsrvs; i++) {
        free(e->srvs[i].host);
        free(e->srvs[i].v6);
        free(e->srvs[i].v4);
    }
    free(e->srvs);
    e->srvs = NULL;
    e->nsrvs = 0;
}

static srv_rec_t *srv_add(entry_t *e, const char *host, unsigned port, unsigned priority,
                          unsigned weight, bool is_direct)
{
    srv_rec_t *s = realloc(e->srvs, (size_t)(e->nsrvs + 1) * sizeof(*s));
    if (!s) log_fatal("out of memory");
    e->srvs = s;
    s = &e->srvs[e->nsrvs++];
    memset(s, 0, sizeof(*s));
    s->host = xstrdup(host);
    s->port = port;
    s->priority = priority;
    s->weight = weight;
    s->is_direct = is_direct;
    return s;
}

static void addr_add(char (**list)[INET6_ADDRSTRLEN], int *n, const char *addr)
{
    char(*l)[INET6_ADDRSTRLEN] = realloc(*list, (size_t)(*n + 1) * sizeof(*l));
    if (!l) log_fatal("out of memory");
    snprintf(l[*n], sizeof(l[*n]), "%s", addr);
    *list = l;
    (*n)++;
}

static int cmp_srv(const void *a, const void *b)
{
    const srv_rec_t *x = *(srv_rec_t *const *)a, *y = *(srv_rec_t *const *)b;
    if (x->priority != y->priority) return x->priority < y->priority ? -1 : 1;
    /* XEP-0368: at equal priority, direct TLS first. */
    if (x->is_direct != y->is_direct) return x->is_direct ? -1 : 1;
    /* RFC 2782: zero weights first within a group. */
    if ((x->weight == 0) != (y->weight == 0)) return x->weight == 0 ? -1 : 1;
    return 0;
}

/* RFC 2782: order group[0..n) by running sums of weights and a random
 * number, picking one record at a time among those left. */
static void order_by_weight(srv_rec_t **group, int n)
{
    for (int i = 0; i < n - 1; i++) {
        unsigned long sum = 0;
        for (int j = i; j < n; j++)
            sum += group[j]->weight;
        unsigned long pick = sum ? (unsigned long)random() % (sum + 1) : 0, run = 0;
        int chosen = i;
        for (int j = i; j < n; j++) {
            run += group[j]->weight;
            if (run >= pick) {
                chosen = j;
                break;
            }
        }
        srv_rec_t *t = group[i];
        group[i] = group[chosen];
        group[chosen] = t;
    }
}

static void add_target(elem_t *res, const srv_rec_t *s, const char *addr)
{
    char port[16];
    snprintf(port, sizeof(port), "%u", s->port);
    elem_t *t = elem_add(res, NULL, "target");
    elem_set_attr(t, "host", s->host);
    elem_set_attr(t, "port", port);
    elem_set_attr(t, "tls", s->is_direct ? "direct" : "starttls");
    elem_set_attr(t, "addr", addr);
}

/* Build the <resolved/> of entry e (or of error) for one waiter. */
static metric_counter_t requests_total, cache_hits_total, failures_total;

void resolver_metrics_init(void)
{
    metrics_counter("hearth_resolver_queries_total", "lookups asked for", &requests_total, NULL);
    metrics_counter("hearth_resolver_cache_hits_total", "lookups answered from the cache",
                    &cache_hits_total, NULL);
    metrics_counter("hearth_resolver_failures_total", "lookups answered with an error",
                    &failures_total, NULL);
}

static void answer(entry_t *e, const char *domain, const char *id, const char *error, resolve_cb cb,
                   void *ud)
{
    if (error) metric_inc(&failures_total);
    arena_t *a = arena_new(0);
    elem_t *res = elem_new(a, NS_RESOLVER, "resolved");
    if (id) elem_set_attr(res, "id", id);
    elem_set_attr(res, "domain", domain);
    if (error) {
        elem_set_attr(res, "error", error);
    } else {
        srv_rec_t **order = xcalloc((size_t)e->nsrvs, sizeof(*order));
        for (int i = 0; i < e->nsrvs; i++)
            order[i] = &e->srvs[i];
        qsort(order, (size_t)e->nsrvs, sizeof(*order), cmp_srv);
        for (int i = 0; i < e->nsrvs;) {
            int j = i + 1;
            while (j < e->nsrvs && order[j]->priority == order[i]->priority &&
                   order[j]->is_direct == order[i]->is_direct)
                j++;
            order_by_weight(order + i, j - i);
            i = j;
        }
        for (int i = 0; i < e->nsrvs; i++) {
            for (int k = 0; k < order[i]->nv6; k++)
                add_target(res, order[i], order[i]->v6[k]);
            for (int k = 0; k < order[i]->nv4; k++)
                add_target(res, order[i], order[i]->v4[k]);
        }
        free(order);
    }
    cb(ud, res);
    arena_free(a);
}

static void finish(entry_t *e, const char *error)
{
    resolver_t *r = e->r;
    e->is_done = true;
    e->error = error;
    uint64_t now = uv_now(r->loop), life;
    if (error) {
        life = r->opts.negative_ttl_ms;
    } else {
        life = (uint64_t)e->ttl * 1000;
        if (life > r->opts.max_ttl_ms) life = r->opts.max_ttl_ms;
    }
    e->expires = now + life;
    log_debug("resolver: %s: %s, cached %llu ms", e->domain, error ? error : "found",
              (unsigned long long)life);
    waiter_t *w = e->waiters;
    e->waiters = NULL;
    while (w) {
        waiter_t *next = w->next;
        answer(e, e->domain, w->id, error, w->cb, w->ud);
        free(w->id);
        free(w);
        w = next;
    }
}

static void on_addr(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

static void query_addresses(entry_t *e)
{
    e->pending = 2 * e->nsrvs;
    int n = e->nsrvs;
    for (int i = 0; i < n; i++) {
        for (int type = 0; type < 2; type++) {
            query_t *q = xcalloc(1, sizeof(*q));
            q->e = e;
            q->srv = i;
            q->is_v6 = type == 0;
            ares_query(e->r->channel, e->srvs[i].host, C_IN, type == 0 ? T_AAAA : T_A, on_addr, q);
        }
    }
    timer_rearm(e->r);
}

static void addresses_done(entry_t *e)
{
    int total = 0;
    for (int i = 0; i < e->nsrvs; i++)
        total += e->srvs[i].nv6 + e->srvs[i].nv4;
    finish(e, total ? NULL : e->saw_timeout ? "timeout" : "not-found");
}

static void on_addr(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    query_t *q = arg;
    entry_t *e = q->e;
    int i = q->srv;
    bool is_v6 = q->is_v6;
    free(q);
    if (status == ARES_EDESTRUCTION) return;
    srv_rec_t *s = &e->srvs[i];
    if (status == ARES_SUCCESS) {
        struct ares_addrttl v4[32];
        struct ares_addr6ttl v6[32];
        int n4 = 32, n6 = 32;
        char text[INET6_ADDRSTRLEN];
        if (is_v6 && ares_parse_aaaa_reply(abuf, alen, NULL, v6, &n6) == ARES_SUCCESS) {
            for (int k = 0; k < n6; k++)
                if (inet_ntop(AF_INET6, &v6[k].ip6addr, text, sizeof(text)))
                    addr_add(&s->v6, &s->nv6, text);
            note_ttl(e, answer_ttl(abuf, alen, T_AAAA));
        } else if (!is_v6 && ares_parse_a_reply(abuf, alen, NULL, v4, &n4) == ARES_SUCCESS) {
            for (int k = 0; k < n4; k++)
                if (inet_ntop(AF_INET, &v4[k].ipaddr, text, sizeof(text)))
                    addr_add(&s->v4, &s->nv4, text);
            note_ttl(e, answer_ttl(abuf, alen, T_A));
        }
    } else if (status == ARES_ETIMEOUT) {
        e->saw_timeout = true;
    }
    if (--e->pending == 0) addresses_done(e);
}

static void srv_done(entry_t *e)
{
    if (e->nsrvs > 0) {
        query_addresses(e);
    } else if (e->saw_dot) {
        finish(e, "no-service");
    } else if (e->saw_timeout) {
        finish(e, "timeout");
    } else {
        /* RFC 6120 §3.2.2: no SRV record, the domain itself on 5269. */
        srv_add(e, e->domain, XMPP_PORT, 0, 0, false);
        query_addresses(e);
    }
}

static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    query_t *q = arg;
    entry_t *e = q->e;
    bool is_direct = q->is_direct;
    free(q);
    if (status == ARES_EDESTRUCTION) return;
    if (status == ARES_SUCCESS) {
        struct ares_srv_reply *reply = NULL;
        if (ares_parse_srv_reply(abuf, alen, &reply) == ARES_SUCCESS) {
            /* RFC 2782 / RFC 6120 §3.2.1: a lone "." target: not offered. */
            if (reply && !reply->next && (!reply->host[0] || strcmp(reply->host, ".") == 0)) {
                e->saw_dot = true;
            } else {
                for (struct ares_srv_reply *s = reply; s; s = s->next)
                    if (s->host[0] && strcmp(s->host, ".") != 0)
                        srv_add(e, s->host, s->port, s->priority, s->weight, is_direct);
            }
            note_ttl(e, answer_ttl(abuf, alen, T_SRV));
            ares_free_data(reply);
        }
    } else if (status == ARES_ETIMEOUT) {
        e->saw_timeout = true;
    }
    if (--e->pending == 0) srv_done(e);
}

static void entry_start(entry_t *e)
{
    static const char *const services[2] = {"_xmpps-server._tcp.", "_xmpp-server._tcp."};
    srv_free_all(e);
    e->is_done = false;
    e->error = NULL;
    e->saw_dot = e->saw_timeout = false;
    e->ttl = UINT32_MAX;
    e->pending = 2;
    for (int i = 0; i < 2; i++) {
        char name[300];
        snprintf(name, sizeof(name), "%s%s", services[i], e->domain);
        query_t *q = xcalloc(1, sizeof(*q));
        q->e = e;
        q->is_direct = i == 0;
        ares_query(e->r->channel, name, C_IN, T_SRV, on_srv, q);
    }
    timer_rearm(e->r);
}

/* ---- the cache --------------------------------------------------------- */

static void entry_free(entry_t *e)
{
    srv_free_all(e);
    for (waiter_t *w = e->waiters, *next; w; w = next) {
        next = w->next;
        w->cb(w->ud, NULL); /* cancelled: the caller frees ud */
        free(w->id);
        free(w);
    }
    free(e->domain);
    free(e);
}

static entry_t *entry_find(resolver_t *r, const char *domain)
{
    for (entry_t *e = r->entries; e; e = e->next)
        if (strcasecmp(e->domain, domain) == 0) return e;
    return NULL;
}

/* Make room for one more entry: drop the expired, then the oldest idle
 * one if still full (overrides and lookups in progress stay). */
static void cache_trim(resolver_t *r)
{
    uint64_t now = uv_now(r->loop);
    entry_t **pe = &r->entries, **oldest = NULL;
    while (*pe) {
        entry_t *e = *pe;
        if (!e->is_override && e->is_done && e->expires <= now) {
            *pe = e->next;
            entry_free(e);
            r->nentries--;
            continue;
        }
        if (!e->is_override && e->is_done) oldest = pe; /* new entries go in front */
        pe = &e->next;
    }
    if (r->nentries >= r->opts.cache_size && oldest) {
        entry_t *e = *oldest;
        *oldest = e->next;
        entry_free(e);
        r->nentries--;
    }
}

static bool is_domain_name(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 253 || d[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)d[i];
        if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') && !(ch >= '0' && ch <= '9') &&
            ch != '-' && ch != '.' && ch != '_')
            return false;
    }
    return true;
}

void resolver_lookup(resolver_t *r, const char *domain, const char *id, resolve_cb cb, void *ud)
{
    metric_inc(&requests_total);
    if (!domain || !is_domain_name(domain)) {
        answer(NULL, domain ? domain : "", id, "bad-request", cb, ud);
        return;
    }
    entry_t *e = entry_find(r, domain);
    if (e && (e->is_override || (e->is_done && uv_now(r->loop) < e->expires))) {
        metric_inc(&cache_hits_total);
        answer(e, domain, id, e->error, cb, ud);
        return;
    }
    if (!e) {
        if (r->nentries >= r->opts.cache_size) cache_trim(r);
        e = xcalloc(1, sizeof(*e));
        e->r = r;
        e->domain = xstrdup(domain);
        e->next = r->entries;
        r->entries = e;
        r->nentries++;
        e->is_done = true; /* not running yet */
    }
    waiter_t *w = xcalloc(1, sizeof(*w));
    w->id = id ? xstrdup(id) : NULL;
    w->cb = cb;
    w->ud = ud;
    waiter_t **tail = &e->waiters; /* answered in the order they came */
    while (*tail)
        tail = &(*tail)->next;
    *tail = w;
    if (e->is_done) entry_start(e);
}

/* ---- setup ------------------------------------------------------------- */

int resolver_override(resolver_t *r, const char *domain, const char *target, bool is_direct)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(target, ':');
    if (!colon || colon == target) return -1;
    size_t hlen = (size_t)(colon - target);
    if (target[0] == '[' && hlen > 2 && target[hlen - 1] == ']') {
        target++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host)) return -1;
    memcpy(host, target, hlen);
    host[hlen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535) return -1;
    unsigned char bin[16];
    bool is_v6 = uv_inet_pton(AF_INET6, host, bin) == 0;
    if (!is_v6 && uv_inet_pton(AF_INET, host, bin) != 0) return -1;
    if (!is_domain_name(domain)) return -1;

    entry_t *e = entry_find(r, domain);
    if (!e) {
        e = xcalloc(1, sizeof(*e));
        e->r = r;
        e->domain = xstrdup(domain);
        e->is_override = e->is_done = true;
        e->next = r->entries;
        r->entries = e;
    }
    /* Distinct priorities keep the configured order. */
    srv_rec_t *s = srv_add(e, host, (unsigned)port, (unsigned)e->nsrvs, 0, is_direct);
    if (is_v6)
        addr_add(&s->v6, &s->nv6, host);
    else
        addr_add(&s->v4, &s->nv4, host);
    return 0;
}

resolver_t *resolver_new(uv_loop_t *loop, const resolver_opts_t *opts)
{
    int err = ares_library_init(ARES_LIB_INIT_ALL);
    if (err != ARES_SUCCESS) {
        log_err("resolver: c-ares: %s", ares_strerror(err));
        return NULL;
    }
    resolver_t *r = xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->opts = *opts;
    if (r->opts.cache_size < 1) r->opts.cache_size = 1;
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = r;
    o.timeout = (int)(opts->timeout_ms ? opts->timeout_ms : 5000);
    o.tries = 2;
    err = ares_init_options(&r->channel, &o,
                            ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (err != ARES_SUCCESS) {
        log_err("resolver: c-ares: %s", ares_strerror(err));
        free(r);
        ares_library_cleanup();
        return NULL;
    }
    if (opts->nameserver && *opts->nameserver) {
        err = ares_set_servers_ports_csv(r->channel, opts->nameserver);
        if (err != ARES_SUCCESS) {
            log_err("resolver: nameserver %s: %s", opts->nameserver, ares_strerror(err));
            ares_destroy(r->channel);
            free(r);
            ares_library_cleanup();
            return NULL;
        }
    }
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    srandom((unsigned)uv_hrtime() ^ (unsigned)getpid());
    return r;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void resolver_free(resolver_t *r)
{
    /* Every pending query's callback runs with ARES_EDESTRUCTION and only
     * frees its own record; c-ares closes its sockets (sock_state_cb). */
    ares_destroy(r->channel);
    ares_library_cleanup();
    for (entry_t *e = r->entries, *next; e; e = next) {
        next = e->next;
        entry_free(e);
    }
    r->entries = NULL;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}
