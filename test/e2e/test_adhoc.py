"""Admin over XMPP: ad-hoc commands (XEP-0050) with the XEP-0133 set, run
by a real client (slixmpp's xep_0050 and xep_0004 plugins) against the
running server, and the account lifecycle they drive (disabled accounts
refused with the SASL failure account-disabled, sessions ended, the
message of the day at login). The administrator is admin@localhost
(sm.admin); everyone else is refused and sees no command. Every test runs
on SQLite and on PostgreSQL."""
import datetime
import os
import subprocess

import pytest
from slixmpp.exceptions import IqError, IqTimeout

from hearth_env import BUILDDIR, wait_for
from xmpp_client import Client, ClientError, register

COMMANDS = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin#"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
XEP_0133_NODES = [
    "add-user", "delete-user", "disable-user", "reenable-user", "change-user-password",
    "end-user-session", "get-user-roster", "get-user-lastlogin", "get-registered-users-num",
    "get-online-users-num", "get-online-users-list", "get-online-users", "announce", "set-motd",
    "edit-motd", "delete-motd",
]
ALL_NODES = [ADMIN + n for n in XEP_0133_NODES] + ["urn:hearth:admin#stats",
                                                  "urn:xmpp:invite#create-account"]

pytestmark = pytest.mark.server(**{"sm.admin": "admin@localhost", "sm.adhoc-sessions": "3"})


def commander(server, jid, password="pw", resource=None, register_first=True):
    """A logged-in client able to run commands (slixmpp's xep_0050)."""
    c = Client(server, jid, password, resource=resource, register=register_first)
    c._call(lambda: (c.xmpp.register_plugin("xep_0004"), c.xmpp.register_plugin("xep_0050")))
    return c.connect()


@pytest.fixture
def admin(server):
    with commander(server, "admin@localhost") as c:
        yield c


@pytest.fixture
def mallory(server):
    with commander(server, "mallory@localhost") as c:
        yield c


def send_command(client, node, action="execute", sessionid=None, fields=None, to="localhost"):
    """One command request; the answer (result or error) as a slixmpp Iq.
    fields: {var: value} or {var: (type, value)} for a submitted form."""
    async def go():
        payload = None
        if fields is not None:
            payload = client.xmpp["xep_0004"].make_form(ftype="submit")
            for var, value in fields.items():
                ftype, value = value if isinstance(value, tuple) else (None, value)
                payload.add_field(var=var, ftype=ftype, value=value)
        try:
            return await client.xmpp["xep_0050"].send_command(
                to, node, action=action, payload=payload, sessionid=sessionid, timeout=10)
        except IqError as e:
            return e.iq
        except IqTimeout:
            raise ClientError("timeout", f"no answer to {node}")
    return client._await(go(), 12)


def run(client, name, fields=None, to="localhost"):
    """Execute an admin command; submit fields to the form it asks for.
    Returns the final answer, checked to be completed."""
    node = name if ":" in name else ADMIN + name
    answer = send_command(client, node, to=to)
    assert answer["type"] == "result", f"{name}: {answer}"
    if answer["command"]["status"] == "executing":
        assert fields is not None, f"{name} asked a form: {answer}"
        assert answer["command"]["form"]["type"] == "form", answer
        answer = send_command(client, node, action="complete",
                              sessionid=answer["command"]["sessionid"], fields=fields, to=to)
    assert answer["type"] == "result", f"{name}: {answer}"
    assert answer["command"]["status"] == "completed", answer
    return answer


def values(answer):
    return answer["command"]["form"].get_values()


def error_of(answer):
    """(RFC 6120 condition, XEP-0050 condition or None) of an error answer."""
    assert answer["type"] == "error", f"expected an error: {answer}"
    specific = [child.tag.split("}")[1] for child in answer.xml.find("{jabber:client}error")
                if child.tag.startswith("{" + COMMANDS + "}")]
    return answer["error"]["condition"], (specific[0] if specific else None)


