/* mod_admin_commands.c — the administrators' commands of XEP-0133 (1.2),
 * run through the ad-hoc framework (adhoc.h; only sm.admin may run them).
 * One table entry per command node http://jabber.org/protocol/admin#NAME,
 * with the form fields XEP-0133 names (FORM_TYPE
 * http://jabber.org/protocol/admin):
 *
 *   add-user                accountjid, password, password-verify
 *   delete-user             accountjids: every collection deleted, sessions
 *                           ended (not-authorized), as hearthctl deluser
 *   disable-user            accountjids: auth.disabled set (c2s refuses the
 *                           login with account-disabled), sessions ended
 *   reenable-user           accountjids: auth.disabled cleared
 *   change-user-password    accountjid, password
 *   end-user-session        accountjids, bare (every session) or full (that
 *                           one); the stream closes with policy-violation
 *   get-user-roster         accountjid -> the roster as a jabber:iq:roster
 *                           <query/> inside the result form
 *   get-user-lastlogin      accountjid -> lastlogin: when its last session
 *                           started (XEP-0082 UTC), "never" if none did
 *   get-registered-users-num, get-online-users-num (distinct users with a
 *                           session) -> registeredusersnum, onlineusersnum
 *   get-online-users-list   max_items -> onlineuserjids, bare JIDs (also
 *                           as get-online-users, the node Prosody uses)
 *   announce                announcement: a message from the domain to
 *                           every session in it, now
 *   set-motd, edit-motd     motd: kept in the store (table motd, one per
 *                           domain) and sent to each session of the domain
 *                           once, at its first available presence
 *   delete-motd             no form: the message of the day is gone
 *
 * XEP-0133 has no command for the server's own figures, so Hearth adds one,
 * urn:hearth:admin#stats: onlinesessions, onlineusers, registeredusers,
 * uptime (seconds) and the messages this sm has routed since it started
 * (messages from its sessions, and messages to its users from elsewhere).
 *
 * Counts, lists and announcements cover the domain the command was sent
 * to; account commands take an account in any domain of this sm. With
 * several sm shards, what concerns sessions (counts, lists, announce, the
 * sessions ended by end-user-session, disable-user and delete-user) is
 * this shard's: the one the router gave the administrator.
 * Passwords are derived on libuv's thread pool; every store access is
 * asynchronous; nothing is answered before the store confirms it. Lists
 * of JIDs take at most MAX_JIDS. Also here: the time of each session start
 * is written to auth.last_login, and a session that starts for an account
 * disabled meanwhile is ended (c2s refuses the logins of a disabled
 * account, but one whose keys it read just before the disable would
 * otherwise get through). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adhoc.h"
#include "map.h"

#define NS_ADMIN_CMDS "http://jabber.org/protocol/admin"
#define NODE(name) NS_ADMIN_CMDS "#" name
#define NS_ROSTER "jabber:iq:roster"
#define MAX_JIDS 100
#define MAX_PASSWORD 1023
#define MAX_MOTD 4096
#define MAX_ANNOUNCEMENT 4096
#define DEFAULT_MAX_ITEMS 100

static time_t started;
static unsigned long long messages_from_sessions, messages_to_users;
static map_t motds; /* domain -> malloc'ed text */

/* ---- helpers ------------------------------------------------------------ */

static const char *storage_condition(const st_result_t *res)
{
    return st_status(res) == ST_FULL ? "resource-constraint" : "internal-server-error";
}

/* The account (bare, or full when may_be_full) a value names, in one of
 * our domains; NULL if it does not. */
static jid_t *account_of(sm_t *sm, const char *text, bool may_be_full)
{
    jid_t *j = text ? jid_new(text, strlen(text), NULL) : NULL;
    if (j && (!jid_has_node(j) || (jid_has_resource(j) && !may_be_full) ||
              !sm_is_local(sm, jid_domain(j)))) {
        jid_free(j);
        j = NULL;
    }
    return j;
}

static bool in_domain(const sess_t *s, const char *domain)
{
    return strcmp(jid_domain(s->jid), domain) == 0;
}

static void ask_account(adhoc_req_t *req, elem_t *x)
{
    (void)req;
    adhoc_field_add(x, "hidden", "FORM_TYPE", NULL, NS_ADMIN_CMDS);
    elem_add(adhoc_field_add(x, "jid-single", "accountjid", "The Jabber ID of the user", NULL),
             NULL, "required");
}

static void ask_accounts(adhoc_req_t *req, elem_t *x)
{
    (void)req;
    adhoc_field_add(x, "hidden", "FORM_TYPE", NULL, NS_ADMIN_CMDS);
    elem_add(adhoc_field_add(x, "jid-multi", "accountjids", "The Jabber ID(s) of the users", NULL),
             NULL, "required");
}

