/* ctl_check_net.c — hearthctl check: DNS and the listening ports.
 *
 * DNS (skipped with --no-dns, and for localhost and *.localhost): for each
 * local domain, the SRV records _xmpp-client._tcp, _xmpps-client._tcp,
 * _xmpp-server._tcp and _xmpps-server._tcp, the domain's A and AAAA, then
 * the A and AAAA of every SRV target, asked with c-ares of the servers in
 * resolver.nameserver (else /etc/resolv.conf). This is a command, so it
 * waits for the answers (poll on c-ares' sockets) instead of running a
 * loop. Warned about: a domain that neither other servers nor clients can
 * find (no SRV record and no address), an SRV target without an address,
 * and a target whose name the certificate does not carry when it does not
 * name the domain either (RFC 6120 §13.7.2.1: the peer checks the domain,
 * and some check the target). A lookup that fails (timeout, refused) is
 * one warning for its domain, whose other findings are then skipped.
 *
 * Ports (skipped with --no-ports): every address the c2s, s2s and router
 * listen on is bound for a moment (SO_REUSEADDR, as libuv does; no
 * SO_REUSEPORT, so a running c2s counts as a holder). One in use is fine
 * when its holder is a Hearth daemon of this installation: a pid in
 * STATEDIR/run/NAME.pid (hearthd), or a hearth-* process started with -c
 * this very file. Any other holder is an error naming it, found through
 * /proc/net/{tcp,tcp6,unix} and the /proc/PID/fd links of its socket. */
#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_check.h"

#define MAX_SRV 16     /* records kept per service */
#define MAX_TARGETS 32 /* distinct SRV targets per domain */
#define MAX_HOLDERS 64 /* sockets (inodes) one port may have */

/* ---- DNS ------------------------------------------------------------------ */

typedef struct answer {
    bool is_done;
    int status;
    unsigned char *abuf;
    int alen;
} answer_t;

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    answer_t *a = arg;
    a->is_done = true;
    a->status = status;
    if (status == ARES_SUCCESS && abuf && alen > 0) {
        if (!(a->abuf = malloc((size_t)alen))) log_fatal("out of memory");
        memcpy(a->abuf, abuf, (size_t)alen);
        a->alen = alen;
    }
}

static void answer_free(answer_t *a)
{
    free(a->abuf);
    memset(a, 0, sizeof *a);
}

/* Until every query of the channel is answered or timed out. */
static void wait_answers(ares_channel ch)
{
    for (;;) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        /* ARES_GETSOCK_WRITABLE shifts a signed 1 into the sign bit for
         * the last socket: test the bits unsigned. */
        unsigned bits = (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
        struct pollfd p[ARES_GETSOCK_MAXNUM];
        nfds_t n = 0;
        for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short events = (short)((bits & (1u << i) ? POLLIN : 0) |
                                   (bits & (1u << (i + ARES_GETSOCK_MAXNUM)) ? POLLOUT : 0));
            if (!events) continue;
            p[n].fd = socks[i];
            p[n].events = events;
            p[n++].revents = 0;
        }
        if (n == 0) return;
        struct timeval tv, *tvp = ares_timeout(ch, NULL, &tv);
        int ms = tvp ? (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000) : 1000;
        int ready = poll(p, n, ms);
        if (ready < 0 && errno != EINTR) return;
        if (ready <= 0) {
            ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            continue;
        }
        for (nfds_t i = 0; i < n; i++)
            ares_process_fd(
                ch, (p[i].revents & (POLLIN | POLLERR | POLLHUP)) ? p[i].fd : ARES_SOCKET_BAD,
                (p[i].revents & POLLOUT) ? p[i].fd : ARES_SOCKET_BAD);
    }
}

/* Found nothing, as opposed to could not ask. */
static bool is_absent(int status)
{
    return status == ARES_ENODATA || status == ARES_ENOTFOUND;
}

static int count_addresses(const answer_t *a, bool is_v6)
{
    if (a->status != ARES_SUCCESS) return 0;
    struct ares_addrttl v4[32];
    struct ares_addr6ttl v6[32];
    int n = 32;
    int rc = is_v6 ? ares_parse_aaaa_reply(a->abuf, a->alen, NULL, v6, &n)
                   : ares_parse_a_reply(a->abuf, a->alen, NULL, v4, &n);
    return rc == ARES_SUCCESS ? n : 0;
}

