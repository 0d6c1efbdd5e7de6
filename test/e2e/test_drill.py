"""The kill -9 drills of issue 10: with a steady load between pairs of users
(drill.py: real slixmpp clients, 10 messages per second each), one daemon is
killed with SIGKILL and started again at once by the test, as hearthd would
after its pause (hearthd's first restart waits 1 s more: see
docs/reliability.md). The contract each drill asserts:

  - no user of a c2s that was not killed is logged out;
  - every message sent is delivered exactly once to a client that stayed
    online (or came back), or stored offline for one that left: none lost,
    none duplicated, none bounced by Hearth;
  - service is back within 2 s: every interrupted direction delivers a
    message sent after the kill within 2 s of the kill.

Drills: the router, the sm, each c2s (its own users drop and log in again
on the other; they may lose what they were writing when it died, counted
apart as lost_with_sender), s2s with Prosody as the federated peer (pairs
across the federation; Hearth reaches Prosody by a static route), and the
resolver (pairs across the federation whose link the resolver found before
the kill, and pairs to a second Prosody domain whose link must be made
after it). The ghost-session case: two contacts log in, the router is
killed, only one logs in again; the other must be seen unavailable and a
message to it stored offline or answered with an error.

Each drill prints its figures on one line (run with -s to see them):
  drill DAEMON: sent=… delivered=… duplicated=… lost=… bounced=… logged_out=… back_in=…s
Accounts are made with hearthctl once the daemons run; the c2s limits on
logins per address are raised, since every client comes from 127.0.0.1."""
import os
import re
import signal
import subprocess

import pytest

import hearth_env
from drill import KEY, Load, line
from hearth_env import BUILDDIR, Daemon, Env, Server, is_built, tail, wait_for
from prosody_env import PROSODY, PROSODYCTL
from slixmpp.stanza import Message, Presence

from xmpp_client import Client, befriend

RATE = 10  # messages per second per client
PAIRS = 20  # local pairs: 40 clients over two c2s
FEDERATED = 4  # pairs across the federation in the s2s and resolver drills
BEFORE = 2.0  # seconds of load before the kill
AFTER = 2.0  # seconds of load once service is back
BACK_WITHIN = 2.0  # the "service is back within 2 s"
BACK_LIMIT = 10.0  # how long a drill waits for service to come back at all
PASSWORD = "drill-secret"

# every client logs in from 127.0.0.1, and those of a killed c2s log in
# again all at once
LIMITS = {
    "c2s.auth-rate": "60000",
    "c2s.auth-burst": "1000",
    "c2s.max-pending-per-ip": "1000",
    "c2s.max-connections-per-ip": "1000",
    "log@level": "info",
}


def hearthctl(env, *args):
    p = subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c", env.config_path, *args],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"hearthctl {' '.join(args)}: {p.returncode}\n{p.stdout}{p.stderr}"


def kill9(daemon):
    """SIGKILL, and reap: the daemon is not running afterwards."""
    proc = daemon.proc
    assert proc and proc.poll() is None, f"hearth-{daemon.ident or daemon.name} is not running"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    hearth_env._started.discard(proc)
    daemon.proc = None
    daemon.status = proc.returncode


def offline_keys(env):
    """The drill keys of the messages in the offline store."""
    def read():
        return {m[1] for (stanza,) in env.sql("SELECT stanza FROM offline")
                for m in KEY.finditer(stanza or "")}
    return read


