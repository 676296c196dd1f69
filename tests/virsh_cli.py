"""virsh as the integration tests' independent witness: run it and parse what it prints."""

from __future__ import annotations

import itertools
import re
import subprocess

from numaportal.virt.cpuset import parse_cpuset

URI = "qemu:///system"


def virsh(*args: str, check: bool = True) -> str:
    """What `virsh -c qemu:///system ARGS` prints: the operator's own view, to compare with."""
    done = subprocess.run(
        ["virsh", "-c", URI, *args], capture_output=True, text=True, check=check, timeout=60
    )
    return done.stdout


def virsh_vcpucount(name: str) -> dict[tuple[str, str], int]:
    """`virsh vcpucount NAME` as {("maximum"|"current", "config"|"live"): count}."""
    counts = {}
    for line in virsh("vcpucount", name).splitlines():
        parts = line.split()
        if len(parts) == 3:
            counts[(parts[0], parts[1])] = int(parts[2])
    return counts


def virsh_vcpupin(name: str, *flags: str) -> dict[int, frozenset[int]]:
    """`virsh vcpupin NAME [--config]`: vCPU -> effective affinity, as virsh prints it."""
    return parse_vcpupin(virsh("vcpupin", name, *flags))


def parse_vcpupin(text: str) -> dict[int, frozenset[int]]:
    """What `virsh vcpupin NAME` printed, as vCPU -> affinity."""
    pins = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*(\d+)\s+(\S+)\s*", line)
        if match:
            pins[int(match.group(1))] = parse_cpuset(match.group(2))
    return pins


def parse_emulatorpin(text: str) -> frozenset[int]:
    """What `virsh emulatorpin NAME` printed (``*: 0-1``), as the emulator's affinity."""
    match = re.search(r"^\s*\*:\s*(\S+)\s*$", text, re.M)
    if not match:
        raise AssertionError(f"cannot parse virsh emulatorpin output:\n{text}")
    return parse_cpuset(match.group(1))


def parse_numatune(text: str) -> dict[str, str]:
    """What `virsh numatune NAME` printed, as {"numa_mode": ..., "numa_nodeset": ...}."""
    return {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in text.splitlines())
        if value.strip()
    }


def virsh_vcpuinfo(name: str) -> dict[int, dict[str, str]]:
    """`virsh vcpuinfo NAME`: vCPU -> {"CPU", "State", "CPU Affinity"} (the y/- strip)."""
    rows: dict[int, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in virsh("vcpuinfo", name).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "VCPU":
            current = {}
            rows[int(value)] = current
        elif key.strip():
            current[key.strip()] = value.strip()
    return rows


def numastat_p(pid: int) -> dict[int, dict[str, float]]:
    """``numastat -p <pid>`` (numactl's own tool) as {node: {huge, heap, stack, private,
    total}} in MiB: the independent witness for hostprobe.read_numa_maps."""
    out = subprocess.run(
        ["numastat", "-p", str(pid)], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return parse_numastat_p(out)


def parse_numastat_p(out: str) -> dict[int, dict[str, float]]:
    """What ``numastat -p <pid>`` printed, as {node: {huge, heap, stack, private, total}}."""
    nodes: list[int] = []
    result: dict[int, dict[str, float]] = {}
    for line in out.splitlines():
        words = line.split()
        if words[:1] == ["Node"]:  # "Node 0  Node 1  Total"
            nodes = [int(w) for prev, w in itertools.pairwise(words) if prev == "Node"]
            result = {n: {} for n in nodes}
        elif nodes and words[:1] and words[0] in {"Huge", "Heap", "Stack", "Private", "Total"}:
            for node, value in zip(nodes, words[1:], strict=False):
                result[node][words[0].lower()] = float(value)
    if not result:
        raise AssertionError(f"cannot parse numastat -p output:\n{out}")
    return result
