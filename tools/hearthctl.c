/* hearthctl.c — the administrator's command: accounts, who is online, and
 * the streams to and from other servers.
 *
 *   hearthctl [-c FILE] adduser JID [PASSWORD]
 *   hearthctl [-c FILE] passwd JID [PASSWORD]
 *   hearthctl [-c FILE] deluser JID
 *   hearthctl [-c FILE] users
 *   hearthctl [-c FILE] online
 *   hearthctl [-c FILE] s2s
 *   hearthctl [-c FILE] check [--no-dns] [--no-ports]
 *   hearthctl [-c FILE] export [FILE|-]
 *   hearthctl [-c FILE] import [--replace] [FILE...|-]
 *   hearthctl [-c FILE] disable JID
 *   hearthctl [-c FILE] enable JID
 *   hearthctl [-c FILE] kick JID[/RESOURCE]
 *   hearthctl [-c FILE] invite [JID]
 *   hearthctl [-c FILE] reset JID
 *   hearthctl [-c FILE] uploads [JID]
 *   hearthctl [-c FILE] uploads purge JID|ID|--expired
 *
 * Accounts live in the store the daemons use (hearth.xml's storage
 * section), opened here through storage/: adduser and passwd write the
 * SCRAM-SHA-1 and SCRAM-SHA-256 keys of the password (never the password),
 * deluser deletes every collection the account owns and then asks the sm to
 * end its sessions, adduser tells the sm the account exists now (both best
 * effort), users lists the accounts. online asks the running sm, through
 * the router, as a component named hearthctl-PID with the router account
 * of role admin (the admin queries of sm/mod_admin.c), and believes only
 * an answer the router marked as the sm's; s2s asks
 * hearth-s2s the same way for its streams, one line each:
 *   out LOCAL REMOTE STATE AUTH TLS QUEUED-BYTES CERT
 *   in PEER-ADDRESS DOMAINS AUTH TLS
 * (AUTH: certificate or dialback; TLS: starttls, direct or none; CERT: the
 * remote server's certificate is valid or invalid for REMOTE, or none when
 * TLS is not up yet; under dialback an invalid one is allowed). A missing
 * PASSWORD is read from standard input, without echo on a terminal. A JID
 * without a domain is in the first configured domain. check examines the
 * installation and reports what is wrong (ctl_check.c); uploads lists and
 * purges hearth-upload's files (ctl_uploads.c).
 *
 * Exit status: 0 done, 1 failed (the reason on standard error), 2 usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "ctl_check.h"
#include "hearthctl.h"
#include "storage.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define MAX_PASSWORD 1023
#define ROUTER_TIMEOUT_MS 5000 /* online, s2s: the answer */
#define NOTIFY_TIMEOUT_MS 2000 /* deluser: best effort */

typedef struct ctl {
    uv_loop_t *loop;
    config_t *config;
    storage_t *st;
    const char *owner;         /* the account, prepared bare JID */
    int status;                /* the exit status */
    ctl_link_t *link;          /* online, s2s, and the notices to the sm (ctl_link.c) */
    const char *admin_request; /* "online", "s2s", "deleted" or "created" */
} ctl_t;

