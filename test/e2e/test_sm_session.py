"""hearth-sm's side of the session protocol (DESIGN.md), end to end: the
real router and sm, and hearth-testcomp playing c2s instances (the session
protocol is between daemons: no client library speaks it). Accounts are
rows put in the store directly."""
import re
import xml.etree.ElementTree as ET

import pytest

from hearth_env import BUILDDIR, Server, wait_for
from testcomp import Component

NS_SESSION = "urn:hearth:session:1"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture
def sm_server(hearth_env, storage_driver):
    """Router and hearth-sm for localhost, no c2s; on each store."""
    server = Server(hearth_env)
    server.router.start()
    server.start_sm()
    return server


def add_account(env, bare):
    env.sql(f"INSERT INTO auth (owner, created) VALUES ('{bare}', 0)")


class FakeC2s:
    """A testcomp bound as c2s-N, speaking the session protocol."""

    def __init__(self, server, ident):
        env = server.env
        self.ident = ident
        user, password = server.router.account("c2s")
        self.comp = Component(BUILDDIR, server.router.listen, password, ident, ident, user=user,
                              logdir=env.logdir)
        self.comp.expect("ready")
        self.sids = {}  # cid -> sid

    def close(self):
        self.comp.close()

    def route(self, cid, user, payload, sid=None):
        sid = sid or self.sids.get(cid, "")
        self.comp.cmd(f"raw <route to='localhost' from='{self.ident}' user='{user}' "
                      f"cid='{cid}' sid='{sid}'>{payload}</route>")

    def start(self, full, cid):
        """Ask for a session; the <session/> answer as an element."""
        bare = full.split("/")[0]
        self.comp.cmd(f"raw <route to='localhost' from='{self.ident}' user='{bare}'>"
                      f"<session xmlns='{NS_SESSION}' action='start' jid='{full}' cid='{cid}'/>"
                      f"</route>")
        answer = self.expect_session(cid, lambda s: s.get("action") in ("started", "failed"))
        if answer.get("action") == "started":
            self.sids[cid] = answer.get("sid")
        return answer

    def end(self, cid, bare):
        self.comp.cmd(f"raw <route to='localhost' from='{self.ident}' user='{bare}' cid='{cid}' "
                      f"sid='{self.sids[cid]}'><session xmlns='{NS_SESSION}' action='end' "
                      f"sid='{self.sids[cid]}' cid='{cid}'/></route>")

    def expect_route(self, pred, timeout=5):
        """The next route (parsed) for which pred(route) holds."""
        def test(line):
            return line.startswith("<route") and pred(ET.fromstring(line))
        return ET.fromstring(self.comp.expect(test, timeout))

    def expect_session(self, cid, pred=lambda s: True, timeout=5):
        route = self.expect_route(
            lambda r: r.get("cid") == cid and r.find(f"{{{NS_SESSION}}}session") is not None
            and pred(r.find(f"{{{NS_SESSION}}}session")), timeout)
        return route.find(f"{{{NS_SESSION}}}session")

    def expect_stanza(self, cid, name, pred=lambda s: True, timeout=5):
        """The next stanza routed to connection cid."""
        def match(r):
            kids = list(r)
            return (r.get("cid") == cid and kids and kids[0].tag.endswith("}" + name)
                    and pred(kids[0]))
        return list(self.expect_route(match, timeout))[0]


@pytest.fixture
def c2s(sm_server):
    made = []

    def make(ident="c2s-1"):
        c = FakeC2s(sm_server, ident)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def error_condition(elem):
    error = elem.find("{*}error")
    assert error is not None, f"no <error/> in {ET.tostring(elem).decode()}"
    return [k.tag.split("}")[1] for k in error if k.tag.startswith(f"{{{NS_STANZAS}}}")][0]


def test_session_starts_with_a_random_sid_for_an_existing_account(sm_server, c2s):
    add_account(sm_server.env, "alice@localhost")
    c = c2s()
    answer = c.start("alice@localhost/phone", "c2s-1:1")
    assert answer.get("action") == "started", ET.tostring(answer)
    assert re.fullmatch(r"[0-9a-f]{32}", answer.get("sid")), answer.get("sid")
    assert answer.get("jid") == "alice@localhost/phone"


def test_session_for_a_missing_account_fails_with_an_error(sm_server, c2s):
    c = c2s()
    answer = c.start("nobody@localhost/phone", "c2s-1:1")
    assert answer.get("action") == "failed"
    assert error_condition(answer) == "not-authorized"


def test_session_for_another_domain_fails(sm_server, c2s):
    c = c2s()
    answer = c.start("alice@elsewhere.example/phone", "c2s-1:1")
    assert answer.get("action") == "failed"
    assert error_condition(answer) == "not-allowed"


