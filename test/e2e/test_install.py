"""make install of the build under test, into a temporary DESTDIR: the
layout (daemons in sbindir, hearthd and hearthctl in bindir, the config
0640, the state directory 0750), the daemons' default statedir, the systemd
units (systemd-analyze verify, on copies whose paths point into DESTDIR),
the sysusers.d and tmpfiles.d snippets (applied with --root), and the
manual pages (groff -ww renders each without a warning; hearth.xml(5) and
hearthctl(8) name every setting and every subcommand the code has)."""
import os
import re
import shutil
import stat
import subprocess

import pytest

from hearth_env import BUILDDIR, SRCDIR

DAEMONS = ("router", "c2s", "sm", "s2s", "resolver", "upload", "proxy65")
UNITS = ("hearth-router.service", "hearth-sm.service", "hearth-s2s.service",
         "hearth-resolver.service", "hearth-c2s@.service", "hearth-upload.service",
         "hearth-proxy65.service", "hearth.target")
PAGES = {"man8": [f"hearth-{d}.8" for d in DAEMONS] + ["hearthd.8", "hearthctl.8"],
         "man5": ["hearth.xml.5"]}
DIRS = ("bindir", "sbindir", "sysconfdir", "localstatedir", "mandir", "systemdsystemunitdir",
        "sysusersdir", "tmpfilesdir")


def make_dirs():
    """The installation directories as the build's Makefile expands them."""
    rule = "print-dirs:\n" + "".join(f"\t@echo '{d}=$({d})'\n" for d in DIRS)
    p = subprocess.run(["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", "-",
                        "print-dirs"], cwd=BUILDDIR, input=rule, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(DESTDIR, dirs): make install DESTDIR=... of the build under test."""
    dest = str(tmp_path_factory.mktemp("destdir"))
    p = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}"], cwd=BUILDDIR,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"make install exited with {p.returncode}:\n{p.stdout}{p.stderr}"
    return dest, make_dirs()


def under(installed, name, *parts):
    dest, dirs = installed
    if name in ("systemdsystemunitdir", "sysusersdir", "tmpfilesdir") and not dirs[name]:
        pytest.skip("configured --with-systemdsystemunitdir=no: no systemd files installed")
    return os.path.join(dest + dirs[name], *parts)


def test_daemons_go_to_sbindir_and_hearthd_hearthctl_to_bindir(installed):
    for d in DAEMONS:
        path = under(installed, "sbindir", f"hearth-{d}")
        assert os.access(path, os.X_OK), f"{path} is not installed"
        assert not os.path.exists(under(installed, "bindir", f"hearth-{d}")), \
            f"hearth-{d} is in bindir too"
    for tool in ("hearthd", "hearthctl"):
        assert os.access(under(installed, "bindir", tool), os.X_OK), f"{tool} not in bindir"


def test_installed_hearthd_looks_for_the_daemons_in_sbindir(installed):
    with open(under(installed, "bindir", "hearthd")) as f:
        text = f.read()
    sbindir = installed[1]["sbindir"]
    assert f"dirs+=('{sbindir}')" in text, f"hearthd does not look in {sbindir}"
    assert "@sbindir@" not in text and "@bindir@" not in text, "unsubstituted paths in hearthd"


def test_config_is_0640_and_statedir_0750(installed):
    config = under(installed, "sysconfdir", "hearth", "hearth.xml")
    state = under(installed, "localstatedir", "lib", "hearth")
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o640, oct(os.stat(config).st_mode)
    assert os.path.isdir(state), f"{state} is not made"
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o750, oct(os.stat(state).st_mode)


def test_default_statedir_is_the_one_make_install_creates(installed, tmp_path):
    config = tmp_path / "hearth.xml"
    config.write_text("<hearth><domain>localhost</domain></hearth>\n")
    p = subprocess.run([under(installed, "sbindir", "hearth-router"), "-c", str(config), "--get",
                        "statedir"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    expected = installed[1]["localstatedir"] + "/lib/hearth"
    assert p.stdout.strip() == expected, f"statedir {p.stdout.strip()!r}, expected {expected!r}"


@pytest.fixture
def unit_copies(installed, tmp_path):
    """The installed units with every installed path moved into DESTDIR, so
    that systemd-analyze finds the programs they run."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    dest, dirs = installed
    copies = tmp_path / "units"
    copies.mkdir()
    for unit in UNITS:
        with open(under(installed, "systemdsystemunitdir", unit)) as f:
            text = f.read()
        for name in ("sbindir", "sysconfdir", "localstatedir"):
            text = text.replace(dirs[name] + "/", dest + dirs[name] + "/")
            text = re.sub(re.escape(dirs[name]) + r"(\s)", dest + dirs[name] + r"\1", text)
        (copies / unit).write_text(text)
    return copies


def verify(copies, installed, *units):
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{copies}:",
               MANPATH=under(installed, "mandir"))  # Documentation=man:... must resolve
    return subprocess.run(["systemd-analyze", "verify", *[str(copies / u) for u in units]],
                          capture_output=True, text=True, env=env, timeout=60)


