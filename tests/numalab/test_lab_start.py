"""``scripts/numa-lab``: every failure of ``start`` says what failed, and ``stop`` leaves nothing.

The script is run as it is (a subprocess, as root), and these tests assert on its exit status
and its words: the last ``[numa-lab] ERROR:`` line starts with what failed (``kernel:``,
``port:``, ``virtme-ng:``, ``libvirtd:``, ``guest boot:``).

Scratch labs only:

* scratch labs, one per test: a directory of their own under /var/tmp and a loopback port of
  their own (16590-16689). Everything that starts something runs there, with the on-host worker
  off and pip offline. A test that boots checks afterwards that no process names its directory;
  the fixture stops and removes whatever a failed test left behind (only processes that name
  the test's own directory).
* the main lab is never started or stopped here (``exec`` against it: test_lab_exec.py).

The virtme-ng virtualenvs a scratch lab needs are built once per machine under
``/var/tmp/numaportal-numalab-test`` (from PyPI, ~5 s each) and copied into each scratch lab, so
that no process of a scratch lab names anything but its own directory.

Nothing here is skipped: a missing precondition (not root, the main lab not running, no
virtme-ng from PyPI) fails with what to do.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.numalab.scratch import (
    BOOT_SECONDS,
    ERROR,
    OLD_VNG_VERSION,
    SCRATCH_ROOT,
    SCRIPT,
    VNG_VERSION,
    Lab,
    Run,
    _fail,
    _venv_version,
    cached_venv,
    clone_venv,
    free_port,
)

pytestmark = pytest.mark.numalab


@pytest.fixture(scope="module", autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        _fail("scripts/numa-lab runs as root (packages, QEMU): run these tests as root")


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
