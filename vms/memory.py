"""VM memory per cell, as the on-host worker last read it (``numastat -p`` of each QEMU).

Builds the stacked bars of the VM and host pages. A VM's memory on a cell where none of its
vCPUs may run (``VirtualMachine.cells``) is *remote*: every access crosses the interconnect.
Bars and remote shares count the VM's own memory: numastat's total minus the page cache of
mapped files (QEMU's binary and libraries, shared with every QEMU and placed wherever the
first reader was), which would otherwise show ~13 MiB "remote" for a VM whose memory is all
where it was bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from hosts.selectors import safe_nodeset
from vms.models import VirtualMachine, VmCellMemory

#: Distinct colours for cells 0..7 (CSS classes cell-0..cell-7); cell 8 reuses cell 0's.
PALETTE_SIZE = 8


@dataclass(frozen=True)
class Segment:
    cell: int
    mib: float
    #: Share of the VM's total, in percent (bar width).
    pct: float
    remote: bool
    huge: float
    heap: float
    stack: float
    private: float
    #: Mapped files' page cache on this cell: shown, not counted in ``mib``.
    files: float

    @property
    def colour(self) -> int:
        return self.cell % PALETTE_SIZE


@dataclass(frozen=True)
class MemoryBar:
    vm: VirtualMachine
    segments: list[Segment]
    sampled_at: datetime
    #: Cells its vCPUs may run on; empty when unknown (then nothing is called remote).
    home_cells: frozenset[int]

    @property
    def total_mib(self) -> float:
        return sum(s.mib for s in self.segments)

    @property
    def remote_mib(self) -> float:
        return sum(s.mib for s in self.segments if s.remote)

    @property
    def remote_pct(self) -> float:
        total = self.total_mib
        return 100.0 * self.remote_mib / total if total else 0.0


def _bar(vm: VirtualMachine, rows: list[VmCellMemory]) -> MemoryBar:
    home = safe_nodeset(vm.cells)
    total = sum(r.own_mib for r in rows)
    segments = [
        Segment(
            cell=r.cell_id,
            mib=r.own_mib,
            pct=round(100.0 * r.own_mib / total, 2) if total else 0.0,
            remote=bool(home) and r.cell_id not in home,
            huge=r.huge_mib,
            heap=r.heap_mib,
            stack=r.stack_mib,
            private=r.private_mib,
            files=r.files_mib,
        )
        for r in sorted(rows, key=lambda r: r.cell_id)
    ]
    return MemoryBar(vm, segments, max(r.sampled_at for r in rows), home)


def memory_bars(vms: Iterable[VirtualMachine]) -> list[MemoryBar]:
    """One bar per VM that has memory rows, in the order given (one query)."""
    vms = list(vms)
    rows: dict[int, list[VmCellMemory]] = {}
    for row in VmCellMemory.objects.filter(vm__in=[vm.pk for vm in vms]):
        rows.setdefault(row.vm_id, []).append(row)
    return [_bar(vm, rows[vm.pk]) for vm in vms if vm.pk in rows]


def memory_bar(vm: VirtualMachine) -> MemoryBar | None:
    bars = memory_bars([vm])
    return bars[0] if bars else None