def test_units_pass_systemd_analyze_verify(unit_copies, installed):
    p = verify(unit_copies, installed, "hearth-router.service", "hearth-sm.service",
               "hearth-s2s.service", "hearth-resolver.service", "hearth-c2s@1.service",
               "hearth-upload.service", "hearth-proxy65.service", "hearth.target")
    assert p.returncode == 0 and not p.stderr.strip(), \
        f"systemd-analyze verify exited with {p.returncode}:\n{p.stdout}{p.stderr}"


def test_systemd_analyze_verify_catches_a_broken_unit(unit_copies, installed):
    """The check above would fail for a unit that names a missing program."""
    text = (unit_copies / "hearth-sm.service").read_text()
    (unit_copies / "broken.service").write_text(
        re.sub(r"ExecStart=\S+", "ExecStart=/nonexistent/hearth-sm", text))
    p = verify(unit_copies, installed, "broken.service")
    assert p.returncode != 0 and "/nonexistent/hearth-sm" in p.stderr, p.stderr


def unit_settings(installed, unit):
    with open(under(installed, "systemdsystemunitdir", unit)) as f:
        return [line.strip() for line in f if "=" in line and not line.startswith("#")]


def test_units_are_notify_hardened_and_run_the_installed_daemons(installed):
    dirs = installed[1]
    config = dirs["sysconfdir"] + "/hearth/hearth.xml"
    for d in DAEMONS:
        unit = "hearth-c2s@.service" if d == "c2s" else f"hearth-{d}.service"
        lines = unit_settings(installed, unit)
        exec_start = f"ExecStart={dirs['sbindir']}/hearth-{d} -c {config}" + \
            (" -i c2s-%i" if d == "c2s" else "")
        for wanted in (exec_start, "Type=notify", "Restart=on-failure", "NoNewPrivileges=yes",
                       "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                       f"ReadWritePaths={dirs['localstatedir']}/lib/hearth", "User=hearth",
                       "ExecReload=/bin/kill -HUP $MAINPID", "WantedBy=hearth.target"):
            assert wanted in lines, f"{unit} lacks {wanted}: {lines}"


def test_target_wants_every_daemon_and_two_c2s(installed):
    wants = " ".join(line.split("=", 1)[1] for line in unit_settings(installed, "hearth.target")
                     if line.startswith("Wants="))
    for unit in ("hearth-router.service", "hearth-sm.service", "hearth-s2s.service",
                 "hearth-resolver.service", "hearth-c2s@1.service", "hearth-c2s@2.service"):
        assert unit in wants.split(), f"hearth.target does not want {unit}: {wants}"


