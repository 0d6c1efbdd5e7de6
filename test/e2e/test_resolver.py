"""hearth-resolver end to end: a real DNS server (dnsmasq on loopback, on a
free port, started by each test with its records) answers the resolver's
SRV, AAAA and A queries; a native component (hearth-testcomp), bound as
"s2s", sends <resolve/> requests through the real router and reads the
<resolved/> answers (protocol in resolver/resolver.h)."""
import os
import re
import socket
import time
import xml.etree.ElementTree as ET

import pytest

from hearth_env import BUILDDIR, DNSMASQ, Router
from testcomp import Component

NS = "urn:hearth:resolver:1"
pytestmark = pytest.mark.skipif(not os.path.exists(DNSMASQ),
                                reason="dnsmasq is not installed (Debian: dnsmasq-base)")




@pytest.fixture
def lab(hearth_env, dns):
    """Start the router, the resolver (asking dns) and a component bound as
    "s2s": lab(**settings) -> Asker."""
    started = []

    def start(**settings):
        hearth_env.write_config(**{"resolver.nameserver": f"127.0.0.1:{dns.port}",
                                   "resolver.timeout": "1s", **settings})
        hearth_env.add(Router(hearth_env)).start()
        hearth_env.start("resolver")
        comp = Component(BUILDDIR, f"127.0.0.1:{hearth_env.port}", hearth_env.accounts["s2s"],
                         "s2s", "s2s default", user="s2s", logdir=hearth_env.logdir)
        started.append(comp)
        comp.expect("ready")
        comp.saw("advert resolver available")
        return Asker(comp)

    yield start
    for c in started:
        c.close()


class Asker:
    def __init__(self, comp):
        self.comp = comp
        self.next_id = 0

    def send(self, domain):
        self.next_id += 1
        self.comp.cmd(f"raw <route to='resolver' from='s2s'><resolve xmlns='{NS}' "
                      f"id='{self.next_id}' domain='{domain}'/></route>")
        return str(self.next_id)

    def receive(self, ident, timeout=10):
        line = self.comp.expect(lambda l: l.startswith("<route") and
                                re.search(f"id=[\"']{ident}[\"']", l), timeout)
        route = ET.fromstring(line)
        res = route.find(f"{{{NS}}}resolved")
        assert res is not None, f"no <resolved/> in {line}"
        assert res.get("id") == ident, line
        return res

    def resolve(self, domain):
        """(error, [(host, port, tls, addr)...]) for domain."""
        res = self.receive(self.send(domain))
        assert res.get("domain") == domain, ET.tostring(res)
        return res.get("error"), [(t.get("host"), t.get("port"), t.get("tls"), t.get("addr"))
                                  for t in res.findall(f"{{{NS}}}target")]


def test_srv_targets_ordered_by_priority_with_ipv6_and_ipv4(dns, lab):
    dns.start("--srv-host=_xmpp-server._tcp.prio.test,late.prio.test,5300,20,0",
              "--srv-host=_xmpp-server._tcp.prio.test,early.prio.test,5200,10,0",
              "--host-record=early.prio.test,127.0.0.2,::2",
              "--host-record=late.prio.test,127.0.0.3,::3")
    error, targets = lab().resolve("prio.test")
    assert error is None, error
    assert targets == [("early.prio.test", "5200", "starttls", "::2"),
                       ("early.prio.test", "5200", "starttls", "127.0.0.2"),
                       ("late.prio.test", "5300", "starttls", "::3"),
                       ("late.prio.test", "5300", "starttls", "127.0.0.3")], targets


def test_xmpps_before_xmpp_at_equal_priority_tagged_direct(dns, lab):
    dns.start("--srv-host=_xmpp-server._tcp.mix.test,plain.mix.test,5269,10,0",
              "--srv-host=_xmpps-server._tcp.mix.test,tls.mix.test,5270,10,0",
              "--srv-host=_xmpps-server._tcp.mix.test,tls2.mix.test,5271,30,0",
              "--host-record=plain.mix.test,127.0.0.4",
              "--host-record=tls.mix.test,127.0.0.5",
              "--host-record=tls2.mix.test,127.0.0.6")
    error, targets = lab().resolve("mix.test")
    assert error is None, error
    assert targets == [("tls.mix.test", "5270", "direct", "127.0.0.5"),
                       ("plain.mix.test", "5269", "starttls", "127.0.0.4"),
                       ("tls2.mix.test", "5271", "direct", "127.0.0.6")], targets


