/* mod_blocking.c — the blocking command (XEP-0191, urn:xmpp:blocking).
 *
 * Commands: a <blocklist/> get lists the user's blocked JIDs; a <block/>
 * set adds one or more; an <unblock/> set removes the ones it names, or
 * every one when it names none. Each change is stored in blocklist(owner,
 * jid) first, then applied, answered, and pushed to every session of the
 * user that has asked for the list.
 *
 * Enforcement, on every stanza, from memory only: each account's list is
 * kept in a table loaded whole at start (lists are short and few users
 * have one) and loaded again when a user's first session starts (so an
 * account recreated, or moved here from another shard, is current).
 *   - from a blocked JID to the user (SM_CHAIN_IN_USER): presence dropped
 *     silently; a message or an IQ get/set answered service-unavailable, as
 *     if the account had no session; other IQs dropped (XEP-0191 §3.5);
 *   - from the user to a blocked JID (SM_CHAIN_IN_SESS): refused with
 *     not-acceptable and <blocked xmlns='urn:xmpp:blocking:errors'/>;
 *   - what the server sends on the user's behalf (SM_CHAIN_OUT: presence
 *     broadcasts, probe answers) never reaches a blocked JID.
 * On a block, contacts who were getting the user's presence (subscription
 * from or both) and are now blocked get unavailable presence from each of
 * the user's available sessions; on an unblock, they get its current
 * presence again (XEP-0191 §3.3 and §3.4).
 *
 * A blocked item matches as in XEP-0016 §2.1: a full JID that one resource,
 * a bare JID every resource of it, a domain every JID at it, domain/resource
 * that resource of the domain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "roster.h"
#include "sm.h"

#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_BLOCKING_ERRORS "urn:xmpp:blocking:errors"
#define RETRY_MS 5000

typedef struct blocklist {
    int n, cap;
    char **jids; /* prepared full forms */
} blocklist_t;

static map_t lists;      /* owner bare JID -> blocklist_t (only non-empty ones) */
static int slot;         /* sess->slots[slot] != NULL: the session asked for the list */
static size_t max_items; /* sm.blocklist-max */
static bool is_loaded, is_loading;

/* ---- the in-memory lists --------------------------------------------- */

static blocklist_t *list_of(const char *owner)
{
    return map_get(&lists, owner);
}

static bool list_has(const blocklist_t *l, const char *jid)
{
    for (int i = 0; l && i < l->n; i++)
        if (strcmp(l->jids[i], jid) == 0) return true;
    return false;
}

static void list_add(const char *owner, const char *jid)
{
    blocklist_t *l = list_of(owner);
    if (list_has(l, jid)) return;
    if (!l) {
        if (!(l = calloc(1, sizeof *l))) log_fatal("out of memory");
        map_put(&lists, owner, l);
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4;
        if (!(l->jids = realloc(l->jids, l->cap * sizeof *l->jids))) log_fatal("out of memory");
    }
    if (!(l->jids[l->n++] = strdup(jid))) log_fatal("out of memory");
}

static void list_free(blocklist_t *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->jids[i]);
    free(l->jids);
    free(l);
}

static void list_remove(const char *owner, const char *jid)
{
    blocklist_t *l = list_of(owner);
    for (int i = 0; l && i < l->n; i++) {
        if (strcmp(l->jids[i], jid) != 0) continue;
        free(l->jids[i]);
        l->jids[i] = l->jids[--l->n];
        break;
    }
    if (l && l->n == 0) list_free(map_del(&lists, owner));
}

static void list_clear(const char *owner)
{
    blocklist_t *l = map_del(&lists, owner);
    if (l) list_free(l);
}

