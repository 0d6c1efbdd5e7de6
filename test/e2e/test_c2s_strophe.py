"""The login path with a second real client library: libstrophe (the C
program strophe-login, built by make check when libstrophe-dev is
installed) logs in over STARTTLS, verifying the generated certificate, and
sends a message that a slixmpp client receives. Runs on both storage
drivers."""
import os
import re
import subprocess

import pytest

from hearth_env import BUILDDIR
from xmpp_client import Client

PASSWORD = "strophe secret"
PROGRAM = os.path.join(BUILDDIR, "test", "e2e", "strophe-login")


def strophe_login(server, jid, password, to, body):
    if not os.access(PROGRAM, os.X_OK):
        pytest.skip("strophe-login is not built (libstrophe-dev missing at configure)")
    p = subprocess.run([PROGRAM, server.host, str(server.port), jid, password, server.cert_path,
                        to, body], capture_output=True, text=True, timeout=30)
    with open(os.path.join(server.env.logdir, "strophe-login.log"), "a") as log:
        log.write(p.stderr)
    return p


def test_libstrophe_logs_in_with_scram_and_sends_a_message(server):
    Client(server, "alice@localhost", PASSWORD, register=True).connect().disconnect()
    bob = Client(server, "bob@localhost", PASSWORD, register=True).connect()
    p = strophe_login(server, "alice@localhost/strophe", PASSWORD, bob.bound_jid, "from strophe")
    assert p.returncode == 0, f"strophe-login: {p.stdout}"
    assert "bound alice@localhost/strophe" in p.stdout, p.stdout
    msg = bob.wait_message(lambda m: m["body"] == "from strophe")
    assert str(msg["from"]) == "alice@localhost/strophe"
    bob.disconnect()
    with open(server.c2s[0].log) as f:
        logins = re.findall(r"alice@localhost logged in \((SCRAM-[A-Z0-9-]+)", f.read())
    assert logins[-1].startswith("SCRAM-"), logins


def test_libstrophe_with_a_wrong_password_fails(server):
    Client(server, "alice@localhost", PASSWORD, register=True).connect().disconnect()
    p = strophe_login(server, "alice@localhost", "wrong", "alice@localhost", "x")
    assert p.returncode == 1 and "bound" not in p.stdout, p.stdout
