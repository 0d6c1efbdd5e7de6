/* ctl_pie_export.c — hearthctl export: every local domain's accounts as
 * one XEP-0227 file (ctl_pie.c describes the format). A page of accounts
 * at a time, and one user's rows at a time: their five queries go out
 * together and the store answers them in order, the last one writes the
 * user. Stored XML (the sm's serializer wrote it) is parsed again and
 * written by common/xml.h's serializer, so nothing goes out unescaped. */
#include <errno.h>
#include <stdlib.h>

#include "ctl_pie.h"

/* ---- export --------------------------------------------------------------- */

static void export_page(pie_t *p);

void pie_page_free(pie_t *p)
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
        pie_error(p, "%s of %s does not parse: left out", what, p->owner);
}

static bool read_ok(pie_t *p, const st_result_t *res, const char *what)
{
    if (st_status(res) == ST_OK) return true;
    if (!p->has_read_error)
        pie_error(p, "cannot read the %s of %s: %s", what, p->owner, st_error(res));
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
        bool is_visible = !pie_is(sub, "none") || ask || approved || name || *groups || !pending;
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
        pie_page_free(p);
        return; /* the export stops: the file would miss data */
    }
    buf_t xml = BUF_INIT;
    elem_serialize(p->user, NS_PIE, &xml);
    buf_appends(&xml, "\n");
    if (fwrite(xml.data, 1, xml.len, p->out) != xml.len && !p->has_read_error) {
        pie_error(p, "cannot write %s: %s", p->out_path ? p->out_path : "the output",
                  strerror(errno));
        p->has_read_error = true;
    }
    buf_free(&xml);
    arena_free(p->arena);
    p->arena = NULL;
    if (p->has_read_error) {
        pie_page_free(p);
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
        if (fflush(p->out) != 0) {
            pie_error(p, "cannot write the output: %s", strerror(errno));
            p->has_read_error = true;
        }
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
    pie_page_free(p);
    if (is_full)
        export_page(p);
    else
        export_domain(p);
}

static void on_page(void *ud, const st_result_t *res)
{
    pie_t *p = ud;
    if (st_status(res) != ST_OK) {
        pie_error(p, "cannot list the accounts of %s: %s", p->domain_name, st_error(res));
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

void pie_export_start(pie_t *p)
{
    fputs("<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='" NS_PIE "'>\n", p->out);
    export_domain(p);
}
