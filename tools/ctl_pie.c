/* ctl_pie.c — hearthctl export and import: the accounts of every local
 * domain and what they own, as XEP-0227 (Portable Import/Export Format,
 * namespace urn:xmpp:pie:0), to move users between Hearth installations or
 * from another server.
 *
 *   hearthctl [-c FILE] export [FILE|-]
 *   hearthctl [-c FILE] import [--replace] [FILE...|-]
 *
 * What a <user/> holds, in both directions:
 *   - SCRAM keys, never a password: one <scram-credentials
 *     xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1|SCRAM-SHA-256'>
 *     per hash with <iter-count/>, <salt/>, <server-key/>, <stored-key/>
 *     (base64), as XEP-0227 1.1 §4.3 and Prosody's mod_storage_xep0227
 *     write them. Import also takes the 'password' attribute of older
 *     files (and Prosody's plaintext storage), and derives both key sets
 *     from it; keys of only one hash are stored as they are (c2s/auth.c
 *     says how such an account logs in);
 *   - the roster, <query xmlns='jabber:iq:roster'> as a roster result
 *     (RFC 6121 §2.1: jid, name, subscription, ask, approved, groups), and
 *     each contact's subscription request still unanswered as the
 *     <presence xmlns='jabber:client' type='subscribe'/> it sent;
 *   - the vCard, <vCard xmlns='vcard-temp'/> (XEP-0054);
 *   - private XML storage, <query xmlns='jabber:iq:private'> with one
 *     element per namespace (XEP-0049);
 *   - offline messages, <offline-messages> with the stored <message/>s
 *     oldest first, each with its <delay xmlns='urn:xmpp:delay'/>: the
 *     stamp of when it first reached a server, which import keeps (a
 *     message without one gets the time of the import);
 *   - the block list, <blocklist xmlns='urn:xmpp:blocking'> with an <item
 *     jid/> per blocked JID (XEP-0191's own element: XEP-0227 has none for
 *     it; XEP-0227 §4 lets a file carry elements of other namespaces).
 * Elements import does not know are reported and skipped. XInclude
 * (XEP-0227 §5) is not followed: a file that uses it is refused; import
 * takes several files instead (Prosody's exporter writes one per user).
 *
 * Export writes one <host/> per configured domain, users in the order of
 * their JIDs, to FILE (created 0600: it holds every account's keys) or
 * standard output, through common/xml.h's serializer, which escapes
 * everything; the accounts are read a page at a time and one user's data
 * at a time, so memory stays that of one user.
 *
 * Import reads with libxml2's xmlTextReader, one <user/> at a time (memory
 * is that of the largest user), with no network and no DTD: a file with a
 * <!DOCTYPE> or an entity reference is refused before any user of it is
 * read (so no entity expansion ever happens). Each user is checked against
 * the limits the sm enforces (sm.roster-max, sm.offline-quota,
 * sm.vcard-max, sm.private-max, sm.private-count, sm.blocklist-max) and
 * written in one transaction: a user whose data fail a check or a write
 * is not imported at all, and is named on standard error; the others are
 * imported. An account that exists already is skipped with a message,
 * unless --replace: then everything it owned is deleted in the same
 * transaction. A file that breaks off (truncated, not well-formed) stops
 * at that point: the users before it are imported, the one it breaks in
 * is not. Users of a domain this server does not serve are not imported.
 *
 * A running sm is then told, as after adduser, through the router with the
 * admin account: <created/> for each new account, <deleted/> then
 * <created/> for each replaced one (its sessions end: what it had in
 * memory is gone). Best effort: without a router or an sm the import
 * stands.
 *
 * Exit status: 0 every user exported or imported (existing accounts
 * skipped included), 1 something failed (the reasons on standard error),
 * 2 usage. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <libxml/xmlreader.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hearthctl.h"
#include "storage.h"

#define NS_PIE "urn:xmpp:pie:0"
#define NS_PIE_OLD "http://www.xmpp.org/extensions/xep-0227.html#ns" /* before 1.0 */
#define NS_SCRAM "urn:xmpp:pie:0#scram"
#define NS_ROSTER "jabber:iq:roster"
#define NS_PRIVATE "jabber:iq:private"
#define NS_VCARD "vcard-temp"
#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_DELAY "urn:xmpp:delay"
#define NS_XINCLUDE "http://www.w3.org/2001/XInclude"
#define NS_ADMIN "urn:hearth:admin:1"

#define PAGE_ROWS 100          /* accounts read at a time by export */
#define PENDING_MAX 4096       /* a kept subscription request (sm/mod_roster.c) */
#define MAX_ITERATIONS 1000000 /* of imported SCRAM keys */
#define NOTIFY_TIMEOUT_MS 5000

typedef struct pie {
    uv_loop_t *loop;
    config_t *config;
    storage_t *st;
    int status;
    /* export */
    FILE *out;
    const char *out_path; /* NULL: standard output */
    int domain;           /* index of the domain being written */
    char domain_name[JID_STRING_MAX];
    char last[JID_STRING_MAX]; /* the last account of the page before */
    char **page;               /* rows of the page: owner + 8 key columns each */
    int page_rows, page_row;
    arena_t *arena; /* the user being written or imported */
    elem_t *user;
    bool has_read_error;
    /* import */
    bool is_replace;
    int nfiles, file;
    int *fds;
    char **names;
    xmlTextReaderPtr reader;
    bool is_positioned; /* the reader is on the next node already */
    char error[512];    /* the parser's last message */
    char host[JID_STRING_MAX];
    bool is_host_ok;
    char owner[JID_STRING_MAX];
    int nstmts, stmts_cap;
    st_stmt_t *stmts;
    int imported, skipped, failed;
    /* telling the sm */
    comp_t *comp;
    char id[64];
    uv_timer_t timer;
    bool is_timer_open, is_sent;
    int nnotices, answered;
    char **notices; /* "created BARE" or "deleted BARE" */
} pie_t;

