"""Readiness and reload of the real daemons.

Readiness (systemd's Type=notify): a daemon started with NOTIFY_SOCKET
sends READY=1 to that datagram socket, which the test binds, once it is
ready: the router once it listens, the others once they are logged in to
the router.

SIGHUP: the log file is reopened (rotation), hearth.xml read again and, if
valid, the new certificates go to new connections while logged-in clients
keep their sessions, and c2s takes its new limits; an invalid file is
logged and the running settings kept. `hearthd reload` sends SIGHUP to
every daemon it runs."""
import os
import shutil
import signal
import socket
import ssl
import subprocess

import pytest

from hearth_env import BUILDDIR, Daemon, Router, Server, accepts, free_port, self_signed, tail, wait_for
from xmpp_client import Client, ClientError

PASSWORD = "correct horse"




def log_has(daemon, text, mark=0):
    with open(daemon.log, errors="replace") as f:
        f.seek(mark)
        return text in f.read()


def log_size(daemon):
    return os.path.getsize(daemon.log) if os.path.exists(daemon.log) else 0


def login(server, user, register=True, **kw):
    return Client(server, f"{user}@localhost", PASSWORD, register=register, **kw).connect()


# ---- readiness ------------------------------------------------------------------

class NotifySocket:
    """A datagram socket for NOTIFY_SOCKET: a file in tmpdir, or an
    abstract name (given to the daemon as @name)."""

    def __init__(self, tmpdir, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"hearth-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(str(tmpdir), "notify")
            self.sock.bind(self.address)
            os.chmod(self.address, 0o777)

    def receive(self, timeout=10):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096)
        except socket.timeout:
            return None

    def pending(self):
        self.sock.setblocking(False)
        try:
            return self.sock.recv(4096)
        except BlockingIOError:
            return None

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path, monkeypatch):
    made = []

    def make(abstract=False):
        n = NotifySocket(tmp_path, abstract)
        made.append(n)
        monkeypatch.setenv("NOTIFY_SOCKET", n.address)
        return n

    yield make
    for n in made:
        n.close()


def test_router_says_ready_once_it_listens(hearth_env, notify):
    sock = notify()
    router = hearth_env.add(Router(hearth_env))
    router.addr = None  # do not wait for the port: READY=1 must come by itself
    router.start()
    message = sock.receive()
    assert message == b"READY=1", f"the router sent {message!r}\n{router.log_tail()}"
    assert accepts("127.0.0.1", hearth_env.port), "READY=1 came before the router listens"


def test_sm_says_ready_only_after_logging_in_to_the_router(hearth_env, notify, monkeypatch):
    sock = notify(abstract=True)
    router = Router(hearth_env)
    sm = hearth_env.add(Daemon("sm", hearth_env.config_path, hearth_env.logdir))
    sm.start()
    # the sm runs, and keeps trying a router that is not there yet
    wait_for(lambda: log_has(sm, "router link"), "the sm never tried the router")
    assert sock.pending() is None, "the sm said READY=1 without a router"
    monkeypatch.delenv("NOTIFY_SOCKET")
    hearth_env.add(router).start()
    message = sock.receive()
    assert message == b"READY=1", f"the sm sent {message!r}\n{sm.log_tail()}"
    assert log_has(router, "sm bound localhost"), \
        f"READY=1 before the sm bound its domain\n{router.log_tail()}"


# ---- SIGHUP ----------------------------------------------------------------------