/* Does item (a prepared JID) cover who? XEP-0016 §2.1 matching. */
static bool item_matches(const char *item, const jid_t *who)
{
    if (strcmp(item, jid_full(who)) == 0 || strcmp(item, jid_bare(who)) == 0 ||
        strcmp(item, jid_domain(who)) == 0)
        return true;
    if (!jid_has_node(who) || !jid_has_resource(who)) return false;
    /* domain/resource */
    size_t dlen = strlen(jid_domain(who));
    return strncmp(item, jid_domain(who), dlen) == 0 && item[dlen] == '/' &&
           strcmp(item + dlen + 1, jid_resource(who)) == 0;
}

static bool is_blocked(const char *owner, const jid_t *who)
{
    if (lists.count == 0) return false; /* the common case: nobody blocks anyone */
    const blocklist_t *l = list_of(owner);
    for (int i = 0; l && i < l->n; i++)
        if (item_matches(l->jids[i], who)) return true;
    return false;
}

/* ---- loading ------------------------------------------------------------ */

static void on_all_loaded(void *ud, const st_result_t *res)
{
    is_loading = false;
    if (st_status(res) != ST_OK) {
        /* Tried again when the next session starts. */
        log_err("blocking: cannot load the blocklists: %s", st_error(res));
        return;
    }
    for (int r = 0; r < st_rows(res); r++) {
        const char *owner = st_text(res, r, 0), *jid = st_text(res, r, 1);
        if (owner && jid) list_add(owner, jid);
    }
    is_loaded = true;
    log_info("blocking: %d blocked JIDs loaded", st_rows(res));
}

static void load_all(sm_t *sm)
{
    is_loading = true;
    storage_query(sm_storage(sm), "SELECT owner, jid FROM blocklist", 0, NULL, on_all_loaded, NULL);
}

static void on_user_loaded(void *ud, const st_result_t *res)
{
    char *owner = ud;
    if (st_status(res) == ST_OK) {
        list_clear(owner);
        for (int r = 0; r < st_rows(res); r++)
            if (st_text(res, r, 0)) list_add(owner, st_text(res, r, 0));
    } else {
        log_warn("blocking: cannot load %s's blocklist: %s", owner, st_error(res));
    }
    free(owner);
}

/* The first session of a user: load the list again (results come back in
 * submission order, so a block in flight is never undone by this). */
static sm_verdict_t on_sess_start(sm_t *sm, sm_pkt_t *pkt)
{
    const sess_t *sess = pkt->sess;
    if (!is_loaded && !is_loading) load_all(sm);
    const char *owner = jid_bare(sess->jid);
    const sess_t *first = sm_sessions(sm, owner);
    if (first && (first != sess || first->next)) return SM_PASS;
    char *copy = strdup(owner);
    if (!copy) log_fatal("out of memory");
    const char *params[] = {owner};
    storage_query(sm_storage(sm), "SELECT jid FROM blocklist WHERE owner = $1", 1, params,
                  on_user_loaded, copy);
    return SM_PASS;
}

/* ---- commands ---------------------------------------------------------- */

typedef struct change {
    sm_t *sm;
    sm_pkt_t *pkt;
    char *owner;
    bool is_block;
    bool is_all; /* unblock everything */
    int n;
    char **jids; /* prepared items */
} change_t;

static void change_free(change_t *c)
{
    sm_pkt_release(c->pkt);
    for (int i = 0; i < c->n; i++)
        free(c->jids[i]);
    free(c->jids);
    free(c->owner);
    free(c);
}

static const char *storage_condition(const st_result_t *res)
{
    return st_status(res) == ST_FULL ? "resource-constraint" : "internal-server-error";
}

static void add_items(elem_t *parent, char *const *jids, int n)
{
    for (int i = 0; i < n; i++)
        elem_set_attr(elem_add(parent, NULL, "item"), "jid", jids[i]);
}