static void say_error(pie_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say_error(pie_t *p, const char *fmt, ...)
{
    fputs("hearthctl: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    p->status = 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: hearthctl [-c FILE] export [FILE|-]\n"
                    "       hearthctl [-c FILE] import [--replace] [FILE...|-]\n");
    return 2;
}

static bool is(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* ---- export --------------------------------------------------------------- */

static void export_page(pie_t *p);

static void page_free(pie_t *p)
{
    for (int i = 0; i < p->page_rows * 9; i++)
        free(p->page[i]);
    free(p->page);
    p->page = NULL;
    p->page_rows = p->page_row = 0;
}

static void add_text_child(elem_t *parent, const char *name, const char *text)
{
    elem_t *e = elem_add(parent, NULL, name);
    elem_add_text(e, text, strlen(text));
}

static void add_credentials(elem_t *user, const char *mechanism, char *const *cols)
{
    if (!cols[0] || !cols[1] || !cols[2] || !cols[3]) return; /* no keys of this hash */
    elem_t *c = elem_add(user, NS_SCRAM, "scram-credentials");
    elem_set_attr(c, "mechanism", mechanism);
    add_text_child(c, "iter-count", cols[1]);
    add_text_child(c, "salt", cols[0]);
    add_text_child(c, "stored-key", cols[2]);
    add_text_child(c, "server-key", cols[3]);
}

/* Stored XML (written by the sm's serializer) back into a tree under
 * parent; a row that does not parse is reported and left out. */
static void add_stored(pie_t *p, elem_t *parent, const char *xml, const char *default_ns,
                       const char *what)
{
    elem_t *e = xml ? xml_parse_fragment(p->arena, xml, strlen(xml), default_ns) : NULL;
    if (e)
        elem_add_copy(parent, e);
    else
        say_error(p, "%s of %s does not parse: left out", what, p->owner);
}

static bool read_ok(pie_t *p, const st_result_t *res, const char *what)
{
    if (st_status(res) == ST_OK) return true;
    if (!p->has_read_error)
        say_error(p, "cannot read the %s of %s: %s", what, p->owner, st_error(res));
    p->has_read_error = true;
    return false;
}

static void on_roster(void *ud, const st_result_t *res)
{
    pie_t *p = ud;
    if (!read_ok(p, res, "roster")) return;
    elem_t *query = NULL;
    for (int r = 0; r < st_rows(res); r++) {
        const char *jid = st_text(res, r, 0), *name = st_text(res, r, 1);
        const char *sub = st_text(res, r, 2), *pending = st_text(res, r, 5);
        const char *groups = st_text(res, r, 6) ? st_text(res, r, 6) : "";
        bool ask = st_int(res, r, 3) != 0, approved = st_int(res, r, 4) != 0;
        if (!jid) continue;
        /* As sm/roster.c's ritem_is_visible: an item that only holds their
         * request is no contact, and travels as the request alone. */
        bool is_visible = !is(sub, "none") || ask || approved || name || *groups || !pending;
        if (is_visible) {
            if (!query) query = elem_add(p->user, NS_ROSTER, "query");
            elem_t *item = elem_add(query, NULL, "item");
            elem_set_attr(item, "jid", jid);
            if (name) elem_set_attr(item, "name", name);
            elem_set_attr(item, "subscription", sub ? sub : "none");
            if (ask) elem_set_attr(item, "ask", "subscribe");
            if (approved) elem_set_attr(item, "approved", "true");
            for (const char *g = groups; *g;) {
                const char *end = strchr(g, '\n');
                size_t len = end ? (size_t)(end - g) : strlen(g);
                elem_t *group = elem_add(item, NULL, "group");
                elem_add_text(group, g, len);
                g += len + (end ? 1 : 0);
            }
        }
        if (pending) add_stored(p, p->user, pending, NS_CLIENT, "a subscription request");
    }
}

static void on_vcard(void *ud, const st_result_t *res)
{
    pie_t *p = ud;
    if (!read_ok(p, res, "vCard")) return;
    if (st_rows(res) > 0) add_stored(p, p->user, st_text(res, 0, 0), NS_VCARD, "the vCard");
}

static void on_private(void *ud, const st_result_t *res)
{
    pie_t *p = ud;
    if (!read_ok(p, res, "private XML storage") || st_rows(res) == 0) return;
    elem_t *query = elem_add(p->user, NS_PRIVATE, "query");
    for (int r = 0; r < st_rows(res); r++)
        add_stored(p, query, st_text(res, r, 0), "", "a private XML element");
}

static void on_offline(void *ud, const st_result_t *res)
{
    pie_t *p = ud;
    if (!read_ok(p, res, "offline messages") || st_rows(res) == 0) return;
    elem_t *queue = elem_add(p->user, NS_PIE, "offline-messages");
    for (int r = 0; r < st_rows(res); r++)
        add_stored(p, queue, st_text(res, r, 0), NS_CLIENT, "an offline message");
}

static void export_next_user(pie_t *p);

/* The last query of a user: write it and go on. */
static void on_blocklist(void *ud, const st_result_t *res)
{
    pie_t *p = ud;
    if (read_ok(p, res, "block list") && st_rows(res) > 0) {
        elem_t *list = elem_add(p->user, NS_BLOCKING, "blocklist");
        for (int r = 0; r < st_rows(res); r++)
            if (st_text(res, r, 0))
                elem_set_attr(elem_add(list, NULL, "item"), "jid", st_text(res, r, 0));
    }
    if (p->has_read_error) {
        arena_free(p->arena);
        p->arena = NULL;
        page_free(p);
        return; /* the export stops: the file would miss data */
    }
    buf_t xml = BUF_INIT;
    elem_serialize(p->user, NS_PIE, &xml);
    buf_appends(&xml, "\n");
    if (fwrite(xml.data, 1, xml.len, p->out) != xml.len && !p->has_read_error) {
        say_error(p, "cannot write %s: %s", p->out_path ? p->out_path : "the output",
                  strerror(errno));
        p->has_read_error = true;
    }
    buf_free(&xml);
    arena_free(p->arena);
    p->arena = NULL;
    if (p->has_read_error) {
        page_free(p);
        return;
    }
    export_next_user(p);
}

static void export_user(pie_t *p, char *const *row)
{
    snprintf(p->owner, sizeof p->owner, "%s", row[0]);
    p->arena = arena_new(0);
    p->user = elem_new(p->arena, NS_PIE, "user");
    char node[JID_STRING_MAX];
    const char *at = strrchr(row[0], '@');
    snprintf(node, sizeof node, "%.*s", at ? (int)(at - row[0]) : 0, row[0]);
    elem_set_attr(p->user, "name", node);
    add_credentials(p->user, "SCRAM-SHA-1", row + 1);
    add_credentials(p->user, "SCRAM-SHA-256", row + 5);
    const char *params[] = {p->owner};
    storage_query(p->st,
                  "SELECT jid, name, subscription, ask, preapproved, pending_in, \"groups\" "
                  "FROM roster_items WHERE owner = $1 ORDER BY jid",
                  1, params, on_roster, p);
    storage_query(p->st, "SELECT data FROM vcard WHERE owner = $1", 1, params, on_vcard, p);
    storage_query(p->st, "SELECT data FROM private WHERE owner = $1 ORDER BY ns", 1, params,
                  on_private, p);
    storage_query(p->st, "SELECT stanza FROM offline WHERE owner = $1 ORDER BY id", 1, params,
                  on_offline, p);
    storage_query(p->st, "SELECT jid FROM blocklist WHERE owner = $1 ORDER BY jid", 1, params,
                  on_blocklist, p);
}

static int domain_count(const config_t *config)
{
    int n = config_count(config, "domain");
    return n > 0 ? n : 1;
}

/* The next domain's <host/>, or the end of the file. */
static void export_domain(pie_t *p)
{
    if (p->domain > 0) fputs("</host>\n", p->out);
    for (; p->domain < domain_count(p->config); p->domain++) {
        const char *d = config_count(p->config, "domain") > 0
                            ? config_get_at(p->config, "domain", p->domain)
                            : config_get(p->config, "domain");
        if (d && jid_prep(d, strlen(d), p->domain_name, NULL) == 0) break;
    }
    if (p->domain >= domain_count(p->config)) {
        fputs("</server-data>\n", p->out);
        if (fflush(p->out) != 0) say_error(p, "cannot write the output: %s", strerror(errno));
        return;
    }
    buf_t b = BUF_INIT;
    buf_appends(&b, "<host jid='");
    xml_escape(&b, p->domain_name, strlen(p->domain_name), true);
    buf_appends(&b, "'>\n");
    fwrite(b.data, 1, b.len, p->out);
    buf_free(&b);
    p->domain++;
    p->last[0] = '\0';
    export_page(p);
}

static void export_next_user(pie_t *p)
{
    if (p->page_row < p->page_rows) {
        export_user(p, p->page + 9 * p->page_row++);
        return;
    }
    bool is_full = p->page_rows == PAGE_ROWS;
    page_free(p);
    if (is_full)
        export_page(p);
    else
        export_domain(p);
}

static void on_page(void *ud, const st_result_t *res)
{
    pie_t *p = ud;
    if (st_status(res) != ST_OK) {
        say_error(p, "cannot list the accounts of %s: %s", p->domain_name, st_error(res));
        return;
    }
    p->page_rows = st_rows(res);
    p->page = calloc((size_t)p->page_rows * 9 + 1, sizeof *p->page);
    if (!p->page) log_fatal("out of memory");
    for (int r = 0; r < p->page_rows; r++)
        for (int c = 0; c < 9; c++)
            if (st_text(res, r, c) && !(p->page[9 * r + c] = strdup(st_text(res, r, c))))
                log_fatal("out of memory");
    if (p->page_rows > 0) snprintf(p->last, sizeof p->last, "%s", p->page[9 * (p->page_rows - 1)]);
    export_next_user(p);
}

static void export_page(pie_t *p)
{
    char suffix[JID_STRING_MAX + 2], limit[16];
    snprintf(suffix, sizeof suffix, "@%s", p->domain_name);
    snprintf(limit, sizeof limit, "%d", PAGE_ROWS);
    const char *params[] = {p->last, suffix, limit};
    storage_query(p->st,
                  "SELECT owner, sha1_salt, sha1_iter, sha1_stored, sha1_server, sha256_salt, "
                  "sha256_iter, sha256_stored, sha256_server FROM auth WHERE owner > $1 AND "
                  "substr(owner, length(owner) - length(CAST($2 AS TEXT)) + 1) = $2 "
                  "ORDER BY owner LIMIT CAST($3 AS BIGINT)",
                  3, params, on_page, p);
}

static void export_start(pie_t *p)
{
    fputs("<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='" NS_PIE "'>\n", p->out);
    export_domain(p);
}

/* ---- import: checking one user -------------------------------------------- */

static void stmt_add(pie_t *p, const char *sql, int n, ...)
{
    if (p->nstmts == p->stmts_cap) {
        p->stmts_cap = p->stmts_cap ? 2 * p->stmts_cap : 16;
        p->stmts = realloc(p->stmts, (size_t)p->stmts_cap * sizeof *p->stmts);
        if (!p->stmts) log_fatal("out of memory");
    }
    const char **params = arena_alloc(p->arena, (size_t)n * sizeof *params);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *v = va_arg(ap, const char *);
        params[i] = v ? arena_strdup(p->arena, v) : NULL;
    }
    va_end(ap);
    p->stmts[p->nstmts++] = (st_stmt_t){sql, n, params};
}

/* A base64 text of exactly len decoded bytes (len 0: any length > 0). */
static bool is_base64(const char *s, size_t len)
{
    gnutls_datum_t in = {(unsigned char *)s, (unsigned)strlen(s)}, out = {NULL, 0};
    if (!*s || strlen(s) >= sizeof((scram_keys_t *)0)->salt || gnutls_base64_decode2(&in, &out) < 0)
        return false;
    bool ok = len ? out.size == len : out.size > 0;
    gnutls_free(out.data);
    return ok;
}

static const char *child_text(const elem_t *e, const char *name)
{
    const elem_t *c = elem_child(e, e->ns, name);
    return c ? elem_text(c) : NULL;
}

/* One <scram-credentials/> into keys; NULL, or why not. */
static const char *scram_of(const elem_t *c, scram_keys_t *k, size_t hash_len)
{
    const char *iter = child_text(c, "iter-count"), *salt = child_text(c, "salt");
    const char *stored = child_text(c, "stored-key"), *server = child_text(c, "server-key");
    if (!iter || !salt || !stored || !server)
        return "needs iter-count, salt, stored-key and server-key";
    char *end;
    long n = strtol(iter, &end, 10);
    if (*end || n < 1 || n > MAX_ITERATIONS) return "iter-count is not a number from 1 to 1000000";
    if (!is_base64(salt, 0)) return "the salt is not base64 (at most 63 characters)";
    if (!is_base64(stored, hash_len) || !is_base64(server, hash_len))
        return "a key is not base64 of the hash's length";
    snprintf(k->salt, sizeof k->salt, "%s", salt);
    snprintf(k->stored_key, sizeof k->stored_key, "%s", stored);
    snprintf(k->server_key, sizeof k->server_key, "%s", server);
    k->iterations = (unsigned)n;
    return NULL;
}

/* XEP-0082 DateTime (CCYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm)) as unix ms. */
static bool stamp_parse(const char *s, long long *ms)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || h < 0 || mi < 0 ||
        sec < 0)
        return false;
    const char *q = s + n;
    long long frac = 0;
    if (*q == '.') {
        int digits = 0;
        for (q++; isdigit((unsigned char)*q); q++, digits++)
            if (digits < 3) frac = frac * 10 + (*q - '0');
        if (digits == 0) return false;
        for (; digits < 3; digits++)
            frac *= 10;
    }
    long offset = 0;
    if (*q == 'Z') {
        q++;
    } else if (*q == '+' || *q == '-') {
        int oh, om, m = 0;
        if (sscanf(q + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m != 5 || oh > 23 || om > 59)
            return false;
        offset = (oh * 60L + om) * 60L * (*q == '-' ? -1 : 1);
        q += 6;
    } else {
        return false;
    }
    if (*q) return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    *ms = ((long long)timegm(&tm) - offset) * 1000 + frac;
    return true;
}

