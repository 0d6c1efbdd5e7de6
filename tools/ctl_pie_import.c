/* ctl_pie_import.c — hearthctl import: the files read with libxml2's
 * xmlTextReader, one <user/> expanded at a time (memory is that of the
 * largest user), no network, no DTD: a <!DOCTYPE> or an entity reference
 * stops the file where it is met, before any user after it. Each user
 * checked (ctl_pie_check.c), looked up (exists: skipped, unless
 * --replace) and written in one transaction, then the next. */
#include <stdlib.h>
#include <unistd.h>

#include "ctl_pie.h"

/* ---- import: the files ---------------------------------------------------- */

static void on_parse_error(void *ud, xmlErrorPtr e)
{
    pie_t *p = ud;
    if (e && e->level >= XML_ERR_ERROR && !p->error[0]) {
        snprintf(p->error, sizeof p->error, "line %d: %s", e->line, e->message ? e->message : "");
        size_t len = strlen(p->error);
        if (len && p->error[len - 1] == '\n') p->error[len - 1] = '\0';
    }
}

void pie_file_close(pie_t *p)
{
    if (p->reader) xmlFreeTextReader(p->reader);
    p->reader = NULL;
    if (p->fds[p->file] > STDIN_FILENO) close(p->fds[p->file]);
    p->fds[p->file] = -1;
    p->file++;
}

static void file_fail(pie_t *p, const char *what)
{
    pie_error(p, "%s: %s%s%s; import of this file stopped", p->names[p->file], what,
              p->error[0] ? ": " : "", p->error);
    pie_file_close(p);
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
    pie_import_next(p);
}

static void on_written(void *ud, const st_result_t *res)
{
    pie_t *p = ud;
    if (st_status(res) != ST_OK) {
        pie_error(p, "%s: not imported: %s", p->owner, st_error(res));
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
        pie_error(p, "%s: not imported: %s", p->owner, st_error(res));
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
        pie_error(p, "%s: the file breaks inside it: not imported", label);
        return false;
    }
    bool is_bad = false;
    p->arena = arena_new(0);
    elem_t *user = tree_of(p->arena, NULL, n, &is_bad);
    /* Past the user, so that the next read continues after it. */
    int rc = xmlTextReaderNext(p->reader);
    if (rc < 0) {
        pie_error(p, "%s: the file breaks after it: not imported", label);
        arena_free(p->arena);
        p->arena = NULL;
        return false;
    }
    p->is_positioned = rc == 1;
    const char *why = is_bad ? "an entity reference" : NULL;
    if (!p->is_host_ok) why = "its host is not a domain of this server";
    if (!why) why = pie_check_user(p, user);
    if (why) {
        pie_error(p, "%s: not imported: %s", label, why);
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
        pie_error(p,
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
void pie_import_next(pie_t *p)
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
            pie_file_close(p);
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
        bool is_pie = pie_is(ns, NS_PIE) || pie_is(ns, NS_PIE_OLD);
        if (pie_is(ns, NS_XINCLUDE)) {
            file_fail(p, "uses XInclude, which is not followed: import the included files instead");
        } else if (depth == 0 && (!is_pie || !pie_is(name, "server-data"))) {
            file_fail(p, "is not XEP-0227 (its root is not <server-data xmlns='" NS_PIE "'>)");
        } else if (depth == 1 && is_pie && pie_is(name, "host")) {
            host_begin(p);
        } else if (depth == 2 && is_pie && pie_is(name, "user")) {
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
    pie_notify_start(p);
}