enum { SRV_CLIENT, SRV_CLIENT_TLS, SRV_SERVER, SRV_SERVER_TLS, NSERVICES };
static const char *const services[NSERVICES] = {"_xmpp-client._tcp", "_xmpps-client._tcp",
                                                "_xmpp-server._tcp", "_xmpps-server._tcp"};

typedef struct target {
    char host[256];
    int service; /* the first service that names it */
    answer_t a, aaaa;
} target_t;

typedef struct domain_dns {
    answer_t srv[NSERVICES], a, aaaa;
    int nsrv[NSERVICES]; /* records, "." excluded */
    target_t targets[MAX_TARGETS];
    int ntargets;
} domain_dns_t;

static void add_targets(domain_dns_t *d, int service)
{
    const answer_t *ans = &d->srv[service];
    if (ans->status != ARES_SUCCESS) return;
    struct ares_srv_reply *reply = NULL;
    if (ares_parse_srv_reply(ans->abuf, ans->alen, &reply) != ARES_SUCCESS) return;
    int kept = 0;
    for (struct ares_srv_reply *r = reply; r && kept < MAX_SRV; r = r->next) {
        if (!r->host || !*r->host || strcmp(r->host, ".") == 0) continue;
        kept++;
        bool is_known = false;
        for (int i = 0; i < d->ntargets && !is_known; i++)
            is_known = strcasecmp(d->targets[i].host, r->host) == 0;
        if (is_known || d->ntargets == MAX_TARGETS) continue;
        target_t *t = &d->targets[d->ntargets++];
        snprintf(t->host, sizeof t->host, "%s", r->host);
        t->service = service;
    }
    d->nsrv[service] = kept;
    ares_free_data(reply);
}

/* The first lookup of d that could not be made, or NULL. */
static const answer_t *first_failure(const domain_dns_t *d)
{
    const answer_t *all[NSERVICES + 2] = {&d->srv[0], &d->srv[1], &d->srv[2],
                                          &d->srv[3], &d->a,      &d->aaaa};
    for (int i = 0; i < NSERVICES + 2; i++)
        if (all[i]->status != ARES_SUCCESS && !is_absent(all[i]->status)) return all[i];
    return NULL;
}

/* A target the certificate does not carry, when it does not name the
 * domain either. */
static void check_target_name(check_t *k, const char *domain, const target_t *t)
{
    bool is_server = t->service >= SRV_SERVER;
    char cert[TLS_PATH_MAX], key[TLS_PATH_MAX];
    check_cert_paths(k, is_server ? "s2s" : "c2s", is_server ? domain : k->domains[0], cert, key);
    if (access(cert, R_OK) < 0 || check_cert_names(cert, domain) ||
        check_cert_has_host(cert, t->host))
        return;
    check_warning(k,
                  "%s certificate %s names neither %s nor its SRV target %s — get one that "
                  "names %s",
                  is_server ? "s2s" : "c2s", cert, domain, t->host, domain);
}

static void report_domain(check_t *k, const char *domain, domain_dns_t *d)
{
    const answer_t *failed = first_failure(d);
    if (failed) {
        const char *ns = config_get(k->config, "resolver.nameserver");
        check_warning(k,
                      "cannot look up %s in DNS: %s — check the name servers (%s); what DNS "
                      "says of %s is not checked",
                      domain, ares_strerror(failed->status), ns && *ns ? ns : "/etc/resolv.conf",
                      domain);
        return;
    }
    bool has_address = count_addresses(&d->a, false) + count_addresses(&d->aaaa, true) > 0;
    if (check_runs(k, "s2s") && !has_address && !d->nsrv[SRV_SERVER] && !d->nsrv[SRV_SERVER_TLS])
        check_warning(k,
                      "other servers can't find you: %s has no _xmpp-server._tcp or "
                      "_xmpps-server._tcp SRV record and no A/AAAA record — publish "
                      "_xmpp-server._tcp.%s SRV (port 5269) and _xmpps-server._tcp.%s SRV (port "
                      "5270) records naming this host, or an A record for %s",
                      domain, domain, domain, domain);
    if (check_runs(k, "c2s") && !has_address && !d->nsrv[SRV_CLIENT] && !d->nsrv[SRV_CLIENT_TLS])
        check_warning(k,
                      "clients can't find you: %s has no _xmpp-client._tcp or "
                      "_xmpps-client._tcp SRV record and no A/AAAA record — publish "
                      "_xmpp-client._tcp.%s SRV (port 5222) and _xmpps-client._tcp.%s SRV (port "
                      "5223) records naming this host, or an A record for %s",
                      domain, domain, domain, domain);
    for (int i = 0; i < d->ntargets; i++) {
        const target_t *t = &d->targets[i];
        if (t->a.status != ARES_SUCCESS && !is_absent(t->a.status) &&
            t->aaaa.status != ARES_SUCCESS && !is_absent(t->aaaa.status))
            check_warning(k,
                          "cannot look up %s, the SRV target of %s.%s: %s — check the name "
                          "servers",
                          t->host, services[t->service], domain, ares_strerror(t->a.status));
        else if (count_addresses(&t->a, false) + count_addresses(&t->aaaa, true) == 0)
            check_warning(k,
                          "%s.%s points to %s, which does not resolve (no A or AAAA record) — "
                          "publish its address, or fix the SRV record",
                          services[t->service], domain, t->host);
        check_target_name(k, domain, t);
    }
}

