"""A real libvirtd of a test's own: ``libvirtd --listen`` in session mode, run as user
``nobody`` with its state in a temporary directory, reached as
``qemu+tcp://127.0.0.1:PORT/session`` (loopback only, no authentication).

The drills pause it (SIGSTOP), stop it and start it again; the lab's system daemon, which the
other integration tests use, is never touched. Its QEMU driver sees this machine's NUMA
topology like the system daemon does; its domains are defined and never started.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import libvirt

from numaportal.virt.connection import open_connection
from numaportal.virt.errors import VirtError
from tests.conftest import free_port

__all__ = ["PrivateLibvirtd"]

USER = "nobody"


class PrivateLibvirtd:
    """``start()`` (waits until it answers), ``pause()``, ``resume()``, ``stop()``: the
    :class:`web.drills.DaemonControl` of the drills."""

    def __init__(self, directory: Path) -> None:
        """*directory*: short (QEMU's probe puts a UNIX socket of at most 108 bytes under
        it) and reachable by user nobody (e.g. ``tempfile.mkdtemp()``)."""
        self.directory = directory
        self.port = free_port()
        self.uri = f"qemu+tcp://127.0.0.1:{self.port}/session"
        self.process: subprocess.Popen | None = None
        self.log_path = directory / "libvirtd.log"
        libvirtd = shutil.which("libvirtd") or "/usr/sbin/libvirtd"
        if not os.path.exists(libvirtd):
            raise AssertionError("libvirtd is not installed: run scripts/libvirt-lab start")
        self.libvirtd = libvirtd
        for sub in ("run", "config", "cache", "sock"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        (directory / "libvirtd.conf").write_text(
            'listen_tls = 0\nlisten_tcp = 1\nlisten_addr = "127.0.0.1"\n'
            f'tcp_port = "{self.port}"\nauth_tcp = "none"\n'
            f'unix_sock_dir = "{directory / "sock"}"\n'
        )
        user = pwd.getpwnam(USER)
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.directory),
            "XDG_RUNTIME_DIR": str(self.directory / "run"),
            "XDG_CONFIG_HOME": str(self.directory / "config"),
            "XDG_CACHE_HOME": str(self.directory / "cache"),
        }
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            ["runuser", "-u", USER, "--", self.libvirtd, "--listen",
             "-f", str(self.directory / "libvirtd.conf")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                open_connection(self.uri, timeout=5).close()
                return
            except VirtError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"private libvirtd did not answer on {self.uri}: {exc}\n"
                        f"{self.log_path.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.2)

    def _signal(self, signum: int) -> None:
        assert self.process is not None, "the private libvirtd is not running"
        # The process group: runuser and libvirtd (runuser forwards few signals).
        os.killpg(self.process.pid, signum)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM (a paused daemon is continued to act on it); SIGKILL after 10 s."""
        if self.process is None:
            return
        self._signal(signal.SIGTERM)
        self._signal(signal.SIGCONT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(10)
        # libvirtd itself, not only runuser, must be gone before a start binds the port.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.process = None

    def define(self, xml: str) -> None:
        """Define (never start) a domain on it."""
        conn = libvirt.open(self.uri)
        try:
            conn.defineXML(xml)
        finally:
            conn.close()
