/* ctl_pie_check.c — one XEP-0227 <user/> checked and turned into the
 * statements of its import transaction: the keys, the roster and the
 * requests, the vCard, private XML storage, offline messages and the
 * block list, each against the limit the sm enforces on what a client
 * stores. The first thing wrong refuses the whole user, with its reason. */
#include <ctype.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <time.h>

#include "ctl_pie.h"

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

/* A new last element of *v (n of cap used), uninitialized. */
static contact_t *contact_add(contact_t **v, int *n, int *cap)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        contact_t *grown = realloc(*v, (size_t)*cap * sizeof **v);
        if (!grown) log_fatal("out of memory");
        *v = grown;
    }
    return &(*v)[(*n)++];
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
        if (pie_is(sub, "remove")) continue;
        if (!jid)
            why = arena_strdup(p->arena, "a roster item has no valid jid");
        else if (!pie_is(sub, "none") && !pie_is(sub, "to") && !pie_is(sub, "from") &&
                 !pie_is(sub, "both"))
            why = "a roster item's subscription is not none, to, from or both";
        else if (contact_find(v, n, jid))
            why = "a contact is twice in the roster";
        else if (n == max)
            why = "more contacts than sm.roster-max";
        if (why) break;
        contact_t *c = contact_add(&v, &n, &cap);
        *c = (contact_t){jid,
                         elem_attr(it, "name"),
                         sub,
                         NULL,
                         pie_is(elem_attr(it, "ask"), "subscribe"),
                         pie_is(elem_attr(it, "approved"), "true") ||
                             pie_is(elem_attr(it, "approved"), "1"),
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
        if (!pie_is(elem_attr(pr, "type"), "subscribe")) continue;
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
            c = contact_add(&v, &n, &cap);
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
    if (!why) {
        /* XEP-0237: a version the old server never gave, so that no
         * client's cached roster passes for this one. */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        char version[24];
        snprintf(version, sizeof version, "%lld",
                 (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
        stmt_add(p, "INSERT INTO roster_version (owner, version) VALUES ($1, CAST($2 AS BIGINT))",
                 2, p->owner, version);
    }
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
        if (!*e->ns || pie_is(e->ns, NS_CLIENT) || pie_is(e->ns, "jabber:server") ||
            pie_is(e->ns, NS_PRIVATE))
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
            if (pie_is(mech, "SCRAM-SHA-1"))
                why = scram_of(c, &keys.sha1, 20), has1 = !why;
            else if (pie_is(mech, "SCRAM-SHA-256"))
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
                        elem_is(e, NS_BLOCKING, "blocklist") ||
                        pie_is(e->name, "offline-messages") || pie_is(e->name, "password");
        if (!is_known)
            fprintf(stderr, "hearthctl: %s: <%s xmlns='%s'> is not imported (unknown here)\n",
                    p->owner, e->name, e->ns);
    }
}

/* A user's statements into p->stmts; NULL, or why the user is refused. */
const char *pie_check_user(pie_t *p, const elem_t *user)
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
