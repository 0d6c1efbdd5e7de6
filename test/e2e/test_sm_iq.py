"""The IQs the sm answers, end to end: real router, sm and c2s, real
slixmpp clients. Service discovery (XEP-0030), vCard-temp (XEP-0054),
private XML storage (XEP-0049), software version (XEP-0092), entity time
(XEP-0202), last activity (XEP-0012), ping (XEP-0199), the blocking command
(XEP-0191) and, after login, password change and account removal
(XEP-0077). Each test runs on SQLite and on PostgreSQL."""
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import pytest

from hearth_env import BUILDDIR, binary
from testcomp import Component
from xmpp_client import befriend, Client, ClientError

DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
BLOCKING = "urn:xmpp:blocking"

# For what involves no storage: the SQLite run says all.
no_storage = pytest.mark.parametrize("storage_driver", ["sqlite"], indirect=True)


@pytest.fixture
def users(server):
    """users("alice", "bob") -> connected Clients, accounts registered."""
    made = []

    def make(*names, password="pw-secret", resource=None):
        for name in names:
            made.append(Client(server, f"{name}@{server.domain}", password, register=True,
                               resource=resource).connect())
        return made[-len(names):] if len(names) > 1 else made[-1]

    yield make
    for c in made:
        c.disconnect()


def xml(answer):
    """The answer's ElementTree element."""
    return answer.xml


def condition(answer):
    """The stanza error condition of an answer ('' when it is no error)."""
    error = answer.xml.find("{jabber:client}error")
    if error is None:
        return ""
    for child in error:
        if child.tag.startswith("{" + STANZAS + "}") and not child.tag.endswith("}text"):
            return child.tag.split("}")[1]
    return "?"


def result_of(client, stanza):
    """The payload of the result to stanza; fails with the error otherwise."""
    answer = client.iq(stanza)
    assert answer["type"] == "result", f"expected a result to {stanza}, got {answer}"
    children = list(xml(answer))
    return children[0] if children else None


def error_of(client, stanza):
    answer = client.iq(stanza)
    assert answer["type"] == "error", f"expected an error to {stanza}, got {answer}"
    return condition(answer)




def no_stanza(client, pred, seconds=0.7):
    """True when nothing matching pred arrives within seconds."""
    try:
        got = client.wait(pred, timeout=seconds)
    except ClientError:
        return True
    raise AssertionError(f"{client.jid}: unexpected {got}")


def is_message_from(jid, body=None):
    return lambda s: (s.name == "message" and s["from"].bare == jid
                      and (body is None or s["body"] == body))


def is_presence_from(jid, type_=None):
    return lambda s: (s.name == "presence" and s["from"].bare == jid
                      and (type_ is None or s["type"] == type_))


# ---- service discovery (XEP-0030) ---------------------------------------------

@no_storage
def test_server_disco_info_names_an_im_server_and_the_features(users, server):
    alice = users("alice")
    q = result_of(alice, f"<iq type='get' to='{server.domain}'><query xmlns='{DISCO_INFO}'/></iq>")
    identities = [(i.get("category"), i.get("type")) for i in q.findall(f"{{{DISCO_INFO}}}identity")]
    assert ("server", "im") in identities, identities
    features = {f.get("var") for f in q.findall(f"{{{DISCO_INFO}}}feature")}
    for ns in (DISCO_INFO, DISCO_ITEMS, "vcard-temp", "jabber:iq:private", "jabber:iq:version",
               "urn:xmpp:time", "jabber:iq:last", "urn:xmpp:ping", BLOCKING,
               "jabber:iq:register"):
        assert ns in features, f"{ns} missing from {sorted(features)}"


@no_storage
@pytest.mark.server(**{"sm.contact": [
    {"type": "abuse", "address": "mailto:abuse@localhost"},
    {"type": "support", "address": "xmpp:help@localhost"},
    {"type": "abuse", "address": "https://localhost/abuse"}]})
