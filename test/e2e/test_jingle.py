"""Call signalling through Hearth (issues 13 and 15), with real slixmpp
clients: Jingle (XEP-0166/0167/0176) is client to client, so the server's
part is to carry it. A session IQ goes to a full JID untouched and its
answer comes back; a Jingle Message Initiation (XEP-0353) message, bodyless
with a <store/> hint, rings every device of the callee, directly or as a
carbon (sm/mod_carbons.c), and the answer reaches the caller and the
callee's other devices; for an offline callee it is kept (sm/mod_offline.c)
like chat markers are, but chat states and <no-store/> messages are not.

That a client got nothing is checked by a later stanza to it: the sm
handles stanzas in order and a session's stream keeps it, so anything
else would have come first."""
import xml.etree.ElementTree as ET

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from hearth_env import Server, wait_for
from xmpp_client import Client, register

PASSWORD = "pw-calls"
NS_CLIENT = "jabber:client"
NS_JINGLE = "urn:xmpp:jingle:1"
NS_RTP = "urn:xmpp:jingle:apps:rtp:1"
NS_ICE = "urn:xmpp:jingle:transports:ice-udp:1"
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
NS_JMI = "urn:xmpp:jingle-message:0"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
NS_DELAY = "urn:xmpp:delay"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
SID = "ca3cf894-5325-482f-a412-a6e9f832298d"

# What Conversations sends to start an audio call (XEP-0353 §3.1; its
# MessageGenerator: type chat "to be carbon-copied", a receipt request, the
# <store/> hint, no body).
PROPOSE = (f"<propose xmlns='{NS_JMI}' id='{SID}'><description xmlns='{NS_RTP}' media='audio'/>"
           "</propose><request xmlns='urn:xmpp:receipts'/>"
           f"<store xmlns='{NS_HINTS}'/>")
PROCEED = f"<proceed xmlns='{NS_JMI}' id='{SID}'/><store xmlns='{NS_HINTS}'/>"

# A session-initiate as a WebRTC client sends it (XEP-0167 RTP with Opus,
# XEP-0176 ICE-UDP candidates, XEP-0320 DTLS fingerprint).
SESSION_INITIATE = f"""<jingle xmlns='{NS_JINGLE}' action='session-initiate'
    initiator='INITIATOR' sid='{SID}'>
  <content creator='initiator' name='0' senders='both'>
    <description xmlns='{NS_RTP}' media='audio'>
      <payload-type id='111' name='opus' clockrate='48000' channels='2'>
        <parameter name='minptime' value='10'/>
        <parameter name='useinbandfec' value='1'/>
        <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
      </payload-type>
      <payload-type id='0' name='PCMU' clockrate='8000'/>
      <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='1'
          uri='urn:ietf:params:rtp-hdrext:ssrc-audio-level'/>
      <rtcp-mux/>
    </description>
    <transport xmlns='{NS_ICE}' ufrag='8hhy' pwd='asd88fgpdd777uzjYhagZg'>
      <fingerprint xmlns='{NS_DTLS}' hash='sha-256' setup='actpass'>02:1A:CC:54:27:AB:EB:9C:53:3F:3E:4B:65:2E:7D:46:3F:54:42:CD:54:F1:7A:03:A2:7D:F9:B0:7F:46:19:B2</fingerprint>
      <candidate component='1' foundation='1' generation='0' id='el0747fg11' ip='10.0.1.1'
          network='1' port='8998' priority='2130706431' protocol='udp' type='host'/>
      <candidate component='1' foundation='2' generation='0' id='y3s2b30v3r' ip='192.0.2.3'
          network='1' port='45664' priority='1694498815' protocol='udp'
          rel-addr='10.0.1.1' rel-port='8998' type='srflx'/>
    </transport>
  </content>
</jingle>"""


class People:
    """alice and bob, registered; login() starts a session of either."""

    def __init__(self, server):
        self.server = server
        self.made = []
        for user in ("alice", "bob"):
            register(server, f"{user}@localhost", PASSWORD, resource="setup")

    def login(self, user, resource, priority=0, carbons=False):
        c = Client(self.server, f"{user}@localhost", PASSWORD, resource=resource).connect()
        self.made.append(c)
        if carbons:
            answer = c.iq(f"<iq type='set'><enable xmlns='{NS_CARBONS}'/></iq>")
            assert answer["type"] == "result", answer
        if priority is not None:
            c.send_presence(ppriority=priority)
        return c

    def close(self):
        for c in self.made:
            c.disconnect()


@pytest.fixture
def people(hearth_env):
    """Live routing only: the store plays no part, SQLite will do."""
    p = People(Server(hearth_env).start())
    yield p
    p.close()


@pytest.fixture
def offline(hearth_env, storage_driver):
    """For what is kept for an offline user: on SQLite and on PostgreSQL."""
    p = People(Server(hearth_env).start())
    p.env = hearth_env
    yield p
    p.close()