/* XEP-0191 §3.3: every session that asked for the list learns the change. */
static void push_change(sm_t *sm, const change_t *c)
{
    static unsigned long pushes;
    arena_t *a = arena_new(0);
    for (sess_t *s = sm_sessions(sm, c->owner); s; s = s->next) {
        if (!s->slots[slot]) continue;
        char id[32];
        snprintf(id, sizeof id, "block-push-%lu", ++pushes);
        elem_t *iq = elem_new(a, NS_CLIENT, "iq");
        elem_set_attr(iq, "type", "set");
        elem_set_attr(iq, "id", id);
        elem_set_attr(iq, "to", jid_full(s->jid));
        elem_t *cmd = elem_add(iq, NS_BLOCKING, c->is_block ? "block" : "unblock");
        if (!c->is_all) add_items(cmd, c->jids, c->n);
        sm_send_to_sess(sm, s, iq);
    }
    arena_free(a);
}

/* The JID the presence for roster contact `contact` goes to when `item`
 * changed, or NULL: the contact itself when the item covers it, the
 * item when it is one resource of the contact. */
static const char *presence_target(const char *item, const char *contact)
{
    jid_t *cj = jid_new(contact, strlen(contact), NULL);
    if (!cj) return NULL;
    const char *target = NULL;
    if (item_matches(item, cj))
        target = contact;
    else {
        size_t len = strlen(contact);
        if (strncmp(item, contact, len) == 0 && item[len] == '/') target = item;
    }
    jid_free(cj);
    return target;
}

/* XEP-0191 §3.3/§3.4: contacts subscribed to the user's presence (rows of
 * res) covered by an item changed get unavailable presence (block) or the
 * current presence of each available session (unblock). */
static void send_presence(sm_t *sm, const change_t *c, char *const *items, int n,
                          const st_result_t *res)
{
    for (int r = 0; r < st_rows(res); r++) {
        const char *contact = st_text(res, r, 0);
        if (!contact) continue;
        for (int i = 0; i < n; i++) {
            const char *to = presence_target(items[i], contact);
            if (!to) continue;
            presence_send_current(sm, c->owner, to, c->is_block);
            break;
        }
    }
}

static void on_changed(void *ud, const st_result_t *res)
{
    change_t *c = ud;
    sm_t *sm = c->sm;
    if (st_status(res) != ST_OK) {
        log_warn("blocking: cannot change %s's blocklist: %s", c->owner, st_error(res));
        sm_reply_error(sm, c->pkt, storage_condition(res));
        change_free(c);
        return;
    }
    if (c->is_block) {
        /* Unavailable first: once the items are in the list, nothing
         * from the user reaches them any more. */
        send_presence(sm, c, c->jids, c->n, res);
        for (int i = 0; i < c->n; i++)
            list_add(c->owner, c->jids[i]);
    } else if (c->is_all) {
        blocklist_t *old = map_del(&lists, c->owner);
        if (old) {
            send_presence(sm, c, old->jids, old->n, res);
            list_free(old);
        }
    } else {
        for (int i = 0; i < c->n; i++)
            list_remove(c->owner, c->jids[i]);
        send_presence(sm, c, c->jids, c->n, res);
    }
    sm_reply_result(sm, c->pkt, NULL);
    push_change(sm, c);
    change_free(c);
}

/* The roster contacts who get the user's presence: the last statement of
 * every change, so its rows come back with the result. */
#define SUBSCRIBERS_SQL                                                                            \
    "SELECT jid FROM roster_items WHERE owner = $1 AND subscription IN ('from', 'both')"

static void run_change(sm_t *sm, change_t *c)
{
    /* At most a delete and an insert per item, or the delete of all, then
     * the subscribers. */
    st_stmt_t *stmts = calloc(2 * c->n + 2, sizeof *stmts);
    const char **params = calloc(2 * (c->n + 1), sizeof *params);
    if (!stmts || !params) log_fatal("out of memory");
    int k = 0;
    params[0] = c->owner;
    if (c->is_all) stmts[k++] = (st_stmt_t){"DELETE FROM blocklist WHERE owner = $1", 1, params};
    for (int i = 0; i < c->n; i++) {
        const char **p = &params[2 * (i + 1)];
        p[0] = c->owner;
        p[1] = c->jids[i];
        stmts[k++] = (st_stmt_t){"DELETE FROM blocklist WHERE owner = $1 AND jid = $2", 2, p};
        if (c->is_block)
            stmts[k++] = (st_stmt_t){"INSERT INTO blocklist (owner, jid) VALUES ($1, $2)", 2, p};
    }
    stmts[k++] = (st_stmt_t){SUBSCRIBERS_SQL, 1, params};
    storage_tx(sm_storage(sm), k, stmts, on_changed, c);
    free(stmts);
    free(params);
}

