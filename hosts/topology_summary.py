"""What ``lscpu`` and ``numactl -H`` print, computed from a parsed :class:`HostTopology`.

Pure functions over ``numaportal.virt.topology`` dataclasses: no Django, no libvirt, so the
host page, the dashboard and tests all get the same numbers from the same capabilities XML.

Counts come from the per-CPU ids libvirt reports (``socket_id``/``die_id``/``core_id``), not
from ``<host><cpu><topology>``: libvirt derives that element from the first cell only, so on a
multi-cell host it can be wrong. The declared counts are a fallback for CPUs listed without ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import Cpu, HostTopology

__all__ = [
    "CellLine",
    "DistanceClass",
    "LscpuSummary",
    "distance_classes",
    "distance_matrix",
    "lscpu_summary",
]

DistanceClass = Literal["local", "neighbour", "remote", "unknown"]


class CellLine(NamedTuple):
    """One ``numactl -H`` node line: ``node 1 cpus: 6-11,18-23`` / ``node 1 size: ...``."""

    cell_id: int
    #: Canonical cpuset text; "" for a memory-only (CPU-less) cell.
    cpus: str
    memory_kib: int


@dataclass(frozen=True, slots=True)
class LscpuSummary:
    """The lines of ``lscpu`` an operator reads before pinning anything.

    Counts are None when neither the CPUs' ids nor the declared topology say (a host that
    reports no NUMA cells at all, for instance).
    """

    cpu_model: str | None
    vendor: str | None
    arch: str
    #: ``CPU(s):`` — every logical CPU listed in the topology.
    cpus: int
    #: ``On-line CPU(s) list:`` — CPUs libvirt lists with topology ids ("" if none).
    online: str
    sockets: int | None
    dies_per_socket: int | None
    cores_per_socket: int | None
    threads_per_core: int | None
    #: ``NUMA node(s):``
    numa_nodes: int
    cells: tuple[CellLine, ...]
    total_memory_kib: int
    #: True when the counts had to come from ``<host><cpu><topology>`` (CPUs lack ids).
    from_declared: bool


def _online(cpus: Iterable[Cpu]) -> list[Cpu]:
    # libvirt lists offline CPUs as a bare <cpu id='N'/>: no socket/core ids.
    return [cpu for cpu in cpus if cpu.socket_id is not None and cpu.core_id is not None]


def lscpu_summary(topology: HostTopology) -> LscpuSummary:
    """``lscpu`` + ``numactl -H`` for *topology* (see :class:`LscpuSummary`)."""
    all_cpus = [cpu for cell in topology.cells for cpu in cell.cpus]
    online = _online(all_cpus)
    cells = tuple(
        CellLine(
            cell_id=cell.id,
            cpus=format_cpuset(cell.cpu_ids) if cell.cpus else "",
            memory_kib=cell.memory_kib,
        )
        for cell in topology.cells
    )
    common = {
        "cpu_model": topology.cpu_model,
        "vendor": topology.cpu_vendor,
        "arch": topology.arch,
        "cpus": len(all_cpus),
        "online": format_cpuset(c.id for c in online) if online else "",
        "numa_nodes": len(topology.cells),
        "cells": cells,
        "total_memory_kib": topology.total_memory_kib,
    }
    if not online:
        return LscpuSummary(
            **common,
            sockets=topology.declared_sockets,
            dies_per_socket=topology.declared_dies,
            cores_per_socket=topology.declared_cores,
            threads_per_core=topology.declared_threads,
            from_declared=True,
        )

    # socket -> die -> set of core ids; (die None counts as one die, as lscpu does).
    sockets: dict[int, dict[int | None, set[int]]] = {}
    threads: dict[tuple[int, int | None, int], int] = {}
    for cpu in online:
        assert cpu.socket_id is not None and cpu.core_id is not None
        sockets.setdefault(cpu.socket_id, {}).setdefault(cpu.die_id, set()).add(cpu.core_id)
        key = (cpu.socket_id, cpu.die_id, cpu.core_id)
        threads[key] = threads.get(key, 0) + 1
    # lscpu divides totals by sockets; the max is the same on a symmetric host and does not
    # round a lopsided one down to a count no socket has.
    return LscpuSummary(
        **common,
        sockets=len(sockets),
        dies_per_socket=max(len(dies) for dies in sockets.values()),
        cores_per_socket=max(sum(len(c) for c in dies.values()) for dies in sockets.values()),
        threads_per_core=max(threads.values()),
        from_declared=False,
    )


def distance_classes(topology: HostTopology, cell_id: int) -> dict[int, DistanceClass]:
    """For the chosen cell, what every cell is to it: the seed's three kinds of node.

    ``local`` is the cell itself, ``neighbour`` every other cell at the smallest distance
    found among the others, ``remote`` the farther ones, ``unknown`` a cell whose distance the
    host did not report. Memory-only cells are classified like any other. KeyError if
    *cell_id* is not on the host.
    """
    topology.cell(cell_id)
    others = {
        cell.id: topology.distance(cell_id, cell.id)
        for cell in topology.cells
        if cell.id != cell_id
    }
    known = [d for d in others.values() if d is not None]
    nearest = min(known) if known else None
    result: dict[int, DistanceClass] = {}
    for cell in topology.cells:
        if cell.id == cell_id:
            result[cell.id] = "local"
            continue
        distance = others[cell.id]
        if distance is None:
            result[cell.id] = "unknown"
        elif distance == nearest:
            result[cell.id] = "neighbour"
        else:
            result[cell.id] = "remote"
    return result


def distance_matrix(
    topology: HostTopology,
) -> tuple[tuple[int, ...], tuple[tuple[int | None, ...], ...]]:
    """``numactl -H``'s "node distances" table: (cell ids, one row per cell; None = unknown)."""
    ids = tuple(cell.id for cell in topology.cells)
    rows = tuple(tuple(topology.distance(a, b) for b in ids) for a in ids)
    return ids, rows
