/* ctl_check.c — hearthctl check: examine an installation from its
 * hearth.xml, before or while it runs, and say what is wrong and what to
 * do about it.
 *
 *   hearthctl [-c FILE] check [--no-dns] [--no-ports]
 *
 * In order: the config (it loads, with the loader's file:line message
 * when not, and holds nothing a daemon refuses at start), the router
 * accounts (one per role a daemon needs, each with a password; the shared
 * legacy router.password; components' and external components'
 * secrets), the certificates (ctl_check_tls.c), DNS and the ports
 * (ctl_check_net.c), the store (it opens, and its schema is this build's:
 * storage_schema_version, which neither migrates nor creates it) and the
 * modes of the files that hold secrets. Each finding is a line on standard
 * output, `error: ...` or `warning: ...` with its remedy after " — ", or
 * `note: ...` for what is fine but worth knowing (a default certificate
 * the daemons will make); the last line is `N errors, N warnings`. Exit
 * status 0 without errors (warnings allowed), 1 with any, 2 on a usage
 * error.
 *
 * It reads only, and stays the user it was started as: as root it can
 * read every key and secret the daemons read before they drop privileges.
 * Nothing here runs on a loop: it is a command, and may wait (DNS, a
 * PostgreSQL connection). */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_check.h"
#include "storage.h"

#define ROUTER_ROLES "c2s sm s2s resolver admin"

/* ---- findings ------------------------------------------------------------- */

static void say(const char *kind, const char *fmt, va_list ap)
{
    printf("%s: ", kind);
    vprintf(fmt, ap);
    putchar('\n');
}

void check_error(check_t *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say("error", fmt, ap);
    va_end(ap);
    k->errors++;
}

void check_warning(check_t *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say("warning", fmt, ap);
    va_end(ap);
    k->warnings++;
}

void check_note(check_t *k, const char *fmt, ...)
{
    (void)k;
    va_list ap;
    va_start(ap, fmt);
    say("note", fmt, ap);
    va_end(ap);
}

bool check_runs(const check_t *k, const char *daemon)
{
    int n = config_count(k->config, "supervisor.daemon");
    for (int i = 0; i < n; i++) {
        const char *d = config_get_at(k->config, "supervisor.daemon", i);
        if (d && strcmp(d, daemon) == 0) return true;
    }
    return n == 0;
}

/* ---- the config: what the daemons refuse at start ------------------------ */

/* A domain as the daemons prepare it into prepared; false if they refuse it. */
static bool prepare_domain(const char *d, char prepared[JID_STRING_MAX], const char **why)
{
    *why = NULL;
    return d && *d && jid_prep(d, strlen(d), prepared, why) == 0 && !strchr(prepared, '@') &&
           !strchr(prepared, '/');
}

static void load_domains(check_t *k)
{
    int n = config_count(k->config, "domain");
    k->domains = calloc(n > 0 ? (size_t)n : 1, sizeof(char *));
    if (!k->domains) log_fatal("out of memory");
    for (int i = 0; i < (n > 0 ? n : 1); i++) {
        const char *d =
            n > 0 ? config_get_at(k->config, "domain", i) : config_get(k->config, "domain");
        char prepared[JID_STRING_MAX];
        const char *why = NULL;
        if (!prepare_domain(d, prepared, &why)) {
            check_error(k,
                        "domain '%s' is not a valid domain%s%s — every daemon refuses to start: "
                        "fix <domain> in %s",
                        d ? d : "", why ? ": " : "", why ? why : "", config_file(k->config));
            continue;
        }
        if (!(k->domains[k->ndomains++] = strdup(prepared))) log_fatal("out of memory");
    }
}

/* Every repetition of a domain attribute (s2s/route, s2s/peer, ...) is one. */
static void check_domain_attrs(check_t *k, const char *path, const char *element)
{
    for (int i = 0; i < config_count(k->config, path); i++) {
        const char *d = config_get_at(k->config, path, i);
        char prepared[JID_STRING_MAX];
        const char *why = NULL;
        if (!prepare_domain(d, prepared, &why))
            check_error(k,
                        "%s domain '%s' is not a valid domain — the daemon refuses to start: "
                        "fix it in %s",
                        element, d ? d : "", config_file(k->config));
    }
}