def disco(client, kind, node=None, to="localhost"):
    ns = DISCO_INFO if kind == "info" else DISCO_ITEMS
    node_attr = f" node='{node}'" if node else ""
    return client.iq(f"<iq type='get' to='{to}'><query xmlns='{ns}'{node_attr}/></iq>")


def command_nodes(client):
    answer = disco(client, "items", COMMANDS)
    assert answer["type"] == "result", answer
    return [item[1] for item in answer["disco_items"]["items"]]


def login_fails_with(server, jid, password):
    try:
        Client(server, jid, password).connect().disconnect()
    except ClientError as e:
        return e.condition
    return None




# ---- the framework (XEP-0050) ---------------------------------------------------

def test_server_announces_the_commands_feature(admin):
    answer = disco(admin, "info")
    assert COMMANDS in answer["disco_info"]["features"], answer


def test_admin_sees_every_command(admin):
    assert sorted(command_nodes(admin)) == sorted(ALL_NODES)


def test_command_node_disco_info_is_a_command_node(admin):
    answer = disco(admin, "info", ADMIN + "add-user")
    assert answer["type"] == "result", answer
    assert ("automation", "command-node") in [(i[0], i[1]) for i in answer["disco_info"]["identities"]]
    assert COMMANDS in answer["disco_info"]["features"], answer


def test_the_command_list_node_is_a_command_list(mallory):
    answer = disco(mallory, "info", COMMANDS)
    assert answer["type"] == "result", answer
    assert ("automation", "command-list") in \
        [(i[0], i[1]) for i in answer["disco_info"]["identities"]]


def test_non_admin_sees_no_command(mallory):
    assert command_nodes(mallory) == []
    condition, _ = error_of(disco(mallory, "info", ADMIN + "add-user"))
    assert condition == "forbidden"


def test_every_command_is_forbidden_to_a_non_admin(mallory):
    for node in ALL_NODES:
        condition, _ = error_of(send_command(mallory, node))
        assert condition == "forbidden", node


def test_non_admin_cannot_run_a_command_addressed_elsewhere(server, mallory):
    register(server, "victim@localhost", "pw")
    form = {"accountjids": ("jid-multi", ["victim@localhost"])}
    for to in ("localhost/admin", "admin@localhost", "victim@localhost"):
        answer = send_command(mallory, ADMIN + "delete-user", to=to)
        assert answer["type"] == "error", (to, answer)
        answer = send_command(mallory, ADMIN + "delete-user", action="complete",
                              sessionid="0" * 32, fields=form, to=to)
        assert answer["type"] == "error", (to, answer)
    assert login_fails_with(server, "victim@localhost", "pw") is None


def test_non_admin_cannot_complete_an_admins_session(admin, mallory):
    started = send_command(admin, ADMIN + "delete-user")
    sessionid = started["command"]["sessionid"]
    answer = send_command(mallory, ADMIN + "delete-user", action="complete", sessionid=sessionid,
                          fields={"accountjids": ("jid-multi", ["admin@localhost"])})
    assert error_of(answer)[0] == "forbidden"


def test_an_unknown_node_is_item_not_found(admin):
    assert error_of(send_command(admin, ADMIN + "frobnicate"))[0] == "item-not-found"


def test_a_bad_sessionid_is_bad_sessionid(admin):
    answer = send_command(admin, ADMIN + "add-user", action="complete", sessionid="nope",
                          fields={"accountjid": "x@localhost"})
    assert error_of(answer) == ("bad-request", "bad-sessionid")


def test_another_users_sessionid_is_bad_sessionid(server, admin):
    started = send_command(admin, ADMIN + "add-user")
    with commander(server, "admin@localhost", resource="other", register_first=False) as other:
        answer = send_command(other, ADMIN + "add-user", action="complete",
                              sessionid=started["command"]["sessionid"],
                              fields={"accountjid": "x@localhost", "password": "pw"})
        assert error_of(answer) == ("bad-request", "bad-sessionid")