def test_weights_spread_lookups_at_random(dns, lab):
    dns.start("--srv-host=_xmpp-server._tcp.weight.test,light.weight.test,5269,10,1",
              "--srv-host=_xmpp-server._tcp.weight.test,heavy.weight.test,5269,10,3",
              "--host-record=light.weight.test,127.0.0.7",
              "--host-record=heavy.weight.test,127.0.0.8", ttl=300)
    asker = lab()
    for _ in range(200):
        asker.send("weight.test")
    first = {"light.weight.test": 0, "heavy.weight.test": 0}
    for _ in range(200):
        line = asker.comp.expect("<route")
        targets = ET.fromstring(line).find(f"{{{NS}}}resolved").findall(f"{{{NS}}}target")
        assert len(targets) == 2, ET.tostring(targets[0]) if targets else "no target"
        first[targets[0].get("host")] += 1
    assert first["light.weight.test"] > 0 and first["heavy.weight.test"] > 0, first
    assert first["heavy.weight.test"] > first["light.weight.test"], first


def test_dot_target_means_no_service(dns, lab):
    dns.start("--srv-host=_xmpp-server._tcp.none.test", "--host-record=none.test,127.0.0.9")
    assert lab().resolve("none.test") == ("no-service", [])


def test_no_srv_falls_back_to_domain_on_5269(dns, lab):
    dns.start("--host-record=plain.test,127.0.0.10,::10")
    error, targets = lab().resolve("plain.test")
    assert error is None, error
    assert targets == [("plain.test", "5269", "starttls", "::10"),
                       ("plain.test", "5269", "starttls", "127.0.0.10")], targets


def test_unknown_domain_is_not_found(dns, lab):
    dns.start("--host-record=known.test,127.0.0.11")
    assert lab().resolve("unknown.test") == ("not-found", [])


def test_answer_cached_while_dns_is_down(dns, lab):
    dns.start("--host-record=cached.test,127.0.0.12", ttl=300)
    asker = lab()
    first = asker.resolve("cached.test")
    assert first == (None, [("cached.test", "5269", "starttls", "127.0.0.12")]), first
    dns.stop()
    assert asker.resolve("cached.test") == first


def test_answer_expires_with_its_ttl(dns, lab):
    dns.start("--host-record=moving.test,127.0.0.13", ttl=1)
    asker = lab()
    assert asker.resolve("moving.test") == (None, [("moving.test", "5269", "starttls", "127.0.0.13")])
    dns.stop()
    dns.start("--host-record=moving.test,127.0.0.14", ttl=1)
    time.sleep(1.5)
    assert asker.resolve("moving.test") == (None, [("moving.test", "5269", "starttls", "127.0.0.14")])


def test_override_wins_without_dns(dns, lab):
    # dns is never started: nothing answers on its port.
    asker = lab(**{"resolver.override": [
        {"domain": "over.test", "target": "127.0.0.15:25269", "tls": "direct"},
        {"domain": "over.test", "target": "[::1]:25270"}]})
    assert asker.resolve("over.test") == (None, [("127.0.0.15", "25269", "direct", "127.0.0.15"),
                                                 ("::1", "25270", "starttls", "::1")])


def test_failure_cached_for_negative_ttl(dns, lab):
    dns.start("--host-record=other.test,127.0.0.16")
    asker = lab(**{"resolver.negative-ttl": "5s"})
    began = time.monotonic()
    assert asker.resolve("late.test") == ("not-found", [])
    dns.stop()
    dns.start("--host-record=late.test,127.0.0.17")
    assert asker.resolve("late.test") == ("not-found", []), "the failure was not cached"
    assert time.monotonic() - began < 5, "too slow to see the cached failure"
    time.sleep(max(0.0, began + 5.5 - time.monotonic()))
    assert asker.resolve("late.test") == (None, [("late.test", "5269", "starttls", "127.0.0.17")])


def test_silent_nameserver_is_timeout(dns, lab):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", dns.port))  # reads nothing, answers nothing
        asker = lab()
        began = time.monotonic()
        res = asker.receive(asker.send("slow.test"), timeout=20)
        assert res.get("error") == "timeout", ET.tostring(res)
        assert time.monotonic() - began < 10
        # A lookup still running when the resolver stops is cancelled
        # cleanly (teardown checks its exit status).
        asker.send("pending.test")
        time.sleep(0.2)


def test_request_without_domain_is_bad_request(lab):
    asker = lab()
    asker.comp.cmd(f"raw <route to='resolver' from='s2s'><resolve xmlns='{NS}' id='x'/></route>")
    res = asker.receive("x")
    assert res.get("error") == "bad-request", ET.tostring(res)
