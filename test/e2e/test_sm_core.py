"""The session manager's core features end to end: real router, sm and c2s,
real slixmpp clients. Messages (RFC 6121 §8 delivery), presence (§4),
the roster (§2, XEP-0237), subscriptions (§3), offline messages (XEP-0160)
and resource conflicts. Each test runs on SQLite and on PostgreSQL.

Roster states a test starts from are rows put in the store directly
(hearth_env.sql), so each test exercises one behaviour."""
import time
import xml.etree.ElementTree as ET

import pytest

from xmpp_client import Client, ClientError

NS_ROSTER = "jabber:iq:roster"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_DELAY = "urn:xmpp:delay"


def make_client(server, name, resource=None, register=True, port=None):
    c = Client(server, f"{name}@{server.domain}", "pw-secret", resource=resource,
               register=register, port=port)
    # slixmpp answers subscription requests by itself unless told not to.
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False
    return c.connect()


@pytest.fixture
def users(server):
    """users("alice", "bob") -> connected Clients, accounts registered.
    users.login("alice", resource="two") -> another session of an account."""
    made = []

    class Users:
        def __call__(self, *names, resource=None):
            for name in names:
                made.append(make_client(server, name, resource=resource))
            return made[-len(names):] if len(names) > 1 else made[-1]

        def login(self, name, resource=None, port=None):
            made.append(make_client(server, name, resource=resource, register=False, port=port))
            return made[-1]

        def register(self, *names):
            for name in names:
                make_client(server, name).disconnect()

    yield Users()
    for c in made:
        c.disconnect()


def jid(server, name):
    return f"{name}@{server.domain}"


def condition(stanza):
    """The stanza error condition ('' when it is no error)."""
    error = stanza.xml.find("{jabber:client}error")
    if error is None:
        return ""
    for child in error:
        if child.tag.startswith("{" + NS_STANZAS + "}") and not child.tag.endswith("}text"):
            return child.tag.split("}")[1]
    return "?"


def ptype(p):
    """A presence's type attribute ('' for available)."""
    return p.xml.get("type") or ""


def body(m):
    b = m.xml.find("{jabber:client}body")
    return b.text if b is not None else None


def befriend(env, a, b, sub_ab="both", sub_ba="both"):
    """Roster rows: a has b with sub_ab, b has a with sub_ba."""
    env.sql(f"INSERT INTO roster_items (owner, jid, subscription) VALUES ('{a}', '{b}', '{sub_ab}')")
    env.sql(f"INSERT INTO roster_items (owner, jid, subscription) VALUES ('{b}', '{a}', '{sub_ba}')")


def roster_item(client, bare):
    return client.roster_get().get(bare)


def wait_roster_push(client, bare, pred=lambda item: True, timeout=5):
    """The item of the next roster push about bare matching pred."""
    def match(s):
        if s.xml.get("type") != "set":
            return False
        item = s.xml.find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item")
        return item is not None and item.get("jid") == bare and pred(item)
    iq = client.wait_iq(match, timeout)
    return iq.xml.find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item")


def stored(env, query):
    return env.sql(query)


# ---- messages ---------------------------------------------------------------

@pytest.mark.server(c2s=2)
def test_chat_between_two_users_on_two_c2s_processes(server, users):
    users.register("alice", "bob")
    alice = users.login("alice", port=server.c2s_ports[0])
    bob = users.login("bob", port=server.c2s_ports[1])
    bob.send_presence()
    time.sleep(0.3)
    alice.send_message(jid(server, "bob"), "hello from c2s-1")
    m = bob.wait_message()
    assert body(m) == "hello from c2s-1"
    assert str(m["from"]) == alice.bound_jid
    bob.send_message(alice.bound_jid, "hello back")
    assert body(alice.wait_message()) == "hello back"


def test_message_to_nonexistent_user_is_service_unavailable(server, users):
    alice = users("alice")
    alice.send_message(jid(server, "nobody"), "anyone?")
    err = alice.wait_message(lambda m: m.xml.get("type") == "error")
    assert condition(err) == "service-unavailable"
    assert str(err["from"]) == jid(server, "nobody")