static const char *prepared(pie_t *p, const char *jid, bool is_bare)
{
    jid_t *j = jid ? jid_new(jid, strlen(jid), NULL) : NULL;
    const char *out = j ? arena_strdup(p->arena, is_bare ? jid_bare(j) : jid_full(j)) : NULL;
    if (j) jid_free(j);
    return out;
}

typedef struct contact {
    const char *jid, *name, *sub, *pending;
    bool ask, approved;
    buf_t groups;
} contact_t;

static contact_t *contact_find(contact_t *v, int n, const char *jid)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].jid, jid) == 0) return &v[i];
    return NULL;
}

/* The roster and the requests; NULL, or why the user is refused. */
static const char *check_roster(pie_t *p, const elem_t *user)
{
    long long max = config_int(p->config, "sm.roster-max");
    int n = 0, cap = 0;
    contact_t *v = NULL;
    const char *why = NULL;
    const elem_t *query = elem_child(user, NS_ROSTER, "query");
    for (const elem_t *it = query ? elem_child(query, NS_ROSTER, "item") : NULL; it && !why;
         it = elem_next(it, NS_ROSTER, "item")) {
        const char *jid = prepared(p, elem_attr(it, "jid"), false);
        const char *sub = elem_attr(it, "subscription") ? elem_attr(it, "subscription") : "none";
        if (is(sub, "remove")) continue;
        if (!jid)
            why = arena_strdup(p->arena, "a roster item has no valid jid");
        else if (!is(sub, "none") && !is(sub, "to") && !is(sub, "from") && !is(sub, "both"))
            why = "a roster item's subscription is not none, to, from or both";
        else if (contact_find(v, n, jid))
            why = "a contact is twice in the roster";
        else if (n == max)
            why = "more contacts than sm.roster-max";
        if (why) break;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            if (!(v = realloc(v, (size_t)cap * sizeof *v))) log_fatal("out of memory");
        }
        contact_t *c = &v[n++];
        *c =
            (contact_t){jid,
                        elem_attr(it, "name"),
                        sub,
                        NULL,
                        is(elem_attr(it, "ask"), "subscribe"),
                        is(elem_attr(it, "approved"), "true") || is(elem_attr(it, "approved"), "1"),
                        BUF_INIT};
        for (const elem_t *g = elem_child(it, NS_ROSTER, "group"); g && !why;
             g = elem_next(g, NS_ROSTER, "group")) {
            const char *name = elem_text(g);
            if (!*name) continue;
            if (strchr(name, '\n')) why = "a roster group's name has a line break";
            if (c->groups.len) buf_appends(&c->groups, "\n");
            buf_appends(&c->groups, name);
        }
    }
    /* Their requests waiting for an answer (XEP-0227 §4.5). */
    for (const elem_t *pr = elem_child(user, NS_CLIENT, "presence"); pr && !why;
         pr = elem_next(pr, NS_CLIENT, "presence")) {
        const char *from = prepared(p, elem_attr(pr, "from"), true);
        if (!is(elem_attr(pr, "type"), "subscribe")) continue;
        if (!from) {
            why = "a subscription request has no valid from";
            break;
        }
        contact_t *c = contact_find(v, n, from);
        if (!c) {
            if (n == max) {
                why = "more contacts than sm.roster-max";
                break;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                if (!(v = realloc(v, (size_t)cap * sizeof *v))) log_fatal("out of memory");
            }
            c = &v[n++];
            *c = (contact_t){from, NULL, "none", NULL, false, false, BUF_INIT};
        }
        buf_t xml = BUF_INIT;
        elem_serialize(pr, NS_CLIENT, &xml);
        if (xml.len > PENDING_MAX) {
            buf_reset(&xml);
            buf_appends(&xml, "<presence type='subscribe' from='");
            xml_escape(&xml, from, strlen(from), true);
            buf_appends(&xml, "'/>");
        }
        c->pending = arena_strdup(p->arena, xml.data);
        buf_free(&xml);
    }
    for (int i = 0; i < n; i++) {
        if (!why)
            stmt_add(p,
                     "INSERT INTO roster_items (owner, jid, name, subscription, ask, preapproved, "
                     "pending_in, \"groups\") VALUES ($1, $2, $3, $4, CAST($5 AS INTEGER), "
                     "CAST($6 AS INTEGER), $7, $8)",
                     8, p->owner, v[i].jid, v[i].name, v[i].sub, v[i].ask ? "1" : "0",
                     v[i].approved ? "1" : "0", v[i].pending,
                     v[i].groups.len ? v[i].groups.data : "");
        buf_free(&v[i].groups);
    }
    free(v);
    return why;
}

