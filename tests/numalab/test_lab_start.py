"""``scripts/numa-lab``: every failure of ``start`` says what failed, and ``stop`` leaves nothing.

The script is run as it is (a subprocess, as root), and these tests assert on its exit status
and its words: the last ``[numa-lab] ERROR:`` line starts with what failed (``kernel:``,
``port:``, ``virtme-ng:``, ``libvirtd:``, ``guest boot:``).

Two kinds of lab:

* scratch labs, one per test: a directory of their own under /var/tmp and a loopback port of
  their own (16590-16689). Everything that starts something runs there, with the on-host worker
  off and pip offline. A test that boots checks afterwards that no process names its directory;
  the fixture stops and removes whatever a failed test left behind (only processes that name
  the test's own directory).
* the main lab (``/var/lib/numaportal-numalab``, port 16510), used by other people at the same
  time: only ``exec`` with commands that change nothing. It is never started or stopped here.

The virtme-ng virtualenvs a scratch lab needs are built once per machine under
``/var/tmp/numaportal-numalab-test`` (from PyPI, ~5 s each) and copied into each scratch lab, so
that no process of a scratch lab names anything but its own directory.

Nothing here is skipped: a missing precondition (not root, the main lab not running, no
virtme-ng from PyPI) fails with what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.numalab

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


@pytest.fixture(scope="module", autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        _fail("scripts/numa-lab runs as root (packages, QEMU): run these tests as root")


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


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A scratch lab: an empty directory of its own and a free port. Afterwards, whatever it
    left running is stopped (scripts/numa-lab stop, then SIGKILL by pid) and, if the test
    passed, the directory is removed (a failed test's stays, for its console log)."""
    base = Path(tempfile.mkdtemp(dir=SCRATCH_ROOT, prefix="numalab-test-"))
    scratch = Lab(base / "lab", free_port())
    failed_before = request.session.testsfailed
    yield scratch
    if scratch.leftovers():
        subprocess.run([str(SCRIPT), "stop"], env=scratch.env(), capture_output=True, timeout=120)
        for pid in scratch.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if request.session.testsfailed == failed_before:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"kept {base} (console.log, stdout, stderr of the failed test)")


def assert_never_booted(lab: Lab, run: Run) -> None:
    assert not (lab.dir / "console.log").exists(), f"a guest was booted:\n{run}"
    assert not run.qemu_pids, f"a QEMU was started: {run.qemu_pids}"
    assert "booting the guest" not in run.out, str(run)
    assert not lab.leftovers(), lab.leftovers()


# ---------------------------------------------------------------------------------------------
# kernel
# ---------------------------------------------------------------------------------------------


def fake_bzimage(path: Path, release: str) -> Path:
    """The start of an x86 bzImage: setup header "HdrS" at 0x202, kernel_version at 0x20e
    (relative to 0x200) pointing to the version string. Enough for `file` and the script."""
    image = bytearray(0x400)
    image[0x1FE:0x200] = b"\x55\xaa"
    image[0x202:0x206] = b"HdrS"
    image[0x20E:0x210] = struct.pack("<H", 0x100)
    version = f"{release} (nobody@numalab-test) #1 SMP".encode() + b"\0"
    image[0x300 : 0x300 + len(version)] = version
    path.write_bytes(bytes(image))
    return path


def test_kernel_that_is_not_a_file(lab: Lab) -> None:
    kernel = lab.dir.parent / "vmlinuz-does-not-exist"
    run = lab.run("start", NUMAPORTAL_NUMALAB_KERNEL=str(kernel))
    assert run.rc == 1, str(run)
    assert run.error() == f"kernel: NUMAPORTAL_NUMALAB_KERNEL={kernel} is not a file"
    assert_never_booted(lab, run)


def test_kernel_that_is_not_a_kernel_image(lab: Lab) -> None:
    kernel = lab.dir.parent / "vmlinuz-text"
    kernel.write_text("this is not a kernel\n" * 100)
    run = lab.run("start", NUMAPORTAL_NUMALAB_KERNEL=str(kernel))
    assert run.rc == 1, str(run)
    assert run.error().startswith(f"kernel: NUMAPORTAL_NUMALAB_KERNEL={kernel} is not a Linux"), (
        str(run)
    )
    assert_never_booted(lab, run)


def test_kernel_whose_modules_are_missing(lab: Lab) -> None:
    release = "0.0.1-numalab-test-amd64"
    assert not Path(f"/lib/modules/{release}").exists(), "precondition: no such modules"
    kernel = fake_bzimage(lab.dir.parent / f"vmlinuz-{release}", release)
    run = lab.run("start", NUMAPORTAL_NUMALAB_KERNEL=str(kernel))
    assert run.rc == 1, str(run)
    error = run.error()
    assert error.startswith(f"kernel: NUMAPORTAL_NUMALAB_KERNEL={kernel} is Linux {release}"), str(
        run
    )
    assert f"/lib/modules/{release}/kernel/fs/9p is missing" in error, str(run)
    assert_never_booted(lab, run)


