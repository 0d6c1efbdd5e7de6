"""Migration: hearthctl export and import (XEP-0227, tools/ctl_pie.c), from
one Hearth to another and from a real Prosody (Debian's package: its data
written out by prosody-migrator with mod_storage_xep0227), checked by real
clients (slixmpp) logging in with the old passwords; and the accounts that
arrive with SCRAM-SHA-1 keys only (c2s/auth.c): a client that prefers
SCRAM-SHA-256 falls back, and a PLAIN login adds the SHA-256 keys."""
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from hearth_env import BUILDDIR, Env, Server, self_signed, tail, wait_for
from prosody_env import PROSODY, ProsodyBase
from xmpp_client import befriend, Client, ClientError

MIGRATOR = shutil.which("prosody-migrator") or "/usr/bin/prosody-migrator"
PIE = "urn:xmpp:pie:0"
ROSTER = "jabber:iq:roster"
DELAY = "urn:xmpp:delay"


def hearthctl(config, *args, input=None):
    return subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c", config, *args],
                          input=input, capture_output=True, text=True, timeout=60)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stdout}{proc.stderr}"
    return proc.stdout


class FallbackClient(Client):
    """A client that goes on to its next SASL mechanism after a failure, as
    slixmpp does by itself (the tests' Client stops at the first one);
    .failures lists the conditions it met on the way."""

    def __init__(self, *args, **kw):
        self.failures = []
        super().__init__(*args, **kw)

    def _on_failed_auth(self, failure):
        self.failures.append(failure["condition"] or "not-authorized")


def login(server, user, password, mechanism=None, fallback=False):
    cls = FallbackClient if fallback else Client
    c = cls(server, f"{user}@{server.domain}", password, mechanism=mechanism)
    c.connect()
    return c


def result(client, stanza):
    answer = client.iq(stanza)
    assert answer["type"] == "result", f"expected a result to {stanza}, got {answer}"
    children = list(answer.xml)
    return children[0] if children else None






VCARD_SET = ("<iq type='set'><vCard xmlns='vcard-temp'><FN>Alice Liddell</FN>"
             "<NICKNAME>al &amp; co</NICKNAME></vCard></iq>")
VCARD_GET = "<iq type='get'><vCard xmlns='vcard-temp'/></iq>"
PRIVATE_SET = ("<iq type='set'><query xmlns='jabber:iq:private'><prefs xmlns='test:prefs'>"
               "<color>blue</color></prefs></query></iq>")
PRIVATE_GET = "<iq type='get'><query xmlns='jabber:iq:private'><prefs xmlns='test:prefs'/></query></iq>"
CAROL_ITEM = ("<iq type='set'><query xmlns='jabber:iq:roster'><item jid='carol@{domain}' "
              "name='Carol'><group>Friends</group><group>Work</group></item></query></iq>")


def check_alice(alice, domain):
    """What populate() and the Prosody test gave alice, as a client sees it."""
    roster = alice.roster_get()
    assert roster.get(f"bob@{domain}", {}).get("subscription") == "both", roster
    carol = roster.get(f"carol@{domain}")
    assert carol and carol["name"] == "Carol" and sorted(carol["groups"]) == ["Friends", "Work"], roster
    v = result(alice, VCARD_GET)
    assert v.findtext("{vcard-temp}FN") == "Alice Liddell", ET.tostring(v)
    assert v.findtext("{vcard-temp}NICKNAME") == "al & co", ET.tostring(v)
    q = result(alice, PRIVATE_GET)
    assert q.findtext("{test:prefs}prefs/{test:prefs}color") == "blue", ET.tostring(q)


def canonical(path):
    """{(host, user): sorted serialized children}: an export, order aside."""
    users = {}
    root = ET.parse(path).getroot()
    assert root.tag == f"{{{PIE}}}server-data", root.tag
    for host in root.findall(f"{{{PIE}}}host"):
        for user in host.findall(f"{{{PIE}}}user"):
            users[(host.get("jid"), user.get("name"))] = sorted(
                ET.tostring(child, encoding="unicode") for child in user)
    return users