static void check_limits(check_t *k)
{
    const config_t *c = k->config;
    if (config_size(c, "c2s.max-queue") < config_size(c, "c2s.max-stanza"))
        check_error(k,
                    "c2s.max-queue (%llu) is below c2s.max-stanza (%llu) — the c2s refuses to "
                    "start: raise c2s/max-queue",
                    config_size(c, "c2s.max-queue"), config_size(c, "c2s.max-stanza"));
    if (config_size(c, "router.max-queue") < config_size(c, "router.write-limit"))
        check_error(k, "router.max-queue is below router.write-limit — the router refuses to "
                       "start: raise router/max-queue");
    bool has_listener = false;
    const char *paths[] = {"c2s.listen", "c2s.listen-tls"};
    for (int p = 0; p < 2; p++) {
        int n = config_count(c, paths[p]);
        for (int i = 0; i < (n ? n : 1); i++) {
            const char *a = n ? config_get_at(c, paths[p], i) : config_get(c, paths[p]);
            has_listener |= a && *a;
        }
    }
    if (!has_listener && check_runs(k, "c2s"))
        check_error(k, "c2s.listen and c2s.listen-tls are all empty — the c2s refuses to start: "
                       "give it an address");
    const char *cert = config_get(c, "router.tls@cert"), *key = config_get(c, "router.tls@key");
    if (config_bool(c, "router.require-tls") && !cert && !key)
        check_error(k, "router.require-tls is on without router/tls — the router refuses to "
                       "start: add <tls cert=\"...\" key=\"...\"/> to <router>");
    for (int i = 0; i < config_count(c, "s2s.route"); i++) {
        const char *t = config_get_at(c, "s2s.route@target", i);
        if (!t || !*t)
            check_error(k, "an s2s/route has no target — the s2s refuses to start: give it "
                           "target=\"IP:port\"");
    }
    for (int i = 0; i < config_count(c, "s2s.peer"); i++)
        if (!config_get_at(c, "s2s.peer@auth", i))
            check_error(k, "an s2s/peer has no auth — the s2s refuses to start: give it "
                           "auth=\"certificate|dialback|block\"");
    for (int i = 0; i < config_count(c, "resolver.override"); i++)
        if (!config_get_at(c, "resolver.override@domain", i) ||
            !config_get_at(c, "resolver.override@target", i))
            check_error(k, "a resolver/override lacks its domain or target — the resolver refuses "
                           "to start: give it both");
    check_domain_attrs(k, "s2s.certificate@domain", "s2s/certificate");
    check_domain_attrs(k, "s2s.route@domain", "s2s/route");
    check_domain_attrs(k, "s2s.peer@domain", "s2s/peer");
}

/* Started as root, the daemons become <user>, which must exist. */
static void check_user(check_t *k)
{
    const char *user = config_get(k->config, "user");
    struct passwd *pw = user && *user ? getpwnam(user) : NULL;
    if (pw && pw->pw_uid == 0)
        check_warning(k,
                      "<user> is %s: the daemons keep root, and a flaw in one gives the whole "
                      "system away — create an account (adduser --system --group "
                      "--no-create-home hearth) and name it in <user>",
                      user);
    else if (!pw && geteuid() == 0)
        check_error(k,
                    "the account %s to run as does not exist: the daemons, started as root, "
                    "refuse to start — create it (adduser --system --group --no-create-home %s), "
                    "or set <user>root</user> to run as root on purpose",
                    user ? user : "", user ? user : "hearth");
}

/* ---- router accounts ------------------------------------------------------ */

/* A secret file: closed to group and others, as config_secret wants. */
static void check_secret_mode(check_t *k, const char *file)
{
    struct stat st;
    if (!file || !*file || stat(file, &st) < 0 || !(st.st_mode & (S_IRWXG | S_IRWXO))) return;
    check_warning(k, "secret file %s is readable by group or others (mode %04o) — chmod 600 %s",
                  file, (unsigned)(st.st_mode & 07777), file);
}

/* The secret of the i-th element (i -1: not repeated) is there. */
static bool check_secret(check_t *k, const char *what, const char *path, const char *file_path,
                         int i, const char *remedy)
{
    char *err = NULL;
    char *secret = config_secret(k->config, path, file_path, i, &err);
    const char *file =
        i >= 0 ? config_get_at(k->config, file_path, i) : config_get(k->config, file_path);
    if (secret) {
        explicit_bzero(secret, strlen(secret));
        free(secret);
        check_secret_mode(k, file);
        return true;
    }
    const char *value = i >= 0 ? config_get_at(k->config, path, i) : config_get(k->config, path);
    if (err)
        check_error(k, "%s: %s — %s", what, err,
                    value && *value && file && *file
                        ? "set only one of the two"
                        : "put the secret on the file's first line (chmod 600 it), or fix the "
                          "file name");
    else if (remedy)
        check_error(k, "%s has no secret — %s", what, remedy);
    free(err);
    return false;
}

