"""Privileges: daemons started as root become the `user` of hearth.xml once
their ports are open, refuse to run as root unless told to, keep what they
create to themselves (umask 077, a store made 0600), warn about a config or
key file others can read; hearthctl run as root becomes the same user
before it opens the store; hearthd run as root keeps its own logs and pid
files out of that user's reach; make install closes the config and
statedir.

Most tests need root (CI runs the suite as root) and are skipped without
it. Each makes its own throwaway system account (useradd, removed at the
end), and its own directory under /tmp that the account can traverse
(pytest's tmp_path is under a directory closed to others).

The test without any `user` setting needs a machine where the default
account, hearth, does not exist: when one does (tools/quickstart makes it),
the daemon runs in a private mount namespace (unshare -m) where /etc/passwd
and /etc/group are copies without it, and the test is skipped only if that
is impossible too."""
import contextlib
import fcntl
import grp
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from hearth_env import BUILDDIR, Env, Router, Server, binary, tail
from xmpp_client import Client, register

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs the suite as root)")


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def accounts_locked():
    """No test of this file adds or removes an account meanwhile: useradd
    replaces /etc/passwd, which detaches a bind mount over it (see
    without_account)."""
    with open("/tmp/hearth-e2e-accounts.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@pytest.fixture
def account():
    """A throwaway system account with a group of its own: its pwd entry.
    Ask for it before env, so that env's daemons are stopped before the
    account goes."""
    name = f"hearth-t{secrets.token_hex(4)}"
    with accounts_locked():
        r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                           capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"useradd {name} failed: {r.stderr.strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        with accounts_locked():
            r = subprocess.run(["userdel", name], capture_output=True, text=True)
            if r.returncode != 0:  # a process of it still runs: the test failed anyway
                subprocess.run(["userdel", "-f", name], capture_output=True)
            subprocess.run(["groupdel", name], capture_output=True)  # if userdel left it


@pytest.fixture
def open_dir():
    """A directory under /tmp that every user can traverse (not list)."""
    d = tempfile.mkdtemp(prefix="hearth-priv-", dir="/tmp")
    os.chmod(d, 0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def env(open_dir):
    e = Env(open_dir)
    yield e
    e.stop_all()


def ids_of(pid):
    """{"Uid": [real, effective, saved, fs], "Gid": [...], "Groups": [...]}
    of a running process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                out[key] = [int(v) for v in value.split()]
    return out


def assert_runs_as(daemon, user):
    """daemon: a hearth_env.Daemon, or (pid, name)."""
    pid, name = daemon if isinstance(daemon, tuple) else (daemon.pid, daemon.ident or daemon.name)
    ids = ids_of(pid)
    assert ids["Uid"] == [user.pw_uid] * 4, \
        f"hearth-{name}: Uid {ids['Uid']}, expected {user.pw_uid} (user {user.pw_name}) four times"
    assert ids["Gid"] == [user.pw_gid] * 4, \
        f"hearth-{name}: Gid {ids['Gid']}, expected {user.pw_gid} four times"
    assert 0 not in ids["Groups"], f"hearth-{name} kept group root: groups {ids['Groups']}"


def owner_and_mode(path):
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, oct(stat.S_IMODE(st.st_mode))


# ---- switching to the user ---------------------------------------------------------

@needs_root
def test_root_start_switches_to_user_and_store_works_after(account, env):
    server = Server(env, user=account.pw_name).start()
    for d in [server.router, server.sm] + server.c2s:
        assert_runs_as(d, account)
    # the store is made after the switch: the user's, and usable by it
    register(server, "alice@localhost", "alicepw")
    with Client(server, "alice@localhost", "alicepw").connect():
        pass
    assert owner_and_mode(env.statedir) == (account.pw_name, "0o750"), \
        f"statedir {env.statedir}: (owner, mode) {owner_and_mode(env.statedir)}, " \
        f"expected ({account.pw_name}, 0o750)"
    for suffix in ("", "-journal"):
        path = env.sqlite_path + suffix
        if os.path.exists(path):
            assert owner_and_mode(path) == (account.pw_name, "0o600"), \
                f"{path}: (owner, mode) {owner_and_mode(path)}, expected ({account.pw_name}, 0o600)"
    # and at the next start, too
    server.stop()
    server.start()
    with Client(server, "alice@localhost", "alicepw").connect():
        pass


def refusal(env, argv=None, timeout=5):
    """Run hearth-router on env's config, expecting it to exit at once:
    (exit status, or None if it still ran after timeout seconds; output)."""
    argv = argv or [binary("router"), "-c", env.config_path]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL)
    try:
        out = p.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        return None, p.communicate()[0]
    return p.returncode, out


@needs_root
def test_root_start_with_missing_user_refuses_naming_the_ways_out(env):
    env.write_config(user="hearth-no-such-account")
    status, out = refusal(env)
    assert status not in (0, None), f"hearth-router ran as root with a missing user ({status})\n{out}"
    for text in ("hearth-no-such-account", "does not exist", "adduser", "<user>root</user>"):
        assert text in out, f"the refusal does not say {text!r}:\n{out}"
    assert not os.path.exists(os.path.join(env.statedir, "tls")), "it made files before refusing"


def without_account(name, tmpdir):
    """argv prefix that runs a command where account and group `name` do
    not exist: nothing when they do not; unshare -m with copies of
    /etc/passwd and /etc/group without them when they do; None if that is
    impossible here."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return []
    files = []
    for src in ("/etc/passwd", "/etc/group"):
        dst = os.path.join(tmpdir, os.path.basename(src))
        with open(src) as f, open(dst, "w") as out:
            out.writelines(line for line in f if not line.startswith(name + ":"))
        files.append(dst)
    prefix = ["unshare", "-m", "--", "sh", "-c",
              'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"',
              "sh", *files]
    probe = subprocess.run(prefix + ["getent", "passwd", name], capture_output=True, text=True)
    return prefix if probe.returncode == 2 else None  # getent: 2 is "not found"


@needs_root
def test_root_start_without_user_setting_refuses_when_hearth_is_missing(env, open_dir):
    del env.settings["user"]
    env.write_config()
    with accounts_locked():
        prefix = without_account("hearth", open_dir)
        if prefix is None:
            pytest.skip("an account hearth exists and cannot be hidden (unshare -m failed)")
        status, out = refusal(env, prefix + [binary("router"), "-c", env.config_path])
    assert status not in (0, None), \
        f"hearth-router ran as root without any user setting ({status})\n{out}"
    for text in ("the account hearth to run as does not exist", "<user>root</user>"):
        assert text in out, f"the refusal does not say {text!r}:\n{out}"


@needs_root
def test_user_root_keeps_root_with_a_warning(env):
    assert env.settings["user"] == "root"  # hearth_env's default under root
    router = env.add(Router(env)).start()
    assert ids_of(router.pid)["Uid"] == [0] * 4
    log = tail(router.log)
    assert "running as root, as <user>root</user>" in log, f"no warning about root:\n{log}"


@needs_root
def test_hearthd_as_root_writes_logs_where_the_user_cannot_redirect_them(account, env, open_dir):
    """The user owns STATEDIR: it may swap log/ and run/ for directories of
    its own with symlinks to root's files, then make its daemon exit so
    that hearthd restarts it."""
    hearthd = os.path.join(BUILDDIR, "tools", "hearthd")
    env.write_config(user=account.pw_name, **{"supervisor.daemon": ["router"]})
    logdir, rundir = os.path.join(env.statedir, "log"), os.path.join(env.statedir, "run")
    env.logs += [os.path.join(logdir, "hearthd.log"), os.path.join(logdir, "router.log")]
    victim = os.path.join(open_dir, "victim")
    with open(victim, "w") as f:
        f.write("root's file\n")
    run = lambda *a: subprocess.run([hearthd, "-c", env.config_path, *a], capture_output=True,
                                    text=True, stdin=subprocess.DEVNULL, timeout=60)
    p = run("start")
    try:
        assert p.returncode == 0, f"hearthd start: {p.returncode}\n{p.stdout}{p.stderr}"
        with open(os.path.join(rundir, "router.pid")) as f:
            router = int(f.read())
        assert_runs_as((router, "router"), account)
        for d in (logdir, rundir):
            assert owner_and_mode(d)[0] == "root" and not mode_of(d) & 0o022, \
                f"{d}: (owner, mode) {owner_and_mode(d)}, expected root's, closed to writes"
        swap = (f"cd {env.statedir} && mv log log.old && mv run run.old && mkdir log run && "
                f"ln -s {victim} log/router.log && ln -s {victim} run/router.pid")
        r = subprocess.run(["runuser", "-u", account.pw_name, "--", "sh", "-c", swap],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"the swap failed: {r.stderr}"
        os.kill(router, 15)
        deadline = time.monotonic() + 15
        restarted = os.path.join(env.statedir, "log.old", "hearthd.log")
        while tail(restarted).count("started router") < 2:
            assert time.monotonic() < deadline, f"router not restarted:\n{tail(restarted)}"
            time.sleep(0.2)
        time.sleep(0.5)  # its first lines
        with open(victim) as f:
            assert f.read() == "root's file\n", "hearthd wrote through the user's symlinks"
    finally:
        for d in ("log", "run"):
            path = os.path.join(env.statedir, d)
            if os.path.isdir(path + ".old"):
                shutil.rmtree(path, ignore_errors=True)
                os.rename(path + ".old", path)
        run("stop")


# ---- modes of what daemons and hearthctl create --------------------------------------

def test_first_start_makes_store_and_key_owner_only(env):
    server = Server(env).start()
    register(server, "bob@localhost", "bobpw")
    made = [env.sqlite_path, os.path.join(env.statedir, "tls", "localhost.key")]
    made += [env.sqlite_path + s for s in ("-journal",) if os.path.exists(env.sqlite_path + s)]
    assert len(made) == 3, f"expected the store's -journal to exist after a write: {made}"
    wrong = {p: oct(mode_of(p)) for p in made if mode_of(p) != 0o600}
    assert not wrong, f"files not 0600 after the first start: {wrong}"


def hearthctl(config, *args, umask=None):
    return subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c", config, *args],
                          capture_output=True, text=True, timeout=30,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def test_hearthctl_makes_store_0600_whatever_the_umask(env):
    p = hearthctl(env.config_path, "adduser", "carol@localhost", "pw", umask=0)
    assert p.returncode == 0, f"hearthctl adduser: exit {p.returncode}: {p.stderr}"
    assert mode_of(env.sqlite_path) == 0o600, \
        f"{env.sqlite_path} made by hearthctl with umask 0: mode {oct(mode_of(env.sqlite_path))}, expected 0o600"


@needs_root
def test_hearthctl_as_root_becomes_user_before_opening_store(account, env):
    env.write_config(user=account.pw_name)
    p = hearthctl(env.config_path, "adduser", "dave@localhost", "pw")
    assert p.returncode == 0, f"hearthctl adduser: exit {p.returncode}: {p.stderr}"
    for suffix in ("", "-journal"):
        path = env.sqlite_path + suffix
        if os.path.exists(path):
            assert owner_and_mode(path)[0] == account.pw_name, \
                f"{path}: owner {owner_and_mode(path)[0]}, expected {account.pw_name}"
    server = Server(env).start()  # the daemons, as that user, use what it made
    with Client(server, "dave@localhost", "pw").connect():
        pass


# ---- warnings ------------------------------------------------------------------------

@needs_root
def test_config_readable_by_others_is_warned_and_by_daemon_group_is_not(account, env):
    env.write_config(user=account.pw_name)
    os.chown(env.config_path, 0, account.pw_gid)
    os.chmod(env.config_path, 0o640)
    router = env.add(Router(env)).start()
    assert_runs_as(router, account)
    router.stop()
    assert "config file" not in tail(router.log, 200), \
        f"a warning for a 0640 root:{account.pw_name} config:\n{tail(router.log)}"
    os.chmod(env.config_path, 0o644)
    router.start()
    log = tail(router.log)
    assert f"config file {env.config_path} is readable by every user" in log, \
        f"no warning for a world-readable config:\n{log}"


def test_key_readable_by_group_is_warned(env):
    server = Server(env)
    cert, key = server.cert_path, server.cert_path[:-4] + ".key"
    server.start()  # makes the self-signed pair
    server.stop()
    os.chmod(key, 0o640)
    server.write_config(**{"c2s.cert": cert, "c2s.key": key})
    server.start()
    log = tail(server.c2s[0].log)
    assert f"key {key} is readable by its group" in log, f"no warning for a 0640 key:\n{log}"


# ---- make install ----------------------------------------------------------------------

def test_make_install_closes_config_and_statedir(tmp_path):
    dest = str(tmp_path / "dest")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    p = subprocess.run(["make", "-s", "-C", BUILDDIR, "install", f"DESTDIR={dest}"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, f"make install: exit {p.returncode}\n{p.stdout}{p.stderr}"
    configs, statedirs = [], []
    for root, dirs, files in os.walk(dest):
        if root.endswith("/hearth") and "hearth.xml" in files:
            configs.append(os.path.join(root, "hearth.xml"))
        if root.endswith("/lib") and "hearth" in dirs:
            statedirs.append(os.path.join(root, "hearth"))
    assert len(configs) == 1 and len(statedirs) == 1, \
        f"expected one hearth/hearth.xml and one lib/hearth in {dest}: {configs} {statedirs}"
    assert mode_of(configs[0]) == 0o640, f"{configs[0]}: mode {oct(mode_of(configs[0]))}, expected 0o640"
    assert mode_of(statedirs[0]) == 0o750, \
        f"{statedirs[0]}: mode {oct(mode_of(statedirs[0]))}, expected 0o750"
    try:
        hearth_gid = grp.getgrnam("hearth").gr_gid
    except KeyError:
        hearth_gid = None
    if os.geteuid() == 0 and hearth_gid is not None:
        assert os.stat(configs[0]).st_gid == hearth_gid, \
            f"{configs[0]}: group {os.stat(configs[0]).st_gid}, expected hearth ({hearth_gid})"
