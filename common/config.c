/* config.c — load, validate and query hearth.xml.
 *
 * libxml2 builds a tree of the file (no network, no DTD: a DOCTYPE stops the
 * parser, so no entity is ever declared, let alone expanded). Walking the
 * tree, every element and attribute is looked up in cfg_settings
 * (settings.c) by its dotted path and its value checked against its type,
 * so a daemon refuses a broken file at start with "FILE:LINE: reason".
 * What survives is a flat list of items in document order:
 *
 *   element   setting, text value (NULL for a section), line, parent element
 *   attribute setting, value, line, the element it sits on
 *
 * Lookups scan that list: they happen at start-up, on a few hundred items.
 *
 * Line numbers are our own, taken while libxml2 parses (SAX hooks around
 * its tree builder): libxml2 gives an element the line where its start tag
 * ends and has none for attributes; a message should name the line where
 * the offending name is written. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "log.h"
#include "xml.h"

/* hearth.xml is a few kilobytes; anything this large is a mistake. */
#define CONFIG_FILE_MAX (16 * 1024 * 1024)

struct item {
    const cfg_setting_t *setting;
    char *value; /* NULL for a section */
    int line;
    int parent; /* element: its parent element (-1: the root); attribute: its element */
    bool is_attr;
};

struct config {
    char *file;
    struct item *items;
    int count, cap;
};

/* Per element, filled during parsing and found through node->_private. */
struct elem_info {
    int line;      /* of the '<' of its start tag */
    int text_line; /* of its first non-blank text, 0 if none */
};

struct parse {
    config_t *c;
    char *err;
    struct elem_info *info;
    size_t ninfo, info_cap;
    int dtd_line;
    int xml_err_line; /* the first error libxml2 reports */
    char xml_err[256];
};

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size);
    if (!p) log_fatal("config: out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) log_fatal("config: out of memory");
    return d;
}

/* ---- values ---------------------------------------------------------- */

static bool parse_int(const char *v, long long *out)
{
    const char *p = v;
    if (*p == '-' || *p == '+') p++;
    if (*p < '0' || *p > '9') return false;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return false;
    errno = 0;
    *out = strtoll(v, NULL, 10);
    return errno == 0;
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return *out = true, true;
        if (strcasecmp(v, no[i]) == 0) return *out = false, true;
    }
    return false;
}

/* Leading decimal digits of v into *n; the rest in *rest. */
static bool parse_digits(const char *v, unsigned long long *n, const char **rest)
{
    unsigned long long x = 0;
    const char *p = v;
    if (*p < '0' || *p > '9') return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (x > (ULLONG_MAX - (unsigned)(*p - '0')) / 10) return false;
        x = x * 10 + (unsigned)(*p - '0');
    }
    *n = x;
    *rest = p;
    return true;
}

static bool scale(unsigned long long n, unsigned long long unit, unsigned long long *out)
{
    if (n > ULLONG_MAX / unit) return false;
    *out = n * unit;
    return true;
}

/* 512, 64k, 64K, 10M, 1G: bytes, 1024-based. */
static bool parse_size(const char *v, unsigned long long *out)
{
    unsigned long long n;
    const char *unit;
    if (!parse_digits(v, &n, &unit)) return false;
    switch (*unit) {
    case '\0':
        *out = n;
        return true;
    case 'k':
    case 'K':
        return unit[1] == '\0' && scale(n, 1ULL << 10, out);
    case 'm':
    case 'M':
        return unit[1] == '\0' && scale(n, 1ULL << 20, out);
    case 'g':
    case 'G':
        return unit[1] == '\0' && scale(n, 1ULL << 30, out);
    default:
        return false;
    }
}

/* 250ms, 30s, 5m, 1h, or a bare number of seconds: milliseconds. */
static bool parse_duration(const char *v, unsigned long long *ms)
{
    unsigned long long n;
    const char *unit;
    if (!parse_digits(v, &n, &unit)) return false;
    if (strcmp(unit, "ms") == 0) return *ms = n, true;
    if (strcmp(unit, "s") == 0 || *unit == '\0') return scale(n, 1000, ms);
    if (strcmp(unit, "m") == 0) return scale(n, 60 * 1000, ms);
    if (strcmp(unit, "h") == 0) return scale(n, 3600 * 1000, ms);
    return false;
}

