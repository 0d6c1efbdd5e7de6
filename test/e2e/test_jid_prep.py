"""JID preparation seen from a client: a roster item the server accepts can
be removed by the JID the server shows for it (common/jid.c: preparation
is idempotent).

Nameprep runs before IDNA looks for the "xn--" prefix, so a domain label
such as "xn--abc" + U+017F (long s) used to be prepared to "xn--abcs", an
A-label that does not decode: the sm stored the item under that JID, showed
it, and then refused it in the roster remove, so the item stayed for good.
A JID like that must be refused at the roster set (RFC 6120 §8.3.3.8
jid-malformed; the sm's roster answers bad-request for every JID it cannot
prepare, so either condition is a refusal), or else be removable by the
JID the roster shows. Real router, sm and c2s, real slixmpp client; each
test runs on SQLite and on PostgreSQL."""
import pytest

from test_sm_core import condition
from xmpp_client import Client

NS_ROSTER = "jabber:iq:roster"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
REFUSALS = ("jid-malformed",)


def quote(text):
    return text.replace("&", "&amp;").replace("'", "&apos;").replace("<", "&lt;")


def roster_set(client, jid, remove=False):
    sub = " subscription='remove'" if remove else ""
    return client.iq(f"<iq type='set'><query xmlns='{NS_ROSTER}'>"
                     f"<item jid='{quote(jid)}'{sub}/></query></iq>")


def roster_jids(client):
    """The item JIDs of a roster get, as the server wrote them (read from
    the XML: slixmpp's JID class would prepare them on its own)."""
    answer = client.iq(f"<iq type='get'><query xmlns='{NS_ROSTER}'/></iq>")
    assert answer["type"] == "result", f"roster get failed: {condition(answer)}"
    query = answer.xml.find(f"{{{NS_ROSTER}}}query")
    return [item.get("jid") for item in query.findall(f"{{{NS_ROSTER}}}item")]


@pytest.fixture
def alice(server):
    c = Client(server, f"alice@{server.domain}", "pw-secret", register=True)
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False
    c.connect()
    yield c
    c.disconnect()


def assert_refused_or_removable(client, jid):
    answer = roster_set(client, jid)
    if answer["type"] == "error":
        assert condition(answer) in REFUSALS, f"roster set of {jid!r}: {condition(answer)}"
        assert roster_jids(client) == [], "a refused item is not in the roster"
        return
    assert answer["type"] == "result"
    shown = roster_jids(client)
    assert len(shown) == 1, f"roster after adding {jid!r}: {shown}"
    removed = roster_set(client, shown[0], remove=True)
    assert removed["type"] == "result", (
        f"{jid!r} was accepted and shown as {shown[0]!r}, "
        f"but removing {shown[0]!r} fails with {condition(removed)}")
    assert roster_jids(client) == [], f"roster after removing {shown[0]!r}"


@pytest.mark.parametrize("jid", [
    "x@xn--abc\u017f.test",       # long s folds to 's': "xn--abcs" does not decode
    "x@XN--ABC\u017f.test",
    "x@xn--\u00df.test",          # sharp s folds to "ss"
    "x@x\u00adn--abc.test",       # soft hyphen inside the prefix maps to nothing
    "x@xn--bcher-kva\u00ad.test",  # maps to a real A-label ("bücher")
], ids=["long-s", "long-s-upper", "sharp-s", "soft-hyphen-in-prefix", "maps-to-a-label"])
def test_roster_item_is_refused_or_removable_by_its_shown_jid(alice, jid):
    assert_refused_or_removable(alice, jid)


def test_roster_item_with_an_idn_domain_is_shown_prepared_and_removable(alice):
    """The control: an IDN the server accepts (so a refusal above is not a
    broken roster set) is shown in its Unicode form and removed by it."""
    answer = roster_set(alice, "X@XN--BCHER-KVA.test")
    assert answer["type"] == "result", condition(answer)
    assert roster_jids(alice) == ["x@b\u00fccher.test"]
    assert_refused_or_removable(alice, "x@b\u00fccher.test")