def shape(e):
    """An element as nested tuples (name, attributes, text, children), for
    comparing what was sent with what arrived, whatever the prefixes."""
    return (e.tag, sorted(e.attrib.items()), (e.text or "").strip(), [shape(c) for c in e])


def condition(stanza):
    """The stanza error condition, '' when it is no error."""
    error = stanza.xml.find(f"{{{NS_CLIENT}}}error")
    if error is None:
        return ""
    names = [c.tag.split("}")[1] for c in error if c.tag.startswith(f"{{{NS_STANZAS}}}")]
    return next((n for n in names if n != "text"), "?")


def carbon(message, how):
    """The message forwarded in a <received/> or <sent/> carbon, or None."""
    return message.xml.find(f"{{{NS_CARBONS}}}{how}/{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")


def jmi(message, action):
    """The XEP-0353 <action/> of a message (a slixmpp stanza or an
    element), or None."""
    return getattr(message, "xml", message).find(f"{{{NS_JMI}}}{action}")


def messages_until(client, pred):
    """The messages client got up to the first for which pred is true."""
    client.wait_message(pred)
    got = []
    for s in client.received:
        if s.name == "message":
            got.append(s)
            if pred(s):
                return got
    raise AssertionError("unreachable")


def take_jingle_iqs(client):
    """Tell client's slixmpp that Jingle IQs are the test's to answer (it
    would answer feature-not-implemented by itself)."""
    handler = Callback("jingle", MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_JINGLE}}}jingle"),
                       lambda iq: None)
    client._call(client.xmpp.register_handler, handler)


def offline_rows(env):
    return env.sql("SELECT stanza FROM offline WHERE owner = 'bob@localhost' ORDER BY id")


# ---- session IQs ------------------------------------------------------------

def test_session_initiate_reaches_the_full_jid_intact_and_its_result_comes_back(people):
    alice = people.login("alice", "a")
    bob = people.login("bob", "b")
    take_jingle_iqs(bob)
    jingle = SESSION_INITIATE.replace("INITIATOR", alice.bound_jid)
    alice.send(f"<iq type='set' id='jingle-1' to='{bob.bound_jid}'>{jingle}</iq>")
    iq = bob.wait_iq(lambda s: s["id"] == "jingle-1")
    assert iq["type"] == "set" and iq["from"] == alice.bound_jid and iq["to"] == bob.bound_jid, iq
    got = iq.xml.find(f"{{{NS_JINGLE}}}jingle")
    assert got is not None, iq
    sent = ET.fromstring(jingle)
    assert shape(got) == shape(sent), f"payload changed on the way:\n{ET.tostring(got).decode()}"
    bob.send(f"<iq type='result' id='jingle-1' to='{alice.bound_jid}'/>")
    answer = alice.wait_iq(lambda s: s["id"] == "jingle-1")
    assert answer["type"] == "result" and answer["from"] == bob.bound_jid, answer


def test_a_session_iq_to_a_resource_that_is_not_online_is_service_unavailable(people):
    """RFC 6121 §8.5.3.2.3: no session has that full JID (bob is online
    elsewhere): the server answers for it."""
    alice = people.login("alice", "a")
    people.login("bob", "b")
    jingle = SESSION_INITIATE.replace("INITIATOR", alice.bound_jid)
    alice.send(f"<iq type='set' id='jingle-2' to='bob@localhost/gone'>{jingle}</iq>")
    answer = alice.wait_iq(lambda s: s["id"] == "jingle-2")
    assert answer["type"] == "error" and condition(answer) == "service-unavailable", answer
    assert answer["from"] == "bob@localhost/gone", answer


# ---- Jingle Message Initiation ------------------------------------------------

