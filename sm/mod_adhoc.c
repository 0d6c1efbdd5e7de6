/* mod_adhoc.c — ad-hoc commands (XEP-0050): the framework that lists,
 * runs and keeps the sessions of the commands other modules register
 * (adhoc.h; the XEP-0133 set is mod_admin_commands.c).
 *
 * The server's JID (a local domain) announces the feature
 * http://jabber.org/protocol/commands; disco#items of that node lists the
 * commands the asker may run (its disco#info: automation/command-list),
 * disco#info of a command's node describes it (automation/command-node)
 * to those who may run it. A command is an administrator's unless its
 * table entry says it is for users (is_for_users). A request counts as a
 * user's only when it comes from one of this sm's sessions
 * (SM_CHAIN_IN_SESS: a route a c2s sent with the session's sid, its from
 * stamped by the core), and as an administrator's when that session's
 * bare JID is listed in sm.admin. A command from anywhere else (another
 * server, a component, another shard, an IQ to the server's full JID)
 * reaches SM_CHAIN_IN_SERVER and may run nothing: forbidden, and an empty
 * list.
 *
 * Flow (XEP-0050, "Executing Commands"): execute without sessionid runs
 * a command without form at once (status completed), or opens a command
 * session and answers status executing with the form and
 * <actions execute='complete'><complete/></actions>. Within a session,
 * complete (or execute) with the submitted form runs the command, cancel
 * ends it (status canceled); next and prev are bad-action (every form here
 * is a single stage). Errors as XEP-0050 defines them: an unknown action
 * is bad-request with malformed-action, a sessionid that is not one of the
 * requester's for that node bad-request with bad-sessionid, one older than
 * sm.adhoc-timeout not-allowed with session-expired, a missing form
 * bad-request with bad-payload. A session belongs to the full JID that
 * opened it and ends with that client's session; one user has at most
 * sm.adhoc-sessions open (resource-constraint beyond). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adhoc.h"

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define MAX_TABLES 8

/* An open command session: a form sent, its answer awaited. */
typedef struct cmd_sess {
    char id[33];
    char *requester; /* full JID */
    const adhoc_cmd_t *cmd;
    uint64_t expires; /* loop ms */
    struct cmd_sess *next;
} cmd_sess_t;

struct adhoc_req {
    sm_t *sm;
    sm_pkt_t *pkt; /* held */
    const adhoc_cmd_t *cmd;
    char sessionid[33];
    arena_t *arena;
};

/* Who asks: one of our sessions, an administrator's or another user's,
 * or anyone else (another server, a component, another shard). */
typedef enum asker { ASKER_OTHER, ASKER_USER, ASKER_ADMIN } asker_t;

static const adhoc_cmd_t *tables[MAX_TABLES];
static int ntables;
static char **admins; /* prepared bare JIDs, NULL-terminated */
static cmd_sess_t *open_sessions;
static int max_sessions;
static uint64_t timeout_ms;

void adhoc_register(sm_t *sm, const adhoc_cmd_t *cmds)
{
    (void)sm;
    if (ntables == MAX_TABLES) log_fatal("adhoc: more than %d command tables", MAX_TABLES);
    tables[ntables++] = cmds;
}

/* An administrator runs every command; a user of this server those for
 * users; anyone else none. */
static bool may_run(const adhoc_cmd_t *cmd, asker_t asker)
{
    return asker == ASKER_ADMIN || (asker == ASKER_USER && cmd->is_for_users);
}

static const adhoc_cmd_t *find_command(const char *node)
{
    for (int t = 0; t < ntables; t++)
        for (const adhoc_cmd_t *c = tables[t]; c->node; c++)
            if (strcmp(c->node, node) == 0) return c;
    return NULL;
}

static bool is_admin(const jid_t *jid)
{
    for (char **a = admins; a && *a; a++)
        if (strcmp(*a, jid_bare(jid)) == 0) return true;
    return false;
}

/* ---- answers ------------------------------------------------------------- */