void ctl_vfail(int *status, const char *fmt, va_list ap)
{
    fputs("hearthctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    *status = 1;
}

void ctl_fail(int *status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctl_vfail(status, fmt, ap);
    va_end(ap);
}

static int usage(void)
{
    fprintf(stderr, "usage: hearthctl [-c FILE] adduser JID [PASSWORD]\n"
                    "       hearthctl [-c FILE] passwd JID [PASSWORD]\n"
                    "       hearthctl [-c FILE] deluser JID\n"
                    "       hearthctl [-c FILE] users\n"
                    "       hearthctl [-c FILE] online\n"
                    "       hearthctl [-c FILE] s2s\n"
                    "       hearthctl [-c FILE] check [--no-dns] [--no-ports]\n"
                    "       hearthctl [-c FILE] export [FILE|-]\n"
                    "       hearthctl [-c FILE] import [--replace] [FILE...|-]\n"
                    "       hearthctl [-c FILE] disable JID\n"
                    "       hearthctl [-c FILE] enable JID\n"
                    "       hearthctl [-c FILE] kick JID[/RESOURCE]\n"
                    "       hearthctl [-c FILE] invite [JID]\n"
                    "       hearthctl [-c FILE] reset JID\n"
                    "       hearthctl [-c FILE] uploads [JID]\n"
                    "       hearthctl [-c FILE] uploads purge JID|ID|--expired\n");
    return 2;
}

/* ---- arguments ------------------------------------------------------------ */

config_t *ctl_config_load(const char *path)
{
    char *err = NULL;
    config_t *config = config_load(path, &err);
    if (!config) {
        fprintf(stderr, "hearthctl: %s\n", err);
        free(err);
        return NULL;
    }
    /* The daemons' log may be a file; ours is the terminal. */
    log_open("hearthctl", "stderr", "warn");
    return config;
}

bool is_local_domain(const config_t *config, const char *domain)
{
    int n = config_count(config, "domain");
    if (n == 0) return strcmp(domain, config_get(config, "domain")) == 0;
    for (int i = 0; i < n; i++) {
        const char *d = config_get_at(config, "domain", i);
        char prepared[JID_STRING_MAX];
        if (d && jid_prep(d, strlen(d), prepared, NULL) == 0 && strcmp(prepared, domain) == 0)
            return true;
    }
    return false;
}

/* The account's bare JID, prepared; NULL (and why on stderr) if unusable. */
static char *account_of(ctl_t *c, const char *arg)
{
    buf_t text = BUF_INIT;
    buf_appends(&text, arg);
    if (!strchr(arg, '@')) buf_printf(&text, "@%s", config_get(c->config, "domain"));
    const char *why = NULL;
    jid_t *j = jid_new(text.data, text.len, &why);
    char *owner = NULL;
    if (!j)
        ctl_fail(&c->status, "%s: not a valid JID (%s)", text.data, why ? why : "invalid");
    else if (!jid_has_node(j) || jid_has_resource(j))
        ctl_fail(&c->status, "%s: an account is user@domain, without a resource", text.data);
    else if (!is_local_domain(c->config, jid_domain(j)))
        ctl_fail(&c->status, "%s: %s is not a domain of this server (see <domain> in %s)",
                 text.data, jid_domain(j), config_file(c->config));
    else if (!(owner = strdup(jid_bare(j))))
        log_fatal("out of memory");
    if (j) jid_free(j);
    buf_free(&text);
    return owner;
}

/* One line from stdin: without echo when it is a terminal. */
static char *read_line(const char *prompt)
{
    bool is_tty = isatty(STDIN_FILENO);
    struct termios saved, quiet;
    if (is_tty) {
        fputs(prompt, stderr);
        fflush(stderr);
        tcgetattr(STDIN_FILENO, &saved);
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len = getline(&line, &cap, stdin);
    if (is_tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fputc('\n', stderr);
    }
    if (len < 0) {
        free(line);
        return NULL;
    }
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    return line;
}

static void wipe_free(char *s)
{
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

/* The password from argv or stdin (asked twice on a terminal). */
static char *password_of(ctl_t *c, const char *arg)
{
    char *password = arg ? strdup(arg) : read_line("Password: ");
    if (!password) {
        ctl_fail(&c->status, "no password given (as an argument or on standard input)");
        return NULL;
    }
    if (!arg && isatty(STDIN_FILENO)) {
        char *again = read_line("Again: ");
        bool is_same = again && strcmp(again, password) == 0;
        wipe_free(again);
        if (!is_same) {
            ctl_fail(&c->status, "the passwords differ");
            wipe_free(password);
            return NULL;
        }
    }
    if (!*password || strlen(password) > MAX_PASSWORD) {
        ctl_fail(&c->status, "a password is 1 to %d bytes", MAX_PASSWORD);
        wipe_free(password);
        return NULL;
    }
    return password;
}

/* ---- the store ------------------------------------------------------------ */

static void ask_daemon(ctl_t *c, const char *request);

static void on_added(void *ud, const st_result_t *res)
{
    ctl_t *c = ud;
    if (st_status(res) == ST_CONSTRAINT)
        ctl_fail(&c->status, "%s already exists", c->owner);
    else if (st_status(res) != ST_OK)
        ctl_fail(&c->status, "cannot add %s: %s", c->owner, st_error(res));
    else {
        printf("added %s\n", c->owner);
        /* A running sm that knew the name did not exist forgets it now. */
        ask_daemon(c, "created");
    }
}

static void on_password_set(void *ud, const st_result_t *res)
{
    ctl_t *c = ud;
    if (st_status(res) != ST_OK)
        ctl_fail(&c->status, "cannot change the password of %s: %s", c->owner, st_error(res));
    else if (st_changes(res) == 0)
        ctl_fail(&c->status, "%s: no such user", c->owner);
    else
        printf("changed the password of %s\n", c->owner);
}

/* adduser (is_new) or passwd. */
static void set_password(ctl_t *c, const char *password, bool is_new)
{
    auth_keys_t keys;
    if (auth_keys_make(password, &keys) < 0) {
        ctl_fail(&c->status, "cannot derive keys from this password");
        return;
    }
    auth_store(c->st, c->owner, &keys, is_new, is_new ? on_added : on_password_set, c);
    explicit_bzero(&keys, sizeof keys);
}

static void on_users(void *ud, const st_result_t *res)
{
    ctl_t *c = ud;
    if (st_status(res) != ST_OK) {
        ctl_fail(&c->status, "cannot list the users: %s", st_error(res));
        return;
    }
    for (int r = 0; r < st_rows(res); r++)
        if (st_text(res, r, 0)) printf("%s\n", st_text(res, r, 0));
}

static void on_deleted(void *ud, const st_result_t *res)
{
    ctl_t *c = ud;
    if (st_status(res) != ST_OK) {
        ctl_fail(&c->status, "cannot delete %s: %s", c->owner, st_error(res));
        return;
    }
    printf("deleted %s\n", c->owner);
    /* Its sessions, if any, end now rather than at their next login. */
    ask_daemon(c, "deleted");
}

static void on_user_checked(void *ud, const st_result_t *res)
{
    ctl_t *c = ud;
    if (st_status(res) != ST_OK)
        ctl_fail(&c->status, "cannot read %s: %s", c->owner, st_error(res));
    else if (st_rows(res) == 0)
        ctl_fail(&c->status, "%s: no such user", c->owner);
    else
        storage_delete_owner(c->st, c->owner, on_deleted, c);
}

/* ---- the sm, through the router ------------------------------------------- */

/* deleted, created: telling the sm is best effort. */
static bool is_notice(const ctl_t *c)
{
    return strcmp(c->admin_request, "deleted") == 0 || strcmp(c->admin_request, "created") == 0;
}

static void print_online(const elem_t *online)
{
    int n = 0;
    for (const elem_t *s = elem_child(online, NS_ADMIN, "session"); s;
         s = elem_next(s, NS_ADMIN, "session"), n++) {
        const char *jid = elem_attr(s, "jid"), *c2s = elem_attr(s, "c2s");
        const char *available = elem_attr(s, "available"), *priority = elem_attr(s, "priority");
        const char *show = elem_attr(s, "show");
        bool is_available = available && strcmp(available, "true") == 0;
        printf("%s\t%s\t%s\t%s\n", jid ? jid : "?", c2s ? c2s : "?",
               !is_available   ? "unavailable"
               : show && *show ? show
                               : "available",
               priority ? priority : "0");
    }
    if (n == 0) fprintf(stderr, "nobody is online\n");
}

static void print_s2s(const elem_t *list)
{
    int n = 0;
    for (const elem_t *e = elem_first(list); e; e = e->next, n++) {
        if (strcmp(e->name, "out") == 0)
            printf("out\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", elem_attr(e, "local"),
                   elem_attr(e, "remote"), elem_attr(e, "state"), elem_attr(e, "auth"),
                   elem_attr(e, "tls"), elem_attr(e, "queued"),
                   elem_attr(e, "cert") ? elem_attr(e, "cert") : "none");
        else
            printf("in\t%s\t%s\t%s\t%s\n", elem_attr(e, "peer"), elem_attr(e, "domains"),
                   elem_attr(e, "auth"), elem_attr(e, "tls"));
    }
    if (n == 0) fprintf(stderr, "no stream to or from other servers\n");
}

static void on_answer(void *ud, const elem_t *iq, ctl_problem_t problem, const char *detail)
{
    ctl_t *c = ud;
    bool is_s2s = strcmp(c->admin_request, "s2s") == 0;
    const char *router = config_get(c->config, "router.listen");
    if (is_notice(c)) {
        /* No sm runs (bounced), or none needs telling of a new account. */
        if ((problem == CTL_NO_ANSWER || problem == CTL_NO_ROUTER) &&
            strcmp(c->admin_request, "deleted") == 0)
            fprintf(stderr,
                    "hearthctl: warning: the sm did not answer through the router at %s; "
                    "sessions of %s, if any, end when they log out\n",
                    router, c->owner);
    } else if (problem == CTL_BOUNCED && is_s2s) {
        ctl_fail(&c->status, "nobody serves s2s (router: %s): is hearth-s2s running?", detail);
    } else if (problem == CTL_BOUNCED) {
        ctl_fail(&c->status, "no sm serves %s (router: %s): is hearth-sm running?",
                 config_get(c->config, "domain"), detail);
    } else if (problem != CTL_ANSWERED) {
        ctl_fail(&c->status, "no answer from the %s through the router at %s: is Hearth running?",
                 is_s2s ? "s2s" : "sm", router);
    } else if (ctl_link_error(iq)) {
        ctl_fail(&c->status, "the request was refused: %s", ctl_link_error(iq));
    } else {
        const elem_t *list = ctl_link_answer(iq, c->admin_request);
        if (!list)
            ctl_fail(&c->status, "the answer has no list");
        else if (is_s2s)
            print_s2s(list);
        else
            print_online(list);
    }
}

/* Is there a router account for hearthctl (role admin, or the shared one of
 * older configs)? */
bool has_admin_account(const config_t *config)
{
    for (int i = 0; i < config_count(config, "router.account"); i++) {
        const char *role = config_get_at(config, "router.account@role", i);
        if (role && strcmp(role, "admin") == 0) return true;
    }
    const char *shared = config_get(config, "router.password");
    return shared && *shared;
}

static void ask_daemon(ctl_t *c, const char *request)
{
    c->admin_request = request;
    if (!c->link) {
        if (!is_notice(c))
            ctl_fail(&c->status,
                     "no router account of role admin in %s (router/account role='admin')",
                     config_file(c->config));
        return;
    }
    bool is_s2s = strcmp(request, "s2s") == 0;
    ctl_request_t req = {
        .to = is_s2s ? "s2s" : config_get(c->config, "domain"),
        .role = is_s2s ? ROLE_S2S : ROLE_SM,
        .user = is_notice(c) ? c->owner : NULL,
        .is_set = is_notice(c),
        .name = request,
        .jid = is_notice(c) ? c->owner : NULL,
        .timeout_ms = is_notice(c) ? NOTIFY_TIMEOUT_MS : ROUTER_TIMEOUT_MS,
    };
    ctl_link_ask(c->link, &req, on_answer, c);
}

/* ---- main ----------------------------------------------------------------- */

static void on_closed(void *ud)
{
    (void)ud;
}

int main(int argc, char **argv)
{
    const char *path = SYSCONFDIR "/hearth/hearth.xml";
    int opt;
    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        if (opt == 'c')
            path = optarg;
        else
            return usage();
    }
    argc -= optind;
    argv += optind;
    if (argc < 1) return usage();
    const char *cmd = argv[0];
    if (strcmp(cmd, "check") == 0) return ctl_check(path, argc, argv);
    if (strcmp(cmd, "export") == 0 || strcmp(cmd, "import") == 0) return pie_main(path, argc, argv);
    if (ctl_account_handles(cmd)) {
        int status = ctl_account_main(path, argc, argv);
        return status == CTL_USAGE ? usage() : status;
    }
    if (ctl_invite_handles(cmd)) {
        int status = ctl_invite_main(path, argc, argv);
        return status == CTL_USAGE ? usage() : status;
    }
    if (strcmp(cmd, "uploads") == 0) {
        int status = ctl_uploads_main(path, argc, argv);
        return status == CTL_USAGE ? usage() : status;
    }
    bool is_adduser = strcmp(cmd, "adduser") == 0, is_passwd = strcmp(cmd, "passwd") == 0;
    bool is_deluser = strcmp(cmd, "deluser") == 0, is_users = strcmp(cmd, "users") == 0;
    bool is_online = strcmp(cmd, "online") == 0, is_s2s = strcmp(cmd, "s2s") == 0;
    if ((is_adduser || is_passwd) && (argc < 2 || argc > 3)) return usage();
    if (is_deluser && argc != 2) return usage();
    if ((is_users || is_online || is_s2s) && argc != 1) return usage();
    if (!is_adduser && !is_passwd && !is_deluser && !is_users && !is_online && !is_s2s)
        return usage();

    ctl_t ctl = {0}, *c = &ctl;
    char *err = NULL;
    if (!(c->config = ctl_config_load(path))) return 1;
    c->loop = uv_default_loop();
    /* The router link, made before the switch of user: its secret may be
     * root's. Connected only when a request needs it. */
    if (!is_users && !is_passwd) c->link = ctl_link_new(c->loop, c->config);
    /* As root, become the daemons' user before the store is opened: what
     * SQLite creates there (-journal) must stay theirs. */
    if (daemon_switch_user(c->config, &err) < 0) {
        fprintf(stderr, "hearthctl: %s\n", err);
        free(err);
        ctl_link_free(c->link);
        uv_run(c->loop, UV_RUN_DEFAULT);
        uv_loop_close(c->loop);
        config_free(c->config);
        log_close();
        return 1;
    }

    char *owner = NULL, *password = NULL;
    if (argc >= 2 && !(owner = account_of(c, argv[1]))) goto done;
    c->owner = owner;
    if ((is_adduser || is_passwd) && !(password = password_of(c, argc == 3 ? argv[2] : NULL)))
        goto done;

    if (is_online || is_s2s) {
        ask_daemon(c, cmd);
    } else {
        if (!(c->st = storage_open(c->loop, c->config, &err))) {
            ctl_fail(&c->status, "cannot open the store: %s", err);
            free(err);
            goto done;
        }
        if (is_adduser || is_passwd) {
            set_password(c, password, is_adduser);
        } else if (is_deluser) {
            const char *params[] = {c->owner};
            storage_query(c->st, "SELECT owner FROM auth WHERE owner = $1", 1, params,
                          on_user_checked, c);
        } else {
            storage_query(c->st, "SELECT owner FROM auth ORDER BY owner", 0, NULL, on_users, c);
        }
    }
    uv_run(c->loop, UV_RUN_DEFAULT);

done:
    if (c->link && !c->admin_request) ctl_link_free(c->link);
    if (c->st) storage_close(c->st, on_closed, NULL);
    uv_run(c->loop, UV_RUN_DEFAULT);
    uv_loop_close(c->loop);
    wipe_free(password);
    free(owner);
    config_free(c->config);
    log_close();
    return c->status;
}