/* <block/> or <unblock/>: check the items, then store. */
static void handle_change(sm_t *sm, sm_pkt_t *pkt, const elem_t *cmd, bool is_block)
{
    const char *owner = jid_bare(pkt->from);
    int count = 0;
    for (const elem_t *i = elem_child(cmd, NS_BLOCKING, "item"); i;
         i = elem_next(i, NS_BLOCKING, "item"))
        count++;
    /* XEP-0191 §3.3: a block names at least one JID. */
    if (count == 0 && is_block) {
        sm_reply_error(sm, pkt, "bad-request");
        return;
    }
    const blocklist_t *l = list_of(owner);
    if ((size_t)count > max_items || (is_block && (size_t)(count + (l ? l->n : 0)) > max_items)) {
        sm_reply_error(sm, pkt, "resource-constraint");
        return;
    }

    change_t *c = calloc(1, sizeof *c);
    if (!c || !(c->owner = strdup(owner)) || !(c->jids = calloc(count + 1, sizeof *c->jids)))
        log_fatal("out of memory");
    c->sm = sm;
    c->is_block = is_block;
    c->is_all = count == 0;
    for (const elem_t *i = elem_child(cmd, NS_BLOCKING, "item"); i;
         i = elem_next(i, NS_BLOCKING, "item")) {
        const char *text = elem_attr(i, "jid");
        jid_t *j = text ? jid_new(text, strlen(text), NULL) : NULL;
        if (!j) {
            /* XEP-0191 §3.3: jid-malformed for an item that is no JID. */
            sm_reply_error(sm, pkt, "jid-malformed");
            change_free(c);
            return;
        }
        bool is_repeated = false;
        for (int k = 0; k < c->n; k++)
            is_repeated |= strcmp(c->jids[k], jid_full(j)) == 0;
        if (!is_repeated && !(c->jids[c->n++] = strdup(jid_full(j)))) log_fatal("out of memory");
        jid_free(j);
    }
    c->pkt = sm_pkt_hold(pkt);
    run_change(sm, c);
}

static void on_list_loaded(void *ud, const st_result_t *res)
{
    change_t *c = ud; /* only sm and pkt used */
    if (st_status(res) != ST_OK) {
        log_warn("blocking: cannot read %s's blocklist: %s", c->owner, st_error(res));
        sm_reply_error(c->sm, c->pkt, storage_condition(res));
    } else {
        elem_t *list = elem_new(c->pkt->stanza->arena, NS_BLOCKING, "blocklist");
        for (int r = 0; r < st_rows(res); r++)
            if (st_text(res, r, 0))
                elem_set_attr(elem_add(list, NULL, "item"), "jid", st_text(res, r, 0));
        sm_reply_result(c->sm, c->pkt, list);
    }
    change_free(c);
}

static void handle_get(sm_t *sm, sm_pkt_t *pkt)
{
    /* From now on this session gets the pushes. */
    pkt->sess->slots[slot] = (void *)1;
    change_t *c = calloc(1, sizeof *c);
    if (!c || !(c->owner = strdup(jid_bare(pkt->from)))) log_fatal("out of memory");
    c->sm = sm;
    c->pkt = sm_pkt_hold(pkt);
    const char *params[] = {c->owner};
    storage_query(sm_storage(sm), "SELECT jid FROM blocklist WHERE owner = $1 ORDER BY jid", 1,
                  params, on_list_loaded, c);
}