static bool is_choice(const char *v, const char *choices)
{
    size_t len = strlen(v);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, v, n) == 0) return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

/* NULL if v is a valid value of s, else why not (in buf). */
static const char *check_value(const cfg_setting_t *s, const char *v, char *buf, size_t size)
{
    long long i;
    bool b;
    unsigned long long u;
    switch (s->type) {
    case CFG_SECTION:
    case CFG_STRING:
        return NULL;
    case CFG_INT:
        if (!parse_int(v, &i)) {
            snprintf(buf, size, "'%.64s' is not an integer", v);
            return buf;
        }
        if ((s->min || s->max) && (i < s->min || i > s->max)) {
            snprintf(buf, size, "%lld is out of range [%lld, %lld]", i, s->min, s->max);
            return buf;
        }
        return NULL;
    case CFG_BOOL:
        if (parse_bool(v, &b)) return NULL;
        snprintf(buf, size, "'%.64s' is not a boolean (true/false, yes/no, on/off, 1/0)", v);
        return buf;
    case CFG_SIZE:
        if (parse_size(v, &u)) return NULL;
        snprintf(buf, size, "'%.64s' is not a size (e.g. 512, 64k, 10M, 1G)", v);
        return buf;
    case CFG_DURATION:
        if (parse_duration(v, &u)) return NULL;
        snprintf(buf, size, "'%.64s' is not a duration (e.g. 250ms, 30s, 5m, 1h)", v);
        return buf;
    case CFG_CHOICE:
        if (is_choice(v, s->choices)) return NULL;
        snprintf(buf, size, "'%.64s' is not one of %s", v, s->choices ? s->choices : "(none)");
        return buf;
    }
    return NULL;
}

/* ---- the table --------------------------------------------------------- */

static const cfg_setting_t *find_setting(const char *path)
{
    for (const cfg_setting_t *s = cfg_settings; s->path; s++)
        if (strcmp(s->path, path) == 0) return s;
    return NULL;
}

static const cfg_setting_t *must_find(const char *path)
{
    const cfg_setting_t *s = path ? find_setting(path) : NULL;
    if (!s)
        log_fatal("config: no setting '%s' in cfg_settings (settings.c)", path ? path : "(null)");
    return s;
}

/* The setting of the element that path is on or is. */
static const cfg_setting_t *element_of(const cfg_setting_t *s)
{
    const char *at = strchr(s->path, '@');
    if (!at) return s;
    char elem[256];
    snprintf(elem, sizeof elem, "%.*s", (int)(at - s->path), s->path);
    return must_find(elem);
}

/* A broken table is a programming error: say so before anyone relies on it. */
static void check_table(void)
{
    char why[200];
    for (const cfg_setting_t *s = cfg_settings; s->path; s++) {
        if (s->dflt && check_value(s, s->dflt, why, sizeof why))
            log_fatal("settings.c: default of %s: %s", s->path, why);
        element_of(s);
    }
}

/* ---- parsing ----------------------------------------------------------- */

static void fail(struct parse *p, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(struct parse *p, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (p->err) return; /* the first error is the one to fix */
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t size = strlen(file) + strlen(msg) + 32;
    p->err = xrealloc(NULL, size);
    if (line > 0)
        snprintf(p->err, size, "%s:%d: %s", file, line, msg);
    else
        snprintf(p->err, size, "%s: %s", file, msg);
}

/* SAX: a DOCTYPE. Stop right there: no DTD, no entities. */
static void on_doctype(void *ctx, const xmlChar *name, const xmlChar *external_id,
                       const xmlChar *system_id)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct parse *p = ctxt->_private;
    p->dtd_line = ctxt->input ? ctxt->input->line : 1;
    if (p->dtd_line <= 0) p->dtd_line = 1;
    xmlStopParser(ctxt);
}

