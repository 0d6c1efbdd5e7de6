"""The router, end to end: real hearth-router, real components over real
sockets (hearth-testcomp for native ones, slixmpp for XEP-0114)."""
import asyncio
import re
import socket
import threading
import time

import pytest

from hearth_env import wait_for, BUILDDIR, Router, is_sanitized, self_signed
from testcomp import Component


@pytest.fixture
def router(hearth_env, request):
    """The router, with the settings of a router_settings marker if any."""
    marker = request.node.get_closest_marker("router_settings")
    if marker:
        hearth_env.write_config(**marker.args[0])
    r = hearth_env.add(Router(hearth_env))
    r.start()
    return r


@pytest.fixture
def comps(router, hearth_env):
    """Start native components on the router: comps("a") -> Component."""
    started = []

    def start(ident, *binds, password=None, wait=True, tls=None, role=None):
        """role: log in with that daemon's account instead of the tests'
        component account."""
        user, pw = router.account(role) if role else (router.user, router.password)
        c = Component(BUILDDIR, router.listen, password or pw, ident, *binds, user=user,
                      logdir=hearth_env.logdir, tls=tls)
        started.append(c)
        if wait:
            c.expect("ready")
        return c

    yield start
    for c in started:
        c.close()


def attrs(route):
    return dict(re.findall(r"(\w+)='([^']*)'", route.split(">", 1)[0]))


def test_two_native_components_exchange_routes(comps):
    a = comps("comp-a", "a.test")
    b = comps("comp-b", "b.test")
    a.cmd("send b.test a.test alice@b.test <message to='alice@b.test' type='chat'>"
          "<body>hi &amp; &lt;bye&gt;</body></message>")
    got = b.expect("<route")
    assert attrs(got) == {"role": "component", "to": "b.test", "from": "a.test",
                          "user": "alice@b.test"}, got
    assert "<body>hi &amp; &lt;bye&gt;</body>" in got, got
    b.cmd("send a.test b.test - <message to='bob@a.test'><body>back</body></message>")
    got = a.expect("<route")
    assert attrs(got)["from"] == "b.test" and "<body>back</body>" in got, got


def test_payload_is_forwarded_byte_for_byte(comps):
    a = comps("comp-a", "a.test")
    b = comps("comp-b", "b.test")
    route = ("<route to='b.test' from='a.test'><iq xmlns='jabber:client' type='get' id='x\"1'>"
             "<query xmlns='urn:x'  attr=\"v&gt;w\" >tëxt&#x41;</query></iq></route>")
    a.cmd("raw " + route)
    # The router adds only the sender's role, in front of its attributes.
    assert b.expect("<route") == "<route role='component'" + route[len("<route"):]


def test_bind_conflict_is_refused(comps):
    comps("comp-a", "x.test")
    b = comps("comp-b", "x.test")
    b.saw("binderror x.test conflict")


def test_default_route_takes_unknown_names(comps):
    s2s = comps("s2s", "s2s default", role="s2s")
    a = comps("comp-a", "a.test")
    a.cmd("send remote.example a.test - <message to='bob@remote.example'/>")
    got = s2s.expect("<route")
    assert attrs(got)["to"] == "remote.example", got
    # The default-route holder speaks for remote domains.
    s2s.cmd("send a.test remote.example - <message from='bob@remote.example'/>")
    assert attrs(a.expect("<route"))["from"] == "remote.example"


def test_second_default_route_is_a_conflict(comps):
    comps("s2s-1", "s2s default", role="s2s")
    other = comps("s2s-2", "s2s default", role="s2s")
    other.saw("binderror s2s conflict")


def test_unknown_name_bounces_with_payload_intact(comps):
    a = comps("comp-a", "a.test")
    a.cmd("send nowhere.test a.test bob@nowhere.test "
          "<message to='bob@nowhere.test' id='m1'><body>lost</body></message>")
    got = a.expect("<route")
    at = attrs(got)
    assert at["type"] == "error" and at["error"] == "not-found", got
    assert at["to"] == "a.test" and at["from"] == "nowhere.test", got
    assert at["user"] == "bob@nowhere.test", got
    assert "<message xmlns='jabber:client' to='bob@nowhere.test' id='m1'><body>lost</body>" \
        "</message>" in got, got


