"""End-to-end tests of hearth-c2s: streams, TLS, SASL, registration,
binding, limits and bad input, against the real router, sm and c2s, with
python3-slixmpp (xmpp_client.Client) as the client. Every test runs on
SQLite and on PostgreSQL (the server fixture takes storage_driver).

A few tests speak raw XML over a socket (class Raw) where the point is
what the server says to a client that a real library would never be: one
that skips STARTTLS, sends garbage, or opens a stream for another host.

Two c2s processes: Server(c2s=2) gives each instance a private port
besides the shared one (see hearth_env.Server), so a test puts a client on
each deterministically.
"""
import re
import socket
import ssl
import time

import pytest

from hearth_env import wait_for
from xmpp_client import Client, ClientError

PASSWORD = "correct horse"


def login(server, user, password=PASSWORD, register=True, **kw):
    """A connected client for user@localhost, registered first."""
    return Client(server, f"{user}@localhost", password, register=register, **kw).connect()


def register(server, user, password=PASSWORD):
    login(server, user, password).disconnect()


def assert_chat_works(server, a="bystander1", b="bystander2", clients=None):
    """Two clients (new ones unless given) can still exchange a message."""
    x, y = clients or (login(server, a), login(server, b))
    try:
        x.send_message(y.bound_jid, "still there?")
        msg = y.wait_message(lambda m: m["body"] == "still there?")
        assert str(msg["from"]) == x.bound_jid
    finally:
        if not clients:
            x.disconnect()
            y.disconnect()


