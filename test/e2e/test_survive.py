"""Sessions outlive a restart of the router or the sm (DESIGN.md, "The
session protocol"; c2s/session.c and sm/session.c tell the reconciliation):
real router, sm and two c2s processes, python3-slixmpp clients. A daemon is
killed with SIGKILL (nothing it could say on the way out) and started
again by the test; every assertion is about what the clients see: nobody
is disconnected, what was sent meanwhile arrives once, presence and roster
pushes go on, and a client that left while the router was away is not
left a ghost."""
import os
import signal

import pytest

from hearth_env import wait_for
from xmpp_client import Client, befriend

PASSWORD = "correct horse"


def login(server, user, c2s=0, register=True):
    return Client(server, f"{user}@localhost", PASSWORD, register=register,
                  port=server.c2s_ports[c2s]).connect()


def kill(daemon):
    """SIGKILL, as a crash: the daemon says nothing on its way out."""
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    daemon.proc = None


def restart_router(server):
    """A new router; back once the sm has bound the domain and every c2s its id."""
    mark = os.path.getsize(server.router.log)
    server.router.start()
    server.wait_router_log(" bound localhost", mark)
    for d in server.c2s:
        if d.is_running():
            server.wait_router_log(f" bound {d.ident}", mark)


def logged(daemon, text, mark=0):
    """Wait until daemon's log holds text after byte offset mark."""
    def seen():
        with open(daemon.log, errors="replace") as f:
            f.seek(mark)
            return text in f.read()
    wait_for(seen, f"{daemon.ident or daemon.name} logging {text!r}")


def size(daemon):
    return os.path.getsize(daemon.log)


def bodies(client, body):
    return [m for m in client.received if m.name == "message" and m["body"] == body]


def assert_connected(*clients):
    for c in clients:
        assert not c.disconnected.is_set(), f"{c.jid} was disconnected: {c.stream_error}"


def unavailable_from(client, who):
    return client.wait_presence(lambda p: p["type"] == "unavailable"
                                and p["from"].bare == who.jid.bare, timeout=15)


@pytest.fixture
def pair(hearth_env):
    """A server with two c2s processes; alice on c2s-1, bob on c2s-2,
    subscribed to each other."""
    from hearth_env import Server
    server = Server(hearth_env, c2s=2, **{"sm.c2s-grace": "3s"}).start()
    alice, bob = login(server, "alice", 0), login(server, "bob", 1)
    befriend(alice, bob)
    alice.send_presence()
    bob.send_presence()
    alice.wait_presence(lambda p: p["from"] == bob.bound_jid and p["type"] == "available")
    bob.wait_presence(lambda p: p["from"] == alice.bound_jid and p["type"] == "available")
    yield server, alice, bob
    for c in (alice, bob):
        c.disconnect()


def send_through_a_crash(server, alice, bob, daemon, noticed, restart, body):
    """Kill daemon; once alice's c2s logged noticed, alice sends body to
    bob; restart() it; bob gets body once."""
    mark = size(server.c2s[0])
    kill(daemon)
    logged(server.c2s[0], noticed, mark)
    alice.send_message(bob.bound_jid, body)
    restart()
    assert bob.wait_message(lambda m: m["body"] == body, timeout=10)
    assert len(bodies(bob, body)) == 1


def test_a_router_crash_logs_nobody_out_and_what_was_sent_meanwhile_arrives_once(pair):
    server, alice, bob = pair
    send_through_a_crash(server, alice, bob, server.router, "lost the router",
                         lambda: restart_router(server), "while the router was away")
    alice.send_message(bob.bound_jid, "after")
    bob.wait_message(lambda m: m["body"] == "after")
    bob.send_message(alice.bound_jid, "and back")
    alice.wait_message(lambda m: m["body"] == "and back")
    assert_connected(alice, bob)


def test_an_sm_crash_logs_nobody_out_and_the_sessions_are_rebuilt(pair):
    server, alice, bob = pair
    send_through_a_crash(server, alice, bob, server.sm, "went away", server.start_sm,
                         "while the sm was away")
    assert_connected(alice, bob)
    # The rebuilt sessions are available: a new session of a contact's
    # gets their presence (the probe is answered from the new sm).
    carol = login(server, "carol", 0)
    try:
        befriend(carol, alice)
        carol.send_presence()
        carol.wait_presence(lambda p: p["from"] == alice.bound_jid and p["type"] == "available")
    finally:
        carol.disconnect()
    # alice's session still gets roster pushes (it had asked for its roster).
    answer = alice.iq("<iq type='set'><query xmlns='jabber:iq:roster'>"
                      "<item jid='dave@localhost' name='Dave'/></query></iq>")
    assert answer["type"] == "result"
    alice.wait_iq(lambda s: s["type"] == "set" and "dave@localhost" in s["roster"]["items"])


