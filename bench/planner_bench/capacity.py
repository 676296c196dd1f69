"""The capacity model (balancing.planner's docstring), for the baselines and the IP: what a
host offers under a policy, the per-cell load while a greedy places VMs one by one, turning
each VM's vCPUs and memory per cell into assignments, and this script's own validity check."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from balancing.planner import Assignment, Policy, VmDemand, current_assignment, split_evenly
from numaportal.virt.topology import HostTopology

GIB = 2**20  # KiB
MIB = 2**10  # KiB


@dataclass
class Capacity:
    """What a host offers under a policy: usable CPUs, dedicated units, memory per cell."""

    topology: HostTopology
    policy: Policy
    cpu_cells: tuple[int, ...] = ()
    mem_cells: tuple[int, ...] = ()
    usable: dict[int, frozenset[int]] = field(default_factory=dict)
    #: Per cell, what a dedicated VM takes: whole cores (all threads usable) or single CPUs.
    units: dict[int, list[tuple[int, ...]]] = field(default_factory=dict)
    unit_size: dict[int, int] = field(default_factory=dict)
    memory: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        policy = self.policy
        blocked = set(policy.reserved)
        if policy.emulator == "housekeeping":
            blocked |= policy.housekeeping
        cpu_cells, mem_cells = [], []
        for cell in self.topology.cells:
            usable = frozenset(cell.cpu_ids - blocked)
            self.usable[cell.id] = usable
            if policy.whole_cores:
                cores = sorted({tuple(sorted(cpu.siblings)) for cpu in cell.cpus})
                units = [core for core in cores if set(core) <= usable]
            else:
                units = [(cpu,) for cpu in sorted(usable)]
            self.units[cell.id] = units
            self.unit_size[cell.id] = max((len(u) for u in units), default=1)
            self.memory[cell.id] = max(0, cell.memory_kib - policy.memory_reserve_kib)
            if usable:
                cpu_cells.append(cell.id)
            if self.memory[cell.id]:
                mem_cells.append(cell.id)
        self.cpu_cells = tuple(cpu_cells)
        self.mem_cells = tuple(mem_cells)

    def shared_limit(self, pool: int) -> int:
        return math.floor(self.policy.cpu_overcommit * pool + 1e-9)

    def split(self, vm: VmDemand, cells: Sequence[int]) -> tuple[dict[int, int], dict[int, int]]:
        """vCPUs over the set's CPU cells and memory over its cells, as ``split_evenly`` does
        (cells without a vCPU or without memory are left out)."""
        cpu_part = [c for c in sorted(cells) if self.usable.get(c)]
        mem_part = [c for c in sorted(cells) if self.memory.get(c)]
        size = max(self.unit_size.values(), default=1)
        if vm.dedicated and size > 1 and len(cpu_part) > 1:
            # Whole cores per cell (vCPUs 2k and 2k+1 on one core), as the planner splits.
            cores = split_evenly(math.ceil(vm.vcpus / size), cpu_part)
            vcpus, left = {}, vm.vcpus
            for c in cpu_part:
                if n := min(cores[c] * size, left):
                    vcpus[c] = n
                    left -= n
        else:
            vcpus = {c: n for c, n in split_evenly(vm.vcpus, cpu_part).items() if n}
        memory = {c: k for c, k in split_evenly(vm.memory_kib, mem_part).items() if k}
        return vcpus, memory

    def candidate_sets(self, max_size: int) -> list[tuple[int, ...]]:
        """Every set of up to *max_size* cells with at least one CPU cell, smallest first."""
        cells = sorted(set(self.cpu_cells) | set(self.mem_cells))
        out = []
        for k in range(1, min(max_size, len(cells)) + 1):
            out.extend(s for s in itertools.combinations(cells, k) if set(s) & set(self.cpu_cells))
        return out


class Load:
    """Per-cell use while a greedy places VMs one by one."""

    def __init__(self, cap: Capacity, fixed: Iterable[Assignment]) -> None:
        self.cap = cap
        self.mem_free = dict(cap.memory)
        self.shared = dict.fromkeys(cap.usable, 0)
        self.taken: set[int] = set()  # CPUs of dedicated units in use
        self.blocked: set[int] = set()  # CPUs a locked shared VM is pinned to: never dedicated
        for a in fixed:
            for c, kib in a.memory_kib_by_cell.items():
                self.mem_free[c] = self.mem_free.get(c, 0) - kib
            pinned = set().union(*a.vcpupin.values()) if a.vcpupin else set()
            self.blocked |= a.emulatorpin
            if a.dedicated:
                for units in cap.units.values():
                    for unit in units:
                        if set(unit) & pinned:
                            self.taken |= set(unit)
            else:
                self.blocked |= pinned
                for c, n in a.vcpus_by_cell.items():
                    self.shared[c] = self.shared.get(c, 0) + n

    def free_units(self, c: int) -> list[tuple[int, ...]]:
        busy = self.taken | self.blocked
        return [u for u in self.cap.units[c] if not set(u) & busy]

    def pool(self, c: int) -> int:
        return len(self.cap.usable[c] - self.taken)

    def units_needed(self, c: int, n: int) -> int:
        return math.ceil(n / self.cap.unit_size[c])

    def fits(self, vm: VmDemand, vcpus: Mapping[int, int], memory: Mapping[int, int]) -> bool:
        cap = self.cap
        if any(self.mem_free.get(c, 0) < kib for c, kib in memory.items()):
            return False
        for c, n in vcpus.items():
            if vm.dedicated:
                k = self.units_needed(c, n)
                pool_after = self.pool(c) - k * cap.unit_size[c]
                if k > len(self.free_units(c)) or self.shared[c] > cap.shared_limit(pool_after):
                    return False
                if pool_after <= 0 and cap.policy.emulator == "cell":
                    return False  # its emulator threads need some shared CPU of its cells
            elif self.shared[c] + n > cap.shared_limit(self.pool(c)):
                return False
        return True

    def add(self, vm: VmDemand, vcpus: Mapping[int, int], memory: Mapping[int, int]) -> None:
        for c, kib in memory.items():
            self.mem_free[c] -= kib
        for c, n in vcpus.items():
            if vm.dedicated:
                k = self.units_needed(c, n)
                free = self.free_units(c)[:k]
                for unit in free:
                    self.taken |= set(unit)
            else:
                self.shared[c] += n

    def free_cpu(self, c: int) -> int:
        """Free vCPU slots of the shared pool (numad's CPUs_free)."""
        if not self.cap.usable.get(c):
            return 0
        return max(0, self.cap.shared_limit(self.pool(c)) - self.shared[c])


Choice = dict[str, tuple[dict[int, int], dict[int, int]]]


def materialise(
    cap: Capacity, vms: Sequence[VmDemand], choice: Choice, fixed: Mapping[str, Assignment]
) -> dict[str, Assignment]:
    """Assignments (pins, emulatorpin, nodeset) from each VM's vCPUs and memory per cell:
    dedicated vCPUs one per CPU of units of their own, shared vCPUs on their cell's pool."""
    topology = cap.topology
    load = Load(cap, fixed.values())
    dedicated_pins: dict[str, dict[int, frozenset[int]]] = {}
    for vm in sorted((v for v in vms if v.dedicated and v.name not in fixed), key=lambda v: v.name):
        vcpus, _ = choice[vm.name]
        pins: dict[int, frozenset[int]] = {}
        v = 0
        for c in sorted(vcpus):
            k = load.units_needed(c, vcpus[c])
            units = load.free_units(c)[:k]
            cpus = [cpu for unit in units for cpu in unit]
            load.taken |= set(cpus)
            for cpu in cpus[: vcpus[c]]:
                pins[v] = frozenset({cpu})
                v += 1
        dedicated_pins[vm.name] = pins
    pools = {c: cap.usable[c] - load.taken for c in cap.usable}
    out = dict(fixed)
    for vm in vms:
        if vm.name in fixed:
            continue
        vcpus, memory = choice[vm.name]
        if vm.dedicated:
            pins = dedicated_pins[vm.name]
        else:
            pins = {}
            for c in sorted(vcpus):
                for _ in range(vcpus[c]):
                    pins[len(pins)] = pools[c]
        if cap.policy.emulator == "housekeeping":
            emulator = frozenset(cap.policy.housekeeping)
        else:
            emulator = frozenset().union(*(pools[c] for c in vcpus))
            if not emulator:
                emulator = frozenset().union(*pins.values())
        cells = frozenset(vcpus) | frozenset(memory)
        now = current_assignment(topology, vm)
        nodeset = frozenset(memory)
        moved = (
            cells != now.cells
            or dict(pins) != dict(now.vcpupin)
            or nodeset != now.nodeset
            or emulator != now.emulatorpin
        )
        out[vm.name] = Assignment(
            name=vm.name,
            cells=cells,
            vcpupin=pins,
            emulatorpin=emulator,
            nodeset=nodeset,
            vcpus_by_cell=dict(vcpus),
            memory_kib_by_cell=dict(memory),
            moved=moved,
            locked=False,
            dedicated=vm.dedicated,
        )
    return out


def locked_assignments(cap: Capacity, vms: Sequence[VmDemand]) -> dict[str, Assignment]:
    return {vm.name: current_assignment(cap.topology, vm) for vm in vms if vm.locked}


def model_problems(
    cap: Capacity, vms: Sequence[VmDemand], plan_: Mapping[str, Assignment]
) -> list[str]:
    """This script's own reading of the capacity model, used while ``validate()`` is not
    written and as a cross-check of it (disagreements are printed)."""
    topology, policy = cap.topology, cap.policy
    problems = []
    owner: dict[int, str] = {}  # dedicated CPU (and its idle siblings) -> VM
    for vm in vms:
        a = plan_.get(vm.name)
        if a is None:
            problems.append(f"{vm.name}: no assignment")
            continue
        if sorted(a.vcpupin) != list(range(vm.vcpus)):
            problems.append(f"{vm.name}: pins for vCPUs {sorted(a.vcpupin)}, has {vm.vcpus}")
        if vm.locked:
            now = current_assignment(topology, vm)
            if (a.cells, dict(a.vcpupin), a.nodeset) != (now.cells, dict(now.vcpupin), now.nodeset):
                problems.append(f"{vm.name}: locked but changed")
            continue
        allowed = frozenset().union(*(cap.usable.get(c, frozenset()) for c in a.cells))
        for v, cpus in a.vcpupin.items():
            if not cpus or not cpus <= allowed:
                problems.append(f"{vm.name}: vCPU {v} pinned outside its cells' usable CPUs")
            if vm.dedicated and len(cpus) != 1:
                problems.append(f"{vm.name}: dedicated vCPU {v} on {len(cpus)} CPUs")
        if vm.dedicated:
            for cpus in a.vcpupin.values():
                for cpu in cpus:
                    for sib in topology.cpu(cpu).siblings if policy.whole_cores else {cpu}:
                        if owner.setdefault(sib, vm.name) != vm.name:
                            problems.append(f"{vm.name}: CPU {sib} also dedicated to {owner[sib]}")
    for vm in vms:
        a = plan_.get(vm.name)
        if a is None or vm.dedicated:
            continue
        for cpus in [*a.vcpupin.values(), a.emulatorpin]:
            clash = {owner[c] for c in cpus if c in owner}
            if clash:
                problems.append(f"{vm.name}: pinned on CPUs dedicated to {sorted(clash)}")
                break
    mem: dict[int, int] = {}
    shared: dict[int, int] = {}
    for vm in vms:
        a = plan_.get(vm.name)
        if a is None:
            continue
        for c, kib in a.memory_kib_by_cell.items():
            mem[c] = mem.get(c, 0) + kib
        if not vm.dedicated:
            for c, n in a.vcpus_by_cell.items():
                shared[c] = shared.get(c, 0) + n
    for c, kib in mem.items():
        if kib > cap.memory.get(c, 0):
            problems.append(
                f"cell {c}: {kib // MIB} MiB of VMs, {cap.memory.get(c, 0) // MIB} usable"
            )
    for c, n in shared.items():
        pool = len(cap.usable.get(c, frozenset()) - set(owner))
        if n > cap.shared_limit(pool):
            problems.append(f"cell {c}: {n} shared vCPUs on a pool of {pool}")
    return problems