def test_presence_to_nonexistent_user_is_dropped_silently(server, users):
    alice = users("alice")
    alice.send_presence(pto=jid(server, "nobody"), ptype="subscribe")
    alice.send_message(jid(server, "nobody"), "marker")
    alice.wait_message(lambda m: m.xml.get("type") == "error")
    assert not [p for p in alice.received if p.name == "presence"
                and p.xml.get("from", "").startswith("nobody@")], alice.received


def test_bare_jid_chat_goes_to_the_highest_priority_resources(server, users):
    users.register("alice", "bob")
    alice = users.login("alice")
    low = users.login("bob", resource="low")
    high = users.login("bob", resource="high")
    low.send_presence(ppriority=1)
    low.wait_presence(lambda p: str(p["from"]) == low.bound_jid)
    high.send_presence(ppriority=5)
    low.wait_presence(lambda p: str(p["from"]) == high.bound_jid)  # the sm has both
    alice.send_message(jid(server, "bob"), "to the best")
    assert body(high.wait_message()) == "to the best"
    with pytest.raises(ClientError):
        low.wait_message(timeout=1)


def test_bare_jid_chat_reaches_every_resource_at_equal_top_priority(server, users):
    users.register("alice", "bob")
    alice = users.login("alice")
    one = users.login("bob", resource="one")
    two = users.login("bob", resource="two")
    one.send_presence(ppriority=3)
    one.wait_presence(lambda p: str(p["from"]) == one.bound_jid)
    two.send_presence(ppriority=3)
    one.wait_presence(lambda p: str(p["from"]) == two.bound_jid)  # the sm has both
    # one serialization serves both sessions (sm_fanout_begin): each
    # message reaches each in order, none another's bytes
    texts = ["both", "and again", "a third, <escaped> & longer than the others"]
    for text in texts:
        alice.send_message(jid(server, "bob"), text)
    for session in (one, two):
        assert [body(session.wait_message()) for _ in texts] == texts


def test_full_jid_message_to_a_gone_resource_goes_to_the_bare_jid(server, users):
    users.register("alice", "bob")
    alice = users.login("alice")
    bob = users.login("bob", resource="desk")
    bob.send_presence()
    time.sleep(0.3)
    alice.send_message(jid(server, "bob") + "/gone", "where are you")
    assert body(bob.wait_message()) == "where are you"


def test_iq_to_a_gone_full_jid_is_service_unavailable(server, users):
    users.register("alice", "bob")
    alice = users.login("alice")
    answer = alice.iq(f"<iq type='get' to='{jid(server, 'bob')}/gone'>"
                      "<query xmlns='jabber:iq:version'/></iq>")
    assert answer["type"] == "error"
    assert condition(answer) == "service-unavailable"


def test_groupchat_message_to_a_user_is_refused(server, users):
    users.register("alice", "bob")
    alice = users.login("alice")
    alice.send_message(jid(server, "bob"), "room?", type="groupchat")
    err = alice.wait_message(lambda m: m.xml.get("type") == "error")
    assert condition(err) == "service-unavailable"


def test_message_with_malformed_to_is_jid_malformed(server, users):
    alice = users("alice")
    alice.send("<message to='a@b@c' type='chat' id='bad1'><body>x</body></message>")
    err = alice.wait_message(lambda m: m.xml.get("type") == "error")
    assert condition(err) == "jid-malformed"


# ---- presence ---------------------------------------------------------------

def test_presence_seen_on_login_and_logout(server, users, hearth_env):
    users.register("alice", "bob")
    befriend(hearth_env, jid(server, "alice"), jid(server, "bob"))
    alice = users.login("alice")
    alice.send_presence(pstatus="here")
    bob = users.login("bob")
    bob.send_presence()
    # bob's initial presence probes alice: he learns she is online
    p = bob.wait_presence(lambda p: str(p["from"]) == alice.bound_jid)
    assert ptype(p) == "" and p["status"] == "here"
    # alice hears bob's initial presence
    alice.wait_presence(lambda p: str(p["from"]) == bob.bound_jid and ptype(p) == "")
    alice.disconnect()
    p = bob.wait_presence(lambda p: str(p["from"]) == alice.bound_jid and ptype(p) == "unavailable")
    assert p is not None


