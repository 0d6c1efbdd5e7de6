/* daemon.c — options, config, log, signals and privileges for every
 * daemon's main. See daemon.h for the options and the privilege rules. */
#include "daemon.h"

#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "jid.h"
#include "log.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

static void usage(const char *name, FILE *out)
{
    fprintf(out,
            "usage: hearth-%s [-c FILE] [-i ID] [-t] [--get PATH] [-V]\n"
            "  -c FILE     config file (default " SYSCONFDIR "/hearth/hearth.xml)\n"
            "  -i ID       this instance's name, when several run (default: the daemon's)\n"
            "  -t          check the config file and exit\n"
            "  --get PATH  print a setting's value(s) and exit\n"
            "  -V          print the version and exit\n",
            name);
}

/* Print every value of path: each repetition of a repeated setting. */
static void print_setting(const config_t *c, const char *path)
{
    int n = config_count(c, path);
    if (n <= 0) {
        const char *v = config_get(c, path);
        if (v) printf("%s\n", v);
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *v = config_get_at(c, path, i);
        if (v) printf("%s\n", v);
    }
}

/* SIGHUP: see daemon.h. */
static void reload(daemon_ctx_t *d)
{
    log_reopen();
    const char *file = config_file(d->config);
    char *err = NULL;
    config_t *fresh = config_load(file, &err);
    if (!fresh) {
        log_err("reload: %s; keeping the running settings", err ? err : "cannot load the config");
        free(err);
        return;
    }
    if (d->on_reload && d->on_reload(d->ud, fresh, &err) < 0)
        log_err("reload: %s; keeping the running settings", err ? err : "refused");
    else
        log_notice("reloaded %s", file);
    free(err);
    config_free(fresh);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_ctx_t *d = h->data;
    if (signum == SIGHUP) {
        reload(d);
        return;
    }
    log_notice("%s: signal %d, stopping", d->name, signum);
    uv_signal_stop(&d->sig_term);
    uv_signal_stop(&d->sig_int);
    if (d->on_stop) d->on_stop(d->ud);
}

static void watch_signal(daemon_ctx_t *d, uv_signal_t *h, int signum)
{
    uv_signal_init(d->loop, h);
    h->data = d;
    uv_signal_start(h, on_signal, signum);
    uv_unref((uv_handle_t *)h);
}

/* ---- privileges ------------------------------------------------------------ */

typedef struct run_as {
    char name[64];
    uid_t uid;
    gid_t gid;
    bool is_root; /* <user>root</user>: stay root */
} run_as_t;

static int fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0) log_fatal("out of memory");
    va_end(ap);
    return -1;
}

/* The account named by `user`, for a process running as root. */
static int find_user(const config_t *c, run_as_t *who, char **err)
{
    const char *user = config_get(c, "user");
    memset(who, 0, sizeof *who);
    if (!user || !*user)
        return fail(err,
                    "started as root, and <user> in %s is empty: name the account the daemons "
                    "run as (default hearth), or set <user>root</user> to run as root on purpose",
                    config_file(c));
    struct passwd *pw = getpwnam(user);
    if (!pw)
        return fail(err,
                    "started as root, and the account %s to run as does not exist: create it "
                    "(adduser --system --group --no-create-home %s), or set <user>root</user> "
                    "in %s to run as root on purpose",
                    user, user, config_file(c));
    if (snprintf(who->name, sizeof who->name, "%s", pw->pw_name) >= (int)sizeof who->name)
        return fail(err, "user name %s is too long", pw->pw_name);
    who->uid = pw->pw_uid;
    who->gid = pw->pw_gid;
    who->is_root = pw->pw_uid == 0;
    return 0;
}

/* The warning for a config (it holds secrets) readable or writable by
 * others, or by a group other than group, the daemons' own. Keys are warned about
 * where they are loaded (tls.c), secret files where they are read
 * (config_secret). */
