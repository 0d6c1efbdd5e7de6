"""End-to-end tests of the metrics endpoints (GET /metrics on X.metrics-listen)
and of the HTTP layer under them (common/http.c): every daemon serves the
Prometheus text format, parsed here twice, by python3-prometheus-client's
parser and by a strict line check; a known load (registrations, failed
logins, messages between two python3-slixmpp clients, offline messages)
moves the counters by exactly what was done, and so do messages between
two federated Hearths (s2s, resolver); and the HTTP limits answer 431, 413,
503 and 408 and close the connection.
"""
import http.client
import re
import socket
import ssl
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hearth_env import Server, free_port, free_port_pair, self_signed, wait_for
from xmpp_client import Client, ClientError

PASSWORD = "correct horse"

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABELS = r'\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\}'
SAMPLE = re.compile(rf"^({NAME})({LABELS})? (-?[0-9.e+-]+|[+-]Inf|NaN)$")


def strict_check(text):
    """Every line is a # HELP, a # TYPE or a sample; every sample's family
    has its HELP and TYPE before it; names are not declared twice."""
    declared, helped = {}, set()
    assert text.endswith("\n"), "the exposition ends with a line feed"
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helped, f"HELP {name} twice"
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            assert name not in declared, f"TYPE {name} twice"
            declared[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name = m.group(1)
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in declared else name
            assert family in declared and family in helped, f"{name} before its HELP/TYPE"


def fetch(port, path="/metrics", method="GET", body=None, headers=None, context=None):
    if context:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        conn.close()


class Scrape:
    """One scrape: samples by (name, labels)."""

    def __init__(self, port, context=None):
        status, headers, text = fetch(port, context=context)
        assert status == 200, f"GET /metrics: {status} {text}"
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
        strict_check(text)
        self.text = text
        self.samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        assert key in self.samples, f"no sample {name}{labels}"
        return self.samples[key]

    def sum(self, name, **labels):
        return sum(v for (n, ls), v in self.samples.items()
                   if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def delta(before, after, name, **labels):
    return after.get(name, **labels) - before.get(name, **labels)




@pytest.fixture
def ports():
    return {name: free_port() for name in ("router", "sm", "c2s")}


def metered_server(hearth_env, ports, **settings):
    """A Server with router, sm and c2s metrics on (sqlite), started."""
    return Server(hearth_env, **{
        "router.metrics-listen": f"127.0.0.1:{ports['router']}",
        "sm.metrics-listen": f"127.0.0.1:{ports['sm']}",
        "c2s.metrics-listen": f"127.0.0.1:{ports['c2s']}",
        **settings,
    }).start()


@pytest.fixture
def metered(hearth_env, ports):
    return metered_server(hearth_env, ports)


def login(server, user, password=PASSWORD, **kw):
    return Client(server, f"{user}@localhost", password, **kw).connect()


def test_every_daemon_serves_the_exposition_format(hearth_env, metered, ports):
    resolver_port, s2s_port = free_port(), free_port()
    hearth_env.write_config(**{
        "resolver.metrics-listen": f"127.0.0.1:{resolver_port}",
        "s2s.metrics-listen": f"127.0.0.1:{s2s_port}",
        "s2s.listen": f"127.0.0.1:{free_port()}",
        "s2s.listen-tls": "",
    })
    hearth_env.start("resolver", ("127.0.0.1", resolver_port))
    hearth_env.start("s2s", ("127.0.0.1", s2s_port))
    expected = {
        ports["router"]: ["hearth_router_links", "hearth_router_routes_total"],
        ports["sm"]: ["hearth_sm_sessions", "hearth_storage_request_seconds_bucket"],
        ports["c2s"]: ["hearth_c2s_connections", "hearth_c2s_auth_total"],
        resolver_port: ["hearth_resolver_queries_total"],
        s2s_port: ["hearth_s2s_streams", "hearth_s2s_bounces_total"],
    }
    for port, names in expected.items():
        scrape = Scrape(port)
        assert scrape.get("hearth_process_resident_memory_bytes") > 0, port
        assert scrape.sum("hearth_process_cpu_seconds_total") >= 0, port
        for name in names:
            assert any(n == name for n, _ in scrape.samples), f"{name} missing on {port}"
    # the router has a link per connected daemon: sm, c2s, resolver, s2s
    assert Scrape(ports["router"]).get("hearth_router_links") == 4


def test_registration_and_failed_logins_are_counted(metered, ports):
    before = Scrape(ports["c2s"])
    login(metered, "carol", register=True).disconnect()
    failures = 3
    for _ in range(failures):
        with pytest.raises(ClientError) as e:
            login(metered, "carol", "wrong", mechanism="SCRAM-SHA-256")
        assert e.value.condition == "not-authorized"
    after = Scrape(ports["c2s"])
    assert delta(before, after, "hearth_c2s_registrations_total", result="attempt") == 1
    assert delta(before, after, "hearth_c2s_registrations_total", result="success") == 1
    assert delta(before, after, "hearth_c2s_auth_total", mechanism="SCRAM-SHA-256",
                 result="failure") == failures
    for mech in ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"):
        assert delta(before, after, "hearth_c2s_auth_total", mechanism=mech, result="failure") == 0
    successes = (after.sum("hearth_c2s_auth_total", result="success")
                 - before.sum("hearth_c2s_auth_total", result="success"))
    assert successes == 1, f"one login (carol's after registering), counted {successes}"


def test_messages_move_stanza_counters_exactly(metered, ports):
    alice = login(metered, "alice", register=True)
    bob = login(metered, "bob", register=True)
    try:
        c2s0, sm0 = Scrape(ports["c2s"]), Scrape(ports["sm"])
        assert c2s0.get("hearth_c2s_sessions") == 2
        assert c2s0.get("hearth_c2s_connections") == 2
        assert sm0.get("hearth_sm_sessions") == 2
        n = 7
        for i in range(n):
            alice.send_message(bob.bound_jid, f"m{i}")
        for i in range(n):
            bob.wait_message(lambda m, i=i: m["body"] == f"m{i}")
        c2s1, sm1 = Scrape(ports["c2s"]), Scrape(ports["sm"])
        stanzas = "hearth_c2s_stanzas_total"
        assert delta(c2s0, c2s1, stanzas, direction="in", kind="message") == n
        assert delta(c2s0, c2s1, stanzas, direction="out", kind="message") == n
        for kind in ("presence", "iq"):
            for direction in ("in", "out"):
                assert delta(c2s0, c2s1, stanzas, direction=direction, kind=kind) == 0
        assert delta(sm0, sm1, "hearth_sm_stanzas_total", path="from_session", kind="message") == n
        assert delta(sm0, sm1, "hearth_sm_stanzas_total", path="to_session", kind="message") == n
        assert delta(sm0, sm1, "hearth_sm_messages_routed_total") == n
        # bob is online: each message finds his account in memory
        assert delta(sm0, sm1, "hearth_sm_account_cache_total", result="hit") == n
        assert delta(sm0, sm1, "hearth_sm_account_cache_total", result="miss") == 0
        assert delta(c2s0, c2s1, "hearth_c2s_bytes_total", direction="in") > 0
        assert delta(c2s0, c2s1, "hearth_c2s_bytes_total", direction="out") > 0
    finally:
        alice.disconnect()
        bob.disconnect()
    wait_for(lambda: Scrape(ports["sm"]).get("hearth_sm_sessions") == 0, what="sessions 0")
    assert Scrape(ports["c2s"]).get("hearth_c2s_sessions") == 0


def test_offline_messages_and_storage_are_counted(metered, ports):
    login(metered, "dave", register=True).disconnect()
    erin = login(metered, "erin", register=True)
    before = Scrape(ports["sm"])
    m = 3
    for i in range(m):
        erin.send_message("dave@localhost", f"offline {i}")
    offline = "hearth_sm_offline_messages_total"
    wait_for(lambda: delta(before, Scrape(ports["sm"]), offline, event="stored") == m,
             what=f"{m} offline messages stored")
    dave = login(metered, "dave")
    try:
        dave.send_presence()
        for i in range(m):
            dave.wait_message(lambda x, i=i: x["body"] == f"offline {i}")
        after = Scrape(ports["sm"])
        assert delta(before, after, offline, event="delivered") == m
        assert delta(before, after, offline, event="stored") == m
        # every storage request is in the histogram, and some were made
        requests = after.sum("hearth_storage_requests_total")
        assert requests > before.sum("hearth_storage_requests_total")
        assert after.get("hearth_storage_request_seconds_count") == requests
        assert after.get("hearth_storage_request_seconds_bucket", le="+Inf") == requests
    finally:
        dave.disconnect()
        erin.disconnect()


def settled(port, name):
    """A scrape after which the samples of name stopped moving for 200 ms,
    four times the longest an acknowledgement between c2s and sm waits
    (ACK_MAX_MS): what was sent before has all been counted."""
    last = [Scrape(port)]

    def still():
        time.sleep(0.2)
        now = Scrape(port)
        quiet = all(v == last[0].samples.get(k) for k, v in now.samples.items() if k[0] == name)
        last[0] = now
        return now if quiet else None

    return wait_for(still, f"{name} settles")


ROUTES = "hearth_router_routes_total"


def chat_through(server, ports, n):
    """frank sends grace n messages, all delivered: the router's scrapes
    (settled) before and after."""
    a = login(server, "frank", register=True)
    b = login(server, "grace", register=True)
    try:
        before = settled(ports["router"], ROUTES)
        for i in range(n):
            a.send_message(b.bound_jid, f"r{i}")
        for i in range(n):
            b.wait_message(lambda x, i=i: x["body"] == f"r{i}")
        return before, settled(ports["router"], ROUTES)
    finally:
        a.disconnect()
        b.disconnect()


def test_router_counts_routes_by_destination(hearth_env, ports):
    # without the sm's direct links: every route through the router
    metered = metered_server(hearth_env, ports, **{"sm.direct-listen": ""})
    assert Scrape(ports["sm"]).get("hearth_sm_direct_links") == 0
    n = 4
    before, after = chat_through(metered, ports, n)
    # each message is one route c2s -> sm and one sm -> c2s; the
    # acknowledgements back (grace's c2s to the sm, the sm to frank's
    # c2s) are routes too, at least one and at most one per message
    assert n + 1 <= delta(before, after, ROUTES, destination="sm") <= 2 * n
    assert n + 1 <= delta(before, after, ROUTES, destination="c2s") <= 2 * n
    assert delta(before, after, ROUTES, destination="s2s") == 0
    assert delta(before, after, "hearth_router_bytes_total", direction="in") > 0


def test_chat_skips_the_router_on_the_direct_links(metered, ports):
    """By default the sm and the c2s link directly (common/direct.c): both
    gauges say so, and a chat between two users of that c2s costs the router
    no route at all, while every message is delivered."""
    wait_for(lambda: Scrape(ports["sm"]).get("hearth_sm_direct_links") == 1, "the sm's link")
    wait_for(lambda: Scrape(ports["c2s"]).get("hearth_c2s_direct_links") == 1, "the c2s's link")
    n = 4
    before, after = chat_through(metered, ports, n)
    assert delta(before, after, ROUTES, destination="sm") == 0
    assert delta(before, after, ROUTES, destination="c2s") == 0
    sm = Scrape(ports["sm"])
    assert sm.get("hearth_sm_stanzas_total", path="to_session", kind="message") >= n


# ---- the HTTP layer's limits -------------------------------------------------


@pytest.fixture
def limited(hearth_env):
    """hearth-router alone with its metrics on and tight HTTP limits."""
    port = free_port()
    hearth_env.write_config(**{
        "router.metrics-listen": f"127.0.0.1:{port}",
        "http.max-header": "1k",
        "http.max-body": "100",
        "http.max-connections": "3",
        "http.request-timeout": "1s",
        "http.idle-timeout": "2s",
    })
    hearth_env.start("router", ("127.0.0.1", port))
    return port


def raw(port, data=b"", timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if data:
        s.sendall(data)
    return s


def read_until_closed(s, timeout=5):
    s.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    s.close()
    return b"".join(chunks)


def status_of(answer):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert m, f"not an HTTP answer: {answer[:80]!r}"
    return int(m.group(1))


def test_oversized_header_gets_431_and_close(limited):
    s = raw(limited, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    answer = read_until_closed(s)
    assert status_of(answer) == 431
    assert b"Connection: close" in answer


def test_oversized_body_gets_413_and_close(limited):
    s = raw(limited, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
    answer = read_until_closed(s)
    assert status_of(answer) == 413
    # chunked: no length announced, the body itself goes over
    s = raw(limited, b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"64\r\n" + b"x" * 100 + b"\r\n10\r\n" + b"y" * 16 + b"\r\n0\r\n\r\n")
    assert status_of(read_until_closed(s)) == 413


def test_connections_beyond_the_limit_get_503(limited):
    held = [raw(limited) for _ in range(3)]
    try:
        answer = read_until_closed(raw(limited))
        assert status_of(answer) == 503
    finally:
        for s in held:
            s.close()
    # the slots come back once those are closed
    wait_for(lambda: fetch(limited)[0] == 200, what="a scrape after the connections closed")


def test_slow_request_gets_408_and_close(limited):
    s = raw(limited, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    answer = read_until_closed(s, timeout=5)
    assert status_of(answer) == 408
    assert time.monotonic() - started < 4, "closed by http.request-timeout (1s)"


def test_keep_alive_then_idle_close(limited):
    s = raw(limited)
    f = s.makefile("rb")
    for _ in range(2):
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(f.readline()) == 200
        length = None
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        assert length and len(f.read(length)) == length
    started = time.monotonic()
    assert f.read() == b"", "the idle connection is closed"
    assert time.monotonic() - started < 5
    s.close()


def test_pipelined_requests_are_answered_in_order(limited):
    s = raw(limited, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answers = read_until_closed(s)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answers) == [b"200", b"404", b"200"]


def test_head_and_expect_continue(limited):
    conn = http.client.HTTPConnection("127.0.0.1", limited, timeout=5)
    conn.request("HEAD", "/metrics")
    r = conn.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length")) > 0
    assert r.read() == b""
    conn.close()
    s = raw(limited, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n")
    f = s.makefile("rb")
    assert f.readline() == b"HTTP/1.1 100 Continue\r\n" and f.readline() == b"\r\n"
    s.sendall(b"hello")
    assert status_of(f.readline()) == 405
    s.close()


def test_unknown_path_and_method(limited):
    assert fetch(limited, "/nothing")[0] == 404
    assert fetch(limited, "/metrics", method="POST", body="x")[0] == 405
    assert fetch(limited, "/metrics?x=1")[0] == 200
    s = raw(limited, b"this is not HTTP\r\n\r\n")
    assert status_of(read_until_closed(s)) == 400
    s = raw(limited, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n")
    assert status_of(read_until_closed(s)) == 400


def test_metrics_over_https(hearth_env, tmp_path):
    cert, key = self_signed(tmp_path, "localhost")
    port = free_port()
    hearth_env.write_config(**{"router.metrics-listen": f"127.0.0.1:{port}",
                               "http.cert": cert, "http.key": key})
    hearth_env.start("router", ("127.0.0.1", port))
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False
    scrape = Scrape(port, context=context)
    assert scrape.get("hearth_router_links") == 0
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        fetch(port)  # plain HTTP on the HTTPS port gets no answer


def test_second_c2s_serves_metrics_on_the_next_port(hearth_env):
    port = free_port_pair()
    server = Server(hearth_env, c2s=2, **{"c2s.metrics-listen": f"127.0.0.1:{port}"}).start()
    a = login(server, "henry", register=True, port=server.c2s_ports[1])
    try:
        assert Scrape(port + 1).get("hearth_c2s_sessions") == 1
        assert Scrape(port).get("hearth_c2s_sessions") == 0
    finally:
        a.disconnect()


# ---- federation ---------------------------------------------------------------


def test_s2s_counts_stanzas_streams_and_bounces(tmp_path):
    from test_s2s import start_pair, stop_servers
    port_a, port_b = free_port(), free_port()
    a, b = start_pair(tmp_path, {"s2s.metrics-listen": f"127.0.0.1:{port_a}"},
                      {"s2s.metrics-listen": f"127.0.0.1:{port_b}"})
    try:
        alice, bob = a.client("alice"), b.client("bob")
        before_a, before_b = Scrape(port_a), Scrape(port_b)
        n = 3
        for i in range(n):
            alice.send_message("bob@b.test", f"fed{i}")
        for i in range(n):
            bob.wait_message(lambda m, i=i: m["body"] == f"fed{i}")
        after_a, after_b = Scrape(port_a), Scrape(port_b)
        stanzas = "hearth_s2s_stanzas_total"
        assert delta(before_a, after_a, stanzas, direction="out", kind="message") == n
        assert delta(before_b, after_b, stanzas, direction="in", kind="message") == n
        assert delta(before_a, after_a, stanzas, direction="in", kind="message") == 0
        assert after_a.get("hearth_s2s_streams", direction="out", state="ready") == 1
        assert after_b.get("hearth_s2s_streams", direction="in", state="authenticated") == 1
        alice.send_message("nobody@down.test", "lost")
        err = alice.wait_message(lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "remote-server-not-found"
        assert delta(after_a, Scrape(port_a), "hearth_s2s_bounces_total") == 1
        alice.disconnect()
        bob.disconnect()
    finally:
        stop_servers(a, b)


def test_resolver_counts_queries_hits_and_failures(tmp_path):
    from test_s2s import Hearth, stop_servers
    port_a, port_b, metrics = free_port(), free_port(), free_port()
    a = Hearth(tmp_path / "a", "a.test", port_a, {}, resolver=True, **{
        "resolver.override": [{"domain": "b.test", "target": f"127.0.0.1:{port_b}"}],
        "resolver.nameserver": f"127.0.0.1:{free_port()}",  # nobody answers there
        "resolver.timeout": "300ms",
        "resolver.metrics-listen": f"127.0.0.1:{metrics}"})
    b = Hearth(tmp_path / "b", "b.test", port_b, {"a.test": f"127.0.0.1:{port_a}"})
    try:
        a.start()
        b.start()
        alice, bob = a.client("alice"), b.client("bob")
        before = Scrape(metrics)
        alice.send_message("bob@b.test", "via the resolver")
        bob.wait_message(lambda m: m["body"] == "via the resolver")
        after = Scrape(metrics)
        assert delta(before, after, "hearth_resolver_queries_total") == 1
        assert delta(before, after, "hearth_resolver_cache_hits_total") == 1, "an override"
        assert delta(before, after, "hearth_resolver_failures_total") == 0
        alice.send_message("carl@unknown.test", "nowhere")
        err = alice.wait_message(lambda m: m["type"] == "error", timeout=10)
        assert err["error"]["condition"] == "remote-server-not-found"
        last = Scrape(metrics)
        assert delta(after, last, "hearth_resolver_queries_total") == 1
        assert delta(after, last, "hearth_resolver_failures_total") == 1
        assert delta(after, last, "hearth_resolver_cache_hits_total") == 0
        alice.disconnect()
        bob.disconnect()
    finally:
        stop_servers(a, b)