/* A stanza error with a XEP-0050 condition beside the RFC 6120 one. */
static void reply_error(sm_t *sm, sm_pkt_t *pkt, const char *condition, const char *specific)
{
    elem_t *e = elem_copy(arena_new(0), pkt->stanza);
    if (xmpp_stanza_error(e, condition, NULL) < 0) {
        arena_free(e->arena);
        return;
    }
    if (specific) elem_add(elem_child(e, NULL, "error"), NS_COMMANDS, specific);
    sm_send_answer(sm, pkt, e);
}

static elem_t *command_elem(arena_t *a, const adhoc_cmd_t *cmd, const char *sessionid,
                            const char *status)
{
    elem_t *c = elem_new(a, NS_COMMANDS, "command");
    elem_set_attr(c, "node", cmd->node);
    elem_set_attr(c, "sessionid", sessionid);
    elem_set_attr(c, "status", status);
    return c;
}

static adhoc_req_t *req_new(sm_t *sm, sm_pkt_t *pkt, const adhoc_cmd_t *cmd, const char *sessionid)
{
    adhoc_req_t *r = calloc(1, sizeof *r);
    if (!r) log_fatal("out of memory");
    r->sm = sm;
    r->pkt = sm_pkt_hold(pkt);
    r->cmd = cmd;
    snprintf(r->sessionid, sizeof r->sessionid, "%s", sessionid);
    r->arena = arena_new(0);
    return r;
}

static void req_free(adhoc_req_t *r)
{
    sm_pkt_release(r->pkt);
    arena_free(r->arena);
    free(r);
}

void adhoc_done(adhoc_req_t *req, const char *note, const elem_t *result)
{
    elem_t *c = command_elem(req->arena, req->cmd, req->sessionid, "completed");
    if (note) {
        elem_t *n = elem_add(c, NULL, "note");
        elem_set_attr(n, "type", "info");
        elem_add_text(n, note, strlen(note));
    }
    if (result) elem_add_copy(c, result);
    sm_reply_result(req->sm, req->pkt, c);
    req_free(req);
}

void adhoc_fail(adhoc_req_t *req, const char *condition, const char *text)
{
    elem_t *e = elem_copy(arena_new(0), req->pkt->stanza);
    if (xmpp_stanza_error(e, condition, text) == 0)
        sm_send_answer(req->sm, req->pkt, e);
    else
        arena_free(e->arena);
    req_free(req);
}

sm_t *adhoc_sm(const adhoc_req_t *req)
{
    return req->sm;
}

const jid_t *adhoc_requester(const adhoc_req_t *req)
{
    return req->pkt->from;
}

const char *adhoc_domain(const adhoc_req_t *req)
{
    return req->pkt->to ? jid_domain(req->pkt->to) : sm_domain(req->sm);
}

arena_t *adhoc_arena(const adhoc_req_t *req)
{
    return req->arena;
}

/* ---- data forms ------------------------------------------------------------ */

elem_t *adhoc_form_new(arena_t *a, const char *type, const char *title, const char *form_type)
{
    elem_t *x = elem_new(a, NS_DATA, "x");
    elem_set_attr(x, "type", type);
    if (title) elem_add_text(elem_add(x, NULL, "title"), title, strlen(title));
    if (form_type) adhoc_field_add(x, "hidden", "FORM_TYPE", NULL, form_type);
    return x;
}

elem_t *adhoc_field_add(elem_t *x, const char *type, const char *var, const char *label,
                        const char *value)
{
    elem_t *f = elem_add(x, NULL, "field");
    if (type) elem_set_attr(f, "type", type);
    elem_set_attr(f, "var", var);
    if (label) elem_set_attr(f, "label", label);
    if (value) adhoc_value_add(f, value);
    return f;
}

void adhoc_value_add(elem_t *field, const char *value)
{
    elem_add_text(elem_add(field, NULL, "value"), value, strlen(value));
}

