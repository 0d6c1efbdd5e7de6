"""What hearth-s2s trusts, tested from the attacker's side with real
sockets: a peer that claims one of our own domains (in its stream header,
a db:result, a db:verify or SASL EXTERNAL) is refused with invalid-from;
plaintext slipped in behind <starttls/> or <proceed/> is never acted on,
in or out; a peer that stops reading holds at most s2s.max-queue bytes of
ours, and then its stream ends; the remote server's certificate is checked
and reported (hearthctl s2s) even under dialback; the dialback secret can
come from a file, and keys are compared whole (a prefix, a longer key, a
key in capitals are all invalid); what the s2s does for a route depends
on the role the router marked it with, so a mere component gets no
report, sends nothing as the sm's users and answers for no resolver.

The fake servers here are Python sockets speaking raw XMPP, because what
they do (inject plaintext, claim our domain, stop reading) is what no real
server does; the honest side is always a real Hearth."""
import hashlib
import hmac
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from hearth_env import (BUILDDIR, TEST_COMPONENT, TestCA, binary, free_port, is_built,
                        self_signed)
from test_s2s import (HEADER, Hearth, exchange, hearthctl_s2s, messages_cross, start_pair,
                      stop_servers, tls_stream, with_cert)
from testcomp import Component

pytestmark = pytest.mark.skipif(not is_built("s2s"), reason="hearth-s2s is not built")

NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
STARTTLS = f"<starttls xmlns='{NS_TLS}'/>"
PROCEED = f"<proceed xmlns='{NS_TLS}'/>"
STARTTLS_FEATURES = (f"<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls>"
                     "</stream:features>")
DIALBACK_FEATURES = ("<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                     "</stream:features>")
SECRET = "the-dialback-secret of b"


def header(frm, to, stream_id=None):
    """A stream header from frm to to (with an id: a receiving server's)."""
    sid = f" id='{stream_id}'" if stream_id else ""
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            "xmlns:stream='http://etherx.jabber.org/streams' "
            f"xmlns:db='jabber:server:dialback' version='1.0' from='{frm}' to='{to}'{sid}>")


def dialback_key(secret, receiving, originating, stream_id):
    """XEP-0185 as hearth-s2s makes it: hex HMAC-SHA256(SHA256(secret),
    'receiving originating id')."""
    return hmac.new(hashlib.sha256(secret.encode()).digest(),
                    f"{receiving} {originating} {stream_id}".encode(), hashlib.sha256).hexdigest()


def client_tls(sock, cert=None, key=None, server_hostname="b.test"):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx.wrap_socket(sock, server_hostname=server_hostname)


