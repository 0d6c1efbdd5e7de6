/* slot.c — the XMPP side of hearth-upload: service discovery and slot
 * requests (XEP-0363 §§2-4).
 *
 * disco#info of upload.DOMAIN is answered to anyone: identity store/file,
 * the feature, and the x-data form with max-file-size. A slot request
 *   <request xmlns='urn:xmpp:http:upload:0' filename size [content-type]/>
 * is answered only to users of this server: a route the router marked
 * role sm, whose stanza's from the sm set from the session (a remote
 * user or a component gets not-allowed). The checks, in order:
 * bad-request for a missing or unusable filename (empty, over 255 bytes,
 * a '/' or a control character), size (not a positive integer) or
 * content-type (not printable ASCII with a '/': it becomes a header);
 * not-acceptable with <file-too-large><max-file-size/> beyond
 * upload.max-file-size; resource-constraint (type wait) when the slot
 * would take the user past upload.user-quota in 24 hours, or all files
 * past upload.total-quota. Slots that were never used count until they
 * expire, so asking for slots does not get around a quota. The quota check
 * and the new row are one statement, so two requests at once cannot both
 * slip under it. internal-server-error when the store fails: nothing is
 * handed out that is not recorded.
 *
 * Every other IQ get or set is service-unavailable; other stanzas are
 * dropped. Answers go back through the router to the user's domain, with
 * user= for the sm's sharding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "upload.h"

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_XDATA "jabber:x:data"
#define MAX_FILENAME 255

static void send_stanza(upload_t *u, const elem_t *stanza)
{
    if (comp_send_stanza(u->comp, stanza) < 0)
        log_info("upload: answer to %s dropped: no router link", elem_attr(stanza, "to"));
}

static void reply_error(upload_t *u, elem_t *iq, const char *condition, const char *text)
{
    if (xmpp_stanza_error(iq, condition, text) == 0) send_stanza(u, iq);
}

static void add_field(elem_t *x, const char *var, const char *type, const char *value)
{
    elem_t *f = elem_add(x, NULL, "field");
    elem_set_attr(f, "var", var);
    if (type) elem_set_attr(f, "type", type);
    elem_t *v = elem_add(f, NULL, "value");
    elem_add_text(v, value, strlen(value));
}

static void answer_disco(upload_t *u, elem_t *iq, bool is_info)
{
    elem_t *r = xmpp_iq_result(iq);
    elem_t *q = elem_add(r, is_info ? NS_DISCO_INFO : NS_DISCO_ITEMS, "query");
    if (is_info) {
        elem_t *id = elem_add(q, NULL, "identity");
        elem_set_attr(id, "category", "store");
        elem_set_attr(id, "type", "file");
        elem_set_attr(id, "name", "HTTP File Upload");
        elem_set_attr(elem_add(q, NULL, "feature"), "var", NS_DISCO_INFO);
        elem_set_attr(elem_add(q, NULL, "feature"), "var", NS_UPLOAD);
        elem_t *x = elem_add(q, NS_XDATA, "x");
        elem_set_attr(x, "type", "result");
        add_field(x, "FORM_TYPE", "hidden", NS_UPLOAD);
        char max[32];
        snprintf(max, sizeof max, "%llu", (unsigned long long)u->max_file_size);
        add_field(x, "max-file-size", NULL, max);
    }
    send_stanza(u, r);
}

static bool is_usable_filename(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > MAX_FILENAME || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '/' || *p == '\\') return false;
    return true;
}

/* A media type a client may name (RFC 9110 §8.3.1, loosely): printable
 * ASCII with a '/', never a byte that could end the header it goes into. */
static bool is_usable_type(const char *type)
{
    size_t len = type ? strlen(type) : 0;
    if (len == 0) return true; /* none named: application/octet-stream */
    if (len > 255 || !strchr(type, '/')) return false;
    for (const unsigned char *p = (const unsigned char *)type; *p; p++)
        if (*p < 0x20 || *p > 0x7e) return false;
    return true;
}

/* A size attribute: a positive decimal integer, or 0. */
static uint64_t parse_size(const char *s)
{
    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18) return 0;
    return strtoull(s, NULL, 10);
}

typedef struct request {
    upload_t *u;
    elem_t *iq; /* in its own arena, kept until the store answers */
    char id[TOKEN_LEN + 1], token[TOKEN_LEN + 1];
    char *filename;
} request_t;

static void request_free(request_t *rq)
{
    explicit_bzero(rq->token, sizeof rq->token);
    arena_free(rq->iq->arena);
    free(rq);
}

static void on_stored(void *ud, const st_result_t *res)
{
    request_t *rq = ud;
    upload_t *u = rq->u;
    if (st_status(res) != ST_OK) {
        log_warn("upload: slot for %s not recorded: %s", elem_attr(rq->iq, "from"), st_error(res));
        metric_inc(&upload_metrics.refused);
        reply_error(u, rq->iq, "internal-server-error", "the file store failed; try again");
        request_free(rq);
        return;
    }
    if (st_changes(res) == 0) {
        metric_inc(&upload_metrics.refused);
        reply_error(u, rq->iq, "resource-constraint",
                    "upload quota reached: try again later, or send a smaller file");
        request_free(rq);
        return;
    }
    buf_t url = BUF_INIT;
    buf_printf(&url, "%s/upload/%s/", u->base_url, rq->id);
    /* a path segment: RFC 3986 §2.3's unreserved characters stay */
    upload_percent_encode(&url, elem_attr(elem_first(rq->iq), "filename"), "-._~");
    elem_t *r = xmpp_iq_result(rq->iq);
    elem_t *slot = elem_add(r, NS_UPLOAD, "slot");
    elem_t *put = elem_add(slot, NULL, "put");
    elem_set_attr(put, "url", url.data);
    elem_t *h = elem_add(put, NULL, "header");
    elem_set_attr(h, "name", "Authorization");
    char bearer[TOKEN_LEN + 8];
    snprintf(bearer, sizeof bearer, "Bearer %s", rq->token);
    elem_add_text(h, bearer, strlen(bearer));
    explicit_bzero(bearer, sizeof bearer);
    elem_set_attr(elem_add(slot, NULL, "get"), "url", url.data);
    buf_free(&url);
    metric_inc(&upload_metrics.slots);
    log_info("upload: slot %s for %s", rq->id, elem_attr(rq->iq, "from"));
    send_stanza(u, r);
    request_free(rq);
}