static elem_t *result_form(adhoc_req_t *req)
{
    return adhoc_form_new(adhoc_arena(req), "result", NULL, NS_ADMIN_CMDS);
}

static void done_number(adhoc_req_t *req, const char *var, const char *label, long long n)
{
    char text[32];
    snprintf(text, sizeof text, "%lld", n);
    elem_t *x = result_form(req);
    adhoc_field_add(x, NULL, var, label, text);
    adhoc_done(req, NULL, x);
}

/* ---- passwords: add-user, change-user-password ---------------------------- */

typedef struct pw {
    uv_work_t work;
    adhoc_req_t *req;
    char *owner;
    char *password; /* wiped once the keys are made */
    auth_keys_t keys;
    bool is_new;
    int status;
} pw_t;

static void pw_free(pw_t *p)
{
    if (p->password) {
        explicit_bzero(p->password, strlen(p->password));
        free(p->password);
    }
    explicit_bzero(&p->keys, sizeof p->keys);
    free(p->owner);
    free(p);
}

static void on_pw_stored(void *ud, const st_result_t *res)
{
    pw_t *p = ud;
    char note[400];
    if (p->is_new && st_status(res) == ST_CONSTRAINT) {
        adhoc_fail(p->req, "conflict", "the account exists");
    } else if (st_status(res) != ST_OK) {
        log_warn("admin commands: cannot store the keys of %s: %s", p->owner, st_error(res));
        adhoc_fail(p->req, storage_condition(res), NULL);
    } else if (!p->is_new && st_changes(res) == 0) {
        adhoc_fail(p->req, "item-not-found", "no such account");
    } else {
        sm_t *sm = adhoc_sm(p->req);
        if (p->is_new) sm_account_created(sm, p->owner);
        log_notice("admin commands: %s %s %s", jid_full(adhoc_requester(p->req)),
                   p->is_new ? "added" : "changed the password of", p->owner);
        snprintf(note, sizeof note, "%s %s", p->is_new ? "Added" : "Changed the password of",
                 p->owner);
        adhoc_done(p->req, note, NULL);
    }
    pw_free(p);
}

static void make_keys(uv_work_t *w)
{
    pw_t *p = w->data;
    p->status = auth_keys_make(p->password, &p->keys);
}

static void on_keys_made(uv_work_t *w, int status)
{
    pw_t *p = w->data;
    if (status < 0 || p->status < 0) {
        adhoc_fail(p->req, status < 0 ? "internal-server-error" : "not-acceptable",
                   status < 0 ? NULL : "this password cannot be used");
        pw_free(p);
        return;
    }
    auth_store(sm_storage(adhoc_sm(p->req)), p->owner, &p->keys, p->is_new, on_pw_stored, p);
}

static void set_password(adhoc_req_t *req, const elem_t *form, bool is_new)
{
    sm_t *sm = adhoc_sm(req);
    jid_t *j = account_of(sm, adhoc_value(form, "accountjid"), false);
    const char *password = adhoc_value(form, "password");
    const char *verify = adhoc_value(form, "password-verify");
    if (!j) {
        adhoc_fail(req, "jid-malformed", "accountjid is not an account of this server");
        return;
    }
    if (!password || !*password || strlen(password) > MAX_PASSWORD ||
        (verify && strcmp(verify, password) != 0)) {
        jid_free(j);
        adhoc_fail(req, "not-acceptable", "the password is empty, too long or not verified");
        return;
    }
    pw_t *p = calloc(1, sizeof *p);
    if (!p || !(p->owner = strdup(jid_bare(j))) || !(p->password = strdup(password)))
        log_fatal("out of memory");
    jid_free(j);
    p->req = req;
    p->is_new = is_new;
    p->work.data = p;
    if (uv_queue_work(sm_loop(sm), &p->work, make_keys, on_keys_made) < 0) {
        adhoc_fail(req, "internal-server-error", NULL);
        pw_free(p);
    }
}

static void ask_add_user(adhoc_req_t *req, elem_t *x)
{
    ask_account(req, x);
    elem_add(adhoc_field_add(x, "text-private", "password", "The password for this account", NULL),
             NULL, "required");
    adhoc_field_add(x, "text-private", "password-verify", "Retype password", NULL);
}

static void run_add_user(adhoc_req_t *req, const elem_t *form)
{
    set_password(req, form, true);
}

static void ask_change_password(adhoc_req_t *req, elem_t *x)
{
    ask_account(req, x);
    elem_add(adhoc_field_add(x, "text-private", "password", "The new password", NULL), NULL,
             "required");
}

static void run_change_password(adhoc_req_t *req, const elem_t *form)
{
    set_password(req, form, false);
}

/* ---- batches: delete-user, disable-user, reenable-user -------------------- */

typedef enum op { OP_DELETE, OP_DISABLE, OP_ENABLE } op_t;

