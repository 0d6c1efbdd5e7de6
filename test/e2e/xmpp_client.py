"""xmpp_client — a real XMPP client (python3-slixmpp) for synchronous tests.

slixmpp is asyncio-based; a Client runs its own event loop in a thread and
offers blocking calls with timeouts, so a test reads top to bottom:

    alice = Client(server, "alice@localhost", "pw", register=True).connect()
    bob = Client(server, "bob@localhost", "pw", register=True).connect()
    alice.send_message("bob@localhost", "hi")
    assert bob.wait_message()["body"] == "hi"

Client(server, jid, password, resource=None, register=False, mechanism=None,
       direct_tls=False, starttls=True, port=None, tls_max=None, timeout=10)
    server     a hearth_env.Server (gives host, ports, certificate)
    register   create the account with XEP-0077 before logging in
    mechanism  the SASL mechanism to use ("SCRAM-SHA-256-PLUS", "PLAIN", ...);
               None: the best one both sides offer
    direct_tls XEP-0368: TLS from the first byte, on server.tls_port
    starttls   False: never STARTTLS (to test that the server insists)
    port       another port (server.c2s_ports[i] picks one c2s instance)
    tls_max    "1.2" caps the TLS version (channel binding tls-unique)

connect() returns once the session started (resource bound) or raises
ClientError whose .condition says why: the SASL failure ("not-authorized"),
the registration error ("conflict", "service-unavailable"), the stream error
("policy-violation"), "disconnected", or "timeout".

Every message, presence and IQ received is kept in .received (slixmpp
stanza objects, in order); wait_message/wait_presence/wait_iq return the
first matching one not returned before. A stream error the server sends is
kept in .stream_error (its condition), and .disconnected is set when the
connection is gone.

The server's certificate is not verified unless verify=True (then it must be
server.cert_path, valid for the domain). Channel binding data for the -PLUS
mechanisms come from the TLS session: tls-unique on TLS 1.2 (Python's ssl),
tls-exporter on TLS 1.3 (RFC 9266, read through OpenSSL's
SSL_export_keying_material with ctypes, since Python's ssl module has no
call for it).
"""
import asyncio
import ctypes
import ctypes.util
import logging
import ssl
import sys
import threading
import time
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Iq, Message, Presence, StreamFeatures
from slixmpp.util.sasl import mechanisms as sasl_mechanisms

log = logging.getLogger("xmpp_client")


class ClientError(AssertionError):
    def __init__(self, condition, text=""):
        super().__init__(f"{condition}{': ' + text if text else ''}")
        self.condition = condition


# ---- channel binding ----------------------------------------------------------

_libssl = None


def tls_exporter(ssl_object):
    """RFC 9266 tls-exporter: 32 bytes of the TLS exporter with label
    EXPORTER-Channel-Binding and no context, or None if unavailable."""
    global _libssl
    if _libssl is None:
        _libssl = ctypes.CDLL(ctypes.util.find_library("ssl") or "libssl.so.3")
        _libssl.SSL_export_keying_material.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
        _libssl.SSL_get_version.argtypes = [ctypes.c_void_p]
        _libssl.SSL_get_version.restype = ctypes.c_char_p
    # CPython's PySSLSocket: PyObject_HEAD, PyObject *Socket, SSL *ssl.
    sslobj = ssl_object._sslobj
    ptr = ctypes.c_void_p.from_address(id(sslobj) + sys.getsizeof(object()) + ctypes.sizeof(ctypes.c_void_p))
    if not ptr.value or _libssl.SSL_get_version(ptr.value).decode() != ssl_object.version():
        return None
    out = ctypes.create_string_buffer(32)
    label = b"EXPORTER-Channel-Binding"
    if _libssl.SSL_export_keying_material(ptr.value, out, 32, label, len(label), None, 0, 0) != 1:
        return None
    return out.raw


def channel_binding(ssl_object):
    """(type, data) for the TLS session, or (None, None)."""
    if ssl_object is None:
        return None, None
    if ssl_object.version() == "TLSv1.3":
        data = tls_exporter(ssl_object)
        return ("tls-exporter", data) if data else (None, None)
    return "tls-unique", ssl_object.get_channel_binding("tls-unique")