def test_presence_does_not_reach_an_unsubscribed_user(server, users, hearth_env):
    users.register("alice", "bob")
    alice = users.login("alice")
    bob = users.login("bob")
    bob.send_presence()
    alice.send_presence()
    with pytest.raises(ClientError):
        bob.wait_presence(lambda p: str(p["from"]) == alice.bound_jid, timeout=1)


def test_probe_from_a_contact_without_subscription_reveals_nothing(server, users, hearth_env):
    users.register("alice", "bob")
    # bob believes he is subscribed to alice; alice's roster says otherwise
    befriend(hearth_env, jid(server, "bob"), jid(server, "alice"), "to", "none")
    alice = users.login("alice")
    alice.send_presence()
    bob = users.login("bob")
    bob.send_presence()
    # RFC 6121 §4.3.2: no presence, an unsubscribed instead
    p = bob.wait_presence(lambda p: p["from"].bare == jid(server, "alice"))
    assert ptype(p) == "unsubscribed"


def test_directed_presence_is_withdrawn_when_the_session_ends(server, users):
    users.register("alice", "bob")
    alice = users.login("alice")
    bob = users.login("bob")
    bob.send_presence()
    alice.send_presence()
    alice.send_presence(pto=bob.bound_jid, pstatus="just for you")
    p = bob.wait_presence(lambda p: str(p["from"]) == alice.bound_jid)
    assert p["status"] == "just for you"
    alice.disconnect()
    bob.wait_presence(lambda p: str(p["from"]) == alice.bound_jid and ptype(p) == "unavailable")


def test_presence_is_echoed_to_the_sending_session(server, users):
    alice = users("alice")
    alice.send_presence(pstatus="echo")
    p = alice.wait_presence(lambda p: str(p["from"]) == alice.bound_jid)
    assert ptype(p) == "" and p["status"] == "echo"


def test_own_resources_see_each_other(server, users):
    users.register("alice")
    one = users.login("alice", resource="one")
    one.send_presence()
    two = users.login("alice", resource="two")
    two.send_presence()
    one.wait_presence(lambda p: str(p["from"]) == two.bound_jid and ptype(p) == "")
    two.wait_presence(lambda p: str(p["from"]) == one.bound_jid and ptype(p) == "")


# ---- roster -----------------------------------------------------------------

def test_roster_set_then_get_keeps_name_and_groups(server, users):
    alice = users("alice")
    answer = alice.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='carol@example.org' "
                      "name='Carol'><group>Friends</group><group>Work</group></item></query></iq>")
    assert answer["type"] == "result", answer
    item = roster_item(alice, "carol@example.org")
    assert item["name"] == "Carol"
    assert sorted(item["groups"]) == ["Friends", "Work"]
    assert item["subscription"] == "none"


def test_roster_set_is_pushed_to_a_second_resource(server, users):
    users.register("alice")
    one = users.login("alice", resource="one")
    two = users.login("alice", resource="two")
    two.roster_get()  # becomes interested in pushes
    one.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='carol@example.org' "
           "name='Carol'/></query></iq>")
    item = wait_roster_push(two, "carol@example.org")
    assert item.get("name") == "Carol"


def test_roster_remove_deletes_the_item_and_pushes_remove(server, users):
    alice = users("alice")
    alice.roster_get()
    alice.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='carol@example.org'/></query></iq>")
    answer = alice.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='carol@example.org' "
                      "subscription='remove'/></query></iq>")
    assert answer["type"] == "result"
    wait_roster_push(alice, "carol@example.org", lambda i: i.get("subscription") == "remove")
    assert roster_item(alice, "carol@example.org") is None


def test_roster_remove_of_a_missing_item_is_item_not_found(server, users):
    alice = users("alice")
    answer = alice.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='nobody@example.org' "
                      "subscription='remove'/></query></iq>")
    assert condition(answer) == "item-not-found"


def test_roster_set_with_two_items_is_bad_request(server, users):
    alice = users("alice")
    answer = alice.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='a@example.org'/>"
                      "<item jid='b@example.org'/></query></iq>")
    assert condition(answer) == "bad-request"


