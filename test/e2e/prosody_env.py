"""prosody_env — a real Prosody, run by the e2e tests as a private process:
its own temporary directory, free ports, log at debug level, stopped at
the end. A test writes its config (write_config: what it needs of Prosody,
c2s only or federating), then start() waits until it listens.

Used by test_s2s_prosody.py (federation) and test_migrate.py (Prosody's
data exported with prosody-migrator)."""
import os
import shutil
import subprocess
import time

from hearth_env import accepts, free_port, tail

PROSODY = shutil.which("prosody") or "/usr/bin/prosody"
PROSODYCTL = shutil.which("prosodyctl") or "/usr/bin/prosodyctl"


class ProsodyBase:
    """dir, data (its data_path), domain, host and c2s port; config is the
    path write_config() writes, log the debug log the config must name."""

    def __init__(self, tmpdir, domain):
        self.dir = str(tmpdir)
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data, exist_ok=True)
        self.domain = domain
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = self.port
        self.log = os.path.join(self.dir, "prosody.log")
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        self.proc = None

    def write_config(self, text):
        with open(self.config, "w") as f:
            f.write(text)

    def ports(self):
        """The ports start() waits for."""
        return [self.port]

    def start(self):
        stdout = os.path.join(self.dir, "stdout")
        self.proc = subprocess.Popen([PROSODY, "--config", self.config], stdin=subprocess.DEVNULL,
                                     stdout=open(stdout, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prosody exited {self.proc.returncode}:\n"
                                     f"{tail(stdout)}\n{tail(self.log)}")
            if all(accepts(self.host, port) for port in self.ports()):
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
