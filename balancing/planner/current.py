"""Where a VM is now, as an :class:`~balancing.planner.model.Assignment`: the "before" side of a
plan, what a locked VM keeps, and where :func:`~balancing.planner.ordering.apply_order` starts.
"""

from __future__ import annotations

from balancing.planner.model import Assignment, VmDemand
from balancing.planner.scoring import split_evenly
from numaportal.virt.topology import HostTopology


class HostMaps:
    """Look-ups :func:`current_assignment` needs, computed once per host."""

    def __init__(self, topology: HostTopology) -> None:
        self.cells = {cell.id: cell for cell in topology.cells}
        self.cell_of = {cpu.id: cell.id for cell in topology.cells for cpu in cell.cpus}
        self.cpu_cells = [cell.id for cell in topology.cells if cell.cpus]
        self.all_cpus = frozenset(self.cell_of)
        self.floating: dict[tuple[int, ...], frozenset[int]] = {}

    def cpus_of(self, cells: tuple[int, ...]) -> frozenset[int]:
        if cells not in self.floating:
            cpus = frozenset(cpu for c in cells for cpu in self.cells[c].cpu_ids)
            self.floating[cells] = cpus or self.all_cpus
        return self.floating[cells]


def current_assignment(topology: HostTopology, vm: VmDemand) -> Assignment:
    """*vm* as it is now, as an :class:`Assignment` (the "before" side of a plan, and what a
    locked VM keeps).

    Its cells are ``vm.cells`` (every cell with CPUs when unknown) plus the cells its memory is
    bound to; a vCPU pinned by ``vm.vcpupin`` keeps that pin, the others float over the CPUs of
    its cells. A vCPU whose pin lies within one cell counts on that cell, the others are split
    evenly over its cells with CPUs; memory is split over ``vm.memory_cells`` (``cells`` when
    not bound). CPUs and cells the host does not have are ignored for the counts.
    """
    return current_on(HostMaps(topology), vm)


def current_on(host: HostMaps, vm: VmDemand) -> Assignment:
    """:func:`current_assignment` with the host's look-ups computed once, for many VMs."""
    host_cells, cell_of = host.cells, host.cell_of
    cells = sorted(c for c in vm.cells if c in host_cells)
    if not cells:
        cells = list(host.cpu_cells) or sorted(host_cells)
    cpu_cells = tuple(c for c in cells if host_cells[c].cpus)
    floating = host.cpus_of(cpu_cells)
    pins: dict[int, frozenset[int]] = {}
    by_cell: dict[int, int] = {}
    unplaced = 0
    seen: dict[frozenset[int], set[int]] = {}
    for v in range(max(0, vm.vcpus)):
        given = vm.vcpupin.get(v)
        if not given:
            pins[v] = floating
            unplaced += 1
            continue
        pin = pins[v] = frozenset(given)
        if pin not in seen:
            seen[pin] = {cell_of[cpu] for cpu in pin if cpu in cell_of}
        if len(seen[pin]) == 1:
            (c,) = seen[pin]
            by_cell[c] = by_cell.get(c, 0) + 1
        else:
            unplaced += 1
    spread_over = cpu_cells or host.cpu_cells
    for c, n in split_evenly(unplaced, spread_over).items():
        if n:
            by_cell[c] = by_cell.get(c, 0) + n
    memory_cells = sorted(c for c in (vm.memory_cells or frozenset(cells)) if c in host_cells)
    if not memory_cells:
        memory_cells = cells
    with_memory = [c for c in memory_cells if host_cells[c].memory_kib] or memory_cells
    memory = {c: k for c, k in split_evenly(max(0, vm.memory_kib), with_memory).items() if k}
    return Assignment(
        name=vm.name,
        cells=frozenset(cells) | frozenset(by_cell) | frozenset(memory),
        vcpupin=pins,
        emulatorpin=frozenset(vm.emulatorpin) if vm.emulatorpin else floating,
        nodeset=frozenset(with_memory),
        vcpus_by_cell=dict(sorted(by_cell.items())),
        memory_kib_by_cell=memory,
        moved=False,
        locked=vm.locked,
        dedicated=vm.dedicated,
    )