static bool is_localhost(const char *domain)
{
    size_t n = strlen(domain);
    return strcmp(domain, "localhost") == 0 ||
           (n > 10 && strcmp(domain + n - 10, ".localhost") == 0);
}

void check_dns(check_t *k)
{
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        check_warning(k, "DNS not checked: c-ares: %s — run again, or use --no-dns",
                      ares_strerror(rc));
        return;
    }
    struct ares_options o = {.timeout = (int)config_ms(k->config, "resolver.timeout"), .tries = 2};
    ares_channel ch;
    rc = ares_init_options(&ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    const char *ns = config_get(k->config, "resolver.nameserver");
    if (rc == ARES_SUCCESS && ns && *ns &&
        (rc = ares_set_servers_ports_csv(ch, ns)) != ARES_SUCCESS)
        ares_destroy(ch);
    if (rc != ARES_SUCCESS) {
        check_warning(k,
                      "DNS not checked: %s%s%s — fix resolver.nameserver (host:port, "
                      "separated by commas), or use --no-dns",
                      ns && *ns ? ns : "", ns && *ns ? ": " : "", ares_strerror(rc));
        ares_library_cleanup();
        return;
    }
    for (int i = 0; i < k->ndomains; i++) {
        const char *domain = k->domains[i];
        if (is_localhost(domain)) continue;
        domain_dns_t *d = calloc(1, sizeof *d);
        if (!d) log_fatal("out of memory");
        for (int s = 0; s < NSERVICES; s++) {
            char name[512];
            snprintf(name, sizeof name, "%s.%s", services[s], domain);
            ares_query(ch, name, C_IN, T_SRV, on_answer, &d->srv[s]);
        }
        ares_query(ch, domain, C_IN, T_A, on_answer, &d->a);
        ares_query(ch, domain, C_IN, T_AAAA, on_answer, &d->aaaa);
        wait_answers(ch);
        for (int s = 0; s < NSERVICES; s++)
            add_targets(d, s);
        for (int t = 0; t < d->ntargets; t++) {
            ares_query(ch, d->targets[t].host, C_IN, T_A, on_answer, &d->targets[t].a);
            ares_query(ch, d->targets[t].host, C_IN, T_AAAA, on_answer, &d->targets[t].aaaa);
        }
        wait_answers(ch);
        report_domain(k, domain, d);
        for (int s = 0; s < NSERVICES; s++)
            answer_free(&d->srv[s]);
        answer_free(&d->a);
        answer_free(&d->aaaa);
        for (int t = 0; t < d->ntargets; t++) {
            answer_free(&d->targets[t].a);
            answer_free(&d->targets[t].aaaa);
        }
        free(d);
    }
    ares_destroy(ch);
    ares_library_cleanup();
}

/* ---- ports ---------------------------------------------------------------- */

typedef struct address {
    bool is_unix;
    int family;
    struct sockaddr_storage ss;
    socklen_t len;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int port;
} address_t;

/* "host:port", "[v6]:port" or "unix:/path", numeric hosts only (as
 * conn_listen takes them). */
