"""drill — the load driver of the kill -9 drills (test_drill.py).

Many real XMPP clients (python3-slixmpp) on one asyncio loop, in a thread of
its own, chatting in pairs at a steady rate while a test kills a daemon
under them. Every message is accounted for:

    load = Load(rate=10)                 # messages per second per client
    a = load.peer("a0@localhost", "pw", ("127.0.0.1", port), "c2s", reconnect=...)
    b = load.peer("b0@localhost", "pw", ("127.0.0.1", port), "c2s", reconnect=...)
    load.pair(a, b)                      # each sends to the other
    load.connect()                       # all log in (concurrently)
    load.start()                         # the load runs
    ... kill a daemon, restart it ...
    load.stop()                          # no more sends
    stored = load.settle(offline)        # until the counts stop moving
    f = load.figures(kill_time, affected_pairs, watched_peers, stored)
    print(line("sm", f))
    load.close()

A peer's group says where it logged in (the test sets it: c2s-1, c2s-2,
prosody); the figures count logouts and lost_with_sender by group.

A peer is one user with one resource ("drill"). Each message is a chat
message to the partner's bare JID whose id and body carry a unique key
(pair, side, sequence number); the driver records when it was sent, every
time a body arrives (on any connection of the receiver: a reconnected one
counts), and the error stanza that came back instead, if one did (matched
by id). A connection that ends without the driver asking is a logout: its
time is recorded, and a peer made with reconnect=ADDR logs in again there
at once (retrying every 100 ms until it can), as a real client would; a
peer without it stays away (its messages must then be in the offline
store). Nothing is sent while a peer is offline, so "sent" counts only
what a live session wrote.

The figures (Load.figures) define the drill's terms:
  sent        messages written by a logged-in client
  delivered   sent messages that reached their receiver at least once
  duplicated  of those, the ones that arrived more than once, but for
              again_with_receiver (below)
  again_with_receiver  messages a receiver got before the kill of its c2s
              cut it and again after it logged in again: that c2s had
              written them to the client but not yet told the sm, which
              stores them offline (at least once; knowing what a client
              read takes stream management, XEP-0198), so they are
              counted apart
  bounced     sent messages answered with an error stanza
  offline     sent messages found in the offline store (receiver away)
  lost        sent, no error, never delivered, not stored offline, and
              neither lost_with_sender nor lost_with_receiver (below)
  lost_with_sender  lost messages whose sender's own connection was cut
              afterwards by the kill of its c2s: without stream management
              (XEP-0198) the client cannot know whether the server read
              them, so they are counted apart
  lost_with_receiver  lost messages whose receiver's connection was cut
              afterwards by the kill of its c2s: they may have been in
              that c2s's memory or its socket's buffers, and without
              stream management no server can know whether the client read
              them
  logged_out  peers of the watched groups whose connection was cut
  relogin     seconds from the kill until the last peer it cut (any group)
              had logged in again
  back_in     seconds from the kill until every affected direction (a
              sender to its partner) has delivered a message sent after the
              kill: the slowest direction decides

The driver never sleeps a fixed time to wait for an outcome: connect() and
settle() wait on conditions (every peer online; every message accounted for
or nothing new for a quiet spell)."""
import asyncio
import hashlib
import logging
import re
import ssl
import threading
import time

import slixmpp
from slixmpp.util.sasl import mechanisms as sasl_mechanisms
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import xmpp_client  # its SCRAM fix: the channel binding type named right

