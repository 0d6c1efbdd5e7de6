"""Federation end to end: two whole Hearths (router, sm, c2s, s2s) serving
a.test and b.test, each told where the other is by a static s2s route.
Their s2s daemons talk STARTTLS and server dialback (XEP-0220) to each
other; real slixmpp clients exchange messages across them. A message to a
domain whose server is down comes back as remote-server-not-found."""
import os
import socket
import ssl
import subprocess
import time

import pytest

from hearth_env import Daemon, Env, Server, free_port, is_built
from xmpp_client import Client

pytestmark = pytest.mark.skipif(not is_built("s2s"), reason="hearth-s2s is not built")

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Hearth:
    """One Hearth with its s2s, for domain, in directory tmp."""

    def __init__(self, tmp, domain, s2s_port, routes, resolver=False, **settings):
        os.makedirs(tmp, exist_ok=True)
        self.env = Env(tmp)
        self.s2s_port = s2s_port
        self.server = Server(self.env, domain=domain, **{
            "s2s.listen": f"127.0.0.1:{s2s_port}",
            "s2s.route": [{"domain": d, "target": t} for d, t in routes.items()],
            # the peers' certificates are self-signed: dialback alone
            "s2s.verify-certificates": "false",
            "s2s.connect-timeout": "2s",
            **settings})
        self.s2s = Daemon("s2s", self.env.config_path, self.env.logdir, ("127.0.0.1", s2s_port))
        self.resolver = (Daemon("resolver", self.env.config_path, self.env.logdir)
                         if resolver else None)

    def start(self):
        self.server.start()
        mark = os.path.getsize(self.server.router.log)
        if self.resolver:
            self.env.add(self.resolver)
            self.resolver.start()
            self.server.wait_router_log(" bound resolver", mark, 10, self.resolver)
        self.env.add(self.s2s)
        self.s2s.start()
        self.server.wait_router_log(" bound s2s", mark, 10, self.s2s)
        return self

    def client(self, name):
        c = Client(self.server, f"{name}@{self.server.domain}", "pw-secret", register=True)
        c.xmpp.auto_authorize = None
        c.xmpp.auto_subscribe = False
        c.connect()
        c.send_presence()  # available: messages to the bare JID reach it
        return c


def stop_servers(*servers):
    """Stop every server's daemons; fail with all their errors at once."""
    errors = []
    for h in servers:
        try:
            h.env.stop_all()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture
def pair(tmp_path):
    port_a, port_b = free_port(), free_port()
    a = Hearth(tmp_path / "a", "a.test", port_a, {"b.test": f"127.0.0.1:{port_b}",
                                                  "down.test": f"127.0.0.1:{free_port()}"})
    b = Hearth(tmp_path / "b", "b.test", port_b, {"a.test": f"127.0.0.1:{port_a}"})
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        stop_servers(a, b)


def test_messages_both_ways(pair):
    a, b = pair
    alice, bob = a.client("alice"), b.client("bob")
    try:
        alice.send_message("bob@b.test", "hello from a")
        m = bob.wait_message(timeout=10)
        assert m["body"] == "hello from a"
        assert m["from"].bare == "alice@a.test"
        bob.send_message("alice@a.test", "hello from b")
        m = alice.wait_message(timeout=10)
        assert m["body"] == "hello from b"
        assert m["from"].bare == "bob@b.test"
        # the streams are reused: more messages go through at once
        for i in range(5):
            alice.send_message("bob@b.test", f"more {i}")
        for i in range(5):
            assert bob.wait_message(timeout=5)["body"] == f"more {i}"
    finally:
        alice.disconnect()
        bob.disconnect()
    with open(a.s2s.log) as f:
        log = f.read()
    assert log.count("a.test -> b.test: dialback accepted") == 1, log


def test_unreachable_server_bounces(pair):
    a, _ = pair
    alice = a.client("alice")
    try:
        start = time.monotonic()
        alice.send_message("nobody@down.test", "anyone?")
        m = alice.wait_message(lambda s: s["type"] == "error", timeout=10)
        assert m["error"]["condition"] == "remote-server-not-found"
        assert m["from"].bare == "nobody@down.test"
        assert time.monotonic() - start < 5
        # no route at all: bounced at once too
        alice.send_message("x@unknown.test", "anyone?")
        m = alice.wait_message(lambda s: s["type"] == "error", timeout=10)
        assert m["error"]["condition"] == "remote-server-not-found"
    finally:
        alice.disconnect()


