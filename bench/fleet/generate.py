"""Write a simulated fleet: one libvirt test-driver host file per host, with its sidecars.

Each host ``<dir>/<name>.xml`` is a test-driver ``<node>``: the CPUs and memory of one of the
real capabilities fixtures (round robin over ``tests/fixtures/capabilities``) and *vms*
domains placed on its cells — vcpupin per vCPU and emulatorpin on the cell's CPUs, numatune
strict / preferred / interleave, a few unpinned, and the run states an operator sees (running,
paused, shut off). Next to it, ``<name>.capabilities.xml`` (the fixture, which the test driver
cannot provide) and ``<name>.freecell.json`` (each cell's memory minus what its running domains
are bound to). :mod:`numaportal.virt.simulated` reads both when
``NUMAPORTAL_SIMULATED_HOSTS_DIR`` names *dir*.

No Django here: the generator is plain files, the same for every run with the same arguments.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import HostTopology, parse_capabilities

__all__ = ["FIXTURES_DIR", "SimulatedHost", "host_name", "write_fleet", "write_host"]

FIXTURES_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "capabilities"
#: Multi-cell fixtures first: most of a fleet has several cells.
_FIXTURES = (
    "x86_64-2node-24cpu-ht.xml",
    "x86_64-4node-basic.xml",
    "x86_64-2node-64cpu-amd-smt.xml",
    "x86_64-1node-dies.xml",
)
_TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
#: libvirt's virDomainState numbers, as the test driver's <test:runstate> takes them.
_RUNNING, _PAUSED, _SHUTOFF = 1, 3, 5
#: Out of every 10 domains: 7 running, 1 paused, 2 shut off.
_STATES = (_RUNNING,) * 7 + (_PAUSED,) + (_SHUTOFF,) * 2
_NAMESPACE = uuid.UUID("6f1f6c3e-52d4-4a8e-9d0a-6d3b1b6e0f00")


@dataclass(frozen=True)
class SimulatedHost:
    name: str
    path: Path
    fixture: str
    domains: int


def host_name(index: int) -> str:
    """``sim-hv0001`` …: a slug the portal accepts as a host name."""
    return f"sim-hv{index:04d}"


def _domain_xml(host: str, index: int, topology: HostTopology) -> tuple[str, int, int | None]:
    """One domain; returns its XML, its memory (KiB) and the cell it is bound to (or None)."""
    cells = [cell for cell in topology.cells if cell.cpus]
    cell = cells[index % len(cells)]
    cpus = sorted(cell.cpu_ids)
    vcpus = 2 if index % 3 else 4
    memory_kib = (1 + index % 4) << 18  # 256 MiB to 1 GiB: 40 of them fit a small fixture
    name = f"{host}-vm{index:03d}"
    state = _STATES[index % len(_STATES)]
    tune = ""
    bound: int | None = None
    if index % 8 != 5:  # one in eight is left unpinned, as an operator finds them
        pins = "".join(
            f"<vcpupin vcpu='{v}' cpuset='{cpus[(index * vcpus + v) % len(cpus)]}'/>"
            for v in range(vcpus)
        )
        tune = f"<cputune>{pins}<emulatorpin cpuset='{format_cpuset(cell.cpu_ids)}'/></cputune>"
        if index % 8 == 6 and len(topology.cells) > 1:
            nodeset = format_cpuset(frozenset(c.id for c in topology.cells))
            tune += f"<numatune><memory mode='interleave' nodeset='{nodeset}'/></numatune>"
        else:
            mode = "preferred" if index % 8 == 7 else "strict"
            tune += f"<numatune><memory mode='{mode}' nodeset='{cell.id}'/></numatune>"
            bound = cell.id
    runstate = "" if state == _RUNNING else f"<test:runstate>{state}</test:runstate>"
    xml = (
        f"<domain type='test' xmlns:test='{_TEST_NS}'>"
        f"<name>{escape(name)}</name><uuid>{uuid.uuid5(_NAMESPACE, name)}</uuid>"
        f"<memory unit='KiB'>{memory_kib}</memory>"
        f"<currentMemory unit='KiB'>{memory_kib}</currentMemory>"
        f"<vcpu placement='static'>{vcpus}</vcpu>{tune}"
        f"<os><type arch='x86_64'>hvm</type></os>{runstate}</domain>"
    )
    return xml, memory_kib, bound if state != _SHUTOFF else None


def write_host(directory: Path, index: int, vms: int) -> SimulatedHost:
    """Write host number *index* (its file and sidecars) with *vms* domains."""
    fixture = _FIXTURES[index % len(_FIXTURES)]
    capabilities = (FIXTURES_DIR / fixture).read_text()
    topology = parse_capabilities(capabilities)
    name = host_name(index)
    declared = (
        topology.declared_sockets or 1,
        topology.declared_cores or 1,
        topology.declared_threads or 1,
    )
    used: dict[int, int] = {}
    domains = []
    for i in range(vms):
        xml, memory_kib, bound = _domain_xml(name, i, topology)
        domains.append(xml)
        if bound is not None:
            used[bound] = used.get(bound, 0) + memory_kib
    total_kib = sum(cell.memory_kib for cell in topology.cells)
    node = (
        "<node><cpu><mhz>2400</mhz><model>x86_64</model>"
        f"<nodes>{len(topology.cells)}</nodes><sockets>{declared[0]}</sockets>"
        f"<cores>{declared[1]}</cores><threads>{declared[2]}</threads>"
        f"<active>{len(topology.cpu_ids)}</active></cpu>"
        f"<memory>{total_kib}</memory>{''.join(domains)}</node>\n"
    )
    path = directory / f"{name}.xml"
    path.write_text(node)
    path.with_suffix(".capabilities.xml").write_text(capabilities)
    free = {str(cell.id): max(cell.memory_kib - used.get(cell.id, 0), 0) for cell in topology.cells}
    path.with_suffix(".freecell.json").write_text(json.dumps(free))
    return SimulatedHost(name=name, path=path, fixture=fixture, domains=vms)


def write_fleet(directory: Path, hosts: int, vms: int) -> list[SimulatedHost]:
    """Write *hosts* host files of *vms* domains each into *directory* (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    return [write_host(directory, index, vms) for index in range(1, hosts + 1)]