def test_server_disco_info_carries_the_contact_addresses(users, server):
    """XEP-0157: one serverinfo form, a field per kind given, the addresses
    in the order written; no field for a kind not configured."""
    alice = users("alice")
    q = result_of(alice, f"<iq type='get' to='{server.domain}'><query xmlns='{DISCO_INFO}'/></iq>")
    forms = q.findall("{jabber:x:data}x")
    assert len(forms) == 1, ET.tostring(q)
    fields = {f.get("var"): [v.text for v in f.findall("{jabber:x:data}value")]
              for f in forms[0].findall("{jabber:x:data}field")}
    assert fields == {"FORM_TYPE": ["http://jabber.org/network/serverinfo"],
                      "abuse-addresses": ["mailto:abuse@localhost", "https://localhost/abuse"],
                      "support-addresses": ["xmpp:help@localhost"]}, fields


@no_storage
def test_server_disco_info_has_no_form_without_contacts(users, server):
    alice = users("alice")
    q = result_of(alice, f"<iq type='get' to='{server.domain}'><query xmlns='{DISCO_INFO}'/></iq>")
    assert q.find("{jabber:x:data}x") is None, ET.tostring(q)


@no_storage
def test_server_disco_items_is_a_list(users, server):
    alice = users("alice")
    q = result_of(alice, f"<iq type='get' to='{server.domain}'><query xmlns='{DISCO_ITEMS}'/></iq>")
    assert q.tag == f"{{{DISCO_ITEMS}}}query"
    # Only services under the domain, never the daemons' own names.
    for item in q.findall(f"{{{DISCO_ITEMS}}}item"):
        assert item.get("jid").endswith("." + server.domain), ET.tostring(q)


@no_storage
def test_server_disco_items_lists_a_component_under_the_domain(users, server):
    comp = Component(BUILDDIR, server.router.listen, server.router.password, "muc-test",
                     f"conference.{server.domain}", logdir=server.env.logdir)
    try:
        comp.expect("ready")
        alice = users("alice")
        deadline = time.monotonic() + 5
        while True:
            q = result_of(alice, f"<iq type='get' to='{server.domain}'><query xmlns='{DISCO_ITEMS}'/></iq>")
            jids = {i.get("jid") for i in q.findall(f"{{{DISCO_ITEMS}}}item")}
            if f"conference.{server.domain}" in jids or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert jids == {f"conference.{server.domain}"}, jids
    finally:
        comp.close()


@no_storage
def test_disco_of_an_unknown_node_is_item_not_found(users, server):
    alice = users("alice")
    assert error_of(alice, f"<iq type='get' to='{server.domain}'>"
                           f"<query xmlns='{DISCO_INFO}' node='nothing'/></iq>") == "item-not-found"


def test_account_disco_info_is_a_registered_account(users, server):
    alice, bob = users("alice", "bob")
    q = result_of(alice, f"<iq type='get' to='{bob.jid.bare}'><query xmlns='{DISCO_INFO}'/></iq>")
    identities = [(i.get("category"), i.get("type")) for i in q.findall(f"{{{DISCO_INFO}}}identity")]
    assert identities == [("account", "registered")], identities


def test_own_account_disco_items_lists_own_resources(users, server):
    alice = users("alice")
    other = Client(server, alice.jid.bare, "pw-secret", resource="other").connect()
    try:
        q = result_of(alice, f"<iq type='get' to='{alice.jid.bare}'><query xmlns='{DISCO_ITEMS}'/></iq>")
        jids = {i.get("jid") for i in q.findall(f"{{{DISCO_ITEMS}}}item")}
        assert jids == {alice.bound_jid, other.bound_jid}, jids
    finally:
        other.disconnect()


def test_another_account_disco_items_tell_no_resources(users, server):
    alice, bob = users("alice", "bob")
    q = result_of(alice, f"<iq type='get' to='{bob.jid.bare}'><query xmlns='{DISCO_ITEMS}'/></iq>")
    assert q.findall(f"{{{DISCO_ITEMS}}}item") == [], ET.tostring(q)


# ---- unknown namespaces ----------------------------------------------------------

