"""hearth-proxy65, the XEP-0065 SOCKS5 bytestreams proxy (components/proxy65/),
end to end: the real router, sm and c2s, the proxy bound at proxy.localhost,
real clients (python3-slixmpp; its xep_0065 plugin for the whole transfer, as
a client uses it) and SOCKS5 spoken over plain sockets for the limits.

Hashes are XEP-0065's DST.ADDR: SHA-1 of SID + requester JID + target JID,
in hex; every client here binds the resource "r", so the JIDs are known."""
import hashlib
import os
import re
import socket
import threading
import time
import urllib.request

import pytest

from hearth_env import BUILDDIR, Server, free_port, log_size, wait_for
from testcomp import Component
from xmpp_client import Client

PROXY = "proxy.localhost"
NS = "http://jabber.org/protocol/bytestreams"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
ALICE, BOB, CAROL = "alice@localhost/r", "bob@localhost/r", "carol@localhost/r"


class Proxy:
    def __init__(self, server, daemon, port):
        self.server, self.daemon, self.port = server, daemon, port
        self.clients = []

    def client(self, name, socks5=False):
        """A logged-in user NAME@localhost/r; with socks5, slixmpp's
        xep_0065 plugin too, accepting every stream offered."""
        c = Client(self.server, f"{name}@localhost", f"pw-{name}", resource="r", register=True)
        if socks5:
            c._call(lambda: c.xmpp.register_plugin("xep_0065", pconfig={"auto_accept": True}))
        self.clients.append(c)
        return c.connect()


@pytest.fixture
def proxy(hearth_env):
    """start(**settings): a Server for localhost with hearth-proxy65
    listening on a free port; returns a Proxy once proxy.localhost is bound."""
    started = []

    def start(**settings):
        port = free_port()
        server = Server(hearth_env, **{"proxy65.listen": f"127.0.0.1:{port}", **settings}).start()
        mark = log_size(server.router.log)
        daemon = hearth_env.start("proxy65")
        server.wait_router_log(f" bound {PROXY}", mark, daemon=daemon)
        p = Proxy(server, daemon, port)
        started.append(p)
        return p

    yield start
    for p in started:
        for c in p.clients:
            c.disconnect()


def dst_addr(sid, requester, target):
    return hashlib.sha1((sid + requester + target).encode()).hexdigest()


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