def test_route_from_a_name_not_bound_is_refused(comps):
    a = comps("comp-a", "a.test")
    b = comps("comp-b", "b.test")
    a.cmd("send b.test b.test - <message><body>spoof</body></message>")
    got = a.expect("<route")
    assert attrs(got)["error"] == "forbidden", got
    b.expect_none("<route", within=0.5)


def collect_routes(comps_list, n, timeout=10):
    """Read routes from several components until n arrived: {user: {ident}}."""
    where, got = {}, 0
    deadline = time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        for c in comps_list:
            line = c.poll(0.01)
            if line and line.startswith("<route"):
                where.setdefault(attrs(line)["user"], set()).add(c.ident)
                got += 1
    assert got == n, f"{got} of {n} routes arrived"
    return where


def shards_and_sender(comps):
    shards = [comps(f"sm-{i}", "sm.test shard") for i in range(3)]
    a = comps("comp-a", "a.test")
    users = [f"user{i}@sm.test" for i in range(90)]

    def deliver(to_shards):
        for u in users:
            a.cmd(f"send sm.test a.test {u} <message to='{u}'/>")
        return collect_routes(to_shards, len(users))
    return shards, a, users, deliver


def test_a_dead_shard_keeps_its_users_for_the_grace(router, comps):
    """router.shard-grace (10 s): the users of a shard whose link died are
    not given to another shard, which has none of their sessions; their
    routes come back to the sender, not-found, to wait for it."""
    shards, a, users, deliver = shards_and_sender(comps)
    first = deliver(shards)
    gone = shards.pop()
    gone.close()
    wait_for(lambda: "the shard sm-2 keeps its place" in open(router.log).read(),
             "the router keeping the dead shard's place")
    theirs = [u for u, w in first.items() if w == {gone.ident}]
    assert theirs
    for u in users:
        a.cmd(f"send sm.test a.test {u} <message to='{u}'/>")
    stayed = collect_routes(shards, len(users) - len(theirs))
    assert all(stayed[u] == first[u] for u in stayed), "a user of a live shard moved"
    bounced = set()
    deadline = time.monotonic() + 10
    while len(bounced) < len(theirs) and time.monotonic() < deadline:
        line = a.poll(0.05)
        if line and line.startswith("<route") and attrs(line).get("error") == "not-found":
            bounced.add(attrs(line)["user"])
    assert bounced == set(theirs), f"not bounced: {set(theirs) - bounced}"


@pytest.mark.router_settings({"router.shard-grace": "0"})
def test_shard_is_stable_for_a_user_and_spread_over_shards(comps):
    shards, a, users, deliver = shards_and_sender(comps)

    first = deliver(shards)
    assert len(first) == len(users) and all(len(w) == 1 for w in first.values()), first
    per_shard = {s.ident: sum(1 for w in first.values() if s.ident in w) for s in shards}
    assert all(n >= 10 for n in per_shard.values()), per_shard

    assert deliver(shards) == first, "a user moved between shards with nothing changed"

    # Remove one shard: only its users move; the others stay where they were.
    gone = shards.pop()
    gone.close()
    time.sleep(0.3)
    third = deliver(shards)
    for u, where in first.items():
        if where == {gone.ident}:
            assert third[u] != where, f"{u} still routed to the shard that left"
        else:
            assert third[u] == where, f"{u} moved from {where} to {third[u]}"


def test_advertisements_of_names_coming_and_going(comps):
    b = comps("comp-b", "b.test")
    a = comps("comp-a", "a.test")
    # A newcomer hears of everything bound before it.
    a.saw("advert b.test available")
    b.saw("advert a.test available")
    a.cmd("bind late.test")
    b.expect("advert late.test available")
    a.cmd("unbind late.test")
    b.expect("advert late.test unavailable")
    a.close()
    b.expect("advert a.test unavailable")


def test_wrong_password_is_refused(router, comps):
    bad = comps("intruder", "evil.test", password="not-the-password", wait=False)
    bad.expect_none("ready", within=1.5)
    with open(router.log) as f:
        assert "not-authorized" in f.read()


def test_router_restart_components_reconnect_and_rebind(router, comps):
    a = comps("comp-a", "a.test")
    b = comps("comp-b", "b.test")
    old_pid = router.pid
    router.restart()
    assert router.pid != old_pid
    a.expect("down")
    b.expect("down")
    a.expect("ready", timeout=15)
    b.expect("ready", timeout=15)
    # Both bound their names again by themselves: routes flow.
    a.cmd("send b.test a.test - <message><body>after restart</body></message>")
    assert "after restart" in b.expect("<route")


