"""hearth_env — what the e2e tests need to run the real daemons.

Finds the binaries of the build under test, picks free ports, writes a
hearth.xml from a dict of settings, starts a daemon with its log in a file,
waits until it accepts connections, and stops it. A daemon that exits with a
non-zero status or is killed by a signal (a sanitizer report, a crash) fails
the test, and every failure shows the tail of the daemon's log.

Storage: an Env keeps its data in SQLite under its statedir (the default),
or, with Env(tmp, storage="pgsql"), in a fresh database of one throwaway
PostgreSQL cluster that the whole session shares (PgCluster: started on
first use with test/pg-cluster, stopped at exit). Env.sql() reads the
store directly for checks.

The fixtures built on this are in conftest.py. Nothing here mocks a daemon:
the tests talk to the real ones.
"""
import atexit
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from xml.sax.saxutils import escape, quoteattr

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("HEARTH_SRCDIR") or os.path.dirname(os.path.dirname(HERE))


def find_builddir():
    """$HEARTH_BUILDDIR (make check sets it), else the build directory this
    run is in (the nearest parent of the current directory holding a
    config.status), else SRCDIR/build."""
    if os.environ.get("HEARTH_BUILDDIR"):
        return os.environ["HEARTH_BUILDDIR"]
    d = os.getcwd()
    while d != os.path.dirname(d):
        if os.path.exists(os.path.join(d, "config.status")):
            return d
        d = os.path.dirname(d)
    return os.path.join(SRCDIR, "build")


BUILDDIR = find_builddir()


def is_sanitized():
    """The build under test was configured --enable-sanitizers: ASan keeps
    freed memory in quarantine, so resident memory says nothing of what the
    code holds; memory bounds are checked on the other builds."""
    try:
        with open(os.path.join(BUILDDIR, "config.status")) as f:
            return "--enable-sanitizers" in f.read()
    except OSError:
        return False


def binary(name):
    """The path of hearth-NAME in the build tree (NAME/ or components/NAME/)."""
    for sub in (name, os.path.join("components", name)):
        path = os.path.join(BUILDDIR, sub, "hearth-" + name)
        if os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(f"hearth-{name} is not built in {BUILDDIR} (run make first)")


_ports_given = set()


def _port_range():
    """This process's share of 20000-32000: with pytest-xdist each worker
    (gw0, gw1, ...) draws from its own slice, so two workers never race
    for the same free port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    span = 12000 // max(count, 1)
    low = 20000 + index * span
    return low, low + span - 1


def free_port(host="127.0.0.1"):
    """A TCP port that nothing listens on now, in 20000-32000: below Linux's
    ephemeral range (32768-60999), so no outgoing connection takes it before
    the daemon binds it, as one from bind(0) could be."""
    low, high = _port_range()
    for _ in range(500):
        port = random.randint(low, high)
        if port in _ports_given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError(f"no free TCP port in {low}-{high}")


def free_port_pair(host="127.0.0.1"):
    """Two consecutive free ports (N, N + 1), both given out: a second
    daemon serves on the next port of a setting's (c2s.metrics-listen), so
    no daemon of a later test may take either."""
    for _ in range(500):
        port = free_port(host)
        if port + 1 in _ports_given or port + 1 >= 32768:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port + 1))
            except OSError:
                continue
        _ports_given.add(port + 1)
        return port
    raise RuntimeError("no two consecutive free ports")


def random_password():
    return secrets.token_urlsafe(18)


def config_xml(settings):
    """The text of a hearth.xml holding settings, keyed by path as config.h
    names them:
        {"router.listen": "127.0.0.1:25347", "log@level": "debug",
         "domain": ["a.example", "b.example"],
         "router.component": [{"name": "bot", "password": "x"}]}
    A list repeats the element; a dict gives an element's attributes."""

    def new():
        return {"attrs": {}, "text": None, "kids": []}

    def child(node, name):
        for n, kid in node["kids"]:
            if n == name:
                return kid
        kid = new()
        node["kids"].append((name, kid))
        return kid

    root = new()
    for path, value in settings.items():
        elems, _, attr = path.partition("@")
        *parents, last = elems.split(".")
        node = root
        for name in parents:
            node = child(node, name)
        if isinstance(value, list):
            for v in value:
                kid = new()
                if isinstance(v, dict):
                    kid["attrs"].update({k: str(x) for k, x in v.items()})
                else:
                    kid["text"] = str(v)
                node["kids"].append((last, kid))
            continue
        node = child(node, last)
        if attr:
            node["attrs"][attr] = str(value)
        elif isinstance(value, dict):
            node["attrs"].update({k: str(x) for k, x in value.items()})
        else:
            node["text"] = str(value)

    def render(name, node, depth):
        pad = "  " * depth
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in node["attrs"].items())
        if node["kids"]:
            inner = [line for n, kid in node["kids"] for line in render(n, kid, depth + 1)]
            return [f"{pad}<{name}{attrs}>"] + inner + [f"{pad}</{name}>"]
        if node["text"] is not None:
            return [f"{pad}<{name}{attrs}>{escape(node['text'])}</{name}>"]
        return [f"{pad}<{name}{attrs}/>"]

    return "<?xml version='1.0'?>\n" + "\n".join(render("hearth", root, 0)) + "\n"