@no_storage
def test_unknown_iq_to_the_server_is_service_unavailable(users, server):
    alice = users("alice")
    assert error_of(alice, f"<iq type='get' to='{server.domain}'><query xmlns='urn:example:nothing'/></iq>") \
        == "service-unavailable"


def test_unknown_iq_to_an_account_is_service_unavailable(users, server):
    alice, bob = users("alice", "bob")
    assert error_of(alice, f"<iq type='get' to='{bob.jid.bare}'><query xmlns='urn:example:nothing'/></iq>") \
        == "service-unavailable"


# ---- vCard (XEP-0054) --------------------------------------------------------------

VCARD_SET = "<iq type='set'><vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>al</NICKNAME></vCard></iq>"


def test_vcard_of_an_account_without_one_is_empty(users):
    alice = users("alice")
    v = result_of(alice, "<iq type='get'><vCard xmlns='vcard-temp'/></iq>")
    assert v.tag == "{vcard-temp}vCard" and len(v) == 0, ET.tostring(v)


def test_vcard_set_is_read_back(users):
    alice = users("alice")
    assert result_of(alice, VCARD_SET) is None
    v = result_of(alice, "<iq type='get'><vCard xmlns='vcard-temp'/></iq>")
    assert v.findtext("{vcard-temp}FN") == "Alice Liddell", ET.tostring(v)
    assert v.findtext("{vcard-temp}NICKNAME") == "al", ET.tostring(v)


def test_vcard_of_another_user_is_read_by_bare_jid(users):
    alice, bob = users("alice", "bob")
    result_of(alice, VCARD_SET)
    v = result_of(bob, f"<iq type='get' to='{alice.jid.bare}'><vCard xmlns='vcard-temp'/></iq>")
    assert v.findtext("{vcard-temp}FN") == "Alice Liddell", ET.tostring(v)


def test_vcard_of_another_user_cannot_be_set(users):
    alice, bob = users("alice", "bob")
    assert error_of(bob, f"<iq type='set' to='{alice.jid.bare}'><vCard xmlns='vcard-temp'>"
                         "<FN>Mallory</FN></vCard></iq>") == "forbidden"
    v = result_of(alice, "<iq type='get'><vCard xmlns='vcard-temp'/></iq>")
    assert v.findtext("{vcard-temp}FN") is None, ET.tostring(v)


@pytest.mark.server(**{"sm.vcard-max": "1k"})
def test_vcard_over_the_size_limit_is_not_acceptable(users):
    alice = users("alice")
    big = "x" * 2000
    assert error_of(alice, f"<iq type='set'><vCard xmlns='vcard-temp'><DESC>{big}</DESC></vCard></iq>") \
        == "not-acceptable"


# ---- private XML storage (XEP-0049) -----------------------------------------------

def test_private_data_is_stored_and_read_back(users):
    alice = users("alice")
    result_of(alice, "<iq type='set'><query xmlns='jabber:iq:private'>"
                     "<prefs xmlns='urn:example:prefs'><colour>blue</colour></prefs></query></iq>")
    q = result_of(alice, "<iq type='get'><query xmlns='jabber:iq:private'>"
                         "<prefs xmlns='urn:example:prefs'/></query></iq>")
    assert q.findtext("{urn:example:prefs}prefs/{urn:example:prefs}colour") == "blue", ET.tostring(q)


def test_private_data_never_stored_comes_back_empty(users):
    alice = users("alice")
    q = result_of(alice, "<iq type='get'><query xmlns='jabber:iq:private'>"
                         "<prefs xmlns='urn:example:none'/></query></iq>")
    prefs = q.find("{urn:example:none}prefs")
    assert prefs is not None and len(prefs) == 0, ET.tostring(q)


def test_private_data_of_several_namespaces_in_one_set(users):
    alice = users("alice")
    result_of(alice, "<iq type='set'><query xmlns='jabber:iq:private'>"
                     "<a xmlns='urn:example:a'>1</a><b xmlns='urn:example:b'>2</b></query></iq>")
    for name in ("a", "b"):
        q = result_of(alice, f"<iq type='get'><query xmlns='jabber:iq:private'>"
                             f"<{name} xmlns='urn:example:{name}'/></query></iq>")
        assert q.findtext(f"{{urn:example:{name}}}{name}") == {"a": "1", "b": "2"}[name], ET.tostring(q)