@pytest.fixture(scope="module")
def router_cert(tmp_path_factory):
    """A self-signed certificate for the name 'router', made with openssl."""
    return self_signed(tmp_path_factory.mktemp("tls"), "router")


@pytest.fixture
def tls_router(hearth_env, router_cert):
    cert, key = router_cert
    hearth_env.write_config(**{"router.tls": {"cert": cert, "key": key},
                               "router.require-tls": "true"})
    r = hearth_env.add(Router(hearth_env))
    r.start()
    return r


def test_component_upgrades_to_tls_when_the_router_requires_it(tls_router, router_cert,
                                                              hearth_env):
    cert, _ = router_cert
    started = []
    try:
        for ident, name in (("comp-a", "a.test"), ("comp-b", "b.test")):
            c = Component(BUILDDIR, tls_router.listen, tls_router.password, ident, name,
                          logdir=hearth_env.logdir, tls=(cert, "router"))
            started.append(c)
            c.expect("ready")
        a, b = started
        a.cmd("send b.test a.test - <message><body>over tls</body></message>")
        assert "over tls" in b.expect("<route")
    finally:
        for c in started:
            c.close()


def test_component_refuses_a_router_certificate_it_does_not_trust(tls_router, hearth_env):
    c = Component(BUILDDIR, tls_router.listen, tls_router.password, "comp-a",
                  logdir=hearth_env.logdir, tls=("/etc/ssl/certs/ca-certificates.crt", "router"))
    try:
        c.expect_none("ready", within=1.5)
    finally:
        c.close()
    with open(c.log_path) as f:
        assert "certificate" in f.read().lower()


def test_sasl_before_starttls_is_refused_when_tls_is_required(tls_router):
    out = raw_stream(tls_router.port, HEADER + b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                     b"mechanism='SCRAM-SHA-256'>biwsbj1oZWFydGgscj1hYmM=</auth>")
    assert "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>" in out, out
    assert "<policy-violation" in out, out


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_flood_to_a_component_that_does_not_read_keeps_router_memory_bounded(router, comps):
    sink = comps("sink", "sink.test")
    src = comps("source", "source.test")
    sink.cmd("quiet")
    sink.cmd("pause")
    time.sleep(0.2)
    before = rss_kb(router.pid)
    n = 300000  # about 40 MB of routes
    src.cmd(f"flood sink.test source.test {n}")
    samples = []
    for _ in range(12):
        time.sleep(0.25)
        samples.append(rss_kb(router.pid))
    # The router holds at most its write limit (1 MiB) for the sink plus
    # read buffers: its memory must not follow the 40 MB being pushed, and
    # once the sender is paused it stops growing. (A sanitizer build's
    # quarantine keeps freed memory, hence the margin; the plateau is the
    # point.)
    assert max(samples) - before < 20 * 1024, f"router RSS grew from {before} kB: {samples}"
    half = len(samples) // 2
    assert samples[-1] - samples[half] < 1024, f"router RSS still growing: {samples}"
    sink.cmd("resume")
    src.expect(f"flooded {n}", timeout=60)
    deadline = time.monotonic() + 30
    while sink.count() < n and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sink.count() == n, "routes were lost under flow control"


@pytest.mark.router_settings({"router.max-queue": "4M"})
def test_component_that_does_not_read_its_own_bounces_is_cut_off(router, comps):
    """Flow control holds back what others send to a component, not the
    bounces of its own routes: one that sends to nowhere and never reads
    is disconnected at router.max-queue, and the router does not grow."""
    flooder = comps("flooder", "flooder.test")
    flooder.cmd("quiet")
    flooder.cmd("pause")
    before = rss_kb(router.pid)
    flooder.cmd("flood nowhere.test flooder.test 300000")  # about 40 MB of bounces
    flooder.expect("down", timeout=60)
    with open(router.log) as f:
        assert "more than router.max-queue: disconnected" in f.read()
    assert rss_kb(router.pid) - before < 20 * 1024 or is_sanitized(), "the router held the bounces"
    other = comps("other", "other.test")  # and goes on serving
    other.cmd("send other.test other.test - <message><body>still here</body></message>")
    assert "still here" in other.expect("<route")


