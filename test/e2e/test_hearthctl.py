"""hearthctl, the admin command, against a running Hearth: accounts it
creates log in with real clients, passwords it sets are the only ones that
work, deleted accounts are gone (and their sessions end), and `online` asks
the running sm through the router. Runs on SQLite and on PostgreSQL."""
import os
import subprocess
import time

import pytest

from hearth_env import BUILDDIR
from xmpp_client import Client, ClientError


def hearthctl_path():
    return os.path.join(BUILDDIR, "tools", "hearthctl")


@pytest.fixture
def ctl(server):
    """ctl("adduser", "alice", "pw", input=None) -> CompletedProcess on the
    server's hearth.xml."""
    def run(*args, input=None, config=None):
        return subprocess.run([hearthctl_path(), "-c", config or server.env.config_path, *args],
                              input=input, capture_output=True, text=True, timeout=30)
    return run


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


def logs_in(server, jid, password, resource="t"):
    try:
        Client(server, jid, password, resource=resource).connect().disconnect()
        return True
    except ClientError as e:
        assert e.condition == "not-authorized", f"login failed for another reason: {e}"
        return False


def test_adduser_creates_an_account_that_logs_in(ctl, server):
    ok(ctl("adduser", "alice@localhost", "s3cret"))
    assert logs_in(server, "alice@localhost", "s3cret")


def test_adduser_reads_the_password_from_stdin(ctl, server):
    ok(ctl("adduser", "bob", input="from-stdin\n"))
    assert logs_in(server, "bob@localhost", "from-stdin")


def test_adduser_of_an_existing_account_fails(ctl):
    ok(ctl("adduser", "alice", "one"))
    proc = ctl("adduser", "alice", "two")
    assert proc.returncode == 1 and "already exists" in proc.stderr, proc


def test_adduser_in_a_foreign_domain_fails(ctl):
    proc = ctl("adduser", "eve@elsewhere.example", "x")
    assert proc.returncode == 1 and "not a domain of this server" in proc.stderr, proc


def test_passwd_lets_only_the_new_password_in(ctl, server):
    ok(ctl("adduser", "alice", "old-pw"))
    ok(ctl("passwd", "alice", input="new-pw\n"))
    assert logs_in(server, "alice@localhost", "new-pw", "a")
    assert not logs_in(server, "alice@localhost", "old-pw", "b")


def test_passwd_of_an_unknown_user_fails(ctl):
    proc = ctl("passwd", "nobody", "x")
    assert proc.returncode == 1 and "no such user" in proc.stderr, proc


def test_users_lists_the_accounts(ctl):
    ok(ctl("adduser", "carol", "x"))
    ok(ctl("adduser", "alice", "x"))
    assert ok(ctl("users")).split() == ["alice@localhost", "carol@localhost"]


def test_deluser_removes_the_account(ctl, server):
    ok(ctl("adduser", "alice", "pw"))
    ok(ctl("deluser", "alice"))
    assert ok(ctl("users")).split() == []
    assert not logs_in(server, "alice@localhost", "pw")


def test_deluser_ends_the_users_sessions(ctl, server):
    ok(ctl("adduser", "alice", "pw"))
    alice = Client(server, "alice@localhost", "pw").connect()
    try:
        ok(ctl("deluser", "alice"))
        assert alice.wait_disconnected(5), "the session outlived its account"
    finally:
        alice.disconnect()


def test_deluser_of_an_unknown_user_fails(ctl):
    proc = ctl("deluser", "nobody")
    assert proc.returncode == 1 and "no such user" in proc.stderr, proc


def alice_and_bob(ctl, server):
    """alice (resource phone) and bob (desk), made with hearthctl, connected."""
    ok(ctl("adduser", "alice", "pw"))
    ok(ctl("adduser", "bob", "pw"))
    return (Client(server, "alice@localhost", "pw", resource="phone").connect(),
            Client(server, "bob@localhost", "pw", resource="desk").connect())


def test_online_lists_the_sessions(ctl, server):
    alice, bob = alice_and_bob(ctl, server)
    try:
        alice.send_presence()
        lines = ok(ctl("online")).splitlines()
        jids = sorted(line.split("\t")[0] for line in lines)
        assert jids == ["alice@localhost/phone", "bob@localhost/desk"], lines
        assert all(line.split("\t")[1].startswith("c2s-") for line in lines), lines
    finally:
        alice.disconnect()
        bob.disconnect()


def test_online_shows_away_and_unavailable(ctl, server):
    alice, bob = alice_and_bob(ctl, server)
    try:
        alice.send_presence(pshow="away")
        deadline = time.monotonic() + 5
        while True:
            shown = dict(line.split("\t")[::2] for line in ok(ctl("online")).splitlines())
            if shown.get("alice@localhost/phone") == "away" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert shown == {"alice@localhost/phone": "away", "bob@localhost/desk": "unavailable"}, shown
    finally:
        alice.disconnect()
        bob.disconnect()


def test_online_with_nobody_online_is_empty(ctl):
    proc = ctl("online")
    assert proc.returncode == 0 and proc.stdout == "" and "nobody is online" in proc.stderr, proc


def test_online_without_a_running_sm_fails(ctl, server):
    server.sm.stop()
    proc = ctl("online")
    assert proc.returncode == 1 and "sm" in proc.stderr, proc


def test_usage_errors_exit_2():
    for args in ([], ["frobnicate"], ["adduser"], ["users", "extra"]):
        proc = subprocess.run([hearthctl_path(), *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and "usage:" in proc.stderr, (args, proc)
