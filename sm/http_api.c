/* http_api.c — the HTTP admin API of the sm: JSON over HTTP (common/http.h)
 * on sm.api-listen, described in docs/admin-api.yaml (OpenAPI 3).
 *
 * Every request needs `Authorization: Bearer TOKEN`, TOKEN being the first
 * line of sm.api-token-file (the API does not start without one); a
 * missing or wrong token gets 401, compared in constant time
 * (tls_equal). Endpoints, under /api/v1:
 *
 *   GET    /users[?after=JID&limit=N]  {"users": [JID...], "next": JID}
 *                                      (N: 1..1000, default 100; "next",
 *                                      when more follow, is the after= of
 *                                      the next page)
 *   POST   /users                      {"jid": J, "password": P} -> 201
 *                                      {"jid": J}; 409 if it exists
 *   DELETE /users/{jid}                204; everything it owns is deleted
 *                                      and its sessions end (not-authorized)
 *   PUT    /users/{jid}/password       {"password": P} -> 204
 *   GET    /sessions                   {"sessions": [{"jid", "resource",
 *                                      "c2s", "available", "priority"}...]}
 *   DELETE /sessions/{jid}             a bare JID ends all its sessions, a
 *                                      full JID one (policy-violation):
 *                                      200 {"ended": N}; 404 if none
 *   GET    /stats                      {"accounts", "sessions",
 *                                      "users_online", "uptime_seconds",
 *                                      "messages_routed"}
 *
 * {jid} is percent-encoded in the path (a full JID's '/' as %2F). Request
 * bodies are flat JSON objects of strings (common/json.h; at most
 * http.max-body bytes): anything else is 400, as is a JID that is not an
 * account of a local domain. Errors are {"error": "what went wrong"}.
 * Accounts change through the same code as XEP-0077 (account.c). With
 * several sm shards, shard sm-N listens on the port + N - 1 and serves the
 * sessions it holds, and stats counts its own sessions; the accounts are
 * the store's, the same for all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core.h"
#include "http.h"
#include "json.h"

#define API "/api/v1"
#define LIST_DEFAULT 100
#define LIST_MAX 1000

static struct {
    sm_t *sm;
    http_server_t *server;
    tls_ctx_t *tls;
    char *token;
    uint64_t started; /* loop ms */
} api;

/* ---- answers ------------------------------------------------------------- */

static void reply(http_req_t *r, int status, const buf_t *json)
{
    http_respond(r, status, "application/json", json ? json->data : NULL, json ? json->len : 0);
}

static void reply_error(http_req_t *r, int status, const char *message)
{
    buf_t b = BUF_INIT;
    buf_appends(&b, "{\"error\":");
    json_strz(&b, message);
    buf_appends(&b, "}\n");
    reply(r, status, &b);
    buf_free(&b);
}

static bool is_authorized(http_req_t *r)
{
    const char *h = http_req_header(r, "Authorization");
    /* RFC 6750 §2.1; the scheme is case-insensitive (RFC 7235 §2.1). */
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *token = h + 7;
        if (tls_equal(token, strlen(token), api.token, strlen(api.token))) return true;
    }
    http_resp_header(r, "WWW-Authenticate", "Bearer realm=\"hearth\"");
    reply_error(r, 401, h ? "wrong token" : "an Authorization: Bearer token is needed");
    return false;
}

/* The decoded path segment after prefix, up to the next '/' (*rest points
 * at what follows, "" at the end). NULL if empty or malformed. */
static char *segment(http_req_t *r, const char *prefix, const char **rest, char *out, size_t size)
{
    const char *p = http_req_path(r) + strlen(prefix);
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    *rest = p + len;
    if (len == 0 || http_percent_decode(p, len, out, size) <= 0) return NULL;
    return out;
}

/* The request's body as a flat JSON object; false (400 sent) if not. */
static bool read_body(http_req_t *r, json_object_t *o)
{
    const char *type = http_req_header(r, "Content-Type");
    if (type && strncasecmp(type, "application/json", 16) != 0) {
        json_object_free(o);
        reply_error(r, 415, "the body must be application/json");
        return false;
    }
    size_t len;
    const char *body = http_req_body(r, &len);
    const char *err = NULL;
    if (json_read_object(body, len, o, &err) < 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "malformed JSON body: %s", err);
        reply_error(r, 400, msg);
        return false;
    }
    return true;
}

