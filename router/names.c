/* names.c — the router's name table: who bound which name.
 *
 * A name maps to one link, or for shard='user' to several, of which
 * names_pick() chooses one by rendezvous hashing of the route's user: the
 * link with the highest hash(user, link identity) wins, so a user always
 * reaches the same sm, and adding or removing one sm moves only the users
 * whose winner it is. A shard whose link dies (killed, restarting) keeps
 * its place for router.shard-grace: its users' packets come back to their
 * senders as not-found rather than reaching another shard that does not
 * have their sessions, and the senders keep them until it is back (it
 * binds its own name, sm-N, too, whose advert tells them so). One that
 * does not come back in time is forgotten, and its users move on. Binding and releasing names is advertised to every
 * native link as <presence from='NAME'/> (or type='unavailable'). It does
 * not move packets; route.c does. */
#include <stdlib.h>
#include <string.h>

#include "router.h"

uint64_t names_hash(const char *s, size_t len)
{
    /* FNV-1a, then a final mix so nearby strings spread over the table. */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void names_init(router_t *r)
{
    r->nbuckets = 64;
    r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
    if (!r->buckets) log_fatal("out of memory");
}

void names_free(router_t *r)
{
    for (size_t i = 0; i < r->nbuckets; i++) {
        name_t *n = r->buckets[i], *next;
        for (; n; n = next) {
            next = n->next;
            free(n->links);
            free(n->name);
            free(n);
        }
    }
    free(r->buckets);
    r->buckets = NULL;
}

name_t *names_find(router_t *r, const char *name)
{
    size_t len = strlen(name);
    name_t *n = r->buckets[names_hash(name, len) & (r->nbuckets - 1)];
    for (; n; n = n->next)
        if (strcmp(n->name, name) == 0) return n;
    return NULL;
}

static void grow_table(router_t *r)
{
    size_t nb = r->nbuckets * 2;
    name_t **b = calloc(nb, sizeof(*b));
    if (!b) log_fatal("out of memory");
    for (size_t i = 0; i < r->nbuckets; i++) {
        name_t *n = r->buckets[i], *next;
        for (; n; n = next) {
            next = n->next;
            size_t at = names_hash(n->name, strlen(n->name)) & (nb - 1);
            n->next = b[at];
            b[at] = n;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = nb;
}

/* Send <presence from='name' [type='unavailable']/> to every ready native
 * link but `except`. */
static void advertise(router_t *r, const char *name, bool available, link_t *only)
{
    buf_t *b = &r->scratch;
    buf_reset(b);
    buf_appends(b, "<presence from='");
    xml_escape(b, name, strlen(name), true);
    buf_appends(b, available ? "'/>" : "' type='unavailable'/>");
    if (only) {
        conn_write(only->conn, b->data, b->len);
        return;
    }
    rbuf_t *shared = NULL;
    for (link_t *l = r->links; l; l = l->next) {
        if (l->state != LINK_READY || l->is_external) continue;
        if (!shared) shared = rbuf_new(b->data, b->len);
        conn_write_rbuf(l->conn, shared);
        link_check_queue(l);
    }
    if (shared) rbuf_unref(shared);
}

void names_advertise_all(router_t *r, link_t *to)
{
    for (size_t i = 0; i < r->nbuckets; i++)
        for (name_t *n = r->buckets[i]; n; n = n->next)
            advertise(r, n->name, true, to);
}

static bool link_has(const name_t *n, const link_t *l)
{
    for (int i = 0; i < n->nlinks; i++)
        if (n->links[i] == l) return true;
    return false;
}

int names_bind(router_t *r, link_t *l, const char *name, bool is_shard, bool is_default,
               const char **error)
{
    name_t *n = names_find(r, name);
    if (n) {
        /* Only a shard name takes more links, and only shard binds. */
        if (!n->is_shard || !is_shard || link_has(n, l) || is_default) {
            *error = "conflict";
            return -1;
        }
    } else {
        if (is_default && r->default_route) {
            *error = "conflict";
            return -1;
        }
        n = calloc(1, sizeof(*n));
        if (!n || !(n->name = strdup(name))) log_fatal("out of memory");
        n->is_shard = is_shard;
        n->is_default = is_default;
        if (r->nnames + 1 > r->nbuckets) grow_table(r);
        size_t at = names_hash(name, strlen(name)) & (r->nbuckets - 1);
        n->next = r->buckets[at];
        r->buckets[at] = n;
        r->nnames++;
        if (is_default) r->default_route = n;
    }
    if (n->nlinks == n->cap) {
        n->cap = n->cap ? n->cap * 2 : 1;
        n->links = realloc(n->links, n->cap * sizeof(*n->links));
        if (!n->links) log_fatal("out of memory");
    }
    n->links[n->nlinks++] = l;
    for (int i = 0; i < n->ntombs; i++)
        if (n->tombs[i].key == l->shard_key) n->tombs[i--] = n->tombs[--n->ntombs];

    link_name_t *ln = malloc(sizeof(*ln));
    if (!ln) log_fatal("out of memory");
    ln->name = n;
    ln->next = l->names;
    l->names = ln;

    log_info("%s bound %s%s%s", l->id, name, is_shard ? " (shard)" : "",
             is_default ? " (default route)" : "");
    if (n->nlinks == 1) advertise(r, name, true, NULL);
    return 0;
}

/* Take l out of n; drop n when no link is left. */
static void release(router_t *r, name_t *n, link_t *l, bool is_death)
{
    for (int i = 0; i < n->nlinks; i++) {
        if (n->links[i] != l) continue;
        n->links[i] = n->links[--n->nlinks];
        break;
    }
    log_info("%s released %s", l->id, n->name);
    if (n->nlinks > 0) {
        if (is_death && n->is_shard && r->shard_grace && !r->is_stopping) {
            tomb_t *t = realloc(n->tombs, (size_t)(n->ntombs + 1) * sizeof(*t));
            if (!t) log_fatal("out of memory");
            n->tombs = t;
            n->tombs[n->ntombs++] = (tomb_t){l->shard_key, uv_now(r->loop) + r->shard_grace};
            log_notice("%s: the shard %s keeps its place for %llu s", n->name, l->id,
                       (unsigned long long)(r->shard_grace / 1000));
        }
        return;
    }

    size_t at = names_hash(n->name, strlen(n->name)) & (r->nbuckets - 1);
    for (name_t **p = &r->buckets[at]; *p; p = &(*p)->next) {
        if (*p != n) continue;
        *p = n->next;
        break;
    }
    r->nnames--;
    if (r->default_route == n) r->default_route = NULL;
    if (!r->is_stopping) advertise(r, n->name, false, NULL);
    free(n->tombs);
    free(n->links);
    free(n->name);
    free(n);
}

int names_unbind(router_t *r, link_t *l, const char *name)
{
    for (link_name_t **p = &l->names; *p; p = &(*p)->next) {
        link_name_t *ln = *p;
        if (strcmp(ln->name->name, name) != 0) continue;
        *p = ln->next;
        release(r, ln->name, l, false);
        free(ln);
        return 0;
    }
    return -1;
}

void names_unbind_all(router_t *r, link_t *l)
{
    while (l->names) {
        link_name_t *ln = l->names;
        l->names = ln->next;
        release(r, ln->name, l, true);
        free(ln);
    }
}

/* The score of a (user, shard) pair: the user's and the shard's hashes
 * combined, then mixed, independent of the other shards. */
static uint64_t score(uint64_t uh, uint64_t key)
{
    uint64_t x = uh ^ key;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

link_t *names_pick(const router_t *r, name_t *n, const char *user)
{
    if (!n->is_shard || (n->nlinks == 1 && n->ntombs == 0)) return n->links[0];
    uint64_t uh = user ? names_hash(user, strlen(user)) : 0;
    link_t *best = NULL;
    uint64_t best_score = 0;
    for (int i = 0; i < n->nlinks; i++) {
        uint64_t x = score(uh, n->links[i]->shard_key);
        if (!best || x > best_score) {
            best = n->links[i];
            best_score = x;
        }
    }
    uint64_t now = uv_now(r->loop);
    for (int i = 0; i < n->ntombs;) {
        if (n->tombs[i].until <= now) { /* not back in time: forgotten */
            n->tombs[i] = n->tombs[--n->ntombs];
            continue;
        }
        if (score(uh, n->tombs[i].key) > best_score) return NULL;
        i++;
    }
    return best;
}
