"""Trust between the daemons, from the attacker's side (docs/security.md).

A component with a router account of its own ("bot", which may bind
bot.localhost) tries what a component could do before accounts had roles:
take the names of the Hearth daemons, speak the session protocol, send as a
user, change a user's password, ask the admin queries, write into a
client's stream, ask the resolver. Each is refused, while the real daemons
and hearthctl go on working. A fake sm (a test component logging in with
the sm's own account) checks that c2s delivers a stanza only with the sid
the sm gave. And a config of the older kind, one router password for every
daemon, still runs, with a warning.

Negative outcomes are waited for on a condition: the refusal the daemon
logs, or a later stanza on the same link (routes keep their order), never a
bare sleep."""
import os
import re
import subprocess
import threading

import pytest

from hearth_env import BUILDDIR, Env, Router, Server, log_size, random_password, wait_log
from testcomp import Component
from xmpp_client import Client, ClientError

NS_SESSION = "urn:hearth:session:1"
NS_ADMIN = "urn:hearth:admin:1"
def session_ids(server, full_jid):
    """(sid, cid) of a session, as the sm logged its start."""
    m = wait_log(server.sm.log, rf"session (\w+) of {re.escape(full_jid)} on (\S+) started")
    return m[1], m[2]


def refused_by_sm(server, mark, sender="bot.localhost"):
    wait_log(server.sm.log, rf"route from {re.escape(sender)} \(role component\) refused", mark)


def hearthctl(config, *args):
    """hearthctl -c config args...: the CompletedProcess."""
    return subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c", config, *args],
                          capture_output=True, text=True, timeout=30)


