"""Host probe against the lab's real QEMU processes (libvirtd + QEMU on this host).

Integration tier: never skipped. Without the lab the pid file is missing and the test fails
with a message saying how to start it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from numaportal.virt.hostprobe import HostProbeError, qemu_pid, read_numa_maps, read_numastat
from tests.virsh_cli import numastat_p

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


# numastat prints MiB with two decimals; a page is 4 KiB (0.004 MiB). Rounding plus one page.
WITHIN_A_PAGE = 0.005 + 4 / 1024


@pytest.mark.parametrize("vm", ["numalab-small1", "numalab-small2", "numalab-guest"])
def test_numa_maps_totals_match_numastat_p(vm):
    """Our numa_maps split equals numactl's own `numastat -p`, per cell and category."""
    pid = qemu_pid(vm)
    # A running QEMU touches pages between two reads: agree on one of a few tries.
    for _attempt in range(10):
        ours = read_numa_maps(pid).as_dict()
        theirs = numastat_p(pid)
        if all(
            abs(ours.get(node, {}).get(cat, 0.0) - value) <= WITHIN_A_PAGE
            for node, cats in theirs.items()
            for cat, value in cats.items()
        ):
            break
    else:
        pytest.fail(f"numa_maps of {vm} ({pid}) disagrees with numastat -p: {ours} vs {theirs}")
    assert theirs[0]["total"] > 1  # a real QEMU has megabytes on the lab's cell 0
