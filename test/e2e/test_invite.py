"""Invitations and password resets (XEP-0401 tokens, XEP-0445
pre-authenticated in-band registration): hearthctl invite and reset print
a one-time token and its XMPP URI; a real client (slixmpp's xep_0077) sends
<preauth/> with it before registering, with in-band registration off. Runs
on SQLite and on PostgreSQL."""
import hashlib
import os
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError, IqTimeout

from hearth_env import BUILDDIR
from test_adhoc import command_nodes, commander, error_of, run, send_command, values
from xmpp_client import Client, ClientError, register

pytestmark = pytest.mark.server(**{"c2s.registration": "false"})


def hearthctl(server, *args):
    return subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c",
                           server.env.config_path, *args],
                          capture_output=True, text=True, timeout=30)


def make_token(server, *args):
    """(token, uri) that hearthctl invite/reset prints."""
    proc = hearthctl(server, *args)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    token, uri = proc.stdout.splitlines()
    assert re.fullmatch(r"[0-9a-f]{32}", token), proc.stdout
    return token, uri


class Invited(Client):
    """A client that sends <preauth token/> (XEP-0445) before it asks for
    the registration form, then registers jid with password and logs in."""

    def __init__(self, server, jid, password, token, **kw):
        super().__init__(server, jid, password, register=True, **kw)
        self.token = token
        self.preauth_error = None
        plugin = self.xmpp["xep_0077"]
        get_form = plugin.get_registration

        async def get_registration(*args, **kwargs):
            iq = self.xmpp.Iq()
            iq["type"] = "set"
            iq["to"] = self.jid.domain
            token = "" if self.token is None else f" token='{self.token}'"
            iq.append(ET.fromstring(f"<preauth xmlns='urn:xmpp:pars:0'{token}/>"))
            try:
                await iq.send(timeout=self.timeout)
            except IqError as e:
                self.preauth_error = e.iq["error"]["condition"]
                self._fail(self.preauth_error, e.iq["error"]["text"])
                return None
            except IqTimeout:
                self._fail("timeout", "no answer to preauth")
                return None
            return await get_form(*args, **kwargs)
        plugin.get_registration = get_registration


def joins(server, jid, password, token, port=None):
    """None when jid registered with token and logged in, else the error."""
    try:
        Invited(server, jid, password, token, port=port).connect().disconnect()
    except ClientError as e:
        return e.condition
    return None


def logs_in(server, jid, password):
    try:
        Client(server, jid, password).connect().disconnect()
        return True
    except ClientError as e:
        assert e.condition == "not-authorized", e
        return False


def test_an_invitation_registers_one_account_with_registration_off(server):
    token, uri = make_token(server, "invite")
    assert uri == f"xmpp:localhost?register;preauth={token}"
    assert joins(server, "newbie@localhost", "pw", token) is None
    assert logs_in(server, "newbie@localhost", "pw")
    # single use
    assert joins(server, "second@localhost", "pw", token) == "item-not-found"
    assert not logs_in(server, "second@localhost", "pw")


def test_without_a_token_registration_stays_off(server):
    with pytest.raises(ClientError) as e:
        Client(server, "nobody@localhost", "pw", register=True).connect()
    assert e.value.condition == "service-unavailable"


def test_the_stream_features_offer_token_registration(server):
    c = Client(server, "x@localhost", "pw")
    seen = []
    c._call(lambda: c.xmpp.add_filter(
        "in", lambda s: seen.append(s.xml.find("{urn:xmpp:ibr-token:0}register") is not None) or s))
    try:
        c.connect()
    except ClientError:
        pass
    finally:
        c.disconnect()
    assert any(seen), "no <register xmlns='urn:xmpp:ibr-token:0'/> feature"


def test_an_unknown_or_expired_token_is_item_not_found(server):
    assert joins(server, "x@localhost", "pw", "0" * 32) == "item-not-found"
    token, _ = make_token(server, "invite")
    server.env.sql("UPDATE tokens SET expires = 1")
    assert joins(server, "x@localhost", "pw", token) == "item-not-found"