/* libxml2's structured errors: keep the first, which names the cause
 * (a later one may only be its consequence). */
static void on_xml_error(void *ctx, xmlErrorPtr e)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct parse *p = ctxt ? ctxt->_private : NULL;
    if (!p || !e || e->level < XML_ERR_ERROR || p->xml_err[0]) return;
    snprintf(p->xml_err, sizeof p->xml_err, "%s", e->message ? e->message : "not well-formed XML");
    size_t n = strlen(p->xml_err);
    while (n && xml_is_blank(p->xml_err[n - 1]))
        p->xml_err[--n] = '\0';
    if (!n) snprintf(p->xml_err, sizeof p->xml_err, "not well-formed XML");
    p->xml_err_line = e->line;
}

/* The qualified name of an element or attribute: prefix:name. */
static void qname(const xmlNs *ns, const xmlChar *name, char *out, size_t size)
{
    if (ns && ns->prefix)
        snprintf(out, size, "%s:%s", (const char *)ns->prefix, (const char *)name);
    else
        snprintf(out, size, "%s", (const char *)name);
}

/* After libxml2 reads a start tag, the input sits on its '>' (or "/>"): walk
 * back to its '<' for the element's line, then forward through the
 * attributes for theirs (kept in each xmlAttr's _private). Attribute values
 * hold no raw '<', so the first '<' going back is the tag's. */
static void note_lines(struct parse *p, xmlParserCtxtPtr ctxt, xmlNodePtr node)
{
    const xmlChar *base = ctxt->input->base, *cur = ctxt->input->cur, *lt = cur;
    int line = ctxt->input->line;
    while (lt > base && *lt != '<') {
        lt--;
        if (*lt == '\n') line--;
    }
    if (*lt != '<') line = ctxt->input->line;

    if (p->ninfo == p->info_cap) {
        p->info_cap = p->info_cap ? 2 * p->info_cap : 64;
        p->info = xrealloc(p->info, p->info_cap * sizeof *p->info);
    }
    p->info[p->ninfo] = (struct elem_info){line, 0};
    node->_private = (void *)(uintptr_t)++p->ninfo;
    if (*lt != '<') return;

    const xmlChar *q = lt + 1;
    int l = line;
    while (q < cur && !xml_is_blank(*q) && *q != '>' && *q != '/')
        q++;
    for (;;) {
        while (q < cur && xml_is_blank(*q))
            l += *q++ == '\n';
        if (q >= cur || *q == '>' || *q == '/') break;
        const xmlChar *name = q;
        while (q < cur && !xml_is_blank(*q) && *q != '=')
            q++;
        size_t name_len = (size_t)(q - name);
        for (xmlAttrPtr a = node->properties; a; a = a->next) {
            char qn[256];
            qname(a->ns, a->name, qn, sizeof qn);
            if (strlen(qn) == name_len && memcmp(qn, name, name_len) == 0)
                a->_private = (void *)(uintptr_t)l;
        }
        while (q < cur && *q != '"' && *q != '\'')
            l += *q++ == '\n';
        if (q >= cur) break;
        xmlChar quote = *q++;
        while (q < cur && *q != quote)
            l += *q++ == '\n';
        q++;
    }
}

static void on_start(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                     int nb_namespaces, const xmlChar **namespaces, int nb_attributes,
                     int nb_defaulted, const xmlChar **attributes)
{
    xmlParserCtxtPtr ctxt = ctx;
    xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes,
                          nb_defaulted, attributes);
    if (ctxt->node && ctxt->node->type == XML_ELEMENT_NODE && !ctxt->node->_private && ctxt->input)
        note_lines(ctxt->_private, ctxt, ctxt->node);
}

/* SAX: text. Note the line of the first non-blank text of each element:
 * the input has just passed it, so count back the newlines after it. */
