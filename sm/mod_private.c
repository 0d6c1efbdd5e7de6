/* mod_private.c — private XML storage (XEP-0049).
 *
 * An account keeps one element per namespace, readable and writable by
 * itself only: a jabber:iq:private get names the element (<foo xmlns='x'/>)
 * and gets back the stored one, or the empty element it sent when there is
 * none; a set stores each child of the query in place of the one of the same
 * namespace. Elements in jabber:client, jabber:server or jabber:iq:private
 * (or in none) are refused with not-acceptable (XEP-0049 §3); asking for
 * another account's data is forbidden. Rows: private(owner, ns, data), data
 * the element's XML text, at most sm.private-max bytes per element, and at
 * most sm.private-count elements (namespaces) per account: a set that
 * would keep more is refused with resource-constraint (type wait, RFC 6120
 * §8.3.3.18), nothing stored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

#define NS_PRIVATE "jabber:iq:private"
#define MAX_ELEMENTS 32 /* children of one set */

static size_t private_max;
static long long private_count; /* sm.private-count */

typedef struct private_req {
    sm_t *sm;
    sm_pkt_t *pkt;
} private_req_t;

static private_req_t *req_new(sm_t *sm, sm_pkt_t *pkt)
{
    private_req_t *r = malloc(sizeof *r);
    if (!r) log_fatal("out of memory");
    r->sm = sm;
    r->pkt = sm_pkt_hold(pkt);
    return r;
}

static void req_free(private_req_t *r)
{
    sm_pkt_release(r->pkt);
    free(r);
}

static const char *storage_condition(const st_result_t *res)
{
    return st_status(res) == ST_FULL ? "resource-constraint" : "internal-server-error";
}

static bool is_reserved_ns(const char *ns)
{
    return !*ns || strcmp(ns, NS_CLIENT) == 0 || strcmp(ns, NS_SERVER) == 0 ||
           strcmp(ns, NS_PRIVATE) == 0;
}

static void on_loaded(void *ud, const st_result_t *res)
{
    private_req_t *r = ud;
    if (st_status(res) != ST_OK) {
        log_warn("private: cannot read %s's data: %s", jid_bare(r->pkt->from), st_error(res));
        sm_reply_error(r->sm, r->pkt, storage_condition(res));
        req_free(r);
        return;
    }
    arena_t *a = r->pkt->stanza->arena;
    const elem_t *asked = elem_first(elem_first(r->pkt->stanza));
    elem_t *query = elem_new(a, NS_PRIVATE, "query");
    elem_t *stored = NULL;
    const char *data = st_rows(res) > 0 ? st_text(res, 0, 0) : NULL;
    if (data) {
        stored = xml_parse_fragment(a, data, strlen(data), asked->ns);
        if (!stored || strcmp(stored->ns, asked->ns) != 0) {
            log_warn("private: stored data of %s in %s is unreadable", jid_bare(r->pkt->from),
                     asked->ns);
            stored = NULL;
        }
    }
    elem_add_copy(query, stored ? stored : asked);
    sm_reply_result(r->sm, r->pkt, query);
    req_free(r);
}

static void on_stored(void *ud, const st_result_t *res)
{
    private_req_t *r = ud;
    if (st_status(res) == ST_CONSTRAINT) { /* the count check below */
        log_info("private: %s keeps sm.private-count elements already", jid_bare(r->pkt->from));
        sm_reply_error(r->sm, r->pkt, "resource-constraint");
    } else if (st_status(res) != ST_OK) {
        log_warn("private: cannot store %s's data: %s", jid_bare(r->pkt->from), st_error(res));
        sm_reply_error(r->sm, r->pkt, storage_condition(res));
    } else {
        sm_reply_result(r->sm, r->pkt, NULL);
    }
    req_free(r);
}

static void private_get(sm_t *sm, sm_pkt_t *pkt, const elem_t *query)
{
    const elem_t *asked = elem_first(query);
    if (!asked || elem_next(asked, NULL, NULL)) {
        sm_reply_error(sm, pkt, "bad-request");
        return;
    }
    if (is_reserved_ns(asked->ns)) {
        sm_reply_error(sm, pkt, "not-acceptable");
        return;
    }
    const char *params[] = {jid_bare(pkt->from), asked->ns};
    storage_query(sm_storage(sm), "SELECT data FROM private WHERE owner = $1 AND ns = $2", 2,
                  params, on_loaded, req_new(sm, pkt));
}

