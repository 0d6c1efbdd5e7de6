/* account.c — the router's accounts and what each may bind.
 *
 * Every native link logs in with an account, and the account's role
 * (DESIGN.md, "The component protocol"; docs/security.md) fixes the names
 * it may bind:
 *
 *   c2s        c2s-*                     its instance ids
 *   sm         each local domain, only with shard='user'; sm, sm-*  its id
 *   s2s        s2s, and only it may hold the default route
 *   resolver   resolver
 *   admin      hearthctl-*               one name per hearthctl run
 *   component  the names of its <component bind='…'/> (patterns with *),
 *              never a name reserved above
 *
 * A third-party XEP-0114 component is a component of its one domain. Any
 * other bind is refused with not-allowed, so a component cannot take a
 * daemon's name, and route.c marks every route with its sender's role so
 * receivers can tell a daemon from a component.
 *
 * Older configs have one shared account (router.user / router.password)
 * for every daemon. It keeps working, with a warning: a link of that
 * account takes the first-party role its first bind calls for (a c2s-* name
 * makes it c2s, a local domain as shard sm, the default route s2s, ...),
 * or component for any other name, and is then held to that role. */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

#define SCRAM_ITERATIONS 4096

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) log_fatal("out of memory");
    return d;
}

static account_t *add_account(router_t *r, const char *name, comp_role_t role, const char *password)
{
    for (int i = 0; i < r->naccounts; i++)
        if (strcmp(r->accounts[i].name, name) == 0)
            log_fatal("router: two accounts named %s", name);
    r->accounts = realloc(r->accounts, (size_t)(r->naccounts + 1) * sizeof(*r->accounts));
    if (!r->accounts) log_fatal("out of memory");
    account_t *a = &r->accounts[r->naccounts++];
    memset(a, 0, sizeof *a);
    a->name = xstrdup(name);
    a->role = role;
    if (scram_keys_make("SHA-256", password, NULL, SCRAM_ITERATIONS, &a->keys) < 0)
        log_fatal("router account %s: unusable password", name);
    return a;
}

/* The secret at path / file_path of the i-th element (-1: not repeated). */
static char *secret(const config_t *c, const char *path, const char *file_path, int i,
                    const char *what)
{
    char *err = NULL;
    char *s = config_secret(c, path, file_path, i, &err);
    if (!s) log_fatal("%s: %s: %s", config_file(c), what, err ? err : "no secret given");
    return s;
}

static void wipe(char *s)
{
    explicit_bzero(s, strlen(s));
    free(s);
}

static void add_patterns(account_t *a, const char *list)
{
    char *copy = xstrdup(list ? list : ""), *save = NULL;
    for (char *p = strtok_r(copy, " \t\r\n", &save); p; p = strtok_r(NULL, " \t\r\n", &save)) {
        a->patterns = realloc(a->patterns, (size_t)(a->npatterns + 1) * sizeof(char *));
        if (!a->patterns) log_fatal("out of memory");
        a->patterns[a->npatterns++] = xstrdup(p);
    }
    free(copy);
}

void accounts_load(router_t *r, const config_t *c)
{
    int n = config_count(c, "domain");
    r->ndomains = n > 0 ? n : 1;
    r->domains = calloc((size_t)r->ndomains, sizeof(*r->domains));
    if (!r->domains) log_fatal("out of memory");
    for (int i = 0; i < r->ndomains; i++) {
        const char *d = n > 0 ? config_get_at(c, "domain", i) : config_get(c, "domain");
        char prepped[JID_STRING_MAX];
        if (!d || jid_prep(d, strlen(d), prepped, NULL) < 0)
            log_fatal("%s: domain '%s' is not a valid domain", config_file(c), d ? d : "");
        r->domains[i] = xstrdup(prepped);
    }

    for (int i = 0; i < config_count(c, "router.account"); i++) {
        const char *role = config_get_at(c, "router.account@role", i);
        const char *name = config_get_at(c, "router.account@name", i);
        if (!role) log_fatal("%s: router/account needs a role", config_file(c));
        if (!name || !*name) name = role;
        char *pw = secret(c, "router.account@password", "router.account@password-file", i, name);
        add_account(r, name, comp_role_of(role), pw);
        wipe(pw);
    }
    for (int i = 0; i < config_count(c, "router.component"); i++) {
        const char *name = config_get_at(c, "router.component@name", i);
        if (!name || !*name) log_fatal("%s: router/component needs a name", config_file(c));
        char *pw =
            secret(c, "router.component@password", "router.component@password-file", i, name);
        account_t *a = add_account(r, name, ROLE_COMPONENT, pw);
        wipe(pw);
        add_patterns(a, config_get_at(c, "router.component@bind", i));
        if (a->npatterns == 0)
            log_warn("router component %s has no bind names: it can bind nothing", name);
    }
    const char *shared = config_get(c, "router.password");
    if (shared && *shared) {
        account_t *a = add_account(r, config_get(c, "router.user"), ROLE_NONE, shared);
        a->is_shared = true;
        log_warn("router.password: one account (%s) for every daemon, so any of them, or anyone "
                 "with the password, can act as any other; give each daemon its own "
                 "router/account (docs/security.md)",
                 a->name);
    }
    if (r->naccounts == 0)
        log_fatal("%s: no router accounts (router/account, one per daemon)", config_file(c));

    n = config_count(c, "router.external");
    r->externals = calloc(n > 0 ? (size_t)n : 1, sizeof(*r->externals));
    if (!r->externals) log_fatal("out of memory");
    for (int i = 0; i < n; i++) {
        const char *name = config_get_at(c, "router.external@name", i);
        if (!name || !*name) log_fatal("%s: router/external needs a name", config_file(c));
        if (accounts_is_reserved(r, name))
            log_fatal("%s: router/external %s: a name of the Hearth daemons or a local domain",
                      config_file(c), name);
        r->externals[i].name = xstrdup(name);
        r->externals[i].secret =
            secret(c, "router.external@secret", "router.external@secret-file", i, name);
    }
    r->nexternals = n;
}