const elem_t *adhoc_field(const elem_t *form, const char *var)
{
    for (const elem_t *f = elem_child(form, NS_DATA, "field"); f;
         f = elem_next(f, NS_DATA, "field")) {
        const char *v = elem_attr(f, "var");
        if (v && strcmp(v, var) == 0) return f;
    }
    return NULL;
}

const char *adhoc_value(const elem_t *form, const char *var)
{
    const elem_t *f = adhoc_field(form, var);
    const elem_t *v = f ? elem_child(f, NS_DATA, "value") : NULL;
    return v ? elem_text(v) : NULL;
}

const char *adhoc_text(adhoc_req_t *req, const elem_t *form, const char *var)
{
    const elem_t *f = adhoc_field(form, var);
    if (!f) return NULL;
    buf_t b = BUF_INIT;
    for (const elem_t *v = elem_child(f, NS_DATA, "value"); v; v = elem_next(v, NS_DATA, "value")) {
        if (b.len) buf_appends(&b, "\n");
        buf_appends(&b, elem_text(v));
    }
    char *text = arena_strndup(req->arena, b.data ? b.data : "", b.len);
    buf_free(&b);
    return text;
}

/* ---- command sessions ------------------------------------------------------ */

static void sess_drop(cmd_sess_t **link)
{
    cmd_sess_t *s = *link;
    *link = s->next;
    free(s->requester);
    free(s);
}

/* Forget the expired sessions; how many the bare JID of full has open. */
static int sessions_sweep(sm_t *sm, const jid_t *full)
{
    uint64_t now = uv_now(sm_loop(sm));
    int n = 0;
    size_t blen = strlen(jid_bare(full));
    for (cmd_sess_t **l = &open_sessions; *l;) {
        if ((*l)->expires <= now) {
            sess_drop(l);
            continue;
        }
        const char *r = (*l)->requester;
        if (strncmp(r, jid_bare(full), blen) == 0 && r[blen] == '/') n++;
        l = &(*l)->next;
    }
    return n;
}

/* A session's client left: its command sessions go with it. */
static sm_verdict_t on_sess_end(sm_t *sm, sm_pkt_t *pkt)
{
    (void)sm;
    const char *full = jid_full(pkt->sess->jid);
    for (cmd_sess_t **l = &open_sessions; *l;)
        if (strcmp((*l)->requester, full) == 0)
            sess_drop(l);
        else
            l = &(*l)->next;
    return SM_PASS;
}

/* ---- the requests ---------------------------------------------------------- */

static void start(sm_t *sm, sm_pkt_t *pkt, const adhoc_cmd_t *cmd)
{
    char id[33];
    random_hex(id, 16);
    if (!cmd->ask) {
        cmd->run(req_new(sm, pkt, cmd, id), NULL);
        return;
    }
    if (sessions_sweep(sm, pkt->from) >= max_sessions) {
        reply_error(sm, pkt, "resource-constraint", NULL);
        return;
    }
    cmd_sess_t *s = calloc(1, sizeof *s);
    if (!s || !(s->requester = strdup(jid_full(pkt->from)))) log_fatal("out of memory");
    memcpy(s->id, id, sizeof s->id);
    s->cmd = cmd;
    s->expires = uv_now(sm_loop(sm)) + timeout_ms;
    s->next = open_sessions;
    open_sessions = s;

    adhoc_req_t *r = req_new(sm, pkt, cmd, id);
    elem_t *c = command_elem(r->arena, cmd, id, "executing");
    elem_t *actions = elem_add(c, NULL, "actions");
    elem_set_attr(actions, "execute", "complete");
    elem_add(actions, NULL, "complete");
    elem_t *x = adhoc_form_new(r->arena, "form", cmd->name, NULL);
    cmd->ask(r, x);
    elem_add_copy(c, x);
    sm_reply_result(sm, pkt, c);
    req_free(r);
}