static const char *check_offline(pie_t *p, const elem_t *user)
{
    const elem_t *queue = elem_child(user, NS_PIE, "offline-messages");
    if (!queue) queue = elem_child(user, NS_PIE_OLD, "offline-messages");
    if (!queue) return NULL;
    long long quota = config_int(p->config, "sm.offline-quota"), n = 0;
    for (const elem_t *m = elem_child(queue, NS_CLIENT, "message"); m;
         m = elem_next(m, NS_CLIENT, "message")) {
        if (++n > quota) return "more offline messages than sm.offline-quota";
        elem_t *copy = elem_copy(p->arena, m);
        const elem_t *delay = elem_child(copy, NS_DELAY, "delay");
        long long ms;
        if (!delay || !elem_attr(delay, "stamp") || !stamp_parse(elem_attr(delay, "stamp"), &ms)) {
            if (delay) return "an offline message's delay has no valid stamp (XEP-0082)";
            /* XEP-0203: when it reached this server, said by this server. */
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
            time_t secs = now.tv_sec;
            struct tm tm;
            gmtime_r(&secs, &tm);
            char stamp[64];
            snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(now.tv_nsec / 1000000));
            elem_t *d = elem_add(copy, NS_DELAY, "delay");
            elem_set_attr(d, "from", p->host);
            elem_set_attr(d, "stamp", stamp);
        }
        char stamp_ms[24];
        snprintf(stamp_ms, sizeof stamp_ms, "%lld", ms);
        buf_t xml = BUF_INIT;
        elem_serialize(copy, NS_CLIENT, &xml);
        stmt_add(p,
                 "INSERT INTO offline (owner, stamp, stanza) VALUES ($1, CAST($2 AS BIGINT), $3)",
                 3, p->owner, stamp_ms, xml.data);
        buf_free(&xml);
    }
    return NULL;
}

