"""The optimum of the planner benchmark: the integer program (PuLP + its bundled CBC) over
evenly split candidate cell sets, and a lower bound of the remote term without it."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from balancing.planner import Assignment, VmDemand, current_assignment, score
from bench.planner_bench.capacity import (
    GIB,
    Capacity,
    Choice,
    Load,
    locked_assignments,
    materialise,
)
from numaportal.virt.topology import HostTopology


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
    import pulp  # a dev dependency: imported only when the optimum is asked for (--no-ip skips it)

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
