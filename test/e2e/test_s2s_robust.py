"""hearth-s2s against servers that misbehave: hundreds of streams, in and
out, each a random mix of valid and broken steps (dialback and SASL out of
order, forged addresses, STARTTLS at odd times, truncated and oversized
elements, garbage, abrupt closes). Whatever arrives, the s2s stays up,
answers with stream errors, leaks nothing (a sanitizer build's daemons are
checked at exit) and goes on carrying honest traffic.

The mix is drawn from a seed printed in the assertion messages;
HEARTH_S2S_SEED replays one."""
import os
import random
import socket
import ssl
import threading
import time

import pytest

from hearth_env import free_port, is_built, self_signed
from test_s2s import HEADER, Hearth, messages_cross, read_until, start_pair, stop_servers

pytestmark = pytest.mark.skipif(not is_built("s2s"), reason="hearth-s2s is not built")

SEED = int(os.environ.get("HEARTH_S2S_SEED") or time.time())
DOMAINS = ["a.test", "b.test", "evil.test", "", "b.test/res", "@b.test", "a.test\u00e9",
           "x" * 1100]


def client_tls(sock, hostname):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(sock, server_hostname=hostname)


def nibble(sock, seconds):
    """Read whatever comes within seconds, if anything."""
    try:
        sock.settimeout(seconds)
        sock.recv(65536)
    except (OSError, ssl.SSLError):
        pass


def incoming_element(rng):
    """One element a remote server might send on its stream to b.test."""
    frm, to = rng.choice(DOMAINS), rng.choice(DOMAINS)
    key = rng.choice(["", "abc", "0" * 64, "<x/>"])
    return rng.choice([
        f"<db:result from='{frm}' to='{to}'>{key}</db:result>",
        f"<db:result from='{frm}' to='{to}' type='valid'/>",
        f"<db:verify from='{frm}' to='{to}' id='{rng.choice(['', 'x', '1' * 40])}'>{key}</db:verify>",
        f"<db:verify from='{frm}' to='{to}' id='x' type='valid'/>",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
        f"{rng.choice(['', '=', 'YS50ZXN0', 'ZXZpbC50ZXN0', '!!'])}</auth>",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AAAA</auth>",
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        f"<message from='u@{frm}' to='bob@{to}'><body>x</body></message>",
        f"<presence from='u@{frm}' to='bob@{to}' type='{rng.choice(['probe', 'subscribe', ''])}'/>",
        f"<iq from='{frm}' to='{to}' type='{rng.choice(['get', 'set', 'result', 'x'])}' id='1'>"
        "<query xmlns='jabber:iq:version'/></iq>",
        "<message><body>no address</body></message>",
        "<foo:bar xmlns:foo='urn:x'/>",
        "<stream:features/>",
        "</stream:stream>",
        "<",
        "<message from='a.test' to='b.test'><body>" + "y" * rng.choice([10, 70000, 300000]) +
        "</body></message>",
        "\x00\xff",
        "<?xml version='1.0'?>",
        "<!-- a comment -->",
    ])


def incoming_session(rng, port, tls_port):
    """One stream to b.test's s2s (STARTTLS or direct TLS port)."""
    direct = rng.random() < 0.2
    header = rng.choice([
        HEADER.replace("from='evil.test'", f"from='{rng.choice(DOMAINS)}'"),
        HEADER.replace("to='b.test'", "to='nope.test'"),
        HEADER.replace("jabber:server", "jabber:client"),
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>",
        "<stream xmlns='http://etherx.jabber.org/streams'>",
        "garbage"])
    try:
        s = socket.create_connection(("127.0.0.1", tls_port if direct else port), timeout=2)
        if direct:
            s = client_tls(s, "b.test")
        s.sendall(header.encode())
        for _ in range(rng.randint(0, 8)):
            element = incoming_element(rng)
            data = element.encode(errors="replace")
            if rng.random() < 0.1:
                data = data[:rng.randint(0, len(data))]
            s.sendall(data)
            if "starttls" in element and not direct and rng.random() < 0.7:
                read_until(s, "proceed", timeout=0.5)
                s = client_tls(s, "b.test")
                direct = True
                s.sendall(header.encode())
            if rng.random() < 0.3:
                nibble(s, 0.05)
        if rng.random() < 0.5:
            nibble(s, 0.2)
        s.close()
    except (OSError, ssl.SSLError):
        pass  # b may end the stream at any point: that is the point