typedef struct batch {
    adhoc_req_t *req;
    op_t op;
    char *jids[MAX_JIDS];
    int n, i, changed;
    buf_t unknown; /* accounts that do not exist, space-separated */
} batch_t;

static void batch_next(batch_t *b);

static void batch_free(batch_t *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->jids[i]);
    buf_free(&b->unknown);
    free(b);
}

static void batch_unknown(batch_t *b)
{
    buf_printf(&b->unknown, " %s", b->jids[b->i]);
}

static void on_batch_step(void *ud, const st_result_t *res)
{
    batch_t *b = ud;
    sm_t *sm = adhoc_sm(b->req);
    const char *owner = b->jids[b->i];
    if (st_status(res) != ST_OK) {
        log_warn("admin commands: cannot change %s: %s", owner, st_error(res));
        adhoc_fail(b->req, storage_condition(res), NULL);
        batch_free(b);
        return;
    }
    if (b->op != OP_DELETE && st_changes(res) == 0) {
        batch_unknown(b);
    } else {
        b->changed++;
        log_notice("admin commands: %s %s %s", jid_full(adhoc_requester(b->req)),
                   b->op == OP_DELETE    ? "deleted"
                   : b->op == OP_DISABLE ? "disabled"
                                         : "re-enabled",
                   owner);
        if (b->op == OP_DELETE) sm_account_forget(sm, owner);
        if (b->op != OP_ENABLE) sm_end_user_sessions(sm, owner, NULL, "not-authorized");
    }
    b->i++;
    batch_next(b);
}

/* delete-user: the account exists; then delete what it owns. */
static void on_batch_checked(void *ud, const st_result_t *res)
{
    batch_t *b = ud;
    if (st_status(res) == ST_OK && st_rows(res) == 0) {
        batch_unknown(b);
        b->i++;
        batch_next(b);
    } else if (st_status(res) != ST_OK) {
        on_batch_step(b, res);
    } else {
        storage_delete_owner(sm_storage(adhoc_sm(b->req)), b->jids[b->i], on_batch_step, b);
    }
}

static void batch_next(batch_t *b)
{
    storage_t *st = sm_storage(adhoc_sm(b->req));
    if (b->i < b->n) {
        const char *params[] = {b->jids[b->i]};
        if (b->op == OP_DELETE)
            storage_query(st, "SELECT owner FROM auth WHERE owner = $1", 1, params,
                          on_batch_checked, b);
        else
            storage_query(st,
                          b->op == OP_DISABLE ? "UPDATE auth SET disabled = 1 WHERE owner = $1"
                                              : "UPDATE auth SET disabled = 0 WHERE owner = $1",
                          1, params, on_batch_step, b);
        return;
    }
    buf_t note = BUF_INIT;
    buf_printf(&note, "%s %d account(s)",
               b->op == OP_DELETE    ? "Deleted"
               : b->op == OP_DISABLE ? "Disabled"
                                     : "Re-enabled",
               b->changed);
    if (b->unknown.len) buf_printf(&note, "; no such account:%s", b->unknown.data);
    adhoc_done(b->req, note.data, NULL);
    buf_free(&note);
    batch_free(b);
}

/* The accountjids of a form, prepared, into b (may_be_full: with a
 * resource allowed); false (and answered) when one is not usable. */
static bool accounts_of(adhoc_req_t *req, const elem_t *form, char **out, int *n, bool may_be_full)
{
    const elem_t *f = adhoc_field(form, "accountjids");
    if (!f) f = adhoc_field(form, "accountjid");
    *n = 0;
    for (const elem_t *v = f ? elem_child(f, NS_DATA, "value") : NULL; v;
         v = elem_next(v, NS_DATA, "value")) {
        jid_t *j = account_of(adhoc_sm(req), elem_text(v), may_be_full);
        if (!j || *n == MAX_JIDS) {
            for (int i = 0; i < *n; i++)
                free(out[i]);
            adhoc_fail(req, j ? "not-acceptable" : "jid-malformed",
                       j ? "too many JIDs at once" : "a JID is not an account of this server");
            jid_free(j);
            return false;
        }
        if (!(out[(*n)++] = strdup(jid_full(j)))) log_fatal("out of memory");
        jid_free(j);
    }
    if (*n == 0) {
        adhoc_fail(req, "bad-request", "no accountjids");
        return false;
    }
    return true;
}

static void run_batch(adhoc_req_t *req, const elem_t *form, op_t op)
{
    batch_t *b = calloc(1, sizeof *b);
    if (!b) log_fatal("out of memory");
    b->req = req;
    b->op = op;
    if (!accounts_of(req, form, b->jids, &b->n, false)) {
        free(b);
        return;
    }
    batch_next(b);
}

static void run_delete_user(adhoc_req_t *req, const elem_t *form)
{
    run_batch(req, form, OP_DELETE);
}

static void run_disable_user(adhoc_req_t *req, const elem_t *form)
{
    run_batch(req, form, OP_DISABLE);
}

