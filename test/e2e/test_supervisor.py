"""hearthd, the supervisor, run from the build tree on a temp config; and the
config template etc/hearth.xml it is installed with."""
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from hearth_env import BUILDDIR, SRCDIR, accepts, binary, tail, wait_for

HEARTHD = os.path.join(BUILDDIR, "tools", "hearthd")
TEMPLATE = os.path.join(SRCDIR, "etc", "hearth.xml")
SETTINGS_C = os.path.join(SRCDIR, "common", "settings.c")


def hearthd(config, *args, timeout=60):
    """Run hearthd; (exit status, stdout and stderr)."""
    p = subprocess.run([HEARTHD, "-c", config, *args], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def router_pid(config):
    """The router's pid as `hearthd status` shows it, or None."""
    _, out = hearthd(config, "status")
    m = re.search(r"^router: running \(pid (\d+)\)", out, re.M)
    return int(m[1]) if m else None


@pytest.fixture
def supervised(hearth_env):
    """An Env whose supervisor runs the router only. Whatever a test leaves
    running is stopped at teardown."""
    env = hearth_env
    env.write_config(**{"supervisor.daemon": ["router"]})
    env.hearthd_log = os.path.join(env.statedir, "log", "hearthd.log")
    env.logs += [env.hearthd_log, os.path.join(env.statedir, "log", "router.log")]
    yield env
    hearthd(env.config_path, "stop")


@pytest.fixture
def started(supervised):
    status, out = hearthd(supervised.config_path, "start")
    assert status == 0, f"hearthd start exited with {status}:\n{out}"
    return supervised


def test_status_shows_router_running_after_start(started):
    status, out = hearthd(started.config_path, "status")
    assert status == 0, f"status exited with {status}, expected 0:\n{out}"
    assert re.search(r"^hearthd: running \(pid \d+\)$", out, re.M), out
    assert router_pid(started.config_path), out
    assert accepts("127.0.0.1", started.port), f"nothing accepts on port {started.port}"


def test_killed_router_is_restarted_with_new_pid(started):
    old = router_pid(started.config_path)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    new = None
    while time.monotonic() < deadline:
        new = router_pid(started.config_path)
        if new and new != old and accepts("127.0.0.1", started.port):
            break
        time.sleep(0.2)
    assert new and new != old, f"router not back within 10s (old pid {old}, now {new})"
    log = tail(started.hearthd_log)
    assert f"router (pid {old}) killed by SIGKILL" in log, log
    # bash's own job notice ("hearthd: line 9: 123 Killed ...") is not
    # hearthd's to log: every line is one of its dated records
    stray = [line for line in log.splitlines() if line and not re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert not stray, f"lines hearthd did not write in hearthd.log: {stray}"


def test_stop_stops_router_cleanly(started):
    pid = router_pid(started.config_path)
    status, out = hearthd(started.config_path, "stop")
    assert status == 0, f"stop exited with {status}:\n{out}"
    status, out = hearthd(started.config_path, "status")
    assert status == 3, f"status after stop exited with {status}, expected 3:\n{out}"
    assert "hearthd: not running" in out and "router: stopped" in out, out
    assert not accepts("127.0.0.1", started.port), "the router's port still accepts"
    log = tail(started.hearthd_log)
    assert f"router (pid {pid}) stopped: exited with status 0" in log, log


def test_start_refuses_when_already_running(started):
    status, out = hearthd(started.config_path, "start")
    assert status != 0 and "already running" in out, f"second start: {status}\n{out}"


def test_start_after_supervisor_was_killed_replaces_its_router(started):
    with open(os.path.join(started.statedir, "run", "hearthd.pid")) as f:
        supervisor = int(f.read())
    old = router_pid(started.config_path)
    os.kill(supervisor, signal.SIGKILL)
    status, out = hearthd(started.config_path, "start")
    assert status == 0, f"start after the supervisor was killed exited with {status}:\n{out}"
    assert f"stopped router (pid {old})" in out, out
    new = router_pid(started.config_path)
    assert new and new != old, f"router pid {old} before, {new} after"


def test_run_in_foreground_stops_on_sigterm(supervised):
    p = subprocess.Popen([HEARTHD, "-c", supervised.config_path, "run"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 10
    while not accepts("127.0.0.1", supervised.port) and time.monotonic() < deadline:
        assert p.poll() is None, f"hearthd run exited with {p.returncode}:\n{p.stdout.read()}"
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    out = p.communicate(timeout=20)[0]
    assert p.returncode == 0, f"hearthd run exited with {p.returncode}:\n{out}"
    assert re.search(r"router \(pid \d+\) stopped: exited with status 0", out), out


def test_start_with_unknown_setting_fails_naming_file_and_line(supervised, tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<hearth>\n"
                   f"  <statedir>{supervised.statedir}</statedir>\n"
                   "  <router><no-such-setting>1</no-such-setting></router>\n"
                   "</hearth>\n")
    status, out = hearthd(str(bad), "start")
    assert status != 0, f"start with a bad config exited with 0:\n{out}"
    assert "bad.xml:3" in out, f"the message does not name bad.xml:3:\n{out}"
    assert not os.path.exists(os.path.join(supervised.statedir, "run", "hearthd.pid")), \
        "a supervisor was started anyway"


# ---- etc/hearth.xml ----------------------------------------------------------

def settings_table():
    """{path: default or None} from common/settings.c; sections have None."""
    text = open(SETTINGS_C).read()
    table = {}
    for kind, path, rest in re.findall(
            r'\b(SECTION|STRINGS?|INT|BOOL|SIZE|DURATION|CHOICE)\("([^"]+)",\s*([^,]+)', text):
        m = re.match(r'"(.*)"', rest.strip())
        table[path] = m[1] if kind != "SECTION" and m else None
    assert table, f"no settings found in {SETTINGS_C}"
    return table


def template_uncommented():
    """The template with every commented-out element put back in."""
    text = open(TEMPLATE).read()
    text = re.sub(r"<!-- (<[^!][^>]*>(?:[^<]*</[^>]+>)?) -->", r"\1", text)
    return ET.fromstring(re.sub(r"<!--.*?-->", "", text, flags=re.S).encode())


def test_template_passes_check_once_password_is_set(tmp_path):
    text = open(TEMPLATE).read()
    text, n = re.subn(r"<!-- (<password>).*?(</password>) -->", r"\1a-password\2", text)
    assert n == 1, "the template has no commented-out <password> to set"
    config = tmp_path / "hearth.xml"
    config.write_text(text)
    p = subprocess.run([binary("router"), "-c", str(config), "-t"], capture_output=True, text=True)
    assert p.returncode == 0, f"hearth-router -t on the template: {p.returncode}\n{p.stdout}{p.stderr}"


def test_template_documents_every_setting_with_its_default():
    table = settings_table()
    documented = {}

    def walk(elem, path):
        documented[path] = (elem.text or "").strip()
        for name, value in elem.attrib.items():
            documented[f"{path}@{name}"] = value
        for kid in elem:
            walk(kid, f"{path}.{kid.tag}" if path else kid.tag)

    for kid in template_uncommented():
        walk(kid, kid.tag)
    missing = sorted(set(table) - set(documented))
    unknown = sorted(set(documented) - set(table))
    assert not missing, f"settings.c has settings the template lacks: {missing}"
    assert not unknown, f"the template has settings settings.c lacks: {unknown}"
    wrong = {p: (documented[p], d) for p, d in table.items() if d and documented[p] != d}
    assert not wrong, f"template values that are not the defaults (template, default): {wrong}"


def test_logrotate_rotates_the_logs_and_the_daemons_write_on(started, tmp_path):
    """The installed logrotate file (etc/logrotate/hearth), pointed at this
    test's log directory: the logs are rotated in place (copytruncate), and
    the router, whose log hearthd opened once, goes on writing to router.log."""
    logdir = os.path.join(started.statedir, "log")
    router_log = os.path.join(logdir, "router.log")
    with open(os.path.join(BUILDDIR, "etc", "logrotate", "hearth")) as f:
        text = f.read()
    text, n = re.subn(r"^\S+/log/\*\.log \{", f"{logdir}/*.log {{", text, flags=re.M)
    assert n == 1, text
    conf = tmp_path / "hearth.logrotate"
    conf.write_text(text)
    p = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "logrotate.status"), str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    with open(router_log + ".1") as f:
        assert "listening" in f.read()
    assert accepts("127.0.0.1", started.port)  # the router logs the connection
    deadline = time.monotonic() + 10
    while "connection from" not in open(router_log).read():
        assert time.monotonic() < deadline, "nothing written to router.log after the rotation"
        time.sleep(0.05)
    assert os.path.exists(os.path.join(logdir, "hearthd.log.1"))


def test_a_hung_daemon_is_killed_and_restarted_by_the_watchdog(supervised):
    """supervisor.watchdog: a router stopped with SIGSTOP touches its
    heartbeat no more; hearthd kills it and starts a new one."""
    supervised.write_config(**{"supervisor.daemon": ["router"], "supervisor.watchdog": "2s"})
    status, out = hearthd(supervised.config_path, "start")
    assert status == 0, out
    heartbeat = os.path.join(supervised.statedir, "heartbeat", "router")
    wait_for(lambda: os.path.exists(heartbeat), "the router's heartbeat file")
    old = router_pid(supervised.config_path)
    os.kill(old, signal.SIGSTOP)
    new = wait_for(lambda: (lambda p: p if p and p != old else None)(
        router_pid(supervised.config_path)), "a new router after the watchdog", timeout=15)
    assert new != old
    wait_for(lambda: accepts("127.0.0.1", supervised.port), "the new router listening")
    log = tail(supervised.hearthd_log, 80)
    assert f"router (pid {old}) has not shown life for 2s (supervisor.watchdog): killing it" in log, log
    assert f"router (pid {old}) killed by SIGKILL" in log, log


def test_a_router_that_runs_is_not_killed_by_the_watchdog(supervised):
    supervised.write_config(**{"supervisor.daemon": ["router"], "supervisor.watchdog": "1s"})
    status, out = hearthd(supervised.config_path, "start")
    assert status == 0, out
    pid = router_pid(supervised.config_path)
    deadline = time.monotonic() + 4  # four watchdog periods
    while time.monotonic() < deadline:
        assert router_pid(supervised.config_path) == pid, tail(supervised.hearthd_log)
        time.sleep(0.5)
    assert "has not shown life" not in tail(supervised.hearthd_log, 80)


def test_status_tells_of_a_daemon_that_keeps_failing(supervised, tmp_path):
    supervised.write_config(**{"supervisor.daemon": ["router", "sm"],
                               "storage.sqlite": str(tmp_path / "missing" / "dir" / "hearth.sqlite")})
    status, out = hearthd(supervised.config_path, "start")
    assert status == 0, out
    pattern = (r"^sm: (stopped|running \(pid \d+\)) \(failed ([2-9]|\d\d+) times in a row, last "
               r"exited with status 1 after \d+s; see .*sm\.log\)$")
    wait_for(lambda: re.search(pattern, hearthd(supervised.config_path, "status")[1], re.M),
             "hearthd status saying sm keeps failing", timeout=15)


def test_components_run_by_default_only_with_their_router_account(hearth_env):
    """With no supervisor.daemon, hearthd runs every daemon that is built,
    hearth-upload and hearth-proxy65 only when router/component has the
    account of their name (an older config has none: they would fail at
    every start)."""
    names = lambda out: re.findall(r"^([a-z0-9-]+): ", out, re.M)  # noqa: E731
    _, out = hearthd(hearth_env.config_path, "status")
    assert "upload" in names(out) and "proxy65" in names(out), out
    accounts = hearth_env.settings["router.component"]
    hearth_env.write_config(**{"router.component": [a for a in accounts if a["name"] != "upload"]})
    _, out = hearthd(hearth_env.config_path, "status")
    assert "upload" not in names(out) and "proxy65" in names(out), out
    assert "router" in names(out) and "sm" in names(out), out