class Socks5:
    """A SOCKS5 client as XEP-0065 has it: method 0, then CONNECT to the
    domain name address (the hash), port 0. .rep is the reply code."""

    def __init__(self, port, address, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall(b"\x05\x01\x00")
        assert recv_exact(self.sock, 2) == b"\x05\x00"
        addr = address.encode()
        self.sock.sendall(b"\x05\x01\x00\x03" + bytes([len(addr)]) + addr + b"\x00\x00")
        head = recv_exact(self.sock, 4)
        assert head[0] == 5, head
        self.rep = head[1]
        if head[3] == 3:
            self.bound = recv_exact(self.sock, recv_exact(self.sock, 1)[0] + 2)
        else:
            self.bound = recv_exact(self.sock, 6)

    def is_closed(self, timeout=10):
        """The proxy closed the connection within timeout (what it sent
        before is read and dropped)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self):
        self.sock.close()


def pair(proxy, sid, requester=ALICE, target=BOB):
    """The target's connection, then the requester's, for one stream."""
    address = dst_addr(sid, requester, target)
    target_side = Socks5(proxy.port, address)
    requester_side = Socks5(proxy.port, address)
    assert (target_side.rep, requester_side.rep) == (0, 0)
    return requester_side, target_side


def activate(client, sid, target=BOB):
    """The activation IQ's answer: "result" or the error condition."""
    answer = client.iq(f"<iq type='set' to='{PROXY}'><query xmlns='{NS}' sid='{sid}'>"
                       f"<activate>{target}</activate></query></iq>")
    return "result" if answer["type"] == "result" else answer["error"]["condition"]


def relays(sender, receiver, data=b"ping"):
    sender.sock.sendall(data)
    return recv_exact(receiver.sock, len(data)) == data


# ---- the XMPP side --------------------------------------------------------------------


def test_disco_info_names_a_bytestreams_proxy(proxy):
    alice = proxy().client("alice")
    answer = alice.iq(f"<iq type='get' to='{PROXY}'><query xmlns='{DISCO_INFO}'/></iq>")
    assert answer["type"] == "result", answer
    identities = [(i[0], i[1]) for i in answer["disco_info"]["identities"]]
    assert identities == [("proxy", "bytestreams")], answer
    assert NS in answer["disco_info"]["features"], answer


def test_the_streamhost_is_the_listen_address_by_default(proxy):
    p = proxy()
    answer = p.client("alice").iq(f"<iq type='get' to='{PROXY}'><query xmlns='{NS}'/></iq>")
    assert answer["type"] == "result", answer
    host = answer.xml.find(f"{{{NS}}}query/{{{NS}}}streamhost")
    assert host is not None, answer
    assert host.attrib == {"jid": PROXY, "host": "127.0.0.1", "port": str(p.port)}, answer


def test_the_streamhost_is_the_configured_host_and_port(proxy):
    p = proxy(**{"proxy65.host": "files.example.net", "proxy65.port": "7625"})
    answer = p.client("alice").iq(f"<iq type='get' to='{PROXY}'><query xmlns='{NS}'/></iq>")
    host = answer.xml.find(f"{{{NS}}}query/{{{NS}}}streamhost")
    assert host is not None and host.attrib == {
        "jid": PROXY, "host": "files.example.net", "port": "7625"}, answer


# ---- a whole transfer, as clients do it -----------------------------------------------


def test_two_clients_transfer_50_mb_through_the_proxy(proxy):
    p = proxy(**{"proxy65.rate": "0"})
    alice = p.client("alice", socks5=True)
    bob = p.client("bob", socks5=True)
    payload = os.urandom(50 * 1024 * 1024)
    received = hashlib.sha256()
    count = [0]
    closed = threading.Event()

    def on_data(data):
        received.update(data)
        count[0] += len(data)
    bob._call(lambda: bob.xmpp.add_event_handler("socks5_data", on_data))
    bob._call(lambda: bob.xmpp.add_event_handler("socks5_closed", lambda exc: closed.set()))

    async def send():
        # discovery (disco#items of localhost, disco#info, the streamhost
        # query), the offer to bob, both SOCKS5 connections, activation
        sock = await alice.xmpp["xep_0065"].handshake(bob.bound_jid, timeout=20)
        assert sock is not None, "no bytestream"
        view = memoryview(payload)
        for i in range(0, len(payload), 256 * 1024):
            await sock.write(view[i:i + 256 * 1024])
        sock.transport.close()
    alice._await(send(), timeout=120)
    assert closed.wait(120), f"the stream never ended; {count[0]} bytes received"
    assert count[0] == len(payload), f"{count[0]} bytes received of {len(payload)}"
    assert received.hexdigest() == hashlib.sha256(payload).hexdigest()


# ---- activation -----------------------------------------------------------------------


def test_activation_by_another_local_user_is_refused(proxy):
    p = proxy()
    alice, bob = p.client("alice"), p.client("bob")
    requester, target = pair(p, "s1", ALICE, CAROL)
    # bob names alice's sid and target: the hash of his own JID is no stream
    assert activate(bob, "s1", CAROL) == "item-not-found"
    # the stream was alice's all along, and still is
    assert activate(alice, "s1", CAROL) == "result"
    assert relays(requester, target)


def test_activation_of_an_unknown_sid_is_refused(proxy):
    p = proxy()
    alice = p.client("alice")
    known = pair(p, "known")
    assert activate(alice, "unknown") == "item-not-found"
    assert activate(alice, "known") == "result" and relays(*known)


def test_activation_with_one_connection_only_is_not_allowed(proxy):
    p = proxy()
    alice = p.client("alice")
    alone = Socks5(p.port, dst_addr("s1", ALICE, BOB))
    assert alone.rep == 0
    assert activate(alice, "s1") == "not-allowed"


def test_a_remote_servers_user_cannot_activate(proxy):
    """A route from s2s (role s2s) is a stranger's, even with the stream's
    right hash for its from."""
    p = proxy()
    mallory = "mallory@remote.example/x"
    held = pair(p, "s1", mallory, BOB)
    user, password = p.server.router.account("s2s")
    s2s = Component(BUILDDIR, p.server.router.listen, password, "s2s", "s2s default", user=user,
                    logdir=p.server.env.logdir)
    try:
        s2s.expect("ready")
        s2s.cmd(f"send {PROXY} remote.example - <iq type='set' id='m1' from='{mallory}' "
                f"to='{PROXY}'><query xmlns='{NS}' sid='s1'><activate>{BOB}</activate></query></iq>")
        answer = s2s.expect(lambda line: "id='m1'" in line or 'id="m1"' in line)
        assert "type='error'" in answer.replace('"', "'") and "forbidden" in answer, answer
    finally:
        s2s.close()
        for side in held:
            side.close()


def test_a_third_connection_with_the_same_hash_is_refused(proxy):
    p = proxy()
    alice = p.client("alice")
    held = pair(p, "s1")
    third = Socks5(p.port, dst_addr("s1", ALICE, BOB))
    assert third.rep == 2, f"reply {third.rep}, not 2 (connection not allowed by ruleset)"
    assert third.is_closed()
    # the pair is left as it was
    assert activate(alice, "s1") == "result" and relays(*held)


def test_a_connection_for_an_active_stream_is_refused(proxy):
    p = proxy()
    alice = p.client("alice")
    requester, target = pair(p, "s1")
    assert activate(alice, "s1") == "result"
    late = Socks5(p.port, dst_addr("s1", ALICE, BOB))
    assert late.rep == 2, late.rep
    assert relays(requester, target)


# ---- limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["greeting", "request"])
def test_a_connection_never_activated_is_closed_after_idle_timeout(proxy, stage):
    p = proxy(**{"proxy65.idle-timeout": "1s"})
    start = time.monotonic()
    if stage == "greeting":
        conn = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        # nothing sent: the handshake never ends
        assert conn.recv(1) == b""
    else:
        conn = Socks5(p.port, dst_addr("s1", ALICE, BOB))
        assert conn.rep == 0 and conn.is_closed()
    assert time.monotonic() - start >= 0.9, "closed before the idle timeout"


def test_an_active_stream_that_relays_nothing_is_closed_after_idle_timeout(proxy):
    p = proxy(**{"proxy65.idle-timeout": "1s"})
    alice = p.client("alice")
    requester, target = pair(p, "s1")
    assert activate(alice, "s1") == "result"
    # bytes, both ways, keep it open past its timeout ...
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert relays(requester, target)
        assert relays(target, requester)
    quiet_since = time.monotonic()
    # ... silence closes both sides
    assert target.is_closed() and requester.is_closed()
    assert time.monotonic() - quiet_since >= 0.9


def test_a_user_has_at_most_max_streams_per_user_at_once(proxy):
    p = proxy(**{"proxy65.max-streams-per-user": "2"})
    alice, bob = p.client("alice"), p.client("bob")
    first = pair(p, "s1")
    assert activate(alice, "s1") == "result"
    second = pair(p, "s2")
    assert activate(alice, "s2") == "result"
    refused = pair(p, "s3")
    assert activate(alice, "s3") == "resource-constraint"
    assert refused[0].is_closed() and refused[1].is_closed()
    # another user is not counted with alice
    bobs = pair(p, "s4", BOB, ALICE)
    assert activate(bob, "s4", ALICE) == "result"
    assert relays(*second) and relays(*bobs)
    # once one of hers ends, alice may have another
    first[0].close()
    first[1].close()
    sids = iter(range(5, 1000))
    streams = []

    def another():
        sid = f"s{next(sids)}"
        streams.append(pair(p, sid))
        return activate(alice, sid) == "result"
    wait_for(another, "a stream for alice after one of hers ended")


def test_connections_beyond_max_connections_are_closed_at_once(proxy):
    p = proxy(**{"proxy65.max-connections": "2", "proxy65.idle-timeout": "30s"})
    held = [socket.create_connection(("127.0.0.1", p.port), timeout=10) for _ in range(2)]
    for s in held:  # both handshakes answered: both are counted
        s.sendall(b"\x05\x01\x00")
        assert recv_exact(s, 2) == b"\x05\x00"
    start = time.monotonic()
    extra = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    try:
        extra.sendall(b"\x05\x01\x00")
        assert extra.recv(2) == b""
    except ConnectionResetError:
        pass
    assert time.monotonic() - start < 5, "the extra connection was not closed at once"
    held[0].close()

    def room_again():
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        try:
            s.sendall(b"\x05\x01\x00")
            return s.recv(2) == b"\x05\x00"
        except ConnectionResetError:
            return False
        finally:
            s.close()
    wait_for(room_again, "a connection taken once one of the two closed")


def test_a_stream_is_held_to_its_rate(proxy):
    """proxy65.rate 1M: 3 MiB take about 2.9 s (the bucket holds 100 ms
    of the rate); a lower bound only."""
    p = proxy(**{"proxy65.rate": "1M"})
    alice = p.client("alice")
    requester, target = pair(p, "s1")
    assert activate(alice, "s1") == "result"
    size = 3 * 1024 * 1024
    start = time.monotonic()
    sender = threading.Thread(target=requester.sock.sendall, args=(b"x" * size,), daemon=True)
    sender.start()
    assert len(recv_exact(target.sock, size)) == size
    elapsed = time.monotonic() - start
    sender.join(10)
    assert elapsed >= 2.5, f"3 MiB at 1 MiB/s took {elapsed:.2f}s"


def test_metrics_count_connections_streams_and_bytes(proxy):
    metrics_port = free_port()
    p = proxy(**{"proxy65.metrics-listen": f"127.0.0.1:{metrics_port}"})
    alice = p.client("alice")
    requester, target = pair(p, "s1")
    assert activate(alice, "s1") == "result"
    assert relays(requester, target, b"y" * 1000)

    def metric(name):
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            m = re.search(rf"^{name} (\S+)$", r.read().decode(), re.M)
        return float(m.group(1)) if m else None
    assert metric("hearth_proxy65_connections") == 2
    assert metric("hearth_proxy65_streams") == 1
    assert metric("hearth_proxy65_relayed_bytes_total") == 1000
    requester.close()
    target.close()
    wait_for(lambda: metric("hearth_proxy65_streams") == 0, "the stream counted as gone")