static void private_set(sm_t *sm, sm_pkt_t *pkt, const elem_t *query)
{
    const char *owner = jid_bare(pkt->from);
    const char *params[MAX_ELEMENTS][3];
    buf_t data[MAX_ELEMENTS];
    int n = 0;
    const char *condition = NULL;
    for (const elem_t *e = elem_first(query); e && !condition; e = elem_next(e, NULL, NULL)) {
        if (n == MAX_ELEMENTS) {
            condition = "resource-constraint";
            break;
        }
        if (is_reserved_ns(e->ns)) {
            condition = "not-acceptable";
            break;
        }
        for (int i = 0; i < n; i++)
            if (strcmp(params[i][1], e->ns) == 0) condition = "bad-request"; /* one per ns */
        if (condition) break;
        buf_init(&data[n]);
        elem_serialize(e, NULL, &data[n]);
        params[n][0] = owner;
        params[n][1] = e->ns;
        params[n][2] = data[n].data;
        if (data[n++].len > private_max) condition = "not-acceptable";
    }
    if (!condition && n == 0) condition = "bad-request";
    if (!condition) {
        char limit[24];
        snprintf(limit, sizeof limit, "%lld", private_count);
        const char *count_params[] = {owner, limit};
        st_stmt_t stmts[2 * MAX_ELEMENTS + 1];
        for (int i = 0; i < n; i++) {
            stmts[2 * i] =
                (st_stmt_t){"DELETE FROM private WHERE owner = $1 AND ns = $2", 2, params[i]};
            stmts[2 * i + 1] = (st_stmt_t){
                "INSERT INTO private (owner, ns, data) VALUES ($1, $2, $3)", 3, params[i]};
        }
        /* The count, checked inside the transaction so that no two sets
         * race past it: over the limit, this copies one of the owner's
         * rows onto itself, which the primary key (owner, ns) refuses, and
         * the whole transaction is undone (ST_CONSTRAINT); else it
         * inserts nothing. Plain SQL, the same on both drivers. */
        stmts[2 * n] =
            (st_stmt_t){"INSERT INTO private (owner, ns, data) SELECT owner, ns, data FROM private "
                        "WHERE owner = $1 AND (SELECT COUNT(*) FROM private WHERE owner = $1) > "
                        "CAST($2 AS BIGINT) LIMIT 1",
                        2, count_params};
        storage_tx(sm_storage(sm), 2 * n + 1, stmts, on_stored, req_new(sm, pkt));
    } else {
        sm_reply_error(sm, pkt, condition);
    }
    for (int i = 0; i < n; i++)
        buf_free(&data[i]);
}

static sm_verdict_t handle(sm_t *sm, sm_pkt_t *pkt, bool is_own)
{
    if (strcmp(pkt->kind, "iq") != 0) return SM_PASS;
    bool is_get = strcmp(pkt->type, "get") == 0;
    if (!is_get && strcmp(pkt->type, "set") != 0) return SM_PASS;
    elem_t *query = elem_first(pkt->stanza);
    if (!query || !elem_is(query, NS_PRIVATE, "query")) return SM_PASS;
    if (!is_own)
        sm_reply_error(sm, pkt, "forbidden");
    else if (is_get)
        private_get(sm, pkt, query);
    else
        private_set(sm, pkt, query);
    return SM_HANDLED;
}

/* The user's own requests, and requests to an account's bare JID: only
 * its owner may (XEP-0049 §3). */
static sm_verdict_t on_iq(sm_t *sm, sm_pkt_t *pkt)
{
    bool is_own;
    return sm_iq_account(pkt, &is_own) ? handle(sm, pkt, is_own) : SM_PASS;
}

void mod_private_init(sm_t *sm); /* listed in modules.c */

void mod_private_init(sm_t *sm)
{
    private_max = config_size(sm_config(sm), "sm.private-max");
    private_count = config_int(sm_config(sm), "sm.private-count");
    sm_hook(sm, SM_CHAIN_IN_SESS, 500, on_iq);
    sm_hook(sm, SM_CHAIN_IN_USER, 500, on_iq);
    sm_feature(sm, NS_PRIVATE);
}