def write_config(path, settings):
    with open(path, "w") as f:
        f.write(config_xml(settings))
    os.chmod(path, 0o600)
    return path


def wait_for(pred, what="condition", timeout=10):
    """pred()'s first true value, asked every 50 ms; fails naming what when
    none comes within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"never true within {timeout}s: {what}")


def wait_log(path, pattern, mark=0, timeout=10):
    """The first match of the regex pattern in the log at path after byte
    mark; fails naming the pattern when none comes within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            f.seek(mark)
            m = re.search(pattern, f.read())
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"{os.path.basename(path)} never logged {pattern!r} within {timeout}s")


def log_size(path):
    """Where the log at path ends now (a mark for wait_log)."""
    return os.path.getsize(path) if os.path.exists(path) else 0


def tail(path, lines=40):
    """The last lines of a file, for failure messages."""
    try:
        with open(path, errors="replace") as f:
            text = f.read().splitlines()
    except OSError as e:
        return f"({path}: {e.strerror})"
    return "\n".join(text[-lines:]) if text else f"({path} is empty)"


def accepts(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def describe(status):
    """An exit status from Popen as words."""
    if status is None:
        return "still running"
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"


class DaemonError(AssertionError):
    pass


_started = set()  # the Popen of every Daemon started and not yet stopped


@atexit.register
def _kill_leftovers():
    """A test that forgot to stop a daemon must not leave it running after
    the session (CI cleans up after itself)."""
    for proc in list(_started):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Daemon:
    """One hearth-NAME process: `hearth-NAME -c CONFIG`, stdout and stderr
    appended to LOGDIR/NAME.log."""

    def __init__(self, name, config_path, logdir, addr=None, ident=None, args=()):
        self.name = name
        self.ident = ident  # -i IDENT when several instances run (c2s-2)
        self.args = list(args)  # more command-line arguments
        self.config_path = config_path
        self.log = os.path.join(logdir, f"{ident or name}.log")
        self.addr = addr  # (host, port) to wait for, or None
        self.proc = None
        self.status = None  # how the last run ended

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def log_tail(self, lines=40):
        return f"--- last lines of {self.log} ---\n{tail(self.log, lines)}"

    def start(self, timeout=10):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [binary(self.name), "-c", self.config_path]
                + (["-i", self.ident] if self.ident else []) + self.args,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        _started.add(self.proc)
        self.status = None
        if self.addr:
            self.wait_listening(timeout)
        return self

    def wait_listening(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError(f"hearth-{self.ident or self.name} {describe(self.proc.returncode)} "
                                  f"before accepting connections\n{self.log_tail()}")
            if accepts(*self.addr):
                return
            time.sleep(0.05)
        raise DaemonError(f"hearth-{self.ident or self.name} does not accept connections on "
                          f"{self.addr[0]}:{self.addr[1]} after {timeout}s\n{self.log_tail()}")

    def stop(self, timeout=10, check=True):
        """SIGTERM, then SIGKILL after timeout seconds. With check, a run
        that did not end with status 0 fails (the log tail says why)."""
        if not self.proc:
            return None
        proc, self.proc = self.proc, None
        _started.discard(proc)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.status = proc.returncode
                raise DaemonError(f"hearth-{self.ident or self.name} still ran {timeout}s after SIGTERM; "
                                  f"killed\n{self.log_tail()}")
        self.status = proc.returncode
        if check and self.status != 0:
            raise DaemonError(f"hearth-{self.ident or self.name} {describe(self.status)}\n{self.log_tail()}")
        return self.status

    def restart(self, timeout=10):
        self.stop()
        return self.start(timeout)

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None


ROLES = ("c2s", "sm", "s2s", "resolver", "admin")
COMPONENTS = {"upload": "upload", "proxy65": "proxy"}  # daemon: the name it binds, before .DOMAIN
TEST_COMPONENT = "testcomp"


class Env:
    """A temporary installation: one directory with hearth.xml, statedir and
    logs, and the daemons started from it. stop_all() stops them in reverse
    order and raises if any ended badly.

    Router accounts, as tools/quickstart writes them: one per role (c2s, sm,
    s2s, resolver, admin) with a random password each (.accounts[role]),
    one component account, "testcomp" (.password), that may bind any
    name but those of the Hearth daemons: what the tests' own components
    (testcomp.py) log in with; and the accounts of the component daemons
    (COMPONENTS: upload, proxy65)."""

    def __init__(self, tmpdir, storage="sqlite", **settings):
        self.dir = str(tmpdir)
        self.statedir = os.path.join(self.dir, "state")
        self.logdir = os.path.join(self.dir, "log")
        os.makedirs(self.statedir, exist_ok=True)
        os.makedirs(self.logdir, exist_ok=True)
        self.port = free_port()
        self.password = random_password()
        self.accounts = {role: random_password() for role in ROLES}
        # the component daemons' accounts, as tools/quickstart writes them:
        # hearth-upload binds upload.DOMAIN, hearth-proxy65 proxy.DOMAIN
        self.components = {name: (prefix, random_password())
                           for name, prefix in COMPONENTS.items()}
        self.settings = {
            "statedir": self.statedir,
            "log@level": "debug",
            "router.listen": f"127.0.0.1:{self.port}",
            "router.account": [{"role": r, "password": pw} for r, pw in self.accounts.items()],
            "router.component": [{"name": TEST_COMPONENT, "password": self.password, "bind": "*"}]
            + [{"name": name, "password": pw, "bind": f"{prefix}.*"}
               for name, (prefix, pw) in self.components.items()],
        }
        if os.geteuid() == 0:
            # CI runs the tests as root: keep root on purpose (daemons
            # started as root otherwise refuse without a hearth account)
            self.settings["user"] = "root"
        # storage: "sqlite" (the default file, statedir/hearth.sqlite) or
        # "pgsql" (a new database hearth_<random> in the session's cluster)
        self.storage = storage
        self.database = None  # the PostgreSQL database's name
        if storage == "pgsql":
            self.database = f"hearth_{secrets.token_hex(6)}"
            self.settings["storage.driver"] = "pgsql"
            self.settings["storage.pgsql"] = pg_cluster().createdb(self.database)
        elif storage != "sqlite":
            raise ValueError(f"storage must be sqlite or pgsql, not {storage!r}")
        self.settings.update(settings)
        self.config_path = os.path.join(self.dir, "hearth.xml")
        self.write_config()
        self.daemons = []  # running, in start order
        self.logs = []  # of every daemon started, for failure reports

    def write_config(self, **changes):
        self.settings.update(changes)
        return write_config(self.config_path, self.settings)

    @property
    def sqlite_path(self):
        return self.settings.get("storage.sqlite") or os.path.join(self.statedir, "hearth.sqlite")

    def sql(self, query):
        """Run one SQL statement on this Env's store, outside the daemons,
        and return its rows as lists of str (None for NULL): for checking
        what was stored. Literal SQL only: no parameters."""
        if self.storage == "pgsql":
            return pg_cluster().sql(self.database, query)
        import sqlite3
        db = sqlite3.connect(f"file:{self.sqlite_path}?mode=rw", uri=True, timeout=10)
        try:
            with db:
                rows = db.execute(query).fetchall()
        finally:
            db.close()
        return [[None if v is None else str(v) for v in row] for row in rows]

    def start(self, name, addr=None, timeout=10):
        """Start hearth-NAME on this config; wait until addr accepts."""
        return self.add(Daemon(name, self.config_path, self.logdir, addr)).start(timeout)

    def add(self, daemon):
        """Have stop_all() stop daemon and the failure report show its log."""
        self.daemons.append(daemon)
        self.logs.append(daemon.log)
        return daemon

    def log_tails(self, lines=30):
        return "\n".join(f"--- last lines of {log} ---\n{tail(log, lines)}"
                         for log in dict.fromkeys(self.logs))

    def stop_all(self):
        errors = []
        for d in reversed(self.daemons):
            try:
                d.stop()
            except DaemonError as e:
                errors.append(str(e))
        self.daemons = []
        if errors:
            raise DaemonError("\n\n".join(errors))


class Router(Daemon):
    """The router of an Env, with what tests need to connect to it."""

    def __init__(self, env):
        super().__init__("router", env.config_path, env.logdir, ("127.0.0.1", env.port))
        self.env = env
        self.host, self.port = self.addr
        # the tests' component account; account(role) gives a daemon's
        self.password = env.password
        self.user = TEST_COMPONENT

    def account(self, role):
        """(user, password) of the router account of a role ("c2s", ...)."""
        return role, self.env.accounts[role]

    @property
    def listen(self):
        return f"{self.host}:{self.port}"


def is_built(name):
    try:
        binary(name)
        return True
    except FileNotFoundError:
        return False


class Server:
    """A whole Hearth for clients on an Env: the router, hearth-sm, then
    hearth-c2s instances c2s-1 .. c2s-N, for the domain "localhost" with
    in-band registration on. Daemons that are not built yet are skipped.

    Every c2s shares the STARTTLS port .port and the direct TLS port
    .tls_port (SO_REUSEPORT: the kernel spreads connections among them). To
    reach one instance on purpose, each also listens on a private STARTTLS
    port, .c2s_ports[i]; for that each instance reads its own copy of
    hearth.xml (LOGDIR/../c2s-N.xml) that adds the private address to
    c2s.listen. Logs: LOGDIR/router.log, sm.log, c2s-1.log, ...

    settings override the defaults above (e.g. {"c2s.registration":
    "false"}); write_config(**changes) changes them for the next (re)start.
    """

    def __init__(self, env, c2s=1, domain="localhost", **settings):
        """domain: the one domain served, or a list of them (the first is
        .domain)."""
        self.env = env
        self.domain = domain if isinstance(domain, str) else domain[0]
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port()
        self.c2s_ports = [free_port() for _ in range(c2s)]
        defaults = {
            "domain": domain,
            "c2s.listen": f"{self.host}:{self.port}",
            "c2s.listen-tls": f"{self.host}:{self.tls_port}",
            "c2s.registration": "true",
        }
        defaults.update(settings)
        self.router = env.add(Router(env))
        self.sm = Daemon("sm", env.config_path, env.logdir) if is_built("sm") else None
        self.c2s = []
        if is_built("c2s"):
            for i, port in enumerate(self.c2s_ports, 1):
                path = os.path.join(env.dir, f"c2s-{i}.xml")
                self.c2s.append(Daemon("c2s", path, env.logdir, (self.host, port), ident=f"c2s-{i}"))
        self.write_config(**defaults)

    def write_config(self, **changes):
        """Change settings (for every daemon) and rewrite the config files."""
        self.env.write_config(**changes)
        for d, port in zip(self.c2s, self.c2s_ports):
            mine = dict(self.env.settings)
            listen = mine.get("c2s.listen", [])
            listen = listen if isinstance(listen, list) else [listen]
            mine["c2s.listen"] = listen + [f"{self.host}:{port}"]
            write_config(d.config_path, mine)

    @property
    def cert_path(self):
        """The c2s certificate (self-signed at the first start) to trust."""
        cert = self.env.settings.get("c2s.cert")
        return cert or os.path.join(self.env.statedir, "tls", f"{self.domain}.pem")

    def start(self, timeout=10):
        """Start what is built and not running, in order; return once the sm
        has bound the domain and every c2s accepts connections."""
        if not self.router.is_running():
            self.router.start(timeout)
        if self.sm and not self.sm.is_running():
            self.start_sm(timeout)
        for d in self.c2s:
            if not d.is_running():
                self.start_c2s(d, timeout)
        return self

    def start_sm(self, timeout=10):
        """Start hearth-sm; wait for the router to log that it bound the
        domain."""
        mark = os.path.getsize(self.router.log) if os.path.exists(self.router.log) else 0
        if self.sm not in self.env.daemons:
            self.env.add(self.sm)
        self.sm.start(timeout)
        self.wait_router_log(f" bound {self.domain}", mark, timeout, self.sm)

    def start_c2s(self, d, timeout=10):
        """Start one c2s; wait until it accepts clients and has bound its
        instance id at the router (so the sm's answers reach it)."""
        mark = os.path.getsize(self.router.log) if os.path.exists(self.router.log) else 0
        if d not in self.env.daemons:
            self.env.add(d)
        d.start(timeout)
        self.wait_router_log(f" bound {d.ident}", mark, timeout, d)

    def wait_router_log(self, text, mark=0, timeout=10, daemon=None):
        """Wait until the router's log holds text after byte offset mark."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.router.log, errors="replace") as f:
                f.seek(mark)
                if text in f.read():
                    return
            if daemon and not daemon.is_running():
                raise DaemonError(f"hearth-{daemon.name} {describe(daemon.proc.returncode)}\n"
                                  f"{daemon.log_tail()}")
            time.sleep(0.05)
        raise DaemonError(f"the router never logged {text!r} within {timeout}s\n"
                          f"{self.router.log_tail()}")

    def stop(self):
        """Stop every daemon of the Env (reverse order); raise if one ended
        badly."""
        self.env.stop_all()


# ---- PostgreSQL ----------------------------------------------------------------

PG_CLUSTER = os.path.join(SRCDIR, "test", "pg-cluster")


def pg_missing():
    """Why PostgreSQL tests cannot run here (no binaries), or None."""
    r = subprocess.run(["bash", PG_CLUSTER, "bindir"], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip() or "no PostgreSQL binaries")


class PgCluster:
    """A throwaway PostgreSQL cluster (test/pg-cluster) in /tmp/hearth-pg-*:
    a Unix socket there and 127.0.0.1:.port, trust auth, user postgres.
    One per session (pg_cluster()); every Env with storage="pgsql" gets its
    own database in it. pause() and resume() stop and start the server
    (the "database down" tests), keeping the data and the port."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hearth-pg-", dir="/tmp")
        self.is_running = False
        out = self._run("start")
        self.conninfo = out.strip().splitlines()[-1]
        fields = dict(f.split("=", 1) for f in self.conninfo.split())
        self.port = int(fields["port"])
        self.is_running = True

    def _run(self, *args):
        r = subprocess.run(["bash", PG_CLUSTER, args[0], self.dir, *args[1:]],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"test/pg-cluster {' '.join(args)} failed: "
                               f"{r.stderr.strip() or r.stdout.strip()}")
        return r.stdout

    def conninfo_for(self, database):
        return f"host={self.dir} port={self.port} user=postgres dbname={database}"

    def createdb(self, name):
        """Create database name; return its conninfo."""
        self._run("createdb", name)
        return self.conninfo_for(name)

    def sql(self, database, query):
        """Rows of query in database, as lists of str (None for NULL)."""
        bindir = subprocess.run(["bash", PG_CLUSTER, "bindir"], capture_output=True,
                                text=True, check=True).stdout.strip()
        null, sep = "\x01NULL\x01", "\x1f"
        r = subprocess.run([os.path.join(bindir, "psql"), "-X", "-q", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", "-F", sep, "-P", f"null={null}",
                            "-d", self.conninfo_for(database), "-c", query],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {query}: {r.stderr.strip()}")
        return [[None if v == null else v for v in line.split(sep)]
                for line in r.stdout.split("\n") if line]

    def pause(self):
        """Stop the server (pg_ctl stop -m fast): clients lose their
        connections and cannot connect until resume()."""
        self._run("pause")
        self.is_running = False

    def resume(self):
        """Start the server again on the same port; returns once it accepts
        connections."""
        self._run("resume")
        self.is_running = True

    def stop(self):
        """Stop the server and remove its directory."""
        subprocess.run(["bash", PG_CLUSTER, "stop", self.dir], capture_output=True, timeout=120)
        self.is_running = False


_pg_cluster = None


def pg_cluster():
    """The session's PgCluster, started on first use."""
    global _pg_cluster
    if _pg_cluster is None:
        _pg_cluster = PgCluster()
    return _pg_cluster


@atexit.register
def stop_pg_cluster():
    """Stop the session's cluster if one was started (also conftest's
    session end)."""
    global _pg_cluster
    if _pg_cluster is not None:
        cluster, _pg_cluster = _pg_cluster, None
        cluster.stop()


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def self_signed(directory, name):
    """A self-signed EC certificate for DNS name `name`, made with openssl;
    (cert, key) paths. Its own CA: trust the cert file to trust it."""
    cert = os.path.join(str(directory), f"{name}.crt")
    key = os.path.join(str(directory), f"{name}.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
             "-keyout", key, "-out", cert)
    return cert, key


class TestCA:
    """A certificate authority made by the test with openssl: `cert` is the
    file peers trust, issue(domain) makes a certificate it signs for
    domain, usable as TLS server and client (s2s presents it both ways)."""
    __test__ = False  # not a pytest test class

    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.cert, self.key = self_signed(self.dir, "ca")

    # subjectAltNames (openssl's syntax) by which a certificate can name a
    # server's domain (RFC 6120 13.7.1.2): a DNS-ID, an SRV-ID (RFC 4985)
    # or an XmppAddr
    DNS_ID = "DNS:{domain}"
    SRV_ID = "otherName:1.3.6.1.5.5.7.8.7;IA5STRING:_xmpp-server.{domain}"
    XMPPADDR = "otherName:1.3.6.1.5.5.7.8.5;UTF8:{domain}"

    def issue(self, domain, san=DNS_ID):
        """A certificate for domain with the subjectAltName san ({domain}
        replaced); unless that is a DNS-ID, its CN names nothing either."""
        cert = os.path.join(self.dir, f"{domain}.crt")
        key = os.path.join(self.dir, f"{domain}.key")
        csr = os.path.join(self.dir, f"{domain}.csr")
        ext = os.path.join(self.dir, f"{domain}.ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName={san.format(domain=domain)}\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
        cn = domain if san == self.DNS_ID else "Test server"
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-subj", f"/CN={cn}", "-keyout", key, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert)
        return cert, key


DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


class Dns:
    """dnsmasq answering for the zone "test" only (anything else in it is
    NXDOMAIN), from command-line records, with TTL ttl."""

    def __init__(self, tmpdir):
        self.dir = str(tmpdir)
        self.port = free_port()
        self.proc = None
        self.log = os.path.join(self.dir, "dnsmasq.log")

    def start(self, *records, ttl=0):
        args = [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                "--no-hosts", f"--port={self.port}", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--local=/test/", f"--local-ttl={ttl}",
                f"--auth-ttl={ttl}", f"--pid-file={os.path.join(self.dir, 'dnsmasq.pid')}",
                f"--log-facility={self.log}", "--log-queries"]
        if os.geteuid() == 0:
            args += ["--user=root", "--group=root"]
        self.proc = subprocess.Popen(args + list(records), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited {self.proc.returncode}: "
                                     f"{self.proc.stderr.read().decode()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"dnsmasq does not listen on {self.port}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc:
            self.proc.stderr.close()
        self.proc = None