def test_a_sessionid_of_another_command_is_bad_sessionid(admin):
    started = send_command(admin, ADMIN + "add-user")
    answer = send_command(admin, ADMIN + "delete-user", action="complete",
                          sessionid=started["command"]["sessionid"],
                          fields={"accountjids": ("jid-multi", ["x@localhost"])})
    assert error_of(answer) == ("bad-request", "bad-sessionid")


def test_an_unknown_action_is_malformed_action(admin):
    answer = admin.iq(f"<iq type='set' to='localhost'><command xmlns='{COMMANDS}' "
                      f"node='{ADMIN}add-user' action='jump'/></iq>")
    assert error_of(answer) == ("bad-request", "malformed-action")


def test_next_on_a_single_stage_form_is_bad_action(admin):
    started = send_command(admin, ADMIN + "add-user")
    assert started["command"]["status"] == "executing"
    assert started.xml.find(f".//{{{COMMANDS}}}actions/{{{COMMANDS}}}complete") is not None
    answer = send_command(admin, ADMIN + "add-user", action="next",
                          sessionid=started["command"]["sessionid"])
    assert error_of(answer) == ("bad-request", "bad-action")


def test_complete_without_a_form_is_bad_payload(admin):
    started = send_command(admin, ADMIN + "add-user")
    answer = send_command(admin, ADMIN + "add-user", action="complete",
                          sessionid=started["command"]["sessionid"])
    assert error_of(answer) == ("bad-request", "bad-payload")


def test_cancel_ends_the_session(admin):
    started = send_command(admin, ADMIN + "add-user")
    sessionid = started["command"]["sessionid"]
    answer = send_command(admin, ADMIN + "add-user", action="cancel", sessionid=sessionid)
    assert answer["type"] == "result" and answer["command"]["status"] == "canceled", answer
    answer = send_command(admin, ADMIN + "add-user", action="complete", sessionid=sessionid,
                          fields={"accountjid": "x@localhost", "password": "pw"})
    assert error_of(answer) == ("bad-request", "bad-sessionid")


def test_open_sessions_are_bounded_per_user(admin):
    for _ in range(3):  # sm.adhoc-sessions
        assert send_command(admin, ADMIN + "add-user")["command"]["status"] == "executing"
    assert error_of(send_command(admin, ADMIN + "add-user"))[0] == "resource-constraint"


@pytest.mark.server(**{"sm.admin": "admin@localhost", "sm.adhoc-timeout": "300ms"})
def test_a_session_past_the_timeout_is_session_expired(admin):
    started = send_command(admin, ADMIN + "add-user")
    sessionid = started["command"]["sessionid"]
    # next keeps a live session (bad-action); once expired, it is gone
    answers = []

    def expired():
        answers.append(error_of(send_command(admin, ADMIN + "add-user", action="next",
                                             sessionid=sessionid)))
        return answers[-1] != ("bad-request", "bad-action")
    wait_for(expired, "the command session expired", 10)
    assert answers[-1] == ("not-allowed", "session-expired"), answers
    answer = send_command(admin, ADMIN + "add-user", action="complete", sessionid=sessionid,
                          fields={"accountjid": "x@localhost", "password": "pw"})
    assert error_of(answer) == ("bad-request", "bad-sessionid")


def test_bad_form_values_are_errors(server, admin):
    for fields, condition in [
        ({"accountjid": "not a jid@@", "password": "pw"}, "jid-malformed"),
        ({"accountjid": "x@elsewhere.example", "password": "pw"}, "jid-malformed"),
        ({"accountjid": "x@localhost/res", "password": "pw"}, "jid-malformed"),
        ({"accountjid": "x@localhost", "password": ""}, "not-acceptable"),
        ({"accountjid": "x@localhost", "password": "a", "password-verify": "b"}, "not-acceptable"),
        ({"accountjid": "x@localhost", "password": "p" * 2000}, "not-acceptable"),
    ]:
        started = send_command(admin, ADMIN + "add-user")
        answer = send_command(admin, ADMIN + "add-user", action="complete",
                              sessionid=started["command"]["sessionid"], fields=fields)
        assert error_of(answer)[0] == condition, fields
    assert login_fails_with(server, "x@localhost", "pw") == "not-authorized"


