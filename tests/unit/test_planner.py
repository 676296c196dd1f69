"""The balancing planner (balancing.planner): plans that obey the capacity model on any host, one
cell per VM where possible, whole cores for dedicated VMs, the fewest closest cells for VMs
larger than a cell, clear refusals, safe apply orders, JSON round trips."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancing.planner import (
    Assignment,
    InfeasibleError,
    Plan,
    PlanError,
    Policy,
    VmDemand,
    apply_order,
    current_assignment,
    demand_digest,
    plan,
    score,
    validate,
)
from numaportal.virt.topology import HostTopology, parse_capabilities

pytestmark = pytest.mark.unit

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


# --- (a) any host, any VMs: a returned plan is valid ------------------------------------------


@st.composite
def hosts(draw):
    """1-10 cells, some memory-only (never cell 0), 1-8 cores of 1-2 threads, random
    symmetric distances."""
    n = draw(st.integers(1, 10))
    threads = draw(st.sampled_from([1, 2]))
    cells = []
    for i in range(n):
        memory_only = i > 0 and draw(st.integers(0, 4)) == 0
        cores = 0 if memory_only else draw(st.integers(1, 8))
        memory = draw(st.integers(1, 32)) * GIB // 2
        cells.append((memory, cores, threads))
    distances = {}
    for a in range(n):
        for b in range(a + 1, n):
            distances[a, b] = draw(st.integers(11, 40))
    return parse_capabilities(caps_xml(cells, distances))


@st.composite
def scenarios(draw):
    """A host, a policy and VMs (locked / dedicated, placed now at random: unpinned, on one or
    two cells, or pinned CPU by CPU) whose total demand is *load* x the host's capacity, so
    that most requests fit and some do not."""
    topology = draw(hosts())
    cpu_cells = [c.id for c in topology.cells if c.cpus]
    all_cpus = sorted(topology.cpu_ids)
    biggest = max(len(c.cpus) for c in topology.cells)
    # VM memory in steps of 1/32 of the largest cell (so up to 3/4 of it)
    unit = max(c.memory_kib for c in topology.cells) // 32 // MIB * MIB
    emulator = draw(st.sampled_from(["cell", "housekeeping"]))
    housekeeping = frozenset(draw(st.lists(st.sampled_from(all_cpus), min_size=1, max_size=2)))
    policy = Policy(
        strategy=draw(st.sampled_from(["spread", "pack"])),
        cpu_overcommit=draw(st.sampled_from([1.0, 1.5, 2.0, 4.0, 8.0])),
        emulator=emulator,
        housekeeping=housekeeping if emulator == "housekeeping" else frozenset(),
        reserved=frozenset(draw(st.lists(st.sampled_from(all_cpus), max_size=2))),
        whole_cores=draw(st.booleans()),
        memory_reserve_kib=draw(st.sampled_from([0, 64 * MIB, 256 * MIB])),
        move_weight=draw(st.sampled_from([0.0, 0.1, 1.0])),
    )
    load = draw(st.sampled_from([0.3, 0.6, 0.8, 0.9, 1.0, 1.3]))
    memory_room = load * topology.total_memory_kib
    cpu_room = load * policy.cpu_overcommit * len(all_cpus)
    vms = []
    for i in range(draw(st.integers(0, 24))):
        vcpus = draw(st.integers(1, min(8, biggest + 2)))
        memory = draw(st.one_of(st.integers(1, 6), st.integers(1, 24))) * unit
        dedicated = draw(st.integers(0, 5)) == 0
        locked = draw(st.integers(0, 5)) == 0
        if dedicated:
            vcpus = min(vcpus, 4)
        memory_room -= memory
        cpu_room -= vcpus * (policy.cpu_overcommit * 2 if dedicated else 1)
        if memory_room < 0 or cpu_room < 0:
            break
        how = draw(st.sampled_from(["unpinned", "one cell", "two cells", "cpus"]))
        cells: frozenset[int] = frozenset()
        pins: dict[int, frozenset[int]] = {}
        if how == "one cell":
            cells = frozenset({draw(st.sampled_from(cpu_cells))})
        elif how == "two cells":
            cells = frozenset(draw(st.lists(st.sampled_from(cpu_cells), min_size=1, max_size=2)))
        if cells:
            pool = frozenset().union(*(topology.cell(c).cpu_ids for c in cells))
            pins = dict.fromkeys(range(vcpus), pool)
        if how == "cpus":
            chosen = draw(st.lists(st.sampled_from(all_cpus), min_size=vcpus, max_size=vcpus))
            pins = {v: frozenset({cpu}) for v, cpu in enumerate(chosen)}
            cells = topology.cells_of(chosen)
        vms.append(
            VmDemand(
                name=f"vm{i}",
                vcpus=vcpus,
                memory_kib=memory,
                cells=cells,
                memory_cells=cells if draw(st.booleans()) else frozenset(),
                vcpupin=pins,
                emulatorpin=frozenset().union(*pins.values()) if pins else None,
                locked=locked,
                dedicated=dedicated,
            )
        )
    return topology, vms, policy


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_plan_passes_validate_or_the_request_is_infeasible(scenario) -> None:
    topology, vms, policy = scenario
    try:
        result = plan(topology, vms, policy)
    except InfeasibleError as exc:
        assert str(exc).strip()
        return
    assert validate(topology, vms, result) == []
    assert capacity_problems(topology, vms, result) == []
    assert set(result.assignments) == {vm.name for vm in vms}
    for vm in vms:
        a = result.assignments[vm.name]
        assert set(a.vcpupin) == set(range(vm.vcpus))
        assert all(a.vcpupin.values()), vm.name
        if vm.locked:
            assert a == current_assignment(topology, vm)
            assert not a.moved
        else:
            assert a.mode == "strict"
            assert a.nodeset
            # vCPUs never on a memory-only cell
            assert all(topology.cell(c).cpus for c in a.vcpus_by_cell)
    # deterministic, and an apply order exists or is refused with the VMs named
    assert plan(topology, vms, policy).as_dict() == result.as_dict()
    try:
        order = apply_order(topology, vms, result)
    except PlanError as exc:
        assert str(exc).startswith("no safe order")
    else:
        assert sorted(order) == result.moved


# --- (b) one cell per VM on the seed-shaped host ----------------------------------------------


def test_seed_host_vms_of_2_4_6_8_vcpus_each_land_on_one_cell() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    cell1 = frozenset([*range(6, 12), *range(18, 24)])
    assert topology.cell(1).cpu_ids == cell1
    # unpinned now: floating over both cells
    vms = [VmDemand(f"vm{n}", n, n * 2 * GIB) for n in (2, 4, 6, 8)]
    result = plan(topology, vms)
    assert validate(topology, vms, result) == []
    for vm in vms:
        a = result.assignments[vm.name]
        assert len(a.cells) == 1, (vm.name, a.cells)
        (cell,) = a.cells
        assert a.vcpus_by_cell == {cell: vm.vcpus}
        assert a.memory_kib_by_cell == {cell: vm.memory_kib}
        assert a.nodeset == a.cells and a.mode == "strict"
        for cpus in [*a.vcpupin.values(), a.emulatorpin]:
            assert cpus <= topology.cell(cell).cpu_ids
    assert result.after.split == 0 and result.after.remote == 0
    assert result.before.total > result.after.total
    assert result.improvement_pct > 0
    # spread: 10 vCPUs on each cell
    loads = sorted(
        sum(a.vcpus_by_cell.get(c, 0) for a in result.assignments.values()) for c in (0, 1)
    )
    assert loads == [10, 10]
    assert result.notes == ()


def test_well_placed_vms_stay_and_a_split_vm_is_brought_to_one_cell() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    vms = [
        pinned_on(topology, "a", 4, 8, 0),
        pinned_on(topology, "b", 4, 8, 1),
        pinned_on(topology, "c", 2, 4, 0),
        pinned_on(topology, "d", 2, 4, 1),
    ]
    result = plan(topology, vms)
    assert result.moved == []
    assert not any(a.moved for a in result.assignments.values())
    assert result.after.moves == 0
    assert apply_order(topology, vms, result) == []
    # one VM split over both cells now: only it moves
    both = frozenset({0, 1})
    split = VmDemand("split", 2, 2 * GIB, cells=both, memory_cells=both)
    result = plan(topology, [*vms, split])
    assert result.moved == ["split"]
    assert len(result.assignments["split"].cells) == 1
    assert result.after.total < result.before.total
    # a larger one unbalances the cells enough that moving "c" too pays off by the score...
    split = replace(split, vcpus=4, memory_kib=4 * GIB)
    result = plan(topology, [*vms, split])
    assert result.moved == ["c", "split"]
    assert result.after.cpu_imbalance == 0
    # ...unless moves weigh more
    result = plan(topology, [*vms, split], Policy(move_weight=1.0))
    assert result.moved == ["split"]


def test_pack_fills_one_cell_before_the_next() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    vms = [VmDemand(f"vm{i}", 2, 2 * GIB) for i in range(4)]
    packed = plan(topology, vms, Policy(strategy="pack"))
    spread = plan(topology, vms, Policy(strategy="spread"))
    cells = {a.cells for a in packed.assignments.values()}
    assert len(cells) == 1
    assert len({a.cells for a in spread.assignments.values()}) == 2


# --- (c) dedicated VMs get whole cores --------------------------------------------------------


def test_dedicated_vms_get_whole_cores_on_the_amd_host() -> None:
    topology = load("x86_64-2node-64cpu-amd-smt.xml")
    assert topology.cpu(5).siblings == {5, 37}
    vms = [
        VmDemand("db1", 4, 128 * MIB, dedicated=True),
        VmDemand("db2", 6, 128 * MIB, dedicated=True),
        VmDemand("odd", 3, 128 * MIB, dedicated=True),
        VmDemand("big", 8, 128 * MIB, dedicated=True),
        VmDemand("web1", 8, 128 * MIB),
        VmDemand("web2", 16, 256 * MIB),
    ]
    result = plan(topology, vms, Policy(whole_cores=True))
    assert validate(topology, vms, result) == []
    owner: dict[int, str] = {}
    for vm in vms:
        if not vm.dedicated:
            continue
        a = result.assignments[vm.name]
        pins = [a.vcpupin[v] for v in range(vm.vcpus)]
        assert all(len(p) == 1 for p in pins)
        cpus = [next(iter(p)) for p in pins]
        assert len(set(cpus)) == vm.vcpus
        # vCPU 2k and 2k+1 on the two threads of one core (n and n+32)
        for k in range(0, vm.vcpus - 1, 2):
            assert {cpus[k], cpus[k + 1]} == topology.cpu(cpus[k]).siblings
            assert abs(cpus[k] - cpus[k + 1]) == 32
        for cpu in cpus:
            for sibling in topology.cpu(cpu).siblings:
                assert owner.setdefault(sibling, vm.name) == vm.name
        assert math.ceil(vm.vcpus / 2) * 2 == sum(1 for o in owner.values() if o == vm.name)
    # the spare sibling of "odd" stays idle: no shared VM and no emulator on it
    for vm in vms:
        a = result.assignments[vm.name]
        assert not a.emulatorpin & set(owner), vm.name
        if not vm.dedicated:
            for cpus in a.vcpupin.values():
                assert not cpus & set(owner)


def test_a_dedicated_vm_on_its_own_cores_stays_exactly_there() -> None:
    topology = load("x86_64-2node-64cpu-amd-smt.xml")
    # cores (3, 35) and (4, 36), threads in any order; the shared VM on the rest of cell 0
    pins = {0: frozenset({35}), 1: frozenset({3}), 2: frozenset({36}), 3: frozenset({4})}
    pool = topology.cell(0).cpu_ids - {3, 35, 4, 36}
    cell0 = frozenset({0})
    ded = VmDemand(
        "ded", 4, 128 * MIB, cell0, cell0, vcpupin=pins, emulatorpin=pool, dedicated=True
    )
    web = VmDemand("web", 4, 128 * MIB, cell0, cell0, dict.fromkeys(range(4), pool), pool)
    result = plan(topology, [ded, web])
    assert validate(topology, [ded, web], result) == []
    assert result.moved == []
    assert result.assignments["ded"].vcpupin == pins
    # the same VM on two half-used cores is re-pinned onto whole cores of its own
    split_cores = {0: frozenset({3}), 1: frozenset({4}), 2: frozenset({5}), 3: frozenset({6})}
    ded = replace(ded, vcpupin=split_cores)
    result = plan(topology, [ded, web])
    assert "ded" in result.moved
    cpus = sorted(next(iter(p)) for p in result.assignments["ded"].vcpupin.values())
    assert len(cpus) == 4 and {cpu % 32 for cpu in cpus} == {cpus[0] % 32, cpus[1] % 32}


def test_dedicated_without_whole_cores_takes_single_cpus() -> None:
    topology = load("x86_64-2node-64cpu-amd-smt.xml")
    vms = [VmDemand("a", 3, 128 * MIB, dedicated=True), VmDemand("b", 3, 128 * MIB, dedicated=True)]
    result = plan(topology, vms, Policy(whole_cores=False))
    assert validate(topology, vms, result) == []
    used = [
        cpu for vm in vms for cpus in result.assignments[vm.name].vcpupin.values() for cpu in cpus
    ]
    assert len(used) == len(set(used)) == 6


# --- (d) VMs larger than any cell -------------------------------------------------------------


def test_vm_larger_than_any_cell_goes_to_the_fewest_closest_cells_with_a_note() -> None:
    # 4 cells x 4 CPUs (1, 2, 3, 4 GiB); cells 0 and 1 closest, 2 and 3 next.
    topology = with_distances(
        load("x86_64-4node-basic.xml"),
        [
            [10, 12, 20, 32],
            [12, 10, 32, 20],
            [20, 32, 10, 16],
            [32, 20, 16, 10],
        ],
    )
    wide = VmDemand("wide", 6, 512 * MIB)  # more vCPUs than any cell has CPUs
    result = plan(topology, [wide])
    a = result.assignments["wide"]
    assert a.cells == {0, 1}  # two cells, the closest pair (not the roomiest)
    assert a.vcpus_by_cell == {0: 3, 1: 3}
    assert validate(topology, [wide], result) == []
    assert any("wide" in note and "larger than any cell" in note for note in result.notes)
    # larger than any cell in memory: 5 GiB fits no cell, 2.5 + 2.5 only cells 2 and 3
    fat = VmDemand("fat", 2, 5 * GIB)
    result = plan(topology, [fat])
    assert result.assignments["fat"].cells == {2, 3}
    assert result.assignments["fat"].memory_kib_by_cell == {2: 5 * GIB // 2, 3: 5 * GIB // 2}
    assert any("fat" in note and "larger than any cell" in note for note in result.notes)
    # 9 GiB: three cells at least (the 4 GiB cell cannot take a half)
    huge = VmDemand("huge", 2, 8 * GIB)
    a = plan(topology, [huge]).assignments["huge"]
    assert len(a.cells) == 3
    assert sum(a.memory_kib_by_cell.values()) == 8 * GIB


def test_memory_only_cell_takes_memory_of_a_spread_vm_never_vcpus() -> None:
    topology = load("x86_64-2node-memory-only-cell.xml")
    assert not topology.cell(1).cpus
    vms = [VmDemand("big", 4, 24 * GIB), VmDemand("small", 2, 2 * GIB)]
    result = plan(topology, vms)
    assert validate(topology, vms, result) == []
    big = result.assignments["big"]
    assert big.cells == {0, 1}
    assert big.vcpus_by_cell == {0: 4}
    assert set(big.memory_kib_by_cell) == {0, 1}
    assert all(cpus <= topology.cell(0).cpu_ids for cpus in big.vcpupin.values())
    assert result.assignments["small"].cells == {0}
    assert any("big" in note for note in result.notes)


def test_ten_cells_with_memory_only_ones() -> None:
    cells = [(8 * GIB, 4, 2)] * 8 + [(32 * GIB, 0, 1)] * 2
    topology = host(cells, {(0, 1): 11, (0, 8): 17, (1, 9): 17})
    vms = [VmDemand(f"vm{i}", 2 + i % 5, (1 + i % 2) * GIB) for i in range(30)]
    vms.append(VmDemand("giant", 8, 20 * GIB))
    result = plan(topology, vms, Policy(cpu_overcommit=4.0))
    assert validate(topology, vms, result) == []
    assert capacity_problems(topology, vms, result) == []
    giant = result.assignments["giant"]
    assert len(giant.cells) == 2
    for name, a in result.assignments.items():
        assert all(c < 8 for c in a.vcpus_by_cell), name
        if name != "giant":
            assert len(a.cells) == 1, name


# --- (e) infeasible requests ------------------------------------------------------------------


def test_every_cpu_reserved_is_infeasible() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    vms = [VmDemand("a", 2, GIB)]
    with pytest.raises(InfeasibleError, match=r"no usable CPU.*reserved: 0-23.*\ba\b"):
        plan(topology, vms, Policy(reserved=frozenset(range(24))))


def test_more_dedicated_cores_than_exist_is_infeasible() -> None:
    topology = load("x86_64-2node-64cpu-amd-smt.xml")  # 32 cores
    vms = [VmDemand(f"ded{i}", 16, 64 * MIB, dedicated=True) for i in range(5)]  # 40 cores
    with pytest.raises(InfeasibleError, match=r"dedicated VMs need 40 whole cores.*ded0"):
        plan(topology, vms)
    # 32 cores fit the count, but each cell keeps a CPU for emulator threads
    vms = [VmDemand(f"ded{i}", 32, 64 * MIB, dedicated=True) for i in range(2)]
    with pytest.raises(InfeasibleError, match=r"need 32 whole cores.*only 30.*emulator"):
        plan(topology, vms)
    # with emulator threads on a housekeeping core (CPUs 0 and 32), 31 cores can be dedicated
    housekeeping = Policy(emulator="housekeeping", housekeeping=frozenset({0, 32}))
    vms = [VmDemand(f"ded{i}", 30, 64 * MIB, dedicated=True) for i in range(2)]
    result = plan(topology, vms, housekeeping)
    assert validate(topology, vms, result) == []
    assert all(a.emulatorpin == {0, 32} for a in result.assignments.values())
    # 30 cores: 10 + 10 on the cells, the third VM split 5 + 5
    vms = [VmDemand(f"ded{i}", 20, 64 * MIB, dedicated=True) for i in range(3)]
    result = plan(topology, vms)
    assert validate(topology, vms, result) == []
    assert sorted(len(a.cells) for a in result.assignments.values()) == [1, 1, 2]
    # a locked VM floating over every CPU leaves nothing to dedicate, and is named
    floating = VmDemand("floater", 2, 64 * MIB, locked=True)
    with pytest.raises(InfeasibleError, match=r"only 0 can be dedicated.*floater"):
        plan(topology, [floating, VmDemand("ded", 2, 64 * MIB, dedicated=True)])


def test_memory_over_capacity_is_infeasible_and_locked_vms_count() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")  # 2 x 32 GiB
    with pytest.raises(InfeasibleError, match=r"need 70\.0 GiB.*offer 64\.0 GiB"):
        plan(topology, [VmDemand(f"vm{i}", 2, 14 * GIB) for i in range(5)])
    locked = pinned_on(topology, "pinned", 2, 30, 0)
    locked = replace(locked, locked=True)
    with pytest.raises(InfeasibleError, match="locked"):
        plan(topology, [locked, VmDemand("a", 2, 20 * GIB), VmDemand("b", 2, 20 * GIB)])


def test_malformed_policy_is_a_plan_error() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    with pytest.raises(PlanError, match="over-commit"):
        plan(topology, [VmDemand("a", 1, GIB)], Policy(cpu_overcommit=0))
    with pytest.raises(InfeasibleError, match="housekeeping"):
        plan(topology, [VmDemand("a", 1, GIB)], Policy(emulator="housekeeping"))


# --- locked VMs and validate() ----------------------------------------------------------------


def test_locked_vms_are_untouched_and_counted_first() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    locked = replace(pinned_on(topology, "locked", 8, 28, 0), locked=True)
    # sits on two cells now, locked: stays so
    both = frozenset({0, 1})
    split = VmDemand("split", 2, 2 * GIB, cells=both, memory_cells=both, locked=True)
    others = [VmDemand(f"vm{i}", 2, 4 * GIB) for i in range(4)]
    vms = [locked, split, *others]
    result = plan(topology, vms)
    assert validate(topology, vms, result) == []
    assert result.assignments["locked"] == current_assignment(topology, locked)
    assert result.assignments["split"] == current_assignment(topology, split)
    assert "locked" not in result.moved and "split" not in result.moved
    # cell 0 has 32 GiB - 28 - 1 (split's half) = 3 GiB left: the 4 GiB VMs all go to cell 1
    for vm in others:
        assert result.assignments[vm.name].cells == {1}


def test_validate_reports_each_violation() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    vms = [
        VmDemand("a", 2, 20 * GIB),
        VmDemand("b", 2, 20 * GIB),
        VmDemand("ded", 2, GIB, dedicated=True),
        replace(pinned_on(topology, "lock", 1, 1, 1), locked=True),
    ]
    good = plan(topology, vms)
    assert validate(topology, vms, good) == []

    def broken(**changes: Assignment) -> list[str]:
        return validate(topology, vms, replace(good, assignments={**good.assignments, **changes}))

    a = good.assignments["a"]
    other = 1 - next(iter(a.cells))
    assert any(
        "no assignment" in p
        for p in validate(
            topology,
            vms,
            replace(good, assignments={k: v for k, v in good.assignments.items() if k != "a"}),
        )
    )
    assert any("without a pin" in p for p in broken(a=replace(a, vcpupin={0: a.vcpupin[0]})))
    assert any(
        "not on the host" in p
        for p in broken(a=replace(a, vcpupin={**a.vcpupin, 1: frozenset({99})}))
    )
    # both 20 GiB VMs on one 32 GiB cell
    b = good.assignments["b"]
    moved_b = on_cell(topology, vms[1], next(iter(a.cells)))
    assert next(iter(b.cells)) != next(iter(a.cells))
    assert any("MiB of VM memory" in p for p in broken(b=moved_b))
    # a pin outside its cells
    stray = replace(a, vcpupin={0: topology.cell(other).cpu_ids, 1: a.vcpupin[1]})
    assert any("outside its cells" in p for p in broken(a=stray))
    # a shared VM on the dedicated VM's CPUs
    ded_cpus = set().union(*good.assignments["ded"].vcpupin.values())
    ded_cell = topology.node_of(next(iter(ded_cpus)))
    on_ded = on_cell(topology, vms[0], ded_cell)
    assert any("dedicated to ded" in p for p in broken(a=on_ded))
    # the locked VM changed
    lock = good.assignments["lock"]
    assert any(
        "lock is locked" in p for p in broken(lock=replace(lock, vcpupin={0: frozenset({7})}))
    )
    # reserved CPUs
    reserved = replace(good, policy=Policy(reserved=frozenset(range(24))))
    assert any("reserved" in p for p in validate(topology, vms, reserved))
    # over-commit: 12 + 12 shared vCPUs on one cell of 12 CPUs
    many = [VmDemand("x", 12, GIB), VmDemand("y", 12, GIB)]
    crowded = manual_plan(topology, many, {vm.name: on_cell(topology, vm, 0) for vm in many})
    assert any("shared vCPUs" in p for p in validate(topology, many, crowded))


# --- (f) apply order --------------------------------------------------------------------------


def steps_are_safe(topology: HostTopology, vms: list[VmDemand], result: Plan, order: list[str]):
    cap = {c.id: c.memory_kib - result.policy.memory_reserve_kib for c in topology.cells}
    state = {vm.name: current_assignment(topology, vm) for vm in vms}

    def used() -> dict[int, int]:
        out: dict[int, int] = {}
        for a in state.values():
            for c, kib in a.memory_kib_by_cell.items():
                out[c] = out.get(c, 0) + kib
        return out

    start = used()
    for name in order:
        state[name] = result.assignments[name]
        for c, kib in used().items():
            assert kib <= max(cap[c], start.get(c, 0)), (name, c)


def test_apply_order_moves_the_vm_that_makes_room_first() -> None:
    topology = load("x86_64-4node-basic.xml")  # cells of 1, 2, 3, 4 GiB
    a = VmDemand("a", 1, 1536 * MIB, cells=frozenset({1}), memory_cells=frozenset({1}))
    b = VmDemand("b", 1, 2 * GIB, cells=frozenset({2}), memory_cells=frozenset({2}))
    vms = [a, b]
    # a: cell 1 -> 2, b: cell 2 -> 3; a fits cell 2 only once b has left it
    result = manual_plan(
        topology, vms, {"a": on_cell(topology, a, 2), "b": on_cell(topology, b, 3)}
    )
    assert validate(topology, vms, result) == []
    order = apply_order(topology, vms, result)
    assert order == ["b", "a"]
    steps_are_safe(topology, vms, result, order)
    with pytest.raises(AssertionError):
        steps_are_safe(topology, vms, result, ["a", "b"])


def test_apply_order_refuses_a_true_cycle_naming_the_vms() -> None:
    topology = load("x86_64-4node-basic.xml")
    a = VmDemand("a", 1, 1536 * MIB, cells=frozenset({1}), memory_cells=frozenset({1}))
    b = VmDemand("b", 1, 1843 * MIB, cells=frozenset({2}), memory_cells=frozenset({2}))
    c = VmDemand("c", 1, 512 * MIB, cells=frozenset({3}), memory_cells=frozenset({3}))
    vms = [a, b, c]
    # swap a and b: each fits the other's cell only once the other has left it
    result = manual_plan(
        topology,
        vms,
        {"a": on_cell(topology, a, 2), "b": on_cell(topology, b, 1), "c": on_cell(topology, c, 0)},
    )
    assert validate(topology, vms, result) == []
    with pytest.raises(PlanError, match=r"no safe order: VMs (a, b|b, a) wait for each other"):
        apply_order(topology, vms, result)


def test_apply_order_of_a_real_plan_is_safe() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    everywhere = frozenset({0, 1})
    vms = [
        pinned_on(topology, "a", 4, 14, 0),
        pinned_on(topology, "b", 4, 14, 0),
        VmDemand("c", 4, 12 * GIB, cells=everywhere),
        pinned_on(topology, "d", 2, 2, 1),
    ]
    result = plan(topology, vms)
    assert validate(topology, vms, result) == []
    order = apply_order(topology, vms, result)
    assert sorted(order) == result.moved
    steps_are_safe(topology, vms, result, order)


# --- (g) JSON -------------------------------------------------------------------------------


def test_json_round_trips() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    vms = [
        VmDemand("a", 4, 4 * GIB),
        VmDemand("ded", 4, 2 * GIB, dedicated=True),
        replace(pinned_on(topology, "lock", 2, 1, 1), locked=True),
        VmDemand("wide", 30, 8 * GIB),
    ]
    policy = Policy(
        strategy="pack",
        cpu_overcommit=2.5,
        emulator="housekeeping",
        housekeeping=frozenset({0, 12}),
        reserved=frozenset({1, 13}),
        whole_cores=False,
        memory_reserve_kib=512 * MIB,
        move_weight=0.25,
    )
    result = plan(topology, vms, policy)
    data = json.loads(json.dumps(result.as_dict()))
    assert data == result.as_dict()
    assert set(data) >= {"assignments", "before", "after", "notes", "moved", "improvement_pct"}
    assert data["moved"] == result.moved
    assert data["improvement_pct"] == round(result.improvement_pct, 2)
    assert data["after"] == result.after.as_dict()
    for name, a in result.assignments.items():
        stored = json.loads(json.dumps(a.as_dict()))
        assert all(isinstance(k, str) for k in stored["vcpupin"])
        assert all(isinstance(k, str) for k in stored["memory_kib_by_cell"])
        assert Assignment.from_dict(stored) == a
        assert data["assignments"][name] == stored
    assert data["assignments"]["a"]["emulatorpin"] == "0,12"
    pool_text = data["assignments"]["a"]["vcpupin"]["0"]
    assert pool_text in ("2-11,14-23", "6-11,18-23", "2-5,14-17")
    stored_policy = json.loads(json.dumps(policy.as_dict()))
    assert stored_policy["reserved"] == "1,13"
    assert Policy.from_dict(stored_policy) == policy
    assert Policy.from_dict(json.loads(json.dumps(Policy().as_dict()))) == Policy()
    for vm in vms:
        assert VmDemand.from_dict(json.loads(json.dumps(vm.as_dict()))) == vm
    assert vms[2].as_dict()["vcpupin"] == {"0": "6-11,18-23", "1": "6-11,18-23"}
    before = current_assignment(topology, vms[0]).as_dict()
    assert before["cells"] == "0-1" and before["vcpupin"]["0"] == "0-23"


# --- (h) demand digest ----------------------------------------------------------------------


def test_demand_digest_changes_when_a_vm_changes() -> None:
    vms = [VmDemand("a", 2, GIB), VmDemand("b", 4, 2 * GIB, cells=frozenset({1}))]
    digest = demand_digest(vms)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert demand_digest(list(reversed(vms))) == digest
    assert (
        demand_digest([VmDemand("a", 2, GIB), VmDemand("b", 4, 2 * GIB, cells=frozenset({1}))])
        == digest
    )
    changed = [
        [replace(vms[0], memory_kib=2 * GIB), vms[1]],
        [replace(vms[0], vcpus=3), vms[1]],
        [replace(vms[0], locked=True), vms[1]],
        [replace(vms[0], dedicated=True), vms[1]],
        [replace(vms[0], vcpupin={0: frozenset({3})}), vms[1]],
        [vms[0], replace(vms[1], cells=frozenset({0}))],
        [vms[0]],
        [*vms, VmDemand("c", 1, GIB)],
    ]
    digests = {demand_digest(other) for other in changed}
    assert digest not in digests
    assert len(digests) == len(changed)


# --- scale ----------------------------------------------------------------------------------


def test_500_vms_on_10_cells_plan_is_valid_and_quick() -> None:
    cells = [(512 * GIB, 16, 2)] * 10  # memory 84 % full, shared pools 80 %
    topology = host(cells, {(c, c + 1): 11 for c in range(0, 10, 2)})
    sizes = [(1, 1), (2, 2), (2, 4), (4, 4), (4, 8), (8, 16), (2, 8), (16, 32), (1, 2)]
    vms = []
    for i in range(500):
        vcpus, gib = sizes[i % len(sizes)]
        cell = (i * 7) % 10
        vm = (
            pinned_on(topology, f"vm{i:03d}", vcpus, gib, cell)
            if i % 3
            else VmDemand(f"vm{i:03d}", vcpus, gib * GIB)
        )
        # locked VMs pinned ones (a locked unpinned VM floats over every CPU: no dedication)
        vms.append(replace(vm, dedicated=i % 50 == 1, locked=i % 97 == 1 and i % 3 != 0))
    policy = Policy(cpu_overcommit=10.0, reserved=frozenset({0, 1}))
    start = time.perf_counter()
    result = plan(topology, vms, policy)
    seconds = time.perf_counter() - start
    print(f"plan() on 500 VMs x 10 cells: {seconds * 1000:.0f} ms")
    assert validate(topology, vms, result) == []
    assert result.after.split == 0
    assert seconds < 5  # < 1 s on an idle 2-CPU machine; loose for loaded CI


# --- score ------------------------------------------------------------------------------------


def test_cpu_imbalance_stays_a_fraction_under_over_commit() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")  # 12 CPUs per cell
    vms = [VmDemand("a", 36, GIB), VmDemand("b", 12, GIB)]
    placed = [on_cell(topology, vms[0], 0), on_cell(topology, vms[1], 1)]
    result = score(topology, placed)
    # 3 vCPUs per CPU against 1: relative to the most loaded cell, 1 - 1/3
    assert result.cpu_imbalance == pytest.approx(2 / 3)
    # without over-commit the plain fractions: 12/12 against 6/12
    plain = [
        on_cell(topology, replace(vms[0], vcpus=12), 0),
        on_cell(topology, replace(vms[1], vcpus=6), 1),
    ]
    assert score(topology, plain).cpu_imbalance == pytest.approx(0.5)


def test_a_plan_that_fixes_a_policy_breach_says_why_it_scores_worse() -> None:
    """Like the lab with CPU 0 reserved: the VMs float over a reserved CPU now. The plan moves
    them although every score term but moves is already 0, and its note says why."""
    topology = load("x86_64-2node-24cpu-ht.xml")
    vms = [VmDemand(name=f"v{i}", vcpus=2, memory_kib=GIB, cells=frozenset({0})) for i in range(2)]
    result = plan(topology, vms, Policy(reserved=frozenset({0})))
    assert result.moved == ["v0", "v1"]
    assert result.after.total > result.before.total
    assert len(result.notes) == 1
    assert result.notes[0].startswith("the current placement breaks the policy")
    assert "reserved or housekeeping CPU(s) 0" in result.notes[0]
    # Without the reserve nothing is broken and nothing is said.
    assert not plan(topology, vms, Policy()).notes