def test_newer_session_of_a_full_jid_ends_the_older_with_conflict(sm_server, c2s):
    add_account(sm_server.env, "alice@localhost")
    one, two = c2s("c2s-1"), c2s("c2s-2")
    first = one.start("alice@localhost/phone", "c2s-1:1")
    second = two.start("alice@localhost/phone", "c2s-2:7")
    assert second.get("action") == "started"
    ended = one.expect_session("c2s-1:1", lambda s: s.get("action") == "ended")
    assert ended.get("reason") == "conflict"
    assert ended.get("sid") == first.get("sid")


def test_stanza_with_a_wrong_sid_is_dropped_and_the_connection_told_to_end(sm_server, c2s):
    add_account(sm_server.env, "alice@localhost")
    c = c2s()
    c.start("alice@localhost/phone", "c2s-1:1")
    c.route("c2s-1:1", "alice@localhost",
            "<iq xmlns='jabber:client' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
            sid="0" * 32)
    ended = c.expect_session("c2s-1:1", lambda s: s.get("action") == "ended")
    assert ended.get("sid") == "0" * 32
    c.comp.expect_none(lambda line: "id='p1'" in line or 'id="p1"' in line, within=1.0)


def test_a_session_nobody_resumes_after_an_sm_restart_is_ended(sm_server, c2s):
    add_account(sm_server.env, "alice@localhost")
    c = c2s()
    c.start("alice@localhost/phone", "c2s-1:1")
    sm_server.sm.stop()
    sm_server.start_sm()
    c.route("c2s-1:1", "alice@localhost", "<presence xmlns='jabber:client'/>")
    ended = c.expect_session("c2s-1:1", lambda s: s.get("action") == "ended", timeout=10)
    assert ended.get("reason") == "reset"


PING = "<iq xmlns='jabber:client' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"


def resume(c, full, cid, sid=None, presence=""):
    bare = full.split("/")[0]
    sid = sid or c.sids[cid]
    c.comp.cmd(f"raw <route to='localhost' from='{c.ident}' user='{bare}' cid='{cid}' sid='{sid}'>"
               f"<session xmlns='{NS_SESSION}' action='resume' jid='{full}' cid='{cid}' sid='{sid}'>"
               f"{presence}</session></route>")


def test_a_resumed_session_is_rebuilt_by_a_new_sm_with_its_sid(sm_server, c2s):
    add_account(sm_server.env, "alice@localhost")
    c = c2s()
    c.start("alice@localhost/phone", "c2s-1:1")
    sm_server.sm.stop()
    sm_server.start_sm()
    resume(c, "alice@localhost/phone", "c2s-1:1", presence="<presence xmlns='jabber:client'/>")
    c.route("c2s-1:1", "alice@localhost", PING.format(id="after"))
    answer = c.expect_stanza("c2s-1:1", "iq", lambda s: s.get("id") == "after", timeout=10)
    assert answer.get("type") == "result"


def test_a_resume_for_a_resource_a_newer_session_took_is_ended_conflict(sm_server, c2s):
    add_account(sm_server.env, "alice@localhost")
    one, two = c2s("c2s-1"), c2s("c2s-2")
    one.start("alice@localhost/phone", "c2s-1:1")
    sm_server.sm.stop()
    sm_server.start_sm()
    two.start("alice@localhost/phone", "c2s-2:1")
    resume(one, "alice@localhost/phone", "c2s-1:1")
    ended = one.expect_session("c2s-1:1", lambda s: s.get("action") == "ended")
    assert ended.get("reason") == "conflict"
    two.route("c2s-2:1", "alice@localhost", PING.format(id="newer"))
    assert two.expect_stanza("c2s-2:1", "iq", lambda s: s.get("id") == "newer").get("type") == "result"


def test_a_resume_for_a_deleted_account_is_ended_not_authorized(sm_server, c2s):
    add_account(sm_server.env, "alice@localhost")
    c = c2s()
    c.start("alice@localhost/phone", "c2s-1:1")
    sm_server.sm.stop()
    sm_server.env.sql("DELETE FROM auth WHERE owner = 'alice@localhost'")
    sm_server.start_sm()
    resume(c, "alice@localhost/phone", "c2s-1:1")
    ended = c.expect_session("c2s-1:1", lambda s: s.get("action") == "ended", timeout=10)
    assert ended.get("reason") == "not-authorized"