static void check_accounts(check_t *k)
{
    const config_t *c = k->config;
    const char *shared = config_get(c, "router.password");
    bool has_shared = shared && *shared;
    char names[64][128];
    int nnames = 0;
    for (int i = 0; i < config_count(c, "router.account"); i++) {
        const char *role = config_get_at(c, "router.account@role", i);
        const char *name = config_get_at(c, "router.account@name", i);
        if (!role) {
            check_error(k, "a router/account has no role — the router refuses to start: give it "
                           "role=\"" ROUTER_ROLES "\" (one of them)");
            continue;
        }
        if (!name || !*name) name = role;
        for (int j = 0; j < nnames; j++)
            if (strcmp(names[j], name) == 0)
                check_error(k,
                            "two router accounts are named %s — the router refuses to start: "
                            "give each its own name",
                            name);
        if (nnames < 64) snprintf(names[nnames++], sizeof names[0], "%s", name);
        char what[160];
        snprintf(what, sizeof what, "router account %s", name);
        check_secret(k, what, "router.account@password", "router.account@password-file", i,
                     "give it password-file=\"FILE\" (the password on its first line, mode 0600)");
    }
    static const char *const roles[] = {"c2s", "sm", "s2s", "resolver", "admin"};
    for (size_t r = 0; r < sizeof roles / sizeof *roles; r++) {
        if (strcmp(roles[r], "admin") != 0 && !check_runs(k, roles[r])) continue;
        bool has = false;
        for (int i = 0; i < config_count(c, "router.account") && !has; i++) {
            const char *role = config_get_at(c, "router.account@role", i);
            has = role && strcmp(role, roles[r]) == 0;
        }
        if (!has && !has_shared)
            check_error(k,
                        "no router account for role %s: %s%s cannot log in to the router — "
                        "add <account role=\"%s\" password-file=\"FILE\"/> to <router>",
                        roles[r], strcmp(roles[r], "admin") == 0 ? "" : "hearth-",
                        strcmp(roles[r], "admin") == 0 ? "hearthctl" : roles[r], roles[r]);
    }
    if (has_shared)
        check_warning(k, "router.password is the legacy shared account: any daemon can act as any "
                         "other (README, \"Configuration\") — give each daemon its own "
                         "<account role=\"...\"/> in <router> and remove <password>");
    for (int i = 0; i < config_count(c, "router.component"); i++) {
        const char *name = config_get_at(c, "router.component@name", i);
        if (!name || !*name) {
            check_error(k, "a router/component has no name — the router refuses to start: give "
                           "it name=\"...\"");
            continue;
        }
        char what[160];
        snprintf(what, sizeof what, "router component %s", name);
        check_secret(k, what, "router.component@password", "router.component@password-file", i,
                     "give it password-file=\"FILE\" (the password on its first line, mode 0600)");
        const char *bind = config_get_at(c, "router.component@bind", i);
        if (!bind || !bind[strspn(bind, " \t\r\n")])
            check_warning(k,
                          "router component %s has no bind names: it can bind nothing — list "
                          "them in bind=\"...\"",
                          name);
    }
    for (int i = 0; i < config_count(c, "router.external"); i++) {
        const char *name = config_get_at(c, "router.external@name", i);
        if (!name || !*name) {
            check_error(k, "a router/external has no name — the router refuses to start: give "
                           "it name=\"its domain\"");
            continue;
        }
        bool is_reserved = strncmp(name, "c2s-", 4) == 0 || strncmp(name, "hearthctl-", 10) == 0 ||
                           !strcmp(name, "s2s") || !strcmp(name, "resolver") ||
                           !strcmp(name, "router");
        for (int d = 0; d < k->ndomains; d++)
            is_reserved |= strcmp(name, k->domains[d]) == 0;
        if (is_reserved)
            check_error(k,
                        "router/external %s is a name of the Hearth daemons or a local domain "
                        "— the router refuses to start: give the component a domain of its own",
                        name);
        char what[160];
        snprintf(what, sizeof what, "router external component %s", name);
        check_secret(k, what, "router.external@secret", "router.external@secret-file", i,
                     "the router refuses to start: give it secret-file=\"FILE\" (the secret on "
                     "its first line, mode 0600)");
    }
    check_secret(k, "s2s dialback secret", "s2s.dialback-secret", "s2s.dialback-secret-file", -1,
                 NULL);
}

/* ---- the store ------------------------------------------------------------ */