def raw_stream(port, data, timeout=5):
    """Send data on a fresh connection; return all the router answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
    return out.decode()


HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='urn:hearth:component:1' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='router'>")


def test_malformed_xml_gets_not_well_formed(router):
    out = raw_stream(router.port, HEADER + b"<auth><</auth>")
    assert "<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out, out
    assert out.endswith("</stream:stream>"), out


def test_comment_gets_restricted_xml(router):
    out = raw_stream(router.port, HEADER + b"<!-- hello -->")
    assert "<restricted-xml" in out, out


@pytest.mark.router_settings({"router.max-stanza": "4k"})
def test_oversized_packet_gets_policy_violation(router):
    out = raw_stream(router.port, HEADER + b"<route to='x'>" + b"a" * 8192)
    assert "<policy-violation" in out, out


def test_stanza_before_auth_is_not_authorized(router):
    out = raw_stream(router.port, HEADER + b"<route to='a' from='b'><message/></route>")
    assert "<not-authorized" in out, out


def test_wrong_stream_namespace_is_refused(router):
    out = raw_stream(router.port, b"<stream:stream xmlns='jabber:client' "
                     b"xmlns:stream='http://etherx.jabber.org/streams'>")
    assert "<invalid-namespace" in out, out


EXTERNAL = pytest.mark.router_settings(
    {"router.external": [{"name": "ext.test", "secret": "s3cret"}]})


def run_slixmpp_component(port, secret, on_message, ready, stop):
    """A slixmpp ComponentXMPP in its own thread and event loop."""
    import slixmpp

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    xmpp = slixmpp.ComponentXMPP("ext.test", secret, "127.0.0.1", port)

    def session_start(_):
        ready.set()

    def message(msg):
        on_message(msg)
        reply = xmpp.make_message(mto=msg["from"], mfrom="echo@ext.test",
                                  mbody="echo: " + msg["body"], mtype="chat")
        reply.send()

    xmpp.add_event_handler("session_start", session_start)
    xmpp.add_event_handler("message", message)
    xmpp.connect()

    async def wait_stop():
        while not stop.is_set():
            await asyncio.sleep(0.05)
        xmpp.disconnect()
        await asyncio.sleep(0.2)

    loop.run_until_complete(wait_stop())
    loop.close()


@EXTERNAL
def test_xep0114_component_exchanges_messages_with_native_component(router, comps):
    a = comps("comp-a", "a.test")
    got, ready, stop = [], threading.Event(), threading.Event()
    t = threading.Thread(target=run_slixmpp_component,
                         args=(router.port, "s3cret", got.append, ready, stop),
                         daemon=True)
    t.start()
    try:
        assert ready.wait(10), "slixmpp component did not complete its handshake"
        a.expect("advert ext.test available")
        a.cmd("send ext.test a.test bot@ext.test <message to='bot@ext.test' "
              "from='alice@a.test' type='chat'><body>hello component</body></message>")
        route = a.expect("<route")
        at = attrs(route)
        assert at["from"] == "ext.test" and at["to"] == "a.test", route
        assert "<message xmlns='jabber:client'" in route, route
        assert "echo: hello component" in route, route
        assert len(got) == 1 and got[0]["body"] == "hello component"
        assert str(got[0]["from"]) == "alice@a.test"
    finally:
        stop.set()
        t.join(5)


@EXTERNAL
def test_xep0114_wrong_secret_is_not_authorized(router):
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(b"<stream:stream xmlns='jabber:component:accept' "
                  b"xmlns:stream='http://etherx.jabber.org/streams' to='ext.test'>")
        header = s.recv(4096).decode()
        assert re.search(r"id='[0-9a-f]+'", header), header
        s.sendall(b"<handshake>" + b"0" * 40 + b"</handshake>")
        out = b""
        while not out.endswith(b"</stream:stream>"):
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    assert b"<not-authorized" in out, out


@EXTERNAL
def test_xep0114_unknown_domain_is_host_unknown(router):
    out = raw_stream(router.port, b"<stream:stream xmlns='jabber:component:accept' "
                     b"xmlns:stream='http://etherx.jabber.org/streams' to='who.test'>")
    assert "<host-unknown" in out, out
