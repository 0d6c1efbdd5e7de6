/* settings.c — every setting hearth.xml may hold, for every daemon.
 *
 * One table for the whole file, so any daemon can reject a misspelt setting
 * anywhere in it. A daemon adds its section here. Defaults are written as
 * they would be in the file; etc/hearth.xml documents the same settings. */
#include "config.h"

/* configure's $(localstatedir)/lib/hearth (Makefile.am), where make install
 * creates the state directory. */
#ifndef STATEDIR
#define STATEDIR "/var/lib/hearth"
#endif

#define SECTION(p, rep, h) {p, CFG_SECTION, NULL, rep, 0, 0, NULL, h}
#define STRING(p, d, h) {p, CFG_STRING, d, false, 0, 0, NULL, h}
#define STRINGS(p, d, h) {p, CFG_STRING, d, true, 0, 0, NULL, h}
#define INT(p, d, lo, hi, h) {p, CFG_INT, d, false, lo, hi, NULL, h}
#define BOOL(p, d, h) {p, CFG_BOOL, d, false, 0, 0, NULL, h}
#define SIZE(p, d, h) {p, CFG_SIZE, d, false, 0, 0, NULL, h}
#define DURATION(p, d, h) {p, CFG_DURATION, d, false, 0, 0, NULL, h}
#define CHOICE(p, d, c, h) {p, CFG_CHOICE, d, false, 0, 0, c, h}

