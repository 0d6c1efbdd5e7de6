"""Storage faults under the SQLite store: the file turns read-only, the
disk fills up, a daemon starts on a read-only file. Clients get errors,
no daemon dies, and writes work again without a restart once the file is
writable or the disk has room (docs/reliability.md, "Storage faults").

The store lives on a file system of its own that the test mounts (root:
CI runs as root): a small tmpfs, or for the read-only case also ext4 on
a loop device, the file system of the report in issue 10, where a store
into a memory-mapped page of an immutable file is SIGBUS. A file system
that daemons hold files open for writing on cannot be remounted
read-only (EBUSY), so a running store turns read-only as in the issue:
its files made immutable (chattr +i), which refuses every write as a
read-only mount would; a store that no daemon has open is remounted
read-only for real. Real router, sm and two c2s, slixmpp clients."""
import os
import sqlite3
import subprocess

import pytest

from hearth_env import BUILDDIR, Env, Server, free_port, wait_for
from test_sm_core import condition, make_client
from xmpp_client import ClientError

NS_ROSTER = "jabber:iq:roster"
STORE = "hearth.sqlite"


def roster_set(name):
    return (f"<iq type='set'><query xmlns='{NS_ROSTER}'>"
            f"<item jid='{name}@example.org' name='{name}'/></query></iq>")


def vcard_set(fn):
    return f"<iq type='set'><vCard xmlns='vcard-temp'><FN>{fn}</FN></vCard></iq>"


def private_set(text):
    return ("<iq type='set'><query xmlns='jabber:iq:private'>"
            f"<note xmlns='urn:example:notes'>{text}</note></query></iq>")


class StoreFs:
    """A file system mounted at DIR for the store alone: tmpfs of size, or
    ext4 on a loop device (an image file of 16 MB in tmp_path)."""

    def __init__(self, tmp_path, kind="tmpfs", size="2m"):
        self.kind = kind
        self.dir = os.path.join(str(tmp_path), "store")
        self.filler = os.path.join(self.dir, "filler")
        self.is_frozen = False
        os.makedirs(self.dir)
        if kind == "tmpfs":
            run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", self.dir)
        else:
            image = os.path.join(str(tmp_path), "store.img")
            run("truncate", "-s", "16M", image)
            run("mkfs.ext4", "-q", "-F", image)
            r = subprocess.run(["mount", "-o", "loop", image, self.dir],
                               capture_output=True, text=True)
            if r.returncode != 0:
                pytest.skip(f"no loop device to mount ext4 on: {r.stderr.strip()}")
            os.rmdir(os.path.join(self.dir, "lost+found"))
        self.path = os.path.join(self.dir, STORE)

    def files(self):
        """The store's files: the database and its journal (and a -wal or
        -shm, which this driver never makes)."""
        return sorted(f for f in os.listdir(self.dir) if f.startswith(STORE))

    def size(self, name):
        path = os.path.join(self.dir, name)
        return os.path.getsize(path) if os.path.exists(path) else None

    def freeze(self):
        """Every file of the store and the directory immutable. Written
        back first (sync, which the kernel does by itself within 30 s):
        what a memory map then stores into a written-back page of an
        immutable ext4 file is SIGBUS."""
        os.sync()
        for f in self.files() + ["."]:
            run("chattr", "+i", os.path.join(self.dir, f))
        self.is_frozen = True

    def thaw(self):
        for f in self.files() + ["."]:
            run("chattr", "-i", os.path.join(self.dir, f))
        self.is_frozen = False

    def remount(self, mode):
        run("mount", "-o", f"remount,{mode}", self.dir)

    def fill(self):
        """Write a filler file until the file system is full: 64 KiB at a
        time, then byte by byte."""
        with open(self.filler, "wb", buffering=0) as f:
            for chunk in (b"\0" * 65536, b"\0"):
                try:
                    while True:
                        f.write(chunk)
                except OSError:
                    pass

    def unfill(self):
        os.unlink(self.filler)

    def unmount(self):
        if self.is_frozen:
            self.thaw()
        subprocess.run(["mount", "-o", "remount,rw", self.dir], capture_output=True)
        run("umount", self.dir)


def run(*args):
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(args)}: {r.stderr.strip()}"


