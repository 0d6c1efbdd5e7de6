"""The kill -9 drills of issue 10. A whole Hearth runs under hearthd, the
supervisor (tools/hearthd: it restarts a daemon that dies, after its pause
of 1 s, on its 0.5 s round), with a steady load between pairs of users
(drill.py: real slixmpp clients, 10 messages per second each) spread over
two c2s processes by the kernel (SO_REUSEPORT; each client's c2s is read
from the c2s logs). One daemon is killed with SIGKILL and hearthd brings it
back. The contract each drill asserts:

  - no user of a c2s that was not killed is logged out;
  - every message sent is delivered exactly once to a client that stayed
    online (or came back), or stored offline for one that left: none lost,
    none duplicated, none bounced by Hearth;
  - service is back within 2 s: every interrupted direction (a sender to
    its partner) delivers a message sent after the kill within 2 s of the
    kill, hearthd's pause included.

Drills: the router, the sm, each c2s (its own users drop and log in again
on the other at once; what they were writing when it died, and what was on
its way to them, is counted apart as lost_with_sender and
lost_with_receiver: without stream management neither end can know whether
the other read it), s2s with Prosody as the federated peer (pairs across
the federation; Hearth reaches Prosody by a static route), and the resolver
(pairs across the federation on a link the resolver found before the kill,
and pairs to a second Prosody domain, later.test, whose link must be made
after it). The ghost-session case: two contacts log in, the router is
killed, only one logs in again; the other must be seen unavailable and a
message to it stored offline or answered with an error.

Each drill prints its figures on one line (run with -s to see them):
  drill DAEMON: sent=… delivered=… duplicated=… lost=… bounced=… logged_out=… back_in=…s
and teardown fails if any daemon but the one killed exited. Accounts are
made with hearthctl once the daemons run; the c2s limits on logins per
address are raised, since every client comes from 127.0.0.1."""
import os
import re
import signal
import subprocess

import pytest
from slixmpp.stanza import Message, Presence

from drill import KEY, Load, line
from hearth_env import BUILDDIR, accepts, free_port, is_built, tail, wait_for
from prosody_env import PROSODY, PROSODYCTL
from xmpp_client import Client, befriend

RATE = 10  # messages per second per client
PAIRS = 20  # local pairs: 40 clients over two c2s
FEDERATED = 4  # pairs across the federation in the s2s and resolver drills
LOCAL_WITH_FEDERATION = 8  # local pairs beside them
BEFORE = 2.0  # seconds of load before the kill
AFTER = 2.0  # seconds of load once service is back
BACK_WITHIN = 2.0  # the "service is back within 2 s"
BACK_LIMIT = 10.0  # how long a drill waits for service to come back at all
PASSWORD = "drill-secret"
HEARTHD = os.path.join(BUILDDIR, "tools", "hearthd")

# every client logs in from 127.0.0.1, and those of a killed c2s log in
# again all at once; "bound" lines (info) tell where each client is
LIMITS = {
    "c2s.auth-rate": "60000",
    "c2s.auth-burst": "1000",
    "c2s.max-pending-per-ip": "1000",
    "c2s.max-connections-per-ip": "1000",
    "log@level": "info",
}

needs_local = pytest.mark.skipif(not all(is_built(d) for d in ("c2s", "sm")),
                                 reason="c2s and sm are not built")
needs_s2s = pytest.mark.skipif(not all(is_built(d) for d in ("c2s", "sm", "s2s", "resolver")),
                               reason="c2s, sm, s2s and resolver are not all built")
needs_prosody = pytest.mark.skipif(not os.path.exists(PROSODY), reason="prosody is not installed")


