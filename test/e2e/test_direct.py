"""The direct links between the sm and each c2s (common/direct.c), from the
attacker's side and when one breaks.

A link is offered and switched on by routes through the router, which
marks their role; the sm takes a connection only with the token it
offered, a c2s takes an offer only from the sm, and on a link each side
enforces what the router would have (no role of its own, only the peer's
names as from). A fake c2s (a test component logging in with the c2s's
account, as c2s-9, taking the sm's offer as a c2s does) checks the last.
A link killed under load (`ss -K`) loses no message and gives none twice,
and comes back.

Negative outcomes are waited for on a condition: the refusal the daemon
logs, or the end of a connection, never a bare sleep."""
import re
import socket
import subprocess

import pytest
from slixmpp import Message

from hearth_env import log_size, wait_for, wait_log

STREAM = ("<?xml version='1.0'?><stream:stream xmlns='urn:hearth:component:1' "
          "xmlns:stream='http://etherx.jabber.org/streams' from='c2s-1' token='{token}' "
          "version='1.0'>")


@pytest.fixture
def linked(trusted):
    """trusted (conftest.py: router, sm, c2s-1, and bot's account) once the
    sm's link to c2s-1 is up."""
    wait_log(trusted.sm.log, r"direct link with c2s-1 up")
    return trusted


def direct_address(linked):
    host, port = wait_log(linked.sm.log, r"direct links for c2s processes on (\S+):(\d+)").groups()
    return host, int(port)


def closed_by_peer(sock, timeout):
    """The peer closed (or reset) the connection within timeout, having sent
    nothing."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def chat_works(users, alice=None):
    """A message from alice (made now unless given) to a new user arrives."""
    alice, carol = alice or users("alice"), users("carol")
    alice.send_message("carol@localhost/x", "still served")
    return carol.wait_message(lambda m: m["body"] == "still served")["body"] == "still served"


# ---- the sm's listener ----------------------------------------------------------------

def test_the_sm_closes_a_connection_with_a_token_it_never_offered(linked, users):
    mark = log_size(linked.sm.log)
    with socket.create_connection(direct_address(linked)) as s:
        s.sendall(STREAM.format(token="0" * 32).encode())
        assert closed_by_peer(s, 5), "the sm kept a connection with a token of nobody's"
    wait_log(linked.sm.log, r"direct link from \S+ refused: no offer for that token", mark)
    assert chat_works(users)


def test_the_sm_closes_a_connection_that_gives_no_token(linked):
    with socket.create_connection(direct_address(linked)) as s:
        # HELLO_MS (5 s) and the tick that notices it (1 s)
        assert closed_by_peer(s, 8), "the sm kept a silent connection open"
    wait_log(linked.sm.log, r"direct link with \?: no token in time")


# ---- offers and switches through the router ---------------------------------------------

@pytest.mark.parametrize("to,what", [("c2s-1", "offer"), ("c2s-1", "switch"),
                                     ("localhost", "switch")])
def test_a_component_cannot_offer_or_switch_a_link(linked, bot, users, to, what):
    """An offer must come from the sm (role='sm', marked by the router), and
    a switch from the peer the link was offered to: a component's, pointing
    at its own listener, is refused, and nobody connects there."""
    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen()
    trap.setblocking(False)
    port = trap.getsockname()[1]
    b = bot("bot.localhost")
    log = linked.c2s[0].log if to == "c2s-1" else linked.sm.log
    mark = log_size(log)
    b.cmd(f"raw <route to='{to}' from='bot.localhost' direct='{what}' addr='127.0.0.1:{port}' "
            f"token='{'ab' * 16}' names='localhost bot.localhost'/>")
    wait_log(log, rf"direct='{what}' route from bot\.localhost \(role component\) refused", mark)
    with pytest.raises(BlockingIOError):
        trap.accept()
    trap.close()
    assert chat_works(users)


# ---- a c2s on its link ------------------------------------------------------------------

@pytest.fixture
def fake_c2s(linked, bot):
    """c2s-9: a test component with the c2s's router account, taking the sm's
    offer of a direct link as hearth-c2s does."""
    user, password = linked.router.account("c2s")
    mark = log_size(linked.sm.log)
    c = bot("c2s-9", ident="c2s-9", user=user, password=password)
    c.cmd("direct-accept")
    # the advert of c2s-9 reached the sm before the accept: it offers again
    # after RETRY_MS if the first offer was refused
    wait_log(linked.sm.log, r"direct link with c2s-9 up", mark, timeout=20)

    def direct_up():
        c.cmd("direct-count")
        return c.expect("direct ").split()[1] == "1"
    wait_for(direct_up, "c2s-9's end of the link")
    return c


@pytest.mark.parametrize("route,why", [
    ("<route to='localhost' from='c2s-1' user='alice@localhost'>"
     "<presence xmlns='jabber:client'/></route>",
     "a route from a name its peer does not speak for"),
    ("<route to='localhost' role='sm' from='c2s-9' user='alice@localhost'>"
     "<presence xmlns='jabber:client'/></route>",
     "a route that marks itself"),
    ("<route to='localhost' from='c2s-9' direct='switch' token='00'/>",
     "a route that marks itself"),
])
def test_a_c2s_may_send_on_its_link_only_what_the_router_would_carry(linked, fake_c2s, users,
                                                                     route, why):
    """A c2s's routes on its direct link: its own name as from, no role or
    direct mark of their own. Anything else ends the link (and the router
    would have refused it too), and the real c2s-1's users go on."""
    alice = users("alice")
    mark = log_size(linked.sm.log)
    fake_c2s.cmd("raw " + route)
    wait_log(linked.sm.log, rf"direct link with c2s-9: {re.escape(why)}", mark)
    wait_log(linked.sm.log, r"direct link with c2s-9 closed", mark)
    fake_c2s.expect("directdown localhost")
    assert not alice.disconnected.is_set()
    assert chat_works(users, alice)