static void on_text(void *ctx, const xmlChar *ch, int len)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct parse *p = ctxt->_private;
    xmlSAX2Characters(ctx, ch, len);
    xmlNodePtr node = ctxt->node;
    if (!node || !node->_private || !ctxt->input) return;
    struct elem_info *info = &p->info[(uintptr_t)node->_private - 1];
    if (info->text_line) return;
    int i = 0;
    while (i < len && xml_is_blank(ch[i]))
        i++;
    if (i == len) return;
    int line = ctxt->input->line;
    for (int k = i; k < len; k++)
        line -= ch[k] == '\n';
    info->text_line = line > 0 ? line : 1;
}

static int node_line(const struct parse *p, xmlNodePtr n)
{
    uintptr_t i = (uintptr_t)n->_private;
    return i ? p->info[i - 1].line : (int)xmlGetLineNo(n);
}

static int text_line(const struct parse *p, xmlNodePtr parent, xmlNodePtr text)
{
    uintptr_t i = (uintptr_t)parent->_private;
    if (i && p->info[i - 1].text_line) return p->info[i - 1].text_line;
    return (int)xmlGetLineNo(text);
}

static int add_item(config_t *c, const cfg_setting_t *s, char *value, int line, int parent,
                    bool is_attr)
{
    if (c->count == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 32;
        c->items = xrealloc(c->items, (size_t)c->cap * sizeof *c->items);
    }
    c->items[c->count] = (struct item){s, value, line, parent, is_attr};
    return c->count++;
}

/* The text of value element el, trimmed; NULL (with p->err) if it holds
 * anything but text and comments. */
static char *value_text(struct parse *p, const char *file, xmlNodePtr el, const char *path)
{
    size_t len = 0;
    char *v = xrealloc(NULL, 1);
    *v = '\0';
    for (xmlNodePtr n = el->children; n; n = n->next) {
        char name[256];
        switch (n->type) {
        case XML_TEXT_NODE:
        case XML_CDATA_SECTION_NODE: {
            size_t add = n->content ? strlen((const char *)n->content) : 0;
            v = xrealloc(v, len + add + 1);
            if (add) memcpy(v + len, n->content, add);
            v[len += add] = '\0';
            break;
        }
        case XML_COMMENT_NODE:
            break;
        case XML_ELEMENT_NODE:
            qname(n->ns, n->name, name, sizeof name);
            fail(p, file, node_line(p, n), "%s: a value cannot hold elements (found <%s>)", path,
                 name);
            free(v);
            return NULL;
        case XML_PI_NODE:
            fail(p, file, (int)xmlGetLineNo(n), "processing instructions are not allowed");
            free(v);
            return NULL;
        default:
            fail(p, file, (int)xmlGetLineNo(n), "%s: only text is allowed in a value", path);
            free(v);
            return NULL;
        }
    }
    size_t start = 0;
    while (start < len && xml_is_blank(v[start]))
        start++;
    while (len > start && xml_is_blank(v[len - 1]))
        len--;
    memmove(v, v + start, len - start);
    v[len - start] = '\0';
    return v;
}

/* Check and keep the attributes of el (item elem_item at path). */
static int walk_attributes(struct parse *p, const char *file, xmlNodePtr el, const char *path,
                           int elem_item)
{
    for (xmlAttrPtr a = el->properties; a; a = a->next) {
        char name[256], apath[512], why[200];
        int line = a->_private ? (int)(uintptr_t)a->_private : node_line(p, el);
        qname(a->ns, a->name, name, sizeof name);
        snprintf(apath, sizeof apath, "%s@%s", path, name);
        const cfg_setting_t *s = a->ns ? NULL : find_setting(apath);
        if (!s) {
            fail(p, file, line, "unknown setting %s", apath);
            return -1;
        }
        xmlChar *raw = xmlNodeListGetString(el->doc, a->children, 1);
        char *value = xstrdup(raw ? (const char *)raw : "");
        xmlFree(raw);
        const char *bad = check_value(s, value, why, sizeof why);
        if (bad) {
            fail(p, file, line, "%s: %s", apath, bad);
            free(value);
            return -1;
        }
        add_item(p->c, s, value, line, elem_item, true);
    }
    return 0;
}

