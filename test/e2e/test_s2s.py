"""Federation end to end: two whole Hearths (router, sm, c2s, s2s) serving
a.test and b.test, each told where the other is by a static s2s route (or
by hearth-resolver). Their s2s daemons talk STARTTLS or direct TLS, and
authenticate with server dialback (XEP-0220) or, with certificates from a
CA made by the test, SASL EXTERNAL (XEP-0178); real slixmpp clients
exchange messages across them. A message to a domain whose server is down
comes back as remote-server-not-found."""
import os
import socket
import ssl
import subprocess
import time

import pytest

from hearth_env import (BUILDDIR, DNSMASQ, Daemon, Dns, Env, Server, TestCA, free_port,
                        is_built)
from xmpp_client import Client

pytestmark = pytest.mark.skipif(not is_built("s2s"), reason="hearth-s2s is not built")

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Hearth:
    """One Hearth with its s2s, for domain, in directory tmp."""

    def __init__(self, tmp, domain, s2s_port, routes, resolver=False, more_domains=(),
                 **settings):
        os.makedirs(tmp, exist_ok=True)
        self.env = Env(tmp)
        self.s2s_port = s2s_port
        self.s2s_tls_port = free_port()
        self.server = Server(self.env, domain=[domain, *more_domains], **{
            "s2s.listen": f"127.0.0.1:{s2s_port}",
            "s2s.listen-tls": f"127.0.0.1:{self.s2s_tls_port}",
            "s2s.route": [{"domain": d, "target": t} for d, t in routes.items()],
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

    def log_has(self, text, timeout=10):
        """Wait until the s2s log holds text."""
        deadline = time.monotonic() + timeout
        while text not in open(self.s2s.log).read():
            assert time.monotonic() < deadline, f"not in {self.s2s.log}: {text}"
            time.sleep(0.05)

    def client(self, name, register=True):
        c = Client(self.server, f"{name}@{self.server.domain}", "pw-secret", register=register)
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


def start_pair(tmp_path, a_settings=None, b_settings=None):
    """a.test and b.test, each with a static route to the other (and a for
    down.test, where nobody listens); started."""
    port_a, port_b = free_port(), free_port()
    a = Hearth(tmp_path / "a", "a.test", port_a, {"b.test": f"127.0.0.1:{port_b}",
                                                  "down.test": f"127.0.0.1:{free_port()}"},
               **(a_settings or {}))
    b = Hearth(tmp_path / "b", "b.test", port_b, {"a.test": f"127.0.0.1:{port_a}"},
               **(b_settings or {}))
    try:
        a.start()
        b.start()
    except BaseException:
        stop_servers(a, b)
        raise
    return a, b


@pytest.fixture
def pair(tmp_path):
    """Two Hearths with their self-signed certificates: dialback."""
    a, b = start_pair(tmp_path)
    try:
        yield a, b
    finally:
        stop_servers(a, b)


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "ca")


def with_cert(ca, domain, san=TestCA.DNS_ID, **settings):
    cert, key = ca.issue(domain, san)
    return {"s2s.cert": cert, "s2s.key": key, "s2s.ca": ca.cert, **settings}


CERT_ONLY = {"s2s.auth": "certificate"}  # valid certificates, no dialback


@pytest.fixture(params=["dialback", "certificate"])
def any_pair(tmp_path, request):
    """Two Hearths authenticating by dialback (self-signed certificates),
    then by SASL EXTERNAL (certificates from a CA both trust, and nothing
    else accepted); .auth says which."""
    if request.param == "dialback":
        a, b = start_pair(tmp_path)
    else:
        ca = TestCA(tmp_path / "ca")
        a, b = start_pair(tmp_path, with_cert(ca, "a.test", **CERT_ONLY),
                          with_cert(ca, "b.test", **CERT_ONLY))
    a.auth = b.auth = request.param
    try:
        yield a, b
    finally:
        stop_servers(a, b)


def messages_cross(alice, bob, text="hello"):
    """alice@a.test and bob@b.test, logged in, message each other: each
    message arrives, from the other's JID."""
    for sender, receiver, jid, side in ((alice, bob, "bob@b.test", "a"),
                                        (bob, alice, "alice@a.test", "b")):
        sender.send_message(jid, f"{text} from {side}")
        m = receiver.wait_message(timeout=10)
        assert m["body"] == f"{text} from {side}"
        assert m["from"].bare == sender.jid.bare


def exchange(a, b, text="hello"):
    """alice@a.test and bob@b.test (registered here) message each other."""
    alice, bob = a.client("alice"), b.client("bob")
    try:
        messages_cross(alice, bob, text)
    finally:
        alice.disconnect()
        bob.disconnect()


def bounced(a, to, condition):
    """alice@a.test's message to `to` comes back with condition; returns
    how long it took."""
    alice = a.client("alice")
    try:
        start = time.monotonic()
        alice.send_message(to, "anyone?")
        m = alice.wait_message(lambda s: s["type"] == "error", timeout=10)
        assert m["error"]["condition"] == condition
        assert m["from"].bare == to
        return time.monotonic() - start
    finally:
        alice.disconnect()


def test_messages_both_ways(any_pair):
    a, b = any_pair
    alice, bob = a.client("alice"), b.client("bob")
    try:
        messages_cross(alice, bob)
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
    how = ("dialback accepted" if a.auth == "dialback"
           else "authenticated by certificate (SASL EXTERNAL)")
    assert log.count(f"a.test -> b.test: {how}") == 1, log
    if a.auth == "dialback":
        # b's key is checked over a's stream to b, which is up by then
        # (XEP-0220 2.1.3): a connects to b once
        assert "a.test -> b.test: db:verify over this stream" in log, log
        assert log.count("a.test -> b.test: connecting to") == 1, log
    if a.auth == "certificate":  # EXTERNAL both ways, no dialback at all
        a.log_has("b.test authenticated by certificate (SASL EXTERNAL)")
        b.log_has("b.test -> a.test: authenticated by certificate (SASL EXTERNAL)")
        for h in (a, b):
            assert "dialback" not in open(h.s2s.log).read()


def hearthctl_s2s(h):
    """hearthctl s2s on h's hearth.xml: its lines, split at tabs."""
    out = subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c",
                          h.env.config_path, "s2s"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines()]


