"""The NUMA lab seen from inside: witnesses run in the guest by ``scripts/numa-lab exec``.

The NUMA lab (``scripts/numa-lab``) is a TCG guest with NUMA nodes 0 and 1 (2 CPUs, 1 GiB each)
and a memory-only node 2 (512 MiB), running libvirtd reachable here as
``qemu+tcp://127.0.0.1:16510/system``. What the portal stores and does is compared with what
the operator's own tools print INSIDE the guest: ``numactl -H``, ``virsh -c qemu:///system
vcpupin / emulatorpin / numatune`` and ``numastat -p <qemu pid>``; the parsers are here.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from tests.virsh_cli import parse_emulatorpin, parse_numastat_p, parse_numatune, parse_vcpupin

REPO = Path(__file__).resolve().parents[2]
NUMA_LAB = REPO / "scripts" / "numa-lab"
PORT = os.environ.get("NUMAPORTAL_NUMALAB_PORT", "16510")
#: As ``settings.NUMAPORTAL_NUMALAB_URI`` says it.
URI = os.environ.get("NUMAPORTAL_NUMALAB_URI", f"qemu+tcp://127.0.0.1:{PORT}/system")
#: Seconds one `numa-lab exec` may take (the guest is TCG on 2 host CPUs: generous).
EXEC_TIMEOUT = 180

#: Domains the test tier defines inside the lab: the lab's prefix and marker (so the lab script
#: treats them like its own), plus a marker of their own so a cleanup removes only them.
TEST_PREFIX = "numalab2-t"
TEST_MARKER_NS = "urn:numaportal:numalab-test"

#: The lab's own domains as scripts/numa-lab makes them: vCPU -> CPUs, emulator CPUs, memory.
LAB_DOMAINS = {
    "numalab2-node0": {"vcpupin": {0: "0", 1: "1"}, "emulatorpin": "0-1", "nodeset": "0"},
    "numalab2-node1": {"vcpupin": {0: "2", 1: "3"}, "emulatorpin": "2-3", "nodeset": "1"},
    "numalab2-remote": {
        "vcpupin": {0: "0", 1: "1"},
        "emulatorpin": "0-1",
        "nodeset": "1",
        "mode": "restrictive",
    },
}

# A small diskless domain like scripts/lab/numa-inner.xml (boots to SeaBIOS and idles), with
# no tuning of its own unless {cputune} / {numatune} give it.
TEST_DOMAIN_XML = """\
<domain type='qemu'>
  <name>{name}</name>
  <metadata>
    <lab:lab xmlns:lab="urn:numaportal:lab" version="1" lab="numa-lab"/>
    <t:test xmlns:t="{test_ns}"/>
  </metadata>
  <memory unit='MiB'>{memory_mib}</memory>
  <currentMemory unit='MiB'>{memory_mib}</currentMemory>
  {memory_backing}
  {vcpu}
  {cputune}
  {numatune}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <cpu mode='custom' match='exact'>
    <model fallback='allow'>qemu64</model>
    <topology sockets='1' dies='1' cores='{cores}' threads='1'/>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def throwaway_name() -> str:
    """A new name for a domain of the tests' own: ``numalab2-t<hex>``."""
    return f"{TEST_PREFIX}{secrets.token_hex(4)}"


def throwaway_xml(
    name: str,
    *,
    memory_mib: int = 64,
    vcpupin: dict[int, str] | None = None,
    emulatorpin: str | None = None,
    nodeset: str | None = None,
    mode: str = "strict",
    preallocate: bool = False,
    max_vcpus: int = 2,
) -> str:
    """The domain's XML; *preallocate*: QEMU allocates (touches) all guest RAM at start, so
    that where the guest's memory is can be seen at once (an idle firmware touches little);
    *max_vcpus* above 2: it boots with 2 of that many (one core each), room for a hot-add."""
    pins = "".join(
        f"<vcpupin vcpu='{vcpu}' cpuset='{cpus}'/>" for vcpu, cpus in (vcpupin or {}).items()
    )
    if emulatorpin:
        pins += f"<emulatorpin cpuset='{emulatorpin}'/>"
    vcpu = (
        f"<vcpu placement='static' current='2'>{max_vcpus}</vcpu>"
        if max_vcpus > 2
        else "<vcpu placement='static'>2</vcpu>"
    )
    return TEST_DOMAIN_XML.format(
        name=name,
        vcpu=vcpu,
        cores=max(2, max_vcpus),
        test_ns=TEST_MARKER_NS,
        memory_mib=memory_mib,
        memory_backing=(
            "<memoryBacking><allocation mode='immediate'/></memoryBacking>" if preallocate else ""
        ),
        cputune=f"<cputune>{pins}</cputune>" if pins else "",
        numatune=(
            f"<numatune><memory mode='{mode}' nodeset='{nodeset}'/></numatune>" if nodeset else ""
        ),
    )