/* Check and keep the children of section el (item elem_item, -1 for the
 * root), whose path is path ("" for the root). */
static int walk_section(struct parse *p, const char *file, xmlNodePtr el, const char *path,
                        int elem_item)
{
    config_t *c = p->c;
    for (xmlNodePtr n = el->children; n; n = n->next) {
        char name[256], child[512], why[200];
        int line;
        switch (n->type) {
        case XML_ELEMENT_NODE:
            break;
        case XML_TEXT_NODE:
        case XML_CDATA_SECTION_NODE:
            for (const xmlChar *t = n->content; t && *t; t++) {
                if (!xml_is_blank(*t)) {
                    fail(p, file, text_line(p, el, n), "%s: a section holds elements, not text",
                         *path ? path : "hearth");
                    return -1;
                }
            }
            continue;
        case XML_COMMENT_NODE:
            continue;
        case XML_PI_NODE:
            fail(p, file, (int)xmlGetLineNo(n), "processing instructions are not allowed");
            return -1;
        default:
            fail(p, file, (int)xmlGetLineNo(n), "%s: only elements are allowed in a section",
                 *path ? path : "hearth");
            return -1;
        }

        line = node_line(p, n);
        qname(n->ns, n->name, name, sizeof name);
        snprintf(child, sizeof child, "%s%s%s", path, *path ? "." : "", name);
        /* Names with '.' or '@' would alias other paths. */
        const cfg_setting_t *s = n->ns || strpbrk(name, ".@") ? NULL : find_setting(child);
        if (!s) {
            fail(p, file, line, "unknown setting %s", child);
            return -1;
        }
        if (!s->repeats) {
            for (int i = 0; i < c->count; i++) {
                const struct item *it = &c->items[i];
                if (!it->is_attr && it->setting == s && it->parent == elem_item) {
                    fail(p, file, line, "%s given twice (first on line %d)", child, it->line);
                    return -1;
                }
            }
        }
        int item = add_item(c, s, NULL, line, elem_item, false);
        if (walk_attributes(p, file, n, child, item) < 0) return -1;
        if (s->type == CFG_SECTION) {
            if (walk_section(p, file, n, child, item) < 0) return -1;
            continue;
        }
        char *value = value_text(p, file, n, child);
        if (!value) return -1;
        const char *bad = check_value(s, value, why, sizeof why);
        if (bad) {
            const struct elem_info *info =
                n->_private ? &p->info[(uintptr_t)n->_private - 1] : NULL;
            fail(p, file, info && info->text_line ? info->text_line : line, "%s: %s", child, bad);
            free(value);
            return -1;
        }
        c->items[item].value = value;
    }
    return 0;
}

static void set_err(char **err, char *msg)
{
    if (err)
        *err = msg;
    else
        free(msg);
}

