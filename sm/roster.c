/* roster.c — rosters in memory and in roster_items / roster_version (see
 * roster.h). Loading, the per-user queue of operations, saving, and the
 * one presence helper both roster and presence modules need. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roster.h"

struct roster_op {
    roster_fn fn;
    void *ud;
    roster_op_t *next;
};

typedef struct saving {
    sm_t *sm;
    roster_t *r;
    roster_saved_fn cb;
    void *ud;
} saving_t;

static map_t rosters; /* owner -> roster_t; one sm per process */

static const char *const sub_names[] = {"none", "to", "from", "both"};

static void ritem_free(ritem_t *it)
{
    free(it->jid);
    free(it->name);
    free(it->groups);
    free(it->pending_in);
    free(it);
}

static void roster_clear(roster_t *r)
{
    while (r->items) {
        ritem_t *next = r->items->next;
        ritem_free(r->items);
        r->items = next;
    }
    map_free(&r->index);
    r->is_loaded = false;
    r->load_state = LOAD_NONE;
    r->version = 0;
}

static void roster_free(roster_t *r)
{
    map_del(&rosters, r->owner);
    roster_clear(r);
    free(r->owner);
    free(r);
}

void ritem_set(char **field, const char *value)
{
    free(*field);
    *field = NULL;
    if (value && !(*field = strdup(value))) log_fatal("out of memory");
}

ritem_t *roster_find(const roster_t *r, const char *jid)
{
    return map_get(&r->index, jid);
}

ritem_t *roster_add(roster_t *r, const char *jid)
{
    ritem_t *it = calloc(1, sizeof(*it));
    if (!it) log_fatal("out of memory");
    ritem_set(&it->jid, jid);
    ritem_set(&it->groups, "");
    it->next = r->items;
    r->items = it;
    map_put(&r->index, jid, it);
    return it;
}

static void roster_unlink(roster_t *r, ritem_t *it)
{
    for (ritem_t **p = &r->items; *p; p = &(*p)->next)
        if (*p == it) {
            *p = it->next;
            break;
        }
    map_del(&r->index, it->jid);
    ritem_free(it);
}

bool ritem_is_visible(const ritem_t *it)
{
    return it->sub || it->ask || it->preapproved || it->name || *it->groups || !it->pending_in;
}

/* ---- the queue -------------------------------------------------------- */

static void run_next(sm_t *sm, roster_t *r);

static void version_loaded(void *ud, const st_result_t *res)
{
    saving_t *s = ud;
    roster_t *r = s->r;
    if (st_status(res) != ST_OK) {
        log_warn("roster version of %s: %s", r->owner, st_error(res));
        roster_clear(r);
    } else {
        r->version = st_rows(res) > 0 ? st_int(res, 0, 0) : 0;
    }
    sm_t *sm = s->sm;
    free(s);
    r->is_busy = false;
    r->load_state = LOAD_DONE;
    run_next(sm, r);
}

static void roster_loaded(void *ud, const st_result_t *res)
{
    saving_t *s = ud;
    roster_t *r = s->r;
    if (st_status(res) != ST_OK) {
        log_warn("roster of %s: %s", r->owner, st_error(res));
        free(s);
        return; /* the version query that follows finishes the load */
    }
    for (int i = 0; i < st_rows(res); i++) {
        const char *jid = st_text(res, i, 0);
        if (!jid || roster_find(r, jid)) continue;
        ritem_t *it = roster_add(r, jid);
        ritem_set(&it->name, st_text(res, i, 1));
        const char *sub = st_text(res, i, 2);
        for (unsigned k = 0; k < 4; k++)
            if (sub && strcmp(sub, sub_names[k]) == 0) it->sub = k;
        it->ask = st_int(res, i, 3) != 0;
        it->preapproved = st_int(res, i, 4) != 0;
        ritem_set(&it->pending_in, st_text(res, i, 5));
        ritem_set(&it->groups, st_text(res, i, 6) ? st_text(res, i, 6) : "");
    }
    r->is_loaded = true;
    free(s);
}

static void roster_load(sm_t *sm, roster_t *r)
{
    r->is_busy = true;
    saving_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    if (!a || !b) log_fatal("out of memory");
    a->sm = b->sm = sm;
    a->r = b->r = r;
    const char *params[] = {r->owner};
    /* The store answers in order: the version query's callback ends the
     * load whatever happened to the first. */
    storage_query(sm_storage(sm),
                  "SELECT jid, name, subscription, ask, preapproved, pending_in, \"groups\" "
                  "FROM roster_items WHERE owner = $1",
                  1, params, roster_loaded, a);
    storage_query(sm_storage(sm), "SELECT version FROM roster_version WHERE owner = $1", 1, params,
                  version_loaded, b);
}

