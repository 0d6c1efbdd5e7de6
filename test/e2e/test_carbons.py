"""Message Carbons (XEP-0280, urn:xmpp:carbons:2; sm/mod_carbons.c) with
real slixmpp clients: each of a user's sessions that turned carbons on sees
the messages the user's other sessions get and send, and nothing else.

That a session got no copy is checked by a later message to it: the sm
handles stanzas in order and a session's stream keeps it, so a copy would
have come first."""
import signal

import pytest

from hearth_env import Server, log_size, wait_log
from xmpp_client import Client

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
PASSWORD = "pw-carbons"
JMI_PROPOSE = ("<propose xmlns='urn:xmpp:jingle-message:0' id='s1'>"
               "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>")
OMEMO = ("<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><iv>AAAA</iv></header>"
         "</encrypted>")


@pytest.fixture
def server(hearth_env):
    return Server(hearth_env).start()


@pytest.fixture
def login(server):
    made = []

    def make(user, resource, priority=None, carbons=False, register=False):
        c = Client(server, f"{user}@localhost", PASSWORD, resource=resource,
                   register=register).connect()
        made.append(c)
        if carbons:
            assert carbons_set(c, "enable")["type"] == "result"
        if priority is not None:
            c.send_presence(ppriority=priority)
        return c
    for user in ("alice", "bob"):
        make(user, "setup", register=True).disconnect()
    made.clear()
    yield make
    for c in made:
        c.disconnect()


def carbons_set(client, what, to=None):
    to_attr = f" to='{to}'" if to else ""
    return client.iq(f"<iq type='set'{to_attr}><{what} xmlns='{NS_CARBONS}'/></iq>")


def carbon(message, how):
    """The message forwarded inside a <received/> or <sent/> carbon, or None."""
    wrapper = message.xml.find(f"{{{NS_CARBONS}}}{how}")
    if wrapper is None:
        return None
    return wrapper.find(f"{{{NS_FORWARD}}}forwarded/{{jabber:client}}message")


def carbons_of(client, how):
    return [m for m in client.received if m.name == "message" and carbon(m, how) is not None]


def no_carbon_before(client, sender, marker):
    """sender sends client a marker straight to its full JID; once it has
    arrived, client got no carbon before it."""
    sender.send_message(client.bound_jid, marker)
    client.wait_message(lambda m: m["body"] == marker)
    got = [m for m in client.received if m.name == "message" and
           (carbon(m, "received") is not None or carbon(m, "sent") is not None)]
    return not got


def wait_available(client, *others):
    """client sees each of others available (their presence is broadcast to
    the user's own resources)."""
    for o in others:
        client.wait_presence(lambda p, o=o: p["from"] == o.bound_jid and p["type"] == "available")