# slixmpp's SCRAM always names tls-unique in the GS2 header; name the type
# the credentials carry instead (tls-exporter on TLS 1.3).
_scram_process_1 = sasl_mechanisms.SCRAM.process_1


def _scram_process_1_cb_type(self, challenge):
    msg = _scram_process_1(self, challenge)
    cb_type = self.credentials.get("cb_type", b"")
    if cb_type and cb_type != b"tls-unique" and self.gs2_header.startswith(b"p=tls-unique"):
        self.gs2_header = b"p=" + cb_type + self.gs2_header[len(b"p=tls-unique"):]
        self.client_first_message = self.gs2_header + self.client_first_message_bare
        return self.client_first_message
    return msg


sasl_mechanisms.SCRAM.process_1 = _scram_process_1_cb_type


# ---- the client -----------------------------------------------------------------

def _parse_stanza(text):
    """A stanza written as XML text, in the jabber:client namespace."""
    return ET.fromstring(f"<wrap xmlns='jabber:client'>{text}</wrap>")[0]


class Client:
    def __init__(self, server, jid, password, resource=None, register=False, mechanism=None,
                 direct_tls=False, starttls=True, port=None, tls_max=None, verify=False,
                 timeout=10):
        self.server = server
        self.jid = slixmpp.JID(jid)
        if resource:
            self.jid.resource = resource
        self.password = password
        self.register = register
        self.mechanism = mechanism
        self.direct_tls = direct_tls
        self.starttls = starttls
        self.port = port or (server.tls_port if direct_tls else server.port)
        self.tls_max = tls_max
        self.verify = verify
        self.timeout = timeout
        self.received = []  # every message, presence and iq, in order
        self.stream_error = None  # condition of a stream error received
        self.auth_failure = None  # condition of a SASL failure received
        self.register_error = None  # condition of a registration error
        self.bound_jid = None  # full JID after the session started
        self.disconnected = threading.Event()
        self._taken = set()
        self._cond = threading.Condition()
        self._started = threading.Event()
        self._failed = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"client {jid}")
        self._thread.start()
        self.xmpp = self._call(self._make)

    # -- the loop thread

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _call(self, fn, *args):
        """Run fn(*args) on the loop thread; return its result."""
        async def wrap():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(self.timeout)

    def _await(self, coro, timeout=None):
        """Run a coroutine on the loop thread; return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout or self.timeout)

    def _make(self):
        x = slixmpp.ClientXMPP(str(self.jid), self.password, sasl_mech=self.mechanism)
        x.register_plugin("xep_0030")
        x.register_plugin("xep_0199")  # answers the server's pings
        x.whitespace_keepalive = False
        # slixmpp holds stanzas back until the session starts; registration
        # (and tests of what the server does before that) need them sent.
        x._always_send_everything = True
        ctx = ssl.create_default_context()
        if self.verify:
            ctx.load_verify_locations(self.server.cert_path)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.tls_max == "1.2":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        x.ssl_context = ctx
        x.ca_certs = self.server.cert_path if self.verify else None
        x.get_ssl_context = lambda: ctx
        mechs = x["feature_mechanisms"]
        mechs.sasl_callback = self._credentials
        mechs.unencrypted_plain = True  # let tests see the server refuse it
        if self.register:
            x.register_plugin("xep_0077")
            # Ask for the form even when the server offers no register
            # feature (to see its error). slixmpp's force_registration
            # misses TLS sockets of asyncio, so do it here.
            x.add_filter("in", self._force_register_feature)
            x.add_event_handler("register", self._on_register)
            plugin_get = x["xep_0077"].get_registration

            async def get_registration(*args, **kw):
                try:
                    return await plugin_get(*args, **kw)
                except IqError as e:  # e.g. service-unavailable: registration off
                    self.register_error = e.iq["error"]["condition"]
                    self._fail(self.register_error, e.iq["error"]["text"])
                except IqTimeout:
                    self._fail("timeout", "no answer to the registration form request")
            x["xep_0077"].get_registration = get_registration
        x.add_event_handler("session_start", self._on_session_start)
        x.add_event_handler("failed_auth", self._on_failed_auth)
        x.add_event_handler("failed_all_auth", lambda e: self._fail(self.auth_failure or "not-authorized"))
        x.add_event_handler("no_auth", lambda e: self._fail("no-mechanism"))
        x.add_event_handler("stream_error", self._on_stream_error)
        x.add_event_handler("connection_failed", lambda e: self._fail("connection-failed", str(e)))
        x.add_event_handler("disconnected", self._on_disconnected)
        x.add_filter("in", self._on_incoming)
        return x

    def _force_register_feature(self, stanza):
        if (isinstance(stanza, StreamFeatures) and "mechanisms" in stanza["features"]
                and "mechanisms" not in self.xmpp.features):
            stanza.enable("register")
        return stanza

    def _credentials(self, required, optional):
        ssl_object = self.xmpp.transport.get_extra_info("ssl_object") if self.xmpp.transport else None
        result = {}
        for value in set(required) | set(optional):
            if value == "username":
                result[value] = self.jid.user
            elif value == "password":
                result[value] = self.password
            elif value == "channel_binding":
                # Only a -PLUS mechanism binds; any other says "n" (RFC 5802:
                # "y" would tell a server that offers -PLUS of a downgrade).
                chosen = self.mechanism or ""
                if chosen.endswith("-PLUS") or (not chosen and ssl_object is not None):
                    cb_type, data = channel_binding(ssl_object)
                    if data:
                        result[value] = data
                        result["cb_type"] = cb_type
        return result

    # -- events (loop thread)

    def _fail(self, condition, text=""):
        with self._cond:
            if self._failed is None and not self._started.is_set():
                self._failed = ClientError(condition, text)
            self._cond.notify_all()
        if not self.disconnected.is_set():
            self.xmpp.disconnect(wait=0.5)

    def _on_session_start(self, event):
        self.bound_jid = str(self.xmpp.boundjid)
        self._started.set()
        with self._cond:
            self._cond.notify_all()

    def _on_failed_auth(self, failure):
        self.auth_failure = failure["condition"] or "not-authorized"
        self._fail(self.auth_failure)

    def _on_stream_error(self, error):
        self.stream_error = error["condition"]
        self._fail(self.stream_error, error["text"])

    def _on_disconnected(self, event):
        self.disconnected.set()
        self._fail("disconnected")

    async def _on_register(self, form):
        if form is None or self._failed:
            return
        iq = self.xmpp.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.jid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send(timeout=self.timeout)
        except IqError as e:
            self.register_error = e.iq["error"]["condition"]
            self._fail(self.register_error, e.iq["error"]["text"])
        except IqTimeout:
            self._fail("timeout", "no answer to the registration")

    def _on_incoming(self, stanza):
        if (isinstance(stanza, Iq) and stanza["type"] == "error" and not self._started.is_set()
                and stanza.xml.find("{urn:ietf:params:xml:ns:xmpp-bind}bind") is not None):
            self._fail(stanza["error"]["condition"] or "bind-failed", stanza["error"]["text"])
        if isinstance(stanza, (Message, Presence, Iq)):
            with self._cond:
                self.received.append(stanza)
                self._cond.notify_all()
        return stanza

    # -- the blocking API (test thread)

    def connect(self, timeout=None):
        """Connect, (register,) authenticate and bind; return self. Raises
        ClientError with the reason when the session does not start."""
        timeout = timeout or self.timeout
        address = (self.server.host, self.port)
        self._call(lambda: self.xmpp.connect(address, use_ssl=self.direct_tls,
                                             force_starttls=self.starttls and not self.direct_tls,
                                             disable_starttls=not self.starttls or self.direct_tls))
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._started.is_set() and self._failed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        if self._started.is_set():
            return self
        failure = self._failed or ClientError("timeout", f"no session after {timeout}s")
        self.disconnect()
        raise failure

    def send_raw(self, text):
        """Send bytes as they are (bad input tests)."""
        self._call(self.xmpp.send_raw, text)

    def send(self, stanza):
        """Send a stanza given as XML text or a slixmpp stanza."""
        if isinstance(stanza, str):
            self.send_raw(stanza)
        else:
            self._call(stanza.send)

    def send_message(self, to, body, type="chat", **kw):
        self._call(lambda: self.xmpp.send_message(mto=to, mbody=body, mtype=type, **kw))

    def send_presence(self, **kw):
        """slixmpp's send_presence: pto=, ptype=, pshow=, pstatus=,
        ppriority=."""
        self._call(lambda: self.xmpp.send_presence(**kw))

    def iq(self, stanza, timeout=None):
        """Send an IQ (XML text or ElementTree element; an id is added when
        it has none) and return the answer, result or error, as a slixmpp
        Iq. Raises ClientError("timeout") without an answer."""
        if isinstance(stanza, str):
            stanza = _parse_stanza(stanza)

        async def send():
            iq = Iq(self.xmpp, xml=stanza)
            if not iq["id"]:
                iq["id"] = self.xmpp.new_id()
            try:
                return await iq.send(timeout=timeout or self.timeout)
            except IqError as e:
                return e.iq
            except IqTimeout:
                return None
        answer = self._await(send(), (timeout or self.timeout) + 1)
        if answer is None:
            raise ClientError("timeout", "no answer to the IQ")
        return answer

    def roster_get(self):
        """The roster as {bare jid: {"subscription", "name", "groups",
        "ask"}}."""
        answer = self.iq("<iq type='get'><query xmlns='jabber:iq:roster'/></iq>")
        if answer["type"] != "result":
            raise ClientError(answer["error"]["condition"] or "error", "roster get failed")
        items = {}
        for jid, item in answer["roster"]["items"].items():
            items[str(jid)] = {"subscription": item["subscription"], "name": item["name"],
                               "groups": list(item["groups"]), "ask": item["ask"]}
        return items

    def wait(self, pred=None, timeout=5):
        """The first received stanza not returned before for which pred is
        true; raises ClientError("timeout") after timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, s in enumerate(self.received):
                    if i not in self._taken and (pred is None or pred(s)):
                        self._taken.add(i)
                        return s
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ClientError("timeout", f"{self.jid}: no matching stanza within {timeout}s; "
                                      f"received: {[str(s) for s in self.received]}")
                self._cond.wait(left)

    def wait_message(self, pred=None, timeout=5):
        return self.wait(lambda s: isinstance(s, Message) and (pred is None or pred(s)), timeout)

    def wait_presence(self, pred=None, timeout=5):
        return self.wait(lambda s: isinstance(s, Presence) and (pred is None or pred(s)), timeout)

    def wait_iq(self, pred=None, timeout=5):
        return self.wait(lambda s: isinstance(s, Iq) and (pred is None or pred(s)), timeout)

    def wait_disconnected(self, timeout=5):
        """True once the connection is gone (False after timeout)."""
        return self.disconnected.wait(timeout)

    def disconnect(self, timeout=5):
        """Close the stream (if open) and stop the loop thread."""
        if self._thread.is_alive():
            if not self.disconnected.is_set():
                try:
                    self._call(lambda: self.xmpp.disconnect(wait=1))
                except Exception:  # the loop may be gone already
                    pass
                self.disconnected.wait(timeout)
            try:
                self._await(self._cancel_tasks(), timeout)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self.loop.close()

    @staticmethod
    async def _cancel_tasks():
        """Cancel slixmpp's tasks (reconnection, filters) so that none is
        left pending when the loop stops."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disconnect()


def register(server, jid, password, **kw):
    """Create an account with XEP-0077, log in once, log out."""
    Client(server, jid, password, register=True, **kw).connect().disconnect()


def befriend(a, b, timeout=10):
    """A full subscription handshake both ways between two Clients; waits
    until both rosters say both."""
    a.send_presence(pto=b.jid.bare, ptype="subscribe")
    b.send_presence(pto=a.jid.bare, ptype="subscribed")
    b.send_presence(pto=a.jid.bare, ptype="subscribe")
    a.send_presence(pto=b.jid.bare, ptype="subscribed")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ra, rb = a.roster_get(), b.roster_get()
        if (ra.get(b.jid.bare, {}).get("subscription") == "both"
                and rb.get(a.jid.bare, {}).get("subscription") == "both"):
            return
        time.sleep(0.05)
    raise AssertionError(f"no mutual subscription: {a.jid.bare}: {ra}, {b.jid.bare}: {rb}")