char *daemon_config_exposure(const char *path, gid_t group)
{
    struct stat st;
    if (!path || !*path || stat(path, &st) < 0) return NULL;
    mode_t mode = st.st_mode & 07777;
    const char *who = NULL;
    if (mode & (S_IROTH | S_IWOTH))
        who = "every user";
    else if ((mode & S_IWGRP) || ((mode & S_IRGRP) && st.st_gid != group))
        who = "its group";
    if (!who) return NULL;
    char *text = NULL;
    if (asprintf(&text,
                 "config file %s is %s by %s (mode %04o): chmod 640 %s, and give it to the "
                 "daemons' group or to root's",
                 path, mode & (S_IWOTH | S_IWGRP) ? "writable" : "readable", who, (unsigned)mode,
                 path) < 0)
        log_fatal("out of memory");
    return text;
}

static void warn_if_config_exposed(const char *path, gid_t group)
{
    char *text = daemon_config_exposure(path, group);
    if (!text) return;
    log_warn("%s", text);
    free(text);
}

/* The router's Unix socket, made by root with mode 0700 (umask 077): the
 * daemons, once they run as the user, must be able to connect. */
static void give_router_socket(const daemon_ctx_t *d, const run_as_t *who)
{
    const char *addr = config_get(d->config, "router.listen");
    if (strcmp(d->name, "router") != 0 || !addr || strncmp(addr, "unix:", 5) != 0) return;
    if (lchown(addr + 5, who->uid, who->gid) < 0)
        log_warn("cannot give the socket %s to %s: %s", addr + 5, who->name, strerror(errno));
}

/* STATEDIR exists, belongs to the user and is closed to others (0750 when
 * made here); the parent must exist. */
static int prepare_statedir(const config_t *c, const run_as_t *who, char **err)
{
    const char *dir = config_get(c, "statedir");
    bool is_new = mkdir(dir, 0750) == 0;
    if (!is_new && errno != EEXIST)
        return fail(err, "cannot create statedir %s: %s", dir, strerror(errno));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return fail(err, "statedir %s: %s", dir, strerror(e));
    }
    mode_t mode = is_new ? 0750 : ((st.st_mode & 0750) | 0700);
    int rc = 0;
    if (st.st_uid != who->uid && fchown(fd, who->uid, who->gid) < 0)
        rc = fail(err, "cannot give statedir %s to %s: %s", dir, who->name, strerror(errno));
    else if ((st.st_mode & 07777) != mode && fchmod(fd, mode) < 0)
        rc = fail(err, "cannot chmod statedir %s: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

/* A SQLite store (and its -journal, or an older version's -wal, -shm)
 * that root made, when an older version kept root: the user must be able
 * to write it now. Files of other users are left alone. */
static void give_store(const config_t *c, const run_as_t *who)
{
    if (strcmp(config_get(c, "storage.driver"), "sqlite") != 0) return;
    char buf[4096];
    const char *base = config_sqlite_file(c, buf, sizeof buf);
    static const char *const suffixes[] = {"", "-journal", "-wal", "-shm"};
    for (int i = 0; i < 4; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s%s", base, suffixes[i]);
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0) {
            if (fchown(fd, who->uid, who->gid) < 0)
                log_warn("cannot give %s to %s: %s", path, who->name, strerror(errno));
            else
                log_notice("gave %s, made by root, to %s", path, who->name);
        }
        close(fd);
    }
}

int daemon_switch_user(const config_t *config, char **err)
{
    *err = NULL;
    if (geteuid() != 0) return 0;
    run_as_t who;
    if (find_user(config, &who, err) < 0) return -1;
    if (who.is_root) return 0;
    if (prepare_statedir(config, &who, err) < 0) return -1;
    give_store(config, &who);
    if (initgroups(who.name, who.gid) < 0 || setgid(who.gid) < 0 || setuid(who.uid) < 0)
        return fail(err, "cannot become user %s: %s", who.name, strerror(errno));
    if (setuid(0) == 0) return fail(err, "still root after becoming %s", who.name);
    const char *dir = config_get(config, "statedir");
    if (access(dir, R_OK | W_OK | X_OK) < 0)
        return fail(err,
                    "statedir %s is not usable by user %s: %s (a parent directory closed to "
                    "it? choose a statedir the user can reach)",
                    dir, who.name, strerror(errno));
    return 0;
}

/* A crash leaves the stack in the daemon's log (stderr): the signal, then
 * one frame a line (binary+offset: addr2line -e BINARY OFFSET names the
 * line), then the default action, so the supervisor still sees the
 * signal. Only async-signal-safe calls; backtrace() is called once
 * beforehand so that the handler needs no loading. Sanitizer builds keep
 * their own, better report. */