def test_private_data_in_a_reserved_namespace_is_not_acceptable(users):
    alice = users("alice")
    for ns in ("jabber:client", "jabber:iq:private"):
        assert error_of(alice, f"<iq type='set'><query xmlns='jabber:iq:private'>"
                               f"<x xmlns='{ns}'/></query></iq>") == "not-acceptable", ns


def test_private_data_of_another_user_is_forbidden(users):
    alice, bob = users("alice", "bob")
    assert error_of(bob, f"<iq type='get' to='{alice.jid.bare}'><query xmlns='jabber:iq:private'>"
                         "<prefs xmlns='urn:example:prefs'/></query></iq>") == "forbidden"


# ---- version, time, ping --------------------------------------------------------------

@no_storage
def test_software_version_is_hearth_and_its_version(users, server):
    alice = users("alice")
    q = result_of(alice, f"<iq type='get' to='{server.domain}'><query xmlns='jabber:iq:version'/></iq>")
    built = subprocess.run([binary("sm"), "-V"], capture_output=True, text=True).stdout.split()[-1]
    assert q.findtext("{jabber:iq:version}name") == "Hearth", ET.tostring(q)
    assert q.findtext("{jabber:iq:version}version") == built, ET.tostring(q)
    assert q.find("{jabber:iq:version}os") is None, "os is told only with sm.version-os"


@no_storage
@pytest.mark.server(**{"sm.version-os": "true"})
def test_software_version_tells_the_os_when_configured(users, server):
    alice = users("alice")
    q = result_of(alice, f"<iq type='get' to='{server.domain}'><query xmlns='jabber:iq:version'/></iq>")
    assert (q.findtext("{jabber:iq:version}os") or "").startswith(os.uname().sysname), ET.tostring(q)


@no_storage
def test_entity_time_is_now_in_utc(users, server):
    alice = users("alice")
    t = result_of(alice, f"<iq type='get' to='{server.domain}'><time xmlns='urn:xmpp:time'/></iq>")
    assert re.fullmatch(r"[+-]\d\d:\d\d", t.findtext("{urn:xmpp:time}tzo") or ""), ET.tostring(t)
    utc = datetime.strptime(t.findtext("{urn:xmpp:time}utc"), "%Y-%m-%dT%H:%M:%S.%fZ")
    skew = abs((utc.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)).total_seconds())
    assert skew < 5, f"server time {utc} is {skew}s off"


