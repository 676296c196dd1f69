"""Witnesses inside the NUMA lab guest: ``scripts/numa-lab exec`` runs a command there (as root)
and returns its output, so tests compare what the portal stored with what the guest's own
tools say (numactl, numastat, virsh on the guest's qemu:///system, /sys)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.virsh_cli import parse_numastat_p

ROOT = Path(__file__).resolve().parent.parent.parent
NUMA_LAB = ROOT / "scripts" / "numa-lab"
NODE_NUMASTAT = "/sys/devices/system/node/node{}/numastat"


def guest(*argv: str, timeout: float = 180) -> str:
    """stdout of *argv* run inside the guest; AssertionError with its stderr if it failed."""
    result = subprocess.run(
        [str(NUMA_LAB), "exec", *argv], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(
            f"in the NUMA lab guest, {' '.join(argv)} exited {result.returncode}: "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


def guest_numastat(nodes: tuple[int, ...] = (0, 1, 2)) -> dict[int, dict[str, int]]:
    """The kernel's node*/numastat counters, read in the guest in one command."""
    script = "; ".join(f"echo node {n}; cat {NODE_NUMASTAT.format(n)}" for n in nodes)
    result: dict[int, dict[str, int]] = {}
    node = -1
    for line in guest("sh", "-c", script).splitlines():
        key, value = line.split()
        if key == "node":
            node = int(value)
            result[node] = {}
        else:
            result[node][key] = int(value)
    return result


def qemu_pid_in_guest(domain: str) -> int:
    """The pid of *domain*'s QEMU process inside the guest (libvirt's pid file there)."""
    return int(guest("cat", f"/run/libvirt/qemu/{domain}.pid").strip())


def guest_numastat_p(pid: int) -> dict[int, dict[str, float]]:
    """``numastat -p <pid>`` inside the guest, as {node: {huge, heap, stack, private, total}}."""
    return parse_numastat_p(guest("numastat", "-p", str(pid)))