static int status_of(sm_account_result_t result)
{
    switch (result) {
    case SM_ACCOUNT_OK:
        return 204;
    case SM_ACCOUNT_EXISTS:
        return 409;
    case SM_ACCOUNT_NOT_FOUND:
        return 404;
    case SM_ACCOUNT_BAD_PASSWORD:
        return 400;
    default:
        return 500;
    }
}

static const char *message_of(sm_account_result_t result)
{
    switch (result) {
    case SM_ACCOUNT_EXISTS:
        return "the account exists";
    case SM_ACCOUNT_NOT_FOUND:
        return "no such account";
    case SM_ACCOUNT_BAD_PASSWORD:
        return "unusable password";
    case SM_ACCOUNT_FULL:
        return "the store is full";
    default:
        return "the store failed";
    }
}

/* ---- users ----------------------------------------------------------------- */

typedef struct listing {
    http_req_t *req;
    int limit;
} listing_t;

static void on_listed(void *ud, const st_result_t *res)
{
    listing_t *l = ud;
    if (st_status(res) != ST_OK) {
        log_warn("api: cannot list the accounts: %s", st_error(res));
        reply_error(l->req, 500, "the store failed");
        free(l);
        return;
    }
    buf_t b = BUF_INIT;
    buf_appends(&b, "{\"users\":[");
    int n = st_rows(res) < l->limit ? st_rows(res) : l->limit;
    for (int i = 0; i < n; i++) {
        if (i) buf_appends(&b, ",");
        json_strz(&b, st_text(res, i, 0) ? st_text(res, i, 0) : "");
    }
    buf_appends(&b, "]");
    if (st_rows(res) > l->limit && n > 0) {
        buf_appends(&b, ",\"next\":");
        json_strz(&b, st_text(res, n - 1, 0));
    }
    buf_appends(&b, "}\n");
    reply(l->req, 200, &b);
    buf_free(&b);
    free(l);
}

static void list_users(http_req_t *r)
{
    char after[JID_STRING_MAX] = "", limit_text[16] = "";
    int has_limit = http_query_param(r, "limit", limit_text, sizeof limit_text);
    char *end = NULL;
    long limit = has_limit == 1 ? strtol(limit_text, &end, 10) : LIST_DEFAULT;
    if (http_query_param(r, "after", after, sizeof after) < 0 || has_limit < 0 ||
        (has_limit == 1 && (!*limit_text || *end || limit < 1 || limit > LIST_MAX))) {
        reply_error(r, 400, "limit is 1 to 1000, after a JID");
        return;
    }
    listing_t *l = malloc(sizeof *l);
    if (!l) log_fatal("out of memory");
    *l = (listing_t){r, (int)limit};
    /* One more than asked: whether a next page exists. */
    auth_list(api.sm->st, after, l->limit + 1, on_listed, l);
}

static void on_created(sm_t *sm, void *ud, sm_account_result_t result)
{
    http_req_t *r = ((void **)ud)[0];
    char *bare = ((void **)ud)[1];
    free(ud);
    if (result != SM_ACCOUNT_OK) {
        reply_error(r, status_of(result), message_of(result));
    } else {
        log_notice("api: %s created", bare);
        buf_t b = BUF_INIT;
        buf_appends(&b, "{\"jid\":");
        json_strz(&b, bare);
        buf_appends(&b, "}\n");
        reply(r, 201, &b);
        buf_free(&b);
    }
    free(bare);
}

static void create_user(http_req_t *r)
{
    json_object_t o;
    if (!read_body(r, &o)) return;
    const char *jid = json_object_get(&o, "jid"), *password = json_object_get(&o, "password");
    jid_t *j = jid ? sm_local_account(api.sm, jid) : NULL;
    if (!jid || !password || o.n != 2) {
        reply_error(r, 400, "the body is {\"jid\": ..., \"password\": ...}");
    } else if (!j) {
        reply_error(r, 400, "jid is not an account of a local domain");
    } else {
        void **ud = malloc(2 * sizeof(void *));
        if (!ud || !(ud[1] = strdup(jid_bare(j)))) log_fatal("out of memory");
        ud[0] = r;
        sm_account_add(api.sm, jid_bare(j), password, on_created, ud);
    }
    jid_free(j);
    json_object_free(&o);
}

