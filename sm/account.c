/* account.c — accounts as the sm changes them: create one, set its
 * password, remove it with everything it owns. One code path for every
 * asker: XEP-0077 from a session (mod_register.c) and the HTTP admin API
 * (http_api.c).
 *
 * Passwords are turned into SCRAM-SHA-1 and SCRAM-SHA-256 keys on libuv's
 * thread pool (PBKDF2 is slow on purpose; storage/auth.c) and only the keys
 * are stored. The core's account cache follows: a created account stops
 * being known as absent, a removed one is forgotten, and a removed
 * account's sessions end with the not-authorized stream error, after the
 * asker has been told (XEP-0077 §3.2: the result first, then the streams
 * close). */
#include <stdlib.h>
#include <string.h>

#include "core.h"

typedef enum op { OP_ADD, OP_PASSWORD, OP_REMOVE } op_t;

typedef struct change {
    uv_work_t work;
    sm_t *sm;
    op_t op;
    char *owner;
    char *password; /* wiped and freed once the keys are made */
    auth_keys_t keys;
    int status;
    sm_account_done done;
    void *ud;
} change_t;

static void change_free(change_t *c)
{
    if (c->password) {
        explicit_bzero(c->password, strlen(c->password));
        free(c->password);
    }
    explicit_bzero(&c->keys, sizeof c->keys);
    free(c->owner);
    free(c);
}

static void finish(change_t *c, sm_account_result_t result)
{
    c->done(c->sm, c->ud, result);
    change_free(c);
}

static sm_account_result_t store_result(const change_t *c, const st_result_t *res)
{
    static const char *const what[] = {"create", "set the password of", "remove"};
    st_status_t st = st_status(res);
    if (st == ST_OK) return SM_ACCOUNT_OK;
    if (st == ST_CONSTRAINT && c->op == OP_ADD) return SM_ACCOUNT_EXISTS;
    log_warn("cannot %s %s: %s", what[c->op], c->owner, st_error(res));
    return st == ST_FULL ? SM_ACCOUNT_FULL : SM_ACCOUNT_FAILED;
}

jid_t *sm_local_account(const sm_t *sm, const char *text)
{
    jid_t *j = text ? jid_new(text, strlen(text), NULL) : NULL;
    if (j && (!jid_has_node(j) || jid_has_resource(j) || !sm_is_local(sm, jid_domain(j)))) {
        jid_free(j);
        j = NULL;
    }
    return j;
}

int sm_end_user_sessions(sm_t *sm, const char *bare, const char *resource, const char *reason)
{
    int n = 0;
    sess_t *s = sm_sessions(sm, bare), *next;
    for (; s; s = next) {
        next = s->next;
        if (resource && strcmp(resource, jid_resource(s->jid)) != 0) continue;
        sm_end_session(sm, s, reason);
        n++;
    }
    return n;
}

/* ---- keys ----------------------------------------------------------------- */

static void on_stored(void *ud, const st_result_t *res)
{
    change_t *c = ud;
    sm_account_result_t result = store_result(c, res);
    /* An update that changed nothing: the account is not there. */
    if (result == SM_ACCOUNT_OK && c->op == OP_PASSWORD && st_changes(res) == 0)
        result = SM_ACCOUNT_NOT_FOUND;
    if (result == SM_ACCOUNT_OK && c->op == OP_ADD) sm_account_created(c->sm, c->owner);
    finish(c, result);
}

static void make_keys(uv_work_t *w)
{
    change_t *c = w->data;
    c->status = auth_keys_make(c->password, &c->keys);
}

static void on_keys_made(uv_work_t *w, int status)
{
    change_t *c = w->data;
    if (status < 0) {
        finish(c, SM_ACCOUNT_FAILED);
        return;
    }
    if (c->status < 0) {
        finish(c, SM_ACCOUNT_BAD_PASSWORD);
        return;
    }
    auth_store(c->sm->st, c->owner, &c->keys, c->op == OP_ADD, on_stored, c);
}

static change_t *change_new(sm_t *sm, op_t op, const char *bare, sm_account_done done, void *ud)
{
    change_t *c = calloc(1, sizeof *c);
    if (!c || !(c->owner = strdup(bare))) log_fatal("out of memory");
    c->sm = sm;
    c->op = op;
    c->done = done;
    c->ud = ud;
    return c;
}

static void set_keys(sm_t *sm, op_t op, const char *bare, const char *password,
                     sm_account_done done, void *ud)
{
    if (!password || !*password || strlen(password) > SM_PASSWORD_MAX) {
        done(sm, ud, SM_ACCOUNT_BAD_PASSWORD);
        return;
    }
    change_t *c = change_new(sm, op, bare, done, ud);
    if (!(c->password = strdup(password))) log_fatal("out of memory");
    c->work.data = c;
    if (uv_queue_work(sm->loop, &c->work, make_keys, on_keys_made) < 0)
        finish(c, SM_ACCOUNT_FAILED);
}

void sm_account_add(sm_t *sm, const char *bare, const char *password, sm_account_done done,
                    void *ud)
{
    set_keys(sm, OP_ADD, bare, password, done, ud);
}

void sm_account_set_password(sm_t *sm, const char *bare, const char *password, sm_account_done done,
                             void *ud)
{
    set_keys(sm, OP_PASSWORD, bare, password, done, ud);
}

/* ---- removal -------------------------------------------------------------- */

static void on_removed(void *ud, const st_result_t *res)
{
    change_t *c = ud;
    sm_t *sm = c->sm;
    sm_account_result_t result = store_result(c, res);
    if (result != SM_ACCOUNT_OK) {
        finish(c, result);
        return;
    }
    log_notice("%s removed with everything it owned", c->owner);
    c->done(sm, c->ud, SM_ACCOUNT_OK);
    sm_account_forget(sm, c->owner);
    sm_end_user_sessions(sm, c->owner, NULL, "not-authorized");
    change_free(c);
}

static void on_checked(void *ud, const st_result_t *res)
{
    change_t *c = ud;
    sm_account_result_t result = store_result(c, res);
    if (result == SM_ACCOUNT_OK && st_rows(res) == 0) result = SM_ACCOUNT_NOT_FOUND;
    if (result != SM_ACCOUNT_OK) {
        finish(c, result);
        return;
    }
    storage_delete_owner(c->sm->st, c->owner, on_removed, c);
}

void sm_account_remove(sm_t *sm, const char *bare, sm_account_done done, void *ud)
{
    change_t *c = change_new(sm, OP_REMOVE, bare, done, ud);
    const char *params[] = {c->owner};
    storage_query(sm->st, "SELECT 1 FROM auth WHERE owner = $1", 1, params, on_checked, c);
}