def read_until(sock, text, timeout=5):
    """What sock sends until text (or its end, or timeout: then what came
    so far, so that a failing assertion shows it)."""
    data = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in data:
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = sock.recv(65536)
        except (socket.timeout, ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def nothing_for(bob, seconds=1.5):
    """bob receives no message within seconds."""
    with pytest.raises(AssertionError):
        m = bob.wait_message(timeout=seconds)
        pytest.fail(f"bob got a message he should not have: {m}")


# ---- a peer claiming one of our own domains -----------------------------------

@pytest.fixture
def b_with_ca(tmp_path):
    """b.test (also serving b2.test), trusting a TestCA whose certificates
    an attacker holds too (a misissued certificate for b.test); b's own is
    self-signed. No peer runs: b's route to a.test goes nowhere. The
    sockets a test puts in the last item are closed before b stops (b
    waits for a peer that is still there)."""
    ca = TestCA(tmp_path / "ca")
    b = Hearth(tmp_path / "b", "b.test", free_port(), {"a.test": f"127.0.0.1:{free_port()}"},
               more_domains=["b2.test"], **{"s2s.ca": ca.cert})
    b.start()
    bob = b.client("bob")
    opened = []
    try:
        yield b, ca, bob, opened
    finally:
        for sock in opened:
            sock.close()
        bob.disconnect()
        stop_servers(b)


def ends_with_invalid_from(sock, what):
    got = read_until(sock, "</stream:stream>")
    assert "<invalid-from " in got, f"{what}: no invalid-from stream error; got {got!r}"


@pytest.mark.parametrize("claimed", ["b.test", "B2.Test"])
def test_stream_header_from_our_own_domain(b_with_ca, claimed):
    """A stream that says it comes from b.test (or b2.test, in any case),
    to b.test: invalid-from at once, no features offered."""
    b, _, _, opened = b_with_ca
    raw = socket.create_connection(("127.0.0.1", b.s2s_port), timeout=5)
    opened.append(raw)
    raw.sendall(header(claimed, "b.test").encode())
    got = read_until(raw, "</stream:stream>")
    assert "<invalid-from " in got and "<stream:features>" not in got, got
    b.log_has(f"the stream header claims our own domain {claimed.lower()}")


def test_db_result_for_our_own_domain_with_a_valid_certificate(b_with_ca):
    """A peer with a certificate the CA issued for b.test asks, on a stream
    from evil.test, to send as b.test (db:result from='b.test'): b would
    accept the key on the certificate alone (XEP-0344), and then take
    stanzas from its own users off the wire. It ends with invalid-from;
    the forged message never reaches bob."""
    b, ca, bob, opened = b_with_ca
    cert, key = ca.issue("b.test")
    tls, _ = tls_stream(b.s2s_port, "evil.test", cert, key)
    opened.append(tls)
    tls.sendall(b"<db:result from='b.test' to='b.test'>" + b"0" * 64 + b"</db:result>"
                b"<message from='boss@b.test' to='bob@b.test' type='chat'>"
                b"<body>forged</body></message>")
    ends_with_invalid_from(tls, "db:result from b.test")
    nothing_for(bob)
    b.log_has("db:result claims our own domain b.test")


def test_sasl_external_for_our_own_domain(b_with_ca):
    """A peer opens as evil.test, and after STARTTLS, with a certificate for
    b2.test, restarts the stream as b2.test to use SASL EXTERNAL: refused
    (invalid-from) before EXTERNAL is even offered; nothing from b2.test's
    users is taken."""
    b, ca, bob, opened = b_with_ca
    cert, key = ca.issue("b2.test")
    raw = socket.create_connection(("127.0.0.1", b.s2s_port), timeout=5)
    opened.append(raw)
    raw.sendall(header("evil.test", "b.test").encode())
    read_until(raw, "</stream:features>")
    raw.sendall(STARTTLS.encode())
    read_until(raw, "proceed")
    tls = client_tls(raw, cert, key)
    opened.append(tls)
    tls.sendall(header("b2.test", "b.test").encode())
    got = read_until(tls, "</stream:features>", timeout=2)
    if "<invalid-from " not in got:  # not refused: go on as the attacker would
        try:
            tls.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                        b"mechanism='EXTERNAL'>=</auth>")
            got += read_until(tls, "/>", timeout=2)
            tls.sendall(header("b2.test", "b.test").encode())
            got += read_until(tls, "</stream:features>", timeout=2)
            tls.sendall(b"<message from='boss@b2.test' to='bob@b.test' type='chat'>"
                        b"<body>forged</body></message>")
        except (OSError, ssl.SSLError):
            pass
    assert "<invalid-from " in got and "EXTERNAL" not in got and "<success" not in got, got
    nothing_for(bob)


def test_db_verify_for_our_own_domain(b_with_ca):
    """A db:verify whose asking server (from) is b2.test, one of ours: no
    honest server asks that; invalid-from, no answer."""
    b, _, _, opened = b_with_ca
    tls, _ = tls_stream(b.s2s_port, "evil.test")
    opened.append(tls)
    tls.sendall(b"<db:verify from='b2.test' to='b.test' id='abc'>" + b"0" * 64 +
                b"</db:verify>")
    got = read_until(tls, "</stream:stream>")
    assert "<invalid-from " in got and "<db:verify" not in got, got


# ---- plaintext behind STARTTLS ------------------------------------------------------