def test_the_server_announces_carbons(login):
    alice = login("alice", "a")
    info = alice.iq("<iq type='get' to='localhost'>"
                    "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    features = {f.get("var") for f in info.xml.iter("{http://jabber.org/protocol/disco#info}feature")}
    assert NS_CARBONS in features, features


@pytest.mark.parametrize("to", [None, "alice@localhost", "localhost"])
def test_enable_and_disable_are_answered(login, to):
    alice = login("alice", "a")
    assert carbons_set(alice, "enable", to)["type"] == "result"
    assert carbons_set(alice, "disable", to)["type"] == "result"


def test_a_get_is_a_bad_request(login):
    alice = login("alice", "a")
    answer = alice.iq(f"<iq type='get'><enable xmlns='{NS_CARBONS}'/></iq>")
    assert answer["type"] == "error" and answer["error"]["condition"] == "bad-request", answer


def test_a_message_to_one_resource_reaches_the_others_that_asked(login):
    a = login("alice", "a", priority=0)
    b = login("alice", "b", priority=0, carbons=True)
    c = login("alice", "c", priority=0)
    bob = login("bob", "x", priority=0)
    bob.send_message(a.bound_jid, "to a")
    a.wait_message(lambda m: m["body"] == "to a")
    copy = b.wait_message(lambda m: carbon(m, "received") is not None)
    assert copy["from"] == "alice@localhost" and copy["to"] == b.bound_jid, copy
    inner = carbon(copy, "received")
    assert inner.get("from") == bob.bound_jid and inner.get("to") == a.bound_jid, copy
    assert inner.find("{jabber:client}body").text == "to a"
    # neither the session that got the message nor one that did not ask
    assert no_carbon_before(a, bob, "after, to a")
    assert no_carbon_before(c, bob, "after, to c")


def test_a_message_to_the_bare_jid_is_copied_only_where_it_did_not_go(login):
    a = login("alice", "a", priority=5)
    b = login("alice", "b", priority=1, carbons=True)
    bob = login("bob", "x", priority=0)
    bob.send_message("alice@localhost", "to the bare jid")
    a.wait_message(lambda m: m["body"] == "to the bare jid")
    copy = b.wait_message(lambda m: carbon(m, "received") is not None)
    assert carbon(copy, "received").find("{jabber:client}body").text == "to the bare jid"
    # equal priorities: both get the message itself, so no copy
    b.send_presence(ppriority=5)
    wait_available(a, b)
    bob.send_message("alice@localhost", "to both")
    a.wait_message(lambda m: m["body"] == "to both")
    b.wait_message(lambda m: m["body"] == "to both")
    assert len(carbons_of(b, "received")) == 1


def test_what_one_resource_sends_reaches_the_others_as_sent(login):
    a = login("alice", "a", priority=0)
    b = login("alice", "b", priority=0, carbons=True)
    c = login("alice", "c", priority=0)
    a_too = carbons_set(a, "enable")
    assert a_too["type"] == "result"
    bob = login("bob", "x", priority=0)
    a.send_message("bob@localhost", "from a")
    bob.wait_message(lambda m: m["body"] == "from a")
    copy = b.wait_message(lambda m: carbon(m, "sent") is not None)
    inner = carbon(copy, "sent")
    assert copy["from"] == "alice@localhost", copy
    assert inner.get("from") == a.bound_jid and inner.get("to") == "bob@localhost", copy
    assert no_carbon_before(a, bob, "the sender gets no copy of its own")
    assert no_carbon_before(c, bob, "nor one that did not ask")


@pytest.mark.parametrize("body,extra,type,copied", [
    ("private", f"<private xmlns='{NS_CARBONS}'/>", "chat", False),
    ("no-copy", "<no-copy xmlns='urn:xmpp:hints'/>", "chat", False),
    ("headline", "", "headline", False),
    (None, "<subject>no body</subject>", "normal", False),
    ("normal with a body", "", "normal", True),
    (None, "<active xmlns='http://jabber.org/protocol/chatstates'/>", "chat", True),
    (None, "<received xmlns='urn:xmpp:receipts' id='r1'/>", "normal", True),
    (None, "<displayed xmlns='urn:xmpp:chat-markers:0' id='x1'/>", "normal", True),
    # XEP-0353 call signalling, as a client of its older revisions sends it
    (None, JMI_PROPOSE, "normal", True),
    (None, JMI_PROPOSE + f"<private xmlns='{NS_CARBONS}'/>", "chat", False),
    # a payload outside the body: copied when the sender says it matters
    (None, OMEMO, "normal", False),
    (None, OMEMO + "<store xmlns='urn:xmpp:hints'/>", "normal", True),
])
def test_which_messages_are_copied(login, body, extra, type, copied):
    a = login("alice", "a", priority=0)
    b = login("alice", "b", priority=0, carbons=True)
    bob = login("bob", "x", priority=0)
    body_xml = f"<body>{body}</body>" if body else ""
    bob.send(f"<message to='{a.bound_jid}' type='{type}' id='m1'>{body_xml}{extra}</message>")
    a.wait_message(lambda m: m["id"] == "m1")
    if copied:
        copy = b.wait_message(lambda m: carbon(m, "received") is not None)
        assert carbon(copy, "received").get("id") == "m1"
    else:
        assert no_carbon_before(b, bob, "after")


def test_messages_between_ones_own_resources_are_not_copied(login):
    a = login("alice", "a", priority=0)
    b = login("alice", "b", priority=0, carbons=True)
    c = login("alice", "c", priority=0, carbons=True)
    bob = login("bob", "x", priority=0)
    a.send_message(b.bound_jid, "to my other device")
    b.wait_message(lambda m: m["body"] == "to my other device")
    assert no_carbon_before(c, bob, "after")


def test_disable_stops_the_copies(login):
    a = login("alice", "a", priority=0)
    b = login("alice", "b", priority=0, carbons=True)
    bob = login("bob", "x", priority=0)
    assert carbons_set(b, "disable")["type"] == "result"
    bob.send_message(a.bound_jid, "after disable")
    a.wait_message(lambda m: m["body"] == "after disable")
    assert no_carbon_before(b, bob, "after")


def test_another_user_cannot_turn_on_carbons_for_someone_else(login):
    """An enable addressed to another account is not the server's: that
    account's sessions get no copies because of it."""
    a = login("alice", "a", priority=0)
    b = login("alice", "b", priority=0)
    bob = login("bob", "x", priority=0)
    answer = carbons_set(bob, "enable", to="alice@localhost")
    assert answer["type"] == "error", answer
    bob.send_message(a.bound_jid, "to a")
    a.wait_message(lambda m: m["body"] == "to a")
    assert no_carbon_before(b, bob, "after")


def test_carbons_stay_on_across_an_sm_restart(server, login):
    a = login("alice", "a", priority=0)
    b = login("alice", "b", priority=0, carbons=True)
    bob = login("bob", "x", priority=0)
    mark = log_size(server.c2s[0].log)
    server.sm.proc.send_signal(signal.SIGKILL)
    server.sm.proc.wait()
    server.sm.proc = None
    server.start_sm()
    # the c2s re-announces the sessions (carbons='true' for b) to the new sm
    wait_log(server.c2s[0].log, r"the session manager of localhost is back: \d+ sessions resumed",
             mark)
    bob.send_message(a.bound_jid, "after the restart")
    a.wait_message(lambda m: m["body"] == "after the restart", timeout=10)
    copy = b.wait_message(lambda m: carbon(m, "received") is not None, timeout=10)
    assert carbon(copy, "received").find("{jabber:client}body").text == "after the restart"
