"""The balancing planner (balancing.planner) on any host and any VMs (hypothesis): a
returned plan passes validate() and an independent capacity check, or the request is
refused as infeasible; plans are deterministic and an apply order exists or is refused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancing.planner import (
    InfeasibleError,
    PlanError,
    Policy,
    VmDemand,
    apply_order,
    current_assignment,
    plan,
    validate,
)
from numaportal.virt.topology import parse_capabilities
from tests.unit.planner_helpers import GIB, MIB, capacity_problems, caps_xml

pytestmark = pytest.mark.unit


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