def populate(server):
    """alice, bob, carol, dave on a Hearth: alice and bob subscribed both
    ways, carol in alice's roster with a name and groups, alice's vCard,
    private data and block list, two messages waiting for carol. Returns
    the delay stamps of carol's messages, oldest first."""
    d = server.domain
    clients = [Client(server, f"{u}@{d}", f"pw-{u}", register=True).connect()
               for u in ("alice", "bob", "carol", "dave")]
    alice, bob, carol, dave = clients
    try:
        for c in clients:
            c.send_presence()
        befriend(alice, bob)
        result(alice, CAROL_ITEM.format(domain=d))
        result(alice, VCARD_SET)
        result(alice, PRIVATE_SET)
        result(alice, "<iq type='set'><block xmlns='urn:xmpp:blocking'>"
                      "<item jid='spam@elsewhere.example'/></block></iq>")
        carol.disconnect()
        alice.send_message(f"carol@{d}", "first, while you were out")
        alice.send_message(f"carol@{d}", "second <&> one")
        wait_for(lambda: server.env.sql(
            f"SELECT COUNT(*) FROM offline WHERE owner = 'carol@{d}'") == [["2"]],
            "two offline messages stored")
    finally:
        for c in clients:
            c.disconnect()
    rows = server.env.sql(f"SELECT stanza FROM offline WHERE owner = 'carol@{d}' ORDER BY id")
    return [ET.fromstring(r[0]).find(f"{{{DELAY}}}delay").get("stamp") for r in rows]