static void run_reenable_user(adhoc_req_t *req, const elem_t *form)
{
    run_batch(req, form, OP_ENABLE);
}

/* ---- sessions: end-user-session, online counts and lists, announce -------- */

static void run_end_session(adhoc_req_t *req, const elem_t *form)
{
    char *jids[MAX_JIDS];
    int n, ended = 0;
    if (!accounts_of(req, form, jids, &n, true)) return;
    sm_t *sm = adhoc_sm(req);
    for (int i = 0; i < n; i++) {
        jid_t *j = jid_new(jids[i], strlen(jids[i]), NULL);
        ended += sm_end_user_sessions(sm, jid_bare(j), jid_has_resource(j) ? jid_resource(j) : NULL,
                                      "policy-violation");
        jid_free(j);
        free(jids[i]);
    }
    log_notice("admin commands: %s ended %d session(s)", jid_full(adhoc_requester(req)), ended);
    char note[64];
    snprintf(note, sizeof note, "Ended %d session(s)", ended);
    adhoc_done(req, note, NULL);
}

typedef struct online {
    sm_t *sm;
    const char *domain;
    long long users, sessions, max;
    elem_t *field; /* onlineuserjids, or NULL when only counting */
} online_t;

static void count_online(sess_t *s, void *ud)
{
    online_t *o = ud;
    if (!in_domain(s, o->domain)) return;
    o->sessions++;
    /* Each user once: at their first session. */
    if (sm_sessions(o->sm, jid_bare(s->jid)) != s) return;
    if (o->field && o->users < o->max) adhoc_value_add(o->field, jid_bare(s->jid));
    o->users++;
}

static void run_online_num(adhoc_req_t *req, const elem_t *form)
{
    (void)form;
    online_t o = {adhoc_sm(req), adhoc_domain(req), 0, 0, 0, NULL};
    sm_each_session(o.sm, count_online, &o);
    done_number(req, "onlineusersnum", "The number of online users", o.users);
}

static void ask_online_list(adhoc_req_t *req, elem_t *x)
{
    (void)req;
    adhoc_field_add(x, "hidden", "FORM_TYPE", NULL, NS_ADMIN_CMDS);
    elem_t *f =
        adhoc_field_add(x, "list-single", "max_items", "Maximum number of items to show", "100");
    static const char *const choices[] = {"25", "50", "75", "100", "150", "200", "none", NULL};
    for (const char *const *c = choices; *c; c++) {
        elem_t *o = elem_add(f, NULL, "option");
        elem_set_attr(o, "label", *c);
        adhoc_value_add(o, *c);
    }
}

static void run_online_list(adhoc_req_t *req, const elem_t *form)
{
    const char *max = adhoc_value(form, "max_items");
    online_t o = {adhoc_sm(req), adhoc_domain(req), 0, 0, DEFAULT_MAX_ITEMS, NULL};
    if (max && strcmp(max, "none") == 0)
        o.max = 1LL << 62;
    else if (max && atoll(max) > 0)
        o.max = atoll(max);
    elem_t *x = result_form(req);
    o.field =
        adhoc_field_add(x, "text-multi", "onlineuserjids", "The list of all online users", NULL);
    sm_each_session(o.sm, count_online, &o);
    adhoc_done(req, NULL, x);
}

static void ask_announce(adhoc_req_t *req, elem_t *x)
{
    (void)req;
    adhoc_field_add(x, "hidden", "FORM_TYPE", NULL, NS_ADMIN_CMDS);
    elem_add(adhoc_field_add(x, "text-multi", "announcement", "Announcement", NULL), NULL,
             "required");
}

/* A message from the domain to one session. */
static void send_notice(sm_t *sm, sess_t *s, const char *domain, const char *text)
{
    arena_t *a = arena_new(0);
    elem_t *m = elem_new(a, NS_CLIENT, "message");
    elem_set_attr(m, "from", domain);
    elem_set_attr(m, "to", jid_full(s->jid));
    elem_add_text(elem_add(m, NULL, "body"), text, strlen(text));
    sm_send_to_sess(sm, s, m);
    arena_free(a);
}

typedef struct announce {
    sm_t *sm;
    const char *domain, *text;
    int sent;
} announce_t;

static void announce_to(sess_t *s, void *ud)
{
    announce_t *an = ud;
    if (!in_domain(s, an->domain)) return;
    send_notice(an->sm, s, an->domain, an->text);
    an->sent++;
}

static void run_announce(adhoc_req_t *req, const elem_t *form)
{
    const char *text = adhoc_text(req, form, "announcement");
    if (!text || !*text || strlen(text) > MAX_ANNOUNCEMENT) {
        adhoc_fail(req, "not-acceptable", "the announcement is empty or too long");
        return;
    }
    announce_t an = {adhoc_sm(req), adhoc_domain(req), text, 0};
    sm_each_session(an.sm, announce_to, &an);
    log_notice("admin commands: %s announced to %d session(s)", jid_full(adhoc_requester(req)),
               an.sent);
    char note[64];
    snprintf(note, sizeof note, "Sent to %d session(s)", an.sent);
    adhoc_done(req, note, NULL);
}

