/* ctl_link.c — hearthctl's requests to the running daemons.
 *
 * hearthctl reaches the sm and the s2s through the router, as a component
 * named hearthctl-PID that logs in with the router account of role admin
 * (docs/protocol.md). Each request is an IQ with one urn:hearth:admin:1
 * element (the requests of sm/mod_admin.c and s2s/main.c: online, s2s,
 * created, deleted, disabled, kick), sent to a name with user= the account
 * it is about, which picks the sm shard holding it. An answer counts only
 * if the router marked it with the role the request was for, or as its own
 * bounce (nobody serves the name); anything else on the link is ignored.
 *
 * The link is made before hearthctl drops root (its secret may be root's)
 * and connects at the first request. Requests asked before the router
 * accepted the link wait for it; each gets its callback exactly once: the
 * answer, the router's bounce, or, at its deadline, no answer (the router
 * was never reached, or the daemon did not answer). Once every request has
 * had its callback the link closes itself, outside the component's own
 * callbacks, so that the caller's uv_run ends. Used by hearthctl.c,
 * ctl_account.c and ctl_pie.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hearthctl.h"

typedef struct request {
    char *to, *user, *type, *name, *jid;
    comp_role_t role;
    ctl_answer_fn fn;
    void *ud;
    bool is_sent, is_done;
} request_t;

struct ctl_link {
    uv_loop_t *loop;
    comp_t *comp;
    char id[64];
    uv_timer_t timer;
    uint64_t deadline; /* uv_now() by which every request is answered */
    bool is_started, is_ready, is_closing;
    request_t *requests;
    int nrequests, pending;
};

static char *dup_or_null(const char *s)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d) log_fatal("out of memory");
    return d;
}

static void send_request(ctl_link_t *l, request_t *r)
{
    arena_t *a = arena_new(0);
    elem_t *iq = elem_new(a, NS_CLIENT, "iq");
    char id[32];
    snprintf(id, sizeof id, "ctl-%d", (int)(r - l->requests));
    elem_set_attr(iq, "type", r->type);
    elem_set_attr(iq, "id", id);
    elem_set_attr(iq, "from", l->id);
    elem_set_attr(iq, "to", r->to);
    elem_t *cmd = elem_add(iq, NS_ADMIN, r->name);
    if (r->jid) elem_set_attr(cmd, "jid", r->jid);
    comp_send_to(l->comp, r->to, l->id, r->user, iq);
    arena_free(a);
    r->is_sent = true;
}

static void on_timer_closed(uv_handle_t *h)
{
    ctl_link_t *l = h->data;
    for (int i = 0; i < l->nrequests; i++) {
        request_t *r = &l->requests[i];
        free(r->to), free(r->user), free(r->type), free(r->name), free(r->jid);
    }
    free(l->requests);
    free(l);
}

static void close_link(ctl_link_t *l)
{
    if (l->is_closing) return;
    l->is_closing = true;
    if (l->comp) comp_free(l->comp);
    l->comp = NULL;
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
}

static void finish(ctl_link_t *l, request_t *r, const elem_t *iq, ctl_problem_t problem,
                   const char *detail)
{
    if (r->is_done) return;
    r->is_done = true;
    l->pending--;
    r->fn(r->ud, iq, problem, detail);
}

/* Every request done: close on the next loop turn. At the deadline: those
 * still waiting have had no answer. */
static void on_timer(uv_timer_t *t)
{
    ctl_link_t *l = t->data;
    for (int i = 0; i < l->nrequests && l->pending > 0; i++)
        finish(l, &l->requests[i], NULL, l->is_ready ? CTL_NO_ANSWER : CTL_NO_ROUTER, NULL);
    close_link(l);
}

static void close_soon_if_done(ctl_link_t *l)
{
    if (l->pending == 0) uv_timer_start(&l->timer, on_timer, 0, 0);
}

static void on_ready(comp_t *comp)
{
    ctl_link_t *l = comp_data(comp);
    l->is_ready = true;
    for (int i = 0; i < l->nrequests; i++)
        if (!l->requests[i].is_sent && !l->requests[i].is_done) send_request(l, &l->requests[i]);
}

static void on_route(comp_t *comp, elem_t *route, const xstream_raw_t *raw)
{
    (void)raw;
    ctl_link_t *l = comp_data(comp);
    const elem_t *payload = elem_first(route);
    const char *id = payload ? elem_attr(payload, "id") : NULL;
    const char *type = elem_attr(route, "type");
    bool is_bounce = type && strcmp(type, "error") == 0;
    if (!payload || strcmp(payload->name, "iq") != 0 || !id || strncmp(id, "ctl-", 4) != 0) return;
    char *end;
    long i = strtol(id + 4, &end, 10);
    if (*end || i < 0 || i >= l->nrequests) return;
    request_t *r = &l->requests[i];
    if (comp_route_role(route) != (is_bounce ? ROLE_ROUTER : r->role)) return;
    if (is_bounce)
        finish(l, r, NULL, CTL_BOUNCED, elem_attr(route, "error"));
    else
        finish(l, r, payload, CTL_ANSWERED, NULL);
    close_soon_if_done(l);
}

ctl_link_t *ctl_link_new(uv_loop_t *loop, const config_t *config)
{
    static const comp_cb_t cb = {.on_ready = on_ready, .on_route = on_route};
    if (!has_admin_account(config)) return NULL;
    ctl_link_t *l = calloc(1, sizeof *l);
    if (!l) log_fatal("out of memory");
    l->loop = loop;
    snprintf(l->id, sizeof l->id, "hearthctl-%ld", (long)getpid());
    l->comp = comp_new_from_config(loop, config, l->id, ROLE_ADMIN, &cb, l);
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    return l;
}

void ctl_link_ask(ctl_link_t *l, const ctl_request_t *req, ctl_answer_fn fn, void *ud)
{
    request_t *grown = realloc(l->requests, (size_t)(l->nrequests + 1) * sizeof *grown);
    if (!grown) log_fatal("out of memory");
    l->requests = grown;
    request_t *r = &l->requests[l->nrequests++];
    *r = (request_t){
        .to = dup_or_null(req->to),
        .user = dup_or_null(req->user),
        .type = dup_or_null(req->is_set ? "set" : "get"),
        .name = dup_or_null(req->name),
        .jid = dup_or_null(req->jid),
        .role = req->role,
        .fn = fn,
        .ud = ud,
    };
    l->pending++;
    uint64_t deadline = uv_now(l->loop) + req->timeout_ms;
    if (deadline > l->deadline) {
        l->deadline = deadline;
        uv_timer_start(&l->timer, on_timer, req->timeout_ms, 0);
    }
    if (!l->is_started) {
        comp_bind(l->comp, l->id, 0);
        comp_start(l->comp);
        l->is_started = true;
    } else if (l->is_ready) {
        send_request(l, r);
    }
}

void ctl_link_free(ctl_link_t *l)
{
    if (l && !l->is_started) close_link(l);
}

const char *ctl_link_error(const elem_t *iq)
{
    const char *type = elem_attr(iq, "type");
    if (type && strcmp(type, "result") == 0) return NULL;
    const elem_t *error = elem_child(iq, NULL, "error");
    const elem_t *condition = error ? elem_first(error) : NULL;
    return condition ? condition->name : "error";
}

const elem_t *ctl_link_answer(const elem_t *iq, const char *name)
{
    return elem_child(iq, NS_ADMIN, name);
}