#if defined(__SANITIZE_ADDRESS__)
#define HAS_SANITIZER_REPORT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAS_SANITIZER_REPORT 1
#endif
#endif

#ifndef HAS_SANITIZER_REPORT
static void on_crash(int signum)
{
    static const char head[] = "fatal signal; the stack, innermost first:\n";
    void *frames[64];
    ssize_t w = write(STDERR_FILENO, head, sizeof head - 1);
    (void)w;
    backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
    signal(signum, SIG_DFL);
    raise(signum);
}

static void report_crashes(void)
{
    void *frame;
    backtrace(&frame, 1);
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
        struct sigaction sa = {.sa_handler = on_crash, .sa_flags = SA_RESETHAND};
        sigemptyset(&sa.sa_mask);
        sigaction(fatal[i], &sa, NULL);
    }
}
#else
static void report_crashes(void)
{
}
#endif

void daemon_init(daemon_ctx_t *d, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"get", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = SYSCONFDIR "/hearth/hearth.xml";
    const char *get = NULL;
    int check_only = 0, opt;

    d->id = d->name;
    /* Files this process creates are its owner's only (see daemon.h). */
    umask(077);
    while ((opt = getopt_long(argc, argv, "c:i:tVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 'i':
            d->id = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'g':
            get = optarg;
            break;
        case 'V':
            printf("hearth-%s %s\n", d->name, PACKAGE_VERSION);
            exit(0);
        case 'h':
            usage(d->name, stdout);
            exit(0);
        default:
            usage(d->name, stderr);
            exit(2);
        }
    }
    if (optind < argc) {
        usage(d->name, stderr);
        exit(2);
    }

    char *err = NULL;
    d->config = config_load(file, &err);
    if (!d->config) {
        fprintf(stderr, "hearth-%s: %s\n", d->name, err ? err : "cannot load config");
        free(err);
        exit(1);
    }
    if (check_only) {
        printf("%s: ok\n", file);
        exit(0);
    }
    if (get) {
        print_setting(d->config, get);
        exit(0);
    }
    if (log_open(d->id, config_get(d->config, "log@target"), config_get(d->config, "log@level")) <
        0)
        exit(1);
    if (geteuid() == 0) {
        /* Refuse now, before anything is created as root, rather than once
         * the ports are open. */
        run_as_t who;
        char *why = NULL;
        if (find_user(d->config, &who, &why) < 0) log_fatal("%s", why);
        if (who.is_root)
            log_warn("running as root, as <user>root</user> in %s asks: a flaw in this daemon "
                     "would give the whole system away (create an account and name it in "
                     "<user> instead)",
                     config_file(d->config));
    }

    /* Every connection is a descriptor: allow as many as the system does. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0) log_warn("cannot raise the open-file limit");
    }
    signal(SIGPIPE, SIG_IGN);
    report_crashes();
    watch_signal(d, &d->sig_term, SIGTERM);
    watch_signal(d, &d->sig_int, SIGINT);
    watch_signal(d, &d->sig_hup, SIGHUP);
}

static void start_heartbeat(daemon_ctx_t *d);

void daemon_drop_privileges(daemon_ctx_t *d)
{
    run_as_t who = {.is_root = true};
    char *err = NULL;
    if (geteuid() == 0 && find_user(d->config, &who, &err) < 0) log_fatal("%s", err);
    /* The group that may read the config: the one the daemon will run with. */
    warn_if_config_exposed(config_file(d->config),
                           geteuid() == 0 && !who.is_root ? who.gid : getegid());
    if (geteuid() == 0 && !who.is_root) {
        give_router_socket(d, &who);
        if (daemon_switch_user(d->config, &err) < 0) log_fatal("%s", err);
        log_info("running as %s (uid %u, gid %u)", who.name, (unsigned)who.uid, (unsigned)who.gid);
    }
    start_heartbeat(d); /* its file is the user's */
}

/* One datagram to $NOTIFY_SOCKET (systemd's sd_notify protocol); a
 * failure is logged. */
static void notify_systemd(const char *msg)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name) return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || len >= sizeof sa.sun_path) {
        log_warn("NOTIFY_SOCKET %s is not a socket path or an @abstract name: %s not sent", name,
                 msg);
        return;
    }
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@') sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        sendto(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT, (const struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
        log_warn("cannot send %s to NOTIFY_SOCKET %s: %s", msg, name, strerror(errno));
    if (fd >= 0) close(fd);
}