def test_malformed_command_requests_are_errors(admin):
    for iq, condition in [
        (f"<iq type='get' to='localhost'><command xmlns='{COMMANDS}' node='{ADMIN}add-user'/></iq>",
         "bad-request"),
        (f"<iq type='set' to='localhost'><command xmlns='{COMMANDS}'/></iq>", "item-not-found"),
        (f"<iq type='set' to='localhost'><command xmlns='{COMMANDS}' node=''/></iq>",
         "item-not-found"),
    ]:
        assert error_of(admin.iq(iq))[0] == condition, iq
    # the server still answers
    assert command_nodes(admin)


def test_too_many_jids_at_once_are_refused(server, admin):
    register(server, "keep@localhost", "pw")
    jids = [f"u{i}@localhost" for i in range(100)] + ["keep@localhost"]
    started = send_command(admin, ADMIN + "delete-user")
    answer = send_command(admin, ADMIN + "delete-user", action="complete",
                          sessionid=started["command"]["sessionid"],
                          fields={"accountjids": ("jid-multi", jids)})
    assert error_of(answer)[0] == "not-acceptable"
    assert login_fails_with(server, "keep@localhost", "pw") is None


# ---- the commands (XEP-0133) ------------------------------------------------------

def test_add_user_creates_an_account_that_logs_in(server, admin):
    answer = run(admin, "add-user", {"accountjid": "carol@localhost", "password": "s3cret",
                                     "password-verify": "s3cret"})
    assert "carol@localhost" in answer["command"]["notes"][0][1]
    assert login_fails_with(server, "carol@localhost", "s3cret") is None
    assert login_fails_with(server, "carol@localhost", "wrong") == "not-authorized"


def test_add_user_of_an_existing_account_is_conflict(server, admin):
    register(server, "carol@localhost", "pw")
    started = send_command(admin, ADMIN + "add-user")
    answer = send_command(admin, ADMIN + "add-user", action="complete",
                          sessionid=started["command"]["sessionid"],
                          fields={"accountjid": "carol@localhost", "password": "other"})
    assert error_of(answer)[0] == "conflict"
    assert login_fails_with(server, "carol@localhost", "pw") is None


def test_delete_user_removes_the_account_and_ends_its_session(server, admin):
    with Client(server, "dave@localhost", "pw", register=True).connect() as dave:
        run(admin, "delete-user", {"accountjids": ("jid-multi", ["dave@localhost"])})
        assert dave.wait_disconnected(5), "the session outlived its account"
    assert login_fails_with(server, "dave@localhost", "pw") == "not-authorized"
    assert server.env.sql("SELECT owner FROM auth WHERE owner = 'dave@localhost'") == []


def test_delete_user_reports_unknown_accounts(admin):
    answer = run(admin, "delete-user", {"accountjids": ("jid-multi", ["ghost@localhost"])})
    assert "ghost@localhost" in answer["command"]["notes"][0][1], answer


def test_disable_user_ends_the_session_and_refuses_login(server, admin):
    with Client(server, "erin@localhost", "pw", register=True).connect() as erin:
        erin.roster_get()
        erin.iq("<iq type='set'><query xmlns='jabber:iq:roster'>"
                "<item jid='friend@localhost' name='Friend'/></query></iq>")
        run(admin, "disable-user", {"accountjids": ("jid-multi", ["erin@localhost"])})
        assert erin.wait_disconnected(5), "the session of a disabled account went on"
    assert login_fails_with(server, "erin@localhost", "pw") == "account-disabled"
    # the wrong password learns nothing more than not-authorized
    assert login_fails_with(server, "erin@localhost", "wrong") == "not-authorized"
    # its data are kept
    assert server.env.sql("SELECT jid FROM roster_items WHERE owner = 'erin@localhost'") == \
        [["friend@localhost"]]
    run(admin, "reenable-user", {"accountjids": ("jid-multi", ["erin@localhost"])})
    with Client(server, "erin@localhost", "pw").connect() as erin:
        assert "friend@localhost" in erin.roster_get()


