"""Host probe against the lab's real QEMU processes (libvirtd + QEMU on this host).

Integration tier: never skipped. Without the lab the pid file is missing and the test fails
with a message saying how to start it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from numaportal.virt.hostprobe import HostProbeError, qemu_pid, read_numa_maps, read_numastat

pytestmark = pytest.mark.integration

LAB_VM = "numalab-small1"
PID_FILE = Path("/run/libvirt/qemu") / f"{LAB_VM}.pid"


def test_lab_qemu_numa_maps():
    try:
        pid = qemu_pid(LAB_VM)
    except HostProbeError as e:
        pytest.fail(f"{e}: is the lab running? start it with: scripts/libvirt-lab start")
    mem = read_numa_maps(pid)
    assert Path(f"/proc/{pid}/numa_maps").read_text().strip(), "numa_maps is empty"
    assert mem.total > 0
    # Every cell the VM has memory on is a cell of this host.
    assert set(mem.cells) <= set(read_numastat("/"))