def test_silent_server_times_out(tmp_path):
    """A peer that accepts the connection and never answers: the stanza
    comes back as remote-server-timeout after s2s.connect-timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    a = Hearth(tmp_path / "a", "a.test", free_port(),
               {"silent.test": f"127.0.0.1:{silent.getsockname()[1]}"})
    try:
        a.start()
        alice = a.client("alice")
        try:
            start = time.monotonic()
            alice.send_message("nobody@silent.test", "hello?")
            m = alice.wait_message(lambda s: s["type"] == "error", timeout=10)
            assert m["error"]["condition"] == "remote-server-timeout"
            assert 1.5 < time.monotonic() - start < 6
        finally:
            alice.disconnect()
    finally:
        silent.close()
        a.env.stop_all()


def read_until(sock, text, timeout=5):
    data = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in data:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
          "xmlns:stream='http://etherx.jabber.org/streams' "
          "xmlns:db='jabber:server:dialback' version='1.0' from='evil.test' to='b.test'>")


def test_unverified_from_is_refused(pair):
    """A server that skips dialback (or claims a domain it did not verify)
    gets the stream error invalid-from; nothing reaches the user."""
    _, b = pair
    bob = b.client("bob")
    try:
        raw = socket.create_connection(("127.0.0.1", b.s2s_port), timeout=5)
        raw.sendall(HEADER.encode())
        assert "starttls" in read_until(raw, "</stream:features>")
        raw.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert "proceed" in read_until(raw, "proceed")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        tls = ctx.wrap_socket(raw, server_hostname="b.test")
        tls.sendall(HEADER.encode())
        read_until(tls, "</stream:features>")
        tls.sendall(b"<message from='mallory@a.test' to='bob@b.test' type='chat'>"
                    b"<body>spoofed</body></message>")
        assert "invalid-from" in read_until(tls, "</stream:stream>")
        tls.close()
        with pytest.raises(AssertionError):
            bob.wait_message(timeout=1)
    finally:
        bob.disconnect()


@pytest.mark.skipif(not is_built("resolver"), reason="hearth-resolver is not built")
def test_through_the_resolver(tmp_path):
    """No static s2s route: the s2s asks hearth-resolver (here answering
    from its resolver/override) where b.test is, both for the stream and
    for b's db:verify back to a."""
    port_a, port_b = free_port(), free_port()
    a = Hearth(tmp_path / "a", "a.test", port_a, {}, resolver=True, **{
        # the first address refuses: the s2s goes on to the next one
        "resolver.override": [{"domain": "b.test", "target": f"127.0.0.1:{free_port()}"},
                              {"domain": "b.test", "target": f"127.0.0.1:{port_b}"},
                              {"domain": "nxdomain.test", "target": f"127.0.0.1:{free_port()}"}]})
    b = Hearth(tmp_path / "b", "b.test", port_b, {}, resolver=True, **{
        "resolver.override": {"domain": "a.test", "target": f"127.0.0.1:{port_a}"}})
    try:
        a.start()
        b.start()
        alice, bob = a.client("alice"), b.client("bob")
        try:
            alice.send_message("bob@b.test", "resolved")
            assert bob.wait_message(timeout=10)["body"] == "resolved"
            bob.send_message("alice@a.test", "and back")
            assert alice.wait_message(timeout=10)["body"] == "and back"
            alice.send_message("x@nxdomain.test", "anyone?")
            m = alice.wait_message(lambda s: s["type"] == "error", timeout=10)
            assert m["error"]["condition"] == "remote-server-not-found"
        finally:
            alice.disconnect()
            bob.disconnect()
    finally:
        stop_servers(a, b)


def test_subscription_and_presence(pair):
    """RFC 6121 subscriptions across servers: alice asks, bob approves,
    alice then sees bob's presence, and bob's availability changes reach
    her."""
    a, b = pair
    alice, bob = a.client("alice"), b.client("bob")
    try:
        alice.send_presence(pto="bob@b.test", ptype="subscribe")
        req = bob.wait_presence(lambda s: s["type"] == "subscribe", timeout=10)
        assert req["from"].bare == "alice@a.test"
        bob.send_presence(pto="alice@a.test", ptype="subscribed")
        alice.wait_presence(lambda s: s["type"] == "subscribed" and s["from"].bare == "bob@b.test",
                            timeout=10)
        # the server sends bob's current presence after the approval
        alice.wait_presence(lambda s: s["from"].bare == "bob@b.test" and s["type"] == "available",
                            timeout=10)
        bob.send_presence(pstatus="busy")
        p = alice.wait_presence(lambda s: s["from"].bare == "bob@b.test" and s["status"] == "busy",
                                timeout=10)
        assert p["type"] == "available"
    finally:
        alice.disconnect()
        bob.disconnect()


