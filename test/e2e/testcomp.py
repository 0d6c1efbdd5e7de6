"""A native Hearth component for tests: drives test/e2e/hearth-testcomp.

The C program is a real user of common/component.c (SCRAM login, binds,
reconnects); this wrapper writes its commands and waits for its events.
"""
import os
import queue
import subprocess
import threading
import time


class Component:
    """One hearth-testcomp process linked to a router."""

    def __init__(self, builddir, router_addr, password, ident, *binds, user="testcomp",
                 logdir=None, tls=None):
        """Bind each of binds ("NAME [shard|default]"), then connect, with
        the router account user (default: the tests' component account,
        hearth_env's "testcomp"; Router.account(role) gives a daemon's).
        tls: (ca_file, name) to trust when the router asks for STARTTLS."""
        self.ident = ident
        binary = os.path.join(builddir, "test", "e2e", "hearth-testcomp")
        self.log_path = os.path.join(logdir, f"comp-{ident}.log") if logdir else os.devnull
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, router_addr, user, password, ident, *(tls or ())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            text=True, bufsize=1)
        self.events = queue.Queue()
        self.seen = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        for b in binds:
            self.cmd("bind " + b)
        self.cmd("connect")

    def _read(self):
        for line in self.proc.stdout:
            self.events.put(line.rstrip("\n"))
        self.events.put(None)

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, match, timeout=10):
        """Wait for an event line: match is a prefix or a predicate."""
        test = match if callable(match) else (lambda line: line.startswith(match))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self.events.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(
                    f"{self.ident}: exited while waiting for {match!r}; saw {self.seen[-10:]}")
            self.seen.append(line)
            if test(line):
                return line
        raise AssertionError(
            f"{self.ident}: no {match!r} within {timeout}s; last events {self.seen[-10:]}")

    def saw(self, line, timeout=10):
        """line was printed already, or is printed within timeout."""
        if line in self.seen:
            return line
        return self.expect(lambda got: got == line, timeout)

    def poll(self, timeout):
        """The next event line, or None if none comes within timeout."""
        try:
            line = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            raise AssertionError(f"{self.ident}: exited; saw {self.seen[-10:]}")
        self.seen.append(line)
        return line

    def expect_none(self, match, within=1.0):
        """Assert no matching event arrives within the time given."""
        try:
            line = self.expect(match, timeout=within)
        except AssertionError:
            return
        raise AssertionError(f"{self.ident}: unexpected event {line!r}")

    def ask(self, to, sender, stanza, id):
        """Route stanza (one line of XML carrying id='ID') from the name
        sender to to; the event line of the route that answers it."""
        self.cmd(f"send {to} {sender} - {stanza}")
        return self.expect(lambda line: f"id='{id}'" in line)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def count(self):
        self.cmd("count")
        return int(self.expect("count ").split()[1])

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