static void answer_request(upload_t *u, elem_t *iq, const elem_t *req, comp_role_t role)
{
    if (role != ROLE_SM) {
        reply_error(u, iq, "not-allowed", "only users of this server may upload here");
        return;
    }
    const char *filename = elem_attr(req, "filename");
    uint64_t size = parse_size(elem_attr(req, "size"));
    if (!is_usable_filename(filename) || size == 0) {
        reply_error(u, iq, "bad-request", "a slot needs a file name and a size in bytes");
        return;
    }
    if (!is_usable_type(elem_attr(req, "content-type"))) {
        reply_error(u, iq, "bad-request", "content-type is not a media type");
        return;
    }
    if (size > u->max_file_size) {
        char text[96], max[32];
        snprintf(max, sizeof max, "%llu", (unsigned long long)u->max_file_size);
        snprintf(text, sizeof text, "file too large: the largest is %s bytes", max);
        if (xmpp_stanza_error(iq, "not-acceptable", text) < 0) return;
        elem_t *err = elem_child(iq, NULL, "error");
        elem_t *big = elem_add(elem_add(err, NS_UPLOAD, "file-too-large"), NULL, "max-file-size");
        elem_add_text(big, max, strlen(max));
        metric_inc(&upload_metrics.refused);
        send_stanza(u, iq);
        return;
    }
    const char *from = elem_attr(iq, "from");
    jid_t *owner = from ? jid_new(from, strlen(from), NULL) : NULL;
    if (!owner) return;

    request_t *rq = calloc(1, sizeof *rq);
    if (!rq) log_fatal("out of memory");
    rq->u = u;
    rq->iq = elem_copy(arena_new(0), iq);
    char hash[65];
    if (token_new(rq->id) < 0 || token_new(rq->token) < 0 || token_hash(rq->token, hash) < 0) {
        jid_free(owner);
        reply_error(u, rq->iq, "internal-server-error", NULL);
        request_free(rq);
        return;
    }
    const char *type = elem_attr(req, "content-type");
    char size_s[32], now_s[32], expires_s[32], user_quota[32], total_quota[32];
    long long now = (long long)time(NULL);
    snprintf(size_s, sizeof size_s, "%llu", (unsigned long long)size);
    snprintf(now_s, sizeof now_s, "%lld", now);
    snprintf(expires_s, sizeof expires_s, "%lld", now + (long long)u->slot_lifetime);
    snprintf(user_quota, sizeof user_quota, "%llu", (unsigned long long)u->user_quota);
    snprintf(total_quota, sizeof total_quota, "%llu", (unsigned long long)u->total_quota);
    const char *params[] = {
        rq->id, jid_bare(owner), hash,       filename,   size_s, type && *type ? type : "",
        now_s,  expires_s,       user_quota, total_quota};
    /* The row exists only if both quotas still hold with it (one
     * statement: no request can slip in between). */
    storage_query(u->st,
                  "INSERT INTO uploads (id, owner, put_hash, filename, size, content_type, "
                  "created, expires) "
                  "SELECT $1, $2, $3, $4, CAST($5 AS BIGINT), $6, CAST($7 AS BIGINT), "
                  "CAST($8 AS BIGINT) "
                  "WHERE (CAST($9 AS BIGINT) = 0 OR (SELECT COALESCE(SUM(size), 0) FROM uploads "
                  "WHERE owner = $2 AND created > CAST($7 AS BIGINT) - 86400) + CAST($5 AS BIGINT) "
                  "<= CAST($9 AS BIGINT)) "
                  "AND (CAST($10 AS BIGINT) = 0 OR (SELECT COALESCE(SUM(size), 0) FROM uploads) + "
                  "CAST($5 AS BIGINT) <= CAST($10 AS BIGINT))",
                  10, params, on_stored, rq);
    explicit_bzero(hash, sizeof hash);
    jid_free(owner);
}

void slot_on_route(upload_t *u, elem_t *route)
{
    elem_t *st = elem_first(route);
    const char *type = elem_attr(route, "type");
    if (type && strcmp(type, "error") == 0) return; /* a bounce of our answer */
    if (!st || !elem_is(st, NS_CLIENT, "iq")) return;
    const char *iq_type = elem_attr(st, "type");
    if (!iq_type || (strcmp(iq_type, "get") != 0 && strcmp(iq_type, "set") != 0)) return;
    if (!elem_attr(st, "from") || !elem_attr(st, "to")) return;
    elem_t *child = elem_first(st);
    bool is_get = strcmp(iq_type, "get") == 0;
    if (is_get && child && elem_is(child, NS_DISCO_INFO, "query") && !elem_attr(child, "node"))
        answer_disco(u, st, true);
    else if (is_get && child && elem_is(child, NS_DISCO_ITEMS, "query") &&
             !elem_attr(child, "node"))
        answer_disco(u, st, false);
    else if (is_get && child && elem_is(child, NS_UPLOAD, "request"))
        answer_request(u, st, child, comp_route_role(route));
    else
        reply_error(u, st, "service-unavailable", NULL);
}