def test_an_sm_restart_is_not_an_unavailable_presence_to_contacts(pair):
    server, alice, bob = pair
    server.sm.stop()
    server.start_sm()
    alice.send_message(bob.bound_jid, "still here")
    bob.wait_message(lambda m: m["body"] == "still here")
    assert not [p for p in bob.received if p.name == "presence" and p["type"] == "unavailable"
                and p["from"] == alice.bound_jid], "bob was told alice left"
    assert_connected(alice, bob)


def test_who_left_while_the_router_was_away_is_no_ghost(pair):
    """The issue's case: two users on, the router killed, only one back.
    The other is seen unavailable, and a message to them is kept offline,
    not dropped."""
    server, alice, bob = pair
    mark = size(server.c2s[1])
    kill(server.router)
    logged(server.c2s[1], "lost the router", mark)
    bob.disconnect()
    restart_router(server)
    unavailable_from(alice, bob)
    alice.send_message(bob.jid.bare, "for later")
    back = login(server, "bob", 1, register=False)
    try:
        back.send_presence()
        back.wait_message(lambda m: m["body"] == "for later", timeout=10)
    finally:
        back.disconnect()


def test_the_sessions_of_a_c2s_that_died_with_the_router_end_after_the_grace(pair):
    server, alice, bob = pair
    kill(server.router)
    kill(server.c2s[1])  # bob's; it does not come back
    restart_router(server)
    unavailable_from(alice, bob)
    alice.send_message(bob.jid.bare, "for when you are back")
    server.start_c2s(server.c2s[1])
    back = login(server, "bob", 1, register=False)
    try:
        back.send_presence()
        back.wait_message(lambda m: m["body"] == "for when you are back", timeout=10)
    finally:
        back.disconnect()
    assert_connected(alice)


def test_who_left_while_the_sm_was_away_is_seen_leaving(pair):
    server, alice, bob = pair
    mark = size(server.c2s[1])
    kill(server.sm)
    logged(server.c2s[1], "went away", mark)
    bob.send_message(alice.bound_jid, "bye")
    bob.disconnect()
    server.start_sm()
    alice.wait_message(lambda m: m["body"] == "bye", timeout=10)
    unavailable_from(alice, bob)
    logged(server.sm, "rebuilt from its c2s")


def test_a_hung_sm_is_replaced_by_the_watchdog_and_nobody_is_logged_out(hearth_env):
    """The issue's case under hearthd: an sm stopped with SIGSTOP is killed
    by the watchdog (supervisor.watchdog) and started again; the clients
    stay connected, and what alice sent while it hung reaches bob once."""
    import re
    import subprocess
    from hearth_env import BUILDDIR, free_port
    hearthd = os.path.join(BUILDDIR, "tools", "hearthd")
    port, tls_port = free_port(), free_port()
    hearth_env.write_config(**{
        "supervisor.daemon": ["router", "sm", "c2s"], "c2s.processes": "1",
        "supervisor.watchdog": "2s", "c2s.listen": f"127.0.0.1:{port}",
        "c2s.listen-tls": f"127.0.0.1:{tls_port}", "c2s.registration": "true"})
    logdir = os.path.join(hearth_env.statedir, "log")
    hearth_env.logs += [os.path.join(logdir, n) for n in ("hearthd.log", "sm.log", "c2s-1.log")]

    def run(*args):
        p = subprocess.run([hearthd, "-c", hearth_env.config_path, *args], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=60)
        return p.returncode, p.stdout + p.stderr

    def sm_pid():
        m = re.search(r"^sm: running \(pid (\d+)\)", run("status")[1], re.M)
        return int(m[1]) if m else None

    class Where:  # what Client needs of a Server
        host, cert_path = "127.0.0.1", os.path.join(hearth_env.statedir, "tls", "localhost.pem")
        c2s_ports = [port]
    Where.port, Where.tls_port = port, tls_port
    router_log = os.path.join(logdir, "router.log")
    try:
        assert run("start")[0] == 0
        wait_for(lambda: os.path.exists(router_log) and all(
            f" bound {n}" in open(router_log).read() for n in ("localhost", "c2s-1")),
            "the sm and c2s bound at the router")
        alice, bob = login(Where, "alice"), login(Where, "bob")
        try:
            befriend(alice, bob)
            old = sm_pid()
            os.kill(old, signal.SIGSTOP)
            alice.send_message(bob.bound_jid, "while the sm hung")
            wait_for(lambda: (lambda p: p if p and p != old else None)(sm_pid()),
                     "a new sm after the watchdog", timeout=20)
            bob.wait_message(lambda m: m["body"] == "while the sm hung", timeout=15)
            alice.send_message(bob.bound_jid, "and after")
            bob.wait_message(lambda m: m["body"] == "and after", timeout=10)
            assert len(bodies(bob, "while the sm hung")) == 1
            assert_connected(alice, bob)
            assert "has not shown life for 2s" in open(os.path.join(logdir, "hearthd.log")).read()
        finally:
            alice.disconnect()
            bob.disconnect()
    finally:
        run("stop")