for _name in ("slixmpp", "slixmpp.xmlstream.xmlstream", "slixmpp.basexmpp", "slixmpp.stringprep"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


# slixmpp's SCRAM computes Hi() (PBKDF2) in Python, some 30 ms a login:
# with twenty clients logging in again at once, the driver's loop would
# stall for most of a second and the drill would time the driver, not the
# server. hashlib's PBKDF2 gives the same bytes in C.
def _pbkdf2_hi(self, text, salt, iterations):
    return hashlib.pbkdf2_hmac(self.hash().name, sasl_mechanisms.bytes(text), salt, iterations)


sasl_mechanisms.SCRAM.Hi = _pbkdf2_hi

KEY = re.compile(r"drill (p\d+\.[ab]\.\d+)")


def _tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Peer:
    """One user of the load: its address, partner, connections and counts.
    Mutated on the driver's loop only."""

    def __init__(self, load, jid, password, addr, group, reconnect, mechanism):
        self.load = load
        self.jid = jid  # bare
        self.password = password
        self.addr = addr
        self.group = group  # where it logged in first: "c2s-1", "prosody", ...
        self.reconnect = reconnect  # (host, port) to log in again at, or None
        self.mechanism = mechanism
        self.partner = None
        self.pair = None  # (pair index, "a" or "b")
        self.xmpp = None
        self.online = False
        self.sessions = 0  # sessions started
        self.logins = []  # loop times at which sessions started
        self.cuts = []  # loop times at which a connection ended unasked
        self.seq = 0
        self.closing = False
        self.holding = False  # connected, but not sending yet (Load.hold)
        self.session_started = None  # asyncio.Event of the first session

    def __repr__(self):
        return f"<Peer {self.jid} {self.group}>"


class Load:
    def __init__(self, rate=10):
        self.rate = rate
        self.peers = []
        self.pairs = []
        self.sent = {}  # key -> (sender, receiver, time, sender's session number)
        self.received = {}  # key -> [arrival times]
        self.bounced = {}  # key -> error condition
        self.strays = 0  # message bodies that are no key of ours
        self.last_change = time.monotonic()
        self.sending = False
        self._senders = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="drill load")
        self._thread.start()

    # -- the loop thread

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _call(self, fn, *args, timeout=30):
        async def wrap():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout)

    def _await(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def now(self):
        """The clock of every time the driver records (time.monotonic)."""
        return time.monotonic()

    # -- building the load (test thread, before connect)

    def peer(self, jid, password, addr, group, reconnect=None, mechanism=None):
        p = Peer(self, jid, password, addr, group, reconnect, mechanism)
        self.peers.append(p)
        return p

    def pair(self, a, b):
        index = len(self.pairs)
        a.partner, a.pair = b, (index, "a")
        b.partner, b.pair = a, (index, "b")
        self.pairs.append((a, b))

    # -- connections (loop thread)

    def _open(self, p, addr):
        """A client for p, connecting to addr. Made once per peer and
        connected again after a cut: building a slixmpp client costs tens
        of milliseconds of the loop, which twenty peers logging in again at
        once would add to the times measured."""
        x = slixmpp.ClientXMPP(f"{p.jid}/drill", p.password, sasl_mech=p.mechanism)
        x.whitespace_keepalive = False
        x.ssl_context = _tls_context()
        x.get_ssl_context = lambda: x.ssl_context
        x.register_plugin("xep_0199")  # answer the server's pings
        x["feature_mechanisms"].sasl_callback = lambda req, opt, x=x, p=p: self._credentials(
            p, x, req, opt)
        x.add_event_handler("session_start", lambda e, p=p: self._on_session(p))
        x.add_event_handler("disconnected", lambda e, p=p: self._on_cut(p))
        x.add_event_handler("connection_failed", lambda e, p=p: self._on_cut(p))
        x.add_event_handler("failed_all_auth", lambda e, x=x: x.abort())
        # every message, not only those with a body (slixmpp's "message"
        # event): another server's error replies may carry none
        x.register_handler(Callback("drill message", MatchXPath("{jabber:client}message"),
                                    lambda m, p=p: self._on_message(p, m)))
        p.xmpp = x
        x.connect(addr, force_starttls=True)

    def _credentials(self, p, x, required, optional):
        """What slixmpp's SASL asks for; channel binding data of the TLS
        session (tls-exporter or tls-unique), as xmpp_client gives them,
        so that SCRAM-*-PLUS works and plain SCRAM does not claim a
        downgrade."""
        result = {}
        for value in set(required) | set(optional):
            if value == "username":
                result[value] = slixmpp.JID(p.jid).user
            elif value == "password":
                result[value] = p.password
            elif value == "channel_binding" and x.transport is not None:
                cb_type, data = xmpp_client.channel_binding(x.transport.get_extra_info("ssl_object"))
                if data:
                    result[value], result["cb_type"] = data, cb_type
        return result

    def _on_session(self, p):
        p.xmpp.send_presence()  # available: bare-JID chat reaches it, offline queue flushed
        p.online = True
        p.sessions += 1
        p.logins.append(self.now())
        p.session_started.set()

    def _on_cut(self, p):
        if p.closing:
            return
        if p.online:
            p.cuts.append(self.now())
        p.online = False
        # slixmpp retries a failed connect on its own, slower and slower:
        # stop that; a peer that comes back tries again every 100 ms
        p.xmpp.cancel_connection_attempt()
        if p.reconnect:
            self.loop.call_later(0.1, self._reconnect, p)

    def _reconnect(self, p):
        if not p.closing and not p.online and not p.xmpp.is_connecting():
            p.xmpp.connect(p.reconnect, force_starttls=True)

    def _on_message(self, p, m):
        xml = m.xml
        if xml.get("type") == "error":
            key = xml.get("id", "")
            if key in self.sent and key not in self.bounced:
                self.bounced[key] = m["error"]["condition"] or "?"
                self.last_change = self.now()
            return
        body = xml.find("{jabber:client}body")
        match = KEY.fullmatch(body.text or "") if body is not None else None
        if not match or match[1] not in self.sent:
            self.strays += 1
            return
        self.received.setdefault(match[1], []).append(self.now())
        self.last_change = self.now()

    async def _connect_all(self, timeout):
        for p in self.peers:
            p.session_started = asyncio.Event()
            self._open(p, p.addr)
        waits = [asyncio.wait_for(p.session_started.wait(), timeout) for p in self.peers]
        results = await asyncio.gather(*waits, return_exceptions=True)
        return [p.jid for p, r in zip(self.peers, results) if isinstance(r, Exception)]

    def connect(self, timeout=30):
        """Log every peer in, all at once; return once each has a session
        (AssertionError naming those that have none)."""
        missing = self._await(self._connect_all(timeout), timeout + 5)
        assert not missing, f"no session within {timeout}s for {missing}"

    # -- the load (loop thread)

    async def _send_loop(self, p, offset):
        interval = 1.0 / self.rate
        due = self.loop.time() + offset
        while self.sending:
            await asyncio.sleep(max(0.0, due - self.loop.time()))
            due += interval
            if due < self.loop.time() - 1.0:  # fell behind by more than 1 s: skip
                due = self.loop.time()
            if not self.sending or not p.online or p.holding:
                continue
            p.seq += 1
            index, side = p.pair
            key = f"p{index}.{side}.{p.seq}"
            self.sent[key] = (p, p.partner, self.now(), p.sessions)
            p.xmpp.send_raw(f"<message to='{p.partner.jid}' type='chat' id='{key}'>"
                            f"<body>drill {key}</body></message>")

    def start(self):
        """Every peer starts sending to its partner, rate per second each,
        the peers' ticks spread evenly over the first interval."""
        def begin():
            self.sending = True
            n = len(self.peers)
            self._senders = [self.loop.create_task(self._send_loop(p, i / (n * self.rate)))
                             for i, p in enumerate(self.peers)]
        self._call(begin)

    def stop(self):
        """No more sends; returns once every sender task has ended."""
        async def end():
            self.sending = False
            await asyncio.gather(*self._senders, return_exceptions=True)
        self._await(end())

    def hold(self, peers):
        """These peers log in with the others but send nothing until
        release(peers)."""
        for p in peers:
            p.holding = True

    def release(self, peers):
        def go():
            for p in peers:
                p.holding = False
        self._call(go)

    def wait_delivered_sent_after(self, since, timeout=10):
        """Wait until a message sent at since or later has been delivered:
        the load has run that long, and flows. False after timeout."""
        def flowed():
            return any(self.sent[k][2] >= since for k in list(self.received))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._call(flowed):
                return True
            time.sleep(0.05)
        return False

    def wait_back(self, since, affected, timeout=10):
        """Wait until every direction of the affected pairs whose sender is
        online or logging in again has delivered a message sent after
        since (service is back for all of them). False after timeout."""
        def back():
            senders = {p for pair in affected for p in pair if p.online or p.reconnect}
            done = {self.sent[k][0] for k in list(self.received) if self.sent[k][2] > since}
            return senders <= done
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._call(back):
                return True
            time.sleep(0.05)
        return False

    # -- outcome (test thread)

    def snapshot(self):
        """(sent, received, bounced, last_change) copied on the loop."""
        return self._call(lambda: (dict(self.sent), {k: list(v) for k, v in self.received.items()},
                                   dict(self.bounced), self.last_change))

    def online_peers(self):
        return self._call(lambda: [p for p in self.peers if p.online])

    def settle(self, offline_keys=lambda: set(), quiet=1.5, timeout=20):
        """After stop(): wait until every sent message is delivered,
        bounced or in offline_keys() (the store's, for receivers who are
        away), or nothing new arrived for quiet seconds; and until every
        peer that reconnects is online again. Returns offline_keys()'s
        last answer."""
        deadline = time.monotonic() + timeout
        while True:
            sent, received, bounced, last = self.snapshot()
            stored = offline_keys()
            open_ = [k for k in sent if k not in received and k not in bounced and k not in stored]
            back = all(p.online for p in self.peers if p.reconnect)
            now = time.monotonic()
            if back and (not open_ or now - last >= quiet):
                return stored
            if now > deadline:
                return stored
            time.sleep(0.05)

    def figures(self, kill_time, affected, watched, stored=frozenset(), cut_groups=()):
        """The drill's figures (see the module's docstring) as a dict.
        affected: pairs (a, b) whose traffic the kill interrupts (back_in
        is theirs); watched: peers that must not be logged out;
        cut_groups: groups whose c2s was killed (lost_with_sender,
        lost_with_receiver)."""
        sent, received, bounced, _ = self.snapshot()
        delivered = {k for k in sent if k in received}
        duplicated, again = set(), set()
        for k in (k for k in delivered if len(received[k]) > 1):
            receiver, times = sent[k][1], sorted(received[k])
            if receiver.group in cut_groups and any(times[0] <= c <= times[-1]
                                                    for c in receiver.cuts):
                again.add(k)
            else:
                duplicated.add(k)
        offline = {k for k in sent if k in stored and k not in received}
        missing = [k for k in sent if k not in received and k not in bounced and k not in stored]
        with_sender, with_receiver, lost = [], [], []
        for k in missing:
            sender, receiver, when, _ = sent[k]
            if sender.group in cut_groups and any(c >= when for c in sender.cuts):
                with_sender.append(k)
            elif receiver.group in cut_groups and any(c >= when for c in receiver.cuts):
                with_receiver.append(k)
            else:
                lost.append(k)
        # back_in: each direction of an affected pair whose sender sent after
        # the kill; its first delivery of such a message
        backs = []
        for a, b in affected:
            for sender in (a, b):
                after = [(s[2], k) for k, s in sent.items() if s[0] is sender and s[2] > kill_time]
                if not after:
                    continue
                firsts = [min(received[k]) for _, k in after if k in received]
                backs.append(((min(firsts) - kill_time) if firsts else float("inf"),
                              f"{sender.jid} -> {sender.partner.jid}"))
        # how long the peers cut by the kill took to log in again
        relogins = [min(t for t in p.logins if t > kill_time) - kill_time for p in self.peers
                    if any(c >= kill_time for c in p.cuts) and any(t > kill_time for t in p.logins)]
        return {
            "relogin": max(relogins) if relogins else None,
            "sent": len(sent),
            "delivered": len(delivered),
            "duplicated": len(duplicated),
            "again_with_receiver": len(again),
            "lost": len(lost),
            "bounced": len(bounced),
            "offline": len(offline),
            "lost_with_sender": len(with_sender),
            "lost_with_receiver": len(with_receiver),
            "logged_out": sum(1 for p in watched if any(c >= kill_time for c in p.cuts)),
            "back_in": max(backs)[0] if backs else float("inf"),
            "slowest": max(backs)[1] if backs else None,  # the direction back last
            # key (sender's group -> receiver's group)
            "lost_keys": [f"{k} ({sent[k][0].group} -> {sent[k][1].group})" for k in sorted(lost)[:10]],
            "duplicated_keys": sorted(duplicated)[:10],
            "bounced_items": sorted((k, c, sent[k][0].group) for k, c in bounced.items()),
        }

    def close(self):
        """Log every peer out and end the loop thread."""
        async def end():
            self.sending = False
            closing = []
            for p in self.peers:
                p.closing = True
                if p.xmpp:
                    p.xmpp.cancel_connection_attempt()
                    if p.xmpp.is_connected():
                        closing.append(p.xmpp.disconnect(wait=0.5))
            await asyncio.gather(*closing, return_exceptions=True)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self._await(end(), 20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


def line(daemon, f, restart=None, peer_groups=()):
    """The figures' one line, as docs/reliability.md quotes it; then, where
    they say something, the figures beyond the issue's: offline,
    lost_with_sender, lost_with_receiver, relogin, peer_bounced (bounced by another server, to its users:
    peer_groups), restart (seconds until the killed daemon ran again and
    had bound its names)."""
    extra = ""
    peer_bounced = sum(1 for _, _, group in f["bounced_items"] if group in peer_groups)
    if peer_bounced:
        extra += f" peer_bounced={peer_bounced}"
    if f["offline"]:
        extra += f" offline={f['offline']}"
    if f["lost_with_sender"]:
        extra += f" lost_with_sender={f['lost_with_sender']}"
    if f["lost_with_receiver"]:
        extra += f" lost_with_receiver={f['lost_with_receiver']}"
    if f["again_with_receiver"]:
        extra += f" again_with_receiver={f['again_with_receiver']}"
    if f["relogin"] is not None:
        extra += f" relogin={f['relogin']:.2f}s"
    if restart is not None:
        extra += f" restart={restart:.2f}s"
    return (f"drill {daemon}: sent={f['sent']} delivered={f['delivered']} "
            f"duplicated={f['duplicated']} lost={f['lost']} bounced={f['bounced']} "
            f"logged_out={f['logged_out']} back_in={f['back_in']:.2f}s{extra}")
