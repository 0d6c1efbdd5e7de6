/* mod_vcard.c — vCard-temp (XEP-0054): each account's one vCard.
 *
 * A get reads the vCard of the account it is addressed to: the user's own
 * (no to, or to their bare JID) or any local account's (to=bare JID, from
 * anyone); an account with none gets an empty <vCard/>. A set changes only
 * the user's own vCard (forbidden otherwise), up to sm.vcard-max bytes
 * serialized (not-acceptable beyond); an empty <vCard/> deletes it. The
 * vCard is kept as its XML text in vcard(owner, data). Nothing is
 * acknowledged before the store says it is written. */
#include <stdlib.h>
#include <string.h>

#include "sm.h"

#define NS_VCARD "vcard-temp"

static size_t vcard_max;

typedef struct vcard_req {
    sm_t *sm;
    sm_pkt_t *pkt;
} vcard_req_t;

static vcard_req_t *req_new(sm_t *sm, sm_pkt_t *pkt)
{
    vcard_req_t *r = malloc(sizeof *r);
    if (!r) log_fatal("out of memory");
    r->sm = sm;
    r->pkt = sm_pkt_hold(pkt);
    return r;
}

static void req_free(vcard_req_t *r)
{
    sm_pkt_release(r->pkt);
    free(r);
}

/* The stanza error for a failed storage call. */
static const char *storage_condition(const st_result_t *res)
{
    return st_status(res) == ST_FULL ? "resource-constraint" : "internal-server-error";
}

static void on_loaded(void *ud, const st_result_t *res)
{
    vcard_req_t *r = ud;
    if (st_status(res) != ST_OK) {
        log_warn("vcard: cannot read %s's vCard: %s",
                 jid_bare(r->pkt->to ? r->pkt->to : r->pkt->from), st_error(res));
        sm_reply_error(r->sm, r->pkt, storage_condition(res));
        req_free(r);
        return;
    }
    arena_t *a = r->pkt->stanza->arena;
    elem_t *vcard = NULL;
    const char *data = st_rows(res) > 0 ? st_text(res, 0, 0) : NULL;
    if (data) {
        vcard = xml_parse_fragment(a, data, strlen(data), NS_VCARD);
        if (!vcard || !elem_is(vcard, NS_VCARD, "vCard")) {
            log_warn("vcard: stored vCard is not a vCard; answering an empty one");
            vcard = NULL;
        }
    }
    if (!vcard) vcard = elem_new(a, NS_VCARD, "vCard");
    sm_reply_result(r->sm, r->pkt, vcard);
    req_free(r);
}

static void on_stored(void *ud, const st_result_t *res)
{
    vcard_req_t *r = ud;
    if (st_status(res) != ST_OK) {
        log_warn("vcard: cannot store %s's vCard: %s", jid_bare(r->pkt->from), st_error(res));
        sm_reply_error(r->sm, r->pkt, storage_condition(res));
    } else {
        sm_reply_result(r->sm, r->pkt, NULL);
    }
    req_free(r);
}

static void vcard_get(sm_t *sm, sm_pkt_t *pkt, const char *owner)
{
    const char *params[] = {owner};
    storage_query(sm_storage(sm), "SELECT data FROM vcard WHERE owner = $1", 1, params, on_loaded,
                  req_new(sm, pkt));
}

static void vcard_set(sm_t *sm, sm_pkt_t *pkt, const elem_t *vcard, const char *owner)
{
    buf_t data = BUF_INIT;
    elem_serialize(vcard, NULL, &data);
    if (data.len > vcard_max) {
        buf_free(&data);
        sm_reply_error(sm, pkt, "not-acceptable");
        return;
    }
    const char *params[] = {owner, data.data};
    st_stmt_t stmts[] = {
        {"DELETE FROM vcard WHERE owner = $1", 1, params},
        {"INSERT INTO vcard (owner, data) VALUES ($1, $2)", 2, params},
    };
    /* An empty vCard is no vCard: the delete alone. */
    int n = elem_first(vcard) ? 2 : 1;
    storage_tx(sm_storage(sm), n, stmts, on_stored, req_new(sm, pkt));
    buf_free(&data);
}

/* owner: the account the IQ is addressed to; is_own: the sender is it. */
static sm_verdict_t handle(sm_t *sm, sm_pkt_t *pkt, const char *owner, bool is_own)
{
    if (strcmp(pkt->kind, "iq") != 0) return SM_PASS;
    bool is_get = strcmp(pkt->type, "get") == 0;
    if (!is_get && strcmp(pkt->type, "set") != 0) return SM_PASS;
    elem_t *vcard = elem_first(pkt->stanza);
    if (!vcard || !elem_is(vcard, NS_VCARD, "vCard")) return SM_PASS;
    if (is_get)
        vcard_get(sm, pkt, owner);
    else if (!is_own)
        sm_reply_error(sm, pkt, "forbidden");
    else
        vcard_set(sm, pkt, vcard, owner);
    return SM_HANDLED;
}

/* The user's own requests, and requests to an account's bare JID. */
static sm_verdict_t on_iq(sm_t *sm, sm_pkt_t *pkt)
{
    bool is_own;
    const char *owner = sm_iq_account(pkt, &is_own);
    return owner ? handle(sm, pkt, owner, is_own) : SM_PASS;
}

void mod_vcard_init(sm_t *sm); /* listed in modules.c */

void mod_vcard_init(sm_t *sm)
{
    vcard_max = config_size(sm_config(sm), "sm.vcard-max");
    sm_hook(sm, SM_CHAIN_IN_SESS, 500, on_iq);
    sm_hook(sm, SM_CHAIN_IN_USER, 500, on_iq);
    sm_feature(sm, NS_VCARD);
}
