"""STARTTLS plaintext injection (CVE-2011-0411's kind), from the attacker's
side: bytes written in the clear right behind <starttls/>, in the same TCP
segment, as a man in the middle would add them. They must never be taken
as part of the encrypted stream. Here for c2s (an injected registration
would create an account) and for the router (an injected SASL exchange
would be answered); s2s in and out are in test_s2s_trust.py.

After TLS each test carries on honestly and checks that the server acts on
what came through TLS only."""
import os
import re
import socket
import ssl
import time

import pytest

from hearth_env import Router, self_signed
from test_c2s import Raw
from test_c2s_limits import b64, scram_final

STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
CLIENT_HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
                 b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def register_iq(user, iq_id):
    return (f"<iq type='set' id='{iq_id}'><query xmlns='jabber:iq:register'>"
            f"<username>{user}</username><password>pw</password></query></iq>").encode()


def test_c2s_ignores_plaintext_behind_starttls(server):
    raw = Raw(server)
    try:
        raw.open()
        raw.send(STARTTLS + CLIENT_HEADER + register_iq("injected", "evil"))  # one segment
        raw.read_until(r"<proceed[^>]*/>")
        raw._wrap()
        raw.data = ""
        features = raw.open()
        assert "<mechanisms" in features, features
        raw.send(register_iq("honest", "good"))
        answer = raw.read_until(r"<iq[^>]*id='(evil|good)'[^>]*")
        assert answer[1] == "good", f"the injected registration was answered: {answer[0]}"
        assert "type='result'" in answer[0], answer[0]
    finally:
        raw.close()
    owners = [r[0] for r in server.env.sql("SELECT owner FROM auth")]
    assert owners == ["honest@localhost"], owners


# ---- the router -------------------------------------------------------------------

COMPONENT_HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='urn:hearth:component:1' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' to='router' from='comp'>")
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def read_until(sock, pattern, timeout=5):
    data, deadline = b"", time.monotonic() + timeout
    while not re.search(pattern, data):
        left = deadline - time.monotonic()
        assert left > 0, f"no {pattern!r} within {timeout}s; got {data!r}"
        sock.settimeout(left)
        chunk = sock.recv(65536)
        assert chunk, f"closed before {pattern!r}; got {data!r}"
        data += chunk
    return data.decode(errors="replace")


def scram_login(sock, user, password):
    """SCRAM-SHA-256 (RFC 7677) by hand; the router's answer: success or
    failure."""
    first_bare = f"n={user},r={b64(os.urandom(18))}"
    sock.sendall(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>"
                 f"{b64('n,,' + first_bare)}</auth>".encode())
    got = read_until(sock, rb"</challenge>|<failure")
    m = re.search(r"<challenge[^>]*>([^<]*)</challenge>", got)
    assert m, f"no challenge: {got!r}"
    sock.sendall(f"<response xmlns='{NS_SASL}'>{scram_final(first_bare, m[1], password)}"
                 "</response>".encode())
    return read_until(sock, rb"<success|<failure")


def test_router_ignores_plaintext_behind_starttls(hearth_env, tmp_path):
    cert, key = self_signed(tmp_path, "router")
    hearth_env.write_config(**{"router.tls": {"cert": cert, "key": key},
                               "router.require-tls": "true"})
    router = hearth_env.add(Router(hearth_env))
    router.start()
    sock = socket.create_connection(("127.0.0.1", router.port), timeout=5)
    tls = None
    try:
        sock.sendall(COMPONENT_HEADER)
        assert "<starttls" in read_until(sock, rb"</stream:features>")
        # An injected stream and a SASL start that can only fail: if it were
        # parsed, the router would end the stream with not-authorized.
        injected = COMPONENT_HEADER + (f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>"
                                       "bm90LXNjcmFt</auth>").encode()
        sock.sendall(STARTTLS + injected)
        read_until(sock, rb"<proceed[^>]*/>")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        tls = ctx.wrap_socket(sock, server_hostname="router")
        tls.sendall(COMPONENT_HEADER)
        features = read_until(tls, rb"</stream:features>")
        assert "SCRAM-SHA-256" in features, features
        outcome = scram_login(tls, router.user, router.password)
        assert "<success" in outcome, f"the honest login after TLS: {outcome!r}"
        tls.sendall(b"<bind name='honest.example'/>")
        assert "error" not in read_until(tls, rb"<bind[^>]*/>")
    finally:
        (tls or sock).close()
    assert "not-authorized" not in open(router.log).read()