def test_export_import_round_trip_between_two_hearths(tmp_path, storage_driver):
    """From SQLite to a second Hearth on SQLite, and on PostgreSQL."""
    one = Server(Env(tmp_path / "one"))
    two = Server(Env(tmp_path / "two", storage=storage_driver))
    try:
        one.start()
        stamps = populate(one)
        first = str(tmp_path / "one.xml")
        ok(hearthctl(one.env.config_path, "export", first))
        assert os.stat(first).st_mode & 0o077 == 0, "the export holds keys: 0600"
        text = open(first).read()
        assert "pw-alice" not in text, "no password is ever exported"
        two.start()
        out = ok(hearthctl(two.env.config_path, "import", first))
        assert "imported 4, skipped 0 (existing), failed 0" in out, out
        # export of the copy = the original, order aside (the same keys too)
        second = str(tmp_path / "two.xml")
        ok(hearthctl(two.env.config_path, "export", second))
        assert canonical(second) == canonical(first)

        alice = login(two, "alice", "pw-alice")
        bob = login(two, "bob", "pw-bob")
        check_alice(alice, two.domain)
        assert bob.roster_get().get(f"alice@{two.domain}", {}).get("subscription") == "both"
        blocked = result(alice, "<iq type='get'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        assert [i.get("jid") for i in blocked] == ["spam@elsewhere.example"], ET.tostring(blocked)
        carol = login(two, "carol", "pw-carol")
        carol.send_presence()
        got = [carol.wait_message(timeout=10) for _ in range(2)]
        assert [m["body"] for m in got] == ["first, while you were out", "second <&> one"]
        assert [m.xml.find(f"{{{DELAY}}}delay").get("stamp") for m in got] == stamps
        for c in (alice, bob, carol):
            c.disconnect()
    finally:
        one.stop()
        two.stop()


def test_offline_messages_of_another_server_keep_their_stamps(server, tmp_path):
    """The XEP-0227 example's form: a delay with text, a stamp with an
    offset; a message without a delay gets one of the import."""
    d = server.domain
    path = tmp_path / "offline.xml"
    path.write_text(
        f"<server-data xmlns='{PIE}'><host jid='{d}'><user name='juliet' password='s3crEt'>"
        f"<offline-messages>"
        f"<message xmlns='jabber:client' from='romeo@montague.example/orchard' to='juliet@{d}' "
        f"type='chat'><body>Neither, fair saint</body><delay xmlns='{DELAY}' "
        f"from='capulet.example' stamp='1469-07-21T00:32:29Z'>Offline Storage</delay></message>"
        f"<message xmlns='jabber:client' from='nurse@capulet.example' to='juliet@{d}'>"
        f"<body>Madam!</body><delay xmlns='{DELAY}' stamp='2020-02-29T12:00:00.250+02:00'/>"
        f"</message>"
        f"<message xmlns='jabber:client' from='tybalt@capulet.example' to='juliet@{d}'>"
        f"<body>no stamp</body></message>"
        f"</offline-messages></user></host></server-data>")
    before = time.time()
    ok(hearthctl(server.env.config_path, "import", str(path)))
    stamps = [int(r[0]) for r in server.env.sql(
        f"SELECT stamp FROM offline WHERE owner = 'juliet@{d}' ORDER BY id")]
    assert stamps[:2] == [-15792622051000, 1582970400250], stamps
    assert stamps[2] >= int(before * 1000) - 1000, stamps
    juliet = login(server, "juliet", "s3crEt")
    juliet.send_presence()
    got = [juliet.wait_message(timeout=10) for _ in range(3)]
    assert [m["body"] for m in got] == ["Neither, fair saint", "Madam!", "no stamp"]
    delays = [m.xml.find(f"{{{DELAY}}}delay") for m in got]
    assert [x.get("stamp") for x in delays[:2]] == ["1469-07-21T00:32:29Z",
                                                     "2020-02-29T12:00:00.250+02:00"]
    assert delays[2] is not None and delays[2].get("from") == d, ET.tostring(got[2].xml)
    assert str(got[0]["from"]) == "romeo@montague.example/orchard"
    juliet.disconnect()


def test_export_makes_an_existing_file_private(server, tmp_path):
    path = tmp_path / "old.xml"
    path.write_text("old")
    path.chmod(0o644)
    ok(hearthctl(server.env.config_path, "adduser", f"olga@{server.domain}", "pw-olga"))
    ok(hearthctl(server.env.config_path, "export", str(path)))
    assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
    assert ("olga", ) == tuple(u for (_, u) in canonical(str(path)))


def test_existing_accounts_are_skipped_unless_replace(server, tmp_path):
    d = server.domain
    path = tmp_path / "in.xml"
    path.write_text(f"<server-data xmlns='{PIE}'><host jid='{d}'>"
                    f"<user name='erin' password='from-file'/></host></server-data>")
    ok(hearthctl(server.env.config_path, "adduser", f"erin@{d}", "already-here"))
    out = hearthctl(server.env.config_path, "import", str(path))
    assert out.returncode == 0 and "exists already: skipped" in out.stderr, out
    login(server, "erin", "already-here").disconnect()
    ok(hearthctl(server.env.config_path, "import", "--replace", str(path)))
    login(server, "erin", "from-file").disconnect()
    with pytest.raises(ClientError) as e:
        login(server, "erin", "already-here")
    assert e.value.condition == "not-authorized"


def test_import_refuses_a_file_with_a_dtd_or_an_entity(server, tmp_path):
    d = server.domain
    bomb = tmp_path / "dtd.xml"
    bomb.write_text(f"<?xml version='1.0'?>\n<!DOCTYPE server-data [<!ENTITY a 'x'>"
                    f"<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]>\n<server-data xmlns='{PIE}'>"
                    f"<host jid='{d}'><user name='mallory' password='pw'>"
                    f"<vCard xmlns='vcard-temp'><FN>&b;</FN></vCard></user></host></server-data>")
    p = hearthctl(server.env.config_path, "import", str(bomb))
    assert p.returncode == 1 and "document type declaration" in p.stderr, p
    entity = tmp_path / "entity.xml"
    entity.write_text(f"<server-data xmlns='{PIE}'><host jid='{d}'>"
                      f"<user name='mallory' password='pw&ext;'/></host></server-data>")
    p = hearthctl(server.env.config_path, "import", str(entity))
    assert p.returncode == 1 and "not well-formed" in p.stderr, p
    assert server.env.sql("SELECT owner FROM auth WHERE owner LIKE 'mallory@%'") == []


def test_import_of_a_truncated_file_keeps_the_users_before_the_break(server, tmp_path):
    d = server.domain
    path = tmp_path / "cut.xml"
    path.write_text(f"<server-data xmlns='{PIE}'><host jid='{d}'>"
                    f"<user name='frank' password='pw-frank'/>"
                    f"<user name='grace' password='pw-grace'><vCard xmlns='vcard-temp'><FN>Gr")
    p = hearthctl(server.env.config_path, "import", str(path))
    assert p.returncode == 1, p
    assert "imported frank@" in p.stdout and "grace" in p.stderr, p
    login(server, "frank", "pw-frank").disconnect()
    assert server.env.sql(f"SELECT owner FROM auth WHERE owner = 'grace@{d}'") == []


def test_import_refuses_a_bad_user_and_imports_the_others(server, tmp_path):
    d = server.domain
    path = tmp_path / "mixed.xml"
    path.write_text(
        f"<server-data xmlns='{PIE}'><host jid='{d}'>"
        f"<user name='bad user@x' password='pw'/>"
        # a good account whose roster is broken: nothing of it is written
        f"<user name='heidi' password='pw-heidi'><query xmlns='{ROSTER}'>"
        f"<item jid='ivan@{d}' subscription='both'/><item jid='' subscription='both'/>"
        f"</query></user>"
        f"<user name='judy' password='pw-judy'><query xmlns='{ROSTER}'>"
        f"<item jid='heidi@{d}' subscription='none' ask='subscribe'/></query></user>"
        f"</host><host jid='not-ours.example'><user name='kim' password='pw'/></host>"
        f"</server-data>")
    p = hearthctl(server.env.config_path, "import", str(path))
    assert p.returncode == 1, p
    assert "user 'bad user@x'" in p.stderr and "not imported" in p.stderr, p.stderr
    assert "user 'heidi'" in p.stderr and "roster item has no valid jid" in p.stderr, p.stderr
    assert "not-ours.example" in p.stderr, p.stderr
    assert "imported 1, skipped 0 (existing), failed 3" in p.stdout, p.stdout
    assert server.env.sql(f"SELECT owner FROM roster_items WHERE owner = 'heidi@{d}'") == []
    assert server.env.sql("SELECT owner FROM auth ORDER BY owner") == [[f"judy@{d}"]]
    judy = login(server, "judy", "pw-judy")
    assert judy.roster_get()[f"heidi@{d}"]["ask"] == "subscribe"
    judy.disconnect()


def test_import_tells_the_running_sm_of_the_new_accounts(server, tmp_path):
    d = server.domain
    zed = Client(server, f"zed@{d}", "pw-zed", register=True).connect()
    try:
        # the sm learns that yan does not exist (and would believe it a while)
        zed.send_message(f"yan@{d}", "anyone?")
        err = zed.wait_message(lambda m: m.xml.get("type") == "error")
        assert err["error"]["condition"] == "service-unavailable"
        path = tmp_path / "yan.xml"
        path.write_text(f"<server-data xmlns='{PIE}'><host jid='{d}'>"
                        f"<user name='yan' password='pw-yan'/></host></server-data>")
        ok(hearthctl(server.env.config_path, "import", str(path)))
        zed.send_message(f"yan@{d}", "now you exist")
        yan = login(server, "yan", "pw-yan")
        yan.send_presence()
        assert yan.wait_message(timeout=10)["body"] == "now you exist"
        yan.disconnect()
        with pytest.raises(ClientError):
            zed.wait_message(lambda m: m.xml.get("type") == "error", timeout=0.5)
    finally:
        zed.disconnect()


def test_export_and_import_usage_errors_exit_2(tmp_path):
    for args in (["export", "a", "b"], ["import", "--frobnicate"], ["export", "--replace"]):
        p = subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), *args],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and "usage:" in p.stderr, (args, p)


