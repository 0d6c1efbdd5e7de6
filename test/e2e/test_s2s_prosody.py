"""Federation with another implementation: Hearth (hearth.test) and Prosody
(prosody.test, Debian's package), started by the test with its own config
in a temporary directory. Hearth finds Prosody by a static s2s route;
Prosody finds Hearth through a small plugin written by the test
(hearth_route), which answers its SRV resolver for hearth.test with a
loopback port, so no DNS is involved. Every test runs twice: with
self-signed certificates, the servers authenticate with server dialback
over STARTTLS; with certificates from a CA made by the test, both require
valid certificates (Prosody's s2s_secure_auth, without its dialback
module; Hearth's s2s.auth=certificate) and authenticate with SASL
EXTERNAL (XEP-0178)."""
import os
import re
from types import SimpleNamespace

import pytest

from hearth_env import Daemon, Env, Server, TestCA, free_port, is_built, self_signed, tail
from prosody_env import PROSODY, ProsodyBase
from xmpp_client import Client


pytestmark = [
    pytest.mark.skipif(not is_built("s2s"), reason="hearth-s2s is not built"),
    pytest.mark.skipif(not os.path.exists(PROSODY), reason="prosody is not installed"),
]

PLUGIN = """\
-- Test only: connect to the hosts of hearth_routes at a fixed address
-- instead of looking up their SRV records: { host, port, direct TLS port }.
local service = require "net.resolvers.service";
local basic = require "net.resolvers.basic";
local manual = require "net.resolvers.manual";
local routes = module:get_option("hearth_routes", {});
if not service.hearth_original_new then
    service.hearth_original_new = service.new;
    service.new = function (hostname, srv, conn_type, extra)
        local route = routes[hostname];
        if not route then
            return service.hearth_original_new(hostname, srv, conn_type, extra);
        end
        if srv == "xmpps-server" and route[3] then
            return basic.new(route[1], route[3], conn_type, extra);
        end
        if srv ~= "xmpp-server" then
            return manual.new({}, conn_type, extra);
        end
        return basic.new(route[1], route[2], conn_type, extra);
    end
end
"""


class Prosody(ProsodyBase):
    def __init__(self, tmpdir, domain, hearth_domain, hearth_port, ca=None,
                 hearth_tls_port=None):
        """ca: a TestCA that issues Prosody's certificate and that Prosody
        trusts, requiring valid certificates; None: self-signed, dialback.
        hearth_tls_port: Hearth's direct TLS port, which Prosody then uses
        (XEP-0368), and Prosody takes direct TLS on s2s_tls_port too."""
        super().__init__(tmpdir, domain)
        self.s2s_port = free_port()
        self.s2s_tls_port = free_port() if hearth_tls_port else None
        if ca:
            self.cert_path, self.key = ca.issue(domain)
            cafile = f'; cafile = "{ca.cert}"'
            auth = 's2s_secure_auth = true\nmodules_disabled = { "dialback" }'
        else:
            self.cert_path, self.key = self_signed(self.dir, domain)
            cafile = ""
            auth = "s2s_secure_auth = false"
        ssl = f'certificate = "{self.cert_path}"; key = "{self.key}"{cafile}'
        direct = f"s2s_direct_tls_ports = {{ {self.s2s_tls_port} }}" if hearth_tls_port else ""
        route = ", ".join(['"127.0.0.1"', str(hearth_port)] +
                          ([str(hearth_tls_port)] if hearth_tls_port else []))
        with open(os.path.join(self.dir, "mod_hearth_route.lua"), "w") as f:
            f.write(PLUGIN)
        self.write_config(f"""
daemonize = false
run_as_root = true
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.dir}/data"
plugin_paths = {{ "{self.dir}" }}
log = {{ debug = "{self.log}" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ {self.s2s_port} }}
{direct or "s2s_direct_tls_ports = { }"}
http_ports = {{ }}
https_ports = {{ }}
{auth}
s2s_require_encryption = true
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "presence";
                    "posix"; "hearth_route" }}
hearth_routes = {{ ["{hearth_domain}"] = {{ {route} }} }}
ssl = {{ {ssl} }}
VirtualHost "{domain}"
    ssl = {{ {ssl} }}
""")

    def ports(self):
        return [self.port, self.s2s_port]