/* The user's commands (no to, or to their own bare JID). */
static sm_verdict_t handle_command(sm_t *sm, sm_pkt_t *pkt)
{
    if (strcmp(pkt->kind, "iq") != 0) return SM_PASS;
    bool is_get = strcmp(pkt->type, "get") == 0;
    if (!is_get && strcmp(pkt->type, "set") != 0) return SM_PASS;
    elem_t *cmd = elem_first(pkt->stanza);
    if (!cmd || strcmp(cmd->ns, NS_BLOCKING) != 0) return SM_PASS;
    if (is_get && strcmp(cmd->name, "blocklist") == 0)
        handle_get(sm, pkt);
    else if (!is_get && strcmp(cmd->name, "block") == 0)
        handle_change(sm, pkt, cmd, true);
    else if (!is_get && strcmp(cmd->name, "unblock") == 0)
        handle_change(sm, pkt, cmd, false);
    else
        sm_reply_error(sm, pkt, "bad-request");
    return SM_HANDLED;
}

/* ---- enforcement -------------------------------------------------------- */

/* XEP-0191 §3.5: the user sends to a JID they blocked. */
static void refuse_outbound(sm_t *sm, sm_pkt_t *pkt)
{
    if (xmpp_stanza_error(pkt->stanza, "not-acceptable", NULL) < 0) return; /* an error: dropped */
    elem_add(pkt->stanza->last, NS_BLOCKING_ERRORS, "blocked");
    sm_send_to_sess(sm, pkt->sess, pkt->stanza);
}

/* The server itself is never blocked: it answers the user's IQs. */
static bool is_server(sm_t *sm, const jid_t *j)
{
    return !jid_has_node(j) && sm_is_local(sm, jid_domain(j));
}

static sm_verdict_t on_sess(sm_t *sm, sm_pkt_t *pkt)
{
    if (!pkt->to || jid_equal_bare(pkt->to, pkt->from)) return handle_command(sm, pkt);
    if (is_server(sm, pkt->to) || !is_blocked(jid_bare(pkt->from), pkt->to)) return SM_PASS;
    refuse_outbound(sm, pkt);
    return SM_HANDLED;
}

static sm_verdict_t on_user(sm_t *sm, sm_pkt_t *pkt)
{
    if (!pkt->to || jid_equal_bare(pkt->to, pkt->from) || is_server(sm, pkt->from)) return SM_PASS;
    if (!is_blocked(jid_bare(pkt->to), pkt->from)) return SM_PASS;
    /* XEP-0191 §3.5: as if the user were not there. */
    bool is_request = strcmp(pkt->type, "get") == 0 || strcmp(pkt->type, "set") == 0;
    if (strcmp(pkt->kind, "message") == 0 || (strcmp(pkt->kind, "iq") == 0 && is_request))
        sm_reply_error(sm, pkt, "service-unavailable");
    return SM_HANDLED;
}

static sm_verdict_t on_out(sm_t *sm, sm_pkt_t *pkt)
{
    if (!pkt->to || jid_equal_bare(pkt->to, pkt->from)) return SM_PASS;
    return is_blocked(jid_bare(pkt->from), pkt->to) ? SM_HANDLED : SM_PASS;
}

void mod_blocking_init(sm_t *sm); /* listed in modules.c */

void mod_blocking_init(sm_t *sm)
{
    map_init(&lists);
    slot = sm_slot(sm);
    max_items = (size_t)config_int(sm_config(sm), "sm.blocklist-max");
    /* Before every other module: a blocked stanza is seen by none. */
    sm_hook(sm, SM_CHAIN_IN_SESS, 100, on_sess);
    sm_hook(sm, SM_CHAIN_IN_USER, 100, on_user);
    sm_hook(sm, SM_CHAIN_OUT, 100, on_out);
    sm_hook(sm, SM_CHAIN_SESS_START, 100, on_sess_start);
    sm_feature(sm, NS_BLOCKING);
    load_all(sm);
}
