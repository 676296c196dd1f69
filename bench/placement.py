"""Benchmark: the placement planner against two greedy baselines and the integer-program optimum.

    .venv/bin/python bench/placement.py [--runs 3] [--ip-time-limit 20] [--seed 6]

Pure Python (no Django, no libvirt). For every instance (a host and a set of VMs, generated
from a seeded RNG, so the same every run) it places the VMs four ways on the capacity model of
``balancing.planner`` (see its docstring):

- the planner, ``balancing.planner.plan`` (timed: median of ``--runs`` runs);
- first-fit decreasing: VMs by vCPUs then memory, descending; each on the first cell (in id
  order) that fits, else spread over the fewest cells that fit, first such set in id order;
- a numad-style greedy: VMs by memory, descending; each on the fitting cell with the largest
  numad "magnitude" (free CPU x free memory); when no cell fits, cells are added in numad's
  order (magnitude / distance to the cell added last) until the VM fits;
- the optimum of an integer program (PuLP + its bundled CBC) on the instances small enough
  to solve: one binary per (VM, candidate cell set), the VM's vCPUs and memory split evenly
  over the set (``split_evenly``, whole cores for dedicated VMs, as the planner splits when an
  even split fits), capacity constraints per cell, objective = the remote term of ``score()``
  (computed by ``score()`` itself for each option) plus a tiny move penalty as tie-break.

All four results are ``balancing.planner.Assignment`` maps, judged by the same ``score()`` and
``validate()``. A lower bound of the remote term (every VM on its cheapest cell set as if
alone on the host) tells where the optimum is known without the IP: when an evenly split,
valid placement reaches it. The planner may also split a VM in proportion to the free room
(when no even split fits); such placements are outside the IP's model and can score below
its "optimum". Prints a markdown table (the README quotes it) and a summary line; progress
and every rejected plan's reasons go to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from balancing.planner import (  # noqa: E402
    Assignment,
    Plan,
    PlanError,
    Policy,
    Score,
    VmDemand,
    current_assignment,
    distance,
    plan,
    score,
    split_evenly,
    validate,
)
from numaportal.virt.topology import Cell, Cpu, HostTopology, parse_capabilities  # noqa: E402

GIB = 2**20  # KiB
MIB = 2**10  # KiB
FIXTURES = ROOT / "tests" / "fixtures" / "capabilities"

# --- hosts ------------------------------------------------------------------------------------


def socket_distance(a: int, b: int, sockets: int, ring: bool) -> int:
    """21 to a neighbouring socket, 32 two or more hops away on a ring (glueless 4/8 sockets)."""
    hops = min(abs(a - b), sockets - abs(a - b)) if ring else 1
    return 21 if hops <= 1 else 32


def generated_host(
    *,
    sockets: int,
    cells_per_socket: int = 1,
    cores: int = 16,
    threads: int = 2,
    memory_only: int = 0,
    ring: bool = True,
) -> HostTopology:
    """A host shaped like a real machine: *sockets* x *cells_per_socket* CPU cells of *cores*
    cores x *threads* threads, Linux numbering (thread t of core g is CPU g + t x all cores),
    distances 10 local / 16 same socket (SNC, NPS) / 21 next socket / 32 two hops; plus
    *memory_only* CPU-less cells (CXL), one behind each socket in turn (21 from it, 32 from
    the others). Memory is 0 here: :func:`with_memory` sets it once the VMs are known."""
    cpu_cells = sockets * cells_per_socket
    all_cores = cpu_cells * cores
    socket_of = {c: c // cells_per_socket for c in range(cpu_cells)}
    socket_of.update({cpu_cells + i: i % sockets for i in range(memory_only)})
    n_cells = cpu_cells + memory_only

    def dist(a: int, b: int) -> int:
        if a == b:
            return 10
        if a < cpu_cells and b < cpu_cells and socket_of[a] == socket_of[b]:
            return 16
        if a >= cpu_cells and b >= cpu_cells:
            return 32
        if (a >= cpu_cells or b >= cpu_cells) and socket_of[a] == socket_of[b]:
            return 21
        if a >= cpu_cells or b >= cpu_cells:
            return 32
        return socket_distance(socket_of[a], socket_of[b], sockets, ring)

    cells = []
    for c in range(n_cells):
        cpus: list[Cpu] = []
        if c < cpu_cells:
            for k in range(cores):
                g = c * cores + k
                siblings = frozenset(g + t * all_cores for t in range(threads))
                core_in_socket = (c % cells_per_socket) * cores + k
                cpus.extend(
                    Cpu(
                        id=g + t * all_cores,
                        socket_id=socket_of[c],
                        die_id=0,
                        core_id=core_in_socket,
                        siblings=siblings,
                        cell_id=c,
                    )
                    for t in range(threads)
                )
        cpus.sort(key=lambda cpu: cpu.id)
        cells.append(
            Cell(
                id=c,
                memory_kib=0,
                cpus=tuple(cpus),
                distances={o: dist(c, o) for o in range(n_cells)},
                pages={},
            )
        )
    return HostTopology(
        cells=tuple(cells),
        arch="x86_64",
        cpu_model="bench",
        cpu_vendor=None,
        declared_sockets=sockets,
        declared_dies=1,
        declared_cores=cores,
        declared_threads=threads,
        uuid=None,
    )


def with_memory(topology: HostTopology, memory_kib: Mapping[int, int]) -> HostTopology:
    cells = tuple(replace(cell, memory_kib=memory_kib[cell.id]) for cell in topology.cells)
    return replace(topology, cells=cells)


def fixture_host(name: str) -> HostTopology:
    return parse_capabilities((FIXTURES / name).read_text())


# --- the capacity model (balancing.planner's docstring), for the baselines and the IP ---------


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


# --- baselines --------------------------------------------------------------------------------


def first_fit_decreasing(cap: Capacity, vms: Sequence[VmDemand]) -> dict[str, Assignment]:
    fixed = locked_assignments(cap, vms)
    load = Load(cap, fixed.values())
    sets = cap.candidate_sets(len(cap.topology.cells))
    choice: Choice = {}
    todo = sorted(
        (vm for vm in vms if not vm.locked), key=lambda v: (-v.vcpus, -v.memory_kib, v.name)
    )
    for vm in todo:
        for cells in sets:  # singles in id order first, then pairs, ... in id order
            vcpus, memory = cap.split(vm, cells)
            if load.fits(vm, vcpus, memory):
                break
        else:  # fits nowhere: everywhere (validate() will say it is over capacity)
            vcpus, memory = cap.split(vm, sets[-1])
        load.add(vm, vcpus, memory)
        choice[vm.name] = (vcpus, memory)
    return materialise(cap, vms, choice, fixed)


def numad_greedy(cap: Capacity, vms: Sequence[VmDemand]) -> dict[str, Assignment]:
    topology = cap.topology
    fixed = locked_assignments(cap, vms)
    load = Load(cap, fixed.values())
    choice: Choice = {}
    all_cells = sorted(set(cap.cpu_cells) | set(cap.mem_cells))

    def magnitude(c: int) -> int:
        # numad: CPUs_free x MBs_free (a CPU-less node has magnitude 0).
        return load.free_cpu(c) * max(0, load.mem_free.get(c, 0) // MIB)

    todo = sorted(
        (vm for vm in vms if not vm.locked), key=lambda v: (-v.memory_kib, -v.vcpus, v.name)
    )
    for vm in todo:
        best = None
        for c in sorted(cap.cpu_cells, key=lambda c: (-magnitude(c), c)):
            vcpus, memory = cap.split(vm, [c])
            if load.fits(vm, vcpus, memory):
                best = (vcpus, memory)
                break
        if best is None:  # numad's spread: next node by magnitude / distance to the last one
            chosen: list[int] = []
            while len(chosen) < len(all_cells):
                rest = [c for c in all_cells if c not in chosen]
                prev = chosen[-1] if chosen else None

                def key(c: int, prev: int | None = prev) -> tuple[float, int, int]:
                    d = distance(topology, prev, c) if prev is not None else 1
                    return (-magnitude(c) / d, -load.mem_free.get(c, 0), c)

                chosen.append(min(rest, key=key))
                if not set(chosen) & set(cap.cpu_cells):
                    continue
                vcpus, memory = cap.split(vm, chosen)
                if load.fits(vm, vcpus, memory):
                    best = (vcpus, memory)
                    break
            if best is None:
                best = cap.split(vm, all_cells)
        load.add(vm, *best)
        choice[vm.name] = best
    return materialise(cap, vms, choice, fixed)


# --- the optimum ------------------------------------------------------------------------------


@dataclass
class IpResult:
    assignments: dict[str, Assignment] | None
    status: str  # "optimal", "time limit" (best found, not proven), "infeasible", ...
    seconds: float
    variables: int
    exact: bool = True  # every cell set was a candidate


def remote_raw(
    topology: HostTopology, vcpus: Mapping[int, int], memory: Mapping[int, int]
) -> float:
    """One VM's term of Score.remote before the division by total memory, computed by
    ``score()`` itself on a one-VM placement (so the IP minimises exactly what is reported)."""
    probe = Assignment(
        name="probe",
        cells=frozenset(vcpus) | frozenset(memory),
        vcpupin={},
        emulatorpin=frozenset(),
        nodeset=frozenset(memory),
        vcpus_by_cell=dict(vcpus),
        memory_kib_by_cell=dict(memory),
    )
    return score(topology, [probe]).remote * sum(memory.values()) / GIB


def lower_bound(cap: Capacity, vms: Sequence[VmDemand]) -> float:
    """A lower bound of Score.remote: locked VMs as they are, every other VM on its cheapest
    cell set that it fits alone (0 when it fits one cell), capacity shared with nobody."""
    topology = cap.topology
    fixed = locked_assignments(cap, vms)
    base = Load(cap, fixed.values())
    raw = sum(remote_raw(topology, a.vcpus_by_cell, a.memory_kib_by_cell) for a in fixed.values())
    sets = cap.candidate_sets(len(topology.cells))
    for vm in vms:
        if vm.locked:
            continue
        if any(base.fits(vm, *cap.split(vm, [c])) for c in cap.cpu_cells):
            continue  # one cell: nothing remote
        costs = [
            remote_raw(topology, *split)
            for split in (cap.split(vm, cells) for cells in sets if len(cells) > 1)
            if split[0] and base.fits(vm, *split)
        ]
        raw += min(costs, default=0.0)
    return raw / (sum(vm.memory_kib for vm in vms) / GIB)


#: Up to this many candidate sets (every set of a host of up to 4 cells), the IP gets them all
#: and its optimum is exact; on larger hosts each VM gets the single cells and, per size from
#: 2 to what its memory needs plus one, the CLOSEST_SETS sets with the least remote cost.
EXHAUSTIVE_SETS = 15
CLOSEST_SETS = 3


def candidates(
    cap: Capacity, vm: VmDemand, sets: Sequence[tuple[int, ...]], base: Load, closest: int
) -> list[tuple[int, tuple[int, ...], tuple[dict[int, int], dict[int, int]]]]:
    """(index in *sets*, cells, split) of the sets the IP may put *vm* on."""
    by_size: dict[int, list] = {}
    for k, cells in enumerate(sets):
        vcpus, memory = cap.split(vm, cells)
        if not vcpus or any(kib > base.mem_free.get(c, 0) for c, kib in memory.items()):
            continue  # no vCPU on it, or too big even for otherwise empty cells
        by_size.setdefault(len(cells), []).append((k, cells, (vcpus, memory)))
    if not closest:
        return [option for options in by_size.values() for option in options]
    smallest = min((cap.memory[c] for c in cap.cpu_cells), default=1) or 1
    k_max = max(2, math.ceil(vm.memory_kib / smallest) + 1)
    out = list(by_size.get(1, []))
    for size in range(2, k_max + 1):
        ranked = sorted(
            by_size.get(size, []), key=lambda o: (remote_raw(cap.topology, *o[2]), o[1])
        )
        out.extend(ranked[:closest])
    return out


def optimum(cap: Capacity, vms: Sequence[VmDemand], time_limit: float) -> IpResult:
    import pulp

    topology = cap.topology
    fixed = locked_assignments(cap, vms)
    base = Load(cap, fixed.values())
    free = [vm for vm in vms if not vm.locked]
    sets = cap.candidate_sets(len(topology.cells))
    closest = 0 if len(sets) <= EXHAUSTIVE_SETS else CLOSEST_SETS
    total_mem_gib = sum(vm.memory_kib for vm in vms) / GIB
    move_eps = 1e-6 * total_mem_gib / max(1, len(vms))  # far below any remote difference

    prob = pulp.LpProblem("placement", pulp.LpMinimize)
    x: dict[tuple[int, int], pulp.LpVariable] = {}
    split: dict[tuple[int, int], tuple[dict[int, int], dict[int, int]]] = {}
    objective = []
    mem_use: dict[int, list] = {c: [] for c in cap.memory}
    shared_use: dict[int, list] = {c: [] for c in cap.usable}
    unit_use: dict[int, list] = {c: [] for c in cap.usable}
    for i, vm in enumerate(free):
        now = current_assignment(topology, vm)
        options = []
        for k, cells, (vcpus, memory) in candidates(cap, vm, sets, base, closest):
            var = pulp.LpVariable(f"x_{i}_{k}", cat="Binary")
            x[i, k] = var
            split[i, k] = (vcpus, memory)
            options.append(var)
            moved = frozenset(cells) != now.cells or not vm.vcpupin
            objective.append((remote_raw(topology, vcpus, memory) + move_eps * moved) * var)
            for c, kib in memory.items():
                mem_use[c].append(kib * var)
            for c, n in vcpus.items():
                if vm.dedicated:
                    unit_use[c].append(base.units_needed(c, n) * var)
                else:
                    shared_use[c].append(n * var)
        if not options:
            return IpResult(None, "infeasible (a VM fits no cell set)", 0.0, len(x))
        prob += pulp.lpSum(options) == 1, f"one_set_{i}"
    prob += pulp.lpSum(objective)
    oc = cap.policy.cpu_overcommit
    for c in cap.memory:
        if mem_use[c]:
            prob += pulp.lpSum(mem_use[c]) <= base.mem_free[c], f"mem_{c}"
    for c in cap.usable:
        if not cap.usable[c]:
            continue
        units = pulp.lpSum(unit_use[c])
        if unit_use[c]:
            prob += units <= len(base.free_units(c)), f"units_{c}"
        # shared vCPUs <= overcommit x (pool - CPUs of the new dedicated units); floor() of
        # the limit is what the greedy checks, so both sides stay integral here.
        pool = base.pool(c)
        prob += (
            pulp.lpSum(shared_use[c]) + base.shared[c] <= oc * (pool - cap.unit_size[c] * units),
            f"shared_{c}",
        )
        if unit_use[c] and cap.policy.emulator == "cell":
            prob += cap.unit_size[c] * units <= pool - 1, f"emulator_{c}"
    with warnings.catch_warnings():
        # PuLP 3.3 marks PULP_CBC_CMD (the bundled CBC) for removal in PuLP 4.
        warnings.simplefilter("ignore", DeprecationWarning)
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, threads=1)
    start = time.perf_counter()
    prob.solve(solver)
    seconds = time.perf_counter() - start
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return IpResult(None, pulp.LpStatus[prob.status].lower(), seconds, len(x))
    choice: Choice = {}
    for (i, k), var in x.items():
        if (var.value() or 0) > 0.5:
            choice[free[i].name] = split[i, k]
    status = "optimal" if prob.sol_status == pulp.LpSolutionOptimal else "time limit"
    return IpResult(materialise(cap, vms, choice, fixed), status, seconds, len(x), not closest)


# --- instances --------------------------------------------------------------------------------


@dataclass
class Instance:
    name: str
    topology: HostTopology
    vms: list[VmDemand]
    policy: Policy
    fill: float  # VM memory / usable memory (after the reserve)
    solve_ip: bool

    @property
    def counts(self) -> str:
        big = sum(1 for vm in self.vms if vm.name.startswith("big"))
        ded = sum(1 for vm in self.vms if vm.dedicated)
        locked = sum(1 for vm in self.vms if vm.locked)
        return f"{len(self.vms)} ({big}/{ded}/{locked})"


def draw_sizes(rng: random.Random, n: int) -> list[tuple[int, int]]:
    """(vCPUs, GiB) of typical VMs: 1-16 vCPUs, 1-8 GiB per vCPU, 1-64 GiB."""
    out = []
    for _ in range(n):
        vcpus = rng.choice((1, 2, 2, 2, 4, 4, 4, 4, 8, 8, 12, 16))
        gib = min(64, max(1, vcpus * rng.choice((1, 2, 2, 4, 4, 8))))
        out.append((vcpus, gib))
    return out


def make_instance(
    name: str,
    rng: random.Random,
    shape: HostTopology,
    *,
    n_vms: int,
    fill: float,
    generated: bool,
    big: int = 0,
    dedicated_share: float = 0.05,
    locked_share: float = 0.04,
    unpinned_share: float = 0.3,
    cpu_fill: float = 0.8,
    memory_only_ratio: float = 0.5,
    solve_ip: bool = False,
) -> Instance:
    cpu_cells = [c.id for c in shape.cells if c.cpus]
    n_big = big
    sizes = draw_sizes(rng, n_vms - n_big)
    base_kib = sum(gib for _, gib in sizes) * GIB
    factors = [rng.uniform(1.05, 1.25) for _ in range(n_big)]

    if generated:
        # Cell memory from the VMs: fill x usable memory = all VM memory, CXL cells smaller.
        mem_only = [c.id for c in shape.cells if not c.cpus]
        weight = len(cpu_cells) + memory_only_ratio * len(mem_only)
        room = fill * weight - sum(factors)  # cells' worth of memory for the ordinary VMs
        if room < 0.3:
            raise SystemExit(f"{name}: the big VMs alone fill the host; fewer of them")
        cell_kib = base_kib / room
        cell_gib = math.ceil(cell_kib / GIB)
        reserve = 2 * GIB
        memory = dict.fromkeys(cpu_cells, cell_gib * GIB + reserve)
        memory.update({c: round(memory_only_ratio * cell_gib) * GIB + reserve for c in mem_only})
        topology = with_memory(shape, memory)
        cell = cell_gib * GIB
        scale = 1.0
    else:
        topology = shape
        smallest = min(c.memory_kib for c in shape.cells if c.memory_kib)
        reserve = min(2 * GIB, smallest // 16) // MIB * MIB
        usable = sum(max(0, c.memory_kib - reserve) for c in shape.cells)
        # "A cell" on hosts with unequal cells: the mean CPU cell (the smaller ones must
        # still be able to take half of a big VM).
        cell = statistics.fmean(c.memory_kib - reserve for c in shape.cells if c.cpus)
        scale = (fill * usable - sum(factors) * cell) / base_kib
    vms: list[VmDemand] = []
    widest = max(len(c.cpus) for c in shape.cells)  # no ordinary VM wider than a cell
    for i, (vcpus, gib) in enumerate(sizes):
        kib = max(16 * MIB, int(gib * GIB * scale) // MIB * MIB)
        vms.append(VmDemand(name=f"vm{i:03d}", vcpus=min(vcpus, widest), memory_kib=kib))
    for j, f in enumerate(factors):
        kib = int(f * cell) // MIB * MIB
        vms.append(VmDemand(name=f"big{j}", vcpus=rng.choice((16, 24, 32)), memory_kib=kib))

    # Host CPUs: the first core of cell 0 reserved on generated hosts.
    reserved = frozenset(topology.cells[0].cpus[0].siblings) if generated else frozenset()
    cpus_per_cell = min(len(c.cpus) for c in topology.cells if c.cpus)
    # Dedicated VMs (small, 2 or 4 vCPUs) and locked VMs, picked among the ordinary ones.
    normal = list(range(n_vms - n_big))
    rng.shuffle(normal)
    n_ded = round(dedicated_share * n_vms) if cpus_per_cell >= 8 else 0
    n_locked = max(1, round(locked_share * n_vms)) if n_vms >= 20 else 0
    for i in normal[:n_ded]:
        vms[i] = replace(vms[i], vcpus=rng.choice((2, 4)), dedicated=True)
    for i in normal[n_ded : n_ded + n_locked]:
        vms[i] = replace(vms[i], locked=True)

    # Over-commit so that shared vCPUs fill cpu_fill of the shared pools (at least 1.0).
    usable = sum(len(c.cpus) for c in topology.cells) - len(reserved)
    tpc = topology.threads_per_core
    ded_cpus = sum(math.ceil(vm.vcpus / tpc) * tpc for vm in vms if vm.dedicated)
    shared = sum(vm.vcpus for vm in vms if not vm.dedicated)
    oc = max(1.0, math.ceil(4 * shared / (cpu_fill * (usable - ded_cpus))) / 4)
    policy = Policy(
        cpu_overcommit=oc,
        reserved=reserved,
        memory_reserve_kib=reserve,
        whole_cores=True,
        emulator="cell",
        strategy="spread",
    )
    vms = place_now(rng, topology, policy, vms, unpinned_share)
    usable_mem = sum(max(0, c.memory_kib - reserve) for c in topology.cells)
    real_fill = sum(vm.memory_kib for vm in vms) / usable_mem
    return Instance(name, topology, vms, policy, real_fill, solve_ip)


def place_now(
    rng: random.Random,
    topology: HostTopology,
    policy: Policy,
    vms: list[VmDemand],
    unpinned_share: float,
) -> list[VmDemand]:
    """A random current placement: locked VMs where they fit (they stay there), the others
    unpinned (all cells, no numatune) or pinned to one random cell (two for big VMs)."""
    cap = Capacity(topology, policy)
    load = Load(cap, [])
    out = []
    all_cells = frozenset(cap.cpu_cells)
    for vm in sorted(vms, key=lambda v: (not v.locked, not v.dedicated, v.name)):
        if vm.locked:
            # Keep room for the others: the cell with most free memory that fits.
            for c in sorted(cap.cpu_cells, key=lambda c: -load.mem_free[c]):
                vcpus, memory = cap.split(vm, [c])
                if load.fits(vm, vcpus, memory):
                    break
            else:
                raise SystemExit(f"{vm.name}: a locked VM fits no cell; change the instance")
            if vm.dedicated:
                k = load.units_needed(c, vm.vcpus)
                units = load.free_units(c)[:k]
                cpus = [cpu for u in units for cpu in u][: vm.vcpus]
                pins = {v: frozenset({cpu}) for v, cpu in enumerate(cpus)}
            else:  # pinned 1:1 by hand, on the last free CPUs of the cell
                units = load.free_units(c)[::-1] or [tuple(sorted(cap.usable[c]))]
                cpus = [cpu for u in units for cpu in u]
                pins = {v: frozenset({cpus[v % len(cpus)]}) for v in range(vm.vcpus)}
                load.blocked |= set().union(*pins.values())
            load.add(vm, vcpus, memory)
            out.append(
                replace(
                    vm,
                    cells=frozenset({c}),
                    memory_cells=frozenset({c}),
                    vcpupin=pins,
                    emulatorpin=frozenset().union(*pins.values()),
                )
            )
        elif rng.random() < unpinned_share and not vm.dedicated:
            out.append(replace(vm, cells=all_cells))
        else:
            k = 2 if vm.name.startswith("big") and len(cap.cpu_cells) > 1 else 1
            cells = sorted(rng.sample(cap.cpu_cells, k))
            cpus = sorted(frozenset().union(*(cap.usable[c] for c in cells)))
            if vm.dedicated:
                chosen = rng.sample(cpus, min(vm.vcpus, len(cpus)))
                pins = {v: frozenset({cpu}) for v, cpu in enumerate(chosen)}
            else:
                pins = dict.fromkeys(range(vm.vcpus), frozenset(cpus))
            out.append(
                replace(
                    vm,
                    cells=frozenset(cells),
                    memory_cells=frozenset(cells),
                    vcpupin=pins,
                    emulatorpin=frozenset(cpus),
                )
            )
    return sorted(out, key=lambda v: v.name)


def instances(seed: int) -> list[Instance]:
    out: list[Instance] = []

    def rng(name: str, kw: dict) -> random.Random:
        # One stream per instance: adding or changing one leaves the others as they were.
        return random.Random(f"{seed}/{name}/{kw['n_vms']}/{kw['fill']}")

    def gen(name: str, shape: HostTopology, **kw: Any) -> None:
        out.append(make_instance(name, rng(name, kw), shape, generated=True, **kw))

    def fix(name: str, file: str, **kw: Any) -> None:
        out.append(make_instance(name, rng(name, kw), fixture_host(file), generated=False, **kw))

    # Small enough for the integer program.
    gen("1 socket", generated_host(sockets=1), n_vms=10, fill=0.9, solve_ip=True)
    gen("2 sockets", generated_host(sockets=2), n_vms=24, fill=0.95, solve_ip=True)
    gen("2 sockets", generated_host(sockets=2), n_vms=30, fill=0.9, big=1, solve_ip=True)
    gen(
        "2 sockets + 2 CXL (memory-only)",
        generated_host(sockets=2, memory_only=2),
        n_vms=24,
        fill=0.85,
        solve_ip=True,
    )
    snc = generated_host(sockets=2, cells_per_socket=2, cores=12)
    gen("2 sockets x 2 SNC", snc, n_vms=30, fill=0.95, solve_ip=True)
    gen("2 sockets x 2 SNC", snc, n_vms=30, fill=0.9, big=1, solve_ip=True)
    ring4 = generated_host(sockets=4, cores=12)
    gen("4 sockets, ring", ring4, n_vms=30, fill=0.92, big=1, solve_ip=True)
    fix(
        "fixture 2node-24cpu-ht",
        "x86_64-2node-24cpu-ht.xml",
        n_vms=20,
        fill=0.9,
        big=1,
        solve_ip=True,
    )
    fix(
        "fixture 2node-64cpu-amd-smt",
        "x86_64-2node-64cpu-amd-smt.xml",
        n_vms=30,
        fill=0.85,
        big=1,
        solve_ip=True,
    )
    # 16 GiB with CPUs, 64 GiB without: evenly split VMs can use at most 2 x 16 GiB (40 %).
    memory_only = "x86_64-2node-memory-only-cell.xml"
    fix("fixture 2node-memory-only-cell", memory_only, n_vms=12, fill=0.35, solve_ip=True)
    fix("fixture 2node-memory-only-cell", memory_only, n_vms=12, fill=0.75, solve_ip=True)
    fix("fixture 4node-basic", "x86_64-4node-basic.xml", n_vms=16, fill=0.85, big=1, solve_ip=True)
    fix("fixture 1node-dies", "x86_64-1node-dies.xml", n_vms=10, fill=0.9, solve_ip=True)
    fix("fixture 1node-2cpu-lab", "x86_64-1node-2cpu-lab.xml", n_vms=10, fill=0.8, solve_ip=True)
    # Larger: planner and baselines only.
    gen(
        "3 sockets x 2 NPS",
        generated_host(sockets=3, cells_per_socket=2),
        n_vms=100,
        fill=0.9,
        big=1,
        solve_ip=True,
    )
    ring8 = generated_host(sockets=4, cells_per_socket=2)
    gen("4 sockets x 2 SNC, ring", ring8, n_vms=200, fill=0.92, big=2)
    ring10 = generated_host(sockets=5, cells_per_socket=2, cores=24)
    gen("5 sockets x 2 SNC, ring", ring10, n_vms=500, fill=0.85, big=2)
    gen("5 sockets x 2 SNC, ring", ring10, n_vms=500, fill=0.95, big=3)
    return out


# --- running ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    score: Score | None
    invalid: list[str]
    error: str = ""
    #: Unlocked VMs spread other than evenly (the planner splits in proportion to the free
    #: room when no even split fits); 0 means the placement is in the IP's model.
    uneven: int = 0


def judge(inst: Instance, assignments: Mapping[str, Assignment] | None, error: str = "") -> Outcome:
    if assignments is None:
        return Outcome(None, [], error)
    items = list(assignments.values())
    s = score(inst.topology, items, move_weight=inst.policy.move_weight)
    wrapped = Plan(assignments=dict(assignments), before=s, after=s, policy=inst.policy)
    own = model_problems(Capacity(inst.topology, inst.policy), inst.vms, assignments)  # cross-check
    cap = Capacity(inst.topology, inst.policy)
    uneven = 0
    for vm in inst.vms:
        a = assignments.get(vm.name)
        if a and not vm.locked and len(a.cells) > 1:
            vcpus, memory = cap.split(vm, sorted(a.cells))
            even = (vcpus, memory) == (dict(a.vcpus_by_cell), dict(a.memory_kib_by_cell))
            uneven += not even
    try:
        problems = list(validate(inst.topology, inst.vms, wrapped))
    except NotImplementedError:
        return Outcome(s, own, uneven=uneven)
    if bool(problems) != bool(own):
        print(
            f"  validate() and this script disagree on {inst.name}: {problems[:2]} vs {own[:2]}",
            file=sys.stderr,
        )
    return Outcome(s, problems, uneven=uneven)


def median_s(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def fmt_remote(o: Outcome) -> str:
    if o.score is None:
        return o.error or "-"
    text = f"{o.score.remote:.4f}"
    return f"{text} ✗" if o.invalid else text


def vs_optimum(planner: Outcome, opt: float | None) -> tuple[str, float | None, float | None]:
    """Text, % above the optimum (None when the optimum is 0) and the absolute difference."""
    if planner.score is None or opt is None:
        return "-", None, None
    diff = planner.score.remote - opt
    if opt < 1e-9:
        return f"{diff:+.4f} (abs.)", None, diff
    pct = 100 * diff / opt
    return f"{pct:+.2f} %", pct, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="planner runs per instance (median)")
    parser.add_argument("--ip-time-limit", type=float, default=20.0, help="seconds per IP")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--no-ip", action="store_true", help="skip the integer program")
    args = parser.parse_args()

    rows = []
    invalid = {"planner": 0, "FFD": 0, "numad": 0, "optimum": 0}
    pcts: list[float] = []
    abs_diffs: list[float] = []
    uneven: list[str] = []
    largest: set[str] = set()
    plan_times: list[tuple[float, str]] = []
    details = []
    for inst in instances(args.seed):
        cap = Capacity(inst.topology, inst.policy)
        try:
            seconds, result = median_s(
                lambda inst=inst: plan(inst.topology, inst.vms, inst.policy), args.runs
            )
            planner = judge(inst, result.assignments)
            plan_times.append((seconds, inst.name))
            plan_text = (
                f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
            )
        except NotImplementedError:
            planner, plan_text = Outcome(None, [], "not written"), "-"
        except PlanError as exc:
            planner, plan_text = Outcome(None, [f"{type(exc).__name__}: {exc}"], "error"), "-"
        ffd = judge(inst, first_fit_decreasing(cap, inst.vms))
        numad = judge(inst, numad_greedy(cap, inst.vms))
        bound = lower_bound(cap, inst.vms)
        ip_done = inst.solve_ip and not args.no_ip
        if ip_done:
            ip = optimum(cap, inst.vms, args.ip_time_limit)
            best = judge(inst, ip.assignments, ip.status)
            ip_note = (
                f"{ip.status}, {'all' if ip.exact else 'closest'} cell sets, "
                f"{ip.variables} variables, {ip.seconds:.1f} s"
            )
        else:
            ip, best, ip_note = None, Outcome(None, [], "-"), "not run"
        # The optimum (of the even-split model) is known when the IP proved it over every cell
        # set, or when a valid placement that splits evenly reaches the lower bound.
        valid = [
            o.score.remote
            for o in (planner, ffd, numad, best)
            if o.score and not o.invalid and not o.uneven
        ]
        found = min(valid, default=None)
        if ip and ip.exact and ip.status == "optimal" and best.score and not best.invalid:
            opt, opt_text = best.score.remote, f"{best.score.remote:.4f}"
        elif found is not None and found <= bound + 1e-9:
            opt, opt_text = found, f"{found:.4f} (= bound)"
        elif ip and ip.status.startswith("infeasible"):
            opt, opt_text = None, "no even split fits"
        else:
            opt = None
            opt_text = f"{bound:.4f}, {found:.4f}" if found is not None else f"≥ {bound:.4f}"
        labelled = (("planner", planner), ("FFD", ffd), ("numad", numad), ("optimum", best))
        for label, o in labelled:
            if o.invalid:
                invalid[label] += 1
                details.append(f"{inst.name} / {label}: " + "; ".join(o.invalid[:3]))
        gap, pct, diff = vs_optimum(planner, opt)
        if pct is not None:
            pcts.append(pct)
        elif diff is not None:
            abs_diffs.append(diff)
        cells = len([c for c in inst.topology.cells if c.cpus])
        mem_only = len(inst.topology.cells) - cells
        one_cell = moves = "-"
        if planner.score:
            one_cell = str(planner.score.vms_on_one_cell)
            moves = str(planner.score.moves)
            if best.score:
                one_cell += f" / {best.score.vms_on_one_cell}"
                moves += f" / {best.score.moves}"
        rows.append(
            [
                inst.name,
                f"{cells}" + (f" + {mem_only}" if mem_only else ""),
                inst.counts,
                f"{100 * inst.fill:.0f} %",
                f"{inst.policy.cpu_overcommit:g}",
                fmt_remote(planner) + (" †" if planner.uneven else ""),
                fmt_remote(ffd),
                fmt_remote(numad),
                opt_text,
                gap,
                moves,
                one_cell,
                plan_text,
            ]
        )
        if planner.uneven:
            uneven.append(f"{inst.name}: {planner.uneven}")
        if len(inst.vms) >= 500 and len(inst.topology.cells) >= 10:
            largest.add(inst.name)
        print(f"  {inst.name}, {inst.counts} VMs: IP {ip_note}; bound {bound:.4f}", file=sys.stderr)

    header = [
        "host",
        "cells",
        "VMs (big/ded./locked)",
        "memory fill",
        "CPU o/c",
        "remote: planner",
        "FFD",
        "numad",
        "optimum",
        "planner vs optimum",
        "moves (planner / opt.)",
        "on one cell (planner / opt.)",
        "plan time",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    summary = []
    if pcts:
        summary.append(
            f"planner vs optimum on {len(pcts)} instances with a non-zero optimum: "
            f"mean {statistics.fmean(pcts):+.2f} %, max {max(pcts):+.2f} %"
        )
    if abs_diffs:
        summary.append(f"where the optimum is 0: max +{max(abs_diffs):.4f}")
    if plan_times:
        worst, where = max(plan_times)
        summary.append(f"max planning time {worst * 1000:.0f} ms ({where})")
        big = [t for t, name in plan_times if name in largest]
        if big:
            summary.append(f"500 VMs x 10 cells: {max(big) * 1000:.0f} ms at most")
    summary.append(
        "invalid plans: " + ", ".join(f"{label} {count}" for label, count in invalid.items())
    )
    print("; ".join(summary) + ".")
    print(
        "✗ = validate() rejects the plan; † = the planner split some VMs in proportion to the "
        "free room, outside the even-split model of the optimum and the bound "
        f"({', '.join(uneven) or 'none'}); a, b = lower bound, best even-split placement found."
    )
    for line in details:
        print(f"  ✗ {line}", file=sys.stderr)


if __name__ == "__main__":
    main()