const cfg_setting_t cfg_settings[] = {
    /* shared */
    STRINGS("domain", "localhost", "a domain this server serves"),
    STRING("user", "hearth",
           "account daemons started as root run as once their ports are open; root keeps root"),
    STRING("statedir", STATEDIR, "where daemons keep their data"),
    SECTION("log", false, "logging of every daemon"),
    CHOICE("log@level", "info", "debug|info|notice|warn|error", "lowest level logged"),
    STRING("log@target", "stderr", "stderr, syslog, or a file path"),

    /* storage (storage/) */
    SECTION("storage", false, "where users' data are kept"),
    CHOICE("storage.driver", "sqlite", "sqlite|pgsql", "sqlite (embedded) or pgsql"),
    STRING("storage.sqlite", "", "SQLite database file (default: STATEDIR/hearth.sqlite)"),
    STRING("storage.pgsql", "", "PostgreSQL connection string, e.g. host=/run/postgresql dbname=hearth"),

    /* c2s (c2s/) */
    SECTION("c2s", false, "client connections"),
    DURATION("c2s.token-expiry", "168h",
             "how long a token of hearthctl invite or reset lets its registration through"),
    STRINGS("c2s.listen", "0.0.0.0:5222", "address for clients with STARTTLS; repeat for more"),
    STRINGS("c2s.listen-tls", "0.0.0.0:5223",
            "address for clients with direct TLS (XEP-0368); repeat for more, empty disables"),
    INT("c2s.processes", "0", 0, 256, "c2s processes the supervisor starts (0: one per core)"),
    STRING("c2s.cert", "",
           "PEM certificate for clients (default: STATEDIR/tls/DOMAIN.pem, self-signed at first start)"),
    STRING("c2s.key", "", "PEM key of that certificate (default: STATEDIR/tls/DOMAIN.key)"),
    BOOL("c2s.require-tls", "true", "clients must STARTTLS before they authenticate"),
    BOOL("c2s.registration", "false", "clients may create accounts (XEP-0077 in-band registration)"),
    SIZE("c2s.max-stanza", "256k", "largest stanza a client may send (policy-violation)"),
    SIZE("c2s.max-queue", "1M",
         "bytes waiting for a client that does not read them, beyond which it is disconnected "
         "(policy-violation); at least c2s.max-stanza"),
    SIZE("c2s.hold-max", "8M",
         "bytes of stanzas one c2s process holds for its sessions while their session manager "
         "or the router restarts; past it they are answered service-unavailable"),
    DURATION("c2s.hold-time", "60s",
             "how long stanzas wait for a session manager (or router) that is away before they "
             "are answered service-unavailable"),
    INT("c2s.max-connections", "100000", 1, 10000000, "client connections per c2s process"),
    INT("c2s.max-connections-per-ip", "100", 1, 10000000,
        "client connections from one address (IPv6: one c2s.ipv6-prefix) per c2s process"),
    INT("c2s.max-pending-per-ip", "20", 1, 10000000,
        "connections from one address per c2s process that have not logged in yet; more are refused at once"),
    INT("c2s.ipv6-prefix", "64", 1, 128,
        "leading bits of an IPv6 address that the per-address limits count as one address"),
    DURATION("c2s.header-timeout", "10s",
             "time from connecting to the client's stream header (connection-timeout); 0 never"),
    DURATION("c2s.auth-timeout", "30s",
             "time from connecting to a session, TLS, login and resource binding included "
             "(connection-timeout); 0 never"),
    INT("c2s.rate", "100", 1, 1000000,
        "stanzas per second a client may send, from its first (login too); reading pauses beyond it"),
    INT("c2s.burst", "200", 1, 1000000, "stanzas a client may send at once above the rate"),
    INT("c2s.auth-failures", "5", 1, 1000, "failed logins on one stream before it is closed"),
    INT("c2s.auth-rate", "6", 1, 60000,
        "login attempts per minute evaluated for one address past c2s.auth-burst, every c2s "
        "of the host together; an attempt counts as failed until it succeeds"),
    INT("c2s.auth-burst", "5", 1, 1000,
        "login attempts one address may have evaluated at once before each waits its turn"),
    INT("c2s.registration-rate", "10", 1, 1000000,
        "accounts one address may register per hour, every c2s of the host together"),
    INT("c2s.registration-rate-total", "100", 1, 100000000,
        "accounts the host may register per hour, from all addresses"),
    DURATION("c2s.idle-release", "1s",
             "silence after which a connection gives its XML parser's memory back "
             "(rebuilt from its next bytes); 0 never"),
    DURATION("c2s.ping-interval", "5m", "silence after which the server pings a client (XEP-0199); 0 never"),
    DURATION("c2s.idle-timeout", "10m",
             "silence after which a client is disconnected (unanswered ping, or before login); 0 never"),
    STRING("c2s.metrics-listen", "",
           "address of GET /metrics (Prometheus); c2s-N listens on its port + N - 1; empty: off"),

    /* router */
    SECTION("router", false, "the router every daemon connects to"),
    STRING("router.listen", "127.0.0.1:5347",
           "address the router listens on and daemons connect to (host:port or unix:/path)"),
    SECTION("router.account", true,
            "the router account of one Hearth daemon (SASL SCRAM-SHA-256); one per role"),
    CHOICE("router.account@role", NULL, "c2s|sm|s2s|resolver|admin",
           "the daemon: it fixes the names the account may bind and what the others trust it with"),
    STRING("router.account@name", NULL, "account name (default: the role)"),
    STRING("router.account@password", NULL, "its password"),
    STRING("router.account@password-file", NULL,
           "a file whose first line is the password, instead of password"),
    STRING("router.user", "hearth",
           "older configs: one account shared by every daemon (warned about; use router/account)"),
    STRING("router.password", NULL, "older configs: the password of that shared account"),
    SECTION("router.component", true, "the account of another native component (SASL SCRAM-SHA-256)"),
    STRING("router.component@name", NULL, "account name"),
    STRING("router.component@password", NULL, "account password"),
    STRING("router.component@password-file", NULL,
           "a file whose first line is the password, instead of password"),
    STRING("router.component@bind", NULL,
           "the names it may bind, separated by spaces; * matches any characters "
           "(never a local domain or a name of the Hearth daemons)"),
    SECTION("router.external", true, "a third-party XEP-0114 component"),
    STRING("router.external@name", NULL, "the domain it binds"),
    STRING("router.external@secret", NULL, "its handshake secret"),
    STRING("router.external@secret-file", NULL,
           "a file whose first line is the secret, instead of secret"),
    SIZE("router.max-stanza", "1M", "largest packet a component may send"),
    STRING("router.metrics-listen", "", "address of GET /metrics (Prometheus); empty: off"),
    SIZE("router.write-limit", "1M", "bytes queued to one component before its senders pause"),
    SIZE("router.max-queue", "64M",
         "bytes queued to one component that does not read (its own bounces, adverts) before "
         "it is disconnected"),
    DURATION("router.shard-grace", "10s",
             "how long an sm shard whose link died keeps its users (their packets wait for it "
             "to come back) before they move to the other shards; 0 moves them at once"),
    INT("router.max-connections", "1000", 1, 100000, "components connected at once"),
    BOOL("router.require-tls", "false",
         "components on this machine must STARTTLS too (those on other hosts always must)"),
    STRING("router.ca", NULL,
           "PEM file daemons trust for the router's certificate (default: the system's CAs)"),
    STRING("router.tls-name", "router", "the name the router's certificate must carry"),
    SECTION("router.tls", false, "certificate for STARTTLS with components on other hosts"),
    STRING("router.tls@cert", NULL, "PEM certificate file"),
    STRING("router.tls@key", NULL, "PEM key file"),

    /* sm (sm/) */
    SECTION("sm", false, "the session manager: sessions, presence, roster, offline messages"),
    INT("sm.shards", "1", 1, 1024,
        "sm processes sharing the users; with more than one, stanzas between users go through the router"),
    STRING("sm.direct-listen", "127.0.0.1:0",
           "loopback address (port 0: any free one) where each c2s on this machine links to the "
           "sm directly, so a session's stanzas skip the router; empty: everything through the "
           "router (always so with sm.shards above 1)"),
    DURATION("sm.c2s-grace", "10s",
             "how long the sm keeps the sessions of a c2s process it lost sight of (the router "
             "restarting) for that c2s to come back, before it ends them"),
    SIZE("sm.hold-max", "8M",
         "bytes of stanzas the sm holds for the sessions of c2s processes it lost sight of; "
         "past it they are dropped"),
    INT("sm.offline-quota", "1000", 0, 1000000,
        "messages kept for one offline user; a full queue answers service-unavailable"),
    SIZE("sm.vcard-max", "64k", "largest vCard a user may store (XEP-0054), serialized"),
    SIZE("sm.private-max", "64k", "largest element of private XML storage (XEP-0049)"),
    INT("sm.private-count", "100", 1, 100000,
        "elements (namespaces) one user may keep in private XML storage"),
    INT("sm.roster-max", "5000", 1, 1000000,
        "roster items one user may have; more are refused with resource-constraint"),
    INT("sm.blocklist-max", "1000", 1, 100000, "JIDs one user may block (XEP-0191)"),
    BOOL("sm.version-os", "false", "software version queries (XEP-0092) tell the operating system"),
    STRING("sm.metrics-listen", "", "address of GET /metrics (Prometheus); empty: off"),
    STRING("sm.api-listen", "",
           "address of the HTTP admin API (JSON under /api/v1; loopback recommended); empty: off"),
    STRING("sm.api-token-file", "",
           "file whose first line is the admin API's bearer token (required with sm/api-listen)"),
    STRINGS("sm.admin", "",
            "bare JID of an administrator: may run the admin commands over XMPP (XEP-0133); repeat for more"),
    SECTION("sm.external-service", true,
            "a STUN or TURN service offered to clients for calls (XEP-0215); repeat for more"),
    CHOICE("sm.external-service@type", NULL, "stun|stuns|turn|turns", "what it is"),
    STRING("sm.external-service@host", NULL, "its host name or address, as clients reach it"),
    INT("sm.external-service@port", "3478", 1, 65535, "its port"),
    CHOICE("sm.external-service@transport", "udp", "udp|tcp", "udp or tcp"),
    STRING("sm.external-service@secret", NULL,
           "TURN: the secret shared with the TURN server (coturn's static-auth-secret)"),
    STRING("sm.external-service@secret-file", NULL, "TURN: a file whose first line is that secret"),
    INT("sm.external-service@ttl", "86400", 60, 2592000,
        "TURN: seconds the credentials handed out stay good"),
    SECTION("sm.contact", true,
            "an address of the server's operators, in its disco (XEP-0157); repeat for more"),
    CHOICE("sm.contact@type", NULL, "abuse|admin|feedback|sales|security|status|support",
           "what the address is for"),
    STRING("sm.contact@address", NULL, "a URI: mailto:..., xmpp:..., https://..."),
    INT("sm.adhoc-sessions", "5", 1, 100,
        "ad-hoc command sessions (XEP-0050) one user may have open at a time"),
    DURATION("sm.adhoc-timeout", "10m",
             "an ad-hoc command session left this long without a reply is forgotten"),
    INT("sm.user-invites", "0", 0, 1000,
        "unexpired invitations (XEP-0401) each user may make from a client; 0: only administrators"),

    /* resolver (resolver/) */
    SECTION("resolver", false, "DNS lookups for s2s (hearth-resolver)"),
    STRING("resolver.nameserver", "",
           "DNS servers to ask, host:port separated by commas (default: those of /etc/resolv.conf)"),
    DURATION("resolver.timeout", "5s", "how long one DNS query waits for an answer (asked twice)"),
    DURATION("resolver.negative-ttl", "30s", "how long a failed lookup is remembered"),
    DURATION("resolver.max-ttl", "1h", "longest an answer is cached, whatever its DNS TTL"),
    INT("resolver.cache-size", "10000", 1, 10000000, "domains the cache holds"),
    STRING("resolver.metrics-listen", "", "address of GET /metrics (Prometheus); empty: off"),
    SECTION("resolver.override", true,
            "a static target for a domain, used instead of DNS; repeat for more targets, in order"),
    STRING("resolver.override@domain", NULL, "the remote domain"),
    STRING("resolver.override@target", NULL, "IP:port or [IPv6]:port to connect to"),
    CHOICE("resolver.override@tls", "starttls", "starttls|direct", "STARTTLS, or TLS from the first byte"),

    /* s2s (s2s/) */
    SECTION("s2s", false, "federation with other servers"),
    STRING("s2s.listen", "0.0.0.0:5269", "address where other servers connect (STARTTLS); empty: none"),
    STRING("s2s.listen-tls", "0.0.0.0:5270",
           "address where other servers connect with direct TLS (XEP-0368); empty: none"),
    SECTION("s2s.route", true, "a static route to a remote domain, used before DNS"),
    STRING("s2s.route@domain", NULL, "the remote domain"),
    STRING("s2s.route@target", NULL, "its server's numeric address, host:port"),
    CHOICE("s2s.route@tls", "starttls", "starttls|direct", "STARTTLS, or TLS from the first byte"),
    STRING("s2s.cert", "", "PEM certificate of the local domains (default: STATEDIR/tls/DOMAIN.pem)"),
    STRING("s2s.key", "", "PEM key of that certificate (default: STATEDIR/tls/DOMAIN.key)"),
    SECTION("s2s.certificate", true, "the certificate of one local domain, instead of s2s/cert"),
    STRING("s2s.certificate@domain", NULL, "the local domain"),
    STRING("s2s.certificate@cert", NULL, "its PEM certificate"),
    STRING("s2s.certificate@key", NULL, "its PEM key"),
    STRINGS("s2s.ca", "", "PEM file of CAs trusted besides the system's; repeat for more"),
    BOOL("s2s.require-tls", "true", "streams to and from other servers must use TLS"),
    CHOICE("s2s.auth", "dialback", "certificate|dialback",
           "how other servers prove their domain: a valid certificate, or dialback without one"),
    SECTION("s2s.peer", true, "the policy for one remote domain"),
    STRING("s2s.peer@domain", NULL, "the remote domain"),
    CHOICE("s2s.peer@auth", NULL, "certificate|dialback|block",
           "as s2s/auth, or block: no federation with it"),
    STRING("s2s.dialback-secret", "", "secret of the dialback keys (default: random at each start)"),
    STRING("s2s.dialback-secret-file", "",
           "file holding that secret, read at start (instead of s2s/dialback-secret)"),
    DURATION("s2s.connect-timeout", "30s", "time to reach a peer before its stanzas bounce"),
    DURATION("s2s.idle-timeout", "10m", "an idle stream is closed after this"),
    SIZE("s2s.max-stanza", "256k", "largest stanza accepted from another server"),
    SIZE("s2s.max-queue", "1M",
         "bytes waiting for one remote domain before stanzas bounce; past it, a stream that is up "
         "ends (its peer does not read), and so does an incoming one whose peer reads no answers"),
    INT("s2s.rate", "2000", 1, 10000000,
        "stanzas per second an incoming stream may send; reading pauses beyond it"),
    INT("s2s.burst", "10000", 1, 10000000, "stanzas an incoming stream may send at once above the rate"),
    INT("s2s.max-connections-per-domain", "10", 1, 100000,
        "incoming streams authenticated for one remote domain"),
    INT("s2s.max-connections", "10000", 1, 1000000, "incoming streams in all"),
    STRING("s2s.metrics-listen", "", "address of GET /metrics (Prometheus); empty: off"),

    /* upload (components/upload/): XEP-0363 HTTP file upload */
    SECTION("upload", false, "HTTP file upload (hearth-upload, XEP-0363)"),
    STRING("upload.listen-tls", "0.0.0.0:5281",
           "address of the HTTPS listener files are sent to and fetched from; empty: none"),
    STRING("upload.listen", "",
           "address of a plain HTTP listener, loopback only (behind a reverse proxy); empty: none"),
    STRING("upload.url", "",
           "the public base URL of the files, e.g. https://upload.example.com (default: "
           "https://DOMAIN:PORT of upload.listen-tls, or the plain listener's address)"),
    STRING("upload.cert", "", "PEM certificate of the HTTPS listener (default: the c2s's)"),
    STRING("upload.key", "", "PEM key of that certificate"),
    STRING("upload.dir", "", "where the files are kept (default: STATEDIR/upload)"),
    SIZE("upload.max-file-size", "10M", "largest file a user may send (file-too-large beyond)"),
    SIZE("upload.user-quota", "100M",
         "bytes one user may upload in 24 hours (resource-constraint beyond); 0: no limit"),
    SIZE("upload.total-quota", "10G",
         "bytes all the files kept may take (resource-constraint beyond); 0: no limit"),
    DURATION("upload.slot-lifetime", "5m", "how long a slot handed out waits for its upload"),
    DURATION("upload.expiry", "168h", "files are deleted this long after their upload; 0 never"),
    INT("upload.max-connections", "1000", 1, 100000, "HTTP connections held at once (503 beyond)"),
    DURATION("upload.timeout", "30s",
             "a connection that sends no byte of a request, or reads none of an answer, for this "
             "long is closed"),
    STRING("upload.metrics-listen", "", "address of GET /metrics (Prometheus); empty: off"),

    /* proxy65 (components/proxy65/): XEP-0065 SOCKS5 bytestreams proxy */
    SECTION("proxy65", false, "SOCKS5 bytestreams proxy (hearth-proxy65, XEP-0065)"),
    STRING("proxy65.listen", "0.0.0.0:7777", "address the SOCKS5 listener binds"),
    STRING("proxy65.host", "",
           "the streamhost address clients are told to connect to (default: the listen address, "
           "or the first domain when it listens on every address)"),
    INT("proxy65.port", "0", 0, 65535, "the streamhost port clients are told (0: the listen port)"),
    INT("proxy65.max-streams-per-user", "10", 1, 10000,
        "bytestreams one user may have activated at once; one more is refused at activation"),
    SIZE("proxy65.rate", "100M", "bytes per second one bytestream may relay; 0: no limit"),
    DURATION("proxy65.idle-timeout", "60s",
             "a bytestream that relays nothing for this long, or a connection not activated "
             "within it, is closed"),
    INT("proxy65.max-connections", "1000", 2, 100000, "SOCKS5 connections held at once"),
    STRING("proxy65.metrics-listen", "", "address of GET /metrics (Prometheus); empty: off"),

    /* http (common/http.c): every HTTP listener (metrics, the admin API) */
    SECTION("http", false, "limits of every HTTP listener (metrics, the admin API)"),
    SIZE("http.max-header", "8k", "request line and headers of one request (431 beyond)"),
    SIZE("http.max-body", "64k", "body of one request (413 beyond)"),
    INT("http.max-connections", "64", 1, 100000,
        "connections one HTTP listener holds at once (503 beyond)"),
    DURATION("http.request-timeout", "10s",
             "time from a request's first byte (or the connection) to its last (408); 0 never"),
    DURATION("http.idle-timeout", "60s", "silence after which a kept-alive connection closes; 0 never"),
    STRING("http.cert", "", "PEM certificate: with http/key, every HTTP listener speaks HTTPS"),
    STRING("http.key", "", "PEM key of that certificate"),

    /* supervisor (tools/hearthd) */
    SECTION("supervisor", false, "the hearthd supervisor"),
    STRING("supervisor.logdir", "", "directory for one log file per daemon (default: statedir/log)"),
    DURATION("supervisor.watchdog", "30s",
             "a daemon whose loop has not turned for this long is killed and restarted; 0 never"),
    STRINGS("supervisor.daemon", NULL,
            "a daemon to run, e.g. router or c2s (default: every one installed)"),

    {NULL, CFG_SECTION, NULL, false, 0, 0, NULL, NULL},
};