static const char *check_vcard(pie_t *p, const elem_t *user)
{
    const elem_t *vcard = elem_child(user, NS_VCARD, "vCard");
    if (!vcard || !elem_first(vcard)) return NULL; /* an empty vCard is none (mod_vcard.c) */
    buf_t xml = BUF_INIT;
    elem_serialize(vcard, NULL, &xml);
    bool is_big = xml.len > config_size(p->config, "sm.vcard-max");
    if (!is_big)
        stmt_add(p, "INSERT INTO vcard (owner, data) VALUES ($1, $2)", 2, p->owner, xml.data);
    buf_free(&xml);
    return is_big ? "the vCard is larger than sm.vcard-max" : NULL;
}

static const char *check_private(pie_t *p, const elem_t *user)
{
    const elem_t *query = elem_child(user, NS_PRIVATE, "query");
    if (!query) return NULL;
    long long max_count = config_int(p->config, "sm.private-count"), n = 0;
    unsigned long long max_size = config_size(p->config, "sm.private-max");
    for (const elem_t *e = elem_first(query); e; e = elem_next(e, NULL, NULL)) {
        /* XEP-0049 §3: these namespaces are not the client's to store. */
        if (!*e->ns || is(e->ns, NS_CLIENT) || is(e->ns, "jabber:server") || is(e->ns, NS_PRIVATE))
            return "a private XML element has a namespace XEP-0049 reserves";
        for (const elem_t *o = elem_first(query); o != e; o = elem_next(o, NULL, NULL))
            if (strcmp(o->ns, e->ns) == 0) return "two private XML elements share a namespace";
        if (++n > max_count) return "more private XML elements than sm.private-count";
        buf_t xml = BUF_INIT;
        elem_serialize(e, NULL, &xml);
        bool is_big = xml.len > max_size;
        if (!is_big)
            stmt_add(p, "INSERT INTO private (owner, ns, data) VALUES ($1, $2, $3)", 3, p->owner,
                     e->ns, xml.data);
        buf_free(&xml);
        if (is_big) return "a private XML element is larger than sm.private-max";
    }
    return NULL;
}

static const char *check_blocklist(pie_t *p, const elem_t *user)
{
    const elem_t *list = elem_child(user, NS_BLOCKING, "blocklist");
    if (!list) return NULL;
    long long max = config_int(p->config, "sm.blocklist-max"), n = 0;
    int first = p->nstmts;
    for (const elem_t *it = elem_child(list, NS_BLOCKING, "item"); it;
         it = elem_next(it, NS_BLOCKING, "item")) {
        const char *jid = prepared(p, elem_attr(it, "jid"), false);
        if (!jid) return "a blocked item has no valid jid";
        bool is_dup = false;
        for (int i = first; i < p->nstmts && !is_dup; i++)
            is_dup = strcmp(p->stmts[i].params[1], jid) == 0;
        if (is_dup) continue;
        if (++n > max) return "more blocked JIDs than sm.blocklist-max";
        stmt_add(p, "INSERT INTO blocklist (owner, jid) VALUES ($1, $2)", 2, p->owner, jid);
    }
    return NULL;
}

/* The account's keys: from a password, or from <scram-credentials/>. */
static const char *check_keys(pie_t *p, const elem_t *user)
{
    const char *password = elem_attr(user, "password");
    if (!password) password = child_text(user, "password");
    auth_keys_t keys;
    memset(&keys, 0, sizeof keys);
    bool has1 = false, has256 = false;
    if (password && *password) {
        if (auth_keys_make(password, &keys) < 0) return "its password is not one SASLprep allows";
        has1 = has256 = true;
    } else {
        for (const elem_t *c = elem_child(user, NS_SCRAM, "scram-credentials"); c;
             c = elem_next(c, NS_SCRAM, "scram-credentials")) {
            const char *mech = elem_attr(c, "mechanism"), *why = NULL;
            if (is(mech, "SCRAM-SHA-1"))
                why = scram_of(c, &keys.sha1, 20), has1 = !why;
            else if (is(mech, "SCRAM-SHA-256"))
                why = scram_of(c, &keys.sha256, 32), has256 = !why;
            else
                fprintf(stderr, "hearthctl: %s: credentials for %s ignored (not kept here)\n",
                        p->owner, mech ? mech : "no mechanism");
            if (why) return arena_strdup(p->arena, why);
        }
    }
    if (!has1 && !has256)
        return "no password and no SCRAM-SHA-1 or SCRAM-SHA-256 credentials: it could never log in";
    char iter1[16], iter256[16], created[24];
    snprintf(iter1, sizeof iter1, "%u", keys.sha1.iterations);
    snprintf(iter256, sizeof iter256, "%u", keys.sha256.iterations);
    snprintf(created, sizeof created, "%lld", (long long)time(NULL));
    stmt_add(p,
             "INSERT INTO auth (owner, sha1_salt, sha1_iter, sha1_stored, sha1_server,"
             " sha256_salt, sha256_iter, sha256_stored, sha256_server, created)"
             " VALUES ($1, $2, CAST($3 AS INTEGER), $4, $5, $6, CAST($7 AS INTEGER), $8, $9,"
             " CAST($10 AS BIGINT))",
             10, p->owner, has1 ? keys.sha1.salt : NULL, has1 ? iter1 : NULL,
             has1 ? keys.sha1.stored_key : NULL, has1 ? keys.sha1.server_key : NULL,
             has256 ? keys.sha256.salt : NULL, has256 ? iter256 : NULL,
             has256 ? keys.sha256.stored_key : NULL, has256 ? keys.sha256.server_key : NULL,
             created);
    explicit_bzero(&keys, sizeof keys);
    return NULL;
}