def test_plaintext_behind_starttls_is_not_parsed(tmp_path):
    """Incoming: a peer sends <starttls/> and, in the same write, a new
    stream header and a db:result for a.test, in the clear (what a
    man-in-the-middle adds); then it does TLS and goes on honestly. The
    injected db:result must never be acted on: b does not dial back a.test
    (the fake authoritative server sees no connection), and the honest
    stream after TLS gets its features."""
    authoritative = socket.socket()
    authoritative.bind(("127.0.0.1", 0))
    authoritative.listen(5)
    authoritative.settimeout(2)
    b = Hearth(tmp_path / "b", "b.test", free_port(),
               {"a.test": f"127.0.0.1:{authoritative.getsockname()[1]}"})
    raw = tls = None
    try:
        b.start()
        raw = socket.create_connection(("127.0.0.1", b.s2s_port), timeout=5)
        raw.sendall(header("a.test", "b.test").encode())
        assert "starttls" in read_until(raw, "</stream:features>")
        injected = (header("a.test", "b.test") +
                    "<db:result from='a.test' to='b.test'>" + "1" * 64 + "</db:result>")
        raw.sendall((STARTTLS + injected).encode())  # one write, one segment
        assert PROCEED in read_until(raw, "proceed")
        tls = client_tls(raw)
        tls.sendall(header("a.test", "b.test").encode())
        features = read_until(tls, "</stream:features>")
        try:
            conn, _ = authoritative.accept()
            conn.close()
            pytest.fail("b dialed back a.test for the db:result injected in the clear "
                        "behind <starttls/>")
        except socket.timeout:
            pass
        assert "dialback for a.test -> b.test" not in open(b.s2s.log).read()
        assert "<dialback " in features, f"the honest stream after TLS: {features!r}"
    finally:
        for sock in (tls, raw, authoritative):
            if sock:
                sock.close()
        stop_servers(b)