class Supervised:
    """A Hearth for clients run by hearthd from an Env's config: router, sm,
    two c2s (c2s.processes) and the extra daemons named, for one domain.
    Clients use .host and .port (STARTTLS, both c2s); .tls_port and
    .cert_path as hearth_env.Server has them, for xmpp_client."""

    def __init__(self, env, domain="localhost", extra=(), **settings):
        self.env = env
        self.domain = domain
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port()
        self.logdir = os.path.join(env.statedir, "log")
        self.rundir = os.path.join(env.statedir, "run")
        self.names = ["router", "sm", "c2s-1", "c2s-2", *extra]
        self.killed = []  # pids this test killed
        env.write_config(**{
            "domain": domain,
            "c2s.listen": f"{self.host}:{self.port}",
            "c2s.listen-tls": f"{self.host}:{self.tls_port}",
            "c2s.processes": "2",
            "supervisor.daemon": ["router", "sm", "c2s", *extra],
            **LIMITS, **settings})
        env.logs += [self.log("hearthd")] + [self.log(n) for n in self.names]

    @property
    def cert_path(self):
        return os.path.join(self.env.statedir, "tls", f"{self.domain}.pem")

    def log(self, name):
        return os.path.join(self.logdir, f"{name}.log")

    def hearthd(self, *args):
        p = subprocess.run([HEARTHD, "-c", self.env.config_path, *args], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=120)
        return p.returncode, p.stdout + p.stderr

    def mark(self):
        """The router log's size: wait_bound looks after it."""
        path = self.log("router")
        return os.path.getsize(path) if os.path.exists(path) else 0

    def wait_bound(self, names, mark=0, timeout=15):
        """Wait until the router logged that each daemon of names bound
        its name (the domain for the sm, c2s-N, s2s, resolver) after byte
        offset mark of its log."""
        table = {"sm": self.domain, "c2s-1": "c2s-1", "c2s-2": "c2s-2", "s2s": "s2s",
                 "resolver": "resolver"}
        wanted = [f"info: {n} bound {table[n]}" for n in names]

        def bound():
            with open(self.log("router"), errors="replace") as f:
                f.seek(mark)
                text = f.read()
            return all(w in text for w in wanted)
        wait_for(bound, f"{', '.join(names)} bound at the router", timeout)

    def start(self):
        # the store made first: daemons opening a new SQLite file at once
        # can fail ("journal_mode: database is locked", then hearthd
        # restarts them), which is not what the drills are about
        hearthctl(self.env, "users")
        status, out = self.hearthd("start")
        assert status == 0, f"hearthd start: {status}\n{out}"
        self.wait_bound(self.names[1:])
        wait_for(lambda: accepts(self.host, self.port), "the c2s port accepting")
        return self

    def pid(self, name):
        try:
            with open(os.path.join(self.rundir, f"{name}.pid")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def kill9(self, name, while_down=lambda: None):
        """SIGKILL to daemon name, then while_down(); returns once hearthd
        has started a new one and it (after a router kill: every daemon
        again) bound its name."""
        old = self.pid(name)
        assert old, f"hearthd runs no {name}"
        mark = self.mark()
        self.killed.append(old)
        os.kill(old, signal.SIGKILL)
        while_down()
        new = wait_for(lambda: (lambda p: p if p and p != old else None)(self.pid(name)),
                       f"hearthd restarting {name}", timeout=15)
        if name == "router":
            wait_for(lambda: self.router_lines_from(new, mark) is not None, "the new router's log")
            self.wait_bound(self.names[1:], self.router_lines_from(new, mark))
        else:
            self.wait_bound([name], mark)
        return new

    def router_lines_from(self, pid, mark):
        """The offset in router.log, after mark, where router pid's lines
        begin; None before it wrote one."""
        with open(self.log("router"), errors="replace") as f:
            f.seek(mark)
            text = f.read()
        i = text.find(f" router[{pid}] ")
        return None if i < 0 else mark + len(text[:text.rfind("\n", 0, i) + 1].encode())

    def place(self, load):
        """Set each peer's group to the c2s it logged in to (from the c2s
        logs' "JID/drill bound (c2s-N:...)" lines)."""
        where = {}
        for name in ("c2s-1", "c2s-2"):
            with open(self.log(name), errors="replace") as f:
                for m in re.finditer(r" (\S+)/drill bound \((c2s-\d+):", f.read()):
                    where.setdefault(m[1], m[2])
        for p in load.peers:
            if p.jid.endswith("@" + self.domain):
                assert p.jid in where, f"no c2s log says where {p.jid} logged in"
                p.group = where[p.jid]

    def stop(self):
        """Stop hearthd; fail if a daemon exited that this test did not
        kill, or stopped uncleanly."""
        status, out = self.hearthd("stop")
        assert status == 0, f"hearthd stop: {status}\n{out}"
        log = tail(self.log("hearthd"), 400)
        exits = re.findall(r"(\S+) \(pid (\d+)\) (.*) after \d+s; restarting", log)
        unexpected = [e for e in exits if int(e[1]) not in self.killed]
        unclean = re.findall(r"(\S+) \(pid \d+\) stopped: (?!exited with status 0)(.*)", log)
        assert not unexpected and not unclean, \
            f"daemons that ended badly: {unexpected + unclean}\n{log}"


def hearthctl(env, *args):
    p = subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c", env.config_path, *args],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"hearthctl {' '.join(args)}: {p.returncode}\n{p.stdout}{p.stderr}"


def add_accounts(hearth, names):
    """Accounts made with hearthctl, while the sm runs (adduser tells it)."""
    for name in names:
        hearthctl(hearth.env, "adduser", f"{name}@{hearth.domain}", PASSWORD)


def offline_keys(env):
    """A function giving the drill keys of the messages in the offline
    store."""
    def read():
        return {m[1] for (stanza,) in env.sql("SELECT stanza FROM offline")
                for m in KEY.finditer(stanza or "")}
    return read


def add_local_pairs(load, hearth, count, first=0):
    """count pairs a{i} <-> b{i} of the domain, logging in (and in again
    after a cut) on the c2s port."""
    addr = (hearth.host, hearth.port)
    pairs = []
    for i in range(first, first + count):
        a = load.peer(f"a{i}@{hearth.domain}", PASSWORD, addr, "c2s", reconnect=addr)
        b = load.peer(f"b{i}@{hearth.domain}", PASSWORD, addr, "c2s", reconnect=addr)
        load.pair(a, b)
        pairs.append((a, b))
    return pairs


def local_names(first, count):
    return [f"{s}{i}" for i in range(first, first + count) for s in ("a", "b")]


def run_drill(name, load, kill_and_restart, affected, watched, offline=lambda: set(),
              cut_groups=(), peer_bounces_ok=()):
    """The peers are logged in: load, kill, restart, load, settle; print
    the figures and assert the contract. kill_and_restart() kills the
    daemon and returns once it runs again. peer_bounces_ok: groups whose
    bounces are another server's doing (Prosody's users: reported, not
    Hearth's to answer for)."""
    began = load.now()
    load.start()
    assert load.wait_delivered_sent_after(began + BEFORE, timeout=BEFORE + 10), \
        "the load does not flow before the kill"
    kill_time = load.now()
    kill_and_restart()
    restart = load.now() - kill_time
    # the load goes on until service is back for every affected pair
    # (or BACK_LIMIT has passed), then AFTER seconds more
    load.wait_back(kill_time, affected, timeout=BACK_LIMIT)
    load.wait_delivered_sent_after(load.now() + AFTER, timeout=AFTER + 10)
    load.stop()
    stored = load.settle(offline)
    f = load.figures(kill_time, affected, watched, stored, cut_groups)
    text = line(name, f, restart, peer_bounces_ok)
    print(text)
    problems = []
    if f["logged_out"]:
        problems.append(f"{f['logged_out']} users of surviving c2s logged out")
    if f["lost"]:
        problems.append(f"{f['lost']} messages lost, e.g. {f['lost_keys']}")
    if f["duplicated"]:
        problems.append(f"{f['duplicated']} messages delivered twice, e.g. {f['duplicated_keys']}")
    ours = [kv for kv in f["bounced_items"] if kv[2] not in peer_bounces_ok]
    if ours:
        problems.append(f"{len(ours)} messages bounced by Hearth, e.g. {ours[:5]}")
    if not f["back_in"] <= BACK_WITHIN:
        problems.append(f"service back in {f['back_in']:.2f}s, not within {BACK_WITHIN}s "
                        f"(last back: {f['slowest']})")
    assert not problems, f"{text}: " + "; ".join(problems)
    return f


@pytest.fixture
def load():
    drill = Load(rate=RATE)
    yield drill
    drill.close()


@pytest.fixture
def supervised(hearth_env):
    """supervised(**options): a started Supervised on the test's Env,
    stopped (and checked) at teardown."""
    made = []

    def make(**options):
        hearth = Supervised(hearth_env, **options)
        made.append(hearth)
        return hearth.start()
    yield make
    for hearth in made:
        hearth.stop()


def local_drill(supervised, load):
    hearth = supervised()
    add_accounts(hearth, local_names(0, PAIRS))
    pairs = add_local_pairs(load, hearth, PAIRS)
    load.connect()
    hearth.place(load)
    return hearth, pairs


@needs_local
def test_drill_router(hearth_env, supervised, load):
    hearth, pairs = local_drill(supervised, load)
    run_drill("router", load, lambda: hearth.kill9("router"), pairs, load.peers,
              offline_keys(hearth_env))


@needs_local
def test_drill_sm(hearth_env, supervised, load):
    hearth, pairs = local_drill(supervised, load)
    run_drill("sm", load, lambda: hearth.kill9("sm"), pairs, load.peers,
              offline_keys(hearth_env))


@needs_local
@pytest.mark.parametrize("instance", ["c2s-1", "c2s-2"])
def test_drill_c2s(hearth_env, supervised, load, instance):
    """Only the killed c2s's users drop (they log in again on the other at
    once); nobody else notices."""
    hearth, pairs = local_drill(supervised, load)
    dropped = [p for p in load.peers if p.group == instance]
    assert dropped and len(dropped) < len(load.peers), \
        f"the kernel put {len(dropped)} of {len(load.peers)} clients on {instance}"
    run_drill(instance, load, lambda: hearth.kill9(instance),
              [p for p in pairs if instance in (p[0].group, p[1].group)],
              [p for p in load.peers if p.group != instance], offline_keys(hearth_env),
              cut_groups=(instance,))
    assert all(p.cuts for p in dropped), "the killed c2s's users did not notice it"
    assert all(p.online for p in dropped), "the killed c2s's users did not log in again"


# ---- federation ---------------------------------------------------------------

def prosody_register(prosody, user, domain):
    subprocess.run([PROSODYCTL, "--config", prosody.config, "register", user, domain, PASSWORD],
                   check=True, capture_output=True, timeout=30)


@pytest.fixture
def federation(tmp_path, hearth_env, supervised):
    """federation(static_route, second_domain=None) -> (hearth, prosody):
    Hearth (hearth.test, with s2s and resolver) and a real Prosody
    (prosody.test, and second_domain as a second VirtualHost; Debian's
    package, as test_s2s_prosody.py runs it), dialback over STARTTLS.
    static_route: Hearth reaches Prosody by s2s.route; else through the
    resolver (resolver.override: no DNS involved)."""
    from test_s2s_prosody import Prosody
    made = []

    def make(static_route, second_domain=None):
        hearth_s2s = free_port()
        prosody = Prosody(tmp_path / "prosody", "prosody.test", "hearth.test", hearth_s2s)
        made.append(prosody)
        hearth_env.logs.append(prosody.log)  # in the report of a failure
        remote = ["prosody.test"] + ([second_domain] if second_domain else [])
        if second_domain:
            with open(prosody.config) as f:
                text = f.read()
            ssl = re.search(r"^ssl = (\{.*\})$", text, re.M)[1]
            prosody.write_config(text + f'VirtualHost "{second_domain}"\n    ssl = {ssl}\n')
        target = f"127.0.0.1:{prosody.s2s_port}"
        routes = [{"domain": d, "target": target} for d in remote]
        prosody.start()
        hearth = supervised(domain="hearth.test", extra=("s2s", "resolver"), **{
            "s2s.listen": f"127.0.0.1:{hearth_s2s}", "s2s.listen-tls": "",
            "s2s.connect-timeout": "5s",
            ("s2s.route" if static_route else "resolver.override"): routes})
        return hearth, prosody
    yield make
    for prosody in made:
        prosody.stop()


def add_federated_pairs(load, hearth, prosody, count, first, domain="prosody.test"):
    """count pairs a{i}@hearth.test <-> b{i}@domain (Prosody's), with
    their accounts."""
    add_accounts(hearth, [f"a{i}" for i in range(first, first + count)])
    addr, remote = (hearth.host, hearth.port), (prosody.host, prosody.port)
    pairs = []
    for i in range(first, first + count):
        prosody_register(prosody, f"b{i}", domain)
        a = load.peer(f"a{i}@{hearth.domain}", PASSWORD, addr, "c2s", reconnect=addr)
        b = load.peer(f"b{i}@{domain}", PASSWORD, remote, "prosody", reconnect=remote)
        load.pair(a, b)
        pairs.append((a, b))
    return pairs


def s2s_log_since(hearth, mark):
    with open(hearth.log("s2s"), errors="replace") as f:
        f.seek(mark)
        return f.read()


@needs_s2s
@needs_prosody
def test_drill_s2s(federation, load):
    """s2s killed under pairs chatting across the federation with Prosody:
    the new s2s makes its links again and nothing is lost."""
    hearth, prosody = federation(static_route=True)
    add_accounts(hearth, local_names(0, LOCAL_WITH_FEDERATION))
    add_local_pairs(load, hearth, LOCAL_WITH_FEDERATION)
    fed = add_federated_pairs(load, hearth, prosody, FEDERATED, LOCAL_WITH_FEDERATION)
    load.connect()
    hearth.place(load)
    mark = os.path.getsize(hearth.log("s2s"))
    run_drill("s2s", load, lambda: hearth.kill9("s2s"), fed, load.peers,
              offline_keys(hearth.env), peer_bounces_ok=("prosody",))
    assert "hearth.test -> prosody.test: dialback accepted" in s2s_log_since(hearth, mark), \
        "the restarted s2s made no stream to prosody.test"


@needs_s2s
@needs_prosody
def test_drill_resolver(federation, load):
    """The resolver killed while pairs chat across the federation on a link
    it found before the kill, and pairs to a second Prosody domain
    (later.test) start writing at the kill: that link must be made, by
    both servers (Prosody's dialback has Hearth verify it), through the
    resolver that hearthd starts again."""
    hearth, prosody = federation(static_route=False, second_domain="later.test")
    add_accounts(hearth, local_names(0, LOCAL_WITH_FEDERATION))
    add_local_pairs(load, hearth, LOCAL_WITH_FEDERATION)
    half = FEDERATED // 2
    old = add_federated_pairs(load, hearth, prosody, half, LOCAL_WITH_FEDERATION)
    new = add_federated_pairs(load, hearth, prosody, half, LOCAL_WITH_FEDERATION + half,
                              domain="later.test")
    load.hold([p for pair in new for p in pair])
    load.connect()
    hearth.place(load)
    mark = os.path.getsize(hearth.log("s2s"))

    def kill_and_restart():
        # the pairs to later.test write while the resolver is away
        hearth.kill9("resolver", lambda: load.release([p for pair in new for p in pair]))
    run_drill("resolver", load, kill_and_restart, old + new, load.peers, offline_keys(hearth.env),
              peer_bounces_ok=("prosody",))
    assert "hearth.test -> later.test: dialback accepted" in s2s_log_since(hearth, mark), \
        "no stream to later.test was made after the kill"


# ---- the ghost session ---------------------------------------------------------

def answers_ping(client, hearth):
    """True if client's session answers a ping to the domain (the sm)
    within 5 s."""
    if client.disconnected.is_set():
        return False
    try:
        answer = client.iq(f"<iq type='get' to='{hearth.domain}'><ping xmlns='urn:xmpp:ping'/></iq>",
                           timeout=5)
    except (AssertionError, RuntimeError, TimeoutError):
        return False
    return answer["type"] == "result" and not client.disconnected.is_set()


@needs_local
def test_drill_ghost_session_after_router_kill(hearth_env, supervised):
    """Two contacts log in, the router is killed, bob leaves while it is
    away and only alice logs in again (if she was logged out at all). alice
    must see bob unavailable, and a message to bob must be stored offline
    or answered with an error, never dropped."""
    hearth = supervised()
    add_accounts(hearth, ["alice", "bob"])

    def login(name):
        c = Client(hearth, f"{name}@{hearth.domain}", PASSWORD, resource="drill")
        c.connect()
        c.send_presence()
        return c
    alice, bob = login("alice"), login("bob")
    clients = [alice, bob]
    try:
        befriend(alice, bob)
        bob_full = f"bob@{hearth.domain}/drill"
        alice.wait_presence(lambda p: str(p["from"]) == bob_full and p.xml.get("type") is None,
                            timeout=10)
        hearth.kill9("router", bob.disconnect)
        # a round trip through the router and the sm tells whether alice's
        # session outlived the router; if not, she logs in again
        logged_out = not answers_ping(alice, hearth)
        if logged_out:
            alice.disconnect()
            alice = login("alice")
            clients.append(alice)
            # the answers to her presence (the sm's probes) come before
            # the ping's
            assert answers_ping(alice, hearth), "alice's new session does not answer"

        def view():
            """alice's last word on bob's resource on her current
            connection: "available", "unavailable" or None."""
            seen = [p for p in list(alice.received)
                    if isinstance(p, Presence) and str(p["from"]) == bob_full]
            return None if not seen else seen[-1].xml.get("type", "available")
        problems = []
        try:
            wait_for(lambda: view() != "available", "alice seeing bob unavailable", timeout=5)
        except AssertionError:
            problems.append("alice still sees bob available 5s after the router came back "
                            "(a ghost session)")
        alice.send(f"<message to='bob@{hearth.domain}' type='chat' id='ghost-1'>"
                   "<body>drill ghost-1</body></message>")

        def outcome():
            if any("ghost-1" in (s or "") for (s,) in hearth_env.sql("SELECT stanza FROM offline")):
                return "stored"
            if any(isinstance(m, Message) and m.xml.get("type") == "error"
                   and m.xml.get("id") == "ghost-1" for m in list(alice.received)):
                return "bounced"
            return None
        try:
            result = wait_for(outcome, "the message to bob stored offline or bounced", timeout=5)
        except AssertionError:
            result = "dropped"
            problems.append("the message to bob was neither stored offline nor answered "
                            "with an error within 5s: dropped")
        print(f"drill ghost: sent=1 stored={int(result == 'stored')} "
              f"bounced={int(result == 'bounced')} lost={int(result == 'dropped')} "
              f"alice_logged_out={int(logged_out)} bob_seen={view() or 'none'}")
        assert not problems, "; ".join(problems)
    finally:
        for c in clients:
            c.disconnect()
