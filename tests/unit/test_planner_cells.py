"""The balancing planner (balancing.planner): one cell per VM where possible, well placed
VMs stay, spread and pack, the fewest closest cells for VMs larger than a cell (memory-only
cells take memory, never vCPUs), and 500 VMs on 10 cells planned valid and quickly."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from balancing.planner import Policy, VmDemand, apply_order, plan, validate
from tests.unit.planner_helpers import (
    GIB,
    MIB,
    capacity_problems,
    host,
    load,
    pinned_on,
    with_distances,
)

pytestmark = pytest.mark.unit


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