def test_hearthctl_lists_the_streams(any_pair):
    """hearthctl s2s asks the running s2s for its streams: after messages
    both ways a has one stream out to b.test (ready, authenticated as the
    pair's mode says, over STARTTLS) and b's stream in, for b.test; without
    an s2s, hearthctl says so."""
    a, b = any_pair
    empty = subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c", a.env.config_path,
                            "s2s"], capture_output=True, text=True, timeout=30)
    assert (empty.returncode, empty.stdout) == (0, "") and \
        "no stream to or from other servers" in empty.stderr, empty
    exchange(a, b)
    lines = hearthctl_s2s(a)
    outs = [line for line in lines if line[0] == "out"]
    ins = [line for line in lines if line[0] == "in" and "b.test" in line[2].split(",")]
    assert ["out", "a.test", "b.test", "ready", a.auth, "starttls"] in [o[:6] for o in outs], lines
    assert [i[3:] for i in ins] == [[a.auth, "starttls"]], lines
    b.s2s.stop()  # the router answers for it: nobody serves s2s
    out = subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c",
                          b.env.config_path, "s2s"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "is hearth-s2s running?" in out.stderr, out.stderr


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


def test_subscription_to_an_unreachable_server_comes_back_as_an_error(pair):
    """A subscription request goes out from the bare JID (RFC 6121
    §3.1.2); when the contact's server can't be reached it comes back as a
    presence error to that bare JID, which the sm delivers to the user's
    available sessions."""
    a, _ = pair
    alice = a.client("alice")
    try:
        alice.send_presence()
        alice.send_presence(pto="nobody@down.test", ptype="subscribe")
        p = alice.wait_presence(lambda s: s["type"] == "error", timeout=10)
        assert p["error"]["condition"] == "remote-server-not-found", p
        assert p["from"].bare == "nobody@down.test", p
    finally:
        alice.disconnect()


