"""The capacity model of one host under one policy (the package docstring), precomputed: usable
CPUs per cell (reserved and housekeeping CPUs taken out), what a dedicated VM takes (whole cores
or single CPUs), the memory a cell may give, the shared pools' over-commit limit, and which CPUs
a dedicated VM holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from balancing.planner.model import Assignment, Policy, nodes_text
from balancing.planner.scoring import LOCAL_DISTANCE, distance
from numaportal.virt.topology import HostTopology


class CapacityModel:
    """The capacity model of one host under one policy (package docstring), precomputed."""

    def __init__(self, topology: HostTopology, policy: Policy) -> None:
        self.topology = topology
        self.policy = policy
        blocked = set(policy.reserved)
        if policy.emulator == "housekeeping":
            blocked |= set(policy.housekeeping)
        self.blocked_by_policy = frozenset(blocked)
        self.cell_ids = [cell.id for cell in topology.cells]
        self.cell_cpus = {cell.id: cell.cpu_ids for cell in topology.cells}
        self.cell_of = {cpu.id: cell.id for cell in topology.cells for cpu in cell.cpus}
        self.host_cpus = frozenset(self.cell_of)
        self.siblings = {
            cpu.id: frozenset(cpu.siblings) for cell in topology.cells for cpu in cell.cpus
        }
        self.usable = {c: self.cell_cpus[c] - blocked for c in self.cell_ids}
        self.memory_kib = {cell.id: cell.memory_kib for cell in topology.cells}
        self.mem_cap = {
            cell.id: max(0, cell.memory_kib - policy.memory_reserve_kib) for cell in topology.cells
        }
        self.cpu_cells = [c for c in self.cell_ids if self.usable[c]]
        self.mem_cells = [c for c in self.cell_ids if self.mem_cap[c] > 0]
        # What a dedicated VM takes: whole cores whose threads are all usable, or single CPUs.
        self.units: dict[int, list[tuple[int, ...]]] = {}
        self.unit_of: dict[int, tuple[int, ...]] = {}
        for cell in topology.cells:
            usable = self.usable[cell.id]
            if policy.whole_cores:
                cores = sorted({tuple(sorted(cpu.siblings)) for cpu in cell.cpus})
                units = [core for core in cores if set(core) <= usable]
            else:
                units = [(cpu,) for cpu in sorted(usable)]
            self.units[cell.id] = units
            for unit in units:
                for cpu in unit:
                    self.unit_of[cpu] = unit
        self.unit_size = max((len(u) for us in self.units.values() for u in us), default=1)
        self.factor = {
            (a, b): distance(topology, a, b) / LOCAL_DISTANCE - 1
            for a in self.cell_ids
            for b in self.cell_ids
        }
        # The score's load denominators: all CPUs of a cell, all its memory.
        self.score_cpu = [(cell.id, len(cell.cpus)) for cell in topology.cells if cell.cpus]
        self.score_mem = [(cell.id, cell.memory_kib) for cell in topology.cells if cell.memory_kib]

    def limit(self, pool: int) -> int:
        """Shared vCPUs allowed on a shared pool of *pool* CPUs."""
        return math.floor(self.policy.cpu_overcommit * max(0, pool) + 1e-9)

    def owned(self, a: Assignment) -> frozenset[int] | None:
        """The CPUs a dedicated VM holds (siblings too with whole cores); None when *a* is not
        dedicated or not pinned one CPU per vCPU (then it counts like a shared VM)."""
        if not a.dedicated or not a.vcpupin:
            return None
        if any(len(cpus) != 1 for cpus in a.vcpupin.values()):
            return None
        cpus = set().union(*a.vcpupin.values())
        if self.policy.whole_cores:
            for cpu in list(cpus):
                cpus |= self.siblings.get(cpu, frozenset())
        return frozenset(cpus)

    def describe_cells(self, cells: Iterable[int]) -> str:
        cells = sorted(cells)
        text = nodes_text(cells)
        if len(cells) < 2:
            return text
        far = max(distance(self.topology, a, b) for a in cells for b in cells)
        return f"{text} (node distance {far})"