static void resume(sm_t *sm, sm_pkt_t *pkt, const adhoc_cmd_t *cmd, const char *action,
                   const char *sessionid, const elem_t *command)
{
    cmd_sess_t **l = &open_sessions;
    while (*l && strcmp((*l)->id, sessionid) != 0)
        l = &(*l)->next;
    if (!*l || (*l)->cmd != cmd || strcmp((*l)->requester, jid_full(pkt->from)) != 0) {
        reply_error(sm, pkt, "bad-request", "bad-sessionid");
        return;
    }
    if ((*l)->expires <= uv_now(sm_loop(sm))) {
        sess_drop(l);
        reply_error(sm, pkt, "not-allowed", "session-expired");
        return;
    }
    if (strcmp(action, "next") == 0 || strcmp(action, "prev") == 0) {
        reply_error(sm, pkt, "bad-request", "bad-action");
        return;
    }
    if (strcmp(action, "cancel") == 0) {
        sess_drop(l);
        adhoc_req_t *r = req_new(sm, pkt, cmd, sessionid);
        sm_reply_result(sm, pkt, command_elem(r->arena, cmd, sessionid, "canceled"));
        req_free(r);
        return;
    }
    const elem_t *x = elem_child(command, NS_DATA, "x");
    const char *type = x ? elem_attr(x, "type") : NULL;
    if (!type || strcmp(type, "submit") != 0) {
        reply_error(sm, pkt, "bad-request", "bad-payload");
        return;
    }
    sess_drop(l);
    cmd->run(req_new(sm, pkt, cmd, sessionid), x);
}

static bool is_action(const char *a)
{
    static const char *const actions[] = {"execute", "cancel", "prev", "next", "complete", NULL};
    for (const char *const *p = actions; *p; p++)
        if (strcmp(*p, a) == 0) return true;
    return false;
}

static void on_command(sm_t *sm, sm_pkt_t *pkt, const elem_t *command, asker_t asker)
{
    if (strcmp(pkt->type, "set") != 0) {
        sm_reply_error(sm, pkt, "bad-request");
        return;
    }
    const char *node = elem_attr(command, "node");
    const adhoc_cmd_t *cmd = node ? find_command(node) : NULL;
    if (!cmd) {
        sm_reply_error(sm, pkt, "item-not-found");
        return;
    }
    if (!may_run(cmd, asker)) {
        log_info("adhoc: %s may not run %s", jid_full(pkt->from), node);
        sm_reply_error(sm, pkt, "forbidden");
        return;
    }
    const char *action = elem_attr(command, "action");
    if (!action) action = "execute";
    if (!is_action(action)) {
        reply_error(sm, pkt, "bad-request", "malformed-action");
        return;
    }
    const char *sessionid = elem_attr(command, "sessionid");
    if (sessionid)
        resume(sm, pkt, cmd, action, sessionid, command);
    else if (strcmp(action, "execute") == 0)
        start(sm, pkt, cmd);
    else
        reply_error(sm, pkt, "bad-request", "bad-sessionid");
}

/* disco#items of the commands node, disco#info of a command's node. */
static bool on_disco(sm_t *sm, sm_pkt_t *pkt, const elem_t *query, asker_t asker)
{
    bool is_items = elem_is(query, NS_DISCO_ITEMS, "query");
    if (!is_items && !elem_is(query, NS_DISCO_INFO, "query")) return false;
    const char *node = elem_attr(query, "node");
    if (!node || strcmp(pkt->type, "get") != 0) return false;
    const adhoc_cmd_t *cmd = NULL;
    bool is_list = strcmp(node, NS_COMMANDS) == 0;
    if (is_items && !is_list) return false;
    if (!is_items && !is_list && !(cmd = find_command(node))) return false;

    const char *domain = pkt->to ? jid_domain(pkt->to) : sm_domain(sm);
    elem_t *reply = elem_new(pkt->stanza->arena, query->ns, "query");
    elem_set_attr(reply, "node", node);
    if (is_items) {
        for (int t = 0; t < ntables; t++)
            for (const adhoc_cmd_t *c = tables[t]; c->node; c++) {
                if (!may_run(c, asker)) continue;
                elem_t *item = elem_add(reply, NULL, "item");
                elem_set_attr(item, "jid", domain);
                elem_set_attr(item, "node", c->node);
                elem_set_attr(item, "name", c->name);
            }
    } else if (is_list) {
        /* XEP-0050, "Retrieving the Command List": the list node. */
        elem_t *id = elem_add(reply, NULL, "identity");
        elem_set_attr(id, "category", "automation");
        elem_set_attr(id, "type", "command-list");
    } else if (!is_items) {
        /* The same: a command's node, to those who may run it. */
        if (!may_run(cmd, asker)) {
            sm_reply_error(sm, pkt, "forbidden");
            return true;
        }
        elem_t *id = elem_add(reply, NULL, "identity");
        elem_set_attr(id, "category", "automation");
        elem_set_attr(id, "type", "command-node");
        elem_set_attr(id, "name", cmd->name);
        elem_set_attr(elem_add(reply, NULL, "feature"), "var", NS_COMMANDS);
        elem_set_attr(elem_add(reply, NULL, "feature"), "var", NS_DATA);
    }
    sm_reply_result(sm, pkt, reply);
    return true;
}