@pytest.mark.skipif(os.geteuid() != 0, reason="tmpfiles gives the directory to hearth: root only")
def test_sysusers_and_tmpfiles_make_the_user_and_the_statedir(installed, tmp_path):
    """Applied to a copy of the installation as its root: sysusers.d makes
    the hearth user and group, tmpfiles.d the state directory, 0750 and
    theirs."""
    under(installed, "sysusersdir")  # skips without systemd files
    root = tmp_path / "root"
    shutil.copytree(installed[0], root, symlinks=True)
    (root / "etc").mkdir(exist_ok=True)
    dirs = installed[1]
    state = str(root) + dirs["localstatedir"] + "/lib/hearth"
    os.rmdir(state)
    sysusers = str(root) + dirs["sysusersdir"] + "/hearth.conf"
    tmpfiles = str(root) + dirs["tmpfilesdir"] + "/hearth.conf"
    p = subprocess.run(["systemd-sysusers", f"--root={root}", sysusers], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    with open(root / "etc" / "passwd") as f:
        user = [line.split(":") for line in f if line.startswith("hearth:")]
    assert user, "systemd-sysusers made no hearth user"
    p = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", tmpfiles],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    st = os.stat(state)
    assert stat.S_IMODE(st.st_mode) == 0o750, oct(st.st_mode)
    assert (st.st_uid, st.st_gid) == (int(user[0][2]), int(user[0][3])), \
        f"{state} is {st.st_uid}:{st.st_gid}, not hearth's {user[0][2]}:{user[0][3]}"


def man_pages(installed):
    for section, pages in PAGES.items():
        for page in pages:
            yield page, under(installed, "mandir", section, page)


def test_man_pages_render_without_warnings(installed):
    for page, path in man_pages(installed):
        assert os.path.exists(path), f"{page} is not installed"
        p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0 and not p.stderr, f"groff on {page}:\n{p.stderr}"
        p = subprocess.run(["man", "-l", path], capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, MANWIDTH="80", MAN_KEEP_STDERR="1"))
        assert p.returncode == 0 and not p.stderr, f"man -l {page}:\n{p.stderr}"
        assert "NAME" in p.stdout and "@" + "sysconfdir@" not in p.stdout, p.stdout[:400]


def rendered(installed, section, page):
    p = subprocess.run(["man", "-l", under(installed, "mandir", section, page)],
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, MANWIDTH="200"))
    return p.stdout


def test_hearth_xml_page_lists_every_setting_of_the_table(installed):
    with open(os.path.join(SRCDIR, "common", "settings.c")) as f:
        paths = re.findall(r'^\s+[A-Z]+\("([a-z0-9.@-]+)"', f.read(), re.M)
    assert len(paths) > 50, "the settings table was not read"
    text = rendered(installed, "man5", "hearth.xml.5")
    # a .TP tag opens its line at indent 7 (a section's name, .SS, at 3)
    listed = set(re.findall(r"^ {7}(\S+)", text, re.M)) | set(re.findall(r"^ {3}(\S+)$", text, re.M))
    missing = [p for p in paths if p not in listed]
    assert not missing, f"hearth.xml(5) lacks {missing}"


def test_hearthctl_page_lists_every_subcommand(installed, tmp_path):
    p = subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl")], capture_output=True,
                       text=True, timeout=10)
    commands = set(re.findall(r"hearthctl \[-c FILE\] (\S+)", p.stderr))
    assert len(commands) >= 6, f"no subcommands in hearthctl's usage:\n{p.stderr}"
    text = rendered(installed, "man8", "hearthctl.8")
    described = set(re.findall(r"^ {7}([a-z0-9-]+)\b", text, re.M))
    missing = sorted(commands - described)
    assert not missing, f"hearthctl(8) does not describe {missing}"


def test_the_logrotate_file_names_the_default_log_directory(installed):
    path = under(installed, "sysconfdir", "logrotate.d", "hearth")
    with open(path) as f:
        text = f.read()
    _, dirs = installed
    assert f"{dirs['localstatedir']}/lib/hearth/log/*.log {{" in text, text
    assert "copytruncate" in text, text