@pytest.fixture(params=["dialback", "certificate", "direct-tls"])
def federation(tmp_path, request):
    """Hearth (hearth.test) and Prosody (prosody.test) federating: by
    dialback over STARTTLS; by SASL EXTERNAL with certificates from a test
    CA; or by dialback over direct TLS (XEP-0368) both ways."""
    hearth_s2s = free_port()
    hearth_tls = free_port() if request.param == "direct-tls" else None
    ca = TestCA(tmp_path / "ca") if request.param == "certificate" else None
    prosody = Prosody(tmp_path / "prosody", "prosody.test", "hearth.test", hearth_s2s, ca,
                      hearth_tls)
    route = {"domain": "prosody.test", "target": f"127.0.0.1:{prosody.s2s_port}"}
    if hearth_tls:
        route = {"domain": "prosody.test", "target": f"127.0.0.1:{prosody.s2s_tls_port}",
                 "tls": "direct"}
    certificates = {}
    if ca:
        cert, key = ca.issue("hearth.test")
        certificates = {"s2s.cert": cert, "s2s.key": key, "s2s.ca": ca.cert,
                        "s2s.auth": "certificate"}
    env = Env(tmp_path / "hearth")
    server = Server(env, domain="hearth.test", **{
        "s2s.listen": f"127.0.0.1:{hearth_s2s}",
        "s2s.route": route,
        "s2s.listen-tls": f"127.0.0.1:{hearth_tls}" if hearth_tls else "",
        "s2s.connect-timeout": "5s",
        **certificates})
    s2s = Daemon("s2s", env.config_path, env.logdir, ("127.0.0.1", hearth_s2s))
    try:
        prosody.start()
        prosody.register("pat", "pw-secret")
        server.start()
        mark = os.path.getsize(server.router.log)
        env.add(s2s)
        s2s.start()
        server.wait_router_log(" bound s2s", mark, 10, s2s)
        yield SimpleNamespace(server=server, prosody=prosody, s2s=s2s, auth=request.param)
    except Exception:
        print(f"--- prosody log ---\n{tail(prosody.log, 60)}")
        raise
    finally:
        prosody.stop()
        env.stop_all()


def connect(server, name, register, resource=None, **presence):
    """A client of name@server's domain, logged in and available; presence
    holds send_presence's pshow=, pstatus=... for the initial presence."""
    c = Client(server, f"{name}@{server.domain}", "pw-secret", register=register,
               resource=resource)
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False
    c.connect()
    c.send_presence(**presence)
    return c


def test_messages_with_prosody(federation):
    hearth = connect(federation.server, "hana", register=True)
    pat = connect(federation.prosody, "pat", register=False)
    try:
        hearth.send_message("pat@prosody.test", "hello Prosody")
        m = pat.wait_message(timeout=15)
        assert m["body"] == "hello Prosody"
        assert m["from"].bare == "hana@hearth.test"
        pat.send_message("hana@hearth.test", "hello Hearth")
        m = hearth.wait_message(timeout=15)
        assert m["body"] == "hello Hearth"
        assert m["from"].bare == "pat@prosody.test"
        with open(federation.s2s.log) as f:
            log = f.read()
        if federation.auth == "certificate":
            assert "hearth.test -> prosody.test: authenticated by certificate (SASL EXTERNAL)" in log
            assert "prosody.test authenticated by certificate (SASL EXTERNAL)" in log
            assert "dialback" not in log
        else:
            assert "hearth.test -> prosody.test: dialback accepted" in log
        if federation.auth == "direct-tls":  # both ways
            tls_port = federation.prosody.s2s_tls_port
            assert f"connecting to 127.0.0.1:{tls_port} (direct TLS)" in log
            assert re.search(r"s2s incoming from \S+ \(direct TLS\)", log), log
    except AssertionError:
        print(f"--- prosody log ---\n{tail(federation.prosody.log, 80)}")
        raise
    finally:
        hearth.disconnect()
        pat.disconnect()


def presence_type(p):
    """The type attribute of a presence ("available" without one): slixmpp's
    p["type"] gives the show value instead for an available presence."""
    return p.xml.get("type", "available")


def wait_presence_from(client, jid, ptype, show=None, timeout=15):
    """The next presence of type ptype from jid (a full JID, or a bare JID
    for the subscription states), with this show value if one is given
    (probes answered in between bring the contact's presence again)."""
    return client.wait_presence(
        lambda p: (str(p["from"]) == str(jid) and presence_type(p) == ptype
                   and (show is None or p["show"] == show)), timeout=timeout)


def wait_roster_push(client, jid, subscription, timeout=15):
    """The next roster push whose item for the bare JID jid has this
    subscription; returns the item (a dict with "ask" etc.)."""
    def is_push(iq):
        if iq["type"] != "set" or iq.xml.find("{jabber:iq:roster}query") is None:
            return False
        item = iq["roster"]["items"].get(jid)
        return item is not None and item["subscription"] == subscription
    iq = client.wait_iq(is_push, timeout=timeout)
    # RFC 6121 2.1.6: a push comes from the user's own bare JID (or none)
    assert iq["from"].bare in ("", client.jid.bare), iq
    return iq["roster"]["items"][jid]


