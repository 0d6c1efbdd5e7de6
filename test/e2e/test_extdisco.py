"""STUN and TURN discovery for calls (XEP-0215; sm/mod_extdisco.c), against
a real coturn (Debian's `turnserver`, use-auth-secret): the credentials
Hearth hands a user get a TURN allocation from coturn (its own client,
`turnutils_uclient`), the same with a wrong password do not, and nobody
but the server's own users gets any."""
import base64
import hashlib
import hmac
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from hearth_env import BUILDDIR, Server, free_port, random_password, wait_for
from testcomp import Component
from xmpp_client import Client

NS = "urn:xmpp:extdisco:2"
SECRET = random_password()


@pytest.fixture
def coturn(tmp_path):
    """A turnserver on loopback sharing SECRET, and its port."""
    binary = shutil.which("turnserver")
    assert binary, "coturn is not installed (apt-get install coturn)"
    port = free_port()
    d = tmp_path / "coturn"
    d.mkdir()
    proc = subprocess.Popen(
        [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", "--use-auth-secret", f"--static-auth-secret={SECRET}",
         "--realm=localhost", "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers",
         f"--log-file={d}/log", "--simple-log", f"--pidfile={d}/pid", f"--userdb={d}/db",
         "--min-port=28000", "--max-port=28999"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening():
        out = subprocess.run(["ss", "-lnu", f"sport = :{port}"], capture_output=True, text=True)
        return f":{port}" in out.stdout
    wait_for(listening, "turnserver listening")
    yield port
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def server(hearth_env, coturn):
    secret_file = os.path.join(hearth_env.dir, "turn-secret")
    with open(secret_file, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(secret_file, 0o600)
    return Server(hearth_env, **{"sm.external-service": [
        {"type": "stun", "host": "127.0.0.1", "port": coturn},
        {"type": "turn", "host": "127.0.0.1", "port": coturn, "transport": "udp",
         "secret-file": secret_file, "ttl": 600},
    ]}).start()


@pytest.fixture
def alice(server):
    c = Client(server, "alice@localhost", "pw-calls", register=True).connect()
    yield c
    c.disconnect()


def services(client, query):
    answer = client.iq(f"<iq type='get'>{query}</iq>")
    assert answer["type"] == "result", answer
    return [s.attrib for s in answer.xml.iter(f"{{{NS}}}service")]


def allocate(port, username, password):
    """coturn's own client asks for a TURN allocation: True if granted."""
    out = subprocess.run(["turnutils_uclient", "-u", username, "-w", password, "-p", str(port),
                          "-e", "127.0.0.1", "-n", "1", "-m", "1", "-c", "-y", "127.0.0.1"],
                         capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and "ERROR" not in out.stdout + out.stderr


def test_the_services_are_listed_with_turn_credentials_that_coturn_takes(alice, coturn):
    found = services(alice, f"<services xmlns='{NS}'/>")
    assert [s["type"] for s in found] == ["stun", "turn"], found
    stun, turn = found
    assert stun["host"] == "127.0.0.1" and stun["port"] == str(coturn), stun
    assert "username" not in stun and "password" not in stun, stun
    expiry, user = turn["username"].split(":", 1)
    assert user == "alice@localhost", turn
    assert 0 < int(expiry) - time.time() <= 600, turn
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", turn["expires"]), turn
    assert turn["restricted"] == "1" and turn["transport"] == "udp", turn
    assert allocate(coturn, turn["username"], turn["password"])
    # the control: coturn does refuse a password that is not the secret's
    assert not allocate(coturn, turn["username"], turn["password"][:-2] + "AA")


def test_coturn_refuses_credentials_once_expired(alice, coturn):
    """The scheme's expiry is coturn's to enforce: the credentials Hearth
    made for this user, and the same made for an instant just past (with
    the shared secret, as Hearth does), are taken and refused."""
    turn = services(alice, f"<services xmlns='{NS}' type='turn'/>")[0]

    def password(username):
        digest = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()
    assert password(turn["username"]) == turn["password"], turn
    assert allocate(coturn, turn["username"], turn["password"])
    past = f"{int(time.time()) - 5}:alice@localhost"
    assert not allocate(coturn, past, password(past))


def test_the_list_can_be_asked_for_one_type(alice):
    assert [s["type"] for s in services(alice, f"<services xmlns='{NS}' type='turn'/>")] == ["turn"]


def test_credentials_are_answered_for_a_service_and_refused_for_another(alice, coturn):
    found = services(alice, f"<credentials xmlns='{NS}'><service host='127.0.0.1' type='turn'/>"
                            "</credentials>")
    assert len(found) == 1 and found[0]["username"].endswith(":alice@localhost"), found
    assert allocate(coturn, found[0]["username"], found[0]["password"])
    answer = alice.iq(f"<iq type='get'><credentials xmlns='{NS}'>"
                      "<service host='turn.elsewhere.example' type='turn'/></credentials></iq>")
    assert answer["type"] == "error" and answer["error"]["condition"] == "item-not-found", answer


def test_the_older_namespace_gets_the_same_answer(alice):
    answer = alice.iq("<iq type='get'><services xmlns='urn:xmpp:extdisco:1'/></iq>")
    found = [s.attrib for s in answer.xml.iter("{urn:xmpp:extdisco:1}service")]
    assert [s["type"] for s in found] == ["stun", "turn"], answer


def test_nobody_but_a_local_user_gets_credentials(server):
    """A component (or another server) asking the server gets
    service-unavailable from the core, never credentials."""
    with Component(BUILDDIR, server.router.listen, server.env.password, "spy", "spy.localhost",
                   logdir=server.env.logdir) as spy:
        spy.expect("ready")
        answer = spy.ask("localhost", "spy.localhost", "<iq type='get' id='x1' "
                         f"from='who@spy.localhost' to='localhost'><services xmlns='{NS}'/></iq>",
                         "x1")
        assert "service-unavailable" in answer and "password" not in answer, answer