def test_unserved_subdomain_of_a_local_domain_is_service_unavailable(pair):
    """A group chat or upload address under our own domain, with no
    component bound to it, is a service that does not run here: it is
    answered service-unavailable at once, saying so, and never looked up in
    DNS as another server (which would end remote-server-not-found)."""
    a, _ = pair
    alice = a.client("alice")
    try:
        alice.send_message("room@conference.a.test", "anyone?")
        m = alice.wait_message(lambda s: s["type"] == "error", timeout=10)
        assert m["error"]["condition"] == "service-unavailable", m
        assert m["error"]["text"] == "conference.a.test is not served here: no component is bound to it", m
        answer = alice.iq("<iq type='get' to='upload.a.test'>"
                          "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        assert answer["error"]["condition"] == "service-unavailable", answer
    finally:
        alice.disconnect()
    if a.resolver:  # it logs every answer (debug)
        with open(a.resolver.log) as f:
            assert "conference.a.test" not in f.read()


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


def tls_stream(port, origin, cert=None, key=None):
    """A raw s2s stream from origin to b.test on port, after STARTTLS,
    presenting cert if given; returns (socket, the features after TLS)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    header = HEADER.replace("from='evil.test'", f"from='{origin}'")
    raw.sendall(header.encode())
    assert "starttls" in read_until(raw, "</stream:features>")
    raw.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert "proceed" in read_until(raw, "proceed")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    tls = ctx.wrap_socket(raw, server_hostname="b.test")
    tls.sendall(header.encode())
    return tls, read_until(tls, "</stream:features>")


def spoof_is_refused(tls, bob, sender):
    """A message from sender on the raw stream tls ends it with
    invalid-from, and bob gets nothing."""
    tls.sendall(f"<message from='{sender}' to='bob@b.test' type='chat'>"
                "<body>spoofed</body></message>".encode())
    assert "invalid-from" in read_until(tls, "</stream:stream>")
    tls.close()
    with pytest.raises(AssertionError):
        bob.wait_message(timeout=1)


def test_unverified_from_is_refused(pair):
    """A server that skips dialback (or claims a domain it did not verify)
    gets the stream error invalid-from; nothing reaches the user."""
    _, b = pair
    bob = b.client("bob")
    try:
        tls, _ = tls_stream(b.s2s_port, "evil.test")
        spoof_is_refused(tls, bob, "mallory@a.test")
    finally:
        bob.disconnect()


BAD_XML = {
    "not-well-formed": b"<message><body>x</wrong></message>",
    "restricted-xml": b"<!DOCTYPE x [<!ENTITY e 'e'>]>",
    "policy-violation": b"<message><body>" + b"x" * 270000 + b"</body></message>",
}


@pytest.mark.parametrize("condition", sorted(BAD_XML))
def test_bad_xml_from_a_peer(pair, condition):
    """What another server sends is parsed with the same limits as a
    client's: broken XML, a DTD, a stanza over s2s.max-stanza (256k) end
    the stream with the error RFC 6120 names; the server goes on serving."""
    _, b = pair
    tls, _ = tls_stream(b.s2s_port, "evil.test")
    tls.sendall(BAD_XML[condition])
    assert f"<{condition} " in read_until(tls, "</stream:stream>")
    tls.close()
    tls, features = tls_stream(b.s2s_port, "evil.test")
    assert "dialback" in features
    tls.close()


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


def test_over_ipv6(tmp_path):
    """b.test listens on [::] (IPv6, and IPv4 too); a.test reaches it at
    [::1], b.test reaches a.test over IPv4: messages cross both ways."""
    port_a, port_b = free_port(), free_port()
    a = Hearth(tmp_path / "a", "a.test", port_a, {"b.test": f"[::1]:{port_b}"})
    b = Hearth(tmp_path / "b", "b.test", port_b, {"a.test": f"127.0.0.1:{port_a}"},
               **{"s2s.listen": f"[::]:{port_b}"})
    try:
        a.start()
        b.start()
        exchange(a, b)
        a.log_has(f"a.test -> b.test: connecting to [::1]:{port_b}")
        with socket.create_connection(("127.0.0.1", port_b), timeout=5) as v4:
            v4.sendall(HEADER.encode())
            assert "<starttls" in read_until(v4, "</stream:features>")
    finally:
        stop_servers(a, b)


def subscribe(asker, asker_jid, owner, owner_jid):
    """asker asks owner for a subscription, owner approves; the approval
    and owner's current presence reach asker."""
    asker.send_presence(pto=owner_jid, ptype="subscribe")
    req = owner.wait_presence(lambda s: s["type"] == "subscribe", timeout=10)
    assert req["from"].bare == asker_jid
    owner.send_presence(pto=asker_jid, ptype="subscribed")
    asker.wait_presence(lambda s: s["type"] == "subscribed" and s["from"].bare == owner_jid,
                        timeout=10)
    asker.wait_presence(lambda s: s["from"].bare == owner_jid and s["type"] == "available",
                        timeout=10)


@pytest.mark.skipif(not is_built("resolver"), reason="hearth-resolver is not built")
@pytest.mark.skipif(not os.path.exists(DNSMASQ), reason="dnsmasq is not installed")
def test_federation_through_dns(tmp_path):
    """No static route, no override: a real DNS server (dnsmasq) publishes
    b.test's _xmpps-server (direct TLS, preferred) and _xmpp-server SRV
    records and a.test's _xmpp-server record; each resolver asks it, and
    the messages go a -> b over direct TLS, b -> a over STARTTLS."""
    dns = Dns(tmp_path)
    port_a, port_b = free_port(), free_port()
    b = Hearth(tmp_path / "b", "b.test", port_b, {}, resolver=True,
               **{"resolver.nameserver": f"127.0.0.1:{dns.port}"})
    a = Hearth(tmp_path / "a", "a.test", port_a, {}, resolver=True,
               **{"resolver.nameserver": f"127.0.0.1:{dns.port}"})
    try:
        dns.start(f"--srv-host=_xmpps-server._tcp.b.test,xmpp.b.test,{b.s2s_tls_port},10,0",
                  f"--srv-host=_xmpp-server._tcp.b.test,xmpp.b.test,{port_b},20,0",
                  f"--srv-host=_xmpp-server._tcp.a.test,xmpp.a.test,{port_a},10,0",
                  "--host-record=xmpp.b.test,127.0.0.1",
                  "--host-record=xmpp.a.test,127.0.0.1")
        a.start()
        b.start()
        exchange(a, b)
        a.log_has(f"a.test -> b.test: connecting to 127.0.0.1:{b.s2s_tls_port} (direct TLS)")
        b.log_has(f"b.test -> a.test: connecting to 127.0.0.1:{port_a}")
        assert "b.test -> a.test: connecting to 127.0.0.1:" + f"{port_a} (direct TLS)" \
            not in open(b.s2s.log).read()
    finally:
        stop_servers(a, b)
        dns.stop()


def test_subscription_and_presence(any_pair):
    """RFC 6121 subscriptions across servers, both ways: alice asks and bob
    approves, then bob asks and alice approves; both rosters say 'both';
    each sees the other's presence change, come and go."""
    a, b = any_pair
    alice, bob = a.client("alice"), b.client("bob")
    try:
        subscribe(alice, "alice@a.test", bob, "bob@b.test")
        subscribe(bob, "bob@b.test", alice, "alice@a.test")
        assert alice.roster_get()["bob@b.test"]["subscription"] == "both"
        assert bob.roster_get()["alice@a.test"]["subscription"] == "both"
        bob.send_presence(pstatus="busy", pshow="dnd")
        p = alice.wait_presence(lambda s: s["from"].bare == "bob@b.test" and s["status"] == "busy",
                                timeout=10)
        assert p["type"] == "dnd"
        # a second resource of alice's comes and goes: bob sees both
        alice2 = Client(a.server, "alice@a.test", "pw-secret", resource="phone")
        alice2.connect()
        alice2.send_presence(pstatus="on the phone")
        p = bob.wait_presence(lambda s: s["from"] == "alice@a.test/phone", timeout=10)
        assert p["status"] == "on the phone"
        alice2.disconnect()
        p = bob.wait_presence(lambda s: s["from"] == "alice@a.test/phone", timeout=10)
        assert p["type"] == "unavailable"
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


def test_certificate_per_local_domain(tmp_path, ca):
    """One Hearth serving a.test and a2.test, each with its own certificate
    (s2s/certificate); b.test accepts only valid certificates. Each domain's
    stream presents its own, and SNI picks the right one for b's streams
    back: both users reach bob, and he reaches both."""
    a_cert, a_key = ca.issue("a.test")
    a2_cert, a2_key = ca.issue("a2.test")
    port_a, port_b = free_port(), free_port()
    a = Hearth(tmp_path / "a", "a.test", port_a, {"b.test": f"127.0.0.1:{port_b}"},
               more_domains=["a2.test"], **{"s2s.ca": ca.cert, "s2s.auth": "certificate",
        "s2s.certificate": [{"domain": "a.test", "cert": a_cert, "key": a_key},
                            {"domain": "a2.test", "cert": a2_cert, "key": a2_key}]})
    b = Hearth(tmp_path / "b", "b.test", port_b, {"a.test": f"127.0.0.1:{port_a}",
                                                  "a2.test": f"127.0.0.1:{port_a}"},
               **with_cert(ca, "b.test", **CERT_ONLY))
    try:
        a.start()
        b.start()
        alice, bob = a.client("alice"), b.client("bob")
        carol = Client(a.server, "carol@a2.test", "pw-secret", register=True)
        carol.connect()
        carol.send_presence()
        try:
            for sender, jid in ((alice, "alice@a.test"), (carol, "carol@a2.test")):
                sender.send_message("bob@b.test", f"from {jid}")
                m = bob.wait_message(timeout=10)
                assert (m["from"].bare, m["body"]) == (jid, f"from {jid}")
                bob.send_message(jid, "back")
                assert sender.wait_message(timeout=10)["body"] == "back"
        finally:
            alice.disconnect()
            bob.disconnect()
            carol.disconnect()
        b.log_has("a2.test authenticated by certificate (SASL EXTERNAL)")
        b.log_has("b.test -> a2.test: authenticated by certificate (SASL EXTERNAL)")
    finally:
        stop_servers(a, b)


def test_certificate_required(tmp_path, ca):
    """a.test requires certificates (s2s.auth=certificate); b.test has only
    its self-signed one. a refuses to send to b (b's certificate is not
    valid for b.test) and refuses b's dialback: messages bounce both ways."""
    a, b = start_pair(tmp_path, with_cert(ca, "a.test", **CERT_ONLY))
    try:
        bounced(a, "bob@b.test", "remote-server-not-found")
        bounced(b, "alice@a.test", "remote-server-not-found")
        a.log_has("a.test -> b.test: its certificate is not valid for its domain")
        a.log_has("b.test needs a valid certificate")
    finally:
        stop_servers(a, b)


@pytest.mark.parametrize("a_san,b_san", [(TestCA.XMPPADDR, TestCA.SRV_ID),
                                         (TestCA.SRV_ID, TestCA.XMPPADDR)],
                         ids=["xmppaddr-srv", "srv-xmppaddr"])
def test_certificate_identities(tmp_path, ca, a_san, b_san):
    """A certificate may name its server's domain by an SRV-ID
    (_xmpp-server.DOMAIN) or an XmppAddr instead of a DNS name (RFC 6120
    13.7.1.2): with certificates required on both sides, such certificates
    authenticate both ways by SASL EXTERNAL."""
    a, b = start_pair(tmp_path, with_cert(ca, "a.test", a_san, **CERT_ONLY),
                      with_cert(ca, "b.test", b_san, **CERT_ONLY))
    try:
        exchange(a, b)
        a.log_has("a.test -> b.test: authenticated by certificate (SASL EXTERNAL)")
        b.log_has("b.test -> a.test: authenticated by certificate (SASL EXTERNAL)")
    finally:
        stop_servers(a, b)


@pytest.mark.parametrize("b_san", [
    "otherName:1.3.6.1.5.5.7.8.7;IA5STRING:_xmpp-server.elsewhere.test",
    "otherName:1.3.6.1.5.5.7.8.7;IA5STRING:_xmpp-client.{domain}",
    "otherName:1.3.6.1.5.5.7.8.5;UTF8:elsewhere.test",
    "otherName:1.3.6.1.5.5.7.8.5;UTF8:admin@{domain}",
], ids=["srv-other-domain", "srv-client-service", "xmppaddr-other-domain", "xmppaddr-user"])
def test_certificate_identity_of_something_else(tmp_path, ca, b_san):
    """b.test's certificate names another domain, the client service or a
    user's JID: not b.test, so a, requiring certificates, sends nothing."""
    a, b = start_pair(tmp_path, with_cert(ca, "a.test", **CERT_ONLY),
                      with_cert(ca, "b.test", b_san, **CERT_ONLY))
    try:
        bounced(a, "bob@b.test", "remote-server-not-found")
        a.log_has("a.test -> b.test: its certificate is not valid for its domain")
    finally:
        stop_servers(a, b)


def test_blocked_peer(tmp_path):
    """s2s/peer auth='block': nothing goes to that domain (not-allowed) and
    nothing comes from it (its dialback is answered invalid)."""
    a, b = start_pair(tmp_path, {"s2s.peer": {"domain": "b.test", "auth": "block"}})
    try:
        bounced(a, "bob@b.test", "not-allowed")
        bounced(b, "alice@a.test", "remote-server-not-found")
    finally:
        stop_servers(a, b)


@pytest.mark.skipif(not is_built("resolver"), reason="hearth-resolver is not built")
def test_direct_tls(tmp_path):
    """XEP-0368: the resolver says b.test's server takes TLS from the first
    byte on its s2s.listen-tls port; a connects so (ALPN xmpp-server) and
    the stream works."""
    port_a, port_b = free_port(), free_port()
    b = Hearth(tmp_path / "b", "b.test", port_b, {}, resolver=True, **{
        "resolver.override": {"domain": "a.test", "target": f"127.0.0.1:{port_a}"}})
    a = Hearth(tmp_path / "a", "a.test", port_a, {}, resolver=True, **{
        "resolver.override": {"domain": "b.test", "target": f"127.0.0.1:{b.s2s_tls_port}",
                              "tls": "direct"}})
    try:
        a.start()
        b.start()
        exchange(a, b)
        a.log_has(f"a.test -> b.test: connecting to 127.0.0.1:{b.s2s_tls_port} (direct TLS)")
        a.log_has("a.test -> b.test: dialback accepted")
        # the port agrees on ALPN xmpp-server, then speaks XMPP at once
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["xmpp-server"])
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", b.s2s_tls_port), timeout=5),
                             server_hostname="b.test") as tls:
            assert tls.selected_alpn_protocol() == "xmpp-server"
            tls.sendall(HEADER.encode())
            assert "dialback" in read_until(tls, "</stream:features>")
    finally:
        stop_servers(a, b)