def ping(client):
    answer = client.iq("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    return answer["type"] == "result"


# ---- names ----------------------------------------------------------------------------

@pytest.mark.parametrize("bind", ["c2s-9", "sm", "sm-2", "localhost shard", "localhost", "s2s default",
                                  "s2s", "elsewhere.example default", "resolver", "hearthctl-1",
                                  "router", "other.example"])
def test_a_component_cannot_bind_a_name_of_another_role(bot, bind):
    b = bot("bot.localhost", bind)
    name = bind.split()[0]
    assert b.saw(f"binderror {name} not-allowed")
    # its own name it has
    assert "binderror bot.localhost not-allowed" not in b.seen


def test_a_route_with_a_role_of_its_own_is_refused(trusted, bot, users):
    alice = users("alice")
    sid, cid = session_ids(trusted, "alice@localhost/x")
    b = bot("bot.localhost")
    b.cmd(f"raw <route role='sm' to='c2s-1' from='bot.localhost' user='alice@localhost' "
          f"cid='{cid}' sid='{sid}'><message xmlns='jabber:client' to='alice@localhost/x'>"
          f"<body>forged</body></message></route>")
    bounce = b.expect("<route")
    assert "type='error'" in bounce and "error='forbidden'" in bounce, bounce
    assert "role='router'" in bounce, bounce
    with pytest.raises(ClientError):
        alice.wait_message(lambda m: m["body"] == "forged", timeout=0.5)


def test_a_components_malformed_payload_ends_its_link_and_reaches_nobody(trusted, bot, users):
    """The router parses what a component routes, payload included (the
    payloads of Hearth's own daemons it only scans): malformed XML inside a
    route ends the component's link with not-well-formed, and the sm it was
    addressed to never sees it, so the sm's own link stays up."""
    alice = users("alice")
    b = bot("bot.localhost")
    router_mark, sm_mark = log_size(trusted.router.log), log_size(trusted.sm.log)
    b.cmd("raw <route to='localhost' from='bot.localhost' user='alice@localhost'>"
          "<message xmlns='jabber:client' from='x@bot.localhost' to='alice@localhost/x'>"
          "<body>a</b></message></route>")
    wait_log(trusted.router.log, r"stream error not-well-formed", router_mark)
    b.expect("down")
    assert ping(alice) and not alice.disconnected.is_set()
    bob = users("bob")
    bob.send_message("alice@localhost/x", "still served")
    assert alice.wait_message(lambda m: m["body"] == "still served")
    with open(trusted.sm.log, errors="replace") as f:
        f.seek(sm_mark)
        assert not re.search(r"router link .*(stream error|lost)", f.read())


# ---- the session protocol and stanzas of users --------------------------------------------

def test_a_component_cannot_start_a_session_for_a_user(trusted, bot, users):
    alice = users("alice")
    b = bot("bot.localhost")
    mark = log_size(trusted.sm.log)
    b.cmd(f"raw <route to='localhost' from='bot.localhost' user='alice@localhost'>"
          f"<session xmlns='{NS_SESSION}' action='start' jid='alice@localhost/x' "
          f"cid='bot.localhost:1'/></route>")
    refused_by_sm(trusted, mark)
    # Alice keeps her session (no conflict), and the intruder got no session.
    assert ping(alice) and not alice.disconnected.is_set()
    assert not any("<session" in line for line in b.seen), b.seen
    bob = users("bob")
    bob.send_message("alice@localhost/x", "still yours")
    assert alice.wait_message(lambda m: m["body"] == "still yours")["body"] == "still yours"


def test_a_component_cannot_end_a_users_session(trusted, bot, users):
    alice = users("alice")
    sid, cid = session_ids(trusted, "alice@localhost/x")
    b = bot("bot.localhost")
    mark = log_size(trusted.sm.log)
    b.cmd(f"raw <route to='localhost' from='bot.localhost' user='alice@localhost' cid='{cid}' "
          f"sid='{sid}'><session xmlns='{NS_SESSION}' action='end' cid='{cid}' sid='{sid}'/>"
          f"</route>")
    refused_by_sm(trusted, mark)
    assert ping(alice)
    out = hearthctl(trusted.env.config_path, "online")
    assert "alice@localhost/x" in out.stdout, out


def test_a_component_cannot_resume_a_session_for_a_user(trusted, bot, users):
    """A resume rebuilds a session with the sid it names (after an sm
    restart): from anyone but a c2s it must make nothing."""
    users("alice")
    b = bot("bot.localhost")
    mark = log_size(trusted.sm.log)
    sid, cid = "ab" * 16, "c2s-1:00000000000000aa"
    b.cmd(f"raw <route to='localhost' from='bot.localhost' user='alice@localhost' cid='{cid}' "
          f"sid='{sid}'><session xmlns='{NS_SESSION}' action='resume' jid='alice@localhost/evil' "
          f"cid='{cid}' sid='{sid}'><presence xmlns='jabber:client'/></session></route>")
    refused_by_sm(trusted, mark)
    out = hearthctl(trusted.env.config_path, "online")
    assert "alice@localhost/x" in out.stdout and "evil" not in out.stdout, out


def test_a_component_cannot_send_as_a_user(trusted, bot, users):
    users("alice")
    bob = users("bob")
    b = bot("bot.localhost")
    mark = log_size(trusted.sm.log)
    b.cmd("raw <route to='localhost' from='bot.localhost' user='bob@localhost'>"
          "<message from='alice@localhost/x' to='bob@localhost/x' type='chat'>"
          "<body>spoofed</body></message></route>")
    # The same link, next: a message from the component's own name, which
    # must arrive (and arrives after the first had its turn).
    b.cmd("raw <route to='localhost' from='bot.localhost' user='bob@localhost'>"
          "<message from='news@bot.localhost' to='bob@localhost/x' type='chat'>"
          "<body>from the bot itself</body></message></route>")
    got = bob.wait_message(lambda m: m["body"] in ("spoofed", "from the bot itself"))
    assert got["body"] == "from the bot itself" and str(got["from"]) == "news@bot.localhost", got
    refused_by_sm(trusted, mark)
    with pytest.raises(ClientError):
        bob.wait_message(lambda m: m["body"] == "spoofed", timeout=0.3)


def test_a_component_cannot_send_a_sessions_stanza(trusted, bot, users):
    """A route with the real sid and cid of alice's session, from bot."""
    users("alice")
    bob = users("bob")
    sid, cid = session_ids(trusted, "alice@localhost/x")
    b = bot("bot.localhost")
    mark = log_size(trusted.sm.log)
    b.cmd(f"raw <route to='localhost' from='c2s-1' user='alice@localhost' cid='{cid}' "
          f"sid='{sid}'><message to='bob@localhost' type='chat'><body>spoofed</body></message>"
          f"</route>")
    bounce = b.expect("<route")  # from a name it has not bound: the router's own refusal
    assert "error='forbidden'" in bounce, bounce
    b.cmd(f"raw <route to='localhost' from='bot.localhost' user='alice@localhost' cid='{cid}' "
          f"sid='{sid}'><message to='bob@localhost' type='chat'><body>spoofed</body></message>"
          f"</route>")
    refused_by_sm(trusted, mark)
    with pytest.raises(ClientError):
        bob.wait_message(lambda m: m["body"] == "spoofed", timeout=0.3)


def test_a_component_cannot_change_a_users_password(trusted, bot, users):
    alice = users("alice", password="old-secret")
    b = bot("bot.localhost")
    mark = log_size(trusted.sm.log)
    b.cmd("raw <route to='localhost' from='bot.localhost' user='alice@localhost'>"
          "<iq type='set' id='r1' from='alice@localhost/x' to='localhost'>"
          "<query xmlns='jabber:iq:register'><username>alice</username>"
          "<password>hacked</password></query></iq></route>")
    refused_by_sm(trusted, mark)
    alice.disconnect()
    Client(trusted, "alice@localhost", "old-secret", resource="y").connect().disconnect()
    with pytest.raises(ClientError) as e:
        Client(trusted, "alice@localhost", "hacked", resource="z").connect()
    assert e.value.condition == "not-authorized"


def test_a_component_cannot_ask_the_admin_queries(trusted, bot, users):
    users("alice")
    b = bot("bot.localhost")
    b.cmd(f"raw <route to='localhost' from='bot.localhost'><iq type='get' id='o1' "
          f"from='bot.localhost' to='localhost'><online xmlns='{NS_ADMIN}'/></iq></route>")
    answer = b.expect("<route")
    assert "type='error'" in answer and "<forbidden" in answer, answer
    assert "alice@localhost" not in answer, answer
    # from the name hearthctl would use: the router does not even let it bind
    h = bot("hearthctl-4242", ident="bot-2")
    assert h.saw("binderror hearthctl-4242 not-allowed")
    # and the real hearthctl still works
    out = hearthctl(trusted.env.config_path, "online")
    assert out.returncode == 0 and "alice@localhost/x" in out.stdout, out


# ---- a client's stream (finding 2) ---------------------------------------------------------

def test_a_component_cannot_write_into_a_clients_stream(trusted, bot, users):
    """Even knowing the real cid and sid, a route to c2s-1 from bot
    delivers nothing and ends nothing: c2s takes routes for clients only
    from the sm."""
    alice = users("alice")
    sid, cid = session_ids(trusted, "alice@localhost/x")
    b = bot("bot.localhost")
    c2s_log = trusted.c2s[0].log
    mark = log_size(c2s_log)
    b.cmd(f"raw <route to='c2s-1' from='bot.localhost' user='alice@localhost' cid='{cid}' "
          f"sid='{sid}'><message xmlns='jabber:client' from='bob@localhost/x' "
          f"to='alice@localhost/x'><body>injected</body></message></route>")
    b.cmd(f"raw <route to='c2s-1' from='bot.localhost' user='alice@localhost' cid='{cid}'>"
          f"<session xmlns='{NS_SESSION}' action='ended' reason='conflict' cid='{cid}' "
          f"sid='{sid}'/></route>")
    wait_log(c2s_log, r"route from bot\.localhost \(role component\) refused", mark)
    assert ping(alice) and not alice.disconnected.is_set()
    with pytest.raises(ClientError):
        alice.wait_message(lambda m: m["body"] == "injected", timeout=0.3)


def test_connection_ids_are_random(trusted, users):
    """cids carry 64 random bits: two binds in a row are not neighbours."""
    users("alice", resource="one")
    users("alice", resource="two", register=False)
    _, first = session_ids(trusted, "alice@localhost/one")
    _, second = session_ids(trusted, "alice@localhost/two")
    a, b = (int(c.split(":")[1], 16) for c in (first, second))
    assert re.fullmatch(r"c2s-1:[0-9a-f]{16}", first) and re.fullmatch(r"c2s-1:[0-9a-f]{16}",
                                                                        second)
    assert abs(a - b) > 1 << 32, (first, second)


def test_c2s_delivers_only_with_the_sid_of_the_session(fake_sm):
    server, sm = fake_sm
    ctl = hearthctl(server.env.config_path, "adduser", "alice@localhost", "pw")
    assert ctl.returncode == 0, ctl
    alice = Client(server, "alice@localhost", "pw", resource="x")
    try:
        # The session start reaches the fake sm; it answers as the sm does.
        done = threading.Thread(target=alice.connect)
        done.start()
        start = sm.expect(lambda line: "action='start'" in line)
        cid = re.search(r"cid='([^']+)'", start)[1]
        sm.cmd(f"raw <route to='c2s-1' from='localhost' user='alice@localhost' cid='{cid}'>"
               f"<session xmlns='{NS_SESSION}' action='started' jid='alice@localhost/x' "
               f"cid='{cid}' sid='the-real-sid'/></route>")
        done.join(10)
        assert alice.bound_jid, "alice's bind never finished"

        def deliver(sid, body):
            sm.cmd(f"raw <route to='c2s-1' from='localhost' user='alice@localhost' cid='{cid}' "
                   f"sid='{sid}'><message xmlns='jabber:client' from='bob@localhost/y' "
                   f"to='alice@localhost/x'>"
                   f"<body>{body}</body></message></route>")
        deliver("a-wrong-sid", "wrong sid")
        deliver("the-real-sid", "right sid")
        got = alice.wait_message(lambda m: m["body"] in ("wrong sid", "right sid"))
        assert got["body"] == "right sid", got
        with pytest.raises(ClientError):
            alice.wait_message(lambda m: m["body"] == "wrong sid", timeout=0.3)
    finally:
        alice.disconnect()


# ---- the resolver ----------------------------------------------------------------------------

NS_RESOLVER = "urn:hearth:resolver:1"


def test_only_s2s_may_ask_the_resolver(hearth_env):
    hearth_env.write_config(**{"resolver.override": [{"domain": "peer.example",
                                                      "target": "192.0.2.7:5269"}]})
    router = hearth_env.add(Router(hearth_env))
    router.start()
    hearth_env.start("resolver")
    asker = Component(BUILDDIR, router.listen, router.password, "curious", "curious.example",
                      logdir=hearth_env.logdir)
    s2s_user, s2s_password = router.account("s2s")
    s2s = Component(BUILDDIR, router.listen, s2s_password, "s2s", "s2s default", user=s2s_user,
                    logdir=hearth_env.logdir)
    try:
        for c in (asker, s2s):
            c.expect("ready")
            c.saw("advert resolver available")
        request = (f"<resolve xmlns='{NS_RESOLVER}' id='1' domain='peer.example'/>")
        mark = log_size(os.path.join(hearth_env.logdir, "resolver.log"))
        asker.cmd(f"raw <route to='resolver' from='curious.example'>{request}</route>")
        s2s.cmd(f"raw <route to='resolver' from='s2s'>{request}</route>")
        answer = s2s.expect("<route")
        assert "192.0.2.7" in answer and "role='resolver'" in answer, answer
        wait_log(os.path.join(hearth_env.logdir, "resolver.log"),
                 r"request from curious\.example \(role component\) refused", mark)
        asker.expect_none("<route", within=0.3)
    finally:
        asker.close()
        s2s.close()


# ---- older configs ----------------------------------------------------------------------------

def test_one_shared_router_password_still_works_with_a_warning(tmp_path):
    """A hearth.xml of before the accounts: router.password only."""
    env = Env(tmp_path)
    shared = random_password()
    env.settings.pop("router.account")
    env.settings.pop("router.component")
    env.write_config(**{"router.password": shared})
    server = Server(env).start()
    try:
        alice = Client(server, "alice@localhost", "pw", register=True).connect()
        bob = Client(server, "bob@localhost", "pw", register=True).connect()
        alice.send_message(bob.bound_jid, "as before")
        assert bob.wait_message()["body"] == "as before"
        alice.disconnect()
        bob.disconnect()
        for log in (server.router.log, server.sm.log, server.c2s[0].log):
            text = open(log, errors="replace").read()
            assert "router.password" in text and ("shared" in text or "any of them" in text), \
                f"no warning about the shared password in {log}"
    finally:
        server.stop()


# ---- the sm's negative account cache (finding 9) ------------------------------------------------

def send_and_get_error(sender, to, body):
    """Send a chat message; the condition of the error that comes back."""
    sender.send_message(to, body)
    err = sender.wait_message(lambda m: m["type"] == "error" and m["body"] == body, timeout=10)
    return err["error"]["condition"]


@pytest.mark.parametrize("storage_driver", ["pgsql"], indirect=True)
def test_a_nonexistent_account_costs_one_lookup(server, database_down):
    """Stanzas to a name that does not exist are answered from memory once
    looked up: with the database down, still service-unavailable (the
    store is not asked again), not internal-server-error."""
    alice = Client(server, "alice@localhost", "pw", register=True).connect()
    try:
        assert send_and_get_error(alice, "nobody@localhost", "one") == "service-unavailable"
        with database_down():
            assert send_and_get_error(alice, "nobody@localhost", "two") == \
                "service-unavailable"
    finally:
        alice.disconnect()


@pytest.mark.parametrize("how", ["registration", "hearthctl"])
def test_a_new_account_is_not_taken_for_a_nonexistent_one(server, how):
    """The negative answer ends as soon as the account is made, by in-band
    registration or by hearthctl adduser."""
    alice = Client(server, "alice@localhost", "pw", register=True).connect()
    try:
        assert send_and_get_error(alice, "newbie@localhost", "before") == "service-unavailable"
        if how == "registration":
            Client(server, "newbie@localhost", "pw", register=True).connect().disconnect()
        else:
            out = hearthctl(server.env.config_path, "adduser", "newbie@localhost", "pw")
            assert out.returncode == 0, out
        alice.send_message("newbie@localhost", "after")
        newbie = Client(server, "newbie@localhost", "pw", resource="r").connect()
        try:
            newbie.send_presence()
            assert newbie.wait_message(lambda m: m["body"] == "after", timeout=10)
        finally:
            newbie.disconnect()
        with pytest.raises(ClientError):
            alice.wait_message(lambda m: m["type"] == "error" and m["body"] == "after",
                               timeout=0.3)
    finally:
        alice.disconnect()
