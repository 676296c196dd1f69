"""The balancing planner (balancing.planner): locked VMs stay untouched and are counted
first, and validate() reports each kind of violation of the capacity model."""

from __future__ import annotations

from dataclasses import replace

import pytest

from balancing.planner import Assignment, Policy, VmDemand, current_assignment, plan, validate
from tests.unit.planner_helpers import GIB, load, manual_plan, on_cell, pinned_on

pytestmark = pytest.mark.unit


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