def presented_certificate(host, port):
    """The DER certificate a direct TLS port presents now."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection((host, port), timeout=5),
                         server_hostname="localhost") as tls:
        return tls.getpeercert(binary_form=True)


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def hup(daemon, mark=None):
    """SIGHUP to daemon; wait until it logs the outcome of the reload."""
    mark = log_size(daemon) if mark is None else mark
    os.kill(daemon.pid, signal.SIGHUP)
    wait_for(lambda: log_has(daemon, "reloaded", mark) or log_has(daemon, "reload: ", mark),
             f"hearth-{daemon.ident or daemon.name} never logged its reload")
    return mark


@pytest.fixture
def certified(hearth_env, tmp_path):
    """A server whose c2s uses a certificate file of the test's (old/), and
    a second certificate (new/) to put in its place."""
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    cert, key = self_signed(tmp_path / "old", "localhost")
    new = self_signed(tmp_path / "new", "localhost")
    server = Server(hearth_env, **{"c2s.cert": cert, "c2s.key": key}).start()
    return server, (cert, key), new


def test_sighup_gives_new_connections_the_new_certificate_and_keeps_sessions(certified):
    server, (cert, key), (new_cert, new_key) = certified
    c2s = server.c2s[0]
    alice, bob = login(server, "alice"), login(server, "bob")
    assert presented_certificate(server.host, server.tls_port) == der_of(cert)
    shutil.copyfile(new_cert, cert)
    shutil.copyfile(new_key, key)
    mark = hup(c2s)
    assert log_has(c2s, "reloaded", mark), c2s.log_tail()
    assert presented_certificate(server.host, server.tls_port) == der_of(new_cert), \
        "a new connection still gets the old certificate"
    alice.send_message(bob.bound_jid, "after the reload")
    msg = bob.wait_message(lambda m: m["body"] == "after the reload")
    assert str(msg["from"]) == alice.bound_jid
    assert not alice.disconnected.is_set() and not bob.disconnected.is_set()
    carol = login(server, "carol")  # a new login, over the new certificate
    carol.disconnect()
    alice.disconnect()
    bob.disconnect()


def test_sighup_with_a_certificate_that_does_not_load_keeps_the_old_one(certified):
    server, (cert, key), _ = certified
    c2s = server.c2s[0]
    with open(cert, "w") as f:
        f.write("not a certificate\n")
    mark = hup(c2s)
    assert log_has(c2s, "keeping the running settings", mark), c2s.log_tail()
    assert c2s.is_running()
    login(server, "alice").disconnect()


@pytest.mark.parametrize("name", ["router", "sm", "c2s"])
def test_sighup_with_a_broken_config_keeps_the_old_settings(hearth_env, name):
    server = Server(hearth_env).start()
    daemon = {"router": server.router, "sm": server.sm, "c2s": server.c2s[0]}[name]
    with open(daemon.config_path) as f:
        good = f.read()
    with open(daemon.config_path, "w") as f:
        f.write(good.replace("</hearth>", "<no-such-setting/></hearth>"))
    mark = hup(daemon)
    assert log_has(daemon, "no-such-setting", mark) and \
        log_has(daemon, "keeping the running settings", mark), daemon.log_tail()
    assert daemon.is_running(), daemon.log_tail()
    alice, bob = login(server, "alice"), login(server, "bob")
    alice.send_message(bob.bound_jid, "still configured")
    assert bob.wait_message(lambda m: m["body"] == "still configured")
    alice.disconnect()
    bob.disconnect()


def test_sighup_applies_new_c2s_limits_to_new_connections(hearth_env):
    server = Server(hearth_env, **{"c2s.registration": "false"}).start()
    with pytest.raises(ClientError) as refused:
        login(server, "dave")
    assert refused.value.condition == "service-unavailable", str(refused.value)
    server.write_config(**{"c2s.registration": "true"})
    mark = hup(server.c2s[0])
    assert log_has(server.c2s[0], "reloaded", mark), server.c2s[0].log_tail()
    login(server, "dave").disconnect()


def test_sighup_reopens_a_log_file_moved_away(hearth_env):
    log = os.path.join(hearth_env.dir, "router-file.log")
    hearth_env.write_config(**{"log@target": log})
    router = hearth_env.add(Router(hearth_env)).start()
    wait_for(lambda: os.path.exists(log) and "listening" in tail(log), "no router log file")
    rotated = log + ".1"
    os.rename(log, rotated)
    os.kill(router.pid, signal.SIGHUP)
    wait_for(lambda: os.path.exists(log) and "reloaded" in tail(log),
             f"the router did not reopen {log}")
    assert "reloaded" not in tail(rotated), "the reload was logged to the moved file"


def test_sighup_gives_s2s_streams_the_new_certificate(hearth_env, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    cert, key = self_signed(tmp_path / "old", "localhost")
    new_cert, new_key = self_signed(tmp_path / "new", "localhost")
    port = free_port()
    hearth_env.write_config(**{"s2s.cert": cert, "s2s.key": key, "s2s.listen": "",
                               "s2s.listen-tls": f"127.0.0.1:{port}"})
    hearth_env.add(Router(hearth_env)).start()
    s2s = hearth_env.start("s2s", ("127.0.0.1", port))
    assert presented_certificate("127.0.0.1", port) == der_of(cert)
    shutil.copyfile(new_cert, cert)
    shutil.copyfile(new_key, key)
    mark = hup(s2s)
    assert log_has(s2s, "reloaded", mark), s2s.log_tail()
    assert presented_certificate("127.0.0.1", port) == der_of(new_cert)


COMPONENT_HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='urn:hearth:component:1' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' to='router' from='comp'>")


def router_certificate(port):
    """The DER certificate the router presents to a component that
    STARTTLSes now."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        data = b""
        sock.sendall(COMPONENT_HEADER)
        while b"</stream:features>" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the router closed: {data!r}"
            data += chunk
        assert b"<starttls" in data, data
        sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        data = b""
        while b"<proceed" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the router closed: {data!r}"
            data += chunk
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(sock, server_hostname="router") as tls:
            return tls.getpeercert(binary_form=True)
    finally:
        sock.close()


def test_sighup_gives_router_links_the_new_certificate(hearth_env, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    cert, key = self_signed(tmp_path / "old", "router")
    new_cert, new_key = self_signed(tmp_path / "new", "router")
    # required: the router offers STARTTLS on loopback only then
    hearth_env.write_config(**{"router.tls": {"cert": cert, "key": key}, "router.require-tls": "true"})
    router = hearth_env.add(Router(hearth_env)).start()
    assert router_certificate(router.port) == der_of(cert)
    hearth_env.write_config(**{"router.tls": {"cert": new_cert, "key": new_key}})
    mark = hup(router)
    assert log_has(router, "reloaded", mark), router.log_tail()
    assert router_certificate(router.port) == der_of(new_cert)


# ---- hearthd reload ----------------------------------------------------------------

def test_hearthd_reload_sends_sighup_to_its_daemons(hearth_env):
    hearthd = os.path.join(BUILDDIR, "tools", "hearthd")
    hearth_env.write_config(**{"supervisor.daemon": ["router"]})
    router_log = os.path.join(hearth_env.statedir, "log", "router.log")
    hearth_env.logs += [os.path.join(hearth_env.statedir, "log", "hearthd.log"), router_log]

    def run(*args):
        p = subprocess.run([hearthd, "-c", hearth_env.config_path, *args], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=60)
        return p.returncode, p.stdout + p.stderr

    status, out = run("start")
    assert status == 0, out
    try:
        status, out = run("reload")
        assert status == 0, out
        wait_for(lambda: "reloaded" in tail(router_log), "the router never reloaded")
    finally:
        run("stop")
    status, out = run("reload")
    assert status == 1 and "not running" in out, f"reload without a supervisor: {status} {out}"