def test_mutual_subscription_and_presence_with_prosody(federation):
    """RFC 6121 across implementations: hana (Hearth) and pat (Prosody)
    subscribe to each other and approve, both rosters end at 'both', and
    then each sees the other's resources come and go, with show and status
    as sent, and each new resource learns the other's presence by a probe."""
    hana_jid, pat_jid = "hana@hearth.test", "pat@prosody.test"
    hana = connect(federation.server, "hana", register=True)
    pat = connect(federation.prosody, "pat", register=False)
    extra = []
    try:
        # interested resources (RFC 6121 2.1.6): the servers push to them
        assert hana.roster_get() == {}
        assert pat.roster_get() == {}

        # hana subscribes to pat; pat approves
        hana.send_presence(pto=pat_jid, ptype="subscribe")
        item = wait_roster_push(hana, pat_jid, "none")
        assert item["ask"] == "subscribe"
        req = pat.wait_presence(lambda p: presence_type(p) == "subscribe", timeout=15)
        assert req["from"].full == hana_jid  # bare: RFC 6121 3.1.2
        pat.send_presence(pto=hana_jid, ptype="subscribed")
        assert not wait_roster_push(pat, hana_jid, "from")["ask"]
        wait_presence_from(hana, pat_jid, "subscribed")
        assert not wait_roster_push(hana, pat_jid, "to")["ask"]
        # Prosody then sends pat's current presence to hana
        wait_presence_from(hana, pat.bound_jid, "available")

        # pat subscribes to hana; hana approves
        pat.send_presence(pto=hana_jid, ptype="subscribe")
        assert wait_roster_push(pat, hana_jid, "from")["ask"] == "subscribe"
        wait_presence_from(hana, pat_jid, "subscribe")
        hana.send_presence(pto=pat_jid, ptype="subscribed")
        assert not wait_roster_push(hana, pat_jid, "both")["ask"]
        wait_presence_from(pat, hana_jid, "subscribed")
        assert not wait_roster_push(pat, hana_jid, "both")["ask"]
        # Hearth then sends hana's current presence to pat
        wait_presence_from(pat, hana.bound_jid, "available")

        for client, contact in ((hana, pat_jid), (pat, hana_jid)):
            roster = client.roster_get()
            assert list(roster) == [contact], roster
            assert roster[contact]["subscription"] == "both", roster
            assert not roster[contact]["ask"], roster

        # a second resource of each comes online: the contact sees it with
        # its show and status; the new resource learns the contact's
        # presence (each server probes the other); then it goes offline
        for server, name, watcher, show, status in (
                (federation.prosody, "pat", hana, "away", "at the café <back soon> & \"quoted\""),
                (federation.server, "hana", pat, "dnd", "в дороге <tag/> & 'so on' 🚲")):
            second = connect(server, name, register=False, resource=f"{name}2",
                             pshow=show, pstatus=status)
            extra.append(second)
            p = wait_presence_from(watcher, second.bound_jid, "available")
            assert (p["show"], p["status"]) == (show, status)
            wait_presence_from(second, watcher.bound_jid, "available")
            second.disconnect()
            wait_presence_from(watcher, second.bound_jid, "unavailable")

        # the first resources change their presence
        pat.send_presence(pshow="xa", pstatus="gone fishing")
        p = wait_presence_from(hana, pat.bound_jid, "available", show="xa")
        assert p["status"] == "gone fishing"
        hana.send_presence(pshow="chat", pstatus="let's talk")
        p = wait_presence_from(pat, hana.bound_jid, "available", show="chat")
        assert p["status"] == "let's talk"

        # an unavailable presence with a status, each way (hana first: an
        # unavailable user is sent no presence until she is back)
        hana.send_presence(ptype="unavailable", pstatus="signing off")
        p = wait_presence_from(pat, hana.bound_jid, "unavailable")
        assert p["status"] == "signing off"
        hana.send_presence(pstatus="back again")
        p = wait_presence_from(pat, hana.bound_jid, "available")
        assert (p["show"], p["status"]) == ("", "back again")
        # back: Hearth probes pat again, and hana learns pat's presence
        p = wait_presence_from(hana, pat.bound_jid, "available", show="xa")
        assert p["status"] == "gone fishing"
        pat.send_presence(ptype="unavailable", pstatus="off to bed")
        p = wait_presence_from(hana, pat.bound_jid, "unavailable")
        assert p["status"] == "off to bed"
    except AssertionError:
        print(f"--- prosody log ---\n{tail(federation.prosody.log, 80)}")
        raise
    finally:
        for c in [hana, pat] + extra:
            c.disconnect()