def test_incoming_rate_is_limited(tmp_path):
    """b.test reads a.test's stream at s2s.rate (10 stanzas/s here, 5 at
    once). 25 messages sent at once all arrive, in order; what arrived in
    one read is delivered, and reading then pauses until the debt is paid,
    so the next message arrives no sooner than about 2 s after the first."""
    a, b = start_pair(tmp_path, b_settings={"s2s.rate": "10", "s2s.burst": "5"})
    try:
        exchange(a, b)  # the streams are up: what follows is only the rate
        alice, bob = a.client("alice", register=False), b.client("bob", register=False)
        try:
            time.sleep(1)  # the bucket fills up again (5 tokens at 10/s)
            start = time.monotonic()
            for i in range(25):
                alice.send_message("bob@b.test", f"n{i}")
            got = [bob.wait_message(timeout=15)["body"] for _ in range(25)]
            assert got == [f"n{i}" for i in range(25)]
            alice.send_message("bob@b.test", "after")
            assert bob.wait_message(timeout=15)["body"] == "after"
            took = time.monotonic() - start
            assert 1.5 < took < 12, took  # 21 beyond the burst at 10/s: 2.1 s
        finally:
            alice.disconnect()
            bob.disconnect()
    finally:
        stop_servers(a, b)


def test_queued_bytes_are_limited(tmp_path):
    """While the stream to a silent server is being set up, at most
    s2s.max-queue bytes wait: the stanza beyond comes back at once as
    resource-constraint; those queued time out later."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    a = Hearth(tmp_path / "a", "a.test", free_port(),
               {"silent.test": f"127.0.0.1:{silent.getsockname()[1]}"},
               **{"s2s.max-queue": "3k", "s2s.connect-timeout": "3s"})
    try:
        a.start()
        alice = a.client("alice")
        try:
            for i in range(3):
                alice.send_message("x@silent.test", f"{i} " + "x" * 1000)
            m = alice.wait_message(lambda s: s["type"] == "error", timeout=2)
            assert m["error"]["condition"] == "resource-constraint"
            assert m["body"].startswith("2 ")
            for i in range(2):
                m = alice.wait_message(lambda s: s["type"] == "error", timeout=10)
                assert m["error"]["condition"] == "remote-server-timeout"
                assert m["body"].startswith(f"{i} ")
        finally:
            alice.disconnect()
    finally:
        silent.close()
        a.env.stop_all()


def test_sasl_external_at_the_wire(tmp_path, ca):
    """b.test's side of XEP-0178, byte by byte: EXTERNAL is offered only to
    a peer whose certificate is valid for the stream's from; a wrong
    authorization identity is refused; success lets stanzas through; a
    second stream for the same domain is over s2s.max-connections-per-domain
    (1 here) and ends with resource-constraint; a stanza without a from
    ends the stream with improper-addressing."""
    cert, key = ca.issue("a.test")
    a, b = start_pair(tmp_path, b_settings=with_cert(
        ca, "b.test", **{"s2s.max-connections-per-domain": "1"}))
    bob = b.client("bob")
    try:
        tls, features = tls_stream(b.s2s_port, "a.test")  # no certificate
        assert "EXTERNAL" not in features and "dialback" in features
        tls.close()
        tls, features = tls_stream(b.s2s_port, "other.test", cert, key)
        assert "EXTERNAL" not in features  # a.test's certificate, not other.test's
        tls.close()

        tls, features = tls_stream(b.s2s_port, "a.test", cert, key)
        assert "<mechanism>EXTERNAL</mechanism>" in features, features
        tls.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                    b"b3RoZXIudGVzdA==</auth>")  # other.test
        assert "invalid-authzid" in read_until(tls, "</failure>")
        tls.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                    b"YS50ZXN0</auth>")  # a.test
        assert "<success" in read_until(tls, "/>")
        tls.sendall(HEADER.replace("from='evil.test'", "from='a.test'").encode())
        assert "EXTERNAL" not in read_until(tls, "</stream:features>")
        tls.sendall(b"<message from='alice@a.test' to='bob@b.test' type='chat'>"
                    b"<body>by certificate</body></message>")
        assert bob.wait_message(timeout=10)["body"] == "by certificate"

        second, _ = tls_stream(b.s2s_port, "a.test", cert, key)
        second.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                       b"=</auth>")
        assert "resource-constraint" in read_until(second, "</stream:stream>")
        second.close()
        # a stanza without a from is not addressed as RFC 6120 wants
        tls.sendall(b"<message to='bob@b.test'><body>whose?</body></message>")
        assert "improper-addressing" in read_until(tls, "</stream:stream>")
        tls.close()
    finally:
        bob.disconnect()
        stop_servers(a, b)


def test_wrong_dialback_key_is_refused(pair):
    """A server that claims to be a.test without a.test's key: b asks a.test
    (db:verify), which says invalid; b answers the claim with
    type='invalid' and refuses stanzas from a.test on that stream."""
    a, b = pair
    bob = b.client("bob")
    try:
        tls, _ = tls_stream(b.s2s_port, "a.test")
        tls.sendall(b"<db:result from='a.test' to='b.test'>" + b"0" * 64 + b"</db:result>")
        answer = read_until(tls, "/>", timeout=10)
        assert "type='invalid'" in answer, answer
        spoof_is_refused(tls, bob, "alice@a.test")
    finally:
        bob.disconnect()