static void check_store(check_t *k)
{
    int version = 0, expected = 0;
    char *err = NULL, path[4200];
    bool is_sqlite = strcmp(config_get(k->config, "storage.driver"), "sqlite") == 0;
    const char *where = is_sqlite ? config_sqlite_file(k->config, path, sizeof path)
                                  : config_get(k->config, "storage.pgsql");
    int rc = storage_schema_version(k->config, &version, &expected, &err);
    if (rc == 1)
        check_note(k, "store %s does not exist yet: the sm creates it at its first start", where);
    else if (rc < 0)
        check_error(k, "the store does not open: %s — %s", err ? err : "?",
                    is_sqlite ? "fix storage/sqlite or the statedir, or give this user access"
                              : "check that PostgreSQL runs and that storage/pgsql names the "
                                "database, its user and its host");
    else if (version < expected)
        check_error(k,
                    "store %s is at schema version %d, this build expects %d — run the sm "
                    "once to migrate (hearthd start)",
                    where, version, expected);
    else if (version > expected)
        check_error(k,
                    "store %s is at schema version %d, newer than this build's %d: this store "
                    "is newer than this build — run the Hearth release that wrote it",
                    where, version, expected);
    free(err);
}

/* ---- file modes ----------------------------------------------------------- */

static void check_modes(check_t *k)
{
    const char *user = config_get(k->config, "user");
    struct passwd *pw = user && *user ? getpwnam(user) : NULL;
    bool is_switching = geteuid() == 0 && pw && pw->pw_uid != 0;
    char *exposed =
        daemon_config_exposure(config_file(k->config), is_switching ? pw->pw_gid : getegid());
    if (exposed) {
        char *remedy = strstr(exposed, ": chmod");
        if (remedy) *remedy = '\0';
        check_warning(k, "%s — %s", exposed, remedy ? remedy + 2 : "chmod 640 it");
        free(exposed);
    }
    const char *dir = config_get(k->config, "statedir");
    struct stat st;
    if (stat(dir, &st) < 0) {
        check_note(k, "statedir %s does not exist yet: the daemons create it (mode 0750)", dir);
    } else {
        if (st.st_mode & (S_IWGRP | S_IRWXO))
            check_warning(k,
                          "statedir %s is open to %s (mode %04o): it holds the store and the "
                          "keys — chmod 750 %s",
                          dir, st.st_mode & S_IRWXO ? "others" : "its group",
                          (unsigned)(st.st_mode & 07777), dir);
        if (pw && pw->pw_uid != 0 && st.st_uid != pw->pw_uid)
            check_warning(k,
                          "statedir %s does not belong to %s, the daemons' user — chown %s: %s "
                          "(the daemons do it when started as root)",
                          dir, pw->pw_name, pw->pw_name, dir);
    }
    if (strcmp(config_get(k->config, "storage.driver"), "sqlite") == 0) {
        char path[4200];
        const char *file = config_sqlite_file(k->config, path, sizeof path);
        if (stat(file, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
            check_warning(k,
                          "store %s is readable by group or others (mode %04o): it holds the "
                          "users' keys and messages — chmod 600 %s",
                          file, (unsigned)(st.st_mode & 07777), file);
    }
}

/* ---- the command ---------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: hearthctl [-c FILE] check [--no-dns] [--no-ports]\n");
    return 2;
}

int ctl_check(const char *config_path, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"no-dns", no_argument, NULL, 'd'},
        {"no-ports", no_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    check_t check = {0}, *k = &check;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        if (opt == 'd')
            k->is_dns_skipped = true;
        else if (opt == 'p')
            k->is_ports_skipped = true;
        else
            return usage();
    }
    if (optind < argc) return usage();

    /* Only the findings speak: what the library would log, we report. */
    log_open("hearthctl", "stderr", "error");
    char *err = NULL;
    if (!(k->config = config_load(config_path, &err))) {
        check_error(k, "%s — fix it (etc/hearth.xml lists every setting, with its default)",
                    err ? err : config_path);
        free(err);
    } else {
        load_domains(k);
        check_user(k);
        check_limits(k);
        check_accounts(k);
        check_certificates(k);
        if (!k->is_dns_skipped) check_dns(k);
        if (!k->is_ports_skipped) check_ports(k);
        check_store(k);
        check_modes(k);
    }
    printf("%d errors, %d warnings\n", k->errors, k->warnings);
    for (int i = 0; i < k->ndomains; i++)
        free(k->domains[i]);
    free(k->domains);
    if (k->config) config_free(k->config);
    log_close();
    return k->errors ? 1 : 0;
}
