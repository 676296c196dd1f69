"""vms/numa.py: pinning state, cells, cross-node and live/config drift on the fixture hosts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from numaportal.virt.domain import DomainTuning, parse_domain
from numaportal.virt.topology import HostTopology, parse_capabilities
from vms.numa import is_cross_node, pinning_state, tuning_drift, vm_cells

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def host(name: str) -> HostTopology:
    return parse_capabilities((FIXTURES / "capabilities" / f"{name}.xml").read_text())


def domain(name: str) -> DomainTuning:
    return parse_domain((FIXTURES / "domains" / f"{name}.xml").read_text())


SEED = host("x86_64-2node-24cpu-ht")  # cell 0: 0-5,12-17; cell 1: 6-11,18-23
AMD = host("x86_64-2node-64cpu-amd-smt")  # cell 0: 0-15,32-47; cell 1: 16-31,48-63
FOUR = host("x86_64-4node-basic")  # 4 cells x 4 CPUs
LAB = host("x86_64-1node-2cpu-lab")  # 1 cell, CPUs 0-1
CXL = host("x86_64-2node-memory-only-cell")  # cell 0: 0-7; cell 1: memory only
ALL_HOSTS = [SEED, AMD, FOUR, LAB, CXL, host("x86_64-1node-dies")]


def fs(*ids: int) -> frozenset[int]:
    return frozenset(ids)


# --- vm_cells ---------------------------------------------------------------------------------


def test_seed_vm_pinned_to_22_23_runs_on_cell_1():
    assert vm_cells(SEED, {0: fs(22), 1: fs(23)}) == fs(1)


def test_non_contiguous_cell_ids_are_mapped_by_topology_not_arithmetic():
    # CPU 12 is on cell 0 of the seed host even though 6-11 are on cell 1.
    assert vm_cells(SEED, {0: fs(12), 1: fs(5)}) == fs(0)
    assert vm_cells(AMD, {0: fs(48)}) == fs(1)  # SMT sibling of 16, on cell 1


def test_one_vcpu_spanning_cells():
    assert vm_cells(SEED, {0: fs(5, 6)}) == fs(0, 1)


def test_unpinned_vcpu_may_run_on_every_cell_with_cpus():
    assert vm_cells(FOUR, {0: None}) == fs(0, 1, 2, 3)
    # A memory-only cell has no CPUs to run on.
    assert vm_cells(CXL, {0: None, 1: fs()}) == fs(0)


def test_unknown_cpus_are_ignored():
    assert vm_cells(LAB, {0: fs(0, 7)}) == fs(0)
    assert vm_cells(LAB, {}) == fs()


# --- pinning_state ---------------------------------------------------------------------------


def test_every_online_vcpu_pinned():
    assert pinning_state(SEED, [0, 1], {0: fs(22), 1: fs(23)}) == "pinned"


def test_some_pinned_is_partly():
    assert pinning_state(SEED, [0, 1], {0: fs(22)}) == "partly"


def test_offline_vcpus_do_not_count():
    # vCPUs 2-3 exist but are offline; only 0-1 are judged.
    assert pinning_state(SEED, [0, 1], {0: fs(22), 1: fs(23)}) == "pinned"


def test_vcpu_cpuset_restricts_every_vcpu_without_its_own_pin():
    assert pinning_state(FOUR, [0, 1, 2], {}, vcpu_cpuset=fs(0, 1, 2, 3)) == "pinned"
    assert pinning_state(FOUR, [0, 1], {0: fs(4)}, vcpu_cpuset=fs(0, 1)) == "pinned"


def test_pin_to_every_host_cpu_is_no_pin():
    everything = LAB.cpu_ids
    assert pinning_state(LAB, [0, 1], {0: everything, 1: everything}) == "unpinned"
    assert pinning_state(LAB, [0, 1], {0: fs(0), 1: everything}) == "partly"
    assert pinning_state(LAB, [0, 1], {}, vcpu_cpuset=everything) == "unpinned"


def test_no_pins_is_unpinned():
    assert pinning_state(AMD, [0, 1, 2, 3], {}) == "unpinned"
    assert pinning_state(AMD, [], {}) == "unpinned"


def test_fixture_domains():
    seed = domain("seed-pinned-live")
    online = [v for v, on in seed.vcpus_enabled.items() if on]
    assert pinning_state(SEED, online, seed.vcpupin, seed.vcpu_cpuset) == "pinned"
    untuned = domain("minimal-untuned")
    assert pinning_state(LAB, [0], untuned.vcpupin, untuned.vcpu_cpuset) == "unpinned"
    excl = domain("vcpu-cpuset-exclusion")
    assert pinning_state(FOUR, range(excl.vcpu_current), excl.vcpupin, excl.vcpu_cpuset) in {
        "pinned",
        "partly",
    }


# --- is_cross_node ----------------------------------------------------------------------------


def test_single_cell_host_is_never_cross_node():
    assert not is_cross_node(LAB, fs(0), "strict", fs(0))
    assert not is_cross_node(LAB, fs(0), "strict", fs(3))  # even a nonsense binding
    assert not is_cross_node(host("x86_64-1node-dies"), fs(0))


def test_vcpus_on_two_cells():
    assert is_cross_node(SEED, vm_cells(SEED, {0: fs(5), 1: fs(6)}))


def test_seed_vm_memory_local_to_its_cpus():
    seed = domain("seed-pinned-live")
    cells = vm_cells(SEED, {v: seed.effective_vcpu_affinity(v) for v in (0, 1)})
    assert cells == fs(1)
    assert not is_cross_node(SEED, cells, seed.numatune_mode, seed.numatune_nodeset)


def test_memory_bound_to_another_cell_than_cpus():
    assert is_cross_node(SEED, fs(1), "strict", fs(0))
    assert is_cross_node(SEED, fs(1), "interleave", fs(0, 1))
    assert is_cross_node(CXL, fs(0), "preferred", fs(1))  # CPUs on 0, memory on the CXL cell


def test_no_binding_on_one_cell_is_local():
    assert not is_cross_node(FOUR, fs(2))
    assert not is_cross_node(FOUR, fs(2), None, None)


def test_unpinned_vm_on_a_multi_cell_host_is_cross_node():
    assert is_cross_node(FOUR, vm_cells(FOUR, {0: None}))


@given(
    topo=st.sampled_from(ALL_HOSTS),
    data=st.data(),
)
def test_properties(topo: HostTopology, data: st.DataObject) -> None:
    cpus = sorted(topo.cpu_ids)
    affinity = data.draw(
        st.dictionaries(
            st.integers(0, 7),
            st.one_of(st.none(), st.frozensets(st.sampled_from(cpus), min_size=1)),
            max_size=6,
        )
    )
    cells = vm_cells(topo, affinity)
    assert cells <= topo.cell_ids
    if len(topo.cells) == 1:
        assert not is_cross_node(topo, cells, "strict", data.draw(st.frozensets(st.integers(0, 3))))
    elif len(cells) > 1:
        assert is_cross_node(topo, cells)
    pins = {v: c for v, c in affinity.items() if c}
    kind = pinning_state(topo, affinity.keys(), pins)
    assert kind in {"pinned", "partly", "unpinned"}
    if not pins:
        assert kind == "unpinned"


# --- tuning_drift -----------------------------------------------------------------------------


def test_same_definition_has_no_drift():
    for name in ("seed-pinned-inactive", "minimal-untuned", "guest-numa-auto"):
        tuning = domain(name)
        assert tuning_drift(tuning, tuning) == []


def test_seed_fixture_drift_is_readable():
    drift = tuning_drift(domain("seed-pinned-live"), domain("seed-pinned-inactive"))
    assert drift == [
        "vCPU 1 pinned to 23 live, 21 in config",
        "emulator pinned to 18-23 live, 18-21 in config",
    ]


def test_live_only_pin_and_unpinned_config():
    config = domain("minimal-untuned")
    live = dataclasses.replace(config, vcpupin={0: fs(1)}, domain_id=3)
    assert tuning_drift(live, config) == ["vCPU 0 pinned to 1 live, not pinned in config"]
    assert tuning_drift(config, live) == ["vCPU 0 not pinned live, pinned to 1 in config"]


def test_brief_example_wording():
    config = dataclasses.replace(domain("minimal-untuned"), vcpupin={0: fs(0, 1)})
    live = dataclasses.replace(config, vcpupin={0: fs(1)}, domain_id=3)
    assert tuning_drift(live, config) == ["vCPU 0 pinned to 1 live, 0-1 in config"]


def test_vcpu_count_and_maximum_drift():
    config = domain("seed-pinned-inactive")
    live = dataclasses.replace(config, vcpu_current=3, domain_id=7)
    assert tuning_drift(live, config) == ["3 vCPUs live, 2 in config"]
    raised = dataclasses.replace(config, vcpu_max=8)
    assert tuning_drift(config, raised) == ["maximum 4 vCPUs live, 8 in config"]


def test_emulatorpin_and_numatune_drift():
    config = domain("seed-pinned-inactive")
    live = dataclasses.replace(
        config, emulatorpin=None, numatune_mode="interleave", numatune_nodeset=fs(0, 1)
    )
    assert tuning_drift(live, config) == [
        "emulator not pinned live, pinned to 18-21 in config",
        "numatune interleave 0-1 live, strict 1 in config",
    ]
    unbound = dataclasses.replace(config, numatune_mode=None, numatune_nodeset=None)
    assert tuning_drift(unbound, config) == ["numatune none live, strict 1 in config"]


def test_numad_chosen_nodeset_is_not_drift():
    config = domain("guest-numa-auto")
    live = dataclasses.replace(config, numatune_nodeset=fs(1), domain_id=2)
    assert tuning_drift(live, config) == []
    moved = dataclasses.replace(live, numatune_mode="interleave")
    assert tuning_drift(moved, config) == [
        "numatune interleave (placement auto) live, strict (placement auto) in config"
    ]


def test_default_cpuset_drift():
    config = domain("minimal-untuned")
    live = dataclasses.replace(config, vcpu_cpuset=fs(0))
    assert tuning_drift(live, config) == ["default vCPU cpuset 0 live, none in config"]