def test_after_a_router_restart_the_sm_asks_each_c2s_about_its_sessions(sm_server, c2s):
    """The ghost-session fix: the sm kept its sessions through the router's
    restart and asks the c2s which it still holds; the one it ends is
    gone, the other one stays."""
    add_account(sm_server.env, "alice@localhost")
    add_account(sm_server.env, "bob@localhost")
    c = c2s()
    c.start("alice@localhost/phone", "c2s-1:1")
    c.start("bob@localhost/desk", "c2s-1:2")
    sm_server.router.restart()
    c.comp.expect("ready", timeout=15)
    check = c.expect_route(lambda r: r.find(f"{{{NS_SESSION}}}session") is not None
                           and r.find(f"{{{NS_SESSION}}}session").get("action") == "check",
                           timeout=15)
    held = {h.get("cid"): h.get("sid") for h in check.iter(f"{{{NS_SESSION}}}held")}
    assert held == {"c2s-1:1": c.sids["c2s-1:1"], "c2s-1:2": c.sids["c2s-1:2"]}
    c.end("c2s-1:2", "bob@localhost")
    c.comp.cmd(f"raw <route to='localhost' from='c2s-1' user='alice@localhost'>"
               f"<session xmlns='{NS_SESSION}' action='checked'/></route>")
    c.route("c2s-1:1", "alice@localhost", PING.format(id="kept"))
    assert c.expect_stanza("c2s-1:1", "iq", lambda s: s.get("id") == "kept").get("type") == "result"
    c.route("c2s-1:2", "bob@localhost", PING.format(id="gone"))
    ended = c.expect_session("c2s-1:2", lambda s: s.get("action") == "ended")
    assert ended.get("sid") == c.sids["c2s-1:2"]


def test_a_c2s_that_does_not_come_back_after_a_router_restart_loses_its_sessions(hearth_env):
    server = Server(hearth_env, c2s=0, **{"sm.c2s-grace": "1s"})
    server.router.start()
    server.start_sm()
    add_account(hearth_env, "alice@localhost")
    c = FakeC2s(server, "c2s-1")
    c.start("alice@localhost/phone", "c2s-1:1")
    server.router.stop()
    c.close()  # it went away while the router was down: nobody told the sm
    server.router.start()

    def ended():
        with open(server.sm.log, errors="replace") as f:
            return "ended: c2s did not come back" in f.read()
    wait_for(ended, "the session ended after sm.c2s-grace")


def test_client_stanza_from_is_stamped_with_the_session_jid(sm_server, c2s):
    add_account(sm_server.env, "alice@localhost")
    add_account(sm_server.env, "bob@localhost")
    c = c2s()
    c.start("alice@localhost/phone", "c2s-1:1")
    c.start("bob@localhost/desk", "c2s-1:2")
    c.route("c2s-1:2", "bob@localhost", "<presence xmlns='jabber:client'/>")
    c.route("c2s-1:1", "alice@localhost",
            "<message xmlns='jabber:client' to='bob@localhost/desk' from='mallory@localhost/x' "
            "type='chat'><body>hi</body></message>")
    m = c.expect_stanza("c2s-1:2", "message")
    assert m.get("from") == "alice@localhost/phone"
    assert m.find("{jabber:client}body").text == "hi"


def test_c2s_going_away_ends_its_sessions(sm_server, c2s):
    add_account(sm_server.env, "alice@localhost")
    add_account(sm_server.env, "bob@localhost")
    one, two = c2s("c2s-1"), c2s("c2s-2")
    one.start("alice@localhost/phone", "c2s-1:1")
    two.start("bob@localhost/desk", "c2s-2:1")
    # each sees the other? no roster: directed presence instead
    one.route("c2s-1:1", "alice@localhost", "<presence xmlns='jabber:client'/>")
    one.route("c2s-1:1", "alice@localhost",
              "<presence xmlns='jabber:client' to='bob@localhost/desk'/>")
    two.expect_stanza("c2s-2:1", "presence", lambda p: p.get("from") == "alice@localhost/phone")
    one.close()
    p = two.expect_stanza("c2s-2:1", "presence", lambda p: p.get("type") == "unavailable")
    assert p.get("from") == "alice@localhost/phone"


def test_session_end_withdraws_directed_presence(sm_server, c2s):
    add_account(sm_server.env, "alice@localhost")
    add_account(sm_server.env, "bob@localhost")
    c = c2s()
    c.start("alice@localhost/phone", "c2s-1:1")
    c.start("bob@localhost/desk", "c2s-1:2")
    c.route("c2s-1:1", "alice@localhost",
            "<presence xmlns='jabber:client' to='bob@localhost/desk'/>")
    c.expect_stanza("c2s-1:2", "presence", lambda p: p.get("type") is None)
    c.end("c2s-1:1", "alice@localhost")
    p = c.expect_stanza("c2s-1:2", "presence", lambda p: p.get("type") == "unavailable")
    assert p.get("from") == "alice@localhost/phone"