/* Report what the user holds that import does not know. */
static void note_unknown(pie_t *p, const elem_t *user)
{
    for (const elem_t *e = elem_first(user); e; e = elem_next(e, NULL, NULL)) {
        bool is_known = elem_is(e, NS_SCRAM, "scram-credentials") ||
                        elem_is(e, NS_ROSTER, "query") || elem_is(e, NS_CLIENT, "presence") ||
                        elem_is(e, NS_VCARD, "vCard") || elem_is(e, NS_PRIVATE, "query") ||
                        elem_is(e, NS_BLOCKING, "blocklist") || is(e->name, "offline-messages") ||
                        is(e->name, "password");
        if (!is_known)
            fprintf(stderr, "hearthctl: %s: <%s xmlns='%s'> is not imported (unknown here)\n",
                    p->owner, e->name, e->ns);
    }
}

/* A user's statements into p->stmts; NULL, or why the user is refused. */
static const char *check_user(pie_t *p, const elem_t *user)
{
    const char *name = elem_attr(user, "name"), *why = NULL;
    if (!name || !*name) return "a user without a name";
    jid_t *j = jid_new_parts(name, p->host, NULL, &why);
    if (!j) return why ? why : "not a valid JID";
    snprintf(p->owner, sizeof p->owner, "%s", jid_bare(j));
    jid_free(j);
    if (elem_child(user, NS_XINCLUDE, "include")) return "XInclude is not supported";
    p->nstmts = 0;
    if (p->is_replace) {
        int n;
        const char *const *deletes = storage_delete_owner_sql(p->st, &n);
        for (int i = 0; i < n; i++)
            stmt_add(p, deletes[i], 1, p->owner);
    }
    if ((why = check_keys(p, user)) || (why = check_roster(p, user)) ||
        (why = check_vcard(p, user)) || (why = check_private(p, user)) ||
        (why = check_offline(p, user)) || (why = check_blocklist(p, user)))
        return why;
    note_unknown(p, user);
    return NULL;
}

/* ---- import: the files ---------------------------------------------------- */

static void import_next(pie_t *p);
static void notify_start(pie_t *p);

static void on_parse_error(void *ud, xmlErrorPtr e)
{
    pie_t *p = ud;
    if (e && e->level >= XML_ERR_ERROR && !p->error[0]) {
        snprintf(p->error, sizeof p->error, "line %d: %s", e->line, e->message ? e->message : "");
        size_t len = strlen(p->error);
        if (len && p->error[len - 1] == '\n') p->error[len - 1] = '\0';
    }
}

static void file_close(pie_t *p)
{
    if (p->reader) xmlFreeTextReader(p->reader);
    p->reader = NULL;
    if (p->fds[p->file] > STDIN_FILENO) close(p->fds[p->file]);
    p->fds[p->file] = -1;
    p->file++;
}

static void file_fail(pie_t *p, const char *what)
{
    say_error(p, "%s: %s%s%s; import of this file stopped", p->names[p->file], what,
              p->error[0] ? ": " : "", p->error);
    file_close(p);
}

static void notice_add(pie_t *p, const char *action)
{
    p->notices = realloc(p->notices, (size_t)(p->nnotices + 1) * sizeof *p->notices);
    if (!p->notices || asprintf(&p->notices[p->nnotices], "%s %s", action, p->owner) < 0)
        log_fatal("out of memory");
    p->nnotices++;
}

static void user_done(pie_t *p)
{
    arena_free(p->arena);
    p->arena = NULL;
    p->nstmts = 0;
    import_next(p);
}

static void on_written(void *ud, const st_result_t *res)
{
    pie_t *p = ud;
    if (st_status(res) != ST_OK) {
        say_error(p, "%s: not imported: %s", p->owner, st_error(res));
        p->failed++;
    } else {
        printf("imported %s\n", p->owner);
        p->imported++;
        if (p->is_replace) notice_add(p, "deleted");
        notice_add(p, "created");
    }
    user_done(p);
}

static void on_exists(void *ud, const st_result_t *res)
{
    pie_t *p = ud;
    if (st_status(res) != ST_OK) {
        say_error(p, "%s: not imported: %s", p->owner, st_error(res));
        p->failed++;
    } else if (st_rows(res) > 0 && !p->is_replace) {
        fprintf(stderr, "hearthctl: %s exists already: skipped (--replace replaces it)\n",
                p->owner);
        p->skipped++;
    } else {
        storage_tx(p->st, p->nstmts, p->stmts, on_written, p);
        return;
    }
    user_done(p);
}

static elem_t *tree_of(arena_t *a, elem_t *parent, xmlNodePtr n, bool *is_bad)
{
    const char *ns = n->ns && n->ns->href ? (const char *)n->ns->href : "";
    elem_t *e = parent ? elem_add(parent, ns, (const char *)n->name)
                       : elem_new(a, ns, (const char *)n->name);
    for (xmlAttrPtr at = n->properties; at; at = at->next) {
        xmlChar *v = xmlNodeListGetString(n->doc, at->children, 1);
        if (at->ns && at->ns->href)
            elem_set_attr_ns(e, (const char *)at->ns->href, (const char *)at->name,
                             v ? (const char *)v : "");
        else
            elem_set_attr(e, (const char *)at->name, v ? (const char *)v : "");
        xmlFree(v);
    }
    for (xmlNodePtr c = n->children; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE)
            tree_of(a, e, c, is_bad);
        else if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
            elem_add_text(e, (const char *)c->content, strlen((const char *)c->content));
        else if (c->type == XML_ENTITY_REF_NODE)
            *is_bad = true;
    }
    return e;
}