def test_an_sm_shard_that_restarts_keeps_its_users_logged_in(hearth_env):
    """With two sm shards, one killed keeps its place at the router
    (router.shard-grace): its users' stanzas wait for it rather than reach
    the other shard, and when it is back each c2s announces the sessions
    again. Its users stay logged in, and the messages both ways arrive once."""
    from hearth_env import Daemon, Server
    server = Server(hearth_env, c2s=1, **{"sm.shards": "2"}).start()
    mark = size(server.router)
    second = hearth_env.add(Daemon("sm", hearth_env.config_path, hearth_env.logdir, ident="sm-2"))
    second.start()
    server.wait_router_log("sm-2 bound localhost", mark, 10, second)
    users = [login(server, f"u{i}") for i in range(8)]

    def second_has(u):
        with open(second.log) as f:
            return f"of {u.bound_jid} " in f.read()
    on_second = [u for u in users if second_has(u)]
    assert 0 < len(on_second) < len(users), "the users did not spread over the shards"
    victim = on_second[0]
    other = next(u for u in users if u not in on_second)
    try:
        kill(second)
        server.wait_router_log("keeps its place", mark)
        other.send_message(victim.bound_jid, "to the restarting shard")
        victim.send_message(other.bound_jid, "from the restarting shard")
        mark = size(server.router)
        second.start()
        server.wait_router_log("sm-2 bound sm-2", mark, 10, second)
        victim.wait_message(lambda m: m["body"] == "to the restarting shard", timeout=10)
        other.wait_message(lambda m: m["body"] == "from the restarting shard", timeout=10)
        victim.send_message(other.bound_jid, "and after")
        other.wait_message(lambda m: m["body"] == "and after", timeout=10)
        assert len(bodies(victim, "to the restarting shard")) == 1
        assert len(bodies(other, "from the restarting shard")) == 1
        assert_connected(*users)
    finally:
        for u in users:
            u.disconnect()


def test_an_idle_session_survives_a_router_crash(pair):
    """A session that has had nothing since it started (nothing
    acknowledged after the sm's answer) is kept like the others."""
    server, alice, bob = pair
    carol = login(server, "carol", 1)
    try:
        mark = size(server.c2s[1])
        kill(server.router)
        logged(server.c2s[1], "lost the router", mark)
        restart_router(server)
        logged(server.c2s[1], "is back", mark)
        ping = "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        assert carol.iq(ping)["type"] == "result"
        assert_connected(carol)
    finally:
        carol.disconnect()


def test_a_crash_leaves_its_stack_in_the_log(hearth_env):
    """A daemon that crashes writes the signal and its stack to its log
    (common/daemon.c, on_crash), then dies of that signal, so a supervisor
    still sees what killed it. Sanitizer builds keep their own report."""
    from hearth_env import Server
    server = Server(hearth_env).start()
    sm = server.sm
    sm.proc.send_signal(signal.SIGSEGV)
    status = sm.proc.wait(10)
    sm.proc = None
    with open(sm.log, errors="replace") as f:
        text = f.read()
    if "AddressSanitizer" in text:
        return
    assert status == -signal.SIGSEGV, status
    assert "fatal signal; the stack, innermost first:" in text, text[-2000:]
    frames = text.split("innermost first:\n", 1)[1].splitlines()
    assert any("hearth-sm(" in line for line in frames), frames