/* ---- accounts: roster, last login, registered count ------------------------ */

/* The answer of query_account() has the account's row, else the request
 * failed (said to its requester). */
static bool is_account_found(adhoc_req_t *req, const st_result_t *res)
{
    if (st_status(res) != ST_OK) {
        adhoc_fail(req, storage_condition(res), NULL);
        return false;
    }
    if (st_rows(res) == 0) {
        adhoc_fail(req, "item-not-found", "no such account");
        return false;
    }
    return true;
}

static void on_roster(void *ud, const st_result_t *res)
{
    adhoc_req_t *req = ud;
    if (!is_account_found(req, res)) return;
    elem_t *x = result_form(req);
    adhoc_field_add(x, "jid-single", "accountjid", NULL, st_text(res, 0, 0));
    elem_t *query = elem_add(x, NS_ROSTER, "query");
    for (int r = 0; r < st_rows(res); r++) {
        const char *jid = st_text(res, r, 1), *name = st_text(res, r, 2);
        const char *groups = st_text(res, r, 5);
        if (!jid) continue; /* the account, with an empty roster */
        elem_t *item = elem_add(query, NULL, "item");
        elem_set_attr(item, "jid", jid);
        if (name && *name) elem_set_attr(item, "name", name);
        elem_set_attr(item, "subscription", st_text(res, r, 3) ? st_text(res, r, 3) : "none");
        if (st_int(res, r, 4)) elem_set_attr(item, "ask", "subscribe");
        for (const char *g = groups ? groups : ""; *g;) {
            const char *end = strchr(g, '\n');
            size_t len = end ? (size_t)(end - g) : strlen(g);
            if (len) elem_add_text(elem_add(item, NULL, "group"), g, len);
            g += len + (end ? 1 : 0);
        }
    }
    adhoc_done(req, NULL, x);
}

/* A query about the form's accountjid (its bare JID is $1), answered to cb. */
static void query_account(adhoc_req_t *req, const elem_t *form, const char *sql, st_cb cb)
{
    jid_t *j = account_of(adhoc_sm(req), adhoc_value(form, "accountjid"), false);
    if (!j) {
        adhoc_fail(req, "jid-malformed", "accountjid is not an account of this server");
        return;
    }
    const char *params[] = {jid_bare(j)};
    storage_query(sm_storage(adhoc_sm(req)), sql, 1, params, cb, req);
    jid_free(j);
}

static void run_user_roster(adhoc_req_t *req, const elem_t *form)
{
    query_account(req, form,
                  "SELECT a.owner, r.jid, r.name, r.subscription, r.ask, r.groups FROM auth a"
                  " LEFT JOIN roster_items r ON r.owner = a.owner WHERE a.owner = $1"
                  " ORDER BY r.jid",
                  on_roster);
}

static void on_lastlogin(void *ud, const st_result_t *res)
{
    adhoc_req_t *req = ud;
    if (!is_account_found(req, res)) return;
    char when[32] = "never";
    if (st_text(res, 0, 1)) {
        time_t t = (time_t)st_int(res, 0, 1);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm); /* XEP-0082 */
    }
    elem_t *x = result_form(req);
    adhoc_field_add(x, "jid-single", "accountjid", NULL, st_text(res, 0, 0));
    adhoc_field_add(x, NULL, "lastlogin", "User's last login time", when);
    adhoc_done(req, NULL, x);
}

static void run_user_lastlogin(adhoc_req_t *req, const elem_t *form)
{
    query_account(req, form, "SELECT owner, last_login FROM auth WHERE owner = $1", on_lastlogin);
}

/* Accounts of the request's domain: LIKE '%@domain', the domain escaped. */
static void count_accounts(adhoc_req_t *req, st_cb cb)
{
    buf_t pattern = BUF_INIT;
    buf_appends(&pattern, "%@");
    for (const char *p = adhoc_domain(req); *p; p++) {
        if (*p == '%' || *p == '_' || *p == '\\') buf_appends(&pattern, "\\");
        buf_printf(&pattern, "%c", *p);
    }
    const char *params[] = {pattern.data};
    storage_query(sm_storage(adhoc_sm(req)),
                  "SELECT COUNT(*) FROM auth WHERE owner LIKE $1 ESCAPE '\\'", 1, params, cb, req);
    buf_free(&pattern);
}

static void on_registered(void *ud, const st_result_t *res)
{
    adhoc_req_t *req = ud;
    if (st_status(res) != ST_OK)
        adhoc_fail(req, storage_condition(res), NULL);
    else
        done_number(req, "registeredusersnum", "The number of registered users", st_int(res, 0, 0));
}