config_t *config_parse(const char *name, const char *text, size_t len, char **err)
{
    struct parse p = {0};
    xmlParserCtxtPtr ctxt = NULL;
    xmlDocPtr doc = NULL;
    if (!name) name = "(config)";
    if (err) *err = NULL;
    check_table();

    p.c = xrealloc(NULL, sizeof *p.c);
    *p.c = (config_t){0};
    p.c->file = xstrdup(name);
    if (len > INT_MAX) {
        fail(&p, name, 0, "file too large");
        goto fail;
    }

    xmlInitParser();
    ctxt = xmlNewParserCtxt();
    if (!ctxt) log_fatal("config: out of memory");
    ctxt->_private = &p;
    ctxt->sax->internalSubset = on_doctype;
    ctxt->sax->startElementNs = on_start;
    ctxt->sax->characters = on_text;
    ctxt->sax->serror = on_xml_error;
    /* No XML_PARSE_NOENT (entities stay unexpanded), no DTD loading, no
     * network; CDATA becomes text; errors come back to us, not stderr. */
    doc = xmlCtxtReadMemory(ctxt, text, (int)len, name, NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                XML_PARSE_NOCDATA | XML_PARSE_BIG_LINES);
    if (p.dtd_line) {
        fail(&p, name, p.dtd_line, "DOCTYPE not allowed (no DTD, no entity declarations)");
        goto fail;
    }
    if (!doc || !ctxt->wellFormed) {
        fail(&p, name, p.xml_err_line, "%s", p.xml_err[0] ? p.xml_err : "not well-formed XML");
        goto fail;
    }

    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (!root) {
        fail(&p, name, 0, "no root element");
        goto fail;
    }
    if (root->ns || strcmp((const char *)root->name, "hearth") != 0) {
        char qn[256];
        qname(root->ns, root->name, qn, sizeof qn);
        fail(&p, name, node_line(&p, root), "the root element must be <hearth>, not <%s>", qn);
        goto fail;
    }
    for (xmlNodePtr n = doc->children; n; n = n->next) {
        if (n->type == XML_PI_NODE) {
            fail(&p, name, (int)xmlGetLineNo(n), "processing instructions are not allowed");
            goto fail;
        }
    }
    if (walk_attributes(&p, name, root, "", -1) < 0) goto fail;
    if (walk_section(&p, name, root, "", -1) < 0) goto fail;

    xmlFreeDoc(doc);
    xmlFreeParserCtxt(ctxt);
    free(p.info);
    return p.c;

fail:
    if (doc) xmlFreeDoc(doc);
    if (ctxt) xmlFreeParserCtxt(ctxt);
    free(p.info);
    config_free(p.c);
    set_err(err, p.err ? p.err : xstrdup("config: invalid"));
    return NULL;
}

config_t *config_load(const char *path, char **err)
{
    char msg[1024];
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, sizeof msg, "%s: cannot open: %s", path, strerror(errno));
        set_err(err, xstrdup(msg));
        return NULL;
    }
    size_t len = 0, cap = 8192;
    char *text = xrealloc(NULL, cap);
    for (;;) {
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (len > CONFIG_FILE_MAX) {
            snprintf(msg, sizeof msg, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
            goto fail;
        }
        if (n == 0) break;
        if (len == cap) text = xrealloc(text, cap *= 2);
    }
    if (ferror(f)) {
        snprintf(msg, sizeof msg, "%s: cannot read: %s", path, strerror(errno));
        goto fail;
    }
    fclose(f);
    config_t *c = config_parse(path, text, len, err);
    free(text);
    return c;
fail:
    fclose(f);
    free(text);
    set_err(err, xstrdup(msg));
    return NULL;
}

void config_free(config_t *c)
{
    if (!c) return;
    for (int i = 0; i < c->count; i++)
        free(c->items[i].value);
    free(c->items);
    free(c->file);
    free(c);
}

/* ---- lookups ----------------------------------------------------------- */

const char *config_sqlite_file(const config_t *c, char *buf, size_t size)
{
    const char *file = config_get(c, "storage.sqlite");
    if (file && *file) return file;
    snprintf(buf, size, "%s/hearth.sqlite", config_get(c, "statedir"));
    return buf;
}

const char *config_get(const config_t *c, const char *path)
{
    const cfg_setting_t *s = must_find(path);
    for (int i = 0; i < c->count; i++)
        if (c->items[i].setting == s && c->items[i].value) return c->items[i].value;
    return s->dflt;
}

/* Index of the i-th element of setting e, or -1. */
static int nth_element(const config_t *c, const cfg_setting_t *e, int i)
{
    for (int k = 0; k < c->count; k++)
        if (c->items[k].setting == e && !c->items[k].is_attr && i-- == 0) return k;
    return -1;
}

int config_count(const config_t *c, const char *path)
{
    const cfg_setting_t *e = element_of(must_find(path));
    int n = 0;
    for (int k = 0; k < c->count; k++)
        n += c->items[k].setting == e && !c->items[k].is_attr;
    return n;
}

