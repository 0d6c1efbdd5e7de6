"""The session manager when things go wrong or grow: an unreachable
domain, the database stopping in the middle, bad stanzas, and several sm
shards sharing the users. Real router, sm(s) and c2s, slixmpp clients."""
import os
import time

import pytest

from hearth_env import Daemon
from test_sm_core import befriend, body, condition, jid, make_client, ptype, users  # noqa: F401
from xmpp_client import ClientError

NS_ROSTER = "jabber:iq:roster"


def test_message_to_an_unreachable_domain_is_remote_server_not_found(server, users):
    alice = users("alice")
    alice.send_message("bob@unreachable.example", "hello?")
    err = alice.wait_message(lambda m: m.xml.get("type") == "error")
    assert condition(err) == "remote-server-not-found"
    assert body(err) == "hello?", "the error carries the original message"


def test_iq_without_a_child_is_bad_request_and_the_session_goes_on(server, users):
    alice = users("alice")
    answer = alice.iq("<iq type='get' to='localhost'/>")
    assert condition(answer) == "bad-request"
    assert alice.roster_get() == {}


def test_presence_with_an_invalid_priority_is_bad_request(server, users):
    alice = users("alice")
    alice.send("<presence><priority>high</priority></presence>")
    err = alice.wait_presence(lambda p: p.xml.get("type") == "error")
    assert condition(err) == "bad-request"


def wait_until(pred, timeout=15, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def test_offline_message_while_the_database_is_down_gets_an_error(server, users,
                                                                    database_down):
    users.register("alice", "bob")
    alice = users.login("alice")
    alice.send_message(jid(server, "bob"), "stored")
    time.sleep(0.5)
    with database_down():
        alice.send_message(jid(server, "bob"), "lost?")
        err = alice.wait_message(lambda m: m.xml.get("type") == "error", timeout=10)
        assert condition(err) in ("internal-server-error", "resource-constraint")
        assert body(err) == "lost?"

    def stored_again():
        alice.send_message(jid(server, "bob"), "after")
        try:
            alice.wait_message(lambda m: m.xml.get("type") == "error", timeout=1)
            return False
        except ClientError:
            return True
    assert wait_until(stored_again), "messages are not stored again after the database came back"
    bob = users.login("bob")
    bob.send_presence()
    assert body(bob.wait_message()) == "stored"
    assert body(bob.wait_message()) == "after"


def test_roster_set_while_the_database_is_down_fails_and_changes_nothing(server, users,
                                                                         database_down):
    alice = users("alice")
    alice.roster_get()
    with database_down():
        answer = alice.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'>"
                          "<item jid='carol@example.org' name='Carol'/></query></iq>", timeout=15)
        assert answer["type"] == "error"
        assert condition(answer) in ("internal-server-error", "resource-constraint")

    def roster_readable():
        try:
            alice.roster_get()
            return True
        except ClientError:
            return False
    assert wait_until(roster_readable)
    assert alice.roster_get() == {}, "a refused roster set left nothing behind"


@pytest.mark.server(**{"sm.shards": "2"})
def test_users_on_two_sm_shards_chat_and_see_presence(server, users, hearth_env):
    mark = os.path.getsize(server.router.log)
    second = hearth_env.add(Daemon("sm", hearth_env.config_path, hearth_env.logdir, ident="sm-2"))
    second.start()
    server.wait_router_log("sm-2 bound localhost", mark, 10, second)
    names = [f"u{i}" for i in range(6)]
    users.register(*names)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            befriend(hearth_env, jid(server, x), jid(server, y))
    clients = [users.login(n) for n in names]
    with open(os.path.join(hearth_env.logdir, "sm-2.log")) as f:
        on_second = {n for n in names if f" of {n}@localhost/" in f.read()}
    assert 0 < len(on_second) < len(names), f"users did not spread over the shards: {on_second}"
    first = next(n for n in names if n not in on_second)
    other = next(iter(on_second))
    a, b = clients[names.index(first)], clients[names.index(other)]
    b.send_presence()
    a.send_presence()
    b.wait_presence(lambda p: str(p["from"]) == a.bound_jid and ptype(p) == "")
    a.wait_presence(lambda p: str(p["from"]) == b.bound_jid and ptype(p) == "")
    a.send_message(jid(server, other), "across shards")
    assert body(b.wait_message()) == "across shards"
    b.send_message(a.bound_jid, "and back")
    assert body(a.wait_message()) == "and back"