static void run_registered_num(adhoc_req_t *req, const elem_t *form)
{
    (void)form;
    count_accounts(req, on_registered);
}

/* ---- the message of the day ------------------------------------------------ */

typedef struct motd_change {
    adhoc_req_t *req;
    char *domain;
    char *text; /* NULL: deleted */
} motd_change_t;

static void motd_set(const char *domain, char *text)
{
    free(map_del(&motds, domain));
    if (text) map_put(&motds, domain, text);
}

static void on_motd_stored(void *ud, const st_result_t *res)
{
    motd_change_t *m = ud;
    if (st_status(res) != ST_OK) {
        log_warn("admin commands: cannot store the message of the day of %s: %s", m->domain,
                 st_error(res));
        adhoc_fail(m->req, storage_condition(res), NULL);
        free(m->text);
    } else {
        motd_set(m->domain, m->text);
        log_notice("admin commands: %s %s the message of the day of %s",
                   jid_full(adhoc_requester(m->req)), m->text ? "set" : "deleted", m->domain);
        adhoc_done(m->req,
                   m->text ? "The message of the day is set" : "The message of the day is deleted",
                   NULL);
    }
    free(m->domain);
    free(m);
}

static void motd_store(adhoc_req_t *req, const char *text)
{
    motd_change_t *m = calloc(1, sizeof *m);
    if (!m || !(m->domain = strdup(adhoc_domain(req))) || (text && !(m->text = strdup(text))))
        log_fatal("out of memory");
    m->req = req;
    const char *params[] = {m->domain, text};
    st_stmt_t stmts[] = {
        {"DELETE FROM motd WHERE domain = $1", 1, params},
        {"INSERT INTO motd (domain, text) VALUES ($1, $2)", 2, params},
    };
    storage_tx(sm_storage(adhoc_sm(req)), text ? 2 : 1, stmts, on_motd_stored, m);
}

static void ask_motd(adhoc_req_t *req, elem_t *x)
{
    adhoc_field_add(x, "hidden", "FORM_TYPE", NULL, NS_ADMIN_CMDS);
    elem_t *f = adhoc_field_add(x, "text-multi", "motd", "Message of the day", NULL);
    elem_add(f, NULL, "required");
    /* The current one, to edit, line by line (XEP-0004 text-multi). */
    const char *text = map_get(&motds, adhoc_domain(req));
    for (const char *p = text ? text : ""; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        elem_add_text(elem_add(f, NULL, "value"), p, len);
        p += len + (end ? 1 : 0);
    }
}

static void run_set_motd(adhoc_req_t *req, const elem_t *form)
{
    const char *text = adhoc_text(req, form, "motd");
    if (!text || !*text || strlen(text) > MAX_MOTD) {
        adhoc_fail(req, "not-acceptable", "the message of the day is empty or too long");
        return;
    }
    motd_store(req, text);
}

static void run_delete_motd(adhoc_req_t *req, const elem_t *form)
{
    (void)form;
    motd_store(req, NULL);
}

static sm_verdict_t on_available(sm_t *sm, sm_pkt_t *pkt)
{
    const char *domain = jid_domain(pkt->sess->jid);
    const char *text = map_get(&motds, domain);
    if (text) send_notice(sm, pkt->sess, domain, text);
    return SM_PASS;
}

static void on_motds_loaded(void *ud, const st_result_t *res)
{
    (void)ud;
    if (st_status(res) != ST_OK) {
        log_warn("admin commands: cannot read the messages of the day: %s", st_error(res));
        return;
    }
    for (int r = 0; r < st_rows(res); r++) {
        char *text = strdup(st_text(res, r, 1) ? st_text(res, r, 1) : "");
        if (!text) log_fatal("out of memory");
        /* One set meanwhile is newer than the store's. */
        if (!map_get(&motds, st_text(res, r, 0)))
            motd_set(st_text(res, r, 0), text);
        else
            free(text);
    }
}

/* ---- statistics (urn:hearth:admin#stats) ----------------------------------- */

static void on_stats_accounts(void *ud, const st_result_t *res)
{
    adhoc_req_t *req = ud;
    if (st_status(res) != ST_OK) {
        adhoc_fail(req, storage_condition(res), NULL);
        return;
    }
    online_t o = {adhoc_sm(req), adhoc_domain(req), 0, 0, 0, NULL};
    sm_each_session(o.sm, count_online, &o);
    char text[32];
    elem_t *x = adhoc_form_new(adhoc_arena(req), "result", "Server statistics", "urn:hearth:admin");
    snprintf(text, sizeof text, "%lld", o.sessions);
    adhoc_field_add(x, NULL, "onlinesessions", "Sessions", text);
    snprintf(text, sizeof text, "%lld", o.users);
    adhoc_field_add(x, NULL, "onlineusers", "Online users", text);
    snprintf(text, sizeof text, "%lld", st_int(res, 0, 0));
    adhoc_field_add(x, NULL, "registeredusers", "Registered users", text);
    snprintf(text, sizeof text, "%lld", (long long)(time(NULL) - started));
    adhoc_field_add(x, NULL, "uptime", "Uptime (seconds)", text);
    snprintf(text, sizeof text, "%llu", messages_from_sessions + messages_to_users);
    adhoc_field_add(x, NULL, "messages", "Messages routed since start", text);
    adhoc_done(req, NULL, x);
}