def test_incoming_streams_that_misbehave(tmp_path):
    rng = random.Random(SEED)
    a, b = start_pair(tmp_path)
    try:
        alice, bob = a.client("alice"), b.client("bob")
        messages_cross(alice, bob, "before")
        for _ in range(300):
            incoming_session(rng, b.s2s_port, b.s2s_tls_port)
        assert b.s2s.proc.poll() is None, f"b's s2s died (seed {SEED})"
        messages_cross(alice, bob, "after")  # on the streams up all along
        alice.disconnect()
        bob.disconnect()
    finally:
        stop_servers(a, b)


EVIL_HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
               "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
               "version='1.0' from='evil.test' to='a.test' id='{id}'>")


def evil_reply(rng):
    """One element a remote server might answer a.test's stream with."""
    return rng.choice([
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
        "</starttls></stream:features>",
        "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>",
        "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
        "<mechanism>EXTERNAL</mechanism></mechanisms></stream:features>",
        "<stream:features/>",
        "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
        f"<db:result from='evil.test' to='a.test' type='{rng.choice(['valid', 'invalid', ''])}'/>",
        f"<db:result from='{rng.choice(['a.test', 'x.test', ''])}' to='a.test' type='valid'/>",
        "<db:verify from='evil.test' to='a.test' id='zz' type='valid'/>",
        "<message from='u@evil.test' to='alice@a.test'><body>on the wrong stream</body></message>",
        "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        "</stream:stream>",
        EVIL_HEADER.format(id=rng.choice(["x", "", "y" * 2000])),
        "<<<>>>",
        "<a>" * 600,
        "z" * rng.choice([10, 100000]),
    ])


class EvilServer:
    """Listens for a.test's streams to evil.test and answers each with a
    random mix of evil_reply()s, STARTTLS included."""

    def __init__(self, tmpdir, seed):
        self.rng = random.Random(seed)
        self.cert, self.key = self_signed(tmpdir, "evil.test")
        self.sock = socket.socket()
        self.port = free_port()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(50)
        self.streams = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.streams += 1
            seed = self.rng.random()
            threading.Thread(target=self.answer, args=(conn, random.Random(seed)),
                             daemon=True).start()

    def answer(self, conn, rng):
        s = conn
        try:
            nibble(s, 1)
            if rng.random() < 0.9:
                s.sendall(EVIL_HEADER.format(id="abc").encode())
            for _ in range(rng.randint(0, 6)):
                reply = evil_reply(rng)
                data = reply.encode()
                if rng.random() < 0.1:
                    data = data[:rng.randint(0, len(data))]
                s.sendall(data)
                if "proceed" in reply and s is conn and rng.random() < 0.8:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(self.cert, self.key)
                    s = ctx.wrap_socket(conn, server_side=True)
                    nibble(s, 1)
                    s.sendall(EVIL_HEADER.format(id="tls").encode())
                nibble(s, 1)
            if rng.random() < 0.5:
                time.sleep(rng.random())
        except (OSError, ssl.SSLError):
            pass
        finally:
            s.close()

    def close(self):
        self.sock.close()


def test_outgoing_streams_to_a_server_that_misbehaves(tmp_path):
    """alice keeps writing to evil.test, whose server answers a.test's
    streams with nonsense: every stream ends, a new one starts for the next
    message, and a.test keeps serving alice."""
    rng = random.Random(SEED)
    evil = EvilServer(str(tmp_path), SEED)
    a = Hearth(tmp_path / "a", "a.test", free_port(), {"evil.test": f"127.0.0.1:{evil.port}"},
               **{"s2s.idle-timeout": "1s"})
    try:
        a.start()
        alice = a.client("alice")
        for i in range(150):
            alice.send_message(f"u{i % 7}@evil.test", "x" * rng.choice([1, 5000]))
            time.sleep(0.08)
        # A stream the peer leaves hanging (it says <proceed/> and does no
        # TLS: what it adds in the clear is dropped) ends at connect-timeout,
        # 2 s: in 12 s at least 6 streams come and go.
        assert evil.streams >= 6, f"only {evil.streams} streams to evil.test (seed {SEED})"
        assert a.s2s.proc.poll() is None, f"a's s2s died (seed {SEED})"
        alice.send_message("alice@a.test", "still here")
        assert alice.wait_message(lambda m: m["body"] == "still here", timeout=10)
        alice.disconnect()
    finally:
        evil.close()
        stop_servers(a)