def test_change_user_password(server, admin):
    register(server, "frank@localhost", "old")
    run(admin, "change-user-password", {"accountjid": "frank@localhost", "password": "new"})
    assert login_fails_with(server, "frank@localhost", "old") == "not-authorized"
    assert login_fails_with(server, "frank@localhost", "new") is None


def test_change_password_of_an_unknown_user_is_item_not_found(admin):
    started = send_command(admin, ADMIN + "change-user-password")
    answer = send_command(admin, ADMIN + "change-user-password", action="complete",
                          sessionid=started["command"]["sessionid"],
                          fields={"accountjid": "ghost@localhost", "password": "pw"})
    assert error_of(answer)[0] == "item-not-found"


def test_end_user_session_of_a_full_jid_ends_only_that_one(server, admin):
    register(server, "gina@localhost", "pw")
    with Client(server, "gina@localhost", "pw", resource="phone").connect() as phone, \
            Client(server, "gina@localhost", "pw", resource="desk").connect() as desk:
        run(admin, "end-user-session", {"accountjids": ("jid-multi", ["gina@localhost/phone"])})
        assert phone.wait_disconnected(5)
        assert not desk.disconnected.is_set()
        run(admin, "end-user-session", {"accountjids": ("jid-multi", ["gina@localhost"])})
        assert desk.wait_disconnected(5)
    assert login_fails_with(server, "gina@localhost", "pw") is None


def test_get_user_roster_returns_the_items(server, admin):
    with Client(server, "hank@localhost", "pw", register=True).connect() as hank:
        for item in ("<item jid='a@localhost' name='A'><group>Friends</group><group>Work</group></item>",
                     "<item jid='b@example.org'/>"):
            answer = hank.iq(f"<iq type='set'><query xmlns='jabber:iq:roster'>{item}</query></iq>")
            assert answer["type"] == "result", answer
    answer = run(admin, "get-user-roster", {"accountjid": "hank@localhost"})
    query = answer.xml.find(".//{jabber:x:data}x/{jabber:iq:roster}query")
    assert query is not None, answer
    items = {i.get("jid"): (i.get("name"), sorted(g.text for g in i.findall("{jabber:iq:roster}group")))
             for i in query.findall("{jabber:iq:roster}item")}
    assert items == {"a@localhost": ("A", ["Friends", "Work"]), "b@example.org": (None, [])}


def test_get_user_roster_of_an_unknown_user_is_item_not_found(admin):
    started = send_command(admin, ADMIN + "get-user-roster")
    answer = send_command(admin, ADMIN + "get-user-roster", action="complete",
                          sessionid=started["command"]["sessionid"],
                          fields={"accountjid": "ghost@localhost"})
    assert error_of(answer)[0] == "item-not-found"


