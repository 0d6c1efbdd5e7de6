"""hearthctl check, on real installations: a config as the tests' Env
writes it (a router account per role, free ports) passes; then each class
of problem, made for real (certificates made with python3-cryptography, a
port held by a socket of this test, a store written with sqlite3 or
PostgreSQL, a real dnsmasq answering DNS, a running hearth-router), gives
its error (exit status 1) or warning (exit status 0) line, and the last
line counts them."""
import datetime
import os
import re
import socket
import sqlite3
import subprocess
import time

import pytest

from hearth_env import BUILDDIR, DNSMASQ, Router, accepts, free_port

cryptography = pytest.importorskip("cryptography", reason="python3-cryptography is not installed")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


class Result:
    def __init__(self, proc):
        self.status = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.lines = proc.stdout.splitlines()

    def __repr__(self):
        return f"exit {self.status}\n{self.out}{self.err}"

    def errors(self):
        return [line for line in self.lines if line.startswith("error: ")]

    def warnings(self):
        return [line for line in self.lines if line.startswith("warning: ")]

    def line(self, kind, *parts):
        """The one line of kind ("error", "warning", "note") that holds
        every part, or fail naming what was there."""
        found = [line for line in self.lines
                 if line.startswith(kind + ": ") and all(p in line for p in parts)]
        assert found, f"no {kind} line with {parts}:\n{self!r}"
        return found[0]

    def counts(self):
        m = re.fullmatch(r"(\d+) errors, (\d+) warnings", self.lines[-1] if self.lines else "")
        assert m, f"the last line is not 'N errors, N warnings':\n{self!r}"
        return int(m.group(1)), int(m.group(2))


def run_check(config_path, *args):
    proc = subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c", str(config_path),
                           "check", *args], capture_output=True, text=True, timeout=60)
    return Result(proc)


@pytest.fixture
def env(hearth_env):
    """The test's Env with every listening address on a free port, so the
    ports checked are this test's own."""
    hearth_env.write_config(**{
        "c2s.listen": f"127.0.0.1:{free_port()}",
        "c2s.listen-tls": f"127.0.0.1:{free_port()}",
        "s2s.listen": f"127.0.0.1:{free_port()}",
        "s2s.listen-tls": f"127.0.0.1:{free_port()}",
    })
    return hearth_env


def check(env, *args):
    result = run_check(env.config_path, *args)
    errors, warnings = result.counts()
    assert errors == len(result.errors()) and warnings == len(result.warnings()), result
    assert result.status == (1 if errors else 0), result
    return result


# ---- certificates, made here ------------------------------------------------

def make_key(path, mode=0o600):
    key = ec.generate_private_key(ec.SECP256R1())
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(path, mode)
    return key