@pytest.fixture
def store_fs(request, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a file system for the store needs root (CI runs as root)")
    fs = StoreFs(tmp_path, getattr(request, "param", "tmpfs"))
    yield fs
    fs.unmount()


@pytest.fixture
def hearth_env(store_fs, tmp_path):
    """conftest's hearth_env (the report shows its logs), with the store on
    store_fs; stopped before store_fs unmounts."""
    env = Env(tmp_path, **{"storage.sqlite": store_fs.path})
    yield env
    env.stop_all()


@pytest.fixture
def server(hearth_env):
    return Server(hearth_env, c2s=2).start()


def pids(server):
    return {d.ident or d.name: d.pid for d in [server.router, server.sm] + server.c2s}


def assert_alive(server, before):
    for d in [server.router, server.sm] + server.c2s:
        name = d.ident or d.name
        assert d.is_running(), f"hearth-{name} died: {d.proc.returncode}\n{d.log_tail()}"
    assert pids(server) == before, "a daemon was restarted"


def log_lines(daemon, text):
    with open(daemon.log, errors="replace") as f:
        return [line for line in f if text in line]


def error_condition(client, stanza):
    """The condition of the error that stanza gets (not a timeout)."""
    answer = client.iq(stanza, timeout=15)
    assert answer["type"] == "error", f"expected an error to {stanza}, got {answer}"
    return condition(answer)


def registers(server, name):
    """An in-band registration of name works (for wait_for)."""
    try:
        make_client(server, name).disconnect()
        return True
    except ClientError as e:
        assert e.condition == "internal-server-error", e
        return False


def succeeds(client, stanza):
    """stanza gets a result (for wait_for)."""
    return client.iq(stanza, timeout=15)["type"] == "result"


@pytest.mark.parametrize("store_fs", ["tmpfs", "ext4"], indirect=True)
def test_read_only_store_fails_writes_keeps_logins_and_recovers_without_restart(
        server, store_fs):
    alice = make_client(server, "alice")
    make_client(server, "bob").disconnect()
    assert succeeds(alice, roster_set("before"))
    before = pids(server)
    # a checkpoint by another process (hearthctl, or an auto-checkpoint):
    # under WAL the next writer restarts the log, writing the -shm
    db = sqlite3.connect(store_fs.path)
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    db.close()
    store_fs.freeze()

    for stanza in (roster_set("carol"), vcard_set("Alice"), private_set("kept")):
        assert error_condition(alice, stanza) == "internal-server-error", stanza
    bob = make_client(server, "bob", register=False)  # auth is a read
    assert bob.roster_get() == {}, "reads work on a read-only store"
    with pytest.raises(ClientError) as refused:  # a registration is c2s's write
        make_client(server, "dave")
    assert refused.value.condition == "internal-server-error", refused.value
    assert_alive(server, before)
    assert store_fs.files() == [STORE, STORE + "-journal"], "no -wal, no -shm to map"

    store_fs.thaw()
    wait_for(lambda: succeeds(alice, roster_set("carol")), "a roster set after the store thawed",
             timeout=20)
    assert succeeds(alice, vcard_set("Alice")) and succeeds(alice, private_set("kept"))
    assert "carol@example.org" in alice.roster_get()
    wait_for(lambda: registers(server, "dave"), "a registration after the store thawed",
             timeout=20)
    assert_alive(server, before)
    # one error line per daemon for the whole episode, not one per statement
    assert len(log_lines(server.sm, "writes fail")) == 1, server.sm.log_tail()
    assert log_lines(server.sm, "writes work again"), server.sm.log_tail()
    alice.disconnect()
    bob.disconnect()


def test_full_disk_fails_writes_with_resource_constraint_and_recovers(server, store_fs):
    alice = make_client(server, "alice")
    assert succeeds(alice, vcard_set("Alice"))
    before = pids(server)
    store_fs.fill()

    big = "x" * 20000  # more than the free pages the file keeps
    assert error_condition(alice, vcard_set(big)) == "resource-constraint"
    assert error_condition(alice, private_set(big)) == "resource-constraint"
    assert_alive(server, before)
    assert store_fs.size(STORE + "-journal") == 0, "a failed write leaves no journal behind"
    assert store_fs.size(STORE + "-wal") is None

    store_fs.unfill()
    wait_for(lambda: succeeds(alice, vcard_set(big)), "a vCard set after space was freed",
             timeout=20)
    assert succeeds(alice, private_set(big))
    assert_alive(server, before)
    assert store_fs.size(STORE + "-journal") == 0, "the journal is emptied at each commit"
    assert store_fs.files() == [STORE, STORE + "-journal"]
    assert len(log_lines(server.sm, "writes fail until the disk has room")) == 1, \
        server.sm.log_tail()
    assert log_lines(server.sm, "writes work again"), server.sm.log_tail()
    alice.disconnect()


def test_daemons_start_on_a_read_only_store_serve_reads_and_write_once_remounted(
        hearth_env, store_fs):
    server = Server(hearth_env, c2s=2).start()
    make_client(server, "alice").disconnect()
    server.stop()
    hearth_env.add(server.router)  # stop() forgot it: stopped again at teardown
    store_fs.remount("ro")

    server.start()  # the sm and both c2s start (or this raises with the log)
    before = pids(server)
    alice = make_client(server, "alice", register=False)
    assert alice.roster_get() == {}
    assert error_condition(alice, roster_set("carol")) == "internal-server-error"
    assert_alive(server, before)
    assert log_lines(server.sm, "is read-only: reads work, writes fail"), server.sm.log_tail()

    store_fs.remount("rw")
    wait_for(lambda: succeeds(alice, roster_set("carol")), "a roster set after remount,rw",
             timeout=20)
    assert "carol@example.org" in alice.roster_get()
    assert_alive(server, before)
    assert log_lines(server.sm, "reopened for writing"), server.sm.log_tail()
    alice.disconnect()


def test_sm_refuses_to_start_on_a_read_only_store_with_pending_migrations(hearth_env, store_fs):
    server = Server(hearth_env)
    server.start()
    server.stop()
    hearth_env.add(server.router)
    hearth_env.sql("DELETE FROM schema_version WHERE version = "
                   "(SELECT max(version) FROM schema_version)")
    store_fs.remount("ro")

    server.router.start()
    hearth_env.add(server.sm).start()
    status = server.sm.proc.wait(timeout=15)
    assert status != 0, "the sm ran on a store it could not migrate"
    assert log_lines(server.sm, "migration(s) pending and the file is read-only"), \
        server.sm.log_tail()
    server.sm.proc = None  # its exit is the outcome under test


def test_vanished_store_fails_writes_is_not_made_anew_and_is_taken_back(server, store_fs):
    alice = make_client(server, "alice")
    assert succeeds(alice, roster_set("before"))
    before = pids(server)
    backup = os.path.join(store_fs.dir, "backup")
    os.rename(store_fs.path, backup)  # gone from its path, still open in the daemons

    assert error_condition(alice, roster_set("carol")) == "internal-server-error"
    assert not os.path.exists(store_fs.path), "a daemon made a new, empty store"
    assert_alive(server, before)

    subprocess.run(["cp", "--preserve=mode", backup, store_fs.path], check=True)
    wait_for(lambda: succeeds(alice, roster_set("carol")), "a roster set once the file is back",
             timeout=20)
    roster = alice.roster_get()
    assert "before@example.org" in roster and "carol@example.org" in roster, roster
    assert_alive(server, before)
    alice.disconnect()


def test_hearthctl_on_a_read_only_store_reads_and_fails_writes_with_a_message(
        hearth_env, store_fs):
    server = Server(hearth_env).start()
    make_client(server, "alice").disconnect()
    server.stop()
    store_fs.remount("ro")
    ctl = os.path.join(BUILDDIR, "tools", "hearthctl")

    users = subprocess.run([ctl, "-c", hearth_env.config_path, "users"],
                           capture_output=True, text=True, timeout=30)
    assert users.returncode == 0 and "alice@localhost" in users.stdout, users
    add = subprocess.run([ctl, "-c", hearth_env.config_path, "adduser", "carol@localhost", "pw"],
                         capture_output=True, text=True, timeout=30)
    assert add.returncode == 1, f"hearthctl adduser on a read-only store: {add}"
    assert "readonly" in add.stderr or "read-only" in add.stderr, add.stderr


# ---- hearth-upload (components/upload/) on a failing store or a full disk ----

@pytest.fixture
def upload_server(hearth_env, store_fs):
    """A Server with hearth-upload, its files on store_fs with the store."""
    from test_upload import client, start_upload
    port = free_port()
    s = Server(hearth_env, **{"upload.listen-tls": f"127.0.0.1:{port}",
                              "upload.dir": os.path.join(store_fs.dir, "files")}).start()
    s.upload_port = port
    start_upload(s)
    s.client = client
    return s


def test_a_failing_store_refuses_slots_with_an_error_and_recovers(upload_server, store_fs):
    from test_upload import slot
    alice = upload_server.client(upload_server, "alice")
    store_fs.freeze()
    with pytest.raises(ClientError) as refused:
        slot(alice, size=10)
    assert refused.value.condition == "internal-server-error", refused.value
    store_fs.thaw()

    def works():
        try:
            return bool(slot(alice, size=10))
        except ClientError as e:
            assert e.condition == "internal-server-error", e
            return False
    wait_for(works, "a slot after the store thawed", timeout=20)
    assert upload_server.upload.is_running()
    alice.disconnect()


def test_a_full_disk_fails_an_upload_with_507_and_leaves_no_file(upload_server, store_fs):
    from test_upload import put, slot
    alice = upload_server.client(upload_server, "alice")
    data = os.urandom(3 * 1024 * 1024)  # more than the 2 MiB file system holds
    put_url, headers, _ = slot(alice, size=len(data))
    status, _, body = put(upload_server, put_url, data, headers=headers)
    assert status == 507, (status, body)
    files = os.path.join(store_fs.dir, "files")
    assert [n for n in os.listdir(files) if n != "tmp"] == []
    assert os.listdir(os.path.join(files, "tmp")) == []
    assert upload_server.upload.is_running()
    # the space is given back: a file that fits goes in a new slot
    small = b"fits"
    put_url, headers, get_url = slot(alice, size=len(small))
    assert put(upload_server, put_url, small, headers=headers)[0] == 201
    alice.disconnect()