# ---------------------------------------------------------------------------------------------
# port
# ---------------------------------------------------------------------------------------------


def test_port_already_listened_on(lab: Lab) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", lab.port))
        server.listen(4)
        run = lab.run("start")
        assert run.rc == 1, str(run)
        assert run.error().startswith(f"port: 127.0.0.1:{lab.port} is already in use"), str(run)
        assert_never_booted(lab, run)
        # the test's socket is untouched: still listening, and it is the one that answers
        with socket.create_connection(("127.0.0.1", lab.port), timeout=2):
            server.settimeout(2)
            conn, _ = server.accept()
            conn.close()


def test_port_bound_without_listening(lab: Lab) -> None:
    """A socket bound to the port without listening is invisible to the check before booting
    (ss lists listening sockets) but makes QEMU's forward fail: still a "port:" failure."""
    clone_venv(cached_venv(VNG_VERSION), lab.venv)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", lab.port))
        run = lab.run("start")
        assert run.rc == 1, str(run)
        assert run.error().startswith(f"port: QEMU could not forward 127.0.0.1:{lab.port}"), str(
            run
        )
        lab.assert_nothing_left(run)
        assert holder.getsockname() == ("127.0.0.1", lab.port)


# ---------------------------------------------------------------------------------------------
# virtme-ng
# ---------------------------------------------------------------------------------------------


def test_virtme_ng_of_another_version_that_pip_cannot_fix_offline(lab: Lab) -> None:
    clone_venv(cached_venv(OLD_VNG_VERSION), lab.venv)
    run = lab.run("start")
    assert run.rc == 1, str(run)
    error = run.error()
    assert error.startswith(f"virtme-ng: pip install virtme-ng=={VNG_VERSION} into {lab.venv}"), (
        str(run)
    )
    assert f"it has virtme-ng {OLD_VNG_VERSION}" in error, str(run)
    assert "No matching distribution found" in run.err, run  # pip's own reason, from pip.log
    assert _venv_version(lab.venv) == OLD_VNG_VERSION
    assert_never_booted(lab, run)


def test_virtme_ng_venv_that_cannot_be_created(lab: Lab) -> None:
    lab.dir.mkdir(parents=True)
    lab.venv.write_text("a file where the virtualenv should be\n")
    run = lab.run("start")
    assert run.rc == 1, str(run)
    assert run.error().startswith(f"virtme-ng: could not create the virtualenv {lab.venv}"), str(
        run
    )
    assert_never_booted(lab, run)


def test_virtme_ng_that_is_installed_but_broken(lab: Lab) -> None:
    """virtme-ng 1.42 as the script checks it (version, vng, virtme-run), without one of its
    dependencies: vng dies on its imports before any QEMU."""
    clone_venv(cached_venv(VNG_VERSION), lab.venv, drop=("argcomplete",))
    run = lab.run("start")
    assert run.rc == 1, str(run)
    assert run.error().startswith("virtme-ng: vng exited with status 1, no kernel started"), str(
        run
    )
    assert "ModuleNotFoundError: No module named 'argcomplete'" in run.err, str(run)
    lab.assert_nothing_left(run)


# ---------------------------------------------------------------------------------------------
# stop; a guest that boots
# ---------------------------------------------------------------------------------------------


def test_stop_of_a_lab_that_is_not_running(lab: Lab) -> None:
    run = lab.run("stop")
    assert run.rc == 0, str(run)
    assert "[numa-lab] not running" in run.out.splitlines(), str(run)
    assert ERROR not in run.err, str(run)