void accounts_free(router_t *r)
{
    for (int i = 0; i < r->naccounts; i++) {
        account_t *a = &r->accounts[i];
        for (int k = 0; k < a->npatterns; k++)
            free(a->patterns[k]);
        free(a->patterns);
        free(a->name);
        explicit_bzero(&a->keys, sizeof a->keys);
    }
    free(r->accounts);
    for (int i = 0; i < r->nexternals; i++) {
        free(r->externals[i].name);
        wipe(r->externals[i].secret);
    }
    free(r->externals);
    for (int i = 0; i < r->ndomains; i++)
        free(r->domains[i]);
    free(r->domains);
}

const account_t *accounts_find(const router_t *r, const char *name)
{
    for (int i = 0; i < r->naccounts; i++)
        if (strcmp(r->accounts[i].name, name) == 0) return &r->accounts[i];
    return NULL;
}

static bool is_local_domain(const router_t *r, const char *name)
{
    for (int i = 0; i < r->ndomains; i++)
        if (strcmp(r->domains[i], name) == 0) return true;
    return false;
}

static bool matches(const char *pattern, const char *name)
{
    return fnmatch(pattern, name, FNM_NOESCAPE) == 0;
}

/* May a link of role bind name so? (component: its own patterns.) */
static bool role_may_bind(const router_t *r, comp_role_t role, const account_t *a, const char *name,
                          bool is_shard, bool is_default)
{
    if (is_default != (role == ROLE_S2S)) return false;
    switch (role) {
    case ROLE_C2S:
        return !is_shard && matches("c2s-*", name);
    case ROLE_SM:
        return is_shard ? is_local_domain(r, name) : strcmp(name, "sm") == 0 || matches("sm-*", name);
    case ROLE_S2S:
        return !is_shard && strcmp(name, "s2s") == 0;
    case ROLE_RESOLVER:
        return !is_shard && strcmp(name, "resolver") == 0;
    case ROLE_ADMIN:
        return !is_shard && matches("hearthctl-*", name);
    case ROLE_COMPONENT:
        if (accounts_is_reserved(r, name)) return false;
        if (a->is_shared) return true;
        for (int i = 0; i < a->npatterns; i++)
            if (matches(a->patterns[i], name)) return true;
        return false;
    default:
        return false;
    }
}

bool accounts_is_reserved(const router_t *r, const char *name)
{
    return is_local_domain(r, name) || matches("c2s-*", name) || strcmp(name, "sm") == 0 ||
           matches("sm-*", name) || strcmp(name, "s2s") == 0 ||
           strcmp(name, "resolver") == 0 || matches("hearthctl-*", name) ||
           strcmp(name, "router") == 0;
}

bool accounts_may_bind(const router_t *r, link_t *l, const char *name, bool is_shard,
                       bool is_default)
{
    if (l->is_external) return false; /* its one domain, bound at the handshake */
    if (l->role != ROLE_NONE)
        return role_may_bind(r, l->role, l->account, name, is_shard, is_default);
    if (!l->account || !l->account->is_shared) return false;
    /* The shared account of older configs: the first bind picks the role. */
    static const comp_role_t first_party[] = {ROLE_C2S,      ROLE_SM,    ROLE_S2S,
                                              ROLE_RESOLVER, ROLE_ADMIN, ROLE_COMPONENT};
    for (size_t i = 0; i < sizeof first_party / sizeof *first_party; i++) {
        if (!role_may_bind(r, first_party[i], l->account, name, is_shard, is_default)) continue;
        link_set_role(l, first_party[i]);
        return true;
    }
    return false;
}
