"""Scratch NUMA labs for tests/numalab/test_lab_start.py: a directory of their own under
/var/tmp, a loopback port of their own (16590-16689), the on-host worker off, pip offline;
what each run of scripts/numa-lab said, and what it left running (only processes naming the
scratch directory count)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "numa-lab"
MAIN_LAB_DIR = Path("/var/lib/numaportal-numalab")
MAIN_PORT = 16510
SCRATCH_PORTS = range(16590, 16690)
SCRATCH_ROOT = Path("/var/tmp")
VENV_CACHE = Path("/var/tmp/numaportal-numalab-test")
VNG_VERSION = "1.42"  # the script's VNG_VERSION
OLD_VNG_VERSION = "1.41"
ERROR = "[numa-lab] ERROR: "
# A boot under TCG on this 2-CPU machine: 20-60 s to the guest script, more when it is busy.
BOOT_SECONDS = 240


def _fail(msg: str) -> None:
    pytest.fail(msg, pytrace=False)


# ---------------------------------------------------------------------------------------------
# Processes, ports
# ---------------------------------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def procs_naming(text: str) -> dict[int, str]:
    """Live processes (not zombies, not this one) whose command line contains *text*."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        cmd = _cmdline(int(entry.name))
        if text in cmd:
            found[int(entry.name)] = cmd[:200]
    return found


def alive(pid: int) -> bool:
    """True while *pid* runs (a zombie counts as gone: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def listening(port: int) -> bool:
    out = subprocess.run(
        ["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return bool(out.strip())


def connects(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """A scratch port nobody listens on nor has bound (checked by binding it, then closing)."""
    ports = list(SCRATCH_PORTS)
    random.shuffle(ports)
    for port in ports:
        if listening(port):
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    _fail(f"no free loopback port in {SCRATCH_PORTS.start}-{SCRATCH_PORTS.stop - 1}")
    raise AssertionError  # unreachable


# ---------------------------------------------------------------------------------------------
# virtme-ng virtualenvs
# ---------------------------------------------------------------------------------------------


def _venv_version(venv: Path) -> str | None:
    if not (venv / "bin" / "python").exists():
        return None
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            'import importlib.metadata as m; print(m.version("virtme-ng"))',
        ],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def cached_venv(version: str) -> Path:
    """A virtualenv with virtme-ng *version*, built once per machine (as the script builds its
    own: Debian's python3 -m venv, pip install virtme-ng==VERSION)."""
    venv = VENV_CACHE / f"venv-virtme-ng-{version}"
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    with open(VENV_CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _venv_version(venv) == version and (venv / "bin" / "vng").exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
        pip = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"virtme-ng=={version}"],
            capture_output=True,
            text=True,
        )
        if pip.returncode != 0 or _venv_version(venv) != version:
            shutil.rmtree(venv, ignore_errors=True)
            _fail(f"could not install virtme-ng=={version} from PyPI into {venv}:\n{pip.stderr}")
    return venv


def clone_venv(src: Path, dst: Path, drop: tuple[str, ...] = ()) -> Path:
    """A copy of the virtualenv *src* at *dst* whose scripts run dst's python (their #! lines
    name the venv they were installed in); packages named in *drop* are left out."""

    def ignore(_dir: str, names: list[str]) -> list[str]:
        return [n for n in names if any(n == d or n.startswith(f"{d}-") for d in drop)]

    shutil.copytree(src, dst, symlinks=True, ignore=ignore)
    old, new = f"#!{src}/bin/".encode(), f"#!{dst}/bin/".encode()
    for script in (dst / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if data.startswith(old):
            script.write_bytes(new + data[len(old) :])
    return dst


# ---------------------------------------------------------------------------------------------
# Scratch labs
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    rc: int
    out: str
    err: str
    seconds: float
    qemu_pids: set[int] = field(default_factory=set)
    session_pids: set[int] = field(default_factory=set)

    def error(self) -> str:
        """The last ERROR line, without its prefix (what the script says failed)."""
        lines = [line for line in self.err.splitlines() if line.startswith(ERROR)]
        assert lines, f"no {ERROR!r} line (exit {self.rc}):\n{self}"
        return lines[-1][len(ERROR) :]

    def __str__(self) -> str:
        return (
            f"exit {self.rc} after {self.seconds:.1f} s\n"
            f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"
        )


@dataclass
class Lab:
    dir: Path
    port: int

    @property
    def venv(self) -> Path:
        return self.dir / "venv"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("NUMAPORTAL_NUMALAB_", "PIP_"))
        }
        offline = self.dir.parent / "no-packages"
        offline.mkdir(exist_ok=True)
        env.update(
            NUMAPORTAL_NUMALAB_DIR=str(self.dir),
            NUMAPORTAL_NUMALAB_PORT=str(self.port),
            # never a second on-host worker on the main lab's queue (host.numalab)
            NUMAPORTAL_NUMALAB_WORKER="0",
            # a scratch lab never installs anything from the network
            PIP_CONFIG_FILE=os.devnull,
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(offline),
            PIP_NO_CACHE_DIR="1",
        )
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 60, **extra: str) -> Run:
        """``scripts/numa-lab ARGS`` on this lab; while it runs, the guest's QEMU and session
        pids are read from the lab's pidfiles (they are gone once the guest is stopped)."""
        out_path, err_path = self.dir.parent / "stdout", self.dir.parent / "stderr"
        t0 = time.monotonic()
        qemu_pids: set[int] = set()
        session_pids: set[int] = set()
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(
                [str(SCRIPT), *args], stdout=out, stderr=err, env=self.env(**extra)
            )
            while proc.poll() is None:
                for pidfile, pids in (("qemu.pid", qemu_pids), ("session.pid", session_pids)):
                    with contextlib.suppress(OSError, ValueError):
                        pids.add(int((self.dir / "run" / pidfile).read_text()))
                if time.monotonic() - t0 > timeout:
                    proc.kill()
                    proc.wait()
                    _fail(f"numa-lab {' '.join(args)} still running after {timeout} s")
                time.sleep(0.2)
        return Run(
            proc.returncode,
            out_path.read_text(),
            err_path.read_text(),
            time.monotonic() - t0,
            qemu_pids,
            session_pids,
        )

    def qemu_pid(self) -> int | None:
        """The guest's QEMU, if it runs: the pid in its pidfile, started with that pidfile."""
        pidfile = self.dir / "run" / "qemu.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            if alive(pid) and f"-pidfile {pidfile}" in _cmdline(pid):
                return pid
        return None

    def leftovers(self) -> dict[int, str]:
        """Processes of this lab: any that names its directory (vng, virtme-run, QEMU, the
        console pipe, the guestfwd socat helpers, a virtiofsd)."""
        return procs_naming(f"{self.dir}/")

    def assert_nothing_left(self, run: Run) -> None:
        left = self.leftovers()
        assert not left, f"processes of {self.dir} still running: {left}\n{run}"
        qemus = {p: c for p, c in procs_naming("qemu-system-x86_64").items() if str(self.dir) in c}
        assert not qemus, f"QEMU of {self.dir} still running: {qemus}"
        for tool in ("virtiofsd", "socat"):
            mine = {p: c for p, c in procs_naming(tool).items() if str(self.dir) in c}
            assert not mine, f"{tool} of {self.dir} still running: {mine}"
        still = sorted(p for p in run.qemu_pids | run.session_pids if alive(p))
        assert not still, f"the guest's QEMU/session pids {still} still run\n{run}"
        assert not listening(self.port), f"port {self.port} still listened on after {run}"
        assert not connects(self.port), f"127.0.0.1:{self.port} still accepts connections"