const char *config_get_at(const config_t *c, const char *path, int i)
{
    const cfg_setting_t *s = must_find(path), *e = element_of(s);
    int el = i >= 0 ? nth_element(c, e, i) : -1;
    if (el < 0) return NULL;
    if (s == e) return c->items[el].value ? c->items[el].value : s->dflt;
    for (int k = el + 1; k < c->count; k++) {
        const struct item *it = &c->items[k];
        if (it->is_attr && it->parent == el && it->setting == s) return it->value;
    }
    return s->dflt;
}

static const cfg_setting_t *typed(const char *path, cfg_type_t type, const char *fn)
{
    const cfg_setting_t *s = must_find(path);
    if (s->type != type) log_fatal("config: %s on %s, which is not of that type", fn, path);
    return s;
}

long long config_int(const config_t *c, const char *path)
{
    typed(path, CFG_INT, "config_int");
    const char *v = config_get(c, path);
    long long n = 0;
    if (v && !parse_int(v, &n)) log_fatal("config: %s: bad integer '%s'", path, v);
    return n;
}

bool config_bool(const config_t *c, const char *path)
{
    typed(path, CFG_BOOL, "config_bool");
    const char *v = config_get(c, path);
    bool b = false;
    if (v && !parse_bool(v, &b)) log_fatal("config: %s: bad boolean '%s'", path, v);
    return b;
}

unsigned long long config_size(const config_t *c, const char *path)
{
    typed(path, CFG_SIZE, "config_size");
    const char *v = config_get(c, path);
    unsigned long long n = 0;
    if (v && !parse_size(v, &n)) log_fatal("config: %s: bad size '%s'", path, v);
    return n;
}

unsigned long long config_ms(const config_t *c, const char *path)
{
    typed(path, CFG_DURATION, "config_ms");
    const char *v = config_get(c, path);
    unsigned long long n = 0;
    if (v && !parse_duration(v, &n)) log_fatal("config: %s: bad duration '%s'", path, v);
    return n;
}

const char *config_file(const config_t *c)
{
    return c->file;
}

/* ---- secrets ----------------------------------------------------------- */

#define SECRET_FILE_MAX 4096

/* The first line of a secret file, without its line end. */
static char *read_secret_file(const char *path, char **err)
{
    char msg[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(msg, sizeof msg, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        set_err(err, xstrdup(msg));
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > SECRET_FILE_MAX) {
        close(fd);
        snprintf(msg, sizeof msg, "%s: not a regular file of at most %d bytes", path,
                 SECRET_FILE_MAX);
        set_err(err, xstrdup(msg));
        return NULL;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        log_warn("%s: a secret readable by group or others (chmod 600 it)", path);
    char buf[SECRET_FILE_MAX + 1];
    ssize_t n = read(fd, buf, SECRET_FILE_MAX);
    close(fd);
    if (n < 0) {
        snprintf(msg, sizeof msg, "%s: cannot read: %s", path, strerror(errno));
        set_err(err, xstrdup(msg));
        return NULL;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!buf[0]) {
        snprintf(msg, sizeof msg, "%s: empty", path);
        set_err(err, xstrdup(msg));
        return NULL;
    }
    char *secret = xstrdup(buf);
    explicit_bzero(buf, sizeof buf);
    return secret;
}

char *config_secret(const config_t *c, const char *path, const char *file_path, int i, char **err)
{
    if (err) *err = NULL;
    const char *inline_value = i >= 0 ? config_get_at(c, path, i) : config_get(c, path);
    const char *file = i >= 0 ? config_get_at(c, file_path, i) : config_get(c, file_path);
    if (file && *file) {
        if (inline_value && *inline_value) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s: both %s and %s are set", c->file, path, file_path);
            set_err(err, xstrdup(msg));
            return NULL;
        }
        return read_secret_file(file, err);
    }
    return inline_value && *inline_value ? xstrdup(inline_value) : NULL;
}

char *config_secret_file(const char *file, char **err)
{
    if (err) *err = NULL;
    return read_secret_file(file, err);
}
