"""The balancing planner's score (balancing.planner.score): the CPU imbalance under
over-commit, and the note of a plan that scores worse because it fixes a policy breach."""

from __future__ import annotations

from dataclasses import replace

import pytest

from balancing.planner import Policy, VmDemand, plan, score
from tests.unit.planner_helpers import GIB, load, on_cell

pytestmark = pytest.mark.unit


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
