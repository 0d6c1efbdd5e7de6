/* mod_last.c — last activity (XEP-0012).
 *
 * To the server: its uptime in seconds. To an account's bare JID: 0 when
 * the user has a session, else the seconds since their last session ended,
 * with the status of their last unavailable presence as text; asked by
 * anyone but the user, only a contact the user shares presence with
 * (roster subscription from or both) gets an answer, others forbidden
 * (XEP-0012 §4). An account that never logged out: item-not-found. A query
 * to a full JID is the client's, delivered by the core.
 *
 * When a user's last session ends, last_activity(owner, seconds, status)
 * gets the time (Unix seconds) and that status. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sm.h"

#define NS_LAST "jabber:iq:last"
#define MAX_STATUS 1024

static time_t started;
static int slot; /* sess->slots[slot]: the status of the session's unavailable presence */

typedef struct last_req {
    sm_t *sm;
    sm_pkt_t *pkt;
    char *owner;
    bool is_own;
} last_req_t;

static elem_t *last_query(sm_pkt_t *pkt, long long seconds, const char *status)
{
    char text[32];
    snprintf(text, sizeof text, "%lld", seconds < 0 ? 0 : seconds);
    elem_t *q = elem_new(pkt->stanza->arena, NS_LAST, "query");
    elem_set_attr(q, "seconds", text);
    if (status && *status) elem_add_text(q, status, strlen(status));
    return q;
}

/* A get or set in jabber:iq:last; sets are refused here. */
static elem_t *request(sm_t *sm, sm_pkt_t *pkt)
{
    if (strcmp(pkt->kind, "iq") != 0) return NULL;
    bool is_get = strcmp(pkt->type, "get") == 0;
    if (!is_get && strcmp(pkt->type, "set") != 0) return NULL;
    elem_t *q = elem_first(pkt->stanza);
    if (!q || !elem_is(q, NS_LAST, "query")) return NULL;
    if (!is_get) sm_reply_error(sm, pkt, "bad-request");
    return q;
}

static sm_verdict_t on_server(sm_t *sm, sm_pkt_t *pkt)
{
    if (!request(sm, pkt)) return SM_PASS;
    if (strcmp(pkt->type, "get") == 0)
        sm_reply_result(sm, pkt, last_query(pkt, (long long)(time(NULL) - started), NULL));
    return SM_HANDLED;
}

/* Row: the asker's subscription in the owner's roster, the logout time,
 * the status. */
static void on_loaded(void *ud, const st_result_t *res)
{
    last_req_t *r = ud;
    if (st_status(res) != ST_OK) {
        log_warn("last: cannot read %s's last activity: %s", r->owner, st_error(res));
        sm_reply_error(r->sm, r->pkt, "internal-server-error");
    } else {
        const char *sub = st_rows(res) > 0 ? st_text(res, 0, 0) : NULL;
        const char *logout = st_rows(res) > 0 ? st_text(res, 0, 1) : NULL;
        bool is_allowed =
            r->is_own || (sub && (strcmp(sub, "from") == 0 || strcmp(sub, "both") == 0));
        if (!is_allowed)
            sm_reply_error(r->sm, r->pkt, "forbidden");
        else if (sm_sessions(r->sm, r->owner))
            sm_reply_result(r->sm, r->pkt, last_query(r->pkt, 0, NULL));
        else if (!logout)
            sm_reply_error(r->sm, r->pkt, "item-not-found");
        else
            sm_reply_result(
                r->sm, r->pkt,
                last_query(r->pkt, (long long)time(NULL) - st_int(res, 0, 1), st_text(res, 0, 2)));
    }
    sm_pkt_release(r->pkt);
    free(r->owner);
    free(r);
}

static sm_verdict_t on_account(sm_t *sm, sm_pkt_t *pkt, const char *owner, bool is_own)
{
    if (!request(sm, pkt)) return SM_PASS;
    if (strcmp(pkt->type, "get") != 0) return SM_HANDLED;
    last_req_t *r = malloc(sizeof *r);
    if (!r || !(r->owner = strdup(owner))) log_fatal("out of memory");
    r->sm = sm;
    r->pkt = sm_pkt_hold(pkt);
    r->is_own = is_own;
    const char *params[] = {owner, jid_bare(pkt->from)};
    storage_query(sm_storage(sm),
                  "SELECT (SELECT subscription FROM roster_items WHERE owner = $1 AND jid = $2),"
                  " (SELECT stamp FROM last_activity WHERE owner = $1),"
                  " (SELECT status FROM last_activity WHERE owner = $1)",
                  2, params, on_loaded, r);
    return SM_HANDLED;
}

/* Remember the status of the session's unavailable presence (before
 * mod_presence takes it). */
static sm_verdict_t on_sess_presence(sm_t *sm, sm_pkt_t *pkt)
{
    if (strcmp(pkt->kind, "presence") == 0 && !pkt->to && strcmp(pkt->type, "unavailable") == 0) {
        elem_t *status = elem_child(pkt->stanza, NULL, "status");
        const char *text = status ? elem_text(status) : "";
        free(pkt->sess->slots[slot]);
        if (!(pkt->sess->slots[slot] = strndup(text, MAX_STATUS))) log_fatal("out of memory");
    }
    return SM_PASS;
}

/* The user's own requests, and requests to an account's bare JID. */
static sm_verdict_t on_iq(sm_t *sm, sm_pkt_t *pkt)
{
    bool is_own;
    const char *owner = sm_iq_account(pkt, &is_own);
    return owner ? on_account(sm, pkt, owner, is_own) : SM_PASS;
}

static void on_stored(void *ud, const st_result_t *res)
{
    char *owner = ud;
    if (st_status(res) != ST_OK)
        log_warn("last: cannot store %s's last activity: %s", owner, st_error(res));
    free(owner);
}

static sm_verdict_t on_sess_end(sm_t *sm, sm_pkt_t *pkt)
{
    sess_t *sess = pkt->sess;
    char *status = sess->slots[slot];
    sess->slots[slot] = NULL;
    const char *owner = jid_bare(sess->jid);
    const sess_t *first = sm_sessions(sm, owner);
    if (!first || (first == sess && !first->next)) {
        char now[32];
        snprintf(now, sizeof now, "%lld", (long long)time(NULL));
        const char *params[] = {owner, now, status ? status : ""};
        st_stmt_t stmts[] = {
            {"DELETE FROM last_activity WHERE owner = $1", 1, params},
            {"INSERT INTO last_activity (owner, stamp, status) VALUES ($1, $2, $3)", 3, params},
        };
        char *copy = strdup(owner);
        if (!copy) log_fatal("out of memory");
        storage_tx(sm_storage(sm), 2, stmts, on_stored, copy);
    }
    free(status);
    return SM_PASS;
}

void mod_last_init(sm_t *sm); /* listed in modules.c */

void mod_last_init(sm_t *sm)
{
    started = time(NULL);
    slot = sm_slot(sm);
    sm_hook(sm, SM_CHAIN_IN_SERVER, 500, on_server);
    sm_hook(sm, SM_CHAIN_IN_SESS, 150, on_sess_presence);
    sm_hook(sm, SM_CHAIN_IN_SESS, 500, on_iq);
    sm_hook(sm, SM_CHAIN_IN_USER, 500, on_iq);
    sm_hook(sm, SM_CHAIN_SESS_END, 500, on_sess_end);
    sm_feature(sm, NS_LAST);
}