def test_a_preauth_without_a_token_or_with_a_huge_one_is_bad_request(server):
    assert joins(server, "x@localhost", "pw", None) == "bad-request"
    assert joins(server, "x@localhost", "pw", "a" * 5000) == "bad-request"
    token, _ = make_token(server, "invite")
    assert joins(server, "x@localhost", "pw", token) is None


def test_only_a_hash_of_the_token_is_stored(server):
    token, _ = make_token(server, "invite", "yan@localhost")
    rows = server.env.sql("SELECT hash, kind, domain, owner FROM tokens")
    assert rows == [[hashlib.sha256(token.encode()).hexdigest(), "invite", "localhost",
                     "yan@localhost"]]


def test_expired_tokens_are_deleted_when_a_new_one_is_made(server):
    make_token(server, "invite")
    server.env.sql("UPDATE tokens SET expires = 1")
    token, _ = make_token(server, "invite")
    assert server.env.sql("SELECT hash FROM tokens") == \
        [[hashlib.sha256(token.encode()).hexdigest()]]


def test_an_invitation_for_a_name_registers_only_that_name(server):
    token, uri = make_token(server, "invite", "zoe")
    assert uri == f"xmpp:zoe@localhost?register;preauth={token}"
    assert joins(server, "mallory@localhost", "pw", token) == "not-allowed"
    assert joins(server, "zoe@localhost", "pw", token) is None
    assert logs_in(server, "zoe@localhost", "pw")


@pytest.mark.server(**{"c2s.registration": "true"})
def test_an_invited_name_is_reserved_from_open_registration(server):
    make_token(server, "invite", "zoe@localhost")
    with pytest.raises(ClientError) as e:
        Client(server, "zoe@localhost", "pw", register=True).connect()
    assert e.value.condition == "conflict"
    register(server, "other@localhost", "pw")  # other names are open


def test_a_taken_name_gives_the_token_back(server):
    hearthctl(server, "adduser", "taken", "pw")
    token, _ = make_token(server, "invite")
    assert joins(server, "taken@localhost", "other", token) == "conflict"
    assert joins(server, "fresh@localhost", "pw", token) is None


@pytest.mark.server(c2s=2, **{"c2s.registration": "false"})
def test_a_token_is_used_once_across_every_c2s(server):
    token, _ = make_token(server, "invite")
    assert joins(server, "one@localhost", "pw", token, port=server.c2s_ports[0]) is None
    assert joins(server, "two@localhost", "pw", token, port=server.c2s_ports[1]) == \
        "item-not-found"


def test_reset_sets_a_new_password_without_the_old_one(server):
    hearthctl(server, "adduser", "amy", "forgotten")
    token, uri = make_token(server, "reset", "amy@localhost")
    assert uri == f"xmpp:amy@localhost?register;preauth={token}"
    assert joins(server, "bob@localhost", "pw", token) == "not-allowed"
    assert joins(server, "amy@localhost", "new", token) is None
    assert logs_in(server, "amy@localhost", "new")
    assert not logs_in(server, "amy@localhost", "forgotten")
    assert joins(server, "amy@localhost", "again", token) == "item-not-found"


def test_hearthctl_invite_and_reset_refuse_bad_input(server):
    hearthctl(server, "adduser", "amy", "pw")
    for args, text in [(["reset", "ghost"], "no such user"),
                       (["invite", "amy"], "already exists"),
                       (["invite", "x@elsewhere.example"], "not a domain"),
                       (["reset", "a@@b"], "not a valid JID")]:
        proc = hearthctl(server, *args)
        assert proc.returncode == 1 and text in proc.stderr, (args, proc)
    for args in (["reset"], ["invite", "a", "b"]):
        proc = hearthctl(server, *args)
        assert proc.returncode == 2 and "usage:" in proc.stderr, (args, proc)
    assert server.env.sql("SELECT count(*) FROM tokens") == [["0"]]


