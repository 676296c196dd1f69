"""The balancing planner (balancing.planner): dedicated VMs get whole cores (or single CPUs
without whole_cores), their spare siblings stay idle, and a VM on its own cores stays."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from balancing.planner import Policy, VmDemand, plan, validate
from tests.unit.planner_helpers import MIB, load

pytestmark = pytest.mark.unit


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