def test_dialback_checks_waiting_are_bounded(tmp_path):
    """A peer without a valid certificate asks b to check db:results for
    domains whose (silent) server b must dial: one check per domain pair
    at a time (a second db:result for the same pair is invalid at once),
    and at most 4 waiting per stream (the fifth ends it with
    policy-violation). So one stream cannot make b open connections to a
    third party without end."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(20)
    silent.settimeout(5)
    target = f"127.0.0.1:{silent.getsockname()[1]}"
    claimed = [f"c{i}.test" for i in range(1, 6)]
    b = Hearth(tmp_path / "b", "b.test", free_port(), {d: target for d in claimed},
               **{"s2s.connect-timeout": "30s"})
    raw = tls = None
    dialed = []
    try:
        b.start()
        raw = socket.create_connection(("127.0.0.1", b.s2s_port), timeout=5)
        raw.sendall(header("evil.test", "b.test").encode())
        read_until(raw, "</stream:features>")
        raw.sendall(STARTTLS.encode())
        assert PROCEED in read_until(raw, "proceed")
        tls = client_tls(raw)
        tls.sendall(header("evil.test", "b.test").encode())
        read_until(tls, "</stream:features>")

        def ask(domain):
            tls.sendall(f"<db:result from='{domain}' to='b.test'>{'1' * 64}</db:result>".encode())

        ask("c1.test")
        dialed.append(silent.accept()[0])
        ask("c1.test")
        got = read_until(tls, "type='invalid'")
        assert "from='b.test' to='c1.test' type='invalid'" in got, got
        for domain in claimed[1:4]:
            ask(domain)
            dialed.append(silent.accept()[0])
        ask("c5.test")
        got = read_until(tls, "</stream:stream>")
        assert "<policy-violation " in got, f"a fifth waiting check: {got!r}"
        silent.settimeout(0.5)
        with pytest.raises(socket.timeout):
            dialed.append(silent.accept()[0])
        assert len(dialed) == 4
    finally:
        for sock in (tls, raw, silent, *dialed):
            if sock:
                sock.close()
        stop_servers(b)


class FakeRemote:
    """A remote server for domain, in a thread: each connection from a.test
    runs script(self, sock) (sock the accepted socket). What the scripts
    note goes to .events; a script's exception to .errors. SO_RCVBUF
    rcvbuf, when given, keeps what it does not read in a.test's queue
    rather than in the kernel's."""

    def __init__(self, tmpdir, domain, script, rcvbuf=None):
        self.domain = domain
        self.script = script
        self.cert, self.key = self_signed(tmpdir, domain)
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(20)
        self.port = self.sock.getsockname()[1]
        self.events, self.errors, self.conns = [], [], []
        self.done = threading.Event()  # the test is over: scripts may end
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.run, args=(conn,), daemon=True).start()

    def run(self, conn):
        try:
            self.script(self, conn)
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            if not self.done.is_set():
                self.done.wait(30)
            conn.close()

    def starttls(self, conn, after_proceed=""):
        """The receiving server's side up to TLS (STARTTLS required); what
        after_proceed holds follows <proceed/> in the same write, in the
        clear. Returns the TLS socket."""
        read_until(conn, f"to='{self.domain}'>")
        conn.sendall((header(self.domain, "a.test", "plain") + STARTTLS_FEATURES).encode())
        assert STARTTLS in read_until(conn, STARTTLS), "no <starttls/> from a.test"
        conn.sendall((PROCEED + after_proceed).encode())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        tls = ctx.wrap_socket(conn, server_side=True)
        self.conns.append(tls)  # kept open (not collected) until close()
        return tls

    def dialback(self, tls, stream_id="real"):
        """After TLS: the stream header with stream_id, dialback offered;
        a.test's db:result is noted (its key) and answered valid."""
        got = read_until(tls, f"to='{self.domain}'>")
        assert "<stream:stream" in got, f"no stream header over TLS: {got!r}"
        tls.sendall((header(self.domain, "a.test", stream_id) + DIALBACK_FEATURES).encode())
        got = read_until(tls, "</db:result>")
        assert "</db:result>" in got, f"no db:result from a.test over TLS: {got!r}"
        key = got.split("</db:result>")[0].rsplit(">", 1)[-1]
        self.events.append(("key", key))
        tls.sendall(f"<db:result from='{self.domain}' to='a.test' type='valid'/>".encode())

    def close(self):
        self.done.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def test_plaintext_behind_proceed_is_not_parsed(tmp_path):
    """Outgoing: fake.test's server answers a.test's <starttls/> with
    <proceed/> and, in the same write, in the clear, a new stream header
    with its own id, features and a db:result type='valid'. a.test must
    drop all of it: it does the TLS handshake, reads the real stream
    header sent over TLS, sends a dialback key made for that stream's id
    (not the injected one), and only then sends alice's message."""
    injected = (header("fake.test", "a.test", "injected") + DIALBACK_FEATURES +
                "<db:result from='fake.test' to='a.test' type='valid'/>")

    def script(fake, conn):
        tls = fake.starttls(conn, after_proceed=injected)
        fake.dialback(tls, "real")
        got = read_until(tls, "</message>")
        fake.events.append(("message", got))

    fake = FakeRemote(tmp_path, "fake.test", script)
    a = Hearth(tmp_path / "a", "a.test", free_port(), {"fake.test": f"127.0.0.1:{fake.port}"},
               **{"s2s.dialback-secret": SECRET})
    try:
        a.start()
        alice = a.client("alice")
        try:
            alice.send_message("bob@fake.test", "over TLS")
            deadline = time.monotonic() + 10
            while not any(e[0] == "message" for e in fake.events) and not fake.errors:
                assert time.monotonic() < deadline, f"nothing reached fake.test: {fake.events}"
                time.sleep(0.05)
        finally:
            alice.disconnect()
        assert not fake.errors, f"a.test's stream after the injection: {fake.errors}"
        keys = [e[1] for e in fake.events if e[0] == "key"]
        assert keys == [dialback_key(SECRET, "fake.test", "a.test", "real")], \
            f"a.test's key is not for the real stream id: {keys}"
        message = [e[1] for e in fake.events if e[0] == "message"][0]
        assert "over TLS" in message, message
    finally:
        fake.close()
        stop_servers(a)