void daemon_ready(void)
{
    static bool is_sent;
    if (is_sent) return;
    is_sent = true;
    notify_systemd("READY=1");
}

/* ---- the watchdog's heartbeat (daemon.h, "Liveness") ---------------------- */

static void on_touched(uv_fs_t *req)
{
    daemon_ctx_t *d = req->data;
    if (req->result < 0 && d->has_heartbeat)
        log_warn("cannot touch the heartbeat file: %s", uv_strerror((int)req->result));
    uv_fs_req_cleanup(req);
    d->is_touching = false;
    if (!d->has_heartbeat && d->heartbeat_fd >= 0) { /* daemon_done came meanwhile */
        close(d->heartbeat_fd);
        d->heartbeat_fd = -1;
    }
}

static void on_heartbeat(uv_timer_t *t)
{
    daemon_ctx_t *d = t->data;
    if (d->is_systemd_watchdog) notify_systemd("WATCHDOG=1");
    if (d->heartbeat_fd < 0 || d->is_touching) return;
    double now = (double)time(NULL);
    d->heartbeat_req.data = d;
    d->is_touching =
        uv_fs_futime(d->loop, &d->heartbeat_req, d->heartbeat_fd, now, now, on_touched) == 0;
}

static void start_heartbeat(daemon_ctx_t *d)
{
    uint64_t watchdog = config_ms(d->config, "supervisor.watchdog"), period = 0;
    d->heartbeat_fd = -1;
    if (watchdog > 0) {
        char dir[4096], path[4200];
        snprintf(dir, sizeof dir, "%s/heartbeat", config_get(d->config, "statedir"));
        snprintf(path, sizeof path, "%s/%s", dir, d->id);
        if ((mkdir(dir, 0700) < 0 && errno != EEXIST) ||
            (d->heartbeat_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
            log_warn("%s: %s: hearthd's watchdog will find this daemon dead", path,
                     strerror(errno));
        period = watchdog / 3;
    }
    const char *usec = getenv("WATCHDOG_USEC");
    uint64_t systemd_ms = usec ? strtoull(usec, NULL, 10) / 1000 : 0;
    if (systemd_ms > 0) {
        d->is_systemd_watchdog = true;
        if (!period || systemd_ms / 2 < period) period = systemd_ms / 2;
    }
    if (!period) return;
    if (period < 100) period = 100;
    uv_timer_init(d->loop, &d->heartbeat);
    d->heartbeat.data = d;
    uv_timer_start(&d->heartbeat, on_heartbeat, 0, period);
    uv_unref((uv_handle_t *)&d->heartbeat); /* never what keeps a stopping loop alive */
    d->has_heartbeat = true;
}

void daemon_done(daemon_ctx_t *d)
{
    if (d->has_heartbeat) {
        d->has_heartbeat = false;
        uv_close((uv_handle_t *)&d->heartbeat, NULL);
        if (!d->is_touching && d->heartbeat_fd >= 0) close(d->heartbeat_fd);
        if (!d->is_touching) d->heartbeat_fd = -1;
    }
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
    config_free(d->config);
    d->config = NULL;
}

char **daemon_domains(const config_t *config, int *n)
{
    *n = config_count(config, "domain");
    if (*n < 1) *n = 1;
    char **domains = calloc((size_t)*n, sizeof *domains);
    if (!domains) log_fatal("out of memory");
    for (int i = 0; i < *n; i++) {
        const char *name = config_get_at(config, "domain", i);
        if (!name) name = config_get(config, "domain");
        char prepared[JID_STRING_MAX];
        if (!name || jid_prep(name, strlen(name), prepared, NULL) < 0 || strchr(prepared, '@') ||
            strchr(prepared, '/'))
            log_fatal("%s: domain '%s' is not a valid domain", config_file(config),
                      name ? name : "");
        if (!(domains[i] = strdup(prepared))) log_fatal("out of memory");
    }
    return domains;
}

void daemon_domains_free(char **domains, int n)
{
    for (int i = 0; i < n; i++)
        free(domains[i]);
    free(domains);
}