static void on_changed(sm_t *sm, void *ud, sm_account_result_t result)
{
    http_req_t *r = ud;
    if (result == SM_ACCOUNT_OK)
        reply(r, 204, NULL);
    else
        reply_error(r, status_of(result), message_of(result));
}

static void change_password(http_req_t *r, const jid_t *j)
{
    json_object_t o;
    if (!read_body(r, &o)) return;
    const char *password = json_object_get(&o, "password");
    if (!password || o.n != 1)
        reply_error(r, 400, "the body is {\"password\": ...}");
    else
        sm_account_set_password(api.sm, jid_bare(j), password, on_changed, r);
    json_object_free(&o);
}

/* /users/{jid} and /users/{jid}/password */
static void on_user(http_req_t *r, void *ud)
{
    if (!is_authorized(r)) return;
    const char *method = http_req_method(r);
    char text[JID_STRING_MAX];
    const char *rest;
    if (strcmp(http_req_path(r), API "/users") == 0) {
        if (strcmp(method, "GET") == 0)
            list_users(r);
        else if (strcmp(method, "POST") == 0)
            create_user(r);
        else
            reply_error(r, 405, "GET or POST");
        return;
    }
    if (!segment(r, API "/users/", &rest, text, sizeof text)) {
        reply_error(r, 404, "no such resource");
        return;
    }
    bool is_password = strcmp(rest, "/password") == 0;
    if (*rest && !is_password) {
        reply_error(r, 404, "no such resource");
        return;
    }
    if (strcmp(method, is_password ? "PUT" : "DELETE") != 0) {
        reply_error(r, 405, is_password ? "PUT" : "DELETE");
        return;
    }
    jid_t *j = sm_local_account(api.sm, text);
    if (!j) {
        reply_error(r, 400, "not an account of a local domain");
        return;
    }
    if (is_password)
        change_password(r, j);
    else
        sm_account_remove(api.sm, jid_bare(j), on_changed, r);
    jid_free(j);
}

/* ---- sessions -------------------------------------------------------------- */

typedef struct session_list {
    buf_t b;
    int n;
} session_list_t;

static void add_session(sess_t *s, void *ud)
{
    session_list_t *l = ud;
    buf_appends(&l->b, l->n++ ? ",{\"jid\":" : "{\"jid\":");
    json_strz(&l->b, jid_full(s->jid));
    buf_appends(&l->b, ",\"resource\":");
    json_strz(&l->b, jid_resource(s->jid) ? jid_resource(s->jid) : "");
    buf_appends(&l->b, ",\"c2s\":");
    json_strz(&l->b, s->c2s);
    buf_printf(&l->b, ",\"available\":%s,\"priority\":%d}", s->is_available ? "true" : "false",
               s->priority);
}

static void end_sessions(http_req_t *r, const char *text)
{
    jid_t *j = jid_new(text, strlen(text), NULL);
    if (!j || !jid_has_node(j) || !sm_is_local(api.sm, jid_domain(j))) {
        jid_free(j);
        reply_error(r, 400, "not a JID of a local account");
        return;
    }
    int n = sm_end_user_sessions(api.sm, jid_bare(j), jid_has_resource(j) ? jid_resource(j) : NULL,
                                 "policy-violation");
    if (n) log_notice("api: ended %d session(s) of %s", n, jid_full(j));
    jid_free(j);
    if (!n) {
        reply_error(r, 404, "no such session");
        return;
    }
    buf_t b = BUF_INIT;
    buf_printf(&b, "{\"ended\":%d}\n", n);
    reply(r, 200, &b);
    buf_free(&b);
}

