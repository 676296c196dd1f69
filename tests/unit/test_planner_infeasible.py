"""The balancing planner (balancing.planner): clear refusals of infeasible requests (no
usable CPU, too many dedicated cores, too much memory with locked VMs counted) and of
malformed policies."""

from __future__ import annotations

from dataclasses import replace

import pytest

from balancing.planner import InfeasibleError, PlanError, Policy, VmDemand, plan, validate
from tests.unit.planner_helpers import GIB, MIB, load, pinned_on

pytestmark = pytest.mark.unit


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