def test_get_user_lastlogin_has_the_login_time(server, admin):
    register(server, "ivy@localhost", "pw")
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    with Client(server, "ivy@localhost", "pw").connect():
        pass

    def stamp():
        """The login time the sm reports; None while it says never (login
        times are written within a second, several in one transaction)."""
        v = values(run(admin, "get-user-lastlogin", {"accountjid": "ivy@localhost"}))["lastlogin"]
        if v == "never":
            return None
        return datetime.datetime.strptime(v, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    wait_for(lambda: (stamp() or before - datetime.timedelta(days=1)) >= before,
             "the login time recorded")
    assert stamp() <= datetime.datetime.now(datetime.timezone.utc)


def test_get_user_lastlogin_of_an_account_never_logged_in_says_never(server, admin):
    run(admin, "add-user", {"accountjid": "jay@localhost", "password": "pw"})
    assert values(run(admin, "get-user-lastlogin", {"accountjid": "jay@localhost"}))["lastlogin"] \
        == "never"


def test_counts_are_exact(server, admin):
    register(server, "kim@localhost", "pw")
    register(server, "lee@localhost", "pw")
    register(server, "max@localhost", "pw")
    registered = values(run(admin, "get-registered-users-num"))["registeredusersnum"]
    assert registered == "4"  # admin, kim, lee, max
    with Client(server, "kim@localhost", "pw", resource="a").connect(), \
            Client(server, "kim@localhost", "pw", resource="b").connect(), \
            Client(server, "lee@localhost", "pw").connect():
        assert values(run(admin, "get-online-users-num"))["onlineusersnum"] == "3"
        listed = values(run(admin, "get-online-users-list", {"max_items": "none"}))
        assert sorted(listed["onlineuserjids"].split("\n")) == \
            ["admin@localhost", "kim@localhost", "lee@localhost"]
        listed = values(run(admin, "get-online-users-list", {"max_items": "25"}))
        assert len(listed["onlineuserjids"].split("\n")) == 3
        stats = values(run(admin, "urn:hearth:admin#stats"))
        assert (stats["onlinesessions"], stats["onlineusers"], stats["registeredusers"]) == \
            ("4", "3", "4"), stats
        assert int(stats["uptime"]) >= 0


def test_stats_count_routed_messages(server, admin):
    admin.send_presence()
    admin.wait_presence(lambda p: p["from"] == admin.bound_jid)
    before = int(values(run(admin, "urn:hearth:admin#stats"))["messages"])
    with Client(server, "nia@localhost", "pw", register=True).connect() as nia:
        for i in range(3):
            nia.send_message("admin@localhost", f"hello {i}")
        for i in range(3):
            admin.wait_message(lambda m: m["body"] == f"hello {i}")
    after = int(values(run(admin, "urn:hearth:admin#stats"))["messages"])
    assert after - before == 3, (before, after)


def test_announce_reaches_every_online_user(server, admin):
    with Client(server, "olga@localhost", "pw", register=True).connect() as olga, \
            Client(server, "pete@localhost", "pw", register=True).connect() as pete:
        answer = run(admin, "announce", {"announcement": ("text-multi", "Maintenance\nat noon")})
        assert "3" in answer["command"]["notes"][0][1], answer  # admin, olga, pete
        for c in (olga, pete):
            m = c.wait_message(lambda m: m["from"] == "localhost")
            assert m["body"] == "Maintenance\nat noon", m


def test_motd_arrives_once_at_the_next_login(server, admin):
    register(server, "quin@localhost", "pw")
    with Client(server, "quin@localhost", "pw").connect() as online:
        online.send_presence()
        online.wait_presence(lambda p: p["from"] == online.bound_jid)
        run(admin, "set-motd", {"motd": ("text-multi", "Welcome back")})
        online.send_presence(pshow="away")
        online.send_message("quin@localhost", "marker")
        online.wait_message(lambda m: m["body"] == "marker")
        assert not [m for m in online.received
                    if m.name == "message" and m["from"] == "localhost"], \
            "the motd went to a session already online"

    def motd_count(c):
        return len([s for s in c.received if s.name == "message" and s["from"] == "localhost"
                    and s["body"] == "Welcome back"])
    with Client(server, "quin@localhost", "pw").connect() as quin:
        quin.send_presence()
        quin.wait_message(lambda m: m["from"] == "localhost" and m["body"] == "Welcome back")
        quin.send_presence(pstatus="away for a bit", pshow="away")
        quin.send_message("quin@localhost", "marker")
        quin.wait_message(lambda m: m["body"] == "marker")
        assert motd_count(quin) == 1
    # edit-motd offers the current text; delete-motd stops it
    started = send_command(admin, ADMIN + "edit-motd")
    assert started["command"]["form"].get_fields()["motd"].get_value() == "Welcome back"
    send_command(admin, ADMIN + "edit-motd", action="cancel",
                 sessionid=started["command"]["sessionid"])
    run(admin, "delete-motd")
    with Client(server, "quin@localhost", "pw").connect() as quin:
        quin.send_presence()
        quin.send_message("quin@localhost", "marker")
        quin.wait_message(lambda m: m["body"] == "marker")
        assert motd_count(quin) == 0


def test_motd_survives_a_restart_of_the_sm(server, admin):
    run(admin, "set-motd", {"motd": ("text-multi", "Kept")})
    register(server, "rita@localhost", "pw")
    server.sm.stop()
    server.start_sm()

    def arrives():
        with Client(server, "rita@localhost", "pw").connect() as rita:
            rita.send_presence()
            try:
                rita.wait_message(lambda m: m["from"] == "localhost" and m["body"] == "Kept", 2)
                return True
            except ClientError:
                return False
    wait_for(arrives, "the motd after the restart", 20)


# ---- hearthctl disable / enable / kick --------------------------------------------

def hearthctl(server, *args):
    return subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c",
                           server.env.config_path, *args],
                          capture_output=True, text=True, timeout=30)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