# --- running things in the guest -----------------------------------------------------------------


def lab_status() -> str:
    """What `scripts/numa-lab status` says (stdout and stderr), for failure messages."""
    try:
        done = subprocess.run(
            [str(NUMA_LAB), "status"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scripts/numa-lab status did not answer: {exc}"
    return (done.stdout + done.stderr).strip()


def _exec(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NUMA_LAB), "exec", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def lab_exec(*args: str, check: bool = True, timeout: float = EXEC_TIMEOUT) -> str:
    """What ``scripts/numa-lab exec ARGS`` prints: ARGS run as root INSIDE the guest."""
    done = _exec(args, timeout)
    if check and done.returncode != 0:
        raise AssertionError(
            f"in the guest, {shlex.join(args)} exited {done.returncode}:\n"
            f"{done.stdout}\n{done.stderr}"
        )
    return done.stdout


_SEPARATOR = "@@numalab-separator@@"


def guest_virsh_many(*commands: str) -> list[str]:
    """What each virsh command printed, all run by ONE ``virsh -c qemu:///system "A; B; ..."``
    in ONE exec inside the guest: every virsh process costs seconds on the TCG guest.

    virsh goes on after a failed command (and exits 0), so anything on its stderr fails here.
    """
    script = f"; echo {_SEPARATOR}; ".join(commands)
    done = _exec(("virsh", "-c", "qemu:///system", script), EXEC_TIMEOUT)
    if done.returncode != 0 or done.stderr.strip():
        raise AssertionError(
            f"in the guest, virsh {script!r} exited {done.returncode}:\n"
            f"{done.stdout}\n{done.stderr}"
        )
    outputs = done.stdout.split(f"{_SEPARATOR}\n")
    assert len(outputs) == len(commands), done.stdout
    return outputs


def guest_virsh(*args: str) -> str:
    """`virsh -c qemu:///system ARGS` inside the guest: the lab hypervisor's own view."""
    return lab_exec("virsh", "-c", "qemu:///system", *args)


@dataclass(frozen=True)
class GuestTuning:
    """``virsh vcpupin``, ``emulatorpin`` and ``numatune`` of one domain, read in the guest."""

    vcpupin: dict[int, frozenset[int]]
    emulatorpin: frozenset[int]
    numatune: dict[str, str]


def guest_tuning(name: str, *flags: str) -> GuestTuning:
    """The domain's tuning as the lab hypervisor reports it (``--config``, ``--live`` or
    neither in *flags*), in one exec."""
    return guest_tunings([name], *flags)[name]


def guest_tunings(names: Sequence[str], *flags: str) -> dict[str, GuestTuning]:
    """:func:`guest_tuning` of several domains, by one virsh process in one exec."""
    for word in (*names, *flags):  # they go into one virsh command line
        assert re.fullmatch(r"[\w.-]+", word), word
    options = "".join(f" {flag}" for flag in flags)
    commands = [
        f"{what} {name}{options}"
        for name in names
        for what in ("vcpupin", "emulatorpin", "numatune")
    ]
    outputs = iter(guest_virsh_many(*commands))
    return {
        name: GuestTuning(
            vcpupin=parse_vcpupin(next(outputs)),
            emulatorpin=parse_emulatorpin(next(outputs)),
            numatune=parse_numatune(next(outputs)),
        )
        for name in names
    }


@dataclass(frozen=True)
class GuestMemory:
    """Where a running domain's QEMU process has its memory, read in the guest at once."""

    pid: int
    #: ``numastat -p``: {node: {huge, heap, stack, private, total}} MiB.
    numastat: dict[int, dict[str, float]]
    #: numa_maps summed: {"anon" | "file": {node: MiB}} (see :func:`parse_numa_maps`).
    numa_maps: dict[str, dict[int, float]]

    def describe(self) -> str:
        split = {node: round(n["total"], 1) for node, n in self.numastat.items()}
        anon, file = (
            {n: round(m, 1) for n, m in self.numa_maps[k].items()} for k in ("anon", "file")
        )
        return (
            f"numastat -p {self.pid} (MiB per node): {split}; "
            f"numa_maps anonymous {anon}, file-backed {file}"
        )


def guest_memory(name: str) -> GuestMemory:
    """numastat -p and numa_maps of domain *name*'s QEMU process, in one exec."""
    pidfile = shlex.quote(f"/run/libvirt/qemu/{name}.pid")
    script = (
        f'pid=$(cat {pidfile}) || exit 3; echo "$pid"; echo {_SEPARATOR}; '
        f"cat /proc/$pid/numa_maps || exit 4; echo {_SEPARATOR}; numastat -p $pid"
    )
    pid, maps, numastat = lab_exec("bash", "-c", script).split(f"{_SEPARATOR}\n")
    return GuestMemory(
        pid=int(pid), numastat=parse_numastat_p(numastat), numa_maps=parse_numa_maps(maps)
    )


def memory_once_allocated(name: str, at_least_mib: float, timeout: float = 90.0) -> GuestMemory:
    """:func:`guest_memory` of a freshly started domain, once its QEMU's anonymous memory
    reached *at_least_mib* (a preallocated guest RAM is touched while QEMU starts)."""
    deadline = time.monotonic() + timeout
    while True:
        memory = guest_memory(name)
        if sum(memory.numa_maps["anon"].values()) >= at_least_mib:
            return memory
        if time.monotonic() > deadline:
            pytest.fail(f"{name} has not allocated its memory: {memory.describe()}")
        time.sleep(2)


def wait_state(dom: libvirt.virDomain, state: int, timeout: float = 120.0) -> None:
    """Until the domain is in *state* (e.g. ``libvirt.VIR_DOMAIN_RUNNING``); fails after
    *timeout* s (an inner domain starts in 3-15 s on the TCG guest)."""
    deadline = time.monotonic() + timeout
    while dom.state()[0] != state:
        if time.monotonic() > deadline:
            pytest.fail(f"{dom.name()} not in state {state} after {timeout:.0f} s: {dom.state()}")
        time.sleep(0.5)


def parse_numa_maps(text: str) -> dict[str, dict[int, float]]:
    """A ``/proc/PID/numa_maps``, summed as {"anon" | "file": {node: MiB}}.

    numastat -p counts file-backed pages too (in "Private"): the QEMU binary's and shared
    libraries' page cache, shared by every QEMU of the host and placed wherever the first one
    read it. A domain's numatune binds its anonymous memory (guest RAM, QEMU's heap), not that.
    """
    sums: dict[str, dict[int, float]] = {"anon": {}, "file": {}}
    for line in text.splitlines():
        words = line.split()
        kind = "file" if any(w.startswith("file=") for w in words) else "anon"
        page_kib = 4
        for word in words:
            if word.startswith("kernelpagesize_kB="):
                page_kib = int(word.partition("=")[2])
        for word in words:
            if match := re.fullmatch(r"N(\d+)=(\d+)", word):
                node, pages = int(match.group(1)), int(match.group(2))
                sums[kind][node] = sums[kind].get(node, 0.0) + pages * page_kib / 1024
    return sums


# --- numactl -H ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumactlHardware:
    """What ``numactl -H`` prints: per node its CPUs and size (MiB), and the distance matrix."""

    cpus: dict[int, frozenset[int]]
    size_mib: dict[int, int]
    distances: dict[int, dict[int, int]]


def parse_numactl_hardware(text: str) -> NumactlHardware:
    """``numactl -H``'s output, e.g. ``node 2 cpus:`` (memory only) and the distance table."""
    cpus: dict[int, frozenset[int]] = {}
    size: dict[int, int] = {}
    distances: dict[int, dict[int, int]] = {}
    columns: list[int] = []
    for line in text.splitlines():
        if match := re.fullmatch(r"node (\d+) cpus:(.*)", line.strip()):
            words = match.group(2).split()
            cpus[int(match.group(1))] = frozenset(int(w) for w in words)
        elif match := re.fullmatch(r"node (\d+) size: (\d+) MB", line.strip()):
            size[int(match.group(1))] = int(match.group(2))
        elif re.fullmatch(r"node(\s+\d+)+", line.strip()):  # "node   0   1   2"
            columns = [int(w) for w in line.split()[1:]]
        elif columns and (match := re.fullmatch(r"(\d+):((\s+\d+)+)", line.strip())):
            values = [int(w) for w in match.group(2).split()]
            distances[int(match.group(1))] = dict(zip(columns, values, strict=True))
    if not cpus or not distances:
        raise AssertionError(f"cannot parse numactl -H output:\n{text}")
    return NumactlHardware(cpus=cpus, size_mib=size, distances=distances)


def guest_numactl_hardware() -> NumactlHardware:
    return parse_numactl_hardware(lab_exec("numactl", "-H"))


NODE_NUMASTAT = "/sys/devices/system/node/node{}/numastat"


def guest_numastat(nodes: Sequence[int] = (0, 1, 2)) -> dict[int, dict[str, int]]:
    """The kernel's node*/numastat counters, read in the guest in one exec."""
    script = "; ".join(f"echo node {n}; cat {NODE_NUMASTAT.format(n)}" for n in nodes)
    result: dict[int, dict[str, int]] = {}
    node = -1
    for line in lab_exec("sh", "-c", script).splitlines():
        key, value = line.split()
        if key == "node":
            node = int(value)
            result[node] = {}
        else:
            result[node][key] = int(value)
    return result