/* The reader is on a <user/>: read it whole, check it, write it. false
 * when the file broke inside it. */
static bool import_user(pie_t *p)
{
    xmlNodePtr n = xmlTextReaderExpand(p->reader);
    const char *name = (const char *)xmlTextReaderGetAttribute(p->reader, BAD_CAST "name");
    char label[JID_STRING_MAX + 32];
    snprintf(label, sizeof label, "user '%s' of %s", name ? name : "?", p->host);
    xmlFree((void *)name);
    if (!n) {
        say_error(p, "%s: the file breaks inside it: not imported", label);
        return false;
    }
    bool is_bad = false;
    p->arena = arena_new(0);
    elem_t *user = tree_of(p->arena, NULL, n, &is_bad);
    /* Past the user, so that the next read continues after it. */
    int rc = xmlTextReaderNext(p->reader);
    if (rc < 0) {
        say_error(p, "%s: the file breaks after it: not imported", label);
        arena_free(p->arena);
        p->arena = NULL;
        return false;
    }
    p->is_positioned = rc == 1;
    const char *why = is_bad ? "an entity reference" : NULL;
    if (!p->is_host_ok) why = "its host is not a domain of this server";
    if (!why) why = check_user(p, user);
    if (why) {
        say_error(p, "%s: not imported: %s", label, why);
        p->failed++;
        arena_free(p->arena);
        p->arena = NULL;
        return true;
    }
    const char *params[] = {p->owner};
    storage_query(p->st, "SELECT 1 FROM auth WHERE owner = $1", 1, params, on_exists, p);
    return true;
}

static void host_begin(pie_t *p)
{
    char *jid = (char *)xmlTextReaderGetAttribute(p->reader, BAD_CAST "jid");
    p->is_host_ok = jid && jid_prep(jid, strlen(jid), p->host, NULL) == 0 &&
                    is_local_domain(p->config, p->host);
    if (!p->is_host_ok) {
        say_error(p,
                  "%s: host '%s' is not a domain of this server (see <domain> in %s): its "
                  "users are not imported",
                  p->names[p->file], jid ? jid : "", config_file(p->config));
        if (!jid || jid_prep(jid, strlen(jid), p->host, NULL) < 0)
            snprintf(p->host, sizeof p->host, "%s", jid ? jid : "?");
    }
    xmlFree(jid);
}

/* Read on until a user is being written (its callback continues), or the
 * files are done. */
static void import_next(pie_t *p)
{
    while (p->file < p->nfiles) {
        if (!p->reader) {
            p->error[0] = '\0';
            p->reader = xmlReaderForFd(p->fds[p->file], p->names[p->file], NULL, XML_PARSE_NONET);
            if (!p->reader) {
                file_fail(p, "cannot read it");
                continue;
            }
            xmlTextReaderSetStructuredErrorHandler(p->reader, on_parse_error, p);
            p->is_positioned = false;
        }
        int rc = p->is_positioned ? 1 : xmlTextReaderRead(p->reader);
        p->is_positioned = false;
        if (rc == 0) {
            file_close(p);
            continue;
        }
        if (rc < 0) {
            file_fail(p, "not well-formed XML");
            continue;
        }
        int type = xmlTextReaderNodeType(p->reader), depth = xmlTextReaderDepth(p->reader);
        if (type == XML_READER_TYPE_DOCUMENT_TYPE) {
            file_fail(p, "has a document type declaration (<!DOCTYPE>), which is refused");
            continue;
        }
        if (type == XML_READER_TYPE_ENTITY_REFERENCE) {
            file_fail(p, "has an entity reference, which is refused");
            continue;
        }
        if (type != XML_READER_TYPE_ELEMENT) continue;
        const char *name = (const char *)xmlTextReaderConstLocalName(p->reader);
        const char *ns = (const char *)xmlTextReaderConstNamespaceUri(p->reader);
        bool is_pie = is(ns, NS_PIE) || is(ns, NS_PIE_OLD);
        if (is(ns, NS_XINCLUDE)) {
            file_fail(p, "uses XInclude, which is not followed: import the included files instead");
        } else if (depth == 0 && (!is_pie || !is(name, "server-data"))) {
            file_fail(p, "is not XEP-0227 (its root is not <server-data xmlns='" NS_PIE "'>)");
        } else if (depth == 1 && is_pie && is(name, "host")) {
            host_begin(p);
        } else if (depth == 2 && is_pie && is(name, "user")) {
            if (!import_user(p)) {
                p->failed++;
                file_fail(p, "the file ends or breaks inside a user");
                continue;
            }
            if (p->arena) return; /* being written: on_exists goes on */
        } else if (depth == 1 || depth == 2) {
            fprintf(stderr, "hearthctl: %s: <%s xmlns='%s'> is not imported (unknown here)\n",
                    p->names[p->file], name, ns ? ns : "");
            int next = xmlTextReaderNext(p->reader);
            if (next < 0)
                file_fail(p, "not well-formed XML");
            else
                p->is_positioned = next == 1;
        }
    }
    printf("imported %d, skipped %d (existing), failed %d\n", p->imported, p->skipped, p->failed);
    notify_start(p);
}