# ---- Prosody ------------------------------------------------------------------

# The migrator writes XEP-0227 files into Prosody's data directory
# (mod_storage_xep0227 takes no path); for a test, into the test's own
# directory: set before the migrator reads its settings.
MIGRATOR_DATA = ("package.path='/usr/lib/prosody/?.lua;'..package.path;"
                 "package.cpath='/usr/lib/prosody/?.so;'..package.cpath;"
                 "require'core.configmanager'.set('*','data_path',{path!r})")


class Prosody(ProsodyBase):
    """A private Prosody for one domain, c2s only, as root of the test."""

    def __init__(self, tmpdir, domain):
        super().__init__(tmpdir, domain)
        self.cert_path, key = self_signed(self.dir, domain)
        ssl = f'ssl = {{ certificate = "{self.cert_path}"; key = "{key}" }}'
        self.write_config(f"""
daemonize = false
run_as_root = true
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.data}"
log = {{ debug = "{self.log}" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "presence"; "posix"; "vcard";
                    "private"; "offline" }}
{ssl}
VirtualHost "{domain}"
    {ssl}
""")

    def export(self, outdir):
        """prosody-migrator from internal storage to XEP-0227 files in
        outdir (one per user); returns their paths."""
        os.makedirs(outdir, exist_ok=True)
        config = os.path.join(self.dir, "migrator.cfg.lua")
        with open(config, "w") as f:
            f.write(f"""
input {{ type = "internal"; path = "{self.data}";
        hosts = {{ ["{self.domain}"] = {{ "accounts", "roster", "vcard", "private" }} }} }}
output {{ type = "xep0227" }}
""")
        p = subprocess.run(["lua5.4", "-e", MIGRATOR_DATA.format(path=str(outdir)), MIGRATOR,
                            "--root", "--config", config, "input", "output"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "Done!" in p.stderr, f"prosody-migrator: {p.stdout}{p.stderr}"
        return sorted(os.path.join(outdir, n) for n in os.listdir(outdir) if n.endswith(".xml"))


@pytest.mark.skipif(not os.path.exists(PROSODY) or not os.path.exists(MIGRATOR)
                    or not shutil.which("lua5.4"), reason="prosody is not installed")
def test_migration_from_prosody(tmp_path):
    domain = "pie.test"
    prosody = Prosody(tmp_path / "prosody", domain)
    # one failure counted closes the stream: the SCRAM-SHA-256 attempt of
    # a SHA-1-only account must not count
    hearth = Server(Env(tmp_path / "hearth"), domain=domain, **{"c2s.auth-failures": "1"})
    try:
        prosody.start()
        for u in ("alice", "bob", "carol"):
            prosody.register(u, f"prosody-{u}")
        alice, bob = (Client(prosody, f"{u}@{domain}", f"prosody-{u}").connect()
                      for u in ("alice", "bob"))
        try:
            alice.send_presence()
            bob.send_presence()
            befriend(alice, bob)
            result(alice, CAROL_ITEM.format(domain=domain))
            result(alice, VCARD_SET)
            result(alice, PRIVATE_SET)
        finally:
            alice.disconnect()
            bob.disconnect()
        prosody.stop()
        files = prosody.export(tmp_path / "pie")
        assert len(files) == 3, files
        assert "scram-credentials" in open(files[0]).read()

        hearth.start()
        out = ok(hearthctl(hearth.env.config_path, "import", *files))
        assert "imported 3, skipped 0 (existing), failed 0" in out, out
        keys = hearth.env.sql(f"SELECT sha1_stored IS NOT NULL, sha256_stored IS NULL FROM auth "
                              f"WHERE owner = 'alice@{domain}'")
        assert keys == [["1", "1"]], f"Prosody keeps SCRAM-SHA-1 keys only: {keys}"

        # the best mechanism both offer is SCRAM-SHA-256: refused, uncounted,
        # and the client goes on to SCRAM-SHA-1
        alice = login(hearth, "alice", "prosody-alice", fallback=True)
        assert alice.failures and set(alice.failures) == {"not-authorized"}, alice.failures
        check_alice(alice, domain)
        alice.disconnect()
        bob = login(hearth, "bob", "prosody-bob", fallback=True)
        assert bob.roster_get().get(f"alice@{domain}", {}).get("subscription") == "both"
        bob.disconnect()
        with pytest.raises(ClientError):
            login(hearth, "bob", "prosody-bob", mechanism="SCRAM-SHA-256")

        # a PLAIN login adds the SHA-256 keys; SCRAM-SHA-256 works from then on
        login(hearth, "bob", "prosody-bob", mechanism="PLAIN").disconnect()
        wait_for(lambda: hearth.env.sql(
            f"SELECT sha256_stored IS NOT NULL FROM auth WHERE owner = 'bob@{domain}'") == [["1"]],
            "bob's SCRAM-SHA-256 keys stored")
        login(hearth, "bob", "prosody-bob", mechanism="SCRAM-SHA-256").disconnect()
        login(hearth, "bob", "prosody-bob", mechanism="SCRAM-SHA-1").disconnect()
    except Exception:
        print(f"--- prosody log ---\n{tail(prosody.log, 60)}")
        raise
    finally:
        prosody.stop()
        hearth.stop()
