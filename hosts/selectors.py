"""Read-side queries about hosts alone: cells, CPUs, memory per cell, stored cpusets.

Queries that need VM rows (the dashboard's VM counts, a host's VMs, the diagram's VMs, vcpuinfo)
are :mod:`vms.selectors`, the layer above.

Every function here issues a fixed number of SQL queries whatever the number of hosts, cells,
CPUs or VMs (annotations, subqueries and prefetches, no per-row lookups), so that a dashboard
of 200 hosts or a host with 500 VMs costs the same handful of queries as a lab with one.
Values are shaped for templates (strings already formatted) so templates hold no logic.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from hosts.diagram import CellMemory
from hosts.models import Cell, Host, PhysicalCpu
from numaportal.formatting import format_kib
from numaportal.virt.cpuset import CpusetError, format_cpuset, parse_cpuset, parse_nodeset

# --- formatting -------------------------------------------------------------------------------


# Parsed once per distinct string: a host page reads the same few cpusets ("0-447", a cell's
# CPUs, "5") for every vCPU of hundreds of VMs. Results are frozensets, safe to share.
@functools.lru_cache(maxsize=4096)
def safe_cpuset(text: str | None) -> frozenset[int]:
    """A stored cpuset string as a set; blank or unparsable (hostile host data) -> empty."""
    if not text:
        return frozenset()
    try:
        return parse_cpuset(text)
    except CpusetError:
        return frozenset()


@functools.lru_cache(maxsize=1024)
def safe_nodeset(text: str | None) -> frozenset[int]:
    if not text:
        return frozenset()
    try:
        return parse_nodeset(text)
    except CpusetError:
        return frozenset()


def affinity_strip(cpus: Iterable[int], width: int) -> str:
    """The y/- string `virsh vcpuinfo` prints as "CPU Affinity": one char per host CPU."""
    allowed = frozenset(cpus)
    return "".join("y" if cpu in allowed else "-" for cpu in range(width))


# --- cells ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellUsage:
    cell_id: int
    total_kib: int
    free_kib: int | None
    cpus: str

    @property
    def used_kib(self) -> int | None:
        return None if self.free_kib is None else max(self.total_kib - self.free_kib, 0)

    @property
    def used_pct(self) -> int | None:
        if self.free_kib is None or not self.total_kib:
            return None
        return round(100 * (self.used_kib or 0) / self.total_kib)

    @property
    def total(self) -> str:
        return format_kib(self.total_kib)

    @property
    def free(self) -> str:
        return format_kib(self.free_kib) if self.free_kib is not None else "unknown"

    @property
    def used(self) -> str:
        return format_kib(self.used_kib) if self.free_kib is not None else "unknown"


def cell_usage(cells: Iterable[Cell], cpus_by_cell: dict[int, list[int]] | None = None):
    cpus_by_cell = cpus_by_cell or {}
    return [
        CellUsage(
            cell_id=cell.cell_id,
            total_kib=cell.memory_kib,
            free_kib=cell.free_kib,
            cpus=format_cpuset(cpus_by_cell[cell.cell_id])
            if cpus_by_cell.get(cell.cell_id)
            else "",
        )
        for cell in cells
    ]


def cell_memory(cells: Iterable[Cell]) -> list[CellMemory]:
    """Cell rows as the diagram's CellMemory (free unknown before the first sync -> 0 shown)."""
    return [
        CellMemory(cell_id=c.cell_id, total_kib=c.memory_kib, free_kib=c.free_kib) for c in cells
    ]


# --- host page ---------------------------------------------------------------------------------


def host_cells(host: Host) -> tuple[list[Cell], dict[int, list[int]]]:
    """Cell rows and each cell's CPU ids (two queries)."""
    cells = list(host.cells.order_by("cell_id"))
    by_cell: dict[int, list[int]] = {c.cell_id: [] for c in cells}
    for cell_id, cpu_id in (
        PhysicalCpu.objects.filter(host=host)
        .order_by("cpu_id")
        .values_list("cell__cell_id", "cpu_id")
    ):
        by_cell.setdefault(cell_id, []).append(cpu_id)
    return cells, by_cell


def host_cpu_map(host: Host) -> tuple[int, dict[int, int]]:
    """(strip width, cpu id -> cell id): width is the highest CPU id + 1, as virsh counts."""
    cell_of = dict(PhysicalCpu.objects.filter(host=host).values_list("cpu_id", "cell__cell_id"))
    width = max(cell_of, default=-1) + 1
    return width, cell_of


__all__ = [
    "CellUsage",
    "affinity_strip",
    "cell_memory",
    "cell_usage",
    "host_cells",
    "host_cpu_map",
    "safe_cpuset",
    "safe_nodeset",
]