def add_local_pairs(load, server, count, first=0):
    """count pairs a{i} <-> b{i} of server's domain: a on c2s-1 or c2s-2,
    b on either, every combination as often; logged in on the instances'
    own ports, back on the shared port after a cut."""
    domain = server.domain
    ncs = len(server.c2s_ports)
    pairs = []
    for i in range(first, first + count):
        ends = []
        for side, where in (("a", i % ncs), ("b", (i // ncs) % ncs)):
            ends.append(load.peer(f"{side}{i}@{domain}", PASSWORD,
                                  (server.host, server.c2s_ports[where]), f"c2s-{where + 1}",
                                  reconnect=(server.host, server.port)))
        load.pair(*ends)
        pairs.append(tuple(ends))
    return pairs


def local_names(first, count):
    return [f"{s}{i}" for i in range(first, first + count) for s in ("a", "b")]


def run_drill(name, load, kill_and_restart, affected, watched, offline=lambda: set(),
              cut_groups=(), peer_bounces_ok=()):
    """Load, kill, restart, load, settle; print the figures and assert the
    contract. kill_and_restart() kills the daemon and returns once it runs
    again. peer_bounces_ok: groups whose bounces are another server's doing
    (Prosody's users: reported, not Hearth's to assert)."""
    load.connect()
    began = load.now()
    load.start()
    assert load.wait_delivered_sent_after(began + BEFORE, timeout=BEFORE + 10), \
        "the load does not flow before the kill"
    kill_time = load.now()
    kill_and_restart()
    # the load goes on until service is back for every affected pair
    # (or BACK_LIMIT has passed), then AFTER seconds more
    load.wait_back(kill_time, affected, timeout=BACK_LIMIT)
    load.wait_delivered_sent_after(load.now() + AFTER, timeout=AFTER + 10)
    load.stop()
    stored = load.settle(offline)
    f = load.figures(kill_time, affected, watched, stored, cut_groups)
    text = line(name, f)
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


def add_accounts(env, server, names):
    """Accounts made with hearthctl, while the sm runs (adduser tells it)."""
    for name in names:
        hearthctl(env, "adduser", f"{name}@{server.domain}", PASSWORD)


def local_server(env):
    server = Server(env, c2s=2, **LIMITS).start()
    add_accounts(env, server, local_names(0, PAIRS))
    return server


@pytest.mark.skipif(not is_built("c2s") or not is_built("sm"), reason="c2s and sm are not built")
def test_drill_router(hearth_env, load):
    server = local_server(hearth_env)
    pairs = add_local_pairs(load, server, PAIRS)

    def kill_and_restart():
        kill9(server.router)
        server.router.start()
    run_drill("router", load, kill_and_restart, pairs, load.peers, offline_keys(hearth_env))


@pytest.mark.skipif(not is_built("c2s") or not is_built("sm"), reason="c2s and sm are not built")
def test_drill_sm(hearth_env, load):
    server = local_server(hearth_env)
    pairs = add_local_pairs(load, server, PAIRS)

    def kill_and_restart():
        kill9(server.sm)
        server.start_sm()
    run_drill("sm", load, kill_and_restart, pairs, load.peers, offline_keys(hearth_env))


@pytest.mark.skipif(not is_built("c2s") or not is_built("sm"), reason="c2s and sm are not built")
@pytest.mark.parametrize("instance", [1, 2])
def test_drill_c2s(hearth_env, load, instance):
    """Only the killed c2s's users drop (they log in again on the other at
    once); nobody else notices."""
    server = local_server(hearth_env)
    pairs = add_local_pairs(load, server, PAIRS)
    group = f"c2s-{instance}"
    c2s = server.c2s[instance - 1]

    def kill_and_restart():
        kill9(c2s)
        server.start_c2s(c2s)
    f = run_drill(group, load, kill_and_restart,
                  [p for p in pairs if group in (p[0].group, p[1].group)],
                  [p for p in load.peers if p.group != group], offline_keys(hearth_env),
                  cut_groups=(group,))
    dropped = [p for p in load.peers if p.group == group]
    assert all(p.cuts for p in dropped), "the killed c2s's users did not notice it"
    assert all(p.online for p in dropped), "the killed c2s's users did not log in again"
    assert f["sent"] > 0


# ---- federation ---------------------------------------------------------------

needs_daemons = pytest.mark.skipif(not all(is_built(d) for d in ("c2s", "sm", "s2s", "resolver")),
                                   reason="c2s, sm, s2s and resolver are not all built")
needs_prosody = pytest.mark.skipif(not os.path.exists(PROSODY), reason="prosody is not installed")


def prosody_register(prosody, user, domain):
    subprocess.run([PROSODYCTL, "--config", prosody.config, "register", user, domain, PASSWORD],
                   check=True, capture_output=True, timeout=30)


def federation(tmp_path, static_route, second_domain=None):
    """Hearth (hearth.test, two c2s, s2s and resolver) and Prosody
    (prosody.test, and second_domain as a second VirtualHost), dialback
    over STARTTLS. static_route: Hearth reaches Prosody by s2s.route, else
    through the resolver (resolver.override: no DNS involved)."""
    from test_s2s_prosody import Prosody
    hearth_s2s = hearth_env.free_port()
    prosody = Prosody(tmp_path / "prosody", "prosody.test", "hearth.test", hearth_s2s)
    target = f"127.0.0.1:{prosody.s2s_port}"
    remote = ["prosody.test"] + ([second_domain] if second_domain else [])
    if second_domain:
        with open(prosody.config) as f:
            text = f.read()
        ssl = re.search(r"^ssl = (\{.*\})$", text, re.M)[1]
        prosody.write_config(text + f'VirtualHost "{second_domain}"\n    ssl = {ssl}\n')
    routing = ({"s2s.route": [{"domain": d, "target": target} for d in remote]} if static_route
               else {"resolver.override": [{"domain": d, "target": target} for d in remote]})
    env = Env(tmp_path / "hearth")
    server = Server(env, c2s=2, domain="hearth.test", **LIMITS, **{
        "s2s.listen": f"127.0.0.1:{hearth_s2s}", "s2s.listen-tls": "",
        "s2s.connect-timeout": "5s", **routing})
    s2s = Daemon("s2s", env.config_path, env.logdir, ("127.0.0.1", hearth_s2s))
    resolver = Daemon("resolver", env.config_path, env.logdir)
    return env, server, s2s, resolver, prosody


def start_federation(env, server, s2s, resolver, prosody):
    prosody.start()
    server.start()
    for d, name in ((resolver, "resolver"), (s2s, "s2s")):
        mark = os.path.getsize(server.router.log)
        env.add(d)
        d.start()
        server.wait_router_log(f" bound {name}", mark, 10, d)


def add_federated_pairs(load, server, prosody, count, first, domain="prosody.test"):
    """count pairs h{i}@hearth.test <-> r{i}@domain (Prosody's)."""
    pairs = []
    for i in range(first, first + count):
        h = load.peer(f"a{i}@{server.domain}", PASSWORD, (server.host, server.c2s_ports[i % 2]),
                      f"c2s-{i % 2 + 1}", reconnect=(server.host, server.port))
        r = load.peer(f"b{i}@{domain}", PASSWORD, (prosody.host, prosody.port), "prosody",
                      reconnect=(prosody.host, prosody.port))
        load.pair(h, r)
        pairs.append((h, r))
    return pairs


@pytest.fixture
def fed_env(tmp_path):
    made = []

    def make(static_route, second_domain=None):
        parts = federation(tmp_path, static_route, second_domain)
        made.append(parts)
        return parts
    yield make
    for env, _, _, _, prosody in made:
        try:
            env.stop_all()
        finally:
            prosody.stop()


LOCAL_WITH_FEDERATION = 8  # local pairs beside the federated ones


def federated_accounts(env, server, prosody, first, count, domain="prosody.test"):
    add_accounts(env, server, [f"a{i}" for i in range(first, first + count)])
    for i in range(first, first + count):
        prosody_register(prosody, f"b{i}", domain)


@needs_daemons
@needs_prosody
def test_drill_s2s(fed_env, load):
    """s2s killed under pairs chatting across the federation with Prosody."""
    env, server, s2s, resolver, prosody = fed_env(static_route=True)
    start_federation(env, server, s2s, resolver, prosody)
    add_accounts(env, server, local_names(0, LOCAL_WITH_FEDERATION))
    federated_accounts(env, server, prosody, LOCAL_WITH_FEDERATION, FEDERATED)
    add_local_pairs(load, server, LOCAL_WITH_FEDERATION)
    fed = add_federated_pairs(load, server, prosody, FEDERATED, LOCAL_WITH_FEDERATION)

    def kill_and_restart():
        mark = os.path.getsize(server.router.log)
        kill9(s2s)
        s2s.start()
        server.wait_router_log(" bound s2s", mark, 10, s2s)
    try:
        run_drill("s2s", load, kill_and_restart, fed, load.peers, offline_keys(env),
                  peer_bounces_ok=("prosody",))
    except AssertionError:
        print(f"--- prosody log ---\n{tail(prosody.log, 60)}")
        raise


@needs_daemons
@needs_prosody
def test_drill_resolver(fed_env, load):
    """The resolver killed while pairs chat across the federation on a link
    it found before the kill, and pairs to a second Prosody domain
    (later.test) start writing at the kill: that link must be made, by
    both servers (Prosody's dialback asks Hearth's s2s to verify), with
    the restarted resolver."""
    env, server, s2s, resolver, prosody = fed_env(static_route=False, second_domain="later.test")
    start_federation(env, server, s2s, resolver, prosody)
    add_accounts(env, server, local_names(0, LOCAL_WITH_FEDERATION))
    half = FEDERATED // 2
    federated_accounts(env, server, prosody, LOCAL_WITH_FEDERATION, half)
    federated_accounts(env, server, prosody, LOCAL_WITH_FEDERATION + half, half, "later.test")
    add_local_pairs(load, server, LOCAL_WITH_FEDERATION)
    old = add_federated_pairs(load, server, prosody, half, LOCAL_WITH_FEDERATION)
    new = add_federated_pairs(load, server, prosody, half, LOCAL_WITH_FEDERATION + half,
                              domain="later.test")
    load.hold([p for pair in new for p in pair])

    def kill_and_restart():
        mark = os.path.getsize(server.router.log)
        kill9(resolver)
        load.release([p for pair in new for p in pair])
        resolver.start()
        server.wait_router_log(" bound resolver", mark, 10, resolver)
    try:
        f = run_drill("resolver", load, kill_and_restart, old + new, load.peers, offline_keys(env),
                      peer_bounces_ok=("prosody",))
    except AssertionError:
        print(f"--- prosody log ---\n{tail(prosody.log, 60)}")
        raise
    later = [k for k in load.snapshot()[1] if int(k[1:].split(".")[0]) >= LOCAL_WITH_FEDERATION + half]
    assert later, f"nothing crossed the link to later.test made after the kill ({f})"


# ---- the ghost session ---------------------------------------------------------

@pytest.mark.skipif(not is_built("c2s") or not is_built("sm"), reason="c2s and sm are not built")
def test_drill_ghost_session_after_router_kill(hearth_env):
    """Two contacts log in (alice on c2s-1, bob on c2s-2), the router is
    killed, bob leaves and only alice logs in again (if she was logged out
    at all). bob must be seen unavailable by alice, and a message to bob
    must be stored offline or answered with an error, never dropped."""
    server = Server(hearth_env, c2s=2, **LIMITS).start()
    add_accounts(hearth_env, server, ["alice", "bob"])

    def login(name, port):
        c = Client(server, f"{name}@{server.domain}", PASSWORD, resource="drill", port=port)
        c.connect()
        c.send_presence()
        return c
    alice = login("alice", server.c2s_ports[0])
    bob = login("bob", server.c2s_ports[1])
    clients = [alice, bob]
    try:
        befriend(alice, bob)
        bob_full = f"bob@{server.domain}/drill"
        alice.wait_presence(lambda p: str(p["from"]) == bob_full and p.xml.get("type") is None,
                            timeout=10)
        kill9(server.router)
        bob.disconnect()
        server.router.start()
        # a round trip through the router and the sm tells whether alice's
        # session outlived the router; if not, she logs in again
        logged_out = not _answers_ping(alice, server)
        if logged_out:
            alice = wait_for(lambda: _try_login(login, server), "alice logged in again", timeout=10)
            clients.append(alice)

        def view():
            """alice's last word on bob's resource, on her current
            connection: "available", "unavailable" or None."""
            seen = [p for p in list(alice.received)
                    if isinstance(p, Presence) and str(p["from"]) == bob_full]
            return None if not seen else seen[-1].xml.get("type", "available")
        # a round trip through the sm: the answers to alice's presence
        # (its probes) are on their way before the ping's
        assert _answers_ping(alice, server), "alice's session does not answer"
        problems = []
        try:
            wait_for(lambda: view() != "available", "alice seeing bob unavailable", timeout=5)
        except AssertionError:
            problems.append("alice still sees bob available 5s after the router came back "
                            "(a ghost session)")
        alice.send(f"<message to='bob@{server.domain}' type='chat' id='ghost-1'>"
                   "<body>drill ghost-1</body></message>")

        def outcome():
            if any(r[0] and "ghost-1" in r[0] for r in hearth_env.sql("SELECT stanza FROM offline")):
                return "stored"
            if any(isinstance(m, Message) and m.xml.get("type") == "error"
                   and m.xml.get("id") == "ghost-1"
                   for m in list(alice.received)):
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
              f"alice_logged_out={int(logged_out is True)} bob_seen={view() or 'none'}")
        assert not problems, "; ".join(problems)
    finally:
        for c in clients:
            c.disconnect()


def _answers_ping(client, server):
    """True if client's session answers a ping to the server's domain
    (routed to the sm) within 5 s."""
    if client.disconnected.is_set():
        return False
    try:
        answer = client.iq(f"<iq type='get' to='{server.domain}'><ping xmlns='urn:xmpp:ping'/></iq>",
                           timeout=5)
    except (AssertionError, RuntimeError, TimeoutError):
        return False
    return answer["type"] == "result" and not client.disconnected.is_set()


def _try_login(login, server):
    try:
        return login("alice", server.port)
    except AssertionError:
        return None