def test_guest_kept_after_a_failed_boot_then_stop(lab: Lab) -> None:
    """A boot that fails (the guest script not started within NUMAPORTAL_NUMALAB_TIMEOUT/2 s)
    with NUMAPORTAL_NUMALAB_KEEP_FAILED=1 leaves the guest running; `stop` then stops all of it."""
    clone_venv(cached_venv(VNG_VERSION), lab.venv)
    run = lab.run("start", NUMAPORTAL_NUMALAB_TIMEOUT="10", NUMAPORTAL_NUMALAB_KEEP_FAILED="1")
    assert run.rc == 1, str(run)
    assert run.error().startswith("guest boot: the guest script did not start within 5 s"), str(run)
    assert "leaving the guest running" in run.err, str(run)
    # vng may still be building its initramfs: the kept guest's QEMU shows up within seconds
    deadline = time.monotonic() + 30
    while not (qemu := lab.qemu_pid()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert qemu, f"precondition: the kept guest's QEMU runs\n{run}"
    run.qemu_pids.add(qemu)

    stop = lab.run("stop", timeout=120)
    assert stop.rc == 0, str(stop)
    assert f"stopped: no lab process left, port {lab.port} free" in stop.out, str(stop)
    stop.qemu_pids |= run.qemu_pids
    stop.session_pids |= run.session_pids
    lab.assert_nothing_left(stop)


def test_libvirtd_that_cannot_start(lab: Lab) -> None:
    """The one full boot: the guest comes up, its libvirtd refuses its configuration (a line
    libvirtd cannot parse, through NUMAPORTAL_NUMALAB_LIBVIRTD_CONF). `start` says "libvirtd:"
    with libvirtd's own error and stops the guest; `stop` afterwards finds nothing."""
    clone_venv(cached_venv(VNG_VERSION), lab.venv)
    run = lab.run(
        "start",
        timeout=BOOT_SECONDS + 60,
        NUMAPORTAL_NUMALAB_TIMEOUT=str(BOOT_SECONDS),
        NUMAPORTAL_NUMALAB_LIBVIRTD_CONF="unix_sock_group = libvirt",
    )
    assert run.rc == 1, str(run)
    assert run.qemu_pids, f"precondition: the guest's QEMU ran\n{run}"
    assert "guest stage: libvirtd starting" in run.out, f"precondition: the guest booted\n{run}"
    error = run.error()
    assert error.startswith("libvirtd: the guest booted but libvirtd did not answer"), str(run)
    assert re.search(r"Can't load config file: .*libvirtd\.conf:\d+: expecting a value", error), (
        str(run)
    )
    assert "stopping the guest that failed to come up" in run.out, str(run)
    lab.assert_nothing_left(run)

    stop = lab.run("stop")
    assert stop.rc == 0, str(stop)
    assert "[numa-lab] not running" in stop.out.splitlines(), str(stop)
    assert f"stopped: no lab process left, port {lab.port} free" in stop.out, str(stop)
    lab.assert_nothing_left(stop)


# ---------------------------------------------------------------------------------------------
# exec, against the main lab (read-only commands)
# ---------------------------------------------------------------------------------------------


def main_lab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMAPORTAL_NUMALAB_")}
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def show(res: subprocess.CompletedProcess[str]) -> str:
    return f"exit {res.returncode}\n--- stdout ---\n{res.stdout}\n--- stderr ---\n{res.stderr}"


@pytest.fixture(scope="module")
def main_lab_running(numalab_conn) -> None:
    """`make test` boots the main lab in the background; numalab_ready waits for it."""
    probe = main_lab("exec", "true")
    if probe.returncode != 0:
        status = main_lab("status")
        _fail(
            f"the main NUMA lab ({MAIN_LAB_DIR}, port {MAIN_PORT}) does not run commands "
            f"(exec true: exit {probe.returncode}: {probe.stderr.strip()}); its status:\n"
            f"{status.stdout}{status.stderr}-- it is shared: ask before `scripts/numa-lab start`"
        )


def test_exec_numactl_shows_three_nodes_node2_without_cpus(main_lab_running: None) -> None:
    res = main_lab("exec", "numactl", "-H")
    assert res.returncode == 0, show(res)
    lines = res.stdout.splitlines()
    assert "available: 3 nodes (0-2)" in lines, res.stdout
    cpus = {m[1]: m[2] for line in lines if (m := re.fullmatch(r"node (\d+) cpus:(.*)", line))}
    assert cpus.keys() == {"0", "1", "2"}, res.stdout
    assert cpus["2"].strip() == "", f"node 2 has CPUs: {cpus['2']!r}"
    assert cpus["0"].split() and cpus["1"].split(), res.stdout


def test_exec_exits_with_the_command_status(main_lab_running: None) -> None:
    res = main_lab("exec", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert res.returncode == 7, show(res)
    assert res.stdout == "out\n", show(res)
    assert res.stderr == "err\n", show(res)


def test_exec_passes_arguments_unchanged(main_lab_running: None) -> None:
    args = ["a b", "c'd", 'e"f', "$HOME", "*", "", "g\nh", "--", "-n"]
    res = main_lab("exec", "printf", "%s|", *args)
    assert res.returncode == 0, show(res)
    assert res.stdout == "".join(f"{a}|" for a in args), show(res)
    short = main_lab("exec", "printf", "%s|", "a b", "c'd")
    assert short.stdout == "a b|c'd|", show(short)
