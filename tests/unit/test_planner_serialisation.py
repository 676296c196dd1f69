"""The balancing planner (balancing.planner): plans, assignments, policies and VM demands
round-trip through JSON, and the demand digest changes whenever a VM's demand does."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from balancing.planner import Assignment, Policy, VmDemand, current_assignment, demand_digest, plan
from tests.unit.planner_helpers import GIB, MIB, load, pinned_on

pytestmark = pytest.mark.unit


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
