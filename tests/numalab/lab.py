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
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.virsh_cli import parse_emulatorpin, parse_numastat_p, parse_numatune, parse_vcpupin

REPO = Path(__file__).resolve().parents[2]
NUMA_LAB = REPO / "scripts" / "numa-lab"
PORT = os.environ.get("NUMAPORTAL_NUMALAB_PORT", "16510")
URI = f"qemu+tcp://127.0.0.1:{PORT}/system"
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
    "numalab2-remote": {"vcpupin": {0: "0", 1: "1"}, "emulatorpin": "0-1", "nodeset": "1"},
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
  <vcpu placement='static'>2</vcpu>
  {cputune}
  {numatune}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <cpu mode='custom' match='exact'>
    <model fallback='allow'>qemu64</model>
    <topology sockets='1' dies='1' cores='2' threads='1'/>
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
) -> str:
    pins = "".join(
        f"<vcpupin vcpu='{vcpu}' cpuset='{cpus}'/>" for vcpu, cpus in (vcpupin or {}).items()
    )
    if emulatorpin:
        pins += f"<emulatorpin cpuset='{emulatorpin}'/>"
    return TEST_DOMAIN_XML.format(
        name=name,
        test_ns=TEST_MARKER_NS,
        memory_mib=memory_mib,
        cputune=f"<cputune>{pins}</cputune>" if pins else "",
        numatune=(
            f"<numatune><memory mode='strict' nodeset='{nodeset}'/></numatune>" if nodeset else ""
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


def lab_exec(*args: str, check: bool = True, timeout: float = EXEC_TIMEOUT) -> str:
    """What ``scripts/numa-lab exec ARGS`` prints: ARGS run as root INSIDE the guest."""
    done = subprocess.run(
        [str(NUMA_LAB), "exec", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"in the guest, {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def guest_virsh(*args: str) -> str:
    """`virsh -c qemu:///system ARGS` inside the guest: the lab hypervisor's own view."""
    return lab_exec("virsh", "-c", "qemu:///system", *args)


def guest_vcpupin(name: str, *flags: str) -> dict[int, frozenset[int]]:
    return parse_vcpupin(guest_virsh("vcpupin", name, *flags))


def guest_emulatorpin(name: str, *flags: str) -> frozenset[int]:
    return parse_emulatorpin(guest_virsh("emulatorpin", name, *flags))


def guest_numatune(name: str, *flags: str) -> dict[str, str]:
    return parse_numatune(guest_virsh("numatune", name, *flags))


def guest_qemu_pid(name: str) -> int:
    """The pid, inside the guest, of the QEMU process running domain *name* (libvirt's pidfile)."""
    text = lab_exec("cat", f"/run/libvirt/qemu/{name}.pid").strip()
    if not text.isdigit():
        raise AssertionError(f"no QEMU pid for {name} in the guest: {text!r}")
    return int(text)


def guest_numastat_p(pid: int) -> dict[int, dict[str, float]]:
    """``numastat -p PID`` inside the guest: {node: {huge, heap, stack, private, total}} MiB."""
    return parse_numastat_p(lab_exec("numastat", "-p", str(pid)))


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