/* ---- telling the sm ------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

static void notify_finish(pie_t *p)
{
    if (p->comp) comp_free(p->comp);
    p->comp = NULL;
    if (p->is_timer_open) uv_close((uv_handle_t *)&p->timer, on_timer_closed);
    p->is_timer_open = false;
}

static void on_notify_timeout(uv_timer_t *t)
{
    pie_t *p = t->data;
    if (p->answered < p->nnotices)
        fprintf(stderr,
                "hearthctl: warning: the sm answered %d of %d notices about the imported "
                "accounts; it learns of the others when they log in\n",
                p->answered, p->nnotices);
    notify_finish(p);
}

static void on_notify_ready(comp_t *comp)
{
    pie_t *p = comp_data(comp);
    if (p->is_sent) return;
    p->is_sent = true;
    for (int i = 0; i < p->nnotices; i++) {
        const char *action = p->notices[i], *jid = strchr(action, ' ') + 1,
                   *domain = strrchr(jid, '@') + 1;
        char id[32];
        snprintf(id, sizeof id, "pie-%d", i);
        arena_t *a = arena_new(0);
        elem_t *iq = elem_new(a, NS_CLIENT, "iq");
        elem_set_attr(iq, "type", "set");
        elem_set_attr(iq, "id", id);
        elem_set_attr(iq, "from", p->id);
        elem_set_attr(iq, "to", domain);
        elem_t *cmd =
            elem_add(iq, NS_ADMIN, strncmp(action, "created", 7) == 0 ? "created" : "deleted");
        elem_set_attr(cmd, "jid", jid);
        /* user= picks the shard that holds the account (DESIGN.md). */
        comp_send_to(comp, domain, p->id, jid, iq);
        arena_free(a);
    }
}

static void on_notify_route(comp_t *comp, elem_t *route, const xstream_raw_t *raw)
{
    (void)raw;
    pie_t *p = comp_data(comp);
    const elem_t *iq = elem_first(route);
    bool is_bounce = is(elem_attr(route, "type"), "error");
    /* Answers count only from the sm (or the router's bounce: no sm). */
    if (comp_route_role(route) != (is_bounce ? ROLE_ROUTER : ROLE_SM) || !iq) return;
    const char *id = elem_attr(iq, "id");
    if (!id || strncmp(id, "pie-", 4) != 0) return;
    if (++p->answered == p->nnotices) uv_timer_start(&p->timer, on_notify_timeout, 0, 0);
}

static void notify_start(pie_t *p)
{
    if (!p->comp || p->nnotices == 0) {
        notify_finish(p);
        return;
    }
    comp_bind(p->comp, p->id, 0);
    comp_start(p->comp);
    uv_timer_init(p->loop, &p->timer);
    p->timer.data = p;
    p->is_timer_open = true;
    uv_timer_start(&p->timer, on_notify_timeout, NOTIFY_TIMEOUT_MS, 0);
}

/* ---- main ----------------------------------------------------------------- */

static void on_closed(void *ud)
{
    (void)ud;
}

/* The files, opened before the switch of user (they may be root's). */
static int open_files(pie_t *p, int argc, char **argv, bool is_export)
{
    if (is_export) {
        p->out = stdout;
        if (argc == 1 && strcmp(argv[0], "-") != 0) {
            p->out_path = argv[0];
            int fd = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0 || !(p->out = fdopen(fd, "w"))) {
                say_error(p, "cannot write %s: %s", p->out_path, strerror(errno));
                if (fd >= 0) close(fd);
                p->out = NULL;
                return -1;
            }
        }
        return 0;
    }
    p->nfiles = argc > 0 ? argc : 1;
    p->fds = calloc((size_t)p->nfiles, sizeof *p->fds);
    p->names = calloc((size_t)p->nfiles, sizeof *p->names);
    if (!p->fds || !p->names) log_fatal("out of memory");
    for (int i = 0; i < p->nfiles; i++) {
        const char *name = argc > 0 ? argv[i] : "-";
        p->names[i] = strcmp(name, "-") == 0 ? "standard input" : (char *)name;
        p->fds[i] = strcmp(name, "-") == 0 ? STDIN_FILENO : open(name, O_RDONLY | O_CLOEXEC);
        if (p->fds[i] < 0) {
            say_error(p, "cannot read %s: %s", name, strerror(errno));
            return -1;
        }
    }
    return 0;
}

int pie_main(const char *config_path, int argc, char **argv)
{
    bool is_export = strcmp(argv[0], "export") == 0;
    argc--, argv++;
    pie_t pie = {0}, *p = &pie;
    if (is_export && argc > 1) return usage();
    if (!is_export && argc > 0 && strcmp(argv[0], "--replace") == 0) {
        p->is_replace = true;
        argc--, argv++;
    }
    for (int i = 0; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1]) return usage();
    char *err = NULL;
    if (!(p->config = config_load(config_path, &err))) {
        fprintf(stderr, "hearthctl: %s\n", err);
        free(err);
        return 1;
    }
    log_open("hearthctl", "stderr", "warn");
    LIBXML_TEST_VERSION
    p->loop = uv_default_loop();
    static const comp_cb_t cb = {.on_ready = on_notify_ready, .on_route = on_notify_route};
    if (!is_export && has_admin_account(p->config)) {
        snprintf(p->id, sizeof p->id, "hearthctl-%ld", (long)getpid());
        p->comp = comp_new_from_config(p->loop, p->config, p->id, ROLE_ADMIN, &cb, p);
    }
    if (open_files(p, argc, argv, is_export) < 0) goto done;
    /* As root, become the daemons' user before the store is opened. */
    if (daemon_switch_user(p->config, &err) < 0) {
        say_error(p, "%s", err);
        free(err);
        goto done;
    }
    if (!(p->st = storage_open(p->loop, p->config, &err))) {
        say_error(p, "cannot open the store: %s", err);
        free(err);
        goto done;
    }
    if (is_export)
        export_start(p);
    else
        import_next(p);
    uv_run(p->loop, UV_RUN_DEFAULT);

done:
    notify_finish(p);
    if (p->st) storage_close(p->st, on_closed, NULL);
    uv_run(p->loop, UV_RUN_DEFAULT);
    uv_loop_close(p->loop);
    if (p->out && p->out != stdout) {
        if (fclose(p->out) != 0) say_error(p, "cannot write %s: %s", p->out_path, strerror(errno));
        if (p->status != 0) unlink(p->out_path);
    } else if (p->out) {
        fflush(p->out);
    }
    while (p->reader || (p->fds && p->file < p->nfiles))
        file_close(p);
    for (int i = 0; i < p->nnotices; i++)
        free(p->notices[i]);
    free(p->notices);
    free(p->fds);
    free(p->names);
    free(p->stmts);
    page_free(p);
    if (p->arena) arena_free(p->arena);
    config_free(p->config);
    xmlCleanupParser();
    log_close();
    return p->status;
}