static sm_verdict_t handle(sm_t *sm, sm_pkt_t *pkt, asker_t asker)
{
    if (strcmp(pkt->kind, "iq") != 0) return SM_PASS;
    if (strcmp(pkt->type, "get") != 0 && strcmp(pkt->type, "set") != 0) return SM_PASS;
    const elem_t *payload = elem_first(pkt->stanza);
    if (!payload) return SM_PASS;
    if (elem_is(payload, NS_COMMANDS, "command")) {
        on_command(sm, pkt, payload, asker);
        return SM_HANDLED;
    }
    return on_disco(sm, pkt, payload, asker) ? SM_HANDLED : SM_PASS;
}

/* One of our sessions, to the server's bare JID (a local domain), or with
 * no to. */
static sm_verdict_t on_sess(sm_t *sm, sm_pkt_t *pkt)
{
    if (pkt->to && (jid_has_node(pkt->to) || jid_has_resource(pkt->to) ||
                    !sm_is_local(sm, jid_domain(pkt->to))))
        return SM_PASS;
    return handle(sm, pkt, is_admin(pkt->sess->jid) ? ASKER_ADMIN : ASKER_USER);
}

/* Anyone else, to the server: neither an administrator nor a user. */
static sm_verdict_t on_server(sm_t *sm, sm_pkt_t *pkt)
{
    return handle(sm, pkt, ASKER_OTHER);
}

static void load_admins(sm_t *sm)
{
    const config_t *config = sm_config(sm);
    int n = config_count(config, "sm.admin");
    if (!(admins = calloc((size_t)n + 1, sizeof *admins))) log_fatal("out of memory");
    for (int i = 0; i < n; i++) {
        const char *text = config_get_at(config, "sm.admin", i);
        const char *why = NULL;
        jid_t *j = text ? jid_new(text, strlen(text), &why) : NULL;
        if (!j || !jid_has_node(j) || jid_has_resource(j))
            log_fatal("%s: sm/admin '%s' is not a bare JID user@domain%s%s", config_file(config),
                      text ? text : "", why ? ": " : "", why ? why : "");
        if (!(admins[i] = strdup(jid_bare(j)))) log_fatal("out of memory");
        jid_free(j);
    }
}

void mod_adhoc_init(sm_t *sm); /* listed in modules.c */

void mod_adhoc_init(sm_t *sm)
{
    load_admins(sm);
    max_sessions = (int)config_int(sm_config(sm), "sm.adhoc-sessions");
    timeout_ms = config_ms(sm_config(sm), "sm.adhoc-timeout");
    sm_feature(sm, NS_COMMANDS);
    /* Before mod_disco (500), which knows no nodes. */
    sm_hook(sm, SM_CHAIN_IN_SESS, 300, on_sess);
    sm_hook(sm, SM_CHAIN_IN_SERVER, 300, on_server);
    sm_hook(sm, SM_CHAIN_SESS_END, 300, on_sess_end);
}
