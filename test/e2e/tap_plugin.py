"""tap_plugin — pytest results as TAP, for automake's tap-driver.

Load with `-p tap_plugin` (run-e2e does); it replaces pytest's terminal
reporter. Each test becomes
one line, `ok N - name` or `not ok N - name`, its failure (and the logs the
fixtures attached) `# ` lines below it, and the plan `1..N` comes last.
Skips are `ok N - name # SKIP why`, expected failures `not ok N - name
# TODO why`. A file that fails to import or collect is a failed test of its
own; a run that collects nothing is one failed test saying so, because an
e2e suite that runs nothing must not pass.

TAP goes to the file descriptor in $HEARTH_TAP_FD (default 1). run-e2e
points it at the real stdout and everything else pytest or a test prints
into a pipe that prefixes `# `, so nothing but these lines can look like
TAP.
"""
import os

import pytest


class TapReporter:
    def __init__(self, out):
        self.out = out
        self.count = 0
        self.outcomes = {}  # nodeid -> [failed, skipped, xfailed, reason, details]

    def emit(self, line):
        self.out.write(line + "\n")
        self.out.flush()

    def result(self, ok, name, directive="", details=()):
        self.count += 1
        name = name.replace("#", "\\#")
        self.emit(f"{'ok' if ok else 'not ok'} {self.count} - {name}{directive}")
        for block in details:
            for line in block.splitlines():
                self.emit(("# " + line).rstrip())

    def pytest_collectreport(self, report):
        if report.failed:
            self.result(False, f"collect {report.nodeid or '.'}",
                        details=[str(report.longrepr)])

    def pytest_runtest_logreport(self, report):
        o = self.outcomes.setdefault(report.nodeid, [False, False, False, "", []])
        if hasattr(report, "wasxfail"):
            o[2] = report.skipped  # xfailed; an xpass counts as a pass
            o[3] = report.wasxfail or "expected to fail"
        elif report.failed:
            o[0] = True
            what = "" if report.when == "call" else f" (in {report.when})"
            o[4].append(f"FAILED{what}:\n{report.longreprtext}")
            for title, text in report.sections:
                o[4].append(f"--- {title} ---\n{text}")
        elif report.skipped:
            o[1] = True
            longrepr = report.longrepr
            o[3] = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)

    def pytest_runtest_logfinish(self, nodeid, location):
        failed, skipped, xfailed, reason, details = self.outcomes.pop(
            nodeid, [False, False, False, "", []])
        if failed:
            self.result(False, nodeid, details=details)
        elif xfailed:
            self.result(False, nodeid, f" # TODO {reason}")
        elif skipped:
            self.result(True, nodeid, f" # SKIP {reason}")
        else:
            self.result(True, nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED or self.count == 0:
            self.result(False, "no e2e tests were collected",
                        details=[f"pytest collected nothing under {session.config.rootpath}"])
        elif exitstatus == pytest.ExitCode.INTERRUPTED:
            self.result(False, "the run was interrupted")
        elif exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            self.result(False, "pytest failed internally (see the log above)")
        self.emit(f"1..{self.count}")


# pytest-xdist workers (run-e2e starts some when xdist is installed) run
# tests and send their reports to the controller, which reports them all:
# the plugin stays idle in a worker.
_is_worker = "PYTEST_XDIST_WORKER" in os.environ

# Taken when `-p tap_plugin` imports this module, before pytest starts
# capturing output at the file descriptor level.
_tap_fd = None if _is_worker else os.dup(int(os.environ.get("HEARTH_TAP_FD", "1")))


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    if _is_worker:
        return
    # The terminal reporter goes (its options stay: pytest's assertion
    # messages read them); this one reports instead.
    terminal = config.pluginmanager.getplugin("terminalreporter")
    if terminal:
        config.pluginmanager.unregister(terminal)
    out = os.fdopen(_tap_fd, "w", buffering=1, closefd=False)
    config.pluginmanager.register(TapReporter(out), "tap-reporter")