static int parse_address(const char *text, address_t *a)
{
    memset(a, 0, sizeof *a);
    if (strncmp(text, "unix:", 5) == 0) {
        if (!text[5] || strlen(text + 5) >= sizeof a->path) return -1;
        a->is_unix = true;
        snprintf(a->path, sizeof a->path, "%s", text + 5);
        return 0;
    }
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || !colon[1]) return -1;
    size_t n = (size_t)(colon - text);
    if (text[0] == '[') {
        if (n < 2 || text[n - 1] != ']') return -1;
        text++;
        n -= 2;
    }
    if (n >= sizeof host) return -1;
    memcpy(host, text, n);
    host[n] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) return -1;
    a->port = (int)port;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        a->family = v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        a->len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        a->family = v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        a->len = sizeof *v6;
    } else {
        return -1;
    }
    return 0;
}

/* The inodes of the listening sockets on port (TCP) or at path (Unix). */
static int find_sockets(const address_t *a, unsigned long inodes[MAX_HOLDERS])
{
    int n = 0;
    const char *files[] = {a->is_unix ? "/proc/net/unix" : "/proc/net/tcp",
                           a->is_unix ? NULL : "/proc/net/tcp6"};
    for (int f = 0; f < 2 && files[f]; f++) {
        FILE *in = fopen(files[f], "r");
        if (!in) continue;
        char line[1024];
        if (!fgets(line, sizeof line, in)) line[0] = '\0'; /* the header */
        while (fgets(line, sizeof line, in) && n < MAX_HOLDERS) {
            unsigned long inode = 0;
            if (a->is_unix) {
                /* Num RefCount Protocol Flags Type St Inode Path */
                char path[sizeof a->path + 1] = "";
                if (sscanf(line, "%*s %*s %*s %*s %*s %*s %lu %108s", &inode, path) == 2 &&
                    strcmp(path, a->path) == 0)
                    inodes[n++] = inode;
                continue;
            }
            /* sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode */
            char local[64];
            unsigned state = 0;
            if (sscanf(line, "%*s %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &state, &inode) != 3)
                continue;
            const char *colon = strchr(local, ':');
            if (state != 0x0A || !colon || (int)strtol(colon + 1, NULL, 16) != a->port) continue;
            inodes[n++] = inode;
        }
        fclose(in);
    }
    return n;
}

/* The pid of the process holding one of the sockets, and its name; 0 if
 * none is visible to this user. */
static pid_t find_holder(const unsigned long *inodes, int n, char *name, size_t size)
{
    DIR *proc = opendir("/proc");
    if (!proc) return 0;
    pid_t found = 0;
    for (struct dirent *e; !found && (e = readdir(proc));) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        char dir[300];
        snprintf(dir, sizeof dir, "/proc/%s/fd", e->d_name);
        DIR *fds = opendir(dir);
        if (!fds) continue;
        for (struct dirent *f; !found && (f = readdir(fds));) {
            char link[600], target[64];
            snprintf(link, sizeof link, "%s/%s", dir, f->d_name);
            ssize_t len = readlink(link, target, sizeof target - 1);
            if (len <= 0) continue;
            target[len] = '\0';
            unsigned long inode = 0;
            if (sscanf(target, "socket:[%lu]", &inode) != 1) continue;
            for (int i = 0; i < n && !found; i++)
                if (inodes[i] == inode) found = (pid_t)atol(e->d_name);
        }
        closedir(fds);
    }
    closedir(proc);
    if (!found) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/comm", (long)found);
    FILE *in = fopen(path, "r");
    if (!in || !fgets(name, (int)size, in)) snprintf(name, size, "?");
    if (in) fclose(in);
    name[strcspn(name, "\n")] = '\0';
    return found;
}

/* pid is one of this installation's daemons: in a pid file of
 * STATEDIR/run, or a hearth-* whose -c is this config file. */
static bool is_ours(const check_t *k, pid_t pid, const char *name)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/run", config_get(k->config, "statedir"));
    DIR *run = opendir(path);
    for (struct dirent *e; run && (e = readdir(run));) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".pid") != 0) continue;
        char file[PATH_MAX + 400];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        FILE *in = fopen(file, "r");
        long listed = 0;
        bool is_listed = in && fscanf(in, "%ld", &listed) == 1 && listed == (long)pid;
        if (in) fclose(in);
        if (is_listed) {
            closedir(run);
            return true;
        }
    }
    if (run) closedir(run);
    if (strncmp(name, "hearth-", 7) != 0) return false;
    /* Its command line: NUL-separated arguments. */
    snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
    FILE *in = fopen(path, "r");
    if (!in) return false;
    char args[8192];
    size_t len = fread(args, 1, sizeof args - 1, in);
    fclose(in);
    args[len] = '\0';
    char mine[PATH_MAX], theirs[PATH_MAX], cwd[PATH_MAX + 8];
    if (!realpath(config_file(k->config), mine)) return false;
    snprintf(cwd, sizeof cwd, "/proc/%ld/cwd/", (long)pid);
    for (size_t i = 0; i < len; i += strlen(args + i) + 1) {
        if (strcmp(args + i, "-c") != 0 || i + 3 > len) continue;
        const char *file = args + i + 3;
        char full[2 * PATH_MAX + 16];
        snprintf(full, sizeof full, "%s%s", file[0] == '/' ? "" : cwd, file);
        if (realpath(full, theirs) && strcmp(mine, theirs) == 0) return true;
    }
    return false;
}