# ---- a peer that stops reading ----------------------------------------------------------

def test_peer_that_stops_reading_loses_its_stream(tmp_path):
    """slow.test's server authenticates a.test's stream, takes one message
    and then reads nothing more. alice goes on writing (16 KiB messages):
    once s2s.max-queue (256k) bytes wait in the stream's queue, the stream
    ends and the message that did not fit comes back to alice as
    remote-server-timeout; a.test stays up and serves alice."""
    first = threading.Event()

    def script(fake, conn):
        tls = fake.starttls(conn)
        fake.dialback(tls)
        read_until(tls, "</message>")
        first.set()  # and read no more

    fake = FakeRemote(tmp_path, "slow.test", script, rcvbuf=4096)
    a = Hearth(tmp_path / "a", "a.test", free_port(), {"slow.test": f"127.0.0.1:{fake.port}"},
               **{"s2s.max-queue": "256k", "c2s.rate": "1000", "c2s.burst": "1000"})
    try:
        a.start()
        alice = a.client("alice")
        try:
            alice.send_message("bob@slow.test", "first")
            assert first.wait(10), f"slow.test got no first message: {fake.errors}"
            error = None
            for i in range(400):
                alice.send_message("bob@slow.test", f"{i} " + "x" * 16384)
                if i % 20 == 19:
                    try:
                        error = alice.wait_message(lambda s: s["type"] == "error", timeout=0.3)
                        break
                    except AssertionError:
                        pass
            if error is None:
                error = alice.wait_message(lambda s: s["type"] == "error", timeout=5)
            assert error["error"]["condition"] == "remote-server-timeout", \
                f"the first bounce: {error['error']['condition']}"
            a.log_has("a.test -> slow.test: the peer does not read")
            alice.send_message("alice@a.test", "still here")
            alice.wait_message(lambda m: m["body"] == "still here", timeout=10)
        finally:
            alice.disconnect()
        assert a.s2s.proc.poll() is None
    finally:
        fake.close()
        stop_servers(a)


def test_peer_that_never_reads_its_answers_is_cut_off(tmp_path):
    """A peer sends db:verify requests by the thousand and reads none of
    the answers: past s2s.max-queue (64k) bytes of answers waiting, b cuts
    the stream."""
    b = Hearth(tmp_path / "b", "b.test", free_port(), {}, **{"s2s.max-queue": "64k"})
    raw = tls = None
    try:
        b.start()
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(5)
        raw.connect(("127.0.0.1", b.s2s_port))
        raw.sendall(HEADER.encode())
        read_until(raw, "</stream:features>")
        raw.sendall(STARTTLS.encode())
        read_until(raw, "proceed")
        tls = client_tls(raw)
        tls.sendall(HEADER.encode())
        read_until(tls, "</stream:features>")
        # long ids: each answer repeats its id, so 100 requests make 400k
        # of answers (the kernel's buffers take some MB first)
        chunk = "".join(f"<db:verify from='evil.test' to='b.test' id='{i:04}{'i' * 4000}'>"
                        f"{'0' * 64}</db:verify>" for i in range(100)).encode()
        cut = False
        for _ in range(50):  # 5000 answers, 20 MB
            try:
                tls.sendall(chunk)
            except (OSError, ssl.SSLError):
                cut = True
                break
            if "the peer does not read" in open(b.s2s.log).read():
                cut = True
                break
        assert cut, "b still writes to a peer that reads nothing"
        b.log_has("the peer does not read")
        assert b.s2s.proc.poll() is None
    finally:
        for sock in (tls, raw):
            if sock:
                sock.close()
        stop_servers(b)


# ---- the remote server's certificate, under dialback -------------------------------------