def test_hearthctl_disable_ends_sessions_and_enable_lets_in(server):
    with Client(server, "sam@localhost", "pw", register=True).connect() as sam:
        assert "disabled sam@localhost" in ok(hearthctl(server, "disable", "sam"))
        assert sam.wait_disconnected(5), "the session of a disabled account went on"
    assert login_fails_with(server, "sam@localhost", "pw") == "account-disabled"
    assert "enabled sam@localhost" in ok(hearthctl(server, "enable", "sam@localhost"))
    assert login_fails_with(server, "sam@localhost", "pw") is None


def test_hearthctl_disable_without_a_running_sm_still_disables(server):
    register(server, "tom@localhost", "pw")
    server.sm.stop()
    proc = hearthctl(server, "disable", "tom")
    assert proc.returncode == 0, proc.stderr
    server.start_sm()
    assert login_fails_with(server, "tom@localhost", "pw") == "account-disabled"


def test_login_times_not_written_yet_are_written_when_the_sm_stops(server):
    """Login times wait up to a second to be written together; an sm that
    stops meanwhile writes them before it closes the store."""
    register(server, "una@localhost", "pw")  # registers, then logs in once
    server.sm.stop()
    assert server.env.sql("SELECT COUNT(*) FROM auth WHERE owner = 'una@localhost' "
                          "AND last_login IS NOT NULL") == [["1"]]


def test_hearthctl_kick_ends_one_or_every_session(server):
    register(server, "uma@localhost", "pw")
    with Client(server, "uma@localhost", "pw", resource="phone").connect() as phone, \
            Client(server, "uma@localhost", "pw", resource="desk").connect() as desk:
        assert "1 session" in ok(hearthctl(server, "kick", "uma@localhost/phone"))
        assert phone.wait_disconnected(5)
        assert not desk.disconnected.is_set()
        ok(hearthctl(server, "kick", "uma"))
        assert desk.wait_disconnected(5)


def test_hearthctl_account_commands_refuse_bad_input(server):
    for args, text in [(["disable", "ghost"], "no such user"),
                       (["enable", "ghost@localhost"], "no such user"),
                       (["disable", "x@elsewhere.example"], "not a domain"),
                       (["disable", "bad@@jid"], "not a valid JID"),
                       (["kick", "x@elsewhere.example/r"], "not a domain")]:
        proc = hearthctl(server, *args)
        assert proc.returncode == 1 and text in proc.stderr, (args, proc)
    for args in (["disable"], ["kick"], ["enable", "a", "b"]):
        proc = hearthctl(server, *args)
        assert proc.returncode == 2 and "usage:" in proc.stderr, (args, proc)


def test_hearthctl_kick_without_a_running_sm_fails(server):
    server.sm.stop()
    proc = hearthctl(server, "kick", "nobody@localhost")
    assert proc.returncode == 1 and "sm" in proc.stderr, proc