static void on_sessions(http_req_t *r, void *ud)
{
    if (!is_authorized(r)) return;
    const char *method = http_req_method(r);
    if (strcmp(http_req_path(r), API "/sessions") == 0) {
        if (strcmp(method, "GET") != 0) {
            reply_error(r, 405, "GET");
            return;
        }
        session_list_t l = {BUF_INIT, 0};
        buf_appends(&l.b, "{\"sessions\":[");
        sm_each_session(api.sm, add_session, &l);
        buf_appends(&l.b, "]}\n");
        reply(r, 200, &l.b);
        buf_free(&l.b);
        return;
    }
    char text[JID_STRING_MAX];
    const char *rest;
    if (!segment(r, API "/sessions/", &rest, text, sizeof text) || *rest) {
        reply_error(r, 404, "no such resource");
        return;
    }
    if (strcmp(method, "DELETE") != 0) {
        reply_error(r, 405, "DELETE");
        return;
    }
    end_sessions(r, text);
}

/* ---- stats ------------------------------------------------------------------ */

static void on_counted(void *ud, const st_result_t *res)
{
    http_req_t *r = ud;
    if (st_status(res) != ST_OK || st_rows(res) < 1) {
        log_warn("api: cannot count the accounts: %s", st_error(res));
        reply_error(r, 500, "the store failed");
        return;
    }
    sm_t *sm = api.sm;
    buf_t b = BUF_INIT;
    buf_printf(&b,
               "{\"accounts\":%lld,\"sessions\":%lu,\"users_online\":%zu,"
               "\"uptime_seconds\":%llu,\"messages_routed\":%llu}\n",
               st_int(res, 0, 0), sm->nsessions, (size_t)sm->users.count,
               (unsigned long long)((uv_now(sm->loop) - api.started) / 1000),
               (unsigned long long)sm_metrics.messages_routed.n);
    reply(r, 200, &b);
    buf_free(&b);
}

static void on_stats(http_req_t *r, void *ud)
{
    if (!is_authorized(r)) return;
    if (strcmp(http_req_path(r), API "/stats") != 0) {
        reply_error(r, 404, "no such resource");
        return;
    }
    if (strcmp(http_req_method(r), "GET") != 0) {
        reply_error(r, 405, "GET");
        return;
    }
    auth_count(api.sm->st, on_counted, r);
}

/* Anything else: the token first, so that nobody learns the API's paths
 * without it. */
static void on_other(http_req_t *r, void *ud)
{
    if (is_authorized(r)) reply_error(r, 404, "no such resource");
}

/* ---- start and stop ---------------------------------------------------------- */

void sm_api_start(sm_t *sm)
{
    const config_t *cf = sm->config;
    const char *addr = config_get(cf, "sm.api-listen");
    if (!addr || !*addr) return;
    const char *file = config_get(cf, "sm.api-token-file");
    if (!file || !*file)
        log_fatal("%s: sm/api-listen needs sm/api-token-file (the API's bearer token)",
                  config_file(cf));
    char *err = NULL;
    if (!(api.token = config_secret_file(file, &err)))
        log_fatal("sm/api-token-file: %s", err ? err : "unreadable");
    api.sm = sm;
    api.started = uv_now(sm->loop);
    http_opts_t opts;
    http_opts_from_config(cf, &opts, &api.tls);
    api.server = http_server_new(sm->loop, &opts);
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        http_route(api.server, methods[i], "/", on_other, NULL);
        http_route(api.server, methods[i], API "/users", on_user, NULL);
        http_route(api.server, methods[i], API "/sessions", on_sessions, NULL);
        http_route(api.server, methods[i], API "/stats", on_stats, NULL);
    }
    /* Shard sm-N on the port + N - 1, as its metrics. */
    char mine[512];
    if (http_instance_address(addr, metrics_instance_index(sm->id), mine, sizeof mine) < 0)
        log_fatal("%s: sm/api-listen: %s is not an address (host:port or unix:/path)",
                  config_file(cf), addr);
    int rc = http_listen(api.server, mine);
    if (rc < 0) log_fatal("sm/api-listen: cannot listen on %s: %s", mine, uv_strerror(rc));
    log_notice("admin API at http%s://%s" API, api.tls ? "s" : "", mine);
}

void sm_api_stop(void)
{
    if (api.server) http_server_free(api.server);
    api.server = NULL;
    if (api.token) {
        explicit_bzero(api.token, strlen(api.token));
        free(api.token);
        api.token = NULL;
    }
    /* api.tls stays until the process ends: connections being aborted
     * still use it until their close callbacks run. */
}
