"""What one user may make the sm store, end to end (real router, sm and
c2s, slixmpp clients): roster items (sm.roster-max), whatever would add
one (subscriptions both ways, pre-approval), the request a contact leaves
for a user who is away, and the elements of private XML storage
(sm.private-count). Each test runs on SQLite and on PostgreSQL.

The other things the sm keeps per user had their bounds already and are
tested with their features: offline messages (sm.offline-quota,
test_sm_core), the vCard (sm.vcard-max) and the block list
(sm.blocklist-max, test_sm_iq); private elements are sm.private-max bytes
each (test_sm_iq)."""
import time

import pytest

from test_sm_core import condition, jid, ptype, users  # noqa: F401

NS_ROSTER = "jabber:iq:roster"
NS_PRIVATE = "jabber:iq:private"


def roster_set(client, contact, name=None):
    named = f" name='{name}'" if name else ""
    return client.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='{contact}'{named}/>"
                     "</query></iq>")


def private_set(client, *namespaces):
    elements = "".join(f"<e xmlns='{ns}'>{ns}</e>" for ns in namespaces)
    return client.iq(f"<iq type='set'><query xmlns='{NS_PRIVATE}'>{elements}</query></iq>")


def private_get(client, ns):
    answer = client.iq(f"<iq type='get'><query xmlns='{NS_PRIVATE}'><e xmlns='{ns}'/></query></iq>")
    return answer.xml.findtext(f"{{{NS_PRIVATE}}}query/{{{ns}}}e")


def owners_items(env, owner):
    return sorted(r[0] for r in env.sql(f"SELECT jid FROM roster_items WHERE owner = '{owner}'"))


# ---- the roster --------------------------------------------------------------------

@pytest.mark.server(**{"sm.roster-max": "3"})
def test_roster_set_beyond_roster_max_is_resource_constraint(server, users):
    alice = users("alice")
    for i in range(3):
        assert roster_set(alice, f"c{i}@example.org")["type"] == "result"
    answer = roster_set(alice, "c3@example.org")
    assert condition(answer) == "resource-constraint", str(answer)
    assert answer.xml.find("{jabber:client}error").get("type") == "wait", str(answer)
    assert roster_set(alice, "c0@example.org", name="Zero")["type"] == "result", \
        "an item already in a full roster could not be changed"
    assert alice.roster_get()["c0@example.org"]["name"] == "Zero"
    assert owners_items(server.env, "alice@localhost") == [f"c{i}@example.org" for i in range(3)]
    remove = alice.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'><item jid='c1@example.org' "
                      "subscription='remove'/></query></iq>")
    assert remove["type"] == "result"
    assert roster_set(alice, "c3@example.org")["type"] == "result", "no room after a removal"


@pytest.mark.server(**{"sm.roster-max": "2"})
def test_subscriptions_that_would_pass_roster_max_are_refused(server, users):
    alice, bob, carol = users("alice", "bob", "carol")
    for i in range(2):
        assert roster_set(alice, f"c{i}@example.org")["type"] == "result"
    # alice asks a new contact: refused to her, nothing sent
    alice.send_presence(pto=jid(server, "bob"), ptype="subscribe")
    err = alice.wait_presence(lambda p: ptype(p) == "error")
    assert condition(err) == "resource-constraint", str(err)
    # nor may she approve one in advance
    alice.send_presence(pto=jid(server, "carol"), ptype="subscribed")
    err = alice.wait_presence(lambda p: ptype(p) == "error")
    assert condition(err) == "resource-constraint", str(err)
    # a new contact asks her: declined on her behalf, as RFC 6121 3.1.3
    # does for an account that does not exist (an error would go to
    # carol's bare JID, where nobody sees it)
    carol.roster_get()
    carol.send_presence()
    carol.send_presence(pto=jid(server, "alice"), ptype="subscribe")
    no = carol.wait_presence(lambda p: ptype(p) == "unsubscribed")
    assert str(no["from"]) == jid(server, "alice"), str(no)
    item = carol.roster_get().get(jid(server, "alice"))
    assert item is not None and not item["ask"], f"carol's request still pending: {item}"
    assert not [p for p in bob.received if p.name == "presence" and ptype(p) == "subscribe"], \
        "the refused request reached bob"
    assert not [p for p in alice.received if p.name == "presence" and ptype(p) == "subscribe"], \
        "the refused request reached alice"
    assert owners_items(server.env, "alice@localhost") == ["c0@example.org", "c1@example.org"]
    # a contact already there still subscribes as usual
    alice.roster_get()
    alice.send_presence(pto="c0@example.org", ptype="subscribe")
    push = alice.wait_iq(lambda s: s.xml.get("type") == "set"
                         and s.xml.find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item") is not None)
    assert push.xml.find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item").get("ask") == "subscribe"


def test_a_kept_subscription_request_is_bounded(server, users):
    bob = users("bob")
    users.register("alice")  # and away: the request is kept for her
    status = "s" * 20000
    bob.send(f"<presence type='subscribe' to='{jid(server, 'alice')}'><status>{status}</status>"
             "</presence>")
    deadline = time.monotonic() + 10
    while True:  # kept once alice's roster is loaded and saved
        rows = server.env.sql("SELECT pending_in FROM roster_items WHERE owner = 'alice@localhost'")
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(rows) == 1 and rows[0][0], rows
    kept = rows[0][0]
    assert len(kept) <= 4096, f"a request of {len(kept)} bytes was kept"
    assert "type='subscribe'" in kept and "bob@localhost" in kept, kept
    alice = users.login("alice")
    alice.send_presence()
    req = alice.wait_presence(lambda p: ptype(p) == "subscribe")
    assert str(req["from"]) == "bob@localhost", str(req)


# ---- private XML storage ----------------------------------------------------------------

@pytest.mark.server(**{"sm.private-count": "3"})
def test_private_storage_beyond_private_count_is_resource_constraint(server, users):
    alice = users("alice")
    assert private_set(alice, "urn:x:1", "urn:x:2")["type"] == "result"
    answer = private_set(alice, "urn:x:3", "urn:x:4")  # one too many: none is stored
    assert condition(answer) == "resource-constraint", str(answer)
    assert not private_get(alice, "urn:x:3"), "part of a refused set was stored"
    assert private_set(alice, "urn:x:3")["type"] == "result"
    assert condition(private_set(alice, "urn:x:4")) == "resource-constraint"
    assert private_set(alice, "urn:x:1", "urn:x:2")["type"] == "result", \
        "elements already kept could not be replaced"
    assert private_get(alice, "urn:x:1") == "urn:x:1"
    count = server.env.sql("SELECT COUNT(*) FROM private WHERE owner = 'alice@localhost'")
    assert count == [["3"]], count