def test_idle_stream_closed_and_reopened(tmp_path):
    """An idle stream is closed after s2s.idle-timeout; the next stanza
    opens a new one."""
    port_a, port_b = free_port(), free_port()
    a = Hearth(tmp_path / "a", "a.test", port_a, {"b.test": f"127.0.0.1:{port_b}"},
               **{"s2s.idle-timeout": "1s"})
    b = Hearth(tmp_path / "b", "b.test", port_b, {"a.test": f"127.0.0.1:{port_a}"})
    try:
        a.start()
        b.start()
        alice, bob = a.client("alice"), b.client("bob")
        try:
            alice.send_message("bob@b.test", "one")
            assert bob.wait_message(timeout=10)["body"] == "one"
            deadline = time.monotonic() + 10
            while "a.test -> b.test: idle, closing" not in open(a.s2s.log).read():
                assert time.monotonic() < deadline, "the idle stream was not closed"
                time.sleep(0.1)
            alice.send_message("bob@b.test", "two")
            assert bob.wait_message(timeout=10)["body"] == "two"
            assert open(a.s2s.log).read().count("a.test -> b.test: dialback accepted") == 2
        finally:
            alice.disconnect()
            bob.disconnect()
    finally:
        stop_servers(a, b)


def make_cert(directory, domain):
    """A self-signed certificate for domain (its own CA); (cert, key)."""
    cert, key = os.path.join(directory, f"{domain}.crt"), os.path.join(directory, f"{domain}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain}",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("trusted", [True, False])
def test_certificate_verification(tmp_path, trusted):
    """With s2s.verify-certificates on (the default), a peer's certificate
    must verify against s2s.ca for the peer's domain: then the stream
    works; with a certificate not trusted it does not, and the stanza
    comes back as remote-server-not-found."""
    a_cert, a_key = make_cert(str(tmp_path), "a.test")
    b_cert, b_key = make_cert(str(tmp_path), "b.test")
    other, _ = make_cert(str(tmp_path), "other.test")
    port_a, port_b = free_port(), free_port()
    a = Hearth(tmp_path / "a", "a.test", port_a, {"b.test": f"127.0.0.1:{port_b}"}, **{
        "s2s.verify-certificates": "true", "s2s.cert": a_cert, "s2s.key": a_key,
        "s2s.ca": b_cert if trusted else other})
    b = Hearth(tmp_path / "b", "b.test", port_b, {"a.test": f"127.0.0.1:{port_a}"}, **{
        "s2s.verify-certificates": "true", "s2s.cert": b_cert, "s2s.key": b_key,
        "s2s.ca": a_cert})
    try:
        a.start()
        b.start()
        alice, bob = a.client("alice"), b.client("bob")
        try:
            alice.send_message("bob@b.test", "verified?")
            if trusted:
                assert bob.wait_message(timeout=10)["body"] == "verified?"
            else:
                m = alice.wait_message(lambda s: s["type"] == "error", timeout=10)
                assert m["error"]["condition"] == "remote-server-not-found"
                with pytest.raises(AssertionError):
                    bob.wait_message(timeout=1)
        finally:
            alice.disconnect()
            bob.disconnect()
    finally:
        stop_servers(a, b)


def test_wrong_dialback_key_is_refused(pair):
    """A server that claims to be a.test without a.test's key: b asks a.test
    (db:verify), which says invalid; b answers the claim with
    type='invalid' and refuses stanzas from a.test on that stream."""
    a, b = pair
    bob = b.client("bob")
    try:
        raw = socket.create_connection(("127.0.0.1", b.s2s_port), timeout=5)
        header = HEADER.replace("from='evil.test'", "from='a.test'")
        raw.sendall(header.encode())
        read_until(raw, "</stream:features>")
        raw.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        read_until(raw, "proceed")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        tls = ctx.wrap_socket(raw, server_hostname="b.test")
        tls.sendall(header.encode())
        read_until(tls, "</stream:features>")
        tls.sendall(b"<db:result from='a.test' to='b.test'>" + b"0" * 64 + b"</db:result>")
        answer = read_until(tls, "/>", timeout=10)
        assert "type='invalid'" in answer, answer
        tls.sendall(b"<message from='alice@a.test' to='bob@b.test' type='chat'>"
                    b"<body>spoofed</body></message>")
        assert "invalid-from" in read_until(tls, "</stream:stream>")
        tls.close()
        with pytest.raises(AssertionError):
            bob.wait_message(timeout=1)
    finally:
        bob.disconnect()