def make_cert(path, key, names, days=(-1, 365), issuer=None, is_ca=False):
    """A certificate for key naming names (CN the first, DNS names all),
    valid from days[0] to days[1] from now, signed by issuer (cert, key) or
    self-signed."""
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + datetime.timedelta(days=days[0]))
               .not_valid_after(now + datetime.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if not is_ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
    cert = builder.sign(issuer_key, hashes.SHA256())
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert


def use_c2s_cert(env, names, days=(-1, 365), key_mode=0o600, issuer=None):
    cert, key = os.path.join(env.dir, "c2s.pem"), os.path.join(env.dir, "c2s.key")
    make_cert(cert, make_key(key, key_mode), names, days, issuer)
    env.write_config(**{"c2s.cert": cert, "c2s.key": key})
    return cert, key


# ---- the whole, and usage -----------------------------------------------------

def test_healthy_config_has_no_error(env):
    result = check(env)
    assert result.status == 0 and result.errors() == [], result
    # nothing made yet: the default certificate and the store are notes
    result.line("note", "does not exist yet: the daemons make a self-signed one at first start")
    result.line("note", "does not exist yet: the sm creates it")


def hearthd(env, *args):
    return subprocess.run([os.path.join(BUILDDIR, "tools", "hearthd"), "-c", env.config_path,
                           *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=60)


@pytest.fixture
def installed(env):
    """env as tools/quickstart sets one up (each router password in a file
    of its own, mode 0600; the statedir 0750), every daemon run by hearthd,
    one c2s; stopped at teardown."""
    secrets = os.path.join(env.dir, "secrets")
    os.makedirs(secrets, mode=0o700)
    accounts = []
    for role, password in env.accounts.items():
        path = os.path.join(secrets, f"router-{role}")
        with open(path, "w") as f:
            f.write(password + "\n")
        os.chmod(path, 0o600)
        accounts.append({"role": role, "password-file": path})
    os.chmod(env.statedir, 0o750)
    env.write_config(**{"router.account": accounts, "c2s.processes": "1",
                        "supervisor.daemon": ["router", "resolver", "sm", "c2s", "s2s"]})
    started = hearthd(env, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    env.logs += [os.path.join(env.statedir, "log", f"{n}.log")
                 for n in ("hearthd", "router", "sm", "c2s-1", "s2s", "resolver")]
    yield env
    hearthd(env, "stop")


def test_running_installation_has_no_error(installed):
    """Every port held by the daemons hearthd runs (their pid files), the
    certificates they made, the store the sm migrated: nothing is wrong,
    only the self-signed certificates are warned about."""
    ports = [installed.settings[p].rsplit(":", 1)[1]
             for p in ("c2s.listen", "c2s.listen-tls", "s2s.listen", "s2s.listen-tls")]
    cert = os.path.join(installed.statedir, "tls", "localhost.pem")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
            os.path.exists(cert) and all(accepts("127.0.0.1", int(p)) for p in ports)):
        time.sleep(0.1)
    assert all(accepts("127.0.0.1", int(p)) for p in ports), installed.log_tails()
    result = check(installed)
    assert result.status == 0 and result.errors() == [], result
    for setting in ("c2s.listen", "c2s.listen-tls"):
        result.line("note", f"{setting} {installed.settings[setting]}: in use by the running "
                    "hearth-c2s")
    result.line("note", f"s2s.listen {installed.settings['s2s.listen']}: in use by the running "
                "hearth-s2s")
    result.line("warning", f"c2s certificate {cert} is self-signed")
    assert [w for w in result.warnings() if "self-signed" not in w and "<user> is root" not in w] \
        == [], result


def test_usage_error_exits_2(env):
    for args in (["--bogus"], ["extra"], ["--no-dns", "more"]):
        result = run_check(env.config_path, *args)
        assert result.status == 2, (args, result)
        assert "usage: hearthctl [-c FILE] check [--no-dns] [--no-ports]" in result.err, result


def test_config_that_does_not_load_names_file_and_line(env):
    with open(env.config_path) as f:
        lines = f.read().splitlines()
    lines.insert(2, "  <router><prot>1</prot></router>")
    with open(env.config_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    result = check(env)
    assert result.status == 1, result
    result.line("error", f"{env.config_path}:3:", "router.prot")
    assert result.counts() == (1, 0), result


def test_setting_a_daemon_refuses_is_an_error(env):
    env.write_config(**{"c2s.max-stanza": "1M", "c2s.max-queue": "64k"})
    result = check(env, "--no-dns")
    assert result.status == 1, result
    result.line("error", "c2s.max-queue", "is below c2s.max-stanza", "the c2s refuses to start")


# ---- certificates ---------------------------------------------------------------

def test_expired_certificate_is_an_error(env):
    cert, _ = use_c2s_cert(env, ["localhost"], days=(-400, -3))
    expired = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3))
    result = check(env)
    assert result.status == 1, result
    line = result.line("error", f"c2s certificate {cert} expired on")
    assert expired.strftime("%Y-%m-%d") in line or \
        (expired + datetime.timedelta(seconds=5)).strftime("%Y-%m-%d") in line, line
    assert "renew it" in line and "hearthd restart" in line, line


def test_certificate_expiring_soon_is_a_warning(env):
    cert, _ = use_c2s_cert(env, ["localhost"], days=(-300, 10))
    result = check(env)
    assert result.status == 0, result
    result.line("warning", f"c2s certificate {cert} expires on", "renew it")


def test_certificate_for_another_domain_is_an_error(env):
    cert, _ = use_c2s_cert(env, ["other.example"])
    result = check(env)
    assert result.status == 1, result
    result.line("error", f"c2s certificate {cert} does not name localhost")


def test_key_that_does_not_match_is_an_error(env):
    cert, key = use_c2s_cert(env, ["localhost"])
    make_key(key)  # another key in its place
    result = check(env)
    assert result.status == 1, result
    result.line("error", f"c2s key {key} does not match certificate {cert}")


def test_self_signed_certificate_and_open_key_are_warnings(env):
    cert, key = use_c2s_cert(env, ["localhost"], key_mode=0o644)
    result = check(env)
    assert result.status == 0, result
    result.line("warning", f"c2s certificate {cert} is self-signed",
                "clients must accept it; federation works by dialback only")
    result.line("warning", f"c2s key {key} is readable by its group or others (mode 0644)",
                f"chmod 600 {key}")


def test_certificate_of_a_trusted_ca_verifies(env):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_path = os.path.join(env.dir, "ca.pem")
    ca = make_cert(ca_path, ca_key, ["Test CA"], is_ca=True)
    cert, _ = use_c2s_cert(env, ["localhost"], issuer=(ca, ca_key))
    env.write_config(**{"s2s.ca": ca_path})
    result = check(env)
    assert result.status == 0, result
    assert not [w for w in result.warnings() if cert in w], result
    # without the CA, the same certificate does not verify
    del env.settings["s2s.ca"]
    env.write_config()
    result = check(env)
    result.line("warning", f"c2s certificate {cert} does not verify")


def test_s2s_certificate_of_a_domain_is_checked_for_it(env):
    cert, key = os.path.join(env.dir, "s2s.pem"), os.path.join(env.dir, "s2s.key")
    make_cert(cert, make_key(key), ["elsewhere.example"])
    env.write_config(**{"s2s.certificate": [{"domain": "localhost", "cert": cert, "key": key}]})
    result = check(env)
    assert result.status == 1, result
    result.line("error", f"s2s certificate for localhost {cert} does not name localhost")


# ---- router accounts ------------------------------------------------------------

def accounts_except(env, role, **extra):
    accounts = [{"role": r, "password": pw} for r, pw in env.accounts.items() if r != role]
    return accounts + ([dict(role=role, **extra)] if extra else [])


def test_missing_password_file_is_an_error(env):
    missing = os.path.join(env.dir, "no-such-secret")
    env.write_config(**{"router.account": accounts_except(env, "c2s", **{"password-file": missing})})
    result = check(env)
    assert result.status == 1, result
    result.line("error", "router account c2s:", missing, "cannot open")


def test_password_file_readable_by_others_is_a_warning(env):
    secret = os.path.join(env.dir, "c2s.secret")
    with open(secret, "w") as f:
        f.write("s3cret\n")
    os.chmod(secret, 0o644)
    env.write_config(**{"router.account": accounts_except(env, "c2s", **{"password-file": secret})})
    result = check(env)
    assert result.status == 0, result
    result.line("warning", f"secret file {secret} is readable by group or others", "chmod 600")


def test_role_without_an_account_is_an_error(env):
    env.write_config(**{"router.account": accounts_except(env, "s2s")})
    result = check(env)
    assert result.status == 1, result
    result.line("error", "no router account for role s2s")


def test_shared_legacy_password_is_a_warning(env):
    del env.settings["router.account"]
    env.write_config(**{"router.password": "one-for-all"})
    result = check(env)
    assert result.status == 0, result
    result.line("warning", "router.password is the legacy shared account",
                "any daemon can act as any other")


def test_external_component_without_secret_is_an_error(env):
    env.write_config(**{"router.external": [{"name": "gateway.example"}]})
    result = check(env)
    assert result.status == 1, result
    result.line("error", "router external component gateway.example has no secret")


# ---- file modes -----------------------------------------------------------------

def test_world_readable_config_is_a_warning(env):
    os.chmod(env.config_path, 0o644)
    result = check(env)
    assert result.status == 0, result
    result.line("warning", f"config file {env.config_path} is readable by every user (mode 0644)",
                f"chmod 640 {env.config_path}")


def test_open_statedir_and_store_are_warnings(env):
    os.chmod(env.statedir, 0o755)
    sqlite3.connect(env.sqlite_path).close()
    os.chmod(env.sqlite_path, 0o644)
    result = check(env)
    result.line("warning", f"statedir {env.statedir} is open to others (mode 0755)", "chmod 750")
    result.line("warning", f"store {env.sqlite_path} is readable by group or others", "chmod 600")


# ---- ports ----------------------------------------------------------------------

def test_port_taken_by_another_process_is_an_error(env):
    addr = env.settings["c2s.listen"]
    host, port = addr.rsplit(":", 1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen(1)
        result = check(env, "--no-dns")
    with open("/proc/self/comm") as f:
        me = f.read().strip()
    assert result.status == 1, result
    result.line("error", f"c2s.listen {addr} is in use by {me} (pid {os.getpid()})",
                "stop it, or choose another address")
    assert check(env, "--no-dns").status == 0  # free again


def test_port_of_this_installations_running_router_is_fine(env):
    router = env.add(Router(env)).start()
    result = check(env, "--no-dns")
    assert result.status == 0, result
    result.line("note", f"router.listen 127.0.0.1:{env.port}: in use by the running hearth-router "
                f"(pid {router.pid})")


def test_ports_not_checked_with_no_ports(env):
    addr = env.settings["c2s.listen"]
    host, port = addr.rsplit(":", 1)
    with socket.socket() as s:
        s.bind((host, int(port)))
        s.listen(1)
        result = check(env, "--no-ports")
    assert result.status == 0 and addr not in result.out, result


# ---- the store ------------------------------------------------------------------

def set_schema(env, version):
    if env.storage == "sqlite":
        sqlite3.connect(env.sqlite_path).close()
    env.sql("CREATE TABLE schema_version (version INTEGER PRIMARY KEY)")
    if version:
        env.sql(f"INSERT INTO schema_version (version) VALUES ({version})")


def test_store_newer_than_this_build_is_an_error(env, storage_driver):
    set_schema(env, 999)
    result = check(env, "--no-ports")
    assert result.status == 1, result
    result.line("error", "schema version 999", "this store is newer than this build")


def test_store_not_migrated_yet_is_an_error(env, storage_driver):
    set_schema(env, 0)
    result = check(env, "--no-ports")
    assert result.status == 1, result
    result.line("error", "schema version 0", "run the sm once to migrate")


def schema_version(env):
    try:
        rows = env.sql("SELECT max(version) FROM schema_version")
    except Exception:  # not there yet: no file, no table
        return None
    return rows[0][0] if rows else None


def test_store_the_sm_migrated_is_fine(env, storage_driver):
    env.add(Router(env)).start()
    sm = env.start("sm")
    deadline = time.monotonic() + 10
    while schema_version(env) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert schema_version(env) is not None, env.log_tails()
    result = check(env, "--no-ports")
    assert sm.is_running() and result.status == 0, result
    assert not [line for line in result.lines
                if "schema version" in line or "the sm creates it" in line], result


def test_store_that_does_not_open_is_an_error(env):
    env.write_config(**{"storage.driver": "pgsql",
                        "storage.pgsql": f"host=127.0.0.1 port={free_port()} dbname=nothing"})
    result = check(env, "--no-ports")
    assert result.status == 1, result
    result.line("error", "the store does not open", "PostgreSQL")


# ---- DNS --------------------------------------------------------------------------

needs_dnsmasq = pytest.mark.skipif(not os.path.exists(DNSMASQ),
                                   reason="dnsmasq is not installed (Debian: dnsmasq-base)")




DNS_WORDS = ("can't find you", "does not resolve", "in DNS", "SRV target")


@needs_dnsmasq
def test_dns_with_srv_records_has_no_dns_problem(env, dns):
    dns.start("--srv-host=_xmpp-client._tcp.example.test,xmpp.example.test,5222,10,0",
              "--srv-host=_xmpps-client._tcp.example.test,xmpp.example.test,5223,10,0",
              "--srv-host=_xmpp-server._tcp.example.test,xmpp.example.test,5269,10,0",
              "--srv-host=_xmpps-server._tcp.example.test,xmpp.example.test,5270,10,0",
              "--host-record=xmpp.example.test,127.0.0.1")
    env.write_config(**{"domain": "example.test",
                        "resolver.nameserver": f"127.0.0.1:{dns.port}"})
    result = check(env, "--no-ports")
    assert result.status == 0, result
    assert not [line for line in result.lines if any(w in line for w in DNS_WORDS)], result
    # it asked the server it was told to
    with open(dns.log) as f:
        asked = f.read()
    assert "_xmpp-server._tcp.example.test" in asked and "xmpp.example.test" in asked, asked


@needs_dnsmasq
def test_dns_without_records_warns_that_servers_cant_find_you(env, dns):
    dns.start()
    env.write_config(**{"domain": "example.test",
                        "resolver.nameserver": f"127.0.0.1:{dns.port}"})
    result = check(env, "--no-ports")
    assert result.status == 0, result
    result.line("warning", "other servers can't find you", "example.test",
                "publish _xmpp-server._tcp.example.test SRV")
    result.line("warning", "clients can't find you", "_xmpp-client._tcp.example.test")
    # --no-dns asks nothing
    result = check(env, "--no-ports", "--no-dns")
    assert not [line for line in result.lines if any(w in line for w in DNS_WORDS)], result


@needs_dnsmasq
def test_dns_srv_target_that_does_not_resolve_is_a_warning(env, dns):
    dns.start("--srv-host=_xmpp-server._tcp.example.test,gone.example.test,5269,10,0",
              "--host-record=example.test,127.0.0.1")
    env.write_config(**{"domain": "example.test",
                        "resolver.nameserver": f"127.0.0.1:{dns.port}"})
    result = check(env, "--no-ports")
    assert result.status == 0, result
    result.line("warning", "_xmpp-server._tcp.example.test points to gone.example.test",
                "does not resolve")
    assert not [w for w in result.warnings() if "can't find you" in w], result


@needs_dnsmasq
def test_dns_target_not_in_the_certificate_is_a_warning(env, dns):
    dns.start("--srv-host=_xmpp-server._tcp.example.test,xmpp.example.test,5269,10,0",
              "--host-record=xmpp.example.test,127.0.0.1")
    cert, key = os.path.join(env.dir, "s2s.pem"), os.path.join(env.dir, "s2s.key")
    make_cert(cert, make_key(key), ["unrelated.example"])
    env.write_config(**{"domain": "example.test", "s2s.cert": cert, "s2s.key": key,
                        "resolver.nameserver": f"127.0.0.1:{dns.port}"})
    result = check(env, "--no-ports")
    result.line("warning", f"s2s certificate {cert} names neither example.test nor its SRV target "
                "xmpp.example.test")