static void run_stats(adhoc_req_t *req, const elem_t *form)
{
    (void)form;
    count_accounts(req, on_stats_accounts);
}

static sm_verdict_t on_sess_message(sm_t *sm, sm_pkt_t *pkt)
{
    (void)sm;
    if (strcmp(pkt->kind, "message") == 0) messages_from_sessions++;
    return SM_PASS;
}

static sm_verdict_t on_user_message(sm_t *sm, sm_pkt_t *pkt)
{
    (void)sm;
    /* From elsewhere: our own sessions' are counted as they leave. */
    if (strcmp(pkt->kind, "message") == 0 && pkt->role != ROLE_NONE) messages_to_users++;
    return SM_PASS;
}

/* ---- last login, and no session for a disabled account ------------------ */

/* Every session start records the account's login time, and ends the
 * session if the account was disabled after c2s read its keys. The writes
 * are grouped: the logins of up to LOGIN_DELAY_MS go in one transaction
 * (at most LOGIN_BATCH_MAX, one transaction in flight at a time), so that
 * a burst of logins costs the store a few transactions, not one each; the
 * sm's stop writes what waits. The transaction's last statement lists
 * which of its accounts are disabled; its IN list is padded to a power of
 * two (repeating its last account), so that the store's statement cache
 * sees few texts. */
#define LOGIN_BATCH_MAX 512
#define LOGIN_DELAY_MS 1000

typedef struct login {
    char *owner;
    char sid[33];
} login_t;

typedef struct login_batch {
    sm_t *sm;
    int n;
    login_t logins[];
} login_batch_t;

static login_t *logins_waiting;
static int nwaiting, waiting_cap;
static bool is_storing_logins;
static uv_timer_t login_timer;

static void store_logins(sm_t *sm);

static void on_login_timer(uv_timer_t *t)
{
    if (!is_storing_logins && nwaiting > 0) store_logins(t->data);
}

/* Logins wait: store them within LOGIN_DELAY_MS, or now when enough. */
static void schedule_logins(sm_t *sm)
{
    if (is_storing_logins || nwaiting == 0) return;
    if (nwaiting >= LOGIN_BATCH_MAX)
        store_logins(sm);
    else if (!uv_is_active((uv_handle_t *)&login_timer))
        uv_timer_start(&login_timer, on_login_timer, LOGIN_DELAY_MS, 0);
}

static void on_logins_stored(void *ud, const st_result_t *res)
{
    login_batch_t *b = ud;
    sm_t *sm = b->sm;
    is_storing_logins = false;
    if (st_status(res) != ST_OK)
        log_warn("admin commands: cannot store the login time of %d account(s): %s", b->n,
                 st_error(res));
    for (int r = 0; st_status(res) == ST_OK && r < st_rows(res); r++) {
        const char *owner = st_text(res, r, 0);
        for (int i = 0; owner && i < b->n; i++) {
            if (strcmp(b->logins[i].owner, owner) != 0) continue;
            for (sess_t *s = sm_sessions(sm, owner); s; s = s->next)
                if (strcmp(s->sid, b->logins[i].sid) == 0) {
                    log_notice("admin commands: %s is disabled: session %s ended", owner,
                               b->logins[i].sid);
                    sm_end_session(sm, s, "not-authorized");
                    break;
                }
        }
    }
    for (int i = 0; i < b->n; i++)
        free(b->logins[i].owner);
    free(b);
    if (!sm_is_stopping(sm)) schedule_logins(sm);
}