static void run_next(sm_t *sm, roster_t *r)
{
    if (r->is_busy) return;
    roster_op_t *op = r->head;
    if (!op) {
        if (!sm_sessions(sm, r->owner)) roster_free(r);
        return;
    }
    if (r->load_state == LOAD_NONE) {
        r->load_state = LOAD_RUNNING;
        roster_load(sm, r);
        return;
    }
    r->head = op->next;
    if (!r->head) r->tail = NULL;
    /* An op that met a failed load answers its error; the next one tries
     * loading again. */
    if (!r->is_loaded) r->load_state = LOAD_NONE;
    r->is_busy = true;
    op->fn(sm, r, op->ud);
    free(op);
}

void roster_with(sm_t *sm, const char *owner, roster_fn fn, void *ud)
{
    roster_t *r = map_get(&rosters, owner);
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r || !(r->owner = strdup(owner))) log_fatal("out of memory");
        map_init(&r->index);
        map_put(&rosters, owner, r);
    }
    roster_op_t *op = calloc(1, sizeof(*op));
    if (!op) log_fatal("out of memory");
    op->fn = fn;
    op->ud = ud;
    if (r->tail)
        r->tail->next = op;
    else
        r->head = op;
    r->tail = op;
    run_next(sm, r);
}

void roster_done(sm_t *sm, roster_t *r)
{
    r->is_busy = false;
    run_next(sm, r);
}

void roster_forget_if_idle(sm_t *sm, const char *owner)
{
    roster_t *r = map_get(&rosters, owner);
    sess_t *s = sm_sessions(sm, owner);
    /* The ending session is still listed during SM_CHAIN_SESS_END. */
    if (r && !r->is_busy && !r->head && (!s || !s->next)) roster_free(r);
}

/* ---- saving ----------------------------------------------------------- */

static void saved(void *ud, const st_result_t *res)
{
    saving_t *s = ud;
    st_status_t status = st_status(res);
    if (status == ST_OK) {
        s->r->version++;
    } else {
        log_warn("roster of %s not saved: %s", s->r->owner, st_error(res));
        roster_clear(s->r);
    }
    s->cb(s->sm, s->r, s->ud, status);
    free(s);
}

void roster_save(sm_t *sm, roster_t *r, ritem_t *it, bool is_removal, roster_saved_fn cb, void *ud)
{
    saving_t *s = calloc(1, sizeof(*s));
    if (!s) log_fatal("out of memory");
    *s = (saving_t){sm, r, cb, ud};
    char version[24], ask[2] = {it->ask ? '1' : '0', 0}, pre[2] = {it->preapproved ? '1' : '0', 0};
    snprintf(version, sizeof(version), "%lld", r->version + 1);
    const char *item[] = {r->owner, it->jid, it->name,       sub_names[it->sub & 3],
                          ask,      pre,     it->pending_in, it->groups};
    const char *ver[] = {r->owner, version};
    st_stmt_t stmts[2] = {
        {"INSERT INTO roster_items (owner, jid, name, subscription, ask, preapproved, "
         "pending_in, \"groups\") VALUES ($1, $2, $3, $4, CAST($5 AS INTEGER), "
         "CAST($6 AS INTEGER), $7, $8) ON CONFLICT (owner, jid) DO UPDATE SET "
         "name = excluded.name, subscription = excluded.subscription, ask = excluded.ask, "
         "preapproved = excluded.preapproved, pending_in = excluded.pending_in, "
         "\"groups\" = excluded.\"groups\"",
         8, item},
        {"INSERT INTO roster_version (owner, version) VALUES ($1, CAST($2 AS BIGINT)) "
         "ON CONFLICT (owner) DO UPDATE SET version = excluded.version",
         2, ver},
    };
    if (is_removal) {
        stmts[0].sql = "DELETE FROM roster_items WHERE owner = $1 AND jid = $2";
        stmts[0].nparams = 2;
    }
    storage_tx(sm_storage(sm), 2, stmts, saved, s);
    if (is_removal) roster_unlink(r, it);
}

/* ---- presence on the user's behalf ------------------------------------ */

void presence_send_current(sm_t *sm, const char *owner, const char *to, bool is_unavailable)
{
    int n = 0;
    for (sess_t *s = sm_sessions(sm, owner); s; s = s->next) {
        if (!s->is_available || !s->presence) continue;
        arena_t *a = arena_new(0);
        elem_t *p;
        if (is_unavailable) {
            p = elem_new(a, NS_CLIENT, "presence");
            elem_set_attr(p, "type", "unavailable");
        } else {
            p = elem_copy(a, s->presence);
        }
        elem_set_attr(p, "from", jid_full(s->jid));
        elem_set_attr(p, "to", to);
        sm_deliver(sm, p);
        arena_free(a);
        n++;
    }
    if (n || is_unavailable) return;
    arena_t *a = arena_new(0);
    elem_t *p = elem_new(a, NS_CLIENT, "presence");
    elem_set_attr(p, "type", "unavailable");
    elem_set_attr(p, "from", owner);
    elem_set_attr(p, "to", to);
    sm_deliver(sm, p);
    arena_free(a);
}