@no_storage
def test_ping_to_the_server_is_answered(users, server):
    alice = users("alice")
    answer = alice.iq(f"<iq type='get' to='{server.domain}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert answer["type"] == "result", answer


# ---- last activity (XEP-0012) -----------------------------------------------------------

@no_storage
def test_last_activity_of_the_server_is_its_uptime(users, server):
    alice = users("alice")
    q = result_of(alice, f"<iq type='get' to='{server.domain}'><query xmlns='jabber:iq:last'/></iq>")
    assert 0 <= int(q.get("seconds")) < 600, ET.tostring(q)


def test_last_activity_of_a_contact_is_the_time_since_logout(users, server):
    alice, bob = users("alice", "bob")
    befriend(alice, bob)
    bob.send_presence(ptype="unavailable", pstatus="gone fishing")
    bob.disconnect()
    time.sleep(1.2)
    q = result_of(alice, f"<iq type='get' to='{bob.jid.bare}'><query xmlns='jabber:iq:last'/></iq>")
    assert 1 <= int(q.get("seconds")) < 60, ET.tostring(q)
    assert q.text == "gone fishing", ET.tostring(q)


def test_last_activity_of_an_online_contact_is_zero(users, server):
    alice, bob = users("alice", "bob")
    befriend(alice, bob)
    q = result_of(alice, f"<iq type='get' to='{bob.jid.bare}'><query xmlns='jabber:iq:last'/></iq>")
    assert q.get("seconds") == "0", ET.tostring(q)


def test_last_activity_of_a_stranger_is_forbidden(users, server):
    alice, bob = users("alice", "bob")
    assert error_of(alice, f"<iq type='get' to='{bob.jid.bare}'><query xmlns='jabber:iq:last'/></iq>") \
        == "forbidden"


# ---- blocking (XEP-0191) ------------------------------------------------------------------

def blocklist(client):
    q = result_of(client, f"<iq type='get'><blocklist xmlns='{BLOCKING}'/></iq>")
    return sorted(i.get("jid") for i in q.findall(f"{{{BLOCKING}}}item"))


def block(client, *jids):
    items = "".join(f"<item jid='{j}'/>" for j in jids)
    return result_of(client, f"<iq type='set'><block xmlns='{BLOCKING}'>{items}</block></iq>")


def unblock(client, *jids):
    items = "".join(f"<item jid='{j}'/>" for j in jids)
    return result_of(client, f"<iq type='set'><unblock xmlns='{BLOCKING}'>{items}</unblock></iq>")


def test_blocklist_starts_empty_and_lists_what_was_blocked(users):
    alice = users("alice")
    assert blocklist(alice) == []
    block(alice, "mallory@example.org", "spam.example")
    assert blocklist(alice) == ["mallory@example.org", "spam.example"]


def test_block_without_items_is_bad_request(users):
    alice = users("alice")
    assert error_of(alice, f"<iq type='set'><block xmlns='{BLOCKING}'/></iq>") == "bad-request"


def test_block_is_pushed_to_sessions_that_asked_for_the_list(users, server):
    alice = users("alice")
    other = Client(server, alice.jid.bare, "pw-secret", resource="other").connect()
    try:
        blocklist(other)
        block(alice, "mallory@example.org")
        push = other.wait_iq(lambda s: s["type"] == "set")
        items = push.xml.findall(f"{{{BLOCKING}}}block/{{{BLOCKING}}}item")
        assert [i.get("jid") for i in items] == ["mallory@example.org"], push
    finally:
        other.disconnect()


def test_unblock_all_empties_the_list(users):
    alice = users("alice")
    block(alice, "a@example.org", "b@example.org")
    unblock(alice)
    assert blocklist(alice) == []


def test_blocked_contact_cannot_message_the_user(users):
    alice, bob = users("alice", "bob")
    block(alice, bob.jid.bare)
    bob.send_message(alice.jid.bare, "let me in")
    bounce = bob.wait_message(lambda s: s["type"] == "error")
    assert condition(bounce) == "service-unavailable", bounce
    assert no_stanza(alice, is_message_from(bob.jid.bare))


def test_user_cannot_message_a_blocked_contact(users):
    alice, bob = users("alice", "bob")
    block(alice, bob.jid.bare)
    alice.send_message(bob.jid.bare, "psst")
    bounce = alice.wait_message(lambda s: s["type"] == "error")
    assert condition(bounce) == "not-acceptable", bounce
    assert bounce.xml.find("{jabber:client}error/{urn:xmpp:blocking:errors}blocked") is not None, bounce
    assert no_stanza(bob, is_message_from(alice.jid.bare))


def test_blocked_contact_gets_unavailable_and_no_more_presence(users):
    alice, bob = users("alice", "bob")
    befriend(alice, bob)
    bob.send_presence()
    alice.send_presence(pstatus="here")
    bob.wait_presence(is_presence_from(alice.jid.bare))
    block(alice, bob.jid.bare)
    bob.wait_presence(is_presence_from(alice.jid.bare, "unavailable"))
    alice.send_presence(pstatus="still here")
    assert no_stanza(bob, lambda s: is_presence_from(alice.jid.bare)(s) and s["status"] == "still here")


def test_blocked_contacts_message_is_not_kept_for_an_offline_user(users, server):
    alice, bob = users("alice", "bob")
    block(alice, bob.jid.bare)
    alice.disconnect()
    bob.send_message(alice.jid.bare, "while you were out")
    assert condition(bob.wait_message(lambda s: s["type"] == "error")) == "service-unavailable"
    again = Client(server, alice.jid.bare, "pw-secret", resource="back").connect()
    try:
        again.send_presence()
        assert no_stanza(again, is_message_from(bob.jid.bare), seconds=1.0)
    finally:
        again.disconnect()


def test_blocked_contact_logging_in_gets_no_presence(users, server):
    alice, bob = users("alice", "bob")
    befriend(alice, bob)
    alice.send_presence(pstatus="here")
    block(alice, bob.jid.bare)
    bob.disconnect()
    again = Client(server, bob.jid.bare, "pw-secret", resource="back").connect()
    try:
        again.send_presence()  # probes alice
        assert no_stanza(again, lambda s: is_presence_from(alice.jid.bare)(s)
                         and s["type"] != "unavailable", seconds=1.0)
    finally:
        again.disconnect()


def test_blocked_contact_iq_is_service_unavailable(users):
    alice, bob = users("alice", "bob")
    block(alice, bob.jid.bare)
    assert error_of(bob, f"<iq type='get' to='{alice.jid.bare}'><vCard xmlns='vcard-temp'/></iq>") \
        == "service-unavailable"


def test_unblock_restores_messages_and_presence(users):
    alice, bob = users("alice", "bob")
    befriend(alice, bob)
    bob.send_presence()
    alice.send_presence()
    block(alice, bob.jid.bare)
    unblock(alice, bob.jid.bare)
    bob.wait_presence(lambda s: s["from"].bare == alice.jid.bare and s["type"] != "unavailable")
    bob.send_message(alice.jid.bare, "friends again")
    assert alice.wait_message(is_message_from(bob.jid.bare, "friends again"))


def test_blocked_domain_covers_its_users(users):
    alice, bob = users("alice", "bob")
    block(alice, bob.jid.domain)
    bob.send_message(alice.jid.bare, "from the domain")
    assert condition(bob.wait_message(lambda s: s["type"] == "error")) == "service-unavailable"


# ---- password change and account removal (XEP-0077) -----------------------------------

def test_password_change_lets_only_the_new_password_in(users, server):
    alice = users("alice")
    answer = alice.iq(f"<iq type='set' to='{server.domain}'><query xmlns='jabber:iq:register'>"
                      f"<username>alice</username><password>new-secret</password></query></iq>")
    assert answer["type"] == "result", answer
    Client(server, alice.jid.bare, "new-secret", resource="new").connect().disconnect()
    with pytest.raises(ClientError) as failure:
        Client(server, alice.jid.bare, "pw-secret", resource="old").connect()
    assert failure.value.condition == "not-authorized"


def test_password_change_for_another_username_is_bad_request(users, server):
    alice = users("alice")
    assert error_of(alice, "<iq type='set'><query xmlns='jabber:iq:register'>"
                           "<username>bob</username><password>x</password></query></iq>") == "bad-request"


def test_account_removal_answers_then_closes_the_stream(users, server):
    alice = users("alice")
    answer = alice.iq("<iq type='set'><query xmlns='jabber:iq:register'><remove/></query></iq>")
    assert answer["type"] == "result", answer
    assert alice.wait_disconnected(5), "the stream stayed open after the removal"
    with pytest.raises(ClientError) as failure:
        Client(server, alice.jid.bare, "pw-secret", resource="again").connect()
    assert failure.value.condition == "not-authorized"


def test_account_removal_deletes_everything(users, server):
    alice, bob = users("alice", "bob")
    befriend(alice, bob)
    result_of(alice, VCARD_SET)
    block(alice, "mallory@example.org")
    alice.iq("<iq type='set'><query xmlns='jabber:iq:register'><remove/></query></iq>")
    alice.wait_disconnected(5)
    again = Client(server, alice.jid.bare, "other-pw", register=True, resource="new").connect()
    try:
        assert again.roster_get() == {}
        v = result_of(again, "<iq type='get'><vCard xmlns='vcard-temp'/></iq>")
        assert len(v) == 0, ET.tostring(v)
        assert blocklist(again) == []
    finally:
        again.disconnect()