# ---- invitations from a client (ad-hoc commands, XEP-0401) -----------------------

def inviter(server, jid, password="pw"):
    """A logged-in client able to run commands; its account made first."""
    proc = hearthctl(server, "adduser", jid, password)
    assert proc.returncode == 0, proc.stderr
    return commander(server, jid, password, register_first=False)


def invitation(answer):
    """(uri, expire) of an invitation command's result."""
    form = values(answer)
    assert form.get("FORM_TYPE") in ("urn:xmpp:invite#invitation", ["urn:xmpp:invite#invitation"]), form
    return form["uri"], form["expire"]


@pytest.mark.server(**{"c2s.registration": "false", "sm.user-invites": "2"})
def test_a_users_invitation_lets_one_person_register(server):
    with inviter(server, "romeo@localhost") as romeo:
        assert "urn:xmpp:invite#invite" in command_nodes(romeo)
        uri, expire = invitation(run(romeo, "urn:xmpp:invite#invite"))
        m = re.fullmatch(r"xmpp:romeo@localhost\?roster;preauth=([0-9a-f]{32});ibr=y", uri)
        assert m, uri
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expire), expire
        romeo.roster_get()  # romeo's session gets roster pushes
        romeo.send_presence()
        assert joins(server, "juliet@localhost", "pw", m[1]) is None
        # XEP-0401: the two are subscribed to each other, romeo told at once
        push = romeo.wait_iq(lambda s: s["type"] == "set" and s.xml.find(
            "{jabber:iq:roster}query/{jabber:iq:roster}item[@jid='juliet@localhost']") is not None,
            timeout=10)
        item = push.xml.find("{jabber:iq:roster}query/{jabber:iq:roster}item")
        assert item.get("subscription") == "both", push
        juliet = Client(server, "juliet@localhost", "pw").connect()
        try:
            assert juliet.roster_get().get("romeo@localhost", {}).get("subscription") == "both"
            juliet.send_presence()
            romeo.wait_presence(lambda p: p["from"].bare == "juliet@localhost" and
                                p["type"] == "available", timeout=10)
            juliet.wait_presence(lambda p: p["from"].bare == "romeo@localhost", timeout=10)
        finally:
            juliet.disconnect()
        assert joins(server, "tybalt@localhost", "pw", m[1]) == "item-not-found"
        # two unexpired invitations at most: the used one is gone, so two more
        run(romeo, "urn:xmpp:invite#invite")
        run(romeo, "urn:xmpp:invite#invite")
        condition, _ = error_of(send_command(romeo, "urn:xmpp:invite#invite"))
        assert condition == "resource-constraint"


def test_users_do_not_invite_unless_user_invites_is_set(server):
    with inviter(server, "romeo@localhost") as romeo:
        assert command_nodes(romeo) == []
        condition, _ = error_of(send_command(romeo, "urn:xmpp:invite#invite"))
        assert condition == "item-not-found"
        condition, _ = error_of(send_command(romeo, "urn:xmpp:invite#create-account"))
        assert condition == "forbidden"


@pytest.mark.server(**{"c2s.registration": "false", "sm.admin": "admin@localhost"})
def test_an_administrators_account_invitation_names_the_account(server):
    with inviter(server, "admin@localhost") as admin:
        uri, _ = invitation(run(admin, "urn:xmpp:invite#create-account", {"username": "Mercutio"}))
        m = re.fullmatch(r"xmpp:mercutio@localhost\?register;preauth=([0-9a-f]{32})", uri)
        assert m, uri
        assert joins(server, "benvolio@localhost", "pw", m[1]) == "not-allowed"
        assert joins(server, "mercutio@localhost", "pw", m[1]) is None
        # an account that exists
        answer = send_command(admin, "urn:xmpp:invite#create-account")
        answer = send_command(admin, "urn:xmpp:invite#create-account", action="complete",
                              sessionid=answer["command"]["sessionid"],
                              fields={"username": "mercutio"})
        assert error_of(answer)[0] == "conflict"
