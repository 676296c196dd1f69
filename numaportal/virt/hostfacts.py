"""Host facts from an open connection: what ``virsh hostname/version/nodeinfo/freecell`` say.

:func:`host_info` collects them for the inventory and for registering a host;
:func:`cells_free_memory_kib` is the one a sampler asks for often. Parsing the topology out of
the capabilities XML is :mod:`numaportal.virt.topology`'s job.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import libvirt

from numaportal.virt import simulated
from numaportal.virt.cpuset import cpumap_to_cpuset
from numaportal.virt.errors import translate
from numaportal.virt.topology import TopologyError, parse_capabilities

__all__ = [
    "HostInfo",
    "cell_ids",
    "cells_free_memory_kib",
    "format_version",
    "host_info",
    "uri_of",
]


def format_version(version: int) -> str:
    """libvirt's packed version number (major * 1e6 + minor * 1e3 + micro) as ``"9.0.0"``."""
    return f"{version // 1_000_000}.{version // 1_000 % 1_000}.{version % 1_000}"


@dataclass(frozen=True)
class HostInfo:
    """What ``virsh hostname/version/nodeinfo/freecell/capabilities`` say about a host."""

    uri: str
    hostname: str
    hypervisor_type: str
    libvirt_version: int
    hypervisor_version: int
    cpu_count: int
    cpus_online: frozenset[int]
    capabilities_xml: str
    #: Free memory per NUMA cell id, in KiB. Empty when the host reports no cells.
    cells_free_memory_kib: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "hostname": self.hostname,
            "hypervisor_type": self.hypervisor_type,
            "libvirt_version": format_version(self.libvirt_version),
            "hypervisor_version": format_version(self.hypervisor_version),
            "cpu_count": self.cpu_count,
            "cpus_online": sorted(self.cpus_online),
            "cells_free_memory_kib": {str(k): v for k, v in self.cells_free_memory_kib.items()},
        }


def cell_ids(capabilities_xml: str) -> list[int]:
    """The NUMA cell ids a host reports, sorted; empty when its capabilities have none."""
    try:
        return sorted(parse_capabilities(capabilities_xml).cell_ids)
    except TopologyError:
        # Free memory per cell is a nicety of host_info: a host whose topology we cannot read
        # still answers everything else.
        return []


def _capabilities(conn: libvirt.virConnect, uri: str) -> str:
    """``getCapabilities``, or a simulated host's fixture (the test driver has no cells)."""
    return simulated.capabilities_xml(uri) or conn.getCapabilities()


def _cells_free_memory_kib(
    conn: libvirt.virConnect, cell_ids: list[int], uri: str
) -> dict[int, int]:
    if not cell_ids:
        return {}
    simulated_free = simulated.cells_free_memory_kib(uri)
    if simulated_free is not None:
        return {cid: simulated_free[cid] for cid in cell_ids if cid in simulated_free}
    # getCellsFreeMemory(start, max) indexes by cell id and returns bytes. Cell ids can be
    # sparse; ask for the whole range once and keep the ids that exist, falling back to one
    # call per cell if the range call fails on a missing id.
    try:
        values = conn.getCellsFreeMemory(0, cell_ids[-1] + 1)
        by_id = dict(enumerate(values))
        return {cid: by_id[cid] // 1024 for cid in cell_ids if cid in by_id}
    except libvirt.libvirtError:
        result: dict[int, int] = {}
        for cid in cell_ids:
            with contextlib.suppress(libvirt.libvirtError, IndexError):
                result[cid] = conn.getCellsFreeMemory(cid, 1)[0] // 1024
        return result


def cells_free_memory_kib(conn: libvirt.virConnect) -> dict[int, int]:
    """``virsh freecell --all`` per cell id, in KiB: what a host without an on-host worker
    still tells about its cells (getCellsFreeMemory). Empty when it reports no cells."""
    try:
        uri = conn.getURI()
        capabilities = _capabilities(conn, uri)
        return _cells_free_memory_kib(conn, cell_ids(capabilities), uri)
    except libvirt.libvirtError as exc:
        raise translate(exc, uri_of(conn)) from exc


def _fixture_cpus(capabilities_xml: str) -> frozenset[int]:
    try:
        return parse_capabilities(capabilities_xml).cpu_ids
    except TopologyError:
        return frozenset()


def host_info(conn: libvirt.virConnect) -> HostInfo:
    """Collect the host facts the inventory needs (topology parsing is topology.py's job)."""
    try:
        uri = conn.getURI()
        capabilities = _capabilities(conn, uri)
        cpu_count, cpumap, _online = conn.getCPUMap()
        cpus_online = cpumap_to_cpuset(cpumap)
        if simulated.host_file(uri) is not None:
            # The test driver's CPU map is 8 wide: a simulated host's CPUs are its fixture's.
            cpus_online = _fixture_cpus(capabilities)
            cpu_count = len(cpus_online)
        return HostInfo(
            uri=uri,
            hostname=conn.getHostname(),
            hypervisor_type=conn.getType(),
            libvirt_version=conn.getLibVersion(),
            hypervisor_version=conn.getVersion(),
            cpu_count=cpu_count,
            cpus_online=cpus_online,
            capabilities_xml=capabilities,
            cells_free_memory_kib=_cells_free_memory_kib(conn, cell_ids(capabilities), uri),
        )
    except libvirt.libvirtError as exc:
        raise translate(exc, uri_of(conn)) from exc


def uri_of(conn: libvirt.virConnect) -> str | None:
    """The connection's URI for error messages; None when even that call fails."""
    try:
        return conn.getURI()
    except libvirt.libvirtError:
        return None