def test_a_c2s_takes_no_offer_of_an_address_off_this_machine(fake_sm):
    linked, sm = fake_sm
    mark = log_size(linked.c2s[0].log)
    sm.cmd(f"raw <route to='c2s-1' from='localhost' direct='offer' addr='192.0.2.1:5347' "
           f"token='{'cd' * 16}' names='localhost'/>")
    wait_log(linked.c2s[0].log, r"direct link offered on 192\.0\.2\.1:5347 not taken", mark)


def test_a_c2s_reads_nothing_on_a_link_before_the_switch(fake_sm):
    """Whoever holds the port an offer names gets the c2s's connection and
    its token, but the c2s reads from it only once the sm, through the
    router, has said it took that token: without that switch the c2s reads
    nothing and closes the link when the offer runs out (OFFER_MS)."""
    linked, sm = fake_sm
    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen()
    port = trap.getsockname()[1]
    mark = log_size(linked.c2s[0].log)
    token = "ef" * 16
    sm.cmd(f"raw <route to='c2s-1' from='localhost' direct='offer' addr='127.0.0.1:{port}' "
           f"token='{token}' names='localhost'/>")
    trap.settimeout(10)
    conn, _ = trap.accept()
    conn.settimeout(10)
    hello = b""
    while b">" not in hello:
        hello += conn.recv(4096)
    assert f"token='{token}'".encode() in hello and b"from='c2s-1'" in hello, hello
    conn.sendall(b"<?xml version='1.0'?><stream:stream xmlns='urn:hearth:component:1' "
                 b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost'>"
                 b"<route to='c2s-1' from='localhost' user='alice@localhost' cid='c2s-1:1' "
                 b"sid='x'><message xmlns='jabber:client'><body>early</body></message></route>")
    assert closed_by_peer(conn, 15), "the c2s kept the link without a switch"
    wait_log(linked.c2s[0].log, r"direct link with localhost: no switch in time", mark)
    with open(linked.c2s[0].log, errors="replace") as f:
        f.seek(mark)
        assert "a route before the switch" not in f.read(), "the c2s read the link"
    conn.close()
    trap.close()


# ---- a link that breaks ----------------------------------------------------------------

def kill_link(linked):
    """Destroy both ends of the sm's direct link with c2s-1 (ss -K)."""
    _, port = direct_address(linked)
    out = subprocess.run(["ss", "-K", "-t", f"( sport = :{port} or dport = :{port} )"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out
    assert re.search(rf":{port}\b", out.stdout), f"no socket of port {port} killed: {out.stdout}"


def test_a_broken_link_loses_no_message_and_comes_back(linked, users):
    """Messages flow from alice to bob (both on c2s-1) while the link is
    killed: each arrives exactly once, in order, through the router while
    the link is down and on a new link once the sm offers it again."""
    alice, bob = users("alice"), users("bob")
    n, killed_at = 300, 100
    sm_mark, c2s_mark = log_size(linked.sm.log), log_size(linked.c2s[0].log)
    for i in range(n):
        if i == killed_at:
            kill_link(linked)
        alice.send_message("bob@localhost/x", f"m{i}")
    bob.wait_message(lambda m: m["body"] == f"m{n - 1}", timeout=30)
    wait_log(linked.sm.log, r"direct link with c2s-1 closed", sm_mark)
    wait_log(linked.c2s[0].log, r"direct link with sm(-1)? closed", c2s_mark)
    # after the last one: what a resend would give twice has come too
    alice.send_message("bob@localhost/x", "after")
    bob.wait_message(lambda m: m["body"] == "after", timeout=10)
    got = [m["body"] for m in bob.received if isinstance(m, Message) and m["body"]]
    expected = [f"m{i}" for i in range(n)] + ["after"]
    assert got == expected, (f"{len(got)} bodies; missing {sorted(set(expected) - set(got))}, "
                             f"twice {sorted(b for b in set(got) if got.count(b) > 1)}")
    wait_log(linked.sm.log, r"direct link with c2s-1 up", sm_mark, timeout=20)
    assert not alice.disconnected.is_set() and not bob.disconnected.is_set()