def test_remote_certificate_is_checked_and_reported_under_dialback(tmp_path):
    """a.test has a certificate from a CA both trust, b.test a self-signed
    one; both accept dialback. Each checks the other's certificate on its
    stream out anyway, and hearthctl s2s says so in the last column: a's
    stream to b shows invalid (and was allowed: dialback), b's to a valid."""
    ca = TestCA(tmp_path / "ca")
    a, b = start_pair(tmp_path, with_cert(ca, "a.test"), {"s2s.ca": ca.cert})
    try:
        exchange(a, b)
        for h, local, remote, cert in ((a, "a.test", "b.test", "invalid"),
                                       (b, "b.test", "a.test", "valid")):
            lines = hearthctl_s2s(h)
            outs = [line for line in lines
                    if line[:3] == ["out", local, remote] and line[3] == "ready"]
            assert len(outs) == 1, lines
            assert len(outs[0]) == 8, f"no CERT column: {outs}"
            assert outs[0][7] == cert, f"{local} -> {remote}: {outs[0]}"
        a.log_has("a.test -> b.test: the peer's certificate is not valid for its domain "
                  "(allowed under dialback)")
        b.log_has("b.test -> a.test: the peer's certificate is valid for its domain")
    finally:
        stop_servers(a, b)


# ---- the dialback secret, from a file --------------------------------------------------

def test_dialback_secret_from_a_file(tmp_path):
    """s2s.dialback-secret-file holds the secret (its first line): b
    warns at start that the file is readable by others, and answers a
    db:verify valid only for the key made from that secret, whole: not a
    prefix of it, nor it with more after, nor in capitals, nor with its last
    digit changed."""
    secret_file = tmp_path / "dialback.secret"
    secret_file.write_text(SECRET + "\nnot the secret\n")
    os.chmod(secret_file, 0o644)
    b = Hearth(tmp_path / "b", "b.test", free_port(), {},
               **{"s2s.dialback-secret-file": str(secret_file)})
    tls = None
    try:
        b.start()
        b.log_has(f"{secret_file}: a secret readable by group or others")
        good = dialback_key(SECRET, "x.test", "b.test", "s1")
        last = "0" if good[-1] != "0" else "1"
        cases = {"right": (good, "valid"), "prefix": (good[:63], "invalid"),
                 "longer": (good + "0", "invalid"), "capitals": (good.upper(), "invalid"),
                 "last digit": (good[:63] + last, "invalid"), "empty": ("", "invalid")}
        tls, _ = tls_stream(b.s2s_port, "x.test")
        for name, (key, expected) in cases.items():
            tls.sendall(f"<db:verify from='x.test' to='b.test' id='s1'>{key}</db:verify>"
                        .encode())
            got = read_until(tls, "/>")
            assert f"type='{expected}'" in got, f"{name} key: {got!r}"
    finally:
        if tls:
            tls.close()
        stop_servers(b)


@pytest.mark.parametrize("problem", ["both", "missing", "empty"])
def test_dialback_secret_file_problems_stop_the_s2s(tmp_path, problem):
    """Both the inline secret and the file, a file that is not there, an
    empty file: hearth-s2s stops at start and says why."""
    secret_file = tmp_path / "dialback.secret"
    if problem != "missing":
        secret_file.write_text("" if problem == "empty" else SECRET)
        os.chmod(secret_file, 0o600)
    settings = {"s2s.dialback-secret-file": str(secret_file)}
    if problem == "both":
        settings["s2s.dialback-secret"] = SECRET
    b = Hearth(tmp_path / "b", "b.test", free_port(), {}, **settings)
    try:
        out = subprocess.run([binary("s2s"), "-c", b.env.config_path], capture_output=True,
                             text=True, timeout=10)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hearth-s2s started with the {problem} secret file: {e.stdout}")
    why = {"both": "both s2s.dialback-secret and s2s.dialback-secret-file are set",
           "missing": "cannot open: No such file or directory", "empty": ": empty"}[problem]
    assert out.returncode != 0 and why in out.stdout + out.stderr, \
        f"exit {out.returncode}: {out.stdout}{out.stderr}"


# ---- what a component may ask of s2s ------------------------------------------------------