static void store_logins(sm_t *sm)
{
    uv_timer_stop(&login_timer);
    int n = nwaiting < LOGIN_BATCH_MAX ? nwaiting : LOGIN_BATCH_MAX, padded = 1;
    while (padded < n)
        padded *= 2;
    login_batch_t *b = malloc(sizeof *b + (size_t)n * sizeof(login_t));
    st_stmt_t *stmts = calloc((size_t)n + 1, sizeof *stmts);
    const char **params = calloc((size_t)(2 * n + padded), sizeof *params);
    if (!b || !stmts || !params) log_fatal("out of memory");
    b->sm = sm;
    b->n = n;
    memcpy(b->logins, logins_waiting, (size_t)n * sizeof(login_t));
    nwaiting -= n;
    memmove(logins_waiting, logins_waiting + n, (size_t)nwaiting * sizeof(login_t));
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    buf_t sql = BUF_INIT;
    buf_appends(&sql, "SELECT DISTINCT owner FROM auth WHERE disabled <> 0 AND owner IN (");
    const char **in = params + 2 * n;
    for (int i = 0; i < padded; i++) {
        in[i] = b->logins[i < n ? i : n - 1].owner;
        buf_printf(&sql, "%s$%d", i ? ", " : "", i + 1);
    }
    buf_appends(&sql, ")");
    for (int i = 0; i < n; i++) {
        params[2 * i] = b->logins[i].owner;
        params[2 * i + 1] = now;
        stmts[i] = (st_stmt_t){"UPDATE auth SET last_login = $2 WHERE owner = $1 AND disabled = 0",
                               2, params + 2 * i};
    }
    stmts[n] = (st_stmt_t){sql.data, padded, in};
    is_storing_logins = true;
    storage_tx(sm_storage(sm), n + 1, stmts, on_logins_stored, b);
    buf_free(&sql);
    free(stmts);
    free(params);
}

static sm_verdict_t on_sess_start(sm_t *sm, sm_pkt_t *pkt)
{
    if (nwaiting == waiting_cap) {
        waiting_cap = waiting_cap ? 2 * waiting_cap : 64;
        logins_waiting = realloc(logins_waiting, (size_t)waiting_cap * sizeof(login_t));
        if (!logins_waiting) log_fatal("out of memory");
    }
    login_t *l = &logins_waiting[nwaiting++];
    if (!(l->owner = strdup(jid_bare(pkt->sess->jid)))) log_fatal("out of memory");
    memcpy(l->sid, pkt->sess->sid, sizeof l->sid);
    schedule_logins(sm);
    return SM_PASS;
}

/* The sm stops (its sessions ended, the store still open): what waits is
 * written now, in as many transactions as it takes, and the timer goes. */
static void at_stop(sm_t *sm)
{
    uv_timer_stop(&login_timer);
    while (nwaiting > 0)
        store_logins(sm);
    uv_close((uv_handle_t *)&login_timer, NULL);
}

/* ---- the table --------------------------------------------------------------- */

/* clang-format off */
static const adhoc_cmd_t commands[] = {
    {NODE("add-user"), "Add a User", ask_add_user, run_add_user, false},
    {NODE("delete-user"), "Delete a User", ask_accounts, run_delete_user, false},
    {NODE("disable-user"), "Disable a User", ask_accounts, run_disable_user, false},
    {NODE("reenable-user"), "Re-Enable a User", ask_accounts, run_reenable_user, false},
    {NODE("change-user-password"), "Change User Password", ask_change_password, run_change_password, false},
    {NODE("end-user-session"), "End User Session", ask_accounts, run_end_session, false},
    {NODE("get-user-roster"), "Get User Roster", ask_account, run_user_roster, false},
    {NODE("get-user-lastlogin"), "Get User Last Login Time", ask_account, run_user_lastlogin, false},
    {NODE("get-registered-users-num"), "Get Number of Registered Users", NULL, run_registered_num, false},
    {NODE("get-online-users-num"), "Get Number of Online Users", NULL, run_online_num, false},
    {NODE("get-online-users-list"), "Get List of Online Users", ask_online_list, run_online_list, false},
    {NODE("get-online-users"), "Get List of Online Users", ask_online_list, run_online_list, false},
    {NODE("announce"), "Send Announcement to Online Users", ask_announce, run_announce, false},
    {NODE("set-motd"), "Set Message of the Day", ask_motd, run_set_motd, false},
    {NODE("edit-motd"), "Edit Message of the Day", ask_motd, run_set_motd, false},
    {NODE("delete-motd"), "Delete Message of the Day", NULL, run_delete_motd, false},
    {"urn:hearth:admin#stats", "Server Statistics", NULL, run_stats, false},
    {NULL, NULL, NULL, NULL, false},
};
/* clang-format on */

void mod_admin_commands_init(sm_t *sm); /* listed in modules.c */

void mod_admin_commands_init(sm_t *sm)
{
    started = time(NULL);
    map_init(&motds);
    adhoc_register(sm, commands);
    storage_query(sm_storage(sm), "SELECT domain, text FROM motd", 0, NULL, on_motds_loaded, NULL);
    sm_hook(sm, SM_CHAIN_AVAILABLE, 600, on_available);
    sm_hook(sm, SM_CHAIN_SESS_START, 600, on_sess_start);
    uv_timer_init(sm_loop(sm), &login_timer);
    login_timer.data = sm;
    sm_at_stop(sm, at_stop);
    sm_hook(sm, SM_CHAIN_IN_SESS, 50, on_sess_message);
    sm_hook(sm, SM_CHAIN_IN_USER, 50, on_user_message);
}