static void report_in_use(check_t *k, const char *setting, const char *addr, const address_t *a)
{
    unsigned long inodes[MAX_HOLDERS];
    int n = find_sockets(a, inodes);
    char name[64] = "";
    pid_t pid = n > 0 ? find_holder(inodes, n, name, sizeof name) : 0;
    if (pid && is_ours(k, pid, name))
        check_note(k, "%s %s: in use by the running %s (pid %ld)", setting, addr, name, (long)pid);
    else if (pid)
        check_error(k,
                    "%s %s is in use by %s (pid %ld) — stop it, or choose another address "
                    "for %s",
                    setting, addr, name, (long)pid, setting);
    else
        check_error(k,
                    "%s %s is in use by another program (ss -ltnp shows which) — stop it, or "
                    "choose another address for %s",
                    setting, addr, setting);
}

static void check_unix(check_t *k, const char *setting, const char *addr, const address_t *a)
{
    struct stat st;
    if (lstat(a->path, &st) < 0) return; /* the router makes it */
    if (!S_ISSOCK(st.st_mode)) {
        check_error(k,
                    "%s %s: %s exists and is not a socket — remove it, or choose another "
                    "path",
                    setting, addr, a->path);
        return;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", a->path);
    bool is_live = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
    if (fd >= 0) close(fd);
    if (is_live) report_in_use(k, setting, addr, a); /* else stale: the router replaces it */
}

static void check_address(check_t *k, const char *setting, const char *addr)
{
    address_t a;
    if (parse_address(addr, &a) < 0) {
        check_error(k,
                    "%s %s is not an address — write IP:port, [IPv6]:port or unix:/path "
                    "(numeric addresses only)",
                    setting, addr);
        return;
    }
    if (a.is_unix) {
        check_unix(k, setting, addr, &a);
        return;
    }
    int fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        check_error(k, "%s %s: %s — this machine cannot open such a socket", setting, addr,
                    strerror(errno));
        return;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    int rc = bind(fd, (struct sockaddr *)&a.ss, a.len);
    if (rc == 0) rc = listen(fd, 1);
    int e = errno;
    close(fd);
    if (rc == 0) return;
    if (e == EADDRINUSE)
        report_in_use(k, setting, addr, &a);
    else if (e == EADDRNOTAVAIL)
        check_error(k,
                    "%s %s is not an address of this machine — use one of its addresses, or "
                    "0.0.0.0 / [::] for all",
                    setting, addr);
    else if (e == EACCES && a.port < 1024 && geteuid() != 0)
        check_note(k,
                   "%s %s: ports below 1024 can only be bound by root (start hearthd as "
                   "root: the daemons bind them, then drop privileges)",
                   setting, addr);
    else
        check_error(k, "%s %s cannot be bound: %s — choose another address", setting, addr,
                    strerror(e));
}

static void check_setting(check_t *k, const char *daemon, const char *setting)
{
    if (!check_runs(k, daemon)) return;
    int n = config_count(k->config, setting);
    for (int i = 0; i < (n ? n : 1); i++) {
        const char *addr =
            n ? config_get_at(k->config, setting, i) : config_get(k->config, setting);
        if (addr && *addr) check_address(k, setting, addr);
    }
}

void check_ports(check_t *k)
{
    check_setting(k, "router", "router.listen");
    check_setting(k, "c2s", "c2s.listen");
    check_setting(k, "c2s", "c2s.listen-tls");
    check_setting(k, "s2s", "s2s.listen");
    check_setting(k, "s2s", "s2s.listen-tls");
}