def test_roster_versioning_answers_empty_when_current(server, users):
    alice = users("alice")
    alice.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='carol@example.org'/></query></iq>")
    full = alice.iq(f"<iq type='get'><query xmlns='{NS_ROSTER}' ver=''/></iq>")
    ver = full.xml.find(f"{{{NS_ROSTER}}}query").get("ver")
    assert ver, "the roster result carries a version"
    same = alice.iq(f"<iq type='get'><query xmlns='{NS_ROSTER}' ver='{ver}'/></iq>")
    assert same["type"] == "result"
    assert same.xml.find(f"{{{NS_ROSTER}}}query") is None, "up to date: an empty result"
    alice.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='dave@example.org'/></query></iq>")
    newer = alice.iq(f"<iq type='get'><query xmlns='{NS_ROSTER}' ver='{ver}'/></iq>")
    query = newer.xml.find(f"{{{NS_ROSTER}}}query")
    assert query is not None and query.get("ver") != ver
    assert {i.get("jid") for i in query} == {"carol@example.org", "dave@example.org"}


# ---- subscriptions ----------------------------------------------------------

def test_subscription_handshake_leaves_both_rosters_at_both(server, users):
    alice, bob = users("alice", "bob")
    a, b = jid(server, "alice"), jid(server, "bob")
    alice.roster_get()
    bob.roster_get()
    bob.send_presence()
    alice.send_presence()
    alice.send_presence(pto=b, ptype="subscribe")
    assert wait_roster_push(alice, b).get("ask") == "subscribe"
    req = bob.wait_presence(lambda p: ptype(p) == "subscribe")
    assert str(req["from"]) == a, "subscription requests come from the bare JID"
    bob.send_presence(pto=a, ptype="subscribed")
    assert wait_roster_push(bob, a).get("subscription") == "from"
    assert wait_roster_push(alice, b, lambda i: i.get("subscription") == "to").get("ask") is None
    # approval brings bob's presence to alice
    alice.wait_presence(lambda p: str(p["from"]) == bob.bound_jid and ptype(p) == "")
    bob.send_presence(pto=a, ptype="subscribe")
    alice.wait_presence(lambda p: ptype(p) == "subscribe")
    alice.send_presence(pto=b, ptype="subscribed")
    wait_roster_push(bob, a, lambda i: i.get("subscription") == "both")
    wait_roster_push(alice, b, lambda i: i.get("subscription") == "both")
    assert roster_item(alice, b)["subscription"] == "both"
    assert roster_item(bob, a)["subscription"] == "both"


def test_unsubscribe_takes_the_subscription_back_on_both_sides(server, users, hearth_env):
    users.register("alice", "bob")
    a, b = jid(server, "alice"), jid(server, "bob")
    befriend(hearth_env, a, b)
    alice, bob = users.login("alice"), users.login("bob")
    alice.roster_get()
    bob.roster_get()
    bob.send_presence()
    alice.send_presence(pto=b, ptype="unsubscribe")
    wait_roster_push(alice, b, lambda i: i.get("subscription") == "from")
    wait_roster_push(bob, a, lambda i: i.get("subscription") == "to")


def test_roster_remove_of_a_mutual_contact_cancels_both_subscriptions(server, users, hearth_env):
    users.register("alice", "bob")
    a, b = jid(server, "alice"), jid(server, "bob")
    befriend(hearth_env, a, b)
    alice, bob = users.login("alice"), users.login("bob")
    bob.roster_get()
    bob.send_presence()
    alice.send_presence()
    bob.wait_presence(lambda p: str(p["from"]) == alice.bound_jid and ptype(p) == "")
    answer = alice.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='{b}' "
                      "subscription='remove'/></query></iq>")
    assert answer["type"] == "result"
    # RFC 6121 §2.5.2: unsubscribe and unsubscribed go to bob, who stops
    # seeing alice
    wait_roster_push(bob, a, lambda i: i.get("subscription") == "none")
    bob.wait_presence(lambda p: str(p["from"]) == alice.bound_jid and ptype(p) == "unavailable")
    assert roster_item(bob, a)["subscription"] == "none"


