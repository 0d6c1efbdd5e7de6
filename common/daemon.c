/* daemon.c — options, config, log and signals for every daemon's main.
 * See daemon.h for the options. */
#include "daemon.h"

#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_ctx_t *d = h->data;
    if (signum == SIGHUP) {
        log_reopen();
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
    while ((opt = getopt_long(argc, argv, "c:i:tVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': file = optarg; break;
        case 'i': d->id = optarg; break;
        case 't': check_only = 1; break;
        case 'g': get = optarg; break;
        case 'V': printf("hearth-%s %s\n", d->name, PACKAGE_VERSION); exit(0);
        case 'h': usage(d->name, stdout); exit(0);
        default: usage(d->name, stderr); exit(2);
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

    /* Every connection is a descriptor: allow as many as the system does. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0) log_warn("cannot raise the open-file limit");
    }
    signal(SIGPIPE, SIG_IGN);
    watch_signal(d, &d->sig_term, SIGTERM);
    watch_signal(d, &d->sig_int, SIGINT);
    watch_signal(d, &d->sig_hup, SIGHUP);
}

void daemon_drop_privileges(daemon_ctx_t *d)
{
    const char *user = config_get(d->config, "user");
    if (geteuid() != 0 || !user || !*user) return;
    struct passwd *pw = getpwnam(user);
    if (!pw) log_fatal("user %s does not exist", user);
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0)
        log_fatal("cannot become user %s", user);
    log_info("running as %s", user);
}

void daemon_done(daemon_ctx_t *d)
{
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
    config_free(d->config);
    d->config = NULL;
}
