"""Shared helpers of the planner tests (tests/unit/test_planner_*.py): hosts from capabilities
fixtures or generated XML, VMs pinned to a cell, hand-made assignments and plans, and an
independent reading of the capacity model, simpler than validate()."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from balancing.planner import Assignment, Plan, Policy, VmDemand, current_assignment, score
from numaportal.virt.topology import HostTopology, parse_capabilities

CAPS = Path(__file__).resolve().parent.parent / "fixtures" / "capabilities"
GIB = 2**20  # KiB
MIB = 2**10  # KiB


def load(name: str) -> HostTopology:
    return parse_capabilities((CAPS / name).read_text())


def caps_xml(
    cells: list[tuple[int, int, int]], distances: dict[tuple[int, int], int] | None = None
) -> str:
    """Capabilities XML for cells of (memory KiB, cores, threads per core); a cell with 0 cores
    is memory-only. CPUs are numbered cell by cell, the threads of a core next to each other.
    Distances: 10 local, *distances[a, b]* (symmetric) or 20 between cells."""
    distances = distances or {}
    next_cpu = 0
    xml_cells = []
    for cid, (memory_kib, cores, threads) in enumerate(cells):
        cpus = []
        for core in range(cores):
            ids = list(range(next_cpu, next_cpu + threads))
            next_cpu += threads
            siblings = ",".join(map(str, ids))
            cpus.extend(
                f"<cpu id='{cpu}' socket_id='{cid}' die_id='0' core_id='{core}' "
                f"siblings='{siblings}'/>"
                for cpu in ids
            )
        dist = "".join(
            f"<sibling id='{other}' value='"
            f"{10 if other == cid else distances.get((min(cid, other), max(cid, other)), 20)}'/>"
            for other in range(len(cells))
        )
        xml_cells.append(
            f"<cell id='{cid}'><memory unit='KiB'>{memory_kib}</memory>"
            f"<distances>{dist}</distances><cpus num='{len(cpus)}'>{''.join(cpus)}</cpus></cell>"
        )
    return (
        "<capabilities><host><cpu><arch>x86_64</arch></cpu><topology>"
        f"<cells num='{len(cells)}'>{''.join(xml_cells)}</cells>"
        "</topology></host></capabilities>"
    )


def host(
    cells: list[tuple[int, int, int]], distances: dict[tuple[int, int], int] | None = None
) -> HostTopology:
    return parse_capabilities(caps_xml(cells, distances))


def with_distances(topology: HostTopology, matrix: list[list[int]]) -> HostTopology:
    cells = tuple(
        replace(cell, distances={other: matrix[i][other] for other in range(len(matrix))})
        for i, cell in enumerate(topology.cells)
    )
    return replace(topology, cells=cells)


def on_cell(topology: HostTopology, vm: VmDemand, cell: int, *, moved: bool = True) -> Assignment:
    """*vm* on the shared pool of *cell* (all its CPUs), memory there."""
    cpus = topology.cell(cell).cpu_ids
    return Assignment(
        name=vm.name,
        cells=frozenset({cell}),
        vcpupin=dict.fromkeys(range(vm.vcpus), cpus),
        emulatorpin=cpus,
        nodeset=frozenset({cell}),
        vcpus_by_cell={cell: vm.vcpus},
        memory_kib_by_cell={cell: vm.memory_kib},
        moved=moved,
    )


def pinned_on(topology: HostTopology, name: str, vcpus: int, gib: float, cell: int) -> VmDemand:
    """A VM well placed now: every vCPU pinned to *cell*, memory bound there."""
    cpus = topology.cell(cell).cpu_ids
    return VmDemand(
        name=name,
        vcpus=vcpus,
        memory_kib=int(gib * GIB),
        cells=frozenset({cell}),
        memory_cells=frozenset({cell}),
        vcpupin=dict.fromkeys(range(vcpus), cpus),
        emulatorpin=cpus,
    )


def manual_plan(topology: HostTopology, vms: list[VmDemand], after: dict[str, Assignment]):
    assignments = {vm.name: after.get(vm.name) or current_assignment(topology, vm) for vm in vms}
    now = score(topology, [current_assignment(topology, vm) for vm in vms])
    return Plan(assignments=assignments, before=now, after=now, policy=Policy())


def capacity_problems(topology: HostTopology, vms: list[VmDemand], result: Plan) -> list[str]:
    """An independent reading of the capacity model, simpler than validate(): every vCPU
    pinned, memory per cell, dedicated CPUs exclusive, shared vCPUs per pool."""
    policy = result.policy
    problems = []
    cap = {c.id: c.memory_kib - policy.memory_reserve_kib for c in topology.cells}
    memory: dict[int, int] = {}
    locked_only: dict[int, bool] = {}
    owned: dict[int, str] = {}
    for vm in vms:
        a = result.assignments[vm.name]
        if set(a.vcpupin) != set(range(vm.vcpus)) or not all(a.vcpupin.values()):
            problems.append(f"{vm.name}: not every vCPU pinned")
        for c, kib in a.memory_kib_by_cell.items():
            memory[c] = memory.get(c, 0) + kib
            locked_only[c] = locked_only.get(c, True) and vm.locked
        if vm.dedicated and not vm.locked:
            for cpus in a.vcpupin.values():
                if len(cpus) != 1:
                    problems.append(f"{vm.name}: dedicated vCPU on {len(cpus)} CPUs")
                for cpu in cpus:
                    group = topology.cpu(cpu).siblings if policy.whole_cores else {cpu}
                    for sib in group:
                        if owned.setdefault(sib, vm.name) != vm.name:
                            problems.append(f"CPU {sib}: {owned[sib]} and {vm.name}")
    for c, kib in memory.items():
        if kib > cap[c] and not locked_only[c]:
            problems.append(f"cell {c}: {kib} KiB > {cap[c]}")
    usable = {
        c.id: c.cpu_ids
        - policy.reserved
        - (policy.housekeeping if policy.emulator == "housekeeping" else frozenset())
        for c in topology.cells
    }
    shared: dict[int, int] = {}
    for vm in vms:
        a = result.assignments[vm.name]
        if vm.locked:
            continue
        if not vm.dedicated:
            for c, n in a.vcpus_by_cell.items():
                shared[c] = shared.get(c, 0) + n
        anywhere = set().union(*usable.values())
        for cpus in a.vcpupin.values():
            if not vm.dedicated and cpus & set(owned):
                problems.append(f"{vm.name}: on dedicated CPUs")
            if not cpus <= anywhere:
                problems.append(f"{vm.name}: pinned outside usable CPUs")
        allowed = anywhere if policy.emulator == "cell" else policy.housekeeping
        if a.emulatorpin & set(owned) or not a.emulatorpin <= allowed:
            problems.append(f"{vm.name}: emulator on {sorted(a.emulatorpin)}")
    locked_shared = dict.fromkeys(usable, 0)
    for vm in vms:
        a = result.assignments[vm.name]
        if vm.locked and not vm.dedicated:
            for c, n in a.vcpus_by_cell.items():
                locked_shared[c] = locked_shared.get(c, 0) + n
    for c, n in shared.items():
        pool = len(usable[c] - set(owned))
        if n + locked_shared.get(c, 0) > math.floor(policy.cpu_overcommit * pool + 1e-9):
            problems.append(f"cell {c}: {n} shared vCPUs on {pool} CPUs")
    return problems