def test_server_advertises_offline_messages(server, users):
    alice = users("alice")
    answer = alice.iq(f"<iq type='get' to='{server.domain}'>"
                      "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    features = {f.get("var") for f in answer.xml.iter("{http://jabber.org/protocol/disco#info}feature")}
    assert "msgoffline" in features, features
    assert NS_ROSTER in features, features


def test_preapproval_approves_a_later_request_at_once(server, users):
    alice, bob = users("alice", "bob")
    a, b = jid(server, "alice"), jid(server, "bob")
    bob.roster_get()
    bob.send_presence(pto=a, ptype="subscribed")  # nothing asked yet: pre-approval
    assert wait_roster_push(bob, a).get("approved") == "true"
    alice.roster_get()
    alice.send_presence(pto=b, ptype="subscribe")
    wait_roster_push(alice, b, lambda i: i.get("subscription") == "to")
    assert roster_item(bob, a)["subscription"] == "from"
    with pytest.raises(ClientError):
        bob.wait_presence(lambda p: ptype(p) == "subscribe", timeout=1)


def test_subscription_request_to_an_offline_user_is_delivered_at_login(server, users, hearth_env):
    users.register("alice", "bob")
    a, b = jid(server, "alice"), jid(server, "bob")
    alice = users.login("alice")
    alice.send_presence(pto=b, ptype="subscribe")
    deadline = time.monotonic() + 5
    while not stored(hearth_env, f"SELECT 1 FROM roster_items WHERE owner = '{b}' "
                                 "AND pending_in IS NOT NULL") and time.monotonic() < deadline:
        time.sleep(0.1)
    bob = users.login("bob")
    bob.send_presence()
    req = bob.wait_presence(lambda p: ptype(p) == "subscribe")
    assert str(req["from"]) == a
    # the request is no roster item of bob's until he answers
    assert bob.roster_get().get(a) is None


# ---- offline messages -------------------------------------------------------

def test_offline_messages_delivered_at_login_oldest_first_with_delay(server, users):
    users.register("alice", "bob")
    alice = users.login("alice")
    for i in range(3):
        alice.send_message(jid(server, "bob"), f"offline {i}")
    time.sleep(0.5)
    bob = users.login("bob")
    bob.send_presence()
    got = [bob.wait_message() for _ in range(3)]
    assert [body(m) for m in got] == ["offline 0", "offline 1", "offline 2"]
    for m in got:
        delay = m.xml.find(f"{{{NS_DELAY}}}delay")
        assert delay is not None, "offline messages carry <delay/>"
        assert delay.get("from") == server.domain
        assert delay.get("stamp", "").endswith("Z")


def test_offline_messages_are_delivered_once(server, users, hearth_env):
    users.register("alice", "bob")
    alice = users.login("alice")
    alice.send_message(jid(server, "bob"), "just once")
    time.sleep(0.5)
    bob = users.login("bob")
    bob.send_presence()
    assert body(bob.wait_message()) == "just once"
    time.sleep(0.5)
    assert stored(hearth_env, f"SELECT COUNT(*) FROM offline WHERE owner = '{jid(server, 'bob')}'") \
        == [["0"]]


@pytest.mark.server(**{"sm.offline-quota": "2"})
def test_offline_quota_full_is_service_unavailable(server, users):
    users.register("alice", "bob")
    alice = users.login("alice")
    for i in range(3):
        alice.send_message(jid(server, "bob"), f"m{i}")
    err = alice.wait_message(lambda m: m.xml.get("type") == "error")
    assert condition(err) == "service-unavailable"
    assert body(err) == "m2"


def test_chat_state_alone_is_not_stored_offline(server, users, hearth_env):
    users.register("alice", "bob")
    alice = users.login("alice")
    alice.send(f"<message to='{jid(server, 'bob')}' type='chat'>"
               "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    alice.send_message(jid(server, "bob"), "real")
    time.sleep(0.5)
    rows = stored(hearth_env, f"SELECT stanza FROM offline WHERE owner = '{jid(server, 'bob')}'")
    assert len(rows) == 1 and "real" in rows[0][0], rows


# ---- sessions ---------------------------------------------------------------

def test_resource_conflict_ends_the_older_session_with_conflict(server, users):
    users.register("alice")
    old = users.login("alice", resource="phone")
    new = users.login("alice", resource="phone")
    assert old.wait_disconnected(5), "the older session was not closed"
    assert old.stream_error == "conflict"
    assert new.bound_jid == f"{jid(server, 'alice')}/phone"
    assert not new.disconnected.is_set()