class Raw:
    """A client that writes XML by hand and reads what comes back."""

    def __init__(self, server, port=None, direct_tls=False):
        self.sock = socket.create_connection((server.host, port or server.port), timeout=5)
        if direct_tls:
            self._wrap()
        self.data = ""

    def _wrap(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def send(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def read_until(self, pattern, timeout=5):
        """Read until the text received so far matches pattern (a regex);
        return the match. Fails with what was received."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.data, re.S)
            if m:
                self.data = self.data[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout}s; received {self.data!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise AssertionError(f"closed before {pattern!r}; received {self.data!r}")
            self.data += chunk.decode(errors="replace")

    def is_closed(self, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return True
            if not chunk:
                return True
            self.data += chunk.decode(errors="replace")
        return False

    def open(self, to="localhost", ns="jabber:client"):
        """Send a stream header; return the features element's text."""
        self.send(f"<?xml version='1.0'?><stream:stream to='{to}' xmlns='{ns}' "
                  "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        return self.read_until(r"<stream:features>.*?</stream:features>")[0]

    def starttls(self):
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(r"<proceed[^>]*/>")
        self._wrap()
        self.data = ""
        return self.open()

    def stream_error(self, timeout=5):
        """The condition of the stream error received, after which the
        server must close."""
        m = self.read_until(r"<stream:error><([a-z-]+)", timeout)
        assert self.is_closed(), "the server did not close the stream after its error"
        return m[1]

    def close(self):
        self.sock.close()


def plain(user, password):
    import base64
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


# ---- TLS ----------------------------------------------------------------------

def test_starttls_required_before_authentication(server):
    raw = Raw(server)
    features = raw.open()
    assert "<required/>" in features and "starttls" in features, features
    assert "mechanisms" not in features, f"mechanisms offered before TLS: {features}"
    raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain('a', 'b')}</auth>")
    assert raw.read_until(r"<failure[^>]*><([a-z-]+)/>")[1] == "encryption-required"


def test_client_without_tls_cannot_log_in(server):
    register(server, "alice")
    with pytest.raises(ClientError):
        Client(server, "alice@localhost", PASSWORD, starttls=False, timeout=3).connect()


@pytest.mark.server(**{"c2s.require-tls": "false"})
def test_plain_is_offered_only_inside_tls(server):
    raw = Raw(server)
    features = raw.open()
    assert "<mechanism>SCRAM-SHA-256</mechanism>" in features, features
    assert "PLAIN" not in features and "-PLUS" not in features, features
    features = raw.starttls()
    assert "<mechanism>PLAIN</mechanism>" in features, features


def test_direct_tls_login(server):
    register(server, "alice")
    c = Client(server, "alice@localhost", PASSWORD, direct_tls=True).connect()
    assert c.bound_jid.startswith("alice@localhost/")
    c.disconnect()


def test_direct_tls_alpn(server):
    """XEP-0368: the direct TLS port agrees on the ALPN protocol
    'xmpp-client' with a client that offers it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["xmpp-client"])
    with ctx.wrap_socket(socket.create_connection((server.host, server.tls_port), timeout=5),
                         server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "xmpp-client"


def test_certificate_is_generated_for_the_domain(server):
    c = login(server, "alice", verify=True)  # verifies server.cert_path for "localhost"
    c.disconnect()


# ---- SASL -------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                                       "SCRAM-SHA-1", "PLAIN"])
def test_login_with_each_mechanism(server, mechanism):
    register(server, "alice")
    c = Client(server, "alice@localhost", PASSWORD, mechanism=mechanism).connect()
    assert c.bound_jid.startswith("alice@localhost/")
    c.disconnect()


def test_scram_plus_with_tls_unique_on_tls_1_2(server):
    register(server, "alice")
    c = Client(server, "alice@localhost", PASSWORD, mechanism="SCRAM-SHA-256-PLUS",
               tls_max="1.2").connect()
    assert c.bound_jid.startswith("alice@localhost/")
    c.disconnect()


def test_channel_binding_types_are_advertised(server):
    raw = Raw(server)
    raw.open()
    features = raw.starttls()
    assert "<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in features, features
    assert re.search(r"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding "
                     r"type='tls-exporter'/>", features), features


def test_wrong_password_is_not_authorized(server):
    register(server, "alice")
    with pytest.raises(ClientError) as e:
        Client(server, "alice@localhost", "wrong", mechanism="SCRAM-SHA-256").connect()
    assert e.value.condition == "not-authorized"


def test_unknown_user_is_not_authorized(server):
    with pytest.raises(ClientError) as e:
        Client(server, "nobody@localhost", PASSWORD).connect()
    assert e.value.condition == "not-authorized"


@pytest.mark.server(**{"c2s.auth-burst": "1"})
def test_repeated_failures_are_delayed_then_the_stream_closes(server):
    register(server, "alice")
    raw = Raw(server)
    raw.open()
    raw.starttls()
    auth = f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain('alice', 'bad')}</auth>"
    times = []
    for _ in range(5):  # c2s.auth-failures defaults to 5
        start = time.monotonic()
        raw.send(auth)
        assert raw.read_until(r"<failure[^>]*><([a-z-]+)/>", timeout=15)[1] == "not-authorized"
        times.append(time.monotonic() - start)
    assert times[1] >= 0.4, f"the second failure was not delayed: {times}"
    assert times[2] > times[1], f"the delay does not grow: {times}"
    assert raw.stream_error() == "policy-violation"


# ---- registration -------------------------------------------------------------------

def test_registration_creates_an_account(server):
    register(server, "alice")
    rows = server.env.sql("SELECT owner, sha256_iter FROM auth")
    assert [tuple(map(str, r)) for r in rows] == [("alice@localhost", "4096")]


def test_duplicate_registration_is_a_conflict(server):
    register(server, "alice")
    with pytest.raises(ClientError) as e:
        login(server, "alice", "another")
    assert e.value.condition == "conflict"


@pytest.mark.server(**{"c2s.registration": "false"})
def test_registration_off_is_service_unavailable(server):
    raw = Raw(server)
    raw.open()
    features = raw.starttls()
    assert "iq-register" not in features, features
    raw.send("<iq type='get' id='r1'><query xmlns='jabber:iq:register'/></iq>")
    m = raw.read_until(r"<iq[^>]*id='r1'.*?</iq>")
    assert "type='error'" in m[0] and "<service-unavailable" in m[0], m[0]
    with pytest.raises(ClientError) as e:
        login(server, "alice")
    assert e.value.condition == "service-unavailable"


def test_registration_form_asks_username_and_password(server):
    raw = Raw(server)
    raw.open()
    features = raw.starttls()
    assert "<register xmlns='http://jabber.org/features/iq-register'/>" in features, features
    raw.send("<iq type='get' id='r1'><query xmlns='jabber:iq:register'/></iq>")
    m = raw.read_until(r"<iq[^>]*id='r1'.*?</iq>")
    assert "type='result'" in m[0] and "<username/>" in m[0] and "<password/>" in m[0], m[0]


# ---- binding ----------------------------------------------------------------------------

def test_bind_with_a_chosen_resource(server):
    c = login(server, "alice", resource="phone")
    assert c.bound_jid == "alice@localhost/phone"
    c.disconnect()


def test_clean_logout_is_logged(server):
    c = login(server, "alice", resource="phone")
    c.disconnect()
    deadline = time.monotonic() + 5
    while True:
        with open(server.c2s[0].log) as f:
            if re.search(r": alice@localhost/phone logged out \(", f.read()):
                break
        assert time.monotonic() < deadline, f"no logout line in the c2s log\n{server.c2s[0].log_tail()}"
        time.sleep(0.05)


def test_bind_without_a_resource_gets_one_generated(server):
    c = login(server, "alice")
    bare, _, resource = c.bound_jid.partition("/")
    assert bare == "alice@localhost" and len(resource) >= 8, c.bound_jid
    c.disconnect()


def test_legacy_session_iq_is_answered(server):
    c = login(server, "alice")
    answer = c.iq("<iq type='set' to='localhost'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
    assert answer["type"] == "result", str(answer)
    c.disconnect()


def test_session_feature_is_optional(server):
    register(server, "alice")
    raw = Raw(server)
    raw.open()
    raw.starttls()
    raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain('alice', PASSWORD)}</auth>")
    raw.read_until(r"<success[^>]*/>")
    raw.data = ""
    features = raw.open()
    assert "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in features, features
    assert "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>" in features


def test_resource_conflict_ends_the_older_stream(server):
    old = login(server, "alice", resource="desk")
    new = login(server, "alice", register=False, resource="desk")
    assert new.bound_jid == "alice@localhost/desk"
    assert old.wait_disconnected(5), "the older session is still connected"
    assert old.stream_error == "conflict"
    new.disconnect()


def test_bind_when_the_sm_does_not_answer_is_internal_server_error(server):
    register(server, "alice")
    # what the session left stored first (its end, the login time): an sm
    # stopped in the middle of a SQLite commit would hold the store's lock,
    # and the c2s could not read the keys either (docs/reliability.md)
    wait_for(lambda: server.env.sql(
        "SELECT 1 FROM auth JOIN last_activity USING (owner) "
        "WHERE owner = 'alice@localhost' AND last_login IS NOT NULL"),
        "the sm stored alice's login time and last activity")
    server.sm.proc.send_signal(19)  # SIGSTOP: the sm is there but silent
    try:
        with pytest.raises(ClientError) as e:
            Client(server, "alice@localhost", PASSWORD, timeout=10).connect()
        assert e.value.condition == "internal-server-error"
    finally:
        server.sm.proc.send_signal(18)  # SIGCONT
    login(server, "alice", register=False).disconnect()


PING = "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"


def wait_c2s_log(server, text):
    def seen():
        with open(server.c2s[0].log, errors="replace") as f:
            return text in f.read()
    wait_for(seen, f"c2s logging {text!r}")


@pytest.mark.server(**{"c2s.hold-time": "1s"})
def test_sm_going_away_keeps_its_streams_and_past_hold_time_answers_service_unavailable(server):
    c = login(server, "alice")
    server.sm.stop()
    wait_c2s_log(server, "went away")
    answer = c.iq(PING, timeout=5)  # held, then answered when hold-time is over
    assert answer["type"] == "error" and answer["error"]["condition"] == "service-unavailable"
    assert not c.disconnected.is_set(), f"disconnected: {c.stream_error}"
    server.start_sm()
    assert c.iq(PING)["type"] == "result"
    c.disconnect()


@pytest.mark.server(**{"c2s.hold-max": "2k"})
def test_what_the_c2s_holds_for_an_absent_sm_is_bounded_by_hold_max(server):
    alice, bob = login(server, "alice"), login(server, "bob")
    server.sm.stop()
    wait_c2s_log(server, "went away")
    for i in range(20):
        alice.send_message(bob.bound_jid, f"{i:02d} " + "x" * 200)
    refused = alice.wait_message(lambda m: m["type"] == "error", timeout=5)
    assert refused["error"]["condition"] == "service-unavailable"
    server.start_sm()
    first = bob.wait_message(lambda m: m["body"].startswith("00 "), timeout=10)
    assert first, "what was held before the limit is delivered"
    assert not alice.disconnected.is_set() and not bob.disconnected.is_set()
    alice.disconnect()
    bob.disconnect()


# ---- stanzas after binding ------------------------------------------------------------------

def test_chat_between_two_clients(server):
    alice, bob = login(server, "alice"), login(server, "bob")
    alice.send_message(bob.bound_jid, "hello bob")
    msg = bob.wait_message(lambda m: m["body"] == "hello bob")
    assert str(msg["from"]) == alice.bound_jid
    alice.disconnect()
    bob.disconnect()


def raw_session(server, user, header_extra=""):
    """A Raw client logged in as user (registered first) and bound, whose
    stream header after authentication adds header_extra (namespace
    declarations); returns it and its full JID."""
    register(server, user)
    raw = Raw(server)
    raw.open()
    raw.starttls()
    raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
             f"{plain(user, PASSWORD)}</auth>")
    raw.read_until(r"<success[^>]*(/>|</success>)")
    raw.send("<stream:stream to='localhost' xmlns='jabber:client' "
             f"xmlns:stream='http://etherx.jabber.org/streams' {header_extra} version='1.0'>")
    raw.read_until(r"</stream:features>")
    raw.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             "<resource>raw</resource></bind></iq>")
    return raw, raw.read_until(r"<jid>([^<]+)</jid>")[1]


def test_a_stanza_arrives_whole_whatever_namespaces_its_sender_declared(server):
    """The c2s forwards a client's stanza as its bytes unless a prefix in it
    may be declared outside it (here on the stream header): those are
    serialized from their tree. Either way the recipient gets the same
    stanza, stamped with the sender's full JID, and the links behind the
    c2s (which would break on an unbound prefix) carry on."""
    bob = login(server, "bob")
    raw, alice = raw_session(server, "alice", "xmlns:x='urn:example:x'")
    sent = [
        ("one", "{urn:example:x}thing",
         f"<message to='{bob.bound_jid}' type='chat'><body>one</body><x:thing/></message>"),
        ("two & A", None, f"<message xmlns='jabber:client' to='{bob.bound_jid}' type='chat'>"
                          "<body>two &amp; &#x41;</body></message>"),
        ("<three>", None, f'<message to="{bob.bound_jid}" type="chat" from="alice@localhost">'
                          "<body><![CDATA[<three>]]></body></message>"),
        ("four", "{urn:example:y}z", f"<message to='{bob.bound_jid}' type='chat'>"
                                     "<y:z xmlns:y='urn:example:y'/><body>four</body></message>"),
        ("five", None, f"<message to='{bob.bound_jid}' type='chat' x:attr='v'>"
                       "<body>five</body></message>"),
    ]
    for body, child, xml in sent:
        raw.send(xml)
        msg = bob.wait_message(lambda m, body=body: m["body"] == body)
        assert str(msg["from"]) == alice
        assert child is None or msg.xml.find(child) is not None, str(msg)
    assert_chat_works(server)
    bob.disconnect()


@pytest.mark.server(**{"c2s.idle-release": "1s"})
def test_quiet_clients_chat_on_after_their_parser_is_released(server):
    alice, bob = login(server, "alice"), login(server, "bob")
    time.sleep(2.5)  # both quiet past c2s.idle-release: their parsers are given back
    alice.send_message(bob.bound_jid, "after a quiet while")
    msg = bob.wait_message(lambda m: m["body"] == "after a quiet while")
    assert str(msg["from"]) == alice.bound_jid
    time.sleep(2.5)
    bob.send_message(alice.bound_jid, "and again")
    assert alice.wait_message(lambda m: m["body"] == "and again")
    alice.disconnect()
    bob.disconnect()


def test_server_pings_and_keeps_a_live_client(server):
    server.write_config(**{"c2s.ping-interval": "1s", "c2s.idle-timeout": "2s"})
    for d in server.c2s:
        d.restart()
    c = login(server, "alice")
    ping = c.wait_iq(lambda s: s["type"] == "get" and s.xml.find("{urn:xmpp:ping}ping") is not None,
                     timeout=5)
    assert str(ping["from"]) == "localhost"
    time.sleep(3)
    assert not c.disconnected.is_set(), f"a client answering pings was cut: {c.stream_error}"
    c.disconnect()


@pytest.mark.server(**{"c2s.idle-timeout": "1s"})
def test_idle_connection_times_out(server):
    raw = Raw(server)
    raw.open()
    assert raw.stream_error(timeout=5) == "connection-timeout"


def test_whitespace_keepalive_is_accepted(server):
    c = login(server, "alice")
    c.send_raw(" \n ")
    assert c.iq("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")["type"] == "result"
    c.disconnect()


def test_message_from_is_stamped_with_the_full_jid(server):
    alice, bob = login(server, "alice"), login(server, "bob")
    alice.send_raw(f"<message to='{bob.bound_jid}' from='alice@localhost' type='chat'><body>hi</body></message>")
    msg = bob.wait_message(lambda m: m["body"] == "hi")
    assert str(msg["from"]) == alice.bound_jid
    alice.disconnect()
    bob.disconnect()


# ---- bad input --------------------------------------------------------------------------------

@pytest.fixture
def bystanders(server):
    """Two logged-in clients that must not notice what a bad one does."""
    a, b = login(server, "bystander1"), login(server, "bystander2")
    yield a, b
    a.disconnect()
    b.disconnect()


def test_malformed_xml_is_not_well_formed(server, bystanders):
    bad = login(server, "mallory")
    bad.send_raw("<message><body>unclosed</message>")
    assert bad.wait_disconnected(5)
    assert bad.stream_error == "not-well-formed"
    assert_chat_works(server, clients=bystanders)


def test_oversized_stanza_is_a_policy_violation(server, bystanders):
    bad = login(server, "mallory")
    bad.send_raw(f"<message to='{bystanders[0].bound_jid}'><body>{'x' * 300000}</body></message>")
    assert bad.wait_disconnected(5)
    assert bad.stream_error == "policy-violation"
    assert_chat_works(server, clients=bystanders)


def test_spoofed_from_is_invalid_from(server, bystanders):
    bad = login(server, "mallory")
    bad.send_raw(f"<message to='{bystanders[0].bound_jid}' from='{bystanders[1].bound_jid}'><body>"
                 "it is me</body></message>")
    assert bad.wait_disconnected(5)
    assert bad.stream_error == "invalid-from"
    time.sleep(0.3)
    assert not [m for m in bystanders[0].received if m.name == "message" and m["body"] == "it is me"]
    assert_chat_works(server, clients=bystanders)


def test_iq_without_id_is_bad_request(server, bystanders):
    bad = login(server, "mallory")
    bad.send_raw("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    err = bad.wait_iq(lambda s: s["type"] == "error")
    assert err["error"]["condition"] == "bad-request"
    assert not bad.disconnected.is_set()
    assert_chat_works(server, clients=bystanders)


def test_restricted_xml_is_refused(server, bystanders):
    bad = login(server, "mallory")
    bad.send_raw("<!-- a comment --><message/>")
    assert bad.wait_disconnected(5)
    assert bad.stream_error == "restricted-xml"
    assert_chat_works(server, clients=bystanders)


def test_unserved_domain_is_host_unknown(server):
    raw = Raw(server)
    raw.send("<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    assert raw.stream_error() == "host-unknown"


def test_wrong_namespace_is_invalid_namespace(server):
    raw = Raw(server)
    raw.send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:server' "
             "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    assert raw.stream_error() == "invalid-namespace"


def test_stanza_before_authentication_is_not_authorized(server):
    raw = Raw(server)
    raw.open()
    raw.starttls()
    raw.send("<message to='alice@localhost'><body>hi</body></message>")
    assert raw.stream_error() == "not-authorized"


# ---- limits -------------------------------------------------------------------------------------

@pytest.mark.server(**{"c2s.max-connections-per-ip": "2"})
def test_connections_per_address_are_limited(server):
    a, b = login(server, "alice"), login(server, "bob")
    with pytest.raises(ClientError) as e:
        login(server, "carol")
    assert e.value.condition == "policy-violation"
    a.disconnect()
    b.disconnect()


@pytest.mark.server(**{"c2s.rate": "10", "c2s.burst": "5"})
def test_fast_sender_is_slowed_not_cut(server):
    alice, bob = login(server, "alice"), login(server, "bob")
    start = time.monotonic()
    for i in range(30):
        alice.send_message(bob.bound_jid, f"m{i}")
    for i in range(30):
        bob.wait_message(lambda m, i=i: m["body"] == f"m{i}", timeout=10)
    elapsed = time.monotonic() - start
    assert elapsed >= 1.5, f"30 stanzas at 10/s (burst 5) took only {elapsed:.2f}s"
    assert not alice.disconnected.is_set()
    alice.disconnect()
    bob.disconnect()


# ---- storage down ---------------------------------------------------------------------------

def test_database_down_gives_temporary_auth_failure(server, database_down):
    register(server, "alice")
    with database_down():
        with pytest.raises(ClientError) as e:
            Client(server, "alice@localhost", PASSWORD, mechanism="SCRAM-SHA-256").connect()
        assert e.value.condition == "temporary-auth-failure"
    deadline = time.monotonic() + 15
    while True:  # the driver reconnects by itself
        try:
            login(server, "alice", register=False).disconnect()
            break
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_database_down_fails_registration_with_internal_server_error(server, database_down):
    with database_down():
        with pytest.raises(ClientError) as e:
            login(server, "alice")
        assert e.value.condition == "internal-server-error"


# ---- several c2s processes -----------------------------------------------------------------

@pytest.mark.server(c2s=2)
def test_two_users_on_two_c2s_processes_chat(server):
    alice = login(server, "alice", port=server.c2s_ports[0])
    bob = login(server, "bob", port=server.c2s_ports[1])
    alice.send_message(bob.bound_jid, "across processes")
    assert bob.wait_message(lambda m: m["body"] == "across processes")
    bob.send_message(alice.bound_jid, "and back")
    assert alice.wait_message(lambda m: m["body"] == "and back")
    with open(server.c2s[0].log) as f1, open(server.c2s[1].log) as f2:
        assert "alice@localhost" in f1.read() and "bob@localhost" in f2.read()
    alice.disconnect()
    bob.disconnect()


@pytest.mark.server(c2s=2)
def test_shared_port_serves_both_processes(server):
    register(server, "alice")
    clients = [Client(server, "alice@localhost", PASSWORD, resource=f"r{i}").connect()
               for i in range(12)]
    logs = [open(d.log).read() for d in server.c2s]
    for c in clients:
        c.disconnect()
    assert all(" bound " in log for log in logs), "SO_REUSEPORT sent every client to one process"


# ---- the supervisor -----------------------------------------------------------------------------

def test_supervisor_starts_c2s_processes_with_instance_ids(hearth_env):
    import os
    import subprocess
    from hearth_env import BUILDDIR, free_port
    hearthd = os.path.join(BUILDDIR, "tools", "hearthd")
    port, tls_port = free_port(), free_port()
    hearth_env.write_config(**{
        "supervisor.daemon": ["router", "sm", "c2s"], "c2s.processes": "2",
        "c2s.listen": f"127.0.0.1:{port}", "c2s.listen-tls": f"127.0.0.1:{tls_port}",
        "c2s.registration": "true"})
    logdir = os.path.join(hearth_env.statedir, "log")
    hearth_env.logs += [os.path.join(logdir, n) for n in ("hearthd.log", "c2s-1.log", "c2s-2.log")]

    def run(*args):
        p = subprocess.run([hearthd, "-c", hearth_env.config_path, *args], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=60)
        return p.returncode, p.stdout + p.stderr
    try:
        status, out = run("start")
        assert status == 0, out
        deadline = time.monotonic() + 10
        while True:
            status, out = run("status")
            if status == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert re.search(r"^c2s-1: running", out, re.M) and re.search(r"^c2s-2: running", out, re.M), out

        class Where:  # what Client needs of a Server
            host, cert_path = "127.0.0.1", os.path.join(hearth_env.statedir, "tls", "localhost.pem")
        Where.port, Where.tls_port = port, tls_port
        deadline = time.monotonic() + 10
        router_log = os.path.join(logdir, "router.log")
        while True:  # the sm and both c2s come up in the background
            with open(router_log) as f:
                text = f.read()
            if all(f" bound {n}" in text for n in ("localhost", "c2s-1", "c2s-2")):
                break
            assert time.monotonic() < deadline, f"not all bound at the router:\n{text}"
            time.sleep(0.2)
        c = Client(Where, "alice@localhost", PASSWORD, register=True).connect()
        assert c.bound_jid.startswith("alice@localhost/")
        c.disconnect()
    finally:
        status, out = run("stop")
        assert status == 0, out
