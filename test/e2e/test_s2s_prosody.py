"""Federation with another implementation: Hearth (hearth.test) and Prosody
(prosody.test, Debian's package), started by the test with its own config
in a temporary directory. Hearth finds Prosody by a static s2s route;
Prosody finds Hearth through a small plugin written by the test
(hearth_route), which answers its SRV resolver for hearth.test with a
loopback port, so no DNS is involved. The servers use STARTTLS with
self-signed certificates and authenticate with server dialback."""
import os
import shutil
import subprocess
import time
from types import SimpleNamespace

import pytest

from hearth_env import Daemon, Env, Server, accepts, free_port, is_built, tail
from xmpp_client import Client

PROSODY = shutil.which("prosody") or "/usr/bin/prosody"
PROSODYCTL = shutil.which("prosodyctl") or "/usr/bin/prosodyctl"

pytestmark = [
    pytest.mark.skipif(not is_built("s2s"), reason="hearth-s2s is not built"),
    pytest.mark.skipif(not os.path.exists(PROSODY), reason="prosody is not installed"),
]

PLUGIN = """\
-- Test only: connect to the hosts of hearth_routes at a fixed address
-- instead of looking up their SRV records.
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
        if srv ~= "xmpp-server" then
            return manual.new({}, conn_type, extra);
        end
        return basic.new(route[1], route[2], conn_type, extra);
    end
end
"""


class Prosody:
    def __init__(self, tmpdir, domain, hearth_domain, hearth_port):
        self.dir = str(tmpdir)
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        self.domain = domain
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = self.port
        self.s2s_port = free_port()
        self.cert_path = os.path.join(self.dir, f"{domain}.crt")
        self.key = os.path.join(self.dir, f"{domain}.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain}",
                        "-keyout", self.key, "-out", self.cert_path],
                       check=True, capture_output=True)
        with open(os.path.join(self.dir, "mod_hearth_route.lua"), "w") as f:
            f.write(PLUGIN)
        self.log = os.path.join(self.dir, "prosody.log")
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        with open(self.config, "w") as f:
            f.write(f"""
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
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
s2s_secure_auth = false
s2s_require_encryption = true
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "presence";
                    "posix"; "hearth_route" }}
hearth_routes = {{ ["{hearth_domain}"] = {{ "127.0.0.1", {hearth_port} }} }}
VirtualHost "{domain}"
    ssl = {{ certificate = "{self.cert_path}"; key = "{self.key}" }}
""")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([PROSODY, "--config", self.config], stdin=subprocess.DEVNULL,
                                     stdout=open(os.path.join(self.dir, "stdout"), "wb"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prosody exited {self.proc.returncode}:\n"
                                     f"{tail(os.path.join(self.dir, 'stdout'))}\n{tail(self.log)}")
            if accepts(self.host, self.port) and accepts(self.host, self.s2s_port):
                return self
            time.sleep(0.1)
        raise AssertionError(f"prosody does not listen\n{tail(self.log)}")

    def register(self, user, password):
        subprocess.run([PROSODYCTL, "--config", self.config, "register", user, self.domain,
                        password], check=True, capture_output=True, timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def federation(tmp_path):
    hearth_s2s = free_port()
    prosody = Prosody(tmp_path / "prosody", "prosody.test", "hearth.test", hearth_s2s)
    env = Env(tmp_path / "hearth")
    server = Server(env, domain="hearth.test", **{
        "s2s.listen": f"127.0.0.1:{hearth_s2s}",
        "s2s.route": [{"domain": "prosody.test", "target": f"127.0.0.1:{prosody.s2s_port}"}],
        "s2s.verify-certificates": "false",
        "s2s.connect-timeout": "5s"})
    s2s = Daemon("s2s", env.config_path, env.logdir, ("127.0.0.1", hearth_s2s))
    try:
        prosody.start()
        prosody.register("pat", "pw-secret")
        server.start()
        mark = os.path.getsize(server.router.log)
        env.add(s2s)
        s2s.start()
        server.wait_router_log(" bound s2s", mark, 10, s2s)
        yield SimpleNamespace(server=server, prosody=prosody, s2s=s2s)
    except Exception:
        print(f"--- prosody log ---\n{tail(prosody.log, 60)}")
        raise
    finally:
        prosody.stop()
        env.stop_all()


def connect(server, name, register):
    c = Client(server, f"{name}@{server.domain}", "pw-secret", register=register)
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False
    c.connect()
    c.send_presence()
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
    except AssertionError:
        print(f"--- prosody log ---\n{tail(federation.prosody.log, 80)}")
        raise
    finally:
        hearth.disconnect()
        pat.disconnect()
