"""The balancing planner's apply order (balancing.planner.apply_order): the VM that makes
room moves first, a true cycle is refused naming the VMs, a real plan's order is safe."""

from __future__ import annotations

import pytest

from balancing.planner import (
    Plan,
    PlanError,
    VmDemand,
    apply_order,
    current_assignment,
    plan,
    validate,
)
from numaportal.virt.topology import HostTopology
from tests.unit.planner_helpers import GIB, MIB, load, manual_plan, on_cell, pinned_on

pytestmark = pytest.mark.unit


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