def test_a_propose_rings_every_device_and_the_proceed_reaches_caller_and_other_devices(people):
    alice = people.login("alice", "a")
    # bob/b has the higher priority: RFC 6121 §8.5.2.1.1 gives it the
    # propose itself; bob/c gets it as a <received/> carbon (XEP-0280).
    phone = people.login("bob", "b", priority=5, carbons=True)
    laptop = people.login("bob", "c", priority=0, carbons=True)
    wait_for(lambda: any(p.name == "presence" and p["from"] == laptop.bound_jid
                         for p in phone.received), "bob/b sees bob/c online")
    alice.send(f"<message type='chat' id='jm-propose-{SID}' to='bob@localhost'>{PROPOSE}</message>")

    direct = phone.wait_message(lambda m: jmi(m, "propose") is not None)
    assert direct["from"] == alice.bound_jid and direct["type"] == "chat", direct
    assert direct.xml.find(f"{{{NS_CLIENT}}}body") is None
    copy = laptop.wait_message(lambda m: carbon(m, "received") is not None)
    inner = carbon(copy, "received")
    assert copy["from"] == "bob@localhost" and copy["to"] == laptop.bound_jid, copy
    assert inner.get("from") == alice.bound_jid and inner.get("id") == f"jm-propose-{SID}", copy
    assert jmi(inner, "propose").get("id") == SID, copy

    # bob takes the call on b: the proceed to alice's bare JID (XEP-0353 §3.4)
    phone.send(f"<message type='chat' id='jm-proceed-{SID}' to='alice@localhost'>{PROCEED}</message>")
    proceed = alice.wait_message(lambda m: jmi(m, "proceed") is not None)
    assert proceed["from"] == phone.bound_jid and jmi(proceed, "proceed").get("id") == SID, proceed
    sent = laptop.wait_message(lambda m: carbon(m, "sent") is not None)
    assert carbon(sent, "sent").get("from") == phone.bound_jid, sent
    assert jmi(carbon(sent, "sent"), "proceed").get("id") == SID, sent

    # one ring per device: b got no carbon of the propose, nor of its own proceed
    alice.send_message(phone.bound_jid, "after the call setup")
    got = messages_until(phone, lambda m: m["body"] == "after the call setup")
    assert [m["id"] for m in got] == [f"jm-propose-{SID}", got[-1]["id"]], [str(m) for m in got]


# ---- what is kept for an offline user --------------------------------------

@pytest.mark.parametrize("payload", [
    PROPOSE,
    "<displayed xmlns='urn:xmpp:chat-markers:0' id='msg-1'/>",
    f"<composing xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='{NS_HINTS}'/>",
], ids=["jmi-propose", "chat-marker", "chat-state-with-store"])
def test_a_bodyless_message_for_an_offline_user_is_kept_and_delivered_with_delay(offline, payload):
    alice = offline.login("alice", "a")
    alice.send(f"<message type='chat' id='kept' to='bob@localhost'>{payload}</message>")
    wait_for(lambda: len(offline_rows(offline.env)) == 1, "the message stored")
    bob = offline.login("bob", "b")
    m = bob.wait_message(lambda m: m["id"] == "kept")
    assert m["from"] == alice.bound_jid and m.xml.find(f"{{{NS_CLIENT}}}body") is None, m
    first = ET.fromstring(f"<w xmlns='{NS_CLIENT}'>{payload}</w>")[0]
    assert shape(m.xml.find(first.tag)) == shape(first), m
    delay = m.xml.find(f"{{{NS_DELAY}}}delay")
    assert delay is not None and delay.get("from") == "localhost", m


@pytest.mark.parametrize("hint", [
    "", f"<no-permanent-store xmlns='{NS_HINTS}'/>", f"<no-store xmlns='{NS_HINTS}'/>",
], ids=["alone", "with-no-permanent-store", "with-no-store"])
def test_a_chat_state_for_an_offline_user_is_dropped_silently(offline, hint):
    """XEP-0160 §3 / XEP-0085: chat states alone are not kept, hints or not,
    and the sender is told nothing."""
    alice = offline.login("alice", "a")
    alice.send("<message type='chat' id='typing' to='bob@localhost'>"
               f"<composing xmlns='http://jabber.org/protocol/chatstates'/>{hint}</message>")
    alice.send_message("bob@localhost", "the real message")
    wait_for(lambda: offline_rows(offline.env), "the real message stored")
    assert len(offline_rows(offline.env)) == 1, offline_rows(offline.env)
    # an error would come back before the answer to a later ping
    assert alice.iq("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")["type"] \
        == "result"
    errors = [m for m in alice.received if m.name == "message" and m["type"] == "error"]
    assert not errors, [str(m) for m in errors]
    bob = offline.login("bob", "b")
    got = messages_until(bob, lambda m: m["body"] == "the real message")
    assert len(got) == 1, [str(m) for m in got]


def test_a_no_store_message_for_an_offline_user_is_refused(offline):
    """XEP-0334 §4: <no-store/> is not stored "temporarily, e.g. for later
    delivery to an offline client"; a message not kept is answered
    service-unavailable (RFC 6121 §8.5.2.2.1)."""
    alice = offline.login("alice", "a")
    alice.send("<message type='chat' id='ephemeral' to='bob@localhost'>"
               f"<body>not for later</body><no-store xmlns='{NS_HINTS}'/></message>")
    error = alice.wait_message(lambda m: m["id"] == "ephemeral")
    assert error["type"] == "error" and condition(error) == "service-unavailable", error
    alice.send_message("bob@localhost", "for later")
    wait_for(lambda: offline_rows(offline.env), "the other message stored")
    bob = offline.login("bob", "b")
    got = messages_until(bob, lambda m: m["body"] == "for later")
    assert [m["body"] for m in got] == ["for later"], [str(m) for m in got]
