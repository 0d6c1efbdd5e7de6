/* mod_register.c — in-band registration after login (XEP-0077 §3.2, §3.3):
 * a user changes their password or removes their account.
 *
 * Creating an account is c2s's job (before login); here the requests come
 * from a session, with no to or to the server. A get answers <registered/>
 * with the username. A set with <username/> and <password/> derives new
 * SCRAM-SHA-1 and SCRAM-SHA-256 keys on libuv's thread pool (PBKDF2 is
 * slow on purpose) and replaces the row in auth: the password itself is
 * never stored. A set with <remove/> deletes every collection the user owns
 * (storage_delete_owner), answers, then ends each of the user's sessions
 * with the not-authorized stream error. Nothing is answered before the
 * store confirms it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

#define NS_REGISTER "jabber:iq:register"
#define MAX_PASSWORD 1023

typedef struct change {
    uv_work_t work;
    sm_t *sm;
    sm_pkt_t *pkt;
    char *owner;
    char *password; /* wiped and freed once the keys are made */
    auth_keys_t keys;
    int status;
} change_t;

static void change_free(change_t *c)
{
    if (c->password) {
        explicit_bzero(c->password, strlen(c->password));
        free(c->password);
    }
    explicit_bzero(&c->keys, sizeof c->keys);
    sm_pkt_release(c->pkt);
    free(c->owner);
    free(c);
}

static change_t *change_new(sm_t *sm, sm_pkt_t *pkt)
{
    change_t *c = calloc(1, sizeof *c);
    if (!c || !(c->owner = strdup(jid_bare(pkt->from)))) log_fatal("out of memory");
    c->sm = sm;
    c->pkt = sm_pkt_hold(pkt);
    return c;
}

static const char *storage_condition(const st_result_t *res)
{
    return st_status(res) == ST_FULL ? "resource-constraint" : "internal-server-error";
}

/* ---- password change ---------------------------------------------------- */

static void on_password_stored(void *ud, const st_result_t *res)
{
    change_t *c = ud;
    if (st_status(res) != ST_OK) {
        log_warn("register: cannot change %s's password: %s", c->owner, st_error(res));
        sm_reply_error(c->sm, c->pkt, storage_condition(res));
    } else if (st_changes(res) == 0) {
        /* The account went away meanwhile (removed by an admin). */
        sm_reply_error(c->sm, c->pkt, "item-not-found");
    } else {
        log_info("register: %s changed their password", c->owner);
        sm_reply_result(c->sm, c->pkt, NULL);
    }
    change_free(c);
}

static void make_keys(uv_work_t *w)
{
    change_t *c = w->data;
    c->status = auth_keys_make(c->password, &c->keys);
}

static void on_keys_made(uv_work_t *w, int status)
{
    change_t *c = w->data;
    if (status < 0 || c->status < 0) {
        if (status != UV_ECANCELED) sm_reply_error(c->sm, c->pkt, "internal-server-error");
        change_free(c);
        return;
    }
    auth_store(sm_storage(c->sm), c->owner, &c->keys, false, on_password_stored, c);
}

static void change_password(sm_t *sm, sm_pkt_t *pkt, const elem_t *query)
{
    const elem_t *username = elem_child(query, NULL, "username");
    const elem_t *password = elem_child(query, NULL, "password");
    const char *text = password ? elem_text(password) : "";
    /* XEP-0077 §3.3: the username, if given, is the user's own. */
    jid_t *named =
        username ? jid_new_parts(elem_text(username), jid_domain(pkt->from), NULL, NULL) : NULL;
    bool is_other = username && (!named || !jid_equal_bare(named, pkt->from));
    jid_free(named);
    if (!*text || strlen(text) > MAX_PASSWORD || is_other) {
        sm_reply_error(sm, pkt, "bad-request");
        return;
    }
    change_t *c = change_new(sm, pkt);
    if (!(c->password = strdup(text))) log_fatal("out of memory");
    c->work.data = c;
    if (uv_queue_work(sm_loop(sm), &c->work, make_keys, on_keys_made) < 0) {
        sm_reply_error(sm, pkt, "internal-server-error");
        change_free(c);
    }
}

/* ---- account removal ---------------------------------------------------- */

static void on_removed(void *ud, const st_result_t *res)
{
    change_t *c = ud;
    sm_t *sm = c->sm;
    if (st_status(res) != ST_OK) {
        log_warn("register: cannot remove %s: %s", c->owner, st_error(res));
        sm_reply_error(sm, c->pkt, storage_condition(res));
        change_free(c);
        return;
    }
    log_notice("register: %s removed their account", c->owner);
    /* XEP-0077 §3.2: the result first, then the streams close. */
    sm_reply_result(sm, c->pkt, NULL);
    sm_account_forget(sm, c->owner);
    sess_t *s = sm_sessions(sm, c->owner), *next;
    for (; s; s = next) {
        next = s->next;
        sm_end_session(sm, s, "not-authorized");
    }
    change_free(c);
}

static void remove_account(sm_t *sm, sm_pkt_t *pkt)
{
    storage_delete_owner(sm_storage(sm), jid_bare(pkt->from), on_removed, change_new(sm, pkt));
}

/* ---- the hook ----------------------------------------------------------- */

static sm_verdict_t on_server(sm_t *sm, sm_pkt_t *pkt)
{
    if (strcmp(pkt->kind, "iq") != 0) return SM_PASS;
    bool is_get = strcmp(pkt->type, "get") == 0;
    if (!is_get && strcmp(pkt->type, "set") != 0) return SM_PASS;
    elem_t *query = elem_first(pkt->stanza);
    if (!query || !elem_is(query, NS_REGISTER, "query")) return SM_PASS;
    /* Only a user of ours, from one of their sessions, about themselves. */
    if (!jid_has_node(pkt->from) || !sm_session(sm, pkt->from)) return SM_PASS;

    if (is_get) {
        elem_t *reply = elem_new(pkt->stanza->arena, NS_REGISTER, "query");
        elem_add(reply, NULL, "registered");
        elem_t *username = elem_add(reply, NULL, "username");
        elem_add_text(username, jid_node(pkt->from), strlen(jid_node(pkt->from)));
        elem_add(reply, NULL, "password");
        sm_reply_result(sm, pkt, reply);
    } else if (elem_child(query, NULL, "remove")) {
        remove_account(sm, pkt);
    } else {
        change_password(sm, pkt, query);
    }
    return SM_HANDLED;
}

void mod_register_init(sm_t *sm); /* listed in modules.c */

void mod_register_init(sm_t *sm)
{
    sm_hook(sm, SM_CHAIN_IN_SERVER, 500, on_server);
    sm_feature(sm, NS_REGISTER);
}