def component(h, name):
    """A component on h's router, with the tests' component account (role
    component), bound to name."""
    c = Component(BUILDDIR, h.server.router.listen, h.env.password, name, name,
                  user=TEST_COMPONENT, logdir=h.env.logdir)
    c.expect("ready")
    return c


@pytest.fixture
def pair_up(tmp_path):
    """a.test and b.test with their streams up (alice and bob exchanged
    messages)."""
    a, b = start_pair(tmp_path)
    try:
        exchange(a, b)
        yield a, b
    finally:
        stop_servers(a, b)


def test_component_gets_no_report(pair_up):
    """The streams list (hearthctl s2s) is for the admin role: a component
    that asks gets forbidden, not the list, and the refusal is logged;
    hearthctl s2s still gets it."""
    a, _ = pair_up
    bot = component(a, "bot.a.test")
    try:
        bot.cmd("send s2s bot.a.test - <iq xmlns='jabber:client' type='get' id='r1'>"
                "<s2s xmlns='urn:hearth:admin:1'/></iq>")
        answer = bot.expect("<route ")
        assert "<forbidden " in answer and "<out " not in answer, answer
        a.log_has("bot.a.test (role component) may not send the hearthctl s2s request")
    finally:
        bot.close()
    assert ["out", "a.test", "b.test", "ready"] in [line[:4] for line in hearthctl_s2s(a)]


def test_component_cannot_send_as_a_user(pair_up):
    """A component routes to b.test a message from alice@a.test: only the
    sm speaks for a.test's users, so s2s drops it and bob gets nothing;
    alice's own messages still go."""
    a, b = pair_up
    bob = b.client("bob", register=False)
    bot = component(a, "bot.a.test")
    try:
        bot.cmd("send b.test bot.a.test alice@a.test <message xmlns='jabber:client' "
                "from='alice@a.test' to='bob@b.test' type='chat'><body>forged</body></message>")
        nothing_for(bob, 2)
        a.log_has("bot.a.test (role component) may not send stanzas for remote servers")
        alice = a.client("alice", register=False)
        try:
            messages_cross(alice, bob, "honest")
        finally:
            alice.disconnect()
    finally:
        bot.close()
        bob.disconnect()


@pytest.mark.skipif(not is_built("resolver"), reason="hearth-resolver is not built")
def test_component_cannot_answer_for_the_resolver(tmp_path):
    """While a.test's s2s waits for the resolver (its nameserver never
    answers) to find far.test, a component sends s2s a <resolved/> for that
    request pointing at a server of its own: ignored (only the resolver
    role answers), nothing connects there, and alice's message comes back
    when the wait times out."""
    silent_dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent_dns.bind(("127.0.0.1", 0))
    hijack = socket.socket()
    hijack.bind(("127.0.0.1", 0))
    hijack.listen(5)
    hijack.settimeout(1.5)
    a = Hearth(tmp_path / "a", "a.test", free_port(), {}, resolver=True,
               **{"resolver.nameserver": f"127.0.0.1:{silent_dns.getsockname()[1]}",
                  "s2s.connect-timeout": "5s"})
    bot = None
    try:
        a.start()
        alice = a.client("alice")
        try:
            alice.send_message("x@far.test", "where?")
            a.log_has("a.test -> far.test: resolving")
            bot = component(a, "bot.a.test")
            bot.cmd("send s2s bot.a.test - <resolved xmlns='urn:hearth:resolver:1' id='1' "
                    f"domain='far.test'><target host='far.test' port='{hijack.getsockname()[1]}' "
                    "tls='starttls' addr='127.0.0.1'/></resolved>")
            try:
                conn, _ = hijack.accept()
                conn.close()
                pytest.fail("a.test's s2s took a component's <resolved/> and connected to it")
            except socket.timeout:
                pass
            a.log_has("bot.a.test (role component) may not send resolver answers")
            m = alice.wait_message(lambda st: st["type"] == "error", timeout=10)
            assert m["error"]["condition"] == "remote-server-timeout", m
        finally:
            alice.disconnect()
    finally:
        if bot:
            bot.close()
        hijack.close()
        silent_dns.close()
        stop_servers(a)
